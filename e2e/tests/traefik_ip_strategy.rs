//! Traefik's `ipStrategy.depth` on `ipAllowList` and `rateLimit`, served when the Gateway trusts
//! as many `X-Forwarded-For` hops (`spec.xffTrustedHops`), through `sluice standalone` and a
//! real Envoy: requests with crafted headers get what a Traefik whose entry point keeps the
//! header would answer (the 2nd entry from the right decides; a header too short, or with no
//! address there, selects nothing: refused, and one shared rate bucket), while the middlewares
//! and matchers without a strategy still judge the TCP peer. Other strategies are refused,
//! naming the Gateway's setting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;

use sluice_e2e::backend::{BACKEND_HEADER, Backend};
use sluice_e2e::client::Request;
use sluice_e2e::manifests::{self, Manifests};
use sluice_e2e::sluice::Standalone;
use traefik_http::{ingress_route, middleware, services, verdicts};

#[path = "support/traefik_http.rs"]
mod traefik_http;

const WAIT: Duration = Duration::from_secs(30);

/// The Gateway `ingress/gw`, trusting `hops` proxies in front of its Envoys.
fn gateway(hops: u32) -> String {
    manifests::doc(&json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"namespace": "ingress", "name": "gw"},
        "spec": {"xffTrustedHops": hops},
    }))
}

