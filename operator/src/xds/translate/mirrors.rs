//! Request mirrors of a route (Traefik's `mirroring` TraefikService): each mirror cluster gets a
//! copy of `percent` % of the route's requests, with the Host header unchanged (Envoy would
//! otherwise append `-shadow`, which Traefik does not), and its responses are dropped.

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};

use crate::dag::model::Mirror;

/// The mirror policies of a route; a 100 % mirror has no fraction (Envoy then mirrors every
/// request).
pub(super) fn policies(mirrors: &[Mirror]) -> Vec<RequestMirrorPolicy> {
    mirrors
        .iter()
        .map(|m| RequestMirrorPolicy {
            cluster: m.cluster.clone(),
            runtime_fraction: (m.percent < 100).then(|| RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator: m.percent,
                    denominator: fractional_percent::DenominatorType::Hundred as i32,
                }),
                runtime_key: String::new(),
            }),
            disable_shadow_host_suffix_append: true,
            ..Default::default()
        })
        .collect()
}
