//! The sandbox as a whole, attacked the ways that once got out: waits the
//! deadline could not reach, patches that double the object, log lines
//! forged from inside a policy, a review budget one policy could spend for
//! all, memory no single cap bounds, and time and randomness that made two
//! evaluations of one request differ.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    Run, config, eval_json, portcullis, portcullis_with, request, scratch, test_policy,
};
use crate::webhook_support::{Server, pod_review, yaml};

/// `test` with `behaviour` (and `extra` lines under it), then the baseline
/// `pod-security`.
fn configuration(dir: &Path, behaviour: &str, extra: &str, top: &str) -> PathBuf {
    config(
        dir,
        &format!(
            "{top}policies:\n  - name: test\n    module: {}\n    settings: {{behaviour: {behaviour}}}\n{extra}  - name: pod-security\n    module: builtin:pod-security\n",
            test_policy().display()
        ),
    )
}

/// Evaluates a privileged pod: the test policy's outcome and the decision,
/// after checking that pod-security still gave its reason.
fn evaluate(behaviour: &str, extra: &str, top: &str) -> (Value, Value) {
    let dir = scratch();
    let config = configuration(dir.path(), behaviour, extra, top);
    let run = eval_json(Some(&config), &[request("privileged-pod.yaml")]);
    let decision = run.decision();
    let pod_security = Run::policy(&decision, "pod-security");
    assert_eq!(pod_security["allowed"], false, "{decision}");
    (Run::policy(&decision, "test"), decision)
}

fn message(value: &Value) -> &str {
    value["message"].as_str().unwrap_or_default()
}

#[test]
fn every_kind_of_wait_is_refused_at_once() {
    // A deadline of 30 s: a wait that were merely bounded by it would keep
    // this test for a minute and a half.
    for behaviour in ["sleep", "wait-forever", "poll"] {
        let (test, decision) = evaluate(behaviour, "    timeout: 30s\n", "");
        assert_eq!(test["error"]["kind"], "timeout", "{behaviour}: {test}");
        assert!(
            message(&test).contains("policies cannot wait"),
            "{behaviour}: {test}"
        );
        assert_eq!(test["effect"], "deny", "{behaviour}");
        assert_eq!(decision["allowed"], false);
    }
}

#[test]
fn check_refuses_a_policy_that_waits_or_spins_in_validate_settings() {
    let dir = scratch();
    for (behaviour, expected) in [
        ("sleep-in-settings", "policies cannot wait"),
        ("loop-in-settings", "deadline of 100 ms"),
    ] {
        let config = configuration(dir.path(), behaviour, "    timeout: 100ms\n", "");
        let run = portcullis(["check", "--config", config.to_str().expect("UTF-8")]);
        assert_eq!(run.status, 2, "{behaviour}: {run:?}");
        assert!(
            run.stderr.contains("failed while checking its settings")
                && run.stderr.contains(expected),
            "{behaviour}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_patch_that_doubles_the_object_is_refused() {
    let (test, decision) = evaluate("patch-bomb", "", "");
    assert_eq!(test["error"]["kind"], "invalid", "{test}");
    assert!(
        message(&test).contains("larger than the limit of 4194304 bytes"),
        "{test}"
    );
    assert!(decision["patch"].is_null(), "{decision}");
    // The operation count is bounded too, by the configuration.
    let (test, _) = evaluate("patch-bomb", "", "sandbox:\n  max_patch_operations: 10\n");
    assert!(
        message(&test).contains("26 operations, more than the limit of 10"),
        "{test}"
    );
}

#[test]
fn outputs_over_their_bounds_are_refused_and_escapes_are_defused() {
    let (test, _) = evaluate("huge-message", "", "");
    assert_eq!(test["error"]["kind"], "invalid", "{test}");
    assert!(
        message(&test).contains("message is longer than 32768 bytes"),
        "{test}"
    );

    let (test, decision) = evaluate("escapes", "", "");
    let text = message(&test);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(
        text.contains("red \\u{1b}[31malert\\u{1b}[0m\nsecond line"),
        "lines are kept, escapes are shown: {text:?}"
    );
    let warnings = decision["warnings"].to_string();
    assert!(
        warnings.contains("bell\\\\u{7}") && !warnings.contains("\\u0007"),
        "{warnings}"
    );
}

#[test]
fn a_policy_cannot_forge_a_line_of_the_gateways_log() {
    let dir = scratch();
    let config = configuration(dir.path(), "forge-log", "", "");
    let run = portcullis_with(
        [
            "eval",
            "--config",
            config.to_str().expect("UTF-8"),
            request("privileged-pod.yaml").to_str().expect("UTF-8"),
        ],
        &[("PORTCULLIS_LOG", "info".as_ref())],
    );
    let forged: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("forged"))
        .collect();
    assert_eq!(forged.len(), 2, "{}", run.stderr);
    for line in forged {
        assert!(line.contains(" policy=\"test\""), "tagged: {line:?}");
        assert!(
            !line.contains('\r') && !line.contains('\0') && !line.contains('\u{1b}'),
            "{line:?}"
        );
    }
    assert!(
        !run.stderr
            .lines()
            .any(|line| line.starts_with("2026-12-02T00:00:00.000000Z")),
        "{}",
        run.stderr
    );
}

#[test]
fn clocks_and_randomness_are_the_same_in_every_evaluation() {
    let dir = scratch();
    let annotations = |grants: &str| {
        let config = configuration(dir.path(), "clock", grants, "");
        let pod = request("nginx-pod.yaml");
        let run = eval_json(Some(&config), &[pod.clone(), pod]);
        let decisions = run.decisions();
        assert_eq!(decisions.len(), 2, "{run:?}");
        let first = Run::policy(&decisions[0], "test")["annotations"].clone();
        let second = Run::policy(&decisions[1], "test")["annotations"].clone();
        (first, second)
    };
    let (first, second) = annotations("");
    assert_eq!(first, second, "two evaluations, one answer");
    assert_eq!(
        first["wall"], "0",
        "the wall clock reads the epoch: {first}"
    );
    assert_eq!(first["elapsed"], "0", "time does not pass: {first}");
    let (again, _) = annotations("");
    assert_eq!(first, again, "and the same in another process");

    let (granted, _) = annotations("    grants: [clock]\n");
    let wall: u128 = granted["wall"]
        .as_str()
        .and_then(|wall| wall.parse().ok())
        .expect("a number");
    assert!(wall > 1_700_000_000 * 1_000_000_000, "{granted}");
    assert_eq!(
        granted["random"], first["random"],
        "randomness stays seeded"
    );
}

#[test]
fn the_same_review_gets_the_same_answer_byte_for_byte() {
    let test = test_policy().display().to_string();
    let server = Server::start(
        &format!(
            "  - {{name: clock, module: {test}, settings: {{behaviour: clock}}}}\n  - {{name: label, module: {test}, settings: {{behaviour: label, label: checked}}}}\n  - {{name: pod-security, module: builtin:pod-security, mode: warn}}\n"
        ),
        "",
    );
    let review = pod_review(yaml(&request("privileged-pod.yaml")));
    let body = review.to_string();
    let mut client = server.connect();
    let (status, first) = client.post("/mutate", body.clone());
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&first).expect("JSON");
    assert!(answer["response"]["patch"].is_string(), "{answer}");
    for _ in 1..1000 {
        let (status, again) = client.post("/mutate", body.clone());
        assert_eq!(status, 200);
        assert_eq!(again, first, "the same bytes");
    }
}

