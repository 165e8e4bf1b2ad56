//! `portcullis serve`: real AdmissionReviews over real TLS, from a rustls
//! client and from curl.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::{request, shared_fixtures, test_policy};
use crate::webhook_support::{
    Server, certificates, cronjob_review, deployment_review, manifests, pod_review, review,
    runtime, webhook_config, yaml,
};

const POD_SECURITY: &str = "  - {name: pod-security, module: builtin:pod-security}\n";

fn privileged_pod() -> Value {
    yaml(&request("privileged-pod.yaml"))
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_privileged_pod_is_denied_and_a_compliant_one_allowed() {
    let server = Server::start(POD_SECURITY, "");
    let mut client = server.connect();
    let denied = client.review("/validate", &pod_review(privileged_pod()));
    assert_eq!(denied["allowed"], false);
    assert_eq!(denied["status"]["code"], 403);
    assert!(
        message(&denied).contains(
            r#"privileged (container "nginx" must not set securityContext.privileged=true)"#
        ),
        "{denied}"
    );
    assert_eq!(
        denied["auditAnnotations"]["pod-security.controls"],
        "privileged"
    );
    assert!(denied.get("patch").is_none());

    let allowed = client.review("/validate", &pod_review(yaml(&request("nginx-pod.yaml"))));
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert!(allowed.get("status").is_none());
}

#[test]
fn every_workload_kind_and_pod_sub_resource_is_judged() {
    let policy = test_policy().display().to_string();
    let server = Server::start(
        &format!(
            "{POD_SECURITY}  - {{name: no-exec, module: {policy}, settings: {{behaviour: deny}}, match: {{operations: [CONNECT]}}}}\n"
        ),
        "",
    );
    let mut client = server.connect();
    let privileged = privileged_pod();
    for review in [deployment_review(&privileged), cronjob_review(&privileged)] {
        let response = client.review("/validate", &review);
        assert!(message(&response).contains("privileged ("), "{response}");
    }

    // An ephemeral debug container added to a running, compliant pod.
    let mut pod = yaml(&request("nginx-pod.yaml"));
    let old = pod.clone();
    pod["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox", "securityContext": {"privileged": true}}]);
    let mut update = review(
        "UPDATE",
        ("", "v1", "Pod"),
        "pods",
        Some("ephemeralcontainers"),
        pod,
    );
    update["request"]["oldObject"] = old;
    let response = client.review("/validate", &update);
    assert!(
        message(&response).contains(r#"container "debugger""#),
        "{response}"
    );

    // exec arrives as CONNECT with the exec options as its object.
    let exec = review(
        "CONNECT",
        ("", "v1", "PodExecOptions"),
        "pods",
        Some("exec"),
        json!({"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh"], "container": "nginx", "stdin": true, "tty": true}),
    );
    let response = client.review("/validate", &exec);
    assert_eq!(response["allowed"], false, "{response}");
    assert!(
        message(&response).contains("no-exec: denied by the test policy"),
        "{response}"
    );

    // Other kinds reach policies raw; pod-security lets them be.
    let service = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "NodePort"}});
    let response = client.review(
        "/validate",
        &review("CREATE", ("", "v1", "Service"), "services", None, service),
    );
    assert_eq!(response["allowed"], true, "{response}");
}

#[test]
fn warn_mode_allows_with_warnings_and_dry_runs_are_marked() {
    let server = Server::start(
        "  - {name: restricted, module: builtin:pod-security, settings: {level: restricted}, mode: warn}\n",
        "",
    );
    let mut client = server.connect();
    let mut dry_run = pod_review(yaml(&request("nginx-pod.yaml")));
    dry_run["request"]["dryRun"] = json!(true);
    let response = client.review("/validate", &dry_run);
    assert_eq!(response["allowed"], true, "{response}");
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("restricted: violates PodSecurity \\\"restricted:latest\\\""),
        "{warnings}"
    );
    assert_eq!(response["auditAnnotations"]["dry-run"], "true");
}

