//! A leader of a Lease that was deleted (and created again, held by another) never writes over
//! the claims record stamped under the new Lease, though its own renew deadline has not passed:
//! terms of two Leases do not compare, so before writing over a record stamped under another
//! Lease it reads the Lease, and finding another one it stops.
//!
//! In memory only: the API server double holds the leader's Lease requests (so it keeps leading
//! until its deadline) and logs every request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_e2e::apiserver::Fault;
use sluice_e2e::sluice::OPERATOR_NAMESPACE;

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{Cluster, contour_route};

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

/// How long the leader's Lease requests are held: shorter than its renew deadline (so it still
/// leads when it decides on the record), long enough for the contest to be judged meanwhile.
const HOLD: Duration = Duration::from_secs(8);

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_of_a_deleted_lease_never_writes_over_the_new_leases_record() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (faults, request log)");
        return Ok(());
    };
    let infra = cluster.namespace("infra").await?;
    let team = cluster.namespace("team").await?;
    let gw = cluster
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
    let mut op = cluster
        .operator("solo")?
        .args([
            "--lease-duration-seconds",
            "40",
            "--lease-renew-deadline-seconds",
            "30",
            "--lease-renew-seconds",
            "2",
        ])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    let lease_name = format!("{}sluice-leader", cluster.prefix);
    let lease = || {
        cluster.get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            &lease_name,
        )
    };
    eventually("solo to hold the lease", async || {
        op.check_running()?;
        Ok(lease()
            .await?
            .filter(|l| l["spec"]["holderIdentity"] == "solo"))
    })
    .await?;
    eventually("site to be judged", async || {
        op.check_running()?;
        cluster.route_description(&team, "site").await
    })
    .await?;

    // Solo's Lease requests are held: it keeps leading on its last renewal. Meanwhile its Lease
    // is deleted and created again, held by another replica, which writes the record.
    server.inject(
        Fault::requests("leases")
            .by("solo")
            .delayed(HOLD)
            .lasting(HOLD),
    );
    cluster
        .delete(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            &lease_name,
        )
        .await?;
    let now = "2030-01-01T00:00:00.000000Z";
    let new_lease = cluster
        .apply(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"namespace": OPERATOR_NAMESPACE, "name": lease_name},
            "spec": {"holderIdentity": "newer", "leaseDurationSeconds": 40,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}),
        )
        .await?;
    let new_uid = new_lease["metadata"]["uid"].clone();
    assert!(new_uid.is_string());
    let theirs = json!({"format": "sluice.dev/claims/v1", "gateway": format!("{infra}/edge"),
        "writtenBy": {"leaseUid": new_uid, "holder": "newer", "leaseTransitions": 0},
        "record": {"names": {"x.example.com": [
            {"kind": "contour", "namespace": team, "name": "x", "since": 1}]}}});
    let owner = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway", "name": "edge",
                       "uid": gw["metadata"]["uid"], "controller": true,
                       "blockOwnerDeletion": true});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"namespace": infra, "name": "edge-claims",
                                 "ownerReferences": [owner]},
                    "data": {"claims.json": theirs.to_string()}});
    cluster.apply(cm.clone()).await?;
    let mark = server.requests_arrived();

    // A contest solo would record: `ancient` edited to claim the held name. Solo still leads
    // (its deadline has not passed), judges it and writes its status.
    cluster
        .apply(contour_route(&team, "ancient", "h.example.com"))
        .await?;
    eventually("the edited root to be refused", async || {
        op.check_running()?;
        let d = cluster.route_description(&team, "ancient").await?;
        Ok(d.filter(|d| d.contains("is already used by the older IngressRoute")))
    })
    .await?;
    // Solo read the record, then asked for the Lease (held until the fault ends): once that
    // answer came, it has decided.
    eventually(
        "solo to read the claims ConfigMap and the Lease",
        async || {
            op.check_running()?;
            let requests = server.requests();
            let after = |path: &str| {
                requests
                    .iter()
                    .find(|r| r.seq >= mark && r.user == "solo" && r.path.ends_with(path))
                    .map(|r| r.seq)
            };
            let cm_read = after("/configmaps/edge-claims");
            let lease_read = requests.iter().any(|r| {
                cm_read.is_some_and(|s| r.seq > s)
                    && r.user == "solo"
                    && r.method == "GET"
                    && r.path.ends_with(&format!("/leases/{lease_name}"))
            });
            Ok(lease_read.then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(HOLD + Duration::from_secs(2)).await;
    let stored = cluster
        .get("v1", "ConfigMap", Some(&infra), "edge-claims")
        .await?
        .unwrap();
    assert_eq!(stored["data"], cm["data"]);
    let writes: Vec<String> = (server.requests().iter())
        .filter(|r| r.seq >= mark && r.user == "solo" && r.is_write())
        .filter(|r| r.path.ends_with("/configmaps") || r.path.ends_with("/configmaps/edge-claims"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
    Ok(())
}

/// The other side: a leader whose Lease was deleted and that took the new one writes over the
/// record stamped under the deleted Lease (having read the Lease and found its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_of_a_new_lease_writes_over_the_deleted_leases_record() -> Result<()> {
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
    let mut op = cluster
        .operator("solo")?
        .args([
            "--lease-duration-seconds",
            "3",
            "--lease-renew-seconds",
            "1",
        ])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    let lease_name = format!("{}sluice-leader", cluster.prefix);
    let lease_uid = async || -> Result<Option<String>> {
        let l = cluster
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                Some(OPERATOR_NAMESPACE),
                &lease_name,
            )
            .await?;
        Ok(l.filter(|l| l["spec"]["holderIdentity"] == "solo")
            .and_then(|l| l["metadata"]["uid"].as_str().map(str::to_owned)))
    };
    let stamp = async || -> Result<Option<String>> {
        let cm = cluster
            .get("v1", "ConfigMap", Some(&infra), "edge-claims")
            .await?;
        let text = cm.and_then(|c| c["data"]["claims.json"].as_str().map(str::to_owned));
        let stored: Option<Value> = text.map(|t| serde_json::from_str(&t)).transpose()?;
        Ok(stored.and_then(|s| s["writtenBy"]["leaseUid"].as_str().map(str::to_owned)))
    };
    let first = eventually("solo to hold the lease", async || {
        op.check_running()?;
        lease_uid().await
    })
    .await?;
    cluster
        .apply(contour_route(&team, "ancient", "h.example.com"))
        .await?;
    eventually(
        "the contest to be recorded under the first Lease",
        async || {
            op.check_running()?;
            Ok(stamp().await?.filter(|s| *s == first))
        },
    )
    .await?;
    let mark = server.requests_arrived();
    cluster
        .delete(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            &lease_name,
        )
        .await?;
    let second = eventually("solo to hold a new Lease", async || {
        op.check_running()?;
        Ok(lease_uid().await?.filter(|u| *u != first))
    })
    .await?;
    // The next record (one more claimant of the contested name) is written under it.
    cluster
        .apply(contour_route(&team, "late", "h.example.com"))
        .await?;
    eventually("the record to be stamped under the new Lease", async || {
        op.check_running()?;
        Ok(stamp().await?.filter(|s| *s == second))
    })
    .await?;
    // It read the Lease before writing over the deleted Lease's record.
    let requests = server.requests();
    let solo = |r: &&sluice_e2e::apiserver::RequestRecord| r.seq >= mark && r.user == "solo";
    let write = (requests.iter().filter(solo))
        .find(|r| r.is_write() && r.path.ends_with("/configmaps/edge-claims"))
        .map(|r| r.seq)
        .unwrap();
    assert!(requests.iter().filter(solo).any(|r| r.seq < write
        && r.method == "GET"
        && r.path.ends_with(&format!("/leases/{lease_name}"))));
    Ok(())
}
