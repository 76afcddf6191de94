//! The Gateway controller: for each Gateway, server-side applies the desired Envoy fleet
//! (`provision::plan`, then `Plan::objects` with the hash of the xDS client Secret it applied) and writes the Gateway's status. Only the leader acts; followers wait
//! for leadership, which triggers a full reconcile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::source::lenient::Lenient;
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use crate::api::Gateway;
use crate::api::gateway::GatewayStatus;
use crate::controller::leader::Leadership;
use crate::controller::routes::{SharedDags, SharedRouteCounts};
use crate::dag::Dag;
use crate::metrics::Metrics;
use crate::provision::status::{
    CONDITION_AVAILABLE, CONDITION_DEGRADED, CONDITION_PROGRESSING, ObjectFailure, ObjectProblem,
    REASON_APPLY_FAILED, REASON_OBJECT_NOT_OWNED, RejectionReport,
};
use crate::provision::{self, FIELD_MANAGER, ObservedState, ProvisionContext};
use crate::xds::cache::{Cache, Rejection};

pub struct GatewayContext {
    pub client: kube::Client,
    pub metrics: Metrics,
    /// Whether this replica leads: asked before every write.
    pub leadership: Leadership,
    pub provision: ProvisionContext,
    pub route_counts: SharedRouteCounts,
    /// The latest DAG of each Gateway, to attribute rejected configuration to IngressRoutes.
    pub dags: SharedDags,
    /// The xDS cache, for the configuration each Gateway's Envoys rejected.
    pub cache: Arc<Cache>,
    /// The xDS CA issuing each Gateway's client certificate; `None` with `--insecure-xds`.
    pub xds_ca: Option<Arc<crate::pki::identity::CertificateAuthority>>,
    /// Records Events on Gateways (objects that could not be applied).
    pub recorder: Recorder,
    /// The namespaces watched (`--watch-namespaces`): one controller stream each, and the
    /// Gateway roots outside them are shown in the status.
    pub watch: crate::source::kube::WatchScope,
}

pub use crate::provision::objects::ANNOTATION_XDS_CLIENT_HASH;

/// One stage's failure; each has a short label for metrics.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("reading the Gateway: {0}")]
    Read(kube::Error),
    #[error("reading the Gateway's pods: {0}")]
    Observe(kube::Error),
    #[error("writing the Gateway status: {0}")]
    Status(kube::Error),
    #[error("Gateway has no namespace")]
    NoNamespace,
    #[error("issuing the xDS client certificate: {0}")]
    XdsCredentials(#[source] provision::xds_tls::XdsTlsError),
    /// This replica stopped leading: the reconcile stops before its next write.
    #[error("no longer leading")]
    NotLeading,
}

impl GatewayError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Read(_) => "read",
            Self::Observe(_) => "observe",
            Self::Status(_) => "status",
            Self::NoNamespace => "invalid",
            Self::XdsCredentials(_) => "xds_credentials",
            Self::NotLeading => "not_leading",
        }
    }
}

/// Runs the controller until its streams end: one per watched namespace (`--watch-namespaces`),
/// or one for the cluster.
pub async fn run(ctx: GatewayContext, counts_changed: watch::Receiver<u64>) {
    let ctx = Arc::new(ctx);
    futures::future::join_all(
        ctx.watch
            .watches()
            .into_iter()
            .map(|ns| run_in(ctx.clone(), counts_changed.clone(), ns)),
    )
    .await;
}

/// The controller of the Gateways of `namespace` (`None`: every namespace).
async fn run_in(
    ctx: Arc<GatewayContext>,
    counts_changed: watch::Receiver<u64>,
    namespace: Option<String>,
) {
    use crate::source::kube::api_in;
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let everything = watcher::Config::default();
    // Only what Sluice provisioned: watching every ConfigMap and ServiceAccount of the cluster
    // would hold all of them in memory for nothing.
    let ours = watcher::Config::default().labels(&format!(
        "{}={}",
        provision::objects::LABEL_MANAGED_BY,
        provision::objects::MANAGED_BY
    ));
    // Reconcile every Gateway when route counts or Envoy rejections change (status) or
    // leadership is gained.
    let triggers = futures::stream::select(
        futures::stream::select(
            WatchStream::new(counts_changed).map(|_| ()),
            WatchStream::new(ctx.cache.watch_rejections()).map(|_| ()),
        ),
        WatchStream::new(ctx.leadership.changes())
            .filter(|l| futures::future::ready(*l))
            .map(|_| ()),
    );
    // Decoded one by one: a Gateway stored under a newer CRD that this version cannot read
    // stops no other Gateway (see `source::lenient`).
    Controller::new(api_in::<Lenient<Gateway>>(&client, ns), everything)
        .owns(api_in::<DaemonSet>(&client, ns), ours.clone())
        .owns(api_in::<Service>(&client, ns), ours.clone())
        .owns(api_in::<ConfigMap>(&client, ns), ours.clone())
        .owns(api_in::<ServiceAccount>(&client, ns), ours)
        .reconcile_all_on(triggers)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "gateway reconcile");
            }
        })
        .await;
}

