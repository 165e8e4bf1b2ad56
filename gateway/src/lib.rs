//! Portcullis: an admission gateway for Kubernetes and Docker that verifies
//! what would run and judges it with WebAssembly policies.
//!
//! - [`admission`]: the decision core (request model, workload
//!   normalization, the policy pipeline);
//! - [`policy`]: the wasmtime host that runs policies;
//! - [`config`]: the configuration file;
//! - [`kubernetes`]: the Kubernetes front door (AdmissionReview);
//! - [`cli`]: the `portcullis` command.

pub mod admission;
pub mod cli;
pub mod config;
pub mod kubernetes;
pub mod policy;
