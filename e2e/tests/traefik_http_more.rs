//! More Traefik HTTP features through a real Envoy: a ServersTransport's client certificate
//! (mutual TLS to a backend that requires one, with certificates the test generates), its
//! timeouts and connection reuse; and hostile values of them refused before Envoy sees them
//! (Envoy keeps accepting the configuration, checked with Envoy's own validation). Also
//! `redirectRegex`, and what waits for a Gateway setting: `insecureSkipVerify`, and entry
//! point names mapped by `spec.traefikEntryPoints`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use sluice::dag::{Validity, build, instances};
use sluice::xds::translate::constraints::check_resources;
use sluice::xds::translate::json::message_to_json;
use sluice::xds::translate::validate::inline_bootstrap;
use sluice::xds::translate::{TranslateOptions, translate};
use sluice_e2e::backend::Backend;
use sluice_e2e::client::Request;
use sluice_e2e::manifests::{self, Manifests, ca_secret, service, tls_secret};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::{TestCa, server_config_requiring_clients};
use traefik_http::verdicts;

#[path = "support/traefik_http.rs"]
mod traefik_http;

/// Bound on waiting for configuration to reach Envoy (only bounds a broken test).
const WAIT: Duration = Duration::from_secs(30);

fn traefik(kind: &str, name: &str, spec: Value) -> String {
    manifests::traefik(kind, "apps", name, None, spec)
}

/// An IngressRoute `apps/<name>` for `<name>.example.com` on `web` to the Service `mtls` on
/// port 443 through the ServersTransport `transport`.
fn tls_route(name: &str, transport: &str) -> String {
    traefik(
        "IngressRoute",
        name,
        json!({"entryPoints": ["web"], "routes": [{
            "match": format!("Host(`{name}.example.com`)"),
            "services": [{"name": "mtls", "port": 443, "serversTransport": transport}],
        }]}),
    )
}

/// A ServersTransport `apps/<name>` trusting `backend-ca` for `backend.internal`, with `extra`.
fn transport(name: &str, extra: Value) -> String {
    let mut spec = json!({"serverName": "backend.internal", "rootCAs": [{"secret": "backend-ca"}]});
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    traefik("ServersTransport", name, spec)
}

