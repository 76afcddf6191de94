//! An IngressRouteTCP rule as Envoy filter-chain matches, and its priority.
//!
//! A filter chain matches on server names, source networks and ALPN, all positively; so every
//! negation is refused, and each alternative of the rule's normal form becomes one filter
//! chain match.

use super::matcher::{Cidr, HostName, Leaf, Located, Protocol, Syntax, parse_rule};
use super::matches::{MAX_ALTERNATIVES, distinct_matches, first_offset, priority};
use super::regex::{Pattern, Searcher};
use super::rule::{Expr, RuleError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SniMatch {
    /// `HostSNI(`*`)`: every connection, TLS or not.
    Any,
    Exact(String),
    /// One extra label under this name (Envoy `*.name` plus a check of the depth).
    OneLabelUnder(String),
    /// `HostSNIRegexp()`: a search on the lower-cased SNI (see `dag::traefik::tcp_open`).
    Regex(SniRegex),
}

/// A `HostSNIRegexp()` pattern (lower-case closed, see [`super::regex::lower_case_closed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SniRegex {
    pub pattern: Pattern,
    /// The literal parent when the pattern provably matches only names one label under it
    /// (see [`super::regex::one_label_parent`]).
    pub parent: Option<String>,
    pub searcher: Searcher,
}

