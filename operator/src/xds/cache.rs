//! The xDS cache: the latest resources of every Gateway instance, keyed by the Envoy node cluster
//! (`<namespace>/<name>`).
//!
//! The cache owns snapshots (shared resources, each versioned once when it was encoded; see
//! [`super::resource`]), change notification, and what the instance's Envoys accepted or rejected
//! (so that rejected content is not served again; see [`Cache`]). It knows nothing about protocols or streams: the ADS server
//! ([`super::server`]) subscribes to one instance and computes per-stream responses from the
//! [`Snapshot`]s it sees. Setting an instance to identical content notifies nobody; setting one
//! instance never wakes the streams of another.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

// The vocabulary the cache's callers speak, re-exported so they need not know where it lives.
pub use super::resource::{
    InstanceResources, TypeResources, VersionedResource, hash_versions, type_url,
};

/// The immutable content of one instance at one point in time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    resources: InstanceResources,
    version: String,
}

impl Snapshot {
    /// Builds a snapshot of resources whose versions were computed when they were encoded; the
    /// resources are shared, not copied, and the snapshot's version comes from the digests the
    /// resources keep (O(types), not O(resources)). Types without resources are absent, so "no
    /// clusters" and "an empty cluster map" are the same content.
    pub fn new(resources: InstanceResources) -> Self {
        Snapshot {
            version: resources.version(),
            resources,
        }
    }

    /// The resources of one type; empty if the instance has none.
    pub fn resources(&self, type_url: &str) -> Option<&TypeResources> {
        self.resources.by_type().get(type_url)
    }

    /// What changed in one type since the snapshot these resources were made from: that
    /// snapshot's resources of the type and every name changed since (see
    /// [`InstanceResources::changed_since`]). `None` when not known.
    pub fn changed_since(&self, type_url: &str) -> Option<(&TypeResources, &BTreeSet<Arc<str>>)> {
        self.resources.changed_since(type_url)
    }

    /// Type URLs that have at least one resource.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.resources.by_type().keys().map(String::as_str)
    }

    /// A hash over every (type, name, version): equal iff the content is equal.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// The configuration an instance's streams serve, or `None` while it is unknown (never set, or
/// removed). See [`Cache`] for how it differs from the latest snapshot.
pub type SnapshotReceiver = watch::Receiver<Option<Arc<Snapshot>>>;

/// At most this many rejected versions are remembered per instance and type; the oldest
/// version's rejections are dropped first. A Delta push is cut into several responses (each
/// judged alone), so one version may make many rejections: they are one push and count once.
const MAX_REJECTED_VERSIONS: usize = 8;

/// And at most this many rejections in all per instance and type (pieces of the remembered
/// versions; the Delta server keeps as many responses awaiting their ACK).
const MAX_REJECTIONS: usize = 1_024;

/// Envoy rejected (NACKed) a response: what it rejected, and what is blamed for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub type_url: String,
    /// The version of the rejected response (SotW `version_info`; Delta: the snapshot version).
    pub version: String,
    /// The Envoy (node id) that rejected it, most recently.
    pub node_id: String,
    /// Envoy's `error_detail` message.
    pub error: String,
    /// The resources of the rejected response that no Envoy of the instance had accepted at
    /// that version: name → rejected version. The cause is among them. Empty when every resource
    /// of the response had been accepted by another Envoy of the instance (they disagree).
    pub changed_resources: BTreeMap<String, String>,
    /// For a rejected listener response, the filter chains of each changed listener that
    /// differ from its accepted version ([`super::listener_blame`]).
    pub changed_filter_chains: super::listener_blame::ChangedChains,
    /// The latest snapshot's version when it was recorded (ends a rejection without changes).
    latest_version: String,
}

impl Rejection {
    /// A rejection as the cache would record it, for tests elsewhere.
    #[cfg(test)]
    pub(crate) fn for_test(type_url: &str, changed: &[&str], error: &str) -> Self {
        Self {
            type_url: type_url.to_owned(),
            version: "v".to_owned(),
            node_id: "node".to_owned(),
            error: error.to_owned(),
            changed_resources: changed
                .iter()
                .map(|n| ((*n).to_owned(), "v".to_owned()))
                .collect(),
            changed_filter_chains: Default::default(),
            latest_version: "v".to_owned(),
        }
    }

