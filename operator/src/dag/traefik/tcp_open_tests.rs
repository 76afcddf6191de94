//! IngressRouteTCP catch-alls (`HostSNI(`*`)`) and wildcards (`HostSNI(`*.name`)`) on small
//! manifests: what they claim against other claimants of both dialects, and the filter chains
//! of `ingress_https` that keep held names away from them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};

use super::tls_tcp_tests::{base, dag_of, object, tcp_route, verdict, vhost};
use crate::dag::model::Dag;
use crate::xds::translate::{HTTPS_LISTENER, TranslateOptions, translate};

fn tcp(ns: &str, name: &str, year: u32, rule: &str, tls: &str) -> String {
    tcp_route(
        ns,
        name,
        &format!("{year}-01-01T00:00:00Z"),
        &format!(
            "  routes:\n  - match: '{rule}'\n    services: [{{name: s, port: 80}}]\n  tls: {tls}\n"
        ),
    )
}

/// A plain HTTP IngressRoute with one rule.
fn http(ns: &str, name: &str, year: u32, rule: &str) -> String {
    object(
        "IngressRoute",
        ns,
        name,
        &format!("{year}-01-01T00:00:00Z"),
        &format!(
            "  entryPoints: [web]\n  routes:\n  - match: '{rule}'\n    \
             services: [{{name: s, port: 80}}]\n"
        ),
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

/// Each chain as (name, server names, transport protocol, network filters).
fn chains(l: &Listener) -> Vec<(String, Vec<String>, String, usize)> {
    l.filter_chains
        .iter()
        .map(|c: &FilterChain| {
            let m = c.filter_chain_match.clone().unwrap_or_default();
            (
                c.name.clone(),
                crate::xds::translate::listeners_hold::names_once(&m.server_names),
                m.transport_protocol,
                c.filters.len(),
            )
        })
        .collect()
}

#[test]
fn a_catch_all_and_a_wildcard_are_served_as_tcp_hosts() {
    let yaml = base("team-a")
        + &tcp("team-a", "any", 2024, "HostSNI(`*`)", "{passthrough: true}")
        + &tcp(
            "team-a",
            "wild",
            2024,
            "HostSNI(`*.example.com`)",
            "{secretName: cert}",
        );
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "team-a/any").0, "valid");
    assert_eq!(verdict(&dag, "IngressRouteTCP", "team-a/wild").0, "valid");
    let any = vhost(&dag, "*");
    assert!(any.tcp_proxy.is_some() && any.tls.as_ref().unwrap().passthrough);
    let wild = vhost(&dag, "*.example.com");
    assert_eq!(
        wild.tls.as_ref().unwrap().secret.as_deref(),
        Some("team-a/cert")
    );
    let l = https_listener(&dag);
    assert_eq!(
        chains(&l),
        [
            ("*".to_owned(), vec![], "tls".to_owned(), 1),
            (
                "*.example.com".to_owned(),
                vec!["*.example.com".to_owned()],
                String::new(),
                1
            ),
        ]
    );
}

#[test]
fn the_oldest_claimant_of_an_open_name_keeps_it_across_dialects() {
    // An older plain HTTP catch-all owns `*`: a younger TCP catch-all is refused, naming it.
    let yaml = base("team-a")
        + &base("team-b")
        + &http("team-a", "web", 2023, "PathPrefix(`/`)")
        + &tcp("team-b", "any", 2024, "HostSNI(`*`)", "{passthrough: true}");
    let dag = dag_of(&yaml);
    assert_eq!(
        verdict(&dag, "IngressRouteTCP", "team-b/any"),
        (
            "invalid",
            "the catch-all host \"*\" (HostSNI(`*`)) is already used by the older Traefik \
             IngressRoute team-a/web"
        )
    );
    // An older TCP wildcard covers a younger exact name of another tenant, of either kind.
    let yaml = base("team-a")
        + &base("team-b")
        + &tcp(
            "team-a",
            "wild",
            2023,
            "HostSNI(`*.example.com`)",
            "{passthrough: true}",
        )
        + &tcp(
            "team-b",
            "exact",
            2024,
            "HostSNI(`b.example.com`)",
            "{passthrough: true}",
        )
        + &http("team-b", "web", 2024, "Host(`c.example.com`)");
    let dag = dag_of(&yaml);
    let lost = |name: &str| {
        format!(
            "host \"{name}\" is covered by the wildcard host \"*.example.com\" of the older \
             Traefik IngressRouteTCP team-a/wild"
        )
    };
    assert_eq!(
        verdict(&dag, "IngressRouteTCP", "team-b/exact"),
        ("invalid", lost("b.example.com").as_str())
    );
    assert_eq!(
        verdict(&dag, "IngressRoute", "team-b/web"),
        ("invalid", lost("c.example.com").as_str())
    );
    // An exact name older than the wildcard keeps it, with its own chain.
    let yaml = base("team-a")
        + &base("team-b")
        + &tcp(
            "team-a",
            "wild",
            2024,
            "HostSNI(`*.example.com`)",
            "{passthrough: true}",
        )
        + &tcp(
            "team-b",
            "exact",
            2023,
            "HostSNI(`b.example.com`)",
            "{passthrough: true}",
        );
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "team-b/exact").0, "valid");
    assert_eq!(
        vhost(&dag, "b.example.com").owner,
        "traefik-tcp:team-b/exact"
    );
}

