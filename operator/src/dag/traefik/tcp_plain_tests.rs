//! Plain TCP IngressRouteTCPs (no `tls`): the catch-all's chain for connections that are not
//! TLS, the TLS inspector it keeps, and the claim on the catch-all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use envoy_types::pb::envoy::config::listener::v3::Listener;

use super::tls_tcp_tests::{base, dag_of, object, tcp_route, verdict, vhost};
use crate::dag::model::Dag;
use crate::xds::translate::{HTTPS_LISTENER, TranslateOptions, translate};

fn plain(ns: &str, name: &str, year: u32, rule: &str) -> String {
    tcp_route(
        ns,
        name,
        &format!("{year}-01-01T00:00:00Z"),
        &format!("  routes:\n  - match: '{rule}'\n    services: [{{name: s, port: 80}}]\n"),
    )
}

fn https_listener(dag: &Dag) -> Listener {
    let r = translate(dag, &TranslateOptions::default()).unwrap();
    r.listeners
        .into_iter()
        .find(|l| l.name == HTTPS_LISTENER)
        .unwrap()
        .message
}

/// Each chain as (name, server names, transport protocol, source networks).
fn chains(l: &Listener) -> Vec<(String, Vec<String>, String, Vec<String>)> {
    l.filter_chains
        .iter()
        .map(|c| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            let sources = m
                .source_prefix_ranges
                .iter()
                .map(|r| format!("{}/{}", r.address_prefix, r.prefix_len.unwrap().value))
                .collect();
            (
                c.name.clone(),
                crate::xds::translate::listeners_hold::names_once(&m.server_names),
                m.transport_protocol,
                sources,
            )
        })
        .collect()
}

fn inspectors(l: &Listener) -> Vec<&str> {
    l.listener_filters.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn alone_it_is_a_raw_chain_of_a_listener_that_still_inspects() {
    let dag = dag_of(&(base("db") + &plain("db", "mysql", 2020, "HostSNI(`*`)")));
    assert_eq!(verdict(&dag, "IngressRouteTCP", "db/mysql").0, "valid");
    let proxy = vhost(&dag, "*").tcp_proxy.clone().unwrap();
    assert!(proxy.plain);
    let l = https_listener(&dag);
    assert_eq!(
        chains(&l),
        [("*".to_owned(), vec![], "raw_buffer".to_owned(), vec![])]
    );
    assert!(l.filter_chains[0].transport_socket.is_none());
    // Always inspected: what other tenants serve never changes the listener's filters, and a
    // TLS connection is never `raw_buffer`.
    assert_eq!(inspectors(&l), ["envoy.filters.listener.tls_inspector"]);
}

#[test]
fn beside_tls_chains_the_listener_inspects_and_client_ip_adds_source_ranges() {
    let yaml = base("db")
        + &base("web")
        + &plain(
            "db",
            "mysql",
            2020,
            "ClientIP(`10.0.0.0/8`) || (HostSNI(`*`) && ClientIP(`::1`))",
        )
        + &tcp_route(
            "web",
            "tls",
            "2021-01-01T00:00:00Z",
            "  routes:\n  - match: HostSNI(`a.example.com`)\n    \
             services: [{name: s, port: 80}]\n  tls: {passthrough: true}\n",
        );
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "db/mysql").0, "valid");
    let l = https_listener(&dag);
    assert_eq!(
        chains(&l),
        [
            (
                "*#0".to_owned(),
                vec![],
                "raw_buffer".to_owned(),
                vec!["10.0.0.0/8".to_owned(), "::1/128".to_owned()]
            ),
            (
                "a.example.com".to_owned(),
                vec!["a.example.com".to_owned()],
                String::new(),
                vec![]
            ),
        ]
    );
    assert_eq!(inspectors(&l), ["envoy.filters.listener.tls_inspector"]);
}

#[test]
fn it_claims_the_catch_all_against_both_dialects() {
    let http = object(
        "IngressRoute",
        "web",
        "any",
        "2019-01-01T00:00:00Z",
        "  entryPoints: [web]\n  routes:\n  - match: PathPrefix(`/`)\n    \
         services: [{name: s, port: 80}]\n",
    );
    let yaml = base("db") + &base("web") + &http + &plain("db", "mysql", 2020, "HostSNI(`*`)");
    let dag = dag_of(&yaml);
    let (status, description) = verdict(&dag, "IngressRouteTCP", "db/mysql");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("the catch-all host \"*\"") && description.contains("web/any"),
        "{description}"
    );
    assert!(vhost(&dag, "*").tcp_proxy.is_none());
    // The older plain TCP route keeps it against a younger TLS catch-all.
    let yaml = base("db")
        + &base("web")
        + &plain("db", "mysql", 2020, "HostSNI(`*`)")
        + &tcp_route(
            "web",
            "tls-any",
            "2021-01-01T00:00:00Z",
            "  routes:\n  - match: HostSNI(`*`)\n    services: [{name: s, port: 80}]\n  \
             tls: {passthrough: true}\n",
        );
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "web/tls-any").0, "invalid");
    assert!(vhost(&dag, "*").tcp_proxy.as_ref().unwrap().plain);
}
