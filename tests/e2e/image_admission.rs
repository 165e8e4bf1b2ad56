//! Verified images through both front doors: the Docker proxy runs signed
//! images pinned to their digests and refuses the rest; the webhook patches
//! tags to digests and denies unsigned images; policies see the verdicts.

use serde_json::json;

use crate::docker_support::{
    IMAGE, Name, Proxy, engine, engine_socket, refused, succeeds, test_image, text,
};
use crate::registry_support::{Key, Registry, attestation_layer, payload, signed_layer};
use crate::support::{scratch, test_policy};
use crate::webhook_support::{Server, patch_of, pod_review, review};

/// Image names this test gave on the engine, removed when dropped.
struct Untag(Vec<String>);

impl Drop for Untag {
    fn drop(&mut self) {
        let mut args = vec!["rmi", "--no-prune"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = engine(&args);
    }
}

/// Signs `digest` of `repository` with `key`, as cosign would.
fn sign(registry: &Registry, key: &Key, repository: &str, digest: &str) {
    let signed = payload(&registry.name(repository), digest);
    registry.attach(
        repository,
        digest,
        "sig",
        &[signed_layer(signed.clone(), key.sign(&signed))],
    );
}

/// The `images` section for `registry`: `signed/**` needs `key.pub`.
fn images(registry: &Registry) -> String {
    format!(
        "images:\n  registries:\n    \"{host}\": {{insecure: true}}\n  rules:\n    - {{name: signed, match: [\"{host}/signed/**\"], any_of: [{{key: key.pub}}]}}\n",
        host = registry.host
    )
}

#[test]
fn docker_runs_only_verified_images_pinned_to_their_digest() {
    test_image();
    let registry = Registry::start(None);
    let key = Key::new();
    let signed = registry.name("signed/app:1");
    let unsigned = registry.name("signed/unsigned:1");
    // A different local image: what an attacker would like to run under
    // the signed name.
    let impostor = "portcullis-test/impostor:1";
    let dir = scratch();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nRUN echo impostor > /marker\n"),
    )
    .expect("write the Dockerfile");
    succeeds(&crate::docker_support::docker_at(
        &engine_socket(),
        &[
            "build",
            "-q",
            "-t",
            impostor,
            &dir.path().display().to_string(),
        ],
    ));
    let mut tags = Untag(vec![signed.clone(), unsigned.clone(), impostor.to_owned()]);
    for (local, remote) in [(IMAGE, &signed), (impostor, &unsigned)] {
        succeeds(&engine(&["tag", local, remote]));
        succeeds(&engine(&["push", remote]));
    }
    let digest = registry.digest("signed/app", "1");
    // The engine also keeps what it pushed by digest.
    tags.0
        .push(format!("{}@{digest}", registry.name("signed/app")));
    tags.0.push(format!(
        "{}@{}",
        registry.name("signed/unsigned"),
        registry.digest("signed/unsigned", "1")
    ));
    sign(&registry, &key, "signed/app", &digest);

    let dir = scratch();
    key.write_public(&dir.path().join("key.pub"));
    let socket = dir.path().join("docker.sock");
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "docker:\n  listen: unix://{}\n  upstream: unix://{}\n  access: {{image-import: write}}\n{}policies: []\n",
            socket.display(),
            engine_socket().display(),
            images(&registry)
        ),
    )
    .expect("write the configuration");
    let proxy = Proxy::with_config(dir, &config, socket);

    // The signed image runs, pinned to the digest that was verified.
    let container = Name::new("signed");
    assert_eq!(
        succeeds(&proxy.docker(&["run", "--name", &container.0, &signed, "echo", "hi"])),
        "hi\n"
    );
    let image = succeeds(&engine(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &container.0,
    ]));
    assert_eq!(image.trim(), format!("{signed}@{digest}"));

    // The unsigned one is refused, with the reason.
    refused(
        &proxy.docker(&["run", "--rm", &unsigned, "true"]),
        &format!("image {unsigned}: no signature"),
    );

    // A local image cannot take the signed name through the proxy...
    refused(
        &proxy.docker(&["tag", impostor, &signed]),
        "governed by image rule `signed`",
    );
    // ...and where it got it behind the proxy's back, the signed image runs
    // all the same.
    succeeds(&engine(&["tag", impostor, &signed]));
    // The signed image has no /marker: cat runs there, and fails.
    let ran = proxy.docker(&["run", "--rm", &signed, "cat", "/marker"]);
    assert!(
        !String::from_utf8_lossy(&ran.stdout).contains("impostor"),
        "the impostor ran: {}",
        text(&ran)
    );
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        !ran.status.success() && stderr.contains("/marker") && !stderr.contains("portcullis"),
        "the signed image should have run, without /marker: {}",
        text(&ran)
    );
    succeeds(&engine(&["tag", IMAGE, &signed]));

    // Not there locally: the CLI pulls (through the proxy) and retries.
    let _ = engine(&[
        "rmi",
        &signed,
        &format!("{}@{digest}", registry.name("signed/app")),
    ]);
    assert_eq!(
        succeeds(&proxy.docker(&["run", "--rm", &signed, "echo", "again"])),
        "again\n"
    );
}

