//! Traefik's forwardAuth served by Envoy's `ext_authz` through `sluice standalone` and a real
//! Envoy, against a real auth server (plain HTTP on 127.0.0.1, an OS-chosen port) that allows a
//! request carrying `X-Token: good` and refuses the others: an allowed request reaches the
//! backend with the auth response headers the Middleware lists (replacing the client's), a
//! refused one gets the auth server's status, headers and body, the auth server learns the
//! original request from X-Forwarded-* headers the client cannot forge, `forwardBody` sends the
//! body (413 past `maxBodySize`), an auth server that cannot be reached means 500, and routes
//! without the middleware are never checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use sluice_e2e::backend::{BACKEND_HEADER, Backend};
use sluice_e2e::client::{Request, Response};
use sluice_e2e::manifests::{self, Manifests, doc, service};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::{TestCa, server_config_requiring_clients};
use sluice_e2e::try_wait_for;

const WAIT: Duration = Duration::from_secs(30);

/// One request the auth server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// Lower-case names; repeated headers joined with ", ".
    headers: BTreeMap<String, String>,
    body: String,
}

/// An HTTP/1.1 auth server: `X-Token: good` gets 200 with `X-Auth-User`, `X-Auth-Role` and
/// `X-Not-Listed`, `X-Token: empty` 204; anything else 401 with `WWW-Authenticate`,
/// `X-Auth-Reason` and a body.
struct AuthServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Over TLS: the SNI of each handshake that completed.
    snis: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthServer {
    async fn start() -> AuthServer {
        AuthServer::start_with(None).await
    }

    /// Over TLS with `config` when given.
    async fn start_with(config: Option<Arc<rustls::ServerConfig>>) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let snis = Arc::new(Mutex::new(Vec::new()));
        let (log, sni_log) = (seen.clone(), snis.clone());
        let acceptor = config.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, sni_log) = (log.clone(), sni_log.clone());
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = match acceptor {
                        None => serve(stream, log).await,
                        Some(a) => match a.accept(stream).await {
                            Ok(tls) => {
                                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                                sni_log.lock().unwrap().push(sni);
                                serve(tls, log).await
                            }
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        AuthServer {
            port,
            seen,
            snis,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the requests of one connection (Envoy reuses them).
async fn serve(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    log: Arc<Mutex<Vec<Seen>>>,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        let (mut seen, head, len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(n) = req.parse(&buf)? {
                let mut map: BTreeMap<String, String> = BTreeMap::new();
                for h in req.headers.iter() {
                    let v = String::from_utf8_lossy(h.value).into_owned();
                    map.entry(h.name.to_ascii_lowercase())
                        .and_modify(|old| {
                            old.push_str(", ");
                            old.push_str(&v);
                        })
                        .or_insert(v);
                }
                let len: usize = map
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let seen = Seen {
                    method: req.method.unwrap_or("").to_owned(),
                    path: req.path.unwrap_or("").to_owned(),
                    headers: map,
                    body: String::new(),
                };
                break (seen, n, len);
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let used = head + len;
        while buf.len() < used {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        seen.body = String::from_utf8_lossy(&buf[head..used]).into_owned();
        buf.drain(..used);
        let token = seen.headers.get("x-token").cloned().unwrap_or_default();
        log.lock().unwrap().push(seen);
        let response = if token == "empty" {
            "HTTP/1.1 204 No Content\r\nx-auth-user: nobody\r\n\r\n".to_owned()
        } else if token == "good" {
            "HTTP/1.1 200 OK\r\nx-auth-user: alice\r\nx-auth-role: admin\r\n\
             x-not-listed: no\r\ncontent-length: 2\r\n\r\nok"
                .to_owned()
        } else {
            let body = "denied by the auth server";
            format!(
                "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"apps\"\r\n\
                 x-auth-reason: no-token\r\ncontent-type: text/plain\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        stream.write_all(response.as_bytes()).await?;
    }
}

fn middleware(name: &str, spec: Value) -> String {
    manifests::traefik("Middleware", "apps", name, None, spec)
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

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_allows_refuses_and_checks_only_its_routes() {
    let web = Backend::start("web").await.unwrap();
    let auth = AuthServer::start().await;
    let dir = Manifests::new().unwrap();
    let mws = middleware(
        "check",
        json!({"forwardAuth": {
            "address": "http://auth.apps.svc.cluster.local:8080/verify?app=shop",
            "authResponseHeaders": ["X-Auth-User"],
            "authResponseHeadersRegex": "^X-Auth-R",
        }}),
    ) + &middleware(
        "body",
        json!({"forwardAuth": {"address": "http://auth:8080/body",
                               "forwardBody": true, "maxBodySize": 16}}),
    ) + &middleware(
        "down",
        json!({"forwardAuth": {"address": "http://gone:8080/"}}),
    );
    let route = doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "apps", "name": "shop",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"entryPoints": ["web"], "routes": [
            {"match": "Host(`shop.example.com`) && PathPrefix(`/private`)",
             "middlewares": [{"name": "check"}],
             "services": [{"name": "web", "port": 80}]},
            {"match": "Host(`shop.example.com`) && PathPrefix(`/body`)",
             "middlewares": [{"name": "body"}],
             "services": [{"name": "web", "port": 80}]},
            {"match": "Host(`shop.example.com`) && PathPrefix(`/down`)",
             "middlewares": [{"name": "down"}],
             "services": [{"name": "web", "port": 80}]},
            {"match": "Host(`shop.example.com`)",
             "services": [{"name": "web", "port": 80}]},
        ]},
    }));
    let gone = closed_port().await;
    dir.write(
        "all.yaml",
        &(service("apps", "web", 80, &[web.port()])
            + &service("apps", "auth", 8080, &[auth.port])
            + &service("apps", "gone", 8080, &[gone])
            + &mws
            + &route),
    )
    .unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;
    let host = "shop.example.com";
    let allowed = Request::new("POST", host, "/private/cart?item=7")
        .header("X-Token", "good")
        .header("Cookie", "session=abc")
        .header("X-Auth-User", "mallory")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-For", "10.1.2.3")
        .header("X-Forwarded-Uri", "/forged")
        .header("X-Real-Ip", "10.0.0.1")
        .header("X-Forwarded-Port", "8443")
        .header("X-Forwarded-Prefix", "/admin")
        .body("payload");
    wait(&mut sluice, http, &allowed, |r| r.status == 200).await;

    // Allowed: the backend gets the request with the listed auth response headers, replacing
    // the client's copy; an unlisted one is not copied.
    let before = auth.seen().len();
    let resp = allowed.send(http).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echo = resp.echo().unwrap();
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/private/cart?item=7");
    assert_eq!(echo.header("x-auth-user"), Some("alice"));
    assert_eq!(echo.header("x-auth-role"), Some("admin"), "by the regex");
    assert_eq!(echo.header("x-not-listed"), None);
    assert_eq!(echo.body, "payload");

    // The auth request: the address's path, the client's headers, and the original request
    // described by X-Forwarded-* headers Envoy sets itself.
    let seen = auth.seen();
    assert_eq!(seen.len(), before + 1, "{seen:?}");
    let check = seen.last().unwrap();
    assert_eq!(check.path, "/verify?app=shop");
    let h = |n: &str| check.headers.get(n).map(String::as_str);
    assert_eq!(h("x-token"), Some("good"));
    assert_eq!(h("cookie"), Some("session=abc"));
    assert_eq!(h("x-forwarded-method"), Some("POST"));
    assert_eq!(h("x-forwarded-uri"), Some("/private/cart?item=7"));
    assert_eq!(h("x-forwarded-host"), Some(host));
    assert_eq!(h("x-forwarded-proto"), Some("http"));
    assert_eq!(h("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(h("x-real-ip"), Some("127.0.0.1"), "the client's X-Real-Ip");
    assert_eq!(h("x-forwarded-port"), None, "the client's X-Forwarded-Port");
    assert_eq!(
        h("x-forwarded-prefix"),
        None,
        "the client's X-Forwarded-Prefix"
    );
    // Envoy sends the original method (Traefik a GET), without the body.
    assert_eq!(check.method, "POST");
    assert_eq!(h("content-length"), Some("0"));

    // Refused: the auth server's status, headers and body; the backend never sees it.
    let reached = web.control().request_count();
    let resp = Request::get(host, "/private/cart")
        .header("X-Token", "bad")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.text(), "denied by the auth server");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer realm=\"apps\"")
    );
    assert_eq!(resp.header("x-auth-reason"), Some("no-token"));
    assert_eq!(resp.header(BACKEND_HEADER), None);
    assert_eq!(web.control().request_count(), reached);

    // Envoy lets a request through on 200 only: Traefik would forward on a 204.
    let resp = Request::get(host, "/private/cart")
        .header("X-Token", "empty")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(web.control().request_count(), reached);

    // A host in upper case finds its route only after the Lua filter lower-cased it, too late
    // for the filters Envoy enables per route: redirected, never forwarded unchecked.
    let resp = Request::get("SHOP.Example.com", "/private/cart")
        .header("X-Token", "bad")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 308, "{}", resp.text());
    assert_eq!(web.control().request_count(), reached);

    // forwardBody: the auth server gets the body (up to maxBodySize); a larger one is 413.
    let resp = Request::new("PUT", host, "/body")
        .header("X-Token", "good")
        .body("0123456789")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.echo().unwrap().body, "0123456789");
    let check = auth.seen().last().unwrap().clone();
    assert_eq!(check.path, "/body");
    assert_eq!(check.body, "0123456789");
    let reached = web.control().request_count();
    let resp = Request::new("PUT", host, "/body")
        .header("X-Token", "good")
        .body("x".repeat(17))
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(web.control().request_count(), reached);

    // An auth server that cannot be reached: 500, as Traefik answers.
    let resp = Request::get(host, "/down")
        .header("X-Token", "good")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert_eq!(web.control().request_count(), reached);

    // A route without the middleware is never checked, whatever the client sends.
    let asked = auth.seen().len();
    for token in [None, Some("bad")] {
        let r = Request::get(host, "/open");
        let r = match token {
            Some(t) => r.header("X-Token", t),
            None => r,
        };
        let resp = r.send(http).await.unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.echo().unwrap().header("x-auth-user"), None);
    }
    assert_eq!(auth.seen().len(), asked);
    sluice.check_running().unwrap();
}

