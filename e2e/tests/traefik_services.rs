//! TraefikServices and service options through `sluice standalone` and a real Envoy, observed
//! at the backends: a nested weighted split in its exact proportions, mirrors receiving copies
//! (every one, or a percentage), TLS to a backend whose certificate a test CA issued (checked
//! against the ServersTransport's serverName and rootCAs), and cross-namespace references
//! refused until the Gateway opts in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use sluice_e2e::backend::Backend;
use sluice_e2e::client::Request;
use sluice_e2e::manifests::{self, Manifests, ca_secret, doc, service};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::TestCa;
use sluice_e2e::try_wait_for;

/// Bound on waiting for configuration to reach Envoy (only bounds a broken test).
const WAIT: Duration = Duration::from_secs(30);

fn traefik(kind: &str, ns: &str, name: &str, spec: Value) -> String {
    manifests::traefik(kind, ns, name, None, spec)
}

/// An IngressRoute `apps/<name>` for `host` on `web`, whose one route lists `services`.
fn route(name: &str, host: &str, services: Value) -> String {
    traefik(
        "IngressRoute",
        "apps",
        name,
        json!({"entryPoints": ["web"], "routes": [
            {"match": format!("Host(`{host}`)"), "services": services}
        ]}),
    )
}

fn services(ns: &str, backends: &[&Backend]) -> String {
    backends
        .iter()
        .map(|b| service(ns, b.name(), 80, &[b.port()]))
        .collect()
}

/// Polls until `request` on `port` is answered by a response `accept` takes.
/// `(namespace/name → (status, description))` of the Traefik routes `sluice render` reports.
async fn verdicts(dir: &Manifests) -> BTreeMap<String, (String, String)> {
    let path = dir.path().display().to_string();
    let out = sluice_e2e::sluice::run(&["render", "--manifests", &path])
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut all = BTreeMap::new();
    for g in report["gateways"].as_array().unwrap() {
        for e in g["ingressRoutes"].as_array().unwrap() {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            // Routes only: a Middleware or ServersTransport may share a route's name.
            if !["", "IngressRoute", "IngressRouteTCP"].contains(&f("kind").as_str()) {
                continue;
            }
            all.insert(
                format!("{}/{}", f("namespace"), f("name")),
                (f("currentStatus"), f("description")),
            );
        }
    }
    all
}

/// Within `n` requests, `count` is `share` of them give or take five standard deviations
/// (Envoy picks weighted clusters at random).
fn near(count: u64, n: u64, share: f64) -> bool {
    let expected = n as f64 * share;
    let sd = (n as f64 * share * (1.0 - share)).sqrt();
    (count as f64 - expected).abs() <= 5.0 * sd
}

