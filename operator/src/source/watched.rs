//! The snapshot of `sluice run`, kept up to date from the watch events (pure: the watches
//! themselves are in [`kube`](super::kube)). Each event applies its one object to a
//! [`LiveSnapshot`] and its indexes, which lists it in the change set at the same time: O(log n)
//! per event, whatever the cluster's size. A relist (a watch's first list, or a new one after
//! its resourceVersion expired, `410 Gone`) is buffered and, once complete, compared with what
//! the snapshot holds for that watch's kind and namespace only: objects not listed again are
//! removed, objects listed equal change nothing.
//!
//! Also kept per event: the Gateways that do not decode (the snapshot's `unloaded_gateways`),
//! and the namespaces whose Secrets the instances may need ([`WatchedSnapshot::secret_scope`]),
//! so that neither is recomputed from every object on each change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::kube::SecretScope;
use super::secret_reach;
use crate::api::IngressRoute;
use crate::snapshot::{
    ChangeSet, ClusterSnapshot, Kind, LiveSnapshot, ObjKey, SharedObject, UndecodableRoute,
};

/// One watch: the kind it lists (an IngressRoute watch also yields undecodable routes), its
/// namespace (`None`: every namespace), and a serial telling a restarted watch from the one
/// it replaces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub serial: u64,
}

impl WatchId {
    pub fn new(kind: Kind, namespace: Option<String>, serial: u64) -> Self {
        Self {
            kind,
            namespace,
            serial,
        }
    }
}

/// One object as a watch delivers it.
#[derive(Clone, Debug)]
pub enum Watched {
    Object(SharedObject),
    /// A Gateway that does not decode, with the decoder's message: never the open default
    /// instance in its place.
    UnloadedGateway(ObjKey, String),
    UndecodableRoute(ObjKey, Box<UndecodableRoute>),
    /// An object that counts as absent (a TLSCertificateDelegation that does not decode
    /// delegates nothing).
    Absent(ObjKey),
}

impl Watched {
    pub fn key(&self) -> ObjKey {
        match self {
            Watched::Object(o) => o.key(),
            Watched::UnloadedGateway(k, _)
            | Watched::UndecodableRoute(k, _)
            | Watched::Absent(k) => k.clone(),
        }
    }
}

/// A watch event, as `kube::runtime::watcher` yields them.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    Apply(Watched),
    Delete(ObjKey),
    /// A relist starts: the objects follow as [`WatchEvent::InitApply`].
    Init,
    InitApply(Watched),
    /// The relist is complete: what it did not list is gone.
    InitDone,
}

#[derive(Debug, Default)]
struct WatchState {
    /// Whether a list completed.
    listed: bool,
    /// The relist in progress, by key.
    relist: Option<BTreeMap<ObjKey, Watched>>,
}

/// The snapshot the watches fill. See the module documentation.
#[derive(Debug, Default)]
pub struct WatchedSnapshot {
    live: LiveSnapshot,
    /// The Gateways that do not decode, with the decoder's message.
    unloaded: BTreeMap<ObjKey, String>,
    /// The running watches; events of any other are ignored.
    watches: BTreeMap<WatchId, WatchState>,
    /// Namespaces holding TLSCertificateDelegations or IngressRoutes that ask for upstream
    /// validation, with how many: Secrets are read there.
    secret_namespaces: BTreeMap<String, usize>,
    /// Namespaces holding Traefik Middlewares or ServersTransports that read Secrets, with how
    /// many: Secrets are read there while a Gateway allows cross-namespace references
    /// ([`super::secret_reach`]).
    reached_namespaces: BTreeMap<String, usize>,
}

impl WatchedSnapshot {
    /// A watch starts: its events count from now on.
    pub fn add_watch(&mut self, id: WatchId) {
        self.watches.entry(id).or_default();
    }

    /// A watch stops: its later events are ignored. Its objects stay (another watch may list
    /// them again; see [`Self::remove_secrets_outside`]).
    pub fn stop_watch(&mut self, id: &WatchId) {
        self.watches.remove(id);
    }

