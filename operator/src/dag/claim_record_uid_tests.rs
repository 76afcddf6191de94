//! A claimant is an object, not a name: one deleted and created again under the same
//! namespace/name (another `metadata.uid`) is a new claimant, in the running process and after
//! a restart from a record written before it was recreated.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use super::claim_ages_tests::{NEW, OLD, contour_root, owner, step, traefik_route};
use super::claim_record_tests::{BUDGET, restart, validity};
use super::{IncrementalDag, Selection, Validity};
use crate::snapshot::{ChangeSet, ClusterSnapshot, Object, SharedObject};

/// `o` with `metadata.uid` set.
fn with_uid(mut o: Object, uid: &str) -> Object {
    match &mut o {
        Object::IngressRoute(r) => r.metadata.uid = Some(uid.to_owned()),
        Object::TraefikRoute(r) => r.metadata.uid = Some(uid.to_owned()),
        other => panic!("not a root: {other:?}"),
    }
    o
}

const LATER: &str = "2026-02-01T00:00:00Z";

/// The victim holds `h.example.com`; evil's older object, edited to claim it, is refused.
fn contest() -> (IncrementalDag, ClusterSnapshot) {
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    let site = contour_root("victim", "site", NEW, "h.example.com");
    let evil = contour_root("evil", "old", OLD, "mine.example.com");
    step(
        &mut inc,
        &mut snap,
        vec![with_uid(site, "v1"), with_uid(evil, "e1")],
    );
    let evil = contour_root("evil", "old", OLD, "h.example.com");
    step(&mut inc, &mut snap, vec![with_uid(evil, "e1")]);
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    (inc, snap)
}

/// Removes `o` from `snap` and updates `inc`; `false` if it was not there.
fn delete(inc: &mut IncrementalDag, snap: &mut ClusterSnapshot, o: &Object) -> bool {
    let old = snap.clone();
    let (kind, key) = SharedObject::from(o.clone()).identity();
    if !snap.remove(kind, &key) {
        return false;
    }
    let sel = Selection::default_instance();
    inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::diff(&old, snap));
    true
}

#[test]
fn the_record_holds_each_claimants_uid() {
    let (inc, _) = contest();
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    let uids: Vec<_> = record.names["h.example.com"]
        .iter()
        .map(|c| c.uid.as_deref())
        .collect();
    assert_eq!(uids, [Some("v1"), Some("e1")]);
}

/// The holder is deleted and created again while no process watches: after a restart with the
/// record written before, the recreated object is a new claimant (behind evil's refused claim,
/// which now holds the name), as for the process that watched it happen.
#[test]
fn a_holder_recreated_while_no_process_watched_does_not_keep_its_recorded_date() {
    let (mut watched, mut snap) = contest();
    let (record, _) = watched.claim_record(BUDGET).unwrap();
    let site = with_uid(contour_root("victim", "site", LATER, "h.example.com"), "v2");
    assert!(delete(&mut watched, &mut snap, &site));
    step(&mut watched, &mut snap, vec![site]);
    assert_eq!(owner(&watched, "h.example.com"), "evil/old");

    let after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "h.example.com"), "evil/old");
    assert_eq!(validity(&after, "victim/site"), Validity::Invalid);
    assert_eq!(*after.dag(), *watched.dag());
}

/// Deleted and created again between two updates (one event batch): a new claimant too.
#[test]
fn a_holder_recreated_within_one_update_is_a_new_claimant() {
    let (mut inc, mut snap) = contest();
    let site = with_uid(contour_root("victim", "site", LATER, "h.example.com"), "v2");
    let s = step(&mut inc, &mut snap, vec![site]);
    assert_eq!(owner(&inc, "h.example.com"), "evil/old");
    assert_eq!(
        super::claim_ages_tests::verdict(&s, "victim/site").0,
        Validity::Invalid
    );
    // The same object edited (same uid) keeps its claim.
    let (mut inc, mut snap) = contest();
    let site = with_uid(contour_root("victim", "site", NEW, "h.example.com"), "v1");
    step(&mut inc, &mut snap, vec![site]);
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
}

/// Random edits and recreations of a few roots of both dialects over a few names: a process
/// that sees a recreation within one update builds what a process that sees the deletion and
/// the creation apart builds, and a restart with the record builds it too.
#[test]
fn a_recreation_in_one_update_or_two_and_after_a_restart_builds_the_same() {
    let hosts = ["h1.ex.com", "h2.ex.com", "a.h1.ex.com", "*.ex.com"];
    let created = [OLD, NEW, "2023-03-03T00:00:00Z"];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % n as u64).unwrap()
    };
    let mut recreations = 0;
    for _run in 0..30 {
        let sel = Selection::default_instance();
        let (mut one, mut two) = (IncrementalDag::new(sel.clone()), IncrementalDag::new(sel));
        let (mut snap_one, mut snap_two) = (ClusterSnapshot::default(), ClusterSnapshot::default());
        let mut generation = std::collections::BTreeMap::<String, usize>::new();
        for step_no in 0..12 {
            let mut objects = Vec::new();
            let mut recreated = Vec::new();
            for _ in 0..1 + next(2) {
                let name = format!("r{}", next(4));
                let ns = ["a", "b"][next(2)];
                let when = created[next(created.len())];
                let host = hosts[next(hosts.len())];
                let traefik = next(2) == 0 || host.starts_with('*');
                let name = if traefik { format!("t{name}") } else { name };
                let gen_key = format!("{ns}/{name}");
                let exists = generation.contains_key(&gen_key);
                let g = generation.entry(gen_key).or_default();
                let recreate = exists && next(3) == 0;
                *g += usize::from(recreate);
                let uid = format!("{ns}-{name}-{g}");
                let object = if traefik {
                    let other = hosts[next(hosts.len())];
                    let rule = format!("Host(`{host}`) || Host(`{other}`)");
                    traefik_route(ns, &name, when, &rule)
                } else {
                    contour_root(ns, &name, when, host)
                };
                let object = with_uid(object, &uid);
                if recreate {
                    recreated.push(object.clone());
                }
                objects.push(object);
            }
            for o in &recreated {
                recreations += usize::from(delete(&mut two, &mut snap_two, o));
            }
            step(&mut one, &mut snap_one, objects.clone());
            step(&mut two, &mut snap_two, objects);
            assert_eq!(*one.dag(), *two.dag(), "step {step_no}");
            let (record, _) = one.claim_record(BUDGET).unwrap();
            let after = restart(&snap_one, Some(&record));
            assert_eq!(
                *after.dag(),
                *one.dag(),
                "step {step_no}, record {record:?}"
            );
        }
    }
    // Not vacuous: many recreations.
    assert!(recreations > 30, "{recreations}");
}
