//! A hostile tenant's objects, case by case. The tenant `attacker` shares the Gateway `shared`
//! with the tenant `victim` (both are root namespaces) and may only write IngressRoutes,
//! Services, Endpoints, EndpointSlices and Secrets in its own namespace. For every case:
//!
//! - the victim's virtual host, routes, clusters, endpoints, secret and statuses are exactly
//!   what they are without the attacker;
//! - the attacker's object gets the verdict the case expects (`invalid` with a message naming
//!   the field, or `valid` with the hostile part left out);
//! - the whole translated configuration of every Gateway passes a real `envoy --mode validate`
//!   with everything inlined (routes, endpoints, certificates), so nothing a tenant writes can
//!   make Envoy reject the instance's configuration;
//! - the other team's Gateway (`other`, its own class and root namespace) sees nothing of
//!   either tenant.
//!
//! The cases use the in-cluster selection (no loopback endpoints); standalone's local
//! allowance is checked separately.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};
use sluice::dag::Dag;
use sluice::snapshot::ClusterSnapshot;
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::tls::{CertKey, TestCa};

const VICTIM_HOST: &str = "victim.example.com";

struct Pki {
    victim: CertKey,
    attacker: CertKey,
    other: CertKey,
    ca: String,
}

static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let ca = TestCa::new("adversarial-ca").unwrap();
    Pki {
        victim: ca.issue(&[VICTIM_HOST]).unwrap(),
        attacker: ca.issue(&["evil.example.com"]).unwrap(),
        other: ca.issue(&["other.example.com"]).unwrap(),
        ca: ca.cert_pem(),
    }
});

fn meta(ns: &str, name: &str) -> Value {
    json!({"namespace": ns, "name": name})
}

fn gateway(name: &str, class: Option<&str>, roots: &[&str]) -> Value {
    let mut spec = json!({"rootNamespaces": roots, "enableExternalNameServices": true});
    if let Some(c) = class {
        spec["ingressClassName"] = json!(c);
    }
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
           "metadata": meta("gateways", name), "spec": spec})
}

fn service(ns: &str, name: &str, port: i64) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(ns, name),
           "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]}})
}

fn endpoints(ns: &str, name: &str, ips: &[&str]) -> Value {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta(ns, name),
           "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}]})
}

fn slice(ns: &str, service: &str, address_type: &str, addresses: &[&str]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": ns, "name": format!("{service}-x"),
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": address_type,
           "ports": [{"name": "http", "port": 8080}],
           "endpoints": [{"addresses": addresses, "conditions": {"ready": true}}]})
}

fn tls_secret(ns: &str, name: &str, pair: &CertKey) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(ns, name),
           "type": "kubernetes.io/tls",
           "stringData": {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}})
}

fn ca_secret(ns: &str, name: &str, ca: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(ns, name),
           "stringData": {"ca.crt": ca}})
}

fn ingress_route(ns: &str, name: &str, created: &str, spec: Value) -> Value {
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
           "spec": spec})
}

/// The victim: an older TLS root with its own route and a delegated child.
fn victim() -> Vec<Value> {
    vec![
        gateway("shared", None, &["victim", "attacker"]),
        gateway("other", Some("other"), &["other-team"]),
        service("victim", "web", 80),
        endpoints("victim", "web", &["10.0.0.1", "10.0.0.2"]),
        service("victim", "api", 80),
        slice("victim", "api", "IPv4", &["10.0.1.1"]),
        tls_secret("victim", "victim-tls", &PKI.victim),
        ingress_route(
            "victim",
            "root",
            "2020-01-01T00:00:00Z",
            json!({"virtualhost": {"fqdn": VICTIM_HOST, "tls": {"secretName": "victim-tls"}},
                   "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]},
                              {"match": "/api", "delegate": {"name": "api"}}]}),
        ),
        ingress_route(
            "victim",
            "api",
            "2020-01-01T00:00:00Z",
            json!({"routes": [{"match": "/api", "services": [{"name": "api", "port": 80}]}]}),
        ),
        // The other team, on its own Gateway.
        service("other-team", "web", 80),
        endpoints("other-team", "web", &["10.0.2.1"]),
        tls_secret("other-team", "tls", &PKI.other),
        json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
               "metadata": {"namespace": "other-team", "name": "root",
                            "annotations": {"kubernetes.io/ingress.class": "other"}},
               "spec": {"virtualhost": {"fqdn": "other.example.com",
                                        "tls": {"secretName": "tls"}},
                        "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]}}),
    ]
}

/// The attacker's usual backend.
fn evil_backend() -> Vec<Value> {
    vec![
        service("attacker", "evil", 80),
        endpoints("attacker", "evil", &["10.9.9.9"]),
    ]
}

/// An attacker root at `fqdn` whose one route uses `route` (merged over a plain route to the
/// evil service), plus `vhost` merged into its virtual host.
fn evil_root(fqdn: &str, vhost: Value, route: Value) -> Value {
    let mut r = json!({"match": "/", "services": [{"name": "evil", "port": 80}]});
    merge(&mut r, route);
    let mut vh = json!({"fqdn": fqdn});
    merge(&mut vh, vhost);
    ingress_route(
        "attacker",
        "evil",
        "2024-01-01T00:00:00Z",
        json!({"virtualhost": vh, "routes": [r]}),
    )
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// An attacker root with a route whose service (merged over `evil:80`) carries `service`.
fn evil_service(service: Value) -> Value {
    let mut s = json!({"name": "evil", "port": 80});
    merge(&mut s, service);
    evil_root("evil.example.com", json!({}), json!({"services": [s]}))
}

fn snapshot(objects: &[Value]) -> ClusterSnapshot {
    let text: String = objects.iter().map(|o| format!("{o}\n")).collect();
    let report = sluice::source::load_sources([("tenants.json", text)]);
    assert!(report.errors.is_empty(), "load errors: {:?}", report.errors);
    report.snapshot
}

fn build_all(snap: &ClusterSnapshot, local: bool) -> Vec<Dag> {
    sluice::dag::instances(snap)
        .into_iter()
        .map(|s| if local { s.local() } else { s })
        .map(|s| sluice::dag::build(snap, &s))
        .collect()
}

fn dag_of<'a>(dags: &'a [Dag], gateway: &str) -> &'a Dag {
    dags.iter().find(|d| d.gateway == gateway).unwrap()
}

fn status_of(dag: &Dag, key: &str) -> Option<(String, String)> {
    let (ns, name) = key.split_once('/').unwrap();
    dag.statuses
        .iter()
        .find(|s| s.namespace == ns && s.name == name)
        .map(|s| (s.current_status.as_str().to_owned(), s.description.clone()))
}

/// Everything of the victim in one DAG, for before/after comparison.
fn victim_view(dag: &Dag) -> Value {
    let vh = dag.virtual_hosts.iter().find(|v| v.fqdn == VICTIM_HOST);
    let clusters: Vec<_> = dag
        .clusters
        .iter()
        .filter(|c| c.service.starts_with("victim/"))
        .collect();
    let endpoints: Vec<_> = dag
        .endpoints
        .iter()
        .filter(|e| e.service_name.starts_with("victim/"))
        .collect();
    let secrets: Vec<_> = dag
        .secrets
        .iter()
        .filter(|s| s.name.starts_with("victim/"))
        .collect();
    let statuses: Vec<_> = dag
        .statuses
        .iter()
        .filter(|s| s.namespace == "victim")
        .collect();
    json!({"vhost": vh, "clusters": clusters, "endpoints": endpoints, "secrets": secrets,
           "statuses": statuses})
}

/// The other team's Gateway, less the statuses it writes of other namespaces' IngressRoutes
/// carrying its class (it judges them, and refuses them as roots outside its namespaces).
fn other_view(dag: &Dag) -> Value {
    let mut v = serde_json::to_value(dag).unwrap();
    v["statuses"] = serde_json::to_value(
        dag.statuses
            .iter()
            .filter(|s| s.namespace == "other-team")
            .collect::<Vec<_>>(),
    )
    .unwrap();
    v
}

