//! Verification around a decision, the same for both front doors: the
//! request's images are verified before any policy sees it (the verdicts go
//! to the policies), and once the policies have had their say, the images of
//! what would actually run — the object with the policies' patches — must be
//! verified too, and are pinned to their verified digests with JSON Patch
//! operations appended to the decision's patch.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use serde_json::Value;

use super::{ImageVerdict, Verifier};
use crate::admission::patch::PatchLimits;
use crate::admission::{self, ContainerKind, Decision, Operation, Origin, Request};

/// Whether `request` asks to run images that verification governs: a
/// Kubernetes workload being created or changed, a Docker container or
/// service being created or updated, or an image pull.
pub fn governs(request: &Request) -> bool {
    match request.origin {
        Origin::Kubernetes => {
            request.workload.is_some()
                && matches!(request.operation, Operation::Create | Operation::Update)
        }
        Origin::Docker => matches!(
            request.kind.kind.as_str(),
            "Container" | "Service" | "Image"
        ),
    }
}

/// Where each container's image is written in the request's object, as
/// JSON Pointers with the object's own spelling of the keys, and the image.
pub fn image_fields(request: &Request) -> Vec<(String, String)> {
    let Some(workload) = &request.workload else {
        return Vec::new();
    };
    match request.origin {
        Origin::Kubernetes => {
            let template = workload.template_path.as_deref().unwrap_or_default();
            workload
                .containers
                .iter()
                .map(|container| {
                    let list = match container.kind {
                        ContainerKind::Init => "initContainers",
                        ContainerKind::Regular => "containers",
                        ContainerKind::Ephemeral => "ephemeralContainers",
                    };
                    (
                        format!("{template}/spec/{list}/{}/image", container.index),
                        container.image.clone(),
                    )
                })
                .collect()
        }
        Origin::Docker => {
            // The engine reads its JSON keys case-insensitively.
            let path: &[&str] = match request.kind.kind.as_str() {
                "Container" => &["Image"],
                "Service" => &["TaskTemplate", "ContainerSpec", "Image"],
                _ => return Vec::new(),
            };
            let object = request
                .object
                .as_deref()
                .and_then(|text| serde_json::from_str::<Value>(text).ok());
            let mut pointer = String::new();
            let mut at = object.as_ref();
            for key in path {
                let found = at
                    .and_then(Value::as_object)
                    .and_then(|map| map.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)));
                let Some((name, value)) = found else {
                    return Vec::new();
                };
                pointer.push('/');
                pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                at = Some(value);
            }
            match at.and_then(Value::as_str) {
                Some(image) => vec![(pointer, image.to_owned())],
                None => Vec::new(),
            }
        }
    }
}

impl Verifier {
    /// Verifies each image of `request` (each distinct reference once,
    /// concurrently) and hands the verdicts to the policies through the
    /// request.
    pub async fn verify_request(&self, request: &mut Request) -> Vec<ImageVerdict> {
        let references: Vec<String> = request
            .images
            .iter()
            .map(|image| image.reference.clone())
            .filter(|reference| !reference.is_empty())
            .collect();
        let verdicts = join_all(references.iter().map(|reference| self.verify(reference))).await;
        for image in &mut request.images {
            image.verification = verdicts
                .iter()
                .find(|verdict| verdict.reference == image.reference)
                .map(ImageVerdict::to_wit);
        }
        verdicts
    }

    /// Decides `request` with `decide`, verification around it (see the
    /// module notes). With `pin`, verified images are pinned in the
    /// decision's patch. Verification stops at `deadline`, and what it has
    /// not verified by then is refused. The decision's patch is applied
    /// within `limits` to see what would run.
    pub async fn admit<F, Fut, E>(
        &self,
        mut request: Request,
        pin: bool,
        deadline: Option<Instant>,
        limits: PatchLimits,
        decide: F,
    ) -> Result<(Decision, Vec<ImageVerdict>), E>
    where
        F: FnOnce(Arc<Request>) -> Fut,
        Fut: Future<Output = Result<Decision, E>>,
    {
        if !governs(&request) {
            return decide(Arc::new(request))
                .await
                .map(|decision| (decision, Vec::new()));
        }
        let mut verdicts = within(deadline, self.verify_request(&mut request))
            .await
            .unwrap_or_default();
        let judged = Arc::new(request);
        let mut decision = decide(judged.clone()).await?;

        // What would run: the object as the policies left it.
        let last = match decision.patch.as_ref().filter(|_| decision.allowed) {
            Some(patch) => match admission::patched(&judged, patch, limits) {
                Ok(last) => Cow::Owned(last),
                Err(reason) => {
                    refuse(
                        &mut decision,
                        vec![format!("the policies' patch cannot be checked: {reason}")],
                    );
                    return Ok((decision, verdicts));
                }
            },
            None => Cow::Borrowed(&*judged),
        };
        let fields = image_fields(&last);
        let mut wanted: Vec<String> = last
            .images
            .iter()
            .map(|image| image.reference.clone())
            .collect();
        wanted.extend(fields.iter().map(|(_, image)| image.clone()));
        wanted.retain(|reference| !reference.is_empty());
        wanted.sort();
        wanted.dedup();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|reference| {
                !verdicts
                    .iter()
                    .any(|verdict| &verdict.reference == *reference)
            })
            .collect();
        if !missing.is_empty() {
            let more = within(
                deadline,
                join_all(missing.iter().map(|reference| self.verify(reference))),
            )
            .await
            .unwrap_or_default();
            verdicts.extend(more);
        }
        let mut refusals = Vec::new();
        for reference in &wanted {
            match verdicts
                .iter()
                .find(|verdict| &verdict.reference == reference)
            {
                Some(verdict) if verdict.allowed => {}
                Some(verdict) => refusals.push(format!(
                    "image {reference}: {}",
                    verdict.reason.as_deref().unwrap_or("not verified")
                )),
                None => refusals.push(format!(
                    "image {reference}: verification did not finish in time"
                )),
            }
        }
        if !refusals.is_empty() {
            refuse(&mut decision, refusals);
            return Ok((decision, verdicts));
        }
        if pin && decision.allowed {
            let pins: Result<Vec<json_patch::PatchOperation>, String> = fields
                .iter()
                .filter_map(|(pointer, image)| {
                    let pinned = verdicts
                        .iter()
                        .find(|verdict| &verdict.reference == image)?
                        .pinned()?;
                    (pinned != *image).then(|| {
                        serde_json::from_value(serde_json::json!(
                            {"op": "replace", "path": pointer, "value": pinned}
                        ))
                        .map_err(|error| {
                            format!("image {image} cannot be pinned at {pointer}: {error}")
                        })
                    })
                })
                .collect();
            match pins {
                // Unpinned, a verified tag could move before the image is
                // pulled: refuse rather than let that through.
                Err(reason) => refuse(&mut decision, vec![reason]),
                Ok(operations) if operations.is_empty() => {}
                Ok(operations) => decision
                    .patch
                    .get_or_insert_with(|| json_patch::Patch(Vec::new()))
                    .0
                    .extend(operations),
            }
        }
        Ok((decision, verdicts))
    }
}

