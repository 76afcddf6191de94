//! Traefik catch-all and wildcard hosts through `sluice standalone` and a real Envoy: rules
//! without `Host()` and `HostRegexp()` alone answer only names nobody on the Gateway holds,
//! `Host(`*.example.com`)` answers the names one label under its parent that nobody holds
//! exactly, over plain HTTP and over HTTPS with its own wildcard certificate, and ownership
//! between wildcards and exact names goes to the older, live.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Request, Response, WebSocket};
use sluice_e2e::manifests::{self, Manifests, doc, service, tls_secret};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::try_wait_for;

/// Bound on waiting for configuration to reach Envoy (only bounds a broken test).
const WAIT: Duration = Duration::from_secs(30);

fn traefik_route(ns: &str, name: &str, created: &str, spec: Value) -> String {
    manifests::traefik("IngressRoute", ns, name, Some(created), spec)
}

/// A Contour root `ns/name` for `fqdn`, routing `/` to Service `service`.
fn contour_root(ns: &str, name: &str, created: &str, fqdn: &str, service: &str) -> String {
    doc(&json!({
        "apiVersion": "contour.heptio.com/v1beta1",
        "kind": "IngressRoute",
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
        "spec": {"virtualhost": {"fqdn": fqdn},
                 "routes": [{"match": "/", "services": [{"name": service, "port": 80}]}]},
    }))
}

/// Service `ns/<backend name>` on port 80 with the backend as its endpoint.
fn svc(ns: &str, b: &Backend) -> String {
    service(ns, b.name(), 80, &[b.port()])
}

fn to(service: &str) -> Value {
    json!([{"name": service, "port": 80}])
}

async fn start(dir: &Manifests) -> (Standalone, InstancePorts) {
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    (sluice, ports)
}

/// Status and answering backend of `GET http://{host}{path}` now.
async fn http(port: u16, host: &str, path: &str) -> (u16, String) {
    answer(Request::get(host, path).send(port).await.unwrap())
}

fn answer(resp: Response) -> (u16, String) {
    let backend = resp.echo().map(|e| e.backend).unwrap_or_default();
    (resp.status, backend)
}

/// Polls until `GET http://{host}/` is answered 200 by `expected`.
async fn wait_for(sluice: &mut Standalone, port: u16, host: &str, expected: &str) {
    let mut last = (0, String::new());
    let what = format!("http://{host}/ to reach {expected}");
    let result = try_wait_for(&what, WAIT, async || {
        sluice.check_running()?;
        // The listener may not be up yet.
        last = match Request::get(host, "/").send(port).await {
            Ok(resp) => answer(resp),
            Err(_) => (0, String::new()),
        };
        Ok((last == (200, expected.to_owned())).then_some(()))
    })
    .await;
    result
        .with_context(|| format!("last answer: {last:?}\n{}", sluice.process().log_tail(40)))
        .unwrap();
}

