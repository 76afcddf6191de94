//! How many of a DAG's statuses are valid, invalid and orphaned, per kind, and which are not
//! valid: what the Gateway status's route counts, the routes metric and standalone's verdict
//! lines read. The incremental DAG keeps it as it patches the DAG's statuses
//! (`IncrementalDag::status_tally`), so a pass reads it instead of looking at every status;
//! [`StatusTally::of`] works it out from a whole DAG (the reference its tests compare with).

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Dag, ObjectStatus, RouteStatus, Validity};
use super::traefik::verdicts;
use crate::api::gateway::RouteCounts;
use crate::snapshot::ObjKey;

/// Verdict counts: Contour IngressRoutes, and other objects by kind and API version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub routes: RouteCounts,
    /// By `(kind, apiVersion)`; kinds and versions with no object left are removed.
    pub objects: BTreeMap<(String, String), RouteCounts>,
}

/// [`StatusCounts`], and the statuses that are not valid, in the DAG's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusTally {
    pub counts: StatusCounts,
    not_valid_routes: BTreeSet<ObjKey>,
    /// `(kind's rank, namespace, name)`: the order of `Dag::object_statuses`.
    not_valid_objects: BTreeSet<(u8, String, String)>,
}

fn count(c: &mut RouteCounts, v: Validity, by: i32) {
    let n = match v {
        Validity::Valid => &mut c.valid,
        Validity::Invalid => &mut c.invalid,
        Validity::Orphaned => &mut c.orphaned,
    };
    *n = n.saturating_add(by);
}

fn object_key(s: &ObjectStatus) -> (u8, String, String) {
    (verdicts::rank(&s.kind), s.namespace.clone(), s.name.clone())
}

impl StatusTally {
    /// The tally of `dag`'s statuses, from every one of them.
    pub fn of(dag: &Dag) -> Self {
        let mut t = Self::default();
        for s in &dag.statuses {
            t.route(None, Some(s));
        }
        for s in &dag.object_statuses {
            t.object(None, Some(s));
        }
        t
    }

    /// An IngressRoute's status entry `old` replaced by `new` (either absent).
    pub(super) fn route(&mut self, old: Option<&RouteStatus>, new: Option<&RouteStatus>) {
        let key = |s: &RouteStatus| ObjKey::new(s.namespace.as_str(), s.name.as_str());
        if let Some(s) = old {
            count(&mut self.counts.routes, s.current_status, -1);
            if s.current_status != Validity::Valid {
                self.not_valid_routes.remove(&key(s));
            }
        }
        if let Some(s) = new {
            count(&mut self.counts.routes, s.current_status, 1);
            if s.current_status != Validity::Valid {
                self.not_valid_routes.insert(key(s));
            }
        }
    }

    /// Another object's status entry `old` replaced by `new` (either absent).
    pub(super) fn object(&mut self, old: Option<&ObjectStatus>, new: Option<&ObjectStatus>) {
        if let Some(s) = old {
            let series = (s.kind.clone(), s.api_version.clone());
            if let Some(c) = self.counts.objects.get_mut(&series) {
                count(c, s.current_status, -1);
                if *c == RouteCounts::default() {
                    self.counts.objects.remove(&series);
                }
            }
            if s.current_status != Validity::Valid {
                self.not_valid_objects.remove(&object_key(s));
            }
        }
        if let Some(s) = new {
            let series = (s.kind.clone(), s.api_version.clone());
            count(
                self.counts.objects.entry(series).or_default(),
                s.current_status,
                1,
            );
            if s.current_status != Validity::Valid {
                self.not_valid_objects.insert(object_key(s));
            }
        }
    }

    /// The statuses of `dag` (the DAG this tally is of) that are not valid, in its order:
    /// IngressRoutes, then other objects.
    pub fn not_valid<'a>(
        &'a self,
        dag: &'a Dag,
    ) -> (
        impl Iterator<Item = &'a RouteStatus> + 'a,
        impl Iterator<Item = &'a ObjectStatus> + 'a,
    ) {
        let routes = self.not_valid_routes.iter().filter_map(|k| {
            let i = dag
                .statuses
                .entries()
                .binary_search_by(|s| {
                    (s.namespace.as_str(), s.name.as_str()).cmp(&(&*k.namespace, &*k.name))
                })
                .ok()?;
            dag.statuses.get(i).map(|s| &**s)
        });
        let objects = self
            .not_valid_objects
            .iter()
            .filter_map(|(rank, ns, name)| {
                let i = dag
                    .object_statuses
                    .entries()
                    .binary_search_by(|s| {
                        (
                            verdicts::rank(&s.kind),
                            s.namespace.as_str(),
                            s.name.as_str(),
                        )
                            .cmp(&(*rank, ns.as_str(), name.as_str()))
                    })
                    .ok()?;
                dag.object_statuses.get(i).map(|s| &**s)
            });
        (routes, objects)
    }
}