#[test]
fn a_policy_that_spends_the_review_budget_cannot_get_a_pod_past_another() {
    // The API server gives the webhook 1 s, of which the review may use
    // 800 ms; the spinning policy asks for 30 s and ignores its failures.
    // It gets half of the budget, pod-security the other half, and being
    // stopped at its share is the gateway's failure, not the policy's: it
    // denies whatever `on_error` says.
    let test = test_policy().display().to_string();
    let server = Server::start(
        &format!(
            "  - {{name: spin, module: {test}, settings: {{behaviour: loop}}, timeout: 30s, on_error: allow}}\n  - {{name: pod-security, module: builtin:pod-security}}\n"
        ),
        "  timeout: 1s\n",
    );
    let mut client = server.connect();
    let response = client.review(
        "/validate",
        &pod_review(yaml(&request("privileged-pod.yaml"))),
    );
    assert_eq!(response["allowed"], false, "{response}");
    let text = response["status"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("pod-security: "), "pod-security ran: {text}");
    assert!(text.contains("privileged ("), "{text}");
    assert!(
        text.contains("spin: policy failed: policy was stopped at its"),
        "{text}"
    );
    // An ordinary pod is refused too: the budget ran out.
    let response = client.review("/validate", &pod_review(yaml(&request("nginx-pod.yaml"))));
    assert_eq!(response["allowed"], false, "{response}");
}

#[test]
fn evaluations_in_flight_share_one_memory_budget() {
    // Sixteen evaluations of a policy that fills 48 MiB of its 60 MiB would
    // hold 768 MiB at once; a budget of 128 MiB lets two run at a time, and
    // the others wait their turn.
    let test = test_policy().display().to_string();
    let server = Server::start(
        &format!(
            "  - {{name: hoard, module: {test}, settings: {{behaviour: hoard, megabytes: 48}}, memory: 60MiB, timeout: 10s}}\nsandbox:\n  memory_budget: 128MiB\n"
        ),
        "",
    );
    let body = pod_review(yaml(&request("nginx-pod.yaml"))).to_string();
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let server = &server;
                let body = body.clone();
                scope.spawn(move || {
                    let mut client = server.connect();
                    for _ in 0..4 {
                        let (status, answer) = client.post("/validate", body.clone());
                        assert_eq!(status, 200);
                        let answer: Value = serde_json::from_slice(&answer).expect("JSON");
                        assert_eq!(answer["response"]["allowed"], true, "{answer}");
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client");
        }
    });
    let (_, metrics) = server.connect().get("/metrics");
    let sample = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert_eq!(sample("portcullis_sandbox_memory_budget_bytes"), 128 << 20);
    assert!(
        sample("portcullis_sandbox_memory_waits_total") > 0,
        "{metrics}"
    );
    assert_eq!(sample("portcullis_sandbox_memory_refusals_total"), 0);
    assert_eq!(sample("portcullis_sandbox_memory_reserved_bytes"), 0);
    let peak = peak_memory(server.pid());
    assert!(peak < 400 << 20, "the gateway peaked at {peak} bytes");
}

/// The peak resident memory of a process (`VmHWM`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| {
            let kib = line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?;
            kib.trim().parse::<u64>().ok()
        })
        .expect("VmHWM")
        * 1024
}
