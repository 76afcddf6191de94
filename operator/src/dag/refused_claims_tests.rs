//! A root refused while parsing keeps a dated place in each name its rules name: while it is
//! the oldest claimant it holds the name unserved, younger claimants are refused naming it as
//! invalid, and neither a restart nor a version that serves its rule changes the holder.
#![allow(clippy::unwrap_used, clippy::panic)]

use serde_json::{Value, json};

use super::claim_ages_tests::{NEW, OLD, contour_root, owner, step, traefik_route, verdict};
use super::claim_record_tests::{BUDGET, restart};
use super::{IncrementalDag, Selection, Validity};
use crate::api::traefik::decode;
use crate::snapshot::{ClusterSnapshot, Object};

const H: &str = "api.example.com";
/// A rule this version refuses (a matcher it does not serve) naming `H`.
const REFUSED: &str = "Host(`api.example.com`) && SomeFutureMatcher(`x`)";
/// What a later version serving that matcher would parse: the same host.
const SERVED: &str = "Host(`api.example.com`)";

fn tcp_route(ns: &str, name: &str, created: &str, rule: &str) -> Object {
    let v: Value = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP",
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
        "spec": {"routes": [{"match": rule, "services": [{"name": "db", "port": 5432}]}],
                 "tls": {"passthrough": true}},
    });
    Object::TraefikTcpRoute(decode(v).unwrap())
}

/// The Services the routes name, in namespaces `a` and `b`.
fn services() -> Vec<Object> {
    let mut out = Vec::new();
    for ns in ["a", "b"] {
        for (name, port) in [("web", 80), ("db", 5432)] {
            let svc = json!({"metadata": {"namespace": ns, "name": name},
                             "spec": {"ports": [{"port": port}]}});
            out.push(Object::Service(serde_json::from_value(svc).unwrap()));
        }
    }
    out
}

fn start() -> (IncrementalDag, ClusterSnapshot) {
    let mut snap = ClusterSnapshot::default();
    for o in services() {
        snap.apply(o);
    }
    (IncrementalDag::new(Selection::default_instance()), snap)
}

fn served_by(inc: &IncrementalDag, fqdn: &str) -> Option<String> {
    let vh = inc.dag().virtual_hosts.iter().find(|v| v.fqdn == fqdn);
    vh.filter(|v| !v.routes.is_empty() || v.tcp_proxy.is_some())
        .map(|v| v.owner.clone())
}

/// The 2024 object refused by this version, then tenant B's 2025 object on the same host.
fn contest(younger: Object) -> (IncrementalDag, ClusterSnapshot) {
    let (mut inc, mut snap) = start();
    let s = step(
        &mut inc,
        &mut snap,
        vec![traefik_route("a", "old", OLD, REFUSED)],
    );
    let (v, d) = verdict(&s, "a/old");
    assert_eq!(v, Validity::Invalid);
    assert!(d.contains("SomeFutureMatcher"), "{d}");
    let s = step(&mut inc, &mut snap, vec![younger]);
    let (v, d) = verdict(&s, "b/new");
    assert_eq!(v, Validity::Invalid, "{s:?}");
    assert!(
        d.contains("Traefik IngressRoute a/old, which is invalid"),
        "the message names the holder and says it is invalid: {d}"
    );
    assert_eq!(served_by(&inc, H), None, "nobody serves the held name");
    (inc, snap)
}

#[test]
fn an_older_refused_root_holds_the_name_and_a_later_version_keeps_it() {
    for younger in [
        traefik_route("b", "new", NEW, SERVED),
        contour_root("b", "new", NEW, H),
    ] {
        let younger_owner = match &younger {
            Object::TraefikRoute(_) => "traefik:b/new",
            _ => "b/new",
        };
        let (inc, mut snap) = contest(younger);
        let (record, _) = inc.claim_record(BUDGET).unwrap();
        // A restart of this version with the record: the same.
        let after = restart(&snap, Some(&record));
        assert_eq!(*after.dag(), *inc.dag(), "record {record:?}");
        // Without it (lost, or the upgrade from a version that did not record refused roots),
        // a refused root goes behind the one serving: review 4 F2.1.
        let after = restart(&snap, None);
        assert_eq!(owner(&after, H), younger_owner);
        // A later version that serves the rule: the old object serves the name it held,
        // the younger one stays refused (no silent change of holder).
        snap.apply(traefik_route("a", "old", OLD, SERVED));
        for r in [Some(&record), None] {
            let after = restart(&snap, r);
            assert_eq!(served_by(&after, H).as_deref(), Some("traefik:a/old"));
        }
    }
}

