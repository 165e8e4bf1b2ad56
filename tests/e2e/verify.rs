//! Image verification against a real registry, through `portcullis verify`:
//! key-based and keyless signatures, cosign v3 bundles among the referrers,
//! attestations, credentials, registry failures, and the signatures the
//! real cosign made.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::registry_support::{
    Authority, BUNDLE, Key, Log, Registry, SIMPLE_SIGNING, SignatureLayer, attestation_layer,
    attestation_layer_as, base64, cosign_v3_bundle, cosign_v3_bundle_as, hashed_rekord, payload,
    sha256_hex, signed_layer, verify,
};
use crate::support::{portcullis, scratch, shared_fixtures};

/// Makes the signed payload and signature of an image name and digest.
type Signing<'a> = dyn Fn(&str, &str) -> (Vec<u8>, String) + 'a;

fn verified(config: &Path, image: &str) -> Value {
    let (run, verdict) = verify(config, image);
    assert_eq!(run.status, 0, "{image} should verify: {verdict:#}");
    assert_eq!(verdict["verified"], true);
    verdict
}

fn refused(config: &Path, image: &str, reason: &str) -> Value {
    let (run, verdict) = verify(config, image);
    assert_eq!(run.status, 1, "{image} should not verify: {verdict:#}");
    assert_eq!(verdict["verified"], false);
    let said = verdict["reason"].as_str().unwrap_or_default();
    assert!(
        said.contains(reason),
        "{image}: expected {reason:?}, got {said:?}"
    );
    verdict
}

/// Writes a configuration whose `images` section is `images` (YAML lines
/// indented by two) and returns its path.
fn images_config(dir: &Path, images: &str) -> std::path::PathBuf {
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, format!("policies: []\nimages:\n{images}"))
        .expect("write the configuration");
    path
}

fn insecure(registry: &Registry) -> String {
    format!(
        "  registries:\n    \"{}\": {{insecure: true}}\n",
        registry.host
    )
}

#[test]
fn key_signatures_are_verified_and_each_forgery_named() {
    let registry = Registry::start(None);
    let dir = scratch();
    let key = Key::new();
    let other = Key::new();
    key.write_public(&dir.path().join("team.pub"));
    let config = images_config(
        dir.path(),
        &format!(
            "{}  rules:\n    - {{name: team, match: [\"{}/team/**\"], any_of: [{{key: team.pub}}]}}\n",
            insecure(&registry),
            registry.host
        ),
    );
    let sign = |repository: &str, marker: &str, layer: &Signing<'_>| {
        let digest = registry.push_image(repository, "1", marker);
        let (signed, signature) = layer(&registry.name(repository), &digest);
        registry.attach(
            repository,
            &digest,
            "sig",
            &[signed_layer(signed, signature)],
        );
        digest
    };
    let good = |name: &str, digest: &str| {
        let signed = payload(name, digest);
        let signature = key.sign(&signed);
        (signed, signature)
    };
    let digest = sign("team/good", "good", &good);
    let verdict = verified(&config, &registry.name("team/good:1"));
    assert_eq!(verdict["digest"], digest.as_str());
    assert_eq!(verdict["rule"], "team");
    assert!(
        verdict["authority"]
            .as_str()
            .unwrap_or_default()
            .contains("team.pub"),
        "{verdict}"
    );
    // By digest too, with no tag to resolve.
    verified(&config, &format!("{}@{digest}", registry.name("team/good")));

    registry.push_image("team/unsigned", "1", "unsigned");
    refused(&config, &registry.name("team/unsigned:1"), "no signature");

    sign("team/other-key", "other-key", &|name, digest| {
        let signed = payload(name, digest);
        let signature = other.sign(&signed);
        (signed, signature)
    });
    refused(
        &config,
        &registry.name("team/other-key:1"),
        "the signature does not verify with this key",
    );

    // A genuine signature, of another image, stored beside this one.
    let elsewhere = registry.push_image("team/elsewhere", "1", "elsewhere");
    sign("team/replayed", "replayed", &|name, _| {
        good(name, &elsewhere)
    });
    refused(
        &config,
        &registry.name("team/replayed:1"),
        &format!("the signature is for {elsewhere}"),
    );

    // A signature whose bytes were changed after signing.
    sign("team/tampered", "tampered", &|name, digest| {
        let (signed, signature) = good(name, digest);
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(&signature)
            .expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        (signed, base64(&bytes))
    });
    refused(
        &config,
        &registry.name("team/tampered:1"),
        "the signature does not verify",
    );

    // An image no rule covers, under `default: deny` (the default).
    registry.push_image("elsewhere/app", "1", "no-rule");
    refused(
        &config,
        &registry.name("elsewhere/app:1"),
        "no image rule matches",
    );
    // A tag that is not there.
    refused(
        &config,
        &registry.name("team/good:2"),
        "not found in the registry",
    );

    // What cannot be used at all: exit 2, with the reason.
    let unusable = |config: &Path, image: &str, words: &str| {
        let run = portcullis([
            "verify".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            image.as_ref(),
        ]);
        assert_eq!(run.status, 2, "{run:?}");
        assert!(run.stderr.contains(words), "{words}: {run:?}");
    };
    unusable(&config, "Not A/Reference", "is not an image reference");
    unusable(
        &images_config(dir.path(), "  default: sometimes\n"),
        "nginx",
        "images.default",
    );
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, "policies: []\n").expect("write");
    unusable(&plain, "nginx", "no `images` section");
    // A key file that is not there stops `check` (and `serve`) with its name.
    let missing = images_config(
        dir.path(),
        "  rules:\n    - {match: [\"**\"], any_of: [{key: absent.pub}]}\n",
    );
    let run = portcullis(["check".as_ref(), "--config".as_ref(), missing.as_os_str()]);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(run.stderr.contains("absent.pub"), "{run:?}");
}

