//! The engine's router, modelled: which handler a request reaches, which
//! access group that handler belongs to, which change workloads and must be
//! read and judged, and which hijack the connection.
//!
//! The engine (moby's `api/server`) registers its routes with gorilla/mux in
//! a fixed order — router by router (`cmd/dockerd/daemon.go` `initRouter`),
//! route by route — each once with the `/v{version}` prefix and once
//! without, and the first route whose method and path template match wins.
//! Templates capture names with `{name:.*}`, which matches any text,
//! slashes included: a container can be named `parent/alias` (the second
//! name a link gives it), so `/containers/parent/alias/exec` is an exec into
//! that container, not a path the router ignores. `ROUTES` is that table,
//! in that order, for the 20.10 engine (API 1.41) and what later engines
//! kept; [`classify`] matches the canonical path (see [`super::path`])
//! against it the way the router does. A request no route takes is a 404 at
//! the engine: it is forwarded only as a read of [`Group::Unknown`].

use hyper::Method;
use serde::Deserialize;

use super::path::CanonicalPath;

/// Endpoints that share an access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// `/_ping` (and `OPTIONS` of anything): always allowed, the CLI's
    /// version negotiation needs it.
    Ping,
    /// `/info`, `/version`, `/events`, `/system/df`, `/auth`.
    System,
    /// Containers: list, inspect, logs, stats, create, start, stop, …
    Containers,
    /// `/containers/{id}/archive` and the old `/containers/{id}/copy`:
    /// copying files in and out (`docker cp`).
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
    /// `/build` (the classic builder, judged by its parameters),
    /// `/build/prune` and `/build/cancel`.
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
    /// `/debug/…`: the engine's own profiler and variables.
    Debug,
    /// Anything no route of the engine takes.
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
            Group::Debug => "debug",
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
    /// `POST /containers/{name}/update`: resources only, never devices.
    ContainerUpdate,
    /// `POST /containers/{name}/start`: must carry no configuration.
    ContainerStart,
    /// `POST /containers/{name}/exec`.
    ExecCreate {
        /// The container, as the path names it.
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
    /// `POST /networks/create`.
    NetworkCreate,
    /// `POST /plugins/pull` and `POST /plugins/{name}/upgrade`: the
    /// privileges the plugin will run with.
    PluginPrivileges,
    /// `POST /plugins/{name}/set`: a plugin's mounts, devices and
    /// environment.
    PluginSet {
        /// The plugin.
        plugin: String,
    },
    /// `POST /build`: judged by its query; the body, the build context,
    /// streams on unread.
    Build,
    /// An endpoint whose effect the proxy cannot judge, refused whatever
    /// the access rules say; the reason is the message.
    Refuse(&'static str),
}

/// What the proxy knows about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The access group.
    pub group: Group,
    /// Whether it reads (GET, HEAD, OPTIONS) rather than changes.
    pub read: bool,
    /// What must be judged.
    pub inspect: Inspect,
    /// Whether the engine answers with a hijacked raw stream (attach, exec
    /// start): the connection is tunnelled after the engine's 101.
    pub hijack: bool,
}

/// What a route's handler does, as far as the proxy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Streams through.
    Pass,
    /// Streams through, hijacked after the engine's 101.
    Hijack,
    ContainerCreate,
    ContainerUpdate,
    ContainerStart,
    /// Judged as an exec into the template's captured name.
    ExecCreate,
    /// `/images/create`: a pull, or an import when the query names a
    /// source (see [`classify`]).
    ImageCreate,
    ServiceCreate,
    /// Judged as an update of the template's captured name.
    ServiceUpdate,
    VolumeCreate,
    NetworkCreate,
    PluginPrivileges,
    PluginSet,
    /// `/build`, judged by its parameters.
    BuildParameters,
    Refuse(&'static str),
}

/// One route of the engine's router.
struct Template {
    method: &'static str,
    /// The path template, as moby writes it.
    path: &'static str,
    group: Group,
    act: Act,
}

const fn route(method: &'static str, path: &'static str, group: Group, act: Act) -> Template {
    Template {
        method,
        path,
        group,
        act,
    }
}

