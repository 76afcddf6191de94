//! One shared copy of each namespace and name an [`ObjKey`](super::ObjKey) holds.
//!
//! A cluster's keys repeat their parts: a namespace is named by every object in it (its
//! IngressRoutes, Services, EndpointSlices, Secrets), by the snapshot's indexes and by every
//! dependency the DAG records on them; names such as `web` recur across namespaces. Keys made
//! through [`intern`] point at one allocation per distinct string instead of one per key.
//!
//! The pool holds a string while any key does: when it has doubled since it was last pruned,
//! the strings nobody else holds any more are dropped (amortised O(1) per key made), so deleted
//! namespaces and objects do not accumulate. Results never depend on the pool: keys compare,
//! hash and order by content.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// Strings are pruned no more often than when the pool reaches this size.
const MIN_PRUNE_AT: usize = 4096;

#[derive(Default)]
struct Pool {
    strings: HashSet<Arc<str>>,
    /// The size at which the pool is next pruned.
    prune_at: usize,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(Mutex::default);

/// A part of a key: anything a string can be read from. An `Arc<str>` not in the pool yet
/// becomes the pool's copy (no new allocation).
pub trait KeyPart {
    fn as_key_str(&self) -> &str;
    fn into_arc(self) -> Arc<str>;
}

impl KeyPart for &str {
    fn as_key_str(&self) -> &str {
        self
    }
    fn into_arc(self) -> Arc<str> {
        Arc::from(self)
    }
}

impl KeyPart for &String {
    fn as_key_str(&self) -> &str {
        self
    }
    fn into_arc(self) -> Arc<str> {
        Arc::from(self.as_str())
    }
}

impl KeyPart for String {
    fn as_key_str(&self) -> &str {
        self
    }
    fn into_arc(self) -> Arc<str> {
        Arc::from(self)
    }
}

impl KeyPart for Arc<str> {
    fn as_key_str(&self) -> &str {
        self
    }
    fn into_arc(self) -> Arc<str> {
        self
    }
}

impl KeyPart for &Arc<str> {
    fn as_key_str(&self) -> &str {
        self
    }
    fn into_arc(self) -> Arc<str> {
        self.clone()
    }
}

/// The pool's copy of `part`, added if it has none.
pub fn intern(part: impl KeyPart) -> Arc<str> {
    POOL.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .intern(part)
}

impl Pool {
    fn intern(&mut self, part: impl KeyPart) -> Arc<str> {
        if let Some(held) = self.strings.get(part.as_key_str()) {
            return held.clone();
        }
        if self.strings.len() >= self.prune_at {
            // Only the pool holds these: no key uses them any more.
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.prune_at = MIN_PRUNE_AT.max(2 * self.strings.len());
        }
        let arc = part.into_arc();
        self.strings.insert(arc.clone());
        arc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_allocation() {
        let a = intern("intern-test-namespace");
        let b = intern(String::from("intern-test-namespace"));
        let c = intern(Arc::<str>::from("intern-test-namespace"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a, &c));
        assert_eq!(&*a, "intern-test-namespace");
        assert!(!Arc::ptr_eq(&a, &intern("intern-test-other")));
    }

    /// Keys made apart, from an object's metadata and from a reference to it, share their
    /// parts.
    #[test]
    fn keys_share_their_namespaces_and_names() {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(
            serde_json::json!({"metadata": {"namespace": "intern-test-ns", "name": "web"}}),
        )
        .unwrap_or_default();
        let of = super::super::ObjKey::of(&svc);
        let named = super::super::ObjKey::new("intern-test-ns", String::from("web"));
        assert_eq!(of, named);
        assert!(Arc::ptr_eq(&of.namespace, &named.namespace));
        assert!(Arc::ptr_eq(&of.name, &named.name));
    }

    /// Strings no key holds any more leave the pool once it has grown enough; those still held
    /// stay shared.
    #[test]
    fn strings_nobody_holds_are_pruned() {
        let mut pool = Pool::default();
        let kept = pool.intern("kept");
        for i in 0..3 * MIN_PRUNE_AT {
            drop(pool.intern(format!("dropped-{i}")));
        }
        assert!(pool.strings.len() <= MIN_PRUNE_AT, "{}", pool.strings.len());
        assert!(pool.strings.contains("kept"));
        assert!(Arc::ptr_eq(&kept, &pool.intern("kept")));
    }
}
