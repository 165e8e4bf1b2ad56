//! Keeps each cache current: a paginated list, then a watch from the
//! list's resource version, resumed when it ends, and a fresh list when the
//! version has expired (410 Gone) or anything fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use serde_json::Value;

use super::client::{Client, read_bounded, refusal};
use super::{Cache, Object, Objects, Step};

/// Objects per page of a list.
const PAGE: usize = 500;
/// How long the API server keeps one watch open; it then ends it cleanly
/// and the watch resumes from the last version seen.
const WATCH_SECONDS: u64 = 290;
/// Largest page of a list, and largest event of a watch.
const MAX_PAGE_BYTES: usize = 64 << 20;
const MAX_EVENT_BYTES: usize = 16 << 20;
/// Waits between failed attempts, doubling up to the longest.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_LONGEST: Duration = Duration::from_secs(8);

/// Runs the caches' reflectors until `stop` fires (or its sender is dropped).
pub(super) fn run(
    client: Arc<Client>,
    caches: Vec<Arc<Cache>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            for cache in &caches {
                cache.set_step(Step::Lost(format!(
                    "cannot start the cache's runtime: {error}"
                )));
            }
            return;
        }
    };
    runtime.block_on(async move {
        for cache in caches {
            tokio::spawn(reflect(client.clone(), cache));
        }
        let _ = stop.await;
    });
}

async fn reflect(client: Arc<Client>, cache: Arc<Cache>) {
    let mut retry = RETRY_FIRST;
    loop {
        let failure = match list(&client, &cache).await {
            Ok(mut version) => {
                retry = RETRY_FIRST;
                cache.set_step(Step::Current);
                tracing::info!(
                    resource = %cache.resource,
                    objects = cache.len(),
                    "cluster cache listed"
                );
                loop {
                    match watch(&client, &cache, &mut version).await {
                        Ok(Ended::Cleanly) => {}
                        // The list is stale but was right a moment ago:
                        // serve it while listing again.
                        Ok(Ended::Expired) => break None,
                        Err(failure) => break Some(failure),
                    }
                }
            }
            Err(failure) => Some(failure),
        };
        if let Some(failure) = failure {
            cache.set_step(Step::Lost(failure));
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_LONGEST);
        }
    }
}

#[derive(Deserialize)]
struct ListPage {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Value>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
    #[serde(default, rename = "continue")]
    next: Option<String>,
}

/// Lists every object, page by page, into a new map that replaces the old
/// one whole; returns the list's resource version.
async fn list(client: &Client, cache: &Cache) -> Result<String, String> {
    let base = cache.resource.path();
    let mut objects = Objects::new();
    let mut next: Option<String> = None;
    loop {
        let mut path = format!("{base}?limit={PAGE}");
        if let Some(token) = &next {
            path.push_str("&continue=");
            path.extend(form_urlencoded::byte_serialize(token.as_bytes()));
        }
        let response = client.get(&path).await?;
        if response.status() != hyper::StatusCode::OK {
            return Err(refusal(&path, response).await);
        }
        let body = read_bounded(response.into_body(), MAX_PAGE_BYTES)
            .await
            .map_err(|error| format!("reading GET {path}: {error}"))?;
        let page: ListPage = serde_json::from_slice(&body)
            .map_err(|error| format!("GET {path} did not return a list: {error}"))?;
        for item in page.items {
            let (key, object) = cached(item)?;
            objects.insert(key, object);
        }
        if objects.len() > cache.max_objects {
            return Err(format!(
                "it holds more than {} objects (cluster.max_objects)",
                cache.max_objects
            ));
        }
        match page.metadata.next.filter(|token| !token.is_empty()) {
            Some(token) => next = Some(token),
            None => {
                *cache.objects() = objects;
                return Ok(page.metadata.resource_version);
            }
        }
    }
}

/// How a watch ended without failing.
#[derive(Debug)]
enum Ended {
    /// The server closed it (its timeout): resume from the last version.
    Cleanly,
    /// The version is too old to resume from: list again.
    Expired,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: Value,
}

async fn watch(client: &Client, cache: &Cache, version: &mut String) -> Result<Ended, String> {
    let path = format!(
        "{}?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
        cache.resource.path(),
        form_urlencoded::byte_serialize(version.as_bytes()).collect::<String>()
    );
    let response = client.get(&path).await?;
    match response.status() {
        hyper::StatusCode::OK => {}
        hyper::StatusCode::GONE => return Ok(Ended::Expired),
        _ => return Err(refusal(&path, response).await),
    }
    let mut body = response.into_body();
    let mut pending = BytesMut::new();
    loop {
        let frame = match body.frame().await {
            None => return Ok(Ended::Cleanly),
            Some(Err(error)) => {
                return Err(format!("the watch of {} broke: {error}", cache.resource));
            }
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
            let line = pending.split_to(end + 1);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: Event = serde_json::from_slice(&line).map_err(|error| {
                format!(
                    "the watch of {} sent a malformed event: {error}",
                    cache.resource
                )
            })?;
            if let Some(ended) = apply(cache, event, version)? {
                return Ok(ended);
            }
        }
        if pending.len() > MAX_EVENT_BYTES {
            return Err(format!(
                "the watch of {} sent an event over {MAX_EVENT_BYTES} bytes",
                cache.resource
            ));
        }
    }
}

