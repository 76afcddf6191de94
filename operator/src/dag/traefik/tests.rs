//! The Traefik adapter on small manifests: what is served, in which order, and what is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::dag::model::*;
use crate::dag::{Selection, build};
use crate::snapshot::ClusterSnapshot;

fn snapshot(yaml: &str) -> ClusterSnapshot {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    report.snapshot
}

fn dag_of(yaml: &str) -> Dag {
    build(&snapshot(yaml), &Selection::default_instance())
}

/// `(status, description)` of the Traefik IngressRoute `ns/name`.
fn verdict<'a>(dag: &'a Dag, key: &str) -> (&'static str, &'a str) {
    let (ns, name) = key.split_once('/').unwrap();
    let s = dag
        .object_statuses
        .iter()
        .find(|s| s.namespace == ns && s.name == name)
        .unwrap_or_else(|| panic!("no status for {key}: {:#?}", dag.object_statuses));
    (s.current_status.as_str(), s.description.as_str())
}

fn vhost<'a>(dag: &'a Dag, fqdn: &str) -> &'a VirtualHost {
    dag.virtual_hosts
        .iter()
        .find(|v| v.fqdn == fqdn)
        .unwrap_or_else(|| panic!("no vhost {fqdn}: {:#?}", dag.virtual_hosts))
}

fn svc(ns: &str, name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  ports: [{{port: 80, name: http}}]\n"
    )
}

/// A Traefik IngressRoute; `spec` is YAML indented by two spaces.
fn traefik(group: &str, ns: &str, name: &str, created: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: {group}/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: {name}\n  \
         namespace: {ns}\n  creationTimestamp: \"{created}\"\nspec:\n{spec}"
    )
}

fn io(ns: &str, name: &str, spec: &str) -> String {
    traefik("traefik.io", ns, name, "2024-01-01T00:00:00Z", spec)
}

fn middleware(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: {name}, \
         namespace: {ns}}}\nspec:\n{spec}"
    )
}

fn one_route(rule: &str, extra: &str) -> String {
    format!("  routes:\n  - match: {rule}\n    services: [{{name: s, port: 80}}]\n{extra}")
}

#[test]
fn rules_become_routes_in_priority_order_in_the_virtual_host_of_their_host() {
    let spec = concat!(
        "  entryPoints: [web]\n  routes:\n",
        "  - match: Host(`a.example.com`) && PathPrefix(`/`)\n",
        "    services: [{name: s, port: 80}]\n",
        "  - match: Host(`a.example.com`) && Path(`/x`)\n    priority: 100\n",
        "    services: [{name: s, port: http}]\n",
        "  - match: Host(`a.example.com`) && Header(`X-Team`, `blue`)\n",
        "    services: [{name: s, port: 80}]\n",
    );
    let dag = dag_of(&(svc("apps", "s") + &io("apps", "r", spec)));
    assert_eq!(verdict(&dag, "apps/r"), ("valid", "valid IngressRoute"));
    let v = vhost(&dag, "a.example.com");
    assert_eq!(v.owner, "traefik:apps/r");
    assert!(v.tls.is_none());
    let order: Vec<(&str, PathKind, i64, usize)> = v
        .routes
        .iter()
        .map(|r| {
            let e = r.extra.as_deref().unwrap();
            (r.prefix.as_str(), e.path, e.priority, e.headers.len())
        })
        .collect();
    // Priority: explicit 100, then the rules' lengths in bytes (49 > 40).
    assert_eq!(
        order,
        [
            ("/x", PathKind::Exact, 100, 0),
            ("/", PathKind::Prefix, 49, 1),
            ("/", PathKind::Prefix, 40, 0),
        ]
    );
    assert_eq!(
        v.routes[1].extra.as_ref().unwrap().headers[0],
        HeaderCondition {
            name: "x-team".into(),
            value: ValueCondition::Exact("blue".into()),
            invert: false
        }
    );
    assert_eq!(
        dag.clusters.len(),
        1,
        "port by number and by name: one cluster"
    );
}

