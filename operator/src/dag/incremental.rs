//! The incremental DAG: one Gateway instance's DAG kept up to date from change sets, rebuilding
//! only the roots a change touches, with the same result as [`super::build`] from scratch.
//!
//! Why the result is the same. A full build does three things whose results depend on more than
//! one root: host ownership (claims grouped by fqdn), the delegation walk's memo (keyed by
//! prefix, child and depth, shared across roots, so a child's verdict can come from whichever
//! root reached it first), and statuses (the first problem found wins, across roots). Ownership
//! is kept per fqdn here and recomputed for every fqdn a change touches. For the other two, roots
//! are kept in *groups*: roots whose walks reach a common IngressRoute are in one group, and a
//! group is always built whole, its roots in fqdn order as the full build visits them. Two
//! groups never share a reached IngressRoute, so they share no memo entry and no status, and a
//! full build is the union of its groups' builds. Clusters, endpoints and secrets are named by
//! what they contain (or by what the snapshot holds under that name), so the union of the
//! groups' is the full build's.
//!
//! Which groups a change touches: each group records every key its build read ([`Dep`]:
//! IngressRoutes, present or not; Services with their Endpoints and EndpointSlices; Secrets with
//! the delegations naming them), and a reverse index maps each key to its groups. A touched group is
//! rebuilt with the roots that now own an fqdn; if the rebuild reaches an IngressRoute another
//! group reaches, that group joins and the build starts over, so groups stay disjoint. A change
//! to the Gateway's selection rebuilds everything.
//!
//! Traefik IngressRoutes and IngressRouteTCPs claim fqdns beside the Contour roots and are
//! built one by one, with an index of their own (see `traefik`); the other Traefik objects'
//! verdicts read only their object, and are judged again when a change lists it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::build::{
    Builder, Parts, RootTrace, Selected, Statuses, route_status, undecodable_status,
};
use super::claim_ages::{ClaimAges, ClaimId};
use super::claim_record::{ClaimRecord, NeededNames};
use super::claims::{self, Claimant};
use super::deps::{self, Dep};
use super::model::{Cluster, ClusterEndpoints, Dag, Secret, Validity, VirtualHost, msg};
use super::quarantine::Quarantine;
use super::select::Selection;
use super::tally::StatusTally;
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey};

mod fit;
mod open;
mod parts;
mod spare;
mod traefik;

use parts::{
    DisjointSets, GroupSet, SortedVec, count_in, count_in_named, count_out, patch, patch_shared,
    take_used,
};

/// One Gateway instance's DAG, kept up to date by [`IncrementalDag::update`].
#[derive(Debug)]
pub struct IncrementalDag {
    sel: Selection,
    snap: Arc<ClusterSnapshot>,
    selected: Selected,
    /// Each selected root's claim, and its place among its fqdn's claimants.
    claims: BTreeMap<ObjKey, (Result<String, String>, Claimant)>,
    /// Sorted vectors: one claimant per fqdn is the rule.
    claimants: BTreeMap<String, SortedVec<Claimant>>,
    /// The names of `claimants` a claim record needs, kept per change.
    needed: NeededNames,
    /// The DAG's statuses counted, kept as they are patched.
    tally: StatusTally,
    owners: BTreeMap<String, Claimant>,
    groups: HashMap<u64, Group>,
    next_group: u64,
    /// The group of each owner root and of each IngressRoute a group's walk reached.
    group_of: HashMap<ObjKey, u64>,
    /// The groups that read each dependency.
    dep_index: HashMap<Dep, GroupSet>,
    /// The union of the groups' parts; shared entries are counted.
    /// Entries are the DAG's own (`Arc`s), so patching the DAG copies pointers.
    vhosts: BTreeMap<String, Arc<VirtualHost>>,
    clusters: BTreeMap<String, (Arc<Cluster>, usize)>,
    endpoints: BTreeMap<String, (Arc<ClusterEndpoints>, usize)>,
    secrets: BTreeMap<String, (Arc<Secret>, usize)>,
    group_statuses: Statuses,
    /// Shared with readers (status writer, attribution); patched in place when nobody else
    /// holds it; otherwise the spare becomes the next DAG (see `spare`).
    dag: Arc<Dag>,
    /// The DAG the last update replaced while a reader held it, to patch into the next one.
    spare: spare::Spare,
    /// Nothing built yet: the first update compares its snapshot with an empty one.
    fresh: bool,
    /// What the last update may have changed.
    diff: DagDiff,
    /// The Traefik roots.
    traefik: traefik::TraefikRoots,
    /// Names covered by wildcards, and names held while an open host is served.
    open: open::OpenHosts,
    /// When each standing host claim was first seen; kept across selection changes.
    ages: ClaimAges,
    /// The snapshot `ages` was last brought up to, and the selection that judged it.
    ages_at: (Arc<ClusterSnapshot>, Selection),
    /// Rebuilt after an update panicked ([`Self::resume`]): the next update compares every
    /// root's claims with `ages_at`.
    resumed: bool,
    /// Objects built as invalid because an Envoy rejected their configuration; kept across
    /// selection changes and panics (see `quarantine`).
    quarantine: Quarantine,
    /// The objects whose quarantine began since the last update: built again by the next.
    quarantined_since: ChangeSet,
}