/// Why a checkpoint is refused: experimental engines write the container's
/// memory to, and restore it from, a directory of the client's choosing on
/// the host.
const CHECKPOINT: &str =
    "checkpoints write a container's memory to a host directory the client names";

/// The engine's routes, in the order its router tries them (moby 20.10,
/// `api/server/router/*/…go`, routers in `initRouter`'s order). A data
/// table: one line per route.
#[rustfmt::skip]
static ROUTES: &[Template] = {
    use Act::*;
    use Group::*;
    &[
        // checkpoint (experimental; registered first so its DELETE is not
        // taken by the container router's)
        route("GET", "/containers/{name:.*}/checkpoints", Containers, Pass),
        route("POST", "/containers/{name:.*}/checkpoints", Containers, Refuse(CHECKPOINT)),
        route("DELETE", "/containers/{name}/checkpoints/{checkpoint}", Containers, Pass),
        // container
        route("HEAD", "/containers/{name:.*}/archive", Archive, Pass),
        route("GET", "/containers/json", Containers, Pass),
        route("GET", "/containers/{name:.*}/export", Export, Pass),
        route("GET", "/containers/{name:.*}/changes", Containers, Pass),
        route("GET", "/containers/{name:.*}/json", Containers, Pass),
        route("GET", "/containers/{name:.*}/top", Containers, Pass),
        route("GET", "/containers/{name:.*}/logs", Containers, Pass),
        route("GET", "/containers/{name:.*}/stats", Containers, Pass),
        route("GET", "/containers/{name:.*}/attach/ws", AttachWs, Pass),
        route("GET", "/exec/{id:.*}/json", Exec, Pass),
        route("GET", "/containers/{name:.*}/archive", Archive, Pass),
        route("POST", "/containers/create", Containers, ContainerCreate),
        route("POST", "/containers/{name:.*}/kill", Containers, Pass),
        route("POST", "/containers/{name:.*}/pause", Containers, Pass),
        route("POST", "/containers/{name:.*}/unpause", Containers, Pass),
        route("POST", "/containers/{name:.*}/restart", Containers, Pass),
        route("POST", "/containers/{name:.*}/start", Containers, ContainerStart),
        route("POST", "/containers/{name:.*}/stop", Containers, Pass),
        route("POST", "/containers/{name:.*}/wait", Containers, Pass),
        route("POST", "/containers/{name:.*}/resize", Containers, Pass),
        route("POST", "/containers/{name:.*}/attach", Attach, Hijack),
        // Before API 1.24 this copies a file out of the container.
        route("POST", "/containers/{name:.*}/copy", Archive, Pass),
        route("POST", "/containers/{name:.*}/exec", Exec, ExecCreate),
        route("POST", "/exec/{name:.*}/start", Exec, Hijack),
        route("POST", "/exec/{name:.*}/resize", Exec, Pass),
        route("POST", "/containers/{name:.*}/rename", Containers, Pass),
        route("POST", "/containers/{name:.*}/update", Containers, ContainerUpdate),
        route("POST", "/containers/prune", Containers, Pass),
        route("POST", "/commit", ImageImport, Pass),
        route("PUT", "/containers/{name:.*}/archive", Archive, Pass),
        route("DELETE", "/containers/{name:.*}", Containers, Pass),
        // image
        route("GET", "/images/json", Images, Pass),
        route("GET", "/images/search", Images, Pass),
        route("GET", "/images/get", Images, Pass),
        route("GET", "/images/{name:.*}/get", Images, Pass),
        route("GET", "/images/{name:.*}/history", Images, Pass),
        route("GET", "/images/{name:.*}/json", Images, Pass),
        route("POST", "/images/load", ImageImport, Pass),
        route("POST", "/images/create", Images, ImageCreate),
        route("POST", "/images/{name:.*}/push", Images, Pass),
        route("POST", "/images/{name:.*}/tag", ImageImport, Pass),
        route("POST", "/images/prune", Images, Pass),
        route("DELETE", "/images/{name:.*}", Images, Pass),
        // system
        route("OPTIONS", "/{anyroute:.*}", Ping, Pass),
        route("GET", "/_ping", Ping, Pass),
        route("HEAD", "/_ping", Ping, Pass),
        route("GET", "/events", System, Pass),
        route("GET", "/info", System, Pass),
        route("GET", "/version", System, Pass),
        route("GET", "/system/df", System, Pass),
        route("POST", "/auth", System, Pass),
        // volume
        route("GET", "/volumes", Volumes, Pass),
        route("GET", "/volumes/{name:.*}", Volumes, Pass),
        route("POST", "/volumes/create", Volumes, VolumeCreate),
        route("POST", "/volumes/prune", Volumes, Pass),
        route("DELETE", "/volumes/{name:.*}", Volumes, Pass),
        // build
        route("POST", "/build", Build, BuildParameters),
        route("POST", "/build/prune", Build, Pass),
        route("POST", "/build/cancel", Build, Pass),
        // session
        route("POST", "/session", Buildkit, Pass),
        // swarm
        route("POST", "/swarm/init", Swarm, Pass),
        route("POST", "/swarm/join", Swarm, Pass),
        route("POST", "/swarm/leave", Swarm, Pass),
        route("GET", "/swarm", Swarm, Pass),
        route("GET", "/swarm/unlockkey", Swarm, Pass),
        route("POST", "/swarm/update", Swarm, Pass),
        route("POST", "/swarm/unlock", Swarm, Pass),
        route("GET", "/services", Services, Pass),
        route("GET", "/services/{id}", Services, Pass),
        route("POST", "/services/create", Services, ServiceCreate),
        route("POST", "/services/{id}/update", Services, ServiceUpdate),
        route("DELETE", "/services/{id}", Services, Pass),
        route("GET", "/services/{id}/logs", Services, Pass),
        route("GET", "/nodes", Swarm, Pass),
        route("GET", "/nodes/{id}", Swarm, Pass),
        route("DELETE", "/nodes/{id}", Swarm, Pass),
        route("POST", "/nodes/{id}/update", Swarm, Pass),
        route("GET", "/tasks", Services, Pass),
        route("GET", "/tasks/{id}", Services, Pass),
        route("GET", "/tasks/{id}/logs", Services, Pass),
        route("GET", "/secrets", Secrets, Pass),
        route("POST", "/secrets/create", Secrets, Pass),
        route("DELETE", "/secrets/{id}", Secrets, Pass),
        route("GET", "/secrets/{id}", Secrets, Pass),
        route("POST", "/secrets/{id}/update", Secrets, Pass),
        route("GET", "/configs", Secrets, Pass),
        route("POST", "/configs/create", Secrets, Pass),
        route("DELETE", "/configs/{id}", Secrets, Pass),
        route("GET", "/configs/{id}", Secrets, Pass),
        route("POST", "/configs/{id}/update", Secrets, Pass),
        // plugin
        route("GET", "/plugins", Plugins, Pass),
        route("GET", "/plugins/{name:.*}/json", Plugins, Pass),
        route("GET", "/plugins/privileges", Plugins, Pass),
        route("DELETE", "/plugins/{name:.*}", Plugins, Pass),
        route("POST", "/plugins/{name:.*}/enable", Plugins, Pass),
        route("POST", "/plugins/{name:.*}/disable", Plugins, Pass),
        route("POST", "/plugins/pull", Plugins, PluginPrivileges),
        route("POST", "/plugins/{name:.*}/push", Plugins, Pass),
        route("POST", "/plugins/{name:.*}/upgrade", Plugins, PluginPrivileges),
        route("POST", "/plugins/{name:.*}/set", Plugins, PluginSet),
        route("POST", "/plugins/create", Plugins, Refuse(
            "a plugin built from a context carries its privileges inside the archive, unread; install it with pull, whose privileges are judged",
        )),
        // distribution
        route("GET", "/distribution/{name:.*}/json", Distribution, Pass),
        // grpc
        route("POST", "/grpc", Buildkit, Pass),
        // network
        route("GET", "/networks", Networks, Pass),
        route("GET", "/networks/", Networks, Pass),
        route("GET", "/networks/{id:.+}", Networks, Pass),
        route("POST", "/networks/create", Networks, NetworkCreate),
        route("POST", "/networks/{id:.*}/connect", Networks, Pass),
        route("POST", "/networks/{id:.*}/disconnect", Networks, Pass),
        route("POST", "/networks/prune", Networks, Pass),
        route("DELETE", "/networks/{id:.*}", Networks, Pass),
    ]
};

