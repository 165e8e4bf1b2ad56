//! Normalizes a Docker `POST /containers/create` body into a [`Workload`].
//!
//! The body is read as the engine reads it, with Go's `encoding/json` rules,
//! and each setting that grants privileges is mapped into the workload model
//! in the vocabulary of the Pod Security Standards, so the same policies
//! judge `docker run` and a Kubernetes pod:
//!
//! - `--privileged`, `--cap-add`/`--cap-drop` (names normalized as the engine
//!   does: upper case, no `CAP_`), `--read-only`, `--user`;
//! - `--security-opt`: `seccomp`, `apparmor`, `label` (SELinux),
//!   `no-new-privileges`, `systempaths`, parsed by the engine's rules; an
//!   option the engine would refuse is refused here too;
//! - `--network`/`--pid`/`--ipc`/`--uts`/`--userns`/`--cgroupns` `host`, and
//!   `container:<id>` modes, which borrow another container's namespace;
//! - volumes: `-v` binds and named volumes, `--mount` (including `local`
//!   volumes whose driver options bind a host path), `--tmpfs`,
//!   `--volumes-from`;
//! - `--device`, `--device-cgroup-rule`, published ports, `--sysctl`.

use super::gojson::{self, Object, Value, join};
use super::{
    Borrowed, BorrowedResource, Container, ContainerKind, Device, GroupVersionKind, Image,
    NormalizeError, Operation, Origin, Port, Request, SeLinuxOptions, SecurityContext,
    SecurityProfile, Sysctl, UserInfo, Volume, VolumeMount, Workload,
};

/// Name given to the container when the client asked for none.
const UNNAMED: &str = "container";

/// The SELinux type container runtimes run `label=disable` containers as:
/// unconfined.
const SELINUX_DISABLED_TYPE: &str = "spc_t";

/// Builds the request for a container-create body. `name` is the `name`
/// query parameter; `api_version` the version prefix the client used.
pub fn container_create(
    body: &str,
    name: Option<String>,
    api_version: String,
) -> Result<Request, NormalizeError> {
    let workload = normalize(body, name.as_deref())?;
    Ok(request(
        ("Container", "containers", None),
        Operation::Create,
        api_version,
        name,
        body,
        Some(workload),
    ))
}

/// Builds the request for an exec-create body (`docker exec`): a CONNECT to
/// the container, as Kubernetes' `pods/exec`, whose workload is the one
/// process the exec starts, with the privileges and user it asks for.
pub fn exec_create(
    body: &str,
    target: &str,
    api_version: String,
) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    let mut context = SecurityContext {
        privileged: root.boolean("Privileged", "")?,
        ..SecurityContext::default()
    };
    if let Some(user) = root.string("User", "")?.filter(|user| !user.is_empty()) {
        apply_user(user, &mut context);
    }
    let workload = Workload {
        containers: vec![Container {
            security_context: context,
            ..container(target)
        }],
        ..Workload::default()
    };
    Ok(request(
        ("Exec", "containers", Some("exec")),
        Operation::Connect,
        api_version,
        Some(target.to_owned()),
        body,
        Some(workload),
    ))
}