/// The entries of the DAG an update may have changed, by name (never fewer than changed): what
/// an incremental translation must look at again ([`crate::xds::translate::Translator`]).
/// `full`: the DAG was built from scratch, so any entry may differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DagDiff {
    pub full: bool,
    pub vhosts: BTreeSet<String>,
    pub clusters: BTreeSet<String>,
    pub endpoints: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

impl DagDiff {
    /// Any entry may have changed.
    pub fn full() -> Self {
        Self {
            full: true,
            ..Self::default()
        }
    }
}

/// Roots built together, with what they read and the names of what they produced. The parts
/// themselves are held once, in the instance's union maps: a group keeps names only, in boxed
/// sorted slices (a small `BTreeMap` reserves a node of eleven entries, kilobytes for virtual
/// hosts and clusters, for every group).
#[derive(Debug)]
struct Group {
    roots: Box<[ObjKey]>,
    reached: Box<[ObjKey]>,
    deps: Box<[Dep]>,
    names: PartNames,
}

/// The names of a group's parts (sorted, no duplicates).
#[derive(Debug)]
struct PartNames {
    vhosts: Box<[String]>,
    clusters: Box<[String]>,
    endpoints: Box<[String]>,
    secrets: Box<[String]>,
    statuses: Box<[ObjKey]>,
}

impl PartNames {
    fn of(p: &Parts) -> Self {
        Self {
            vhosts: p.vhosts.keys().cloned().collect(),
            clusters: p.clusters.keys().cloned().collect(),
            endpoints: p.endpoints.keys().cloned().collect(),
            secrets: p.secrets.keys().cloned().collect(),
            statuses: p.statuses.keys().cloned().collect(),
        }
    }
}

/// What one update did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Root IngressRoutes built (walked and validated) again.
    pub roots_rebuilt: usize,
    /// Whether the DAG (or a status) differs from before.
    pub changed: bool,
}

/// Names of entries of the DAG that may have changed.
#[derive(Default)]
struct Dirty {
    vhosts: BTreeSet<String>,
    clusters: BTreeSet<String>,
    endpoints: BTreeSet<String>,
    secrets: BTreeSet<String>,
    statuses: BTreeSet<ObjKey>,
}

