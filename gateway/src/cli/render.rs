//! How the command line prints decisions, summaries and errors.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::admission::{Decision, Effect, Outcome, Pipeline};
use crate::config::Config;

/// A decision for a person: the verdict, each policy's verdict and reasons,
/// the warnings and the patch.
pub(super) fn text(file: &Path, decision: &Decision, name_file: bool) -> String {
    let mut out = String::new();
    let verdict = if decision.allowed {
        "ALLOWED"
    } else {
        "DENIED"
    };
    if name_file {
        let _ = writeln!(out, "{}: {verdict}", file.display());
    } else {
        let _ = writeln!(out, "{verdict}");
    }
    if decision.policies.is_empty() {
        let _ = writeln!(out, "  no policy matched this request");
    }
    for policy in &decision.policies {
        let said = match &policy.outcome {
            Outcome::Verdict(verdict) if verdict.allowed => "allowed",
            Outcome::Verdict(_) => "denied",
            Outcome::Failed(_) => "failed",
        };
        let effect = match policy.effect {
            Effect::Allow | Effect::Deny => String::new(),
            Effect::Warn => " (reported as a warning)".into(),
            Effect::Audit => " (recorded only)".into(),
        };
        let _ = writeln!(
            out,
            "  {} [{}]: {said}{effect} in {}",
            policy.name,
            policy.mode,
            micros(policy.duration)
        );
        if let Some(message) = policy
            .outcome
            .message()
            .filter(|_| !policy.outcome.allowed())
        {
            for line in message.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    if !decision.warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for warning in &decision.warnings {
            let _ = writeln!(out, "  - {warning}");
        }
    }
    if let Some(patch) = &decision.patch {
        let _ = writeln!(out, "patch:");
        for operation in &patch.0 {
            let _ = writeln!(out, "  {}", json!(operation));
        }
    }
    out
}

/// A decision as one JSON object.
pub(super) fn json(file: &Path, decision: &Decision) -> String {
    let policies: Vec<_> = decision
        .policies
        .iter()
        .map(|policy| {
            let mut entry = json!({
                "name": policy.name,
                "mode": policy.mode,
                "allowed": policy.outcome.allowed(),
                "effect": policy.effect,
                "message": policy.outcome.message(),
                "duration_us": policy.duration.as_micros(),
            });
            if let Outcome::Failed(error) = &policy.outcome {
                entry["error"] = json!({"kind": error.kind(), "message": error.to_string()});
            }
            if let Outcome::Verdict(verdict) = &policy.outcome
                && !verdict.annotations.is_empty()
            {
                entry["annotations"] = json!(
                    verdict
                        .annotations
                        .iter()
                        .cloned()
                        .collect::<std::collections::BTreeMap<_, _>>()
                );
            }
            entry
        })
        .collect();
    json!({
        "request": file.display().to_string(),
        "allowed": decision.allowed,
        "code": decision.code,
        "message": decision.message,
        "warnings": decision.warnings,
        "patch": decision.patch,
        "policies": policies,
    })
    .to_string()
}

/// What `check` prints about a loaded configuration.
pub(super) fn summary(config: &Config, pipeline: &Pipeline) -> String {
    let mut out = String::new();
    let count = config.policies.len();
    let _ = writeln!(
        out,
        "configuration OK: {count} {} loaded, settings accepted",
        if count == 1 { "policy" } else { "policies" }
    );
    for (name, source, mode, digest) in pipeline.summary() {
        let _ = writeln!(
            out,
            "  {name} [{mode}]: {source} (sha256:{})",
            &digest[..12.min(digest.len())]
        );
    }
    if let Some(cluster) = pipeline.cluster() {
        let _ = writeln!(
            out,
            "cluster {}: listed {}",
            cluster.server(),
            cluster_resources(config)
        );
    }
    out
}

/// The cluster resources the policies read, as the configuration names them.
pub(super) fn cluster_resources(config: &Config) -> String {
    let resources: Vec<String> = config
        .cluster_resources()
        .iter()
        .map(ToString::to_string)
        .collect();
    resources.join(", ")
}

fn micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}

/// An image verdict for a person: the digest, the rule, who vouched for it
/// or why nobody did, and what was found.
pub(super) fn verdict(verdict: &crate::verify::ImageVerdict) -> String {
    let mut out = String::new();
    let headline = match (verdict.verified, verdict.allowed) {
        (true, _) => "VERIFIED",
        (false, true) => "NOT VERIFIED (admitted: no rule matches and the default is allow)",
        (false, false) => "NOT VERIFIED",
    };
    let _ = writeln!(out, "{headline}");
    let _ = writeln!(out, "  image:     {}", verdict.reference);
    let field = |out: &mut String, name: &str, value: &Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(out, "  {name:<10} {value}");
        }
    };
    // The spelling rules and pins go by, when the request wrote another.
    let canonical = verdict
        .canonical
        .clone()
        .filter(|canonical| *canonical != verdict.reference);
    field(&mut out, "canonical:", &canonical);
    field(&mut out, "digest:", &verdict.digest);
    field(&mut out, "rule:", &verdict.rule);
    field(&mut out, "authority:", &verdict.authority);
    field(&mut out, "signer:", &verdict.signer);
    field(&mut out, "why not:", &verdict.reason);
    if let Some(pinned) = verdict.pinned() {
        let _ = writeln!(out, "  pinned:    {pinned}");
    }
    for attestation in &verdict.attestations {
        let _ = writeln!(
            out,
            "  attested:  {} (signed by {})",
            attestation.predicate_type, attestation.signer
        );
    }
    for found in &verdict.found {
        let _ = writeln!(out, "  found:     {found}");
    }
    out
}
