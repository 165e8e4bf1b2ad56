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
    /// A kubeconfig for the gateway: the identity of the ServiceAccount
    /// `portcullis` in namespace `admission` (what `portcullis manifests
    /// --namespace admission` binds its ClusterRole to), with nothing
    /// granted until a test applies RBAC, and the API server's own CA.
    pub(crate) gateway_kubeconfig: PathBuf,
    port: u16,
}

/// The administrator's token.
const ADMIN_TOKEN: &str = "portcullis-test-token";

/// The namespace and name of the ServiceAccount the gateway reads as.
pub(crate) const GATEWAY_NAMESPACE: &str = "admission";

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
        let token = ADMIN_TOKEN;
        let gateway_token = "portcullis-gateway-token";
        std::fs::write(
            path("tokens.csv"),
            format!(
                "{token},admin,admin,\"system:masters\"\n{gateway_token},system:serviceaccount:{GATEWAY_NAMESPACE}:portcullis,gateway,\"system:serviceaccounts,system:serviceaccounts:{GATEWAY_NAMESPACE}\"\n"
            ),
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
        // The serving certificate the API server made itself, with the CA
        // that signed it.
        let gateway_kubeconfig = path("gateway.kubeconfig");
        std::fs::write(
            &gateway_kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: apicerts/apiserver.crt\nusers:\n- name: gateway\n  user:\n    token: {gateway_token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: gateway}}\ncurrent-context: test\n"
            ),
        )
        .expect("write the gateway's kubeconfig");
        let plane = Self {
            etcd,
            apiserver,
            dir,
            kubeconfig,
            gateway_kubeconfig,
            port,
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

    /// Creates `objects` by POSTing each to `collection` (an API path such
    /// as `/api/v1/namespaces/bulk/configmaps`) over eight connections at
    /// once: far faster than kubectl, which throttles itself to a few
    /// requests a second.
    pub(crate) fn create_all(&self, collection: &str, objects: &[serde_json::Value]) {
        use http_body_util::{BodyExt as _, Full};
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(self.dir.path().join("apicerts/apiserver.crt")).expect("the CA");
        for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let _ = roots.add(certificate.expect("a certificate"));
        }
        let tls = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let port = self.port;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let bodies: Vec<bytes::Bytes> = objects
            .iter()
            .map(|object| bytes::Bytes::from(object.to_string()))
            .collect();
        runtime.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for part in bodies.chunks(bodies.len().div_ceil(8).max(1)) {
                let (part, tls, collection) = (part.to_vec(), tls.clone(), collection.to_owned());
                tasks.spawn(async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .expect("connect");
                    let name =
                        rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
                    let stream = tokio_rustls::TlsConnector::from(tls)
                        .connect(name, tcp)
                        .await
                        .expect("TLS");
                    let (mut sender, connection) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .expect("HTTP");
                    tokio::spawn(connection);
                    for body in part {
                        sender.ready().await.expect("ready");
                        let request = hyper::Request::post(&collection)
                            .header("host", format!("127.0.0.1:{port}"))
                            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .expect("a request");
                        let response = sender.send_request(request).await.expect("an answer");
                        let status = response.status();
                        let text = response
                            .into_body()
                            .collect()
                            .await
                            .expect("a body")
                            .to_bytes();
                        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&text));
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("a creating task");
            }
        });
    }

    /// Stops the API server (etcd keeps running): the cluster becomes
    /// unreachable.
    pub(crate) fn stop_apiserver(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
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
