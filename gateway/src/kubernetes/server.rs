//! The admission webhook over HTTPS: `POST /validate` and `POST /mutate`
//! take AdmissionReviews; `GET /healthz`, `/readyz` and `/metrics` serve
//! operators.
//!
//! The request path, and why each step sits where it does:
//! 1. TLS handshake, bounded by the client timeout, so a client that
//!    connects and says nothing holds a socket for seconds, not forever;
//! 2. HTTP/1.1 or HTTP/2 (by ALPN); HTTP/1.1 headers must arrive within the
//!    client timeout (slow-header clients are cut off);
//! 3. the body, refused early by its declared length, cut off at the
//!    configured cap and after the client timeout;
//! 4. parsing and normalizing the review (a bad one is a 400, never a
//!    decision);
//! 5. image verification, when configured, within the same budget (see
//!    [`crate::verify::admit`]): every image verified before the policies
//!    see the request, the images of what would run checked after, and on
//!    `/mutate` pinned to their digests;
//! 6. the pipeline, off the async threads (evaluation is CPU work) and
//!    within the review's time budget: every policy's deadline is clipped
//!    to its equal share of what is left, so the answer always comes before
//!    the API server gives up and no policy can spend another's time; a
//!    policy stopped at its share, or left without time (the evaluation did
//!    not even start in time), fails closed whatever its `on_error` says;
//! 7. the AdmissionReview response, and the metrics.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::review;
use crate::admission::{Decision, Phase, Pipeline, Request};
use crate::config::KubernetesConfig;
use crate::telemetry::{Endpoint, Format, Metrics};
use crate::verify::Verifier;

/// How long in-flight reviews may take to finish at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past the budget the answer may wait for an evaluation that is
/// still queued before every policy is counted as out of time.
const SAFETY_MARGIN: Duration = Duration::from_millis(50);

type Response = hyper::Response<Full<Bytes>>;

/// The webhook's state, shared by every connection.
pub struct Webhook {
    pipeline: Arc<Pipeline>,
    verifier: Option<Arc<Verifier>>,
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    budget: Duration,
    max_body: u64,
    client_timeout: Duration,
}

impl Webhook {
    /// A webhook deciding with `pipeline` under the `kubernetes` section of
    /// the configuration.
    pub fn new(
        pipeline: Arc<Pipeline>,
        verifier: Option<Arc<Verifier>>,
        metrics: Arc<Metrics>,
        config: &KubernetesConfig,
    ) -> Self {
        Self {
            pipeline,
            verifier,
            metrics,
            ready: AtomicBool::new(false),
            budget: review_budget(config.timeout),
            max_body: config.max_body,
            client_timeout: config.client_timeout,
        }
    }

