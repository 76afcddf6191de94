//! The in-memory API server with Traefik's CRDs installed (`sluice crds --traefik`), held to
//! what kube-apiserver does with them: the CRDs are structural and accepted (a non-structural
//! one is refused, naming the field), objects are pruned below `spec` but keep unknown fields
//! at its top level, ports take a number or a name, and a wrong type is refused with kube's
//! words.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sluice_e2e::apiserver::ApiServer;

fn traefik_crds(server: &ApiServer) {
    let yaml = sluice::api::traefik::crds_yaml().unwrap();
    let crds = server.apply_yaml(&yaml).unwrap();
    assert_eq!(crds.len(), sluice::api::traefik::KINDS.len());
    for crd in crds {
        assert_eq!(crd["status"]["conditions"][0]["status"], "True", "{crd}");
    }
}

#[test]
fn sluice_and_traefik_crds_are_structural_and_accepted() {
    let server = ApiServer::start().unwrap();
    server
        .apply_yaml(&sluice::api::crds_yaml().unwrap())
        .unwrap();
    traefik_crds(&server);
}

#[test]
fn a_non_structural_crd_is_refused_naming_the_field() {
    let server = ApiServer::start().unwrap();
    let crd = |spec_schema: Value| {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "things.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "things", "kind": "Thing"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object",
                                          "properties": {"spec": spec_schema}}}}]}})
    };
    // A field without a type.
    let err = server
        .apply(crd(json!({"type": "object", "properties": {"port": {}}})))
        .unwrap_err();
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert!(
        err.message.contains(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[port].type: \
             Required value: must not be empty for specified object fields"
        ),
        "{}",
        err.message
    );
    // A type inside anyOf.
    let err = server
        .apply(crd(
            json!({"type": "object", "anyOf": [{"type": "object"}]}),
        ))
        .unwrap_err();
    assert!(
        err.message
            .contains("anyOf[0].type: Forbidden: must be empty to be structural"),
        "{}",
        err.message
    );
    // Int-or-string as Kubernetes writes it is structural.
    server
        .apply(crd(json!({"type": "object", "properties": {"port": {
            "x-kubernetes-int-or-string": true,
            "anyOf": [{"type": "integer"}, {"type": "string"}]}}})))
        .unwrap();
}

fn route(spec: Value) -> Value {
    json!({"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
           "metadata": {"namespace": "default", "name": "r"}, "spec": spec})
}

#[test]
fn traefik_objects_are_pruned_and_validated_like_kube_does() {
    let server = ApiServer::start().unwrap();
    traefik_crds(&server);
    let stored = server
        .apply(route(json!({
            "tcp": {"kept": true},
            "routes": [{"match": "Host(`a`)", "observability": {"accessLogs": false},
                        "services": [{"name": "s", "port": "http"}, {"name": "t", "port": 80}]}],
        })))
        .unwrap();
    // Unknown at spec's top level: kept (x-kubernetes-preserve-unknown-fields on spec).
    assert_eq!(stored["spec"]["tcp"], json!({"kept": true}));
    // Unknown deeper: pruned, as kube prunes below a node that does not preserve them.
    assert_eq!(stored["spec"]["routes"][0].get("observability"), None);
    assert_eq!(stored["spec"]["routes"][0]["services"][0]["port"], "http");
    assert_eq!(stored["spec"]["routes"][0]["services"][1]["port"], 80);
    // A wrong type is refused with the path.
    let err = server.apply(route(json!({"routes": 3}))).unwrap_err();
    assert_eq!((err.code, err.reason), (422, "Invalid"));
    assert!(
        err.message
            .contains("spec.routes: Invalid value: \"integer\""),
        "{}",
        err.message
    );
    // A Middleware with its one kind.
    server
        .apply(
            json!({"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
                      "metadata": {"namespace": "default", "name": "m"},
                      "spec": {"addPrefix": {"prefix": "/v1"}}}),
        )
        .unwrap();
}
