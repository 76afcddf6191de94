//! Plain HTTP through scoped routes, with a real Envoy fed by Sluice's ADS server (Delta and
//! SotW): hosts route case-insensitively and with any port, unknown hosts get what the shared
//! route configuration gave them, WebSockets open only where a route enables them, edits,
//! additions and removals of hosts arrive, and a host that cannot be keyed moves the Gateway to
//! the shared `ingress_http` and back without losing traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::dag::Dag;
use sluice::dag::model::VirtualHost;
use sluice::provision::bootstrap::{AdsFlavour, BootstrapOptions, build_bootstrap};
use sluice::snapshot::ObjKey;
use sluice::xds::cache::{Cache, type_url};
use sluice::xds::server::{AdsServer, ServerMetrics};
use sluice::xds::translate::{TranslateOptions, Translator};
use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Request, Response, WebSocket};
use sluice_e2e::envoy::Envoy;
use sluice_e2e::envoy_port;

/// `fqdn` to `service`, with a WebSocket route at `/ws`.
#[path = "support/dag_fixture.rs"]
mod dag_fixture;
use dag_fixture::{INSTANCE, plain_host, route};

fn host(fqdn: &str, service: &str) -> VirtualHost {
    let owner = "team-a/root";
    let routes = vec![
        route("/ws", owner, service, true),
        route("/", owner, service, false),
    ];
    plain_host(fqdn, owner, routes)
}

/// The DAG of `hosts`, in name order.
fn dag(mut hosts: Vec<VirtualHost>, a: &Backend, b: &Backend) -> Dag {
    hosts.sort_by(|x, y| x.fqdn.cmp(&y.fqdn));
    dag_fixture::dag(hosts, a, b)
}

async fn send(port: u16, host: &str, path: &str) -> Response {
    Request::get(host, path)
        .timeout(Duration::from_secs(5))
        .send(port)
        .await
        .unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
}

/// Which backend answers `host` (None: Envoy itself answered).
async fn backend_of(port: u16, host: &str) -> Option<String> {
    send(port, host, "/").await.backend()
}

/// Polls until `host` is answered by `expected` (None: by Envoy, not a backend).
async fn wait_for(envoy: &Envoy, port: u16, host: &str, expected: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = backend_of(port, host).await;
        if got.as_deref() == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host} answered by {got:?}, not {expected:?}\n{}",
            envoy.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an unknown host gets, minus the date: status, headers and body.
async fn unknown_host_answer(port: u16) -> (u16, Vec<String>, Vec<u8>) {
    let r = send(port, "nobody.example.com", "/").await;
    let headers = r
        .headers
        .iter()
        .filter(|(n, _)| n != "date")
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    (r.status, headers, r.body)
}

/// Whether a WebSocket opens; the refusal's status otherwise.
async fn websocket(port: u16, host: &str, path: &str) -> Result<(), u16> {
    let request = Request::get(host, path).timeout(Duration::from_secs(5));
    match WebSocket::connect_with(port, request).await {
        Ok(mut ws) => {
            assert_eq!(ws.round_trip("ping").await.unwrap(), "ping");
            Ok(())
        }
        Err(sluice_e2e::Error::WebSocketRefused { status, .. }) => Err(status),
        Err(e) => panic!("websocket to {host}{path}: {e}"),
    }
}

