//! The incremental DAG's bookkeeping helpers: patching sorted lists in place, counting the
//! groups that use a shared part, and grouping roots (disjoint sets).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::dag::build::Parts;
use crate::dag::model::{Route, TcpProxy, Upstream};

/// Sets the entry of the sorted `list` at `key` to `value` (removing it when `None`); returns
/// whether the list changed.
pub(super) fn patch<T: PartialEq, K: ?Sized>(
    list: &mut Vec<T>,
    key: &K,
    value: Option<T>,
    cmp: impl Fn(&T, &K) -> std::cmp::Ordering,
) -> bool {
    match (list.binary_search_by(|e| cmp(e, key)), value) {
        (Ok(i), Some(v)) => {
            if list[i] == v {
                return false;
            }
            list[i] = v;
        }
        (Ok(i), None) => {
            list.remove(i);
        }
        (Err(i), Some(v)) => list.insert(i, v),
        (Err(_), None) => return false,
    }
    true
}

/// Adds a group's parts to the union, shared (`Arc`) with the DAG that lists them.
/// Sets the entry of the sorted `list` at `key` to the union map's entry `value` (removing it
/// when `None`); returns whether the list changed. An entry equal to the listed one keeps the
/// listed allocation, in the list and in the map: readers holding an earlier DAG, and the
/// translator's memo, share it, and the rebuilt copy is freed.
pub(super) fn patch_shared<T: PartialEq, K: ?Sized>(
    list: &mut Vec<Arc<T>>,
    key: &K,
    value: Option<&mut Arc<T>>,
    cmp: impl Fn(&T, &K) -> std::cmp::Ordering,
) -> bool {
    match (list.binary_search_by(|e| cmp(e, key)), value) {
        (Ok(i), Some(v)) => {
            if Arc::ptr_eq(&list[i], v) || list[i] == *v {
                *v = list[i].clone();
                return false;
            }
            list[i] = v.clone();
        }
        (Ok(i), None) => {
            list.remove(i);
        }
        (Err(i), Some(v)) => list.insert(i, v.clone()),
        (Err(_), None) => return false,
    }
    true
}

/// [`count_in`] for entries whose name stands for their whole content (clusters: the name
/// carries a hash of the rest), where a second entry of one name with other content is a bug
/// (checked in debug builds: the property tests compare with full builds).
pub(super) fn count_in_named<T: PartialEq + std::fmt::Debug>(
    all: &mut BTreeMap<String, (Arc<T>, usize)>,
    add: BTreeMap<String, T>,
    dirty: &mut BTreeSet<String>,
) {
    if cfg!(debug_assertions) {
        for (name, v) in &add {
            if let Some((old, _)) = all.get(name) {
                assert_eq!(**old, *v, "two different entries named {name}");
            }
        }
    }
    count_in(all, add, dirty);
}

pub(super) fn count_in<T>(
    all: &mut BTreeMap<String, (Arc<T>, usize)>,
    add: BTreeMap<String, T>,
    dirty: &mut BTreeSet<String>,
) {
    for (name, v) in add {
        let v = Arc::new(v);
        dirty.insert(name.clone());
        match all.entry(name) {
            // Equal whoever built it last (a name stands for its content); the newest wins.
            Entry::Occupied(mut e) => {
                let entry = e.get_mut();
                entry.0 = v;
                entry.1 += 1;
            }
            Entry::Vacant(e) => {
                e.insert((v, 1));
            }
        }
    }
}

pub(super) fn count_out<T>(
    all: &mut BTreeMap<String, (T, usize)>,
    remove: &[String],
    dirty: &mut BTreeSet<String>,
) {
    for name in remove {
        if let Some(entry) = all.get_mut(name) {
            entry.1 -= 1;
            if entry.1 == 0 {
                all.remove(name);
            }
        }
        dirty.insert(name.clone());
    }
}

