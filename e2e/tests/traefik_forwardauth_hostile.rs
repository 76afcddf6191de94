//! A hostile tenant writing forwardAuth Middlewares: every value at or past a limit, one world
//! per value next to a victim team's Contour root. For each: the translated configuration passes
//! the independent output checker and a real `envoy --mode validate`, the victim's virtual host is
//! exactly what it is without the attacker, and the values meant to be refused are (naming the
//! field), the others served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sluice::dag::{Validity, build, instances};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::manifests::{self, doc};
use sluice_e2e::tls::{CertKey, TestCa};

fn service(ns: &str, name: &str, port: u16) -> String {
    doc(&json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"namespace": ns, "name": name},
                "spec": {"ports": [{"name": "http", "port": port}]}}))
        + &doc(&json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"namespace": ns, "name": name},
                "subsets": [{"addresses": [{"ip": "10.1.0.1"}],
                             "ports": [{"name": "http", "port": 8080}]}]}))
}

fn victim() -> String {
    service("victim", "web", 80)
        + &service("victim", "auth", 80)
        + &service("evil", "web", 80)
        + &service("evil", "auth", 80)
        + &tls_secrets()
        + &doc(&json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"namespace": "evil", "name": "outside"},
            "spec": {"type": "ExternalName", "externalName": "169.254.169.254.nip.io",
                     "ports": [{"port": 80}]}}))
        + &doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": "victim", "name": "site",
                         "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"virtualhost": {"fqdn": "victim.example.com"},
                     "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]},
        }))
}

/// A CA bundle `evil/ca` and a client certificate `evil/client`.
fn tls_secrets() -> String {
    static PEMS: std::sync::LazyLock<(String, CertKey)> = std::sync::LazyLock::new(|| {
        let ca = TestCa::new("evil CA").unwrap();
        let client = ca.issue(&["client.evil"]).unwrap();
        (ca.cert_pem(), client)
    });
    let (ca, client) = &*PEMS;
    format!(
        "---\n{}---\n{}",
        manifests::ca_secret("evil", "ca", ca),
        manifests::tls_secret("evil", "client", client)
    )
}

/// The attacker's IngressRoute: its own host and one on the victim's, both with `m`.
fn attacker(spec: &Value) -> String {
    doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
        "metadata": {"namespace": "evil", "name": "m"}, "spec": spec,
    })) + &doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": "r",
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"entryPoints": ["web"], "routes": [
            {"match": "Host(`evil.example.com`) && PathPrefix(`/a`)",
             "middlewares": [{"name": "m"}], "services": [{"name": "web", "port": 80}]},
            {"match": "Host(`evil.example.com`)", "services": [{"name": "web", "port": 80}]},
        ]},
    })) + &doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": "steal",
                     "creationTimestamp": "2030-01-01T00:00:00Z"},
        "spec": {"entryPoints": ["web"], "routes": [
            {"match": "Host(`victim.example.com`) && PathPrefix(`/`)",
             "middlewares": [{"name": "m"}], "services": [{"name": "web", "port": 80}]},
        ]},
    }))
}