/// `future`'s output, unless `deadline` comes first.
async fn within<T>(deadline: Option<Instant>, future: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), future).await.ok(),
        None => Some(future.await),
    }
}

/// Turns `decision` into a denial that lists `reasons` first.
fn refuse(decision: &mut Decision, reasons: Vec<String>) {
    let mut lines = reasons;
    if !decision.allowed
        && let Some(message) = decision.message.take()
    {
        lines.push(message);
    }
    decision.allowed = false;
    decision.code = 403;
    decision.patch = None;
    decision.message = Some(lines.join("\n"));
}

impl ImageVerdict {
    /// The verdict as policies see it.
    pub fn to_wit(&self) -> admission::Verification {
        admission::Verification {
            digest: self.digest.clone().unwrap_or_default(),
            verified: self.verified,
            rule: self.rule.clone(),
            authority: self.authority.clone(),
            signer: self.signer.clone(),
            message: self.reason.clone(),
            attestations: self
                .attestations
                .iter()
                .map(|attestation| admission::Attestation {
                    predicate_type: attestation.predicate_type.clone(),
                    predicate: attestation.predicate.to_string(),
                    signer: attestation.signer.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(pointer, image)| ((*pointer).to_owned(), (*image).to_owned()))
            .collect()
    }

    #[test]
    fn docker_images_are_found_as_the_body_spells_them() {
        let engine = admission::docker::Engine::assumed();
        let reading = admission::docker::Reading {
            engine: &engine,
            version: Some((1, 41)),
            accept: admission::docker::fields::Accept::All,
        };
        let (create, _) = admission::docker::container_create(
            r#"{"image": "busybox:1", "HostConfig": {}}"#,
            None,
            &reading,
        )
        .expect("a container");
        assert!(governs(&create));
        assert_eq!(image_fields(&create), owned(&[("/image", "busybox:1")]));
        let service = admission::docker::service(
            r#"{"taskTemplate": {"ContainerSpec": {"IMAGE": "nginx"}}}"#,
            Operation::Create,
            None,
            &reading,
        )
        .expect("a service");
        assert_eq!(
            image_fields(&service),
            owned(&[("/taskTemplate/ContainerSpec/IMAGE", "nginx")])
        );
        let pull = admission::docker::image_pull("nginx:1".into(), &reading);
        assert!(governs(&pull), "pulls are verified");
        assert!(image_fields(&pull).is_empty(), "and not rewritten");
    }

    #[test]
    fn kubernetes_images_are_found_in_every_container_list() {
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u", "operation": "CREATE",
                "kind": {"group": "batch", "version": "v1", "kind": "CronJob"},
                "resource": {"group": "batch", "version": "v1", "resource": "cronjobs"},
                "userInfo": {"username": "a"},
                "object": {"spec": {"jobTemplate": {"spec": {"template": {"spec": {
                    "initContainers": [{"name": "i", "image": "init:1"}],
                    "containers": [{"name": "a", "image": "app:1"}, {"name": "b", "image": "app:1"}]
                }}}}}}
            }
        });
        let request = crate::kubernetes::review::parse(review.to_string().as_bytes())
            .expect("a review")
            .request;
        assert!(governs(&request));
        let template = "/spec/jobTemplate/spec/template/spec";
        assert_eq!(
            image_fields(&request),
            [
                (
                    format!("{template}/initContainers/0/image"),
                    "init:1".to_owned()
                ),
                (format!("{template}/containers/0/image"), "app:1".to_owned()),
                (format!("{template}/containers/1/image"), "app:1".to_owned()),
            ]
        );
    }
}
