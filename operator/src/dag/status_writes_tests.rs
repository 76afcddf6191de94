//! Status writes coming back through the live snapshot (as they do in `sluice run`): random
//! worlds, random steps of status writes and edits, the incremental DAG checked against the full
//! build after each, and a step of status writes alone checked to rebuild nothing. The seed is
//! printed; `SLUICE_DAG_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use super::claim_ages_tests::{NEW, OLD, contour_root, owner};
use super::incremental_tests::{Mix, random_route, seed, world};
use super::{IncrementalDag, Selection, build_aged};
use crate::api::ingressroute::IngressRouteStatus;
use crate::snapshot::{ChangeSet, LiveSnapshot, ObjKey, Object, SharedObject};
use sluice_e2e::rng::Rng;

/// A status as the leader (or someone else) may write it; some say a host was lost, which is
/// what a restarted instance's first build reads (`claim_ages`).
fn random_status(rng: &mut Rng) -> IngressRouteStatus {
    let (current, description) = match rng.below(4) {
        0 => ("valid", "valid IngressRoute".to_owned()),
        1 => (
            "orphaned",
            "this IngressRoute is not part of a delegation chain from a root IngressRoute"
                .to_owned(),
        ),
        2 => ("invalid", "Service s is missing".to_owned()),
        _ => (
            "invalid",
            format!(
                "fqdn \"h{}.example.com\" is already used by the older IngressRoute a/r0",
                rng.below(5)
            ),
        ),
    };
    IngressRouteStatus {
        current_status: current.into(),
        description,
    }
}

#[test]
fn status_writes_rebuild_nothing_and_edits_still_do() {
    let seed = seed();
    println!("SLUICE_DAG_SEED={seed}");
    let mut rng = Rng(seed);
    let (mut quiet_steps, mut edit_steps) = (0, 0);
    let mut version = 0u64;
    for world_no in 0..12 {
        let sel = Selection::default_instance();
        let mut live = LiveSnapshot::from_snapshot(world(&mut rng, Mix::MIXED));
        let (snap, changes) = live.take();
        let mut inc = IncrementalDag::new(sel.clone());
        inc.update(&snap, &sel, &changes);
        for step in 0..40 {
            let keys: Vec<ObjKey> = live.snapshot().ingress_routes.keys().cloned().collect();
            let statuses_only = rng.chance(60);
            // The last status written to each.
            let mut written = std::collections::BTreeMap::new();
            for _ in 0..1 + rng.below(4) {
                let key = rng.pick(&keys).clone();
                let held = live.snapshot().ingress_routes.get(&key).unwrap().clone();
                version += 1;
                let next = if statuses_only || rng.chance(40) {
                    let mut w = (*held).clone();
                    w.status = Some(random_status(&mut rng));
                    w.metadata.resource_version = Some(version.to_string());
                    written.insert(key.clone(), w.status.clone());
                    w
                } else {
                    let Object::IngressRoute(mut e) =
                        random_route(&key.namespace, &key.name, &mut rng)
                    else {
                        panic!("random_route makes IngressRoutes");
                    };
                    e.status = held.status.clone();
                    e.metadata.resource_version = Some(version.to_string());
                    e
                };
                live.upsert(SharedObject::IngressRoute(Arc::new(next)));
            }
            let (snap, changes) = live.take();
            let before = inc.shared_dag();
            let stats = inc.update(&snap, &sel, &changes);
            let at = format!("seed {seed}: world {world_no}: step {step}");
            if statuses_only {
                quiet_steps += 1;
                assert_eq!(changes.objects().count(), 0, "{at}: {changes:?}");
                assert_eq!(stats.roots_rebuilt, 0, "{at}");
                assert!(!stats.changed, "{at}");
                assert_eq!(*before, *inc.dag(), "{at}");
                for (key, status) in &written {
                    // The status round sees what was written (someone else's status is
                    // written over)...
                    let now = snap.ingress_routes.get(key).unwrap();
                    assert_eq!(now.status, *status, "{at}: {key}");
                    // ...and the DAG's selection holds the new object, not the one it replaced.
                    if let Some(selected) = inc.selected_route(key) {
                        assert!(Arc::ptr_eq(selected, now), "{at}: {key}");
                    }
                }
            } else {
                edit_steps += 1;
            }
            assert_eq!(
                *inc.dag(),
                build_aged(&snap, &sel, inc.claim_ages()),
                "{at}"
            );
        }
    }
    println!("{quiet_steps} steps of status writes, {edit_steps} with edits");
    assert!(quiet_steps > 100 && edit_steps > 50);
}

