//! Cosign signatures and who may have made them.
//!
//! A signature is what cosign stores as one layer of the `sha256-<hex>.sig`
//! manifest: a simple-signing payload naming the image digest, and in the
//! layer's annotations the signature, optionally a certificate and its chain,
//! and a transparency-log bundle. An attestation is a DSSE envelope of the
//! `.att` manifest, signed the same ways. An [`Authority`] says whether it
//! vouches for one of them, and if not, why: the signature's bytes are
//! checked with sigstore's keys, a certificate against the trust root with
//! rustls-webpki, and a log entry's signed timestamp against the log's key;
//! the entry must also be about this very signature, which sigstore's own
//! `.sig` path does not check.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Deserialize;
use sigstore::cosign::bundle::Bundle;
use sigstore::cosign::payload::SimpleSigning;
use sigstore::crypto::{CosignVerificationKey, Signature as SignatureBytes};
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509Certificate};

use super::registry::Layer;
use super::settings::{AuthorityConfig, TrustRootConfig};

/// The media type of a cosign signature layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The media type of an attestation layer.
pub const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
/// The media type of a sigstore bundle, as cosign v3 stores signatures
/// (found through the referrers API).
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The payload type of an in-toto statement in a DSSE envelope, which both
/// an attestation (the in-toto attestation framework) and a cosign v3
/// bundle's envelope (the sigstore bundle spec) must carry. It is signed
/// with the payload (the PAE covers it), so requiring it keeps a document a
/// key signed for another purpose from being replayed as a statement.
const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The predicate type of cosign v3's image signature statements.
const COSIGN_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Extended key usage of code signing, 1.3.6.1.5.5.7.3.3, DER content.
const CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Fulcio's OIDC issuer extension (raw text), 1.3.6.1.4.1.57264.1.1.
const ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// Fulcio's OIDC issuer extension (a DER UTF8String), 1.3.6.1.4.1.57264.1.8.
const ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";

/// Why a key, certificate or trust root from the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold what it should.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, reason: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Certificate authorities and transparency logs.
pub struct TrustRoot {
    name: String,
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    /// Log keys by log ID (the hex sha256 of the key's DER).
    logs: BTreeMap<String, CosignVerificationKey>,
}

