//! Kubernetes' own Pod Security conformance pods (`shared/fixtures/
//! pod-security`, copied from kubernetes/pod-security-admission): every one
//! gets the verdict upstream expects, at its level and version, through the
//! `portcullis` binary and the built-in `pod-security` policy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::support::{config, eval_json, scratch, shared_fixtures};

/// At the restricted level some baseline controls are replaced by stricter
/// ones (upstream's `OverrideCheckIDs`); a fixture for the baseline control
/// is then denied, correctly, under the restricted control's name.
const RESTRICTED_OVERRIDES: &[(&str, &str)] = &[
    ("capabilities_baseline", "capabilities_restricted"),
    ("seccompprofile_baseline", "seccompprofile_restricted"),
    ("hostpathvolumes", "restrictedvolumes"),
    ("procmount", "procmount_restricted"),
];

/// `hostnamespaces2.yaml` → `hostnamespaces`.
fn control_of(file: &Path) -> String {
    let stem = file
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    stem.trim_end_matches(|c: char| c.is_ascii_digit())
        .to_owned()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    files
}

#[derive(Default)]
struct Tally {
    pass_ok: usize,
    pass_total: usize,
    fail_ok: usize,
    fail_total: usize,
}

#[test]
fn every_upstream_fixture_gets_the_expected_verdict() {
    let root = shared_fixtures().join("pod-security");
    let dir = scratch();
    let mut tallies: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut evaluated = 0;

    for level in ["baseline", "restricted"] {
        let mut versions: Vec<String> = std::fs::read_dir(root.join(level))
            .expect("list versions")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        versions.sort_by_key(|version| {
            version
                .trim_start_matches("v1.")
                .parse::<u32>()
                .unwrap_or(u32::MAX)
        });
        for version in versions {
            let config = config(
                dir.path(),
                &format!(
                    "policies:\n  - name: pss\n    module: builtin:pod-security\n    settings: {{level: {level}, version: {version}}}\n"
                ),
            );
            let base = root.join(level).join(&version);
            let expected: Vec<(PathBuf, bool)> = yaml_files(&base.join("pass"))
                .into_iter()
                .map(|file| (file, true))
                .chain(
                    yaml_files(&base.join("fail"))
                        .into_iter()
                        .map(|file| (file, false)),
                )
                .collect();
            let files: Vec<PathBuf> = expected.iter().map(|(file, _)| file.clone()).collect();
            let run = eval_json(Some(&config), &files);
            let decisions: HashMap<String, serde_json::Value> = run
                .decisions()
                .into_iter()
                .map(|decision| {
                    (
                        decision["request"].as_str().unwrap_or_default().to_owned(),
                        decision,
                    )
                })
                .collect();

            for (file, allowed) in expected {
                evaluated += 1;
                let control = control_of(&file);
                let tally = tallies
                    .entry((level.to_owned(), control.clone()))
                    .or_default();
                let Some(decision) = decisions.get(&file.display().to_string()) else {
                    wrong.push(format!("{}: not evaluated: {}", file.display(), run.stderr));
                    continue;
                };
                let message = decision["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let names_control = || {
                    let overridden = RESTRICTED_OVERRIDES
                        .iter()
                        .filter(|_| level == "restricted")
                        .find(|(baseline, _)| *baseline == control)
                        .map(|(_, restricted)| *restricted);
                    message.contains(&format!("{control} ("))
                        || overridden
                            .is_some_and(|restricted| message.contains(&format!("{restricted} (")))
                };
                let right = decision["allowed"] == allowed && (allowed || names_control());
                if allowed {
                    tally.pass_total += 1;
                    tally.pass_ok += usize::from(right);
                } else {
                    tally.fail_total += 1;
                    tally.fail_ok += usize::from(right);
                }
                if !right {
                    wrong.push(format!(
                        "{}: expected allowed={allowed}, got {decision}",
                        file.display()
                    ));
                }
            }
        }
    }

    println!(
        "{:<11} {:<28} {:>11} {:>11}",
        "level", "control", "pass", "fail"
    );
    for ((level, control), tally) in &tallies {
        println!(
            "{level:<11} {control:<28} {:>5}/{:<5} {:>5}/{:<5}",
            tally.pass_ok, tally.pass_total, tally.fail_ok, tally.fail_total
        );
    }
    println!("{evaluated} fixtures evaluated, {} wrong", wrong.len());
    assert!(
        wrong.is_empty(),
        "{} fixtures got the wrong verdict:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(evaluated, 4537, "every fixture is evaluated");
}
