//! What changed between two snapshots: the objects, by kind and key, that were added, changed or
//! removed. Produced with the snapshot itself, by the step that applies each change to it
//! ([`LiveSnapshot`](super::LiveSnapshot): a watch event, a manifest file's delta), and read by
//! the incremental DAG, which rebuilds only what these objects touch.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{ClusterSnapshot, ObjKey, PMap, TraefikKind, status_only};
use crate::api::traefik::Group;

/// The kinds a snapshot holds: the one vocabulary of the sources (watches, manifest files), the
/// change sets and the DAG's dependencies. A new kind is added here, to [`Kind::ALL`], and to
/// the snapshot's maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Gateway,
    IngressRoute,
    Delegation,
    Service,
    Endpoints,
    EndpointSlice,
    Secret,
    /// An IngressRoute stored but not decodable ([`ClusterSnapshot::undecodable_routes`]).
    UndecodableRoute,
    /// A Traefik object of one API group.
    Traefik(TraefikKind, Group),
}

impl Kind {
    pub const ALL: [Kind; 22] = [
        Kind::Gateway,
        Kind::IngressRoute,
        Kind::Delegation,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::UndecodableRoute,
        Kind::Traefik(TraefikKind::IngressRoute, Group::TraefikIo),
        Kind::Traefik(TraefikKind::IngressRoute, Group::ContainoUs),
        Kind::Traefik(TraefikKind::Middleware, Group::TraefikIo),
        Kind::Traefik(TraefikKind::Middleware, Group::ContainoUs),
        Kind::Traefik(TraefikKind::IngressRouteTcp, Group::TraefikIo),
        Kind::Traefik(TraefikKind::IngressRouteTcp, Group::ContainoUs),
        Kind::Traefik(TraefikKind::TlsOption, Group::TraefikIo),
        Kind::Traefik(TraefikKind::TlsOption, Group::ContainoUs),
        Kind::Traefik(TraefikKind::TlsStore, Group::TraefikIo),
        Kind::Traefik(TraefikKind::TlsStore, Group::ContainoUs),
        Kind::Traefik(TraefikKind::TraefikService, Group::TraefikIo),
        Kind::Traefik(TraefikKind::TraefikService, Group::ContainoUs),
        Kind::Traefik(TraefikKind::ServersTransport, Group::TraefikIo),
        Kind::Traefik(TraefikKind::ServersTransport, Group::ContainoUs),
    ];

    /// The Kubernetes kind (an undecodable IngressRoute is an IngressRoute).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateway",
            Kind::IngressRoute | Kind::UndecodableRoute => "IngressRoute",
            Kind::Delegation => "TLSCertificateDelegation",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::Traefik(kind, _) => kind.as_str(),
        }
    }
}

/// Objects added, changed or removed since the previous snapshot, by kind and key. A change set
/// may say more than what changed (a listed object may be equal to its previous version), never
/// less; [`ChangeSet::everything`] says "compare it all".
///
/// IngressRoutes whose stored status alone changed (with their `resourceVersion`: every status
/// the leader writes comes back so) are kept apart ([`ChangeSet::statuses`], see
/// `status_only`): the DAG reads nothing of that, the status round does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    objects: BTreeSet<(Kind, ObjKey)>,
    /// Objects (IngressRoutes, decodable or not) whose change the DAG cannot see: their status.
    /// Never listed in `objects` too.
    statuses: BTreeSet<(Kind, ObjKey)>,
    /// Kinds whose every object may have changed (a relist, a restarted watch).
    whole_kinds: BTreeSet<Kind>,
    /// The Gateways that did not load changed (they decide whether the default instance runs).
    unloaded_gateways: bool,
}

impl ChangeSet {
    /// Nothing known: every object may have changed.
    pub fn everything() -> Self {
        Self {
            whole_kinds: Kind::ALL.into_iter().collect(),
            unloaded_gateways: true,
            ..Self::default()
        }
    }

    pub fn insert(&mut self, kind: Kind, key: ObjKey) {
        if !self.whole_kinds.contains(&kind) {
            let key = (kind, key);
            self.statuses.remove(&key);
            self.objects.insert(key);
        }
    }

    /// The object changed in nothing the DAG reads (its status, see `status_only`): listed for
    /// the status round only, unless it is listed as changed already.
    pub fn insert_status(&mut self, kind: Kind, key: ObjKey) {
        let key = (kind, key);
        if !self.objects.contains(&key) {
            self.statuses.insert(key);
        }
    }