#[tokio::test]
async fn hostile_forward_auth_middlewares_never_break_the_configuration_or_the_victim() {
    let long_path = format!("/{}", "p".repeat(5000));
    let many: Vec<String> = (0..64).map(|i| format!("X-H{i}")).collect();
    // (spec, refused with this in the verdict; None: served)
    let cases: Vec<(Value, Option<&str>)> = vec![
        // Envoy formatter commands are literal in the path: served, never expanded.
        (
            json!({"forwardAuth": {"address": "http://auth/%ENVIRONMENT(HOME)%?a=%REQ(:path)%"}}),
            None,
        ),
        (
            json!({"forwardAuth": {"address": "http://auth.evil.svc.cluster.local:80/v?x=%25",
                   "authResponseHeaders": many, "authResponseHeadersRegex": "^X-(A|B)+$",
                   "forwardBody": true, "maxBodySize": 16_777_216}}),
            None,
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeadersRegex":
                   "(a*)*(b+)+[^\\x00-\\x{FF}]?é"}}),
            None,
        ),
        // Envoy 1.40's RE2 refuses escapes above \x{FF} ("invalid escape sequence"): refused.
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeadersRegex":
                   "(a*)*(b+)+[^\\x00-\\x{10FFFF}]?é"}}),
            Some("names a code point above"),
        ),
        // Mutual TLS to the tenant's own auth server: served.
        (
            json!({"forwardAuth": {"address": "https://auth.evil.svc:80/",
                   "tls": {"caSecret": "ca", "certSecret": "client"}}}),
            None,
        ),
        // Another tenant's auth server, outside the cluster, metadata endpoints, odd hosts.
        (
            json!({"forwardAuth": {"address": "http://auth.victim"}}),
            Some("in another namespace"),
        ),
        (
            json!({"forwardAuth": {"address": "http://outside"}}),
            Some("enableExternalNameServices"),
        ),
        (
            json!({"forwardAuth": {"address": "http://169.254.169.254/latest/meta-data"}}),
            Some("is an IP address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://[fd00::1]:80/"}}),
            Some("is an IP address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://metadata.google.internal/"}}),
            Some("must name a Service"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth.evil.svc.cluster.local.:80/"}}),
            Some("spec.forwardAuth.address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth@victim/"}}),
            Some("spec.forwardAuth.address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth:0/"}}),
            Some("spec.forwardAuth.address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth:99999/"}}),
            Some("spec.forwardAuth.address"),
        ),
        (
            json!({"forwardAuth": {"address": format!("http://auth{long_path}")}}),
            Some("spec.forwardAuth.address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth/a\r\nHost: victim"}}),
            Some("spec.forwardAuth.address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth/é"}}),
            Some("spec.forwardAuth.address"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth/#frag"}}),
            Some("fragment"),
        ),
        (
            json!({"forwardAuth": {"address": "https://auth/"}}),
            Some("spec.forwardAuth.tls.caSecret: required"),
        ),
        (
            json!({"forwardAuth": {"address": "https://auth:80/", "tls": {"caSecret": "victim-ca"}}}),
            Some("Secret evil/victim-ca not found"),
        ),
        (
            json!({"forwardAuth": {"address": "https://auth:80/",
                   "tls": {"caSecret": "ca", "insecureSkipVerify": true}}}),
            Some("insecureSkipVerify"),
        ),
        (
            json!({"forwardAuth": {"address": "file:///etc/passwd"}}),
            Some("spec.forwardAuth.address"),
        ),
        // Headers that frame or route the request; regexes past a bound.
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeaders": ["Content-Length"]}}),
            Some("\"content-length\" is not served"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeaders": [":authority"]}}),
            Some("authResponseHeaders[0]"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeaders": ["X-A\r\nB"]}}),
            Some("authResponseHeaders[0]"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeadersRegex": ".*"}}),
            Some("authResponseHeadersRegex: matches"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeadersRegex":
                   "(a|b)".repeat(300)}}),
            Some("authResponseHeadersRegex"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "authResponseHeadersRegex": "(?P<n>x)"}}),
            Some("authResponseHeadersRegex"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "forwardBody": true,
                   "maxBodySize": i64::MAX}}),
            Some("maxBodySize"),
        ),
        (
            // Served (as `false`: the Gateway has replaced the client's copies already).
            json!({"forwardAuth": {"address": "http://auth", "trustForwardHeader": true}}),
            None,
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "authRequestHeaders": ["Cookie"]}}),
            Some("authRequestHeaders"),
        ),
        (
            json!({"forwardAuth": {"address": "http://auth", "tls": {"caSecret": "../victim/ca"}}}),
            Some("spec.forwardAuth.tls"),
        ),
    ];
    let alone = sluice::source::load_sources([("v.yaml", victim())]).snapshot;
    let sel = instances(&alone).remove(0).local();
    let victim_vhost = |dag: &sluice::dag::Dag| {
        dag.virtual_hosts
            .iter()
            .find(|v| v.fqdn == "victim.example.com")
            .cloned()
    };
    let expected = victim_vhost(&build(&alone, &sel)).unwrap();
    let opts = TranslateOptions::default();
    for (spec, refusal) in &cases {
        let text = victim() + &attacker(spec);
        let snapshot = sluice::source::load_sources([("w.yaml", text.as_str())]).snapshot;
        let dag = build(&snapshot, &sel);
        assert_eq!(
            victim_vhost(&dag).as_ref(),
            Some(&expected),
            "{spec}: the victim's host changed"
        );
        let verdict = |name: &str| {
            dag.object_statuses
                .iter()
                .find(|s| s.namespace == "evil" && s.name == name)
                .unwrap()
                .clone()
        };
        let r = verdict("r");
        match refusal {
            None => assert_eq!(
                r.current_status,
                Validity::Valid,
                "{spec}: {}",
                r.description
            ),
            Some(expected) => {
                assert_eq!(r.current_status, Validity::Invalid, "{spec}");
                assert!(
                    r.description.contains(expected),
                    "{spec}: {}",
                    r.description
                );
                assert!(
                    r.description.contains("Middleware evil/m "),
                    "{spec}: {}",
                    r.description
                );
            }
        }
        // The victim's host stays the victim's, whatever the middleware.
        assert_eq!(verdict("steal").current_status, Validity::Invalid);
        let resources = translate(&dag, &opts).unwrap();
        let violations = check_resources(&resources);
        assert!(violations.is_empty(), "{spec}: {violations:#?}");
        let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
        let json = serde_json::to_string(&message_to_json(&bootstrap).unwrap()).unwrap();
        if let Err(e) = sluice_e2e::envoy::validate(&json).await {
            panic!("{spec}: Envoy rejected it: {e}");
        }
    }
}
