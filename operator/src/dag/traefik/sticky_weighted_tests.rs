//! Sticky weighted TraefikServices: the Envoy routes they make, checked by what the first
//! matching route does with a request's cookies against a model of Traefik's handlers, and
//! every hostile value refused naming its field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use sha1::Digest as _;

use super::tests::{dag_of, invalid_with, ir, services, ts, verdict};
use crate::dag::model::*;

/// The cookie value naming a child: 16 hex digits of a SHA-256 of its Traefik name, as
/// Traefik v3 writes it.
fn value(traefik_name: &str) -> String {
    let digest = sha2::Sha256::digest(traefik_name.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn routes<'a>(dag: &'a Dag, fqdn: &str) -> &'a [Route] {
    let v = dag
        .virtual_hosts
        .iter()
        .find(|v| v.fqdn == fqdn)
        .unwrap_or_else(|| panic!("no vhost {fqdn}: {:#?}", dag.object_statuses));
    &v.routes
}

fn cookie_conditions(r: &Route) -> Vec<&HeaderCondition> {
    r.extra
        .as_ref()
        .unwrap()
        .headers
        .iter()
        .filter(|h| h.name == "cookie")
        .collect()
}

/// Whether `r`'s cookie conditions hold for a request whose `Cookie` header is `header`
/// (Envoy: a missing header matches no regex).
fn cookies_match(r: &Route, header: Option<&str>) -> bool {
    cookie_conditions(r).iter().all(|h| {
        let ValueCondition::Regex(p) = &h.value else {
            panic!("{h:?}")
        };
        assert!(!h.invert);
        header.is_some_and(|v| {
            regex::RegexBuilder::new(&format!("^(?:{p})$"))
                .nest_limit(2000)
                .build()
                .unwrap()
                .is_match(v)
        })
    })
}

/// What the first route whose cookie conditions hold does: (service, `name=value` of each
/// cookie it sets) → share of the requests in eighths.
fn first_match(routes: &[Route], header: Option<&str>) -> BTreeMap<(String, Vec<String>), u64> {
    let r = routes
        .iter()
        .find(|r| cookies_match(r, header))
        .unwrap_or_else(|| panic!("no route for {header:?}"));
    let total: u64 = r.clusters.iter().map(|c| u64::from(c.weight)).sum();
    r.clusters
        .iter()
        .filter(|c| c.weight > 0)
        .map(|c| {
            let eighths = u64::from(c.weight) * 8;
            assert_eq!(eighths % total, 0, "{:?}", r.clusters);
            let name = c.cluster.split('/').nth(1).unwrap().to_owned();
            let set: Vec<String> = c
                .set_cookie
                .iter()
                .map(|s| s.split(';').next().unwrap().to_owned())
                .collect();
            ((name, set), eighths / total)
        })
        .collect()
}

fn share(parts: &[(&str, &[&str], u64)]) -> BTreeMap<(String, Vec<String>), u64> {
    parts
        .iter()
        .map(|(s, set, n)| {
            (
                (
                    (*s).to_owned(),
                    set.iter().map(|c| (*c).to_owned()).collect(),
                ),
                *n,
            )
        })
        .collect()
}

