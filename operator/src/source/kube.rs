//! Reflectors over the Kubernetes API: one watch per kind, shared by every Gateway instance. Each
//! event bumps a counter; consumers debounce and take a [`ClusterSnapshot`] of the stores.
//!
//! With `--watch-namespaces` ([`WatchScope::Namespaces`]) every watch is one per listed
//! namespace instead, so nothing outside them is ever listed, watched or held.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
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

/// The namespaces the operator watches (`--watch-namespaces`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WatchScope {
    /// Every namespace (cluster-wide watches).
    #[default]
    All,
    /// Only these (one watch per namespace and kind). Never empty.
    Namespaces(BTreeSet<String>),
}

impl WatchScope {
    /// The scope of a `--watch-namespaces` list; empty names are dropped, and no name at all
    /// means every namespace.
    pub fn new<S: AsRef<str>>(namespaces: impl IntoIterator<Item = S>) -> Self {
        let set: BTreeSet<String> = namespaces
            .into_iter()
            .map(|n| n.as_ref().trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if set.is_empty() {
            Self::All
        } else {
            Self::Namespaces(set)
        }
    }

    /// One entry per watch a kind needs: `None` is every namespace.
    pub fn watches(&self) -> Vec<Option<String>> {
        match self {
            Self::All => vec![None],
            Self::Namespaces(ns) => ns.iter().cloned().map(Some).collect(),
        }
    }

    /// The API handles of a namespaced kind covering this scope.
    pub fn apis<K>(&self, client: &Client) -> Vec<Api<K>>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        self.watches()
            .iter()
            .map(|ns| api_in(client, ns.as_deref()))
            .collect()
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Namespaces(ns) => ns.contains(namespace),
        }
    }

    /// `scope` limited to the watched namespaces: Secrets are never read elsewhere.
    pub fn restrict(&self, scope: SecretScope) -> SecretScope {
        match (self, scope) {
            (Self::All, scope) => scope,
            (Self::Namespaces(watched), SecretScope::All) => {
                SecretScope::Namespaces(watched.clone())
            }
            (Self::Namespaces(watched), SecretScope::Namespaces(ns)) => {
                SecretScope::Namespaces(ns.intersection(watched).cloned().collect())
            }
        }
    }

    /// What each Gateway's `rootNamespaces` reaches outside the scope, by Gateway
    /// (`namespace/name`): `*` for a Gateway accepting roots in every namespace. Pure.
    pub fn unwatched_roots<'a>(
        &self,
        gateways: impl IntoIterator<Item = &'a Gateway>,
    ) -> BTreeMap<String, Vec<String>> {
        let Self::Namespaces(_) = self else {
            return BTreeMap::new();
        };
        gateways
            .into_iter()
            .filter_map(|gw| {
                let outside: Vec<String> = if gw.spec.root_namespaces.is_empty() {
                    vec!["*".to_owned()]
                } else {
                    let mut o: Vec<String> = gw
                        .spec
                        .root_namespaces
                        .iter()
                        .filter(|ns| !self.contains(ns))
                        .cloned()
                        .collect();
                    o.sort();
                    o.dedup();
                    o
                };
                (!outside.is_empty()).then(|| (ObjKey::of(gw).to_string(), outside))
            })
            .collect()
    }
}

/// An API handle for `namespace`, or for every namespace.
pub fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The stores of one kind: one per watched namespace, or one for the cluster.
pub struct Reflected<K: Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    stores: Vec<Store<K>>,
}

impl<K: Resource + Clone + 'static> Clone for Reflected<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Self {
            stores: self.stores.clone(),
        }
    }
}

impl<K: Resource + Clone + 'static> Reflected<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// Every object of every store.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(Store::state).collect()
    }

    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for s in &self.stores {
            s.wait_until_ready().await?;
        }
        Ok(())
    }
}

/// Read handles of every watched kind.
#[derive(Clone)]
pub struct Stores {
    /// Decoded one by one ([`Lenient`]): one object that does not fit stops nothing else.
    pub gateways: Reflected<Lenient<Gateway>>,
    pub ingress_routes: Reflected<Lenient<IngressRoute>>,
    pub delegations: Reflected<Lenient<TLSCertificateDelegation>>,
    pub services: Reflected<Service>,
    pub endpoints: Reflected<Endpoints>,
    pub endpoint_slices: Reflected<EndpointSlice>,
    pub secrets: SecretStores,
    /// What is watched; Secrets too are read only there.
    pub watch: WatchScope,
    /// Gateways last reported for roots outside [`Self::watch`], to say it once per change.
    unwatched_roots: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
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

