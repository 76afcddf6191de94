//! The persistent ordered map the snapshot is made of: a red-black tree whose nodes and entries
//! are shared (`rpds`), so a clone is a pointer copy and an insert or removal copies only the
//! path to the entry (O(log n)), never the other entries. Old and new snapshots share
//! everything but those paths. Read like a `BTreeMap`: ordered by key.

use std::borrow::Borrow;
use std::fmt;
use std::ops::RangeBounds;

use rpds::RedBlackTreeMapSync;

/// An ordered map with O(1) clones and O(log n) updates. See the module documentation.
pub struct PMap<K, V>(RedBlackTreeMapSync<K, V>);

impl<K: Ord, V> Clone for PMap<K, V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Ord, V> Default for PMap<K, V> {
    fn default() -> Self {
        Self(RedBlackTreeMapSync::new_sync())
    }
}

impl<K: Ord, V> PMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.0.get(key)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.0.size()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.0.iter()
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.0.keys()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.0.values()
    }

    /// Entries whose keys fall in `range`, in key order.
    pub fn range<'a, Q, R>(
        &'a self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&'a K, &'a V)> + 'a
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized + 'a,
        R: RangeBounds<Q> + 'a,
    {
        self.0.range(range)
    }

    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.0.first()
    }

    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.0.last()
    }

    /// Adds or replaces an entry (copies the path to it, shares the rest).
    pub fn insert(&mut self, key: K, value: V) {
        self.0.insert_mut(key, value);
    }

    /// Removes an entry; returns whether there was one.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.remove_mut(key)
    }

    /// Whether both are the same tree (then they are equal without a look).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.0.ptr_eq(&other.0)
    }
}

impl<K: Ord + Clone, V: Clone> PMap<K, V> {
    /// The value of `key`, to change in place (copies the path to it).
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.0.get_mut(key)
    }
}

impl<K: Ord, V: PartialEq> PartialEq for PMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || self.0 == other.0
    }
}

impl<K: Ord, V: Eq> Eq for PMap<K, V> {}

impl<K: Ord + fmt::Debug, V: fmt::Debug> fmt::Debug for PMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for PMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for PMap<K, V> {
    type Output = V;

    /// The value of `key`; panics if there is none, as `BTreeMap`'s does.
    fn index(&self, key: &Q) -> &V {
        #[allow(clippy::expect_used)]
        self.get(key).expect("no entry found for key")
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a PMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = <&'a RedBlackTreeMapSync<K, V> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_is_unaffected_by_later_updates_and_reads_in_order() {
        let mut a: PMap<u32, &str> = [(3, "c"), (1, "a"), (2, "b")].into_iter().collect();
        let before = a.clone();
        assert!(a.ptr_eq(&before));
        a.insert(4, "d");
        assert!(a.remove(&1));
        assert!(!a.remove(&1));
        assert_eq!(before.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(a.keys().copied().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(a.range(3..).map(|(k, _)| *k).collect::<Vec<_>>(), [3, 4]);
        assert_eq!((a.len(), before.len()), (3, 3));
        assert_ne!(a, before);
        assert!(!a.ptr_eq(&before));
    }
}
