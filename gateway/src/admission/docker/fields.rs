//! Every field of the engine's request bodies, and how the gateway treats
//! it.
//!
//! A field is either read into the workload, where policies judge it
//! ([`How::Judged`]); or acted on by the engine in a way that reaches
//! nothing beyond the container ([`How::Harmless`], with the reason); or
//! one that does reach beyond it but has no place in the workload
//! ([`How::Unjudged`]): since no policy could see it, a body that sets it
//! is refused, unless the operator lists the field in
//! `docker.unjudged_fields` and so accepts it unseen.
//!
//! A key that names no field of the table is ignored by every engine the
//! model covers (Go's decoder drops unknown keys), so it passes; behind an
//! engine newer than the model ([`super::engine::MODELLED_API`]) it could
//! be a field the proxy has never read, and it is refused.
//!
//! The tables are data, one line per field, in the engine's field order
//! (moby's `api/types`, 20.10 to the current release). The README's field
//! reference is rendered from them ([`markdown`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::engine::Engine;
use super::gojson::{Object, Value, fold, join};
use crate::admission::NormalizeError;

/// How a field is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Read into the workload; the text says as what.
    Judged(&'static str),
    /// Acted on, but reaching nothing beyond the container; the text says
    /// why.
    Harmless(&'static str),
    /// Reaching beyond the container where no workload field can say so;
    /// refused when it is [`Set`] unless the operator accepts it.
    Unjudged(&'static str, Set),
}

/// When an unjudged field counts as set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// Any value but the zero value (`null`, `false`, `0`, `""`, `[]`,
    /// `{}`).
    NotZero,
    /// A runtime other than the engine's default.
    NotDefaultRuntime,
    /// A log driver that sends the container's output off the host (any
    /// but `json-file`, `local`, `journald`, `none`, or the default).
    RemoteLogDriver,
}

/// One field.
#[derive(Debug)]
pub struct Field {
    /// As the engine's JSON spells it.
    pub name: &'static str,
    /// How it is treated.
    pub how: How,
}

/// The fields of one object of a body.
#[derive(Debug)]
pub struct Table {
    /// Which object, as the README names it (`HostConfig`).
    pub object: &'static str,
    /// Its fields, in parts (tables share some).
    pub parts: &'static [&'static [Field]],
}

impl Table {
    /// Every field.
    pub fn fields(&self) -> impl Iterator<Item = &'static Field> {
        self.parts.iter().flat_map(|part| part.iter())
    }
}

const fn judged(name: &'static str, what: &'static str) -> Field {
    Field {
        name,
        how: How::Judged(what),
    }
}

const fn harmless(name: &'static str, why: &'static str) -> Field {
    Field {
        name,
        how: How::Harmless(why),
    }
}

const fn unjudged(name: &'static str, what: &'static str, set: Set) -> Field {
    Field {
        name,
        how: How::Unjudged(what, set),
    }
}

const RESOURCE: &str = "a resource limit or weight of the container's own cgroup";
const STREAMS: &str = "how the container's standard streams are wired to the client";
const PROCESS: &str = "what runs inside the container, with the container's privileges";
const METADATA: &str = "metadata the engine stores and reports";
const NETWORK_ADDRESS: &str = "an address or name inside the container's own network";
const WINDOWS: &str = "Windows containers only; a Linux engine refuses other values";
const IGNORED: &str = "read by the docker CLI, not by the engine";

