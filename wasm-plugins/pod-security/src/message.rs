//! Wording of denials: the names of the fields a person must change, in the
//! vocabulary of the front door they used, and the helpers upstream's
//! messages are built from.
//!
//! The checks themselves are written once, against the normalized workload;
//! only the words differ between a Kubernetes pod (`securityContext.privileged`)
//! and a Docker container (`HostConfig.Privileged`). Every such word lives in
//! [`Fields`], so adding a front door means adding one table here.

use std::borrow::Cow;

use portcullis_policy_sdk::types::{Origin, SecurityProfile, Volume};

use crate::settings::Settings;

/// The words a denial uses for the fields of one front door.
///
/// Each entry is the phrase upstream's `ForbiddenDetail` uses (for
/// Kubernetes, verbatim), or its Docker Engine API equivalent.
#[derive(Debug)]
pub(crate) struct Fields {
    /// Which vocabulary this is, for the values rendered by the methods.
    origin: Origin,
    /// A privileged container.
    pub(crate) privileged: &'static str,
    /// The host's network namespace.
    pub(crate) host_network: &'static str,
    /// The host's PID namespace.
    pub(crate) host_pid: &'static str,
    /// The host's IPC namespace.
    pub(crate) host_ipc: &'static str,
    /// The list of added capabilities.
    pub(crate) capabilities_add: &'static str,
    /// Dropping every capability.
    pub(crate) capabilities_drop_all: &'static str,
    /// The seccomp profile.
    pub(crate) seccomp_profile: &'static str,
    /// The seccomp profiles the restricted level accepts.
    pub(crate) seccomp_allowed: &'static str,
    /// The AppArmor profile.
    pub(crate) app_armor_profile: &'static str,
    /// SELinux labels.
    pub(crate) se_linux_options: &'static str,
    /// The `/proc` mount type.
    pub(crate) proc_mount: &'static str,
    /// Running as uid 0.
    pub(crate) run_as_user_root: &'static str,
    /// Explicitly allowing root.
    pub(crate) run_as_non_root_false: &'static str,
    /// Requiring a non-root user.
    pub(crate) run_as_non_root_true: &'static str,
    /// Forbidding privilege escalation.
    pub(crate) no_privilege_escalation: &'static str,
    /// A Windows host process.
    pub(crate) host_process: &'static str,
    /// A volume (singular, plural).
    pub(crate) volume: (&'static str, &'static str),
    /// A port opened on the host (singular, plural).
    pub(crate) host_port: (&'static str, &'static str),
    /// Kernel parameters.
    pub(crate) sysctls: &'static str,
    /// How a message offers the pod-wide setting as an alternative to the
    /// per-container one; Docker has no pod, so it offers nothing.
    pub(crate) pod_or: &'static str,
}

/// Upstream's words, unchanged, so messages match what `kubectl` users know.
static KUBERNETES: Fields = Fields {
    origin: Origin::Kubernetes,
    privileged: "securityContext.privileged=true",
    host_network: "hostNetwork=true",
    host_pid: "hostPID=true",
    host_ipc: "hostIPC=true",
    capabilities_add: "securityContext.capabilities.add",
    capabilities_drop_all: r#"securityContext.capabilities.drop=["ALL"]"#,
    seccomp_profile: "securityContext.seccompProfile.type",
    seccomp_allowed: r#""RuntimeDefault" or "Localhost""#,
    app_armor_profile: "AppArmor profile type",
    se_linux_options: "securityContext.seLinuxOptions",
    proc_mount: "securityContext.procMount",
    run_as_user_root: "runAsUser=0",
    run_as_non_root_false: "securityContext.runAsNonRoot=false",
    run_as_non_root_true: "securityContext.runAsNonRoot=true",
    no_privilege_escalation: "securityContext.allowPrivilegeEscalation=false",
    host_process: "securityContext.windowsOptions.hostProcess=true",
    volume: ("volume", "volumes"),
    host_port: ("hostPort", "hostPorts"),
    sysctls: "securityContext.sysctls",
    pod_or: "pod or ",
};

/// The Docker Engine API's fields (`docker run` flags map onto them one to
/// one), as the normalized workload's documentation maps them.
static DOCKER: Fields = Fields {
    origin: Origin::Docker,
    privileged: "HostConfig.Privileged=true",
    host_network: "HostConfig.NetworkMode=host",
    host_pid: "HostConfig.PidMode=host",
    host_ipc: "HostConfig.IpcMode=host",
    capabilities_add: "HostConfig.CapAdd",
    capabilities_drop_all: r#"HostConfig.CapDrop=["ALL"]"#,
    seccomp_profile: "HostConfig.SecurityOpt seccomp",
    seccomp_allowed: "the engine's default profile",
    app_armor_profile: "HostConfig.SecurityOpt apparmor",
    se_linux_options: "HostConfig.SecurityOpt label",
    proc_mount: "HostConfig.SecurityOpt systempaths",
    run_as_user_root: "User=0",
    run_as_non_root_false: "User to root (uid 0)",
    run_as_non_root_true: "User to a non-zero numeric uid",
    no_privilege_escalation: "HostConfig.SecurityOpt no-new-privileges",
    host_process: "securityContext.windowsOptions.hostProcess=true",
    volume: (
        "HostConfig.Binds/Mounts host path",
        "HostConfig.Binds/Mounts host paths",
    ),
    host_port: (
        "HostConfig.PortBindings host port",
        "HostConfig.PortBindings host ports",
    ),
    sysctls: "HostConfig.Sysctls",
    pod_or: "",
};