/// Polls until `request` on `port` is answered by a response `accept` takes.
/// A backend that requires a client certificate from `client CA`: reached through the
/// transport naming one (`certificatesSecrets`), with the longest timeouts Sluice accepts and
/// one request per connection (`maxIdleConnsPerHost: -1`); the same backend through a transport
/// without a client certificate, or with one another CA issued, fails the handshake (503) and
/// no request reaches it. Hostile values of the same fields are refused, naming the field, and
/// the routes beside them keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mutual_tls_presents_the_transport_client_certificate() {
    let server_ca = TestCa::new("backend CA").unwrap();
    let client_ca = TestCa::new("client CA").unwrap();
    let rogue_ca = TestCa::new("rogue CA").unwrap();
    let config = server_config_requiring_clients(
        &server_ca.issue(&["backend.internal"]).unwrap(),
        &client_ca.cert_pem(),
    )
    .unwrap();
    let backend = Backend::start_tls_with("mtls", config).await.unwrap();
    let dir = Manifests::new().unwrap();
    let objects = service("apps", "mtls", 443, &[backend.port()])
        + "---\n"
        + &ca_secret("apps", "backend-ca", &server_ca.cert_pem())
        + "---\n"
        + &tls_secret(
            "apps",
            "client",
            &client_ca.issue(&["client.internal"]).unwrap(),
        )
        + "---\n"
        + &tls_secret(
            "apps",
            "rogue",
            &rogue_ca.issue(&["client.internal"]).unwrap(),
        )
        + &transport(
            "with-cert",
            json!({"certificatesSecrets": ["client"], "disableHTTP2": true,
                   "maxIdleConnsPerHost": -1,
                   "forwardingTimeouts": {"dialTimeout": "876000h", "idleConnTimeout": "876000h",
                                          "pingTimeout": "876000h"}}),
        )
        + &transport("no-cert", json!({}))
        + &transport("rogue-cert", json!({"certificatesSecrets": ["rogue"]}))
        + &transport(
            "huge",
            json!({"forwardingTimeouts": {"dialTimeout": "999999h"}}),
        )
        + &transport(
            "negative",
            json!({"forwardingTimeouts": {"idleConnTimeout": -1}}),
        )
        + &transport("opaque", json!({"certificatesSecrets": ["backend-ca"]}))
        + &tls_route("mtls", "with-cert")
        + &tls_route("nocert", "no-cert")
        + &tls_route("rogue", "rogue-cert")
        + &tls_route("huge", "huge")
        + &tls_route("negative", "negative")
        + &tls_route("opaque", "opaque");
    dir.write("objects.yaml", &objects).unwrap();
    let v = verdicts(&dir).await;
    for valid in ["mtls", "nocert", "rogue"] {
        assert_eq!(v[&format!("apps/{valid}")].0, "valid", "{v:?}");
    }
    for (name, expected) in [
        (
            "huge",
            "spec.forwardingTimeouts.dialTimeout: is longer than 100 years",
        ),
        (
            "negative",
            "spec.forwardingTimeouts.idleConnTimeout: -1 is negative",
        ),
        (
            "opaque",
            "spec.certificatesSecrets[0]: TLS Secret [apps/backend-ca] not found or is \
             malformed: its type is \"Opaque\"",
        ),
    ] {
        let (status, description) = &v[&format!("apps/{name}")];
        assert_eq!(status, "invalid", "{name}: {description}");
        assert!(description.contains(expected), "{name}: {description}");
    }

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;
    let echo = sluice.echo_ok(http, "mtls.example.com").await.unwrap();
    assert_eq!(echo.backend, "mtls");
    assert_eq!(echo.tls_sni.as_deref(), Some("backend.internal"));

    // One request per connection: every request opens its own.
    let connections = backend.control().connection_count();
    for _ in 0..3 {
        let echo = sluice.echo_ok(http, "mtls.example.com").await.unwrap();
        assert_eq!(echo.backend, "mtls");
    }
    let opened = backend.control().connection_count() - connections;
    assert!(opened >= 3, "{opened} connections for 3 requests");

    let requests = backend.control().request_count();
    for host in ["nocert.example.com", "rogue.example.com"] {
        let resp = Request::get(host, "/").send(http).await.unwrap();
        assert_eq!(resp.status, 503, "{host}: {}", resp.text());
    }
    assert_eq!(
        backend.control().request_count(),
        requests,
        "a request passed a handshake without the right client certificate"
    );
    // The refused routes serve nothing; Envoy still serves the rest.
    let resp = Request::get("huge.example.com", "/")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 404, "{}", resp.text());
    sluice.echo_ok(http, "mtls.example.com").await.unwrap();
}

/// Every served value of the new ServersTransport fields at its bounds, beside hostile ones, in
/// one configuration that Envoy itself validates: what is served Envoy accepts, what it would
/// refuse never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_values_at_the_bounds_pass_envoy_validation() {
    let ca = TestCa::new("backend CA").unwrap();
    let client = ca.issue(&["client.internal"]).unwrap();
    let served = [
        json!({"certificatesSecrets": ["client"], "forwardingTimeouts": {
            "dialTimeout": "876000h", "idleConnTimeout": "876000h", "pingTimeout": "876000h",
            "responseHeaderTimeout": 0, "readIdleTimeout": "0s"}}),
        json!({"forwardingTimeouts": {"dialTimeout": "1ns", "idleConnTimeout": 0}}),
        json!({"forwardingTimeouts": {"dialTimeout": 2147483647, "idleConnTimeout": "1us"}}),
        json!({"maxIdleConnsPerHost": -9223372036854775807i64, "disableHTTP2": true}),
    ];
    let hostile = [
        json!({"forwardingTimeouts": {"dialTimeout": "9223372036s"}}),
        json!({"forwardingTimeouts": {"dialTimeout": "-1ns"}}),
        json!({"forwardingTimeouts": {"dialTimeout": "0s"}}),
        json!({"forwardingTimeouts": {"idleConnTimeout": "1e9h"}}),
        json!({"forwardingTimeouts": {"idleConnTimeout": "1h".repeat(40)}}),
        json!({"forwardingTimeouts": {"idleConnTimeout": -2147483648i64}}),
        json!({"forwardingTimeouts": {"responseHeaderTimeout": "1ns"}}),
        json!({"forwardingTimeouts": {"readIdleTimeout": "15s"}}),
        json!({"certificatesSecrets": ["client", "client"]}),
        json!({"certificatesSecrets": ["../client"]}),
        json!({"certificatesSecrets": [""]}),
        json!({"maxIdleConnsPerHost": 9223372036854775807i64}),
        json!({"disableHTTP2": false}),
        json!({"peerCertURI": "spiffe://example.org/backend"}),
    ];
    let mut text = service("apps", "mtls", 443, &[8443])
        + "---\n"
        + &ca_secret("apps", "backend-ca", &ca.cert_pem())
        + "---\n"
        + &tls_secret("apps", "client", &client);
    let mut expected = BTreeMap::new();
    for (i, spec) in served.iter().enumerate() {
        let name = format!("served{i}");
        text += &transport(&name, spec.clone());
        text += &tls_route(&name, &name);
        expected.insert(name, true);
    }
    for (i, spec) in hostile.iter().enumerate() {
        let name = format!("hostile{i}");
        text += &transport(&name, spec.clone());
        text += &tls_route(&name, &name);
        expected.insert(name, false);
    }
    let snapshot = sluice::source::load_sources([("w.yaml", text.as_str())]).snapshot;
    let sel = instances(&snapshot).remove(0).local();
    let dag = build(&snapshot, &sel);
    for (name, valid) in &expected {
        let s = dag
            .object_statuses
            .iter()
            .find(|s| &s.name == name)
            .unwrap_or_else(|| panic!("no verdict for {name}"));
        assert_eq!(
            s.current_status == Validity::Valid,
            *valid,
            "{name}: {}",
            s.description
        );
        if !valid {
            assert!(
                s.description.contains("ServersTransport apps/"),
                "{name}: {}",
                s.description
            );
        }
    }
    assert_eq!(dag.clusters.iter().count(), served.len());
    let opts = TranslateOptions::default();
    let resources = translate(&dag, &opts).unwrap();
    let violations = check_resources(&resources);
    assert!(violations.is_empty(), "{violations:#?}");
    let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
    let json = serde_json::to_string(&message_to_json(&bootstrap).unwrap()).unwrap();
    sluice_e2e::envoy::validate(&json)
        .await
        .unwrap_or_else(|e| panic!("Envoy rejected the served values: {e}"));
}

