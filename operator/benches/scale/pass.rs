//! One reconcile pass as `sluice run` makes it, split into its parts: the incremental DAG
//! (with a reader still holding the previous DAG, as the route coordinator does), the
//! translation of the DAG's diff, and the publication to the xDS cache. For one IngressRoute
//! edited and for one EndpointSlice edited, at 20 roots (the baseline) and at 1,000 and 10,000,
//! same run: a pass costing in proportion to the change costs about the same at every size.
//! `SLUICE_SCALE_ONLY=pass` runs this table alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::dag::Selection;
use sluice::pipeline::InstancePipeline;
use sluice::snapshot::{ChangeSet, ClusterSnapshot};
use sluice::xds::cache::Cache;
use sluice::xds::translate::TranslateOptions;

use super::{Edit, edit_route, edit_slice, ms, snapshot};

/// The median and the 90th percentile.
fn spread(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| ms(times[((times.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.9))
}

pub fn table() {
    const PASSES: usize = 21;
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    println!();
    println!(
        "{:>7} {:<26} {:>16} {:>16} {:>16} {:>16}",
        "roots", "one pass (p50 / p90)", "dag", "translate", "cache", "whole"
    );
    for n in [20, 1_000, 10_000] {
        let mut snap: Arc<ClusterSnapshot> = Arc::new(snapshot(n));
        let cache = Cache::new();
        let mut pipeline = InstancePipeline::new(sel.clone());
        let first = pipeline.update(&snap, &sel, &ChangeSet::everything(), &opts);
        if let Some(Ok(r)) = first.resources {
            cache.set("bench", r);
        }
        let mut held = first.dag;
        for (label, edit) in [
            ("one IngressRoute edited", edit_route as Edit),
            ("one EndpointSlice edited", edit_slice),
        ] {
            let (mut dags, mut xds, mut sets, mut whole) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for generation in 1_000..1_000 + PASSES {
                let (next, changes) = edit(&snap, n, generation);
                let next = Arc::new(next);
                let start = Instant::now();
                let built = pipeline.update(&next, &sel, &changes, &opts);
                let set = Instant::now();
                let published = match built.resources {
                    Some(Ok(r)) => cache.set("bench", r),
                    _ => false,
                };
                sets.push(set.elapsed());
                whole.push(start.elapsed());
                assert!(published, "{label}: nothing published");
                dags.push(built.build_time);
                xds.push(built.translate_time.unwrap_or_default());
                // The reader lets go of the previous DAG only now, as the coordinator does.
                held = built.dag;
                snap = next;
            }
            let cells = [dags, xds, sets, whole].map(|t| {
                let (p50, p90) = spread(t);
                format!("{p50:.3} / {p90:.3}")
            });
            println!(
                "{n:>7} {label:<26} {:>16} {:>16} {:>16} {:>16}",
                cells[0], cells[1], cells[2], cells[3]
            );
        }
        drop(held);
    }
}
