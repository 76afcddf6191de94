//! How long each claim on a host has stood, so that editing an old object cannot take a name
//! another root holds.
//!
//! The oldest claimant keeps a host (`claims`). "Oldest" by `creationTimestamp` alone would let
//! a tenant edit a year-old root to claim a name another team has served for months (or a
//! wildcard covering it) and take it over, since an edit keeps the creation time. So a claim is
//! dated from when its object was first seen claiming that name: claims standing at an
//! instance's first build are ordered by creation time, as before; a claim that appears later
//! (a new object, or an existing one claiming one more name) is younger than every claim seen
//! before it. Ties among claims that appeared in the same update fall back to creation time,
//! then names.
//!
//! The record is kept in memory per instance, by [`IncrementalDag`](super::IncrementalDag),
//! across updates and selection changes; a full build is given it ([`super::build::build_aged`]).
//! What outlives the process is a [`ClaimRecord`] (`claim_record`): exported by the caller after
//! an update, kept by `sluice run` in a ConfigMap per Gateway and by `sluice standalone` in its
//! `--claims-file`, and imported ([`ClaimAges::import`]) before the first build. At that build
//! each recorded claim that still stands gets its recorded date, a claim on a recorded name that
//! the record does not hold (it came while no process was watching) is dated after every
//! recorded one, and later claims after that. Without a record, standing claims count from
//! their creation time, except that a Contour root whose status says it lost the name stays
//! behind (see `seed_from_statuses` and README, "Multi-tenant security"), and so does a root
//! refused while parsing wherever a root that is not claims the name (`seed_refused`).
//!
//! Pure: the caller passes the snapshots and the changed roots; the clock is an update counter.

use std::collections::{BTreeMap, BTreeSet};

use super::claim_record::ClaimRecord;
use super::claims::{self, Claimant};
use super::select::Selection;
use super::traefik::{self, tcp};
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, TraefikKind};

/// A root that may claim hosts, by dialect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimId {
    pub key: ObjKey,
    pub dialect: Dialect,
}

/// The kind of a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dialect {
    Contour,
    Traefik,
    TraefikTcp,
}

impl ClaimId {
    pub fn of(c: &Claimant) -> Self {
        let dialect = match (c.traefik, c.tcp) {
            (false, _) => Dialect::Contour,
            (true, false) => Dialect::Traefik,
            (true, true) => Dialect::TraefikTcp,
        };
        Self {
            key: c.key.clone(),
            dialect,
        }
    }
}

/// The hosts a root claims and whether it is refused while parsing, when the caller read them
/// already (`None`: not read).
pub(super) type KnownClaims<'a> = &'a dyn Fn(&ClaimId) -> Option<(BTreeSet<String>, bool)>;

/// The update at which each standing claim was first seen, for claims that appeared after the
/// first build (those standing then are at 0 and not stored), or its imported date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimAges {
    since: BTreeMap<(String, ClaimId), u64>,
    /// The date of the last update; after an import, above every imported date.
    epoch: u64,
    /// The first build is done.
    started: bool,
    /// A record to apply at the first build.
    pending: Option<ClaimRecord>,
}

impl ClaimAges {
    /// When the claim of `c` on `fqdn` was first seen (0: standing at the first build).
    pub fn since(&self, fqdn: &str, c: &Claimant) -> u64 {
        if self.since.is_empty() {
            return 0;
        }
        self.since
            .get(&(fqdn.to_owned(), ClaimId::of(c)))
            .copied()
            .unwrap_or(0)
    }

    /// `c` as a claimant of `fqdn`, dated.
    pub fn aged(&self, fqdn: &str, c: Claimant) -> Claimant {
        Claimant {
            since: self.since(fqdn, &c),
            ..c
        }
    }

    /// Records an update from `old` (judged by `old_sel`) to `new` (by `sel`): each root whose
    /// claims may have changed is compared, a name it claims now and did not before is dated
    /// now, a name it no longer claims is forgotten. `changes` lists the changed objects; with
    /// `everything`, every root of both snapshots is compared (a selection change). The first
    /// call (nothing built yet) dates nothing but what an imported record says.
    pub fn observe(
        &mut self,
        old: (&ClusterSnapshot, &Selection),
        new: (&ClusterSnapshot, &Selection),
        changes: &ChangeSet,
        everything: bool,
    ) {
        self.observe_known(old, new, changes, everything, &|_| None);
    }