impl std::fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustRoot")
            .field("name", &self.name)
            .field("anchors", &self.anchors.len())
            .field("intermediates", &self.intermediates.len())
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TrustRoot {
    /// Reads the trust root's files.
    pub fn load(name: &str, config: &TrustRootConfig) -> Result<Self, LoadError> {
        let mut root = Self {
            name: name.to_owned(),
            anchors: Vec::new(),
            intermediates: Vec::new(),
            logs: BTreeMap::new(),
        };
        if let Some(path) = &config.trusted_root {
            root.add_trusted_root(path)?;
        }
        for path in &config.ca {
            for der in certificates(path)? {
                root.add_anchor(path, der)?;
            }
        }
        for path in &config.intermediates {
            for der in certificates(path)? {
                may_issue(&der).map_err(|reason| invalid(path, reason))?;
                root.intermediates.push(der);
            }
        }
        for path in &config.rekor {
            let text = read(path)?;
            let der = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&text)
                .map_err(|error| invalid(path, format!("not a PEM public key: {error}")))?;
            root.add_log(path, der.as_ref())?;
        }
        Ok(root)
    }

    fn add_anchor(&mut self, path: &Path, der: CertificateDer<'static>) -> Result<(), LoadError> {
        may_issue(&der).map_err(|reason| invalid(path, reason))?;
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|error| invalid(path, format!("not a usable CA certificate: {error}")))?
            .to_owned();
        self.anchors.push(anchor);
        Ok(())
    }

    fn add_log(&mut self, path: &Path, der: &[u8]) -> Result<(), LoadError> {
        let key = CosignVerificationKey::try_from_der(der)
            .map_err(|error| invalid(path, format!("not a usable log key: {error}")))?;
        self.logs.insert(crate::sha256_hex(der), key);
        Ok(())
    }

    /// A sigstore `trusted_root.json`: its certificate authorities' chains
    /// (the last certificate of each is the root) and its logs' keys.
    fn add_trusted_root(&mut self, path: &Path) -> Result<(), LoadError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct File {
            #[serde(default)]
            certificate_authorities: Vec<Authority>,
            #[serde(default)]
            tlogs: Vec<Log>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Authority {
            cert_chain: Chain,
        }
        #[derive(Deserialize)]
        struct Chain {
            certificates: Vec<Raw>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Log {
            public_key: Raw,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            raw_bytes: String,
        }
        let decode = |raw: &Raw| {
            base64::engine::general_purpose::STANDARD
                .decode(&raw.raw_bytes)
                .map_err(|_| invalid(path, "rawBytes is not base64"))
        };
        let file: File = serde_json::from_slice(&read(path)?)
            .map_err(|error| invalid(path, format!("not a trusted_root.json: {error}")))?;
        for authority in &file.certificate_authorities {
            let chain = &authority.cert_chain.certificates;
            let Some((root, rest)) = chain.split_last() else {
                return Err(invalid(
                    path,
                    "a certificate authority without certificates",
                ));
            };
            self.add_anchor(path, CertificateDer::from(decode(root)?))?;
            for intermediate in rest {
                let der = CertificateDer::from(decode(intermediate)?);
                may_issue(&der).map_err(|reason| invalid(path, reason))?;
                self.intermediates.push(der);
            }
        }
        for log in &file.tlogs {
            self.add_log(path, &decode(&log.public_key)?)?;
        }
        Ok(())
    }

    /// Checks a bundle's signed entry timestamp against this root's logs,
    /// and that the entry is about `envelope`.
    fn entry(&self, envelope: &Envelope) -> Result<i64, String> {
        let text = envelope
            .bundle
            .as_deref()
            .ok_or("no transparency-log bundle")?;
        let bundle: Bundle = serde_json::from_str(text)
            .map_err(|error| format!("the transparency-log bundle is malformed: {error}"))?;
        let key = self.logs.get(&bundle.payload.log_id).ok_or_else(|| {
            format!(
                "the transparency-log entry is from log {}, not one of trust root `{}`",
                bundle.payload.log_id, self.name
            )
        })?;
        let signed = serde_json_canonicalizer::to_vec(&bundle.payload)
            .map_err(|error| format!("the log entry cannot be canonicalized: {error}"))?;
        key.verify_signature(
            SignatureBytes::Base64Encoded(bundle.signed_entry_timestamp.as_bytes()),
            &signed,
        )
        .map_err(|_| "the transparency-log entry's signed timestamp does not verify".to_owned())?;
        let body = base64::engine::general_purpose::STANDARD
            .decode(&bundle.payload.body)
            .ok()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .ok_or("the transparency-log entry's body is malformed")?;
        envelope.bound_to(&body)?;
        Ok(bundle.payload.integrated_time)
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let text = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(path, format!("not PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(invalid(path, "no certificate in the file"));
    }
    Ok(certificates)
}

/// Something signed: a cosign signature or an attestation.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The bytes the signature covers.
    signed: Vec<u8>,
    /// The signature, base64 as cosign stores it.
    signature: String,
    certificate: Option<String>,
    chain: Option<String>,
    bundle: Option<String>,
    /// What a log entry must say to be about this envelope.
    binding: Binding,
}

#[derive(Debug, Clone)]
enum Binding {
    /// A `hashedrekord` entry: the hash of the signed bytes and the signature.
    HashedRekord,
    /// An `intoto` or `dsse` entry: the hash of the envelope's payload
    /// (and, for `dsse`, its signature).
    Dsse {
        payload_hash: String,
        signature: String,
    },
}

impl Envelope {
    fn from_annotations(
        signed: Vec<u8>,
        signature: String,
        annotations: &BTreeMap<String, String>,
        binding: Binding,
    ) -> Self {
        Self {
            signed,
            signature,
            certificate: annotations.get(CERTIFICATE_ANNOTATION).cloned(),
            chain: annotations.get(CHAIN_ANNOTATION).cloned(),
            bundle: annotations.get(BUNDLE_ANNOTATION).cloned(),
            binding,
        }
    }

    fn bound_to(&self, body: &serde_json::Value) -> Result<(), String> {
        let kind = body["kind"].as_str().unwrap_or_default();
        let spec = &body["spec"];
        let ok = match (&self.binding, kind) {
            (Binding::HashedRekord, "hashedrekord") => {
                spec["data"]["hash"]["value"].as_str() == Some(&crate::sha256_hex(&self.signed))
                    && spec["signature"]["content"].as_str() == Some(self.signature.as_str())
            }
            (Binding::Dsse { payload_hash, .. }, "intoto") => {
                spec["content"]["payloadHash"]["value"].as_str() == Some(payload_hash.as_str())
            }
            (
                Binding::Dsse {
                    payload_hash,
                    signature,
                },
                "dsse",
            ) => {
                spec["payloadHash"]["value"].as_str() == Some(payload_hash.as_str())
                    && spec["signatures"].as_array().is_some_and(|signatures| {
                        signatures
                            .iter()
                            .any(|entry| entry["signature"].as_str() == Some(signature.as_str()))
                    })
            }
            _ => {
                return Err(format!(
                    "the transparency-log entry is a `{kind}` entry, not one for this signature"
                ));
            }
        };
        if ok {
            Ok(())
        } else {
            Err("the transparency-log entry is about another signature".into())
        }
    }
}

/// A cosign signature layer, read.
#[derive(Debug, Clone)]
pub struct Signature {
    /// What was signed and how.
    pub envelope: Envelope,
    /// The digest the payload names.
    pub digest: String,
}

/// Reads one layer of a `.sig` manifest as cosign wrote it; the error says
/// why it is not a signature of `digest`.
pub fn signature(layer: &Layer, digest: &str) -> Result<Signature, String> {
    if layer.descriptor.media_type != SIMPLE_SIGNING {
        return Err(format!(
            "layer {} is a `{}`, not a signature",
            layer.descriptor.digest, layer.descriptor.media_type
        ));
    }
    let payload: SimpleSigning = serde_json::from_slice(&layer.data)
        .map_err(|error| format!("the signed payload is malformed: {error}"))?;
    let named = payload.critical.image.docker_manifest_digest;
    if named != digest {
        return Err(format!("the signature is for {named}, not {digest}"));
    }
    let annotations = layer.descriptor.annotations.clone().unwrap_or_default();
    let signature = annotations
        .get(SIGNATURE_ANNOTATION)
        .cloned()
        .ok_or("the layer has no signature annotation")?;
    Ok(Signature {
        envelope: Envelope::from_annotations(
            layer.data.clone(),
            signature,
            &annotations,
            Binding::HashedRekord,
        ),
        digest: named,
    })
}

/// An in-toto statement from an attestation layer, its envelope verified
/// by nobody yet.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The DSSE envelope's signature, over its pre-authentication encoding.
    pub envelope: Envelope,
    /// The statement's predicate type.
    pub predicate_type: String,
    /// The predicate.
    pub predicate: serde_json::Value,
}

