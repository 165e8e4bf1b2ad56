//! The Docker front door's requests, read as the engine reads them.
//!
//! Each body is decoded with Go's `encoding/json` rules (`gojson`), its
//! fields checked against the engine's ([`fields`]), and each setting that
//! grants something mapped into the workload model in the vocabulary of
//! the Pod Security Standards, so the same policies judge `docker run` and a
//! Kubernetes pod. How a body is read depends on the engine behind the
//! proxy ([`engine`]) and on the API version the client asked for:
//!
//! - container create ([`create`]): `--privileged`, capabilities, users
//!   (`user`), security options, namespaces (`host` and `container:`
//!   modes, and the engine's default cgroup namespace), volumes ([`volumes`]:
//!   binds, mounts, and `local` volumes by what their options mount),
//!   devices and `--gpus`, ports, sysctls, supplementary groups;
//! - exec create: the process's privileges and its user, resolved against
//!   the container it enters;
//! - swarm services ([`service`]), volume and network creation, image
//!   pulls, and classic builds (judged by their parameters).

pub mod create;
pub mod engine;
pub mod fields;
mod gojson;
pub mod plugin;
mod service;
mod user;
pub mod volumes;

pub use create::{Lookups, Normalized, normalize};
pub use engine::Engine;
pub use service::service;

use self::engine::Version;
use self::fields::Accept;
use super::{
    Borrowed, BorrowedResource, Container, ContainerKind, Device, GroupVersionKind, Image,
    NormalizeError, Operation, Origin, Port, Request, SeLinuxOptions, SecurityContext,
    SecurityProfile, Sysctl, UserInfo, Volume, VolumeMount, Workload,
};

/// How to read a request: for which engine, at which API version, and
/// which unjudged fields the operator accepts.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// The engine the request goes to.
    pub engine: &'a Engine,
    /// The API version the client's path asked for, if any.
    pub version: Option<Version>,
    /// Unjudged fields accepted unseen.
    pub accept: Accept<'a>,
}

impl Reading<'_> {
    /// The API version the engine serves the request at: the client's, or
    /// the engine's own when the path names none.
    pub fn api(&self) -> Version {
        self.version.unwrap_or(self.engine.api)
    }

    /// The version as requests carry it (`1.41`), empty when the client
    /// named none.
    fn version_string(&self) -> String {
        self.version
            .map(|(major, minor)| format!("{major}.{minor}"))
            .unwrap_or_default()
    }
}

/// Builds the request for a container-create body. `name` is the `name`
/// query parameter.
pub fn container_create(
    body: &str,
    name: Option<String>,
    reading: &Reading<'_>,
) -> Result<(Request, Lookups), NormalizeError> {
    let Normalized { workload, lookups } = normalize(body, name.as_deref(), reading)?;
    Ok((
        request(
            ("Container", "containers", None),
            Operation::Create,
            reading,
            name,
            body,
            Some(workload),
        ),
        lookups,
    ))
}

/// The container an exec enters, as the engine has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecTarget {
    /// As the path names it.
    pub name: String,
    /// Its image.
    pub image: String,
    /// Its configured user (`Config.User`, which holds the image's `USER`
    /// when the container was created without one); `None` when the
    /// container could not be looked up.
    pub user: Option<String>,
}

/// Builds the request for an exec-create body (`docker exec`): a CONNECT to
/// the container, as Kubernetes' `pods/exec`, whose workload is the one
/// process the exec starts, with the privileges it asks for and the user it
/// runs as — the body's, or else the container's, known only when it is a
/// number or `root` (an empty user is root).
pub fn exec_create(
    body: &str,
    target: &ExecTarget,
    reading: &Reading<'_>,
) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    fields::check(root, &[&fields::EXEC], "", reading.engine, reading.accept)?;
    let mut context = SecurityContext {
        privileged: root.boolean("Privileged", "")?,
        ..SecurityContext::default()
    };
    let given = root.string("User", "")?.unwrap_or_default();
    let user = if given.is_empty() {
        target.user.as_deref()
    } else {
        Some(given)
    };
    match user {
        Some("") => {
            context.run_as_user = Some(0);
            context.run_as_non_root = Some(false);
        }
        Some(spec) => create::apply_user(spec, &mut context),
        None => {}
    }
    let workload = Workload {
        containers: vec![Container {
            image: target.image.clone(),
            security_context: context,
            ..container(&target.name)
        }],
        ..Workload::default()
    };
    Ok(request(
        ("Exec", "containers", Some("exec")),
        Operation::Connect,
        reading,
        Some(target.name.clone()),
        body,
        Some(workload),
    ))
}

