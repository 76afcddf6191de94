//! The scale benchmark at a tiny size, so that `make bench` keeps working: every part runs
//! (render and standalone on two world variants that between them cover Endpoints and
//! EndpointSlices, one file per object and one file; `sluice run` against the in-memory API
//! server with a short EndpointSlice churn; the in-memory API server alone) and every figure
//! is measured. None is asserted: speed is for the benchmark to print.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_e2e::bench::{Config, Part, Variant, run};
use sluice_e2e::world::Layout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runs_at_a_tiny_size() {
    let variants = vec![
        Variant::new(false, Layout::FilePerObject),
        Variant::new(true, Layout::OneFile),
    ];
    let config = Config {
        sizes: vec![10, 30],
        parts: vec![Part::Render, Part::Standalone, Part::Run, Part::ApiServer],
        variants: variants.clone(),
        edits: 3,
        idle: Duration::from_secs(1),
        churn: Duration::from_secs(2),
        churn_rate: 20,
        timeout: Duration::from_secs(60),
        // Few status writes in flight: the flag is taken, and the settle still completes.
        run_args: vec!["--status-writes-in-flight".into(), "2".into()],
    };
    let figures = run(&config).await.unwrap();
    let table = figures.table();
    let mut want: Vec<String> = Vec::new();
    for v in &variants {
        let name = v.name();
        for figure in ["render -o json", "render -o json peak RSS"] {
            want.push(format!("{figure} [{name}]"));
        }
        for figure in [
            "start to traffic",
            "RSS after load",
            "Envoy RSS after load",
            "idle CPU",
            "edit to traffic p50",
            "edit to traffic p99",
            "peak RSS after edits",
        ] {
            want.push(format!("standalone {figure} [{name}]"));
        }
    }
    for figure in [
        "create every object (in process)",
        "first IngressRoute status",
        "status settle (all)",
        "status settle from the last create",
        "statuses already written at the last create",
        "CPU during settle: operator",
        "CPU during settle: API server thread",
        "create to traffic (last root)",
        "operator RSS after settle",
        "Envoy RSS after settle",
        "operator idle CPU",
        "edit to traffic p50",
        "edit to traffic p99",
        "churn rate reached",
        "churn update to Envoy p50",
        "churn update to Envoy p99",
        "operator CPU during churn",
        "operator peak RSS",
    ] {
        want.push(format!("run {figure}"));
    }
    for figure in [
        "create the world: CPU",
        "status writes + Events: time",
        "status writes + Events: CPU",
        "CPU per status write + Event",
    ] {
        want.push(format!("apiserver {figure}"));
    }
    for figure in &want {
        for roots in [10, 30] {
            assert!(
                figures.get(figure, roots).is_some(),
                "no {figure:?} at {roots} roots:\n{table}"
            );
        }
    }
    for roots in [10, 30] {
        // The operator's own timings were read: passes ran and every IngressRoute's status
        // was written.
        let settle = |what: &str| figures.get(&format!("run settle: operator {what}"), roots);
        assert!(
            settle("reconcile passes").is_some_and(|n| n >= 1.0),
            "{table}"
        );
        assert!(
            settle("status writes").is_some_and(|n| n >= 2.0 * roots as f64),
            "{table}"
        );
        // The API server alone took a status for every IngressRoute (roots and children).
        assert_eq!(
            figures.get("apiserver status writes + Events", roots),
            Some(2.0 * roots as f64),
            "{table}"
        );
        // Every churn update was seen through Envoy, and there were some.
        assert_eq!(
            figures.get("run churn updates not visible within 30 s", roots),
            Some(0.0),
            "{table}"
        );
        assert!(
            figures
                .get("run churn updates sent", roots)
                .is_some_and(|n| n > 0.0),
            "{table}"
        );
    }
}
