//! `sluice run` serving the Traefik kinds beyond IngressRoute and Middleware, end to end: the
//! real binary against an API server, and a real Envoy started from the bootstrap the operator
//! provisioned, with certificates made by the test.
//!
//! - IngressRouteTCP with TLS passthrough and with termination; an IngressRoute and an
//!   IngressRouteTCP of the same namespace and name each get the Event of their own verdict.
//! - A TLSOption (minimum TLS 1.3) refusing a TLS 1.2 handshake; a TraefikService `weighted`
//!   whose two backends both answer.
//! - Cross-namespace references on a Gateway with `allowCrossNamespace`: a Service and a
//!   basicAuth Middleware of a namespace that is no root namespace, the Middleware's users Secret
//!   read there (the Secret watch reaches that namespace); a TLS Secret found in the route's own
//!   namespace, not in another's; the opt-in withdrawn, the references refused.
//! - `--watch-namespaces`: only the watched namespaces' Traefik objects are served.
//!
//! Like `tests/operator.rs` (whose cluster harness this shares, `tests/support/cluster.rs`), the
//! tests run against an in-memory API server by default and against the cluster
//! `SLUICE_E2E_KUBECONFIG` names when set. kube-apiserver refuses Endpoints at 127.0.0.1, where
//! the test's backends listen: there, the checks that need a backend are skipped (each skip says
//! so), and the verdicts (Events) and TLS handshakes, which need none, are still checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_e2e::apiserver::Fault;
use sluice_e2e::backend::{Backend, TcpEchoBackend};
use sluice_e2e::client::Request;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::sluice::Operator;
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::tls_session::{TlsSession, client_with_versions};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{Cluster, provisioned_bootstrap};

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

const TRAEFIK: &str = "traefik.io/v1alpha1";

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

fn gateway(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
           "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

fn service(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
           "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
}

fn endpoint_slice(ns: &str, service: &str, port: u16) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"namespace": ns, "name": format!("{service}-slice"),
                        "labels": {"kubernetes.io/service-name": service}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
           "ports": [{"name": "http", "protocol": "TCP", "port": port}]})
}

/// A Service `ns/name` whose endpoint is 127.0.0.1:`port` (the endpoint in memory only).
async fn backed_service(cluster: &Cluster, ns: &str, name: &str, port: u16) -> Result<()> {
    cluster.apply(service(ns, name)).await?;
    if !cluster.is_real() {
        cluster.apply(endpoint_slice(ns, name, port)).await?;
    }
    Ok(())
}

