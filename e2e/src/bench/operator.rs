//! The `sluice run` part: the operator against the in-memory API server (as its ServiceAccount,
//! under `config/rbac`, like `e2e/tests/operator.rs`), one Gateway, and a real Envoy started
//! from the bootstrap the operator provisions. The world uses EndpointSlices.
//!
//! - **Status settle**: with the operator ready and the world empty, every object of the world
//!   is created at once (in process, as fast as the server takes them); timed until every
//!   IngressRoute (roots and children) carries a status, then until the last root answers.
//! - **Edit to traffic**: a root IngressRoute's own route gets a new path; timed until Envoy
//!   answers it from the backend.
//! - **EndpointSlice churn**: at a fixed rate, a child Service's EndpointSlice is moved between
//!   two backends; each update is timed until a request through Envoy reaches the new backend
//!   (one kept-alive connection per update, polled every 10 ms for 250 ms, then every tenth of
//!   the time waited). A Service is not updated again while its previous update is not
//!   visible, so the rate reached is printed too.
//! - **Where the time goes**: the operator's own timings (`/metrics`: reconcile passes, DAG
//!   build, translation, status writes) over the settle and the churn.
//! - **Memory and CPU**: the operator's RSS after settling and peak (`VmHWM`), its CPU during
//!   settle, idle and churn; the in-memory API server's thread CPU (it is a test double, so
//!   where it is the bottleneck the figures say so) and Envoy's.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::files::{answers, plain_root};
use super::measure::{CpuWindow, Timings, mib, ms, own_thread, status_kib};
use super::{Config, Figures};
use crate::apiserver::{ApiServer, ApiServerOptions, Tally};
use crate::backend::Backend;
use crate::client::{Connection, Request};
use crate::envoy::Envoy;
use crate::sluice::{OPERATOR_NAMESPACE, Operator};
use crate::tls::TestCa;
use crate::world::{self, World};

/// The user the operator acts as: its ServiceAccount (`config/rbac`).
const OPERATOR_USER: &str = "system:serviceaccount:sluice-system:sluice";
const GATEWAY_NAMESPACE: &str = "bench";
const GATEWAY: &str = "edge";
const IR_API: &str = "contour.heptio.com/v1beta1";
/// Where the Envoy pod mounts its xDS client credentials (replaced by a local directory).
const XDS_CERTS_DIR: &str = "/certs/xds";
/// How long one EndpointSlice update may take to be visible before it counts as lost.
const CHURN_PATIENCE: Duration = Duration::from_secs(30);
/// How often an update's connection asks Envoy, for the first [`CHURN_FINE`] (the target).
const CHURN_POLL: Duration = Duration::from_millis(10);
const CHURN_FINE: Duration = Duration::from_millis(250);