/// What a case expects of the attacker's objects.
enum Expect {
    /// This IngressRoute is invalid, and its description contains every fragment.
    Invalid(&'static str, &'static [&'static str]),
    /// This IngressRoute is valid, and the check holds on the shared Gateway's DAG.
    Valid(&'static str, fn(&Dag) -> Result<(), String>),
    /// Any other check on the shared Gateway's DAG.
    Check(fn(&Dag) -> Result<(), String>),
}

struct Case {
    name: &'static str,
    objects: Vec<Value>,
    expect: Expect,
}

fn case(name: &'static str, objects: Vec<Value>, expect: Expect) -> Case {
    Case {
        name,
        objects,
        expect,
    }
}

/// The attacker's root at evil.example.com with the evil backend, changed by `root`.
fn with_backend(root: Value) -> Vec<Value> {
    let mut v = evil_backend();
    v.push(root);
    v
}

const EVIL: &str = "attacker/evil";

fn evil_addresses(dag: &Dag) -> Vec<String> {
    dag.endpoints
        .iter()
        .filter(|e| e.service_name.starts_with("attacker/"))
        .flat_map(|e| e.addresses.iter().map(|a| a.ip.clone()))
        .collect()
}

fn only_routable_evil_endpoints(dag: &Dag) -> Result<(), String> {
    let addresses = evil_addresses(dag);
    if addresses == ["10.9.9.9"] {
        Ok(())
    } else {
        Err(format!("attacker endpoints: {addresses:?}"))
    }
}

fn hostile_endpoints(ips: &[&str]) -> Vec<Value> {
    vec![
        service("attacker", "evil", 80),
        endpoints("attacker", "evil", &[&["10.9.9.9"], ips].concat()),
        evil_root("evil.example.com", json!({}), json!({})),
    ]
}

fn hostile_slice(address_type: &str, addresses: &[&str]) -> Vec<Value> {
    vec![
        service("attacker", "evil", 80),
        endpoints("attacker", "evil", &["10.9.9.9"]),
        slice("attacker", "evil", address_type, addresses),
        evil_root("evil.example.com", json!({}), json!({})),
    ]
}

fn external_name(host: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("attacker", "evil"),
               "spec": {"type": "ExternalName", "externalName": host,
                        "ports": [{"name": "http", "port": 80}]}}),
        evil_root("evil.example.com", json!({}), json!({})),
    ]
}

