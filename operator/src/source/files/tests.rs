#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::documents::split_yaml_documents;
use super::parse::shift_line_numbers;
use super::walk::is_manifest;
use super::*;
use crate::source::nesting::{check_yaml_depth, value_depth};
use serde_json::Value;
use std::path::Path;

fn load(text: &str) -> LoadReport {
    load_sources([("x.yaml", text)])
}

const ROUTE: &str = "apiVersion: contour.heptio.com/v1beta1
kind: IngressRoute
metadata:
  name: foo
spec:
  virtualhost:
    fqdn: foo.example.com
  routes:
    - match: /
      services:
        - name: s1
          port: 80
";

#[test]
fn loads_multi_document_yaml_into_default_namespace() {
    let text = format!(
        "---\n{ROUTE}---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s1\n  namespace: team\n"
    );
    let report = load(&text);
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.warnings, vec![]);
    let key = ObjKey::new("default", "foo");
    let ir = &report.snapshot.ingress_routes.get(&key).unwrap();
    assert_eq!(ir.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(ir.spec.routes[0].services[0].port, 80);
    assert!(
        report
            .snapshot
            .services
            .contains_key(&ObjKey::new("team", "s1"))
    );
}

#[test]
fn bad_field_names_file_document_object_and_path_and_others_still_load() {
    let bad = ROUTE
        .replace("name: foo", "name: bad")
        .replace("port: 80", "port: x");
    let text = format!("{ROUTE}---\n{bad}");
    let report = load(&text);
    assert_eq!(report.errors.len(), 1);
    assert_eq!(
        report.errors[0].to_string(),
        "x.yaml: document 2 (IngressRoute default/bad): spec.routes[0].services[0].port: \
             invalid type: string \"x\", expected i64"
    );
    assert_eq!(report.errors[0].label(), "decode");
    assert_eq!(report.snapshot.ingress_routes.len(), 1);
}

#[test]
fn syntax_error_in_one_document_keeps_the_others_and_reports_file_lines() {
    let text = format!("kind: [unclosed\n---\n{ROUTE}");
    let report = load(&text);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].label(), "syntax");
    let msg = report.errors[0].to_string();
    assert!(msg.starts_with("x.yaml: document 1: "), "{msg}");
    assert_eq!(report.snapshot.ingress_routes.len(), 1);

    let text = format!("{ROUTE}---\nkind: [unclosed\n");
    let report = load(&text);
    let msg = report.errors[0].to_string();
    assert!(msg.starts_with("x.yaml: document 2: "), "{msg}");
    // Line numbers are the file's: the broken document starts on line 14.
    assert!(
        msg.contains("parsing a flow sequence at line 14 column 7"),
        "{msg}"
    );
}

#[test]
fn unknown_kinds_and_fields_are_warnings() {
    let text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n---\n{}",
        ROUTE.replace(
            "      services:",
            "      permitinsecure: true\n      services:"
        )
    );
    let report = load(&text);
    assert_eq!(report.errors, vec![]);
    let warnings: Vec<String> = report.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        vec![
            "x.yaml: document 1 (Ingress default/i): networking.k8s.io/v1 Ingress is not \
                 read by sluice; skipped"
                .to_owned(),
            "x.yaml: document 2 (IngressRoute default/foo): spec.routes[0].permitinsecure: \
                 unknown field, ignored"
                .to_owned(),
        ]
    );
    assert_eq!(report.snapshot.ingress_routes.len(), 1);
}

#[test]
fn secret_string_data_overrides_data() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: eA==\n  b: eA==\nstringData:\n  b: y\n  c: z\n";
    let report = load(text);
    assert_eq!(report.errors, vec![]);
    let s = &report.snapshot;
    let key = ObjKey::new("default", "s");
    assert_eq!(s.secret_data(&key, "a"), Some(&b"x"[..]));
    assert_eq!(s.secret_data(&key, "b"), Some(&b"y"[..]));
    assert_eq!(s.secret_data(&key, "c"), Some(&b"z"[..]));
    let held = s.secrets.get(&key).unwrap();
    assert_eq!(held.data.as_ref().unwrap().len(), 3);
}

