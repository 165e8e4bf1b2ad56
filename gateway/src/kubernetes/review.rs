//! AdmissionReview (`admission.k8s.io/v1` and `v1beta1`) to [`Request`],
//! and a [`Decision`] back to an AdmissionReview response.
//!
//! The object and old object are kept as the JSON text the API server sent
//! (borrowed, then copied once into the request); the workload is
//! normalized from that same text, so the policy's raw object and its
//! workload can never disagree.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::admission::{
    self, Decision, GroupVersionKind, NormalizeError, Operation, Origin, Outcome, Request, UserInfo,
};

/// The AdmissionReview API versions the webhook speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVersion {
    /// `admission.k8s.io/v1`.
    V1,
    /// `admission.k8s.io/v1beta1`.
    V1beta1,
}

impl ReviewVersion {
    /// The `apiVersion` string.
    pub fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => "admission.k8s.io/v1",
            ReviewVersion::V1beta1 => "admission.k8s.io/v1beta1",
        }
    }
}

/// A parsed AdmissionReview.
#[derive(Debug)]
pub struct Review {
    /// The version to answer in.
    pub version: ReviewVersion,
    /// The request, normalized.
    pub request: Request,
}

/// Why a body is not a usable AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or not shaped like an AdmissionReview.
    #[error("not an AdmissionReview: {0}")]
    Malformed(String),
    /// An AdmissionReview of a version this gateway does not speak.
    #[error(
        "unsupported AdmissionReview apiVersion `{0}` (expected admission.k8s.io/v1 or v1beta1)"
    )]
    Version(String),
    /// A required field is absent.
    #[error("AdmissionReview has no {0}")]
    Missing(&'static str),
    /// The operation is not one Kubernetes defines.
    #[error("unknown operation `{0}` (expected CREATE, UPDATE, DELETE or CONNECT)")]
    Operation(String),
    /// The object cannot be read.
    #[error("request.object: {0}")]
    Object(#[source] NormalizeError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionReview<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<AdmissionRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionRequest<'a> {
    uid: Option<String>,
    kind: Option<GroupVersionKindJson>,
    resource: Option<GroupVersionResourceJson>,
    sub_resource: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    operation: Option<String>,
    user_info: Option<UserInfoJson>,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
    #[serde(borrow)]
    old_object: Option<&'a RawValue>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
struct GroupVersionKindJson {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    kind: String,
}

#[derive(Deserialize)]
struct GroupVersionResourceJson {
    #[serde(default)]
    resource: String,
}

#[derive(Deserialize)]
struct UserInfoJson {
    #[serde(default)]
    username: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

/// Parses an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<Review, ReviewError> {
    let review: AdmissionReview<'_> = {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            ReviewError::Malformed(format!("{path}: {}", error.into_inner()))
        })?
    };
    if review.kind.as_deref() != Some("AdmissionReview") {
        return Err(ReviewError::Malformed(format!(
            "kind is {}, expected AdmissionReview",
            review
                .kind
                .as_deref()
                .map_or("missing".to_owned(), |kind| format!("`{kind}`"))
        )));
    }
    let version = match review.api_version.as_deref() {
        Some("admission.k8s.io/v1") => ReviewVersion::V1,
        Some("admission.k8s.io/v1beta1") => ReviewVersion::V1beta1,
        other => return Err(ReviewError::Version(other.unwrap_or_default().to_owned())),
    };
    let request = review.request.ok_or(ReviewError::Missing("request"))?;
    let uid = request
        .uid
        .filter(|uid| !uid.is_empty())
        .ok_or(ReviewError::Missing("request.uid"))?;
    let kind = request.kind.ok_or(ReviewError::Missing("request.kind"))?;
    let operation = request
        .operation
        .ok_or(ReviewError::Missing("request.operation"))?;
    let operation = match operation.as_str() {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        "CONNECT" => Operation::Connect,
        _ => return Err(ReviewError::Operation(operation)),
    };
    let user = request
        .user_info
        .map_or_else(UserInfo::default, |user| UserInfo {
            name: user.username,
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
        });
    let json = |raw: Option<&RawValue>| {
        raw.map(RawValue::get)
            .filter(|json| *json != "null")
            .map(str::to_owned)
    };
    let mut request = Request {
        uid,
        origin: Origin::Kubernetes,
        operation,
        resource: request
            .resource
            .map(|resource| resource.resource)
            .unwrap_or_default(),
        kind: GroupVersionKind {
            group: kind.group,
            version: kind.version,
            kind: kind.kind,
        },
        sub_resource: request.sub_resource.filter(|sub| !sub.is_empty()),
        namespace: request.namespace.filter(|namespace| !namespace.is_empty()),
        name: request.name.filter(|name| !name.is_empty()),
        user,
        dry_run: request.dry_run.unwrap_or(false),
        object: json(request.object),
        old_object: json(request.old_object),
        workload: None,
        images: Vec::new(),
    };
    admission::kubernetes::normalize_request(&mut request).map_err(ReviewError::Object)?;
    Ok(Review { version, request })
}

/// Longest audit annotation key the API server accepts (a label name).
const MAX_ANNOTATION_KEY: usize = 63;

