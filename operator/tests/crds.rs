//! The checked-in CRDs equal `sluice crds`, and their schemas reject structurally wrong values
//! (the API server, not Sluice, enforces these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kube::CustomResourceExt;
use serde_json::Value;
use sluice::api::{Gateway, IngressRoute, TLSCertificateDelegation};

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/sluice-crds.yaml")
}

#[test]
fn checked_in_crds_match_generated() {
    let generated = sluice::api::crds_yaml().unwrap();
    let path = checked_in_path();
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if checked_in != generated {
        panic!(
            "crds/sluice-crds.yaml differs from `sluice crds`.\n\
             Regenerate it with `make crds` (or `cargo run -q -p sluice -- crds > crds/sluice-crds.yaml`) \
             and commit the result.\n\n{}",
            pretty_assertions::StrComparison::new(&checked_in, &generated)
        );
    }
}

/// The openAPIV3Schema of a CRD's only version, as `sluice crds` ships it.
fn schema<K: CustomResourceExt>() -> Value {
    let name = K::crd_name();
    let crd = sluice::api::crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("sluice crds has no {name}"));
    let crd = serde_json::to_value(crd).unwrap();
    let versions = crd["spec"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    versions[0]["schema"]["openAPIV3Schema"].clone()
}

/// Follows `properties` / `items` along a dotted path (`[]` steps into an array's items).
fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    let mut node = schema;
    for step in path.split('.') {
        let (name, array) = match step.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (step, false),
        };
        node = &node["properties"][name];
        assert!(!node.is_null(), "no property {name} on the way to {path}");
        if array {
            assert_eq!(node["type"], "array", "{path}: {name} is not an array");
            node = &node["items"];
        }
    }
    node
}

