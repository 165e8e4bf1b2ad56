//! Image patterns: globs over an image's full name, `registry/repository`.
//!
//! `*` matches within one path segment, `**` across segments, `?` one
//! character other than `/`. Patterns are written as people write images:
//! `nginx` means `docker.io/library/nginx`, `team/app` means
//! `docker.io/team/app`, as the docker CLI reads them; a first segment with
//! a `.` or `:`, or `localhost`, names a registry.

/// A compiled image pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Reads a pattern; `None` when it is empty or has a tag or digest.
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() || text.contains('@') || last_segment_has_tag(text) {
            return None;
        }
        Some(Self(qualify(text)))
    }

    /// Whether `name` (a full `registry/repository`) matches.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `docker.io` and `docker.io/library` where the docker CLI would add them.
fn qualify(text: &str) -> String {
    let first = text.split('/').next().unwrap_or_default();
    let names_registry = first.contains(['.', ':']) || first == "localhost";
    if names_registry || first.contains('*') {
        text.to_owned()
    } else if text.contains('/') {
        format!("docker.io/{text}")
    } else {
        format!("docker.io/library/{text}")
    }
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
        Pattern::new(pattern).expect("a pattern").matches(name)
    }

    #[test]
    fn short_names_are_qualified_as_the_docker_cli_does() {
        assert!(matches("nginx", "docker.io/library/nginx"));
        assert!(matches("team/app", "docker.io/team/app"));
        assert!(matches("localhost/app", "localhost/app"));
        assert!(matches("127.0.0.1:5000/app", "127.0.0.1:5000/app"));
        assert!(!matches("nginx", "docker.io/team/nginx"));
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
        assert!(!matches("reg.io/ap?", "reg.io/ap/"));
    }

    #[test]
    fn tags_and_digests_are_not_patterns() {
        assert_eq!(Pattern::new("nginx:1.27"), None);
        assert_eq!(Pattern::new("nginx@sha256:00"), None);
        assert_eq!(Pattern::new(" "), None);
        assert!(Pattern::new("127.0.0.1:5000/app").is_some());
    }
}
