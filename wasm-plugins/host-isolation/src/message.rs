//! Wording of denials, in the vocabulary of the front door the request came
//! through.
//!
//! The checks are written once, against the normalized workload; a Docker
//! user reads `--pid container:db` where a Kubernetes user reads "the pid
//! namespace of container "db"". Every such word lives in [`Words`], so the
//! two vocabularies can be read side by side and a new front door is one
//! more table.
//!
//! Everything a client supplied is quoted with Rust's debug escaping, so a
//! name with a quote or a newline cannot break the one-line message apart.

use portcullis_policy_sdk::types::{Borrowed, BorrowedResource, Origin, Volume};

use crate::path::{HostPath, Relation};

/// The words a denial uses for one front door.
#[derive(Debug)]
pub(crate) struct Words {
    /// Which vocabulary this is, for the phrases built by the methods.
    origin: Origin,
    /// What a denial calls the workload when no container is to blame.
    pub(crate) workload: &'static str,
    /// How a container gets devices.
    pub(crate) device_verb: &'static str,
    /// Host devices given by path.
    pub(crate) host_devices: &'static str,
    /// Device cgroup rules.
    pub(crate) device_rules: &'static str,
    /// The host's UTS namespace.
    pub(crate) host_uts: &'static str,
    /// The host's cgroup namespace.
    pub(crate) host_cgroup: &'static str,
    /// The host's user namespace.
    pub(crate) host_users: &'static str,
    /// How a container joins another's namespace.
    pub(crate) borrow_verb: &'static str,
    /// How a container takes another's volumes.
    pub(crate) volumes_from_verb: &'static str,
    /// A volume's host path.
    host_path: &'static str,
    /// How a privileged exec enters a container.
    pub(crate) privileged_exec: &'static str,
    /// How an exec as root enters a container.
    pub(crate) root_exec: &'static str,
    /// How an exec as a user that may be root enters a container.
    pub(crate) unknown_user_exec: &'static str,
}

/// Kubernetes' field names where it has the field; plain words where only
/// Docker can ask for the thing (the gateway never sets those fields for a
/// pod, but the policy must still say something sensible if one appears).
static KUBERNETES: Words = Words {
    origin: Origin::Kubernetes,
    workload: "pod",
    device_verb: "receive",
    host_devices: "host devices",
    device_rules: "device cgroup rules",
    host_uts: "host UTS namespace",
    host_cgroup: "host cgroup namespace",
    host_users: "hostUsers=true",
    borrow_verb: "share",
    volumes_from_verb: "mount",
    host_path: "hostPath",
    privileged_exec: "by a privileged exec",
    root_exec: "by an exec as runAsUser=0",
    unknown_user_exec: "by an exec as a user that may be root (give runAsUser as a number)",
};

/// The `docker` CLI's flags, which is what a Docker user typed.
static DOCKER: Words = Words {
    origin: Origin::Docker,
    workload: "container",
    device_verb: "use",
    host_devices: "--device",
    device_rules: "--device-cgroup-rule",
    host_uts: "--uts host",
    host_cgroup: "--cgroupns host (or the engine's default: run with --cgroupns private)",
    host_users: "--userns host",
    borrow_verb: "use",
    volumes_from_verb: "use",
    host_path: "host path",
    privileged_exec: "with exec --privileged",
    root_exec: "with exec --user 0",
    unknown_user_exec: "as a user that may be root (a name, or the container's own user when it is a name or unknown): exec with --user <uid>",
};

impl Words {
    /// The vocabulary of the front door a request came through.
    pub(crate) fn of(origin: Origin) -> &'static Self {
        match origin {
            Origin::Kubernetes => &KUBERNETES,
            Origin::Docker => &DOCKER,
        }
    }

    /// A borrowed namespace or volume set: `the pid namespace of container
    /// "db"`, or the flag that asked for it, `--pid container:db`.
    pub(crate) fn borrowed(&self, borrowed: &Borrowed) -> String {
        let (flag, namespace) = match borrowed.resource {
            BorrowedResource::Network => ("--network container:", "network"),
            BorrowedResource::Pid => ("--pid container:", "pid"),
            BorrowedResource::Ipc => ("--ipc container:", "ipc"),
            BorrowedResource::Volumes => ("--volumes-from ", ""),
        };
        let from = &borrowed.container;
        match (self.origin, borrowed.resource) {
            (Origin::Docker, _) => format!("{flag}{}", from.escape_debug()),
            (Origin::Kubernetes, BorrowedResource::Volumes) => {
                format!("the volumes of container {from:?}")
            }
            (Origin::Kubernetes, _) => format!("the {namespace} namespace of container {from:?}"),
        }
    }

    /// The volume a person must change: Kubernetes volumes by name and
    /// path; Docker bind mounts by the host path alone, which is what the
    /// client typed (and the volume's name), other Docker volumes by both.
    pub(crate) fn volume(&self, volume: &Volume, host_path: &str) -> String {
        if self.origin == Origin::Docker && volume.name == host_path {
            format!("{} {host_path:?}", self.host_path)
        } else {
            format!(
                "volume {:?} with {} {host_path:?}",
                volume.name, self.host_path
            )
        }
    }
}

