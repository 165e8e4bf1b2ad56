//! The gateway's container image (`gateway/image/`), as its build script
//! made it before the tests (the README's test command runs
//! `gateway/image/build.sh`, which links the binary statically; a test
//! cannot, as cargo holds the build directory while tests run): holding the
//! static binary and the CA certificates alone; run as the Deployment that
//! `portcullis manifests` prints runs it (read-only root filesystem, uid and
//! gid 65532, no capabilities, its configuration and certificate mounted
//! read-only, a tmpfs for the compilation cache, the same arguments); and
//! registered with a real API server, for which it judges what kubectl
//! sends. `PORTCULLIS_IMAGE` names the image when it is not the one
//! `portcullis manifests` deploys by default.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::docker_support::{Name, engine, engine_socket, succeeds, text};
use crate::kube_support::ControlPlane;
use crate::kubernetes::dry_run_until;
use crate::support::{request, scratch, workspace};
use crate::webhook_support::{certificates, manifests};

/// Runs `gateway/image/build.sh --binary BINARY REFERENCE` against the
/// engine.
fn build_script(binary: &Path, reference: &str) -> Output {
    Command::new(workspace().join("gateway/image/build.sh"))
        .arg("--binary")
        .arg(binary)
        .arg(reference)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", engine_socket().display()),
        )
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("run gateway/image/build.sh")
}

/// The image built by `gateway/image/build.sh`.
struct Image {
    reference: String,
    /// Named by `PORTCULLIS_IMAGE`, not the manifests' default.
    chosen: bool,
}

impl Image {
    /// `$PORTCULLIS_IMAGE`, else `portcullis:VERSION`; panics, naming the
    /// script, when the engine does not have it.
    fn built() -> Self {
        let chosen = std::env::var("PORTCULLIS_IMAGE")
            .ok()
            .filter(|reference| !reference.is_empty());
        let image = Self {
            chosen: chosen.is_some(),
            reference: chosen
                .unwrap_or_else(|| format!("portcullis:{}", env!("CARGO_PKG_VERSION"))),
        };
        let found = engine(&["image", "inspect", "--format", "{{.Id}}", &image.reference]);
        assert!(
            found.status.success(),
            "the engine has no image {0}: build it first with `gateway/image/build.sh {0}` \
             (the README's test command does)\n{1}",
            image.reference,
            text(&found)
        );
        image
    }

    /// `docker image inspect`'s `Config`.
    fn config(&self) -> Value {
        let config = succeeds(&engine(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config}}",
            &self.reference,
        ]));
        serde_json::from_str(&config).expect("JSON")
    }

    /// Every entry but directories in the image's layers, by path, with
    /// its `tar --verbose` mode and owner, as `docker save` writes them.
    fn files(&self) -> BTreeMap<String, (String, String)> {
        let dir = scratch();
        let archive = dir.path().join("image.tar");
        succeeds(&engine(&[
            "save",
            "--output",
            &archive.display().to_string(),
            &self.reference,
        ]));
        tar(&["--extract", "--file"], &archive, dir.path());
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("manifest.json")).expect("read manifest.json"),
        )
        .expect("JSON");
        let mut files = BTreeMap::new();
        for layer in manifest[0]["Layers"].as_array().expect("layers") {
            let layer = dir.path().join(layer.as_str().expect("a layer path"));
            let listing = tar(
                &["--list", "--verbose", "--numeric-owner", "--file"],
                &layer,
                dir.path(),
            );
            for line in listing.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (mode, owner, path) = (fields[0], fields[1], fields[fields.len() - 1]);
                if !mode.starts_with('d') {
                    files.insert(path.to_owned(), (mode.to_owned(), owner.to_owned()));
                }
            }
        }
        files
    }
}

