//! The route reconcilers: after a short debounce, one snapshot of the shared watches goes to
//! one reconciler per Gateway instance, which builds, translates and hands its resources to the
//! xDS cache; once all have built it, the leader writes the IngressRoute statuses that changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::api::gateway::RouteCounts;
use crate::api::ingressroute::IngressRouteStatus;
use crate::controller::claims;
use crate::controller::crds::CrdState;
use crate::controller::leader::Leadership;
use crate::dag::{Dag, Selection, StatusCounts, StatusTally};
use crate::metrics::Metrics;
use crate::pipeline::InstancePipeline;
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, TraefikKind};
use crate::source::kube::Stores;
use crate::xds::attribution::blame_statuses;
use crate::xds::cache::{Cache, InstanceResources};
use crate::xds::translate::{TranslateError, TranslateOptions};

mod events;
mod pending;
mod retry;
mod round_task;
mod rounds;
mod traefik;
mod writes;

pub use events::EventSink;
use round_task::{Written, finished_round, join_round, write_round};
use rounds::{RoundOutcome, StatusRounds};

pub use traefik::{
    ROUTE_SERIES, TraefikAnnounced, TraefikRef, is_route_kind, object_series_of, series_counts,
    series_of, traefik_verdicts,
};
use writes::write_statuses;
pub use writes::{
    NAMESPACE_ROUND_TRIPS, STATUS_CALL_TIMEOUT_SECONDS, STATUS_WRITES_IN_FLIGHT, status_event,
    statuses_to_write,
};

/// Route counts per Gateway (`namespace/name`), read by the Gateway controller for its status.
pub type SharedRouteCounts = Arc<Mutex<BTreeMap<String, RouteCounts>>>;

/// The latest DAG of each Gateway (`namespace/name`), read by the Gateway controller to name
/// the IngressRoute a configuration Envoy rejected comes from.
pub type SharedDags = Arc<Mutex<BTreeMap<String, Arc<Dag>>>>;

pub struct RoutesContext {
    pub client: kube::Client,
    pub stores: Stores,
    pub cache: Arc<Cache>,
    pub metrics: Metrics,
    /// Whether this replica leads: asked before every status write.
    pub leadership: Leadership,
    pub translate: TranslateOptions,
    pub debounce: Duration,
    /// How many status writes (and Events) are in flight at once (at least one).
    pub status_writes_in_flight: usize,
    /// How long one status write or Event may take before it counts as failed
    /// (`--status-call-timeout-seconds`).
    pub call_timeout: Duration,
    /// Statuses are rechecked this often even without changes (a failed write is retried).
    pub resync: Duration,
    pub route_counts: SharedRouteCounts,
    pub dags: SharedDags,
    /// Bumped when route counts change, so Gateway statuses follow (and when a claims
    /// ConfigMap not owned by its Gateway is found or gone: `claims_problems`).
    pub counts_changed: watch::Sender<u64>,
    /// Claims ConfigMaps taken by one their Gateway does not own (see `claims`).
    pub claims_problems: claims::SharedClaimsProblems,
    /// Route to loopback endpoint addresses (`--allow-loopback-endpoints`, tests only).
    pub allow_loopback_endpoints: bool,
    /// The CRDs as installed: whether IngressRoute statuses go through `/status`.
    pub crds: CrdState,
    /// Records an Event on an IngressRoute whose status the leader changed (and on a Traefik
    /// object whose verdict changed).
    pub recorder: EventSink,
    /// The operator's Lease (namespace, name), for the claims writer.
    pub lease: (String, String),
}

/// The reporting controller of the events Sluice records on IngressRoutes.
pub const EVENT_REPORTER: &str = "sluice.dev/route-controller";

/// Action of the events Sluice records on IngressRoutes.
pub const EVENT_ACTION: &str = "Validate";

/// The statuses this replica wrote and announced with an event, by IngressRoute (with its uid):
/// a status written again because the snapshot had not yet seen the first write is not
/// announced twice. `owed`: statuses written whose Event could not be recorded, retried by
/// later rounds while the status stands (up to a few times). Forgotten when this replica stops
/// leading.
#[derive(Debug, Default)]
struct Announced {
    done: BTreeMap<ObjKey, (Option<String>, IngressRouteStatus)>,
    /// With how many times it was tried.
    owed: BTreeMap<ObjKey, ((Option<String>, IngressRouteStatus), u32)>,
    /// Statuses written whose watch event has not come back yet: not written again meanwhile.
    pending: pending::PendingWrites,
    /// Status writes that failed, by object and the version the write was decided on (an edit
    /// is written at once), and owed Events, by object: each tried again on its own schedule.
    write_backoff: retry::Backoff<(ObjKey, Option<String>)>,
    event_backoff: retry::Backoff<ObjKey>,
    /// Traefik verdicts whose Event failed, by object and version.
    traefik_backoff: retry::Backoff<(TraefikRef, Option<String>)>,
}

