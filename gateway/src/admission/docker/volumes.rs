//! Binds, mounts and volumes, by what they really mount.
//!
//! A bind is a host path. A named volume is whatever its driver makes of
//! it, and the `local` driver mounts whatever its options say (moby's
//! `volume/local`): with `type` and `device` set it calls `mount(2)` in the
//! host's mount namespace, so `o=bind` (or `rbind`) makes `device` a host
//! path whatever `type` claims, `overlay` stacks host directories, a block
//! device is the host's disk, and `proc` or `sysfs` are the host's own.
//! Only network shares (`nfs`, `cifs`) and memory (`tmpfs`) reach nothing of
//! the host.

use super::fields::{self, Accept};
use super::gojson::{Object, join};
use super::{Container, Engine, NormalizeError, Volume, VolumeMount, Workload};

/// A named volume normalization could not judge alone: the engine may
/// already have it, with options of its own, and then those are what the
/// container mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedVolume {
    /// Index of the volume in the workload's volumes.
    pub index: usize,
    /// Its name.
    pub name: String,
}

/// Volumes in the making, and the named ones to look up.
pub(crate) struct Mounts<'w> {
    pub(crate) workload: &'w mut Workload,
    pub(crate) named: Vec<NamedVolume>,
}

impl Mounts<'_> {
    /// Adds `volume`, mounted by `container` at `target`.
    pub(crate) fn attach(
        &mut self,
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
        self.workload.volumes.push(volume);
    }

    /// Adds a named volume, to be looked up on the engine.
    fn attach_named(
        &mut self,
        container: &mut Container,
        volume: Volume,
        target: &str,
        read_only: bool,
    ) {
        self.named.push(NamedVolume {
            index: self.workload.volumes.len(),
            name: volume.name.clone(),
        });
        self.attach(container, volume, target, read_only);
    }

    /// A `-v` bind: `target`, `source:target` or `source:target:options`; a
    /// source that is an absolute path is a host path, anything else a
    /// volume of `driver` (the `VolumeDriver`, empty for `local`).
    pub(crate) fn bind(
        &mut self,
        spec: &str,
        container: &mut Container,
        driver: &str,
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
            self.attach(container, host(source), target, read_only);
        } else if source.is_empty() {
            // An anonymous volume, made fresh by the default driver.
            self.attach(
                container,
                named(target, "persistentVolumeClaim"),
                target,
                read_only,
            );
        } else if driver.is_empty() || driver == "local" {
            self.attach_named(
                container,
                named(source, "persistentVolumeClaim"),
                target,
                read_only,
            );
        } else {
            self.attach(container, named(source, "csi"), target, read_only);
        }
        Ok(())
    }

    /// A `--mount`.
    pub(crate) fn mount(
        &mut self,
        mount: &Object,
        container: &mut Container,
        path: &str,
        engine: &Engine,
    ) -> Result<(), NormalizeError> {
        fields::check(mount, &[&fields::MOUNT], path, engine, Accept::All)?;
        let kind = mount.string("Type", path)?.unwrap_or_default();
        let source = mount.string("Source", path)?.unwrap_or_default();
        let target = mount.string("Target", path)?.unwrap_or_default();
        let read_only = mount.boolean("ReadOnly", path)?.unwrap_or(false);
        let name = if source.is_empty() { target } else { source };
        match kind {
            "bind" | "npipe" => self.attach(container, host(source), target, read_only),
            "tmpfs" => self.attach(container, named(target, "emptyDir"), target, read_only),
            "image" => self.attach(container, named(name, "image"), target, read_only),
            "cluster" => self.attach(container, named(name, "csi"), target, read_only),
            "volume" => {
                let options_path = join(path, "VolumeOptions");
                let driver = match mount.object("VolumeOptions", path)? {
                    Some(options) => options.object("DriverConfig", &options_path)?,
                    None => None,
                };
                let (driver_name, options) = match driver {
                    Some(driver) => {
                        let path = join(&options_path, "DriverConfig");
                        (
                            driver.string("Name", &path)?.unwrap_or_default(),
                            driver.string_map("Options", &path)?,
                        )
                    }
                    None => ("", Vec::new()),
                };
                let volume = volume(name, driver_name, &options);
                if source.is_empty() {
                    self.attach(container, volume, target, read_only);
                } else {
                    self.attach_named(container, volume, target, read_only);
                }
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
}

/// What a volume of `driver` with `options` mounts.
pub fn volume(name: &str, driver: &str, options: &[(String, String)]) -> Volume {
    if !driver.is_empty() && driver != "local" {
        return named(name, "csi");
    }
    let option = |key: &str| {
        options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let (Some(kind), Some(device)) = (option("type"), option("device")) else {
        // Without both the driver mounts nothing: a directory of its own.
        return named(name, "persistentVolumeClaim");
    };
    let flags = option("o").unwrap_or_default();
    let binds = flags
        .split(',')
        .any(|flag| flag == "bind" || flag == "rbind");
    let host_path = |path: &str| Volume {
        host_path: Some(path.to_owned()),
        ..named(name, "hostPath")
    };
    if binds {
        return host_path(device);
    }
    match kind {
        "nfs" | "nfs4" => named(name, "nfs"),
        "cifs" | "smb3" => named(name, "csi"),
        "tmpfs" | "ramfs" => named(name, "emptyDir"),
        // The layers are host directories; the first lower one stands for
        // them all (any host path is already a `hostPath`).
        "overlay" => {
            let lower = flags
                .split(',')
                .find_map(|flag| flag.strip_prefix("lowerdir="))
                .and_then(|dirs| dirs.split(':').next())
                .unwrap_or(device);
            host_path(lower)
        }
        // A block device, or a filesystem such as `proc` or `sysfs` the
        // kernel mounts as the host's.
        _ => host_path(device),
    }
}

/// A `hostPath` volume, named by its host path.
pub(crate) fn host(path: &str) -> Volume {
    Volume {
        name: path.to_owned(),
        kind: "hostPath".into(),
        host_path: Some(path.to_owned()),
    }
}

/// A volume of another kind.
pub(crate) fn named(name: &str, kind: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        kind: kind.to_owned(),
        host_path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn judged(pairs: &[(&str, &str)]) -> (String, Option<String>) {
        let volume = volume("v", "local", &options(pairs));
        (volume.kind, volume.host_path)
    }

    #[test]
    fn a_bind_is_a_host_path_whatever_the_type_claims() {
        for kind in ["none", "nfs", "nfs4", "tmpfs", "cifs", "ext4"] {
            for flags in ["bind", "rbind", "ro,bind", "rbind,nosuid"] {
                assert_eq!(
                    judged(&[("type", kind), ("o", flags), ("device", "/etc")]),
                    ("hostPath".into(), Some("/etc".into())),
                    "type={kind} o={flags}"
                );
            }
        }
    }

    #[test]
    fn what_the_kernel_mounts_from_the_host_is_a_host_path() {
        assert_eq!(
            judged(&[("type", "ext4"), ("device", "/dev/sda1")]),
            ("hostPath".into(), Some("/dev/sda1".into()))
        );
        assert_eq!(
            judged(&[("type", "proc"), ("device", "proc")]),
            ("hostPath".into(), Some("proc".into()))
        );
        assert_eq!(
            judged(&[
                ("type", "overlay"),
                ("device", "overlay"),
                ("o", "lowerdir=/etc:/usr,upperdir=/tmp/u,workdir=/tmp/w")
            ]),
            ("hostPath".into(), Some("/etc".into()))
        );
    }

    #[test]
    fn network_shares_and_memory_are_not_host_paths() {
        assert_eq!(
            judged(&[
                ("type", "nfs"),
                ("o", "addr=10.0.0.1,rw"),
                ("device", ":/export")
            ]),
            ("nfs".into(), None)
        );
        assert_eq!(
            judged(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=64m")]),
            ("emptyDir".into(), None)
        );
        // Option names are exact: `O` is not `o` to the driver (which
        // refuses it).
        assert_eq!(
            judged(&[("type", "nfs"), ("O", "bind"), ("device", "/")]),
            ("nfs".into(), None)
        );
        assert_eq!(
            judged(&[("size", "10G")]),
            ("persistentVolumeClaim".into(), None)
        );
        assert_eq!(volume("v", "rexray", &[]).kind, "csi");
    }
}
