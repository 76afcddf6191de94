//! Catch-all and wildcard hosts: who holds them, which routes go where, and what an owned
//! name keeps from them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::dag::model::*;
use crate::dag::{Selection, build};

fn dag_of(yaml: &str) -> Dag {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    build(&report.snapshot, &Selection::default_instance())
}

fn svc(ns: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: {ns}}}\n\
         spec:\n  ports: [{{port: 80, name: http}}]\n"
    )
}

/// A Traefik IngressRoute `ns/name` created in `year`, one route per rule, all to Service `s`.
fn traefik(ns: &str, name: &str, year: u32, rules: &[&str]) -> String {
    let routes: String = rules
        .iter()
        .map(|r| format!("  - match: '{r}'\n    services: [{{name: s, port: 80}}]\n"))
        .collect();
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: {name}\n  \
         namespace: {ns}\n  creationTimestamp: \"{year}-01-01T00:00:00Z\"\nspec:\n  \
         entryPoints: [web]\n  routes:\n{routes}"
    )
}

/// A Contour root `ns/name` for `fqdn` created in `year`, routing `/` to `service`.
fn contour(ns: &str, name: &str, year: u32, fqdn: &str, service: &str) -> String {
    format!(
        "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata:\n  \
         name: {name}\n  namespace: {ns}\n  creationTimestamp: \"{year}-01-01T00:00:00Z\"\n\
         spec:\n  virtualhost: {{fqdn: {fqdn}}}\n  routes:\n  - match: /\n    \
         services: [{{name: {service}, port: 80}}]\n"
    )
}

fn status<'a>(dag: &'a Dag, key: &str, traefik: bool) -> (&'static str, &'a str) {
    let (ns, name) = key.split_once('/').unwrap();
    if traefik {
        let s = dag
            .object_statuses
            .iter()
            .find(|s| s.namespace == ns && s.name == name)
            .unwrap_or_else(|| panic!("no status for {key}"));
        (s.current_status.as_str(), s.description.as_str())
    } else {
        let s = dag
            .statuses
            .iter()
            .find(|s| s.namespace == ns && s.name == name)
            .unwrap_or_else(|| panic!("no status for {key}"));
        (s.current_status.as_str(), s.description.as_str())
    }
}

fn hosts(dag: &Dag) -> Vec<(&str, &str, usize)> {
    dag.virtual_hosts
        .iter()
        .map(|v| (v.fqdn.as_str(), v.owner.as_str(), v.routes.len()))
        .collect()
}

/// Path and priority of each route of `fqdn`.
fn routes<'a>(dag: &'a Dag, fqdn: &str) -> Vec<(&'a str, i64)> {
    let vh = dag.virtual_hosts.iter().find(|v| v.fqdn == fqdn).unwrap();
    vh.routes
        .iter()
        .map(|r| (r.prefix.as_str(), r.extra.as_ref().unwrap().priority))
        .collect()
}

#[test]
fn host_less_and_wildcard_rules_apply_to_every_host_of_their_ingressroute() {
    let rules = [
        "PathPrefix(`/all`)",
        "Host(`*.example.com`) && PathPrefix(`/w`)",
        "Host(`a.example.com`)",
        "HostRegexp(`^[a-z]+\\.test$`)",
    ];
    let dag = dag_of(&(svc("apps") + &traefik("apps", "r", 2024, &rules)));
    assert_eq!(
        status(&dag, "apps/r", true),
        ("valid", "valid IngressRoute")
    );
    assert_eq!(
        hosts(&dag),
        [
            ("*", "traefik:apps/r", 2),
            ("*.example.com", "traefik:apps/r", 3),
            ("a.example.com", "traefik:apps/r", 4),
        ]
    );
    // In each, Traefik's priority order (the rules' lengths).
    assert_eq!(routes(&dag, "*"), [("/", 28), ("/all", 18)]);
    assert_eq!(
        routes(&dag, "a.example.com"),
        [("/w", 41), ("/", 28), ("/", 21), ("/all", 18)]
    );
    // The wildcard's routes keep Traefik's one-label match; HostRegexp matches the authority.
    let w = &dag.virtual_hosts[1].routes[0]
        .extra
        .as_ref()
        .unwrap()
        .headers[0];
    assert_eq!(w.name, ":authority");
    assert!(matches!(&w.value, ValueCondition::Regex(r) if r.contains("[^.:]+")));
}

