//! The policy's settings: which level of the Pod Security Standards to
//! enforce, and which version of them.
//!
//! Settings are parsed, not validated: a [`Settings`] value only exists if
//! every field is well formed, so the gateway rejects a bad configuration when
//! it loads it (through `validate-settings`) rather than on the first request.
//! Both fields accept exactly what Kubernetes accepts in the
//! `pod-security.kubernetes.io/enforce` and `…/enforce-version` namespace
//! labels.

use std::fmt;

use serde::Deserialize;

/// The policy's settings, for example `{"level": "restricted", "version": "v1.30"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The level to enforce; `baseline` when unset.
    #[serde(default)]
    pub level: Level,
    /// The version of the standard to enforce; `latest` when unset.
    #[serde(default)]
    pub version: Version,
    /// Controls not to enforce, by upstream ID (`hostPorts`), for workloads
    /// a control does not fit: published ports are how Docker containers
    /// are reached, where a Kubernetes pod would use a Service.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A level of the Pod Security Standards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Level {
    /// Unrestricted: every pod is allowed.
    Privileged,
    /// Prevents known privilege escalations; the default, as it breaks few
    /// ordinary workloads.
    #[default]
    Baseline,
    /// Baseline plus current pod-hardening best practice.
    Restricted,
}

impl Level {
    /// The level's name, as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Level {
    type Error = SettingsError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "privileged" => Ok(Self::Privileged),
            "baseline" => Ok(Self::Baseline),
            "restricted" => Ok(Self::Restricted),
            _ => Err(SettingsError::Level(value)),
        }
    }
}

/// A version of the Pod Security Standards.
///
/// Kubernetes versions the standard with its own minor releases (`v1.0` …);
/// pinning one keeps the rules a cluster enforces fixed while the standard
/// moves on, as `pod-security.kubernetes.io/enforce-version` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Version {
    /// The newest version this policy knows.
    #[default]
    Latest,
    /// `v1.<minor>`. Minors newer than the newest known evaluate as the
    /// newest, as upstream does: a cluster pinned to a release this policy
    /// predates gets the strictest rules it can give.
    Minor(u32),
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Minor(minor) => write!(f, "v1.{minor}"),
        }
    }
}

impl TryFrom<String> for Version {
    type Error = SettingsError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value == "latest" {
            return Ok(Self::Latest);
        }
        // Upstream's pattern is `^v1\.([0-9]|[1-9][0-9]*)$`: no leading
        // zeros, no sign, no patch version.
        let minor = value
            .strip_prefix("v1.")
            .filter(|digits| {
                !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits.len() == 1 || !digits.starts_with('0'))
            })
            .and_then(|digits| digits.parse().ok());
        match minor {
            Some(minor) => Ok(Self::Minor(minor)),
            None => Err(SettingsError::Version(value)),
        }
    }
}

/// Why settings were rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsError {
    /// `level` is not one of the three levels.
    Level(String),
    /// `version` is neither `latest` nor `v1.<minor>`.
    Version(String),
    /// `exclude` names a control that does not exist.
    Exclude(String),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Level(value) => write!(
                f,
                r#"invalid value {value:?} for setting "level": expected "privileged", "baseline" or "restricted""#
            ),
            Self::Version(value) => write!(
                f,
                r#"invalid value {value:?} for setting "version": expected "latest" or "v1.<minor>", for example "v1.30""#
            ),
            Self::Exclude(value) => write!(
                f,
                r#"invalid value {value:?} in setting "exclude": not a control of the Pod Security Standards (for example "hostPorts")"#
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

    #[test]
    fn defaults_to_baseline_latest() {
        assert_eq!(
            parse("{}"),
            Ok(Settings {
                level: Level::Baseline,
                version: Version::Latest,
                exclude: Vec::new(),
            })
        );
    }

    #[test]
    fn reads_level_and_pinned_version() {
        assert_eq!(
            parse(r#"{"level": "restricted", "version": "v1.30"}"#),
            Ok(Settings {
                level: Level::Restricted,
                version: Version::Minor(30),
                exclude: Vec::new(),
            })
        );
        assert_eq!(
            parse(r#"{"version": "v1.0"}"#).map(|s| s.version),
            Ok(Version::Minor(0))
        );
        assert_eq!(
            parse(r#"{"level": "privileged"}"#).map(|s| s.level),
            Ok(Level::Privileged)
        );
    }

    #[test]
    fn rejects_malformed_versions_naming_the_setting() {
        for bad in [
            "1.30", "v2.0", "vx", "v1.", "v1.05", "v1.-1", "v1.3.0", "", "Latest",
        ] {
            let error = parse(&format!(r#"{{"version": {bad:?}}}"#)).expect_err(bad);
            assert!(
                error.contains(r#"setting "version""#)
                    && error.contains(r#""latest" or "v1.<minor>""#),
                "{bad}: {error}"
            );
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    #[test]
    fn rejects_unknown_levels_naming_the_setting() {
        let error = parse(r#"{"level": "strict"}"#).expect_err("unknown level");
        assert!(
            error.contains(r#"invalid value "strict" for setting "level""#),
            "{error}"
        );
        assert!(
            error.contains(r#""privileged", "baseline" or "restricted""#),
            "{error}"
        );
    }

    #[test]
    fn rejects_unknown_fields_naming_them() {
        let error = parse(r#"{"levle": "baseline"}"#).expect_err("unknown field");
        assert!(error.contains("unknown field `levle`"), "{error}");
        assert!(error.contains("`level`"), "{error}");
    }

    #[test]
    fn displays_as_configured() {
        assert_eq!(Version::Latest.to_string(), "latest");
        assert_eq!(Version::Minor(7).to_string(), "v1.7");
        assert_eq!(Level::Restricted.to_string(), "restricted");
    }
}
