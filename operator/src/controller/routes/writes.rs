//! Writing the IngressRoutes' statuses the pipelines computed, a few at a time, each with an
//! event when the verdict is new; only while leading.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde::Deserialize;
use serde_json::json;

use super::{Announced, EVENT_ACTION, RoutesContext};
use crate::api::IngressRoute;
use crate::api::ingressroute::IngressRouteStatus;
use crate::controller::crds::{self, INGRESSROUTES};
use crate::controller::gateway::{MAX_EVENT_NOTE_BYTES, truncate_bytes};
use crate::controller::status::combine_statuses;
use crate::dag::Dag;
use crate::provision::FIELD_MANAGER;
use crate::snapshot::{ClusterSnapshot, ObjKey};

/// The statuses to write: combined across instances, and only where they differ from what the
/// object carries. IngressRoutes no instance judges are left alone. In the order they are
/// written: one namespace after another in turn (see [`fair_order`]).
pub fn statuses_to_write<'a>(
    snapshot: &ClusterSnapshot,
    dags: impl IntoIterator<Item = &'a Dag>,
) -> Vec<(ObjKey, IngressRouteStatus)> {
    let differing = combine_statuses(dags)
        .into_iter()
        .filter(|(key, want)| {
            let current = match snapshot.ingress_routes.get(key) {
                Some(ir) => ir.status.as_ref(),
                None => match snapshot.undecodable_routes.get(key) {
                    Some(u) => u.status.as_ref(),
                    None => return false,
                },
            };
            current != Some(want)
        })
        .collect();
    fair_order(differing, |(key, _)| &key.namespace)
}

/// `writes` taken one per namespace in turn: the first write of each namespace, then the
/// second of each, and so on (namespaces in the order they first appear, each one's writes in
/// their order). A tenant whose thousands of statuses flip (a Service they all use toggled)
/// would otherwise go first in every round when its namespace sorts first, and every other
/// tenant's one new IngressRoute would wait behind all of them (review 4 F3.3).
pub(super) fn fair_order<T>(writes: Vec<T>, namespace: impl Fn(&T) -> &str) -> Vec<T> {
    let mut queues: Vec<std::collections::VecDeque<T>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for w in writes {
        match index.get(namespace(&w)) {
            Some(&i) => queues[i].push_back(w),
            None => {
                index.insert(namespace(&w).to_owned(), queues.len());
                queues.push(std::collections::VecDeque::from([w]));
            }
        }
    }
    let mut out = Vec::with_capacity(queues.iter().map(|q| q.len()).sum());
    while !queues.is_empty() {
        queues.retain_mut(|q| match q.pop_front() {
            Some(w) => {
                out.push(w);
                true
            }
            None => false,
        });
    }
    out
}

/// `writes` with those that `failed` before after all the others, each part in its order. A
/// write that was not answered in time cuts its namespace off for the rest of the round (see
/// [`write_round`]): tried first, one object whose writes always hang (a webhook on its label)
/// would hold back every new status of its namespace until its own next retry, round after
/// round (review 8 R8.3); tried last, it costs only itself.
pub(super) fn failed_last<T>(writes: Vec<T>, failed: impl Fn(&T) -> bool) -> Vec<T> {
    let (mut fresh, failing): (Vec<T>, Vec<T>) = writes.into_iter().partition(|w| !failed(w));
    fresh.extend(failing);
    fresh
}

#[cfg(test)]
mod fair_order_tests {
    use super::*;

    #[test]
    fn one_write_per_namespace_in_turn() {
        let mut writes: Vec<(ObjKey, u32)> = (0..1000)
            .map(|i| (ObjKey::new("aaa", format!("r{i:04}")), i))
            .collect();
        writes.push((ObjKey::new("mmm", "one"), 1000));
        writes.push((ObjKey::new("zzz", "a"), 1001));
        writes.push((ObjKey::new("zzz", "b"), 1002));
        let ordered = fair_order(writes, |(k, _)| &k.namespace);
        assert_eq!(ordered.len(), 1003);
        let first: Vec<u32> = ordered.iter().take(6).map(|(_, v)| *v).collect();
        assert_eq!(first, [0, 1000, 1001, 1, 1002, 2]);
        // Within a namespace, still in key order.
        let aaa: Vec<u32> = (ordered.iter())
            .filter(|(k, _)| &*k.namespace == "aaa")
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(aaa, (0..1000).collect::<Vec<_>>());
    }