/// A route to a TraefikService splitting 3:1 between `a` and a TraefikService that splits 1:3
/// between `b` and `c`: shares 12/16, 1/16, 3/16 (what Traefik sends). Another route mirrors
/// every request of `main` to `shadow` (the same method, path, body and Host) and half of them
/// to `half`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_weights_split_and_mirrors_receive_copies() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let c = Backend::start("c").await.unwrap();
    let main = Backend::start("main").await.unwrap();
    let shadow = Backend::start("shadow").await.unwrap();
    let half = Backend::start("half").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services("apps", &[&a, &b, &c, &main, &shadow, &half]),
    )
    .unwrap();
    let objects = traefik(
        "TraefikService",
        "apps",
        "top",
        json!({"weighted": {"services": [
            {"name": "a", "port": 80, "weight": 3},
            {"name": "inner", "kind": "TraefikService", "weight": 1},
        ]}}),
    ) + &traefik(
        "TraefikService",
        "apps",
        "inner",
        json!({"weighted": {"services": [
            {"name": "b", "port": 80, "weight": 1},
            {"name": "c", "port": 80, "weight": 3},
        ]}}),
    ) + &traefik(
        "TraefikService",
        "apps",
        "copy",
        json!({"mirroring": {"name": "main", "port": 80, "mirrors": [
            {"name": "shadow", "port": 80, "percent": 100},
            {"name": "half", "port": 80, "percent": 50},
        ]}}),
    ) + &route(
        "split",
        "split.example.com",
        json!([{"name": "top", "kind": "TraefikService"}]),
    ) + &route(
        "mirror",
        "mirror.example.com",
        json!([{"name": "copy", "kind": "TraefikService"}]),
    );
    dir.write("traefik.yaml", &objects).unwrap();
    let v = verdicts(&dir).await;
    assert_eq!(v["apps/split"].0, "valid", "{v:?}");
    assert_eq!(v["apps/mirror"].0, "valid", "{v:?}");
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;

    sluice.echo_ok(http, "split.example.com").await.unwrap();
    const N: u64 = 800;
    for x in [&a, &b, &c] {
        x.control().reset_counts();
    }
    for _ in 0..N {
        let resp = Request::get("split.example.com", "/")
            .send(http)
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
    }
    let counts = [&a, &b, &c].map(|x| x.control().request_count());
    assert_eq!(counts.iter().sum::<u64>(), N);
    assert!(
        near(counts[0], N, 12.0 / 16.0)
            && near(counts[1], N, 1.0 / 16.0)
            && near(counts[2], N, 3.0 / 16.0),
        "a, b, c got {counts:?} of {N}; expected 600, 50, 150"
    );

    sluice.echo_ok(http, "mirror.example.com").await.unwrap();
    // Mirrors are sent after the first answer: let them settle, then count from zero.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for x in [&main, &shadow, &half] {
        x.control().reset_counts();
    }
    const M: u64 = 200;
    for i in 0..M {
        let resp = Request::new("POST", "mirror.example.com", &format!("/items/{i}"))
            .body(format!("body {i}"))
            .send(http)
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.echo().unwrap().backend, "main");
    }
    try_wait_for("every request mirrored to shadow", WAIT, async || {
        Ok((shadow.control().request_count() >= M).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(main.control().request_count(), M);
    assert_eq!(shadow.control().request_count(), M);
    let copies = shadow.control().received();
    let copy = copies.iter().find(|e| e.path == "/items/7").unwrap();
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.body, "body 7");
    // Traefik keeps the Host; Envoy would append "-shadow" unless told not to.
    assert_eq!(copy.header("host"), Some("mirror.example.com"));
    let halves = half.control().request_count();
    assert!(near(halves, M, 0.5), "half got {halves} of {M}");
}

/// `port: 443` means https to Traefik: TLS to a backend whose certificate the test CA issued
/// for `backend.internal`, sent that name as SNI and checked against the ServersTransport's
/// root CA. The same backend behind a transport naming another server fails verification (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_against_server_name_and_root_cas() {
    let ca = TestCa::new("backend CA").unwrap();
    let cert = ca.issue(&["backend.internal"]).unwrap();
    let secure = Backend::start_tls("secure", &cert).await.unwrap();
    let dir = Manifests::new().unwrap();
    let objects = service("apps", "secure", 443, &[secure.port()])
        + "---\n"
        + &ca_secret("apps", "backend-ca", &ca.cert_pem())
        + &traefik(
            "ServersTransport",
            "apps",
            "good",
            json!({"serverName": "backend.internal", "rootCAs": [{"secret": "backend-ca"}]}),
        )
        + &traefik(
            "ServersTransport",
            "apps",
            "wrong-name",
            json!({"serverName": "other.internal", "rootCAs": [{"secret": "backend-ca"}]}),
        )
        + &route(
            "tls",
            "tls.example.com",
            json!([{"name": "secure", "port": 443, "serversTransport": "good"}]),
        )
        + &route(
            "mismatch",
            "mismatch.example.com",
            json!([{"name": "secure", "port": 443, "serversTransport": "wrong-name"}]),
        )
        + &route(
            "plain",
            "plain.example.com",
            json!([{"name": "secure", "port": 443}]),
        );
    dir.write("objects.yaml", &objects).unwrap();
    let v = verdicts(&dir).await;
    assert_eq!(v["apps/tls"].0, "valid", "{v:?}");
    assert_eq!(v["apps/plain"].0, "invalid");
    assert!(
        v["apps/plain"].1.contains("needs a serversTransport"),
        "{v:?}"
    );
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;

    let echo = sluice.echo_ok(http, "tls.example.com").await.unwrap();
    assert_eq!(echo.backend, "secure");
    assert_eq!(echo.tls_sni.as_deref(), Some("backend.internal"));
    let resp = Request::get("mismatch.example.com", "/")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        secure
            .control()
            .received()
            .iter()
            .all(|e| e.tls_sni.as_deref() == Some("backend.internal")),
        "no request passed a handshake with the wrong name"
    );
}