/// Builds the request for a swarm service specification (`docker service
/// create` and `update`): its task's container, in the same model.
pub fn service(
    body: &str,
    operation: Operation,
    name: Option<String>,
    api_version: String,
) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    const TASK: &str = "TaskTemplate";
    const SPEC: &str = "TaskTemplate.ContainerSpec";
    let spec = root
        .object(TASK, "")?
        .map(|task| task.object("ContainerSpec", TASK))
        .transpose()?
        .flatten();
    let name = name.or(root.string("Name", "")?.map(str::to_owned));
    let mut workload = Workload {
        labels: root.string_map("Labels", "")?,
        ..Workload::default()
    };
    let mut container = container(name.as_deref().unwrap_or(UNNAMED));
    let context = &mut container.security_context;
    context.seccomp_profile = Some(SecurityProfile::RuntimeDefault);
    context.app_armor_profile = Some(SecurityProfile::RuntimeDefault);
    if let Some(spec) = spec {
        container.image = spec.string("Image", SPEC)?.unwrap_or_default().to_owned();
        if let Some(user) = spec.string("User", SPEC)? {
            apply_user(user, context);
        }
        context.read_only_root_filesystem = spec.boolean("ReadOnly", SPEC)?;
        context.capabilities.add = spec
            .strings("CapabilityAdd", SPEC)?
            .iter()
            .map(|c| capability(c))
            .collect();
        context.capabilities.drop = spec
            .strings("CapabilityDrop", SPEC)?
            .iter()
            .map(|c| capability(c))
            .collect();
        if let Some(privileges) = spec.object("Privileges", SPEC)? {
            service_privileges(privileges, context, &join(SPEC, "Privileges"))?;
        }
        workload.security_context.sysctls = spec
            .string_map("Sysctls", SPEC)?
            .into_iter()
            .map(|(name, value)| Sysctl { name, value })
            .collect();
        for (index, mount) in spec.array("Mounts", SPEC)?.iter().enumerate() {
            let path = format!("{SPEC}.Mounts[{index}]");
            self::mount(
                mount.as_object(&path)?,
                &mut workload,
                &mut container,
                &path,
            )?;
        }
    }
    // The host network, named by a task or (in old APIs) the service.
    for (owner, path) in [(root.object(TASK, "")?, TASK), (Some(root), "")] {
        let Some(owner) = owner else { continue };
        for (index, network) in owner.array("Networks", path)?.iter().enumerate() {
            let path = format!("{}[{index}]", join(path, "Networks"));
            if network.as_object(&path)?.string("Target", &path)? == Some("host") {
                workload.host_network = true;
            }
        }
    }
    // Published ports bind every node's address (the routing mesh) or the
    // task's node (host mode): host ports either way.
    if let Some(endpoint) = root.object("EndpointSpec", "")? {
        for (index, port) in endpoint.array("Ports", "EndpointSpec")?.iter().enumerate() {
            let path = format!("EndpointSpec.Ports[{index}]");
            let port = port.as_object(&path)?;
            let number = |key: &str| -> Result<u16, NormalizeError> {
                match port.field(key, &path)? {
                    None => Ok(0),
                    Some(Value::Number(number)) => number
                        .as_u64()
                        .and_then(|number| u16::try_from(number).ok())
                        .ok_or_else(|| NormalizeError::new(join(&path, key), "not a port number")),
                    Some(_) => Err(NormalizeError::new(join(&path, key), "expected a number")),
                }
            };
            container.ports.push(Port {
                container_port: number("TargetPort")?,
                host_port: number("PublishedPort")?,
                host_ip: String::new(),
                protocol: port
                    .string("Protocol", &path)?
                    .unwrap_or("tcp")
                    .to_ascii_uppercase(),
            });
        }
    }
    workload.containers.push(container);
    Ok(request(
        ("Service", "services", None),
        operation,
        api_version,
        name,
        body,
        Some(workload),
    ))
}

/// A service's `Privileges`: SELinux, seccomp, AppArmor, no-new-privileges.
fn service_privileges(
    privileges: &Object,
    context: &mut SecurityContext,
    path: &str,
) -> Result<(), NormalizeError> {
    if let Some(selinux) = privileges.object("SELinuxContext", path)? {
        let path = join(path, "SELinuxContext");
        let options = self::selinux(context);
        if selinux.boolean("Disable", &path)? == Some(true) {
            options.type_ = SELINUX_DISABLED_TYPE.into();
        }
        for (field, target) in [
            ("User", &mut options.user),
            ("Role", &mut options.role),
            ("Level", &mut options.level),
        ] {
            if let Some(value) = selinux.string(field, &path)? {
                *target = value.to_owned();
            }
        }
        if let Some(value) = selinux
            .string("Type", &path)?
            .filter(|value| !value.is_empty())
        {
            options.type_ = value.to_owned();
        }
    }
    if let Some(seccomp) = privileges.object("Seccomp", path)? {
        context.seccomp_profile = Some(match seccomp.string("Mode", &join(path, "Seccomp"))? {
            Some("unconfined") => SecurityProfile::Unconfined,
            Some("custom") => {
                SecurityProfile::Other("custom profile supplied by the client".into())
            }
            _ => SecurityProfile::RuntimeDefault,
        });
    }
    if let Some(apparmor) = privileges.object("AppArmor", path)?
        && apparmor.string("Mode", &join(path, "AppArmor"))? == Some("disabled")
    {
        context.app_armor_profile = Some(SecurityProfile::Unconfined);
    }
    if privileges.boolean("NoNewPrivileges", path)? == Some(true) {
        context.allow_privilege_escalation = Some(false);
    }
    Ok(())
}

