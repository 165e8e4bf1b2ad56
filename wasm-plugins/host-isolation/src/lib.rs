//! Keeps workloads away from the host in the ways the Pod Security
//! Standards do not cover, as a Portcullis policy.
//!
//! Meant to run beside `pod-security`, mostly for Docker, where `docker run`
//! and `docker exec` reach the host by routes a pod spec has no field for:
//! host devices and device cgroup rules, the host's UTS, cgroup and user
//! namespaces, another container's namespaces or volumes, host paths that
//! hold the engine's socket or the host's credentials, and privileged or
//! root processes entering a running container. On Kubernetes most of these
//! fields are never set, so only `sensitivePaths` (hostPath volumes) and an
//! explicit `hostUsers: true` usually have anything to judge.
//!
//! Settings (all optional; the defaults deny everything but root exec):
//!
//! ```json
//! {"allowed_devices": ["/dev/dri"], "allow_device_rules": false,
//!  "allow_borrowing": false, "sensitive_paths": ["/", "/var/run/docker.sock"],
//!  "allow_privileged_exec": false, "allow_root_exec": true}
//! ```
//!
//! A denial lists every violated control, in a fixed order:
//!
//! ```text
//! violates host-isolation: devices (container "web" must not use --device "/dev/sda"); borrowedNamespaces (container "web" must not use --pid container:db)
//! ```
//!
//! Modules: `settings` parses the settings; `path` normalizes host paths and
//! relates them to sensitive ones; `checks` holds the controls in reporting
//! order; `message` words the denial for the request's front door.

mod checks;
mod message;
mod path;
mod settings;

use portcullis_policy_sdk::types::GroupVersionKind;
use portcullis_policy_sdk::{Operation, Policy, Request, Verdict, export_policy};

use crate::checks::{CONTROLS, Subject};
use crate::message::{Violation, Words};
pub use crate::path::HostPath;
pub use crate::settings::{DEFAULT_SENSITIVE_PATHS, Settings, SettingsError};

/// The host-isolation policy.
#[derive(Debug)]
pub struct HostIsolation;

impl Policy for HostIsolation {
    type Settings = Settings;

    fn validate(request: &Request, settings: &Settings) -> Verdict {
        // Services, images and the like: nothing that runs.
        let Some(workload) = &request.workload else {
            return Verdict::allow();
        };
        // Deleting starts nothing. CONNECT stays in: a Docker exec starts a
        // process in a running container, and its workload describes it.
        if !matches!(
            request.operation,
            Operation::Create | Operation::Update | Operation::Connect
        ) {
            return Verdict::allow();
        }
        let subject = Subject {
            workload,
            exec: is_docker_exec(&request.kind),
            words: Words::of(request.origin),
        };
        // Every control, so the person sees every reason at once.
        let violations: Vec<Violation> = CONTROLS
            .iter()
            .filter_map(|control| {
                let detail = (control.check)(&subject, settings)?;
                Some(Violation {
                    control: control.id,
                    detail,
                })
            })
            .collect();
        if violations.is_empty() {
            return Verdict::allow();
        }
        let controls: Vec<&str> = violations.iter().map(|v| v.control).collect();
        Verdict::deny(message::denial(&violations)).annotate("controls", controls.join(","))
    }
}

export_policy!(HostIsolation);

/// Whether the request creates a Docker exec. Kubernetes `pods/exec`
/// arrives as `PodExecOptions` without a workload; only the Docker proxy
/// describes the exec process, under its own group.
fn is_docker_exec(kind: &GroupVersionKind) -> bool {
    kind.group == "docker" && kind.kind == "Exec"
}

#[cfg(test)]
mod tests;
