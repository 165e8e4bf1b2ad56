//! Every spelling of a governed image name gets that rule's verdict, through
//! `portcullis verify`, the webhook and the Docker proxy, against a real
//! registry: host names in any case, ports with leading zeros, the
//! IPv4-mapped IPv6 form of the registry's address, and rule patterns and
//! registry settings written in such spellings too. Names whose spellings
//! cannot all be told apart are refused whatever the default.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::docker_support::{
    IMAGE, Name, Proxy, engine, engine_socket, refused, succeeds, test_image, text,
};
use crate::registry_support::{Key, Registry, payload, signed_layer, verify};
use crate::support::{portcullis, scratch};
use crate::webhook_support::{Server, patch_of, pod_review};

/// A registry holding, under `team/`, an image signed by the team's key
/// (`signed`), one signed by another key (`other`) and an unsigned one
/// (`unsigned`); and `misc/app`, signed by the other key.
struct Fixture {
    registry: Registry,
    team: Key,
    other: Key,
    /// The digest of `team/signed:1`.
    signed: String,
}

impl Fixture {
    fn new() -> Self {
        let registry = Registry::start(None);
        let team = Key::new();
        let other = Key::new();
        let signed = registry.push_image("team/signed", "1", "spellings-signed");
        sign(&registry, &team, "team/signed", &signed);
        let by_other = registry.push_image("team/other", "1", "spellings-other");
        sign(&registry, &other, "team/other", &by_other);
        registry.push_image("team/unsigned", "1", "spellings-unsigned");
        let misc = registry.push_image("misc/app", "1", "spellings-misc");
        sign(&registry, &other, "misc/app", &misc);
        Self {
            registry,
            team,
            other,
            signed,
        }
    }

    fn port(&self) -> &str {
        self.registry
            .host
            .rsplit_once(':')
            .map(|(_, port)| port)
            .expect("a port")
    }

    /// The registry's two names, each in its canonical form.
    fn canonical_hosts(&self) -> [String; 2] {
        [
            format!("localhost:{}", self.port()),
            self.registry.host.clone(),
        ]
    }

    /// Every spelling of the registry's two names, each with its canonical
    /// form.
    fn spellings(&self) -> Vec<(String, String)> {
        let port = self.port();
        let [localhost, address] = self.canonical_hosts();
        [
            (format!("localhost:{port}"), &localhost),
            (format!("LOCALHOST:{port}"), &localhost),
            (format!("LocalHost:{port}"), &localhost),
            (format!("localhost:0{port}"), &localhost),
            (format!("LOCALHOST:000{port}"), &localhost),
            (format!("127.0.0.1:{port}"), &address),
            (format!("127.0.0.1:0{port}"), &address),
            (format!("[::ffff:7f00:1]:{port}"), &address),
            (format!("[0:0:0:0:0:FFFF:7F00:0001]:{port}"), &address),
        ]
        .into_iter()
        .map(|(spelling, canonical)| (spelling, canonical.clone()))
        .collect()
    }

