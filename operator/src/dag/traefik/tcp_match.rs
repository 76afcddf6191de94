//! The filter chains of one SNI name of an IngressRouteTCP whose rules add `ClientIP()` or
//! `ALPN()` conditions: which route serves which (ALPN, source network), in Envoy's terms,
//! only where Envoy's choice is Traefik's.
//!
//! Traefik tries the routes of a name in priority order and takes the first whose rule
//! matches. Envoy, once it has the filter chains of a server name, picks by ALPN first (the
//! first protocol *the client* offers that some chain names, else the chains naming none, and
//! never back) and then by the most specific source network containing the peer address
//! (longest prefix, else the chain without source ranges, and never back). So:
//!
//! - The chains for an ALPN value also hold every alternative without ALPN condition (those
//!   match clients offering it too in Traefik), resolved together.
//! - Within one ALPN group, an alternative whose network lies inside the network of an
//!   alternative of higher priority can never win in Traefik and is dropped; what remains has,
//!   wherever two networks nest, the inner one of strictly higher priority, which is the one
//!   Envoy's longest prefix picks. Two routes of the same priority on nesting networks are
//!   refused (Traefik's order between them is not defined).
//! - Two ALPN values that lead to different routes are refused: Envoy would follow the
//!   client's order of protocols, Traefik the routes' priorities.
//!
//! A connection no chain of its name takes is closed: it never falls to another name's
//! chain, a catch-all or wildcard (held names never fall through; Traefik would try its
//! catch-all routers next).

use std::collections::BTreeSet;

use crate::traefik::matcher::Cidr;
use crate::traefik::tcp::{SniRegex, contains};

/// At most this many source networks per SNI name (across its chains).
pub const MAX_SOURCES_PER_NAME: usize = 64;

/// A `ClientIP()` network as Envoy receives it. IPv4-mapped IPv6 networks are refused: whether
/// Envoy sees an IPv4 client on a dual-stack listener as IPv4 or mapped depends on the
/// listener, and Traefik (Go) compares the IPv4 form; write the IPv4 network instead.
pub fn source(c: &Cidr) -> Result<Cidr, String> {
    if ipv4_mapped(c) {
        return Err(format!(
            "ClientIP(`{}/{}`): an IPv4-mapped IPv6 network is not served; write the IPv4 \
             network",
            c.addr, c.prefix_len
        ));
    }
    Ok(*c)
}

/// Whether `c` is an IPv4-mapped IPv6 network (`::ffff:a.b.c.d/96` or longer), which Envoy
/// never matches against an IPv4 client.
pub fn ipv4_mapped(c: &Cidr) -> bool {
    matches!(c.addr, std::net::IpAddr::V6(v6) if c.prefix_len >= 96 && v6.to_ipv4_mapped().is_some())
}

/// One alternative of a rule for a name: a route, its priority and its conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alternative {
    pub route: usize,
    pub priority: i64,
    pub alpn: Option<String>,
    /// `None`: any client address.
    pub source: Option<Cidr>,
    /// `HostSNIRegexp()`, on a wildcard or catch-all host: the server names it takes there.
    pub regex: Option<SniRegex>,
}

/// One Envoy filter chain of a name: its ALPN values (empty: a client offering none of the
/// name's values), its source networks (empty: any address) and the route serving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub alpn: Vec<String>,
    pub sources: Vec<Cidr>,
    pub route: usize,
    /// Envoy regexes (see [`SniRegex::envoy_regex`]), one of which the server name must match
    /// or the connection is closed; empty: any name the chain receives.
    pub sni: Vec<String>,
}