/// Classifies a request. `import` says whether `/images/create` names a
/// source to import (`fromSrc`) rather than an image to pull.
pub fn classify(method: &Method, path: &CanonicalPath, import: bool) -> Route {
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let route = |group: Group, inspect: Inspect| Route {
        group,
        read,
        inspect,
        hijack: false,
    };
    // The debug router is registered after every other, for any method,
    // and only without the version prefix.
    if path.version.is_none() && (path.path == "/debug" || path.path.starts_with("/debug/")) {
        return route(Group::Debug, Inspect::Nothing);
    }
    let Some((template, name)) = ROUTES.iter().find_map(|template| {
        (template.method == method.as_str())
            .then(|| capture(template.path, &path.path))
            .flatten()
            .map(|name| (template, name))
    }) else {
        return route(Group::Unknown, Inspect::Nothing);
    };
    let name = name.unwrap_or_default().to_owned();
    let inspect = match template.act {
        Act::Pass | Act::Hijack => Inspect::Nothing,
        Act::ContainerCreate => Inspect::ContainerCreate,
        Act::ContainerUpdate => Inspect::ContainerUpdate,
        Act::ContainerStart => Inspect::ContainerStart,
        Act::ExecCreate => Inspect::ExecCreate { container: name },
        Act::ImageCreate if import => {
            return route(Group::ImageImport, Inspect::Nothing);
        }
        Act::ImageCreate => Inspect::ImagePull,
        Act::ServiceCreate => Inspect::ServiceCreate,
        Act::ServiceUpdate => Inspect::ServiceUpdate { service: name },
        Act::VolumeCreate => Inspect::VolumeCreate,
        Act::NetworkCreate => Inspect::NetworkCreate,
        Act::PluginPrivileges => Inspect::PluginPrivileges,
        Act::PluginSet => Inspect::PluginSet { plugin: name },
        Act::BuildParameters => Inspect::Build,
        Act::Refuse(why) => Inspect::Refuse(why),
    };
    Route {
        hijack: template.act == Act::Hijack,
        ..route(template.group, inspect)
    }
}