/// `GET host/path` with one `X-Forwarded-For` header per entry of `xff`.
fn get(host: &str, path: &str, xff: &[&str]) -> Request {
    xff.iter().fold(Request::get(host, path), |r, v| {
        r.header("X-Forwarded-For", v)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_equal_to_the_gateway_hops_is_served_as_traefik() {
    let web = Backend::start("web").await.unwrap();
    let dir = Manifests::new().unwrap();
    // 127.0.0.0/8 is the TCP peer here: where Envoy falls back to it, Traefik refuses.
    let mws = middleware(
        "depth2",
        json!({"ipAllowList": {"sourceRange": ["203.0.113.0/24", "127.0.0.0/8"],
                               "ipStrategy": {"depth": 2}}}),
    ) + &middleware(
        "limit2",
        json!({"rateLimit": {"average": 1, "period": "1m", "burst": 1,
                             "sourceCriterion": {"ipStrategy": {"depth": 2}}}}),
    ) + &middleware(
        "limit-peer",
        json!({"rateLimit": {"average": 1, "period": "1m", "burst": 1}}),
    ) + &middleware(
        "peer-local",
        json!({"ipAllowList": {"sourceRange": ["127.0.0.0/8"]}}),
    ) + &middleware(
        "peer-far",
        json!({"ipAllowList": {"sourceRange": ["203.0.113.0/24"]}}),
    ) + &middleware(
        "depth1",
        json!({"ipAllowList": {"sourceRange": ["203.0.113.0/24"], "ipStrategy": {"depth": 1}}}),
    ) + &middleware(
        "excluded",
        json!({"rateLimit": {"average": 5, "sourceCriterion":
                             {"ipStrategy": {"excludedIPs": ["10.0.0.0/8"]}}}}),
    );
    let routes = ingress_route(
        "shop",
        &[
            (
                "Host(`shop.example.com`) && PathPrefix(`/allow`)",
                &["depth2"],
                "web",
            ),
            (
                "Host(`shop.example.com`) && PathPrefix(`/limit`)",
                &["limit2"],
                "web",
            ),
            (
                "Host(`shop.example.com`) && PathPrefix(`/peer-limit`)",
                &["limit-peer"],
                "web",
            ),
            (
                "Host(`shop.example.com`) && PathPrefix(`/local`)",
                &["peer-local"],
                "web",
            ),
            (
                "Host(`shop.example.com`) && PathPrefix(`/far`)",
                &["peer-far"],
                "web",
            ),
            (
                "Host(`shop.example.com`) && PathPrefix(`/seen`) && ClientIP(`127.0.0.1`)",
                &[],
                "web",
            ),
        ],
    ) + &ingress_route(
        "shallow",
        &[("Host(`shallow.example.com`)", &["depth1"], "web")],
    ) + &ingress_route(
        "excluding",
        &[("Host(`excluding.example.com`)", &["excluded"], "web")],
    );
    dir.write("objects.yaml", &(services(&[&web]) + &mws + &routes))
        .unwrap();
    dir.write("gateway.yaml", &gateway(2)).unwrap();

    let v = verdicts(&dir).await;
    assert_eq!(v["apps/shop"].0, "valid", "{v:?}");
    let (status, description) = &v["apps/shallow"];
    assert_eq!(status, "invalid");
    assert!(
        description.contains("ipStrategy.depth 1 is not served")
            && description.contains("spec.xffTrustedHops"),
        "{description}"
    );
    let (status, description) = &v["apps/excluding"];
    assert_eq!(status, "invalid");
    assert!(
        description.contains("sourceCriterion.ipStrategy.excludedIPs is not served")
            && description.contains("spec.xffTrustedHops"),
        "{description}"
    );

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.instance("ingress/gw", WAIT).await.unwrap().http;
    let first = get("shop.example.com", "/allow", &["203.0.113.7, 10.0.0.1"]);
    sluice
        .answer(http, &first, "the depth-2 allow list served", |r| {
            r.status == 200
        })
        .await
        .unwrap();

    // ipAllowList, depth 2: the 2nd entry from the right as received decides.
    let allow: &[(&[&str], u16)] = &[
        (&["203.0.113.7, 10.0.0.1"], 200),
        (&["198.51.100.1, 203.0.113.7,10.0.0.1"], 200),
        (&["203.0.113.7, 198.51.100.1, 10.0.0.1"], 403),
        // Several headers are one list, as Traefik's entry point joins them.
        (&["203.0.113.7", "10.0.0.1"], 200),
        (&["198.51.100.1", "10.0.0.1"], 403),
        (&["2001:db8::1, 10.0.0.1"], 403),
        (&["127.0.0.5, 10.0.0.1"], 200),
        // Nothing at depth 2: Traefik selects no address and refuses (Envoy's own client
        // address would be the TCP peer, 127.0.0.1, inside the list).
        (&[], 403),
        (&["203.0.113.7"], 403),
        (&["beef, 10.0.0.1"], 403),
        (&["203.0.113.7:80, 10.0.0.1"], 403),
        (&[", 10.0.0.1"], 403),
        (&["01.2.3.4, 10.0.0.1"], 403),
    ];
    for (xff, status) in allow {
        let resp = get("shop.example.com", "/allow", xff)
            .send(http)
            .await
            .unwrap();
        assert_eq!(
            resp.status,
            *status,
            "X-Forwarded-For {xff:?}: {}",
            resp.text()
        );
        assert_eq!(resp.header(BACKEND_HEADER).is_some(), *status == 200);
    }

    // Without a strategy the TCP peer decides, whatever the header says; so does ClientIP().
    let peer: &[(&str, u16)] = &[("/local", 200), ("/far", 403), ("/seen", 200)];
    for (path, status) in peer {
        let resp = get(
            "shop.example.com",
            path,
            &["203.0.113.7, 198.51.100.1, 10.0.0.1"],
        )
        .send(http)
        .await
        .unwrap();
        assert_eq!(resp.status, *status, "{path}: {}", resp.text());
    }

    // What else the trusted hops change or keep, as the backend sees it: the nearest proxy's
    // X-Forwarded-Proto is kept, the forwarded address is Envoy's external address, the TCP
    // peer is still appended, and a client's X-Envoy-* header is still stripped.
    let resp = get("shop.example.com", "/seen", &["203.0.113.7, 10.0.0.1"])
        .header("X-Forwarded-Proto", "https")
        .header("X-Envoy-Upstream-Rq-Timeout-Ms", "1")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = web.control().received().pop().unwrap();
    assert_eq!(seen.path, "/seen");
    let h = |name: &str| seen.headers.get(name).map(String::as_str);
    let xff = h("x-forwarded-for").unwrap();
    assert!(xff.starts_with("203.0.113.7, 10.0.0.1,"), "{xff}");
    assert_eq!(xff.split(',').count(), 3, "{xff}");
    assert_eq!(h("x-forwarded-proto"), Some("https"));
    assert_eq!(h("x-envoy-external-address"), Some("203.0.113.7"));
    // Stripped, not obeyed: the timeout Envoy announces upstream is the route's.
    assert_eq!(h("x-envoy-upstream-rq-timeout-ms"), None);
    assert_ne!(h("x-envoy-expected-rq-timeout-ms"), Some("1"));

    // rateLimit without a strategy: one bucket for the TCP peer, whatever the header says.
    for (xff, status) in [
        ("203.0.113.1, 10.0.0.1", 200),
        ("203.0.113.2, 10.0.0.1", 429),
    ] {
        let resp = get("shop.example.com", "/peer-limit", &[xff])
            .send(http)
            .await
            .unwrap();
        assert_eq!(resp.status, status, "{xff}: {}", resp.text());
    }

    // rateLimit, depth 2, one request a minute: one bucket per address at depth 2 (what is
    // left or right of it does not count), and one shared bucket for requests with none.
    let limit: &[(&[&str], u16)] = &[
        (&["203.0.113.7, 10.0.0.1"], 200),
        (&["203.0.113.7, 10.0.0.1"], 429),
        (&["203.0.113.8, 10.0.0.1"], 200),
        (&["203.0.113.7, 10.9.9.9"], 429),
        (&["198.51.100.9, 203.0.113.7, 10.0.0.1"], 429),
        (&[], 200),
        (&["203.0.113.7"], 429),
        // The TCP peer's address at depth 2 is a source of its own, not the shared bucket.
        (&["127.0.0.1, 10.0.0.1"], 200),
        (&["127.0.0.1, 10.0.0.1"], 429),
    ];
    for (i, (xff, status)) in limit.iter().enumerate() {
        let resp = get("shop.example.com", "/limit", xff)
            .send(http)
            .await
            .unwrap();
        assert_eq!(
            resp.status,
            *status,
            "#{i} X-Forwarded-For {xff:?}: {}",
            resp.text()
        );
    }
}

/// A Gateway that trusts no hop refuses every strategy, naming its setting; once it trusts
/// the depth (a live edit of the Gateway), the route is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_wait_for_the_gateway_to_trust_hops() {
    let web = Backend::start("web").await.unwrap();
    let dir = Manifests::new().unwrap();
    let objects = services(&[&web])
        + &middleware(
            "depth1",
            json!({"ipWhiteList": {"sourceRange": ["203.0.113.0/24"],
                                   "ipStrategy": {"depth": 1}}}),
        )
        + &ingress_route("shop", &[("Host(`shop.example.com`)", &["depth1"], "web")])
        + &ingress_route("other", &[("Host(`other.example.com`)", &[], "web")]);
    dir.write("objects.yaml", &objects).unwrap();
    dir.write("gateway.yaml", &gateway(0)).unwrap();
    let v = verdicts(&dir).await;
    let (status, description) = &v["apps/shop"];
    assert_eq!(status, "invalid");
    assert!(
        description.contains("ipStrategy reads X-Forwarded-For")
            && description.contains("spec.xffTrustedHops is not set"),
        "{description}"
    );
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.instance("ingress/gw", WAIT).await.unwrap().http;
    sluice.echo_ok(http, "other.example.com").await.unwrap();
    let req = get("shop.example.com", "/", &["203.0.113.7"]);
    let resp = req.send(http).await.unwrap();
    assert_eq!(resp.status, 404, "{}", resp.text());

    dir.write("gateway.yaml", &gateway(1)).unwrap();
    sluice
        .answer(http, &req, "served once the Gateway trusts 1 hop", |r| {
            r.status == 200
        })
        .await
        .unwrap();
    for (xff, status) in [("198.51.100.1", 403), ("198.51.100.1, 203.0.113.9", 200)] {
        let resp = get("shop.example.com", "/", &[xff])
            .send(http)
            .await
            .unwrap();
        assert_eq!(resp.status, status, "{xff}: {}", resp.text());
    }
}