#[test]
fn weights_default_to_one_and_zero_excludes() {
    let spec = concat!(
        "  routes:\n  - match: Host(`w.example.com`)\n    services:\n",
        "    - {name: a, port: 80, weight: 3}\n    - {name: b, port: 80}\n",
        "    - {name: c, port: 80, weight: 0}\n",
    );
    let dag = dag_of(
        &(svc("apps", "a") + &svc("apps", "b") + &svc("apps", "c") + &io("apps", "w", spec)),
    );
    let weights: Vec<(String, u32)> = vhost(&dag, "w.example.com").routes[0]
        .clusters
        .iter()
        .map(|c| (c.cluster.split('/').nth(1).unwrap().to_owned(), c.weight))
        .collect();
    assert_eq!(weights, [("a".into(), 3), ("b".into(), 1), ("c".into(), 0)]);
}

#[test]
fn the_oldest_claimant_keeps_a_host_across_dialects() {
    let contour = |created: &str| {
        format!(
            "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata:\n  \
             name: c\n  namespace: team-c\n  creationTimestamp: \"{created}\"\nspec:\n  \
             virtualhost: {{fqdn: shared.example.com}}\n  routes:\n  - match: /\n    \
             services: [{{name: s, port: 80}}]\n"
        )
    };
    let t = traefik(
        "traefik.io",
        "team-t",
        "t",
        "2024-06-01T00:00:00Z",
        &one_route("Host(`shared.example.com`) || Host(`own.example.com`)", ""),
    );
    let base = svc("team-c", "s") + &svc("team-t", "s") + &t;

    // The Contour root is older: the Traefik IngressRoute is refused whole, naming the owner.
    let dag = dag_of(&(base.clone() + &contour("2024-01-01T00:00:00Z")));
    assert_eq!(
        verdict(&dag, "team-t/t"),
        (
            "invalid",
            "host \"shared.example.com\" is already used by the older IngressRoute team-c/c"
        )
    );
    assert_eq!(vhost(&dag, "shared.example.com").owner, "team-c/c");
    assert!(
        dag.virtual_hosts
            .iter()
            .all(|v| v.fqdn != "own.example.com")
    );

    // The Traefik IngressRoute is older: the Contour root is refused, naming it.
    let dag = dag_of(&(base + &contour("2025-01-01T00:00:00Z")));
    assert_eq!(verdict(&dag, "team-t/t"), ("valid", "valid IngressRoute"));
    let c = dag.statuses.iter().find(|s| s.name == "c").unwrap();
    assert_eq!(
        (c.current_status, c.description.as_str()),
        (
            Validity::Invalid,
            "host \"shared.example.com\" is already used by the older Traefik IngressRoute team-t/t"
        )
    );
    assert_eq!(vhost(&dag, "shared.example.com").owner, "traefik:team-t/t");
    assert_eq!(vhost(&dag, "own.example.com").owner, "traefik:team-t/t");
}

#[test]
fn between_traefik_routes_age_then_name_decides() {
    let rule = one_route("Host(`x.example.com`)", "");
    let older = traefik("traefik.io", "b", "old", "2024-01-01T00:00:00Z", &rule);
    let newer = traefik("traefik.io", "a", "new", "2024-02-01T00:00:00Z", &rule);
    let dag = dag_of(&(svc("a", "s") + &svc("b", "s") + &older + &newer));
    assert_eq!(verdict(&dag, "b/old").0, "valid");
    assert_eq!(
        verdict(&dag, "a/new"),
        (
            "invalid",
            "host \"x.example.com\" is already used by the older Traefik IngressRoute b/old"
        )
    );
}

