//! A Gateway's status, computed from what the controller observed: the Envoy DaemonSet, the
//! Service, the Envoy pods and the route counts. Pure: the time of the change is passed in.
//!
//! # Conditions
//!
//! - `Available`: at least one Envoy pod is ready (`numberReady > 0`).
//! - `Progressing`: the DaemonSet does not exist yet, its controller has not observed its
//!   latest generation, or fewer pods run the current template than are desired
//!   (`updatedNumberScheduled < desiredNumberScheduled`).
//! - `Degraded`: the Envoys cannot reach the desired state on their own. True when, in this
//!   order of precedence (the first that holds gives the reason and message):
//!   1. the Gateway could not be provisioned ([`ObservedState::error`]: an invalid spec), or
//!   2. an object the Gateway needs could not be read or applied
//!      ([`ObservedState::failures`]): reason [`REASON_OBJECT_NOT_OWNED`] when an object with a
//!      provisioned name exists and is not owned by this Gateway (Sluice leaves it alone and
//!      applies none of the Gateway's objects), otherwise [`REASON_APPLY_FAILED`] with the
//!      API's message; the message names each object (kind, namespace/name), or
//!   3. the DaemonSet controller has observed the latest generation and schedules no pod
//!      (`desiredNumberScheduled == 0`: no node fits the nodeSelector and tolerations), or
//!   4. the DaemonSet controller has observed the latest generation, reports unavailable pods
//!      (`numberUnavailable > 0`), and at least one non-terminating Envoy pod is stuck: a
//!      container waiting for a reason that does not resolve by itself ([`STUCK_REASONS`], e.g.
//!      `ImagePullBackOff`, `CrashLoopBackOff`), the pod unschedulable, or the pod failed. A
//!      rolling update with maxUnavailable pods unavailable cannot proceed past such a pod, so
//!      this is exactly "the rollout makes no progress". Pods that are merely starting do not
//!      count, so a healthy rollout never shows `Degraded`.
//!   5. otherwise, an Envoy of the Gateway rejected (NACKed) configuration that is still wanted
//!      ([`ObservedState::rejections`]): reason `EnvoyRejectedConfiguration`, the message names
//!      the blamed resources, the IngressRoute they all come from if there is one, and Envoy's
//!      error. The Envoys keep being served the last accepted versions meanwhile.
//!   6. otherwise, the Gateway's `rootNamespaces` reach namespaces the operator does not watch
//!      (`--watch-namespaces`; [`ObservedState::unwatched_roots`]): reason
//!      [`REASON_ROOT_NAMESPACES_NOT_WATCHED`]; IngressRoutes (and Secrets) there are never seen,
//!      so the Gateway serves fewer routes than its spec asks for. The message names those
//!      namespaces (only the Gateway's own, never the watched ones).
//!   7. otherwise, the Gateway's `<gateway>-claims` ConfigMap is taken by one the Gateway does
//!      not own ([`ObservedState::claims_config_map_not_owned`]): reason
//!      [`REASON_CLAIMS_CONFIG_MAP_NOT_OWNED`], naming it. Traffic is served as usual; only the
//!      record of host claim dates is not kept (see `controller::claims`).
//!
//!   Case 4 needs the pods: when the controller passes none, it is not detected. Pod state
//!   changes do not always change the DaemonSet's status, so the controller should requeue
//!   while `Progressing` is true.
//!
//! `lastTransitionTime` is kept from the previous status while a condition's status stays the
//! same; `observedGeneration` (of the status and of each condition) is the Gateway's generation.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::objects::ProvisionError;
use crate::api::Gateway;
use crate::api::gateway::{EnvoyCounts, GatewayStatus, RouteCounts};
use crate::dag::owner::Owner;

pub const CONDITION_AVAILABLE: &str = "Available";
pub const CONDITION_PROGRESSING: &str = "Progressing";
pub const CONDITION_DEGRADED: &str = "Degraded";

/// Container waiting reasons that need a change (image, config, node) to resolve.
pub const STUCK_REASONS: [&str; 8] = [
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RunContainerError",
];

/// At most this many failing pods are named in the `Degraded` message.
const MAX_PODS_IN_MESSAGE: usize = 3;

/// At most this many rejections, resources per rejection, and characters of Envoy's error
/// are shown in the `Degraded` message.
const MAX_REJECTIONS_IN_MESSAGE: usize = 2;
const MAX_RESOURCES_IN_MESSAGE: usize = 3;
const MAX_ERROR_CHARS: usize = 300;

