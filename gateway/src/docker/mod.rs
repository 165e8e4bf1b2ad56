//! The Docker front door: a socket proxy in front of the engine API.
//!
//! Clients talk to the proxy's socket as to the engine's. Every request's
//! path is canonicalized ([`path`]) and routed as the engine's router would
//! route it ([`route`]), checked against the access rules ([`access`]) and
//! its headers read as the engine reads them ([`headers`]); when it creates
//! or changes a workload, it is read whole, normalized for the engine
//! behind the proxy, enriched with what that engine knows of the objects it
//! names (`lookup`), and judged by the same pipeline and policies as
//! Kubernetes before the exact bytes judged are forwarded. Everything else
//! streams through untouched, including hijacked attach and exec sessions.

pub mod access;
pub mod coalesce;
pub mod headers;
mod limit;
mod lookup;
pub mod path;
pub mod route;
pub mod server;
pub mod upstream;
