//! A container-create body, read as the engine reads it.
//!
//! The body is decoded with Go's rules (`gojson`) into the layout
//! the engine decodes (moby's `runconfig.ContainerConfigWrapper`): the
//! container's configuration at the top level, the host configuration in
//! `HostConfig` — or, on engines before 27, at the top level too when
//! `HostConfig` is absent or `null`. Each setting that grants something is
//! mapped into the workload in the vocabulary of the Pod Security
//! Standards, with the engine's own defaults filled in where the body
//! leaves them (its seccomp and AppArmor profiles, if it has them; its
//! cgroup namespace), and every field is checked against the field tables
//! ([`super::fields`]).

use super::fields;
use super::gojson::{self, Object, Value, join};
use super::volumes::{Mounts, NamedVolume, named};
use super::{
    Borrowed, BorrowedResource, Container, Device, Engine, NormalizeError, Port, Reading,
    SeLinuxOptions, SecurityContext, SecurityProfile, Sysctl, Workload, container, user,
};

/// Name given to the container when the client asked for none.
const UNNAMED: &str = "container";

/// The SELinux type container runtimes run `label=disable` containers as:
/// unconfined.
pub(crate) const SELINUX_DISABLED_TYPE: &str = "spc_t";

/// A container-create body, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The workload.
    pub workload: Workload,
    /// What only the engine can tell.
    pub lookups: Lookups,
}

/// Objects the body names that only the engine can say what they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lookups {
    /// Networks joined by name or id (which may be the host's network).
    pub networks: Vec<String>,
    /// Named volumes, which the engine may already have with options of
    /// their own.
    pub volumes: Vec<NamedVolume>,
}

/// Normalizes a container-create body.
pub fn normalize(
    body: &str,
    name: Option<&str>,
    reading: &Reading<'_>,
) -> Result<Normalized, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    let engine = reading.engine;
    let inner = root.object("HostConfig", "")?;
    // Without an inner host configuration, older engines read it from
    // the top level (the wrapper embeds it); with one, they read that and
    // take only `VolumeDriver` (and resource limits) from the top.
    let legacy = engine.reads_legacy_host_config();
    let top_tables: &[&fields::Table] = if legacy {
        &[&fields::CONFIG, &fields::HOST_CONFIG]
    } else {
        &[&fields::CONFIG]
    };
    fields::check(root, top_tables, "", engine, reading.accept)?;
    let (host, host_path) = match inner {
        Some(inner) => (Some(inner), "HostConfig"),
        None if legacy => (Some(root), ""),
        None => (None, "HostConfig"),
    };
    let mut context = SecurityContext {
        seccomp_profile: engine.seccomp.then_some(SecurityProfile::RuntimeDefault),
        app_armor_profile: engine.apparmor.then_some(SecurityProfile::RuntimeDefault),
        ..SecurityContext::default()
    };
    if let Some(spec) = root.string("User", "")? {
        apply_user(spec, &mut context);
    }
    let mut workload = Workload {
        labels: root.string_map("Labels", "")?,
        host_users: engine.userns.then_some(false),
        ..Workload::default()
    };
    let mut container = Container {
        image: root.string("Image", "")?.unwrap_or_default().to_owned(),
        ..container(name.filter(|name| !name.is_empty()).unwrap_or(UNNAMED))
    };
    let mut lookups = Lookups::default();
    let mut mounts = Mounts {
        workload: &mut workload,
        named: Vec::new(),
    };
    // Anonymous volumes declared at the top level (`VOLUME` in the API).
    if let Some(volumes) = root.object("Volumes", "")? {
        for (target, _) in volumes.entries() {
            mounts.attach(
                &mut container,
                named(target, "persistentVolumeClaim"),
                target,
                false,
            );
        }
    }
    let mut cgroupns = None;
    let mut privileged = false;
    if let Some(host) = host {
        if !host_path.is_empty() {
            fields::check(
                host,
                &[&fields::HOST_CONFIG],
                host_path,
                engine,
                reading.accept,
            )?;
        }
        // The top level's `VolumeDriver` fills an empty inner one.
        let mut driver = host.string("VolumeDriver", host_path)?.unwrap_or_default();
        if driver.is_empty() && inner.is_some() && legacy {
            driver = root.string("VolumeDriver", "")?.unwrap_or_default();
        }
        let settings = HostSettings {
            host,
            path: host_path,
            driver,
            engine,
        };
        settings.read(&mut mounts, &mut container, &mut context, &mut lookups)?;
        cgroupns = host.string("CgroupnsMode", host_path)?.map(str::to_owned);
        privileged = context.privileged == Some(true);
    }
    lookups.volumes = std::mem::take(&mut mounts.named);
    if let Some(networking) = root.object("NetworkingConfig", "")? {
        let path = "NetworkingConfig";
        if let Some(endpoints) = networking.object("EndpointsConfig", path)? {
            for (network, endpoint) in endpoints.entries() {
                let path = join(&join(path, "EndpointsConfig"), network);
                if let Value::Object(endpoint) = endpoint {
                    fields::check(
                        endpoint,
                        &[&fields::ENDPOINT],
                        &path,
                        engine,
                        reading.accept,
                    )?;
                }
                join_network(network, &mut workload, &mut lookups);
            }
        }
    }
    // The engine's default cgroup namespace: the host's on cgroup v1 for
    // privileged containers and for clients older than API 1.41, else the
    // daemon's `default-cgroupns-mode`.
    workload.host_cgroup = match cgroupns.as_deref().unwrap_or_default() {
        "host" => true,
        "private" => false,
        "" => {
            let v1 = engine.cgroup_version == 1;
            let old_client = reading.api() < (1, 41);
            (v1 && (privileged || old_client)) || !engine.private_cgroupns
        }
        other => {
            return Err(NormalizeError::new(
                join(host_path, "CgroupnsMode"),
                format!("`{other}` is not a cgroup namespace mode (host, private)"),
            ));
        }
    };
    container.security_context = context;
    workload.containers.push(container);
    Ok(Normalized { workload, lookups })
}

