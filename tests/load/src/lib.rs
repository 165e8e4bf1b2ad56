//! A load generator for Portcullis's front doors: N keep-alive HTTP/1.1
//! connections — over TLS (rustls) to the admission webhook, or over a unix
//! socket to the Docker proxy or the engine itself — sending one request as
//! fast as it is answered (closed loop) or at a fixed total rate (open loop),
//! with latency percentiles from an HDR histogram.
//!
//! In open loop each request has a scheduled start. When the connection is
//! still waiting for an earlier answer at that time, the latency counts from
//! the schedule, not from when the request could finally be sent: a server
//! that stalls is charged for the requests that queued behind the stall (no
//! coordinated omission).
//!
//! The [`Connection`] type is also what the end-to-end tests use to talk to
//! the webhook.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;

/// Anything that went wrong talking to the server.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where and how to connect.
#[derive(Clone)]
pub enum Target {
    /// HTTPS.
    Tls(TlsTarget),
    /// Plain HTTP over a unix socket.
    Unix(PathBuf),
}

/// An HTTPS server.
#[derive(Clone)]
pub struct TlsTarget {
    /// Server address.
    pub address: SocketAddr,
    /// Name to verify the certificate against (an IP address works too).
    pub server_name: ServerName<'static>,
    /// TLS settings: trusted CA, optional client certificate.
    pub tls: Arc<ClientConfig>,
}

/// A connected byte stream, before HTTP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Target {
    /// An HTTPS server trusting the CA in `ca` (PEM), verifying `server_name`.
    pub fn new(address: SocketAddr, server_name: &str, ca: &Path) -> Result<Self, Error> {
        Self::with_identity(address, server_name, ca, None)
    }

    /// The same, presenting a client certificate chain and key (PEM files).
    pub fn with_identity(
        address: SocketAddr,
        server_name: &str,
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(ca)? {
            roots.add(certificate?)?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut tls = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder.with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_file(key)?,
            )?,
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self::Tls(TlsTarget {
            address,
            server_name: ServerName::try_from(server_name.to_owned())?,
            tls: Arc::new(tls),
        }))
    }

    /// Connects (and completes the TLS handshake); the stream and the
    /// certificate the server presented (DER; empty over a unix socket).
    pub async fn connect(&self) -> Result<(Box<dyn Stream>, Vec<u8>), Error> {
        match self {
            Target::Unix(path) => Ok((Box::new(UnixStream::connect(path).await?), Vec::new())),
            Target::Tls(target) => {
                let tcp = TcpStream::connect(target.address).await?;
                tcp.set_nodelay(true)?;
                let tls = TlsConnector::from(target.tls.clone())
                    .connect(target.server_name.clone(), tcp)
                    .await?;
                let peer_certificate = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|certificate| certificate.to_vec())
                    .unwrap_or_default();
                Ok((Box::new(tls), peer_certificate))
            }
        }
    }
}

/// One keep-alive connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// The certificate the server presented, DER (empty over a unix socket).
    pub peer_certificate: Vec<u8>,
}

impl Connection {
    /// Connects and completes the TLS handshake, if any.
    pub async fn open(target: &Target) -> Result<Self, Error> {
        let (stream, peer_certificate) = target.connect().await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            peer_certificate,
        })
    }

    /// Sends a request and returns the answer's head and body, unread.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Error> {
        self.sender.ready().await?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "portcullis")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), Error> {
        let response = self.request(method, path, body).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Posts a body and reads the whole answer.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<(u16, Bytes), Error> {
        self.send("POST", path, body).await
    }

    /// Sends a GET and reads the answer as it streams, keeping only its
    /// length: the status and the number of body bytes.
    pub async fn drain(&mut self, path: &str) -> Result<(u16, u64), Error> {
        let response = self.request("GET", path, Bytes::new()).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut length = 0;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                length += data.len() as u64;
            }
        }
        Ok((status, length))
    }
}

/// How to load the server.
#[derive(Clone)]
pub struct Load {
    /// Where.
    pub target: Target,
    /// Request method.
    pub method: String,
    /// Request path, for example `/validate`.
    pub path: String,
    /// Request body.
    pub body: Bytes,
    /// The status every answer should have; others count as errors.
    pub status: u16,
    /// Concurrent connections.
    pub connections: usize,
    /// How long to send.
    pub duration: Duration,
    /// Total requests per second across connections; `None` sends each
    /// request as soon as the previous answer arrives.
    pub rate: Option<f64>,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Requests that failed or got another status.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency: Histogram<u64>,
}

impl Report {
    /// Answered requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency percentile, in milliseconds.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1000.0
    }
}

/// Runs a load and reports on it.
pub async fn run(load: &Load) -> Result<Report, Error> {
    let mut connections = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        connections.push(Connection::open(&load.target).await?);
    }
    let started = Instant::now();
    let end = started + load.duration;
    let interval = load
        .rate
        .map(|rate| Duration::from_secs_f64(load.connections as f64 / rate.max(f64::MIN_POSITIVE)));
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, mut connection)| {
            let load = load.clone();
            tokio::spawn(async move {
                let mut histogram = new_histogram();
                let (mut ok, mut errors) = (0_u64, 0_u64);
                // Stagger the open-loop schedules so connections do not fire in step.
                let mut scheduled = interval.map(|interval| {
                    started + interval.mul_f64(index as f64 / load.connections as f64)
                });
                loop {
                    let start = match scheduled {
                        // The connection was idle at the scheduled time: the
                        // request goes out when the timer fires (tokio's
                        // timers are millisecond-coarse, which is the
                        // client's lateness, not the server's).
                        Some(at) if Instant::now() <= at => {
                            tokio::time::sleep_until(at.into()).await;
                            Instant::now()
                        }
                        // Still busy with the last answer: the server made
                        // this request late, and is charged from the schedule.
                        Some(at) => at,
                        None => Instant::now(),
                    };
                    if start >= end {
                        break;
                    }
                    match connection
                        .send(&load.method, &load.path, load.body.clone())
                        .await
                    {
                        Ok((status, _)) if status == load.status => {
                            ok += 1;
                            let micros =
                                u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                            histogram.saturating_record(micros.max(1));
                        }
                        Ok(_) | Err(_) => errors += 1,
                    }
                    scheduled = scheduled.zip(interval).map(|(at, interval)| at + interval);
                }
                (ok, errors, histogram)
            })
        })
        .collect();
    let mut report = Report {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: new_histogram(),
    };
    for task in tasks {
        let (ok, errors, histogram) = task.await?;
        report.ok += ok;
        report.errors += errors;
        report.latency.add(&histogram)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .expect("1 µs to 60 s at 3 significant figures are valid bounds")
}
