//! How `sluice run` writes IngressRoute statuses a few at a time (`--status-writes-in-flight`):
//! a write that fails among concurrent ones is written again (each status written once, each
//! announced once), and a leader that steps down in the middle of a round drops the writes it
//! has under way.
//!
//! In memory only: both need the API server double (fault injection, its request logs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_e2e::apiserver::{ApiServer, Fault, RequestRecord};
use sluice_e2e::sluice::{OPERATOR_NAMESPACE, Operator};

#[path = "support/cluster.rs"]
mod cluster;
use cluster::Cluster;

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(40);

/// Routes per test: several times the writes in flight.
const ROUTES: usize = 12;
const IN_FLIGHT: &str = "4";

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

fn route(ns: &str, i: usize) -> Value {
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": format!("r{i}")},
           "spec": {"virtualhost": {"fqdn": format!("r{i}.example.com")},
                    "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]}})
}

fn service(ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": "web"},
           "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
}

/// A Gateway `edge` in `ns`, a Service `web` and [`ROUTES`] roots `r0`... to it.
async fn world(cluster: &Cluster, ns: &str) -> Result<()> {
    cluster
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                      "metadata": {"namespace": ns, "name": "edge"}, "spec": {}}),
        )
        .await?;
    cluster.apply(service(ns)).await?;
    for i in 0..ROUTES {
        cluster.apply(route(ns, i)).await?;
    }
    Ok(())
}

/// The `currentStatus` of IngressRoute `ns/name`, once it has one.
async fn status(cluster: &Cluster, ns: &str, name: &str) -> Result<Option<String>> {
    let r = cluster
        .get("contour.heptio.com/v1beta1", "IngressRoute", Some(ns), name)
        .await?;
    Ok(r.and_then(|r| r["status"]["currentStatus"].as_str().map(str::to_owned)))
}

/// Waits until every route carries `want`.
async fn all_are(cluster: &Cluster, op: &mut Operator, ns: &str, want: &str) -> Result<()> {
    for i in 0..ROUTES {
        let name = format!("r{i}");
        eventually(&format!("{ns}/{name} to be {want}"), async || {
            op.check_running()?;
            Ok(status(cluster, ns, &name).await?.filter(|s| s == want))
        })
        .await?;
    }
    Ok(())
}

/// Whether `r` is a status write of `user` to IngressRoute `name` in `ns`.
fn status_write(r: &RequestRecord, user: &str, ns: &str, name: &str) -> bool {
    r.user == user
        && r.method == "PATCH"
        && r.path
            .ends_with(&format!("/namespaces/{ns}/ingressroutes/{name}/status"))
}

/// The reasons of the Events on IngressRoute `ns/name`.
async fn event_reasons(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<String>> {
    let api = cluster.api("events.k8s.io/v1", "Event", Some(ns)).await?;
    let list = api.list(&Default::default()).await?;
    Ok(list
        .items
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == "IngressRoute" && e["regarding"]["name"] == name)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect())
}

/// One status write among the concurrent ones fails (the API server answers 500 for that route
/// alone, until told otherwise): the others are written and announced meanwhile; once the
/// server takes it, that status is written again without any change to the objects. In the end
/// every status was written once (one 200 each) and announced once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_status_write_among_concurrent_ones_is_written_again() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let ns = cluster.namespace("team-w").await?;
    let failing = server.inject(
        Fault::writes("ingressroutes/status")
            .named("r3")
            .failing_with(500),
    );
    world(&cluster, &ns).await?;
    let mut op = cluster
        .operator("solo")?
        .args(["--status-writes-in-flight", IN_FLIGHT])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    for i in (0..ROUTES).filter(|i| *i != 3) {
        let name = format!("r{i}");
        eventually(&format!("{name} to be valid"), async || {
            op.check_running()?;
            Ok(status(&cluster, &ns, &name).await?.filter(|s| s == "valid"))
        })
        .await?;
    }
    eventually("r3's status write to fail", async || {
        op.check_running()?;
        Ok(server
            .requests()
            .iter()
            .any(|r| status_write(r, "solo", &ns, "r3") && r.code == 500)
            .then_some(()))
    })
    .await?;
    assert_eq!(status(&cluster, &ns, "r3").await?, None);

    // The server takes it now: written again with nothing else changing.
    server.clear_fault(failing);
    all_are(&cluster, &mut op, &ns, "valid").await?;
    let requests = server.requests();
    for i in 0..ROUTES {
        let name = format!("r{i}");
        let written: Vec<u16> = requests
            .iter()
            .filter(|r| status_write(r, "solo", &ns, &name))
            .map(|r| r.code)
            .collect();
        assert_eq!(
            written.iter().filter(|c| **c == 200).count(),
            1,
            "{name}: status writes answered {written:?}"
        );
        let reasons = eventually(&format!("{name}'s Valid event"), async || {
            let reasons = event_reasons(&cluster, &ns, &name).await?;
            Ok((!reasons.is_empty()).then_some(reasons))
        })
        .await?;
        assert_eq!(reasons, ["Valid"], "{name}");
    }
    // Announced once: no more Events come (a round after this one finds everything in step).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(event_reasons(&cluster, &ns, "r3").await?, ["Valid"]);
    op.check_running()?;
    Ok(())
}