/// Joins the network named `network`: the host's by name at once, any
/// other by what the engine says it is.
fn join_network(network: &str, workload: &mut Workload, lookups: &mut Lookups) {
    match network {
        "host" => workload.host_network = true,
        "" | "default" | "bridge" | "none" => {}
        other if other.starts_with("container:") => {}
        other => lookups.networks.push(other.to_owned()),
    }
}

/// The host configuration, wherever the body put it.
struct HostSettings<'a> {
    host: &'a Object,
    /// Where it is in the body, for messages: `HostConfig`, or empty for
    /// the top level.
    path: &'a str,
    /// The volume driver of named volumes in `Binds`.
    driver: &'a str,
    engine: &'a Engine,
}

impl HostSettings<'_> {
    fn read(
        &self,
        mounts: &mut Mounts<'_>,
        container: &mut Container,
        context: &mut SecurityContext,
        lookups: &mut Lookups,
    ) -> Result<(), NormalizeError> {
        let (host, path) = (self.host, self.path);
        let at = |field: &str| join(path, field);
        context.privileged = host.boolean("Privileged", path)?;
        context.read_only_root_filesystem = host.boolean("ReadonlyRootfs", path)?;
        context.capabilities.add = host
            .str_slice("CapAdd", path)?
            .iter()
            .map(|c| capability(c))
            .collect();
        context.capabilities.drop = host
            .str_slice("CapDrop", path)?
            .iter()
            .map(|c| capability(c))
            .collect();
        for (index, option) in host.strings("SecurityOpt", path)?.iter().enumerate() {
            security_option(option, context, &format!("{}[{index}]", at("SecurityOpt")))?;
        }
        // The CLI turns `--security-opt systempaths=unconfined` into
        // explicit, empty path lists; any list replaces the engine's
        // default masks.
        if host.field("MaskedPaths", path)?.is_some()
            || host.field("ReadonlyPaths", path)?.is_some()
        {
            context.proc_mount = Some("Unmasked".into());
        }
        self.namespaces(mounts.workload, lookups)?;
        mounts.workload.security_context.sysctls = host
            .string_map("Sysctls", path)?
            .into_iter()
            .map(|(name, value)| Sysctl { name, value })
            .collect();
        // Supplementary groups: numbers only; a name is the container's to
        // resolve.
        mounts.workload.security_context.supplemental_groups = host
            .strings("GroupAdd", path)?
            .iter()
            .filter_map(|group| user::parse(&format!(":{group}")).gid)
            .collect();
        for (index, bind) in host.strings("Binds", path)?.iter().enumerate() {
            mounts.bind(
                bind,
                container,
                self.driver,
                &format!("{}[{index}]", at("Binds")),
            )?;
        }
        for (index, mount) in host.array("Mounts", path)?.iter().enumerate() {
            let path = format!("{}[{index}]", at("Mounts"));
            mounts.mount(mount.as_object(&path)?, container, &path, self.engine)?;
        }
        for (target, _) in host.string_map("Tmpfs", path)? {
            mounts.attach(container, named(&target, "emptyDir"), &target, false);
        }
        for spec in host.strings("VolumesFrom", path)? {
            let source = spec.split(':').next().unwrap_or_default();
            mounts.workload.borrowed.push(Borrowed {
                resource: BorrowedResource::Volumes,
                container: source.to_owned(),
            });
        }
        self.devices(container)?;
        if let Some(bindings) = host.object("PortBindings", path)? {
            let path = at("PortBindings");
            for (key, bound) in bindings.entries() {
                ports(key, bound, &mut container.ports, &join(&path, key))?;
            }
        }
        Ok(())
    }

    /// Network, PID, IPC, UTS and user namespaces, as the engine's
    /// `container.*Mode` types read them; a mode it would refuse is
    /// refused.
    fn namespaces(
        &self,
        workload: &mut Workload,
        lookups: &mut Lookups,
    ) -> Result<(), NormalizeError> {
        let (host, path) = (self.host, self.path);
        let unknown = |field: &str, mode: &str, known: &str| {
            NormalizeError::new(
                join(path, field),
                format!("`{mode}` is not a mode the engine accepts ({known})"),
            )
        };
        let borrow = |workload: &mut Workload, resource, other: &str| {
            workload.borrowed.push(Borrowed {
                resource,
                container: other.to_owned(),
            });
        };
        let network = host.string("NetworkMode", path)?.unwrap_or_default();
        match network.strip_prefix("container:") {
            Some(other) => borrow(workload, BorrowedResource::Network, other),
            None => join_network(network, workload, lookups),
        }
        match host.string("PidMode", path)?.unwrap_or_default() {
            "" => {}
            "host" => workload.host_pid = true,
            mode => match mode.strip_prefix("container:") {
                Some(other) if !other.is_empty() => borrow(workload, BorrowedResource::Pid, other),
                _ => return Err(unknown("PidMode", mode, "host, container:<id>")),
            },
        }
        match host.string("IpcMode", path)?.unwrap_or_default() {
            "" | "none" | "private" | "shareable" => {}
            "host" => workload.host_ipc = true,
            mode => match mode.strip_prefix("container:") {
                Some(other) if !other.is_empty() => borrow(workload, BorrowedResource::Ipc, other),
                _ => {
                    return Err(unknown(
                        "IpcMode",
                        mode,
                        "none, private, shareable, host, container:<id>",
                    ));
                }
            },
        }
        match host.string("UTSMode", path)?.unwrap_or_default() {
            "" => {}
            "host" => workload.host_uts = true,
            mode => return Err(unknown("UTSMode", mode, "host")),
        }
        match host.string("UsernsMode", path)?.unwrap_or_default() {
            "" | "private" => {}
            "host" => workload.host_users = Some(true),
            mode => return Err(unknown("UsernsMode", mode, "host, private")),
        }
        Ok(())
    }

    /// Devices, device cgroup rules and device requests.
    fn devices(&self, container: &mut Container) -> Result<(), NormalizeError> {
        let (host, path) = (self.host, self.path);
        for (index, device) in host.array("Devices", path)?.iter().enumerate() {
            let path = format!("{}[{index}]", join(path, "Devices"));
            let device = device.as_object(&path)?;
            let text = |field: &str| -> Result<String, NormalizeError> {
                Ok(device.string(field, &path)?.unwrap_or_default().to_owned())
            };
            container.devices.push(Device {
                host_path: text("PathOnHost")?,
                container_path: text("PathInContainer")?,
                permissions: text("CgroupPermissions")?,
            });
        }
        // A cgroup rule grants access to device numbers; with the default
        // MKNOD capability that reaches any host device, so it counts as one.
        for rule in host.strings("DeviceCgroupRules", path)? {
            container.devices.push(Device {
                host_path: String::new(),
                container_path: String::new(),
                permissions: rule,
            });
        }
        // `--gpus`: the driver hands in host devices of its choosing.
        for (index, request) in host.array("DeviceRequests", path)?.iter().enumerate() {
            let path = format!("{}[{index}]", join(path, "DeviceRequests"));
            let request = request.as_object(&path)?;
            let driver = request.string("Driver", &path)?.unwrap_or_default();
            let ids = request.strings("DeviceIDs", &path)?;
            let which = match request.field("Count", &path)? {
                _ if !ids.is_empty() => format!("device={}", ids.join(",")),
                Some(Value::Number(count)) if count.as_i64() == Some(-1) => "all".to_owned(),
                Some(Value::Number(count)) => count.to_string(),
                _ => "all".to_owned(),
            };
            container.devices.push(Device {
                host_path: format!(
                    "{}:{which}",
                    if driver.is_empty() { "gpus" } else { driver }
                ),
                container_path: String::new(),
                permissions: "rwm".into(),
            });
        }
        Ok(())
    }
}

