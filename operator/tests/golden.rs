//! Golden files, in/out pairs as in Envoy Gateway's translator tests.
//!
//! - `examples/<group>/` → `tests/golden/<group>/`: `sluice render --dag` of the group, one file
//!   per part of the report so that a diff is reviewable: `statuses.json` (each instance's
//!   IngressRoute statuses), `dag.json`, and `xds-<type>.json` per xDS resource type. Each file
//!   is a list of `{"gateway": <instance>, <part>: …}`; together they hold the whole report.
//!   Examples must load cleanly.
//! - `tests/golden/invalid/<case>.in.yaml` → `<case>.out.json`: inputs that are wrong on
//!   purpose; the output holds what loading said (errors, warnings) and every instance's
//!   statuses, so the wording and the blame a user sees are reviewed like code.
//!
//! After a deliberate change, regenerate every golden file (these and the translation's fixture
//! in `src/xds/translate/testdata`) with one command, then review the diff:
//!
//! ```text
//! make golden        # SLUICE_UPDATE_GOLDEN=1 for both tests
//! ```
//!
//! With `SLUICE_UPDATE_GOLDEN` set the test writes what differs, prints each file it wrote or
//! removed, and checks nothing: its pass means "written", not "matches".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sluice::render::{RenderOptions, render_report};

const UPDATE_ENV: &str = "SLUICE_UPDATE_GOLDEN";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn invalid_dir() -> PathBuf {
    golden_dir().join("invalid")
}

/// The directories of `examples/traefik/` whose every object Sluice reads (the others hold
/// kinds not served yet; `traefik_examples.rs` checks those decode).
const TRAEFIK_GROUPS: [&str; 31] = [
    "allowed-hosts",
    "basic",
    "client-ip",
    "compress",
    "forwardauth",
    "forwardauth-trust",
    "h2c",
    "hosts",
    "https",
    "ip-strategy",
    "middlewares",
    "mirroring",
    "ownership",
    "path-regex",
    "priority-weights",
    "redirect-regex",
    "rewrites",
    "servers-transport",
    "servers-transport-mtls",
    "service-options",
    "services",
    "sticky-weighted",
    "tcp",
    "tcp-client-ip",
    "tcp-plain",
    "tcp-regexp",
    "tcp-wild",
    "tls-options",
    "tls-store",
    "v2-syntax",
    "weighted",
];