/// Copies from `all` the clusters, endpoints and secrets `group`'s virtual hosts use.
pub(super) fn take_used(group: &mut Parts, all: &Parts) {
    for v in group.vhosts.values() {
        let clusters = v
            .routes
            .iter()
            .flat_map(Route::cluster_names)
            .chain(v.tcp_proxy.iter().flat_map(TcpProxy::cluster_names));
        for name in clusters {
            if let Some(cluster) = all.clusters.get(name) {
                group.clusters.insert(name.to_owned(), cluster.clone());
            }
        }
        if let Some(name) = v.tls.as_ref().and_then(|t| t.secret.as_ref())
            && let Some(s) = all.secrets.get(name)
        {
            group.secrets.insert(name.clone(), s.clone());
        }
    }
    for c in group.clusters.values() {
        if let Upstream::Eds { service_name } = &c.upstream
            && let Some(e) = all.endpoints.get(service_name)
        {
            group.endpoints.insert(service_name.clone(), e.clone());
        }
        for name in c.secret_names() {
            if let Some(s) = all.secrets.get(name) {
                group.secrets.insert(name.to_owned(), s.clone());
            }
        }
    }
}

/// Union-find over `0..n`.
pub(super) struct DisjointSets(Vec<usize>);

impl DisjointSets {
    pub(super) fn new(n: usize) -> Self {
        Self((0..n).collect())
    }

    pub(super) fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    pub(super) fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        let (lo, hi) = (a.min(b), a.max(b));
        self.0[hi] = lo;
    }
}

/// The groups (or Traefik roots) that read one dependency: nearly always one (a root's own
/// Service, its child IngressRoute), so held inline; a `BTreeSet` would allocate a node of eleven
/// ids for each of the tens of thousands of dependencies an instance at 10,000 roots has.
#[derive(Debug)]
pub(super) enum GroupSet<T = u64> {
    One(T),
    /// Sorted, no duplicates, at least two.
    Many(Vec<T>),
}

impl<T: Ord + Clone> GroupSet<T> {
    pub(super) fn new(id: T) -> Self {
        Self::One(id)
    }

    pub(super) fn insert(&mut self, id: T) {
        match self {
            Self::One(one) if *one == id => {}
            Self::One(one) => {
                let one = one.clone();
                *self = Self::Many(if one < id {
                    vec![one, id]
                } else {
                    vec![id, one]
                });
            }
            Self::Many(ids) => {
                if let Err(i) = ids.binary_search(&id) {
                    ids.insert(i, id);
                }
            }
        }
    }

    /// Removes `id`; returns whether the set is now empty.
    pub(super) fn remove(&mut self, id: &T) -> bool {
        match self {
            Self::One(one) => one == id,
            Self::Many(ids) => {
                if let Ok(i) = ids.binary_search(id) {
                    ids.remove(i);
                }
                if ids.len() == 1 {
                    let last = ids.remove(0);
                    *self = Self::One(last);
                }
                false
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let (one, many) = match self {
            Self::One(id) => (Some(id), &[][..]),
            Self::Many(ids) => (None, &ids[..]),
        };
        one.into_iter().chain(many.iter())
    }
}

/// A small ordered set as a sorted vector, with the `BTreeSet` calls the incremental DAG makes:
/// an fqdn nearly always has one claimant, and a `BTreeSet` allocates a node of eleven for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SortedVec<T>(Vec<T>);

/// Up to how many entries a [`SortedVec`] grows one entry at a time.
const EXACT_UP_TO: usize = 4;

impl<T> Default for SortedVec<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord> SortedVec<T> {
    /// Returns whether `value` was not there yet.
    pub(super) fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(i) => {
                // Most fqdns have one claimant for as long as the instance runs: grown by
                // `insert`, its vector would keep room for four (`Vec`'s smallest capacity).
                // Exact up to `EXACT_UP_TO`, doubling beyond (no quadratic copying when many
                // roots claim one name).
                if self.0.len() == self.0.capacity() && self.0.len() < EXACT_UP_TO {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, value);
                true
            }
        }
    }

    /// Returns whether `value` was there.
    pub(super) fn remove(&mut self, value: &T) -> bool {
        match self.0.binary_search(value) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn first(&self) -> Option<&T> {
        self.0.first()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
impl<T> SortedVec<T> {
    pub(super) fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<T> AsRef<[T]> for SortedVec<T> {
    fn as_ref(&self) -> &[T] {
        &self.0
    }
}

impl<'a, T> IntoIterator for &'a SortedVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
