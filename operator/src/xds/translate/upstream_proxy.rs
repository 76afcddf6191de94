//! The PROXY protocol header a cluster sends its upstream before the stream (Traefik TCP
//! services' `proxyProtocol`): Envoy's `upstream_proxy_protocol` transport socket around the
//! cluster's own (plain TCP unless it has one).

use envoy_types::pb::envoy::config::core::v3::{
    ProxyProtocolConfig, TransportSocket, proxy_protocol_config,
};
use envoy_types::pb::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;

use super::envoy::transport_socket;

/// Wraps `inner` (none: plain TCP) in a PROXY protocol header of `version` (1, else 2).
pub(super) fn wrap(version: u8, inner: Option<TransportSocket>) -> TransportSocket {
    let version = if version == 1 {
        proxy_protocol_config::Version::V1
    } else {
        proxy_protocol_config::Version::V2
    };
    let inner = inner.unwrap_or_else(|| {
        transport_socket("envoy.transport_sockets.raw_buffer", &RawBuffer::default())
    });
    transport_socket(
        "envoy.transport_sockets.upstream_proxy_protocol",
        &ProxyProtocolUpstreamTransport {
            config: Some(ProxyProtocolConfig {
                version: version as i32,
                ..Default::default()
            }),
            transport_socket: Some(inner),
            ..Default::default()
        },
    )
}
