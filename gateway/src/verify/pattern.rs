//! Image patterns: globs over an image's canonical name,
//! `registry/repository` (see [`mod@super::reference`]).
//!
//! `*` matches within one path segment, `**` across segments, `?` one
//! character other than `/`. Patterns are written as people write images:
//! `nginx` means `docker.io/library/nginx`, `team/app` means
//! `docker.io/team/app`, as the docker CLI reads them; a first segment with
//! a `.` or `:`, `localhost`, capitals or a `*` names a registry.
//!
//! A pattern is canonicalized at load as names are, so it means what every
//! spelling of a name means: `Registry.Example.com:443/team/*` is
//! `registry.example.com/team/*`. A registry glob is matched against each
//! way of writing a name's registry (the https port spelt out, Docker Hub's
//! other names), so `registry.example.com:*/**` covers the registry on 443
//! too and `*.docker.io/**` covers Docker Hub.

use super::reference::{Name, ReferenceError, canonical_registry};

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Nothing was given.
    #[error("the pattern is empty")]
    Empty,
    /// A tag or digest, which a rule over repositories cannot have.
    #[error("a pattern names repositories, without a tag or digest")]
    Tagged,
    /// A registry that does not canonicalize.
    #[error(transparent)]
    Registry(#[from] ReferenceError),
    /// A repository glob no canonical name could match.
    #[error(
        "the repository `{0}` can match no image: repositories are lowercase letters, digits, `.`, `_`, `-` and `/` (with `*` and `?`)"
    )]
    Repository(String),
}