/// Matches `path` against a gorilla/mux template: literal text, and
/// variables `{name}` (one segment, `[^/]+`), `{name:.+}` and `{name:.*}`
/// (any text, slashes included, at least one character or none). Returns
/// the first variable's value (`None` when the template has none), or
/// `None` at the outer level when the path does not match.
fn capture<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut captured = None;
    matches(template, path, &mut captured).then_some(captured)
}

fn matches<'p>(template: &str, path: &'p str, captured: &mut Option<&'p str>) -> bool {
    let Some(open) = template.find('{') else {
        return template == path;
    };
    let (literal, rest) = template.split_at(open);
    let Some(path) = path.strip_prefix(literal) else {
        return false;
    };
    let Some(close) = rest.find('}') else {
        return false;
    };
    let (variable, after) = (&rest[1..close], &rest[close + 1..]);
    let (least, any_text) = match variable.split_once(':') {
        Some((_, ".*")) => (0, true),
        Some((_, ".+")) => (1, true),
        _ => (1, false),
    };
    // The regexp is anchored at both ends, so the variable takes as much
    // as lets the rest of the template match; try the longest first, as
    // the regexp's greedy star does.
    let longest = if any_text {
        path.len()
    } else {
        path.find('/').unwrap_or(path.len())
    };
    let mut ends: Vec<usize> = path
        .char_indices()
        .map(|(index, _)| index)
        .chain([path.len()])
        .filter(|end| (least..=longest).contains(end))
        .collect();
    ends.reverse();
    for end in ends {
        let mut inner = None;
        if matches(after, &path[end..], &mut inner) {
            if captured.is_none() {
                *captured = Some(&path[..end]);
            }
            return true;
        }
    }
    false
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
        assert_eq!(
            route(Method::POST, "/networks/create").inspect,
            Inspect::NetworkCreate
        );
        assert_eq!(
            route(Method::POST, "/plugins/pull").inspect,
            Inspect::PluginPrivileges
        );
        // A GET of the same path changes nothing.
        assert_eq!(
            route(Method::GET, "/containers/create/json").inspect,
            Inspect::Nothing
        );
    }

    #[test]
    fn names_with_slashes_reach_the_route_the_engine_takes() {
        // A link alias names a container `parent/alias`; the engine's
        // `{name:.*}` takes all of it.
        assert_eq!(
            route(Method::POST, "/v1.41/containers/parent/alias/exec").inspect,
            Inspect::ExecCreate {
                container: "parent/alias".into()
            }
        );
        assert_eq!(
            route(Method::POST, "/containers/a/b/c/start").inspect,
            Inspect::ContainerStart
        );
        for (method, path, group) in [
            (
                Method::GET,
                "/containers/parent/alias/archive",
                Group::Archive,
            ),
            (
                Method::PUT,
                "/containers/parent/alias/archive",
                Group::Archive,
            ),
            (
                Method::HEAD,
                "/containers/parent/alias/archive",
                Group::Archive,
            ),
            (
                Method::GET,
                "/containers/parent/alias/export",
                Group::Export,
            ),
            (Method::GET, "/containers/p/a/attach/ws", Group::AttachWs),
            (Method::POST, "/containers/p/a/copy", Group::Archive),
        ] {
            assert_eq!(route(method.clone(), path).group, group, "{method} {path}");
        }
        assert!(route(Method::POST, "/containers/parent/alias/attach").hijack);
        // The first route that matches wins: this is a start of the
        // container `x/exec`, not an exec.
        assert_eq!(
            route(Method::POST, "/containers/x/exec/start").inspect,
            Inspect::ContainerStart
        );
        // `{id}` without a pattern is one segment: no service is named
        // `a/b`, and nothing takes the path.
        assert_eq!(
            route(Method::POST, "/services/a/b/update").group,
            Group::Unknown
        );
        assert_eq!(
            route(Method::POST, "/services/web/update").inspect,
            Inspect::ServiceUpdate {
                service: "web".into()
            }
        );
    }

    #[test]
    fn endpoints_fall_in_their_groups() {
        for (method, path, group) in [
            (Method::HEAD, "/_ping", Group::Ping),
            (Method::OPTIONS, "/containers/create", Group::Ping),
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
            (Method::GET, "/debug/pprof/heap", Group::Debug),
            (Method::POST, "/frobnicate", Group::Unknown),
            (Method::POST, "/containers/json", Group::Unknown),
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
        assert!(matches!(
            route(Method::POST, "/plugins/create").inspect,
            Inspect::Refuse(_)
        ));
        assert!(matches!(
            route(Method::POST, "/containers/web/checkpoints").inspect,
            Inspect::Refuse(_)
        ));
        // A checkpoint's DELETE is the checkpoint router's, registered
        // before the container router's catch-all.
        assert_eq!(
            route(Method::DELETE, "/containers/web/checkpoints/c1").inspect,
            Inspect::Nothing
        );
    }

    #[test]
    fn templates_match_as_the_router_does() {
        assert_eq!(capture("/a/{x:.*}/b", "/a/1/2/b"), Some(Some("1/2")));
        assert_eq!(capture("/a/{x:.*}/b", "/a/b"), None);
        assert_eq!(capture("/a/{x}/b", "/a/1/2/b"), None);
        assert_eq!(capture("/a/{x}/b", "/a/1/b"), Some(Some("1")));
        assert_eq!(capture("/a/{x:.+}", "/a/"), None);
        assert_eq!(capture("/a", "/a"), Some(None));
        assert_eq!(
            capture("/c/{name}/k/{k}", "/c/web/k/one"),
            Some(Some("web"))
        );
    }
}
