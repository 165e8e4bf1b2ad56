//! The controls of the Pod Security Standards, one function per revision of
//! upstream's `policy/check_*.go`, on the normalized workload.
//!
//! Each function returns `None` when the pod passes and otherwise upstream's
//! `ForbiddenDetail`, word for word for Kubernetes pods (field names come from
//! [`Fields`], so Docker containers read in Docker's terms). Lists that
//! upstream keeps in a sorted set are sorted here too, and containers are
//! visited in upstream's order (init, regular, ephemeral), so messages are
//! stable and comparable with `kubectl`'s.
//!
//! Which function applies at which version, and when a pod is exempt, is
//! [`crate::registry`]'s business, not theirs.

use std::collections::BTreeSet;

use portcullis_policy_sdk::types::{
    Container, ContainerKind, Origin, SeLinuxOptions, SecurityProfile, Volume, Workload,
};

use crate::message::{Fields, containers, go_quote, join_quote, pluralize};

/// The workload as the checks see it.
pub(crate) struct Pod<'a> {
    /// The workload itself.
    pub(crate) workload: &'a Workload,
    /// Its containers in upstream's visiting order.
    containers: Vec<&'a Container>,
    /// How to name fields in messages.
    pub(crate) fields: &'static Fields,
}

impl<'a> Pod<'a> {
    /// Views `workload`, which came through `origin`.
    pub(crate) fn new(workload: &'a Workload, origin: Origin) -> Self {
        let mut containers: Vec<&Container> = workload.containers.iter().collect();
        // Upstream's visitContainers order; the host need not list them so.
        containers.sort_by_key(|c| {
            let list = match c.kind {
                ContainerKind::Init => 0,
                ContainerKind::Regular => 1,
                ContainerKind::Ephemeral => 2,
            };
            (list, c.index)
        });
        Self {
            workload,
            containers,
            fields: Fields::of(origin),
        }
    }

    /// Names of the containers for which `bad` holds, in visiting order.
    fn containers_where(&self, bad: impl Fn(&Container) -> bool) -> Vec<&'a str> {
        self.containers
            .iter()
            .filter(|c| bad(c))
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Whether the pod asks for Windows nodes (`spec.os.name: windows`),
    /// where the Linux-only controls cannot be set at all.
    pub(crate) fn is_windows(&self) -> bool {
        self.workload.os.as_deref() == Some("windows")
    }

    /// Whether the pod runs in its own user namespace (`hostUsers: false`),
    /// where root and `/proc` are not the host's.
    pub(crate) fn in_user_namespace(&self) -> bool {
        self.workload.host_users == Some(false)
    }
}

/// `pod`, `containers "a"`, `pod and containers "a"`: who set a bad value.
fn setters(pod: bool, bad_containers: &[&str]) -> Vec<String> {
    let mut setters = Vec::new();
    if pod {
        setters.push("pod".to_owned());
    }
    if !bad_containers.is_empty() {
        setters.push(containers(bad_containers));
    }
    setters
}

// ---- baseline ----------------------------------------------------------

/// `privileged`: no privileged containers.
pub(crate) fn privileged(pod: &Pod<'_>) -> Option<String> {
    let bad = pod.containers_where(|c| c.security_context.privileged == Some(true));
    (!bad.is_empty()).then(|| {
        format!(
            "{} must not set {}",
            containers(&bad),
            pod.fields.privileged
        )
    })
}

/// `hostNamespaces`: no host network, PID or IPC namespace.
pub(crate) fn host_namespaces(pod: &Pod<'_>) -> Option<String> {
    let w = pod.workload;
    let f = pod.fields;
    let shared: Vec<&str> = [
        (w.host_network, f.host_network),
        (w.host_pid, f.host_pid),
        (w.host_ipc, f.host_ipc),
    ]
    .into_iter()
    .filter_map(|(set, field)| set.then_some(field))
    .collect();
    (!shared.is_empty()).then(|| shared.join(", "))
}