/// A compiled image pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Reads and canonicalizes a pattern.
    pub fn new(text: &str) -> Result<Self, PatternError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.contains('@') || last_segment_has_tag(text) {
            return Err(PatternError::Tagged);
        }
        let (registry, repository) = match text.split_once('/') {
            Some((first, rest)) if names_registry(first) => (registry_glob(first)?, rest),
            // `**` alone stands for whole names.
            None if text.contains("**") => return Ok(Self(text.to_owned())),
            _ => ("docker.io".to_owned(), text),
        };
        let valid = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '.' | '_' | '-' | '/' | '*' | '?')
        };
        if repository.is_empty() || !repository.chars().all(valid) {
            return Err(PatternError::Repository(repository.to_owned()));
        }
        // Hub's official images are under `library/`, as in names.
        let repository =
            if registry == "docker.io" && !repository.contains('/') && !repository.contains("**") {
                format!("library/{repository}")
            } else {
                repository.to_owned()
            };
        Ok(Self(format!("{registry}/{repository}")))
    }

    /// Whether `name` matches, under any spelling of its registry.
    pub fn matches(&self, name: &Name) -> bool {
        name.registry_spellings().iter().any(|registry| {
            let full = format!("{registry}/{}", name.repository());
            glob(self.0.as_bytes(), full.as_bytes())
        })
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a pattern's first segment is a registry, as the engine decides
/// for names (and a `*` there, which can only stand for a registry).
fn names_registry(first: &str) -> bool {
    first.contains(['.', ':', '*'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

/// The registry part of a pattern in canonical form: a literal one as names
/// are, a glob folded to lowercase with its literal port read as a number.
fn registry_glob(first: &str) -> Result<String, PatternError> {
    if !first.contains(['*', '?']) {
        return Ok(canonical_registry(first)?);
    }
    let lower = first.to_ascii_lowercase();
    let after_brackets = lower.rfind(']').map_or(0, |at| at + 1);
    if let Some(at) = lower[after_brackets..]
        .rfind(':')
        .map(|at| at + after_brackets)
    {
        let (host, port) = (&lower[..at], &lower[at + 1..]);
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return match port.trim_start_matches('0').parse::<u16>() {
                Ok(0) | Err(_) => Err(ReferenceError::Port(port.to_owned()).into()),
                Ok(port) => Ok(format!("{host}:{port}")),
            };
        }
    }
    Ok(lower)
}

/// A `:` after the last `/` (a registry's port comes before one).
fn last_segment_has_tag(text: &str) -> bool {
    text.rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern {
        [] => name.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        [b'*', rest @ ..] => {
            let segment = name
                .iter()
                .position(|&byte| byte == b'/')
                .unwrap_or(name.len());
            (0..=segment).any(|skip| glob(rest, &name[skip..]))
        }
        [b'?', rest @ ..] => {
            matches!(name, [first, tail @ ..] if *first != b'/' && glob(rest, tail))
        }
        [literal, rest @ ..] => {
            matches!(name, [first, tail @ ..] if first == literal && glob(rest, tail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        let name = Name::parse(name).unwrap_or_else(|error| panic!("{name}: {error}"));
        Pattern::new(pattern)
            .unwrap_or_else(|error| panic!("{pattern}: {error}"))
            .matches(&name)
    }

    #[test]
    fn short_names_are_qualified_as_the_docker_cli_does() {
        assert!(matches("nginx", "docker.io/library/nginx"));
        assert!(matches("nginx", "nginx"));
        assert!(matches("team/app", "docker.io/team/app"));
        assert!(matches("localhost/app", "localhost/app"));
        assert!(matches("127.0.0.1:5000/app", "127.0.0.1:5000/app"));
        assert!(!matches("nginx", "docker.io/team/nginx"));
        assert!(
            matches("docker.io/*", "nginx"),
            "one segment on Hub is library/"
        );
        assert!(matches("ngin?", "nginx"));
        assert!(!matches("ngin?", "team/nginx"));
        assert!(matches("docker.io/**", "team/app"));
    }

    #[test]
    fn stars_stay_within_a_segment_and_double_stars_cross_them() {
        assert!(matches(
            "registry.example.com/team/*",
            "registry.example.com/team/app"
        ));
        assert!(!matches(
            "registry.example.com/team/*",
            "registry.example.com/team/a/b"
        ));
        assert!(matches(
            "registry.example.com/team/**",
            "registry.example.com/team/a/b"
        ));
        assert!(!matches(
            "registry.example.com/team/**",
            "registry.example.com/teams/a"
        ));
        assert!(matches("**", "docker.io/library/nginx"));
        assert!(matches("*.example.com/**", "registry.example.com/x"));
        assert!(!matches("*.example.com/**", "registry.example.org/x"));
        assert!(matches("127.0.0.1:*/signed/*", "127.0.0.1:5000/signed/app"));
        assert!(matches("reg.io/ap?", "reg.io/app"));
        assert!(!matches("reg.io/ap?", "reg.io/ap/x"));
        assert!(matches("**/app", "reg.io/team/app"));
    }

    #[test]
    fn every_spelling_of_a_governed_name_matches_its_pattern() {
        let patterns = [
            "registry.example.com/team/*",
            "Registry.Example.com:443/team/*",
            "REGISTRY.EXAMPLE.COM:0443/team/*",
            "registry.example.com:*/team/*",
            "*.example.com/team/*",
            "*.EXAMPLE.com:443/team/*",
        ];
        let names = [
            "registry.example.com/team/app",
            "REGISTRY.example.com/team/app",
            "registry.example.com:443/team/app",
            "registry.example.com:00443/team/app",
        ];
        for pattern in patterns {
            for name in names {
                assert!(matches(pattern, name), "{pattern} should match {name}");
            }
        }
        for name in [
            "LOCALHOST:5312/team/app",
            "localhost:05312/team/app",
            "LocalHost:5312/team/app",
        ] {
            assert!(matches("localhost:5312/team/**", name), "{name}");
            assert!(matches("LOCALHOST:05312/team/**", name), "{name}");
        }
        for name in [
            "index.docker.io/team/app",
            "registry-1.docker.io/team/app",
            "DOCKER.IO/team/app",
        ] {
            assert!(matches("team/app", name), "{name}");
            assert!(matches("docker.io/team/**", name), "{name}");
            assert!(matches("*.docker.io/team/**", name), "{name}");
            assert!(matches("index.docker.io/team/app", name), "{name}");
        }
        assert!(matches("[::1]:5000/**", "[0:0::1]:05000/app"));
        assert!(matches("127.0.0.1:5000/**", "[::ffff:7f00:1]:5000/app"));
        assert!(!matches(
            "registry.example.com/team/*",
            "registry.example.com:8443/team/app"
        ));
        assert!(!matches(
            "*.example.com/team/*",
            "registry.example.com:8443/team/app"
        ));
        // A port glob covers the https default, which canonical names omit.
        assert!(matches(
            "registry.example.com:*/**",
            "registry.example.com/app"
        ));
        assert!(!matches(
            "registry.example.com:*/**",
            "registry.example.org/app"
        ));
    }

    #[test]
    fn patterns_that_could_match_nothing_are_refused_with_the_reason() {
        assert_eq!(Pattern::new("nginx:1.27"), Err(PatternError::Tagged));
        assert_eq!(Pattern::new("nginx@sha256:00"), Err(PatternError::Tagged));
        assert_eq!(Pattern::new("127.0.0.1:5000"), Err(PatternError::Tagged));
        assert_eq!(Pattern::new(" "), Err(PatternError::Empty));
        assert!(Pattern::new("127.0.0.1:5000/app").is_ok());
        let uppercase = Pattern::new("registry.example.com/Team/*").expect_err("uppercase");
        assert!(uppercase.to_string().contains("`Team/*`"), "{uppercase}");
        assert!(matches!(
            Pattern::new("127.1:5000/app"),
            Err(PatternError::Registry(ReferenceError::NumericHost(_)))
        ));
        assert!(matches!(
            Pattern::new("reg.io:0/app"),
            Err(PatternError::Registry(ReferenceError::Port(_)))
        ));
        assert!(matches!(
            Pattern::new("*.reg.io:99999/app"),
            Err(PatternError::Registry(ReferenceError::Port(_)))
        ));
        assert!(Pattern::new("reg.io/a b").is_err());
    }

    #[test]
    fn patterns_display_in_canonical_form() {
        let shown = |text: &str| Pattern::new(text).expect("a pattern").to_string();
        assert_eq!(
            shown("Registry.Example.com:443/team/*"),
            "registry.example.com/team/*"
        );
        assert_eq!(shown("index.docker.io/nginx"), "docker.io/library/nginx");
        assert_eq!(shown("*.Example.com:0080/**"), "*.example.com:80/**");
        assert_eq!(shown("**"), "**");
    }
}
