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
    world_child(&to_svc("/api", "api"), extra)
}

/// [`world`] with the delegated child's routes.
fn world_child(child_routes: &str, extra: &str) -> ClusterSnapshot {
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
        child("apis", "api", child_routes),
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
fn a_quarantine_ends_when_what_it_read_changes() {
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

    // Objects it does not read change, in its namespace or another (Services never count:
    // pods come and go): still quarantined.
    let other = world(&(svc("team", "more", 81) + &svc("apis", "more", 81)));
    update(&mut inc, &snap, &other);
    assert_eq!(status(inc.dag(), "apis/api").0, "invalid");
    let moved = world(&(svc("team", "more", 81) + &svc("apis", "more", 82)));
    update_with(&mut inc, &moved, &ChangeSet::everything());
    assert_eq!(status(inc.dag(), "apis/api").0, "invalid");
    // A status alone does not count.
    let mut statuses = ChangeSet::default();
    statuses.insert_status(Kind::IngressRoute, ObjKey::new("apis", "api"));
    update_with(&mut inc, &moved, &statuses);
    assert_eq!(status(inc.dag(), "apis/api").0, "invalid");
    // The object itself changes: tried again.
    let edited = world_child(
        &to_svc("/api/v2", "api"),
        &(svc("team", "more", 81) + &svc("apis", "more", 82)),
    );
    update(&mut inc, &moved, &edited);
    assert_eq!(status(inc.dag(), "apis/api").0, "valid");
    assert!(inc.quarantined().is_empty());
    assert_eq!(
        route_owners(&inc, "t.example.com"),
        ["apis/api", "team/root"]
    );
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

// ---- review9: hostile review of the quarantine ----

/// review9 R1: the pass that takes in a rejection must not lift the quarantine it has just set
/// because its change set holds churn of the namespace (a Service, a pod's EndpointSlice):
/// the object would be sent again each pass, and the shared listener stay frozen.
#[test]
fn review9_a_quarantine_is_not_lifted_by_the_changes_of_the_pass_that_sets_it() {
    let world = |pass: i32| {
        [
            tls_root("victim", "site", "v.example.com"),
            tls_root("evil", "a", "a.evil.example"),
            backing(&["victim", "evil"]),
            svc("evil", "churn", 81 + pass),
        ]
        .concat()
    };
    let snap = Arc::new(snapshot(&world(0)));
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    let mut p = InstancePipeline::new(sel.clone());
    p.update(&snap, &sel, &ChangeSet::everything(), &opts);
    let mut before = snap.clone();
    for pass in 1..4 {
        // The tenant's namespace churns between passes.
        let churned = Arc::new(snapshot(&world(pass)));
        let one = Rejection::for_test_https(&["a.evil.example"], "spoiled chain");
        let newly = p.quarantine_rejected(&[one]);
        assert_eq!(
            newly.len(),
            usize::from(pass == 1),
            "pass {pass}: {newly:?}"
        );
        p.update(&churned, &sel, &ChangeSet::diff(&before, &churned), &opts);
        before = churned;
        assert_eq!(status(p.dag(), "evil/a").0, "invalid", "pass {pass}");
    }
}

/// A TLS root of `team` delegating `/api` to a child of the `apis` namespace.
fn tls_world(child_routes: &str) -> ClusterSnapshot {
    let yaml = [
        root(
            "team",
            "root",
            "t.example.com",
            &(to_svc("/", "web") + &to_delegate("/api", "api", Some("apis"))),
        )
        .replace(
            "virtualhost: {fqdn: t.example.com}",
            "virtualhost: {fqdn: t.example.com, tls: {secretName: s}}",
        ),
        tls_secret("team", "s"),
        svc("team", "web", 80),
        child("apis", "api", child_routes),
        svc("apis", "api", 80),
        svc("apis", "api2", 80),
    ]
    .concat();
    snapshot(&yaml)
}

/// review9 R2: a TLS virtual host's route configuration holds the routes of children of other
/// namespaces, but a rejection of it is blamed on the root alone (`attribution::owners`,
/// ROUTE: the virtual host's owner), so it counts as "one namespace" and the root is
/// quarantined: a delegated child in another namespace (whose spoiled route value is what
/// Envoy refused) takes the whole host off the Gateway, TLS chain and every other team's
/// routes included, where before the host kept its last accepted routes.
#[test]
fn review9_a_rejected_tls_route_config_holding_another_namespaces_routes_quarantines_nobody() {
    let snap = Arc::new(tls_world(&to_svc("/api", "api")));
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    let mut p = InstancePipeline::new(sel.clone());
    p.update(&snap, &sel, &ChangeSet::everything(), &opts);
    let vh = (p.dag().virtual_hosts.iter())
        .find(|v| v.fqdn == "t.example.com")
        .unwrap();
    assert!(vh.tls.is_some());
    let owners: std::collections::BTreeSet<&str> =
        vh.routes.iter().map(|r| r.owner.as_str()).collect();
    assert!(owners.contains("apis/api"), "{owners:?}");
    let route_config = crate::xds::translate::https_route_config_name("t.example.com");
    let r = Rejection::for_test(
        type_url::ROUTE,
        &[&route_config],
        "route /api: invalid header value (the child's)",
    );
    let newly = p.quarantine_rejected(&[r]);
    assert!(
        newly.is_empty(),
        "a route configuration holding routes of `apis` quarantined {newly:?} of `team`"
    );
}

/// review9 R2b: once the root is quarantined for its child's route, the child's own fix (the
/// culprit's namespace changes) does not end it; only a change in the root's namespace does.
/// README: "Any change of an object of its namespace (the object, or a Service, Secret or
/// Middleware it may read) ends the quarantine": objects it reads in other namespaces (a
/// delegated child, a delegated TLS Secret, a Traefik cross-namespace Service or Middleware)
/// never do.
#[test]
fn review9_the_culprits_fix_in_another_namespace_ends_the_quarantine_it_caused() {
    let sel = Selection::default_instance();
    let snap = tls_world(&to_svc("/api", "api"));
    let mut inc = IncrementalDag::new(sel.clone());
    update_with(&mut inc, &snap, &ChangeSet::everything());
    // What the pipeline quarantines for a rejected `https/t.example.com` on main.
    inc.quarantine(
        "team/root",
        super::quarantine::description("child's bad route"),
    );
    update_with(&mut inc, &snap, &ChangeSet::default());
    assert_eq!(status(inc.dag(), "team/root").0, "invalid");
    // The child (the route Envoy refused) is fixed in its namespace.
    let fixed = tls_world(&to_svc("/api", "api2"));
    update(&mut inc, &snap, &fixed);
    assert_eq!(
        status(inc.dag(), "team/root").0,
        "valid",
        "the culprit fixed its route in `apis`, the root of `team` stays quarantined"
    );
}

/// review9 R4: a rejection that would quarantine more than the cap of one namespace
/// quarantines none (a part of them would leave the listener rejected all the same), and the
/// cap is per namespace: one tenant's quarantines never use up another's.
#[test]
fn review9_a_rejection_blamed_on_more_than_the_cap_quarantines_none() {
    let n = super::quarantine::MAX_QUARANTINED + 1;
    let mut yaml = tls_root("victim", "site", "v.example.com") + &backing(&["victim", "evil"]);
    let hosts: Vec<String> = (0..n).map(|i| format!("h{i}.evil.example")).collect();
    for (i, host) in hosts.iter().enumerate() {
        yaml += &tls_root("evil", &format!("r{i}"), host);
    }
    let snap = Arc::new(snapshot(&yaml));
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    let mut p = InstancePipeline::new(sel.clone());
    p.update(&snap, &sel, &ChangeSet::everything(), &opts);
    let chains: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let all = Rejection::for_test_https(&chains, "spoiled chains");
    assert!(p.quarantine_rejected(&[all]).is_empty());
    // Up to the cap they are quarantined; then the victim's own is still possible.
    let most = Rejection::for_test_https(&chains[..n - 1], "spoiled chains");
    assert_eq!(p.quarantine_rejected(&[most]).len(), n - 1);
    let one_more = Rejection::for_test_https(&chains[n - 1..], "spoiled chain");
    assert!(p.quarantine_rejected(&[one_more]).is_empty());
    let victim = Rejection::for_test_https(&["v.example.com"], "spoiled chain");
    assert_eq!(p.quarantine_rejected(&[victim]), ["victim/site"]);
}

/// review9 R6: the Gateway's own status (Envoy counts, route counts, `Degraded` with reason
/// `EnvoyRejectedConfiguration`) comes back as a change of the Gateway object, and the
/// Gateway is an object of its namespace: every status write lifts the quarantine of the
/// objects in the Gateway's namespace (roots kept beside the Gateway, as `rootNamespaces`
/// setups do). A rejection sets `Degraded`, the quarantine changes the route counts, its
/// success clears `Degraded`: each write ends the quarantine, the object is tried again and
/// rejected again, with no tenant acting. The module says statuses alone do not count.
#[test]
fn review9_the_gateways_own_status_does_not_end_a_quarantine_in_its_namespace() {
    use crate::snapshot::{LiveSnapshot, SharedObject};

    let yaml = "---\napiVersion: sluice.dev/v1alpha1\nkind: Gateway\n\
                metadata: {name: gw, namespace: edge}\nspec: {}\n"
        .to_owned()
        + &root("edge", "site", "h.example.com", &to_svc("/", "web"))
        + &svc("edge", "web", 80);
    let mut live = LiveSnapshot::from_snapshot(snapshot(&yaml));
    let key = ObjKey::new("edge", "gw");
    let gw = live.snapshot().gateways.get(&key).unwrap().clone();
    let sel = Selection::from_gateway(&gw);
    let mut inc = IncrementalDag::new(sel.clone());
    let (snap, changes) = live.take();
    inc.update(&snap, &sel, &changes);
    assert_eq!(status(inc.dag(), "edge/site").0, "valid");
    inc.quarantine(
        "edge/site",
        super::quarantine::description("bad filter chain"),
    );
    let (snap, changes) = live.take();
    inc.update(&snap, &sel, &changes);
    assert_eq!(status(inc.dag(), "edge/site").0, "invalid");

    // The Gateway controller writes the Gateway's status (the route counts changed).
    let mut written = (*gw).clone();
    let mut status_now = written.status.clone().unwrap_or_default();
    status_now.valid_routes = Some("0/1".into());
    written.status = Some(status_now);
    written.metadata.resource_version = Some("2".into());
    assert!(live.upsert(SharedObject::Gateway(Arc::new(written))));
    let (snap, changes) = live.take();
    inc.update(&snap, &sel, &changes);
    assert_eq!(
        status(inc.dag(), "edge/site").0,
        "invalid",
        "a status write on the Gateway ended the quarantine of edge/site"
    );
}