    /// Writes the public keys into `dir`; returns the `images` section's
    /// `registries` and the team rule, each written in a spelling of its
    /// own, to be canonicalized at load.
    fn images(&self, dir: &Path) -> String {
        self.team.write_public(&dir.join("team.pub"));
        self.other.write_public(&dir.join("other.pub"));
        let port = self.port();
        format!(
            "  registries:\n    \"LOCALHOST:0{port}\": {{insecure: true}}\n    \"127.0.0.1:{port}\": {{insecure: true}}\n  rules:\n    - {{name: team, match: [\"LocalHost:{port}/team/**\", \"127.0.0.1:00{port}/team/**\"], any_of: [{{key: team.pub}}]}}\n"
        )
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

/// The catch-all rule behind the team's: any image signed by the other key.
const CATCH_ALL: &str = "    - {name: anything, match: [\"**\"], any_of: [{key: other.pub}]}\n";

fn write_config(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write the configuration");
    path
}

#[test]
fn every_spelling_of_a_governed_name_gets_its_rules_verdict_from_portcullis_verify() {
    let fixture = Fixture::new();
    let dir = scratch();
    let images = fixture.images(dir.path());
    let behind_catch_all = write_config(
        dir.path(),
        "catch-all.yaml",
        &format!("policies: []\nimages:\n{images}{CATCH_ALL}"),
    );
    let allow_the_rest = write_config(
        dir.path(),
        "allow.yaml",
        &format!("policies: []\nimages:\n  default: allow\n{images}"),
    );
    for (host, canonical) in fixture.spellings() {
        let image = format!("{host}/team/signed:1");
        let (run, verdict) = verify(&behind_catch_all, &image);
        assert_eq!(run.status, 0, "{image} should verify: {run:?}");
        assert_eq!(verdict["rule"], "team", "{image}: {verdict:#}");
        assert_eq!(verdict["digest"], fixture.signed.as_str());
        assert_eq!(verdict["canonical"], format!("{canonical}/team/signed:1"));

        // The catch-all would take the other key's signature; the team's
        // rule governs every spelling of its names, and does not.
        let image = format!("{host}/team/other:1");
        let (run, verdict) = verify(&behind_catch_all, &image);
        assert_eq!(run.status, 1, "{image} should not verify: {run:?}");
        assert_eq!(verdict["rule"], "team", "{image}: {verdict:#}");
        let reason = verdict["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("does not verify with this key"),
            "{image}: {reason}"
        );

        // Under `default: allow`, no spelling of a governed name is
        // unmatched, so none runs unsigned.
        let image = format!("{host}/team/unsigned:1");
        let (run, verdict) = verify(&allow_the_rest, &image);
        assert_eq!(run.status, 1, "{image}: {run:?}");
        assert_eq!(verdict["allowed"], false, "{image}: {verdict:#}");
        assert_eq!(verdict["rule"], "team", "{image}: {verdict:#}");
        let reason = verdict["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("no signature"), "{image}: {reason}");

        // What no rule governs still takes the default, in any spelling.
        let image = format!("{host}/misc/app:1");
        let (_, verdict) = verify(&allow_the_rest, &image);
        assert_eq!(verdict["allowed"], true, "{image}: {verdict:#}");
        assert_eq!(verdict["rule"], Value::Null, "{image}: {verdict:#}");
        let (run, verdict) = verify(&behind_catch_all, &image);
        assert_eq!(run.status, 0, "{image}: {run:?}");
        assert_eq!(verdict["rule"], "anything");
    }

    // Names whose spellings cannot all be told are refused as references,
    // whatever the default.
    let port = fixture.port();
    for (image, words) in [
        (format!("127.1:{port}/team/unsigned:1"), "reads as a number"),
        (
            format!("127.000.000.001:{port}/team/unsigned:1"),
            "reads as a number",
        ),
        (
            format!("localhost:{port}/Team/unsigned:1"),
            "must be lowercase",
        ),
        (
            format!("localhost:{port}0000000/team/unsigned:1"),
            "not one a connection can be made to",
        ),
        (
            format!("[::1%lo]:{port}/team/unsigned:1"),
            "not a registry host",
        ),
    ] {
        let (run, _) = verify(&allow_the_rest, &image);
        assert_eq!(run.status, 2, "{image}: {run:?}");
        assert!(
            run.stderr.contains("is not an image reference") && run.stderr.contains(words),
            "{image}: expected {words:?}: {run:?}"
        );
    }

    // Registry settings written for two spellings of one registry fight:
    // refused at load, naming both.
    let twice = write_config(
        dir.path(),
        "twice.yaml",
        &format!(
            "policies: []\nimages:\n  registries:\n    \"localhost:{port}\": {{insecure: true}}\n    \"LOCALHOST:0{port}\": {{}}\n"
        ),
    );
    let run = portcullis(["check".as_ref(), "--config".as_ref(), twice.as_os_str()]);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(
        run.stderr.contains("names the same registry")
            && run.stderr.contains(&format!("localhost:{port}")),
        "{run:?}"
    );
}

/// A `registry.example.com:443` spelling cannot reach a test registry
/// (there is none on 443), but it must be judged by the rule written for
/// `registry.example.com`, not fall to the default.
#[test]
fn the_https_port_spelt_out_is_the_same_registry_to_rules() {
    let dir = scratch();
    Key::new().write_public(&dir.path().join("team.pub"));
    let config = write_config(
        dir.path(),
        "portcullis.yaml",
        "policies: []\nimages:\n  default: allow\n  timeout: 1s\n  rules:\n    - {name: team, match: [\"Registry.Example.com/team/*\"], any_of: [{key: team.pub}]}\n",
    );
    for image in [
        "registry.example.com:443/team/app:1",
        "REGISTRY.EXAMPLE.COM:0443/team/app:1",
        "registry.example.com/team/app:1",
    ] {
        let (run, verdict) = verify(&config, image);
        assert_eq!(run.status, 1, "{image}: {run:?}");
        assert_eq!(verdict["rule"], "team", "{image}: {verdict:#}");
        assert_eq!(verdict["allowed"], false, "{image}: {verdict:#}");
        assert_eq!(verdict["canonical"], "registry.example.com/team/app:1");
    }
    let (_, verdict) = verify(&config, "registry.example.com:8443/team/app:1");
    assert_eq!(
        verdict["allowed"], true,
        "another port is another registry: {verdict:#}"
    );
}

#[test]
fn every_spelling_of_a_governed_name_gets_its_rules_verdict_from_the_webhook() {
    let fixture = Fixture::new();
    let dir = scratch();
    crate::webhook_support::certificates(&dir.path().join("certs"));
    let config = write_config(
        dir.path(),
        "portcullis.yaml",
        &format!(
            "kubernetes:\n  listen: 127.0.0.1:0\n  tls: {{cert: certs/tls.crt, key: certs/tls.key}}\nimages:\n{}{CATCH_ALL}policies: []\n",
            fixture.images(dir.path())
        ),
    );
    let server = Server::with_config(dir, &config);
    let mut client = server.connect();
    let pod = |image: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "app", "image": image}]}})
    };
    let message = |answer: &Value| {
        answer["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for (host, canonical) in fixture.spellings() {
        // Pinned to the digest verified, under the canonical name.
        let image = format!("{host}/team/signed:1");
        let answer = client.review("/mutate", &pod_review(pod(&image)));
        assert_eq!(answer["allowed"], true, "{image}: {answer}");
        let patch = patch_of(&answer);
        assert_eq!(
            patch,
            json!([{"op": "replace", "path": "/spec/containers/0/image",
                    "value": format!("{canonical}/team/signed:1@{}", fixture.signed)}]),
            "{image}"
        );

        let image = format!("{host}/team/other:1");
        let answer = client.review("/validate", &pod_review(pod(&image)));
        assert_eq!(answer["allowed"], false, "{image}: {answer}");
        assert!(
            message(&answer).contains(&format!(
                "image {image}: no signature from an authority of rule `team`"
            )),
            "{image}: {}",
            message(&answer)
        );

        let image = format!("{host}/team/unsigned:1");
        let answer = client.review("/validate", &pod_review(pod(&image)));
        assert_eq!(answer["allowed"], false, "{image}: {answer}");
        assert!(
            message(&answer).contains(&format!("image {image}: no signature")),
            "{image}: {}",
            message(&answer)
        );
    }
    let image = format!("localhost:{}/Team/signed:1", fixture.port());
    let answer = client.review("/validate", &pod_review(pod(&image)));
    assert_eq!(answer["allowed"], false, "{image}: {answer}");
    assert!(
        message(&answer).contains("must be lowercase"),
        "{}",
        message(&answer)
    );
}

