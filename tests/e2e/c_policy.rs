//! The policy interface is language-neutral: a policy written in C, with
//! bindings from wit-bindgen's C generator and no Rust SDK, runs under the
//! same host.

use crate::support::{Run, c_policy, config, eval_json, portcullis_with, request, scratch};

fn c_config(dir: &std::path::Path, settings: &str) -> std::path::PathBuf {
    config(
        dir,
        &format!(
            "policies:\n  - name: c\n    module: {}\n{settings}",
            c_policy().display()
        ),
    )
}

#[test]
fn a_policy_written_in_c_judges_requests() {
    let dir = scratch();
    let config = c_config(dir.path(), "");
    let run = eval_json(
        Some(&config),
        &[
            request("privileged-pod.yaml"),
            request("nginx-pod.yaml"),
            request("privileged-container.json"),
        ],
    );
    let decisions = run.decisions();
    assert_eq!(decisions.len(), 3, "{run:?}");
    let c = |index: usize| Run::policy(&decisions[index], "c");
    assert_eq!(c(0)["allowed"], false);
    assert_eq!(
        c(0)["message"],
        r#"container "nginx" is privileged (denied by a policy written in C)"#
    );
    assert_eq!(c(1)["allowed"], true);
    // The same check reaches Docker containers through the workload model.
    assert_eq!(c(2)["allowed"], false);
}

#[test]
fn a_c_policy_validates_its_settings_and_logs_through_the_host() {
    let dir = scratch();
    let rejected = c_config(dir.path(), "    settings: {strict: true}\n");
    let run = portcullis_with(
        ["check".as_ref(), "--config".as_ref(), rejected.as_os_str()],
        &[],
    );
    assert_eq!(run.status, 2, "{run:?}");
    assert!(
        run.stderr.contains("the C policy takes no settings"),
        "{run:?}"
    );

    let config = c_config(dir.path(), "");
    let run = portcullis_with(
        [
            "eval".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            request("nginx-pod.yaml").as_os_str(),
        ],
        &[("PORTCULLIS_LOG", "portcullis=debug".as_ref())],
    );
    assert_eq!(run.status, 0, "{run:?}");
    assert!(
        run.stderr.contains("c-no-privileged: judging a request"),
        "{}",
        run.stderr
    );
}
