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
//! A rejected HTTPS listener is blamed on the IngressRouteTCP whose filter chain changed (the
//! Envoy is a scripted ADS client refusing that chain).
//!
//! The first two tests run in memory only: they need the API server double's request log and
//! fault injection.
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

type AdsSender =
    tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>;

const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// Plays an Envoy of `instance` over ADS that subscribes to every Listener and rejects each
/// response holding a filter chain named `refused` (accepting the others).
async fn envoy_refusing_chain(
    xds: &str,
    creds: &cluster::ClientCredentials,
    instance: &str,
    refused: &str,
) -> Result<(
    tokio::task::JoinHandle<Result<()>>,
    tokio::sync::watch::Receiver<Vec<String>>,
)> {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use prost::Message;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&creds.ca))
        .identity(tonic::transport::Identity::from_pem(
            &creds.cert,
            &creds.key,
        ))
        .domain_name("sluice-xds");
    let channel = tonic::transport::Channel::from_shared(format!("https://{xds}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    let (tx, rx): (AdsSender, _) = tokio::sync::mpsc::channel(5);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: "e2e-refusing".into(),
            cluster: instance.into(),
            ..Node::default()
        }),
        type_url: LISTENER.into(),
        ..DiscoveryRequest::default()
    })
    .await?;
    let mut inbound = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let refused = refused.to_owned();
    // The filter chains of the listeners last accepted.
    let (chains_tx, chains) = tokio::sync::watch::channel(Vec::new());
    let task = tokio::spawn(async move {
        let mut accepted = String::new();
        while let Some(resp) = inbound.message().await? {
            let names: Vec<String> = resp
                .resources
                .iter()
                .filter_map(|any| Listener::decode(any.value.as_slice()).ok())
                .flat_map(|l| l.filter_chains.into_iter().map(|c| c.name))
                .collect();
            let bad = names.contains(&refused);
            if !bad {
                chains_tx.send_replace(names);
            }
            let error_detail = bad.then(|| envoy_types::pb::google::rpc::Status {
                code: 3,
                message: format!("e2e: filter chain {refused} refused"),
                ..Default::default()
            });
            if !bad {
                accepted.clone_from(&resp.version_info);
            }
            tx.send(DiscoveryRequest {
                type_url: resp.type_url,
                version_info: accepted.clone(),
                response_nonce: resp.nonce,
                error_detail,
                ..DiscoveryRequest::default()
            })
            .await?;
        }
        Ok(())
    });
    Ok((task, chains))
}

/// A listener an Envoy rejects because of the filter chain an IngressRouteTCP added is blamed
/// on that IngressRouteTCP (Event `Invalid`, naming Envoy's error), not on the IngressRoute whose
/// TLS filter chain shares the listener. The Envoy is a scripted ADS client refusing that chain
/// (no value found that passes Sluice's checks and that a real Envoy refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_rejected_for_an_ingressroutetcps_chain_is_blamed_on_it() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    cluster.install_traefik_crds().await?;
    let ns = cluster.namespace("sw-blame").await?;
    backed_service(&cluster, &ns, "web", 9).await?;
    let ca = sluice_e2e::tls::TestCa::new("edge ca")?;
    let cert = ca.issue(&["web.example.com"])?;
    cluster
        .apply(serde_json::from_str(&sluice_e2e::manifests::tls_secret(
            &ns, "cert", &cert,
        ))?)
        .await?;
    cluster
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                      "metadata": {"namespace": &ns, "name": "edge"},
                      "spec": {"rootNamespaces": [&ns]}}),
        )
        .await?;
    cluster
        .apply(traefik(
            "IngressRoute",
            &ns,
            "web",
            json!({"entryPoints": ["websecure"],
                   "routes": [{"match": "Host(`web.example.com`)", "kind": "Rule",
                               "services": [{"name": "web", "port": 80}]}],
                   "tls": {"secretName": "cert"}}),
        ))
        .await?;
    let mut op = Operator::builder(&cluster.kubeconfig("solo")?)
        .identity("solo")
        .arg("--debounce-ms")
        .arg("50")
        .start()?;
    op.wait_ready(PATIENCE).await?;
    let creds = cluster::client_credentials(&cluster, &mut op, &ns, "edge").await?;
    let instance = format!("{ns}/edge");
    let (envoy, mut accepted) =
        envoy_refusing_chain(&op.xds_address(), &creds, &instance, "db.example.com").await?;
    eventually("the IngressRoute's Valid Event", async || {
        op.check_running()?;
        Ok(latest_event(&cluster, &ns, "web")
            .await?
            .filter(|(reason, _)| reason == "Valid"))
    })
    .await?;
    // The scripted Envoy has accepted the IngressRoute's chain before the IngressRouteTCP comes:
    // otherwise its first listener could hold both chains, and the rejection name no one object.
    tokio::time::timeout(
        PATIENCE,
        accepted.wait_for(|chains| chains.iter().any(|c| c == "web.example.com")),
    )
    .await
    .context("the scripted Envoy to accept the IngressRoute's filter chain")??;
    cluster
        .apply(traefik(
            "IngressRouteTCP",
            &ns,
            "db",
            json!({"entryPoints": ["websecure"],
                   "routes": [{"match": "HostSNI(`db.example.com`)",
                               "services": [{"name": "web", "port": 80}]}],
                   "tls": {"passthrough": true}}),
        ))
        .await?;
    let note = eventually("the IngressRouteTCP's Invalid Event", async || {
        op.check_running()?;
        Ok(latest_event(&cluster, &ns, "db")
            .await?
            .filter(|(reason, _)| reason == "Invalid")
            .map(|(_, note)| note))
    })
    .await?;
    assert!(note.contains("Envoy rejected"), "{note}");
    assert!(
        note.contains("filter chain db.example.com refused"),
        "{note}"
    );
    // The IngressRoute sharing the listener is not blamed.
    let web = latest_event(&cluster, &ns, "web").await?;
    assert_eq!(web.map(|(reason, _)| reason).as_deref(), Some("Valid"));
    assert!(!envoy.is_finished(), "the scripted Envoy's stream ended");
    envoy.abort();
    op.check_running()?;
    Ok(())
}
