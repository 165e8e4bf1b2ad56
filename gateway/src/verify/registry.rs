//! Registry access for verification: tag to digest, the signature and
//! attestation manifests cosign stores beside an image, and their blobs.
//!
//! Every call has a deadline (oci-client sets none of its own), blobs are
//! read up to a cap, and failures keep their kind: an image or signature tag
//! that is not there is [`RegistryError::NotFound`], which verification reads
//! as "unsigned"; anything else (refused connection, timeout, 5xx, refused
//! credentials) stays an error of the registry, never "unsigned".

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::settings::{ImagesConfig, RegistryConfig};

/// The most bytes read of one signature or attestation blob.
const MAX_BLOB: usize = 1 << 20;

/// The most layers read of one signature or attestation manifest.
const MAX_LAYERS: usize = 64;

/// Manifest media types asked for when reading a signature or attestation
/// manifest.
const MANIFEST_TYPES: &[&str] = &[
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Why the registry could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// The manifest or tag is not in the registry.
    #[error("not found in the registry")]
    NotFound,
    /// The registry refused the credentials, or asked for some.
    #[error("registry {registry} refused access: {detail}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What it said.
        detail: String,
    },
    /// No answer in time.
    #[error("registry {registry} did not answer within {seconds}s")]
    Timeout {
        /// The registry host.
        registry: String,
        /// The deadline, in seconds.
        seconds: f64,
    },
    /// The registry could not be reached or answered with an error.
    #[error("registry {registry} unreachable: {detail}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// What went wrong.
        detail: String,
    },
    /// The registry answered something that is not what was asked for.
    #[error("registry {registry} answered badly: {detail}")]
    Invalid {
        /// The registry host.
        registry: String,
        /// What was wrong.
        detail: String,
    },
}

/// Why the registry settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file named in the configuration cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The docker `config.json` is not what docker writes.
    #[error("{path} is not a docker config.json: {reason}")]
    DockerConfig {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `registries` section does not read by canonical host.
    #[error(transparent)]
    Registries(#[from] super::settings::RegistriesError),
    /// The HTTP client could not be built.
    #[error("cannot set up the registry client: {0}")]
    Client(String),
}

/// A blob of a signature or attestation manifest, with its descriptor.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The descriptor in the manifest (media type, digest, annotations).
    pub descriptor: OciDescriptor,
    /// The blob, checked against the descriptor's digest.
    pub data: Vec<u8>,
}

/// The registries, as verification reaches them.
pub struct Registry {
    client: Client,
    auth: BTreeMap<String, RegistryAuth>,
    timeout: Duration,
}