/// A catch-all (rules without Host(), HostRegexp alone) and a wildcard next to exact names of
/// both dialects: each request reaches the holder of its name, whatever its case or port; the
/// catch-all gets only names nobody holds, a held name whose owner is invalid answers 404
/// instead of falling through, and an HTTPS-only name is redirected, not caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_all_and_wildcard_get_only_names_nobody_holds() {
    let owned = Backend::start("owned").await.unwrap();
    let wild = Backend::start("wild").await.unwrap();
    let catch = Backend::start("catch").await.unwrap();
    let regex = Backend::start("regex").await.unwrap();
    let dir = Manifests::new().unwrap();
    let objects = svc("team-a", &owned)
        + &svc("team-w", &wild)
        + &svc("team-c", &catch)
        + &svc("team-c", &regex)
        // Invalid (no such Service), and older than everything: it keeps its name.
        + &contour_root("team-h", "held", "2023-01-01T00:00:00Z", "held.example.com", "gone")
        + &contour_root("team-a", "site", "2024-01-01T00:00:00Z", "owned.example.com", "owned")
        + &traefik_route(
            "team-w",
            "wild",
            "2025-01-01T00:00:00Z",
            json!({"entryPoints": ["web"], "routes": [
                {"match": "Host(`*.example.com`)", "services": to("wild")},
            ]}),
        )
        + &traefik_route(
            "team-c",
            "default",
            "2026-01-01T00:00:00Z",
            json!({"entryPoints": ["web"], "routes": [
                {"match": "PathPrefix(`/`)", "services": to("catch")},
                // Longer, so first: HostRegexp alone, inside the catch-all.
                {"match": "HostRegexp(`^api\\.[a-z]+\\.test$`)", "services": to("regex")},
            ]}),
        );
    dir.write("objects.yaml", &objects).unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let p = ports.http;
    wait_for(&mut sluice, p, "nobody.test", "catch").await;
    // Everything is in one route configuration: in place now.
    let expect = [
        ("owned.example.com", (200, "owned")),
        ("owned.example.com:8080", (200, "owned")),
        ("OWNED.Example.COM", (200, "owned")),
        ("b.example.com", (200, "wild")),
        ("b.example.com:8080", (200, "wild")),
        ("B.EXAMPLE.com:1", (200, "wild")),
        ("b.example.com.", (200, "wild")),
        ("held.example.com", (404, "")),
        ("held.example.com:8080", (404, "")),
        ("HELD.example.com", (404, "")),
        ("example.com", (200, "catch")),
        ("nobody.test:8080", (200, "catch")),
        ("api.shop.test", (200, "regex")),
        ("api.shop.test.evil", (200, "catch")),
        // Envoy's *.example.com spans any depth: Traefik's one label does not match, and the
        // wildcard's virtual host answers 404 (README: differs).
        ("x.b.example.com", (404, "")),
    ];
    for (host, (status, backend)) in expect {
        assert_eq!(
            http(p, host, "/x").await,
            (status, backend.to_owned()),
            "Host: {host}"
        );
    }
    assert_eq!(owned.control().received().len(), 3);
    assert!(
        catch.control().received().iter().all(|e| !e
            .header("host")
            .unwrap_or("")
            .contains("example.com")
            || e.header("host") == Some("example.com")),
        "{:?}",
        catch.control().received()
    );
    // WebSocket upgrades reach the catch-all and the wildcard (Traefik proxies upgrades),
    // whatever the Host's case: the shared table needs no Lua lower-casing.
    for host in ["nobody.test", "B.Example.com"] {
        let mut ws = WebSocket::connect(p, host, "/ws").await.unwrap();
        assert_eq!(ws.round_trip("ping").await.unwrap(), "ping", "{host}");
        ws.close().await.unwrap();
    }
    // The port stays in the Host header the backend sees.
    let (_, _) = http(p, "b.example.com:8080", "/port").await;
    let last = wild.control().received().pop().unwrap();
    assert_eq!(last.header("host"), Some("b.example.com:8080"));
    sluice.check_running().unwrap();
}

