//! What one plain-HTTP virtual host's edit costs: encoding (from scratch and with the
//! incremental `Translator`), the size of the route configuration resent, and the time until a
//! real Envoy, fed over Delta ADS by Sluice's server, routes by the change; with Envoy's resident
//! memory and the time until a fresh Envoy first routes. Measured at 10 and 10,000 virtual hosts
//! in one run, in both ways Sluice serves plain HTTP: scoped (one `http/<fqdn>` route
//! configuration per host, the default) and shared (every host in `ingress_http`, what a Gateway
//! falls back to when a host cannot be keyed; here forced by one extra wildcard host, which
//! nothing requests), so the shared figures are the same-run baseline.
//!
//! A measurement, ignored by default: `cargo test -p sluice-e2e --release --test
//! route_config_cost -- --ignored --nocapture`. `SLUICE_BENCH_EDITS` sets the edits per
//! world (default 100); `SLUICE_BENCH_ADS=sotw` feeds Envoy over SotW ADS instead of Delta.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::dag::Dag;
use sluice::dag::model::VirtualHost;
use sluice::provision::bootstrap::{AdsFlavour, BootstrapOptions, build_bootstrap};
use sluice::snapshot::ObjKey;
use sluice::xds::cache::{Cache, InstanceResources, type_url};
use sluice::xds::server::{AdsServer, ServerMetrics};
use sluice::xds::translate::{HTTP_LISTENER, TranslateOptions, Translator, translate};
use sluice_e2e::backend::{BACKEND_HEADER, Backend};
use sluice_e2e::client::Request;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::envoy_port;
use sluice_e2e::process::ChildProcess;

#[path = "support/dag_fixture.rs"]
mod dag_fixture;
use dag_fixture::{INSTANCE, dag, plain_host, route};

fn host(i: usize, service: &str) -> VirtualHost {
    named_host(&format!("h{i:05}.example.com"), i, service)
}

fn named_host(fqdn: &str, i: usize, service: &str) -> VirtualHost {
    let owner = format!("team-a/root-{i}");
    plain_host(fqdn, &owner, vec![route("/", &owner, service, false)])
}

