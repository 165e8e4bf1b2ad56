//! Container-create bodies: what each setting becomes in the workload.

use super::*;
use crate::admission::docker::fields::Accept;

fn reading(engine: &Engine) -> Reading<'_> {
    Reading {
        engine,
        version: Some((1, 41)),
        accept: Accept::Listed(&[]),
    }
}

fn workload(body: serde_json::Value) -> Workload {
    normalize(&body.to_string(), Some("web"), &reading(&Engine::assumed()))
        .expect("valid body")
        .workload
}

fn error(body: &str) -> NormalizeError {
    normalize(body, None, &reading(&Engine::assumed())).expect_err("invalid body")
}

#[test]
fn a_plain_container_gets_the_engine_defaults() {
    let workload = workload(serde_json::json!({"Image": "nginx:1.27"}));
    let container = &workload.containers[0];
    assert_eq!(container.name, "web");
    assert_eq!(container.image, "nginx:1.27");
    assert_eq!(
        container.security_context.seccomp_profile,
        Some(SecurityProfile::RuntimeDefault)
    );
    assert_eq!(container.security_context.privileged, None);
    assert_eq!(workload.template_path, None);
}

#[test]
fn privileges_are_mapped() {
    let workload = workload(serde_json::json!({
        "Image": "alpine", "User": "1000:1000",
        "HostConfig": {
            "Privileged": true, "CapAdd": ["sys_admin", "CAP_NET_RAW"], "CapDrop": "ALL",
            "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "label=disable", "no-new-privileges:true"],
            "NetworkMode": "host", "PidMode": "container:db", "IpcMode": "host", "UTSMode": "host",
            "UsernsMode": "host", "CgroupnsMode": "host",
            "Sysctls": {"net.ipv4.ip_forward": "1"},
            "Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}],
            "DeviceCgroupRules": ["b 8:* rmw"],
            "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": null},
            "MaskedPaths": []
        }
    }));
    assert!(
        workload.host_network && workload.host_ipc && workload.host_uts && workload.host_cgroup
    );
    assert!(!workload.host_pid);
    assert_eq!(workload.host_users, Some(true));
    assert_eq!(
        workload.borrowed,
        [Borrowed {
            resource: BorrowedResource::Pid,
            container: "db".into()
        }]
    );
    assert_eq!(
        workload.security_context.sysctls[0].name,
        "net.ipv4.ip_forward"
    );
    let container = &workload.containers[0];
    let context = &container.security_context;
    assert_eq!(context.privileged, Some(true));
    assert_eq!(context.capabilities.add, ["SYS_ADMIN", "NET_RAW"]);
    assert_eq!(context.capabilities.drop, ["ALL"]);
    assert_eq!(context.seccomp_profile, Some(SecurityProfile::Unconfined));
    assert_eq!(context.app_armor_profile, Some(SecurityProfile::Unconfined));
    assert_eq!(
        context.se_linux_options.as_ref().map(|o| o.type_.as_str()),
        Some("spc_t")
    );
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.proc_mount.as_deref(), Some("Unmasked"));
    assert_eq!(
        (
            context.run_as_user,
            context.run_as_group,
            context.run_as_non_root
        ),
        (Some(1000), Some(1000), Some(true))
    );
    assert_eq!(container.devices.len(), 2);
    assert_eq!(container.devices[0].host_path, "/dev/sda");
    assert_eq!(
        container.ports,
        [Port {
            container_port: 80,
            host_port: 8080,
            host_ip: String::new(),
            protocol: "TCP".into()
        }]
    );
}

#[test]
fn users_are_only_trusted_when_numeric_or_root() {
    for (user, expected) in [
        ("root", (Some(0), Some(false))),
        ("0:0", (Some(0), Some(false))),
        ("nginx", (None, None)),
        ("", (None, None)),
        ("65534", (Some(65534), Some(true))),
    ] {
        let workload = workload(serde_json::json!({"Image": "x", "User": user}));
        let context = &workload.containers[0].security_context;
        assert_eq!(
            (context.run_as_user, context.run_as_non_root),
            expected,
            "{user}"
        );
    }
}