/// A wildcard with `tls.secretName`: Envoy serves its wildcard certificate for names under the
/// parent that have no certificate of their own, an exact name's own certificate still wins,
/// and names held by others (served over plain HTTP only, or over HTTPS) answer 404 over the
/// wildcard's TLS session, never the wildcard's routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_certificate_never_serves_names_held_by_others() {
    let ca = TestCa::new("traefik hosts CA").unwrap();
    let wild_cert = ca.issue(&["*.example.com"]).unwrap();
    let exact_cert = ca.issue(&["e.example.com"]).unwrap();
    let wild = Backend::start("wild").await.unwrap();
    let exact = Backend::start("exact").await.unwrap();
    let plain = Backend::start("plain").await.unwrap();
    let dir = Manifests::new().unwrap();
    let objects = svc("team-w", &wild)
        + &svc("team-e", &exact)
        + &svc("team-p", &plain)
        + "---\n"
        + &tls_secret("team-w", "wild-cert", &wild_cert)
        + "---\n"
        + &tls_secret("team-e", "exact-cert", &exact_cert)
        + &contour_root(
            "team-p",
            "plain",
            "2024-01-01T00:00:00Z",
            "p.example.com",
            "plain",
        )
        + &traefik_route(
            "team-e",
            "exact",
            "2024-01-01T00:00:00Z",
            json!({"entryPoints": ["websecure"], "tls": {"secretName": "exact-cert"},
                   "routes": [{"match": "Host(`e.example.com`)", "services": to("exact")}]}),
        )
        + &traefik_route(
            "team-w",
            "wild",
            "2025-01-01T00:00:00Z",
            json!({"tls": {"secretName": "wild-cert"},
                   "routes": [{"match": "Host(`*.example.com`)", "services": to("wild")}]}),
        );
    dir.write("objects.yaml", &objects).unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();
    let https = |host: &'static str, client: TlsClient| async move {
        answer(
            Request::get(host, "/")
                .send_tls(ports.https, &client)
                .await
                .unwrap(),
        )
    };
    let resp = try_wait_for("https://b.example.com/", WAIT, async || {
        sluice.check_running()?;
        let resp = Request::get("b.example.com", "/")
            .send_tls(ports.https, &client)
            .await;
        Ok(resp.ok().filter(|r| r.status == 200))
    })
    .await
    .unwrap();
    assert_eq!(resp.echo().unwrap().backend, "wild");
    // The exact name's own certificate (verified for e.example.com only) and routes.
    let only_exact = TlsClient::trusting(&ca.cert_pem()).unwrap();
    assert_eq!(
        https("e.example.com", only_exact).await,
        (200, "exact".into())
    );
    // p.example.com is served over plain HTTP only by its owner: over HTTPS the wildcard's
    // certificate matches the name, but its routes never answer it.
    let c = || TlsClient::trusting(&ca.cert_pem()).unwrap();
    assert_eq!(https("p.example.com", c()).await, (404, String::new()));
    // A Host other than the SNI name: 404 on the wildcard's session too.
    let fronted = c().sni("b.example.com");
    assert_eq!(https("e.example.com", fronted).await, (404, String::new()));
    assert_eq!(
        answer(
            Request::get("B.Example.com:8443", "/")
                .send_tls(ports.https, &c().sni("b.example.com"))
                .await
                .unwrap()
        ),
        (200, "wild".into())
    );
    // Plain HTTP: the wildcard redirects its own names, the plain owner answers its own.
    let r = Request::get("b.example.com", "/a")
        .send(ports.http)
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("https://b.example.com/a"))
    );
    assert_eq!(
        http(ports.http, "p.example.com", "/").await,
        (200, "plain".into())
    );
    assert_eq!(plain.control().received().len(), 1);
    sluice.check_running().unwrap();
}

/// Live: an older wildcard refuses a younger exact name under it (the wildcard answers it);
/// once the wildcard is deleted the exact name is served by its owner; a wildcard created
/// after it no longer takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_exact_names_go_to_the_older_live() {
    let wild = Backend::start("wild").await.unwrap();
    let exact = Backend::start("exact").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &(svc("team-w", &wild) + &svc("team-a", &exact)),
    )
    .unwrap();
    dir.write(
        "exact.yaml",
        &contour_root(
            "team-a",
            "a",
            "2025-01-01T00:00:00Z",
            "a.example.com",
            "exact",
        ),
    )
    .unwrap();
    let wildcard = |created: &str| {
        traefik_route(
            "team-w",
            "wild",
            created,
            json!({"routes": [{"match": "Host(`*.example.com`)", "services": to("wild")}]}),
        )
    };
    dir.write("wild.yaml", &wildcard("2024-01-01T00:00:00Z"))
        .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let p = ports.http;
    wait_for(&mut sluice, p, "a.example.com", "wild").await;
    assert_eq!(http(p, "b.example.com", "/").await, (200, "wild".into()));
    assert_eq!(exact.control().request_count(), 0);

    dir.remove("wild.yaml").unwrap();
    wait_for(&mut sluice, p, "a.example.com", "exact").await;
    assert_eq!(http(p, "b.example.com", "/").await.0, 404);

    dir.write("wild.yaml", &wildcard("2026-01-01T00:00:00Z"))
        .unwrap();
    wait_for(&mut sluice, p, "b.example.com", "wild").await;
    assert_eq!(http(p, "a.example.com", "/").await, (200, "exact".into()));
    sluice.check_running().unwrap();
}
