//! `portcullis certs`: a private CA and a serving certificate for the
//! webhook's Service, so a cluster without cert-manager can run it.
//!
//! Files written (PEM): `ca.crt` (the caBundle of the webhook
//! configurations), `ca.key`, `tls.crt` (serving certificate, then the CA),
//! `tls.key`. Keys are ECDSA P-256 and written readable by their owner only.
//! Given an existing CA, a new serving certificate is issued from it, so
//! renewing the serving certificate leaves the caBundle as it is.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// What to certify.
#[derive(Debug, Clone)]
pub struct Request {
    /// The Service's name.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// More names or IP addresses to include (for example `127.0.0.1` for
    /// local testing).
    pub extra_names: Vec<String>,
    /// How long the certificates are valid.
    pub validity: Duration,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// rcgen refused a name or failed to sign.
    #[error("cannot make the certificates")]
    Generate(#[from] rcgen::Error),
    /// A file cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// The PEM texts of a CA and a serving certificate it signed.
#[derive(Debug)]
pub struct Certificates {
    /// CA certificate.
    pub ca_cert: String,
    /// CA private key.
    pub ca_key: String,
    /// Serving certificate followed by the CA certificate.
    pub tls_cert: String,
    /// Serving private key.
    pub tls_key: String,
}

impl Request {
    /// The DNS names the API server may use for the Service, then the extras.
    pub fn names(&self) -> Vec<String> {
        let (service, namespace) = (&self.service, &self.namespace);
        let mut names = vec![
            service.clone(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        names.extend(self.extra_names.iter().cloned());
        names
    }
}

/// Makes a CA and a serving certificate for `request`.
/// A CA to issue from: its certificate and key, PEM.
#[derive(Debug, Clone)]
pub struct ExistingCa {
    /// The CA certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// Makes a serving certificate for `request`, issued by `ca` or by a new CA.
pub fn generate(request: &Request, ca: Option<ExistingCa>) -> Result<Certificates, CertsError> {
    let now = time::OffsetDateTime::now_utc();
    // Allow for clocks a little behind this one.
    let not_before = now - time::Duration::minutes(5);
    let not_after =
        now + time::Duration::try_from(request.validity).unwrap_or(time::Duration::days(365));

    let ca = match ca {
        Some(ca) => ca,
        None => {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.distinguished_name = name(&format!(
                "portcullis CA for {}.{}",
                request.service, request.namespace
            ));
            params.not_before = not_before;
            params.not_after = not_after;
            let key = KeyPair::generate()?;
            ExistingCa {
                cert: params.self_signed(&key)?.pem(),
                key: key.serialize_pem(),
            }
        }
    };
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key)?)?;

    let mut serving = CertificateParams::new(request.names())?;
    serving.distinguished_name = name(&format!("{}.{}.svc", request.service, request.namespace));
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.use_authority_key_identifier_extension = true;
    serving.not_before = not_before;
    serving.not_after = not_after;
    let serving_key = KeyPair::generate()?;
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    Ok(Certificates {
        tls_cert: serving_cert.pem() + &ca.cert,
        tls_key: serving_key.serialize_pem(),
        ca_cert: ca.cert,
        ca_key: ca.key,
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

impl Certificates {
    /// Writes the four files into `dir` (created if needed); returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, CertsError> {
        std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        [
            ("ca.crt", &self.ca_cert, 0o644),
            ("ca.key", &self.ca_key, 0o600),
            ("tls.crt", &self.tls_cert, 0o644),
            ("tls.key", &self.tls_key, 0o600),
        ]
        .into_iter()
        .map(|(file, contents, mode)| {
            let path = dir.join(file);
            write(&path, contents, mode)
                .map(|()| path.clone())
                .map_err(|source| CertsError::Write { path, source })
        })
        .collect()
    }
}

/// Writes atomically (a temporary file renamed into place), so a server
/// watching the file never reads half of it.
fn write(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_names_come_first() {
        let request = Request {
            service: "portcullis".into(),
            namespace: "portcullis-system".into(),
            extra_names: vec!["127.0.0.1".into()],
            validity: Duration::from_secs(3600),
        };
        assert_eq!(
            request.names(),
            [
                "portcullis",
                "portcullis.portcullis-system",
                "portcullis.portcullis-system.svc",
                "portcullis.portcullis-system.svc.cluster.local",
                "127.0.0.1",
            ]
        );
        let certificates = generate(&request, None).expect("generate");
        assert!(certificates.tls_cert.matches("BEGIN CERTIFICATE").count() == 2);
        assert!(certificates.tls_key.contains("PRIVATE KEY"));
        let renewed = generate(
            &request,
            Some(ExistingCa {
                cert: certificates.ca_cert.clone(),
                key: certificates.ca_key.clone(),
            }),
        )
        .expect("renew");
        assert_eq!(renewed.ca_cert, certificates.ca_cert, "the caBundle stays");
        assert_ne!(renewed.tls_cert, certificates.tls_cert);
    }
}