/// A DSSE envelope as cosign and sigstore write it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dsse {
    payload_type: String,
    payload: String,
    signatures: Vec<DsseSignature>,
}

#[derive(Deserialize)]
struct DsseSignature {
    sig: String,
}

/// An in-toto statement.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InToto {
    #[serde(default)]
    subject: Vec<InTotoSubject>,
    predicate_type: String,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct InTotoSubject {
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// What a DSSE envelope signs: its pre-authentication encoding (PAE) of an
/// in-toto statement about `digest`; the statement, the signed bytes, the
/// signature and the log binding.
fn open_dsse(dsse: &Dsse, digest: &str) -> Result<(InToto, Vec<u8>, String, Binding), String> {
    if dsse.payload_type != IN_TOTO {
        return Err(format!(
            "the DSSE envelope's payload type is `{}`, not an in-toto statement's (`{IN_TOTO}`)",
            dsse.payload_type
        ));
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&dsse.payload)
        .map_err(|_| "the DSSE payload is not base64")?;
    let statement: InToto = serde_json::from_slice(&payload)
        .map_err(|error| format!("the in-toto statement is malformed: {error}"))?;
    let hex_digest = digest.strip_prefix("sha256:").unwrap_or(digest);
    if !statement
        .subject
        .iter()
        .any(|subject| subject.digest.get("sha256").map(String::as_str) == Some(hex_digest))
    {
        return Err(format!("the statement is not about {digest}"));
    }
    let [signature] = dsse.signatures.as_slice() else {
        return Err(format!(
            "the DSSE envelope has {} signatures; cosign writes one",
            dsse.signatures.len()
        ));
    };
    let mut signed = format!(
        "DSSEv1 {} {} {} ",
        dsse.payload_type.len(),
        dsse.payload_type,
        payload.len()
    )
    .into_bytes();
    signed.extend_from_slice(&payload);
    let binding = Binding::Dsse {
        payload_hash: crate::sha256_hex(&payload),
        signature: signature.sig.clone(),
    };
    Ok((statement, signed, signature.sig.clone(), binding))
}

/// Reads one layer of an `.att` manifest: a DSSE envelope holding an
/// in-toto statement about `digest`.
pub fn statement(layer: &Layer, digest: &str) -> Result<Statement, String> {
    if layer.descriptor.media_type != DSSE {
        return Err(format!(
            "layer {} is a `{}`, not a DSSE envelope",
            layer.descriptor.digest, layer.descriptor.media_type
        ));
    }
    let dsse: Dsse = serde_json::from_slice(&layer.data)
        .map_err(|error| format!("the DSSE envelope is malformed: {error}"))?;
    let (statement, signed, signature, binding) = open_dsse(&dsse, digest)?;
    let annotations = layer.descriptor.annotations.clone().unwrap_or_default();
    Ok(Statement {
        envelope: Envelope::from_annotations(signed, signature, &annotations, binding),
        predicate_type: statement.predicate_type,
        predicate: statement.predicate,
    })
}

/// Reads a sigstore bundle (v0.3) found through the referrers API, as
/// cosign v3 signs images: a DSSE envelope of a `cosign/sign/v1` statement
/// about `digest`, with the certificate (or only a hint of the key) and the
/// log entry beside it. Key-based ones are read too, which sigstore-rs's own
/// bundle path skips.
pub fn bundle(layer: &Layer, digest: &str) -> Result<Signature, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Bundle {
        media_type: String,
        verification_material: Material,
        #[serde(default)]
        dsse_envelope: Option<Dsse>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Material {
        #[serde(default)]
        certificate: Option<Raw>,
        #[serde(default)]
        x509_certificate_chain: Option<Chain>,
        #[serde(default)]
        tlog_entries: Vec<TlogEntry>,
    }
    #[derive(Deserialize)]
    struct Chain {
        certificates: Vec<Raw>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        raw_bytes: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TlogEntry {
        log_index: serde_json::Value,
        log_id: LogId,
        integrated_time: serde_json::Value,
        #[serde(default)]
        inclusion_promise: Option<Promise>,
        canonicalized_body: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LogId {
        key_id: String,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Promise {
        signed_entry_timestamp: String,
    }
    // Protobuf's JSON writes 64-bit integers as strings.
    let int = |value: &serde_json::Value| {
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
    };
    let decode = |text: &str| base64::engine::general_purpose::STANDARD.decode(text).ok();
    let pem = |raw: &Raw| decode(&raw.raw_bytes).map(|der| certificate_pem(&der));
    let bundle: Bundle = serde_json::from_slice(&layer.data)
        .map_err(|error| format!("the sigstore bundle is malformed: {error}"))?;
    if !bundle
        .media_type
        .starts_with("application/vnd.dev.sigstore.bundle")
    {
        return Err(format!("`{}` is not a sigstore bundle", bundle.media_type));
    }
    let dsse = bundle
        .dsse_envelope
        .ok_or("the bundle signs a message digest, not an in-toto statement; cosign signs images with statements")?;
    let (statement, signed, signature, binding) = open_dsse(&dsse, digest)?;
    if statement.predicate_type != COSIGN_SIGN {
        return Err(format!(
            "the bundle's statement is a `{}`, not a cosign image signature",
            statement.predicate_type
        ));
    }
    let material = bundle.verification_material;
    let mut certificates: Vec<String> = material
        .certificate
        .iter()
        .chain(
            material
                .x509_certificate_chain
                .iter()
                .flat_map(|chain| &chain.certificates),
        )
        .map(|raw| pem(raw).ok_or("a certificate in the bundle is not base64"))
        .collect::<Result<_, _>>()?;
    let certificate = (!certificates.is_empty()).then(|| certificates.remove(0));
    let chain = (!certificates.is_empty()).then(|| certificates.concat());
    // The log entry, in the shape of cosign's older bundle annotation, so
    // one check serves both.
    let entry = material.tlog_entries.first().and_then(|entry| {
        let promise = entry.inclusion_promise.as_ref()?;
        let log_id = crate::hex(&decode(&entry.log_id.key_id)?);
        Some(
            serde_json::json!({
                "SignedEntryTimestamp": promise.signed_entry_timestamp,
                "Payload": {
                    "body": entry.canonicalized_body,
                    "integratedTime": int(&entry.integrated_time)?,
                    "logIndex": int(&entry.log_index)?,
                    "logID": log_id,
                }
            })
            .to_string(),
        )
    });
    Ok(Signature {
        envelope: Envelope {
            signed,
            signature,
            certificate,
            chain,
            bundle: entry,
            binding,
        },
        digest: digest.to_owned(),
    })
}

/// Who may vouch for an image.
pub enum Authority {
    /// A public key.
    Key {
        /// How messages name it.
        label: String,
        /// The key.
        key: CosignVerificationKey,
        /// The log that must hold the signature.
        tlog: Option<Arc<TrustRoot>>,
    },
    /// A certificate identity.
    Keyless {
        /// How messages name it.
        label: String,
        /// What the certificate must chain to.
        root: Arc<TrustRoot>,
        /// The issuer it must name.
        issuer: Option<String>,
        /// The subject it must name.
        subject: Subject,
    },
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A certificate subject requirement.
#[derive(Debug, Clone)]
pub enum Subject {
    /// Exactly this.
    Exact(String),
    /// Matches this, whole.
    Regex(regex::Regex),
}

impl Subject {
    fn matches(&self, name: &str) -> bool {
        match self {
            Subject::Exact(subject) => subject == name,
            Subject::Regex(regex) => regex.is_match(name),
        }
    }
}

impl Authority {
    /// Builds an authority from its configuration, with the loaded trust
    /// roots by name.
    pub fn load(
        config: &AuthorityConfig,
        roots: &BTreeMap<String, Arc<TrustRoot>>,
    ) -> Result<Self, LoadError> {
        let root = |name: &str| {
            roots.get(name).cloned().ok_or_else(|| LoadError::Invalid {
                path: name.into(),
                reason: "no such trust root".into(),
            })
        };
        match config {
            AuthorityConfig::Key(key) => {
                let text = read(&key.key)?;
                let verification = CosignVerificationKey::try_from_pem(&text)
                    .map_err(|error| invalid(&key.key, format!("not a public key: {error}")))?;
                let der = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&text)
                    .map_err(|error| invalid(&key.key, format!("not a PEM public key: {error}")))?;
                Ok(Authority::Key {
                    label: format!(
                        "key {} (sha256:{})",
                        key.key.display(),
                        &crate::sha256_hex(der.as_ref())[..16]
                    ),
                    key: verification,
                    tlog: key.tlog.as_deref().map(root).transpose()?,
                })
            }
            AuthorityConfig::Keyless(keyless) => {
                let subject = match (&keyless.subject, &keyless.subject_regex) {
                    (_, Some(regex)) => {
                        Subject::Regex(regex::Regex::new(&format!("^(?:{regex})$")).map_err(
                            |error| LoadError::Invalid {
                                path: "subject_regex".into(),
                                reason: error.to_string(),
                            },
                        )?)
                    }
                    (Some(subject), None) => Subject::Exact(subject.clone()),
                    (None, None) => {
                        return Err(LoadError::Invalid {
                            path: "subject".into(),
                            reason: "a keyless authority needs `subject` or `subject_regex`".into(),
                        });
                    }
                };
                let shown = keyless
                    .subject
                    .clone()
                    .or_else(|| {
                        keyless
                            .subject_regex
                            .as_ref()
                            .map(|regex| format!("/{regex}/"))
                    })
                    .unwrap_or_default();
                Ok(Authority::Keyless {
                    label: format!(
                        "keyless {shown}{} from trust root `{}`",
                        keyless
                            .issuer
                            .as_ref()
                            .map(|issuer| format!(" issued by {issuer}"))
                            .unwrap_or_default(),
                        keyless.trust_root
                    ),
                    root: root(&keyless.trust_root)?,
                    issuer: keyless.issuer.clone(),
                    subject,
                })
            }
        }
    }

    /// How messages name this authority.
    pub fn label(&self) -> &str {
        match self {
            Authority::Key { label, .. } | Authority::Keyless { label, .. } => label,
        }
    }

    /// Whether this authority made `envelope`: the signer's identity, or
    /// why not.
    pub fn accepts(&self, envelope: &Envelope) -> Result<String, String> {
        match self {
            Authority::Key { key, tlog, label } => {
                key.verify_signature(
                    SignatureBytes::Base64Encoded(envelope.signature.as_bytes()),
                    &envelope.signed,
                )
                .map_err(|_| "the signature does not verify with this key".to_owned())?;
                if let Some(root) = tlog {
                    root.entry(envelope)?;
                }
                Ok(label.clone())
            }
            Authority::Keyless {
                root,
                issuer,
                subject,
                ..
            } => {
                let certificate = Certificate::read(envelope)?;
                // With logs, the certificate must have been valid when the
                // log saw the signature (Fulcio's are valid for minutes);
                // without, it must be valid now.
                let time = if root.logs.is_empty() {
                    UnixTime::now()
                } else {
                    let integrated = root.entry(envelope)?;
                    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        u64::try_from(integrated)
                            .map_err(|_| "the log entry's time is negative")?,
                    ))
                };
                certificate.chains_to(root, time)?;
                let key = CosignVerificationKey::try_from_der(&certificate.public_key)
                    .map_err(|error| format!("the certificate's key is unusable: {error}"))?;
                key.verify_signature(
                    SignatureBytes::Base64Encoded(envelope.signature.as_bytes()),
                    &envelope.signed,
                )
                .map_err(|_| {
                    "the signature does not verify with the certificate's key".to_owned()
                })?;
                if let Some(wanted) = issuer
                    && certificate.issuer.as_deref() != Some(wanted.as_str())
                {
                    return Err(format!(
                        "the certificate's issuer is {}, not {wanted}",
                        certificate.issuer.as_deref().unwrap_or("not given")
                    ));
                }
                let name = certificate
                    .subjects
                    .iter()
                    .find(|name| subject.matches(name))
                    .ok_or_else(|| {
                        format!(
                            "the certificate's subject {} does not match",
                            if certificate.subjects.is_empty() {
                                "(none)".to_owned()
                            } else {
                                certificate.subjects.join(", ")
                            }
                        )
                    })?;
                Ok(match &certificate.issuer {
                    Some(issuer) => format!("{name} ({issuer})"),
                    None => name.clone(),
                })
            }
        }
    }
}

/// What a signing certificate says.
struct Certificate {
    der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    public_key: Vec<u8>,
    subjects: Vec<String>,
    issuer: Option<String>,
}

impl Certificate {
    fn read(envelope: &Envelope) -> Result<Self, String> {
        let pem = envelope
            .certificate
            .as_deref()
            .ok_or("no certificate with the signature")?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| "the certificate is not PEM")?;
        let chain = match &envelope.chain {
            Some(chain) => CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| "the certificate chain is not PEM")?,
            None => Vec::new(),
        };
        let (_, parsed) = X509Certificate::from_der(der.as_ref())
            .map_err(|error| format!("the certificate is malformed: {error}"))?;
        let mut subjects = Vec::new();
        let mut legacy_issuer = None;
        let mut issuer = None;
        for extension in parsed.extensions() {
            match extension.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(names) => {
                    for name in &names.general_names {
                        match name {
                            GeneralName::RFC822Name(email) => subjects.push((*email).to_owned()),
                            GeneralName::URI(uri) => subjects.push((*uri).to_owned()),
                            _ => {}
                        }
                    }
                }
                ParsedExtension::KeyUsage(usage) if !usage.digital_signature() => {
                    return Err("the certificate may not sign (key usage)".into());
                }
                _ => {}
            }
            let oid = extension.oid.to_id_string();
            let (slot, value) = if oid == ISSUER_V1 {
                let value = std::str::from_utf8(extension.value)
                    .map_err(|_| format!("the certificate's issuer extension {oid} is not text"))?;
                (&mut legacy_issuer, value.to_owned())
            } else if oid == ISSUER_V2 {
                // A DER UTF8String: tag, length, text.
                let value = x509_parser::der_parser::der::parse_der_utf8string(extension.value)
                    .ok()
                    .and_then(|(_, value)| value.as_str().ok().map(str::to_owned))
                    .ok_or_else(|| {
                        format!("the certificate's issuer extension {oid} is not a UTF8String")
                    })?;
                (&mut issuer, value)
            } else {
                continue;
            };
            // x509-parser keeps repeated extensions; RFC 5280 forbids them,
            // and a reader taking either one could be told another issuer.
            if slot.replace(value).is_some() {
                return Err(format!(
                    "the certificate carries the issuer extension {oid} twice"
                ));
            }
        }
        let issuer = Self::issuer(legacy_issuer, issuer)?;
        Ok(Self {
            public_key: parsed.public_key().raw.to_vec(),
            der: der.clone().into_owned(),
            chain,
            subjects,
            issuer,
        })
    }

    /// The OIDC issuer from Fulcio's two extensions: Go verifiers read the
    /// new form (`.1.8`) and older ones the legacy form (`.1.1`), so a
    /// certificate whose two say different things is refused rather than
    /// read one way here and another way elsewhere.
    fn issuer(legacy: Option<String>, current: Option<String>) -> Result<Option<String>, String> {
        match (legacy, current) {
            (Some(legacy), Some(current)) if legacy != current => Err(format!(
                "the certificate names two issuers, `{legacy}` ({ISSUER_V1}) and `{current}` ({ISSUER_V2})"
            )),
            (legacy, current) => Ok(current.or(legacy)),
        }
    }

    fn chains_to(&self, root: &TrustRoot, time: UnixTime) -> Result<(), String> {
        let intermediates: Vec<CertificateDer<'_>> = root
            .intermediates
            .iter()
            .chain(&self.chain)
            .cloned()
            .collect();
        let end_entity = webpki::EndEntityCert::try_from(&self.der)
            .map_err(|error| format!("the certificate is malformed: {error}"))?;
        // webpki checks an issuer's basicConstraints but not its key usage;
        // each candidate path is checked here, and a refused one makes
        // webpki try the others. The reason is kept to be told.
        let refused = std::cell::RefCell::new(None);
        let issuers_may_sign = |path: &webpki::VerifiedPath<'_>| {
            for issuer in path.intermediate_certificates() {
                if let Err(reason) = may_issue(&issuer.der()) {
                    *refused.borrow_mut() = Some(reason);
                    return Err(webpki::Error::EndEntityUsedAsCa);
                }
            }
            Ok(())
        };
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &root.anchors,
                &intermediates,
                time,
                webpki::KeyUsage::required_if_present(CODE_SIGNING),
                None,
                Some(&issuers_may_sign),
            )
            .map(|_| ())
            .map_err(|error| match error {
                webpki::Error::EndEntityUsedAsCa => refused.take().unwrap_or_else(|| {
                    "a certificate in the chain is not a CA (basicConstraints) but stands as an issuer"
                        .to_owned()
                }),
                webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                    "the certificate was not valid when the signature was made".to_owned()
                }
                webpki::Error::UnknownIssuer => {
                    format!(
                        "the certificate does not chain to trust root `{}`",
                        root.name
                    )
                }
                other => format!("the certificate is not trusted: {other:?}"),
            })
    }
}

