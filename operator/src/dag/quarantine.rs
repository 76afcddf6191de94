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
//! A quarantine ends when something its last build read changes (the object itself, a Secret,
//! a delegated IngressRoute, a Traefik Middleware, TLSOption or ServersTransport, in whatever
//! namespace), and it is tried again: a still rejected configuration is quarantined again by the
//! next rejection. Services and their endpoints do not end it (they are not in a listener's
//! filter chains, and pods come and go all the time), nor do statuses, nor anything the object
//! did not read, so no one else's change tries a spoiled object again. Pure: the callers decide
//! what to quarantine, from rejections.

use std::collections::{BTreeMap, HashSet};

use super::deps::Dep;
use super::owner::{Owner, TRAEFIK_KIND, TRAEFIK_TCP_KIND};
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

/// The quarantined objects of one instance, by dialect and key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quarantine {
    contour: BTreeMap<ObjKey, Entry>,
    traefik: BTreeMap<ObjKey, Entry>,
    traefik_tcp: BTreeMap<ObjKey, Entry>,
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
        self.contour.is_empty() && self.traefik.is_empty() && self.traefik_tcp.is_empty()
    }

    pub fn len(&self) -> usize {
        self.contour.len() + self.traefik.len() + self.traefik_tcp.len()
    }

    /// How many objects of `namespace` are quarantined.
    pub fn count_in(&self, namespace: &str) -> usize {
        [&self.contour, &self.traefik, &self.traefik_tcp]
            .into_iter()
            .map(|m| m.keys().filter(|k| &*k.namespace == namespace).count())
            .sum()
    }

    /// The description of the Contour IngressRoute `key`, when quarantined.
    pub fn contour(&self, key: &ObjKey) -> Option<&str> {
        self.contour.get(key).map(|e| e.description.as_str())
    }

    /// The description of the Traefik IngressRoute `key`, when quarantined.
    pub fn traefik(&self, key: &ObjKey) -> Option<&str> {
        self.traefik.get(key).map(|e| e.description.as_str())
    }

    /// The description of the Traefik IngressRouteTCP `key`, when quarantined.
    pub fn traefik_tcp(&self, key: &ObjKey) -> Option<&str> {
        self.traefik_tcp.get(key).map(|e| e.description.as_str())
    }

    fn map_of(&mut self, owner: &Owner<'_>) -> &mut BTreeMap<ObjKey, Entry> {
        match owner {
            Owner::Contour { .. } => &mut self.contour,
            Owner::Traefik { kind, .. } if *kind == TRAEFIK_TCP_KIND => &mut self.traefik_tcp,
            Owner::Traefik { .. } => &mut self.traefik,
        }
    }

    /// Whether the object the DAG owner name `owner` names is quarantined.
    pub fn holds(&self, owner: &str) -> bool {
        Owner::parse(owner).is_some_and(|o| {
            let key = ObjKey::new(o.namespace(), o.name());
            match o {
                Owner::Contour { .. } => self.contour.contains_key(&key),
                Owner::Traefik { kind, .. } if kind == TRAEFIK_TCP_KIND => {
                    self.traefik_tcp.contains_key(&key)
                }
                Owner::Traefik { .. } => self.traefik.contains_key(&key),
            }
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
        let key = ObjKey::new(parsed.namespace(), parsed.name());
        let map = self.map_of(&parsed);
        if map.contains_key(&key) {
            return false;
        }
        let reads = reads.into_boxed_slice();
        map.insert(key.clone(), Entry { description, reads });
        for kind in kinds_of(&parsed) {
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
        let dialects: [(&mut BTreeMap<ObjKey, Entry>, &[Kind]); 3] = [
            (&mut self.contour, &[Kind::IngressRoute]),
            (&mut self.traefik, &TRAEFIK_ROUTE_KINDS),
            (&mut self.traefik_tcp, &TRAEFIK_TCP_KINDS),
        ];
        for (map, kinds) in dialects {
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