fn enum_values(node: &Value) -> Vec<&str> {
    node["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("not an enum: {node}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn ingressroute_schema_constrains_enums_and_integers() {
    let s = schema::<IngressRoute>();
    for services in ["spec.routes[].services[]", "spec.tcpproxy.services[]"] {
        let strategy = at(&s, &format!("{services}.strategy"));
        assert_eq!(strategy["type"], "string");
        assert_eq!(
            enum_values(strategy),
            vec!["RoundRobin", "WeightedLeastRequest", "Random", "Cookie"]
        );
        for int in ["port", "weight"] {
            assert_eq!(
                at(&s, &format!("{services}.{int}"))["type"],
                "integer",
                "{services}.{int}"
            );
        }
        for int in [
            "intervalSeconds",
            "timeoutSeconds",
            "unhealthyThresholdCount",
            "healthyThresholdCount",
        ] {
            assert_eq!(
                at(&s, &format!("{services}.healthCheck.{int}"))["type"],
                "integer"
            );
        }
        let required = at(&s, services)["required"].as_array().unwrap();
        assert!(required.contains(&Value::from("name")));
        assert!(required.contains(&Value::from("port")));
    }
    let tls_version = at(&s, "spec.virtualhost.tls.minimumProtocolVersion");
    assert_eq!(enum_values(tls_version), vec!["1.1", "1.2", "1.3"]);
    assert_eq!(at(&s, "spec.routes[].retryPolicy.count")["type"], "integer");
    assert_eq!(at(&s, "spec.routes[].permitInsecure")["type"], "boolean");
    assert_eq!(at(&s, "spec.routes[].enableWebsockets")["type"], "boolean");
    assert_eq!(
        at(&s, "spec.virtualhost.tls.passthrough")["type"],
        "boolean"
    );
}

#[test]
fn delegation_and_gateway_schemas() {
    let s = schema::<TLSCertificateDelegation>();
    let delegation = at(&s, "spec.delegations[]");
    assert_eq!(delegation["required"], serde_json::json!(["secretName"]));
    assert_eq!(
        at(&s, "spec.delegations[].targetNamespaces")["type"],
        "array"
    );

    let s = schema::<Gateway>();
    assert_eq!(
        enum_values(at(&s, "spec.tls.minimumProtocolVersion")),
        vec!["1.1", "1.2", "1.3"]
    );
    assert_eq!(
        enum_values(at(&s, "spec.publishing.type")),
        vec!["LoadBalancer", "NodePort", "ClusterIP"]
    );
    assert_eq!(at(&s, "spec.ports.http")["type"], "integer");
    assert_eq!(at(&s, "spec.rootNamespaces")["items"]["type"], "string");
    assert_eq!(at(&s, "spec.enableExternalNameServices")["type"], "boolean");
}

#[test]
fn crds_are_the_served_groups_and_versions() {
    let names: Vec<(String, String, String)> = [
        serde_json::to_value(IngressRoute::crd()).unwrap(),
        serde_json::to_value(TLSCertificateDelegation::crd()).unwrap(),
        serde_json::to_value(Gateway::crd()).unwrap(),
    ]
    .iter()
    .map(|crd| {
        (
            crd["metadata"]["name"].as_str().unwrap().to_owned(),
            crd["spec"]["versions"][0]["name"]
                .as_str()
                .unwrap()
                .to_owned(),
            crd["spec"]["scope"].as_str().unwrap().to_owned(),
        )
    })
    .collect();
    let expect = |n: &str, v: &str| (n.to_owned(), v.to_owned(), "Namespaced".to_owned());
    assert_eq!(
        names,
        vec![
            expect("ingressroutes.contour.heptio.com", "v1beta1"),
            expect("tlscertificatedelegations.contour.heptio.com", "v1beta1"),
            expect("gateways.sluice.dev", "v1alpha1"),
        ]
    );
}

/// Where a schema sets `default` (property names called `default` are not defaults).
fn defaults_in(node: &Value, path: &str, found: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "default" {
                    found.push(path.to_owned());
                }
                if key == "properties" {
                    for (name, prop) in child.as_object().into_iter().flatten() {
                        defaults_in(prop, &format!("{path}.{name}"), found);
                    }
                } else {
                    defaults_in(child, &format!("{path}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                defaults_in(item, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

/// Contour (up to 1.5) installed the `contour.heptio.com` CRDs through apiextensions v1beta1;
/// the API server keeps them with `preserveUnknownFields: true`, and refuses a schema with
/// `default:` until that is false. Sluice's CRDs must apply over them: no `default:`, and
/// `preserveUnknownFields: false` said explicitly so that the apply flips it.
#[test]
fn contour_crds_apply_over_legacy_ones() {
    let mut seen = 0;
    for crd in sluice::api::crds() {
        if crd.spec.group != "contour.heptio.com" {
            continue;
        }
        seen += 1;
        let name = crd.metadata.name.clone().unwrap();
        assert_eq!(crd.spec.preserve_unknown_fields, Some(false), "{name}");
        let mut found = Vec::new();
        defaults_in(
            &serde_json::to_value(&crd.spec.versions).unwrap(),
            "",
            &mut found,
        );
        assert!(found.is_empty(), "{name} has defaults at {found:?}");
    }
    assert_eq!(seen, 2);
}

/// What the schemas' defaults used to fill in, the types fill in when decoding.
#[test]
fn defaults_are_applied_in_code() {
    let ir: IngressRoute = serde_json::from_value(serde_json::json!({
        "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"virtualhost": {},
                 "routes": [{"services": [{"name": "s", "port": 80, "validation": {}}]}],
                 "tcpproxy": {"services": [{"name": "s", "port": 443, "validation": {}}]}}
    }))
    .unwrap();
    assert_eq!(ir.spec.virtualhost.unwrap().fqdn, "");
    let route = &ir.spec.routes[0];
    assert_eq!(route.match_, "");
    for service in [&route.services[0], &ir.spec.tcpproxy.unwrap().services[0]] {
        let validation = service.validation.as_ref().unwrap();
        assert_eq!(
            (
                validation.ca_secret.as_str(),
                validation.subject_name.as_str()
            ),
            ("", "")
        );
    }
    let decode = |spec: Value| -> TLSCertificateDelegation {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "TLSCertificateDelegation",
            "metadata": {"name": "d", "namespace": "ns"}, "spec": spec}))
        .unwrap()
    };
    assert!(decode(serde_json::json!({})).spec.delegations.is_empty());
    let d = decode(serde_json::json!({"delegations": [{"secretName": "s"}]}));
    assert!(d.spec.delegations[0].target_namespaces.is_empty());
}

/// The additionalPrinterColumns of a CRD's only version, as `(name, jsonPath, priority)`.
fn printer_columns<K: CustomResourceExt>() -> Vec<(String, String, i64)> {
    let crd = serde_json::to_value(K::crd()).unwrap();
    crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// `kubectl get sgw` shows readiness, valid/total routes and the address; the root namespaces
/// only with `-o wide`. Every status column reads a field the schema has.
#[test]
fn gateway_printer_columns() {
    let columns = printer_columns::<Gateway>();
    let want = [
        ("Class", ".spec.ingressClassName", 0),
        (
            "Available",
            ".status.conditions[?(@.type==\"Available\")].status",
            0,
        ),
        ("Envoys", ".status.envoys.ready", 0),
        ("Routes", ".status.validRoutes", 0),
        ("Address", ".status.addresses[0]", 0),
        ("Root namespaces", ".spec.rootNamespaces", 1),
        ("Age", ".metadata.creationTimestamp", 0),
    ];
    let want: Vec<(String, String, i64)> = want
        .iter()
        .map(|(n, p, pr)| ((*n).to_owned(), (*p).to_owned(), *pr))
        .collect();
    assert_eq!(columns, want);
    let schema = schema::<Gateway>();
    assert_eq!(at(&schema, "status.validRoutes")["type"], "string");
    assert_eq!(at(&schema, "status.envoys.ready")["type"], "integer");
    assert_eq!(at(&schema, "status.conditions[].status")["type"], "string");
    assert_eq!(at(&schema, "status.conditions[].type")["type"], "string");
    // The summary the Routes column shows.
    let counts = sluice::api::gateway::RouteCounts {
        valid: 3,
        invalid: 1,
        orphaned: 0,
    };
    assert_eq!(counts.summary(), "3/4");
}

/// `kubectl get ingressroute` keeps Contour's columns.
#[test]
fn ingressroute_printer_columns_are_contours() {
    let names: Vec<String> = printer_columns::<IngressRoute>()
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "FQDN",
            "TLS Secret",
            "First route",
            "Status",
            "Status Description"
        ]
    );
}
