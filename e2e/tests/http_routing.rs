//! HTTP routing through `sluice standalone` and a real Envoy, observed the way a user would:
//! which backend answers, and what request it received. One test per feature of the
//! IngressRoute API: prefix matching, delegation, weights, prefix rewriting, WebSockets,
//! ExternalName services, and live edits of the manifest directory.
//!
//! Every test runs its own `sluice standalone` (own manifest directory, OS-chosen ports), so the
//! tests run in parallel. Configuration reaches Envoy asynchronously: each positive expectation
//! is polled until it holds; negative expectations are checked once a positive one from the
//! same configuration has been seen (a route configuration is one xDS resource, applied whole).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use sluice_e2e::backend::{Backend, Echo};
use sluice_e2e::client::{WebSocket, get};
use sluice_e2e::manifests::{Manifests, service};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::{Error, try_wait_for};

/// Bound on waiting for configuration to reach Envoy (only bounds a broken test).
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Manifest builders.

/// An IngressRoute; a root when `fqdn` is given.
fn ingress_route(namespace: &str, name: &str, fqdn: Option<&str>, routes: Vec<Value>) -> String {
    let mut spec = json!({ "routes": routes });
    if let Some(fqdn) = fqdn {
        spec["virtualhost"] = json!({ "fqdn": fqdn });
    }
    let doc = json!({
        "apiVersion": "contour.heptio.com/v1beta1",
        "kind": "IngressRoute",
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    });
    format!("---\n{doc}\n")
}

/// A route from `prefix` to `services` (see [`svc`], [`weighted`]).
fn route(prefix: &str, services: Vec<Value>) -> Value {
    json!({ "match": prefix, "services": services })
}

/// A service reference on port 80 (the port [`service`] manifests are written with).
fn svc(name: &str) -> Value {
    json!({ "name": name, "port": 80 })
}

fn weighted(name: &str, weight: u32) -> Value {
    json!({ "name": name, "port": 80, "weight": weight })
}

/// A route delegating `prefix` to the IngressRoute `name` (in `namespace`, or the parent's).
fn delegate(prefix: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut to = json!({ "name": name });
    if let Some(ns) = namespace {
        to["namespace"] = json!(ns);
    }
    json!({ "match": prefix, "delegate": to })
}

