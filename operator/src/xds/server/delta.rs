//! Incremental xDS (`DeltaAggregatedResources`): responses carry what changed and what was
//! removed since what the Envoy has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use tonic::Status;

use super::ordering::{
    ADD_ORDER, REMOVE_ORDER, Subscription, WILDCARD, after_endpoints, awaits_endpoints_of,
    legacy_wildcard, ordered,
};
use super::stream::{Protocol, StreamCore, Verdict};
use crate::xds::cache::{Snapshot, TypeResources, VersionedResource, type_url};

#[derive(Debug, Default)]
struct DeltaType {
    /// Whether the client sent its first request for this type.
    requested: bool,
    subscription: Subscription,
    needs_response: bool,
    /// What the client has or is being sent: name → version, or `None` when it was told the
    /// name does not exist. A NACK takes the rejected response's resources back out (to their
    /// ACKed versions), so that they are sent again.
    known: BTreeMap<Arc<str>, Option<Arc<str>>>,
    /// What the client ACKed (or had when it reconnected): name → version.
    acked: BTreeMap<Arc<str>, Arc<str>>,
    /// Resources of rejected responses (name → rejected version) that are not sent again while
    /// every resource of that response still has its rejected version; once one changes, they
    /// all are (with everything else the client has not ACKed).
    held: Vec<BTreeMap<Arc<str>, Arc<str>>>,
    /// The resources the last diff was made against, once everything it found was recorded
    /// (additions as known, removals as sent), while nothing else the diff reads changed since
    /// (subscription, held versions, what the client has): a diff against the same map (the
    /// same persistent map, compared by pointer) would find nothing. It is the type an update
    /// did not touch, skipped without comparing every name.
    diffed: Option<TypeResources>,
    /// The map of a diff whose removals are not sent yet: `diffed` once they are.
    removing: Option<TypeResources>,
    /// Whether the last diff that found changes compared every resource (what the client has
    /// may then have changed beyond the names the snapshot changed: held resources released).
    diffed_all: bool,
    /// How many names the diffs of this type looked at.
    #[cfg(test)]
    compared: usize,
}

/// At most this many Delta responses await their ACK per stream; beyond that, the oldest are
/// forgotten (their verdicts then only count). A push is cut into responses of
/// [`RESPONSE_BYTES`]: this covers a push of 256 MiB (a first push at 10,000 roots is some 60
/// responses), and an entry holds pointers to resources the snapshot shares.
const MAX_IN_FLIGHT: usize = 1_024;

/// A push's resources (or removals) of one type go out in responses of about this many encoded
/// bytes at most (a single larger resource alone in its own). tonic encodes each response into
/// one buffer per stream that grows to the largest response and keeps that capacity for the
/// stream's life: one response of every cluster at 10,000 roots left 8 MiB held by each
/// stream once idle. Delta lets a type's changes arrive in any number of responses.
pub(super) const RESPONSE_BYTES: usize = 256 * 1024;

