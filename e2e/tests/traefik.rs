//! Traefik IngressRoutes served through `sluice standalone` and a real Envoy, observed as a user
//! would: which backend answers, what it received, and what `sluice render` says of each
//! object. Host and path matching, a header match, Traefik's priority, a weighted split,
//! middlewares, HTTPS with a certificate made by the test, and host ownership against a
//! Contour root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};

use sluice_e2e::backend::{Backend, Echo};
use sluice_e2e::client::{Request, get};
use sluice_e2e::manifests::{self, Manifests, doc, service, tls_secret};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::try_wait_for;

/// Bound on waiting for configuration to reach Envoy (only bounds a broken test).
const WAIT: Duration = Duration::from_secs(30);

/// A Traefik IngressRoute `apps/<name>`, created at `created`.
fn traefik_route(name: &str, created: &str, spec: Value) -> String {
    manifests::traefik("IngressRoute", "apps", name, Some(created), spec)
}

fn middleware(name: &str, spec: Value) -> String {
    manifests::traefik("Middleware", "apps", name, None, spec)
}

/// Services `apps/<name>` on port 80, each with its backend as the one endpoint.
fn services(backends: &[&Backend]) -> String {
    backends
        .iter()
        .map(|b| service("apps", b.name(), 80, &[b.port()]))
        .collect()
}

fn to(service: &str) -> Value {
    json!([{"name": service, "port": 80}])
}

/// Polls until `request` on the HTTP port is answered by a response `accept` takes.
/// Polls until `GET http://host{path}` (with `headers`) is answered 200 by backend `expected`.
async fn wait_backend(
    sluice: &mut Standalone,
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    expected: &str,
) -> Echo {
    let mut request = Request::get(host, path);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let what = format!("http://{host}{path} {headers:?} to reach {expected}");
    let resp = sluice
        .answer(port, &request, &what, |r| {
            r.status == 200 && r.echo().is_ok_and(|e| e.backend == expected)
        })
        .await
        .unwrap();
    resp.echo().unwrap()
}

/// Sends `GET http://host{path}` now and returns the answering backend's echo.
async fn now(port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Option<Echo>) {
    let mut request = Request::get(host, path);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let resp = request.send(port).await.unwrap();
    (resp.status, resp.echo().ok())
}

/// `(kind, apiVersion, namespace/name, status, description)` of every entry `sluice render`
/// reports for `dir`.
async fn verdicts(dir: &Manifests) -> Vec<(String, String, String, String, String)> {
    let path = dir.path().display().to_string();
    let out = sluice_e2e::sluice::run(&["render", "--manifests", &path])
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&out).unwrap();
    let mut all = Vec::new();
    for g in report["gateways"].as_array().unwrap() {
        for e in g["ingressRoutes"].as_array().unwrap() {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            all.push((
                f("kind"),
                f("apiVersion"),
                format!("{}/{}", f("namespace"), f("name")),
                f("currentStatus"),
                f("description"),
            ));
        }
    }
    all
}

async fn start(dir: &Manifests) -> (Standalone, InstancePorts) {
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    (sluice, ports)
}

