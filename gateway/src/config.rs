//! The gateway's configuration: a YAML file, read once into typed values.
//!
//! Unknown keys are errors, and every error names the file, the key path
//! (`policies[1].timeout`) and, where the parser knows it, the line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::Error as _;

use crate::admission::{Operation, Origin};
pub use crate::cluster::ClusterConfig;
use crate::cluster::Resource;
use crate::docker::access::AccessRule;
use crate::docker::route::Group;
use crate::policy::{self, builtin};
use crate::verify::settings::ImagesConfig;

/// The configuration used when none is given: `pod-security` at
/// `baseline`, enforcing.
pub const DEFAULT: &str = include_str!("../../policies/default.yaml");

/// How long a policy may run when the configuration does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The most a policy's `timeout` may be.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// How much memory a policy gets when the configuration does not say.
pub const DEFAULT_MEMORY: u64 = 64 << 20;

/// The least memory a policy may be given (one WebAssembly page).
const MIN_MEMORY: u64 = 64 << 10;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where compiled policies are cached (default: `$PORTCULLIS_CACHE_DIR`,
    /// else `$XDG_CACHE_HOME/portcullis`, else `~/.cache/portcullis`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The policies, evaluated in this order.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// The Kubernetes admission webhook (`portcullis serve`).
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// The Docker socket proxy (`portcullis serve`).
    #[serde(default)]
    pub docker: Option<DockerConfig>,
    /// Image signature verification. Unset: images are not verified.
    #[serde(default)]
    pub images: Option<ImagesConfig>,
    /// Bounds on the policy sandbox as a whole.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Where policies granted `cluster` read the cluster from (default:
    /// the pod's service account).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// Bounds on the policy sandbox as a whole: what loading a module may cost,
/// what all evaluations in flight may hold together, and how far a patch
/// may change an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Memory all evaluations in flight may reserve together: each reserves
    /// its policy's `memory` while it runs, and waits (within its deadline)
    /// while the budget is spent.
    #[serde(deserialize_with = "byte_size")]
    pub memory_budget: u64,
    /// Largest policy module file.
    #[serde(deserialize_with = "byte_size")]
    pub max_module_size: u64,
    /// Longest one module may take to compile.
    #[serde(deserialize_with = "duration")]
    pub compile_timeout: Duration,
    /// Most memory compiling one module may use.
    #[serde(deserialize_with = "byte_size")]
    pub compile_memory: u64,
    /// Most operations in one policy's patch.
    pub max_patch_operations: usize,
    /// Largest object (as JSON) a patch may leave.
    #[serde(deserialize_with = "byte_size")]
    pub max_patched_object: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            memory_budget: policy::DEFAULT_MEMORY_BUDGET,
            max_module_size: policy::DEFAULT_MAX_MODULE_SIZE,
            compile_timeout: Duration::from_secs(60),
            compile_memory: 2 << 30,
            max_patch_operations: 1000,
            max_patched_object: 4 << 20,
        }
    }
}

/// The Docker socket proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// Where clients connect: `unix:///path` or `tcp://address:port`, one or
    /// a list.
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<Endpoint>,
    /// Permissions of the unix sockets.
    #[serde(default)]
    pub socket: SocketConfig,
    /// Certificate of the TCP listeners, and the CA their clients'
    /// certificates must come from (required: the engine API over TCP without
    /// client certificates is root for anyone who can connect).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The engine: `unix:///var/run/docker.sock` or `tcp://host:2376`.
    pub upstream: Endpoint,
    /// TLS to a TCP upstream.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTls>,
    /// Largest request body the proxy reads to judge (container and service
    /// specifications); larger ones are refused.
    #[serde(default = "default_docker_max_body", deserialize_with = "byte_size")]
    pub max_body: u64,
    /// Access per endpoint group.
    #[serde(default)]
    pub access: BTreeMap<Group, AccessRule>,
    /// Where to write one JSON line per decision: `stdout`, `stderr` or a
    /// file path. Unset: no audit log.
    #[serde(default)]
    pub audit: Option<AuditTarget>,
    /// Fields that reach beyond the container where no policy can see them
    /// (`HostConfig.Runtime`, `HostConfig.Links`, …): refused when set,
    /// unless listed here, which accepts them unseen.
    #[serde(default)]
    pub unjudged_fields: Vec<String>,
    /// How long a connection may go without sending a complete request
    /// head: idle between requests, or slow in sending one.
    #[serde(default = "default_docker_idle_timeout", deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// How long a client may take over its TLS handshake, and over the
    /// body of a request the proxy reads to judge.
    #[serde(default = "default_client_timeout", deserialize_with = "duration")]
    pub client_timeout: Duration,
    /// Connections one client (one uid, or one certificate subject) may
    /// hold open at once; more are answered 429 and closed.
    #[serde(default = "default_docker_connections_per_client")]
    pub max_connections_per_client: usize,
}

