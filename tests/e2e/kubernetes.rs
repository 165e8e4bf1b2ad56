//! The webhook against a real API server (`kube-apiserver` v1.20.2 and
//! Debian's etcd, see `kube_support`): what `portcullis manifests` prints
//! is accepted by it, and a gateway registered out of cluster judges what
//! kubectl sends, with the answers kubectl shows a person: denials with
//! their reason, warnings, patches the API server stores, dry runs, updates
//! with the old object, every pod-owning kind, signed images stored pinned
//! to their digest, the namespace selector, the time budget, the failure
//! policy, and refusals over HTTP/2.

use crate::kube_support::{ControlPlane, Kubectl};
use crate::registry_support::{Key, Registry, payload, signed_layer};
use crate::support::{request, scratch};
use crate::webhook_support::{Server, certificates, manifests};

fn file(name: &str) -> String {
    std::fs::read_to_string(request(name)).expect("read the request")
}

#[test]
fn the_api_server_accepts_every_manifest_it_serves_the_kind_of() {
    let plane = ControlPlane::start();
    let server = Server::start(
        "  - {name: pod-security, module: builtin:pod-security}\n",
        "",
    );
    let yaml = manifests(
        &server.dir.path().join("portcullis.yaml"),
        &server.certs(),
        &["--namespace", "admission"],
    );
    // A dry run creates nothing, so the namespaced objects need their
    // namespace to exist first.
    let created = plane.kubectl(&["create", "namespace", "admission"], None);
    assert!(created.success, "{created:?}");
    let applied = plane.apply(&yaml, &["--dry-run=server"]);
    for object in [
        "namespace/admission",
        "serviceaccount/portcullis",
        "configmap/portcullis-config",
        "secret/portcullis-tls",
        "deployment.apps/portcullis",
        "service/portcullis",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/portcullis.admission",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/portcullis.admission",
    ] {
        assert!(
            applied.stdout.contains(&format!("{object} ")),
            "{object} accepted: {applied:?}"
        );
    }
    // 1.20 serves PodDisruptionBudgets as policy/v1beta1 only: that one
    // kind is the single refusal.
    let refusals: Vec<&str> = applied
        .stderr
        .lines()
        .filter(|line| line.starts_with("error"))
        .collect();
    assert!(
        refusals
            .iter()
            .all(|line| line.contains("PodDisruptionBudget") && line.contains("policy/v1")),
        "{applied:?}"
    );
}

/// A gateway with `policies`, registered with `plane` out of cluster, once
/// the API server sends it reviews.
fn registered(plane: &ControlPlane, policies: &str) -> Server {
    registered_with(plane, policies, "")
}

/// The same, with `kubernetes` lines added to the webhook's section.
fn registered_with(plane: &ControlPlane, policies: &str, kubernetes: &str) -> Server {
    register(plane, Server::start(policies, kubernetes))
}

/// `server`, registered with `plane` out of cluster, once the API server
/// sends it reviews (a privileged nginx pod is denied).
fn register(plane: &ControlPlane, server: Server) -> Server {
    let url = format!("https://{}", server.address);
    let yaml = manifests(
        &server.dir.path().join("portcullis.yaml"),
        &server.certs(),
        &["--url", &url, "--namespace", "admission"],
    );
    let applied = plane.apply(&yaml, &[]);
    assert!(applied.success, "{applied:?}");
    dry_run_until(plane, &file("privileged-pod.yaml"), |probe| {
        probe.stderr.contains("denied the request")
    });
    server
}