/// The engine's spelling of a capability: upper case, without `CAP_`.
pub(crate) fn capability(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map(str::to_owned)
        .unwrap_or(upper)
}

/// `--user uid[:gid]` or `name[:group]` (see [`user`]).
pub(crate) fn apply_user(spec: &str, context: &mut SecurityContext) {
    let user = user::parse(spec);
    if let Some(uid) = user.uid {
        context.run_as_user = Some(uid);
        context.run_as_non_root = Some(uid != 0);
    }
    if let Some(gid) = user.gid {
        context.run_as_group = Some(gid);
    }
}

/// One `--security-opt`, read as the engine's `parseSecurityOpt` reads it.
fn security_option(
    option: &str,
    context: &mut SecurityContext,
    path: &str,
) -> Result<(), NormalizeError> {
    let refuse = |why: &str| Err(NormalizeError::new(path, format!("`{option}`: {why}")));
    match option {
        "no-new-privileges" => {
            context.allow_privilege_escalation = Some(false);
            return Ok(());
        }
        "disable" => {
            selinux(context).type_ = SELINUX_DISABLED_TYPE.into();
            return Ok(());
        }
        _ => {}
    }
    // The engine splits on `=`, or on the deprecated `:` when there is no `=`.
    let Some((key, value)) = option.split_once('=').or_else(|| option.split_once(':')) else {
        return refuse("not a security option the engine accepts");
    };
    match key {
        "seccomp" => {
            context.seccomp_profile = Some(match value {
                "unconfined" => SecurityProfile::Unconfined,
                "" | "builtin" => SecurityProfile::RuntimeDefault,
                // An inline profile is whatever the client wrote: nobody
                // administering the host vetted it.
                _ => SecurityProfile::Other("custom profile supplied by the client".into()),
            });
        }
        "apparmor" => {
            context.app_armor_profile = Some(match value {
                "unconfined" => SecurityProfile::Unconfined,
                "" | "docker-default" => SecurityProfile::RuntimeDefault,
                name => SecurityProfile::Localhost(name.to_owned()),
            });
        }
        "label" => {
            let Some((field, label)) = value.split_once(':') else {
                return if value == "disable" {
                    selinux(context).type_ = SELINUX_DISABLED_TYPE.into();
                    Ok(())
                } else {
                    refuse("not an SELinux label option (user:, role:, type:, level:, disable)")
                };
            };
            let options = selinux(context);
            match field {
                "user" => options.user = label.to_owned(),
                "role" => options.role = label.to_owned(),
                "type" => options.type_ = label.to_owned(),
                "level" => options.level = label.to_owned(),
                "filetype" => {}
                _ => {
                    return refuse(
                        "not an SELinux label option (user:, role:, type:, level:, disable)",
                    );
                }
            }
        }
        "no-new-privileges" => match go_bool(value) {
            Some(enabled) => context.allow_privilege_escalation = Some(!enabled),
            None => return refuse("not a boolean the engine accepts"),
        },
        "writable-cgroups" => {
            if go_bool(value).is_none() {
                return refuse("not a boolean the engine accepts");
            }
        }
        "systempaths" if value == "unconfined" => context.proc_mount = Some("Unmasked".into()),
        _ => return refuse("not a security option the engine accepts"),
    }
    Ok(())
}