    /// A namespace with thousands of writes due takes at most its share of a round; the rest
    /// waits for the next round (which starts as soon as this one ends), so another tenant's
    /// write, due after this round started, waits behind at most that share.
    #[test]
    fn a_round_takes_at_most_a_share_of_each_namespace() {
        let mut writes: Vec<(ObjKey, u32)> = (0..1000)
            .map(|i| (ObjKey::new("aaa", format!("r{i:04}")), i))
            .collect();
        writes.extend((0..3).map(|i| (ObjKey::new("zzz", format!("r{i}")), 1000 + i)));
        let ordered = fair_order(writes, |(k, _)| &k.namespace);
        let (taken, deferred) = per_namespace_share(ordered, 64, |(k, _)| &k.namespace);
        assert_eq!(deferred, 1000 - 64);
        assert_eq!(taken.len(), 64 + 3);
        let aaa: Vec<u32> = (taken.iter())
            .filter(|(k, _)| &*k.namespace == "aaa")
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(aaa, (0..64).collect::<Vec<_>>(), "the first in key order");
        // Every write of the small namespace is among the first of the round.
        let zzz: Vec<usize> = (taken.iter().enumerate())
            .filter(|(_, (k, _))| &*k.namespace == "zzz")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(zzz, [1, 3, 5]);
        // Under the share, nothing is deferred.
        let few = vec![(ObjKey::new("aaa", "a"), 0), (ObjKey::new("bbb", "b"), 1)];
        assert_eq!(per_namespace_share(few, 1, |(k, _)| &k.namespace).1, 0);
    }

    /// A write that failed before goes after every other of the round, whatever its namespace
    /// and key: a hanging one no longer cuts its namespace's new writes off.
    #[test]
    fn writes_that_failed_before_go_last() {
        let writes: Vec<(ObjKey, u32)> = [("a", "aaa"), ("b", "x"), ("a", "b0"), ("a", "b1")]
            .iter()
            .zip(0..)
            .map(|(&(ns, name), i)| (ObjKey::new(ns, name), i))
            .collect();
        let ordered = fair_order(writes, |(k, _)| &k.namespace);
        let hung = |(k, _): &(ObjKey, u32)| &*k.name == "aaa";
        let ordered: Vec<u32> = (failed_last(ordered, hung).iter())
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(ordered, [1, 2, 3, 0]);
    }

    /// Traefik announcements arrive sorted by API version and kind first: the namespaces are
    /// interleaved all the same.
    #[test]
    fn namespaces_take_turns_whatever_the_input_order() {
        let items = vec![("b", 0), ("a", 1), ("b", 2), ("a", 3), ("c", 4)];
        let ordered = fair_order(items, |(ns, _)| ns);
        assert_eq!(ordered, [("b", 0), ("a", 1), ("c", 4), ("b", 2), ("a", 3)]);
    }
}

/// How many writes of one namespace a status round makes, in round trips per write in flight:
/// the round's share of each namespace is this times `--status-writes-in-flight` (1,024 by
/// default). A round ends when all its writes are done, and whatever falls due meanwhile (another
/// tenant's new IngressRoute) waits for the next round: without a share, a tenant with 10,000
/// flipping statuses would make everyone wait for all of them. With it, a round lasts at most
/// this many round trips per namespace with writes due, and the next one starts as soon as it
/// ends with the rest (in turn with everyone else's).
pub const NAMESPACE_ROUND_TRIPS: usize = 64;

/// The first `share` items of each namespace of `items` (in their order), and how many were
/// left out.
pub(super) fn per_namespace_share<T>(
    items: Vec<T>,
    share: usize,
    namespace: impl Fn(&T) -> &str,
) -> (Vec<T>, usize) {
    let mut taken: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut deferred = 0;
    let kept = items
        .into_iter()
        .filter(|item| {
            let n = match taken.get_mut(namespace(item)) {
                Some(n) => n,
                None => taken.entry(namespace(item).to_owned()).or_insert(0),
            };
            *n += 1;
            let keep = *n <= share;
            deferred += usize::from(!keep);
            keep
        })
        .collect();
    (kept, deferred)
}