/// Host and PathPrefix pick the backend; a header match and an explicit priority win over a
/// longer rule; middlewares strip and add a prefix, set and remove request headers, add a
/// response header, and redirect to HTTPS (GET 302, other methods 307).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_priorities_and_middlewares_route_as_in_traefik() {
    let web = Backend::start("web").await.unwrap();
    let api = Backend::start("api").await.unwrap();
    let canary = Backend::start("canary").await.unwrap();
    let pinned = Backend::start("pinned").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("services.yaml", &services(&[&web, &api, &canary, &pinned]))
        .unwrap();
    let mws = middleware("strip", json!({"stripPrefix": {"prefixes": ["/api"]}}))
        + &middleware("v2", json!({"addPrefix": {"prefix": "/v2"}}))
        + &middleware(
            "hdr",
            json!({"headers": {
                "customRequestHeaders": {
                    "X-Team": "api", "X-Secret": "",
                    "X-Literal": "%DOWNSTREAM_REMOTE_ADDRESS% 100%",
                },
                "customResponseHeaders": {
                    "X-Served-By": "sluice",
                    "X-Percent": "50% %ENVIRONMENT(HOME)% %REQ(:path)%",
                },
            }}),
        )
        + &middleware("https", json!({"redirectScheme": {"scheme": "https"}}));
    dir.write("middlewares.yaml", &mws).unwrap();
    let spec = json!({"entryPoints": ["web"], "routes": [
        {"match": "Host(`shop.example.com`) && PathPrefix(`/`)", "services": to("web")},
        {"match": "Host(`shop.example.com`) && PathPrefix(`/api`)",
         "middlewares": [{"name": "strip"}, {"name": "v2"}, {"name": "hdr"}],
         "services": to("api")},
        // Longer than the /api rule (so it would win on length), but header-only.
        {"match": "Host(`shop.example.com`) && Header(`X-Canary`, `always`)",
         "services": to("canary")},
        // Shorter than the others, but an explicit priority puts it first.
        {"match": "Host(`shop.example.com`) && Path(`/pin`)", "priority": 1000,
         "services": to("pinned")},
        {"match": "Host(`shop.example.com`) && PathPrefix(`/login`)",
         "middlewares": [{"name": "https"}]},
    ]});
    dir.write(
        "route.yaml",
        &traefik_route("shop", "2024-01-01T00:00:00Z", spec),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let host = "shop.example.com";
    let http = ports.http;

    wait_backend(&mut sluice, http, host, "/", &[], "web").await;
    // The whole route configuration is one resource: everything below is in place now.
    let (status, echo) = now(http, host, "/anything", &[]).await;
    assert_eq!((status, echo.unwrap().backend.as_str()), (200, "web"));
    assert_eq!(now(http, "other.example.com", "/", &[]).await.0, 404);

    // Middlewares: /api/items → /v2/items, headers set and removed, response header added.
    let resp = Request::get(host, "/api/items?q=1")
        .header("X-Secret", "leak")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.header("x-served-by"), Some("sluice"));
    // Tenants' `%` are literal, never Envoy substitution commands.
    assert_eq!(
        resp.header("x-percent"),
        Some("50% %ENVIRONMENT(HOME)% %REQ(:path)%")
    );
    let echo = resp.echo().unwrap();
    assert_eq!(
        echo.header("x-literal"),
        Some("%DOWNSTREAM_REMOTE_ADDRESS% 100%")
    );
    assert_eq!(echo.backend, "api");
    assert_eq!(echo.path, "/v2/items?q=1");
    assert_eq!(echo.header("x-team"), Some("api"));
    assert_eq!(echo.header("x-forwarded-prefix"), Some("/api"));
    assert_eq!(echo.header("x-secret"), None);
    let (_, echo) = now(http, host, "/api", &[]).await;
    assert_eq!(echo.unwrap().path, "/v2/");

    // Header match: the canary rule (49 bytes) outranks /api's (44 bytes) and the / rule.
    let (_, echo) = now(http, host, "/api/items", &[("X-Canary", "always")]).await;
    assert_eq!(echo.unwrap().backend, "canary");
    let (_, echo) = now(http, host, "/", &[("X-Canary", "never")]).await;
    assert_eq!(echo.unwrap().backend, "web");

    // Priority 1000 beats every longer rule, the header match included.
    let (_, echo) = now(http, host, "/pin", &[("X-Canary", "always")]).await;
    assert_eq!(echo.unwrap().backend, "pinned");
    // Path() is exact.
    let (_, echo) = now(http, host, "/pin/x", &[]).await;
    assert_eq!(echo.unwrap().backend, "web");

    // redirectScheme: GET gets 302, POST 307, both to https on the same host.
    let get_resp = get(http, host, "/login?next=1").await.unwrap();
    assert_eq!(get_resp.status, 302);
    assert_eq!(
        get_resp.header("location"),
        Some("https://shop.example.com/login?next=1")
    );
    let post = Request::new("POST", host, "/login")
        .body("x")
        .send(http)
        .await
        .unwrap();
    assert_eq!(post.status, 307);
    assert_eq!(
        web.control()
            .received()
            .iter()
            .filter(|e| e.path.starts_with("/login"))
            .count(),
        0
    );

    let all = verdicts(&dir).await;
    let routes: Vec<_> = all.iter().filter(|v| v.0 == "IngressRoute").collect();
    assert_eq!(
        routes,
        [&(
            "IngressRoute".to_owned(),
            "traefik.io/v1alpha1".to_owned(),
            "apps/shop".to_owned(),
            "valid".to_owned(),
            "valid IngressRoute".to_owned()
        )]
    );
    // Each Middleware has a verdict of its own, after the routes'.
    let middlewares: Vec<_> = all.iter().filter(|v| v.0 == "Middleware").collect();
    assert!(!middlewares.is_empty(), "{all:?}");
    assert!(
        middlewares
            .iter()
            .all(|v| v.3 == "valid" && v.4 == "valid Middleware"),
        "{all:?}"
    );
    assert_eq!(all[0].0, "IngressRoute", "{all:?}");
    sluice.check_running().unwrap();
}