    /// A rejection of the HTTPS listener whose filter chains `chains` changed, for tests.
    #[cfg(test)]
    pub(crate) fn for_test_https(chains: &[&str], error: &str) -> Self {
        let listener = super::translate::HTTPS_LISTENER;
        let mut r = Self::for_test(super::resource::type_url::LISTENER, &[listener], error);
        let chains = chains.iter().map(|c| (*c).to_owned()).collect();
        r.changed_filter_chains = [(listener.to_owned(), chains)].into();
        r
    }

    /// Whether the rejected content is still what the instance wants: every changed resource
    /// still has its rejected version in `latest`. Once any of them changes or goes away, the new
    /// combination deserves a try, and the rejection is over.
    fn still_wanted(&self, latest: &Snapshot) -> bool {
        if self.changed_resources.is_empty() {
            return latest.version() == self.latest_version;
        }
        let current = latest.resources(&self.type_url);
        self.changed_resources.iter().all(|(name, version)| {
            current
                .and_then(|c| c.get(name.as_str()))
                .is_some_and(|r| *r.version == **version)
        })
    }
}

/// What the Envoys of an instance said about one type.
#[derive(Debug, Default)]
struct TypeVerdicts {
    /// The last version of each resource that an Envoy of the instance accepted (ACKed);
    /// `None` until any response of this type was accepted.
    accepted: Option<TypeResources>,
    /// Rejections whose content is still wanted, oldest first.
    rejections: Vec<Rejection>,
}

/// One instance: its latest snapshot, the verdicts of its Envoys, and the served configuration.
#[derive(Debug)]
struct Entry {
    /// What streams serve: `latest`, minus rejected resource versions (see [`Cache`]).
    served: watch::Sender<Option<Arc<Snapshot>>>,
    latest: Option<Arc<Snapshot>>,
    verdicts: BTreeMap<String, TypeVerdicts>,
}

impl Entry {
    fn new() -> Self {
        Entry {
            served: watch::Sender::new(None),
            latest: None,
            verdicts: BTreeMap::new(),
        }
    }

    fn rejection_count(&self) -> usize {
        self.verdicts.values().map(|v| v.rejections.len()).sum()
    }

    /// Recomputes what is served from `latest` and the verdicts; wakes the streams only if that
    /// changed. Returns whether it did.
    fn publish(&mut self) -> bool {
        let Some(latest) = self.latest.clone() else {
            return self
                .served
                .send_if_modified(|current| current.take().is_some());
        };
        for verdicts in self.verdicts.values_mut() {
            verdicts.rejections.retain(|r| r.still_wanted(&latest));
        }
        let served = served_view(&latest, &self.verdicts);
        self.served.send_if_modified(|current| {
            if current
                .as_ref()
                .is_some_and(|c| c.version() == served.version())
            {
                return false;
            }
            *current = Some(served);
            true
        })
    }
}

/// The configuration to serve: `latest`, except that a resource version an Envoy of the
/// instance rejected (a changed resource of a rejection still wanted) is replaced by the last
/// version an Envoy of the instance accepted, or left out if none was. A type nothing was ever
/// accepted of is served as it is: there is nothing better to fall back to.
fn served_view(latest: &Arc<Snapshot>, verdicts: &BTreeMap<String, TypeVerdicts>) -> Arc<Snapshot> {
    let mut served = None::<InstanceResources>;
    for (type_url, v) in verdicts {
        let Some(accepted) = &v.accepted else {
            continue;
        };
        let held: BTreeMap<&String, &String> = v
            .rejections
            .iter()
            .flat_map(|r| r.changed_resources.iter())
            // A version some Envoy of the instance accepted is not held back (see
            // `Cache::ack`).
            .filter(|(name, version)| {
                accepted
                    .get(name.as_str())
                    .is_none_or(|a| *a.version != ***version)
            })
            .collect();
        if held.is_empty() || latest.resources(type_url).is_none() {
            continue;
        }
        let served = served.get_or_insert_with(|| latest.resources.clone());
        for name in held.into_keys() {
            match accepted.get(name.as_str()) {
                Some(good) => served.insert_versioned(good.clone()),
                None => {
                    served.remove(type_url, name);
                }
            }
        }
    }
    match served {
        Some(served) => Arc::new(Snapshot::new(served)),
        None => latest.clone(),
    }
}