/// Builds the request for a volume-create body: a workload of that one
/// volume, so a `local` volume bound to a host path is judged as one.
pub fn volume_create(body: &str, api_version: String) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    let name = root.string("Name", "")?.unwrap_or_default().to_owned();
    // The create body spells the driver's fields as a mount's DriverConfig
    // does, under other names; rebuild one to read it the same way.
    let driver = root.string("Driver", "")?.unwrap_or_default();
    let options = root.string_map("DriverOpts", "")?;
    let config = format!(
        r#"{{"Name": {}, "Options": {}}}"#,
        serde_json::Value::from(driver),
        serde_json::Value::Object(options.into_iter().map(|(k, v)| (k, v.into())).collect())
    );
    let config = gojson::parse(&config)?;
    let volume = volume_driver(&name, config.as_object("")?, "")?;
    let workload = Workload {
        volumes: vec![volume],
        ..Workload::default()
    };
    Ok(request(
        ("Volume", "volumes", None),
        Operation::Create,
        api_version,
        Some(name).filter(|name| !name.is_empty()),
        body,
        Some(workload),
    ))
}

/// Builds the request for an image pull (`docker pull`, and the pull
/// `docker run` does first): no workload, one image.
pub fn image_pull(reference: String, api_version: String) -> Request {
    let object = serde_json::json!({ "fromImage": reference }).to_string();
    let mut pull = request(
        ("Image", "images", None),
        Operation::Create,
        api_version,
        Some(reference.clone()),
        &object,
        None,
    );
    pull.images = vec![Image {
        reference,
        containers: Vec::new(),
        verification: None,
    }];
    pull
}

