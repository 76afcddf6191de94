//! Service options (`passHostHeader`, `sticky`, `healthCheck`) in the DAG, and hostile values of
//! them refused per route, naming the field, with a neighbour left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::dag::model::traefik_options::{EndpointVariant, StickyCookie};
use crate::dag::model::*;
use crate::dag::{Selection, build};

fn dag_of(yaml: &str) -> Dag {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    build(&report.snapshot, &Selection::default_instance())
}

fn verdict<'a>(dag: &'a Dag, name: &str) -> (&'static str, &'a str) {
    let s = dag
        .object_statuses
        .iter()
        .find(|s| s.namespace == "apps" && s.name == name)
        .unwrap_or_else(|| panic!("no status for {name}: {:#?}", dag.object_statuses));
    (s.current_status.as_str(), s.description.as_str())
}

const SERVICE: &str = "\
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: apps}
subsets:
- addresses: [{ip: 10.0.0.1}, {ip: 10.0.0.2}]
  ports: [{name: http, port: 8080}]
";

/// An IngressRoute `apps/<name>` for `<name>.example.com` whose one route has `services`.
fn ir(name: &str, services: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}, \
         namespace: apps}}\nspec:\n  routes:\n  - match: Host(`{name}.example.com`)\n    \
         services: {services}\n"
    )
}

fn first_route<'a>(dag: &'a Dag, name: &str) -> &'a Route {
    let fqdn = format!("{name}.example.com");
    &dag.virtual_hosts
        .iter()
        .find(|v| v.fqdn == fqdn)
        .unwrap_or_else(|| panic!("no vhost {fqdn}: {:#?}", dag.object_statuses))
        .routes[0]
}

fn cluster_of<'a>(dag: &'a Dag, r: &Route) -> &'a Cluster {
    let name = &r.clusters[0].cluster;
    dag.clusters.iter().find(|c| &c.name == name).unwrap()
}

fn eds_name(c: &Cluster) -> &str {
    match &c.upstream {
        Upstream::Eds { service_name } => service_name,
        Upstream::Dns { .. } => panic!("not EDS"),
    }
}

#[test]
fn pass_host_header_false_gives_the_route_the_backend_address_as_host() {
    let yaml = SERVICE.to_owned()
        + &ir("plain", "[{name: web, port: 80}]")
        + &ir("addr", "[{name: web, port: 80, passHostHeader: false}]");
    let dag = dag_of(&yaml);
    assert_eq!(
        verdict(&dag, "addr").0,
        "valid",
        "{}",
        verdict(&dag, "addr").1
    );
    let plain = first_route(&dag, "plain");
    let addr = first_route(&dag, "addr");
    let options = |r: &Route| r.extra.as_ref().unwrap().service_options.clone();
    assert_eq!(options(plain), None);
    assert!(options(addr).unwrap().address_host);
    let (pc, ac) = (cluster_of(&dag, plain), cluster_of(&dag, addr));
    assert_ne!(pc.name, ac.name, "the address-host cluster is its own");
    assert_eq!(eds_name(pc), "apps/web/http");
    assert!(EndpointVariant::of(eds_name(ac)).address_host);
    // Both assignments are served, with the same addresses.
    let addresses = |name: &str| {
        dag.endpoints
            .iter()
            .find(|e| e.service_name == name)
            .unwrap_or_else(|| panic!("no endpoints {name}"))
            .addresses
            .clone()
    };
    assert_eq!(addresses(eds_name(pc)), addresses(eds_name(ac)));
    assert_eq!(addresses(eds_name(ac)).len(), 2);
}

