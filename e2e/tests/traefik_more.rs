//! Traefik service options through `sluice standalone` and a real Envoy, observed at the
//! backends and the client: `passHostHeader: false` (the backend's `ip:port` as Host), sticky
//! cookies (the cookie's attributes, and a client pinned to one server), `scheme: h2c` and
//! `strategy: p2c`, and active health
//! checks (failing servers taken out, no server healthy answering 503, the checks' method,
//! headers, Host and port).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Request, Response};
use sluice_e2e::manifests::{self, Manifests, service};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::try_wait_for;

/// Bound on waiting for configuration or health to reach Envoy (only bounds a broken test).
const WAIT: Duration = Duration::from_secs(30);

/// A Traefik object of `kind` named `apps/<name>`.
fn traefik(kind: &str, name: &str, spec: Value) -> String {
    manifests::traefik(kind, "apps", name, None, spec)
}

/// An IngressRoute `apps/<name>` for `<name>.example.com` on `web` with one route to `services`.
fn route(name: &str, services: Value) -> String {
    traefik(
        "IngressRoute",
        name,
        json!({"entryPoints": ["web"], "routes": [
            {"match": format!("Host(`{name}.example.com`)"), "services": services}
        ]}),
    )
}

/// Polls until `request` on `port` gets a response `accept` takes.
async fn start(objects: &str) -> (Manifests, Standalone, u16) {
    let dir = Manifests::new().unwrap();
    dir.write("objects.yaml", objects).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;
    (dir, sluice, http)
}

/// Traefik sends the server's URL host (`ip:port`) as Host with `passHostHeader: false`; the
/// route without it keeps the client's Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_host_header_false_sends_the_backend_address() {
    let a = Backend::start("a").await.unwrap();
    let objects = service("apps", "a", 80, &[a.port()])
        + &route(
            "addr",
            json!([{"name": "a", "port": 80, "passHostHeader": false}]),
        )
        + &route("kept", json!([{"name": "a", "port": 80}]));
    let (_dir, mut sluice, http) = start(&objects).await;
    for (host, expected) in [
        ("addr.example.com", format!("127.0.0.1:{}", a.port())),
        ("kept.example.com", "kept.example.com".to_owned()),
    ] {
        let resp = sluice
            .answer(
                http,
                &Request::get(host, "/x"),
                &format!("{host} answered"),
                |r| r.status == 200,
            )
            .await
            .unwrap();
        assert_eq!(
            resp.echo().unwrap().header("host"),
            Some(expected.as_str()),
            "{host}"
        );
    }
}

