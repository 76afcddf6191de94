//! Host ownership over time: an edit that makes an old root claim a name another root holds
//! does not take the name (the claim is dated from the edit, not from the object's creation).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::{IncrementalDag, Selection, Validity, build, build_aged};
use crate::api::traefik::decode;
use crate::snapshot::{ChangeSet, ClusterSnapshot, Object};

/// A Contour root `ns/name` for `fqdn`, created at `created`.
pub(super) fn contour_root(ns: &str, name: &str, created: &str, fqdn: &str) -> Object {
    Object::IngressRoute(
        serde_json::from_value(json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
            "spec": {"virtualhost": {"fqdn": fqdn}, "routes": []},
        }))
        .unwrap(),
    )
}

/// A Traefik IngressRoute `ns/name` matching `rule`, created at `created`.
pub(super) fn traefik_route(ns: &str, name: &str, created: &str, rule: &str) -> Object {
    let v: Value = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
        "spec": {"routes": [{"match": rule, "kind": "Rule",
                             "services": [{"name": "web", "port": 80}]}]},
    });
    Object::TraefikRoute(decode(v).unwrap())
}

pub(super) const OLD: &str = "2024-01-01T00:00:00Z";
pub(super) const NEW: &str = "2025-06-01T00:00:00Z";

/// Applies `objects` to `snap` and updates `inc`; returns the DAG's statuses by `ns/name`
/// (Contour and Traefik), checking the incremental DAG against a full build with its dates.
pub(super) fn step(
    inc: &mut IncrementalDag,
    snap: &mut ClusterSnapshot,
    objects: Vec<Object>,
) -> Vec<(String, Validity, String)> {
    let old = snap.clone();
    for o in objects {
        snap.apply(o);
    }
    let sel = Selection::default_instance();
    inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::diff(&old, snap));
    assert_eq!(*inc.dag(), build_aged(snap, &sel, inc.claim_ages()));
    let dag = inc.dag();
    dag.statuses
        .iter()
        .map(|s| {
            let key = format!("{}/{}", s.namespace, s.name);
            (key, s.current_status, s.description.clone())
        })
        .chain(dag.object_statuses.iter().map(|s| {
            let key = format!("{}/{}", s.namespace, s.name);
            (key, s.current_status, s.description.clone())
        }))
        .collect()
}

pub(super) fn verdict(statuses: &[(String, Validity, String)], key: &str) -> (Validity, String) {
    statuses
        .iter()
        .find(|(k, ..)| k == key)
        .map(|(_, v, d)| (*v, d.clone()))
        .unwrap_or_else(|| panic!("no status for {key}: {statuses:?}"))
}

pub(super) fn owner(inc: &IncrementalDag, fqdn: &str) -> String {
    let vh = inc.dag().virtual_hosts.iter().find(|v| v.fqdn == fqdn);
    vh.map_or_else(String::new, |v| v.owner.clone())
}

#[test]
fn an_old_contour_root_edited_to_claim_a_held_host_does_not_take_it() {
    let sel = Selection::default_instance();
    let mut inc = IncrementalDag::new(sel);
    let mut snap = ClusterSnapshot::default();
    step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("victim", "site", NEW, "h.example.com"),
            contour_root("evil", "old", OLD, "mine.example.com"),
        ],
    );
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");

    // The year-older root is edited to claim the victim's name.
    let s = step(
        &mut inc,
        &mut snap,
        vec![contour_root("evil", "old", OLD, "h.example.com")],
    );
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    assert_eq!(verdict(&s, "victim/site").0, Validity::Valid, "{s:?}");
    let (v, d) = verdict(&s, "evil/old");
    assert_eq!(v, Validity::Invalid);
    assert!(
        d.contains("already used by the older IngressRoute victim/site"),
        "{d}"
    );
    // A full build knowing nothing of the history orders by creation: the attack would win.
    assert_eq!(
        build(&snap, &Selection::default_instance())
            .virtual_hosts
            .iter()
            .find(|v| v.fqdn == "h.example.com")
            .map(|v| v.owner.clone()),
        Some("evil/old".to_owned())
    );

    // Once the holder lets the name go, the waiting claimant gets it.
    step(
        &mut inc,
        &mut snap,
        vec![contour_root("victim", "site", NEW, "other.example.com")],
    );
    assert_eq!(owner(&inc, "h.example.com"), "evil/old");
    // And the holder coming back is now the younger claim.
    let s = step(
        &mut inc,
        &mut snap,
        vec![contour_root("victim", "site", NEW, "h.example.com")],
    );
    assert_eq!(owner(&inc, "h.example.com"), "evil/old");
    assert_eq!(verdict(&s, "victim/site").0, Validity::Invalid);
}

#[test]
fn an_old_traefik_route_edited_to_a_wildcard_or_a_held_host_takes_nothing() {
    let sel = Selection::default_instance();
    let mut inc = IncrementalDag::new(sel);
    let mut snap = ClusterSnapshot::default();
    step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("victim", "site", NEW, "h.example.com"),
            traefik_route("evil", "old", OLD, "Host(`mine.example.com`)"),
        ],
    );
    // A wildcard over the victim's name: the victim keeps its own name, the wildcard the rest.
    let s = step(
        &mut inc,
        &mut snap,
        vec![traefik_route("evil", "old", OLD, "Host(`*.example.com`)")],
    );
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    assert_eq!(verdict(&s, "victim/site").0, Validity::Valid, "{s:?}");
    // The exact name itself.
    let s = step(
        &mut inc,
        &mut snap,
        vec![traefik_route(
            "evil",
            "old",
            OLD,
            "Host(`h.example.com`) || Host(`mine.example.com`)",
        )],
    );
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    assert_eq!(verdict(&s, "victim/site").0, Validity::Valid, "{s:?}");
    let (v, d) = verdict(&s, "evil/old");
    assert_eq!(v, Validity::Invalid);
    assert!(d.contains("h.example.com"), "{d}");
    // Its other name, claimed since the start, it keeps claiming (the route is refused whole,
    // but the name stays its own: nobody else may take it).
    let s = step(
        &mut inc,
        &mut snap,
        vec![contour_root("victim", "second", NEW, "mine.example.com")],
    );
    let (v, d) = verdict(&s, "victim/second");
    assert_eq!(v, Validity::Invalid, "{d}");
}

/// After a restart the dates are gone, but a Contour root whose status says it lost the name
/// keeps losing it to the root that held it, older or not.
#[test]
fn a_restart_keeps_a_contour_root_that_lost_a_name_behind() {
    let mut evil: Value = json!({
        "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
        "metadata": {"namespace": "evil", "name": "old", "creationTimestamp": OLD},
        "spec": {"virtualhost": {"fqdn": "h.example.com"}, "routes": []},
        "status": {"currentStatus": "invalid",
                   "description": "fqdn \"h.example.com\" is already used by the older IngressRoute victim/site"},
    });
    let sel = Selection::default_instance();
    let mut inc = IncrementalDag::new(sel);
    let mut snap = ClusterSnapshot::default();
    let s = step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("victim", "site", NEW, "h.example.com"),
            Object::IngressRoute(serde_json::from_value(evil.clone()).unwrap()),
        ],
    );
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    assert_eq!(verdict(&s, "evil/old").0, Validity::Invalid);

    // Without that status (it never lost the name), the older root holds it.
    evil["status"] = json!({"currentStatus": "valid", "description": "valid IngressRoute"});
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("victim", "site", NEW, "h.example.com"),
            Object::IngressRoute(serde_json::from_value(evil).unwrap()),
        ],
    );
    assert_eq!(owner(&inc, "h.example.com"), "evil/old");
}
