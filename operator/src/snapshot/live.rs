//! One snapshot kept up to date object by object, with the change set of what it changed: what
//! the sources write to (watch events in `sluice run`, the manifest loader's deltas in
//! `sluice standalone`). Work per object is O(log n) in the snapshot's size: the maps are
//! persistent, so handing out the current snapshot ([`LiveSnapshot::take`]) copies pointers,
//! and the snapshots handed out before are never touched.

use std::sync::Arc;

use super::{
    ChangeSet, ClusterSnapshot, Kind, ObjKey, ObjMap, PMap, SharedObject, TraefikKind,
    TraefikObjects, UndecodableRoute, status_only, traefik_key,
};
use crate::api::traefik::Decoded;

/// A snapshot and the changes made to it since the last [`Self::take`]. See the module
/// documentation.
#[derive(Clone, Debug, Default)]
pub struct LiveSnapshot {
    snap: ClusterSnapshot,
    changes: ChangeSet,
}

impl LiveSnapshot {
    /// Goes on from `snap`, which is all changed (as far as the next [`Self::take`] tells).
    pub fn from_snapshot(snap: ClusterSnapshot) -> Self {
        Self {
            snap,
            changes: ChangeSet::everything(),
        }
    }

    /// The current state.
    pub fn snapshot(&self) -> &ClusterSnapshot {
        &self.snap
    }

    /// The changes since the last [`Self::take`].
    pub fn changes(&self) -> &ChangeSet {
        &self.changes
    }

    /// The current snapshot (shared: O(1)) and the changes that led to it from the previous
    /// one taken, which are then forgotten.
    pub fn take(&mut self) -> (Arc<ClusterSnapshot>, ChangeSet) {
        (
            Arc::new(self.snap.clone()),
            std::mem::take(&mut self.changes),
        )
    }

    /// Adds or replaces an object; returns whether anything changed. An object equal to the one
    /// held changes nothing, and the held `Arc` stays (still shared with older snapshots).
    pub fn upsert(&mut self, obj: SharedObject) -> bool {
        let key = obj.key();
        let held = match &obj {
            SharedObject::Gateway(o) => holds(&self.snap.gateways, &key, o),
            SharedObject::IngressRoute(o) => holds(&self.snap.ingress_routes, &key, o),
            SharedObject::Delegation(o) => holds(&self.snap.delegations, &key, o),
            SharedObject::Service(o) => holds(&self.snap.services, &key, o),
            SharedObject::Endpoints(o) => holds(&self.snap.endpoints, &key, o),
            SharedObject::EndpointSlice(o) => holds(&self.snap.endpoint_slices, &key, o),
            SharedObject::Secret(o) => holds(&self.snap.secrets, &key, o),
            SharedObject::TraefikRoute(o) => holds_traefik(&self.snap.traefik_routes, o),
            SharedObject::TraefikMiddleware(o) => holds_traefik(&self.snap.traefik_middlewares, o),
            SharedObject::TraefikTcpRoute(o) => holds_traefik(&self.snap.traefik_tcp_routes, o),
            SharedObject::TraefikTlsOption(o) => holds_traefik(&self.snap.traefik_tls_options, o),
            SharedObject::TraefikTlsStore(o) => holds_traefik(&self.snap.traefik_tls_stores, o),
            SharedObject::TraefikService(o) => holds_traefik(&self.snap.traefik_services, o),
            SharedObject::TraefikTransport(o) => holds_traefik(&self.snap.traefik_transports, o),
        };
        if held {
            return false;
        }
        // A status written (by the leader, mostly) comes back with nothing else changed: the
        // snapshot takes it, the DAG is not told.
        let status_only = match &obj {
            SharedObject::IngressRoute(o) => self
                .snap
                .ingress_routes
                .get(&key)
                .is_some_and(|held| status_only::same_for_dag(held, o)),
            _ => false,
        };
        if status_only {
            self.changes.insert_status(obj.kind(), key);
        } else {
            self.changes.insert(obj.kind(), key);
        }
        self.snap.apply_shared(obj);
        true
    }