/// Configuration an Envoy of the Gateway rejected, as the status reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RejectionReport {
    /// The resource type, short (`Cluster`, `Secret`, ...).
    pub kind: String,
    /// The resources blamed: changed since the last accepted configuration.
    pub resources: Vec<String>,
    /// The IngressRoute (`namespace/name`) all the blamed resources come from, if only one.
    pub ingress_route: Option<String>,
    /// That object's `apiVersion` when it is a Traefik object (`traefik:`, `traefik-tcp:`),
    /// whose owner name does not say its API group.
    pub ingress_route_api_version: Option<String>,
    /// Envoy's error message.
    pub error: String,
}

/// What went wrong with one object provisioned for a Gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectProblem {
    /// It exists and has no owner reference to this Gateway (by uid): Sluice did not create it
    /// and leaves it alone.
    NotOwned,
    /// Reading it failed; the API's message.
    ReadFailed(String),
    /// Applying it failed; the API's message.
    ApplyFailed(String),
}

/// An object the controller could not apply, as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectFailure {
    /// `apiVersion` of the object, for event references (`v1`, `apps/v1`).
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub problem: ObjectProblem,
}

impl std::fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            kind,
            namespace,
            name,
            ..
        } = self;
        match &self.problem {
            ObjectProblem::NotOwned => write!(
                f,
                "{kind} {namespace}/{name} exists and is not owned by this Gateway"
            ),
            ObjectProblem::ReadFailed(e) => write!(f, "reading {kind} {namespace}/{name}: {e}"),
            ObjectProblem::ApplyFailed(e) => write!(f, "applying {kind} {namespace}/{name}: {e}"),
        }
    }
}

/// `Degraded` reasons of [`ObservedState::failures`].
pub const REASON_OBJECT_NOT_OWNED: &str = "ObjectNotOwned";
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";

/// `Degraded` reason of [`ObservedState::unwatched_roots`].
pub const REASON_ROOT_NAMESPACES_NOT_WATCHED: &str = "RootNamespacesNotWatched";

/// `Degraded` reason: the Gateway's `<gateway>-claims` ConfigMap is taken by one it does not own.
pub const REASON_CLAIMS_CONFIG_MAP_NOT_OWNED: &str = "ClaimsConfigMapNotOwned";

/// At most this many unwatched root namespaces are named in the `Degraded` message.
const MAX_UNWATCHED_IN_MESSAGE: usize = 10;

/// At most this many failed objects, of at most this many characters each, are named in the
/// `Degraded` message.
const MAX_FAILURES_IN_MESSAGE: usize = 3;
const MAX_FAILURE_CHARS: usize = 500;

/// What the controller observed for one Gateway.
#[derive(Clone, Debug, Default)]
pub struct ObservedState<'a> {
    /// The Gateway's Envoy DaemonSet, if it exists.
    pub daemon_set: Option<&'a DaemonSet>,
    /// The Gateway's Service, if it exists.
    pub service: Option<&'a Service>,
    /// The Gateway's Envoy pods (selected by [`super::objects::pod_selector`]).
    pub pods: &'a [Pod],
    /// IngressRoute counts by status, from the DAG.
    pub routes: RouteCounts,
    /// Why the last attempt to build the Gateway's objects failed, if it did.
    pub error: Option<&'a ProvisionError>,
    /// Configuration the Gateway's Envoys rejected and that is still wanted.
    pub rejections: &'a [RejectionReport],
    /// The provisioned objects that could not be applied in the last attempt.
    pub failures: &'a [ObjectFailure],
    /// The Gateway's `rootNamespaces` outside the namespaces the operator watches, sorted;
    /// `["*"]` when the Gateway accepts roots in every namespace and the operator watches only
    /// some. Empty when the operator watches every namespace.
    pub unwatched_roots: &'a [String],
    /// `namespace/name` of the Gateway's claims ConfigMap when a ConfigMap the Gateway does not
    /// own has its name (the host claim record is then not written).
    pub claims_config_map_not_owned: Option<&'a str>,
}

