//! The proxy itself: listeners, the per-request path, forwarding.
//!
//! For each request, in order, and why:
//! 1. the path is canonicalized (a path that does not decode cleanly is a
//!    400): every later step must see what the engine will route;
//! 2. the endpoint is classified and the access rules consulted for this
//!    client: most requests are decided here, cheaply;
//! 3. framing and media type are checked (Content-Length together with
//!    Transfer-Encoding, and form bodies, whose fields the engine would read
//!    as parameters, are refused): the request must mean one thing;
//! 4. an endpoint that creates or changes a workload has its query read
//!    strictly and its body read whole (up to the cap, whatever the
//!    framing), normalized, enriched from the engine (borrowed containers,
//!    an exec's user, host paths through symlinks) and judged by the
//!    pipeline; the exact bytes judged, or the patched object, are what is
//!    forwarded, with a Content-Length (a build is judged by its query, and
//!    its context streams on);
//! 5. everything else streams to the engine and back without buffering
//!    (chunks that arrive together leave together, see [`super::coalesce`]);
//!    attach and exec start become a raw tunnel once the engine has
//!    answered 101, each direction closing on its own.
//!
//! A refusal made before the body was read still reads (and drops) what
//! the client sends, so that it gets the answer rather than a broken pipe.
//!
//! Denials are 403 with `{"message": …}`, which the docker CLI prints as
//! `Error response from daemon: …`.

use std::cell::Cell;
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Mutex;
use tokio_rustls::TlsAcceptor;

use super::access::AccessRules;
use super::coalesce::{Coalesce, ENGINE_TURNS};
use super::headers;
use super::limit::ConnectionLimit;
use super::lookup::EngineView;
use super::path::{self, CanonicalPath};
use super::route::{self, Group, Inspect, Route};
use super::upstream::{Driver, Upstream};
use crate::admission::docker::fields::Accept;
use crate::admission::docker::{Engine, Lookups, Reading, plugin};
use crate::admission::{
    self, Decision, NormalizeError, Operation, Phase, Pipeline, Request, UserInfo,
};
use crate::config::{DockerConfig, Endpoint, SocketConfig};
use crate::telemetry::audit::{Audit, Entry};
use crate::verify::Verifier;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;
type Response = hyper::Response<Body>;

/// Headers that belong to one hop, not to the request (RFC 9110 §7.6.1).
/// `Connection` and `Upgrade` are kept on hijacking endpoints, where they
/// ask the engine for the raw stream.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// The proxy's state, shared by every connection.
pub struct Proxy {
    pipeline: Arc<Pipeline>,
    verifier: Option<Arc<Verifier>>,
    engine: EngineView,
    access: AccessRules,
    max_body: u64,
    audit: Option<Audit>,
    unjudged_fields: Vec<String>,
    client_timeout: std::time::Duration,
    idle_timeout: std::time::Duration,
    connections: Arc<ConnectionLimit>,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// As policies and access rules see it.
    pub identity: UserInfo,
    /// The client's process, for unix-socket peers.
    pub pid: Option<i32>,
}

impl Client {
    /// A unix-socket peer: `uid:<n>`, in group `gid:<n>`.
    fn unix(credentials: Option<tokio::net::unix::UCred>) -> Self {
        match credentials {
            Some(credentials) => Self {
                identity: UserInfo {
                    name: format!("uid:{}", credentials.uid()),
                    uid: credentials.uid().to_string(),
                    groups: vec![format!("gid:{}", credentials.gid())],
                },
                pid: credentials.pid(),
            },
            None => Self {
                identity: UserInfo {
                    name: "unknown".into(),
                    ..UserInfo::default()
                },
                pid: None,
            },
        }
    }

    /// A certificate holder: `cn:<common name>`, in groups `o:<organization>`.
    fn certificate(der: &[u8]) -> Self {
        let mut identity = UserInfo {
            name: "unknown".into(),
            ..UserInfo::default()
        };
        if let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) {
            let subject = certificate.subject();
            if let Some(name) = subject
                .iter_common_name()
                .next()
                .and_then(|name| name.as_str().ok())
            {
                identity.name = format!("cn:{name}");
            }
            identity.groups = subject
                .iter_organization()
                .filter_map(|organization| organization.as_str().ok())
                .map(|organization| format!("o:{organization}"))
                .collect();
            identity.uid = subject.to_string();
        }
        Self {
            identity,
            pid: None,
        }
    }
}

