//! Traefik middlewares served by Envoy's HTTP filters and the route retry policy, observed
//! through `sluice standalone` and a real Envoy as a client would: basicAuth (401 without, 200
//! with credentials), ipAllowList (403 from a peer outside the list, X-Forwarded-For ignored),
//! their order, rateLimit (429 past the burst, one bucket per source), retry (a backend that
//! refuses connections is retried), CORS (Envoy answers preflights), buffering (413). Routes
//! and hosts without these middlewares are untouched by them. Path rewrites (several prefixes,
//! regexes, replacePath), chains in their order, and the `headers` security headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use serde_json::{Value, json};

use sluice_e2e::backend::{BACKEND_HEADER, Backend};
use sluice_e2e::client::{Request, Response};
use sluice_e2e::manifests::{self, Manifests, doc, service, tls_secret};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::try_wait_for;
use traefik_http::{ingress_route, middleware, start};

#[path = "support/traefik_http.rs"]
mod traefik_http;

const WAIT: Duration = Duration::from_secs(30);

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Polls until `request` is answered by a response `accept` takes.
async fn wait(
    sluice: &mut Standalone,
    port: u16,
    request: &Request,
    accept: impl Fn(&Response) -> bool,
) {
    let mut last = String::from("nothing yet");
    let result = try_wait_for("the configuration to be served", WAIT, async || {
        sluice.check_running()?;
        match request.send(port).await {
            Ok(resp) if accept(&resp) => return Ok(Some(())),
            Ok(resp) => last = format!("{} {}", resp.status, resp.text()),
            Err(e) => last = e.to_string(),
        }
        Ok(None)
    })
    .await;
    result
        .with_context(|| format!("last answer: {last}\n{}", sluice.process().log_tail(40)))
        .unwrap();
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", b64(&format!("{user}:{password}")))
}

/// basicAuth and ipAllowList on some routes of a host: the others, and another host, are
/// served as if the filters did not exist. The IP check runs before the credentials are asked
/// for, as the route lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_ip_allow_lists_guard_only_their_routes() {
    let web = Backend::start("web").await.unwrap();
    let dir = Manifests::new().unwrap();
    let users = doc(&json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
        "metadata": {"namespace": "apps", "name": "users"},
        "data": {"username": b64("alice"), "password": b64("s3cret")},
    }));
    let mws = middleware(
        "auth",
        json!({"basicAuth": {"secret": "users", "removeHeader": true}}),
    ) + &middleware(
        "local",
        json!({"ipAllowList": {"sourceRange": ["127.0.0.0/8"]}}),
    ) + &middleware(
        "far",
        json!({"ipWhiteList": {"sourceRange": ["10.0.0.0/8", "::1"]}}),
    );
    let host = "shop.example.com";
    let route = ingress_route(
        "shop",
        &[
            (
                "Host(`shop.example.com`) && PathPrefix(`/private`)",
                &["auth"],
                "web",
            ),
            (
                "Host(`shop.example.com`) && PathPrefix(`/local`)",
                &["local", "auth"],
                "web",
            ),
            (
                "Host(`shop.example.com`) && PathPrefix(`/far`)",
                &["far", "auth"],
                "web",
            ),
            ("Host(`shop.example.com`)", &[], "web"),
            ("Host(`other.example.com`)", &[], "web"),
        ],
    );
    dir.write(
        "all.yaml",
        &(service("apps", "web", 80, &[web.port()]) + &users + &mws + &route),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let http = ports.http;
    let good = basic("alice", "s3cret");
    let private = Request::get(host, "/private/x").header("Authorization", &good);
    wait(&mut sluice, http, &private, |r| r.status == 200).await;

    // basicAuth: 401 without or with wrong credentials, 200 with them; removeHeader.
    let resp = Request::get(host, "/private/x").send(http).await.unwrap();
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=")
    );
    let wrong = Request::get(host, "/private/x").header("Authorization", &basic("alice", "nope"));
    assert_eq!(wrong.send(http).await.unwrap().status, 401);
    let echo = private.send(http).await.unwrap().echo().unwrap();
    assert_eq!(echo.header("authorization"), None, "removeHeader: true");
    // The same host's other route, and another host, whatever the client sends.
    for h in [host, "other.example.com"] {
        let resp = Request::get(h, "/private/x")
            .header("Authorization", "Basic bm8tc3VjaDp1c2Vy")
            .send(http)
            .await
            .unwrap();
        if h == host {
            assert_eq!(resp.status, 401);
            continue;
        }
        let echo = resp.echo().unwrap();
        assert_eq!(echo.header("authorization"), Some("Basic bm8tc3VjaDp1c2Vy"));
    }
    assert_eq!(
        Request::get(host, "/open").send(http).await.unwrap().status,
        200
    );

    // ipAllowList before basicAuth: 127.0.0.1 passes to the credentials check; outside the
    // list it is 403 with or without credentials, X-Forwarded-For notwithstanding.
    let local = |auth: Option<&str>| {
        let r = Request::get(host, "/local");
        match auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    };
    assert_eq!(local(None).send(http).await.unwrap().status, 401);
    assert_eq!(local(Some(&good)).send(http).await.unwrap().status, 200);
    for auth in [None, Some(good.as_str())] {
        let far = Request::get(host, "/far").header("X-Forwarded-For", "10.1.2.3");
        let far = match auth {
            Some(a) => far.header("Authorization", a),
            None => far,
        };
        let resp = far.send(http).await.unwrap();
        assert_eq!(resp.status, 403, "{auth:?}: {}", resp.text());
        assert_eq!(resp.header(BACKEND_HEADER), None);
    }

    // A host written in upper case finds its route only after the Lua filter lower-cases it,
    // too late for the filters Envoy enables per route: it is redirected, never served bare.
    let reached = || {
        web.control()
            .received()
            .iter()
            .filter(|e| e.path.starts_with("/private"))
            .count()
    };
    let before = reached();
    let upper = Request::get("SHOP.Example.COM", "/private/x?a=1")
        .send(http)
        .await
        .unwrap();
    assert_eq!(upper.status, 308, "{}", upper.text());
    assert_eq!(
        upper.header("location"),
        Some("http://shop.example.com/private/x?a=1")
    );
    assert_eq!(reached(), before);
    let upper_open = Request::get("SHOP.Example.COM", "/open")
        .send(http)
        .await
        .unwrap();
    assert_eq!(upper_open.status, 200);
    sluice.check_running().unwrap();
}

