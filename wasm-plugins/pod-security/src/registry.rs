//! Which checks apply at which level and version: upstream's
//! `policy/registry.go`, as a table.
//!
//! Every check has revisions, each applying from a minimum version until the
//! next one. A baseline check applies to both levels; a restricted revision
//! may override baseline checks it supersedes (`capabilities_restricted`
//! replaces `capabilities_baseline`), so restricted reports the stricter
//! reason only. Exemptions that upstream wraps around a check function
//! (Windows pods from v1.25, user-namespaced pods from v1.35) are data here
//! too, so a version's rules can be read off one row.
//!
//! [`CHECKS`] is listed in upstream's evaluation order, baseline IDs sorted
//! then restricted IDs sorted, so messages list reasons as `kubectl` does.

use crate::checks::{self, Pod};
use crate::settings::{Level, Version};

/// A check function: `None` if the pod passes, else what to change.
type Rule = fn(&Pod<'_>) -> Option<String>;

/// The level a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Applies to baseline and restricted.
    Baseline,
    /// Applies to restricted only.
    Restricted,
}

/// Pods a revision lets through without looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exemption {
    /// None.
    Nobody,
    /// Pods for Windows nodes, where the field cannot be set at all (API
    /// validation rejects it), so demanding it would reject every such pod.
    WindowsPods,
    /// Pods with `hostUsers: false`, whose root and `/proc` are confined to
    /// their own user namespace (KEP-127).
    UserNamespacePods,
}

/// One revision of a check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Revision {
    /// First minor version (of 1.x) it applies to.
    pub(crate) since: u32,
    /// The check.
    pub(crate) rule: Rule,
    /// Pods it does not look at.
    pub(crate) exempt: Exemption,
    /// Baseline checks it replaces while it applies.
    pub(crate) overrides: &'static [&'static str],
}

/// A revision applying from v1.`since`.
const fn since(since: u32, rule: Rule) -> Revision {
    Revision {
        since,
        rule,
        exempt: Exemption::Nobody,
        overrides: &[],
    }
}

impl Revision {
    const fn exempting(mut self, exempt: Exemption) -> Self {
        self.exempt = exempt;
        self
    }

    const fn overriding(mut self, overrides: &'static [&'static str]) -> Self {
        self.overrides = overrides;
        self
    }

    /// Runs the check unless the pod is exempt.
    pub(crate) fn check(&self, pod: &Pod<'_>) -> Option<String> {
        let exempt = match self.exempt {
            Exemption::Nobody => false,
            Exemption::WindowsPods => pod.is_windows(),
            Exemption::UserNamespacePods => pod.in_user_namespace(),
        };
        if exempt { None } else { (self.rule)(pod) }
    }
}

/// A check: upstream's ID, level and revisions in increasing version order.
#[derive(Debug)]
pub(crate) struct Check {
    /// Upstream's check ID, reported in messages.
    pub(crate) id: &'static str,
    /// Its level.
    pub(crate) tier: Tier,
    /// Its revisions, strictly increasing in `since`.
    pub(crate) revisions: &'static [Revision],
}

impl Check {
    /// The revision applying at `minor`, if the check exists yet.
    fn at(&self, minor: u32) -> Option<&'static Revision> {
        self.revisions.iter().rev().find(|r| r.since <= minor)
    }
}

/// Kernel parameters baseline allows, each with the version that first
/// allowed it (upstream's `sysctlsAllowedV1Dot*` sets, each a superset of the
/// last).
const SAFE_SYSCTLS: &[(u32, &str)] = &[
    (0, "kernel.shm_rmid_forced"),
    (0, "net.ipv4.ip_local_port_range"),
    (0, "net.ipv4.tcp_syncookies"),
    (0, "net.ipv4.ping_group_range"),
    (0, "net.ipv4.ip_unprivileged_port_start"),
    (27, "net.ipv4.ip_local_reserved_ports"),
    (29, "net.ipv4.tcp_keepalive_time"),
    (29, "net.ipv4.tcp_fin_timeout"),
    (29, "net.ipv4.tcp_keepalive_intvl"),
    (29, "net.ipv4.tcp_keepalive_probes"),
    (32, "net.ipv4.tcp_rmem"),
    (32, "net.ipv4.tcp_wmem"),
    (37, "net.ipv4.tcp_slow_start_after_idle"),
    (37, "net.ipv4.tcp_notsent_lowat"),
];

