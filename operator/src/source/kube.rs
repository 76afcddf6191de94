//! Watches over the Kubernetes API: one per kind, shared by every Gateway instance. Each event
//! is applied to one snapshot kept up to date ([`WatchedSnapshot`]: O(log n) per event, with the
//! change set), and bumps a counter; consumers debounce and [`Stores::take`] the snapshot and
//! what changed, in one step, so every instance builds the same consistent state.
//!
//! With `--watch-namespaces` ([`WatchScope::Namespaces`]) every watch is one per listed
//! namespace instead, so nothing outside them is ever listed, watched or held.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::lenient::Lenient;
use super::secret_grace::{GraceScope, SECRET_WATCH_GRACE, WatchPlan};
use super::traefik::TraefikWatches;
use super::watched::{WatchEvent, WatchId, Watched, WatchedSnapshot, validates};
use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, SharedObject, UndecodableRoute};

/// Secret keys the translation reads; everything else is dropped before it is stored, so
/// unrelated credentials (service-account tokens, passwords) are never held in memory:
/// certificates and keys, CA bundles (`ca.crt`, and Traefik's `tls.ca`), and the htpasswd
/// lines of a Traefik basicAuth users Secret (`users`).
const SECRET_KEYS: [&str; 5] = ["tls.crt", "tls.key", "ca.crt", "tls.ca", "users"];

/// Keys kept only in a `kubernetes.io/basic-auth` Secret (a Traefik basicAuth user).
const BASIC_AUTH_KEYS: [&str; 2] = ["username", "password"];

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

/// Read handles of the watched state.
#[derive(Clone)]
pub struct Stores {
    state: Shared,
    /// Bumped by every event (and what readiness waits on).
    counter: Arc<watch::Sender<u64>>,
    pub secrets: SecretStores,
    /// Traefik's kinds, watched where discovery says they are served.
    pub traefik: TraefikWatches,
    /// What is watched; Secrets too are read only there.
    pub watch: WatchScope,
    /// Gateways last reported for roots outside [`Self::watch`], to say it once per change.
    unwatched_roots: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
}