/// Writes the statuses that changed, `--status-writes-in-flight` at a time (default
/// [`STATUS_WRITES_IN_FLIGHT`]), each started only while this replica still leads, and at most
/// a share of each namespace per round (see [`NAMESPACE_ROUND_TRIPS`]). Each status
/// written is announced with an Event on the IngressRoute (see [`status_event`]); a write that
/// completes after the lease was lost is not announced, so the new leader, finding the status
/// already written, records no event for it.
/// An Event that could not be recorded is owed: later rounds record it while the object still
/// carries that status (a status written again is announced by its own write).
/// A write or an Event that failed (or was not answered within `--status-call-timeout-seconds`)
/// is tried again on its object's own schedule (see [`super::retry`]): rounds before then leave
/// it alone, so one object the API server always refuses costs one call per interval, not one
/// per round, and never holds back the others'.
/// Returns how many statuses differed from what the objects carry (0: all were in step); the
/// failures are in `announced`'s back-offs.
pub(super) async fn write_statuses(
    ctx: &RoutesContext,
    snapshot: &ClusterSnapshot,
    dags: Vec<&Dag>,
    announced: &mut Announced,
) -> usize {
    use futures::StreamExt;

    announced
        .done
        .retain(|key, _| stored(snapshot, key).is_some());
    announced.pending.settle(snapshot);
    let now = Instant::now();
    // Each write (and its event) is a round trip to the API server: a few are in flight at once,
    // so that 10,000 new IngressRoutes are not 10,000 sequential round trips. Keys are distinct,
    // so writes never race each other; what they announced is recorded once all are done.
    let differing = statuses_to_write(snapshot, dags);
    let differed = differing.len();
    // A status written by the last round and not yet seen back is not written twice (it still
    // counts as differing: the round is not in step until its echo is seen).
    let rewritten: BTreeSet<ObjKey> = differing.iter().map(|(key, _)| key.clone()).collect();
    // A failed write's schedule, by object and the version it was decided on; forgotten once
    // the object no longer differs or moved on (an edit is written at once).
    let versioned = |key: &ObjKey| (key.clone(), stored_version(snapshot, key));
    let due: BTreeSet<(ObjKey, Option<String>)> = rewritten.iter().map(versioned).collect();
    announced.write_backoff.retain(|k| due.contains(k));
    let backoff = &announced.write_backoff;
    let writes: Vec<(ObjKey, IngressRouteStatus)> = differing
        .into_iter()
        .filter(|(key, want)| !announced.pending.in_flight(key, want))
        .filter(|(key, _)| backoff.ready(&versioned(key), now))
        .collect();
    let writes = failed_last(writes, |(key, _)| backoff.is_failing(&versioned(key)));
    let share = NAMESPACE_ROUND_TRIPS.saturating_mul(ctx.status_writes_in_flight.max(1));
    let (writes, deferred) = per_namespace_share(writes, share, |(key, _)| &key.namespace);
    if deferred > 0 {
        tracing::debug!(
            deferred,
            "status writes beyond their namespace's share of the round; the next round writes them"
        );
    }
    // An object written again announces itself; if that write fails, what it owed stays owed.
    let (held, owed): (Vec<_>, Vec<_>) = std::mem::take(&mut announced.owed)
        .into_iter()
        .partition(|(key, _)| rewritten.contains(key));
    // Owed Events whose retry is not due yet stay owed, untried.
    let mut waiting = Vec::new();
    let event_backoff = &announced.event_backoff;
    let retries: Vec<(ObjKey, ObjectReference, Announcement, u32)> = owed
        .into_iter()
        .filter_map(|(key, ((uid, status), tries))| {
            let (meta, current) = stored(snapshot, &key)?;
            if meta.uid != uid || current != Some(&status) {
                return None;
            }
            if !event_backoff.ready(&key, now) {
                waiting.push((key, ((uid, status), tries)));
                return None;
            }
            let reference = regarding(&key, meta.uid.clone(), meta.resource_version.clone());
            Some((key, reference, (uid, status), tries))
        })
        .collect();
    let seen = &announced.done;
    // A namespace one of whose writes was not answered in time gets no more calls this round
    // (they wait for the next, not failed): without this, a tenant whose every write hangs
    // (its own admission webhook) held the round for its whole share, 64 timeouts one batch
    // after another (review 7 R7.5), before later changes of other tenants were written.
    let hung: std::sync::Mutex<BTreeSet<Arc<str>>> = std::sync::Mutex::default();
    let is_hung = |ns: &Arc<str>| hung.lock().is_ok_and(|h| h.contains(ns));
    let results: Vec<WriteOutcome> = futures::stream::iter(writes)
        .map(|(key, status)| {
            let (hung, is_hung) = (&hung, &is_hung);
            async move {
                let namespace = key.namespace.clone();
                if is_hung(&namespace) {
                    return (Written::No, None);
                }
                let outcome = write_and_announce(ctx, seen, key, status).await;
                if let (Written::TimedOut(_), _) = &outcome
                    && let Ok(mut h) = hung.lock()
                {
                    h.insert(namespace);
                }
                outcome
            }
        })
        .buffer_unordered(ctx.status_writes_in_flight.max(1))
        .collect()
        .await;
    let now = Instant::now();
    let mut outcomes: Vec<(Announce, u32)> = Vec::with_capacity(results.len());
    for (written, outcome) in results {
        match written {
            Written::Yes(key, status) => {
                announced.write_backoff.succeeded(&versioned(&key));
                announced.pending.record(snapshot, key, status);
            }
            Written::Failed(key) | Written::TimedOut(key) => {
                announced.write_backoff.failed(versioned(&key), now);
            }
            Written::No => {}
        }
        outcomes.extend(outcome.map(|o| (o, 0)));
    }
    let retried: Vec<(Announce, u32)> = futures::stream::iter(retries)
        .filter(|_| std::future::ready(ctx.leadership.is_leading()))
        .map(async |(key, regarding, announcement, tries)| {
            (record_event(ctx, key, regarding, announcement).await, tries)
        })
        .buffer_unordered(ctx.status_writes_in_flight.max(1))
        .collect()
        .await;
    outcomes.extend(retried);
    let now = Instant::now();
    let mut announced_now = BTreeSet::new();
    for (outcome, tries) in outcomes {
        match outcome {
            Announce::Recorded(key, a) => {
                announced.event_backoff.succeeded(&key);
                announced_now.insert(key.clone());
                announced.done.insert(key, a);
            }
            Announce::Owed(key, _) if tries + 1 >= EVENT_TRIES => {
                // Refused every time (a quota, a namespace being deleted): given up, so that
                // rounds do not run forever for it.
                tracing::warn!(ingressroute = %key, tries = tries + 1, "the Event announcing its status was refused every time; giving up");
                announced.event_backoff.succeeded(&key);
            }
            Announce::Owed(key, a) => {
                announced.event_backoff.failed(key.clone(), now);
                announced_now.insert(key.clone());
                announced.owed.insert(key, (a, tries + 1));
            }
        }
    }
    for (key, owed) in held.into_iter().chain(waiting) {
        if !announced_now.contains(&key) {
            announced.owed.insert(key, owed);
        }
    }
    let owed = &announced.owed;
    announced.event_backoff.retain(|key| owed.contains_key(key));
    differed
}