/// A `unix://` or `tcp://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(String),
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(D::Error::custom(format!(
                    "`{text}`: a unix socket path must be absolute"
                )));
            }
            Ok(Endpoint::Unix(PathBuf::from(path)))
        } else if let Some(address) = text.strip_prefix("tcp://") {
            if !address.contains(':') {
                return Err(D::Error::custom(format!("`{text}` has no port")));
            }
            Ok(Endpoint::Tcp(address.to_owned()))
        } else {
            Err(D::Error::custom(format!(
                "`{text}` is not an endpoint; write unix:///path/to.sock or tcp://host:port"
            )))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

/// Ownership and mode of the proxy's unix sockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// Permission bits, in octal (`"0660"`).
    #[serde(default = "default_socket_mode", deserialize_with = "octal_mode")]
    pub mode: u32,
    /// Group owning the socket, by name or number (`docker`, `998`).
    #[serde(default)]
    pub group: Option<String>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            mode: default_socket_mode(),
            group: None,
        }
    }
}

/// TLS towards a TCP engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// CA that signed the engine's certificate.
    pub ca: PathBuf,
    /// Client certificate presented to the engine.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its key.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name to verify the engine's certificate against (default: the host
    /// of `upstream`).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for AuditTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(deserializer)?.as_str() {
            "stdout" => AuditTarget::Stdout,
            "stderr" => AuditTarget::Stderr,
            "" => {
                return Err(D::Error::custom(
                    "empty audit target; write stdout, stderr or a file path",
                ));
            }
            path => AuditTarget::File(PathBuf::from(path)),
        })
    }
}

/// How long the API server waits for the webhook when the configuration
/// does not say (Kubernetes' own default).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest AdmissionReview accepted when the configuration does not say:
/// an object and its old version, each up to etcd's 3 MiB, plus the envelope.
pub const DEFAULT_MAX_BODY: u64 = 8 << 20;

/// The Kubernetes admission webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Address and port to listen on, for example `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// The serving certificate, and optionally the CA clients must present a
    /// certificate from.
    pub tls: TlsConfig,
    /// How long the API server waits for an answer (`timeoutSeconds` of the
    /// webhook configuration, 1 to 30 s). Every review is answered within it.
    #[serde(default = "default_webhook_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// What the API server does when the webhook cannot be reached
    /// (`failurePolicy`).
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Largest request body accepted.
    #[serde(default = "default_max_body", deserialize_with = "byte_size")]
    pub max_body: u64,
    /// How long a client may take over each of its TLS handshake, its
    /// request headers and its request body before it is cut off.
    #[serde(default = "default_client_timeout", deserialize_with = "duration")]
    pub client_timeout: Duration,
    /// After SIGTERM, how long readiness reports false while the webhook
    /// keeps answering, so the Service stops routing to it before it stops
    /// listening.
    #[serde(default, deserialize_with = "duration")]
    pub shutdown_delay: Duration,
}

/// Certificate files. They are watched: replacing them switches new
/// connections to the new certificate without a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Serving certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// CA whose certificates clients must present (mutual TLS), PEM.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// What the API server does with a request when the webhook fails to answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Reject the request.
    #[default]
    Fail,
    /// Let the request through.
    Ignore,
}

