//! A replica that starts leading offers its claims record at once: a follower that built the
//! Gateway (and computed no record, not leading) stamps the record with its term as soon as it
//! takes over, without any change of the cluster to make it build again.
//!
//! In memory only: it reads the API server double's request log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator, metric_value};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::Cluster;

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

fn contour_route(ns: &str, name: &str, fqdn: &str) -> Value {
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"virtualhost": {"fqdn": fqdn},
                    "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]}})
}

/// The holder named in the stamp of the Gateway's claims record, once there is one.
async fn stamped_by(cluster: &Cluster, ns: &str) -> Result<Option<String>> {
    let cm = cluster
        .get("v1", "ConfigMap", Some(ns), "edge-claims")
        .await?;
    let text = cm.and_then(|c| c["data"]["claims.json"].as_str().map(str::to_owned));
    let stored: Option<Value> = text.map(|t| serde_json::from_str(&t)).transpose()?;
    Ok(stored.and_then(|s| s["writtenBy"]["holder"].as_str().map(str::to_owned)))
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
async fn a_follower_that_takes_over_stamps_the_record_without_a_change() -> Result<()> {
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
    cluster
        .apply(contour_route(&team, "ancient", "a.example.com"))
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster
        .apply(contour_route(&team, "site", "h.example.com"))
        .await?;
    let start = |identity: &str| -> Result<Operator> {
        Ok(cluster
            .operator(identity)?
            .args([
                "--lease-duration-seconds",
                "3",
                "--lease-renew-seconds",
                "1",
            ])
            .start()?)
    };
    let mut alpha = start("alpha")?;
    alpha.wait_ready(PATIENCE).await?;
    eventually("alpha to lead", async || {
        alpha.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|h| h == "alpha"))
    })
    .await?;
    let mut beta = start("beta")?;
    beta.wait_ready(PATIENCE).await?;
    let gateway = format!("{infra}/edge");
    let builds = |text: &str| {
        let labels = [("gateway", gateway.as_str())];
        metric_value(text, "sluice_dag_build_duration_seconds_count", &labels)
    };
    let before = eventually("beta to build", async || {
        beta.check_running()?;
        Ok(builds(&beta.metrics().await?))
    })
    .await?;
    // A contest alpha records; beta, following, builds it too.
    cluster
        .apply(contour_route(&team, "ancient", "h.example.com"))
        .await?;
    eventually("alpha to record the contest", async || {
        alpha.check_running()?;
        Ok(stamped_by(&cluster, &infra).await?.filter(|h| h == "alpha"))
    })
    .await?;
    // Beta has built the change before alpha dies.
    eventually("beta to build the contest", async || {
        beta.check_running()?;
        Ok(builds(&beta.metrics().await?).filter(|n| *n > before))
    })
    .await?;
    let mark = server.requests_arrived();
    alpha.kill();
    eventually("beta to lead", async || {
        beta.check_running()?;
        Ok(lease_holder(&cluster).await?.filter(|h| h == "beta"))
    })
    .await?;
    // No change of any object beta watches since: the stamp comes from taking over alone.
    eventually("beta to stamp the record", async || {
        beta.check_running()?;
        Ok(stamped_by(&cluster, &infra).await?.filter(|h| h == "beta"))
    })
    .await?;
    let others: Vec<String> = (server.requests().iter())
        .filter(|r| r.seq >= mark && r.is_write() && r.user != "beta" && r.user != "alpha")
        .map(|r| format!("{} {} {}", r.user, r.method, r.path))
        .collect();
    assert_eq!(others, Vec::<String>::new());
    Ok(())
}