#[tracing::instrument(skip_all, fields(gateway = %format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())))]
async fn reconcile(
    obj: Arc<Lenient<Gateway>>,
    ctx: Arc<GatewayContext>,
) -> Result<Action, GatewayError> {
    if !ctx.leadership.is_leading() {
        // Only the leader reports conditions; a former leader drops what it reported.
        ctx.metrics.forget_gateway_conditions(&format!(
            "{}/{}",
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        ));
        return Ok(Action::await_change());
    }
    let gw = match &obj.decoded {
        Ok(gw) => gw,
        Err(e) => return report_undecodable(&obj, &e.error, &ctx).await,
    };
    let started = Instant::now();
    let result = match reconcile_leader(gw, &ctx).await {
        // Gaining leadership again reconciles every Gateway.
        Err(GatewayError::NotLeading) => {
            tracing::info!("no longer leading; stopped before writing");
            Ok(Action::await_change())
        }
        other => other,
    };
    ctx.metrics
        .reconcile_seconds
        .with_label_values(&["gateway"])
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_leader(cached: &Gateway, ctx: &GatewayContext) -> Result<Action, GatewayError> {
    let ns = cached.namespace().ok_or(GatewayError::NoNamespace)?;
    // Dereference: the cache can lag a deletion (a child's DELETED event of the cascade arrives
    // before the Gateway's own), and applying children of a deleted Gateway would re-create
    // them for the garbage collector to delete again. Read the Gateway as it is now.
    let live = Api::<Gateway>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&cached.name_any())
        .await
        .map_err(GatewayError::Read)?;
    let Some(gw) = live.filter(|g| is_same_live_object(g, cached)) else {
        let _ = ctx
            .metrics
            .xds_certificate_expiry
            .remove_label_values(&["client", &format!("{ns}/{}", cached.name_any())]);
        ctx.metrics
            .forget_gateway_conditions(&format!("{ns}/{}", cached.name_any()));
        return Ok(Action::await_change());
    };
    let gw = &gw;
    let key = format!("{ns}/{}", gw.name_any());
    let (provisioned, error) = match provision::plan(gw, &ctx.provision) {
        Ok(plan) => (provision_objects(ctx, &ns, gw, &plan).await?, None),
        Err(e) => {
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["gateway", e.label()])
                .inc();
            tracing::warn!(error = %e, "cannot provision");
            (Provisioned::default(), Some(e))
        }
    };
    for failure in &provisioned.failures {
        ctx.metrics
            .reconcile_errors
            .with_label_values(&["gateway", failure_label(&failure.problem)])
            .inc();
        tracing::warn!(error = %failure, "cannot provision");
    }
    let pods: Vec<Pod> = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&pods_selector(&gw.name_any())))
        .await
        .map_err(GatewayError::Observe)?
        .items;
    let routes = crate::controller::routes::lock(&ctx.route_counts)
        .get(&key)
        .cloned()
        .unwrap_or_default();
    let dag = crate::controller::routes::lock(&ctx.dags)
        .get(&key)
        .cloned();
    let rejections = rejection_reports(ctx.cache.rejections(&key), dag.as_deref());
    let unwatched_roots = ctx
        .watch
        .unwatched_roots([gw])
        .into_values()
        .next()
        .unwrap_or_default();
    let observed = ObservedState {
        daemon_set: provisioned.daemon_set.as_ref(),
        service: provisioned.service.as_ref(),
        pods: &pods,
        routes,
        error: error.as_ref(),
        rejections: &rejections,
        failures: &provisioned.failures,
        unwatched_roots: &unwatched_roots,
    };
    let status = provision::gateway_status(gw, &observed, &Time(jiff::Timestamp::now()));
    ctx.metrics.set_gateway_conditions(
        &key,
        status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str())),
    );
    if gw.status.as_ref() != Some(&status) {
        let body = serde_json::json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Gateway",
            "status": status,
        });
        ensure_leading(&ctx.leadership)?;
        Api::<Gateway>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &gw.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(GatewayError::Status)?;
        ctx.metrics
            .status_writes
            .with_label_values(&["Gateway"])
            .inc();
    }
    let mut events: Vec<Event> = failure_event(gw.status.as_ref(), &status, &provisioned.failures)
        .into_iter()
        .collect();
    events.extend(status_events(gw.status.as_ref(), &status, &rejections));
    for event in events {
        // Like every write, only while leading.
        if !ctx.leadership.is_leading() {
            break;
        }
        let mut regarding = gw.object_ref(&());
        // The recorder merges events with the same reason about the same object into a series
        // that keeps the first note; a new event always follows a status write, so the
        // Gateway's resourceVersion tells the new event apart.
        regarding.resource_version = gw.metadata.resource_version.clone();
        if let Err(e) = ctx.recorder.publish(&event, &regarding).await {
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["gateway", "event"])
                .inc();
            tracing::warn!(error = %e, "cannot record an event on the Gateway");
        }
    }
    if !provisioned.failures.is_empty() {
        // A conflicting object is not watched (it has none of Sluice's labels), and an API error
        // may be transient: look again soon.
        return Ok(Action::requeue(FAILURE_REQUEUE));
    }
    Ok(match error {
        // An invalid spec waits for a change to the Gateway.
        Some(_) => Action::await_change(),
        // Follow the rollout (DaemonSet events also trigger a reconcile), and renew the xDS
        // client certificate when due.
        None => Action::requeue(
            provisioned
                .xds_client_renewal
                .map_or(RESYNC, |due| due.clamp(Duration::from_secs(1), RESYNC)),
        ),
    })
}