impl FailurePolicy {
    /// The spelling of `failurePolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Fail => "Fail",
            FailurePolicy::Ignore => "Ignore",
        }
    }
}

/// One policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name, shown in decisions, logs and metrics.
    pub name: String,
    /// Where the policy's component comes from.
    pub module: ModuleSource,
    /// Settings handed to the policy (any YAML, passed on as JSON).
    #[serde(default = "empty_settings")]
    pub settings: serde_json::Value,
    /// What a denial does.
    #[serde(default)]
    pub mode: Mode,
    /// What a failure of the policy does.
    #[serde(default)]
    pub on_error: OnError,
    /// Deadline of one evaluation (`250ms`, `2s`).
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Memory cap of one evaluation (`64MiB`).
    #[serde(default = "default_memory", deserialize_with = "byte_size")]
    pub memory: u64,
    /// Which requests the policy sees; everything when absent.
    #[serde(default, rename = "match")]
    pub matches: MatchConfig,
    /// What the policy may see beyond the deterministic sandbox.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

impl PolicyConfig {
    /// The cluster resources the policy is granted to read.
    pub fn readable(&self) -> impl Iterator<Item = &Resource> {
        self.grants
            .iter()
            .filter_map(|grant| match grant {
                Grant::Cluster(resources) => Some(resources),
                Grant::Clock => None,
            })
            .flatten()
    }
}

/// Something a policy may be given beyond the deterministic sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The wall clock reads the moment each evaluation begins, instead of
    /// the Unix epoch; the policy's decisions then depend on when they are
    /// made.
    Clock,
    /// Read access (get and list) to these resources of the cluster
    /// (`cluster: [v1/namespaces, networking.k8s.io/v1/ingresses]`),
    /// served from a cache the gateway keeps current.
    Cluster(Vec<Resource>),
}

/// Where a policy's component comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleSource {
    /// `builtin:<name>`: embedded in the binary.
    Builtin(String),
    /// A `.wasm` component file; relative paths are relative to the
    /// configuration file.
    File(PathBuf),
}

impl<'de> Deserialize<'de> for ModuleSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.strip_prefix("builtin:") {
            Some(name) if builtin::find(name).is_some() => {
                Ok(ModuleSource::Builtin(name.to_owned()))
            }
            Some(name) => Err(D::Error::custom(format!(
                "unknown built-in policy `{name}`; built-in policies: {}",
                builtin::names().collect::<Vec<_>>().join(", ")
            ))),
            None if text.is_empty() => Err(D::Error::custom("empty module path")),
            None => Ok(ModuleSource::File(PathBuf::from(text))),
        }
    }
}

impl fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleSource::Builtin(name) => write!(f, "builtin:{name}"),
            ModuleSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What a policy's denial does to the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A denial denies the request.
    #[default]
    Enforce,
    /// A denial becomes a warning to the client.
    Warn,
    /// A denial is only recorded.
    Audit,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Audit => "audit",
        })
    }
}

/// What a policy that fails (times out, traps, runs out of memory, returns
/// garbage) does to the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Count the failure as a denial (subject to the policy's mode).
    #[default]
    Deny,
    /// Ignore the failure (it is still logged).
    Allow,
}

/// Which requests a policy sees. Every listed criterion must hold; an empty
/// list matches everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Front doors: `kubernetes`, `docker`.
    #[serde(default, deserialize_with = "origins")]
    pub origins: Vec<Origin>,
    /// Operations: `CREATE`, `UPDATE`, `DELETE`, `CONNECT` (any case).
    #[serde(default, deserialize_with = "operations")]
    pub operations: Vec<Operation>,
    /// Kinds: `Kind`, `group/Kind` (`apps/Deployment`, `core/Pod`,
    /// `docker/Container`), with `*` for any group or kind.
    #[serde(default)]
    pub kinds: Vec<KindPattern>,
    /// Namespaces to include or exclude.
    #[serde(default)]
    pub namespaces: NamespaceMatch,
    /// Who sent the request: a user name or group as the front door names
    /// it (Kubernetes user names and groups; `uid:0`, `gid:998`, `cn:ci`,
    /// `o:ops` for Docker clients), exactly or by a prefix ending in `*`.
    #[serde(default)]
    pub users: Vec<String>,
}