pub(super) async fn run(
    config: &Config,
    roots: usize,
    backend: &Backend,
    ca: &TestCa,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let alternate = Backend::start("bench-alt").await?;
    let dir = crate::temp_dir()?;
    let server = ApiServer::start_with(ApiServerOptions {
        // Every event of the bulk create stays resumable: a watch that falls behind resumes
        // instead of re-listing, as it would against a real API server's watch cache.
        history_limit: 50 * roots + 100_000,
        allow_loopback_endpoints: true,
        ..ApiServerOptions::default()
    })?;
    install(&server).await?;
    let kubeconfig = server.write_kubeconfig_as(dir.path(), "bench", OPERATOR_USER)?;
    let mut op = Operator::builder(&kubeconfig)
        .identity("bench")
        .args(config.run_args.iter())
        .start()?;
    op.wait_ready(config.timeout).await?;
    let bootstrap = provisioned_bootstrap(&server, &mut op, dir.path(), config.timeout).await?;
    let mut envoy = Envoy::builder(bootstrap)
        .local_admin_socket()
        .ready_timeout(config.timeout)
        .start()
        .await?;
    let envoy_http = op.ports().envoy_http;
    let op_pid = op.process().pid();
    let envoy_pid = envoy.process().pid();
    let api_thread = own_thread("apiserver-").context("the API server's thread")?;
    let figure = |what: &str| format!("run {what}");

    // Status settle.
    let world = World {
        roots,
        backend_port: backend.port(),
        slices: true,
    };
    // Parsed before the clock starts: the objects are the bench's input, not a client's work.
    let objects = world::documents(&world, ca)?
        .into_iter()
        .map(|(file, doc)| {
            Ok((
                serde_json::from_str::<Value>(&doc).with_context(|| file.clone())?,
                file,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut statuses = status_tally(&server);
    let before = Timings::of(&op).await?;
    let op_cpu = CpuWindow::process(op_pid)?;
    let api_cpu = CpuWindow::at(api_thread.clone())?;
    let envoy_cpu = CpuWindow::process(envoy_pid)?;
    let started = Instant::now();
    for ns in world::namespaces(&world) {
        server
            .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
    }
    for (obj, file) in objects {
        server
            .create(obj)
            .map_err(|e| anyhow::anyhow!("creating {file}: {e}"))?;
    }
    let created = started.elapsed();
    let at_last_create = statuses.count();
    let settle = wait_statuses(&mut statuses, &mut op, 2 * roots, started, config.timeout).await?;
    let settled = started.elapsed();
    let (op_used, _) = op_cpu.end()?;
    let (api_used, _) = api_cpu.end()?;
    let (envoy_used, _) = envoy_cpu.end()?;
    // The pass that wrote the last status observes its duration just after: give it a moment.
    let mut after = Timings::of(&op).await?;
    let at_settle = after.passes;
    let deadline = Instant::now() + Duration::from_secs(2);
    while after.passes <= at_settle && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = Timings::of(&op).await?;
    }
    after.since(before).record(figures, "settle", roots);
    figures.record(
        figure("create every object (in process)"),
        "ms",
        roots,
        ms(created),
    );
    figures.record(
        figure("first IngressRoute status"),
        "ms",
        roots,
        ms(settle.first),
    );
    figures.record(figure("half of the statuses"), "ms", roots, ms(settle.half));
    figures.record(figure("status settle (all)"), "ms", roots, ms(settled));
    // The world exists only once its last object is created: the operator cannot settle what
    // is not there yet, so the settle is also timed from then (the in-process creation above
    // is the bench's own client writing, sharing the cores with the operator).
    figures.record(
        figure("statuses already written at the last create"),
        "",
        roots,
        at_last_create as f64,
    );
    figures.record(
        figure("status settle from the last create"),
        "ms",
        roots,
        ms(settled.saturating_sub(created)),
    );
    figures.record(
        figure("status poll resolution"),
        "ms",
        roots,
        ms(settle.resolution),
    );
    for (what, used) in [
        ("operator", op_used),
        ("API server thread", api_used),
        ("Envoy", envoy_used),
    ] {
        figures.record(
            figure(&format!("CPU during settle: {what}")),
            "ms",
            roots,
            ms(used),
        );
    }
    let host = world::host(roots - 1);
    wait_until(
        &mut op,
        config.timeout,
        &format!("{host}/own"),
        async || answers(envoy_http, &host, "/own", "bench").await,
    )
    .await?;
    figures.record(
        figure("create to traffic (last root)"),
        "ms",
        roots,
        ms(started.elapsed()),
    );

    // Steady state: RSS after a quiet moment, idle CPU.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(kib) = status_kib(op_pid, "VmRSS") {
        figures.record(figure("operator RSS after settle"), "MiB", roots, mib(kib));
    }
    if let Some(kib) = status_kib(envoy_pid, "VmRSS") {
        figures.record(figure("Envoy RSS after settle"), "MiB", roots, mib(kib));
    }
    let idle = CpuWindow::process(op_pid)?;
    tokio::time::sleep(config.idle).await;
    figures.record(
        figure("operator idle CPU"),
        "%",
        roots,
        idle.end()?.1 * 100.0,
    );

    // Edit to traffic.
    let mut latencies = Vec::with_capacity(config.edits);
    for k in 0..config.edits {
        let i = plain_root(k, roots);
        let path = format!("/edit-{k}");
        server
            .apply(serde_json::from_str(&world::root_route(i, &path))?)
            .map_err(|e| anyhow::anyhow!("editing root {i}: {e}"))?;
        let edited = Instant::now();
        let host = world::host(i);
        wait_until(
            &mut op,
            config.timeout,
            &format!("{host}{path}"),
            async || answers(envoy_http, &host, &path, "bench").await,
        )
        .await?;
        latencies.push(edited.elapsed());
    }
    figures.record_latency(
        |p| figure(&format!("edit to traffic {p}")),
        roots,
        &latencies,
    );

    // EndpointSlice churn.
    if !config.churn.is_zero() {
        let targets = Targets {
            roots,
            main: backend,
            alternate: &alternate,
            envoy_http,
        };
        let cpu = vec![
            ("operator", CpuWindow::process(op_pid)?),
            ("API server thread", CpuWindow::at(api_thread)?),
            ("Envoy", CpuWindow::process(envoy_pid)?),
            (
                "bench process (API server, probes)",
                CpuWindow::process(std::process::id())?,
            ),
        ];
        let before = Timings::of(&op).await?;
        let churned = churn(config, &server, &targets, cpu).await?;
        Timings::of(&op)
            .await?
            .since(before)
            .record(figures, "churn", roots);
        figures.record(figure("churn updates sent"), "", roots, churned.sent as f64);
        figures.record(figure("churn rate reached"), "/s", roots, churned.rate);
        figures.record(
            figure("churn updates not visible within 30 s"),
            "",
            roots,
            churned.lost as f64,
        );
        figures.record_latency(
            |p| figure(&format!("churn update to Envoy {p}")),
            roots,
            &churned.latencies,
        );
        for (what, share) in &churned.cpu {
            figures.record(
                figure(&format!("{what} CPU during churn")),
                "%",
                roots,
                share * 100.0,
            );
        }
    }
    if let Some(kib) = status_kib(op_pid, "VmRSS") {
        figures.record(figure("operator RSS at the end"), "MiB", roots, mib(kib));
    }
    if let Some(kib) = status_kib(op_pid, "VmHWM") {
        figures.record(figure("operator peak RSS"), "MiB", roots, mib(kib));
    }
    op.check_running()?;
    envoy.process().check_running()?;
    Ok(())
}

/// The operator's namespace, Sluice's CRDs (from `sluice crds`), `config/rbac`, and the
/// Gateway.
async fn install(server: &ApiServer) -> anyhow::Result<()> {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e| anyhow::anyhow!("installing {what}: {e}")
    };
    server
        .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}))
        .map_err(fail("the operator's namespace"))?;
    let crds = crate::sluice::run(&["crds"]).await?;
    server.apply_yaml(&crds).map_err(fail("the CRDs"))?;
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rbac");
    for file in [
        "service_account.yaml",
        "cluster_role.yaml",
        "cluster_role_binding.yaml",
        "leader_election_role.yaml",
        "leader_election_role_binding.yaml",
    ] {
        let text = std::fs::read_to_string(rbac.join(file))
            .with_context(|| format!("reading config/rbac/{file}"))?;
        server.apply_yaml(&text).map_err(fail(file))?;
    }
    server
        .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}}))
        .map_err(fail("the Gateway's namespace"))?;
    server
        .create(
            json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
                       "metadata": {"namespace": GATEWAY_NAMESPACE, "name": GATEWAY}, "spec": {}}),
        )
        .map_err(fail("the Gateway"))?;
    Ok(())
}