async fn scoped_routes_with_envoy(ads: AdsFlavour) {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let xds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_port = xds.local_addr().unwrap().port();
    let cache = Arc::new(Cache::new());
    let metrics = Arc::new(ServerMetrics::new().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        AdsServer::new(cache.clone(), metrics.clone()).serve(xds, async {
            let _ = stopped.await;
        }),
    );
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
    let port = opts.http_port;
    let mut translator = Translator::new(opts);
    let mut publish = |d: &Dag| {
        let resources = translator.translate(d).unwrap();
        let scoped = resources.by_type().contains_key(type_url::SCOPED_ROUTE);
        cache.set(INSTANCE, resources);
        scoped
    };

    // Scoped: two hosts.
    let mut hosts = vec![host("one.example.com", "a"), host("two.example.com", "b")];
    assert!(publish(&dag(hosts.clone(), &a, &b)));
    let mut options = BootstrapOptions::new(ObjKey::new("team-a", "gw"), "127.0.0.1", xds_port);
    options.ads = ads;
    let envoy = Envoy::builder(build_bootstrap(&options).to_string())
        .local_admin_socket()
        .start()
        .await
        .unwrap();
    wait_for(&envoy, port, "one.example.com", Some("a")).await;
    wait_for(&envoy, port, "two.example.com", Some("b")).await;

    // Host names are case-insensitive and may carry a port.
    for name in [
        "ONE.example.com",
        "One.Example.COM:80",
        "one.example.com:8080",
    ] {
        assert_eq!(backend_of(port, name).await.as_deref(), Some("a"), "{name}");
    }
    assert_eq!(
        backend_of(port, "TWO.EXAMPLE.COM:1234").await.as_deref(),
        Some("b")
    );
    // Lower-case hosts reach the backend as sent; the others lower-cased.
    let echo = send(port, "one.example.com:80", "/").await.echo().unwrap();
    assert_eq!(echo.header("host"), Some("one.example.com:80"));
    let echo = send(port, "ONE.example.com", "/").await.echo().unwrap();
    assert_eq!(echo.header("host"), Some("one.example.com"));
    // A name close to a known one is not it.
    for name in [
        "one.example.com.",
        "xone.example.com",
        "one.example.co",
        "[::1]:80",
    ] {
        assert_eq!(backend_of(port, name).await, None, "{name}");
    }
    let unknown_scoped = unknown_host_answer(port).await;
    assert_eq!(unknown_scoped.0, 404);

    // WebSockets: where a route enables them, and only there.
    assert_eq!(websocket(port, "one.example.com", "/ws").await, Ok(()));
    assert_eq!(websocket(port, "one.example.com:80", "/ws").await, Ok(()));
    assert_eq!(websocket(port, "one.example.com", "/").await, Err(403));
    assert_eq!(websocket(port, "ONE.example.com", "/").await, Err(403));
    // Refused rather than let through on a route that does not enable them (see `scopes`).
    assert_eq!(websocket(port, "ONE.example.com", "/ws").await, Err(403));

    // An edit, an addition and a removal arrive.
    hosts[0] = host("one.example.com", "b");
    hosts.push(host("three.example.com", "a"));
    publish(&dag(hosts.clone(), &a, &b));
    wait_for(&envoy, port, "one.example.com", Some("b")).await;
    wait_for(&envoy, port, "three.example.com", Some("a")).await;
    hosts.retain(|h| h.fqdn != "two.example.com");
    publish(&dag(hosts.clone(), &a, &b));
    wait_for(&envoy, port, "two.example.com", None).await;
    assert_eq!(
        backend_of(port, "Three.example.com").await.as_deref(),
        Some("a")
    );

    // A wildcard cannot be keyed: the whole Gateway moves to the shared table, and back.
    let mut wild = hosts.clone();
    wild.push(host("*.wild.example.com", "b"));
    assert!(!publish(&dag(wild, &a, &b)));
    wait_for(&envoy, port, "x.wild.example.com", Some("b")).await;
    assert_eq!(
        backend_of(port, "ONE.example.com:80").await.as_deref(),
        Some("b")
    );
    assert_eq!(
        backend_of(port, "three.example.com").await.as_deref(),
        Some("a")
    );
    // The shared table's unknown-host answer is the scoped one.
    assert_eq!(unknown_host_answer(port).await, unknown_scoped);
    assert_eq!(websocket(port, "ONE.example.com", "/ws").await, Ok(()));
    assert!(publish(&dag(hosts.clone(), &a, &b)));
    wait_for(&envoy, port, "x.wild.example.com", None).await;
    assert_eq!(
        backend_of(port, "one.example.com").await.as_deref(),
        Some("b")
    );
    assert_eq!(
        backend_of(port, "THREE.example.com").await.as_deref(),
        Some("a")
    );

    // No plain-HTTP host at all: the listener stays on scoped routes (an empty name set is
    // keyable), but there is no scope resource to send, so every host is unknown.
    assert!(!publish(&dag(Vec::new(), &a, &b)));
    wait_for(&envoy, port, "one.example.com", None).await;
    assert_eq!(unknown_host_answer(port).await, unknown_scoped);

    for t in [
        type_url::LISTENER,
        type_url::SCOPED_ROUTE,
        type_url::ROUTE,
        type_url::CLUSTER,
        type_url::ENDPOINT,
    ] {
        assert_eq!(
            metrics.nacks(t),
            0,
            "Envoy rejected {t}:\n{}",
            envoy.log_tail(60)
        );
    }
    drop(envoy);
    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::test]
async fn scoped_routes_over_delta_ads() {
    scoped_routes_with_envoy(AdsFlavour::Delta).await;
}

#[tokio::test]
async fn scoped_routes_over_sotw_ads() {
    scoped_routes_with_envoy(AdsFlavour::Sotw).await;
}