#[test]
fn volumes_that_reach_the_host_are_host_paths() {
    let workload = workload(serde_json::json!({
        "Image": "x",
        "Volumes": {"/data": {}},
        "HostConfig": {
            "Binds": ["/:/host:ro", "cache:/cache", "/var/run/docker.sock:/var/run/docker.sock"],
            "Mounts": [
                {"Type": "bind", "Source": "/etc", "Target": "/etc2"},
                {"Type": "volume", "Source": "sneaky", "Target": "/s",
                 "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}},
                {"Type": "volume", "Target": "/anon"},
                {"Type": "volume", "Source": "remote", "Target": "/r", "VolumeOptions": {"DriverConfig": {"Name": "rexray"}}},
                {"Type": "tmpfs", "Target": "/run"}
            ],
            "Tmpfs": {"/tmp": "rw"},
            "VolumesFrom": ["other:ro"]
        }
    }));
    let volumes: Vec<_> = workload
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v.kind.as_str(), v.host_path.as_deref()))
        .collect();
    assert_eq!(
        volumes,
        [
            ("/data", "persistentVolumeClaim", None),
            ("/", "hostPath", Some("/")),
            ("cache", "persistentVolumeClaim", None),
            (
                "/var/run/docker.sock",
                "hostPath",
                Some("/var/run/docker.sock")
            ),
            ("/etc", "hostPath", Some("/etc")),
            ("sneaky", "hostPath", Some("/")),
            ("/anon", "persistentVolumeClaim", None),
            ("remote", "csi", None),
            ("/run", "emptyDir", None),
            ("/tmp", "emptyDir", None),
        ]
    );
    assert!(workload.containers[0].volume_mounts[1].read_only);
    assert_eq!(
        workload.borrowed,
        [Borrowed {
            resource: BorrowedResource::Volumes,
            container: "other".into()
        }]
    );
}

