//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! registry) on 127.0.0.1, and a signer that stores signatures and
//! attestations in it exactly as cosign does, with keys, a certificate
//! authority and a transparency-log key made at test time.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sigstore::crypto::{SigStoreSigner, SigningScheme};

use crate::support::{Run, portcullis, scratch};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub(crate) const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
pub(crate) const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The payload type of an in-toto statement in a DSSE envelope.
pub(crate) const IN_TOTO: &str = "application/vnd.in-toto+json";

pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A registry process, stopped when dropped.
pub(crate) struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) host: String,
    /// The user and password it requires, if any.
    pub(crate) credentials: Option<(String, String)>,
    /// Its storage and configuration, removed when dropped.
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Registry {
    /// Starts a registry; with `credentials`, it requires them (htpasswd).
    pub(crate) fn start(credentials: Option<(&str, &str)>) -> Self {
        let dir = scratch();
        let auth = match credentials {
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, format!("{user}:{hash}\n")).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: portcullis-test\n    path: {}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        Self::launch(dir, &auth, credentials)
    }

    /// Starts a registry that takes bearer tokens from a token service of
    /// the test's own, which hands them to the holder of `credentials`, as
    /// Docker Hub and most hosted registries do.
    pub(crate) fn with_token_service(credentials: (&str, &str)) -> Self {
        let dir = scratch();
        let realm = token_service(dir.path(), credentials);
        let auth = format!(
            "auth:\n  token:\n    realm: {realm}\n    service: portcullis-test\n    issuer: portcullis-test-tokens\n    rootcertbundle: {}\n",
            dir.path().join("token-ca.pem").display()
        );
        Self::launch(dir, &auth, Some(credentials))
    }

    fn launch(dir: tempfile::TempDir, auth: &str, credentials: Option<(&str, &str)>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.path().join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth}",
                dir.path().join("storage").display()
            ),
        )
        .expect("write the registry configuration");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's docker-registry package) is installed");
        let client = Client::try_from(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        })
        .expect("an OCI client");
        let registry = Self {
            child,
            host,
            credentials: credentials.map(|(user, password)| (user.to_owned(), password.to_owned())),
            _dir: dir,
            runtime: crate::webhook_support::runtime(),
            client,
        };
        registry.wait_until_up();
        registry
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn auth(&self) -> RegistryAuth {
        match &self.credentials {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// `HOST/repository`.
    pub(crate) fn name(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host)
    }

    /// Pushes a small image of its own (content unique to `marker`) as
    /// `repository:tag`; returns its digest.
    pub(crate) fn push_image(&self, repository: &str, tag: &str, marker: &str) -> String {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"marker": marker}},
            "rootfs": {"type": "layers", "diff_ids": []}
        }))
        .expect("json");
        let layer = format!("portcullis test layer {marker}").into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.blob(repository, OCI_CONFIG, &config, None),
            "layers": [self.blob(repository, "application/vnd.oci.image.layer.v1.tar", &layer, None)],
        });
        self.manifest(repository, tag, &manifest)
    }

    /// Pushes a multi-architecture index as `repository:tag` over images of
    /// its own (amd64 and arm64); returns the index's digest and the
    /// platform images' digests.
    pub(crate) fn push_index(&self, repository: &str, tag: &str) -> (String, Vec<String>) {
        let platforms = ["amd64", "arm64"];
        let mut entries = Vec::new();
        let mut digests = Vec::new();
        for architecture in platforms {
            let digest =
                self.push_image(repository, architecture, &format!("{tag}-{architecture}"));
            entries.push(json!({
                "mediaType": OCI_MANIFEST, "digest": digest,
                "size": self.manifest_size(repository, &digest),
                "platform": {"architecture": architecture, "os": "linux"},
            }));
            digests.push(digest);
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        (self.manifest(repository, tag, &index), digests)
    }

    /// The size of the image manifest `repository@digest`.
    fn manifest_size(&self, repository: &str, digest: &str) -> usize {
        let reference =
            Reference::with_digest(self.host.clone(), repository.to_owned(), digest.to_owned());
        self.runtime
            .block_on(
                self.client
                    .pull_manifest_raw(&reference, &self.auth(), &[OCI_MANIFEST]),
            )
            .expect("the image manifest")
            .0
            .len()
    }

    /// The digest `repository:tag` points at.
    pub(crate) fn digest(&self, repository: &str, tag: &str) -> String {
        let reference = self.reference(repository, tag);
        self.runtime
            .block_on(self.client.fetch_manifest_digest(&reference, &self.auth()))
            .expect("the tag resolves")
    }

    fn reference(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repository.to_owned(), tag.to_owned())
    }

    /// Uploads a blob; returns its descriptor.
    fn blob(
        &self,
        repository: &str,
        media_type: &str,
        data: &[u8],
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Value {
        let digest = format!("sha256:{}", sha256_hex(data));
        let reference = self.reference(repository, "latest");
        self.runtime.block_on(async {
            self.client
                .auth(&reference, &self.auth(), RegistryOperation::Push)
                .await
                .expect("authenticate to push");
            self.client
                .push_blob(&reference, data.to_vec(), &digest)
                .await
                .expect("push a blob");
        });
        let mut descriptor = json!({"mediaType": media_type, "digest": digest, "size": data.len()});
        if let Some(annotations) = annotations {
            descriptor["annotations"] = json!(annotations);
        }
        descriptor
    }

    /// Uploads a manifest (or index) under `tag`; returns its digest.
    fn manifest(&self, repository: &str, tag: &str, manifest: &Value) -> String {
        let body = serde_json::to_vec(manifest).expect("json");
        let media_type = manifest["mediaType"].as_str().unwrap_or(OCI_MANIFEST);
        let reference = self.reference(repository, tag);
        self.runtime.block_on(async {
            self.client
                .auth(&reference, &self.auth(), RegistryOperation::Push)
                .await
                .expect("authenticate to push");
            self.client
                .push_manifest_raw(
                    &reference,
                    body.clone(),
                    media_type.parse().expect("a header"),
                )
                .await
                .expect("push a manifest");
        });
        format!("sha256:{}", sha256_hex(&body))
    }

    /// Stores `layers` (media type, blob, annotations) as the manifest
    /// cosign keeps beside `digest`: tag `sha256-<hex>.<suffix>`.
    pub(crate) fn attach(
        &self,
        repository: &str,
        digest: &str,
        suffix: &str,
        layers: &[(String, Vec<u8>, BTreeMap<String, String>)],
    ) {
        let config = self.blob(repository, OCI_CONFIG, b"{}", None);
        let layers: Vec<Value> = layers
            .iter()
            .map(|(media_type, data, annotations)| {
                self.blob(repository, media_type, data, Some(annotations))
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": layers,
        });
        self.manifest(
            repository,
            &format!("{}.{suffix}", digest.replacen(':', "-", 1)),
            &manifest,
        );
    }
}

