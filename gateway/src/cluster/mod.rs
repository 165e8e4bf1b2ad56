//! Read access to the cluster for context-aware policies.
//!
//! A policy granted `cluster: [networking.k8s.io/v1/ingresses]` reads those
//! objects through the `cluster` interface of its world. The reads never
//! reach the API server: for every granted resource the gateway keeps a
//! cache, filled by a list and kept current by a watch, on a thread of its
//! own, with its own credentials (a kubeconfig, or the pod's service
//! account). A lookup is served from memory.
//!
//! A cache answers only while it is in step with the API server. Before its
//! first list a lookup waits for it, within the evaluation's deadline;
//! after a watch or list fails (the API server cannot be reached, or
//! refuses), lookups fail at once until a new list succeeds. A failed
//! lookup ends the evaluation as a failure of the policy, never as an empty
//! answer, so a policy cannot mistake "cannot know" for "nothing there".

mod client;
mod reflector;
mod selector;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use serde::Deserialize;
use serde::de::Error as _;

use self::client::Client;
pub use self::client::CredentialsError;
use self::selector::Selector;

/// Objects cached per resource when the configuration does not say.
pub const DEFAULT_MAX_OBJECTS: usize = 100_000;

/// Where context-aware policies read the cluster from: the `cluster`
/// section of the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A kubeconfig file; unset, the pod's service account
    /// (`/var/run/secrets/kubernetes.io/serviceaccount`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (default: its current context).
    #[serde(default)]
    pub context: Option<String>,
    /// Most objects cached for one resource; a resource with more is not
    /// served (its lookups fail) rather than served in part.
    #[serde(default = "default_max_objects")]
    pub max_objects: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            context: None,
            max_objects: DEFAULT_MAX_OBJECTS,
        }
    }
}

fn default_max_objects() -> usize {
    DEFAULT_MAX_OBJECTS
}

/// A resource as RBAC names it, after its API version:
/// `v1/namespaces`, `networking.k8s.io/v1/ingresses`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name.
    pub resource: String,
}

impl Resource {
    /// Parses `[group/]version/resource`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let (group, version, resource) = match parts[..] {
            [version, resource] => ("", version, resource),
            [group, version, resource] => (group, version, resource),
            _ => {
                return Err(format!(
                    "`{text}` is not a resource; write version/resource or group/version/resource (`v1/namespaces`, `networking.k8s.io/v1/ingresses`)"
                ));
            }
        };
        let name = |part: &str, dots: bool| {
            !part.is_empty()
                && part.bytes().all(|byte| {
                    byte.is_ascii_lowercase()
                        || byte.is_ascii_digit()
                        || byte == b'-'
                        || (dots && byte == b'.')
                })
        };
        if !(name(version, false)
            && name(resource, false)
            && (group.is_empty() || name(group, true)))
        {
            return Err(format!(
                "`{text}` is not a resource: group, version and resource are lowercase names"
            ));
        }
        Ok(Self {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        })
    }

    /// The API path that lists it in every namespace.
    fn path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}/{}", self.version, self.resource)
        } else {
            format!("/apis/{}/{}/{}", self.group, self.version, self.resource)
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        write!(f, "{}/{}", self.version, self.resource)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Resource::parse(&String::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

/// Why a policy's read of the cluster failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The policy read a resource it was not granted.
    #[error(
        "policy read `{0}` from the cluster without a grant for it (grants: [cluster: [...]] in its configuration)"
    )]
    NotGranted(String),
    /// The label selector does not parse.
    #[error("{0}")]
    Selector(String),
    /// The cache is not in step with the API server.
    #[error("the cluster cache of {resource} is not in step with the API server: {reason}")]
    Unavailable {
        /// The resource.
        resource: String,
        /// Why.
        reason: String,
    },
}

/// The caches of every resource some policy is granted, and the thread
/// that keeps them current; dropping it stops the thread.
pub struct Cluster {
    caches: HashMap<Resource, Arc<Cache>>,
    server: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("resources", &self.caches.keys().collect::<BTreeSet<_>>())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Reads the credentials and starts listing and watching `resources`.
    pub fn start(
        config: &ClusterConfig,
        resources: impl IntoIterator<Item = Resource>,
    ) -> Result<Self, CredentialsError> {
        let client = Arc::new(Client::new(
            config.kubeconfig.as_deref(),
            config.context.as_deref(),
        )?);
        let caches: HashMap<Resource, Arc<Cache>> = resources
            .into_iter()
            .map(|resource| {
                let cache = Arc::new(Cache::new(resource.clone(), config.max_objects));
                (resource, cache)
            })
            .collect();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let server = client.server();
        let reflected: Vec<Arc<Cache>> = caches.values().cloned().collect();
        std::thread::Builder::new()
            .name("portcullis-cluster".into())
            .spawn(move || reflector::run(client, reflected, stopped))
            .map_err(CredentialsError::Thread)?;
        Ok(Self {
            caches,
            server,
            stop: Some(stop),
        })
    }

