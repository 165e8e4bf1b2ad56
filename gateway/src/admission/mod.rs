//! The decision core.
//!
//! A front door turns what it received into a [`Request`]: the raw object,
//! plus a normalized [`Workload`] when the object describes something that
//! runs ([`kubernetes::normalize`] for pods and their controllers,
//! [`docker::normalize`] for a container-create body). The [`Pipeline`] then
//! runs every matching policy and merges their verdicts into a [`Decision`].
//! Nothing here knows about HTTP.
//!
//! The request model is the record set of the `portcullis:policy` WIT
//! package, so requests reach policies exactly as built here.

pub mod docker;
mod gojson;
pub mod kubernetes;
mod matcher;
mod pipeline;

pub use crate::policy::bindings::types::{
    Borrowed, BorrowedResource, Capabilities, Container, ContainerKind, Device, GroupVersionKind,
    HandlerHost, Image, Operation, Origin, PodSecurityContext, Port, Request, SeLinuxOptions,
    SecurityContext, SecurityProfile, Sysctl, UserInfo, Verification, Volume, VolumeMount, Workload,
};
pub use pipeline::{Decision, Effect, Outcome, Pipeline, PipelineError, PolicyOutcome};

/// Why an object could not be read: the path of the offending field and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct NormalizeError {
    /// Path of the field (`spec.containers[0].securityContext`), empty for
    /// the whole object.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl NormalizeError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Lists the images of a workload, each once, in order of first use, with
/// the containers that run it.
pub fn images(workload: &Workload) -> Vec<Image> {
    let mut images: Vec<Image> = Vec::new();
    for container in &workload.containers {
        match images.iter_mut().find(|image| image.reference == container.image) {
            Some(image) => image.containers.push(container.name.clone()),
            None => images.push(Image {
                reference: container.image.clone(),
                containers: vec![container.name.clone()],
                verification: None,
            }),
        }
    }
    images
}

impl Operation {
    /// The Kubernetes spelling: `CREATE`, `UPDATE`, `DELETE`, `CONNECT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

impl Origin {
    /// `kubernetes` or `docker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Kubernetes => "kubernetes",
            Origin::Docker => "docker",
        }
    }
}

impl Default for UserInfo {
    fn default() -> Self {
        Self {
            name: String::new(),
            uid: String::new(),
            groups: Vec::new(),
        }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            add: Vec::new(),
            drop: Vec::new(),
        }
    }
}

impl Default for SecurityContext {
    fn default() -> Self {
        Self {
            privileged: None,
            allow_privilege_escalation: None,
            capabilities: Capabilities::default(),
            run_as_user: None,
            run_as_group: None,
            run_as_non_root: None,
            read_only_root_filesystem: None,
            seccomp_profile: None,
            app_armor_profile: None,
            se_linux_options: None,
            proc_mount: None,
            windows_host_process: None,
        }
    }
}

impl Default for PodSecurityContext {
    fn default() -> Self {
        Self {
            run_as_user: None,
            run_as_group: None,
            run_as_non_root: None,
            fs_group: None,
            supplemental_groups: Vec::new(),
            seccomp_profile: None,
            app_armor_profile: None,
            se_linux_options: None,
            windows_host_process: None,
            sysctls: Vec::new(),
        }
    }
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            template_path: None,
            labels: Vec::new(),
            annotations: Vec::new(),
            os: None,
            host_network: false,
            host_pid: false,
            host_ipc: false,
            host_uts: false,
            host_cgroup: false,
            host_users: None,
            security_context: PodSecurityContext::default(),
            containers: Vec::new(),
            volumes: Vec::new(),
            borrowed: Vec::new(),
        }
    }
}
