//! The record of host claim dates that outlives a process (see `claim_ages`): what `sluice run`
//! keeps in a ConfigMap per Gateway and `sluice standalone` in its `--claims-file`, so that a
//! restart, a change of leader or a new replica orders contested claims as before.
//!
//! What is recorded: every name whose claimants would be ordered differently without their
//! dates, that is by `creationTimestamp` alone (claims dated 0, as a process that just started
//! dates its standing claims), with its first [`MAX_CLAIMANTS`] claimants in order (the holder
//! first) and their dates (a claimant the record does not hold is dated after every recorded
//! one at the next start, so the holder and those first in line keep their places: thousands
//! of objects claiming one held name cannot push the record of that name over the budget); and
//! both sides of every wildcard and exact name it covers whose comparison would change the same
//! way, for any of their first claimants, not only the holders (the holder of either may leave
//! and the next in line take over). Other names need nothing: their order is the same from creation times, and every claim
//! seen after the record is read is dated after every recorded one. So a record is small
//! whatever the number of routes: it grows with the names whose holder is not their oldest
//! object.
//!
//! Each claimant is recorded with its object's `metadata.uid`: an object deleted and created
//! again under the same namespace/name is a new claimant, whose claim is dated when it is seen
//! (a recorded entry whose uid is not the live object's is ignored at the import; the running
//! process dates every claim of a recreated object anew, see `claim_ages`).
//!
//! Bounded: each name is charged to the namespace of the claimant that made it need a record
//! (the first one its creation time would put ahead of a claim dated before it: an old object
//! edited to claim a held name is charged, not the holder). A record larger than its budget
//! first records every name's holder alone, then the rest of each line. Each time, the names
//! whose absence would hand a name to another namespace at the next start go first (a name
//! whose oldest object by creation time is of another namespace than its holder, and both sides
//! of a wildcard and an exact name under it held in two namespaces whose comparison would
//! turn), in turns by pair of namespaces (the holder's, and the one charged): each pair's first
//! such name, then each one's second, so a tenant's volume of contests or names buys it one
//! place per turn and per pair of namespaces it takes part in, never the places of others. Then the other names: those
//! charged to the namespaces charged the least first (a tenant who makes thousands of contests
//! among its own names crowds out only its own), among those the names whose holder's
//! namespace holds the fewest recorded names, then by name. A name recorded with its holder
//! alone keeps its holder at the next start; the names left out, or recorded with their holder
//! alone, are counted for the caller to report. What a budget cannot protect: when the names
//! contested across namespaces alone outgrow it (about 6,000 holder lines fit in 900 KiB), the
//! last turns are left out and those names go to their oldest object at the next start.
//!
//! Pure and deterministic: [`ClaimRecord::of`] reads the claimants of each name, in their order.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::claim_ages::{ClaimId, Dialect};
use super::claims::Claimant;
use super::traefik::hosts::covering_wildcard;
use crate::snapshot::ObjKey;

/// Contested names, each with its claimants in order, oldest first.
///
/// Read tolerantly, so that a version rolled back to can read what a newer one wrote: fields
/// it does not know are ignored, and so is a claim of a kind of root it does not know (no such
/// root claims anything in it); the fields it knows keep their strict types. A newer layout
/// whose known fields change meaning must change the format its container names
/// (`sluice.dev/claims/v1`, see `controller::claims` and `standalone::claims_file`), which
/// every reader refuses, loudly, when it is not the one it knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub names: BTreeMap<String, Vec<RecordedClaim>>,
}

/// One claimant of a recorded name: the root (with its `metadata.uid`, if it had one), and the
/// date of its claim (0: it stood when the process that dated it started, and is ordered by
/// creation time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedClaim {
    pub kind: RecordedKind,
    pub namespace: String,
    pub name: String,
    /// The object's uid: an object deleted and created again under the same name is another
    /// claimant, and the recorded date is not its own (see `ClaimAges::import`). Absent from
    /// records written before uids were recorded (then the name alone is matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub since: u64,
}