impl Registry {
    /// Stores `data` as an OCI 1.1 referrer of `digest`: a manifest whose
    /// subject is the image, listed in the referrers tag-schema index
    /// `sha256-<hex>` (this registry has no referrers API; clients fall
    /// back to the tag).
    pub(crate) fn refer(&self, repository: &str, digest: &str, media_type: &str, data: &[u8]) {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": media_type,
            "config": self.blob(repository, "application/vnd.oci.empty.v1+json", b"{}", None),
            "layers": [self.blob(repository, media_type, data, None)],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": self.manifest_size(repository, digest)},
        });
        let size = serde_json::to_vec(&manifest).expect("json").len();
        let referrer = self.manifest(repository, "referrer", &manifest);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": referrer, "size": size, "artifactType": media_type}],
        });
        self.manifest(repository, &digest.replacen(':', "-", 1), &index);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ECDSA P-256 key pair, as `cosign generate-key-pair` makes.
pub(crate) struct Key {
    signer: SigStoreSigner,
}

impl Key {
    pub(crate) fn new() -> Self {
        Self {
            signer: SigningScheme::ECDSA_P256_SHA256_ASN1
                .create_signer()
                .expect("a P-256 key"),
        }
    }

    /// The public key, PEM.
    pub(crate) fn public_pem(&self) -> String {
        self.signer
            .to_sigstore_keypair()
            .and_then(|pair| pair.public_key_to_pem())
            .expect("the public key")
    }

    /// The public key, DER.
    pub(crate) fn public_der(&self) -> Vec<u8> {
        self.signer
            .to_sigstore_keypair()
            .and_then(|pair| pair.public_key_to_der())
            .expect("the public key")
    }