/// The chains of `host` from its alternatives, or why Envoy cannot choose as Traefik does.
pub fn plan(host: &str, alternatives: &[Alternative]) -> Result<Vec<Chain>, String> {
    if alternatives.iter().any(|a| a.regex.is_some()) {
        return plan_regex(host, alternatives);
    }
    let values: BTreeSet<&str> = alternatives
        .iter()
        .filter_map(|a| a.alpn.as_deref())
        .collect();
    let plain: Vec<&Alternative> = alternatives.iter().filter(|a| a.alpn.is_none()).collect();
    let mut chains = Vec::new();
    if let Some(first) = values.first() {
        // Every value must lead to the same (route, source) alternatives.
        let group = |v: &str| -> BTreeSet<(usize, i64, Option<Cidr>)> {
            alternatives
                .iter()
                .filter(|a| a.alpn.as_deref() == Some(v))
                .map(|a| (a.route, a.priority, a.source))
                .collect()
        };
        let reference = group(first);
        if let Some(other) = values.iter().find(|v| group(v) != reference) {
            return Err(format!(
                "host {host:?}: ALPN(`{first}`) and ALPN(`{other}`) lead to different routes \
                 or client addresses: Envoy would choose between them by the order of the \
                 client's protocols, Traefik by priority"
            ));
        }
        let with_alpn: Vec<&Alternative> = alternatives
            .iter()
            .filter(|a| a.alpn.as_deref() == Some(first))
            .chain(plain.iter().copied())
            .collect();
        let alpn: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        chains.extend(
            resolve(host, &with_alpn)?
                .into_iter()
                .map(|(route, sources)| Chain {
                    alpn: alpn.clone(),
                    sources,
                    route,
                    sni: Vec::new(),
                }),
        );
    }
    chains.extend(
        resolve(host, &plain)?
            .into_iter()
            .map(|(route, sources)| Chain {
                alpn: Vec::new(),
                sources,
                route,
                sni: Vec::new(),
            }),
    );
    let sources = chains.iter().map(|c| c.sources.len()).sum::<usize>();
    if sources > MAX_SOURCES_PER_NAME {
        return Err(format!(
            "host {host:?}: {sources} ClientIP() networks, more than the {MAX_SOURCES_PER_NAME} \
             Sluice serves for one name"
        ));
    }
    Ok(chains)
}

/// The chain of a wildcard or catch-all `host` some of whose alternatives are
/// `HostSNIRegexp()`. Envoy picks one filter chain by server name, ALPN and client address
/// before the pattern is checked (by an RBAC filter closing the connection), so a connection
/// the pattern does not match can never go on to another route as in Traefik. So: a pattern
/// alternative that a route of higher priority without pattern takes in full (same or no ALPN,
/// a network containing its own) is dropped; what remains is served only when it is the
/// patterns of one route under one condition (their union), or has no pattern at all.
fn plan_regex(host: &str, alternatives: &[Alternative]) -> Result<Vec<Chain>, String> {
    let shadowed = |r: &Alternative| {
        alternatives.iter().any(|p| {
            p.regex.is_none()
                && p.priority > r.priority
                && (p.alpn.is_none() || p.alpn == r.alpn)
                && within(r.source.as_ref(), p.source.as_ref())
        })
    };
    let kept: Vec<&Alternative> = alternatives
        .iter()
        .filter(|a| a.regex.is_none() || !shadowed(a))
        .collect();
    let Some(first) = kept.iter().find(|a| a.regex.is_some()) else {
        let plain: Vec<Alternative> = kept.into_iter().cloned().collect();
        return plan(host, &plain);
    };
    if let Some(other) = kept
        .iter()
        .find(|a| a.regex.is_none() || a.route != first.route)
    {
        let (a, b) = (first.route.min(other.route), first.route.max(other.route));
        let what = if a == b {
            "a HostSNIRegexp() and a condition without it".to_owned()
        } else {
            format!("spec.routes[{a}] and spec.routes[{b}]")
        };
        return Err(format!(
            "host {host:?}: {what} share it: Envoy picks one filter chain per server name \
             (then ALPN and client address) before the HostSNIRegexp() pattern is checked, so a \
             connection the pattern does not match cannot go on to the other as in Traefik; give \
             the pattern's route the higher priority over a HostSNI() covering it, or split them \
             into separate hosts"
        ));
    }
    if let Some(other) = kept
        .iter()
        .find(|a| a.alpn != first.alpn || a.source != first.source)
    {
        return Err(format!(
            "host {host:?}: spec.routes[{}] has HostSNIRegexp() alternatives with different \
             ALPN() or ClientIP() conditions: Envoy chooses by those before the pattern is \
             checked; write one condition for all of them",
            other.route
        ));
    }
    let sni: BTreeSet<String> = kept
        .iter()
        .filter_map(|a| a.regex.as_ref())
        .map(SniRegex::envoy_regex)
        .collect();
    Ok(vec![Chain {
        alpn: first.alpn.iter().cloned().collect(),
        sources: first.source.iter().copied().collect(),
        route: first.route,
        sni: sni.into_iter().collect(),
    }])
}

