//! Traefik service options in Envoy terms: the backend's address as Host (`auto_host_rewrite`
//! with each endpoint's hostname its `ip:port`), a sticky cookie (a cookie hash policy on the
//! route, whose cluster balances on a hash ring), and active health checks (on the cluster, with
//! per-endpoint port and Host where Traefik's differ from Envoy's defaults).

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster as EnvoyCluster, cluster::CommonLbConfig,
};
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, HealthCheck as EnvoyHealthCheck, RequestMethod,
    header_value_option, health_check,
};
use envoy_types::pb::envoy::config::endpoint::v3::{Endpoint, endpoint::HealthCheckConfig};
use envoy_types::pb::envoy::config::route::v3::{Route as EnvoyRoute, RouteAction, route_action};
use envoy_types::pb::envoy::r#type::v3::{CodecClientType, Int64Range, Percent};

use super::envoy::{any, bool_value, millis, u32_value};
use crate::dag::model::traefik_options::{
    ActiveHealthCheck, EndpointVariant, RouteServiceOptions, StickyCookie, address_host,
};
use crate::dag::model::{Cluster, RouteExtra, Upstream, UpstreamProtocol};

/// The name of the Gateway's compressor in every HTTP connection manager.
pub(super) const COMPRESSOR_FILTER: &str = "envoy.filters.http.compressor";

/// Sets what a route's Traefik services ask of its forwarding action.
pub(super) fn route(options: &RouteServiceOptions, action: &mut RouteAction) {
    if options.address_host {
        action.host_rewrite_specifier = Some(route_action::HostRewriteSpecifier::AutoHostRewrite(
            bool_value(true),
        ));
    }
    if let Some(sticky) = &options.sticky {
        action.hash_policy = vec![cookie_hash_policy(sticky)];
    }
}

/// Envoy issues the cookie (with `Max-Age` unless a session cookie) when a request has none,
/// and hashes on it to pick the server.
fn cookie_hash_policy(c: &StickyCookie) -> route_action::HashPolicy {
    use route_action::hash_policy::{Cookie, CookieAttribute, PolicySpecifier};
    route_action::HashPolicy {
        policy_specifier: Some(PolicySpecifier::Cookie(Cookie {
            name: c.name.clone(),
            ttl: Some(millis(c.max_age_seconds.saturating_mul(1000))),
            path: c.path.clone(),
            attributes: c
                .attributes
                .iter()
                .map(|(name, value)| CookieAttribute {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        })),
        ..Default::default()
    }
}

/// Adds a Traefik health check to `envoy`, the cluster of `c`.
pub(super) fn cluster(c: &Cluster, envoy: &mut EnvoyCluster) {
    let Some(hc) = c.active_health_check.as_deref() else {
        return;
    };
    envoy.health_checks = vec![health_check(hc, c.protocol)];
    // Hosts removed from discovery leave at once instead of lingering until they fail.
    envoy.ignore_health_on_host_removal = true;
    // Traefik answers 503 when no server is healthy; Envoy would by default spread the traffic
    // over every server once fewer than half are healthy ("panic" mode).
    envoy.common_lb_config = Some(CommonLbConfig {
        healthy_panic_threshold: Some(Percent { value: 0.0 }),
        ..Default::default()
    });
    // An ExternalName cluster's one endpoint is in the cluster itself.
    if let Upstream::Dns { host, port } = &c.upstream
        && let Some(assignment) = envoy.load_assignment.as_mut()
    {
        for lb in assignment
            .endpoints
            .iter_mut()
            .flat_map(|l| l.lb_endpoints.iter_mut())
        {
            if let Some(
                envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(
                    e,
                ),
            ) = lb.host_identifier.as_mut()
            {
                let variant = EndpointVariant {
                    health_host: hc.host.is_empty(),
                    ..Default::default()
                };
                health_endpoint(variant, host, *port, e);
            }
        }
    }
}

/// Per-endpoint settings of an assignment named `name` for the endpoint `ip:port`.
pub(super) fn endpoint(name: &str, ip: &str, port: u16, e: &mut Endpoint) {
    let variant = EndpointVariant::of(name);
    if variant.address_host {
        e.hostname = address_host(ip, port);
    }
    health_endpoint(variant, ip, port, e);
}

fn health_endpoint(variant: EndpointVariant, ip: &str, port: u16, e: &mut Endpoint) {
    if !variant.health_host && variant.health_port.is_none() {
        return;
    }
    let health_port = variant.health_port.unwrap_or(port);
    e.health_check_config = Some(HealthCheckConfig {
        port_value: variant.health_port.map_or(0, u32::from),
        hostname: if variant.health_host {
            address_host(ip, health_port)
        } else {
            String::new()
        },
        ..Default::default()
    });
}

/// Traefik marks a server down at its first failed check and up at its first good one.
fn health_check(hc: &ActiveHealthCheck, protocol: UpstreamProtocol) -> EnvoyHealthCheck {
    let interval = millis(hc.interval_ms);
    let method = match hc.method.as_str() {
        "HEAD" => RequestMethod::Head,
        "POST" => RequestMethod::Post,
        "PUT" => RequestMethod::Put,
        "DELETE" => RequestMethod::Delete,
        "OPTIONS" => RequestMethod::Options,
        "TRACE" => RequestMethod::Trace,
        "PATCH" => RequestMethod::Patch,
        _ => RequestMethod::Get,
    };
    let codec = match protocol {
        UpstreamProtocol::H2 | UpstreamProtocol::H2c => CodecClientType::Http2,
        UpstreamProtocol::Http1 | UpstreamProtocol::Tls => CodecClientType::Http1,
    };
    EnvoyHealthCheck {
        timeout: Some(millis(hc.timeout_ms)),
        interval: Some(interval),
        // Envoy otherwise checks a cluster without traffic only every 60 s.
        no_traffic_interval: Some(interval),
        unhealthy_interval: Some(millis(hc.unhealthy_interval_ms)),
        unhealthy_threshold: Some(u32_value(1)),
        healthy_threshold: Some(u32_value(1)),
        health_checker: Some(health_check::HealthChecker::HttpHealthCheck(
            health_check::HttpHealthCheck {
                host: hc.host.clone(),
                path: hc.path.clone(),
                request_headers_to_add: hc
                    .headers
                    .iter()
                    .map(|(key, value)| HeaderValueOption {
                        header: Some(HeaderValue {
                            key: key.clone(),
                            // Literal: Envoy reads `%…%` as a substitution command.
                            value: value.replace('%', "%%"),
                            ..Default::default()
                        }),
                        append_action:
                            header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                        ..Default::default()
                    })
                    .collect(),
                expected_statuses: vec![Int64Range {
                    start: i64::from(hc.expected_statuses.0),
                    end: i64::from(hc.expected_statuses.1),
                }],
                codec_client_type: codec as i32,
                method: method as i32,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// The Gateway's compressor, off on a Traefik route without a `compress` middleware.
pub(super) fn compression(extra: &RouteExtra, envoy: &mut EnvoyRoute) {
    use envoy_types::pb::envoy::extensions::filters::http::compressor::v3::{
        CompressorPerRoute, compressor_per_route,
    };
    if extra.compress {
        return;
    }
    envoy.typed_per_filter_config.insert(
        COMPRESSOR_FILTER.to_owned(),
        any(&CompressorPerRoute {
            r#override: Some(compressor_per_route::Override::Disabled(true)),
        }),
    );
}