fn traefik(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": TRAEFIK, "kind": kind,
           "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

fn tls_secret(ns: &str, name: &str, cert: &sluice_e2e::tls::CertKey) -> Result<Value> {
    Ok(serde_json::from_str(&sluice_e2e::manifests::tls_secret(
        ns, name, cert,
    ))?)
}

/// An operator asking discovery about Traefik every second.
fn operator(cluster: &Cluster, args: &[String]) -> Result<Operator> {
    Ok(cluster
        .operator("solo")?
        .args(["--traefik-discovery-interval-seconds", "1"])
        .args(args)
        .start()?)
}

/// A real Envoy from the bootstrap the operator provisioned for Gateway `ns/name`.
async fn envoy(cluster: &Cluster, op: &mut Operator, ns: &str, name: &str) -> Result<Envoy> {
    let bootstrap = provisioned_bootstrap(cluster, op, ns, name).await?;
    Ok(Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?)
}

/// The Events on Traefik object `ns/name` of `kind`, oldest first: `(type, reason, note, uid)`.
async fn events(
    cluster: &Cluster,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Vec<(String, String, String, String)>> {
    let mut events: Vec<Value> = cluster
        .list("events.k8s.io/v1", "Event", Some(ns))
        .await?
        .into_iter()
        .filter(|e| {
            let r = &e["regarding"];
            r["name"] == name && r["kind"] == kind && r["apiVersion"] == TRAEFIK
        })
        .collect();
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
    Ok(events
        .iter()
        .map(|e| {
            let f = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                f(&e["type"]),
                f(&e["reason"]),
                f(&e["note"]),
                f(&e["regarding"]["uid"]),
            )
        })
        .collect())
}

/// Waits until the latest Event on Traefik object `ns/name` of `kind` has `reason` and a note
/// containing `note`, and checks that it names the object by its uid; returns the note.
async fn verdict(
    cluster: &Cluster,
    op: &mut Operator,
    ns: &str,
    (kind, name): (&str, &str),
    reason: &str,
    note: &str,
) -> Result<String> {
    let mut last = Vec::new();
    let (note, uid) = eventually(&format!("{kind} {ns}/{name} to be {reason}"), async || {
        op.check_running()?;
        let got = events(cluster, ns, kind, name).await?;
        let found = got
            .last()
            .filter(|(_, r, n, _)| r == reason && n.contains(note))
            .map(|(_, _, n, uid)| (n.clone(), uid.clone()));
        last = got;
        Ok(found)
    })
    .await
    .with_context(|| format!("last events: {last:?}"))?;
    let object = cluster
        .get(TRAEFIK, kind, Some(ns), name)
        .await?
        .with_context(|| format!("{kind} {ns}/{name} is gone"))?;
    assert_eq!(
        object["metadata"]["uid"].as_str(),
        Some(uid.as_str()),
        "the Event on {kind} {ns}/{name} names another object"
    );
    Ok(note)
}

/// Waits until a plain-HTTP `GET host/` answers `status`; returns the backend that answered.
async fn http_answers(
    op: &mut Operator,
    host: &str,
    request: &Request,
    status: u16,
) -> Result<Option<String>> {
    let port = op.ports().envoy_http;
    eventually(&format!("{host} to answer {status}"), async || {
        op.check_running()?;
        let resp = request.send(port).await;
        Ok(resp
            .ok()
            .filter(|r| r.status == status)
            .map(|r| r.backend()))
    })
    .await
}

/// IngressRouteTCP (passthrough, termination), a TLSOption, a weighted TraefikService, and
/// verdicts of an IngressRoute and an IngressRouteTCP with the same namespace and name, all
/// through the operator and a real Envoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_routes_tls_options_and_weighted_services() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    cluster.install_traefik_crds().await?;
    let ns = cluster.namespace("traefik-tcp").await?;
    let ca = TestCa::new("edge ca")?;
    let backend_ca = TestCa::new("backend ca")?;
    let edge = ca.issue(&["term.example.com", "strict.example.com"])?;
    cluster.apply(tls_secret(&ns, "edge", &edge)?).await?;
    let pass = Backend::start_tls("pass", &backend_ca.issue(&["pass.example.com"])?).await?;
    let echo = TcpEchoBackend::start().await?;
    let (a, b) = (Backend::start("a").await?, Backend::start("b").await?);
    for (svc, port) in [
        ("pass", pass.port()),
        ("echo", echo.port()),
        ("a", a.port()),
        ("b", b.port()),
    ] {
        backed_service(&cluster, &ns, svc, port).await?;
    }
    cluster
        .apply(gateway(&ns, "edge", json!({"rootNamespaces": [&ns]})))
        .await?;
    let tcp = |name: &str, host: &str, service: &str, tls: Value| {
        traefik(
            "IngressRouteTCP",
            &ns,
            name,
            json!({"entryPoints": ["websecure"],
                   "routes": [{"match": format!("HostSNI(`{host}`)"),
                               "services": [{"name": service, "port": 80}]}],
                   "tls": tls}),
        )
    };
    cluster
        .apply(tcp(
            "pass",
            "pass.example.com",
            "pass",
            json!({"passthrough": true}),
        ))
        .await?;
    cluster
        .apply(tcp(
            "term",
            "term.example.com",
            "echo",
            json!({"secretName": "edge"}),
        ))
        .await?;
    // An IngressRoute with the IngressRouteTCP's namespace and name, invalid (no such
    // Service): each verdict must reach its own object.
    cluster
        .apply(traefik(
            "IngressRoute",
            &ns,
            "term",
            json!({"entryPoints": ["web"],
                   "routes": [{"match": "Host(`term-http.example.com`)", "kind": "Rule",
                               "services": [{"name": "nope", "port": 80}]}]}),
        ))
        .await?;
    cluster
        .apply(traefik(
            "TLSOption",
            &ns,
            "tls13",
            json!({"minVersion": "VersionTLS13"}),
        ))
        .await?;
    cluster
        .apply(traefik(
            "IngressRoute",
            &ns,
            "strict",
            json!({"entryPoints": ["websecure"],
                   "routes": [{"match": "Host(`strict.example.com`)", "kind": "Rule",
                               "services": [{"name": "a", "port": 80}]}],
                   "tls": {"secretName": "edge", "options": {"name": "tls13"}}}),
        ))
        .await?;
    cluster
        .apply(traefik(
            "TraefikService",
            &ns,
            "split",
            json!({"weighted": {"services": [{"name": "a", "port": 80, "weight": 1},
                                             {"name": "b", "port": 80, "weight": 1}]}}),
        ))
        .await?;
    cluster
        .apply(traefik(
            "IngressRoute",
            &ns,
            "split",
            json!({"entryPoints": ["web"],
                   "routes": [{"match": "Host(`split.example.com`)", "kind": "Rule",
                               "services": [{"name": "split", "kind": "TraefikService"}]}]}),
        ))
        .await?;

    let mut op = operator(&cluster, &[])?;
    op.wait_ready(PATIENCE).await?;
    let _envoy = envoy(&cluster, &mut op, &ns, "edge").await?;
    let https = op.ports().envoy_https;

    // Verdicts, each on the object of its kind.
    verdict(
        &cluster,
        &mut op,
        &ns,
        ("IngressRouteTCP", "term"),
        "Valid",
        "",
    )
    .await?;
    verdict(
        &cluster,
        &mut op,
        &ns,
        ("IngressRouteTCP", "pass"),
        "Valid",
        "",
    )
    .await?;
    let note = verdict(
        &cluster,
        &mut op,
        &ns,
        ("IngressRoute", "term"),
        "Invalid",
        "nope",
    )
    .await?;
    assert!(note.contains("nope"), "{note}");
    verdict(
        &cluster,
        &mut op,
        &ns,
        ("IngressRoute", "strict"),
        "Valid",
        "",
    )
    .await?;
    verdict(
        &cluster,
        &mut op,
        &ns,
        ("IngressRoute", "split"),
        "Valid",
        "",
    )
    .await?;

    // TLSOption: TLS 1.3 is served, a TLS 1.2-only client is refused, while the same client is
    // served by the TCP route on the same listener (no option: minimum TLS 1.2). No backend is
    // needed for the handshakes.
    let tls12 = client_with_versions(&ca.cert_pem(), &[&rustls::version::TLS12])?;
    let tls13 = client_with_versions(&ca.cert_pem(), &[&rustls::version::TLS13])?;
    eventually("a TLS 1.2 handshake for term.example.com", async || {
        op.check_running()?;
        Ok(TlsSession::connect(https, "term.example.com", &tls12)
            .await
            .ok())
    })
    .await?;
    eventually("a TLS 1.3 handshake for strict.example.com", async || {
        op.check_running()?;
        Ok(TlsSession::connect(https, "strict.example.com", &tls13)
            .await
            .ok())
    })
    .await?;
    let refused = TlsSession::connect(https, "strict.example.com", &tls12).await;
    assert!(
        refused.is_err(),
        "the TLSOption's minimum is TLS 1.3, yet a TLS 1.2 handshake succeeded"
    );

    if cluster.is_real() {
        eprintln!(
            "skipping the traffic checks: kube-apiserver refuses Endpoints at 127.0.0.1, where \
             the test's backends listen"
        );
        op.check_running()?;
        return Ok(());
    }
    // Termination: Envoy's certificate, then the raw bytes to the TCP backend.
    let mut session = TlsSession::connect(https, "term.example.com", &tls12).await?;
    let bytes = b"\x00not HTTP\r\n\xff";
    assert_eq!(
        session.round_trip(bytes, Duration::from_secs(5)).await?,
        bytes
    );
    // Passthrough: the backend's own certificate, from its CA, not Envoy's.
    let backend_client = TlsClient::trusting(&backend_ca.cert_pem())?;
    let resp = Request::get("pass.example.com", "/")
        .send_tls(https, &backend_client)
        .await?;
    assert_eq!(
        (resp.status, resp.backend().as_deref()),
        (200, Some("pass"))
    );
    assert!(
        TlsSession::connect(https, "pass.example.com", &tls13)
            .await
            .is_err(),
        "passthrough presented a certificate of the edge CA"
    );
    // The TLSOption's route serves over TLS 1.3.
    let tls13_http = TlsClient::trusting_versions(&ca.cert_pem(), &[&rustls::version::TLS13])?;
    let resp = Request::get("strict.example.com", "/")
        .send_tls(https, &tls13_http)
        .await?;
    assert_eq!((resp.status, resp.backend().as_deref()), (200, Some("a")));
    // Weighted TraefikService: both backends answer.
    let split = Request::get("split.example.com", "/");
    http_answers(&mut op, "split.example.com", &split, 200).await?;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        if let Some(name) = split.send(op.ports().envoy_http).await?.backend() {
            seen.insert(name);
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["a", "b"],
        "a 1:1 split"
    );
    op.check_running()?;
    Ok(())
}