/// The rejections of a Gateway's configuration as its status reports them: the resources blamed
/// and, with the Gateway's DAG, the one IngressRoute they all come from, if there is one.
pub fn rejection_reports(rejections: Vec<Rejection>, dag: Option<&Dag>) -> Vec<RejectionReport> {
    rejections
        .into_iter()
        .map(|r| {
            let ingress_route = dag.and_then(|dag| {
                crate::xds::attribution::single_owner(
                    dag,
                    &r.type_url,
                    r.changed_resources.keys().map(String::as_str),
                )
            });
            RejectionReport {
                kind: r
                    .type_url
                    .rsplit('.')
                    .next()
                    .unwrap_or(&r.type_url)
                    .to_owned(),
                resources: r.changed_resources.into_keys().collect(),
                ingress_route,
                error: r.error,
            }
        })
        .collect()
}

/// How often a Gateway is reconciled without any change.
const RESYNC: Duration = Duration::from_secs(60);

/// How long to wait before trying again when an object could not be applied.
const FAILURE_REQUEUE: Duration = Duration::from_secs(15);

/// Attempts at applying one object whose resourceVersion changed since it was read.
const APPLY_ATTEMPTS: usize = 3;

/// What provisioning a Gateway's objects left: its DaemonSet and Service as the API has them (if
/// they are the Gateway's), and the objects that could not be read or applied.
#[derive(Default)]
struct Provisioned {
    daemon_set: Option<DaemonSet>,
    service: Option<Service>,
    failures: Vec<ObjectFailure>,
    /// When the xDS client certificate is due for renewal.
    xds_client_renewal: Option<Duration>,
}

/// Applies the Gateway's objects, only over objects the Gateway owns.
///
/// Every provisioned name is read first: if one is taken by an object without an owner
/// reference to this Gateway (by uid), nothing is applied at all, so no object Sluice did not
/// create is changed, adopted or (through the owner reference) deleted, and no Envoy runs with
/// somebody else's bootstrap, credentials or ServiceAccount. Each apply then carries the
/// resourceVersion that was read, so an object replaced in between is not overwritten.
/// The DaemonSet is applied only once what it mounts and runs as (ServiceAccount, ConfigMap,
/// xDS client Secret) is; the Service regardless.
async fn provision_objects(
    ctx: &GatewayContext,
    ns: &str,
    gw: &Gateway,
    plan: &provision::Plan<'_>,
) -> Result<Provisioned, GatewayError> {
    let client = &ctx.client;
    // `is_same_live_object` made sure the Gateway has a uid.
    let uid = gw.metadata.uid.clone().unwrap_or_default();
    let mut failures = Vec::new();
    let secret = match &ctx.xds_ca {
        Some(_) => {
            let name = provision::objects::xds_client_secret_name(&gw.name_any());
            keep(
                read_owned::<Secret>(client, ns, &uid, &name).await,
                &mut failures,
            )
            .flatten()
        }
        None => None,
    };
    let envoy = &plan.envoy_name;
    let service_account = keep(
        read_owned::<ServiceAccount>(client, ns, &uid, envoy).await,
        &mut failures,
    )
    .flatten();
    let config_map = keep(
        read_owned::<ConfigMap>(client, ns, &uid, &plan.config_map_name).await,
        &mut failures,
    )
    .flatten();
    let daemon_set = keep(
        read_owned::<DaemonSet>(client, ns, &uid, envoy).await,
        &mut failures,
    )
    .flatten();
    let service = keep(
        read_owned::<Service>(client, ns, &uid, envoy).await,
        &mut failures,
    )
    .flatten();
    if !failures.is_empty() {
        return Ok(Provisioned {
            daemon_set,
            service,
            failures,
            xds_client_renewal: None,
        });
    }

    let mut xds_client_renewal = None;
    let mut xds_client_hash = None;
    if let Some(ca) = &ctx.xds_ca {
        let now = std::time::SystemTime::now();
        let desired_secret =
            provision::xds_tls::desired_xds_client_secret(gw, ca, secret.as_ref(), now)
                .map_err(GatewayError::XdsCredentials)?;
        if let Some(applied) = keep(
            apply_owned(client, &ctx.leadership, ns, &desired_secret, &uid, secret).await,
            &mut failures,
        ) {
            xds_client_renewal = Some(provision::xds_tls::renewal_due_in(&applied, now));
            if let Some(not_after) = provision::xds_tls::certificate_not_after(&applied) {
                ctx.metrics.set_xds_certificate_expiry(
                    "client",
                    &format!("{ns}/{}", gw.name_any()),
                    not_after,
                );
            }
            xds_client_hash = Some(provision::xds_tls::xds_client_secret_hash(&applied));
        }
    }
    let desired = plan.objects(xds_client_hash.as_deref());
    keep(
        apply_owned(
            client,
            &ctx.leadership,
            ns,
            &desired.service_account,
            &uid,
            service_account,
        )
        .await,
        &mut failures,
    );
    keep(
        apply_owned(
            client,
            &ctx.leadership,
            ns,
            &desired.config_map,
            &uid,
            config_map,
        )
        .await,
        &mut failures,
    );
    let daemon_set = if failures.is_empty() {
        keep(
            apply_owned(
                client,
                &ctx.leadership,
                ns,
                &desired.daemon_set,
                &uid,
                daemon_set.clone(),
            )
            .await,
            &mut failures,
        )
        .or(daemon_set)
    } else {
        daemon_set
    };
    let service = keep(
        apply_owned(
            client,
            &ctx.leadership,
            ns,
            &desired.service,
            &uid,
            service.clone(),
        )
        .await,
        &mut failures,
    )
    .or(service);
    Ok(Provisioned {
        daemon_set,
        service,
        failures,
        xds_client_renewal,
    })
}

