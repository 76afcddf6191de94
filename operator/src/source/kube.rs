//! Reflectors over the Kubernetes API: one watch per kind, shared by every Gateway instance. Each
//! event bumps a counter; consumers debounce and take a [`ClusterSnapshot`] of the stores.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::lenient::Lenient;
use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, SharedObject, UndecodableRoute};

/// Secret keys the translation reads; everything else is dropped before it is stored, so
/// unrelated credentials (service-account tokens, passwords) are never held in memory.
const SECRET_KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// Secret types never read: service-account tokens, and Helm's release records (large, and
/// numerous in clusters that use Helm). Filtered by the API server, so they are never received.
const IGNORED_SECRET_TYPES: [&str; 2] =
    ["kubernetes.io/service-account-token", "helm.sh/release.v1"];

/// The field selector leaving out [`IGNORED_SECRET_TYPES`].
pub fn secret_field_selector() -> String {
    IGNORED_SECRET_TYPES
        .iter()
        .map(|t| format!("type!={t}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Read handles of every watched kind.
#[derive(Clone)]
pub struct Stores {
    /// Decoded one by one ([`Lenient`]): one object that does not fit stops nothing else.
    pub gateways: Store<Lenient<Gateway>>,
    pub ingress_routes: Store<Lenient<IngressRoute>>,
    pub delegations: Store<Lenient<TLSCertificateDelegation>>,
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    pub endpoint_slices: Store<EndpointSlice>,
    pub secrets: SecretStores,
    /// What the watch events changed since [`Stores::take_changes`].
    changes: Changes,
}

/// The change set the reflectors fill, shared with every watch task.
type Changes = Arc<Mutex<ChangeSet>>;

/// Where a watch records its events: the kinds its events change, and the shared counter and
/// change set.
#[derive(Clone)]
struct Notify {
    kinds: &'static [Kind],
    counter: Arc<watch::Sender<u64>>,
    changes: Changes,
}

impl Notify {
    fn record<K: Resource>(&self, event: &watcher::Event<K>) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
                for kind in self.kinds {
                    changes.insert(*kind, ObjKey::of(o));
                }
            }
            // A relist: objects not listed again are dropped at its end.
            watcher::Event::Init | watcher::Event::InitDone => {
                for kind in self.kinds {
                    changes.insert_kind(*kind);
                }
            }
        }
        drop(changes);
        self.counter.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Where Secrets are read: only where the instances may need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretScope {
    /// Some Gateway accepts roots in every namespace.
    All,
    /// The Gateways' root namespaces, the namespaces of TLSCertificateDelegations (delegated
    /// certificates live there), and the namespaces of IngressRoutes that ask for upstream
    /// validation (their CA Secret lives beside them).
    Namespaces(BTreeSet<String>),
}

/// The Secret scope the current objects call for. Pure.
pub fn secret_scope<'a>(
    gateways: impl IntoIterator<Item = &'a Gateway>,
    delegations: impl IntoIterator<Item = &'a TLSCertificateDelegation>,
    ingress_routes: impl IntoIterator<Item = &'a IngressRoute>,
) -> SecretScope {
    let mut namespaces = BTreeSet::new();
    for gw in gateways {
        if gw.spec.root_namespaces.is_empty() {
            return SecretScope::All;
        }
        namespaces.extend(gw.spec.root_namespaces.iter().cloned());
    }
    namespaces.extend(
        delegations
            .into_iter()
            .filter_map(|d| d.metadata.namespace.clone()),
    );
    let validates = |ir: &IngressRoute| {
        ir.spec
            .routes
            .iter()
            .flat_map(|r| &r.services)
            .any(|s| s.validation.is_some())
    };
    namespaces.extend(
        ingress_routes
            .into_iter()
            .filter(|ir| validates(ir))
            .filter_map(|ir| ir.metadata.namespace.clone()),
    );
    SecretScope::Namespaces(namespaces)
}

/// Running Secret reflectors by namespace (`None`: all namespaces), with the handle stopping each.
type ActiveSecretWatches = BTreeMap<Option<String>, (Store<Secret>, tokio::task::AbortHandle)>;

/// Secret reflectors for the current [`SecretScope`]: one for the whole cluster, or one per
/// namespace, started and stopped as the scope changes.
#[derive(Clone)]
pub struct SecretStores {
    client: Client,
    notify: Notify,
    /// Key `None`: all namespaces.
    active: Arc<Mutex<ActiveSecretWatches>>,
}

impl SecretStores {
    fn new(client: Client, notify: Notify) -> Self {
        Self {
            client,
            notify,
            active: Arc::default(),
        }
    }

    /// Starts the reflectors `scope` needs and stops the others. Returns true if anything
    /// changed (new stores start empty: wait for them with [`Self::wait_until_ready`]).
    pub fn ensure(&self, scope: &SecretScope) -> bool {
        let wanted: BTreeSet<Option<String>> = match scope {
            SecretScope::All => BTreeSet::from([None]),
            SecretScope::Namespaces(ns) => ns.iter().cloned().map(Some).collect(),
        };
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let before = active.len();
        active.retain(|ns, (_, task)| {
            let keep = wanted.contains(ns);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut changed = active.len() != before;
        for ns in wanted {
            if active.contains_key(&ns) {
                continue;
            }
            let api: Api<Secret> = match &ns {
                None => Api::all(self.client.clone()),
                Some(ns) => Api::namespaced(self.client.clone(), ns),
            };
            let config = watcher::Config::default().fields(&secret_field_selector());
            let (store, task) = reflect_task(api, config, self.notify.clone(), strip_secret);
            tracing::info!(namespace = ns.as_deref().unwrap_or("*"), "watching Secrets");
            active.insert(ns, (store, task));
            changed = true;
        }
        if changed {
            // A stopped watch drops its Secrets without an event.
            self.notify
                .changes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert_kind(Kind::Secret);
        }
        changed
    }

    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        let stores: Vec<Store<Secret>> = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|(s, _)| s.clone())
            .collect();
        for s in stores {
            s.wait_until_ready().await?;
        }
        Ok(())
    }

    fn state(&self) -> Vec<Arc<Secret>> {
        let active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        active.values().flat_map(|(s, _)| s.state()).collect()
    }
}

impl Stores {
    /// Waits until every store has completed its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.gateways.wait_until_ready().await?;
        self.ingress_routes.wait_until_ready().await?;
        self.delegations.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.endpoints.wait_until_ready().await?;
        self.endpoint_slices.wait_until_ready().await?;
        self.secrets.ensure(&self.secret_scope());
        self.secrets.wait_until_ready().await
    }

    /// The Secret scope the current Gateways, delegations and IngressRoutes call for.
    pub fn secret_scope(&self) -> SecretScope {
        let (gateways, delegations, routes) = (
            self.gateways.state(),
            self.delegations.state(),
            self.ingress_routes.state(),
        );
        secret_scope(
            gateways.iter().filter_map(|o| o.ok()),
            delegations.iter().filter_map(|o| o.ok()),
            routes.iter().filter_map(|o| o.ok()),
        )
    }

    /// The changes seen since the last call, from the watch events. Take them before the
    /// [`Self::snapshot`] they describe: an event that lands in between is then listed again
    /// next time (harmless), never lost.
    pub fn take_changes(&self) -> ChangeSet {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The current state. Shares the stores' objects (`Arc`s): nothing is copied per object.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let mut snap = ClusterSnapshot::default();
        for o in self.gateways.state() {
            match &o.decoded {
                Ok(g) => snap.apply_shared(SharedObject::Gateway(g.clone())),
                // Never the open default instance in its place (there is none in a cluster
                // anyway); its own controller reports it.
                Err(e) => snap.unloaded_gateways.push(format!(
                    "Gateway {}: {}",
                    ObjKey::of(o.as_ref()),
                    e.error
                )),
            }
        }
        snap.unloaded_gateways.sort();
        for o in self.ingress_routes.state() {
            match &o.decoded {
                Ok(r) => snap.apply_shared(SharedObject::IngressRoute(r.clone())),
                Err(e) => {
                    snap.undecodable_routes.insert(
                        ObjKey::of(o.as_ref()),
                        UndecodableRoute {
                            metadata: o.metadata.clone(),
                            error: e.error.clone(),
                            status: e
                                .status
                                .clone()
                                .and_then(|s| serde_json::from_value(s).ok()),
                        },
                    );
                }
            }
        }
        // A TLSCertificateDelegation that does not decode delegates nothing.
        for o in self.delegations.state() {
            if let Ok(d) = &o.decoded {
                snap.apply_shared(SharedObject::Delegation(d.clone()));
            }
        }
        for o in self.services.state() {
            snap.apply_shared(SharedObject::Service(o));
        }
        for o in self.endpoints.state() {
            snap.apply_shared(SharedObject::Endpoints(o));
        }
        for o in self.endpoint_slices.state() {
            snap.apply_shared(SharedObject::EndpointSlice(o));
        }
        for secret in self.secrets.state() {
            snap.apply_shared(SharedObject::Secret(secret));
        }
        snap
    }
}