/// SELinux types baseline allows, each with the version that first allowed
/// it; `container_engine_t` is for running a container engine in a container.
const SELINUX_TYPES: &[(u32, &str)] = &[
    (0, ""),
    (0, "container_t"),
    (0, "container_init_t"),
    (0, "container_kvm_t"),
    (31, "container_engine_t"),
];

/// Membership in a versioned allow-list as it stood at v1.`minor`.
fn allowed_at(list: &'static [(u32, &str)], minor: u32) -> impl Fn(&str) -> bool {
    move |value| {
        list.iter()
            .any(|&(since, allowed)| since <= minor && allowed == value)
    }
}

/// Every check, in upstream's evaluation order.
pub(crate) static CHECKS: &[Check] = &[
    // ---- baseline, IDs sorted ----
    Check {
        id: "appArmorProfile",
        tier: Tier::Baseline,
        revisions: &[since(0, checks::app_armor_profile)],
    },
    Check {
        id: "capabilities_baseline",
        tier: Tier::Baseline,
        revisions: &[since(0, checks::capabilities_baseline)],
    },
    Check {
        id: "hostNamespaces",
        tier: Tier::Baseline,
        revisions: &[since(0, checks::host_namespaces)],
    },
    Check {
        id: "hostPathVolumes",
        tier: Tier::Baseline,
        revisions: &[since(0, checks::host_path_volumes)],
    },
    Check {
        id: "hostPorts",
        tier: Tier::Baseline,
        revisions: &[since(0, checks::host_ports)],
    },
    Check {
        id: "hostProbesAndHostLifecycle",
        tier: Tier::Baseline,
        revisions: &[since(34, checks::host_probes_and_host_lifecycle)],
    },
    Check {
        id: "privileged",
        tier: Tier::Baseline,
        revisions: &[since(0, checks::privileged)],
    },
    Check {
        id: "procMount",
        tier: Tier::Baseline,
        revisions: &[
            since(0, checks::proc_mount),
            since(35, checks::proc_mount).exempting(Exemption::UserNamespacePods),
        ],
    },
    Check {
        id: "seLinuxOptions",
        tier: Tier::Baseline,
        revisions: &[
            since(0, |pod| {
                checks::se_linux_options(pod, allowed_at(SELINUX_TYPES, 0))
            }),
            since(31, |pod| {
                checks::se_linux_options(pod, allowed_at(SELINUX_TYPES, 31))
            }),
        ],
    },
    Check {
        id: "seccompProfile_baseline",
        tier: Tier::Baseline,
        revisions: &[
            // The alpha annotations until v1.19 made the field GA.
            since(0, checks::seccomp_annotations),
            since(19, checks::seccomp_baseline),
        ],
    },
    Check {
        id: "sysctls",
        tier: Tier::Baseline,
        revisions: &[
            since(0, |pod| checks::sysctls(pod, allowed_at(SAFE_SYSCTLS, 0))),
            since(27, |pod| checks::sysctls(pod, allowed_at(SAFE_SYSCTLS, 27))),
            since(29, |pod| checks::sysctls(pod, allowed_at(SAFE_SYSCTLS, 29))),
            since(32, |pod| checks::sysctls(pod, allowed_at(SAFE_SYSCTLS, 32))),
            since(37, |pod| checks::sysctls(pod, allowed_at(SAFE_SYSCTLS, 37))),
        ],
    },
    Check {
        id: "windowsHostProcess",
        tier: Tier::Baseline,
        revisions: &[since(0, checks::windows_host_process)],
    },
    // ---- restricted, IDs sorted ----
    Check {
        id: "allowPrivilegeEscalation",
        tier: Tier::Restricted,
        revisions: &[
            // The field exists from v1.8.
            since(8, checks::allow_privilege_escalation),
            since(25, checks::allow_privilege_escalation).exempting(Exemption::WindowsPods),
        ],
    },
    Check {
        id: "capabilities_restricted",
        tier: Tier::Restricted,
        revisions: &[
            since(22, checks::capabilities_restricted).overriding(&["capabilities_baseline"]),
            since(25, checks::capabilities_restricted)
                .exempting(Exemption::WindowsPods)
                .overriding(&["capabilities_baseline"]),
        ],
    },
    Check {
        id: "procMount_restricted",
        tier: Tier::Restricted,
        // Baseline relaxes procMount for user-namespaced pods from v1.35;
        // restricted keeps the unconditional rule by replacing it.
        revisions: &[since(35, checks::proc_mount).overriding(&["procMount"])],
    },
    Check {
        id: "restrictedVolumes",
        tier: Tier::Restricted,
        revisions: &[since(0, checks::restricted_volumes).overriding(&["hostPathVolumes"])],
    },
    Check {
        id: "runAsNonRoot",
        tier: Tier::Restricted,
        revisions: &[
            since(0, checks::run_as_non_root),
            since(35, checks::run_as_non_root).exempting(Exemption::UserNamespacePods),
        ],
    },
    Check {
        id: "runAsUser",
        tier: Tier::Restricted,
        revisions: &[
            since(23, checks::run_as_user),
            since(35, checks::run_as_user).exempting(Exemption::UserNamespacePods),
        ],
    },
    Check {
        id: "seccompProfile_restricted",
        tier: Tier::Restricted,
        revisions: &[
            since(19, checks::seccomp_restricted).overriding(&["seccompProfile_baseline"]),
            since(25, checks::seccomp_restricted)
                .exempting(Exemption::WindowsPods)
                .overriding(&["seccompProfile_baseline"]),
        ],
    },
];

