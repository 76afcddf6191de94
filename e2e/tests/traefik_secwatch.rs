//! `sluice run` against the in-memory API server (and a real Envoy) under churn and API
//! faults: the Secret watch scope under a tenant that keeps moving it, and Events the API
//! server refuses.
//!
//! A Gateway with `allowCrossNamespace` makes the operator watch Secrets beside a basicAuth
//! Middleware of a namespace that is no root namespace. A tenant toggling that Middleware's
//! `basicAuth.secret` on and off:
//! - does not restart the namespace's watch (one LIST of its Secrets, whatever the toggles; the
//!   namespace stays watched for a grace period, and the metric says so);
//! - never holds up another tenant's change: with the LIST of a newly reached namespace held by
//!   the API server, another tenant's IngressRoute edits still reach Envoy and their Events.
//!
//! An Event whose creation fails is tried again on a back-off, not only at the next change.
//!
//! Memory only: the checks need the API server double's request log and fault injection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_e2e::apiserver::{ApiServer, Fault};
use sluice_e2e::backend::Backend;
use sluice_e2e::client::Request;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::sluice::Operator;

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{Cluster, provisioned_bootstrap};

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

const TRAEFIK: &str = "traefik.io/v1alpha1";

/// alice:s3cret.
const ALICE: &str = "Basic YWxpY2U6czNjcmV0";

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

fn traefik(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": TRAEFIK, "kind": kind,
           "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

/// A Service `ns/name` whose endpoint is 127.0.0.1:`port`.
async fn backed_service(cluster: &Cluster, ns: &str, name: &str, port: u16) -> Result<()> {
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"namespace": ns, "name": name},
                      "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}))
        .await?;
    cluster
        .apply(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"namespace": ns, "name": format!("{name}-slice"),
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
               "ports": [{"name": "http", "protocol": "TCP", "port": port}]}),
        )
        .await?;
    Ok(())
}

/// The Middleware `ns/auth`: basicAuth with the users Secret, or a Secret-less addPrefix.
fn auth_middleware(ns: &str, on: bool) -> Value {
    let spec = if on {
        json!({"basicAuth": {"secret": "users"}})
    } else {
        json!({"addPrefix": {"prefix": "/"}})
    };
    traefik("Middleware", ns, "auth", spec)
}

/// An IngressRoute `ns/name` for `host` to Service `ns/web`, through `middleware` (`ns/name`).
fn route(
    ns: &str,
    name: &str,
    host: &str,
    service: &str,
    middleware: Option<(&str, &str)>,
) -> Value {
    let mut r = json!({"match": format!("Host(`{host}`)"), "kind": "Rule",
                       "services": [{"name": service, "port": 80}]});
    if let Some((mns, mname)) = middleware {
        r["middlewares"] = json!([{"name": mname, "namespace": mns}]);
    }
    traefik(
        "IngressRoute",
        ns,
        name,
        json!({"entryPoints": ["web"], "routes": [r]}),
    )
}

/// Waits until `request` for `host` answers `status` through Envoy.
async fn answers(op: &mut Operator, request: &Request, status: u16) -> Result<()> {
    let port = op.ports().envoy_http;
    eventually(&format!("{request:?} to answer {status}"), async || {
        op.check_running()?;
        let resp = request.send(port).await;
        Ok(resp.ok().filter(|r| r.status == status).map(|_| ()))
    })
    .await
}

/// The LISTs (not watches) of the Secrets of namespace `ns` the server answered.
fn secret_lists(server: &ApiServer, ns: &str) -> usize {
    let path = format!("/api/v1/namespaces/{ns}/secrets");
    server
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path && !r.query.contains("watch=true"))
        .count()
}