    /// The private key, PKCS#8 PEM.
    pub(crate) fn private_pem(&self) -> String {
        self.signer
            .to_sigstore_keypair()
            .and_then(|pair| pair.private_key_to_pem())
            .expect("the private key")
            .to_string()
    }

    /// A signature of `message`, base64 as cosign stores it.
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        base64(&self.sign_der(message))
    }

    /// A signature of `message`, DER.
    pub(crate) fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        self.signer.sign(message).expect("sign")
    }

    /// Writes the public key to `path`.
    pub(crate) fn write_public(&self, path: &Path) {
        std::fs::write(path, self.public_pem()).expect("write the public key");
    }
}

/// A transparency log's signing key (a stand-in for Rekor's).
pub(crate) struct Log {
    key: Key,
}

impl Log {
    pub(crate) fn new() -> Self {
        Self { key: Key::new() }
    }

    pub(crate) fn write_public(&self, path: &Path) {
        self.key.write_public(path);
    }

    /// The log's entry of `body` at `time`: its payload (body, time, index,
    /// log ID) and signed entry timestamp.
    fn entry(&self, body: &Value, time: i64) -> (Value, String) {
        let payload = json!({
            "body": base64(&serde_json::to_vec(body).expect("json")),
            "integratedTime": time,
            "logIndex": 7,
            "logID": sha256_hex(&self.key.public_der()),
        });
        let canonical = serde_json_canonicalizer::to_vec(&payload).expect("canonical JSON");
        let timestamp = self.key.sign(&canonical);
        (payload, timestamp)
    }

    /// A bundle as cosign stores it: `body` entered at `time`, with the
    /// log's signed entry timestamp.
    pub(crate) fn bundle(&self, body: &Value, time: i64) -> String {
        let (payload, timestamp) = self.entry(body, time);
        json!({"SignedEntryTimestamp": timestamp, "Payload": payload}).to_string()
    }

    /// The same entry as a sigstore bundle's `tlogEntries` item.
    pub(crate) fn tlog_entry(&self, body: &Value, time: i64) -> Value {
        let (payload, timestamp) = self.entry(body, time);
        let key_id = Sha256::digest(self.key.public_der());
        json!({
            "logIndex": "7",
            "logId": {"keyId": base64(&key_id)},
            "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
            "integratedTime": time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": timestamp},
            "canonicalizedBody": payload["body"],
        })
    }
}

/// The log entry of a signature `signature` over `payload` by the holder of
/// `public` (a PEM key or certificate).
pub(crate) fn hashed_rekord(payload: &[u8], signature: &str, public: &str) -> Value {
    json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": sha256_hex(payload)}},
            "signature": {"content": signature, "publicKey": {"content": base64(public.as_bytes())}}
        }
    })
}

/// A certificate authority in Fulcio's image: it issues short-lived
/// code-signing certificates naming an e-mail and an OIDC issuer.
pub(crate) struct Authority {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

impl Authority {
    pub(crate) fn new(name: &str) -> Self {
        Self::make(
            name,
            None,
            vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
            ],
            true,
        )
    }

    /// An intermediate CA under this one with key usage `usages`, a CA by
    /// basicConstraints when `is_ca`.
    pub(crate) fn intermediate(
        &self,
        name: &str,
        usages: Vec<rcgen::KeyUsagePurpose>,
        is_ca: bool,
    ) -> Self {
        Self::make(name, Some(self), usages, is_ca)
    }

    fn make(
        name: &str,
        issuer: Option<&Authority>,
        usages: Vec<rcgen::KeyUsagePurpose>,
        is_ca: bool,
    ) -> Self {
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = if is_ca {
            rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        } else {
            rcgen::IsCa::ExplicitNoCa
        };
        params.key_usages = usages;
        let certificate = match issuer {
            Some(issuer) => params
                .signed_by(
                    &key,
                    &rcgen::Issuer::from_params(&issuer.params, &issuer.key),
                )
                .expect("an intermediate certificate"),
            None => params.self_signed(&key).expect("a CA certificate"),
        };
        let pem = certificate.pem();
        Self { params, key, pem }
    }

