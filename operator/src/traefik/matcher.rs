//! What the calls of a rule mean: each call of the v3 or v2 syntax becomes typed leaves, checked
//! (argument count, host names, header names, regexes, CIDRs), with v2's multi-argument forms
//! expanded into the `||`/`&&` of single leaves and v2's gorilla templates into anchored
//! regexes.

use std::net::IpAddr;

use super::regex::{self, Pattern};
use super::rule::{Call, Expr, RuleError, parse};
use crate::dag::checks;

/// Which grammar a route's rule is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Syntax {
    /// Traefik 3's (its default).
    #[default]
    V3,
    /// Traefik 2's, selected per route with `syntax: v2`.
    V2,
}

impl Syntax {
    /// The syntax of a route: its `syntax` field, else `default`. Like Traefik, an unknown value
    /// means v3; the second value says it was unknown, for a warning.
    pub fn select(field: Option<&str>, default: Syntax) -> (Syntax, bool) {
        match field.map(str::trim) {
            None | Some("") => (default, false),
            Some("v3") => (Syntax::V3, false),
            Some("v2") => (Syntax::V2, false),
            Some(_) => (Syntax::V3, true),
        }
    }
}

/// HTTP routers (IngressRoute) or TCP routers (IngressRouteTCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Tcp,
}

/// A host condition's value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostName {
    /// `*` (Traefik 3.7+): every request.
    Any,
    /// Lower-case DNS name, without a trailing dot.
    Exact(String),
    /// `*.example.com` (Traefik 3.7+): exactly one extra leftmost label; holds `example.com`.
    OneLabelUnder(String),
}

/// How a header or query value is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueMatch {
    Exact(String),
    /// Traefik's search semantics; see [`Pattern::envoy_full_match`].
    Regex(Pattern),
    /// v2 `Headers(k, ``)` and `Query(`k=`)`: present with any value.
    Present,
}

/// An IP network (`ClientIP`), host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// One condition of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leaf {
    Host(HostName),
    /// Search on the lower-cased request host; `lower_closed` as [`regex::lower_case_closed`].
    HostRegexp {
        pattern: Pattern,
        lower_closed: bool,
    },
    Path(String),
    PathPrefix(String),
    /// Search on the path (v2 templates become anchored patterns).
    PathRegexp(Pattern),
    /// Lower-case header name.
    Header {
        name: String,
        value: ValueMatch,
    },
    Query {
        key: String,
        value: ValueMatch,
    },
    /// Upper-case method.
    Method(String),
    ClientIp(Cidr),
    HostSni(HostName),
    /// Search on the lower-cased SNI; `lower_closed` as [`regex::lower_case_closed`], `parent`
    /// as [`regex::one_label_parent`].
    HostSniRegexp {
        pattern: Pattern,
        lower_closed: bool,
        parent: Option<String>,
        searcher: regex::Searcher,
    },
    Alpn(String),
}

/// A leaf and the byte range of the call it came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub leaf: Leaf,
    pub start: usize,
    pub end: usize,
}

/// Parses `rule` and gives its calls their meaning under `syntax` for `protocol`.
pub fn parse_rule(
    rule: &str,
    syntax: Syntax,
    protocol: Protocol,
) -> Result<Expr<Located>, RuleError> {
    let calls = parse(rule)?;
    convert(calls, syntax, protocol)
}

