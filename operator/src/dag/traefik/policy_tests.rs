//! Middlewares served by HTTP filters and the route retry policy: what each becomes, what is
//! refused (hostile Secrets, sizes, orders Envoy cannot run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::dag::model::*;
use crate::dag::policy::*;
use crate::dag::{Selection, build};

fn dag_of(yaml: &str) -> Dag {
    dag_trusting(yaml, 0)
}

/// [`dag_of`] for a Gateway trusting `hops` X-Forwarded-For hops.
fn dag_trusting(yaml: &str, hops: u32) -> Dag {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mut sel = Selection::default_instance();
    sel.xff_trusted_hops = hops;
    build(&report.snapshot, &sel)
}

const SVC: &str = "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: apps}\n\
                   spec:\n  ports: [{port: 80, name: http}]\n";

fn middleware(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: {name}, \
         namespace: apps}}\nspec:\n  {spec}\n"
    )
}

/// A Secret of namespace `apps`; `data` values are base64.
fn secret(name: &str, type_: &str, data: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: apps}}\n\
         type: {type_}\ndata: {{{data}}}\n"
    )
}

fn b64(s: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// An IngressRoute `apps/r` for `a.example.com` using `mws` in that order.
fn route(entry: &str, mws: &[&str]) -> String {
    let list: Vec<String> = mws.iter().map(|m| format!("{{name: {m}}}")).collect();
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {{name: r, \
         namespace: apps}}\nspec:\n  entryPoints: [{entry}]\n  routes:\n  - match: \
         Host(`a.example.com`)\n    middlewares: [{}]\n    services: [{{name: s, port: 80}}]\n",
        list.join(", ")
    )
}

/// The verdict of `apps/r` and the policies of its routes.
fn judge(yaml: &str) -> (String, Vec<Option<RoutePolicy>>) {
    judge_trusting(yaml, 0)
}

fn judge_trusting(yaml: &str, hops: u32) -> (String, Vec<Option<RoutePolicy>>) {
    let dag = dag_trusting(&(SVC.to_owned() + yaml), hops);
    let status = dag.object_statuses.iter().find(|s| s.name == "r").unwrap();
    let policies = dag
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .map(|r| r.extra.as_ref().unwrap().policy.as_deref().cloned())
        .collect();
    (status.description.clone(), policies)
}

fn served(yaml: &str) -> RoutePolicy {
    let (description, policies) = judge(yaml);
    assert_eq!(description, "valid IngressRoute");
    assert_eq!(policies.len(), 1, "{policies:?}");
    policies[0].clone().unwrap()
}

fn refused(yaml: &str, expected: &str) {
    let (description, policies) = judge(yaml);
    assert!(description.contains(expected), "{description}");
    assert!(policies.is_empty());
}

const ALICE_SHA: &str = "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