    /// Its certificate, PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    pub(crate) fn write(&self, path: &Path) {
        std::fs::write(path, &self.pem).expect("write the CA certificate");
    }

    /// A certificate for `key`, naming `email` and `issuer`, valid from
    /// `not_before` to `not_after` (unix seconds).
    pub(crate) fn issue(
        &self,
        key: &Key,
        email: &str,
        issuer: &str,
        not_before: i64,
        not_after: i64,
    ) -> String {
        self.issue_naming(key, email, issuer, None, (not_before, not_after))
    }

    /// The same, the issuer in Fulcio's legacy extension (`.1.1`) and, given
    /// `issuer_v2`, that in its current one (`.1.8`, a DER UTF8String).
    pub(crate) fn issue_naming(
        &self,
        key: &Key,
        email: &str,
        issuer: &str,
        issuer_v2: Option<&str>,
        (not_before, not_after): (i64, i64),
    ) -> String {
        let pair = rcgen::KeyPair::from_pem(&key.private_pem()).expect("the signing key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
            email.to_owned().try_into().expect("an e-mail"),
        )];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).expect("a time");
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("a time");
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
            issuer.as_bytes().to_vec(),
        )];
        if let Some(issuer) = issuer_v2 {
            let mut utf8_string = vec![0x0c, u8::try_from(issuer.len()).expect("a short issuer")];
            utf8_string.extend_from_slice(issuer.as_bytes());
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                    utf8_string,
                ));
        }
        params
            .signed_by(&pair, &rcgen::Issuer::from_params(&self.params, &self.key))
            .expect("a leaf certificate")
            .pem()
    }
}

/// The simple-signing payload cosign signs for `name@digest`.
pub(crate) fn payload(name: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": name},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .expect("json")
}

/// A DSSE envelope of `statement` of `payload_type` signed by `key` over
/// its pre-authentication encoding, and the signature (base64).
fn dsse_envelope(statement: &[u8], payload_type: &str, key: &Key) -> (Value, String) {
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        statement.len()
    )
    .into_bytes();
    pae.extend_from_slice(statement);
    let signature = key.sign(&pae);
    let envelope = json!({
        "payloadType": payload_type,
        "payload": base64(statement),
        "signatures": [{"keyid": "", "sig": signature}],
    });
    (envelope, signature)
}

/// One signature layer: media type, blob, annotations.
pub(crate) type SignatureLayer = (String, Vec<u8>, BTreeMap<String, String>);

/// A key-based signature layer of `payload`.
pub(crate) fn signed_layer(payload: Vec<u8>, signature: String) -> SignatureLayer {
    let annotations =
        BTreeMap::from([("dev.cosignproject.cosign/signature".to_owned(), signature)]);
    (SIMPLE_SIGNING.to_owned(), payload, annotations)
}

/// A DSSE attestation layer: an in-toto statement about `digest` with
/// `predicate`, signed by `key`.
pub(crate) fn attestation_layer(
    digest: &str,
    name: &str,
    predicate_type: &str,
    predicate: Value,
    key: &Key,
) -> SignatureLayer {
    attestation_layer_as(IN_TOTO, digest, name, predicate_type, predicate, key)
}

/// The same, its envelope declaring `payload_type` (and signed so).
pub(crate) fn attestation_layer_as(
    payload_type: &str,
    digest: &str,
    name: &str,
    predicate_type: &str,
    predicate: Value,
    key: &Key,
) -> SignatureLayer {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": predicate_type,
        "subject": [{"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicate": predicate,
    }))
    .expect("json");
    let (envelope, _) = dsse_envelope(&statement, payload_type, key);
    let annotations = BTreeMap::from([
        (
            "dev.cosignproject.cosign/signature".to_owned(),
            String::new(),
        ),
        ("predicateType".to_owned(), predicate_type.to_owned()),
    ]);
    (
        DSSE.to_owned(),
        serde_json::to_vec(&envelope).expect("json"),
        annotations,
    )
}

/// A sigstore bundle as cosign v3 signs an image with a key: a DSSE
/// envelope of a `cosign/sign/v1` statement about `digest`, and, with a
/// log, the log's `dsse` entry of it. `entry_for` signs the entry for
/// another envelope's signature, to transplant it.
pub(crate) fn cosign_v3_bundle(
    name: &str,
    digest: &str,
    key: &Key,
    log: Option<(&Log, i64)>,
    entry_for: Option<&str>,
) -> Vec<u8> {
    cosign_v3_bundle_as(IN_TOTO, name, digest, key, log, entry_for)
}