fn convert(e: Expr<Call>, syntax: Syntax, protocol: Protocol) -> Result<Expr<Located>, RuleError> {
    super::work::tick(1);
    Ok(match e {
        Expr::Leaf(call) => leaves(&call, syntax, protocol)?,
        Expr::Not(inner) => Expr::Not(Box::new(convert(*inner, syntax, protocol)?)),
        Expr::And(v) => Expr::And(
            v.into_iter()
                .map(|e| convert(e, syntax, protocol))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(v) => Expr::Or(
            v.into_iter()
                .map(|e| convert(e, syntax, protocol))
                .collect::<Result<_, _>>()?,
        ),
    })
}

const V3_HTTP: &[&str] = &[
    "Host",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "PathRegexp",
    "Header",
    "HeaderRegexp",
    "Query",
    "QueryRegexp",
    "Method",
    "ClientIP",
];
const V2_HTTP: &[&str] = &[
    "Host",
    "HostHeader",
    "HostRegexp",
    "Path",
    "PathPrefix",
    "Method",
    "Headers",
    "HeadersRegexp",
    "Query",
    "ClientIP",
];
const TCP: &[&str] = &["HostSNI", "HostSNIRegexp", "ClientIP", "ALPN"];

/// The canonical matcher name `name` spells: as written, all lower, all upper, or capitalised.
fn canonical(name: &str, known: &[&'static str]) -> Option<&'static str> {
    known.iter().copied().find(|c| {
        let lower = c.to_ascii_lowercase();
        let mut capital = lower.clone();
        if let Some(first) = capital.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        name == *c || name == lower || name == c.to_ascii_uppercase() || name == capital
    })
}

fn leaves(call: &Call, syntax: Syntax, protocol: Protocol) -> Result<Expr<Located>, RuleError> {
    // Each argument is walked a bounded number of times (checks, templates, copies).
    super::work::tick(call.args.iter().map(|a| a.len() + 1).sum::<usize>() + call.name.len());
    let known = match (protocol, syntax) {
        (Protocol::Http, Syntax::V3) => V3_HTTP,
        (Protocol::Http, Syntax::V2) => V2_HTTP,
        (Protocol::Tcp, _) => TCP,
    };
    let fail = |message: String| RuleError {
        offset: call.start,
        message,
    };
    let Some(name) = canonical(&call.name, known) else {
        let which = match (protocol, syntax) {
            (Protocol::Tcp, _) => "TCP",
            (_, Syntax::V3) => "v3",
            (_, Syntax::V2) => "v2",
        };
        return Err(fail(format!(
            "{} is not a {which} matcher (known: {})",
            call.name,
            known.join(", ")
        )));
    };
    let args = &call.args;
    let arity = |ok: bool| -> Result<(), RuleError> {
        if ok {
            Ok(())
        } else {
            Err(fail(format!(
                "{name}: unexpected number of parameters ({})",
                args.len()
            )))
        }
    };
    let located = |leaf: Leaf| {
        Expr::Leaf(Located {
            leaf,
            start: call.start,
            end: call.end,
        })
    };
    if syntax == Syntax::V2 {
        // Every v2 form takes one or more arguments (two exactly for the header forms).
        arity(!args.is_empty())?;
    } else {
        let ok = match name {
            "Header" | "HeaderRegexp" => args.len() == 2,
            "Query" | "QueryRegexp" => matches!(args.len(), 1 | 2),
            _ => args.len() == 1,
        };
        arity(ok)?;
    }
    let nonempty = |a: &str| -> Result<(), RuleError> {
        if a.is_empty() {
            Err(fail(format!("{name}: empty argument")))
        } else {
            Ok(())
        }
    };
    let with = |what: &str, r: Result<Leaf, String>| r.map_err(|m| fail(format!("{what}: {m}")));
    let one = |arg: &str| -> Result<Leaf, RuleError> {
        match name {
            "Host" | "HostHeader" => {
                nonempty(arg)?;
                with(name, host(arg, syntax == Syntax::V3).map(Leaf::Host))
            }
            "HostSNI" => {
                nonempty(arg)?;
                with(name, host(arg, syntax == Syntax::V3).map(Leaf::HostSni))
            }
            "HostRegexp" | "HostSNIRegexp" => {
                nonempty(arg)?;
                if name == "HostSNIRegexp" && !arg.is_ascii() {
                    return Err(fail(format!(
                        "{name}: the pattern must be ASCII (as Traefik requires)"
                    )));
                }
                let source = match syntax {
                    Syntax::V3 => arg.to_owned(),
                    Syntax::V2 => {
                        template(arg, "[^.]+", true).map_err(|m| fail(format!("{name}: {m}")))?
                    }
                };
                let hir = regex::parse(&source).map_err(|m| fail(format!("{name}: {m}")))?;
                let pattern = regex::check(&source).map_err(|m| fail(format!("{name}: {m}")))?;
                Ok(if name == "HostRegexp" {
                    Leaf::HostRegexp {
                        lower_closed: regex::lower_case_closed(&source, &hir),
                        pattern,
                    }
                } else {
                    Leaf::HostSniRegexp {
                        lower_closed: regex::lower_case_closed(&source, &hir),
                        parent: regex::one_label_parent(&hir),
                        searcher: regex::Searcher::new(&source),
                        pattern,
                    }
                })
            }
            "Path" | "PathPrefix" => {
                nonempty(arg)?;
                if syntax == Syntax::V2 && arg.contains('{') {
                    let anchored = template(arg, "[^/]+", name == "Path")
                        .map_err(|m| fail(format!("{name}: {m}")))?;
                    let pattern =
                        regex::check(&anchored).map_err(|m| fail(format!("{name}: {m}")))?;
                    return Ok(Leaf::PathRegexp(pattern));
                }
                checks::path(arg).map_err(|m| fail(format!("{name}: the path {m}")))?;
                Ok(if name == "Path" {
                    Leaf::Path(arg.to_owned())
                } else {
                    Leaf::PathPrefix(arg.to_owned())
                })
            }
            "PathRegexp" => {
                nonempty(arg)?;
                regex::check(arg)
                    .map(Leaf::PathRegexp)
                    .map_err(|m| fail(format!("{name}: {m}")))
            }
            "Method" => {
                nonempty(arg)?;
                let m = arg.to_ascii_uppercase();
                if !m.bytes().all(is_tchar) {
                    return Err(fail(format!("{name}: {arg:?} is not an HTTP method")));
                }
                Ok(Leaf::Method(m))
            }
            "ClientIP" => {
                nonempty(arg)?;
                cidr(arg)
                    .map(Leaf::ClientIp)
                    .map_err(|m| fail(format!("{name}: {m}")))
            }
            "ALPN" => {
                nonempty(arg)?;
                if arg == "acme-tls/1" {
                    return Err(fail("ALPN: acme-tls/1 is reserved".into()));
                }
                checks::header_value(arg).map_err(|m| fail(format!("ALPN: {m}")))?;
                Ok(Leaf::Alpn(arg.to_owned()))
            }
            _ => Err(fail(format!("{name}: internal: unhandled matcher"))),
        }
    };
    let any_of = |leaves: Vec<Expr<Located>>| {
        if leaves.len() == 1 {
            leaves.into_iter().next().unwrap_or(Expr::Or(Vec::new()))
        } else {
            Expr::Or(leaves)
        }
    };
    match name {
        "Header" | "HeaderRegexp" | "Headers" | "HeadersRegexp" => {
            if args.len() != 2 {
                arity(false)?;
            }
            nonempty(&args[0])?;
            let header = header_name(&args[0]).map_err(|m| fail(format!("{name}: {m}")))?;
            let value = if name.ends_with("Regexp") {
                nonempty(&args[1])?;
                ValueMatch::Regex(regex::check(&args[1]).map_err(|m| fail(format!("{name}: {m}")))?)
            } else if args[1].is_empty() && name == "Headers" {
                ValueMatch::Present
            } else {
                nonempty(&args[1])?;
                checks::header_value(&args[1])
                    .map_err(|m| fail(format!("{name}: the value {m}")))?;
                ValueMatch::Exact(args[1].clone())
            };
            Ok(located(Leaf::Header {
                name: header,
                value,
            }))
        }
        "Query" | "QueryRegexp" if syntax == Syntax::V3 => {
            nonempty(&args[0])?;
            let key = query_key(&args[0]).map_err(|m| fail(format!("{name}: the key {m}")))?;
            let value = match (name, args.get(1)) {
                (_, None) => ValueMatch::Exact(String::new()),
                ("Query", Some(v)) => {
                    nonempty(v)?;
                    ValueMatch::Exact(
                        query_text(v).map_err(|m| fail(format!("{name}: the value {m}")))?,
                    )
                }
                (_, Some(v)) => {
                    nonempty(v)?;
                    ValueMatch::Regex(regex::check(v).map_err(|m| fail(format!("{name}: {m}")))?)
                }
            };
            Ok(located(Leaf::Query { key, value }))
        }
        "Query" => {
            let mut all = Vec::new();
            for arg in args {
                let Some((k, v)) = arg.split_once('=') else {
                    return Err(fail(format!(
                        "Query: {arg:?} has no '=' (v2 writes key=value)"
                    )));
                };
                nonempty(k)?;
                let key = query_key(k).map_err(|m| fail(format!("Query: the key {m}")))?;
                let value = if v.is_empty() {
                    ValueMatch::Present
                } else if v.contains('{') {
                    let re = template(v, ".*", true).map_err(|m| fail(format!("Query: {m}")))?;
                    ValueMatch::Regex(regex::check(&re).map_err(|m| fail(format!("Query: {m}")))?)
                } else {
                    ValueMatch::Exact(
                        query_text(v).map_err(|m| fail(format!("Query: the value {m}")))?,
                    )
                };
                all.push(located(Leaf::Query { key, value }));
            }
            Ok(if all.len() == 1 {
                all.remove(0)
            } else {
                Expr::And(all)
            })
        }
        _ => Ok(any_of(
            args.iter()
                .map(|a| one(a).map(located))
                .collect::<Result<_, _>>()?,
        )),
    }
}

/// A `Host`/`HostSNI` argument: `*` and `*.name` (v3 only), else a DNS name (a trailing dot is
/// tolerated, as Traefik does). IP addresses are refused: Sluice assigns hosts by DNS name.
fn host(arg: &str, v3: bool) -> Result<HostName, String> {
    if !arg.is_ascii() {
        return Err(format!(
            "{arg:?} is not ASCII; write international names in punycode"
        ));
    }
    let name = arg.strip_suffix('.').unwrap_or(arg);
    if v3 && name == "*" {
        return Ok(HostName::Any);
    }
    if let Some(parent) = name.strip_prefix("*.").filter(|_| v3) {
        return checks::dns_name(parent)
            .map(HostName::OneLabelUnder)
            .map_err(|m| format!("{arg:?}: {m}"));
    }
    checks::dns_name(name)
        .map(HostName::Exact)
        .map_err(|m| format!("{arg:?}: {m}"))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn header_name(arg: &str) -> Result<String, String> {
    if arg.len() > super::MAX_NAME_LEN {
        return Err(format!(
            "a header name is at most {} bytes long",
            super::MAX_NAME_LEN
        ));
    }
    if !arg.bytes().all(is_tchar) {
        return Err(format!("{arg:?} is not a header name"));
    }
    let lower = arg.to_ascii_lowercase();
    if lower == "host" {
        // Go moves Host out of the header map: Traefik never matches it as a header.
        return Err(
            "the Host header is matched with Host() or HostRegexp(), not as a header".into(),
        );
    }
    Ok(lower)
}

/// Query keys and values are matched as written: only characters that mean the same encoded or
/// not, so that Traefik's decoding and Envoy's comparison agree.
fn query_text(arg: &str) -> Result<String, String> {
    match arg
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~!$'()*,;:@/?".contains(*c)))
    {
        Some(c) => Err(format!(
            "contains {c:?}; only letters, digits and -._~!$'()*,;:@/? are supported"
        )),
        None => Ok(arg.to_owned()),
    }
}

/// A query key: [`query_text`], at most [`super::MAX_NAME_LEN`] bytes.
fn query_key(arg: &str) -> Result<String, String> {
    if arg.len() > super::MAX_NAME_LEN {
        return Err(format!("is longer than {} bytes", super::MAX_NAME_LEN));
    }
    query_text(arg)
}

/// An IP or CIDR, host bits cleared.
pub fn cidr(arg: &str) -> Result<Cidr, String> {
    let (ip, len) = match arg.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (arg, None),
    };
    let addr: IpAddr = ip
        .parse()
        .map_err(|_| format!("{arg:?} is not an IP address or CIDR"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => max,
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|l_| *l_ <= max && !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{arg:?}: prefix length must be 0 to {max}"))?,
    };
    let addr = match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    };
    Ok(Cidr { addr, prefix_len })
}

/// A gorilla/mux template (`{sub:[a-z]+}.example.com`) as a regex: literal parts escaped,
/// `{name}` as `default`, `{name:re}` as `(?:re)`; anchored at the start, and at the end when
/// `to_end`.
/// The wildcard parent a `HostSNIRegexp()` argument provably stays one label under, read as
/// the served rule reads it (`syntax`: a v3 pattern or a v2 template), if it parses; for the
/// lenient claims of a refused IngressRouteTCP (`dag::traefik::refused_hosts`).
pub fn sni_regexp_parent(arg: &str, syntax: Syntax) -> Option<String> {
    let source = match syntax {
        Syntax::V3 => arg.to_owned(),
        Syntax::V2 => template(arg, "[^.]+", true).ok()?,
    };
    regex::check(&source).ok()?;
    regex::one_label_parent(&regex::parse(&source).ok()?)
}

fn template(t: &str, default: &str, to_end: bool) -> Result<String, String> {
    let mut out = String::from("^");
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        out.push_str(&regex_syntax::escape(&rest[..open]));
        let body = &rest[open + 1..];
        let mut level = 1usize;
        let mut close = None;
        for (i, c) in body.char_indices() {
            match c {
                '{' => level += 1,
                '}' => {
                    level -= 1;
                    if level == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            return Err(format!("unbalanced braces in the template {t:?}"));
        };
        let var = &body[..close];
        match var.split_once(':') {
            Some((_, re)) if !re.is_empty() => {
                out.push_str("(?:");
                out.push_str(re);
                out.push(')');
            }
            Some(_) => return Err(format!("empty pattern in the template {t:?}")),
            None => out.push_str(default),
        }
        rest = &body[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unbalanced braces in the template {t:?}"));
    }
    out.push_str(&regex_syntax::escape(rest));
    if to_end {
        out.push('$');
    }
    Ok(out)
}