/// The kind of root a recorded claim is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RecordedKind {
    /// A Contour IngressRoute.
    Contour,
    /// A Traefik IngressRoute.
    Traefik,
    /// A Traefik IngressRouteTCP.
    TraefikTcp,
    /// A kind a newer version records and this one does not know: ignored when read, never
    /// written.
    #[serde(other)]
    Unknown,
}

impl RecordedClaim {
    fn of(c: &Claimant, uid: Option<String>) -> Self {
        let kind = match ClaimId::of(c).dialect {
            Dialect::Contour => RecordedKind::Contour,
            Dialect::Traefik => RecordedKind::Traefik,
            Dialect::TraefikTcp => RecordedKind::TraefikTcp,
        };
        Self {
            kind,
            namespace: c.key.namespace.to_string(),
            name: c.key.name.to_string(),
            uid,
            since: c.since,
        }
    }

    /// The root this claim is from; `None` for a kind this version does not know.
    pub(super) fn id(&self) -> Option<ClaimId> {
        let dialect = match self.kind {
            RecordedKind::Contour => Dialect::Contour,
            RecordedKind::Traefik => Dialect::Traefik,
            RecordedKind::TraefikTcp => Dialect::TraefikTcp,
            RecordedKind::Unknown => return None,
        };
        Some(ClaimId {
            key: ObjKey::new(self.namespace.clone(), self.name.clone()),
            dialect,
        })
    }
}

impl ClaimRecord {
    /// The record of `names` (each name's claimants sorted, oldest first), within `budget`
    /// bytes of JSON, each claimant with its uid (`uid`); returns it and how many names were
    /// left out for the budget or recorded with their holder alone.
    pub fn of<S: AsRef<[Claimant]>>(
        names: &BTreeMap<String, S>,
        budget: usize,
        uid: &dyn Fn(&ClaimId) -> Option<String>,
    ) -> (Self, usize) {
        let Needed {
            names: needed,
            covering_served,
        } = needed(names);
        let served_under = |name: &str| covering_served.contains(name);
        Self::of_needed(names, &needed, &served_under, budget, uid)
    }