#[test]
fn each_live_child_is_pinned_by_its_cookie_then_the_weighted_pick_sets_it() {
    let yaml = services("apps", &["a", "b", "c"])
        + &ts(
            "apps",
            "top",
            "{weighted: {services: [{name: a, port: 80, weight: 1}, {name: b, port: 80, \
             weight: 3}, {name: c, port: http, weight: 0}], sticky: {cookie: {name: pick, \
             secure: true, httpOnly: true, sameSite: lax, maxAge: 60, path: /shop}}}}",
        )
        + &ir("[{name: top, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let rs = routes(&dag, "a.example.com");
    // a pinned, b pinned (c weighs 0: Traefik holds no handler for it), the weighted pick.
    assert_eq!(rs.len(), 3, "{rs:#?}");
    let (va, vb, vc) = (value("apps-a-80"), value("apps-b-80"), value("apps-c-http"));
    let attributes = "; Path=/shop; Max-Age=60; HttpOnly; Secure; SameSite=Lax";
    assert_eq!(
        rs[2]
            .clusters
            .iter()
            .map(|c| (c.weight, c.set_cookie.clone()))
            .collect::<Vec<_>>(),
        [
            (1, vec![format!("pick={va}{attributes}")]),
            (3, vec![format!("pick={vb}{attributes}")]),
            (0, vec![format!("pick={vc}{attributes}")]),
        ]
    );
    assert!(cookie_conditions(&rs[2]).is_empty());
    for (header, expected) in [
        (Some(format!("pick={va}")), share(&[("a", &[], 8)])),
        (
            Some(format!("x=1; pick={vb}; y=2")),
            share(&[("b", &[], 8)]),
        ),
        (
            Some(format!("pick={vb}; pick={va}")),
            share(&[("b", &[], 8)]),
        ),
        (
            None,
            share(&[
                ("a", &[&format!("pick={va}")], 2),
                ("b", &[&format!("pick={vb}")], 6),
            ]),
        ),
        (
            Some(format!("pick={vc}")),
            share(&[
                ("a", &[&format!("pick={va}")], 2),
                ("b", &[&format!("pick={vb}")], 6),
            ]),
        ),
        // Traefik also takes the child's name and its FNV hashes (older Traefik versions).
        (Some("pick=apps-a-80".to_owned()), share(&[("a", &[], 8)])),
        (
            Some(format!("pick={}", super::fnv64_hex("apps-b-80"))),
            share(&[("b", &[], 8)]),
        ),
        (
            Some(format!(
                "pick={}",
                super::fnv64_hex(&super::fnv64_hex("apps-a-80"))
            )),
            share(&[("a", &[], 8)]),
        ),
        (
            Some("pick=apps-c-http".to_owned()),
            share(&[
                ("a", &[&format!("pick={va}")], 2),
                ("b", &[&format!("pick={vb}")], 6),
            ]),
        ),
    ] {
        assert_eq!(first_match(rs, header.as_deref()), expected, "{header:?}");
    }
    // Pure: the same input, the same routes.
    assert_eq!(dag_of(&yaml).virtual_hosts, dag.virtual_hosts);
}

#[test]
fn an_unnamed_cookie_gets_traefiks_name_for_the_service() {
    let yaml = services("apps", &["a", "b"])
        + &ts(
            "apps",
            "top",
            "{weighted: {services: [{name: a, port: 80}, {name: b, port: 80}], \
             sticky: {cookie: {}}}}",
        )
        + &ir("[{name: top, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    let digest = sha1::Sha1::digest(b"_TRAEFIK_BACKEND_apps-top@kubernetescrd");
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let name = format!("_{}", &hex[..5]);
    let rs = routes(&dag, "a.example.com");
    assert_eq!(
        rs[2].clusters[0].set_cookie,
        [format!("{name}={}; Path=/", value("apps-a-80"))]
    );
}

#[test]
fn nested_sticky_levels_route_as_traefiks_handlers_do() {
    // outer (cookie o): a 1, inner 1; inner (cookie i): b 1, c 3.
    let yaml = services("apps", &["a", "b", "c"])
        + &ts(
            "apps",
            "outer",
            "{weighted: {services: [{name: a, port: 80}, {name: inner, kind: TraefikService}], \
             sticky: {cookie: {name: o}}}}",
        )
        + &ts(
            "apps",
            "inner",
            "{weighted: {services: [{name: b, port: 80}, {name: c, port: 80, weight: 3}], \
             sticky: {cookie: {name: i}}}}",
        )
        + &ir("[{name: outer, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let rs = routes(&dag, "a.example.com");
    // Pinned a; pinned inner × (pinned b, pinned c, fresh); fresh × (b, c, fresh).
    assert_eq!(rs.len(), 7, "{rs:#?}");
    let oa = format!("o={}", value("apps-a-80"));
    let oi = format!("o={}", value("apps-inner"));
    let ib = format!("i={}", value("apps-b-80"));
    let ic = format!("i={}", value("apps-c-80"));
    // Traefik: outer reads o (a live child's value pins it), else picks and sets o; inner,
    // when reached, does the same with i.
    let model = |o: Option<&str>, i: Option<&str>| {
        let inner = |prefix: Option<&str>, share: u64| -> Vec<(String, Vec<String>, u64)> {
            let with = |c: &str| prefix.into_iter().map(str::to_owned).chain([c.to_owned()]);
            match i {
                Some(v) if v == ib => vec![(
                    "b".into(),
                    prefix.into_iter().map(str::to_owned).collect(),
                    share,
                )],
                Some(v) if v == ic => vec![(
                    "c".into(),
                    prefix.into_iter().map(str::to_owned).collect(),
                    share,
                )],
                _ => vec![
                    ("b".into(), with(&ib).collect(), share / 4),
                    ("c".into(), with(&ic).collect(), share * 3 / 4),
                ],
            }
        };
        let parts = match o {
            Some(v) if v == oa => vec![("a".into(), vec![], 8)],
            Some(v) if v == oi => inner(None, 8),
            _ => {
                let mut p = vec![("a".to_owned(), vec![oa.clone()], 4)];
                p.extend(inner(Some(&oi), 4));
                p
            }
        };
        parts
            .into_iter()
            .map(|(s, set, n)| ((s, set), n))
            .collect::<BTreeMap<_, _>>()
    };
    let os = [None, Some(oa.as_str()), Some(oi.as_str()), Some("o=zz")];
    let is = [None, Some(ib.as_str()), Some(ic.as_str()), Some("i=zz")];
    for o in os {
        for i in is {
            for header in [
                [o, i].into_iter().flatten().collect::<Vec<_>>().join("; "),
                [i, Some("q=1"), o]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(";"),
            ] {
                let header = (!header.is_empty()).then_some(header);
                assert_eq!(
                    first_match(rs, header.as_deref()),
                    model(o, i),
                    "{header:?}"
                );
            }
        }
    }
}

#[test]
fn sticky_routes_keep_the_middlewares_and_the_priority_of_their_route() {
    let yaml = services("apps", &["a", "b", "d"])
        + &ts(
            "apps",
            "top",
            "{weighted: {services: [{name: a, port: 80}, {name: b, port: 80}], \
             sticky: {cookie: {name: pick}}}}",
        )
        + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: strip, \
           namespace: apps}\nspec: {stripPrefix: {prefixes: [/api]}}\n---\napiVersion: \
           traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: mark, namespace: apps}\n\
           spec: {headers: {customResponseHeaders: {X-Route: sticky}, \
           customRequestHeaders: {X-In: yes}}}\n---\napiVersion: traefik.io/v1alpha1\n\
           kind: IngressRoute\nmetadata: {name: r, namespace: apps}\nspec:\n  routes:\n  \
           - match: Host(`a.example.com`) && PathPrefix(`/api`)\n    middlewares: [{name: \
           strip}, {name: mark}]\n    services: [{name: top, kind: TraefikService}]\n  \
           - match: Host(`a.example.com`) && PathPrefix(`/api/longer/than/the/other`)\n    \
           services: [{name: d, port: 80}]\n  - match: Host(`a.example.com`)\n    \
           services: [{name: d, port: 80}]\n";
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let rs = routes(&dag, "a.example.com");
    let prefixes: Vec<&str> = rs.iter().map(|r| r.prefix.as_str()).collect();
    assert_eq!(
        prefixes,
        ["/api/longer/than/the/other", "/api", "/api", "/api", "/"]
    );
    let fresh = rs[3].extra.as_ref().unwrap();
    assert!(fresh.path_rewrite.is_some());
    assert_eq!(
        fresh.response_headers_set,
        [("x-route".into(), "sticky".into())]
    );
    for pinned in &rs[1..3] {
        let mut extra = (**pinned.extra.as_ref().unwrap()).clone();
        assert_eq!(cookie_conditions(pinned).len(), 1);
        extra.headers.retain(|h| h.name != "cookie");
        assert_eq!(
            &extra, &**fresh,
            "a pinned route is the fresh one with its cookie"
        );
    }
}

#[test]
fn a_rate_limit_is_not_multiplied_by_sticky_routes() {
    let route = |refs: &str| {
        services("apps", &["a", "b"])
            + &ts(
                "apps",
                "top",
                "{weighted: {services: [{name: a, port: 80}, {name: b, port: 80}], \
                 sticky: {cookie: {name: pick}}}}",
            )
            + "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: rl, \
               namespace: apps}\nspec: {rateLimit: {average: 10, burst: 10}}\n---\n\
               apiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: r, \
               namespace: apps}\nspec:\n  routes:\n  - match: Host(`a.example.com`)\n    \
               middlewares: [{name: rl}]\n    services: "
            + refs
            + "\n"
    };
    let dag = dag_of(&route("[{name: top, kind: TraefikService}]"));
    let (status, description) = verdict(&dag, "apps/r");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("a rateLimit with a sticky weighted service is not served"),
        "{description}"
    );
    // The same limit on one Service is served.
    assert_eq!(
        verdict(&dag_of(&route("[{name: a, port: 80}]")), "apps/r").0,
        "valid"
    );
}

