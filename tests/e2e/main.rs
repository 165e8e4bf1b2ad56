//! End-to-end tests: the `portcullis` binary, real WebAssembly policies
//! built from source, the upstream Pod Security conformance fixtures, a
//! real OCI registry for image verification.

mod docker_support;
mod kube_support;
mod registry_support;
mod support;
mod webhook_support;

mod c_policy;
mod cache;
mod cluster;
mod conformance;
mod docker;
mod docker_bypass;
mod docker_clients;
mod docker_engine_bypass;
mod eval;
mod hostile;
mod image;
mod image_admission;
mod kubernetes;
mod malformed;
mod sandbox;
mod spellings;
mod verify;
mod webhook;
