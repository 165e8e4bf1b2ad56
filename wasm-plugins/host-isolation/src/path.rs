//! Host paths, normalized lexically so a path reads as what it reaches.
//!
//! The policy never sees the host's filesystem, so it cannot resolve
//! symlinks; it resolves what the text itself says: `//` collapses, `.`
//! vanishes, `..` climbs (and stops at `/`, as the kernel does), and a
//! trailing `/` goes. That defeats the spellings that hide a sensitive path
//! from a string comparison (`/tmp/../var/run/docker.sock`, `/etc/`,
//! `//proc`). Symlinked spellings (`/var/run` is usually a link to `/run`)
//! are covered by listing both, as the default sensitive paths do.

use std::fmt;

/// An absolute host path in normal form: `/`, or `/` followed by segments
/// that are neither empty, `.` nor `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPath(String);

/// How a mounted host path touches a sensitive one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    /// It is the sensitive path.
    Is,
    /// It lies inside the sensitive path.
    Under,
    /// It is an ancestor of the sensitive path, so mounting it exposes that
    /// path too.
    Contains,
}

impl HostPath {
    /// Normalizes `path`; `None` unless it is absolute (starts with `/`).
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        let mut segments: Vec<&str> = Vec::new();
        for segment in rest.split('/') {
            match segment {
                "" | "." => {}
                // Climbing above `/` stays at `/`, as path resolution does.
                ".." => {
                    segments.pop();
                }
                segment => segments.push(segment),
            }
        }
        Some(Self(format!("/{}", segments.join("/"))))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the host's root directory.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// How this path, mounted, touches `sensitive`, if it does.
    ///
    /// A sensitive `/` means "the root itself": everything lies under the
    /// root, so only mounting `/` touches it.
    pub(crate) fn relation_to(&self, sensitive: &HostPath) -> Option<Relation> {
        if self == sensitive {
            Some(Relation::Is)
        } else if !sensitive.is_root() && self.is_strictly_inside(sensitive) {
            Some(Relation::Under)
        } else if sensitive.is_strictly_inside(self) {
            Some(Relation::Contains)
        } else {
            None
        }
    }

    /// Whether this path lies strictly inside `ancestor`, by whole segments:
    /// `/etc/ssl` is inside `/etc`, `/etcetera` is not.
    fn is_strictly_inside(&self, ancestor: &HostPath) -> bool {
        if ancestor.is_root() {
            return !self.is_root();
        }
        self.0
            .strip_prefix(ancestor.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str) -> Option<String> {
        HostPath::parse(path).map(|p| p.as_str().to_owned())
    }

    fn path(text: &str) -> HostPath {
        match HostPath::parse(text) {
            Some(path) => path,
            None => panic!("{text} is not absolute"),
        }
    }

    #[test]
    fn normalizes_the_spellings_that_hide_a_path() {
        for (written, expected) in [
            ("/", "/"),
            ("//", "/"),
            ("/var/run/docker.sock", "/var/run/docker.sock"),
            ("/var//run///docker.sock", "/var/run/docker.sock"),
            ("//var/run/docker.sock", "/var/run/docker.sock"),
            ("/etc/", "/etc"),
            ("/etc///", "/etc"),
            ("/./etc/./ssl/.", "/etc/ssl"),
            ("/tmp/../var/run/docker.sock", "/var/run/docker.sock"),
            ("/srv/app/../../etc/shadow", "/etc/shadow"),
            ("/..", "/"),
            ("/../../proc", "/proc"),
            ("/var/..", "/"),
            ("/a/b/..c/...", "/a/b/..c/..."),
        ] {
            assert_eq!(normal(written).as_deref(), Some(expected), "{written}");
        }
    }

    #[test]
    fn relative_paths_have_no_normal_form() {
        for written in [
            "",
            ".",
            "data",
            "./data",
            "../etc",
            "var/run/docker.sock",
            r"C:\Windows",
        ] {
            assert_eq!(normal(written), None, "{written}");
        }
    }

    #[test]
    fn relations_go_by_whole_segments() {
        let sock = path("/var/run/docker.sock");
        assert_eq!(
            path("/var/run/docker.sock").relation_to(&sock),
            Some(Relation::Is)
        );
        assert_eq!(
            path("/var/run").relation_to(&sock),
            Some(Relation::Contains)
        );
        assert_eq!(path("/var").relation_to(&sock), Some(Relation::Contains));
        assert_eq!(path("/").relation_to(&sock), Some(Relation::Contains));
        assert_eq!(path("/var/run/docker.sock.bak").relation_to(&sock), None);
        assert_eq!(path("/var/run/docker").relation_to(&sock), None);

        let etc = path("/etc");
        assert_eq!(path("/etc/shadow").relation_to(&etc), Some(Relation::Under));
        assert_eq!(
            path("/etc/ssl/certs").relation_to(&etc),
            Some(Relation::Under)
        );
        assert_eq!(path("/etcetera").relation_to(&etc), None);
        assert_eq!(path("/et").relation_to(&etc), None);
    }

    #[test]
    fn the_root_is_touched_only_by_mounting_it() {
        let root = path("/");
        assert_eq!(path("/").relation_to(&root), Some(Relation::Is));
        assert_eq!(path("/srv/data").relation_to(&root), None);
        assert_eq!(path("/tmp").relation_to(&root), None);
    }
}