/// How many status writes (each with its event) are in flight at once by default
/// (`--status-writes-in-flight`): enough that a burst of new routes is not one round trip after
/// another, few enough not to crowd the API server (whose priority and fairness limits apply to
/// the operator like to any client). A replica that loses its lease starts no new write, and
/// the round stops at once: the writes under way are dropped (see [`super::round_task`]).
pub const STATUS_WRITES_IN_FLIGHT: usize = 16;

/// How long one status write (all its calls: the write, and a read and the CRDs' check when
/// the write shows the CRD changed) or one Event may take by default
/// (`--status-call-timeout-seconds`) before it counts as failed and is tried again later. The
/// API client has no read timeout: without this, one call the API server never answers (an
/// admission webhook that hangs on one tenant's objects) would hold the status round, and so
/// every tenant's statuses and Events, until the lease changed. Longer than the API server's
/// own admission webhook timeout (10 s by default), so a slow webhook still gets its answer.
pub const STATUS_CALL_TIMEOUT_SECONDS: u16 = 15;

/// How many times an owed Event is tried before it is given up.
const EVENT_TRIES: u32 = 8;

/// Whether a status was written.
enum Written {
    /// To this IngressRoute.
    Yes(ObjKey, IngressRouteStatus),
    /// The write to this IngressRoute failed (or was not answered in time): tried again by
    /// a later round, on its own schedule.
    Failed(ObjKey),
    /// As `Failed`, the API server not answering within `--status-call-timeout-seconds`.
    TimedOut(ObjKey),
    /// Not tried (no longer leading, or the namespace's calls hang this round) or the object is
    /// gone.
    No,
}

/// How one status write went, and its announcement, if one was made.
type WriteOutcome = (Written, Option<Announce>);

/// The uid of an IngressRoute and the status its Event announced.
type Announcement = (Option<String>, IngressRouteStatus);

/// How the Event announcing a status went.
enum Announce {
    Recorded(ObjKey, Announcement),
    /// Not recorded: retried by a later round.
    Owed(ObjKey, Announcement),
}

