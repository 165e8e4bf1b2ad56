//! A swarm service specification (`docker service create` and `update`):
//! its task's container, in the same model as a container's.

use super::create::{SELINUX_DISABLED_TYPE, apply_user, capability, selinux};
use super::fields;
use super::gojson::{self, Object, Value, join};
use super::volumes::Mounts;
use super::{
    NormalizeError, Operation, Port, Reading, Request, SecurityContext, SecurityProfile, Sysctl,
    Workload, container, request,
};

/// Name given to the service's container when the specification has none.
const UNNAMED: &str = "container";

/// Builds the request for a swarm service specification (`docker service
/// create` and `update`): its task's container, in the same model.
pub fn service(
    body: &str,
    operation: Operation,
    name: Option<String>,
    reading: &Reading<'_>,
) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    const TASK: &str = "TaskTemplate";
    const SPEC: &str = "TaskTemplate.ContainerSpec";
    let (engine, accept) = (reading.engine, reading.accept);
    fields::check(root, &[&fields::SERVICE], "", engine, accept)?;
    let task = root.object(TASK, "")?;
    if let Some(task) = task {
        fields::check(task, &[&fields::TASK], TASK, engine, accept)?;
    }
    let spec = task
        .map(|task| task.object("ContainerSpec", TASK))
        .transpose()?
        .flatten();
    if let Some(spec) = spec {
        fields::check(spec, &[&fields::CONTAINER_SPEC], SPEC, engine, accept)?;
    }
    let name = name.or(root.string("Name", "")?.map(str::to_owned));
    let mut workload = Workload {
        labels: root.string_map("Labels", "")?,
        ..Workload::default()
    };
    let mut container = container(name.as_deref().unwrap_or(UNNAMED));
    let context = &mut container.security_context;
    context.seccomp_profile = engine.seccomp.then_some(SecurityProfile::RuntimeDefault);
    context.app_armor_profile = engine.apparmor.then_some(SecurityProfile::RuntimeDefault);
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
        let mut mounts = Mounts {
            workload: &mut workload,
            named: Vec::new(),
        };
        for (index, mount) in spec.array("Mounts", SPEC)?.iter().enumerate() {
            let path = format!("{SPEC}.Mounts[{index}]");
            mounts.mount(
                mount.as_object(&path)?,
                &mut container,
                &path,
                reading.engine,
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
        reading,
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