#[test]
fn sticky_cookies_hash_a_ring_and_keep_their_attributes() {
    let yaml = SERVICE.to_owned()
        + &ir(
            "s1",
            "[{name: web, port: 80, sticky: {cookie: {name: pin, secure: true, httpOnly: true, \
             sameSite: lax, maxAge: 60, path: /app, domain: example.com}}}]",
        )
        + &ir("s2", "[{name: web, port: 80, sticky: {cookie: {}}}]");
    let dag = dag_of(&yaml);
    let r1 = first_route(&dag, "s1");
    let sticky = |r: &Route| {
        r.extra
            .as_ref()
            .unwrap()
            .service_options
            .as_ref()
            .unwrap()
            .sticky
            .clone()
            .unwrap()
    };
    assert_eq!(
        sticky(r1),
        StickyCookie {
            name: "pin".into(),
            path: "/app".into(),
            max_age_seconds: 60,
            attributes: vec![
                ("Secure".into(), String::new()),
                ("SameSite".into(), "Lax".into()),
                ("Domain".into(), "example.com".into()),
            ],
        }
    );
    assert_eq!(cluster_of(&dag, r1).lb_policy, LbPolicy::RingHash);
    let default = sticky(first_route(&dag, "s2"));
    assert_eq!(default.path, "/");
    assert_eq!(default.max_age_seconds, 0, "a session cookie");
    assert!(default.attributes.is_empty());
    // Traefik's form: `_` and five hex digits.
    assert_eq!(default.name.len(), 6, "{}", default.name);
    assert!(default.name.starts_with('_'));
    assert!(default.name[1..].bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn health_checks_follow_traefik_defaults_and_fields() {
    let yaml = SERVICE.to_owned()
        + &ir(
            "h1",
            "[{name: web, port: 80, healthCheck: {path: /health}}]",
        )
        + &ir(
            "h2",
            "[{name: web, port: 80, healthCheck: {path: /ready, method: head, status: 204, \
             port: 9000, interval: 2s, unhealthyInterval: 500ms, timeout: 1, hostname: \
             check.internal, headers: {X-Check: yes, Y: '%a'}}}]",
        );
    let dag = dag_of(&yaml);
    let c1 = cluster_of(&dag, first_route(&dag, "h1"));
    let hc1 = c1.active_health_check.as_deref().unwrap();
    assert_eq!(
        (
            hc1.path.as_str(),
            hc1.method.as_str(),
            hc1.interval_ms,
            hc1.unhealthy_interval_ms,
            hc1.timeout_ms,
            hc1.expected_statuses
        ),
        ("/health", "GET", 30_000, 30_000, 5_000, (200, 400))
    );
    let v1 = EndpointVariant::of(eds_name(c1));
    assert!(v1.health_host && v1.health_port.is_none() && !v1.address_host);
    let c2 = cluster_of(&dag, first_route(&dag, "h2"));
    let hc2 = c2.active_health_check.as_deref().unwrap();
    assert_eq!(
        (
            hc2.method.as_str(),
            hc2.interval_ms,
            hc2.unhealthy_interval_ms,
            hc2.timeout_ms,
            hc2.expected_statuses,
            hc2.host.as_str()
        ),
        ("HEAD", 2_000, 500, 1_000, (204, 205), "check.internal")
    );
    assert_eq!(
        hc2.headers,
        [
            ("x-check".to_owned(), "yes".to_owned()),
            ("y".to_owned(), "%a".to_owned())
        ]
    );
    let v2 = EndpointVariant::of(eds_name(c2));
    assert!(!v2.health_host, "hostname set: no per-endpoint Host");
    assert_eq!(v2.health_port, Some(9000));
    assert_ne!(c1.name, c2.name);
}

/// Each hostile value makes only its own IngressRoute invalid, naming the field; the
/// neighbour's route and cluster are unchanged.
#[test]
fn hostile_service_options_are_refused_per_route() {
    let cases = [
        ("sticky: {}", "sticky.cookie: required"),
        ("sticky: {cookie: {name: 'a b'}}", "sticky.cookie.name"),
        ("sticky: {cookie: {name: 'a;b'}}", "sticky.cookie.name"),
        (
            "sticky: {cookie: {name: \"a\\u0001\"}}",
            "sticky.cookie.name",
        ),
        (
            "sticky: {cookie: {maxAge: -1}}",
            "sticky.cookie.maxAge: -1 is negative",
        ),
        (
            "sticky: {cookie: {maxAge: 9223372036854775807}}",
            "sticky.cookie.maxAge",
        ),
        (
            "sticky: {cookie: {sameSite: Bogus}}",
            "sticky.cookie.sameSite",
        ),
        ("sticky: {cookie: {path: '/a;b'}}", "sticky.cookie.path"),
        ("sticky: {cookie: {path: 'a'}}", "sticky.cookie.path"),
        (
            "sticky: {cookie: {domain: 'a;b=c'}}",
            "sticky.cookie.domain",
        ),
        ("healthCheck: {}", "healthCheck.path: required"),
        ("healthCheck: {path: \"/\\u0000\"}", "healthCheck.path"),
        (
            "healthCheck: {path: /, interval: 0}",
            "healthCheck.interval",
        ),
        (
            "healthCheck: {path: /, interval: -1s}",
            "healthCheck.interval",
        ),
        (
            "healthCheck: {path: /, interval: 1ms}",
            "healthCheck.interval",
        ),
        (
            "healthCheck: {path: /, interval: 1000000h}",
            "healthCheck.interval",
        ),
        (
            "healthCheck: {path: /, interval: 2147483647}",
            "healthCheck.interval",
        ),
        ("healthCheck: {path: /, timeout: 0s}", "healthCheck.timeout"),
        (
            "healthCheck: {path: /, unhealthyInterval: 25h}",
            "healthCheck.unhealthyInterval",
        ),
        (
            "healthCheck: {path: /, method: CONNECT}",
            "healthCheck.method",
        ),
        (
            "healthCheck: {path: /, method: 'G T'}",
            "healthCheck.method",
        ),
        ("healthCheck: {path: /, status: 99}", "healthCheck.status"),
        ("healthCheck: {path: /, status: 600}", "healthCheck.status"),
        ("healthCheck: {path: /, port: 70000}", "healthCheck.port"),
        ("healthCheck: {path: /, port: -1}", "healthCheck.port"),
        (
            "healthCheck: {path: /, scheme: https}",
            "healthCheck.scheme",
        ),
        (
            "healthCheck: {path: /, hostname: 'a b'}",
            "healthCheck.hostname",
        ),
        (
            "healthCheck: {path: /, hostname: \"a\\r\\nb\"}",
            "healthCheck.hostname",
        ),
        (
            "healthCheck: {path: /, headers: {'a b': x}}",
            "healthCheck.headers",
        ),
        (
            "healthCheck: {path: /, headers: {':path': x}}",
            "healthCheck.headers",
        ),
        (
            "healthCheck: {path: /, headers: {Host: x}}",
            "healthCheck.headers: Host",
        ),
        (
            "healthCheck: {path: /, headers: {a: \"x\\u0000\"}}",
            "healthCheck.headers[a]",
        ),
        (
            "healthCheck: {path: /, headers: {a: x, A: y}}",
            "given twice",
        ),
    ];
    let neighbour = SERVICE.to_owned() + &ir("ok", "[{name: web, port: 80}]");
    let alone = dag_of(&neighbour);
    for (options, expected) in cases {
        let yaml = neighbour.clone() + &ir("bad", &format!("[{{name: web, port: 80, {options}}}]"));
        let dag = dag_of(&yaml);
        let (status, description) = verdict(&dag, "bad");
        assert_eq!(status, "invalid", "{options}");
        assert!(
            description.contains(&format!("spec.routes[0].services[0].{expected}"))
                || description.contains(expected),
            "{options}: {description}"
        );
        assert!(
            description.contains("services[0]"),
            "{options}: {description}"
        );
        assert_eq!(dag.virtual_hosts, alone.virtual_hosts, "{options}");
        assert_eq!(dag.clusters, alone.clusters, "{options}");
    }
}

#[test]
fn routes_mixing_sticky_or_host_settings_are_refused() {
    let other = "\
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: apps}
spec:
  ports: [{name: http, port: 80}]
";
    let cases = [
        (
            "[{name: web, port: 80, sticky: {cookie: {name: a}}}, {name: other, port: 80}]",
            "the same sticky cookie",
        ),
        (
            "[{name: web, port: 80, sticky: {cookie: {name: a}}}, {name: other, port: 80, \
             sticky: {cookie: {name: b}}}]",
            "the same sticky cookie",
        ),
    ];
    for (services, expected) in cases {
        let dag = dag_of(&(SERVICE.to_owned() + other + &ir("mix", services)));
        let (status, description) = verdict(&dag, "mix");
        assert_eq!(status, "invalid", "{services}");
        assert!(description.contains(expected), "{services}: {description}");
    }
    // A weight-0 service takes no traffic, so its settings do not matter.
    let dag = dag_of(
        &(SERVICE.to_owned()
            + other
            + &ir(
                "zero",
                "[{name: web, port: 80, sticky: {cookie: {name: a}}}, {name: other, port: 80, \
                 weight: 0}]",
            )),
    );
    assert_eq!(
        verdict(&dag, "zero").0,
        "valid",
        "{}",
        verdict(&dag, "zero").1
    );
}

#[test]
fn compress_options_the_gateways_compressor_cannot_take_are_refused() {
    let mw = |spec: &str| {
        format!(
            "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: c, \
             namespace: apps}}\nspec: {{compress: {spec}}}\n"
        )
    };
    let ir = |name: &str| {
        format!(
            "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {{name: {name}, \
             namespace: apps}}\nspec:\n  routes:\n  - match: Host(`{name}.example.com`)\n    \
             middlewares: [{{name: c}}]\n    services: [{{name: web, port: 80}}]\n"
        )
    };
    for (spec, expected) in [
        ("{encodings: [br]}", "encodings: must include gzip"),
        (
            "{encodings: [gzip, br], defaultEncoding: br}",
            "defaultEncoding",
        ),
        (
            "{excludedContentTypes: [text/css]}",
            "excludedContentTypes: not served",
        ),
        (
            "{includedContentTypes: [text/css]}",
            "includedContentTypes: not served",
        ),
        ("{minResponseBodyBytes: 10}", "minResponseBodyBytes"),
    ] {
        let dag = dag_of(&(SERVICE.to_owned() + &mw(spec) + &ir("z")));
        let (status, description) = verdict(&dag, "z");
        assert_eq!(status, "invalid", "{spec}");
        assert!(
            description.contains("spec.routes[0].middlewares[0]") && description.contains(expected),
            "{spec}: {description}"
        );
    }
    let dag = dag_of(&(SERVICE.to_owned() + &mw("{encodings: [zstd, gzip]}") + &ir("ok")));
    assert_eq!(verdict(&dag, "ok").0, "valid", "{}", verdict(&dag, "ok").1);
    assert!(first_route(&dag, "ok").extra.as_ref().unwrap().compress);
}