/// Unset weights count as 1 in Traefik: `{3, unset}` sends three quarters to the first. 800
/// requests make the tolerance of 8 points about 5 standard deviations; an even split (50 %) or
/// the Contour rule (unset = 0, so 100 %) are far outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_unset_weights_count_as_one() {
    const REQUESTS: usize = 800;
    let heavy = Backend::start("heavy").await.unwrap();
    let light = Backend::start("light").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("services.yaml", &services(&[&heavy, &light]))
        .unwrap();
    let spec = json!({"routes": [{
        "match": "Host(`split.example.com`)",
        "services": [{"name": "heavy", "port": 80, "weight": 3}, {"name": "light", "port": 80}],
    }]});
    dir.write(
        "route.yaml",
        &traefik_route("split", "2024-01-01T00:00:00Z", spec),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let host = "split.example.com";
    wait_backend(&mut sluice, ports.http, host, "/", &[], "heavy").await;
    wait_backend(&mut sluice, ports.http, host, "/", &[], "light").await;
    let mut heavy_count = 0;
    for _ in 0..REQUESTS {
        let (status, echo) = now(ports.http, host, "/", &[]).await;
        assert_eq!(status, 200);
        if echo.unwrap().backend == "heavy" {
            heavy_count += 1;
        }
    }
    let share = f64::from(heavy_count) / REQUESTS as f64;
    assert!(
        (share - 0.75).abs() <= 0.08,
        "heavy got {heavy_count} of {REQUESTS} ({:.1} %), expected 75 % ± 8 points",
        share * 100.0
    );
    sluice.check_running().unwrap();
}

/// `websecure` with `tls.secretName`: Envoy serves the Secret's certificate (made by the test's
/// CA) for the host, the client verifies it, and plain HTTP for the host is redirected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_secret_certificate() {
    let ca = TestCa::new("traefik e2e CA").unwrap();
    let cert = ca.issue(&["secure.example.com"]).unwrap();
    let web = Backend::start("secure-web").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write(
        "objects.yaml",
        &(services(&[&web]) + "---\n" + &tls_secret("apps", "secure-cert", &cert)),
    )
    .unwrap();
    let spec = json!({
        "entryPoints": ["websecure"],
        "routes": [{"match": "Host(`secure.example.com`) && PathPrefix(`/`)",
                    "services": to("secure-web")}],
        "tls": {"secretName": "secure-cert"},
    });
    dir.write(
        "route.yaml",
        &traefik_route("secure", "2024-01-01T00:00:00Z", spec),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();
    let host = "secure.example.com";
    let resp = try_wait_for("https://secure.example.com/hello", WAIT, async || {
        sluice.check_running()?;
        let resp = Request::get(host, "/hello")
            .send_tls(ports.https, &client)
            .await;
        Ok(resp.ok().filter(|r| r.status == 200))
    })
    .await
    .unwrap();
    let echo = resp.echo().unwrap();
    assert_eq!(echo.backend, "secure-web");
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    // Plain HTTP is not served but redirected.
    let plain = get(ports.http, host, "/hello").await.unwrap();
    assert_eq!(plain.status, 301);
    assert_eq!(
        plain.header("location"),
        Some("https://secure.example.com/hello")
    );
    assert!(
        web.control().received().len() == 1,
        "{:?}",
        web.control().received()
    );
    sluice.check_running().unwrap();
}