/// `items` in order, cut into runs whose `size`s add up to at most `limit` (an item larger
/// than `limit` alone in its run); always at least one run, empty when `items` is.
fn runs<T>(items: Vec<T>, limit: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut runs = vec![Vec::new()];
    let mut bytes = 0;
    for item in items {
        let n = size(&item);
        if bytes + n > limit
            && let Some(full) = runs.last()
            && !full.is_empty()
        {
            runs.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(run) = runs.last_mut() {
            run.push(item);
        }
    }
    runs
}

/// About what a resource adds to an encoded Delta response: its bytes, its `Any` type URL,
/// its name and version, and their field headers.
fn wire_size(r: &Arc<VersionedResource>) -> usize {
    r.value().len() + r.type_url().len() + r.name.len() + r.version.len() + 32
}

/// A Delta response awaiting its ACK or NACK.
#[derive(Debug)]
struct DeltaSent {
    type_url: String,
    version: String,
    resources: Vec<Arc<VersionedResource>>,
    removed: Vec<String>,
}

/// Per-stream state of `DeltaAggregatedResources`.
#[derive(Debug)]
pub(super) struct DeltaStream {
    pub(super) core: StreamCore,
    types: BTreeMap<String, DeltaType>,
    /// Responses awaiting their ACK or NACK, by nonce.
    in_flight: BTreeMap<u64, DeltaSent>,
    /// A request since the last push changed what a push sends: a first request of a type, a
    /// subscription change or a NACK (an ACK changes nothing a push reads).
    request_changed: bool,
    /// The clusters (of a wildcard CDS subscription) last found to need no endpoint
    /// subscription the client has not made; forgotten when a request changes subscriptions.
    endpoints_ready: Option<TypeResources>,
}

impl DeltaStream {
    fn response(
        &mut self,
        snapshot: &Snapshot,
        type_url: &str,
        added: Vec<Arc<VersionedResource>>,
        removed_resources: Vec<String>,
    ) -> DeltaDiscoveryResponse {
        let nonce = self
            .core
            .responding(type_url, Self::NAME, !added.is_empty());
        let resources = added
            .iter()
            .map(|r| Resource {
                name: r.name.to_string(),
                version: r.version.to_string(),
                resource: Some(r.to_any()),
                ..Default::default()
            })
            .collect();
        self.in_flight.insert(
            nonce,
            DeltaSent {
                type_url: type_url.to_owned(),
                version: snapshot.version().to_owned(),
                resources: added,
                removed: removed_resources.clone(),
            },
        );
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.in_flight.pop_first();
        }
        DeltaDiscoveryResponse {
            system_version_info: snapshot.version().to_owned(),
            resources,
            type_url: type_url.to_owned(),
            removed_resources,
            nonce: nonce.to_string(),
            ..Default::default()
        }
    }

    /// The verdict of the client on the response `nonce`, if that is one awaiting it.
    fn judge(&mut self, nonce: &str, error: Option<&str>) -> Option<Verdict> {
        let sent = self.in_flight.remove(&nonce.parse::<u64>().ok()?)?;
        let state = self.types.get_mut(&sent.type_url)?;
        let Some(error) = error else {
            for r in &sent.resources {
                state.acked.insert(r.name.clone(), r.version.clone());
            }
            for name in &sent.removed {
                state.acked.remove(name.as_str());
            }
            return Some(Verdict::Ack {
                type_url: sent.type_url,
                resources: sent.resources,
                removed: sent.removed,
                complete: false,
            });
        };
        // The client keeps what it ACKed before: take the rejected versions back out of what it
        // has (unless a later response already replaced them), and hold them until they change.
        state.forget_diff();
        let mut held = BTreeMap::new();
        for r in &sent.resources {
            if state.known.get(&r.name) == Some(&Some(r.version.clone())) {
                match state.acked.get(&r.name) {
                    Some(v) => state.known.insert(r.name.clone(), Some(v.clone())),
                    None => state.known.remove(&r.name),
                };
            }
            if state.acked.get(&r.name) != Some(&r.version) {
                held.insert(r.name.clone(), r.version.clone());
            }
        }
        if !held.is_empty() {
            state.held.push(held);
        }
        Some(Verdict::Nack {
            type_url: sent.type_url,
            version: sent.version,
            error: error.to_owned(),
            resources: sent.resources,
        })
    }

    /// Whether the push waits for endpoint subscriptions; the clusters are those the client
    /// has or was just sent, in the version served. Not the others it subscribes to: a cluster
    /// it rejected (held until it changes, while the cache serves it because another Envoy
    /// took it) would never get its subscription, and would hold every later push back.
    ///
    /// With a wildcard CDS subscription, clusters found not to wait are remembered, and the
    /// next snapshot's are looked at only where they changed (see [`Snapshot::changed_since`]),
    /// as long as what the client has of the others did not change either: the last CDS diff
    /// looked at changed names only, and no request changed a subscription or NACKed since.
    fn awaits_endpoints(&mut self, snapshot: &Snapshot) -> bool {
        let Some(cds) = self.types.get(type_url::CLUSTER) else {
            return false;
        };
        let all = snapshot.resources(type_url::CLUSTER);
        let has = |r: &&Arc<VersionedResource>| {
            cds.known
                .get(&r.name)
                .is_some_and(|v| v.as_deref() == Some(&*r.version))
        };
        let eds = self.types.get(type_url::ENDPOINT).map(|e| &e.subscription);
        let ready = self.endpoints_ready.take().filter(|_| !cds.diffed_all);
        if let (true, Some(all), Some(ready)) = (cds.subscription.wildcard, all, ready) {
            let unchanged = ready.ptr_eq(all)
                || snapshot
                    .changed_since(type_url::CLUSTER)
                    .filter(|(base, _)| base.ptr_eq(&ready))
                    .is_some_and(|(_, names)| {
                        let changed = names.iter().filter_map(|n| all.get(n)).filter(has);
                        !awaits_endpoints_of(changed.map(|r| &**r), eds)
                    });
            if unchanged {
                self.endpoints_ready = Some(all.clone());
                return false;
            }
        }
        let clusters = cds.subscription.select(all);
        let sent = || clusters.values().filter(has).map(|r| &**r);
        if cds.subscription.wildcard && !awaits_endpoints_of(sent(), eds) {
            self.endpoints_ready = all.cloned();
            return false;
        }
        self.core.awaits_endpoints_of(sent(), eds)
    }
}