/// A `redirectRegex` Middleware `apps/<name>`.
fn redirect_regex(name: &str, regex: &str, replacement: &str, permanent: bool) -> String {
    traefik(
        "Middleware",
        name,
        json!({"redirectRegex": {"regex": regex, "replacement": replacement,
                                 "permanent": permanent}}),
    )
}

/// An IngressRoute `apps/<name>` on `web` for `rule`, through `middleware`, to `web`.
fn web_route(name: &str, rule: &str, middleware: &str) -> String {
    traefik(
        "IngressRoute",
        name,
        json!({"entryPoints": ["web"], "routes": [{
            "match": rule,
            "middlewares": [{"name": middleware}],
            "services": [{"name": "web", "port": 80}],
        }]}),
    )
}

/// `(status, Location)` of `method` `path` on `host`.
async fn answer(http: u16, method: &str, host: &str, path: &str) -> (u16, String) {
    let resp = Request::new(method, host, path).send(http).await.unwrap();
    let location = resp.header("location").unwrap_or_default().to_owned();
    (resp.status, location)
}

/// redirectRegex through a real Envoy: the host moved (path and query kept, GET 302 and POST
/// 307), a prefix moved to another port (permanent: 301 and 308), `www.` to the bare name (the
/// bare name itself passes through: Traefik's URL would come back unchanged), a literal path
/// (a query, or another path, passes through), and a Middleware Sluice cannot express refused
/// naming the part while the rest is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_regex_answers_as_traefik_does() {
    let web = Backend::start("web").await.unwrap();
    let dir = Manifests::new().unwrap();
    let objects = service("apps", "web", 80, &[web.port()])
        + &redirect_regex(
            "moved",
            r"^http://old\.example\.com/(.*)",
            "https://new.example.com/${1}",
            false,
        )
        + &redirect_regex(
            "v2",
            r"^https?://api\.example\.com/v1/(users|teams)/(.*)$",
            "http://api.example.com:8080/v2/$1/${2}",
            true,
        )
        + &redirect_regex(
            "bare",
            r"^http://(?:www\.)?example\.com/(.*)",
            "http://example.com/${1}",
            false,
        )
        + &redirect_regex(
            "page",
            r"^http://docs\.example\.com/old$",
            "http://docs.example.com/new",
            false,
        )
        + &redirect_regex("search", "old", "new", false)
        + &web_route("moved", "Host(`old.example.com`)", "moved")
        + &web_route("v2", "Host(`api.example.com`)", "v2")
        + &web_route(
            "bare",
            "Host(`example.com`) || Host(`www.example.com`)",
            "bare",
        )
        + &web_route("page", "Host(`docs.example.com`)", "page")
        + &web_route("search", "Host(`search.example.com`)", "search");
    dir.write("objects.yaml", &objects).unwrap();
    let v = verdicts(&dir).await;
    for name in ["moved", "v2", "bare", "page"] {
        assert_eq!(v[&format!("apps/{name}")].0, "valid", "{v:?}");
    }
    let (status, description) = &v["apps/search"];
    assert_eq!(status, "invalid");
    assert!(
        description.contains("Middleware apps/search (redirectRegex): regex: must start with ^"),
        "{description}"
    );

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;
    sluice.echo_ok(http, "example.com").await.unwrap();

    let expect = [
        (
            "GET",
            "old.example.com",
            "/a/b?q=1&r=%20",
            302,
            "https://new.example.com/a/b?q=1&r=%20",
        ),
        (
            "POST",
            "old.example.com",
            "/",
            307,
            "https://new.example.com/",
        ),
        (
            "GET",
            "api.example.com",
            "/v1/users/7?full=1",
            301,
            "http://api.example.com:8080/v2/users/7?full=1",
        ),
        (
            "PUT",
            "api.example.com",
            "/v1/teams/",
            308,
            "http://api.example.com:8080/v2/teams/",
        ),
        (
            "GET",
            "www.example.com",
            "/x?y=2",
            302,
            "http://example.com/x?y=2",
        ),
        (
            "GET",
            "docs.example.com",
            "/old",
            302,
            "http://docs.example.com/new",
        ),
    ];
    for (method, host, path, status, location) in expect {
        assert_eq!(
            answer(http, method, host, path).await,
            (status, location.to_owned()),
            "{method} http://{host}{path}"
        );
    }
    // Passed through to the backend.
    let passed = [
        ("api.example.com", "/v1/other/7"),
        ("example.com", "/x?y=2"),
        ("docs.example.com", "/old?x=1"),
        ("docs.example.com", "/older"),
    ];
    for (host, path) in passed {
        let resp = Request::get(host, path).send(http).await.unwrap();
        assert_eq!(resp.status, 200, "http://{host}{path}: {}", resp.text());
        assert_eq!(resp.echo().unwrap().backend, "web");
    }
}