pub(crate) fn selinux(context: &mut SecurityContext) -> &mut SeLinuxOptions {
    context
        .se_linux_options
        .get_or_insert_with(|| SeLinuxOptions {
            user: String::new(),
            role: String::new(),
            type_: String::new(),
            level: String::new(),
        })
}

/// Go's `strconv.ParseBool`.
fn go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `"80/tcp": [{"HostIp": "", "HostPort": "8080"}]`.
fn ports(
    key: &str,
    bound: &Value,
    ports: &mut Vec<Port>,
    path: &str,
) -> Result<(), NormalizeError> {
    let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
    let container_port = first_port(port)
        .ok_or_else(|| NormalizeError::new(path, format!("`{key}` is not a port")))?;
    let bindings: &[Value] = match bound {
        Value::Null => &[],
        bound => bound.as_array(path)?,
    };
    for (index, binding) in bindings.iter().enumerate() {
        let path = format!("{path}[{index}]");
        let binding = binding.as_object(&path)?;
        let host_port = binding.string("HostPort", &path)?.unwrap_or_default();
        let host_port = if host_port.is_empty() {
            0
        } else {
            first_port(host_port).ok_or_else(|| {
                NormalizeError::new(
                    join(&path, "HostPort"),
                    format!("`{host_port}` is not a port"),
                )
            })?
        };
        ports.push(Port {
            container_port,
            host_port,
            host_ip: binding
                .string("HostIp", &path)?
                .unwrap_or_default()
                .to_owned(),
            protocol: protocol.to_ascii_uppercase(),
        });
    }
    Ok(())
}

/// A port, or the first of a range (`8000-8010`).
fn first_port(text: &str) -> Option<u16> {
    text.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests;
