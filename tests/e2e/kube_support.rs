//! A real Kubernetes control plane for the tests: Debian's `etcd` and the
//! `kube-apiserver` v1.20.2 of `../shared/kubernetes/` (built from Debian's
//! own source package), on free loopback ports, with its `kubectl` and a
//! kubeconfig. Each test gets its own, stopped when it is dropped.
//!
//! These tests need the control plane: `.ci/run` installs `etcd-server` and
//! builds the binaries with `../shared/kubernetes/build.sh` when the copy is
//! missing. Without them a test fails and says what is missing; it is never
//! skipped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{scratch, workspace};

/// The directory that holds `kube-apiserver` and `kubectl`:
/// `$PORTCULLIS_KUBERNETES`, else `../shared/kubernetes/` beside the
/// workspace, else what `build.sh` builds (`~/.cache/kubernetes-1.20.2`).
pub(crate) fn binaries() -> PathBuf {
    let candidates = [
        std::env::var_os("PORTCULLIS_KUBERNETES").map(PathBuf::from),
        Some(workspace().join("../shared/kubernetes")),
        Some(PathBuf::from("/work/shared/kubernetes")),
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kubernetes-1.20.2")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("kube-apiserver").is_file() && dir.join("kubectl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "no kube-apiserver and kubectl: set PORTCULLIS_KUBERNETES, or build them with ../shared/kubernetes/build.sh"
            )
        })
}

/// A free loopback port (bound and released: good enough for tests).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// etcd and an API server, running.
pub(crate) struct ControlPlane {
    etcd: Child,
    apiserver: Child,
    dir: tempfile::TempDir,
    /// The kubeconfig of a cluster administrator.
    pub(crate) kubeconfig: PathBuf,
}

/// What a kubectl run printed.
#[derive(Debug)]
pub(crate) struct Kubectl {
    /// Whether it exited 0.
    pub(crate) success: bool,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl ControlPlane {
    /// Starts etcd and the API server and waits until it is ready.
    pub(crate) fn start() -> Self {
        let dir = scratch();
        let path = |name: &str| dir.path().join(name);
        let log = |name: &str| std::fs::File::create(path(name)).expect("a log file");
        let (client, peer) = (free_port(), free_port());
        let etcd = Command::new("etcd")
            .arg("--data-dir")
            .arg(path("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(log("etcd.log"))
            .spawn()
            .expect("etcd is installed (apt-get install etcd-server)");

        // The service-account signing key: any key the API server reads.
        let key = rcgen::KeyPair::generate().expect("a key");
        std::fs::write(path("sa.key"), key.serialize_pem()).expect("write");
        std::fs::write(path("sa.pub"), key.public_key_pem()).expect("write");
        let token = "portcullis-test-token";
        std::fs::write(
            path("tokens.csv"),
            format!("{token},admin,admin,\"system:masters\"\n"),
        )
        .expect("write");
        let port = free_port();
        let apiserver = Command::new(binaries().join("kube-apiserver"))
            .arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", path("apicerts").display()))
            .arg("--allow-privileged=true")
            .arg(format!("--service-account-key-file={}", path("sa.pub").display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                path("sa.key").display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--token-auth-file={}", path("tokens.csv").display()))
            .args([
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--enable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                "--disable-admission-plugins=ServiceAccount",
            ])
            .stdout(Stdio::null())
            .stderr(log("kube-apiserver.log"))
            .spawn()
            .expect("start kube-apiserver");
        let kubeconfig = path("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: admin, namespace: default}}\ncurrent-context: test\n"
            ),
        )
        .expect("write the kubeconfig");
        let plane = Self {
            etcd,
            apiserver,
            dir,
            kubeconfig,
        };
        plane.wait_until_ready();
        plane
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = self.kubectl(&["get", "--raw", "/readyz"], None);
            if ready.success && ready.stdout.trim() == "ok" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the API server did not become ready: {ready:?}\n{}",
                self.log("kube-apiserver.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The tail of one of the control plane's logs.
    pub(crate) fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_owned()
    }

    /// Runs kubectl with `args`, `stdin` piped in when given.
    pub(crate) fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        use std::io::Write as _;
        let mut child = Command::new(binaries().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("write to kubectl");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("kubectl ends");
        Kubectl {
            success: status.success(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Applies `yaml` (`kubectl apply -f -` with `extra` arguments).
    pub(crate) fn apply(&self, yaml: &str, extra: &[&str]) -> Kubectl {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        self.kubectl(&args, Some(yaml))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