/// The container's configuration: the top level of a create body.
pub static CONFIG: Table = Table {
    object: "container create (top level)",
    parts: &[&[
        harmless("Hostname", "the container's own UTS name"),
        harmless("Domainname", "the container's own UTS name"),
        judged(
            "User",
            "runAsUser / runAsGroup (numbers and `root`; a name is unknown)",
        ),
        harmless("AttachStdin", STREAMS),
        harmless("AttachStdout", STREAMS),
        harmless("AttachStderr", STREAMS),
        harmless(
            "ExposedPorts",
            "metadata; ports reach the host only when published",
        ),
        harmless("Tty", STREAMS),
        harmless("OpenStdin", STREAMS),
        harmless("StdinOnce", STREAMS),
        harmless("Env", PROCESS),
        harmless("Cmd", PROCESS),
        harmless("Healthcheck", PROCESS),
        harmless("ArgsEscaped", PROCESS),
        judged(
            "Image",
            "the container's image, verified and pinned by image rules",
        ),
        judged("Volumes", "anonymous volumes (`persistentVolumeClaim`)"),
        harmless("WorkingDir", PROCESS),
        harmless("Entrypoint", PROCESS),
        harmless("NetworkDisabled", "takes the network away"),
        harmless("MacAddress", NETWORK_ADDRESS),
        harmless("OnBuild", METADATA),
        judged("Labels", "labels"),
        harmless("StopSignal", PROCESS),
        harmless("StopTimeout", PROCESS),
        harmless("Shell", PROCESS),
        judged(
            "HostConfig",
            "see HostConfig; without it, engines before 27 read the host configuration from the top level, and so does the proxy",
        ),
        judged("NetworkingConfig", "see NetworkingConfig"),
        harmless("Cpuset", RESOURCE),
    ]],
};

/// The host configuration (and, before 27, the top level of a create body
/// that has none).
pub static HOST_CONFIG: Table = Table {
    object: "HostConfig",
    parts: &[
        LIMITS,
        &[
            unjudged(
                "CgroupParent",
                "places the container's cgroup anywhere in the host's hierarchy, under other limits or none",
                Set::NotZero,
            ),
            judged("Devices", "devices (host path)"),
            judged("DeviceCgroupRules", "devices (a rule, in `permissions`)"),
            judged(
                "DeviceRequests",
                "devices (`--gpus`: the driver's host devices)",
            ),
        ],
        HOST_CONFIG_PROPER,
    ],
};

/// The resource limits of `HostConfig` and of an update that reach
/// nothing beyond the container (`Resources` in moby's types, but for the
/// cgroup parent and devices).
const LIMITS: &[Field] = &[
    harmless("CpuShares", RESOURCE),
    harmless("Memory", RESOURCE),
    harmless("NanoCpus", RESOURCE),
    harmless("BlkioWeight", RESOURCE),
    harmless("BlkioWeightDevice", RESOURCE),
    harmless("BlkioDeviceReadBps", RESOURCE),
    harmless("BlkioDeviceWriteBps", RESOURCE),
    harmless("BlkioDeviceReadIOps", RESOURCE),
    harmless("BlkioDeviceWriteIOps", RESOURCE),
    harmless("CpuPeriod", RESOURCE),
    harmless("CpuQuota", RESOURCE),
    harmless("CpuRealtimePeriod", RESOURCE),
    harmless("CpuRealtimeRuntime", RESOURCE),
    harmless("CpusetCpus", RESOURCE),
    harmless("CpusetMems", RESOURCE),
    harmless("KernelMemory", RESOURCE),
    harmless("KernelMemoryTCP", RESOURCE),
    harmless("MemoryReservation", RESOURCE),
    harmless("MemorySwap", RESOURCE),
    harmless("MemorySwappiness", RESOURCE),
    harmless("OomKillDisable", RESOURCE),
    harmless("PidsLimit", RESOURCE),
    harmless("Ulimits", RESOURCE),
    harmless("CpuCount", WINDOWS),
    harmless("CpuPercent", WINDOWS),
    harmless("IOMaximumIOps", WINDOWS),
    harmless("IOMaximumBandwidth", WINDOWS),
];

