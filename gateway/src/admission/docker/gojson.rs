//! JSON read the way the Docker engine reads it.
//!
//! The engine decodes request bodies with Go's `encoding/json`, which matches
//! object keys to struct fields case-insensitively (with Unicode folding, so
//! `ſ` is an `s` and the Kelvin sign `K` is a `k`) and lets the last of
//! several matching keys win. A gateway that read `{"Privileged": false,
//! "privileged": true}` differently from the engine would approve one thing
//! and run another. So fields are looked up with Go's folding, and a body
//! with two keys for one field, or the same key twice anywhere, is rejected:
//! there is then no reading on which the gateway and the engine could
//! disagree.
//!
//! Reading is linear in the body: each object indexes its keys by their
//! folded spelling once, so a lookup costs the same whatever the object's
//! size, and the body is bounded in nesting ([`MAX_DEPTH`]) and in values
//! ([`MAX_VALUES`]), so no body of the allowed size is slow to read.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::NormalizeError;

/// Deepest nesting of arrays and objects a body may have. The engine's
/// deepest structure (a service's task template, its container spec, its
/// mounts' options) is under ten levels.
pub(crate) const MAX_DEPTH: usize = 64;

/// Most values (objects, arrays, strings, numbers…) a body may hold.
pub(crate) const MAX_VALUES: usize = 1 << 18;

/// A JSON value, objects kept in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

/// A JSON object with no key repeated, indexed by Go's folding of its keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Object {
    entries: Vec<(String, Value)>,
    /// Folded key → the first two entries whose keys fold to it.
    folded: HashMap<String, (usize, Option<usize>)>,
}

/// Parses a body; duplicate keys, and bodies past the limits, are errors.
pub(crate) fn parse(text: &str) -> Result<Value, NormalizeError> {
    let budget = Cell::new(MAX_VALUES);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Seed {
        budget: &budget,
        depth: 0,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value))
    .map_err(|error| NormalizeError::new("", format!("not valid JSON: {error}")))?;
    Ok(value)
}

/// Reads one value, counting it against the budget.
#[derive(Clone, Copy)]
struct Seed<'b> {
    budget: &'b Cell<usize>,
    depth: usize,
}

impl Seed<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "more than {MAX_VALUES} values in one body"
            ))),
        }
    }

    fn nested<E: de::Error>(&self) -> Result<Seed<'_>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "nested more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(Seed {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        self.spend()?;
        serde_json::Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let item = self.nested()?;
        let mut items = Vec::new();
        while let Some(value) = seq.next_element_seed(item)? {
            items.push(value);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let item = self.nested()?;
        let mut object = Object::default();
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(item)?;
            let index = object.entries.len();
            object
                .folded
                .entry(fold(&key))
                .and_modify(|(_, second)| {
                    second.get_or_insert(index);
                })
                .or_insert((index, None));
            object.entries.push((key, value));
        }
        Ok(Value::Object(object))
    }
}

