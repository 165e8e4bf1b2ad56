//! Behaviour as a person sees it: verdicts and messages for whole requests.

use portcullis_policy_sdk::types::{
    Container, ContainerKind, GroupVersionKind, HandlerHost, Operation, Origin, Port, Request,
    SeLinuxOptions, SecurityProfile, Sysctl, Volume, Workload,
};
use portcullis_policy_sdk::{Policy, Verdict};

use crate::{Level, PodSecurity, Settings, Version};

// ---- builders ----------------------------------------------------------

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: "registry.k8s.io/pause".into(),
        ..Default::default()
    }
}

/// A container that passes restricted on its own.
fn hardened(name: &str) -> Container {
    let mut c = container(name);
    c.security_context.allow_privilege_escalation = Some(false);
    c.security_context.capabilities.drop = vec!["ALL".into()];
    c.security_context.run_as_non_root = Some(true);
    c.security_context.seccomp_profile = Some(SecurityProfile::RuntimeDefault);
    c
}

fn pod(containers: Vec<Container>) -> Workload {
    Workload {
        template_path: Some(String::new()),
        containers,
        ..Default::default()
    }
}

/// The upstream fixtures' base pod: one init and one regular container.
fn base() -> Workload {
    let mut init = container("initcontainer1");
    init.kind = ContainerKind::Init;
    pod(vec![init, container("container1")])
}

/// The upstream fixtures' restricted base pod.
fn restricted_base() -> Workload {
    let mut init = hardened("initcontainer1");
    init.kind = ContainerKind::Init;
    pod(vec![init, hardened("container1")])
}

fn request(operation: Operation, origin: Origin, workload: Option<Workload>) -> Request {
    Request {
        uid: "uid".into(),
        origin,
        operation,
        kind: GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
        },
        resource: "pods".into(),
        namespace: Some("default".into()),
        name: Some("pod".into()),
        workload,
        ..Default::default()
    }
}

fn settings(level: Level, version: Version) -> Settings {
    Settings {
        level,
        version,
        exclude: Vec::new(),
    }
}

fn run(level: Level, version: Version, workload: Workload) -> Verdict {
    PodSecurity::validate(
        &request(Operation::Create, Origin::Kubernetes, Some(workload)),
        &settings(level, version),
    )
}

fn baseline(minor: u32, workload: Workload) -> Verdict {
    run(Level::Baseline, Version::Minor(minor), workload)
}

fn restricted(minor: u32, workload: Workload) -> Verdict {
    run(Level::Restricted, Version::Minor(minor), workload)
}

fn docker(level: Level, workload: Workload) -> Verdict {
    let mut workload = workload;
    workload.template_path = None;
    PodSecurity::validate(
        &request(Operation::Create, Origin::Docker, Some(workload)),
        &settings(level, Version::Latest),
    )
}