/// The snapshot every watch task writes to.
type Shared = Arc<Mutex<WatchedSnapshot>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, WatchedSnapshot> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The watch tasks stopped (the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the watches stopped")]
pub struct WatchesStopped;

/// Where a watch applies its events: the shared snapshot and counter.
#[derive(Clone)]
pub(super) struct Notify {
    state: Shared,
    counter: Arc<watch::Sender<u64>>,
}

impl Notify {
    fn record(&self, id: &WatchId, event: WatchEvent) {
        lock(&self.state).apply(id, event);
        self.counter.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A watch stopped: its later events are ignored.
    pub(super) fn stop_watch(&self, id: &WatchId) {
        lock(&self.state).stop_watch(id);
    }

    /// Every object of `kind` leaves the snapshot (its resource is no longer served).
    pub(super) fn forget_kind(&self, kind: Kind) {
        lock(&self.state).forget_kind(kind);
        self.counter.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until every running watch (of `kind`, when given) has completed a list.
    async fn listed(&self, kind: Option<Kind>) -> Result<(), WatchesStopped> {
        let mut events = self.counter.subscribe();
        loop {
            if lock(&self.state).all_listed(kind) {
                return Ok(());
            }
            events.changed().await.map_err(|_| WatchesStopped)?;
        }
    }
}

/// A watched type: which snapshot kind it fills, and how one object goes in.
trait Watchable: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    const KIND: Kind;
    fn watched(self) -> Watched;
}

macro_rules! watchable {
    ($($ty:ty => $kind:ident),* $(,)?) => {$(
        impl Watchable for $ty {
            const KIND: Kind = Kind::$kind;
            fn watched(self) -> Watched {
                Watched::Object(SharedObject::$kind(Arc::new(self.into())))
            }
        }
    )*};
}

watchable!(Service => Service, Endpoints => Endpoints, EndpointSlice => EndpointSlice, Secret => Secret);

impl Watchable for Lenient<Gateway> {
    const KIND: Kind = Kind::Gateway;
    fn watched(self) -> Watched {
        let key = ObjKey::of(&self);
        match self.decoded {
            Ok(g) => Watched::Object(SharedObject::Gateway(g)),
            // Never the open default instance in its place (there is none in a cluster
            // anyway); its own controller reports it.
            Err(e) => Watched::UnloadedGateway(key, e.error),
        }
    }
}

impl Watchable for Lenient<IngressRoute> {
    const KIND: Kind = Kind::IngressRoute;
    fn watched(self) -> Watched {
        let key = ObjKey::of(&self);
        match self.decoded {
            Ok(r) => Watched::Object(SharedObject::IngressRoute(r)),
            Err(e) => Watched::UndecodableRoute(
                key,
                Box::new(UndecodableRoute {
                    metadata: self.metadata,
                    error: e.error,
                    status: e.status.and_then(|s| serde_json::from_value(s).ok()),
                }),
            ),
        }
    }
}

impl Watchable for Lenient<TLSCertificateDelegation> {
    const KIND: Kind = Kind::Delegation;
    fn watched(self) -> Watched {
        let key = ObjKey::of(&self);
        match self.decoded {
            Ok(d) => Watched::Object(SharedObject::Delegation(d)),
            // A TLSCertificateDelegation that does not decode delegates nothing.
            Err(_) => Watched::Absent(key),
        }
    }
}

/// Where Secrets are read: only where the instances may need them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretScope {
    /// Some Gateway accepts roots in every namespace.
    All,
    /// The Gateways' root namespaces, the namespaces of TLSCertificateDelegations (delegated
    /// certificates live there), and the namespaces of IngressRoutes that ask for upstream
    /// validation (their CA Secret lives beside them); while a Gateway allows cross-namespace
    /// references, those of Traefik objects that read Secrets ([`super::secret_reach`]).
    Namespaces(BTreeSet<String>),
}

/// The Secret scope the current objects call for. Pure: the reference of
/// [`WatchedSnapshot::secret_scope`], which keeps it per event.
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
    namespaces.extend(
        ingress_routes
            .into_iter()
            .filter(|ir| validates(ir))
            .filter_map(|ir| ir.metadata.namespace.clone()),
    );
    SecretScope::Namespaces(namespaces)
}

/// Running Secret watches by namespace (`None`: all namespaces), with the handle stopping each.
type ActiveSecretWatches = BTreeMap<Option<String>, (WatchId, tokio::task::AbortHandle)>;

/// Secret watches for the current [`SecretScope`]: one for the whole cluster, or one per
/// namespace, started and stopped as the scope changes.
#[derive(Clone)]
pub struct SecretStores {
    client: Client,
    notify: Notify,
    /// Key `None`: all namespaces.
    active: Arc<Mutex<ActiveSecretWatches>>,
    /// Tells a restarted namespace watch from the one it replaces.
    serial: Arc<AtomicU64>,
    /// Namespaces that left the scope and keep their watch for a while.
    grace: Arc<Mutex<GraceScope>>,
}

/// What [`SecretStores::ensure`] did.
#[derive(Debug)]
pub struct Ensured {
    /// Whether a watch started or stopped.
    pub changed: bool,
    /// The watches running now, and when a grace period ends.
    pub plan: WatchPlan,
}

impl SecretStores {
    fn new(client: Client, notify: Notify) -> Self {
        Self {
            client,
            notify,
            active: Arc::default(),
            serial: Arc::default(),
            grace: Arc::new(Mutex::new(GraceScope::new(SECRET_WATCH_GRACE))),
        }
    }

