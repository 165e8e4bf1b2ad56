//! Policies that misbehave, built from `tests/policies/test-policy`: each
//! failure is stopped, reported with its kind, follows the policy's
//! `on_error`, and leaves the other policies' evaluations untouched.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{Run, config, eval_json, request, scratch, test_policy};

/// A configuration with the test policy behaving as `behaviour`, followed
/// by the baseline `pod-security` policy.
fn with_behaviour(dir: &std::path::Path, behaviour: &str, extra: &str) -> PathBuf {
    config(
        dir,
        &format!(
            "policies:\n  - name: test\n    module: {}\n    settings: {{behaviour: {behaviour}}}\n    timeout: 100ms\n    memory: 16MiB\n{extra}  - name: pod-security\n    module: builtin:pod-security\n",
            test_policy().display()
        ),
    )
}

/// Evaluates a privileged pod under a misbehaving policy and checks the
/// failure's kind, and that pod-security still gave its reason.
fn failure(behaviour: &str, on_error: &str) -> (Value, Value) {
    let dir = scratch();
    let config = with_behaviour(
        dir.path(),
        behaviour,
        &format!("    on_error: {on_error}\n"),
    );
    let run = eval_json(Some(&config), &[request("privileged-pod.yaml")]);
    let decision = run.decision();
    let pod_security = Run::policy(&decision, "pod-security");
    assert_eq!(
        pod_security["allowed"], false,
        "pod-security still judged: {decision}"
    );
    assert!(
        pod_security["message"]
            .as_str()
            .unwrap_or_default()
            .contains("privileged ("),
        "{decision}"
    );
    (Run::policy(&decision, "test"), decision)
}

#[test]
fn an_infinite_loop_is_stopped_by_its_deadline() {
    let (test, decision) = failure("loop", "deny");
    assert_eq!(test["error"]["kind"], "timeout", "{test}");
    assert_eq!(test["effect"], "deny");
    assert!(
        test["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deadline of 100 ms"),
        "{test}"
    );
    // How soon after the deadline it stops is measured by the benchmark
    // (`deadline/infinite loop`), not asserted here.
    assert!(
        decision["message"]
            .as_str()
            .unwrap_or_default()
            .contains("test: policy failed"),
        "{decision}"
    );
}

#[test]
fn a_memory_bomb_is_stopped_by_the_cap() {
    let (test, _) = failure("memory", "deny");
    assert_eq!(test["error"]["kind"], "memory", "{test}");
    assert!(
        test["message"]
            .as_str()
            .unwrap_or_default()
            .contains("16777216 bytes"),
        "{test}"
    );
}

