//! `ClientIP()` in Traefik IngressRoute rules: conditions on the client's address that route
//! selection checks, so a request from elsewhere falls through to the next route as in Traefik.
//!
//! Traefik compares the TCP peer address (never `X-Forwarded-For`) with the network. Envoy's
//! `RouteMatch` has no source-address field, but it matches filter state: every HTTP filter
//! chain records the connection's peer address as an IP object when the connection opens, and
//! each network becomes a filter-state address matcher of the route (`invert_match` for
//! `!ClientIP()`); see `xds::translate::client_ip`. A route whose matcher fails is skipped like
//! any other condition, so priorities keep Traefik's meaning. The networks stay inside the
//! route's own virtual hosts: `ClientIP()` never widens which hosts a rule claims, so a
//! `0.0.0.0/0` is only as wide as the rule's `Host()` (or the catch-all it claims).

use crate::dag::model::{SourceCondition, SourceRange};
use crate::traefik::matches::HttpMatch;

/// Refuses the networks Envoy would not compare as Traefik does (IPv4-mapped IPv6 ones, see
/// `tcp_match::source`).
pub(super) fn check(m: &HttpMatch) -> Result<(), String> {
    for c in m.source_ips.iter().chain(&m.not_source_ips) {
        super::tcp_match::source(c)?;
    }
    Ok(())
}

/// The alternative's client-address conditions, networks first, then the excluded ones.
pub(super) fn conditions(m: &HttpMatch) -> Vec<SourceCondition> {
    let condition = |invert: bool| {
        move |c: &crate::traefik::matcher::Cidr| SourceCondition {
            range: SourceRange {
                address: c.addr,
                prefix_len: c.prefix_len,
            },
            invert,
        }
    };
    m.source_ips
        .iter()
        .map(condition(false))
        .chain(m.not_source_ips.iter().map(condition(true)))
        .collect()
}
