//! Bad input, bad configuration: exit status 2, a message that names the
//! problem, never a panic.

use std::path::{Path, PathBuf};

use crate::support::{config, portcullis, request, scratch, test_policy};

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write the input");
    path
}

/// Evaluating `file` fails with exit 2 and `expected` in the message.
fn assert_rejected(file: &Path, expected: &str) {
    let run = portcullis(["eval".as_ref(), file.as_os_str()]);
    assert_eq!(run.status, 2, "{}: {run:?}", file.display());
    assert!(
        run.stderr.contains(expected),
        "{}: expected {expected:?} in {}",
        file.display(),
        run.stderr
    );
    assert!(
        run.stdout.is_empty(),
        "no decision for a rejected input: {}",
        run.stdout
    );
}

#[test]
fn malformed_requests_are_rejected_with_the_reason() {
    let dir = scratch();
    let dir = dir.path();
    let billion_laughs = {
        let mut yaml = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (name, previous) in "bcdefghi".chars().zip("abcdefgh".chars()) {
            yaml += &format!(
                "{name}: &{name} [{}]\n",
                vec![format!("*{previous}"); 9].join(", ")
            );
        }
        yaml + "apiVersion: v1\nkind: Pod\n"
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write(dir, "broken.json", "{\"apiVersion\": \"v1\", "),
            "not valid JSON",
        ),
        (
            write(dir, "broken.yaml", "apiVersion: v1\nkind: [Pod\n"),
            "not valid YAML",
        ),
        (
            write(dir, "binary.bin", [0xff, 0xfe, 0x00, 0x81, 0x13]),
            "not UTF-8",
        ),
        (write(dir, "empty.yaml", ""), "the file is empty"),
        (
            write(dir, "list.yaml", "- 1\n- 2\n"),
            "cannot tell what this is",
        ),
        (
            write(
                dir,
                "two.yaml",
                "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\n",
            ),
            "2 YAML documents",
        ),
        (
            write(
                dir,
                "shape.yaml",
                "apiVersion: v1\nkind: Pod\nspec:\n  containers: nginx\n",
            ),
            "spec.containers: invalid type",
        ),
        (
            write(
                dir,
                "port.yaml",
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - {name: a, ports: [{containerPort: -1}]}\n",
            ),
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            write(
                dir,
                "review.json",
                r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
            ),
            "AdmissionReview has no request",
        ),
        (
            write(
                dir,
                "docker.json",
                r#"{"Image": "x", "HostConfig": {"Privileged": "yes"}}"#,
            ),
            "HostConfig.Privileged: expected a boolean, found a string",
        ),
        (
            write(
                dir,
                "twice.json",
                r#"{"Image": "x", "HostConfig": {"Privileged": false, "privileged": true}}"#,
            ),
            "both set this field",
        ),
        (write(dir, "bomb.yaml", billion_laughs), "budget"),
        (
            write(dir, "deep.json", "[".repeat(100_000) + &"]".repeat(100_000)),
            "recursion limit",
        ),
        (
            write(dir, "huge.json", vec![b' '; 9 << 20]),
            "larger than 8 MiB",
        ),
        (dir.join("missing.yaml"), "cannot read the file"),
        (dir.to_path_buf(), "cannot read the file"),
    ];
    for (file, expected) in cases {
        assert_rejected(&file, expected);
    }
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let dir = scratch();
    let bad = write(dir.path(), "bad.json", "{");
    let run = portcullis([
        "eval".as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
        bad.as_os_str(),
        request("nginx-pod.yaml").as_os_str(),
    ]);
    assert_eq!(run.status, 2, "{run:?}");
    assert_eq!(
        run.decisions().len(),
        1,
        "the good file is still decided: {run:?}"
    );
}

