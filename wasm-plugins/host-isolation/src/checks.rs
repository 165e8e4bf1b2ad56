//! The controls, one function each, and [`CONTROLS`], the order they are
//! evaluated and reported in.
//!
//! Each function returns `None` when the workload passes and otherwise what
//! to change, naming the containers to blame in the words of the request's
//! front door ([`Words`]). Settings that relax a control are applied here,
//! beside the rule they relax, so each control reads in one place.

use portcullis_policy_sdk::types::{BorrowedResource, Container, Workload};

use crate::message::{Exposure, Words, blame, join_quote};
use crate::path::{HostPath, Relation};
use crate::settings::Settings;

/// What the checks look at.
pub(crate) struct Subject<'a> {
    /// The workload (for an exec, the exec process).
    pub(crate) workload: &'a Workload,
    /// Whether the request is a Docker exec, which enters a running
    /// container instead of starting one.
    pub(crate) exec: bool,
    /// How to word details.
    pub(crate) words: &'static Words,
}

impl<'a> Subject<'a> {
    /// Names of the containers for which `bad` holds, in workload order.
    fn containers_where(&self, bad: impl Fn(&Container) -> bool) -> Vec<&'a str> {
        self.workload
            .containers
            .iter()
            .filter(|c| bad(c))
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Every container's name: a borrowed namespace or volume set belongs
    /// to the whole workload (one container, for Docker).
    fn all_containers(&self) -> Vec<&'a str> {
        self.containers_where(|_| true)
    }
}

/// A control: `None` if the workload passes, else what to change.
type Check = fn(&Subject<'_>, &Settings) -> Option<String>;

/// One control: its ID, reported in messages and the `controls`
/// annotation, and its check.
#[derive(Debug)]
pub(crate) struct Control {
    /// The ID, for example `devices`.
    pub(crate) id: &'static str,
    /// The check.
    pub(crate) check: Check,
}

/// Every control, in reporting order: what a container is given at start
/// (devices, namespaces, volumes), then how it may be entered later.
pub(crate) static CONTROLS: &[Control] = &[
    Control {
        id: "devices",
        check: devices,
    },
    Control {
        id: "hostNamespaces",
        check: host_namespaces,
    },
    Control {
        id: "borrowedNamespaces",
        check: borrowed_namespaces,
    },
    Control {
        id: "volumesFrom",
        check: volumes_from,
    },
    Control {
        id: "sensitivePaths",
        check: sensitive_paths,
    },
    Control {
        id: "privilegedExec",
        check: privileged_exec,
    },
    Control {
        id: "rootExec",
        check: root_exec,
    },
];

/// `devices`: no host devices but the allowed ones, and no device cgroup
/// rules, which grant device numbers and so (with the default `MKNOD`
/// capability) any host device at all.
fn devices(subject: &Subject<'_>, settings: &Settings) -> Option<String> {
    let words = subject.words;
    let allowed = |host_path: &str| {
        HostPath::parse(host_path).is_some_and(|path| settings.allowed_devices.contains(&path))
    };
    let clauses: Vec<String> = subject
        .workload
        .containers
        .iter()
        .filter_map(|container| {
            let mut paths = Vec::new();
            let mut rules = Vec::new();
            for device in &container.devices {
                // The gateway reports a cgroup rule as a device without a
                // path, the rule in `permissions`.
                if device.host_path.is_empty() {
                    if !settings.allow_device_rules {
                        rules.push(device.permissions.as_str());
                    }
                } else if !allowed(&device.host_path) {
                    paths.push(device.host_path.as_str());
                }
            }
            let mut given = Vec::new();
            if !paths.is_empty() {
                given.push(format!("{} {}", words.host_devices, join_quote(&paths)));
            }
            if !rules.is_empty() {
                given.push(format!("{} {}", words.device_rules, join_quote(&rules)));
            }
            (!given.is_empty()).then(|| {
                format!(
                    "{} must not {} {}",
                    blame(words, &[container.name.as_str()]),
                    words.device_verb,
                    given.join(" or ")
                )
            })
        })
        .collect();
    (!clauses.is_empty()).then(|| clauses.join(", "))
}

/// `hostNamespaces`: none of the host namespaces pod-security leaves alone.
/// Network, PID and IPC are pod-security's `hostNamespaces`; repeating them
/// would report one mistake twice when both policies run.
fn host_namespaces(subject: &Subject<'_>, _settings: &Settings) -> Option<String> {
    let workload = subject.workload;
    let words = subject.words;
    let shared: Vec<&str> = [
        (workload.host_uts, words.host_uts),
        (workload.host_cgroup, words.host_cgroup),
        // Only an explicit request: unset is the runtime's default, which
        // for a pod is the host's user namespace too, and denying it would
        // deny every pod.
        (workload.host_users == Some(true), words.host_users),
    ]
    .into_iter()
    .filter_map(|(set, phrase)| set.then_some(phrase))
    .collect();
    (!shared.is_empty()).then(|| shared.join(", "))
}

/// `borrowedNamespaces`: no joining another container's network, PID or
/// IPC namespace, which reaches into that container as surely as the host's
/// namespace reaches into the host.
fn borrowed_namespaces(subject: &Subject<'_>, settings: &Settings) -> Option<String> {
    borrowing(subject, settings, subject.words.borrow_verb, |resource| {
        resource != BorrowedResource::Volumes
    })
}

/// `volumesFrom`: no mounting another container's volumes, which may be
/// host paths this policy would refuse if asked for directly.
fn volumes_from(subject: &Subject<'_>, settings: &Settings) -> Option<String> {
    borrowing(
        subject,
        settings,
        subject.words.volumes_from_verb,
        |resource| resource == BorrowedResource::Volumes,
    )
}

/// The borrowed resources `matches` selects, unless borrowing is allowed.
fn borrowing(
    subject: &Subject<'_>,
    settings: &Settings,
    verb: &str,
    matches: impl Fn(BorrowedResource) -> bool,
) -> Option<String> {
    if settings.allow_borrowing {
        return None;
    }
    let borrowed: Vec<String> = subject
        .workload
        .borrowed
        .iter()
        .filter(|b| matches(b.resource))
        .map(|b| subject.words.borrowed(b))
        .collect();
    (!borrowed.is_empty()).then(|| {
        format!(
            "{} must not {verb} {}",
            blame(subject.words, &subject.all_containers()),
            borrowed.join(", ")
        )
    })
}

/// `sensitivePaths`: no volume may expose a sensitive host path, by being
/// it, lying under it, or containing it; nor may it use a relative host
/// path, which the policy cannot place. This holds even where hostPath
/// volumes are otherwise allowed: it is the line beneath that permission.
fn sensitive_paths(subject: &Subject<'_>, settings: &Settings) -> Option<String> {
    let words = subject.words;
    let clauses: Vec<String> = subject
        .workload
        .volumes
        .iter()
        .filter_map(|volume| {
            let written = volume.host_path.as_deref()?;
            let exposure = match HostPath::parse(written) {
                None => Exposure::NotAbsolute,
                Some(path) => {
                    let (relation, sensitive) =
                        closest_sensitive(&path, &settings.sensitive_paths)?;
                    Exposure::Sensitive(relation, sensitive)
                }
            };
            let mounting = subject.containers_where(|c| {
                c.volume_mounts
                    .iter()
                    .any(|mount| mount.name == volume.name)
            });
            Some(format!(
                "{} must not mount {} ({})",
                blame(words, &mounting),
                words.volume(volume, written),
                exposure.describe()
            ))
        })
        .collect();
    (!clauses.is_empty()).then(|| clauses.join(", "))
}

/// The sensitive path that best explains why `path` is refused: the path
/// itself; else the deepest one it lies under (`/etc/ssl`, not `/etc`, if
/// both are listed); else the first one it contains, in the order listed.
fn closest_sensitive<'s>(
    path: &HostPath,
    sensitive: &'s [HostPath],
) -> Option<(Relation, &'s HostPath)> {
    let touched: Vec<(Relation, &HostPath)> = sensitive
        .iter()
        .filter_map(|s| Some((path.relation_to(s)?, s)))
        .collect();
    let find = |wanted: Relation| {
        touched
            .iter()
            .filter(move |(r, _)| *r == wanted)
            .map(|(_, s)| *s)
    };
    if let Some(same) = find(Relation::Is).next() {
        return Some((Relation::Is, same));
    }
    if let Some(deepest) = find(Relation::Under).max_by_key(|s| s.as_str().len()) {
        return Some((Relation::Under, deepest));
    }
    find(Relation::Contains)
        .next()
        .map(|s| (Relation::Contains, s))
}