    /// [`Self::of`], given the names that need a record (`needed`, as `needed(names)` finds
    /// them: the incremental DAG keeps them per change, see [`NeededNames`]) and whether a
    /// root that is not refused claims a name one label under each wildcard (`served_under`).
    pub(super) fn of_needed<S: AsRef<[Claimant]>>(
        names: &BTreeMap<String, S>,
        needed: &BTreeSet<&str>,
        served_under: &dyn Fn(&str) -> bool,
        budget: usize,
        uid: &dyn Fn(&ClaimId) -> Option<String>,
    ) -> (Self, usize) {
        let start = Start {
            served_under,
            names,
        };
        let crossing = crossing(names, needed, &start);
        let claimants_of = |name: &str| names.get(name).map_or(&[][..], |c| c.as_ref());
        let charged_ns = |name: &str| charged(claimants_of(name)).map_or("", |c| &*c.key.namespace);
        let holder_ns = |name: &str| claimants_of(name).first().map_or("", |c| &*c.key.namespace);
        // Kept first: the names whose loss would hand a name to another namespace at the next
        // start (`crossing`), in turns by holder and charged namespace (the first such name of
        // each pair of namespaces, in name order, then each pair's second, ...): a tenant's
        // volume, of contests or of names, buys it one place per turn for each pair of
        // namespaces it holds names in or contests from, never the places of others. Then the
        // rest: the names charged to the namespaces charged the least; among the names charged
        // to one namespace, those whose holder's namespace holds the fewest recorded names;
        // then by name.
        let mut per_charged: BTreeMap<&str, usize> = BTreeMap::new();
        let mut per_holder: BTreeMap<&str, usize> = BTreeMap::new();
        for name in needed {
            *per_charged.entry(charged_ns(name)).or_default() += 1;
            *per_holder.entry(holder_ns(name)).or_default() += 1;
        }
        let mut turn_of: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let mut order: Vec<(bool, usize, usize, usize, &str)> = needed
            .iter()
            .map(|name| {
                let (c, h) = (charged_ns(name), holder_ns(name));
                if crossing.contains(name) {
                    let turn = turn_of.entry((h, c)).or_default();
                    *turn += 1;
                    (false, *turn, 0, 0, *name)
                } else {
                    (true, 0, per_charged[c], per_holder[h], *name)
                }
            })
            .collect();
        order.sort_unstable();
        let recorded = |name: &str, n: usize| -> Vec<RecordedClaim> {
            (claimants_of(name)[..n].iter())
                .map(|c| RecordedClaim::of(c, uid(&ClaimId::of(c))))
                .collect()
        };
        // First every name's holder alone, in that order, as far as the budget goes: a name
        // recorded with its holder keeps its holder at the next start (a claimant the record
        // does not hold is dated after every recorded one). Then, in the same order, the rest
        // of each line (up to `MAX_CLAIMANTS`) where the budget still allows.
        let mut record = Self::default();
        let (mut used, mut dropped) = (EMPTY_SIZE, 0);
        for &(_, _, _, _, name) in &order {
            let claims = recorded(name, kept(claimants_of(name)).min(1));
            let size = entry_size(name, &claims);
            if used + size > budget {
                dropped += 1;
                continue;
            }
            used += size;
            record.names.insert(name.to_owned(), claims);
        }
        for &(_, _, _, _, name) in &order {
            let n = kept(claimants_of(name));
            let Some(holder_only) = record.names.get_mut(name).filter(|_| n > 1) else {
                continue;
            };
            let claims = recorded(name, n);
            let (before, after) = (entry_size(name, holder_only), entry_size(name, &claims));
            if used + after - before > budget {
                dropped += 1;
                continue;
            }
            used += after - before;
            *holder_only = claims;
        }
        record.renumber();
        (record, dropped)
    }

