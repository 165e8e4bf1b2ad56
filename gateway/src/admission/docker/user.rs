//! `--user` as the runtime reads it.
//!
//! The engine hands the user text to runc's `user.GetExecUser`, which splits
//! it at the first `:` into user and group (anything after a second `:` is
//! ignored) and reads each part as a number with Go's `strconv.Atoi` — so a
//! sign is allowed, `-0` and `+0` are uid 0, and `007` is uid 7 — or else as
//! a name to look up in the container's `/etc/passwd` or `/etc/group`. Those
//! files belong to the container, which can rewrite them between the check
//! and the exec, so a name tells the gateway nothing: only a number is a
//! known id, and `root` is taken for uid 0.

/// What a user specification says about the process's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct User {
    /// The uid, when the specification fixes it.
    pub(crate) uid: Option<i64>,
    /// The gid, when the specification fixes it.
    pub(crate) gid: Option<i64>,
}

/// The ids runc accepts (`minID` to `maxID`).
const MAX_ID: i64 = i32::MAX as i64;

/// Reads `user[:group]`.
pub(crate) fn parse(spec: &str) -> User {
    let mut parts = spec.split(':');
    let user = parts.next().unwrap_or_default();
    let group = parts.next().unwrap_or_default();
    User {
        uid: if user == "root" { Some(0) } else { id(user) },
        gid: if group == "root" { Some(0) } else { id(group) },
    }
}

/// A number as `strconv.Atoi` reads it, within runc's range; `None` for a
/// name (or a number runc would refuse, so nothing runs).
fn id(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i64 = digits.parse().ok()?;
    let value = if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    };
    (0..=MAX_ID).contains(&value).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_go_reads_them() {
        for (spec, uid, gid) in [
            ("0", Some(0), None),
            ("-0", Some(0), None),
            ("+0", Some(0), None),
            ("-0:0", Some(0), Some(0)),
            ("000:+0", Some(0), Some(0)),
            ("1000:1000:ignored", Some(1000), Some(1000)),
            ("root", Some(0), None),
            ("0:root", Some(0), Some(0)),
            ("nginx", None, None),
            ("nginx:-0", None, Some(0)),
            (":0", None, Some(0)),
            ("-1", None, None),
            ("2147483648", None, None),
            (" 0", None, None),
            ("0x0", None, None),
            ("", None, None),
        ] {
            assert_eq!(parse(spec), User { uid, gid }, "{spec:?}");
        }
    }
}
