//! What the proxy asks the engine before judging: what engine it is, and
//! what the objects a request names really are.
//!
//! A body names other objects — a container to borrow a namespace or
//! volumes from, or to exec into; a named volume; a network — whose
//! privileges are the engine's to know. Each is looked up with the
//! proxy's own connection and folded into the workload, so a policy
//! judges what the container would get: a borrowed host PID namespace, a
//! volume created earlier with `o=bind,device=/`, a network that is the
//! host's under another name. What cannot be looked up is judged the safe
//! way (an unknown user, the host's network).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::{HeaderName, HeaderValue};

use super::upstream::Upstream;
use crate::admission::docker::{
    Engine, ExecTarget, Lookups, engine, network_reaches_host, volumes,
};
use crate::admission::{self, BorrowedResource, Request};

/// How long the engine's facts are trusted before they are asked again:
/// an engine upgraded or reconfigured under a running proxy is seen
/// within this.
const FACTS_TTL: Duration = Duration::from_secs(10);

/// The engine, as far as the proxy has asked it.
pub(crate) struct EngineView {
    upstream: Upstream,
    /// Its facts and when they were read; `None` until they could be.
    facts: std::sync::Mutex<Option<(Arc<Engine>, Instant)>>,
}

impl EngineView {
    pub(crate) fn new(upstream: Upstream) -> Self {
        Self {
            upstream,
            facts: std::sync::Mutex::new(None),
        }
    }

    /// The connection to the engine.
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Forgets the facts, so the next request asks again (the engine went
    /// away, and may come back as another).
    pub(crate) fn forget(&self) {
        if let Ok(mut facts) = self.facts.lock() {
            *facts = None;
        }
    }

    /// The engine's facts, read from `/version` and `/info` when they are
    /// missing or stale.
    pub(crate) async fn facts(&self) -> Result<Arc<Engine>, String> {
        if let Ok(facts) = self.facts.lock()
            && let Some((engine, read)) = facts.as_ref()
            && read.elapsed() < FACTS_TTL
        {
            return Ok(engine.clone());
        }
        let ask = |path: &'static str| async move {
            match self.upstream.get_json(path, &[]).await {
                Ok(Some(answer)) => Ok(answer),
                Ok(None) => Err(format!("the engine has no {path}")),
                Err(error) => Err(format!(
                    "cannot ask the Docker engine at {} what it is: {error}",
                    self.upstream.endpoint()
                )),
            }
        };
        let (version, info) = tokio::try_join!(ask("/version"), ask("/info"))?;
        let engine = Arc::new(Engine::from_answers(&version, &info));
        engine::set_current(Engine::clone(&engine));
        if let Ok(mut facts) = self.facts.lock() {
            *facts = Some((engine.clone(), Instant::now()));
        }
        Ok(engine)
    }

    async fn get(&self, path: &str) -> Option<serde_json::Value> {
        self.upstream.get_json(path, &[]).await.ok().flatten()
    }

