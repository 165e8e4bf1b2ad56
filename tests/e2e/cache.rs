//! The compilation cache: a warm start compiles nothing; a damaged,
//! swapped or forged entry is recompiled, never run; a directory others
//! could write to is refused. And what loading may cost: a module over the
//! size limit is not read, a compile bomb is stopped at its time budget.

use std::os::unix::fs::PermissionsExt;

use crate::support::{config, portcullis_with, request, scratch, test_policy};

fn check(cache: &std::path::Path) -> crate::support::Run {
    portcullis_with(
        ["check"],
        &[
            ("PORTCULLIS_CACHE_DIR", cache.as_os_str()),
            ("PORTCULLIS_LOG", "portcullis=debug".as_ref()),
        ],
    )
}

fn entries(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache)
        .expect("list the cache")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "cwasm")
        })
        .collect()
}

#[test]
fn a_warm_start_compiles_nothing() {
    let dir = scratch();
    let cache = dir.path().join("cache");
    let cold = check(&cache);
    assert_eq!(cold.status, 0, "{cold:?}");
    assert!(
        cold.stderr.contains("compiled the policy"),
        "{}",
        cold.stderr
    );
    assert_eq!(entries(&cache).len(), 1);
    let mode = std::fs::metadata(&cache)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the cache is private");

    let warm = check(&cache);
    assert_eq!(warm.status, 0, "{warm:?}");
    assert!(
        warm.stderr
            .contains("loaded the compiled policy from the cache"),
        "{}",
        warm.stderr
    );
    assert!(
        !warm.stderr.contains("compiled the policy"),
        "{}",
        warm.stderr
    );
}

