//! The engine behind the proxy, as far as reading a request depends on it.
//!
//! The same body means different things to different engines: before 27
//! the create body's top level may carry the host configuration; whether a
//! container without `--cgroupns` shares the host's cgroup namespace depends
//! on the cgroup version and the daemon's `default-cgroupns-mode`; the
//! "default" seccomp and AppArmor profiles exist only where the daemon has
//! them. The proxy learns these facts from the engine's `/version` and
//! `/info` (at start, and again after the engine comes back), and
//! normalization reads every body by them.
//!
//! A process forwards to one engine, so its facts are held here, where the
//! re-normalization of a policy's patch finds them too; `portcullis eval`,
//! which has no engine, reads as a current engine with its defaults
//! ([`Engine::assumed`]).

use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;

/// An API or release version, `(major, minor)`.
pub type Version = (u32, u32);

/// What the proxy knows of the engine it forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// The engine's release, `(20, 10)` for 20.10.24; `None` when it did
    /// not say in a form the proxy reads.
    pub release: Option<Version>,
    /// The newest API version it speaks (`ApiVersion`).
    pub api: Version,
    /// The cgroup version of its host: 1 or 2.
    pub cgroup_version: u8,
    /// Whether containers get the daemon's default seccomp profile unless
    /// told otherwise.
    pub seccomp: bool,
    /// Whether containers get AppArmor's `docker-default` profile unless
    /// told otherwise.
    pub apparmor: bool,
    /// Whether a container that names no cgroup namespace gets a private
    /// one (`name=cgroupns` among the security options).
    pub private_cgroupns: bool,
    /// Whether containers run in a remapped user namespace (`userns-remap`,
    /// or a rootless daemon).
    pub userns: bool,
    /// The runtime containers get when they name none.
    pub default_runtime: String,
}

/// The newest API version whose bodies the proxy models field by field.
pub const MODELLED_API: Version = (1, 56);

impl Engine {
    /// A current engine with its defaults: cgroup v2 (so private cgroup
    /// namespaces), seccomp and AppArmor on, `runc`.
    pub fn assumed() -> Self {
        Self {
            release: Some((28, 0)),
            api: (1, 48),
            cgroup_version: 2,
            seccomp: true,
            apparmor: true,
            private_cgroupns: true,
            userns: false,
            default_runtime: "runc".into(),
        }
    }

    /// The engine that answered `version` (`GET /version`) and `info`
    /// (`GET /info`). What an answer leaves out is read the safe way: no
    /// default profile, the host's cgroup namespace.
    pub fn from_answers(version: &serde_json::Value, info: &serde_json::Value) -> Self {
        let text = |value: &serde_json::Value, key: &str| {
            value
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let options: Vec<String> = info
            .get("SecurityOptions")
            .and_then(serde_json::Value::as_array)
            .map(|options| {
                options
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        // `name=seccomp,profile=default`: the first pair names the option.
        let has = |name: &str| {
            options.iter().any(|option| {
                option
                    .split(',')
                    .next()
                    .is_some_and(|first| first == format!("name={name}"))
            })
        };
        let runtime = text(info, "DefaultRuntime");
        Self {
            release: leading_version(&text(version, "Version")),
            api: leading_version(&text(version, "ApiVersion")).unwrap_or((1, 41)),
            cgroup_version: if text(info, "CgroupVersion") == "2" {
                2
            } else {
                1
            },
            seccomp: has("seccomp"),
            apparmor: has("apparmor"),
            private_cgroupns: has("cgroupns"),
            userns: has("userns") || has("rootless"),
            default_runtime: if runtime.is_empty() {
                "runc".into()
            } else {
                runtime
            },
        }
    }

    /// Whether the create body's top level carries the host configuration
    /// when it has no `HostConfig` (moby's `ContainerConfigWrapper`,
    /// removed in 27): an engine of unknown release is assumed to.
    pub fn reads_legacy_host_config(&self) -> bool {
        self.release.is_none_or(|release| release < (27, 0))
    }

    /// Whether a field the proxy does not know could be one this engine
    /// acts on: only an engine newer than the model has fields it lacks.
    pub fn may_know_more(&self) -> bool {
        self.api > MODELLED_API
    }
}

/// `20.10.24+dfsg1` → `(20, 10)`; `1.41` → `(1, 41)`.
pub(crate) fn leading_version(text: &str) -> Option<Version> {
    let mut numbers = text.split(['.', '-', '+', '~']).map(str::parse::<u32>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Some((major, minor)),
        _ => None,
    }
}

static CURRENT: LazyLock<ArcSwap<Engine>> =
    LazyLock::new(|| ArcSwap::from_pointee(Engine::assumed()));

/// The engine requests are read for.
pub fn current() -> Arc<Engine> {
    CURRENT.load_full()
}

/// Records the engine the proxy forwards to.
pub fn set_current(engine: Engine) {
    CURRENT.store(Arc::new(engine));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_engine_is_read_from_its_answers() {
        // What a Debian 20.10 engine on a cgroup v1 host without seccomp
        // says of itself.
        let engine = Engine::from_answers(
            &serde_json::json!({"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}),
            &serde_json::json!({"CgroupVersion": "1", "SecurityOptions": null, "DefaultRuntime": "runc"}),
        );
        assert_eq!(engine.release, Some((20, 10)));
        assert_eq!(engine.api, (1, 41));
        assert!(!engine.seccomp && !engine.apparmor && !engine.private_cgroupns);
        assert!(engine.reads_legacy_host_config());
        assert!(!engine.may_know_more());

        let current = Engine::from_answers(
            &serde_json::json!({"Version": "28.2.2", "ApiVersion": "1.50"}),
            &serde_json::json!({"CgroupVersion": "2", "SecurityOptions": [
                "name=apparmor", "name=seccomp,profile=builtin", "name=cgroupns"
            ]}),
        );
        assert!(current.seccomp && current.apparmor && current.private_cgroupns);
        assert!(!current.reads_legacy_host_config());
        assert_eq!(current.default_runtime, "runc");
    }

    #[test]
    fn an_engine_newer_than_the_model_may_act_on_unknown_fields() {
        let newer = Engine {
            api: (1, 60),
            ..Engine::assumed()
        };
        assert!(newer.may_know_more());
    }
}
