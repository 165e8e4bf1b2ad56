//! Image verification: what runs must be what was signed.
//!
//! For each image a request would run, its reference is read once as the
//! engine reads it and canonicalized (see [`mod@reference`]); the first rule
//! whose pattern matches that canonical name decides what it needs, and an
//! image no rule matches gets the configured default. The reference is resolved to a digest at the registry,
//! the signatures cosign stores at `sha256-<hex>.sig` (and attestations at
//! `.att`) are read, and the rule's authorities are asked whether they made
//! them. The verdict names the digest, the rule, the authority and the signer,
//! or why not; front doors pin what they forward to that digest.
//!
//! Registry failures are reported as such, never as "unsigned": only a
//! signature tag the registry says is absent means no signature.

pub mod admit;
pub mod cache;
pub mod cosign;
pub mod pattern;
pub mod reference;
pub mod registry;
pub mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use self::cache::Cache;
use self::cosign::{Authority, TrustRoot};
use self::pattern::Pattern;
use self::reference::{Name, Reference, ReferenceError};
use self::registry::{Registry, RegistryError};
use self::settings::{ImagesConfig, Unmatched};

/// Why the `images` section cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A trust root cannot be loaded.
    #[error("images.trust_roots.{name}")]
    TrustRoot {
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: cosign::LoadError,
    },
    /// An authority cannot be loaded.
    #[error("images.rules[{rule}]")]
    Authority {
        /// The rule's index.
        rule: usize,
        /// Why.
        #[source]
        source: cosign::LoadError,
    },
    /// The registry client cannot be set up.
    #[error("images.registries")]
    Registry(#[source] registry::SetupError),
}

/// Verifies images against the configured rules.
pub struct Verifier {
    rules: Vec<Rule>,
    default: Unmatched,
    registry: Registry,
    cache: Cache<Arc<Checked>>,
}

struct Rule {
    name: String,
    patterns: Vec<Pattern>,
    any_of: Vec<Arc<Authority>>,
    all_of: Vec<Arc<Authority>>,
    attestations: Vec<AttestationRule>,
}

struct AttestationRule {
    predicate_type: String,
    any_of: Vec<Arc<Authority>>,
}

/// The verdict on one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageVerdict {
    /// The reference as the request wrote it.
    pub reference: String,
    /// The reference as the engine and the registry resolve it: the
    /// canonical registry and repository, and the tag and digest as
    /// written; `None` when it is not a reference.
    pub canonical: Option<String>,
    /// The digest it resolved to, when it did.
    pub digest: Option<String>,
    /// Whether the image may run: verified, or unmatched under `default:
    /// allow`.
    pub allowed: bool,
    /// Whether an authority vouched for it.
    pub verified: bool,
    /// The rule that applied.
    pub rule: Option<String>,
    /// The authority that vouched for it.
    pub authority: Option<String>,
    /// Who signed (key, or certificate subject and issuer).
    pub signer: Option<String>,
    /// Why it was not verified.
    pub reason: Option<String>,
    /// Verified attestations.
    pub attestations: Vec<Attestation>,
    /// Each signature and attestation found, and what became of it.
    pub found: Vec<String>,
    /// Whether the registry's answers came from the verdict cache.
    pub cached: bool,
}

/// A verified in-toto attestation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attestation {
    /// Its predicate type.
    pub predicate_type: String,
    /// Its predicate.
    pub predicate: serde_json::Value,
    /// Who signed it.
    pub signer: String,
}

impl ImageVerdict {
    /// The digest-pinned reference to forward: the canonical
    /// `registry/repository:tag@sha256:…` (the tag kept for people), so what
    /// runs is named as what was verified; `None` when nothing was verified.
    pub fn pinned(&self) -> Option<String> {
        let digest = self.digest.as_ref().filter(|_| self.verified)?;
        let reference = Reference::parse(self.canonical.as_deref()?).ok()?;
        Some(reference.pinned(digest))
    }
}

/// What the registry held for one digest under one rule: the part of a
/// verdict that can be cached.
#[derive(Debug)]
struct Checked {
    verified: bool,
    authority: Option<String>,
    signer: Option<String>,
    reason: Option<Failure>,
    attestations: Vec<Attestation>,
    found: Vec<String>,
}

