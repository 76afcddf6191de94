//! One tenant's status writes and Events never hold back another's, in `sluice run`: a write
//! or an Event the API server never answers is given up after `--status-call-timeout-seconds`
//! (and tried again later), a write the server always refuses is retried on its own back-off
//! (other tenants' owed Events are not left to the resync), and a namespace with a long backlog
//! of status writes takes only its share of each round.
//!
//! In memory only: these need the API server double (fault injection, its request logs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};
use sluice_e2e::apiserver::{Fault, RequestRecord};
use sluice_e2e::sluice::Operator;

#[path = "support/cluster.rs"]
mod cluster;
use cluster::Cluster;

/// Bound on one wait: a hang guard, never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

/// Forever, for a test: the server holds a matching request this long.
const NEVER: Duration = Duration::from_secs(3600);

async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<Option<T>>) -> Result<T> {
    sluice_e2e::eventually(what, PATIENCE, probe).await
}

fn route(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
           "metadata": {"namespace": ns, "name": name},
           "spec": {"virtualhost": {"fqdn": format!("{name}.{ns}.example.com")},
                    "routes": [{"match": "/", "services": [{"name": "web", "port": 80}]}]}})
}

fn service(ns: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": "web"},
           "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
}

/// A Gateway `edge` in `gw_ns` (roots in any namespace), and a Service `web` in each of `nss`.
async fn world(cluster: &Cluster, gw_ns: &str, nss: &[&str]) -> Result<()> {
    cluster
        .apply(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                      "metadata": {"namespace": gw_ns, "name": "edge"}, "spec": {}}),
        )
        .await?;
    for ns in nss {
        cluster.apply(service(ns)).await?;
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

/// Waits until IngressRoute `ns/name` is valid.
async fn valid(cluster: &Cluster, op: &mut Operator, ns: &str, name: &str) -> Result<()> {
    eventually(&format!("{ns}/{name} to be valid"), async || {
        op.check_running()?;
        Ok(status(cluster, ns, name)
            .await?
            .filter(|s| s == "valid")
            .map(|_| ()))
    })
    .await
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

/// Waits until IngressRoute `ns/name` carries a `Valid` Event, within `patience`.
async fn announced(
    cluster: &Cluster,
    op: &mut Operator,
    ns: &str,
    name: &str,
    patience: Duration,
) -> Result<()> {
    sluice_e2e::eventually(
        &format!("{ns}/{name}'s Valid Event"),
        patience,
        async || {
            op.check_running()?;
            let reasons = event_reasons(cluster, ns, name).await?;
            Ok(reasons.iter().any(|r| r == "Valid").then_some(()))
        },
    )
    .await
}

/// Whether `r` is a status write to IngressRoute `ns/name`.
fn status_write(r: &RequestRecord, ns: &str, name: &str) -> bool {
    r.method == "PATCH"
        && r.path
            .ends_with(&format!("/namespaces/{ns}/ingressroutes/{name}/status"))
}

/// Whether `r` creates an Event in `ns`.
fn event_write(r: &RequestRecord, ns: &str) -> bool {
    r.method == "POST" && r.path.ends_with(&format!("/namespaces/{ns}/events"))
}

/// Team A's status write to `stuck` and every Event in team A's namespace are never answered
/// (an admission webhook hanging on one tenant's objects). Team B's IngressRoute, created
/// while those calls hang, still gets its status and its Event; team A's other route gets its
/// status. Once the server answers again, `stuck` is written and the Event owed to team A's
/// route is recorded: what timed out is tried again, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_never_answered_holds_back_no_other_tenant() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let a = cluster.namespace("team-a").await?;
    let b = cluster.namespace("team-b").await?;
    world(&cluster, &b, &[&a, &b]).await?;
    let stuck = server.inject(
        Fault::writes("ingressroutes/status")
            .named("stuck")
            .delayed(NEVER),
    );
    let mute = server.inject(Fault::writes("events").in_namespace(&a).delayed(NEVER));
    cluster.apply(route(&a, "stuck")).await?;
    cluster.apply(route(&a, "mute")).await?;
    let mut op = cluster
        .operator("solo")?
        .args(["--status-call-timeout-seconds", "3"])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    eventually("team A's status write and Event to hang", async || {
        op.check_running()?;
        let held = server.requests_in_flight();
        let write = held.iter().any(|r| status_write(r, &a, "stuck"));
        let event = held.iter().any(|r| event_write(r, &a));
        Ok((write && event).then_some(()))
    })
    .await?;

    // Team B's new route, while team A's calls hang.
    cluster.apply(route(&b, "late")).await?;
    valid(&cluster, &mut op, &b, "late").await?;
    announced(&cluster, &mut op, &b, "late", PATIENCE).await?;
    valid(&cluster, &mut op, &a, "mute").await?;
    assert_eq!(status(&cluster, &a, "stuck").await?, None);
    // The hung calls were given up, not left to hang: the server saw their client go.
    eventually("the hung write to be given up", async || {
        op.check_running()?;
        let dropped = server.requests_dropped();
        Ok(dropped
            .iter()
            .any(|r| status_write(r, &a, "stuck"))
            .then_some(()))
    })
    .await?;

    // The server answers again: both are tried again, with nothing else changing.
    server.clear_fault(stuck);
    server.clear_fault(mute);
    valid(&cluster, &mut op, &a, "stuck").await?;
    announced(&cluster, &mut op, &a, "mute", PATIENCE).await?;
    announced(&cluster, &mut op, &a, "stuck", PATIENCE).await?;
    op.check_running()?;
    Ok(())
}

/// How long the Event owed to team B may take once the server takes it: far more than its
/// own retry needs (a few seconds), less than the 30 s resync it waited for when the retry
/// schedule was shared with an object that always fails.
const OWED_EVENT_PATIENCE: Duration = Duration::from_secs(20);

/// Bound on the wait for a write retried on its longest back-off (60 s): a hang guard.
const RETRY_PATIENCE: Duration = Duration::from_secs(150);

/// How long team B's Events are refused.
const REFUSED_FOR: Duration = Duration::from_secs(3);

/// Team A's `doomed` IngressRoute's status write always fails (as for an object the API server
/// refuses every time). Team B keeps creating routes, each one a status round: every one is
/// written, and an Event team B is owed (the server refused it once) is recorded on its own
/// retry, not left to the periodic resync because the shared retry schedule was spent on
/// `doomed`. `doomed` itself is still tried: once the server takes it, it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_status_write_always_fails_delays_no_other_tenant() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let a = cluster.namespace("team-a").await?;
    let b = cluster.namespace("team-b").await?;
    world(&cluster, &b, &[&a, &b]).await?;
    let doomed = server.inject(
        Fault::writes("ingressroutes/status")
            .named("doomed")
            .failing_with(500),
    );
    cluster.apply(route(&a, "doomed")).await?;
    let mut op = cluster.operator("solo")?.start()?;
    op.wait_ready(PATIENCE).await?;
    eventually("doomed's write to fail", async || {
        op.check_running()?;
        Ok((server.requests().iter())
            .any(|r| status_write(r, &a, "doomed") && r.code == 500)
            .then_some(()))
    })
    .await?;
    // Round after round while doomed fails.
    for i in 0..8 {
        let name = format!("r{i}");
        cluster.apply(route(&b, &name)).await?;
        valid(&cluster, &mut op, &b, &name).await?;
    }

    // Team B's next Event is refused once: owed.
    let refused = server.inject(Fault::writes("events").in_namespace(&b).failing_with(500));
    let mark = server.requests_arrived();
    cluster.apply(route(&b, "late")).await?;
    valid(&cluster, &mut op, &b, "late").await?;
    eventually("team B's Event to be refused", async || {
        op.check_running()?;
        Ok((server.requests().iter())
            .any(|r| r.seq >= mark && event_write(r, &b) && r.code == 500)
            .then_some(()))
    })
    .await?;
    // Refused for a while: the rounds the change brought (the Gateway's route counts, the
    // status's own echo) are over when the server takes Events again.
    tokio::time::sleep(REFUSED_FOR).await;
    server.clear_fault(refused);
    announced(&cluster, &mut op, &b, "late", OWED_EVENT_PATIENCE).await?;

    // Doomed was never given up: tried again at its next retry (at most a minute apart).
    assert_eq!(status(&cluster, &a, "doomed").await?, None);
    server.clear_fault(doomed);
    sluice_e2e::eventually("doomed to be written", RETRY_PATIENCE, async || {
        op.check_running()?;
        Ok(status(&cluster, &a, "doomed")
            .await?
            .filter(|s| s == "valid"))
    })
    .await?;
    op.check_running()?;
    Ok(())
}