    /// Starts the watches `scope` needs and stops the others once their grace period is over
    /// ([`super::secret_grace`]); Secrets outside the watched namespaces leave the snapshot.
    /// Never waits: a new watch lists concurrently and its Secrets arrive as events (wait for
    /// them with [`Self::wait_until_ready`] if needed).
    pub fn ensure(&self, scope: &SecretScope) -> Ensured {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let running = active.keys().cloned().collect();
        let plan = self
            .grace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .plan(scope, &running, std::time::Instant::now());
        let before = active.len();
        active.retain(|ns, (id, task)| {
            let keep = plan.watches.contains(ns);
            if !keep {
                task.abort();
                // Its events from now on are ignored, even one already on its way.
                lock(&self.notify.state).stop_watch(id);
                tracing::info!(
                    namespace = ns.as_deref().unwrap_or("*"),
                    "no longer watching Secrets"
                );
            }
            keep
        });
        let stopped = before - active.len();
        let mut started = 0;
        for ns in &plan.watches {
            if active.contains_key(ns) {
                continue;
            }
            let api: Api<Secret> = match ns {
                None => Api::all(self.client.clone()),
                Some(ns) => Api::namespaced(self.client.clone(), ns),
            };
            let config = watcher::Config::default().fields(&secret_field_selector());
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            let id = WatchId::new(Kind::Secret, ns.clone(), serial);
            let task = watch_task(
                api,
                config,
                id.clone(),
                self.notify.clone(),
                strip_secret,
                Watchable::watched,
            );
            tracing::info!(namespace = ns.as_deref().unwrap_or("*"), "watching Secrets");
            active.insert(ns.clone(), (id, task));
            started += 1;
        }
        let changed = started + stopped > 0;
        if changed {
            // A stopped watch's Secrets go, unless a running one lists them again.
            lock(&self.notify.state).remove_secrets_outside(&plan.scope);
            tracing::info!(
                watches = active.len(),
                needed = plan.needed,
                in_grace = plan.in_grace,
                started,
                stopped,
                "Secret watches changed"
            );
        }
        Ensured { changed, plan }
    }

    /// Waits until every Secret watch has completed its list.
    pub async fn wait_until_ready(&self) -> Result<(), WatchesStopped> {
        self.notify.listed(Some(Kind::Secret)).await
    }
}

impl Stores {
    /// Waits until every watch has completed its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), WatchesStopped> {
        let notify = Notify {
            state: self.state.clone(),
            counter: self.counter.clone(),
        };
        notify.listed(None).await?;
        self.secrets.ensure(&self.secret_scope());
        self.secrets.wait_until_ready().await
    }

    /// The Secret scope the current Gateways, delegations and IngressRoutes call for, within
    /// the watched namespaces. Logs a warning when the Gateways whose roots reach outside them
    /// change (IngressRoutes and Secrets there are never seen). O(Gateways + namespaces).
    pub fn secret_scope(&self) -> SecretScope {
        let (scope, outside) = {
            let state = lock(&self.state);
            let gateways = state.snapshot().gateways.values().map(|g| &**g);
            (state.secret_scope(), self.watch.unwatched_roots(gateways))
        };
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
        self.watch.restrict(scope)
    }

    /// The current snapshot and what changed since the previous call, taken together (O(1)):
    /// every event is in exactly one change set, and the snapshot holds exactly the events
    /// listed up to now.
    pub fn take(&self) -> (Arc<ClusterSnapshot>, ChangeSet) {
        lock(&self.state).take()
    }

    /// How many objects changed (more than their status) since the last [`Self::take`]: how
    /// fast changes are coming in (O(1)).
    pub fn objects_changed(&self) -> usize {
        lock(&self.state).objects_changed()
    }
}

