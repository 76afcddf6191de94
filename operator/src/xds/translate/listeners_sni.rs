//! The server-name condition of a TCP proxy chain from Traefik `HostSNIRegexp()` (see
//! `dag::traefik::tcp_open`): Envoy's `filter_chain_match.server_names` has no regex, so the
//! chain takes every name its wildcard or the catch-all receives, and an RBAC network filter
//! before the TCP proxy closes the connections whose server name none of the regexes matches
//! (Envoy's `requested_server_name`, what the TLS inspector read from the ClientHello; empty
//! without SNI, as Traefik's).
//!
//! The RBAC network filter decides on the connection's first bytes; the TCP proxy would open
//! its upstream connection before that, so it waits for those bytes
//! (`upstream_connect_mode: ON_DOWNSTREAM_DATA`): a connection the regexes refuse never reaches
//! the backend. With passthrough the first bytes are the ClientHello, so nothing changes for
//! the client; with termination they are the client's first application data, so protocols
//! where the server speaks first are not served by such a chain.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as RbacRules, permission, principal, rbac,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};

use super::envoy::network_filter;

/// The network filter's name.
pub const RBAC_NETWORK_FILTER: &str = "envoy.filters.network.rbac";
/// Bytes the TCP proxy buffers from the client while it waits to connect upstream (a
/// ClientHello, or the first application data); beyond it, reading pauses.
pub const EARLY_DATA_BYTES: u32 = 64 * 1024;

/// An RBAC network filter allowing the connections whose server name one of `regexes` (RE2,
/// whole name) matches, and closing the others.
pub(super) fn sni_rbac_filter(regexes: &[String]) -> Filter {
    let policy = Policy {
        permissions: regexes
            .iter()
            .map(|r| Permission {
                rule: Some(permission::Rule::RequestedServerName(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                        regex: r.clone(),
                        ..Default::default()
                    })),
                    ignore_case: false,
                })),
            })
            .collect(),
        principals: vec![Principal {
            identifier: Some(principal::Identifier::Any(true)),
        }],
        ..Default::default()
    };
    network_filter(
        RBAC_NETWORK_FILTER,
        &Rbac {
            rules: Some(RbacRules {
                action: rbac::Action::Allow as i32,
                policies: HashMap::from([("traefik-host-sni-regexp".to_owned(), policy)]),
                ..Default::default()
            }),
            stat_prefix: "traefik_host_sni_regexp.".to_owned(),
            ..Default::default()
        },
    )
}
