//! Traefik IngressRoutes and IngressRouteTCPs in the incremental DAG.
//!
//! Why the result is the full build's. A Traefik root claims each of its hosts beside the
//! Contour roots (one claimant set per fqdn, the oldest owns it); it is served when it owns all
//! of them, refused naming the first host (in name order) it lost otherwise. Its build reads the
//! snapshot only (no walk memo, no status of another root: its verdict is its own object status),
//! so each Traefik root is built alone, with a builder of its own, and its parts (named by what
//! they contain) join the instance's union maps beside the Contour groups'. What its build read
//! is in an index of its own: Services, Endpoints, EndpointSlices and Secrets as for Contour, and
//! each Traefik object looked up by kind and key ([`Dep::Traefik`]), present or not (a
//! namespace's `default` TLSOption and TLSStore included). A root is built again when it
//! changed, when something it read changed, or when the host it lost first (or that it lost
//! none) changed with the claimants of one of its hosts, or with the owner of the wildcard
//! covering one of its hosts (see `open`). A root claiming the catch-all `*` or a wildcard is
//! built the same way: its virtual hosts are its own routes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::parts::{GroupSet, count_in, count_in_named, count_out, patch};
use super::{Dirty, IncrementalDag, PartNames};
use crate::dag::build::Builder;
use crate::dag::claim_ages::{ClaimId, Dialect};
use crate::dag::claims::{self, Claimant};
use crate::dag::deps::Dep;
use crate::dag::model::{Dag, ObjectStatus, Validity, msg};
use crate::dag::open_hosts;
use crate::dag::select::Selection;
use crate::dag::tally::StatusTally;
use crate::dag::traefik::{self, tcp};
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, TraefikKind};

/// A Traefik root; orders as the full build reports their statuses (IngressRoutes, then
/// IngressRouteTCPs, each by key).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct RootId {
    tcp: bool,
    key: ObjKey,
}

/// The Traefik roots of one instance.
#[derive(Debug, Default)]
pub(super) struct TraefikRoots {
    /// Each selected root's claimant and the hosts it claims (sorted; when refused, those its
    /// rules name, see `traefik::refused_hosts`).
    claims: HashMap<RootId, (Claimant, Box<[String]>)>,
    built: HashMap<RootId, Built>,
    /// The roots that read each dependency.
    dep_index: HashMap<Dep, GroupSet<RootId>>,
    /// The object statuses: the roots' and (see `traefik::verdicts`) the other Traefik
    /// objects'.
    statuses: BTreeMap<StatusId, ObjectStatus>,
    /// Objects whose status entry may differ from the DAG's.
    pub(super) dirty: BTreeSet<StatusId>,
}

/// A Traefik object with a status entry: the kind's rank (`traefik::verdicts::rank`) and the
/// key; orders as `Dag::object_statuses`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct StatusId {
    rank: u8,
    key: ObjKey,
}

impl RootId {
    fn status_id(&self) -> StatusId {
        StatusId {
            rank: u8::from(self.tcp),
            key: self.key.clone(),
        }
    }
}

impl TraefikRoots {
    /// What the last build of the root `key` (an IngressRouteTCP when `tcp`) read, itself
    /// included.
    pub(super) fn reads_of(&self, tcp: bool, key: &ObjKey) -> Vec<Dep> {
        let kind = if tcp {
            TraefikKind::IngressRouteTcp
        } else {
            TraefikKind::IngressRoute
        };
        let id = RootId {
            tcp,
            key: key.clone(),
        };
        let built = self.built.get(&id).into_iter().flat_map(|b| b.deps.iter());
        std::iter::once(Dep::Traefik(kind, key.clone()))
            .chain(built.cloned())
            .collect()
    }
}

/// What the last build of a selected root found.
#[derive(Debug)]
struct Built {
    /// Its status description when it lost a host (then it read nothing).
    lost: Option<String>,
    deps: Box<[Dep]>,
    names: PartNames,
}

