//! The engine API, endpoint by endpoint: which access group each belongs
//! to, which change workloads and must be read and judged, and which hijack
//! the connection.
//!
//! Classification is on the canonical path (see [`super::path`]), so every
//! spelling of an endpoint lands in the same place. A write to a path not
//! listed here is a write the gateway does not understand, and the default
//! access denies it.

use hyper::Method;
use serde::Deserialize;

use super::path::CanonicalPath;

/// Endpoints that share an access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// `/_ping`: always allowed, the CLI's version negotiation needs it.
    Ping,
    /// `/info`, `/version`, `/events`, `/system/df`, `/auth`.
    System,
    /// Containers: list, inspect, logs, stats, create, start, stop, …
    Containers,
    /// `/containers/{id}/archive`: copying files in and out (`docker cp`).
    Archive,
    /// `/containers/{id}/export`: the container's whole filesystem.
    Export,
    /// `POST /containers/{id}/attach`: the container's standard streams.
    Attach,
    /// `/containers/{id}/attach/ws`: the same over a websocket.
    AttachWs,
    /// `/containers/{id}/exec` and `/exec/…`.
    Exec,
    /// Images: list, inspect, pull, push, remove, search, save.
    Images,
    /// Ways to put an image under a name without pulling it: `/images/load`,
    /// import (`/images/create?fromSrc=…`), `/images/{name}/tag`, `/commit`.
    ImageImport,
    /// `/build` (the classic builder, judged by its parameters) and
    /// `/build/prune`.
    Build,
    /// `/session` and `/grpc`: BuildKit's own API, whose build requests
    /// (and entitlements such as `network.host`) travel inside a gRPC stream
    /// the proxy cannot judge.
    Buildkit,
    /// `/volumes/…`.
    Volumes,
    /// `/networks/…`.
    Networks,
    /// `/swarm/…` and `/nodes/…`.
    Swarm,
    /// `/services/…` and `/tasks/…`.
    Services,
    /// `/secrets/…` and `/configs/…`.
    Secrets,
    /// `/plugins/…`: plugins run with the privileges they ask for.
    Plugins,
    /// `/distribution/…`.
    Distribution,
    /// Anything else.
    Unknown,
}

impl Group {
    /// The name used in the configuration and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Ping => "ping",
            Group::System => "system",
            Group::Containers => "containers",
            Group::Archive => "archive",
            Group::Export => "export",
            Group::Attach => "attach",
            Group::AttachWs => "attach-ws",
            Group::Exec => "exec",
            Group::Images => "images",
            Group::ImageImport => "image-import",
            Group::Build => "build",
            Group::Buildkit => "buildkit",
            Group::Volumes => "volumes",
            Group::Networks => "networks",
            Group::Swarm => "swarm",
            Group::Services => "services",
            Group::Secrets => "secrets",
            Group::Plugins => "plugins",
            Group::Distribution => "distribution",
            Group::Unknown => "unknown",
        }
    }
}

/// What the proxy must read and judge before forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspect {
    /// Nothing: forwarded as it streams.
    Nothing,
    /// `POST /containers/create`.
    ContainerCreate,
    /// `POST /containers/{id}/update`: resources only, never devices.
    ContainerUpdate,
    /// `POST /containers/{id}/start`: must carry no configuration.
    ContainerStart,
    /// `POST /containers/{id}/exec`.
    ExecCreate {
        /// The container.
        container: String,
    },
    /// `POST /images/create?fromImage=…`.
    ImagePull,
    /// `POST /services/create`.
    ServiceCreate,
    /// `POST /services/{id}/update`.
    ServiceUpdate {
        /// The service.
        service: String,
    },
    /// `POST /volumes/create`.
    VolumeCreate,
    /// `POST /build`: judged by its query; the body, the build context,
    /// streams on unread.
    Build,
}

/// What the proxy knows about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The access group.
    pub group: Group,
    /// Whether it reads (GET, HEAD) rather than changes.
    pub read: bool,
    /// What must be judged.
    pub inspect: Inspect,
    /// Whether the engine answers with a hijacked raw stream (attach, exec
    /// start): the connection is tunnelled after the engine's 101.
    pub hijack: bool,
}

