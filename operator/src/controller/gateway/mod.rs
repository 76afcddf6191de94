//! The Gateway controller: for each Gateway, server-side applies the desired Envoy fleet
//! (`provision::plan`, then `Plan::objects` with the hash of the xDS client Secret it applied) and writes the Gateway's status. Only the leader acts; followers wait
//! for leadership, which triggers a full reconcile.
//!
//! The reconcile steps are here; reading and applying the owned objects is in `apply`, the
//! events of a status change in `events`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::source::lenient::Lenient;
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use crate::api::Gateway;
use crate::controller::leader::Leadership;
use crate::controller::routes::{SharedDags, SharedRouteCounts};
use crate::dag::Dag;
use crate::metrics::Metrics;
use crate::provision::status::RejectionReport;
use crate::provision::{self, FIELD_MANAGER, ObservedState, ProvisionContext};
use crate::xds::cache::{Cache, Rejection};

mod apply;
mod events;
#[cfg(test)]
mod tests;

use apply::{Provisioned, failure_label, provision_objects};
pub use events::{
    EVENT_ACTION, EVENT_REPORTER, REASON_ENVOY_REJECTED, REASON_PROVISIONED,
    REASON_ROLLOUT_FINISHED, REASON_ROLLOUT_STARTED,
};
pub(crate) use events::{MAX_EVENT_NOTE_BYTES, truncate_bytes};
use events::{failure_event, status_events};

pub struct GatewayContext {
    pub client: kube::Client,
    pub metrics: Metrics,
    /// Whether this replica leads: asked before every write.
    pub leadership: Leadership,
    pub provision: ProvisionContext,
    pub route_counts: SharedRouteCounts,
    /// The latest DAG of each Gateway, to attribute rejected configuration to IngressRoutes.
    pub dags: SharedDags,
    /// Claims ConfigMaps taken by one their Gateway does not own (`controller::claims`).
    pub claims_problems: crate::controller::claims::SharedClaimsProblems,
    /// The xDS cache, for the configuration each Gateway's Envoys rejected.
    pub cache: Arc<Cache>,
    /// The xDS CA issuing each Gateway's client certificate; `None` with `--insecure-xds`.
    pub xds_ca: Option<Arc<crate::pki::identity::CertificateAuthority>>,
    /// Records Events on Gateways (objects that could not be applied).
    pub recorder: Recorder,
    /// How long the Gateway's status write or one of its Events may take
    /// (`--status-call-timeout-seconds`): a call never answered fails the reconcile, which is
    /// retried, instead of holding it.
    pub call_timeout: std::time::Duration,
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
    #[error("writing the Gateway status: the API server did not answer within {0:?}")]
    StatusTimedOut(std::time::Duration),
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
            Self::Status(_) | Self::StatusTimedOut(_) => "status",
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
    let claims_not_owned = crate::controller::routes::lock(&ctx.claims_problems)
        .get(&key)
        .cloned();
    let observed = ObservedState {
        daemon_set: provisioned.daemon_set.as_ref(),
        service: provisioned.service.as_ref(),
        pods: &pods,
        routes,
        error: error.as_ref(),
        rejections: &rejections,
        failures: &provisioned.failures,
        unwatched_roots: &unwatched_roots,
        claims_config_map_not_owned: claims_not_owned.as_deref(),
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
        let api = Api::<Gateway>::namespaced(ctx.client.clone(), &ns);
        let name = gw.name_any();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&body);
        let written = api.patch_status(&name, &params, &patch);
        tokio::time::timeout(ctx.call_timeout, written)
            .await
            .map_err(|_| GatewayError::StatusTimedOut(ctx.call_timeout))?
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
        let published = ctx.recorder.publish(&event, &regarding);
        let published = tokio::time::timeout(ctx.call_timeout, published).await;
        if let Err(e) = published
            .map_err(|_| "the API server did not answer in time".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
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
            let ingress_route =
                dag.and_then(|dag| crate::xds::attribution::rejection_owner(dag, &r));
            let ingress_route_api_version = dag
                .zip(ingress_route.as_deref())
                .and_then(|(dag, owner)| crate::xds::attribution::traefik_api_version(dag, owner));
            RejectionReport {
                kind: r
                    .type_url
                    .rsplit('.')
                    .next()
                    .unwrap_or(&r.type_url)
                    .to_owned(),
                resources: r.changed_resources.into_keys().collect(),
                ingress_route,
                ingress_route_api_version,
                error: r.error,
            }
        })
        .collect()
}

/// How often a Gateway is reconciled without any change.
const RESYNC: Duration = Duration::from_secs(60);

/// How long to wait before trying again when an object could not be applied.
const FAILURE_REQUEUE: Duration = Duration::from_secs(15);

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
    let regarding = obj.object_ref(&());
    let published = ctx.recorder.publish(&event, &regarding);
    match tokio::time::timeout(ctx.call_timeout, published).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "publishing an event failed"),
        Err(_) => {
            tracing::warn!("publishing an event failed: the API server did not answer in time")
        }
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