impl IncrementalDag {
    /// An instance that has built nothing yet: the first update builds everything.
    pub fn new(sel: Selection) -> Self {
        let ages_sel = sel.clone();
        Self {
            dag: Arc::new(Dag {
                gateway: sel.gateway.to_string(),
                ..Dag::default()
            }),
            spare: spare::Spare::default(),
            sel,
            snap: Arc::default(),
            selected: Selected::new(),
            claims: BTreeMap::new(),
            claimants: BTreeMap::new(),
            needed: NeededNames::default(),
            tally: StatusTally::default(),
            owners: BTreeMap::new(),
            groups: HashMap::new(),
            next_group: 0,
            group_of: HashMap::new(),
            dep_index: HashMap::new(),
            vhosts: BTreeMap::new(),
            clusters: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            secrets: BTreeMap::new(),
            group_statuses: Statuses::new(),
            fresh: true,
            diff: DagDiff::full(),
            traefik: traefik::TraefikRoots::default(),
            open: open::OpenHosts::default(),
            ages: ClaimAges::default(),
            ages_at: (Arc::default(), ages_sel),
            resumed: false,
            quarantine: Quarantine::default(),
            quarantined_since: ChangeSet::default(),
        }
    }

    /// A DAG to go on with after an update of `broken` panicked part way (a bug: no input
    /// may make a build panic), leaving its state unknown: the next update builds everything
    /// again. The claim dates are kept, as of the last snapshot they were brought up to, so
    /// that whoever can make a build panic cannot reset who holds which host.
    pub fn resume(broken: &Self) -> Self {
        let (snap, sel) = broken.ages_at.clone();
        let mut dag = Self::new(sel.clone());
        dag.ages = broken.ages.clone();
        dag.snap = snap.clone();
        dag.ages_at = (snap, sel);
        dag.resumed = true;
        // Whoever can make a build panic cannot end a quarantine either.
        dag.quarantine = broken.quarantine.clone();
        dag
    }

    /// Quarantines the object the DAG owner name `owner` names (`namespace/name`,
    /// `traefik:namespace/name`, `traefik-tcp:namespace/name`): from the next update on it is
    /// built as invalid with `description`, until something its last build read changes. Returns
    /// whether that changed anything.
    pub fn quarantine(&mut self, owner: &str, description: String) -> bool {
        let reads = self.reads_of(owner);
        (self.quarantine).insert(owner, description, reads, &mut self.quarantined_since)
    }

    /// What the last build of the object the owner name `owner` names read, but Services (and
    /// their endpoints): the changes that may make its configuration another, and end its
    /// quarantine. For a Contour IngressRoute, what the builds of every group reaching it read
    /// (its delegations and their Secrets included; more than it alone read, never less).
    fn reads_of(&self, owner: &str) -> Vec<Dep> {
        let Some(parsed) = super::owner::Owner::parse(owner) else {
            return Vec::new();
        };
        let key = ObjKey::new(parsed.namespace(), parsed.name());
        let mut reads: BTreeSet<Dep> = match parsed {
            super::owner::Owner::Contour { .. } => {
                let own = Dep::Route(key);
                let groups = self.dep_index.get(&own).into_iter().flat_map(|g| g.iter());
                let group_reads = groups
                    .filter_map(|g| self.groups.get(g))
                    .flat_map(|g| g.deps.iter().cloned());
                std::iter::once(own).chain(group_reads).collect()
            }
            super::owner::Owner::Traefik { kind, .. } => {
                let tcp = kind == super::owner::TRAEFIK_TCP_KIND;
                self.traefik.reads_of(tcp, &key).into_iter().collect()
            }
        };
        reads.retain(|d| !matches!(d, Dep::Service(_)));
        reads.into_iter().collect()
    }

    /// The objects quarantined now: with them, [`super::build_quarantined`] builds the same DAG
    /// from scratch.
    pub fn quarantined(&self) -> &Quarantine {
        &self.quarantine
    }

    /// The IngressRoute the selection holds under `key` (tests: it is the snapshot's).
    #[cfg(test)]
    pub(super) fn selected_route(&self, key: &ObjKey) -> Option<&Arc<crate::api::IngressRoute>> {
        self.selected.get(key)
    }

    /// The current DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// The current DAG, shared.
    pub fn shared_dag(&self) -> Arc<Dag> {
        self.dag.clone()
    }

