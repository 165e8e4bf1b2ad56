//! Image references read once, as the engine reads them, and written in the
//! one form every spelling of the same registry and repository shares.
//!
//! Docker, containerd and the kubelet read an image name with the
//! distribution reference grammar (`reference.ParseNormalizedNamed` in
//! github.com/distribution/reference) and then dial its registry. Several
//! spellings reach one registry: DNS ignores the case of a host name, Go's
//! dialer reads a port in decimal (`:05000` is port 5000), 443 is the https
//! port, and Docker Hub answers to several names. Rules, pins and the
//! proxy's tag guard must see those spellings as one name, or a spelling
//! dodges its rule. So the canonical form here is:
//!
//! - a host name in lowercase; an IPv6 literal as RFC 5952 writes it, and an
//!   IPv4-mapped one as the IPv4 address Go dials it as;
//! - a port as its number, without leading zeros, and without `:443`;
//! - `docker.io` for Docker Hub's names (`index.docker.io`,
//!   `registry-1.docker.io`, `registry.hub.docker.com`), where a one-segment
//!   repository is under `library/`.
//!
//! What the engine refuses is refused (uppercase in a repository path, as the
//! grammar has it), and so is what cannot be told with certainty: a host
//! that reads as a number in a form other than a dotted quad (`127.1`,
//! `0x7f.0.0.1`, `127.000.0.1` mean different addresses to different
//! resolvers), a port that reaches nothing, an image ID where a name should
//! be. Names are not resolved: `localhost` and `127.0.0.1` stay two
//! registries, as they are to the engine's own configuration.
//!
//! oci-client's parser follows an older grammar (no IPv6 literals, and
//! `Team/app` read as a Docker Hub repository where the engine reads a
//! registry `Team`), so it is given only references built from the parts
//! read here.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Docker Hub's canonical registry name.
const DOCKER_HUB: &str = "docker.io";

/// Other names of Docker Hub's registry: moby folds the first (its legacy
/// index); the others are the hosts Hub's registry API answers on.
const DOCKER_HUB_ALIASES: &[&str] = &[
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// The longest repository path, as the grammar allows.
const MAX_REPOSITORY: usize = 255;

/// Why a reference or registry name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing was given.
    #[error("the reference is empty")]
    Empty,
    /// The text is not a reference by the distribution grammar.
    #[error("`{0}` is not a reference by the distribution grammar")]
    Format(String),
    /// A repository path with uppercase letters, which the grammar forbids.
    #[error("the repository `{0}` must be lowercase")]
    Uppercase(String),
    /// A repository path over the grammar's length limit.
    #[error("the repository `{0}` is longer than {MAX_REPOSITORY} characters")]
    TooLong(String),
    /// An image ID, which the engine looks up among its local images.
    #[error("`{0}` is an image ID, not a name: a local image cannot be verified")]
    ImageId(String),
    /// A registry that is not a host name or IP literal with a port.
    #[error("`{0}` is not a registry host")]
    Host(String),
    /// A host that reads as an IPv4 address in a form resolvers disagree on.
    #[error(
        "the registry host `{0}` reads as a number that resolvers take for different addresses; write the IPv4 address as a plain dotted quad"
    )]
    NumericHost(String),
    /// A bracketed host that is not an IPv6 address.
    #[error("the registry host `{0}` is not an IPv6 address")]
    Ipv6(String),
    /// A port no connection can be made to.
    #[error("the registry port `{0}` is not one a connection can be made to (1 to 65535)")]
    Port(String),
    /// A one-label host that is a registry only by its capitals: in
    /// lowercase it would name a Docker Hub repository.
    #[error(
        "`{0}` names a registry only by its capitals (in lowercase it is a Docker Hub namespace); add its domain or a port"
    )]
    CapitalHost(String),
    /// A tag the grammar does not allow.
    #[error("`{0}` is not a tag (letters, digits, `_`, `.`, `-`, at most 128)")]
    Tag(String),
    /// A digest the engine would not accept.
    #[error("`{0}` is not a digest (sha256, sha384 or sha512, in lowercase hex)")]
    Digest(String),
}

