//! The `images` section of the configuration: which authorities must have
//! signed which images, the trust roots keyless signatures chain to, and how
//! to reach registries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::pattern::Pattern;
use super::reference::{ReferenceError, canonical_registry};

/// How long one registry call may take when the configuration does not say.
pub const DEFAULT_REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Image verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// What happens to images no rule matches.
    #[serde(default)]
    pub default: Unmatched,
    /// The rules; the first whose `match` fits an image applies.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Trust roots of keyless signatures and transparency logs, by name.
    #[serde(default)]
    pub trust_roots: BTreeMap<String, TrustRootConfig>,
    /// Registries by host (`registry.example.com`, `127.0.0.1:5000`).
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryConfig>,
    /// A docker `config.json` to take registry credentials from (default:
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, when it
    /// exists).
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    /// The most one registry call may take.
    #[serde(
        default = "default_registry_timeout",
        deserialize_with = "crate::config::duration"
    )]
    pub timeout: Duration,
    /// The verdict cache.
    #[serde(default)]
    pub cache: CacheConfig,
}

/// What happens to an image no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Refused: only what a rule vouches for runs.
    #[default]
    Deny,
    /// Admitted unverified (policies still see it, unverified).
    Allow,
}

/// One rule: images it applies to, and what they need.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The rule's name in verdicts and messages (default: `rules[N]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Image patterns (registry and repository globs).
    #[serde(rename = "match", deserialize_with = "patterns")]
    pub patterns: Vec<Pattern>,
    /// Authorities of which at least one must have signed.
    #[serde(default)]
    pub any_of: Vec<AuthorityConfig>,
    /// Authorities of which every one must have signed.
    #[serde(default)]
    pub all_of: Vec<AuthorityConfig>,
    /// Attestations the image must carry.
    #[serde(default)]
    pub attestations: Vec<AttestationConfig>,
}

/// Who may vouch for an image: `{key: FILE, tlog: ROOT}` or `{keyless:
/// {…}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawAuthority")]
pub enum AuthorityConfig {
    /// A cosign public key.
    Key(KeyAuthority),
    /// A certificate identity from a trust root (Fulcio-style keyless, or
    /// any CA).
    Keyless(KeylessAuthority),
}

/// A cosign public key.
#[derive(Debug, Clone)]
pub struct KeyAuthority {
    /// The PEM public key file (ECDSA P-256/P-384, RSA, Ed25519).
    pub key: PathBuf,
    /// A trust root whose transparency log must hold the signature: its
    /// bundle's signed entry timestamp must verify. Unset: no log needed.
    pub tlog: Option<String>,
}

/// An authority as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    tlog: Option<String>,
    #[serde(default)]
    keyless: Option<KeylessAuthority>,
}

impl TryFrom<RawAuthority> for AuthorityConfig {
    type Error = &'static str;

    fn try_from(raw: RawAuthority) -> Result<Self, Self::Error> {
        match raw {
            RawAuthority {
                key: Some(key),
                tlog,
                keyless: None,
            } => Ok(AuthorityConfig::Key(KeyAuthority { key, tlog })),
            RawAuthority {
                key: None,
                tlog: None,
                keyless: Some(keyless),
            } => Ok(AuthorityConfig::Keyless(keyless)),
            _ => Err(
                "an authority is `{key: FILE}` (with an optional `tlog: TRUST_ROOT`) or `{keyless: {trust_root: …, subject: …}}`",
            ),
        }
    }
}

/// A certificate identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylessAuthority {
    /// The trust root the certificate must chain to.
    pub trust_root: String,
    /// The OIDC issuer the certificate must name (Fulcio's extension).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The certificate's subject (an e-mail or URI alternative name), exact.
    #[serde(default)]
    pub subject: Option<String>,
    /// The certificate's subject as a regular expression, matched whole.
    #[serde(default)]
    pub subject_regex: Option<String>,
}

/// An attestation the image must carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationConfig {
    /// The in-toto predicate type, for example
    /// `https://slsa.dev/provenance/v1`.
    pub predicate_type: String,
    /// Who may have signed it (default: any authority of the rule).
    #[serde(default)]
    pub any_of: Vec<AuthorityConfig>,
}