/// The alternatives of one ALPN group as chains (route and its networks, in route order),
/// dropping those a containing alternative of higher priority shadows; see the module
/// documentation.
fn resolve(host: &str, alternatives: &[&Alternative]) -> Result<Vec<(usize, Vec<Cidr>)>, String> {
    let mut order: Vec<&Alternative> = alternatives.to_vec();
    // Highest priority first; at equal priority, wider networks first so a route's own
    // narrower networks are seen as redundant.
    order.sort_by_key(|a| {
        (
            std::cmp::Reverse(a.priority),
            a.source.map(|c| c.prefix_len),
            a.route,
        )
    });
    let mut kept: Vec<&Alternative> = Vec::new();
    'next: for a in order {
        for b in &kept {
            if !within(a.source.as_ref(), b.source.as_ref()) {
                if b.priority == a.priority
                    && b.route != a.route
                    && within(b.source.as_ref(), a.source.as_ref())
                {
                    return Err(tie(host, a, b));
                }
                continue;
            }
            if b.priority > a.priority || b.route == a.route {
                continue 'next;
            }
            return Err(tie(host, a, b));
        }
        kept.push(a);
    }
    // Envoy files a chain without source ranges under 0.0.0.0/0 and ::/0: a /0 network of
    // another route beside it would be the same match, and Envoy's choice between them is
    // not defined.
    if let Some(any) = kept.iter().find(|a| a.source.is_none())
        && let Some(zero) = kept
            .iter()
            .find(|a| a.source.is_some_and(|c| c.prefix_len == 0))
    {
        return Err(format!(
            "host {host:?}: spec.routes[{}] has a ClientIP() network of prefix length 0 and \
             spec.routes[{}] none: Envoy cannot tell these apart; write the route without \
             ClientIP() or narrow the network",
            zero.route, any.route
        ));
    }
    let mut chains: Vec<(usize, Vec<Cidr>)> = Vec::new();
    kept.sort_by_key(|a| a.route);
    for a in kept {
        match chains.last_mut() {
            Some((route, sources)) if *route == a.route => sources.extend(a.source),
            _ => chains.push((a.route, a.source.into_iter().collect())),
        }
    }
    Ok(chains)
}

/// Whether every address `inner` allows is in `outer` (`None`: any address).
fn within(inner: Option<&Cidr>, outer: Option<&Cidr>) -> bool {
    match (inner, outer) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(i), Some(o)) => contains(o, i),
    }
}