    /// Its dates renumbered 1, 2, … in their order (0 kept): only their order matters, and a
    /// record read back renumbers them the same way (see `ClaimAges::import`), so a process
    /// started from a record records the same thing.
    pub(super) fn renumber(&mut self) {
        let ranks: BTreeMap<u64, u64> = (self.names.values().flatten())
            .map(|c| c.since)
            .filter(|&since| since > 0)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .zip(1..)
            .collect();
        for c in self.names.values_mut().flatten() {
            c.since = ranks.get(&c.since).copied().unwrap_or(0);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The most claimants recorded for one name: beyond them, a tenant's own pile of claims may be
/// ordered differently after a restart, never ahead of the ones recorded.
pub const MAX_CLAIMANTS: usize = 16;

/// How many of `claimants` (in order, the holder first) to record: the first
/// [`MAX_CLAIMANTS`]. A claimant the record does not hold is dated after every recorded one
/// at the next start, so the holder and the first in line keep their places.
fn kept(claimants: &[Claimant]) -> usize {
    claimants.len().min(MAX_CLAIMANTS)
}

/// The claimant a recorded name is charged to: the first one its creation time alone would put
/// ahead of a claimant dated before it (the holder if none: the name is recorded for a wildcard
/// comparison).
fn charged(claimants: &[Claimant]) -> Option<&Claimant> {
    let mut latest: Option<Claimant> = None;
    for c in claimants {
        let undated = dated(c, false);
        if latest.as_ref().is_some_and(|l| undated < *l) {
            return Some(c);
        }
        if latest.as_ref().is_none_or(|l| undated > *l) {
            latest = Some(undated);
        }
    }
    claimants.first()
}

/// The JSON of an empty record (`{"names":{}}`), for the budget.
const EMPTY_SIZE: usize = 12;

/// The bytes one name adds to the record's JSON (an upper bound: escapes counted).
fn entry_size(name: &str, claims: &[RecordedClaim]) -> usize {
    let text = serde_json::to_string(&(name, claims)).map_or(0, |t| t.len());
    // `"name":[...]` and a comma instead of the tuple's brackets and comma.
    text + 1
}

/// The names whose order needs their dates (see the module documentation).
fn needed<S: AsRef<[Claimant]>>(names: &BTreeMap<String, S>) -> Needed<'_> {
    let mut rec: BTreeSet<&str> = names
        .iter()
        .filter(|(_, c)| !creation_order_holds(c.as_ref()) || refused_ahead(c.as_ref()))
        .map(|(name, _)| name.as_str())
        .collect();
    // A wildcard and the exact names it covers are compared by their oldest claimants.
    let pairs: Vec<(&str, &str)> = if names.keys().any(|n| n.starts_with("*.")) {
        names
            .keys()
            .filter_map(|exact| {
                let wildcard = covering_wildcard(exact)?;
                let (wildcard, _) = names.get_key_value(wildcard.as_str())?;
                Some((wildcard.as_str(), exact.as_str()))
            })
            .collect()
    } else {
        Vec::new()
    };
    let covering_served: BTreeSet<String> = (names.iter())
        .filter(|(_, c)| served(c.as_ref()))
        .filter_map(|(name, _)| covering_wildcard(name))
        .collect();
    let served_under = |name: &str| covering_served.contains(name);
    let start = Start {
        served_under: &served_under,
        names,
    };
    loop {
        let mut grew = false;
        for &(wildcard, exact) in &pairs {
            let (kw, ke) = (rec.contains(wildcard), rec.contains(exact));
            if (kw && ke) || !start.turns((wildcard, exact), (kw, ke)).0 {
                continue;
            }
            grew |= rec.insert(wildcard);
            grew |= rec.insert(exact);
        }
        if !grew {
            break;
        }
    }
    Needed {
        names: rec,
        covering_served,
    }
}

/// The names a record needs, and the wildcards one label over a name some root that is not
/// refused claims (for [`Start`]).
struct Needed<'a> {
    names: BTreeSet<&'a str>,
    covering_served: BTreeSet<String>,
}

/// How a process that starts with the record dates the claimants of an unrecorded name: 0,
/// except a refused one on a name a wildcard or an exact name of a served root covers
/// (`ClaimAges::seed_refused`), which goes after every dated claim. (A refused first claimant
/// of a name some root that is not also claims is recorded: `refused_ahead`.)
struct Start<'a, S> {
    /// Whether a root that is not refused claims a name one label under a wildcard.
    served_under: &'a dyn Fn(&str) -> bool,
    names: &'a BTreeMap<String, S>,
}

impl<S: AsRef<[Claimant]>> Start<'_, S> {
    fn claimants(&self, name: &str) -> &[Claimant] {
        self.names.get(name).map_or(&[][..], |c| c.as_ref())
    }

    /// Whether a refused claimant of `name` goes behind at a start without its date: exactly
    /// when `ClaimAges::seed_refused` moves it, a root that is not refused claiming the name
    /// itself (review 7 R7.6: without this a late holder's name was not "crossing" and a full
    /// record left it out), a name under it, or the wildcard over it.
    fn seeds(&self, name: &str) -> bool {
        served(self.claimants(name))
            || (self.served_under)(name)
            || covering_wildcard(name).is_some_and(|w| served(self.claimants(&w)))
    }

    /// Whether some claimant of `wildcard` and some claimant of `exact` (among the first
    /// [`MAX_CLAIMANTS`] of each, those a record holds) would compare otherwise at the next
    /// start, the record holding each name or not (`kept`): not only their first claimants,
    /// since each claimant may become the first (the holder leaves, the next in line takes
    /// over). Also whether some such pair is of two namespaces.
    fn turns(&self, (wildcard, exact): (&str, &str), (kw, ke): (bool, bool)) -> (bool, bool) {
        let (ws, es) = (self.claimants(wildcard), self.claimants(exact));
        any_turns(
            (&ws[..kept(ws)], &es[..kept(es)]),
            (kw, ke),
            (self.seeds(wildcard), self.seeds(exact)),
        )
    }
}

