//! One reconcile pass of the incremental DAG while a reader (the route coordinator, the status
//! writer, attribution) still holds the previous DAG, as in `sluice run`: the pass must not copy
//! what it did not change. Printed against the same pass with nobody holding the previous DAG
//! and against a deep copy of every entry of the DAG (what a held DAG cost before its entries
//! were shared), same run. `SLUICE_SCALE_ONLY=held` runs this table alone (for heaptrack).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::dag::model::{Cluster, ClusterEndpoints, RouteStatus, Secret, VirtualHost};
use sluice::dag::{Dag, IncrementalDag, Selection};
use sluice::snapshot::{ChangeSet, ClusterSnapshot};

use super::{edit_route, median, ms, snapshot};

/// Every entry of `dag` copied, not shared.
fn deep_copy(dag: &Dag) -> usize {
    let vhosts: Vec<VirtualHost> = dag.virtual_hosts.iter().cloned().collect();
    let clusters: Vec<Cluster> = dag.clusters.iter().cloned().collect();
    let endpoints: Vec<ClusterEndpoints> = dag.endpoints.iter().cloned().collect();
    let secrets: Vec<Secret> = dag.secrets.iter().cloned().collect();
    let statuses: Vec<RouteStatus> = dag.statuses.iter().cloned().collect();
    vhosts.len() + clusters.len() + endpoints.len() + secrets.len() + statuses.len()
}

/// Median time of a few one-route edits, with the previous DAG held across each update when
/// `hold`; also the median time the reader then takes to drop the DAG it held.
fn passes(
    inc: &mut IncrementalDag,
    snap: &mut Arc<ClusterSnapshot>,
    sel: &Selection,
    n: usize,
    hold: bool,
    first_generation: usize,
) -> (Duration, Duration) {
    let (mut updates, mut drops) = (Vec::new(), Vec::new());
    for generation in first_generation..first_generation + 9 {
        let (next, changes) = edit_route(snap, n, generation);
        let next = Arc::new(next);
        let held = hold.then(|| inc.shared_dag());
        let start = Instant::now();
        inc.update(&next, sel, &changes);
        updates.push(start.elapsed());
        let start = Instant::now();
        drop(held);
        drops.push(start.elapsed());
        *snap = next;
    }
    (median(updates), median(drops))
}

pub fn table() {
    let sel = Selection::default_instance();
    println!();
    println!(
        "{:>7} {:<58} {:>12}",
        "roots", "one IngressRoute edited (median of 9)", "time"
    );
    for n in [1_000, 10_000] {
        let mut snap = Arc::new(snapshot(n));
        let mut inc = IncrementalDag::new(sel.clone());
        inc.update(&snap, &sel, &ChangeSet::everything());
        let dag = inc.shared_dag();
        let deep: Vec<Duration> = (0..5)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(deep_copy(&dag));
                start.elapsed()
            })
            .collect();
        let shallow: Vec<Duration> = (0..5)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(Dag::clone(&dag));
                start.elapsed()
            })
            .collect();
        drop(dag);
        let (free, _) = passes(&mut inc, &mut snap, &sel, n, false, 100);
        let (held, dropped) = passes(&mut inc, &mut snap, &sel, n, true, 200);
        let rows = [
            ("baseline: deep copy of every DAG entry", median(deep)),
            ("baseline: Dag::clone", median(shallow)),
            ("update, nobody holds the previous DAG", free),
            ("update, a reader holds the previous DAG", held),
            ("the reader then drops the previous DAG", dropped),
        ];
        for (label, t) in rows {
            println!("{n:>7} {label:<58} {:>10.3}ms", ms(t));
        }
    }
}