/// `privilegedExec`: no privileged process entering a running container;
/// it gets every capability and device of the host whatever the container
/// was started with.
fn privileged_exec(subject: &Subject<'_>, settings: &Settings) -> Option<String> {
    if !subject.exec || settings.allow_privileged_exec {
        return None;
    }
    let bad = subject.containers_where(|c| c.security_context.privileged == Some(true));
    (!bad.is_empty()).then(|| {
        format!(
            "{} must not be entered {}",
            blame(subject.words, &bad),
            subject.words.privileged_exec
        )
    })
}

/// `rootExec`: no process entering a running container as uid 0, when the
/// operator opts in. A user the gateway could not resolve to a number (a
/// name, which only the container's own `/etc/passwd` resolves, or the
/// user of a container it could not look up) may be root, and is refused
/// as root is.
fn root_exec(subject: &Subject<'_>, settings: &Settings) -> Option<String> {
    if !subject.exec || settings.allow_root_exec {
        return None;
    }
    let pod_user = subject.workload.security_context.run_as_user;
    let user = |c: &Container| c.security_context.run_as_user.or(pod_user);
    let root = subject.containers_where(|c| user(c) == Some(0));
    let unknown = subject.containers_where(|c| user(c).is_none());
    let clauses: Vec<String> = [
        (root, subject.words.root_exec),
        (unknown, subject.words.unknown_user_exec),
    ]
    .into_iter()
    .filter(|(bad, _)| !bad.is_empty())
    .map(|(bad, how)| format!("{} must not be entered {how}", blame(subject.words, &bad)))
    .collect();
    (!clauses.is_empty()).then(|| clauses.join(", "))
}