/// Applies `yaml` as a server-side dry run until `judged` holds of what
/// kubectl says, and returns that: the API server picks new webhook
/// configurations up shortly after they are stored.
pub(crate) fn dry_run_until(
    plane: &ControlPlane,
    yaml: &str,
    judged: impl Fn(&Kubectl) -> bool,
) -> Kubectl {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let probe = plane.apply(yaml, &["--dry-run=server"]);
        if judged(&probe) {
            return probe;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook was never called: {probe:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn kubectl_shows_a_denial_as_upstream_pod_security_does() {
    let plane = ControlPlane::start();
    let _server = registered(
        &plane,
        "  - {name: pod-security, module: builtin:pod-security}\n",
    );
    let denied: Kubectl = plane.apply(&file("privileged-pod.yaml"), &[]);
    assert!(!denied.success, "{denied:?}");
    // The mutating webhook is asked first, and denies with the same words.
    assert!(
        denied.stderr.contains(
            "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"mutate.portcullis.dev\" denied the request: pod-security: violates PodSecurity \"baseline:latest\": privileged (container \"nginx\" must not set securityContext.privileged=true)"
        ),
        "{}",
        denied.stderr
    );
    let stored = plane.kubectl(&["get", "pod", "privileged"], None);
    assert!(!stored.success, "nothing stored: {stored:?}");

    let allowed = plane.apply(&file("nginx-pod.yaml"), &[]);
    assert!(allowed.success, "{allowed:?}");
    assert!(allowed.stdout.contains("pod/nginx created"), "{allowed:?}");
}

/// A pod template of one container, privileged or not, as YAML lines
/// indented by `indent` spaces.
fn template(indent: usize, privileged: bool) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}metadata:\n{pad}  labels: {{app: web}}\n{pad}spec:\n{pad}  restartPolicy: {restart}\n{pad}  containers:\n{pad}    - name: web\n{pad}      image: nginx:1.27\n{pad}      securityContext: {{privileged: {privileged}}}\n",
        restart = "Always",
    )
}

/// `kind` (`group/version` `apiVersion`) named `web`, owning a privileged
/// pod template; CronJob is `batch/v1beta1` on 1.20.
fn workload(api_version: &str, kind: &str) -> String {
    let selector = "  selector:\n    matchLabels: {app: web}\n";
    match kind {
        "ReplicationController" => format!(
            "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  template:\n{}",
            template(4, true)
        ),
        "Job" => format!(
            "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: web}}\nspec:\n  template:\n{}",
            template(4, true).replace("Always", "Never")
        ),
        "CronJob" => format!(
            "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: web}}\nspec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n      template:\n{}",
            template(8, true).replace("Always", "Never")
        ),
        "StatefulSet" => format!(
            "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: web}}\nspec:\n  serviceName: web\n{selector}  template:\n{}",
            template(4, true)
        ),
        _ => format!(
            "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: web}}\nspec:\n{selector}  template:\n{}",
            template(4, true)
        ),
    }
}

#[test]
fn every_pod_owning_kind_is_judged_through_the_api_server() {
    let plane = ControlPlane::start();
    let _server = registered(
        &plane,
        "  - {name: pod-security, module: builtin:pod-security}\n",
    );
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1beta1", "CronJob"),
        ("v1", "ReplicationController"),
    ] {
        let denied = plane.apply(&workload(api_version, kind), &[]);
        assert!(!denied.success, "{kind}: {denied:?}");
        assert!(
            denied.stderr.contains("Error from server (Forbidden)")
                && denied.stderr.contains(
                    "privileged (container \"web\" must not set securityContext.privileged=true)"
                ),
            "{kind}: {}",
            denied.stderr
        );
        // Not privileged, the same object is stored.
        let allowed = plane.apply(
            &workload(api_version, kind).replace("privileged: true", "privileged: false"),
            &[],
        );
        assert!(allowed.success, "{kind}: {allowed:?}");
    }
}