    /// Every object of `kind` may have changed.
    pub fn insert_kind(&mut self, kind: Kind) {
        self.objects.retain(|(k, _)| *k != kind);
        self.statuses.retain(|(k, _)| *k != kind);
        self.whole_kinds.insert(kind);
    }

    /// Adds everything `other` lists.
    pub fn extend(&mut self, other: &ChangeSet) {
        for kind in &other.whole_kinds {
            self.insert_kind(*kind);
        }
        for (kind, key) in &other.objects {
            self.insert(*kind, key.clone());
        }
        for (kind, key) in &other.statuses {
            if !self.whole_kinds.contains(kind) {
                self.insert_status(*kind, key.clone());
            }
        }
        self.unloaded_gateways |= other.unloaded_gateways;
    }

    /// Nothing changed, not even a status.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
            && self.statuses.is_empty()
            && self.whole_kinds.is_empty()
            && !self.unloaded_gateways
    }

    /// How many objects are listed one by one (not their statuses alone, not whole kinds).
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// The objects whose status alone changed (the DAG has nothing to do for them; the status
    /// round compares them with its verdicts).
    pub fn statuses(&self) -> impl Iterator<Item = (Kind, &ObjKey)> {
        self.statuses.iter().map(|(k, key)| (*k, key))
    }

    /// True when some kind is listed as a whole: the consumer compares the snapshots itself
    /// ([`ChangeSet::resolve`]).
    pub fn has_whole_kinds(&self) -> bool {
        !self.whole_kinds.is_empty()
    }

    /// The objects listed one by one.
    pub fn objects(&self) -> impl Iterator<Item = (Kind, &ObjKey)> {
        self.objects.iter().map(|(k, key)| (*k, key))
    }

    /// Whether any object of `kind` is listed, or the kind as a whole (status-only changes
    /// do not count: see [`Self::touches_statuses_of`]).
    pub fn touches_kind(&self, kind: Kind) -> bool {
        self.whole_kinds.contains(&kind) || self.objects.iter().any(|(k, _)| *k == kind)
    }

    /// Whether any object of `kind` is listed, its status alone or more, or the kind as a whole:
    /// what the status round must look at again.
    pub fn touches_statuses_of(&self, kind: Kind) -> bool {
        self.touches_kind(kind) || self.statuses.iter().any(|(k, _)| *k == kind)
    }

    pub fn unloaded_gateways_changed(&self) -> bool {
        self.unloaded_gateways
    }

    /// The Gateways that did not load changed.
    pub fn insert_unloaded_gateways(&mut self) {
        self.unloaded_gateways = true;
    }

    /// Whether the object is listed, by itself or with its whole kind.
    pub fn lists(&self, kind: Kind, key: &ObjKey) -> bool {
        self.whole_kinds.contains(&kind) || self.objects.contains(&(kind, key.clone()))
    }

    /// The same changes with every whole kind replaced by the objects of that kind that differ
    /// between `old` and `new` ([`ChangeSet::diff`] restricted to those kinds).
    pub fn resolve(&self, old: &ClusterSnapshot, new: &ClusterSnapshot) -> ChangeSet {
        let mut out = ChangeSet {
            objects: self.objects.clone(),
            statuses: self.statuses.clone(),
            whole_kinds: BTreeSet::new(),
            unloaded_gateways: (self.unloaded_gateways || self.touches_kind(Kind::Gateway))
                && old.unloaded_gateways != new.unloaded_gateways,
        };
        for kind in &self.whole_kinds {
            diff_kind(*kind, old, new, &mut out);
        }
        let objects = &out.objects;
        out.statuses.retain(|k| !objects.contains(k));
        out
    }

    /// The objects that differ between two snapshots: the same `Arc` is equal without a look;
    /// otherwise the values are compared.
    pub fn diff(old: &ClusterSnapshot, new: &ClusterSnapshot) -> ChangeSet {
        Self::everything().resolve(old, new)
    }
}

