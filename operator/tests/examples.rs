//! The examples: every IngressRoute deserializes strictly, the reference's YAML is unchanged,
//! and the order objects load in does not change what is rendered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use sluice::api::IngressRoute;
use sluice::render::{RenderOptions, render_report};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every manifest file under `examples/`, sorted.
fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("examples"), &mut files);
    files.sort();
    files
}

/// The YAML documents of a file, with the parser's own document iterator (not the loader's).
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Fields of `original` that are missing or different in `roundtrip` (a field the types do not
/// know is dropped by a round trip). Defaults the types omit (`false`, `[]`) are not differences.
fn lost_fields(original: &Value, roundtrip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, roundtrip) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &here, out),
                    None if *value == Value::Bool(false) || *value == serde_json::json!([]) => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                lost_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a == b => {}
        _ => out.push(path.to_owned()),
    }
}

#[test]
fn every_example_ingressroute_deserializes_strictly() {
    let mut count = 0;
    for file in example_files() {
        for (index, doc) in documents(&file).into_iter().enumerate() {
            // Traefik's IngressRoutes (examples/traefik) are checked by traefik_examples.rs.
            if doc["kind"] != "IngressRoute" || doc["apiVersion"] != "contour.heptio.com/v1beta1" {
                continue;
            }
            count += 1;
            let at = format!("{}: document {}", file.display(), index + 1);
            let ir: IngressRoute = serde_path_to_error::deserialize(doc.clone())
                .unwrap_or_else(|e| panic!("{at}: {}: {}", e.path(), e.inner()));
            let roundtrip = serde_json::to_value(&ir).unwrap();
            let mut lost = Vec::new();
            lost_fields(&doc, &roundtrip, "", &mut lost);
            assert!(lost.is_empty(), "{at}: fields not understood: {lost:?}");
        }
    }
    assert!(
        count >= 30,
        "expected the reference's IngressRoutes, found {count}"
    );
}

#[test]
fn strictness_check_notices_unknown_fields() {
    let doc = serde_json::json!({
        "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
        "metadata": {"name": "x"},
        "spec": {"routes": [{"match": "/", "permitinsecure": true, "services": []}]}
    });
    let ir: IngressRoute = serde_json::from_value(doc.clone()).unwrap();
    let mut lost = Vec::new();
    lost_fields(&doc, &serde_json::to_value(&ir).unwrap(), "", &mut lost);
    assert_eq!(lost, vec![".spec.routes[0].permitinsecure"]);
}

/// `shared/reference/ingressroute-v1beta1.md` in the repository's parent or an ancestor of it
/// (CI runs with `../shared` beside the clone).
fn reference_text() -> Option<String> {
    let root = repo_root().canonicalize().unwrap();
    root.ancestors()
        .map(|dir| dir.join("shared/reference/ingressroute-v1beta1.md"))
        .find(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap())
}

#[test]
fn reference_examples_are_unchanged() {
    let Some(reference) = reference_text() else {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_REFERENCE").is_none(),
            "SLUICE_REQUIRE_REFERENCE is set but ../shared/reference/ingressroute-v1beta1.md \
             was not found"
        );
        eprintln!("skipped: the IngressRoute reference (../shared/reference) is not present");
        return;
    };
    let mut checked = 0;
    for file in example_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let Some(rest) = text.strip_prefix("# From the IngressRoute reference") else {
            continue;
        };
        // The first line says where it comes from; the rest is the reference's YAML.
        let body = rest.split_once('\n').map(|(_, b)| b).unwrap_or_default();
        assert!(
            reference.contains(body),
            "{} says it is the reference's YAML unchanged, but it is not",
            file.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 20,
        "expected the reference examples, found {checked}"
    );
}

#[test]
fn load_order_does_not_change_the_render() {
    let examples = std::fs::read_dir(repo_root().join("examples")).unwrap();
    let mut dirs: Vec<std::path::PathBuf> = examples.map(|e| e.unwrap().path()).collect();
    // Each Traefik example is a group of its own (names repeat across them).
    let traefik = repo_root().join("examples/traefik");
    dirs.extend(
        std::fs::read_dir(&traefik)
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    for dir in dirs {
        if !dir.is_dir() || dir == traefik {
            continue;
        }
        let mut docs: Vec<(String, String)> = Vec::new();
        for file in example_files().iter().filter(|f| f.starts_with(&dir)) {
            let text = std::fs::read_to_string(file).unwrap();
            for (i, doc) in text.split("\n---\n").enumerate() {
                docs.push((format!("{}#{i}", file.display()), doc.to_owned()));
            }
        }
        let options = RenderOptions { include_dag: true };
        let forward = sluice::source::load_sources(docs.iter().cloned());
        docs.reverse();
        let backward = sluice::source::load_sources(docs);
        assert!(forward.errors.is_empty(), "{:?}", forward.errors);
        assert_eq!(
            forward.snapshot.ingress_routes.len(),
            backward.snapshot.ingress_routes.len()
        );
        pretty_assertions::assert_eq!(
            render_report(&forward.snapshot, options),
            render_report(&backward.snapshot, options),
            "{}",
            dir.display()
        );
    }
}
