//! The hosts a refused Traefik root still claims, so that it keeps a dated place in each name's
//! line while this version refuses it (README "Multi-tenant security").
//!
//! Why. A root this version refuses while parsing (a matcher or a field not served yet) would
//! otherwise claim nothing, and a later version that serves it would make it a claimant at its
//! first build, ordered by `creationTimestamp`: an object refused since 2024 would take a name
//! another tenant has served since 2025 at that upgrade. So a refused root claims what its
//! rules name, read leniently: the arguments of `Host()` (IngressRoute) or `HostSNI()`
//! (IngressRouteTCP) calls that are valid names (exact names, or `*.parent` wildcards as the
//! served rules claim them), wherever the call stands in the rule except under a `!`. Nothing
//! comes from a rule that does not parse as a rule (calls with string arguments joined by `&&`,
//! `||`, `!` and parentheses), nor from an object that does not decode or stands in a namespace
//! that may not hold roots. The catch-all `*` (rules without a host) is not claimed: what a
//! rule whose matchers are unknown would match cannot be told.
//!
//! The holder of a name is its oldest claimant, refused or not (as for a root refused for a
//! missing Service): while it is refused the name is served by nobody (held, answering 404
//! when an open host is served), and younger claimants are refused naming it as invalid.
//!
//! Pure and bounded: `rule::parse` bounds the rule's length, nesting and calls.

use std::collections::BTreeSet;

use super::Root;
use super::hosts;
use super::tcp::TcpRoot;
use crate::dag::select::Selection;
use crate::traefik::matches::HostMatch;
use crate::traefik::rule::{Call, Expr, parse};

/// The hosts the IngressRoute `root` claims, and whether it is refused (then read leniently).
pub(in crate::dag) fn of_route(sel: &Selection, root: &Root<'_>) -> (BTreeSet<String>, bool) {
    match &root.parsed {
        Ok(p) => (p.hosts.clone(), false),
        Err(_) => {
            let hosts = match &root.obj.decoded {
                Ok(r) if sel.root_allowed(&root.key.namespace) => {
                    claimed(r.spec.routes.iter().map(|r| r.match_.as_str()), "Host")
                }
                _ => BTreeSet::new(),
            };
            (hosts, true)
        }
    }
}

/// The hosts the IngressRouteTCP `root` claims, and whether it is refused.
pub(in crate::dag) fn of_tcp(sel: &Selection, root: &TcpRoot<'_>) -> (BTreeSet<String>, bool) {
    match &root.parsed {
        Ok(p) => (p.hosts.keys().cloned().collect(), false),
        Err(_) => {
            let hosts = match &root.obj.decoded {
                Ok(r) if sel.root_allowed(&root.key.namespace) => {
                    claimed(r.spec.routes.iter().map(|r| r.match_.as_str()), "HostSNI")
                }
                _ => BTreeSet::new(),
            };
            (hosts, true)
        }
    }
}

/// The names the rules `rules` claim through calls named `call` (`Host` or `HostSNI`).
pub fn claimed<'a>(rules: impl IntoIterator<Item = &'a str>, call: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in rules {
        if let Ok(expr) = parse(rule) {
            collect(&expr, call, false, &mut out);
        }
    }
    out
}

/// Whether the IngressRouteTCP `root` claims through `HostSNIRegexp()`, which versions before
/// this one refused and claimed nothing with (`Claimant::late`): a call of that name anywhere
/// in its rules but under a `!`, in rules that parse as rules.
pub(in crate::dag) fn late_tcp(root: &TcpRoot<'_>) -> bool {
    let Ok(route) = &root.obj.decoded else {
        return false;
    };
    route.spec.routes.iter().any(|r| {
        parse(&r.match_).is_ok_and(|expr| {
            let mut found = false;
            mentions(&expr, "HostSNIRegexp", false, &mut found);
            found
        })
    })
}

fn mentions(expr: &Expr<Call>, call: &str, negated: bool, found: &mut bool) {
    match expr {
        Expr::Leaf(c) => *found |= !negated && c.name.eq_ignore_ascii_case(call),
        Expr::Not(inner) => mentions(inner, call, !negated, found),
        Expr::And(parts) | Expr::Or(parts) => {
            for p in parts {
                mentions(p, call, negated, found);
            }
        }
    }
}

fn collect(expr: &Expr<Call>, call: &str, negated: bool, out: &mut BTreeSet<String>) {
    match expr {
        Expr::Leaf(c) => {
            if negated || !c.name.eq_ignore_ascii_case(call) {
                return;
            }
            out.extend(c.args.iter().filter_map(|a| name(a)));
        }
        Expr::Not(inner) => collect(inner, call, !negated, out),
        Expr::And(parts) | Expr::Or(parts) => {
            for p in parts {
                collect(p, call, negated, out);
            }
        }
    }
}

/// The name one host argument claims, when it is a valid exact name or wildcard.
fn name(arg: &str) -> Option<String> {
    let arg = arg.trim();
    if arg == hosts::CATCH_ALL {
        return None;
    }
    let host = match arg.strip_prefix("*.") {
        Some(parent) => HostMatch::OneLabelUnder(parent.to_ascii_lowercase()),
        None => HostMatch::Exact(arg.to_ascii_lowercase()),
    };
    hosts::claim(&host, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn host_arguments_of_unknown_rules_are_claimed() {
        let rules = [
            "Host(`API.example.com`) && SomeFutureMatcher(`x`, `y`)",
            "(Host(`b.example.com`) || Host(\"c.example.com\")) && Later()",
            "Host(`d.example.com`, `e.example.com`)",
            "Host(`*.w.example.com`) && Unknown(`z`)",
        ];
        assert_eq!(
            claimed(rules, "Host"),
            set(&[
                "*.w.example.com",
                "api.example.com",
                "b.example.com",
                "c.example.com",
                "d.example.com",
                "e.example.com",
            ])
        );
        let tcp = ["HostSNI(`db.example.com`) && FutureTCP(`x`)"];
        assert_eq!(claimed(tcp, "HostSNI"), set(&["db.example.com"]));
        // The other dialect's call claims nothing.
        assert!(claimed(tcp, "Host").is_empty());
    }

    #[test]
    fn nothing_from_negations_invalid_names_or_rules_that_do_not_parse() {
        let rules = [
            "!Host(`neg.example.com`) && Future()",
            "!(Host(`neg2.example.com`) || Path(`/`))",
            "!!Host(`twice.example.com`)",
            "Host(`*`) && Future()",
            "Host(`10.0.0.1`) || Host(`a.example.com.`) || Host(`x:80`) || Host(`*.com`)",
            "Host(`bad..example.com`) || Host(`\u{e9}.example.com`)",
            "Host(`unterminated.example.com) && Future()",
            "Host(`p.example.com`) &&& Future()",
            "Host(`q.example.com`",
        ];
        assert_eq!(claimed(rules, "Host"), set(&["twice.example.com"]));
    }

    #[test]
    fn bounded_on_hostile_rules() {
        let deep = format!(
            "{}Host(`a.example.com`){}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(claimed([deep.as_str()], "Host").is_empty());
        let long = format!("Host(`{}.example.com`)", "a".repeat(100_000));
        assert!(claimed([long.as_str()], "Host").is_empty());
    }
}