/// A Gateway with `allowCrossNamespace`: a route of its root namespace uses a Service and a
/// basicAuth Middleware of a namespace that is no root namespace, and the Middleware's users
/// Secret is found there; a TLS Secret is read in the route's own namespace. Without the
/// opt-in, the same references are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_references_and_their_secrets() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    cluster.install_traefik_crds().await?;
    let front = cluster.namespace("traefik-front").await?;
    let shared = cluster.namespace("traefik-shared").await?;
    let ca = TestCa::new("edge ca")?;
    let other_ca = TestCa::new("other ca")?;
    let web = Backend::start("web").await?;
    backed_service(&cluster, &shared, "web", web.port()).await?;
    // The users Secret beside the Middleware, in the namespace that is no root namespace:
    // alice:s3cret.
    cluster
        .apply(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                      "metadata": {"namespace": &shared, "name": "users"},
                      "data": {"username": "YWxpY2U=", "password": "czNjcmV0"}}),
        )
        .await?;
    cluster
        .apply(traefik(
            "Middleware",
            &shared,
            "auth",
            json!({"basicAuth": {"secret": "users"}}),
        ))
        .await?;
    // The route's certificate in its own namespace; a Secret of the same name elsewhere holds
    // another CA's certificate for the same host, and must not be the one served.
    cluster
        .apply(tls_secret(
            &front,
            "cert",
            &ca.issue(&["secure.example.com"])?,
        )?)
        .await?;
    cluster
        .apply(tls_secret(
            &shared,
            "cert",
            &other_ca.issue(&["secure.example.com"])?,
        )?)
        .await?;
    let edge = |cross: bool| {
        gateway(
            &front,
            "edge",
            json!({"rootNamespaces": [&front], "allowCrossNamespace": cross}),
        )
    };
    cluster.apply(edge(true)).await?;
    let across = json!({"entryPoints": ["web"],
        "routes": [{"match": "Host(`across.example.com`)", "kind": "Rule",
                    "middlewares": [{"name": "auth", "namespace": &shared}],
                    "services": [{"name": "web", "namespace": &shared, "port": 80}]}]});
    cluster
        .apply(traefik("IngressRoute", &front, "across", across))
        .await?;
    cluster
        .apply(traefik(
            "IngressRoute",
            &front,
            "secure",
            json!({"entryPoints": ["websecure"],
                   "routes": [{"match": "Host(`secure.example.com`)", "kind": "Rule",
                               "services": [{"name": "web", "namespace": &shared, "port": 80}]}],
                   "tls": {"secretName": "cert"}}),
        ))
        .await?;

    let mut op = operator(&cluster, &[])?;
    op.wait_ready(PATIENCE).await?;
    let _envoy = envoy(&cluster, &mut op, &front, "edge").await?;
    let https = op.ports().envoy_https;
    verdict(
        &cluster,
        &mut op,
        &front,
        ("IngressRoute", "across"),
        "Valid",
        "",
    )
    .await?;
    verdict(
        &cluster,
        &mut op,
        &front,
        ("IngressRoute", "secure"),
        "Valid",
        "",
    )
    .await?;
    // The route's own namespace's certificate: trusted through its CA, not the other's.
    let client = TlsClient::trusting(&ca.cert_pem())?;
    eventually("a handshake for secure.example.com", async || {
        op.check_running()?;
        Ok(TlsSession::connect(https, "secure.example.com", &client)
            .await
            .ok())
    })
    .await?;
    let other = TlsClient::trusting(&other_ca.cert_pem())?;
    assert!(
        TlsSession::connect(https, "secure.example.com", &other)
            .await
            .is_err(),
        "the certificate of another namespace's Secret was served"
    );

    if cluster.is_real() {
        eprintln!(
            "skipping the traffic checks: kube-apiserver refuses Endpoints at 127.0.0.1, where \
             the test's backends listen"
        );
    } else {
        let plain = Request::get("across.example.com", "/");
        http_answers(&mut op, "across.example.com", &plain, 401).await?;
        let alice = Request::get("across.example.com", "/")
            .header("Authorization", "Basic YWxpY2U6czNjcmV0");
        let backend = http_answers(&mut op, "across.example.com", &alice, 200).await?;
        assert_eq!(backend.as_deref(), Some("web"));
        let resp = Request::get("secure.example.com", "/")
            .send_tls(https, &client)
            .await?;
        assert_eq!((resp.status, resp.backend().as_deref()), (200, Some("web")));
    }

    // The opt-in withdrawn: both references refused, naming the setting; nothing served.
    cluster.apply(edge(false)).await?;
    let note = verdict(
        &cluster,
        &mut op,
        &front,
        ("IngressRoute", "across"),
        "Invalid",
        "allowCrossNamespace",
    )
    .await?;
    assert!(note.contains(&shared), "{note}");
    if !cluster.is_real() {
        let alice = Request::get("across.example.com", "/")
            .header("Authorization", "Basic YWxpY2U6czNjcmV0");
        http_answers(&mut op, "across.example.com", &alice, 404).await?;
    }
    op.check_running()?;
    Ok(())
}