    /// Every object of `kind` leaves the snapshot (its resource is no longer served; its watches
    /// were stopped).
    pub fn forget_kind(&mut self, kind: Kind) {
        for key in self.held(kind, None) {
            self.delete(kind, &key);
        }
    }

    /// Whether every running watch (of `kind`, when given) has completed a list.
    pub fn all_listed(&self, kind: Option<Kind>) -> bool {
        self.watches
            .iter()
            .filter(|(id, _)| kind.is_none_or(|k| id.kind == k))
            .all(|(_, w)| w.listed)
    }

    pub fn snapshot(&self) -> &ClusterSnapshot {
        self.live.snapshot()
    }

    /// The current snapshot (O(1)) and what changed since the last call.
    pub fn take(&mut self) -> (Arc<ClusterSnapshot>, ChangeSet) {
        self.live.take()
    }

    /// How many objects changed (more than their status) since the last [`Self::take`].
    pub fn objects_changed(&self) -> usize {
        self.live.changes().object_count()
    }

    /// Applies one event of watch `id` (ignored if that watch is not running).
    pub fn apply(&mut self, id: &WatchId, event: WatchEvent) {
        let Some(watch) = self.watches.get_mut(id) else {
            return;
        };
        match event {
            WatchEvent::Apply(obj) => match &mut watch.relist {
                // Not sent by the watcher during a list; kept in order if it were.
                Some(listed) => {
                    listed.insert(obj.key(), obj);
                }
                None => self.put(id.kind, obj),
            },
            WatchEvent::Delete(key) => match &mut watch.relist {
                Some(listed) => {
                    listed.remove(&key);
                }
                None => self.delete(id.kind, &key),
            },
            WatchEvent::Init => watch.relist = Some(BTreeMap::new()),
            WatchEvent::InitApply(obj) => {
                watch.relist.get_or_insert_default().insert(obj.key(), obj);
            }
            WatchEvent::InitDone => {
                // The end of a relist that never started says nothing about what is gone:
                // taking it as an empty list would delete every object the watch holds.
                let Some(listed) = watch.relist.take() else {
                    tracing::warn!(kind = ?id.kind, namespace = ?id.namespace, "watch: end of a relist that did not start; ignored");
                    return;
                };
                watch.listed = true;
                for key in self.held(id.kind, id.namespace.as_deref()) {
                    if !listed.contains_key(&key) {
                        self.delete(id.kind, &key);
                    }
                }
                for obj in listed.into_values() {
                    self.put(id.kind, obj);
                }
            }
        }
    }

    /// Removes the Secrets outside `scope` (their watches stopped). O(Secrets); only when the
    /// scope changes.
    pub fn remove_secrets_outside(&mut self, scope: &SecretScope) {
        let SecretScope::Namespaces(keep) = scope else {
            return;
        };
        for key in self.live.keys_in(Kind::Secret, None) {
            if !keep.contains(&*key.namespace) {
                self.delete(Kind::Secret, &key);
            }
        }
    }

    /// Where Secrets may be needed: everywhere if a Gateway accepts roots in every namespace,
    /// else its root namespaces, and those of TLSCertificateDelegations and of IngressRoutes
    /// that ask for upstream validation, and (while a Gateway allows cross-namespace references)
    /// those of Traefik objects that read Secrets ([`secret_reach`]). O(Gateways + such
    /// namespaces); equal to [`secret_scope`](super::kube::secret_scope) then
    /// [`secret_reach::reached_scope`] over every object.
    pub fn secret_scope(&self) -> SecretScope {
        let mut namespaces = BTreeSet::new();
        let mut cross = false;
        for gw in self.snapshot().gateways.values() {
            if gw.spec.root_namespaces.is_empty() {
                return SecretScope::All;
            }
            namespaces.extend(gw.spec.root_namespaces.iter().cloned());
            cross |= secret_reach::allows_cross_namespace(gw);
        }
        namespaces.extend(self.secret_namespaces.keys().cloned());
        if cross {
            namespaces.extend(self.reached_namespaces.keys().cloned());
        }
        SecretScope::Namespaces(namespaces)
    }