/// A registry and repository in canonical form (see the module notes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    registry: String,
    repository: String,
}

impl Name {
    /// Reads a repository name without tag or digest, as the tag endpoints
    /// take it; a tag or digest is refused.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let reference = Reference::parse(text)?;
        if reference.tag.is_some() || reference.digest.is_some() {
            return Err(ReferenceError::Format(text.to_owned()));
        }
        Ok(reference.name)
    }

    /// The registry: `docker.io`, `registry.example.com`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path: `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Every way of writing the registry that a pattern may match: the
    /// canonical one, with the https port spelt out when it is implied,
    /// and Docker Hub's other names.
    pub fn registry_spellings(&self) -> Vec<String> {
        let hosts: Vec<&str> = if self.registry == DOCKER_HUB {
            std::iter::once(DOCKER_HUB)
                .chain(DOCKER_HUB_ALIASES.iter().copied())
                .collect()
        } else {
            vec![self.registry.as_str()]
        };
        let mut spellings = Vec::with_capacity(hosts.len() * 2);
        for host in hosts {
            spellings.push(host.to_owned());
            if split_port(host).1.is_none() {
                spellings.push(format!("{host}:443"));
            }
        }
        spellings
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// An image reference in canonical form: a [`Name`], and the tag and
/// digest as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    name: Name,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Reads `text` as the engine does (`ParseNormalizedNamed`, and the
    /// image-ID check of `ParseAnyReference` before it), canonicalized.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // The engine's ParseAnyReference takes these for image IDs before
        // it tries a name; containerd's local lookup does the same.
        if is_identifier(text) || parse_digest(text).is_some() {
            return Err(ReferenceError::ImageId(text.to_owned()));
        }
        let (domain, remainder) = split_docker_domain(text);
        let format = || ReferenceError::Format(text.to_owned());
        let (named, digest) = match remainder.split_once('@') {
            Some((named, digest)) => {
                let digest = parse_digest(digest)
                    .ok_or_else(|| ReferenceError::Digest(digest.to_owned()))?;
                (named, Some(digest))
            }
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match named.split_once(':') {
            Some((path, tag)) if is_tag(tag) => (path, Some(tag.to_owned())),
            Some((_, tag)) => return Err(ReferenceError::Tag(tag.to_owned())),
            None => (named, None),
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path.to_owned()));
        }
        if !is_remote_name(path) {
            return Err(format());
        }
        if path.len() > MAX_REPOSITORY {
            return Err(ReferenceError::TooLong(path.to_owned()));
        }
        let registry = match domain {
            Domain::Hub => DOCKER_HUB.to_owned(),
            Domain::Written(domain) => canonical_registry(domain)?,
        };
        // Hub's official images live under `library/`, however Hub was
        // named (moby adds it for `docker.io` and `index.docker.io`).
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if repository.len() > MAX_REPOSITORY {
            return Err(ReferenceError::TooLong(repository));
        }
        Ok(Self {
            name: Name {
                registry,
                repository,
            },
            tag,
            digest,
        })
    }

    /// The registry and repository.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The tag, as written.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, as written.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The reference pinned to `digest`: the canonical name, the tag kept
    /// for people, and the digest.
    pub fn pinned(&self, digest: &str) -> String {
        match &self.tag {
            Some(tag) => format!("{}:{tag}@{digest}", self.name),
            None => format!("{}@{digest}", self.name),
        }
    }

    /// The same reference for oci-client (`latest` when neither tag nor
    /// digest is given, as the engine pulls).
    pub fn to_oci(&self) -> oci_client::Reference {
        let registry = self.name.registry.clone();
        let repository = self.name.repository.clone();
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                tag.clone(),
                digest.clone(),
            ),
            (None, Some(digest)) => {
                oci_client::Reference::with_digest(registry, repository, digest.clone())
            }
            (tag, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                tag.clone().unwrap_or_else(|| "latest".to_owned()),
            ),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Where the registry of a reference comes from.
enum Domain<'a> {
    /// None written: Docker Hub.
    Hub,
    /// The first segment, read as a registry.
    Written(&'a str),
}