/// The capabilities baseline lets a container add: the container runtimes'
/// default set, less NET_RAW (raw sockets allow spoofing on the node's
/// network).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `capabilities_baseline`: only the default capabilities may be added.
pub(crate) fn capabilities_baseline(pod: &Pod<'_>) -> Option<String> {
    let mut bad = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in &pod.containers {
        let mut valid = true;
        for cap in &c.security_context.capabilities.add {
            if !DEFAULT_CAPABILITIES.contains(&cap.as_str()) {
                valid = false;
                forbidden.insert(cap.as_str());
            }
        }
        if !valid {
            bad.push(c.name.as_str());
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "{} must not include {} in {}",
            containers(&bad),
            join_quote(&forbidden),
            pod.fields.capabilities_add
        )
    })
}

/// `hostPathVolumes`: no hostPath volumes.
pub(crate) fn host_path_volumes(pod: &Pod<'_>) -> Option<String> {
    let host: Vec<&Volume> = pod
        .workload
        .volumes
        .iter()
        .filter(|v| v.kind == "hostPath")
        .collect();
    let names: Vec<&str> = host.iter().map(|v| pod.fields.volume_name(v)).collect();
    let (singular, plural) = pod.fields.volume;
    (!host.is_empty()).then(|| {
        format!(
            "{} {}{}",
            pluralize(singular, plural, host.len()),
            join_quote(&names),
            mounted_by(pod, &host)
        )
    })
}

/// ` mounted by container "x"`: upstream names only the volumes; the
/// containers that mount them are what a person goes to change.
fn mounted_by(pod: &Pod<'_>, volumes: &[&Volume]) -> String {
    let mounting = pod.containers_where(|c| {
        c.volume_mounts
            .iter()
            .any(|mount| volumes.iter().any(|volume| volume.name == mount.name))
    });
    if mounting.is_empty() {
        String::new()
    } else {
        format!(" mounted by {}", containers(&mounting))
    }
}

/// `hostPorts`: no ports opened on the host.
pub(crate) fn host_ports(pod: &Pod<'_>) -> Option<String> {
    let bad = pod.containers_where(|c| c.ports.iter().any(|p| p.host_port != 0));
    // Upstream collects the ports as strings in a sorted set, so "10000"
    // sorts before "8080"; kept for identical messages.
    let ports: BTreeSet<String> = pod
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter(|p| p.host_port != 0)
        .map(|p| p.host_port.to_string())
        .collect();
    let (singular, plural) = pod.fields.host_port;
    (!bad.is_empty()).then(|| {
        format!(
            "{} {} {} {}",
            containers(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(singular, plural, ports.len()),
            ports.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// `hostProbesAndHostLifecycle`: probes and lifecycle handlers must target
/// the pod itself, not a host of the person's choosing.
pub(crate) fn host_probes_and_host_lifecycle(pod: &Pod<'_>) -> Option<String> {
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in &pod.containers {
        for handler in c.handler_hosts.iter().filter(|h| !h.host.is_empty()) {
            bad.insert(c.name.as_str());
            hosts.insert(handler.host.as_str());
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        )
    })
}

/// `appArmorProfile`: AppArmor may be left at, or narrowed from, the
/// runtime's default, never turned off; by field or by the beta annotation.
pub(crate) fn app_armor_profile(pod: &Pod<'_>) -> Option<String> {
    const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let allowed_type = |p: &SecurityProfile| {
        matches!(
            p,
            SecurityProfile::RuntimeDefault | SecurityProfile::Localhost(_)
        )
    };
    let mut bad_values = BTreeSet::new();
    let mut pod_bad = false;
    if let Some(profile) = &pod.workload.security_context.app_armor_profile
        && !allowed_type(profile)
    {
        pod_bad = true;
        bad_values.insert(pod.fields.profile(profile).into_owned());
    }
    let mut bad = Vec::new();
    for c in &pod.containers {
        if let Some(profile) = &c.security_context.app_armor_profile
            && !allowed_type(profile)
        {
            bad.push(c.name.as_str());
            bad_values.insert(pod.fields.profile(profile).into_owned());
        }
    }
    let mut setters = setters(pod_bad, &bad);

    let mut annotations: Vec<String> = pod
        .workload
        .annotations
        .iter()
        .filter(|(key, value)| {
            key.starts_with(ANNOTATION_PREFIX)
                && !(value.is_empty()
                    || value == "runtime/default"
                    || value.starts_with("localhost/"))
        })
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect();
    let mut bad_values: Vec<String> = bad_values.into_iter().collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_owned());
        bad_values.append(&mut annotations);
    }
    (!setters.is_empty()).then(|| {
        format!(
            "{} must not set {} to {}",
            setters.join(" and "),
            pod.fields.app_armor_profile,
            join_quote(&bad_values)
        )
    })
}

/// `seLinuxOptions`: only an allowed SELinux type; no user or role.
pub(crate) fn se_linux_options(
    pod: &Pod<'_>,
    allowed_type: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut bad_types = BTreeSet::new();
    let mut set_user = false;
    let mut set_role = false;
    let mut valid = |opts: &SeLinuxOptions| {
        let mut valid = true;
        if !allowed_type(&opts.type_) {
            valid = false;
            bad_types.insert(opts.type_.clone());
        }
        if !opts.user.is_empty() {
            valid = false;
            set_user = true;
        }
        if !opts.role.is_empty() {
            valid = false;
            set_role = true;
        }
        valid
    };
    let pod_bad = pod
        .workload
        .security_context
        .se_linux_options
        .as_ref()
        .is_some_and(|opts| !valid(opts));
    let mut bad = Vec::new();
    for c in &pod.containers {
        if let Some(opts) = &c.security_context.se_linux_options
            && !valid(opts)
        {
            bad.push(c.name.as_str());
        }
    }
    let setters = setters(pod_bad, &bad);
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_owned());
    }
    if set_role {
        data.push("role may not be set".to_owned());
    }
    Some(format!(
        "{} set forbidden {}: {}",
        setters.join(" and "),
        pod.fields.se_linux_options,
        data.join("; ")
    ))
}