impl Proxy {
    /// A proxy for the `docker` section of the configuration.
    pub fn new(
        pipeline: Arc<Pipeline>,
        verifier: Option<Arc<Verifier>>,
        config: &DockerConfig,
    ) -> Result<Self, BoxError> {
        Ok(Self {
            pipeline,
            verifier,
            engine: EngineView::new(Upstream::new(
                &config.upstream,
                config.upstream_tls.as_ref(),
            )?),
            access: AccessRules::new(config.access.clone()),
            max_body: config.max_body,
            audit: config
                .audit
                .as_ref()
                .map(Audit::open)
                .transpose()
                .map_err(|error| format!("cannot open the audit log: {error}"))?,
            unjudged_fields: config.unjudged_fields.clone(),
            client_timeout: config.client_timeout,
            idle_timeout: config.idle_timeout,
            connections: Arc::new(ConnectionLimit::new(config.max_connections_per_client)),
        })
    }
}

/// A bound listener.
enum Listener {
    /// A unix socket; peers are identified by their credentials.
    Unix(UnixListener),
    /// TCP with mutual TLS; peers are identified by their certificates.
    Tls(TcpListener, TlsAcceptor),
}

impl Listener {
    /// Where it listens, as `unix:///path` or `tcp://address`.
    fn address(&self) -> String {
        match self {
            Listener::Unix(listener) => listener
                .local_addr()
                .ok()
                .and_then(|address| {
                    address
                        .as_pathname()
                        .map(|path| format!("unix://{}", path.display()))
                })
                .unwrap_or_else(|| "unix://?".into()),
            Listener::Tls(listener, _) => listener
                .local_addr()
                .map_or_else(|_| "tcp://?".into(), |address| format!("tcp://{address}")),
        }
    }
}

/// Binds a unix socket with the configured mode and group, replacing a
/// stale socket left by an earlier run (never any other kind of file).
fn bind_unix(path: &Path, socket: &SocketConfig) -> Result<UnixListener, BoxError> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", path.display()).into());
        }
        std::fs::remove_file(path)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|error| format!("cannot listen on {}: {error}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket.mode))?;
    if let Some(group) = &socket.group {
        let gid = group_id(group).ok_or_else(|| format!("no group `{group}` on this machine"))?;
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
            .map_err(|error| format!("cannot give {} to group {group}: {error}", path.display()))?;
    }
    Ok(listener)
}

/// A group's id, by number or by name from `/etc/group`.
fn group_id(group: &str) -> Option<u32> {
    group.parse().ok().or_else(|| {
        std::fs::read_to_string("/etc/group")
            .ok()?
            .lines()
            .find_map(|line| {
                let mut fields = line.split(':');
                (fields.next()? == group).then(|| fields.nth(1)?.parse().ok())?
            })
    })
}

/// Binds every configured listener.
async fn bind(
    config: &DockerConfig,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<Vec<Listener>, BoxError> {
    let mut listeners = Vec::new();
    for endpoint in &config.listen {
        listeners.push(match endpoint {
            Endpoint::Unix(path) => Listener::Unix(bind_unix(path, &config.socket)?),
            Endpoint::Tcp(address) => {
                let tls = tls.ok_or("a tcp:// listener needs TLS")?;
                let listener = TcpListener::bind(address)
                    .await
                    .map_err(|error| format!("cannot listen on {address}: {error}"))?;
                Listener::Tls(listener, TlsAcceptor::from(tls.clone()))
            }
        });
    }
    Ok(listeners)
}

/// Binds the listeners and serves them on a thread of the proxy's own, with
/// a single-threaded runtime, until `shutdown` completes; returns where it
/// listens and what completes when it has stopped.
///
/// Docker API traffic is light, and one thread keeps each hop of a stream
/// (engine, proxy, client) on one core with no wake-ups between threads;
/// policy evaluations still run on the blocking pool.
pub async fn start(
    proxy: Arc<Proxy>,
    config: DockerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(Vec<String>, impl std::future::Future<Output = ()>), BoxError> {
    let (ready, listening) = tokio::sync::oneshot::channel::<Result<Vec<String>, BoxError>>();
    let thread = std::thread::Builder::new()
        .name("portcullis-docker".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready.send(Err(error.into()));
                    return;
                }
            };
            runtime.block_on(async move {
                match bind(&config, tls.as_ref()).await {
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                    Ok(listeners) => {
                        let _ = ready.send(Ok(listeners.iter().map(Listener::address).collect()));
                        // Learn the engine at once, so the first judged
                        // request need not, and say what it is.
                        let asking = proxy.clone();
                        tokio::spawn(async move {
                            match asking.engine.facts().await {
                                Ok(engine) => tracing::info!(
                                    release = ?engine.release,
                                    api = ?engine.api,
                                    cgroup_version = engine.cgroup_version,
                                    seccomp = engine.seccomp,
                                    apparmor = engine.apparmor,
                                    private_cgroupns = engine.private_cgroupns,
                                    "the Docker engine requests are judged for"
                                ),
                                Err(message) => tracing::warn!("{message}"),
                            }
                        });
                        serve(proxy, listeners, shutdown).await;
                    }
                }
            });
        })?;
    let addresses = listening
        .await
        .map_err(|_| "the Docker proxy's thread ended before listening")??;
    let stopped = async move {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    };
    Ok((addresses, stopped))
}

