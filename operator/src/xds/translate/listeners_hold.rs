//! The catch-all and wildcard TCP proxies of `ingress_https` (Traefik `HostSNI(`*`)` and
//! `HostSNI(`*.name`)`, see `dag::traefik::tcp_open`) and the filter chains that keep held
//! names away from them.
//!
//! - The catch-all host `*` is a filter chain without server names, for TLS connections only
//!   (`transport_protocol: tls`): Envoy gives it the TLS connections whose SNI no chain names,
//!   and those without SNI; a connection that is not TLS has no chain and is closed.
//! - A wildcard `*.name` is a chain with that server name: Envoy gives it every SNI under
//!   `name` without a chain of its own or of a longer wildcard (at any depth: Envoy's
//!   `server_names` wildcards are suffixes, where Traefik's `*.name` is one label).
//! - Envoy picks the chain by server name first and never goes back, so a name with a chain
//!   of its own never reaches them. But a name another claimant holds without serving it over
//!   TLS (plain HTTP only, or its owner is invalid, see `dag::open_hosts`) has no chain, and
//!   would reach the catch-all's or a wildcard's backend. Each such name whose SNI would land on
//!   a TCP proxy gets a *hold* chain: its server name and no network filter, so Envoy closes
//!   the connection at once. (A name that would land on an HTTP wildcard's chain needs none:
//!   that chain's route configuration answers it 404, see `open_hosts`.)

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch};

use super::open_hosts::is_open;
use crate::dag::Dag;
use crate::dag::model::VirtualHost;

/// The name of the catch-all host.
const CATCH_ALL: &str = "*";

/// What the name of a hold chain starts with (then the held name).
pub const HOLD_PREFIX: &str = "hold/";

/// The `server_names` of the chains of the virtual host `fqdn`: none for the catch-all; else the
/// name and the name with a trailing dot. Envoy compares a trailing dot as sent (OpenSSL-style
/// clients send `name.`), so without the second one such a connection for a held name fell
/// through to another tenant's catch-all chain (review 7 R7.3). `*.p.` matches `x.p.` likewise.
pub(super) fn server_names(fqdn: &str) -> Vec<String> {
    if fqdn == CATCH_ALL {
        Vec::new()
    } else {
        vec![fqdn.to_owned(), format!("{fqdn}.")]
    }
}

/// For tests: the names of a chain's `server_names`, each given with and without the trailing
/// dot (checked), listed once.
#[cfg(test)]
pub(crate) fn names_once(server_names: &[String]) -> Vec<String> {
    let (plain, dotted): (Vec<&String>, Vec<&String>) =
        server_names.iter().partition(|n| !n.ends_with('.'));
    let again: Vec<String> = plain.iter().map(|n| format!("{n}.")).collect();
    assert_eq!(
        dotted.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        again.iter().map(String::as_str).collect::<Vec<_>>(),
        "each name with its trailing-dot form: {server_names:?}"
    );
    plain.into_iter().cloned().collect()
}

/// The `transport_protocol` of the chains of the virtual host `fqdn`: TLS only for the
/// catch-all, which would otherwise also take connections that are not TLS.
pub(super) fn transport_protocol(fqdn: &str) -> String {
    if fqdn == CATCH_ALL {
        "tls".to_owned()
    } else {
        String::new()
    }
}

/// The hold chains of `dag` (see the module documentation), in name order; `tls_hosts`: the
/// virtual hosts with chains of their own.
pub(super) fn hold_chains(dag: &Dag, tls_hosts: &[&VirtualHost]) -> Vec<FilterChain> {
    // Each name with chains, and whether they proxy TCP.
    let chained: BTreeMap<&str, bool> = tls_hosts
        .iter()
        .map(|vh| {
            // Plain TCP takes no TLS connection: nothing to hold from it.
            let tls_tcp = vh.tcp_proxy.as_ref().is_some_and(|t| !t.plain);
            (vh.fqdn.as_str(), tls_tcp)
        })
        .collect();
    if !chained.iter().any(|(name, tcp)| *tcp && is_open(name)) {
        return Vec::new();
    }
    let mut held: Vec<&str> = dag
        .virtual_hosts
        .iter()
        .filter(|vh| vh.tls.is_none() && vh.fqdn != CATCH_ALL)
        .map(|vh| vh.fqdn.as_str())
        .filter(|name| lands_on(name, &chained) == Some(true))
        .collect();
    held.sort_unstable();
    held.into_iter()
        .map(|name| FilterChain {
            name: format!("{HOLD_PREFIX}{name}"),
            filter_chain_match: Some(FilterChainMatch {
                server_names: server_names(name),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// Whether the chain Envoy picks for the SNI `name` (which has no chain of its own) proxies TCP;
/// `None` when no chain takes it. Envoy tries the wildcards of `name`'s parents from the
/// longest, then the chains without server names.
fn lands_on(name: &str, chained: &BTreeMap<&str, bool>) -> Option<bool> {
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        let wildcard = format!("*.{parent}");
        if wildcard != name
            && let Some(tcp) = chained.get(wildcard.as_str())
        {
            return Some(*tcp);
        }
        rest = parent;
    }
    chained.get(CATCH_ALL).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_name_lands_on_the_longest_wildcard_of_its_parents_then_the_catch_all() {
        let chained = BTreeMap::from([
            ("*", true),
            ("*.example.com", false),
            ("*.b.example.com", true),
            ("a.example.com", false),
        ]);
        assert_eq!(lands_on("x.example.com", &chained), Some(false));
        assert_eq!(lands_on("x.b.example.com", &chained), Some(true));
        assert_eq!(lands_on("x.y.b.example.com", &chained), Some(true));
        assert_eq!(lands_on("other.org", &chained), Some(true));
        // A wildcard name is taken by the wildcards above it, never by itself.
        assert_eq!(lands_on("*.b.example.com", &chained), Some(false));
        assert_eq!(lands_on("*.example.com", &chained), Some(true));
        let chained = BTreeMap::from([("*.example.com", true)]);
        assert_eq!(lands_on("other.org", &chained), None);
    }
}
