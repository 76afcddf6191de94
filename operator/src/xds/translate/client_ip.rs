//! Route conditions on the client's address (Traefik `ClientIP()` in IngressRoute rules,
//! [`SourceCondition`]).
//!
//! Envoy's `RouteMatch` has no source-address field, but it matches filter state
//! (`RouteMatch.filter_state`, a `FilterStateMatcher` with an `address_match`). Every filter
//! chain that runs an HTTP connection manager starts with a `set_filter_state` network filter
//! that records, when the connection opens, the peer address of the TCP connection (Traefik's
//! `RemoteAddr`, never `X-Forwarded-For`) under [`FILTER_STATE_KEY`] as an IP object
//! (`envoy.network.ip`). The requests of the connection see it through their filter state's
//! parent, before any HTTP filter or route lookup runs, so the route's matchers are decided with
//! the rest of its match: a route whose address matcher fails is skipped and the next route is
//! tried, exactly as Traefik tries its next router (an RBAC filter would answer 403 instead).
//! A `rateLimit` keyed on the TCP peer reads it too, on a Gateway trusting X-Forwarded-For
//! hops, where Envoy's own client address is a forwarded one (see `policies`).
//!
//! The recorder is on every HTTP chain whether or not a route uses it: adding it only when a
//! route needs it would change the listener, and Envoy would drain every connection of it,
//! whenever a tenant added or removed its first `ClientIP()`.

use envoy_types::pb::envoy::config::core::v3::{
    SubstitutionFormatString, substitution_format_string,
};
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use envoy_types::pb::envoy::extensions::filters::network::set_filter_state::v3::Config;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    AddressMatcher, FilterStateMatcher, filter_state_matcher,
};
use envoy_types::pb::xds::core::v3::CidrRange;

use super::envoy::{inline_string, network_filter, u32_value};
use crate::dag::model::SourceCondition;

/// The connection filter-state key holding the client's address.
pub const FILTER_STATE_KEY: &str = "sluice.client_address";

/// The network filter recording the client's address, first on every HTTP filter chain.
pub(super) fn record_filter() -> Filter {
    network_filter(
        "envoy.filters.network.set_filter_state",
        &Config {
            on_new_connection: vec![FilterStateValue {
                factory_key: "envoy.network.ip".to_owned(),
                key: Some(filter_state_value::Key::ObjectKey(
                    FILTER_STATE_KEY.to_owned(),
                )),
                value: Some(filter_state_value::Value::FormatString(
                    SubstitutionFormatString {
                        format: Some(substitution_format_string::Format::TextFormatSource(
                            inline_string("%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"),
                        )),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
}

/// The filter-state matchers of a route's address conditions (all must match).
pub(super) fn matchers(sources: &[SourceCondition]) -> Vec<FilterStateMatcher> {
    sources
        .iter()
        .map(|s| FilterStateMatcher {
            key: FILTER_STATE_KEY.to_owned(),
            matcher: Some(filter_state_matcher::Matcher::AddressMatch(
                AddressMatcher {
                    ranges: vec![CidrRange {
                        address_prefix: s.range.address.to_string(),
                        prefix_len: Some(u32_value(u32::from(s.range.prefix_len))),
                    }],
                    invert_match: s.invert,
                },
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::dag::model::SourceRange;
    use crate::xds::translate::json::message_to_json;

    #[test]
    fn each_condition_is_one_address_matcher_on_the_recorded_key() {
        let sources = [
            SourceCondition {
                range: SourceRange {
                    address: "10.0.0.0".parse().unwrap(),
                    prefix_len: 8,
                },
                invert: false,
            },
            SourceCondition {
                range: SourceRange {
                    address: "::1".parse().unwrap(),
                    prefix_len: 128,
                },
                invert: true,
            },
        ];
        let json: Vec<_> = matchers(&sources)
            .iter()
            .map(|m| message_to_json(m).unwrap())
            .collect();
        assert_eq!(
            serde_json::Value::Array(json),
            serde_json::json!([
                {"key": FILTER_STATE_KEY, "address_match": {"ranges": [
                    {"address_prefix": "10.0.0.0", "prefix_len": 8}]}},
                {"key": FILTER_STATE_KEY, "address_match": {"ranges": [
                    {"address_prefix": "::1", "prefix_len": 128}], "invert_match": true}},
            ])
        );
        let filter = message_to_json(&record_filter()).unwrap();
        let value = &filter["typed_config"]["on_new_connection"][0];
        assert_eq!(value["object_key"], FILTER_STATE_KEY);
        assert_eq!(value["factory_key"], "envoy.network.ip");
        assert_eq!(
            value["format_string"]["text_format_source"]["inline_string"],
            "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%"
        );
    }
}