#[test]
fn a_panic_is_reported_as_a_trap() {
    let (test, _) = failure("trap", "deny");
    assert_eq!(test["error"]["kind"], "trap", "{test}");
    assert!(
        test["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{test}"
    );
    let (overflow, _) = failure("stack-overflow", "deny");
    assert_eq!(overflow["error"]["kind"], "trap", "{overflow}");
}

#[test]
fn host_resources_are_capped() {
    // Without a cap, a million stream handles would live in host memory.
    let (test, _) = failure("resources", "deny");
    assert_eq!(test["error"]["kind"], "trap", "{test}");
}

#[test]
fn invalid_verdicts_are_errors() {
    let (patch, _) = failure("bad-patch", "deny");
    assert_eq!(patch["error"]["kind"], "invalid", "{patch}");
    assert!(
        patch["message"]
            .as_str()
            .unwrap_or_default()
            .contains("patch does not apply"),
        "{patch}"
    );
    let (code, _) = failure("bad-code", "deny");
    assert_eq!(code["error"]["kind"], "invalid", "{code}");
    assert!(
        code["message"]
            .as_str()
            .unwrap_or_default()
            .contains("status code 200"),
        "{code}"
    );
}

#[test]
fn on_error_allow_lets_a_failing_policy_pass() {
    for behaviour in ["loop", "memory", "trap", "bad-patch"] {
        let (test, decision) = failure(behaviour, "allow");
        assert_eq!(test["effect"], "allow", "{behaviour}: {test}");
        assert!(
            test["error"]["kind"].is_string(),
            "{behaviour}: the failure is still reported: {test}"
        );
        // The request is denied by pod-security alone.
        let message = decision["message"].as_str().unwrap_or_default();
        assert!(!message.contains("test:"), "{behaviour}: {message}");
    }
}

#[test]
fn a_failing_policy_in_warn_mode_warns() {
    let dir = scratch();
    let config = with_behaviour(dir.path(), "trap", "    mode: warn\n");
    let run = eval_json(Some(&config), &[request("nginx-pod.yaml")]);
    assert_eq!(run.status, 0, "{run:?}");
    let decision = run.decision();
    assert_eq!(decision["allowed"], true);
    let warnings = decision["warnings"].to_string();
    assert!(
        warnings.contains("test: policy failed: policy trapped"),
        "{warnings}"
    );
}

#[test]
fn modes_decide_what_a_denial_does() {
    let dir = scratch();
    for (mode, status, warned) in [("enforce", 1, true), ("warn", 0, true), ("audit", 0, false)] {
        let config = with_behaviour(dir.path(), "deny", &format!("    mode: {mode}\n"));
        let run = eval_json(Some(&config), &[request("nginx-pod.yaml")]);
        assert_eq!(run.status, status, "{mode}: {run:?}");
        let decision = run.decision();
        let warnings = decision["warnings"].to_string();
        // A warn-mode denial becomes a warning; an enforced one also
        // carries the policy's own warning; audit shows nothing.
        assert_eq!(warnings.contains("test:"), warned, "{mode}: {warnings}");
        let test = Run::policy(&decision, "test");
        assert_eq!(test["allowed"], false, "{mode}: recorded either way");
        assert_eq!(test["mode"], mode);
    }
}

#[test]
fn the_sandbox_grants_nothing() {
    let dir = scratch();
    let config = with_behaviour(dir.path(), "escape", "");
    let run = eval_json(Some(&config), &[request("nginx-pod.yaml")]);
    let test = Run::policy(&run.decision(), "test");
    assert_eq!(
        test["allowed"], true,
        "the policy reached outside: {}",
        test["message"]
    );
    assert!(!std::path::Path::new("/tmp/portcullis-escape").exists());
}

#[test]
fn a_chatty_policy_is_muted_not_failed() {
    let dir = scratch();
    let config = with_behaviour(dir.path(), "chatty", "");
    let run = eval_json(Some(&config), &[request("nginx-pod.yaml")]);
    assert_eq!(
        Run::policy(&run.decision(), "test")["allowed"],
        true,
        "{run:?}"
    );
    assert!(run.stderr.contains("budget was dropped"), "{}", run.stderr);
    assert!(
        run.stderr.len() < 200_000,
        "output is capped: {} bytes",
        run.stderr.len()
    );
}

#[test]
fn every_evaluation_gets_a_fresh_instance() {
    let dir = scratch();
    let config = with_behaviour(dir.path(), "count", "");
    let files = vec![request("nginx-pod.yaml"); 3];
    let run = eval_json(Some(&config), &files);
    for decision in run.decisions() {
        assert_eq!(
            Run::policy(&decision, "test")["annotations"]["evaluations"],
            "1",
            "{decision}"
        );
    }
}

#[test]
fn patches_apply_in_policy_order_and_only_when_enforcing() {
    let dir = scratch();
    let policy = test_policy().display().to_string();
    let config = config(
        dir.path(),
        &format!(
            "policies:
  - {{name: first, module: {policy}, settings: {{behaviour: label, label: first}}}}
  - {{name: second, module: {policy}, settings: {{behaviour: label, label: second}}}}
  - {{name: warned, module: {policy}, settings: {{behaviour: label, label: warned}}, mode: warn}}
"
        ),
    );
    // nginx-pod.yaml has labels; the Deployment's top level has none.
    for file in ["nginx-pod.yaml", "hostpath-deployment.yaml"] {
        let run = eval_json(Some(&config), &[request(file)]);
        assert_eq!(run.status, 0, "{run:?}");
        let patch: json_patch::Patch =
            serde_json::from_value(run.decision()["patch"].clone()).expect("an RFC 6902 patch");
        // The patch applies cleanly to the object as it was sent.
        let text = std::fs::read_to_string(request(file)).expect("read");
        let mut object: Value = serde_saphyr::from_str(&text).expect("YAML");
        json_patch::patch(&mut object, &patch).expect("the merged patch applies");
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["first"], "true", "{file}: {object}");
        assert_eq!(labels["second"], "true", "{file}: {object}");
        assert!(
            labels.get("warned").is_none(),
            "{file}: warn mode does not mutate"
        );
    }
}

#[test]
fn a_mutation_cannot_slip_past_a_policy_listed_before_it() {
    let dir = scratch();
    let config = config(
        dir.path(),
        &format!(
            "policies:
  - {{name: pod-security, module: builtin:pod-security}}
  - {{name: escalate, module: {}, settings: {{behaviour: escalate}}}}
",
            test_policy().display()
        ),
    );
    let run = eval_json(Some(&config), &[request("nginx-pod.yaml")]);
    assert_eq!(run.status, 1, "the final object is privileged: {run:?}");
    let decision = run.decision();
    let pod_security = Run::policy(&decision, "pod-security");
    assert!(
        pod_security["message"]
            .as_str()
            .unwrap_or_default()
            .contains("privileged ("),
        "pod-security judged the patched pod: {decision}"
    );
    assert_eq!(
        decision["patch"],
        Value::Null,
        "a denied request is not patched"
    );
}

#[test]
fn mutations_that_never_settle_are_failures() {
    let dir = scratch();
    let config = with_behaviour(dir.path(), "restless", "");
    let run = eval_json(Some(&config), &[request("nginx-pod.yaml")]);
    assert_eq!(run.status, 1, "{run:?}");
    let test = Run::policy(&run.decision(), "test");
    assert_eq!(test["error"]["kind"], "invalid", "{test}");
    assert!(
        test["message"]
            .as_str()
            .unwrap_or_default()
            .contains("must settle"),
        "{test}"
    );
}
