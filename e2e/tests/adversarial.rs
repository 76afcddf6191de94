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
            Expect::Invalid("attacker/c32", &["delegation chain is deeper than 32"]),
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

/// Each instance's inline bootstrap (for `envoy --mode validate`), and what the output
/// constraint checker finds in its resources.
fn translate_all(dags: &[Dag]) -> Vec<(String, Result<String, String>, Vec<String>)> {
    let opts = TranslateOptions::default();
    dags.iter()
        .map(|dag| {
            let resources =
                translate(dag, &opts).unwrap_or_else(|e| panic!("{}: {e}", dag.gateway));
            let violations = check_resources(&resources)
                .iter()
                .map(ToString::to_string)
                .collect();
            let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
            let json = message_to_json(&bootstrap)
                .map(|j| j.to_string())
                .map_err(|e| e.to_string());
            (dag.gateway.clone(), json, violations)
        })
        .collect()
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
        for (gateway, bootstrap, violations) in translate_all(&dags) {
            if !violations.is_empty() {
                problems.push(format!("{gateway}: constraint violations: {violations:?}"));
            }
            match bootstrap {
                Ok(json) => {
                    if let Err(e) = sluice_e2e::envoy::validate(&json).await {
                        problems.push(format!("Envoy rejects {gateway}'s configuration: {e}"));
                    }
                }
                Err(e) => problems.push(format!("{gateway}: no Envoy JSON: {e}")),
            }
        }
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
/// past the loader's limit is refused with an error while the other documents still load.
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
}
