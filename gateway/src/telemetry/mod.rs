//! What the gateway tells its operators: Prometheus metrics and the audit
//! log.

pub mod audit;
mod metrics;

pub use audit::Audit;
pub use metrics::{Endpoint, Format, Metrics, ReviewOutcome};
