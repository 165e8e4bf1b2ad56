//! A workload may run only in a namespace that says who owns it: the
//! namespace must carry a label (`team` unless the settings say otherwise),
//! with a value.
//!
//! A context-aware policy: it reads the namespace of the request, so it
//! needs the grant
//!
//! ```yaml
//! grants:
//!   - cluster: [v1/namespaces]
//! ```
//!
//! Requests that run nothing (no workload) and cluster-scoped ones are
//! allowed.

use portcullis_policy_sdk::{Policy, Request, Verdict, cluster, export_policy};

/// The resource the policy reads.
const NAMESPACES: &str = "v1/namespaces";

/// Settings.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The label every namespace running workloads must carry.
    pub label: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            label: "team".into(),
        }
    }
}

struct NamespaceLabel;

impl Policy for NamespaceLabel {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        if settings.label.is_empty() {
            return Err("`label` must not be empty".into());
        }
        Ok(())
    }

    fn validate(request: &Request, settings: &Settings) -> Verdict {
        let (Some(_), Some(namespace)) = (&request.workload, &request.namespace) else {
            return Verdict::allow();
        };
        let found = cluster::get(NAMESPACES, None, namespace);
        match judge(namespace, found.as_ref(), &settings.label) {
            Ok(()) => Verdict::allow(),
            Err(reason) => Verdict::deny(reason),
        }
    }
}

export_policy!(NamespaceLabel);

/// Whether `namespace` (its object, if the cluster has it) carries `label`.
pub fn judge(
    namespace: &str,
    object: Option<&portcullis_policy_sdk::serde_json::Value>,
    label: &str,
) -> Result<(), String> {
    let Some(object) = object else {
        return Err(format!(
            "namespace {namespace:?} is not known to the cluster"
        ));
    };
    match object["metadata"]["labels"][label].as_str() {
        Some(value) if !value.is_empty() => Ok(()),
        _ => Err(format!(
            "namespace {namespace:?} has no {label:?} label: label it with its owner (kubectl label namespace {namespace} {label}=NAME)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy_sdk::serde_json::json;

    #[test]
    fn a_namespace_needs_the_label_with_a_value() {
        let labelled = json!({"metadata": {"name": "web", "labels": {"team": "shop"}}});
        let empty = json!({"metadata": {"name": "web", "labels": {"team": ""}}});
        let bare = json!({"metadata": {"name": "web"}});
        assert_eq!(judge("web", Some(&labelled), "team"), Ok(()));
        for object in [&empty, &bare] {
            let reason = judge("web", Some(object), "team").expect_err("denied");
            assert!(reason.contains("has no \"team\" label"), "{reason}");
        }
        assert!(judge("web", Some(&labelled), "owner").is_err());
        assert!(
            judge("gone", None, "team")
                .expect_err("denied")
                .contains("not known")
        );
    }
}