#[test]
fn traefik_io_wins_a_name_clash_with_the_legacy_group() {
    let legacy = traefik(
        "traefik.containo.us",
        "apps",
        "r",
        "2024-01-01T00:00:00Z",
        &one_route("Host(`legacy.example.com`)", ""),
    );
    let current = io("apps", "r", &one_route("Host(`current.example.com`)", ""));
    let only_legacy = traefik(
        "traefik.containo.us",
        "apps",
        "l",
        "2024-01-01T00:00:00Z",
        &one_route("Host(`l.example.com`)", ""),
    );
    let dag = dag_of(&(svc("apps", "s") + &legacy + &current + &only_legacy));
    let fqdns: Vec<&str> = dag.virtual_hosts.iter().map(|v| v.fqdn.as_str()).collect();
    assert_eq!(fqdns, ["current.example.com", "l.example.com"]);
    let api: Vec<(&str, &str)> = dag
        .object_statuses
        .iter()
        .map(|s| (s.name.as_str(), s.api_version.as_str()))
        .collect();
    assert_eq!(
        api,
        [
            ("l", "traefik.containo.us/v1alpha1"),
            ("r", "traefik.io/v1alpha1")
        ]
    );
}

/// The `traefik.io` object wins a namespace/name clash for Middlewares and TraefikServices too,
/// whichever document comes first: the route gets its header and its split.
#[test]
fn traefik_io_wins_middleware_and_traefik_service_clashes() {
    let object = |group: &str, kind: &str, spec: &str| {
        format!(
            "---\napiVersion: {group}/v1alpha1\nkind: {kind}\nmetadata: {{name: x, namespace: \
             apps}}\nspec:\n{spec}"
        )
    };
    let header =
        |value: &str| format!("  headers:\n    customRequestHeaders: {{X-Group: {value}}}\n");
    let split = |service: &str| {
        format!("  weighted:\n    services: [{{name: {service}, port: 80, weight: 1}}]\n")
    };
    let legacy = object("traefik.containo.us", "Middleware", &header("legacy"))
        + &object("traefik.containo.us", "TraefikService", &split("old"));
    let current = object("traefik.io", "Middleware", &header("current"))
        + &object("traefik.io", "TraefikService", &split("new"));
    let route = io(
        "apps",
        "r",
        "  routes:\n  - match: Host(`clash.example.com`)\n    middlewares: [{name: x}]\n    \
         services: [{name: x, kind: TraefikService}]\n",
    );
    let base = svc("apps", "old") + &svc("apps", "new") + &route;
    for objects in [legacy.clone() + &current, current + &legacy] {
        let dag = dag_of(&(base.clone() + &objects));
        assert_eq!(verdict(&dag, "apps/r"), ("valid", "valid IngressRoute"));
        let r = &vhost(&dag, "clash.example.com").routes[0];
        let services: Vec<&str> = r
            .clusters
            .iter()
            .map(|c| c.cluster.split('/').nth(1).unwrap())
            .collect();
        assert_eq!(services, ["new"]);
        assert_eq!(
            r.extra.as_deref().unwrap().request_headers_set,
            [("x-group".to_owned(), "current".to_owned())]
        );
    }
}

#[test]
fn class_and_root_namespaces_apply_as_to_contour_roots() {
    let classed = format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: k\n  \
         namespace: apps\n  annotations: {{kubernetes.io/ingress.class: internal}}\nspec:\n{}",
        one_route("Host(`k.example.com`)", "")
    );
    let by_spec = io(
        "apps",
        "spec",
        &format!(
            "  ingressClassName: internal\n{}",
            one_route("Host(`s.example.com`)", "")
        ),
    );
    let plain = io("other", "p", &one_route("Host(`p.example.com`)", ""));
    let snap = snapshot(&(svc("apps", "s") + &svc("other", "s") + &classed + &by_spec + &plain));

    let default = build(&snap, &Selection::default_instance());
    let names: Vec<&str> = default
        .object_statuses
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["p"]);

    let mut internal = Selection::default_instance();
    internal.ingress_class = Some("internal".into());
    internal.root_namespaces = vec!["other".into()];
    let dag = build(&snap, &internal);
    assert_eq!(
        verdict(&dag, "apps/k"),
        (
            "invalid",
            "root IngressRoute cannot be defined in this namespace"
        )
    );
    assert_eq!(verdict(&dag, "apps/spec").0, "invalid");
    assert!(dag.virtual_hosts.is_empty());
}