#[test]
fn service_level_sticky_cookies_hash_on_each_route_of_the_pick() {
    let child = |name: &str, sticky: &str| format!("{{name: {name}, port: 80{sticky}}}");
    let with = ", sticky: {cookie: {name: srv}}";
    let yaml = services("apps", &["a", "b"])
        + &ts(
            "apps",
            "top",
            &format!(
                "{{weighted: {{services: [{}, {}], sticky: {{cookie: {{name: pick}}}}}}}}",
                child("a", with),
                child("b", with)
            ),
        )
        + &ir("[{name: top, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    for r in routes(&dag, "a.example.com") {
        let options = r.extra.as_ref().unwrap().service_options.as_ref().unwrap();
        assert_eq!(options.sticky.as_ref().unwrap().name, "srv");
    }
    // The fresh pick splits over both: Envoy hashes one cookie per route.
    let yaml = services("apps", &["a", "b"])
        + &ts(
            "apps",
            "top",
            &format!(
                "{{weighted: {{services: [{}, {}], sticky: {{cookie: {{name: pick}}}}}}}}",
                child("a", with),
                child("b", "")
            ),
        )
        + &ir("[{name: top, kind: TraefikService}]");
    invalid_with(
        &dag_of(&yaml),
        "every service a route splits over must have the same sticky cookie",
    );
}

