//! Behaviour as a person sees it: verdicts and messages for whole requests.

use portcullis_policy_sdk::types::{
    Borrowed, BorrowedResource, Container, Device, GroupVersionKind, Operation, Origin, Request,
    Volume, VolumeMount, Workload,
};
use portcullis_policy_sdk::{Policy, Verdict};

use crate::{HostIsolation, HostPath, Settings};

// ---- builders ----------------------------------------------------------

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: "nginx:1.27".into(),
        ..Default::default()
    }
}

fn workload(containers: Vec<Container>) -> Workload {
    Workload {
        containers,
        ..Default::default()
    }
}

/// `docker run` of one container named `web`, as the gateway normalizes it.
fn web() -> Workload {
    workload(vec![container("web")])
}

fn device(host_path: &str) -> Device {
    Device {
        host_path: host_path.into(),
        container_path: host_path.into(),
        permissions: "rwm".into(),
    }
}

/// A `--device-cgroup-rule`, as the gateway reports it.
fn device_rule(rule: &str) -> Device {
    Device {
        host_path: String::new(),
        container_path: String::new(),
        permissions: rule.into(),
    }
}

fn borrowed(resource: BorrowedResource, from: &str) -> Borrowed {
    Borrowed {
        resource,
        container: from.into(),
    }
}

/// A Docker bind mount: the volume is named by its host path.
fn bind(workload: &mut Workload, host_path: &str, target: &str) {
    mount(workload, host_path, host_path, target);
}

/// A hostPath volume `name` at `host_path`, mounted by the first container.
fn mount(workload: &mut Workload, name: &str, host_path: &str, target: &str) {
    workload.volumes.push(Volume {
        name: name.into(),
        kind: "hostPath".into(),
        host_path: Some(host_path.into()),
    });
    if let Some(first) = workload.containers.first_mut() {
        first.volume_mounts.push(VolumeMount {
            name: name.into(),
            mount_path: target.into(),
            read_only: false,
        });
    }
}

fn request(
    origin: Origin,
    operation: Operation,
    kind: &str,
    workload: Option<Workload>,
) -> Request {
    let group = match origin {
        Origin::Docker => "docker",
        Origin::Kubernetes => "",
    };
    Request {
        uid: "uid".into(),
        origin,
        operation,
        kind: GroupVersionKind {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
        },
        workload,
        ..Default::default()
    }
}

fn docker_run(workload: Workload) -> Request {
    request(
        Origin::Docker,
        Operation::Create,
        "Container",
        Some(workload),
    )
}

fn kubernetes_pod(workload: Workload) -> Request {
    let mut workload = workload;
    workload.template_path = Some(String::new());
    request(Origin::Kubernetes, Operation::Create, "Pod", Some(workload))
}

/// `docker exec` into `web`, the exec process described by `configure`.
fn docker_exec(configure: impl FnOnce(&mut Container)) -> Request {
    let mut exec = container("web");
    configure(&mut exec);
    request(
        Origin::Docker,
        Operation::Connect,
        "Exec",
        Some(workload(vec![exec])),
    )
}

fn settings(json: &str) -> Settings {
    match serde_json::from_str(json) {
        Ok(settings) => settings,
        Err(error) => panic!("{json}: {error}"),
    }
}

fn judge(request: &Request) -> Verdict {
    HostIsolation::validate(request, &Settings::default())
}