/// Certificate authorities and transparency-log keys, from files.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRootConfig {
    /// A sigstore `trusted_root.json` (its certificate authorities and
    /// transparency logs are added to the files below).
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// PEM files of root certificates.
    #[serde(default)]
    pub ca: Vec<PathBuf>,
    /// PEM files of intermediate certificates (a signature's own chain is
    /// used too).
    #[serde(default)]
    pub intermediates: Vec<PathBuf>,
    /// PEM public keys of transparency logs (Rekor). When there are any, a
    /// certificate signature needs a log entry signed by one, and its
    /// certificate must have been valid at the entry's time; when there are
    /// none, it must be valid now.
    #[serde(default)]
    pub rekor: Vec<PathBuf>,
}

/// How to reach one registry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    /// User name for basic or token authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, given inline.
    #[serde(default)]
    pub password: Option<String>,
    /// Password, read from a file (trailing newline dropped).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A PEM file of CA certificates for the registry's TLS.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// The verdict cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Most verdicts kept.
    #[serde(default = "default_cache_entries")]
    pub entries: usize,
    /// How long a successful verdict is kept.
    #[serde(
        default = "default_cache_ttl",
        deserialize_with = "crate::config::duration"
    )]
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            entries: default_cache_entries(),
            ttl: default_cache_ttl(),
        }
    }
}

fn default_registry_timeout() -> Duration {
    DEFAULT_REGISTRY_TIMEOUT
}

fn default_cache_entries() -> usize {
    1024
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}

fn patterns<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Pattern>, D::Error> {
    use serde::de::Error as _;
    let texts = Vec::<String>::deserialize(deserializer)?;
    if texts.is_empty() {
        return Err(D::Error::custom("a rule needs at least one pattern"));
    }
    texts
        .iter()
        .map(|text| {
            Pattern::new(text).map_err(|error| {
                D::Error::custom(format!(
                    "`{text}` is not an image pattern (a registry and repository glob): {error}"
                ))
            })
        })
        .collect()
}

/// Why the `registries` section cannot be read by canonical host.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    /// A key that is not a registry name.
    #[error("images.registries.{host}: not a usable registry name")]
    Host {
        /// The key as written.
        host: String,
        /// Why.
        #[source]
        source: ReferenceError,
    },
    /// Two keys that name one registry, whose settings would fight.
    #[error("images.registries.{host}: names the same registry as `{other}` ({canonical})")]
    Duplicate {
        /// The later key.
        host: String,
        /// The earlier key.
        other: String,
        /// The registry both name.
        canonical: String,
    },
}

impl ImagesConfig {
    /// The registries by canonical host (see [`mod@super::reference`]), so the
    /// settings written for `Registry.Example.com:443` apply to every
    /// spelling of that registry.
    pub fn canonical_registries(
        &self,
    ) -> Result<BTreeMap<String, &RegistryConfig>, RegistriesError> {
        let mut registries: BTreeMap<String, (&str, &RegistryConfig)> = BTreeMap::new();
        for (host, registry) in &self.registries {
            let canonical = canonical_registry(host).map_err(|source| RegistriesError::Host {
                host: host.clone(),
                source,
            })?;
            if let Some((other, _)) = registries.get(&canonical) {
                return Err(RegistriesError::Duplicate {
                    host: host.clone(),
                    other: (*other).to_owned(),
                    canonical,
                });
            }
            registries.insert(canonical, (host, registry));
        }
        Ok(registries
            .into_iter()
            .map(|(canonical, (_, registry))| (canonical, registry))
            .collect())
    }