#[test]
fn credentials_are_used_and_registry_failures_are_not_called_unsigned() {
    let registry = Registry::start(Some(("ci", "s3cret")));
    let dir = scratch();
    let key = Key::new();
    key.write_public(&dir.path().join("key.pub"));
    let digest = registry.push_image("app", "1", "authenticated");
    let signed = payload(&registry.name("app"), &digest);
    registry.attach(
        "app",
        &digest,
        "sig",
        &[signed_layer(signed.clone(), key.sign(&signed))],
    );
    let rules = |host: &str| {
        format!(
            "  rules:\n    - {{name: all, match: [\"{host}/**\"], any_of: [{{key: key.pub}}]}}\n"
        )
    };
    let image = registry.name("app:1");

    // Credentials from the configuration, from a password file, and from a
    // docker config.json.
    let with_password = images_config(
        dir.path(),
        &format!(
            "  registries:\n    \"{}\": {{insecure: true, username: ci, password: s3cret}}\n{}",
            registry.host,
            rules(&registry.host)
        ),
    );
    verified(&with_password, &image);
    std::fs::write(dir.path().join("password"), "s3cret\n").expect("write");
    let with_file = images_config(
        dir.path(),
        &format!(
            "  registries:\n    \"{}\": {{insecure: true, username: ci, password_file: password}}\n{}",
            registry.host,
            rules(&registry.host)
        ),
    );
    verified(&with_file, &image);
    std::fs::write(
        dir.path().join("config.json"),
        json!({"auths": {registry.host.clone(): {"auth": base64(b"ci:s3cret")}}}).to_string(),
    )
    .expect("write");
    let with_docker_config = images_config(
        dir.path(),
        &format!(
            "  docker_config: config.json\n{}{}",
            insecure(&registry),
            rules(&registry.host)
        ),
    );
    verified(&with_docker_config, &image);

    // No credentials, and wrong ones: the registry refuses, and says so.
    let anonymous = images_config(
        dir.path(),
        &format!("{}{}", insecure(&registry), rules(&registry.host)),
    );
    refused(&anonymous, &image, "refused access");
    let wrong = images_config(
        dir.path(),
        &format!(
            "  registries:\n    \"{}\": {{insecure: true, username: ci, password: wrong}}\n{}",
            registry.host,
            rules(&registry.host)
        ),
    );
    refused(&wrong, &image, "refused access");

    // A registry that takes bearer tokens from a token service: the
    // credentials buy a token.
    let hub = Registry::with_token_service(("ci", "s3cret"));
    let digest = hub.push_image("app", "1", "token");
    let signed = payload(&hub.name("app"), &digest);
    hub.attach(
        "app",
        &digest,
        "sig",
        &[signed_layer(signed.clone(), key.sign(&signed))],
    );
    let with_token = images_config(
        dir.path(),
        &format!(
            "  registries:\n    \"{}\": {{insecure: true, username: ci, password: s3cret}}\n{}",
            hub.host,
            rules(&hub.host)
        ),
    );
    verified(&with_token, &hub.name("app:1"));
    let without = images_config(
        dir.path(),
        &format!("{}{}", insecure(&hub), rules(&hub.host)),
    );
    refused(&without, &hub.name("app:1"), "refused access");

    // Nothing listening: unreachable, not unsigned.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = closed.local_addr().expect("address").to_string();
    drop(closed);
    let nobody = images_config(
        dir.path(),
        &format!(
            "  registries:\n    \"{host}\": {{insecure: true}}\n{}",
            rules(&host)
        ),
    );
    let verdict = refused(&nobody, &format!("{host}/app:1"), "unreachable");
    assert!(
        !verdict["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("no signature")
    );

    // A registry that accepts connections and never answers: the deadline.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = silent.local_addr().expect("address").to_string();
    let held = std::thread::spawn(move || {
        let connections: Vec<_> = silent.incoming().take(1).collect();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(connections);
    });
    let slow = images_config(
        dir.path(),
        &format!(
            "  timeout: 1s\n  registries:\n    \"{host}\": {{insecure: true}}\n{}",
            rules(&host)
        ),
    );
    refused(&slow, &format!("{host}/app:1"), "did not answer within 1s");
    held.join().expect("the silent registry");
}

/// A keyless signature: a certificate for `key` from `authority`, naming
/// `email` and `issuer` (and `issuer_v2` in Fulcio's newer extension),
/// with `chain` beside it, logged by `log` at `time`.
struct Keyless<'a> {
    authority: &'a Authority,
    log: Option<&'a Log>,
    email: &'a str,
    issuer: &'a str,
    issuer_v2: Option<&'a str>,
    chain: Option<&'a str>,
    valid: (i64, i64),
    logged_at: i64,
}