#[test]
fn warnings_patches_dry_runs_and_updates_go_through_kubectl() {
    let plane = ControlPlane::start();
    let test = crate::support::test_policy().display().to_string();
    let _server = registered(
        &plane,
        &format!(
            "  - {{name: pod-security, module: builtin:pod-security}}\n  - {{name: restricted, module: builtin:pod-security, settings: {{level: restricted}}, mode: warn}}\n  - {{name: label, module: {test}, settings: {{behaviour: label, label: checked}}}}\n"
        ),
    );

    // A warning is printed by kubectl; the patch is applied by the API
    // server and stored.
    let created = plane.apply(&file("nginx-pod.yaml"), &[]);
    assert!(created.success, "{created:?}");
    // One warning per violated control, so none is cut by the API
    // server's limits on warnings.
    let warnings: Vec<&str> = created
        .stderr
        .lines()
        .filter(|line| {
            line.starts_with("Warning: restricted: violates PodSecurity \"restricted:latest\": ")
        })
        .collect();
    assert!(warnings.len() >= 4, "{}", created.stderr);
    assert!(
        warnings.iter().any(|line| line.ends_with(
            "runAsNonRoot (pod or container \"nginx\" must set securityContext.runAsNonRoot=true)"
        )),
        "{}",
        created.stderr
    );
    let stored = plane.kubectl(
        &["get", "pod", "nginx", "-o", "jsonpath={.metadata.labels}"],
        None,
    );
    assert!(stored.stdout.contains("\"checked\":\"true\""), "{stored:?}");

    // A dry run is judged like any request, and stores nothing.
    let dry = plane.apply(&file("privileged-pod.yaml"), &["--dry-run=server"]);
    assert!(dry.stderr.contains("denied the request"), "{dry:?}");
    let absent = plane.kubectl(&["get", "pod", "privileged"], None);
    assert!(!absent.success, "{absent:?}");

    // Updates carry the old object: a label change passes, making the
    // template privileged does not.
    let deployment =
        workload("apps/v1", "Deployment").replace("privileged: true", "privileged: false");
    assert!(plane.apply(&deployment, &[]).success);
    let labelled = plane.kubectl(&["label", "deployment", "web", "tier=front"], None);
    assert!(labelled.success, "{labelled:?}");
    let escalated = plane.kubectl(
        &[
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            r#"[{"op": "replace", "path": "/spec/template/spec/containers/0/securityContext/privileged", "value": true}]"#,
        ],
        None,
    );
    assert!(!escalated.success, "{escalated:?}");
    assert!(
        escalated.stderr.contains("Error from server (Forbidden)")
            && escalated.stderr.contains("privileged (container \"web\""),
        "{}",
        escalated.stderr
    );
}

#[test]
fn a_verified_image_is_stored_pinned_to_its_digest_and_an_unsigned_one_is_refused() {
    let plane = ControlPlane::start();
    let registry = Registry::start(None);
    let key = Key::new();
    let digest = registry.push_image("signed/app", "1", "kubectl-signed");
    let signed = payload(&registry.name("signed/app"), &digest);
    registry.attach(
        "signed/app",
        &digest,
        "sig",
        &[signed_layer(signed.clone(), key.sign(&signed))],
    );
    registry.push_image("signed/unsigned", "1", "kubectl-unsigned");

    // Image verification alone, no policy: it is what the webhooks are
    // registered for.
    let dir = scratch();
    key.write_public(&dir.path().join("key.pub"));
    certificates(&dir.path().join("certs"));
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes:\n  listen: 127.0.0.1:0\n  tls: {{cert: certs/tls.crt, key: certs/tls.key}}\nimages:\n  registries:\n    \"{host}\": {{insecure: true}}\n  rules:\n    - {{name: signed, match: [\"{host}/signed/**\"], any_of: [{{key: key.pub}}]}}\npolicies: []\n",
            host = registry.host
        ),
    )
    .expect("write the configuration");
    let _server = register(&plane, Server::with_config(dir, &config));

    let pod = |name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n    - {{name: app, image: \"{image}\"}}\n"
        )
    };
    // The mutating webhook pins the tag; the API server stores the patch.
    let image = registry.name("signed/app:1");
    let created = plane.apply(&pod("app", &image), &[]);
    assert!(created.success, "{created:?}");
    let stored = plane.kubectl(
        &[
            "get",
            "pod",
            "app",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ],
        None,
    );
    assert!(stored.success, "{stored:?}");
    assert_eq!(stored.stdout, format!("{image}@{digest}"));

    let unsigned = registry.name("signed/unsigned:1");
    let refused = plane.apply(&pod("unsigned", &unsigned), &[]);
    assert!(!refused.success, "{refused:?}");
    assert!(
        refused.stderr.contains("Error from server (Forbidden)")
            && refused
                .stderr
                .contains(&format!("image {unsigned}: no signature")),
        "{}",
        refused.stderr
    );
    let absent = plane.kubectl(&["get", "pod", "unsigned"], None);
    assert!(!absent.success, "nothing stored: {absent:?}");
}

