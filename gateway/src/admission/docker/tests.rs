//! The requests of the other Docker endpoints.

use super::*;

fn reading(engine: &Engine) -> Reading<'_> {
    Reading {
        engine,
        version: Some((1, 41)),
        accept: Accept::Listed(&[]),
    }
}

#[test]
fn a_build_runs_its_steps_where_networkmode_says() {
    let engine = Engine::assumed();
    let query = |mode: &str| {
        vec![
            ("t".to_owned(), "app:1".to_owned()),
            ("networkmode".to_owned(), mode.to_owned()),
        ]
    };
    let (host, _) = build(&query("host"), &reading(&engine));
    assert_eq!(host.kind.kind, "Build");
    assert_eq!(host.name.as_deref(), Some("app:1"));
    assert!(host.workload.as_ref().is_some_and(|w| w.host_network));
    let (borrowed, _) = build(&query("container:db"), &reading(&engine));
    let workload = borrowed.workload.expect("a workload");
    assert!(!workload.host_network);
    assert_eq!(workload.borrowed[0].container, "db");
    let (bridge, lookups) = build(&query("default"), &reading(&engine));
    let workload = bridge.workload.expect("a workload");
    assert!(!workload.host_network && workload.borrowed.is_empty());
    assert!(lookups.networks.is_empty());
    let object = bridge.object.unwrap_or_default();
    assert!(object.contains(r#""networkmode":"default""#), "{object}");
    let (_, named) = build(&query("lan"), &reading(&engine));
    assert_eq!(named.networks, ["lan"]);
}

fn exec(body: &str, user: Option<&str>) -> SecurityContext {
    let target = ExecTarget {
        name: "web".into(),
        image: "nginx".into(),
        user: user.map(str::to_owned),
    };
    exec_create(body, &target, &reading(&Engine::assumed()))
        .expect("valid")
        .workload
        .expect("a workload")
        .containers[0]
        .security_context
        .clone()
}

#[test]
fn an_exec_runs_as_the_user_the_runtime_would_pick() {
    let uid = |body: &str, user: Option<&str>| exec(body, user).run_as_user;
    // Go's Atoi reads a sign: `-0` is root.
    assert_eq!(uid(r#"{"User": "-0"}"#, Some("1000")), Some(0));
    assert_eq!(uid(r#"{"User": "-0:0"}"#, Some("1000")), Some(0));
    assert_eq!(uid(r#"{"User": "1000"}"#, Some("")), Some(1000));
    // No user: the container's; an empty one is root.
    assert_eq!(uid(r#"{"Cmd": ["sh"]}"#, Some("")), Some(0));
    assert_eq!(uid(r#"{"Cmd": ["sh"]}"#, Some("65534")), Some(65534));
    // A name, given or inherited, is unknown; so is a container that
    // could not be looked up.
    assert_eq!(uid(r#"{"User": "nginx"}"#, Some("1000")), None);
    assert_eq!(uid(r#"{"Cmd": ["sh"]}"#, Some("nginx")), None);
    assert_eq!(uid(r#"{"Cmd": ["sh"]}"#, None), None);
    assert_eq!(
        exec(r#"{"privileged": true}"#, Some("1000")).privileged,
        Some(true)
    );
}

#[test]
fn volumes_are_judged_by_what_their_options_mount() {
    let volume = |body: &str| {
        let request = volume_create(body, &reading(&Engine::assumed())).expect("valid");
        let volume = request.workload.expect("a workload").volumes[0].clone();
        (volume.kind, volume.host_path)
    };
    assert_eq!(
        volume(r#"{"Name": "v", "DriverOpts": {"type": "nfs", "o": "bind", "device": "/"}}"#),
        ("hostPath".into(), Some("/".into()))
    );
    assert_eq!(
        volume(
            r#"{"Name": "v", "Driver": "local", "DriverOpts": {"type": "nfs", "o": "addr=1.2.3.4", "device": ":/x"}}"#
        ),
        ("nfs".into(), None)
    );
    // Options are a map: the same option twice means the last to the
    // engine, and is refused.
    assert!(
        volume_create(
            r#"{"DriverOpts": {"o": "ro", "o": "bind", "type": "none", "device": "/"}}"#,
            &reading(&Engine::assumed())
        )
        .is_err()
    );
}

#[test]
fn networks_on_the_hosts_interfaces_are_the_hosts_network() {
    let host = |body: &str, template: Option<(String, Vec<(String, String)>)>| {
        network_create(body, template, &reading(&Engine::assumed()))
            .expect("valid")
            .workload
            .expect("a workload")
            .host_network
    };
    assert!(host(
        r#"{"Name": "lan", "Driver": "macvlan", "Options": {"parent": "eth0"}}"#,
        None
    ));
    assert!(host(
        r#"{"Name": "lan", "Driver": "ipvlan", "Options": {"parent": "eth0.10"}}"#,
        None
    ));
    assert!(host(
        r#"{"Name": "br", "Options": {"com.docker.network.bridge.name": "br0"}}"#,
        None
    ));
    assert!(host(r#"{"Name": "x", "Driver": "weave"}"#, None));
    assert!(!host(r#"{"Name": "inner", "Driver": "macvlan"}"#, None));
    assert!(!host(r#"{"Name": "app"}"#, None));
    let from = r#"{"Name": "lan", "Driver": "macvlan", "ConfigFrom": {"Network": "tpl"}}"#;
    assert!(host(
        from,
        Some(("null".into(), vec![("parent".into(), "eth0".into())]))
    ));
    assert!(!host(from, Some(("null".into(), Vec::new()))));
    assert!(host(from, None));
}