/// One snapshot, numbered, as handed to the instance reconcilers, with what changed since the
/// previous one.
type Generation = (u64, Arc<ClusterSnapshot>, Arc<ChangeSet>);

/// What each instance reconciler concluded, by Gateway.
type Reports = Arc<Mutex<BTreeMap<String, Report>>>;

/// What one instance reconciler concluded.
#[derive(Clone, Debug)]
struct Report {
    /// The generation it built ([`STOPPED`]: its task ended in a panic).
    generation: u64,
    /// Its DAG: the generation's, or the last good one.
    dag: Arc<Dag>,
    state: BuildState,
    /// Its DAG's verdict counts (kept by the pipeline as it patches the statuses).
    counts: Arc<StatusCounts>,
}

/// Whether a report's DAG is the generation's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BuildState {
    /// Built from the generation.
    Current,
    /// The build panicked (a bug): the last good DAG, still served. Its verdicts are kept out
    /// of the status round (they may be about objects since recreated), its counts kept.
    Stale,
    /// The build panicked before any good one: nothing served; the replica is not ready.
    Never,
}

/// The generation of an instance whose reconciler task ended in a panic: it counts as having
/// built every generation until the coordinator starts it again.
const STOPPED: u64 = u64::MAX;

/// Runs forever. After each debounced change it takes one snapshot and hands it to one
/// reconciler task per Gateway (they build, translate and publish in parallel); once every
/// instance has built that snapshot, the leader writes the combined statuses. `ready` turns true
/// once every instance has published its first configuration.
pub async fn run(
    ctx: RoutesContext,
    mut changed: watch::Receiver<u64>,
    ready: watch::Sender<bool>,
) {
    if ctx.stores.wait_until_ready().await.is_err() {
        tracing::error!("watches stopped before their initial list");
        return;
    }
    let ctx = Arc::new(ctx);
    let mut leading = ctx.leadership.changes();
    let mut rejections = ctx.cache.watch_rejections();
    let (snapshots, _) = watch::channel::<Generation>((
        0,
        Arc::new(ClusterSnapshot::default()),
        Arc::new(ChangeSet::everything()),
    ));
    let reports: Reports = Arc::default();
    let (reported_tx, mut reported) = watch::channel(0u64);
    let reported_tx = Arc::new(reported_tx);
    let mut instances = Instances::new();
    let mut generation = 0u64;
    let mut announced = Announced::default();
    let mut traefik_announced = TraefikAnnounced::new();
    let mut rounds = StatusRounds::default();
    // The status round in progress: written beside the passes, never in their way, so one
    // tenant's thousands of status writes do not hold back every Gateway's configuration.
    let mut writing: Option<tokio::task::JoinHandle<Written>> = None;
    // A round fell due while another was being written: started once that one ends.
    let mut round_waiting = false;
    let mut joined: Option<Written> = None;
    // When a round that missed Events or status writes runs again, without waiting for a
    // change: when the first failed object is due (each has its own back-off, see `retry`).
    let mut retry_round: Option<tokio::time::Instant>;
    loop {
        changed.borrow_and_update();
        // Scheduled again below if this pass's round misses Events too.
        retry_round = None;
        let started = Instant::now();
        let grace_ends = watch_needed_secrets(&ctx);
        generation += 1;
        // One step: the snapshot and exactly the changes that led to it (O(1)).
        let (snapshot, changes) = ctx.stores.take();
        // Traefik routes count too: their verdicts are announced per object and uid. A status
        // changed alone (ours coming back, or someone else's) counts: it is compared with the
        // verdicts, and written again if it is not theirs.
        let statuses_touched = changes.has_whole_kinds()
            || changes.touches_statuses_of(Kind::IngressRoute)
            || changes.touches_statuses_of(Kind::UndecodableRoute)
            || Kind::ALL.into_iter().any(|k| {
                matches!(
                    k,
                    Kind::Traefik(TraefikKind::IngressRoute | TraefikKind::IngressRouteTcp, _)
                ) && changes.touches_kind(k)
            });
        let changes = Arc::new(changes);
        let wanted: Vec<String> = snapshot.gateways.keys().map(ToString::to_string).collect();
        stop_removed_instances(&ctx, &mut instances, &reports, &wanted);
        snapshots.send_replace((generation, snapshot.clone(), changes));
        for key in snapshot.gateways.keys() {
            let gateway = key.to_string();
            // An instance's task ends only when its Gateway is gone. One that ended otherwise (a
            // panic outside its guarded build) is started again, from scratch.
            if instances.get(&gateway).is_some_and(|t| t.is_finished()) {
                tracing::error!(gateway = %gateway, "the Gateway's reconciler stopped; starting it again");
                ctx.metrics
                    .reconcile_errors
                    .with_label_values(&["routes", "panic"])
                    .inc();
                instances.remove(&gateway);
                // Wait for the new task's build, not the dead one's report.
                if let Some(r) = lock(&reports).get_mut(&gateway) {
                    r.generation = 0;
                }
            }
            instances.entry(gateway).or_insert_with(|| {
                tokio::spawn(reconcile_instance(
                    ctx.clone(),
                    key.clone(),
                    snapshots.subscribe(),
                    reports.clone(),
                    reported_tx.clone(),
                ))
            });
        }
        let Some(dags) = wait_for_instances(&mut reported, &reports, &wanted, generation).await
        else {
            return;
        };
        let written = match joined.take() {
            Some(written) => Some(written),
            None => finished_round(&mut writing).await,
        };
        if let Some(written) = written {
            announced = written.announced;
            traefik_announced = written.traefik_announced;
            let outcome = RoundOutcome {
                rejected: rejected(&ctx, &written.dags),
                ..written.outcome
            };
            rounds.finished(&written.dags, outcome);
            let missed = written.outcome.missed;
            if let Some(at) = written.outcome.retry_at {
                tracing::info!(
                    missed,
                    in_ms = at.saturating_duration_since(Instant::now()).as_millis(),
                    "Events not recorded or statuses not written; the status round runs again"
                );
            }
        }
        if let Some(built) = dags {
            let all: Vec<(Arc<Dag>, Arc<StatusCounts>)> = built
                .iter()
                .map(|(d, _, c)| (d.clone(), c.clone()))
                .collect();
            publish_counts(&ctx, &all);
            // Every instance serves a configuration (the last good one, after a panic).
            if built.iter().all(|(_, s, _)| *s != BuildState::Never) {
                ready.send_replace(true);
            }
            // Statuses from the DAGs built from this snapshot only.
            let dags: Vec<Arc<Dag>> = built
                .into_iter()
                .filter(|(_, s, _)| *s == BuildState::Current)
                .map(|(d, _, _)| d)
                .collect();
            leading.borrow_and_update();
            if !ctx.leadership.is_leading() {
                if let Some(round) = writing.take() {
                    round.abort();
                }
                round_waiting = false;
                announced = Announced::default();
                traefik_announced.clear();
                rounds.forget();
                retry_round = None;
            } else if std::mem::take(&mut round_waiting)
                || rounds.due(
                    statuses_touched,
                    &dags,
                    rejected(&ctx, &dags),
                    Instant::now(),
                )
            {
                // Otherwise every status is still in step: the objects' statuses did not
                // change, nor did any verdict, so the O(routes) combination is skipped.
                if writing.is_some() {
                    round_waiting = true;
                } else {
                    let announced = (
                        std::mem::take(&mut announced),
                        std::mem::take(&mut traefik_announced),
                    );
                    writing = Some(tokio::spawn(write_round(
                        ctx.clone(),
                        snapshot.clone(),
                        dags,
                        announced,
                    )));
                }
            }
        }
        // The next retry of a failed write or Event, unless a round is under way (its end
        // starts a pass).
        if writing.is_none() {
            retry_round = rounds.retry_at().map(tokio::time::Instant::from_std);
        }
        ctx.metrics
            .reconcile_seconds
            .with_label_values(&["routes"])
            .observe(started.elapsed().as_secs_f64());
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
            r = rejections.changed() => if r.is_err() { return },
            // A round that ends is taken in by a pass: its outcome decides the next one.
            w = join_round(&mut writing), if writing.is_some() => joined = w,
            () = tokio::time::sleep(ctx.resync) => {}
            () = sleep_until_some(grace_ends) => {}
            () = sleep_until_some(retry_round) => {}
        }
        // Let the events that come with this change arrive too (a tenth of the debounce),
        // and start passes at most once per debounce, so a burst is a few passes, not one per
        // event; a change after a quiet spell is built almost at once.
        let gathered = tokio::time::Instant::now() + ctx.debounce / 10;
        let next_pass = tokio::time::Instant::from_std(started + ctx.debounce);
        tokio::time::sleep_until(gathered.max(next_pass)).await;
        gather_burst(&ctx, started).await;
    }
}