/// rateLimit: a burst, then 429 with Retry-After; one bucket per source (here the X-Client
/// header), and none on the routes without the middleware. retry: a Service whose first
/// endpoint refuses connections answers every request when retried, not without. CORS:
/// Envoy answers the preflight itself. buffering: 413 past the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_retries_cors_and_buffering() {
    let web = Backend::start("web").await.unwrap();
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = Manifests::new().unwrap();
    let mws = middleware(
        "limit",
        json!({"rateLimit": {"average": 1, "period": "1m", "burst": 3}}),
    ) + &middleware(
        "per-client",
        json!({"rateLimit": {"average": 1, "period": "1m", "burst": 2,
                             "sourceCriterion": {"requestHeaderName": "X-Client"}}}),
    ) + &middleware("retry", json!({"retry": {"attempts": 3}}))
        + &middleware(
            "cors",
            json!({"headers": {
                "accessControlAllowOriginList": ["https://app.example.com"],
                "accessControlAllowMethods": ["GET", "POST"],
                "accessControlMaxAge": 600,
            }}),
        )
        + &middleware("small", json!({"buffering": {"maxRequestBodyBytes": 100}}));
    let h = "api.example.com";
    let route = ingress_route(
        "api",
        &[
            (
                "Host(`api.example.com`) && PathPrefix(`/limited`)",
                &["limit"],
                "web",
            ),
            (
                "Host(`api.example.com`) && PathPrefix(`/keyed`)",
                &["per-client"],
                "web",
            ),
            (
                "Host(`api.example.com`) && PathPrefix(`/retry`)",
                &["retry"],
                "flaky",
            ),
            (
                "Host(`api.example.com`) && PathPrefix(`/noretry`)",
                &[],
                "flaky",
            ),
            (
                "Host(`api.example.com`) && PathPrefix(`/cors`)",
                &["cors"],
                "web",
            ),
            (
                "Host(`api.example.com`) && PathPrefix(`/upload`)",
                &["small"],
                "web",
            ),
            ("Host(`api.example.com`)", &[], "web"),
        ],
    );
    let services = service("apps", "web", 80, &[web.port()])
        + &service("apps", "flaky", 80, &[dead_port, web.port()]);
    dir.write("all.yaml", &(services + &mws + &route)).unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let http = ports.http;
    wait(&mut sluice, http, &Request::get(h, "/"), |r| {
        r.status == 200
    })
    .await;

    // rateLimit: 3 then 429 (the bucket refills one token a minute).
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let resp = Request::get(h, "/limited").send(http).await.unwrap();
        if resp.status == 429 {
            assert!(resp.header("retry-after").is_some(), "{:?}", resp.headers);
        }
        statuses.push(resp.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    for _ in 0..10 {
        assert_eq!(Request::get(h, "/").send(http).await.unwrap().status, 200);
    }
    let keyed = |client: &str| Request::get(h, "/keyed").header("X-Client", client);
    let a: Vec<u16> = futures_statuses(&keyed("a"), http, 3).await;
    assert_eq!(a, [200, 200, 429]);
    assert_eq!(futures_statuses(&keyed("b"), http, 1).await, [200]);

    // retry: the first endpoint refuses connections.
    let no_retry = futures_statuses(&Request::get(h, "/noretry"), http, 20).await;
    assert!(no_retry.contains(&503), "{no_retry:?}");
    let retried = futures_statuses(&Request::get(h, "/retry"), http, 20).await;
    assert!(retried.iter().all(|s| *s == 200), "{retried:?}");

    // CORS: Envoy answers an allowed preflight itself; a disallowed one is not forwarded.
    let preflight = |origin: &str, path: &str| {
        Request::new("OPTIONS", h, path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
    };
    let resp = preflight("https://app.example.com", "/cors")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header(BACKEND_HEADER), None);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("GET,POST")
    );
    assert_eq!(resp.header("access-control-max-age"), Some("600"));
    let resp = preflight("https://evil.example.com", "/cors")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.header(BACKEND_HEADER), None);
    assert_eq!(resp.header("access-control-allow-origin"), None);
    let simple = Request::get(h, "/cors")
        .header("Origin", "https://app.example.com")
        .send(http)
        .await
        .unwrap();
    assert_eq!(simple.backend().as_deref(), Some("web"));
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // Envoy's cors filter adds no `Vary: Origin` (README: addVaryHeader differs).
    let vary = simple.header_all("vary").join(",").to_ascii_lowercase();
    assert!(!vary.contains("origin"), "{vary}");
    // Without the middleware the preflight is the backend's.
    let resp = preflight("https://app.example.com", "/other")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.backend().as_deref(), Some("web"));
    assert_eq!(resp.header("access-control-allow-origin"), None);

    // buffering: 413 past maxRequestBodyBytes.
    let post = |n: usize| Request::new("POST", h, "/upload").body(vec![b'x'; n]);
    assert_eq!(post(100).send(http).await.unwrap().status, 200);
    assert_eq!(post(101).send(http).await.unwrap().status, 413);
    assert_eq!(
        Request::new("POST", h, "/")
            .body(vec![b'x'; 1000])
            .send(http)
            .await
            .unwrap()
            .status,
        200
    );
    sluice.check_running().unwrap();
}