/// Folds a key as Go's `encoding/json` does when matching struct fields.
/// Only `ſ` (U+017F) and the Kelvin sign (U+212A) fold into ASCII letters,
/// and struct field names are ASCII, so those two and ASCII case are all
/// that can make a key match a field.
pub(crate) fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{017F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

impl Object {
    /// The value Go would decode into the struct field `name` (`None` for
    /// absent or `null`). Two keys that both match the field are an error.
    pub(crate) fn field(&self, name: &str, path: &str) -> Result<Option<&Value>, NormalizeError> {
        let Some(&(first, second)) = self.folded.get(&fold(name)) else {
            return Ok(None);
        };
        if let Some(second) = second {
            return Err(NormalizeError::new(
                join(path, name),
                format!(
                    "keys `{}` and `{}` both set this field; the engine would take the last, so the request is ambiguous",
                    self.entries[first].0, self.entries[second].0
                ),
            ));
        }
        Ok(Some(&self.entries[first].1).filter(|value| **value != Value::Null))
    }

    /// A string field.
    pub(crate) fn string(&self, name: &str, path: &str) -> Result<Option<&str>, NormalizeError> {
        self.field(name, path)?
            .map(|value| value.as_str(&join(path, name)))
            .transpose()
    }

    /// A boolean field; absent is `false`, as in Go.
    pub(crate) fn boolean(&self, name: &str, path: &str) -> Result<Option<bool>, NormalizeError> {
        self.field(name, path)?
            .map(|value| value.as_bool(&join(path, name)))
            .transpose()
    }

    /// An object field.
    pub(crate) fn object(&self, name: &str, path: &str) -> Result<Option<&Object>, NormalizeError> {
        self.field(name, path)?
            .map(|value| value.as_object(&join(path, name)))
            .transpose()
    }

    /// An array field; absent is empty.
    pub(crate) fn array(&self, name: &str, path: &str) -> Result<&[Value], NormalizeError> {
        Ok(match self.field(name, path)? {
            Some(value) => value.as_array(&join(path, name))?,
            None => &[],
        })
    }

    /// A list-of-strings field; absent is empty.
    pub(crate) fn strings(&self, name: &str, path: &str) -> Result<Vec<String>, NormalizeError> {
        Ok(match self.field(name, path)? {
            Some(value) => value.as_strings(&join(path, name))?,
            None => Vec::new(),
        })
    }

    /// A `StrSlice` field (one string or a list); absent is empty.
    pub(crate) fn str_slice(&self, name: &str, path: &str) -> Result<Vec<String>, NormalizeError> {
        Ok(match self.field(name, path)? {
            Some(value) => value.as_str_slice(&join(path, name))?,
            None => Vec::new(),
        })
    }

    /// A `map[string]string` field; absent is empty.
    pub(crate) fn string_map(
        &self,
        name: &str,
        path: &str,
    ) -> Result<Vec<(String, String)>, NormalizeError> {
        let Some(map) = self.object(name, path)? else {
            return Ok(Vec::new());
        };
        let path = join(path, name);
        map.entries()
            .map(|(key, value)| match value {
                Value::Null => Ok((key.to_owned(), String::new())),
                value => Ok((key.to_owned(), value.as_str(&join(&path, key))?.to_owned())),
            })
            .collect()
    }

    /// Entries of a JSON object decoded into a Go map (keys are data, not
    /// folded).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    /// Whether the object has no keys.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `HostConfig` + `Privileged` → `HostConfig.Privileged`.
pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    fn mismatch(&self, path: &str, expected: &str) -> NormalizeError {
        NormalizeError::new(path, format!("expected {expected}, found {}", self.kind()))
    }

    pub(crate) fn as_object(&self, path: &str) -> Result<&Object, NormalizeError> {
        match self {
            Value::Object(object) => Ok(object),
            other => Err(other.mismatch(path, "an object")),
        }
    }

    pub(crate) fn as_bool(&self, path: &str) -> Result<bool, NormalizeError> {
        match self {
            Value::Bool(value) => Ok(*value),
            other => Err(other.mismatch(path, "a boolean")),
        }
    }

    pub(crate) fn as_str(&self, path: &str) -> Result<&str, NormalizeError> {
        match self {
            Value::String(value) => Ok(value),
            other => Err(other.mismatch(path, "a string")),
        }
    }

    pub(crate) fn as_array(&self, path: &str) -> Result<&[Value], NormalizeError> {
        match self {
            Value::Array(items) => Ok(items),
            other => Err(other.mismatch(path, "an array")),
        }
    }

    /// A list of strings; `null` items are empty strings, as in Go.
    pub(crate) fn as_strings(&self, path: &str) -> Result<Vec<String>, NormalizeError> {
        self.as_array(path)?
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::Null => Ok(String::new()),
                item => item.as_str(&format!("{path}[{index}]")).map(str::to_owned),
            })
            .collect()
    }

    /// The engine's `StrSlice`: one string or a list of them.
    pub(crate) fn as_str_slice(&self, path: &str) -> Result<Vec<String>, NormalizeError> {
        match self {
            Value::String(value) => Ok(vec![value.clone()]),
            other => other.as_strings(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Object {
        match parse(text).expect("valid JSON") {
            Value::Object(object) => object,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn fields_match_case_insensitively_like_go() {
        let body = object(r#"{"hostconfig": {"PRIVILEGED": true}}"#);
        let host = body
            .field("HostConfig", "")
            .expect("unique")
            .expect("present");
        let privileged = host
            .as_object("HostConfig")
            .expect("object")
            .field("Privileged", "HostConfig");
        assert_eq!(privileged, Ok(Some(&Value::Bool(true))));
    }

    #[test]
    fn unicode_folding_reaches_ascii_fields() {
        // Go folds U+017F to `s` and U+212A to `k`.
        let body = object("{\"Bind\u{017F}\": [\"/:/host\"], \"\u{212A}ernelMemory\": 1}");
        assert!(body.field("Binds", "").expect("unique").is_some());
        assert!(body.field("KernelMemory", "").expect("unique").is_some());
    }

    #[test]
    fn two_keys_for_one_field_are_rejected() {
        let body = object(r#"{"Privileged": false, "privileged": true}"#);
        let error = body
            .field("Privileged", "HostConfig")
            .expect_err("ambiguous");
        assert_eq!(error.path, "HostConfig.Privileged");
        assert!(
            error.message.contains("`Privileged` and `privileged`"),
            "{error}"
        );
    }

    #[test]
    fn exact_duplicate_keys_are_rejected_anywhere() {
        let error = parse(r#"{"Labels": {"a": "1", "a": "2"}}"#).expect_err("duplicate");
        assert!(error.message.contains("duplicate key `a`"), "{error}");
    }

    #[test]
    fn exact_duplicates_are_found_among_case_variants() {
        // Map keys are data: `o` and `O` are two options, but `o` twice is
        // one option with two values, of which the engine keeps the last.
        let error = parse(r#"{"o": "ro", "O": "x", "o": "bind"}"#).expect_err("duplicate");
        assert!(error.message.contains("duplicate key `o`"), "{error}");
        assert!(parse(r#"{"o": "ro", "O": "x"}"#).is_ok());
    }

    #[test]
    fn bodies_past_the_limits_are_refused_with_the_limit() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let error = parse(&deep).expect_err("too deep");
        assert!(error.message.contains("nested more than 64"), "{error}");
        let within = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&within).is_ok());

        let many = format!("[{}0]", "0,".repeat(MAX_VALUES));
        let error = parse(&many).expect_err("too many values");
        assert!(error.message.contains("more than 262144 values"), "{error}");
    }

    #[test]
    fn a_large_object_of_distinct_keys_is_read_whole() {
        // The shape that made the old duplicate check quadratic: it now
        // reads in one pass, and a lookup is one probe.
        let keys: Vec<String> = (0..100_000).map(|n| format!(r#""k{n}": {n}"#)).collect();
        let body = object(&format!("{{{}}}", keys.join(",")));
        assert_eq!(body.entries().count(), 100_000);
        assert_eq!(
            body.field("K99999", ""),
            Ok(Some(&Value::Number(99_999.into())))
        );
    }

    #[test]
    fn trailing_data_is_refused() {
        // Go's decoder would read the first value and ignore the rest; a
        // body that means two things is not forwarded.
        assert!(parse(r#"{"Image": "a"} {"Image": "b"}"#).is_err());
    }

    #[test]
    fn null_reads_as_absent() {
        let body = object(r#"{"HostConfig": null}"#);
        assert_eq!(body.field("HostConfig", ""), Ok(None));
    }

    #[test]
    fn types_are_checked_with_the_path() {
        let error = Value::String("yes".into())
            .as_bool("HostConfig.Privileged")
            .expect_err("not a bool");
        assert_eq!(
            error.to_string(),
            "HostConfig.Privileged: expected a boolean, found a string"
        );
        assert_eq!(
            Value::String("SYS_ADMIN".into()).as_str_slice("HostConfig.CapAdd"),
            Ok(vec!["SYS_ADMIN".to_string()])
        );
    }
}