impl Keyless<'_> {
    fn layer(&self, name: &str, digest: &str) -> SignatureLayer {
        let key = Key::new();
        let certificate =
            self.authority
                .issue_naming(&key, self.email, self.issuer, self.issuer_v2, self.valid);
        let signed = payload(name, digest);
        let signature = key.sign(&signed);
        let mut annotations = BTreeMap::from([
            (
                "dev.cosignproject.cosign/signature".to_owned(),
                signature.clone(),
            ),
            (
                "dev.sigstore.cosign/certificate".to_owned(),
                certificate.clone(),
            ),
        ]);
        if let Some(chain) = self.chain {
            annotations.insert("dev.sigstore.cosign/chain".to_owned(), chain.to_owned());
        }
        if let Some(log) = self.log {
            annotations.insert(
                "dev.sigstore.cosign/bundle".to_owned(),
                log.bundle(
                    &hashed_rekord(&signed, &signature, &certificate),
                    self.logged_at,
                ),
            );
        }
        (SIMPLE_SIGNING.to_owned(), signed, annotations)
    }
}

#[test]
fn keyless_signatures_need_the_identity_the_chain_and_the_log() {
    let registry = Registry::start(None);
    let dir = scratch();
    let fulcio = Authority::new("test fulcio");
    fulcio.write(&dir.path().join("fulcio.pem"));
    let rekor = Log::new();
    rekor.write_public(&dir.path().join("rekor.pub"));
    let issuer = "https://issuer.example";
    let config = images_config(
        dir.path(),
        &format!(
            "{}  trust_roots:\n    test: {{ca: [fulcio.pem], rekor: [rekor.pub]}}\n  rules:\n    - name: keyless\n      match: [\"{}/**\"]\n      any_of:\n        - keyless: {{trust_root: test, issuer: \"{issuer}\", subject_regex: \".*@team\\\\.example\"}}\n",
            insecure(&registry),
            registry.host
        ),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let good = Keyless {
        authority: &fulcio,
        log: Some(&rekor),
        email: "alice@team.example",
        issuer,
        issuer_v2: None,
        chain: None,
        valid: (now - 600, now + 600),
        logged_at: now - 60,
    };
    let case = |repository: &str, keyless: &Keyless<'_>| {
        let digest = registry.push_image(repository, "1", repository);
        registry.attach(
            repository,
            &digest,
            "sig",
            &[keyless.layer(&registry.name(repository), &digest)],
        );
        registry.name(&format!("{repository}:1"))
    };
    let verdict = verified(&config, &case("good", &good));
    assert_eq!(verdict["signer"], format!("alice@team.example ({issuer})"));

    refused(
        &config,
        &case(
            "wrong-subject",
            &Keyless {
                email: "mallory@elsewhere.example",
                ..good
            },
        ),
        "subject mallory@elsewhere.example does not match",
    );
    refused(
        &config,
        &case(
            "wrong-issuer",
            &Keyless {
                issuer: "https://other.example",
                ..good
            },
        ),
        "issuer is https://other.example",
    );
    // Logged an hour after its ten-minute certificate expired.
    refused(
        &config,
        &case(
            "expired",
            &Keyless {
                valid: (now - 7200, now - 6600),
                logged_at: now - 3600,
                ..good
            },
        ),
        "not valid when the signature was made",
    );
    refused(
        &config,
        &case("unlogged", &Keyless { log: None, ..good }),
        "no transparency-log bundle",
    );
    let stranger = Log::new();
    refused(
        &config,
        &case(
            "other-log",
            &Keyless {
                log: Some(&stranger),
                ..good
            },
        ),
        "not one of trust root `test`",
    );
    let impostor = Authority::new("impostor");
    refused(
        &config,
        &case(
            "other-ca",
            &Keyless {
                authority: &impostor,
                ..good
            },
        ),
        "does not chain to trust root `test`",
    );

    // A genuine log entry of another signature, carried over.
    let digest = registry.push_image("transplanted", "1", "transplanted");
    let (_, _, donor) = good.layer(&registry.name("donor"), &digest);
    let (media_type, signed, mut annotations) = good.layer(&registry.name("transplanted"), &digest);
    annotations.insert(
        "dev.sigstore.cosign/bundle".to_owned(),
        donor["dev.sigstore.cosign/bundle"].clone(),
    );
    registry.attach(
        "transplanted",
        &digest,
        "sig",
        &[(media_type, signed, annotations)],
    );
    refused(
        &config,
        &registry.name("transplanted:1"),
        "about another signature",
    );

    // Fulcio's two issuer extensions: agreeing, they are one issuer; not,
    // the certificate is refused whichever of them names the rule's.
    let verdict = verified(
        &config,
        &case(
            "issuers-agree",
            &Keyless {
                issuer_v2: Some(issuer),
                ..good
            },
        ),
    );
    assert_eq!(verdict["signer"], format!("alice@team.example ({issuer})"));
    refused(
        &config,
        &case(
            "issuers-differ",
            &Keyless {
                issuer_v2: Some("https://other.example"),
                ..good
            },
        ),
        &format!(
            "names two issuers, `{issuer}` (1.3.6.1.4.1.57264.1.1) and `https://other.example` (1.3.6.1.4.1.57264.1.8)"
        ),
    );
    refused(
        &config,
        &case(
            "issuers-differ-the-other-way",
            &Keyless {
                issuer: "https://other.example",
                issuer_v2: Some(issuer),
                ..good
            },
        ),
        "names two issuers",
    );

    // An intermediate in the signature's chain must be a CA that may sign
    // certificates.
    let intermediate = |name: &str, usages, is_ca| fulcio.intermediate(name, usages, is_ca);
    let fit = intermediate("fit", vec![rcgen::KeyUsagePurpose::KeyCertSign], true);
    verified(
        &config,
        &case(
            "fit-intermediate",
            &Keyless {
                authority: &fit,
                chain: Some(fit.pem()),
                ..good
            },
        ),
    );
    let no_cert_sign = intermediate(
        "no-cert-sign",
        vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ],
        true,
    );
    refused(
        &config,
        &case(
            "no-cert-sign-intermediate",
            &Keyless {
                authority: &no_cert_sign,
                chain: Some(no_cert_sign.pem()),
                ..good
            },
        ),
        "`CN=no-cert-sign` may not sign certificates (its key usage lacks keyCertSign)",
    );
    let not_a_ca = intermediate("not-a-ca", vec![rcgen::KeyUsagePurpose::KeyCertSign], false);
    refused(
        &config,
        &case(
            "not-a-ca-intermediate",
            &Keyless {
                authority: &not_a_ca,
                chain: Some(not_a_ca.pem()),
                ..good
            },
        ),
        "not a CA",
    );
}