/// The claimant and claimed hosts of the root `id`, when `sel` judges it.
fn claim_of(
    snap: &ClusterSnapshot,
    sel: &Selection,
    id: &RootId,
) -> Option<(Claimant, Box<[String]>)> {
    // A refused root claims the names its rules name, as in the full build.
    if id.tcp {
        let root = tcp::root(snap, sel, &id.key)?;
        let created = root.obj.metadata.creation_timestamp.clone();
        let (hosts, refused) = traefik::refused_hosts::of_tcp(sel, &root);
        let claimant = Claimant::traefik_tcp(&id.key, created)
            .refused(refused)
            .late(traefik::refused_hosts::late_tcp(&root));
        Some((claimant, hosts.into_iter().collect()))
    } else {
        let root = traefik::root(snap, sel, &id.key)?;
        let created = root.obj.metadata.creation_timestamp.clone();
        let (hosts, refused) = traefik::refused_hosts::of_route(sel, &root);
        let claimant = Claimant::traefik(&id.key, created).refused(refused);
        Some((claimant, hosts.into_iter().collect()))
    }
}

/// Every selected Traefik root's claim in `snap`: read once at the first build, for the claim
/// dates ([`known_claim`]) and the DAG (`apply_traefik_changes`).
pub(super) fn all_claims(snap: &ClusterSnapshot, sel: &Selection) -> KnownRoots {
    let routes = snap
        .traefik_routes
        .effective()
        .into_keys()
        .map(|key| RootId {
            tcp: false,
            key: key.clone(),
        });
    let tcp = (snap.traefik_tcp_routes.effective().into_keys()).map(|key| RootId {
        tcp: true,
        key: key.clone(),
    });
    routes
        .chain(tcp)
        .filter_map(|id| claim_of(snap, sel, &id).map(|c| (id, c)))
        .collect()
}

/// Traefik roots' claims read ahead (see [`all_claims`]).
pub(super) type KnownRoots = HashMap<RootId, (Claimant, Box<[String]>)>;

/// The hosts the root `id` claims and whether it is refused, from `known`.
pub(super) fn known_claim(known: &KnownRoots, id: &ClaimId) -> Option<(BTreeSet<String>, bool)> {
    let tcp = match id.dialect {
        Dialect::Contour => return None,
        Dialect::Traefik => false,
        Dialect::TraefikTcp => true,
    };
    let root = RootId {
        tcp,
        key: id.key.clone(),
    };
    let (claimant, hosts) = known.get(&root)?;
    Some((hosts.iter().cloned().collect(), claimant.behind_at_start()))
}

/// The Traefik root a change lists, if it lists one.
fn changed_root(kind: Kind, key: &ObjKey) -> Option<RootId> {
    let tcp = match kind {
        Kind::Traefik(TraefikKind::IngressRoute, _) => false,
        Kind::Traefik(TraefikKind::IngressRouteTcp, _) => true,
        _ => return None,
    };
    Some(RootId {
        tcp,
        key: key.clone(),
    })
}

/// The status of a Contour root that lost `fqdn` to `owner`, as the full build words it.
pub(super) fn taken_by(fqdn: &str, owner: &Claimant) -> String {
    if owner.traefik {
        traefik::taken(fqdn, &traefik::describe_claimant(owner), false)
    } else {
        claims::taken(fqdn, &owner.key)
    }
}

impl IncrementalDag {
    /// Applies changes of Traefik IngressRoutes and IngressRouteTCPs to the claims; adds the
    /// fqdns whose claimants changed to `fqdns` and returns the roots that changed.
    pub(super) fn apply_traefik_changes(
        &mut self,
        changes: &ChangeSet,
        fqdns: &mut BTreeSet<String>,
        known: &mut KnownRoots,
    ) -> BTreeSet<RootId> {
        let mut changed = BTreeSet::new();
        for (kind, key) in changes.objects() {
            let Some(id) = changed_root(kind, key) else {
                continue;
            };
            if !changed.insert(id.clone()) {
                continue;
            }
            if let Some((claimant, hosts)) = self.traefik.claims.remove(&id) {
                for host in hosts {
                    if let Some(set) = self.claimants.get_mut(&host) {
                        // Dated per host: taken out as it was put in.
                        let claimant = set.into_iter().find(|c| c.same_root(&claimant)).cloned();
                        if let Some(claimant) = claimant {
                            set.remove(&claimant);
                        }
                        if set.is_empty() {
                            self.claimants.remove(&host);
                        }
                    }
                    fqdns.insert(host);
                }
            }
            let claim = match known.remove(&id) {
                Some(claim) => Some(claim),
                None => claim_of(&self.snap, &self.sel, &id),
            };
            let Some((claimant, hosts)) = claim else {
                continue;
            };
            for host in &hosts {
                self.claimants
                    .entry(host.clone())
                    .or_default()
                    .insert(self.ages.aged(host, claimant.clone()));
                fqdns.insert(host.clone());
            }
            self.traefik.claims.insert(id, (claimant, hosts));
        }
        changed
    }