#[cfg(test)]
impl DeltaStream {
    /// How many names the diffs of every type looked at so far.
    pub(super) fn compared(&self) -> usize {
        self.types.values().map(|t| t.compared).sum()
    }

    /// How many of the records of what the client has (`known`) and ACKed (`acked`) point at
    /// the name and version strings of `snapshot`'s resource itself (not at copies).
    pub(super) fn records_sharing(&self, snapshot: &Snapshot) -> (usize, usize) {
        let (mut known, mut acked) = (0, 0);
        for (type_url, t) in &self.types {
            let Some(all) = snapshot.resources(type_url) else {
                continue;
            };
            let shares = |name: &Arc<str>, version: &Arc<str>| {
                all.get(&**name)
                    .is_some_and(|r| Arc::ptr_eq(&r.name, name) && Arc::ptr_eq(&r.version, version))
            };
            known += t
                .known
                .iter()
                .filter(|(n, v)| v.as_ref().is_some_and(|v| shares(n, v)))
                .count();
            acked += t.acked.iter().filter(|(n, v)| shares(n, v)).count();
        }
        (known, acked)
    }
}

impl DeltaType {
    /// Applies the first request of this type in the stream: a reconnecting client says what it
    /// has (`initial_resource_versions`, only meaningful then).
    fn first_request(&mut self, request: &mut DeltaDiscoveryRequest) {
        self.forget_diff();
        self.requested = true;
        self.needs_response = true;
        self.acked = std::mem::take(&mut request.initial_resource_versions)
            .into_iter()
            .map(|(name, version)| (name.into(), version.into()))
            .collect();
        self.known = self
            .acked
            .iter()
            .map(|(name, version)| (name.clone(), Some(version.clone())))
            .collect();
        self.subscription.wildcard =
            request.resource_names_subscribe.is_empty() && legacy_wildcard(&request.type_url);
    }

    /// Applies subscription changes.
    fn subscribe(&mut self, subscribe: Vec<String>, unsubscribe: Vec<String>) {
        if !subscribe.is_empty() || !unsubscribe.is_empty() {
            self.forget_diff();
        }
        let sub = &mut self.subscription;
        for name in subscribe {
            if name == WILDCARD {
                sub.wildcard = true;
            } else {
                sub.names.insert(name);
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                sub.wildcard = false;
                let names = &sub.names;
                self.known.retain(|known, _| names.contains(&**known));
                self.acked.retain(|acked, _| names.contains(&**acked));
            } else {
                sub.names.remove(&name);
                if !sub.wildcard {
                    self.known.remove(name.as_str());
                    self.acked.remove(name.as_str());
                }
            }
        }
    }