/// How long the API server holds alpha's status writes: far longer than alpha takes to step
/// down once its lease writes fail (its renew deadline, 6 s).
const HOLD: Duration = Duration::from_secs(15);

/// The status writes of `user` to the routes of `ns` the server holds now.
fn held_writes(server: &ApiServer, user: &str, ns: &str) -> Vec<RequestRecord> {
    server
        .requests_in_flight()
        .into_iter()
        .filter(|r| (0..ROUTES).any(|i| status_write(r, user, ns, &format!("r{i}"))))
        .collect()
}

/// A leader in the middle of a status round (its writes held by the API server, as many in
/// flight as allowed) steps down: the writes under way are dropped (the server sees their
/// client go away; none is ever applied), none is started after, and the new leader writes
/// every status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_steps_down_mid_round_drops_the_writes_under_way() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let ns = cluster.namespace("team-l").await?;
    world(&cluster, &ns).await?;
    // A 9 s lease renewed every second: the leader steps down 6 s after its last renewal.
    let start = |identity: &str| -> Result<Operator> {
        Ok(cluster
            .operator(identity)?
            .args([
                "--lease-duration-seconds",
                "9",
                "--lease-renew-seconds",
                "1",
                "--status-writes-in-flight",
                IN_FLIGHT,
            ])
            .start()?)
    };
    let mut alpha = start("alpha")?;
    let lease = format!("{}sluice-leader", cluster.prefix);
    let holder = async || -> Result<Option<String>> {
        let l = cluster
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                Some(OPERATOR_NAMESPACE),
                &lease,
            )
            .await?;
        Ok(l.and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned)))
    };
    eventually("alpha to lead", async || {
        alpha.check_running()?;
        Ok(holder().await?.filter(|h| h == "alpha"))
    })
    .await?;
    all_are(&cluster, &mut alpha, &ns, "valid").await?;
    let mut beta = start("beta")?;
    beta.wait_ready(PATIENCE).await?;

    // Alpha's status writes are held; every route turns invalid: a round of them starts.
    server.inject(
        Fault::writes("ingressroutes/status")
            .by("alpha")
            .delayed(HOLD),
    );
    let mark = server.requests_arrived();
    cluster.delete("v1", "Service", Some(&ns), "web").await?;
    let held = eventually("alpha's writes in flight", async || {
        alpha.check_running()?;
        let held = held_writes(server, "alpha", &ns);
        Ok((held.len() == IN_FLIGHT.parse::<usize>()?).then_some(held))
    })
    .await?;
    // Alpha's lease writes fail from now on: it steps down with those writes under way.
    server.inject(Fault::writes("leases").by("alpha").failing_with(500));
    eventually("alpha to step down", async || {
        alpha.check_running()?;
        let log = alpha.log();
        Ok(log
            .lines()
            .any(|l| l.contains("leadership changed") && l.contains("leader=false"))
            .then_some(()))
    })
    .await?;
    // The held writes are dropped, by alpha, not answered: the server saw their client go.
    let dropped = eventually("alpha's held writes to be dropped", async || {
        alpha.check_running()?;
        let dropped: Vec<u64> = server
            .requests_dropped()
            .iter()
            .filter(|r| held.iter().any(|h| h.seq == r.seq))
            .map(|r| r.seq)
            .collect();
        Ok((dropped.len() == held.len()).then_some(dropped))
    })
    .await?;
    assert_eq!(dropped.len(), held.len());
    eventually("beta to lead", async || {
        beta.check_running()?;
        Ok(holder().await?.filter(|h| h == "beta"))
    })
    .await?;
    all_are(&cluster, &mut beta, &ns, "invalid").await?;
    // None of alpha's status writes since the change was answered (applied), and none is held.
    let alpha_writes: Vec<RequestRecord> = server
        .requests()
        .into_iter()
        .filter(|r| r.seq >= mark)
        .filter(|r| (0..ROUTES).any(|i| status_write(r, "alpha", &ns, &format!("r{i}"))))
        .collect();
    assert_eq!(alpha_writes, Vec::<RequestRecord>::new());
    assert_eq!(
        held_writes(server, "alpha", &ns),
        Vec::<RequestRecord>::new()
    );
    alpha.check_running()?;
    Ok(())
}