fn fqdn_case(name: &'static str, fqdn: &str, fragments: &'static [&'static str]) -> Case {
    case(
        name,
        with_backend(evil_root(fqdn, json!({}), json!({}))),
        Expect::Invalid(EVIL, fragments),
    )
}

fn route_case(name: &'static str, route: Value, fragments: &'static [&'static str]) -> Case {
    case(
        name,
        with_backend(evil_root("evil.example.com", json!({}), route)),
        Expect::Invalid(EVIL, fragments),
    )
}

fn service_case(name: &'static str, service: Value, fragments: &'static [&'static str]) -> Case {
    case(
        name,
        with_backend(evil_service(service)),
        Expect::Invalid(EVIL, fragments),
    )
}

fn upstream_tls(validation: Value, ca: &str) -> Vec<Value> {
    let mut svc = service("attacker", "evil", 443);
    svc["metadata"]["annotations"] = json!({"contour.heptio.com/upstream-protocol.tls": "443"});
    vec![
        svc,
        endpoints("attacker", "evil", &["10.9.9.9"]),
        ca_secret("attacker", "ca", ca),
        evil_root(
            "evil.example.com",
            json!({}),
            json!({"services": [{"name": "evil", "port": 443, "validation": validation}]}),
        ),
    ]
}

fn tls_root(secret: Value, secret_name: &str) -> Vec<Value> {
    let mut v = evil_backend();
    v.push(secret);
    v.push(evil_root(
        "evil.example.com",
        json!({"tls": {"secretName": secret_name}}),
        json!({}),
    ));
    v
}

fn broken_pair(cert_pem: &str, key_pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("attacker", "evil-tls"),
           "type": "kubernetes.io/tls",
           "stringData": {"tls.crt": cert_pem, "tls.key": key_pem}})
}

fn chain(len: usize, fanout: usize) -> Vec<Value> {
    let mut v = evil_backend();
    let delegations = |next: String| -> Value {
        (0..fanout)
            .map(|_| json!({"match": "/", "delegate": {"name": next}}))
            .collect()
    };
    v.push(ingress_route(
        "attacker",
        "evil",
        "2024-01-01T00:00:00Z",
        json!({"virtualhost": {"fqdn": "evil.example.com"}, "routes": delegations("c1".into())}),
    ));
    for i in 1..len {
        let mut routes = delegations(format!("c{}", i + 1));
        if let Value::Array(a) = &mut routes {
            a.push(json!({"match": format!("/l{i}"), "services": [{"name": "evil", "port": 80}]}));
        }
        v.push(ingress_route(
            "attacker",
            &format!("c{i}"),
            "2024-01-01T00:00:00Z",
            json!({"routes": routes}),
        ));
    }
    v
}

fn cases() -> Vec<Case> {
    let pki = &*PKI;
    let garbage_cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    vec![
        // --- Host names: injection and hijacking -------------------------------------------
        fqdn_case(
            "fqdn with NUL",
            "evil\u{0}.example.com",
            &["Fqdn", "letters a-z"],
        ),
        fqdn_case(
            "fqdn with CR LF",
            "evil.example.com\r\nx",
            &["Fqdn", "letters a-z"],
        ),
        fqdn_case(
            "fqdn with a space",
            "evil .example.com",
            &["Fqdn", "letters a-z"],
        ),
        fqdn_case(
            "fqdn in unicode",
            "bücher.example.com",
            &["Fqdn", "punycode"],
        ),
        fqdn_case(
            "fqdn with a 64-byte label",
            &format!("{}.example.com", "a".repeat(64)),
            &["at most 63"],
        ),
        fqdn_case(
            "fqdn over 253 bytes",
            &vec!["abcdefghi"; 26].join("."),
            &["at most 253"],
        ),
        fqdn_case(
            "fqdn as an IPv4 address",
            "10.0.0.1",
            &["not an IP address"],
        ),
        fqdn_case("fqdn as an IPv6 address", "::1", &["not an IP address"]),
        fqdn_case(
            "hijack with a port",
            "victim.example.com:8080",
            &["without a port"],
        ),
        fqdn_case(
            "hijack with a trailing dot",
            "victim.example.com.",
            &["must not end with a dot"],
        ),
        fqdn_case(
            "hijack in upper case",
            "VICTIM.example.com",
            &["already used by the older IngressRoute victim/root"],
        ),
        fqdn_case(
            "hijack with the same name",
            VICTIM_HOST,
            &["already used by the older IngressRoute victim/root"],
        ),
        fqdn_case("wildcard fqdn", "*.example.com", &["cannot use wildcards"]),
        fqdn_case("catch-all fqdn", "*", &["cannot use wildcards"]),
        fqdn_case(
            "fqdn with an underscore",
            "evil_host.example.com",
            &["letters a-z"],
        ),
        fqdn_case(
            "fqdn with an empty label",
            "evil..example.com",
            &["empty labels"],
        ),
        fqdn_case(
            "fqdn with a leading hyphen",
            "-evil.example.com",
            &["start or end with '-'"],
        ),
        fqdn_case(
            "fqdn with a slash",
            "victim.example.com/x",
            &["letters a-z"],
        ),
        // --- Paths -------------------------------------------------------------------------
        route_case(
            "match with NUL",
            json!({"match": "/a\u{0}"}),
            &["match", "0x00"],
        ),
        route_case(
            "match with header injection",
            json!({"match": "/a\r\nHost: victim.example.com"}),
            &["match", "0x0d"],
        ),
        route_case(
            "match with a space",
            json!({"match": "/a b"}),
            &["match", "0x20"],
        ),
        route_case(
            "match in unicode",
            json!({"match": "/é"}),
            &["match", "visible ASCII"],
        ),
        route_case(
            "match of 5000 bytes",
            json!({"match": format!("/{}", "a".repeat(5000))}),
            &["match", "at most 4096"],
        ),
        route_case(
            "match without a slash",
            json!({"match": "evil"}),
            &["match must start with \"/\""],
        ),
        route_case(
            "prefixRewrite with NUL",
            json!({"prefixRewrite": "/\u{0}"}),
            &["prefixRewrite", "0x00"],
        ),
        route_case(
            "prefixRewrite with CR LF",
            json!({"prefixRewrite": "/\r\nX-Evil: 1"}),
            &["prefixRewrite", "0x0d"],
        ),
        route_case(
            "prefixRewrite without a slash",
            json!({"prefixRewrite": "evil"}),
            &["prefixRewrite", "start with"],
        ),
        // --- Health checks -----------------------------------------------------------------
        service_case(
            "empty health-check path",
            json!({"healthCheck": {"path": ""}}),
            &["healthCheck.path must not be empty"],
        ),
        service_case(
            "health-check path with NUL",
            json!({"healthCheck": {"path": "/h\u{0}"}}),
            &["healthCheck.path", "0x00"],
        ),
        service_case(
            "health-check path with CR LF",
            json!({"healthCheck": {"path": "/h\r\n"}}),
            &["healthCheck.path", "0x0d"],
        ),
        service_case(
            "health-check host with CR LF",
            json!({"healthCheck": {"path": "/h", "host": "a\r\nb"}}),
            &["healthCheck.host", "0x0d"],
        ),
        service_case(
            "health-check host with NUL",
            json!({"healthCheck": {"path": "/h", "host": "a\u{0}"}}),
            &["healthCheck.host", "0x00"],
        ),
        case(
            "IngressRoute-wide health check with a bad path",
            with_backend({
                let mut r = evil_root("evil.example.com", json!({}), json!({}));
                r["spec"]["healthCheck"] = json!({"path": "/\n"});
                r
            }),
            Expect::Invalid(EVIL, &["spec.healthCheck.path", "0x0a"]),
        ),
        // --- Weights, timeouts, ports ------------------------------------------------------
        case(
            "weights adding up past 2^32-1",
            with_backend(evil_root(
                "evil.example.com",
                json!({}),
                json!({"services": [
                {"name": "evil", "port": 80, "weight": 4_294_967_295_i64},
                {"name": "evil2", "port": 80, "weight": 4_294_967_295_i64}]}),
            ))
            .into_iter()
            .chain([service("attacker", "evil2", 80)])
            .collect(),
            Expect::Invalid(EVIL, &["add up to 8589934590"]),
        ),
        service_case(
            "weight past 2^32-1",
            json!({"weight": 4_294_967_296_i64}),
            &["weight must be at most 4294967295"],
        ),
        service_case(
            "negative weight",
            json!({"weight": -1}),
            &["greater than or equal to zero"],
        ),
        service_case(
            "port 0",
            json!({"port": 0}),
            &["port must be in the range 1-65535"],
        ),
        service_case(
            "port 70000",
            json!({"port": 70000}),
            &["port must be in the range 1-65535"],
        ),
        route_case(
            "request timeout past protobuf's range",
            json!({"timeoutPolicy": {"request": "100000000h"}}),
            &["timeoutPolicy.request", "100 years"],
        ),
        route_case(
            "request timeout of Go's largest duration",
            json!({"timeoutPolicy": {"request": "2562047h47m16.854775807s"}}),
            &["timeoutPolicy.request"],
        ),
        route_case(
            "per-try timeout past the range",
            json!({"retryPolicy": {"count": 3, "perTryTimeout": "100000000h"}}),
            &["retryPolicy.perTryTimeout"],
        ),
        case(
            "huge retry count is clamped, not refused",
            with_backend(evil_root(
                "evil.example.com",
                json!({}),
                json!({"retryPolicy": {"count": 99_999_999_999_i64}}),
            )),
            Expect::Valid(EVIL, |_| Ok(())),
        ),
        // --- Upstream validation ------------------------------------------------------------
        case(
            "subjectName with NUL",
            upstream_tls(json!({"caSecret": "ca", "subjectName": "a\u{0}b"}), &pki.ca),
            Expect::Invalid(EVIL, &["subjectName", "0x00"]),
        ),
        case(
            "subjectName over 255 bytes",
            upstream_tls(
                json!({"caSecret": "ca", "subjectName": "a".repeat(256)}),
                &pki.ca,
            ),
            Expect::Invalid(EVIL, &["subjectName", "at most 255"]),
        ),
        case(
            "subjectName with CR LF",
            upstream_tls(json!({"caSecret": "ca", "subjectName": "a\r\nb"}), &pki.ca),
            Expect::Invalid(EVIL, &["subjectName", "0x0d"]),
        ),
        case(
            "CA secret that does not parse",
            upstream_tls(
                json!({"caSecret": "ca", "subjectName": "evil"}),
                garbage_cert,
            ),
            Expect::Invalid(
                EVIL,
                &["secret not found or misconfigured", "not a valid X.509"],
            ),
        ),
        case(
            "CA secret of another namespace",
            upstream_tls(
                json!({"caSecret": "victim/ca", "subjectName": "evil"}),
                &pki.ca,
            ),
            Expect::Invalid(EVIL, &["secret not found or misconfigured"]),
        ),
        case(
            "upstream validation that is fine",
            upstream_tls(
                json!({"caSecret": "ca", "subjectName": "backend.example.com"}),
                &pki.ca,
            ),
            Expect::Valid(EVIL, |_| Ok(())),
        ),
        // --- TLS secrets --------------------------------------------------------------------
        case(
            "TLS secret with only a BEGIN line",
            tls_root(broken_pair(garbage_cert, &pki.attacker.key_pem), "evil-tls"),
            Expect::Invalid(
                EVIL,
                &[
                    "TLS Secret [attacker/evil-tls] not found or is malformed",
                    "X.509",
                ],
            ),
        ),
        case(
            "TLS secret whose key is another certificate's",
            tls_root(
                broken_pair(&pki.attacker.cert_pem, &pki.victim.key_pem),
                "evil-tls",
            ),
            Expect::Invalid(EVIL, &["does not match"]),
        ),
        case(
            "TLS secret with a garbage key",
            tls_root(
                broken_pair(
                    &pki.attacker.cert_pem,
                    "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
                ),
                "evil-tls",
            ),
            Expect::Invalid(EVIL, &["tls.key"]),
        ),
        case(
            "TLS secret with a broken second certificate",
            tls_root(
                broken_pair(
                    &format!("{}{garbage_cert}", pki.attacker.cert_pem),
                    &pki.attacker.key_pem,
                ),
                "evil-tls",
            ),
            Expect::Invalid(EVIL, &["certificate 2"]),
        ),
        case(
            "TLS secret with a key where the certificate goes",
            tls_root(
                broken_pair(&pki.attacker.key_pem, &pki.attacker.key_pem),
                "evil-tls",
            ),
            Expect::Invalid(EVIL, &["not a CERTIFICATE"]),
        ),
        case(
            "Opaque secret with TLS keys",
            tls_root(
                {
                    let mut s = tls_secret("attacker", "evil-tls", &pki.attacker);
                    s["type"] = json!("Opaque");
                    s
                },
                "evil-tls",
            ),
            Expect::Invalid(EVIL, &["its type is \"Opaque\""]),
        ),
        case(
            "the victim's TLS secret without a delegation",
            tls_root(json!(null), "victim/victim-tls"),
            Expect::Invalid(
                EVIL,
                &["victim/victim-tls: certificate delegation not permitted"],
            ),
        ),
        case(
            "a delegation the attacker writes for itself in its own namespace",
            tls_root(
                json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "TLSCertificateDelegation",
                            "metadata": meta("attacker", "grab"),
                            "spec": {"delegations": [{"secretName": "victim-tls", "targetNamespaces": ["*"]}]}}),
                "victim/victim-tls",
            ),
            Expect::Invalid(EVIL, &["certificate delegation not permitted"]),
        ),
        // --- Endpoints that reach the proxy or the node -----------------------------------
        case(
            "loopback endpoint",
            hostile_endpoints(&["127.0.0.1"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "IPv4-mapped loopback endpoint",
            hostile_endpoints(&["::ffff:127.0.0.1"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "IPv6 loopback endpoint",
            hostile_endpoints(&["::1"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "cloud metadata endpoint",
            hostile_endpoints(&["169.254.169.254"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "unspecified endpoint",
            hostile_endpoints(&["0.0.0.0"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "multicast endpoint",
            hostile_endpoints(&["224.0.0.1"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "IPv6 link-local endpoint",
            hostile_endpoints(&["fe80::1"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "endpoint that is not an IP",
            hostile_endpoints(&["evil.example.com"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "endpoint with an injected newline",
            hostile_endpoints(&["10.0.0.1\n"]),
            Expect::Check(|dag| {
                // Trimmed and canonical, or left out: never passed to Envoy as written.
                let a = evil_addresses(dag);
                if a.iter().all(|ip| ip.parse::<std::net::IpAddr>().is_ok()) {
                    Ok(())
                } else {
                    Err(format!("{a:?}"))
                }
            }),
        ),
        case(
            "EndpointSlice of addressType FQDN",
            hostile_slice("FQDN", &["evil.example.com"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "EndpointSlice pointing at the metadata server",
            hostile_slice("IPv4", &["169.254.169.254"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        case(
            "EndpointSlice pointing at loopback",
            hostile_slice("IPv4", &["127.0.0.53"]),
            Expect::Valid(EVIL, only_routable_evil_endpoints),
        ),
        // --- ExternalName (the shared Gateway allows them) ---------------------------------
        case(
            "ExternalName localhost",
            external_name("localhost"),
            Expect::Invalid(EVIL, &["points at the proxy itself"]),
        ),
        case(
            "ExternalName loopback IP",
            external_name("127.0.0.1"),
            Expect::Invalid(EVIL, &["points at the proxy itself"]),
        ),
        case(
            "ExternalName IPv4-mapped loopback",
            external_name("::ffff:127.0.0.1"),
            Expect::Invalid(EVIL, &["points at the proxy itself"]),
        ),
        case(
            "ExternalName metadata server",
            external_name("169.254.169.254"),
            Expect::Invalid(EVIL, &["points at the proxy itself"]),
        ),
        case(
            "ExternalName with CR LF",
            external_name("evil.example.com\r\nx"),
            Expect::Invalid(EVIL, &["ExternalName", "letters a-z"]),
        ),
        case(
            "ExternalName with NUL",
            external_name("evil\u{0}.com"),
            Expect::Invalid(EVIL, &["ExternalName", "letters a-z"]),
        ),
        // --- Delegation: cycles, roots, other tenants, depth -------------------------------
        case(
            "delegation to the victim's root",
            with_backend(evil_root(
                "evil.example.com",
                json!({}),
                json!({"services": [], "delegate": {"name": "root", "namespace": "victim"}}),
            )),
            Expect::Invalid(EVIL, &["cannot delegate to another root"]),
        ),
        case(
            "delegation cycle",
            {
                let mut v = with_backend(evil_root(
                    "evil.example.com",
                    json!({}),
                    json!({"services": [], "delegate": {"name": "a"}}),
                ));
                v.push(ingress_route(
                    "attacker",
                    "a",
                    "2024-01-01T00:00:00Z",
                    json!({"routes": [{"match": "/", "delegate": {"name": "b"}}]}),
                ));
                v.push(ingress_route(
                    "attacker",
                    "b",
                    "2024-01-01T00:00:00Z",
                    json!({"routes": [{"match": "/", "delegate": {"name": "a"}}]}),
                ));
                v
            },
            Expect::Invalid(
                "attacker/b",
                &["delegation cycle: attacker/evil -> attacker/a -> attacker/b -> attacker/a"],
            ),
        ),
        case(
            "a 5,000-deep delegation chain",
            chain(5000, 1),
            Expect::Invalid(
                "attacker/c31",
                &[
                    "delegation chain is deeper than 32",
                    "may not delegate further",
                ],
            ),
        ),
        case(
            "ten IngressRoutes each delegating ten times",
            chain(10, 10),
            Expect::Valid("attacker/c9", |dag| {
                let routes = dag
                    .virtual_hosts
                    .iter()
                    .find(|v| v.fqdn == "evil.example.com")
                    .map_or(0, |v| v.routes.len());
                if routes == 9 {
                    Ok(())
                } else {
                    Err(format!("{routes} routes, expected 9"))
                }
            }),
        ),
        case(
            "root outside the root namespaces",
            vec![
                service("intruder", "evil", 80),
                ingress_route(
                    "intruder",
                    "evil",
                    "2019-01-01T00:00:00Z",
                    json!({"virtualhost": {"fqdn": VICTIM_HOST}, "routes": [{"match": "/", "services": [{"name": "evil", "port": 80}]}]}),
                ),
            ],
            Expect::Invalid(
                "intruder/evil",
                &["root IngressRoute cannot be defined in this namespace"],
            ),
        ),
        case(
            "the other Gateway's class on an attacker root",
            with_backend({
                let mut r = evil_root("other.example.com", json!({}), json!({}));
                r["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": "other"});
                r
            }),
            // The shared Gateway does not judge it; the other Gateway refuses its namespace.
            Expect::Check(|dag| match status_of(dag, EVIL) {
                None => Ok(()),
                Some(s) => Err(format!("the shared Gateway judged it: {s:?}")),
            }),
        ),
        case(
            "a service name reaching into another namespace",
            with_backend(evil_service(json!({"name": "../victim/web"}))),
            Expect::Invalid(
                EVIL,
                &["Service [attacker/../victim/web:80] is invalid or missing"],
            ),
        ),
    ]
}

/// What every instance's configuration meets on its way to Envoy: translation errors, what
/// the output constraint checker finds, and what a real `envoy --mode validate` rejects (with
/// every route, endpoint and certificate inlined), each naming the Gateway.
#[derive(Debug, Default)]
struct EnvoyVerdict {
    translate_errors: Vec<String>,
    violations: Vec<String>,
    envoy_errors: Vec<String>,
}

impl EnvoyVerdict {
    fn problems(&self) -> impl Iterator<Item = &String> {
        self.translate_errors
            .iter()
            .chain(&self.violations)
            .chain(&self.envoy_errors)
    }
}

async fn envoy_verdict(dags: &[Dag]) -> EnvoyVerdict {
    let opts = TranslateOptions::default();
    let mut out = EnvoyVerdict::default();
    for dag in dags {
        let gateway = &dag.gateway;
        let resources = match translate(dag, &opts) {
            Ok(r) => r,
            Err(e) => {
                out.translate_errors
                    .push(format!("{gateway}: translation failed: {e}"));
                continue;
            }
        };
        out.violations.extend(
            check_resources(&resources)
                .iter()
                .map(|v| format!("{gateway}: constraint violation: {v}")),
        );
        let json = inline_bootstrap(&resources, &opts)
            .map_err(|e| e.to_string())
            .and_then(|b| message_to_json(&b).map_err(|e| e.to_string()));
        match json {
            Ok(json) => {
                if let Err(e) = sluice_e2e::envoy::validate(&json.to_string()).await {
                    out.envoy_errors
                        .push(format!("Envoy rejects {gateway}'s configuration: {e}"));
                }
            }
            Err(e) => out
                .envoy_errors
                .push(format!("{gateway}: no Envoy JSON: {e}")),
        }
    }
    out
}

#[tokio::test]
async fn a_hostile_tenant_cannot_hurt_another() {
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let baseline_snap = snapshot(&victim());
    let baseline = build_all(&baseline_snap, false);
    let victim_before = victim_view(dag_of(&baseline, "gateways/shared"));
    assert_eq!(
        status_of(dag_of(&baseline, "gateways/shared"), "victim/root")
            .unwrap()
            .0,
        "valid"
    );
    let other_before = other_view(dag_of(&baseline, "gateways/other"));

    let mut failures = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        let mut objects = victim();
        objects.extend(c.objects.iter().filter(|o| !o.is_null()).cloned());
        let snap = snapshot(&objects);
        let started = Instant::now();
        let dags = build_all(&snap, false);
        let build_time = started.elapsed();
        let shared = dag_of(&dags, "gateways/shared");
        let mut problems = Vec::new();
        if victim_view(shared) != victim_before {
            problems.push(
                "the victim's virtual host, clusters, endpoints, secret or statuses changed"
                    .to_owned(),
            );
        }
        let other = other_view(dag_of(&dags, "gateways/other"));
        if other != other_before {
            problems.push("the other Gateway's DAG changed".to_owned());
        }
        match &c.expect {
            Expect::Invalid(key, fragments) => match status_of(shared, key) {
                Some((s, d)) if s == "invalid" && fragments.iter().all(|f| d.contains(f)) => {}
                other => problems.push(format!(
                    "{key}: expected invalid with {fragments:?}, got {other:?}"
                )),
            },
            Expect::Valid(key, check) => {
                match status_of(shared, key) {
                    Some((s, _)) if s == "valid" => {}
                    other => problems.push(format!("{key}: expected valid, got {other:?}")),
                }
                if let Err(e) = check(shared) {
                    problems.push(e);
                }
            }
            Expect::Check(check) => {
                if let Err(e) = check(shared) {
                    problems.push(e);
                }
            }
        }
        // Nothing the attacker wrote may reach an Envoy: every instance's whole configuration
        // passes Envoy's own validation.
        problems.extend(envoy_verdict(&dags).await.problems().cloned());
        println!(
            "{:<60} build {:>8.2?}  {}",
            c.name,
            build_time,
            if problems.is_empty() { "ok" } else { "FAILED" }
        );
        if !problems.is_empty() {
            failures.push(format!("{}:\n  {}", c.name, problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `sluice standalone` and `render` route to loopback backends (local use; Envoy's admin is not
/// on TCP), while the in-cluster selection refuses them. Link-local stays refused everywhere.
#[test]
fn loopback_endpoints_only_in_standalone() {
    let mut objects = victim();
    objects.extend(hostile_endpoints(&["127.0.0.1", "169.254.169.254"]));
    let snap = snapshot(&objects);
    let cluster = build_all(&snap, false);
    let local = build_all(&snap, true);
    assert_eq!(
        evil_addresses(dag_of(&cluster, "gateways/shared")),
        ["10.9.9.9"]
    );
    assert_eq!(
        evil_addresses(dag_of(&local, "gateways/shared")),
        ["10.9.9.9", "127.0.0.1"]
    );
}

/// Manifest bombs (standalone and render read files a tenant may have written): a file of
/// 40,000 small documents loads whole, a flood of `---` lines loads as nothing, and nesting
/// past the loader's limit and alias bombs are refused with an error while the other documents
/// still load.
#[test]
fn manifest_bombs_are_loaded_or_refused_not_fatal() {
    let many: String = (0..40_000)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: bomb}}\n\
                 spec: {{ports: [{{port: 80}}]}}\n"
            )
        })
        .collect();
    let report = sluice::source::load_sources([("many.yaml", many)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors.first());
    assert_eq!(report.snapshot.services.len(), 40_000);

    let dashes = "---\n".repeat(100_000);
    let report = sluice::source::load_sources([("dashes.yaml", dashes)]);
    assert!(report.errors.is_empty());

    let deep_flow = format!("a: {}", "[".repeat(100_000));
    let deep_block: String = (0..100_000)
        .map(|i| format!("{}- \n", "  ".repeat(i % 500)))
        .collect();
    let fine = "---\napiVersion: v1\nkind: Service\nmetadata: {name: fine, namespace: bomb}\n";
    let report = sluice::source::load_sources([
        ("flow.yaml", format!("{deep_flow}\n{fine}")),
        ("block.yaml", format!("a:\n{deep_block}{fine}")),
    ]);
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    for e in &report.errors {
        assert!(e.to_string().contains("nest"), "{e}");
    }
    assert_eq!(
        report.snapshot.services.len(),
        1,
        "the document after the bomb loads"
    );

    // An alias bomb ("billion laughs": nine levels of nine aliases, 9^9 strings) is refused by
    // the parser's repetition limit, naming the file and document; the next document loads.
    let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for pair in ["ab", "bc", "cd", "de", "ef", "fg", "gh", "hi"].map(str::as_bytes) {
        let (prev, next) = (char::from(pair[0]), char::from(pair[1]));
        laughs.push_str(&format!(
            "{next}: &{next} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
    }
    let report = sluice::source::load_sources([("laughs.yaml", format!("{laughs}{fine}"))]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let error = report.errors[0].to_string();
    assert!(error.contains("laughs.yaml"), "{error}");
    assert!(error.contains("repetition limit"), "{error}");
    assert_eq!(
        report.snapshot.services.len(),
        1,
        "the document after the alias bomb loads"
    );
}

// ---------------------------------------------------------------------------------------------
// Findings of a hostile-tenant review, kept as regression tests: each failed before its fix.

#[derive(Debug, Default)]
struct Outcome {
    /// Statuses of every IngressRoute on the shared Gateway outside the victim's namespace.
    attacker: Vec<String>,
    /// Victim statuses on the shared Gateway.
    victim_statuses: Vec<String>,
    victim_changed: bool,
    /// Gateway -> translation error.
    translate_errors: Vec<String>,
    violations: Vec<String>,
    /// Gateway -> Envoy's complaint.
    envoy_errors: Vec<String>,
}

impl Outcome {
    fn summary(&self) -> String {
        format!(
            "attacker={:?}\n    victim_changed={} victim={:?}\n    translate_errors={:?}\n    violations={:?}\n    envoy_errors={:?}",
            self.attacker,
            self.victim_changed,
            self.victim_statuses,
            self.translate_errors,
            self.violations,
            self.envoy_errors
                .iter()
                .map(|e| e
                    .lines()
                    .filter(|l| l.contains("rror") || l.contains("xception") || l.contains("ailed"))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | "))
                .collect::<Vec<_>>()
        )
    }
    fn attacker_valid(&self, key: &str) -> bool {
        self.attacker
            .iter()
            .any(|s| s.starts_with(&format!("{key} valid")))
    }
}

async fn probe(extra: Vec<Value>) -> Outcome {
    probe_with(victim(), extra).await
}

async fn probe_with(base: Vec<Value>, extra: Vec<Value>) -> Outcome {
    let baseline = build_all(&snapshot(&base), false);
    let before = victim_view(dag_of(&baseline, "gateways/shared"));
    let mut objects = base;
    objects.extend(extra);
    let snap = snapshot(&objects);
    let dags = build_all(&snap, false);
    let shared = dag_of(&dags, "gateways/shared");
    let mut out = Outcome {
        victim_changed: victim_view(shared) != before,
        ..Default::default()
    };
    for s in &shared.statuses {
        let line = format!(
            "{}/{} {} {}",
            s.namespace,
            s.name,
            s.current_status.as_str(),
            s.description
        );
        if s.namespace == "victim" {
            out.victim_statuses.push(line);
        } else {
            out.attacker.push(line);
        }
    }
    let verdict = envoy_verdict(&dags).await;
    out.translate_errors = verdict.translate_errors;
    out.violations = verdict.violations;
    out.envoy_errors = verdict.envoy_errors;
    out
}

// ---- PEM / DER helpers ---------------------------------------------------------------

fn pem_der(pem: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN") {
            cur = Some(String::new());
        } else if line.starts_with("-----END") {
            out.push(
                base64::engine::general_purpose::STANDARD
                    .decode(cur.take().unwrap())
                    .unwrap(),
            );
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line.trim());
        }
    }
    out
}

/// A PEM block with custom BEGIN/END lines and base64 line width (0: one line).
fn pem_custom(begin: &str, end: &str, der: &[u8], width: usize, eol: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("{begin}{eol}");
    if width == 0 {
        s.push_str(&b64);
        s.push_str(eol);
    } else {
        for chunk in b64.as_bytes().chunks(width) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push_str(eol);
        }
    }
    s.push_str(end);
    s.push_str(eol);
    s
}

fn cert_block(der: &[u8], width: usize) -> String {
    pem_custom(
        "-----BEGIN CERTIFICATE-----",
        "-----END CERTIFICATE-----",
        der,
        width,
        "\n",
    )
}

fn attacker_cert_der() -> Vec<u8> {
    pem_der(&PKI.attacker.cert_pem).remove(0)
}

fn attacker_key_der() -> Vec<u8> {
    pem_der(&PKI.attacker.key_pem).remove(0)
}

fn key_block(der: &[u8], width: usize) -> String {
    pem_custom(
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        der,
        width,
        "\n",
    )
}

/// The attacker's TLS root using a Secret with this cert and key.
fn tls_world(cert: &str, key: &str) -> Vec<Value> {
    tls_root(broken_pair(cert, key), "evil-tls")
}

/// The attacker's upstream-validation route with this CA bundle.
fn ca_world(ca: &str) -> Vec<Value> {
    upstream_tls(
        json!({"caSecret": "ca", "subjectName": "backend.example.com"}),
        ca,
    )
}

/// Replace the X.509 version field (`A0 03 02 01 vv`) of a DER certificate.
fn with_version(der: &[u8], v: u8) -> Vec<u8> {
    let mut d = der.to_vec();
    let at = d
        .windows(5)
        .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
        .unwrap();
    d[at + 4] = v;
    d
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// Every PEM variant: label, (tls.crt, tls.key).
fn pem_variants() -> Vec<(&'static str, String, String)> {
    let cert = attacker_cert_der();
    let key = attacker_key_der();
    let good_key = PKI.attacker.key_pem.clone();
    let good_cert = PKI.attacker.cert_pem.clone();
    let mut trailing = cert.clone();
    trailing.extend_from_slice(&[0x05, 0x00]);
    let mut trailing_zero = cert.clone();
    trailing_zero.push(0);
    let crlf = good_cert.replace('\n', "\r\n");
    let mut v = vec![
        (
            "control: untouched pair",
            good_cert.clone(),
            good_key.clone(),
        ),
        (
            "tls.crt base64 on one line",
            cert_block(&cert, 0),
            good_key.clone(),
        ),
        (
            "tls.crt base64 in 76-char lines",
            cert_block(&cert, 76),
            good_key.clone(),
        ),
        (
            "tls.crt base64 in 32-char lines",
            cert_block(&cert, 32),
            good_key.clone(),
        ),
        (
            "tls.key base64 on one line",
            good_cert.clone(),
            key_block(&key, 0),
        ),
        ("tls.crt with CRLF line endings", crlf, good_key.clone()),
        (
            "tls.crt BEGIN line with trailing spaces",
            good_cert.replacen("CERTIFICATE-----\n", "CERTIFICATE-----   \n", 1),
            good_key.clone(),
        ),
        (
            "tls.crt BEGIN line with trailing text",
            good_cert.replacen("CERTIFICATE-----\n", "CERTIFICATE----- x\n", 1),
            good_key.clone(),
        ),
        (
            "tls.crt label suffix CERTIFICATE-X",
            pem_custom(
                "-----BEGIN CERTIFICATE-X-----",
                "-----END CERTIFICATE-X-----",
                &cert,
                64,
                "\n",
            ),
            good_key.clone(),
        ),
        (
            "tls.crt END label mismatch",
            pem_custom(
                "-----BEGIN CERTIFICATE-----",
                "-----END PRIVATE KEY-----",
                &cert,
                64,
                "\n",
            ),
            good_key.clone(),
        ),
        (
            "tls.crt with an empty line inside the base64",
            good_cert
                .replacen('\n', "\n\n", 2)
                .replacen("\n\n", "\n", 1),
            good_key.clone(),
        ),
        (
            "tls.crt first certificate followed by 05 00 inside its base64",
            cert_block(&trailing, 64),
            good_key.clone(),
        ),
        (
            "tls.crt first certificate followed by one 00 byte",
            cert_block(&trailing_zero, 64),
            good_key.clone(),
        ),
        (
            "tls.crt second certificate followed by 05 00",
            format!("{good_cert}{}", cert_block(&trailing, 64)),
            good_key.clone(),
        ),
        (
            "tls.crt version v1 with extensions",
            cert_block(&with_version(&cert, 0), 64),
            good_key.clone(),
        ),
        (
            "tls.crt version value 3 (v4)",
            cert_block(&with_version(&cert, 3), 64),
            good_key.clone(),
        ),
        (
            "tls.crt private key block after the certificate",
            format!("{good_cert}{good_key}"),
            good_key.clone(),
        ),
        (
            "tls.crt with a Proc-Type header",
            good_cert.replacen("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1),
            good_key.clone(),
        ),
    ];
    // openssl-made keys: RSA-PSS SPKI with a PKCS#1 key, P-521, EC with parameters block.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA-PSS",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "pss.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=evil.example.com",
            "-key",
            "pss.key",
            "-out",
            "pss.crt",
        ],
    );
    let pss_pkcs1 = std::process::Command::new("openssl")
        .args(["rsa", "-in", "pss.key", "-traditional"])
        .current_dir(d)
        .output()
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    if pss_pkcs1.status.success() {
        v.push((
            "RSA-PSS SPKI certificate with its key as PKCS#1",
            read("pss.crt"),
            String::from_utf8(pss_pkcs1.stdout).unwrap(),
        ));
    } else {
        println!("openssl rsa -traditional on PSS failed: {pss_pkcs1:?}");
    }
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-noout",
            "-out",
            "p521.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=evil.example.com",
            "-key",
            "p521.key",
            "-out",
            "p521.crt",
        ],
    );
    v.push((
        "P-521 (Envoy accepts it)",
        read("p521.crt"),
        read("p521.key"),
    ));
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "ecp.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=evil.example.com",
            "-key",
            "ecp.key",
            "-out",
            "ecp.crt",
        ],
    );
    v.push((
        "openssl ecparam -genkey default output (EC PARAMETERS block first)",
        read("ecp.crt"),
        read("ecp.key"),
    ));
    v
}

/// Exploration: prints what every PEM variant does (valid?/Envoy?).
#[tokio::test]
async fn pem_variants_are_valid_only_where_envoy_loads_them() {
    let mut findings = Vec::new();
    for (name, cert, key) in pem_variants() {
        let o = probe(tls_world(&cert, &key)).await;
        let valid = o.attacker_valid(EVIL);
        let nack = !o.envoy_errors.is_empty();
        println!(
            "== {name}: valid={valid} envoy_rejects={nack}\n    {}",
            o.summary()
        );
        if valid && nack {
            findings.push(name);
        }
    }
    // Same for CA bundles (upstream validation).
    let ca_der = pem_der(&PKI.ca).remove(0);
    let mut trailing = ca_der.clone();
    trailing.extend_from_slice(&[0x05, 0x00]);
    for (name, ca) in [
        ("ca.crt control", PKI.ca.clone()),
        ("ca.crt base64 on one line", cert_block(&ca_der, 0)),
        (
            "ca.crt END label mismatch",
            pem_custom(
                "-----BEGIN CERTIFICATE-----",
                "-----END X-----",
                &ca_der,
                64,
                "\n",
            ),
        ),
        (
            "ca.crt BEGIN line with trailing text",
            PKI.ca
                .replacen("CERTIFICATE-----\n", "CERTIFICATE----- x\n", 1),
        ),
        ("ca.crt followed by 05 00", cert_block(&trailing, 64)),
        (
            "ca.crt version value 3",
            cert_block(&with_version(&ca_der, 3), 64),
        ),
    ] {
        let o = probe(ca_world(&ca)).await;
        let valid = o.attacker_valid(EVIL);
        let nack = !o.envoy_errors.is_empty();
        println!(
            "== {name}: valid={valid} envoy_rejects={nack}\n    {}",
            o.summary()
        );
        if valid && nack {
            findings.push(name);
        }
    }
    println!("FINDINGS (valid but Envoy rejects): {findings:#?}");
    assert!(findings.is_empty(), "{findings:#?}");
}

// ---- DAG / translation findings ---------------------------------------------------------

fn tls_secret_attacker() -> Value {
    tls_secret("attacker", "evil-tls", &PKI.attacker)
}

/// F1: a tcpproxy with no services (`tcpproxy: {}` or `services: []`) is `valid`, and the
/// translation then refuses the whole instance (`EmptyTcpProxy`): every tenant of the Gateway
/// stops getting updates.
#[tokio::test]
async fn an_empty_tcpproxy_is_invalid_not_fatal() {
    for tcp in [json!({}), json!({"services": []})] {
        let mut objects = evil_backend();
        objects.push(tls_secret_attacker());
        objects.push(ingress_route(
            "attacker",
            "evil",
            "2024-01-01T00:00:00Z",
            json!({"virtualhost": {"fqdn": "evil.example.com", "tls": {"secretName": "evil-tls"}},
                   "tcpproxy": tcp}),
        ));
        let o = probe(objects).await;
        println!("tcpproxy {tcp}: {}", o.summary());
        assert!(
            o.translate_errors.is_empty(),
            "tcpproxy {tcp}: attacker {:?}, translation of the instance fails: {:?}",
            o.attacker,
            o.translate_errors
        );
    }
}

/// Same, through a delegated tcpproxy and with passthrough.
#[tokio::test]
async fn an_empty_delegated_tcpproxy_is_invalid_not_fatal() {
    let mut objects = evil_backend();
    objects.push(ingress_route(
        "attacker",
        "evil",
        "2024-01-01T00:00:00Z",
        json!({"virtualhost": {"fqdn": "evil.example.com", "tls": {"passthrough": true}},
               "tcpproxy": {"delegate": {"name": "child"}}}),
    ));
    objects.push(ingress_route(
        "attacker",
        "child",
        "2024-01-01T00:00:00Z",
        json!({"tcpproxy": {}}),
    ));
    let o = probe(objects).await;
    println!("{}", o.summary());
    assert!(o.translate_errors.is_empty(), "{:?}", o.translate_errors);
}

/// An attacker chain of `n` IngressRoutes under a root at `fqdn`, all matching `prefix`, the last
/// delegating `prefix` to `target` (namespace/name).
fn attacker_chain_to(fqdn: &str, prefix: &str, n: usize, target: (&str, &str)) -> Vec<Value> {
    let mut v = evil_backend();
    v.push(ingress_route(
        "attacker",
        "evil",
        "2024-01-01T00:00:00Z",
        json!({"virtualhost": {"fqdn": fqdn},
               "routes": [{"match": prefix, "delegate": {"name": "c1"}}]}),
    ));
    for i in 1..=n {
        let next = if i == n {
            json!({"name": target.1, "namespace": target.0})
        } else {
            json!({"name": format!("c{}", i + 1)})
        };
        v.push(ingress_route(
            "attacker",
            &format!("c{i}"),
            "2024-01-01T00:00:00Z",
            json!({"routes": [{"match": prefix, "delegate": next}]}),
        ));
    }
    v
}

/// F2: the delegation walk caches each (prefix, child) pair's result, but the result depends
/// on the depth it was first reached at. An attacker root whose fqdn sorts before the victim's
/// reaches the victim's delegated IngressRoute at depth 33 with the victim's own prefix: the
/// pair is cached as invalid, and the victim's root then gets nothing from it.
#[tokio::test]
async fn a_deep_foreign_chain_cannot_poison_a_delegation() {
    let o = probe(attacker_chain_to(
        "aaa.example.com",
        "/api",
        31,
        ("victim", "api"),
    ))
    .await;
    println!("{}", o.summary());
    assert!(
        !o.victim_changed,
        "victim changed: victim statuses {:?}",
        o.victim_statuses
    );
}

/// Depth 32 (allowed) reaching the victim's child whose own child is then past the limit: the
/// partial result is cached and reused for the victim.
#[tokio::test]
async fn a_deep_foreign_chain_cannot_poison_grandchildren() {
    let mut base = victim();
    // victim/api delegates /api/v2 to victim/v2.
    for o in &mut base {
        if o["kind"] == "IngressRoute" && o["metadata"]["name"] == "api" {
            o["spec"]["routes"]
                .as_array_mut()
                .unwrap()
                .push(json!({"match": "/api/v2", "delegate": {"name": "v2"}}));
        }
    }
    base.push(ingress_route(
        "victim",
        "v2",
        "2020-01-01T00:00:00Z",
        json!({"routes": [{"match": "/api/v2", "services": [{"name": "api", "port": 80}]}]}),
    ));
    let o = probe_with(
        base,
        attacker_chain_to("aaa.example.com", "/api", 30, ("victim", "api")),
    )
    .await;
    println!("{}", o.summary());
    assert!(!o.victim_changed, "victim statuses {:?}", o.victim_statuses);
}

/// F3: any tenant can turn another tenant's delegated IngressRoute `invalid` by delegating to it
/// under a prefix its routes do not start with (the victim keeps being served, but its status
/// says invalid with a message the attacker chose the prefix of).
#[tokio::test]
async fn a_foreign_alias_cannot_flip_a_victims_status() {
    let mut objects = evil_backend();
    objects.push(ingress_route(
        "attacker",
        "evil",
        "2024-01-01T00:00:00Z",
        json!({"virtualhost": {"fqdn": "zzz.example.com"},
               "routes": [{"match": "/zzz", "delegate": {"name": "api", "namespace": "victim"}}]}),
    ));
    let o = probe(objects).await;
    println!("{}", o.summary());
    assert!(!o.victim_changed, "victim statuses {:?}", o.victim_statuses);
}

/// F4: endpoint port 0 (Endpoints and EndpointSlice) reaches the output; the output checker
/// refuses it.
#[tokio::test]
async fn endpoint_port_zero_is_left_out() {
    let mut eps = endpoints("attacker", "evil", &["10.9.9.9"]);
    eps["subsets"][0]["ports"][0]["port"] = json!(0);
    let mut sl = slice("attacker", "evil", "IPv4", &["10.9.9.8"]);
    sl["ports"][0]["port"] = json!(0);
    let o = probe(vec![
        service("attacker", "evil", 80),
        eps,
        sl,
        evil_root("evil.example.com", json!({}), json!({})),
    ])
    .await;
    println!("{}", o.summary());
    assert!(
        o.violations.is_empty() && o.envoy_errors.is_empty(),
        "{}",
        o.summary()
    );
}

/// F5: ExternalName and endpoint addresses that reach the proxy's loopback or a metadata
/// service without being link-local/loopback literals.
#[tokio::test]
async fn external_names_and_endpoints_reaching_loopback_or_metadata_are_refused() {
    let mut accepted = Vec::new();
    for host in [
        "ip6-localhost",
        "ip6-loopback",
        "::127.0.0.1",
        "::ffff:0:127.0.0.1",
        "0.0.0.1",
        "metadata.google.internal",
        "instance-data.ec2.internal",
        "fd00:ec2::254",
        "localhost.localdomain",
    ] {
        let o = probe(external_name(host)).await;
        if o.attacker_valid(EVIL) {
            accepted.push(format!("ExternalName {host}"));
        }
    }
    for ip in [
        "fd00:ec2::254",
        "100.100.100.200",
        "168.63.129.16",
        "64:ff9b::7f00:1",
        "::ffff:0:127.0.0.1",
        "2002:7f00:1::1",
        "fe80::1%eth0",
        "010.0.0.1",
        "127.0.0.1 ",
    ] {
        let o = probe(hostile_endpoints(&[ip])).await;
        let dag_addrs: Vec<String> = {
            let mut objects = victim();
            objects.extend(hostile_endpoints(&[ip]));
            evil_addresses(dag_of(
                &build_all(&snapshot(&objects), false),
                "gateways/shared",
            ))
        };
        if dag_addrs.len() > 1 {
            accepted.push(format!("endpoint {ip} -> {dag_addrs:?}"));
        }
        assert!(o.envoy_errors.is_empty(), "{ip}: {}", o.summary());
    }
    println!("accepted: {accepted:#?}");
    assert!(accepted.is_empty(), "{accepted:#?}");
}

/// The victim's route prefixes on the shared Gateway with the depth-poisoning chain present.
#[test]
fn a_deep_foreign_chain_cannot_remove_a_victims_route() {
    let mut objects = victim();
    objects.extend(attacker_chain_to(
        "aaa.example.com",
        "/api",
        31,
        ("victim", "api"),
    ));
    let dags = build_all(&snapshot(&objects), false);
    let vh = dag_of(&dags, "gateways/shared")
        .virtual_hosts
        .iter()
        .find(|v| v.fqdn == VICTIM_HOST)
        .unwrap();
    let prefixes: Vec<&str> = vh.routes.iter().map(|r| r.prefix.as_str()).collect();
    println!("victim prefixes with the attacker chain: {prefixes:?}");
    assert!(
        prefixes.contains(&"/api"),
        "victim's /api route is gone: {prefixes:?}"
    );
}

/// More exploration: tls.key PEM tricks, numbers, protocol combos.
#[tokio::test]
async fn assorted_hostile_values_hold() {
    let key = attacker_key_der();
    let cert = PKI.attacker.cert_pem.clone();
    let mut findings = Vec::new();
    let mut worlds: Vec<(&str, Vec<Value>)> = vec![
        (
            "tls.key BEGIN line with trailing text",
            tls_world(
                &cert,
                &PKI.attacker
                    .key_pem
                    .replacen("KEY-----\n", "KEY----- x\n", 1),
            ),
        ),
        (
            "tls.key END label mismatch",
            tls_world(
                &cert,
                &pem_custom(
                    "-----BEGIN PRIVATE KEY-----",
                    "-----END CERTIFICATE-----",
                    &key,
                    64,
                    "\n",
                ),
            ),
        ),
        (
            "tls.key label PRIVATE KEY-X",
            tls_world(
                &cert,
                &pem_custom(
                    "-----BEGIN PRIVATE KEY-X-----",
                    "-----END PRIVATE KEY-X-----",
                    &key,
                    64,
                    "\n",
                ),
            ),
        ),
        (
            "tls.key with an empty line inside",
            tls_world(
                &cert,
                &PKI.attacker
                    .key_pem
                    .replacen('\n', "\n\n", 2)
                    .replacen("\n\n", "\n", 1),
            ),
        ),
        (
            "health check numbers at u32::MAX",
            with_backend(evil_service(json!({"healthCheck": {"path": "/h",
                "intervalSeconds": 4294967295u64, "timeoutSeconds": 4294967295u64,
                "unhealthyThresholdCount": 4294967295u64, "healthyThresholdCount": 4294967295u64}}))),
        ),
        (
            "health check host with spaces only",
            with_backend(evil_service(
                json!({"healthCheck": {"path": "/h", "host": "   "}}),
            )),
        ),
        (
            "timeout 0.0001ms and perTry 1ns",
            with_backend(evil_root(
                "evil.example.com",
                json!({}),
                json!({
                "timeoutPolicy": {"request": "0.0001ms"},
                "retryPolicy": {"count": 0, "perTryTimeout": "1ns"}}),
            )),
        ),
        ("permitInsecure websocket prefixRewrite on TLS host", {
            let mut v = evil_backend();
            v.push(tls_secret_attacker());
            v.push(ingress_route("attacker", "evil", "2024-01-01T00:00:00Z", json!({
                    "virtualhost": {"fqdn": "evil.example.com", "tls": {"secretName": "evil-tls"}},
                    "routes": [
                        {"match": "/a", "permitInsecure": true, "enableWebsockets": true, "prefixRewrite": "/",
                         "services": [{"name": "evil", "port": 80, "strategy": "Cookie"}]},
                        {"match": "/a/", "services": [{"name": "evil", "port": 80}]},
                        {"match": "/a", "services": [{"name": "evil", "port": 80, "weight": 0}]}]})));
            v
        }),
        ("tcpproxy with TLS termination and permitInsecure routes", {
            let mut v = evil_backend();
            v.push(tls_secret_attacker());
            v.push(ingress_route("attacker", "evil", "2024-01-01T00:00:00Z", json!({
                    "virtualhost": {"fqdn": "evil.example.com", "tls": {"secretName": "evil-tls"}},
                    "tcpproxy": {"services": [{"name": "evil", "port": 80, "weight": 0}, {"name": "evil", "port": 80, "strategy": "Random"}]},
                    "routes": [{"match": "/", "permitInsecure": true, "services": [{"name": "evil", "port": 80}]}]})));
            v
        }),
        ("h2 + tls + h2c annotations, ExternalName IPv6 literal", {
            vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "attacker", "name": "evil",
                        "annotations": {"contour.heptio.com/upstream-protocol.h2": "80,http",
                                        "projectcontour.io/upstream-protocol.h2c": "http",
                                        "projectcontour.io/upstream-protocol.tls": " 80 "}},
                        "spec": {"type": "ExternalName", "externalName": "2001:DB8::1",
                                 "ports": [{"name": "http", "port": 80}]}}),
                evil_root(
                    "evil.example.com",
                    json!({}),
                    json!({"enableWebsockets": true}),
                ),
            ]
        }),
        ("h2 ExternalName with a trailing dot and upper case", {
            vec![
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "attacker", "name": "evil",
                        "annotations": {"contour.heptio.com/upstream-protocol.h2": "80"}},
                        "spec": {"type": "ExternalName", "externalName": "Backend.Example.COM.",
                                 "ports": [{"name": "http", "port": 80}]}}),
                evil_root("evil.example.com", json!({}), json!({})),
            ]
        }),
        (
            "400 services on one route",
            with_backend(evil_root(
                "evil.example.com",
                json!({}),
                json!({"services":
                (0..400).map(|i| json!({"name": "evil", "port": 80, "weight": i, "strategy": if i % 2 == 0 {"Random"} else {"RoundRobin"},
                   "healthCheck": {"path": format!("/h{i}")}})).collect::<Vec<_>>()}),
            )),
        ),
        (
            "root whose only routes delegate to missing objects, with TLS",
            {
                let mut v = evil_backend();
                v.push(tls_secret_attacker());
                v.push(ingress_route("attacker", "evil", "2024-01-01T00:00:00Z", json!({
                    "virtualhost": {"fqdn": "evil.example.com", "tls": {"secretName": "evil-tls", "minimumProtocolVersion": "1.3"}},
                    "routes": [{"match": "/", "delegate": {"name": "nope"}}, {"match": "/x", "delegate": {"name": "nope", "namespace": "nowhere"}}]})));
                v
            },
        ),
        ("passthrough with secretName and routes", {
            let mut v = evil_backend();
            v.push(tls_secret_attacker());
            v.push(ingress_route("attacker", "evil", "2024-01-01T00:00:00Z", json!({
                    "virtualhost": {"fqdn": "evil.example.com", "tls": {"secretName": "evil-tls", "passthrough": true}},
                    "tcpproxy": {"services": [{"name": "evil", "port": 80}]},
                    "routes": [{"match": "/", "permitInsecure": true, "services": [{"name": "evil", "port": 80}]}]})));
            v
        }),
    ];
    for (name, objects) in worlds.drain(..) {
        let o = probe(objects).await;
        let valid = o
            .attacker
            .iter()
            .any(|s| s.starts_with("attacker/evil valid"));
        let bad = !o.envoy_errors.is_empty()
            || !o.translate_errors.is_empty()
            || !o.violations.is_empty();
        println!("== {name}: valid={valid} broken={bad}\n    {}", o.summary());
        if valid && bad || o.victim_changed {
            findings.push(name);
        }
    }
    println!("FINDINGS: {findings:#?}");
    assert!(findings.is_empty(), "{findings:#?}");
}