/// `HostConfig` but its resources.
const HOST_CONFIG_PROPER: &[Field] = &[
    judged(
        "Binds",
        "volumes: a host path is `hostPath`, a name a volume as the engine has it",
    ),
    harmless("ContainerIDFile", IGNORED),
    unjudged(
        "LogConfig",
        "a log driver that sends the container's output from the host to an address or socket of the client's choosing",
        Set::RemoteLogDriver,
    ),
    judged(
        "NetworkMode",
        "hostNetwork (`host`, or a network that is the host's), borrowed network (`container:`)",
    ),
    judged("PortBindings", "ports (hostPort)"),
    harmless("RestartPolicy", "when the engine restarts the container"),
    harmless("AutoRemove", "when the engine removes the container"),
    judged(
        "VolumeDriver",
        "volumes of `Binds` made by another driver are `csi`",
    ),
    judged("VolumesFrom", "borrowed volumes"),
    harmless("ConsoleSize", STREAMS),
    unjudged(
        "Annotations",
        "OCI annotations, which runtimes may act on",
        Set::NotZero,
    ),
    judged("CapAdd", "capabilities.add"),
    judged("CapDrop", "capabilities.drop"),
    judged(
        "CgroupnsMode",
        "hostCgroup (also when unset and the engine's default is the host's)",
    ),
    harmless("Dns", NETWORK_ADDRESS),
    harmless("DnsOptions", NETWORK_ADDRESS),
    harmless("DnsSearch", NETWORK_ADDRESS),
    harmless("ExtraHosts", NETWORK_ADDRESS),
    judged(
        "GroupAdd",
        "supplementalGroups (numbers; names are unknown)",
    ),
    judged("IpcMode", "hostIPC (`host`), borrowed IPC (`container:`)"),
    harmless("Cgroup", "not used by the engine"),
    unjudged(
        "Links",
        "legacy links copy another container's environment, secrets included, into this one",
        Set::NotZero,
    ),
    harmless(
        "OomScoreAdj",
        "which process the kernel kills first when memory runs out",
    ),
    judged("PidMode", "hostPID (`host`), borrowed PID (`container:`)"),
    judged("Privileged", "privileged"),
    harmless(
        "PublishAllPorts",
        "exposed ports on ephemeral host ports chosen by the engine",
    ),
    judged("ReadonlyRootfs", "readOnlyRootFilesystem"),
    judged(
        "SecurityOpt",
        "seccomp, AppArmor, SELinux, no-new-privileges, systempaths; an option the engine refuses is refused",
    ),
    harmless(
        "StorageOpt",
        "the size of the container's own writable layer",
    ),
    judged("Tmpfs", "volumes (`emptyDir`)"),
    judged("UTSMode", "hostUTS"),
    judged("UsernsMode", "hostUsers"),
    harmless("ShmSize", RESOURCE),
    judged("Sysctls", "sysctls"),
    unjudged(
        "Runtime",
        "an OCI runtime other than the engine's default, with whatever isolation (or hooks) it has",
        Set::NotDefaultRuntime,
    ),
    harmless("Isolation", WINDOWS),
    judged("Mounts", "volumes, by type; see Mount"),
    judged("MaskedPaths", "procMount `Unmasked` when given"),
    judged("ReadonlyPaths", "procMount `Unmasked` when given"),
    harmless("Init", "the engine's own init process as PID 1"),
];

/// A `--mount`.
pub static MOUNT: Table = Table {
    object: "HostConfig.Mounts[]",
    parts: &[&[
        judged(
            "Type",
            "the volume's kind: bind `hostPath`, volume by its driver, tmpfs `emptyDir`, image, cluster `csi`",
        ),
        judged("Source", "the host path, or the volume's name"),
        judged("Target", "the mount path"),
        judged("ReadOnly", "the mount's readOnly"),
        harmless("Consistency", "macOS file sharing only"),
        judged(
            "BindOptions",
            "a bind's host path is judged whatever its propagation",
        ),
        judged(
            "VolumeOptions",
            "a volume's driver and options decide its kind (`local` with a device is `hostPath`)",
        ),
        judged("ImageOptions", "an image volume"),
        harmless("TmpfsOptions", "size and mode of memory the container owns"),
        judged("ClusterOptions", "a cluster volume (`csi`)"),
    ]],
};

/// A `--network` endpoint.
pub static ENDPOINT: Table = Table {
    object: "NetworkingConfig.EndpointsConfig.*",
    parts: &[&[
        harmless("IPAMConfig", NETWORK_ADDRESS),
        harmless(
            "Links",
            "DNS aliases on a user-defined network (legacy links are HostConfig.Links)",
        ),
        harmless("Aliases", NETWORK_ADDRESS),
        harmless(
            "DriverOpts",
            "options of the network's driver for this endpoint",
        ),
        harmless("GwPriority", NETWORK_ADDRESS),
        harmless("NetworkID", NETWORK_ADDRESS),
        harmless("EndpointID", NETWORK_ADDRESS),
        harmless("Gateway", NETWORK_ADDRESS),
        harmless("IPAddress", NETWORK_ADDRESS),
        harmless("MacAddress", NETWORK_ADDRESS),
        harmless("IPPrefixLen", NETWORK_ADDRESS),
        harmless("IPv6Gateway", NETWORK_ADDRESS),
        harmless("GlobalIPv6Address", NETWORK_ADDRESS),
        harmless("GlobalIPv6PrefixLen", NETWORK_ADDRESS),
        harmless("DNSNames", NETWORK_ADDRESS),
    ]],
};