#[test]
fn basic_auth_users_come_from_a_secret_of_the_namespace() {
    let users = secret(
        "users",
        "kubernetes.io/basic-auth",
        &format!("username: {}, password: {}", b64(b"alice"), b64(b"secret")),
    );
    let mw = middleware("auth", "basicAuth: {secret: users, removeHeader: true}");
    let p = served(&format!("{users}{mw}{}", route("web", &["auth"])));
    let auth = p.basic_auth.unwrap();
    assert_eq!(auth.users, [ALICE_SHA]);
    assert_eq!(auth.secret, "apps/users");
    assert!(auth.remove_header);

    // Envoy would read this user's line as a comment.
    let lines = format!("{ALICE_SHA}\r\n\n#bob:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\n");
    let htpasswd = |text: &str| {
        secret(
            "users",
            "Opaque",
            &format!("users: {}", b64(text.as_bytes())),
        )
    };
    let mw = middleware("auth", "basicAuth: {secret: users}");
    let r = route("web", &["auth"]);
    let cases = [
        (lines, "line 3: the user name must be visible ASCII"),
        (
            format!("{ALICE_SHA}\n{ALICE_SHA}\n"),
            "line 2: its user is already listed on line 1",
        ),
        (
            "bob:$apr1$x$y\n".to_owned(),
            "line 1: Envoy checks only {SHA}",
        ),
        (
            "bob:{SHA}c2hvcnQ=\n".to_owned(),
            "not the base64 of a 20-byte SHA-1 digest",
        ),
        ("bob\n".to_owned(), "line 1: not user:hash"),
        (String::new(), "lists no users"),
        ("x".repeat(70_000), "holds 70000 bytes; at most 65536"),
    ];
    for (text, expected) in cases {
        let yaml = format!("{}{mw}{r}", htpasswd(&text));
        refused(&yaml, expected);
        // A status is readable by whoever may write Middlewares in the namespace, who may not
        // read its Secrets: no user name of the Secret shows through.
        let (description, _) = judge(&yaml);
        for user in ["alice", "bob"] {
            assert!(!description.contains(user), "{description}");
        }
    }
    refused(&format!("{mw}{r}"), "users Secret apps/users not found");
    let two_keys = secret("users", "Opaque", "a: YQ==, b: Yg==");
    refused(&format!("{two_keys}{mw}{r}"), "exactly one key");
    let field = middleware("auth", "basicAuth: {secret: users, headerField: X-User}");
    refused(
        &format!("{}{field}{r}", htpasswd(ALICE_SHA)),
        "headerField is not served",
    );
    let many: String = (0..1025)
        .map(|i| format!("u{i}:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"))
        .collect();
    refused(
        &format!("{}{mw}{r}", htpasswd(&many)),
        "lists 1025 users; at most 1024",
    );
}

#[test]
fn ip_allow_lists_serve_the_peer_address_only() {
    let mw = middleware(
        "ips",
        "ipWhiteList: {sourceRange: [192.0.2.7/24, \"::1\", 192.0.2.0/24]}",
    );
    let p = served(&format!("{mw}{}", route("web", &["ips"])));
    assert_eq!(
        p.ip_allow.unwrap().source_ranges,
        [("192.0.2.0".to_owned(), 24), ("::1".to_owned(), 128)]
    );
    let r = route("web", &["ips"]);
    for (spec, expected) in [
        (
            "ipAllowList: {sourceRange: [10.0.0.0/8], ipStrategy: {depth: 1}}",
            "ipStrategy reads X-Forwarded-For, which this Gateway does not trust (its \
             spec.xffTrustedHops is not set)",
        ),
        (
            "ipAllowList: {sourceRange: [10.0.0.0/8], rejectStatusCode: 401}",
            "rejectStatusCode 401",
        ),
        (
            "ipAllowList: {sourceRange: [10.0.0.0/8, \"::ffff:10.0.0.0/104\"]}",
            "sourceRange `::ffff:10.0.0.0/104`: an IPv4-mapped IPv6 network is not served",
        ),
    ] {
        refused(&format!("{}{r}", middleware("ips", spec)), expected);
    }
    let ranges: Vec<String> = (0..257)
        .map(|i| format!("10.0.{}.{}/32", i / 256, i % 256))
        .collect();
    let spec = format!("ipAllowList: {{sourceRange: [{}]}}", ranges.join(", "));
    refused(&format!("{}{r}", middleware("ips", &spec)), "at most 256");
}

#[test]
fn rate_limits_keep_traefiks_rate_in_steps_envoy_takes() {
    let r = route("web", &["rl"]);
    let limit = |spec: &str| {
        let (description, policies) = judge(&format!("{}{r}", middleware("rl", spec)));
        assert_eq!(description, "valid IngressRoute");
        policies[0].clone().and_then(|p| p.rate_limit)
    };
    // 100 per second: 5 tokens every 50 ms.
    assert_eq!(
        limit("rateLimit: {average: 100, burst: 50}"),
        Some(RateLimitPolicy {
            max_tokens: 50,
            tokens_per_fill: 5,
            fill_interval_ms: 50,
            key: RateKey::PeerIp
        })
    );
    // 10 per minute: one every 6 s; Traefik's default burst 1.
    assert_eq!(
        limit("rateLimit: {average: 10, period: 1m}"),
        Some(RateLimitPolicy {
            max_tokens: 1,
            tokens_per_fill: 1,
            fill_interval_ms: 6000,
            key: RateKey::PeerIp
        })
    );
    assert_eq!(
        limit(
            "rateLimit: {average: 3, period: 1s, burst: 3, sourceCriterion: {requestHost: true}}"
        )
        .unwrap()
        .key,
        RateKey::Host
    );
    // average 0 means no limit.
    assert_eq!(limit("rateLimit: {average: 0}"), None);
    refused(
        &format!("{}{r}", middleware("rl", "rateLimit: {average: 100}")),
        "adds 5 tokens every 50 ms (Envoy refills at most every 50 ms), more than burst 1 \
         holds: set burst to at least 5",
    );
    refused(
        &format!(
            "{}{r}",
            middleware(
                "rl",
                "rateLimit: {average: 1, sourceCriterion: {ipStrategy: {depth: 2}}}"
            )
        ),
        "X-Forwarded-For",
    );
}