/// `r`'s value, or `None` with its failure added to `failures`.
fn keep<T>(r: Result<T, ObjectFailure>, failures: &mut Vec<ObjectFailure>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(f) => {
            failures.push(f);
            None
        }
    }
}

/// Whether `obj` has an owner reference to the object with `uid`.
fn is_owned_by(obj: &ObjectMeta, uid: &str) -> bool {
    !uid.is_empty() && obj.owner_references.iter().flatten().any(|r| r.uid == uid)
}

/// The API's own message of an error, when it sent one.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

fn failure_of<K>(obj: &K, ns: &str, problem: ObjectProblem) -> ObjectFailure
where
    K: Resource,
    K::DynamicType: Default,
{
    failure_named::<K>(&obj.name_any(), ns, problem)
}

/// A failure of the object of kind `K` named `name`.
fn failure_named<K>(name: &str, ns: &str, problem: ObjectProblem) -> ObjectFailure
where
    K: Resource,
    K::DynamicType: Default,
{
    let dt = K::DynamicType::default();
    ObjectFailure {
        api_version: K::api_version(&dt).into_owned(),
        kind: K::kind(&dt).into_owned(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        problem,
    }
}

fn failure_label(problem: &ObjectProblem) -> &'static str {
    match problem {
        ObjectProblem::NotOwned => "not_owned",
        ObjectProblem::ReadFailed(_) => "read",
        ObjectProblem::ApplyFailed(_) => "apply",
    }
}

/// The object of `like`'s kind and name, if it exists and is owned by `uid`; `Err` when it
/// exists and is not, or cannot be read.
async fn read_owned<K>(
    client: &kube::Client,
    ns: &str,
    uid: &str,
    name: &str,
) -> Result<Option<K>, ObjectFailure>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::namespaced(client.clone(), ns).get_opt(name).await {
        Ok(Some(found)) if is_owned_by(found.meta(), uid) => Ok(Some(found)),
        Ok(Some(_)) => Err(failure_named::<K>(name, ns, ObjectProblem::NotOwned)),
        Ok(None) => Ok(None),
        Err(e) => Err(failure_named::<K>(
            name,
            ns,
            ObjectProblem::ReadFailed(api_message(&e)),
        )),
    }
}

