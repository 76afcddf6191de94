//! The Envoy matches Sluice makes of Traefik rules are accepted by a real Envoy
//! (`envoy --mode validate`): regexes wrapped for full match, header, method and query
//! matchers. A Rust-only regex construct is the negative control: Envoy refuses it, which is
//! why the checker refuses it first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use sluice::traefik::matcher::Syntax;
use sluice::traefik::matches::{HttpMatch, PathMatch, StringMatch, http_rule};

fn string_match(v: &StringMatch) -> Value {
    match v {
        StringMatch::Exact(s) => json!({"exact": s}),
        StringMatch::Regex(r) => json!({"safe_regex": {"regex": r}}),
        StringMatch::Present => Value::Null,
    }
}

fn route(m: &HttpMatch) -> Value {
    let mut rm = match &m.path {
        PathMatch::Any => json!({"prefix": "/"}),
        PathMatch::Exact(p) => json!({"path": p}),
        PathMatch::Prefix(p) => json!({"prefix": p}),
        PathMatch::Regex(r) => json!({"safe_regex": {"regex": r}}),
    };
    rm["headers"] = m
        .headers
        .iter()
        .map(|h| match &h.value {
            StringMatch::Present => {
                json!({"name": h.name, "present_match": true, "invert_match": h.invert})
            }
            v => json!({"name": h.name, "string_match": string_match(v), "invert_match": h.invert}),
        })
        .collect();
    rm["query_parameters"] = m
        .query
        .iter()
        .map(|q| match &q.value {
            StringMatch::Present => json!({"name": q.key, "present_match": true}),
            v => json!({"name": q.key, "string_match": string_match(v)}),
        })
        .collect();
    json!({"match": rm, "direct_response": {"status": 200}})
}

/// Runs `envoy --mode validate` on one listener holding `routes`; true when Envoy accepts it.
fn envoy_accepts(routes: Vec<Value>, program_size_limit: Option<u64>) -> (bool, String) {
    let mut bootstrap = json!({
        "static_resources": {"listeners": [{
            "name": "l",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "t",
                    "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }
            }]}]
        }]}
    });
    if let Some(limit) = program_size_limit {
        bootstrap["layered_runtime"] = json!({"layers": [{"name": "static", "static_layer": {
            "re2": {"max_program_size": {"error_level": limit}}
        }}]});
    }
    validate(&bootstrap)
}

/// `envoy --mode validate` on a bootstrap (the workspace's one launcher: `SLUICE_ENVOY`, else
/// `envoy` on PATH): whether Envoy accepts it, and what it said.
fn validate(bootstrap: &Value) -> (bool, String) {
    match sluice_e2e::envoy::validate_blocking(&bootstrap.to_string()) {
        Ok(output) => (true, output),
        Err(sluice_e2e::Error::EnvoyInvalid { output, .. }) => (false, output),
        Err(e) => panic!("could not run envoy --mode validate: {e}"),
    }
}

const RULES: &[(&str, Syntax)] = &[
    ("Host(`a.example.com`) && PathPrefix(`/api`)", Syntax::V3),
    ("PathRegexp(`^/api/v[0-9]+`) && Method(`GET`)", Syntax::V3),
    (
        "HostRegexp(`^[a-z0-9-]+\\.example\\.com$`) && !Header(`X-Debug`, `1`)",
        Syntax::V3,
    ),
    (
        "HeaderRegexp(`User-Agent`, `(?i)bot|crawler`) || Query(`q`, `x`)",
        Syntax::V3,
    ),
    (
        "QueryRegexp(`id`, `^[0-9]{1,8}$`) && Query(`flag`)",
        Syntax::V3,
    ),
    ("Host(`*.example.com`) && Path(`/x`)", Syntax::V3),
    (
        "HostRegexp(`{sub:[a-z]+}.example.com`) && Path(`/users/{id:[0-9]+}`)",
        Syntax::V2,
    ),
    (
        "Headers(`X-A`, ``) && Query(`a=`, `b={v:[a-z]+}`)",
        Syntax::V2,
    ),
];

#[test]
fn envoy_accepts_the_matches_of_traefik_rules() {
    let routes: Vec<Value> = RULES
        .iter()
        .flat_map(|(rule, syntax)| {
            http_rule(rule, *syntax, None)
                .unwrap_or_else(|e| panic!("{rule}: {e}"))
                .matches
        })
        .map(|m| route(&m))
        .collect();
    assert!(routes.len() >= RULES.len());
    // The bootstrap of an instance serving Traefik routes must raise RE2's program size limit
    // (Envoy's default, 100, refuses ordinary patterns); Sluice bounds the regexes itself.
    let (ok, out) = envoy_accepts(routes.clone(), Some(u64::from(u32::MAX)));
    assert!(ok, "Envoy refused the translated matches:\n{out}");
}