/// Whether some claimant in `ws` (of a wildcard) and some in `es` (of an exact name under it)
/// would compare otherwise at the next start, `recorded` saying which of the two names the
/// record holds and `seeds` on which of the two a refused claimant goes behind without its
/// date; and whether some such pair is of two namespaces.
fn any_turns(
    (ws, es): (&[Claimant], &[Claimant]),
    recorded: (bool, bool),
    seeds: (bool, bool),
) -> (bool, bool) {
    let (mut turns, mut across) = (false, false);
    for w in ws {
        for e in es {
            let seeded = (
                w.behind_at_start() && seeds.0,
                e.behind_at_start() && seeds.1,
            );
            if compared_otherwise((w, e), recorded, seeded) {
                turns = true;
                across |= w.key.namespace != e.key.namespace;
            }
        }
    }
    (turns, across)
}

/// The needed names whose absence from the record would change, at the next start, which
/// namespace serves a name: a name whose first claimant by creation time is of another
/// namespace than its holder, and both sides of a wildcard and an exact name under it, held in
/// two namespaces, whose comparison would turn if either side were left out. A record over its
/// budget keeps these first: a tenant's contests among its own names (whatever they are
/// called, however many) cannot push out the line that keeps another tenant's name.
fn crossing<'a, S: AsRef<[Claimant]>>(
    names: &'a BTreeMap<String, S>,
    needed: &BTreeSet<&'a str>,
    start: &Start<'_, S>,
) -> BTreeSet<&'a str> {
    let claimants_of = |name: &str| names.get(name).map_or(&[][..], |c| c.as_ref());
    let mut crossing: BTreeSet<&str> = (needed.iter().copied())
        .filter(|&name| {
            let claimants = claimants_of(name);
            let Some(holder) = claimants.first() else {
                return false;
            };
            // Whether this name seeds its refused and late claimants behind, once per name (it
            // looks at the claimants of the covering wildcard): then one pass over the name's
            // claimants (review 6 R6.2: a comparison of two dated copies for every pair was
            // quadratic in a name's claimants).
            let seeds = start.seeds(name);
            let restarted = (claimants.iter())
                .map(|c| at_start(c, false, c.behind_at_start() && seeds))
                .min();
            restarted.is_some_and(|r| r.key.namespace != holder.key.namespace)
        })
        .collect();
    // A wildcard and an exact name under it are compared only when both are claimed; both are
    // needed when their comparison matters.
    for &exact in needed {
        let Some(wildcard) = covering_wildcard(exact) else {
            continue;
        };
        let Some(&wildcard) = needed.get(wildcard.as_str()) else {
            continue;
        };
        let across = [(false, true), (true, false), (false, false)]
            .into_iter()
            .any(|kept| start.turns((wildcard, exact), kept).1);
        if across {
            crossing.insert(wildcard);
            crossing.insert(exact);
        }
    }
    crossing
}

/// Whether a claimant refused while parsing comes before one that is not: a process that starts
/// without the record would put it behind them (see `ClaimAges::seed_refused`), so the name is
/// recorded.
fn refused_ahead(claimants: &[Claimant]) -> bool {
    let first_refused = claimants.iter().position(Claimant::behind_at_start);
    let last_served = claimants.iter().rposition(|c| !c.behind_at_start());
    matches!((first_refused, last_served), (Some(r), Some(v)) if r < v)
}

/// Whether `claimants` (sorted by their dates) are in the same order without them.
fn creation_order_holds(claimants: &[Claimant]) -> bool {
    claimants
        .windows(2)
        .all(|w| dated(&w[0], false) < dated(&w[1], false))
}