/// `hosts` plain-HTTP virtual hosts all routed to backend `a`; backends `a` and `b` as EDS.
/// `shared` adds a wildcard host, which cannot be a scope key: every host then shares
/// `ingress_http`.
fn world(hosts: usize, shared: bool, a: &Backend, b: &Backend) -> Dag {
    let mut virtual_hosts: Vec<VirtualHost> = (0..hosts).map(|i| host(i, "a")).collect();
    if shared {
        virtual_hosts.insert(0, named_host("*.unkeyable.example.com", hosts, "b"));
    }
    dag(virtual_hosts, a, b)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn answered_by(port: u16, fqdn: &str) -> Option<String> {
    let resp = Request::get(fqdn, "/")
        .timeout(Duration::from_secs(2))
        .send(port)
        .await
        .ok()?;
    resp.header(BACKEND_HEADER).map(str::to_owned)
}

/// Resident memory of a process, in MiB.
fn rss_mib(process: &mut ChildProcess) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid())).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// The value below which `p` of the sorted `v` lie (nearest rank).
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[tokio::test]
#[ignore = "measurement: prints figures, asserts nothing about speed or size"]
async fn http_route_configuration_edit_cost() {
    let edits: usize = std::env::var("SLUICE_BENCH_EDITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    println!(
        "{edits} edits per world, ADS {}; load average at start: {}",
        std::env::var("SLUICE_BENCH_ADS").unwrap_or_else(|_| "delta".to_owned()),
        load()
    );
    println!(
        "| plain HTTP | virtual hosts | route config resent, bytes | full translate+encode ms | incremental ms | edit to traffic p50 / p90 / p99 / max ms | first route after start s | Envoy RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for hosts in [10, 10_000] {
        for shared in [true, false] {
            measure(hosts, shared, edits, &a, &b).await;
        }
    }
    println!("load average at end: {}", load());
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn measure(hosts: usize, shared: bool, edits: usize, a: &Backend, b: &Backend) {
    let xds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_port = xds.local_addr().unwrap().port();
    let cache = Arc::new(Cache::new());
    let metrics = Arc::new(ServerMetrics::new().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(AdsServer::new(cache.clone(), metrics).serve(xds, async {
        let _ = stopped.await;
    }));
    let opts = TranslateOptions {
        http_address: "127.0.0.1".to_owned(),
        http_port: envoy_port().unwrap(),
        https_address: "127.0.0.1".to_owned(),
        https_port: envoy_port().unwrap(),
        stats_address: "127.0.0.1".to_owned(),
        stats_port: envoy_port().unwrap(),
        ipv4_compat: false,
        ..TranslateOptions::default()
    };
    let mut dag = world(hosts, shared, a, b);
    let mut translator = Translator::new(opts.clone());
    let first = translator.translate(&dag).unwrap();
    assert_eq!(
        first.by_type().contains_key(type_url::SCOPED_ROUTE),
        !shared
    );
    cache.set(INSTANCE, first);
    let mut options = BootstrapOptions::new(ObjKey::new("team-a", "gw"), "127.0.0.1", xds_port);
    if std::env::var("SLUICE_BENCH_ADS").is_ok_and(|v| v.eq_ignore_ascii_case("sotw")) {
        options.ads = AdsFlavour::Sotw;
    }
    let bootstrap = build_bootstrap(&options);
    let started = Instant::now();
    let mut envoy = Envoy::builder(bootstrap.to_string())
        .local_admin_socket()
        .log_level("warn")
        .ready_timeout(Duration::from_secs(300))
        .start()
        .await
        .unwrap();
    let edited_index = usize::from(shared) + hosts / 2;
    let fqdn = dag.virtual_hosts[edited_index].fqdn.clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    while answered_by(opts.http_port, &fqdn).await.as_deref() != Some("a") {
        assert!(Instant::now() < deadline, "{fqdn} never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let startup = started.elapsed().as_secs_f64();
    let resent = if shared {
        HTTP_LISTENER.to_owned()
    } else {
        format!("http/{fqdn}")
    };

    let mut full = Vec::new();
    let mut incremental = Vec::new();
    let mut latency = Vec::new();
    let mut size = 0;
    for edit in 0..edits {
        let target = if edit % 2 == 0 { "b" } else { "a" };
        dag.virtual_hosts[edited_index] = named_host(&fqdn, edited_index, target).into();
        let started = Instant::now();
        let resources = translator.translate(&dag).unwrap();
        incremental.push(millis(started.elapsed()));
        size = resources.by_type()[type_url::ROUTE][resent.as_str()]
            .value()
            .len();
        cache.set(INSTANCE, resources);
        while answered_by(opts.http_port, &fqdn).await.as_deref() != Some(target) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "edit {edit} never reached Envoy"
            );
        }
        latency.push(millis(started.elapsed()));
        // The reference, for comparison (not on the measured path), every tenth edit.
        if edit % 10 == 0 {
            let started = Instant::now();
            let reference = InstanceResources::from(&translate(&dag, &opts).unwrap());
            full.push(millis(started.elapsed()));
            assert_eq!(reference, translator.translate(&dag).unwrap());
        }
    }
    for v in [&mut full, &mut incremental, &mut latency] {
        v.sort_by(f64::total_cmp);
    }
    let rss = rss_mib(envoy.process());
    println!(
        "| {} | {hosts} | {size} | {:.1} | {:.2} | {:.1} / {:.1} / {:.1} / {:.1} | {startup:.1} | {rss:.0} |",
        if shared {
            "shared `ingress_http`"
        } else {
            "scoped"
        },
        percentile(&full, 50.0),
        percentile(&incremental, 50.0),
        percentile(&latency, 50.0),
        percentile(&latency, 90.0),
        percentile(&latency, 99.0),
        latency[latency.len() - 1],
    );
    drop(envoy);
    let _ = stop.send(());
    let _ = server.await;
}