/// While objects keep arriving faster than [`BURST_RATE`] (a whole world created at once, a
/// relist), the next pass waits for more of them, in steps of a debounce, up to
/// [`BURST_PASSES_APART`] debounces after the last pass started: a burst is taken in by a few
/// large passes (and Envoy gets a few configurations) instead of one pass per debounce, each
/// translating and pushing what came since. A single edit or steady churn (a hundred
/// EndpointSlices a second) never waits here.
async fn gather_burst(ctx: &RoutesContext, started: Instant) {
    let latest = started + ctx.debounce * BURST_PASSES_APART;
    // First what came since the last pass took its snapshot, then what each step brought: a
    // burst that ended is not waited for.
    let (mut since, mut counted) = (started, 0);
    let mut total = ctx.stores.objects_changed();
    loop {
        let now = Instant::now();
        let arrived = total.saturating_sub(counted);
        if now >= latest || !in_burst(arrived, now.saturating_duration_since(since)) {
            return;
        }
        tokio::time::sleep(ctx.debounce.min(latest.saturating_duration_since(now))).await;
        (since, counted) = (now, total);
        total = ctx.stores.objects_changed();
    }
}

/// Objects changed per second above which changes are a burst ([`gather_burst`]): ten times
/// the EndpointSlice churn the benchmark sustains, far below a bulk create.
const BURST_RATE: u128 = 1_000;