/// Server-side applies `desired` over `existing` (the Gateway's own object as last read, or
/// `None` if there was none), with its resourceVersion as a precondition. When the object
/// changed in between it is read again, its ownership checked again, and the apply retried.
async fn apply_owned<K>(
    client: &kube::Client,
    leadership: &Leadership,
    ns: &str,
    desired: &K,
    uid: &str,
    mut existing: Option<K>,
) -> Result<K, ObjectFailure>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = desired.name_any();
    let api = Api::<K>::namespaced(client.clone(), ns);
    let mut attempt = 1;
    loop {
        let mut obj = desired.clone();
        obj.meta_mut().resource_version = existing
            .as_ref()
            .and_then(|e| e.meta().resource_version.clone());
        // Every write asks first: a replica that lost the lease writes nothing more (the
        // reconcile's status write, which would report this, asks too).
        if !leadership.is_leading() {
            return Err(failure_of(
                desired,
                ns,
                ObjectProblem::ApplyFailed("this replica no longer leads".into()),
            ));
        }
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
        {
            Ok(applied) => return Ok(applied),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < APPLY_ATTEMPTS => {
                attempt += 1;
                existing = read_owned(client, ns, uid, &desired.name_any()).await?;
            }
            Err(e) => {
                return Err(failure_of(
                    desired,
                    ns,
                    ObjectProblem::ApplyFailed(api_message(&e)),
                ));
            }
        }
    }
}

/// The Warning event to record when the Gateway's `Degraded` condition newly reports objects
/// that could not be applied: only when its reason or message changed since `previous`, so a
/// failure repeated on every reconcile is recorded once.
fn failure_event(
    previous: Option<&GatewayStatus>,
    current: &GatewayStatus,
    failures: &[ObjectFailure],
) -> Option<Event> {
    let degraded = |s: &GatewayStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_DEGRADED)
            .cloned()
    };
    let now = degraded(current)?;
    if now.status != "True"
        || ![REASON_OBJECT_NOT_OWNED, REASON_APPLY_FAILED].contains(&now.reason.as_str())
    {
        return None;
    }
    let before = previous.and_then(degraded);
    if before.is_some_and(|b| {
        b.status == now.status && b.reason == now.reason && b.message == now.message
    }) {
        return None;
    }
    let secondary = failures.first().map(|f| ObjectReference {
        api_version: Some(f.api_version.clone()),
        kind: Some(f.kind.clone()),
        namespace: Some(f.namespace.clone()),
        name: Some(f.name.clone()),
        ..ObjectReference::default()
    });
    Some(Event {
        type_: EventType::Warning,
        reason: now.reason,
        note: Some(truncate_bytes(&now.message, MAX_EVENT_NOTE_BYTES)),
        action: EVENT_ACTION.to_owned(),
        secondary,
    })
}

/// The condition `type_` of `status`, if it has one.
fn condition<'a>(status: Option<&'a GatewayStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `status` shows the Gateway provisioned: its DaemonSet exists and nothing kept its
/// objects from being applied (an invalid spec, objects not owned or not applied).
fn shows_provisioned(status: Option<&GatewayStatus>) -> bool {
    let ds_exists = condition(status, CONDITION_AVAILABLE)
        .is_some_and(|c| c.reason != REASON_DAEMON_SET_MISSING);
    let blocked = condition(status, CONDITION_DEGRADED)
        .is_some_and(|c| c.status == "True" && PROVISIONING_FAILURES.contains(&c.reason.as_str()));
    ds_exists && !blocked
}

/// The Degraded reasons that mean the Gateway's objects were not all applied.
const PROVISIONING_FAILURES: [&str; 4] = [
    "InvalidSpec",
    "OperatorMisconfigured",
    REASON_OBJECT_NOT_OWNED,
    REASON_APPLY_FAILED,
];

/// The `Progressing` reason while the Envoy DaemonSet does not exist.
const REASON_PROVISIONING: &str = "Provisioning";

/// The `Available` reason while the Envoy DaemonSet does not exist.
const REASON_DAEMON_SET_MISSING: &str = "DaemonSetMissing";

/// The events of a status change from `previous` (as stored) to `current`; none when the two
/// agree on what they report, so a reconcile that changes nothing records nothing:
/// - `Provisioned` (Normal): the Gateway shows provisioned (its DaemonSet exists, nothing kept
///   its objects from being applied) and did not before;
/// - `RolloutStarted` / `RolloutFinished` (Normal): `Progressing` became True / stopped being
///   True once the DaemonSet exists (a Gateway without a status counts as not progressing);
/// - `EnvoyRejectedConfiguration` (Warning): `Degraded` became True for that reason, or its
///   message (what was rejected) changed.
fn status_events(
    previous: Option<&GatewayStatus>,
    current: &GatewayStatus,
    rejections: &[RejectionReport],
) -> Vec<Event> {
    let mut events = Vec::new();
    let normal = |reason: &str, note: &str| Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(truncate_bytes(note, MAX_EVENT_NOTE_BYTES)),
        action: EVENT_ACTION.to_owned(),
        secondary: None,
    };
    if shows_provisioned(Some(current)) && !shows_provisioned(previous) {
        events.push(normal(
            REASON_PROVISIONED,
            "the Envoy DaemonSet, its Service and configuration are applied",
        ));
    }
    // Creating the DaemonSet (`Provisioning`) is no rollout yet: its pods start rolling out
    // once it exists.
    let rolling = |s: Option<&GatewayStatus>| {
        condition(s, CONDITION_PROGRESSING)
            .is_some_and(|c| c.status == "True" && c.reason != REASON_PROVISIONING)
    };
    match (
        rolling(previous),
        rolling(Some(current)),
        condition(Some(current), CONDITION_PROGRESSING),
    ) {
        (false, true, Some(c)) => events.push(normal(REASON_ROLLOUT_STARTED, &c.message)),
        (true, false, Some(c)) => events.push(normal(REASON_ROLLOUT_FINISHED, &c.message)),
        _ => {}
    }
    if let Some(now) = condition(Some(current), CONDITION_DEGRADED)
        && now.status == "True"
        && now.reason == REASON_ENVOY_REJECTED
        && !condition(previous, CONDITION_DEGRADED).is_some_and(|b| {
            b.status == now.status && b.reason == now.reason && b.message == now.message
        })
    {
        let secondary = rejections
            .iter()
            .find_map(|r| r.ingress_route.as_deref())
            .and_then(|route| route.split_once('/'))
            .map(|(namespace, name)| ObjectReference {
                api_version: Some("contour.heptio.com/v1beta1".to_owned()),
                kind: Some("IngressRoute".to_owned()),
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
                ..ObjectReference::default()
            });
        events.push(Event {
            type_: EventType::Warning,
            reason: now.reason.clone(),
            note: Some(truncate_bytes(&now.message, MAX_EVENT_NOTE_BYTES)),
            action: EVENT_ACTION.to_owned(),
            secondary,
        });
    }
    events
}