/// An https auth server: verified against the Middleware's CA and the address's host, and
/// given the Middleware's client certificate (the server requires one); an address whose host
/// the certificate does not name is never trusted (500, the backend not asked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_over_tls_verifies_the_auth_server_and_presents_a_client_certificate() {
    let web = Backend::start("web").await.unwrap();
    let ca = TestCa::new("auth CA").unwrap();
    let server = ca.issue(&["auth.apps.svc"]).unwrap();
    let clients = TestCa::new("client CA").unwrap();
    let client = clients.issue(&["sluice.gateway"]).unwrap();
    let config = server_config_requiring_clients(&server, &clients.cert_pem()).unwrap();
    let auth = AuthServer::start_with(Some(config)).await;
    let dir = Manifests::new().unwrap();
    let tls = json!({"caSecret": "auth-ca", "certSecret": "auth-client"});
    let mws = middleware(
        "tls",
        json!({"forwardAuth": {"address": "https://auth.apps.svc:8443/verify",
                               "authResponseHeaders": ["X-Auth-User"], "tls": tls}}),
    ) + &middleware(
        "wrong-name",
        json!({"forwardAuth": {"address": "https://other.apps.svc:8443/verify", "tls": tls}}),
    );
    let route = doc(&json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "apps", "name": "shop",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"entryPoints": ["web"], "routes": [
            {"match": "Host(`shop.example.com`) && PathPrefix(`/tls`)",
             "middlewares": [{"name": "tls"}],
             "services": [{"name": "web", "port": 80}]},
            {"match": "Host(`shop.example.com`) && PathPrefix(`/wrong`)",
             "middlewares": [{"name": "wrong-name"}],
             "services": [{"name": "web", "port": 80}]},
        ]},
    }));
    dir.write(
        "all.yaml",
        &(service("apps", "web", 80, &[web.port()])
            + &service("apps", "auth", 8443, &[auth.port])
            + &service("apps", "other", 8443, &[auth.port])
            + "---\n"
            + &manifests::ca_secret("apps", "auth-ca", &ca.cert_pem())
            + "---\n"
            + &manifests::tls_secret("apps", "auth-client", &client)
            + &mws
            + &route),
    )
    .unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.default_instance(WAIT).await.unwrap().http;
    let host = "shop.example.com";
    let allowed = Request::get(host, "/tls/x").header("X-Token", "good");
    wait(&mut sluice, http, &allowed, |r| r.status == 200).await;
    let resp = allowed.send(http).await.unwrap();
    assert_eq!(resp.echo().unwrap().header("x-auth-user"), Some("alice"));
    let check = auth.seen().last().unwrap().clone();
    assert_eq!(check.path, "/verify");
    let resp = Request::get(host, "/tls/x")
        .header("X-Token", "bad")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.text());

    let asked = auth.seen().len();
    let reached = web.control().request_count();
    let resp = Request::get(host, "/wrong/x")
        .header("X-Token", "good")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 500, "{}", resp.text());
    assert_eq!(auth.seen().len(), asked);
    assert_eq!(web.control().request_count(), reached);
    sluice.check_running().unwrap();
}

