//! Host bindings generated from the `portcullis:policy` WIT package.
//!
//! The generated record types double as the decision core's request model
//! (re-exported by [`crate::admission`]): the WIT package is the public
//! contract, so the host keeps one definition of it and lowers requests into
//! the guest without converting them first.

#![allow(
    missing_docs,
    reason = "documented in the WIT package, which is the source of truth"
)]

wasmtime::component::bindgen!({
    path: "../wasm-plugins/wit",
    world: "policy",
    additional_derives: [PartialEq, serde::Serialize],
});

pub use portcullis::policy::log;
pub use portcullis::policy::types;
