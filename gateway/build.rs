//! Builds the built-in policies (`wasm-plugins/<name>`) into WebAssembly
//! components and leaves them in `OUT_DIR` for `include_bytes!`.

use std::path::PathBuf;

/// Built-in policies: workspace packages embedded in the binary.
const BUILTINS: &[&str] = &["pod-security", "host-isolation"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("the gateway lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));

    for watched in ["wasm-plugins/wit", "wasm-plugins/sdk", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    for builtin in BUILTINS {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("wasm-plugins").join(builtin).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = portcullis_wasm_build::default_target_dir(&workspace);
    let components = match portcullis_wasm_build::build(&workspace, &target_dir, BUILTINS) {
        Ok(components) => components,
        Err(error) => {
            eprintln!("error: building the built-in policies: {error}");
            std::process::exit(1);
        }
    };
    for (builtin, component) in BUILTINS.iter().zip(components) {
        let embedded = out_dir.join(format!("{builtin}.wasm"));
        std::fs::copy(&component, &embedded).unwrap_or_else(|error| {
            panic!(
                "copying {} to {}: {error}",
                component.display(),
                embedded.display()
            )
        });
    }
}