    pub fn selection(&self) -> &Selection {
        &self.sel
    }

    /// When each standing host claim was first seen: with it, [`super::build_aged`] builds
    /// the same DAG from scratch.
    pub fn claim_ages(&self) -> &ClaimAges {
        &self.ages
    }

    /// Gives the first build the claim dates of `record` (see `claim_ages`); `false` once
    /// something was built.
    pub fn import_claims(&mut self, record: ClaimRecord) -> bool {
        self.ages.import(record)
    }

    /// The record of the contested claims' dates, within `budget` bytes of JSON, and how many
    /// names the budget left out (see `claim_record`); `None` until something was built (since
    /// the start, or since a build that panicked): no claimant is known then.
    pub fn claim_record(&self, budget: usize) -> Option<(ClaimRecord, usize)> {
        let uid = |id: &ClaimId| super::claim_ages::uid(&self.snap, id).map(str::to_owned);
        let needed = self.needed.names();
        let served_under = |wildcard: &str| self.needed.served_under(wildcard);
        (!self.fresh)
            .then(|| ClaimRecord::of_needed(&self.claimants, &needed, &served_under, budget, &uid))
    }

    /// [`Self::claim_record`] worked out from every claimed name (what it was before the
    /// names it needs were kept per change): the reference of the tests and the benchmark.
    #[doc(hidden)]
    pub fn claim_record_from_scratch(&self, budget: usize) -> Option<(ClaimRecord, usize)> {
        let uid = |id: &ClaimId| super::claim_ages::uid(&self.snap, id).map(str::to_owned);
        (!self.fresh).then(|| ClaimRecord::of(&self.claimants, budget, &uid))
    }

    /// The current DAG's statuses counted (kept as they are patched).
    pub fn status_tally(&self) -> &StatusTally {
        &self.tally
    }

    /// What the last update may have changed in the DAG.
    pub fn last_diff(&self) -> &DagDiff {
        &self.diff
    }

