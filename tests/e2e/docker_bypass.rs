//! The bypass suite: raw HTTP over the proxy's socket, trying every way a
//! client could make the engine do something the proxy did not judge. Each
//! attempt must fail: refused by the proxy, or refused by the engine for
//! the same reason the proxy saw.

use crate::docker_support::{IMAGE, Name, Proxy, engine, test_image};

const POLICIES: &str = "  - {name: pod-security, module: builtin:pod-security, settings: {exclude: [hostPorts]}}\n  - {name: host-isolation, module: builtin:host-isolation}\n";

fn proxy() -> Proxy {
    test_image();
    Proxy::start("  max_body: 64KiB\n", POLICIES)
}

fn privileged(key: &str) -> String {
    format!(r#"{{"Image": "{IMAGE}", "Cmd": ["true"], "HostConfig": {{"{key}": true}}}}"#)
}

/// Asserts a create was refused and nothing by that name exists.
fn refused(proxy: &Proxy, (status, body): (u16, String), expected: u16, words: &str) {
    assert_eq!(status, expected, "{body}");
    assert!(body.contains(words), "expected {words:?} in {body}");
    assert!(body.starts_with("{\"message\":"), "a JSON message: {body}");
    let _ = proxy;
}

#[test]
fn json_read_differently_from_the_engine_is_refused() {
    let proxy = proxy();
    // Case variants reach the same field as in Go; the privilege is seen.
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &privileged("privileged")),
        403,
        "privileged (",
    );
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &privileged("PRIVILEGED")),
        403,
        "privileged (",
    );
    // Unicode folding: `ſ` is an `s` to Go.
    let folded = format!(r#"{{"Image": "{IMAGE}", "HostConfig": {{"Bind\u017f": ["/:/host"]}}}}"#);
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &folded),
        403,
        "hostPathVolumes (",
    );
    // Two keys for one field: which one would the engine take?
    let twice = format!(
        r#"{{"Image": "{IMAGE}", "HostConfig": {{"Privileged": false, "privileged": true}}}}"#
    );
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &twice),
        400,
        "both set this field",
    );
    let duplicate = format!(
        r#"{{"Image": "{IMAGE}", "HostConfig": {{"Privileged": false, "Privileged": true}}}}"#
    );
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &duplicate),
        400,
        "duplicate key",
    );
    // exec create is read the same way.
    refused(
        &proxy,
        proxy.post(
            "/v1.41/containers/anything/exec",
            r#"{"Cmd": ["sh"], "privileged": true}"#,
        ),
        403,
        "privilegedExec (",
    );
}

#[test]
fn every_spelling_of_the_create_path_is_judged() {
    let proxy = proxy();
    for path in [
        "/v1.41/containers/create",
        "/v1.41//containers/create",
        "/v1.41/containers/./create",
        "/v1.41/images/../containers/create",
        "/v1.41/containers%2Fcreate",
        "/v1.41/%63ontainers/create",
        "/v1.047/containers/create",
        "/containers/create",
        "//containers/create/",
    ] {
        refused(
            &proxy,
            proxy.post(path, &privileged("Privileged")),
            403,
            "privileged (",
        );
    }
    // What does not canonicalize is refused outright.
    for path in [
        "/v1.41/containers/%zzcreate",
        "/v1.41/../../containers/create",
        "/v1.4.1/containers/create",
    ] {
        let (status, body) = proxy.post(path, &privileged("Privileged"));
        assert_eq!(status, 400, "{path}: {body}");
    }
}