#[test]
fn attestations_are_required_and_reach_policies() {
    let registry = Registry::start(None);
    let dir = scratch();
    let key = Key::new();
    key.write_public(&dir.path().join("key.pub"));
    let provenance = "https://slsa.dev/provenance/v1";
    let config = images_config(
        dir.path(),
        &format!(
            "{}  rules:\n    - name: attested\n      match: [\"{}/**\"]\n      any_of: [{{key: key.pub}}]\n      attestations: [{{predicate_type: \"{provenance}\"}}]\n",
            insecure(&registry),
            registry.host
        ),
    );
    let signed_image = |repository: &str| {
        let digest = registry.push_image(repository, "1", repository);
        let signed = payload(&registry.name(repository), &digest);
        registry.attach(
            repository,
            &digest,
            "sig",
            &[signed_layer(signed.clone(), key.sign(&signed))],
        );
        digest
    };
    let digest = signed_image("attested");
    let predicate = json!({"buildDefinition": {"buildType": "test"}, "runDetails": {"builder": {"id": "https://builder.example/trusted"}}});
    registry.attach(
        "attested",
        &digest,
        "att",
        &[attestation_layer(
            &digest,
            &registry.name("attested"),
            provenance,
            predicate.clone(),
            &key,
        )],
    );
    let verdict = verified(&config, &registry.name("attested:1"));
    assert_eq!(verdict["attestations"][0]["predicate_type"], provenance);
    assert_eq!(verdict["attestations"][0]["predicate"], predicate);

    signed_image("unattested");
    refused(
        &config,
        &registry.name("unattested:1"),
        &format!("no `{provenance}` attestation"),
    );

    // Attested, but of another type, or signed by someone else.
    let digest = signed_image("other-type");
    registry.attach(
        "other-type",
        &digest,
        "att",
        &[attestation_layer(
            &digest,
            &registry.name("other-type"),
            "https://example.com/other",
            json!({}),
            &key,
        )],
    );
    refused(
        &config,
        &registry.name("other-type:1"),
        &format!("no `{provenance}` attestation"),
    );
    let digest = signed_image("other-signer");
    registry.attach(
        "other-signer",
        &digest,
        "att",
        &[attestation_layer(
            &digest,
            &registry.name("other-signer"),
            provenance,
            json!({}),
            &Key::new(),
        )],
    );
    refused(&config, &registry.name("other-signer:1"), "does not verify");
}