#[test]
fn lists_json_streams_and_non_objects() {
    let list = serde_json::json!({
        "apiVersion": "v1", "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": 3}},
        ]
    });
    let text = format!(
        "{list}\n{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"c\"}}}}"
    );
    let report = load_sources([("l.json", text.as_str()), ("n.yaml", "- 1\n- 2\n")]);
    let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        vec![
            "l.json: document 1, item 2 (Service default/b): spec.ports: invalid type: \
                 integer `3`, expected a sequence"
                .to_owned(),
            "n.yaml: document 1: expected a Kubernetes object (a mapping with apiVersion \
                 and kind)"
                .to_owned(),
        ]
    );
    let names: Vec<&str> = report.snapshot.services.keys().map(|k| &*k.name).collect();
    assert_eq!(names, vec!["a", "c"]);
}

#[test]
fn later_duplicate_replaces_earlier_with_a_warning() {
    let other = ROUTE.replace("foo.example.com", "bar.example.com");
    let report = load_sources([("a.yaml", ROUTE), ("b.yaml", other.as_str())]);
    let key = ObjKey::new("default", "foo");
    let vhost = report
        .snapshot
        .ingress_routes
        .get(&key)
        .unwrap()
        .spec
        .virtualhost
        .clone();
    assert_eq!(vhost.map(|v| v.fqdn).as_deref(), Some("bar.example.com"));
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(
        report.warnings[0].to_string(),
        "b.yaml: document 1 (IngressRoute default/foo): replaces the object of the same \
             kind and name from a.yaml: document 1"
    );
}

#[test]
fn missing_kind_is_an_error() {
    let report = load("metadata:\n  name: x\n");
    assert_eq!(
        report.errors[0].to_string(),
        "x.yaml: document 1: apiVersion and kind must be set"
    );
}

#[test]
fn split_counts_documents_like_yaml() {
    let docs = split_yaml_documents("# header\n%YAML 1.2\n---\na: 1\n---\n---\nb: 2\n...\n");
    let blank: Vec<bool> = docs.iter().map(|d| d.is_blank).collect();
    assert_eq!(blank, vec![false, true, false]);
    assert_eq!(docs[0].text, "   \na: 1\n");
    assert_eq!(docs[0].first_line, 2);
    assert_eq!(docs[2].first_line, 5);
    let docs = split_yaml_documents("a: 1\n--- {b: 2}\n");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].text, "    {b: 2}\n");
    assert_eq!(docs[1].first_line, 1);
    // A marker needs a space or line end after it.
    assert_eq!(split_yaml_documents("a: |\n ---x\n---x: 1\n").len(), 1);
}

fn service_doc(i: usize) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n")
}

#[test]
fn forty_thousand_documents_in_one_file_load() {
    let text: String = (0..40_000).map(service_doc).collect();
    let started = std::time::Instant::now();
    let report = load(&text);
    println!(
        "{} bytes, 40000 documents: loaded in {:?}",
        text.len(),
        started.elapsed()
    );
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.snapshot.services.len(), 40_000);
    assert!(
        report
            .snapshot
            .services
            .contains_key(&ObjKey::new("default", "s39999"))
    );
}

#[test]
fn a_file_of_document_markers_loads_nothing_quickly() {
    let text = "---\n".repeat(390 * 1024 / 4);
    let started = std::time::Instant::now();
    let report = load(&text);
    println!(
        "{} bytes of `---` lines: loaded in {:?}",
        text.len(),
        started.elapsed()
    );
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.warnings, vec![]);
    assert!(report.snapshot.services.is_empty());
}

/// A good document, the given one, and another good document: only the middle one fails.
fn load_between(doc: &str) -> LoadReport {
    let text = format!("{}---\n{doc}{}", service_doc(1), service_doc(2));
    let report = load(&text);
    assert_eq!(report.snapshot.services.len(), 2, "{:?}", report.errors);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    report
}

#[test]
fn deep_flow_nesting_is_refused_before_parsing() {
    let deep = format!("a: {}\n", "[".repeat(100_000));
    let started = std::time::Instant::now();
    let report = load_between(&deep);
    println!("100000 `[`: refused in {:?}", started.elapsed());
    // The document's `---` is line 6. With the top-level mapping, the 64th `[` (column 67)
    // is the 65th level.
    assert_eq!(
        report.errors[0].to_string(),
        "x.yaml: document 2: nested deeper than the limit of 64 levels at line 7 column 67; \
             the document is not loaded"
    );
    let deep_map = format!("a: {}1\n", "{b: ".repeat(100_000));
    let report = load_between(&deep_map);
    assert!(
        report.errors[0]
            .to_string()
            .contains("nested deeper than the limit of 64 levels at line 7 column "),
        "{}",
        report.errors[0]
    );
}