/// Reason of the Normal event recorded when a Gateway is first provisioned.
pub const REASON_PROVISIONED: &str = "Provisioned";
/// Reason of the Normal event recorded when the Envoy pods start rolling out.
pub const REASON_ROLLOUT_STARTED: &str = "RolloutStarted";
/// Reason of the Normal event recorded when a rollout is complete.
pub const REASON_ROLLOUT_FINISHED: &str = "RolloutFinished";
/// The `Degraded` reason (and Warning event) of configuration Envoy rejected.
pub const REASON_ENVOY_REJECTED: &str = "EnvoyRejectedConfiguration";

/// The reporting controller of the events Sluice records on Gateways.
pub const EVENT_REPORTER: &str = "sluice.dev/gateway-controller";

/// Action of the events Sluice records on Gateways.
pub const EVENT_ACTION: &str = "Provision";

/// The API server's limit on an event's note.
pub(crate) const MAX_EVENT_NOTE_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Every write asks first: a replica that lost the lease writes nothing more.
fn ensure_leading(leadership: &Leadership) -> Result<(), GatewayError> {
    if leadership.is_leading() {
        Ok(())
    } else {
        Err(GatewayError::NotLeading)
    }
}

/// Whether `live` is the object `cached` describes (same uid) and is not being deleted.
fn is_same_live_object(live: &Gateway, cached: &Gateway) -> bool {
    live.metadata.uid.is_some()
        && live.metadata.uid == cached.metadata.uid
        && live.metadata.deletion_timestamp.is_none()
}

/// A Gateway this version cannot decode: nothing is provisioned or changed for it (its objects
/// stay as they are), and a Warning event says why; it is looked at again when it changes.
async fn report_undecodable(
    obj: &Lenient<Gateway>,
    error: &str,
    ctx: &GatewayContext,
) -> Result<Action, GatewayError> {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&["gateway", "undecodable"])
        .inc();
    tracing::warn!(error = %error, "cannot read this Gateway; leaving its objects as they are");
    ensure_leading(&ctx.leadership)?;
    let event = Event {
        type_: EventType::Warning,
        reason: "Undecodable".into(),
        note: Some(truncate_bytes(
            &format!("this version of Sluice cannot read the Gateway: {error}"),
            MAX_EVENT_NOTE_BYTES,
        )),
        action: EVENT_ACTION.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
    Ok(Action::await_change())
}

