//! A reader holding the previous DAG (the route coordinator, the status writer, attribution, the
//! translator's memo) while the incremental DAG updates: what it holds must not change, and the
//! update must share with it every entry it did not change instead of copying the DAG. Random
//! worlds and edits of `incremental_tests.rs`; the seed is printed, `SLUICE_DAG_SEED` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::incremental_tests::{Mix, edit, seed, world};
use super::model::SharedList;
use super::{Dag, IncrementalDag, Selection, build_aged};
use crate::snapshot::ChangeSet;
use sluice_e2e::rng::Rng;

/// Entries of `now` equal to the entry of the same name in `held`, and how many of them are the
/// same allocation.
fn shared_count<T: PartialEq, K: Ord>(
    held: &SharedList<T>,
    now: &SharedList<T>,
    name: impl Fn(&T) -> K,
) -> (usize, usize) {
    let (mut equal, mut same) = (0, 0);
    for entry in now.entries() {
        let key = name(entry);
        let Ok(i) = held.binary_search_by(|h| name(h).cmp(&key)) else {
            continue;
        };
        if *held[i] == **entry {
            equal += 1;
            same += usize::from(Arc::ptr_eq(&held[i], entry));
        }
    }
    (equal, same)
}

/// Every field of the DAG, private keys included (they do not serialize).
fn deep(dag: &Dag) -> String {
    format!("{dag:?}")
}

#[test]
fn a_held_dag_is_unchanged_by_an_update_and_shares_every_unchanged_entry() {
    let seed = seed();
    println!("SLUICE_DAG_SEED={seed}");
    let mut rng = Rng(seed);
    let sel = Selection::default_instance();
    let (mut shared_entries, mut passes) = (0, 0);
    let (mut reused, mut copied, mut unheld) = (0, 0, 0);
    for world_no in 0..12 {
        let mut snap = world(&mut rng, Mix::MIXED);
        // Traefik routes make every update a full build (a new DAG, nothing to share).
        snap.traefik_routes = Default::default();
        let mut inc = IncrementalDag::new(sel.clone());
        inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::everything());
        // An older DAG a second reader still holds (two passes in flight), and its text.
        let mut older: Option<(Arc<Dag>, String)> = None;
        for step in 0..60 {
            let previous = build_aged(&snap, &sel, inc.claim_ages());
            let mut changes = ChangeSet::default();
            for _ in 0..1 + rng.below(2) {
                edit(&mut snap, &mut rng, &mut changes, Mix::MIXED);
            }
            snap.traefik_routes = Default::default();
            // Now and then nobody holds the current DAG (patched in place), or the previous
            // reader keeps its DAG one more update (the spare is held: copied).
            if rng.chance(15) {
                let at = format!("seed {seed}: world {world_no}, step {step}");
                inc.update(&Arc::new(snap.clone()), &sel, &changes);
                unheld += 1;
                assert_eq!(
                    *inc.dag(),
                    build_aged(&snap, &sel, inc.claim_ages()),
                    "{at}: incremental differs from full (nothing held)"
                );
                if let Some((dag, text)) = &older {
                    assert_eq!(deep(dag), *text, "{at}: an older held DAG changed");
                }
                continue;
            }
            let held = inc.shared_dag();
            let before = deep(&held);
            inc.update(&Arc::new(snap.clone()), &sel, &changes);
            let at = format!("seed {seed}: world {world_no}, step {step}");
            assert_eq!(deep(&held), before, "{at}: the held DAG changed");
            if let Some((dag, text)) = &older {
                assert_eq!(deep(dag), *text, "{at}: an older held DAG changed");
            }
            older = rng.chance(25).then(|| (held.clone(), before.clone()));
            assert_eq!(
                *held, previous,
                "{at}: the held DAG is not the previous one"
            );
            let now = inc.dag();
            assert_eq!(
                *now,
                build_aged(&snap, &sel, inc.claim_ages()),
                "{at}: incremental differs from full"
            );
            let counts = [
                shared_count(&held.virtual_hosts, &now.virtual_hosts, |v| v.fqdn.clone()),
                shared_count(&held.clusters, &now.clusters, |c| c.name.clone()),
                shared_count(&held.endpoints, &now.endpoints, |e| e.service_name.clone()),
                shared_count(&held.secrets, &now.secrets, |s| s.name.clone()),
                shared_count(&held.statuses, &now.statuses, |s| {
                    (s.namespace.clone(), s.name.clone())
                }),
            ];
            for (list, (equal, same)) in ["vhosts", "clusters", "endpoints", "secrets", "statuses"]
                .iter()
                .zip(counts)
            {
                assert_eq!(
                    same,
                    equal,
                    "{at}: {list}: {} unchanged entries were copied, not shared",
                    equal - same
                );
                shared_entries += same;
            }
            passes += 1;
        }
        let (r, c) = inc.spare_counts();
        (reused, copied) = (reused + r, copied + c);
    }
    println!("{reused} updates patched the spare, {copied} copied a held DAG, {unheld} held none");
    // The spare is what most held updates patch; the others copy (the spare held too).
    assert!(
        reused > 150 && copied > 50 && unheld > 50,
        "{reused} {copied} {unheld}"
    );
    println!("{passes} updates with the previous DAG held, {shared_entries} entries shared");
    assert!(shared_entries > 1000, "too few shared entries checked");
}
