//! Objects whose configuration an Envoy of the instance rejected (NACKed), built as `invalid`
//! until something of their namespace changes.
//!
//! Every value a tenant writes is checked before it reaches Envoy, but should a check miss one,
//! Envoy rejects the resource carrying it, and a resource every tenant shares (the HTTPS
//! listener with each TLS host's filter chain, say) would stay rejected, frozen at its last
//! accepted version for everyone, for as long as the object stays as it is. So the object the
//! rejection is blamed on (`crate::xds::attribution`) is *quarantined*: the builder treats it as
//! invalid with Envoy's reason, so it contributes nothing, the next configuration leaves its
//! parts out, and the shared resource is accepted again with everyone else's changes. A
//! quarantined root keeps the host names it claims, as any invalid root does: quarantine hands
//! nobody a name.
//!
//! A quarantine ends when any object of the object's namespace changes (the object itself, or a
//! Service, Secret or Middleware it may read: what Envoy refused may have come from any of them),
//! and it is tried again: a still rejected configuration is quarantined again by the next
//! rejection. Objects of other namespaces never end it, so nobody can make another team's object
//! cost a shared rejection. Pure: the callers decide what to quarantine, from rejections.

use std::collections::BTreeMap;

use super::owner::{Owner, TRAEFIK_KIND, TRAEFIK_TCP_KIND};
use crate::api::traefik::Group;
use crate::snapshot::{ChangeSet, Kind, ObjKey, TraefikKind};

/// Longest part of Envoy's error message copied into a status.
const MAX_ERROR_IN_STATUS: usize = 300;

/// At most this many objects are quarantined per instance; a rejection blamed on more (a
/// tenant's thousands of objects changed at once) quarantines none of them.
pub const MAX_QUARANTINED: usize = 256;

/// The quarantined objects of one instance, by dialect and key, with their status description.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quarantine {
    contour: BTreeMap<ObjKey, String>,
    traefik: BTreeMap<ObjKey, String>,
    traefik_tcp: BTreeMap<ObjKey, String>,
}

/// Envoy's `error` as a status quotes it: its first 300 characters, `…` when cut.
pub fn quoted_error(error: &str) -> String {
    let mut quoted: String = error.chars().take(MAX_ERROR_IN_STATUS).collect();
    if quoted.len() < error.len() {
        quoted.push('…');
    }
    quoted
}

/// The status description of an object quarantined for Envoy's `error`.
pub fn description(error: &str) -> String {
    let error = quoted_error(error);
    format!(
        "Envoy rejected the configuration made from this object; it is left out of the \
         configuration until an object of its namespace changes: {error}"
    )
}

impl Quarantine {
    pub fn is_empty(&self) -> bool {
        self.contour.is_empty() && self.traefik.is_empty() && self.traefik_tcp.is_empty()
    }

    pub fn len(&self) -> usize {
        self.contour.len() + self.traefik.len() + self.traefik_tcp.len()
    }

    /// The description of the Contour IngressRoute `key`, when quarantined.
    pub fn contour(&self, key: &ObjKey) -> Option<&str> {
        self.contour.get(key).map(String::as_str)
    }

    /// The description of the Traefik IngressRoute `key`, when quarantined.
    pub fn traefik(&self, key: &ObjKey) -> Option<&str> {
        self.traefik.get(key).map(String::as_str)
    }

    /// The description of the Traefik IngressRouteTCP `key`, when quarantined.
    pub fn traefik_tcp(&self, key: &ObjKey) -> Option<&str> {
        self.traefik_tcp.get(key).map(String::as_str)
    }

    fn map_of(&mut self, owner: &Owner<'_>) -> &mut BTreeMap<ObjKey, String> {
        match owner {
            Owner::Contour { .. } => &mut self.contour,
            Owner::Traefik { kind, .. } if *kind == TRAEFIK_TCP_KIND => &mut self.traefik_tcp,
            Owner::Traefik { .. } => &mut self.traefik,
        }
    }

    /// Quarantines the object named by the DAG owner name `owner` with `description`; lists
    /// it in `changes` when that changes how it is built. Returns whether it did; `false` for
    /// an owner name that names no object, or when full.
    pub fn insert(&mut self, owner: &str, description: String, changes: &mut ChangeSet) -> bool {
        let Some(parsed) = Owner::parse(owner) else {
            return false;
        };
        let key = ObjKey::new(parsed.namespace(), parsed.name());
        let full = self.len() >= MAX_QUARANTINED;
        let map = self.map_of(&parsed);
        if map.get(&key) == Some(&description) {
            return false;
        }
        if full && !map.contains_key(&key) {
            return false;
        }
        map.insert(key.clone(), description);
        for kind in kinds_of(&parsed) {
            changes.insert(*kind, key.clone());
        }
        true
    }

    /// Ends the quarantine of every object of a namespace in which `changes` changed an object
    /// (statuses alone do not count), and lists those objects in `lifted`.
    pub fn lift(&mut self, changes: &ChangeSet, lifted: &mut ChangeSet) {
        if self.is_empty() {
            return;
        }
        let mut namespaces = std::collections::BTreeSet::new();
        for (_, key) in changes.objects() {
            namespaces.insert(&*key.namespace);
        }
        if namespaces.is_empty() {
            return;
        }
        let dialects: [(&mut BTreeMap<ObjKey, String>, &[Kind]); 3] = [
            (&mut self.contour, &[Kind::IngressRoute]),
            (&mut self.traefik, &TRAEFIK_ROUTE_KINDS),
            (&mut self.traefik_tcp, &TRAEFIK_TCP_KINDS),
        ];
        for (map, kinds) in dialects {
            map.retain(|key, _| {
                if !namespaces.contains(&*key.namespace) {
                    return true;
                }
                for kind in kinds {
                    lifted.insert(*kind, key.clone());
                }
                false
            });
        }
    }
}

const TRAEFIK_ROUTE_KINDS: [Kind; 2] = [
    Kind::Traefik(TraefikKind::IngressRoute, Group::TraefikIo),
    Kind::Traefik(TraefikKind::IngressRoute, Group::ContainoUs),
];
const TRAEFIK_TCP_KINDS: [Kind; 2] = [
    Kind::Traefik(TraefikKind::IngressRouteTcp, Group::TraefikIo),
    Kind::Traefik(TraefikKind::IngressRouteTcp, Group::ContainoUs),
];

/// The change-set kinds under which the object an owner name names is listed.
fn kinds_of(owner: &Owner<'_>) -> &'static [Kind] {
    match owner {
        Owner::Contour { .. } => &[Kind::IngressRoute],
        Owner::Traefik { kind, .. } if *kind == TRAEFIK_TCP_KIND => &TRAEFIK_TCP_KINDS,
        Owner::Traefik { kind, .. } => {
            debug_assert_eq!(*kind, TRAEFIK_KIND);
            &TRAEFIK_ROUTE_KINDS
        }
    }
}
