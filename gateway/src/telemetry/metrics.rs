//! Prometheus metrics, in the text exposition format, all under
//! `portcullis_`:
//!
//! - `reviews_total{endpoint, outcome}`: requests answered, by endpoint
//!   (`validate`, `mutate`) and outcome (`allowed`, `denied`, `rejected` for
//!   a request that was not a usable review);
//! - `review_duration_seconds{endpoint}`: from the body read to the answer;
//! - `policy_decisions_total{policy, mode, outcome}`: what each policy said
//!   (`allowed`, `denied`, `failed`);
//! - `policy_evaluation_duration_seconds{policy}`: one evaluation, fresh
//!   instance included;
//! - `policy_errors_total{policy, kind}`: failures by kind (`timeout`,
//!   `memory`, `trap`, `invalid`, `overload`);
//! - `image_verifications_total{outcome, cache}`: images verified
//!   (`verified`, `admitted` unverified by the default, `denied`), and
//!   whether the verdict cache answered (`hit`, `miss`);
//! - `sandbox_memory_budget_bytes`, `sandbox_memory_reserved_bytes`: the
//!   memory budget of all evaluations in flight, and what they hold now;
//! - `sandbox_memory_waits_total`, `sandbox_memory_refusals_total`:
//!   evaluations that waited for that budget, and those that waited until
//!   their deadline and did not run (they fail closed, kind `overload`).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::{Decision, Outcome};
use crate::policy::MemoryBudget;
use crate::verify::ImageVerdict;

/// The webhook endpoint a review came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lower case")]
pub enum Endpoint {
    /// `/validate`.
    validate,
    /// `/mutate`.
    mutate,
}

/// How a review ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types, reason = "label values are lower case")]
pub enum ReviewOutcome {
    /// Allowed.
    allowed,
    /// Denied.
    denied,
    /// Not a usable review (answered with a 4xx).
    rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReviewLabels {
    endpoint: Endpoint,
    outcome: ReviewOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    mode: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ImageLabels {
    outcome: &'static str,
    cache: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    policy: String,
    kind: &'static str,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    review_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    evaluation_duration: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    errors: Family<ErrorLabels, Counter>,
    images: Family<ImageLabels, Counter>,
}

/// 10 µs to about 10 s, doubling: evaluations are tens of microseconds,
/// deadlines are up to seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.0, 21))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let reviews = Family::default();
        let review_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let decisions = Family::default();
        let evaluation_duration =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let errors = Family::default();
        registry.register("reviews", "Admission reviews answered", reviews.clone());
        registry.register(
            "review_duration_seconds",
            "Time from reading a review to answering it",
            review_duration.clone(),
        );
        registry.register(
            "policy_decisions",
            "What each policy said",
            decisions.clone(),
        );
        registry.register(
            "policy_evaluation_duration_seconds",
            "Time of one policy evaluation, fresh instance included",
            evaluation_duration.clone(),
        );
        registry.register("policy_errors", "Policy failures by kind", errors.clone());
        let images = Family::default();
        registry.register(
            "image_verifications",
            "Images verified, by outcome and verdict-cache use",
            images.clone(),
        );
        Self {
            registry,
            reviews,
            review_duration,
            decisions,
            evaluation_duration,
            errors,
            images,
        }
    }
}

/// Reads the sandbox's memory budget at each scrape.
#[derive(Debug)]
struct BudgetCollector(Arc<MemoryBudget>);