/// An exec-create body.
pub static EXEC: Table = Table {
    object: "exec create",
    parts: &[&[
        judged(
            "User",
            "runAsUser (a name, or an unset user into a container whose user is a name, is unknown)",
        ),
        judged("Privileged", "privileged"),
        harmless("Tty", STREAMS),
        harmless("ConsoleSize", STREAMS),
        harmless("AttachStdin", STREAMS),
        harmless("AttachStderr", STREAMS),
        harmless("AttachStdout", STREAMS),
        harmless("Detach", STREAMS),
        harmless("DetachKeys", STREAMS),
        harmless("Env", PROCESS),
        harmless("WorkingDir", PROCESS),
        harmless("Cmd", PROCESS),
    ]],
};

/// A container-update body.
pub static UPDATE: Table = Table {
    object: "container update",
    parts: &[
        LIMITS,
        &[
            harmless("CgroupParent", "not applied by update"),
            judged("Devices", "refused when set: devices are given at create"),
            judged(
                "DeviceCgroupRules",
                "refused when set: devices are given at create",
            ),
            judged(
                "DeviceRequests",
                "refused when set: devices are given at create",
            ),
            harmless("RestartPolicy", "when the engine restarts the container"),
        ],
    ],
};

/// A volume-create body.
pub static VOLUME_CREATE: Table = Table {
    object: "volume create",
    parts: &[&[
        judged("Name", "the volume's name"),
        judged("Driver", "a driver other than `local` makes a `csi` volume"),
        judged(
            "DriverOpts",
            "the `local` driver's `type`, `o` and `device`: a bind, or a device or path the kernel mounts, is `hostPath`",
        ),
        harmless("Labels", METADATA),
        judged("ClusterVolumeSpec", "a cluster volume (`csi`)"),
    ]],
};

/// A network-create body.
pub static NETWORK_CREATE: Table = Table {
    object: "network create",
    parts: &[&[
        harmless("Name", METADATA),
        harmless("CheckDuplicate", METADATA),
        judged(
            "Driver",
            "hostNetwork for a driver that attaches to the host's interfaces (`macvlan`, `ipvlan` with a `parent`) or that the proxy does not know",
        ),
        harmless("Scope", METADATA),
        harmless("EnableIPv4", NETWORK_ADDRESS),
        harmless("EnableIPv6", NETWORK_ADDRESS),
        harmless("IPAM", NETWORK_ADDRESS),
        harmless("Internal", "cuts the network off from outside"),
        harmless(
            "Attachable",
            "lets standalone containers join a swarm network",
        ),
        harmless("Ingress", "the swarm routing mesh's own network"),
        harmless(
            "ConfigOnly",
            "a template for other networks, judged where it is used",
        ),
        judged(
            "ConfigFrom",
            "the template network's options are judged as this network's",
        ),
        judged(
            "Options",
            "`parent` (a host interface) and `com.docker.network.bridge.name` (a host bridge) are hostNetwork",
        ),
        harmless("Labels", METADATA),
    ]],
};

/// A swarm service's specification.
pub static SERVICE: Table = Table {
    object: "service create and update",
    parts: &[&[
        judged("Name", "the service's name"),
        judged("Labels", "labels"),
        judged("TaskTemplate", "see TaskTemplate"),
        harmless("Mode", "how many tasks run where"),
        harmless("UpdateConfig", "how tasks are replaced"),
        harmless("RollbackConfig", "how tasks are replaced"),
        judged("Networks", "hostNetwork for the `host` network"),
        judged(
            "EndpointSpec",
            "ports: published ports bind every node's address",
        ),
    ]],
};