/// The latest Event on Traefik IngressRoute `ns/name`: `(reason, note)`.
async fn latest_event(cluster: &Cluster, ns: &str, name: &str) -> Result<Option<(String, String)>> {
    let mut events: Vec<Value> = cluster
        .list("events.k8s.io/v1", "Event", Some(ns))
        .await?
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name && e["regarding"]["apiVersion"] == TRAEFIK)
        .collect();
    events.sort_by_key(|e| e["eventTime"].as_str().unwrap_or_default().to_owned());
    Ok(events.last().map(|e| {
        let f = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (f(&e["reason"]), f(&e["note"]))
    }))
}

/// The value of `sluice_secret_watches{state="..."}`.
async fn secret_watches(op: &Operator, state: &str) -> Result<Option<f64>> {
    let text = op.metrics().await?;
    let series = format!("sluice_secret_watches{{state=\"{state}\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_toggling_a_secret_reference_neither_restarts_its_watch_nor_holds_up_others()
-> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(_) = cluster.memory() else {
        eprintln!("skipping: the checks need the in-memory API server's request log and faults");
        return Ok(());
    };
    cluster.install_traefik_crds().await?;
    let front = cluster.namespace("sw-front").await?;
    let other = cluster.namespace("sw-other").await?;
    // Two tenants' namespaces, no root namespaces: their Middlewares are reached from `front`.
    let toggler = cluster.namespace("sw-toggler").await?;
    let late = cluster.namespace("sw-late").await?;
    let web = Backend::start("web").await?;
    for ns in [&front, &other] {
        backed_service(&cluster, ns, "web", web.port()).await?;
    }
    for ns in [&toggler, &late] {
        cluster
            .apply(json!({"apiVersion": "v1", "kind": "Secret",
                          "type": "kubernetes.io/basic-auth",
                          "metadata": {"namespace": ns, "name": "users"},
                          "data": {"username": "YWxpY2U=", "password": "czNjcmV0"}}))
            .await?;
        cluster.apply(auth_middleware(ns, false)).await?;
    }
    cluster
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                      "metadata": {"namespace": &front, "name": "edge"},
                      "spec": {"rootNamespaces": [&front, &other],
                               "allowCrossNamespace": true}}),
        )
        .await?;
    for (name, ns) in [("gated", &toggler), ("late", &late)] {
        let host = format!("{name}.example.com");
        let mw = Some((ns.as_str(), "auth"));
        cluster.apply(route(&front, name, &host, "web", mw)).await?;
    }
    cluster
        .apply(route(&other, "plain", "b1.example.com", "web", None))
        .await?;

    let mut op = Operator::builder(&cluster.kubeconfig("solo")?)
        .identity("solo")
        .arg("--debounce-ms")
        .arg("50")
        .args(["--traefik-discovery-interval-seconds", "1"])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    let bootstrap = provisioned_bootstrap(&cluster, &mut op, &front, "edge").await?;
    let _envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?;
    let gated = Request::get("gated.example.com", "/");
    answers(&mut op, &gated, 200).await?;
    answers(&mut op, &Request::get("b1.example.com", "/"), 200).await?;
    let server = cluster.memory().context("in memory")?;
    assert_eq!(
        secret_lists(server, &toggler),
        0,
        "no Secret-reading Middleware yet"
    );

    // Toggling basicAuth on and off: each state reaches Envoy, and the namespace's Secrets
    // are listed once.
    for round in 0..3 {
        cluster.apply(auth_middleware(&toggler, true)).await?;
        answers(&mut op, &gated, 401).await?;
        answers(&mut op, &gated.clone().header("Authorization", ALICE), 200).await?;
        cluster.apply(auth_middleware(&toggler, false)).await?;
        answers(&mut op, &gated, 200).await?;
        assert_eq!(secret_lists(server, &toggler), 1, "round {round}");
    }
    // Out of the scope, in its grace period: still watched, and the metric says so.
    let graced = eventually("one Secret watch in its grace period", async || {
        Ok(secret_watches(&op, "grace").await?.filter(|n| *n >= 1.0))
    })
    .await?;
    assert_eq!(graced, 1.0);
    assert!(
        op.log().contains("Secret watches changed"),
        "no log line about the Secret watches"
    );

    // The next tenant's namespace enters the scope while the API server holds every new
    // Secret request (the namespace's LIST among them) far beyond this test.
    server.inject(Fault::requests("secrets").delayed(Duration::from_secs(3600)));
    for on in [true, false, true] {
        cluster.apply(auth_middleware(&late, on)).await?;
    }
    // The roots and the late namespace: its watch started (its LIST held).
    eventually("the late namespace's Secret watch", async || {
        Ok(secret_watches(&op, "needed").await?.filter(|n| *n == 3.0))
    })
    .await?;
    // Another tenant's edits still reach Envoy and its Event.
    cluster
        .apply(route(&other, "plain", "b2.example.com", "web", None))
        .await?;
    answers(&mut op, &Request::get("b2.example.com", "/"), 200).await?;
    cluster
        .apply(route(&other, "plain", "b2.example.com", "nope", None))
        .await?;
    let note = eventually("the Invalid Event of the edited route", async || {
        op.check_running()?;
        Ok(latest_event(&cluster, &other, "plain")
            .await?
            .filter(|(reason, note)| reason == "Invalid" && note.contains("nope"))
            .map(|(_, note)| note))
    })
    .await?;
    assert!(note.contains("nope"), "{note}");
    // ... all while that LIST was still held.
    assert_eq!(
        secret_lists(server, &late),
        0,
        "the late namespace's Secrets were listed before the other tenant's edits landed"
    );
    op.check_running()?;
    Ok(())
}

