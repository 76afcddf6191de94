//! Golden files: `sluice render --dag` of every `examples/<group>` must equal
//! `tests/golden/<group>.json`. After a deliberate change, regenerate them with
//!
//! ```text
//! SLUICE_UPDATE_GOLDEN=1 cargo test -p sluice --test golden     # or: make golden
//! ```
//!
//! and review the diff like code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use sluice::render::{RenderOptions, render_report};

const UPDATE_ENV: &str = "SLUICE_UPDATE_GOLDEN";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every directory directly under `examples/`, sorted; not `examples/traefik`, whose objects
/// Sluice does not serve yet (`traefik_examples.rs` checks them).
fn example_groups() -> Vec<(String, PathBuf)> {
    let mut groups: Vec<(String, PathBuf)> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("traefik"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    groups.sort();
    groups
}

fn update_requested() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The golden text of one group: the render report with each instance's DAG.
fn render_group(dir: &Path) -> Result<String, String> {
    let loaded = sluice::source::load_dir(dir).map_err(|e| e.to_string())?;
    let problems: Vec<String> = loaded
        .errors
        .iter()
        .map(ToString::to_string)
        .chain(loaded.warnings.iter().map(|w| format!("warning: {w}")))
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "examples must load cleanly:\n  {}",
            problems.join("\n  ")
        ));
    }
    let report = render_report(&loaded.snapshot, RenderOptions { include_dag: true });
    Ok(serde_json::to_string_pretty(&report).unwrap() + "\n")
}

#[test]
fn examples_render_as_in_golden_files() {
    let update = update_requested();
    let groups = example_groups();
    assert!(
        groups.len() >= 20,
        "expected the example groups, found {groups:?}"
    );
    let mut failures = Vec::new();

    for (group, dir) in &groups {
        let golden_path = golden_dir().join(format!("{group}.json"));
        let actual = match render_group(dir) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("examples/{group}: {e}"));
                continue;
            }
        };
        let expected = std::fs::read_to_string(&golden_path).ok();
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&golden_path, &actual).unwrap();
            eprintln!("updated {}", golden_path.display());
        } else {
            match expected {
                None => failures.push(format!(
                    "examples/{group}: no golden file tests/golden/{group}.json"
                )),
                Some(expected) => failures.push(format!(
                    "examples/{group}: render differs from tests/golden/{group}.json \
                     (< golden, > actual):\n{}",
                    pretty_assertions::StrComparison::new(&expected, &actual)
                )),
            }
        }
    }

    // A golden file without its example group would silently stop being checked.
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        if !groups.iter().any(|(g, _)| *g == stem) {
            if update {
                std::fs::remove_file(&path).unwrap();
                eprintln!("removed stale {}", path.display());
            } else {
                failures.push(format!(
                    "tests/golden/{stem}.json has no examples/{stem} directory"
                ));
            }
        }
    }

    if !failures.is_empty() {
        panic!(
            "{}\n\n{} golden check(s) failed. If the change is intended, regenerate with\n  \
             {UPDATE_ENV}=1 cargo test -p sluice --test golden   (or: make golden)\n\
             and review the diff.",
            failures.join("\n\n"),
            failures.len()
        );
    }
}