    /// The status description of the root `id` when another claimant owns one of its hosts or
    /// an older wildcard covers one: the first such host in name order, as the full build finds
    /// it.
    fn lost_host(&self, id: &RootId) -> Option<String> {
        let (claimant, hosts) = self.traefik.claims.get(id)?;
        hosts.iter().find_map(|host| {
            if let Some((wildcard, w)) = self.cover(host) {
                let by = traefik::describe_claimant(w);
                return Some(open_hosts::covered(host, &wildcard, &by, false));
            }
            let owner = self.claimants.get(host).and_then(|c| c.first())?;
            (!owner.same_root(claimant))
                .then(|| traefik::taken(host, &traefik::describe_claimant(owner), id.tcp))
        })
    }

    /// Takes out the parts of the Traefik roots to build again, and returns them: those
    /// `changed`, those that read a dependency in `deps`, and the claimants of `fqdns` whose
    /// lost host differs now.
    pub(super) fn remove_traefik_roots(
        &mut self,
        mut ids: BTreeSet<RootId>,
        fqdns: &BTreeSet<String>,
        deps: &[Dep],
        dirty: &mut Dirty,
    ) -> BTreeSet<RootId> {
        for dep in deps {
            if let Some(roots) = self.traefik.dep_index.get(dep) {
                ids.extend(roots.iter().cloned());
            }
        }
        let claimants = fqdns
            .iter()
            .filter_map(|f| self.claimants.get(f))
            .flatten()
            .filter(|c| c.traefik);
        let mut rejudged = BTreeSet::new();
        for c in claimants {
            let id = RootId {
                tcp: c.tcp,
                key: c.key.clone(),
            };
            if ids.contains(&id) || rejudged.contains(&id) {
                continue;
            }
            let lost = self.lost_host(&id);
            if self.traefik.built.get(&id).map(|b| &b.lost) != Some(&lost) {
                rejudged.insert(id);
            }
        }
        ids.extend(rejudged);
        for id in &ids {
            if let Some(built) = self.traefik.built.remove(id) {
                self.remove_built(id, built, dirty);
            }
        }
        ids
    }

    fn remove_built(&mut self, id: &RootId, built: Built, dirty: &mut Dirty) {
        for d in built.deps.iter() {
            if self
                .traefik
                .dep_index
                .get_mut(d)
                .is_some_and(|s| s.remove(id))
            {
                self.traefik.dep_index.remove(d);
            }
        }
        let p = &built.names;
        for fqdn in &p.vhosts {
            self.vhosts.remove(fqdn);
            dirty.vhosts.insert(fqdn.clone());
        }
        count_out(&mut self.clusters, &p.clusters, &mut dirty.clusters);
        count_out(&mut self.endpoints, &p.endpoints, &mut dirty.endpoints);
        count_out(&mut self.secrets, &p.secrets, &mut dirty.secrets);
    }

