//! The bypass suite, by the engine's rules: requests spelled the way the
//! 20.10 engine (and every engine before 27) reads them, through a proxy
//! configured by `policies/docker-hardening.yaml`. Each attempt is shown to
//! be real — the same request sent straight to the engine creates what the
//! configuration means to refuse — and then refused through the proxy, with
//! the engine showing nothing created.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::docker_support::{
    IMAGE, Name, Proxy, engine, engine_socket, post_at, raw_at, refused, send_at, succeeds,
    test_image,
};

/// The baseline alone.
const BASELINE: &str =
    "  - {name: pod-security, module: builtin:pod-security, settings: {exclude: [hostPorts]}}\n";

/// The shipped hardening configuration.
fn hardened() -> Proxy {
    Proxy::hardened(serde_json::json!({}))
}

/// Whether the engine has an object of `kind` named `name`.
fn exists(kind: &str, name: &str) -> bool {
    engine(&["inspect", "--type", kind, name]).status.success()
}

/// The engine's view of a container's host configuration, as JSON text.
fn host_config(name: &str) -> String {
    succeeds(&engine(&["inspect", "-f", "{{json .HostConfig}}", name]))
}

/// Asserts the proxy refused with a JSON message naming `words`.
#[track_caller]
fn refusal((status, body): (u16, String), words: &str) {
    assert!((400..500).contains(&status), "{status}: {body}");
    assert!(body.starts_with("{\"message\":"), "a JSON message: {body}");
    assert!(body.contains(words), "expected {words:?} in {body}");
}

/// A volume or network removed when dropped.
struct Removed(&'static str, String);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = engine(&[self.0, "rm", "-f", &self.1]);
        let _ = engine(&[self.0, "rm", &self.1]);
    }
}

#[test]
fn host_settings_at_the_top_level_are_judged_where_the_engine_reads_them() {
    let proxy = hardened();
    // Without an inner HostConfig (absent or null), the engine reads the
    // host configuration from the top level, keys folded as Go folds them.
    for (settings, engine_shows, reason) in [
        (
            r#""Privileged": true"#,
            r#""Privileged":true"#,
            "privileged (",
        ),
        (
            r#""HostConfig": null, "Binds": ["/:/host"]"#,
            r#""/:/host""#,
            "hostPathVolumes (",
        ),
        (
            r#""pidmode": "host""#,
            r#""PidMode":"host""#,
            "hostNamespaces (",
        ),
        (
            r#""NetworkMode": "host""#,
            r#""NetworkMode":"host""#,
            "hostNamespaces (",
        ),
        (
            r#""CapAdd": ["SYS_ADMIN"]"#,
            r#""SYS_ADMIN""#,
            "capabilities_baseline (",
        ),
        (
            r#""SecurityOpt": ["seccomp=unconfined"]"#,
            r#""seccomp=unconfined""#,
            "seccompProfile_baseline (",
        ),
        (
            r#""Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}]"#,
            r#""PathOnHost":"/dev/null""#,
            "devices (",
        ),
        (
            r#""ipcmode": "host""#,
            r#""IpcMode":"host""#,
            "hostNamespaces (",
        ),
    ] {
        let body = format!(
            r#"{{"Image": "{IMAGE}", "Cmd": ["true"], "CgroupnsMode": "private", {settings}}}"#
        );
        // Real: the engine itself takes it.
        let direct = Name::new("legacy-direct");
        let (status, answer) = post_at(
            &engine_socket(),
            &format!("/v1.41/containers/create?name={}", direct.0),
            &body,
        );
        assert_eq!(status, 201, "{settings}: {answer}");
        let shown = host_config(&direct.0);
        assert!(shown.contains(engine_shows), "{settings}: {shown}");
        // Refused through the proxy, and nothing made.
        let through = Name::new("legacy");
        refusal(
            proxy.post(
                &format!("/v1.41/containers/create?name={}", through.0),
                &body,
            ),
            reason,
        );
        assert!(!exists("container", &through.0), "{settings}");
    }
}