/// An IngressRoute of the snapshot (decodable or not): its metadata and stored status.
fn stored<'a>(
    snapshot: &'a ClusterSnapshot,
    key: &ObjKey,
) -> Option<(&'a ObjectMeta, Option<&'a IngressRouteStatus>)> {
    match snapshot.ingress_routes.get(key) {
        Some(ir) => Some((&ir.metadata, ir.status.as_ref())),
        None => snapshot
            .undecodable_routes
            .get(key)
            .map(|u| (&u.metadata, u.status.as_ref())),
    }
}

/// The stored version (`resourceVersion`) of an IngressRoute of the snapshot.
fn stored_version(snapshot: &ClusterSnapshot, key: &ObjKey) -> Option<String> {
    stored(snapshot, key).and_then(|(meta, _)| meta.resource_version.clone())
}

/// The reference of an Event about the IngressRoute `key` (its `uid`, at `resource_version`).
/// The resourceVersion, new with every write, tells this Event from an earlier one with the
/// same reason about the same object.
fn regarding(
    key: &ObjKey,
    uid: Option<String>,
    resource_version: Option<String>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(IngressRoute::api_version(&()).into_owned()),
        kind: Some(IngressRoute::kind(&()).into_owned()),
        namespace: Some(key.namespace.to_string()),
        name: Some(key.name.to_string()),
        uid,
        resource_version,
        ..ObjectReference::default()
    }
}

/// Writes one status and, when it differs from what was announced for the object, records an
/// event on it; returns whether the status was written, and how the announcement went, if one
/// was made.
async fn write_and_announce(
    ctx: &RoutesContext,
    announced: &BTreeMap<ObjKey, Announcement>,
    key: ObjKey,
    status: IngressRouteStatus,
) -> WriteOutcome {
    if !ctx.leadership.is_leading() {
        tracing::debug!(ingressroute = %key, "no longer leading; the status is left to the new leader");
        return (Written::No, None);
    }
    let written = tokio::time::timeout(ctx.call_timeout, write_status(ctx, &key, &status))
        .await
        .unwrap_or(Err(StatusWriteError::TimedOut(ctx.call_timeout)));
    match written {
        Ok(Some(stored)) => {
            ctx.metrics
                .status_writes
                .with_label_values(&["IngressRoute"])
                .inc();
            tracing::debug!(ingressroute = %key, status = %status.current_status, "status written");
            let written = Written::Yes(key.clone(), status.clone());
            let announcement = (stored.metadata.uid.clone(), status);
            let StoredMeta {
                uid,
                resource_version,
            } = stored.metadata;
            // Like every write, only while leading (a write in flight when the lease was lost
            // is not announced).
            if announced.get(&key) == Some(&announcement) || !ctx.leadership.is_leading() {
                return (written, None);
            }
            let regarding = regarding(&key, uid, resource_version);
            (
                written,
                Some(record_event(ctx, key, regarding, announcement).await),
            )
        }
        Ok(None) => (Written::No, None), // Deleted meanwhile.
        Err(e) => {
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["routes", "status_write"])
                .inc();
            tracing::warn!(ingressroute = %key, error = %e, "status write failed; will retry");
            match e {
                StatusWriteError::TimedOut(_) => (Written::TimedOut(key), None),
                _ => (Written::Failed(key), None),
            }
        }
    }
}

/// Records the Event announcing `announcement` on the IngressRoute `regarding`.
async fn record_event(
    ctx: &RoutesContext,
    key: ObjKey,
    regarding: ObjectReference,
    announcement: Announcement,
) -> Announce {
    match ctx
        .recorder
        .publish(&status_event(&announcement.1), &regarding)
        .await
    {
        Ok(()) => Announce::Recorded(key, announcement),
        Err(e) => {
            ctx.metrics
                .reconcile_errors
                .with_label_values(&["routes", "event"])
                .inc();
            tracing::warn!(ingressroute = %key, error = %e, "cannot record an event on the IngressRoute; a later round retries");
            Announce::Owed(key, announcement)
        }
    }
}

/// The event announcing an IngressRoute's new status: reason `Valid` (Normal), `Invalid` or
/// `Orphaned` (Warning), the description as its note.
pub fn status_event(status: &IngressRouteStatus) -> Event {
    let (type_, reason) = match status.current_status.as_str() {
        "valid" => (EventType::Normal, "Valid"),
        "invalid" => (EventType::Warning, "Invalid"),
        "orphaned" => (EventType::Warning, "Orphaned"),
        _ => (EventType::Warning, "Unknown"),
    };
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate_bytes(&status.description, MAX_EVENT_NOTE_BYTES)),
        action: EVENT_ACTION.to_owned(),
        secondary: None,
    }
}