    /// Whether the first build is done (the next [`Self::observe`] dates by what it finds).
    pub(super) fn started(&self) -> bool {
        self.started
    }

    /// [`Self::observe`], given what the caller read already of some Traefik roots in `new`
    /// (`known`: the hosts a root claims and whether it is refused, `None` when not read), so
    /// that the first build reads each root's rules once for the dates and the DAG.
    pub(super) fn observe_known(
        &mut self,
        (old, old_sel): (&ClusterSnapshot, &Selection),
        (new, sel): (&ClusterSnapshot, &Selection),
        changes: &ChangeSet,
        everything: bool,
        known: KnownClaims<'_>,
    ) {
        if !self.started {
            // On a copy: a first build that panics part way leaves everything as it was (the
            // record still pending), and the next update starts it again.
            let mut next = self.clone();
            next.started = true;
            let recorded = next.apply_record(new, sel);
            let after = next.epoch.saturating_add(1);
            next.seed_from_statuses(new, sel, &recorded, after);
            next.seed_refused(new, sel, &recorded, after, known);
            next.epoch = after;
            *self = next;
            return;
        }
        // Nothing is recorded until every root was compared: an update that panics part way
        // (a bug) leaves the record as it was, and it is observed again from there.
        let epoch = self.epoch.saturating_add(1);
        let ids: BTreeSet<ClaimId> = if everything {
            all_roots(old).chain(all_roots(new)).collect()
        } else if changes.has_whole_kinds() {
            let resolved = changes.resolve(old, new);
            changed_roots(&resolved).collect()
        } else {
            changed_roots(changes).collect()
        };
        let (mut gone, mut added) = (Vec::new(), Vec::new());
        for id in ids {
            #[cfg(test)]
            super::faults::hit(super::faults::Stage::ClaimAges);
            // An object deleted and created again under its name (another uid) is a new
            // claimant: every name it claims is dated now.
            let recreated = uid(old, &id) != uid(new, &id);
            let after = claimed(new, sel, &id);
            let before = claimed(old, old_sel, &id);
            if recreated {
                gone.extend(before.iter().map(|f| (f.clone(), id.clone())));
                added.extend(after.iter().map(|f| (f.clone(), id.clone())));
                continue;
            }
            gone.extend(before.difference(&after).map(|f| (f.clone(), id.clone())));
            added.extend(after.difference(&before).map(|f| (f.clone(), id.clone())));
        }
        for claim in gone {
            self.since.remove(&claim);
        }
        self.since
            .extend(added.into_iter().map(|claim| (claim, epoch)));
        self.epoch = epoch;
    }
}

impl ClaimAges {
    /// Keeps `record` for the first build (see the module documentation); `false` (and nothing
    /// kept) once that build is done.
    pub fn import(&mut self, record: ClaimRecord) -> bool {
        if self.started {
            return false;
        }
        self.pending = Some(record);
        true
    }

    /// At the first build, gives each recorded claim that `snap` still holds its date, and
    /// every other claim on a recorded name a date after all of them; sets the epoch to the
    /// latest date given. Returns the recorded names. A recorded claim of a root that is gone,
    /// no longer claims the name, or has another uid than the one recorded (deleted and
    /// created again) is ignored.
    fn apply_record(&mut self, snap: &ClusterSnapshot, sel: &Selection) -> BTreeSet<String> {
        let Some(mut record) = self.pending.take() else {
            return BTreeSet::new();
        };
        // Only the order of the recorded dates matters: renumbered 1, 2, … so that no value a
        // record holds (a forged `u64::MAX`) can use up the dates of later claims.
        record.renumber();
        let mut claims_of: BTreeMap<ClaimId, BTreeSet<String>> = BTreeMap::new();
        let mut recorded: BTreeSet<(String, ClaimId)> = BTreeSet::new();
        for (fqdn, claimants) in &record.names {
            for c in claimants {
                let since = c.since;
                // A kind of root a newer version records: none claims anything here.
                let Some(id) = c.id() else {
                    continue;
                };
                // Another object under the recorded name (deleted and created again): a new
                // claimant, dated like every claim the record does not hold.
                if c.uid.is_some() && c.uid.as_deref() != uid(snap, &id) {
                    continue;
                }
                let hosts = claims_of
                    .entry(id.clone())
                    .or_insert_with(|| claimed(snap, sel, &id));
                if !hosts.contains(fqdn) {
                    continue;
                }
                self.epoch = self.epoch.max(since);
                if since > 0 {
                    self.since.insert((fqdn.clone(), id.clone()), since);
                }
                recorded.insert((fqdn.clone(), id));
            }
        }
        let names: BTreeSet<String> = record.names.into_keys().collect();
        if names.is_empty() {
            return names;
        }
        let after = self.epoch.saturating_add(1);
        for id in all_roots(snap) {
            let hosts = match claims_of.remove(&id) {
                Some(hosts) => hosts,
                None => claimed(snap, sel, &id),
            };
            for fqdn in hosts.intersection(&names) {
                let key = (fqdn.clone(), id.clone());
                if !recorded.contains(&key) {
                    self.since.insert(key, after);
                }
            }
        }
        if self.since.values().any(|&v| v == after) {
            self.epoch = after;
        }
        names
    }