/// Builds the request for a volume-create body: a workload of that one
/// volume, so a `local` volume bound to a host path is judged as one.
pub fn volume_create(body: &str, reading: &Reading<'_>) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    fields::check(
        root,
        &[&fields::VOLUME_CREATE],
        "",
        reading.engine,
        reading.accept,
    )?;
    let name = root.string("Name", "")?.unwrap_or_default().to_owned();
    let driver = root.string("Driver", "")?.unwrap_or_default();
    let options = root.string_map("DriverOpts", "")?;
    let volume = if root.field("ClusterVolumeSpec", "")?.is_some() {
        volumes::named(&name, "csi")
    } else {
        volumes::volume(&name, driver, &options)
    };
    let workload = Workload {
        volumes: vec![volume],
        ..Workload::default()
    };
    Ok(request(
        ("Volume", "volumes", None),
        Operation::Create,
        reading,
        Some(name).filter(|name| !name.is_empty()),
        body,
        Some(workload),
    ))
}

/// The drivers of networks that stay off the host's own interfaces.
const CONTAINED_NETWORK_DRIVERS: &[&str] = &["", "bridge", "overlay", "null"];

/// Whether a network of `driver` with `options` puts its containers on the
/// host's network: a `macvlan` or `ipvlan` network on a host interface
/// (`parent`), a bridge network on an existing host bridge, or a driver the
/// proxy does not know.
pub fn network_reaches_host(driver: &str, options: &[(String, String)]) -> bool {
    let option = |key: &str| options.iter().any(|(k, v)| k == key && !v.is_empty());
    driver == "host"
        || option("parent")
        || option("com.docker.network.bridge.name")
        || !matches!(driver, "macvlan" | "ipvlan") && !CONTAINED_NETWORK_DRIVERS.contains(&driver)
}

/// The template network a network-create body names (`ConfigFrom`), to
/// be looked up before it is judged.
pub fn network_template_name(body: &str) -> Result<Option<String>, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    Ok(match root.object("ConfigFrom", "")? {
        Some(config) => config
            .string("Network", "ConfigFrom")?
            .filter(|name| !name.is_empty())
            .map(str::to_owned),
        None => None,
    })
}

/// Builds the request for a network-create body: a workload on that
/// network, so one that reaches the host's interfaces is judged as the
/// host's network. A network made from a template (`ConfigFrom`) is judged
/// by the template's options, which `template` gives (driver, options)
/// when the engine has it.
pub fn network_create(
    body: &str,
    template: Option<(String, Vec<(String, String)>)>,
    reading: &Reading<'_>,
) -> Result<Request, NormalizeError> {
    let value = gojson::parse(body)?;
    let root = value.as_object("")?;
    fields::check(
        root,
        &[&fields::NETWORK_CREATE],
        "",
        reading.engine,
        reading.accept,
    )?;
    let name = root.string("Name", "")?.unwrap_or_default().to_owned();
    let driver = root.string("Driver", "")?.unwrap_or_default().to_owned();
    let mut options = root.string_map("Options", "")?;
    let config_from = match root.object("ConfigFrom", "")? {
        Some(config) => config.string("Network", "ConfigFrom")?.unwrap_or_default(),
        None => "",
    };
    let mut host_network = network_reaches_host(&driver, &options);
    if !config_from.is_empty() {
        match template {
            Some((_, template_options)) => options.extend(template_options),
            // A template the engine does not have makes nothing; one the
            // proxy could not look up is judged the safe way.
            None => host_network = true,
        }
        host_network |= network_reaches_host(&driver, &options);
    }
    let workload = Workload {
        host_network,
        ..Workload::default()
    };
    Ok(request(
        ("Network", "networks", None),
        Operation::Create,
        reading,
        Some(name).filter(|name| !name.is_empty()),
        body,
        Some(workload),
    ))
}

/// Builds the request for an image pull (`docker pull`, and the pull
/// `docker run` does first): no workload, one image.
pub fn image_pull(reference: String, reading: &Reading<'_>) -> Request {
    let object = serde_json::json!({ "fromImage": reference }).to_string();
    let mut pull = request(
        ("Image", "images", None),
        Operation::Create,
        reading,
        Some(reference.clone()),
        &object,
        None,
    );
    pull.images = vec![Image {
        reference,
        containers: Vec::new(),
        verification: None,
    }];
    pull
}