/// Services `namespace/<name>` on port 80, each with the given backend as its one endpoint.
fn services(namespace: &str, backends: &[(&str, &Backend)]) -> String {
    backends
        .iter()
        .map(|(name, b)| service(namespace, name, 80, &[b.port()]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running and probing.

/// Starts standalone on `dir` and waits for the instance `gateway` (the default instance when
/// `None`).
async fn start(dir: &Manifests, gateway: Option<&str>) -> anyhow::Result<(Standalone, u16)> {
    let mut sluice = Standalone::start(dir.path())?;
    let ports: InstancePorts = match gateway {
        Some(g) => sluice.instance(g, WAIT).await?,
        None => sluice.default_instance(WAIT).await?,
    };
    Ok((sluice, ports.http))
}

/// One GET over a fresh connection: status and, when a test backend answered, its echo.
async fn probe(port: u16, host: &str, path: &str) -> anyhow::Result<(u16, Option<Echo>)> {
    let resp = get(port, host, path).await?;
    Ok((resp.status, resp.echo().ok()))
}

/// Polls `GET http://host{path}` until backend `expected` answers it with 200, and returns what
/// that backend received. On timeout the error says what was answered instead, with sluice's
/// log.
async fn wait_backend(
    sluice: &mut Standalone,
    port: u16,
    host: &str,
    path: &str,
    expected: &str,
) -> anyhow::Result<Echo> {
    let mut last = String::from("nothing yet");
    let what = format!("http://{host}{path} to be answered by backend {expected:?}");
    let result = try_wait_for(&what, WAIT, async || {
        sluice.check_running()?;
        match get(port, host, path).await {
            Ok(resp) => {
                let echo = resp.echo().ok();
                if resp.status == 200
                    && let Some(echo) = echo.filter(|e| e.backend == expected)
                {
                    return Ok(Some(echo));
                }
                last = format!("{} {}", resp.status, resp.text());
            }
            Err(e) => last = e.to_string(),
        }
        Ok(None)
    })
    .await;
    result.with_context(|| {
        format!(
            "last answer: {last}\n--- sluice log ---\n{}",
            sluice.process().log_tail(40)
        )
    })
}

/// Asserts that `GET http://host{path}` is answered 200 by backend `expected`, now, and returns
/// what the backend received.
async fn assert_backend(port: u16, host: &str, path: &str, expected: &str) -> Echo {
    let (status, echo) = probe(port, host, path).await.unwrap();
    let echo = echo.unwrap_or_else(|| panic!("http://{host}{path}: no backend answered"));
    assert_eq!(
        (status, echo.backend.as_str()),
        (200, expected),
        "http://{host}{path}"
    );
    echo
}

/// Asserts that Envoy answers `GET http://host{path}` itself with 404 (no route).
async fn assert_not_routed(port: u16, host: &str, path: &str) {
    let (status, echo) = probe(port, host, path).await.unwrap();
    assert_eq!(status, 404, "http://{host}{path}");
    assert!(echo.is_none(), "http://{host}{path} reached {echo:?}");
}

/// `(namespace/name, status)` of every IngressRoute the instances of `dir` judge, as
/// `sluice render` reports them: the same build as `sluice standalone`'s, read from structured
/// output rather than from the wording of a log line.
async fn route_statuses(dir: &Manifests) -> anyhow::Result<Vec<(String, String)>> {
    let path = dir.path().display().to_string();
    let report: Value =
        serde_json::from_str(&sluice_e2e::sluice::run(&["render", "--manifests", &path]).await?)?;
    let mut statuses = Vec::new();
    for gateway in report["gateways"]
        .as_array()
        .context("no gateways in the report")?
    {
        for route in gateway["ingressRoutes"].as_array().into_iter().flatten() {
            let field = |f: &str| route[f].as_str().unwrap_or_default().to_owned();
            statuses.push((
                format!("{}/{}", field("namespace"), field("name")),
                field("currentStatus"),
            ));
        }
    }
    ensure!(
        !statuses.is_empty(),
        "no IngressRoute in the report: {report}"
    );
    Ok(statuses)
}

/// Fails unless every IngressRoute of `dir` is valid.
async fn assert_all_valid(dir: &Manifests) {
    let statuses = route_statuses(dir).await.unwrap();
    assert!(
        statuses.iter().all(|(_, status)| status == "valid"),
        "{statuses:?}"
    );
}

/// Sends `count` GETs, each on a fresh connection, `concurrency` at a time, and returns the
/// name of the backend that answered each (a non-backend answer fails).
async fn spray(port: u16, host: &str, path: &str, count: usize) -> anyhow::Result<Vec<String>> {
    const CONCURRENCY: usize = 8;
    let mut workers = JoinSet::new();
    for w in 0..CONCURRENCY {
        let n = count / CONCURRENCY + usize::from(w < count % CONCURRENCY);
        let (host, path) = (host.to_owned(), path.to_owned());
        workers.spawn(async move {
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                let resp = get(port, &host, &path).await?;
                ensure!(resp.status == 200, "{} {}", resp.status, resp.text());
                names.push(resp.echo()?.backend);
            }
            anyhow::Ok(names)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(names) = workers.join_next().await {
        all.extend(names??);
    }
    Ok(all)
}

// ---------------------------------------------------------------------------------------------
// 1. Prefix matching.

/// Envoy matches a prefix as a plain string prefix, not by path segment, and the longest prefix
/// wins whatever the order of the routes in the IngressRoute: `/blogx` goes to `/blog`'s
/// backend (as it did with Contour), `/blog/adminx` to `/blog/admin`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_prefix_wins() {
    let (home, blog, admin) = (
        Backend::start("home").await.unwrap(),
        Backend::start("blog").await.unwrap(),
        Backend::start("admin").await.unwrap(),
    );
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services(
            "default",
            &[("home", &home), ("blog", &blog), ("admin", &admin)],
        ),
    )
    .unwrap();
    // Shortest first: first-match in written order would send everything to `home`.
    dir.write(
        "route.yaml",
        &ingress_route(
            "default",
            "site",
            Some("site.example.com"),
            vec![
                route("/", vec![svc("home")]),
                route("/blog", vec![svc("blog")]),
                route("/blog/admin", vec![svc("admin")]),
            ],
        ),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "site.example.com";
    wait_backend(&mut sluice, http, host, "/blog/admin", "admin")
        .await
        .unwrap();

    for (path, expected) in [
        ("/", "home"),
        ("/about", "home"),
        ("/blo", "home"),
        ("/blog", "blog"),
        ("/blog/", "blog"),
        ("/blog/post?id=7", "blog"),
        ("/blogx", "blog"),
        ("/blog/admi", "blog"),
        ("/blog/admin", "admin"),
        ("/blog/admin/users", "admin"),
        ("/blog/adminx", "admin"),
    ] {
        let echo = assert_backend(http, host, path, expected).await;
        // No rewrite configured: the backend gets the path as sent.
        assert_eq!(echo.path, path);
    }
    assert_not_routed(http, "other.example.com", "/blog").await;
    sluice.check_running().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. Delegation.

/// A root delegates `/team` within its namespace and `/blog` to another namespace; the `team`
/// child delegates `/team/deep` further, to a third namespace. Each child's services are looked
/// up in the child's own namespace (`blog` exists in both `default` and `marketing`, with
/// different backends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_within_across_and_nested() {
    let root = Backend::start("root").await.unwrap();
    let team = Backend::start("team").await.unwrap();
    let blog = Backend::start("marketing-blog").await.unwrap();
    let decoy = Backend::start("default-blog").await.unwrap();
    let deep = Backend::start("ops-deep").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &(services(
            "default",
            &[("root", &root), ("team", &team), ("blog", &decoy)],
        ) + &services("marketing", &[("blog", &blog)])
            + &services("ops", &[("deep", &deep)])),
    )
    .unwrap();
    dir.write(
        "routes.yaml",
        &(ingress_route(
            "default",
            "root",
            Some("delegation.example.com"),
            vec![
                route("/", vec![svc("root")]),
                delegate("/team", "team", None),
                delegate("/blog", "blog", Some("marketing")),
            ],
        ) + &ingress_route(
            "default",
            "team",
            None,
            vec![
                route("/team", vec![svc("team")]),
                delegate("/team/deep", "deep", Some("ops")),
            ],
        ) + &ingress_route(
            "marketing",
            "blog",
            None,
            vec![route("/blog", vec![svc("blog")])],
        ) + &ingress_route(
            "ops",
            "deep",
            None,
            vec![route("/team/deep", vec![svc("deep")])],
        )),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "delegation.example.com";
    wait_backend(&mut sluice, http, host, "/team/deep/x", "ops-deep")
        .await
        .unwrap();
    wait_backend(&mut sluice, http, host, "/blog", "marketing-blog")
        .await
        .unwrap();

    for (path, expected) in [
        ("/", "root"),
        ("/other", "root"),
        ("/team", "team"),
        ("/team/members", "team"),
        ("/team/deep", "ops-deep"),
        ("/team/deep/x", "ops-deep"),
        ("/blog", "marketing-blog"),
        ("/blog/post", "marketing-blog"),
    ] {
        assert_backend(http, host, path, expected).await;
    }
    assert_eq!(decoy.control().request_count(), 0);
    assert_all_valid(&dir).await;
    sluice.check_running().unwrap();
}

/// Two roots delegating `/` to one child serve the child's routes under both names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_host_aliases_share_a_child() {
    let app = Backend::start("app").await.unwrap();
    let assets = Backend::start("assets").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services("default", &[("app", &app), ("assets", &assets)]),
    )
    .unwrap();
    dir.write(
        "routes.yaml",
        &(ingress_route(
            "default",
            "www",
            Some("www.example.com"),
            vec![delegate("/", "shared", None)],
        ) + &ingress_route(
            "default",
            "apex",
            Some("example.com"),
            vec![delegate("/", "shared", None)],
        ) + &ingress_route(
            "default",
            "shared",
            None,
            vec![
                route("/", vec![svc("app")]),
                route("/static", vec![svc("assets")]),
            ],
        )),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    for host in ["www.example.com", "example.com"] {
        wait_backend(&mut sluice, http, host, "/static/logo.png", "assets")
            .await
            .unwrap();
        let echo = assert_backend(http, host, "/", "app").await;
        assert_eq!(echo.header("host"), Some(host));
        assert_backend(http, host, "/login", "app").await;
    }
    sluice.check_running().unwrap();
}

/// A child whose route lies outside the prefix delegated to it is invalid: none of its routes
/// is served (requests under the delegated prefix fall through to the parent's `/`), it is
/// reported, and the parent's own routes keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_child_is_not_served_and_the_parent_still_is() {
    let root = Backend::start("root").await.unwrap();
    let api = Backend::start("api").await.unwrap();
    let shop = Backend::start("shop").await.unwrap();
    let evil = Backend::start("evil").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services(
            "default",
            &[
                ("root", &root),
                ("api", &api),
                ("shop", &shop),
                ("evil", &evil),
            ],
        ),
    )
    .unwrap();
    dir.write(
        "routes.yaml",
        &(ingress_route(
            "default",
            "root",
            Some("store.example.com"),
            vec![
                route("/", vec![svc("root")]),
                route("/api", vec![svc("api")]),
                delegate("/shop", "shop", None),
            ],
        ) + &ingress_route(
            "default",
            "shop",
            None,
            vec![
                route("/shop", vec![svc("shop")]),
                // Outside `/shop`: an attempt to take over the parent's `/admin`.
                route("/admin", vec![svc("evil")]),
            ],
        )),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "store.example.com";
    wait_backend(&mut sluice, http, host, "/api/v1", "api")
        .await
        .unwrap();
    let line = sluice
        .wait_log_line(&["IngressRoute default/shop is invalid"], WAIT)
        .await
        .unwrap();
    assert!(
        line.contains(
            r#"the path prefix "/admin" does not match the parent's path prefix "/shop""#
        ),
        "{line}"
    );

    for (path, expected) in [
        ("/", "root"),
        ("/api", "api"),
        ("/shop", "root"),
        ("/shop/cart", "root"),
        ("/admin", "root"),
    ] {
        assert_backend(http, host, path, expected).await;
    }
    assert_eq!(shop.control().request_count(), 0);
    assert_eq!(evil.control().request_count(), 0);
    let statuses = route_statuses(&dir).await.unwrap();
    let status_of = |key: &str| {
        statuses
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.as_str())
    };
    assert_eq!(status_of("default/root"), Some("valid"), "{statuses:?}");
    assert_eq!(status_of("default/shop"), Some("invalid"), "{statuses:?}");
    sluice.check_running().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 3. Weights.

/// Weights 20/80 split traffic 20/80.
///
/// Tolerance: with n = 2000 independent requests (each on a fresh connection; Envoy draws a
/// random number per request to pick a weighted cluster) and p = 0.2, the share of `light`
/// has standard deviation sqrt(0.2 * 0.8 / 2000) ≈ 0.0089. A band of ±5 percentage points is
/// 5.6 standard deviations: a correct split falls outside it with probability about 2e-8
/// (Bernstein's inequality bounds it rigorously by 2·exp(-n·t² / (2p(1-p) + 2t/3)) ≈ 1.4e-6).
/// A wrong split is caught with certainty in practice: an even split (50 %) or reversed weights
/// (80 %) are more than 30 points away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_in_proportion() {
    const REQUESTS: usize = 2000;
    const EXPECTED_LIGHT: f64 = 0.20;
    const TOLERANCE: f64 = 0.05;
    let light = Backend::start("light").await.unwrap();
    let heavy = Backend::start("heavy").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services("default", &[("light", &light), ("heavy", &heavy)]),
    )
    .unwrap();
    dir.write(
        "route.yaml",
        &ingress_route(
            "default",
            "split",
            Some("split.example.com"),
            vec![route(
                "/",
                vec![weighted("light", 20), weighted("heavy", 80)],
            )],
        ),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "split.example.com";
    // Both clusters are in the route once each has answered once.
    wait_backend(&mut sluice, http, host, "/", "light")
        .await
        .unwrap();
    wait_backend(&mut sluice, http, host, "/", "heavy")
        .await
        .unwrap();
    light.control().reset_counts();
    heavy.control().reset_counts();

    let names = spray(http, host, "/", REQUESTS).await.unwrap();
    let light_count = names.iter().filter(|n| *n == "light").count();
    let heavy_count = names.iter().filter(|n| *n == "heavy").count();
    assert_eq!(light_count + heavy_count, REQUESTS, "{names:?}");
    // The backends agree with what the client saw.
    assert_eq!(light.control().request_count(), light_count as u64);
    assert_eq!(heavy.control().request_count(), heavy_count as u64);
    let share = light_count as f64 / REQUESTS as f64;
    assert!(
        (share - EXPECTED_LIGHT).abs() <= TOLERANCE,
        "light got {light_count} of {REQUESTS} requests ({:.1} %), expected {:.0} % ± {:.0} points",
        share * 100.0,
        EXPECTED_LIGHT * 100.0,
        TOLERANCE * 100.0
    );
    sluice.check_running().unwrap();
}

/// When some services of a route have a weight, those without one get none of its traffic.
/// The weighted service has weight 1, so if the unweighted one defaulted to 1 instead of 0 it
/// would get half of the 200 requests (all 200 avoiding it would have probability 2^-200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unweighted_service_next_to_a_weighted_one_gets_nothing() {
    const REQUESTS: usize = 200;
    let chosen = Backend::start("chosen").await.unwrap();
    let unweighted = Backend::start("unweighted").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services(
            "default",
            &[("chosen", &chosen), ("unweighted", &unweighted)],
        ),
    )
    .unwrap();
    dir.write(
        "route.yaml",
        &ingress_route(
            "default",
            "implicit",
            Some("implicit.example.com"),
            vec![route("/", vec![weighted("chosen", 1), svc("unweighted")])],
        ),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "implicit.example.com";
    wait_backend(&mut sluice, http, host, "/", "chosen")
        .await
        .unwrap();

    let names = spray(http, host, "/", REQUESTS).await.unwrap();
    assert_eq!(names.len(), REQUESTS);
    assert!(names.iter().all(|n| n == "chosen"), "{names:?}");
    assert_eq!(unweighted.control().request_count(), 0);
    sluice.check_running().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. Prefix rewrite.

/// `prefixRewrite: "/"` on `/service2` serves the application at its root: `/service2/foo`
/// reaches the backend as `/foo` (not `//foo`), `/service2` as `/`, and the backend learns the
/// original path from `x-envoy-original-path`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_rewrite_replaces_the_matched_prefix() {
    let app = Backend::start("app").await.unwrap();
    let service2 = Backend::start("service2").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services("default", &[("app", &app), ("service2", &service2)]),
    )
    .unwrap();
    let mut rewritten = route("/service2", vec![svc("service2")]);
    rewritten["prefixRewrite"] = json!("/");
    dir.write(
        "route.yaml",
        &ingress_route(
            "default",
            "app",
            Some("app.example.com"),
            vec![route("/", vec![svc("app")]), rewritten],
        ),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "app.example.com";
    let echo = wait_backend(&mut sluice, http, host, "/service2/foo", "service2")
        .await
        .unwrap();
    assert_eq!(echo.path, "/foo");
    assert_eq!(echo.header("x-envoy-original-path"), Some("/service2/foo"));

    for (sent, received) in [
        ("/service2", "/"),
        ("/service2/", "/"),
        ("/service2/foo/bar?q=1", "/foo/bar?q=1"),
    ] {
        let echo = assert_backend(http, host, sent, "service2").await;
        assert_eq!(echo.path, received, "{sent}");
        // The whole original request target, query included.
        assert_eq!(echo.header("x-envoy-original-path"), Some(sent), "{sent}");
    }
    // The other route is not rewritten.
    let echo = assert_backend(http, host, "/foo", "app").await;
    assert_eq!(echo.path, "/foo");
    assert_eq!(echo.header("x-envoy-original-path"), None);
    sluice.check_running().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. WebSockets.

/// A route with `enableWebsockets: true` upgrades and carries messages both ways; a route
/// without it does not upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_only_where_enabled() {
    let chat = Backend::start("chat").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("services.yaml", &services("default", &[("chat", &chat)]))
        .unwrap();
    let mut ws_route = route("/ws", vec![svc("chat")]);
    ws_route["enableWebsockets"] = json!(true);
    dir.write(
        "route.yaml",
        &ingress_route(
            "default",
            "chat",
            Some("chat.example.com"),
            vec![route("/", vec![svc("chat")]), ws_route],
        ),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "chat.example.com";
    wait_backend(&mut sluice, http, host, "/ws", "chat")
        .await
        .unwrap();

    let mut ws = WebSocket::connect(http, host, "/ws/room").await.unwrap();
    assert_eq!(
        ws.handshake().header(sluice_e2e::backend::BACKEND_HEADER),
        Some("chat")
    );
    assert_eq!(ws.round_trip("hello").await.unwrap(), "hello");
    assert_eq!(
        ws.round_trip("second message").await.unwrap(),
        "second message"
    );
    ws.close().await.unwrap();

    // Envoy refuses the upgrade itself (403) and the backend never sees the request.
    let before = chat.control().request_count();
    match WebSocket::connect(http, host, "/room").await {
        Err(Error::WebSocketRefused { status, body }) => assert_eq!(status, 403, "{body}"),
        Ok(_) => panic!("a route without enableWebsockets upgraded to a WebSocket"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    assert_eq!(chat.control().request_count(), before);
    sluice.check_running().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. ExternalName services.

/// A host name for an ExternalName Service that reaches a test backend: the machine's host
/// name, which is neither `localhost` nor an address literal (those are always refused), and
/// the addresses Envoy will resolve it to. Envoy's resolver reads `/etc/hosts` first, then DNS;
/// so do we. Fails, rather than skipping, on a machine whose host name does not resolve.
fn external_name_target() -> anyhow::Result<(String, Vec<IpAddr>)> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading /proc/sys/kernel/hostname")?
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    ensure!(
        !name.is_empty()
            && name != "localhost"
            && !name.ends_with(".localhost")
            && name.parse::<IpAddr>().is_err(),
        "the ExternalName test needs the machine's host name to be a DNS name other than \
         localhost, but it is {name:?}"
    );
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut addresses: Vec<IpAddr> = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let ip = fields.next()?.parse::<IpAddr>().ok()?;
            fields
                .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&name))
                .then_some(ip)
        })
        .collect();
    if addresses.is_empty() {
        addresses = std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 0))
            .map(|a| a.map(|a| a.ip()).collect())
            .unwrap_or_default();
    }
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        bail!(
            "the ExternalName test needs the host name {name:?} to resolve (it is neither in \
             /etc/hosts nor answered by DNS); add a line such as `127.0.1.1 {name}` to /etc/hosts"
        );
    }
    Ok((name, addresses))
}

