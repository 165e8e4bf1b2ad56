//! Context-aware policies against a real API server: policies granted
//! `cluster` read it from the gateway's cache, which follows the API
//! server's watch; the gateway reads with its own identity and only what
//! the RBAC of `portcullis manifests` lets it; a read without the grant is
//! refused, and an unreachable API server is a policy failure, never an
//! allow.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::kube_support::{ControlPlane, GATEWAY_NAMESPACE, Kubectl};
use crate::kubernetes::dry_run_until;
use crate::support::{portcullis, scratch, test_policy, workspace};
use crate::webhook_support::{Server, manifests, pod_review, webhook_config};

/// The two example policies of `wasm-plugins/examples`, built once.
fn examples() -> &'static [PathBuf] {
    static COMPONENTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    COMPONENTS.get_or_init(|| {
        let target_dir = portcullis_wasm_build::default_target_dir(workspace());
        portcullis_wasm_build::build(
            workspace(),
            &target_dir,
            &["unique-ingress-host", "namespace-label"],
        )
        .unwrap_or_else(|error| panic!("building the example policies: {error}"))
    })
}

/// A webhook with `policies`, reading the cluster of `plane` with the
/// gateway's kubeconfig.
fn gateway(plane: &ControlPlane, policies: &str) -> Server {
    let dir = scratch();
    let cluster = format!(
        "cluster:\n  kubeconfig: {}\n",
        plane.gateway_kubeconfig.display()
    );
    let config = webhook_config(dir.path(), "", &cluster, policies);
    Server::with_config(dir, &config)
}

/// The documents of `portcullis manifests` of `kind`.
fn documents_of(yaml: &str, kinds: &[&str]) -> String {
    yaml.split("\n---\n")
        .filter(|document| {
            kinds
                .iter()
                .any(|kind| document.lines().any(|line| line == format!("kind: {kind}")))
        })
        .map(|document| format!("---\n{document}\n"))
        .collect()
}

fn ok(run: Kubectl) -> Kubectl {
    assert!(run.success, "{run:?}");
    run
}

fn deployment(namespace: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {namespace}}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: web, image: nginx}}]\n"
    )
}

fn ingress(namespace: &str, name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
    )
}

