//! Test fixture builders for Gateways and the objects the controller observes.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, LoadBalancerIngress,
    LoadBalancerStatus, Pod, PodCondition, PodStatus, Service, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::ProvisionContext;
use crate::api::gateway::{ExternalTrafficPolicy, GatewayStatus, PublishingType};
use crate::api::{Gateway, GatewaySpec};

/// A Gateway as the API would return it: namespace, uid and generation 1.
pub fn gateway(ns: &str, name: &str) -> Gateway {
    let mut gw = Gateway::new(name, GatewaySpec::default());
    gw.metadata.namespace = Some(ns.to_owned());
    gw.metadata.uid = Some(format!("uid-{ns}-{name}"));
    gw.metadata.generation = Some(1);
    gw
}

impl Gateway {
    pub fn with_image(mut self, image: &str) -> Self {
        self.spec.envoy.image = Some(image.to_owned());
        self
    }
    pub fn with_log_level(mut self, level: &str) -> Self {
        self.spec.envoy.log_level = Some(level.to_owned());
        self
    }
    pub fn with_drain_seconds(mut self, secs: i64) -> Self {
        self.spec.rollout.drain_seconds = Some(secs);
        self
    }
    pub fn with_max_unavailable(mut self, v: IntOrString) -> Self {
        self.spec.rollout.max_unavailable = Some(v);
        self
    }
    pub fn with_publishing(mut self, t: PublishingType) -> Self {
        self.spec.publishing.type_ = t;
        self
    }
    pub fn with_external_traffic_policy(mut self, p: ExternalTrafficPolicy) -> Self {
        self.spec.publishing.external_traffic_policy = Some(p);
        self
    }
    pub fn with_service_annotation(mut self, k: &str, v: &str) -> Self {
        self.spec
            .publishing
            .annotations
            .insert(k.to_owned(), v.to_owned());
        self
    }
    pub fn with_ports(mut self, http: i32, https: i32) -> Self {
        self.spec.ports.http = http;
        self.spec.ports.https = https;
        self
    }
    pub fn with_node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec
            .envoy
            .node_selector
            .insert(k.to_owned(), v.to_owned());
        self
    }
    pub fn with_generation(mut self, g: i64) -> Self {
        self.metadata.generation = Some(g);
        self
    }
    pub fn with_status(mut self, s: GatewayStatus) -> Self {
        self.status = Some(s);
        self
    }
}

/// Context without xDS TLS, so a bootstrap validates without certificate files.
pub fn ctx() -> ProvisionContext {
    let mut c = ProvisionContext::new(
        "ghcr.io/sluice/sluice:test",
        "sluice-xds.sluice-system.svc",
        8001,
    );
    c.xds_tls = false;
    c
}

pub fn time(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// A DaemonSet at `generation`, observed up to `observed`, with desired, updated and ready
/// counts; available = ready, unavailable = desired - ready.
pub fn daemon_set(
    generation: i64,
    observed: i64,
    desired: i32,
    updated: i32,
    ready: i32,
) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            generation: Some(generation),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            current_number_scheduled: desired,
            updated_number_scheduled: Some(updated),
            number_ready: ready,
            number_available: Some(ready),
            number_unavailable: Some(desired - ready),
            ..DaemonSetStatus::default()
        }),
    }
}

pub fn service(type_: &str) -> Service {
    Service {
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            cluster_ip: Some("10.96.0.10".to_owned()),
            cluster_ips: Some(vec!["10.96.0.10".to_owned(), "fd00::10".to_owned()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Adds a load balancer ingress entry to `svc`.
pub fn with_lb_ingress(mut svc: Service, ip: Option<&str>, hostname: Option<&str>) -> Service {
    let st = svc.status.get_or_insert_with(ServiceStatus::default);
    st.load_balancer
        .get_or_insert_with(LoadBalancerStatus::default)
        .ingress
        .get_or_insert_with(Vec::new)
        .push(LoadBalancerIngress {
            ip: ip.map(str::to_owned),
            hostname: hostname.map(str::to_owned),
            ..LoadBalancerIngress::default()
        });
    svc
}

/// A pending pod whose `container` waits with `reason`.
pub fn waiting_pod(name: &str, container: &str, reason: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Pending".to_owned()),
            container_statuses: Some(vec![ContainerStatus {
                name: container.to_owned(),
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.to_owned()),
                        message: Some(format!("{reason} details")),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

pub fn unschedulable_pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Pending".to_owned()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".to_owned(),
                status: "False".to_owned(),
                reason: Some("Unschedulable".to_owned()),
                message: Some("0/1 nodes are available: insufficient cpu".to_owned()),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}
