//! Connections to the engine: its unix socket, or TCP with TLS.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{Endpoint, UpstreamTls};
use crate::tls::TlsError;

/// Where the engine listens.
#[derive(Clone)]
pub struct Upstream {
    endpoint: Endpoint,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({})", self.endpoint)
    }
}

/// What reads and writes an engine connection, to be polled until it ends
/// (hyper's connection future).
pub type Driver = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A stream to the engine, whichever transport.
pub enum Stream {
    /// A unix socket.
    Unix(UnixStream),
    /// Plain TCP.
    Tcp(TcpStream),
    /// TCP with TLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Upstream {
    /// The engine at `endpoint`, with TLS if `tls` is given.
    pub fn new(endpoint: &Endpoint, tls: Option<&UpstreamTls>) -> Result<Self, TlsError> {
        let tls = match (endpoint, tls) {
            (Endpoint::Tcp(address), Some(tls)) => Some(client_tls(address, tls)?),
            _ => None,
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            tls,
        })
    }

    /// The engine's address, for messages.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether the engine shares this machine's filesystem (a unix socket),
    /// so host paths in requests can be resolved here.
    pub fn is_local(&self) -> bool {
        matches!(self.endpoint, Endpoint::Unix(_))
    }

    /// Opens a stream to the engine.
    pub async fn connect(&self) -> io::Result<Stream> {
        match (&self.endpoint, &self.tls) {
            (Endpoint::Unix(path), _) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            (Endpoint::Tcp(address), None) => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            (Endpoint::Tcp(address), Some((config, name))) => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), stream)
                    .await?;
                Ok(Stream::Tls(Box::new(tls)))
            }
        }
    }

    /// Opens an HTTP/1.1 connection to the engine that can be upgraded: the
    /// sender of its requests, and what must be polled for it to run.
    pub async fn handshake<B>(&self) -> io::Result<(http1::SendRequest<B>, Driver)>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = self.connect().await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let driver = Box::pin(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!("engine connection ended: {error}");
            }
        });
        Ok((sender, driver))
    }

    /// `GET path` from the engine, with `headers`, as JSON; `None` for 404.
    pub async fn get_json(
        &self,
        path: &str,
        headers: &[(hyper::header::HeaderName, hyper::header::HeaderValue)],
    ) -> io::Result<Option<serde_json::Value>> {
        let (mut sender, driver) = self.handshake::<Empty<Bytes>>().await?;
        tokio::spawn(driver);
        let mut request = hyper::Request::get(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::new())
            .map_err(io::Error::other)?;
        for (name, value) in headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        match status.as_u16() {
            404 => Ok(None),
            200 => serde_json::from_slice(&body)
                .map(Some)
                .map_err(io::Error::other),
            code => Err(io::Error::other(format!(
                "the engine answered {code} to GET {path}: {}",
                String::from_utf8_lossy(&body)
            ))),
        }
    }
}

fn client_tls(
    address: &str,
    tls: &UpstreamTls,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&read(&tls.ca)?).filter_map(Result::ok) {
        let _ = roots.add(certificate);
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|source| TlsError::Rustls {
        context: "cannot configure TLS to the engine".into(),
        source,
    })?
    .with_root_certificates(roots);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
                .filter_map(Result::ok)
                .collect();
            let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|_| TlsError::Pem {
                path: key.clone(),
                what: "private key",
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Rustls {
                    context: "the client certificate for the engine is not usable".into(),
                    source,
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    let host = tls.server_name.clone().unwrap_or_else(|| {
        address
            .rsplit_once(':')
            .map_or(address, |(host, _)| host)
            .to_owned()
    });
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).map_err(|_| {
        TlsError::Pem {
            path: PathBuf::from(host.clone()),
            what: "valid server name",
        }
    })?;
    Ok((Arc::new(config), name))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