/// Builds the request for `POST /build` (the classic builder) from its
/// query: the build's parameters as the object, and as the workload the
/// container its `RUN` steps run in — the engine's default profiles, and
/// the host's network or another container's with `--network`. The build
/// context is not read; what the Dockerfile runs is the image's business.
pub fn build(query: &[(String, String)], api_version: String) -> Request {
    let parameter = |key: &str| {
        query
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    let object: serde_json::Map<String, serde_json::Value> = query
        .iter()
        .map(|(key, value)| (key.clone(), value.clone().into()))
        .collect();
    let mut workload = Workload::default();
    match parameter("networkmode") {
        Some("host") => workload.host_network = true,
        Some(mode) => {
            if let Some(other) = mode.strip_prefix("container:") {
                workload.borrowed.push(Borrowed {
                    resource: BorrowedResource::Network,
                    container: other.to_owned(),
                });
            }
        }
        None => {}
    }
    workload.containers.push(Container {
        security_context: SecurityContext {
            seccomp_profile: Some(SecurityProfile::RuntimeDefault),
            app_armor_profile: Some(SecurityProfile::RuntimeDefault),
            ..SecurityContext::default()
        },
        ..container("build")
    });
    request(
        ("Build", "build", None),
        Operation::Create,
        api_version,
        parameter("t").map(str::to_owned),
        &serde_json::Value::Object(object).to_string(),
        Some(workload),
    )
}

/// A Docker request of `(kind, resource, sub-resource)`.
fn request(
    (kind, resource, sub_resource): (&str, &str, Option<&str>),
    operation: Operation,
    api_version: String,
    name: Option<String>,
    object: &str,
    workload: Option<Workload>,
) -> Request {
    Request {
        uid: String::new(),
        origin: Origin::Docker,
        operation,
        kind: GroupVersionKind {
            group: "docker".into(),
            version: api_version,
            kind: kind.into(),
        },
        resource: resource.into(),
        sub_resource: sub_resource.map(Into::into),
        namespace: None,
        name,
        user: UserInfo::default(),
        dry_run: false,
        object: Some(object.to_owned()),
        old_object: None,
        images: workload.as_ref().map(super::images).unwrap_or_default(),
        workload,
    }
}

/// A regular container with nothing set.
fn container(name: &str) -> Container {
    Container {
        name: name.to_owned(),
        kind: ContainerKind::Regular,
        index: 0,
        image: String::new(),
        security_context: SecurityContext::default(),
        ports: Vec::new(),
        volume_mounts: Vec::new(),
        devices: Vec::new(),
        handler_hosts: Vec::new(),
    }
}

/// Normalizes a container-create body.
pub fn normalize(body: &str, name: Option<&str>) -> Result<Workload, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    let mut context = SecurityContext {
        // The engine applies its default seccomp and AppArmor profiles
        // unless told otherwise.
        seccomp_profile: Some(SecurityProfile::RuntimeDefault),
        app_armor_profile: Some(SecurityProfile::RuntimeDefault),
        ..SecurityContext::default()
    };
    if let Some(user) = root.string("User", "")? {
        apply_user(user, &mut context);
    }
    let mut workload = Workload {
        labels: root.string_map("Labels", "")?,
        ..Workload::default()
    };
    let mut container = Container {
        image: root.string("Image", "")?.unwrap_or_default().to_owned(),
        ..container(name.filter(|name| !name.is_empty()).unwrap_or(UNNAMED))
    };
    // Anonymous volumes declared at the top level (`VOLUME` in the API).
    if let Some(volumes) = root.object("Volumes", "")? {
        for (target, _) in volumes.entries() {
            attach(
                &mut workload,
                &mut container,
                named(target, "persistentVolumeClaim"),
                target,
                false,
            );
        }
    }
    if let Some(host) = root.object("HostConfig", "")? {
        host_config(host, &mut workload, &mut container, &mut context)?;
    }
    container.security_context = context;
    workload.containers.push(container);
    Ok(workload)
}