    /// Brings the DAG up to `snap`, which differs from the previous snapshot by `changes` (a
    /// change set may list more than changed, never less). A different selection rebuilds
    /// everything.
    pub fn update(
        &mut self,
        snap: &Arc<ClusterSnapshot>,
        sel: &Selection,
        changes: &ChangeSet,
    ) -> UpdateStats {
        // Claims date from when they were first seen, whichever way the DAG is built.
        let everything = *sel != self.sel || self.resumed;
        // The first build reads every Traefik root's claims once, for the dates and the DAG.
        let mut known = if self.ages.started() {
            traefik::KnownRoots::new()
        } else {
            traefik::all_claims(snap, sel)
        };
        let read = |id: &ClaimId| traefik::known_claim(&known, id);
        (self.ages).observe_known(
            (&self.snap, &self.sel),
            (snap, sel),
            changes,
            everything,
            &read,
        );
        self.ages_at = (snap.clone(), sel.clone());
        #[cfg(test)]
        super::faults::hit(super::faults::Stage::Build);
        // Quarantines end with a change in their namespace; the objects whose quarantine began
        // or ended are built again.
        let mut requarantined = std::mem::take(&mut self.quarantined_since);
        if !self.quarantine.is_empty() {
            let resolved;
            let listed = if changes.has_whole_kinds() {
                resolved = changes.resolve(&self.snap, snap);
                &resolved
            } else {
                changes
            };
            let touched = deps::touched(listed, &self.snap, snap)
                .into_iter()
                .collect();
            self.quarantine.lift(&touched, &mut requarantined);
        }
        let resolved;
        let from_scratch = *sel != self.sel || self.fresh;
        let changes = if from_scratch {
            let ages = std::mem::take(&mut self.ages);
            let ages_at = self.ages_at.clone();
            let quarantine = std::mem::take(&mut self.quarantine);
            *self = Self::new(sel.clone());
            self.ages = ages;
            self.ages_at = ages_at;
            self.quarantine = quarantine;
            self.fresh = false;
            resolved = ChangeSet::diff(&ClusterSnapshot::default(), snap);
            &resolved
        } else if changes.has_whole_kinds() {
            let mut all = changes.resolve(&self.snap, snap);
            all.extend(&requarantined);
            resolved = all;
            &resolved
        } else if !requarantined.is_empty() {
            let mut all = changes.clone();
            all.extend(&requarantined);
            resolved = all;
            &resolved
        } else {
            changes
        };
        let old = std::mem::replace(&mut self.snap, snap.clone());
        let mut dirty = Dirty::default();
        let mut roots = BTreeSet::new();
        let mut touched_groups = BTreeSet::new();

        let mut fqdns = self.apply_route_changes(changes, &mut dirty);
        self.refresh_selected(changes);
        let traefik_changed = self.apply_traefik_changes(changes, &mut fqdns, &mut known);
        self.apply_verdict_changes(changes);
        self.settle_owners(&mut fqdns, &mut roots, &mut touched_groups, &mut dirty);
        let touched = deps::touched(changes, &old, snap);
        for dep in &touched {
            if let Some(groups) = self.dep_index.get(dep) {
                touched_groups.extend(groups.iter().copied());
            }
        }
        // Traefik parts out before the groups' rebuild, in after it: an fqdn may change hands.
        let traefik_roots =
            self.remove_traefik_roots(traefik_changed, &fqdns, &touched, &mut dirty);
        let built = self.rebuild(touched_groups, roots, &mut dirty)
            + self.build_traefik_roots(traefik_roots, &mut dirty);
        self.settle_held(&fqdns, &mut dirty);
        let open = &self.open;
        (self.needed).refresh(&self.claimants, &fqdns, &|w| open.names_under(w));
        self.diff = if from_scratch {
            DagDiff::full()
        } else {
            DagDiff {
                full: false,
                vhosts: dirty.vhosts.clone(),
                clusters: dirty.clusters.clone(),
                endpoints: dirty.endpoints.clone(),
                secrets: dirty.secrets.clone(),
            }
        };
        let changed = self.patch_dag(dirty);
        UpdateStats {
            roots_rebuilt: built,
            changed,
        }
    }

    /// Applies IngressRoute changes to the selection and the claims; returns the fqdns whose
    /// claimants changed.
    fn apply_route_changes(&mut self, changes: &ChangeSet, dirty: &mut Dirty) -> BTreeSet<String> {
        let mut fqdns = BTreeSet::new();
        for (kind, key) in changes.objects() {
            match kind {
                Kind::IngressRoute => {}
                Kind::UndecodableRoute => {
                    dirty.statuses.insert(key.clone());
                    continue;
                }
                _ => continue,
            }
            dirty.statuses.insert(key.clone());
            if let Some((Ok(fqdn), claimant)) = self.claims.remove(key) {
                if let Some(set) = self.claimants.get_mut(&fqdn) {
                    set.remove(&claimant);
                    if set.is_empty() {
                        self.claimants.remove(&fqdn);
                    }
                }
                fqdns.insert(fqdn);
            }
            let route = self
                .snap
                .ingress_routes
                .get(key)
                .filter(|r| self.sel.selects(r));
            let Some(route) = route else {
                self.selected.remove(key);
                continue;
            };
            self.selected.insert(key.clone(), route.clone());
            if let Some(claim) = claims::claim(&self.sel, key, route) {
                let claimant = match &claim {
                    Ok(fqdn) => self.ages.aged(fqdn, Claimant::new(key, route)),
                    Err(_) => Claimant::new(key, route),
                };
                if let Ok(fqdn) = &claim {
                    self.claimants
                        .entry(fqdn.clone())
                        .or_default()
                        .insert(claimant.clone());
                    fqdns.insert(fqdn.clone());
                }
                self.claims.insert(key.clone(), (claim, claimant));
            }
        }
        fqdns
    }

