//! Reads a request file for `portcullis eval`: an AdmissionReview, a bare
//! Kubernetes manifest (YAML or JSON, judged as a CREATE) or a Docker
//! container-create body.

use std::path::Path;

use serde_json::Value;

use crate::admission::{
    self, GroupVersionKind, NormalizeError, Operation, Origin, Request, UserInfo,
};
use crate::kubernetes::review::{self, ReviewError};

/// Largest request file accepted (the API server's own limit is 3 MiB).
const MAX_INPUT: u64 = 8 << 20;

/// Why a request file cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    /// The file cannot be read.
    #[error("cannot read the file")]
    Read(#[source] std::io::Error),
    /// The file is too large.
    #[error("the file is larger than {} MiB", MAX_INPUT >> 20)]
    TooLarge,
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// Not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// Nothing in the file.
    #[error("the file is empty")]
    Empty,
    /// More than one YAML document.
    #[error("the file holds {0} YAML documents; put each request in a file of its own")]
    Documents(usize),
    /// Neither a review, a manifest nor a Docker body.
    #[error(
        "cannot tell what this is: expected an AdmissionReview, a Kubernetes manifest (with apiVersion and kind) \
         or a Docker container-create body (use --docker to say so)"
    )]
    Unrecognised,
    /// A manifest without the fields that identify it.
    #[error("Kubernetes manifest: {0}")]
    Manifest(String),
    /// An AdmissionReview that cannot be used.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// An object of the wrong shape.
    #[error(transparent)]
    Object(#[from] NormalizeError),
}

/// Reads one request file; `docker` forces a container-create body.
pub(crate) fn read(path: &Path, docker: bool) -> Result<Request, InputError> {
    let bytes = read_bounded(path)?;
    if docker {
        return Ok(docker_request(&bytes, path)?);
    }
    let (value, json) = parse(&bytes)?;
    let Value::Object(fields) = &value else {
        return Err(InputError::Unrecognised);
    };
    match (
        fields.get("kind").and_then(Value::as_str),
        fields.get("apiVersion"),
    ) {
        // A review in JSON is read from its own bytes, as the webhook reads
        // it; one in YAML is converted first.
        (Some("AdmissionReview"), _) if json => Ok(review::parse(&bytes)?.request),
        (Some("AdmissionReview"), _) => Ok(review::parse(value.to_string().as_bytes())?.request),
        (Some(_), Some(_)) => manifest_request(value),
        _ if looks_like_docker(fields) => Ok(docker_request(&bytes, path)?),
        _ => Err(InputError::Unrecognised),
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, InputError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(InputError::Read)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::Read)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(InputError::TooLarge);
    }
    Ok(bytes)
}

/// JSON when it starts like JSON (so errors speak of JSON), YAML otherwise;
/// also says which it was.
fn parse(bytes: &[u8]) -> Result<(Value, bool), InputError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|error| InputError::Yaml(format!("not UTF-8: {error}")))?;
    if text.trim_start().starts_with(['{', '[']) {
        let value =
            serde_json::from_str(text).map_err(|error| InputError::Json(error.to_string()))?;
        Ok((value, true))
    } else {
        let mut documents: Vec<Value> = serde_saphyr::from_str_multiple(text)
            .map_err(|error| InputError::Yaml(crate::config::yaml_message(&error)))?;
        match documents.len() {
            1 => Ok((documents.remove(0), false)),
            0 => Err(InputError::Empty),
            count => Err(InputError::Documents(count)),
        }
    }
}

/// A container-create body has the engine's capitalised fields and none of
/// Kubernetes' identifying ones.
fn looks_like_docker(fields: &serde_json::Map<String, Value>) -> bool {
    ["Image", "HostConfig", "Cmd", "Entrypoint"]
        .iter()
        .any(|key| fields.keys().any(|field| field.eq_ignore_ascii_case(key)))
}

fn docker_request(bytes: &[u8], path: &Path) -> Result<Request, NormalizeError> {
    let body = std::str::from_utf8(bytes)
        .map_err(|error| NormalizeError::new("", format!("not UTF-8: {error}")))?;
    // The container's name is a query parameter of the real API; use the
    // file's stem so reasons name something recognisable.
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned());
    // No engine to ask: read as a current engine with its defaults would,
    // every unjudged field refused (an `eval` has no proxy configuration
    // to accept one).
    let engine = admission::docker::Engine::assumed();
    let reading = admission::docker::Reading {
        engine: &engine,
        version: None,
        accept: admission::docker::fields::Accept::Listed(&[]),
    };
    admission::docker::container_create(body, name, &reading).map(|(request, _)| request)
}

fn manifest_request(object: Value) -> Result<Request, InputError> {
    let field = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let api_version = field("/apiVersion")
        .ok_or_else(|| InputError::Manifest("apiVersion is not a string".into()))?;
    let kind = field("/kind").ok_or_else(|| InputError::Manifest("kind is not a string".into()))?;
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), api_version),
    };
    let mut request = Request {
        uid: "portcullis-eval".into(),
        origin: Origin::Kubernetes,
        operation: Operation::Create,
        resource: admission::kubernetes::resource_for(&kind),
        kind: GroupVersionKind {
            group,
            version,
            kind,
        },
        sub_resource: None,
        namespace: field("/metadata/namespace"),
        name: field("/metadata/name").or_else(|| field("/metadata/generateName")),
        user: UserInfo::default(),
        dry_run: false,
        object: Some(object.to_string()),
        old_object: None,
        workload: None,
        images: Vec::new(),
    };
    admission::kubernetes::normalize_request(&mut request)?;
    Ok(request)
}
