//! The DAG before the last update, kept to become the next one, so that an update while a
//! reader still holds the current DAG (the route coordinator in `sluice run` holds each DAG
//! until the next pass has published) copies nothing in proportion to the DAG.
//!
//! `Arc::make_mut` on a held DAG copies one pointer per entry of every list (70,000 at 10,000
//! roots), the one cost of an update that grew with the instance. Instead the incremental DAG
//! keeps the DAG it replaced (the *spare*) and the names the last update patched (its *lag*):
//! once the reader lets go of it, the spare is brought up to the current DAG by copying the
//! lag's entries from it (the spare differs from the current DAG only there: it is the current
//! DAG before the last update's patches), then patched for this update like the current DAG
//! would be. Both DAGs then hold the same entries, pointer for pointer, wherever the last two
//! updates changed nothing: the result, its sharing with the held DAG and whether it changed
//! are those of patching a copy. When nobody holds the current DAG it is patched in place and
//! no spare is kept; when the spare is held too (two passes in flight), the current DAG is
//! copied as before.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::traefik::{StatusId, object_status_order};
use super::{Dirty, IncrementalDag};
use crate::dag::model::{Dag, SharedList};
use crate::snapshot::ObjKey;

/// The DAG the last update replaced, and the names that update patched.
#[derive(Debug, Default)]
pub(super) struct Spare {
    dag: Option<Arc<Dag>>,
    lag: Lag,
    /// Updates that patched a spare (tests: the copy was avoided).
    #[cfg(test)]
    pub(super) reused: usize,
    /// Updates that copied a held DAG.
    #[cfg(test)]
    pub(super) copied: usize,
}

/// Names of entries an update patched.
#[derive(Debug, Default)]
pub(super) struct Lag {
    pub(super) vhosts: BTreeSet<String>,
    pub(super) clusters: BTreeSet<String>,
    pub(super) endpoints: BTreeSet<String>,
    pub(super) secrets: BTreeSet<String>,
    pub(super) statuses: BTreeSet<ObjKey>,
    pub(super) objects: BTreeSet<StatusId>,
}

impl Lag {
    /// The names `dirty` and `objects` will patch.
    pub(super) fn of(dirty: Dirty, objects: BTreeSet<StatusId>) -> Self {
        Self {
            vhosts: dirty.vhosts,
            clusters: dirty.clusters,
            endpoints: dirty.endpoints,
            secrets: dirty.secrets,
            statuses: dirty.statuses,
            objects,
        }
    }
}

impl IncrementalDag {
    /// A DAG nobody else holds, equal to the current one entry for entry (the same
    /// allocations), for this update to patch; the current DAG becomes the spare when someone
    /// holds it. Call [`Self::patched`] with the names patched.
    pub(super) fn writable(&mut self) -> Arc<Dag> {
        let mut current = std::mem::take(&mut self.dag);
        if Arc::get_mut(&mut current).is_some() {
            // Nobody holds it: patched in place; a spare is not needed.
            self.spare.dag = None;
            self.spare.lag = Lag::default();
            return current;
        }
        let spare = self.spare.dag.take();
        let lag = std::mem::take(&mut self.spare.lag);
        // Unless the reader holds the spare too.
        let next = match spare.filter(|s| Arc::strong_count(s) == 1 && Arc::weak_count(s) == 0) {
            Some(mut spare) => {
                catch_up(Arc::make_mut(&mut spare), &current, &lag);
                #[cfg(test)]
                {
                    self.spare.reused += 1;
                }
                spare
            }
            _ => {
                #[cfg(test)]
                {
                    self.spare.copied += 1;
                }
                Arc::new((*current).clone())
            }
        };
        self.spare.dag = Some(current);
        next
    }

    /// Records what this update patched (the spare's lag).
    pub(super) fn patched(&mut self, lag: Lag) {
        if self.spare.dag.is_some() {
            self.spare.lag = lag;
        }
    }

    /// Updates that patched a spare and updates that copied a held DAG.
    #[cfg(test)]
    pub(crate) fn spare_counts(&self) -> (usize, usize) {
        (self.spare.reused, self.spare.copied)
    }
}

/// Brings `spare` (the current DAG before the update that patched `lag`) up to `current`.
fn catch_up(spare: &mut Dag, current: &Dag, lag: &Lag) {
    for fqdn in &lag.vhosts {
        copy(&mut spare.virtual_hosts, &current.virtual_hosts, |v| {
            v.fqdn.as_str().cmp(fqdn)
        });
    }
    for name in &lag.clusters {
        copy(&mut spare.clusters, &current.clusters, |c| {
            c.name.as_str().cmp(name)
        });
    }
    for name in &lag.endpoints {
        copy(&mut spare.endpoints, &current.endpoints, |e| {
            e.service_name.as_str().cmp(name)
        });
    }
    for name in &lag.secrets {
        copy(&mut spare.secrets, &current.secrets, |s| {
            s.name.as_str().cmp(name)
        });
    }
    for key in &lag.statuses {
        copy(&mut spare.statuses, &current.statuses, |s| {
            (s.namespace.as_str(), s.name.as_str()).cmp(&(&*key.namespace, &*key.name))
        });
    }
    for id in &lag.objects {
        copy(&mut spare.object_statuses, &current.object_statuses, |s| {
            object_status_order(s, id)
        });
    }
}

/// Sets the entry of `to` that `at` finds to the one of `from` (the same allocation), adding or
/// removing it.
fn copy<T>(to: &mut SharedList<T>, from: &SharedList<T>, at: impl Fn(&T) -> std::cmp::Ordering) {
    let value = from
        .entries()
        .binary_search_by(|e| at(e))
        .ok()
        .and_then(|i| from.entries().get(i).cloned());
    let to = to.entries_mut();
    match (to.binary_search_by(|e| at(e)), value) {
        (Ok(i), Some(v)) => to[i] = v,
        (Ok(i), None) => {
            to.remove(i);
        }
        (Err(i), Some(v)) => to.insert(i, v),
        (Err(_), None) => {}
    }
}