/// The Gateway's status. `now` stamps conditions whose status changed.
pub fn gateway_status(gw: &Gateway, observed: &ObservedState<'_>, now: &Time) -> GatewayStatus {
    let generation = gw.metadata.generation;
    let (envoys, conditions) = match observed.daemon_set {
        None => (
            EnvoyCounts::default(),
            [
                (
                    "False",
                    "DaemonSetMissing",
                    "the Envoy DaemonSet does not exist yet".to_owned(),
                ),
                (
                    "True",
                    "Provisioning",
                    "creating the Envoy DaemonSet".to_owned(),
                ),
                degraded_by_error(observed.error)
                    .or_else(|| degraded_by_failures(observed.failures))
                    .unwrap_or_else(not_degraded),
            ],
        ),
        Some(ds) => daemon_set_conditions(ds, observed),
    };
    let mut conditions = conditions;
    if conditions[2].0 == "False"
        && let Some(degraded) = degraded_by_rejections(observed.rejections)
            .or_else(|| degraded_by_unwatched_roots(observed.unwatched_roots))
            .or_else(|| degraded_by_claims_config_map(observed.claims_config_map_not_owned))
    {
        conditions[2] = degraded;
    }
    let previous = gw
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [
        CONDITION_AVAILABLE,
        CONDITION_PROGRESSING,
        CONDITION_DEGRADED,
    ]
    .into_iter()
    .zip(conditions)
    .map(|(type_, (status, reason, message))| {
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time,
            observed_generation: generation,
        }
    })
    .collect();
    GatewayStatus {
        conditions,
        observed_generation: generation,
        envoys,
        routes: observed.routes.clone(),
        valid_routes: Some(observed.routes.summary()),
        addresses: observed.service.map(addresses).unwrap_or_default(),
    }
}

type Cond = (&'static str, &'static str, String);

fn not_degraded() -> Cond {
    ("False", "AsExpected", "no Envoy pod is failing".to_owned())
}

fn degraded_by_rejections(rejections: &[RejectionReport]) -> Option<Cond> {
    let first = rejections.first()?;
    let describe = |r: &RejectionReport| {
        let mut names: Vec<&str> = r
            .resources
            .iter()
            .take(MAX_RESOURCES_IN_MESSAGE)
            .map(String::as_str)
            .collect();
        let more = r.resources.len().saturating_sub(MAX_RESOURCES_IN_MESSAGE);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        if names.is_empty() {
            names.push("(accepted by another Envoy)");
        }
        let owner = r
            .ingress_route
            .as_ref()
            .map(|o| match Owner::parse(o) {
                Some(owner) => format!(" of {}", owner.describe()),
                None => format!(" of {o}"),
            })
            .unwrap_or_default();
        let mut error: String = r.error.chars().take(MAX_ERROR_CHARS).collect();
        if r.error.chars().count() > MAX_ERROR_CHARS {
            error.push_str("...");
        }
        format!("{} {}{more}{owner}: {error}", r.kind, names.join(", "))
    };
    let mut message = format!(
        "Envoy rejected configuration; the last accepted configuration is served instead. {}",
        describe(first)
    );
    for r in rejections
        .iter()
        .skip(1)
        .take(MAX_REJECTIONS_IN_MESSAGE - 1)
    {
        message.push_str("; ");
        message.push_str(&describe(r));
    }
    let more = rejections.len().saturating_sub(MAX_REJECTIONS_IN_MESSAGE);
    if more > 0 {
        message.push_str(&format!("; and {more} more rejections"));
    }
    Some(("True", "EnvoyRejectedConfiguration", message))
}

fn degraded_by_unwatched_roots(unwatched: &[String]) -> Option<Cond> {
    let first = unwatched.first()?;
    let message = if first == "*" {
        "rootNamespaces is empty (roots in every namespace), but the operator watches only some \
         namespaces (--watch-namespaces): IngressRoutes and Secrets in the others are ignored"
            .to_owned()
    } else {
        let mut names = unwatched
            .iter()
            .take(MAX_UNWATCHED_IN_MESSAGE)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let more = unwatched.len().saturating_sub(MAX_UNWATCHED_IN_MESSAGE);
        if more > 0 {
            names.push_str(&format!(" and {more} more"));
        }
        truncated(&format!(
            "rootNamespaces name namespaces the operator does not watch (--watch-namespaces): \
             {names}; IngressRoutes and Secrets there are ignored"
        ))
    };
    Some(("True", REASON_ROOT_NAMESPACES_NOT_WATCHED, message))
}

fn degraded_by_claims_config_map(not_owned: Option<&str>) -> Option<Cond> {
    let name = not_owned?;
    Some((
        "True",
        REASON_CLAIMS_CONFIG_MAP_NOT_OWNED,
        truncated(&format!(
            "ConfigMap {name} exists and is not owned by this Gateway: the dates of contested \
             host claims are not recorded in it, so a restart or a change of leader orders them \
             by creation time; delete or rename that ConfigMap and Sluice creates its own"
        )),
    ))
}