    /// IngressRoutes whose status alone changed are not rebuilt (the DAG reads nothing of it);
    /// the selection takes the snapshot's object all the same, so that the one it replaces is
    /// not kept alive beside it.
    fn refresh_selected(&mut self, changes: &ChangeSet) {
        for (kind, key) in changes.statuses() {
            if kind != Kind::IngressRoute {
                continue;
            }
            if let (Some(held), Some(now)) = (
                self.selected.get_mut(key),
                self.snap.ingress_routes.get(key),
            ) {
                *held = now.clone();
            }
        }
    }

    /// Decides who owns `fqdn` now (nobody when an older wildcard covers it); a new owner is
    /// built, a former owner's group rebuilt. Returns whether the owner changed.
    fn settle_owner(
        &mut self,
        fqdn: &str,
        roots: &mut BTreeSet<ObjKey>,
        touched_groups: &mut BTreeSet<u64>,
        dirty: &mut Dirty,
    ) -> bool {
        let claimants = self.claimants.get(fqdn);
        let new_owner = claimants
            .and_then(|c| c.first())
            .filter(|_| self.cover(fqdn).is_none())
            .cloned();
        // A loser's status names the owner.
        dirty
            .statuses
            .extend(claimants.into_iter().flatten().map(|c| c.key.clone()));
        let old_owner = match &new_owner {
            Some(o) => self.owners.insert(fqdn.to_owned(), o.clone()),
            None => self.owners.remove(fqdn),
        };
        if old_owner == new_owner {
            return false;
        }
        // A Traefik owner is rebuilt with the Traefik roots.
        if let Some(old) = old_owner.filter(|o| !o.traefik) {
            dirty.statuses.insert(old.key.clone());
            if let Some(g) = self.group_of.get(&old.key) {
                touched_groups.insert(*g);
            }
        }
        if let Some(new) = new_owner.filter(|o| !o.traefik) {
            roots.insert(new.key);
        }
        true
    }

    /// The fqdn `root` owns, if it owns one.
    fn owned_fqdn(&self, root: &ObjKey) -> Option<&str> {
        match self.claims.get(root) {
            Some((Ok(fqdn), _))
                if self
                    .owners
                    .get(fqdn)
                    .is_some_and(|o| !o.traefik && o.key == *root) =>
            {
                Some(fqdn)
            }
            _ => None,
        }
    }

    /// Rebuilds the touched groups and the new owners together, widening to every group the
    /// build reaches into, and installs the resulting groups. Returns the number of roots built.
    fn rebuild(
        &mut self,
        mut touched_groups: BTreeSet<u64>,
        mut roots: BTreeSet<ObjKey>,
        dirty: &mut Dirty,
    ) -> usize {
        loop {
            for id in std::mem::take(&mut touched_groups) {
                if let Some(group) = self.remove_group(id, dirty) {
                    roots.extend(group.roots);
                }
            }
            let mut order: Vec<(String, ObjKey)> = roots
                .iter()
                .filter_map(|r| self.owned_fqdn(r).map(|f| (f.to_owned(), r.clone())))
                .collect();
            order.sort();
            if order.is_empty() {
                return 0;
            }
            let snap = self.snap.clone();
            let mut b = Builder::new(&snap, &self.sel, &self.selected, &self.quarantine, true);
            let traces: Vec<RootTrace> = order
                .iter()
                .map(|(fqdn, key)| b.build_owner_traced(key, fqdn))
                .collect();
            touched_groups = traces
                .iter()
                .zip(&order)
                .flat_map(|(t, (_, root))| t.reached.iter().chain([root]))
                .filter_map(|k| self.group_of.get(k).copied())
                .collect();
            if touched_groups.is_empty() {
                let parts = b.into_parts();
                let built = order.len();
                self.install_groups(order, traces, parts, dirty);
                return built;
            }
        }
    }

