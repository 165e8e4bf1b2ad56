//! The Kubernetes Pod Security Standards as a Portcullis policy.
//!
//! Reproduces upstream Pod Security Admission (`k8s.io/pod-security-admission`)
//! check for check and version for version, on the gateway's normalized
//! workload, so the same standard governs Kubernetes pods, pod templates and
//! Docker containers. Settings:
//!
//! ```json
//! {"level": "restricted", "version": "v1.30"}
//! ```
//!
//! `level` is `privileged`, `baseline` (the default) or `restricted`;
//! `version` is `latest` (the default) or `v1.<minor>`, pinning the rules of
//! that release as the namespace label `pod-security.kubernetes.io/enforce-version`
//! does. A denial lists every violated control, in upstream's order:
//!
//! ```text
//! violates PodSecurity "baseline:latest": hostNamespaces (hostNetwork=true); privileged (container "nginx" must not set securityContext.privileged=true)
//! ```
//!
//! Modules: `settings` parses the settings; `registry` says which checks
//! apply at a level and version; `checks` holds the checks; `message` words
//! the denial for the request's front door; `update` spots updates with
//! nothing new to judge.

mod checks;
mod message;
mod registry;
mod settings;
mod update;

use portcullis_policy_sdk::types::Workload;
use portcullis_policy_sdk::{Operation, Origin, Policy, Request, Verdict, export_policy};

use crate::checks::Pod;
use crate::message::Violation;
pub use crate::settings::{Level, Settings, SettingsError, Version};

/// The Pod Security Standards policy.
#[derive(Debug)]
pub struct PodSecurity;

impl Policy for PodSecurity {
    type Settings = Settings;

    fn validate_settings(settings: &Settings) -> Result<(), String> {
        match settings.exclude.iter().find(|control| {
            !registry::CHECKS
                .iter()
                .any(|check| check.id == control.as_str())
        }) {
            Some(unknown) => Err(SettingsError::Exclude(unknown.clone()).to_string()),
            None => Ok(()),
        }
    }

    fn validate(request: &Request, settings: &Settings) -> Verdict {
        // The concrete version, not `latest`: what `latest` means moves as
        // this policy is upgraded, and an audit record must say which rules
        // actually applied.
        let evaluated = registry::effective_minor(settings.version);
        judge(request, settings)
            .annotate("level", settings.level.as_str())
            .annotate("version", Version::Minor(evaluated).to_string())
    }
}

export_policy!(PodSecurity);

fn judge(request: &Request, settings: &Settings) -> Verdict {
    // Services, images and the like: nothing that runs.
    let Some(workload) = &request.workload else {
        return Verdict::allow();
    };
    // Deleting starts nothing, and a Kubernetes exec or attach enters a
    // container that was judged when it was created; upstream judges
    // neither. A Docker exec is different: it starts a process with
    // privileges and a user of its own, which the gateway describes as the
    // exec's workload, so the controls a process can break are judged on it.
    let exec = request.origin == Origin::Docker
        && request.kind.group == "docker"
        && request.kind.kind == "Exec";
    if !exec && !matches!(request.operation, Operation::Create | Operation::Update) {
        return Verdict::allow();
    }
    // Checked before the update comparison, which parses JSON, so the
    // level that judges nothing costs nothing.
    if settings.level == Level::Privileged {
        return Verdict::allow();
    }
    if request.operation == Operation::Update && nothing_new(request, workload) {
        return Verdict::allow();
    }
    let violations = evaluate(workload, request.origin, settings, exec);
    if violations.is_empty() {
        return Verdict::allow();
    }
    let controls: Vec<&str> = violations.iter().map(|v| v.control).collect();
    Verdict::deny(message::denial(settings, &violations)).annotate("controls", controls.join(","))
}

/// Whether an update leaves the pod as it was (see [`update`]).
fn nothing_new(request: &Request, workload: &Workload) -> bool {
    match (
        &request.object,
        &request.old_object,
        &workload.template_path,
    ) {
        (Some(object), Some(old_object), Some(template_path)) => {
            update::pod_unchanged(object, old_object, template_path)
        }
        _ => false,
    }
}

/// The controls an exec's process can break: it inherits the container's
/// namespaces, volumes, capabilities and profiles, and brings only its
/// privilege and its user.
const EXEC_CONTROLS: &[&str] = &["privileged", "runAsNonRoot", "runAsUser"];

/// Runs every applicable check, so the person sees every reason at once.
fn evaluate(
    workload: &Workload,
    origin: Origin,
    settings: &Settings,
    exec: bool,
) -> Vec<Violation> {
    let mut pod = Pod::new(workload, origin);
    if exec {
        pod.fields = message::Fields::exec();
    }
    registry::applicable(settings.level, settings.version)
        .into_iter()
        .filter(|(control, _)| !exec || EXEC_CONTROLS.contains(control))
        .filter(|(control, _)| !settings.exclude.iter().any(|excluded| excluded == control))
        .filter_map(|(control, revision)| {
            let detail = revision.check(&pod)?;
            Some(Violation { control, detail })
        })
        .collect()
}

#[cfg(test)]
mod tests;