/// Namespace selection. Names match exactly, or by prefix with a trailing `*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceMatch {
    /// Only these namespaces (requests without a namespace, such as Docker
    /// ones, then never match).
    #[serde(default)]
    pub include: Vec<String>,
    /// Never these namespaces.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A kind pattern: an optional group and a kind, either of which may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindPattern {
    /// The API group; `None` for any, `Some("")` for the core group.
    pub group: Option<String>,
    /// The kind; `None` for any.
    pub kind: Option<String>,
}

impl<'de> Deserialize<'de> for KindPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let any = |part: &str| (part != "*").then(|| part.to_owned());
        let (group, kind) = match text.split_once('/') {
            None => (None, text.as_str()),
            Some(("core", kind)) => (Some(String::new()), kind),
            Some((group, kind)) => (any(group), kind),
        };
        if kind.is_empty()
            || kind.contains('/')
            || group.as_deref() == Some("") && text.starts_with('/')
        {
            return Err(D::Error::custom(format!(
                "`{text}` is not a kind pattern (`Kind`, `group/Kind`, `core/Kind`, `*`)"
            )));
        }
        Ok(KindPattern {
            group,
            kind: any(kind),
        })
    }
}

/// An error in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, or does not have the expected shape.
    #[error("{origin}: {key}{message}")]
    Invalid {
        /// The file, or `built-in default`.
        origin: String,
        /// The key path, followed by `: `, or empty at the top level.
        key: String,
        /// What is wrong (with the line, and a snippet, when known).
        message: String,
    },
}

impl Config {
    /// Every resource some policy may read from the cluster.
    pub fn cluster_resources(&self) -> std::collections::BTreeSet<Resource> {
        self.policies
            .iter()
            .flat_map(PolicyConfig::readable)
            .cloned()
            .collect()
    }

