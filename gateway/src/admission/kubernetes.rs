//! Normalizes Kubernetes objects that run pods into a [`Workload`].
//!
//! A Pod is its own template; Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, Job and ReplicationController carry one at `spec.template`,
//! CronJob at `spec.jobTemplate.spec.template`. Only the fields a workload
//! needs are read; everything else is left to the raw object. Fields are
//! typed as the Kubernetes API types them, so an object of the wrong shape
//! is rejected with the path of the offending field. `null` is read as
//! absent, as the API server's own decoder does.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    Capabilities, Container, ContainerKind, GroupVersionKind, HandlerHost, NormalizeError,
    Operation, PodSecurityContext, Port, Request, SeLinuxOptions, SecurityContext, SecurityProfile,
    Sysctl, Volume, VolumeMount, Workload,
};

/// Where a kind keeps its pod template, as a JSON Pointer; `None` for kinds
/// that run nothing.
pub fn template_path(kind: &GroupVersionKind) -> Option<&'static str> {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Pod") => Some(""),
        ("apps" | "extensions", "Deployment" | "ReplicaSet" | "DaemonSet")
        | ("apps", "StatefulSet")
        | ("batch", "Job")
        | ("", "ReplicationController") => Some("/spec/template"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// The plural resource name Kubernetes uses for a kind (`Pod` → `pods`,
/// `NetworkPolicy` → `networkpolicies`, `Ingress` → `ingresses`).
pub fn resource_for(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') || lower.ends_with('x') || lower.ends_with("ch") {
        format!("{lower}es")
    } else if let Some(stem) = lower
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(['a', 'e', 'o', 'u']))
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// Adds the normalized workload and its images to a Kubernetes request, when
/// its object runs something: a pod or pod template that is being created or
/// updated, directly or through the `ephemeralcontainers` sub-resource. Other
/// sub-resources (`exec`, `status`, `scale`, …) carry other objects.
pub fn normalize_request(request: &mut Request) -> Result<(), NormalizeError> {
    let judged = matches!(request.operation, Operation::Create | Operation::Update)
        && matches!(
            request.sub_resource.as_deref(),
            None | Some("ephemeralcontainers")
        );
    let Some(object) = request.object.as_deref().filter(|_| judged) else {
        return Ok(());
    };
    if let Some(workload) = normalize(&request.kind, object)? {
        request.images = super::images(&workload);
        request.workload = Some(workload);
    }
    Ok(())
}

/// Normalizes `object` (JSON text) of the given kind. `Ok(None)` when the
/// kind runs nothing, or when a controller has no template.
pub fn normalize(
    kind: &GroupVersionKind,
    object: &str,
) -> Result<Option<Workload>, NormalizeError> {
    let Some(template_path) = template_path(kind) else {
        return Ok(None);
    };
    let template = match template_path {
        "" => Some(parse::<PodTemplate>(object)?),
        "/spec/template" => parse::<WithTemplate>(object)?
            .spec
            .and_then(|spec| spec.template),
        _ => parse::<CronJob>(object)?
            .spec
            .and_then(|spec| spec.job_template)
            .and_then(|job| job.spec)
            .and_then(|spec| spec.template),
    };
    Ok(template.map(|template| template.into_workload(template_path)))
}

fn parse<T: for<'de> Deserialize<'de>>(object: &str) -> Result<T, NormalizeError> {
    // serde would read a struct from an array too; an object is an object.
    if !object.trim_start().starts_with('{') {
        return Err(NormalizeError::new("", "expected a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_str(object);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        NormalizeError::new(
            if path == "." { String::new() } else { path },
            error.into_inner().to_string(),
        )
    })
}

/// Deserializes `null` as the type's default, as Go does for slices, maps
/// and booleans.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct WithTemplate {
    spec: Option<TemplateHolder>,
}

#[derive(Deserialize)]
struct TemplateHolder {
    template: Option<PodTemplate>,
}

