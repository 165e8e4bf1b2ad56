//! The policy's settings: which host access to tolerate.
//!
//! Everything is denied by default except entering a container as root
//! (`allow_root_exec`), which plenty of ordinary tooling does and which
//! hardened setups switch off. Settings are parsed, not validated: the JSON
//! is read into `RawSettings` and converted into [`Settings`], whose paths
//! are absolute and normalized, so a relative entry stops the configuration
//! from loading (through `validate-settings`) instead of silently never
//! matching.

use std::fmt;

use serde::Deserialize;

use crate::path::HostPath;

/// The host paths whose exposure hands a container the host: the container
/// engines' sockets and state, the kernel's interfaces, and the places that
/// hold credentials and boot code. `/var/run` and `/run` are usually the same
/// directory through a symlink the policy cannot see, so both are listed.
pub const DEFAULT_SENSITIVE_PATHS: &[&str] = &[
    "/",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/containerd",
    "/run/containerd",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/boot",
    "/root",
    "/home",
];

/// The policy's settings, for example
/// `{"allowed_devices": ["/dev/dri"], "allow_root_exec": false}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSettings")]
pub struct Settings {
    /// Host devices containers may receive, by exact (normalized) path.
    pub allowed_devices: Vec<HostPath>,
    /// Whether containers may be granted device cgroup rules
    /// (`--device-cgroup-rule`).
    pub allow_device_rules: bool,
    /// Whether containers may join another container's network, PID or IPC
    /// namespace, or mount its volumes.
    pub allow_borrowing: bool,
    /// Host paths no volume may expose, by equality, ancestry or descent.
    pub sensitive_paths: Vec<HostPath>,
    /// Whether a container may be entered by a privileged exec.
    pub allow_privileged_exec: bool,
    /// Whether a container may be entered by an exec running as uid 0, or
    /// as a user the gateway cannot tell from it.
    pub allow_root_exec: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allowed_devices: Vec::new(),
            allow_device_rules: false,
            allow_borrowing: false,
            sensitive_paths: default_sensitive_paths(),
            allow_privileged_exec: false,
            allow_root_exec: true,
        }
    }
}

fn default_sensitive_paths() -> Vec<HostPath> {
    // Every entry is absolute, so nothing is dropped; a test holds this.
    DEFAULT_SENSITIVE_PATHS
        .iter()
        .filter_map(|path| HostPath::parse(path))
        .collect()
}

/// The settings as the operator writes them, before their paths are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    /// See [`Settings::allowed_devices`].
    allowed_devices: Vec<String>,
    /// See [`Settings::allow_device_rules`].
    allow_device_rules: bool,
    /// See [`Settings::allow_borrowing`].
    allow_borrowing: bool,
    /// See [`Settings::sensitive_paths`]; unset means
    /// [`DEFAULT_SENSITIVE_PATHS`], a list replaces them.
    sensitive_paths: Option<Vec<String>>,
    /// See [`Settings::allow_privileged_exec`].
    allow_privileged_exec: bool,
    /// See [`Settings::allow_root_exec`].
    allow_root_exec: bool,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            allowed_devices: Vec::new(),
            allow_device_rules: false,
            allow_borrowing: false,
            sensitive_paths: None,
            allow_privileged_exec: false,
            allow_root_exec: true,
        }
    }
}

impl TryFrom<RawSettings> for Settings {
    type Error = SettingsError;

    fn try_from(raw: RawSettings) -> Result<Self, Self::Error> {
        Ok(Self {
            allowed_devices: absolute_paths("allowed_devices", raw.allowed_devices)?,
            allow_device_rules: raw.allow_device_rules,
            allow_borrowing: raw.allow_borrowing,
            sensitive_paths: match raw.sensitive_paths {
                Some(paths) => absolute_paths("sensitive_paths", paths)?,
                None => default_sensitive_paths(),
            },
            allow_privileged_exec: raw.allow_privileged_exec,
            allow_root_exec: raw.allow_root_exec,
        })
    }
}