/// A TraefikService `apps/top` sticky over `a` and `b` with `cookie` (YAML flow).
fn sticky_with(cookie: &str) -> String {
    services("apps", &["a", "b"])
        + &ts(
            "apps",
            "top",
            &format!(
                "{{weighted: {{services: [{{name: a, port: 80}}, {{name: b, port: 80}}], \
                 sticky: {cookie}}}}}"
            ),
        )
        + &ir("[{name: top, kind: TraefikService}]")
}

#[test]
fn hostile_cookie_settings_are_refused_naming_the_field() {
    let field = "TraefikService apps/top: spec.weighted.sticky.";
    for (cookie, expected) in [
        ("{}", "cookie: required"),
        ("{cookie: {name: \"a;b\"}}", "cookie.name"),
        ("{cookie: {name: \"a=b\"}}", "cookie.name"),
        ("{cookie: {name: \"a b\"}}", "cookie.name"),
        (
            "{cookie: {name: \"pick\\r\\nSet-Cookie: x=1\"}}",
            "cookie.name",
        ),
        ("{cookie: {name: \"pické\"}}", "cookie.name"),
        (
            "{cookie: {sameSite: \"lax; Domain=evil.com\"}}",
            "cookie.sameSite",
        ),
        ("{cookie: {sameSite: Lax}}", "cookie.sameSite"),
        ("{cookie: {path: \"/a;Domain=evil.com\"}}", "cookie.path"),
        ("{cookie: {path: \"/a\\r\\nx: y\"}}", "cookie.path"),
        ("{cookie: {domain: \"evil.com; Secure\"}}", "cookie.domain"),
        ("{cookie: {maxAge: -1}}", "cookie.maxAge"),
        ("{cookie: {maxAge: 4294967296}}", "cookie.maxAge"),
    ] {
        invalid_with(&dag_of(&sticky_with(cookie)), &format!("{field}{expected}"));
    }
    // A Service's sticky cookie may be 256 bytes long; a sticky weighted service's 64.
    let long = "n".repeat(65);
    invalid_with(
        &dag_of(&sticky_with(&format!("{{cookie: {{name: {long}}}}}"))),
        &format!("{field}cookie.name: 65 bytes, more than the 64"),
    );
    let longest = "n".repeat(64);
    let dag = dag_of(&sticky_with(&format!("{{cookie: {{name: {longest}}}}}")));
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
}