    /// Resolves relative file names against `base`, the configuration
    /// file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let authorities = self.rules.iter_mut().flat_map(|rule| {
            let attested = rule
                .attestations
                .iter_mut()
                .flat_map(|attestation| attestation.any_of.iter_mut());
            rule.any_of
                .iter_mut()
                .chain(rule.all_of.iter_mut())
                .chain(attested)
        });
        for authority in authorities {
            if let AuthorityConfig::Key(key) = authority {
                key.key = base.join(&key.key);
            }
        }
        for root in self.trust_roots.values_mut() {
            let files = root
                .trusted_root
                .iter_mut()
                .chain(&mut root.ca)
                .chain(&mut root.intermediates)
                .chain(&mut root.rekor);
            for file in files {
                *file = base.join(&*file);
            }
        }
        for registry in self.registries.values_mut() {
            for file in registry.password_file.iter_mut().chain(&mut registry.ca) {
                *file = base.join(&*file);
            }
        }
        if let Some(file) = &mut self.docker_config {
            *file = base.join(&*file);
        }
    }

    /// Checks what the types alone cannot; errors name the key path.
    pub fn check(&self) -> Result<(), (String, String)> {
        for (index, rule) in self.rules.iter().enumerate() {
            let key = |field: &str| format!("images.rules[{index}].{field}");
            if rule.any_of.is_empty() && rule.all_of.is_empty() {
                return Err((
                    key("any_of"),
                    "a rule needs at least one authority in `any_of` or `all_of`".into(),
                ));
            }
            let attested = rule
                .attestations
                .iter()
                .enumerate()
                .flat_map(|(n, attestation)| {
                    attestation
                        .any_of
                        .iter()
                        .enumerate()
                        .map(move |(m, authority)| {
                            (format!("attestations[{n}].any_of[{m}]"), authority)
                        })
                });
            let authorities = rule
                .any_of
                .iter()
                .enumerate()
                .map(|(n, authority)| (format!("any_of[{n}]"), authority))
                .chain(
                    rule.all_of
                        .iter()
                        .enumerate()
                        .map(|(n, authority)| (format!("all_of[{n}]"), authority)),
                )
                .chain(attested);
            for (field, authority) in authorities {
                self.check_authority(authority)
                    .map_err(|(inner, message)| (key(&format!("{field}{inner}")), message))?;
            }
        }
        for (name, root) in &self.trust_roots {
            if root.trusted_root.is_none() && root.ca.is_empty() && root.rekor.is_empty() {
                return Err((
                    format!("images.trust_roots.{name}"),
                    "a trust root needs `trusted_root`, `ca` or `rekor` files".into(),
                ));
            }
        }
        self.canonical_registries().map_err(|error| {
            let key = match &error {
                RegistriesError::Host { host, .. } | RegistriesError::Duplicate { host, .. } => {
                    format!("images.registries.{host}")
                }
            };
            let message = match &error {
                RegistriesError::Host { source, .. } => source.to_string(),
                RegistriesError::Duplicate { .. } => error.to_string(),
            };
            (key, message)
        })?;
        for (host, registry) in &self.registries {
            if registry.password.is_some() && registry.password_file.is_some() {
                return Err((
                    format!("images.registries.{host}.password_file"),
                    "give `password` or `password_file`, not both".into(),
                ));
            }
            if registry.username.is_none()
                && (registry.password.is_some() || registry.password_file.is_some())
            {
                return Err((
                    format!("images.registries.{host}.username"),
                    "a password needs a `username`".into(),
                ));
            }
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            return Err((
                "images.timeout".into(),
                "must be more than 0 and at most 60s".into(),
            ));
        }
        Ok(())
    }

    fn check_authority(&self, authority: &AuthorityConfig) -> Result<(), (String, String)> {
        let known = |name: &str, key: &str| {
            if self.trust_roots.contains_key(name) {
                Ok(())
            } else {
                Err((
                    key.to_owned(),
                    format!("no trust root named `{name}` in `images.trust_roots`"),
                ))
            }
        };
        match authority {
            AuthorityConfig::Key(key) => match &key.tlog {
                Some(name) => known(name, ".key.tlog"),
                None => Ok(()),
            },
            AuthorityConfig::Keyless(keyless) => {
                known(&keyless.trust_root, ".keyless.trust_root")?;
                match (&keyless.subject, &keyless.subject_regex) {
                    (None, None) => Err((
                        ".keyless.subject".into(),
                        "a keyless authority needs `subject` or `subject_regex`".into(),
                    )),
                    (Some(_), Some(_)) => Err((
                        ".keyless.subject_regex".into(),
                        "give `subject` or `subject_regex`, not both".into(),
                    )),
                    (None, Some(regex)) => regex::Regex::new(regex).map(|_| ()).map_err(|error| {
                        (
                            ".keyless.subject_regex".into(),
                            format!("not a regular expression: {error}"),
                        )
                    }),
                    (Some(_), None) => Ok(()),
                }
            }
        }
    }
}