/// With `--watch-namespaces`, the Traefik objects of the watched namespaces are served, and those
/// of a namespace the Gateway's `rootNamespaces` name but the operator does not watch are not,
/// not even a Middleware a watched route names there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_bound_the_traefik_objects_served() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    cluster.install_traefik_crds().await?;
    let watched = cluster.namespace("traefik-watched").await?;
    let outside = cluster.namespace("traefik-outside").await?;
    let web = Backend::start("web").await?;
    let evil = Backend::start("evil").await?;
    backed_service(&cluster, &watched, "web", web.port()).await?;
    backed_service(&cluster, &outside, "web", evil.port()).await?;
    cluster
        .apply(gateway(
            &watched,
            "edge",
            json!({"rootNamespaces": [&watched, &outside], "allowCrossNamespace": true}),
        ))
        .await?;
    let route = |ns: &str, name: &str, host: &str, middlewares: Value| {
        traefik(
            "IngressRoute",
            ns,
            name,
            json!({"entryPoints": ["web"],
                   "routes": [{"match": format!("Host(`{host}`)"), "kind": "Rule",
                               "middlewares": middlewares,
                               "services": [{"name": "web", "port": 80}]}]}),
        )
    };
    cluster
        .apply(route(&watched, "app", "watched.example.com", json!([])))
        .await?;
    cluster
        .apply(route(&outside, "app", "outside.example.com", json!([])))
        .await?;
    // A Middleware in the unwatched namespace, named by a watched route: never seen.
    cluster
        .apply(traefik(
            "Middleware",
            &outside,
            "tag",
            json!({"headers": {"customRequestHeaders": {"X-Tag": "outside"}}}),
        ))
        .await?;
    cluster
        .apply(route(
            &watched,
            "tagged",
            "tagged.example.com",
            json!([{"name": "tag", "namespace": &outside}]),
        ))
        .await?;

    let mut op = operator(&cluster, &[format!("--watch-namespaces={watched}")])?;
    op.wait_ready(PATIENCE).await?;
    let _envoy = envoy(&cluster, &mut op, &watched, "edge").await?;
    verdict(
        &cluster,
        &mut op,
        &watched,
        ("IngressRoute", "app"),
        "Valid",
        "",
    )
    .await?;
    let note = verdict(
        &cluster,
        &mut op,
        &watched,
        ("IngressRoute", "tagged"),
        "Invalid",
        "not found",
    )
    .await?;
    assert!(note.contains(&format!("{outside}/tag")), "{note}");
    if !cluster.is_real() {
        let watched_host = Request::get("watched.example.com", "/");
        let backend = http_answers(&mut op, "watched.example.com", &watched_host, 200).await?;
        assert_eq!(backend.as_deref(), Some("web"));
        // Checked after the watched route is served: the outside one never is.
        let outside_host = Request::get("outside.example.com", "/");
        http_answers(&mut op, "outside.example.com", &outside_host, 404).await?;
        assert_eq!(evil.control().request_count(), 0);
    }
    // Nothing was ever said about the unwatched namespace's objects: they were never read.
    assert!(
        events(&cluster, &outside, "IngressRoute", "app")
            .await?
            .is_empty()
    );
    op.check_running()?;
    Ok(())
}