/// Per-instance snapshots with change notification, and the verdicts (ACK, NACK) of each
/// instance's Envoys.
///
/// Streams do not serve the latest snapshot as is, but a view of it ([`Cache::subscribe`]):
/// a resource version that an Envoy of the instance rejected is replaced by the last version an
/// Envoy of the instance accepted (or left out if there is none), as long as the rejected
/// content is still wanted. So new and reconnecting Envoys get accepted configuration, never a
/// rejected one, and the Envoy that rejected is brought back to the accepted state; other
/// resources, other tenants' changes included, keep flowing. Once a rejected resource changes
/// (fixed) or goes away, the latest content is served again, and since streams resend whatever
/// their Envoy has not accepted, everything held back goes out with it.
///
/// When Envoys of one instance disagree (one ACKs a version another NACKs, e.g. while an Envoy
/// image rolls out), "accepted" means accepted by at least one Envoy of the instance: a version
/// some Envoy of the instance runs with is known to load with the instance's configuration, and
/// the refusal points at that one Envoy rather than at the content. The rejection is still
/// counted and reported, with no changed resources if it was all accepted elsewhere.
#[derive(Debug)]
pub struct Cache {
    instances: Mutex<HashMap<String, Entry>>,
    /// Bumped whenever the rejections of any instance change.
    rejections_changed: watch::Sender<u64>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            instances: Mutex::default(),
            rejections_changed: watch::Sender::new(0),
        }
    }
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes whenever [`Cache::rejections`] may answer differently for some instance.
    pub fn watch_rejections(&self) -> watch::Receiver<u64> {
        self.rejections_changed.subscribe()
    }

    fn rejections_changed(&self) {
        self.rejections_changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Replaces an instance's resources. Returns whether anything changed; only then are that
    /// instance's streams woken.
    pub fn set(&self, instance: &str, resources: InstanceResources) -> bool {
        let snapshot = Arc::new(Snapshot::new(resources));
        let mut instances = self.lock();
        let entry = instances
            .entry(instance.to_owned())
            .or_insert_with(Entry::new);
        if entry
            .latest
            .as_ref()
            .is_some_and(|c| c.version() == snapshot.version())
        {
            return false;
        }
        entry.latest = Some(snapshot);
        let before = entry.rejection_count();
        entry.publish();
        if entry.rejection_count() != before {
            self.rejections_changed();
        }
        true
    }

    /// Forgets an instance. Connected streams keep their last configuration (Envoy keeps serving
    /// it) and get the new content if the instance is set again. Returns whether it was known.
    pub fn remove(&self, instance: &str) -> bool {
        let mut instances = self.lock();
        let Some(entry) = instances.get_mut(instance) else {
            return false;
        };
        let was_set = entry.latest.take().is_some();
        let had_rejections = entry.rejection_count() > 0;
        entry.verdicts.clear();
        entry.publish();
        if had_rejections {
            self.rejections_changed();
        }
        if entry.served.receiver_count() == 0 {
            instances.remove(instance);
        }
        was_set
    }

    /// The latest snapshot of an instance, as last set.
    pub fn get(&self, instance: &str) -> Option<Arc<Snapshot>> {
        self.lock().get(instance).and_then(|e| e.latest.clone())
    }

    /// What the instance's streams serve: the latest snapshot without rejected versions.
    pub fn served(&self, instance: &str) -> Option<Arc<Snapshot>> {
        self.lock()
            .get(instance)
            .and_then(|e| e.served.borrow().clone())
    }

    /// Names of the instances that currently have a snapshot, sorted.
    pub fn instances(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.latest.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Watches what one instance's streams serve. An unknown instance yields `None` until it is
    /// set.
    pub fn subscribe(&self, instance: &str) -> SnapshotReceiver {
        self.lock()
            .entry(instance.to_owned())
            .or_insert_with(Entry::new)
            .served
            .subscribe()
    }

    /// Drops the entry of an instance that has no snapshot and no watchers (called when a
    /// stream for an unknown instance ends, so arbitrary node clusters do not accumulate).
    pub fn prune(&self, instance: &str) {
        let mut instances = self.lock();
        if instances
            .get(instance)
            .is_some_and(|e| e.latest.is_none() && e.served.receiver_count() == 0)
        {
            instances.remove(instance);
        }
    }

    /// An Envoy of `instance` accepted a response of `type_url` carrying `resources` and
    /// removing `removed`. `complete`: the response held every resource of the type the Envoy
    /// has (SotW wildcard), so whatever it lacks is gone.
    pub fn ack<'a>(
        &self,
        instance: &str,
        type_url: &str,
        resources: impl IntoIterator<Item = &'a Arc<VersionedResource>>,
        removed: &[String],
        complete: bool,
    ) {
        let mut instances = self.lock();
        let Some(entry) = instances.get_mut(instance) else {
            return;
        };
        let verdicts = entry.verdicts.entry(type_url.to_owned()).or_default();
        let accepted = verdicts.accepted.get_or_insert_with(TypeResources::new);
        if complete {
            *accepted = TypeResources::new();
        }
        for r in resources {
            accepted.insert(r.name.clone(), r.clone());
        }
        for name in removed {
            accepted.remove(name.as_str());
        }
        if !verdicts.rejections.is_empty() {
            entry.publish();
        }
    }

    /// An Envoy (`node_id`) of `instance` rejected a response of `type_url` with `version`
    /// carrying `resources`. Records the rejection, blaming the resources no Envoy of the
    /// instance accepted at that version, and serves their accepted versions from now on.
    pub fn nack<'a>(
        &self,
        instance: &str,
        type_url: &str,
        version: &str,
        node_id: &str,
        error: &str,
        resources: impl IntoIterator<Item = &'a Arc<VersionedResource>>,
    ) {
        let mut instances = self.lock();
        let Some(entry) = instances.get_mut(instance) else {
            return;
        };
        let Some(latest) = entry.latest.clone() else {
            return;
        };
        let verdicts = entry.verdicts.entry(type_url.to_owned()).or_default();
        let accepted = verdicts.accepted.as_ref();
        let changed: Vec<&Arc<VersionedResource>> = resources
            .into_iter()
            .filter(|r| {
                accepted
                    .and_then(|a| a.get(&r.name))
                    .is_none_or(|a| a.version != r.version)
            })
            .collect();
        let changed_filter_chains = if type_url == super::resource::type_url::LISTENER {
            changed
                .iter()
                .map(|r| {
                    let before = accepted.and_then(|a| a.get(&r.name)).map(|a| a.value());
                    let chains = super::listener_blame::changed_filter_chains(r.value(), before);
                    (r.name.to_string(), chains)
                })
                .collect()
        } else {
            Default::default()
        };
        let changed_resources: BTreeMap<String, String> = changed
            .iter()
            .map(|r| (r.name.to_string(), r.version.to_string()))
            .collect();
        let rejection = Rejection {
            type_url: type_url.to_owned(),
            version: version.to_owned(),
            node_id: node_id.to_owned(),
            error: error.to_owned(),
            changed_resources,
            changed_filter_chains,
            latest_version: latest.version().to_owned(),
        };
        // Several Envoys rejecting the same content make one rejection (the latest words).
        verdicts
            .rejections
            .retain(|r| r.changed_resources != rejection.changed_resources);
        verdicts.rejections.push(rejection);
        let too_many = |r: &Vec<Rejection>| {
            let versions: BTreeSet<&str> = r.iter().map(|r| r.version.as_str()).collect();
            versions.len() > MAX_REJECTED_VERSIONS || r.len() > MAX_REJECTIONS
        };
        while too_many(&verdicts.rejections) {
            verdicts.rejections.remove(0);
        }
        entry.publish();
        self.rejections_changed();
    }

    /// The rejections of an instance whose content is still wanted (nothing they blame has
    /// changed since), by type URL, oldest first within a type.
    pub fn rejections(&self, instance: &str) -> Vec<Rejection> {
        self.lock()
            .get(instance)
            .map(|e| {
                e.verdicts
                    .values()
                    .flat_map(|v| v.rejections.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
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

    use envoy_types::pb::google::protobuf::Any;

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
        let mut empty = resources(&[(type_url::LISTENER, "l", b"1")]);
        assert!(empty.remove(type_url::LISTENER, "l"));
        assert!(!empty.remove(type_url::LISTENER, "l"));
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

    fn versioned(snapshot: &Snapshot, type_url: &str) -> Vec<Arc<VersionedResource>> {
        snapshot
            .resources(type_url)
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// (name, content) of what is served of a type.
    fn served(cache: &Cache, instance: &str, type_url: &str) -> Vec<(String, String)> {
        let snapshot = cache.served(instance).unwrap();
        snapshot
            .resources(type_url)
            .map(|r| {
                r.values()
                    .map(|v| {
                        (
                            v.name.to_string(),
                            String::from_utf8(v.value().to_vec()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn rejected_versions_are_served_as_last_accepted_until_they_change() {
        const C: &str = type_url::CLUSTER;
        let cache = Cache::new();
        let mut watcher = cache.subscribe("ns/gw");
        cache.set("ns/gw", resources(&[(C, "a", b"a1"), (C, "x", b"x1")]));
        let v1 = cache.get("ns/gw").unwrap();
        cache.ack("ns/gw", C, &versioned(&v1, C), &[], true);

        // x changes to a value Envoy rejects; a (same version) was accepted before.
        cache.set("ns/gw", resources(&[(C, "a", b"a1"), (C, "x", b"x2")]));
        let v2 = cache.get("ns/gw").unwrap();
        watcher.borrow_and_update();
        cache.nack("ns/gw", C, "v2", "envoy-1", "bad x", &versioned(&v2, C));
        assert!(watcher.has_changed().unwrap(), "streams are woken");
        assert_eq!(
            served(&cache, "ns/gw", C),
            pairs(&[("a", "a1"), ("x", "x1")])
        );
        let rejections = cache.rejections("ns/gw");
        assert_eq!(rejections.len(), 1);
        let r = &rejections[0];
        assert_eq!((r.type_url.as_str(), r.version.as_str()), (C, "v2"));
        assert_eq!((r.node_id.as_str(), r.error.as_str()), ("envoy-1", "bad x"));
        assert_eq!(r.changed_resources.keys().collect::<Vec<_>>(), vec!["x"]);
        assert_eq!(
            *r.changed_resources["x"],
            *v2.resources(C).unwrap()["x"].version
        );

        // Another resource's change is served while x stays held back; a rejected new resource
        // is left out.
        cache.set(
            "ns/gw",
            resources(&[(C, "a", b"a2"), (C, "x", b"x2"), (C, "y", b"y1")]),
        );
        assert_eq!(
            served(&cache, "ns/gw", C),
            pairs(&[("a", "a2"), ("x", "x1"), ("y", "y1")])
        );
        // What was sent (the served view) is rejected: a2 and y1 are blamed together.
        let sent = cache.served("ns/gw").unwrap();
        cache.nack("ns/gw", C, "v3", "envoy-1", "bad y", &versioned(&sent, C));
        assert_eq!(
            served(&cache, "ns/gw", C),
            pairs(&[("a", "a1"), ("x", "x1")])
        );
        let rejections = cache.rejections("ns/gw");
        assert_eq!(rejections.len(), 2);
        assert_eq!(
            rejections[1].changed_resources.keys().collect::<Vec<_>>(),
            vec!["a", "y"]
        );

        // Fixed: the latest is served again and the rejections are over.
        cache.set(
            "ns/gw",
            resources(&[(C, "a", b"a2"), (C, "x", b"x3"), (C, "y", b"y2")]),
        );
        assert_eq!(
            served(&cache, "ns/gw", C),
            pairs(&[("a", "a2"), ("x", "x3"), ("y", "y2")])
        );
        assert!(cache.rejections("ns/gw").is_empty());
    }

    /// A push cut into pieces, every piece rejected: every piece stays held back, however many
    /// pieces there are; older pushes' rejections go first.
    #[test]
    fn every_rejected_piece_of_one_push_is_held_back() {
        const C: &str = type_url::CLUSTER;
        let cache = Cache::new();
        let names: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
        let world = |v: &str| {
            let entries: Vec<(&str, &str, Vec<u8>)> = names
                .iter()
                .map(|n| (C, n.as_str(), format!("{n}-{v}").into_bytes()))
                .collect();
            let entries: Vec<(&str, &str, &[u8])> = entries
                .iter()
                .map(|(t, n, b)| (*t, *n, b.as_slice()))
                .collect();
            resources(&entries)
        };
        cache.set("ns/gw", world("v1"));
        let v1 = cache.get("ns/gw").unwrap();
        cache.ack("ns/gw", C, &versioned(&v1, C), &[], true);
        cache.set("ns/gw", world("v2"));
        let v2 = cache.get("ns/gw").unwrap();
        let sent = versioned(&v2, C);
        for piece in sent.chunks(2) {
            cache.nack("ns/gw", C, v2.version(), "envoy-1", "bad", piece);
        }
        let held: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.clone(), format!("{n}-v1")))
            .collect();
        assert_eq!(served(&cache, "ns/gw", C), held);
        assert_eq!(cache.rejections("ns/gw").len(), 20);

        // Eight later versions, each rejected in one piece, push the first version out.
        let mut next = world("v2");
        for i in 3..11 {
            let name = format!("n{i}");
            next.insert(name.as_str(), any(C, b"new"));
            cache.set("ns/gw", next.clone());
            let snap = cache.get("ns/gw").unwrap();
            let piece: Vec<_> = versioned(&snap, C)
                .into_iter()
                .filter(|r| *r.name == *name)
                .collect();
            cache.nack("ns/gw", C, snap.version(), "envoy-1", "bad", &piece);
        }
        let rejections = cache.rejections("ns/gw");
        assert_eq!(rejections.len(), 8);
        assert!(rejections.iter().all(|r| r.version != v2.version()));
    }

    #[test]
    fn a_type_never_accepted_is_served_as_is() {
        const S: &str = type_url::SECRET;
        let cache = Cache::new();
        cache.set("ns/gw", resources(&[(S, "tls", b"bad")]));
        let v1 = cache.get("ns/gw").unwrap();
        cache.nack(
            "ns/gw",
            S,
            "v1",
            "envoy-1",
            "key mismatch",
            &versioned(&v1, S),
        );
        assert_eq!(served(&cache, "ns/gw", S), pairs(&[("tls", "bad")]));
        assert_eq!(cache.rejections("ns/gw").len(), 1);
        // The same rejection from a second Envoy is one rejection.
        cache.nack(
            "ns/gw",
            S,
            "v1",
            "envoy-2",
            "key mismatch",
            &versioned(&v1, S),
        );
        let rejections = cache.rejections("ns/gw");
        assert_eq!(rejections.len(), 1);
        assert_eq!(rejections[0].node_id, "envoy-2");
    }

    #[test]
    fn resources_rejected_together_come_back_together() {
        const S: &str = type_url::SECRET;
        let cache = Cache::new();
        cache.set(
            "ns/gw",
            resources(&[(S, "victim", b"v1"), (S, "bad", b"b1")]),
        );
        let v1 = cache.get("ns/gw").unwrap();
        cache.ack("ns/gw", S, &versioned(&v1, S), &[], false);
        cache.set(
            "ns/gw",
            resources(&[(S, "victim", b"v2"), (S, "bad", b"b2")]),
        );
        let v2 = cache.get("ns/gw").unwrap();
        cache.nack("ns/gw", S, "v2", "envoy-1", "bad", &versioned(&v2, S));
        assert_eq!(
            served(&cache, "ns/gw", S),
            pairs(&[("bad", "b1"), ("victim", "v1")])
        );
        // Only "bad" changes: the victim's new version gets its try with it.
        cache.set(
            "ns/gw",
            resources(&[(S, "victim", b"v2"), (S, "bad", b"b3")]),
        );
        assert_eq!(
            served(&cache, "ns/gw", S),
            pairs(&[("bad", "b3"), ("victim", "v2")])
        );
    }

    #[test]
    fn a_version_any_envoy_accepted_is_not_held_back() {
        const C: &str = type_url::CLUSTER;
        let cache = Cache::new();
        cache.set("ns/gw", resources(&[(C, "x", b"x1")]));
        let v1 = cache.get("ns/gw").unwrap();
        cache.ack("ns/gw", C, &versioned(&v1, C), &[], true);
        cache.set("ns/gw", resources(&[(C, "x", b"x2")]));
        let v2 = cache.get("ns/gw").unwrap();
        cache.nack(
            "ns/gw",
            C,
            "v2",
            "envoy-old",
            "unknown field",
            &versioned(&v2, C),
        );
        assert_eq!(served(&cache, "ns/gw", C), pairs(&[("x", "x1")]));
        // Another Envoy of the instance accepts x2: it is served, the rejection stays reported.
        cache.ack("ns/gw", C, &versioned(&v2, C), &[], true);
        assert_eq!(served(&cache, "ns/gw", C), pairs(&[("x", "x2")]));
        assert_eq!(cache.rejections("ns/gw").len(), 1);
        // A NACK of content already accepted elsewhere blames no resource.
        cache.nack(
            "ns/gw",
            C,
            "v2",
            "envoy-old",
            "unknown field",
            &versioned(&v2, C),
        );
        assert!(
            cache
                .rejections("ns/gw")
                .iter()
                .any(|r| r.changed_resources.is_empty())
        );
        assert_eq!(served(&cache, "ns/gw", C), pairs(&[("x", "x2")]));
        // Removing the instance forgets its verdicts.
        cache.remove("ns/gw");
        assert!(cache.rejections("ns/gw").is_empty());
    }
}