#[test]
fn deep_block_nesting_is_refused() {
    let compact = format!("a:\n{}x\n", "- ".repeat(100_000));
    let report = load_between(&compact);
    assert_eq!(
        report.errors[0].to_string(),
        "x.yaml: document 2: nested deeper than the limit of 64 levels at line 8 column 127; \
             the document is not loaded"
    );
    let indented: String = (0..200)
        .map(|level| format!("{}k{level}:\n", " ".repeat(level)))
        .collect();
    let report = load_between(&indented);
    assert_eq!(
        report.errors[0].to_string(),
        "x.yaml: document 2: nested deeper than the limit of 64 levels at line 71 column 65; \
             the document is not loaded"
    );
}

#[test]
fn nesting_up_to_the_limit_loads_and_brackets_in_strings_do_not_count() {
    // 62 levels below the top-level mapping and `metadata`: 64 in all.
    let nested = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: n\n  annotations:\n    a: '{}'\n    b: \"{}\"\n    c: |\n      {}\n    d: x[{{y # [[[[\n  labels: {{}}\nspec:\n  x: {}{}\n",
        "[".repeat(500),
        "{".repeat(500),
        "[".repeat(500),
        "[".repeat(62),
        "]".repeat(62),
    );
    let report = load(&nested);
    // The unknown field `spec.x` is a warning; the depth is accepted.
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.snapshot.services.len(), 1);
    let too_deep = nested.replace(
        &format!("{}{}", "[".repeat(62), "]".repeat(62)),
        &format!("{}{}", "[".repeat(63), "]".repeat(63)),
    );
    let report = load(&too_deep);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0]
            .to_string()
            .contains("nested deeper than the limit of 64 levels at line 13 column 68"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn syntax_errors_in_later_documents_report_file_lines() {
    let text = format!(
        "{}{}---\n\nkind: Service\nspec: {{ports: [1, 2}}\n",
        service_doc(1),
        service_doc(2)
    );
    let report = load(&text);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let msg = report.errors[0].to_string();
    // Both positions libyaml reports are the file's.
    assert!(msg.starts_with("x.yaml: document 3: "), "{msg}");
    assert!(
        msg.ends_with("at line 14 column 20, while parsing a flow sequence at line 14 column 15"),
        "{msg}"
    );
    assert!(!msg.contains("line 4 "), "{msg}");
    assert_eq!(report.snapshot.services.len(), 2);
}

#[test]
fn shift_line_numbers_adds_the_offset_to_every_line() {
    assert_eq!(
        shift_line_numbers(
            "x at line 2 column 3, while parsing y at line 10 column 1",
            5
        ),
        "x at line 7 column 3, while parsing y at line 15 column 1"
    );
    assert_eq!(shift_line_numbers("no lines here", 5), "no lines here");
    assert_eq!(shift_line_numbers("line x", 5), "line x");
}

#[test]
fn json_nesting_is_bounded() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"after"}}"#;
    // Deeper than the limit but within serde_json's own: refused, the stream goes on.
    let text = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"deep"}},"spec":{{"x":{}}}}}{svc}"#,
        deep(70)
    );
    let report = load_sources([("d.json", text.as_str())]);
    let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        vec![
            "d.json: document 1 (Service default/deep): nested deeper than the limit of 64 \
                 levels; the document is not loaded"
                .to_owned()
        ]
    );
    let names: Vec<&str> = report.snapshot.services.keys().map(|k| &*k.name).collect();
    assert_eq!(names, vec!["after"]);
    // serde_json stops at 128 levels before building anything; the stream cannot go on.
    let text = format!("{svc}\n{}", deep(100_000));
    let report = load_sources([("d.json", text.as_str())]);
    let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errors,
        vec![
            "d.json: document 2: nested deeper than the limit of 64 levels (the JSON parser \
                 gave up at 128, at line 2 column 128); the rest of the file is not loaded"
                .to_owned()
        ]
    );
    assert_eq!(report.snapshot.services.len(), 1);
}

const GATEWAY: &str = "apiVersion: sluice.dev/v1alpha1
kind: Gateway
metadata:
  name: team-a
  namespace: sluice-system
spec:
  ingressClassName: team-a
";