/// The Event creations the server refused (injected 500) in namespace `ns`.
fn refused_event_writes(server: &ApiServer, ns: &str) -> usize {
    let path = format!("/apis/events.k8s.io/v1/namespaces/{ns}/events");
    server
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == path && r.code == 500)
        .count()
}

/// An Event the API server refuses is tried again on its own, with no change to trigger a
/// pass: while the fault lasts, the attempts keep coming (more than the periodic resync, every
/// 30 s, and the few changes the route's arrival makes could bring within the patience of one
/// wait); once it clears, the Event is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_retried_without_waiting_for_a_change() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(_) = cluster.memory() else {
        eprintln!("skipping: the checks need the in-memory API server's request log and faults");
        return Ok(());
    };
    cluster.install_traefik_crds().await?;
    // The Gateway (and what the operator provisions and announces for it) elsewhere: the
    // route's namespace gets the route's Events only.
    let gw = cluster.namespace("sw-events-gw").await?;
    let ns = cluster.namespace("sw-events").await?;
    backed_service(&cluster, &ns, "web", 9).await?;
    cluster
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                      "metadata": {"namespace": &gw, "name": "edge"},
                      "spec": {"rootNamespaces": [&ns]}}),
        )
        .await?;
    let mut op = Operator::builder(&cluster.kubeconfig("solo")?)
        .identity("solo")
        .arg("--debounce-ms")
        .arg("50")
        .start()?;
    op.wait_ready(PATIENCE).await?;
    let server = cluster.memory().context("in memory")?;
    let fault = server.inject(Fault::writes("events").failing_with(500));
    cluster
        .apply(route(&ns, "late-news", "news.example.com", "web", None))
        .await?;
    eventually("five refused attempts at the route's Event", async || {
        op.check_running()?;
        Ok((refused_event_writes(server, &ns) >= 5).then_some(()))
    })
    .await?;
    assert_eq!(latest_event(&cluster, &ns, "late-news").await?, None);
    server.clear_fault(fault);
    let (reason, _) = eventually("the route's Event", async || {
        op.check_running()?;
        latest_event(&cluster, &ns, "late-news").await
    })
    .await?;
    assert_eq!(reason, "Valid");
    op.check_running()?;
    Ok(())
}