/// Every directory directly under `examples/`, sorted, then the served ones of
/// `examples/traefik/` as `traefik/<dir>`.
fn example_groups() -> Vec<(String, PathBuf)> {
    let mut groups: Vec<(String, PathBuf)> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("traefik"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    groups.sort();
    for dir in TRAEFIK_GROUPS {
        let path = repo_root().join("examples/traefik").join(dir);
        groups.push((format!("traefik/{dir}"), path));
    }
    groups
}

fn update_requested() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

/// The golden files of one example group (file name → text): the render report with each
/// instance's DAG, split by part.
fn render_group(dir: &Path) -> Result<BTreeMap<String, String>, String> {
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
    split_report(&report)
}

/// Splits a render report into its parts; every field of every instance lands in one file.
fn split_report(report: &Value) -> Result<BTreeMap<String, String>, String> {
    let unexpected = |what: &str| format!("unexpected report shape: {what}");
    let top = report
        .as_object()
        .ok_or_else(|| unexpected("not an object"))?;
    if top.keys().any(|k| k != "gateways") {
        return Err(unexpected("top-level keys besides gateways"));
    }
    let mut parts: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let gateways = report["gateways"]
        .as_array()
        .ok_or_else(|| unexpected("gateways"))?;
    for gateway in gateways {
        let fields = gateway.as_object().ok_or_else(|| unexpected("gateway"))?;
        let name = &gateway["gateway"];
        for (key, value) in fields.iter().filter(|(k, _)| *k != "gateway") {
            let entries: Vec<(String, &str, &Value)> = match key.as_str() {
                "xds" => value
                    .as_object()
                    .ok_or_else(|| unexpected("xds"))?
                    .iter()
                    .map(|(t, v)| (format!("xds-{t}.json"), t.as_str(), v))
                    .collect(),
                "ingressRoutes" => vec![("statuses.json".to_owned(), key.as_str(), value)],
                _ => vec![(format!("{key}.json"), key.as_str(), value)],
            };
            for (file, field, value) in entries {
                parts
                    .entry(file)
                    .or_default()
                    .push(json!({"gateway": name, field: value}));
            }
        }
    }
    Ok(parts
        .into_iter()
        .map(|(file, list)| (file, pretty(&Value::Array(list))))
        .collect())
}

/// The output of one invalid case: what loading said and every instance's statuses.
fn render_invalid(input: &Path) -> String {
    let loaded = sluice::source::load_dir(input).unwrap();
    let report = render_report(&loaded.snapshot, RenderOptions::default());
    let statuses: Vec<Value> = report["gateways"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| json!({"gateway": g["gateway"], "ingressRoutes": g["ingressRoutes"]}))
        .collect();
    // Paths in messages are relative to the case, so the output does not depend on the
    // checkout's location.
    let relative = |s: String| s.replace(&format!("{}/", invalid_dir().display()), "");
    pretty(&json!({
        "errors": loaded.errors.iter().map(|e| relative(e.to_string())).collect::<Vec<_>>(),
        "warnings": loaded.warnings.iter().map(|w| relative(w.to_string())).collect::<Vec<_>>(),
        "gateways": statuses,
    }))
}

/// Compares (or, updating, writes) `path`; a failure message when it differs.
fn check(path: &Path, actual: &str, update: bool, failures: &mut Vec<String>) {
    let expected = std::fs::read_to_string(path).ok();
    if expected.as_deref() == Some(actual) {
        return;
    }
    let shown = path
        .strip_prefix(PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or(path)
        .display()
        .to_string();
    if update {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        println!("wrote {shown}");
        return;
    }
    failures.push(match expected {
        None => format!("{shown}: missing"),
        Some(expected) => format!(
            "{shown} differs (< golden, > actual):\n{}",
            pretty_assertions::StrComparison::new(&expected, actual)
        ),
    });
}

/// Files under `dir` (recursively) that `keep` does not accept: removed when updating,
/// failures otherwise (a golden file nothing produces would silently stop being checked).
fn stale(dir: &Path, keep: &dyn Fn(&Path) -> bool, update: bool, failures: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            stale(&path, keep, update, failures);
            if update && std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) {
                std::fs::remove_dir(&path).unwrap();
            }
        } else if !keep(&path) {
            if update {
                std::fs::remove_file(&path).unwrap();
                println!("removed {}", path.display());
            } else {
                failures.push(format!(
                    "{}: produced by no example or case",
                    path.display()
                ));
            }
        }
    }
}

fn finish(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!(
            "{}\n\n{} golden check(s) failed. If the change is intended, regenerate with\n  \
             make golden\nand review the diff.",
            failures.join("\n\n"),
            failures.len()
        );
    }
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
    let mut produced = Vec::new();
    for (group, dir) in &groups {
        let files = match render_group(dir) {
            Ok(files) => files,
            Err(e) => {
                failures.push(format!("examples/{group}: {e}"));
                continue;
            }
        };
        for (file, text) in files {
            let path = golden_dir().join(group).join(file);
            check(&path, &text, update, &mut failures);
            produced.push(path);
        }
    }
    let keep = |p: &Path| p.starts_with(invalid_dir()) || produced.iter().any(|q| q == p);
    stale(&golden_dir(), &keep, update, &mut failures);
    finish(failures);
}

#[test]
fn invalid_inputs_render_as_in_golden_files() {
    let update = update_requested();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(invalid_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "expected the invalid cases, found {cases:?}"
    );
    let mut failures = Vec::new();
    let mut produced = Vec::new();
    for input in &cases {
        let out = PathBuf::from(input.to_string_lossy().replace(".in.yaml", ".out.json"));
        check(&out, &render_invalid(input), update, &mut failures);
        produced.push(out);
    }
    let keep = |p: &Path| cases.iter().any(|c| c == p) || produced.iter().any(|q| q == p);
    stale(&invalid_dir(), &keep, update, &mut failures);
    finish(failures);
}
