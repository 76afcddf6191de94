//! The scale benchmark at a tiny size, so that `make bench` keeps working: every figure is
//! measured (none asserted: speed is for the benchmark to print).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_e2e::bench::{Config, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_at_a_tiny_size() {
    let config = Config {
        sizes: vec![10, 50],
        edits: 3,
        idle: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
    };
    let figures = run(&config).await.unwrap();
    assert_eq!(figures.len(), 2);
    for f in &figures {
        assert!(
            f.render_file_per_object.is_some() && f.render_one_file.is_some(),
            "{f:?}"
        );
        assert!(
            f.load_to_traffic.is_some() && f.rss_after_load_kib.is_some(),
            "{f:?}"
        );
        assert!(f.idle_cpu.is_some() && f.rss_peak_kib.is_some(), "{f:?}");
        assert_eq!(f.edit_latency.len(), 3, "{f:?}");
    }
}
