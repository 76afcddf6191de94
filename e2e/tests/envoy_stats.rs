//! Envoy statistics (a Gateway's `spec.envoy.stats`): the bootstrap Sluice writes for `Minimal`
//! (the default) keeps what dashboards and alerts read and drops the rest of Envoy's
//! per-cluster statistics; a real Envoy accepts it and still reports the kept metrics.
//!
//! `envoy_memory_per_cluster` (ignored; `cargo test -p sluice-e2e --test envoy_stats --release
//! -- --ignored --nocapture`, `SLUICE_ENVOY_CONCURRENCY` workers, default 1) prints Envoy's
//! resident memory per cluster with `Full` and `Minimal` bootstraps, measured in one run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice::provision::bootstrap::{BootstrapOptions, EnvoyStats, build_bootstrap};
use sluice::snapshot::ObjKey;
use sluice_e2e::backend::Backend;
use sluice_e2e::client::Request;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::{envoy_port, wait_for};

/// What the Grafana dashboard and the alerts read (Prometheus names).
const DASHBOARD_METRICS: [&str; 7] = [
    "envoy_cluster_upstream_rq_xx",
    "envoy_cluster_upstream_rq_time",
    "envoy_http_downstream_rq_xx",
    "envoy_http_downstream_rq_time",
    "envoy_cluster_membership_healthy",
    "envoy_server_live",
    "envoy_cluster_upstream_cx_active",
];

/// A cluster named the way Sluice names them (`namespace/service/port/hash`).
fn cluster_name(i: usize) -> String {
    format!("team-a/svc-{i}/80/c0ffee{i:04x}")
}

/// Sluice's bootstrap for `stats`, with its ADS configuration replaced by static resources: a
/// listener on `listen_port` routing everything to cluster 0, and `clusters` static clusters
/// all pointing at `backend_port`.
fn bootstrap(stats: EnvoyStats, listen_port: u16, backend_port: u16, clusters: usize) -> String {
    let mut opts = BootstrapOptions::new(ObjKey::new("team-a", "gw"), "127.0.0.1", 1);
    opts.stats = stats;
    let mut b = build_bootstrap(&opts);
    let obj = b.as_object_mut().unwrap();
    obj.remove("dynamic_resources");
    // Histograms reach the admin output when statistics are flushed (default every 5 s).
    obj.insert("stats_flush_interval".to_owned(), json!("1s"));
    let clusters: Vec<Value> = (0..clusters)
        .map(|i| {
            let name = cluster_name(i);
            json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": backend_port}}}}]}]}
            })
        })
        .collect();
    let hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_http",
        "route_config": {"name": "ingress_http", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster_name(0)}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
    });
    obj.insert(
        "static_resources".to_owned(),
        json!({
            "clusters": clusters,
            "listeners": [{
                "name": "ingress_http",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}]
            }]
        }),
    );
    b.to_string()
}

#[tokio::test]
async fn envoy_accepts_the_bootstrap_with_and_without_the_stats_matcher() {
    for stats in [EnvoyStats::Minimal, EnvoyStats::Full] {
        let mut opts = BootstrapOptions::new(ObjKey::new("team-a", "gw"), "127.0.0.1", 18000);
        opts.stats = stats;
        let b = build_bootstrap(&opts);
        assert_eq!(
            b.get("stats_config").is_some(),
            stats == EnvoyStats::Minimal,
            "{stats:?}"
        );
        sluice_e2e::envoy::validate(&b.to_string())
            .await
            .unwrap_or_else(|e| panic!("Envoy rejects the {stats:?} bootstrap: {e}"));
    }
}

/// Names of the Prometheus metrics Envoy reports (without labels).
async fn metric_names(envoy: &Envoy) -> std::collections::BTreeSet<String> {
    let text = envoy
        .admin_get("/stats/prometheus")
        .await
        .unwrap()
        .text()
        .to_owned();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            name.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
                .to_owned()
        })
        .collect()
}