fn judge_with(request: &Request, json: &str) -> Verdict {
    HostIsolation::validate(request, &settings(json))
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

/// Asserts the verdict denies for exactly `expected` controls.
#[track_caller]
fn assert_denied_for(verdict: &Verdict, expected: &[&str]) {
    assert!(!verdict.is_allowed(), "expected a denial for {expected:?}");
    assert_eq!(controls(verdict), expected, "{:?}", verdict.message());
}

#[track_caller]
fn assert_allowed(verdict: &Verdict) {
    assert!(verdict.is_allowed(), "{:?}", verdict.message());
    assert!(controls(verdict).is_empty());
}

/// The detail of one control in the message.
#[track_caller]
fn detail(verdict: &Verdict, control: &str) -> String {
    let message = verdict.message().unwrap_or_default();
    let Some(start) = message.find(&format!(" {control} (")) else {
        panic!("{control} not in {message}");
    };
    let rest = &message[start + control.len() + 3..];
    // Each detail ends where the next control starts, the last one at the
    // message's closing parenthesis.
    let end = rest.find("); ").unwrap_or(rest.len() - 1);
    rest[..end].to_owned()
}

// ---- what is judged -----------------------------------------------------

/// A workload that breaks every control but the exec ones.
fn everything_wrong() -> Workload {
    let mut w = web();
    w.containers[0].devices = vec![device("/dev/sda")];
    w.host_uts = true;
    w.borrowed = vec![
        borrowed(BorrowedResource::Pid, "db"),
        borrowed(BorrowedResource::Volumes, "db"),
    ];
    bind(&mut w, "/var/run/docker.sock", "/var/run/docker.sock");
    w
}

#[test]
fn requests_without_a_workload_are_allowed() {
    assert_allowed(&judge(&request(
        Origin::Docker,
        Operation::Create,
        "Image",
        None,
    )));
    assert_allowed(&judge(&request(
        Origin::Kubernetes,
        Operation::Create,
        "Service",
        None,
    )));
}

#[test]
fn deletes_are_allowed_whatever_they_delete() {
    let mut delete = docker_run(everything_wrong());
    delete.operation = Operation::Delete;
    assert_allowed(&judge(&delete));
}

#[test]
fn creates_updates_and_connects_are_judged() {
    for operation in [Operation::Create, Operation::Update, Operation::Connect] {
        let mut req = docker_run(everything_wrong());
        req.operation = operation;
        assert_denied_for(
            &judge(&req),
            &[
                "devices",
                "hostNamespaces",
                "borrowedNamespaces",
                "volumesFrom",
                "sensitivePaths",
            ],
        );
    }
}

#[test]
fn an_ordinary_container_or_pod_passes() {
    let mut w = web();
    mount(&mut w, "data", "/srv/data", "/data");
    w.volumes.push(Volume {
        name: "cache".into(),
        kind: "emptyDir".into(),
        host_path: None,
    });
    assert_allowed(&judge(&docker_run(w.clone())));
    assert_allowed(&judge(&kubernetes_pod(w)));
}

// ---- devices ------------------------------------------------------------

#[test]
fn host_devices_are_denied_naming_container_and_paths() {
    let mut w = web();
    w.containers[0].devices = vec![device("/dev/sda"), device("/dev/sdb")];
    let verdict = judge(&kubernetes_pod(w.clone()));
    assert_denied_for(&verdict, &["devices"]);
    assert_eq!(
        detail(&verdict, "devices"),
        r#"container "web" must not receive host devices "/dev/sda", "/dev/sdb""#
    );
    assert_eq!(
        detail(&judge(&docker_run(w)), "devices"),
        r#"container "web" must not use --device "/dev/sda", "/dev/sdb""#
    );
}

#[test]
fn allowed_devices_pass_by_exact_normalized_path() {
    let mut w = web();
    w.containers[0].devices = vec![device("/dev/dri/"), device("/dev//fuse")];
    let json = r#"{"allowed_devices": ["/dev/dri", "/dev/fuse/"]}"#;
    assert_allowed(&judge_with(&docker_run(w.clone()), json));

    // Allowing a directory does not allow what lies under it, nor does a
    // `..` make a path the allowed one.
    w.containers[0].devices = vec![device("/dev/dri/card0"), device("/dev/dri/../sda")];
    assert_eq!(
        detail(&judge_with(&docker_run(w), json), "devices"),
        r#"container "web" must not use --device "/dev/dri/card0", "/dev/dri/../sda""#
    );
}

#[test]
fn device_cgroup_rules_are_denied_unless_allowed() {
    let mut w = web();
    w.containers[0].devices = vec![device_rule("b 8:* rmw")];
    let verdict = judge(&docker_run(w.clone()));
    assert_denied_for(&verdict, &["devices"]);
    assert_eq!(
        detail(&verdict, "devices"),
        r#"container "web" must not use --device-cgroup-rule "b 8:* rmw""#
    );
    assert_allowed(&judge_with(
        &docker_run(w.clone()),
        r#"{"allow_device_rules": true}"#,
    ));

    // Allowing rules does not allow devices, nor the other way round.
    w.containers[0].devices.push(device("/dev/sda"));
    assert_eq!(
        detail(
            &judge_with(&docker_run(w.clone()), r#"{"allow_device_rules": true}"#),
            "devices"
        ),
        r#"container "web" must not use --device "/dev/sda""#
    );
    assert_eq!(
        detail(&judge(&docker_run(w.clone())), "devices"),
        r#"container "web" must not use --device "/dev/sda" or --device-cgroup-rule "b 8:* rmw""#
    );
    assert_eq!(
        detail(&judge(&kubernetes_pod(w)), "devices"),
        r#"container "web" must not receive host devices "/dev/sda" or device cgroup rules "b 8:* rmw""#
    );
}

#[test]
fn each_container_is_named_with_its_own_devices() {
    let mut w = workload(vec![
        container("app"),
        container("sidecar"),
        container("clean"),
    ]);
    w.containers[0].devices = vec![device("/dev/kvm")];
    w.containers[1].devices = vec![device("/dev/net/tun")];
    assert_eq!(
        detail(&judge(&kubernetes_pod(w)), "devices"),
        r#"container "app" must not receive host devices "/dev/kvm", container "sidecar" must not receive host devices "/dev/net/tun""#
    );
}

// ---- host namespaces ----------------------------------------------------

#[test]
fn host_uts_cgroup_and_user_namespaces_are_denied() {
    let mut w = web();
    w.host_uts = true;
    w.host_cgroup = true;
    w.host_users = Some(true);
    let verdict = judge(&docker_run(w.clone()));
    assert_denied_for(&verdict, &["hostNamespaces"]);
    assert_eq!(
        detail(&verdict, "hostNamespaces"),
        "--uts host, --cgroupns host (or the engine's default: run with --cgroupns private), --userns host"
    );
    assert_eq!(
        detail(&judge(&kubernetes_pod(w)), "hostNamespaces"),
        "host UTS namespace, host cgroup namespace, hostUsers=true"
    );

    for (set, expected) in [
        (0, "--uts host"),
        (
            1,
            "--cgroupns host (or the engine's default: run with --cgroupns private)",
        ),
        (2, "--userns host"),
    ] {
        let mut w = web();
        match set {
            0 => w.host_uts = true,
            1 => w.host_cgroup = true,
            _ => w.host_users = Some(true),
        }
        assert_eq!(detail(&judge(&docker_run(w)), "hostNamespaces"), expected);
    }
}

#[test]
fn the_default_and_a_private_user_namespace_pass() {
    for host_users in [None, Some(false)] {
        let mut w = web();
        w.host_users = host_users;
        assert_allowed(&judge(&kubernetes_pod(w)));
    }
}

#[test]
fn network_pid_and_ipc_are_left_to_pod_security() {
    let mut w = web();
    w.host_network = true;
    w.host_pid = true;
    w.host_ipc = true;
    assert_allowed(&judge(&docker_run(w.clone())));
    assert_allowed(&judge(&kubernetes_pod(w)));
}

// ---- borrowing ----------------------------------------------------------

#[test]
fn borrowed_namespaces_are_denied_naming_resource_and_container() {
    for (resource, docker, kubernetes) in [
        (
            BorrowedResource::Network,
            "--network container:db",
            r#"share the network namespace of container "db""#,
        ),
        (
            BorrowedResource::Pid,
            "--pid container:db",
            r#"share the pid namespace of container "db""#,
        ),
        (
            BorrowedResource::Ipc,
            "--ipc container:db",
            r#"share the ipc namespace of container "db""#,
        ),
    ] {
        let mut w = web();
        w.borrowed = vec![borrowed(resource, "db")];
        let verdict = judge(&docker_run(w.clone()));
        assert_denied_for(&verdict, &["borrowedNamespaces"]);
        assert_eq!(
            detail(&verdict, "borrowedNamespaces"),
            format!(r#"container "web" must not use {docker}"#)
        );
        assert_eq!(
            detail(&judge(&kubernetes_pod(w)), "borrowedNamespaces"),
            format!(r#"container "web" must not {kubernetes}"#)
        );
    }
}

#[test]
fn every_borrowed_namespace_is_listed() {
    let mut w = web();
    w.borrowed = vec![
        borrowed(BorrowedResource::Network, "proxy"),
        borrowed(BorrowedResource::Pid, "db"),
    ];
    assert_eq!(
        detail(&judge(&docker_run(w)), "borrowedNamespaces"),
        r#"container "web" must not use --network container:proxy, --pid container:db"#
    );
}

#[test]
fn volumes_from_is_denied_naming_the_container() {
    let mut w = web();
    w.borrowed = vec![borrowed(BorrowedResource::Volumes, "data")];
    let verdict = judge(&docker_run(w.clone()));
    assert_denied_for(&verdict, &["volumesFrom"]);
    assert_eq!(
        detail(&verdict, "volumesFrom"),
        r#"container "web" must not use --volumes-from data"#
    );
    assert_eq!(
        detail(&judge(&kubernetes_pod(w)), "volumesFrom"),
        r#"container "web" must not mount the volumes of container "data""#
    );
}

#[test]
fn allow_borrowing_allows_namespaces_and_volumes() {
    let mut w = web();
    w.borrowed = vec![
        borrowed(BorrowedResource::Network, "proxy"),
        borrowed(BorrowedResource::Pid, "db"),
        borrowed(BorrowedResource::Ipc, "db"),
        borrowed(BorrowedResource::Volumes, "data"),
    ];
    assert_denied_for(
        &judge(&docker_run(w.clone())),
        &["borrowedNamespaces", "volumesFrom"],
    );
    assert_allowed(&judge_with(&docker_run(w), r#"{"allow_borrowing": true}"#));
}

// ---- sensitive paths ----------------------------------------------------

/// The `sensitivePaths` detail for a Docker bind of `host_path`, if denied.
fn bind_detail(host_path: &str, json: &str) -> Option<String> {
    let mut w = web();
    bind(&mut w, host_path, "/host");
    let verdict = judge_with(&docker_run(w), json);
    if verdict.is_allowed() {
        return None;
    }
    assert_eq!(controls(&verdict), ["sensitivePaths"]);
    Some(detail(&verdict, "sensitivePaths"))
}

#[test]
fn sensitive_paths_are_denied_by_equality_descent_and_ancestry() {
    for (host_path, why) in [
        (
            "/var/run/docker.sock",
            r#"sensitive path "/var/run/docker.sock""#,
        ),
        ("/run/docker.sock", r#"sensitive path "/run/docker.sock""#),
        ("/etc/shadow", r#"under sensitive path "/etc""#),
        ("/proc/sys/kernel", r#"under sensitive path "/proc""#),
        (
            "/var/lib/docker/volumes",
            r#"under sensitive path "/var/lib/docker""#,
        ),
        ("/home/alice/.ssh", r#"under sensitive path "/home""#),
        // Mounting an ancestor exposes everything below it.
        ("/var", r#"contains sensitive path "/var/run/docker.sock""#),
        (
            "/var/run",
            r#"contains sensitive path "/var/run/docker.sock""#,
        ),
        ("/run", r#"contains sensitive path "/run/docker.sock""#),
        ("/var/lib", r#"contains sensitive path "/var/lib/docker""#),
        ("/", r#"sensitive path "/""#),
    ] {
        assert_eq!(
            bind_detail(host_path, "{}"),
            Some(format!(
                r#"container "web" must not mount host path "{host_path}" ({why})"#
            )),
            "{host_path}"
        );
    }
}

#[test]
fn ordinary_host_paths_pass() {
    for host_path in [
        "/srv/data",
        "/var/lib/app",
        "/var/log/app",
        "/tmp/cache",
        "/opt/app/config",
        // Prefixes of names are not ancestors.
        "/homework",
        "/etcetera",
        "/var/run/docker.sock.d",
        "/devices",
    ] {
        assert_eq!(bind_detail(host_path, "{}"), None, "{host_path}");
    }
}

#[test]
fn the_root_entry_counts_only_by_equality() {
    let json = r#"{"sensitive_paths": ["/"]}"#;
    assert_eq!(
        bind_detail("/", json).as_deref(),
        Some(r#"container "web" must not mount host path "/" (sensitive path "/")"#)
    );
    assert_eq!(
        bind_detail("//", json).as_deref(),
        Some(r#"container "web" must not mount host path "//" (sensitive path "/")"#)
    );
    assert_eq!(bind_detail("/srv/data", json), None);
    assert_eq!(bind_detail("/etc", json), None);
}

#[test]
fn spelling_tricks_resolve_to_the_sensitive_path() {
    for (host_path, why) in [
        (
            "/tmp/../var/run/docker.sock",
            r#"sensitive path "/var/run/docker.sock""#,
        ),
        (
            "/srv/app/../../etc/shadow",
            r#"under sensitive path "/etc""#,
        ),
        (
            "/var/run/docker.sock/",
            r#"sensitive path "/var/run/docker.sock""#,
        ),
        ("/etc/", r#"sensitive path "/etc""#),
        (
            "//var//run//docker.sock",
            r#"sensitive path "/var/run/docker.sock""#,
        ),
        ("/./proc/.", r#"sensitive path "/proc""#),
        ("/srv/..", r#"sensitive path "/""#),
        ("/../../..", r#"sensitive path "/""#),
        (
            "/var/lib/app/../../run",
            r#"contains sensitive path "/var/run/docker.sock""#,
        ),
    ] {
        assert_eq!(
            bind_detail(host_path, "{}"),
            Some(format!(
                r#"container "web" must not mount host path "{host_path}" ({why})"#
            )),
            "{host_path}"
        );
    }
}

#[test]
fn relative_host_paths_are_denied_whatever_the_list() {
    for json in ["{}", r#"{"sensitive_paths": []}"#] {
        for host_path in [
            "data",
            "./data",
            "../../var/run/docker.sock",
            "",
            r"\\.\pipe\docker_engine",
        ] {
            let expected = format!(
                "container \"web\" must not mount host path {host_path:?} (not an absolute path)"
            );
            assert_eq!(
                bind_detail(host_path, json),
                Some(expected),
                "{json} {host_path}"
            );
        }
    }
}

#[test]
fn the_setting_replaces_the_default_list() {
    let json = r#"{"sensitive_paths": ["/srv/secrets"]}"#;
    assert_eq!(bind_detail("/var/run/docker.sock", json), None);
    assert_eq!(
        bind_detail("/", json).as_deref(),
        Some(
            r#"container "web" must not mount host path "/" (contains sensitive path "/srv/secrets")"#
        )
    );
    assert_eq!(
        bind_detail("/srv/secrets/db", json).as_deref(),
        Some(
            r#"container "web" must not mount host path "/srv/secrets/db" (under sensitive path "/srv/secrets")"#
        )
    );
    // With no list at all, only relative paths are refused.
    assert_eq!(bind_detail("/", r#"{"sensitive_paths": []}"#), None);
}

#[test]
fn the_deepest_sensitive_ancestor_is_named() {
    let json = r#"{"sensitive_paths": ["/etc", "/etc/kubernetes"]}"#;
    assert_eq!(
        bind_detail("/etc/kubernetes/pki", json).as_deref(),
        Some(
            r#"container "web" must not mount host path "/etc/kubernetes/pki" (under sensitive path "/etc/kubernetes")"#
        )
    );
}

#[test]
fn kubernetes_host_paths_name_the_volume_and_its_containers() {
    let mut w = workload(vec![
        container("app"),
        container("sidecar"),
        container("other"),
    ]);
    mount(
        &mut w,
        "sock",
        "/var/run/docker.sock",
        "/var/run/docker.sock",
    );
    mount(&mut w, "logs", "/var/log/app", "/logs");
    w.containers[1].volume_mounts = w.containers[0].volume_mounts.clone();
    // Declared but unmounted: still refused, since any container could
    // mount it later in the pod's life (ephemeral containers).
    w.volumes.push(Volume {
        name: "root".into(),
        kind: "hostPath".into(),
        host_path: Some("/".into()),
    });
    let verdict = judge(&kubernetes_pod(w));
    assert_denied_for(&verdict, &["sensitivePaths"]);
    assert_eq!(
        detail(&verdict, "sensitivePaths"),
        concat!(
            r#"containers "app", "sidecar" must not mount volume "sock" with hostPath "/var/run/docker.sock" (sensitive path "/var/run/docker.sock"), "#,
            r#"pod must not mount volume "root" with hostPath "/" (sensitive path "/")"#,
        )
    );
}

#[test]
fn docker_volumes_with_a_device_name_the_volume_too() {
    // `docker volume create -o type=none -o o=bind -o device=/etc cfg`.
    let mut w = web();
    mount(&mut w, "cfg", "/etc", "/cfg");
    assert_eq!(
        detail(&judge(&docker_run(w)), "sensitivePaths"),
        r#"container "web" must not mount volume "cfg" with host path "/etc" (sensitive path "/etc")"#
    );
}

#[test]
fn volumes_without_a_host_path_are_not_judged() {
    let mut w = web();
    w.volumes.push(Volume {
        name: "/var/run/docker.sock".into(),
        kind: "persistentVolumeClaim".into(),
        host_path: None,
    });
    assert_allowed(&judge(&docker_run(w)));
}

// ---- exec ---------------------------------------------------------------

#[test]
fn privileged_exec_is_denied_unless_allowed() {
    let exec = docker_exec(|c| c.security_context.privileged = Some(true));
    let verdict = judge(&exec);
    assert_denied_for(&verdict, &["privilegedExec"]);
    assert_eq!(
        verdict.message(),
        Some(
            r#"violates host-isolation: privilegedExec (container "web" must not be entered with exec --privileged)"#
        )
    );
    assert_allowed(&judge_with(&exec, r#"{"allow_privileged_exec": true}"#));
    assert_allowed(&judge(&docker_exec(|c| {
        c.security_context.privileged = Some(false)
    })));
    assert_allowed(&judge(&docker_exec(|_| {})));
}

#[test]
fn root_exec_is_denied_only_when_the_operator_opts_in() {
    let strict = r#"{"allow_root_exec": false}"#;
    let root = docker_exec(|c| c.security_context.run_as_user = Some(0));
    assert_allowed(&judge(&root));
    let verdict = judge_with(&root, strict);
    assert_denied_for(&verdict, &["rootExec"]);
    assert_eq!(
        detail(&verdict, "rootExec"),
        r#"container "web" must not be entered with exec --user 0"#
    );
    assert_allowed(&judge_with(
        &docker_exec(|c| c.security_context.run_as_user = Some(1000)),
        strict,
    ));
    // A user the gateway could not resolve to a number may be root.
    let unknown = judge_with(&docker_exec(|_| {}), strict);
    assert_denied_for(&unknown, &["rootExec"]);
    assert!(
        detail(&unknown, "rootExec").contains("may be root"),
        "{}",
        detail(&unknown, "rootExec")
    );
    assert_allowed(&judge(&docker_exec(|_| {})));
}

#[test]
fn a_privileged_root_exec_reports_both() {
    let exec = docker_exec(|c| {
        c.security_context.privileged = Some(true);
        c.security_context.run_as_user = Some(0);
    });
    assert_denied_for(
        &judge_with(&exec, r#"{"allow_root_exec": false}"#),
        &["privilegedExec", "rootExec"],
    );
}

#[test]
fn only_docker_execs_are_execs() {
    let strict = r#"{"allow_root_exec": false}"#;
    let privileged_root = |c: &mut Container| {
        c.security_context.privileged = Some(true);
        c.security_context.run_as_user = Some(0);
    };
    // Starting a privileged root container is pod-security's business.
    let mut run = docker_exec(privileged_root);
    run.kind.kind = "Container".into();
    run.operation = Operation::Create;
    assert_allowed(&judge_with(&run, strict));
    // An `Exec` outside the docker group is not a Docker exec.
    let mut other = docker_exec(privileged_root);
    other.kind.group = String::new();
    assert_allowed(&judge_with(&other, strict));
    let mut other = docker_exec(privileged_root);
    other.kind.group = "example.com".into();
    assert_allowed(&judge_with(&other, strict));
    // Nor is a Kubernetes pod.
    let mut c = container("web");
    privileged_root(&mut c);
    assert_allowed(&judge_with(&kubernetes_pod(workload(vec![c])), strict));
}

#[test]
fn exec_words_follow_the_front_door() {
    let mut exec = docker_exec(|c| {
        c.security_context.privileged = Some(true);
        c.security_context.run_as_user = Some(0);
    });
    exec.origin = Origin::Kubernetes;
    let verdict = judge_with(&exec, r#"{"allow_root_exec": false}"#);
    assert_eq!(
        verdict.message(),
        Some(concat!(
            r#"violates host-isolation: "#,
            r#"privilegedExec (container "web" must not be entered by a privileged exec); "#,
            r#"rootExec (container "web" must not be entered by an exec as runAsUser=0)"#,
        ))
    );
}

// ---- messages -------------------------------------------------------------

#[test]
fn the_brief_example_reads_as_written() {
    let mut w = web();
    w.containers[0].devices = vec![device("/dev/sda")];
    w.borrowed = vec![borrowed(BorrowedResource::Pid, "db")];
    assert_eq!(
        judge(&kubernetes_pod(w.clone())).message(),
        Some(concat!(
            r#"violates host-isolation: devices (container "web" must not receive host devices "/dev/sda"); "#,
            r#"borrowedNamespaces (container "web" must not share the pid namespace of container "db")"#,
        ))
    );
    assert_eq!(
        judge(&docker_run(w)).message(),
        Some(concat!(
            r#"violates host-isolation: devices (container "web" must not use --device "/dev/sda"); "#,
            r#"borrowedNamespaces (container "web" must not use --pid container:db)"#,
        ))
    );
}

#[test]
fn every_violation_is_reported_at_once_in_order_with_docker_words() {
    let mut w = everything_wrong();
    w.containers[0].devices.push(device_rule("c 1:* rwm"));
    w.host_cgroup = true;
    w.host_users = Some(true);
    w.borrowed.push(borrowed(BorrowedResource::Network, "vpn"));
    bind(&mut w, "/tmp/../etc", "/host-etc");
    let verdict = judge(&docker_run(w));
    assert_eq!(
        verdict.message(),
        Some(concat!(
            r#"violates host-isolation: "#,
            r#"devices (container "web" must not use --device "/dev/sda" or --device-cgroup-rule "c 1:* rwm"); "#,
            r#"hostNamespaces (--uts host, --cgroupns host (or the engine's default: run with --cgroupns private), --userns host); "#,
            r#"borrowedNamespaces (container "web" must not use --pid container:db, --network container:vpn); "#,
            r#"volumesFrom (container "web" must not use --volumes-from db); "#,
            r#"sensitivePaths (container "web" must not mount host path "/var/run/docker.sock" (sensitive path "/var/run/docker.sock"), "#,
            r#"container "web" must not mount host path "/tmp/../etc" (sensitive path "/etc"))"#,
        ))
    );
    assert_eq!(
        controls(&verdict),
        [
            "devices",
            "hostNamespaces",
            "borrowedNamespaces",
            "volumesFrom",
            "sensitivePaths"
        ]
    );
}

#[test]
fn kubernetes_messages_use_kubernetes_words() {
    let mut w = web();
    w.host_users = Some(true);
    mount(&mut w, "docker", "/var/run", "/var/run");
    let verdict = judge(&kubernetes_pod(w));
    assert_eq!(
        verdict.message(),
        Some(concat!(
            r#"violates host-isolation: "#,
            r#"hostNamespaces (hostUsers=true); "#,
            r#"sensitivePaths (container "web" must not mount volume "docker" with hostPath "/var/run" (contains sensitive path "/var/run/docker.sock"))"#,
        ))
    );
}

#[test]
fn allowed_verdicts_carry_no_message_or_annotation() {
    let verdict = judge(&docker_run(web()));
    assert_eq!(verdict.message(), None);
    assert_eq!(verdict, Verdict::allow());
}

// ---- settings through the SDK ---------------------------------------------

#[test]
fn settings_errors_reach_the_operator() {
    use portcullis_policy_sdk::__private::validate_settings;
    assert_eq!(validate_settings::<HostIsolation>("{}"), Ok(()));
    assert_eq!(
        validate_settings::<HostIsolation>(
            r#"{"allowed_devices": ["/dev/dri"], "allow_device_rules": true, "allow_borrowing": true,
                "sensitive_paths": ["/", "/srv"], "allow_privileged_exec": true, "allow_root_exec": false}"#
        ),
        Ok(())
    );
    for (json, expected) in [
        (
            r#"{"allowed_devices": ["dev/sda"]}"#,
            r#"invalid entry "dev/sda" in setting "allowed_devices": expected an absolute host path"#,
        ),
        (
            r#"{"sensitive_paths": ["/etc", "docker.sock"]}"#,
            r#"invalid entry "docker.sock" in setting "sensitive_paths": expected an absolute host path"#,
        ),
        (r#"{"allow_exec": true}"#, "unknown field `allow_exec`"),
        (r#"{"allow_borrowing": "yes"}"#, "invalid type"),
        (r#"{"sensitive_paths": "/etc"}"#, "invalid type"),
    ] {
        let error = validate_settings::<HostIsolation>(json).expect_err(json);
        assert!(error.contains(expected), "{json}: {error}");
    }
}

#[test]
fn settings_are_kept_normalized() {
    let settings = settings(r#"{"sensitive_paths": ["/srv//secrets/"]}"#);
    assert_eq!(
        settings
            .sensitive_paths
            .iter()
            .map(HostPath::as_str)
            .collect::<Vec<_>>(),
        ["/srv/secrets"]
    );
}