/// A key that signs DSSE envelopes of other kinds (releases, votes,
/// anything) must not have them taken for attestations or cosign v3
/// signatures: the payload type, which the signature covers, must be an
/// in-toto statement's.
#[test]
fn envelopes_validly_signed_for_another_payload_type_are_refused_by_name() {
    let registry = Registry::start(None);
    let dir = scratch();
    let key = Key::new();
    key.write_public(&dir.path().join("key.pub"));
    let provenance = "https://slsa.dev/provenance/v1";
    let other = "application/vnd.example.release+json";
    let config = images_config(
        dir.path(),
        &format!(
            "{}  rules:\n    - name: attested\n      match: [\"{host}/attested/**\"]\n      any_of: [{{key: key.pub}}]\n      attestations: [{{predicate_type: \"{provenance}\"}}]\n    - {{name: v3, match: [\"{host}/v3/**\"], any_of: [{{key: key.pub}}]}}\n",
            insecure(&registry),
            host = registry.host
        ),
    );
    for (repository, payload_type) in [
        ("attested/in-toto", crate::registry_support::IN_TOTO),
        ("attested/other", other),
    ] {
        let digest = registry.push_image(repository, "1", repository);
        let signed = payload(&registry.name(repository), &digest);
        registry.attach(
            repository,
            &digest,
            "sig",
            &[signed_layer(signed.clone(), key.sign(&signed))],
        );
        registry.attach(
            repository,
            &digest,
            "att",
            &[attestation_layer_as(
                payload_type,
                &digest,
                &registry.name(repository),
                provenance,
                json!({}),
                &key,
            )],
        );
    }
    verified(&config, &registry.name("attested/in-toto:1"));
    refused(
        &config,
        &registry.name("attested/other:1"),
        &format!("the DSSE envelope's payload type is `{other}`"),
    );

    for (repository, payload_type) in [
        ("v3/in-toto", crate::registry_support::IN_TOTO),
        ("v3/other", other),
    ] {
        let digest = registry.push_image(repository, "1", repository);
        let bundle = cosign_v3_bundle_as(
            payload_type,
            &registry.name(repository),
            &digest,
            &key,
            None,
            None,
        );
        registry.refer(repository, &digest, BUNDLE, &bundle);
    }
    verified(&config, &registry.name("v3/in-toto:1"));
    refused(
        &config,
        &registry.name("v3/other:1"),
        &format!("the DSSE envelope's payload type is `{other}`"),
    );
}