fn diff_kind(kind: Kind, old: &ClusterSnapshot, new: &ClusterSnapshot, changes: &mut ChangeSet) {
    let out = &mut changes.objects;
    match kind {
        Kind::Gateway => diff_maps(kind, &old.gateways, &new.gateways, out),
        Kind::IngressRoute => {
            let (a, b) = (&old.ingress_routes, &new.ingress_routes);
            if a.ptr_eq(b) {
                return;
            }
            for (key, v) in a {
                match b.get(key) {
                    Some(n) if Arc::ptr_eq(v, n) || **v == **n => {}
                    Some(n) if status_only::same_for_dag(v, n) => {
                        changes.statuses.insert((kind, key.clone()));
                    }
                    _ => {
                        out.insert((kind, key.clone()));
                    }
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.insert((kind, key.clone()));
            }
        }
        Kind::Delegation => diff_maps(kind, &old.delegations, &new.delegations, out),
        Kind::Service => diff_maps(kind, &old.services, &new.services, out),
        Kind::Endpoints => diff_maps(kind, &old.endpoints, &new.endpoints, out),
        Kind::EndpointSlice => diff_maps(kind, &old.endpoint_slices, &new.endpoint_slices, out),
        Kind::Secret => diff_maps(kind, &old.secrets, &new.secrets, out),
        Kind::Traefik(TraefikKind::IngressRoute, g) => diff_maps(
            kind,
            old.traefik_routes.group(g),
            new.traefik_routes.group(g),
            out,
        ),
        Kind::Traefik(TraefikKind::Middleware, g) => diff_maps(
            kind,
            old.traefik_middlewares.group(g),
            new.traefik_middlewares.group(g),
            out,
        ),
        Kind::Traefik(TraefikKind::IngressRouteTcp, g) => diff_maps(
            kind,
            old.traefik_tcp_routes.group(g),
            new.traefik_tcp_routes.group(g),
            out,
        ),
        Kind::Traefik(TraefikKind::TlsOption, g) => diff_maps(
            kind,
            old.traefik_tls_options.group(g),
            new.traefik_tls_options.group(g),
            out,
        ),
        Kind::Traefik(TraefikKind::TlsStore, g) => diff_maps(
            kind,
            old.traefik_tls_stores.group(g),
            new.traefik_tls_stores.group(g),
            out,
        ),
        Kind::Traefik(TraefikKind::TraefikService, g) => diff_maps(
            kind,
            old.traefik_services.group(g),
            new.traefik_services.group(g),
            out,
        ),
        Kind::Traefik(TraefikKind::ServersTransport, g) => diff_maps(
            kind,
            old.traefik_transports.group(g),
            new.traefik_transports.group(g),
            out,
        ),
        Kind::UndecodableRoute => {
            let (a, b) = (&old.undecodable_routes, &new.undecodable_routes);
            if a.ptr_eq(b) {
                return;
            }
            for (key, v) in a {
                match b.get(key) {
                    Some(n) if n == v => {}
                    Some(n) if status_only::same_undecodable_for_dag(v, n) => {
                        changes.statuses.insert((kind, key.clone()));
                    }
                    _ => {
                        out.insert((kind, key.clone()));
                    }
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.insert((kind, key.clone()));
            }
        }
    }
}

/// Same tree: nothing to compare. Otherwise the same `Arc` is equal without a look.
fn diff_maps<V: PartialEq>(
    kind: Kind,
    old: &PMap<ObjKey, Arc<V>>,
    new: &PMap<ObjKey, Arc<V>>,
    out: &mut BTreeSet<(Kind, ObjKey)>,
) {
    if old.ptr_eq(new) {
        return;
    }
    for (key, v) in old {
        match new.get(key) {
            Some(n) if Arc::ptr_eq(v, n) || **v == **n => {}
            _ => {
                out.insert((kind, key.clone()));
            }
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        out.insert((kind, key.clone()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::Object;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::ObjectMeta;

    fn service(name: &str, port: i32) -> Object {
        Object::Service(Service {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
                ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
                    port,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Service::default()
        })
    }

    #[test]
    fn diff_lists_added_changed_and_removed_objects_only() {
        let mut old = ClusterSnapshot::default();
        for (name, port) in [("same", 1), ("edited", 2), ("gone", 3), ("equal-copy", 4)] {
            old.apply(service(name, port));
        }
        let mut new = old.clone();
        new.apply(service("edited", 20));
        new.remove(Kind::Service, &ObjKey::new("ns", "gone"));
        new.apply(service("added", 5));
        // A new allocation with the same value is no change.
        new.apply(service("equal-copy", 4));
        let changes = ChangeSet::diff(&old, &new);
        let listed: Vec<String> = changes.objects().map(|(_, k)| k.name.to_string()).collect();
        assert_eq!(listed, ["added", "edited", "gone"]);
        assert!(ChangeSet::diff(&new, &new).is_empty());
    }
}
