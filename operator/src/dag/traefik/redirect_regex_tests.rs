//! `redirectRegex`: the regexes and replacements that decompose into Envoy's redirect, and the
//! refusals naming the part that does not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::redirect_regex::{RegexRedirect, plan};
use crate::dag::model::*;

fn served(regex: &str, replacement: &str, tls: bool) -> RegexRedirect {
    plan(regex, replacement, false, tls)
        .unwrap_or_else(|e| panic!("{regex} -> {replacement}: {e}"))
        .unwrap_or_else(|| panic!("{regex} -> {replacement}: never applies"))
}

fn cond(name: &str, value: ValueCondition, invert: bool) -> HeaderCondition {
    HeaderCondition {
        name: name.to_owned(),
        value,
        invert,
    }
}

#[test]
fn decomposable_redirects_are_served() {
    // Host moved, path and query kept.
    let r = served(
        r"^https?://old\.example\.com/(.*)",
        "https://new.example.com/${1}",
        false,
    );
    assert_eq!(
        (r.scheme.as_str(), r.host.as_str(), r.port),
        ("https", "new.example.com", None)
    );
    assert_eq!(
        r.path,
        RegexRewrite {
            pattern: "^/(?:)(.*)$".into(),
            substitution: "/\\1".into()
        }
    );
    assert_eq!(
        r.conditions,
        [
            cond(
                ":authority",
                ValueCondition::Regex(r"old\.example\.com".into()),
                false
            ),
            cond(":path", ValueCondition::Regex("/(?:)(?:.*)".into()), false),
        ]
    );

    // A path prefix moved, on another port; $1 then ${2} (the rest, with the query) last.
    let r = served(
        r"^http://a\.example\.com/v1/(users|teams)/(.*)$",
        "http://api.example.com:8080/v2/$1/x-${2}",
        false,
    );
    assert_eq!(r.port, Some(8080));
    assert_eq!(r.path.pattern, "^/(?:v1/(users|teams)/)(.*)$");
    assert_eq!(r.path.substitution, "/v2/\\1/x-\\2");

    // End-anchored without a tail: only URLs without a query match (the :path condition
    // sees the query).
    let r = served(
        r"^https://a\.example\.com/old$",
        "https://a.example.com/new",
        true,
    );
    assert_eq!(r.path.pattern, "^/(?:old)$");
    assert_eq!(
        r.conditions[1],
        cond(":path", ValueCondition::Regex("/(?:old)".into()), false)
    );
    // Unanchored: the rest of the URL is kept after the replacement.
    let r = served(
        r"^https://a\.example\.com/old",
        "https://b.example.com/new",
        true,
    );
    assert_eq!(r.path.pattern, "^/(?:old)");
    assert_eq!(
        r.conditions[1],
        cond(
            ":path",
            ValueCondition::Regex("/(?:old)(?s:.*)".into()),
            false
        )
    );

    // www to the bare name: the same scheme and a host the regex accepts, the path kept: the
    // bare name itself must pass through (Traefik's URL comes back unchanged).
    let r = served(
        r"^https://(?:www\.)?example\.com/(.*)",
        "https://example.com/${1}",
        true,
    );
    assert_eq!(
        r.conditions[2],
        cond(
            ":authority",
            ValueCondition::Exact("example.com".into()),
            true
        )
    );
    // A scheme change always changes the URL: no such condition.
    let r = served(
        r"^http://(?:www\.)?example\.com/(.*)",
        "https://example.com/${1}",
        false,
    );
    assert_eq!(r.conditions.len(), 2);

    // `$$` is a literal dollar; `$` before a non-name is literal too (Go); `\` is escaped for
    // Envoy.
    let r = served(
        r"^http://a\.example\.com/(.*)",
        r"http://b.example.com/$$x$/\$1",
        false,
    );
    assert_eq!(r.path.substitution, r"/$x$/\\\1");

    // The other scheme: the middleware never applies.
    assert_eq!(
        plan(
            r"^https://a\.example\.com/(.*)",
            "https://b.example.com/$1",
            false,
            false
        ),
        Ok(None)
    );
    assert_eq!(
        plan(
            r"^http://a\.example\.com/(.*)",
            "https://b.example.com/$1",
            false,
            true
        ),
        Ok(None)
    );
    // Permanent: carried to the status codes.
    assert!(
        plan(r"^http://a\.b/(.*)", "http://c.d/$1", true, false)
            .unwrap()
            .unwrap()
            .permanent
    );
}

