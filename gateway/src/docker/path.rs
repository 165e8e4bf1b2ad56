//! Request paths and queries, read the way the engine reads them, so that
//! what the proxy classifies is what the engine routes.
//!
//! The engine routes on Go's decoded `URL.Path` (gorilla/mux, paths
//! cleaned): `%2F` is a `/`, `//` is one `/`, dot segments are resolved, and
//! the version prefix `/v{version}` is optional and read as numbers
//! (`/v1.041/` is 1.41). The proxy decodes and cleans the same way, refuses
//! what does not decode cleanly, and forwards the canonical form, so the
//! engine never sees a spelling the proxy did not judge.

use std::fmt;

/// A request path reduced to what the engine routes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// The API version the client asked for, as (major, minor).
    pub version: Option<(u32, u32)>,
    /// The path after the version prefix: starts with `/`, no empty, `.`
    /// or `..` segments.
    pub path: String,
}

/// Why a path or query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8.
    #[error("the path is not valid percent-encoded UTF-8")]
    Encoding,
    /// A control character (including NUL) in the path.
    #[error("the path contains a control character")]
    Control,
    /// `..` above the root.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// A version prefix that is not `v<major>.<minor>`.
    #[error("`{0}` is not an API version (expected v<major>.<minor>)")]
    Version(String),
    /// A query that does not parse, or repeats a parameter.
    #[error("{0}")]
    Query(String),
}

impl CanonicalPath {
    /// Decodes and cleans a raw request path.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let decoded = percent_decode(raw)?;
        if decoded.chars().any(char::is_control) {
            return Err(PathError::Control);
        }
        let mut segments: Vec<&str> = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::AboveRoot);
                    }
                }
                segment => segments.push(segment),
            }
        }
        let version = match segments.first().and_then(|first| first.strip_prefix('v')) {
            Some(number) if number.starts_with(|c: char| c.is_ascii_digit()) => {
                let version = parse_version(number)
                    .ok_or_else(|| PathError::Version(format!("v{number}")))?;
                segments.remove(0);
                Some(version)
            }
            _ => None,
        };
        Ok(Self {
            version,
            path: format!("/{}", segments.join("/")),
        })
    }

    /// The path's segments after the version prefix.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|segment| !segment.is_empty())
    }

    /// The API version as the engine writes it (`1.41`), or empty.
    pub fn version_string(&self) -> String {
        self.version
            .map(|(major, minor)| format!("{major}.{minor}"))
            .unwrap_or_default()
    }
}

impl fmt::Display for CanonicalPath {
    /// The canonical request path, prefix included, re-encoded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((major, minor)) = self.version {
            write!(f, "/v{major}.{minor}")?;
        }
        f.write_str(&percent_encode_path(&self.path))
    }
}

/// `1.41`, `1.041`: two dot-separated decimal numbers (as the engine's
/// version comparison reads them).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    let number = |part: &str| {
        (!part.is_empty() && part.len() <= 9 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    Some((number(major)?, number(minor)?))
}

fn percent_decode(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).ok_or(PathError::Encoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::Encoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| PathError::Encoding)?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::Encoding)
}

