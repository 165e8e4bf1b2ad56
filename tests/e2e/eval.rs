//! `portcullis eval` and `portcullis check` as a user runs them, with the
//! built-in `pod-security` policy.

use crate::support::{Run, config, eval_json, portcullis, request, scratch};

fn restricted(dir: &std::path::Path) -> std::path::PathBuf {
    config(
        dir,
        "policies:\n  - name: pod-security\n    module: builtin:pod-security\n    settings: {level: restricted}\n",
    )
}

/// Denied by the default configuration, naming `control` and `container`.
fn assert_denied(file: &str, control: &str, container: &str) {
    let run = eval_json(None, &[request(file)]);
    assert_eq!(run.status, 1, "{run:?}");
    let decision = run.decision();
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["code"], 403);
    let message = decision["message"]
        .as_str()
        .expect("a denial has a message");
    assert!(
        message.contains(&format!("{control} (")),
        "{file}: {message}"
    );
    assert!(
        message.contains(&format!("container \"{container}\"")),
        "{file}: {message}"
    );
}

#[test]
fn baseline_denies_a_privileged_pod() {
    assert_denied("privileged-pod.yaml", "privileged", "nginx");
}

#[test]
fn baseline_denies_a_deployment_that_mounts_the_host_root() {
    assert_denied("hostpath-deployment.yaml", "hostPathVolumes", "inspector");
}

#[test]
fn baseline_denies_a_privileged_docker_container() {
    // The container is named after the file, as the `name` query parameter
    // would name it.
    assert_denied(
        "privileged-container.json",
        "privileged",
        "privileged-container",
    );
    let run = portcullis([
        "eval".as_ref(),
        request("privileged-container.json").as_os_str(),
    ]);
    assert!(run.stdout.contains("HostConfig.Privileged=true"), "{run:?}");
}

#[test]
fn a_docker_body_can_be_forced() {
    // Nothing in this body says what it is: no Image, HostConfig or Cmd.
    let dir = scratch();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"User": "root", "Labels": {"team": "web"}}"#).expect("write");
    let guessed = portcullis(["eval".as_ref(), body.as_os_str()]);
    assert_eq!(guessed.status, 2, "{guessed:?}");
    assert!(
        guessed.stderr.contains("cannot tell what this is"),
        "{guessed:?}"
    );
    let forced = portcullis([
        "eval".as_ref(),
        "--docker".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
        body.as_os_str(),
    ]);
    assert_eq!(forced.status, 0, "{forced:?}");
    assert_eq!(
        Run::policy(&forced.decision(), "pod-security")["allowed"],
        true
    );
}

#[test]
fn baseline_allows_plain_workloads() {
    for file in [
        "nginx-pod.yaml",
        "plain-container.json",
        "restricted-pod.yaml",
    ] {
        let run = eval_json(None, &[request(file)]);
        assert_eq!(run.status, 0, "{file}: {run:?}");
        let decision = run.decision();
        assert_eq!(decision["allowed"], true);
        assert_eq!(decision["message"], serde_json::Value::Null);
        assert_eq!(Run::policy(&decision, "pod-security")["allowed"], true);
    }
}

#[test]
fn restricted_requires_every_hardening_setting() {
    let dir = scratch();
    let config = restricted(dir.path());
    for (file, control) in [
        ("restricted-without-run-as-non-root.yaml", "runAsNonRoot"),
        (
            "restricted-with-privilege-escalation.yaml",
            "allowPrivilegeEscalation",
        ),
        (
            "restricted-without-drop-all.yaml",
            "capabilities_restricted",
        ),
        (
            "restricted-without-seccomp.yaml",
            "seccompProfile_restricted",
        ),
    ] {
        let run = eval_json(Some(&config), &[request(file)]);
        assert_eq!(run.status, 1, "{file}: {run:?}");
        let message = run.decision()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains(&format!("{control} (")),
            "{file}: {message}"
        );
        assert!(message.contains("container \"app\""), "{file}: {message}");
        // Each file lacks one setting, so one control is named.
        assert_eq!(message.matches(" (").count(), 1, "{file}: {message}");
    }
    let compliant = eval_json(Some(&config), &[request("restricted-pod.yaml")]);
    assert_eq!(compliant.status, 0, "{compliant:?}");
}

#[test]
fn the_json_output_has_the_documented_shape() {
    let run = eval_json(None, &[request("admission-review.json")]);
    assert_eq!(run.status, 1, "{run:?}");
    let decision = run.decision();
    for key in ["allowed", "message", "warnings", "patch", "policies"] {
        assert!(decision.get(key).is_some(), "missing {key}: {decision}");
    }
    let policy = Run::policy(&decision, "pod-security");
    assert_eq!(policy["mode"], "enforce");
    assert_eq!(policy["allowed"], false);
    assert!(policy["duration_us"].as_u64().is_some(), "{policy}");
    assert!(
        policy["message"]
            .as_str()
            .unwrap_or_default()
            .contains("hostNamespaces (hostPID=true)"),
        "{policy}"
    );
    assert_eq!(policy["annotations"]["controls"], "hostNamespaces");
}

#[test]
fn the_text_output_tells_a_person_what_to_change() {
    let run = portcullis(["eval".as_ref(), request("privileged-pod.yaml").as_os_str()]);
    assert_eq!(run.status, 1);
    assert!(run.stdout.starts_with("DENIED\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("pod-security [enforce]: denied in"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(r#"container "nginx" must not set securityContext.privileged=true"#),
        "{}",
        run.stdout
    );
}

#[test]
fn several_requests_are_decided_in_one_run() {
    let run = eval_json(
        None,
        &[request("nginx-pod.yaml"), request("privileged-pod.yaml")],
    );
    // Any denial makes the run a denial.
    assert_eq!(run.status, 1, "{run:?}");
    let allowed: Vec<_> = run
        .decisions()
        .iter()
        .map(|d| d["allowed"].clone())
        .collect();
    assert_eq!(allowed, [true, false]);
}

#[test]
fn check_accepts_the_shipped_configurations() {
    for file in ["default.yaml", "restricted.yaml"] {
        let path = crate::support::workspace().join("policies").join(file);
        let run = portcullis(["check".as_ref(), "--config".as_ref(), path.as_os_str()]);
        assert_eq!(run.status, 0, "{file}: {run:?}");
        assert!(
            run.stdout.starts_with("configuration OK: 1 policy loaded"),
            "{}",
            run.stdout
        );
    }
    let default = portcullis(["check"]);
    assert_eq!(default.status, 0, "{default:?}");
    assert!(
        default
            .stdout
            .contains("pod-security [enforce]: builtin:pod-security"),
        "{}",
        default.stdout
    );
}