/// Runs `tar ARGS FILE` in `dir`; what it printed.
fn tar(args: &[&str], file: &Path, dir: &Path) -> String {
    let output = Command::new("tar")
        .args(args)
        .arg(file)
        .current_dir(dir)
        .output()
        .expect("run tar");
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The documents of `portcullis manifests`, by kind (one of each here).
fn by_kind(yaml: &str) -> BTreeMap<String, Value> {
    yaml.split("\n---\n")
        .skip(1)
        .map(|document| {
            let value: Value = serde_saphyr::from_str(document).expect("YAML");
            (value["kind"].as_str().expect("a kind").to_owned(), value)
        })
        .collect()
}

/// Writes what a ConfigMap's `data` or a Secret's `data` (base64) holds
/// into `dir`, readable by the container's user as the kubelet's volumes
/// are (0644 files in a 0755 directory).
fn volume(dir: &Path, files: &serde_json::Map<String, Value>, base64: bool) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).expect("create the volume");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, contents) in files {
        let contents = contents.as_str().expect("text");
        let bytes = if base64 {
            base64::engine::general_purpose::STANDARD
                .decode(contents)
                .expect("base64")
        } else {
            contents.as_bytes().to_vec()
        };
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write a volume file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
}

/// Waits until the gateway in `container` says where it listens; panics,
/// with its log, if the container stops first.
fn wait_until_listening(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = engine(&["logs", container]);
        if String::from_utf8_lossy(&logs.stdout).contains("listening on https://") {
            return;
        }
        let running = succeeds(&engine(&[
            "inspect",
            "--format",
            "{{.State.Running}}",
            container,
        ]));
        assert!(
            running.trim() == "true" && Instant::now() < deadline,
            "the gateway did not start in its container: {}",
            text(&logs)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_build_script_refuses_a_binary_that_is_not_static() {
    // Debian's own ls asks for the dynamic loader, as a binary built
    // without the workspace's static target would.
    let refused = build_script(Path::new("/bin/ls"), "portcullis-e2e/never:1");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "error: /bin/ls is dynamically linked (it asks for the program interpreter /"
        ) && stderr.contains("+crt-static"),
        "{stderr}"
    );
    let images = succeeds(&engine(&["images", "--quiet", "portcullis-e2e/never"]));
    assert_eq!(images, "", "nothing was built");
}