#[test]
fn an_exact_name_under_an_older_wildcard_is_refused_and_a_younger_wildcard_spares_older_names() {
    let w = traefik("team-w", "w", 2024, &["Host(`*.example.com`)"]);
    let younger = contour("team-a", "a", 2025, "a.example.com", "s")
        + &traefik("team-b", "b", 2025, &["Host(`b.example.com`)"])
        + &traefik("team-d", "d", 2025, &["Host(`x.a.example.com`)"]);
    let all = svc("team-w") + &svc("team-a") + &svc("team-b") + &svc("team-d");
    let dag = dag_of(&(all.clone() + &w + &younger));
    assert_eq!(status(&dag, "team-w/w", true).0, "valid");
    assert_eq!(
        status(&dag, "team-a/a", false),
        (
            "invalid",
            "fqdn \"a.example.com\" is covered by the wildcard host \"*.example.com\" of the \
             older Traefik IngressRoute team-w/w"
        )
    );
    assert_eq!(
        status(&dag, "team-b/b", true),
        (
            "invalid",
            "host \"b.example.com\" is covered by the wildcard host \"*.example.com\" of the \
             older Traefik IngressRoute team-w/w"
        )
    );
    // Two labels under the parent: not the wildcard's (Traefik's wildcard is one label).
    assert_eq!(status(&dag, "team-d/d", true).0, "valid");
    assert_eq!(
        hosts(&dag),
        [
            ("*.example.com", "traefik:team-w/w", 1),
            ("x.a.example.com", "traefik:team-d/d", 1),
        ]
    );

    // Older exact names keep their hosts next to a younger wildcard.
    let w = traefik("team-w", "w", 2026, &["Host(`*.example.com`)"]);
    let dag = dag_of(&(all + &w + &younger));
    for (key, traefik) in [("team-w/w", true), ("team-a/a", false), ("team-b/b", true)] {
        assert_eq!(status(&dag, key, traefik).0, "valid", "{key}");
    }
    assert_eq!(
        hosts(&dag).iter().map(|h| (h.0, h.1)).collect::<Vec<_>>(),
        [
            ("*.example.com", "traefik:team-w/w"),
            ("a.example.com", "team-a/a"),
            ("b.example.com", "traefik:team-b/b"),
            ("x.a.example.com", "traefik:team-d/d"),
        ]
    );
}

#[test]
fn the_oldest_catch_all_wins_and_never_takes_a_name() {
    let dag = dag_of(
        &(svc("c1")
            + &svc("c2")
            + &svc("e")
            + &traefik("c1", "r", 2025, &["PathPrefix(`/`)"])
            + &traefik("c2", "r", 2024, &["HostRegexp(`.+`)"])
            + &traefik("e", "r", 2026, &["Host(`e.example.com`)"])),
    );
    assert_eq!(status(&dag, "c2/r", true).0, "valid");
    assert_eq!(
        status(&dag, "c1/r", true),
        (
            "invalid",
            "the catch-all host \"*\" (rules without Host()) is already used by the older \
             Traefik IngressRoute c2/r"
        )
    );
    // Younger than the catch-all, still valid: the catch-all only gets names nobody holds.
    assert_eq!(status(&dag, "e/r", true).0, "valid");
    assert_eq!(
        hosts(&dag),
        [
            ("*", "traefik:c2/r", 1),
            ("e.example.com", "traefik:e/r", 1)
        ]
    );
}

#[test]
fn an_invalid_owner_keeps_its_name_from_the_catch_all() {
    // The Contour root's Service is missing: invalid, and it keeps owning its host.
    let broken = contour("team-b", "b", 2024, "b.example.com", "missing");
    let catch_all = traefik("c", "r", 2025, &["PathPrefix(`/`)"]);
    let dag = dag_of(&(svc("c") + &broken + &catch_all));
    assert_eq!(status(&dag, "team-b/b", false).0, "invalid");
    assert_eq!(
        hosts(&dag),
        [("*", "traefik:c/r", 1), ("b.example.com", "team-b/b", 0)]
    );
    // Without an open host nothing changes: no virtual host for an invalid owner.
    let dag = dag_of(&broken);
    assert!(dag.virtual_hosts.is_empty());
}

#[test]
fn an_invalid_tcp_owner_keeps_its_name_under_its_own_kind() {
    // An IngressRouteTCP with the catch-all's namespace and name: its held name must be owned
    // as `traefik-tcp:`, or blame and Events would go to the IngressRoute.
    let tcp = "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRouteTCP\nmetadata:\n  \
               name: r\n  namespace: c\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\nspec:\n  \
               routes:\n  - match: HostSNI(`db.example.com`)\n    \
               services: [{name: missing, port: 80}]\n  tls: {passthrough: true}\n";
    let catch_all = traefik("c", "r", 2025, &["PathPrefix(`/`)"]);
    let dag = dag_of(&(svc("c") + tcp + &catch_all));
    let tcp_status = dag
        .object_statuses
        .iter()
        .find(|s| s.kind == "IngressRouteTCP")
        .unwrap();
    assert_eq!(
        tcp_status.current_status,
        Validity::Invalid,
        "{tcp_status:?}"
    );
    assert_eq!(
        hosts(&dag),
        [
            ("*", "traefik:c/r", 1),
            ("db.example.com", "traefik-tcp:c/r", 0)
        ]
    );
}