/// How many debounces at most separate two passes during a burst.
const BURST_PASSES_APART: u32 = 10;

/// Whether `arrived` objects changed within `over` is a burst.
fn in_burst(arrived: usize, over: Duration) -> bool {
    // In microseconds, exactly: `arrived / over >= BURST_RATE` per second.
    over > Duration::ZERO && arrived as u128 * 1_000_000 >= BURST_RATE * over.as_micros()
}

/// Sleeps until `when`, or forever without one.
async fn sleep_until_some(when: Option<tokio::time::Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The reconciler task of each instance, by Gateway (`namespace/name`).
type Instances = BTreeMap<String, tokio::task::JoinHandle<()>>;

/// Secrets are read only in the namespaces the instances may need. Never waits for a new
/// namespace's list: its Secrets arrive as events and trigger a pass of their own, so a tenant
/// moving the scope never holds up everyone else's changes. Returns when a namespace's grace
/// period ends (the scope must be looked at again then).
fn watch_needed_secrets(ctx: &RoutesContext) -> Option<tokio::time::Instant> {
    let ensured = ctx.stores.secrets.ensure(&ctx.stores.secret_scope());
    let plan = &ensured.plan;
    let gauge = |state: &str, n: usize| {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        ctx.metrics
            .secret_watches
            .with_label_values(&[state])
            .set(n);
    };
    gauge("needed", plan.needed);
    gauge("grace", plan.in_grace);
    plan.next_expiry.map(tokio::time::Instant::from_std)
}

/// Removes every series labelled with the deleted Gateway `gateway` (route and Traefik object
/// counts, conditions, quarantined objects, the xDS client certificate's expiry).
fn forget_gateway_series(metrics: &Metrics, gateway: &str) {
    let counts = [
        (&metrics.routes, &ROUTE_SERIES[..]),
        (&metrics.traefik_objects, &traefik::OBJECT_SERIES[..]),
    ];
    for (gauge, series) in counts {
        for (kind, group) in series {
            for status in ["valid", "invalid", "orphaned"] {
                let _ = gauge.remove_label_values(&[gateway, kind, group, status]);
            }
        }
    }
    // The Gateway controller is not called for a deleted Gateway.
    metrics.forget_gateway_conditions(gateway);
    let _ = metrics.quarantined.remove_label_values(&[gateway]);
    let _ = metrics
        .xds_certificate_expiry
        .remove_label_values(&["client", gateway]);
}

/// Instances that went away: stop their reconciler, forget their configuration.
fn stop_removed_instances(
    ctx: &RoutesContext,
    instances: &mut Instances,
    reports: &Reports,
    wanted: &[String],
) {
    instances.retain(|gateway, task| {
        let keep = wanted.contains(gateway);
        if !keep {
            task.abort();
            ctx.cache.remove(gateway);
            lock(reports).remove(gateway);
            forget_gateway_series(&ctx.metrics, gateway);
            tracing::info!(gateway = %gateway, "instance removed");
        }
        keep
    });
}

/// Waits until every wanted instance has built `generation` (or its task stopped) and returns
/// their DAGs and whether each is the generation's own (statuses combine the verdicts of one
/// snapshot only, so they never mix generations). `Some(None)`: not in time; `None`: the
/// reconcilers are gone.
async fn wait_for_instances(
    reported: &mut watch::Receiver<u64>,
    reports: &Reports,
    wanted: &[String],
    generation: u64,
) -> Option<Option<Vec<(Arc<Dag>, BuildState, Arc<StatusCounts>)>>> {
    let all_built = reported.wait_for(|_| {
        let r = lock(reports);
        wanted.iter().all(|g| {
            r.get(g)
                .is_some_and(|r| r.generation == generation || r.generation == STOPPED)
        })
    });
    // Drop the channel's read guard before anything else awaits.
    let built = tokio::time::timeout(INSTANCE_BUILD_TIMEOUT, all_built)
        .await
        .map(|r| r.map(|_| ()));
    match built {
        Ok(Ok(())) => {
            let r = lock(reports);
            Some(Some(
                wanted
                    .iter()
                    .filter_map(|g| r.get(g).map(|r| (r.dag.clone(), r.state, r.counts.clone())))
                    .collect(),
            ))
        }
        Ok(Err(_)) => None,
        Err(_) => {
            tracing::warn!(
                generation,
                "instances did not finish building in time; statuses wait for the next change"
            );
            Some(None)
        }
    }
}

/// Whether a rejection is blamed on some instance's configuration.
fn rejected(ctx: &RoutesContext, dags: &[Arc<Dag>]) -> bool {
    dags.iter()
        .any(|d| !ctx.cache.rejections(&d.gateway).is_empty())
}

/// The leader's part: statuses, with an IngressRoute that alone caused a configuration Envoy
/// rejected told so. Returns how many statuses differed from what the objects carry, how many
/// Events or status writes failed and are to be tried again, and when the first is due.
async fn write_verdicts(
    ctx: &RoutesContext,
    snapshot: &ClusterSnapshot,
    dags: &[Arc<Dag>],
    (announced, traefik_announced): (&mut Announced, &mut TraefikAnnounced),
) -> RoundOutcome {
    let rejections: Vec<_> = dags
        .iter()
        .map(|d| ctx.cache.rejections(&d.gateway))
        .collect();
    let blamed: Vec<_> = dags
        .iter()
        .zip(&rejections)
        .map(|(d, r)| blame_statuses(d, r))
        .collect();
    let blamed: Vec<&Dag> = blamed.iter().map(|d| &**d).collect();
    // Statuses first: a backlog of Traefik Events (a new leader announces every selected
    // Traefik object) does not hold up the IngressRoutes' statuses.
    let statuses_differed = write_statuses(ctx, snapshot, blamed.clone(), announced).await;
    // Events not recorded are retried by a later round, like statuses not written.
    let traefik_backoff = &mut announced.traefik_backoff;
    traefik::announce(ctx, snapshot, &blamed, traefik_announced, traefik_backoff).await;
    RoundOutcome {
        statuses_differed,
        waiting: announced.write_backoff.len(),
        missed: announced.write_backoff.len()
            + announced.owed.len()
            + announced.traefik_backoff.len(),
        rejected: false,
        retry_at: retry::earliest([
            announced.write_backoff.next_due(),
            announced.event_backoff.next_due(),
            announced.traefik_backoff.next_due(),
        ]),
    }
}

/// How long the coordinator waits for every instance to build a snapshot before giving up on
/// writing statuses for it.
const INSTANCE_BUILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The reconciler of one Gateway instance: for every snapshot, build its DAG, translate it and
/// hand the resources to the xDS cache (which pushes only what changed, only to this instance's
/// Envoys); a failed translation keeps the last good configuration. Ends when its Gateway is
/// gone.
async fn reconcile_instance(
    ctx: Arc<RoutesContext>,
    key: ObjKey,
    mut snapshots: watch::Receiver<Generation>,
    reports: Reports,
    reported: Arc<watch::Sender<u64>>,
) {
    let gateway = key.to_string();
    // A panic anywhere in this task (outside the guarded build) still reports, so that the
    // coordinator does not wait for it; the coordinator starts the task again.
    let _stopped = StoppedReport {
        gateway: gateway.clone(),
        reports: reports.clone(),
        reported: reported.clone(),
    };
    let mut pipeline: Option<InstancePipeline> = None;
    // The leader's writes of the claims record, beside this loop (never awaited by it).
    let mut claims_writer =
        claims::ClaimsWriter::start(claims_writer_context(&ctx), gateway.clone());
    let mut leading = ctx.leadership.changes();
    let mut last_generation = 0;
    loop {
        let (generation, snapshot, changes) = snapshots.borrow_and_update().clone();
        let Some(gw) = snapshot.gateways.get(&key) else {
            return;
        };
        let mut sel = Selection::from_gateway(gw);
        sel.allow_loopback_endpoints = ctx.allow_loopback_endpoints;
        // A skipped generation's changes are unknown here: the pipeline compares snapshots.
        let everything = ChangeSet::everything();
        let changes = if generation == last_generation + 1 {
            &*changes
        } else {
            &everything
        };
        last_generation = generation;
        let opts = ctx.translate.clone().with_ip_family(gw.spec.ip_family);
        if pipeline.is_none() {
            // Before the first build: the claim dates the leader kept (`claims`).
            let mut fresh = InstancePipeline::new(sel.clone());
            if let Some(record) = claims::read(&ctx.client, gw).await {
                fresh.import_claims(record);
            }
            pipeline = Some(fresh);
        }
        let Some(pipeline) = pipeline.as_mut() else {
            return;
        };
        // Objects an Envoy of this Gateway rejected the configuration of are left out of the
        // next one (`dag::quarantine`), so what every tenant shares is accepted again.
        for owner in pipeline.quarantine_rejected(&ctx.cache.rejections(&gateway)) {
            tracing::warn!(gateway = %gateway, object = %owner, "an Envoy rejected the configuration made from this object; it is left out until it, or a Secret or other object it reads, changes");
        }
        let built = pipeline.update_guarded(&snapshot, &sel, changes, &opts);
        ctx.metrics
            .quarantined
            .with_label_values(&[&gateway])
            .set(i64::try_from(pipeline.quarantined().len()).unwrap_or(i64::MAX));
        // Whether the DAG changed (`None`: the build panicked, nothing to record).
        let mut changed = None;
        let report = match built {
            Ok(built) => {
                changed = Some(built.stats.changed);
                ctx.metrics
                    .roots_rebuilt
                    .with_label_values(&[&gateway])
                    .inc_by(u64::try_from(built.stats.roots_rebuilt).unwrap_or(u64::MAX));
                ctx.metrics
                    .dag_build_seconds
                    .with_label_values(&[&gateway])
                    .observe(built.build_time.as_secs_f64());
                if let Some(t) = built.translate_time {
                    ctx.metrics
                        .translate_seconds
                        .with_label_values(&[&gateway])
                        .observe(t.as_secs_f64());
                }
                publish_resources(&ctx, &gateway, built.resources);
                Report {
                    generation,
                    dag: built.dag,
                    state: BuildState::Current,
                    counts: Arc::new(pipeline.status_tally().counts.clone()),
                }
            }
            Err(e) => {
                // A bug, but one Gateway's must not stop the others: this one keeps its last
                // good configuration, the status round goes on without its verdicts, and the
                // next change builds it again from scratch.
                ctx.metrics
                    .reconcile_errors
                    .with_label_values(&["routes", "panic"])
                    .inc();
                // Debug-quoted: a panic message may quote what a tenant wrote.
                tracing::error!(gateway = %gateway, panic = ?e.message, "building the configuration panicked; keeping the last good configuration; the next change builds this Gateway again from scratch");
                let mut report = panicked_report(&reports, &gateway);
                report.generation = generation;
                report
            }
        };
        lock(&reports).insert(gateway.clone(), report);
        reported.send_modify(|n| *n = n.wrapping_add(1));
        // After the report; handed to the writer task, never awaited here.
        if let Some(changed) = changed {
            claims_writer.offer(gw, pipeline, changed);
        }
        // Until the next snapshot; a replica that starts leading meanwhile offers its record
        // at once (a follower computes none).
        loop {
            tokio::select! {
                changed = snapshots.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return,
                },
                Ok(()) = leading.changed() => {
                    if *leading.borrow_and_update() {
                        claims_writer.offer(gw, pipeline, false);
                    }
                }
            }
        }
    }
}