    async fn handle(&self, request: hyper::Request<Incoming>) -> Response {
        let endpoint = match request.uri().path() {
            "/validate" => Some(Endpoint::validate),
            "/mutate" => Some(Endpoint::mutate),
            _ => None,
        };
        match (request.method(), request.uri().path(), endpoint) {
            (&Method::POST, _, Some(endpoint)) => self.review(request, endpoint).await,
            (&Method::GET, "/healthz", _) => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz", _) if self.ready.load(Ordering::Relaxed) => {
                text(StatusCode::OK, "ready\n")
            }
            (&Method::GET, "/readyz", _) => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            (&Method::GET, "/metrics", _) => {
                let format = Format::negotiate(
                    request
                        .headers()
                        .get(hyper::header::ACCEPT)
                        .and_then(|accept| accept.to_str().ok()),
                );
                let mut response = text(StatusCode::OK, self.metrics.encode(format));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                );
                response
            }
            (_, _, Some(_)) => method_not_allowed("POST"),
            (_, "/healthz" | "/readyz" | "/metrics", _) => method_not_allowed("GET"),
            _ => failure(
                StatusCode::NOT_FOUND,
                "no such endpoint; the webhook serves /validate and /mutate",
            ),
        }
    }

    async fn review(&self, request: hyper::Request<Incoming>, endpoint: Endpoint) -> Response {
        let started = Instant::now();
        let body = match self.body(request).await {
            Ok(body) => body,
            Err((status, message)) => {
                self.metrics.rejected(endpoint);
                return failure(status, &message);
            }
        };
        let review::Review { version, request } = match review::parse(&body) {
            Ok(review) => review,
            Err(error) => {
                self.metrics.rejected(endpoint);
                return failure(StatusCode::BAD_REQUEST, &crate::error_chain(&error));
            }
        };
        let phase = match endpoint {
            Endpoint::validate => Phase::Validating,
            Endpoint::mutate => Phase::Mutating,
        };
        let deadline = started + self.budget;
        let (uid, dry_run) = (request.uid.clone(), request.dry_run);
        let evaluate = |request| async move {
            Ok::<_, Infallible>(self.evaluate(request, phase, deadline).await)
        };
        let decided = match &self.verifier {
            // Verification shares the review's budget; only the mutating
            // endpoint may pin.
            Some(verifier) => {
                let pin = phase == Phase::Mutating;
                verifier
                    .admit(
                        request,
                        pin,
                        Some(deadline),
                        self.pipeline.patch_limits(),
                        evaluate,
                    )
                    .await
            }
            None => evaluate(Arc::new(request))
                .await
                .map(|decision| (decision, Vec::new())),
        };
        let (decision, verdicts) = match decided {
            Ok(decided) => decided,
            Err(never) => match never {},
        };
        self.metrics.record(endpoint, &decision, started.elapsed());
        self.metrics.images(&verdicts);
        let answer = review::response(
            version,
            &uid,
            dry_run,
            &decision,
            endpoint == Endpoint::mutate,
        );
        json(StatusCode::OK, answer.to_string())
    }

    /// Runs the pipeline off the async threads, within the review's budget.
    async fn evaluate(&self, request: Arc<Request>, phase: Phase, deadline: Instant) -> Decision {
        let evaluation = tokio::task::spawn_blocking({
            let pipeline = self.pipeline.clone();
            let request = request.clone();
            move || pipeline.decide(&request, phase, Some(deadline))
        });
        match tokio::time::timeout_at((deadline + SAFETY_MARGIN).into(), evaluation).await {
            Ok(Ok(decision)) => decision,
            // Queued past the budget (or the evaluation thread died): every
            // policy is out of time, which denies.
            _ => {
                tracing::warn!(
                    uid = request.uid,
                    "the review's time budget ran out before its evaluation finished"
                );
                self.pipeline.decide(&request, phase, Some(Instant::now()))
            }
        }
    }

    /// Reads a review's body within the size cap and time limit; an error
    /// is the status and message to answer with.
    async fn body(&self, request: hyper::Request<Incoming>) -> Result<Bytes, (StatusCode, String)> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        if content_type.is_some_and(|content_type| !content_type.contains("json")) {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "an AdmissionReview is sent as application/json".into(),
            ));
        }
        let too_large = || {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than the {}-byte limit", self.max_body),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body) {
            return Err(too_large());
        }
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        match tokio::time::timeout(
            self.client_timeout,
            Limited::new(request.into_body(), limit).collect(),
        )
        .await
        {
            Err(_) => Err((
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time".into(),
            )),
            Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
            Ok(Err(error)) => Err((
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {error}"),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }
}

/// The share of the API server's timeout a review may use: the rest covers
/// the network and queueing on both sides.
fn review_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 5).min(Duration::from_secs(2)))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = hyper::Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Every error answer: the status, and `{"message": "..."}`.
fn failure(status: StatusCode, message: &str) -> Response {
    json(
        status,
        serde_json::json!({ "message": message }).to_string(),
    )
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = failure(StatusCode::METHOD_NOT_ALLOWED, &format!("use {allow}"));
    response
        .headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Serves the webhook on `listener` until `shutdown` completes; then turns
/// readiness off, keeps answering for `shutdown_delay` (so the Service
/// stops routing here first), stops accepting, lets in-flight reviews finish
/// (up to [`DRAIN_TIMEOUT`]) and returns.
pub async fn serve(
    webhook: Arc<Webhook>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()>,
    shutdown_delay: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(webhook.client_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    webhook.ready.store(true, Ordering::Relaxed);
    tokio::pin!(shutdown);
    let mut delay = None;
    loop {
        let draining = async {
            match delay {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small request-response exchanges: no Nagle delay.
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let builder = builder.clone();
                    let webhook = webhook.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let Ok(Ok(stream)) = tokio::time::timeout(webhook.client_timeout, acceptor.accept(stream)).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |request| {
                            let webhook = webhook.clone();
                            async move { Ok::<_, Infallible>(webhook.handle(request).await) }
                        });
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        if let Err(error) = watcher.watch(connection.into_owned()).await {
                            tracing::debug!("connection ended: {error}");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors, usually: back off, keep serving.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown, if delay.is_none() => {
                webhook.ready.store(false, Ordering::Relaxed);
                delay = Some(tokio::time::Instant::now() + shutdown_delay);
            }
            () = draining => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight reviews did not finish within {DRAIN_TIMEOUT:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_room_for_the_network() {
        assert_eq!(
            review_budget(Duration::from_secs(10)),
            Duration::from_secs(8)
        );
        assert_eq!(
            review_budget(Duration::from_secs(30)),
            Duration::from_secs(28)
        );
        assert_eq!(
            review_budget(Duration::from_secs(1)),
            Duration::from_millis(800)
        );
    }
}
