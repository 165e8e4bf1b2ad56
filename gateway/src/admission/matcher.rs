//! Which requests a policy sees (the `match` section of a policy).

use super::Request;
use crate::config::{KindPattern, MatchConfig};

/// Decides whether a request is in a policy's scope.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    config: MatchConfig,
}

impl Matcher {
    pub(crate) fn new(config: MatchConfig) -> Self {
        Self { config }
    }

    /// Whether every criterion of the policy's `match` holds for `request`.
    pub(crate) fn matches(&self, request: &Request) -> bool {
        let config = &self.config;
        let any_or = |empty: bool, found: bool| empty || found;
        any_or(
            config.origins.is_empty(),
            config.origins.contains(&request.origin),
        ) && any_or(
            config.operations.is_empty(),
            config.operations.contains(&request.operation),
        ) && any_or(
            config.kinds.is_empty(),
            config
                .kinds
                .iter()
                .any(|pattern| kind_matches(pattern, request)),
        ) && self.namespace_matches(request.namespace.as_deref())
            && self.user_matches(request)
    }

    /// The client's name or one of its groups is listed (exactly, or by a
    /// prefix ending in `*`).
    fn user_matches(&self, request: &Request) -> bool {
        let user = &request.user;
        self.config.users.is_empty()
            || self.config.users.iter().any(|pattern| {
                name_matches(pattern, &user.name)
                    || user.groups.iter().any(|group| name_matches(pattern, group))
            })
    }

    fn namespace_matches(&self, namespace: Option<&str>) -> bool {
        let namespaces = &self.config.namespaces;
        match namespace {
            None => namespaces.include.is_empty(),
            Some(namespace) => {
                (namespaces.include.is_empty()
                    || namespaces
                        .include
                        .iter()
                        .any(|p| name_matches(p, namespace)))
                    && !namespaces
                        .exclude
                        .iter()
                        .any(|p| name_matches(p, namespace))
            }
        }
    }
}

fn kind_matches(pattern: &KindPattern, request: &Request) -> bool {
    pattern
        .group
        .as_ref()
        .is_none_or(|group| *group == request.kind.group)
        && pattern
            .kind
            .as_ref()
            .is_none_or(|kind| *kind == request.kind.kind)
}

/// An exact name, or a prefix followed by `*`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{GroupVersionKind, Operation, Origin, UserInfo};
    use crate::config::Config;

    fn request(origin: Origin, group: &str, kind: &str, namespace: Option<&str>) -> Request {
        Request {
            uid: String::new(),
            origin,
            operation: Operation::Create,
            kind: GroupVersionKind {
                group: group.into(),
                version: "v1".into(),
                kind: kind.into(),
            },
            resource: String::new(),
            sub_resource: None,
            namespace: namespace.map(Into::into),
            name: None,
            user: UserInfo::default(),
            dry_run: false,
            object: None,
            old_object: None,
            workload: None,
            images: Vec::new(),
        }
    }

    fn matcher(yaml: &str) -> Matcher {
        let config = Config::parse(
            &format!("policies: [{{name: p, module: x.wasm, match: {yaml}}}]"),
            "test",
        )
        .expect("valid");
        Matcher::new(config.policies[0].matches.clone())
    }

    #[test]
    fn an_empty_match_takes_everything() {
        let all = matcher("{}");
        assert!(all.matches(&request(Origin::Docker, "docker", "Container", None)));
        assert!(all.matches(&request(Origin::Kubernetes, "", "Pod", Some("default"))));
    }

    #[test]
    fn kinds_match_by_group_and_kind() {
        let pods_and_apps = matcher("{kinds: [core/Pod, apps/*]}");
        assert!(pods_and_apps.matches(&request(Origin::Kubernetes, "", "Pod", Some("a"))));
        assert!(pods_and_apps.matches(&request(
            Origin::Kubernetes,
            "apps",
            "StatefulSet",
            Some("a")
        )));
        assert!(!pods_and_apps.matches(&request(
            Origin::Kubernetes,
            "example.com",
            "Pod",
            Some("a")
        )));
        assert!(!pods_and_apps.matches(&request(Origin::Kubernetes, "batch", "Job", Some("a"))));
    }

    #[test]
    fn origins_and_operations_must_be_listed() {
        let docker = matcher("{origins: [docker], operations: [UPDATE]}");
        let mut create = request(Origin::Docker, "docker", "Container", None);
        assert!(!docker.matches(&create));
        create.operation = Operation::Update;
        assert!(docker.matches(&create));
        assert!(!docker.matches(&request(Origin::Kubernetes, "", "Pod", None)));
    }

    #[test]
    fn users_match_by_name_or_group() {
        let root = matcher("{users: [\"uid:0\", system:masters]}");
        let mut request = request(Origin::Docker, "docker", "Exec", None);
        request.user = UserInfo {
            name: "uid:0".into(),
            uid: "0".into(),
            groups: vec!["gid:0".into()],
        };
        assert!(root.matches(&request));
        request.user.name = "uid:1000".into();
        assert!(!root.matches(&request));
        request.user.groups.push("system:masters".into());
        assert!(root.matches(&request));
    }

    #[test]
    fn namespaces_are_included_and_excluded() {
        let teams = matcher("{namespaces: {include: [team-*], exclude: [team-infra]}}");
        assert!(teams.matches(&request(Origin::Kubernetes, "", "Pod", Some("team-web"))));
        assert!(!teams.matches(&request(Origin::Kubernetes, "", "Pod", Some("team-infra"))));
        assert!(!teams.matches(&request(Origin::Kubernetes, "", "Pod", Some("default"))));
        assert!(!teams.matches(&request(Origin::Docker, "docker", "Container", None)));
        let not_system = matcher("{namespaces: {exclude: [kube-system]}}");
        assert!(not_system.matches(&request(Origin::Docker, "docker", "Container", None)));
        assert!(!not_system.matches(&request(Origin::Kubernetes, "", "Pod", Some("kube-system"))));
    }
}
