//! TLS for the listeners: TLS 1.2 and 1.3 only (rustls has nothing older),
//! optional client certificates, and a serving certificate that follows its
//! files.
//!
//! The certificate and key files are read again every [`RELOAD_INTERVAL`];
//! when their contents change and parse into a matching pair, new handshakes
//! get the new certificate while established connections carry on. A pair
//! that does not parse (for example, one file replaced and not yet the other)
//! is logged and the previous certificate stays in service.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::config::TlsConfig;

/// How often the certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{} holds no {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the material or the configuration.
    #[error("{context}")]
    Rustls {
        /// What was being done.
        context: String,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The client CA cannot verify anything.
    #[error("cannot use client CA {}: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The server's TLS configuration and the handle that keeps its certificate
/// current.
pub struct Tls {
    /// For the acceptor.
    pub config: Arc<ServerConfig>,
    /// Reloads the certificate; see [`Reloader::watch`].
    pub reloader: Reloader,
}

/// Builds the server configuration from the configured files, offering the
/// given ALPN protocols (most preferred first).
pub fn server_config(tls: &TlsConfig, alpn: &[&[u8]]) -> Result<Tls, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = Arc::new(Resolver {
        current: ArcSwap::from_pointee(load(&tls.cert, &tls.key, &provider)?),
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rustls {
            context: "cannot configure TLS versions".into(),
            source,
        })?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider.clone())?),
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Tls {
        config: Arc::new(config),
        reloader: Reloader {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            provider,
            resolver,
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a certificate chain and its key, and checks that they match.
fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let (chain, private_key) = parse(cert, &read(cert)?, key, &read(key)?)?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|source| TlsError::Rustls {
        context: format!(
            "{} and {} are not a usable pair",
            cert.display(),
            key.display()
        ),
        source,
    })
}

fn parse(
    cert: &Path,
    cert_pem: &[u8],
    key: &Path,
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_path_buf(),
            what: "certificate",
        });
    }
    let private_key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::Pem {
        path: key.to_path_buf(),
        what: "private key",
    })?;
    Ok((chain, private_key))
}

fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&read(path)?).filter_map(Result::ok) {
        roots.add(certificate).map_err(|error| TlsError::ClientCa {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "CA certificate",
        });
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|error| TlsError::ClientCa {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
}

/// Hands every handshake the current certificate.
struct Resolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Keeps the served certificate in step with its files.
pub struct Reloader {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
}

impl Reloader {
    /// Checks the files every [`RELOAD_INTERVAL`], forever; spawn it.
    pub async fn watch(self) {
        let mut seen = (read(&self.cert).ok(), read(&self.key).ok());
        let mut interval = tokio::time::interval(RELOAD_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let now = (read(&self.cert).ok(), read(&self.key).ok());
            if now == seen {
                continue;
            }
            match self.reload(&now) {
                Ok(()) => {
                    tracing::info!(cert = %self.cert.display(), "serving the new certificate")
                }
                Err(error) => tracing::warn!(
                    cert = %self.cert.display(),
                    "the certificate files changed but cannot be used yet, keeping the current one: {}",
                    crate::error_chain(&error)
                ),
            }
            seen = now;
        }
    }

    fn reload(&self, files: &(Option<Vec<u8>>, Option<Vec<u8>>)) -> Result<(), TlsError> {
        let (Some(cert_pem), Some(key_pem)) = files else {
            return Err(TlsError::Pem {
                path: self.cert.clone(),
                what: "readable certificate and key",
            });
        };
        let (chain, key) = parse(&self.cert, cert_pem, &self.key, key_pem)?;
        let certified = CertifiedKey::from_der(chain, key, &self.provider).map_err(|source| {
            TlsError::Rustls {
                context: "the new certificate and key are not a usable pair".into(),
                source,
            }
        })?;
        self.resolver.current.store(Arc::new(certified));
        Ok(())
    }
}