    /// Builds the roots `ids` (whose parts are out) and adds their parts; returns how many
    /// were built.
    pub(super) fn build_traefik_roots(
        &mut self,
        ids: BTreeSet<RootId>,
        dirty: &mut Dirty,
    ) -> usize {
        let snap = self.snap.clone();
        let mut count = 0;
        for id in ids {
            let lost = self.lost_host(&id);
            let mut b = Builder::new(&snap, &self.sel, &self.selected, &self.quarantine, true);
            let built = if id.tcp {
                tcp::root(&snap, &self.sel, &id.key).map(|root| {
                    let (verdict, trace) = b.traced(|b| match (&root.parsed, &lost) {
                        (Err(e), _) => Err(e.clone()),
                        (Ok(_), Some(lost)) => Err(lost.clone()),
                        (Ok(parsed), None) => b.build_traefik_tcp(&id.key, parsed),
                    });
                    (tcp::status(&id.key, root.obj, verdict), trace.reads)
                })
            } else {
                traefik::root(&snap, &self.sel, &id.key).map(|root| {
                    let (verdict, trace) = b.traced(|b| match (&root.parsed, &lost) {
                        (Err(e), _) => Err(e.clone()),
                        (Ok(_), Some(lost)) => Err(lost.clone()),
                        (Ok(parsed), None) => b.build_traefik(&id.key, parsed),
                    });
                    let (validity, description) = match verdict {
                        Ok(()) => (Validity::Valid, msg::VALID.to_owned()),
                        Err(e) => (Validity::Invalid, e),
                    };
                    let status = traefik::status(&id.key, root.obj, validity, description);
                    (status, trace.reads)
                })
            };
            let Some((status, reads)) = built else {
                let sid = id.status_id();
                if self.traefik.statuses.remove(&sid).is_some() {
                    self.traefik.dirty.insert(sid);
                }
                continue;
            };
            count += 1;
            let mut parts = b.into_parts();
            parts.retain_used();
            let deps: BTreeSet<Dep> = reads.into_iter().collect();
            for d in &deps {
                match self.traefik.dep_index.get_mut(d) {
                    Some(set) => set.insert(id.clone()),
                    None => {
                        self.traefik
                            .dep_index
                            .insert(d.clone(), GroupSet::new(id.clone()));
                    }
                }
            }
            let names = PartNames::of(&parts);
            for (fqdn, v) in parts.vhosts {
                dirty.vhosts.insert(fqdn.clone());
                self.vhosts.insert(fqdn, Arc::new(super::fit::fitted(v)));
            }
            count_in_named(&mut self.clusters, parts.clusters, &mut dirty.clusters);
            count_in(&mut self.endpoints, parts.endpoints, &mut dirty.endpoints);
            count_in(&mut self.secrets, parts.secrets, &mut dirty.secrets);
            let built = Built {
                lost,
                deps: deps.into_iter().collect(),
                names,
            };
            self.traefik.built.insert(id.clone(), built);
            let sid = id.status_id();
            if self.traefik.statuses.get(&sid) != Some(&status) {
                self.traefik.statuses.insert(sid.clone(), status);
                self.traefik.dirty.insert(sid);
            }
        }
        count
    }

    /// Judges again the Traefik objects other than roots that `changes` lists (see
    /// `traefik::verdicts`: each verdict reads its object and the selection only).
    pub(super) fn apply_verdict_changes(&mut self, changes: &ChangeSet) {
        for (kind, key) in changes.objects() {
            let Kind::Traefik(kind, _) = kind else {
                continue;
            };
            if !traefik::verdicts::KINDS.contains(&kind) {
                continue;
            }
            let id = StatusId {
                rank: traefik::verdicts::kind_rank(kind),
                key: key.clone(),
            };
            let status = traefik::verdicts::status(&self.snap, &self.sel, kind, key);
            if self.traefik.statuses.get(&id) == status.as_ref() {
                continue;
            }
            match status {
                Some(s) => self.traefik.statuses.insert(id.clone(), s),
                None => self.traefik.statuses.remove(&id),
            };
            self.traefik.dirty.insert(id);
        }
    }

    /// Brings the DAG's object statuses in line; returns whether any differs.
    pub(super) fn patch_object_statuses(
        &self,
        dag: &mut Dag,
        ids: &BTreeSet<StatusId>,
        tally: &mut StatusTally,
    ) -> bool {
        let mut changed = false;
        for id in ids {
            let entry = self.traefik.statuses.get(id).cloned().map(Arc::new);
            let list = dag.object_statuses.entries_mut();
            let old = (list.binary_search_by(|s| object_status_order(s, id)).ok())
                .and_then(|i| list.get(i));
            tally.object(old.map(|s| &**s), entry.as_deref());
            changed |= patch(list, id, entry, |s, id| object_status_order(s, id));
        }
        changed
    }
}

/// Where the status of `id` sorts against `s` in the DAG's object statuses.
pub(super) fn object_status_order(s: &ObjectStatus, id: &StatusId) -> std::cmp::Ordering {
    let rank = traefik::verdicts::rank(&s.kind);
    (rank, s.namespace.as_str(), s.name.as_str()).cmp(&(id.rank, &*id.key.namespace, &*id.key.name))
}