#[test]
fn volumes_that_bind_are_host_paths_whatever_their_type_claims() {
    let proxy = hardened();
    let dir = crate::support::scratch();
    std::fs::write(dir.path().join("marker"), "from the host\n").expect("marker");
    let device = dir.path().display().to_string();
    // Real: a `local` volume of "type nfs" with `o=bind` is the host
    // directory, as a container started on it sees.
    let direct = Removed(
        "volume",
        format!("portcullis-e2e-{}-nfs-bind", std::process::id()),
    );
    succeeds(&engine(&[
        "volume",
        "create",
        "--driver",
        "local",
        "--opt",
        "type=nfs",
        "--opt",
        "o=bind",
        "--opt",
        &format!("device={device}"),
        &direct.1,
    ]));
    let seen = succeeds(&engine(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/mnt", direct.1),
        IMAGE,
        "cat",
        "/mnt/marker",
    ]));
    assert_eq!(seen, "from the host\n");
    for (kind, flags) in [
        ("nfs", "bind"),
        ("nfs4", "rbind"),
        ("tmpfs", "ro,bind"),
        ("cifs", "rbind,nosuid"),
        ("none", "bind"),
    ] {
        let name = format!("portcullis-e2e-{}-{kind}", std::process::id());
        let body = format!(
            r#"{{"Name": "{name}", "Driver": "local", "DriverOpts": {{"type": "{kind}", "o": "{flags}", "device": "{device}"}}}}"#
        );
        refusal(
            proxy.post("/v1.41/volumes/create", &body),
            "hostPathVolumes (",
        );
        assert!(!exists("volume", &name), "{kind} {flags}");
        // The same options inline in a mount.
        let container = Name::new("inline-volume");
        let mount = format!(
            r#"{{"Image": "{IMAGE}", "HostConfig": {{"CgroupnsMode": "private", "Mounts": [{{"Type": "volume", "Source": "{name}", "Target": "/mnt",
                "VolumeOptions": {{"DriverConfig": {{"Name": "local", "Options": {{"type": "{kind}", "o": "{flags}", "device": "{device}"}}}}}}}}]}}}}"#
        );
        refusal(
            proxy.post(
                &format!("/v1.41/containers/create?name={}", container.0),
                &mount,
            ),
            "hostPathVolumes (",
        );
        assert!(!exists("container", &container.0));
        assert!(!exists("volume", &name), "{kind} {flags}");
    }
    // A volume the engine already has is judged by its own options, not
    // by the name it is asked for under.
    let by_name = Name::new("named-volume");
    refused(
        &proxy.docker(&[
            "run",
            "--cgroupns",
            "private",
            "--name",
            &by_name.0,
            "-v",
            &format!("{}:/mnt", direct.1),
            IMAGE,
            "true",
        ]),
        "hostPathVolumes (",
    );
    assert!(!exists("container", &by_name.0));
}

#[test]
fn exec_users_are_read_as_the_runtime_reads_them() {
    let proxy = hardened();
    let target = Name::new("exec-target");
    proxy.sleeping(&target, Some("1000"));
    // Real: `-0` is root to the engine.
    assert_eq!(
        succeeds(&engine(&["exec", "-u", "-0", &target.0, "id", "-u"])),
        "0\n"
    );
    for user in ["-0", "-0:0", "+0", "000", "root", "0:1000"] {
        refused(
            &proxy.docker(&["exec", "-u", user, &target.0, "true"]),
            "must not be entered with exec --user 0",
        );
    }
    // A name only the container's /etc/passwd can resolve may be root.
    for user in ["nobody", "toor", "nobody:0"] {
        refused(
            &proxy.docker(&["exec", "-u", user, &target.0, "true"]),
            "may be root",
        );
    }
    succeeds(&proxy.docker(&["exec", "-u", "1000", &target.0, "true"]));
    succeeds(&proxy.docker(&["exec", &target.0, "true"]));
    // Into a container whose user is a name: unknown, so refused.
    let named = Name::new("named-user");
    succeeds(&engine(&[
        "create", "--name", &named.0, "--user", "nobody", IMAGE, "sleep", "300",
    ]));
    refused(&proxy.docker(&["exec", &named.0, "true"]), "may be root");
}

