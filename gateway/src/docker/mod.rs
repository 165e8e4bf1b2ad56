//! The Docker front door: a socket proxy in front of the engine API.
//!
//! Clients talk to the proxy's socket as to the engine's. Every request's
//! path is canonicalized and classified ([`route`]), checked against the
//! access rules ([`access`]), and, when it creates or changes a workload,
//! read whole, normalized and judged by the same pipeline and policies as
//! Kubernetes before the exact bytes judged are forwarded. Everything else
//! streams through untouched, including hijacked attach and exec sessions.

pub mod access;
pub mod coalesce;
pub mod path;
pub mod route;
pub mod server;
pub mod upstream;