/// How one status write went wrong.
#[derive(Debug, thiserror::Error)]
enum StatusWriteError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    NotKept(&'static str),
    #[error("the API server did not answer within {0:?}")]
    TimedOut(Duration),
}

/// Writes one IngressRoute's status: through `/status` when the CRD has the subresource, else
/// through the main resource (a merge patch of `status`, as Contour wrote it, since without
/// the subresource `status` is an ordinary field). When the outcome shows the CRD changed
/// under it (`/status` not served for an object that exists; a main-resource write whose
/// `status` the server dropped), the CRDs are looked at again and the write goes the other
/// way. `Ok(None)`: the object is gone; otherwise what the write needs of the object as stored.
async fn write_status(
    ctx: &RoutesContext,
    key: &ObjKey,
    status: &IngressRouteStatus,
) -> Result<Option<StoredRoute>, StatusWriteError> {
    let resource = ApiResource::erase::<IngressRoute>(&());
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &key.namespace, &resource);
    // The answers are read into what is used of them (uid, resourceVersion, status), not
    // decoded into a whole object: at 10,000 new routes that decoding was most of a write's
    // cost in the operator.
    let request = kube::core::Request::new(api.resource_url());
    let mut via_subresource = ctx.crds.status_subresource(INGRESSROUTES);
    // At most one switch of route per write.
    for attempt in 0..2 {
        let recheck = attempt == 0;
        if via_subresource {
            let body = json!({
                "apiVersion": "contour.heptio.com/v1beta1",
                "kind": "IngressRoute",
                "status": status,
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let patch = request
                .patch_subresource("status", &key.name, &params, &Patch::Apply(&body))
                .map_err(kube::Error::BuildRequest)?;
            match ctx.client.request::<StoredRoute>(patch).await {
                Ok(stored) => return Ok(Some(stored)),
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    // Deleted meanwhile, or `/status` is not served.
                    if api.get_opt(&key.name).await?.is_none() {
                        return Ok(None);
                    }
                    if !(recheck && switched(ctx, via_subresource).await) {
                        return Err(StatusWriteError::NotKept(
                            "the status subresource answers 404 for an IngressRoute that exists",
                        ));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            // Both fields, so that a merge patch clears an old description.
            let body = json!({"status": {
                "currentStatus": status.current_status,
                "description": status.description,
            }});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            let patch = request
                .patch(&key.name, &params, &Patch::Merge(&body))
                .map_err(kube::Error::BuildRequest)?;
            match ctx.client.request::<StoredRoute>(patch).await {
                Ok(stored) if kept(&stored, status) => return Ok(Some(stored)),
                Ok(_) => {
                    // The server dropped `status`: the CRD has a status subresource now.
                    if !(recheck && switched(ctx, via_subresource).await) {
                        return Err(StatusWriteError::NotKept(
                            "the API server did not keep the status written through the main resource",
                        ));
                    }
                }
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        via_subresource = ctx.crds.status_subresource(INGRESSROUTES);
    }
    Err(StatusWriteError::NotKept(
        "the IngressRoute CRD changed during the write",
    ))
}

/// Looks at the CRDs again; whether the IngressRoute status route now differs from the one the
/// failed attempt used (`used_subresource`). Compared with that attempt's route, not with the
/// shared state before this check: with several writes in flight, another write's check may
/// have recorded the change already.
async fn switched(ctx: &RoutesContext, used_subresource: bool) -> bool {
    if ctx.crds.status_subresource(INGRESSROUTES) == used_subresource {
        crds::check(&ctx.client, &ctx.crds, &ctx.metrics).await;
    }
    ctx.crds.status_subresource(INGRESSROUTES) != used_subresource
}

/// What a status write reads of the IngressRoute the API server answers with; the rest of the
/// object (its spec, its managed fields) is skipped unread.
#[derive(Debug, serde::Deserialize)]
struct StoredRoute {
    metadata: StoredMeta,
    #[serde(default)]
    status: Option<serde_json::Value>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredMeta {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// Whether a stored IngressRoute carries `want` as its status.
fn kept(stored: &StoredRoute, want: &IngressRouteStatus) -> bool {
    stored
        .status
        .as_ref()
        .and_then(|s| IngressRouteStatus::deserialize(s).ok())
        .is_some_and(|s| s == *want)
}