fn host_config(
    host: &Object,
    workload: &mut Workload,
    container: &mut Container,
    context: &mut SecurityContext,
) -> Result<(), NormalizeError> {
    const PATH: &str = "HostConfig";
    context.privileged = host.boolean("Privileged", PATH)?;
    context.read_only_root_filesystem = host.boolean("ReadonlyRootfs", PATH)?;
    context.capabilities.add = host
        .str_slice("CapAdd", PATH)?
        .iter()
        .map(|c| capability(c))
        .collect();
    context.capabilities.drop = host
        .str_slice("CapDrop", PATH)?
        .iter()
        .map(|c| capability(c))
        .collect();
    for (index, option) in host.strings("SecurityOpt", PATH)?.iter().enumerate() {
        security_option(option, context, &format!("{PATH}.SecurityOpt[{index}]"))?;
    }
    // The CLI turns `--security-opt systempaths=unconfined` into explicit,
    // empty path lists; any list replaces the engine's default masks.
    if host.field("MaskedPaths", PATH)?.is_some() || host.field("ReadonlyPaths", PATH)?.is_some() {
        context.proc_mount = Some("Unmasked".into());
    }

    for (field, resource) in [
        ("NetworkMode", BorrowedResource::Network),
        ("PidMode", BorrowedResource::Pid),
        ("IpcMode", BorrowedResource::Ipc),
    ] {
        let Some(mode) = host.string(field, PATH)? else {
            continue;
        };
        if mode == "host" {
            match resource {
                BorrowedResource::Network => workload.host_network = true,
                BorrowedResource::Pid => workload.host_pid = true,
                _ => workload.host_ipc = true,
            }
        } else if let Some(other) = mode.strip_prefix("container:") {
            workload.borrowed.push(Borrowed {
                resource,
                container: other.to_owned(),
            });
        }
    }
    workload.host_uts = host.string("UTSMode", PATH)? == Some("host");
    workload.host_cgroup = host.string("CgroupnsMode", PATH)? == Some("host");
    if host.string("UsernsMode", PATH)? == Some("host") {
        workload.host_users = Some(true);
    }

    workload.security_context.sysctls = host
        .string_map("Sysctls", PATH)?
        .into_iter()
        .map(|(name, value)| Sysctl { name, value })
        .collect();

    for (index, bind) in host.strings("Binds", PATH)?.iter().enumerate() {
        self::bind(bind, workload, container, &format!("{PATH}.Binds[{index}]"))?;
    }
    for (index, mount) in host.array("Mounts", PATH)?.iter().enumerate() {
        let path = format!("{PATH}.Mounts[{index}]");
        self::mount(mount.as_object(&path)?, workload, container, &path)?;
    }
    for (target, _) in host.string_map("Tmpfs", PATH)? {
        attach(
            workload,
            container,
            named(&target, "emptyDir"),
            &target,
            false,
        );
    }
    for spec in host.strings("VolumesFrom", PATH)? {
        let source = spec.split(':').next().unwrap_or_default();
        workload.borrowed.push(Borrowed {
            resource: BorrowedResource::Volumes,
            container: source.to_owned(),
        });
    }

    for (index, device) in host.array("Devices", PATH)?.iter().enumerate() {
        let path = format!("{PATH}.Devices[{index}]");
        let device = device.as_object(&path)?;
        container.devices.push(Device {
            host_path: device
                .string("PathOnHost", &path)?
                .unwrap_or_default()
                .to_owned(),
            container_path: device
                .string("PathInContainer", &path)?
                .unwrap_or_default()
                .to_owned(),
            permissions: device
                .string("CgroupPermissions", &path)?
                .unwrap_or_default()
                .to_owned(),
        });
    }
    // A cgroup rule grants access to device numbers; with the default
    // MKNOD capability that reaches any host device, so it counts as one.
    for rule in host.strings("DeviceCgroupRules", PATH)? {
        container.devices.push(Device {
            host_path: String::new(),
            container_path: String::new(),
            permissions: rule,
        });
    }

    if let Some(bindings) = host.object("PortBindings", PATH)? {
        let path = join(PATH, "PortBindings");
        for (key, bound) in bindings.entries() {
            ports(key, bound, &mut container.ports, &join(&path, key))?;
        }
    }
    Ok(())
}

/// The engine's spelling of a capability: upper case, without `CAP_`.
fn capability(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map(str::to_owned)
        .unwrap_or(upper)
}

/// `--user uid[:gid]` or `name[:group]`: only numeric ids and `root` are
/// known without the image.
fn apply_user(user: &str, context: &mut SecurityContext) {
    let (uid, gid) = user.split_once(':').unwrap_or((user, ""));
    let uid = if uid == "root" {
        Some(0)
    } else {
        uid.parse::<u32>().ok()
    };
    if let Some(uid) = uid {
        context.run_as_user = Some(i64::from(uid));
        context.run_as_non_root = Some(uid != 0);
    }
    if let Ok(gid) = gid.parse::<u32>() {
        context.run_as_group = Some(i64::from(gid));
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

fn selinux(context: &mut SecurityContext) -> &mut SeLinuxOptions {
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

/// A `-v` bind: `target`, `source:target` or `source:target:options`; a
/// source that is an absolute path is a host path, anything else a volume.
fn bind(
    spec: &str,
    workload: &mut Workload,
    container: &mut Container,
    path: &str,
) -> Result<(), NormalizeError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, options] => (*source, *target, *options),
        _ => {
            return Err(NormalizeError::new(
                path,
                format!("`{spec}` is not a volume specification"),
            ));
        }
    };
    if target.is_empty() || parts.len() > 1 && source.is_empty() {
        return Err(NormalizeError::new(
            path,
            format!("`{spec}` is not a volume specification"),
        ));
    }
    let read_only = options.split(',').any(|option| option == "ro");
    if source.starts_with('/') {
        attach(workload, container, host(source), target, read_only);
    } else {
        let name = if source.is_empty() { target } else { source };
        attach(
            workload,
            container,
            named(name, "persistentVolumeClaim"),
            target,
            read_only,
        );
    }
    Ok(())
}