/// Serves every listener until `shutdown` completes, then lets requests
/// in flight finish (streams that never end, such as `docker events`, are
/// cut after [`DRAIN_TIMEOUT`]).
async fn serve(
    proxy: Arc<Proxy>,
    listeners: Vec<Listener>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (connections, mut accepted) = tokio::sync::mpsc::channel::<(Box<dyn Io>, Client)>(64);
    let acceptors: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept(listener, connections.clone(), proxy.client_timeout)))
        .collect();
    drop(connections);
    let mut running = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            next = accepted.recv() => {
                let Some((stream, client)) = next else { break };
                let counted = ConnectionLimit::admit(&proxy.connections, &client.identity.name);
                let mut stopping = stopping.clone();
                let mut http = hyper::server::conn::http1::Builder::new();
                // Clients may close their side once the request is sent
                // and still expect the answer. The header timeout runs
                // whenever the connection waits for a request head, so it
                // is the idle timeout too.
                http.half_close(true)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(proxy.idle_timeout);
                let Some(counted) = counted else {
                    // One answer, then the connection closes.
                    let message = format!(
                        "portcullis: {} holds {} connections already, as many as a client may",
                        client.identity.name, proxy.connections.most()
                    );
                    http.keep_alive(false);
                    let service = hyper::service::service_fn(move |_request| {
                        let answer = refusal(StatusCode::TOO_MANY_REQUESTS, &message);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    running.spawn(async move {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    });
                    continue;
                };
                let (drivers, driven) = tokio::sync::mpsc::unbounded_channel();
                let session = Arc::new(Session {
                    proxy: proxy.clone(),
                    client,
                    engine: Mutex::new(None),
                    drivers,
                });
                let service = hyper::service::service_fn(move |request| {
                    let session = session.clone();
                    async move { Ok::<_, Infallible>(session.handle(request).await) }
                });
                let serving = async move {
                    let _counted = counted;
                    let connection = http
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades();
                    tokio::pin!(connection);
                    tokio::select! {
                        result = connection.as_mut() => {
                            if let Err(error) = result {
                                tracing::debug!("client connection ended: {error}");
                            }
                            return;
                        }
                        _ = stopping.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
                    }
                    let _ = connection.await;
                };
                running.spawn(run_session(serving, driven));
            }
            // Reap finished connections as they go, not at shutdown.
            Some(_) = running.join_next(), if !running.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    for acceptor in acceptors {
        acceptor.abort();
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while running.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::info!("streams still open after {DRAIN_TIMEOUT:?} were cut");
    }
}

/// How long requests in flight may take to finish at shutdown.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A client's byte stream, whichever listener it came through.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

async fn accept(
    listener: Listener,
    connections: tokio::sync::mpsc::Sender<(Box<dyn Io>, Client)>,
    handshake_timeout: std::time::Duration,
) {
    loop {
        let accepted: Result<(Box<dyn Io>, Client), BoxError> = match &listener {
            Listener::Unix(listener) => match listener.accept().await {
                Ok((stream, _)) => {
                    let client = Client::unix(stream.peer_cred().ok());
                    Ok((Box::new(stream), client))
                }
                Err(error) => Err(error.into()),
            },
            Listener::Tls(listener, acceptor) => match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let connections = connections.clone();
                    // The handshake happens off the accept loop, so a slow
                    // client holds up nobody else.
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                        if let Ok(Ok(stream)) = handshake.await {
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first().cloned());
                            let client = certificate.map_or_else(
                                || Client::unix(None),
                                |der| Client::certificate(&der),
                            );
                            let _ = connections.send((Box::new(stream), client)).await;
                        }
                    });
                    continue;
                }
                Err(error) => Err(error.into()),
            },
        };
        match accepted {
            Ok(connection) => {
                if connections.send(connection).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// One client connection, and the engine connection its requests reuse.
///
/// The engine connection runs in the same task as the client's (its driver
/// goes to [`run_session`]): a streamed answer then passes from one to the
/// other without waking another thread for every chunk.
struct Session {
    proxy: Arc<Proxy>,
    client: Client,
    engine: Mutex<Option<SendRequest<Body>>>,
    drivers: tokio::sync::mpsc::UnboundedSender<Driver>,
}

/// Runs a session: the client's connection (`serving`), then the engine
/// connections `drivers` receives, in that order at each wake-up — a
/// streamed answer's next chunk is decoded right after the last one was
/// taken, and counted as a turn for [`Coalesce`] — until all have ended.
async fn run_session(
    serving: impl std::future::Future<Output = ()>,
    mut drivers: tokio::sync::mpsc::UnboundedReceiver<Driver>,
) {
    let mut serving = std::pin::pin!(serving);
    let mut served = false;
    let mut running: Vec<Driver> = Vec::new();
    let mut open = true;
    let session = std::future::poll_fn(|cx| {
        if !served {
            served = serving.as_mut().poll(cx).is_ready();
        }
        while open {
            match drivers.poll_recv(cx) {
                Poll::Ready(Some(driver)) => running.push(driver),
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        running.retain_mut(|driver| driver.as_mut().poll(cx).is_pending());
        ENGINE_TURNS.with(|turns| turns.set(turns.get() + 1));
        if served && !open && running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    ENGINE_TURNS.scope(Cell::new(0), session).await;
}

/// A refusal: status, message, and the decision behind it when policies
/// made it.
struct Refusal {
    status: StatusCode,
    message: String,
    decision: Option<Box<Decision>>,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Self {
        Self {
            status,
            message,
            decision: None,
        }
    }
}

impl Session {
    async fn handle(&self, mut request: hyper::Request<Incoming>) -> Response {
        let started = Instant::now();
        let method = request.method().clone();
        let canonical = match CanonicalPath::parse(request.uri().path()) {
            Ok(canonical) => canonical,
            Err(error) => {
                let path = request.uri().path().to_owned();
                discard(request.into_body(), self.proxy.max_body).await;
                return self.refuse(
                    &method,
                    &path,
                    started,
                    Refusal::new(StatusCode::BAD_REQUEST, error.to_string()),
                );
            }
        };
        let path = canonical.to_string();
        let mut route = route::classify(&method, &canonical, false);
        // The upgrade must be claimed before the request is taken apart.
        let client_upgrade = route.hijack.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        match self.prepare(&mut parts, body, &canonical, &mut route).await {
            Err(refusal) => self.refuse(&method, &path, started, refusal),
            Ok((body, decision)) => {
                if let Some(audit) = &self.proxy.audit {
                    let entry = Entry {
                        pid: self.client.pid,
                        ..Entry::new("docker", &self.client.identity, method.as_str(), &path)
                    };
                    let entry = match &decision {
                        Some(decision) => entry.decision(decision),
                        None => entry,
                    };
                    audit.record(entry, started.elapsed());
                }
                self.forward(parts, body, &canonical, &route, client_upgrade)
                    .await
            }
        }
    }

    /// Step 2, what the request line and headers alone decide: the query of
    /// an inspected request (the route is refined by it), or why not.
    fn check_head(
        &self,
        parts: &hyper::http::request::Parts,
        canonical: &CanonicalPath,
        route: &mut Route,
    ) -> Result<Vec<(String, String)>, Refusal> {
        let forbidden = |message: String| Refusal::new(StatusCode::FORBIDDEN, message);
        let bad = |message: String| Refusal::new(StatusCode::BAD_REQUEST, message);
        // The query matters to what is judged, and to the names images are
        // given (`repo` of a tag, commit or import).
        let query = if route.inspect == Inspect::Nothing && route.group != Group::ImageImport {
            Vec::new()
        } else {
            // A build reads every `t` it is given: every one is judged.
            let repeatable: &[&str] = if route.inspect == Inspect::Build {
                &["t"]
            } else {
                &[]
            };
            path::parse_query(parts.uri.query(), repeatable)
                .map_err(|error| bad(error.to_string()))?
        };
        if route.inspect == Inspect::ImagePull && path::query_value(&query, "fromSrc").is_some() {
            *route = route::classify(&parts.method, canonical, true);
        }
        let identity = &self.client.identity;
        if !self.proxy.access.allows(route.group, route.read, identity) {
            return Err(forbidden(format!(
                "portcullis: {} may not {} {} endpoints (access rule for `{}`)",
                identity.name,
                if route.read { "read" } else { "use" },
                route.group.as_str(),
                route.group.as_str()
            )));
        }
        if let Inspect::Refuse(why) = route.inspect {
            return Err(forbidden(format!("portcullis: {why}")));
        }
        let headers = &parts.headers;
        // hyper already frames such a request by its chunks and drops the
        // length; refusing here keeps that true whatever the HTTP layer does.
        if headers.contains_key(CONTENT_LENGTH) && headers.contains_key(TRANSFER_ENCODING) {
            return Err(bad(
                "a request with both Content-Length and Transfer-Encoding is ambiguous".into(),
            ));
        }
        let media_type =
            headers::media_type(headers).map_err(|error| bad(format!("portcullis: {error}")))?;
        // The engine reads a form body's fields as query parameters (Go's
        // `ParseForm`), over those in the URL; the docker CLI never sends one.
        if headers::is_form(&media_type) {
            return Err(bad(format!(
                "portcullis: `{media_type}` bodies are refused: the engine would read parameters from them"
            )));
        }
        if matches!(route.inspect, Inspect::Nothing | Inspect::Build) {
            return Ok(query);
        }
        // Restoring a checkpoint reads the container's state from a host
        // directory the client names.
        if route.inspect == Inspect::ContainerStart
            && ["checkpoint", "checkpoint-dir"]
                .iter()
                .any(|key| path::query_value(&query, key).is_some_and(|value| !value.is_empty()))
        {
            return Err(forbidden(
                "portcullis: a container is not started from a checkpoint, which restores it from a host directory".into(),
            ));
        }
        // An inspected request, to be read whole as the engine will.
        if !matches!(media_type.as_str(), "" | "application/json" | "text/plain") {
            return Err(bad(format!(
                "portcullis reads this endpoint's body as JSON; `{media_type}` bodies are refused"
            )));
        }
        Ok(query)
    }

    /// Steps 2 to 4: the body to forward (streamed, or the bytes judged) and
    /// the decision, or why not.
    async fn prepare(
        &self,
        parts: &mut hyper::http::request::Parts,
        body: Incoming,
        canonical: &CanonicalPath,
        route: &mut Route,
    ) -> Result<(Body, Option<Decision>), Refusal> {
        let query = match self.check_head(parts, canonical, route) {
            Ok(query) => query,
            Err(refusal) => {
                discard(body, self.proxy.max_body).await;
                return Err(refusal);
            }
        };
        let forbidden = |message: String| Refusal::new(StatusCode::FORBIDDEN, message);
        // A name that only verified images may carry cannot be given to a
        // local image (tag, commit, import, or a build's `t`): what runs
        // under it is pinned anyway, and the attempt says what it is. A name
        // that cannot be read as every spelling of it is refused too.
        if let Some(verifier) = &self.proxy.verifier {
            let names: Vec<&str> = match (route.group, &route.inspect) {
                (Group::ImageImport, _) => path::query_value(&query, "repo").into_iter().collect(),
                (_, Inspect::Build) => query
                    .iter()
                    .filter(|(key, _)| key == "t")
                    .map(|(_, value)| value.as_str())
                    .collect(),
                _ => Vec::new(),
            };
            for name in names {
                let refusal = match verifier.governing(name) {
                    Ok(None) => continue,
                    Ok(Some(rule)) => format!(
                        "portcullis: {name} is governed by image rule `{rule}`: only verified images from its registry may carry that name, not a local tag, commit, import or build"
                    ),
                    Err(error) => {
                        format!("portcullis: {name} cannot be given to a local image: {error}")
                    }
                };
                discard(body, self.proxy.max_body).await;
                return Err(forbidden(refusal));
            }
        }
        if route.inspect == Inspect::Nothing {
            return Ok((body.map_err(BoxError::from).boxed(), None));
        }
        // Every judgement reads the request for the engine it goes to.
        let engine = match self.proxy.engine.facts().await {
            Ok(engine) => engine,
            Err(message) => {
                discard(body, self.proxy.max_body).await;
                return Err(Refusal::new(StatusCode::BAD_GATEWAY, message));
            }
        };
        if route.inspect == Inspect::Build {
            // Judged by its parameters; the context streams on.
            let (build, lookups) =
                admission::docker::build(&query, &self.reading(&engine, canonical));
            let judged = match self.judge(build, &lookups, &engine).await {
                Ok(decision) if decision.patch.is_some() => Err(forbidden(
                    "portcullis: the policies would change this build, and a build's parameters cannot be patched".into(),
                )),
                judged => judged,
            };
            return match judged {
                Ok(decision) => Ok((body.map_err(BoxError::from).boxed(), Some(decision))),
                Err(refusal) => {
                    // Let the client finish sending its context.
                    discard(body, BUILD_CONTEXT_DRAIN).await;
                    Err(refusal)
                }
            };
        }
        let bytes = self.read_body(body).await?;
        let (admission, lookups) = self
            .read_request(parts, route, &query, canonical, bytes.clone(), &engine)
            .await?;
        let Some(admission) = admission else {
            return Ok((full(bytes), None));
        };
        let decision = self.judge(admission, &lookups, &engine).await?;
        if route.inspect == Inspect::ImagePull {
            self.pull_as_verified(parts, &query);
        }
        // What is forwarded is what was judged: the bytes read, or the
        // object with the policies' patch applied (off this thread: the
        // object may be as large as the body cap).
        let forwarded = match &decision.patch {
            None => bytes,
            Some(patch) => {
                let patch = patch.clone();
                let limits = self.proxy.pipeline.patch_limits();
                let patched = tokio::task::spawn_blocking(move || {
                    let mut object: serde_json::Value =
                        serde_json::from_slice(&bytes).map_err(|error| error.to_string())?;
                    admission::patch::apply(&mut object, bytes.len(), &patch, limits)
                        .map(Bytes::from)
                })
                .await
                .map_err(|_| evaluation_failed())?;
                patched.map_err(|error| {
                    Refusal::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("portcullis: cannot apply the policies' patch: {error}"),
                    )
                })?
            }
        };
        Ok((full(forwarded), Some(decision)))
    }

    /// With image rules, a pull is sent under the image's canonical name:
    /// the name a create is pinned to, so the image a client pulls under
    /// another spelling (`LOCALHOST:05000/app`) is the one its create finds.
    fn pull_as_verified(
        &self,
        parts: &mut hyper::http::request::Parts,
        query: &[(String, String)],
    ) {
        let Some(image) = path::query_value(query, "fromImage") else {
            return;
        };
        if self.proxy.verifier.is_none() {
            return;
        }
        let tag = path::query_value(query, "tag").unwrap_or_default();
        let written = image_reference(image, tag);
        let Ok(reference) = crate::verify::reference::Reference::parse(&written) else {
            return;
        };
        let canonical = reference.to_string();
        if canonical == written {
            return;
        }
        let mut rewritten = form_urlencoded::Serializer::new(String::new());
        rewritten.append_pair("fromImage", &canonical);
        for (key, value) in query
            .iter()
            .filter(|(key, _)| key != "fromImage" && key != "tag")
        {
            rewritten.append_pair(key, value);
        }
        let uri = format!("{}?{}", parts.uri.path(), rewritten.finish());
        if let Ok(uri) = uri.parse() {
            parts.uri = uri;
        }
    }

    /// How requests from this client are read for `engine`.
    fn reading<'a>(&'a self, engine: &'a Engine, canonical: &CanonicalPath) -> Reading<'a> {
        Reading {
            engine,
            version: canonical.version,
            accept: Accept::Listed(&self.proxy.unjudged_fields),
        }
    }

    /// Step 4's reading: the admission request a body makes, with what to
    /// look up on the engine, or `None` when it is forwarded unjudged (a
    /// start or update that changes nothing the policies judge). Parsing
    /// runs on the blocking pool, so a body built to be slow to read holds
    /// up no other client.
    async fn read_request(
        &self,
        parts: &hyper::http::request::Parts,
        route: &Route,
        query: &[(String, String)],
        canonical: &CanonicalPath,
        bytes: Bytes,
        engine: &Arc<Engine>,
    ) -> Result<(Option<Request>, Lookups), Refusal> {
        let forbidden = |message: String| Refusal::new(StatusCode::FORBIDDEN, message);
        // Even checking the text is work in proportion to the body: on the
        // blocking pool, as everything below that reads it.
        let text: Arc<str> = tokio::task::spawn_blocking(move || {
            std::str::from_utf8(&bytes)
                .map(Arc::from)
                .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "the body is not UTF-8".into()))
        })
        .await
        .map_err(|_| evaluation_failed())??;
        // What only the engine can say, asked before the body is read.
        let mut exec_target = None;
        let mut network_template = None;
        let mut plugin_required = None;
        match &route.inspect {
            Inspect::ExecCreate { container } => {
                exec_target = Some(self.proxy.engine.exec_target(container).await);
            }
            Inspect::NetworkCreate => {
                let body = text.clone();
                let name = tokio::task::spawn_blocking(move || {
                    admission::docker::network_template_name(&body)
                })
                .await
                .map_err(|_| evaluation_failed())?
                .map_err(|error| cannot_read(&error))?;
                if let Some(name) = name {
                    network_template = self.proxy.engine.network_template(&name).await;
                }
            }
            Inspect::PluginPrivileges => {
                let remote = path::query_value(query, "remote").unwrap_or_default();
                let required = self
                    .proxy
                    .engine
                    .plugin_privileges(remote, parts.headers.get("x-registry-auth"))
                    .await
                    .map_err(|message| Refusal::new(StatusCode::BAD_GATEWAY, message))?;
                plugin_required = Some((remote.to_owned(), required.to_string()));
            }
            _ => {}
        }
        let inspect = route.inspect.clone();
        let query = query.to_vec();
        let version = canonical.version;
        let engine = engine.clone();
        let accepted = self.proxy.unjudged_fields.clone();
        tokio::task::spawn_blocking(move || {
            let reading = Reading {
                engine: &engine,
                version,
                accept: Accept::Listed(&accepted),
            };
            let none = Lookups::default();
            let read = match inspect {
                Inspect::ContainerStart => {
                    return match text.trim() {
                        "" | "{}" | "null" => Ok((None, none)),
                        _ => Err(forbidden(
                            "portcullis: a container takes its configuration at create, not at start"
                                .into(),
                        )),
                    };
                }
                Inspect::ContainerUpdate => {
                    refuse_device_changes(&text).map_err(forbidden)?;
                    return Ok((None, none));
                }
                Inspect::ContainerCreate => {
                    let name = path::query_value(&query, "name").map(str::to_owned);
                    admission::docker::container_create(&text, name, &reading)
                }
                Inspect::ExecCreate { .. } => {
                    let target = exec_target.unwrap_or_default();
                    admission::docker::exec_create(&text, &target, &reading).map(|r| (r, none))
                }
                Inspect::ServiceCreate => {
                    admission::docker::service(&text, Operation::Create, None, &reading)
                        .map(|r| (r, none))
                }
                Inspect::ServiceUpdate { service } => {
                    admission::docker::service(&text, Operation::Update, Some(service), &reading)
                        .map(|r| (r, none))
                }
                Inspect::VolumeCreate => {
                    admission::docker::volume_create(&text, &reading).map(|r| (r, none))
                }
                Inspect::NetworkCreate => {
                    admission::docker::network_create(&text, network_template, &reading)
                        .map(|r| (r, none))
                }
                Inspect::PluginPrivileges => {
                    let (remote, required) = plugin_required.unwrap_or_default();
                    let required =
                        plugin::privileges(&required).map_err(|error| cannot_read(&error))?;
                    let body = if text.trim().is_empty() { "[]" } else { &*text };
                    let accepted =
                        plugin::privileges(body).map_err(|error| cannot_read(&error))?;
                    if !plugin::accepts_exactly(&accepted, &required) {
                        return Err(forbidden(format!(
                            "portcullis: the privileges accepted are not the ones plugin {remote} gets; accept exactly those `docker plugin install` lists"
                        )));
                    }
                    Ok((plugin::install(&remote, &required, &text, &reading), none))
                }
                Inspect::PluginSet { plugin } => {
                    plugin::set(&plugin, &text, &reading).map(|r| (r, none))
                }
                Inspect::ImagePull => {
                    let image = path::query_value(&query, "fromImage").unwrap_or_default();
                    let tag = path::query_value(&query, "tag").unwrap_or_default();
                    Ok((
                        admission::docker::image_pull(image_reference(image, tag), &reading),
                        none,
                    ))
                }
                Inspect::Nothing | Inspect::Build | Inspect::Refuse(_) => return Ok((None, none)),
            };
            read.map(|(request, lookups)| (Some(request), lookups))
                .map_err(|error| cannot_read(&error))
        })
        .await
        .map_err(|_| evaluation_failed())?
    }

    /// Step 4: the pipeline's decision on a request from this client, or
    /// the refusal it makes.
    async fn judge(
        &self,
        mut admission: Request,
        lookups: &Lookups,
        engine: &Engine,
    ) -> Result<Decision, Refusal> {
        admission.uid = request_uid();
        admission.user = self.client.identity.clone();
        self.proxy
            .engine
            .enrich(&mut admission, lookups, engine)
            .await;

        let decide = |admission: Arc<Request>| {
            let pipeline = self.proxy.pipeline.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    pipeline.decide(&admission, Phase::Mutating, None)
                })
                .await
                .map_err(|_| evaluation_failed())
            }
        };
        // With verification, the images are verified first and the body
        // forwarded is pinned to their digests (the decision's patch).
        let decision = match &self.proxy.verifier {
            Some(verifier) => {
                verifier
                    .admit(
                        admission,
                        true,
                        None,
                        self.proxy.pipeline.patch_limits(),
                        decide,
                    )
                    .await?
                    .0
            }
            None => decide(Arc::new(admission)).await?,
        };
        if !decision.allowed {
            let message = decision.message.as_deref().unwrap_or("denied");
            return Err(Refusal {
                status: StatusCode::from_u16(decision.code).unwrap_or(StatusCode::FORBIDDEN),
                message: format!("portcullis: {}", message.replace('\n', "; ")),
                decision: Some(Box::new(decision)),
            });
        }
        Ok(decision)
    }

    /// Reads a body whole, up to the cap, within the client timeout.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, Refusal> {
        let limit = usize::try_from(self.proxy.max_body).unwrap_or(usize::MAX);
        let collected = tokio::time::timeout(
            self.proxy.client_timeout,
            Limited::new(body, limit).collect(),
        )
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "portcullis: the body did not arrive within {:?}",
                    self.proxy.client_timeout
                ),
            )
        })?;
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "portcullis reads at most {} bytes of this endpoint's body",
                    self.proxy.max_body
                ),
            )),
            Err(error) => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {error}"),
            )),
        }
    }

    /// Step 5: sends the request to the engine and streams the answer back.
    async fn forward(
        &self,
        parts: hyper::http::request::Parts,
        body: Body,
        canonical: &CanonicalPath,
        route: &Route,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response {
        let mut uri = canonical.to_string();
        if let Some(query) = parts.uri.query() {
            uri.push('?');
            uri.push_str(query);
        }
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers, route.hijack);
        if let Some(length) = body.size_hint().exact() {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        let mut outgoing = hyper::Request::new(body);
        *outgoing.method_mut() = parts.method;
        *outgoing.uri_mut() = match uri.parse() {
            Ok(uri) => uri,
            Err(_) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "portcullis cannot forward this path",
                );
            }
        };
        *outgoing.headers_mut() = headers;

        let mut response = match self.send(outgoing).await {
            Ok(response) => response,
            Err(error) => {
                return refusal(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "portcullis cannot reach the Docker engine at {}: {error}",
                        self.proxy.engine.upstream().endpoint()
                    ),
                );
            }
        };
        if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
            (client_upgrade, response.status())
        {
            // The engine switched to the raw stream: tunnel both ways. This
            // engine connection is the tunnel now; later requests open another.
            *self.engine.lock().await = None;
            let engine_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, engine_upgrade) {
                    Ok((client, engine)) => {
                        let mut client = TokioIo::new(client);
                        let mut engine = TokioIo::new(engine);
                        if let Err(error) =
                            tokio::io::copy_bidirectional(&mut client, &mut engine).await
                        {
                            tracing::debug!("hijacked stream ended: {error}");
                        }
                    }
                    Err(error) => tracing::debug!("upgrade failed: {error}"),
                }
            });
        }
        let (parts, body) = response.into_parts();
        let body = Coalesce::new(body).map_err(BoxError::from).boxed();
        let mut response = hyper::Response::from_parts(parts, body);
        strip_hop_by_hop(response.headers_mut(), route.hijack);
        response
    }

    /// Sends on this client's engine connection, opening one if needed.
    async fn send(
        &self,
        request: hyper::Request<Body>,
    ) -> Result<hyper::Response<Incoming>, BoxError> {
        let mut engine = self.engine.lock().await;
        let ready = match engine.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            let (sender, driver) = match self.proxy.engine.upstream().handshake().await {
                Ok(connection) => connection,
                Err(error) => {
                    // The engine went away; what comes back may be another.
                    self.proxy.engine.forget();
                    return Err(error.into());
                }
            };
            if let Err(unsent) = self.drivers.send(driver) {
                tokio::spawn(unsent.0);
            }
            *engine = Some(sender);
        }
        let sender = engine.as_mut().ok_or("no engine connection")?;
        Ok(sender.send_request(request).await?)
    }

    fn refuse(
        &self,
        method: &Method,
        path: &str,
        started: Instant,
        Refusal {
            status,
            message,
            decision,
        }: Refusal,
    ) -> Response {
        if let Some(audit) = &self.proxy.audit {
            let entry = Entry::new("docker", &self.client.identity, method.as_str(), path);
            let entry = match &decision {
                Some(decision) => entry.decision(decision),
                None => entry.denied(message.clone()),
            };
            audit.record(
                Entry {
                    pid: self.client.pid,
                    ..entry
                },
                started.elapsed(),
            );
        }
        tracing::info!(client = self.client.identity.name, %method, path, "{message}");
        refusal(status, &message)
    }
}

