//! Quarantine: objects an Envoy rejected the configuration of are built as invalid, keep their
//! names, and come back when their namespace changes; the pipeline quarantines only what one
//! namespace is to blame for.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::Listener;
use prost::Message;

use super::tests::{child, root, snapshot, status, svc, tls_secret, to_delegate, to_svc};
use super::{IncrementalDag, Selection, build_quarantined};
use crate::pipeline::InstancePipeline;
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey};
use crate::xds::cache::Rejection;
use crate::xds::resource::type_url;
use crate::xds::translate::{HTTPS_LISTENER, TranslateOptions};

const REJECTED: &str = "Envoy rejected the configuration made from this object";

/// Brings `inc` to `snap` from `old` and checks it against a full build with its quarantine.
fn update(inc: &mut IncrementalDag, old: &ClusterSnapshot, snap: &ClusterSnapshot) {
    update_with(inc, snap, &ChangeSet::diff(old, snap));
}

fn update_with(inc: &mut IncrementalDag, snap: &ClusterSnapshot, changes: &ChangeSet) {
    let sel = Selection::default_instance();
    inc.update(&Arc::new(snap.clone()), &sel, changes);
    let want = build_quarantined(snap, &sel, inc.claim_ages(), inc.quarantined());
    assert_eq!(*inc.dag(), want, "incremental differs from a full build");
}

fn world(extra: &str) -> ClusterSnapshot {
    let yaml = [
        root("victim", "site", "h.example.com", &to_svc("/", "web")).replace(
            "namespace: victim}",
            "namespace: victim, creationTimestamp: \"2020-01-01T00:00:00Z\"}",
        ),
        svc("victim", "web", 80),
        root(
            "team",
            "root",
            "t.example.com",
            &(to_svc("/", "web") + &to_delegate("/api", "api", Some("apis"))),
        ),
        svc("team", "web", 80),
        child("apis", "api", &to_svc("/api", "api")),
        svc("apis", "api", 80),
        extra.to_owned(),
    ]
    .concat();
    snapshot(&yaml)
}

/// The owners of `fqdn`'s routes, in route order.
fn route_owners(inc: &IncrementalDag, fqdn: &str) -> Vec<String> {
    let vh = inc.dag().virtual_hosts.iter().find(|v| v.fqdn == fqdn);
    let routes = vh.map(|vh| &vh.routes[..]).unwrap_or_default();
    routes.iter().map(|r| r.owner.clone()).collect()
}

#[test]
fn a_quarantined_root_serves_nothing_and_keeps_its_name() {
    // A younger root of another namespace contests the victim's name.
    let contest = root("evil", "late", "h.example.com", &to_svc("/", "web")).replace(
        "namespace: evil}",
        "namespace: evil, creationTimestamp: \"2030-01-01T00:00:00Z\"}",
    ) + &svc("evil", "web", 80);
    let snap = world(&contest);
    let mut inc = IncrementalDag::new(Selection::default_instance());
    update_with(&mut inc, &snap, &ChangeSet::everything());
    assert_eq!(
        status(inc.dag(), "victim/site"),
        ("valid", "valid IngressRoute")
    );
    assert_eq!(status(inc.dag(), "evil/late").0, "invalid");

    assert!(inc.quarantine(
        "victim/site",
        super::quarantine::description("bad filter chain")
    ));
    // Twice is nothing new.
    assert!(!inc.quarantine(
        "victim/site",
        super::quarantine::description("bad filter chain")
    ));
    update_with(&mut inc, &snap, &ChangeSet::default());
    let (v, d) = status(inc.dag(), "victim/site");
    assert_eq!(v, "invalid");
    assert!(
        d.starts_with(REJECTED) && d.ends_with("bad filter chain"),
        "{d}"
    );
    // Nothing of it is served; the younger claimant does not get the name.
    let served = inc
        .dag()
        .virtual_hosts
        .iter()
        .find(|vh| vh.fqdn == "h.example.com");
    assert!(served.is_none_or(|vh| vh.routes.is_empty()), "{served:?}");
    let (v, d) = status(inc.dag(), "evil/late");
    assert_eq!(v, "invalid");
    assert!(d.contains("victim/site"), "{d}");
    // Other roots are untouched.
    assert_eq!(status(inc.dag(), "team/root").0, "valid");
}