    /// The Secret scope the current Gateways, delegations and IngressRoutes call for, within
    /// the watched namespaces. Logs a warning when the Gateways whose roots reach outside them
    /// change (IngressRoutes and Secrets there are never seen).
    pub fn secret_scope(&self) -> SecretScope {
        let (gateways, delegations, routes) = (
            self.gateways.state(),
            self.delegations.state(),
            self.ingress_routes.state(),
        );
        let outside = self
            .watch
            .unwatched_roots(gateways.iter().filter_map(|o| o.ok()));
        let mut reported = self
            .unwatched_roots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *reported != outside {
            for (gateway, namespaces) in &outside {
                tracing::warn!(
                    %gateway,
                    namespaces = %namespaces.join(","),
                    "rootNamespaces reach namespaces the operator does not watch \
                     (--watch-namespaces): IngressRoutes and Secrets there are ignored"
                );
            }
            *reported = outside;
        }
        drop(reported);
        self.watch.restrict(secret_scope(
            gateways.iter().filter_map(|o| o.ok()),
            delegations.iter().filter_map(|o| o.ok()),
            routes.iter().filter_map(|o| o.ok()),
        ))
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

/// Starts one reflector per kind and watched namespace (Secrets: per [`SecretScope`], see
/// [`SecretStores::ensure`]). The returned receiver changes on every watch event.
pub fn start(client: &Client, scope: &WatchScope) -> (Stores, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0u64);
    let counter = Arc::new(tx);
    let changes = Changes::default();
    let notify = |kinds: &'static [Kind]| Notify {
        kinds,
        counter: counter.clone(),
        changes: changes.clone(),
    };
    fn each<K>(client: &Client, scope: &WatchScope, notify: Notify) -> Reflected<K>
    where
        K: Resource<Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    {
        Reflected {
            stores: scope
                .apis(client)
                .into_iter()
                .map(|api| reflect(api, watcher::Config::default(), notify.clone(), |_| {}))
                .collect(),
        }
    }
    let stores = Stores {
        gateways: each(client, scope, notify(&[Kind::Gateway])),
        ingress_routes: each(
            client,
            scope,
            notify(&[Kind::IngressRoute, Kind::UndecodableRoute]),
        ),
        delegations: each(client, scope, notify(&[Kind::Delegation])),
        services: each(client, scope, notify(&[Kind::Service])),
        endpoints: each(client, scope, notify(&[Kind::Endpoints])),
        endpoint_slices: each(client, scope, notify(&[Kind::EndpointSlice])),
        secrets: SecretStores::new(client.clone(), notify(&[Kind::Secret])),
        watch: scope.clone(),
        unwatched_roots: Arc::default(),
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

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn watched_namespaces_bound_the_secret_scope_and_name_unwatched_roots() {
        assert_eq!(WatchScope::new(["", " "]), WatchScope::All);
        assert_eq!(WatchScope::All.watches(), [None]);
        let scope = WatchScope::new(["team-b", "team-a", "team-a"]);
        assert_eq!(scope, WatchScope::Namespaces(set(&["team-a", "team-b"])));
        assert_eq!(
            scope.watches(),
            [Some("team-a".to_owned()), Some("team-b".to_owned())]
        );
        // Secrets from everywhere become Secrets from the watched namespaces; a list is cut.
        assert_eq!(
            scope.restrict(SecretScope::All),
            SecretScope::Namespaces(set(&["team-a", "team-b"]))
        );
        assert_eq!(
            scope.restrict(SecretScope::Namespaces(set(&["team-a", "www-admin"]))),
            SecretScope::Namespaces(set(&["team-a"]))
        );
        assert_eq!(WatchScope::All.restrict(SecretScope::All), SecretScope::All);

        let inside = in_ns(gateway(&["team-a", "team-b"]), "team-a");
        let mut reaching = in_ns(gateway(&["team-c", "team-a", "team-c"]), "team-a");
        reaching.metadata.name = Some("reaching".into());
        let mut open = in_ns(gateway(&[]), "team-b");
        open.metadata.name = Some("open".into());
        let outside = scope.unwatched_roots([&inside, &reaching, &open]);
        assert_eq!(
            outside,
            BTreeMap::from([
                ("team-a/reaching".to_owned(), vec!["team-c".to_owned()]),
                ("team-b/open".to_owned(), vec!["*".to_owned()]),
            ])
        );
        assert!(WatchScope::All.unwatched_roots([&open]).is_empty());
    }
}
