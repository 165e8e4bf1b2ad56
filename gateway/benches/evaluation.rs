//! What a decision costs: a warm evaluation of `pod-security` on a typical
//! Pod, the first evaluation after loading, a fresh instance alone, reading
//! an AdmissionReview, how far past its deadline a runaway policy is
//! stopped, and the start-up of the binary with a warm compilation cache.
//!
//! `cargo bench -p portcullis --bench evaluation`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis::admission::{Pipeline, Request};
use portcullis::config::Config;
use portcullis::kubernetes::review;
use portcullis::policy::{Grants, Host, HostOptions, Limits, builtin};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("in the workspace")
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-cache")
}

fn host() -> Host {
    Host::new(&HostOptions {
        cache_dir: Some(cache_dir()),
        ..HostOptions::default()
    })
    .expect("create the host")
}

/// An AdmissionReview creating the 2.5 KB pod of `tests/requests/typical-pod.json`.
fn typical_review() -> Vec<u8> {
    let pod: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace().join("tests/requests/typical-pod.json")).expect("read the pod"),
    )
    .expect("JSON");
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "operation": "CREATE", "namespace": "shop", "name": "checkout-7d9f8b6c5-x2x7q",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod
        }
    })
    .to_string()
    .into_bytes()
}

fn typical_request() -> Request {
    review::parse(&typical_review())
        .expect("a valid review")
        .request
}

fn config(level: &str) -> Config {
    Config::parse(
        &format!("policies:\n  - name: pod-security\n    module: builtin:pod-security\n    settings: {{level: {level}}}\n"),
        "bench",
    )
    .expect("valid configuration")
}

fn pod_security(c: &mut Criterion) {
    let host = host();
    let request = typical_request();
    let mut group = c.benchmark_group("pod-security");
    for level in ["baseline", "restricted"] {
        let pipeline = Pipeline::load(&config(level), &host).expect("load");
        assert!(
            pipeline.evaluate(&request).allowed,
            "the typical pod is compliant"
        );
        group.bench_function(format!("warm evaluation, {level}"), |b| {
            b.iter(|| pipeline.evaluate(&request))
        });
    }
    group.bench_function("first evaluation after load", |b| {
        b.iter_batched(
            || Pipeline::load(&config("baseline"), &host).expect("load"),
            |pipeline| pipeline.evaluate(&request),
            BatchSize::PerIteration,
        )
    });
    let module = host
        .load(
            "pod-security",
            builtin::find("pod-security").expect("built in"),
        )
        .expect("load");
    let limits = Limits {
        timeout: Duration::from_millis(250),
        memory: 64 << 20,
        grants: Grants::default(),
    };
    group.bench_function("fresh instance alone", |b| {
        b.iter(|| module.instantiate(&limits))
    });
    group.finish();

    let body = typical_review();
    c.bench_function("admission review: parse and normalize", |b| {
        b.iter(|| review::parse(&body))
    });
}

fn deadline(c: &mut Criterion) {
    let target_dir = portcullis_wasm_build::default_target_dir(workspace());
    let test_policy = portcullis_wasm_build::build(workspace(), &target_dir, &["test-policy"])
        .expect("build the test policy")
        .remove(0);
    let host = host();
    let config = Config::parse(
        &format!(
            "policies:\n  - name: loop\n    module: {}\n    settings: {{behaviour: loop}}\n    timeout: 10ms\n",
            test_policy.display()
        ),
        "bench",
    )
    .expect("valid configuration");
    let pipeline = Pipeline::load(&config, &host).expect("load");
    let request = typical_request();
    let mut group = c.benchmark_group("deadline");
    group.sample_size(20);
    // Subtract 10 ms from the time to get how late the loop was stopped.
    group.bench_function("infinite loop, 10 ms deadline", |b| {
        b.iter(|| pipeline.evaluate(&request))
    });
    group.finish();
}

fn startup(c: &mut Criterion) {
    let binary = env!("CARGO_BIN_EXE_portcullis");
    let run = || {
        let status = Command::new(binary)
            .arg("check")
            .env("PORTCULLIS_CACHE_DIR", cache_dir())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run portcullis");
        assert!(status.success());
    };
    run(); // warm the cache
    let mut group = c.benchmark_group("startup");
    group.sample_size(20);
    group.bench_function("portcullis check, warm cache", |b| b.iter(run));
    group.finish();
}

criterion_group!(benches, pod_security, deadline, startup);
criterion_main!(benches);