fn degraded_by_error(error: Option<&ProvisionError>) -> Option<Cond> {
    let error = error?;
    let reason = match error {
        ProvisionError::InvalidSpec { .. } | ProvisionError::MissingMetadata { .. } => {
            "InvalidSpec"
        }
        ProvisionError::InvalidContext { .. } => "OperatorMisconfigured",
    };
    Some(("True", reason, error.to_string()))
}

fn degraded_by_failures(failures: &[ObjectFailure]) -> Option<Cond> {
    let first = failures.first()?;
    let reason = if first.problem == ObjectProblem::NotOwned {
        REASON_OBJECT_NOT_OWNED
    } else {
        REASON_APPLY_FAILED
    };
    let mut message = failures
        .iter()
        .take(MAX_FAILURES_IN_MESSAGE)
        .map(|f| truncated(&f.to_string()))
        .collect::<Vec<_>>()
        .join("; ");
    let more = failures.len().saturating_sub(MAX_FAILURES_IN_MESSAGE);
    if more > 0 {
        message.push_str(&format!("; and {more} more"));
    }
    if failures
        .iter()
        .any(|f| f.problem == ObjectProblem::NotOwned)
    {
        message.push_str(
            ". Sluice changes no object it did not create and applies none of this Gateway's \
             objects until the conflicting ones are removed",
        );
    }
    Some(("True", reason, message))
}

/// `s`, cut to [`MAX_FAILURE_CHARS`] characters.
fn truncated(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_FAILURE_CHARS).collect();
    if s.chars().count() > MAX_FAILURE_CHARS {
        out.push_str("...");
    }
    out
}

fn daemon_set_conditions(ds: &DaemonSet, observed: &ObservedState<'_>) -> (EnvoyCounts, [Cond; 3]) {
    let st = ds.status.clone().unwrap_or_default();
    let desired = st.desired_number_scheduled;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    let ready = st.number_ready;
    let available = st.number_available.unwrap_or(0);
    let unavailable = st
        .number_unavailable
        .unwrap_or_else(|| (desired - available).max(0));
    // A DaemonSet without a generation (not from the API) counts as observed.
    let current = match (ds.metadata.generation, st.observed_generation) {
        (Some(g), Some(o)) => o >= g,
        (Some(_), None) => false,
        (None, _) => true,
    };

    let available_cond = if ready > 0 {
        (
            "True",
            "EnvoyReady",
            format!("{ready} of {desired} Envoy pods are ready"),
        )
    } else if current && desired == 0 {
        (
            "False",
            "NoEligibleNodes",
            "no Envoy pod is scheduled".to_owned(),
        )
    } else {
        (
            "False",
            "NoEnvoyReady",
            format!("none of the {desired} Envoy pods is ready"),
        )
    };

    let progressing = if !current {
        (
            "True",
            "DaemonSetUpdating",
            "the DaemonSet controller has not yet seen the latest Envoy pod template".to_owned(),
        )
    } else if updated < desired {
        (
            "True",
            "RollingOut",
            format!("{updated} of {desired} Envoy pods run the current template, {ready} ready"),
        )
    } else {
        (
            "False",
            "RolloutComplete",
            format!("all {desired} Envoy pods run the current template"),
        )
    };

    let degraded = degraded_by_error(observed.error)
        .or_else(|| degraded_by_failures(observed.failures))
        .unwrap_or_else(|| {
            if !current {
                return not_degraded();
            }
            if desired == 0 {
                return (
                    "True",
                    "NoEligibleNodes",
                    "no node matches the Envoy pods' nodeSelector and tolerations".to_owned(),
                );
            }
            let stuck: Vec<String> = if unavailable > 0 {
                observed.pods.iter().filter_map(stuck_pod).collect()
            } else {
                Vec::new()
            };
            if stuck.is_empty() {
                return not_degraded();
            }
            let mut message = format!(
                "{unavailable} Envoy pods unavailable; {} cannot become ready: {}",
                stuck.len(),
                stuck
                    .iter()
                    .take(MAX_PODS_IN_MESSAGE)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            if stuck.len() > MAX_PODS_IN_MESSAGE {
                message.push_str("; ...");
            }
            ("True", "EnvoyPodsFailing", message)
        });

    (
        EnvoyCounts {
            desired,
            updated,
            ready,
        },
        [available_cond, progressing, degraded],
    )
}

/// Why `pod` will not become ready by itself, or `None` if it may.
fn stuck_pod(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let name = pod.metadata.name.as_deref().unwrap_or("<unnamed>");
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        let reason = status.reason.as_deref().unwrap_or("Failed");
        return Some(format!("pod {name}: {reason}"));
    }
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(c) = unschedulable {
        let detail = c.message.as_deref().unwrap_or_default();
        return Some(format!("pod {name}: Unschedulable ({detail})"));
    }
    status.container_statuses.iter().flatten().find_map(|cs| {
        let waiting = cs.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        STUCK_REASONS.contains(&reason).then(|| {
            let detail = waiting
                .message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            format!("pod {name} container {}: {reason}{detail}", cs.name)
        })
    })
}