/// A service's task.
pub static TASK: Table = Table {
    object: "TaskTemplate",
    parts: &[&[
        judged(
            "ContainerSpec",
            "the task's container; see TaskTemplate.ContainerSpec",
        ),
        unjudged(
            "PluginSpec",
            "a plugin installed on every node with the privileges it asks for",
            Set::NotZero,
        ),
        harmless("NetworkAttachmentSpec", "the swarm's own attachment tasks"),
        harmless("Resources", RESOURCE),
        harmless("RestartPolicy", "when the task is restarted"),
        harmless("Placement", "which nodes run the task"),
        judged("Networks", "hostNetwork for the `host` network"),
        unjudged(
            "LogDriver",
            "a log driver that sends the task's output from every node to an address of the client's choosing",
            Set::RemoteLogDriver,
        ),
        harmless("ForceUpdate", "when tasks are replaced"),
        unjudged(
            "Runtime",
            "a task runtime other than the container (a plugin, or an attachment)",
            Set::NotZero,
        ),
    ]],
};

/// A service task's container.
pub static CONTAINER_SPEC: Table = Table {
    object: "TaskTemplate.ContainerSpec",
    parts: &[&[
        judged(
            "Image",
            "the container's image, verified and pinned by image rules",
        ),
        harmless("Labels", METADATA),
        harmless("Command", PROCESS),
        harmless("Args", PROCESS),
        harmless("Hostname", "the container's own UTS name"),
        harmless("Env", PROCESS),
        harmless("Dir", PROCESS),
        judged("User", "runAsUser / runAsGroup"),
        harmless(
            "Groups",
            "supplementary groups by name, resolved in the container",
        ),
        judged(
            "Privileges",
            "seccomp, AppArmor, SELinux, no-new-privileges",
        ),
        harmless("Init", "the engine's own init process as PID 1"),
        harmless("StopSignal", PROCESS),
        harmless("TTY", STREAMS),
        harmless("OpenStdin", STREAMS),
        judged("ReadOnly", "readOnlyRootFilesystem"),
        judged("Mounts", "volumes, by type, as HostConfig.Mounts"),
        harmless("StopGracePeriod", PROCESS),
        harmless("Healthcheck", PROCESS),
        harmless("Hosts", NETWORK_ADDRESS),
        harmless("DNSConfig", NETWORK_ADDRESS),
        harmless("Secrets", "swarm secrets, files inside the container"),
        harmless("Configs", "swarm configs, files inside the container"),
        harmless("Isolation", WINDOWS),
        judged("Sysctls", "sysctls"),
        judged("CapabilityAdd", "capabilities.add"),
        judged("CapabilityDrop", "capabilities.drop"),
        harmless("Ulimits", RESOURCE),
        harmless(
            "OomScoreAdj",
            "which process the kernel kills first when memory runs out",
        ),
    ]],
};

/// Every table, in the README's order.
pub static TABLES: &[&Table] = &[
    &CONFIG,
    &HOST_CONFIG,
    &MOUNT,
    &ENDPOINT,
    &EXEC,
    &UPDATE,
    &VOLUME_CREATE,
    &NETWORK_CREATE,
    &SERVICE,
    &TASK,
    &CONTAINER_SPEC,
];

/// The log drivers that keep the container's output on the host.
const LOCAL_LOG_DRIVERS: &[&str] = &["", "json-file", "local", "journald", "none"];

/// Each table's fields by folded name.
static INDEX: LazyLock<HashMap<&'static str, HashMap<String, &'static Field>>> =
    LazyLock::new(|| {
        TABLES
            .iter()
            .map(|table| {
                let fields = table
                    .fields()
                    .map(|field| (fold(field.name), field))
                    .collect();
                (table.object, fields)
            })
            .collect()
    });

/// The field of `table` a key sets, as Go's decoder matches it.
fn lookup(table: &Table, key: &str) -> Option<&'static Field> {
    INDEX.get(table.object)?.get(&fold(key)).copied()
}

/// What unjudged fields the operator accepts unseen.
#[derive(Debug, Clone, Copy)]
pub enum Accept<'a> {
    /// Those named (as `HostConfig.Runtime`).
    Listed(&'a [String]),
    /// All of them: the body is read again after a policy's patch, and
    /// what the operator's own policies write is not second-guessed.
    All,
}