/// The cosign fixtures: each signature stored as cosign stores it, beside
/// the image's digest, and verified as the fixtures' README says.
#[test]
fn signatures_made_by_cosign_get_their_verdicts() {
    let fixtures = shared_fixtures().join("cosign");
    let registry = Registry::start(None);
    let dir = scratch();
    for file in [
        "cosign.pub",
        "cosign2.pub",
        "rekor.pub",
        "fulcio_v1.crt.pem",
        "pki_root_crts.pem",
        "pki_intermediate_crts.pem",
    ] {
        std::fs::copy(fixtures.join(file), dir.path().join(file)).expect("copy a fixture");
    }
    // Stores a fixture folder's signatures (optionally altered) under a
    // repository of its name; returns the image reference by digest.
    let store = |folder: &str, alter: &dyn Fn(&mut Vec<SignatureLayer>)| {
        let path = fixtures.join(folder);
        let manifest = std::fs::read(path.join("manifest.json")).expect("manifest.json");
        let digest = format!("sha256:{}", sha256_hex(&manifest));
        let mut layers = Vec::new();
        for n in 1.. {
            let Ok(file) = std::fs::read(path.join(format!("signature-{n}"))) else {
                break;
            };
            let body = file
                .strip_prefix(b"\0sigstore-json")
                .expect("a sigstore-json signature");
            let signature: Value = serde_json::from_slice(body).expect("JSON");
            let payload = base64::engine::general_purpose::STANDARD
                .decode(signature["payload"].as_str().expect("payload"))
                .expect("base64");
            let annotations: BTreeMap<String, String> =
                serde_json::from_value(signature["annotations"].clone()).expect("annotations");
            layers.push((
                signature["mimeType"].as_str().expect("mimeType").to_owned(),
                payload,
                annotations,
            ));
        }
        alter(&mut layers);
        let repository = format!("fixtures/{}", folder.trim_start_matches("dir-img-cosign-"));
        // The registry refuses manifests whose layers it lacks, so only the
        // signature manifest is stored; the image is named by digest.
        registry.attach(&repository, &digest, "sig", &layers);
        format!("{}@{digest}", registry.name(&repository))
    };
    let unchanged = |_: &mut Vec<_>| {};
    let config = |name: &str, authority: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "policies: []\nimages:\n{}  trust_roots:\n    rekor: {{rekor: [rekor.pub]}}\n    rekor-is-cosign: {{rekor: [cosign.pub]}}\n    fulcio: {{ca: [fulcio_v1.crt.pem], rekor: [rekor.pub]}}\n    pki: {{ca: [pki_root_crts.pem], intermediates: [pki_intermediate_crts.pem]}}\n  rules:\n    - {{name: fixtures, match: [\"{}/**\"], any_of: [{authority}]}}\n",
                insecure(&registry),
                registry.host
            ),
        )
        .expect("write");
        path
    };
    let key = config("key", "{key: cosign.pub}");
    let key2 = config("key2", "{key: cosign2.pub}");
    let key2_logged = config("key2-logged", "{key: cosign2.pub, tlog: rekor}");
    let key2_wrong_log = config(
        "key2-wrong-log",
        "{key: cosign2.pub, tlog: rekor-is-cosign}",
    );
    let fulcio = |subject: &str, issuer: &str| {
        config(
            &format!("fulcio-{subject}-{}", sha256_hex(issuer.as_bytes())),
            &format!(
                "{{keyless: {{trust_root: fulcio, subject: \"{subject}\", issuer: \"{issuer}\"}}}}"
            ),
        )
    };
    let pki = config(
        "pki",
        "{keyless: {trust_root: pki, subject: qiwan@redhat.com}}",
    );

    let valid = store("dir-img-cosign-valid", &unchanged);
    verified(&key, &valid);
    refused(&key2, &valid, "does not verify with this key");
    verified(&key, &store("dir-img-cosign-valid-2", &unchanged));
    verified(&key, &store("dir-img-cosign-mixed", &unchanged));
    verified(&key, &store("dir-img-cosign-valid-with-tag", &unchanged));
    refused(
        &key,
        &store("dir-img-cosign-modified-manifest", &unchanged),
        "the signature is for sha256:",
    );
    refused(
        &key,
        &store("dir-img-cosign-other-attachment", &unchanged),
        "no signature",
    );

    let key_rekor = store("dir-img-cosign-key-rekor-valid", &unchanged);
    verified(&key2_logged, &key_rekor);
    refused(
        &key2_wrong_log,
        &key_rekor,
        "not one of trust root `rekor-is-cosign`",
    );

    let keyless = store("dir-img-cosign-fulcio-rekor-valid", &unchanged);
    let github = "https://github.com/login/oauth";
    let verdict = verified(&fulcio("mitr@redhat.com", github), &keyless);
    assert_eq!(verdict["signer"], format!("mitr@redhat.com ({github})"));
    refused(
        &fulcio("someone@redhat.com", github),
        &keyless,
        "does not match",
    );
    refused(
        &fulcio("mitr@redhat.com", "https://accounts.google.com"),
        &keyless,
        "issuer",
    );

    verified(&pki, &store("dir-img-cosign-pki-valid", &unchanged));

    // Tampered copies of valid cases.
    let flip = |text: &str| {
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64");
        bytes[10] ^= 1;
        base64(&bytes)
    };
    let tampered_payload = store("dir-img-cosign-valid", &|layers| {
        // The payload is still about the digest, but is not what was signed.
        let text = String::from_utf8(layers[0].1.clone()).expect("text");
        layers[0].1 = text
            .replace("\"optional\":null", "\"optional\":{}")
            .into_bytes();
    });
    refused(&key, &tampered_payload, "does not verify");
    let tampered_signature = store("dir-img-cosign-valid", &|layers| {
        let signature = layers[0].2["dev.cosignproject.cosign/signature"].clone();
        layers[0].2.insert(
            "dev.cosignproject.cosign/signature".into(),
            flip(&signature),
        );
    });
    refused(&key, &tampered_signature, "does not verify");
    let unlogged = store("dir-img-cosign-key-rekor-valid", &|layers| {
        layers[0].2.remove("dev.sigstore.cosign/bundle");
    });
    refused(&key2_logged, &unlogged, "no transparency-log bundle");
    let unlogged_keyless = store("dir-img-cosign-fulcio-rekor-valid", &|layers| {
        layers[0].2.remove("dev.sigstore.cosign/bundle");
    });
    refused(
        &fulcio("mitr@redhat.com", github),
        &unlogged_keyless,
        "no transparency-log bundle",
    );
}