/// The bootstrap provisioned for the Gateway, with the xDS client credentials of its Secret
/// written under `dir` and the pod's mount path replaced by that directory.
async fn provisioned_bootstrap(
    server: &ApiServer,
    op: &mut Operator,
    dir: &Path,
    timeout: Duration,
) -> anyhow::Result<String> {
    let cm = format!("{GATEWAY}-envoy-bootstrap");
    let secret = format!("{GATEWAY}-xds-client");
    let get = |kind: &str, name: &str| server.get("v1", kind, Some(GATEWAY_NAMESPACE), name);
    let mut found = None;
    wait_until(op, timeout, &format!("ConfigMap {cm}"), async || {
        found = get("ConfigMap", &cm)
            .and_then(|c| c["data"]["bootstrap.json"].as_str().map(str::to_owned));
        found.is_some()
    })
    .await?;
    let bootstrap = found.unwrap_or_default();
    if !bootstrap.contains(XDS_CERTS_DIR) {
        return Ok(bootstrap);
    }
    let mut creds = None;
    wait_until(op, timeout, &format!("Secret {secret}"), async || {
        creds = get("Secret", &secret);
        creds.is_some()
    })
    .await?;
    let creds = creds.unwrap_or_default();
    let certs = dir.join("xds");
    std::fs::create_dir_all(&certs)?;
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        let b64 = creds["data"][key]
            .as_str()
            .with_context(|| format!("Secret {secret} has no {key}"))?;
        let pem = base64::engine::general_purpose::STANDARD.decode(b64)?;
        std::fs::write(certs.join(key), pem)?;
    }
    Ok(bootstrap.replace(XDS_CERTS_DIR, &certs.display().to_string()))
}