    /// The container an exec enters.
    pub(crate) async fn exec_target(&self, name: &str) -> ExecTarget {
        let inspected = self
            .get(&format!("/containers/{}/json", encode_segment(name)))
            .await;
        let text = |pointer: &str| {
            inspected
                .as_ref()
                .and_then(|inspected| inspected.pointer(pointer))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        ExecTarget {
            name: name.to_owned(),
            image: text("/Config/Image").unwrap_or_default(),
            user: inspected
                .as_ref()
                .map(|_| text("/Config/User").unwrap_or_default()),
        }
    }

    /// A network template's driver and options (`ConfigFrom`).
    pub(crate) async fn network_template(
        &self,
        name: &str,
    ) -> Option<(String, Vec<(String, String)>)> {
        let network = self
            .get(&format!("/networks/{}", encode_segment(name)))
            .await?;
        Some(network_facts(&network))
    }

    /// The privileges the engine computes for a plugin, as `GET
    /// /plugins/privileges` gives them, asked with the client's registry
    /// credentials.
    pub(crate) async fn plugin_privileges(
        &self,
        remote: &str,
        auth: Option<&HeaderValue>,
    ) -> Result<serde_json::Value, String> {
        let path = format!(
            "/plugins/privileges?remote={}",
            form_urlencoded::byte_serialize(remote.as_bytes()).collect::<String>()
        );
        let headers: Vec<(HeaderName, HeaderValue)> = auth
            .map(|auth| (HeaderName::from_static("x-registry-auth"), auth.clone()))
            .into_iter()
            .collect();
        match self.upstream.get_json(&path, &headers).await {
            Ok(Some(privileges)) => Ok(privileges),
            Ok(None) => Err(format!("the engine finds no plugin {remote}")),
            Err(error) => Err(format!(
                "cannot ask the engine what plugin {remote} needs: {error}"
            )),
        }
    }

    /// Folds into the request what the objects it names really are: the
    /// privileges of borrowed containers, named volumes as the engine has
    /// them, networks that are the host's, and the real targets of host
    /// paths.
    pub(crate) async fn enrich(&self, request: &mut Request, lookups: &Lookups, engine: &Engine) {
        let Some(workload) = request.workload.as_mut() else {
            return;
        };
        let borrowed = workload.borrowed.clone();
        for borrowed in borrowed {
            let path = format!("/containers/{}/json", encode_segment(&borrowed.container));
            let Some(inspected) = self.get(&path).await else {
                continue;
            };
            let reading = admission::docker::Reading {
                engine,
                version: None,
                accept: admission::docker::fields::Accept::All,
            };
            let Ok(other) = admission::docker::normalize(
                &container_body(&inspected).to_string(),
                Some(&borrowed.container),
                &reading,
            ) else {
                continue;
            };
            let other = other.workload;
            match borrowed.resource {
                BorrowedResource::Network => workload.host_network |= other.host_network,
                BorrowedResource::Pid => workload.host_pid |= other.host_pid,
                BorrowedResource::Ipc => workload.host_ipc |= other.host_ipc,
                BorrowedResource::Volumes => {
                    // The borrowed container's volumes become this one's.
                    let mounts: Vec<_> = other
                        .containers
                        .iter()
                        .flat_map(|c| c.volume_mounts.clone())
                        .collect();
                    workload.volumes.extend(other.volumes);
                    if let Some(target) = workload.containers.first_mut() {
                        target.volume_mounts.extend(mounts);
                    }
                }
            }
        }
        for named in &lookups.volumes {
            let path = format!("/volumes/{}", encode_segment(&named.name));
            if let Some(existing) = self.get(&path).await
                && let Some(volume) = workload.volumes.get_mut(named.index)
            {
                let (driver, options) = volume_facts(&existing);
                *volume = volumes::volume(&named.name, &driver, &options);
            }
        }
        for network in &lookups.networks {
            let path = format!("/networks/{}", encode_segment(network));
            // A network the engine does not have fails the request there; a
            // network the proxy cannot look up is judged as the host's.
            let reaches_host = match self.upstream.get_json(&path, &[]).await {
                Ok(Some(found)) => {
                    let (driver, options) = network_facts(&found);
                    network_reaches_host(&driver, &options)
                }
                Ok(None) => false,
                Err(_) => true,
            };
            workload.host_network |= reaches_host;
        }
        if self.upstream.is_local() {
            for volume in &mut workload.volumes {
                if let Some(host_path) = volume.host_path.as_mut()
                    && host_path.starts_with('/')
                    && let Ok(real) = std::fs::canonicalize(&*host_path)
                {
                    // Judge where the engine will mount from, not the
                    // symlink the client named.
                    *host_path = real.to_string_lossy().into_owned();
                }
            }
        }
        request.images = admission::images(workload);
    }
}

/// A volume's driver and options, from `GET /volumes/{name}`.
fn volume_facts(volume: &serde_json::Value) -> (String, Vec<(String, String)>) {
    (
        string_at(volume, "Driver"),
        string_map(volume.get("Options")),
    )
}

/// A network's driver and options, from `GET /networks/{id}`.
fn network_facts(network: &serde_json::Value) -> (String, Vec<(String, String)>) {
    (
        string_at(network, "Driver"),
        string_map(network.get("Options")),
    )
}

fn string_at(value: &serde_json::Value, key: &str) -> String {
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn string_map(value: Option<&serde_json::Value>) -> Vec<(String, String)> {
    value
        .and_then(serde_json::Value::as_object)
        .map(|map| {
            map.iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// A container's inspect output as a create body, so the create normalizer
/// reads it: the configured user and image, and the host configuration.
fn container_body(inspected: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "Image": inspected.pointer("/Config/Image"),
        "User": inspected.pointer("/Config/User"),
        "HostConfig": inspected.get("HostConfig"),
    })
}

/// A name as one path segment.
pub(crate) fn encode_segment(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