impl Registry {
    /// Sets up the client from the `images` section.
    pub fn new(config: &ImagesConfig) -> Result<Self, SetupError> {
        // Keyed as references are, so every spelling finds its settings.
        let registries = config.canonical_registries()?;
        let insecure: Vec<String> = registries
            .iter()
            .filter(|(_, registry)| registry.insecure)
            .map(|(host, _)| host.clone())
            .collect();
        let mut roots = Vec::new();
        for registry in registries.values() {
            if let Some(ca) = &registry.ca {
                roots.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: read(ca)?,
                });
            }
        }
        let client_config = ClientConfig {
            protocol: if insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(insecure)
            },
            extra_root_certificates: roots,
            // Each call as a whole is bounded by `deadline`; the connect
            // timeout only stops a connection attempt from outliving it.
            connect_timeout: Some(config.timeout),
            // A tag names one digest; cosign signs that digest, index or not.
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = Client::try_from(client_config)
            .map_err(|error| SetupError::Client(error.to_string()))?;
        let mut auth = docker_credentials(config.docker_config.as_deref())?;
        for (host, registry) in &registries {
            if let Some(credentials) = configured_credentials(registry)? {
                auth.insert(host.clone(), credentials);
            }
        }
        Ok(Self {
            client,
            auth,
            timeout: config.timeout,
        })
    }

    /// The credentials for `reference`'s registry; it is built from a
    /// canonical reference, and the keys are canonical too.
    fn auth(&self, reference: &Reference) -> &RegistryAuth {
        self.auth
            .get(reference.registry())
            .unwrap_or(&RegistryAuth::Anonymous)
    }

    /// The digest `reference` names: its own, or what its tag points at.
    pub async fn digest(&self, reference: &Reference) -> Result<String, RegistryError> {
        if let Some(digest) = reference.digest() {
            return Ok(digest.to_owned());
        }
        let auth = self.auth(reference);
        self.deadline(
            reference,
            self.client.fetch_manifest_digest(reference, auth),
        )
        .await
    }

    /// The layers of the manifest at `tag` in `reference`'s repository,
    /// each blob checked against its digest.
    pub async fn layers(
        &self,
        reference: &Reference,
        tag: &str,
    ) -> Result<Vec<Layer>, RegistryError> {
        let at = Reference::with_tag(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            tag.to_owned(),
        );
        let mut layers = Vec::new();
        self.manifest_layers(&at, None, &mut layers).await?;
        Ok(layers)
    }

    /// The layers of `media_type` in the manifests that refer to `digest`
    /// in `reference`'s repository: the OCI 1.1 referrers API, or its tag
    /// schema where the registry lacks the API. oci-client reads a missing
    /// or failing tag-schema index as empty; the `.sig` tag read before this
    /// has already told an unreachable registry apart.
    pub async fn referrers(
        &self,
        reference: &Reference,
        digest: &str,
        media_type: &str,
    ) -> Result<Vec<Layer>, RegistryError> {
        let at = Reference::with_digest(
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            digest.to_owned(),
        );
        // pull_referrers takes no credentials; it uses the stored ones.
        self.client
            .store_auth_if_needed(at.resolve_registry(), self.auth(&at))
            .await;
        let index = match self
            .deadline(&at, self.client.pull_referrers(&at, Some(media_type)))
            .await
        {
            Ok(index) => index,
            Err(RegistryError::NotFound) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut layers = Vec::new();
        for entry in index.manifests.iter().take(MAX_LAYERS) {
            let referrer = Reference::with_digest(
                at.registry().to_owned(),
                at.repository().to_owned(),
                entry.digest.clone(),
            );
            self.manifest_layers(&referrer, Some(media_type), &mut layers)
                .await?;
        }
        Ok(layers)
    }

    /// Adds the layers of the image manifest at `at` (those of `media_type`
    /// only, if given) to `layers`, up to [`MAX_LAYERS`] in all.
    async fn manifest_layers(
        &self,
        at: &Reference,
        media_type: Option<&str>,
        layers: &mut Vec<Layer>,
    ) -> Result<(), RegistryError> {
        let auth = self.auth(at);
        let (raw, _) = self
            .deadline(at, self.client.pull_manifest_raw(at, auth, MANIFEST_TYPES))
            .await?;
        let manifest: OciImageManifest =
            serde_json::from_slice(&raw).map_err(|error| RegistryError::Invalid {
                registry: at.registry().to_owned(),
                detail: format!("the manifest {at} is not an image manifest: {error}"),
            })?;
        let wanted = manifest
            .layers
            .into_iter()
            .filter(|layer| media_type.is_none_or(|wanted| layer.media_type == wanted));
        for descriptor in wanted {
            if layers.len() >= MAX_LAYERS {
                break;
            }
            let data = self.blob(at, &descriptor).await?;
            layers.push(Layer { descriptor, data });
        }
        Ok(())
    }

    /// One blob, at most [`MAX_BLOB`] bytes, matching its digest.
    async fn blob(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        let invalid = |detail: String| RegistryError::Invalid {
            registry: reference.registry().to_owned(),
            detail,
        };
        if usize::try_from(descriptor.size).map_or(true, |size| size > MAX_BLOB) {
            return Err(invalid(format!(
                "layer {} is {} bytes, over the {MAX_BLOB} a signature may have",
                descriptor.digest, descriptor.size
            )));
        }
        let read = async {
            let mut stream = self.client.pull_blob_stream(reference, descriptor).await?;
            let mut data = Vec::new();
            while let Some(chunk) = stream.stream.next().await {
                data.extend_from_slice(&chunk?);
                if data.len() > MAX_BLOB {
                    break;
                }
            }
            Ok::<_, OciDistributionError>(data)
        };
        let data = self.deadline(reference, read).await?;
        let digest = format!("sha256:{}", crate::sha256_hex(&data));
        if data.len() > MAX_BLOB || digest != descriptor.digest {
            return Err(invalid(format!(
                "layer {} does not match its digest",
                descriptor.digest
            )));
        }
        Ok(data)
    }

    async fn deadline<T>(
        &self,
        reference: &Reference,
        call: impl Future<Output = Result<T, OciDistributionError>>,
    ) -> Result<T, RegistryError> {
        let registry = reference.registry().to_owned();
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(RegistryError::Timeout {
                registry,
                seconds: self.timeout.as_secs_f64(),
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(registry, error)),
        }
    }
}

