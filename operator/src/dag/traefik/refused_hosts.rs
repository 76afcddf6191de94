//! The hosts a refused Traefik root still claims, so that it keeps a dated place in each name's
//! line while this version refuses it (README "Multi-tenant security").
//!
//! Why. A root this version refuses while parsing (a matcher or a field not served yet) would
//! otherwise claim nothing, and a later version that serves it would make it a claimant at its
//! first build, ordered by `creationTimestamp`: an object refused since 2024 would take a name
//! another tenant has served since 2025 at that upgrade. So a refused root claims what its
//! rules name, read leniently: the arguments of `Host()` (IngressRoute) or `HostSNI()`
//! (IngressRouteTCP) calls that are valid names (exact names, or `*.parent` wildcards as the
//! served rules claim them), and the `*.parent` of an IngressRouteTCP's `HostSNIRegexp()`
//! pattern proved to stay one label under `parent`, wherever the call stands in the rule
//! except under a `!`. Nothing
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
use crate::traefik::matcher::{Syntax, sni_regexp_parent};
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
                    let mut hosts =
                        claimed(r.spec.routes.iter().map(|r| r.match_.as_str()), "HostSNI");
                    for route in &r.spec.routes {
                        let (syntax, _) = Syntax::select(route.syntax.as_deref(), Syntax::V3);
                        hosts.extend(regexp_wildcards(&route.match_, syntax));
                    }
                    hosts
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

/// The wildcards `*.parent` the `HostSNIRegexp()` calls of `rule` claim when served (a pattern
/// proved to stay one label under `parent`), wherever the call stands but under a `!`. A
/// pattern that could match any name would claim the catch-all, which lenient claims never
/// take (see the module documentation).
fn regexp_wildcards(rule: &str, syntax: Syntax) -> BTreeSet<String> {
    let mut args = BTreeSet::new();
    if let Ok(expr) = parse(rule) {
        collect_args(&expr, "HostSNIRegexp", false, &mut args);
    }
    (args.iter())
        .filter_map(|a| sni_regexp_parent(a, syntax))
        .filter_map(|p| hosts::claim(&HostMatch::OneLabelUnder(p), false).ok())
        .collect()
}

fn collect_args(expr: &Expr<Call>, call: &str, negated: bool, out: &mut BTreeSet<String>) {
    match expr {
        Expr::Leaf(c) => {
            if !negated && c.name.eq_ignore_ascii_case(call) {
                out.extend(c.args.iter().cloned());
            }
        }
        Expr::Not(inner) => collect_args(inner, call, !negated, out),
        Expr::And(parts) | Expr::Or(parts) => {
            for p in parts {
                collect_args(p, call, negated, out);
            }
        }
    }
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

    /// review 5 R5.7: a refused IngressRouteTCP keeps its place on the wildcard its
    /// `HostSNIRegexp()` would claim when served, so a later version serving it finds it there.
    #[test]
    fn a_pattern_proved_under_a_parent_claims_its_wildcard_never_the_catch_all() {
        let v3 = |rule: &str| regexp_wildcards(rule, Syntax::V3);
        assert_eq!(
            v3("HostSNIRegexp(`^[a-z0-9-]+\\.db\\.example\\.com$`) && FutureTcp(`x`)"),
            set(&["*.db.example.com"])
        );
        assert_eq!(
            regexp_wildcards("HostSNIRegexp(`{sub:[a-z]+}.db.example.com`)", Syntax::V2),
            set(&["*.db.example.com"])
        );
        // Could match any name (the catch-all when served): nothing; negated: nothing.
        assert!(v3("HostSNIRegexp(`.+`) && FutureTcp(`x`)").is_empty());
        assert!(v3("HostSNIRegexp(`^[a-z]+\\.db\\.example\\.com`)").is_empty());
        assert!(v3("!HostSNIRegexp(`^[a-z]+\\.db\\.example\\.com$`)").is_empty());
        assert!(v3("HostSNIRegexp(`^[a-z]+\\.com$`)").is_empty());
        assert!(v3("HostSNIRegexp(`(`)").is_empty());
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