/// Sends `request` `n` times, one after the other, and returns the statuses.
async fn futures_statuses(request: &Request, port: u16, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(request.send(port).await.unwrap().status);
    }
    out
}

/// stripPrefix with several prefixes (the first that matches goes), stripPrefixRegex and
/// replacePathRegex (every match replaced, the query kept), seen at the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_path_middlewares_rewrite_as_traefik() {
    let web = Backend::start("web").await.unwrap();
    let dir = Manifests::new().unwrap();
    let mws = middleware("multi", json!({"stripPrefix": {"prefixes": ["/a", "/ab"]}}))
        + &middleware(
            "by-regex",
            json!({"stripPrefixRegex": {"regex": ["/u/[0-9]+"]}}),
        )
        + &middleware(
            "swap",
            json!({"replacePathRegex": {"regex": "o+", "replacement": "0"}}),
        );
    let h = "paths.example.com";
    let route = ingress_route(
        "paths",
        &[
            (
                "Host(`paths.example.com`) && PathPrefix(`/a`)",
                &["multi"],
                "web",
            ),
            (
                "Host(`paths.example.com`) && PathPrefix(`/u`)",
                &["by-regex"],
                "web",
            ),
            (
                "Host(`paths.example.com`) && PathPrefix(`/swap`)",
                &["swap"],
                "web",
            ),
        ],
    );
    dir.write(
        "all.yaml",
        &(service("apps", "web", 80, &[web.port()]) + &mws + &route),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let http = ports.http;
    wait(&mut sluice, http, &Request::get(h, "/a/x"), |r| {
        r.status == 200
    })
    .await;
    for (sent, received) in [
        ("/a/x?q=1", "/x?q=1"),
        // "/a" comes first in the list: "/ab/x" loses "/a" only, as in Traefik.
        ("/ab/x", "/b/x"),
        ("/a", "/"),
        ("/u/42/items", "/items"),
        ("/u/x", "/u/x"),
        ("/swap/foo/boo?o=1", "/swap/f0/b0?o=1"),
    ] {
        let echo = Request::get(h, sent)
            .send(http)
            .await
            .unwrap()
            .echo()
            .unwrap();
        assert_eq!(echo.path, received, "{sent}");
    }
    sluice.check_running().unwrap();
}

