//! What the shared HTTP route configuration (`ingress_http`, every plain-HTTP virtual host)
//! costs when one virtual host changes: encoding (from scratch and with the incremental
//! `Translator`), its size on the wire, and the time until a real Envoy, fed over Delta ADS by
//! Sluice's server, routes by the change. Measured at 10 and 10,000 virtual hosts in one run.
//!
//! A measurement, ignored by default: `cargo test -p sluice-e2e --release --test
//! route_config_cost -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::dag::Dag;
use sluice::dag::model::{
    Cluster, ClusterEndpoints, LbPolicy, Route, SocketAddress, Upstream, UpstreamProtocol,
    VirtualHost, WeightedCluster,
};
use sluice::provision::bootstrap::{BootstrapOptions, build_bootstrap};
use sluice::snapshot::ObjKey;
use sluice::xds::cache::{Cache, InstanceResources, type_url};
use sluice::xds::server::{AdsServer, ServerMetrics};
use sluice::xds::translate::{HTTP_LISTENER, TranslateOptions, Translator, translate};
use sluice_e2e::backend::{BACKEND_HEADER, Backend};
use sluice_e2e::client::Request;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::free_port;

const INSTANCE: &str = "team-a/gw";

fn cluster(service: &str) -> Cluster {
    Cluster {
        name: format!("team-a/{service}/80/c0ffee"),
        service: format!("team-a/{service}"),
        port: 80,
        upstream: Upstream::Eds {
            service_name: format!("team-a/{service}/http"),
        },
        protocol: UpstreamProtocol::Http1,
        lb_policy: LbPolicy::RoundRobin,
        health_check: None,
        validation: None,
    }
}

fn host(i: usize, service: &str) -> VirtualHost {
    VirtualHost {
        fqdn: format!("h{i:05}.example.com"),
        owner: format!("team-a/root-{i}"),
        tls: None,
        routes: vec![Route {
            prefix: "/".to_owned(),
            owner: format!("team-a/root-{i}"),
            clusters: vec![WeightedCluster {
                cluster: cluster(service).name,
                weight: 1,
            }],
            permit_insecure: false,
            websocket: false,
            prefix_rewrite: None,
            timeout: None,
            retry: None,
            session_affinity: false,
            extra: None,
        }],
        tcp_proxy: None,
    }
}

/// `hosts` plain-HTTP virtual hosts all routed to backend `a`; backends `a` and `b` as EDS.
fn world(hosts: usize, a: &Backend, b: &Backend) -> Dag {
    let endpoints = |service: &str, backend: &Backend| ClusterEndpoints {
        service_name: format!("team-a/{service}/http"),
        addresses: vec![SocketAddress {
            ip: "127.0.0.1".to_owned(),
            port: backend.port(),
        }],
    };
    Dag {
        gateway: INSTANCE.to_owned(),
        virtual_hosts: (0..hosts).map(|i| host(i, "a")).collect(),
        clusters: vec![cluster("a"), cluster("b")],
        endpoints: vec![endpoints("a", a), endpoints("b", b)],
        ..Dag::default()
    }
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

#[tokio::test]
#[ignore = "measurement: prints figures, asserts nothing about speed or size"]
async fn shared_http_route_configuration_cost() {
    const EDITS: usize = 9;
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    println!(
        "| virtual hosts | ingress_http bytes | full translate+encode ms | incremental ms | edit to traffic p50 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|");
    for hosts in [10, 10_000] {
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
            http_port: free_port().unwrap(),
            https_address: "127.0.0.1".to_owned(),
            https_port: free_port().unwrap(),
            stats_address: "127.0.0.1".to_owned(),
            stats_port: free_port().unwrap(),
            ipv4_compat: false,
            ..TranslateOptions::default()
        };
        let mut dag = world(hosts, &a, &b);
        let mut translator = Translator::new(opts.clone());
        cache.set(INSTANCE, translator.translate(&dag).unwrap());
        let bootstrap = build_bootstrap(&BootstrapOptions::new(
            ObjKey::new("team-a", "gw"),
            "127.0.0.1",
            xds_port,
        ));
        let envoy = Envoy::builder(bootstrap.to_string())
            .local_admin_socket()
            .log_level("warn")
            .ready_timeout(Duration::from_secs(300))
            .start()
            .await
            .unwrap();
        let edited = hosts / 2;
        let fqdn = dag.virtual_hosts[edited].fqdn.clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        while answered_by(opts.http_port, &fqdn).await.as_deref() != Some("a") {
            assert!(Instant::now() < deadline, "{fqdn} never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let mut full = Vec::new();
        let mut incremental = Vec::new();
        let mut latency = Vec::new();
        let mut size = 0;
        for edit in 0..EDITS {
            let target = if edit % 2 == 0 { "b" } else { "a" };
            dag.virtual_hosts[edited] = host(edited, target);
            let started = Instant::now();
            let resources = translator.translate(&dag).unwrap();
            incremental.push(millis(started.elapsed()));
            size = resources.by_type[type_url::ROUTE][HTTP_LISTENER]
                .resource
                .value
                .len();
            cache.set(INSTANCE, resources);
            while answered_by(opts.http_port, &fqdn).await.as_deref() != Some(target) {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "edit {edit} never reached Envoy"
                );
            }
            latency.push(millis(started.elapsed()));
            // The reference, for comparison (not on the measured path).
            let started = Instant::now();
            let reference = InstanceResources::from(&translate(&dag, &opts).unwrap());
            full.push(millis(started.elapsed()));
            assert_eq!(reference, translator.translate(&dag).unwrap());
        }
        for v in [&mut full, &mut incremental, &mut latency] {
            v.sort_by(f64::total_cmp);
        }
        println!(
            "| {hosts} | {size} | {:.1} | {:.2} | {:.1} | {:.1} |",
            full[EDITS / 2],
            incremental[EDITS / 2],
            latency[EDITS / 2],
            latency[EDITS - 1]
        );
        drop(envoy);
        let _ = stop.send(());
        let _ = server.await;
    }
}