#[test]
fn what_is_not_served_is_refused_by_name() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "  entryPoints: [metrics]\n",
            "Host(`a.example.com`)",
            "spec.entryPoints[0]: entry point \"metrics\" is not served",
        ),
        (
            "  tls: {secretName: cert}\n",
            "PathPrefix(`/`)",
            "spec.routes[0].match: a rule (or an alternative of it) without Host() is served in \
             the catch-all virtual host, which is plain HTTP only",
        ),
        (
            "  tls: {secretName: cert}\n",
            "Host(`a.example.com`) || HostRegexp(`.+`)",
            "without Host()",
        ),
        (
            "",
            "Host(`a.example.com`) && !ClientIP(`::ffff:10.0.0.0/104`)",
            "spec.routes[0].match: ClientIP(`::ffff:10.0.0.0/104`): an IPv4-mapped IPv6 network \
             is not served",
        ),
        (
            "",
            "Host(`a.example.com`) && ClientIP(`10.0.0.0/33`)",
            "prefix length must be 0 to 32",
        ),
        (
            "",
            "Host(`a.example.com`) && (ClientIP(`::1`) || ClientIP(`10.0.0.300`))",
            "is not an IP address or CIDR",
        ),
        ("", "Host(`*.com`)", "directly under a top-level domain"),
        (
            "  entryPoints: [websecure]\n",
            "Host(`a.example.com`)",
            "`websecure` without spec.tls",
        ),
        (
            "  tls: {certResolver: le}\n",
            "Host(`a.example.com`)",
            "spec.tls.certResolver: ACME",
        ),
        (
            "",
            "Host(`a.example.com`) && Header(`X`, \"a\\nb\")",
            "Header: the value must contain only visible ASCII characters (found byte 0x0a)",
        ),
    ];
    for (extra, rule, expected) in cases {
        let spec = format!("{extra}{}", one_route(&format!("'{rule}'"), ""));
        let dag = dag_of(&(svc("apps", "s") + &io("apps", "r", &spec)));
        let (status, description) = verdict(&dag, "apps/r");
        assert_eq!(status, "invalid", "{rule}");
        assert!(description.contains(expected), "{rule}: {description}");
        assert!(dag.virtual_hosts.is_empty(), "{rule}");
    }
}

#[test]
fn services_of_other_namespaces_or_kinds_are_refused() {
    let cases = [
        (
            "{name: s, namespace: other, port: 80}",
            "cross-namespace references are refused",
        ),
        (
            "{name: s, kind: TraefikService}",
            "TraefikService apps/s not found",
        ),
        ("{name: s, port: 81}", "Service apps/s port 81 not found"),
        ("{name: s, port: web}", "Service apps/s port web not found"),
        (
            "{name: s, port: 80, strategy: p2c, sticky: {cookie: {}}}",
            "sticky: not served with strategy p2c",
        ),
        ("{name: s, port: 80, scheme: https}", "scheme https"),
        ("{name: s, port: 80, weight: -1}", "weight -1"),
    ];
    for (service, expected) in cases {
        let spec =
            format!("  routes:\n  - match: Host(`a.example.com`)\n    services: [{service}]\n");
        let dag = dag_of(&(svc("apps", "s") + &svc("other", "s") + &io("apps", "r", &spec)));
        let (status, description) = verdict(&dag, "apps/r");
        assert_eq!(status, "invalid", "{service}");
        assert!(description.contains(expected), "{service}: {description}");
    }
}

