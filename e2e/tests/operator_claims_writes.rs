//! How `sluice run` writes the Gateway's `<gateway>-claims` ConfigMap: from a task of its own,
//! so a hung write holds no later change back; and a ConfigMap of that name the Gateway does
//! not own is reported in the Gateway's status until it is gone.
//!
//! In memory only: both need the API server double (fault injection, its request log).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_e2e::apiserver::Fault;
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::{Cluster, contour_route};

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

/// How long the held ConfigMap writes wait: shorter than the writer's own bound on a call (so
/// the held write lands rather than being given up), longer than the checks made meanwhile.
const HOLD: Duration = Duration::from_secs(20);

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

fn gateway(ns: &str, roots: &[&str]) -> Value {
    json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
           "metadata": {"namespace": ns, "name": "edge"},
           "spec": {"rootNamespaces": roots}})
}

/// Waits until IngressRoute `ns/name` has a status (it was judged).
async fn judged(cluster: &Cluster, op: &mut Operator, ns: &str, name: &str) -> Result<String> {
    eventually(&format!("{ns}/{name} to be judged"), async || {
        op.check_running()?;
        cluster.route_description(ns, name).await
    })
    .await
}

/// The operator's Lease, once it exists.
async fn lease(cluster: &Cluster) -> Result<Option<Value>> {
    let name = format!("{}sluice-leader", cluster.prefix);
    cluster
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(OPERATOR_NAMESPACE),
            &name,
        )
        .await
}

/// The Gateway `ns/edge`'s `Degraded` condition as `(status, reason, message)`.
async fn degraded(cluster: &Cluster, ns: &str) -> Result<Option<(String, String, String)>> {
    let gw = cluster
        .get("sluice.dev/v1alpha1", "Gateway", Some(ns), "edge")
        .await?;
    let conditions = gw.map(|g| g["status"]["conditions"].clone());
    let found = conditions
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Degraded"))
        .map(|c| {
            let field = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
            (field("status"), field("reason"), field("message"))
        });
    Ok(found)
}

/// The claims write is held by the API server: a change made meanwhile is judged and its status
/// written before that write is answered (the writer is a task of its own, not a step of the
/// Gateway's build loop), and the held write still lands afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_claims_write_holds_back_no_later_change() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let infra = cluster.namespace("infra").await?;
    let team = cluster.namespace("team").await?;
    cluster.apply(gateway(&infra, &[&team])).await?;
    // `ancient` first, on a name of its own; `site` a second later (creationTimestamp counts
    // seconds) on h.example.com.
    cluster
        .apply(contour_route(&team, "ancient", "a.example.com"))
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster
        .apply(contour_route(&team, "site", "h.example.com"))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    judged(&cluster, &mut op, &team, "site").await?;
    judged(&cluster, &mut op, &team, "ancient").await?;

    // From now on the operator's ConfigMap writes are answered late.
    server.inject(Fault::writes("configmaps").by("solo").delayed(HOLD));
    // `ancient` edited to claim the held name: refused, a contest the record must keep.
    cluster
        .apply(contour_route(&team, "ancient", "h.example.com"))
        .await?;
    eventually("the edited root to be refused", async || {
        op.check_running()?;
        let d = cluster.route_description(&team, "ancient").await?;
        Ok(d.filter(|d| d.contains("is already used by the older IngressRoute")))
    })
    .await?;
    // A later change, while the record's write is held.
    cluster
        .apply(contour_route(&team, "later", "later.example.com"))
        .await?;
    judged(&cluster, &mut op, &team, "later").await?;
    assert_eq!(
        cluster
            .get("v1", "ConfigMap", Some(&infra), "edge-claims")
            .await?,
        None,
        "the held write landed before the later change was judged"
    );
    assert!(
        !op.log().contains("claims ConfigMap not written"),
        "the claims write was given up before the later change was judged:\n{}",
        op.log()
    );
    // The held write lands in the end.
    let cm = eventually("the claims ConfigMap", async || {
        op.check_running()?;
        cluster
            .get("v1", "ConfigMap", Some(&infra), "edge-claims")
            .await
    })
    .await?;
    let data = cm["data"]["claims.json"].as_str().unwrap();
    assert!(data.contains("\"h.example.com\""), "{data}");
    assert!(data.contains("\"writtenBy\""), "{data}");
    // And the request log shows the order: the claims write arrived before the later route's
    // status write and was answered after it.
    let requests = server.requests();
    let claims_write = (requests.iter().enumerate())
        .find(|(_, r)| {
            r.user == "solo"
                && r.is_write()
                && (r.path.ends_with(&format!("/namespaces/{infra}/configmaps"))
                    || r.path.ends_with("/configmaps/edge-claims"))
        })
        .expect("the claims write");
    let later_status = (requests.iter().enumerate())
        .find(|(_, r)| r.user == "solo" && r.is_write() && r.path.contains("/ingressroutes/later"))
        .expect("the later route's status write");
    assert!(
        claims_write.1.seq < later_status.1.seq && claims_write.0 > later_status.0,
        "claims write {:?}, later status {:?}",
        claims_write,
        later_status
    );
    Ok(())
}