#[test]
fn gateways_that_do_not_load_are_recorded() {
    let report = load(GATEWAY);
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.snapshot.gateways.len(), 1);
    assert!(report.snapshot.unloaded_gateways.is_empty());

    let cases = [
        // A type error in the spec.
        GATEWAY.replace("ingressClassName: team-a", "rootNamespaces: 3"),
        // A version sluice does not read.
        GATEWAY.replace("v1alpha1", "v1"),
        // No apiVersion.
        GATEWAY.replace("apiVersion: sluice.dev/v1alpha1\n", ""),
        // Not YAML at all: it mentions the Sluice API group, so it may be a Gateway.
        GATEWAY.replace("spec:", "spec: [unclosed"),
        // Too deep to parse.
        format!("{GATEWAY}  x: {}\n", "[".repeat(100)),
        // Parsed, but too deep.
        format!("{GATEWAY}  x:\n{}y\n", "  - ".repeat(100)),
    ];
    for text in cases {
        let report = load(&text);
        assert_eq!(report.errors.len(), 1, "{text}: {:?}", report.errors);
        assert!(report.snapshot.gateways.is_empty(), "{text}");
        let at = match &report.errors[0] {
            LoadError::Syntax { at, .. } | LoadError::Decode { at, .. } => at.to_string(),
            LoadError::Read { path, .. } => path.clone(),
        };
        assert_eq!(report.snapshot.unloaded_gateways, vec![at], "{text}");
    }

    // Other kinds that fail, and other APIs' Gateways, are not Sluice Gateways.
    let report = load(
        "apiVersion: v1\nkind: Service\nspec: 3\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\n---\n[unclosed\n",
    );
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    assert!(report.snapshot.unloaded_gateways.is_empty());
}

/// The depth pre-scan agrees with the parser on every YAML document in the repository.
#[test]
fn depth_scan_agrees_with_the_parser_on_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack = vec![
        root.join("examples"),
        root.join("config"),
        root.join("crds"),
    ];
    stack.push(root.join("operator/tests"));
    let mut compared = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !is_manifest(&path) || path.extension().is_some_and(|e| e == "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in split_yaml_documents(&text) {
                let Ok(value) = serde_norway::from_str::<Value>(&doc.text) else {
                    continue;
                };
                let depth = value_depth(&value);
                let scanned = (0..=depth).find(|l| check_yaml_depth(&doc.text, *l).is_ok());
                assert_eq!(scanned, Some(depth), "{}: {}", path.display(), doc.text);
                compared += 1;
            }
        }
    }
    println!("{compared} documents compared");
    assert!(compared > 50, "{compared}");
}

#[test]
fn load_dir_reads_sorted_recursive_and_skips_hidden_and_other_files() {
    let dir = std::env::temp_dir().join(format!("sluice-files-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join(".hidden")).unwrap();
    let svc = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
        )
    };
    std::fs::write(dir.join("b.yml"), svc("s", 2)).unwrap();
    std::fs::write(dir.join("a.yaml"), svc("s", 1)).unwrap();
    std::fs::write(dir.join("sub/c.yaml"), svc("t", 3)).unwrap();
    std::fs::write(dir.join(".hidden/d.yaml"), svc("u", 4)).unwrap();
    std::fs::write(dir.join("notes.txt"), "not yaml: [").unwrap();
    let report = load_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(report.errors, vec![]);
    let services = &report.snapshot.services;
    let names: Vec<&str> = services.keys().map(|k| &*k.name).collect();
    assert_eq!(names, vec!["s", "t"]);
    let port = |name: &str| {
        services
            .get(&ObjKey::new("default", name))
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()[0]
            .port
    };
    // b.yml sorts after a.yaml and wins.
    assert_eq!(port("s"), 2);
    assert_eq!(report.warnings.len(), 1);
}

#[test]
fn an_unreadable_manifest_file_may_be_a_gateway() {
    let dir = std::env::temp_dir().join(format!("sluice-unread-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), ROUTE).unwrap();
    // Not UTF-8: read_to_string fails.
    std::fs::write(dir.join("b.yaml"), b"kind: Gateway\n\xff\xfe\n").unwrap();
    let report = load_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].label(), "read");
    assert_eq!(report.snapshot.ingress_routes.len(), 1);
    let unloaded = &report.snapshot.unloaded_gateways;
    assert_eq!(unloaded.len(), 1);
    assert!(unloaded[0].ends_with("b.yaml"), "{unloaded:?}");
}

#[test]
fn load_dir_accepts_a_single_file() {
    let file = std::env::temp_dir().join(format!("sluice-file-test-{}.yaml", std::process::id()));
    std::fs::write(&file, ROUTE).unwrap();
    let report = load_dir(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.snapshot.ingress_routes.len(), 1);
}

#[test]
fn load_dir_of_missing_directory_fails() {
    let err = load_dir(Path::new("/nonexistent/sluice-manifests")).unwrap_err();
    assert_eq!(err.label(), "read");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/sluice-manifests: ")
    );
}