    /// At the first build, a Contour root whose status (written by Sluice before a restart or
    /// a change of leader) says it lost the name it claims keeps losing it: its claim is dated
    /// after every other standing claim. Only the status subresource carries that, which
    /// tenants are not normally allowed to write; a tenant who may write their own statuses can
    /// only erase the record of their own lost claims. Traefik objects have no status: their
    /// standing claims are ordered by creation time at the first build.
    /// Names an imported record holds are not seeded; a seeded claim is dated `at`.
    fn seed_from_statuses(
        &mut self,
        snap: &ClusterSnapshot,
        sel: &Selection,
        recorded: &BTreeSet<String>,
        at: u64,
    ) {
        for (key, route) in snap.ingress_routes.iter() {
            let Some(status) = route.status.as_ref() else {
                continue;
            };
            if status.current_status != "invalid" {
                continue;
            }
            let id = ClaimId {
                key: key.clone(),
                dialect: Dialect::Contour,
            };
            for fqdn in claimed(snap, sel, &id) {
                if recorded.contains(&fqdn) {
                    continue;
                }
                // Every status a Contour root that lost `fqdn` is given: to an older Contour
                // root, to a Traefik route (valid or refused), or to a wildcard covering it.
                let lost = [
                    format!("fqdn {fqdn:?} is already used by the older "),
                    traefik::taken(&fqdn, "", false),
                    format!("fqdn {fqdn:?} is covered by the wildcard host "),
                ];
                // Unnamed, the loss is every Gateway's that judged the object; named, only
                // the Gateway's own counts (`controller::status::combine_verdicts`).
                let d = &status.description;
                let own = |p: &String| {
                    d.starts_with(p.as_str())
                        || d.starts_with(&format!("Gateway {}: {p}", sel.gateway))
                        || d.contains(&format!("; Gateway {}: {p}", sel.gateway))
                };
                if lost.iter().any(own) {
                    self.since.insert((fqdn, id.clone()), at);
                }
            }
        }
    }
}

impl ClaimAges {
    /// At the first build, a claim of a root refused while parsing goes behind the claims of
    /// roots that are not, on every name the record does not hold (dated `at`): on the name
    /// itself, on a wildcard covering it, or on an exact name under it (a wildcard). Without
    /// this, the first build of a version that starts claiming for refused roots (or any
    /// start without a record) would order an old, deliberately broken object by its creation
    /// time ahead of the root serving the name, which would then be held unserved. While a
    /// process runs, a refused root ahead of one that is not is recorded (`claim_record`), so
    /// a restart keeps it there.
    fn seed_refused(
        &mut self,
        snap: &ClusterSnapshot,
        sel: &Selection,
        recorded: &BTreeSet<String>,
        at: u64,
        known: KnownClaims<'_>,
    ) {
        let mut served: BTreeSet<String> = BTreeSet::new();
        let mut refused: Vec<(String, ClaimId)> = Vec::new();
        for id in all_roots(snap) {
            let (hosts, is_refused) = known(&id).unwrap_or_else(|| claimed_refused(snap, sel, &id));
            for fqdn in hosts {
                // Served names count recorded or not (a recorded wildcard covers the unrecorded
                // names under it); refused claims are moved only on names not recorded.
                if !is_refused {
                    served.insert(fqdn);
                } else if !recorded.contains(&fqdn) {
                    refused.push((fqdn, id.clone()));
                }
            }
        }
        if refused.is_empty() {
            return;
        }
        // Wildcards covering a name served.
        let covering: BTreeSet<String> = served
            .iter()
            .filter_map(|f| traefik::hosts::covering_wildcard(f))
            .collect();
        for (fqdn, id) in refused {
            let behind = served.contains(&fqdn)
                || covering.contains(&fqdn)
                || traefik::hosts::covering_wildcard(&fqdn).is_some_and(|w| served.contains(&w));
            if behind {
                self.since.insert((fqdn, id), at);
            }
        }
    }
}