#[test]
fn mutate_returns_a_patch_that_applies_and_validate_never_does() {
    let policy = test_policy().display().to_string();
    let server = Server::start(
        &format!(
            "  - {{name: label, module: {policy}, settings: {{behaviour: label, label: checked}}}}\n{POD_SECURITY}"
        ),
        "",
    );
    let mut client = server.connect();
    let pod = yaml(&request("nginx-pod.yaml"));
    let response = client.review("/mutate", &pod_review(pod.clone()));
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("an RFC 6902 patch");
    let mut object = pod.clone();
    json_patch::patch(&mut object, &patch).expect("the patch applies to the object");
    assert_eq!(object["metadata"]["labels"]["checked"], "true");

    let response = client.review("/validate", &pod_review(pod));
    assert_eq!(response["allowed"], true);
    assert!(
        response.get("patch").is_none() && response.get("patchType").is_none(),
        "{response}"
    );
}

#[test]
fn v1beta1_reviews_are_answered_in_v1beta1() {
    let server = Server::start(POD_SECURITY, "");
    let mut client = server.connect();
    let mut old = pod_review(privileged_pod());
    old["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let response = client.review("/validate", &old);
    assert_eq!(response["allowed"], false);
}

#[test]
fn curl_gets_the_same_answers() {
    let server = Server::start(POD_SECURITY, "");
    let body = server.dir.path().join("review.json");
    std::fs::write(&body, pod_review(privileged_pod()).to_string()).expect("write");
    for http in ["--http1.1", "--http2"] {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", http, "--cacert"])
            .arg(server.certs().join("ca.crt"))
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", body.display()))
            .arg(format!(
                "https://127.0.0.1:{}/validate",
                server.address.port()
            ))
            .output()
            .expect("run curl");
        assert!(
            output.status.success(),
            "{http}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(answer["response"]["allowed"], false, "{http}: {answer}");
        assert!(
            message(&answer["response"]).contains("privileged ("),
            "{answer}"
        );
    }
    // And a client that does not trust the CA is refused.
    let untrusted = Command::new("curl")
        .args(["--silent", "--fail"])
        .arg(format!(
            "https://127.0.0.1:{}/healthz",
            server.address.port()
        ))
        .status()
        .expect("run curl");
    assert!(!untrusted.success());
}

/// The pods of every `latest` fixture, with the expected verdict.
fn latest_fixtures(level: &str) -> Vec<(String, Value, bool)> {
    let root = shared_fixtures().join("pod-security").join(level);
    let latest = std::fs::read_dir(&root)
        .expect("list versions")
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .strip_prefix("v1.")?
                .parse::<u32>()
                .ok()
        })
        .max()
        .expect("versions");
    let mut fixtures = Vec::new();
    for (verdict, allowed) in [("pass", true), ("fail", false)] {
        let dir = root.join(format!("v1.{latest}")).join(verdict);
        for entry in std::fs::read_dir(&dir).expect("list fixtures") {
            let path = entry.expect("entry").path();
            fixtures.push((path.display().to_string(), yaml(&path), allowed));
        }
    }
    fixtures
}