#[test]
fn framing_tricks_are_refused_or_judged_whole() {
    let proxy = proxy();
    let body = privileged("Privileged");
    // Chunked: read whole, judged.
    let chunked = format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        body.len() / 2,
        &body[..body.len() / 2],
        body.len() - body.len() / 2,
        &body[body.len() / 2..]
    );
    refused(&proxy, proxy.raw(chunked.as_bytes()), 403, "privileged (");
    // Both Content-Length and Transfer-Encoding.
    let both = format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    // hyper frames such a request by its chunks (RFC 9112 §6.3) and drops
    // the length; the proxy forwards with a length of its own. Either way
    // the whole body is what gets judged, never the two bytes.
    let (status, answer) = proxy.raw(both.as_bytes());
    assert!(
        status == 400 || (status == 403 && answer.contains("privileged (")),
        "{status}: {answer}"
    );
    // A body over the cap, with the privilege past the cap.
    let padded = format!(
        r#"{{"Image": "{IMAGE}", "Labels": {{"padding": "{}"}}, "HostConfig": {{"Privileged": true}}}}"#,
        "x".repeat(80 << 10)
    );
    let (status, body) = proxy.post("/v1.41/containers/create", &padded);
    assert_eq!(status, 413, "{body}");
    // A form-encoded body, which the engine would not read as JSON anyway.
    let form = "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\nConnection: close\r\n\r\nHostConfig=privileged";
    let (status, _) = proxy.raw(form.as_bytes());
    assert_eq!(status, 400);
    // A query parameter given twice: which name would the engine use?
    let (status, body) = proxy.post(
        "/v1.41/containers/create?name=a&name=b",
        &format!(r#"{{"Image": "{IMAGE}"}}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than once"), "{body}");
}

#[test]
fn configuration_smuggled_past_create_is_refused() {
    let proxy = proxy();
    let name = Name::new("plain");
    let created = proxy.post(
        &format!("/v1.41/containers/create?name={}", name.0),
        &format!(
            r#"{{"Image": "{IMAGE}", "Cmd": ["sleep", "300"], "HostConfig": {{"CgroupnsMode": "private"}}}}"#
        ),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    // A HostConfig on start (accepted by old API versions).
    let (status, body) = proxy.post(
        &format!("/v1.24/containers/{}/start", name.0),
        r#"{"Privileged": true}"#,
    );
    assert_eq!(status, 403, "{body}");
    // Devices added by update.
    let (status, body) = proxy.post(
        &format!("/v1.41/containers/{}/update", name.0),
        r#"{"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]}"#,
    );
    assert_eq!(status, 403, "{body}");
    // A volume whose driver options bind the host's root.
    let (status, body) = proxy.post(
        "/v1.41/volumes/create",
        r#"{"Name": "portcullis-e2e-sneaky", "Driver": "local", "DriverOpts": {"type": "none", "o": "bind", "device": "/"}}"#,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("hostPathVolumes ("), "{body}");
    // The same through a mount's volume options.
    let mount = format!(
        r#"{{"Image": "{IMAGE}", "HostConfig": {{"Mounts": [{{"Type": "volume", "Source": "sneaky", "Target": "/host", "VolumeOptions": {{"DriverConfig": {{"Name": "local", "Options": {{"type": "none", "o": "bind", "device": "/etc"}}}}}}}}]}}}}"#
    );
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &mount),
        403,
        "hostPathVolumes (",
    );
}

#[test]
fn borrowed_privileges_are_seen() {
    // A container with the host's root mounted and the host's network,
    // made directly on the engine as an administrator would.
    test_image();
    let owner = Name::new("owner");
    let made = engine(&[
        "run",
        "-d",
        "--name",
        &owner.0,
        "--network",
        "host",
        "-v",
        "/:/host",
        IMAGE,
        "sleep",
        "300",
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // A proxy that allows borrowing as such, and judges what is borrowed.
    let proxy = Proxy::start(
        "",
        "  - {name: pod-security, module: builtin:pod-security, settings: {exclude: [hostPorts]}}\n  - {name: host-isolation, module: builtin:host-isolation, settings: {allow_borrowing: true}}\n",
    );
    let volumes = format!(
        r#"{{"Image": "{IMAGE}", "HostConfig": {{"VolumesFrom": ["{}"]}}}}"#,
        owner.0
    );
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &volumes),
        403,
        "hostPathVolumes (",
    );
    let network = format!(
        r#"{{"Image": "{IMAGE}", "HostConfig": {{"NetworkMode": "container:{}"}}}}"#,
        owner.0
    );
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &network),
        403,
        "hostNamespaces (HostConfig.NetworkMode=host)",
    );
}