#[test]
fn held_names_without_a_chain_of_their_own_get_a_hold_chain() {
    // team-b holds a.example.com over plain HTTP only, and other.org through an IngressRouteTCP
    // that is invalid (its Service is missing); c.example.com is served over TLS by team-c.
    let yaml = base("team-a")
        + &base("team-b")
        + &base("team-c")
        + &tcp("team-a", "any", 2024, "HostSNI(`*`)", "{passthrough: true}")
        + &tcp(
            "team-a",
            "wild",
            2024,
            "HostSNI(`*.example.com`)",
            "{passthrough: true}",
        )
        + &http("team-b", "web", 2020, "Host(`a.example.com`)")
        + &tcp_route(
            "team-b",
            "broken",
            "2020-01-01T00:00:00Z",
            "  routes:\n  - match: HostSNI(`other.org`)\n    services: [{name: nope, port: 80}]\n  \
             tls: {passthrough: true}\n",
        )
        + &tcp(
            "team-c",
            "c",
            2020,
            "HostSNI(`c.example.com`)",
            "{passthrough: true}",
        );
    let dag = dag_of(&yaml);
    assert_eq!(
        verdict(&dag, "IngressRouteTCP", "team-b/broken").0,
        "invalid"
    );
    let l = https_listener(&dag);
    let names: Vec<(String, Vec<String>, usize)> = chains(&l)
        .into_iter()
        .map(|(name, sni, _, filters)| (name, sni, filters))
        .collect();
    let chain = |name: &str, filters: usize| {
        let sni = if name == "*" {
            vec![]
        } else {
            vec![name.to_owned()]
        };
        (name.to_owned(), sni, filters)
    };
    assert_eq!(
        names,
        [
            chain("*", 1),
            chain("*.example.com", 1),
            chain("c.example.com", 1),
            (
                "hold/a.example.com".to_owned(),
                vec!["a.example.com".to_owned()],
                0
            ),
            ("hold/other.org".to_owned(), vec!["other.org".to_owned()], 0),
        ]
    );
    // Without a TCP catch-all or wildcard, nothing is held on the HTTPS listener.
    let yaml = base("team-b")
        + &base("team-c")
        + &http("team-b", "web", 2020, "Host(`a.example.com`)")
        + &http("team-b", "any", 2020, "PathPrefix(`/`)")
        + &tcp(
            "team-c",
            "c",
            2020,
            "HostSNI(`c.example.com`)",
            "{passthrough: true}",
        );
    let l = https_listener(&dag_of(&yaml));
    assert_eq!(chains(&l).len(), 1);
}

#[test]
fn the_catch_all_and_wildcard_routes_of_an_object_also_serve_its_own_names() {
    // Traefik tries route 1 (catch-all, priority 100) first for 10.0.0.0/8 on every name.
    let spec = "  routes:\n  - match: HostSNI(`a.example.com`)\n    priority: 10\n    \
         services: [{name: s, port: 80}]\n  - match: HostSNI(`*`) && ClientIP(`10.0.0.0/8`)\n    \
         priority: 100\n    services: [{name: s, port: 81}]\n  tls: {passthrough: true}\n";
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)));
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/t").0, "valid");
    let proxy = vhost(&dag, "a.example.com").tcp_proxy.clone().unwrap();
    assert_eq!(proxy.branches.len(), 1);
    assert!(proxy.branches[0].clusters[0].cluster.contains("/81/"));
    assert!(proxy.clusters[0].cluster.contains("/80/"));
    let any = vhost(&dag, "*").tcp_proxy.clone().unwrap();
    assert!(any.clusters.is_empty() && any.branches.len() == 1);
    // At equal priorities, Traefik's order is not defined: refused.
    let spec = "  routes:\n  - match: HostSNI(`a.example.com`)\n    priority: 10\n    \
         services: [{name: s, port: 80}]\n  - match: HostSNI(`*.example.com`)\n    \
         priority: 10\n    services: [{name: s, port: 81}]\n  tls: {passthrough: true}\n";
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)));
    let (status, description) = verdict(&dag, "IngressRouteTCP", "apps/t");
    assert_eq!(status, "invalid");
    assert!(description.contains("same priority 10"), "{description}");
}