#[test]
fn what_cannot_be_expressed_is_refused_naming_the_part() {
    let refused = [
        (
            r"https?://a\.com/(.*)",
            "https://b.com/$1",
            "regex: must start with ^",
        ),
        (
            r"^.*://a\.com/(.*)",
            "https://b.com/$1",
            "regex: the scheme part \".*\"",
        ),
        (
            r"^https?:/a\.com/(.*)",
            "https://b.com/$1",
            "no :// after the scheme",
        ),
        (r"^https?://a\.com", "https://b.com/", "no / after the host"),
        (
            r"^https?://(.*)/(.*)",
            "https://b.com/$2",
            "the host part \"(.*)\" must have no capturing group",
        ),
        (
            r"^https?://[^.]+\.com/(.*)",
            "https://b.com/$1",
            "can match '/', '?' or '#'",
        ),
        (
            r"^https?://a\.com/x\b(.*)",
            "https://b.com/$1",
            "anchor or word boundary",
        ),
        (r"^https?://a\.com/x.*", "https://b.com/y", "can match '?'"),
        (
            r"^(?i)https?://a\.com/(.*)",
            "https://b.com/$1",
            "the flags group",
        ),
        (
            r"^https?://a\.com/x|y",
            "https://b.com/$1",
            "an alternation |",
        ),
        (
            r"^https?://a\.com/(.*)",
            "//b.com/$1",
            "replacement: must start with http:// or https://",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com",
            "needs a path starting with /",
        ),
        (
            r"^https?://(?:a)\.com/(.*)",
            "https://$1.com/$1",
            "cannot use the regex's groups",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com:443/$1",
            "the default port :443",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com:0/$1",
            "is not a port number",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://B.com/$1",
            "must be a lower-case DNS name",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com/$1x",
            "$1x is not one of the path part's groups",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com/$0",
            "$0 is not one of",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com/$2",
            "$2 is not one of",
        ),
        (
            r"^https?://a\.com/(?P<p>x)(.*)",
            "https://b.com/${p}$2",
            "$p is not one of",
        ),
        (
            r"^https?://a\.com/(x|y)$",
            "https://a.com/x",
            "can give back the request's own URL",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com/$1/x",
            "${1} must end the replacement",
        ),
        (
            r"^https?://a\.com/(.*)",
            "https://b.com/$1$1",
            "may appear once",
        ),
        (
            r"^https?://a\.com/(x)/(.*)",
            "https://a.com/$1/$2",
            "can give back the request's own URL",
        ),
        (
            r"^https://a\.com/(.*)",
            "https://a.com/x/$1",
            "can give back the request's own URL",
        ),
    ];
    for (regex, replacement, expected) in refused {
        let got = [false, true]
            .into_iter()
            .map(|tls| plan(regex, replacement, false, tls))
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("{regex} -> {replacement}: served"));
        assert!(got.contains(expected), "{regex} -> {replacement}: {got}");
    }
}

