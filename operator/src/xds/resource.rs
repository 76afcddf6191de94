//! The xDS resource vocabulary: type URLs, the resource types, an encoded resource with its
//! content version, and the set of them one Gateway instance serves.
//!
//! The translation produces these ([`super::translate`]) and the cache and ADS server serve them
//! ([`super::cache`], [`super::server`]); both depend on this module, never on each other. A
//! resource's version is computed once, when it is encoded, and travels with it in an `Arc`, so
//! a snapshot that keeps a resource unchanged shares it with the previous one instead of
//! re-hashing or copying its bytes.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use sha2::{Digest as _, Sha256};

use crate::snapshot::PMap;

/// Type URLs of the resources Sluice serves.
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SCOPED_ROUTE: &str =
        "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}

/// The kinds of resource Sluice serves, with their xDS type URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Secret,
    Listener,
    /// Scoped route configurations (SRDS): one per plain-HTTP virtual host, keyed on its name.
    ScopedRoute,
    Route,
}

impl ResourceType {
    /// Every type, in the order a state-of-the-world push should send them so that what a
    /// resource refers to warms first: clusters, endpoints, secrets, then listeners, scopes and
    /// routes.
    pub const ALL: [ResourceType; 6] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Secret,
        ResourceType::Listener,
        ResourceType::ScopedRoute,
        ResourceType::Route,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            Self::Cluster => type_url::CLUSTER,
            Self::Endpoint => type_url::ENDPOINT,
            Self::Secret => type_url::SECRET,
            Self::Listener => type_url::LISTENER,
            Self::ScopedRoute => type_url::SCOPED_ROUTE,
            Self::Route => type_url::ROUTE,
        }
    }

    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }
}

/// One encoded resource ready for the wire: its name, content version and packed message.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedResource {
    pub name: String,
    /// Hex prefix of the SHA-256 of type URL and encoded bytes: equal content, equal version,
    /// on every replica and across restarts.
    pub version: String,
    pub resource: Any,
    /// For a cluster, the load assignment it reads over EDS; decoded once, when first asked
    /// (every push of every stream asks it of every cluster).
    eds: std::sync::OnceLock<Option<String>>,
}

impl VersionedResource {
    /// Wraps an encoded resource, computing its version.
    pub fn new(name: impl Into<String>, resource: Any) -> Self {
        Self {
            name: name.into(),
            version: resource_version(&resource),
            resource,
            eds: std::sync::OnceLock::new(),
        }
    }

    /// Taken as a cluster: the name of the load assignment it reads over EDS (its
    /// `service_name`, or else its own name); `None` when it is not an EDS cluster or does not
    /// decode as a cluster.
    pub fn eds_service_name(&self) -> Option<&str> {
        self.eds
            .get_or_init(|| eds_service_name(&self.resource))
            .as_deref()
    }
}

fn eds_service_name(resource: &Any) -> Option<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    use prost::Message as _;
    let cluster = Cluster::decode(resource.value.as_slice()).ok()?;
    let eds = cluster.cluster_discovery_type
        == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
    eds.then(|| {
        cluster
            .eds_cluster_config
            .map(|c| c.service_name)
            .filter(|n| !n.is_empty())
            .unwrap_or(cluster.name)
    })
}

/// Resources by name, for one type: a persistent map, so a translation that changes a few
/// resources copies only their paths and shares every other entry with the previous one.
pub type TypeResources = PMap<String, Arc<VersionedResource>>;

/// What a translation hands to the cache for one instance: per type URL, resources by name.
///
/// A clone is O(number of types); [`InstanceResources::insert_versioned`] and
/// [`InstanceResources::remove`] keep, per type, a digest of every (name, version) it holds, so
/// the content version of the whole ([`InstanceResources::version`]) costs nothing per resource.
///
/// The encoded bytes are hashed for versions, so the encoding must be deterministic: protobuf
/// `map` fields (prost `HashMap`s) with more than one entry would make equal content look changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceResources {
    by_type: BTreeMap<String, TypeResources>,
    digests: BTreeMap<String, Digest>,
}

