//! Conveniences on the request types generated from the WIT package.

use crate::patch::pointer;
use crate::types::{Container, ContainerKind, Request, Workload};

impl Request {
    /// Parses the raw object into `T` (for fields the workload does not
    /// carry). `None` when the request has no object.
    pub fn object_as<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, String>> {
        self.object.as_deref().map(parse)
    }

    /// Parses the object as it was before an update into `T`.
    pub fn old_object_as<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, String>> {
        self.old_object.as_deref().map(parse)
    }
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|error| format!("cannot read the object: {error}"))
}

impl Workload {
    /// Looks up a pod annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        lookup(&self.annotations, key)
    }

    /// Looks up a pod label.
    pub fn label(&self, key: &str) -> Option<&str> {
        lookup(&self.labels, key)
    }

    /// JSON Pointer to a container in the request's object, for building
    /// patches, for example `/spec/template/spec/containers/0`. `None` for
    /// Docker, whose create body is the container itself.
    pub fn container_pointer(&self, container: &Container) -> Option<String> {
        let template = self.template_path.as_deref()?;
        let list = match container.kind {
            ContainerKind::Init => "initContainers",
            ContainerKind::Regular => "containers",
            ContainerKind::Ephemeral => "ephemeralContainers",
        };
        Some(format!(
            "{template}{}",
            pointer(&["spec", list, &container.index.to_string()])
        ))
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(kind: ContainerKind, index: u32) -> Container {
        Container {
            kind,
            index,
            ..Default::default()
        }
    }

    fn workload(template_path: Option<&str>) -> Workload {
        Workload {
            template_path: template_path.map(Into::into),
            labels: vec![("app".into(), "web".into())],
            ..Default::default()
        }
    }

    #[test]
    fn container_pointers_follow_the_template() {
        let deployment = workload(Some("/spec/template"));
        assert_eq!(
            deployment
                .container_pointer(&container(ContainerKind::Init, 2))
                .as_deref(),
            Some("/spec/template/spec/initContainers/2")
        );
        let pod = workload(Some(""));
        assert_eq!(
            pod.container_pointer(&container(ContainerKind::Regular, 0))
                .as_deref(),
            Some("/spec/containers/0")
        );
        let docker = workload(None);
        assert_eq!(
            docker.container_pointer(&container(ContainerKind::Regular, 0)),
            None
        );
    }

    #[test]
    fn labels_are_looked_up_by_key() {
        let pod = workload(Some(""));
        assert_eq!(pod.label("app"), Some("web"));
        assert_eq!(pod.label("tier"), None);
    }
}
