//! The per-route filters of Traefik middlewares: inert in every listener, configured on the
//! routes that use them, byte-identical from one translation to the next.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use serde_json::Value;

use super::json::message_to_json;
use super::policies::*;
use super::scopes::LOWERCASE_HOST_LUA;
use super::{Resources, TranslateOptions, translate};
use crate::dag::{Selection, build};

const SHA: &str = "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

fn resources() -> Resources {
    let users = base64::engine::general_purpose::STANDARD.encode(SHA);
    let yaml = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: apps}}\n\
         spec:\n  ports: [{{port: 80, name: http}}]\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: users, namespace: apps}}\n\
         data: {{users: {users}}}\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: all, \
         namespace: apps}}\nspec:\n  chain:\n    middlewares: [{{name: cors}}, {{name: ips}}, \
         {{name: rl}}, {{name: auth}}, {{name: buf}}, {{name: retry}}]\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: cors, \
         namespace: apps}}\nspec:\n  headers: {{accessControlAllowOriginList: [\"*\"]}}\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: ips, \
         namespace: apps}}\nspec:\n  ipAllowList: {{sourceRange: [10.0.0.0/8]}}\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: rl, \
         namespace: apps}}\nspec:\n  rateLimit: {{average: 2, burst: 2}}\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: auth, \
         namespace: apps}}\nspec:\n  basicAuth: {{secret: users}}\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: buf, \
         namespace: apps}}\nspec:\n  buffering: {{maxRequestBodyBytes: 10}}\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: retry, \
         namespace: apps}}\nspec:\n  retry: {{attempts: 2}}\n\
         ---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {{name: r, \
         namespace: apps}}\nspec:\n  routes:\n  - match: Host(`a.example.com`) && \
         PathPrefix(`/guarded`)\n    middlewares: [{{name: all}}]\n    services: [{{name: s, \
         port: 80}}]\n  - match: Host(`a.example.com`)\n    services: [{{name: s, port: 80}}]\n"
    );
    let report = crate::source::load_sources([("f.yaml", yaml.as_str())]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let dag = build(&report.snapshot, &Selection::default_instance());
    assert_eq!(dag.object_statuses[0].description, "valid IngressRoute");
    translate(&dag, &TranslateOptions::default()).unwrap()
}

fn routes_json(res: &Resources) -> Vec<Value> {
    let config = res
        .routes
        .iter()
        .find(|r| r.name == "http/a.example.com")
        .unwrap();
    let json = message_to_json(&config.message).unwrap();
    json["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn every_listener_carries_the_filters_inert_or_disabled() {
    let res = resources();
    for listener in ["ingress_http", "ingress_https"] {
        let Some(l) = res.listeners.iter().find(|l| l.name == listener) else {
            continue;
        };
        let json = message_to_json(&l.message).unwrap();
        let filters = json["filter_chains"][0]["filters"][1]["typed_config"]["http_filters"]
            .as_array()
            .unwrap();
        let names: Vec<(&str, bool)> = filters
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap(),
                    f["disabled"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        let at = names.iter().position(|(n, _)| *n == CORS_FILTER).unwrap();
        assert_eq!(
            names[at..at + 6],
            [
                (CORS_FILTER, false),
                (RBAC_FILTER, false),
                (RATE_LIMIT_FILTER, false),
                (BASIC_AUTH_FILTER, true),
                (super::ext_authz::EXT_AUTHZ_FILTER, true),
                (BUFFER_FILTER, true)
            ]
        );
        // Inert: no CORS policy, no RBAC rules, no token bucket.
        for f in &filters[at..at + 3] {
            let config = f["typed_config"].as_object().unwrap();
            let keys: Vec<&String> = config
                .keys()
                .filter(|k| *k != "@type" && *k != "stat_prefix")
                .collect();
            assert!(keys.is_empty(), "{f}");
        }
    }
}

#[test]
fn routes_enable_exactly_their_filters() {
    let res = resources();
    let routes = routes_json(&res);
    assert_eq!(routes.len(), 2);
    let guarded = &routes[0];
    let config = guarded["typed_per_filter_config"].as_object().unwrap();
    let mut keys: Vec<&str> = config.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = [
        CORS_FILTER,
        RBAC_FILTER,
        RATE_LIMIT_FILTER,
        BASIC_AUTH_FILTER,
        BUFFER_FILTER,
        // Off: the route lists no `compress` middleware.
        super::service_options::COMPRESSOR_FILTER,
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let auth = &config[BASIC_AUTH_FILTER];
    assert_eq!(
        auth["@type"],
        "type.googleapis.com/envoy.config.route.v3.FilterConfig"
    );
    assert_eq!(auth["config"]["users"]["inline_string"], SHA);
    let rl = &config[RATE_LIMIT_FILTER];
    assert_eq!(rl["token_bucket"]["max_tokens"], 2);
    assert_eq!(rl["descriptors"][0]["entries"][0]["key"], "remote_address");
    assert_eq!(
        guarded["metadata"]["filter_metadata"][LUA_NAMESPACE][ROUTE_AT_START_KEY],
        true
    );
    assert_eq!(guarded["route"]["retry_policy"]["num_retries"], 1);
    let open = &routes[1];
    let open_filters: Vec<&String> = open["typed_per_filter_config"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        open_filters,
        [super::service_options::COMPRESSOR_FILTER],
        "only the compressor, off: {open}"
    );
    assert!(open.get("metadata").is_none(), "{open}");
    assert!(open["route"].get("retry_policy").is_none(), "{open}");
    // The Lua guard reads the key the routes carry.
    assert!(LOWERCASE_HOST_LUA.contains(&format!("\"{ROUTE_AT_START_KEY}\"")));
}

/// prost encodes a map in iteration order: the same DAG must still give the same bytes (and
/// so the same resource versions) every time.
#[test]
fn translations_are_byte_identical() {
    let first = resources();
    for _ in 0..20 {
        let again = resources();
        for (a, b) in first.routes.iter().zip(&again.routes) {
            assert_eq!(a.encode(), b.encode(), "{}", a.name);
        }
    }
}

/// The X-Forwarded-For check beside a forwarded address: it takes the header (Envoy's entry
/// appended) when the entry `depth` places from the right as received is an address Envoy
/// reads, and nothing else (Envoy would fall back to the TCP peer).
#[test]
fn forwarded_entry_regex_finds_the_entry_envoy_reads() {
    let matcher = forwarded_entry_matcher(2);
    let Some(envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier::StringMatch(m)) =
        matcher.header_match_specifier
    else {
        panic!("{matcher:?}");
    };
    let Some(envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::SafeRegex(
        r,
    )) = m.match_pattern
    else {
        panic!("{m:?}");
    };
    assert_eq!(matcher.name, "x-forwarded-for");
    // Envoy matches the whole value.
    let re = regex::Regex::new(&format!("^(?:{})$", r.regex)).unwrap();
    // `192.0.2.2` stands for the peer Envoy appends.
    for taken in [
        "203.0.113.7, 10.0.0.1,192.0.2.2",
        "x, y, 203.0.113.7,10.0.0.1,192.0.2.2",
        "\t255.255.255.255 ,10.0.0.1,192.0.2.2",
        "0.0.0.0,10.0.0.1,192.0.2.2",
        "2001:db8::1,10.0.0.1,2001:db8::2",
        "::,a,b",
    ] {
        assert!(re.is_match(taken), "{taken}");
    }
    for refused in [
        "10.0.0.1,192.0.2.2",
        "192.0.2.2",
        "",
        "203.0.113.7, x, 10.0.0.1,192.0.2.2",
        "256.0.0.1,10.0.0.1,192.0.2.2",
        "01.2.3.4,10.0.0.1,192.0.2.2",
        "1.2.3,10.0.0.1,192.0.2.2",
        "1.2.3.4:80,10.0.0.1,192.0.2.2",
        "[2001:db8::1],10.0.0.1,192.0.2.2",
        "beef,10.0.0.1,192.0.2.2",
        ",10.0.0.1,192.0.2.2",
    ] {
        assert!(!re.is_match(refused), "{refused}");
    }
}

/// The Gateway's trusted hops reach every HTTP connection manager (through the pipeline, as
/// `sluice run`, `standalone` and `render` translate), and nothing else changes.
#[test]
fn trusted_hops_set_envoys_client_address() {
    let yaml = "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: r, \
                namespace: apps}\nspec:\n  routes:\n  - match: Host(`a.example.com`)\n    \
                services: [{name: s, port: 80}]\n";
    let report = crate::source::load_sources([("f.yaml", yaml)]);
    let snap = std::sync::Arc::new(report.snapshot);
    let hcms = |hops: u32| {
        let mut sel = Selection::default_instance();
        sel.xff_trusted_hops = hops;
        let (_, res) = crate::pipeline::build_once(&snap, &sel, &TranslateOptions::default());
        let res = res.unwrap();
        let mut found = Vec::new();
        for l in &res.listeners {
            let json = message_to_json(&l.message).unwrap();
            for chain in json["filter_chains"].as_array().unwrap() {
                for f in chain["filters"].as_array().unwrap() {
                    if f["name"] == "envoy.filters.network.http_connection_manager"
                        && f["typed_config"]["stat_prefix"] != super::STATS_LISTENER
                    {
                        found.push(f["typed_config"].clone());
                    }
                }
            }
        }
        found
    };
    let trusting = hcms(2);
    assert_eq!(trusting.len(), 1, "{trusting:?}");
    // The TLS hosts' filter chains too, in a full and an incremental translation.
    let dag = super::fixture::dag(&super::fixture::Pems::placeholder());
    let opts = TranslateOptions {
        xff_trusted_hops: 3,
        ..TranslateOptions::default()
    };
    let full = translate(&dag, &opts).unwrap();
    let incremental = super::Translator::new(opts.clone())
        .translate(&dag)
        .unwrap();
    assert_eq!(
        incremental,
        crate::xds::resource::InstanceResources::from(&full)
    );
    let mut managers = 0;
    for l in &full.listeners {
        let json = message_to_json(&l.message).unwrap();
        for chain in json["filter_chains"].as_array().unwrap() {
            for f in chain["filters"].as_array().unwrap() {
                if f["name"] == "envoy.filters.network.http_connection_manager"
                    && f["typed_config"]["stat_prefix"] != super::STATS_LISTENER
                {
                    assert_eq!(f["typed_config"]["xff_num_trusted_hops"], 3, "{}", l.name);
                    managers += usize::from(l.name == super::HTTPS_LISTENER);
                }
            }
        }
    }
    assert!(managers >= 1, "no TLS host's connection manager");
    for hcm in &trusting {
        assert_eq!(hcm["use_remote_address"], true);
        assert_eq!(hcm["xff_num_trusted_hops"], 2);
    }
    for hcm in hcms(0) {
        assert_eq!(hcm["use_remote_address"], true);
        assert!(hcm.get("xff_num_trusted_hops").is_none(), "{hcm}");
    }
}