#[test]
fn context_aware_policies_judge_what_the_cluster_holds_as_it_changes() {
    let plane = ControlPlane::start();
    for namespace in [GATEWAY_NAMESPACE, "shop", "blog"] {
        ok(plane.kubectl(&["create", "namespace", namespace], None));
    }
    let [unique_host, namespace_label] = examples() else {
        panic!("two example policies");
    };
    let server = gateway(
        &plane,
        &format!(
            "  - name: unique-ingress-host\n    module: {}\n    grants: [{{cluster: [networking.k8s.io/v1/ingresses]}}]\n    match: {{kinds: [networking.k8s.io/Ingress], operations: [CREATE, UPDATE]}}\n  - name: namespace-label\n    module: {}\n    grants:\n      - cluster: [v1/namespaces]\n    match: {{kinds: [Pod, apps/Deployment]}}\n",
            unique_host.display(),
            namespace_label.display()
        ),
    );
    let config = server.dir.path().join("portcullis.yaml");
    let url = format!("https://{}", server.address);
    ok(plane.apply(
        &manifests(
            &config,
            &server.certs(),
            &["--url", &url, "--namespace", GATEWAY_NAMESPACE],
        ),
        &[],
    ));

    // Until the RBAC of the manifests is applied, the gateway may not read
    // namespaces: the policy fails, and the failure denies.
    let refused = dry_run_until(&plane, &deployment("shop"), |run| {
        run.stderr.contains("denied the request")
    });
    assert!(
        refused.stderr.contains("not in step with the API server")
            && refused.stderr.contains("forbidden"),
        "{refused:?}"
    );

    // The ClusterRole and binding `portcullis manifests` prints let the
    // gateway's ServiceAccount get, list and watch what the policies read,
    // and nothing else.
    let full = manifests(
        &config,
        &server.certs(),
        &["--namespace", GATEWAY_NAMESPACE],
    );
    let rbac = documents_of(&full, &["ClusterRole", "ClusterRoleBinding"]);
    assert!(
        rbac.contains("- ingresses") && rbac.contains("- namespaces"),
        "{rbac}"
    );
    assert!(
        full.contains("automountServiceAccountToken: true"),
        "{full}"
    );
    ok(plane.apply(&rbac, &[]));
    let can = |verb: &str, resource: &str| {
        plane
            .kubectl(
                &[
                    "auth",
                    "can-i",
                    verb,
                    resource,
                    "--as",
                    "system:serviceaccount:admission:portcullis",
                ],
                None,
            )
            .stdout
            .trim()
            == "yes"
    };
    assert!(can("watch", "namespaces") && can("list", "ingresses.networking.k8s.io"));
    assert!(!can("list", "secrets") && !can("create", "namespaces"));

    // A namespace without a `team` label runs nothing ...
    let denied = dry_run_until(&plane, &deployment("shop"), |run| {
        run.stderr.contains("has no \"team\" label")
    });
    assert!(
        denied.stderr.contains("(Forbidden)")
            && denied
                .stderr
                .contains("kubectl label namespace shop team=NAME"),
        "{denied:?}"
    );
    // ... until it is labelled: the cache follows the watch.
    ok(plane.kubectl(&["label", "namespace", "shop", "team=shop"], None));
    let admitted = dry_run_until(&plane, &deployment("shop"), |run| run.success);
    assert!(
        admitted.stdout.contains("deployment.apps/web created"),
        "{admitted:?}"
    );
    ok(plane.kubectl(&["label", "namespace", "shop", "team-"], None));
    dry_run_until(&plane, &deployment("shop"), |run| {
        run.stderr.contains("has no \"team\" label")
    });

    // An Ingress host is served by one Ingress only.
    ok(plane.apply(&ingress("shop", "front", "shop.example.com"), &[]));
    let taken = dry_run_until(
        &plane,
        &ingress("blog", "front", "shop.example.com"),
        |run| run.stderr.contains("denied the request"),
    );
    assert!(
        taken
            .stderr
            .contains("host \"shop.example.com\" is already served by Ingress shop/front"),
        "{taken:?}"
    );
    // The Ingress itself may be updated; another host is free.
    ok(plane.apply(
        &ingress("shop", "front", "shop.example.com").replace("path: /,", "path: /shop,"),
        &[],
    ));
    ok(plane.apply(
        &ingress("blog", "front", "blog.example.com"),
        &["--dry-run=server"],
    ));
    // Once the first Ingress is gone, its host is free again.
    ok(plane.kubectl(&["delete", "ingress", "front", "--namespace", "shop"], None));
    dry_run_until(
        &plane,
        &ingress("blog", "front", "shop.example.com"),
        |run| run.success,
    );
}

/// RBAC letting the gateway's ServiceAccount read core `resources`
/// (a YAML flow list's items).
fn reader(resources: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: gateway-reader}}\nrules: [{{apiGroups: [''], resources: [{resources}], verbs: [get, list, watch]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: gateway-reader}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: gateway-reader}}\nsubjects: [{{kind: ServiceAccount, name: portcullis, namespace: {GATEWAY_NAMESPACE}}}]\n"
    )
}

/// A pod review in `namespace` for the gateway, sent directly.
fn pod_in(namespace: &str) -> Value {
    let mut review = pod_review(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }));
    review["request"]["namespace"] = json!(namespace);
    review
}

fn read_cluster(name: &str, grants: &str, settings: &str, on_error: &str) -> String {
    format!(
        "  - name: {name}\n    module: {}\n    on_error: {on_error}\n    settings: {{behaviour: read-cluster, {settings}}}\n{grants}",
        test_policy().display()
    )
}

