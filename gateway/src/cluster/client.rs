//! The gateway's own connection to the Kubernetes API server: credentials
//! from a kubeconfig or the pod's service account, TLS verified against the
//! cluster's CA (never skipped), and plain GETs whose bodies are read as
//! they arrive (lists page by page, watches event by event).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

/// The most of a refusal's body that is read for its message.
const MAX_REFUSAL_BYTES: usize = 64 << 10;

/// Where a pod's service account credentials are mounted.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why the credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig is not usable, or says something the gateway does not do.
    #[error("kubeconfig {}: {message}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The thread that keeps the caches current cannot start.
    #[error("cannot start the cluster cache's thread")]
    Thread(#[source] std::io::Error),
    /// Not in a pod, and no kubeconfig given.
    #[error(
        "no credentials to read the cluster with: set `cluster.kubeconfig`, or run in a pod with a service account (KUBERNETES_SERVICE_HOST is not set)"
    )]
    NotInCluster,
    /// rustls refused the certificates or key.
    #[error("{context}")]
    Tls {
        /// What was being set up.
        context: String,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// How requests are authenticated beyond a client certificate.
#[derive(Debug, Clone)]
enum Auth {
    None,
    Token(String),
    /// Read on every connection: projected service-account tokens rotate.
    TokenFile(PathBuf),
}

/// A client of one API server.
pub(crate) struct Client {
    /// `host:port`, for the TCP connection and the `Host` header.
    authority: String,
    /// A path prefix of the server URL (usually empty).
    prefix: String,
    server_name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    auth: Auth,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the credentials of `kubeconfig` (its `context`, or the
    /// current one), or, without one, of the pod's service account.
    pub(crate) fn new(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        match kubeconfig {
            Some(path) => Self::from_kubeconfig(path, context),
            None => Self::in_cluster(),
        }
    }

    /// The server, as `https://host:port`.
    pub(crate) fn server(&self) -> String {
        format!("https://{}{}", self.authority, self.prefix)
    }

    fn in_cluster() -> Result<Self, CredentialsError> {
        let host =
            std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| CredentialsError::NotInCluster)?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let ca = Path::new(SERVICE_ACCOUNT).join("ca.crt");
        let roots = read(&ca)?;
        let token = Path::new(SERVICE_ACCOUNT).join("token");
        read(&token)?;
        Self::build(
            &format!("https://{host}:{port}"),
            &roots,
            None,
            Auth::TokenFile(token),
            &ca,
        )
    }

    fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Self, CredentialsError> {
        let invalid = |message: String| CredentialsError::Kubeconfig {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Kubeconfig =
            serde_saphyr::from_str(&text).map_err(|error| invalid(error.to_string()))?;
        let context_name = context
            .map(str::to_owned)
            .or(config.current_context.clone())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| invalid("no context chosen and no current-context".into()))?;
        let context = named(&config.contexts, &context_name, "context")
            .map_err(invalid)?
            .context
            .clone();
        let cluster = &named(&config.clusters, &context.cluster, "cluster")
            .map_err(invalid)?
            .cluster;
        let user = match &context.user {
            Some(user) => named(&config.users, user, "user")
                .map_err(invalid)?
                .user
                .clone(),
            None => User::default(),
        };
        if cluster.insecure_skip_tls_verify {
            return Err(invalid(format!(
                "cluster `{}` sets insecure-skip-tls-verify; the gateway reads the cluster only over verified TLS: give certificate-authority or certificate-authority-data",
                context.cluster
            )));
        }
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(invalid(format!(
                "user `{}` authenticates with an exec or auth-provider plugin, which the gateway does not run; give a token, a token file or a client certificate",
                context.user.as_deref().unwrap_or_default()
            )));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let data =
            |inline: &Option<String>, file: &Option<PathBuf>, what: &str| match (inline, file) {
                (Some(inline), _) => base64::engine::general_purpose::STANDARD
                    .decode(inline.trim())
                    .map(Some)
                    .map_err(|error| invalid(format!("{what}-data is not base64: {error}"))),
                (None, Some(file)) => read(&base.join(file)).map(Some),
                (None, None) => Ok(None),
            };
        let roots = data(
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
            "certificate-authority",
        )?
        .ok_or_else(|| {
            invalid(format!(
                "cluster `{}` has no certificate-authority: the API server's certificate could not be verified",
                context.cluster
            ))
        })?;
        let certificate = data(
            &user.client_certificate_data,
            &user.client_certificate,
            "client-certificate",
        )?;
        let key = data(&user.client_key_data, &user.client_key, "client-key")?;
        let identity = match (certificate, key) {
            (Some(certificate), Some(key)) => Some((certificate, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "a client certificate needs both client-certificate and client-key".into(),
                ));
            }
        };
        let auth = match (user.token, user.token_file) {
            (Some(token), _) => Auth::Token(token),
            (None, Some(file)) => Auth::TokenFile(base.join(file)),
            (None, None) => Auth::None,
        };
        Self::build(&cluster.server, &roots, identity, auth, path)
    }

    fn build(
        server: &str,
        roots_pem: &[u8],
        identity: Option<(Vec<u8>, Vec<u8>)>,
        auth: Auth,
        origin: &Path,
    ) -> Result<Self, CredentialsError> {
        let invalid = |message: String| CredentialsError::Kubeconfig {
            path: origin.to_path_buf(),
            message,
        };
        let rest = server.strip_prefix("https://").ok_or_else(|| {
            invalid(format!(
                "server `{server}` is not an https:// URL; the gateway reads the cluster only over TLS"
            ))
        })?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => authority,
        };
        let authority = if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:443")
        } else {
            authority.to_owned()
        };
        let server_name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(|_| invalid(format!("server `{server}` has no valid host name")))?;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(roots_pem).filter_map(Result::ok) {
            // Bundles often carry the serving certificate beside its CA;
            // only certificates that can be trust anchors are kept.
            let _ = roots.add(certificate);
        }
        if roots.is_empty() {
            return Err(invalid(
                "the certificate authority holds no usable certificate".into(),
            ));
        }
        let tls_error = |context: &str| {
            let context = context.to_owned();
            move |source| CredentialsError::Tls { context, source }
        };
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(tls_error("cannot configure TLS to the API server"))?
        .with_root_certificates(roots);
        let mut config = match identity {
            Some((certificate, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&certificate)
                        .filter_map(Result::ok)
                        .collect();
                let key = PrivateKeyDer::from_pem_slice(&key)
                    .map_err(|_| invalid("the client key is not a PEM private key".into()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(tls_error("the client certificate is not usable"))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            authority,
            prefix: prefix.trim_end_matches('/').to_owned(),
            server_name,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            auth,
        })
    }

    /// Sends `GET path` (with its query) on a new connection and returns
    /// the response as soon as its head arrives.
    pub(crate) async fn get(&self, path: &str) -> Result<hyper::Response<Incoming>, String> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|error| format!("cannot connect to {}: {error}", self.server()))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|error| format!("TLS with {} failed: {error}", self.server()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|error| format!("HTTP with {} failed: {error}", self.server()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = hyper::Request::get(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            );
        match &self.auth {
            Auth::None => {}
            Auth::Token(token) => {
                request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            Auth::TokenFile(file) => {
                let token = read(file).map_err(|error| error.to_string())?;
                let token = String::from_utf8_lossy(&token).trim().to_owned();
                request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
            }
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|error| format!("cannot build the request for {path}: {error}"))?;
        sender
            .send_request(request)
            .await
            .map_err(|error| format!("GET {path} on {} failed: {error}", self.server()))
    }
}

/// Why the API server refused: the `message` of its Status, else the body.
pub(crate) async fn refusal(path: &str, response: hyper::Response<Incoming>) -> String {
    let status = response.status();
    let body = read_bounded(response.into_body(), MAX_REFUSAL_BYTES)
        .await
        .unwrap_or_else(Bytes::from);
    #[derive(Deserialize)]
    struct Status {
        message: String,
    }
    let detail = serde_json::from_slice::<Status>(&body)
        .map(|status| status.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    format!("the API server answered {status} to GET {path}: {detail}")
}

/// A whole body, refused past `limit` bytes.
pub(super) async fn read_bounded(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<bytes::Bytes, String> {
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| error.to_string())?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(format!("the body is larger than {limit} bytes"));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialsError> {
    std::fs::read(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn named<'a, T: Named>(items: &'a [T], name: &str, what: &str) -> Result<&'a T, String> {
    items
        .iter()
        .find(|item| item.name() == name)
        .ok_or_else(|| format!("no {what} named `{name}`"))
}

trait Named {
    fn name(&self) -> &str;
}

/// The parts of a kubeconfig the gateway reads; the rest is ignored, as
/// kubectl ignores what it does not use.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    exec: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    auth_provider: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize, Clone)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

impl Named for NamedCluster {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for NamedUser {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for NamedContext {
    fn name(&self) -> &str {
        &self.name
    }
}
