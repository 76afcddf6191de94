//! Open hosts (the catch-all `*` and wildcards `*.parent` Traefik rules claim) in the
//! incremental DAG. The full build decides two things about them from every name the Gateway
//! holds (`dag::open_hosts`); here each is kept per name, with exactly what it reads:
//!
//! - **Cover.** An exact name is covered, and owned by nobody, when the wildcard one label above
//!   it has an oldest claimant older than the name's own. The verdict reads the name's claimants
//!   and the wildcard's oldest claimant, both in the per-fqdn claimant sets, so it is computed
//!   when asked ([`IncrementalDag::cover`]). A name is settled again when its claimants change
//!   (as any name) or when the wildcard's oldest claimant changes: an index of the names claimed
//!   under each wildcard (`under`) gives exactly those, and no other name is looked at.
//! - **Held names.** While an open host is served (a virtual host named `*…` was built), every
//!   owned name without a virtual host of its own gets one without routes, of its owner. Such an
//!   entry reads three things: whether an open host is served, the name's owner, and whether the
//!   owner built the name. It is judged again for the names whose owner was settled or whose
//!   built virtual host changed in this update, and for every owned name only when the first
//!   open host is served or the last one goes.
//!
//! The open host's own virtual host is built from its owner's IngressRoute alone (a Traefik
//! root, in `traefik`), so an edit elsewhere never rebuilds it: what it answers (names nobody
//! holds) is Envoy's choice among the virtual hosts, not the DAG's.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use super::{Dirty, IncrementalDag};
use crate::dag::build::owner_name;
use crate::dag::claims::Claimant;
use crate::dag::model::VirtualHost;
use crate::dag::traefik::hosts::covering_wildcard;

/// What the incremental DAG keeps about open hosts.
#[derive(Debug, Default)]
pub(super) struct OpenHosts {
    /// `(wildcard, name)` for every exact name with claimants one label under `wildcard`,
    /// whether or not the wildcard is claimed: one ordered set, so the names under a wildcard
    /// are a range.
    under: BTreeSet<(String, String)>,
    /// The virtual hosts without routes of held names.
    pub(super) held: BTreeMap<String, Arc<VirtualHost>>,
    /// Whether an open host was served after the last update.
    serving: bool,
}

impl OpenHosts {
    /// The exact names claimed one label under `wildcard`, in name order.
    pub(super) fn names_under(&self, wildcard: &str) -> Vec<String> {
        let from = (wildcard.to_owned(), String::new());
        (self.under.range(from..))
            .take_while(|(w, _)| w == wildcard)
            .map(|(_, name)| name.clone())
            .collect()
    }
}

impl IncrementalDag {
    /// The wildcard covering the exact name `fqdn` and its owner, when that owner is older than
    /// every claimant of `fqdn` (then nobody owns `fqdn`).
    pub(super) fn cover(&self, fqdn: &str) -> Option<(String, &Claimant)> {
        let wildcard = covering_wildcard(fqdn)?;
        let owner = self.claimants.get(&wildcard)?.first()?;
        let oldest = self.claimants.get(fqdn)?.first()?;
        (owner < oldest).then_some((wildcard, owner))
    }

    /// Settles the owner of every name of `fqdns` (whose claimants changed) and of every name
    /// claimed under a wildcard whose owner changed; adds the latter to `fqdns`.
    pub(super) fn settle_owners(
        &mut self,
        fqdns: &mut BTreeSet<String>,
        roots: &mut BTreeSet<crate::snapshot::ObjKey>,
        touched_groups: &mut BTreeSet<u64>,
        dirty: &mut Dirty,
    ) {
        for fqdn in fqdns.iter() {
            let Some(wildcard) = covering_wildcard(fqdn) else {
                continue;
            };
            let entry = (wildcard, fqdn.clone());
            if self.claimants.contains_key(fqdn) {
                self.open.under.insert(entry);
            } else {
                self.open.under.remove(&entry);
            }
        }
        let mut under = Vec::new();
        for fqdn in fqdns.iter() {
            if self.settle_owner(fqdn, roots, touched_groups, dirty) && fqdn.starts_with("*.") {
                let from = (fqdn.clone(), String::new());
                under.extend(
                    self.open
                        .under
                        .range(from..)
                        .take_while(|(w, _)| w == fqdn)
                        .map(|(_, name)| name.clone()),
                );
            }
        }
        for name in under {
            if !fqdns.contains(&name) {
                self.settle_owner(&name, roots, touched_groups, dirty);
                fqdns.insert(name);
            }
        }
    }

    /// Brings the held names' virtual hosts in line after the roots were built; `settled`: the
    /// names whose owner was settled in this update.
    pub(super) fn settle_held(&mut self, settled: &BTreeSet<String>, dirty: &mut Dirty) {
        let open_names = (Bound::Included("*"), Bound::Excluded("+"));
        let serving = self.vhosts.range::<str, _>(open_names).next().is_some();
        let names: Vec<String> = if serving != self.open.serving {
            self.open.serving = serving;
            let owned = self.owners.keys();
            owned.chain(self.open.held.keys()).cloned().collect()
        } else if serving {
            settled.iter().chain(&dirty.vhosts).cloned().collect()
        } else {
            return;
        };
        for name in names {
            let owner = self
                .owners
                .get(&name)
                .filter(|_| serving && !self.vhosts.contains_key(&name))
                .map(owner_name);
            let now = self.open.held.get(&name).map(|v| &v.owner);
            if now == owner.as_ref() {
                continue;
            }
            match owner {
                Some(owner) => {
                    let vh = VirtualHost {
                        fqdn: name.clone(),
                        owner,
                        tls: None,
                        routes: Vec::new(),
                        tcp_proxy: None,
                    };
                    self.open.held.insert(name.clone(), Arc::new(vh));
                }
                None => {
                    self.open.held.remove(&name);
                }
            }
            dirty.vhosts.insert(name);
        }
    }
}