/// Normalizes every entry of the list `setting`, refusing relative ones:
/// they would be compared with absolute host paths and never match.
fn absolute_paths(
    setting: &'static str,
    paths: Vec<String>,
) -> Result<Vec<HostPath>, SettingsError> {
    paths
        .into_iter()
        .map(|entry| match HostPath::parse(&entry) {
            Some(path) => Ok(path),
            None => Err(SettingsError::NotAbsolute { setting, entry }),
        })
        .collect()
}

/// Why settings were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsError {
    /// An entry of a list of host paths does not start with `/`.
    NotAbsolute {
        /// The setting, for example `allowed_devices`.
        setting: &'static str,
        /// The entry as written.
        entry: String,
    },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute { setting, entry } => write!(
                f,
                "invalid entry {entry:?} in setting {setting:?}: expected an absolute host path, starting with \"/\""
            ),
        }
    }
}

impl std::error::Error for SettingsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Settings, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    fn paths(list: &[&str]) -> Vec<HostPath> {
        list.iter().filter_map(|p| HostPath::parse(p)).collect()
    }

    #[test]
    fn defaults_deny_everything_but_root_exec() {
        let settings = parse("{}");
        assert_eq!(settings, Ok(Settings::default()));
        let settings = Settings::default();
        assert!(settings.allowed_devices.is_empty());
        assert!(!settings.allow_device_rules);
        assert!(!settings.allow_borrowing);
        assert!(!settings.allow_privileged_exec);
        assert!(settings.allow_root_exec);
        assert_eq!(settings.sensitive_paths, paths(DEFAULT_SENSITIVE_PATHS));
        assert_eq!(
            settings.sensitive_paths.len(),
            DEFAULT_SENSITIVE_PATHS.len()
        );
    }

    #[test]
    fn reads_every_setting_normalizing_paths() {
        let settings = parse(
            r#"{
                "allowed_devices": ["/dev/dri/", "/dev//fuse"],
                "allow_device_rules": true,
                "allow_borrowing": true,
                "sensitive_paths": ["/srv/secrets/", "/opt/../etc"],
                "allow_privileged_exec": true,
                "allow_root_exec": false
            }"#,
        );
        assert_eq!(
            settings,
            Ok(Settings {
                allowed_devices: paths(&["/dev/dri", "/dev/fuse"]),
                allow_device_rules: true,
                allow_borrowing: true,
                sensitive_paths: paths(&["/srv/secrets", "/etc"]),
                allow_privileged_exec: true,
                allow_root_exec: false,
            })
        );
    }

    #[test]
    fn sensitive_paths_replace_the_defaults() {
        assert_eq!(
            parse(r#"{"sensitive_paths": []}"#).map(|s| s.sensitive_paths),
            Ok(Vec::new())
        );
    }

    #[test]
    fn rejects_relative_entries_naming_setting_and_entry() {
        for (json, expected) in [
            (
                r#"{"allowed_devices": ["/dev/fuse", "dev/sda"]}"#,
                r#"invalid entry "dev/sda" in setting "allowed_devices""#,
            ),
            (
                r#"{"sensitive_paths": ["/etc", "var/run/docker.sock"]}"#,
                r#"invalid entry "var/run/docker.sock" in setting "sensitive_paths""#,
            ),
            (
                r#"{"sensitive_paths": [""]}"#,
                r#"invalid entry "" in setting "sensitive_paths""#,
            ),
        ] {
            let error = parse(json).expect_err(json);
            assert!(error.contains(expected), "{json}: {error}");
            assert!(
                error.contains("expected an absolute host path"),
                "{json}: {error}"
            );
        }
    }

    #[test]
    fn rejects_unknown_fields_naming_them() {
        let error = parse(r#"{"allow_devices": true}"#).expect_err("unknown field");
        assert!(error.contains("unknown field `allow_devices`"), "{error}");
        assert!(error.contains("`allow_device_rules`"), "{error}");
    }
}