/// Starts one reflector per kind (Secrets: per [`SecretScope`], see [`SecretStores::ensure`]).
/// The returned receiver changes on every watch event.
pub fn start(client: &Client) -> (Stores, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0u64);
    let counter = Arc::new(tx);
    let changes = Changes::default();
    let notify = |kinds: &'static [Kind]| Notify {
        kinds,
        counter: counter.clone(),
        changes: changes.clone(),
    };
    let all = watcher::Config::default;
    let stores = Stores {
        gateways: reflect(
            Api::all(client.clone()),
            all(),
            notify(&[Kind::Gateway]),
            |_| {},
        ),
        ingress_routes: reflect(
            Api::all(client.clone()),
            all(),
            notify(&[Kind::IngressRoute, Kind::UndecodableRoute]),
            |_| {},
        ),
        delegations: reflect(
            Api::all(client.clone()),
            all(),
            notify(&[Kind::Delegation]),
            |_| {},
        ),
        services: reflect(
            Api::all(client.clone()),
            all(),
            notify(&[Kind::Service]),
            |_| {},
        ),
        endpoints: reflect(
            Api::all(client.clone()),
            all(),
            notify(&[Kind::Endpoints]),
            |_| {},
        ),
        endpoint_slices: reflect(
            Api::all(client.clone()),
            all(),
            notify(&[Kind::EndpointSlice]),
            |_| {},
        ),
        secrets: SecretStores::new(client.clone(), notify(&[Kind::Secret])),
        changes,
    };
    (stores, rx)
}