fn gateway(allow: bool) -> String {
    doc(&json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"namespace": "ingress", "name": "gw"},
        "spec": if allow { json!({"allowCrossNamespace": true}) } else { json!({}) },
    }))
}

/// A route of `apps` to a Service of `team-b` and to a TraefikService of `team-b` (whose own
/// Service reference is relative to `team-b`): refused while the Gateway leaves
/// `allowCrossNamespace` unset, served once it sets it (a live edit of the Gateway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_references_wait_for_the_gateway_opt_in() {
    let other = Backend::start("other").await.unwrap();
    let split = Backend::start("split").await.unwrap();
    let own = Backend::start("own").await.unwrap();
    let dir = Manifests::new().unwrap();
    let objects = services("team-b", &[&other, &split])
        + &services("apps", &[&own])
        + &traefik(
            "TraefikService",
            "team-b",
            "shared",
            json!({"weighted": {"services": [{"name": "split", "port": 80}]}}),
        )
        + &route(
            "svc",
            "svc.example.com",
            json!([{"name": "other", "namespace": "team-b", "port": 80}]),
        )
        + &route(
            "ts",
            "ts.example.com",
            json!([{"name": "shared", "namespace": "team-b", "kind": "TraefikService"}]),
        )
        + &route(
            "own",
            "own.example.com",
            json!([{"name": "own", "port": 80}]),
        );
    dir.write("objects.yaml", &objects).unwrap();
    dir.write("gateway.yaml", &gateway(false)).unwrap();
    let v = verdicts(&dir).await;
    for (key, what) in [
        ("apps/svc", "Service team-b/other"),
        ("apps/ts", "TraefikService team-b/shared"),
    ] {
        assert_eq!(v[key].0, "invalid", "{v:?}");
        assert!(
            v[key].1.contains(&format!(
                "{what} is in another namespace: cross-namespace references are refused unless \
                 the Gateway sets spec.allowCrossNamespace"
            )),
            "{v:?}"
        );
    }
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.instance("ingress/gw", WAIT).await.unwrap().http;
    sluice.echo_ok(http, "own.example.com").await.unwrap();
    for host in ["svc.example.com", "ts.example.com"] {
        let resp = Request::get(host, "/").send(http).await.unwrap();
        assert_eq!(resp.status, 404, "{host} is not served");
    }
    assert_eq!(
        other.control().request_count() + split.control().request_count(),
        0
    );

    dir.write("gateway.yaml", &gateway(true)).unwrap();
    assert_eq!(
        sluice
            .echo_ok(http, "svc.example.com")
            .await
            .unwrap()
            .backend,
        "other"
    );
    assert_eq!(
        sluice
            .echo_ok(http, "ts.example.com")
            .await
            .unwrap()
            .backend,
        "split"
    );
    let v = verdicts(&dir).await;
    assert_eq!(v["apps/svc"].0, "valid", "{v:?}");
    assert_eq!(v["apps/ts"].0, "valid", "{v:?}");
}
