//! The Gateway controller: for each Gateway, server-side applies the desired Envoy fleet
//! (`provision::desired`) and writes the Gateway's status. Only the leader acts; followers wait
//! for leadership, which triggers a full reconcile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
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
    pub xds_ca: Option<Arc<crate::xds::identity::CertificateAuthority>>,
}

/// Pod-template annotation carrying a hash of the xDS client credentials: Envoy reads them only
/// at start, so a renewed certificate rolls the pods.
pub const ANNOTATION_XDS_CLIENT_HASH: &str = "sluice.dev/xds-client-hash";

/// One stage's failure; each has a short label for metrics.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("reading the Gateway: {0}")]
    Read(kube::Error),
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("reading the Gateway's pods: {0}")]
    Observe(kube::Error),
    #[error("writing the Gateway status: {0}")]
    Status(kube::Error),
    #[error("Gateway has no namespace")]
    NoNamespace,
    #[error("issuing the xDS client certificate: {0}")]
    XdsCredentials(String),
    /// This replica stopped leading: the reconcile stops before its next write.
    #[error("no longer leading")]
    NotLeading,
}

impl GatewayError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Read(_) => "read",
            Self::Apply { .. } => "apply",
            Self::Observe(_) => "observe",
            Self::Status(_) => "status",
            Self::NoNamespace => "invalid",
            Self::XdsCredentials(_) => "xds_credentials",
            Self::NotLeading => "not_leading",
        }
    }
}

/// Runs the controller until its streams end.
pub async fn run(ctx: GatewayContext, counts_changed: watch::Receiver<u64>) {
    let client = ctx.client.clone();
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
    Controller::new(Api::<Gateway>::all(client.clone()), everything)
        .owns(Api::<DaemonSet>::all(client.clone()), ours.clone())
        .owns(Api::<Service>::all(client.clone()), ours.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), ours.clone())
        .owns(Api::<ServiceAccount>::all(client), ours)
        .reconcile_all_on(triggers)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "gateway reconcile");
            }
        })
        .await;
}

#[tracing::instrument(skip_all, fields(gateway = %format!("{}/{}", gw.namespace().unwrap_or_default(), gw.name_any())))]
async fn reconcile(gw: Arc<Gateway>, ctx: Arc<GatewayContext>) -> Result<Action, GatewayError> {
    if !ctx.leadership.is_leading() {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let result = match reconcile_leader(&gw, &ctx).await {
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
        return Ok(Action::await_change());
    };
    let gw = &gw;
    let key = format!("{ns}/{}", gw.name_any());
    let (applied, error) = match provision::desired(gw, &ctx.provision) {
        Ok(mut desired) => {
            if let Some(ca) = &ctx.xds_ca {
                let secret =
                    apply_xds_client_secret(&ctx.client, &ctx.leadership, &ns, gw, ca).await?;
                desired
                    .daemon_set
                    .spec
                    .get_or_insert_default()
                    .template
                    .metadata
                    .get_or_insert_default()
                    .annotations
                    .get_or_insert_default()
                    .insert(
                        ANNOTATION_XDS_CLIENT_HASH.to_owned(),
                        provision::xds_tls::xds_client_secret_hash(&secret),
                    );
            }
            (
                Some(apply_all(&ctx.client, &ctx.leadership, &ns, desired).await?),
                None,
            )
        }
        Err(e) => {
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["gateway", e.label()])
                .inc();
            tracing::warn!(error = %e, "cannot provision");
            (None, Some(e))
        }
    };
    let pods: Vec<Pod> = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&pods_selector(&gw.name_any())))
        .await
        .map_err(GatewayError::Observe)?
        .items;
    let routes = ctx
        .route_counts
        .lock()
        .ok()
        .and_then(|c| c.get(&key).cloned())
        .unwrap_or_default();
    let dag = ctx.dags.lock().ok().and_then(|d| d.get(&key).cloned());
    let rejections = rejection_reports(ctx.cache.rejections(&key), dag.as_deref());
    let observed = ObservedState {
        daemon_set: applied.as_ref().map(|a| &a.0),
        service: applied.as_ref().map(|a| &a.1),
        pods: &pods,
        routes,
        error: error.as_ref(),
        rejections: &rejections,
    };
    let status = provision::gateway_status(gw, &observed, &Time(jiff::Timestamp::now()));
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
    Ok(match error {
        // An invalid spec waits for a change to the Gateway.
        Some(_) => Action::await_change(),
        // Follow the rollout; DaemonSet events also trigger a reconcile.
        None => Action::requeue(Duration::from_secs(60)),
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

/// Issues (or keeps, while still good) the Gateway's xDS client certificate and applies its
/// Secret. Never logs the Secret.
async fn apply_xds_client_secret(
    client: &kube::Client,
    leadership: &Leadership,
    ns: &str,
    gw: &Gateway,
    ca: &crate::xds::identity::CertificateAuthority,
) -> Result<k8s_openapi::api::core::v1::Secret, GatewayError> {
    use k8s_openapi::api::core::v1::Secret;
    let name = provision::objects::xds_client_secret_name(&gw.name_any());
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    let existing = api.get_opt(&name).await.map_err(GatewayError::Read)?;
    let desired = provision::xds_tls::desired_xds_client_secret(
        gw,
        ca,
        existing.as_ref(),
        std::time::SystemTime::now(),
    )
    .map_err(|e| GatewayError::XdsCredentials(e.to_string()))?;
    apply(client, leadership, ns, &desired).await
}

/// Applies every desired object; returns the DaemonSet and Service as the API now has them.
async fn apply_all(
    client: &kube::Client,
    leadership: &Leadership,
    ns: &str,
    desired: provision::DesiredObjects,
) -> Result<(DaemonSet, Service), GatewayError> {
    apply(client, leadership, ns, &desired.service_account).await?;
    apply(client, leadership, ns, &desired.config_map).await?;
    let ds = apply(client, leadership, ns, &desired.daemon_set).await?;
    let svc = apply(client, leadership, ns, &desired.service).await?;
    Ok((ds, svc))
}

/// Every write asks first: a replica that lost the lease writes nothing more.
fn ensure_leading(leadership: &Leadership) -> Result<(), GatewayError> {
    if leadership.is_leading() {
        Ok(())
    } else {
        Err(GatewayError::NotLeading)
    }
}

/// Server-side applies `obj`, if this replica still leads.
async fn apply<K>(
    client: &kube::Client,
    leadership: &Leadership,
    ns: &str,
    obj: &K,
) -> Result<K, GatewayError>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj.name_any();
    ensure_leading(leadership)?;
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|source| GatewayError::Apply {
            kind: K::kind(&K::DynamicType::default()).into_owned(),
            name,
            source,
        })
}

/// Whether `live` is the object `cached` describes (same uid) and is not being deleted.
fn is_same_live_object(live: &Gateway, cached: &Gateway) -> bool {
    live.metadata.uid.is_some()
        && live.metadata.uid == cached.metadata.uid
        && live.metadata.deletion_timestamp.is_none()
}

fn error_policy(_gw: Arc<Gateway>, error: &GatewayError, ctx: Arc<GatewayContext>) -> Action {
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
        let desired = provision::desired(&gw, &crate::provision::fixtures::ctx()).unwrap();
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
}