fn strip_secret(s: &mut Secret) {
    if let Some(data) = s.data.as_mut() {
        data.retain(|k, _| SECRET_KEYS.contains(&k.as_str()));
    }
    s.string_data = None;
    if let Some(meta) = s.metadata.annotations.as_mut() {
        // kubectl's last-applied annotation carries the whole object, data included.
        meta.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    s.metadata.managed_fields = None;
}

fn reflect<K>(api: Api<K>, config: watcher::Config, notify: Notify, modify: fn(&mut K)) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    reflect_task(api, config, notify, modify).0
}

/// Like [`reflect`], also returning a handle that stops the watch.
fn reflect_task<K>(
    api: Api<K>,
    config: watcher::Config,
    notify: Notify,
    modify: fn(&mut K),
) -> (Store<K>, tokio::task::AbortHandle)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = watcher(api, config)
        .modify(move |o| {
            modify(o);
            o.meta_mut().managed_fields = None;
        })
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => notify.record(&event),
                Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
            }
        }
    });
    (reader, task.abort_handle())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::IngressRouteSpec;
    use crate::api::gateway::GatewaySpec;
    use crate::api::ingressroute::{
        Route, Service as IrService, TLSCertificateDelegationSpec, UpstreamValidation,
    };

    fn gateway(roots: &[&str]) -> Gateway {
        Gateway::new(
            "gw",
            GatewaySpec {
                root_namespaces: roots.iter().map(|r| (*r).to_owned()).collect(),
                ..GatewaySpec::default()
            },
        )
    }

    fn in_ns<K: Resource>(mut o: K, ns: &str) -> K {
        o.meta_mut().namespace = Some(ns.into());
        o
    }

    #[test]
    fn secrets_are_read_only_where_needed() {
        let delegation = in_ns(
            TLSCertificateDelegation::new("d", TLSCertificateDelegationSpec::default()),
            "www-admin",
        );
        let validating = in_ns(
            IngressRoute::new(
                "child",
                IngressRouteSpec {
                    routes: vec![Route {
                        services: vec![IrService {
                            validation: Some(UpstreamValidation::default()),
                            ..IrService::default()
                        }],
                        ..Route::default()
                    }],
                    ..IngressRouteSpec::default()
                },
            ),
            "marketing",
        );
        let plain = in_ns(
            IngressRoute::new("plain", IngressRouteSpec::default()),
            "elsewhere",
        );
        let scope = secret_scope(
            [&gateway(&["team-a"]), &gateway(&["team-b", "team-a"])],
            [&delegation],
            [&validating, &plain],
        );
        let want: BTreeSet<String> = ["marketing", "team-a", "team-b", "www-admin"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(scope, SecretScope::Namespaces(want));
        // One Gateway accepting roots anywhere needs Secrets from anywhere.
        assert_eq!(
            secret_scope([&gateway(&["a"]), &gateway(&[])], [], []),
            SecretScope::All
        );
        // No Gateway, no Secret.
        assert_eq!(
            secret_scope([], [], []),
            SecretScope::Namespaces(BTreeSet::new())
        );
    }
}
