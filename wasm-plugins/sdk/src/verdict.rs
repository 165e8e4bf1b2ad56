//! Building a policy's verdict.

use crate::__private::WitVerdict;
use crate::Patch;

/// A policy's answer to one request.
///
/// ```
/// use portcullis_policy_sdk::{Patch, Verdict};
///
/// let verdict = Verdict::allow()
///     .warn("image uses the latest tag")
///     .patch(Patch::new().add("/metadata/labels/checked", "true"))
///     .annotate("checked-by", "example");
/// assert!(verdict.is_allowed());
///
/// let denial = Verdict::deny("privileged containers are not allowed").code(403);
/// assert!(!denial.is_allowed());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    allowed: bool,
    message: Option<String>,
    code: Option<u16>,
    warnings: Vec<String>,
    patch: Patch,
    annotations: Vec<(String, String)>,
}

impl Verdict {
    /// Lets the request through.
    pub fn allow() -> Self {
        Self {
            allowed: true,
            message: None,
            code: None,
            warnings: Vec::new(),
            patch: Patch::new(),
            annotations: Vec::new(),
        }
    }

    /// Stops the request, telling the person what to change.
    pub fn deny(message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            message: Some(message.into()),
            ..Self::allow()
        }
    }

    /// Sets the HTTP status code reported with a denial (403 by default).
    pub fn code(mut self, code: u16) -> Self {
        self.code = Some(code);
        self
    }

    /// Adds a warning, shown to the client whatever the verdict.
    pub fn warn(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Adds changes to the object; they apply only if the request is allowed.
    pub fn patch(mut self, patch: Patch) -> Self {
        self.patch = std::mem::take(&mut self.patch).extend(patch);
        self
    }

    /// Records a key/value pair in the audit log.
    pub fn annotate(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }

    /// Whether the request is allowed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The message, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl From<Verdict> for WitVerdict {
    fn from(verdict: Verdict) -> Self {
        WitVerdict {
            allowed: verdict.allowed,
            message: verdict.message,
            code: verdict.code,
            warnings: verdict.warnings,
            patch: (!verdict.patch.is_empty()).then(|| verdict.patch.to_json()),
            annotations: verdict.annotations,
        }
    }
}
