//! `portcullis manifests`: everything a cluster needs to run the webhook,
//! generated from the configuration so the two never drift apart.
//!
//! Namespace, ServiceAccount, the configuration in a ConfigMap (with its
//! `kubernetes` section pointed at the mounted certificate, and policy files
//! carried along as binary data), the TLS Secret made by `portcullis
//! certs`, a hardened two-replica Deployment, its Service and
//! PodDisruptionBudget, the Validating- and MutatingWebhookConfiguration
//! whose rules come from the policies' `match` sections, and, when policies
//! read the cluster, the ClusterRole and binding that let them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::admission::Origin;
use crate::config::{Config, KindPattern, ModuleSource};

/// Port the container listens on.
const CONTAINER_PORT: u16 = 8443;
/// Where the configuration, certificates, policy files and cache go in the pod.
const CONFIG_DIR: &str = "/etc/portcullis/config";
const TLS_DIR: &str = "/etc/portcullis/tls";
const POLICY_DIR: &str = "/etc/portcullis/policies";
/// The cache volume, and the compilation cache inside it. The cache
/// refuses a directory someone else owns or could write to, unless it is
/// sticky: an emptyDir on disk is root's and 0777, and no non-root pod can
/// change that; one in memory is a tmpfs, root's and sticky (1777) like
/// `/tmp`, in which the gateway makes its own private directory.
const CACHE_VOLUME: &str = "/var/cache/portcullis";
const CACHE_DIR: &str = "/var/cache/portcullis/compiled";
/// A ConfigMap holds at most 1 MiB.
const MAX_CONFIG_MAP: usize = 1 << 20;
/// How long a stopping pod keeps answering with readiness off.
const SHUTDOWN_DELAY: std::time::Duration = std::time::Duration::from_secs(5);
/// An unprivileged uid for the container (the "nonroot" user of distroless
/// images).
const RUN_AS_USER: i64 = 65532;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// Namespace to deploy into.
    pub namespace: String,
    /// Name of the Deployment, Service and the rest.
    pub name: String,
    /// Container image.
    pub image: String,
    /// Directory written by `portcullis certs` (`ca.crt`, `tls.crt`, `tls.key`).
    pub certs: PathBuf,
    /// The gateway's address outside the cluster (`https://host:port`):
    /// only the webhook configurations are printed, pointing there.
    pub url: Option<String>,
}

/// Why manifests could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The configuration has no `kubernetes` section.
    #[error("the configuration has no `kubernetes` section to deploy")]
    NoWebhook,
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Policy files do not fit in a ConfigMap.
    #[error(
        "the policy files take {0} bytes, more than a ConfigMap holds (1 MiB); build them into the image instead"
    )]
    TooLarge(usize),
    /// YAML output failed.
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

fn read(path: &Path) -> Result<Vec<u8>, ManifestError> {
    std::fs::read(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The manifests, as one multi-document YAML text.
pub fn generate(options: &Options) -> Result<String, ManifestError> {
    let config = Config::from_file(&options.config)?;
    let webhook = config.kubernetes.as_ref().ok_or(ManifestError::NoWebhook)?;
    let ca_bundle = read(&options.certs.join("ca.crt"))?;
    let names = Names::new(options);
    let registrations = |documents: &mut Vec<Value>| {
        let rules = rules(&config);
        if rules.is_empty() {
            return;
        }
        let timeout = webhook.timeout.as_secs_f64().ceil() as u64;
        for mutating in [false, true] {
            documents.push(webhook_configuration(
                &names,
                options.url.as_deref(),
                &ca_bundle,
                &rules,
                webhook.failure_policy.as_str(),
                timeout,
                mutating,
            ));
        }
    };
    if options.url.is_some() {
        let mut documents = Vec::new();
        registrations(&mut documents);
        return to_yaml(documents);
    }
    let (in_cluster, policy_files) = in_cluster_config(&options.config, &config)?;
    let with_policies = !policy_files.is_empty();

    let mut documents = vec![
        namespace(&options.namespace),
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": names.metadata(&names.base),
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": names.metadata(&names.config),
            "data": {"portcullis.yaml": in_cluster},
        }),
    ];
    if with_policies {
        documents.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": names.metadata(&names.policies),
            "binaryData": policy_files,
        }));
    }
    let mut secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": names.metadata(&names.tls),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64(&read(&options.certs.join("tls.crt"))?),
            "tls.key": base64(&read(&options.certs.join("tls.key"))?),
        },
    });
    if let Some(client_ca) = &webhook.tls.client_ca {
        secret["data"]["client-ca.crt"] = json!(base64(&read(client_ca)?));
    }
    documents.push(secret);
    let readers = cluster_reader(&names, &config);
    let reads_cluster = !readers.is_empty();
    documents.extend(readers);
    documents.push(deployment(&names, options, with_policies, reads_cluster));
    documents.push(service(&names));
    documents.push(json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": names.metadata(&names.base),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": names.selector()}},
    }));
    registrations(&mut documents);
    to_yaml(documents)
}