/// Builds the request for `POST /build` (the classic builder) from its
/// query: the build's parameters as the object, and as the workload the
/// container its `RUN` steps run in — the engine's default profiles, and
/// the host's network or another container's with `--network`. The build
/// context is not read; what the Dockerfile runs is the image's business.
pub fn build(query: &[(String, String)], reading: &Reading<'_>) -> (Request, Lookups) {
    let parameter = |key: &str| {
        query
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    let object: serde_json::Map<String, serde_json::Value> = query
        .iter()
        .map(|(key, value)| (key.clone(), value.clone().into()))
        .collect();
    let mut workload = Workload::default();
    let mut lookups = Lookups::default();
    let engine = reading.engine;
    match parameter("networkmode").unwrap_or_default() {
        "host" => workload.host_network = true,
        "" | "default" | "bridge" | "none" => {}
        mode => match mode.strip_prefix("container:") {
            Some(other) => workload.borrowed.push(Borrowed {
                resource: BorrowedResource::Network,
                container: other.to_owned(),
            }),
            None => lookups.networks.push(mode.to_owned()),
        },
    }
    workload.containers.push(Container {
        security_context: SecurityContext {
            seccomp_profile: engine.seccomp.then_some(SecurityProfile::RuntimeDefault),
            app_armor_profile: engine.apparmor.then_some(SecurityProfile::RuntimeDefault),
            ..SecurityContext::default()
        },
        ..container("build")
    });
    let request = request(
        ("Build", "build", None),
        Operation::Create,
        reading,
        parameter("t").map(str::to_owned),
        &serde_json::Value::Object(object).to_string(),
        Some(workload),
    );
    (request, lookups)
}

/// A Docker request of `(kind, resource, sub-resource)`.
fn request(
    (kind, resource, sub_resource): (&str, &str, Option<&str>),
    operation: Operation,
    reading: &Reading<'_>,
    name: Option<String>,
    object: &str,
    workload: Option<Workload>,
) -> Request {
    Request {
        uid: String::new(),
        origin: Origin::Docker,
        operation,
        kind: GroupVersionKind {
            group: "docker".into(),
            version: reading.version_string(),
            kind: kind.into(),
        },
        resource: resource.into(),
        sub_resource: sub_resource.map(Into::into),
        namespace: None,
        name,
        user: UserInfo::default(),
        dry_run: false,
        object: Some(object.to_owned()),
        old_object: None,
        images: workload.as_ref().map(super::images).unwrap_or_default(),
        workload,
    }
}

/// A regular container with nothing set.
fn container(name: &str) -> Container {
    Container {
        name: name.to_owned(),
        kind: ContainerKind::Regular,
        index: 0,
        image: String::new(),
        security_context: SecurityContext::default(),
        ports: Vec::new(),
        volume_mounts: Vec::new(),
        devices: Vec::new(),
        handler_hosts: Vec::new(),
    }
}

/// The workload of `request` read again from `object`, its body after a
/// policy's patch, as the engine it goes to would read it.
pub(crate) fn renormalize(request: &Request, object: &str) -> Result<Workload, NormalizeError> {
    let engine = engine::current();
    let reading = Reading {
        engine: &engine,
        version: engine::leading_version(&request.kind.version),
        accept: Accept::All,
    };
    let name = request.name.clone();
    let reread = match request.kind.kind.as_str() {
        "Container" => normalize(object, name.as_deref(), &reading)?.workload,
        "Service" => service(object, request.operation, name, &reading)?
            .workload
            .unwrap_or_default(),
        "Volume" => volume_create(object, &reading)?
            .workload
            .unwrap_or_default(),
        "Network" => network_create(object, None, &reading)?
            .workload
            .unwrap_or_default(),
        // An exec's user and image come from the container it enters, which
        // its body does not change.
        "Exec" => {
            let target = ExecTarget {
                name: name.unwrap_or_default(),
                image: request
                    .workload
                    .as_ref()
                    .and_then(|w| w.containers.first())
                    .map(|c| c.image.clone())
                    .unwrap_or_default(),
                user: None,
            };
            exec_create(object, &target, &reading)?
                .workload
                .unwrap_or_default()
        }
        _ => request.workload.clone().unwrap_or_default(),
    };
    Ok(reread)
}

#[cfg(test)]
mod tests;
