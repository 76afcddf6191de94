//! The xDS cache: the latest resources of every Gateway instance, keyed by the Envoy node cluster
//! (`<namespace>/<name>`).
//!
//! The cache owns versioning (a stable hash of each resource's encoded bytes) and change
//! notification. It knows nothing about protocols or streams: the ADS server
//! ([`super::server`]) subscribes to one instance and computes per-stream responses from the
//! [`Snapshot`]s it sees. Setting an instance to identical content notifies nobody; setting one
//! instance never wakes the streams of another.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Type URLs of the resources Sluice serves.
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}

/// What a translation hands to the cache for one instance: per type URL, resources by name.
///
/// The encoded bytes are hashed for versions, so the encoding must be deterministic: protobuf
/// `map` fields (prost `HashMap`s) with more than one entry would make equal content look changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceResources {
    pub by_type: BTreeMap<String, BTreeMap<String, Any>>,
}

impl InstanceResources {
    /// Adds a resource under its own `type_url`, replacing one of the same type and name.
    pub fn insert(&mut self, name: impl Into<String>, resource: Any) {
        self.by_type
            .entry(resource.type_url.clone())
            .or_default()
            .insert(name.into(), resource);
    }
}

/// One resource with its content version.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedResource {
    pub name: String,
    /// Hex prefix of the SHA-256 of type URL and encoded bytes: equal content, equal version,
    /// on every replica and across restarts.
    pub version: String,
    pub resource: Any,
}

/// Resources by name, for one type.
pub type TypeResources = BTreeMap<String, Arc<VersionedResource>>;

/// The immutable content of one instance at one point in time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    by_type: BTreeMap<String, TypeResources>,
    version: String,
}

impl Snapshot {
    /// Builds a snapshot, computing per-resource versions. Types without resources are dropped,
    /// so "no clusters" and "an empty cluster map" are the same content.
    pub fn new(resources: InstanceResources) -> Self {
        let by_type: BTreeMap<String, TypeResources> = resources
            .by_type
            .into_iter()
            .filter(|(_, named)| !named.is_empty())
            .map(|(type_url, named)| {
                let named = named
                    .into_iter()
                    .map(|(name, resource)| {
                        let version = resource_version(&resource);
                        let versioned = VersionedResource {
                            name: name.clone(),
                            version,
                            resource,
                        };
                        (name, Arc::new(versioned))
                    })
                    .collect();
                (type_url, named)
            })
            .collect();
        let version = hash_versions(by_type.iter().flat_map(|(type_url, named)| {
            named
                .values()
                .map(move |r| (type_url.as_str(), r.name.as_str(), r.version.as_str()))
        }));
        Snapshot { by_type, version }
    }

    /// The resources of one type; empty if the instance has none.
    pub fn resources(&self, type_url: &str) -> Option<&TypeResources> {
        self.by_type.get(type_url)
    }