/// The newest version any check knows: what `latest`, and any newer pinned
/// version, evaluate as.
pub(crate) const NEWEST: u32 = newest(CHECKS);

const fn newest(checks: &[Check]) -> u32 {
    let mut newest = 0;
    let mut i = 0;
    while i < checks.len() {
        let revisions = checks[i].revisions;
        if !revisions.is_empty() && revisions[revisions.len() - 1].since > newest {
            newest = revisions[revisions.len() - 1].since;
        }
        i += 1;
    }
    newest
}

/// The minor version `version` evaluates as.
pub(crate) fn effective_minor(version: Version) -> u32 {
    match version {
        Version::Latest => NEWEST,
        Version::Minor(minor) => minor.min(NEWEST),
    }
}

/// The checks to run for `level` at `version`, in evaluation order, each
/// with the revision that applies.
pub(crate) fn applicable(level: Level, version: Version) -> Vec<(&'static str, &'static Revision)> {
    let tiers: &[Tier] = match level {
        Level::Privileged => return Vec::new(),
        Level::Baseline => &[Tier::Baseline],
        Level::Restricted => &[Tier::Baseline, Tier::Restricted],
    };
    let minor = effective_minor(version);
    let active: Vec<(&Check, &Revision)> = CHECKS
        .iter()
        .filter(|c| tiers.contains(&c.tier))
        .filter_map(|c| Some((c, c.at(minor)?)))
        .collect();
    let overridden = |id: &str| {
        active
            .iter()
            .any(|(_, revision)| revision.overrides.contains(&id))
    };
    active
        .iter()
        .filter(|(check, _)| !overridden(check.id))
        .map(|(check, revision)| (check.id, *revision))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(level: Level, minor: u32) -> Vec<&'static str> {
        applicable(level, Version::Minor(minor))
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn table_is_in_upstream_order() {
        let baseline: Vec<&str> = CHECKS
            .iter()
            .filter(|c| c.tier == Tier::Baseline)
            .map(|c| c.id)
            .collect();
        let restricted: Vec<&str> = CHECKS
            .iter()
            .filter(|c| c.tier == Tier::Restricted)
            .map(|c| c.id)
            .collect();
        // Go sorts strings bytewise, as Rust does.
        assert!(baseline.is_sorted(), "{baseline:?}");
        assert!(restricted.is_sorted(), "{restricted:?}");
        let all: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
        assert_eq!(all, [baseline, restricted].concat());
    }

    #[test]
    fn table_is_well_formed_like_upstream_validate_checks() {
        for check in CHECKS {
            assert!(!check.revisions.is_empty(), "{}", check.id);
            assert!(
                check.revisions.windows(2).all(|w| w[0].since < w[1].since),
                "{}: versions must be strictly increasing",
                check.id
            );
            for revision in check.revisions {
                for overridden in revision.overrides {
                    assert_eq!(check.tier, Tier::Restricted, "{}", check.id);
                    let target = CHECKS.iter().find(|c| c.id == *overridden);
                    assert_eq!(
                        target.map(|c| c.tier),
                        Some(Tier::Baseline),
                        "{} overrides {overridden}",
                        check.id
                    );
                }
            }
        }
    }

    #[test]
    fn newest_known_version_is_1_37() {
        assert_eq!(NEWEST, 37);
        assert_eq!(effective_minor(Version::Latest), 37);
        assert_eq!(effective_minor(Version::Minor(99)), 37);
        assert_eq!(effective_minor(Version::Minor(20)), 20);
    }

    #[test]
    fn privileged_runs_nothing() {
        assert!(applicable(Level::Privileged, Version::Latest).is_empty());
    }

    #[test]
    fn baseline_at_latest_runs_every_baseline_check() {
        assert_eq!(
            ids(Level::Baseline, 37),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPathVolumes",
                "hostPorts",
                "hostProbesAndHostLifecycle",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
            ]
        );
    }

    #[test]
    fn restricted_at_latest_replaces_overridden_baseline_checks() {
        assert_eq!(
            ids(Level::Restricted, 37),
            [
                "appArmorProfile",
                "hostNamespaces",
                "hostPorts",
                "hostProbesAndHostLifecycle",
                "privileged",
                "seLinuxOptions",
                "sysctls",
                "windowsHostProcess",
                "allowPrivilegeEscalation",
                "capabilities_restricted",
                "procMount_restricted",
                "restrictedVolumes",
                "runAsNonRoot",
                "runAsUser",
                "seccompProfile_restricted",
            ]
        );
    }

    #[test]
    fn restricted_at_1_0_keeps_the_baseline_checks_not_yet_overridden() {
        assert_eq!(
            ids(Level::Restricted, 0),
            [
                "appArmorProfile",
                "capabilities_baseline",
                "hostNamespaces",
                "hostPorts",
                "privileged",
                "procMount",
                "seLinuxOptions",
                "seccompProfile_baseline",
                "sysctls",
                "windowsHostProcess",
                "restrictedVolumes",
                "runAsNonRoot",
            ]
        );
    }

    #[test]
    fn overrides_start_with_the_revision_that_declares_them() {
        let has = |minor, id| ids(Level::Restricted, minor).contains(&id);
        assert!(has(21, "capabilities_baseline") && !has(21, "capabilities_restricted"));
        assert!(!has(22, "capabilities_baseline") && has(22, "capabilities_restricted"));
        assert!(has(18, "seccompProfile_baseline") && !has(18, "seccompProfile_restricted"));
        assert!(!has(19, "seccompProfile_baseline") && has(19, "seccompProfile_restricted"));
        assert!(has(34, "procMount") && !has(34, "procMount_restricted"));
        assert!(!has(35, "procMount") && has(35, "procMount_restricted"));
        assert!(!has(7, "allowPrivilegeEscalation") && has(8, "allowPrivilegeEscalation"));
        assert!(!has(22, "runAsUser") && has(23, "runAsUser"));
        assert!(!has(33, "hostProbesAndHostLifecycle") && has(34, "hostProbesAndHostLifecycle"));
        // Baseline keeps its own checks whatever restricted does.
        assert!(ids(Level::Baseline, 37).contains(&"procMount"));
    }
}