/// Forwards TCP connections accepted on `addresses` (one shared port) to `target`, so that a
/// name resolving to any of them reaches a backend on 127.0.0.1. Stops on drop.
struct Forwarder {
    port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl Forwarder {
    async fn start(addresses: &[IpAddr], target: SocketAddr) -> anyhow::Result<Forwarder> {
        let mut last_error = None;
        // The first address picks the port; the others must get the same one, which another
        // process may hold: try a few ports.
        for _ in 0..10 {
            match Forwarder::bind_all(addresses).await {
                Ok((port, listeners)) => {
                    let tasks = listeners
                        .into_iter()
                        .map(|l| tokio::spawn(forward(l, target)))
                        .collect();
                    return Ok(Forwarder { port, tasks });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no address to listen on")))
    }

    async fn bind_all(addresses: &[IpAddr]) -> anyhow::Result<(u16, Vec<TcpListener>)> {
        let mut port = 0;
        let mut listeners = Vec::new();
        for ip in addresses {
            let listener = TcpListener::bind((*ip, port))
                .await
                .with_context(|| format!("listening on {ip} port {port}"))?;
            port = listener.local_addr()?.port();
            listeners.push(listener);
        }
        Ok((port, listeners))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Accepts until aborted; aborting drops the `JoinSet` and with it every open connection.
async fn forward(listener: TcpListener, target: SocketAddr) {
    let mut connections = JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// An ExternalName Service `default/<name>` pointing at `external_name`, port `port`.
fn external_name_service(name: &str, external_name: &str, port: u16) -> String {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "type": "ExternalName",
            "externalName": external_name,
            "ports": [{"name": "http", "protocol": "TCP", "port": port}],
        }
    });
    format!("---\n{doc}\n")
}

/// Writes a control route (`plain.example.com` to `plain`) and a route to an ExternalName
/// Service (`external.example.com` to `ext`) whose name reaches backend `external` through a
/// forwarder; returns the forwarder, which must live as long as the test.
async fn external_name_setup(
    dir: &Manifests,
    plain: &Backend,
    external: &Backend,
) -> anyhow::Result<(Forwarder, String)> {
    let (name, addresses) = external_name_target()?;
    let forwarder = Forwarder::start(&addresses, external.addr()).await?;
    dir.write(
        "services.yaml",
        &(services("default", &[("plain", plain)])
            + &external_name_service("ext", &name, forwarder.port)),
    )?;
    dir.write(
        "routes.yaml",
        &(ingress_route(
            "default",
            "plain",
            Some("plain.example.com"),
            vec![route("/", vec![svc("plain")])],
        ) + &ingress_route(
            "default",
            "external",
            Some("external.example.com"),
            vec![route(
                "/",
                vec![json!({"name": "ext", "port": forwarder.port})],
            )],
        )),
    )?;
    let description = format!("{name} (resolving to {addresses:?})");
    Ok((forwarder, description))
}

/// Without a Gateway allowing them, routes to ExternalName Services are refused: the
/// IngressRoute is reported invalid and its virtual host is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_name_services_are_refused_by_default() {
    let plain = Backend::start("plain").await.unwrap();
    let external = Backend::start("external").await.unwrap();
    let dir = Manifests::new().unwrap();
    let (_forwarder, _) = external_name_setup(&dir, &plain, &external).await.unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    wait_backend(&mut sluice, http, "plain.example.com", "/", "plain")
        .await
        .unwrap();
    let line = sluice
        .wait_log_line(
            &["IngressRoute default/external is invalid", "ExternalName"],
            WAIT,
        )
        .await
        .unwrap();
    assert!(line.contains("enableExternalNameServices"), "{line}");

    assert_not_routed(http, "external.example.com", "/").await;
    assert_eq!(external.control().request_count(), 0);
    sluice.check_running().unwrap();
}

/// A Gateway with `enableExternalNameServices: true` routes to the ExternalName Service's DNS
/// name. With a Gateway in the directory, the instance is that Gateway, not the default one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_name_services_work_when_the_gateway_allows_them() {
    let plain = Backend::start("plain").await.unwrap();
    let external = Backend::start("external").await.unwrap();
    let dir = Manifests::new().unwrap();
    let (_forwarder, target) = external_name_setup(&dir, &plain, &external).await.unwrap();
    dir.write(
        "gateway.yaml",
        &json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Gateway",
            "metadata": {"namespace": "edge", "name": "public"},
            "spec": {"enableExternalNameServices": true},
        })
        .to_string(),
    )
    .unwrap();
    let (mut sluice, http) = start(&dir, Some("edge/public")).await.unwrap();
    wait_backend(&mut sluice, http, "plain.example.com", "/", "plain")
        .await
        .unwrap();
    let echo = wait_backend(&mut sluice, http, "external.example.com", "/x", "external")
        .await
        .with_context(|| format!("ExternalName {target}"))
        .unwrap();
    assert_eq!(echo.path, "/x");
    let instances: Vec<String> = sluice.instances().into_iter().map(|i| i.gateway).collect();
    assert_eq!(instances, ["edge/public"]);
    assert_all_valid(&dir).await;
    sluice.check_running().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 7. Live edits.

/// A broken edit of the manifest directory is reported and not applied, not even in part:
/// traffic keeps flowing with the last good configuration. Fixing the file applies the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_edit_keeps_the_last_good_configuration() {
    let old = Backend::start("old").await.unwrap();
    let new = Backend::start("new").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "services.yaml",
        &services("default", &[("old", &old), ("new", &new)]),
    )
    .unwrap();
    let routes = |target: &str| {
        ingress_route(
            "default",
            "live",
            Some("live.example.com"),
            vec![route("/", vec![svc(target)])],
        )
    };
    dir.write("route.yaml", &routes("old")).unwrap();
    let (mut sluice, http) = start(&dir, None).await.unwrap();
    let host = "live.example.com";
    wait_backend(&mut sluice, http, host, "/", "old")
        .await
        .unwrap();

    // The edit switches the route to `new`, and breaks a second document of the same file.
    let broken = routes("new") + "---\napiVersion: v1\nkind: Service\nmetadata: {name: [oops\n";
    let file = dir.write("route.yaml", &broken).unwrap();
    let file_name = file.display().to_string();
    sluice
        .wait_log_line(&["sluice: error:", &file_name, "document 2"], WAIT)
        .await
        .unwrap();
    sluice
        .wait_log_line(&["still serving the last good configuration"], WAIT)
        .await
        .unwrap();
    for _ in 0..20 {
        assert_backend(http, host, "/", "old").await;
    }
    assert_eq!(new.control().request_count(), 0);

    dir.write("route.yaml", &routes("new")).unwrap();
    wait_backend(&mut sluice, http, host, "/", "new")
        .await
        .unwrap();
    for _ in 0..20 {
        assert_backend(http, host, "/", "new").await;
    }
    sluice.check_running().unwrap();
}