    /// Splits one build into groups (roots joined by a common reached IngressRoute) and adds
    /// them.
    fn install_groups(
        &mut self,
        order: Vec<(String, ObjKey)>,
        traces: Vec<RootTrace>,
        mut parts: Parts,
        dirty: &mut Dirty,
    ) {
        let mut sets = DisjointSets::new(order.len());
        let mut first_reacher: HashMap<&ObjKey, usize> = HashMap::new();
        for (i, (t, (_, root))) in traces.iter().zip(&order).enumerate() {
            for k in t.reached.iter().chain([root]) {
                match first_reacher.get(k) {
                    Some(j) => sets.union(i, *j),
                    None => {
                        first_reacher.insert(k, i);
                    }
                }
            }
        }
        let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..order.len() {
            members.entry(sets.find(i)).or_default().push(i);
        }
        for indexes in members.into_values() {
            let mut roots = Vec::new();
            let mut reached = BTreeSet::new();
            let mut deps = BTreeSet::new();
            let mut group_parts = Parts::default();
            for i in indexes {
                let (fqdn, root) = &order[i];
                roots.push(root.clone());
                reached.insert(root.clone());
                reached.extend(traces[i].reached.iter().cloned());
                deps.extend(traces[i].reads.iter().cloned());
                if let Some(v) = parts.vhosts.remove(fqdn) {
                    group_parts.vhosts.insert(fqdn.clone(), v);
                }
            }
            for k in &reached {
                if let Some(s) = parts.statuses.remove(k) {
                    group_parts.statuses.insert(k.clone(), s);
                }
            }
            take_used(&mut group_parts, &parts);
            let group = Group {
                roots: roots.into_boxed_slice(),
                reached: reached.into_iter().collect(),
                deps: deps.into_iter().collect(),
                names: PartNames::of(&group_parts),
            };
            self.add_group(group, group_parts, dirty);
        }
        debug_assert!(parts.statuses.is_empty(), "statuses outside every group");
    }

    /// Adds `group`, whose parts are `p`, to the union maps and the indexes.
    fn add_group(&mut self, group: Group, p: Parts, dirty: &mut Dirty) {
        let id = self.next_group;
        self.next_group += 1;
        for k in &group.reached {
            self.group_of.insert(k.clone(), id);
        }
        for d in &group.deps {
            match self.dep_index.get_mut(d) {
                Some(set) => set.insert(id),
                None => {
                    self.dep_index.insert(d.clone(), GroupSet::new(id));
                }
            }
        }
        for (fqdn, v) in p.vhosts {
            dirty.vhosts.insert(fqdn.clone());
            self.vhosts.insert(fqdn, Arc::new(fit::fitted(v)));
        }
        count_in_named(&mut self.clusters, p.clusters, &mut dirty.clusters);
        count_in(&mut self.endpoints, p.endpoints, &mut dirty.endpoints);
        count_in(&mut self.secrets, p.secrets, &mut dirty.secrets);
        for (k, s) in p.statuses {
            dirty.statuses.insert(k.clone());
            self.group_statuses.insert(k, s);
        }
        self.groups.insert(id, group);
    }

    fn remove_group(&mut self, id: u64, dirty: &mut Dirty) -> Option<Group> {
        let group = self.groups.remove(&id)?;
        for k in &group.reached {
            if self.group_of.get(k) == Some(&id) {
                self.group_of.remove(k);
            }
        }
        for d in &group.deps {
            if self.dep_index.get_mut(d).is_some_and(|set| set.remove(&id)) {
                self.dep_index.remove(d);
            }
        }
        let p = &group.names;
        for fqdn in &p.vhosts {
            self.vhosts.remove(fqdn);
            dirty.vhosts.insert(fqdn.clone());
        }
        count_out(&mut self.clusters, &p.clusters, &mut dirty.clusters);
        count_out(&mut self.endpoints, &p.endpoints, &mut dirty.endpoints);
        count_out(&mut self.secrets, &p.secrets, &mut dirty.secrets);
        for k in &p.statuses {
            self.group_statuses.remove(k);
            dirty.statuses.insert(k.clone());
        }
        Some(group)
    }

