//! The Traefik types decode Traefik's own manifests, the generated CRDs are valid CRDs that
//! accept them, and the legacy group is read with `traefik.io` winning on a clash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;

/// Manifests as Traefik's documentation writes them (reference examples, plus each kind).
pub(crate) fn examples() -> Vec<Value> {
    let yaml = r#"
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: test-name, namespace: apps}
spec:
  entryPoints: [web]
  routes:
  - kind: Rule
    match: Host(`test.example.com`)
    middlewares: [{name: middleware1, namespace: apps}]
    priority: 10
    services:
    - kind: Service
      name: foo
      namespace: apps
      passHostHeader: true
      port: 80
      responseForwarding: {flushInterval: 1ms}
      scheme: https
      sticky: {cookie: {httpOnly: true, name: cookie, secure: true, sameSite: lax, maxAge: 60}}
      strategy: RoundRobin
      weight: 10
    - {name: bar, port: http, nativeLB: true, healthCheck: {path: /health, interval: 10s, timeout: 3}}
  tls:
    certResolver: foo
    domains: [{main: example.net, sans: [a.example.net, b.example.net]}]
    options: {name: opt, namespace: apps}
    secretName: supersecret
---
apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata: {name: db, namespace: apps}
spec:
  entryPoints: [postgres]
  routes:
  - match: HostSNI(`db.example.com`)
    services: [{name: pg, port: "postgres", weight: 2, proxyProtocol: {version: 2}, terminationDelay: 400}]
  tls: {passthrough: true}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: wrr, namespace: apps}
spec:
  weighted:
    services:
    - {name: svc1, port: 80, weight: 3}
    - {name: mirror, kind: TraefikService, weight: 1}
    sticky: {cookie: {name: lvl1}}
---
apiVersion: traefik.io/v1alpha1
kind: TraefikService
metadata: {name: mirror, namespace: apps}
spec:
  mirroring:
    name: svc1
    port: 80
    mirrorBody: false
    maxBodySize: 1024
    mirrors: [{name: svc2, port: 80, percent: 20}]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: headers, namespace: apps}
spec:
  headers:
    customRequestHeaders: {X-Script-Name: test, X-Remove: ""}
    accessControlAllowMethods: [GET, OPTIONS]
    accessControlAllowOriginList: ["https://a.example.com"]
    accessControlMaxAge: 100
    addVaryHeader: true
    frameDeny: true
    stsSeconds: 31536000
    forceSTSHeader: true
    customBrowserXSSValue: "1"
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: limits, namespace: apps}
spec:
  rateLimit: {average: 100, burst: 50, period: 1m, sourceCriterion: {ipStrategy: {depth: 2, excludedIPs: [10.0.0.1]}}}
---
apiVersion: traefik.io/v1alpha1
kind: TLSOption
metadata: {name: default, namespace: apps}
spec:
  minVersion: VersionTLS12
  cipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
  curvePreferences: [CurveP521, CurveP384]
  clientAuth: {secretNames: [ca], clientAuthType: RequireAndVerifyClientCert}
  sniStrict: true
  alpnProtocols: [h2, http/1.1]
---
apiVersion: traefik.io/v1alpha1
kind: TLSStore
metadata: {name: default, namespace: apps}
spec:
  certificates: [{secretName: a}, {secretName: b}]
  defaultCertificate: {secretName: c}
---
apiVersion: traefik.io/v1alpha1
kind: ServersTransport
metadata: {name: st, namespace: apps}
spec:
  serverName: backend.internal
  rootCAs: [{secret: ca}, {configMap: ca-cm}]
  certificatesSecrets: [client]
  disableHTTP2: true
  forwardingTimeouts: {dialTimeout: 42s, responseHeaderTimeout: 0, idleConnTimeout: 90}
  peerCertURI: spiffe://a
"#;
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap()
}

/// Decodes, checks nothing was ignored, serializes and decodes again to the same object.
fn round_trip<K: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(v: &Value) {
    let d = decode::<K>(v.clone()).unwrap();
    assert!(d.ignored.is_empty(), "{}: ignored {:?}", kind(v), d.ignored);
    let obj = d.decoded.unwrap_or_else(|e| panic!("{}: {e}", kind(v)));
    let again = decode::<K>(serde_json::to_value(&obj).unwrap()).unwrap();
    assert_eq!(again.decoded.unwrap(), obj);
}

fn round_trip_any(v: &Value) {
    match kind(v) {
        "IngressRoute" => round_trip::<IngressRoute>(v),
        "IngressRouteTCP" => round_trip::<IngressRouteTCP>(v),
        "Middleware" => round_trip::<Middleware>(v),
        "TraefikService" => round_trip::<TraefikService>(v),
        "TLSOption" => round_trip::<TLSOption>(v),
        "TLSStore" => round_trip::<TLSStore>(v),
        "ServersTransport" => round_trip::<ServersTransport>(v),
        other => panic!("unexpected kind {other}"),
    }
}