#[test]
fn the_gateways_own_namespace_is_left_out() {
    let plane = ControlPlane::start();
    // 1.20 does not label namespaces with their name (1.21 does): label it
    // as a newer API server would.
    for args in [
        &["create", "namespace", "admission"][..],
        &[
            "label",
            "namespace",
            "admission",
            "kubernetes.io/metadata.name=admission",
        ],
    ] {
        let done = plane.kubectl(args, None);
        assert!(done.success, "{done:?}");
    }
    let _server = registered(
        &plane,
        "  - {name: pod-security, module: builtin:pod-security}\n",
    );
    let own = plane.apply(
        &file("privileged-pod.yaml").replace("namespace: default", "namespace: admission"),
        &[],
    );
    assert!(own.success, "not judged in its own namespace: {own:?}");
    let elsewhere = plane.apply(&file("privileged-pod.yaml"), &[]);
    assert!(!elsewhere.success, "{elsewhere:?}");
}

#[test]
fn a_slow_policy_is_answered_for_before_the_api_server_gives_up() {
    // timeoutSeconds is 2: the spinning policy is stopped at its share of
    // the review's 1.6 s and the review is denied, with the reason, rather
    // than the API server timing the call out.
    let plane = ControlPlane::start();
    let test = crate::support::test_policy().display().to_string();
    let _server = registered_with(
        &plane,
        &format!(
            "  - {{name: spin, module: {test}, settings: {{behaviour: loop}}, timeout: 5s, on_error: allow}}\n"
        ),
        "  timeout: 2s\n",
    );
    let denied = plane.apply(&file("nginx-pod.yaml"), &[]);
    assert!(!denied.success, "{denied:?}");
    assert!(
        denied
            .stderr
            .contains("denied the request: spin: policy failed: policy was stopped at its"),
        "{}",
        denied.stderr
    );
}

#[test]
fn with_the_gateway_down_fail_refuses_and_ignore_admits() {
    for (failure_policy, admitted) in [("fail", false), ("ignore", true)] {
        let plane = ControlPlane::start();
        let server = registered_with(
            &plane,
            "  - {name: pod-security, module: builtin:pod-security}\n",
            &format!("  failure_policy: {failure_policy}\n"),
        );
        drop(server);
        let applied = plane.apply(&file("nginx-pod.yaml"), &[]);
        assert_eq!(applied.success, admitted, "{failure_policy}: {applied:?}");
        if !admitted {
            assert!(
                applied.stderr.contains("failed calling webhook"),
                "{}",
                applied.stderr
            );
        }
    }
}

#[test]
fn an_early_refusal_reaches_the_api_server_as_its_status() {
    // The API server talks HTTP/2 to webhooks. A review over `max_body` is
    // refused before its body is read; the API server must see the 413
    // and its reason, not a reset stream.
    let plane = ControlPlane::start();
    let server = Server::start(
        "  - {name: pod-security, module: builtin:pod-security}\n",
        "  max_body: 1KiB\n",
    );
    let url = format!("https://{}", server.address);
    let yaml = manifests(
        &server.dir.path().join("portcullis.yaml"),
        &server.certs(),
        &["--url", &url],
    );
    assert!(plane.apply(&yaml, &[]).success);
    let refused = dry_run_until(&plane, &file("nginx-pod.yaml"), |probe| {
        probe.stderr.contains("failed calling webhook")
    });
    assert!(
        refused
            .stderr
            .contains("the server responded with the status code 413"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("stream error"),
        "{}",
        refused.stderr
    );
}
