//! The listener's one `ext_authz` filter (Traefik's `forwardAuth`) and a route's configuration of
//! it ([`ExtAuthzPolicy`]).
//!
//! The filter is `disabled` in every HTTP connection manager and names no real server: a route
//! enables it with a `FilterConfig` whose `check_settings.service_override` is the route's auth
//! server (cluster, path, the auth response headers copied upstream, the body sent). What cannot
//! differ per route is set once here, as Traefik does it by default: every request header goes
//! to the auth server, and an unreachable auth server means 500. The `X-Forwarded-*` headers
//! Traefik sends are set from the request Envoy received (Envoy's own `X-Forwarded-Proto` and
//! the TCP peer's address), never from the client's copies.
//!
//! Nothing tenants write reaches a formatter: the headers added to auth requests are fixed, and
//! the path, regex and names are checked by the DAG (see `dag::traefik::forward_auth`).

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HttpUri, http_uri};
use envoy_types::pb::envoy::config::route::v3::FilterConfig;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    AuthorizationRequest, AuthorizationResponse, BufferSettings, CheckSettings, ExtAuthz,
    ExtAuthzPerRoute, HttpService, check_settings, ext_authz, ext_authz_per_route,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListStringMatcher, RegexMatcher, StringMatcher, string_matcher,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::google::protobuf::Any;

use super::envoy::{any, http_filter, millis};
use crate::dag::ext_authz::ExtAuthzPolicy;

pub const EXT_AUTHZ_FILTER: &str = "envoy.filters.http.ext_authz";

/// The cluster the disabled filter names; no route ever sends to it (every route enabling the
/// filter names its own server).
const NO_CLUSTER: &str = "sluice-no-auth-server";

/// How long an auth request may take (Traefik's forwardAuth client gives up after 30 s).
const AUTH_TIMEOUT_MS: u64 = 30_000;

/// The headers Traefik describes the original request with, as Envoy formatters (the client's
/// own copies are replaced), and `x-real-ip`, which Traefik also sets for every request.
const FORWARDED: [(&str, &str); 6] = [
    ("x-forwarded-method", "%REQ(:METHOD)%"),
    ("x-forwarded-proto", "%REQ(X-FORWARDED-PROTO)%"),
    ("x-forwarded-host", "%REQ(:AUTHORITY)%"),
    ("x-forwarded-uri", "%REQ(:PATH)%"),
    (
        "x-forwarded-for",
        "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
    ),
    (
        "x-real-ip",
        "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
    ),
];

/// Forwarding headers Traefik strips from untrusted clients and Sluice does not set: a client's
/// copy never reaches the auth server (it could pass for the Gateway's word).
const NOT_FORWARDED: [&str; 3] = [
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
];

/// The `ext_authz` filter of every HTTP connection manager, disabled.
pub(super) fn listener_filter() -> HttpFilter {
    let config = ExtAuthz {
        services: Some(ext_authz::Services::HttpService(http_service(
            NO_CLUSTER,
            "http://sluice-no-auth-server",
            "/",
        ))),
        // Traefik answers 500 when it cannot reach the auth server.
        status_on_error: Some(HttpStatus {
            code: StatusCode::InternalServerError as i32,
        }),
        // Every request header, as Traefik sends without `authRequestHeaders`.
        allowed_headers: Some(ListStringMatcher {
            patterns: vec![regex_matcher("(?s:.*)")],
        }),
        disallowed_headers: Some(ListStringMatcher {
            patterns: NOT_FORWARDED
                .iter()
                .map(|h| StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact((*h).to_owned())),
                    ignore_case: true,
                })
                .collect(),
        }),
        ..Default::default()
    };
    let mut filter = http_filter(EXT_AUTHZ_FILTER, &config);
    filter.disabled = true;
    filter
}

/// The route's configuration of the filter, enabling it.
pub(super) fn route_config(p: &ExtAuthzPolicy) -> Any {
    let mut service = http_service(&p.cluster, &p.uri, &p.path);
    let mut patterns: Vec<StringMatcher> = p
        .upstream_headers
        .iter()
        .map(|h| StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::Exact(h.clone())),
            ignore_case: true,
        })
        .collect();
    patterns.extend(p.upstream_headers_regex.as_deref().map(regex_matcher));
    if !patterns.is_empty() {
        service.authorization_response = Some(AuthorizationResponse {
            allowed_upstream_headers: Some(ListStringMatcher { patterns }),
            ..Default::default()
        });
    }
    let per_route = ExtAuthzPerRoute {
        r#override: Some(ext_authz_per_route::Override::CheckSettings(
            CheckSettings {
                with_request_body: p.body_limit.map(|max| BufferSettings {
                    max_request_bytes: max,
                    allow_partial_message: false,
                    pack_as_bytes: false,
                }),
                service_override: Some(check_settings::ServiceOverride::HttpService(service)),
                ..Default::default()
            },
        )),
    };
    any(&FilterConfig {
        config: Some(any(&per_route)),
        is_optional: false,
        disabled: false,
    })
}

fn http_service(cluster: &str, uri: &str, path: &str) -> HttpService {
    HttpService {
        server_uri: Some(HttpUri {
            uri: uri.to_owned(),
            timeout: Some(millis(AUTH_TIMEOUT_MS)),
            http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster.to_owned())),
        }),
        path_override: path.to_owned(),
        authorization_request: Some(AuthorizationRequest {
            headers_to_add: FORWARDED
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn regex_matcher(regex: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: regex.to_owned(),
            ..Default::default()
        })),
        ignore_case: false,
    }
}