    /// Removes an object; returns whether there was one.
    pub fn remove(&mut self, kind: Kind, key: &ObjKey) -> bool {
        let removed = self.snap.remove(kind, key);
        if removed {
            self.changes.insert(kind, key.clone());
        }
        removed
    }

    /// Adds or replaces an IngressRoute that does not decode; returns whether anything changed.
    pub fn upsert_undecodable_route(&mut self, key: ObjKey, route: UndecodableRoute) -> bool {
        let held = self.snap.undecodable_routes.get(&key);
        if held == Some(&route) {
            return false;
        }
        if held.is_some_and(|h| status_only::same_undecodable_for_dag(h, &route)) {
            self.changes
                .insert_status(Kind::UndecodableRoute, key.clone());
        } else {
            self.changes.insert(Kind::UndecodableRoute, key.clone());
        }
        self.snap.undecodable_routes.insert(key, route);
        true
    }

    /// Sets the documents that may be Gateways and did not load.
    pub fn set_unloaded_gateways(&mut self, unloaded: Vec<String>) {
        if self.snap.unloaded_gateways != unloaded {
            self.snap.unloaded_gateways = unloaded;
            self.changes.insert_unloaded_gateways();
        }
    }

    /// The keys of `kind` held in `namespace` (`None`: in every namespace), in order. O(k log n)
    /// for k keys.
    pub fn keys_in(&self, kind: Kind, namespace: Option<&str>) -> Vec<ObjKey> {
        let s = &self.snap;
        match kind {
            Kind::Gateway => keys_in(&s.gateways, namespace),
            Kind::IngressRoute => keys_in(&s.ingress_routes, namespace),
            Kind::Delegation => keys_in(&s.delegations, namespace),
            Kind::Service => keys_in(&s.services, namespace),
            Kind::Endpoints => keys_in(&s.endpoints, namespace),
            Kind::EndpointSlice => keys_in(&s.endpoint_slices, namespace),
            Kind::Secret => keys_in(&s.secrets, namespace),
            Kind::UndecodableRoute => keys_in(&s.undecodable_routes, namespace),
            Kind::Traefik(TraefikKind::IngressRoute, group) => {
                keys_in(s.traefik_routes.group(group), namespace)
            }
            Kind::Traefik(TraefikKind::Middleware, group) => {
                keys_in(s.traefik_middlewares.group(group), namespace)
            }
            Kind::Traefik(TraefikKind::IngressRouteTcp, group) => {
                keys_in(s.traefik_tcp_routes.group(group), namespace)
            }
            Kind::Traefik(TraefikKind::TlsOption, group) => {
                keys_in(s.traefik_tls_options.group(group), namespace)
            }
            Kind::Traefik(TraefikKind::TlsStore, group) => {
                keys_in(s.traefik_tls_stores.group(group), namespace)
            }
            Kind::Traefik(TraefikKind::TraefikService, group) => {
                keys_in(s.traefik_services.group(group), namespace)
            }
            Kind::Traefik(TraefikKind::ServersTransport, group) => {
                keys_in(s.traefik_transports.group(group), namespace)
            }
        }
    }
}

/// Whether `map` holds `obj` already (the same `Arc`, or an equal value).
fn holds<T: PartialEq>(map: &ObjMap<T>, key: &ObjKey, obj: &Arc<T>) -> bool {
    map.get(key)
        .is_some_and(|held| Arc::ptr_eq(held, obj) || **held == **obj)
}

/// Whether `objects` holds `obj` already in its group (the same `Arc`, or an equal value).
fn holds_traefik<T: PartialEq>(objects: &TraefikObjects<T>, obj: &Arc<Decoded<T>>) -> bool {
    objects
        .group(obj.group)
        .get(&traefik_key(obj))
        .is_some_and(|held| Arc::ptr_eq(held, obj) || **held == **obj)
}

fn keys_in<V>(map: &PMap<ObjKey, V>, namespace: Option<&str>) -> Vec<ObjKey> {
    match namespace {
        None => map.keys().cloned().collect(),
        Some(ns) => map
            .range(ObjKey::new(ns, "")..)
            .map(|(k, _)| k)
            .take_while(|k| *k.namespace == *ns)
            .cloned()
            .collect(),
    }
}