/// The `metav1.StatusReason` the API server and kubectl show for an HTTP
/// status (`Error from server (Forbidden): …`), as the apiserver's own
/// `NewForbidden` and friends set it; empty for a code with no reason.
fn status_reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

/// The AdmissionReview answering the request of `uid`: the uid echoed, the
/// verdict, every reason of a denial in `status.message`, the warnings, the
/// audit annotations of each policy (as `<policy>.<key>`, and `dry-run`
/// for a dry run), and — only when `patch` is true, for the mutating
/// endpoint — the merged JSON Patch.
pub fn response(
    version: ReviewVersion,
    uid: &str,
    dry_run: bool,
    decision: &Decision,
    patch: bool,
) -> Value {
    let mut response = Map::new();
    response.insert("uid".into(), json!(uid));
    response.insert("allowed".into(), json!(decision.allowed));
    if !decision.allowed {
        response.insert(
            "status".into(),
            json!({
                "status": "Failure",
                "code": decision.code,
                "reason": status_reason(decision.code),
                "message": decision.message.as_deref().unwrap_or("denied"),
            }),
        );
    }
    if !decision.warnings.is_empty() {
        response.insert("warnings".into(), json!(decision.warnings));
    }
    if let Some(operations) = decision.patch.as_ref().filter(|_| patch) {
        let text = serde_json::to_vec(operations).unwrap_or_default();
        response.insert("patchType".into(), json!("JSONPatch"));
        response.insert(
            "patch".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
    let mut annotations = Map::new();
    for policy in &decision.policies {
        if let Outcome::Verdict(verdict) = &policy.outcome {
            for (key, value) in &verdict.annotations {
                annotations.insert(annotation_key(&policy.name, key), json!(value));
            }
        }
    }
    if dry_run {
        annotations.insert("dry-run".into(), json!("true"));
    }
    if !annotations.is_empty() {
        response.insert("auditAnnotations".into(), Value::Object(annotations));
    }
    json!({
        "apiVersion": version.api_version(),
        "kind": "AdmissionReview",
        "response": response,
    })
}

/// `<policy>.<key>` as a valid audit annotation key: the API server adds
/// the webhook's name as the prefix and refuses keys that are not label
/// names (alphanumerics, `-`, `_`, `.`, at most 63, alphanumeric at both
/// ends).
fn annotation_key(policy: &str, key: &str) -> String {
    let mut name: String = format!("{policy}.{key}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_ANNOTATION_KEY)
        .collect();
    while name.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        name.pop();
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(request: serde_json::Value) -> Vec<u8> {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_pod_creation_is_read_and_normalized() {
        let body = review(serde_json::json!({
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "name": "web", "operation": "CREATE",
            "userInfo": {"username": "alice", "groups": ["dev"]},
            "object": {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
            "oldObject": null,
            "dryRun": true
        }));
        let review = parse(&body).expect("valid");
        assert_eq!(review.version, ReviewVersion::V1);
        let request = review.request;
        assert_eq!(request.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(request.operation, Operation::Create);
        assert_eq!(request.resource, "pods");
        assert_eq!(request.user.name, "alice");
        assert!(request.dry_run);
        assert!(request.old_object.is_none());
        assert_eq!(request.images[0].reference, "nginx");
        assert_eq!(request.workload.expect("a pod").containers[0].name, "app");
    }

    #[test]
    fn connect_and_delete_carry_no_workload() {
        let exec = review(serde_json::json!({
            "uid": "1", "kind": {"version": "v1", "kind": "PodExecOptions"}, "subResource": "exec",
            "operation": "CONNECT", "object": {"command": ["sh"]}
        }));
        let request = parse(&exec).expect("valid").request;
        assert_eq!(request.sub_resource.as_deref(), Some("exec"));
        assert!(request.workload.is_none());
        let delete = review(serde_json::json!({
            "uid": "2", "kind": {"version": "v1", "kind": "Pod"}, "operation": "DELETE",
            "oldObject": {"spec": {"containers": [{"name": "a", "image": "b"}]}}
        }));
        assert!(parse(&delete).expect("valid").request.workload.is_none());
    }

    #[test]
    fn malformed_reviews_are_rejected_with_the_reason() {
        let cases: [(&[u8], &str); 7] = [
            (b"not json", "not an AdmissionReview"),
            (
                br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
                "no request",
            ),
            (
                &review(serde_json::json!({"kind": {"kind": "Pod"}, "operation": "CREATE"})),
                "no request.uid",
            ),
            (
                &review(
                    serde_json::json!({"uid": "1", "kind": {"kind": "Pod"}, "operation": "PATCH"}),
                ),
                "unknown operation",
            ),
            (
                br#"{"apiVersion": "v1", "kind": "AdmissionReview", "request": {}}"#,
                "unsupported",
            ),
            (
                br#"{"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}"#,
                "expected AdmissionReview",
            ),
            (
                &review(
                    serde_json::json!({"uid": "1", "kind": {"kind": "Pod"}, "operation": "CREATE",
                                           "object": {"spec": {"containers": "nginx"}}}),
                ),
                "request.object: spec.containers: invalid type",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(body).expect_err("malformed").to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