#[test]
fn cookies_shared_or_ambiguous_and_route_blow_ups_are_refused() {
    // Two levels with one cookie name.
    let yaml = services("apps", &["a", "b", "c"])
        + &ts(
            "apps",
            "outer",
            "{weighted: {services: [{name: a, port: 80}, {name: inner, kind: TraefikService}], \
             sticky: {cookie: {name: pick}}}}",
        )
        + &ts(
            "apps",
            "inner",
            "{weighted: {services: [{name: b, port: 80}, {name: c, port: 80}], \
             sticky: {cookie: {name: pick}}}}",
        )
        + &ir("[{name: outer, kind: TraefikService}]");
    invalid_with(
        &dag_of(&yaml),
        "TraefikService apps/inner: spec.weighted.sticky.cookie.name: \"pick\": TraefikService \
         apps/outer uses the same cookie on this route",
    );
    // One sticky TraefikService reached twice.
    let yaml = services("apps", &["a", "b"])
        + &ts(
            "apps",
            "s",
            "{weighted: {services: [{name: a, port: 80}, {name: b, port: 80}], \
             sticky: {cookie: {name: pick}}}}",
        )
        + &ir("[{name: s, kind: TraefikService}, {name: s, kind: TraefikService}]");
    invalid_with(&dag_of(&yaml), "TraefikService apps/s is reached twice");
    // A Service's own sticky cookie with the name of a weighted level above it.
    let yaml = services("apps", &["a", "b"])
        + &ts(
            "apps",
            "s",
            "{weighted: {services: [{name: a, port: 80, sticky: {cookie: {name: pick}}}, \
             {name: b, port: 80, sticky: {cookie: {name: pick}}}], sticky: {cookie: {name: pick}}}}",
        )
        + &ir("[{name: s, kind: TraefikService}]");
    invalid_with(
        &dag_of(&yaml),
        "is also the cookie of the sticky weighted TraefikService apps/s",
    );
    // One Service port listed twice is one child for the cookie (Traefik names both alike):
    // its value pins the first listing of positive weight; a fresh pick of either sets it.
    let yaml = services("apps", &["a", "b"])
        + &ts(
            "apps",
            "s",
            "{weighted: {services: [{name: a, port: 80, weight: 0}, {name: b, port: 80}, \
             {name: a, port: 80, weight: 2, scheme: h2c}, {name: a, port: 80, weight: 1}], \
             sticky: {cookie: {name: pick}}}}",
        )
        + &ir("[{name: s, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let rs = routes(&dag, "a.example.com");
    // b pinned, a pinned (to its h2c listing), the fresh pick.
    assert_eq!(rs.len(), 3, "{rs:#?}");
    let va = format!("pick={}", value("apps-a-80"));
    let h2c = rs[1].clusters[0].cluster.clone();
    assert!(cookies_match(&rs[1], Some(&va)));
    assert_eq!(rs[1].clusters.len(), 1);
    let fresh: Vec<(String, u32, String)> = rs[2]
        .clusters
        .iter()
        .map(|c| (c.cluster.clone(), c.weight, c.set_cookie[0].clone()))
        .collect();
    // The plain listings of a (weights 0 and 1) are one cluster with one cookie.
    assert_eq!(fresh.len(), 3, "{fresh:?}");
    assert_eq!((fresh[2].0 == h2c, fresh[2].1), (true, 2));
    assert_eq!((fresh[0].0 == h2c, fresh[0].1), (false, 1));
    assert_eq!(fresh[0].2, fresh[2].2);
    assert!(fresh[0].2.starts_with(&va));

    // 31 children make 32 routes, the limit; 32 make 33.
    let names: Vec<String> = (0..32).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let wide = |n: usize| {
        let children: Vec<String> = names[..n]
            .iter()
            .map(|s| format!("{{name: {s}, port: 80}}"))
            .collect();
        services("apps", &refs)
            + &ts(
                "apps",
                "wide",
                &format!(
                    "{{weighted: {{services: [{}], sticky: {{cookie: {{name: pick}}}}}}}}",
                    children.join(", ")
                ),
            )
            + &ir("[{name: wide, kind: TraefikService}]")
    };
    let dag = dag_of(&wide(31));
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    assert_eq!(routes(&dag, "a.example.com").len(), 32);
    invalid_with(
        &dag_of(&wide(32)),
        "sticky weighted TraefikServices make more than 32 Envoy routes",
    );
    // Side by side, sticky levels multiply: 6 × 6 fresh combinations.
    let five = |ts_name: &str, cookie: &str| {
        let children: Vec<String> = names[..5]
            .iter()
            .map(|s| format!("{{name: {s}, port: 80}}"))
            .collect();
        ts(
            "apps",
            ts_name,
            &format!(
                "{{weighted: {{services: [{}], sticky: {{cookie: {{name: {cookie}}}}}}}}}",
                children.join(", ")
            ),
        )
    };
    let yaml = services("apps", &refs)
        + &five("x", "cx")
        + &five("y", "cy")
        + &ir("[{name: x, kind: TraefikService}, {name: y, kind: TraefikService}]");
    invalid_with(
        &dag_of(&yaml),
        "spec.routes[0].services: sticky weighted TraefikServices make more than 32",
    );
}

#[test]
fn values_are_traefiks_hashes_of_its_normalized_child_names() {
    // Traefik names children `namespace-name-port` and a TraefikService child
    // `namespace-name`, every run of other bytes one `-`.
    let yaml = services("apps", &["a--b"])
        + &ts(
            "apps",
            "in.ner",
            "{weighted: {services: [{name: a--b, port: http}]}}",
        )
        + &ts(
            "apps",
            "top",
            "{weighted: {services: [{name: a--b, port: http}, {name: in.ner, kind: \
             TraefikService}], sticky: {cookie: {}}}}",
        )
        + &ir("[{name: top, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let rs = routes(&dag, "a.example.com");
    let set: Vec<String> = rs[2]
        .clusters
        .iter()
        .map(|c| c.set_cookie[0].split(';').next().unwrap().to_owned())
        .collect();
    let digest = sha1::Sha1::digest(b"_TRAEFIK_BACKEND_apps-top@kubernetescrd");
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let name = format!("_{}", &hex[..5]);
    assert_eq!(
        set,
        [
            format!("{name}={}", value("apps-a-b-http")),
            format!("{name}={}", value("apps-in-ner")),
        ]
    );
}

#[test]
fn older_values_are_go_fnv1_64_in_hex() {
    // FNV-1 (not 1a) test vectors, as Go's hash/fnv New64 computes them.
    assert_eq!(super::fnv64_hex(""), "cbf29ce484222325");
    assert_eq!(super::fnv64_hex("a"), "af63bd4c8601b7be");
}