/// The restart seed of host claims reads the statuses the leader wrote: they reach the
/// snapshot although they rebuild nothing.
#[test]
fn a_status_written_reaches_the_restart_seed() {
    let sel = Selection::default_instance();
    let shared = |o: Object| SharedObject::from(o);
    let mut live = LiveSnapshot::default();
    live.upsert(shared(contour_root("victim", "site", NEW, "h.example.com")));
    live.upsert(shared(contour_root(
        "evil",
        "old",
        OLD,
        "other.example.com",
    )));
    let mut inc = IncrementalDag::new(sel.clone());
    let (snap, changes) = live.take();
    inc.update(&snap, &sel, &changes);
    // The old root edited to claim the held name does not take it...
    live.upsert(shared(contour_root("evil", "old", OLD, "h.example.com")));
    let (snap, changes) = live.take();
    inc.update(&snap, &sel, &changes);
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    let key = ObjKey::new("evil", "old");
    let lost = (inc.dag().statuses.iter().find(|s| s.name == "old").unwrap())
        .description
        .clone();
    let status = IngressRouteStatus {
        current_status: "invalid".into(),
        description: lost.clone(),
    };
    assert!(
        status.description.contains("already used by the older"),
        "{status:?}"
    );
    // ...and the status saying so is written and comes back: nothing to rebuild.
    let mut written = (**snap.ingress_routes.get(&key).unwrap()).clone();
    written.status = Some(status);
    written.metadata.resource_version = Some("2".into());
    let restart_without = snap.clone();
    live.upsert(SharedObject::IngressRoute(Arc::new(written)));
    let (snap, changes) = live.take();
    assert_eq!(inc.update(&snap, &sel, &changes).roots_rebuilt, 0);
    // A restarted instance reads it: the old root stays behind.
    let mut restarted = IncrementalDag::new(sel.clone());
    restarted.update(&snap, &sel, &ChangeSet::everything());
    assert_eq!(owner(&restarted, "h.example.com"), "victim/site");
    // Without it, creation time would give the old root the name.
    let mut restarted = IncrementalDag::new(sel.clone());
    restarted.update(&restart_without, &sel, &ChangeSet::everything());
    assert_eq!(owner(&restarted, "h.example.com"), "evil/old");
    // Combined over Gateways, the loss names the Gateways it is true on: only this one's
    // counts (review 7 R7.2).
    let mine = format!("Gateway {}: {lost}", sel.gateway);
    let theirs = format!("Gateway other/gw: {lost}");
    for (n, (description, holder)) in [
        (mine.clone(), "victim/site"),
        (format!("{theirs}; {mine}"), "victim/site"),
        (theirs.clone(), "evil/old"),
        (format!("Gateway other/gw: bad; {theirs}"), "evil/old"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut written = (**snap.ingress_routes.get(&key).unwrap()).clone();
        written.status = Some(IngressRouteStatus {
            current_status: "invalid".into(),
            description: description.clone(),
        });
        written.metadata.resource_version = Some(format!("{}", n + 3));
        live.upsert(SharedObject::IngressRoute(Arc::new(written)));
        let (snap, _) = live.take();
        let mut restarted = IncrementalDag::new(sel.clone());
        restarted.update(&snap, &sel, &ChangeSet::everything());
        assert_eq!(owner(&restarted, "h.example.com"), holder, "{description}");
    }
}