/// Names given on the engine by this test, removed when dropped.
struct Untag(Vec<String>);

impl Drop for Untag {
    fn drop(&mut self) {
        let mut args = vec!["rmi", "--no-prune"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = engine(&args);
    }
}

/// Percent-encodes what a query value cannot carry as is.
fn query_value(text: &str) -> String {
    text.replace('%', "%25")
        .replace('[', "%5B")
        .replace(']', "%5D")
        .replace('/', "%2F")
        .replace(':', "%3A")
}

#[test]
fn every_spelling_of_a_governed_name_gets_its_rules_verdict_from_the_docker_proxy() {
    test_image();
    let fixture = Fixture::new();
    let [localhost, _] = fixture.canonical_hosts();
    // The team's signed image, runnable: the test image pushed under the
    // team's name and signed.
    let signed = format!("{localhost}/team/app:1");
    let mut tags = Untag(vec![signed.clone()]);
    succeeds(&engine(&["tag", IMAGE, &signed]));
    succeeds(&engine(&["push", &signed]));
    let digest = fixture.registry.digest("team/app", "1");
    tags.0.push(format!("{localhost}/team/app@{digest}"));
    sign(&fixture.registry, &fixture.team, "team/app", &digest);

    let dir = scratch();
    let socket = dir.path().join("docker.sock");
    let config = write_config(
        dir.path(),
        "portcullis.yaml",
        &format!(
            "docker:\n  listen: unix://{}\n  upstream: unix://{}\n  access: {{image-import: write}}\nimages:\n  default: allow\n{}policies: []\n",
            socket.display(),
            engine_socket().display(),
            fixture.images(dir.path())
        ),
    );
    let proxy = Proxy::with_config(dir, &config, socket);

    for (host, _) in fixture.spellings() {
        // Unsigned under any spelling: the team's rule refuses it, where the
        // default would have let it run.
        let image = format!("{host}/team/unsigned:1");
        refused(
            &proxy.docker(&["run", "--rm", &image, "true"]),
            &format!("image {image}: no signature"),
        );

        // No spelling of a governed name can be given to a local image.
        let target = format!("{host}/team/app");
        let (status, body) = proxy.post(
            &format!(
                "/v1.41/images/{IMAGE}/tag?repo={}&tag=1",
                query_value(&target)
            ),
            "",
        );
        assert_eq!(status, 403, "{target}: {body}");
        assert!(
            body.contains("governed by image rule `team`"),
            "{target}: {body}"
        );
        // The canonical name is the signed image's own; no other spelling
        // may exist on the engine.
        if host != localhost {
            tags.0.push(format!("{target}:1"));
            let inspected = engine(&["image", "inspect", &format!("{target}:1")]);
            assert!(
                !inspected.status.success(),
                "{target}:1 was tagged: {}",
                text(&inspected)
            );
        }
    }

    // Through the docker CLI too, which sends the target as written.
    for host in [
        format!("LOCALHOST:{}", fixture.port()),
        format!("localhost:0{}", fixture.port()),
    ] {
        let target = format!("{host}/team/app:2");
        tags.0.push(target.clone());
        refused(
            &proxy.docker(&["tag", IMAGE, &target]),
            "governed by image rule `team`",
        );
    }

    // The signed image under another spelling runs, pinned to its digest
    // under the canonical name.
    let container = Name::new("spelling");
    let image = format!("LOCALHOST:0{}/team/app:1", fixture.port());
    assert_eq!(
        succeeds(&proxy.docker(&["run", "--name", &container.0, &image, "echo", "hi"])),
        "hi\n"
    );
    let ran = succeeds(&engine(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &container.0,
    ]));
    assert_eq!(ran.trim(), format!("{signed}@{digest}"));

    // And when the engine does not have it yet: the CLI pulls under its own
    // spelling, the proxy pulls under the canonical name the create is
    // pinned to, and the retried create finds it.
    drop(container);
    let _ = engine(&[
        "rmi",
        "-f",
        &signed,
        &format!("{localhost}/team/app@{digest}"),
    ]);
    let pulled = Name::new("spelling-pulled");
    let output = proxy.docker(&["run", "--name", &pulled.0, &image, "echo", "pulled"]);
    assert_eq!(succeeds(&output), "pulled\n", "{}", text(&output));
}