#[test]
fn every_latest_conformance_fixture_gets_its_verdict_through_the_wire() {
    let mut checked = 0;
    for level in ["baseline", "restricted"] {
        let server = Server::start(
            &format!(
                "  - {{name: pss, module: builtin:pod-security, settings: {{level: {level}}}}}\n"
            ),
            "",
        );
        let mut client = server.connect();
        for (name, pod, allowed) in latest_fixtures(level) {
            for request in [
                pod_review(pod.clone()),
                deployment_review(&pod),
                cronjob_review(&pod),
            ] {
                let response = client.review("/validate", &request);
                let kind = &request["request"]["kind"]["kind"];
                assert_eq!(
                    response["allowed"], allowed,
                    "{level} {name} as a {kind}: {response}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 400, "only {checked} reviews");
}

#[test]
fn bad_requests_get_a_4xx_and_the_server_keeps_serving() {
    let server = Server::start(POD_SECURITY, "  max_body: 64KiB\n");
    let mut client = server.connect();
    for (body, status, words) in [
        ("this is not JSON".to_owned(), 400, "not an AdmissionReview"),
        (r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#.to_owned(), 400, "no request"),
        (
            r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {"kind": "Pod"}, "operation": "CREATE"}}"#.to_owned(),
            400,
            "no request.uid",
        ),
    ] {
        let (got, answer) = client.post("/validate", body);
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(got, status, "{answer}");
        assert!(answer.contains(words), "{answer}");
    }
    assert_eq!(client.get("/validate").0, 405);
    assert_eq!(client.get("/nowhere").0, 404);
    // The same connection still gets answers.
    assert_eq!(
        client.review("/validate", &pod_review(privileged_pod()))["allowed"],
        false
    );

    // A body over the cap is refused: by its declared length before a byte
    // of it is read, or, chunked, once the cap is reached. Either ends that
    // connection; others carry on.
    let wait = Duration::from_secs(60);
    let declared = server
        .raw(b"POST /validate HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", wait)
        .expect("answered and closed");
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(
        declared.contains("larger than the 65536-byte limit"),
        "{declared}"
    );
    let mut chunked = b"POST /validate HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    let chunked = server.raw(&chunked, wait).expect("answered and closed");
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert_eq!(
        server
            .connect()
            .review("/validate", &pod_review(privileged_pod()))["allowed"],
        false
    );
}

#[test]
fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    // With a 1 s client timeout the server hangs up long before the 60 s
    // these clients would wait; reaching end-of-stream is the assertion.
    let server = Server::start(POD_SECURITY, "  client_timeout: 1s\n");
    // A TLS session that starts a request and never finishes its headers.
    let closed_by_server = server
        .raw(
            b"POST /validate HTTP/1.1\r\nHost: portcullis\r\n",
            Duration::from_secs(60),
        )
        .is_some();
    assert!(
        closed_by_server,
        "a client stuck in its headers is disconnected"
    );

    // A plain TCP client that never even starts TLS is disconnected too.
    let mut idle = TcpStream::connect(server.address).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut byte = [0_u8; 1];
    let read = idle.read(&mut byte);
    assert!(
        matches!(read, Ok(0)),
        "expected end-of-stream, got {read:?}"
    );

    // Everyone else is served meanwhile.
    assert_eq!(
        server
            .connect()
            .review("/validate", &pod_review(privileged_pod()))["allowed"],
        false
    );
}

#[test]
fn health_readiness_and_metrics() {
    let policy = test_policy().display().to_string();
    let server = Server::start(
        &format!(
            "{POD_SECURITY}  - {{name: spin, module: {policy}, settings: {{behaviour: loop}}, timeout: 20ms, on_error: allow}}\n"
        ),
        "",
    );
    let mut client = server.connect();
    assert_eq!(client.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(client.get("/readyz"), (200, "ready\n".into()));
    client.review("/validate", &pod_review(privileged_pod()));
    client.review("/mutate", &pod_review(yaml(&request("nginx-pod.yaml"))));
    let (status, metrics) = client.get("/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"portcullis_reviews_total{endpoint="validate",outcome="denied"} 1"#,
        r#"portcullis_reviews_total{endpoint="mutate",outcome="allowed"} 1"#,
        r#"portcullis_policy_decisions_total{policy="pod-security",mode="enforce",outcome="denied"} 1"#,
        r#"portcullis_policy_decisions_total{policy="spin",mode="enforce",outcome="failed"} 2"#,
        r#"portcullis_policy_errors_total{policy="spin",kind="timeout"} 2"#,
        r#"portcullis_policy_evaluation_duration_seconds_count{policy="pod-security"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // Each format as a real scraper negotiates it, read by the parsers of
    // the official Prometheus Python client: every family typed, none read
    // as `unknown` (a classic parser reading OpenMetrics counters would).
    let scrape = |accept: &str, parser: &str| {
        let output = std::process::Command::new("curl")
            .args(["-sS", "--fail", "-D", "-", "--cacert"])
            .arg(server.certs().join("ca.crt"))
            .args(["-H", &format!("Accept: {accept}")])
            .arg(format!("https://{}/metrics", server.address))
            .output()
            .expect("curl is installed");
        assert!(output.status.success(), "{output:?}");
        let response = String::from_utf8(output.stdout).expect("UTF-8");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let script = format!(
            "import sys\nfrom {parser} import text_string_to_metric_families\nfor family in text_string_to_metric_families(sys.stdin.read()):\n    print(family.name, family.type, sum(1 for _ in family.samples))\n"
        );
        let mut python = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 with prometheus-client (.ci/run installs it)");
        use std::io::Write as _;
        python
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write");
        let parsed = python.wait_with_output().expect("python ends");
        assert!(parsed.status.success(), "{parser}: {parsed:?}\n{body}");
        (
            head.to_ascii_lowercase(),
            String::from_utf8_lossy(&parsed.stdout).into_owned(),
        )
    };
    let (head, families) = scrape("text/plain;version=0.0.4", "prometheus_client.parser");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        families.contains("portcullis_reviews counter 2"),
        "{families}"
    );
    assert!(!families.contains(" unknown "), "{families}");
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (head, families) = scrape(prometheus, "prometheus_client.openmetrics.parser");
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(
        families.contains("portcullis_reviews counter 2"),
        "{families}"
    );
    assert!(!families.contains(" unknown "), "{families}");
}

#[test]
fn every_review_is_answered_within_the_api_servers_timeout() {
    // Two policies that would each run for 5 s, under a 1 s webhook timeout:
    // each gets an equal share of the review's budget and is stopped at it.
    // That is the gateway running out of time, not the policies failing, so
    // the review is denied whatever their on_error says.
    let policy = test_policy().display().to_string();
    for on_error in ["deny", "allow"] {
        let server = Server::start(
            &format!(
                "  - {{name: slow, module: {policy}, settings: {{behaviour: loop}}, timeout: 5s, on_error: {on_error}}}\n  - {{name: slower, module: {policy}, settings: {{behaviour: loop}}, timeout: 5s, on_error: {on_error}}}\n"
            ),
            "  timeout: 1s\n",
        );
        let mut client = server.connect();
        let response = client.review("/validate", &pod_review(yaml(&request("nginx-pod.yaml"))));
        assert_eq!(response["allowed"], false, "{on_error}: {response}");
        let message = message(&response);
        for name in ["slow", "slower"] {
            assert!(
                message.contains(&format!("{name}: policy failed: policy was stopped at its")),
                "{on_error}: {message}"
            );
        }
    }
}

#[test]
fn a_new_certificate_is_served_without_dropping_connections() {
    let server = Server::start(POD_SECURITY, "");
    let mut held = server.connect();
    let before = held.connection.peer_certificate.clone();
    assert_eq!(
        held.review("/validate", &pod_review(privileged_pod()))["allowed"],
        false
    );

    // A renewed serving certificate from the same CA, swapped in file by
    // file as a Secret update would.
    let renewed = server.dir.path().join("renewed");
    let status = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["certs", "--name", "127.0.0.1", "--ca"])
        .arg(server.certs())
        .arg("--out")
        .arg(&renewed)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run portcullis certs");
    assert!(status.success());
    for file in ["tls.key", "tls.crt"] {
        let staged = server.certs().join(format!("{file}.new"));
        std::fs::copy(renewed.join(file), &staged).expect("stage");
        std::fs::rename(&staged, server.certs().join(file)).expect("swap");
    }

    // New connections get the new certificate once the files are read
    // again; none of them fails meanwhile.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let mut fresh = server.connect();
        assert_eq!(
            fresh.review("/validate", &pod_review(privileged_pod()))["allowed"],
            false
        );
        if fresh.connection.peer_certificate != before {
            break fresh.connection.peer_certificate;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(after, before);
    // The connection opened before the swap still works.
    assert_eq!(
        held.review("/validate", &pod_review(privileged_pod()))["allowed"],
        false
    );
}

#[test]
fn sigterm_turns_readiness_off_and_lets_in_flight_reviews_finish() {
    let policy = test_policy().display().to_string();
    let mut server = Server::start(
        &format!(
            "  - {{name: slow, module: {policy}, settings: {{behaviour: loop}}, timeout: 1500ms, on_error: allow}}\n"
        ),
        "  shutdown_delay: 1s\n",
    );
    let target = server.target();
    let runtime = runtime();
    let body = pod_review(yaml(&request("nginx-pod.yaml"))).to_string();
    let (in_flight, readiness) = runtime.block_on(async {
        let mut slow = portcullis_load::Connection::open(&target)
            .await
            .expect("connect");
        let mut probe = portcullis_load::Connection::open(&target)
            .await
            .expect("connect");
        let in_flight = tokio::spawn(async move { slow.post("/validate", body.into()).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.terminate();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let readiness = probe
            .send("GET", "/readyz", bytes::Bytes::new())
            .await
            .expect("readyz")
            .0;
        (in_flight.await.expect("join"), readiness)
    });
    assert_eq!(readiness, 503, "not ready while shutting down");
    let (status, body) = in_flight.expect("the in-flight review is answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let exit = server.wait();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = crate::support::scratch();
    let certs = dir.path().join("certs");
    certificates(&certs);
    crate::support::client_certificate(&certs, "kube-apiserver", None);
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!("kubernetes:\n  listen: 127.0.0.1:0\n  tls: {{cert: certs/tls.crt, key: certs/tls.key, client_ca: certs/client-ca.crt}}\npolicies:\n{POD_SECURITY}"),
    )
    .expect("write");
    let server = Server::with_config(dir, &config);
    let certs = server.certs();

    let anonymous = runtime().block_on(async {
        let mut connection = portcullis_load::Connection::open(&server.target()).await?;
        connection
            .send("GET", "/healthz", bytes::Bytes::new())
            .await
    });
    assert!(
        anonymous.is_err(),
        "a client without a certificate is refused"
    );

    let target = portcullis_load::Target::with_identity(
        server.address,
        "127.0.0.1",
        &certs.join("ca.crt"),
        Some((&certs.join("client.crt"), &certs.join("client.key"))),
    )
    .expect("client");
    let runtime = runtime();
    let (status, _) = runtime
        .block_on(async {
            let mut connection = portcullis_load::Connection::open(&target).await?;
            connection
                .send("GET", "/healthz", bytes::Bytes::new())
                .await
        })
        .expect("a client with a certificate is accepted");
    assert_eq!(status, 200);
}

#[test]
fn the_manifests_pass_strict_schema_validation() {
    let dir = crate::support::scratch();
    let certs = dir.path().join("certs");
    certificates(&certs);
    let config = dir.path().join("portcullis.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes:\n  listen: 127.0.0.1:8443\n  tls: {{cert: certs/tls.crt, key: certs/tls.key}}\n  timeout: 5s\n  failure_policy: ignore\npolicies:\n{POD_SECURITY}  - {{name: custom, module: {}, match: {{kinds: [apps/Deployment, Service], operations: [CREATE]}}}}\n  - {{name: docker-only, module: builtin:pod-security, match: {{origins: [docker]}}}}\n",
            test_policy().display()
        ),
    )
    .expect("write");
    let yaml_text = manifests(&config, &certs, &["--namespace", "admission"]);
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, &yaml_text).expect("write");

    let validate = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&file)
        .output()
        .expect("kubernetes-validate is installed (pip install kubernetes-validate)");
    assert!(
        validate.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );

    let documents: Vec<Value> = serde_saphyr::from_multiple(&yaml_text).expect("YAML documents");
    let kinds: Vec<&str> = documents
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ]
    );
    let deployment = &documents[5];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");

    let webhook = &documents[8]["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Ignore");
    assert_eq!(webhook["timeoutSeconds"], 5);
    assert_eq!(webhook["clientConfig"]["service"]["path"], "/validate");
    let ca = std::fs::read(certs.join("ca.crt")).expect("read");
    assert_eq!(
        webhook["clientConfig"]["caBundle"],
        base64::engine::general_purpose::STANDARD.encode(ca)
    );
    let excluded = &webhook["namespaceSelector"]["matchExpressions"][0]["values"];
    assert_eq!(*excluded, json!(["admission", "kube-system"]));
    // pod-security is sent the workloads it judges, not every write; the
    // custom policy adds its own kinds; the Docker-only policy adds no rule.
    let rules = webhook["rules"].as_array().expect("rules");
    assert!(
        rules.iter().any(|rule| rule["apiGroups"] == json!([""])
            && rule["resources"]
                == json!([
                    "pods",
                    "pods/ephemeralcontainers",
                    "pods/exec",
                    "pods/attach",
                    "replicationcontrollers"
                ])),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|rule| rule["apiGroups"] == json!(["batch"])
                && rule["resources"] == json!(["jobs", "cronjobs"])),
        "{rules:?}"
    );
    assert!(
        !rules
            .iter()
            .any(|rule| rule["resources"].to_string().contains("\"*")),
        "no rule for every resource: {rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|rule| rule["resources"] == json!(["deployments"])
                && rule["apiGroups"] == json!(["apps"])),
        "{rules:?}"
    );
    assert_eq!(
        documents[9]["webhooks"][0]["clientConfig"]["service"]["path"],
        "/mutate"
    );
    // The in-cluster configuration points at the mounted files.
    let config_map = documents[2]["data"]["portcullis.yaml"]
        .as_str()
        .expect("configuration");
    assert!(
        config_map.contains("/etc/portcullis/tls/tls.crt"),
        "{config_map}"
    );
    assert!(
        config_map.contains("/etc/portcullis/policies/custom.wasm"),
        "{config_map}"
    );
}