/// `ipStrategy.depth` is served when it equals the Gateway's trusted hops, on both
/// middlewares; any other depth, `excludedIPs`, and every strategy on a Gateway trusting no
/// hop are refused, naming the Gateway's setting. No strategy keeps the TCP peer.
#[test]
fn ip_strategies_follow_the_gateways_trusted_hops() {
    let ips = |strategy: &str| {
        format!(
            "{}{}",
            middleware(
                "m",
                &format!("ipAllowList: {{sourceRange: [192.0.2.0/24]{strategy}}}")
            ),
            route("web", &["m"])
        )
    };
    let limit = |strategy: &str| {
        format!(
            "{}{}",
            middleware(
                "m",
                &format!("rateLimit: {{average: 1, sourceCriterion: {{ipStrategy: {strategy}}}}}")
            ),
            route("web", &["m"])
        )
    };
    let policy = |yaml: &str, hops: u32| {
        let (description, policies) = judge_trusting(yaml, hops);
        assert_eq!(description, "valid IngressRoute", "{yaml}");
        policies[0].clone().unwrap()
    };
    for hops in [1, 3, 16] {
        let depth = format!(", ipStrategy: {{depth: {hops}}}");
        assert_eq!(
            policy(&ips(&depth), hops).ip_allow.unwrap(),
            IpAllowPolicy {
                source_ranges: vec![("192.0.2.0".to_owned(), 24)],
                forwarded_depth: hops,
            }
        );
        // Depth wins over excludedIPs, as in Traefik.
        let both = format!("{{depth: {hops}, excludedIPs: [10.0.0.0/8]}}");
        assert_eq!(
            policy(&limit(&both), hops).rate_limit.unwrap().key,
            RateKey::ForwardedIp { depth: hops }
        );
        // No strategy, or depth 0 without excludedIPs: the peer, whatever the Gateway trusts
        // (read from the connection, Envoy's client address being a forwarded one).
        assert_eq!(policy(&ips(""), hops).ip_allow.unwrap().forwarded_depth, 0);
        assert_eq!(
            policy(&limit("{depth: 0}"), hops).rate_limit.unwrap().key,
            RateKey::TcpPeer
        );
    }
    let judged = |yaml: &str, hops: u32| {
        let (description, policies) = judge_trusting(yaml, hops);
        assert!(policies.is_empty(), "{description}");
        description
    };
    assert_eq!(
        policy(&limit("{depth: 0}"), 0).rate_limit.unwrap().key,
        RateKey::PeerIp
    );
    for (yaml, hops, expected) in [
        (
            ips(", ipStrategy: {depth: 1}"),
            0,
            "ipStrategy reads X-Forwarded-For, which this Gateway does not trust (its \
             spec.xffTrustedHops is not set)",
        ),
        (
            limit("{excludedIPs: [10.0.0.0/8]}"),
            0,
            "sourceCriterion.ipStrategy reads X-Forwarded-For, which this Gateway does not trust",
        ),
        (
            ips(", ipStrategy: {depth: 1}"),
            2,
            "ipStrategy.depth 1 is not served: the Gateway trusts 2 X-Forwarded-For hop(s) \
             (spec.xffTrustedHops), so only depth 2 selects Envoy's client address",
        ),
        (
            limit("{depth: 64}"),
            2,
            "sourceCriterion.ipStrategy.depth 64 is not served",
        ),
        (
            ips(", ipStrategy: {excludedIPs: [10.0.0.0/8, \"2001:db8::/32\"]}"),
            2,
            "ipStrategy.excludedIPs is not served: Envoy finds the client address by counting \
             the Gateway's trusted hops (spec.xffTrustedHops: 2), not by excluding networks; \
             use depth 2",
        ),
        // Hostile values are refused by the loader before the Gateway is asked.
        (
            ips(", ipStrategy: {depth: 65}"),
            16,
            "depth: must be at most 64",
        ),
        (
            ips(", ipStrategy: {depth: -1}"),
            16,
            "depth: must not be negative",
        ),
        (
            ips(", ipStrategy: {excludedIPs: [\"10.0.0.0/33\"]}"),
            16,
            "excludedIPs[0]",
        ),
        (
            ips(", ipStrategy: {depth: 2, ipv6Subnet: 64}"),
            2,
            "ipv6Subnet",
        ),
    ] {
        let description = judged(&yaml, hops);
        assert!(description.contains(expected), "{description}");
    }
}