fn insecure_gateway(allow: bool) -> String {
    doc(&json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"namespace": "ingress", "name": "gw"},
        "spec": {"allowInsecureSkipVerify": allow},
    }))
}

/// `tls.insecureSkipVerify` on an https auth server whose certificate no known CA issued (for
/// another name, too): refused, naming the Gateway's setting, while the Gateway does not allow
/// it (the route is not served, the auth server never asked); after a live edit of the Gateway,
/// Envoy asks that server without checking its certificate (the `caSecret` it names does not
/// exist: not read, as Go does), sending the address's host as SNI, and its answers decide as
/// over plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_insecure_skip_verify_waits_for_the_gateway() {
    let web = Backend::start("web").await.unwrap();
    let unknown_ca = TestCa::new("nobody's CA").unwrap();
    let server = unknown_ca.issue(&["elsewhere.internal"]).unwrap();
    let config = sluice_e2e::tls::server_config(&server).unwrap();
    let auth = AuthServer::start_with(Some(config)).await;
    let dir = Manifests::new().unwrap();
    let mw = middleware(
        "skip",
        json!({"forwardAuth": {"address": "https://auth.apps.svc:8443/verify",
                               "authResponseHeaders": ["X-Auth-User"],
                               "tls": {"insecureSkipVerify": true, "caSecret": "missing"}}}),
    );
    let route = |name: &str, host: &str, middlewares: Value| {
        doc(&json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"namespace": "apps", "name": name,
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"entryPoints": ["web"], "routes": [
                {"match": format!("Host(`{host}`)"), "middlewares": middlewares,
                 "services": [{"name": "web", "port": 80}]},
            ]},
        }))
    };
    dir.write(
        "all.yaml",
        &(service("apps", "web", 80, &[web.port()])
            + &service("apps", "auth", 8443, &[auth.port])
            + &mw
            + &route("shop", "shop.example.com", json!([{"name": "skip"}]))
            + &route("open", "open.example.com", json!([]))),
    )
    .unwrap();
    dir.write("gateway.yaml", &insecure_gateway(false)).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let http = sluice.instance("ingress/gw", WAIT).await.unwrap().http;
    // The route and the Middleware's own verdict both say why.
    for object in [
        "IngressRoute apps/shop (traefik.io/v1alpha1) is invalid: ",
        "Middleware apps/skip (traefik.io/v1alpha1) is invalid: ",
    ] {
        sluice
            .wait_log_line(
                &[
                    object,
                    "spec.forwardAuth.tls.insecureSkipVerify: not served",
                    "spec.allowInsecureSkipVerify",
                ],
                WAIT,
            )
            .await
            .unwrap();
    }
    // Served beside it: a route without the middleware.
    let open = Request::get("open.example.com", "/");
    wait(&mut sluice, http, &open, |r| r.status == 200).await;
    let before = web.control().request_count();
    let allowed = Request::get("shop.example.com", "/x").header("X-Token", "good");
    let resp = allowed.send(http).await.unwrap();
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert!(auth.seen().is_empty());
    assert_eq!(web.control().request_count(), before);

    dir.write("gateway.yaml", &insecure_gateway(true)).unwrap();
    wait(&mut sluice, http, &allowed, |r| r.status == 200).await;
    let resp = allowed.send(http).await.unwrap();
    assert_eq!(resp.echo().unwrap().header("x-auth-user"), Some("alice"));
    assert_eq!(auth.seen().last().unwrap().path, "/verify");
    let snis = auth.snis.lock().unwrap().clone();
    assert!(!snis.is_empty());
    assert!(
        snis.iter().all(|s| s.as_deref() == Some("auth.apps.svc")),
        "{snis:?}"
    );
    let served = web.control().request_count();
    let resp = Request::get("shop.example.com", "/x")
        .header("X-Token", "bad")
        .send(http)
        .await
        .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.text(), "denied by the auth server");
    assert_eq!(web.control().request_count(), served);
    sluice.check_running().unwrap();
}