#[test]
fn a_quarantine_ends_with_a_change_in_its_namespace_only() {
    let snap = world("");
    let mut inc = IncrementalDag::new(Selection::default_instance());
    update_with(&mut inc, &snap, &ChangeSet::everything());
    inc.quarantine("apis/api", super::quarantine::description("bad cluster"));
    update_with(&mut inc, &snap, &ChangeSet::default());
    // The delegated child is invalid and its routes are gone; its parent serves the rest.
    let (v, d) = status(inc.dag(), "apis/api");
    assert_eq!(v, "invalid");
    assert!(d.starts_with(REJECTED), "{d}");
    assert_eq!(status(inc.dag(), "team/root").0, "valid");
    assert_eq!(route_owners(&inc, "t.example.com"), ["team/root"]);

    // Another namespace's objects change: still quarantined.
    let other = world(&svc("team", "more", 81));
    update(&mut inc, &snap, &other);
    assert_eq!(status(inc.dag(), "apis/api").0, "invalid");
    // A status alone does not count.
    let mut statuses = ChangeSet::default();
    statuses.insert_status(Kind::IngressRoute, ObjKey::new("apis", "api"));
    update_with(&mut inc, &other, &statuses);
    assert_eq!(status(inc.dag(), "apis/api").0, "invalid");
    // A Service of its namespace changes: tried again.
    let fixed = world(&(svc("team", "more", 81) + &svc("apis", "more", 81)));
    update(&mut inc, &other, &fixed);
    assert_eq!(status(inc.dag(), "apis/api").0, "valid");
    assert!(inc.quarantined().is_empty());
    assert_eq!(
        route_owners(&inc, "t.example.com"),
        ["apis/api", "team/root"]
    );

    // Quarantined again; a source that only knows "something changed" ends it when the
    // namespace did change.
    inc.quarantine("apis/api", super::quarantine::description("bad cluster"));
    update_with(&mut inc, &fixed, &ChangeSet::default());
    assert_eq!(status(inc.dag(), "apis/api").0, "invalid");
    update_with(&mut inc, &fixed, &ChangeSet::everything());
    assert_eq!(status(inc.dag(), "apis/api").0, "invalid");
    let edited = world(&(svc("team", "more", 81) + &svc("apis", "more", 82)));
    update_with(&mut inc, &edited, &ChangeSet::everything());
    assert_eq!(status(inc.dag(), "apis/api").0, "valid");
}

fn tls_root(ns: &str, name: &str, fqdn: &str) -> String {
    root(ns, name, fqdn, &to_svc("/", "web")).replace("{fqdn: ", "{tls: {secretName: tls}, fqdn: ")
}

/// Each namespace's Service `web` and Secret `tls`.
fn backing(namespaces: &[&str]) -> String {
    (namespaces.iter())
        .map(|ns| svc(ns, "web", 80) + &tls_secret(ns, "tls"))
        .collect()
}

/// The pipeline quarantines the owners of a rejected HTTPS listener's changed chains when
/// they are all of one namespace and some chain is someone else's.
#[test]
fn only_a_listener_rejection_one_namespace_is_to_blame_for_quarantines() {
    let yaml = [
        tls_root("victim", "site", "v.example.com"),
        tls_root("evil", "a", "a.evil.example"),
        tls_root("evil", "b", "b.evil.example"),
        backing(&["victim", "evil"]),
    ]
    .concat();
    let snap = Arc::new(snapshot(&yaml));
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    let mut p = InstancePipeline::new(sel.clone());
    p.update(&snap, &sel, &ChangeSet::everything(), &opts);
    assert_eq!(status(p.dag(), "evil/a").0, "valid");
    // Chains of two namespaces: nobody is quarantined.
    let two = Rejection::for_test_https(&["v.example.com", "a.evil.example"], "bad");
    assert!(p.quarantine_rejected(&[two]).is_empty());
    // Another resource than the HTTPS listener is held back alone by the cache: no quarantine.
    let cluster = (p.dag().clusters.iter())
        .find(|c| c.name.contains("evil"))
        .unwrap()
        .name
        .clone();
    let cluster = Rejection::for_test(type_url::CLUSTER, &[&cluster], "bad");
    assert!(p.quarantine_rejected(&[cluster]).is_empty());
    // A chain nobody owns: nobody either.
    let unknown = Rejection::for_test_https(&["a.evil.example", "nobody.example"], "bad");
    assert!(p.quarantine_rejected(&[unknown]).is_empty());
    // One namespace's chains: its objects are quarantined and left out of the next listener.
    let one = Rejection::for_test_https(&["a.evil.example", "b.evil.example"], "bad chain");
    assert_eq!(p.quarantine_rejected(&[one]), ["evil/a", "evil/b"]);
    let built = p.update(&snap, &sel, &ChangeSet::default(), &opts);
    let resources = built.resources.unwrap().unwrap();
    let listener = &resources.by_type()[type_url::LISTENER][HTTPS_LISTENER];
    let listener = Listener::decode(listener.value()).unwrap();
    let names: Vec<&str> = listener
        .filter_chains
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert!(names.contains(&"v.example.com"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("evil")), "{names:?}");
    for key in ["evil/a", "evil/b"] {
        let (v, d) = status(p.dag(), key);
        assert_eq!(v, "invalid");
        assert!(d.ends_with("bad chain"), "{d}");
    }
    assert_eq!(status(p.dag(), "victim/site").0, "valid");
}

/// When every chain of the listener is blamed (one team's Gateway, or a Sluice upgrade that
/// changes every chain), nothing is quarantined: the last accepted listener serves them.
#[test]
fn a_listener_rejection_blaming_every_chain_quarantines_nothing() {
    let yaml = [
        tls_root("team", "a", "a.team.example"),
        tls_root("team", "b", "b.team.example"),
        backing(&["team"]),
    ]
    .concat();
    let snap = Arc::new(snapshot(&yaml));
    let sel = Selection::default_instance();
    let mut p = InstancePipeline::new(sel.clone());
    p.update(
        &snap,
        &sel,
        &ChangeSet::everything(),
        &TranslateOptions::default(),
    );
    let all = Rejection::for_test_https(&["a.team.example", "b.team.example"], "bad");
    assert!(p.quarantine_rejected(&[all]).is_empty());
    let one = Rejection::for_test_https(&["a.team.example"], "bad");
    assert_eq!(p.quarantine_rejected(&[one]), ["team/a"]);
}