/// Why a host path may not be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exposure<'a> {
    /// It is not absolute, so where it lands depends on the engine's working
    /// directory (or it is not a path at all, like a Windows named pipe).
    NotAbsolute,
    /// It touches a sensitive path.
    Sensitive(Relation, &'a HostPath),
}

impl Exposure<'_> {
    /// The reason, in parentheses after the path.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::NotAbsolute => "not an absolute path".to_owned(),
            Self::Sensitive(Relation::Is, path) => format!("sensitive path {:?}", path.as_str()),
            Self::Sensitive(Relation::Under, path) => {
                format!("under sensitive path {:?}", path.as_str())
            }
            Self::Sensitive(Relation::Contains, path) => {
                format!("contains sensitive path {:?}", path.as_str())
            }
        }
    }
}

/// One violated control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The control's ID, for example `devices`.
    pub(crate) control: &'static str,
    /// What to change, naming the containers and what they asked for.
    pub(crate) detail: String,
}

/// The denial message, on one line so it survives every client's rendering:
/// `violates host-isolation: <control> (<detail>); <control> (<detail>)`.
pub(crate) fn denial(violations: &[Violation]) -> String {
    let reasons: Vec<String> = violations
        .iter()
        .map(|v| format!("{} ({})", v.control, v.detail))
        .collect();
    format!("violates host-isolation: {}", reasons.join("; "))
}

/// `"a", "b"`, escaped.
pub(crate) fn join_quote<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .into_iter()
        .map(|item| format!("{:?}", item.as_ref()))
        .collect();
    quoted.join(", ")
}

/// Who is to blame: `container "a"`, `containers "a", "b"`, or the workload
/// itself when no container is.
pub(crate) fn blame<S: AsRef<str>>(words: &Words, names: &[S]) -> String {
    match names {
        [] => words.workload.to_owned(),
        [_] => format!("container {}", join_quote(names)),
        _ => format!("containers {}", join_quote(names)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn borrowed(resource: BorrowedResource) -> Borrowed {
        Borrowed {
            resource,
            container: "db".into(),
        }
    }

    #[test]
    fn borrowed_resources_read_as_the_flag_or_the_namespace() {
        let docker = Words::of(Origin::Docker);
        assert_eq!(
            docker.borrowed(&borrowed(BorrowedResource::Network)),
            "--network container:db"
        );
        assert_eq!(
            docker.borrowed(&borrowed(BorrowedResource::Ipc)),
            "--ipc container:db"
        );
        assert_eq!(
            docker.borrowed(&borrowed(BorrowedResource::Volumes)),
            "--volumes-from db"
        );
        let kubernetes = Words::of(Origin::Kubernetes);
        assert_eq!(
            kubernetes.borrowed(&borrowed(BorrowedResource::Pid)),
            r#"the pid namespace of container "db""#
        );
        assert_eq!(
            kubernetes.borrowed(&borrowed(BorrowedResource::Volumes)),
            r#"the volumes of container "db""#
        );
    }

    #[test]
    fn client_supplied_names_cannot_break_the_line() {
        let docker = Words::of(Origin::Docker);
        let sneaky = Borrowed {
            resource: BorrowedResource::Pid,
            container: "db\nvalidated: ok".into(),
        };
        assert_eq!(
            docker.borrowed(&sneaky),
            r"--pid container:db\nvalidated: ok"
        );
        assert_eq!(blame(docker, &["a\"b", "c"]), r#"containers "a\"b", "c""#);
        assert_eq!(blame(docker, &[] as &[&str]), "container");
        assert_eq!(blame(Words::of(Origin::Kubernetes), &[] as &[&str]), "pod");
    }
}