/// Published addresses: a LoadBalancer's ingress IPs and hostnames, otherwise the cluster IPs.
fn addresses(svc: &Service) -> Vec<String> {
    let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let found: Vec<String> = if is_lb {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
            .collect()
    } else {
        let spec = svc.spec.as_ref();
        spec.and_then(|s| s.cluster_ips.clone())
            .filter(|ips| !ips.is_empty())
            .or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip]))
            .unwrap_or_default()
    };
    let mut out: Vec<String> = Vec::new();
    for a in found {
        if !a.is_empty() && a != "None" && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::provision::fixtures::{
        daemon_set, gateway, service, time, unschedulable_pod, waiting_pod, with_lb_ingress,
    };
    use pretty_assertions::assert_eq;

    /// (type, status, reason) of each condition.
    fn summary(s: &GatewayStatus) -> Vec<(&str, &str, &str)> {
        s.conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    fn cond<'a>(s: &'a GatewayStatus, type_: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn all_ready() {
        let gw = gateway("team-a", "gw").with_generation(4);
        let ds = daemon_set(2, 2, 3, 3, 3);
        let svc = with_lb_ingress(service("LoadBalancer"), Some("203.0.113.7"), None);
        let routes = RouteCounts {
            valid: 5,
            invalid: 1,
            orphaned: 2,
        };
        let observed = ObservedState {
            daemon_set: Some(&ds),
            service: Some(&svc),
            routes: routes.clone(),
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(
            summary(&s),
            [
                ("Available", "True", "EnvoyReady"),
                ("Progressing", "False", "RolloutComplete"),
                ("Degraded", "False", "AsExpected"),
            ]
        );
        assert_eq!(cond(&s, "Available").message, "3 of 3 Envoy pods are ready");
        assert_eq!(s.observed_generation, Some(4));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
        assert!(
            s.conditions
                .iter()
                .all(|c| c.last_transition_time == time(100))
        );
        assert_eq!(
            s.envoys,
            EnvoyCounts {
                desired: 3,
                updated: 3,
                ready: 3
            }
        );
        assert_eq!(s.routes, routes);
        assert_eq!(s.addresses, ["203.0.113.7"]);
    }

    #[test]
    fn rolling() {
        let gw = gateway("team-a", "gw");
        // Mid-rollout: one new pod starting, the others still old and ready.
        let ds = daemon_set(2, 2, 3, 1, 2);
        let starting = waiting_pod("gw-envoy-new", "envoy", "ContainerCreating");
        let pods = [starting];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            pods: &pods,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(
            summary(&s),
            [
                ("Available", "True", "EnvoyReady"),
                ("Progressing", "True", "RollingOut"),
                ("Degraded", "False", "AsExpected"),
            ]
        );
        assert_eq!(
            cond(&s, "Progressing").message,
            "1 of 3 Envoy pods run the current template, 2 ready"
        );

        // Template just changed: the DaemonSet controller has not seen it yet.
        let ds = daemon_set(3, 2, 3, 3, 3);
        let observed = ObservedState {
            daemon_set: Some(&ds),
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(cond(&s, "Progressing").status, "True");
        assert_eq!(cond(&s, "Progressing").reason, "DaemonSetUpdating");
    }

    #[test]
    fn degraded_when_new_pods_cannot_start() {
        let gw = gateway("team-a", "gw");
        // The rollout stopped at maxUnavailable = 1 on a pod that cannot pull its image.
        let ds = daemon_set(2, 2, 3, 1, 2);
        let pods = [waiting_pod("gw-envoy-abcde", "envoy", "ImagePullBackOff")];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            pods: &pods,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(
            summary(&s),
            [
                ("Available", "True", "EnvoyReady"),
                ("Progressing", "True", "RollingOut"),
                ("Degraded", "True", "EnvoyPodsFailing"),
            ]
        );
        assert_eq!(
            cond(&s, "Degraded").message,
            "1 Envoy pods unavailable; 1 cannot become ready: pod gw-envoy-abcde container \
             envoy: ImagePullBackOff (ImagePullBackOff details)"
        );

        // Crash-looping after the rollout, and an unschedulable pod; a terminating pod is ignored.
        let ds = daemon_set(2, 2, 3, 3, 1);
        let mut terminating = waiting_pod("gw-envoy-old", "envoy", "CrashLoopBackOff");
        terminating.metadata.deletion_timestamp = Some(time(50));
        let pods = [
            waiting_pod("gw-envoy-a", "shutdown-manager", "CrashLoopBackOff"),
            unschedulable_pod("gw-envoy-b"),
            terminating,
        ];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            pods: &pods,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(d.status, "True");
        assert!(
            d.message.starts_with("2 Envoy pods unavailable; 2 cannot"),
            "{}",
            d.message
        );
        assert!(
            d.message
                .contains("gw-envoy-a container shutdown-manager: CrashLoopBackOff")
        );
        assert!(d.message.contains("gw-envoy-b: Unschedulable (0/1 nodes"));
        assert!(!d.message.contains("gw-envoy-old"));
    }

    #[test]
    fn no_pods() {
        let gw = gateway("team-a", "gw");
        // No node matches the nodeSelector.
        let ds = daemon_set(1, 1, 0, 0, 0);
        let svc = service("ClusterIP");
        let observed = ObservedState {
            daemon_set: Some(&ds),
            service: Some(&svc),
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(
            summary(&s),
            [
                ("Available", "False", "NoEligibleNodes"),
                ("Progressing", "False", "RolloutComplete"),
                ("Degraded", "True", "NoEligibleNodes"),
            ]
        );
        assert_eq!(s.addresses, ["10.96.0.10", "fd00::10"]);

        // Nothing provisioned yet.
        let s = gateway_status(&gw, &ObservedState::default(), &time(100));
        assert_eq!(
            summary(&s),
            [
                ("Available", "False", "DaemonSetMissing"),
                ("Progressing", "True", "Provisioning"),
                ("Degraded", "False", "AsExpected"),
            ]
        );
        assert_eq!(s.envoys, EnvoyCounts::default());
        assert!(s.addresses.is_empty());

        // Pods exist but none is ready yet, and none is stuck: not degraded.
        let ds = daemon_set(1, 1, 2, 2, 0);
        let pods = [waiting_pod("gw-envoy-a", "envoy", "ContainerCreating")];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            pods: &pods,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(
            summary(&s),
            [
                ("Available", "False", "NoEnvoyReady"),
                ("Progressing", "False", "RolloutComplete"),
                ("Degraded", "False", "AsExpected"),
            ]
        );
    }

    #[test]
    fn invalid_spec_is_degraded() {
        let gw = gateway("team-a", "gw");
        let ds = daemon_set(1, 1, 1, 1, 1);
        let err = ProvisionError::InvalidSpec {
            gateway: "team-a/gw".into(),
            field: "spec.envoy.image",
            message: "\"\" is not an image reference".into(),
        };
        let observed = ObservedState {
            daemon_set: Some(&ds),
            error: Some(&err),
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(d.message, err.to_string());
        // The running Envoys still serve.
        assert_eq!(cond(&s, "Available").status, "True");
    }

    #[test]
    fn transition_times_survive_unchanged_statuses() {
        let ds = daemon_set(1, 1, 3, 3, 3);
        let observed = ObservedState {
            daemon_set: Some(&ds),
            ..ObservedState::default()
        };
        let first = gateway_status(&gateway("team-a", "gw"), &observed, &time(100));

        // Same statuses later, other counts: times kept.
        let gw = gateway("team-a", "gw").with_status(first.clone());
        let ds = daemon_set(1, 1, 4, 4, 2);
        let observed = ObservedState {
            daemon_set: Some(&ds),
            ..ObservedState::default()
        };
        let second = gateway_status(&gw, &observed, &time(200));
        assert!(
            second
                .conditions
                .iter()
                .all(|c| c.last_transition_time == time(100))
        );
        assert_eq!(
            cond(&second, "Available").message,
            "2 of 4 Envoy pods are ready"
        );

        // Progressing flips: only its time moves.
        let gw = gateway("team-a", "gw").with_status(second);
        let ds = daemon_set(2, 2, 4, 1, 3);
        let observed = ObservedState {
            daemon_set: Some(&ds),
            ..ObservedState::default()
        };
        let third = gateway_status(&gw, &observed, &time(300));
        assert_eq!(cond(&third, "Progressing").status, "True");
        assert_eq!(cond(&third, "Progressing").last_transition_time, time(300));
        assert_eq!(cond(&third, "Available").last_transition_time, time(100));
        assert_eq!(cond(&third, "Degraded").last_transition_time, time(100));
    }

    #[test]
    fn addresses_by_service_type() {
        let lb = with_lb_ingress(
            with_lb_ingress(service("LoadBalancer"), None, Some("lb.example.com")),
            Some("203.0.113.7"),
            Some("ignored.example.com"),
        );
        assert_eq!(addresses(&lb), ["lb.example.com", "203.0.113.7"]);
        // A LoadBalancer without ingress has not been published yet.
        assert!(addresses(&service("LoadBalancer")).is_empty());
        assert_eq!(addresses(&service("NodePort")), ["10.96.0.10", "fd00::10"]);
        let mut headless = service("ClusterIP");
        let spec = headless.spec.as_mut().unwrap();
        spec.cluster_ip = Some("None".into());
        spec.cluster_ips = Some(vec!["None".into()]);
        assert!(addresses(&headless).is_empty());
    }

    #[test]
    fn rejected_configuration_degrades_unless_already_degraded() {
        let gw = gateway("team-a", "gw");
        let ds = daemon_set(1, 1, 1, 1, 1);
        let long_error = "x".repeat(1000);
        let rejections = [
            RejectionReport {
                kind: "Cluster".into(),
                resources: vec!["a".into(), "b".into(), "c".into(), "d".into()],
                ingress_route: Some("team/web".into()),
                ingress_route_api_version: None,
                error: long_error,
            },
            RejectionReport {
                kind: "Secret".into(),
                resources: vec!["team/tls".into()],
                ingress_route: None,
                ingress_route_api_version: None,
                error: "key mismatch".into(),
            },
        ];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            rejections: &rejections,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "EnvoyRejectedConfiguration")
        );
        assert!(
            d.message
                .contains("Cluster a, b, c and 1 more of IngressRoute team/web: xxx"),
            "{}",
            d.message
        );
        assert!(d.message.contains("...; Secret team/tls: key mismatch"));
        assert!(d.message.len() < 600, "{}", d.message);

        // A Traefik owner is named with its kind.
        let tcp = [RejectionReport {
            kind: "Listener".into(),
            resources: vec!["https".into()],
            ingress_route: Some("traefik-tcp:team/db".into()),
            ingress_route_api_version: Some("traefik.io/v1alpha1".into()),
            error: "bad".into(),
        }];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            rejections: &tcp,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert!(
            d.message
                .contains("Listener https of IngressRouteTCP team/db: bad"),
            "{}",
            d.message
        );

        // An invalid spec says more: it stays the reason.
        let error = ProvisionError::InvalidSpec {
            gateway: "team-a/gw".into(),
            field: "spec.envoy.image",
            message: "bad".into(),
        };
        let observed = ObservedState {
            daemon_set: Some(&ds),
            rejections: &rejections,
            error: Some(&error),
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_ne!(cond(&s, "Degraded").reason, "EnvoyRejectedConfiguration");
    }

    #[test]
    fn a_claims_config_map_not_owned_by_the_gateway_degrades_it_naming_the_config_map() {
        let gw = gateway("team-a", "gw");
        let ds = daemon_set(1, 1, 1, 1, 1);
        let observed = ObservedState {
            daemon_set: Some(&ds),
            claims_config_map_not_owned: Some("team-a/gw-claims"),
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", REASON_CLAIMS_CONFIG_MAP_NOT_OWNED)
        );
        assert!(
            d.message
                .starts_with("ConfigMap team-a/gw-claims exists and is not owned by this Gateway"),
            "{}",
            d.message
        );
        assert_eq!(cond(&s, "Available").status, "True");
        // Anything else that degrades the Gateway comes first.
        let every = ["*".to_owned()];
        let observed = ObservedState {
            unwatched_roots: &every,
            ..observed
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(
            cond(&s, "Degraded").reason,
            REASON_ROOT_NAMESPACES_NOT_WATCHED
        );
    }

    #[test]
    fn roots_outside_the_watched_namespaces_degrade_last() {
        let gw = gateway("team-a", "gw");
        let ds = daemon_set(1, 1, 1, 1, 1);
        let named: Vec<String> = (0..12).map(|i| format!("ns-{i:02}")).collect();
        let observed = ObservedState {
            daemon_set: Some(&ds),
            unwatched_roots: &named,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", REASON_ROOT_NAMESPACES_NOT_WATCHED)
        );
        assert!(
            d.message.contains("ns-00, ns-01") && d.message.contains("ns-09 and 2 more;"),
            "{}",
            d.message
        );
        assert!(!d.message.contains("ns-10"), "{}", d.message);
        // Available and Progressing say what the Envoys do, as without it.
        assert_eq!(cond(&s, "Available").status, "True");

        let every = ["*".to_owned()];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            unwatched_roots: &every,
            ..ObservedState::default()
        };
        let d = gateway_status(&gw, &observed, &time(100)).conditions[2].clone();
        assert_eq!(d.reason, REASON_ROOT_NAMESPACES_NOT_WATCHED);
        assert!(d.message.contains("every namespace"), "{}", d.message);

        // Anything else that degrades the Gateway comes first.
        let rejections = [RejectionReport {
            kind: "Cluster".into(),
            resources: vec!["a".into()],
            ingress_route: None,
            ingress_route_api_version: None,
            error: "bad".into(),
        }];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            unwatched_roots: &every,
            rejections: &rejections,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(cond(&s, "Degraded").reason, "EnvoyRejectedConfiguration");
        let observed = ObservedState {
            daemon_set: None,
            unwatched_roots: &every,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        assert_eq!(
            cond(&s, "Degraded").reason,
            REASON_ROOT_NAMESPACES_NOT_WATCHED
        );
    }

    fn failure(kind: &str, name: &str, problem: ObjectProblem) -> ObjectFailure {
        ObjectFailure {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: "team-a".into(),
            name: name.into(),
            problem,
        }
    }

    #[test]
    fn objects_not_owned_or_not_applied_degrade_before_pods_and_rejections() {
        let gw = gateway("team-a", "gw");
        // Pods failing and configuration rejected too: the object failures say more.
        let ds = daemon_set(2, 2, 3, 1, 2);
        let pods = [waiting_pod("gw-envoy-abcde", "envoy", "ImagePullBackOff")];
        let rejections = [RejectionReport {
            kind: "Cluster".into(),
            resources: vec!["a".into()],
            ingress_route: None,
            ingress_route_api_version: None,
            error: "bad".into(),
        }];
        let failures = [
            failure("ConfigMap", "gw-envoy-bootstrap", ObjectProblem::NotOwned),
            failure("Service", "gw-envoy", ObjectProblem::NotOwned),
        ];
        let observed = ObservedState {
            daemon_set: Some(&ds),
            pods: &pods,
            rejections: &rejections,
            failures: &failures,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", REASON_OBJECT_NOT_OWNED)
        );
        assert!(
            d.message.starts_with(
                "ConfigMap team-a/gw-envoy-bootstrap exists and is not owned by this Gateway; \
                 Service team-a/gw-envoy exists and is not owned by this Gateway. Sluice"
            ),
            "{}",
            d.message
        );
        // The running Envoys are still reported.
        assert_eq!(cond(&s, "Available").status, "True");

        // An apply error, with nothing provisioned yet: the API's message, naming the object.
        let failures = [failure(
            "Service",
            "gw-envoy",
            ObjectProblem::ApplyFailed("Service \"gw-envoy\" is invalid: bad".into()),
        )];
        let observed = ObservedState {
            failures: &failures,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(
            (d.status.as_str(), d.reason.as_str(), d.message.as_str()),
            (
                "True",
                REASON_APPLY_FAILED,
                "applying Service team-a/gw-envoy: Service \"gw-envoy\" is invalid: bad"
            )
        );

        // Many long failures stay short.
        let failures: Vec<_> = (0..5)
            .map(|i| {
                failure(
                    "Secret",
                    &format!("s{i}"),
                    ObjectProblem::ReadFailed("x".repeat(2000)),
                )
            })
            .collect();
        let observed = ObservedState {
            failures: &failures,
            ..ObservedState::default()
        };
        let s = gateway_status(&gw, &observed, &time(100));
        let d = cond(&s, "Degraded");
        assert_eq!(d.reason, REASON_APPLY_FAILED);
        assert!(d.message.ends_with("...; and 2 more"), "{}", d.message);
        assert!(d.message.len() < 1600, "{}", d.message.len());
    }
}