    /// Reads the configuration from a file. Relative module paths are
    /// resolved against the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        for policy in &mut config.policies {
            if let ModuleSource::File(module) = &mut policy.module {
                *module = base.join(&*module);
            }
        }
        if let Some(dir) = &mut config.cache_dir {
            *dir = base.join(&*dir);
        }
        if let Some(docker) = &mut config.docker {
            if let Some(tls) = &mut docker.tls {
                for file in [
                    Some(&mut tls.cert),
                    Some(&mut tls.key),
                    tls.client_ca.as_mut(),
                ]
                .into_iter()
                .flatten()
                {
                    *file = base.join(&*file);
                }
            }
            if let Some(tls) = &mut docker.upstream_tls {
                for file in [Some(&mut tls.ca), tls.cert.as_mut(), tls.key.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    *file = base.join(&*file);
                }
            }
            if let Some(AuditTarget::File(file)) = &mut docker.audit {
                *file = base.join(&*file);
            }
        }
        if let Some(images) = &mut config.images {
            images.resolve_paths(base);
        }
        if let Some(kubeconfig) = config
            .cluster
            .as_mut()
            .and_then(|cluster| cluster.kubeconfig.as_mut())
        {
            *kubeconfig = base.join(&*kubeconfig);
        }
        if let Some(kubernetes) = &mut config.kubernetes {
            let tls = &mut kubernetes.tls;
            for file in [
                Some(&mut tls.cert),
                Some(&mut tls.key),
                tls.client_ca.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    /// The built-in default configuration.
    pub fn default_config() -> Self {
        Self::parse(DEFAULT, "built-in default").unwrap_or_else(|error| {
            // The default is part of the binary and covered by tests.
            unreachable!("the built-in default configuration is invalid: {error}")
        })
    }

    /// Parses configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut key = String::new();
        let config: Config = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                key = error.path().to_string();
                error.into_inner()
            })
        })
        .map_err(|error| invalid(origin, &key, yaml_message(&error)))?;
        config
            .check()
            .map_err(|(key, message)| invalid(origin, &key, message))?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    fn check(&self) -> Result<(), (String, String)> {
        if let Some(images) = &self.images {
            images.check()?;
        }
        if let Some(docker) = &self.docker {
            let tcp = docker
                .listen
                .iter()
                .any(|endpoint| matches!(endpoint, Endpoint::Tcp(_)));
            if tcp
                && docker
                    .tls
                    .as_ref()
                    .is_none_or(|tls| tls.client_ca.is_none())
            {
                return Err((
                    "docker.tls".into(),
                    "a tcp:// listener needs `tls` with a `client_ca`: the engine API without client certificates is root for anyone who can connect".into(),
                ));
            }
            if docker.access.contains_key(&Group::Ping) {
                return Err((
                    "docker.access.ping".into(),
                    "ping is always allowed: the docker CLI needs it to start".into(),
                ));
            }
            if docker.upstream_tls.is_some() && matches!(docker.upstream, Endpoint::Unix(_)) {
                return Err((
                    "docker.upstream_tls".into(),
                    "TLS applies to a tcp:// upstream only".into(),
                ));
            }
            for (index, field) in docker.unjudged_fields.iter().enumerate() {
                if !crate::admission::docker::fields::is_unjudged(field) {
                    return Err((
                        format!("docker.unjudged_fields[{index}]"),
                        format!(
                            "`{field}` is not an unjudged field; they are: {}",
                            crate::admission::docker::fields::unjudged_names().join(", ")
                        ),
                    ));
                }
            }
            if docker.max_connections_per_client == 0 {
                return Err((
                    "docker.max_connections_per_client".into(),
                    "must be at least 1".into(),
                ));
            }
            if docker.idle_timeout.is_zero() || docker.client_timeout.is_zero() {
                return Err((
                    if docker.idle_timeout.is_zero() {
                        "docker.idle_timeout"
                    } else {
                        "docker.client_timeout"
                    }
                    .into(),
                    "must be longer than zero".into(),
                ));
            }
        }
        if let Some(kubernetes) = &self.kubernetes
            && !(Duration::from_secs(1)..=Duration::from_secs(30)).contains(&kubernetes.timeout)
        {
            return Err((
                "kubernetes.timeout".into(),
                "must be between 1s and 30s, the range the API server accepts".into(),
            ));
        }
        if self
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.max_objects == 0)
        {
            return Err(("cluster.max_objects".into(), "must be at least 1".into()));
        }
        let sandbox = &self.sandbox;
        let positive = "must be more than zero";
        for (key, valid, requirement) in [
            (
                "memory_budget",
                sandbox.memory_budget >= MIN_MEMORY,
                "must be at least 64KiB",
            ),
            ("max_module_size", sandbox.max_module_size > 0, positive),
            (
                "compile_timeout",
                !sandbox.compile_timeout.is_zero(),
                positive,
            ),
            (
                "compile_memory",
                sandbox.compile_memory >= 256 << 20,
                "must be at least 256MiB",
            ),
            (
                "max_patch_operations",
                sandbox.max_patch_operations > 0,
                positive,
            ),
            (
                "max_patched_object",
                sandbox.max_patched_object > 0,
                positive,
            ),
        ] {
            if !valid {
                return Err((format!("sandbox.{key}"), requirement.into()));
            }
        }
        for (index, policy) in self.policies.iter().enumerate() {
            let key = |field: &str| format!("policies[{index}].{field}");
            let valid_name = !policy.name.is_empty()
                && policy.name.bytes().all(|byte| {
                    byte.is_ascii_lowercase()
                        || byte.is_ascii_digit()
                        || byte == b'-'
                        || byte == b'_'
                });
            if !valid_name {
                return Err((
                    key("name"),
                    format!(
                        "`{}` is not a policy name (lowercase letters, digits, `-` and `_`)",
                        policy.name
                    ),
                ));
            }
            if self.policies[..index]
                .iter()
                .any(|other| other.name == policy.name)
            {
                return Err((
                    key("name"),
                    format!("duplicate policy name `{}`", policy.name),
                ));
            }
            for (grant, granted) in policy.grants.iter().enumerate() {
                if matches!(granted, Grant::Cluster(resources) if resources.is_empty()) {
                    return Err((
                        key(&format!("grants[{grant}].cluster")),
                        "names no resource to read; write e.g. `cluster: [v1/namespaces]`".into(),
                    ));
                }
            }
            if policy.timeout.is_zero() || policy.timeout > MAX_TIMEOUT {
                return Err((
                    key("timeout"),
                    format!("must be more than 0 and at most {}s", MAX_TIMEOUT.as_secs()),
                ));
            }
            if !(MIN_MEMORY..=policy::MAX_MEMORY).contains(&policy.memory) {
                return Err((
                    key("memory"),
                    format!("must be between 64KiB and {}MiB", policy::MAX_MEMORY >> 20),
                ));
            }
            if policy.memory > sandbox.memory_budget {
                return Err((
                    key("memory"),
                    format!(
                        "is more than the sandbox's memory_budget of {} bytes, so the policy could never run",
                        sandbox.memory_budget
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn invalid(origin: &str, key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        key: if key.is_empty() || key == "." {
            String::new()
        } else {
            format!("{key}: ")
        },
        message,
    }
}

/// The parser's message without its own `error: ` prefix (ours comes first).
pub(crate) fn yaml_message(error: &serde_saphyr::Error) -> String {
    let message = error.to_string();
    message
        .strip_prefix("error: ")
        .map(str::to_owned)
        .unwrap_or(message)
}

fn empty_settings() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_memory() -> u64 {
    DEFAULT_MEMORY
}

fn default_webhook_timeout() -> Duration {
    DEFAULT_WEBHOOK_TIMEOUT
}

fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY
}

fn default_docker_max_body() -> u64 {
    4 << 20
}

fn default_docker_idle_timeout() -> Duration {
    Duration::from_secs(120)
}

fn default_docker_connections_per_client() -> usize {
    256
}

fn default_socket_mode() -> u32 {
    0o660
}

fn octal_mode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let text = String::deserialize(deserializer)?;
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "`{text}` is not a permission mode; write it in octal, like \"0660\""
            ))
        })
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Endpoint>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Endpoint),
        Many(Vec<Endpoint>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(endpoint) => vec![endpoint],
        OneOrMany::Many(endpoints) => endpoints,
    })
}