    /// The keys a watch of `kind` in `namespace` may hold.
    fn held(&self, kind: Kind, namespace: Option<&str>) -> Vec<ObjKey> {
        let mut keys = self.live.keys_in(kind, namespace);
        match kind {
            Kind::Gateway => keys.extend(
                self.unloaded
                    .keys()
                    .filter(|k| namespace.is_none_or(|ns| *k.namespace == *ns))
                    .cloned(),
            ),
            Kind::IngressRoute => {
                keys.extend(self.live.keys_in(Kind::UndecodableRoute, namespace));
            }
            _ => {}
        }
        keys
    }

    /// Adds or replaces what a watch of `kind` holds under the object's key.
    fn put(&mut self, kind: Kind, obj: Watched) {
        let key = obj.key();
        self.count_secret_namespace(kind, &key, false);
        match obj {
            Watched::Object(o) => {
                match kind {
                    Kind::Gateway => self.set_unloaded(&key, None),
                    Kind::IngressRoute => {
                        self.live.remove(Kind::UndecodableRoute, &key);
                    }
                    _ => {}
                }
                self.live.upsert(o);
            }
            Watched::UnloadedGateway(key, error) => {
                self.live.remove(Kind::Gateway, &key);
                self.set_unloaded(&key, Some(error));
            }
            Watched::UndecodableRoute(key, route) => {
                self.live.remove(Kind::IngressRoute, &key);
                self.live.upsert_undecodable_route(key, *route);
            }
            Watched::Absent(key) => {
                self.live.remove(kind, &key);
            }
        }
        self.count_secret_namespace(kind, &key, true);
    }

    /// Removes what a watch of `kind` holds under `key`.
    fn delete(&mut self, kind: Kind, key: &ObjKey) {
        self.count_secret_namespace(kind, key, false);
        self.live.remove(kind, key);
        match kind {
            Kind::Gateway => self.set_unloaded(key, None),
            Kind::IngressRoute => {
                self.live.remove(Kind::UndecodableRoute, key);
            }
            _ => {}
        }
    }

    /// Counts (or uncounts) the namespace of the object held under `key` if it needs Secrets
    /// there.
    fn count_secret_namespace(&mut self, kind: Kind, key: &ObjKey, add: bool) {
        let snap = self.live.snapshot();
        let counts = match kind {
            Kind::Delegation if snap.delegations.contains_key(key) => &mut self.secret_namespaces,
            Kind::IngressRoute if snap.ingress_routes.get(key).is_some_and(|r| validates(r)) => {
                &mut self.secret_namespaces
            }
            Kind::Traefik(..) if secret_reach::names_secret(snap, kind, key) => {
                &mut self.reached_namespaces
            }
            _ => return,
        };
        if add {
            *counts.entry(key.namespace.to_string()).or_default() += 1;
        } else if let Some(n) = counts.get_mut(&*key.namespace) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&*key.namespace);
            }
        }
    }

    fn set_unloaded(&mut self, key: &ObjKey, error: Option<String>) {
        let changed = match error {
            Some(e) => self.unloaded.insert(key.clone(), e.clone()) != Some(e),
            None => self.unloaded.remove(key).is_some(),
        };
        if changed {
            let mut listed: Vec<String> = self
                .unloaded
                .iter()
                .map(|(k, e)| format!("Gateway {k}: {e}"))
                .collect();
            listed.sort();
            self.live.set_unloaded_gateways(listed);
        }
    }
}

/// Whether an IngressRoute asks for upstream validation (its CA Secret lives beside it).
pub fn validates(ir: &IngressRoute) -> bool {
    ir.spec
        .routes
        .iter()
        .flat_map(|r| &r.services)
        .any(|s| s.validation.is_some())
}

#[cfg(test)]
#[path = "watched_tests.rs"]
mod tests;