/// What an instance's claims writer needs from the controller.
fn claims_writer_context(ctx: &Arc<RoutesContext>) -> claims::WriterContext {
    let notify = {
        let ctx = ctx.clone();
        Arc::new(move || ctx.counts_changed.send_modify(|n| *n = n.wrapping_add(1)))
    };
    claims::WriterContext {
        client: ctx.client.clone(),
        leadership: ctx.leadership.clone(),
        problems: ctx.claims_problems.clone(),
        notify,
        lease: ctx.lease.clone(),
    }
}

/// The report of an instance whose build panicked: its last good DAG (stale), or an empty one
/// if it never built.
fn panicked_report(reports: &Reports, gateway: &str) -> Report {
    match lock(reports).get(gateway) {
        Some(r) if r.state != BuildState::Never => Report {
            state: BuildState::Stale,
            ..r.clone()
        },
        _ => Report {
            generation: 0,
            dag: Arc::new(Dag {
                gateway: gateway.to_owned(),
                ..Dag::default()
            }),
            state: BuildState::Never,
            counts: Arc::default(),
        },
    }
}

/// Reports an instance's task that ends in a panic as [`STOPPED`] (see [`reconcile_instance`]).
struct StoppedReport {
    gateway: String,
    reports: Reports,
    reported: Arc<watch::Sender<u64>>,
}