/// review9 R3: a tenant whose TCP catch-all (or wildcard) carries what Envoy refuses evades
/// the quarantine by construction: the same push adds a *hold* chain for every name another
/// namespace holds over plain HTTP only, each blamed on that name's holder
/// (`listener_blame::owners`), so the blame spans several namespaces and nobody is
/// quarantined; the HTTPS listener stays frozen for everyone, which the quarantine was to end.
#[test]
fn review9_a_spoiled_catch_all_is_quarantined_despite_the_hold_chains_it_brings() {
    use std::sync::Arc;

    use prost::Message;

    use crate::dag::Selection;
    use crate::pipeline::InstancePipeline;
    use crate::snapshot::ChangeSet;
    use crate::xds::cache::Rejection;
    use crate::xds::resource::type_url;

    // team-b holds a.example.com over plain HTTP; team-c serves a TLS host (the HTTPS
    // listener exists and was accepted).
    let victim = base("team-b")
        + &http("team-b", "web", 2020, "Host(`a.example.com`)")
        + &base("team-c")
        + &tcp(
            "team-c",
            "c",
            2020,
            "HostSNI(`c.example.com`)",
            "{passthrough: true}",
        );
    let attacker =
        base("team-a") + &tcp("team-a", "any", 2024, "HostSNI(`*`)", "{passthrough: true}");
    let listener = |yaml: &str| https_listener(&dag_of(yaml)).encode_to_vec();
    let accepted = listener(&victim);
    let rejected = listener(&(victim.clone() + &attacker));
    let changed = crate::xds::listener_blame::changed_filter_chains(&rejected, Some(&accepted));
    assert_eq!(
        changed.iter().map(String::as_str).collect::<Vec<_>>(),
        ["*", "hold/a.example.com"]
    );

    let report = crate::source::load_sources([("fixture.yaml", (victim + &attacker).as_str())]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let snap = Arc::new(report.snapshot);
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    let mut p = InstancePipeline::new(sel.clone());
    p.update(&snap, &sel, &ChangeSet::everything(), &opts);
    let mut r = Rejection::for_test(type_url::LISTENER, &[HTTPS_LISTENER], "spoiled catch-all");
    r.changed_filter_chains = [(HTTPS_LISTENER.to_owned(), changed)].into();
    let blamed = crate::xds::attribution::rejection_owners(p.dag(), &r);
    let newly = p.quarantine_rejected(&[r]);
    assert_eq!(
        newly,
        ["traefik-tcp:team-a/any"],
        "blamed {blamed:?}: the catch-all's hold chain for team-b's name makes it two namespaces"
    );
}

/// review9 R7: `attribution::cluster_owners` reads a TCP proxy's `clusters` but not its
/// `branches` (routes with `ALPN()`/`ClientIP()`): such a cluster has no owner, so a rejection
/// of it blames nobody (`rejection_owners` is empty as soon as one changed resource has no
/// owner) and nothing is quarantined, nor is the object told in its status.
#[test]
fn review9_a_cluster_of_a_tcp_branch_is_owned_by_its_ingressroutetcp() {
    let yaml = base("team-a")
        + &tcp(
            "team-a",
            "db",
            2020,
            "HostSNI(`db.example.com`) && ALPN(`h2`)",
            "{passthrough: true}",
        );
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "team-a/db").0, "valid");
    let tcp = vhost(&dag, "db.example.com").tcp_proxy.as_ref().unwrap();
    let clusters: Vec<&str> = tcp.cluster_names().collect();
    assert!(!clusters.is_empty());
    for c in clusters {
        let owners =
            crate::xds::attribution::owners(&dag, crate::xds::resource::type_url::CLUSTER, c);
        assert_eq!(
            owners.into_iter().collect::<Vec<_>>(),
            ["traefik-tcp:team-a/db"],
            "cluster {c} (branches: {})",
            tcp.branches.len()
        );
    }
}
