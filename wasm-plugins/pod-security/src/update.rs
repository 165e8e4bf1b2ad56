//! Updates that leave nothing new to judge.
//!
//! Upstream Pod Security Admission re-evaluates a pod on update only when
//! something it checks could have changed (`isSignificantPodUpdate`), so that
//! a pod admitted under an older or laxer policy can still have its labels
//! edited or be scaled. Here the same holds for every object with a pod
//! template: if the pod spec and the annotations the checks read are
//! identical before and after, the update is allowed without evaluation.
//!
//! This is the only place the policy parses the raw object, and only on
//! updates; creates are judged from the normalized workload alone.

use std::collections::BTreeMap;

use serde_json::Value;

/// Annotations the checks read (seccomp before v1.19, AppArmor always);
/// changing one may change the verdict even when the spec does not.
const CHECKED_ANNOTATION_PREFIXES: &[&str] = &[
    "seccomp.security.alpha.kubernetes.io/pod",
    "container.seccomp.security.alpha.kubernetes.io/",
    "container.apparmor.security.beta.kubernetes.io/",
];

/// Whether the pod at `template_path` is the same in both objects (JSON
/// text), as far as any check can tell. Anything that cannot be read counts
/// as changed, so the update is judged in full.
pub(crate) fn pod_unchanged(object: &str, old_object: &str, template_path: &str) -> bool {
    let (Ok(new), Ok(old)) = (
        serde_json::from_str::<Value>(object),
        serde_json::from_str::<Value>(old_object),
    ) else {
        return false;
    };
    let spec = format!("{template_path}/spec");
    let annotations = format!("{template_path}/metadata/annotations");
    new.pointer(&spec) == old.pointer(&spec)
        && checked_annotations(&new, &annotations) == checked_annotations(&old, &annotations)
}

fn checked_annotations<'a>(object: &'a Value, pointer: &str) -> BTreeMap<&'a str, &'a Value> {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| {
            CHECKED_ANNOTATION_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
        })
        .map(|(key, value)| (key.as_str(), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = r#"{
        "metadata": {"labels": {"app": "web"}},
        "spec": {"replicas": 1, "template": {
            "metadata": {"annotations": {"team": "a",
                "container.apparmor.security.beta.kubernetes.io/web": "unconfined"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "web", "image": "nginx"}]}
        }}
    }"#;

    fn edited(from: &str, to: &str) -> String {
        assert!(DEPLOYMENT.contains(from), "{from}");
        DEPLOYMENT.replace(from, to)
    }

    #[test]
    fn changes_outside_the_pod_spec_are_not_significant() {
        let scaled = edited(r#""replicas": 1"#, r#""replicas": 3"#);
        assert!(pod_unchanged(&scaled, DEPLOYMENT, "/spec/template"));
        let relabelled = edited(r#""team": "a""#, r#""team": "b""#);
        assert!(pod_unchanged(&relabelled, DEPLOYMENT, "/spec/template"));
    }

    #[test]
    fn changes_to_the_spec_or_checked_annotations_are_significant() {
        let new_image = edited(r#""image": "nginx""#, r#""image": "nginx:2""#);
        assert!(!pod_unchanged(&new_image, DEPLOYMENT, "/spec/template"));
        let apparmor = edited(r#"/web": "unconfined""#, r#"/web": "runtime/default""#);
        assert!(!pod_unchanged(&apparmor, DEPLOYMENT, "/spec/template"));
    }

    #[test]
    fn unreadable_objects_are_judged_in_full() {
        assert!(!pod_unchanged("{", DEPLOYMENT, "/spec/template"));
    }

    #[test]
    fn a_pod_is_its_own_template() {
        let pod = r#"{"metadata": {}, "spec": {"containers": []}}"#;
        let relabelled = r#"{"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}"#;
        assert!(pod_unchanged(relabelled, pod, ""));
    }
}