/// How many of Envoy's statistics (counters, gauges, histograms) belong to cluster 0.
async fn cluster_stat_count(envoy: &Envoy) -> usize {
    let prefix = format!("cluster.{}.", cluster_name(0));
    // Filtered by Envoy (`filter` is a regex): all of them are too large a body with many
    // clusters.
    let stats = envoy.admin_get("/stats?filter=%2Fsvc-0%2F").await.unwrap();
    stats
        .text()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .count()
}

#[tokio::test]
async fn minimal_statistics_keep_what_dashboards_read() {
    let backend = Backend::start("web").await.unwrap();
    let mut per_cluster = Vec::new();
    for stats in [EnvoyStats::Minimal, EnvoyStats::Full] {
        let port = envoy_port().unwrap();
        let envoy = Envoy::builder(bootstrap(stats, port, backend.port(), 1))
            .local_admin_socket()
            .start()
            .await
            .unwrap();
        let resp = Request::get("app.example.com", "/")
            .send(port)
            .await
            .unwrap();
        assert_eq!(resp.status, 200, "{stats:?}: {}", resp.text());
        let names = wait_for(
            "every dashboard metric is reported",
            Duration::from_secs(30),
            async || {
                let names = metric_names(&envoy).await;
                DASHBOARD_METRICS
                    .iter()
                    .all(|m| names.contains(*m))
                    .then_some(names)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{stats:?}: {e}"));
        // A per-cluster statistic no dashboard reads is dropped by Minimal only.
        assert_eq!(
            names.contains("envoy_cluster_upstream_cx_rx_bytes_total"),
            stats == EnvoyStats::Full,
            "{stats:?}"
        );
        per_cluster.push(cluster_stat_count(&envoy).await);
    }
    let (minimal, full) = (per_cluster[0], per_cluster[1]);
    assert!(
        minimal * 4 < full,
        "Minimal keeps {minimal} statistics per cluster, Full {full}"
    );
}

/// Envoy's resident memory (`VmRSS`), in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

/// Prints Envoy's resident memory at 2,000 and 10,000 clusters, with and without the stats
/// matcher, and the memory per cluster (the difference over 8,000 clusters).
#[tokio::test]
#[ignore = "measurement: prints figures, asserts nothing about speed or size"]
async fn envoy_memory_per_cluster() {
    const SIZES: [usize; 2] = [2_000, 10_000];
    // Worker threads (`SLUICE_ENVOY_CONCURRENCY`, default 1): each worker holds its own copy of
    // every cluster it has built.
    let workers: u32 = std::env::var("SLUICE_ENVOY_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let backend = Backend::start("web").await.unwrap();
    let mut per_cluster = Vec::new();
    println!("--concurrency {workers}");
    println!("| stats | clusters | Envoy RSS (MiB) | stats of cluster 0 |");
    println!("|---|---|---|---|");
    for stats in [EnvoyStats::Full, EnvoyStats::Minimal] {
        let mut rss = Vec::new();
        for n in SIZES {
            let port = envoy_port().unwrap();
            let mut envoy = Envoy::builder(bootstrap(stats, port, backend.port(), n))
                .local_admin_socket()
                .log_level("warn")
                .concurrency(workers)
                .ready_timeout(Duration::from_secs(300))
                .start()
                .await
                .unwrap();
            // Let start-up allocations settle.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let bytes = resident_bytes(envoy.process().pid());
            let count = cluster_stat_count(&envoy).await;
            println!(
                "| {stats:?} | {n} | {:.1} | {count} |",
                bytes as f64 / 1048576.0
            );
            rss.push(bytes as f64);
        }
        let delta = (rss[1] - rss[0]) / (SIZES[1] - SIZES[0]) as f64;
        per_cluster.push(delta);
    }
    println!(
        "per cluster: Full {:.1} KiB, Minimal {:.1} KiB, ratio {:.2}x",
        per_cluster[0] / 1024.0,
        per_cluster[1] / 1024.0,
        per_cluster[0] / per_cluster[1]
    );
}
