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

/// The openAPIV3Schema of a CRD's only version.
fn schema<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap();
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