    /// The API server read from.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// What a policy granted `resources` may read.
    pub fn access(&self, resources: &[Resource]) -> Access {
        Access {
            caches: resources
                .iter()
                .filter_map(|resource| {
                    let cache = self.caches.get(resource)?;
                    Some((resource.to_string(), cache.clone()))
                })
                .collect(),
        }
    }

    /// Waits until every cache has been listed once, or `deadline`; returns
    /// the resources still not in step, with why.
    pub fn wait_until_listed(&self, deadline: Instant) -> Vec<LookupError> {
        self.caches
            .values()
            .filter_map(|cache| cache.current(deadline).err())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What one policy may read: the caches of its granted resources.
#[derive(Debug, Clone, Default)]
pub struct Access {
    caches: HashMap<String, Arc<Cache>>,
}

impl Access {
    fn cache(&self, resource: &str) -> Result<&Cache, LookupError> {
        self.caches
            .get(resource)
            .map(Arc::as_ref)
            .ok_or_else(|| LookupError::NotGranted(resource.into()))
    }

    /// One object by namespace and name, as JSON text.
    pub fn get(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<Arc<str>>, LookupError> {
        let cache = self.cache(resource)?;
        cache.current(deadline)?;
        let objects = cache
            .objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (namespace.unwrap_or_default().to_owned(), name.to_owned());
        Ok(objects.get(&key).map(|object| object.json.clone()))
    }

    /// The objects of a namespace (or of all), matching `selector`, in
    /// namespace and name order.
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        selector: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<Arc<str>>, LookupError> {
        let cache = self.cache(resource)?;
        let selector = selector
            .map(Selector::parse)
            .transpose()
            .map_err(LookupError::Selector)?;
        cache.current(deadline)?;
        let objects = cache
            .objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let keep = |object: &&Arc<Object>| {
            selector
                .as_ref()
                .is_none_or(|selector| selector.matches(&object.labels))
        };
        let candidates: Box<dyn Iterator<Item = &Arc<Object>>> = match namespace {
            Some(namespace) => Box::new(
                objects
                    .range((namespace.to_owned(), String::new())..)
                    .take_while(move |((other, _), _)| other == namespace)
                    .map(|(_, object)| object),
            ),
            None => Box::new(objects.values()),
        };
        Ok(candidates
            .filter(keep)
            .map(|object| object.json.clone())
            .collect())
    }
}

/// One cached object: its labels, for selectors, and its JSON.
#[derive(Debug)]
struct Object {
    labels: BTreeMap<String, String>,
    json: Arc<str>,
}

/// Objects by namespace (empty for cluster-scoped ones) and name.
type Objects = BTreeMap<(String, String), Arc<Object>>;

/// Whether a cache may answer.
#[derive(Debug, Clone)]
enum Step {
    /// Not listed yet.
    Pending,
    /// Listed, and the watch is following (or resuming after a clean end).
    Current,
    /// A list or watch failed; lookups fail until a list succeeds.
    Lost(String),
}

/// The cache of one resource.
#[derive(Debug)]
struct Cache {
    resource: Resource,
    max_objects: usize,
    objects: RwLock<Objects>,
    sync: Mutex<Step>,
    changed: Condvar,
}

impl Cache {
    fn new(resource: Resource, max_objects: usize) -> Self {
        Self {
            resource,
            max_objects,
            objects: RwLock::new(Objects::new()),
            sync: Mutex::new(Step::Pending),
            changed: Condvar::new(),
        }
    }

    /// Ok when the cache may answer; waits for a first list until `deadline`.
    fn current(&self, deadline: Instant) -> Result<(), LookupError> {
        let unavailable = |reason: String| LookupError::Unavailable {
            resource: self.resource.to_string(),
            reason,
        };
        let mut sync = self
            .sync
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        loop {
            match &*sync {
                Step::Current => return Ok(()),
                Step::Lost(reason) => return Err(unavailable(reason.clone())),
                Step::Pending => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(unavailable("not listed yet".into()));
                    }
                    sync = self
                        .changed
                        .wait_timeout(sync, left)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
            }
        }
    }

    fn set_step(&self, state: Step) {
        let mut sync = self
            .sync
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let (Step::Current, Step::Lost(reason)) = (&*sync, &state) {
            tracing::warn!(resource = %self.resource, "cluster cache lost step with the API server: {reason}");
        }
        *sync = state;
        self.changed.notify_all();
    }

    fn len(&self) -> usize {
        self.objects
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    fn objects(&self) -> std::sync::RwLockWriteGuard<'_, Objects> {
        self.objects
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn object(namespace: &str, name: &str, team: Option<&str>) -> ((String, String), Arc<Object>) {
        let labels: BTreeMap<String, String> = team
            .map(|team| ("team".to_owned(), team.to_owned()))
            .into_iter()
            .collect();
        (
            (namespace.into(), name.into()),
            Arc::new(Object {
                labels,
                json: format!("{namespace}/{name}").into(),
            }),
        )
    }

    fn access(step: Step) -> Access {
        let resource = Resource::parse("v1/configmaps").expect("a resource");
        let cache = Cache::new(resource.clone(), 10);
        *cache.objects() = [
            object("a", "one", Some("web")),
            object("a", "two", Some("db")),
            object("ab", "three", Some("web")),
            object("b", "four", None),
        ]
        .into_iter()
        .collect();
        cache.set_step(step);
        Access {
            caches: [(resource.to_string(), Arc::new(cache))].into(),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(20)
    }

    #[test]
    fn lookups_select_by_namespace_name_and_labels() {
        let access = access(Step::Current);
        let names = |namespace, selector| -> Vec<String> {
            access
                .list("v1/configmaps", namespace, selector, soon())
                .expect("a list")
                .iter()
                .map(|json| json.to_string())
                .collect()
        };
        assert_eq!(names(Some("a"), None), ["a/one", "a/two"]);
        assert_eq!(names(None, Some("team=web")), ["a/one", "ab/three"]);
        assert_eq!(names(Some("b"), Some("!team")), ["b/four"]);
        assert!(names(Some("c"), None).is_empty());
        let get = |namespace, name| access.get("v1/configmaps", namespace, name, soon());
        assert_eq!(
            get(Some("a"), "two").expect("a get").as_deref(),
            Some("a/two")
        );
        assert_eq!(get(Some("b"), "two").expect("a get"), None);
        assert_eq!(get(None, "two").expect("a get"), None);
    }

    #[test]
    fn a_lookup_never_answers_what_it_cannot_know() {
        let refused = access(Step::Current)
            .list("v1/secrets", None, None, soon())
            .expect_err("not granted");
        assert_eq!(refused, LookupError::NotGranted("v1/secrets".into()));
        let malformed = access(Step::Current)
            .list("v1/configmaps", None, Some("team in web"), soon())
            .expect_err("malformed");
        assert!(matches!(malformed, LookupError::Selector(_)), "{malformed}");
        let lost = access(Step::Lost("connection refused".into()))
            .get("v1/configmaps", Some("a"), "one", soon())
            .expect_err("lost");
        assert_eq!(
            lost.to_string(),
            "the cluster cache of v1/configmaps is not in step with the API server: connection refused"
        );
        // Not listed yet: the lookup waits until its deadline, then fails.
        let started = Instant::now();
        let pending = access(Step::Pending)
            .get(
                "v1/configmaps",
                Some("a"),
                "one",
                started + Duration::from_millis(50),
            )
            .expect_err("pending");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(pending.to_string().ends_with("not listed yet"), "{pending}");
    }

    #[test]
    fn a_pending_lookup_is_answered_as_soon_as_the_list_arrives() {
        let access = access(Step::Pending);
        let cache = access.caches["v1/configmaps"].clone();
        let lister = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            cache.set_step(Step::Current);
        });
        let found = access
            .get(
                "v1/configmaps",
                Some("a"),
                "one",
                Instant::now() + Duration::from_secs(10),
            )
            .expect("answered once listed");
        assert_eq!(found.as_deref(), Some("a/one"));
        lister.join().expect("the lister");
    }

    #[test]
    fn resources_are_named_as_rbac_names_them() {
        let core = Resource::parse("v1/namespaces").expect("core");
        assert_eq!(
            (core.group.as_str(), core.path()),
            ("", "/api/v1/namespaces".into())
        );
        let ingresses = Resource::parse("networking.k8s.io/v1/ingresses").expect("grouped");
        assert_eq!(ingresses.path(), "/apis/networking.k8s.io/v1/ingresses");
        assert_eq!(ingresses.to_string(), "networking.k8s.io/v1/ingresses");
        for wrong in [
            "namespaces",
            "v1/Namespaces",
            "a/b/c/d",
            "v1/",
            "apps/v1/deployments/scale",
            "v1/pods?watch=1",
        ] {
            assert!(Resource::parse(wrong).is_err(), "{wrong}");
        }
    }
}