    /// What goes out for this type: resources the client does not have (minus held rejected
    /// ones), and names to remove: gone since the client got them, or subscribed to by name
    /// and never existing. Records the additions as known.
    ///
    /// When the snapshot says which names changed since the resources this type was last
    /// diffed against (the stream is at most one snapshot behind), only those names are looked
    /// at; otherwise every selected resource is compared.
    fn diff(
        &mut self,
        snapshot: &Snapshot,
        type_url: &str,
    ) -> (Vec<Arc<VersionedResource>>, BTreeSet<String>) {
        let all = snapshot.resources(type_url);
        if let (Some(diffed), Some(all)) = (&self.diffed, all)
            && diffed.ptr_eq(all)
        {
            return (Vec::new(), BTreeSet::new());
        }
        let since_diffed = match (&self.diffed, all, snapshot.changed_since(type_url)) {
            (Some(diffed), Some(all), Some((base, names))) if diffed.ptr_eq(base) => {
                self.diff_names(all, names)
            }
            _ => None,
        };
        self.diffed_all = since_diffed.is_none();
        let (added, removed) = match since_diffed {
            Some(found) => found,
            None => self.diff_all(all),
        };
        for resource in &added {
            self.known
                .insert(resource.name.clone(), Some(resource.version.clone()));
        }
        if removed.is_empty() {
            self.diffed = all.cloned();
        } else {
            self.removing = all.cloned();
        }
        (added, removed)
    }

    /// The diff against every selected resource.
    fn diff_all(
        &mut self,
        all: Option<&TypeResources>,
    ) -> (Vec<Arc<VersionedResource>>, BTreeSet<String>) {
        self.forget_diff();
        let selected = self.subscription.select(all);
        #[cfg(test)]
        {
            self.compared += selected.len();
        }
        // A rejected response is held while all of it is still what would be sent.
        self.held.retain(|held| {
            held.iter()
                .all(|(name, version)| selected.get(name).is_some_and(|r| r.version == *version))
        });
        let held = &self.held;
        let known = &self.known;
        let added: Vec<Arc<VersionedResource>> = selected
            .values()
            .filter(|r| {
                known
                    .get(&r.name)
                    .is_none_or(|v| v.as_deref() != Some(&*r.version))
            })
            .filter(|r| !held.iter().any(|h| h.contains_key(&r.name)))
            .cloned()
            .collect();
        let exists = |name: &str| all.is_some_and(|a| a.contains_key(name));
        let mut removed: BTreeSet<String> = known
            .iter()
            .filter(|(name, version)| version.is_some() && !exists(name))
            .map(|(name, _)| name.to_string())
            .collect();
        removed.extend(
            self.subscription
                .names
                .iter()
                .filter(|name| !exists(name) && !known.contains_key(name.as_str()))
                .cloned(),
        );
        (added, removed)
    }

    /// The diff of `all` against the resources last diffed, of which it differs at most in
    /// `names`: the same answer as [`DeltaType::diff_all`] (every other name is as the last
    /// diff left it: selected or not, known at its version, removed, held), found by looking at
    /// `names` only. `None` when a held rejected response would be released: then everything
    /// the client has not ACKed goes out again, which takes the whole comparison.
    fn diff_names(
        &mut self,
        all: &TypeResources,
        names: &BTreeSet<Arc<str>>,
    ) -> Option<(Vec<Arc<VersionedResource>>, BTreeSet<String>)> {
        #[cfg(test)]
        {
            self.compared += names.len();
        }
        let sub = &self.subscription;
        let selected = |name: &str| {
            (sub.wildcard || sub.names.contains(name))
                .then(|| all.get(name))
                .flatten()
        };
        let released = self.held.iter().any(|held| {
            held.iter().any(|(name, version)| {
                names.contains(name) && selected(name).is_none_or(|r| r.version != *version)
            })
        });
        if released {
            return None;
        }
        let known = &self.known;
        let mut added = Vec::new();
        let mut removed = BTreeSet::new();
        for name in names {
            if let Some(r) = selected(name) {
                let has = known
                    .get(name)
                    .is_some_and(|v| v.as_deref() == Some(&*r.version));
                if !has && !self.held.iter().any(|h| h.contains_key(name)) {
                    added.push(r.clone());
                }
            } else if !all.contains_key(name) {
                let gone = match known.get(name) {
                    Some(version) => version.is_some(),
                    None => sub.names.contains(&**name),
                };
                if gone {
                    removed.insert(name.to_string());
                }
            }
        }
        Some((added, removed))
    }

