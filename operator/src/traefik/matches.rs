//! A parsed rule as the Envoy route matches that select exactly the same requests, and its
//! Traefik priority.
//!
//! An Envoy `RouteMatch` is a conjunction with one path condition, and the virtual host is
//! chosen by name first; so the rule is put in disjunctive normal form (negations pushed to the
//! leaves) and each conjunct becomes one [`HttpMatch`], all sharing the route's action. What
//! cannot be expressed exactly is refused, naming the call: `!Host`, a negated path or query,
//! two path conditions one of which is a regex, a host regex that relies on upper case, and
//! rules whose normal form exceeds [`MAX_ALTERNATIVES`].

use super::matcher::{Cidr, HostName, Leaf, Located, Protocol, Syntax, ValueMatch, parse_rule};
use super::regex::Pattern;
use super::rule::{Expr, RuleError};

/// Most Envoy routes one rule may expand into.
pub const MAX_ALTERNATIVES: usize = 64;
/// Traefik reserves priorities above this for its own routers.
pub const MAX_PRIORITY: i64 = i64::MAX - 1000;

/// The request host condition of one alternative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// No `Host`: the route belongs in every virtual host, the catch-all included.
    Any,
    /// A virtual host of this name (lower case).
    Exact(String),
    /// Envoy's `*.parent` virtual host, restricted to one label by an `:authority` matcher in
    /// `headers` (Envoy's wildcard spans any depth).
    OneLabelUnder(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// Every path (Envoy `prefix: "/"`).
    Any,
    Exact(String),
    Prefix(String),
    /// Envoy `safe_regex`, full match on the path without the query.
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StringMatch {
    Exact(String),
    /// Full-match RE2 regex.
    Regex(String),
    Present,
}

/// Envoy `HeaderMatcher` (lower-case name; `:authority` and `:method` included). An inverted
/// value match also holds where the header is missing, as Traefik's `!Header()` does (no value
/// matches): Envoy's `treat_missing_header_as_empty`, exact since a value Traefik compares is
/// never empty and a negated pattern matching the empty value is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: String,
    pub value: StringMatch,
    pub invert: bool,
}

/// Envoy `QueryParameterMatcher`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryMatch {
    pub key: String,
    pub value: StringMatch,
}

/// One alternative of a rule: the conditions Envoy must all see true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMatch {
    pub host: HostMatch,
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    /// The client's address must be in every one of these networks (Envoy: a filter-state
    /// address matcher per network, see `xds::translate::client_ip`).
    pub source_ips: Vec<Cidr>,
    /// ... and in none of these (`!ClientIP()`: the same matcher, inverted).
    pub not_source_ips: Vec<Cidr>,
}

/// An IngressRoute route's rule, ready to become Envoy routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRule {
    /// Never empty.
    pub matches: Vec<HttpMatch>,
    pub priority: i64,
}

/// A route's priority: `explicit` unless unset or 0, else the rule's length in bytes.
pub fn priority(rule: &str, explicit: Option<i64>) -> Result<i64, String> {
    match explicit {
        Some(p) if p > MAX_PRIORITY => Err(format!(
            "priority {p} is above {MAX_PRIORITY} (reserved by Traefik for its own routers)"
        )),
        Some(p) if p != 0 => Ok(p),
        _ => Ok(i64::try_from(rule.len()).unwrap_or(i64::MAX)),
    }
}

/// Parses and translates an IngressRoute route's rule.
pub fn http_rule(rule: &str, syntax: Syntax, explicit: Option<i64>) -> Result<HttpRule, RuleError> {
    let expr = parse_rule(rule, syntax, Protocol::Http)?;
    let priority = priority(rule, explicit).map_err(|message| RuleError { offset: 0, message })?;
    let matches = distinct_matches(dnf(&expr, false)?, |c| http_conjunct(rule, c))?;
    Ok(HttpRule { matches, priority })
}