/// The same redirects through the DAG: redirect routes ahead of the route, GET and other
/// methods apart, and the route itself for the requests not redirected.
#[test]
fn the_dag_puts_redirect_routes_ahead_of_the_route() {
    let yaml = "\
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: moved, namespace: apps}
spec: {redirectRegex: {regex: '^http://a\\.example\\.com/old/(.*)', replacement: 'http://b.example.com/new/${1}', permanent: true}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: bad, namespace: apps}
spec: {redirectRegex: {regex: 'old', replacement: 'new'}}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: strip, namespace: apps}
spec: {stripPrefix: {prefixes: [/x]}}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: r, namespace: apps}
spec:
  routes:
  - match: Host(`a.example.com`)
    middlewares: [{name: moved}]
    services: [{name: web, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: bad, namespace: apps}
spec:
  routes:
  - match: Host(`bad.example.com`)
    middlewares: [{name: bad}]
    services: [{name: web, port: 80}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: after-strip, namespace: apps}
spec:
  routes:
  - match: Host(`strip.example.com`)
    middlewares: [{name: strip}, {name: moved}]
    services: [{name: web, port: 80}]
";
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let dag = crate::dag::build(&report.snapshot, &crate::dag::Selection::default_instance());
    let verdict = |name: &str| {
        let s = dag.object_statuses.iter().find(|s| s.name == name).unwrap();
        (s.current_status.as_str(), s.description.clone())
    };
    assert_eq!(verdict("r").0, "valid", "{:?}", verdict("r"));
    let (status, description) = verdict("bad");
    assert_eq!(status, "invalid");
    assert!(
        description.contains(
            "spec.routes[0].middlewares[0]: Middleware apps/bad (redirectRegex): regex: must \
             start with ^"
        ),
        "{description}"
    );
    let (status, description) = verdict("after-strip");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("after a path rewrite"),
        "{description}"
    );

    let vhost = dag
        .virtual_hosts
        .iter()
        .find(|v| v.fqdn == "a.example.com")
        .unwrap();
    let redirects: Vec<(u16, bool)> = vhost
        .routes
        .iter()
        .map(|r| {
            let e = r.extra.as_deref().unwrap();
            let get = e.headers.iter().any(|h| h.name == ":method");
            (e.redirect.as_ref().map_or(0, |r| r.status), get)
        })
        .collect();
    assert_eq!(redirects, [(301, true), (308, false), (0, false)]);
    let e = vhost.routes[0].extra.as_deref().unwrap();
    let redirect = e.redirect.as_ref().unwrap();
    assert_eq!(redirect.host.as_deref(), Some("b.example.com"));
    assert_eq!(redirect.scheme, "http");
    assert_eq!(redirect.path.as_ref().unwrap().substitution, "/new/\\1");
    assert!(!vhost.routes[2].clusters.is_empty());
}

/// A tenant's regex and replacement may hold any character: never a panic (a panic in a build
/// stops the Gateway for every tenant), whatever is served or refused.
#[test]
fn any_characters_are_served_or_refused_never_a_panic() {
    let pieces = [
        "^",
        "$",
        "https?",
        "://",
        "http://",
        "https://",
        "é",
        "ü.example",
        "a.example",
        "/",
        "/é",
        "(.*)",
        "(",
        ")",
        "|",
        "\\",
        "\\é",
        "[é]",
        "[",
        "]",
        "(?i)",
        "?",
        "#",
        "💡",
        "${1}",
        "$1",
        "{",
        "}",
        ".",
        "*",
    ];
    let mut rng = sluice_e2e::rng::Rng(0x5eed_7e57);
    for _ in 0..20_000 {
        let mut regex = String::new();
        let mut replacement = String::new();
        for _ in 0..rng.below(8) {
            regex.push_str(pieces[rng.below(pieces.len())]);
        }
        for _ in 0..rng.below(6) {
            replacement.push_str(pieces[rng.below(pieces.len())]);
        }
        for tls in [false, true] {
            let _ = plan(&regex, &replacement, false, tls);
        }
    }
    // The two inputs that panicked.
    for regex in [
        "^https://a.example/é",
        "^https://é.example/",
        "^http://a.example/\\é(.*)",
    ] {
        let _ = plan(regex, "https://b.example/$1", false, true);
    }
}