/// A ConfigMap under the claims record's name that the Gateway does not own (made before the
/// Gateway) degrades the Gateway's status, naming it; once it is deleted, the status clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_claims_config_map_shows_in_the_gateway_status_until_it_is_gone() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    if cluster.memory().is_none() {
        eprintln!("in memory only");
        return Ok(());
    }
    let infra = cluster.namespace("infra").await?;
    let team = cluster.namespace("team").await?;
    cluster
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"namespace": infra, "name": "edge-claims"},
                      "data": {"claims.json": "{}"}}))
        .await?;
    cluster.apply(gateway(&infra, &[&team])).await?;
    cluster
        .apply(contour_route(&team, "site", "h.example.com"))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    let (_, _, message) = eventually(
        "the Gateway to be Degraded for its claims ConfigMap",
        async || {
            op.check_running()?;
            let d = degraded(&cluster, &infra).await?;
            Ok(d.filter(|(s, r, _)| s == "True" && r == "ClaimsConfigMapNotOwned"))
        },
    )
    .await?;
    assert!(
        message.starts_with(&format!(
            "ConfigMap {infra}/edge-claims exists and is not owned by this Gateway"
        )),
        "{message}"
    );
    // The admin deletes it: the status clears (the name is looked at again periodically).
    cluster
        .delete("v1", "ConfigMap", Some(&infra), "edge-claims")
        .await?;
    eventually(
        "the Gateway's claims ConfigMap report to clear",
        async || {
            op.check_running()?;
            let d = degraded(&cluster, &infra).await?;
            Ok(d.filter(|(_, r, _)| r != "ClaimsConfigMapNotOwned"))
        },
    )
    .await?;
    Ok(())
}

/// The record names the lease term it was written in: a leader whose term is older than the
/// stored record's (a former leader that has not yet seen it lost the lease) never writes over
/// it, though the record it holds differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_a_later_lease_term_is_not_written_over() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (request log)");
        return Ok(());
    };
    let infra = cluster.namespace("infra").await?;
    let team = cluster.namespace("team").await?;
    let gw = cluster.apply(gateway(&infra, &[&team])).await?;
    cluster
        .apply(contour_route(&team, "ancient", "a.example.com"))
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster
        .apply(contour_route(&team, "site", "h.example.com"))
        .await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    judged(&cluster, &mut op, &team, "site").await?;
    let lease = eventually("solo to hold the lease", async || {
        op.check_running()?;
        let l = lease(&cluster).await?;
        Ok(l.filter(|l| l["spec"]["holderIdentity"] == "solo"))
    })
    .await?;
    assert_eq!(lease["spec"]["leaseTransitions"], 0);
    // The record of a later term of the same Lease (another holder, since gone), in the
    // Gateway's own ConfigMap.
    let later = json!({"format": "sluice.dev/claims/v1", "gateway": format!("{infra}/edge"),
        "writtenBy": {"leaseUid": lease["metadata"]["uid"], "holder": "newer",
                      "leaseTransitions": 7},
        "record": {"names": {"x.example.com": [
            {"kind": "contour", "namespace": team, "name": "x", "since": 1}]}}});
    let owner = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway", "name": "edge",
                       "uid": gw["metadata"]["uid"], "controller": true,
                       "blockOwnerDeletion": true});
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"namespace": infra, "name": "edge-claims",
                                     "ownerReferences": [owner]},
                        "data": {"claims.json": later.to_string()}});
    cluster.apply(theirs.clone()).await?;
    let mark = server.requests_arrived();
    // A contest solo would record: `ancient` edited to claim the held name.
    cluster
        .apply(contour_route(&team, "ancient", "h.example.com"))
        .await?;
    eventually("the edited root to be refused", async || {
        op.check_running()?;
        let d = cluster.route_description(&team, "ancient").await?;
        Ok(d.filter(|d| d.contains("is already used by the older IngressRoute")))
    })
    .await?;
    // Solo read the ConfigMap for that record (and decided), then a later change was judged.
    eventually("solo to read the claims ConfigMap", async || {
        op.check_running()?;
        Ok(server
            .requests()
            .iter()
            .find(|r| {
                r.seq >= mark
                    && r.user == "solo"
                    && r.method == "GET"
                    && r.path.ends_with("/configmaps/edge-claims")
            })
            .map(|_| ()))
    })
    .await?;
    cluster
        .apply(contour_route(&team, "later", "later.example.com"))
        .await?;
    judged(&cluster, &mut op, &team, "later").await?;
    let cm = cluster
        .get("v1", "ConfigMap", Some(&infra), "edge-claims")
        .await?
        .unwrap();
    assert_eq!(cm["data"], theirs["data"]);
    let writes: Vec<String> = (server.requests().iter())
        .filter(|r| r.seq >= mark && r.user == "solo" && r.is_write())
        .filter(|r| r.path.ends_with("/configmaps") || r.path.ends_with("/configmaps/edge-claims"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
    Ok(())
}
