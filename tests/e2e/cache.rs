//! The compilation cache: a warm start compiles nothing; a damaged entry is
//! recompiled; a directory others could write to is refused.

use std::os::unix::fs::PermissionsExt;

use crate::support::{portcullis_with, scratch};

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
        run.stderr.contains("ignoring unusable cache entry"),
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
