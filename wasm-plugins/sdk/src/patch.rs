//! Building RFC 6902 JSON Patches.

use serde_json::{Value, json};

/// A JSON Patch (RFC 6902): operations applied in order to the request's
/// object.
///
/// ```
/// use portcullis_policy_sdk::{Patch, pointer};
///
/// let patch = Patch::new()
///     .add(pointer(&["metadata", "labels", "team"]), "payments")
///     .replace("/spec/containers/0/image", "nginx@sha256:…");
/// assert_eq!(patch.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    operations: Vec<Value>,
}

impl Patch {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` at `path` (creating the member or inserting into an array).
    pub fn add(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(json!({"op": "add", "path": path.into(), "value": value.into()}))
    }

    /// Replaces the value at `path`, which must exist.
    pub fn replace(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(json!({"op": "replace", "path": path.into(), "value": value.into()}))
    }

    /// Removes the value at `path`, which must exist.
    pub fn remove(self, path: impl Into<String>) -> Self {
        self.push(json!({"op": "remove", "path": path.into()}))
    }

    /// Copies the value at `from` to `path`.
    pub fn copy(self, from: impl Into<String>, path: impl Into<String>) -> Self {
        self.push(json!({"op": "copy", "from": from.into(), "path": path.into()}))
    }

    /// Fails the whole patch unless the value at `path` equals `value`.
    pub fn test(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(json!({"op": "test", "path": path.into(), "value": value.into()}))
    }

    /// Appends the operations of another patch.
    pub fn extend(mut self, other: Patch) -> Self {
        self.operations.extend(other.operations);
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether the patch has no operations.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The patch as JSON text.
    pub fn to_json(&self) -> String {
        Value::Array(self.operations.clone()).to_string()
    }

    fn push(mut self, operation: Value) -> Self {
        self.operations.push(operation);
        self
    }
}

/// Builds a JSON Pointer (RFC 6901) from unescaped segments, escaping `~` and
/// `/` inside them: `pointer(&["metadata", "annotations", "a/b"])` is
/// `/metadata/annotations/a~1b`.
pub fn pointer(segments: &[&str]) -> String {
    segments.iter().fold(String::new(), |mut path, segment| {
        path.push('/');
        path.push_str(&segment.replace('~', "~0").replace('/', "~1"));
        path
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_tilde_and_slash() {
        assert_eq!(
            pointer(&["metadata", "annotations", "example.com/a~b"]),
            "/metadata/annotations/example.com~1a~0b"
        );
        assert_eq!(pointer(&[]), "");
    }

    #[test]
    fn operations_keep_their_order() {
        let patch = Patch::new()
            .test("/a", 1)
            .replace("/a", 2)
            .remove("/b")
            .add("/c/-", "x");
        assert_eq!(
            patch.to_json(),
            r#"[{"op":"test","path":"/a","value":1},{"op":"replace","path":"/a","value":2},{"op":"remove","path":"/b"},{"op":"add","path":"/c/-","value":"x"}]"#
        );
    }
}