/// The cookie Envoy issues carries the attributes asked for (`HttpOnly` always, as the README
/// says), and a client sending it back keeps reaching one server; other cookie values reach the
/// other server. In the same Envoy: `scheme: h2c` speaks HTTP/2 to a backend that speaks
/// nothing else, and `strategy: p2c` balances over both servers of its Service, sparing the
/// slower one as least-request does (round robin does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookies_h2c_and_p2c_reach_their_servers() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let h2c = Backend::start_h2c("h2c").await.unwrap();
    let objects = service("apps", "ab", 80, &[a.port(), b.port()])
        + &service("apps", "h2", 80, &[h2c.port()])
        + &route(
            "sticky",
            json!([{"name": "ab", "port": 80, "sticky": {"cookie": {
                "name": "pin", "secure": true, "sameSite": "lax", "maxAge": 60,
            }}}]),
        )
        + &route(
            "session",
            json!([{"name": "ab", "port": 80, "sticky": {"cookie": {
                "name": "sess", "httpOnly": false, "sameSite": "strict",
            }}}]),
        )
        + &route("h2c", json!([{"name": "h2", "port": 80, "scheme": "h2c"}]))
        + &route("h1", json!([{"name": "h2", "port": 80}]))
        + &route("rr", json!([{"name": "ab", "port": 80}]))
        + &route(
            "p2c",
            json!([{"name": "ab", "port": 80, "strategy": "p2c"}]),
        );
    let (_dir, mut sluice, http) = start(&objects).await;
    let first = sluice
        .answer(
            http,
            &Request::get("sticky.example.com", "/"),
            "the sticky route to answer with a cookie",
            |r| r.status == 200 && r.header("set-cookie").is_some(),
        )
        .await
        .unwrap();
    let attributes = |set_cookie: &str| -> BTreeSet<String> {
        set_cookie
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect()
    };
    let set_cookie = first.header("set-cookie").unwrap().to_owned();
    assert_eq!(
        attributes(&set_cookie),
        ["httponly", "max-age=60", "path=/", "samesite=lax", "secure"]
            .map(str::to_owned)
            .into(),
        "{set_cookie}"
    );
    // A session cookie (no maxAge): no Max-Age, not Secure, HttpOnly although httpOnly: false.
    let session = Request::get("session.example.com", "/")
        .send(http)
        .await
        .unwrap();
    let session_cookie = session.header("set-cookie").unwrap();
    assert!(session_cookie.starts_with("sess="), "{session_cookie}");
    assert_eq!(
        attributes(session_cookie),
        ["httponly", "path=/", "samesite=strict"]
            .map(str::to_owned)
            .into(),
        "{session_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("pin="), "{set_cookie}");
    let pinned = first.echo().unwrap().backend;
    for _ in 0..30 {
        let resp = Request::get("sticky.example.com", "/")
            .cookie(&cookie)
            .send(http)
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.echo().unwrap().backend, pinned, "with {cookie}");
        assert!(
            resp.header("set-cookie").is_none(),
            "a client with the cookie gets no new one"
        );
    }
    // Other values pin to both servers: it is the cookie, not the connection, that decides.
    let mut seen = BTreeSet::new();
    for i in 0..64 {
        let resp = Request::get("sticky.example.com", "/")
            .cookie(&format!("pin=client-{i}"))
            .send(http)
            .await
            .unwrap();
        seen.insert(resp.echo().unwrap().backend);
    }
    assert_eq!(seen.len(), 2, "64 cookie values all reached {seen:?}");

    // h2c: the backend answers HTTP/2 only (an HTTP/1.1 request to it gets no answer), so its
    // echo through Envoy proves Envoy spoke HTTP/2 to it; the same Service without the scheme
    // is spoken to in HTTP/1.1 and fails.
    assert!(
        Request::get("h2c.example.com", "/")
            .timeout(Duration::from_secs(2))
            .send(h2c.port())
            .await
            .is_err(),
        "the h2c backend answered HTTP/1.1"
    );
    let echo = Request::get("h2c.example.com", "/x?y=1")
        .send(http)
        .await
        .unwrap()
        .echo()
        .unwrap();
    assert_eq!(
        (
            echo.backend.as_str(),
            echo.path.as_str(),
            echo.header("host")
        ),
        ("h2c", "/x?y=1", Some("h2c.example.com"))
    );
    let h1 = Request::get("h1.example.com", "/")
        .send(http)
        .await
        .unwrap();
    assert_eq!(h1.status, 502, "HTTP/1.1 to the h2c backend: {}", h1.text());

    // p2c: Envoy's least-request over both servers of the Service. With `a` slow, so that it
    // always has requests in flight while `b` has none, p2c sends it a request only when both
    // of its two random picks are `a` (1/4), where round robin (the same Service without the
    // strategy) sends it half. 120 requests: p2c's share of 3/8 or more is 3 standard
    // deviations away.
    a.control().set_delay(Duration::from_millis(300));
    let slow_share = async |host: &'static str| {
        a.control().reset_counts();
        b.control().reset_counts();
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..120 {
            requests.spawn(async move { Request::get(host, "/").send(http).await.unwrap() });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while let Some(resp) = requests.join_next().await {
            assert_eq!(resp.unwrap().status, 200, "{host}");
        }
        let (a_n, b_n) = (a.control().request_count(), b.control().request_count());
        assert_eq!(a_n + b_n, 120, "{host}");
        a_n
    };
    let p2c = slow_share("p2c.example.com").await;
    let round_robin = slow_share("rr.example.com").await;
    a.control().set_delay(Duration::ZERO);
    assert!(
        p2c > 0 && p2c < 45,
        "p2c sent {p2c} of 120 requests to the slow server"
    );
    assert!(
        round_robin >= 45,
        "round robin sent {round_robin} of 120 to the slow server"
    );
    sluice.check_running().unwrap();
}