fn default_client_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Reads a duration written as a number and a unit: `500ms`, `2s`, `1m`.
pub(crate) fn duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).ok_or_else(|| {
        D::Error::custom(format!(
            "`{text}` is not a duration; write a number and a unit: `500ms`, `2s`, `1m`"
        ))
    })
}

fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = split_unit(text)?;
    let scale = match unit {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * scale).ok()
}

/// Reads a size written as a number and a unit: `64MiB`, `512KiB`, `1GiB`
/// (binary) or `64MB` (decimal).
fn byte_size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_byte_size(&text).ok_or_else(|| {
        D::Error::custom(format!(
            "`{text}` is not a size; write a number and a unit: `64MiB`, `512KiB`, `1GiB`"
        ))
    })
}

fn parse_byte_size(text: &str) -> Option<u64> {
    let (number, unit) = split_unit(text)?;
    let scale: f64 = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    let bytes = number * scale;
    // `as` saturates; the range check keeps nonsense like `1e30GiB` out.
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Splits `12.5ms` into `12.5` and `ms`; the number must be non-negative.
fn split_unit(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    (number.is_finite() && number >= 0.0).then_some((number, unit.trim()))
}

fn origins<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Origin>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|name| match name.as_str() {
            "kubernetes" => Ok(Origin::Kubernetes),
            "docker" => Ok(Origin::Docker),
            other => Err(D::Error::custom(format!(
                "unknown origin `{other}`, expected `kubernetes` or `docker`"
            ))),
        })
        .collect()
}