/// The Gateway `ingress/gw`, letting ServersTransports skip the backend's certificate check
/// when `allow`.
fn insecure_gateway(allow: bool) -> String {
    manifests::doc(&json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"namespace": "ingress", "name": "gw"},
        "spec": {"allowInsecureSkipVerify": allow},
    }))
}

/// `insecureSkipVerify`: refused while the Gateway does not allow it; once it does (a live edit
/// of the Gateway), Envoy reaches a backend whose certificate no CA Sluice knows issued, sending
/// the transport's `serverName` as SNI; the transport that still verifies keeps refusing that
/// backend (503, no request reaches it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_waits_for_the_gateway() {
    let unknown_ca = TestCa::new("nobody's CA").unwrap();
    let trusted_ca = TestCa::new("trusted CA").unwrap();
    let backend = Backend::start_tls(
        "selfsigned",
        &unknown_ca.issue(&["elsewhere.internal"]).unwrap(),
    )
    .await
    .unwrap();
    let dir = Manifests::new().unwrap();
    let objects = service("apps", "mtls", 443, &[backend.port()])
        + "---\n"
        + &ca_secret("apps", "backend-ca", &trusted_ca.cert_pem())
        + &traefik(
            "ServersTransport",
            "skip",
            json!({"serverName": "backend.internal", "insecureSkipVerify": true,
                   "rootCAs": [{"secret": "missing"}]}),
        )
        + &transport("verify", json!({}))
        + &tls_route("skip", "skip")
        + &tls_route("verify", "verify");
    dir.write("objects.yaml", &objects).unwrap();
    dir.write("gateway.yaml", &insecure_gateway(false)).unwrap();
    let v = verdicts(&dir).await;
    assert_eq!(v["apps/verify"].0, "valid", "{v:?}");
    let (status, description) = &v["apps/skip"];
    assert_eq!(status, "invalid");
    assert!(
        description.contains("spec.insecureSkipVerify: not served")
            && description.contains("spec.allowInsecureSkipVerify"),
        "{description}"
    );
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.instance("ingress/gw", WAIT).await.unwrap().http;
    // The verifying route is served (the handshake fails: 503); the other is not (404).
    let verify = Request::get("verify.example.com", "/");
    sluice
        .answer(http, &verify, "verify.example.com answered 503", |r| {
            r.status == 503
        })
        .await
        .unwrap();
    let resp = Request::get("skip.example.com", "/")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert_eq!(backend.control().request_count(), 0);

    dir.write("gateway.yaml", &insecure_gateway(true)).unwrap();
    let echo = sluice.echo_ok(http, "skip.example.com").await.unwrap();
    assert_eq!(echo.backend, "selfsigned");
    assert_eq!(echo.tls_sni.as_deref(), Some("backend.internal"));
    let requests = backend.control().request_count();
    let resp = Request::get("verify.example.com", "/")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(backend.control().request_count(), requests);
}