/// The `controls` annotation, split: which controls denied.
fn controls(verdict: &Verdict) -> Vec<String> {
    let wit: portcullis_policy_sdk::__private::WitVerdict = verdict.clone().into();
    wit.annotations
        .iter()
        .find(|(k, _)| k == "controls")
        .map(|(_, v)| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn annotation(verdict: &Verdict, key: &str) -> Option<String> {
    let wit: portcullis_policy_sdk::__private::WitVerdict = verdict.clone().into();
    wit.annotations
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Asserts the verdict denies for exactly `expected` controls.
#[track_caller]
fn assert_denied_for(verdict: &Verdict, expected: &[&str]) {
    assert!(!verdict.is_allowed(), "expected a denial for {expected:?}");
    assert_eq!(controls(verdict), expected, "{:?}", verdict.message());
}

#[track_caller]
fn assert_allowed(verdict: &Verdict) {
    assert!(verdict.is_allowed(), "{:?}", verdict.message());
}

/// The detail of one control in the message.
#[track_caller]
fn detail(verdict: &Verdict, control: &str) -> String {
    let message = verdict.message().unwrap_or_default();
    let start = message
        .find(&format!(" {control} ("))
        .map(|i| i + control.len() + 3);
    let Some(start) = start else {
        panic!("{control} not in {message}");
    };
    // Details never contain "); <next control> (", and the last one ends
    // the message with ")".
    let rest = &message[start..];
    let end = rest.find("); ").unwrap_or(rest.len() - 1);
    rest[..end].to_owned()
}

fn sysctl(name: &str) -> Sysctl {
    Sysctl {
        name: name.into(),
        value: "1".into(),
    }
}

fn volume(name: &str, kind: &str) -> Volume {
    Volume {
        name: name.into(),
        kind: kind.into(),
        host_path: (kind == "hostPath").then(|| format!("/host/{name}")),
    }
}

fn se_linux(type_: &str) -> SeLinuxOptions {
    SeLinuxOptions {
        user: String::new(),
        role: String::new(),
        type_: type_.into(),
        level: String::new(),
    }
}

fn port(host_port: u16) -> Port {
    Port {
        container_port: 80,
        host_port,
        host_ip: String::new(),
        protocol: "TCP".into(),
    }
}

// ---- message format ------------------------------------------------------

#[test]
fn denial_names_level_version_and_every_control_in_order() {
    let mut w = pod(vec![container("nginx")]);
    w.host_network = true;
    w.containers[0].security_context.privileged = Some(true);
    let verdict = run(Level::Baseline, Version::Latest, w);
    // hostNamespaces sorts before privileged in upstream's order.
    assert_eq!(
        verdict.message(),
        Some(
            r#"violates PodSecurity "baseline:latest": hostNamespaces (hostNetwork=true); privileged (container "nginx" must not set securityContext.privileged=true)"#
        )
    );
    assert_eq!(
        annotation(&verdict, "controls").as_deref(),
        Some("hostNamespaces,privileged")
    );
}

#[test]
fn restricted_reports_baseline_controls_before_restricted_ones() {
    let mut w = pod(vec![container("app")]);
    w.containers[0].security_context.privileged = Some(true);
    let verdict = run(Level::Restricted, Version::Minor(30), w);
    assert_eq!(
        verdict.message(),
        Some(concat!(
            r#"violates PodSecurity "restricted:v1.30": "#,
            r#"privileged (container "app" must not set securityContext.privileged=true); "#,
            r#"allowPrivilegeEscalation (container "app" must set securityContext.allowPrivilegeEscalation=false); "#,
            r#"capabilities_restricted (container "app" must set securityContext.capabilities.drop=["ALL"]); "#,
            r#"runAsNonRoot (pod or container "app" must set securityContext.runAsNonRoot=true); "#,
            r#"seccompProfile_restricted (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        ))
    );
}

#[test]
fn every_verdict_records_level_and_version() {
    let allowed = run(Level::Restricted, Version::Minor(25), restricted_base());
    assert_allowed(&allowed);
    assert_eq!(annotation(&allowed, "level").as_deref(), Some("restricted"));
    assert_eq!(annotation(&allowed, "version").as_deref(), Some("v1.25"));
    assert_eq!(annotation(&allowed, "controls"), None);

    let mut w = base();
    w.host_pid = true;
    let denied = run(Level::Baseline, Version::Latest, w);
    assert_eq!(annotation(&denied, "level").as_deref(), Some("baseline"));
    // The version the rules came from, which `latest` only implies.
    assert_eq!(annotation(&denied, "version").as_deref(), Some("v1.37"));
}

#[test]
fn versions_newer_than_known_evaluate_as_latest_but_read_as_configured() {
    let mut w = restricted_base();
    w.security_context
        .sysctls
        .push(sysctl("net.ipv4.tcp_notsent_lowat"));
    assert_allowed(&restricted(99, w.clone()));
    w.security_context.sysctls.push(sysctl("kernel.msgmax"));
    let verdict = restricted(99, w);
    assert_eq!(annotation(&verdict, "version").as_deref(), Some("v1.37"));
    assert!(
        verdict
            .message()
            .is_some_and(|m| m.starts_with(r#"violates PodSecurity "restricted:v1.99": sysctls ("#)),
        "{:?}",
        verdict.message()
    );
}

// ---- requests that are not judged ---------------------------------------

#[test]
fn requests_without_a_workload_are_allowed() {
    let verdict = PodSecurity::validate(
        &request(Operation::Create, Origin::Kubernetes, None),
        &Settings::default(),
    );
    assert_allowed(&verdict);
}

#[test]
fn deletes_and_connects_are_allowed() {
    let mut w = base();
    w.containers[1].security_context.privileged = Some(true);
    for operation in [Operation::Delete, Operation::Connect] {
        let verdict = PodSecurity::validate(
            &request(operation, Origin::Kubernetes, Some(w.clone())),
            &Settings::default(),
        );
        assert_allowed(&verdict);
    }
}

#[test]
fn privileged_level_allows_anything() {
    let mut w = base();
    w.host_network = true;
    w.containers[1].security_context.privileged = Some(true);
    w.volumes.push(volume("root", "hostPath"));
    let verdict = run(Level::Privileged, Version::Latest, w);
    assert_allowed(&verdict);
    assert_eq!(annotation(&verdict, "level").as_deref(), Some("privileged"));
}

// ---- updates ----------------------------------------------------------

const OLD_DEPLOYMENT: &str = r#"{"spec": {"replicas": 1, "template": {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"hostNetwork": true, "containers": [{"name": "web", "image": "nginx"}]}}}}"#;

fn update(object: &str) -> Verdict {
    let mut w = pod(vec![container("web")]);
    w.template_path = Some("/spec/template".into());
    w.host_network = true;
    let mut request = request(Operation::Update, Origin::Kubernetes, Some(w));
    request.object = Some(object.into());
    request.old_object = Some(OLD_DEPLOYMENT.into());
    PodSecurity::validate(&request, &Settings::default())
}

#[test]
fn updates_that_leave_the_pod_spec_alone_are_allowed() {
    // Scaling a deployment admitted before the policy must keep working.
    assert_allowed(&update(
        &OLD_DEPLOYMENT.replace(r#""replicas": 1"#, r#""replicas": 5"#),
    ));
}

#[test]
fn updates_that_change_the_pod_spec_are_judged() {
    let verdict = update(&OLD_DEPLOYMENT.replace(r#""image": "nginx""#, r#""image": "nginx:2""#));
    assert_denied_for(&verdict, &["hostNamespaces"]);
}

#[test]
fn updates_that_change_a_checked_annotation_are_judged() {
    let verdict = update(&OLD_DEPLOYMENT.replace(
        r#""labels": {"app": "web"}"#,
        r#""annotations": {"container.apparmor.security.beta.kubernetes.io/web": "runtime/default"}"#,
    ));
    assert_denied_for(&verdict, &["hostNamespaces"]);
}

#[test]
fn updates_without_the_old_object_are_judged() {
    let mut w = base();
    w.host_ipc = true;
    let mut request = request(Operation::Update, Origin::Kubernetes, Some(w));
    request.object = Some("{}".into());
    let verdict = PodSecurity::validate(&request, &Settings::default());
    assert_denied_for(&verdict, &["hostNamespaces"]);
}

// ---- baseline controls ---------------------------------------------------

#[test]
fn base_pods_pass_every_level_and_version() {
    for minor in 0..=37 {
        assert_allowed(&baseline(minor, base()));
        assert_allowed(&restricted(minor, restricted_base()));
    }
}

#[test]
fn privileged_containers_are_denied() {
    let mut w = base();
    w.containers[0].security_context.privileged = Some(true);
    w.containers[1].security_context.privileged = Some(true);
    let verdict = baseline(0, w.clone());
    assert_denied_for(&verdict, &["privileged"]);
    assert_eq!(
        detail(&verdict, "privileged"),
        r#"containers "initcontainer1", "container1" must not set securityContext.privileged=true"#
    );
    w.containers[0].security_context.privileged = Some(false);
    w.containers[1].security_context.privileged = Some(false);
    assert_allowed(&baseline(37, w));
}

#[test]
fn containers_are_listed_init_regular_ephemeral_whatever_the_input_order() {
    let mut debug = container("debugger");
    debug.kind = ContainerKind::Ephemeral;
    let mut w = base();
    w.containers.insert(0, debug);
    for c in &mut w.containers {
        c.security_context.privileged = Some(true);
    }
    assert_eq!(
        detail(&baseline(37, w), "privileged"),
        r#"containers "initcontainer1", "container1", "debugger" must not set securityContext.privileged=true"#
    );
}

#[test]
fn host_namespaces_are_denied() {
    let mut w = base();
    w.host_network = true;
    w.host_pid = true;
    w.host_ipc = true;
    let verdict = baseline(0, w);
    assert_denied_for(&verdict, &["hostNamespaces"]);
    assert_eq!(
        detail(&verdict, "hostNamespaces"),
        "hostNetwork=true, hostPID=true, hostIPC=true"
    );
}

#[test]
fn only_default_capabilities_may_be_added_at_baseline() {
    let mut w = base();
    w.containers[1].security_context.capabilities.add = vec![
        "CHOWN".into(),
        "NET_BIND_SERVICE".into(),
        "SYS_CHROOT".into(),
    ];
    assert_allowed(&baseline(37, w.clone()));
    w.containers[1].security_context.capabilities.add =
        vec!["SYS_ADMIN".into(), "NET_RAW".into(), "CHOWN".into()];
    let verdict = baseline(37, w);
    assert_denied_for(&verdict, &["capabilities_baseline"]);
    assert_eq!(
        detail(&verdict, "capabilities_baseline"),
        r#"container "container1" must not include "NET_RAW", "SYS_ADMIN" in securityContext.capabilities.add"#
    );
}

#[test]
fn host_path_volumes_are_denied_at_baseline() {
    let mut w = base();
    w.volumes = vec![
        volume("data", "emptyDir"),
        volume("root", "hostPath"),
        volume("logs", "hostPath"),
        volume("share", "nfs"),
    ];
    w.containers[0]
        .volume_mounts
        .push(portcullis_policy_sdk::types::VolumeMount {
            name: "root".into(),
            mount_path: "/host".into(),
            read_only: true,
        });
    let verdict = baseline(0, w);
    assert_denied_for(&verdict, &["hostPathVolumes"]);
    // The containers that mount them are named too: that is what to change.
    assert_eq!(
        detail(&verdict, "hostPathVolumes"),
        r#"volumes "root", "logs" mounted by container "initcontainer1""#
    );
}

#[test]
fn host_ports_are_denied() {
    let mut w = base();
    w.containers[0].ports = vec![port(8080), port(0)];
    w.containers[1].ports = vec![port(10000), port(8080)];
    let verdict = baseline(0, w);
    assert_denied_for(&verdict, &["hostPorts"]);
    // Sorted as strings, as upstream does.
    assert_eq!(
        detail(&verdict, "hostPorts"),
        r#"containers "initcontainer1", "container1" use hostPorts 10000, 8080"#
    );
    let mut one = base();
    one.containers[1].ports = vec![port(9000)];
    assert_eq!(
        detail(&baseline(0, one), "hostPorts"),
        r#"container "container1" uses hostPort 9000"#
    );
}

#[test]
fn probe_and_lifecycle_hosts_are_denied_from_1_34() {
    let mut w = base();
    w.containers[1].handler_hosts = vec![
        HandlerHost {
            handler: "livenessProbe.httpGet".into(),
            host: "bad.host".into(),
        },
        HandlerHost {
            handler: "lifecycle.preStop.tcpSocket".into(),
            host: "8.8.8.8".into(),
        },
    ];
    assert_allowed(&baseline(33, w.clone()));
    let verdict = baseline(34, w);
    assert_denied_for(&verdict, &["hostProbesAndHostLifecycle"]);
    assert_eq!(
        detail(&verdict, "hostProbesAndHostLifecycle"),
        r#"container "container1" uses probe or lifecycle hosts "8.8.8.8", "bad.host""#
    );
}

#[test]
fn app_armor_may_not_be_unconfined_by_field_or_annotation() {
    let mut w = base();
    w.security_context.app_armor_profile = Some(SecurityProfile::Unconfined);
    w.containers[1].security_context.app_armor_profile =
        Some(SecurityProfile::Other("Bogus".into()));
    w.annotations = vec![(
        "container.apparmor.security.beta.kubernetes.io/container1".into(),
        "unconfined".into(),
    )];
    let verdict = baseline(0, w);
    assert_denied_for(&verdict, &["appArmorProfile"]);
    assert_eq!(
        detail(&verdict, "appArmorProfile"),
        r#"pod and container "container1" and annotation must not set AppArmor profile type to "Bogus", "Unconfined", "container.apparmor.security.beta.kubernetes.io/container1="unconfined"""#
    );
}

#[test]
fn app_armor_default_node_and_empty_profiles_are_allowed() {
    let mut w = base();
    w.security_context.app_armor_profile = Some(SecurityProfile::RuntimeDefault);
    w.containers[1].security_context.app_armor_profile =
        Some(SecurityProfile::Localhost("custom".into()));
    w.annotations = vec![
        (
            "container.apparmor.security.beta.kubernetes.io/container1".into(),
            "localhost/custom".into(),
        ),
        (
            "container.apparmor.security.beta.kubernetes.io/initcontainer1".into(),
            String::new(),
        ),
    ];
    assert_allowed(&baseline(37, w));
}

#[test]
fn selinux_type_user_and_role_are_restricted() {
    let mut w = base();
    let mut opts = se_linux("spc_t");
    opts.user = "system_u".into();
    w.security_context.se_linux_options = Some(opts);
    let mut role = se_linux("container_t");
    role.role = "system_r".into();
    w.containers[1].security_context.se_linux_options = Some(role);
    let verdict = baseline(0, w);
    assert_denied_for(&verdict, &["seLinuxOptions"]);
    assert_eq!(
        detail(&verdict, "seLinuxOptions"),
        r#"pod and container "container1" set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set; role may not be set"#
    );
}

#[test]
fn selinux_container_engine_t_is_allowed_from_1_31() {
    let mut w = base();
    w.containers[1].security_context.se_linux_options = Some(se_linux("container_engine_t"));
    assert_denied_for(&baseline(30, w.clone()), &["seLinuxOptions"]);
    assert_allowed(&baseline(31, w));
    let mut ok = base();
    ok.security_context.se_linux_options = Some(se_linux(""));
    ok.containers[1].security_context.se_linux_options = Some(se_linux("container_kvm_t"));
    assert_allowed(&baseline(0, ok));
}

#[test]
fn unmasked_proc_is_denied_unless_in_a_user_namespace_from_1_35() {
    let mut w = base();
    w.containers[1].security_context.proc_mount = Some("Unmasked".into());
    let verdict = baseline(34, w.clone());
    assert_denied_for(&verdict, &["procMount"]);
    assert_eq!(
        detail(&verdict, "procMount"),
        r#"container "container1" must not set securityContext.procMount to "Unmasked""#
    );
    w.host_users = Some(false);
    assert_denied_for(&baseline(34, w.clone()), &["procMount"]);
    assert_allowed(&baseline(35, w));
    let mut default = base();
    default.containers[1].security_context.proc_mount = Some("Default".into());
    assert_allowed(&baseline(0, default));
}

#[test]
fn seccomp_annotations_are_checked_until_1_19() {
    let mut w = base();
    w.annotations = vec![
        (
            "seccomp.security.alpha.kubernetes.io/pod".into(),
            "unconfined".into(),
        ),
        (
            "container.seccomp.security.alpha.kubernetes.io/container1".into(),
            String::new(),
        ),
        (
            "container.seccomp.security.alpha.kubernetes.io/initcontainer1".into(),
            "docker/default".into(),
        ),
    ];
    let verdict = baseline(18, w.clone());
    assert_denied_for(&verdict, &["seccompProfile_baseline"]);
    assert_eq!(
        detail(&verdict, "seccompProfile_baseline"),
        r#"forbidden annotations container.seccomp.security.alpha.kubernetes.io/container1="", seccomp.security.alpha.kubernetes.io/pod="unconfined""#
    );
    assert_allowed(&baseline(19, w));
}

#[test]
fn seccomp_fields_are_checked_from_1_19() {
    let mut w = base();
    w.containers[1].security_context.seccomp_profile = Some(SecurityProfile::Unconfined);
    assert_allowed(&baseline(18, w.clone()));
    let verdict = baseline(19, w);
    assert_denied_for(&verdict, &["seccompProfile_baseline"]);
    assert_eq!(
        detail(&verdict, "seccompProfile_baseline"),
        r#"container "container1" must not set securityContext.seccompProfile.type to "Unconfined""#
    );
}

#[test]
fn sysctls_allow_lists_grow_at_each_boundary() {
    for (name, first) in [
        ("kernel.shm_rmid_forced", 0),
        ("net.ipv4.ip_local_reserved_ports", 27),
        ("net.ipv4.tcp_keepalive_time", 29),
        ("net.ipv4.tcp_fin_timeout", 29),
        ("net.ipv4.tcp_keepalive_intvl", 29),
        ("net.ipv4.tcp_keepalive_probes", 29),
        ("net.ipv4.tcp_rmem", 32),
        ("net.ipv4.tcp_wmem", 32),
        ("net.ipv4.tcp_slow_start_after_idle", 37),
        ("net.ipv4.tcp_notsent_lowat", 37),
    ] {
        let mut w = base();
        w.security_context.sysctls = vec![sysctl(name)];
        if first > 0 {
            let verdict = baseline(first - 1, w.clone());
            assert_denied_for(&verdict, &["sysctls"]);
            assert_eq!(
                detail(&verdict, "sysctls"),
                format!("forbidden securityContext.sysctls {name}")
            );
        }
        assert_allowed(&baseline(first, w.clone()));
        assert_allowed(&run(Level::Baseline, Version::Latest, w));
    }
}

#[test]
fn sysctls_are_listed_as_written() {
    let mut w = base();
    w.security_context.sysctls = vec![
        sysctl("kernel.sem"),
        sysctl("net.ipv4.tcp_syncookies"),
        sysctl("kernel.msgmax"),
    ];
    assert_eq!(
        detail(&baseline(37, w), "sysctls"),
        "forbidden securityContext.sysctls kernel.sem, kernel.msgmax"
    );
}

#[test]
fn windows_host_processes_are_denied() {
    let mut w = base();
    w.security_context.windows_host_process = Some(true);
    w.containers[0].security_context.windows_host_process = Some(true);
    w.containers[1].security_context.windows_host_process = Some(false);
    let verdict = baseline(0, w);
    assert_denied_for(&verdict, &["windowsHostProcess"]);
    assert_eq!(
        detail(&verdict, "windowsHostProcess"),
        r#"pod and container "initcontainer1" must not set securityContext.windowsOptions.hostProcess=true"#
    );
}

// ---- restricted controls -------------------------------------------------

#[test]
fn restricted_reports_the_restricted_capability_check_not_the_baseline_one() {
    let mut w = restricted_base();
    w.containers[1].security_context.capabilities.add = vec!["SYS_ADMIN".into()];
    assert_denied_for(&restricted(21, w.clone()), &["capabilities_baseline"]);
    let verdict = restricted(22, w);
    assert_denied_for(&verdict, &["capabilities_restricted"]);
    assert_eq!(
        detail(&verdict, "capabilities_restricted"),
        r#"container "container1" must not include "SYS_ADMIN" in securityContext.capabilities.add"#
    );
}

#[test]
fn restricted_capabilities_need_drop_all_and_allow_only_net_bind_service() {
    let mut w = restricted_base();
    w.containers[1].security_context.capabilities.add = vec!["NET_BIND_SERVICE".into()];
    assert_allowed(&restricted(37, w.clone()));
    w.containers[0].security_context.capabilities.drop = vec!["NET_RAW".into()];
    w.containers[1].security_context.capabilities.add = vec!["CHOWN".into()];
    let verdict = restricted(37, w);
    assert_denied_for(&verdict, &["capabilities_restricted"]);
    assert_eq!(
        detail(&verdict, "capabilities_restricted"),
        r#"container "initcontainer1" must set securityContext.capabilities.drop=["ALL"]; container "container1" must not include "CHOWN" in securityContext.capabilities.add"#
    );
}

#[test]
fn restricted_reports_restricted_volumes_not_host_path_volumes() {
    let mut w = restricted_base();
    w.volumes = vec![
        volume("root", "hostPath"),
        volume("share", "nfs"),
        volume("mystery", "someFutureSource"),
        volume("config", "configMap"),
    ];
    let verdict = restricted(0, w);
    assert_denied_for(&verdict, &["restrictedVolumes"]);
    assert_eq!(
        detail(&verdict, "restrictedVolumes"),
        r#"volumes "root", "share", "mystery" use restricted volume types "hostPath", "nfs", "unknown""#
    );
}

#[test]
fn volumes_without_a_source_are_the_empty_dir_kubernetes_makes_them() {
    let mut w = restricted_base();
    w.volumes = vec![volume("scratch", "")];
    assert_allowed(&restricted(37, w));
}

#[test]
fn restricted_allows_only_volume_sources_that_stay_off_the_node() {
    let mut w = restricted_base();
    w.volumes = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ]
    .into_iter()
    .map(|kind| volume(kind, kind))
    .collect();
    assert_allowed(&restricted(37, w));
}

#[test]
fn restricted_keeps_denying_unmasked_proc_in_user_namespaces() {
    let mut w = restricted_base();
    w.host_users = Some(false);
    w.containers[1].security_context.proc_mount = Some("Unmasked".into());
    assert_denied_for(&restricted(34, w.clone()), &["procMount"]);
    let verdict = restricted(35, w);
    assert_denied_for(&verdict, &["procMount_restricted"]);
    assert_eq!(
        detail(&verdict, "procMount_restricted"),
        r#"container "container1" must not set securityContext.procMount to "Unmasked""#
    );
}

#[test]
fn seccomp_must_be_set_at_restricted_on_the_pod_or_every_container() {
    let mut w = restricted_base();
    w.containers[0].security_context.seccomp_profile = None;
    let verdict = restricted(19, w.clone());
    assert_denied_for(&verdict, &["seccompProfile_restricted"]);
    assert_eq!(
        detail(&verdict, "seccompProfile_restricted"),
        r#"pod or container "initcontainer1" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#
    );
    // Before 1.19 restricted runs the baseline (annotation) check instead.
    assert_allowed(&restricted(18, w.clone()));
    w.security_context.seccomp_profile = Some(SecurityProfile::Localhost("p.json".into()));
    assert_allowed(&restricted(19, w.clone()));
    w.containers[1].security_context.seccomp_profile = Some(SecurityProfile::Unconfined);
    assert_eq!(
        detail(&restricted(37, w), "seccompProfile_restricted"),
        r#"container "container1" must not set securityContext.seccompProfile.type to "Unconfined""#
    );
}

#[test]
fn run_as_non_root_is_required_at_restricted() {
    let mut w = restricted_base();
    for c in &mut w.containers {
        c.security_context.run_as_non_root = None;
    }
    let verdict = restricted(0, w.clone());
    assert_denied_for(&verdict, &["runAsNonRoot"]);
    assert_eq!(
        detail(&verdict, "runAsNonRoot"),
        r#"pod or containers "initcontainer1", "container1" must set securityContext.runAsNonRoot=true"#
    );
    w.security_context.run_as_non_root = Some(true);
    assert_allowed(&restricted(0, w.clone()));
    w.containers[1].security_context.run_as_non_root = Some(false);
    assert_eq!(
        detail(&restricted(0, w), "runAsNonRoot"),
        r#"container "container1" must not set securityContext.runAsNonRoot=false"#
    );
}

#[test]
fn run_as_user_zero_is_denied_from_1_23() {
    let mut w = restricted_base();
    w.security_context.run_as_user = Some(0);
    w.containers[1].security_context.run_as_user = Some(0);
    assert_allowed(&restricted(22, w.clone()));
    let verdict = restricted(23, w);
    assert_denied_for(&verdict, &["runAsUser"]);
    assert_eq!(
        detail(&verdict, "runAsUser"),
        r#"pod and container "container1" must not set runAsUser=0"#
    );
}

#[test]
fn user_namespaces_relax_root_checks_from_1_35() {
    let mut w = restricted_base();
    w.host_users = Some(false);
    w.containers[1].security_context.run_as_non_root = Some(false);
    w.containers[1].security_context.run_as_user = Some(0);
    assert_denied_for(&restricted(34, w.clone()), &["runAsNonRoot", "runAsUser"]);
    assert_allowed(&restricted(35, w.clone()));
    // hostUsers: true (or unset) is the host's namespace: no relaxation.
    w.host_users = Some(true);
    assert_denied_for(&restricted(35, w), &["runAsNonRoot", "runAsUser"]);
}

#[test]
fn privilege_escalation_must_be_forbidden_from_1_8() {
    let mut w = restricted_base();
    w.containers[1].security_context.allow_privilege_escalation = None;
    w.containers[0].security_context.allow_privilege_escalation = Some(true);
    assert_allowed(&restricted(7, w.clone()));
    let verdict = restricted(8, w);
    assert_denied_for(&verdict, &["allowPrivilegeEscalation"]);
    assert_eq!(
        detail(&verdict, "allowPrivilegeEscalation"),
        r#"containers "initcontainer1", "container1" must set securityContext.allowPrivilegeEscalation=false"#
    );
}

#[test]
fn windows_pods_are_exempt_from_linux_only_controls_from_1_25() {
    let mut w = restricted_base();
    w.os = Some("windows".into());
    for c in &mut w.containers {
        c.security_context.allow_privilege_escalation = None;
        c.security_context.capabilities.drop.clear();
        c.security_context.seccomp_profile = None;
    }
    assert_denied_for(
        &restricted(24, w.clone()),
        &[
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "seccompProfile_restricted",
        ],
    );
    assert_allowed(&restricted(25, w.clone()));
    w.os = Some("linux".into());
    assert_denied_for(
        &restricted(25, w),
        &[
            "allowPrivilegeEscalation",
            "capabilities_restricted",
            "seccompProfile_restricted",
        ],
    );
}

// ---- settings through the SDK --------------------------------------------

#[test]
fn settings_errors_reach_the_operator() {
    use portcullis_policy_sdk::__private::validate_settings;
    assert_eq!(validate_settings::<PodSecurity>("{}"), Ok(()));
    assert_eq!(
        validate_settings::<PodSecurity>(r#"{"level": "restricted", "version": "v1.29"}"#),
        Ok(())
    );
    for (json, expected) in [
        (
            r#"{"version": "1.30"}"#,
            r#"invalid value "1.30" for setting "version""#,
        ),
        (
            r#"{"version": "v2.0"}"#,
            r#"invalid value "v2.0" for setting "version""#,
        ),
        (
            r#"{"version": "vx"}"#,
            r#"invalid value "vx" for setting "version""#,
        ),
        (
            r#"{"level": "strict"}"#,
            r#"invalid value "strict" for setting "level""#,
        ),
        (r#"{"mode": "enforce"}"#, "unknown field `mode`"),
    ] {
        let error = validate_settings::<PodSecurity>(json).expect_err(json);
        assert!(error.contains(expected), "{json}: {error}");
    }
}

// ---- Docker -------------------------------------------------------------

/// A container as the gateway normalizes `docker run IMAGE`: the engine's
/// default seccomp and AppArmor profiles, nothing else.
fn docker_run() -> Workload {
    let mut c = container("web");
    c.security_context.seccomp_profile = Some(SecurityProfile::RuntimeDefault);
    c.security_context.app_armor_profile = Some(SecurityProfile::RuntimeDefault);
    pod(vec![c])
}

#[test]
fn plain_docker_run_passes_baseline_but_not_restricted() {
    assert_allowed(&docker(Level::Baseline, docker_run()));
    let verdict = docker(Level::Restricted, docker_run());
    assert_eq!(
        verdict.message(),
        Some(concat!(
            r#"violates PodSecurity "restricted:latest": "#,
            r#"allowPrivilegeEscalation (container "web" must set HostConfig.SecurityOpt no-new-privileges); "#,
            r#"capabilities_restricted (container "web" must set HostConfig.CapDrop=["ALL"]); "#,
            r#"runAsNonRoot (container "web" must set User to a non-zero numeric uid)"#,
        ))
    );
}

#[test]
fn docker_denials_name_docker_fields() {
    let mut w = docker_run();
    w.host_network = true;
    w.host_pid = true;
    w.host_ipc = true;
    w.volumes = vec![volume("sock", "hostPath")];
    w.security_context.sysctls = vec![sysctl("kernel.msgmax")];
    let c = &mut w.containers[0];
    c.security_context.privileged = Some(true);
    c.security_context.capabilities.add = vec!["SYS_ADMIN".into()];
    c.security_context.seccomp_profile = Some(SecurityProfile::Unconfined);
    c.security_context.app_armor_profile = Some(SecurityProfile::Unconfined);
    c.security_context.se_linux_options = Some(se_linux("spc_t"));
    c.security_context.proc_mount = Some("Unmasked".into());
    c.ports = vec![port(8080)];
    let verdict = docker(Level::Baseline, w);
    assert_eq!(
        verdict.message(),
        Some(concat!(
            r#"violates PodSecurity "baseline:latest": "#,
            r#"appArmorProfile (container "web" must not set HostConfig.SecurityOpt apparmor to "unconfined"); "#,
            r#"capabilities_baseline (container "web" must not include "SYS_ADMIN" in HostConfig.CapAdd); "#,
            r#"hostNamespaces (HostConfig.NetworkMode=host, HostConfig.PidMode=host, HostConfig.IpcMode=host); "#,
            r#"hostPathVolumes (HostConfig.Binds/Mounts host path "/host/sock"); "#,
            r#"hostPorts (container "web" uses HostConfig.PortBindings host port 8080); "#,
            r#"privileged (container "web" must not set HostConfig.Privileged=true); "#,
            r#"procMount (container "web" must not set HostConfig.SecurityOpt systempaths to "unconfined"); "#,
            r#"seLinuxOptions (container "web" set forbidden HostConfig.SecurityOpt label: type "spc_t"); "#,
            r#"seccompProfile_baseline (container "web" must not set HostConfig.SecurityOpt seccomp to "unconfined"); "#,
            r#"sysctls (forbidden HostConfig.Sysctls kernel.msgmax)"#,
        ))
    );
}

#[test]
fn docker_root_users_are_named_by_the_user_field() {
    let mut w = docker_run();
    let c = &mut w.containers[0];
    c.security_context.allow_privilege_escalation = Some(false);
    c.security_context.capabilities.drop = vec!["ALL".into()];
    c.security_context.run_as_user = Some(0);
    c.security_context.run_as_non_root = Some(false);
    let verdict = docker(Level::Restricted, w.clone());
    assert_denied_for(&verdict, &["runAsNonRoot", "runAsUser"]);
    assert_eq!(
        detail(&verdict, "runAsNonRoot"),
        r#"container "web" must not set User to root (uid 0)"#
    );
    assert_eq!(
        detail(&verdict, "runAsUser"),
        r#"container "web" must not set User=0"#
    );
    let c = &mut w.containers[0];
    c.security_context.run_as_user = Some(1000);
    c.security_context.run_as_non_root = Some(true);
    assert_allowed(&docker(Level::Restricted, w));
}

/// A `docker exec` as the gateway normalizes it: the process alone, with
/// the privilege and user it runs with, and none of the container's
/// profiles (which it inherits).
fn docker_exec(privileged: Option<bool>, uid: Option<i64>) -> Verdict {
    docker_exec_at(Level::Baseline, privileged, uid)
}

fn docker_exec_at(level: Level, privileged: Option<bool>, uid: Option<i64>) -> Verdict {
    let mut c = container("web");
    c.security_context.privileged = privileged;
    c.security_context.run_as_user = uid;
    c.security_context.run_as_non_root = uid.map(|uid| uid != 0);
    let mut w = pod(vec![c]);
    w.template_path = None;
    let mut exec = request(Operation::Connect, Origin::Docker, Some(w));
    exec.kind = GroupVersionKind {
        group: "docker".into(),
        version: "1.41".into(),
        kind: "Exec".into(),
    };
    PodSecurity::validate(&exec, &settings(level, Version::Latest))
}

#[test]
fn a_privileged_docker_exec_is_judged_as_a_privileged_container() {
    let privileged = docker_exec(Some(true), Some(1000));
    assert_denied_for(&privileged, &["privileged"]);
    assert_eq!(
        detail(&privileged, "privileged"),
        r#"container "web" must not set Privileged=true (exec --privileged)"#
    );
    assert_allowed(&docker_exec(None, Some(0)));
    // Restricted refuses an exec as root, or as a user that may be root;
    // the container's own profiles are not the exec's to fix.
    assert_denied_for(
        &docker_exec_at(Level::Restricted, None, Some(0)),
        &["runAsNonRoot", "runAsUser"],
    );
    assert_denied_for(
        &docker_exec_at(Level::Restricted, None, None),
        &["runAsNonRoot"],
    );
    assert_allowed(&docker_exec_at(Level::Restricted, None, Some(1000)));
}

#[test]
fn docker_inline_seccomp_profiles_are_not_quoted_in_full() {
    let mut w = docker_run();
    w.containers[0].security_context.seccomp_profile = Some(SecurityProfile::Other(
        r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#.into(),
    ));
    assert_eq!(
        detail(&docker(Level::Baseline, w), "seccompProfile_baseline"),
        r#"container "web" must not set HostConfig.SecurityOpt seccomp to "inline profile""#
    );
}

#[test]
fn excluded_controls_are_not_enforced() {
    let mut w = docker_run();
    w.containers[0].ports = vec![port(8080)];
    w.containers[0].security_context.privileged = Some(true);
    let excluding = Settings {
        exclude: vec!["hostPorts".into()],
        ..settings(Level::Baseline, Version::Latest)
    };
    let verdict = PodSecurity::validate(
        &request(Operation::Create, Origin::Docker, Some(w)),
        &excluding,
    );
    assert_denied_for(&verdict, &["privileged"]);
    assert_eq!(
        PodSecurity::validate_settings(&Settings {
            exclude: vec!["hostPort".into()],
            ..settings(Level::Baseline, Version::Latest)
        }),
        Err(r#"invalid value "hostPort" in setting "exclude": not a control of the Pod Security Standards (for example "hostPorts")"#.into())
    );
}