#[test]
fn retries_and_buffering() {
    let r = route("web", &["retry"]);
    let p = served(&format!(
        "{}{r}",
        middleware("retry", "retry: {attempts: 3, initialInterval: 100ms}")
    ));
    assert_eq!(
        p.retry,
        Some(RetryPolicy {
            num_retries: 2,
            base_interval_ms: 100
        })
    );
    let (_, policies) = judge(&format!(
        "{}{r}",
        middleware("retry", "retry: {attempts: 1}")
    ));
    assert_eq!(policies, [None]);
    let r = route("web", &["buf"]);
    let p = served(&format!(
        "{}{r}",
        middleware("buf", "buffering: {maxRequestBodyBytes: 1000}")
    ));
    assert_eq!(
        p.buffer,
        Some(BufferPolicy {
            max_request_bytes: 1000
        })
    );
    assert!(p.needs_route_at_start());
    refused(
        &format!(
            "{}{r}",
            middleware("buf", "buffering: {maxRequestBodyBytes: 16777217}")
        ),
        "maxRequestBodyBytes 16777217 is above 16777216",
    );
}

#[test]
fn cors_origins_become_full_match_patterns() {
    let spec = "headers: {accessControlAllowOriginList: [\"https://app.example.com\", \"*\"], \
                accessControlAllowOriginListRegex: [\"^https://.*\\\\.example\\\\.org$\", \"x\"], \
                accessControlAllowMethods: [get, POST], accessControlMaxAge: 600, \
                customResponseHeaders: {X-A: b}}";
    let p = served(&format!(
        "{}{}",
        middleware("cors", spec),
        route("web", &["cors"])
    ));
    let c = p.cors.unwrap();
    assert_eq!(
        c.allow_origin_regexes,
        [
            "https://app\\.example\\.com",
            "(?s:.*)",
            "^https://.*\\.example\\.org$",
            "(?s:.*)(?:x)(?s:.*)"
        ]
    );
    assert_eq!(c.allow_methods, ["GET", "POST"]);
    assert_eq!(c.max_age_seconds, Some(600));
}

/// Envoy's filters run in one order; a route listing them otherwise is refused, naming both.
#[test]
fn filter_middlewares_must_come_in_envoys_order() {
    let users = secret(
        "users",
        "Opaque",
        &format!("u: {}", b64(ALICE_SHA.as_bytes())),
    );
    let defs = users
        + &middleware("auth", "basicAuth: {secret: users}")
        + &middleware("ips", "ipAllowList: {sourceRange: [10.0.0.0/8]}")
        + &middleware("ips2", "ipAllowList: {sourceRange: [10.0.0.0/8]}")
        + &middleware("rl", "rateLimit: {average: 1}")
        + &middleware("buf", "buffering: {maxRequestBodyBytes: 10}");
    let p = served(&format!(
        "{defs}{}",
        route("web", &["ips", "rl", "auth", "buf"])
    ));
    assert!(p.ip_allow.is_some() && p.rate_limit.is_some() && p.basic_auth.is_some());
    refused(
        &format!("{defs}{}", route("web", &["auth", "ips"])),
        "spec.routes[0].middlewares[1]: Middleware apps/ips (ipAllowList): ipAllowList after \
         basicAuth (Middleware apps/auth) cannot be served in this order: Envoy runs \
         ipAllowList before basicAuth on every route",
    );
    refused(
        &format!("{defs}{}", route("web", &["buf", "rl"])),
        "rateLimit after buffering",
    );
    refused(
        &format!("{defs}{}", route("web", &["ips", "ips2"])),
        "a second ipAllowList middleware on one route (after Middleware apps/ips)",
    );
}

