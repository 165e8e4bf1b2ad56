//! A `portcullis serve` process for the webhook tests, with its own
//! certificates, and clients to talk to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use portcullis_load::{Connection, Target};
use serde_json::{Value, json};

use crate::support::{scratch, serve};

/// A running webhook.
pub(crate) struct Server {
    child: Child,
    /// Where it listens.
    pub(crate) address: SocketAddr,
    /// Its directory: `certs/` (ca.crt, tls.crt, tls.key) and the configuration.
    pub(crate) dir: tempfile::TempDir,
    /// Kept open so the process never writes to a closed pipe.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

/// Writes certificates for 127.0.0.1 into `dir`.
pub(crate) fn certificates(dir: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["certs", "--name", "127.0.0.1", "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("run portcullis certs");
    assert!(status.success());
}

/// Writes certificates for 127.0.0.1 and `portcullis.yaml` into `dir`: a
/// webhook on a free loopback port with extra `kubernetes` settings (YAML
/// lines, indented by two), other top-level `sections` (YAML lines) and
/// `policies` (YAML list items). Returns the configuration's path.
pub(crate) fn webhook_config(
    dir: &Path,
    kubernetes: &str,
    sections: &str,
    policies: &str,
) -> PathBuf {
    certificates(&dir.join("certs"));
    let config = dir.join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes:\n  listen: 127.0.0.1:0\n  tls: {{cert: certs/tls.crt, key: certs/tls.key}}\n{kubernetes}{sections}policies:\n{policies}"
        ),
    )
    .expect("write the configuration");
    config
}

impl Server {
    /// Starts a webhook with `policies` (YAML list items) and extra
    /// `kubernetes` settings (YAML lines, indented by two).
    pub(crate) fn start(policies: &str, kubernetes: &str) -> Self {
        let dir = scratch();
        let config = webhook_config(dir.path(), kubernetes, "", policies);
        Self::with_config(dir, &config)
    }

    /// Starts a webhook with a configuration file inside `dir`.
    pub(crate) fn with_config(dir: tempfile::TempDir, config: &Path) -> Self {
        let serving = serve(config, 1);
        let address = serving.addresses[0]
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("not an https listener: {:?}", serving.addresses))
            .parse()
            .expect("an address");
        Self {
            child: serving.child,
            address,
            dir,
            _stdout: serving.stdout,
        }
    }

    /// The certificate directory.
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// A client trusting the server's CA.
    pub(crate) fn target(&self) -> Target {
        Target::new(self.address, "127.0.0.1", &self.certs().join("ca.crt")).expect("a TLS client")
    }

    /// Opens a keep-alive connection.
    pub(crate) fn connect(&self) -> Client {
        let runtime = runtime();
        let connection = runtime
            .block_on(Connection::open(&self.target()))
            .expect("connect");
        Client {
            runtime,
            connection,
        }
    }

    /// Sends raw bytes over a fresh TLS connection and returns everything
    /// the server answers before closing it; `None` if it is still open
    /// after `wait`.
    pub(crate) fn raw(&self, bytes: &[u8], wait: Duration) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = self.target();
        runtime().block_on(async {
            let (mut tls, _) = target.connect().await.expect("connect");
            // The server may answer and close before all is written.
            let _ = tls.write_all(bytes).await;
            let _ = tls.flush().await;
            let mut answer = Vec::new();
            // A read error (a reset) ends the connection as surely as EOF.
            let _ = tokio::time::timeout(wait, tls.read_to_end(&mut answer))
                .await
                .ok()?;
            Some(String::from_utf8_lossy(&answer).into_owned())
        })
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit status.
    pub(crate) fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A blocking wrapper around one keep-alive connection.
pub(crate) struct Client {
    runtime: tokio::runtime::Runtime,
    /// The connection.
    pub(crate) connection: Connection,
}

impl Client {
    /// Posts `body` to `path`: the status and the body.
    pub(crate) fn post(&mut self, path: &str, body: impl Into<Bytes>) -> (u16, Bytes) {
        let body = body.into();
        self.runtime
            .block_on(self.connection.post(path, body))
            .expect("an answer")
    }

    /// GETs `path`: the status and the body.
    pub(crate) fn get(&mut self, path: &str) -> (u16, String) {
        let (status, body) = self
            .runtime
            .block_on(self.connection.send("GET", path, Bytes::new()))
            .expect("an answer");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Posts a review and returns its `response`.
    pub(crate) fn review(&mut self, path: &str, review: &Value) -> Value {
        let (status, body) = self.post(path, review.to_string());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["apiVersion"], review["apiVersion"],
            "answered in the version asked"
        );
        assert_eq!(
            answer["response"]["uid"], review["request"]["uid"],
            "the uid is echoed"
        );
        answer["response"].clone()
    }
}

/// An AdmissionReview `admission.k8s.io/v1` of a request.
pub(crate) fn review(
    operation: &str,
    (group, version, kind): (&str, &str, &str),
    resource: &str,
    sub_resource: Option<&str>,
    object: Value,
) -> Value {
    let mut request = json!({
        "uid": uuid_like(&object),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "namespace": "team-a",
        "name": "example",
        "operation": operation,
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": object,
    });
    if let Some(sub_resource) = sub_resource {
        request["subResource"] = json!(sub_resource);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// A review creating `pod` as a Pod.
pub(crate) fn pod_review(pod: Value) -> Value {
    review("CREATE", ("", "v1", "Pod"), "pods", None, pod)
}

/// A review creating a Deployment whose template is `pod`.
pub(crate) fn deployment_review(pod: &Value) -> Value {
    let deployment =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": template(pod)}});
    review(
        "CREATE",
        ("apps", "v1", "Deployment"),
        "deployments",
        None,
        deployment,
    )
}

/// A review creating a CronJob whose job's template is `pod`.
pub(crate) fn cronjob_review(pod: &Value) -> Value {
    let cronjob = json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template(pod)}}},
    });
    review(
        "CREATE",
        ("batch", "v1", "CronJob"),
        "cronjobs",
        None,
        cronjob,
    )
}

/// A pod's metadata and spec as a pod template.
fn template(pod: &Value) -> Value {
    json!({"metadata": pod["metadata"], "spec": pod["spec"]})
}

/// A distinct uid per object, so echoes are checked against the right one.
fn uuid_like(object: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.to_string().hash(&mut hasher);
    let hash = hasher.finish();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        hash >> 32,
        hash & 0xffff,
        hash & 0xfff,
        (hash >> 12) & 0xfff,
        hash & 0xffff_ffff_ffff
    )
}

/// The YAML of a pod fixture as JSON.
pub(crate) fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).expect("read")).expect("YAML")
}

/// The JSON Patch of an AdmissionReview response.
pub(crate) fn patch_of(answer: &Value) -> Value {
    let patch = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        answer["patch"].as_str().expect("a patch"),
    )
    .expect("base64");
    serde_json::from_slice(&patch).expect("JSON")
}

/// `portcullis manifests` with `args`, for the configuration and
/// certificates given; panics unless it succeeds.
pub(crate) fn manifests(config: &Path, certs: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("manifests")
        .arg("--config")
        .arg(config)
        .arg("--certs")
        .arg(certs)
        .args(args)
        .output()
        .expect("run portcullis manifests");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}