impl Drop for StoppedReport {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return; // The Gateway is gone.
        }
        let mut report = panicked_report(&self.reports, &self.gateway);
        report.generation = STOPPED;
        lock(&self.reports).insert(self.gateway.clone(), report);
        self.reported.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Hands an instance's new resources to the xDS cache; a failed translation keeps the last
/// good configuration.
fn publish_resources(
    ctx: &RoutesContext,
    gateway: &str,
    resources: Option<Result<InstanceResources, TranslateError>>,
) {
    match resources {
        None => {} // Nothing this instance serves changed.
        Some(Ok(resources)) => {
            let changed = ctx.cache.set(gateway, resources);
            if changed {
                tracing::info!(gateway = %gateway, "published a new configuration");
            }
        }
        Some(Err(e)) => {
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["routes", e.label()])
                .inc();
            tracing::error!(gateway = %gateway, error = %e, "translation failed; keeping the last good configuration");
        }
    }
}

/// Locks one of the maps shared between tasks. Every change to them is a single insert,
/// removal or replacement, so a task that panicked while holding one cannot have left it half
/// written: a poisoned lock is used as it is instead of dropping the update.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Route counts: the metrics gauge, and the shared counts the Gateway statuses show. Each
/// Gateway's counts come kept by its pipeline: nothing here looks at a status.
fn publish_counts(ctx: &RoutesContext, dags: &[(Arc<Dag>, Arc<StatusCounts>)]) {
    let mut counts = BTreeMap::new();
    for (dag, kept) in dags {
        let series = (series_of(kept)
            .into_iter()
            .map(|s| (&ctx.metrics.routes, s)))
        .chain(
            object_series_of(kept)
                .into_iter()
                .map(|s| (&ctx.metrics.traefik_objects, s)),
        );
        for (gauge, ((kind, group), c)) in series {
            for (status, n) in [
                ("valid", c.valid),
                ("invalid", c.invalid),
                ("orphaned", c.orphaned),
            ] {
                gauge
                    .with_label_values(&[&dag.gateway, kind, group, status])
                    .set(i64::from(n));
            }
        }
        counts.insert(dag.gateway.clone(), total_of(kept));
    }
    *lock(&ctx.dags) = dags
        .iter()
        .map(|(d, _)| (d.gateway.clone(), d.clone()))
        .collect();
    let counts_differ = {
        let mut shared = lock(&ctx.route_counts);
        let differ = *shared != counts;
        *shared = counts;
        differ
    };
    if counts_differ {
        ctx.counts_changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Every route verdict of one Gateway, Contour IngressRoutes and Traefik IngressRoutes and
/// IngressRouteTCPs alike (the Gateway status's route counts; Middlewares and the other Traefik
/// objects routes use are not routes), from every status of `dag` (passes read the counts the pipeline
/// keeps: [`total_of`]).
pub fn route_counts(dag: &Dag) -> RouteCounts {
    total_of(&StatusTally::of(dag).counts)
}

/// The Gateway status's route counts of verdict counts `c`.
pub fn total_of(c: &StatusCounts) -> RouteCounts {
    let mut total = c.routes.clone();
    let routes = c
        .objects
        .iter()
        .filter(|((kind, _), _)| is_route_kind(kind));
    for (_, n) in routes {
        total.valid = total.valid.saturating_add(n.valid);
        total.invalid = total.invalid.saturating_add(n.invalid);
        total.orphaned = total.orphaned.saturating_add(n.orphaned);
    }
    total
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    /// A deleted Gateway leaves no series behind (review 10 F5: its Traefik object counts
    /// stayed).
    #[test]
    fn a_deleted_gateways_series_are_all_removed() {
        let metrics = crate::metrics::Metrics::new().unwrap();
        for gateway in ["a/gw", "a/other"] {
            for (kind, group) in super::ROUTE_SERIES {
                metrics
                    .routes
                    .with_label_values(&[gateway, kind, group, "valid"])
                    .set(1);
            }
            for (kind, group) in super::traefik::OBJECT_SERIES {
                for status in ["valid", "invalid"] {
                    let labels = [gateway, kind, group, status];
                    metrics.traefik_objects.with_label_values(&labels).set(2);
                }
            }
            metrics.quarantined.with_label_values(&[gateway]).set(3);
        }
        super::forget_gateway_series(&metrics, "a/gw");
        let labelled = |gateway: &str| {
            metrics
                .registry
                .gather()
                .iter()
                .flat_map(|f| f.get_metric().iter().map(move |m| (f.name().to_owned(), m)))
                .filter(|(_, m)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == "gateway" && l.value() == gateway)
                })
                .map(|(name, _)| name)
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert!(labelled("a/gw").is_empty(), "{:?}", labelled("a/gw"));
        assert_eq!(labelled("a/other").len(), 3);
    }

    use super::*;
    use crate::api::gateway::GatewaySpec;
    use crate::api::{Gateway, IngressRoute, IngressRouteSpec};
    use crate::dag;
    use crate::snapshot::Object;
    use kube::runtime::events::EventType;
    use serde_json::json;

    #[test]
    fn only_a_bulk_of_changes_is_a_burst() {
        let ms = Duration::from_millis;
        // One edit, or churn of a hundred EndpointSlices a second, over a debounce: no burst.
        assert!(!in_burst(1, ms(100)));
        assert!(!in_burst(10, ms(100)));
        assert!(!in_burst(99, ms(100)));
        // A world being created: thousands a second.
        assert!(in_burst(100, ms(100)));
        assert!(in_burst(700, ms(100)));
        // A quiet spell before the change.
        assert!(!in_burst(1, Duration::from_secs(30)));
        assert!(!in_burst(5_000, Duration::from_secs(30)));
        assert!(!in_burst(0, Duration::ZERO));
    }

    #[test]
    fn only_changed_statuses_of_judged_routes_are_written() {
        let mut snap = ClusterSnapshot::default();
        let mut gw = Gateway::new("gw", GatewaySpec::default());
        gw.metadata.namespace = Some("ns".into());
        snap.apply(Object::Gateway(gw));
        let mut current = IngressRoute::new("orphan", IngressRouteSpec::default());
        current.metadata.namespace = Some("ns".into());
        let mut stale = current.clone();
        stale.metadata.name = Some("stale".into());
        current.status = Some(IngressRouteStatus {
            current_status: "orphaned".into(),
            description: dag::model::msg::ORPHANED.into(),
        });
        let mut other_class = stale.clone();
        other_class.metadata.name = Some("other-class".into());
        other_class.metadata.annotations =
            Some([("kubernetes.io/ingress.class".to_owned(), "x".to_owned())].into());
        for ir in [current, stale, other_class] {
            snap.apply(Object::IngressRoute(ir));
        }
        let dags: Vec<Dag> = snap
            .gateways
            .values()
            .map(|g| dag::build(&snap, &Selection::from_gateway(g)))
            .collect();
        let writes = statuses_to_write(&snap, &dags);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].0, ObjKey::new("ns", "stale"));
        assert_eq!(writes[0].1.current_status, "orphaned");
        assert_eq!(
            route_counts(&dags[0]),
            RouteCounts {
                valid: 0,
                invalid: 0,
                orphaned: 2
            }
        );
    }

    #[test]
    fn status_events_name_the_verdict_and_carry_the_description() {
        let event = |status: &str, description: &str| {
            let e = status_event(&IngressRouteStatus {
                current_status: status.into(),
                description: description.into(),
            });
            (e.type_, e.reason, e.note.unwrap_or_default())
        };
        assert_eq!(
            event("valid", "valid IngressRoute"),
            (
                EventType::Normal,
                "Valid".into(),
                "valid IngressRoute".into()
            )
        );
        assert_eq!(
            event("invalid", "Service x is missing"),
            (
                EventType::Warning,
                "Invalid".into(),
                "Service x is missing".into()
            )
        );
        assert_eq!(event("orphaned", "o").1, "Orphaned");
        // Within the API's limit, cut on a character boundary.
        assert_eq!(event("invalid", &"é".repeat(1000)).2.len(), 1024);
    }

    /// An IngressRoute stored under a schema-less CRD that does not decode is `invalid` with the
    /// decoder's message; the others are judged as usual, and its status is written once.
    #[test]
    fn undecodable_routes_are_invalid_and_stop_nothing() {
        use crate::source::lenient::Lenient;
        let raw = |name: &str, port: serde_json::Value| {
            Lenient::<IngressRoute>::from_value(json!({
                "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"virtualhost": {"fqdn": format!("{name}.example.com")},
                         "routes": [{"match": "/", "services": [{"name": "s", "port": port}]}]}
            }))
        };
        let mut snap = ClusterSnapshot::default();
        let good = raw("good", json!(80));
        snap.apply(Object::IngressRoute(good.ok().unwrap().clone()));
        let bad = raw("bad", json!("80"));
        let error = bad.decoded.clone().unwrap_err().error;
        snap.undecodable_routes.insert(
            ObjKey::new("ns", "bad"),
            crate::snapshot::UndecodableRoute {
                metadata: bad.metadata.clone(),
                error,
                status: None,
            },
        );
        let dag = dag::build(&snap, &Selection::default_instance());
        let bad_status = dag.statuses.iter().find(|s| s.name == "bad").unwrap();
        assert_eq!(bad_status.current_status, dag::Validity::Invalid);
        assert!(
            bad_status
                .description
                .contains("spec.routes[0].services[0].port: invalid type"),
            "{}",
            bad_status.description
        );
        let good_status = dag.statuses.iter().find(|s| s.name == "good").unwrap();
        assert_eq!(good_status.current_status, dag::Validity::Invalid); // Service s is missing.
        let writes = statuses_to_write(&snap, [&dag]);
        assert_eq!(writes.len(), 2);
        // Once written, not again.
        let written = writes[0].1.clone();
        snap.undecodable_routes
            .get_mut(&ObjKey::new("ns", "bad"))
            .unwrap()
            .status = Some(written);
        assert_eq!(statuses_to_write(&snap, [&dag]).len(), 1);
    }
}