/// Team A's statuses to write: several times its share of one round at one write in flight
/// (64 round trips per write in flight).
const FLOOD: usize = 150;

/// Team A has [`FLOOD`] statuses to write, each slow (the server answers 50 ms late), one write
/// in flight at a time. Team B's IngressRoute, created once team A's writes started, is written
/// before team A's last: a round takes only a share of each namespace, so team B's write waits
/// behind one share of team A's backlog, not all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_flooding_holds_back_no_other_tenant() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let a = cluster.namespace("team-a").await?;
    let b = cluster.namespace("team-b").await?;
    world(&cluster, &b, &[&a, &b]).await?;
    for i in 0..FLOOD {
        cluster.apply(route(&a, &format!("r{i:03}"))).await?;
    }
    server.inject(
        Fault::writes("ingressroutes/status")
            .in_namespace(&a)
            .delayed(Duration::from_millis(50)),
    );
    let mut op = cluster
        .operator("solo")?
        .args(["--status-writes-in-flight", "1"])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    eventually("team A's writes to start", async || {
        op.check_running()?;
        Ok((server.requests().iter())
            .any(|r| status_write(r, &a, "r000"))
            .then_some(()))
    })
    .await?;
    cluster.apply(route(&b, "late")).await?;
    valid(&cluster, &mut op, &b, "late").await?;
    for i in 0..FLOOD {
        valid(&cluster, &mut op, &a, &format!("r{i:03}")).await?;
    }
    let requests = server.requests();
    let arrived = |ns: &str, name: &str| {
        requests
            .iter()
            .filter(|r| status_write(r, ns, name) && r.code == 200)
            .map(|r| r.seq)
            .min()
    };
    let late = arrived(&b, "late").expect("late's status write");
    let last_of_a = (0..FLOOD)
        .filter_map(|i| arrived(&a, &format!("r{i:03}")))
        .max()
        .expect("team A's writes");
    let before = (0..FLOOD)
        .filter_map(|i| arrived(&a, &format!("r{i:03}")))
        .filter(|seq| *seq < late)
        .count();
    eprintln!("team B's write came after {before} of team A's {FLOOD}");
    assert!(
        late < last_of_a,
        "team B's write (request {late}) waited behind all of team A's (the last: {last_of_a})"
    );
    op.check_running()?;
    Ok(())
}