#[test]
fn the_webhook_pins_verified_images_and_denies_the_rest() {
    let registry = Registry::start(None);
    let key = Key::new();
    let good = registry.push_image("signed/app", "1", "webhook-good");
    sign(&registry, &key, "signed/app", &good);
    registry.push_image("signed/unsigned", "1", "webhook-unsigned");
    // Attested builds: the policy wants the trusted builder.
    let provenance = "https://slsa.dev/provenance/v1";
    let attested = |repository: &str, builder: &str| {
        let digest = registry.push_image(repository, "1", repository);
        sign(&registry, &key, repository, &digest);
        registry.attach(
            repository,
            &digest,
            "att",
            &[attestation_layer(
                &digest,
                &registry.name(repository),
                provenance,
                json!({"runDetails": {"builder": {"id": builder}}}),
                &key,
            )],
        );
    };
    attested("built/trusted", "https://builder.example/trusted");
    attested("built/homemade", "https://laptop.example");

    let dir = scratch();
    key.write_public(&dir.path().join("key.pub"));
    crate::webhook_support::certificates(&dir.path().join("certs"));
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes:\n  listen: 127.0.0.1:0\n  tls: {{cert: certs/tls.crt, key: certs/tls.key}}\n{}    - name: built\n      match: [\"{host}/built/**\"]\n      any_of: [{{key: key.pub}}]\n      attestations: [{{predicate_type: \"{provenance}\"}}]\npolicies:\n  - name: trusted-builder\n    module: {}\n    settings: {{behaviour: attested, field: /runDetails/builder/id, expected: \"https://builder.example/trusted\"}}\n    match: {{namespaces: {{include: [builds]}}}}\n",
            images(&registry),
            test_policy().display(),
            host = registry.host,
        ),
    )
    .expect("write the configuration");
    let server = Server::with_config(dir, &config);
    let mut client = server.connect();
    let pod = |image: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "app", "image": image}]}})
    };

    // Mutating: the tag is pinned to the digest that was verified.
    let answer = client.review("/mutate", &pod_review(pod(&registry.name("signed/app:1"))));
    assert_eq!(answer["allowed"], true, "{answer}");
    let patch = patch_of(&answer);
    assert_eq!(
        patch,
        json!([{"op": "replace", "path": "/spec/containers/0/image",
                "value": format!("{}@{good}", registry.name("signed/app:1"))}])
    );
    // Validating: no patch, and unsigned images are denied with the reason.
    let answer = client.review(
        "/validate",
        &pod_review(pod(&registry.name("signed/app:1"))),
    );
    assert_eq!(answer["allowed"], true, "{answer}");
    assert!(answer.get("patch").is_none(), "{answer}");
    let unsigned = registry.name("signed/unsigned:1");
    let answer = client.review("/validate", &pod_review(pod(&unsigned)));
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("image {unsigned}: no signature")),
        "{message}"
    );

    // The second look at the signed image came from the verdict cache.
    let (_, metrics) = client.get("/metrics");
    for line in [
        "portcullis_image_verifications_total{outcome=\"verified\",cache=\"miss\"} 1",
        "portcullis_image_verifications_total{outcome=\"verified\",cache=\"hit\"} 1",
        "portcullis_image_verifications_total{outcome=\"denied\",cache=\"miss\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // Policies judge attested predicates.
    let in_builds = |image: &str| {
        let mut review = review("CREATE", ("", "v1", "Pod"), "pods", None, pod(image));
        review["request"]["namespace"] = json!("builds");
        review
    };
    let answer = client.review("/validate", &in_builds(&registry.name("built/trusted:1")));
    assert_eq!(answer["allowed"], true, "{answer}");
    let answer = client.review("/validate", &in_builds(&registry.name("built/homemade:1")));
    assert_eq!(answer["allowed"], false, "{answer}");
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("trusted-builder")
            && message.contains("no attestation with /runDetails/builder/id"),
        "{message}"
    );
}