/// A `--mount`.
fn mount(
    mount: &Object,
    workload: &mut Workload,
    container: &mut Container,
    path: &str,
) -> Result<(), NormalizeError> {
    let kind = mount.string("Type", path)?.unwrap_or_default();
    let source = mount.string("Source", path)?.unwrap_or_default();
    let target = mount.string("Target", path)?.unwrap_or_default();
    let read_only = mount.boolean("ReadOnly", path)?.unwrap_or(false);
    let name = if source.is_empty() { target } else { source };
    match kind {
        "bind" | "npipe" => attach(workload, container, host(source), target, read_only),
        "tmpfs" => attach(
            workload,
            container,
            named(target, "emptyDir"),
            target,
            read_only,
        ),
        "image" => attach(workload, container, named(name, "image"), target, read_only),
        "cluster" => attach(workload, container, named(name, "csi"), target, read_only),
        "volume" => {
            let options_path = join(path, "VolumeOptions");
            let driver = match mount.object("VolumeOptions", path)? {
                Some(options) => options.object("DriverConfig", &options_path)?,
                None => None,
            };
            let volume = match driver {
                Some(driver) => volume_driver(name, driver, &join(&options_path, "DriverConfig"))?,
                None => named(name, "persistentVolumeClaim"),
            };
            attach(workload, container, volume, target, read_only);
        }
        other => {
            return Err(NormalizeError::new(
                join(path, "Type"),
                format!("`{other}` is not a mount type"),
            ));
        }
    }
    Ok(())
}

/// What a volume with an explicit driver really mounts. The `local` driver
/// mounts whatever its options say: `o=bind,device=/` is the host's root.
fn volume_driver(name: &str, driver: &Object, path: &str) -> Result<Volume, NormalizeError> {
    let driver_name = driver.string("Name", path)?.unwrap_or_default();
    if !driver_name.is_empty() && driver_name != "local" {
        return Ok(named(name, "csi"));
    }
    let options = driver.string_map("Options", path)?;
    let option = |key: &str| {
        options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    Ok(match (option("type"), option("device")) {
        (_, None) => named(name, "persistentVolumeClaim"),
        (Some("nfs" | "nfs4"), Some(_)) => named(name, "nfs"),
        (Some("tmpfs"), Some(_)) => named(name, "emptyDir"),
        (_, Some(device)) => Volume {
            host_path: Some(device.to_owned()),
            ..named(name, "hostPath")
        },
    })
}

/// A `hostPath` volume, named by its host path.
fn host(path: &str) -> Volume {
    Volume {
        name: path.to_owned(),
        kind: "hostPath".into(),
        host_path: Some(path.to_owned()),
    }
}

/// A volume of another kind.
fn named(name: &str, kind: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        kind: kind.to_owned(),
        host_path: None,
    }
}

