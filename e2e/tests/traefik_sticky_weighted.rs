//! Sticky weighted TraefikServices through `sluice standalone` and a real Envoy: a fresh client
//! gets a weighted pick and a cookie naming the child picked; a client sending a child's cookie
//! keeps reaching that child (every route of it carrying the route's middlewares); a garbage
//! value gets a fresh pick; the first cookie of the name decides, as Go reads it; nested sticky
//! levels each pin with a cookie of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use sluice_e2e::backend::Backend;
use sluice_e2e::client::{Request, Response};
use sluice_e2e::manifests::{self, Manifests, service};
use sluice_e2e::sluice::Standalone;

/// Bound on waiting for configuration to reach Envoy (only bounds a broken test).
const WAIT: Duration = Duration::from_secs(30);

/// A Traefik object of `kind` named `apps/<name>`.
fn traefik(kind: &str, name: &str, spec: Value) -> String {
    manifests::traefik(kind, "apps", name, None, spec)
}

async fn start(objects: &str) -> (Manifests, Standalone, u16) {
    let dir = Manifests::new().unwrap();
    dir.write("objects.yaml", objects).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;
    (dir, sluice, http)
}

/// The `Set-Cookie` headers of `resp`, by cookie name: (value, attributes lower-cased).
fn set_cookies(resp: &Response) -> BTreeMap<String, (String, BTreeSet<String>)> {
    resp.header_all("set-cookie")
        .into_iter()
        .map(|line| {
            let mut parts = line.split(';');
            let (name, value) = parts.next().unwrap().trim().split_once('=').unwrap();
            let attributes = parts.map(|a| a.trim().to_ascii_lowercase()).collect();
            (name.to_owned(), (value.to_owned(), attributes))
        })
        .collect()
}

async fn get(http: u16, host: &str, path: &str, cookie: Option<&str>) -> Response {
    let mut req = Request::get(host, path);
    if let Some(c) = cookie {
        req = req.cookie(c);
    }
    let resp = req.send(http).await.unwrap();
    assert_eq!(resp.status, 200, "{host}{path} with {cookie:?}: {resp:?}");
    resp
}