/// `c` with its date (`kept`), or as a process that just started dates it.
fn dated(c: &Claimant, kept: bool) -> Claimant {
    Claimant {
        since: if kept { c.since } else { 0 },
        ..c.clone()
    }
}

/// Whether one name's claimants (in order) need a record whatever the wildcard comparisons:
/// the first step of `needed`.
fn needed_alone(claimants: &[Claimant]) -> bool {
    !creation_order_holds(claimants) || refused_ahead(claimants)
}

/// Whether the comparison of a wildcard's oldest claimant `w` with the oldest claimant `e` of
/// an exact name under it would come out otherwise after a restart, `recorded` saying which of
/// the two names the record holds and `seeded` which of the two a process starting without
/// their dates puts behind every dated claim (`ClaimAges::seed_refused`): the comparison of
/// `needed`'s fixed point.
fn compared_otherwise(
    (w, e): (&Claimant, &Claimant),
    recorded: (bool, bool),
    seeded: (bool, bool),
) -> bool {
    let restarted = at_start(w, recorded.0, seeded.0) < at_start(e, recorded.1, seeded.1);
    (w < e) != restarted
}

/// `c` as a process that starts dates it: with its date when the record holds its name
/// (`kept`), else 0, or after every dated claim when it is `seeded` behind.
fn at_start(c: &Claimant, kept: bool, seeded: bool) -> Claimant {
    if !kept && seeded {
        Claimant {
            since: u64::MAX,
            ..c.clone()
        }
    } else {
        dated(c, kept)
    }
}

/// The names a record needs (what `needed` finds from every claimed name), kept per change by
/// the incremental DAG: a name's claimants changing looks at that name, and at the comparisons
/// of the wildcard covering it; only a change of a wildcard's own claimants, or of whether any
/// name under it is served, looks at every name under that wildcard.
///
/// Why that is `needed`'s fixed point. Each exact name is compared with one wildcard only (the
/// one covering it; a wildcard is covered by none), so the fixed point is one per claimed
/// wildcard, over the names claimed under it, in name order. If the wildcard is recorded on its
/// own, each name under it that is not is added when its comparison with the wildcard recorded
/// comes out otherwise (`recorded` below). If not, the first name (in order) whose comparison
/// with the wildcard unrecorded comes out otherwise adds the wildcard and itself, after which
/// every name is compared with the wildcard recorded: the same set again. None: nothing added.
/// A property test compares it with `needed` on random edits (`dag/incremental_tests.rs`).
#[derive(Debug, Default)]
pub(super) struct NeededNames {
    /// The names whose own claimants need their dates (`needed_alone`).
    alone: BTreeSet<String>,
    /// Each claimed wildcard's comparisons with the names claimed under it.
    stars: BTreeMap<String, Star>,
}

/// One claimed wildcard's comparisons (see [`NeededNames`]).
#[derive(Debug, Default)]
struct Star {
    /// The names under it some root that is not refused claims.
    served: BTreeSet<String>,
    /// The names under it whose comparison with the wildcard unrecorded comes out otherwise.
    unrecorded: BTreeSet<String>,
    /// The names under it, not recorded on their own, whose comparison with the wildcard
    /// recorded comes out otherwise.
    recorded: BTreeSet<String>,
}

/// Whether some root that is not refused claims the name.
fn served(claimants: &[Claimant]) -> bool {
    claimants.iter().any(|c| !c.behind_at_start())
}

