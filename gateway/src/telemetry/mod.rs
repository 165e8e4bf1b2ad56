//! What the gateway tells its operators: Prometheus metrics.

mod metrics;

pub use metrics::{Endpoint, Metrics, ReviewOutcome};
