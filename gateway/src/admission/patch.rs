//! Applying a JSON Patch (RFC 6902) within bounds.
//!
//! A patch is small by the time it arrives (the host caps its text), but
//! what it does is not: `copy` duplicates whatever its `from` names, so 25
//! copies of a 1 KiB value into itself make a 32 GB object. Each operation
//! is therefore weighed before it is applied: what it adds (its value, or
//! the value it copies) is measured, with the measuring stopping at the
//! limit, and added to a running upper bound of the object's size. Removals
//! are not credited back, so the bound only errs towards refusing.

use std::io;

use json_patch::{Patch, PatchOperation};
use serde_json::Value;

/// How far a patch may change an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchLimits {
    /// Most operations in one patch.
    pub max_operations: usize,
    /// Largest object (as JSON text) a patch may leave.
    pub max_object_bytes: usize,
}

impl PatchLimits {
    /// The limits of a configuration's `sandbox` section.
    pub fn new(max_operations: usize, max_object_bytes: u64) -> Self {
        Self {
            max_operations,
            max_object_bytes: usize::try_from(max_object_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// Applies `patch` to `document`, whose JSON text is `size` bytes long,
/// and returns the patched document's JSON text. The document is left
/// half-patched on error; callers patch a copy.
pub fn apply(
    document: &mut Value,
    size: usize,
    patch: &Patch,
    limits: PatchLimits,
) -> Result<String, String> {
    if patch.0.len() > limits.max_operations {
        return Err(format!(
            "the patch has {} operations, more than the limit of {}",
            patch.0.len(),
            limits.max_operations
        ));
    }
    let too_large = || {
        format!(
            "the patch would make the object larger than the limit of {} bytes",
            limits.max_object_bytes
        )
    };
    let mut bound = size;
    for operation in &patch.0 {
        let room = limits.max_object_bytes.saturating_sub(bound);
        let added = match operation {
            PatchOperation::Add(add) => json_len(&add.value, room),
            PatchOperation::Replace(replace) => json_len(&replace.value, room),
            PatchOperation::Copy(copy) => match document.pointer(copy.from.as_str()) {
                Some(value) => json_len(value, room),
                // Left to the patch itself to report.
                None => Some(0),
            },
            PatchOperation::Remove(_) | PatchOperation::Move(_) | PatchOperation::Test(_) => {
                Some(0)
            }
        };
        // A new member also adds its key, quoted, and a separator.
        let path = match operation {
            PatchOperation::Add(add) => add.path.as_str().len(),
            PatchOperation::Copy(copy) => copy.path.as_str().len(),
            _ => 0,
        };
        bound = added
            .and_then(|added| bound.checked_add(added)?.checked_add(path + 4))
            .filter(|&bound| bound <= limits.max_object_bytes)
            .ok_or_else(too_large)?;
        json_patch::patch(document, std::slice::from_ref(operation))
            .map_err(|error| format!("patch does not apply to the object: {error}"))?;
    }
    let text = document.to_string();
    if text.len() > limits.max_object_bytes {
        return Err(too_large());
    }
    Ok(text)
}

/// The length of `value` as JSON text, or `None` once it passes `limit`
/// (the measuring stops there).
fn json_len(value: &Value, limit: usize) -> Option<usize> {
    let mut counter = Counter { count: 0, limit };
    serde_json::to_writer(&mut counter, value).ok()?;
    Some(counter.count)
}

struct Counter {
    count: usize,
    limit: usize,
}

impl io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.count += bytes.len();
        if self.count > self.limit {
            return Err(io::Error::other("over the limit"));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(operations: Value) -> Patch {
        serde_json::from_value(operations).expect("a patch")
    }

    fn limits(max_object_bytes: usize) -> PatchLimits {
        PatchLimits {
            max_operations: 100,
            max_object_bytes,
        }
    }

    #[test]
    fn an_ordinary_patch_applies() {
        let mut object = serde_json::json!({"metadata": {"name": "a"}});
        let text = apply(
            &mut object,
            25,
            &patch(serde_json::json!([
                {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
                {"op": "copy", "from": "/metadata/labels", "path": "/metadata/annotations"},
            ])),
            limits(1024),
        )
        .expect("applies");
        assert_eq!(
            text,
            r#"{"metadata":{"annotations":{"a":"b"},"labels":{"a":"b"},"name":"a"}}"#
        );
    }

    #[test]
    fn copies_that_double_the_object_stop_at_the_limit() {
        let mut operations = vec![serde_json::json!(
            {"op": "add", "path": "/metadata/annotations", "value": {"x": "y".repeat(1024)}}
        )];
        for index in 0..25 {
            operations.push(serde_json::json!({
                "op": "copy",
                "from": "/metadata/annotations",
                "path": format!("/metadata/annotations/copy{index}"),
            }));
        }
        let mut object = serde_json::json!({"metadata": {}});
        let error = apply(
            &mut object,
            15,
            &patch(Value::Array(operations)),
            limits(1 << 20),
        )
        .expect_err("refused");
        assert!(
            error.contains("larger than the limit of 1048576 bytes"),
            "{error}"
        );
        // Stopped within a doubling of the limit, not at 32 GB.
        assert!(object.to_string().len() < 2 << 20);
    }

    #[test]
    fn too_many_operations_are_refused_before_any_applies() {
        let operations: Vec<Value> = (0..101)
            .map(|index| serde_json::json!({"op": "add", "path": format!("/k{index}"), "value": 1}))
            .collect();
        let mut object = serde_json::json!({});
        let error = apply(
            &mut object,
            2,
            &patch(Value::Array(operations)),
            limits(1 << 20),
        )
        .expect_err("refused");
        assert!(
            error.contains("101 operations, more than the limit of 100"),
            "{error}"
        );
        assert_eq!(object, serde_json::json!({}));
    }

    #[test]
    fn a_large_value_is_measured_only_up_to_the_limit() {
        let value = Value::String("x".repeat(10_000));
        assert_eq!(json_len(&value, 100), None);
        assert_eq!(json_len(&value, 20_000), Some(10_002));
    }
}
