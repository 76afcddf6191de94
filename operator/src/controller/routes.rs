//! The route reconciler: after a short debounce, takes a snapshot of the shared reflectors, builds
//! and translates every Gateway instance, hands the resources to the xDS cache, and (leader only)
//! writes the IngressRoute statuses that changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

use crate::api::IngressRoute;
use crate::api::gateway::RouteCounts;
use crate::api::ingressroute::IngressRouteStatus;
use crate::controller::status::combine_statuses;
use crate::dag::{self, Dag, Selection, Validity};
use crate::metrics::Metrics;
use crate::provision::FIELD_MANAGER;
use crate::snapshot::{ClusterSnapshot, ObjKey};
use crate::source::kube::Stores;
use crate::xds::cache::{Cache, InstanceResources};
use crate::xds::translate::{TranslateOptions, translate};

/// How long a rebuild waits for the Secrets of a newly needed namespace.
const SECRET_LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Route counts per Gateway (`namespace/name`), read by the Gateway controller for its status.
pub type SharedRouteCounts = Arc<Mutex<BTreeMap<String, RouteCounts>>>;

pub struct RoutesContext {
    pub client: kube::Client,
    pub stores: Stores,
    pub cache: Arc<Cache>,
    pub metrics: Metrics,
    pub leading: watch::Receiver<bool>,
    pub translate: TranslateOptions,
    pub debounce: Duration,
    /// Statuses are rechecked this often even without changes (a failed write is retried).
    pub resync: Duration,
    pub route_counts: SharedRouteCounts,
    /// Bumped when route counts change, so Gateway statuses follow.
    pub counts_changed: watch::Sender<u64>,
}

/// Runs forever. `ready` turns true once the first configuration of every instance is published.
pub async fn run(
    ctx: RoutesContext,
    mut changed: watch::Receiver<u64>,
    ready: watch::Sender<bool>,
) {
    if ctx.stores.wait_until_ready().await.is_err() {
        tracing::error!("reflectors stopped before their initial list");
        return;
    }
    let mut leading = ctx.leading.clone();
    let mut published: Vec<String> = Vec::new();
    loop {
        changed.borrow_and_update();
        // Secrets are read only in the namespaces the instances may need; a new namespace's
        // Secrets are listed before the rebuild, so no certificate is briefly missing.
        if ctx.stores.secrets.ensure(&ctx.stores.secret_scope()) {
            let listed =
                tokio::time::timeout(SECRET_LIST_TIMEOUT, ctx.stores.secrets.wait_until_ready());
            if !matches!(listed.await, Ok(Ok(()))) {
                tracing::warn!(
                    "Secrets of a newly needed namespace not listed yet; building without them"
                );
            }
        }
        let snapshot = ctx.stores.snapshot();
        let dags = publish_all(&ctx, &snapshot, &mut published);
        ready.send_replace(true);
        if *leading.borrow_and_update() {
            write_statuses(&ctx, &snapshot, &dags).await;
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            r = leading.changed() => if r.is_err() { return },
            () = tokio::time::sleep(ctx.resync) => {}
        }
        // Let a burst of events settle into one rebuild.
        tokio::time::sleep(ctx.debounce).await;
    }
}