/// Review 4 F2.1: the upgrade from a version under which a refused root claimed nothing (so
/// nothing was recorded): an old object edited to a refused rule naming another tenant's host,
/// or a wildcard over it, must not take it at the first build by its creation time.
#[test]
fn at_a_first_start_without_a_record_refused_roots_go_behind_served_ones() {
    for refused in [REFUSED, "Host(`*.example.com`) && SomeFutureMatcher(`x`)"] {
        let mut snap = ClusterSnapshot::default();
        for o in services() {
            snap.apply(o);
        }
        snap.apply(traefik_route("b", "new", NEW, SERVED));
        snap.apply(traefik_route("a", "old", OLD, refused));
        snap.apply(contour_root("c", "other", NEW, "other.example.com"));
        let first = restart(&snap, None);
        assert_eq!(
            served_by(&first, H).as_deref(),
            Some("traefik:b/new"),
            "{refused}"
        );
        assert_eq!(owner(&first, "other.example.com"), "c/other", "{refused}");
        // And the record that process writes keeps it so at the next start.
        let (record, _) = first.claim_record(BUDGET).unwrap();
        let next = restart(&snap, Some(&record));
        assert_eq!(*next.dag(), *first.dag(), "{refused}: {record:?}");
    }
}

/// Review 4 F2.3: a served wildcard the record holds still covers an unrecorded refused
/// claim on a name under it at a start with that record.
#[test]
fn a_recorded_wildcard_keeps_a_refused_name_under_it_behind() {
    let (mut inc, mut snap) = start();
    let wildcard = "Host(`*.example.com`)";
    step(
        &mut inc,
        &mut snap,
        vec![
            traefik_route("b", "new", NEW, wildcard),
            traefik_route("c", "older", OLD, "Host(`c.example.org`)"),
        ],
    );
    // An older object edited to claim the wildcard: a contest, so the wildcard is recorded.
    step(
        &mut inc,
        &mut snap,
        vec![traefik_route("c", "older", OLD, wildcard)],
    );
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    assert!(record.names.contains_key("*.example.com"), "{record:?}");
    assert!(!record.names.contains_key(H), "{record:?}");
    // While no process runs, an old object is edited to a refused rule under the wildcard.
    snap.apply(traefik_route("a", "old", OLD, REFUSED));
    let after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "*.example.com"), "traefik:b/new");
    assert_eq!(owner(&after, H), "", "the wildcard covers it");
}

#[test]
fn a_younger_claim_made_while_the_old_object_was_refused_never_gets_the_name() {
    // B serves first; the 2024 object is then edited to a refused rule naming B's host: it is
    // a younger claim (dated at the edit), so B keeps serving, now and after a restart, and
    // when a later version serves the old object's rule.
    let (mut inc, mut snap) = start();
    step(
        &mut inc,
        &mut snap,
        vec![
            traefik_route("a", "old", OLD, "Host(`mine.example.com`)"),
            traefik_route("b", "new", NEW, SERVED),
        ],
    );
    let s = step(
        &mut inc,
        &mut snap,
        vec![traefik_route("a", "old", OLD, REFUSED)],
    );
    assert_eq!(
        served_by(&inc, H).as_deref(),
        Some("traefik:b/new"),
        "{s:?}"
    );
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    assert!(record.names.contains_key(H), "{record:?}");
    snap.apply(traefik_route("a", "old", OLD, SERVED));
    let after = restart(&snap, Some(&record));
    assert_eq!(served_by(&after, H).as_deref(), Some("traefik:b/new"));
    assert_eq!(owner(&after, "mine.example.com"), "");
}

#[test]
fn a_refused_ingress_route_tcp_holds_its_sni_names() {
    let (inc, snap) = {
        let (mut inc, mut snap) = start();
        step(
            &mut inc,
            &mut snap,
            vec![tcp_route(
                "a",
                "old",
                OLD,
                "HostSNI(`api.example.com`) && SomeFutureTcpMatcher(`x`)",
            )],
        );
        let s = step(
            &mut inc,
            &mut snap,
            vec![tcp_route("b", "new", NEW, "HostSNI(`api.example.com`)")],
        );
        let (v, d) = verdict(&s, "b/new");
        assert_eq!(v, Validity::Invalid, "{s:?}");
        assert!(
            d.contains("Traefik IngressRouteTCP a/old, which is invalid"),
            "{d}"
        );
        (inc, snap)
    };
    assert_eq!(served_by(&inc, H), None);
    let after = restart(&snap, inc.claim_record(BUDGET).map(|r| r.0).as_ref());
    assert_eq!(*after.dag(), *inc.dag());
}

#[test]
fn a_rule_that_does_not_parse_claims_nothing() {
    let (mut inc, mut snap) = start();
    let s = step(
        &mut inc,
        &mut snap,
        vec![
            traefik_route("a", "old", OLD, "Host(`api.example.com` && Future("),
            traefik_route("b", "new", NEW, SERVED),
        ],
    );
    assert_eq!(verdict(&s, "b/new").0, Validity::Valid, "{s:?}");
    assert_eq!(served_by(&inc, H).as_deref(), Some("traefik:b/new"));
}