/// A server failing its checks gets no traffic; with none healthy the route answers 503 (as
/// Traefik does, no "panic" spreading); healed, it serves again. The checks carry the method,
/// headers and Host asked for, and go to the health port when one is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_failing_servers_out() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let probe = Backend::start("probe").await.unwrap();
    let served = Backend::start("served").await.unwrap();
    let health = Backend::start("health").await.unwrap();
    for x in [&a, &b, &health] {
        x.control().set_health_path("/health");
    }
    let objects = service("apps", "ab", 80, &[a.port(), b.port()])
        + &service("apps", "probe", 80, &[probe.port()])
        + &service("apps", "served", 80, &[served.port()])
        + &route(
            "checked",
            json!([{"name": "ab", "port": 80, "healthCheck": {
                "path": "/health", "interval": "200ms", "timeout": "1s",
            }}]),
        )
        + &route(
            "probed",
            json!([{"name": "probe", "port": 80, "healthCheck": {
                "path": "/probe?full=1", "method": "POST", "interval": "200ms",
                "headers": {"X-Check": "yes %d"},
            }}]),
        )
        + &route(
            "named",
            json!([{"name": "probe", "port": 80, "healthCheck": {
                "path": "/named", "interval": "200ms", "hostname": "check.internal",
            }}]),
        )
        + &route(
            "ported",
            json!([{"name": "served", "port": 80, "healthCheck": {
                "path": "/health", "interval": "200ms", "port": health.port(),
            }}]),
        );
    let (_dir, mut sluice, http) = start(&objects).await;
    let answered_by = |want: &'static str| move |r: &Response| r.backend().as_deref() == Some(want);
    let get = Request::get("checked.example.com", "/");
    sluice
        .answer(http, &get, "a to answer", answered_by("a"))
        .await
        .unwrap();
    sluice
        .answer(http, &get, "b to answer", answered_by("b"))
        .await
        .unwrap();

    b.control().set_healthy(false);
    // Once b is out, every request goes to a.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..20 {
        let resp = get.send(http).await.unwrap();
        assert_eq!(resp.backend().as_deref(), Some("a"), "{}", resp.text());
    }
    a.control().set_healthy(false);
    sluice
        .answer(http, &get, "503 with no server healthy", |r| {
            r.status == 503
        })
        .await
        .unwrap();
    b.control().set_healthy(true);
    sluice
        .answer(http, &get, "b back", answered_by("b"))
        .await
        .unwrap();

    // The checks as the backend saw them (its health path is elsewhere, so they are recorded).
    let seen = try_wait_for("probe checks", WAIT, async || {
        let all = probe.control().received();
        let by_path = |p: &str| all.iter().find(|e| e.path == p).cloned();
        Ok(by_path("/probe?full=1").zip(by_path("/named")))
    })
    .await
    .unwrap();
    let (probed, named) = seen;
    assert_eq!(probed.method, "POST");
    assert_eq!(probed.header("x-check"), Some("yes %d"));
    assert_eq!(
        probed.header("host"),
        Some(format!("127.0.0.1:{}", probe.port()).as_str()),
        "Traefik's checks carry the server's address"
    );
    assert_eq!(named.method, "GET");
    assert_eq!(named.header("host"), Some("check.internal"));

    // Checks go to the health port: its answer decides for the server on the traffic port.
    let ported = Request::get("ported.example.com", "/");
    sluice
        .answer(http, &ported, "served", answered_by("served"))
        .await
        .unwrap();
    assert!(health.control().health_check_count() > 0);
    assert_eq!(served.control().health_check_count(), 0);
    health.control().set_healthy(false);
    sluice
        .answer(http, &ported, "503 once the port fails", |r| {
            r.status == 503
        })
        .await
        .unwrap();
    health.control().set_healthy(true);
    sluice
        .answer(http, &ported, "served again", answered_by("served"))
        .await
        .unwrap();
}

/// `headers.allowedHosts`: a Host in none of the names gets Traefik's `500 Bad Host` (the
/// backend never sees it); the names compare case-insensitively.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_answer_other_hosts_500_bad_host() {
    let a = Backend::start("a").await.unwrap();
    let objects = service("apps", "a", 80, &[a.port()])
        + &traefik(
            "Middleware",
            "only-allowed",
            json!({"headers": {"allowedHosts": ["allowed.example.com"]}}),
        )
        + &traefik(
            "IngressRoute",
            "hosts",
            json!({"entryPoints": ["web"], "routes": [{
                "match": "Host(`allowed.example.com`) || Host(`other.example.com`)",
                "middlewares": [{"name": "only-allowed"}],
                "services": [{"name": "a", "port": 80}],
            }]}),
        );
    let (_dir, mut sluice, http) = start(&objects).await;
    sluice
        .answer(
            http,
            &Request::get("allowed.example.com", "/"),
            "the allowed host served",
            |r| r.status == 200,
        )
        .await
        .unwrap();
    let upper = Request::get("ALLOWED.example.com", "/")
        .send(http)
        .await
        .unwrap();
    assert_eq!(upper.status, 200, "{}", upper.text());
    a.control().reset_counts();
    let other = Request::get("other.example.com", "/x")
        .send(http)
        .await
        .unwrap();
    assert_eq!(other.status, 500);
    assert_eq!(other.text(), "Bad Host\n");
    assert_eq!(
        other.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(a.control().request_count(), 0, "the backend saw it");
}

/// `compress`: the route listing it answers gzip to a client that accepts it; a Traefik route
/// without it is not compressed (the Gateway's compressor is off there, as Traefik does not
/// compress unless asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compress_switches_the_gateways_compressor_per_route() {
    let a = Backend::start("a").await.unwrap();
    let objects = service("apps", "a", 80, &[a.port()])
        + &traefik("Middleware", "gzip", json!({"compress": {}}))
        + &traefik(
            "IngressRoute",
            "docs",
            json!({"entryPoints": ["web"], "routes": [
                {"match": "Host(`docs.example.com`) && PathPrefix(`/static`)",
                 "middlewares": [{"name": "gzip"}], "services": [{"name": "a", "port": 80}]},
                {"match": "Host(`docs.example.com`)", "services": [{"name": "a", "port": 80}]},
            ]}),
        );
    let (_dir, mut sluice, http) = start(&objects).await;
    let get = |path: &str| {
        Request::get("docs.example.com", path)
            .header("accept-encoding", "gzip")
            // Long enough for any threshold.
            .header("x-pad", &"p".repeat(2048))
    };
    let compressed = sluice
        .answer(
            http,
            &get("/static/app.js"),
            "the compress route answered",
            |r| r.status == 200,
        )
        .await
        .unwrap();
    assert_eq!(
        compressed.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        compressed.headers
    );
    let plain = get("/page").send(http).await.unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-encoding"),
        None,
        "{:?}",
        plain.headers
    );
    assert!(plain.echo().is_ok(), "a plain JSON echo");
}
