//! The Docker socket proxy, end to end: the real docker CLI, through the
//! proxy's socket, to the machine's engine.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::docker_support::{IMAGE, Name, Proxy, engine, succeeds, test_image, text};
use crate::support::scratch;

/// The policies of the shipped hardening configuration, and its access rules
/// plus `archive: write` so `docker cp` can be tried.
fn ordinary() -> Proxy {
    test_image();
    Proxy::start(
        "  access: {archive: write}\n",
        "  - {name: pod-security, module: builtin:pod-security, settings: {exclude: [hostPorts]}}\n  - {name: host-isolation, module: builtin:host-isolation}\n",
    )
}

#[test]
fn the_docker_cli_works_through_the_proxy() {
    let proxy = ordinary();
    for command in [&["version"][..], &["info"], &["ps", "-a"], &["images"]] {
        succeeds(&proxy.docker(command));
    }
    assert!(succeeds(&proxy.docker(&["images"])).contains("portcullis-test/busybox"));

    // run --rm, and stdin through the hijacked attach.
    assert_eq!(
        succeeds(&proxy.docker(&[
            "run",
            "--cgroupns",
            "private",
            "--rm",
            IMAGE,
            "echo",
            "hello"
        ])),
        "hello\n"
    );
    let mut cat = Command::new("docker")
        .args(["run", "--cgroupns", "private", "--rm", "-i", IMAGE, "cat"])
        .env("DOCKER_HOST", format!("unix://{}", proxy.socket.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker run -i");
    {
        use std::io::Write;
        let mut stdin = cat.stdin.take().expect("stdin");
        stdin.write_all(b"hi\n").expect("write");
    }
    let output = cat.wait_with_output().expect("wait");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi\n");

    // run -it under a pseudo-terminal: the exit status comes back through.
    let tty = Command::new("script")
        .args([
            "-eqc",
            &format!("docker run --rm -it --cgroupns private {IMAGE} sh -c 'tty; exit 3'"),
            "/dev/null",
        ])
        .env("DOCKER_HOST", format!("unix://{}", proxy.socket.display()))
        .stdin(Stdio::null())
        .output()
        .expect("script");
    assert_eq!(tty.status.code(), Some(3), "{}", text(&tty));
    assert!(
        String::from_utf8_lossy(&tty.stdout).contains("/dev/pts/"),
        "{}",
        text(&tty)
    );

    // create, start, exec, logs -f, stop, rm.
    let web = Name::new("web");
    succeeds(&proxy.docker(&[
        "create",
        "--cgroupns",
        "private",
        "--name",
        &web.0,
        IMAGE,
        "sh",
        "-c",
        "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
    ]));
    succeeds(&proxy.docker(&["start", &web.0]));
    assert_eq!(
        succeeds(&proxy.docker(&["exec", &web.0, "echo", "from exec"])),
        "from exec\n"
    );
    let mut logs = Command::new("docker")
        .args(["logs", "-f", &web.0])
        .env("DOCKER_HOST", format!("unix://{}", proxy.socket.display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker logs -f");
    let mut lines = BufReader::new(logs.stdout.take().expect("stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = 0;
    while seen < 15 {
        let line = lines
            .next()
            .expect("the log stream goes on")
            .expect("a line");
        assert!(line.starts_with("line "), "{line}");
        seen += 1;
        assert!(Instant::now() < deadline, "logs -f stalled");
    }
    let _ = logs.kill();
    let _ = logs.wait();

    // cp both ways (archive access is granted in this configuration).
    let dir = scratch();
    let local = dir.path().join("note.txt");
    std::fs::write(&local, "copied in\n").expect("write");
    succeeds(&proxy.docker(&[
        "cp",
        &local.display().to_string(),
        &format!("{}:/note.txt", web.0),
    ]));
    assert_eq!(
        succeeds(&proxy.docker(&["exec", &web.0, "cat", "/note.txt"])),
        "copied in\n"
    );
    let back = dir.path().join("back.txt");
    succeeds(&proxy.docker(&[
        "cp",
        &format!("{}:/note.txt", web.0),
        &back.display().to_string(),
    ]));
    assert_eq!(std::fs::read_to_string(&back).expect("read"), "copied in\n");

    succeeds(&proxy.docker(&["stop", "-t", "1", &web.0]));
    succeeds(&proxy.docker(&["rm", &web.0]));
    let after = succeeds(&proxy.docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={}", web.0),
        "--format",
        "{{.Names}}",
    ]));
    assert!(after.trim().is_empty(), "{after}");

    // build of a local context (the classic builder).
    let context = scratch();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN echo built > /built\n"),
    )
    .expect("write");
    let tag = format!("portcullis-test/built:{}", std::process::id());
    succeeds(&proxy.docker(&[
        "build",
        "-q",
        "-t",
        &tag,
        &context.path().display().to_string(),
    ]));
    assert_eq!(
        succeeds(&proxy.docker(&[
            "run",
            "--cgroupns",
            "private",
            "--rm",
            &tag,
            "cat",
            "/built"
        ])),
        "built\n"
    );
    let _ = engine(&["rmi", &tag]);
    // A build whose steps would run in the host's network is judged as a
    // container that would.
    let output = proxy.docker(&[
        "build",
        "-q",
        "--network",
        "host",
        &context.path().display().to_string(),
    ]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("hostNamespaces ("),
        "{}",
        text(&output)
    );

    // Every decision made it to the audit log as one JSON line.
    let audit = proxy.audit();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let create = lines
        .iter()
        .find(|line| {
            line["path"]
                .as_str()
                .is_some_and(|path| path.ends_with("/containers/create"))
        })
        .expect("a create was audited");
    assert_eq!(create["decision"], "allowed");
    assert_eq!(create["front_door"], "docker");
    assert!(
        create["client"]["name"]
            .as_str()
            .is_some_and(|name| name.starts_with("uid:")),
        "{create}"
    );
    assert!(create["pid"].as_i64().is_some(), "{create}");
    assert_eq!(
        create["policies"].as_array().map(Vec::len),
        Some(2),
        "{create}"
    );
}

#[test]
fn events_stream_until_stopped() {
    let proxy = ordinary();
    let mut events = Command::new("docker")
        .args([
            "events",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .env("DOCKER_HOST", format!("unix://{}", proxy.socket.display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker events");
    let name = Name::new("events");
    // The stream is open once the engine has answered; create until seen.
    let mut lines = BufReader::new(events.stdout.take().expect("stdout")).lines();
    succeeds(&proxy.docker(&[
        "create",
        "--cgroupns",
        "private",
        "--name",
        &name.0,
        IMAGE,
        "true",
    ]));
    let line = lines.next().expect("an event").expect("a line");
    assert!(
        line.contains(&name.0) || line.starts_with("create"),
        "{line}"
    );
    let _ = events.kill();
    let status = events.wait().expect("wait");
    assert!(!status.success(), "events ran until it was stopped");
    // The proxy serves on after the client went away mid-stream.
    succeeds(&proxy.docker(&["version"]));
}

#[test]
fn the_hardening_configuration_refuses_what_reaches_the_host() {
    let proxy = Proxy::hardened(serde_json::json!({}));
    let target = Name::new("target");
    proxy.sleeping(&target, Some("1000"));
    for (flags, reason) in [
        (&["--privileged"][..], "privileged ("),
        (&["-v", "/:/host"], "hostPathVolumes ("),
        (
            &["-v", "/var/run/docker.sock:/var/run/docker.sock"],
            "sensitivePaths (",
        ),
        (
            &["--pid", "host"],
            "hostNamespaces (HostConfig.PidMode=host)",
        ),
        (
            &["--network", "host"],
            "hostNamespaces (HostConfig.NetworkMode=host)",
        ),
        (&["--cap-add", "SYS_ADMIN"], "capabilities_baseline ("),
        (
            &["--security-opt", "seccomp=unconfined"],
            "seccompProfile_baseline (",
        ),
        (&["--device", "/dev/null"], "devices ("),
        (
            &["--pid", &format!("container:{}", target.0)],
            "borrowedNamespaces (",
        ),
        (&["--volumes-from", &target.0], "volumesFrom ("),
    ] {
        let mut args = vec!["run", "--rm", "--cgroupns", "private"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        let output = proxy.docker(&args);
        assert_eq!(
            output.status.code(),
            Some(125),
            "{flags:?}: {}",
            text(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("Error response from daemon: portcullis:"),
            "{flags:?}: {stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{flags:?}: expected {reason:?} in {stderr}"
        );
    }
    // Published ports are fine on Docker.
    succeeds(&proxy.docker(&[
        "run",
        "--cgroupns",
        "private",
        "--rm",
        "-p",
        "18080:80",
        IMAGE,
        "true",
    ]));

    // exec: privileged, as uid 0, or into a container running as root.
    for (flags, reason) in [
        (&["--privileged", "--user", "1000"][..], "privilegedExec ("),
        (&["-u", "0"], "rootExec ("),
    ] {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&target.0, "true"]);
        let output = proxy.docker(&args);
        assert!(!output.status.success(), "{flags:?}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(reason),
            "{flags:?}: {}",
            text(&output)
        );
    }
    succeeds(&proxy.docker(&["exec", "--user", "1000", &target.0, "true"]));
    let root = Name::new("root");
    proxy.sleeping(&root, None);
    let output = proxy.docker(&["exec", &root.0, "true"]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("rootExec ("),
        "{}",
        text(&output)
    );

    // Reads that leak, and ways to pass an image off under another name.
    for args in [
        &[
            "cp",
            &format!("{}:/bin/busybox", target.0),
            "/tmp/portcullis-e2e-leak",
        ][..],
        &["export", &target.0],
        &["tag", IMAGE, "portcullis-test/renamed:1"],
        &["commit", &target.0, "portcullis-test/committed:1"],
    ] {
        let output = proxy.docker(args);
        assert!(!output.status.success(), "{args:?}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("portcullis:"),
            "{args:?}: {}",
            text(&output)
        );
    }
    assert!(!std::path::Path::new("/tmp/portcullis-e2e-leak").exists());
}

#[test]
fn the_proxy_survives_the_engine_going_away() {
    test_image();
    // A relay stands in for the engine's socket, so the test can take the
    // engine away and bring it back.
    let dir = scratch();
    let relay_socket = dir.path().join("engine.sock");
    let mut relay = Relay::start(&relay_socket);
    let proxy = Proxy::with_upstream(
        &relay_socket,
        "",
        "  - {name: pod-security, module: builtin:pod-security}\n",
    );
    succeeds(&proxy.docker(&["ps"]));

    relay.stop();
    let output = proxy.docker(&["ps"]);
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("portcullis cannot reach the Docker engine"),
        "{stderr}"
    );

    let _relay = Relay::start(&relay_socket);
    succeeds(&proxy.docker(&["ps"]));
}

/// Forwards a unix socket to the engine's, in a thread of its own.
struct Relay {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(path: &std::path::Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path).expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = path.to_path_buf();
        let thread = std::thread::spawn(move || {
            let runtime = crate::webhook_support::runtime();
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).expect("tokio listener");
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((mut client, _)) = accepted else { continue };
                            tokio::spawn(async move {
                                if let Ok(mut engine) = tokio::net::UnixStream::connect(crate::docker_support::engine_socket()).await {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                                }
                            });
                        }
                        _ = &mut stopped => break,
                    }
                }
            });
            let _ = std::fs::remove_file(path);
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}
