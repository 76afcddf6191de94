//! Plain HTTP's scoped routes: which names are keyed, the per-Gateway fallback to the shared
//! `ingress_http`, and what the scopes and their route configurations hold.
#![allow(clippy::unwrap_used, clippy::panic)]

use envoy_types::pb::envoy::config::route::v3::scoped_route_configuration::key::fragment;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::config::listener::v3::filter;
use prost::Message;

use super::constraints::check_resources;
use super::fixture::{self, Pems};
use super::scopes::{keyable, scoped};
use super::{HTTP_LISTENER, Resources, TranslateOptions, translate};

fn http_hcm(r: &Resources) -> HttpConnectionManager {
    let l = &r
        .listeners
        .iter()
        .find(|l| l.name == HTTP_LISTENER)
        .unwrap()
        .message;
    let Some(filter::ConfigType::TypedConfig(cfg)) = &l.filter_chains[0].filters[1].config_type
    else {
        panic!("untyped filter");
    };
    HttpConnectionManager::decode(cfg.value.as_slice()).unwrap()
}

/// What the constraints find, certificates aside (the fixture's PEMs are placeholders).
fn violations(r: &Resources) -> Vec<String> {
    check_resources(r)
        .into_iter()
        .filter(|v| !v.resource.starts_with("secret "))
        .map(|v| v.to_string())
        .collect()
}

#[test]
fn only_exact_lower_case_dns_names_are_keyed() {
    for name in ["a.example.com", "xn--bcher-kva.example", "a-1.b2.c", "x"] {
        assert!(keyable(name), "{name:?} refused");
    }
    // Wildcards and catch-alls, names with a port or upper case, anything else.
    for name in [
        "",
        "*",
        "*.example.com",
        "Example.com",
        "a.example.com:80",
        "a_b.example.com",
        "[::1]",
        "a example.com",
        "é.example.com",
    ] {
        assert!(!keyable(name), "{name:?} keyed");
    }
}

#[test]
fn each_plain_http_host_gets_a_scope_keyed_on_its_name_and_its_own_route_configuration() {
    let r = translate(
        &fixture::dag(&Pems::placeholder()),
        &TranslateOptions::default(),
    )
    .unwrap();
    assert!(!r.scoped_routes.is_empty());
    for s in &r.scoped_routes {
        let fqdn = s.name.strip_prefix("http/").unwrap();
        assert_eq!(s.message.route_configuration_name, s.name);
        let key = &s.message.key.as_ref().unwrap().fragments;
        assert_eq!(key.len(), 1);
        assert_eq!(
            key[0].r#type,
            Some(fragment::Type::StringKey(fqdn.to_owned()))
        );
        let rc = &r
            .routes
            .iter()
            .find(|rc| rc.name == s.name)
            .unwrap()
            .message;
        assert_eq!(rc.virtual_hosts.len(), 1);
        assert_eq!(
            rc.virtual_hosts[0].domains,
            [fqdn.to_owned(), format!("{fqdn}:*")]
        );
    }
    assert!(r.routes.iter().all(|rc| rc.name != HTTP_LISTENER));
    assert_eq!(violations(&r), Vec::<String>::new());

    // Every host the shared table would hold has its scope, holding the same virtual host: the
    // same DAG with one unkeyable host more is served from the shared table.
    let mut dag = fixture::dag(&Pems::placeholder());
    let routes = vec![fixture::route("/", &[("web", 80, 1)])];
    dag.virtual_hosts
        .insert(0, fixture::vhost("*.wild.example.com", routes));
    let shared = translate(&dag, &TranslateOptions::default()).unwrap();
    let shared_hosts: Vec<_> = shared
        .routes
        .iter()
        .find(|rc| rc.name == HTTP_LISTENER)
        .unwrap()
        .message
        .virtual_hosts
        .iter()
        .filter(|vh| vh.name != "*.wild.example.com")
        .cloned()
        .collect();
    let scoped_hosts: Vec<_> = r
        .routes
        .iter()
        .filter(|rc| rc.name.starts_with("http/"))
        .flat_map(|rc| rc.message.virtual_hosts.clone())
        .collect();
    // With a wildcard served, the shared table also holds the names served over HTTPS only, as
    // empty virtual hosts (they must not fall through to the wildcard).
    let served: Vec<_> = shared_hosts
        .iter()
        .filter(|vh| !vh.routes.is_empty())
        .collect();
    let names: Vec<&str> = served.iter().map(|vh| vh.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "app.example.com",
            "external.example.com",
            "secure.example.com",
            "tcp.example.com"
        ]
    );
    assert_eq!(scoped_hosts.len(), served.len());
    for (scoped, shared) in scoped_hosts.iter().zip(&served) {
        assert_eq!(scoped.name, shared.name);
        assert_eq!(scoped.routes, shared.routes, "{}", scoped.name);
    }
    assert_eq!(r.scoped_routes.len(), served.len());
}

#[test]
fn a_scope_naming_a_route_configuration_not_in_the_set_is_a_violation() {
    let mut r = translate(
        &fixture::dag(&Pems::placeholder()),
        &TranslateOptions::default(),
    )
    .unwrap();
    let name = r.scoped_routes[0].name.clone();
    r.routes.retain(|rc| rc.name != name);
    let v = violations(&r);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("is not in the set"), "{}", v[0]);
}

#[test]
fn a_host_that_cannot_be_keyed_puts_the_gateway_back_on_the_shared_route_configuration() {
    let mut dag = fixture::dag(&Pems::placeholder());
    assert!(scoped(&dag));
    let routes = vec![fixture::route("/", &[("web", 80, 1)])];
    dag.virtual_hosts
        .insert(0, fixture::vhost("*.wild.example.com", routes));
    assert!(!scoped(&dag));
    let r = translate(&dag, &TranslateOptions::default()).unwrap();
    assert!(r.scoped_routes.is_empty());
    let Some(RouteSpecifier::Rds(rds)) = http_hcm(&r).route_specifier else {
        panic!("not RDS");
    };
    assert_eq!(rds.route_config_name, HTTP_LISTENER);
    assert!(
        http_hcm(&r)
            .http_filters
            .iter()
            .all(|f| f.name != "envoy.filters.http.lua")
    );
    let shared = &r
        .routes
        .iter()
        .find(|rc| rc.name == HTTP_LISTENER)
        .unwrap()
        .message;
    let names: Vec<&str> = shared
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "*.wild.example.com",
            "app.example.com",
            "external.example.com",
            "passthrough.example.com",
            "secure.example.com",
            "tcp.example.com"
        ]
    );
    // A host serving nothing over plain HTTP answers 404 instead of reaching the wildcard, and
    // a wildcard cannot carry a port pattern: hosts match without their port.
    let passthrough = &shared.virtual_hosts[3];
    assert!(passthrough.routes.is_empty());
    assert!(shared.ignore_port_in_host_matching);
    assert_eq!(
        shared.virtual_hosts[0].domains,
        ["*.wild.example.com", "*.wild.example.com."]
    );
    assert!(r.routes.iter().all(|rc| !rc.name.starts_with("http/")));
    assert_eq!(violations(&r), Vec::<String>::new());
}

#[test]
fn colliding_scope_keys_are_a_violation() {
    let mut r = translate(
        &fixture::dag(&Pems::placeholder()),
        &TranslateOptions::default(),
    )
    .unwrap();
    let mut twin = r.scoped_routes[0].clone();
    twin.name = "http/twin".to_owned();
    twin.message.name = twin.name.clone();
    r.scoped_routes.push(twin);
    let v = violations(&r);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("also used by scope"), "{}", v[0]);
}