/// The matches of a rule's alternatives (`None`: an alternative that can never match), each
/// once, in order; an error if no alternative can match.
pub(super) fn distinct_matches<C, M: PartialEq>(
    alternatives: Vec<C>,
    mut translate: impl FnMut(&C) -> Result<Option<M>, RuleError>,
) -> Result<Vec<M>, RuleError> {
    let mut matches = Vec::new();
    for alternative in &alternatives {
        // Compared with every earlier one: at most MAX_ALTERNATIVES² comparisons a rule.
        super::work::tick(matches.len() + 1);
        if let Some(m) = translate(alternative)?
            && !matches.contains(&m)
        {
            matches.push(m);
        }
    }
    if matches.is_empty() {
        return Err(RuleError {
            offset: 0,
            message: "the rule can never match (its conditions contradict each other)".into(),
        });
    }
    Ok(matches)
}

/// A leaf, possibly negated.
type Lit<'a> = (&'a Located, bool);

/// The disjunctive normal form of `e` (negated when `neg`), bounded by [`MAX_ALTERNATIVES`].
/// Recursion follows the parse tree, whose depth the parser bounds.
fn dnf(e: &Expr<Located>, neg: bool) -> Result<Vec<Vec<Lit<'_>>>, RuleError> {
    let too_many = |at: usize| RuleError {
        offset: at,
        message: format!(
            "the rule expands into more than {MAX_ALTERNATIVES} alternatives (Envoy routes); \
             simplify it or split it into several routes"
        ),
    };
    match e {
        Expr::Leaf(l) => Ok(vec![vec![(l, neg)]]),
        Expr::Not(inner) => dnf(inner, !neg),
        // Under negation, De Morgan swaps the connectives.
        Expr::Or(v) | Expr::And(v) if matches!(e, Expr::Or(_)) != neg => {
            let mut out = Vec::new();
            for child in v {
                let alts = dnf(child, neg)?;
                super::work::tick(alts.len());
                out.extend(alts);
                if out.len() > MAX_ALTERNATIVES {
                    return Err(too_many(first_offset(child)));
                }
            }
            Ok(out)
        }
        Expr::Or(v) | Expr::And(v) => {
            // Every child's alternatives first (the product's size checked as they come), then
            // the product built once: each conjunct is copied once, so the work is the size of
            // the result (at most MAX_ALTERNATIVES conjuncts of the literals below), not that
            // size again for every child, as a product grown child by child would cost.
            let mut children = Vec::with_capacity(v.len());
            let mut count = 1usize;
            for child in v {
                let alts = dnf(child, neg)?;
                count = count.saturating_mul(alts.len());
                if count > MAX_ALTERNATIVES {
                    return Err(too_many(first_offset(child)));
                }
                children.push(alts);
            }
            // An odometer over the children's alternatives, the last one turning fastest: the
            // order of the conjuncts is the order of the Go expression's alternatives.
            let mut out = Vec::with_capacity(count);
            let mut at = vec![0usize; children.len()];
            loop {
                let mut c: Vec<Lit<'_>> = Vec::new();
                for (alts, &i) in children.iter().zip(&at) {
                    c.extend(alts[i].iter().copied());
                }
                super::work::tick(c.len() + 1);
                out.push(c);
                let mut digit = children.len();
                loop {
                    if digit == 0 {
                        return Ok(out);
                    }
                    digit -= 1;
                    at[digit] += 1;
                    if at[digit] < children[digit].len() {
                        break;
                    }
                    at[digit] = 0;
                }
            }
        }
    }
}

/// Offset of the first call in `e`.
pub(crate) fn first_offset(e: &Expr<Located>) -> usize {
    let mut e = e;
    loop {
        match e {
            Expr::Leaf(l) => return l.start,
            Expr::Not(inner) => e = inner,
            Expr::And(v) | Expr::Or(v) => match v.first() {
                Some(first) => e = first,
                None => return 0,
            },
        }
    }
}