#[test]
fn reads_are_limited_to_the_grant_and_fail_closed_when_the_api_server_is_gone() {
    let mut plane = ControlPlane::start();
    ok(plane.kubectl(&["create", "namespace", GATEWAY_NAMESPACE], None));
    ok(plane.apply(&reader("namespaces, configmaps"), &[]));
    for (namespace, team) in [("web-1", "web"), ("web-2", "web"), ("db", "db")] {
        ok(plane.kubectl(&["create", "namespace", namespace], None));
        ok(plane.kubectl(
            &["label", "namespace", namespace, &format!("team={team}")],
            None,
        ));
    }
    let granted = "    grants: [{cluster: [v1/namespaces]}]\n";
    let server = gateway(
        &plane,
        &[
            read_cluster("web-teams", granted, "selector: team=web", "deny"),
            // Granted configmaps, reading namespaces.
            read_cluster(
                "other-grant",
                "    grants: [{cluster: [v1/configmaps]}]\n",
                "resource: v1/namespaces",
                "allow",
            ),
            read_cluster("no-grant", "", "resource: v1/namespaces", "allow"),
        ]
        .concat(),
    );
    // `check` lists the cluster with the gateway's credentials ...
    let config = server.dir.path().join("portcullis.yaml");
    let checked = portcullis([
        "check".into(),
        "--config".into(),
        config.clone().into_os_string(),
    ]);
    assert_eq!(checked.status, 0, "{checked:?}");
    assert!(
        checked.stdout.contains("cluster https://127.0.0.1:")
            && checked
                .stdout
                .contains(": listed v1/configmaps, v1/namespaces"),
        "{checked:?}"
    );
    // ... and refuses credentials that would not verify the API server.
    let text = std::fs::read_to_string(&config).expect("the configuration");
    let insecure = server.dir.path().join("insecure.yaml");
    std::fs::write(
        &insecure,
        text.replace(
            &plane.gateway_kubeconfig.display().to_string(),
            &plane.kubeconfig.display().to_string(),
        ),
    )
    .expect("write");
    let refused = portcullis(["check".into(), "--config".into(), insecure.into_os_string()]);
    assert_ne!(refused.status, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("insecure-skip-tls-verify"),
        "{refused:?}"
    );

    let mut client = server.connect();
    let judged = |client: &mut crate::webhook_support::Client| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let answer = client.review("/validate", &pod_in("web-1"));
            if answer["auditAnnotations"]["web-teams.names"].is_string()
                || std::time::Instant::now() > deadline
            {
                return answer;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let answer = judged(&mut client);
    // A label selector, served from the cache.
    assert_eq!(
        answer["auditAnnotations"]["web-teams.names"],
        json!("web-1,web-2"),
        "{answer}"
    );
    // A read without the grant is refused, and the refusal denies whatever
    // `on_error` says.
    let message = answer["status"]["message"].as_str().unwrap_or_default();
    assert_eq!(answer["allowed"], json!(false), "{answer}");
    for policy in ["other-grant", "no-grant"] {
        assert!(
            message.contains(&format!(
                "{policy}: policy failed: policy read `v1/namespaces` from the cluster without a grant"
            )),
            "{policy}: {message}"
        );
    }
    assert!(!message.contains("web-teams"), "{message}");

    // Without its API server the cache cannot vouch for anything: once
    // the watch breaks and a new list fails, lookups fail, and with
    // `on_error: deny` the policy denies.
    plane.stop_apiserver();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let message = loop {
        let answer = client.review("/validate", &pod_in("web-1"));
        let message = answer["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if message.contains("web-teams") || std::time::Instant::now() > deadline {
            break message;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        message.contains(
            "web-teams: policy failed: the cluster cache of v1/namespaces is not in step with the API server"
        ),
        "{message}"
    );
}

/// The resident memory of a process, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// What a lookup costs: a policy that gets one object from a cache of
/// 10,000 against the same policy reading nothing, loaded in turn in one
/// run, and the memory the cache takes. The figures of the README come
/// from `cargo test --release -p portcullis --test e2e cluster::what_a_lookup_costs -- --nocapture`.
#[test]
fn what_a_lookup_costs() {
    const OBJECTS: usize = 10_000;
    let plane = ControlPlane::start();
    ok(plane.kubectl(&["create", "namespace", GATEWAY_NAMESPACE], None));
    ok(plane.kubectl(&["create", "namespace", "bulk"], None));
    ok(plane.apply(&reader("configmaps"), &[]));
    // ConfigMaps of about 1 KB each as the API server stores them.
    let filler = "x".repeat(600);
    let items: Vec<Value> = (0..OBJECTS)
        .map(|index| {
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": format!("settings-{index}"), "namespace": "bulk", "labels": {"team": format!("team-{}", index % 50)}},
                "data": {"index": index.to_string(), "filler": filler},
            })
        })
        .collect();
    let started = std::time::Instant::now();
    plane.create_all("/api/v1/namespaces/bulk/configmaps", &items);
    println!(
        "created {OBJECTS} ConfigMaps in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let plain = gateway(
        &plane,
        &format!("  - name: plain\n    module: {}\n", test_policy().display()),
    );
    let lookup = gateway(
        &plane,
        &read_cluster(
            "lookup",
            "    grants: [{cluster: [v1/configmaps]}]\n",
            "resource: v1/configmaps, namespace: bulk, name: settings-5000",
            "deny",
        ),
    );
    let body = bytes::Bytes::from(pod_in("web").to_string());
    let runtime = crate::webhook_support::runtime();
    let load = |server: &Server, seconds: f64| {
        runtime
            .block_on(portcullis_load::run(&portcullis_load::Load {
                target: server.target(),
                method: "POST".into(),
                path: "/validate".into(),
                body: body.clone(),
                status: 200,
                connections: 1,
                duration: std::time::Duration::from_secs_f64(seconds),
                rate: None,
            }))
            .expect("a load run")
    };
    // The lookup works (waiting, at first, for the list of 10,000).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = lookup.connect().review("/validate", &pod_in("web"));
        if answer["auditAnnotations"]["lookup.objects"] == json!("1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no lookup: {answer}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    load(&plain, 1.0);
    load(&lookup, 1.0);
    let (mut plain_rates, mut lookup_rates, mut plain_p50, mut lookup_p50) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let report = load(&plain, 2.0);
        plain_rates.push(report.throughput());
        plain_p50.push(report.percentile_ms(50.0));
        let report = load(&lookup, 2.0);
        assert_eq!(report.errors, 0);
        lookup_rates.push(report.throughput());
        lookup_p50.push(report.percentile_ms(50.0));
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (plain_rate, lookup_rate) = (median(&mut plain_rates), median(&mut lookup_rates));
    let (plain_p50, lookup_p50) = (median(&mut plain_p50), median(&mut lookup_p50));
    let (plain_memory, lookup_memory) = (resident(plain.pid()), resident(lookup.pid()));
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!("| policy | reviews/s, 1 connection | p50 | gateway memory |");
    println!("|---|---|---|---|");
    println!(
        "| test-policy, reads nothing | {plain_rate:.0} | {plain_p50:.2} ms | {:.1} MiB |",
        mib(plain_memory)
    );
    println!(
        "| test-policy, one `get` from a cache of {OBJECTS} ConfigMaps | {lookup_rate:.0} | {lookup_p50:.2} ms | {:.1} MiB |",
        mib(lookup_memory)
    );
    println!(
        "lookup/plain throughput {:.2}; the cache of {OBJECTS} objects: {:.1} MiB",
        lookup_rate / plain_rate,
        mib(lookup_memory.saturating_sub(plain_memory))
    );
    // A lookup is served from memory: it costs a fraction of a review, not
    // a round trip; and the cache holds the objects, not more than a few
    // times their size.
    assert!(
        lookup_rate > 0.5 * plain_rate,
        "{lookup_rate} vs {plain_rate}"
    );
    assert!(
        lookup_memory.saturating_sub(plain_memory) < 64 << 20,
        "{lookup_memory} vs {plain_memory}"
    );
}
