//! Per-route HTTP filters ([`RoutePolicy`], from Traefik middlewares): the filters every HTTP
//! connection manager carries, inert on every route that does not configure them, and each
//! route's own configuration of them.
//!
//! Tenant isolation rests on the filters doing nothing by default:
//!
//! - `cors`, `rbac` and `local_ratelimit` are in the chain with no policy of their own (no
//!   CORS policy, no RBAC rules, no token bucket and 0 % enabled); they read the route's
//!   `typed_per_filter_config` when a request's headers reach them.
//! - `basic_auth` and `buffer` cannot be configured inert, so they are `disabled` in the chain
//!   and enabled per route (`FilterConfig { disabled: false }`). Envoy decides which disabled
//!   filters a request gets from the route found *before* any filter runs. On the scoped plain
//!   HTTP listener a request whose host has upper-case letters finds no route then (the Lua
//!   filter lower-cases the host and looks again, see `scopes`), and would reach the backend
//!   without them: such routes carry [`ROUTE_AT_START_KEY`] in their Lua metadata, and the Lua
//!   filter answers 308 to the lower-cased URL instead of forwarding.
//!
//! The listener's chain is the same whatever tenants write, so no Middleware ever changes (or
//! drains) a listener.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::LazyLock;

use envoy_types::pb::envoy::config::core::v3::{
    CidrRange, Metadata, RuntimeFractionalPercent, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as RbacRules, permission, principal, rbac,
};
use envoy_types::pb::envoy::config::route::v3::{
    FilterConfig, HeaderMatcher, RateLimit, RetryPolicy, Route as EnvoyRoute, header_matcher,
    rate_limit, retry_policy, route,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    LocalRateLimitDescriptor, rate_limit_descriptor,
};
use envoy_types::pb::envoy::extensions::filters::http::basic_auth::v3::{
    BasicAuth, BasicAuthPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::http::buffer::v3::{
    Buffer, BufferPerRoute, buffer_per_route,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::{Cors, CorsPolicy};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::envoy::extensions::rate_limit_descriptors::expr::v3::{
    Descriptor as ExprDescriptor, descriptor as expr_descriptor,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, TokenBucket, fractional_percent};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value};

use super::envoy::{any, bool_value, http_filter, inline_string, millis, u32_value};
use crate::dag::model::RouteExtra;
use crate::dag::policy::{RateKey, RateLimitPolicy};

pub const CORS_FILTER: &str = "envoy.filters.http.cors";
pub const RBAC_FILTER: &str = "envoy.filters.http.rbac";
pub const RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
pub const BASIC_AUTH_FILTER: &str = "envoy.filters.http.basic_auth";
pub const BUFFER_FILTER: &str = "envoy.filters.http.buffer";

/// The Lua filter's metadata namespace (its filter name) and the key marking a route whose
/// disabled-by-default filters need the route found before any filter ran.
pub const LUA_NAMESPACE: &str = "envoy.filters.http.lua";
pub const ROUTE_AT_START_KEY: &str = "sluice_route_at_start";

const RATE_LIMIT_STATS: &str = "traefik_rate_limit";
/// Descriptor key of the per-source token buckets.
const SOURCE_KEY: &str = "traefik_source";
/// Descriptor entry of a rate limit keyed on a forwarded address: present only when the
/// header holds one where Envoy reads it.
const FORWARDED_KEY: &str = "traefik_forwarded";
const FORWARDED_VALUE: &str = "address";
/// Most sources (client addresses, header values) one route keeps a bucket for; the least
/// recently seen one is forgotten first (its next request starts with a full bucket).
pub const MAX_SOURCES_PER_ROUTE: u32 = 1024;

/// The policy filters, in the order they run (see [`crate::dag::policy::Stage`]), to go
/// before the connection manager's other filters.
pub(super) fn listener_filters() -> Vec<HttpFilter> {
    let disabled = |mut f: HttpFilter| {
        f.disabled = true;
        f
    };
    vec![
        http_filter(CORS_FILTER, &Cors::default()),
        http_filter(RBAC_FILTER, &Rbac::default()),
        http_filter(
            RATE_LIMIT_FILTER,
            &LocalRateLimit {
                stat_prefix: RATE_LIMIT_STATS.to_owned(),
                ..Default::default()
            },
        ),
        // No user at all (Envoy wants a non-empty source; it skips `#` lines): each route
        // that enables the filter names its own.
        disabled(http_filter(
            BASIC_AUTH_FILTER,
            &BasicAuth {
                users: Some(inline_string("# users are set per route\n")),
                ..Default::default()
            },
        )),
        super::ext_authz::listener_filter(),
        disabled(http_filter(
            BUFFER_FILTER,
            &Buffer {
                max_request_bytes: Some(u32_value(1)),
            },
        )),
    ]
}

/// Adds the route's policy to `envoy` (a forwarding or a redirecting route).
pub(super) fn apply(extra: &RouteExtra, envoy: &mut EnvoyRoute) {
    let Some(p) = extra.policy.as_deref() else {
        return;
    };
    let mut config = filter_config_map();
    if let Some(c) = &p.cors {
        let cors = CorsPolicy {
            allow_origin_string_match: c
                .allow_origin_regexes
                .iter()
                .map(|r| StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                        regex: r.clone(),
                        ..Default::default()
                    })),
                    ignore_case: false,
                })
                .collect(),
            allow_methods: c.allow_methods.join(","),
            allow_headers: c.allow_headers.join(","),
            expose_headers: c.expose_headers.join(","),
            max_age: c.max_age_seconds.map(|s| s.to_string()).unwrap_or_default(),
            allow_credentials: Some(bool_value(c.allow_credentials)),
            // Traefik answers every preflight itself.
            forward_not_matching_preflights: Some(bool_value(false)),
            ..Default::default()
        };
        config.insert(CORS_FILTER.to_owned(), any(&cors));
    }
    if let Some(ip) = &p.ip_allow {
        let range = |(addr, len): &(String, u8)| CidrRange {
            address_prefix: addr.clone(),
            prefix_len: Some(u32_value(u32::from(*len))),
        };
        let principals = match ip.forwarded_depth {
            0 => ip
                .source_ranges
                .iter()
                .map(|r| Principal {
                    identifier: Some(principal::Identifier::DirectRemoteIp(range(r))),
                })
                .collect(),
            // Envoy's client address (the Gateway trusts `depth` hops), but only when the header
            // holds an address there: otherwise Envoy falls back to the TCP peer, where Traefik
            // selects nothing and refuses.
            depth => vec![Principal {
                identifier: Some(principal::Identifier::AndIds(principal::Set {
                    ids: vec![
                        Principal {
                            identifier: Some(principal::Identifier::Header(
                                forwarded_entry_matcher(depth),
                            )),
                        },
                        Principal {
                            identifier: Some(principal::Identifier::OrIds(principal::Set {
                                ids: ip
                                    .source_ranges
                                    .iter()
                                    .map(|r| Principal {
                                        identifier: Some(principal::Identifier::RemoteIp(range(r))),
                                    })
                                    .collect(),
                            })),
                        },
                    ],
                })),
            }],
        };
        let policy = Policy {
            permissions: vec![Permission {
                rule: Some(permission::Rule::Any(true)),
            }],
            principals,
            ..Default::default()
        };
        let rules = RbacRules {
            action: rbac::Action::Allow as i32,
            policies: HashMap::from([("traefik-ip-allow-list".to_owned(), policy)]),
            ..Default::default()
        };
        let per_route = RbacPerRoute {
            rbac: Some(Rbac {
                rules: Some(rules),
                ..Default::default()
            }),
        };
        config.insert(RBAC_FILTER.to_owned(), any(&per_route));
    }
    if let Some(r) = &p.rate_limit {
        config.insert(RATE_LIMIT_FILTER.to_owned(), any(&local_rate_limit(r)));
    }
    if let Some(b) = &p.basic_auth {
        let users = BasicAuthPerRoute {
            users: Some(inline_string(&b.users.join("\n"))),
        };
        config.insert(BASIC_AUTH_FILTER.to_owned(), enabled(any(&users)));
        if b.remove_header {
            envoy
                .request_headers_to_remove
                .push("authorization".to_owned());
        }
    }
    if let Some(a) = &p.ext_authz {
        config.insert(
            super::ext_authz::EXT_AUTHZ_FILTER.to_owned(),
            super::ext_authz::route_config(a),
        );
    }
    if let Some(b) = &p.buffer {
        let per_route = BufferPerRoute {
            r#override: Some(buffer_per_route::Override::Buffer(Buffer {
                max_request_bytes: Some(u32_value(b.max_request_bytes)),
            })),
        };
        config.insert(BUFFER_FILTER.to_owned(), enabled(any(&per_route)));
    }
    if let (Some(r), Some(route::Action::Route(action))) = (&p.retry, &mut envoy.action) {
        action.retry_policy = Some(RetryPolicy {
            // Traefik retries when the backend gave no response.
            retry_on: "connect-failure,refused-stream,reset".to_owned(),
            num_retries: Some(u32_value(r.num_retries)),
            retry_back_off: Some(retry_policy::RetryBackOff {
                base_interval: Some(millis(r.base_interval_ms)),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if p.needs_route_at_start() {
        mark_route_at_start(envoy);
    }
    envoy.typed_per_filter_config = config;
}

/// One hasher for every per-route filter map: prost encodes a map in its iteration order,
/// which with a fresh `RandomState` would differ from one translation to the next, and so would
/// the resource's version. Maps built with the same hasher and the same insertions iterate in
/// the same order, so a translation is byte-identical to the last one in this process.
static MAP_HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

fn filter_config_map() -> HashMap<String, Any> {
    HashMap::with_hasher(MAP_HASHER.clone())
}

/// A disabled-by-default filter's route configuration, enabling it.
fn enabled(config: Any) -> Any {
    any(&FilterConfig {
        config: Some(config),
        is_optional: false,
        disabled: false,
    })
}

fn mark_route_at_start(envoy: &mut EnvoyRoute) {
    let flag = Struct {
        fields: HashMap::from([(
            ROUTE_AT_START_KEY.to_owned(),
            Value {
                kind: Some(value::Kind::BoolValue(true)),
            },
        )]),
    };
    envoy
        .metadata
        .get_or_insert_with(Metadata::default)
        .filter_metadata
        .insert(LUA_NAMESPACE.to_owned(), flag);
}

fn local_rate_limit(r: &RateLimitPolicy) -> LocalRateLimit {
    let bucket = TokenBucket {
        max_tokens: r.max_tokens,
        tokens_per_fill: Some(u32_value(r.tokens_per_fill)),
        fill_interval: Some(millis(r.fill_interval_ms)),
    };
    let remote_address =
        || rate_limit::action::ActionSpecifier::RemoteAddress(rate_limit::action::RemoteAddress {});
    let actions = match &r.key {
        RateKey::PeerIp => vec![remote_address()],
        // Only when the header holds an address where Envoy reads it (see `apply`): otherwise
        // no descriptor, and the request takes the shared bucket, as Traefik's empty source.
        RateKey::ForwardedIp { depth } => vec![
            rate_limit::action::ActionSpecifier::HeaderValueMatch(
                rate_limit::action::HeaderValueMatch {
                    descriptor_key: FORWARDED_KEY.to_owned(),
                    descriptor_value: FORWARDED_VALUE.to_owned(),
                    expect_match: Some(bool_value(true)),
                    headers: vec![forwarded_entry_matcher(*depth)],
                    ..Default::default()
                },
            ),
            remote_address(),
        ],
        RateKey::TcpPeer => vec![rate_limit::action::ActionSpecifier::Extension(
            TypedExtensionConfig {
                name: "envoy.rate_limit_descriptors.expr".to_owned(),
                typed_config: Some(any(&ExprDescriptor {
                    descriptor_key: SOURCE_KEY.to_owned(),
                    skip_if_error: false,
                    expr_specifier: Some(expr_descriptor::ExprSpecifier::Text(format!(
                        "filter_state['{}']",
                        super::client_ip::FILTER_STATE_KEY
                    ))),
                })),
            },
        )],
        RateKey::Header(h) => vec![header_action(h)],
        RateKey::Host => vec![header_action(":authority")],
    };
    let entry = |key: &str, value: &str| rate_limit_descriptor::Entry {
        key: key.to_owned(),
        value: value.to_owned(),
    };
    let entries = match &r.key {
        RateKey::PeerIp => vec![entry("remote_address", "")],
        RateKey::ForwardedIp { .. } => vec![
            entry(FORWARDED_KEY, FORWARDED_VALUE),
            entry("remote_address", ""),
        ],
        RateKey::TcpPeer | RateKey::Header(_) | RateKey::Host => vec![entry(SOURCE_KEY, "")],
    };
    let all = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        }),
        runtime_key: String::new(),
    };
    LocalRateLimit {
        stat_prefix: RATE_LIMIT_STATS.to_owned(),
        // Requests that give no source (a header-keyed limit without the header) share this
        // bucket; the others use only their own.
        token_bucket: Some(bucket),
        filter_enabled: Some(all()),
        filter_enforced: Some(all()),
        descriptors: vec![LocalRateLimitDescriptor {
            entries,
            token_bucket: Some(bucket),
            shadow_mode: false,
        }],
        rate_limits: vec![RateLimit {
            actions: actions
                .into_iter()
                .map(|a| rate_limit::Action {
                    action_specifier: Some(a),
                })
                .collect(),
            ..Default::default()
        }],
        always_consume_default_token_bucket: Some(bool_value(false)),
        max_dynamic_descriptors: Some(u32_value(MAX_SOURCES_PER_ROUTE)),
        enable_retry_after_header: true,
        ..Default::default()
    }
}

/// Matches an `X-Forwarded-For` (as the filters see it: Envoy has appended the TCP peer, one
/// more entry) whose `depth`-th entry from the right as received looks like an address: where
/// Envoy reads its client address when the Gateway trusts `depth` hops. Envoy falls back to
/// the TCP peer when the header is shorter or that entry does not parse; Traefik selects nothing
/// then (an empty entry, or none). Several headers are one comma-joined list to both.
pub(super) fn forwarded_entry_matcher(depth: u32) -> HeaderMatcher {
    HeaderMatcher {
        name: "x-forwarded-for".to_owned(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                    regex: forwarded_entry_regex(depth),
                    ..Default::default()
                })),
                ignore_case: false,
            },
        )),
        ..Default::default()
    }
}

/// The regex of [`forwarded_entry_matcher`] (matched against the whole value): any entries,
/// then the one Envoy reads (spaces around it), then `depth` more, the last being the one Envoy
/// appended. The entry read is a dotted quad of 0 to 255 without leading zeros (what Envoy
/// parses as IPv4), or hex digits and colons with at least one colon (IPv6; an IPv4-embedding
/// form is not taken, so it is refused, the safe side). An entry such as `1.2.3.4:80` or
/// `beef` is no address to Envoy, which then takes the TCP peer: it fails here.
fn forwarded_entry_regex(depth: u32) -> String {
    const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    format!(
        "(?:[^,]*,)*[ \\t]*(?:{OCTET}(?:\\.{OCTET}){{3}}|[0-9A-Fa-f]*:[0-9A-Fa-f:]*)[ \\t]*\
         (?:,[^,]*){{{depth}}}"
    )
}

fn header_action(name: &str) -> rate_limit::action::ActionSpecifier {
    rate_limit::action::ActionSpecifier::RequestHeaders(rate_limit::action::RequestHeaders {
        header_name: name.to_owned(),
        descriptor_key: SOURCE_KEY.to_owned(),
        skip_if_absent: true,
    })
}