#[test]
fn middlewares_become_rewrites_redirects_and_header_edits() {
    let mws = middleware("apps", "strip", "  stripPrefix: {prefixes: [/api]}\n")
        + &middleware("apps", "add", "  addPrefix: {prefix: /v2}\n")
        + &middleware(
            "apps",
            "https",
            "  redirectScheme: {scheme: https, permanent: true}\n",
        )
        + &middleware(
            "apps",
            "hdr",
            "  headers:\n    customRequestHeaders: {X-Team: blue, X-Drop: \"\"}\n    \
             customResponseHeaders: {X-Served-By: sluice}\n",
        )
        + &middleware(
            "apps",
            "both",
            "  chain: {middlewares: [{name: strip}, {name: add}]}\n",
        );
    let spec = concat!(
        "  routes:\n",
        "  - match: Host(`m.example.com`) && PathPrefix(`/api`)\n",
        "    middlewares: [{name: both}, {name: hdr}]\n    services: [{name: s, port: 80}]\n",
        "  - match: Host(`m.example.com`) && PathPrefix(`/old`)\n",
        "    middlewares: [{name: https}]\n",
    );
    let dag = dag_of(&(svc("apps", "s") + &mws + &io("apps", "r", spec)));
    assert_eq!(verdict(&dag, "apps/r"), ("valid", "valid IngressRoute"));
    let routes = &vhost(&dag, "m.example.com").routes;
    let api = routes.iter().find(|r| r.prefix == "/api").unwrap();
    let e = api.extra.as_deref().unwrap();
    assert_eq!(
        e.path_rewrite,
        Some(RegexRewrite {
            pattern: "^/api/?(.*)$".into(),
            substitution: "/v2/\\1".into()
        })
    );
    assert_eq!(
        e.request_headers_set,
        [
            ("x-forwarded-prefix".to_owned(), "/api".to_owned()),
            ("x-team".to_owned(), "blue".to_owned())
        ]
    );
    assert_eq!(e.request_headers_remove, ["x-drop"]);
    assert_eq!(
        e.response_headers_set,
        [("x-served-by".to_owned(), "sluice".to_owned())]
    );
    // GET is answered 301, other methods 308, as Traefik does; no service needed.
    let old: Vec<(Option<&str>, u16)> = routes
        .iter()
        .filter(|r| r.prefix == "/old")
        .map(|r| {
            let e = r.extra.as_deref().unwrap();
            let method = e
                .headers
                .iter()
                .find(|h| h.name == ":method")
                .map(|h| match &h.value {
                    ValueCondition::Exact(m) => m.as_str(),
                    _ => "?",
                });
            (method, e.redirect.as_ref().unwrap().status)
        })
        .collect();
    assert_eq!(old, [(Some("GET"), 301), (None, 308)]);
}

#[test]
fn unserved_or_missing_middlewares_make_the_route_invalid() {
    let cases = [
        (
            middleware("apps", "m", "  redirectRegex: {regex: a, replacement: b}\n"),
            "Middleware apps/m (redirectRegex): regex: must start with ^",
        ),
        (String::new(), "Middleware apps/m not found"),
        (
            middleware("apps", "m", "  digestAuth: {users: [a]}\n"),
            "middleware kind \"digestAuth\" is not supported",
        ),
        (
            middleware("apps", "m", "  chain: {middlewares: [{name: m}]}\n"),
            "chain cycle",
        ),
    ];
    for (mw, expected) in cases {
        let spec = one_route("Host(`a.example.com`)", "    middlewares: [{name: m}]\n");
        let dag = dag_of(&(svc("apps", "s") + &mw + &io("apps", "r", &spec)));
        let (status, description) = verdict(&dag, "apps/r");
        assert_eq!(status, "invalid", "{expected}");
        assert!(description.contains(expected), "{description}");
    }
    let spec = one_route(
        "Host(`a.example.com`)",
        "    middlewares: [{name: m, namespace: other}]\n",
    );
    let dag = dag_of(
        &(svc("apps", "s")
            + &middleware("other", "m", "  addPrefix: {prefix: /x}\n")
            + &io("apps", "r", &spec)),
    );
    assert!(verdict(&dag, "apps/r").1.contains("cross-namespace"));
}