#[test]
fn cosign_v3_bundles_are_found_among_the_referrers() {
    let registry = Registry::start(None);
    let dir = scratch();
    let key = Key::new();
    key.write_public(&dir.path().join("key.pub"));
    let rekor = Log::new();
    rekor.write_public(&dir.path().join("rekor.pub"));
    let config = images_config(
        dir.path(),
        &format!(
            "{}  trust_roots:\n    log: {{rekor: [rekor.pub]}}\n  rules:\n    - {{name: v3, match: [\"{}/**\"], any_of: [{{key: key.pub, tlog: log}}]}}\n",
            insecure(&registry),
            registry.host
        ),
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let case = |repository: &str, make: &dyn Fn(&str, &str) -> Vec<u8>| {
        let digest = registry.push_image(repository, "1", repository);
        let data = make(&registry.name(repository), &digest);
        registry.refer(repository, &digest, BUNDLE, &data);
        registry.name(&format!("{repository}:1"))
    };
    // Signed only with a key-based v3 bundle, logged: no `.sig` tag at all.
    let image = case("keyed", &|name, digest| {
        cosign_v3_bundle(name, digest, &key, Some((&rekor, now)), None)
    });
    let verdict = verified(&config, &image);
    assert!(
        verdict["authority"]
            .as_str()
            .unwrap_or_default()
            .contains("key.pub"),
        "{verdict}"
    );

    let other = Key::new();
    refused(
        &config,
        &case("other-key", &|name, digest| {
            cosign_v3_bundle(name, digest, &other, Some((&rekor, now)), None)
        }),
        "does not verify with this key",
    );
    let elsewhere = registry.push_image("elsewhere", "1", "v3-elsewhere");
    refused(
        &config,
        &case("elsewhere-bundle", &|name, _| {
            cosign_v3_bundle(name, &elsewhere, &key, Some((&rekor, now)), None)
        }),
        "the statement is not about",
    );
    refused(
        &config,
        &case("unlogged", &|name, digest| {
            cosign_v3_bundle(name, digest, &key, None, None)
        }),
        "no transparency-log bundle",
    );
    refused(
        &config,
        &case("transplanted-entry", &|name, digest| {
            cosign_v3_bundle(
                name,
                digest,
                &key,
                Some((&rekor, now)),
                Some("c2lnbmF0dXJl"),
            )
        }),
        "about another signature",
    );
}

/// Cosign signs what a tag resolves to: for a multi-architecture image, the
/// index. The index verifies by its own digest; a platform image the index
/// lists does not, unless it was signed too (`cosign sign --recursive`).
#[test]
fn a_multi_architecture_index_is_verified_by_its_own_digest() {
    let registry = Registry::start(None);
    let dir = scratch();
    let key = Key::new();
    key.write_public(&dir.path().join("key.pub"));
    let config = images_config(
        dir.path(),
        &format!(
            "{}  rules:\n    - {{name: multi, match: [\"{}/**\"], any_of: [{{key: key.pub}}]}}\n",
            insecure(&registry),
            registry.host
        ),
    );
    let (index, platforms) = registry.push_index("multi", "1");
    let signed = payload(&registry.name("multi"), &index);
    registry.attach(
        "multi",
        &index,
        "sig",
        &[signed_layer(signed.clone(), key.sign(&signed))],
    );
    let verdict = verified(&config, &registry.name("multi:1"));
    assert_eq!(verdict["digest"], index.as_str());
    refused(
        &config,
        &format!("{}@{}", registry.name("multi"), platforms[0]),
        "no signature",
    );
}
