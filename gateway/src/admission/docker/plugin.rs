//! Plugins: what a managed plugin runs with.
//!
//! A plugin's container gets the privileges its configuration asks for —
//! the host's network, PID or IPC namespace, host paths, devices, all
//! devices, capabilities — which the engine lists as privileges (moby's
//! `plugin.computePrivileges`) and the client must accept in the body of
//! `POST /plugins/pull` and `/upgrade`. The engine's comparison of the two
//! lists skips their first entry after sorting, so the body cannot be
//! trusted to say what the plugin gets: the proxy asks the engine itself
//! (`GET /plugins/privileges`), judges that, and refuses a body that does
//! not accept exactly it. `POST /plugins/{name}/set` can point a plugin's
//! mounts (`<mount>.source=`) and devices (`<device>.path=`) at other host
//! paths.

use super::gojson::{self, Value};
use super::volumes::host;
use super::{
    Container, Device, NormalizeError, Operation, Reading, Request, Workload, container, request,
};

/// One privilege, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Privilege {
    /// `network`, `mount`, `device`, `capabilities`, …
    pub name: String,
    /// Its values.
    pub values: Vec<String>,
}

/// Reads a list of privileges (`[{"Name": …, "Description": …, "Value":
/// [...]}]`), from the engine or from a client's body.
pub fn privileges(text: &str) -> Result<Vec<Privilege>, NormalizeError> {
    let value = gojson::parse(text)?;
    let items: &[Value] = match &value {
        Value::Null => &[],
        other => other.as_array("")?,
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("[{index}]");
            let item = item.as_object(&path)?;
            Ok(Privilege {
                name: item.string("Name", &path)?.unwrap_or_default().to_owned(),
                values: item.strings("Value", &path)?,
            })
        })
        .collect()
}

/// The request for installing (or upgrading to) a plugin that gets
/// `privileges`, as the engine computed them: a workload of the plugin's
/// container.
pub fn install(name: &str, privileges: &[Privilege], body: &str, reading: &Reading<'_>) -> Request {
    let mut workload = Workload::default();
    let mut plugin = container(name);
    for privilege in privileges {
        match privilege.name.as_str() {
            "network" => {
                workload.host_network |= privilege.values.iter().any(|kind| kind == "host");
            }
            "host pid namespace" => workload.host_pid = true,
            "host ipc namespace" => workload.host_ipc = true,
            "mount" => {
                for source in &privilege.values {
                    mount_host(&mut workload, &mut plugin, source);
                }
            }
            "device" => {
                for path in &privilege.values {
                    plugin.devices.push(device(path));
                }
            }
            "allow-all-devices" => plugin.devices.push(Device {
                host_path: String::new(),
                container_path: String::new(),
                permissions: "a *:* rwm".into(),
            }),
            "capabilities" => plugin.security_context.capabilities.add.extend(
                privilege
                    .values
                    .iter()
                    .map(|capability| super::create::capability(capability)),
            ),
            // A privilege this model has no name for: the plugin gets it
            // whatever it is, so it is named to policies as a device
            // rule, which every isolating policy refuses.
            other => plugin.devices.push(Device {
                host_path: String::new(),
                container_path: String::new(),
                permissions: format!("plugin privilege `{other}`"),
            }),
        }
    }
    workload.containers.push(plugin);
    request(
        ("Plugin", "plugins", None),
        Operation::Create,
        reading,
        Some(name.to_owned()),
        body,
        Some(workload),
    )
}

/// The request for `POST /plugins/{name}/set`: the host paths its mounts
/// and devices are pointed at.
pub fn set(name: &str, body: &str, reading: &Reading<'_>) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let mut workload = Workload::default();
    let mut plugin = container(name);
    for (index, setting) in value.as_strings("")?.iter().enumerate() {
        let Some((key, value)) = setting.split_once('=') else {
            return Err(NormalizeError::new(
                format!("[{index}]"),
                format!("`{setting}` is not a setting (`name=value`)"),
            ));
        };
        // moby's `newSettables`: `<name>.<field>=<value>`, the field being
        // `source` for a mount, `path` for a device, `value` for the
        // environment and arguments.
        match key.split_once('.').map(|(_, field)| field) {
            Some("source") => mount_host(&mut workload, &mut plugin, value),
            Some("path") => plugin.devices.push(device(value)),
            _ => {}
        }
    }
    workload.containers.push(plugin);
    Ok(request(
        ("Plugin", "plugins", Some("settings")),
        Operation::Update,
        reading,
        Some(name.to_owned()),
        body,
        Some(workload),
    ))
}