#[test]
fn bad_configurations_are_rejected_with_the_reason() {
    let dir = scratch();
    let dir = dir.path();
    let not_wasm = write(dir, "not-wasm.wasm", "this is not WebAssembly");
    // A core module (the empty one), not a component.
    let core = write(dir, "core.wasm", b"\0asm\x01\0\0\0");
    let cases = [
        (
            "policies:\n  - name: p\n    module: builtin:pod-security\n    modee: warn\n",
            "policies[0].modee: line 4",
        ),
        (
            "policies:\n  - name: p\n    module: builtin:pod-security\n    settings: {level: extreme}\n",
            "rejected its settings",
        ),
        (
            "policies:\n  - name: p\n    module: builtin:pod-security\n    settings: {levle: baseline}\n",
            "unknown field `levle`",
        ),
        (
            "policies:\n  - name: p\n    module: builtin:pod-security\n    settings: {version: \"1.30\"}\n",
            "\"version\"",
        ),
        (
            "policies:\n  - name: p\n    module: missing.wasm\n",
            "cannot read policy module",
        ),
        (
            "policies:\n  - name: p\n    module: not-wasm.wasm\n",
            "not a valid WebAssembly component",
        ),
        (
            "policies:\n  - name: p\n    module: core.wasm\n",
            "not a valid WebAssembly component",
        ),
        (
            "policies:\n  - name: p\n    module: builtin:pod-security\n    timeout: forever\n",
            "policies[0].timeout",
        ),
        ("policies: {}\n", "policies"),
        ("cache_dir: [1]\n", "cache_dir"),
    ];
    assert!(not_wasm.exists() && core.exists());
    for (yaml, expected) in cases {
        let config = config(dir, yaml);
        let run = portcullis(["check".as_ref(), "--config".as_ref(), config.as_os_str()]);
        assert_eq!(run.status, 2, "{yaml}: {run:?}");
        assert!(
            run.stderr.contains(expected),
            "{yaml}: expected {expected:?} in {}",
            run.stderr
        );
        let eval = portcullis([
            "eval".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            request("nginx-pod.yaml").as_os_str(),
        ]);
        assert_eq!(eval.status, 2, "{yaml}: {eval:?}");
    }
    let missing = portcullis(["check", "--config", "/nonexistent/portcullis.yaml"]);
    assert_eq!(missing.status, 2);
    assert!(
        missing.stderr.contains("cannot read configuration"),
        "{missing:?}"
    );
}

#[test]
fn a_policy_that_rejects_its_settings_stops_the_load() {
    let dir = scratch();
    let config = config(
        dir.path(),
        &format!(
            "policies:\n  - name: t\n    module: {}\n    settings: {{behaviour: label}}\n",
            test_policy().display()
        ),
    );
    let run = portcullis(["check".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(run.stderr.contains("`label` is required"), "{run:?}");
}

/// Feeds mutated copies of every request file to the binary: each is
/// decided or rejected, and nothing panics.
#[test]
fn mutated_inputs_never_panic() {
    let dir = scratch();
    let sources: Vec<Vec<u8>> =
        std::fs::read_dir(crate::support::workspace().join("tests/requests"))
            .expect("list the requests")
            .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read"))
            .collect();
    // A fixed-seed xorshift: the same mutations every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting: &[&[u8]] = &[
        b"{", b"}", b"[", b"]", b":", b",", b"\"", b"null", b"true", b"-1", b"1e999", b"\\u0000",
        b"\n  - ", b"&a *a",
    ];
    let mut files = Vec::new();
    for index in 0..400 {
        let mut bytes = sources[(next() as usize) % sources.len()].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % (bytes.len() + 1);
            match next() % 3 {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 => {
                    let token = interesting[(next() as usize) % interesting.len()];
                    bytes.splice(at..at, token.iter().copied());
                }
                _ if at < bytes.len() => bytes[at] = next() as u8,
                _ => {}
            }
        }
        files.push(write(dir.path(), &format!("mutant-{index}"), bytes));
    }
    let mut args: Vec<std::ffi::OsString> = vec!["eval".into(), "-o".into(), "json".into()];
    args.extend(files.iter().map(Into::into));
    // `portcullis` itself asserts there was no panic and the status is 0-2.
    let run = portcullis(args);
    let decided = run.decisions().len();
    let prefix = format!("error: {}", dir.path().display());
    let rejected = run
        .stderr
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .count();
    assert_eq!(
        decided + rejected,
        files.len(),
        "every input is decided or rejected: {}",
        run.stderr
    );
}