/// A `docker exec`: the exec body's own fields.
static DOCKER_EXEC: Fields = Fields {
    privileged: "Privileged=true (exec --privileged)",
    ..DOCKER
};

impl Fields {
    /// The vocabulary of a Docker exec.
    pub(crate) fn exec() -> &'static Self {
        &DOCKER_EXEC
    }

    /// The vocabulary of the front door a request came through.
    pub(crate) fn of(origin: Origin) -> &'static Self {
        match origin {
            Origin::Kubernetes => &KUBERNETES,
            Origin::Docker => &DOCKER,
        }
    }

    /// A seccomp or AppArmor profile as the person would have written it.
    pub(crate) fn profile<'a>(&self, profile: &'a SecurityProfile) -> Cow<'a, str> {
        match (self.origin, profile) {
            (Origin::Kubernetes, SecurityProfile::RuntimeDefault) => "RuntimeDefault".into(),
            (Origin::Kubernetes, SecurityProfile::Localhost(_)) => "Localhost".into(),
            (Origin::Kubernetes, SecurityProfile::Unconfined) => "Unconfined".into(),
            // An unknown profile type, kept verbatim as upstream reports it.
            (Origin::Kubernetes, SecurityProfile::Other(kind)) => kind.as_str().into(),
            (Origin::Docker, SecurityProfile::RuntimeDefault) => "default".into(),
            (Origin::Docker, SecurityProfile::Localhost(name)) => name.as_str().into(),
            (Origin::Docker, SecurityProfile::Unconfined) => "unconfined".into(),
            // The client's own profile, inline: its text would swamp the
            // message, and what matters is that nobody vetted it.
            (Origin::Docker, SecurityProfile::Other(_)) => "inline profile".into(),
        }
    }

    /// A `/proc` mount type as the person would have written it.
    pub(crate) fn proc_mount_value<'a>(&self, value: &'a str) -> &'a str {
        match (self.origin, value) {
            (Origin::Docker, "Unmasked") => "unconfined",
            _ => value,
        }
    }

    /// How to name a volume: Kubernetes volumes by name; Docker host mounts
    /// by their host path, which is what the client typed.
    pub(crate) fn volume_name<'a>(&self, volume: &'a Volume) -> &'a str {
        match (self.origin, &volume.host_path) {
            (Origin::Docker, Some(path)) => path,
            _ => &volume.name,
        }
    }
}

/// One failed check: upstream's check ID and its `ForbiddenDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Upstream's check ID, for example `privileged`.
    pub(crate) control: &'static str,
    /// What to change, naming the containers and the field.
    pub(crate) detail: String,
}

/// The denial message, on one line so it survives every client's rendering:
/// `violates PodSecurity "<level>:<version>": <control> (<detail>); …`.
pub(crate) fn denial(settings: &Settings, violations: &[Violation]) -> String {
    let reasons: Vec<String> = violations
        .iter()
        .map(|v| format!("{} ({})", v.control, v.detail))
        .collect();
    format!(
        "violates PodSecurity \"{}:{}\": {}",
        settings.level,
        settings.version,
        reasons.join("; ")
    )
}

/// Upstream's `joinQuote`: `"a", "b"`. Deliberately no escaping, as upstream.
pub(crate) fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|item| format!("\"{}\"", item.as_ref()))
        .collect();
    quoted.join(", ")
}

/// Upstream's `pluralize`.
pub(crate) fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 { singular } else { plural }
}

/// `container "a"` or `containers "a", "b"`.
pub(crate) fn containers<S: AsRef<str>>(names: &[S]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Go's `%q` for the strings these messages quote (annotation values).
/// Rust's debug form escapes the same characters for anything printable.
pub(crate) fn go_quote(value: &str) -> String {
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_pluralizes_like_upstream() {
        assert_eq!(join_quote(["a", "b"]), r#""a", "b""#);
        assert_eq!(join_quote(Vec::<String>::new()), "");
        assert_eq!(containers(&["a"]), r#"container "a""#);
        assert_eq!(containers(&["a", "b"]), r#"containers "a", "b""#);
    }

    #[test]
    fn docker_profiles_read_like_security_opt() {
        let docker = Fields::of(Origin::Docker);
        assert_eq!(docker.profile(&SecurityProfile::Unconfined), "unconfined");
        assert_eq!(
            docker.profile(&SecurityProfile::Other("{\"defaultAction\":…}".into())),
            "inline profile"
        );
        let kubernetes = Fields::of(Origin::Kubernetes);
        assert_eq!(
            kubernetes.profile(&SecurityProfile::Unconfined),
            "Unconfined"
        );
        assert_eq!(
            kubernetes.profile(&SecurityProfile::Other("Bogus".into())),
            "Bogus"
        );
    }
}