/// Hostile sizes are refused by the object, never paid for by the Gateway: chains that list
/// chains many times (exponential without a bound), header edits too large to copy into every
/// Envoy route, rules that make too many Envoy routes, names Envoy refuses.
#[test]
fn hostile_sizes_make_the_route_invalid() {
    // c1 lists c2 ten times, …, c8 lists the headers middleware ten times: 10^8 leaves.
    let mut chains = String::new();
    for i in 1..=8 {
        let next = if i == 8 {
            "h".to_owned()
        } else {
            format!("c{}", i + 1)
        };
        let refs = vec![format!("{{name: {next}}}"); 10].join(", ");
        chains += &middleware(
            "apps",
            &format!("c{i}"),
            &format!("  chain: {{middlewares: [{refs}]}}\n"),
        );
    }
    chains += &middleware("apps", "h", "  headers: {customRequestHeaders: {X-A: b}}\n");
    let big = "v".repeat(3000);
    let long_name = "x".repeat(300);
    let cases = [
        (chains, "[{name: c1}]", "chains expanded, are more than 64"),
        (
            middleware(
                "apps",
                "m",
                &format!(
                    "  headers: {{customRequestHeaders: {{X-A: {big}, X-B: {big}, X-C: {big}}}}}\n"
                ),
            ),
            "[{name: m}]",
            "the header edits add up to",
        ),
        (
            middleware(
                "apps",
                "m",
                &format!("  headers: {{customResponseHeaders: {{{long_name}: v}}}}\n"),
            ),
            "[{name: m}]",
            "a header name is at most 256 bytes long",
        ),
    ];
    for (mw, refs, expected) in cases {
        let spec = one_route(
            "Host(`a.example.com`)",
            &format!("    middlewares: {refs}\n"),
        );
        let dag = dag_of(&(svc("apps", "s") + &mw + &io("apps", "r", &spec)));
        let (status, description) = verdict(&dag, "apps/r");
        assert_eq!(status, "invalid", "{expected}");
        assert!(description.contains(expected), "{description}");
    }

    for rule in [
        format!("Host(`a.example.com`) && Query(`{long_name}`, `1`)"),
        format!("Host(`a.example.com`) && Header(`{long_name}`, `1`)"),
    ] {
        let dag = dag_of(&(svc("apps", "s") + &io("apps", "r", &one_route(&rule, ""))));
        let (status, description) = verdict(&dag, "apps/r");
        assert_eq!(status, "invalid", "{rule}");
        assert!(description.contains("256 bytes"), "{description}");
    }

    // 17 rules of 64 hosts each: 1,088 Envoy routes.
    let hosts = (0..64)
        .map(|i| format!("Host(`h{i}.example.com`)"))
        .collect::<Vec<_>>()
        .join(" || ");
    let mut spec = "  entryPoints: [web]\n  routes:\n".to_owned();
    for i in 0..17 {
        spec += &format!(
            "  - match: ({hosts}) && PathPrefix(`/p{i}`)\n    services: [{{name: s, port: 80}}]\n"
        );
    }
    let dag = dag_of(&(svc("apps", "s") + &io("apps", "r", &spec)));
    let (status, description) = verdict(&dag, "apps/r");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("more than 1024 Envoy routes"),
        "{description}"
    );
    assert!(dag.virtual_hosts.is_empty());
}

#[test]
fn client_ip_becomes_address_conditions_of_the_route_in_its_own_host() {
    let spec = concat!(
        "  entryPoints: [web]\n  routes:\n",
        "  - match: Host(`a.example.com`) && (ClientIP(`10.0.0.0/8`) || !ClientIP(`::1`))\n",
        "    services: [{name: s, port: 80}]\n",
        "  - match: ClientIP(`0.0.0.0/0`)\n    services: [{name: s, port: 80}]\n",
    );
    let dag = dag_of(&(svc("apps", "s") + &io("apps", "r", spec)));
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let sources = |fqdn: &str| -> Vec<Vec<(String, bool)>> {
        vhost(&dag, fqdn)
            .routes
            .iter()
            .map(|r| {
                r.extra
                    .as_ref()
                    .unwrap()
                    .sources
                    .iter()
                    .map(|s| {
                        (
                            format!("{}/{}", s.range.address, s.range.prefix_len),
                            s.invert,
                        )
                    })
                    .collect()
            })
            .collect()
    };
    // The host-less rule claims only the catch-all (and reaches the object's own host, as in
    // Traefik), never another name.
    assert_eq!(
        sources("a.example.com"),
        [
            vec![("10.0.0.0/8".to_owned(), false)],
            vec![("::1/128".to_owned(), true)],
            vec![("0.0.0.0/0".to_owned(), false)],
        ]
    );
    assert_eq!(sources("*"), [vec![("0.0.0.0/0".to_owned(), false)]]);
    assert_eq!(dag.virtual_hosts.len(), 2);
}