fn to_yaml(documents: Vec<Value>) -> Result<String, ManifestError> {
    let mut out =
        String::from("# Generated by `portcullis manifests`; regenerate rather than edit.\n");
    for document in documents {
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(&document)
                .map_err(|error| ManifestError::Yaml(error.to_string()))?,
        );
    }
    Ok(out)
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Object names, all derived from one base name.
struct Names {
    base: String,
    namespace: String,
    config: String,
    policies: String,
    tls: String,
}

impl Names {
    fn new(options: &Options) -> Self {
        let base = options.name.clone();
        Self {
            config: format!("{base}-config"),
            policies: format!("{base}-policies"),
            tls: format!("{base}-tls"),
            namespace: options.namespace.clone(),
            base,
        }
    }

    fn selector(&self) -> Value {
        json!({"app.kubernetes.io/name": "portcullis", "app.kubernetes.io/instance": self.base})
    }

    fn metadata(&self, name: &str) -> Value {
        json!({"name": name, "namespace": self.namespace, "labels": self.selector()})
    }
}

fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            // The gateway itself meets the restricted Pod Security Standard.
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        },
    })
}

/// The configuration as the pod sees it: the webhook listens on every
/// address at the container port with the mounted certificate, compiled
/// policies are cached in an emptyDir, and policy files come from the
/// policies ConfigMap. Returns the YAML text and the policy files' data.
fn in_cluster_config(
    path: &Path,
    config: &Config,
) -> Result<(String, serde_json::Map<String, Value>), ManifestError> {
    let text = String::from_utf8_lossy(&read(path)?).into_owned();
    let mut value: Value =
        serde_saphyr::from_str(&text).map_err(|error| ManifestError::Yaml(error.to_string()))?;
    let mut tls =
        json!({"cert": format!("{TLS_DIR}/tls.crt"), "key": format!("{TLS_DIR}/tls.key")});
    if config
        .kubernetes
        .as_ref()
        .is_some_and(|webhook| webhook.tls.client_ca.is_some())
    {
        tls["client_ca"] = json!(format!("{TLS_DIR}/client-ca.crt"));
    }
    value["kubernetes"]["listen"] = json!(format!("0.0.0.0:{CONTAINER_PORT}"));
    // Endpoints take a few seconds to drop a terminating pod; keep answering
    // until they have.
    value["kubernetes"]["shutdown_delay"] = json!(format!("{}s", SHUTDOWN_DELAY.as_secs()));
    value["kubernetes"]["tls"] = tls;
    value["cache_dir"] = json!(CACHE_DIR);
    // In the cluster, the cluster is read with the pod's service account.
    if let Some(cluster) = value.get_mut("cluster").and_then(Value::as_object_mut) {
        cluster.remove("kubeconfig");
        cluster.remove("context");
    }

    let mut files = serde_json::Map::new();
    let mut size = 0;
    for (index, policy) in config.policies.iter().enumerate() {
        if let ModuleSource::File(module) = &policy.module {
            let wasm = read(module)?;
            size += wasm.len();
            let key = format!("{}.wasm", policy.name);
            value["policies"][index]["module"] = json!(format!("{POLICY_DIR}/{key}"));
            files.insert(key, json!(base64(&wasm)));
        }
    }
    // base64 grows data by a third.
    if size * 4 / 3 > MAX_CONFIG_MAP {
        return Err(ManifestError::TooLarge(size));
    }
    let yaml =
        serde_saphyr::to_string(&value).map_err(|error| ManifestError::Yaml(error.to_string()))?;
    Ok((yaml, files))
}

