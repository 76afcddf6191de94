//! `sluice run` keeps host claim dates across restarts and changes of leader (the Gateway's
//! `<gateway>-claims` ConfigMap): a Traefik IngressRoute created before a Contour root and then
//! edited to claim that root's name is refused; after the leader dies and a new replica takes
//! over, the name still answers the holder and the edited route is still invalid. Deleting the
//! ConfigMap shows what it prevents: the next operator orders the claims by creation time and
//! the edited route takes the name.
//!
//! In memory only: the traffic checks need endpoints at 127.0.0.1, and the write checks the API
//! server double's request log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_e2e::backend::Backend;
use sluice_e2e::client::get;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator, OperatorPorts, metric_value};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{Cluster, contour_route, provisioned_bootstrap};

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

const TRAEFIK: &str = "traefik.io/v1alpha1";

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

/// A Service `ns/web` whose endpoint is 127.0.0.1:`port`.
async fn backed_service(cluster: &Cluster, ns: &str, port: u16) -> Result<()> {
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"namespace": ns, "name": "web"},
                      "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}))
        .await?;
    cluster
        .apply(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"namespace": ns, "name": "web-slice",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
               "ports": [{"name": "http", "protocol": "TCP", "port": port}]}),
        )
        .await?;
    Ok(())
}

fn traefik_route(ns: &str, name: &str, rule: &str) -> Value {
    json!({"apiVersion": TRAEFIK, "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"routes": [{"match": rule, "kind": "Rule",
                                "services": [{"name": "web", "port": "http"}]}]}})
}

/// Waits until `host` answers 200 from `backend` (`None`: answers 404).
async fn answers(op: &mut Operator, port: u16, host: &str, backend: Option<&str>) -> Result<()> {
    eventually(&format!("{host} to answer {backend:?}"), async || {
        op.check_running()?;
        let resp = get(port, host, "/").await.ok();
        Ok(resp
            .filter(|r| match backend {
                Some(b) => r.status == 200 && r.backend().as_deref() == Some(b),
                None => r.status == 404,
            })
            .map(|_| ()))
    })
    .await
}

/// Invalid Traefik IngressRoutes of Gateway `gateway`, as `op` counts them.
async fn invalid_traefik(op: &Operator, gateway: &str) -> Result<Option<f64>> {
    let text = op.metrics().await?;
    Ok(metric_value(
        &text,
        "sluice_ingressroutes",
        &[
            ("gateway", gateway),
            ("kind", "IngressRoute"),
            ("group", "traefik.io"),
            ("status", "invalid"),
        ],
    ))
}

/// The Gateway `ns/edge`'s claims ConfigMap.
async fn claims_config_map(cluster: &Cluster, ns: &str) -> Result<Option<Value>> {
    cluster
        .get("v1", "ConfigMap", Some(ns), "edge-claims")
        .await
}

