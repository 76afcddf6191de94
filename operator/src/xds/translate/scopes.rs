//! Scoped routes for plain HTTP: one route configuration per virtual host, selected by a scope
//! keyed on the request's host name, so that an edit to one host sends Envoy that host's small
//! route configuration instead of a route table holding every plain-HTTP host.
//!
//! - The HTTP listener's connection manager reads its scopes over SRDS (ADS). Its scope key is
//!   the `:authority` (Host) header up to the first `:`, so a port is ignored like the
//!   `<fqdn>:*` domain of the shared table ignores it.
//! - Each virtual host serving something over plain HTTP gets a `ScopedRouteConfiguration`
//!   `http/<fqdn>` with key `<fqdn>`, naming the route configuration `http/<fqdn>`, which holds
//!   exactly the virtual host the shared `ingress_http` would hold (same domains).
//! - Envoy matches scope keys exactly, but host names are case-insensitive. DAG names are lower
//!   case; a request whose host has an upper-case letter finds no scope when its headers arrive,
//!   so the first HTTP filter (Lua, [`LOWERCASE_HOST_LUA`]) lower-cases the `:authority` header and
//!   has the route looked up again. Such a request reaches the backend with the lower-cased Host
//!   (the only visible difference from the shared table, where the Host header was kept as sent).
//!   A WebSocket upgrade with such a host is refused (403): Envoy decides whether a route allows
//!   upgrades before any filter runs, from the route found then (none here), and would let the
//!   upgrade through on any route; refusing keeps routes that do not enable WebSockets closed.
//!   For the same reason a route whose per-route filters are disabled by default (basic auth,
//!   buffering: see `policies`) would be served without them; the Lua filter answers such a
//!   request with a 308 redirect to the lower-cased host instead.
//! - A key must be matched exactly by what Envoy computes, so scoping is used only when every
//!   virtual host of the Gateway has a name made of `a-z`, `0-9`, `.` and `-` (what the DAG's
//!   hostname checks accept). Any other name (a wildcard such as `*.example.com`, a catch-all,
//!   a name with a `:`) could not be keyed exactly (Envoy has no default scope and no wildcard
//!   key), so the whole Gateway falls back to the shared `ingress_http` route configuration
//!   (see [`super::open_hosts`] for what it holds then). Distinct names give distinct keys, so no
//!   tenant can make two scopes collide (Envoy would refuse the update).

use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::data_source;
use envoy_types::pb::envoy::config::route::v3::{
    ScopedRouteConfiguration, VirtualHost as EnvoyVirtualHost, scoped_route_configuration,
};
use envoy_types::pb::envoy::extensions::filters::http::lua::v3::Lua;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, ScopedRds, ScopedRoutes, http_connection_manager, scoped_routes,
};

use super::envoy::{ads_config_source, http_filter};
use super::routes::{insecure_virtual_host, route_configuration};
use super::{HTTP_LISTENER, Resource};
use crate::dag::Dag;
use crate::dag::model::VirtualHost;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

/// Prefix of the names of the per-host scopes and route configurations of plain HTTP.
pub const HTTP_SCOPE_PREFIX: &str = "http/";

/// The header the scope key is read from (Envoy's name for Host).
pub const SCOPE_KEY_HEADER: &str = ":authority";

/// Lower-cases the host of a request whose host has an upper-case ASCII letter, and has the
/// route looked up again; refuses such a request if it asks for a protocol upgrade (see the
/// module documentation). Lua's `string.lower` and `%u` are ASCII-only in Envoy (C locale), like
/// Envoy's own case-insensitive domain matching.
pub const LOWERCASE_HOST_LUA: &str = r#"function envoy_on_request(request)
  local headers = request:headers()
  local host = headers:get(":authority")
  if host == nil or string.find(host, "%u") == nil then
    return
  end
  if headers:get("upgrade") ~= nil then
    request:respond({[":status"] = "403"}, "")
    return
  end
  local lower = string.lower(host)
  headers:replace(":authority", lower)
  request:clearRouteCache()
  if request:metadata():get("sluice_route_at_start") then
    request:respond({[":status"] = "308", ["location"] = "http://" .. lower .. headers:get(":path")}, "")
  end
end
"#;