/// The Gateway `ingress/gw` mapping Traefik entry point names (`spec.traefikEntryPoints`).
fn entry_point_gateway(map: Value) -> String {
    manifests::doc(&json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"namespace": "ingress", "name": "gw"},
        "spec": {"traefikEntryPoints": map},
    }))
}

/// Manifests written for a Traefik whose entry points are `http` and `https`: refused, naming
/// the Gateway's setting, and unserved while the Gateway maps neither; after a live edit of the
/// Gateway (`http: web, https: websecure`), `http` routes are served on the HTTP listener and
/// `https` ones on the HTTPS listener with their certificate. A name mapped to `web` does not
/// carry a TLS route: refused as `web` itself would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_entry_points_are_served_on_their_listener() {
    let web = Backend::start("web").await.unwrap();
    let ca = TestCa::new("entry point CA").unwrap();
    let cert = ca.issue(&["secure.example.com"]).unwrap();
    let dir = Manifests::new().unwrap();
    let route = |name: &str, entry_points: Value, tls: Option<Value>| {
        let mut spec = json!({"entryPoints": entry_points, "routes": [{
            "match": format!("Host(`{name}.example.com`)"),
            "services": [{"name": "web", "port": 80}],
        }]});
        if let Some(tls) = tls {
            spec["tls"] = tls;
        }
        traefik("IngressRoute", name, spec)
    };
    let tls = json!({"secretName": "secure-cert"});
    dir.write(
        "objects.yaml",
        &(service("apps", "web", 80, &[web.port()])
            + "---\n"
            + &tls_secret("apps", "secure-cert", &cert)
            + &route("plain", json!(["http"]), None)
            + &route("secure", json!(["https"]), Some(tls.clone()))
            + &route("misplaced", json!(["http"]), Some(tls))
            + &route("open", json!(["web"]), None)),
    )
    .unwrap();
    dir.write("gateway.yaml", &entry_point_gateway(json!({})))
        .unwrap();
    let v = verdicts(&dir).await;
    assert_eq!(v["apps/open"].0, "valid", "{v:?}");
    for name in ["apps/plain", "apps/secure", "apps/misplaced"] {
        let (status, description) = &v[name];
        assert_eq!(status, "invalid", "{name}");
        assert!(
            description.contains("is not served")
                && description.contains("spec.traefikEntryPoints"),
            "{name}: {description}"
        );
    }
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.instance("ingress/gw", WAIT).await.unwrap();
    sluice
        .echo_ok(ports.http, "open.example.com")
        .await
        .unwrap();
    let resp = Request::get("plain.example.com", "/")
        .send(ports.http)
        .await
        .unwrap();
    assert_eq!(resp.status, 404, "{}", resp.text());
    let client = sluice_e2e::tls::TlsClient::trusting(&ca.cert_pem()).unwrap();
    let secure = Request::get("secure.example.com", "/");
    assert!(
        secure.send_tls(ports.https, &client).await.is_err(),
        "secure.example.com has no certificate served yet"
    );

    dir.write(
        "gateway.yaml",
        &entry_point_gateway(json!({"http": "web", "https": "websecure"})),
    )
    .unwrap();
    let echo = sluice
        .echo_ok(ports.http, "plain.example.com")
        .await
        .unwrap();
    assert_eq!(echo.backend, "web");
    let resp = sluice_e2e::try_wait_for("https://secure.example.com/", WAIT, async || {
        Ok(secure.send_tls(ports.https, &client).await.ok())
    })
    .await
    .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.echo().unwrap();
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    let v = verdicts(&dir).await;
    assert_eq!(v["apps/plain"].0, "valid", "{v:?}");
    assert_eq!(v["apps/secure"].0, "valid", "{v:?}");
    let (status, description) = &v["apps/misplaced"];
    assert_eq!(status, "invalid");
    assert!(
        description.contains("spec.tls: routes with TLS are served on `websecure`"),
        "{description}"
    );
    sluice.check_running().unwrap();
}
