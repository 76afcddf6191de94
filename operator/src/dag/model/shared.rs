//! [`SharedList`]: a list of the DAG whose entries are shared (`Arc`), so that a copy of the
//! DAG is a copy of pointers, never of virtual hosts, clusters or statuses.
//!
//! Why. The incremental DAG hands its current [`super::Dag`] to readers (the route
//! coordinator, the status writer, attribution) as an `Arc` and patches it in the next pass;
//! while a reader still holds the previous one, the patch must work on a copy. With entries held
//! by value that copy was every entry of the instance (tens of milliseconds at 10,000 roots); with
//! shared entries it is one pointer per entry, and the entries a pass did not change are the
//! same allocations in both DAGs (and in the incremental DAG's own maps). Readers see an
//! immutable list: entries are read through `&T`, and the one way to change an entry in place,
//! [`SharedList::make_mut`], copies it first if anybody else holds it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// A list of shared entries. Iterates as `&T` (like the `Vec<T>` it replaces); otherwise reads
/// like a slice of `Arc<T>` (indexing, `binary_search_by`, `windows`), which reads like `T`.
/// Serializes, compares and prints exactly as a `Vec<T>` would.
pub struct SharedList<T>(Vec<Arc<T>>);

/// The entries of a [`SharedList`], in order.
pub type Iter<'a, T> = std::iter::Map<std::slice::Iter<'a, Arc<T>>, fn(&'a Arc<T>) -> &'a T>;

impl<T> SharedList<T> {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The entries, in order.
    pub fn iter(&self) -> Iter<'_, T> {
        self.0.iter().map(|e| &**e)
    }

    /// The shared entries, to share them further or compare allocations.
    pub fn entries(&self) -> &[Arc<T>] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries as a vector of shared pointers, for the incremental DAG's in-place patches.
    pub fn entries_mut(&mut self) -> &mut Vec<Arc<T>> {
        &mut self.0
    }

    pub fn push(&mut self, entry: T) {
        self.0.push(Arc::new(entry));
    }

    pub fn insert(&mut self, index: usize, entry: T) {
        self.0.insert(index, Arc::new(entry));
    }

    /// Removes and returns the entry at `index` (shared with whoever else holds it).
    pub fn remove(&mut self, index: usize) -> Arc<T> {
        self.0.remove(index)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.0.retain(|e| keep(e));
    }
}

impl<T: Clone> SharedList<T> {
    /// The entry at `index`, to change: copied first if another list or reader shares it, so
    /// nobody else sees the change.
    pub fn make_mut(&mut self, index: usize) -> &mut T {
        Arc::make_mut(&mut self.0[index])
    }

    /// Every entry, to change (each copied first if shared).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.0.iter_mut().map(Arc::make_mut)
    }
}

impl<T> Default for SharedList<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A pointer copy per entry.
impl<T> Clone for SharedList<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Deref for SharedList<T> {
    type Target = [Arc<T>];

    fn deref(&self) -> &[Arc<T>] {
        &self.0
    }
}

/// Entries can be replaced, reordered or swapped; an entry itself changes only through
/// [`SharedList::make_mut`] (copy on write).
impl<T> DerefMut for SharedList<T> {
    fn deref_mut(&mut self) -> &mut [Arc<T>] {
        &mut self.0
    }
}

impl<'a, T> IntoIterator for &'a SharedList<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T> From<Vec<T>> for SharedList<T> {
    fn from(entries: Vec<T>) -> Self {
        entries.into_iter().collect()
    }
}

impl<T> FromIterator<T> for SharedList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(entries: I) -> Self {
        Self(entries.into_iter().map(Arc::new).collect())
    }
}

impl<T> FromIterator<Arc<T>> for SharedList<T> {
    fn from_iter<I: IntoIterator<Item = Arc<T>>>(entries: I) -> Self {
        Self(entries.into_iter().collect())
    }
}

/// Entry by entry; the same allocation is equal without a look inside.
impl<T: PartialEq> PartialEq for SharedList<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| Arc::ptr_eq(a, b) || a == b)
    }
}

impl<T: Eq> Eq for SharedList<T> {}

impl<T: fmt::Debug> fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|e| &**e)).finish()
    }
}

impl<T: Serialize> Serialize for SharedList<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|e| &**e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_entries_and_make_mut_copies_only_the_one_changed() {
        let mut a: SharedList<String> = vec!["x".to_owned(), "y".to_owned()].into();
        let b = a.clone();
        assert!(Arc::ptr_eq(&a[0], &b[0]) && Arc::ptr_eq(&a[1], &b[1]));
        a.make_mut(1).push('!');
        assert_eq!(b.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(
            a.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["x", "y!"]
        );
        assert!(Arc::ptr_eq(&a[0], &b[0]));
        assert!(!Arc::ptr_eq(&a[1], &b[1]));
    }

    #[test]
    fn serializes_and_prints_as_a_vec() {
        let entries = vec![("a".to_owned(), 1), ("b".to_owned(), 2)];
        let list: SharedList<_> = entries.clone().into();
        assert_eq!(
            serde_json::to_string(&list).ok(),
            serde_json::to_string(&entries).ok()
        );
        assert_eq!(format!("{list:?}"), format!("{entries:?}"));
        assert_eq!(format!("{list:#?}"), format!("{entries:#?}"));
        let other: SharedList<_> = entries.into_iter().rev().collect();
        assert_ne!(list, other);
    }
}