impl NeededNames {
    /// Brings the index up to `names` after the claimants of the names `changed` changed (it
    /// may list more); `under` gives the exact names claimed one label under a wildcard.
    pub(super) fn refresh<S: AsRef<[Claimant]>>(
        &mut self,
        names: &BTreeMap<String, S>,
        changed: &BTreeSet<String>,
        under: &dyn Fn(&str) -> Vec<String>,
    ) {
        let claimants_of = |name: &str| names.get(name).map_or(&[][..], |c| c.as_ref());
        for name in changed {
            if needed_alone(claimants_of(name)) {
                self.alone.insert(name.clone());
            } else {
                self.alone.remove(name);
            }
        }
        let mut rebuild: BTreeSet<String> = (changed.iter())
            .filter(|n| n.starts_with("*."))
            .cloned()
            .collect();
        for name in changed {
            let Some(wildcard) = covering_wildcard(name) else {
                continue;
            };
            if rebuild.contains(&wildcard) {
                continue;
            }
            let claimants = claimants_of(name);
            let Some(star) = self.stars.get_mut(&wildcard) else {
                continue; // The wildcard is not claimed: no comparison.
            };
            let was_served = !star.served.is_empty();
            star.served.remove(name);
            star.unrecorded.remove(name);
            star.recorded.remove(name);
            if served(claimants) {
                star.served.insert(name.clone());
            }
            if star.served.is_empty() == was_served {
                // Whether the wildcard's oldest claimant goes behind at a start changed.
                rebuild.insert(wildcard);
                continue;
            }
            let (un, rec) = self.compare(names, &wildcard, &self.stars[&wildcard], name);
            if let Some(star) = self.stars.get_mut(&wildcard) {
                if un {
                    star.unrecorded.insert(name.clone());
                }
                if rec {
                    star.recorded.insert(name.clone());
                }
            }
        }
        for wildcard in &rebuild {
            self.stars.remove(wildcard);
            if claimants_of(wildcard).is_empty() {
                continue;
            }
            let names_under = under(wildcard);
            let mut star = Star {
                served: (names_under.iter())
                    .filter(|n| served(claimants_of(n)))
                    .cloned()
                    .collect(),
                ..Star::default()
            };
            for name in &names_under {
                let (un, rec) = self.compare(names, wildcard, &star, name);
                if un {
                    star.unrecorded.insert(name.clone());
                }
                if rec {
                    star.recorded.insert(name.clone());
                }
            }
            self.stars.insert(wildcard.clone(), star);
        }
    }

    /// How the exact name `name` compares with `wildcard` (whose `star` has its `served`
    /// names up to date): otherwise with the wildcard unrecorded; otherwise with it recorded
    /// and the name not recorded on its own.
    fn compare<S: AsRef<[Claimant]>>(
        &self,
        names: &BTreeMap<String, S>,
        wildcard: &str,
        star: &Star,
        name: &str,
    ) -> (bool, bool) {
        let claimants_of = |name: &str| names.get(name).map_or(&[][..], |c| c.as_ref());
        let (ws, es) = (claimants_of(wildcard), claimants_of(name));
        let pairs = (&ws[..kept(ws)], &es[..kept(es)]);
        // As `Start::seeds`: a name's own served claimants count too (review 7 R7.6).
        let seeds = (
            !star.served.is_empty() || served(ws),
            served(ws) || served(es),
        );
        let alone = self.alone.contains(name);
        let un = any_turns(pairs, (false, alone), seeds).0;
        let rec = !alone && any_turns(pairs, (true, false), seeds).0;
        (un, rec)
    }

    /// Whether a root that is not refused claims a name one label under `wildcard`.
    pub(super) fn served_under(&self, wildcard: &str) -> bool {
        self.stars
            .get(wildcard)
            .is_some_and(|s| !s.served.is_empty())
    }

    /// The names a record needs: `needed(names)` of the names it was brought up to.
    pub(super) fn names(&self) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self.alone.iter().map(String::as_str).collect();
        for (wildcard, star) in &self.stars {
            if self.alone.contains(wildcard) {
                out.extend(star.recorded.iter().map(String::as_str));
            } else if let Some(first) = star.unrecorded.first() {
                out.insert(wildcard);
                out.insert(first);
                out.extend(star.recorded.iter().map(String::as_str));
            }
        }
        out
    }
}
