//! The events recorded on a Gateway when its status changes.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType};

use crate::api::gateway::GatewayStatus;
use crate::dag::owner::Owner;
use crate::provision::status::{
    CONDITION_AVAILABLE, CONDITION_DEGRADED, CONDITION_PROGRESSING, ObjectFailure,
    REASON_APPLY_FAILED, REASON_OBJECT_NOT_OWNED, RejectionReport,
};

/// The Warning event to record when the Gateway's `Degraded` condition newly reports objects
/// that could not be applied: only when its reason or message changed since `previous`, so a
/// failure repeated on every reconcile is recorded once.
pub(super) fn failure_event(
    previous: Option<&GatewayStatus>,
    current: &GatewayStatus,
    failures: &[ObjectFailure],
) -> Option<Event> {
    let degraded = |s: &GatewayStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_DEGRADED)
            .cloned()
    };
    let now = degraded(current)?;
    if now.status != "True"
        || ![REASON_OBJECT_NOT_OWNED, REASON_APPLY_FAILED].contains(&now.reason.as_str())
    {
        return None;
    }
    let before = previous.and_then(degraded);
    if before.is_some_and(|b| {
        b.status == now.status && b.reason == now.reason && b.message == now.message
    }) {
        return None;
    }
    let secondary = failures.first().map(|f| ObjectReference {
        api_version: Some(f.api_version.clone()),
        kind: Some(f.kind.clone()),
        namespace: Some(f.namespace.clone()),
        name: Some(f.name.clone()),
        ..ObjectReference::default()
    });
    Some(Event {
        type_: EventType::Warning,
        reason: now.reason,
        note: Some(truncate_bytes(&now.message, MAX_EVENT_NOTE_BYTES)),
        action: EVENT_ACTION.to_owned(),
        secondary,
    })
}

/// The condition `type_` of `status`, if it has one.
pub(super) fn condition<'a>(
    status: Option<&'a GatewayStatus>,
    type_: &str,
) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `status` shows the Gateway provisioned: its DaemonSet exists and nothing kept its
/// objects from being applied (an invalid spec, objects not owned or not applied).
pub(super) fn shows_provisioned(status: Option<&GatewayStatus>) -> bool {
    let ds_exists = condition(status, CONDITION_AVAILABLE)
        .is_some_and(|c| c.reason != REASON_DAEMON_SET_MISSING);
    let blocked = condition(status, CONDITION_DEGRADED)
        .is_some_and(|c| c.status == "True" && PROVISIONING_FAILURES.contains(&c.reason.as_str()));
    ds_exists && !blocked
}

/// The Degraded reasons that mean the Gateway's objects were not all applied.
pub(super) const PROVISIONING_FAILURES: [&str; 4] = [
    "InvalidSpec",
    "OperatorMisconfigured",
    REASON_OBJECT_NOT_OWNED,
    REASON_APPLY_FAILED,
];

/// The `Progressing` reason while the Envoy DaemonSet does not exist.
pub(super) const REASON_PROVISIONING: &str = "Provisioning";

/// The `Available` reason while the Envoy DaemonSet does not exist.
pub(super) const REASON_DAEMON_SET_MISSING: &str = "DaemonSetMissing";

/// The events of a status change from `previous` (as stored) to `current`; none when the two
/// agree on what they report, so a reconcile that changes nothing records nothing:
/// - `Provisioned` (Normal): the Gateway shows provisioned (its DaemonSet exists, nothing kept
///   its objects from being applied) and did not before;
/// - `RolloutStarted` / `RolloutFinished` (Normal): `Progressing` became True / stopped being
///   True once the DaemonSet exists (a Gateway without a status counts as not progressing);
/// - `EnvoyRejectedConfiguration` (Warning): `Degraded` became True for that reason, or its
///   message (what was rejected) changed.
pub(super) fn status_events(
    previous: Option<&GatewayStatus>,
    current: &GatewayStatus,
    rejections: &[RejectionReport],
) -> Vec<Event> {
    let mut events = Vec::new();
    let normal = |reason: &str, note: &str| Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(truncate_bytes(note, MAX_EVENT_NOTE_BYTES)),
        action: EVENT_ACTION.to_owned(),
        secondary: None,
    };
    if shows_provisioned(Some(current)) && !shows_provisioned(previous) {
        events.push(normal(
            REASON_PROVISIONED,
            "the Envoy DaemonSet, its Service and configuration are applied",
        ));
    }
    // Creating the DaemonSet (`Provisioning`) is no rollout yet: its pods start rolling out
    // once it exists.
    let rolling = |s: Option<&GatewayStatus>| {
        condition(s, CONDITION_PROGRESSING)
            .is_some_and(|c| c.status == "True" && c.reason != REASON_PROVISIONING)
    };
    match (
        rolling(previous),
        rolling(Some(current)),
        condition(Some(current), CONDITION_PROGRESSING),
    ) {
        (false, true, Some(c)) => events.push(normal(REASON_ROLLOUT_STARTED, &c.message)),
        (true, false, Some(c)) => events.push(normal(REASON_ROLLOUT_FINISHED, &c.message)),
        _ => {}
    }
    if let Some(now) = condition(Some(current), CONDITION_DEGRADED)
        && now.status == "True"
        && now.reason == REASON_ENVOY_REJECTED
        && !condition(previous, CONDITION_DEGRADED).is_some_and(|b| {
            b.status == now.status && b.reason == now.reason && b.message == now.message
        })
    {
        let secondary = rejections
            .iter()
            .find_map(|r| match Owner::parse(r.ingress_route.as_deref()?)? {
                Owner::Contour { namespace, name } => Some((
                    "contour.heptio.com/v1beta1",
                    "IngressRoute",
                    namespace,
                    name,
                )),
                // A Traefik owner's name does not say its API group: related only when known.
                Owner::Traefik {
                    kind,
                    namespace,
                    name,
                } => Some((
                    r.ingress_route_api_version.as_deref()?,
                    kind,
                    namespace,
                    name,
                )),
            })
            .map(|(api_version, kind, namespace, name)| ObjectReference {
                api_version: Some(api_version.to_owned()),
                kind: Some(kind.to_owned()),
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
                ..ObjectReference::default()
            });
        events.push(Event {
            type_: EventType::Warning,
            reason: now.reason.clone(),
            note: Some(truncate_bytes(&now.message, MAX_EVENT_NOTE_BYTES)),
            action: EVENT_ACTION.to_owned(),
            secondary,
        });
    }
    events
}

/// Reason of the Normal event recorded when a Gateway is first provisioned.
pub const REASON_PROVISIONED: &str = "Provisioned";
/// Reason of the Normal event recorded when the Envoy pods start rolling out.
pub const REASON_ROLLOUT_STARTED: &str = "RolloutStarted";
/// Reason of the Normal event recorded when a rollout is complete.
pub const REASON_ROLLOUT_FINISHED: &str = "RolloutFinished";
/// The `Degraded` reason (and Warning event) of configuration Envoy rejected.
pub const REASON_ENVOY_REJECTED: &str = "EnvoyRejectedConfiguration";

/// The reporting controller of the events Sluice records on Gateways.
pub const EVENT_REPORTER: &str = "sluice.dev/gateway-controller";

/// Action of the events Sluice records on Gateways.
pub const EVENT_ACTION: &str = "Provision";

/// The API server's limit on an event's note.
pub(crate) const MAX_EVENT_NOTE_BYTES: usize = 1024;

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
