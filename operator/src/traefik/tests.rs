//! Table tests of rule translation (examples of the Traefik reference) and the fuzz-style
//! robustness tests of the parser.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::matcher::{Cidr, Syntax};
use super::matches::{
    HeaderMatch, HostMatch, HttpMatch, MAX_ALTERNATIVES, PathMatch, QueryMatch, StringMatch,
    http_rule,
};
use super::regex::{MAX_COST, MAX_PATTERN};
use super::rule::{MAX_ARGS, MAX_CALLS, MAX_DEPTH, MAX_RULE};
use super::tcp::{SniMatch, tcp_rule};
use super::work::measure;
use sluice_e2e::rng::Rng;

fn one(rule: &str) -> HttpMatch {
    let r = http_rule(rule, Syntax::V3, None).unwrap_or_else(|e| panic!("{rule}: {e}"));
    assert_eq!(r.matches.len(), 1, "{rule}: {:?}", r.matches);
    r.matches.into_iter().next().unwrap()
}

fn refused(rule: &str, syntax: Syntax) -> String {
    match http_rule(rule, syntax, None) {
        Ok(r) => panic!("{rule} accepted: {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn header(name: &str, value: StringMatch, invert: bool) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        value,
        invert,
    }
}

#[test]
fn host_regexp_must_match_the_same_names_folded() {
    // Envoy runs `(?i)` and the pattern on the host; Traefik the pattern on the lowered host.
    let m = one("HostRegexp(`^[^.]+\\.example\\.com$`)");
    assert_eq!(m.headers.len(), 1, "{m:?}");
    for rule in [
        "HostRegexp(`^[A-Z]+\\.example\\.com$`)",
        // review 6 R6.1: folded before it is negated, the class leaves out a-z too in Envoy.
        "HostRegexp(`^[^A-Z.]+\\.example\\.com$`)",
        "HostRegexp(`^\\P{Lu}+\\.example\\.com$`)",
        "HostRegexp(`(?-i)^[a-z]+\\.example\\.com$`)",
    ] {
        let e = refused(rule, Syntax::V3);
        assert!(e.contains("write it in lower case"), "{rule}: {e}");
    }
}

#[test]
fn host_and_path() {
    let m = one("Host(`A.Example.com.`) && PathPrefix(`/api`)");
    assert_eq!(m.host, HostMatch::Exact("a.example.com".into()));
    assert_eq!(m.path, PathMatch::Prefix("/api".into()));
    let m = one("Path(`/x`)");
    assert_eq!(m.host, HostMatch::Any, "no Host applies to every host");
    assert_eq!(m.path, PathMatch::Exact("/x".into()));
    // Consistent literal paths collapse; contradictory ones never match.
    assert_eq!(
        one("PathPrefix(`/a`) && PathPrefix(`/ab`) && Path(`/abc`)").path,
        PathMatch::Exact("/abc".into())
    );
    assert!(refused("Path(`/a`) && Path(`/b`)", Syntax::V3).contains("never match"));
    assert!(refused("Host(`a.com`) && Host(`b.com`)", Syntax::V3).contains("never match"));
}

#[test]
fn regexes_search_like_traefik() {
    let m = one("PathRegexp(`^/api/v[0-9]+`)");
    assert_eq!(
        m.path,
        PathMatch::Regex("(?s:.*)(?:^/api/v[0-9]+)(?s:.*)".into())
    );
    let m = one("HostRegexp(`^[a-z]+\\.example\\.com$`)");
    assert_eq!(m.host, HostMatch::Any);
    assert_eq!(
        m.headers,
        vec![header(
            ":authority",
            StringMatch::Regex("(?i)^[a-z]+\\.example\\.com$".into()),
            false
        )]
    );
    assert!(refused("HostRegexp(`^Example`)", Syntax::V3).contains("lower case"));
    assert!(refused("PathRegexp(`[a-z&&b]`)", Syntax::V3).contains("byte 1 of the regex"));
}

#[test]
fn headers_query_method_client_ip() {
    let m = one(
        "Header(`X-Env`, `prod`) && !HeaderRegexp(`User-Agent`, `bot`) && Method(`get`) && \
         Query(`mobile`, `true`) && QueryRegexp(`id`, `^[0-9]+$`) && ClientIP(`10.1.2.3/8`)",
    );
    assert_eq!(
        m.headers,
        vec![
            header("x-env", StringMatch::Exact("prod".into()), false),
            header(
                "user-agent",
                StringMatch::Regex("(?s:.*)(?:bot)(?s:.*)".into()),
                true
            ),
            header(":method", StringMatch::Exact("GET".into()), false),
        ]
    );
    assert_eq!(
        m.query,
        vec![
            QueryMatch {
                key: "mobile".into(),
                value: StringMatch::Exact("true".into())
            },
            QueryMatch {
                key: "id".into(),
                value: StringMatch::Regex("^[0-9]+$".into())
            },
        ]
    );
    assert_eq!(
        m.source_ips,
        vec![Cidr {
            addr: "10.0.0.0".parse().unwrap(),
            prefix_len: 8
        }]
    );
    // One-argument Query: the value must be empty, not merely present.
    assert_eq!(
        one("Query(`debug`)").query[0].value,
        StringMatch::Exact(String::new())
    );
    assert!(refused("Header(`Host`, `a`)", Syntax::V3).contains("Host()"));
    assert!(refused("Query(`a`, ``)", Syntax::V3).contains("empty argument"));
    assert!(refused("Header(`X-A`, `a\nb`)", Syntax::V3).contains("visible"));
}

#[test]
fn disjunctions_become_one_route_each() {
    let r = http_rule(
        "(Host(`a.com`) || Host(`b.com`)) && (Path(`/x`) || PathPrefix(`/y`))",
        Syntax::V3,
        None,
    )
    .unwrap();
    assert_eq!(r.matches.len(), 4);
    // De Morgan: !(A || B) is !A && !B. A negated pattern that matches the empty value is
    // refused: Envoy reads a missing header as empty under negation (Traefik: no value, so the
    // negation holds), which would then not match.
    for pattern in ["a*", "^$", ".*", "x|"] {
        let rule = format!("!HeaderRegexp(`X-A`, `{pattern}`)");
        assert!(refused(&rule, Syntax::V3).contains("empty value"), "{rule}");
        // Not negated, it is served.
        let _ = one(&rule[1..]);
    }
    let _ =
        one("!HeaderRegexp(`X-A`, `^a+$`) && !HeaderRegexp(`X-C`, `\\b`) && !Header(`X-B`, `b`)");
    let m = one("!(Method(`POST`) || Header(`X-A`, `1`))");
    assert!(m.headers.iter().all(|h| h.invert));
    assert_eq!(m.headers.len(), 2);
    // !!x is x.
    assert_eq!(one("!!Path(`/x`)").path, PathMatch::Exact("/x".into()));
}

#[test]
fn what_envoy_cannot_express_is_refused_naming_the_part() {
    for (rule, part) in [
        ("!Host(`a.com`)", "!Host(`a.com`)"),
        ("Host(`a.com`) && !Path(`/admin`)", "!Path(`/admin`)"),
        ("!PathPrefix(`/a`)", "!PathPrefix(`/a`)"),
        ("!Query(`a`, `b`)", "!Query(`a`, `b`)"),
        ("PathRegexp(`a`) && PathPrefix(`/b`)", "PathRegexp(`a`)"),
    ] {
        let e = refused(rule, Syntax::V3);
        assert!(e.contains(part), "{rule}: {e}");
    }
    // 2^7 alternatives.
    let blowup = (0..7)
        .map(|i| format!("(Path(`/{i}`) || Method(`M{i}`))"))
        .collect::<Vec<_>>()
        .join(" && ");
    assert!(refused(&blowup, Syntax::V3).contains(&MAX_ALTERNATIVES.to_string()));
}

#[test]
fn client_ip_is_a_condition_and_its_negation_an_inverted_one() {
    let m = one("ClientIP(`10.1.2.3/8`) && !ClientIP(`10.9.0.0/16`) && ClientIP(`10.0.0.0/8`)");
    let show = |v: &[Cidr]| {
        v.iter()
            .map(|c| format!("{}/{}", c.addr, c.prefix_len))
            .collect::<Vec<_>>()
    };
    assert_eq!(show(&m.source_ips), ["10.0.0.0/8"]);
    assert_eq!(show(&m.not_source_ips), ["10.9.0.0/16"]);
    // De Morgan: two alternatives, each with one inverted network.
    let r = http_rule(
        "!(ClientIP(`10.0.0.0/8`) && ClientIP(`::1`))",
        Syntax::V3,
        None,
    )
    .unwrap();
    assert_eq!(r.matches.len(), 2);
    assert!(r.matches.iter().all(|m| m.source_ips.is_empty()));
    assert_eq!(show(&r.matches[1].not_source_ips), ["::1/128"]);
}

#[test]
fn host_wildcards_and_catch_all() {
    let m = one("Host(`*.example.com`)");
    assert_eq!(m.host, HostMatch::OneLabelUnder("example.com".into()));
    assert_eq!(
        m.headers[0].value,
        StringMatch::Regex("(?i)[^.:]+\\.example\\.com\\.?(?::[0-9]*)?".into())
    );
    assert_eq!(
        one("Host(`*.example.com`) && Host(`a.example.com`)").host,
        HostMatch::Exact("a.example.com".into())
    );
    assert!(
        refused(
            "Host(`*.example.com`) && Host(`a.b.example.com`)",
            Syntax::V3
        )
        .contains("never")
    );
    assert_eq!(one("Host(`*`)").host, HostMatch::Any);
    assert!(refused("Host(`10.0.0.1`)", Syntax::V3).contains("IP address"));
    assert!(refused("Host(`bücher.de`)", Syntax::V3).contains("punycode"));
}

#[test]
fn v3_refuses_v2_forms_and_v2_reads_them() {
    assert!(refused("Host(`a.com`, `b.com`)", Syntax::V3).contains("number of parameters"));
    assert!(refused("Headers(`a`, `b`)", Syntax::V3).contains("not a v3 matcher"));
    assert!(refused("PathRegexp(`a`)", Syntax::V2).contains("not a v2 matcher"));
    let r = http_rule("Host(`a.com`, `b.com`)", Syntax::V2, None).unwrap();
    assert_eq!(r.matches.len(), 2);
    let m = &http_rule("HostRegexp(`{sub:[a-z]+}.example.com`)", Syntax::V2, None)
        .unwrap()
        .matches[0];
    assert_eq!(
        m.headers[0].value,
        StringMatch::Regex("(?i)^(?:[a-z]+)\\.example\\.com$".into())
    );
    let m = &http_rule("Path(`/user/{id:[0-9]+}`)", Syntax::V2, None)
        .unwrap()
        .matches[0];
    assert_eq!(m.path, PathMatch::Regex("^/user/(?:[0-9]+)$".into()));
    let m = &http_rule("Query(`a=1`, `b=`) && Headers(`X-A`, ``)", Syntax::V2, None)
        .unwrap()
        .matches[0];
    assert_eq!(m.query[1].value, StringMatch::Present);
    assert_eq!(m.headers[0].value, StringMatch::Present);
    assert!(refused("Query(`a`)", Syntax::V2).contains("no '='"));
    // Matcher names: as written, lower, upper or capitalised only.
    for ok in ["pathprefix(`/`)", "PATHPREFIX(`/`)", "Pathprefix(`/`)"] {
        assert!(http_rule(ok, Syntax::V3, None).is_ok(), "{ok}");
    }
    assert!(refused("pathPrefix(`/`)", Syntax::V3).contains("not a v3 matcher"));
}

#[test]
fn syntax_selection() {
    assert_eq!(Syntax::select(None, Syntax::V3), (Syntax::V3, false));
    assert_eq!(Syntax::select(Some("v2"), Syntax::V3), (Syntax::V2, false));
    assert_eq!(Syntax::select(Some("v3"), Syntax::V2), (Syntax::V3, false));
    assert_eq!(Syntax::select(Some("v4"), Syntax::V2), (Syntax::V3, true));
}

#[test]
fn priority_is_the_rule_length_unless_given() {
    // The reference's example: the longer rule outranks the more specific one.
    let a = "Host(`a.example.com`) && PathPrefix(`/`)";
    let b = "Host(`a.example.com`) && Path(`/x`)";
    let pa = http_rule(a, Syntax::V3, None).unwrap().priority;
    let pb = http_rule(b, Syntax::V3, None).unwrap().priority;
    assert_eq!((pa, pb), (40, 35));
    assert_eq!(http_rule(a, Syntax::V3, Some(0)).unwrap().priority, 40);
    assert_eq!(http_rule(a, Syntax::V3, Some(-5)).unwrap().priority, -5);
    assert!(http_rule(a, Syntax::V3, Some(i64::MAX)).is_err());
}

#[test]
fn tcp_rules() {
    let r = tcp_rule("HostSNI(`*`)", Syntax::V3, None).unwrap();
    assert_eq!((r.priority, &r.matches[0].sni), (-1, &SniMatch::Any));
    assert_eq!(
        tcp_rule("HostSNI(`*`)", Syntax::V3, Some(5))
            .unwrap()
            .priority,
        5
    );
    let r = tcp_rule(
        "HostSNI(`db.example.com`) && ClientIP(`10.0.0.0/8`)",
        Syntax::V3,
        None,
    )
    .unwrap();
    assert_eq!(r.matches[0].sni, SniMatch::Exact("db.example.com".into()));
    assert_eq!(r.matches[0].source_ips.len(), 1);
    let r = tcp_rule("HostSNI(`a.com`, `b.com`)", Syntax::V2, None).unwrap();
    assert_eq!(r.matches.len(), 2);
    assert!(tcp_rule("!HostSNI(`a.com`)", Syntax::V3, None).is_err_and(|e| e.offset == 1));
    assert!(tcp_rule("Host(`a.com`)", Syntax::V3, None).is_err());
    assert!(tcp_rule("ALPN(`h2`) && ALPN(`http/1.1`)", Syntax::V3, None).is_err());
    assert!(
        tcp_rule(
            "ClientIP(`10.0.0.0/8`) && ClientIP(`11.0.0.0/8`)",
            Syntax::V3,
            None
        )
        .is_err()
    );
    let r = tcp_rule(
        "ClientIP(`10.0.0.0/8`) && ClientIP(`10.1.0.0/16`)",
        Syntax::V3,
        None,
    )
    .unwrap();
    assert_eq!(r.matches[0].source_ips[0].prefix_len, 16);
}

#[test]
fn tcp_host_sni_regexp_rules() {
    let parent = |rule: &str, syntax: Syntax| -> Vec<Option<String>> {
        tcp_rule(rule, syntax, None)
            .unwrap()
            .matches
            .into_iter()
            .map(|m| match m.sni {
                SniMatch::Regex(r) => r.parent,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        parent("HostSNIRegexp(`^[a-z]+\\.db\\.example\\.com$`)", Syntax::V3),
        [Some("db.example.com".to_owned())]
    );
    assert_eq!(parent("HostSNIRegexp(`db`)", Syntax::V3), [None]);
    // v2: anchored templates, several arguments ORed.
    assert_eq!(
        parent(
            "HostSNIRegexp(`{sub:[a-z]+}.db.example.com`, `{x}.other.org`)",
            Syntax::V2
        ),
        [
            Some("db.example.com".to_owned()),
            Some("other.org".to_owned())
        ]
    );
    // With an exact name: the name where the pattern's search finds it.
    let r = tcp_rule(
        "(HostSNI(`pg.a.com`) || HostSNI(`my.a.com`)) && HostSNIRegexp(`^pg`)",
        Syntax::V3,
        None,
    )
    .unwrap();
    assert_eq!(r.matches.len(), 1);
    assert_eq!(r.matches[0].sni, SniMatch::Exact("pg.a.com".into()));
    assert!(
        tcp_rule(
            "HostSNI(`my.a.com`) && HostSNIRegexp(`^pg`)",
            Syntax::V3,
            None
        )
        .is_err()
    );
    for (rule, want) in [
        ("HostSNIRegexp(`^PG`)", "lower case"),
        ("HostSNIRegexp(`\u{e9}`)", "ASCII"),
        (
            "HostSNIRegexp(`a`) && HostSNIRegexp(`b`)",
            "cannot be expressed",
        ),
        ("!HostSNIRegexp(`a`)", "negated"),
    ] {
        let e = tcp_rule(rule, Syntax::V3, None).unwrap_err();
        assert!(e.message.contains(want), "{rule}: {}", e.message);
    }
}

const SEEDS: &[&str] = &[
    "Host(`a.example.com`) && PathPrefix(`/api`)",
    "(Host(`a.com`) || HostRegexp(`^[a-z]+\\.b\\.com$`)) && !Method(`POST`)",
    "Header(`X-A`, \"v\\x41\") && Query(`k`) && ClientIP(`::1/64`)",
    "PathRegexp(`^/(a|b){1,3}$`) || QueryRegexp(`id`, `[0-9]+`)",
    "Host(`a.com`, `b.com`) && Path(`/u/{id:[0-9]+}`) && Query(`a=b`)",
    "HostSNI(`*`) || HostSNIRegexp(`^db`) && ALPN(`h2`)",
];
const PIECES: &[&str] = &[
    "(",
    ")",
    "!",
    "&&",
    "||",
    ",",
    "`",
    "\"",
    "\\",
    "Host",
    "Path",
    "PathRegexp",
    "Header",
    "Query",
    "`(`",
    "`[`",
    "`{`",
    "{a:",
    "}",
    " ",
    "\u{e9}",
    "\0",
    "\\x",
    "\\u12",
    "*",
    "`/`",
];

fn exercise(rule: &str) {
    for syntax in [Syntax::V3, Syntax::V2] {
        let (_, steps) = measure(|| http_rule(rule, syntax, None));
        assert!(
            steps <= work_bound(rule),
            "{rule:?} ({syntax:?}): {steps} steps, bound {}",
            work_bound(rule)
        );
        let _ = tcp_rule(rule, syntax, None);
    }
}

/// Steps (`super::work`) an HTTP rule may cost per byte. Lexing, parsing, checking arguments
/// and patterns walk each byte a bounded number of times; the normal form copies each literal
/// into at most MAX_ALTERNATIVES conjuncts once per `&&` it sits under, and the parser bounds
/// that nesting by MAX_DEPTH. Each alternative is also compared with the earlier ones (at most
/// MAX_ALTERNATIVES² comparisons). A bound of the limits, not a measurement.
const WORK_PER_BYTE: u64 = MAX_ALTERNATIVES as u64 * (MAX_DEPTH as u64 + 1);

fn work_bound(rule: &str) -> u64 {
    WORK_PER_BYTE * (rule.len() as u64 + 1) + (MAX_ALTERNATIVES as u64).pow(2)
}

/// Steps of `http_rule(rule)` under `syntax`.
fn steps(rule: &str, syntax: Syntax) -> u64 {
    measure(|| http_rule(rule, syntax, None)).1
}

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(3) {
            0 if !s.is_empty() && at < s.len() => {
                s.remove(at);
            }
            1 => {
                for (i, c) in PIECES[rng.below(PIECES.len())].chars().enumerate() {
                    s.insert(at + i, c);
                }
            }
            _ => {
                let c = char::from_u32(rng.below(0x80) as u32).unwrap_or('x');
                s.insert(at, c);
            }
        }
    }
    s.into_iter().collect()
}

fn fuzz(iterations: usize, seed: u64) {
    let mut rng = Rng(seed);
    for i in 0..iterations {
        let rule = if i % 2 == 0 {
            let seed = SEEDS[rng.below(SEEDS.len())];
            mutate(&mut rng, seed)
        } else {
            (0..rng.below(24))
                .map(|_| PIECES[rng.below(PIECES.len())])
                .collect()
        };
        exercise(&rule);
    }
}

#[test]
fn fuzzed_rules_never_panic() {
    fuzz(5000, 0x5eed_1234_abcd_ef01);
}

/// Each limit that bounds a rule's work is refused by name, and the refusal is cheap: past the
/// length limit nothing is read, past the others the parser stops where it is.
#[test]
fn each_limit_is_refused_naming_it() {
    let deep = format!(
        "{}Host(`a`){}",
        "(".repeat(MAX_DEPTH),
        ")".repeat(MAX_DEPTH)
    );
    let many = vec!["Header(`a`, `b`)"; MAX_CALLS + 1].join(" && ");
    let args = format!("Host({})", vec!["`a.b`"; MAX_ARGS + 1].join(","));
    let alternatives = (0..7)
        .map(|i| format!("(Path(`/{i}`) || Method(`M{i}`))"))
        .collect::<Vec<_>>()
        .join(" && ");
    for (rule, syntax, limit) in [
        (
            "a".repeat(MAX_RULE + 1),
            Syntax::V3,
            format!("{MAX_RULE} bytes"),
        ),
        (deep, Syntax::V3, format!("deeper than {MAX_DEPTH} levels")),
        (many, Syntax::V3, format!("more than {MAX_CALLS} matchers")),
        (args, Syntax::V2, format!("more than {MAX_ARGS} arguments")),
        (
            alternatives,
            Syntax::V3,
            format!("more than {MAX_ALTERNATIVES} alternatives"),
        ),
        (
            format!("PathRegexp(`{}`)", "a".repeat(MAX_PATTERN + 1)),
            Syntax::V3,
            format!("longer than {MAX_PATTERN} bytes"),
        ),
        (
            "PathRegexp(`(?:(?:ab|cd|ef|gh){30}){30}`)".to_owned(),
            Syntax::V3,
            format!("limit {MAX_COST}"),
        ),
        (
            "PathRegexp(`(a{1000}){1000}`)".to_owned(),
            Syntax::V3,
            "RE2's limit of 1000".to_owned(),
        ),
        (
            format!("PathRegexp(`{}a{}`)", "(".repeat(300), ")".repeat(300)),
            Syntax::V3,
            "nest".to_owned(),
        ),
    ] {
        let (result, steps) = measure(|| http_rule(&rule, syntax, None));
        let e = result.unwrap_err();
        assert!(e.message.contains(&limit), "{limit}: {e}");
        assert!(steps <= work_bound(&rule), "{limit}: {steps} steps");
    }
    // Past the length limit, not one byte is read.
    assert_eq!(steps(&"(".repeat(1 << 20), Syntax::V3), 0);
}

/// The work bound holds at the limits, for the shapes that cost most per byte: the widest
/// normal form (64 alternatives, each conjunct holding every literal) under the deepest
/// nesting of `&&`, long v2 argument lists, long strings and patterns.
#[test]
fn work_stays_within_the_bound_at_the_limits() {
    let widest = ["Method(`A`,`B`)"; 6].join(" && ");
    let mut flat = widest.clone();
    while flat.len() + 200 < MAX_RULE {
        flat.push_str(&format!(" && Query({})", vec!["`a=`"; MAX_ARGS].join(",")));
    }
    // (((widest && Q) && Q) && Q)…: every level builds its product again.
    let mut nested = widest.clone();
    for _ in 0..MAX_DEPTH - 2 {
        nested = format!("({nested}) && Query({})", vec!["`a=`"; 24].join(","));
    }
    for (rule, syntax) in [
        (flat, Syntax::V2),
        (nested, Syntax::V2),
        (
            format!("Host({})", vec!["`a.b`"; MAX_ARGS].join(",")),
            Syntax::V2,
        ),
        (
            format!("Header(`X`, `{}`)", "a".repeat(MAX_RULE - 20)),
            Syntax::V3,
        ),
        (
            vec!["PathRegexp(`[a-z]{999}`)"; 64].join(" || "),
            Syntax::V3,
        ),
        (
            vec!["!Header(`a`, `b`)"; MAX_CALLS].join(" && "),
            Syntax::V3,
        ),
    ] {
        assert!(rule.len() <= MAX_RULE);
        let steps = steps(&rule, syntax);
        assert!(
            steps <= work_bound(&rule),
            "{steps} steps for {} bytes",
            rule.len()
        );
    }
}

/// Doubling a rule at most doubles its work (with a margin for the fixed part), for every
/// shape that can grow within the limits without nesting: a quadratic step anywhere in the
/// lexer, parser, matchers or normal form would show here long before any timeout. (More
/// alternatives cost more than linearly, each compared with the earlier ones: that is the
/// bound's MAX_ALTERNATIVES² term.)
#[test]
fn work_grows_linearly_with_the_rule() {
    type Shape = fn(usize) -> (String, Syntax);
    let shapes: &[(&str, Shape, usize)] = &[
        (
            "parentheses",
            |n| {
                (
                    format!("{}Host(`a`){}", "(".repeat(n), ")".repeat(n)),
                    Syntax::V3,
                )
            },
            15,
        ),
        (
            "negations",
            |n| (format!("{}Header(`a`, `b`)", "!".repeat(n)), Syntax::V3),
            15,
        ),
        (
            "&&",
            |n| (vec!["Header(`a`, `b`)"; n].join(" && "), Syntax::V3),
            64,
        ),
        (
            "v2 Host arguments",
            |n| (format!("Host({})", vec!["`a.b`"; n].join(",")), Syntax::V2),
            32,
        ),
        (
            "v2 Query pairs",
            |n| (format!("Query({})", vec!["`a=b`"; n].join(",")), Syntax::V2),
            32,
        ),
        (
            "string",
            |n| (format!("Header(`X`, `{}`)", "a".repeat(n)), Syntax::V3),
            2000,
        ),
        (
            "quoted string",
            |n| {
                (
                    format!("Header(`X`, \"{}\")", "\\x41".repeat(n)),
                    Syntax::V3,
                )
            },
            800,
        ),
        (
            "pattern",
            |n| (format!("PathRegexp(`{}`)", "[a-z]".repeat(n)), Syntax::V3),
            100,
        ),
        (
            "template",
            |n| (format!("Path(`{}`)", "/{a:[0-9]+}".repeat(n)), Syntax::V2),
            40,
        ),
        (
            "normal form",
            |n| {
                (
                    format!(
                        "{} && {}",
                        ["Method(`A`,`B`)"; 6].join(" && "),
                        vec!["Header(`a`, `b`)"; n].join(" && ")
                    ),
                    Syntax::V2,
                )
            },
            50,
        ),
    ];
    for (name, shape, n) in shapes {
        let (small, syntax) = shape(*n);
        let (large, _) = shape(2 * n);
        assert!(large.len() <= MAX_RULE, "{name}");
        let (a, b) = (steps(&small, syntax), steps(&large, syntax));
        assert!(a > 0, "{name}");
        // Linear work doubles; quadratic work quadruples.
        assert!(
            b * 2 <= a * 5,
            "{name}: {a} steps for {} bytes, {b} for {}",
            small.len(),
            large.len()
        );
    }
}

#[test]
fn hostile_shapes_are_refused_quickly() {
    // Deep nesting, long operator chains, huge strings, many alternatives: each is refused
    // by a limit (the work per rule is bounded by the rule length limit).
    for rule in [
        "(".repeat(100_000),
        "!".repeat(100_000),
        format!("{}Host(`a`)", "!(".repeat(5000)),
        vec!["Path(`/a`)"; 5000].join(" || "),
        vec!["(Path(`/a`) || Path(`/b`))"; 300].join(" && "),
        format!("Host(`{}`)", "a".repeat(1 << 20)),
        "PathRegexp(`(a{1000}){1000}`)".to_owned(),
    ] {
        assert!(http_rule(&rule, Syntax::V3, None).is_err());
    }
}

#[test]
#[ignore = "long run: cargo test -p sluice --lib traefik::tests::fuzz_long -- --ignored"]
fn fuzz_long() {
    for seed in 1..=20u64 {
        fuzz(50_000, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}
