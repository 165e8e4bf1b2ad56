//! Policies built from `wasm-plugins/<name>` by the build script and
//! embedded in the binary, referred to as `builtin:<name>`.

/// Every built-in policy: name and component bytes.
pub const BUILTINS: &[(&str, &[u8])] = &[
    (
        "pod-security",
        include_bytes!(concat!(env!("OUT_DIR"), "/pod-security.wasm")),
    ),
    (
        "host-isolation",
        include_bytes!(concat!(env!("OUT_DIR"), "/host-isolation.wasm")),
    ),
];

/// The component of the built-in policy `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, wasm)| *wasm)
}

/// Names of the built-in policies, for error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}