/// `procMount`: the default `/proc` masks stay in place.
pub(crate) fn proc_mount(pod: &Pod<'_>) -> Option<String> {
    let mut bad = Vec::new();
    let mut bad_types = BTreeSet::new();
    for c in &pod.containers {
        if let Some(mount) = c.security_context.proc_mount.as_deref()
            && mount != "Default"
        {
            bad.push(c.name.as_str());
            bad_types.insert(pod.fields.proc_mount_value(mount));
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "{} must not set {} to {}",
            containers(&bad),
            pod.fields.proc_mount,
            join_quote(&bad_types)
        )
    })
}

/// Seccomp profile types both levels accept.
fn valid_seccomp(profile: &SecurityProfile) -> bool {
    matches!(
        profile,
        SecurityProfile::RuntimeDefault | SecurityProfile::Localhost(_)
    )
}

/// `seccompProfile_baseline` before v1.19, when seccomp was set by the alpha
/// annotations: they may only name the default or a node's profile.
pub(crate) fn seccomp_annotations(pod: &Pod<'_>) -> Option<String> {
    const POD_KEY: &str = "seccomp.security.alpha.kubernetes.io/pod";
    const CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
    // Unlike AppArmor's, an empty value is not allowed here: upstream's
    // validSeccompAnnotationValue rejects it.
    let valid =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let annotation = |key: &str| pod.workload.annotation(key);
    let mut forbidden = BTreeSet::new();
    if let Some(value) = annotation(POD_KEY)
        && !valid(value)
    {
        forbidden.insert(format!("{POD_KEY}={}", go_quote(value)));
    }
    for c in &pod.containers {
        let key = format!("{CONTAINER_PREFIX}{}", c.name);
        if let Some(value) = annotation(&key)
            && !valid(value)
        {
            forbidden.insert(format!("{key}={}", go_quote(value)));
        }
    }
    (!forbidden.is_empty()).then(|| {
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

/// Who explicitly set a bad seccomp profile, and the values, shared by both
/// levels' field checks.
struct SeccompFindings<'a> {
    pod_bad: bool,
    /// The pod set a good profile, which containers inherit.
    pod_good: bool,
    explicitly_bad: Vec<&'a str>,
    /// Containers that set nothing.
    unset: Vec<&'a str>,
    values: BTreeSet<String>,
}

fn seccomp_findings<'a>(pod: &Pod<'a>) -> SeccompFindings<'a> {
    let mut values = BTreeSet::new();
    let (mut pod_bad, mut pod_good) = (false, false);
    if let Some(profile) = &pod.workload.security_context.seccomp_profile {
        if valid_seccomp(profile) {
            pod_good = true;
        } else {
            pod_bad = true;
            values.insert(pod.fields.profile(profile).into_owned());
        }
    }
    let mut explicitly_bad = Vec::new();
    let mut unset = Vec::new();
    for c in &pod.containers {
        match &c.security_context.seccomp_profile {
            Some(profile) if !valid_seccomp(profile) => {
                explicitly_bad.push(c.name.as_str());
                values.insert(pod.fields.profile(profile).into_owned());
            }
            Some(_) => {}
            None => unset.push(c.name.as_str()),
        }
    }
    SeccompFindings {
        pod_bad,
        pod_good,
        explicitly_bad,
        unset,
        values,
    }
}