fn string_match(v: &ValueMatch) -> StringMatch {
    match v {
        ValueMatch::Exact(s) => StringMatch::Exact(s.clone()),
        ValueMatch::Regex(p) => StringMatch::Regex(p.envoy_full_match()),
        ValueMatch::Present => StringMatch::Present,
    }
}

/// One conjunct as an Envoy match; `None` when it can never be true.
fn http_conjunct(rule: &str, lits: &[Lit<'_>]) -> Result<Option<HttpMatch>, RuleError> {
    let refuse = |l: &Located, why: &str| RuleError {
        offset: l.start,
        message: format!(
            "{}{} cannot be expressed exactly in Envoy: {why}",
            "!",
            rule.get(l.start..l.end).unwrap_or("this matcher")
        ),
    };
    // Every loop below walks the literals (or fewer).
    super::work::tick(lits.len() + 1);
    let mut host: Option<HostName> = None;
    let mut exact_paths: Vec<&str> = Vec::new();
    let mut prefixes: Vec<&str> = Vec::new();
    let mut regex_path: Option<(&Located, &Pattern)> = None;
    let mut m = HttpMatch {
        host: HostMatch::Any,
        path: PathMatch::Any,
        headers: Vec::new(),
        query: Vec::new(),
        source_ips: Vec::new(),
        not_source_ips: Vec::new(),
    };
    for &(l, neg) in lits {
        match (&l.leaf, neg) {
            (Leaf::Host(_), true) => {
                return Err(refuse(
                    l,
                    "Envoy chooses the virtual host by name before routes",
                ));
            }
            (Leaf::Host(HostName::Any), false) => {}
            (Leaf::Host(h), false) => match &host {
                None => host = Some(h.clone()),
                Some(prev) => match meet(prev, h) {
                    Some(both) => host = Some(both),
                    None => return Ok(None),
                },
            },
            (
                Leaf::HostRegexp {
                    pattern,
                    lower_closed,
                },
                neg,
            ) => {
                if !lower_closed {
                    return Err(RuleError {
                        offset: l.start,
                        message: format!(
                            "{}: Traefik matches the lower-cased host and Envoy matches it \
                             case-insensitively, so the pattern must accept the same names either \
                             way; write it in lower case, with each negated class leaving out a \
                             letter in both cases or in neither ([^A-Z] leaves out a-z too once \
                             folded)",
                            rule.get(l.start..l.end).unwrap_or("HostRegexp")
                        ),
                    });
                }
                m.headers.push(HeaderMatch {
                    name: ":authority".into(),
                    value: StringMatch::Regex(format!("(?i){}", pattern.envoy_full_match())),
                    invert: neg,
                });
            }
            (Leaf::Path(_) | Leaf::PathPrefix(_) | Leaf::PathRegexp(_), true) => {
                return Err(refuse(
                    l,
                    "Envoy has no negated path match (the :path header includes the query)",
                ));
            }
            (Leaf::Path(p), false) => exact_paths.push(p),
            (Leaf::PathPrefix(p), false) => prefixes.push(p),
            (Leaf::PathRegexp(p), false) => {
                if regex_path.is_some() {
                    return Err(RuleError {
                        offset: l.start,
                        message: "two path regexes in one alternative cannot be combined into \
                                  Envoy's single path match"
                            .into(),
                    });
                }
                regex_path = Some((l, p));
            }
            (Leaf::Header { name, value }, neg) => {
                if neg && let ValueMatch::Regex(p) = value {
                    // Envoy reads a missing header as empty under an inverted value match
                    // (`treat_missing_header_as_empty`), so it could not tell "no such header"
                    // (Traefik: no value matches, so the negation holds) from "an empty value
                    // the pattern matches" (it does not).
                    if p.matches_empty {
                        return Err(refuse(
                            l,
                            "the pattern matches an empty value, and a negated Envoy header \
                             match cannot tell a missing header from an empty one",
                        ));
                    }
                }
                m.headers.push(HeaderMatch {
                    name: name.clone(),
                    value: string_match(value),
                    invert: neg,
                });
            }
            (Leaf::Method(method), neg) => m.headers.push(HeaderMatch {
                name: ":method".into(),
                value: StringMatch::Exact(method.clone()),
                invert: neg,
            }),
            (Leaf::Query { .. }, true) => {
                return Err(refuse(
                    l,
                    "Envoy's query parameter matcher cannot be inverted",
                ));
            }
            (Leaf::Query { key, value }, false) => m.query.push(QueryMatch {
                key: key.clone(),
                value: string_match(value),
            }),
            (Leaf::ClientIp(c), neg) => {
                let list = if neg {
                    &mut m.not_source_ips
                } else {
                    &mut m.source_ips
                };
                super::work::tick(list.len());
                if !list.contains(c) {
                    list.push(*c);
                }
            }
            (Leaf::HostSni(_) | Leaf::HostSniRegexp { .. } | Leaf::Alpn(_), _) => {
                return Err(RuleError {
                    offset: l.start,
                    message: "TCP matchers are not allowed in an HTTP rule".into(),
                });
            }
        }
    }
    m.host = match host {
        None => HostMatch::Any,
        Some(HostName::Any) => HostMatch::Any,
        Some(HostName::Exact(h)) => HostMatch::Exact(h),
        Some(HostName::OneLabelUnder(parent)) => {
            // Traefik compares the host without the port; Envoy's `:authority` keeps it.
            m.headers.push(HeaderMatch {
                name: ":authority".into(),
                value: StringMatch::Regex(format!(
                    "(?i)[^.:]+\\.{}\\.?(?::[0-9]*)?",
                    regex_syntax::escape(&parent)
                )),
                invert: false,
            });
            HostMatch::OneLabelUnder(parent)
        }
    };
    // Literal paths: one exact path and/or the longest prefix, all consistent.
    super::work::tick(prefixes.iter().chain(&exact_paths).map(|p| p.len()).sum());
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let longest = prefixes.first().copied();
    if prefixes
        .iter()
        .any(|p| !longest.unwrap_or("").starts_with(p))
    {
        return Ok(None);
    }
    let exact = exact_paths.first().copied();
    if exact_paths.iter().any(|p| Some(*p) != exact) {
        return Ok(None);
    }
    m.path = match (exact, longest) {
        (Some(e), Some(p)) if !e.starts_with(p) => return Ok(None),
        (Some(e), _) => PathMatch::Exact(e.to_owned()),
        (None, Some(p)) => PathMatch::Prefix(p.to_owned()),
        (None, None) => PathMatch::Any,
    };
    if let Some((l, p)) = regex_path {
        if m.path != PathMatch::Any {
            return Err(RuleError {
                offset: l.start,
                message: format!(
                    "{} together with another path condition cannot be expressed in Envoy's \
                     single path match",
                    rule.get(l.start..l.end).unwrap_or("PathRegexp")
                ),
            });
        }
        m.path = PathMatch::Regex(p.envoy_full_match());
    }
    m.source_ips.sort();
    m.not_source_ips.sort();
    Ok(Some(m))
}

/// Both host conditions at once, if any host satisfies them.
fn meet(a: &HostName, b: &HostName) -> Option<HostName> {
    let under = |name: &str, parent: &str| {
        name.strip_suffix(parent)
            .and_then(|l| l.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
    };
    match (a, b) {
        (HostName::Any, x) | (x, HostName::Any) => Some(x.clone()),
        (HostName::Exact(x), HostName::Exact(y)) => (x == y).then(|| a.clone()),
        (HostName::Exact(x), HostName::OneLabelUnder(p))
        | (HostName::OneLabelUnder(p), HostName::Exact(x)) => {
            under(x, p).then(|| HostName::Exact(x.clone()))
        }
        (HostName::OneLabelUnder(x), HostName::OneLabelUnder(y)) => (x == y).then(|| a.clone()),
    }
}