#[test]
fn the_start_up_log_says_what_runs() {
    let dir = crate::support::scratch();
    let config = webhook_config(
        dir.path(),
        "",
        "",
        &format!(
            "{POD_SECURITY}  - {{name: warned, module: builtin:host-isolation, mode: warn}}\n"
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("PORTCULLIS_CACHE_DIR", crate::support::cache_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start portcullis serve");
    // Should the summary never come, the process is stopped and the log
    // ends: the test fails, not hangs.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = child.id().to_string();
    std::thread::spawn({
        let done = done.clone();
        move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill").arg(pid).status();
        }
    });
    let mut log = String::new();
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    while !log.contains("kubernetes webhook listening") {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).expect("read the log");
        assert!(read > 0, "the log ended early:\n{log}");
        log.push_str(&line);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = child.kill();
    let _ = child.wait();
    for expected in [
        &format!(
            "portcullis starting version=\"{}\"",
            env!("CARGO_PKG_VERSION")
        ),
        "policy loaded policy=\"pod-security\" mode=enforce module=\"builtin:pod-security\" digest=sha256:",
        "policy loaded policy=\"warned\" mode=warn module=\"builtin:host-isolation\" digest=sha256:",
        "kubernetes webhook listening listener=https://127.0.0.1:",
    ] {
        assert!(log.contains(expected), "missing {expected} in\n{log}");
    }
}
