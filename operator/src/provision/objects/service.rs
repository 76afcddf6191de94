//! The Service publishing a Gateway's Envoys.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::pod_selector;
use super::validate::Plan;
use crate::api::gateway::{ExternalTrafficPolicy, PublishingType};

/// The Service publishing the Gateway's Envoys: `spec.publishing` decides its type, traffic
/// policy and annotations; `spec.ports` its ports, which target Envoy's listeners.
pub(super) fn service(plan: &Plan<'_>, mut metadata: ObjectMeta) -> Service {
    let envoy_ports = plan.ctx.envoy_ports;
    let publishing = &plan.gw.spec.publishing;
    let type_ = match publishing.type_ {
        PublishingType::LoadBalancer => "LoadBalancer",
        PublishingType::NodePort => "NodePort",
        PublishingType::ClusterIP => "ClusterIP",
    };
    // The API rejects externalTrafficPolicy on ClusterIP Services; it is ignored there.
    let external_traffic_policy = match publishing.type_ {
        PublishingType::ClusterIP => None,
        PublishingType::LoadBalancer | PublishingType::NodePort => {
            publishing.external_traffic_policy.map(|p| {
                match p {
                    ExternalTrafficPolicy::Cluster => "Cluster",
                    ExternalTrafficPolicy::Local => "Local",
                }
                .to_owned()
            })
        }
    };
    if !publishing.annotations.is_empty() {
        metadata.annotations = Some(publishing.annotations.clone());
    }
    let port = |name: &str, port: i32, target: u16| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(i32::from(target))),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(type_.to_owned()),
            selector: Some(pod_selector(&plan.name)),
            ports: Some(vec![
                port("http", plan.http_port, envoy_ports.http),
                port("https", plan.https_port, envoy_ports.https),
            ]),
            external_traffic_policy,
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