impl SniRegex {
    /// The RE2 regex Envoy matches against the whole SNI (`requested_server_name`), accepting
    /// exactly the names in which Traefik's search on the lower-cased SNI finds the pattern:
    /// the pattern is lower-case closed, so ignoring case is matching the lower-cased name.
    pub fn envoy_regex(&self) -> String {
        format!("(?i){}", self.pattern.envoy_full_match())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpMatch {
    pub sni: SniMatch,
    pub source_ips: Vec<Cidr>,
    pub alpn: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRule {
    pub matches: Vec<TcpMatch>,
    pub priority: i64,
}

/// Parses and translates an IngressRouteTCP route's rule. A rule that is only
/// ``HostSNI(`*`)`` gets priority -1 by default, as in Traefik, so catch-alls sort last.
pub fn tcp_rule(rule: &str, syntax: Syntax, explicit: Option<i64>) -> Result<TcpRule, RuleError> {
    let expr = parse_rule(rule, syntax, Protocol::Tcp)?;
    let catch_all = matches!(
        &expr,
        Expr::Leaf(Located {
            leaf: Leaf::HostSni(HostName::Any),
            ..
        })
    );
    let priority = match explicit {
        None | Some(0) if catch_all => -1,
        _ => priority(rule, explicit).map_err(|message| RuleError { offset: 0, message })?,
    };
    let matches = distinct_matches(dnf(&expr)?, |lits| conjunct(rule, lits))?;
    Ok(TcpRule { matches, priority })
}

/// The normal form of a rule, refusing negations.
fn dnf(e: &Expr<Located>) -> Result<Vec<Vec<&Located>>, RuleError> {
    let too_many = RuleError {
        offset: 0,
        message: format!("the rule expands into more than {MAX_ALTERNATIVES} alternatives"),
    };
    match e {
        Expr::Leaf(l) => Ok(vec![vec![l]]),
        Expr::Not(inner) => Err(RuleError {
            offset: first_offset(inner),
            message: "a TCP rule cannot be negated: Envoy's filter chains only match positively"
                .into(),
        }),
        Expr::Or(v) => {
            let mut out = Vec::new();
            for c in v {
                out.extend(dnf(c)?);
                if out.len() > MAX_ALTERNATIVES {
                    return Err(too_many);
                }
            }
            Ok(out)
        }
        Expr::And(v) => {
            let mut out: Vec<Vec<&Located>> = vec![Vec::new()];
            for c in v {
                let alts = dnf(c)?;
                if out.len().saturating_mul(alts.len()) > MAX_ALTERNATIVES {
                    return Err(too_many);
                }
                out = out
                    .iter()
                    .flat_map(|l| {
                        alts.iter().map(move |r| {
                            let mut x = l.clone();
                            x.extend(r.iter().copied());
                            x
                        })
                    })
                    .collect();
            }
            Ok(out)
        }
    }
}

/// One alternative as a filter chain match; `None` when it can never be true.
fn conjunct(rule: &str, lits: &[&Located]) -> Result<Option<TcpMatch>, RuleError> {
    let mut m = TcpMatch {
        sni: SniMatch::Any,
        source_ips: Vec::new(),
        alpn: Vec::new(),
    };
    let text = |l: &Located| {
        rule.get(l.start..l.end)
            .unwrap_or("this matcher")
            .to_owned()
    };
    let mut network: Option<Cidr> = None;
    for l in lits {
        match &l.leaf {
            Leaf::HostSni(HostName::Any) => {}
            Leaf::HostSni(h) => {
                let next = match h {
                    HostName::Exact(x) => SniMatch::Exact(x.clone()),
                    HostName::OneLabelUnder(p) => SniMatch::OneLabelUnder(p.clone()),
                    HostName::Any => SniMatch::Any,
                };
                m.sni = match (m.sni.clone(), next) {
                    (SniMatch::Any, n) => n,
                    (a, n) if a == n => n,
                    (SniMatch::OneLabelUnder(p), SniMatch::Exact(x))
                    | (SniMatch::Exact(x), SniMatch::OneLabelUnder(p))
                        if one_label_under(&x, &p) =>
                    {
                        SniMatch::Exact(x)
                    }
                    (SniMatch::Regex(r), SniMatch::Exact(x)) => {
                        if !searched(&r, &x, l)? {
                            return Ok(None);
                        }
                        SniMatch::Exact(x)
                    }
                    (SniMatch::Regex(_), _) => {
                        return Err(RuleError {
                            offset: l.start,
                            message: format!(
                                "{} together with HostSNIRegexp cannot be expressed in one \
                                 Envoy filter chain match",
                                text(l)
                            ),
                        });
                    }
                    _ => return Ok(None),
                };
            }
            Leaf::HostSniRegexp {
                pattern,
                lower_closed,
                parent,
                searcher,
            } => {
                if !lower_closed {
                    return Err(RuleError {
                        offset: l.start,
                        message: format!(
                            "{}: Traefik matches the lower-cased server name and Envoy matches \
                             it case-insensitively, so the pattern must accept the same names \
                             either way; write it in lower case, with each negated class leaving \
                             out a letter in both cases or in neither ([^A-Z] leaves out a-z too \
                             once folded)",
                            text(l)
                        ),
                    });
                }
                let r = SniRegex {
                    pattern: pattern.clone(),
                    parent: parent.clone(),
                    searcher: searcher.clone(),
                };
                m.sni = match m.sni.clone() {
                    SniMatch::Any => SniMatch::Regex(r),
                    SniMatch::Regex(prev) if prev == r => SniMatch::Regex(r),
                    SniMatch::Exact(x) => {
                        if !searched(&r, &x, l)? {
                            return Ok(None);
                        }
                        SniMatch::Exact(x)
                    }
                    SniMatch::Regex(_) | SniMatch::OneLabelUnder(_) => {
                        return Err(RuleError {
                            offset: l.start,
                            message: format!(
                                "{} together with another HostSNI or HostSNIRegexp condition \
                                 other than an exact name cannot be expressed in one Envoy \
                                 filter chain",
                                text(l)
                            ),
                        });
                    }
                };
            }
            Leaf::ClientIp(c) => {
                // Envoy's source ranges are alternatives: keep the intersection of all.
                network = match network {
                    None => Some(*c),
                    Some(n) if contains(&n, c) => Some(*c),
                    Some(n) if contains(c, &n) => Some(n),
                    Some(_) => return Ok(None),
                };
            }
            Leaf::Alpn(a) => {
                if m.alpn.iter().any(|x| x != a) {
                    return Err(RuleError {
                        offset: l.start,
                        message: format!(
                            "{}: Envoy's ALPN match accepts any one of its protocols, so two \
                             different ALPN conditions in one alternative cannot be expressed",
                            text(l)
                        ),
                    });
                }
                if m.alpn.is_empty() {
                    m.alpn.push(a.clone());
                }
            }
            _ => {
                return Err(RuleError {
                    offset: l.start,
                    message: format!("{} is not a TCP matcher", text(l)),
                });
            }
        }
    }
    m.source_ips.extend(network);
    Ok(Some(m))
}

/// Whether the pattern's search finds the exact name `name`.
fn searched(r: &SniRegex, name: &str, at: &Located) -> Result<bool, RuleError> {
    r.searcher.is_match(name).map_err(|message| RuleError {
        offset: at.start,
        message,
    })
}

fn one_label_under(name: &str, parent: &str) -> bool {
    name.strip_suffix(parent)
        .and_then(|s| s.strip_suffix('.'))
        .is_some_and(|s| !s.is_empty() && !s.contains('.'))
}

/// True when every address of `inner` is in `outer`.
pub fn contains(outer: &Cidr, inner: &Cidr) -> bool {
    use std::net::IpAddr;
    if outer.prefix_len > inner.prefix_len {
        return false;
    }
    match (outer.addr, inner.addr) {
        (IpAddr::V4(o), IpAddr::V4(i)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(outer.prefix_len))
                .unwrap_or(0);
            u32::from(o) == u32::from(i) & mask
        }
        (IpAddr::V6(o), IpAddr::V6(i)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(outer.prefix_len))
                .unwrap_or(0);
            u128::from(o) == u128::from(i) & mask
        }
        _ => false,
    }
}