fn error_policy(
    _gw: Arc<Lenient<Gateway>>,
    error: &GatewayError,
    ctx: Arc<GatewayContext>,
) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&["gateway", error.label()])
        .inc();
    tracing::warn!(error = %error, "gateway reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// The label selector of Gateway `name`'s Envoy pods: the DaemonSet's own selector, whose
/// values are label values (the Gateway's name, never `namespace/name`, which the API server
/// refuses in a selector). The namespace is the list's.
fn pods_selector(name: &str) -> String {
    provision::objects::pod_selector(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::GatewaySpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn gw(uid: Option<&str>) -> Gateway {
        let mut g = Gateway::new("edge", GatewaySpec::default());
        g.metadata.uid = uid.map(str::to_owned);
        g
    }

    #[test]
    fn the_pods_selector_selects_the_daemon_sets_pods() {
        let gw = crate::provision::fixtures::gateway("shop", "edge");
        let desired = provision::desired(&gw, &crate::provision::fixtures::ctx(), None).unwrap();
        let template = desired.daemon_set.spec.unwrap().template.metadata.unwrap();
        let pod_labels = template.labels.unwrap();
        let selector = pods_selector("edge");
        assert_eq!(
            selector,
            "app.kubernetes.io/name=envoy,sluice.dev/gateway=edge"
        );
        for term in selector.split(',') {
            let (k, v) = term.split_once('=').unwrap();
            assert_eq!(pod_labels.get(k).map(String::as_str), Some(v), "{term}");
        }
    }

    #[test]
    fn only_the_same_undeleted_gateway_is_reconciled() {
        assert!(is_same_live_object(&gw(Some("a")), &gw(Some("a"))));
        // Deleted and re-created under the same name: the cached object is gone.
        assert!(!is_same_live_object(&gw(Some("b")), &gw(Some("a"))));
        assert!(!is_same_live_object(&gw(None), &gw(None)));
        let mut deleting = gw(Some("a"));
        deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert!(!is_same_live_object(&deleting, &gw(Some("a"))));
    }

    #[test]
    fn rejections_name_the_one_ingressroute_they_come_from() {
        #![allow(clippy::unwrap_used)]
        use crate::xds::cache::{InstanceResources, type_url};
        use crate::xds::translate::fixture::{cluster_name, eds_cluster, route, vhost};
        use envoy_types::pb::google::protobuf::Any;

        let dag = Dag {
            virtual_hosts: vec![vhost("a.example.com", vec![route("/", &[("a", 80, 1)])])],
            clusters: vec![eds_cluster("a", 80)],
            ..Dag::default()
        };
        let cache = Cache::new();
        let mut resources = InstanceResources::default();
        let name = cluster_name("a", 80);
        resources.insert(
            name.clone(),
            Any {
                type_url: type_url::CLUSTER.into(),
                value: b"bad".to_vec(),
            },
        );
        cache.set("ns/gw", resources);
        let latest = cache.get("ns/gw").unwrap();
        let sent: Vec<_> = latest
            .resources(type_url::CLUSTER)
            .unwrap()
            .values()
            .cloned()
            .collect();
        cache.nack(
            "ns/gw",
            type_url::CLUSTER,
            "v1",
            "envoy",
            "bad lb_policy",
            &sent,
        );

        let reports = rejection_reports(cache.rejections("ns/gw"), Some(&dag));
        assert_eq!(
            reports,
            vec![RejectionReport {
                kind: "Cluster".into(),
                resources: vec![name],
                ingress_route: Some("default/root".into()),
                error: "bad lb_policy".into(),
            }]
        );
        // Without a DAG, no IngressRoute is named.
        assert_eq!(
            rejection_reports(cache.rejections("ns/gw"), None)[0].ingress_route,
            None
        );
    }

    fn status_with_degraded(status: &str, reason: &str, message: &str) -> GatewayStatus {
        GatewayStatus {
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: CONDITION_DEGRADED.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            ..GatewayStatus::default()
        }
    }

    #[test]
    fn an_event_is_recorded_when_the_failure_changes_only() {
        let failures = [ObjectFailure {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "ns".into(),
            name: "edge-envoy-bootstrap".into(),
            problem: ObjectProblem::NotOwned,
        }];
        let not_owned = status_with_degraded("True", REASON_OBJECT_NOT_OWNED, "ConfigMap ns/x");
        let event = failure_event(None, &not_owned, &failures).unwrap();
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, REASON_OBJECT_NOT_OWNED);
        assert_eq!(event.note.as_deref(), Some("ConfigMap ns/x"));
        let related = event.secondary.unwrap();
        assert_eq!(
            (related.kind.as_deref(), related.name.as_deref()),
            (Some("ConfigMap"), Some("edge-envoy-bootstrap"))
        );
        // The same condition again: nothing new.
        assert!(failure_event(Some(&not_owned), &not_owned, &failures).is_none());
        // Another message: a new event.
        let other = status_with_degraded("True", REASON_APPLY_FAILED, "applying Service ns/x: no");
        assert!(failure_event(Some(&not_owned), &other, &failures).is_some());
        // Other reasons for Degraded, or none, record nothing here.
        for (status, reason) in [("True", "EnvoyPodsFailing"), ("False", "AsExpected")] {
            let s = status_with_degraded(status, reason, "m");
            assert!(failure_event(Some(&not_owned), &s, &[]).is_none());
        }
        // Notes stay within the API's limit, cut on a character boundary.
        let long = status_with_degraded("True", REASON_APPLY_FAILED, &"é".repeat(1000));
        let note = failure_event(None, &long, &failures).unwrap().note.unwrap();
        assert_eq!(note.len(), 1024);
    }

    fn status_of(conditions: &[(&str, &str, &str, &str)]) -> GatewayStatus {
        GatewayStatus {
            conditions: conditions
                .iter()
                .map(|(type_, status, reason, message)| Condition {
                    type_: (*type_).into(),
                    status: (*status).into(),
                    reason: (*reason).into(),
                    message: (*message).into(),
                    last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                    observed_generation: None,
                })
                .collect(),
            ..GatewayStatus::default()
        }
    }

    fn reasons(events: &[Event]) -> Vec<(EventType, &str, &str)> {
        events
            .iter()
            .map(|e| (e.type_, e.reason.as_str(), e.note.as_deref().unwrap_or("")))
            .collect()
    }

    #[test]
    fn status_changes_record_provisioning_rollouts_and_rejections_once() {
        let ok = ("Degraded", "False", "AsExpected", "m");
        let missing = status_of(&[
            ("Available", "False", "DaemonSetMissing", "m"),
            ("Progressing", "True", "Provisioning", "creating"),
            ok,
        ]);
        let rolling = status_of(&[
            ("Available", "False", "NoEnvoyReady", "m"),
            (
                "Progressing",
                "True",
                "RollingOut",
                "0 of 1 run the current template",
            ),
            ok,
        ]);
        let done = status_of(&[
            ("Available", "True", "EnvoyReady", "m"),
            ("Progressing", "False", "RolloutComplete", "all 1 run it"),
            ok,
        ]);
        // Without a DaemonSet, nothing yet; once it exists, provisioned and rolling out.
        assert!(status_events(None, &missing, &[]).is_empty());
        let first = [
            (
                EventType::Normal,
                "Provisioned",
                "the Envoy DaemonSet, its Service and configuration are applied",
            ),
            (
                EventType::Normal,
                "RolloutStarted",
                "0 of 1 run the current template",
            ),
        ];
        assert_eq!(
            reasons(&status_events(Some(&missing), &rolling, &[])),
            first
        );
        assert_eq!(reasons(&status_events(None, &rolling, &[])), first);
        assert_eq!(
            reasons(&status_events(Some(&rolling), &done, &[])),
            vec![(EventType::Normal, "RolloutFinished", "all 1 run it")]
        );
        // Nothing changed: nothing recorded, however often.
        for s in [&missing, &rolling, &done] {
            assert!(status_events(Some(s), s, &[]).is_empty());
        }
        // A new rollout.
        assert_eq!(
            reasons(&status_events(Some(&done), &rolling, &[])),
            vec![(
                EventType::Normal,
                "RolloutStarted",
                "0 of 1 run the current template"
            )]
        );
        // Objects not applied, then applied again: provisioned again.
        let blocked = status_of(&[
            ("Available", "True", "EnvoyReady", "m"),
            ("Progressing", "False", "RolloutComplete", "all 1 run it"),
            ("Degraded", "True", REASON_APPLY_FAILED, "no"),
        ]);
        assert!(status_events(Some(&done), &blocked, &[]).is_empty());
        assert_eq!(
            reasons(&status_events(Some(&blocked), &done, &[]))[0].1,
            "Provisioned"
        );
        // Envoy rejects configuration: one Warning naming the IngressRoute, again only when
        // what was rejected changes.
        let rejected = |m: &str| {
            status_of(&[
                ("Available", "True", "EnvoyReady", "m"),
                ("Progressing", "False", "RolloutComplete", "all 1 run it"),
                ("Degraded", "True", "EnvoyRejectedConfiguration", m),
            ])
        };
        let report = [RejectionReport {
            kind: "Cluster".into(),
            resources: vec!["c".into()],
            ingress_route: Some("team/web".into()),
            error: "bad".into(),
        }];
        let events = status_events(Some(&done), &rejected("a"), &report);
        assert_eq!(
            reasons(&events),
            vec![(EventType::Warning, "EnvoyRejectedConfiguration", "a")]
        );
        let related = events[0].secondary.clone().unwrap();
        assert_eq!(
            (
                related.kind.as_deref(),
                related.namespace.as_deref(),
                related.name.as_deref()
            ),
            (Some("IngressRoute"), Some("team"), Some("web"))
        );
        assert!(status_events(Some(&rejected("a")), &rejected("a"), &report).is_empty());
        assert_eq!(
            status_events(Some(&rejected("a")), &rejected("b"), &[]).len(),
            1
        );
        assert!(status_events(Some(&rejected("a")), &done, &[]).is_empty());
    }

    #[test]
    fn ownership_is_by_uid() {
        let mut meta = ObjectMeta::default();
        assert!(!is_owned_by(&meta, "u1"));
        meta.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "sluice.dev/v1alpha1".into(),
                kind: "Gateway".into(),
                name: "edge".into(),
                uid: "u1".into(),
                ..Default::default()
            },
        ]);
        assert!(is_owned_by(&meta, "u1"));
        // Same name, another Gateway (deleted and re-created): not owned.
        assert!(!is_owned_by(&meta, "u2"));
        assert!(!is_owned_by(&meta, ""));
    }
}