/// A 1:1 sticky weighted service over `a` and `b` behind a route with a `stripPrefix` and a
/// response header: a first request gets the cookie (with the attributes asked for), the
/// cookie keeps the client on its child through the same middlewares, the other child's
/// value reaches the other child, and a garbage value gets a fresh pick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_pins_a_client_to_the_child_it_was_sent_to() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let objects = service("apps", "a", 80, &[a.port()])
        + &service("apps", "b", 80, &[b.port()])
        + &traefik(
            "TraefikService",
            "ab",
            json!({"weighted": {
                "services": [{"name": "a", "port": 80}, {"name": "b", "port": 80}],
                "sticky": {"cookie": {"name": "pick", "httpOnly": true, "sameSite": "strict",
                                      "maxAge": 120}},
            }}),
        )
        + &traefik(
            "Middleware",
            "strip",
            json!({"stripPrefix": {"prefixes": ["/api"]}}),
        )
        + &traefik(
            "Middleware",
            "mark",
            json!({"headers": {"customResponseHeaders": {"X-Route": "sticky"}}}),
        )
        + &traefik(
            "IngressRoute",
            "sticky",
            json!({"entryPoints": ["web"], "routes": [{
                "match": "Host(`sticky.example.com`) && PathPrefix(`/api`)",
                "middlewares": [{"name": "strip"}, {"name": "mark"}],
                "services": [{"name": "ab", "kind": "TraefikService"}],
            }]}),
        );
    let (_dir, mut sluice, http) = start(&objects).await;
    let host = "sticky.example.com";
    let first = sluice
        .answer(
            http,
            &Request::get(host, "/api/x"),
            "the sticky route to answer with a cookie",
            |r| r.status == 200 && r.header("set-cookie").is_some(),
        )
        .await
        .unwrap();
    let cookies = set_cookies(&first);
    let (value, attributes) = &cookies["pick"];
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    assert_eq!(
        *attributes,
        ["path=/", "max-age=120", "httponly", "samesite=strict"]
            .map(str::to_owned)
            .into(),
        "{cookies:?}"
    );
    assert!(
        value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "{value}"
    );

    // Fresh picks reach both children, each with the value naming it.
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    values.insert(first.echo().unwrap().backend, value.clone());
    for _ in 0..200 {
        let resp = get(http, host, "/api/x", None).await;
        let backend = resp.echo().unwrap().backend;
        let (v, _) = set_cookies(&resp)
            .remove("pick")
            .expect("a fresh pick sets the cookie");
        assert_eq!(values.entry(backend).or_insert_with(|| v.clone()), &v);
        if values.len() == 2 {
            break;
        }
    }
    assert_eq!(values.len(), 2, "{values:?}");
    assert_ne!(values["a"], values["b"]);

    for (child, v) in &values {
        let cookie = format!("other=1; pick={v}");
        for _ in 0..20 {
            let resp = get(http, host, "/api/x", Some(&cookie)).await;
            let echo = resp.echo().unwrap();
            assert_eq!(&echo.backend, child, "with {cookie}");
            assert_eq!(echo.path, "/x", "the pinned route strips the prefix");
            assert_eq!(resp.header("x-route"), Some("sticky"));
            assert!(
                resp.header("set-cookie").is_none(),
                "a pinned client gets no new cookie"
            );
        }
        // Quoted, as Go reads it too.
        let resp = get(http, host, "/api/x", Some(&format!("pick=\"{v}\""))).await;
        assert_eq!(&resp.echo().unwrap().backend, child);
    }

    // The child's own name pins it too, as in Traefik.
    let resp = get(http, host, "/api/x", Some("pick=apps-b-80")).await;
    assert_eq!(resp.echo().unwrap().backend, "b");

    // The first cookie of the name decides.
    let both = format!("pick={}; pick={}", values["b"], values["a"]);
    for _ in 0..10 {
        assert_eq!(
            get(http, host, "/api/x", Some(&both))
                .await
                .echo()
                .unwrap()
                .backend,
            "b"
        );
    }

    // Two `Cookie` lines (as HTTP/2 sends cookies): Go reads every line, and Envoy matches the
    // pattern against each line.
    for _ in 0..10 {
        let resp = Request::get(host, "/api/x")
            .cookie("x=1")
            .cookie(&format!("pick={}", values["b"]))
            .send(http)
            .await
            .unwrap();
        assert_eq!(resp.echo().unwrap().backend, "b");
        // Differs: with the name on two lines Go takes the first line's (`b`); Envoy takes the
        // first route one line matches, the one pinned to the child listed first (`a`).
        let resp = Request::get(host, "/api/x")
            .cookie(&format!("pick={}", values["b"]))
            .cookie(&format!("pick={}", values["a"]))
            .send(http)
            .await
            .unwrap();
        assert_eq!(resp.echo().unwrap().backend, "a");
    }

    // A value naming no child: a fresh pick, a new cookie, both children over the requests.
    let mut seen = BTreeSet::new();
    for _ in 0..64 {
        let resp = get(http, host, "/api/x", Some("pick=garbage")).await;
        let backend = resp.echo().unwrap().backend;
        let (v, _) = set_cookies(&resp)
            .remove("pick")
            .expect("a fresh pick sets the cookie");
        assert_eq!(v, values[&backend]);
        assert_eq!(resp.header("x-route"), Some("sticky"));
        seen.insert(backend);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

/// `outer` picks between `a` and `inner`, `inner` between `b` and `c`, each with a cookie of
/// its own: a fresh pick of `b` sets both cookies; both cookies pin `c`; `inner`'s cookie alone
/// leaves the outer pick fresh, and when it picks `inner`, the inner cookie decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_sticky_levels_pin_with_a_cookie_each() {
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();
    let c = Backend::start("c").await.unwrap();
    let objects = [&a, &b, &c]
        .iter()
        .map(|x| service("apps", x.name(), 80, &[x.port()]))
        .collect::<String>()
        + &traefik(
            "TraefikService",
            "outer",
            json!({"weighted": {
                "services": [{"name": "a", "port": 80},
                             {"name": "inner", "kind": "TraefikService"}],
                "sticky": {"cookie": {"name": "o"}},
            }}),
        )
        + &traefik(
            "TraefikService",
            "inner",
            json!({"weighted": {
                "services": [{"name": "b", "port": 80}, {"name": "c", "port": 80}],
                "sticky": {"cookie": {"name": "i"}},
            }}),
        )
        + &traefik(
            "IngressRoute",
            "nested",
            json!({"entryPoints": ["web"], "routes": [{
                "match": "Host(`nested.example.com`)",
                "services": [{"name": "outer", "kind": "TraefikService"}],
            }]}),
        );
    let (_dir, mut sluice, http) = start(&objects).await;
    let host = "nested.example.com";
    sluice.echo_ok(http, host).await.unwrap();

    // Fresh picks: the cookies each backend's pick sets.
    let mut sets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for _ in 0..400 {
        let resp = get(http, host, "/", None).await;
        let cookies: BTreeMap<String, String> = set_cookies(&resp)
            .into_iter()
            .map(|(n, (v, _))| (n, v))
            .collect();
        let backend = resp.echo().unwrap().backend;
        assert_eq!(
            sets.entry(backend).or_insert_with(|| cookies.clone()),
            &cookies
        );
        if sets.len() == 3 {
            break;
        }
    }
    assert_eq!(sets.len(), 3, "{sets:?}");
    let names = |b: &str| sets[b].keys().cloned().collect::<Vec<_>>();
    assert_eq!(names("a"), ["o"]);
    assert_eq!(names("b"), ["i", "o"]);
    assert_eq!(
        sets["b"]["o"], sets["c"]["o"],
        "b and c are both under inner"
    );
    let (o_a, o_inner) = (sets["a"]["o"].clone(), sets["b"]["o"].clone());
    let (i_b, i_c) = (sets["b"]["i"].clone(), sets["c"]["i"].clone());

    for (cookie, backend) in [
        (format!("o={o_inner}; i={i_c}"), "c"),
        (format!("i={i_b}; o={o_inner}"), "b"),
        (format!("o={o_a}; i={i_c}"), "a"),
    ] {
        for _ in 0..20 {
            let resp = get(http, host, "/", Some(&cookie)).await;
            assert_eq!(resp.echo().unwrap().backend, backend, "with {cookie}");
            assert!(resp.header("set-cookie").is_none(), "with {cookie}");
        }
    }
    // The outer cookie alone: `inner` picks afresh and sets only its own cookie.
    let mut seen = BTreeSet::new();
    for _ in 0..64 {
        let resp = get(http, host, "/", Some(&format!("o={o_inner}"))).await;
        let backend = resp.echo().unwrap().backend;
        let cookies = set_cookies(&resp);
        assert_eq!(cookies.keys().collect::<Vec<_>>(), ["i"], "{backend}");
        assert_eq!(cookies["i"].0, sets[&backend]["i"]);
        seen.insert(backend);
    }
    assert_eq!(seen, ["b", "c"].map(str::to_owned).into());
    // The inner cookie alone: the outer pick is fresh (setting `o`), and reaching `inner` it
    // keeps `c`; never `b`.
    let mut seen = BTreeSet::new();
    for _ in 0..64 {
        let resp = get(http, host, "/", Some(&format!("i={i_c}"))).await;
        let backend = resp.echo().unwrap().backend;
        let cookies = set_cookies(&resp);
        assert_eq!(cookies.keys().collect::<Vec<_>>(), ["o"], "{backend}");
        assert_eq!(cookies["o"].0, sets[&backend]["o"]);
        seen.insert(backend);
    }
    assert_eq!(seen, ["a", "c"].map(str::to_owned).into());
}