/// The detail for explicitly bad seccomp profiles, if any.
fn seccomp_explicit(pod: &Pod<'_>, findings: &SeccompFindings<'_>) -> Option<String> {
    let setters = setters(findings.pod_bad, &findings.explicitly_bad);
    (!setters.is_empty()).then(|| {
        format!(
            "{} must not set {} to {}",
            setters.join(" and "),
            pod.fields.seccomp_profile,
            join_quote(&findings.values)
        )
    })
}

/// `seccompProfile_baseline` from v1.19: a seccomp profile, if set, must be
/// the runtime's default or a node's profile.
pub(crate) fn seccomp_baseline(pod: &Pod<'_>) -> Option<String> {
    seccomp_explicit(pod, &seccomp_findings(pod))
}

// ---- restricted --------------------------------------------------------

/// `seccompProfile_restricted`: every container must end up with the
/// runtime's default or a node's profile, set on it or on the pod.
pub(crate) fn seccomp_restricted(pod: &Pod<'_>) -> Option<String> {
    let findings = seccomp_findings(pod);
    if let Some(detail) = seccomp_explicit(pod, &findings) {
        return Some(detail);
    }
    let implicit = if findings.pod_good {
        &[][..]
    } else {
        &findings.unset[..]
    };
    (!implicit.is_empty()).then(|| {
        format!(
            "{}{} must set {} to {}",
            pod.fields.pod_or,
            containers(implicit),
            pod.fields.seccomp_profile,
            pod.fields.seccomp_allowed
        )
    })
}

/// `capabilities_restricted`: drop ALL, add back nothing but
/// NET_BIND_SERVICE.
pub(crate) fn capabilities_restricted(pod: &Pod<'_>) -> Option<String> {
    let missing_drop_all = pod.containers_where(|c| {
        !c.security_context
            .capabilities
            .drop
            .iter()
            .any(|cap| cap == "ALL")
    });
    let adding_forbidden = pod.containers_where(|c| {
        c.security_context
            .capabilities
            .add
            .iter()
            .any(|cap| cap != "NET_BIND_SERVICE")
    });
    let forbidden: BTreeSet<&str> = pod
        .containers
        .iter()
        .flat_map(|c| &c.security_context.capabilities.add)
        .map(String::as_str)
        .filter(|cap| *cap != "NET_BIND_SERVICE")
        .collect();
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set {}",
            containers(&missing_drop_all),
            pod.fields.capabilities_drop_all
        ));
    }
    if !adding_forbidden.is_empty() {
        details.push(format!(
            "{} must not include {} in {}",
            containers(&adding_forbidden),
            join_quote(&forbidden),
            pod.fields.capabilities_add
        ));
    }
    (!details.is_empty()).then(|| details.join("; "))
}