/// The same, its envelope declaring `payload_type` (and signed so).
pub(crate) fn cosign_v3_bundle_as(
    payload_type: &str,
    name: &str,
    digest: &str,
    key: &Key,
    log: Option<(&Log, i64)>,
    entry_for: Option<&str>,
) -> Vec<u8> {
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest.trim_start_matches("sha256:")}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }))
    .expect("json");
    let (envelope, signature) = dsse_envelope(&statement, payload_type, key);
    let entries: Vec<Value> = log
        .map(|(log, time)| {
            let body = json!({
                "apiVersion": "0.0.1",
                "kind": "dsse",
                "spec": {
                    "envelopeHash": {"algorithm": "sha256", "value": sha256_hex(&serde_json::to_vec(&envelope).expect("json"))},
                    "payloadHash": {"algorithm": "sha256", "value": sha256_hex(&statement)},
                    "signatures": [{"signature": entry_for.unwrap_or(&signature), "verifier": base64(key.public_pem().as_bytes())}],
                }
            });
            log.tlog_entry(&body, time)
        })
        .into_iter()
        .collect();
    serde_json::to_vec(&json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": ""}, "tlogEntries": entries},
        "dsseEnvelope": envelope,
    }))
    .expect("json")
}

/// Runs a token service for a registry: `GET /token?scope=…` with the right
/// basic credentials gets a JWT granting the scopes asked for, signed by a
/// key whose certificate (in the header) chains to `token-ca.pem`, written
/// into `dir`. Returns the realm URL.
fn token_service(dir: &Path, (user, password): (&str, &str)) -> String {
    let authority = Authority::new("portcullis test token CA");
    authority.write(&dir.join("token-ca.pem"));
    let key = Key::new();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let certificate = authority.issue(&key, "tokens@test.example", "tokens", now - 60, now + 3600);
    let der = rustls::pki_types::CertificateDer::from_pem_slice(certificate.as_bytes())
        .expect("the token certificate");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token service");
    let realm = format!("http://{}/token", listener.local_addr().expect("address"));
    let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    let url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0
                    || line == "\r\n"
                {
                    break;
                }
                head.push(line);
            }
            let target = head
                .first()
                .and_then(|line| line.split(' ').nth(1))
                .unwrap_or_default();
            let authorized = head.iter().any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.eq_ignore_ascii_case("authorization") && value.trim() == expected
                })
            });
            let scopes: Vec<Value> = target
                .split_once('?')
                .map(|(_, query)| query)
                .unwrap_or_default()
                .split('&')
                .filter_map(|pair| pair.strip_prefix("scope="))
                .filter_map(|scope| {
                    let scope = scope.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/");
                    let mut parts = scope.splitn(3, ':');
                    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                })
                .collect();
            let answer = if authorized {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [base64(der.as_ref())]});
                let claims = json!({
                    "iss": "portcullis-test-tokens", "sub": "ci", "aud": "portcullis-test",
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
                    "access": scopes,
                });
                let signing_input = format!(
                    "{}.{}",
                    url(header.to_string().as_bytes()),
                    url(claims.to_string().as_bytes())
                );
                let signature = raw_ecdsa(&key.sign_der(signing_input.as_bytes()));
                let token = format!("{signing_input}.{}", url(&signature));
                let body =
                    json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = std::io::Write::write_all(&mut &stream, answer.as_bytes());
        }
    });
    realm
}

/// An ECDSA P-256 signature from DER (a sequence of two integers) to the
/// 64 bytes of r and s that JWTs carry.
fn raw_ecdsa(der: &[u8]) -> Vec<u8> {
    let integer = |at: usize| {
        assert_eq!(der[at], 0x02, "an ASN.1 integer");
        let length = usize::from(der[at + 1]);
        let value = &der[at + 2..at + 2 + length];
        let value = &value[value.len().saturating_sub(32)..];
        let mut fixed = vec![0; 32 - value.len()];
        fixed.extend_from_slice(value);
        (fixed, at + 2 + length)
    };
    let (r, next) = integer(2);
    let (s, _) = integer(next);
    [r, s].concat()
}

/// Runs `portcullis verify --output json`: the run, and its verdict
/// (`null` when it printed none).
pub(crate) fn verify(config: &Path, image: &str) -> (Run, Value) {
    let run = portcullis([
        "verify".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--output".as_ref(),
        "json".as_ref(),
        image.as_ref(),
    ]);
    let verdict = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
    (run, verdict)
}