#[test]
fn host_paths_are_judged_where_they_lead() {
    test_image();
    // Host paths allowed in general; the sensitive ones are not, however
    // they are spelled.
    let proxy = Proxy::start(
        "",
        "  - {name: host-isolation, module: builtin:host-isolation}\n",
    );
    let dir = crate::support::scratch();
    let link = dir.path().join("innocent");
    std::os::unix::fs::symlink(crate::docker_support::engine_socket(), &link).expect("symlink");
    for bind in [
        format!("{}:/sock", link.display()),
        "/tmp/../var/run/docker.sock:/sock".to_owned(),
        "//etc//:/etc2".to_owned(),
    ] {
        let body = format!(r#"{{"Image": "{IMAGE}", "HostConfig": {{"Binds": ["{bind}"]}}}}"#);
        refused(
            &proxy,
            proxy.post("/v1.41/containers/create", &body),
            403,
            "sensitivePaths (",
        );
    }
    let relative = format!(
        r#"{{"Image": "{IMAGE}", "HostConfig": {{"Mounts": [{{"Type": "bind", "Source": "etc", "Target": "/etc2"}}]}}}}"#
    );
    refused(
        &proxy,
        proxy.post("/v1.41/containers/create", &relative),
        403,
        "not an absolute path",
    );
}

#[test]
fn images_cannot_be_passed_off_under_another_name() {
    let proxy = proxy();
    for (path, body) in [
        (
            format!("/v1.41/images/{IMAGE}/tag?repo=registry.example.com/trusted&tag=1"),
            "",
        ),
        ("/v1.41/images/load".to_owned(), ""),
        (
            "/v1.41/commit?container=anything&repo=registry.example.com/trusted".to_owned(),
            "{}",
        ),
        (
            "/v1.41/images/create?fromSrc=-&repo=registry.example.com/trusted".to_owned(),
            "",
        ),
    ] {
        let (status, answer) = proxy.post(&path, body);
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer.contains("image-import"), "{path}: {answer}");
    }
}

#[test]
fn leaks_and_unknown_writes_are_refused() {
    let proxy = proxy();
    for (method, path) in [
        ("GET", "/v1.41/containers/anything/archive?path=/"),
        ("HEAD", "/v1.41/containers/anything/archive?path=/"),
        ("GET", "/v1.41/containers/anything/export"),
        ("GET", "/v1.41/containers/anything/attach/ws"),
        ("POST", "/v1.41/plugins/pull?remote=x"),
        ("POST", "/v1.41/swarm/init"),
        ("POST", "/v1.41/frobnicate"),
        // BuildKit's own API, whose builds travel inside a gRPC stream.
        ("POST", "/v1.41/session"),
        ("POST", "/grpc"),
    ] {
        let (status, _) = proxy.raw(format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        assert_eq!(status, 403, "{method} {path}");
    }
    // A form body would give the engine parameters the proxy never saw in
    // the query: refused wherever it goes.
    for (path, body) in [
        ("/v1.41/build", "networkmode=host"),
        (
            "/v1.41/images/create?fromImage=portcullis-test/busybox&tag=1",
            "fromImage=elsewhere/evil",
        ),
        ("/v1.41/containers/anything/attach?stream=1", "stdin=1"),
    ] {
        for content_type in [
            "application/x-www-form-urlencoded",
            "Multipart/Form-Data; boundary=x",
        ] {
            let (status, answer) = proxy.raw(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            assert_eq!(status, 400, "{path} {content_type}: {answer}");
            assert!(answer.contains("bodies are refused"), "{answer}");
        }
    }
    // An unknown read goes through, and the engine answers it.
    let (status, _) = proxy
        .raw(b"GET /v1.41/no/such/thing HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 404);
}