    /// Something a diff reads other than the resources changed: the next diff compares again.
    fn forget_diff(&mut self) {
        self.diffed = None;
        self.removing = None;
    }

    /// Records removals as sent: a name still subscribed to is known not to exist.
    fn removed(&mut self, removed: &[String]) {
        self.diffed = self.removing.take();
        for name in removed {
            if self.subscription.names.contains(name) {
                self.known.insert(name.as_str().into(), None);
            } else {
                self.known.remove(name.as_str());
            }
        }
    }
}

impl Protocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(core: StreamCore) -> Self {
        DeltaStream {
            core,
            types: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            request_changed: false,
            endpoints_ready: None,
        }
    }

    fn on_request(&mut self, mut request: DeltaDiscoveryRequest) -> Result<Vec<Verdict>, Status> {
        StreamCore::check_type_url(&request.type_url)?;
        let mut verdicts = Vec::new();
        if !request.response_nonce.is_empty() {
            let error = request.error_detail.as_ref().map(|e| e.message.as_str());
            verdicts.extend(self.judge(&request.response_nonce, error));
            if let Some(error) = &request.error_detail {
                self.core
                    .on_nack(&request.type_url, &request.response_nonce, error);
            }
        }
        let state = self.types.entry(request.type_url.clone()).or_default();
        let changes = !state.requested
            || request.error_detail.is_some()
            || !request.resource_names_subscribe.is_empty()
            || !request.resource_names_unsubscribe.is_empty();
        if changes {
            self.request_changed = true;
            self.endpoints_ready = None;
        }
        if !state.requested {
            state.first_request(&mut request);
        }
        state.subscribe(
            request.resource_names_subscribe,
            request.resource_names_unsubscribe,
        );
        Ok(verdicts)
    }

    fn push_after_request(&mut self) -> bool {
        std::mem::take(&mut self.request_changed)
    }

    fn push(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let mut responses = Vec::new();
        let mut removals: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut hold = None;
        for type_url in ordered(self.types.keys(), &ADD_ORDER) {
            if after_endpoints(&type_url)
                && *hold.get_or_insert_with(|| self.awaits_endpoints(snapshot))
            {
                // The rest, and every removal, follows the EDS subscription; removals are
                // recorded only once sent, so the next push finds them again.
                return responses;
            }
            let Some(state) = self.types.get_mut(&type_url) else {
                continue;
            };
            let (added, removed) = state.diff(snapshot, &type_url);
            let answer_empty = std::mem::take(&mut state.needs_response) && removed.is_empty();
            if !added.is_empty() || answer_empty {
                for run in runs(added, RESPONSE_BYTES, wire_size) {
                    responses.push(self.response(snapshot, &type_url, run, Vec::new()));
                }
            }
            if !removed.is_empty() {
                removals.insert(type_url, removed.into_iter().collect());
            }
        }
        for type_url in ordered(removals.keys(), &REMOVE_ORDER) {
            let Some(removed) = removals.remove(&type_url) else {
                continue;
            };
            if let Some(state) = self.types.get_mut(&type_url) {
                state.removed(&removed);
            }
            for run in runs(removed, RESPONSE_BYTES, |name| name.len() + 4) {
                responses.push(self.response(snapshot, &type_url, Vec::new(), run));
            }
        }
        responses
    }
}