/// Starts one watch per kind and watched namespace (Secrets: per [`SecretScope`], see
/// [`SecretStores::ensure`]). The returned receiver changes on every watch event.
pub fn start(client: &Client, scope: &WatchScope) -> (Stores, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0u64);
    let notify = Notify {
        state: Shared::default(),
        counter: Arc::new(tx),
    };
    fn each<K>(client: &Client, scope: &WatchScope, notify: &Notify)
    where
        K: Watchable + Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    {
        for ns in scope.watches() {
            let api = api_in(client, ns.as_deref());
            let id = WatchId::new(K::KIND, ns, 0);
            let config = watcher::Config::default();
            watch_task::<K>(api, config, id, notify.clone(), |_| {}, K::watched);
        }
    }
    each::<Lenient<Gateway>>(client, scope, &notify);
    each::<Lenient<IngressRoute>>(client, scope, &notify);
    each::<Lenient<TLSCertificateDelegation>>(client, scope, &notify);
    each::<Service>(client, scope, &notify);
    each::<Endpoints>(client, scope, &notify);
    each::<EndpointSlice>(client, scope, &notify);
    let stores = Stores {
        state: notify.state.clone(),
        counter: notify.counter.clone(),
        traefik: TraefikWatches::new(client.clone(), notify.clone(), scope.clone()),
        secrets: SecretStores::new(client.clone(), notify),
        watch: scope.clone(),
        unwatched_roots: Arc::default(),
    };
    (stores, rx)
}

fn strip_secret(s: &mut Secret) {
    let basic_auth = s.type_.as_deref() == Some("kubernetes.io/basic-auth");
    if let Some(data) = s.data.as_mut() {
        data.retain(|k, _| {
            SECRET_KEYS.contains(&k.as_str())
                || (basic_auth && BASIC_AUTH_KEYS.contains(&k.as_str()))
        });
    }
    s.string_data = None;
    if let Some(meta) = s.metadata.annotations.as_mut() {
        // kubectl's last-applied annotation carries the whole object, data included.
        meta.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    s.metadata.managed_fields = None;
}

/// Runs one watch, applying its events (each object turned into what the snapshot holds by
/// `convert`) to the shared snapshot; returns the handle stopping it.
pub(super) fn watch_task<K>(
    api: Api<K>,
    config: watcher::Config,
    id: WatchId,
    notify: Notify,
    modify: fn(&mut K),
    convert: impl Fn(K) -> Watched + Send + 'static,
) -> tokio::task::AbortHandle
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    lock(&notify.state).add_watch(id.clone());
    let stream = watcher(api, config)
        .modify(move |o| {
            modify(o);
            o.meta_mut().managed_fields = None;
        })
        .default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(watcher::Event::Apply(o)) => WatchEvent::Apply(convert(o)),
                Ok(watcher::Event::Delete(o)) => WatchEvent::Delete(ObjKey::of(&o)),
                Ok(watcher::Event::Init) => WatchEvent::Init,
                Ok(watcher::Event::InitApply(o)) => WatchEvent::InitApply(convert(o)),
                Ok(watcher::Event::InitDone) => WatchEvent::InitDone,
                Err(e) => {
                    tracing::warn!(kind = id.kind.as_str(), watch = ?id.kind, error = %e, "watch failed; retrying");
                    continue;
                }
            };
            notify.record(&id, event);
        }
    });
    task.abort_handle()
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
                            validation: Some(Box::new(UpstreamValidation::default())),
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

#[cfg(test)]
mod strip_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, keys: &[&str]) -> Secret {
        Secret {
            type_: Some(type_.to_owned()),
            data: Some(
                keys.iter()
                    .map(|k| ((*k).to_owned(), ByteString(b"x".to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn kept(mut s: Secret) -> Vec<String> {
        strip_secret(&mut s);
        s.data.unwrap().into_keys().collect()
    }

    #[test]
    fn secrets_keep_only_what_the_translation_reads() {
        let all = [
            "tls.crt", "tls.key", "ca.crt", "tls.ca", "users", "username", "password", "token",
        ];
        assert_eq!(
            kept(secret("Opaque", &all)),
            ["ca.crt", "tls.ca", "tls.crt", "tls.key", "users"]
        );
        // A basicAuth user Secret keeps its user name and password, and only that type does.
        assert_eq!(
            kept(secret("kubernetes.io/basic-auth", &all)),
            [
                "ca.crt", "password", "tls.ca", "tls.crt", "tls.key", "username", "users"
            ]
        );
    }
}
