//! Portcullis: an admission gateway for Kubernetes and Docker that verifies
//! what would run and judges it with WebAssembly policies.
//!
//! - [`admission`], the decision core: request model, workload
//!   normalization, the policy pipeline;
//! - [`policy`], the wasmtime host that runs policies;
//! - [`verify`], image signature verification;
//! - [`config`], the configuration file;
//! - [`kubernetes`], the Kubernetes front door: the admission webhook;
//! - [`docker`], the Docker front door: the socket proxy;
//! - [`telemetry`], metrics;
//! - [`tls`], certificates for the listeners, reloaded when they change;
//! - [`cli`], the `portcullis` command.

pub mod admission;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod docker;
pub mod kubernetes;
pub mod policy;
pub mod telemetry;
pub mod tls;
pub mod verify;

/// An error and its causes, `: `-separated, for logs and messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    use std::fmt::Write as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Lowercase hex of the sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(bytes))
}
