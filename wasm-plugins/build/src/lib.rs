//! Builds policy crates of this workspace into WebAssembly components.
//!
//! The gateway's build script uses it to embed the built-in policies, and the
//! test suite uses it to build its test policies, so nothing compiled is ever
//! committed. It runs a nested `cargo build` for the `wasm32-wasip2` target
//! (whose linker emits a component directly) with its own target directory,
//! so it never waits on the lock of the build that called it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target policies are compiled for.
pub const TARGET: &str = "wasm32-wasip2";

/// Environment variables of the calling build that must not leak into the
/// nested one: host flags and wrappers (clippy sets `RUSTC_WORKSPACE_WRAPPER`)
/// make no sense for the wasm target.
const SCRUBBED: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
];

/// Why a build failed.
#[derive(Debug)]
pub enum Error {
    /// Cargo could not be started.
    Spawn(std::io::Error),
    /// Cargo ran and failed; its output went to the caller's stderr.
    Failed(std::process::ExitStatus),
    /// Cargo succeeded but a component is missing.
    Missing(PathBuf),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Spawn(error) => write!(f, "failed to run cargo: {error}"),
            Error::Failed(status) => write!(
                f,
                "cargo build --target {TARGET} failed ({status}); is the target installed? `rustup target add {TARGET}`"
            ),
            Error::Missing(path) => write!(f, "cargo did not produce {}", path.display()),
        }
    }
}

impl std::error::Error for Error {}

/// Builds the given workspace packages (each a `cdylib` using the policy SDK)
/// in release mode and returns the path of each component, in order.
///
/// `workspace` is the directory of the workspace's `Cargo.toml`; `target_dir`
/// is where the nested build keeps its artifacts.
pub fn build(
    workspace: &Path,
    target_dir: &Path,
    packages: &[&str],
) -> Result<Vec<PathBuf>, Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir)
        .args(packages.iter().flat_map(|package| ["-p", package]))
        // Policies are shipped inside the binary: make them small and fast,
        // whatever the workspace's release profile says about debug info.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    for name in SCRUBBED {
        command.env_remove(name);
    }
    let status = command.status().map_err(Error::Spawn)?;
    if !status.success() {
        return Err(Error::Failed(status));
    }
    packages
        .iter()
        .map(|package| {
            let path = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", package.replace('-', "_")));
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::Missing(path))
            }
        })
        .collect()
}

/// The nested build's target directory: beside the calling build's artifacts
/// (`CARGO_TARGET_DIR`, or the workspace's `target/`), shared by every
/// profile so `cargo clippy` and `cargo build` reuse one another's work.
pub fn default_target_dir(workspace: &Path) -> PathBuf {
    let outer =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    workspace.join(outer).join("wasm-plugins")
}