/// The name of the scope and of the route configuration serving `fqdn` over plain HTTP.
pub fn http_scope_name(fqdn: &str) -> String {
    format!("{HTTP_SCOPE_PREFIX}{fqdn}")
}

/// Whether `fqdn` can be a scope key that a request for it computes exactly: not empty, and only
/// lower-case ASCII letters, digits, `.` and `-` (no wildcard, no port separator, nothing the
/// Lua filter would lower-case).
pub fn keyable(fqdn: &str) -> bool {
    !fqdn.is_empty()
        && fqdn
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Whether the plain-HTTP listener of `dag` uses scoped routes: every virtual host's name can be
/// keyed (see [`keyable`]); otherwise the shared `ingress_http` serves them all.
pub fn scoped(dag: &Dag) -> bool {
    dag.virtual_hosts.iter().all(|vh| keyable(&vh.fqdn))
}

/// The HTTP connection manager's scoped routes, over SRDS and RDS on ADS.
pub fn scoped_routes_specifier() -> http_connection_manager::RouteSpecifier {
    use scoped_routes::scope_key_builder::{FragmentBuilder, fragment_builder};
    let host = fragment_builder::HeaderValueExtractor {
        name: SCOPE_KEY_HEADER.to_owned(),
        element_separator: ":".to_owned(),
        extract_type: Some(fragment_builder::header_value_extractor::ExtractType::Index(0)),
    };
    http_connection_manager::RouteSpecifier::ScopedRoutes(ScopedRoutes {
        name: HTTP_LISTENER.to_owned(),
        scope_key_builder: Some(scoped_routes::ScopeKeyBuilder {
            fragments: vec![FragmentBuilder {
                r#type: Some(fragment_builder::Type::HeaderValueExtractor(host)),
            }],
        }),
        rds_config_source: Some(ads_config_source()),
        config_specifier: Some(scoped_routes::ConfigSpecifier::ScopedRds(ScopedRds {
            scoped_rds_config_source: Some(ads_config_source()),
            ..Default::default()
        })),
    })
}

/// The Lua filter running [`LOWERCASE_HOST_LUA`], first of the HTTP filters.
pub fn lowercase_host_filter() -> HttpFilter {
    http_filter(
        "envoy.filters.http.lua",
        &Lua {
            default_source_code: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(
                    LOWERCASE_HOST_LUA.to_owned(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

/// The scope selecting `http/<fqdn>` for requests to `fqdn`.
pub fn scope(fqdn: &str) -> ScopedRouteConfiguration {
    let name = http_scope_name(fqdn);
    ScopedRouteConfiguration {
        name: name.clone(),
        route_configuration_name: name,
        key: Some(scoped_route_configuration::Key {
            fragments: vec![scoped_route_configuration::key::Fragment {
                r#type: Some(scoped_route_configuration::key::fragment::Type::StringKey(
                    fqdn.to_owned(),
                )),
            }],
        }),
        ..Default::default()
    }
}

/// The route configuration `http/<fqdn>` holding `host`, the virtual host of `fqdn`.
pub fn scope_route_configuration(fqdn: &str, host: EnvoyVirtualHost) -> RouteConfiguration {
    route_configuration(&http_scope_name(fqdn), vec![host])
}

/// The scopes and route configurations of every virtual host serving something over plain
/// HTTP (a host left with nothing gets no scope: requests for it find none, like an unknown
/// host).
pub fn build_scopes(
    dag: &Dag,
) -> (
    Vec<Resource<ScopedRouteConfiguration>>,
    Vec<Resource<RouteConfiguration>>,
) {
    let hosts: Vec<(&VirtualHost, EnvoyVirtualHost)> = dag
        .virtual_hosts
        .iter()
        .filter_map(|vh| insecure_virtual_host(vh).map(|h| (vh, h)))
        .collect();
    let scopes = hosts
        .iter()
        .map(|(vh, _)| Resource::new(http_scope_name(&vh.fqdn), scope(&vh.fqdn)))
        .collect();
    let routes = hosts
        .into_iter()
        .map(|(vh, h)| {
            Resource::new(
                http_scope_name(&vh.fqdn),
                scope_route_configuration(&vh.fqdn, h),
            )
        })
        .collect();
    (scopes, routes)
}