fn tie(host: &str, a: &Alternative, b: &Alternative) -> String {
    let (first, second) = (a.route.min(b.route), a.route.max(b.route));
    format!(
        "host {host:?}: spec.routes[{first}] and spec.routes[{second}] have the same priority \
         {} and overlapping conditions; Traefik's choice between them is not defined, so give \
         one a higher priority",
        a.priority
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::traefik::matcher::cidr;

    fn alt(route: usize, priority: i64, alpn: Option<&str>, source: Option<&str>) -> Alternative {
        Alternative {
            route,
            priority,
            alpn: alpn.map(str::to_owned),
            source: source.map(|s| cidr(s).unwrap()),
            regex: None,
        }
    }

    fn show(chains: &[Chain]) -> Vec<(Vec<String>, Vec<String>, usize)> {
        chains
            .iter()
            .map(|c| {
                (
                    c.alpn.clone(),
                    c.sources
                        .iter()
                        .map(|s| format!("{}/{}", s.addr, s.prefix_len))
                        .collect(),
                    c.route,
                )
            })
            .collect()
    }

    #[test]
    fn a_narrower_network_of_higher_priority_gets_its_own_chain() {
        let chains = plan(
            "a",
            &[alt(0, 50, None, Some("10.0.0.0/8")), alt(1, 10, None, None)],
        )
        .unwrap();
        assert_eq!(
            show(&chains),
            [
                (vec![], vec!["10.0.0.0/8".to_owned()], 0),
                (vec![], vec![], 1)
            ]
        );
    }

    #[test]
    fn a_network_shadowed_by_a_wider_one_of_higher_priority_is_dropped() {
        // Traefik never reaches route 1 for 10.1.x.x: route 0 matches first. Envoy would pick
        // the longer prefix, so it must not be there.
        let chains = plan(
            "a",
            &[
                alt(0, 50, None, Some("10.0.0.0/8")),
                alt(1, 10, None, Some("10.1.0.0/16")),
                alt(1, 10, None, Some("192.168.0.0/16")),
            ],
        )
        .unwrap();
        assert_eq!(
            show(&chains),
            [
                (vec![], vec!["10.0.0.0/8".to_owned()], 0),
                (vec![], vec!["192.168.0.0/16".to_owned()], 1)
            ]
        );
        // A route without ClientIP of higher priority shadows every network.
        let chains = plan(
            "a",
            &[alt(0, 50, None, None), alt(1, 60, None, Some("10.0.0.0/8"))],
        )
        .unwrap();
        assert_eq!(show(&chains).len(), 2);
        let chains = plan(
            "a",
            &[alt(0, 60, None, None), alt(1, 50, None, Some("10.0.0.0/8"))],
        )
        .unwrap();
        assert_eq!(show(&chains), [(vec![], vec![], 0)]);
    }

    #[test]
    fn equal_priorities_on_nesting_networks_are_refused_disjoint_ones_served() {
        let e = plan(
            "a",
            &[
                alt(0, 20, None, Some("10.0.0.0/8")),
                alt(1, 20, None, Some("10.1.0.0/16")),
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("spec.routes[0] and spec.routes[1] have the same priority 20"),
            "{e}"
        );
        let e = plan(
            "a",
            &[alt(0, 20, None, None), alt(1, 20, None, Some("::1"))],
        )
        .unwrap_err();
        assert!(e.contains("same priority"), "{e}");
        let chains = plan(
            "a",
            &[
                alt(0, 20, None, Some("10.0.0.0/8")),
                alt(1, 20, None, Some("11.0.0.0/8")),
                alt(2, 20, None, Some("::1")),
            ],
        )
        .unwrap();
        assert_eq!(show(&chains).len(), 3);
    }

    #[test]
    fn alpn_chains_also_hold_the_routes_without_alpn() {
        let chains = plan(
            "a",
            &[
                alt(0, 10, Some("h2"), Some("10.0.0.0/8")),
                alt(1, 30, None, Some("10.1.0.0/16")),
                alt(2, 5, None, None),
            ],
        )
        .unwrap();
        assert_eq!(
            show(&chains),
            [
                (vec!["h2".to_owned()], vec!["10.0.0.0/8".to_owned()], 0),
                (vec!["h2".to_owned()], vec!["10.1.0.0/16".to_owned()], 1),
                (vec!["h2".to_owned()], vec![], 2),
                (vec![], vec!["10.1.0.0/16".to_owned()], 1),
                (vec![], vec![], 2),
            ]
        );
    }

    #[test]
    fn two_alpn_values_must_lead_to_the_same_routes() {
        let chains = plan(
            "a",
            &[alt(0, 10, Some("h2"), None), alt(0, 10, Some("x"), None)],
        )
        .unwrap();
        assert_eq!(
            show(&chains),
            [(vec!["h2".to_owned(), "x".to_owned()], vec![], 0)]
        );
        let e = plan(
            "a",
            &[alt(0, 10, Some("h2"), None), alt(1, 20, Some("x"), None)],
        )
        .unwrap_err();
        assert!(e.contains("ALPN(`h2`) and ALPN(`x`)"), "{e}");
    }

    #[test]
    fn a_whole_family_beside_a_route_without_client_ip_is_refused() {
        let e = plan(
            "a",
            &[alt(0, 50, None, Some("0.0.0.0/0")), alt(1, 10, None, None)],
        )
        .unwrap_err();
        assert!(
            e.contains("spec.routes[0] has a ClientIP() network of prefix length 0"),
            "{e}"
        );
        // Alone, or shadowed by the route without ClientIP, it is served.
        assert!(plan("a", &[alt(0, 50, None, Some("::/0"))]).is_ok());
        let chains = plan(
            "a",
            &[alt(0, 5, None, Some("0.0.0.0/0")), alt(1, 10, None, None)],
        )
        .unwrap();
        assert_eq!(show(&chains), [(vec![], vec![], 1)]);
    }

    #[test]
    fn too_many_networks_are_refused() {
        let alts: Vec<Alternative> = (0..=MAX_SOURCES_PER_NAME)
            .map(|i| alt(0, 1, None, Some(&format!("10.0.{i}.0/24"))))
            .collect();
        let e = plan("a", &alts).unwrap_err();
        assert!(e.contains("65 ClientIP() networks"), "{e}");
    }
}