/// `restrictedVolumes`: only volume sources that cannot reach the node.
pub(crate) fn restricted_volumes(pod: &Pod<'_>) -> Option<String> {
    const ALLOWED: &[&str] = &[
        // No source at all: the API server defaults such a volume to an
        // emptyDir (SetDefaults_Volume) before admission ever sees it, and
        // upstream's conformance fixtures (restrictedvolumes0, "implicit
        // empty dir") expect it allowed. Only objects that skipped the API
        // server (`portcullis eval` on a manifest) arrive without a source.
        "",
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    // The sources upstream names; any other it reports as "unknown".
    const KNOWN_RESTRICTED: &[&str] = &[
        "hostPath",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "nfs",
        "iscsi",
        "glusterfs",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "fc",
        "azureFile",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "portworxVolume",
        "scaleIO",
        "storageos",
    ];
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for volume in &pod.workload.volumes {
        if ALLOWED.contains(&volume.kind.as_str()) {
            continue;
        }
        bad.push(pod.fields.volume_name(volume));
        types.insert(if KNOWN_RESTRICTED.contains(&volume.kind.as_str()) {
            volume.kind.as_str()
        } else {
            "unknown"
        });
    }
    let (singular, plural) = pod.fields.volume;
    (!bad.is_empty()).then(|| {
        format!(
            "{} {} {} {} {}",
            pluralize(singular, plural, bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        )
    })
}

/// `runAsNonRoot`: every container must be required to run as non-root,
/// itself or through the pod.
pub(crate) fn run_as_non_root(pod: &Pod<'_>) -> Option<String> {
    let pod_setting = pod.workload.security_context.run_as_non_root;
    let explicitly_bad =
        pod.containers_where(|c| c.security_context.run_as_non_root == Some(false));
    let setters = setters(pod_setting == Some(false), &explicitly_bad);
    if !setters.is_empty() {
        return Some(format!(
            "{} must not set {}",
            setters.join(" and "),
            pod.fields.run_as_non_root_false
        ));
    }
    let implicitly_bad = if pod_setting == Some(true) {
        Vec::new()
    } else {
        pod.containers_where(|c| c.security_context.run_as_non_root.is_none())
    };
    (!implicitly_bad.is_empty()).then(|| {
        format!(
            "{}{} must set {}",
            pod.fields.pod_or,
            containers(&implicitly_bad),
            pod.fields.run_as_non_root_true
        )
    })
}

/// `runAsUser`: nothing may ask for uid 0.
pub(crate) fn run_as_user(pod: &Pod<'_>) -> Option<String> {
    let bad = pod.containers_where(|c| c.security_context.run_as_user == Some(0));
    let setters = setters(pod.workload.security_context.run_as_user == Some(0), &bad);
    (!setters.is_empty()).then(|| {
        format!(
            "{} must not set {}",
            setters.join(" and "),
            pod.fields.run_as_user_root
        )
    })
}

/// `allowPrivilegeEscalation`: every container must forbid it explicitly,
/// because the runtime's default allows it.
pub(crate) fn allow_privilege_escalation(pod: &Pod<'_>) -> Option<String> {
    let bad =
        pod.containers_where(|c| c.security_context.allow_privilege_escalation != Some(false));
    (!bad.is_empty()).then(|| {
        format!(
            "{} must set {}",
            containers(&bad),
            pod.fields.no_privilege_escalation
        )
    })
}

/// `sysctls`: only allowed kernel parameters, those namespaced to the pod.
pub(crate) fn sysctls(pod: &Pod<'_>, allowed: impl Fn(&str) -> bool) -> Option<String> {
    // Unsorted and not deduplicated: upstream lists them as written.
    let forbidden: Vec<&str> = pod
        .workload
        .security_context
        .sysctls
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| !allowed(name))
        .collect();
    (!forbidden.is_empty())
        .then(|| format!("forbidden {} {}", pod.fields.sysctls, forbidden.join(", ")))
}

/// `windowsHostProcess`: no Windows host processes.
pub(crate) fn windows_host_process(pod: &Pod<'_>) -> Option<String> {
    let bad = pod.containers_where(|c| c.security_context.windows_host_process == Some(true));
    let setters = setters(
        pod.workload.security_context.windows_host_process == Some(true),
        &bad,
    );
    (!setters.is_empty()).then(|| {
        format!(
            "{} must not set {}",
            setters.join(" and "),
            pod.fields.host_process
        )
    })
}