/// Adds `volume` to the workload, mounted by the container at `target`.
fn attach(
    workload: &mut Workload,
    container: &mut Container,
    volume: Volume,
    target: &str,
    read_only: bool,
) {
    container.volume_mounts.push(VolumeMount {
        name: volume.name.clone(),
        mount_path: target.to_owned(),
        read_only,
    });
    workload.volumes.push(volume);
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
mod tests {
    use super::*;

    fn workload(body: serde_json::Value) -> Workload {
        normalize(&body.to_string(), Some("web")).expect("valid body")
    }

    fn error(body: &str) -> NormalizeError {
        normalize(body, None).expect_err("invalid body")
    }

    #[test]
    fn a_plain_container_gets_the_engine_defaults() {
        let workload = workload(serde_json::json!({"Image": "nginx:1.27"}));
        let container = &workload.containers[0];
        assert_eq!(container.name, "web");
        assert_eq!(container.image, "nginx:1.27");
        assert_eq!(
            container.security_context.seccomp_profile,
            Some(SecurityProfile::RuntimeDefault)
        );
        assert_eq!(container.security_context.privileged, None);
        assert_eq!(workload.template_path, None);
    }

    #[test]
    fn privileges_are_mapped() {
        let workload = workload(serde_json::json!({
            "Image": "alpine", "User": "1000:1000",
            "HostConfig": {
                "Privileged": true, "CapAdd": ["sys_admin", "CAP_NET_RAW"], "CapDrop": "ALL",
                "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "label=disable", "no-new-privileges:true"],
                "NetworkMode": "host", "PidMode": "container:db", "IpcMode": "host", "UTSMode": "host",
                "UsernsMode": "host", "CgroupnsMode": "host",
                "Sysctls": {"net.ipv4.ip_forward": "1"},
                "Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}],
                "DeviceCgroupRules": ["b 8:* rmw"],
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": null},
                "MaskedPaths": []
            }
        }));
        assert!(
            workload.host_network && workload.host_ipc && workload.host_uts && workload.host_cgroup
        );
        assert!(!workload.host_pid);
        assert_eq!(workload.host_users, Some(true));
        assert_eq!(
            workload.borrowed,
            [Borrowed {
                resource: BorrowedResource::Pid,
                container: "db".into()
            }]
        );
        assert_eq!(
            workload.security_context.sysctls[0].name,
            "net.ipv4.ip_forward"
        );
        let container = &workload.containers[0];
        let context = &container.security_context;
        assert_eq!(context.privileged, Some(true));
        assert_eq!(context.capabilities.add, ["SYS_ADMIN", "NET_RAW"]);
        assert_eq!(context.capabilities.drop, ["ALL"]);
        assert_eq!(context.seccomp_profile, Some(SecurityProfile::Unconfined));
        assert_eq!(context.app_armor_profile, Some(SecurityProfile::Unconfined));
        assert_eq!(
            context.se_linux_options.as_ref().map(|o| o.type_.as_str()),
            Some("spc_t")
        );
        assert_eq!(context.allow_privilege_escalation, Some(false));
        assert_eq!(context.proc_mount.as_deref(), Some("Unmasked"));
        assert_eq!(
            (
                context.run_as_user,
                context.run_as_group,
                context.run_as_non_root
            ),
            (Some(1000), Some(1000), Some(true))
        );
        assert_eq!(container.devices.len(), 2);
        assert_eq!(container.devices[0].host_path, "/dev/sda");
        assert_eq!(
            container.ports,
            [Port {
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
                protocol: "TCP".into()
            }]
        );
    }

    #[test]
    fn users_are_only_trusted_when_numeric_or_root() {
        for (user, expected) in [
            ("root", (Some(0), Some(false))),
            ("0:0", (Some(0), Some(false))),
            ("nginx", (None, None)),
            ("", (None, None)),
            ("65534", (Some(65534), Some(true))),
        ] {
            let workload = workload(serde_json::json!({"Image": "x", "User": user}));
            let context = &workload.containers[0].security_context;
            assert_eq!(
                (context.run_as_user, context.run_as_non_root),
                expected,
                "{user}"
            );
        }
    }

    #[test]
    fn volumes_that_reach_the_host_are_host_paths() {
        let workload = workload(serde_json::json!({
            "Image": "x",
            "Volumes": {"/data": {}},
            "HostConfig": {
                "Binds": ["/:/host:ro", "cache:/cache", "/var/run/docker.sock:/var/run/docker.sock"],
                "Mounts": [
                    {"Type": "bind", "Source": "/etc", "Target": "/etc2"},
                    {"Type": "volume", "Source": "sneaky", "Target": "/s",
                     "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}},
                    {"Type": "volume", "Target": "/anon"},
                    {"Type": "volume", "Source": "remote", "Target": "/r", "VolumeOptions": {"DriverConfig": {"Name": "rexray"}}},
                    {"Type": "tmpfs", "Target": "/run"}
                ],
                "Tmpfs": {"/tmp": "rw"},
                "VolumesFrom": ["other:ro"]
            }
        }));
        let volumes: Vec<_> = workload
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.kind.as_str(), v.host_path.as_deref()))
            .collect();
        assert_eq!(
            volumes,
            [
                ("/data", "persistentVolumeClaim", None),
                ("/", "hostPath", Some("/")),
                ("cache", "persistentVolumeClaim", None),
                (
                    "/var/run/docker.sock",
                    "hostPath",
                    Some("/var/run/docker.sock")
                ),
                ("/etc", "hostPath", Some("/etc")),
                ("sneaky", "hostPath", Some("/")),
                ("/anon", "persistentVolumeClaim", None),
                ("remote", "csi", None),
                ("/run", "emptyDir", None),
                ("/tmp", "emptyDir", None),
            ]
        );
        assert!(workload.containers[0].volume_mounts[1].read_only);
        assert_eq!(
            workload.borrowed,
            [Borrowed {
                resource: BorrowedResource::Volumes,
                container: "other".into()
            }]
        );
    }

    #[test]
    fn the_engine_reading_is_the_one_judged() {
        // Case variants and Unicode folding reach the same fields as in Go.
        let workload = workload(
            serde_json::json!({"image": "x", "hostconfig": {"PRIVILEGED": true, "Bind\u{017F}": ["/:/h"]}}),
        );
        assert_eq!(
            workload.containers[0].security_context.privileged,
            Some(true)
        );
        assert_eq!(workload.volumes[0].host_path.as_deref(), Some("/"));
        // Two spellings of one field: refused, whatever their order.
        let ambiguous =
            error(r#"{"Image": "x", "HostConfig": {"Privileged": false, "privileged": true}}"#);
        assert_eq!(ambiguous.path, "HostConfig.Privileged");
        let duplicate =
            error(r#"{"Image": "x", "HostConfig": {"Privileged": false, "Privileged": true}}"#);
        assert!(duplicate.message.contains("duplicate key"), "{duplicate}");
    }

    #[test]
    fn options_the_engine_refuses_are_refused() {
        for (body, path) in [
            (
                r#"{"HostConfig": {"SecurityOpt": ["seccomp"]}}"#,
                "HostConfig.SecurityOpt[0]",
            ),
            (
                r#"{"HostConfig": {"SecurityOpt": ["Seccomp=unconfined"]}}"#,
                "HostConfig.SecurityOpt[0]",
            ),
            (
                r#"{"HostConfig": {"SecurityOpt": ["no-new-privileges=maybe"]}}"#,
                "HostConfig.SecurityOpt[0]",
            ),
            (
                r#"{"HostConfig": {"Privileged": "true"}}"#,
                "HostConfig.Privileged",
            ),
            (
                r#"{"HostConfig": {"Binds": ["a:b:c:d"]}}"#,
                "HostConfig.Binds[0]",
            ),
            (
                r#"{"HostConfig": {"Mounts": [{"Type": "magic"}]}}"#,
                "HostConfig.Mounts[0].Type",
            ),
            (
                r#"{"HostConfig": {"PortBindings": {"http/tcp": []}}}"#,
                "HostConfig.PortBindings.http/tcp",
            ),
            (r#"[]"#, ""),
        ] {
            assert_eq!(error(body).path, path, "{body}");
        }
    }

    #[test]
    fn inline_seccomp_profiles_are_not_trusted() {
        let workload = workload(
            serde_json::json!({"HostConfig": {"SecurityOpt": [r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#]}}),
        );
        assert!(matches!(
            workload.containers[0].security_context.seccomp_profile,
            Some(SecurityProfile::Other(_))
        ));
    }

    #[test]
    fn a_build_runs_its_steps_where_networkmode_says() {
        let query = |mode: &str| {
            vec![
                ("t".to_owned(), "app:1".to_owned()),
                ("networkmode".to_owned(), mode.to_owned()),
            ]
        };
        let host = build(&query("host"), "1.41".into());
        assert_eq!(host.kind.kind, "Build");
        assert_eq!(host.name.as_deref(), Some("app:1"));
        assert!(host.workload.as_ref().is_some_and(|w| w.host_network));
        let borrowed = build(&query("container:db"), "1.41".into());
        let workload = borrowed.workload.expect("a workload");
        assert!(!workload.host_network);
        assert_eq!(workload.borrowed[0].container, "db");
        let bridge = build(&query("default"), "1.41".into());
        let workload = bridge.workload.expect("a workload");
        assert!(!workload.host_network && workload.borrowed.is_empty());
        let object = bridge.object.unwrap_or_default();
        assert!(object.contains(r#""networkmode":"default""#), "{object}");
    }
}