/// `splitDockerDomain`: the first segment is a registry when it has a `.`
/// or a `:`, is `localhost`, or has capitals (repository paths cannot);
/// otherwise the whole name is a Docker Hub repository.
fn split_docker_domain(text: &str) -> (Domain<'_>, String) {
    match text.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Domain::Written(first), rest.to_owned())
        }
        _ => (Domain::Hub, text.to_owned()),
    }
}

/// The canonical form of a registry `host[:port]` (see the module notes).
pub fn canonical_registry(domain: &str) -> Result<String, ReferenceError> {
    let refuse = || ReferenceError::Host(domain.to_owned());
    let (host, port) = split_port(domain);
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            // Go's dialer reads the port in decimal, leading zeros and all.
            let trimmed = digits.trim_start_matches('0');
            match trimmed.parse::<u16>() {
                Ok(0) | Err(_) => return Err(ReferenceError::Port(digits.to_owned())),
                Ok(port) => Some(port),
            }
        }
        Some(_) => return Err(refuse()),
    };
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(refuse)?;
        // The grammar's IPv6 literal: hex digits and colons only (no zone,
        // no embedded dotted quad).
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(refuse());
        }
        let address: Ipv6Addr = inner
            .parse()
            .map_err(|_| ReferenceError::Ipv6(host.to_owned()))?;
        match address.to_ipv4_mapped() {
            // Go dials an IPv4-mapped address over IPv4.
            Some(v4) => v4.to_string(),
            None => format!("[{address}]"),
        }
    } else {
        if !is_domain_name(host) {
            return Err(refuse());
        }
        let lower = host.to_ascii_lowercase();
        if ends_in_number(&lower) {
            match lower.parse::<Ipv4Addr>() {
                // Rust reads only the plain dotted quad, and writes it back
                // the same; anything else is a spelling resolvers differ on.
                Ok(address) if address.to_string() == lower => lower,
                _ => return Err(ReferenceError::NumericHost(host.to_owned())),
            }
        } else if DOCKER_HUB_ALIASES.contains(&lower.as_str()) {
            DOCKER_HUB.to_owned()
        } else {
            lower
        }
    };
    // A one-label host other than localhost is a registry only when a port
    // or capitals say so; written in lowercase and without a port it would
    // read back as a Docker Hub namespace.
    let bare = !host.contains(['.', ':', '[']) && host != "localhost";
    if bare && port.is_none() {
        return Err(ReferenceError::CapitalHost(domain.to_owned()));
    }
    Ok(match port {
        Some(443) if !bare => host,
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// `host` and the text after its port colon, if any (an IPv6 literal's
/// colons are inside its brackets).
fn split_port(domain: &str) -> (&str, Option<&str>) {
    let after_brackets = domain.rfind(']').map_or(0, |at| at + 1);
    match domain[after_brackets..].rfind(':') {
        Some(at) => {
            let at = after_brackets + at;
            (&domain[..at], Some(&domain[at + 1..]))
        }
        None => (domain, None),
    }
}

/// The grammar's `domainName`: labels of letters, digits and inner `-`,
/// joined by single dots (so no leading, trailing or doubled dot).
fn is_domain_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// Whether the last label of a host reads as a number, which URL parsers
/// and resolvers (`inet_aton`) take for an IPv4 address in some form.
fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// The grammar's `remoteName`: `/`-separated components of lowercase
/// letters and digits, joined within by one `.`, one or two `_`, or any
/// number of `-`.
fn is_remote_name(path: &str) -> bool {
    path.split('/').all(|component| {
        let bytes = component.as_bytes();
        if !bytes.first().is_some_and(is_lower_alphanumeric)
            || !bytes.last().is_some_and(is_lower_alphanumeric)
        {
            return false;
        }
        let mut separator = String::new();
        for &byte in bytes {
            if is_lower_alphanumeric(&byte) {
                let allowed = separator.is_empty()
                    || separator == "."
                    || separator == "_"
                    || separator == "__"
                    || separator.bytes().all(|b| b == b'-');
                if !allowed {
                    return false;
                }
                separator.clear();
            } else if matches!(byte, b'.' | b'_' | b'-') {
                separator.push(char::from(byte));
            } else {
                return false;
            }
        }
        true
    })
}

fn is_lower_alphanumeric(byte: &u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

/// The grammar's tag: a word character, then up to 127 of them, `.` or `-`.
fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(word)
        && bytes.len() <= 128
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-')
}

/// A digest the engine accepts (go-digest with sha256 and sha512
/// registered: the algorithm's length in lowercase hex).
fn parse_digest(text: &str) -> Option<String> {
    let (algorithm, hex) = text.split_once(':')?;
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return None,
    };
    (hex.len() == length
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| text.to_owned())
}

/// 64 lowercase hex digits: an image ID to `ParseNormalizedNamed`.
fn is_identifier(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a";

    fn canonical(text: &str) -> String {
        let reference =
            Reference::parse(text).unwrap_or_else(|error| panic!("{text} should parse: {error}"));
        let written = reference.to_string();
        // The canonical form reads back as itself: a pin never changes
        // what it names.
        assert_eq!(
            Reference::parse(&written).as_ref(),
            Ok(&reference),
            "{written} reads back"
        );
        written
    }

    fn refused(text: &str) -> ReferenceError {
        match Reference::parse(text) {
            Ok(reference) => panic!("{text} should be refused, read as {reference}"),
            Err(error) => error,
        }
    }

    #[test]
    fn docker_hub_names_are_qualified_as_the_engine_qualifies_them() {
        for spelling in [
            "nginx",
            "docker.io/nginx",
            "docker.io/library/nginx",
            "index.docker.io/nginx",
            "index.docker.io/library/nginx",
            "registry-1.docker.io/library/nginx",
            "registry.hub.docker.com/nginx",
            "DOCKER.IO/library/nginx",
            "Index.Docker.Io/nginx",
            "docker.io:443/library/nginx",
            "docker.io:0443/nginx",
        ] {
            assert_eq!(canonical(spelling), "docker.io/library/nginx", "{spelling}");
        }
        for spelling in ["team/app", "docker.io/team/app", "index.docker.io/team/app"] {
            assert_eq!(canonical(spelling), "docker.io/team/app", "{spelling}");
        }
        assert_eq!(canonical("nginx:1.27"), "docker.io/library/nginx:1.27");
    }

    #[test]
    fn host_names_fold_to_lowercase_and_ports_to_their_number() {
        for spelling in [
            "localhost:5312/team/app",
            "LOCALHOST:5312/team/app",
            "LocalHost:5312/team/app",
            "localhost:05312/team/app",
            "localhost:0005312/team/app",
        ] {
            assert_eq!(canonical(spelling), "localhost:5312/team/app", "{spelling}");
        }
        for spelling in ["localhost/app", "LOCALHOST/app", "localhost:443/app"] {
            assert_eq!(canonical(spelling), "localhost/app", "{spelling}");
        }
        for spelling in [
            "registry.example.com/team/app",
            "Registry.Example.COM/team/app",
            "registry.example.com:443/team/app",
            "REGISTRY.EXAMPLE.COM:00443/team/app",
        ] {
            assert_eq!(
                canonical(spelling),
                "registry.example.com/team/app",
                "{spelling}"
            );
        }
        assert_eq!(
            canonical("registry.example.com:80/team/app"),
            "registry.example.com:80/team/app",
            "80 is not https's port"
        );
        assert_eq!(canonical("127.0.0.1:05000/app:1"), "127.0.0.1:5000/app:1");
        assert_eq!(canonical("xn--N3H.com/app"), "xn--n3h.com/app");
    }

    #[test]
    fn ipv6_literals_are_written_one_way_and_ipv4_mapped_ones_as_ipv4() {
        for spelling in [
            "[::1]:5000/app",
            "[0:0:0:0:0:0:0:1]:5000/app",
            "[::0001]:5000/app",
            "[0000::1]:05000/app",
        ] {
            assert_eq!(canonical(spelling), "[::1]:5000/app", "{spelling}");
        }
        assert_eq!(canonical("[2001:DB8::A]/app"), "[2001:db8::a]/app");
        assert_eq!(canonical("[2001:db8::a]:443/app"), "[2001:db8::a]/app");
        for spelling in ["[::ffff:7f00:1]:5000/app", "[::FFFF:7F00:0001]:5000/app"] {
            assert_eq!(canonical(spelling), "127.0.0.1:5000/app", "{spelling}");
        }
        assert!(matches!(refused("[::1%eth0]/app"), ReferenceError::Host(_)));
        assert!(matches!(
            refused("[::ffff:127.0.0.1]/app"),
            ReferenceError::Host(_)
        ));
        assert!(matches!(refused("[1::2::3]/app"), ReferenceError::Ipv6(_)));
        assert!(matches!(refused("[::1/app"), ReferenceError::Host(_)));
    }

    #[test]
    fn numeric_hosts_other_than_a_dotted_quad_are_refused() {
        for spelling in [
            "127.1:5000/app",
            "127.0.1/app",
            "2130706433:5000/app",
            "0x7f.0.0.1/app",
            "127.0.0.0x1/app",
            "127.000.000.001:5000/app",
            "0177.0.0.1/app",
            "256.0.0.1/app",
            "example.123/app",
        ] {
            assert!(
                matches!(refused(spelling), ReferenceError::NumericHost(_)),
                "{spelling}"
            );
        }
        assert_eq!(canonical("10.0.0.5/app"), "10.0.0.5/app");
        assert_eq!(canonical("123.example.com/app"), "123.example.com/app");
    }

    #[test]
    fn ports_that_reach_nothing_are_refused() {
        for spelling in [
            "localhost:0/app",
            "localhost:000/app",
            "localhost:65536/app",
            "localhost:99999999999999999999/app",
        ] {
            assert!(
                matches!(refused(spelling), ReferenceError::Port(_)),
                "{spelling}"
            );
        }
        assert!(matches!(refused("localhost:/app"), ReferenceError::Host(_)));
        assert!(matches!(
            refused("localhost:+80/app"),
            ReferenceError::Host(_)
        ));
        assert_eq!(canonical("localhost:65535/app"), "localhost:65535/app");
    }

    #[test]
    fn a_registry_named_only_by_its_capitals_is_refused_unless_its_port_says_so() {
        // `Team/app` is a registry `Team` to the engine; `team/app` is Hub.
        assert!(matches!(
            refused("Team/app"),
            ReferenceError::CapitalHost(_)
        ));
        assert!(matches!(
            refused("MyReg/app"),
            ReferenceError::CapitalHost(_)
        ));
        assert_eq!(canonical("MyReg:5000/app"), "myreg:5000/app");
        assert_eq!(canonical("MYREG:443/app"), "myreg:443/app");
        // 443 stays: without it the name would read as Hub's.
        assert_eq!(canonical("myreg:443/app"), "myreg:443/app");
    }

    #[test]
    fn repository_paths_are_lowercase_by_the_grammar() {
        for spelling in [
            "localhost:5312/Team/app",
            "registry.example.com/team/App",
            "docker.io/Library/nginx",
            "NGINX",
        ] {
            let error = refused(spelling);
            assert!(
                matches!(error, ReferenceError::Uppercase(_)),
                "{spelling}: {error}"
            );
        }
        assert!(
            refused("localhost:5312/Team/app")
                .to_string()
                .contains("must be lowercase")
        );
        // Tags keep their case.
        assert_eq!(canonical("localhost/app:V1"), "localhost/app:V1");
    }

    #[test]
    fn what_the_grammar_does_not_allow_is_refused() {
        for spelling in [
            "registry.example.com./app",
            ".example.com/app",
            "exa_mple.com/app",
            "-example.com/app",
            "example-.com/app",
            "reg.io/a..b",
            "reg.io/a._b",
            "reg.io/a___b",
            "reg.io/-app",
            "reg.io/app-",
            "reg.io//app",
            "reg.io/app/",
            "reg.io/",
            "/app",
            "reg.io/ap p",
            "reg.io/app:",
            "reg.io/app:-x",
            "reg.io/app:1:2",
            "reg.io/app@sha256:00",
            "reg.io/app@md5:0489474da8ea22426ece86ace6c1c002",
            "reg.io/app@sha256:0489474DA8EA22426ECE86ACE6C1C0026AB2FD3CDFBBD62B7E94650266C37D9A",
            "reg.io/app@@sha256:0489474da8ea22426ece86ace6c1c0026ab2fd3cdfbbd62b7e94650266c37d9a",
            "r\u{e9}g.io/app",
        ] {
            refused(spelling);
        }
        assert!(matches!(refused(""), ReferenceError::Empty));
        assert!(matches!(
            refused(&format!("reg.io/{}", "a".repeat(256))),
            ReferenceError::TooLong(_)
        ));
        assert!(matches!(
            refused(&format!("reg.io/app:{}", "t".repeat(129))),
            ReferenceError::Tag(_)
        ));
        // The grammar's separators, each allowed.
        assert_eq!(canonical("reg.io/a.b_c__d---e"), "reg.io/a.b_c__d---e");
    }

    #[test]
    fn image_ids_are_not_names() {
        let hex = DIGEST.trim_start_matches("sha256:");
        assert!(matches!(refused(DIGEST), ReferenceError::ImageId(_)));
        assert!(matches!(refused(hex), ReferenceError::ImageId(_)));
    }

    #[test]
    fn tags_and_digests_are_kept_and_pins_use_the_canonical_name() {
        let reference =
            Reference::parse(&format!("LOCALHOST:05312/team/app:1@{DIGEST}")).expect("a reference");
        assert_eq!(reference.name().registry(), "localhost:5312");
        assert_eq!(reference.name().repository(), "team/app");
        assert_eq!(reference.tag(), Some("1"));
        assert_eq!(reference.digest(), Some(DIGEST));
        assert_eq!(
            reference.pinned(DIGEST),
            format!("localhost:5312/team/app:1@{DIGEST}")
        );
        let oci = reference.to_oci();
        assert_eq!(oci.registry(), "localhost:5312");
        assert_eq!(oci.digest(), Some(DIGEST));
        let untagged = Reference::parse("nginx").expect("a reference");
        assert_eq!(
            untagged.pinned(DIGEST),
            format!("docker.io/library/nginx@{DIGEST}")
        );
        assert_eq!(untagged.to_oci().tag(), Some("latest"));
        assert_eq!(untagged.to_oci().resolve_registry(), "index.docker.io");
    }

    #[test]
    fn names_take_no_tag_and_list_the_registry_spellings_patterns_may_use() {
        assert_eq!(
            Name::parse("REGISTRY.example.com:443/team/app").map(|name| name.to_string()),
            Ok("registry.example.com/team/app".to_owned())
        );
        assert!(Name::parse("team/app:1").is_err());
        let name = Name::parse("registry.example.com/team/app").expect("a name");
        assert_eq!(
            name.registry_spellings(),
            ["registry.example.com", "registry.example.com:443"]
        );
        let hub = Name::parse("nginx").expect("a name");
        assert!(
            hub.registry_spellings()
                .contains(&"index.docker.io".to_owned())
        );
        let ported = Name::parse("localhost:5000/app").expect("a name");
        assert_eq!(ported.registry_spellings(), ["localhost:5000"]);
        let ipv6 = Name::parse("[::1]/app").expect("a name");
        assert_eq!(ipv6.registry_spellings(), ["[::1]", "[::1]:443"]);
    }

    #[test]
    fn registries_in_the_configuration_are_canonicalized_alike() {
        assert_eq!(
            canonical_registry("Registry.Example.com:443").as_deref(),
            Ok("registry.example.com")
        );
        assert_eq!(
            canonical_registry("127.0.0.1:05000").as_deref(),
            Ok("127.0.0.1:5000")
        );
        assert_eq!(
            canonical_registry("index.docker.io").as_deref(),
            Ok("docker.io")
        );
        assert!(canonical_registry("registry.example.com:x").is_err());
        assert!(canonical_registry("registry").is_err());
    }
}