fn mount_host(workload: &mut Workload, plugin: &mut Container, source: &str) {
    let volume = host(source);
    plugin.volume_mounts.push(super::VolumeMount {
        name: volume.name.clone(),
        mount_path: source.to_owned(),
        read_only: false,
    });
    workload.volumes.push(volume);
}

fn device(path: &str) -> Device {
    Device {
        host_path: path.to_owned(),
        container_path: path.to_owned(),
        permissions: "rwm".into(),
    }
}

/// Whether a client's accepted privileges are exactly the engine's, in any
/// order.
pub fn accepts_exactly(accepted: &[Privilege], required: &[Privilege]) -> bool {
    let sorted = |list: &[Privilege]| {
        let mut list: Vec<Privilege> = list
            .iter()
            .map(|privilege| {
                let mut privilege = privilege.clone();
                privilege.values.sort();
                privilege
            })
            .collect();
        list.sort();
        list
    };
    sorted(accepted) == sorted(required)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::docker::Engine;
    use crate::admission::docker::fields::Accept;

    #[test]
    fn a_plugins_privileges_become_its_workload() {
        let engine = Engine::assumed();
        let reading = Reading {
            engine: &engine,
            version: None,
            accept: Accept::All,
        };
        let required = privileges(
            r#"[{"Name": "network", "Description": "", "Value": ["host"]},
                {"Name": "mount", "Description": "host path to mount", "Value": ["/"]},
                {"Name": "capabilities", "Description": "", "Value": ["CAP_SYS_ADMIN"]},
                {"Name": "allow-all-devices", "Description": "", "Value": ["true"]}]"#,
        )
        .expect("valid");
        let request = install("sshfs", &required, "[]", &reading);
        let workload = request.workload.expect("a workload");
        assert!(workload.host_network);
        assert_eq!(workload.volumes[0].host_path.as_deref(), Some("/"));
        let plugin = &workload.containers[0];
        assert_eq!(plugin.security_context.capabilities.add, ["SYS_ADMIN"]);
        assert_eq!(plugin.devices[0].permissions, "a *:* rwm");
    }

    #[test]
    fn only_the_engines_own_list_is_accepted() {
        let required = privileges(
            r#"[{"Name": "mount", "Value": ["/"]}, {"Name": "network", "Value": ["host"]}]"#,
        )
        .expect("valid");
        let reordered = privileges(
            r#"[{"Name": "network", "Value": ["host"]}, {"Name": "mount", "Value": ["/"]}]"#,
        )
        .expect("valid");
        assert!(accepts_exactly(&reordered, &required));
        // The engine itself would let the first entry differ.
        let lying =
            privileges(r#"[{"Name": "a", "Value": []}, {"Name": "network", "Value": ["host"]}]"#)
                .expect("valid");
        assert!(!accepts_exactly(&lying, &required));
    }

    #[test]
    fn settings_that_move_mounts_and_devices_are_host_paths() {
        let engine = Engine::assumed();
        let reading = Reading {
            engine: &engine,
            version: None,
            accept: Accept::All,
        };
        let request = set(
            "p",
            r#"["state.source=/etc", "disk.path=/dev/sda", "DEBUG=1", "args=-v"]"#,
            &reading,
        )
        .expect("valid");
        let workload = request.workload.expect("a workload");
        assert_eq!(workload.volumes[0].host_path.as_deref(), Some("/etc"));
        assert_eq!(workload.containers[0].devices[0].host_path, "/dev/sda");
        assert!(set("p", r#"["nonsense"]"#, &reading).is_err());
    }
}