#[derive(Deserialize)]
struct CronJob {
    spec: Option<CronJobSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec {
    job_template: Option<WithTemplate>,
}

/// A Pod, or a pod template: metadata and spec.
#[derive(Deserialize)]
struct PodTemplate {
    metadata: Option<Metadata>,
    spec: Option<PodSpec>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default, deserialize_with = "nullable")]
    labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default, deserialize_with = "nullable")]
    containers: Vec<KubeContainer>,
    #[serde(default, deserialize_with = "nullable")]
    init_containers: Vec<KubeContainer>,
    #[serde(default, deserialize_with = "nullable")]
    ephemeral_containers: Vec<KubeContainer>,
    #[serde(default, deserialize_with = "nullable")]
    volumes: Vec<BTreeMap<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "nullable")]
    host_network: bool,
    #[serde(default, rename = "hostPID", deserialize_with = "nullable")]
    host_pid: bool,
    #[serde(default, rename = "hostIPC", deserialize_with = "nullable")]
    host_ipc: bool,
    host_users: Option<bool>,
    security_context: Option<KubePodSecurityContext>,
    os: Option<PodOs>,
}

#[derive(Deserialize)]
struct PodOs {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KubePodSecurityContext {
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    fs_group: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    supplemental_groups: Vec<i64>,
    seccomp_profile: Option<Profile>,
    app_armor_profile: Option<Profile>,
    #[serde(rename = "seLinuxOptions")]
    se_linux_options: Option<KubeSeLinuxOptions>,
    windows_options: Option<WindowsOptions>,
    #[serde(default, deserialize_with = "nullable")]
    sysctls: Vec<KubeSysctl>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KubeContainer {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    image: String,
    security_context: Option<KubeSecurityContext>,
    #[serde(default, deserialize_with = "nullable")]
    ports: Vec<ContainerPort>,
    #[serde(default, deserialize_with = "nullable")]
    volume_mounts: Vec<KubeVolumeMount>,
    liveness_probe: Option<Handler>,
    readiness_probe: Option<Handler>,
    startup_probe: Option<Handler>,
    lifecycle: Option<Lifecycle>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KubeSecurityContext {
    privileged: Option<bool>,
    allow_privilege_escalation: Option<bool>,
    capabilities: Option<KubeCapabilities>,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    read_only_root_filesystem: Option<bool>,
    seccomp_profile: Option<Profile>,
    app_armor_profile: Option<Profile>,
    #[serde(rename = "seLinuxOptions")]
    se_linux_options: Option<KubeSeLinuxOptions>,
    proc_mount: Option<String>,
    windows_options: Option<WindowsOptions>,
}

#[derive(Deserialize, Default)]
struct KubeCapabilities {
    #[serde(default, deserialize_with = "nullable")]
    add: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    drop: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    localhost_profile: Option<String>,
}

impl From<Profile> for SecurityProfile {
    fn from(profile: Profile) -> Self {
        match profile.kind.as_str() {
            "RuntimeDefault" => SecurityProfile::RuntimeDefault,
            "Localhost" => {
                SecurityProfile::Localhost(profile.localhost_profile.unwrap_or_default())
            }
            "Unconfined" => SecurityProfile::Unconfined,
            _ => SecurityProfile::Other(profile.kind),
        }
    }
}

#[derive(Deserialize)]
struct KubeSeLinuxOptions {
    #[serde(default, deserialize_with = "nullable")]
    user: String,
    #[serde(default, deserialize_with = "nullable")]
    role: String,
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    #[serde(default, deserialize_with = "nullable")]
    level: String,
}

impl From<KubeSeLinuxOptions> for SeLinuxOptions {
    fn from(options: KubeSeLinuxOptions) -> Self {
        SeLinuxOptions {
            user: options.user,
            role: options.role,
            type_: options.kind,
            level: options.level,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WindowsOptions {
    host_process: Option<bool>,
}

#[derive(Deserialize)]
struct KubeSysctl {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
    #[serde(default, deserialize_with = "nullable")]
    host_port: u16,
    #[serde(rename = "hostIP", default, deserialize_with = "nullable")]
    host_ip: String,
    #[serde(default, deserialize_with = "nullable")]
    protocol: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KubeVolumeMount {
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    mount_path: String,
    #[serde(default, deserialize_with = "nullable")]
    read_only: bool,
}

/// A probe or lifecycle handler; only the actions that can name a host.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Handler {
    http_get: Option<HostAction>,
    tcp_socket: Option<HostAction>,
}

#[derive(Deserialize)]
struct HostAction {
    host: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lifecycle {
    post_start: Option<Handler>,
    pre_stop: Option<Handler>,
}

impl PodTemplate {
    fn into_workload(self, template_path: &str) -> Workload {
        let metadata = self.metadata.unwrap_or_default();
        let spec = self.spec.unwrap_or_default();
        let pod = spec.security_context.unwrap_or_default();
        let containers = [
            (ContainerKind::Init, spec.init_containers),
            (ContainerKind::Regular, spec.containers),
            (ContainerKind::Ephemeral, spec.ephemeral_containers),
        ]
        .into_iter()
        .flat_map(|(kind, containers)| {
            containers
                .into_iter()
                .enumerate()
                .map(move |(index, container)| container.into_container(kind, index))
        })
        .collect();
        Workload {
            template_path: Some(template_path.to_owned()),
            labels: metadata.labels.into_iter().collect(),
            annotations: metadata.annotations.into_iter().collect(),
            os: spec.os.map(|os| os.name),
            host_network: spec.host_network,
            host_pid: spec.host_pid,
            host_ipc: spec.host_ipc,
            host_users: spec.host_users,
            security_context: PodSecurityContext {
                run_as_user: pod.run_as_user,
                run_as_group: pod.run_as_group,
                run_as_non_root: pod.run_as_non_root,
                fs_group: pod.fs_group,
                supplemental_groups: pod.supplemental_groups,
                seccomp_profile: pod.seccomp_profile.map(Into::into),
                app_armor_profile: pod.app_armor_profile.map(Into::into),
                se_linux_options: pod.se_linux_options.map(Into::into),
                windows_host_process: pod.windows_options.and_then(|options| options.host_process),
                sysctls: pod
                    .sysctls
                    .into_iter()
                    .map(|sysctl| Sysctl {
                        name: sysctl.name,
                        value: sysctl.value,
                    })
                    .collect(),
            },
            containers,
            volumes: spec.volumes.into_iter().map(volume).collect(),
            ..Workload::default()
        }
    }
}

/// A volume's kind is the name of its one non-null source field.
fn volume(mut fields: BTreeMap<String, serde_json::Value>) -> Volume {
    let name = match fields.remove("name") {
        Some(serde_json::Value::String(name)) => name,
        _ => String::new(),
    };
    let kind = fields
        .iter()
        .find(|(_, value)| !value.is_null())
        .map(|(kind, _)| kind.clone())
        .unwrap_or_default();
    let host_path = fields
        .get("hostPath")
        .and_then(|source| source.get("path"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Volume {
        name,
        kind,
        host_path,
    }
}

impl KubeContainer {
    fn into_container(self, kind: ContainerKind, index: usize) -> Container {
        let context = self.security_context.unwrap_or_default();
        let capabilities = context.capabilities.unwrap_or_default();
        let mut handler_hosts = Vec::new();
        let lifecycle = self.lifecycle.as_ref();
        for (name, handler) in [
            ("livenessProbe", self.liveness_probe.as_ref()),
            ("readinessProbe", self.readiness_probe.as_ref()),
            ("startupProbe", self.startup_probe.as_ref()),
            (
                "lifecycle.postStart",
                lifecycle.and_then(|lifecycle| lifecycle.post_start.as_ref()),
            ),
            (
                "lifecycle.preStop",
                lifecycle.and_then(|lifecycle| lifecycle.pre_stop.as_ref()),
            ),
        ] {
            if let Some(handler) = handler {
                handler.collect_hosts(name, &mut handler_hosts);
            }
        }
        Container {
            name: self.name,
            kind,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            image: self.image,
            security_context: SecurityContext {
                privileged: context.privileged,
                allow_privilege_escalation: context.allow_privilege_escalation,
                capabilities: Capabilities {
                    add: capabilities.add,
                    drop: capabilities.drop,
                },
                run_as_user: context.run_as_user,
                run_as_group: context.run_as_group,
                run_as_non_root: context.run_as_non_root,
                read_only_root_filesystem: context.read_only_root_filesystem,
                seccomp_profile: context.seccomp_profile.map(Into::into),
                app_armor_profile: context.app_armor_profile.map(Into::into),
                se_linux_options: context.se_linux_options.map(Into::into),
                proc_mount: context.proc_mount,
                windows_host_process: context
                    .windows_options
                    .and_then(|options| options.host_process),
            },
            ports: self
                .ports
                .into_iter()
                .map(|port| Port {
                    container_port: port.container_port,
                    host_port: port.host_port,
                    host_ip: port.host_ip,
                    protocol: if port.protocol.is_empty() {
                        "TCP".into()
                    } else {
                        port.protocol
                    },
                })
                .collect(),
            volume_mounts: self
                .volume_mounts
                .into_iter()
                .map(|mount| VolumeMount {
                    name: mount.name,
                    mount_path: mount.mount_path,
                    read_only: mount.read_only,
                })
                .collect(),
            devices: Vec::new(),
            handler_hosts,
        }
    }
}

impl Handler {
    fn collect_hosts(&self, name: &str, hosts: &mut Vec<HandlerHost>) {
        for (action, target) in [("httpGet", &self.http_get), ("tcpSocket", &self.tcp_socket)] {
            if let Some(host) = target
                .as_ref()
                .and_then(|target| target.host.as_ref())
                .filter(|host| !host.is_empty())
            {
                hosts.push(HandlerHost {
                    handler: format!("{name}.{action}"),
                    host: host.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvk(group: &str, kind: &str) -> GroupVersionKind {
        GroupVersionKind {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
        }
    }

    fn workload(group: &str, kind: &str, object: serde_json::Value) -> Workload {
        normalize(&gvk(group, kind), &object.to_string())
            .expect("valid object")
            .expect("a workload")
    }

    #[test]
    fn a_pod_is_normalized_with_every_container_kind() {
        let pod = workload(
            "",
            "Pod",
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "annotations": {"a": "b"}, "labels": null},
                "spec": {
                    "hostNetwork": true,
                    "hostPID": null,
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"},
                                        "sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}]},
                    "initContainers": [{"name": "init", "image": "busybox"}],
                    "containers": [{
                        "name": "app", "image": "nginx:1.27",
                        "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"], "drop": null},
                                            "seLinuxOptions": {"type": "spc_t"}, "procMount": "Unmasked",
                                            "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-nginx"}},
                        "ports": [{"containerPort": 80, "hostPort": 8080}],
                        "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}},
                        "lifecycle": {"preStop": {"tcpSocket": {"host": "", "port": 1}}},
                        "volumeMounts": [{"name": "root", "mountPath": "/host", "readOnly": true}]
                    }],
                    "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
                    "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "tmp", "emptyDir": {}},
                                {"name": "odd", "secret": null}]
                }
            }),
        );
        assert_eq!(pod.template_path.as_deref(), Some(""));
        assert!(pod.host_network && !pod.host_pid);
        assert_eq!(pod.annotations, [("a".to_string(), "b".to_string())]);
        assert_eq!(
            pod.security_context.seccomp_profile,
            Some(SecurityProfile::RuntimeDefault)
        );
        assert_eq!(
            pod.security_context.sysctls[0].name,
            "kernel.shm_rmid_forced"
        );
        let kinds: Vec<_> = pod
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.kind, c.index))
            .collect();
        assert_eq!(
            kinds,
            [
                ("init", ContainerKind::Init, 0),
                ("app", ContainerKind::Regular, 0),
                ("debug", ContainerKind::Ephemeral, 0)
            ]
        );
        let app = &pod.containers[1];
        assert_eq!(app.security_context.privileged, Some(true));
        assert_eq!(app.security_context.capabilities.add, ["NET_ADMIN"]);
        assert_eq!(
            app.security_context
                .se_linux_options
                .as_ref()
                .map(|o| o.type_.as_str()),
            Some("spc_t")
        );
        assert_eq!(app.security_context.proc_mount.as_deref(), Some("Unmasked"));
        assert_eq!(
            app.security_context.app_armor_profile,
            Some(SecurityProfile::Localhost("k8s-nginx".into()))
        );
        assert_eq!(app.ports[0].host_port, 8080);
        assert_eq!(app.ports[0].protocol, "TCP");
        assert_eq!(
            app.handler_hosts,
            [HandlerHost {
                handler: "livenessProbe.httpGet".into(),
                host: "10.0.0.1".into()
            }]
        );
        let volumes: Vec<_> = pod
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.kind.as_str(), v.host_path.as_deref()))
            .collect();
        assert_eq!(
            volumes,
            [
                ("root", "hostPath", Some("/")),
                ("tmp", "emptyDir", None),
                ("odd", "", None)
            ]
        );
    }

    #[test]
    fn controllers_are_normalized_through_their_template() {
        let template = serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
        });
        for (group, kind) in [
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("extensions", "Deployment"),
            ("batch", "Job"),
            ("", "ReplicationController"),
        ] {
            let workload = workload(
                group,
                kind,
                serde_json::json!({"spec": {"template": template}}),
            );
            assert_eq!(
                workload.template_path.as_deref(),
                Some("/spec/template"),
                "{kind}"
            );
            assert_eq!(workload.containers[0].image, "nginx", "{kind}");
            assert_eq!(
                workload.labels,
                [("app".to_string(), "web".to_string())],
                "{kind}"
            );
        }
        let cronjob = workload(
            "batch",
            "CronJob",
            serde_json::json!({"spec": {"jobTemplate": {"spec": {"template": template}}}}),
        );
        assert_eq!(
            cronjob.template_path.as_deref(),
            Some("/spec/jobTemplate/spec/template")
        );
        assert_eq!(cronjob.containers[0].name, "app");
    }