/// The valid route count in Gateway `ns/edge`'s status.
async fn gateway_valid_routes(cluster: &Cluster, ns: &str) -> Result<Option<i64>> {
    let gw = cluster
        .get("sluice.dev/v1alpha1", "Gateway", Some(ns), "edge")
        .await?;
    Ok(gw.and_then(|g| g["status"]["routes"]["valid"].as_i64()))
}

/// The Gateway's status write is never answered (the first one is held): it is given up, the
/// reconcile fails and is retried, and once the server answers again the status shows the
/// route counts. Without a bound the reconcile of that Gateway would wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_status_write_never_answered_is_given_up() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let ns = cluster.namespace("team-g").await?;
    let hung = server.inject(Fault::writes("gateways/status").delayed(NEVER));
    world(&cluster, &ns, &[&ns]).await?;
    cluster.apply(route(&ns, "web")).await?;
    let mut op = cluster
        .operator("solo")?
        .args(["--status-call-timeout-seconds", "3"])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    valid(&cluster, &mut op, &ns, "web").await?;
    eventually("the Gateway's status write to hang", async || {
        op.check_running()?;
        Ok((server.requests_in_flight().iter())
            .any(|r| r.method == "PATCH" && r.path.ends_with("/gateways/edge/status"))
            .then_some(()))
    })
    .await?;
    server.clear_fault(hung);
    eventually("the Gateway's status to count the route", async || {
        op.check_running()?;
        Ok(gateway_valid_routes(&cluster, &ns)
            .await?
            .filter(|n| *n == 1))
    })
    .await?;
    op.check_running()?;
    Ok(())
}

/// Every status write in team A's namespace hangs (its own admission webhook), and team A has
/// far more routes than one batch of writes in flight. A round gives team A one batch: once
/// one of its writes is not answered in time, its other writes wait for the next round (not
/// failed), so team B's route, created while that round runs, gets its status within a few
/// timeouts. Before (review 7 R7.5), the round went through team A's whole share, one batch
/// after another (80 routes, 2 in flight, 2 s each: 80 s, beyond the patience).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_whose_writes_all_hang_holds_a_round_for_one_batch() -> Result<()> {
    let cluster = Cluster::start(true).await?;
    let Some(server) = cluster.memory() else {
        eprintln!("in memory only (fault injection, request log)");
        return Ok(());
    };
    let a = cluster.namespace("team-a").await?;
    let b = cluster.namespace("team-b").await?;
    world(&cluster, &b, &[&a, &b]).await?;
    let hang = server.inject(
        Fault::writes("ingressroutes/status")
            .in_namespace(&a)
            .delayed(NEVER),
    );
    for i in 0..80 {
        cluster.apply(route(&a, &format!("r{i}"))).await?;
    }
    let mut op = cluster
        .operator("solo")?
        .args([
            "--status-call-timeout-seconds",
            "2",
            "--status-writes-in-flight",
            "2",
        ])
        .start()?;
    op.wait_ready(PATIENCE).await?;
    eventually("team A's status writes to hang", async || {
        op.check_running()?;
        let held = server.requests_in_flight();
        Ok(held
            .iter()
            .any(|r| r.method == "PATCH" && r.path.contains(&format!("/namespaces/{a}/")))
            .then_some(()))
    })
    .await?;
    cluster.apply(route(&b, "late")).await?;
    valid(&cluster, &mut op, &b, "late").await?;
    // Team A's writes are tried again, round after round, not given up for good.
    server.clear_fault(hang);
    valid(&cluster, &mut op, &a, "r79").await?;
    op.check_running()?;
    Ok(())
}