#[test]
fn traefik_manifests_decode_and_round_trip() {
    for v in examples() {
        round_trip_any(&v);
    }
    let ir = decode::<IngressRoute>(examples()[0].clone()).unwrap();
    let ir = ir.decoded.unwrap();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(
        ir.spec.routes[0].services[0].port,
        Some(IntOrString::Int(80))
    );
    assert_eq!(
        ir.spec.routes[0].services[1].port,
        Some(IntOrString::String("http".into()))
    );
}

/// Follows every field of `value` through `schema`: a field the schema does not declare would
/// be pruned by the API server (or refused, under the spec's preserve-unknown-fields).
fn assert_declared(value: &Value, schema: &Value, path: &str) {
    if schema["x-kubernetes-int-or-string"] == true {
        assert!(
            value.is_string() || value.is_i64(),
            "{path}: not int-or-string"
        );
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let sub = if let Some(p) = schema["properties"].get(k) {
                    p
                } else if schema["additionalProperties"].is_object() {
                    &schema["additionalProperties"]
                } else {
                    panic!("{path}.{k} is not in the CRD schema");
                };
                assert_declared(v, sub, &format!("{path}.{k}"));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                assert_declared(v, &schema["items"], &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

#[test]
fn generated_crds_parse_and_declare_every_example_field() {
    let yaml = crds_yaml().unwrap();
    let crds: Vec<CustomResourceDefinition> = serde_norway::Deserializer::from_str(&yaml)
        .map(|d| CustomResourceDefinition::deserialize(d).unwrap())
        .collect();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ingressroutes.traefik.io",
            "ingressroutetcps.traefik.io",
            "middlewares.traefik.io",
            "traefikservices.traefik.io",
            "tlsoptions.traefik.io",
            "tlsstores.traefik.io",
            "serverstransports.traefik.io"
        ]
    );
    for v in examples() {
        let crd = crds.iter().find(|c| c.spec.names.kind == kind(&v)).unwrap();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(
            (version.name.as_str(), version.served, version.storage),
            (VERSION, true, true)
        );
        let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["x-kubernetes-preserve-unknown-fields"], true);
        assert_declared(&v["spec"], spec, "spec");
    }
}

#[test]
fn unknown_kinds_and_fields_are_kept_by_name() {
    let mw = decode::<Middleware>(json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
        "metadata": {"name": "m", "namespace": "ns"},
        "spec": {"digestAuth": {"secret": "s"}, "stripPrefix": {"prefixes": ["/a"], "bogus": 1}}
    }))
    .unwrap();
    assert_eq!(mw.ignored, ["spec.stripPrefix.bogus"]);
    let spec = mw.decoded.unwrap().spec;
    assert_eq!(spec.other.keys().collect::<Vec<_>>(), ["digestAuth"]);
    let ts = decode::<TraefikService>(json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
        "metadata": {"name": "t"}, "spec": {"failover": {"service": "a"}}
    }))
    .unwrap();
    assert!(ts.decoded.unwrap().spec.other.contains_key("failover"));
}

#[test]
fn a_bad_object_is_an_error_naming_the_field() {
    let bad = decode::<IngressRoute>(json!({
        "apiVersion": "traefik.containo.us/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": "old", "namespace": "ns"},
        "spec": {"routes": [{"match": "Host(`a`)", "services": [{"name": "s", "port": [80]}]}]}
    }))
    .unwrap();
    assert_eq!(bad.group, Group::ContainoUs);
    assert_eq!(bad.name(), "old");
    let e = bad.decoded.unwrap_err();
    assert!(e.starts_with("spec.routes[0].services[0].port"), "{e}");
    assert!(decode::<IngressRoute>(json!({"apiVersion": "contour.heptio.com/v1beta1"})).is_none());
}

#[test]
fn traefik_io_wins_over_the_legacy_group() {
    let obj = |group: &str, name: &str, entry: &str| {
        decode::<IngressRoute>(json!({
            "apiVersion": format!("{group}/v1alpha1"), "kind": "IngressRoute",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"entryPoints": [entry], "routes": []}
        }))
        .unwrap()
    };
    let kept = prefer_traefik_io(vec![
        obj("traefik.containo.us", "a", "old"),
        obj("traefik.io", "a", "new"),
        obj("traefik.containo.us", "b", "legacy-only"),
        obj("traefik.io", "c", "x"),
    ]);
    let summary: Vec<_> = kept
        .iter()
        .map(|d| {
            (
                d.name().to_owned(),
                d.group,
                d.decoded.as_ref().unwrap().spec.entry_points[0].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a".to_owned(), Group::TraefikIo, "new".to_owned()),
            ("b".to_owned(), Group::ContainoUs, "legacy-only".to_owned()),
            ("c".to_owned(), Group::TraefikIo, "x".to_owned()),
        ]
    );
}

#[test]
fn checked_in_traefik_crds_match_generated() {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds/traefik-crds.yaml");
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert!(
        checked_in == crds_yaml().unwrap(),
        "crds/traefik-crds.yaml differs from `sluice crds --traefik`; regenerate it with \
         `make crds`"
    );
}