#[test]
fn a_damaged_entry_is_recompiled() {
    let dir = scratch();
    let cache = dir.path().join("cache");
    assert_eq!(check(&cache).status, 0);
    let entry = entries(&cache).remove(0);
    std::fs::write(&entry, b"not a compiled module").expect("damage the entry");
    let run = check(&cache);
    assert_eq!(run.status, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("discarding a cache entry that does not prove its origin"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("compiled the policy"), "{}", run.stderr);
    assert_ne!(
        std::fs::read(&entry).expect("read"),
        b"not a compiled module",
        "rewritten"
    );
}

#[test]
fn a_cache_others_can_write_is_refused() {
    let dir = scratch();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("create");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let run = check(&cache);
    assert_eq!(run.status, 2, "{run:?}");
    assert!(
        run.stderr.contains("writable by other users"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_usual_cache_place_is_a_convenience_not_a_requirement() {
    // No cache chosen; the default place under $HOME is unusable.
    let dir = scratch();
    let cache = dir.path().join(".cache/portcullis");
    std::fs::create_dir_all(&cache).expect("create");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let run = portcullis_with(
        ["check"],
        &[
            ("PORTCULLIS_CACHE_DIR", "".as_ref()),
            ("XDG_CACHE_HOME", "".as_ref()),
            ("HOME", dir.path().as_os_str()),
        ],
    );
    assert_eq!(run.status, 0, "{run:?}");
    assert!(
        run.stderr.contains("running without a compilation cache"),
        "{}",
        run.stderr
    );
    assert!(
        entries(&cache).is_empty(),
        "nothing written to an untrusted directory"
    );
}

/// Evaluates a privileged pod with the test policy (allowing) and
/// pod-security, with the compilation cache in `cache`.
fn privileged_pod(dir: &std::path::Path, cache: &std::path::Path) -> crate::support::Run {
    let config = config(
        dir,
        &format!(
            "policies:\n  - {{name: test, module: {}}}\n  - {{name: pod-security, module: builtin:pod-security}}\n",
            test_policy().display()
        ),
    );
    portcullis_with(
        [
            "eval",
            "--output",
            "json",
            "--config",
            config.to_str().expect("UTF-8"),
            request("privileged-pod.yaml").to_str().expect("UTF-8"),
        ],
        &[
            ("PORTCULLIS_CACHE_DIR", cache.as_os_str()),
            ("PORTCULLIS_LOG", "portcullis=debug".as_ref()),
        ],
    )
}

#[test]
fn a_swapped_or_forged_entry_is_recompiled_never_run() {
    let dir = scratch();
    let cache = dir.path().join("cache");
    let first = privileged_pod(dir.path(), &cache);
    assert_eq!(first.decision()["allowed"], false, "{first:?}");
    // Entries are named by the digest of their module: put the allowing
    // test policy's compiled code in pod-security's place.
    let digest = {
        use sha2::Digest as _;
        let wasm = std::fs::read(test_policy()).expect("read the test policy");
        sha2::Sha256::digest(&wasm)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    let (tests, others): (Vec<_>, Vec<_>) = entries(&cache).into_iter().partition(|entry| {
        entry
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(&digest))
    });
    assert_eq!((tests.len(), others.len()), (1, 1), "{tests:?} {others:?}");
    let (test, pod_security) = (&tests[0], &others[0]);
    std::fs::copy(test, pod_security).expect("swap the entry");
    let swapped = privileged_pod(dir.path(), &cache);
    assert_eq!(swapped.decision()["allowed"], false, "{swapped:?}");
    assert!(
        swapped.stderr.contains(
            "discarding a cache entry that does not prove its origin (its MAC does not match"
        ),
        "{}",
        swapped.stderr
    );
    assert_ne!(
        std::fs::read(pod_security).expect("read"),
        std::fs::read(test).expect("read"),
        "recompiled and rewritten"
    );

    // Native code of one's choosing, in an entry that looks like one.
    let mut forged = std::fs::read(pod_security).expect("read");
    let end = forged.len() - 1;
    forged[end] ^= 0xff;
    std::fs::write(pod_security, &forged).expect("forge");
    let run = privileged_pod(dir.path(), &cache);
    assert_eq!(run.decision()["allowed"], false, "{run:?}");
    assert!(
        run.stderr.contains("its MAC does not match"),
        "{}",
        run.stderr
    );

    // An entry others could rewrite is not trusted either.
    std::fs::set_permissions(pod_security, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let run = privileged_pod(dir.path(), &cache);
    assert!(
        run.stderr.contains("others may read or write it"),
        "{}",
        run.stderr
    );
}

/// A component whose one core module has `functions` functions of a few
/// hundred instructions each: cheap to write, slow to compile.
fn compile_bomb(functions: u32) -> Vec<u8> {
    use wasm_encoder::{CodeSection, Function, FunctionSection, Module, TypeSection, ValType};
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    module.section(&types);
    let mut declared = FunctionSection::new();
    let mut code = CodeSection::new();
    for index in 0..functions {
        declared.function(0);
        let mut body = Function::new([(1, ValType::I32)]);
        let mut sink = body.instructions();
        for step in 0..16 {
            sink.local_get(0)
                .i32_const(index as i32 ^ step)
                .i32_add()
                .local_set(1)
                .local_get(1)
                .local_set(0);
        }
        sink.local_get(0).end();
        code.function(&body);
    }
    module.section(&declared);
    module.section(&code);
    let mut component = wasm_encoder::Component::new();
    component.section(&wasm_encoder::ModuleSection(&module));
    component.finish()
}

/// `portcullis check` of a compile bomb under the `sandbox` lines given.
fn check_bomb(sandbox: &str) -> crate::support::Run {
    let dir = scratch();
    let bomb = dir.path().join("bomb.wasm");
    std::fs::write(&bomb, compile_bomb(100_000)).expect("write the bomb");
    let config = config(
        dir.path(),
        &format!(
            "sandbox:\n{sandbox}policies:\n  - {{name: bomb, module: {}}}\n",
            bomb.display()
        ),
    );
    let run = check_with(&config, &dir.path().join("cache"));
    assert_eq!(run.status, 2, "{run:?}");
    run
}

#[test]
fn a_compile_bomb_is_stopped_at_its_budget() {
    let run = check_bomb("  compile_timeout: 2s\n");
    assert!(
        run.stderr
            .contains("compiling the module took longer than 2 s (sandbox.compile_timeout)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_compile_bomb_is_stopped_at_its_memory_budget() {
    let run = check_bomb("  compile_timeout: 5m\n  compile_memory: 256MiB\n");
    assert!(
        run.stderr.contains(
            "compiling the module needed more than 268435456 bytes of memory (sandbox.compile_memory)"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_module_over_the_size_limit_is_refused_unread() {
    let dir = scratch();
    let large = dir.path().join("large.wasm");
    // A valid component followed by a custom section of 2 MiB.
    let mut bytes = std::fs::read(test_policy()).expect("read the test policy");
    let mut section = wasm_encoder::Component::new();
    section.section(&wasm_encoder::CustomSection {
        name: "padding".into(),
        data: vec![0; 2 << 20].into(),
    });
    bytes.extend_from_slice(&section.finish()[8..]);
    std::fs::write(&large, &bytes).expect("write");
    let config = config(
        dir.path(),
        &format!(
            "sandbox:\n  max_module_size: 1MiB\npolicies:\n  - {{name: large, module: {}}}\n",
            large.display()
        ),
    );
    let run = check_with(&config, &dir.path().join("cache"));
    assert_eq!(run.status, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("larger than the limit of 1048576 bytes (sandbox.max_module_size)"),
        "{}",
        run.stderr
    );
}

fn check_with(config: &std::path::Path, cache: &std::path::Path) -> crate::support::Run {
    portcullis_with(
        ["check", "--config", config.to_str().expect("UTF-8")],
        &[("PORTCULLIS_CACHE_DIR", cache.as_os_str())],
    )
}
