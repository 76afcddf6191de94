//! What a pass does besides the DAG, translation and cache, for one IngressRoute edited at 20
//! roots (the baseline) and at 1,000 and 10,000, same run: the claims record the leader (and
//! `sluice standalone --claims-file`) works out after a pass that changed the DAG, the Gateway's
//! route counts (the status's and the metric's series), and the verdict lines standalone prints
//! after each build. `SLUICE_SCALE_ONLY=bookkeeping` runs this table alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::controller::claims::RECORD_BUDGET;
use sluice::controller::routes::{route_counts, series_counts, series_of, total_of};
use sluice::dag::Selection;
use sluice::dag::Validity;
use sluice::pipeline::InstancePipeline;
use sluice::snapshot::{ChangeSet, ClusterSnapshot};
use sluice::xds::translate::TranslateOptions;

use super::{edit_route, ms, snapshot};

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
        "{:>7} {:<28} {:>18} {:>18} {:>18} {:>18} {:>18} {:>18}",
        "roots",
        "IngressRoute edited (ms)",
        "record, all names",
        "claims record",
        "counts, all",
        "route counts",
        "lines, all",
        "verdict lines"
    );
    for n in [20, 1_000, 10_000] {
        let mut snap: Arc<ClusterSnapshot> = Arc::new(snapshot(n));
        let mut pipeline = InstancePipeline::new(sel.clone());
        pipeline.update(&snap, &sel, &ChangeSet::everything(), &opts);
        let (mut scratch, mut record) = (Vec::new(), Vec::new());
        let (mut all_counts, mut counts) = (Vec::new(), Vec::new());
        let (mut all_lines, mut lines) = (Vec::new(), Vec::new());
        for generation in 1_000..1_000 + PASSES {
            let (next, changes) = edit_route(&snap, n, generation);
            let next = Arc::new(next);
            let built = pipeline.update(&next, &sel, &changes, &opts);
            assert!(built.stats.changed, "the edit changed nothing");
            let start = Instant::now();
            let all = pipeline.claim_record_from_scratch(RECORD_BUDGET);
            scratch.push(start.elapsed());
            let start = Instant::now();
            let r = pipeline.claim_record(RECORD_BUDGET);
            record.push(start.elapsed());
            assert_eq!(r, all);
            assert!(r.is_some_and(|(r, _)| r.is_empty()), "nothing is contested");
            let start = Instant::now();
            let all = (route_counts(&built.dag), series_counts(&built.dag));
            all_counts.push(start.elapsed());
            let start = Instant::now();
            let kept = pipeline.status_tally();
            let c = (total_of(&kept.counts), series_of(&kept.counts));
            counts.push(start.elapsed());
            assert_eq!(c, all);
            assert_eq!(c.0.valid as usize, 2 * n, "every route is valid");
            // What standalone's verdict lines walked before: every status.
            let start = Instant::now();
            let walked = (built.dag.statuses.iter())
                .filter(|s| s.current_status != Validity::Valid)
                .count()
                + (built.dag.object_statuses.iter())
                    .filter(|s| s.current_status != Validity::Valid)
                    .count();
            all_lines.push(start.elapsed());
            let start = Instant::now();
            let printed = sluice::standalone::verdict_lines(&built.dag, kept).count();
            lines.push(start.elapsed());
            assert_eq!((printed, walked), (0, 0), "every route is valid");
            snap = next;
        }
        let cells = [scratch, record, all_counts, counts, all_lines, lines].map(|t| {
            let (p50, p90) = spread(t);
            format!("{p50:.4} / {p90:.4}")
        });
        println!(
            "{n:>7} {:<28} {:>18} {:>18} {:>18} {:>18} {:>18} {:>18}",
            "p50 / p90", cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]
        );
    }
}