    /// Type URLs that have at least one resource.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// A hash over every (type, name, version): equal iff the content is equal.
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl From<&crate::xds::translate::Resources> for InstanceResources {
    /// Everything a translation produced, packed for the wire.
    fn from(resources: &crate::xds::translate::Resources) -> Self {
        let mut out = Self::default();
        for ty in crate::xds::translate::ResourceType::ALL {
            for r in resources.of_type(ty) {
                out.insert(r.name, r.resource);
            }
        }
        out
    }
}

/// The stable content version of one resource.
pub fn resource_version(resource: &Any) -> String {
    let mut hasher = Sha256::new();
    hasher.update(resource.type_url.as_bytes());
    hasher.update([0u8]);
    hasher.update(&resource.value);
    hex_prefix(&hasher.finalize())
}

/// A stable hash over a sequence of (type, name, version) triples, used for snapshot versions
/// and SotW response versions.
pub fn hash_versions<'a>(entries: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (type_url, name, version) in entries {
        for part in [type_url, name, version] {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex_prefix(&hasher.finalize())
}

fn hex_prefix(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest
        .iter()
        .take(8)
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The latest snapshot of an instance, or `None` while it is unknown (never set, or removed).
pub type SnapshotReceiver = watch::Receiver<Option<Arc<Snapshot>>>;

/// Per-instance snapshots with change notification.
#[derive(Debug, Default)]
pub struct Cache {
    instances: Mutex<HashMap<String, watch::Sender<Option<Arc<Snapshot>>>>>,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces an instance's resources. Returns whether anything changed; only then are that
    /// instance's streams woken.
    pub fn set(&self, instance: &str, resources: InstanceResources) -> bool {
        let snapshot = Arc::new(Snapshot::new(resources));
        let mut instances = self.lock();
        let sender = instances
            .entry(instance.to_owned())
            .or_insert_with(|| watch::Sender::new(None));
        sender.send_if_modified(|current| {
            if current
                .as_ref()
                .is_some_and(|c| c.version() == snapshot.version())
            {
                return false;
            }
            *current = Some(snapshot);
            true
        })
    }

    /// Forgets an instance. Connected streams keep their last configuration (Envoy keeps serving
    /// it) and get the new content if the instance is set again. Returns whether it was known.
    pub fn remove(&self, instance: &str) -> bool {
        let mut instances = self.lock();
        let Some(sender) = instances.get(instance) else {
            return false;
        };
        let was_set = sender.send_if_modified(|current| current.take().is_some());
        if sender.receiver_count() == 0 {
            instances.remove(instance);
        }
        was_set
    }

    /// The current snapshot of an instance.
    pub fn get(&self, instance: &str) -> Option<Arc<Snapshot>> {
        self.lock()
            .get(instance)
            .and_then(|sender| sender.borrow().clone())
    }

    /// Names of the instances that currently have a snapshot, sorted.
    pub fn instances(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, sender)| sender.borrow().is_some())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Watches one instance. An unknown instance yields `None` until it is set.
    pub fn subscribe(&self, instance: &str) -> SnapshotReceiver {
        self.lock()
            .entry(instance.to_owned())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe()
    }

    /// Drops the entry of an instance that has no snapshot and no watchers (called when a
    /// stream for an unknown instance ends, so arbitrary node clusters do not accumulate).
    pub fn prune(&self, instance: &str) {
        let mut instances = self.lock();
        if instances
            .get(instance)
            .is_some_and(|s| s.borrow().is_none() && s.receiver_count() == 0)
        {
            instances.remove(instance);
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Option<Arc<Snapshot>>>>> {
        // The map stays consistent even if a holder panicked: every mutation is a single call.
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn any(type_url: &str, bytes: &[u8]) -> Any {
        Any {
            type_url: type_url.to_owned(),
            value: bytes.to_vec(),
        }
    }

    fn resources(entries: &[(&str, &str, &[u8])]) -> InstanceResources {
        let mut r = InstanceResources::default();
        for (type_url, name, bytes) in entries {
            r.insert(*name, any(type_url, bytes));
        }
        r
    }

    #[test]
    fn versions_depend_on_content_only() {
        let a = Snapshot::new(resources(&[(type_url::CLUSTER, "a", b"1")]));
        let b = Snapshot::new(resources(&[(type_url::CLUSTER, "a", b"1")]));
        let c = Snapshot::new(resources(&[(type_url::CLUSTER, "a", b"2")]));
        let ra = &a.resources(type_url::CLUSTER).unwrap()["a"];
        let rc = &c.resources(type_url::CLUSTER).unwrap()["a"];
        assert_eq!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
        assert_ne!(ra.version, rc.version);
        assert_eq!(ra.version.len(), 16);
        // Empty type maps are no content.
        let mut empty = InstanceResources::default();
        empty
            .by_type
            .insert(type_url::LISTENER.into(), BTreeMap::new());
        assert_eq!(
            Snapshot::new(empty).version(),
            Snapshot::new(InstanceResources::default()).version()
        );
    }

    #[tokio::test]
    async fn set_notifies_only_on_change_and_only_that_instance() {
        let cache = Cache::new();
        let mut a = cache.subscribe("ns/a");
        let mut b = cache.subscribe("ns/b");
        assert!(a.borrow_and_update().is_none());
        assert!(b.borrow_and_update().is_none());

        assert!(cache.set("ns/a", resources(&[(type_url::CLUSTER, "c", b"1")])));
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.borrow_and_update();

        // Same content: no notification.
        assert!(!cache.set("ns/a", resources(&[(type_url::CLUSTER, "c", b"1")])));
        assert!(!a.has_changed().unwrap());

        assert!(cache.set("ns/a", resources(&[(type_url::CLUSTER, "c", b"2")])));
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        assert_eq!(cache.instances(), vec!["ns/a".to_owned()]);
    }

    #[tokio::test]
    async fn remove_keeps_watchers_and_prunes_unwatched() {
        let cache = Cache::new();
        cache.set("ns/a", resources(&[(type_url::CLUSTER, "c", b"1")]));
        let mut a = cache.subscribe("ns/a");
        a.borrow_and_update();
        assert!(cache.remove("ns/a"));
        assert!(a.has_changed().unwrap());
        assert!(a.borrow_and_update().is_none());
        assert!(cache.get("ns/a").is_none());
        // Set again: the same watcher sees it.
        cache.set("ns/a", resources(&[(type_url::CLUSTER, "c", b"1")]));
        assert!(a.has_changed().unwrap());
        drop(a);
        assert!(cache.remove("ns/a"));
        assert!(!cache.remove("ns/a"));
        assert_eq!(cache.entries(), 0);

        // A watcher of an unknown instance leaves nothing behind once pruned.
        let unknown = cache.subscribe("ns/unknown");
        assert_eq!(cache.entries(), 1);
        drop(unknown);
        cache.prune("ns/unknown");
        assert_eq!(cache.entries(), 0);
    }
}