fn operations<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Operation>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|name| match name.to_ascii_uppercase().as_str() {
            "CREATE" => Ok(Operation::Create),
            "UPDATE" => Ok(Operation::Update),
            "DELETE" => Ok(Operation::Delete),
            "CONNECT" => Ok(Operation::Connect),
            _ => Err(D::Error::custom(format!(
                "unknown operation `{name}`, expected CREATE, UPDATE, DELETE or CONNECT"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match Config::parse(text, "test.yaml") {
            Ok(config) => panic!("accepted {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_default_configuration_enforces_baseline_pod_security() {
        let config = Config::default_config();
        assert_eq!(config.policies.len(), 1);
        let policy = &config.policies[0];
        assert_eq!(policy.module, ModuleSource::Builtin("pod-security".into()));
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.settings["level"], "baseline");
    }

    #[test]
    fn a_full_policy_entry_is_read() {
        let config = Config::parse(
            r#"
policies:
  - name: pss
    module: builtin:pod-security
    settings: {level: restricted, version: v1.30}
    mode: warn
    on_error: allow
    timeout: 1.5s
    memory: 16MiB
    match:
      origins: [kubernetes]
      operations: [create, UPDATE]
      kinds: [Pod, apps/Deployment, "core/*", "*/CronJob"]
      namespaces: {include: [team-*], exclude: [kube-system]}
"#,
            "test.yaml",
        )
        .expect("valid");
        let policy = &config.policies[0];
        assert_eq!(policy.mode, Mode::Warn);
        assert_eq!(policy.on_error, OnError::Allow);
        assert_eq!(policy.timeout, Duration::from_millis(1500));
        assert_eq!(policy.memory, 16 << 20);
        assert_eq!(
            policy.matches.operations,
            [Operation::Create, Operation::Update]
        );
        assert_eq!(
            policy.matches.kinds,
            [
                KindPattern {
                    group: None,
                    kind: Some("Pod".into())
                },
                KindPattern {
                    group: Some("apps".into()),
                    kind: Some("Deployment".into())
                },
                KindPattern {
                    group: Some(String::new()),
                    kind: None
                },
                KindPattern {
                    group: None,
                    kind: Some("CronJob".into())
                },
            ]
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_path_and_line() {
        let message =
            error("policies:\n  - name: a\n    module: builtin:pod-security\n    moed: warn\n");
        assert!(
            message.starts_with("test.yaml: policies[0].moed: "),
            "{message}"
        );
        assert!(message.contains("unknown field `moed`"), "{message}");
        assert!(message.contains("line 4"), "{message}");
        let message = error("polices: []\n");
        assert!(message.contains("unknown field `polices`"), "{message}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key, words) in [
            (
                "policies: [{name: a, module: builtin:nope}]",
                "policies[0].module",
                "unknown built-in policy `nope`",
            ),
            (
                "policies: [{name: a, module: x.wasm, mode: enforcing}]",
                "policies[0].mode",
                "unknown variant `enforcing`",
            ),
            (
                "policies: [{name: a, module: x.wasm, timeout: soon}]",
                "policies[0].timeout",
                "not a duration",
            ),
            (
                "policies: [{name: a, module: x.wasm, timeout: 0s}]",
                "policies[0].timeout",
                "more than 0",
            ),
            (
                "policies: [{name: a, module: x.wasm, memory: 2GiB}]",
                "policies[0].memory",
                "between",
            ),
            (
                "policies: [{name: a, module: x.wasm, memory: lots}]",
                "policies[0].memory",
                "not a size",
            ),
            (
                "policies: [{name: A B, module: x.wasm}]",
                "policies[0].name",
                "not a policy name",
            ),
            (
                "policies: [{name: a, module: x.wasm}, {name: a, module: y.wasm}]",
                "policies[1].name",
                "duplicate",
            ),
            (
                "policies: [{name: a, module: x.wasm, match: {operations: [PATCH]}}]",
                "policies[0].match.operations",
                "unknown operation",
            ),
            (
                "policies: [{name: a, module: x.wasm, match: {origins: [podman]}}]",
                "policies[0].match.origins",
                "unknown origin",
            ),
            (
                "policies: [{name: a, module: x.wasm, match: {kinds: [a/b/c]}}]",
                "policies[0].match.kinds",
                "not a kind pattern",
            ),
            (
                "policies: [{name: a}]",
                "policies[0]",
                "missing field `module`",
            ),
            (
                "images: {rules: [{match: [\"nginx:1.27\"], any_of: [{key: k.pub}]}]}",
                "images.rules[0].match",
                "not an image pattern",
            ),
            (
                "images: {rules: [{match: [\"**\"]}]}",
                "images.rules[0].any_of",
                "at least one authority",
            ),
            (
                "images: {rules: [{match: [\"**\"], any_of: [{key: k.pub, keyless: {trust_root: r, subject: s}}]}]}",
                "images.rules[0].any_of[0]",
                "an authority is",
            ),
            (
                "images: {rules: [{match: [\"**\"], any_of: [{keyless: {trust_root: nowhere, subject: s}}]}]}",
                "images.rules[0].any_of[0].keyless.trust_root",
                "no trust root named `nowhere`",
            ),
            (
                "images: {trust_roots: {r: {ca: [c.pem]}}, rules: [{match: [\"**\"], any_of: [{keyless: {trust_root: r, subject_regex: \"(\"}}]}]}",
                "images.rules[0].any_of[0].keyless.subject_regex",
                "not a regular expression",
            ),
            (
                "images: {trust_roots: {r: {}}}",
                "images.trust_roots.r",
                "needs `trusted_root`, `ca` or `rekor`",
            ),
            (
                "images: {registries: {r.io: {password: x}}}",
                "images.registries.r.io.username",
                "needs a `username`",
            ),
            (
                "images: {default: maybe}",
                "images.default",
                "unknown variant",
            ),
            ("images: {timeout: 2m}", "images.timeout", "at most 60s"),
            (
                "images: {cache: {size: 3}}",
                "images.cache",
                "unknown field `size`",
            ),
        ] {
            let message = error(text);
            assert!(
                message.starts_with(&format!("test.yaml: {key}")),
                "{text}: {message}"
            );
            assert!(message.contains(words), "{text}: {message}");
        }
    }

    #[test]
    fn cluster_grants_name_the_resources_a_policy_reads() {
        let config = Config::parse(
            "cluster: {kubeconfig: kube.yaml, max_objects: 50}\npolicies:\n  - name: a\n    module: builtin:pod-security\n    grants:\n      - clock\n      - cluster: [v1/namespaces, networking.k8s.io/v1/ingresses]\n  - name: b\n    module: builtin:pod-security\n    grants: [{cluster: [v1/namespaces]}]\n",
            "test",
        )
        .expect("valid");
        assert_eq!(config.policies[0].grants[0], Grant::Clock);
        assert_eq!(
            config.policies[0]
                .readable()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["v1/namespaces", "networking.k8s.io/v1/ingresses"]
        );
        assert_eq!(config.cluster_resources().len(), 2);
        assert_eq!(config.cluster.as_ref().map(|c| c.max_objects), Some(50));
        for (grants, words) in [
            (
                "[{cluster: []}]",
                "policies[0].grants[0].cluster: names no resource",
            ),
            ("[{cluster: [namespaces]}]", "is not a resource"),
            ("[{cluster: [v1/Pods]}]", "lowercase"),
            ("[network]", "unknown variant"),
        ] {
            let message = error(&format!(
                "policies:\n  - name: a\n    module: builtin:pod-security\n    grants: {grants}\n"
            ));
            assert!(message.contains(words), "{grants}: {message}");
        }
        let message = error("cluster: {max_objects: 0}\n");
        assert!(
            message.contains("cluster.max_objects: must be at least 1"),
            "{message}"
        );
    }

    #[test]
    fn malformed_yaml_is_reported_with_its_line() {
        let message = error("policies: [\n");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_byte_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_byte_size("1.5KiB"), Some(1536));
        assert_eq!(parse_byte_size("10MB"), Some(10_000_000));
        assert_eq!(parse_byte_size("-1MiB"), None);
        assert_eq!(parse_byte_size("1e30GiB"), None);
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("10h"), None);
    }
}
