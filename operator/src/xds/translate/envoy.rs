//! Tiny, named constructors for the Envoy protos the translation repeats. Each one builds a single
//! message with no policy of its own; the policy lives in the listener, route and cluster modules.

use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, Pipe, TransportSocket,
    address, config_source::ConfigSourceSpecifier, data_source, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig;
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration, UInt32Value};
use prost::{Message, Name};

/// `message` packed in an `Any` with its `type.googleapis.com/...` URL.
pub fn any<T: Message + Name>(message: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: message.encode_to_vec(),
    }
}

pub fn millis(ms: u64) -> Duration {
    let secs = ms / 1000;
    // `ms % 1000` is below 1000, so the nanosecond count always fits in an i32.
    let nanos = i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0);
    Duration {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos,
    }
}

pub fn seconds(s: u32) -> Duration {
    Duration {
        seconds: i64::from(s),
        nanos: 0,
    }
}

pub fn u32_value(value: u32) -> UInt32Value {
    UInt32Value { value }
}

pub fn bool_value(value: bool) -> BoolValue {
    BoolValue { value }
}

/// A TCP socket address.
pub fn socket_address(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(
            envoy_types::pb::envoy::config::core::v3::SocketAddress {
                address: ip.to_owned(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
                ..Default::default()
            },
        )),
    }
}

/// The address a listener binds: `ip:port`, and when `ip` is the IPv6 wildcard `::` and
/// `ipv4_compat`, accepting IPv4 connections too (IPv4-mapped); otherwise Envoy binds `::`
/// IPv6-only.
pub fn listen_address(ip: &str, port: u16, ipv4_compat: bool) -> Address {
    let wildcard = ip
        .parse::<std::net::Ipv6Addr>()
        .is_ok_and(|a| a.is_unspecified());
    Address {
        address: Some(address::Address::SocketAddress(
            envoy_types::pb::envoy::config::core::v3::SocketAddress {
                address: ip.to_owned(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
                ipv4_compat: ipv4_compat && wildcard,
                ..Default::default()
            },
        )),
    }
}

/// A Unix domain socket address (`mode` only matters where Envoy binds it).
pub fn pipe_address(path: &str, mode: u32) -> Address {
    Address {
        address: Some(address::Address::Pipe(Pipe {
            path: path.to_owned(),
            mode,
        })),
    }
}

/// Fetch over the aggregated (ADS) stream, v3 resources.
pub fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

/// A secret fetched by name over ADS.
pub fn sds_secret(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_owned(),
        sds_config: Some(ads_config_source()),
    }
}

pub fn inline_string(text: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineString(text.to_owned())),
        ..Default::default()
    }
}

/// A network filter with a typed config.
pub fn network_filter<T: Message + Name>(name: &str, config: &T) -> Filter {
    Filter {
        name: name.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(any(config))),
    }
}

/// An HTTP filter with a typed config.
pub fn http_filter<T: Message + Name>(name: &str, config: &T) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(any(config))),
        ..Default::default()
    }
}

/// A transport socket with a typed config.
pub fn transport_socket<T: Message + Name>(name: &str, config: &T) -> TransportSocket {
    TransportSocket {
        name: name.to_owned(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(config))),
    }
}

/// One locality holding every address, in the given order.
pub fn load_assignment<'a>(
    cluster_name: &str,
    addresses: impl IntoIterator<Item = (&'a str, u16)>,
) -> ClusterLoadAssignment {
    let lb_endpoints: Vec<LbEndpoint> = addresses
        .into_iter()
        .map(|(host, port)| {
            let mut endpoint = Endpoint {
                address: Some(socket_address(host, port)),
                ..Default::default()
            };
            super::service_options::endpoint(cluster_name, host, port, &mut endpoint);
            LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(endpoint)),
                ..Default::default()
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster_name.to_owned(),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }]
        },
        ..Default::default()
    }
}