/// Polls `done` every 5 ms until it holds; fails if the operator exits or after `timeout`.
async fn wait_until(
    op: &mut Operator,
    timeout: Duration,
    what: &str,
    mut done: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if done().await {
            return Ok(());
        }
        op.check_running()?;
        if Instant::now() > deadline {
            bail!("{what}: not there within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// When the first and half of the IngressRoutes had a status (from the first create), and
/// the longest pause between two polls (the resolution of these times).
struct Settle {
    first: Duration,
    half: Duration,
    resolution: Duration,
}

/// Waits until `want` IngressRoutes carry a status (`status.currentStatus`), counted in process
/// from the writes since the last poll ([`Tally`]); polls are spaced by four times the last
/// poll's cost (at least 10 ms), so the times are known to within that spacing (printed).
async fn wait_statuses(
    statuses: &mut Tally<fn(&Value) -> bool>,
    op: &mut Operator,
    want: usize,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Settle> {
    let (mut first, mut half) = (None, None);
    let mut resolution = Duration::ZERO;
    // A line on stderr about every second: how the statuses came (where the settle's time goes).
    let mut next_report = Duration::from_secs(1);
    loop {
        let poll = Instant::now();
        let with_status = statuses.count();
        let cost = poll.elapsed();
        if started.elapsed() >= next_report {
            eprintln!(
                "bench: settle at {:.1} s: {with_status} of {want} IngressRoutes with a status",
                started.elapsed().as_secs_f64()
            );
            next_report += Duration::from_secs(1);
        }
        if with_status > 0 {
            first.get_or_insert(started.elapsed());
        }
        if with_status * 2 >= want {
            half.get_or_insert(started.elapsed());
        }
        if with_status >= want {
            return Ok(Settle {
                first: first.unwrap_or_default(),
                half: half.unwrap_or_default(),
                resolution,
            });
        }
        op.check_running()?;
        if started.elapsed() > timeout {
            bail!("{with_status} of {want} IngressRoutes had a status after {timeout:?}");
        }
        let pause = (cost * 4).max(Duration::from_millis(10));
        resolution = resolution.max(pause + cost);
        tokio::time::sleep(pause).await;
    }
}

/// Whether an IngressRoute carries a status (`status.currentStatus`).
fn has_status(r: &Value) -> bool {
    r["status"]["currentStatus"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
}

/// How many IngressRoutes carry a status, counted in process from the writes since the last
/// count (not a scan of all of them: the polls must not take the cores the settle needs).
fn status_tally(server: &ApiServer) -> Tally<fn(&Value) -> bool> {
    server.tally(IR_API, "IngressRoute", has_status)
}

/// What churn updates and where it checks them.
struct Targets<'a> {
    roots: usize,
    main: &'a Backend,
    alternate: &'a Backend,
    envoy_http: u16,
}

struct Churned {
    sent: usize,
    /// Updates per second over the window.
    rate: f64,
    latencies: Vec<Duration>,
    /// Updates not visible within [`CHURN_PATIENCE`].
    lost: usize,
    /// CPU of each process measured over the window of updates, as a fraction of one core.
    cpu: Vec<(&'static str, f64)>,
}

/// Moves child Services' EndpointSlices between the two backends at `config.churn_rate` per
/// second for `config.churn`, each update timed until Envoy routes `/child` of its root to the
/// new backend. Only plain-HTTP roots' children are updated, and never one whose previous update
/// is still in flight. The `cpu` windows end when the last update is sent.
async fn churn(
    config: &Config,
    server: &ApiServer,
    targets: &Targets<'_>,
    cpu: Vec<(&'static str, CpuWindow)>,
) -> anyhow::Result<Churned> {
    let candidates: Vec<usize> = (0..targets.roots).filter(|i| !world::is_tls(*i)).collect();
    if candidates.is_empty() {
        bail!("no plain-HTTP root to churn");
    }
    let busy: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let mut on_alternate = vec![false; targets.roots];
    let mut tasks = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / config.churn_rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut next, mut sent) = (0usize, 0usize);
    let started = Instant::now();
    while started.elapsed() < config.churn {
        ticker.tick().await;
        let free = {
            let busy = busy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (0..candidates.len())
                .map(|k| (next + k) % candidates.len())
                .find(|&k| !busy.contains(&candidates[k]))
        };
        let Some(k) = free else {
            continue;
        };
        next = k + 1;
        let i = candidates[k];
        on_alternate[i] = !on_alternate[i];
        let to = if on_alternate[i] {
            targets.alternate
        } else {
            targets.main
        };
        let slice = World {
            roots: targets.roots,
            backend_port: to.port(),
            slices: true,
        };
        let doc = world::endpoints(&slice, &format!("child-{i}"), "svc");
        server
            .apply(serde_json::from_str(&doc)?)
            .map_err(|e| anyhow::anyhow!("updating child-{i}/svc-1: {e}"))?;
        let applied = Instant::now();
        busy.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(i);
        sent += 1;
        let (busy, port, backend) = (busy.clone(), targets.envoy_http, to.name().to_owned());
        tasks.spawn(async move {
            let seen = wait_backend(port, &world::host(i), "/child", &backend).await;
            busy.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&i);
            seen.then(|| applied.elapsed())
        });
    }
    let window = started.elapsed();
    let cpu = cpu
        .into_iter()
        .map(|(what, w)| Ok((what, w.end()?.1)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut latencies = Vec::with_capacity(sent);
    let mut lost = 0;
    while let Some(done) = tasks.join_next().await {
        match done? {
            Some(latency) => latencies.push(latency),
            None => lost += 1,
        }
    }
    Ok(Churned {
        sent,
        rate: sent as f64 / window.as_secs_f64(),
        latencies,
        lost,
        cpu,
    })
}

/// Polls `host``path` on one kept-alive connection (reopened if Envoy closes it) until
/// `backend` answers; false after [`CHURN_PATIENCE`]. Every [`CHURN_POLL`] for the first
/// [`CHURN_FINE`], then every tenth of the time waited so far (at most a second): slow updates
/// are timed to within 10 %, and a backlog of them does not flood Envoy with probes.
async fn wait_backend(port: u16, host: &str, path: &str, backend: &str) -> bool {
    let started = Instant::now();
    let deadline = started + CHURN_PATIENCE;
    let request = Request::get(host, path);
    let mut conn: Option<Connection> = None;
    while Instant::now() < deadline {
        if conn.is_none() {
            conn = Connection::open(port).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match c.send(&request).await {
                Ok(r) if r.status == 200 && r.backend().as_deref() == Some(backend) => {
                    return true;
                }
                Ok(_) => {}
                Err(_) => conn = None,
            }
        }
        let waited = started.elapsed();
        let pause = if waited < CHURN_FINE {
            CHURN_POLL
        } else {
            (waited / 10).min(Duration::from_secs(1))
        };
        tokio::time::sleep(pause).await;
    }
    false
}
