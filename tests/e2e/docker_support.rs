//! The Docker proxy under test: a `portcullis serve` process with a
//! `docker` section in front of the machine's engine, the docker CLI
//! pointed at it, and a test image built locally (nothing can be pulled).

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::support::{Serving, scratch, serve, workspace};

/// The test image: busybox on an empty base.
pub(crate) const IMAGE: &str = "portcullis-test/busybox:1";

/// The engine's socket (`DOCKER_HOST` when it names one).
pub(crate) fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Runs the docker CLI against `socket`.
pub(crate) fn docker_at(socket: &Path, args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI is installed")
}

/// Runs the docker CLI against the engine directly.
pub(crate) fn engine(args: &[&str]) -> Output {
    docker_at(&engine_socket(), args)
}

/// Builds the test image once per run, from the host's static busybox.
pub(crate) fn test_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = scratch();
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .expect("a static busybox at /bin/busybox (Debian's busybox-static)");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"/bin/sh\"]\n",
        )
        .expect("write the Dockerfile");
        let built = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(dir.path())
            .env("DOCKER_HOST", format!("unix://{}", engine_socket().display()))
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("docker build");
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    });
    IMAGE
}

/// A container name unique to this test run, removed when dropped.
pub(crate) struct Name(pub(crate) String);

impl Name {
    pub(crate) fn new(what: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Self(format!(
            "portcullis-e2e-{}-{what}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = engine(&["rm", "-f", &self.0]);
    }
}

/// A running proxy.
pub(crate) struct Proxy {
    child: Child,
    /// Its (first) unix socket.
    pub(crate) socket: PathBuf,
    /// Where it listens, as it said on startup.
    pub(crate) addresses: Vec<String>,
    /// Its directory (configuration, audit log).
    pub(crate) dir: tempfile::TempDir,
    /// Kept open so the process never writes to a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Proxy {
    /// Starts a proxy in front of the engine with extra `docker` settings
    /// (YAML lines indented by two) and `policies` (YAML list items).
    pub(crate) fn start(docker: &str, policies: &str) -> Self {
        Self::with_upstream(&engine_socket(), docker, policies)
    }

    /// The same, in front of `upstream`.
    pub(crate) fn with_upstream(upstream: &Path, docker: &str, policies: &str) -> Self {
        Self::in_dir(scratch(), upstream, docker, policies)
    }

    /// The same, with its socket, configuration and audit log in `dir`.
    pub(crate) fn in_dir(
        dir: tempfile::TempDir,
        upstream: &Path,
        docker: &str,
        policies: &str,
    ) -> Self {
        let socket = dir.path().join("docker.sock");
        let config = dir.path().join("portcullis.yaml");
        std::fs::write(
            &config,
            format!(
                "docker:\n  listen: unix://{}\n  upstream: unix://{}\n  audit: audit.log\n{docker}policies:\n{policies}",
                socket.display(),
                upstream.display()
            ),
        )
        .expect("write the configuration");
        Self::with_config(dir, &config, socket)
    }

    /// Starts a proxy with a configuration file written by the test, whose
    /// one listener is the unix socket `socket`.
    pub(crate) fn with_config(dir: tempfile::TempDir, config: &Path, socket: PathBuf) -> Self {
        let proxy = Self::listening(dir, config, 1);
        assert_eq!(proxy.addresses, [format!("unix://{}", socket.display())]);
        proxy
    }

    /// Starts a proxy with a configuration of `listeners` listeners, the
    /// first a unix socket; `addresses` says where they are.
    pub(crate) fn listening(dir: tempfile::TempDir, config: &Path, listeners: usize) -> Self {
        let Serving {
            child,
            addresses,
            stdout,
        } = serve(config, listeners);
        let socket = addresses
            .first()
            .and_then(|address| address.strip_prefix("unix://"))
            .map(PathBuf::from)
            .expect("the first listener is a unix socket");
        Self {
            child,
            socket,
            addresses,
            dir,
            _stdout: stdout,
        }
    }

    /// A proxy configured by `policies/docker-hardening.yaml`, with its
    /// socket and audit log moved into a scratch directory and the
    /// `docker` settings of `extra` laid over it.
    pub(crate) fn hardened(extra: serde_json::Value) -> Self {
        test_image();
        let dir = scratch();
        let socket = dir.path().join("docker.sock");
        let shipped = std::fs::read_to_string(workspace().join("policies/docker-hardening.yaml"))
            .expect("read");
        let mut config: serde_json::Value = serde_saphyr::from_str(&shipped).expect("YAML");
        config["docker"]["listen"] = format!("unix://{}", socket.display()).into();
        config["docker"]["socket"] = serde_json::json!({"mode": "0600"});
        config["docker"]["audit"] = "audit.log".into();
        config["docker"]["upstream"] = format!("unix://{}", engine_socket().display()).into();
        if let serde_json::Value::Object(extra) = extra {
            for (key, value) in extra {
                config["docker"][key] = value;
            }
        }
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(&path, config.to_string()).expect("write");
        Self::with_config(dir, &path, socket)
    }

    /// Runs the docker CLI through the proxy.
    pub(crate) fn docker(&self, args: &[&str]) -> Output {
        docker_at(&self.socket, args)
    }

    /// Starts, through the proxy, a container named `name` that sleeps, as
    /// `user` when given, in a cgroup namespace of its own (which the
    /// engine may not give by default).
    pub(crate) fn sleeping(&self, name: &Name, user: Option<&str>) {
        let mut args = vec!["run", "--cgroupns", "private", "-d", "--name", &name.0];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        args.extend([IMAGE, "sleep", "300"]);
        succeeds(&self.docker(&args));
    }

    /// Sends a raw HTTP/1.1 request and returns the status and body.
    pub(crate) fn raw(&self, request: &[u8]) -> (u16, String) {
        raw_at(&self.socket, request)
    }

    /// A raw POST of a JSON body with a Content-Length.
    pub(crate) fn post(&self, path: &str, body: &str) -> (u16, String) {
        post_at(&self.socket, path, body)
    }

    /// The audit log so far.
    pub(crate) fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default()
    }
}

/// Sends a raw HTTP/1.1 request to `socket` and returns the status and body.
pub(crate) fn raw_at(socket: &Path, request: &[u8]) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A raw request of `method` with a JSON body, with a Content-Length.
pub(crate) fn send_at(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    raw_at(
        socket,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// A raw POST of a JSON body with a Content-Length.
pub(crate) fn post_at(socket: &Path, path: &str, body: &str) -> (u16, String) {
    send_at(socket, "POST", path, body)
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of an output, both streams.
pub(crate) fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts the docker CLI succeeded; returns what it printed.
pub(crate) fn succeeds(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the docker CLI failed with Portcullis's refusal, naming `words`.
pub(crate) fn refused(output: &Output, words: &str) {
    assert!(!output.status.success(), "{}", text(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Error response from daemon: portcullis:") && stderr.contains(words),
        "expected {words:?}: {}",
        text(output)
    );
}