#[test]
fn a_container_reached_by_its_link_alias_is_judged_as_itself() {
    let proxy = hardened();
    let target = Name::new("aliased");
    proxy.sleeping(&target, Some("1000"));
    // Links are refused through the proxy (no policy sees them), so the
    // administrator makes one on the engine: the target gains the name
    // `<parent>/alias`.
    let parent = Name::new("parent");
    refused(
        &proxy.docker(&[
            "run",
            "--cgroupns",
            "private",
            "-d",
            "--name",
            &parent.0,
            "--link",
            &format!("{}:alias", target.0),
            IMAGE,
            "sleep",
            "300",
        ]),
        "HostConfig.Links",
    );
    assert!(!exists("container", &parent.0));
    succeeds(&engine(&[
        "run",
        "-d",
        "--name",
        &parent.0,
        "--link",
        &format!("{}:alias", target.0),
        IMAGE,
        "sleep",
        "300",
    ]));
    let alias = format!("{}/alias", parent.0);
    // Real: the engine execs into the target through the alias.
    let (status, answer) = post_at(
        &engine_socket(),
        &format!("/v1.41/containers/{alias}/exec"),
        r#"{"Cmd": ["true"]}"#,
    );
    assert_eq!(status, 201, "{answer}");
    for (path, body, reason) in [
        (
            "exec",
            r#"{"Cmd": ["sh"], "Privileged": true, "User": "1000"}"#,
            "privilegedExec (",
        ),
        ("exec", r#"{"Cmd": ["sh"], "User": "0"}"#, "rootExec ("),
    ] {
        refusal(
            proxy.post(&format!("/v1.41/containers/{alias}/{path}"), body),
            reason,
        );
    }
    // A start with a host configuration (API before 1.24 takes one).
    refusal(
        proxy.post(
            &format!("/v1.23/containers/{alias}/start"),
            r#"{"Privileged": true, "PidMode": "host", "Binds": ["/:/host"]}"#,
        ),
        "configuration at create",
    );
    assert!(!host_config(&target.0).contains(r#""Privileged":true"#));
    // Reads that leak, both ways, and the old copy endpoint.
    for (method, path) in [
        (
            "GET",
            format!("/v1.41/containers/{alias}/archive?path=/etc"),
        ),
        (
            "PUT",
            format!("/v1.41/containers/{alias}/archive?path=/tmp"),
        ),
        (
            "HEAD",
            format!("/v1.41/containers/{alias}/archive?path=/etc"),
        ),
        ("GET", format!("/v1.41/containers/{alias}/export")),
        ("POST", format!("/v1.23/containers/{alias}/copy")),
        ("POST", format!("/v1.23/containers/{}/copy", target.0)),
    ] {
        let (status, answer) = send_at(&proxy.socket, method, &path, r#"{"Resource": "/etc"}"#);
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
}

#[test]
fn headers_the_proxy_cannot_read_as_text_are_refused() {
    let proxy = hardened();
    // Go lowercases `İ` to `i` before it checks the media type, so to the
    // engine this is a form, whose fields override the URL's.
    for content_type in [
        "applİcation/x-www-form-urlencoded",
        "application/x-www-form-urlencoded\u{a0}",
        "multipart/form-data; boundary=\u{212a}",
    ] {
        for (path, body) in [
            ("/v1.41/containers/create", "name=evil"),
            ("/v1.41/build?t=app:1", "networkmode=host"),
            (
                "/v1.41/images/create?fromImage=portcullis-test/busybox&tag=1",
                "fromImage=evil",
            ),
        ] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let (status, answer) = proxy.raw(request.as_bytes());
            assert_eq!(status, 400, "{path} {content_type:?}: {answer}");
            assert!(answer.contains("not plain text"), "{answer}");
        }
    }
    let twice = "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let (status, answer) = proxy.raw(twice.as_bytes());
    assert_eq!(status, 400, "{answer}");
}

#[test]
fn what_no_policy_sees_is_refused_unless_accepted() {
    let proxy = hardened();
    let target = Name::new("unjudged-target");
    proxy.sleeping(&target, Some("1000"));
    for (flags, reason) in [
        (&["--gpus", "all"][..], "devices ("),
        (&["--cgroup-parent", "/"], "HostConfig.CgroupParent"),
        (
            &["--runtime", "io.containerd.runc.v2"],
            "HostConfig.Runtime",
        ),
        (
            &[
                "--log-driver",
                "syslog",
                "--log-opt",
                "syslog-address=unix:///var/run/docker.sock",
            ],
            "HostConfig.LogConfig",
        ),
        (&["--link", &format!("{}:db", target.0)], "HostConfig.Links"),
    ] {
        let name = Name::new("unjudged");
        let mut args = vec!["run", "--cgroupns", "private", "--name", &name.0];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        refused(&proxy.docker(&args), reason);
        assert!(!exists("container", &name.0), "{flags:?}");
    }
    // A local log driver is no concern.
    succeeds(&proxy.docker(&[
        "run",
        "--rm",
        "--cgroupns",
        "private",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        IMAGE,
        "true",
    ]));
    // An operator who accepts a field unseen gets it.
    let accepting = Proxy::hardened(serde_json::json!({"unjudged_fields": ["HostConfig.Runtime"]}));
    let accepted = Name::new("accepted-runtime");
    succeeds(&accepting.docker(&[
        "create",
        "--cgroupns",
        "private",
        "--name",
        &accepted.0,
        "--runtime",
        "io.containerd.runc.v2",
        IMAGE,
        "true",
    ]));
    assert!(host_config(&accepted.0).contains(r#""Runtime":"io.containerd.runc.v2""#));
}

#[test]
fn the_host_network_under_another_name_is_the_host_network() {
    let proxy = hardened();
    let id = succeeds(&engine(&["network", "inspect", "-f", "{{.Id}}", "host"]));
    let prefix = &id.trim()[..12];
    let name = Name::new("host-by-id");
    refused(
        &proxy.docker(&[
            "run",
            "--cgroupns",
            "private",
            "--name",
            &name.0,
            "--network",
            prefix,
            IMAGE,
            "true",
        ]),
        "hostNamespaces (",
    );
    assert!(!exists("container", &name.0));
    // A network on a host interface: the host's network, one hop away.
    let lan = format!("portcullis-e2e-{}-lan", std::process::id());
    let _removed = Removed("network", lan.clone());
    refused(
        &proxy.docker(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            "parent=lo",
            &lan,
        ]),
        "hostNamespaces (",
    );
    assert!(!exists("network", &lan));
}

#[test]
fn the_engines_default_cgroup_namespace_is_judged() {
    let proxy = hardened();
    let info = succeeds(&engine(&["info", "-f", "{{json .}}"]));
    let info: serde_json::Value = serde_json::from_str(&info).expect("info");
    let private_by_default = info["SecurityOptions"]
        .as_array()
        .is_some_and(|options| options.iter().any(|o| o == "name=cgroupns"));
    let name = Name::new("default-cgroupns");
    let output = proxy.docker(&["run", "--rm", "--name", &name.0, IMAGE, "true"]);
    if private_by_default {
        succeeds(&output);
    } else {
        refused(&output, "--cgroupns private");
        assert!(!exists("container", &name.0));
    }
}

#[test]
fn a_privileged_exec_is_what_the_baseline_forbids() {
    test_image();
    let proxy = Proxy::start("", BASELINE);
    let target = Name::new("baseline-exec");
    succeeds(&proxy.docker(&["run", "-d", "--name", &target.0, IMAGE, "sleep", "300"]));
    refused(
        &proxy.docker(&["exec", "--privileged", &target.0, "true"]),
        "privileged (",
    );
    succeeds(&proxy.docker(&["exec", &target.0, "true"]));
}

/// Opens a connection and sends nothing.
fn idle(socket: &std::path::Path) -> UnixStream {
    UnixStream::connect(socket).expect("connect")
}

/// Waits until the proxy closes `stream` (a read sees the end), within
/// `deadline`; a second read lets the end follow whatever answer the
/// proxy wrote first.
fn closed_by_proxy(stream: &mut UnixStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("timeout");
    let mut byte = [0; 64];
    matches!(stream.read(&mut byte), Ok(0)) || matches!(stream.read(&mut byte), Ok(0))
}

#[test]
fn idle_connections_are_closed_and_held_within_a_limit() {
    test_image();
    let proxy = Proxy::start(
        "  idle_timeout: 1s\n  client_timeout: 1s\n  max_connections_per_client: 20000\n",
        BASELINE,
    );
    let mut idle_ones: Vec<UnixStream> = (0..10_000).map(|_| idle(&proxy.socket)).collect();
    // Others are served meanwhile.
    let (status, _) = raw_at(
        &proxy.socket,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    for stream in &mut idle_ones {
        assert!(
            closed_by_proxy(stream, deadline),
            "an idle connection stayed open"
        );
    }
    // Half a request head, and a body that never comes.
    let mut slow = idle(&proxy.socket);
    slow.write_all(b"GET /_ping HTTP/1.1\r\nHost: do")
        .expect("write");
    assert!(closed_by_proxy(
        &mut slow,
        Instant::now() + Duration::from_secs(30)
    ));
    let mut stalled = idle(&proxy.socket);
    stalled
        .write_all(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Image\"")
        .expect("write");
    let answer = status_line(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let limited = Proxy::start("  max_connections_per_client: 3\n", BASELINE);
    let held: Vec<UnixStream> = (0..3).map(|_| idle(&limited.socket)).collect();
    let (status, answer) = raw_at(
        &limited.socket,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("connections already"), "{answer}");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = raw_at(
            &limited.socket,
            b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
        );
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the limit was never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a response's status line.
fn status_line(stream: &mut UnixStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut answer = Vec::new();
    let mut byte = [0; 1];
    while !answer.ends_with(b"\r\n") && matches!(stream.read(&mut byte), Ok(1)) {
        answer.push(byte[0]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A create body of `labels` distinct labels, privileged at the end.
fn many_labels(labels: usize) -> String {
    let labels: Vec<String> = (0..labels).map(|n| format!(r#""k{n}":"""#)).collect();
    format!(
        r#"{{"Image": "{IMAGE}", "Labels": {{{}}}, "HostConfig": {{"Privileged": true}}}}"#,
        labels.join(",")
    )
}

#[test]
fn a_body_built_to_be_slow_to_read_is_judged_or_refused_while_others_are_served() {
    test_image();
    let proxy = Proxy::start("", BASELINE);
    // Distinct keys: the shape the old duplicate-key check took quadratic
    // time on. Up to the value bound the body is read and judged; past it
    // (the cap allows about 350,000 such labels) it is refused unread.
    for (labels, reason) in [
        (200_000, "privileged ("),
        (290_000, "more than 262144 values"),
    ] {
        let body = many_labels(labels);
        assert!(body.len() < 4 << 20, "within the body cap");
        let socket = proxy.socket.clone();
        let sending =
            std::thread::spawn(move || post_at(&socket, "/v1.41/containers/create", &body));
        let (status, _) = raw_at(
            &proxy.socket,
            b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200);
        refusal(sending.join().expect("the sender"), reason);
    }
}
