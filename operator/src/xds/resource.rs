//! The xDS resource vocabulary: type URLs, the resource types, an encoded resource with its
//! content version, and the set of them one Gateway instance serves.
//!
//! The translation produces these ([`super::translate`]) and the cache and ADS server serve them
//! ([`super::cache`], [`super::server`]); both depend on this module, never on each other. A
//! resource's version is computed once, when it is encoded, and travels with it in an `Arc`, so
//! a snapshot that keeps a resource unchanged shares it with the previous one instead of
//! re-hashing or copying its bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
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
///
/// Name and version are shared strings: every map that holds a resource by name (the
/// snapshot's, the translator's memo, each Delta stream's record of what its Envoy has and
/// acked, the cache's accepted versions) holds a pointer to these, not a copy of them. The
/// packed message is held as its type URL and bytes, not as an `Any`: the type URL of a type
/// Sluice serves is a constant, not a string allocated for every resource (tens of thousands at
/// 10,000 roots), and the bytes are a boxed slice of their own length.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedResource {
    pub name: Arc<str>,
    /// Hex prefix of the SHA-256 of type URL and encoded bytes: equal content, equal version,
    /// on every replica and across restarts.
    pub version: Arc<str>,
    type_url: Cow<'static, str>,
    value: Box<[u8]>,
    /// For a cluster, the load assignment it reads over EDS; decoded once, when first asked
    /// (every push of every stream asks it of every cluster). The resource's own name when it is
    /// that (shared, not copied).
    eds: std::sync::OnceLock<Option<Arc<str>>>,
}

impl VersionedResource {
    /// Wraps an encoded resource, computing its version.
    pub fn new(name: impl Into<Arc<str>>, resource: Any) -> Self {
        let version = resource_version(&resource).into();
        let type_url = match ResourceType::from_type_url(&resource.type_url) {
            Some(ty) => Cow::Borrowed(ty.type_url()),
            None => Cow::Owned(resource.type_url),
        };
        Self {
            name: name.into(),
            version,
            type_url,
            value: resource.value.into_boxed_slice(),
            eds: std::sync::OnceLock::new(),
        }
    }

    /// The type URL of the packed message.
    pub fn type_url(&self) -> &str {
        &self.type_url
    }

    /// The encoded message.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The packed message, for the wire (a copy).
    pub fn to_any(&self) -> Any {
        Any {
            type_url: self.type_url.clone().into_owned(),
            value: self.value.to_vec(),
        }
    }

    /// Taken as a cluster: the name of the load assignment it reads over EDS (its
    /// `service_name`, or else its own name); `None` when it is not an EDS cluster or does not
    /// decode as a cluster.
    pub fn eds_service_name(&self) -> Option<&str> {
        self.eds
            .get_or_init(|| {
                eds_service_name(&self.value).map(|n| {
                    if n == *self.name {
                        self.name.clone()
                    } else {
                        n.into()
                    }
                })
            })
            .as_deref()
    }
}

fn eds_service_name(value: &[u8]) -> Option<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    use prost::Message as _;
    let cluster = Cluster::decode(value).ok()?;
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
pub type TypeResources = PMap<Arc<str>, Arc<VersionedResource>>;

/// What a translation hands to the cache for one instance: per type URL, resources by name.
///
/// A clone is O(number of types); [`InstanceResources::insert_versioned`] and
/// [`InstanceResources::remove`] keep, per type, a digest of every (name, version) it holds, so
/// the content version of the whole ([`InstanceResources::version`]) costs nothing per resource.
///
/// The encoded bytes are hashed for versions, so the encoding must be deterministic: protobuf
/// `map` fields (prost `HashMap`s) with more than one entry would make equal content look changed.
///
/// From [`InstanceResources::record_changes`] on, it also records which names of each type it
/// changed ([`InstanceResources::changed_since`]), so that a Delta stream that has the previous
/// resources looks at those names only instead of comparing every resource. Equality is of the
/// content only, not of what was recorded.
#[derive(Clone, Debug, Default)]
pub struct InstanceResources {
    by_type: BTreeMap<String, TypeResources>,
    digests: BTreeMap<String, Digest>,
    changes: Option<Box<Changes>>,
}

impl PartialEq for InstanceResources {
    fn eq(&self, other: &Self) -> bool {
        self.by_type == other.by_type && self.digests == other.digests
    }
}

/// The names changed since recording started, and each type's map as it was then.
#[derive(Clone, Debug, Default)]
struct Changes {
    /// Every type's resources when recording started (shared maps: O(types) to take).
    base: BTreeMap<String, TypeResources>,
    /// Per type URL, every name inserted (as another resource) or removed since.
    names: BTreeMap<String, BTreeSet<Arc<str>>>,
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
    pub fn insert(&mut self, name: impl Into<Arc<str>>, resource: Any) {
        self.insert_versioned(Arc::new(VersionedResource::new(name, resource)));
    }