    /// The status of `key` as the full build decides it.
    fn status_of(&self, key: &ObjKey) -> Option<(Validity, String)> {
        if let Some(u) = self.snap.undecodable_routes.get(key)
            && self.sel.selects_meta(&u.metadata)
        {
            return Some(undecodable_status(&u.error));
        }
        match self.claims.get(key) {
            Some((Err(e), _)) => return Some((Validity::Invalid, e.clone())),
            Some((Ok(fqdn), _)) if let Some((wildcard, w)) = self.cover(fqdn) => {
                let by = super::traefik::describe_claimant(w);
                let lost = super::open_hosts::covered(fqdn, &wildcard, &by, true);
                return Some((Validity::Invalid, lost));
            }
            Some((Ok(fqdn), _)) => match self.owners.get(fqdn) {
                Some(owner) if owner.traefik || owner.key != *key => {
                    return Some((Validity::Invalid, traefik::taken_by(fqdn, owner)));
                }
                _ => {}
            },
            None => {}
        }
        if let Some(s) = self.group_statuses.get(key) {
            return Some(s.clone());
        }
        self.selected
            .contains_key(key)
            .then(|| (Validity::Orphaned, msg::ORPHANED.to_owned()))
    }

    /// Brings the DAG's lists in line with the maps for every dirty name (and the Traefik
    /// objects' statuses); returns whether anything differs.
    fn patch_dag(&mut self, dirty: Dirty) -> bool {
        let mut changed = false;
        let nothing = dirty.statuses.is_empty()
            && dirty.vhosts.is_empty()
            && dirty.clusters.is_empty()
            && dirty.endpoints.is_empty()
            && dirty.secrets.is_empty()
            && self.traefik.dirty.is_empty();
        if nothing {
            return false;
        }
        let mut shared = self.writable();
        // Nobody else holds it (`writable`): no copy.
        let dag = Arc::make_mut(&mut shared);
        for key in &dirty.statuses {
            let entry = self
                .status_of(key)
                .map(|s| Arc::new(route_status((key.clone(), s))));
            let order = |s: &Arc<super::RouteStatus>, k: &ObjKey| {
                (s.namespace.as_str(), s.name.as_str()).cmp(&(&*k.namespace, &*k.name))
            };
            let list = dag.statuses.entries_mut();
            let old = (list.binary_search_by(|s| order(s, key)).ok()).and_then(|i| list.get(i));
            self.tally.route(old.map(|s| &**s), entry.as_deref());
            changed |= patch(list, key, entry, order);
        }
        for fqdn in &dirty.vhosts {
            let v = match self.vhosts.get_mut(fqdn) {
                Some(v) => Some(v),
                None => self.open.held.get_mut(fqdn),
            };
            changed |= patch_shared(dag.virtual_hosts.entries_mut(), fqdn, v, |v, f| {
                v.fqdn.as_str().cmp(f)
            });
        }
        for name in &dirty.clusters {
            let c = self.clusters.get_mut(name).map(|(c, _)| c);
            changed |= patch_shared(dag.clusters.entries_mut(), name, c, |c, n| {
                c.name.as_str().cmp(n)
            });
        }
        for name in &dirty.endpoints {
            let e = self.endpoints.get_mut(name).map(|(e, _)| e);
            changed |= patch_shared(dag.endpoints.entries_mut(), name, e, |e, n| {
                e.service_name.as_str().cmp(n)
            });
        }
        for name in &dirty.secrets {
            let s = self.secrets.get_mut(name).map(|(s, _)| s);
            changed |= patch_shared(dag.secrets.entries_mut(), name, s, |s, n| {
                s.name.as_str().cmp(n)
            });
        }
        let objects = std::mem::take(&mut self.traefik.dirty);
        let mut tally = std::mem::take(&mut self.tally);
        changed |= self.patch_object_statuses(dag, &objects, &mut tally);
        self.tally = tally;
        self.dag = shared;
        self.patched(spare::Lag::of(dirty, objects));
        changed
    }
}