/// The oldest claimant keeps a host across dialects: an older Contour root keeps
/// `blog.example.com` and the Traefik IngressRoute claiming it too is refused whole (its other
/// host is not served either), naming the owner in `sluice render`. Deleting the Contour root
/// hands the host to the Traefik IngressRoute, live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ownership_spans_contour_and_traefik() {
    let contour = Backend::start("contour").await.unwrap();
    let traefik = Backend::start("traefik").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("services.yaml", &services(&[&contour, &traefik]))
        .unwrap();
    let root = doc(&json!({
        "apiVersion": "contour.heptio.com/v1beta1",
        "kind": "IngressRoute",
        "metadata": {"namespace": "apps", "name": "blog",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"virtualhost": {"fqdn": "blog.example.com"},
                 "routes": [{"match": "/", "services": to("contour")}]},
    }));
    dir.write("contour.yaml", &root).unwrap();
    let spec = json!({"routes": [{
        "match": "Host(`blog.example.com`) || Host(`news.example.com`)",
        "services": to("traefik"),
    }]});
    dir.write(
        "traefik.yaml",
        &traefik_route("blog", "2024-06-01T00:00:00Z", spec),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    wait_backend(
        &mut sluice,
        ports.http,
        "blog.example.com",
        "/",
        &[],
        "contour",
    )
    .await;
    assert_eq!(now(ports.http, "news.example.com", "/", &[]).await.0, 404);
    assert_eq!(traefik.control().request_count(), 0);
    let all = verdicts(&dir).await;
    assert!(
        all.contains(&(
            String::new(),
            String::new(),
            "apps/blog".to_owned(),
            "valid".to_owned(),
            "valid IngressRoute".to_owned()
        )),
        "{all:?}"
    );
    assert!(
        all.contains(&(
            "IngressRoute".to_owned(),
            "traefik.io/v1alpha1".to_owned(),
            "apps/blog".to_owned(),
            "invalid".to_owned(),
            "host \"blog.example.com\" is already used by the older IngressRoute apps/blog"
                .to_owned()
        )),
        "{all:?}"
    );

    dir.remove("contour.yaml").unwrap();
    wait_backend(
        &mut sluice,
        ports.http,
        "blog.example.com",
        "/",
        &[],
        "traefik",
    )
    .await;
    wait_backend(
        &mut sluice,
        ports.http,
        "news.example.com",
        "/",
        &[],
        "traefik",
    )
    .await;
    sluice.check_running().unwrap();
}

/// Live edits of a Traefik IngressRoute and its Middleware while requests keep coming: the
/// route moves from one backend to a weighted split, then to the other backend behind a new
/// middleware, and not one request in between fails (every answer a 200 from a backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_edits_fail_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let blue = Backend::start("blue").await.unwrap();
    let green = Backend::start("green").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("services.yaml", &services(&[&blue, &green]))
        .unwrap();
    let host = "live.example.com";
    let route = |services: Value, middlewares: Value| {
        traefik_route(
            "live",
            "2024-01-01T00:00:00Z",
            json!({"entryPoints": ["web"], "routes": [{
                "match": format!("Host(`{host}`) && PathPrefix(`/`)"),
                "services": services, "middlewares": middlewares,
            }]}),
        )
    };
    dir.write("route.yaml", &route(to("blue"), json!([])))
        .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let http = ports.http;
    wait_backend(&mut sluice, http, host, "/", &[], "blue").await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut answers: Vec<(u16, String)> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let resp = Request::get(host, "/").send(http).await;
                answers.push(match resp {
                    Ok(r) => (
                        r.status,
                        r.echo().map(|e| e.backend).unwrap_or_else(|_| r.text()),
                    ),
                    Err(e) => (0, e.to_string()),
                });
            }
            answers
        })
    };

    // A weighted split, then green alone behind a header middleware.
    let split = json!([
        {"name": "blue", "port": 80, "weight": 1},
        {"name": "green", "port": 80, "weight": 1},
    ]);
    dir.write("route.yaml", &route(split, json!([]))).unwrap();
    wait_backend(&mut sluice, http, host, "/", &[], "green").await;
    dir.write(
        "mw.yaml",
        &middleware(
            "tag",
            json!({"headers": {"customRequestHeaders": {"X-Tag": "live"}}}),
        ),
    )
    .unwrap();
    dir.write("route.yaml", &route(to("green"), json!([{"name": "tag"}])))
        .unwrap();
    let echo = sluice
        .answer(
            http,
            &Request::get(host, "/"),
            "green with the middleware's header",
            |r| {
                r.echo()
                    .is_ok_and(|e| e.backend == "green" && e.header("x-tag") == Some("live"))
            },
        )
        .await
        .unwrap();
    assert_eq!(echo.status, 200);
    // A few more requests on the final configuration, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = load.await.unwrap();
    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, backend)| {
            *status != 200 || !["blue", "green"].contains(&backend.as_str())
        })
        .collect();
    assert!(answers.len() > 20, "too few requests: {}", answers.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the edits: {:?}",
        failed.len(),
        answers.len(),
        &failed[..failed.len().min(10)]
    );
    for backend in ["blue", "green"] {
        assert!(
            answers.iter().any(|(_, b)| b == backend),
            "{backend} never answered"
        );
    }
}