/// Builds and publishes every instance of the snapshot; drops instances that went away.
fn publish_all(
    ctx: &RoutesContext,
    snapshot: &ClusterSnapshot,
    published: &mut Vec<String>,
) -> Vec<Dag> {
    let selections: Vec<Selection> = snapshot
        .gateways
        .values()
        .map(Selection::from_gateway)
        .collect();
    let mut dags = Vec::with_capacity(selections.len());
    let mut counts = BTreeMap::new();
    for sel in &selections {
        let gateway = sel.gateway.to_string();
        let started = Instant::now();
        let dag = dag::build(snapshot, sel);
        ctx.metrics
            .dag_build_seconds
            .with_label_values(&[&gateway])
            .observe(started.elapsed().as_secs_f64());

        let started = Instant::now();
        match translate(&dag, &ctx.translate) {
            Ok(resources) => {
                ctx.metrics
                    .translate_seconds
                    .with_label_values(&[&gateway])
                    .observe(started.elapsed().as_secs_f64());
                if ctx.cache.set(&gateway, InstanceResources::from(&resources)) {
                    tracing::info!(gateway = %gateway, "published a new configuration");
                }
            }
            Err(e) => {
                // The cache keeps serving the last good configuration.
                ctx.metrics
                    .reconcile_errors
                    .with_label_values(&["routes", e.label()])
                    .inc();
                tracing::error!(gateway = %gateway, error = %e, "translation failed; keeping the last good configuration");
            }
        }
        let c = route_counts(&dag);
        for (status, n) in [
            ("valid", c.valid),
            ("invalid", c.invalid),
            ("orphaned", c.orphaned),
        ] {
            ctx.metrics
                .routes
                .with_label_values(&[&gateway, status])
                .set(i64::from(n));
        }
        counts.insert(gateway, c);
        dags.push(dag);
    }
    let current: Vec<String> = counts.keys().cloned().collect();
    for gone in published.iter().filter(|g| !current.contains(g)) {
        ctx.cache.remove(gone);
        for status in ["valid", "invalid", "orphaned"] {
            let _ = ctx.metrics.routes.remove_label_values(&[gone, status]);
        }
        tracing::info!(gateway = %gone, "instance removed");
    }
    *published = current;
    let counts_differ = ctx
        .route_counts
        .lock()
        .map(|mut shared| {
            let differ = *shared != counts;
            *shared = counts;
            differ
        })
        .unwrap_or(false);
    if counts_differ {
        ctx.counts_changed.send_modify(|n| *n = n.wrapping_add(1));
    }
    dags
}

pub fn route_counts(dag: &Dag) -> RouteCounts {
    let mut c = RouteCounts::default();
    for s in &dag.statuses {
        match s.current_status {
            Validity::Valid => c.valid += 1,
            Validity::Invalid => c.invalid += 1,
            Validity::Orphaned => c.orphaned += 1,
        }
    }
    c
}

/// The statuses to write: combined across instances, and only where they differ from what the
/// object carries. IngressRoutes no instance judges are left alone.
pub fn statuses_to_write(
    snapshot: &ClusterSnapshot,
    dags: &[Dag],
) -> Vec<(ObjKey, IngressRouteStatus)> {
    combine_statuses(dags)
        .into_iter()
        .filter(|(key, want)| {
            snapshot
                .ingress_routes
                .get(key)
                .is_some_and(|ir| ir.status.as_ref() != Some(want))
        })
        .collect()
}

async fn write_statuses(ctx: &RoutesContext, snapshot: &ClusterSnapshot, dags: &[Dag]) {
    for (key, status) in statuses_to_write(snapshot, dags) {
        let api: Api<IngressRoute> = Api::namespaced(ctx.client.clone(), &key.namespace);
        let body = json!({
            "apiVersion": "contour.heptio.com/v1beta1",
            "kind": "IngressRoute",
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api
            .patch_status(&key.name, &params, &Patch::Apply(&body))
            .await
        {
            Ok(_) => {
                ctx.metrics
                    .status_writes
                    .with_label_values(&["IngressRoute"])
                    .inc();
                tracing::debug!(ingressroute = %key, status = %status.current_status, "status written");
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {} // Deleted meanwhile.
            Err(e) => {
                ctx.metrics
                    .reconcile_errors
                    .with_label_values(&["routes", "status_write"])
                    .inc();
                tracing::warn!(ingressroute = %key, error = %e, "status write failed; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::gateway::GatewaySpec;
    use crate::api::{Gateway, IngressRouteSpec};
    use crate::snapshot::Object;

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
}