/// Checks the keys of `object`, read at `path` as the first of `tables`
/// that has each: every key is a field the proxy judges or knows to be
/// harmless, or an unjudged one the operator accepts.
pub(crate) fn check(
    object: &Object,
    tables: &[&Table],
    path: &str,
    engine: &Engine,
    accept: Accept<'_>,
) -> Result<(), NormalizeError> {
    for (key, value) in object.entries() {
        let Some((table, field)) = tables
            .iter()
            .find_map(|table| Some((*table, lookup(table, key)?)))
        else {
            if engine.may_know_more() {
                return Err(NormalizeError::new(
                    join(path, key),
                    format!(
                        "not a field the proxy knows, and this engine (API {}.{}) is newer than its model: it could act on it",
                        engine.api.0, engine.api.1
                    ),
                ));
            }
            continue;
        };
        let How::Unjudged(what, set) = field.how else {
            continue;
        };
        let name = join(&table_path(table, path), field.name);
        if !is_set(value, set, engine) {
            continue;
        }
        if let Accept::Listed(listed) = accept
            && !listed.contains(&name)
        {
            return Err(NormalizeError::unjudged(
                join(path, key),
                format!(
                    "{what}; no policy sees this field, so it is refused (list `{name}` in docker.unjudged_fields to accept it unseen)"
                ),
            ));
        }
    }
    Ok(())
}

/// The name operators list a field under: the host configuration's fields
/// are `HostConfig.<field>` wherever the body put them.
fn table_path(table: &Table, path: &str) -> String {
    if std::ptr::eq(table, &HOST_CONFIG) {
        "HostConfig".into()
    } else if std::ptr::eq(table, &TASK) {
        "TaskTemplate".into()
    } else {
        path.to_owned()
    }
}

/// The names `docker.unjudged_fields` may list.
pub fn unjudged_names() -> Vec<String> {
    TABLES
        .iter()
        .flat_map(|table| {
            table
                .fields()
                .filter(|field| matches!(field.how, How::Unjudged(..)))
                .map(move |field| join(&table_path(table, table.object), field.name))
        })
        .collect()
}

/// Whether `name` is one `docker.unjudged_fields` may list.
pub fn is_unjudged(name: &str) -> bool {
    unjudged_names().iter().any(|known| known == name)
}

fn is_set(value: &Value, set: Set, engine: &Engine) -> bool {
    match set {
        Set::NotZero => !is_zero(value),
        Set::NotDefaultRuntime => match value {
            Value::String(runtime) => !runtime.is_empty() && *runtime != engine.default_runtime,
            other => !is_zero(other),
        },
        Set::RemoteLogDriver => match value {
            Value::Object(config) => config
                .entries()
                .find(|(key, _)| fold(key) == "type")
                .is_some_and(|(_, kind)| match kind {
                    Value::String(kind) => !LOCAL_LOG_DRIVERS.contains(&kind.as_str()),
                    other => !is_zero(other),
                }),
            other => !is_zero(other),
        },
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(value) => !value,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(object) => object.is_empty(),
    }
}