/// Sorts oci-client's errors into what verification must tell apart.
fn classify(registry: String, error: OciDistributionError) -> RegistryError {
    let not_found = |envelope: &oci_client::errors::OciEnvelope| {
        envelope.errors.iter().any(|error| {
            matches!(
                error.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::BlobUnknown
            )
        })
    };
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound,
        OciDistributionError::RegistryError { envelope, .. } if not_found(&envelope) => {
            RegistryError::NotFound
        }
        OciDistributionError::ServerError { code: 404, .. } => RegistryError::NotFound,
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|error| {
                matches!(
                    error.code,
                    OciErrorCode::Unauthorized | OciErrorCode::Denied
                )
            }) =>
        {
            RegistryError::Unauthorized {
                registry,
                detail: envelope
                    .errors
                    .iter()
                    .map(|error| error.message.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => RegistryError::Unauthorized {
            registry,
            detail: error.to_string(),
        },
        OciDistributionError::RequestError(_)
        | OciDistributionError::IoError(_)
        | OciDistributionError::ServerError { .. }
        | OciDistributionError::RegistryError { .. } => RegistryError::Unreachable {
            registry,
            detail: crate::error_chain(&error),
        },
        other => RegistryError::Invalid {
            registry,
            detail: crate::error_chain(&other),
        },
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Credentials given in the configuration for one registry.
fn configured_credentials(registry: &RegistryConfig) -> Result<Option<RegistryAuth>, SetupError> {
    let Some(username) = &registry.username else {
        return Ok(None);
    };
    let password = match (&registry.password, &registry.password_file) {
        (Some(password), _) => password.clone(),
        (None, Some(file)) => String::from_utf8_lossy(&read(file)?)
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, None) => String::new(),
    };
    Ok(Some(RegistryAuth::Basic(username.clone(), password)))
}

/// The `auths` of a docker `config.json`: the one given, or the docker
/// CLI's own when it exists.
fn docker_credentials(path: Option<&Path>) -> Result<BTreeMap<String, RegistryAuth>, SetupError> {
    let path = match path {
        Some(path) => path.to_path_buf(),
        None => {
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(std::path::PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")));
            match dir.map(|dir| dir.join("config.json")) {
                Some(path) if path.is_file() => path,
                _ => return Ok(BTreeMap::new()),
            }
        }
    };
    let text = read(&path)?;
    parse_docker_config(&text).map_err(|reason| SetupError::DockerConfig { path, reason })
}

#[derive(serde::Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
    #[serde(default, rename = "registrytoken")]
    registry_token: Option<String>,
}

/// Reads the credentials of a docker `config.json`, keyed by canonical
/// registry host (`https://index.docker.io/v1/` is docker.io, as the CLI
/// writes it); a key that names no registry an image could name is skipped.
fn parse_docker_config(text: &[u8]) -> Result<BTreeMap<String, RegistryAuth>, String> {
    let file: DockerConfigFile = serde_json::from_slice(text).map_err(|error| error.to_string())?;
    let mut auths = BTreeMap::new();
    for (key, entry) in file.auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        let Ok(host) = super::reference::canonical_registry(host) else {
            continue;
        };
        let credentials = match (&entry.auth, &entry.username, &entry.identity_token) {
            // A bearer token for the registry itself, sent as is.
            _ if let Some(token) = &entry.registry_token => RegistryAuth::Bearer(token.clone()),
            (Some(encoded), _, _) if !encoded.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| format!("auths.{key}.auth is not base64"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| format!("auths.{key}.auth is not text"))?;
                let (user, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                RegistryAuth::Basic(user.to_owned(), password.to_owned())
            }
            (_, Some(user), _) => {
                RegistryAuth::Basic(user.clone(), entry.password.clone().unwrap_or_default())
            }
            // An identity token is a refresh token for the registry's token
            // service, exchanged with the user name `<token>`.
            (_, None, Some(token)) => RegistryAuth::Basic("<token>".into(), token.clone()),
            _ => continue,
        };
        auths.insert(host, credentials);
    }
    Ok(auths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials_are_read_as_the_cli_writes_them() {
        let auths = parse_docker_config(
            br#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                "127.0.0.1:5000": {"username": "u", "password": "p"},
                "Registry.Example.com:443": {"username": "e", "password": "x"},
                "not a host": {"username": "n", "password": "x"},
                "ghcr.io": {},
                "quay.io": {"registrytoken": "t0ken"}
            }, "credsStore": "desktop"}"#,
        )
        .expect("a valid config");
        assert_eq!(
            auths.get("docker.io"),
            Some(&RegistryAuth::Basic("user".into(), "pass".into()))
        );
        assert_eq!(
            auths.get("127.0.0.1:5000"),
            Some(&RegistryAuth::Basic("u".into(), "p".into()))
        );
        assert_eq!(
            auths.get("registry.example.com"),
            Some(&RegistryAuth::Basic("e".into(), "x".into())),
            "keys are canonical, as references are"
        );
        assert_eq!(auths.len(), 4, "{auths:?}");
        assert!(!auths.contains_key("ghcr.io"));
        assert_eq!(
            auths.get("quay.io"),
            Some(&RegistryAuth::Bearer("t0ken".into()))
        );
    }

    #[test]
    fn a_broken_docker_config_names_the_entry() {
        let error = parse_docker_config(br#"{"auths": {"r.io": {"auth": "bm9jb2xvbg=="}}}"#)
            .expect_err("no colon");
        assert!(error.contains("auths.r.io.auth"), "{error}");
        assert!(parse_docker_config(b"[").is_err());
    }
}