/// Escapes what cannot stand in a path segment.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b':'
            | b'@'
            | b'+'
            | b'=' => {
                out.push(char::from(byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A query string parsed as Go's `url.ParseQuery` parses it (`+` is a
/// space, escapes decoded), refusing what the engine would read differently
/// from us: a `;` separator (Go rejects it), bad escapes, and a parameter
/// given twice (Go keeps all values, the engine reads the first; a policy
/// must not judge one and the engine use another) — but for those in
/// `repeatable`, of which the endpoint reads every value (a build's `t`).
pub fn parse_query(
    raw: Option<&str>,
    repeatable: &[&str],
) -> Result<Vec<(String, String)>, PathError> {
    let Some(raw) = raw.filter(|raw| !raw.is_empty()) else {
        return Ok(Vec::new());
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in raw.split('&').filter(|part| !part.is_empty()) {
        if part.contains(';') {
            return Err(PathError::Query("`;` separates nothing in a query".into()));
        }
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let decode = |text: &str| {
            percent_decode(&text.replace('+', " ")).map_err(|_| {
                PathError::Query(format!("`{part}` is not valid percent-encoded UTF-8"))
            })
        };
        let (key, value) = (decode(key)?, decode(value)?);
        if !seen.insert(key.clone()) && !repeatable.contains(&key.as_str()) {
            return Err(PathError::Query(format!(
                "query parameter `{key}` is given more than once"
            )));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// A query parameter's value.
pub fn query_value<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, value)| value.as_str())
}

/// A boolean query parameter as the engine reads it (`httputils.BoolValue`):
/// false when absent, empty, `0`, `no`, `false` or `none` in any case and
/// surrounding space; true for anything else.
pub fn query_bool(query: &[(String, String)], key: &str) -> bool {
    query_value(query, key).is_some_and(|value| {
        let value = value.trim().to_ascii_lowercase();
        !matches!(value.as_str(), "" | "0" | "no" | "false" | "none")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(raw: &str) -> String {
        CanonicalPath::parse(raw).expect("canonical").to_string()
    }

    #[test]
    fn spellings_of_one_endpoint_become_one_path() {
        for raw in [
            "/v1.41/containers/create",
            "/v1.041/containers/create",
            "/v1.41//containers///create",
            "/v1.41/containers/./create",
            "/v1.41/images/../containers/create",
            "/v1.41/containers%2Fcreate",
            "/v1.41/%63ontainers/create",
            "//v1.41/containers/create/",
        ] {
            assert_eq!(canonical(raw), "/v1.41/containers/create", "{raw}");
        }
        assert_eq!(canonical("/containers/create"), "/containers/create");
        assert_eq!(canonical("/_ping"), "/_ping");
        assert_eq!(
            CanonicalPath::parse("/v1.41/info").expect("ok").version,
            Some((1, 41))
        );
    }

    #[test]
    fn what_does_not_decode_cleanly_is_refused() {
        assert_eq!(
            CanonicalPath::parse("/v1.41/containers/%zz"),
            Err(PathError::Encoding)
        );
        assert_eq!(
            CanonicalPath::parse("/v1.41/containers/%c3"),
            Err(PathError::Encoding)
        );
        assert_eq!(
            CanonicalPath::parse("/v1.41/a%00b"),
            Err(PathError::Control)
        );
        assert_eq!(
            CanonicalPath::parse("/v1.41/../../etc"),
            Err(PathError::AboveRoot)
        );
        assert!(matches!(
            CanonicalPath::parse("/v1.4.1/info"),
            Err(PathError::Version(_))
        ));
        assert!(matches!(
            CanonicalPath::parse("/v1/info"),
            Err(PathError::Version(_))
        ));
        // A segment that merely starts with `v` is a path, not a version.
        assert_eq!(canonical("/volumes/create"), "/volumes/create");
    }

    #[test]
    fn names_with_odd_bytes_are_re_encoded() {
        assert_eq!(
            canonical("/containers/a%20b/json"),
            "/containers/a%20b/json"
        );
    }

    #[test]
    fn queries_read_like_go_and_refuse_ambiguity() {
        let query = parse_query(Some("fromImage=alpine&tag=3%2E20&name=a+b"), &[]).expect("valid");
        assert_eq!(query_value(&query, "tag"), Some("3.20"));
        assert_eq!(query_value(&query, "name"), Some("a b"));
        assert!(parse_query(Some("name=a&name=b"), &[]).is_err());
        assert!(parse_query(Some("t=a:1&t=b:1"), &["t"]).is_ok());
        assert!(parse_query(Some("name=a;b"), &[]).is_err());
        assert!(parse_query(Some("name=%zz"), &[]).is_err());
        let flags = parse_query(Some("a=FALSE&b=%20no&c=1&d=yes&e=none&f="), &[]).expect("valid");
        let read: Vec<bool> = ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .map(|key| query_bool(&flags, key))
            .collect();
        assert_eq!(read, [false, false, true, true, false, false, false]);
    }
}