impl Collector for BudgetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let usage = self.0.usage();
        let gauge = |value: u64| ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        for (name, help, value) in [
            (
                "sandbox_memory_budget_bytes",
                "Memory all policy evaluations in flight may reserve together",
                usage.total,
            ),
            (
                "sandbox_memory_reserved_bytes",
                "Memory reserved by the policy evaluations in flight",
                usage.reserved,
            ),
        ] {
            let gauge = gauge(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        for (name, help, value) in [
            (
                "sandbox_memory_waits",
                "Policy evaluations that waited for the sandbox memory budget",
                usage.waits,
            ),
            (
                "sandbox_memory_refusals",
                "Policy evaluations that waited for the sandbox memory budget until their deadline",
                usage.refusals,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Metrics that also report the sandbox's memory `budget`.
    pub fn with_budget(budget: Arc<MemoryBudget>) -> Self {
        let mut metrics = Self::default();
        metrics
            .registry
            .register_collector(Box::new(BudgetCollector(budget)));
        metrics
    }

    /// Records an answered review and what each policy said.
    pub fn record(&self, endpoint: Endpoint, decision: &Decision, duration: std::time::Duration) {
        let outcome = if decision.allowed {
            ReviewOutcome::allowed
        } else {
            ReviewOutcome::denied
        };
        self.reviews
            .get_or_create(&ReviewLabels { endpoint, outcome })
            .inc();
        self.review_duration
            .get_or_create(&EndpointLabels { endpoint })
            .observe(duration.as_secs_f64());
        for policy in &decision.policies {
            let outcome = match &policy.outcome {
                Outcome::Verdict(verdict) if verdict.allowed => "allowed",
                Outcome::Verdict(_) => "denied",
                Outcome::Failed(error) => {
                    self.errors
                        .get_or_create(&ErrorLabels {
                            policy: policy.name.clone(),
                            kind: error.kind().as_str(),
                        })
                        .inc();
                    "failed"
                }
            };
            self.decisions
                .get_or_create(&DecisionLabels {
                    policy: policy.name.clone(),
                    mode: policy.mode.to_string(),
                    outcome,
                })
                .inc();
            self.evaluation_duration
                .get_or_create(&PolicyLabels {
                    policy: policy.name.clone(),
                })
                .observe(policy.duration.as_secs_f64());
        }
    }

    /// Records the verdicts on a review's images.
    pub fn images(&self, verdicts: &[ImageVerdict]) {
        for verdict in verdicts {
            let outcome = match (verdict.verified, verdict.allowed) {
                (true, _) => "verified",
                (false, true) => "admitted",
                (false, false) => "denied",
            };
            let cache = if verdict.cached { "hit" } else { "miss" };
            self.images
                .get_or_create(&ImageLabels { outcome, cache })
                .inc();
        }
    }

    /// Records a request that was not a usable review.
    pub fn rejected(&self, endpoint: Endpoint) {
        self.reviews
            .get_or_create(&ReviewLabels {
                endpoint,
                outcome: ReviewOutcome::rejected,
            })
            .inc();
    }

    /// Everything, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        match format {
            Format::OpenMetrics => text,
            Format::Text => classic(&text),
        }
    }
}

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`# EOF`, counters named without `_total`).
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, which every scraper reads.
    Text,
}

impl Format {
    /// The format a scraper's `Accept` header prefers: OpenMetrics when it
    /// ranks `application/openmetrics-text` above the classic
    /// `text/plain` (as Prometheus does), the classic format otherwise,
    /// and when it says nothing.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut open_metrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let quality = parts
                .filter_map(|parameter| parameter.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(quality),
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics text rewritten in the classic format: a counter's family
/// takes the `_total` name its samples carry, `# UNIT` and `# EOF` go, and
/// every other line is the same in both.
fn classic(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapers_get_the_format_they_rank_first() {
        // What Prometheus sends when it can read OpenMetrics.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        for classic in [
            None,
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
            Some("text/plain, application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;q=0"),
            Some("application/json"),
        ] {
            assert_eq!(Format::negotiate(classic), Format::Text, "{classic:?}");
        }
        assert!(
            Format::OpenMetrics
                .content_type()
                .starts_with("application/openmetrics-text")
        );
        assert!(
            Format::Text
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
    }

    #[test]
    fn the_classic_format_names_counters_as_their_samples() {
        let metrics = Metrics::with_budget(Arc::new(crate::policy::MemoryBudget::new(1 << 20, 4)));
        metrics.rejected(Endpoint::validate);
        let open_metrics = metrics.encode(Format::OpenMetrics);
        assert!(
            open_metrics.contains("# TYPE portcullis_reviews counter\n"),
            "{open_metrics}"
        );
        assert!(open_metrics.ends_with("# EOF\n"), "{open_metrics}");
        let text = metrics.encode(Format::Text);
        assert!(
            text.contains("# TYPE portcullis_reviews_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP portcullis_reviews_total "), "{text}");
        assert!(
            text.contains(
                "portcullis_reviews_total{endpoint=\"validate\",outcome=\"rejected\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        // Gauges (and histograms) read the same in both.
        assert!(
            text.contains("# TYPE portcullis_sandbox_memory_budget_bytes gauge\n"),
            "{text}"
        );
    }
}