/// The digest of one type's resources: how many, and the sum (mod 2^128) of a 128-bit hash of
/// each (name, version). Equal sets give equal digests whatever the order they were built in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Digest {
    count: u64,
    sum: u128,
}

impl Digest {
    fn entry(name: &str, version: &str) -> u128 {
        let mut hasher = Sha256::new();
        for part in [name, version] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        u128::from_be_bytes(bytes)
    }

    fn add(&mut self, r: &VersionedResource) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(Self::entry(&r.name, &r.version));
    }

    fn subtract(&mut self, r: &VersionedResource) {
        self.count -= 1;
        self.sum = self.sum.wrapping_sub(Self::entry(&r.name, &r.version));
    }
}

impl InstanceResources {
    /// Adds a resource under its own `type_url`, replacing one of the same type and name.
    pub fn insert(&mut self, name: impl Into<String>, resource: Any) {
        self.insert_versioned(Arc::new(VersionedResource::new(name, resource)));
    }

    /// Adds an already versioned resource (shared, not copied), replacing one of the same type
    /// and name.
    pub fn insert_versioned(&mut self, resource: Arc<VersionedResource>) {
        let type_url = &resource.resource.type_url;
        let named = match self.by_type.get_mut(type_url) {
            Some(named) => named,
            None => self.by_type.entry(type_url.clone()).or_default(),
        };
        let digest = match self.digests.get_mut(type_url) {
            Some(digest) => digest,
            None => self.digests.entry(type_url.clone()).or_default(),
        };
        if let Some(old) = named.get(&resource.name) {
            if Arc::ptr_eq(old, &resource) {
                return;
            }
            digest.subtract(old);
        }
        digest.add(&resource);
        named.insert(resource.name.clone(), resource);
    }

    /// Removes the resource of `type_url` named `name`; returns whether there was one. A type
    /// left without resources is dropped.
    pub fn remove(&mut self, type_url: &str, name: &str) -> bool {
        let Some(named) = self.by_type.get_mut(type_url) else {
            return false;
        };
        let Some(old) = named.get(name).cloned() else {
            return false;
        };
        named.remove(name);
        if named.is_empty() {
            self.by_type.remove(type_url);
            self.digests.remove(type_url);
        } else if let Some(digest) = self.digests.get_mut(type_url) {
            digest.subtract(&old);
        }
        true
    }

    /// The resources of one type, if any.
    pub fn of_type(&self, ty: ResourceType) -> Option<&TypeResources> {
        self.by_type.get(ty.type_url())
    }

    /// Every type's resources, by type URL.
    pub fn by_type(&self) -> &BTreeMap<String, TypeResources> {
        &self.by_type
    }

    /// A version of the whole content, from the per-type digests (O(types)): equal content
    /// gives an equal version. Types without resources count as absent.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        for (type_url, digest) in &self.digests {
            if digest.count == 0 {
                continue;
            }
            hasher.update((type_url.len() as u64).to_be_bytes());
            hasher.update(type_url.as_bytes());
            hasher.update(digest.count.to_be_bytes());
            hasher.update(digest.sum.to_be_bytes());
        }
        hex_prefix(&hasher.finalize())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_round_trip_and_versions_follow_content() {
        for ty in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(ty.type_url()), Some(ty));
        }
        assert_eq!(ResourceType::from_type_url("type.googleapis.com/x"), None);
        let any = |v: &[u8]| Any {
            type_url: type_url::CLUSTER.to_owned(),
            value: v.to_vec(),
        };
        let a = VersionedResource::new("a", any(b"1"));
        assert_eq!(a.version, VersionedResource::new("b", any(b"1")).version);
        assert_ne!(a.version, VersionedResource::new("a", any(b"2")).version);
        let mut r = InstanceResources::default();
        r.insert("a", any(b"1"));
        assert_eq!(r.of_type(ResourceType::Cluster).unwrap()["a"].as_ref(), &a);
        assert!(r.of_type(ResourceType::Route).is_none());
    }
}