#[test]
fn envoy_refuses_what_the_checker_refuses() {
    // RE2 constructs limits and Rust-only syntax: Envoy refuses each, so must the checker.
    // Envoy's RE2 also refuses hex escapes above \x{FF} ("invalid escape sequence").
    for regex in [
        "a{1001}",
        "(?x)a b",
        "\\u0041",
        "(?u:a)",
        "\\x{100}",
        "[\\x{80}-\\x{10FFFF}]",
    ] {
        let route = json!({"match": {"safe_regex": {"regex": regex}},
            "direct_response": {"status": 200}});
        let (ok, out) = envoy_accepts(vec![route], Some(u64::from(u32::MAX)));
        assert!(!ok, "Envoy accepted {regex:?}:\n{out}");
        assert!(sluice::traefik::regex::check(regex).is_err(), "{regex:?}");
    }
    // Rust-only syntax that RE2 (and Go) read with another meaning: `[a-z&&[^aeiou]]` is a class
    // followed by a literal `]`, `\b{start}` a word boundary followed by the literal `{start}`.
    // Envoy accepts them, so only the checker stands between the user and a silent difference.
    for regex in ["[a-z&&[^aeiou]]", "\\b{start}a"] {
        let route = json!({"match": {"safe_regex": {"regex": regex}},
            "direct_response": {"status": 200}});
        assert!(
            envoy_accepts(vec![route], Some(u64::from(u32::MAX))).0,
            "{regex:?}"
        );
        assert!(sluice::traefik::regex::check(regex).is_err(), "{regex:?}");
    }
}

#[test]
fn envoys_program_size_limit_applies_only_when_set() {
    // Envoy's default `re2.max_program_size.error_level` is 100: a small pattern passes
    // without a limit set, a lower limit refuses it. Sluice's bootstraps raise the limit to
    // `ENVOY_MAX_PROGRAM_SIZE` (see `e2e/tests/traefik_hostile.rs` for larger patterns).
    let m = &http_rule("PathRegexp(`^/api/v[0-9]+/users`)", Syntax::V3, None)
        .unwrap()
        .matches[0];
    assert!(envoy_accepts(vec![route(m)], None).0);
    let (ok, out) = envoy_accepts(vec![route(m)], Some(10));
    assert!(
        !ok,
        "a program size limit of 10 accepted the pattern:\n{out}"
    );
}

#[test]
fn envoy_accepts_every_cipher_suite_and_curve_name_of_a_tls_option() {
    use sluice::api::traefik::TLSOptionSpec;
    let spec: TLSOptionSpec = serde_json::from_value(json!({
        "minVersion": "VersionTLS10", "maxVersion": "VersionTLS13",
        "cipherSuites": [
            "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA",
            "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
        ],
        "curvePreferences": ["CurveP256", "CurveP384", "CurveP521", "X25519", "X25519MLKEM768"]
    }))
    .unwrap();
    let m = sluice::traefik::tls::build(&spec).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let bootstrap = json!({
        "static_resources": {"listeners": [{
            "name": "tls",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {
                        "tls_params": {
                            "tls_minimum_protocol_version": m.min_version.envoy(),
                            "tls_maximum_protocol_version": m.max_version.unwrap().envoy(),
                            "cipher_suites": m.cipher_suites,
                            "ecdh_curves": m.ecdh_curves
                        },
                        "alpn_protocols": m.alpn_protocols,
                        "tls_certificates": [{
                            "certificate_chain": {"inline_string": cert.pem()},
                            "private_key": {"inline_string": key.serialize_pem()}
                        }]
                    }
                }},
                "filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "t", "cluster": "c"}}]
            }]
        }],
        "clusters": [{"name": "c", "type": "STATIC", "load_assignment": {"cluster_name": "c",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address":
                {"address": "127.0.0.1", "port_value": 1}}}}]}]}}]}
    });
    let (ok, out) = validate(&bootstrap);
    assert!(ok, "Envoy refused the TLS option's names:\n{out}");
    let mut bad = bootstrap.clone();
    bad["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]["typed_config"]
        ["common_tls_context"]["tls_params"]["cipher_suites"] = json!(["NOT-A-CIPHER"]);
    // Validation does build the TLS context: an unknown name is refused. (BoringSSL also accepts
    // the standard names Go uses; Sluice sends the OpenSSL-style ones Envoy documents.)
    assert!(
        !validate(&bad).0,
        "Envoy accepted an unknown cipher suite name"
    );
}