#[derive(Debug, Clone)]
enum Failure {
    Registry(RegistryError),
    /// No signature of the digest; why each layer found was not one.
    Unsigned(Vec<String>),
    NotAccepted {
        rule: String,
        why: Vec<String>,
    },
    MissingAttestation {
        rule: String,
        predicate_type: String,
        why: Vec<String>,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Registry(error) => write!(f, "{error}"),
            Failure::Unsigned(skipped) if skipped.is_empty() => f.write_str("no signature"),
            Failure::Unsigned(skipped) => write!(f, "no signature ({})", skipped.join("; ")),
            Failure::NotAccepted { rule, why } => {
                write!(f, "no signature from an authority of rule `{rule}`")?;
                if !why.is_empty() {
                    write!(f, " ({})", why.join("; "))?;
                }
                Ok(())
            }
            Failure::MissingAttestation {
                rule,
                predicate_type,
                why,
            } => {
                write!(
                    f,
                    "no `{predicate_type}` attestation from an authority of rule `{rule}`"
                )?;
                if !why.is_empty() {
                    write!(f, " ({})", why.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

impl Verifier {
    /// Loads keys and trust roots and sets up the registry client.
    pub fn new(config: &ImagesConfig) -> Result<Self, SetupError> {
        let mut roots = BTreeMap::new();
        for (name, root) in &config.trust_roots {
            let loaded = TrustRoot::load(name, root).map_err(|source| SetupError::TrustRoot {
                name: name.clone(),
                source,
            })?;
            roots.insert(name.clone(), Arc::new(loaded));
        }
        let mut rules = Vec::with_capacity(config.rules.len());
        for (index, rule) in config.rules.iter().enumerate() {
            let load = |authorities: &[settings::AuthorityConfig]| {
                authorities
                    .iter()
                    .map(|authority| Authority::load(authority, &roots).map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|source| SetupError::Authority {
                        rule: index,
                        source,
                    })
            };
            let any_of = load(&rule.any_of)?;
            let all_of = load(&rule.all_of)?;
            let mut attestations = Vec::with_capacity(rule.attestations.len());
            for attestation in &rule.attestations {
                let any_of = if attestation.any_of.is_empty() {
                    any_of.iter().chain(&all_of).cloned().collect()
                } else {
                    load(&attestation.any_of)?
                };
                attestations.push(AttestationRule {
                    predicate_type: attestation.predicate_type.clone(),
                    any_of,
                });
            }
            rules.push(Rule {
                name: rule
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("rules[{index}]")),
                patterns: rule.patterns.clone(),
                any_of,
                all_of,
                attestations,
            });
        }
        Ok(Self {
            rules,
            default: config.default,
            registry: Registry::new(config).map_err(SetupError::Registry)?,
            cache: Cache::new(config.cache.entries, config.cache.ttl),
        })
    }

    /// The rule that governs images named `name` (a repository, with or
    /// without a tag, in any spelling), if any; `None` also for a name that
    /// does not canonicalize, which [`Verifier::governing`] tells apart.
    pub fn rule_for(&self, name: &str) -> Option<&str> {
        self.governing(name).ok().flatten()
    }

    /// The rule that governs images named `name`, if any, or why `name` is
    /// not a name every spelling of which can be told.
    pub fn governing(&self, name: &str) -> Result<Option<&str>, ReferenceError> {
        let reference = Reference::parse(name)?;
        Ok(self
            .rule(reference.name())
            .map(|(_, rule)| rule.name.as_str()))
    }

    fn rule(&self, name: &Name) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.patterns.iter().any(|pattern| pattern.matches(name)))
    }

    /// Verifies one image reference.
    pub async fn verify(&self, written: &str) -> ImageVerdict {
        let mut verdict = ImageVerdict {
            reference: written.to_owned(),
            canonical: None,
            digest: None,
            allowed: false,
            verified: false,
            rule: None,
            authority: None,
            signer: None,
            reason: None,
            attestations: Vec::new(),
            found: Vec::new(),
            cached: false,
        };
        // Whatever the default, a name whose spellings cannot all be told
        // is refused: it might be one a rule governs.
        let canonical = match Reference::parse(written) {
            Ok(reference) => reference,
            Err(error) => {
                verdict.reason = Some(format!("not an image reference: {error}"));
                return verdict;
            }
        };
        verdict.canonical = Some(canonical.to_string());
        let name = canonical.name();
        // The registry is reached by the canonical name only.
        let reference = canonical.to_oci();
        let Some((index, rule)) = self.rule(name) else {
            verdict.allowed = self.default == Unmatched::Allow;
            if !verdict.allowed {
                verdict.reason = Some(format!(
                    "no image rule matches {name}, and unmatched images are denied"
                ));
            }
            return verdict;
        };
        verdict.rule = Some(rule.name.clone());
        let digest = match self.registry.digest(&reference).await {
            Ok(digest) => digest,
            Err(RegistryError::NotFound) => {
                verdict.reason = Some(format!("{name}: image not found in the registry"));
                return verdict;
            }
            Err(error) => {
                verdict.reason = Some(error.to_string());
                return verdict;
            }
        };
        verdict.digest = Some(digest.clone());
        let (checked, cached) = self
            .cache
            // Signatures live beside the image in its repository, so the
            // repository is part of the key with the digest.
            .get_or_check((format!("{name}@{digest}"), index), || async {
                let checked = self.check(&reference, &digest, rule).await;
                let keep = checked.verified;
                (Arc::new(checked), keep)
            })
            .await;
        verdict.verified = checked.verified;
        verdict.allowed = checked.verified;
        verdict.authority = checked.authority.clone();
        verdict.signer = checked.signer.clone();
        verdict.reason = checked.reason.as_ref().map(ToString::to_string);
        verdict.attestations = checked.attestations.clone();
        verdict.found = checked.found.clone();
        verdict.cached = cached;
        verdict
    }

    /// Reads the signatures and attestations of `digest` and asks the rule's
    /// authorities about them.
    async fn check(&self, reference: &oci_client::Reference, digest: &str, rule: &Rule) -> Checked {
        let mut checked = Checked {
            verified: false,
            authority: None,
            signer: None,
            reason: None,
            attestations: Vec::new(),
            found: Vec::new(),
        };
        let tag = |suffix: &str| format!("{}.{suffix}", digest.replacen(':', "-", 1));
        // Cosign's `.sig` tag, then sigstore bundles among the referrers
        // (cosign v3).
        let found = async {
            let layers = match self.registry.layers(reference, &tag("sig")).await {
                Err(RegistryError::NotFound) => Vec::new(),
                layers => layers?,
            };
            let bundles = self
                .registry
                .referrers(reference, digest, cosign::BUNDLE)
                .await?;
            Ok::<_, RegistryError>((layers, bundles))
        };
        let (layers, bundles) = match found.await {
            Ok(found) => found,
            Err(error) => {
                checked.reason = Some(Failure::Registry(error));
                return checked;
            }
        };
        let mut signatures = Vec::new();
        let mut skipped = Vec::new();
        let read = layers
            .iter()
            .map(|layer| cosign::signature(layer, digest))
            .chain(bundles.iter().map(|layer| cosign::bundle(layer, digest)));
        for signature in read {
            match signature {
                Ok(signature) => signatures.push(signature),
                Err(why) => skipped.push(why),
            }
        }
        checked
            .found
            .extend(skipped.iter().map(|why| format!("skipped: {why}")));
        if signatures.is_empty() {
            checked.reason = Some(Failure::Unsigned(skipped));
            return checked;
        }
        checked
            .found
            .push(format!("{} signature(s) of {digest}", signatures.len()));
        let mut why = Vec::new();
        let accepted = |authority: &Arc<Authority>, why: &mut Vec<String>| {
            for (n, signature) in signatures.iter().enumerate() {
                match authority.accepts(&signature.envelope) {
                    Ok(signer) => return Some(signer),
                    Err(reason) => why.push(format!(
                        "{}: signature {}: {reason}",
                        authority.label(),
                        n + 1
                    )),
                }
            }
            None
        };
        let mut vouched = None;
        for authority in &rule.any_of {
            if let Some(signer) = accepted(authority, &mut why) {
                vouched = Some((authority.label().to_owned(), signer));
                break;
            }
        }
        let any_held = rule.any_of.is_empty() || vouched.is_some();
        let mut all_held = true;
        for authority in &rule.all_of {
            match accepted(authority, &mut why) {
                Some(signer) if vouched.is_none() => {
                    vouched = Some((authority.label().to_owned(), signer));
                }
                Some(_) => {}
                None => all_held = false,
            }
        }
        if !(any_held && all_held) {
            checked.reason = Some(Failure::NotAccepted {
                rule: rule.name.clone(),
                why,
            });
            return checked;
        }
        if !rule.attestations.is_empty() {
            match self
                .attestations(reference, &tag("att"), digest, rule)
                .await
            {
                Ok(attestations) => checked.attestations = attestations,
                Err(failure) => {
                    checked.reason = Some(failure);
                    return checked;
                }
            }
        }
        let (authority, signer) = vouched.unzip();
        checked.verified = true;
        checked.authority = authority;
        checked.signer = signer;
        checked
    }

    /// The attestations the rule requires, each verified.
    async fn attestations(
        &self,
        reference: &oci_client::Reference,
        tag: &str,
        digest: &str,
        rule: &Rule,
    ) -> Result<Vec<Attestation>, Failure> {
        let layers = match self.registry.layers(reference, tag).await {
            Ok(layers) => layers,
            Err(RegistryError::NotFound) => Vec::new(),
            Err(error) => return Err(Failure::Registry(error)),
        };
        let mut skipped = Vec::new();
        let statements: Vec<cosign::Statement> = layers
            .iter()
            .filter_map(|layer| {
                cosign::statement(layer, digest)
                    .map_err(|why| skipped.push(format!("skipped: {why}")))
                    .ok()
            })
            .collect();
        let mut verified = Vec::new();
        for required in &rule.attestations {
            // What was not a statement at all may be why none is found.
            let mut why = skipped.clone();
            let found = statements
                .iter()
                .filter(|statement| statement.predicate_type == required.predicate_type)
                .find_map(|statement| {
                    required.any_of.iter().find_map(|authority| {
                        match authority.accepts(&statement.envelope) {
                            Ok(signer) => Some(Attestation {
                                predicate_type: statement.predicate_type.clone(),
                                predicate: statement.predicate.clone(),
                                signer,
                            }),
                            Err(reason) => {
                                why.push(format!("{}: {reason}", authority.label()));
                                None
                            }
                        }
                    })
                });
            match found {
                Some(attestation) => verified.push(attestation),
                None => {
                    return Err(Failure::MissingAttestation {
                        rule: rule.name.clone(),
                        predicate_type: required.predicate_type.clone(),
                        why,
                    });
                }
            }
        }
        Ok(verified)
    }
}
