//! Verdicts on Traefik objects in `sluice run`. Traefik's CRDs have no status, and the operator
//! has no write permission on Traefik objects: a verdict is announced by a Kubernetes Event on
//! the object when it changes (valid ↔ invalid, or another reason), and counted in the route
//! gauge and the Gateways' route counts, labelled by kind and API group.
//!
//! What was announced is remembered by the leader in memory, per object (with its uid): a pass
//! that finds the same verdict records nothing. A new leader (or a restarted operator) does not
//! know what its predecessor announced, so it announces each Traefik object's current verdict
//! once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;

use super::retry::Backoff;
use super::writes::{NAMESPACE_ROUND_TRIPS, fair_order, per_namespace_share};
use super::{RoutesContext, status_event};
use crate::api::gateway::RouteCounts;
use crate::api::ingressroute::IngressRouteStatus;
use crate::api::traefik::Group;
use crate::controller::status::combine_verdicts;
use crate::dag::owner::{TRAEFIK_KIND, TRAEFIK_TCP_KIND};
use crate::dag::{Dag, StatusCounts, StatusTally};
use crate::snapshot::{ClusterSnapshot, ObjKey};

/// One Traefik object a verdict is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TraefikRef {
    pub api_version: String,
    pub kind: String,
    pub key: ObjKey,
}

/// What the leader announced, by object: its uid and the verdict.
pub type TraefikAnnounced = BTreeMap<TraefikRef, (Option<String>, IngressRouteStatus)>;

/// The verdict each Traefik object should be announced with, combined across Gateways as
/// IngressRoute statuses are. Pure.
pub fn traefik_verdicts<'a>(
    dags: impl IntoIterator<Item = &'a Dag>,
) -> BTreeMap<TraefikRef, IngressRouteStatus> {
    combine_verdicts(dags.into_iter().flat_map(|dag| {
        dag.object_statuses.iter().map(|s| {
            (
                TraefikRef {
                    api_version: s.api_version.clone(),
                    kind: s.kind.clone(),
                    key: ObjKey::new(s.namespace.clone(), s.name.clone()),
                },
                dag.gateway.as_str(),
                s.current_status,
                s.description.as_str(),
            )
        })
    }))
}

/// The series of the route gauge: `(kind, group)`, Contour's first. Every series is set on each
/// pass (0 when empty), so none goes stale.
pub const ROUTE_SERIES: [(&str, &str); 5] = [
    ("IngressRoute", "contour.heptio.com"),
    ("IngressRoute", "traefik.io"),
    ("IngressRoute", "traefik.containo.us"),
    ("IngressRouteTCP", "traefik.io"),
    ("IngressRouteTCP", "traefik.containo.us"),
];

/// The series of the gauge of the other Traefik objects' verdicts (`sluice_traefik_objects`):
/// `(kind, group)`. Every series is set on each pass (0 when empty).
pub const OBJECT_SERIES: [(&str, &str); 10] = [
    ("Middleware", "traefik.io"),
    ("Middleware", "traefik.containo.us"),
    ("TraefikService", "traefik.io"),
    ("TraefikService", "traefik.containo.us"),
    ("TLSOption", "traefik.io"),
    ("TLSOption", "traefik.containo.us"),
    ("TLSStore", "traefik.io"),
    ("TLSStore", "traefik.containo.us"),
    ("ServersTransport", "traefik.io"),
    ("ServersTransport", "traefik.containo.us"),
];

/// One DAG's verdict counts per [`ROUTE_SERIES`] entry, from every status of `dag` (passes
/// read the counts the pipeline keeps: [`series_of`]).
pub fn series_counts(dag: &Dag) -> BTreeMap<(&'static str, &'static str), RouteCounts> {
    series_of(&StatusTally::of(dag).counts)
}

/// Verdict counts `c` per [`ROUTE_SERIES`] entry (routes only). Pure; one step per kind and
/// API version, none per route.
pub fn series_of(c: &StatusCounts) -> BTreeMap<(&'static str, &'static str), RouteCounts> {
    let mut counts = counts_per(&ROUTE_SERIES[1..], c);
    counts.insert(ROUTE_SERIES[0], c.routes.clone());
    counts
}

/// Verdict counts `c` per [`OBJECT_SERIES`] entry (the Traefik objects that are not routes).
pub fn object_series_of(c: &StatusCounts) -> BTreeMap<(&'static str, &'static str), RouteCounts> {
    counts_per(&OBJECT_SERIES, c)
}

/// The counts of `c.objects` in each of `series` (every one present, 0 when empty).
fn counts_per(
    series: &[(&'static str, &'static str)],
    c: &StatusCounts,
) -> BTreeMap<(&'static str, &'static str), RouteCounts> {
    let mut out: BTreeMap<_, _> = series
        .iter()
        .map(|s| (*s, RouteCounts::default()))
        .collect();
    for ((kind, api_version), n) in &c.objects {
        let group = api_version.split('/').next();
        let Some(into) = series
            .iter()
            .find(|(k, g)| k == kind && group == Some(*g))
            .and_then(|s| out.get_mut(s))
        else {
            continue;
        };
        into.valid = into.valid.saturating_add(n.valid);
        into.invalid = into.invalid.saturating_add(n.invalid);
        into.orphaned = into.orphaned.saturating_add(n.orphaned);
    }
    out
}