    /// Adds an already versioned resource (shared, not copied), replacing one of the same type
    /// and name.
    pub fn insert_versioned(&mut self, resource: Arc<VersionedResource>) {
        let type_url = resource.type_url();
        let named = match self.by_type.get_mut(type_url) {
            Some(named) => named,
            None => self.by_type.entry(type_url.to_owned()).or_default(),
        };
        let digest = match self.digests.get_mut(type_url) {
            Some(digest) => digest,
            None => self.digests.entry(type_url.to_owned()).or_default(),
        };
        if let Some(old) = named.get(&resource.name) {
            if Arc::ptr_eq(old, &resource) {
                return;
            }
            digest.subtract(old);
        }
        digest.add(&resource);
        if let Some(changes) = &mut self.changes {
            changes.record(type_url, &resource.name);
        }
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
        if let Some(changes) = &mut self.changes {
            changes.record(type_url, &old.name);
        }
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

    /// Starts recording changes from the content as it is now (forgetting what was recorded
    /// before): O(types).
    pub fn record_changes(&mut self) {
        self.changes = Some(Box::new(Changes {
            base: self.by_type.clone(),
            names: BTreeMap::new(),
        }));
    }

    /// Stops recording changes and forgets what was recorded (and the maps it was recorded
    /// against).
    pub fn forget_changes(&mut self) {
        self.changes = None;
    }

    /// What changed in one type since [`InstanceResources::record_changes`]: the type's
    /// resources then, and every name inserted or removed since (a superset of the names whose
    /// resource differs). `None` when nothing is recorded or the type had no resources then.
    pub fn changed_since(&self, type_url: &str) -> Option<(&TypeResources, &BTreeSet<Arc<str>>)> {
        static NONE: BTreeSet<Arc<str>> = BTreeSet::new();
        let changes = self.changes.as_ref()?;
        let base = changes.base.get(type_url)?;
        Some((base, changes.names.get(type_url).unwrap_or(&NONE)))
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

impl Changes {
    fn record(&mut self, type_url: &str, name: &Arc<str>) {
        let names = match self.names.get_mut(type_url) {
            Some(names) => names,
            None => self.names.entry(type_url.to_owned()).or_default(),
        };
        if !names.contains(name) {
            names.insert(name.clone());
        }
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

    /// A resource of a type Sluice serves holds its type URL as the constant (no string of its
    /// own per resource), its bytes exactly sized, and a cluster's EDS name as its own name when
    /// the two are the same (shared, not a copy); the wire form is unchanged.
    #[test]
    fn a_resource_holds_no_copy_of_its_type_url_or_eds_name() {
        use envoy_types::pb::envoy::config::cluster::v3::Cluster;
        use envoy_types::pb::envoy::config::cluster::v3::cluster::{
            ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
        };
        use prost::Message as _;
        let cluster = |service_name: &str| Cluster {
            name: "ns/web/80/abc".to_owned(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: service_name.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let any = |c: &Cluster| Any {
            type_url: type_url::CLUSTER.to_owned(),
            value: c.encode_to_vec(),
        };
        let own = VersionedResource::new("ns/web/80/abc", any(&cluster("ns/web/80/abc")));
        assert!(matches!(own.type_url, Cow::Borrowed(type_url::CLUSTER)));
        assert_eq!(own.eds_service_name(), Some("ns/web/80/abc"));
        assert_eq!(
            own.eds_service_name().map(str::as_ptr),
            Some(own.name.as_ptr())
        );
        assert_eq!(own.to_any(), any(&cluster("ns/web/80/abc")));
        let other = VersionedResource::new("ns/web/80/abc", any(&cluster("elsewhere")));
        assert_eq!(other.eds_service_name(), Some("elsewhere"));
        let unknown = VersionedResource::new(
            "x",
            Any {
                type_url: "type.googleapis.com/x".to_owned(),
                value: vec![1, 2],
            },
        );
        assert!(matches!(&unknown.type_url, Cow::Owned(u) if u == "type.googleapis.com/x"));
        assert_eq!(unknown.value(), [1, 2]);
    }

    /// From `record_changes` on, every name inserted (as another resource) or removed is
    /// recorded with the type's map as it was; equality ignores the record.
    #[test]
    fn changes_are_recorded_by_name_against_the_maps_they_started_from() {
        let any = |t: &str, v: &[u8]| Any {
            type_url: t.to_owned(),
            value: v.to_vec(),
        };
        let mut r = InstanceResources::default();
        r.insert("a", any(type_url::CLUSTER, b"1"));
        r.insert("b", any(type_url::CLUSTER, b"1"));
        r.insert("s", any(type_url::SECRET, b"1"));
        assert!(
            r.changed_since(type_url::CLUSTER).is_none(),
            "not recording"
        );
        let before = r.clone();
        r.record_changes();
        assert_eq!(r, before);
        let same = r.of_type(ResourceType::Cluster).unwrap()["b"].clone();
        r.insert_versioned(same); // the same resource: no change
        r.insert("a", any(type_url::CLUSTER, b"2"));
        r.insert("c", any(type_url::CLUSTER, b"1"));
        r.remove(type_url::SECRET, "s");
        r.insert("l", any(type_url::LISTENER, b"1"));
        let (base, names) = r.changed_since(type_url::CLUSTER).unwrap();
        assert!(base.ptr_eq(before.of_type(ResourceType::Cluster).unwrap()));
        assert_eq!(
            names.iter().map(|n| &**n).collect::<Vec<_>>(),
            vec!["a", "c"]
        );
        let (_, names) = r.changed_since(type_url::SECRET).unwrap();
        assert_eq!(names.iter().map(|n| &**n).collect::<Vec<_>>(), vec!["s"]);
        assert!(
            r.changed_since(type_url::LISTENER).is_none(),
            "a type that had no resources has no base"
        );
        let mut recorded = r.clone();
        recorded.forget_changes();
        assert!(recorded.changed_since(type_url::CLUSTER).is_none());
        assert_eq!(recorded, r, "equal content, whatever was recorded");
    }
}