/// Applies one watch event; `Some` when it ends the watch.
fn apply(cache: &Cache, event: Event, version: &mut String) -> Result<Option<Ended>, String> {
    let seen = event.object["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned);
    match event.kind.as_str() {
        "ADDED" | "MODIFIED" => {
            let (key, object) = cached(event.object)?;
            let mut objects = cache.objects();
            objects.insert(key, object);
            if objects.len() > cache.max_objects {
                return Err(format!(
                    "it holds more than {} objects (cluster.max_objects)",
                    cache.max_objects
                ));
            }
        }
        "DELETED" => {
            let (key, _) = cached(event.object)?;
            cache.objects().remove(&key);
        }
        "BOOKMARK" => {}
        "ERROR" => {
            let code = event.object["code"].as_u64();
            if code == Some(410) {
                return Ok(Some(Ended::Expired));
            }
            return Err(format!(
                "the watch of {} failed: {}",
                cache.resource,
                event.object["message"].as_str().unwrap_or("no message")
            ));
        }
        other => {
            return Err(format!(
                "the watch of {} sent an event of unknown type `{other}`",
                cache.resource
            ));
        }
    }
    if let Some(seen) = seen {
        *version = seen;
    }
    Ok(None)
}

/// An object as the cache keeps it: keyed by namespace and name, with its
/// labels parsed and without `metadata.managedFields` (bookkeeping of
/// server-side apply, often larger than the object, that no policy needs).
fn cached(mut object: Value) -> Result<((String, String), Arc<Object>), String> {
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("an object without metadata")?;
    metadata.remove("managedFields");
    let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
    let name = text("name").ok_or("an object without metadata.name")?;
    let namespace = text("namespace").unwrap_or_default();
    let labels: BTreeMap<String, String> = metadata
        .get("labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        (namespace, name),
        Arc::new(Object {
            labels,
            json: object.to_string().into(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::Resource;

    fn cache() -> Cache {
        Cache::new(Resource::parse("v1/configmaps").expect("a resource"), 2)
    }

    fn event(kind: &str, name: &str, version: &str) -> Event {
        Event {
            kind: kind.into(),
            object: json!({"metadata": {"name": name, "namespace": "a", "resourceVersion": version, "labels": {"team": "web"}, "managedFields": [{"manager": "kubectl"}]}}),
        }
    }

    #[test]
    fn watch_events_keep_the_cache_and_its_version_current() {
        let cache = cache();
        let mut version = "1".to_owned();
        assert!(
            apply(&cache, event("ADDED", "one", "2"), &mut version)
                .expect("added")
                .is_none()
        );
        assert!(
            apply(&cache, event("MODIFIED", "one", "3"), &mut version)
                .expect("modified")
                .is_none()
        );
        assert_eq!(version, "3");
        let stored = cache.objects()[&("a".to_owned(), "one".to_owned())].clone();
        assert_eq!(stored.labels["team"], "web");
        assert!(!stored.json.contains("managedFields"), "{}", stored.json);
        assert!(
            apply(&cache, event("DELETED", "one", "4"), &mut version)
                .expect("deleted")
                .is_none()
        );
        assert!(cache.objects().is_empty());
        // A bookmark moves the version only.
        let bookmark = Event {
            kind: "BOOKMARK".into(),
            object: json!({"metadata": {"resourceVersion": "9"}}),
        };
        assert!(
            apply(&cache, bookmark, &mut version)
                .expect("bookmark")
                .is_none()
        );
        assert_eq!(version, "9");
        // An expired version ends the watch for a new list; other errors fail it.
        let gone = Event {
            kind: "ERROR".into(),
            object: json!({"code": 410, "message": "too old resource version"}),
        };
        assert!(matches!(
            apply(&cache, gone, &mut version),
            Ok(Some(Ended::Expired))
        ));
        let other = Event {
            kind: "ERROR".into(),
            object: json!({"code": 500, "message": "boom"}),
        };
        assert!(
            apply(&cache, other, &mut version)
                .expect_err("failed")
                .contains("boom")
        );
    }

    #[test]
    fn a_cache_past_its_bound_fails_rather_than_serve_a_part() {
        let cache = cache();
        let mut version = String::new();
        for name in ["one", "two"] {
            apply(&cache, event("ADDED", name, "1"), &mut version).expect("within the bound");
        }
        let over = apply(&cache, event("ADDED", "three", "2"), &mut version).expect_err("over");
        assert!(over.contains("more than 2 objects"), "{over}");
        let nameless = Event {
            kind: "ADDED".into(),
            object: json!({"metadata": {}}),
        };
        assert!(apply(&cache, nameless, &mut version).is_err());
    }
}