/// Whether verdicts of `kind` count as routes (the route gauge, the Gateway's route counts).
pub fn is_route_kind(kind: &str) -> bool {
    kind == TRAEFIK_KIND || kind == TRAEFIK_TCP_KIND
}

/// The reference an event on the object names: the object as the snapshot holds it (uid and
/// resourceVersion), `None` when it is gone.
fn reference(snapshot: &ClusterSnapshot, r: &TraefikRef) -> Option<ObjectReference> {
    let group = Group::of_api_version(&r.api_version)?;
    // The object of the verdict's kind: an IngressRoute and an IngressRouteTCP may share a
    // namespace and name.
    let k = &r.key;
    let held = match r.kind.as_str() {
        TRAEFIK_KIND => &snapshot.traefik_routes.group(group).get(k)?.metadata,
        TRAEFIK_TCP_KIND => &snapshot.traefik_tcp_routes.group(group).get(k)?.metadata,
        "Middleware" => &snapshot.traefik_middlewares.group(group).get(k)?.metadata,
        "TraefikService" => &snapshot.traefik_services.group(group).get(k)?.metadata,
        "TLSOption" => &snapshot.traefik_tls_options.group(group).get(k)?.metadata,
        "TLSStore" => &snapshot.traefik_tls_stores.group(group).get(k)?.metadata,
        "ServersTransport" => &snapshot.traefik_transports.group(group).get(k)?.metadata,
        _ => return None,
    };
    Some(ObjectReference {
        api_version: Some(r.api_version.clone()),
        kind: Some(r.kind.clone()),
        namespace: Some(r.key.namespace.to_string()),
        name: Some(r.key.name.to_string()),
        uid: held.uid.clone(),
        resource_version: held.resource_version.clone(),
        field_path: None,
    })
}

/// The announcements to make: verdicts that differ from what was announced for the object (by
/// uid), with the reference to record them on. Pure.
pub fn to_announce(
    snapshot: &ClusterSnapshot,
    verdicts: BTreeMap<TraefikRef, IngressRouteStatus>,
    announced: &TraefikAnnounced,
) -> Vec<(TraefikRef, ObjectReference, IngressRouteStatus)> {
    verdicts
        .into_iter()
        .filter_map(|(r, status)| {
            let reference = reference(snapshot, &r)?;
            let seen = announced.get(&r);
            if seen.is_some_and(|(uid, s)| *uid == reference.uid && *s == status) {
                return None;
            }
            Some((r, reference, status))
        })
        .collect()
}

/// The leader's part: an Event on each Traefik object whose verdict is new, a few at a time,
/// one namespace after another in turn and at most a share of each namespace per round (as
/// status writes, see [`super::writes::NAMESPACE_ROUND_TRIPS`]). An Event that failed is tried
/// again on its object's own schedule (`backoff`, by object and version; see [`super::retry`]).
pub(super) async fn announce(
    ctx: &RoutesContext,
    snapshot: &ClusterSnapshot,
    dags: &[&Dag],
    announced: &mut TraefikAnnounced,
    backoff: &mut Backoff<(TraefikRef, Option<String>)>,
) {
    use futures::StreamExt;
    announced.retain(|r, _| reference(snapshot, r).is_some());
    let todo = to_announce(snapshot, traefik_verdicts(dags.iter().copied()), announced);
    let versioned = |r: &TraefikRef, reference: &ObjectReference| {
        (r.clone(), reference.resource_version.clone())
    };
    let due: BTreeSet<(TraefikRef, Option<String>)> = todo
        .iter()
        .map(|(r, reference, _)| versioned(r, reference))
        .collect();
    backoff.retain(|k| due.contains(k));
    let now = Instant::now();
    let todo: Vec<_> = todo
        .into_iter()
        .filter(|(r, reference, _)| backoff.ready(&versioned(r, reference), now))
        .collect();
    let todo = fair_order(todo, |(r, _, _)| &r.key.namespace);
    let share = NAMESPACE_ROUND_TRIPS.saturating_mul(ctx.status_writes_in_flight.max(1));
    let (todo, _deferred) = per_namespace_share(todo, share, |(r, _, _)| &r.key.namespace);
    let results: Vec<_> = futures::stream::iter(todo)
        .map(|(r, reference, status)| async move {
            if !ctx.leadership.is_leading() {
                return None;
            }
            match ctx
                .recorder
                .publish(&status_event(&status), &reference)
                .await
            {
                Ok(()) => {
                    let key = versioned(&r, &reference);
                    Some(Ok((key, (reference.uid, status))))
                }
                Err(e) => {
                    ctx.metrics
                        .reconcile_errors
                        .with_label_values(&["routes", "event"])
                        .inc();
                    tracing::warn!(
                        object = %r.key, kind = %r.kind, api_version = %r.api_version,
                        error = %e, "cannot record an event on the Traefik object; will retry"
                    );
                    Some(Err(versioned(&r, &reference)))
                }
            }
        })
        .buffer_unordered(ctx.status_writes_in_flight.max(1))
        .filter_map(|a| async move { a })
        .collect()
        .await;
    let now = Instant::now();
    for result in results {
        match result {
            Ok((key, a)) => {
                backoff.succeeded(&key);
                announced.insert(key.0, a);
            }
            Err(key) => backoff.failed(key, now),
        }
    }
}

#[cfg(test)]
#[path = "traefik_tests.rs"]
mod tests;