async fn lease_holder(cluster: &Cluster) -> Result<Option<String>> {
    let name = format!("{}sluice-leader", cluster.prefix);
    let lease = cluster
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            &name,
        )
        .await?;
    Ok(lease.and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_claim_stays_refused_when_the_leader_dies_and_another_takes_over() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (loopback endpoints, request log)");
        return Ok(());
    };
    cluster.install_traefik_crds().await?;
    let infra = cluster.namespace("infra").await?;
    let victim_ns = cluster.namespace("victim").await?;
    let evil_ns = cluster.namespace("evil").await?;
    let gateway = format!("{infra}/edge");
    let gw = cluster
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                      "metadata": {"namespace": infra, "name": "edge"},
                      "spec": {"rootNamespaces": [victim_ns, evil_ns]}}),
        )
        .await?;
    let victim = Backend::start("victim").await?;
    let evil = Backend::start("evil").await?;
    backed_service(&cluster, &victim_ns, victim.port()).await?;
    backed_service(&cluster, &evil_ns, evil.port()).await?;
    // Evil's route first; the victim's root a second later (creationTimestamp counts seconds).
    cluster
        .apply(traefik_route(&evil_ns, "old", "Host(`mine.example.com`)"))
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster
        .apply(contour_route(&victim_ns, "site", "h.example.com"))
        .await?;

    let ports = OperatorPorts::free()?;
    let start = |identity: &str| -> Result<Operator> {
        Ok(cluster
            .operator(identity)?
            .ports(ports)
            .args(["--lease-duration-seconds", "3"])
            .args(["--lease-renew-seconds", "1"])
            .start()?)
    };
    let mut alpha = start("alpha")?;
    alpha.wait_ready(PATIENCE).await?;
    let port = ports.envoy_http;
    let bootstrap = provisioned_bootstrap(&cluster, &mut alpha, &infra, "edge").await?;
    let _envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .start()
        .await?;
    answers(&mut alpha, port, "h.example.com", Some("victim")).await?;
    answers(&mut alpha, port, "mine.example.com", Some("evil")).await?;
    // Nothing contested: nothing kept.
    assert_eq!(claims_config_map(&cluster, &infra).await?, None);

    // The older route is edited to claim the victim's name as well: refused whole.
    cluster
        .apply(traefik_route(
            &evil_ns,
            "old",
            "Host(`h.example.com`) || Host(`mine.example.com`)",
        ))
        .await?;
    answers(&mut alpha, port, "mine.example.com", None).await?;
    answers(&mut alpha, port, "h.example.com", Some("victim")).await?;
    let cm = eventually("the claims ConfigMap", async || {
        alpha.check_running()?;
        claims_config_map(&cluster, &infra).await
    })
    .await?;
    let data = cm["data"]["claims.json"].as_str().unwrap();
    assert!(data.contains("\"h.example.com\""), "{data}");
    assert_eq!(
        cm["metadata"]["ownerReferences"][0]["uid"],
        gw["metadata"]["uid"]
    );
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/name"],
        "sluice-claims"
    );

    // The leader dies; a replica started now takes over once the lease expires.
    alpha.kill();
    let mut beta = start("beta")?;
    beta.wait_ready(PATIENCE).await?;
    eventually("beta to lead", async || {
        beta.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|h| h == "beta"))
    })
    .await?;
    // A change only beta can have pushed: Envoy now serves beta's configuration.
    cluster
        .apply(contour_route(&victim_ns, "probe", "probe.example.com"))
        .await?;
    answers(&mut beta, port, "probe.example.com", Some("victim")).await?;
    answers(&mut beta, port, "h.example.com", Some("victim")).await?;
    let mine = get(port, "mine.example.com", "/").await?;
    assert_eq!(mine.status, 404, "{}", mine.text());
    assert_eq!(invalid_traefik(&beta, &gateway).await?, Some(1.0));
    // The record beta read is the one it would write: it only stamps it with its lease term,
    // once (so that a write alpha might still have had in flight would fail with a 409).
    let record = |cm: &Value| -> Value {
        let stored: Value =
            serde_json::from_str(cm["data"]["claims.json"].as_str().unwrap()).unwrap();
        stored["record"].clone()
    };
    let stamped = eventually("beta to stamp the record with its term", async || {
        beta.check_running()?;
        let cm = claims_config_map(&cluster, &infra).await?;
        Ok(cm.filter(|cm| {
            let stored: Value =
                serde_json::from_str(cm["data"]["claims.json"].as_str().unwrap()).unwrap();
            stored["writtenBy"]["holder"] == "beta"
        }))
    })
    .await?;
    assert_eq!(record(&stamped), record(&cm));
    let claims_writes: Vec<String> = (server.requests().iter())
        .filter(|r| r.user == "beta" && r.is_write() && r.path.contains("/configmaps/edge-claims"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(claims_writes.len(), 1, "{claims_writes:?}");

    // Without the record, the next operator orders the claims by creation: the old route wins.
    cluster
        .delete("v1", "ConfigMap", Some(&infra), "edge-claims")
        .await?;
    beta.kill();
    let mut gamma = start("gamma")?;
    gamma.wait_ready(PATIENCE).await?;
    answers(&mut gamma, port, "h.example.com", Some("evil")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_config_map_the_gateway_does_not_own_is_neither_read_nor_written() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (request log)");
        return Ok(());
    };
    let infra = cluster.namespace("infra").await?;
    let team = cluster.namespace("team").await?;
    cluster
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                      "metadata": {"namespace": infra, "name": "edge"},
                      "spec": {"rootNamespaces": [team]}}),
        )
        .await?;
    // Someone else's ConfigMap under the name, naming the younger root as the holder.
    let forged = json!({"format": "sluice.dev/claims/v1", "gateway": format!("{infra}/edge"),
        "record": {"names": {"h.example.com": [
            {"kind": "contour", "namespace": team, "name": "young", "since": 0},
            {"kind": "contour", "namespace": team, "name": "old", "since": 9}]}}});
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"namespace": infra, "name": "edge-claims"},
                        "data": {"claims.json": forged.to_string()}});
    cluster.apply(theirs.clone()).await?;
    // Three roots a second apart (creationTimestamp counts seconds): `ancient` on a name of its
    // own, then `old` and `young` on h.example.com.
    cluster
        .apply(contour_route(&team, "ancient", "a.example.com"))
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster
        .apply(contour_route(&team, "old", "h.example.com"))
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster
        .apply(contour_route(&team, "young", "h.example.com"))
        .await?;

    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    // Routes without a Service are invalid anyway: what counts is who lost the name to whom.
    let lost_to = async |name: &str| -> Result<Option<String>> {
        let r = cluster
            .get(
                "contour.heptio.com/v1beta1",
                "IngressRoute",
                Some(&team),
                name,
            )
            .await?;
        let description = r.and_then(|r| r["status"]["description"].as_str().map(str::to_owned));
        Ok(description.map(|d| {
            let holder =
                d.strip_prefix("fqdn \"h.example.com\" is already used by the older IngressRoute ");
            holder.unwrap_or("").to_owned()
        }))
    };
    // The forged record is not read: the older root holds the name.
    let holder = eventually("the younger root to be refused", async || {
        op.check_running()?;
        Ok(lost_to("young").await?.filter(|h| !h.is_empty()))
    })
    .await?;
    assert_eq!(holder, format!("{team}/old"));
    // `ancient` edited to claim it: refused, a contest that needs recording.
    cluster
        .apply(contour_route(&team, "ancient", "h.example.com"))
        .await?;
    let holder = eventually("the edited root to be refused", async || {
        op.check_running()?;
        Ok(lost_to("ancient").await?.filter(|h| !h.is_empty()))
    })
    .await?;
    assert_eq!(holder, format!("{team}/old"));
    // One more change judged: the pass that saw the edit is over, its record write included.
    cluster
        .apply(contour_route(&team, "probe", "p.example.com"))
        .await?;
    eventually("the next change to be judged", async || {
        op.check_running()?;
        lost_to("probe").await
    })
    .await?;
    // Nothing is written over it.
    let cm = cluster
        .get("v1", "ConfigMap", Some(&infra), "edge-claims")
        .await?
        .unwrap();
    assert_eq!(cm["data"], theirs["data"]);
    let writes: Vec<String> = (server.requests().iter())
        .filter(|r| r.is_write() && r.path.contains("/configmaps/edge-claims"))
        .map(|r| format!("{} {} {}", r.user, r.method, r.path))
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        op.log().contains("not owned by this Gateway"),
        "{}",
        op.log()
    );
    Ok(())
}