/// Events that could not be written are not taken as announced: while Event writes fail, a
/// Traefik IngressRoute turns invalid and then valid again; once writes work, the next pass
/// (an unrelated change) records the current verdict, and a later change is recorded too.
/// In memory only (faults are injected by the API server double).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_traefik_events_are_recorded_once_writes_work() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("skipped against a real cluster: it takes faults injected by the API server");
        return Ok(());
    };
    cluster.install_traefik_crds().await?;
    let ns = cluster.namespace("traefik-events").await?;
    let web = Backend::start("web").await?;
    backed_service(&cluster, &ns, "web", web.port()).await?;
    cluster
        .apply(gateway(&ns, "edge", json!({"rootNamespaces": [&ns]})))
        .await?;
    let route = |service: &str| {
        traefik(
            "IngressRoute",
            &ns,
            "app",
            json!({"entryPoints": ["web"],
                   "routes": [{"match": "Host(`app.example.com`)", "kind": "Rule",
                               "services": [{"name": service, "port": 80}]}]}),
        )
    };
    cluster.apply(route("web")).await?;
    let mut op = operator(&cluster, &[])?;
    op.wait_ready(PATIENCE).await?;
    verdict(&cluster, &mut op, &ns, ("IngressRoute", "app"), "Valid", "").await?;

    // Event writes fail: the invalid verdict is not recorded, however often it is tried.
    let fault = server.inject(Fault::writes("events").failing_with(500));
    let failed_writes = |since: u64| {
        server
            .requests()
            .into_iter()
            .filter(|r| {
                r.seq >= since && r.is_write() && r.path.contains("/events") && r.code == 500
            })
            .count()
    };
    let mark = server.requests_arrived();
    cluster.apply(route("nope")).await?;
    eventually("a failed Event write", async || {
        op.check_running()?;
        Ok((failed_writes(mark) > 0).then_some(()))
    })
    .await?;
    // Valid again, then invalid for another reason, still without Events.
    let mark = server.requests_arrived();
    cluster.apply(route("web")).await?;
    cluster.apply(route("gone")).await?;
    eventually("another failed Event write", async || {
        op.check_running()?;
        Ok((failed_writes(mark) > 0).then_some(()))
    })
    .await?;
    server.clear_fault(fault);
    // Writes work again; an unrelated change makes a pass: the verdict it missed is recorded.
    cluster.apply(service(&ns, "unrelated")).await?;
    verdict(
        &cluster,
        &mut op,
        &ns,
        ("IngressRoute", "app"),
        "Invalid",
        "gone",
    )
    .await?;
    let seen = events(&cluster, &ns, "IngressRoute", "app").await?;
    let reasons: Vec<&str> = seen.iter().map(|(_, r, _, _)| r.as_str()).collect();
    assert_eq!(reasons, ["Valid", "Invalid"], "{seen:?}");
    // And the next change is recorded too.
    cluster.apply(route("web")).await?;
    verdict(&cluster, &mut op, &ns, ("IngressRoute", "app"), "Valid", "").await?;
    assert_eq!(events(&cluster, &ns, "IngressRoute", "app").await?.len(), 3);
    op.check_running()?;
    Ok(())
}