/// How much of a refused build's context is read, so the client gets the
/// refusal rather than a closed connection.
const BUILD_CONTEXT_DRAIN: u64 = 256 << 20;

/// Reads and drops what a refused request still sends (up to `limit`
/// bytes, for a few seconds), so that the client can finish writing it and
/// read the answer rather than find the connection closed under it.
async fn discard(mut body: Incoming, limit: u64) {
    let drain = async {
        let mut seen = 0;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |data| data.len() as u64);
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// The refusal of a request whose body cannot be read as the engine reads
/// it, or that sets what no policy sees.
fn cannot_read(error: &NormalizeError) -> Refusal {
    if error.unjudged {
        return Refusal::new(StatusCode::FORBIDDEN, format!("portcullis: {error}"));
    }
    Refusal::new(
        StatusCode::BAD_REQUEST,
        format!("portcullis cannot read the request: {error}"),
    )
}

fn evaluation_failed() -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "portcullis: the evaluation failed".into(),
    )
}

/// A JSON error answer the docker CLI prints as `Error response from daemon`.
fn refusal(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = hyper::Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn strip_hop_by_hop(headers: &mut HeaderMap, hijack: bool) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if !hijack {
        headers.remove(hyper::header::CONNECTION);
        headers.remove(hyper::header::UPGRADE);
    }
}

/// A container update may change resources; devices it may not.
fn refuse_device_changes(text: &str) -> Result<(), String> {
    let body: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| format!("portcullis cannot read the update: {error}"))?;
    let object = body
        .as_object()
        .ok_or("portcullis cannot read the update: not an object")?;
    let touches_devices = object.iter().any(|(key, value)| {
        matches!(
            key.to_ascii_lowercase().as_str(),
            "devices" | "devicecgrouprules" | "devicerequests"
        ) && !(value.is_null() || value.as_array().is_some_and(Vec::is_empty))
    });
    if touches_devices {
        return Err(
            "portcullis: a container's devices are set at create, not changed by update".into(),
        );
    }
    Ok(())
}

/// What the engine pulls for `fromImage` and `tag`.
fn image_reference(image: &str, tag: &str) -> String {
    match tag {
        "" => image.to_owned(),
        digest if digest.contains(':') => format!("{image}@{digest}"),
        tag => format!("{image}:{tag}"),
    }
}

/// A request identifier for policies and the audit log.
fn request_uid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    format!(
        "docker-{started:x}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