/// Classifies a request. `import` says whether `/images/create` names a
/// source to import (`fromSrc`) rather than an image to pull.
pub fn classify(method: &Method, path: &CanonicalPath, import: bool) -> Route {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let post = *method == Method::POST;
    let segments: Vec<&str> = path.segments().collect();
    let route = |group: Group, inspect: Inspect| Route {
        group,
        read,
        inspect,
        hijack: false,
    };
    match segments.as_slice() {
        ["_ping"] => route(Group::Ping, Inspect::Nothing),
        ["info" | "version" | "events" | "auth"] | ["system", "df"] => {
            route(Group::System, Inspect::Nothing)
        }

        ["containers", "create"] if post => route(Group::Containers, Inspect::ContainerCreate),
        ["containers", _, "archive"] => route(Group::Archive, Inspect::Nothing),
        ["containers", _, "export"] => route(Group::Export, Inspect::Nothing),
        ["containers", _, "attach", "ws"] => route(Group::AttachWs, Inspect::Nothing),
        ["containers", _, "attach"] if post => Route {
            hijack: true,
            ..route(Group::Attach, Inspect::Nothing)
        },
        ["containers", container, "exec"] if post => route(
            Group::Exec,
            Inspect::ExecCreate {
                container: (*container).to_owned(),
            },
        ),
        ["containers", _, "update"] if post => route(Group::Containers, Inspect::ContainerUpdate),
        ["containers", _, "start"] if post => route(Group::Containers, Inspect::ContainerStart),
        ["containers", ..] => route(Group::Containers, Inspect::Nothing),

        ["exec", _, "start"] if post => Route {
            hijack: true,
            ..route(Group::Exec, Inspect::Nothing)
        },
        ["exec", ..] => route(Group::Exec, Inspect::Nothing),

        ["images", "load"] | ["commit"] => route(Group::ImageImport, Inspect::Nothing),
        ["images", "create"] if post && import => route(Group::ImageImport, Inspect::Nothing),
        ["images", "create"] if post => route(Group::Images, Inspect::ImagePull),
        ["images", .., "tag"] if post => route(Group::ImageImport, Inspect::Nothing),
        // Image names may contain slashes: `/images/{name:.*}/json` and
        // the like, which these patterns allow for.
        ["images", ..] => route(Group::Images, Inspect::Nothing),
        ["distribution", ..] => route(Group::Distribution, Inspect::Nothing),

        ["build"] if post => route(Group::Build, Inspect::Build),
        ["build", ..] => route(Group::Build, Inspect::Nothing),
        ["session" | "grpc", ..] => route(Group::Buildkit, Inspect::Nothing),
        ["volumes", "create"] if post => route(Group::Volumes, Inspect::VolumeCreate),
        ["volumes", ..] => route(Group::Volumes, Inspect::Nothing),
        ["networks", ..] => route(Group::Networks, Inspect::Nothing),
        ["swarm" | "nodes", ..] => route(Group::Swarm, Inspect::Nothing),
        ["services", "create"] if post => route(Group::Services, Inspect::ServiceCreate),
        ["services", service, "update"] if post => route(
            Group::Services,
            Inspect::ServiceUpdate {
                service: (*service).to_owned(),
            },
        ),
        ["services" | "tasks", ..] => route(Group::Services, Inspect::Nothing),
        ["secrets" | "configs", ..] => route(Group::Secrets, Inspect::Nothing),
        ["plugins", ..] => route(Group::Plugins, Inspect::Nothing),
        _ => route(Group::Unknown, Inspect::Nothing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Route {
        classify(
            &method,
            &CanonicalPath::parse(path).expect("canonical"),
            false,
        )
    }

    #[test]
    fn workload_changes_are_inspected() {
        assert_eq!(
            route(Method::POST, "/v1.41/containers/create").inspect,
            Inspect::ContainerCreate
        );
        assert_eq!(
            route(Method::POST, "/v1.41/containers/web/exec").inspect,
            Inspect::ExecCreate {
                container: "web".into()
            }
        );
        assert_eq!(
            route(Method::POST, "/containers/web/start").inspect,
            Inspect::ContainerStart
        );
        assert_eq!(
            route(Method::POST, "/containers/web/update").inspect,
            Inspect::ContainerUpdate
        );
        assert_eq!(
            route(Method::POST, "/images/create").inspect,
            Inspect::ImagePull
        );
        assert_eq!(
            route(Method::POST, "/services/create").inspect,
            Inspect::ServiceCreate
        );
        assert_eq!(
            route(Method::POST, "/volumes/create").inspect,
            Inspect::VolumeCreate
        );
        // A GET of the same path changes nothing.
        assert_eq!(
            route(Method::GET, "/containers/create/json").inspect,
            Inspect::Nothing
        );
    }

    #[test]
    fn endpoints_fall_in_their_groups() {
        for (method, path, group) in [
            (Method::HEAD, "/_ping", Group::Ping),
            (Method::GET, "/v1.41/containers/json", Group::Containers),
            (Method::GET, "/containers/web/archive", Group::Archive),
            (Method::PUT, "/containers/web/archive", Group::Archive),
            (Method::GET, "/containers/web/export", Group::Export),
            (Method::GET, "/containers/web/attach/ws", Group::AttachWs),
            (Method::POST, "/containers/web/attach", Group::Attach),
            (Method::POST, "/exec/abc/start", Group::Exec),
            (Method::POST, "/images/load", Group::ImageImport),
            (Method::POST, "/commit", Group::ImageImport),
            (
                Method::POST,
                "/images/registry.example.com/team/app/tag",
                Group::ImageImport,
            ),
            (
                Method::GET,
                "/images/registry.example.com/team/app/json",
                Group::Images,
            ),
            (
                Method::POST,
                "/images/registry.example.com/team/app/push",
                Group::Images,
            ),
            (Method::POST, "/build", Group::Build),
            (Method::POST, "/build/prune", Group::Build),
            (Method::POST, "/session", Group::Buildkit),
            (Method::POST, "/grpc", Group::Buildkit),
            (Method::POST, "/plugins/pull", Group::Plugins),
            (Method::POST, "/swarm/init", Group::Swarm),
            (Method::POST, "/nodes/n1/update", Group::Swarm),
            (Method::GET, "/tasks", Group::Services),
            (Method::POST, "/configs/create", Group::Secrets),
            (Method::POST, "/frobnicate", Group::Unknown),
        ] {
            assert_eq!(route(method.clone(), path).group, group, "{method} {path}");
        }
        assert!(route(Method::POST, "/exec/abc/start").hijack);
        assert!(route(Method::POST, "/containers/web/attach").hijack);
        let import = classify(
            &Method::POST,
            &CanonicalPath::parse("/images/create").expect("ok"),
            true,
        );
        assert_eq!(import.group, Group::ImageImport);
    }
}