#[test]
fn traefik_routes_and_middlewares_of_both_groups_load_and_traefik_io_wins() {
    let doc = |group: &str, kind: &str, name: &str, spec: &str| {
        format!(
            "---\napiVersion: {group}/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\n\
             spec: {spec}\n"
        )
    };
    let text = doc("traefik.containo.us", "IngressRoute", "r", "{routes: []}")
        + &doc("traefik.io", "IngressRoute", "r", "{entryPoints: [web]}")
        + &doc("traefik.containo.us", "IngressRoute", "old", "{routes: 3}")
        + &doc("traefik.io", "Middleware", "m", "{addPrefix: {prefix: /x}}")
        + &doc("traefik.io", "TLSOption", "o", "{}")
        + &doc(
            "traefik.containo.us",
            "IngressRouteTCP",
            "t",
            "{routes: []}",
        )
        + &doc("traefik.io", "TLSStore", "default", "{}")
        + &doc("traefik.io", "TraefikService", "s", "{}")
        + &doc("traefik.io", "MiddlewareTCP", "mt", "{}");
    let report = load(&text);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Kinds not served yet are still skipped, with a warning naming them.
    let warnings: Vec<String> = report.warnings.iter().map(|w| w.message.clone()).collect();
    assert_eq!(
        warnings,
        ["traefik.io/v1alpha1 MiddlewareTCP is not read by sluice; skipped"]
    );
    let snap = &report.snapshot;
    assert!(
        snap.traefik_tls_options
            .get(&ObjKey::new("default", "o"))
            .is_some()
    );
    assert!(
        snap.traefik_tls_stores
            .get(&ObjKey::new("default", "default"))
            .is_some()
    );
    assert_eq!(snap.traefik_tcp_routes.legacy.len(), 1);
    let snap = &report.snapshot;
    let key = ObjKey::new("default", "r");
    assert_eq!(snap.traefik_routes.current.len(), 1);
    assert_eq!(snap.traefik_routes.legacy.len(), 2);
    let r = snap.traefik_routes.get(&key).unwrap();
    assert_eq!(r.group, crate::api::traefik::Group::TraefikIo);
    assert_eq!(r.decoded.as_ref().unwrap().spec.entry_points, ["web"]);
    // An object that does not decode is kept, with the decoder's message, to be reported.
    let old = snap
        .traefik_routes
        .get(&ObjKey::new("default", "old"))
        .unwrap();
    assert!(old.decoded.as_ref().unwrap_err().contains("spec.routes"));
    assert_eq!(snap.traefik_routes.effective().len(), 2);
    assert!(
        snap.traefik_middlewares
            .get(&ObjKey::new("default", "m"))
            .is_some()
    );

    // Removing the traefik.io object brings the legacy one back.
    let mut snap = snap.clone();
    snap.remove(
        crate::snapshot::Kind::Traefik(
            crate::snapshot::TraefikKind::IngressRoute,
            crate::api::traefik::Group::TraefikIo,
        ),
        &key,
    );
    let r = snap.traefik_routes.get(&key).unwrap();
    assert_eq!(r.group, crate::api::traefik::Group::ContainoUs);
}

/// A manifest exported with `kubectl get -o yaml` loads as before (no new warning), without
/// its managed fields and last-applied copy.
#[test]
fn exported_manifests_do_not_hold_managed_fields() {
    let text =
        format!("{ROUTE}status:\n  currentStatus: valid\n  description: valid IngressRoute\n")
            .replace(
                "  name: foo\n",
                "  name: foo\n  annotations:\n    kubernetes.io/ingress.class: team-a\n    \
         kubectl.kubernetes.io/last-applied-configuration: '{\"spec\":{}}'\n  \
         managedFields:\n  - manager: kubectl\n    operation: Apply\n    \
         apiVersion: contour.heptio.com/v1beta1\n    fieldsType: FieldsV1\n    \
         fieldsV1:\n      f:spec:\n        f:routes: {}\n",
            );
    let report = load(&text);
    assert_eq!(report.errors, vec![]);
    assert_eq!(report.warnings, vec![]);
    let ir = report
        .snapshot
        .ingress_routes
        .get(&ObjKey::new("default", "foo"))
        .unwrap();
    assert_eq!(ir.metadata.managed_fields, None);
    assert_eq!(
        ir.metadata
            .annotations
            .as_ref()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["kubernetes.io/ingress.class"]
    );
    assert_eq!(ir.spec.routes[0].services[0].port, 80);
}