/// Security headers of the `headers` middleware, by the Traefik field that asks for each.
const SECURITY: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    ("referrer-policy", "same-origin"),
    ("content-security-policy", "default-src 'self'"),
    ("content-security-policy-report-only", "script-src 'none'"),
    ("permissions-policy", "camera=()"),
];
const STS: &str = "max-age=31536000; includeSubDomains; preload";

/// replacePath (the query kept, no X-Replaced-Path); chains flattened in their order, nested
/// chains included (addPrefix then replacePath is the replaced path, the reverse prefixes it;
/// the later of two header edits wins); security headers on the answers of the routes that
/// list them, Strict-Transport-Security over HTTPS only unless `forceSTSHeader`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_path_chains_in_order_and_security_headers() {
    let web = Backend::start("web").await.unwrap();
    let ca = TestCa::new("middlewares e2e CA").unwrap();
    let cert = ca.issue(&["secure-mw.example.com"]).unwrap();
    let dir = Manifests::new().unwrap();
    let chain = |names: &[&str]| {
        let mws: Vec<Value> = names.iter().map(|m| json!({"name": m})).collect();
        json!({"chain": {"middlewares": mws}})
    };
    let security = json!({"headers": {
        "frameDeny": true,
        "stsSeconds": 31_536_000, "stsIncludeSubdomains": true, "stsPreload": true,
        "contentTypeNosniff": true,
        "browserXssFilter": true,
        "referrerPolicy": "same-origin",
        "contentSecurityPolicy": "default-src 'self'",
        "contentSecurityPolicyReportOnly": "script-src 'none'",
        "permissionsPolicy": "camera=()",
    }});
    let mws = middleware("replace", json!({"replacePath": {"path": "/replaced"}}))
        + &middleware("add-p", json!({"addPrefix": {"prefix": "/p"}}))
        + &middleware("replace-r", json!({"replacePath": {"path": "/r"}}))
        + &middleware("chain-ar", chain(&["add-p", "replace-r"]))
        + &middleware("chain-ra", chain(&["replace-r", "add-p"]))
        + &middleware("strip-api", json!({"stripPrefix": {"prefixes": ["/api"]}}))
        + &middleware("add-v2", json!({"addPrefix": {"prefix": "/v2"}}))
        + &middleware("inner", chain(&["strip-api"]))
        + &middleware("outer", chain(&["inner", "add-v2"]))
        + &middleware(
            "first",
            json!({"headers": {"customRequestHeaders": {"X-Order": "first"}}}),
        )
        + &middleware(
            "second",
            json!({"headers": {"customRequestHeaders": {"X-Order": "second"}}}),
        )
        + &middleware("first-second", chain(&["first", "second"]))
        + &middleware("second-first", chain(&["second", "first"]))
        + &middleware("secure", security)
        + &middleware(
            "forced",
            json!({"headers": {
                "stsSeconds": 60, "forceSTSHeader": true,
                "customFrameOptionsValue": "SAMEORIGIN",
                "customBrowserXSSValue": "0",
            }}),
        );
    let h = "mw.example.com";
    let route = ingress_route(
        "mw",
        &[
            (
                "Host(`mw.example.com`) && PathPrefix(`/replace`)",
                &["replace"],
                "web",
            ),
            (
                "Host(`mw.example.com`) && PathPrefix(`/ar`)",
                &["chain-ar"],
                "web",
            ),
            (
                "Host(`mw.example.com`) && PathPrefix(`/ra`)",
                &["chain-ra"],
                "web",
            ),
            (
                "Host(`mw.example.com`) && PathPrefix(`/api`)",
                &["outer"],
                "web",
            ),
            (
                "Host(`mw.example.com`) && PathPrefix(`/12`)",
                &["first-second"],
                "web",
            ),
            (
                "Host(`mw.example.com`) && PathPrefix(`/21`)",
                &["second-first"],
                "web",
            ),
            (
                "Host(`mw.example.com`) && PathPrefix(`/secure`)",
                &["secure"],
                "web",
            ),
            (
                "Host(`mw.example.com`) && PathPrefix(`/forced`)",
                &["forced"],
                "web",
            ),
            ("Host(`mw.example.com`)", &[], "web"),
        ],
    );
    let secure_route = manifests::traefik(
        "IngressRoute",
        "apps",
        "secure-mw",
        Some("2024-01-01T00:00:00Z"),
        json!({
            "entryPoints": ["websecure"],
            "routes": [{"match": "Host(`secure-mw.example.com`)",
                        "middlewares": [{"name": "secure"}],
                        "services": [{"name": "web", "port": 80}]}],
            "tls": {"secretName": "secure-mw-cert"},
        }),
    );
    dir.write(
        "all.yaml",
        &(service("apps", "web", 80, &[web.port()])
            + "---\n"
            + &tls_secret("apps", "secure-mw-cert", &cert)
            + &mws
            + &route
            + &secure_route),
    )
    .unwrap();
    let (mut sluice, ports) = start(&dir).await;
    let http = ports.http;
    wait(&mut sluice, http, &Request::get(h, "/"), |r| {
        r.status == 200
    })
    .await;

    // Paths as the backend receives them.
    for (sent, received) in [
        ("/replace/x?q=1", "/replaced?q=1"),
        ("/ar/x", "/r"),
        ("/ra/x", "/p/r"),
        ("/api/items?q=1", "/v2/items?q=1"),
        ("/other", "/other"),
    ] {
        let echo = Request::get(h, sent)
            .send(http)
            .await
            .unwrap()
            .echo()
            .unwrap();
        assert_eq!(echo.path, received, "{sent}");
        assert_eq!(echo.header("x-replaced-path"), None, "{sent}");
    }
    // Header edits of a chain in its order: the later one wins.
    for (path, order) in [("/12", "second"), ("/21", "first")] {
        let echo = Request::get(h, path)
            .send(http)
            .await
            .unwrap()
            .echo()
            .unwrap();
        assert_eq!(echo.header("x-order"), Some(order), "{path}");
    }

    // Security headers over plain HTTP: all but Strict-Transport-Security.
    let resp = Request::get(h, "/secure").send(http).await.unwrap();
    assert_eq!(resp.backend().as_deref(), Some("web"));
    for (name, value) in SECURITY {
        assert_eq!(
            resp.header_all(name),
            [*value],
            "{name}: {:?}",
            resp.headers
        );
    }
    assert_eq!(resp.header("strict-transport-security"), None);
    // forceSTSHeader sends it over plain HTTP too; custom values replace the defaults.
    let resp = Request::get(h, "/forced").send(http).await.unwrap();
    assert_eq!(resp.header("strict-transport-security"), Some("max-age=60"));
    assert_eq!(resp.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(resp.header("x-xss-protection"), Some("0"));
    assert_eq!(resp.header("x-content-type-options"), None);
    // A route without the middleware gets none of them.
    let resp = Request::get(h, "/other").send(http).await.unwrap();
    for (name, _) in SECURITY {
        assert_eq!(resp.header(name), None, "{name}");
    }
    assert_eq!(resp.header("strict-transport-security"), None);

    // Over HTTPS, Strict-Transport-Security too.
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();
    let host = "secure-mw.example.com";
    let resp = try_wait_for("https://secure-mw.example.com/", WAIT, async || {
        sluice.check_running()?;
        let resp = Request::get(host, "/").send_tls(ports.https, &client).await;
        Ok(resp.ok().filter(|r| r.status == 200))
    })
    .await
    .unwrap();
    assert_eq!(resp.backend().as_deref(), Some("web"));
    assert_eq!(resp.header_all("strict-transport-security"), [STS]);
    for (name, value) in SECURITY {
        assert_eq!(
            resp.header_all(name),
            [*value],
            "{name}: {:?}",
            resp.headers
        );
    }
    sluice.check_running().unwrap();
}