/// The tables as the README's field reference: one Markdown table per
/// object, then the plugin bodies, which are lists rather than objects.
pub fn markdown() -> String {
    let mut out = String::new();
    for table in TABLES {
        out.push_str(&format!(
            "\n**{}**\n\n| field | how |\n|---|---|\n",
            table.object
        ));
        for field in table.fields() {
            let how = match field.how {
                How::Judged(what) => format!("judged: {what}"),
                How::Harmless(why) => format!("harmless: {why}"),
                How::Unjudged(what, _) => {
                    format!("refused unless listed in `unjudged_fields`: {what}")
                }
            };
            out.push_str(&format!("| `{}` | {how} |\n", field.name));
        }
    }
    out.push_str(concat!(
        "\n**plugin pull and upgrade** (a list of privileges): judged, but not as the body says: ",
        "the proxy asks the engine what the plugin gets (`GET /plugins/privileges`), judges that ",
        "(`network` host, host PID and IPC namespaces, `mount` host paths, `device`, ",
        "`allow-all-devices`, `capabilities`; any other privilege as a device rule), and refuses a ",
        "body that does not accept exactly it.\n\n",
        "**plugin set** (a list of `name=value`): judged: `<mount>.source=` is a host path, ",
        "`<device>.path=` a host device; environment and arguments are harmless.\n",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::docker::gojson;

    fn object(text: &str) -> Object {
        gojson::parse(text)
            .expect("valid")
            .as_object("")
            .expect("object")
            .clone()
    }

    fn checked(text: &str, engine: &Engine, accept: Accept<'_>) -> Result<(), NormalizeError> {
        check(&object(text), &[&HOST_CONFIG], "HostConfig", engine, accept)
    }

    #[test]
    fn unjudged_fields_are_refused_unless_listed() {
        let engine = Engine::assumed();
        let none = Accept::Listed(&[]);
        let error = checked(r#"{"CgroupParent": "/"}"#, &engine, none).expect_err("unjudged");
        assert_eq!(error.path, "HostConfig.CgroupParent");
        assert!(error.message.contains("docker.unjudged_fields"), "{error}");
        // Case folding reaches the field as it reaches the engine.
        assert!(checked(r#"{"cgroupparent": "/"}"#, &engine, none).is_err());
        // Zero values are what the docker CLI always sends.
        assert!(
            checked(
                r#"{"CgroupParent": "", "Links": null, "Annotations": {}}"#,
                &engine,
                none
            )
            .is_ok()
        );
        let listed = ["HostConfig.CgroupParent".to_owned()];
        assert!(checked(r#"{"CgroupParent": "/"}"#, &engine, Accept::Listed(&listed)).is_ok());
        assert!(checked(r#"{"CgroupParent": "/"}"#, &engine, Accept::All).is_ok());
    }

    #[test]
    fn runtimes_and_log_drivers_count_as_set_only_when_they_leave_the_default() {
        let engine = Engine::assumed();
        let none = Accept::Listed(&[]);
        assert!(checked(r#"{"Runtime": "runc"}"#, &engine, none).is_ok());
        assert!(checked(r#"{"Runtime": "sysbox-runc"}"#, &engine, none).is_err());
        assert!(
            checked(
                r#"{"LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}}}"#,
                &engine,
                none
            )
            .is_ok()
        );
        assert!(
            checked(
                r#"{"LogConfig": {"Type": "", "Config": {}}}"#,
                &engine,
                none
            )
            .is_ok()
        );
        let error = checked(
            r#"{"LogConfig": {"type": "syslog", "Config": {"syslog-address": "unix:///var/run/docker.sock"}}}"#,
            &engine,
            none,
        )
        .expect_err("remote");
        assert!(error.message.contains("log driver"), "{error}");
    }

    #[test]
    fn unknown_keys_pass_only_where_the_engine_ignores_them() {
        let none = Accept::Listed(&[]);
        assert!(checked(r#"{"Frobnicate": true}"#, &Engine::assumed(), none).is_ok());
        let newer = Engine {
            api: (1, 99),
            ..Engine::assumed()
        };
        let error = checked(r#"{"Frobnicate": true}"#, &newer, none).expect_err("unknown");
        assert_eq!(error.path, "HostConfig.Frobnicate");
    }

    #[test]
    fn the_readme_lists_every_field_as_the_tables_do() {
        // `PORTCULLIS_BLESS=1 cargo test … the_readme_lists` writes it.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).expect("the README");
        let (start, end) = (
            "<!-- engine-fields:start -->\n",
            "<!-- engine-fields:end -->",
        );
        let (before, rest) = readme.split_once(start).expect("the start marker");
        let (_, after) = rest.split_once(end).expect("the end marker");
        let expected = format!("{before}{start}{}\n{end}{after}", markdown().trim_start());
        if std::env::var_os("PORTCULLIS_BLESS").is_some() {
            std::fs::write(path, &expected).expect("write the README");
        }
        assert!(
            readme == expected,
            "the README's field reference is stale: run with PORTCULLIS_BLESS=1"
        );
    }

    #[test]
    fn every_table_names_each_field_once() {
        for table in TABLES {
            let mut seen = std::collections::HashSet::new();
            for field in table.fields() {
                assert!(
                    seen.insert(fold(field.name)),
                    "{}: {}",
                    table.object,
                    field.name
                );
            }
        }
    }
}
