//! Objects whose configuration an Envoy of the instance rejected (NACKed), built as `invalid`
//! until something their last build read changes.
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
//! A quarantine ends when something its last build read changes (the object itself, a Secret,
//! a delegated IngressRoute, a Traefik Middleware, TLSOption or ServersTransport, in whatever
//! namespace), and it is tried again: a still rejected configuration is quarantined again by the
//! next rejection. Services and their endpoints do not end it (they are not in a listener's
//! filter chains, and pods come and go all the time), nor do statuses, nor anything the object
//! did not read, so no one else's change tries a spoiled object again. Pure: the callers decide
//! what to quarantine, from rejections.

use std::collections::{BTreeMap, HashSet};

use super::deps::Dep;
use super::owner::{Owner, TRAEFIK_TCP_KIND};
use crate::api::traefik::Group;
use crate::snapshot::{ChangeSet, Kind, ObjKey, TraefikKind};

/// Longest part of Envoy's error message copied into a status.
const MAX_ERROR_IN_STATUS: usize = 300;

/// At most this many objects of one namespace are quarantined per instance; a rejection that
/// would quarantine more (a tenant's hundreds of objects changed at once) quarantines none of
/// them (the caller's rule: a part of them would leave the resource rejected all the same).
pub const MAX_QUARANTINED: usize = 256;

/// One quarantined object: its status description, and what its last build read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    description: String,
    reads: Box<[Dep]>,
}

/// The quarantined objects of one instance, by dialect (see [`DIALECTS`]) and key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quarantine {
    maps: [BTreeMap<ObjKey, Entry>; 3],
}

/// Contour IngressRoutes, Traefik IngressRoutes, IngressRouteTCPs: the index of each one's map,
/// and the change-set kinds its objects are listed under.
const CONTOUR: usize = 0;
const TRAEFIK: usize = 1;
const TRAEFIK_TCP: usize = 2;
const DIALECTS: [&[Kind]; 3] = [
    &[Kind::IngressRoute],
    &TRAEFIK_ROUTE_KINDS,
    &TRAEFIK_TCP_KINDS,
];

/// The dialect of the object an owner name names, and its key.
fn dialect(owner: &Owner<'_>) -> (usize, ObjKey) {
    let key = ObjKey::new(owner.namespace(), owner.name());
    match owner {
        Owner::Contour { .. } => (CONTOUR, key),
        Owner::Traefik { kind, .. } if *kind == TRAEFIK_TCP_KIND => (TRAEFIK_TCP, key),
        Owner::Traefik { .. } => (TRAEFIK, key),
    }
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
         configuration until it, or a Secret or other object it reads, changes: {error}"
    )
}

impl Quarantine {
    pub fn is_empty(&self) -> bool {
        self.maps.iter().all(BTreeMap::is_empty)
    }

    pub fn len(&self) -> usize {
        self.maps.iter().map(BTreeMap::len).sum()
    }

    /// How many objects of `namespace` are quarantined.
    pub fn count_in(&self, namespace: &str) -> usize {
        (self.maps.iter())
            .map(|m| m.keys().filter(|k| &*k.namespace == namespace).count())
            .sum()
    }

    fn description_of(&self, dialect: usize, key: &ObjKey) -> Option<&str> {
        self.maps[dialect].get(key).map(|e| e.description.as_str())
    }

    /// The description of the Contour IngressRoute `key`, when quarantined.
    pub fn contour(&self, key: &ObjKey) -> Option<&str> {
        self.description_of(CONTOUR, key)
    }

    /// The description of the Traefik IngressRoute `key`, when quarantined.
    pub fn traefik(&self, key: &ObjKey) -> Option<&str> {
        self.description_of(TRAEFIK, key)
    }

    /// The description of the Traefik IngressRouteTCP `key`, when quarantined.
    pub fn traefik_tcp(&self, key: &ObjKey) -> Option<&str> {
        self.description_of(TRAEFIK_TCP, key)
    }

    /// Whether the object the DAG owner name `owner` names is quarantined.
    pub fn holds(&self, owner: &str) -> bool {
        Owner::parse(owner).is_some_and(|o| {
            let (dialect, key) = dialect(&o);
            self.maps[dialect].contains_key(&key)
        })
    }

    /// Quarantines the object named by the DAG owner name `owner` with `description`, until
    /// one of `reads` (what its last build read) changes; lists it in `changes`. Returns
    /// whether it did: `false` for an owner name that names no object, or one quarantined
    /// already (which keeps its description: Envoys that word the same rejection otherwise do
    /// not make it flip).
    pub fn insert(
        &mut self,
        owner: &str,
        description: String,
        reads: Vec<Dep>,
        changes: &mut ChangeSet,
    ) -> bool {
        let Some(parsed) = Owner::parse(owner) else {
            return false;
        };
        let (dialect, key) = dialect(&parsed);
        let map = &mut self.maps[dialect];
        if map.contains_key(&key) {
            return false;
        }
        let reads = reads.into_boxed_slice();
        map.insert(key.clone(), Entry { description, reads });
        for kind in DIALECTS[dialect] {
            changes.insert(*kind, key.clone());
        }
        true
    }

    /// Ends the quarantine of every object whose reads `touched` holds (what a change set
    /// touched), and lists those objects in `lifted`.
    pub fn lift(&mut self, touched: &HashSet<Dep>, lifted: &mut ChangeSet) {
        if self.is_empty() || touched.is_empty() {
            return;
        }
        for (map, kinds) in self.maps.iter_mut().zip(DIALECTS) {
            map.retain(|key, entry| {
                if !entry.reads.iter().any(|d| touched.contains(d)) {
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