/// For policies granted `cluster`: a ClusterRole that may get, list and
/// watch exactly the granted resources, bound to the gateway's
/// ServiceAccount. Nothing when no policy reads the cluster.
fn cluster_reader(names: &Names, config: &Config) -> Vec<Value> {
    let mut groups: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    let resources = config.cluster_resources();
    for resource in &resources {
        groups
            .entry(&resource.group)
            .or_default()
            .push(&resource.resource);
    }
    if groups.is_empty() {
        return Vec::new();
    }
    let role = format!("{}.{}.cluster-reader", names.base, names.namespace);
    let rules: Vec<Value> = groups
        .into_iter()
        .map(|(group, resources)| {
            json!({"apiGroups": [group], "resources": resources, "verbs": ["get", "list", "watch"]})
        })
        .collect();
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role, "labels": names.selector()},
            "rules": rules,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role, "labels": names.selector()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": names.base, "namespace": names.namespace}],
        }),
    ]
}

fn deployment(names: &Names, options: &Options, with_policies: bool, reads_cluster: bool) -> Value {
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": names.config}}),
        json!({"name": "tls", "secret": {"secretName": names.tls}}),
        json!({"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}}),
    ];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        json!({"name": "tls", "mountPath": TLS_DIR, "readOnly": true}),
        json!({"name": "cache", "mountPath": CACHE_VOLUME}),
    ];
    if with_policies {
        volumes.push(json!({"name": "policies", "configMap": {"name": names.policies}}));
        mounts.push(json!({"name": "policies", "mountPath": POLICY_DIR, "readOnly": true}));
    }
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "https", "scheme": "HTTPS"}, "periodSeconds": 5});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": names.metadata(&names.base),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": names.selector()},
            "template": {
                "metadata": {"labels": names.selector()},
                "spec": {
                    "serviceAccountName": names.base,
                    // The shutdown delay, then up to 30 s of draining.
                    "terminationGracePeriodSeconds": SHUTDOWN_DELAY.as_secs() + 35,
                    // The token is mounted only for reading the cluster.
                    "automountServiceAccountToken": reads_cluster,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    // One replica per node where possible, so a node going
                    // away leaves the webhook answering.
                    "topologySpreadConstraints": [{
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": names.selector()},
                    }],
                    "containers": [{
                        "name": "portcullis",
                        "image": options.image,
                        "args": ["serve", "--config", format!("{CONFIG_DIR}/portcullis.yaml")],
                        "ports": [{"name": "https", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "resources": {
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                            "limits": {"memory": "1Gi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    })
}

fn service(names: &Names) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": names.metadata(&names.base),
        "spec": {
            "selector": names.selector(),
            "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
        },
    })
}

/// What the built-in policies judge: pods (with the sub-resources pods are
/// changed or entered through) and every kind that owns a pod template.
const WORKLOADS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "pods",
            "pods/ephemeralcontainers",
            "pods/exec",
            "pods/attach",
            "replicationcontrollers",
        ],
    ),
    (
        "apps",
        &["deployments", "replicasets", "statefulsets", "daemonsets"],
    ),
    ("batch", &["jobs", "cronjobs"]),
];

/// The admission rules covering every policy that sees Kubernetes requests:
/// one rule per kind pattern, with the policy's operations. A built-in
/// policy with no kinds named is sent the workloads it judges, not every
/// write in the cluster; any other policy with no kinds, everything. Image
/// verification, when configured, is sent the workloads too, so it pins
/// and refuses images with no policy configured.
fn rules(config: &Config) -> Vec<Value> {
    let mut rules: BTreeSet<String> = BTreeSet::new();
    if config.images.is_some() {
        for (group, resources) in WORKLOADS {
            rules.insert(rule(group, &["*"], resources));
        }
    }
    for policy in &config.policies {
        let matches = &policy.matches;
        if !matches.origins.is_empty() && !matches.origins.contains(&Origin::Kubernetes) {
            continue;
        }
        let operations: Vec<&str> = if matches.operations.is_empty() {
            vec!["*"]
        } else {
            matches
                .operations
                .iter()
                .map(|operation| operation.as_str())
                .collect()
        };
        let any = KindPattern {
            group: None,
            kind: None,
        };
        if matches.kinds.is_empty() && matches!(policy.module, ModuleSource::Builtin(_)) {
            for (group, resources) in WORKLOADS {
                rules.insert(rule(group, &operations, resources));
            }
            continue;
        }
        let kinds = if matches.kinds.is_empty() {
            std::slice::from_ref(&any)
        } else {
            &matches.kinds[..]
        };
        for pattern in kinds {
            let group = pattern.group.clone().unwrap_or_else(|| "*".into());
            let resources: Vec<String> = match pattern.kind.as_deref() {
                // Every resource and every sub-resource; the API server
                // allows `*/*` only alone.
                None => vec!["*/*".into()],
                // Pods also come through sub-resources: ephemeral containers
                // on UPDATE, exec and attach on CONNECT.
                Some("Pod") => [
                    "pods",
                    "pods/ephemeralcontainers",
                    "pods/exec",
                    "pods/attach",
                ]
                .map(String::from)
                .to_vec(),
                Some(kind) => vec![crate::admission::kubernetes::resource_for(kind)],
            };
            rules.insert(rule(&group, &operations, &resources));
        }
    }
    rules
        .into_iter()
        .filter_map(|rule| serde_json::from_str(&rule).ok())
        .collect()
}

/// One admission rule, as JSON text (so equal rules collapse into one).
fn rule(group: &str, operations: &[&str], resources: &[impl AsRef<str>]) -> String {
    let resources: Vec<&str> = resources.iter().map(AsRef::as_ref).collect();
    json!({
        "apiGroups": [group],
        "apiVersions": ["*"],
        "operations": operations,
        "resources": resources,
        "scope": "*",
    })
    .to_string()
}

fn webhook_configuration(
    names: &Names,
    url: Option<&str>,
    ca_bundle: &[u8],
    rules: &[Value],
    failure_policy: &str,
    timeout: u64,
    mutating: bool,
) -> Value {
    let (kind, path, webhook_name) = if mutating {
        (
            "MutatingWebhookConfiguration",
            "/mutate",
            "mutate.portcullis.dev",
        )
    } else {
        (
            "ValidatingWebhookConfiguration",
            "/validate",
            "validate.portcullis.dev",
        )
    };
    let mut webhook = json!({
        "name": webhook_name,
        "admissionReviewVersions": ["v1", "v1beta1"],
        "clientConfig": match url {
            Some(url) => json!({
                "url": format!("{}{path}", url.trim_end_matches('/')),
                "caBundle": base64(ca_bundle),
            }),
            None => json!({
                "service": {"name": names.base, "namespace": names.namespace, "path": path, "port": 443},
                "caBundle": base64(ca_bundle),
            }),
        },
        "rules": rules,
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": timeout,
        // Never judge the gateway's own namespace (it must be able to start
        // to judge anything) or the control plane's.
        "namespaceSelector": {
            "matchExpressions": [{
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [names.namespace, "kube-system"],
            }],
        },
    });
    if mutating {
        // Mutations by other webhooks after this one get it called again,
        // so it always judges the final object.
        webhook["reinvocationPolicy"] = json!("IfNeeded");
    }
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {
            "name": format!("{}.{}", names.base, names.namespace),
            "labels": names.selector(),
        },
        "webhooks": [webhook],
    })
}