/// Middlewares before a redirectScheme apply to the requests it answers; those after it do
/// not, as in Traefik.
#[test]
fn a_redirect_answers_before_the_middlewares_listed_after_it() {
    let users = secret(
        "users",
        "Opaque",
        &format!("u: {}", b64(ALICE_SHA.as_bytes())),
    );
    let defs = users
        + &middleware("auth", "basicAuth: {secret: users}")
        + &middleware("https", "redirectScheme: {scheme: https}");
    let (_, before) = judge(&format!("{defs}{}", route("web", &["auth", "https"])));
    assert_eq!(before.len(), 2);
    assert!(
        before
            .iter()
            .all(|p| p.as_ref().unwrap().basic_auth.is_some())
    );
    let (_, after) = judge(&format!("{defs}{}", route("web", &["https", "auth"])));
    assert_eq!(after, [None, None]);
}

/// The path rewrites of several prefixes and of regexes: one Envoy `regex_rewrite` each.
#[test]
fn regex_path_middlewares_become_one_rewrite() {
    let rewrite = |spec: &str, more: &[&str]| {
        let mut names = vec!["p"];
        names.extend_from_slice(more);
        let defs = middleware("p", spec) + &middleware("add", "addPrefix: {prefix: /v2}");
        let dag = dag_of(&(SVC.to_owned() + &defs + &route("web", &names)));
        let status = &dag.object_statuses[0].description;
        let extra = dag
            .virtual_hosts
            .first()
            .map(|v| v.routes[0].extra.as_deref().unwrap().clone());
        (status.clone(), extra)
    };
    let (_, e) = rewrite("stripPrefix: {prefixes: [/api, /v1]}", &[]);
    let e = e.unwrap();
    let rw = e.path_rewrite.unwrap();
    assert_eq!(rw.pattern, "^(?:(?:/api)|(?:/v1))/?(.*)$");
    assert_eq!(rw.substitution, "/\\1");
    // Which prefix went is known per request only: no X-Forwarded-Prefix.
    assert!(e.request_headers_set.is_empty());
    let (_, e) = rewrite(
        "stripPrefixRegex: {regex: [\"/u/([0-9]+)\", \"/t\"]}",
        &["add"],
    );
    let rw = e.unwrap().path_rewrite.unwrap();
    assert_eq!(rw.pattern, "^(?:(?:/u/([0-9]+))|(?:/t))/?(.*)$");
    assert_eq!(rw.substitution, "/v2/\\2");
    let (_, e) = rewrite(
        "replacePathRegex: {regex: \"^/old/(.*)\", replacement: \"/new/$1\"}",
        &[],
    );
    let rw = e.unwrap().path_rewrite.unwrap();
    assert_eq!(
        (rw.pattern.as_str(), rw.substitution.as_str()),
        ("^/old/(.*)", "/new/\\1")
    );
    let (status, _) = rewrite(
        "replacePathRegex: {regex: \"^/old/(.*)\", replacement: \"/new/$1\"}",
        &["add"],
    );
    assert!(
        status.contains("cannot follow the route's earlier one"),
        "{status}"
    );
    let nine = "(a)(b)(c)(d)(e)(f)(g)(h)(i)";
    let (status, _) = rewrite(&format!("stripPrefixRegex: {{regex: [\"/{nine}\"]}}"), &[]);
    assert!(status.contains("9 capturing groups"), "{status}");
}