#[test]
fn the_image_runs_as_the_deployment_does_and_judges_for_a_real_api_server() {
    let image = Image::built();

    // The binary and the CA certificates, root's and read-only to the
    // user the gateway runs as; nothing else.
    let files = image.files();
    let entry = |mode: &str| (mode.to_owned(), "0/0".to_owned());
    assert_eq!(
        files,
        BTreeMap::from([
            (
                "etc/ssl/certs/ca-certificates.crt".to_owned(),
                entry("-rw-r--r--")
            ),
            ("portcullis".to_owned(), entry("-rwxr-xr-x")),
        ])
    );
    let config = image.config();
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(config["Entrypoint"], json!(["/portcullis"]), "{config}");

    // The Deployment `portcullis manifests` prints for it (by default, or
    // with `--image`).
    let dir = scratch();
    let certs = dir.path().join("certs");
    certificates(&certs);
    let gateway_config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &gateway_config,
        "kubernetes:\n  listen: 127.0.0.1:0\n  tls: {cert: certs/tls.crt, key: certs/tls.key}\npolicies:\n  - {name: pod-security, module: builtin:pod-security}\n",
    )
    .expect("write the configuration");
    let mut args = vec!["--namespace", "admission"];
    if image.chosen {
        args.extend(["--image", &image.reference]);
    }
    let objects = by_kind(&manifests(&gateway_config, &certs, &args));
    let pod = &objects["Deployment"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], image.reference.as_str());
    assert_eq!(
        config["User"],
        format!(
            "{}:{}",
            pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
        )
    );
    assert_eq!(
        config["Cmd"], container["args"],
        "the image's default arguments are the Deployment's"
    );
    // What the docker flags below stand for.
    assert_eq!(
        container["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        })
    );

    // Its volumes: the ConfigMap and the Secret as read-only directories,
    // the memory-backed emptyDir as a tmpfs (both root's and sticky).
    let container_name = Name::new("image");
    let mut run: Vec<String> = [
        "run",
        "--detach",
        "--name",
        &container_name.0,
        "--read-only",
        "--user",
        config["User"].as_str().expect("a user"),
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    .map(String::from)
    .to_vec();
    let volumes = pod["volumes"].as_array().expect("volumes");
    for mount in container["volumeMounts"].as_array().expect("mounts") {
        let path = mount["mountPath"].as_str().expect("a mount path");
        let volume_of = volumes
            .iter()
            .find(|volume| volume["name"] == mount["name"])
            .expect("the mount's volume");
        let source = dir.path().join(mount["name"].as_str().expect("a name"));
        if let Some(config_map) = volume_of.get("configMap") {
            assert_eq!(objects["ConfigMap"]["metadata"]["name"], config_map["name"]);
            volume(
                &source,
                objects["ConfigMap"]["data"].as_object().expect("data"),
                false,
            );
        } else if let Some(secret) = volume_of.get("secret") {
            assert_eq!(objects["Secret"]["metadata"]["name"], secret["secretName"]);
            volume(
                &source,
                objects["Secret"]["data"].as_object().expect("data"),
                true,
            );
        } else {
            assert_eq!(volume_of["emptyDir"]["medium"], "Memory", "{volume_of}");
            run.extend(["--tmpfs".to_owned(), path.to_owned()]);
            continue;
        }
        assert_eq!(mount["readOnly"], true, "{mount}");
        run.extend([
            "--volume".to_owned(),
            format!("{}:{path}:ro", source.display()),
        ]);
    }
    let port = &container["ports"][0]["containerPort"];
    run.extend([
        "--publish".to_owned(),
        format!("127.0.0.1::{port}"),
        image.reference.clone(),
    ]);
    for arg in container["args"].as_array().expect("args") {
        run.push(arg.as_str().expect("an argument").to_owned());
    }
    succeeds(&engine(&run.iter().map(String::as_str).collect::<Vec<_>>()));
    wait_until_listening(&container_name.0);
    let published = succeeds(&engine(&[
        "port",
        &container_name.0,
        &format!("{port}/tcp"),
    ]));
    let address = published
        .lines()
        .next()
        .expect("a published address")
        .trim();

    // Registered out of cluster at the published port (the certificate
    // names 127.0.0.1), it judges what kubectl sends.
    let plane = ControlPlane::start();
    let webhooks = manifests(
        &gateway_config,
        &certs,
        &[
            "--url",
            &format!("https://{address}"),
            "--namespace",
            "admission",
        ],
    );
    let applied = plane.apply(&webhooks, &[]);
    assert!(applied.success, "{applied:?}");
    let privileged = std::fs::read_to_string(request("privileged-pod.yaml")).expect("read");
    dry_run_until(&plane, &privileged, |probe| {
        probe.stderr.contains("denied the request")
    });
    let denied = plane.apply(&privileged, &[]);
    assert!(!denied.success, "{denied:?}");
    assert!(
        denied.stderr.contains("Error from server (Forbidden)")
            && denied.stderr.contains(
                "pod-security: violates PodSecurity \"baseline:latest\": privileged (container \"nginx\" must not set securityContext.privileged=true)"
            ),
        "{}",
        denied.stderr
    );
    let nginx = std::fs::read_to_string(request("nginx-pod.yaml")).expect("read");
    let admitted = plane.apply(&nginx, &[]);
    assert!(admitted.success, "{admitted:?}");
    assert!(
        admitted.stdout.contains("pod/nginx created"),
        "{admitted:?}"
    );

    // Along the way the gateway warned of nothing: no cache it could not
    // use, no write the root refused; its log holds its start-up summary.
    let logs = engine(&["logs", &container_name.0]);
    let log = String::from_utf8_lossy(&logs.stderr);
    assert!(
        log.contains("portcullis starting") && !log.contains(" WARN ") && !log.contains(" ERROR "),
        "{}",
        text(&logs)
    );
}