/// Whether `der` may issue certificates: not a CA by basicConstraints, or a
/// key usage without keyCertSign, says it may not. (A CA certificate
/// without a key usage extension is not restricted by one, as RFC 5280
/// reads an absent extension; webpki does the same for CRL signers.)
fn may_issue(der: &CertificateDer<'_>) -> Result<(), String> {
    let (_, parsed) = X509Certificate::from_der(der.as_ref())
        .map_err(|error| format!("a CA certificate is malformed: {error}"))?;
    let subject = parsed.subject().to_string();
    let malformed = |error| format!("the CA certificate `{subject}` is malformed: {error}");
    if let Some(constraints) = parsed.basic_constraints().map_err(malformed)?
        && !constraints.value.ca
    {
        return Err(format!(
            "`{subject}` is not a CA certificate (basicConstraints), so it may not issue certificates"
        ));
    }
    if let Some(usage) = parsed.key_usage().map_err(malformed)?
        && !usage.value.key_cert_sign()
    {
        return Err(format!(
            "`{subject}` may not sign certificates (its key usage lacks keyCertSign)"
        ));
    }
    Ok(())
}

/// A DER certificate as PEM, in lines of 64 characters.
fn certificate_pem(der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::manifest::OciDescriptor;

    fn layer(media_type: &str, data: &[u8]) -> Layer {
        Layer {
            descriptor: OciDescriptor {
                media_type: media_type.into(),
                digest: format!("sha256:{}", crate::sha256_hex(data)),
                size: i64::try_from(data.len()).unwrap_or_default(),
                ..OciDescriptor::default()
            },
            data: data.to_vec(),
        }
    }

    const DIGEST: &str = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a";

    #[test]
    fn malformed_signatures_attestations_and_bundles_are_named_not_panicked_on() {
        let inputs: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            b"{}",
            b"{\"critical\": 1}",
            b"{\"payloadType\": \"x\", \"payload\": \"%%%\", \"signatures\": []}",
            b"{\"payloadType\": \"x\", \"payload\": \"e30=\", \"signatures\": []}",
            b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\", \"verificationMaterial\": {}}",
            b"{\"mediaType\": \"application/vnd.dev.sigstore.bundle.v0.3+json\", \"verificationMaterial\": {\"certificate\": {\"rawBytes\": \"!\"}}, \"dsseEnvelope\": {\"payloadType\": \"t\", \"payload\": \"e30=\", \"signatures\": [{\"sig\": \"\"}]}}",
            &[0xff, 0xfe, 0x00],
        ];
        for data in inputs {
            let text = String::from_utf8_lossy(data);
            let why = signature(&layer(SIMPLE_SIGNING, data), DIGEST).expect_err("not a signature");
            assert!(!why.is_empty(), "{text}");
            let why = statement(&layer(DSSE, data), DIGEST).expect_err("not an attestation");
            assert!(!why.is_empty(), "{text}");
            let why = bundle(&layer(BUNDLE, data), DIGEST).expect_err("not a bundle");
            assert!(!why.is_empty(), "{text}");
        }
        let why = signature(&layer("application/octet-stream", b"{}"), DIGEST)
            .expect_err("another media type");
        assert!(why.contains("not a signature"), "{why}");
    }

    /// A DSSE envelope of an in-toto statement about [`DIGEST`] with
    /// `predicate_type`, under `payload_type` (unsigned: the type is read
    /// before any signature).
    fn envelope(payload_type: &str, predicate_type: &str) -> Vec<u8> {
        let statement = serde_json::json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "x", "digest": {"sha256": DIGEST.trim_start_matches("sha256:")}}],
            "predicateType": predicate_type,
            "predicate": {},
        });
        let payload = base64::engine::general_purpose::STANDARD.encode(statement.to_string());
        serde_json::json!({"payloadType": payload_type, "payload": payload, "signatures": [{"sig": "c2ln"}]})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_dsse_envelope_of_another_payload_type_is_refused_by_name() {
        let other = "application/vnd.example.release+json";
        let why = statement(
            &layer(DSSE, &envelope(other, "https://slsa.dev/provenance/v1")),
            DIGEST,
        )
        .expect_err("another payload type");
        assert!(why.contains(&format!("payload type is `{other}`")), "{why}");
        let bundled = serde_json::json!({
            "mediaType": BUNDLE,
            "verificationMaterial": {"publicKey": {"hint": ""}},
            "dsseEnvelope": serde_json::from_slice::<serde_json::Value>(&envelope(other, COSIGN_SIGN)).expect("json"),
        });
        let why = bundle(&layer(BUNDLE, bundled.to_string().as_bytes()), DIGEST)
            .expect_err("another payload type");
        assert!(why.contains(&format!("payload type is `{other}`")), "{why}");
        let read = statement(
            &layer(DSSE, &envelope(IN_TOTO, "https://slsa.dev/provenance/v1")),
            DIGEST,
        )
        .expect("an in-toto statement");
        assert_eq!(read.predicate_type, "https://slsa.dev/provenance/v1");
    }

    /// A CA of its own, for certificates made here.
    struct Ca {
        params: rcgen::CertificateParams,
        key: rcgen::KeyPair,
        der: CertificateDer<'static>,
    }

    impl Ca {
        fn root() -> Self {
            Self::make(
                "root",
                None,
                vec![rcgen::KeyUsagePurpose::KeyCertSign],
                true,
            )
        }

        /// A CA certificate named `name` issued by `issuer` (self-signed
        /// without), with `usages` and basicConstraints `cA` of `is_ca`.
        fn make(
            name: &str,
            issuer: Option<&Ca>,
            usages: Vec<rcgen::KeyUsagePurpose>,
            is_ca: bool,
        ) -> Self {
            let key = rcgen::KeyPair::generate().expect("a key");
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
                    .expect("a CA certificate"),
                None => params.self_signed(&key).expect("a CA certificate"),
            };
            let der = certificate.der().clone();
            Self { params, key, der }
        }

        /// A code-signing leaf with `extensions`, PEM.
        fn leaf(&self, extensions: Vec<rcgen::CustomExtension>) -> String {
            let key = rcgen::KeyPair::generate().expect("a key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
                "alice@team.example".try_into().expect("an e-mail"),
            )];
            params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
            params.custom_extensions = extensions;
            params
                .signed_by(&key, &rcgen::Issuer::from_params(&self.params, &self.key))
                .expect("a leaf")
                .pem()
        }

        fn pem(&self) -> String {
            certificate_pem(&self.der)
        }
    }

    fn signed_with(certificate: String, chain: Option<String>) -> Envelope {
        Envelope {
            signed: Vec::new(),
            signature: String::new(),
            certificate: Some(certificate),
            chain,
            bundle: None,
            binding: Binding::HashedRekord,
        }
    }

    fn issuer_v1(issuer: &str) -> rcgen::CustomExtension {
        rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
            issuer.as_bytes().to_vec(),
        )
    }

    fn issuer_v2(issuer: &str) -> rcgen::CustomExtension {
        let mut content = vec![0x0c, u8::try_from(issuer.len()).expect("a short issuer")];
        content.extend_from_slice(issuer.as_bytes());
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 8], content)
    }

    #[test]
    fn a_certificate_whose_two_issuer_extensions_disagree_is_refused() {
        let ca = Ca::root();
        let read = |extensions| Certificate::read(&signed_with(ca.leaf(extensions), None));
        let good = "https://token.example";
        let bad = "https://evil.example";
        let why = read(vec![issuer_v1(good), issuer_v2(bad)])
            .err()
            .expect("two issuers");
        assert!(why.contains(good) && why.contains(bad), "{why}");
        let why = read(vec![issuer_v2(bad), issuer_v1(good)])
            .err()
            .expect("two issuers, either order");
        assert!(why.contains("two issuers"), "{why}");
        let issuer = |extensions| read(extensions).map(|certificate| certificate.issuer);
        assert_eq!(
            issuer(vec![issuer_v1(good), issuer_v2(good)]),
            Ok(Some(good.to_owned()))
        );
        assert_eq!(issuer(vec![issuer_v1(good)]), Ok(Some(good.to_owned())));
        assert_eq!(issuer(vec![issuer_v2(good)]), Ok(Some(good.to_owned())));
        assert_eq!(issuer(vec![]), Ok(None));
        let twice = read(vec![issuer_v2(good), issuer_v2(bad)])
            .err()
            .expect("twice");
        assert!(twice.contains("twice"), "{twice}");
        let garbled = rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
            good.as_bytes().to_vec(),
        );
        let why = read(vec![garbled]).err().expect("not a UTF8String");
        assert!(why.contains("not a UTF8String"), "{why}");
    }

    #[test]
    fn an_intermediate_that_may_not_sign_certificates_does_not_chain() {
        let root = Ca::root();
        let trust = |root: &Ca| TrustRoot {
            name: "test".into(),
            anchors: vec![
                webpki::anchor_from_trusted_cert(&root.der)
                    .expect("an anchor")
                    .to_owned(),
            ],
            intermediates: Vec::new(),
            logs: BTreeMap::new(),
        };
        let chains = |intermediate: &Ca| {
            let envelope = signed_with(intermediate.leaf(Vec::new()), Some(intermediate.pem()));
            Certificate::read(&envelope)
                .and_then(|certificate| certificate.chains_to(&trust(&root), UnixTime::now()))
        };
        let signing = Ca::make(
            "signing",
            Some(&root),
            vec![rcgen::KeyUsagePurpose::KeyCertSign],
            true,
        );
        assert_eq!(chains(&signing), Ok(()));
        let unrestricted = Ca::make("unrestricted", Some(&root), Vec::new(), true);
        assert_eq!(
            chains(&unrestricted),
            Ok(()),
            "no key usage: not restricted"
        );
        let no_cert_sign = Ca::make(
            "no-cert-sign",
            Some(&root),
            vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::CrlSign,
            ],
            true,
        );
        let why = chains(&no_cert_sign).expect_err("no keyCertSign");
        assert!(why.contains("lacks keyCertSign"), "{why}");
        let not_ca = Ca::make(
            "not-a-ca",
            Some(&root),
            vec![rcgen::KeyUsagePurpose::KeyCertSign],
            false,
        );
        let why = chains(&not_ca).expect_err("not a CA");
        assert!(why.contains("not a CA"), "{why}");

        // The same is refused where the configuration names it.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("intermediate.pem");
        std::fs::write(&path, no_cert_sign.pem()).expect("write");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, root.pem()).expect("write");
        let config = TrustRootConfig {
            ca: vec![ca.clone()],
            intermediates: vec![path],
            ..TrustRootConfig::default()
        };
        let error = TrustRoot::load("test", &config).expect_err("refused at load");
        assert!(error.to_string().contains("lacks keyCertSign"), "{error}");
        std::fs::write(&ca, no_cert_sign.pem()).expect("write");
        let config = TrustRootConfig {
            ca: vec![ca],
            ..TrustRootConfig::default()
        };
        let error = TrustRoot::load("test", &config).expect_err("refused at load");
        assert!(error.to_string().contains("lacks keyCertSign"), "{error}");
    }
}