fn changed_roots(changes: &ChangeSet) -> impl Iterator<Item = ClaimId> + '_ {
    changes.objects().filter_map(|(kind, key)| {
        let dialect = match kind {
            Kind::IngressRoute => Dialect::Contour,
            Kind::Traefik(TraefikKind::IngressRoute, _) => Dialect::Traefik,
            Kind::Traefik(TraefikKind::IngressRouteTcp, _) => Dialect::TraefikTcp,
            _ => return None,
        };
        Some(ClaimId {
            key: key.clone(),
            dialect,
        })
    })
}

fn all_roots(snap: &ClusterSnapshot) -> impl Iterator<Item = ClaimId> + '_ {
    let id = |dialect| {
        move |key: &ObjKey| ClaimId {
            key: key.clone(),
            dialect,
        }
    };
    snap.ingress_routes
        .keys()
        .map(id(Dialect::Contour))
        .chain(
            snap.traefik_routes
                .effective()
                .into_keys()
                .map(id(Dialect::Traefik)),
        )
        .chain(
            snap.traefik_tcp_routes
                .effective()
                .into_keys()
                .map(id(Dialect::TraefikTcp)),
        )
}

/// The `metadata.uid` of the root `id` in `snap`, if it is there and has one.
pub(super) fn uid<'a>(snap: &'a ClusterSnapshot, id: &ClaimId) -> Option<&'a str> {
    match id.dialect {
        Dialect::Contour => {
            (snap.ingress_routes.get(&id.key)).and_then(|r| r.metadata.uid.as_deref())
        }
        Dialect::Traefik => {
            (snap.traefik_routes.get(&id.key)).and_then(|r| r.metadata.uid.as_deref())
        }
        Dialect::TraefikTcp => {
            (snap.traefik_tcp_routes.get(&id.key)).and_then(|r| r.metadata.uid.as_deref())
        }
    }
}

/// The hosts the root `id` claims in `snap` when `sel` judges it.
fn claimed(snap: &ClusterSnapshot, sel: &Selection, id: &ClaimId) -> BTreeSet<String> {
    claimed_refused(snap, sel, id).0
}

/// The hosts the root `id` claims in `snap` when `sel` judges it, and whether it is refused
/// while parsing.
fn claimed_refused(
    snap: &ClusterSnapshot,
    sel: &Selection,
    id: &ClaimId,
) -> (BTreeSet<String>, bool) {
    let hosts = match id.dialect {
        Dialect::Contour => snap
            .ingress_routes
            .get(&id.key)
            .filter(|r| sel.selects(r))
            .and_then(|r| claims::claim(sel, &id.key, r))
            .and_then(Result::ok)
            .into_iter()
            .collect(),
        // A refused root claims the names its rules name (`traefik::refused_hosts`).
        Dialect::Traefik => {
            return traefik::root(snap, sel, &id.key)
                .map(|r| traefik::refused_hosts::of_route(sel, &r))
                .unwrap_or_default();
        }
        // A root claiming through a form new in this version goes behind at a start too
        // (`Claimant::late`).
        Dialect::TraefikTcp => {
            return tcp::root(snap, sel, &id.key)
                .map(|r| {
                    let (hosts, refused) = traefik::refused_hosts::of_tcp(sel, &r);
                    (hosts, refused || traefik::refused_hosts::late_tcp(&r))
                })
                .unwrap_or_default();
        }
    };
    (hosts, false)
}