    #[test]
    fn other_kinds_and_missing_templates_have_no_workload() {
        assert_eq!(normalize(&gvk("", "Service"), "{}"), Ok(None));
        assert_eq!(normalize(&gvk("example.com", "Deployment"), "{}"), Ok(None));
        assert_eq!(
            normalize(&gvk("", "ReplicationController"), r#"{"spec": {}}"#),
            Ok(None)
        );
    }

    #[test]
    fn the_wrong_shape_is_reported_with_the_field_path() {
        let error = normalize(
            &gvk("apps", "Deployment"),
            r#"{"spec": {"template": {"spec": {"containers": [{"name": "a", "securityContext": {"privileged": "yes"}}]}}}}"#,
        )
        .expect_err("a string is not a boolean");
        assert_eq!(
            error.path,
            "spec.template.spec.containers[0].securityContext.privileged"
        );
        assert!(error.message.contains("expected a boolean"), "{error}");
        let error = normalize(
            &gvk("", "Pod"),
            r#"{"spec": {"containers": [{"ports": [{"containerPort": 70000}]}]}}"#,
        )
        .expect_err("out of range");
        assert_eq!(error.path, "spec.containers[0].ports[0].containerPort");
        let error = normalize(&gvk("", "Pod"), "[1, 2]").expect_err("not an object");
        assert_eq!(error.path, "");
    }

    #[test]
    fn plural_resource_names() {
        for (kind, resource) in [
            ("Pod", "pods"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
            ("ConfigMap", "configmaps"),
        ] {
            assert_eq!(resource_for(kind), resource);
        }
    }
}