#[test]
fn the_engine_reading_is_the_one_judged() {
    // Case variants and Unicode folding reach the same fields as in Go.
    let workload = workload(
        serde_json::json!({"image": "x", "hostconfig": {"PRIVILEGED": true, "Bind\u{017F}": ["/:/h"]}}),
    );
    assert_eq!(
        workload.containers[0].security_context.privileged,
        Some(true)
    );
    assert_eq!(workload.volumes[0].host_path.as_deref(), Some("/"));
    // Two spellings of one field: refused, whatever their order.
    let ambiguous =
        error(r#"{"Image": "x", "HostConfig": {"Privileged": false, "privileged": true}}"#);
    assert_eq!(ambiguous.path, "HostConfig.Privileged");
    let duplicate =
        error(r#"{"Image": "x", "HostConfig": {"Privileged": false, "Privileged": true}}"#);
    assert!(duplicate.message.contains("duplicate key"), "{duplicate}");
}

#[test]
fn options_the_engine_refuses_are_refused() {
    for (body, path) in [
        (
            r#"{"HostConfig": {"SecurityOpt": ["seccomp"]}}"#,
            "HostConfig.SecurityOpt[0]",
        ),
        (
            r#"{"HostConfig": {"SecurityOpt": ["Seccomp=unconfined"]}}"#,
            "HostConfig.SecurityOpt[0]",
        ),
        (
            r#"{"HostConfig": {"SecurityOpt": ["no-new-privileges=maybe"]}}"#,
            "HostConfig.SecurityOpt[0]",
        ),
        (
            r#"{"HostConfig": {"Privileged": "true"}}"#,
            "HostConfig.Privileged",
        ),
        (
            r#"{"HostConfig": {"Binds": ["a:b:c:d"]}}"#,
            "HostConfig.Binds[0]",
        ),
        (
            r#"{"HostConfig": {"Mounts": [{"Type": "magic"}]}}"#,
            "HostConfig.Mounts[0].Type",
        ),
        (
            r#"{"HostConfig": {"PortBindings": {"http/tcp": []}}}"#,
            "HostConfig.PortBindings.http/tcp",
        ),
        (r#"[]"#, ""),
    ] {
        assert_eq!(error(body).path, path, "{body}");
    }
}

#[test]
fn inline_seccomp_profiles_are_not_trusted() {
    let workload = workload(
        serde_json::json!({"HostConfig": {"SecurityOpt": [r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#]}}),
    );
    assert!(matches!(
        workload.containers[0].security_context.seccomp_profile,
        Some(SecurityProfile::Other(_))
    ));
}

/// The engine of this project's test machines: 20.10 on cgroup v1, without
/// seccomp or AppArmor, host cgroup namespaces by default.
fn old_engine() -> Engine {
    Engine {
        release: Some((20, 10)),
        api: (1, 41),
        cgroup_version: 1,
        seccomp: false,
        apparmor: false,
        private_cgroupns: false,
        userns: false,
        default_runtime: "runc".into(),
    }
}

fn on(engine: &Engine, body: serde_json::Value) -> Result<Normalized, NormalizeError> {
    normalize(&body.to_string(), Some("web"), &reading(engine))
}

#[test]
fn without_an_inner_host_configuration_old_engines_read_the_top_level() {
    for layout in [
        serde_json::json!({"Image": "x", "Privileged": true, "Binds": ["/:/host"], "PidMode": "host"}),
        serde_json::json!({"Image": "x", "HostConfig": null, "privileged": true, "binds": ["/:/host"], "PIDMODE": "host"}),
    ] {
        let read = on(&old_engine(), layout.clone()).expect("valid").workload;
        assert_eq!(
            read.containers[0].security_context.privileged,
            Some(true),
            "{layout}"
        );
        assert_eq!(read.volumes[0].host_path.as_deref(), Some("/"), "{layout}");
        assert!(read.host_pid, "{layout}");
        // An engine from 27 on ignores them.
        let current = on(&Engine::assumed(), layout.clone())
            .expect("valid")
            .workload;
        assert_eq!(
            current.containers[0].security_context.privileged, None,
            "{layout}"
        );
    }
    // With an inner host configuration the top level's settings are
    // ignored by the engine, but its volume driver fills an empty one.
    let inner = on(
        &old_engine(),
        serde_json::json!({"Image": "x", "Privileged": true, "VolumeDriver": "rexray", "HostConfig": {"Binds": ["data:/data"]}}),
    )
    .expect("valid")
    .workload;
    assert_eq!(inner.containers[0].security_context.privileged, None);
    assert_eq!(inner.volumes[0].kind, "csi");
    // An unjudged setting is refused where the engine would read it.
    let error = on(
        &old_engine(),
        serde_json::json!({"Image": "x", "CgroupParent": "/"}),
    )
    .expect_err("unjudged");
    assert_eq!(error.path, "CgroupParent");
}

#[test]
fn the_engines_defaults_are_what_the_container_gets() {
    let plain = serde_json::json!({"Image": "x"});
    let old = on(&old_engine(), plain.clone()).expect("valid").workload;
    // cgroup v1 without `default-cgroupns-mode: private`: the host's.
    assert!(old.host_cgroup);
    let context = &old.containers[0].security_context;
    assert_eq!(
        (
            context.seccomp_profile.clone(),
            context.app_armor_profile.clone()
        ),
        (None, None)
    );
    let private = on(
        &old_engine(),
        serde_json::json!({"Image": "x", "HostConfig": {"CgroupnsMode": "private"}}),
    )
    .expect("valid")
    .workload;
    assert!(!private.host_cgroup);
    let current = Engine::assumed();
    assert!(
        !on(&current, plain.clone())
            .expect("valid")
            .workload
            .host_cgroup
    );
    // Privileged containers on cgroup v1, and clients before API 1.41 on
    // cgroup v1, get the host's whatever the daemon's default.
    let v1_private = Engine {
        private_cgroupns: true,
        ..old_engine()
    };
    let privileged = serde_json::json!({"Image": "x", "HostConfig": {"Privileged": true}});
    assert!(
        on(&v1_private, privileged)
            .expect("valid")
            .workload
            .host_cgroup
    );
    let old_client = normalize(
        &plain.to_string(),
        None,
        &Reading {
            version: Some((1, 40)),
            ..reading(&v1_private)
        },
    )
    .expect("valid");
    assert!(old_client.workload.host_cgroup);
}

#[test]
fn device_requests_and_groups_are_read() {
    let read = workload(serde_json::json!({"Image": "x", "HostConfig": {
        "DeviceRequests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}, {"DeviceIDs": ["0", "1"]}],
        "GroupAdd": ["0", "docker", "-0"]
    }}));
    let devices: Vec<&str> = read.containers[0]
        .devices
        .iter()
        .map(|d| d.host_path.as_str())
        .collect();
    assert_eq!(devices, ["nvidia:all", "gpus:device=0,1"]);
    assert_eq!(read.security_context.supplemental_groups, [0, 0]);
}

#[test]
fn networks_and_volumes_the_engine_must_name_are_looked_up() {
    let read = on(&Engine::assumed(), serde_json::json!({"Image": "x",
        "HostConfig": {"NetworkMode": "c0ffee", "Binds": ["data:/data", "/etc:/etc"],
            "Mounts": [{"Type": "volume", "Source": "other", "Target": "/o"}, {"Type": "volume", "Target": "/anon"}]},
        "NetworkingConfig": {"EndpointsConfig": {"lan": {}, "host": {}}}
    }))
    .expect("valid");
    assert_eq!(read.lookups.networks, ["c0ffee", "lan"]);
    assert!(read.workload.host_network, "the host network by name");
    let names: Vec<&str> = read
        .lookups
        .volumes
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["data", "other"]);
    assert_eq!(
        read.workload.volumes[read.lookups.volumes[1].index].name,
        "other"
    );
}

#[test]
fn modes_the_engine_does_not_accept_are_refused() {
    for (mode, field) in [
        ("PidMode", "HOST"),
        ("IpcMode", "container:"),
        ("UTSMode", "private"),
        ("UsernsMode", "HOST"),
        ("CgroupnsMode", "hosts"),
    ] {
        let body = format!(r#"{{"Image": "x", "HostConfig": {{"{mode}": "{field}"}}}}"#);
        assert_eq!(error(&body).path, format!("HostConfig.{mode}"), "{body}");
    }
}
