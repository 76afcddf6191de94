//! TraefikServices, service options and cross-namespace references on small manifests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;

use crate::dag::model::transport::TransportOptions;
use crate::dag::model::*;
use crate::dag::{Selection, build};
use crate::snapshot::ClusterSnapshot;

pub(super) fn snapshot(yaml: &str) -> ClusterSnapshot {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    report.snapshot
}

pub(super) fn dag_of(yaml: &str) -> Dag {
    build(&snapshot(yaml), &Selection::default_instance())
}

/// With the Gateway's `allowCrossNamespace` set.
fn dag_crossing(yaml: &str) -> Dag {
    let mut sel = Selection::default_instance();
    sel.allow_cross_namespace = true;
    build(&snapshot(yaml), &sel)
}

pub(super) fn verdict<'a>(dag: &'a Dag, key: &str) -> (&'static str, &'a str) {
    let (ns, name) = key.split_once('/').unwrap();
    let s = dag
        .object_statuses
        .iter()
        .find(|s| s.namespace == ns && s.name == name)
        .unwrap_or_else(|| panic!("no status for {key}: {:#?}", dag.object_statuses));
    (s.current_status.as_str(), s.description.as_str())
}

fn route<'a>(dag: &'a Dag, fqdn: &str) -> &'a Route {
    let v = dag
        .virtual_hosts
        .iter()
        .find(|v| v.fqdn == fqdn)
        .unwrap_or_else(|| panic!("no vhost {fqdn}: {:#?}", dag.object_statuses));
    &v.routes[0]
}

pub(super) fn svc(ns: &str, name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  ports: [{{port: 80, name: http}}, {{port: 443, name: tls}}]\n"
    )
}

pub(super) fn services(ns: &str, names: &[&str]) -> String {
    names.iter().map(|n| svc(ns, n)).collect()
}

/// An IngressRoute `apps/r` for `a.example.com` whose one route lists `services` (YAML flow).
pub(super) fn ir(services: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {{name: r, \
         namespace: apps}}\nspec:\n  routes:\n  - match: Host(`a.example.com`)\n    \
         services: {services}\n"
    )
}

/// A TraefikService `ns/name` with `spec` (YAML flow).
pub(super) fn ts(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: TraefikService\nmetadata: {{name: {name}, \
         namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// (service name, weight) of a route's clusters.
pub(super) fn weights(r: &Route) -> Vec<(String, u32)> {
    r.clusters
        .iter()
        .map(|c| (c.cluster.split('/').nth(1).unwrap().to_owned(), c.weight))
        .collect()
}

pub(super) fn invalid_with(dag: &Dag, expected: &str) {
    let (status, description) = verdict(dag, "apps/r");
    assert_eq!(status, "invalid", "{expected}");
    assert!(
        description.contains(expected),
        "expected {expected:?} in {description:?}"
    );
}

#[test]
fn nested_weighted_services_flatten_to_exact_products() {
    // top: a 9, inner 1; inner: b 1, c 1 → a 18, b 1, c 1.
    let yaml = services("apps", &["a", "b", "c", "d"])
        + &ts(
            "apps",
            "top",
            "{weighted: {services: [{name: a, port: 80, weight: 9}, \
             {name: inner, kind: TraefikService, weight: 1}]}}",
        )
        + &ts(
            "apps",
            "inner",
            "{weighted: {services: [{name: b, port: 80}, {name: c, port: 80}]}}",
        )
        + &ir("[{name: top, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let r = route(&dag, "a.example.com");
    assert_eq!(
        weights(r),
        [("a".into(), 18), ("b".into(), 1), ("c".into(), 1)]
    );

    // Totals 3 and 2 meet at their least common multiple: route [x 1, y 1] with x = [a 2, b 1]
    // and y = [c 1, d 1] → a 4, b 2, c 3, d 3 (shares 1/3, 1/6, 1/4, 1/4).
    let yaml = services("apps", &["a", "b", "c", "d"])
        + &ts(
            "apps",
            "x",
            "{weighted: {services: [{name: a, port: 80, weight: 2}, {name: b, port: 80}]}}",
        )
        + &ts(
            "apps",
            "y",
            "{weighted: {services: [{name: c, port: 80}, {name: d, port: http}]}}",
        )
        + &ir("[{name: x, kind: TraefikService}, {name: y, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(
        weights(route(&dag, "a.example.com")),
        [
            ("a".into(), 4),
            ("b".into(), 2),
            ("c".into(), 3),
            ("d".into(), 3)
        ]
    );

    // The same Service twice adds up; a zero weight stays 0 and changes nobody's share.
    let yaml = services("apps", &["a", "b"])
        + &ts(
            "apps",
            "x",
            "{weighted: {services: [{name: a, port: 80, weight: 2}, {name: b, port: 80, \
             weight: 0}, {name: a, port: 80, weight: 2}]}}",
        )
        + &ir("[{name: x, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(
        weights(route(&dag, "a.example.com")),
        [("a".into(), 4), ("b".into(), 0)]
    );

    // A total Envoy cannot hold is reduced when that is exact: 2^32-2 twice is 1:1.
    let yaml = services("apps", &["a", "b"])
        + &ir("[{name: a, port: 80, weight: 4294967294}, {name: b, port: 80, weight: 4294967294}]");
    let dag = dag_of(&yaml);
    assert_eq!(
        weights(route(&dag, "a.example.com")),
        [("a".into(), 1), ("b".into(), 1)]
    );
}

#[test]
fn cycles_depth_and_blow_ups_are_refused() {
    let yaml = svc("apps", "a")
        + &ts(
            "apps",
            "x",
            "{weighted: {services: [{name: y, kind: TraefikService}]}}",
        )
        + &ts(
            "apps",
            "y",
            "{weighted: {services: [{name: a, port: 80}, {name: x, kind: TraefikService}]}}",
        )
        + &ir("[{name: x, kind: TraefikService}]");
    invalid_with(
        &dag_of(&yaml),
        "TraefikServices reference each other in a cycle: apps/x -> apps/y -> apps/x",
    );

    // t0 → t1 → … → t9 → a: ten levels.
    let mut yaml = svc("apps", "a");
    for i in 0..10 {
        let child = if i == 9 {
            "{name: a, port: 80}".to_owned()
        } else {
            format!("{{name: t{}, kind: TraefikService}}", i + 1)
        };
        yaml += &ts(
            "apps",
            &format!("t{i}"),
            &format!("{{weighted: {{services: [{child}]}}}}"),
        );
    }
    yaml += &ir("[{name: t0, kind: TraefikService}]");
    invalid_with(&dag_of(&yaml), "is nested more than 8 deep");

    // Each level lists the next ten times: 10^6 references without a bound.
    let mut yaml = svc("apps", "a");
    for i in 0..6 {
        let child = if i == 5 {
            "{name: a, port: 80}".to_owned()
        } else {
            format!("{{name: t{}, kind: TraefikService}}", i + 1)
        };
        let list = vec![child; 10].join(", ");
        yaml += &ts(
            "apps",
            &format!("t{i}"),
            &format!("{{weighted: {{services: [{list}]}}}}"),
        );
    }
    yaml += &ir("[{name: t0, kind: TraefikService}]");
    invalid_with(&dag_of(&yaml), "make more than 256 references");

    // Weights whose products no longer fit Envoy's u32 total.
    let yaml = services("apps", &["a", "b", "c"])
        + &ts(
            "apps",
            "x",
            "{weighted: {services: [{name: a, port: 80, weight: 4294967295}, \
             {name: b, port: 80, weight: 4294967294}]}}",
        )
        + &ir(
            "[{name: x, kind: TraefikService, weight: 4294967295}, {name: c, port: 80, \
               weight: 4294967293}]",
        );
    invalid_with(&dag_of(&yaml), "more than Envoy's 4294967295");

    let yaml = svc("apps", "a")
        + &ts(
            "apps",
            "x",
            "{weighted: {services: [{name: a, port: 80, weight: 0}]}}",
        )
        + &ir("[{name: x, kind: TraefikService}]");
    invalid_with(&dag_of(&yaml), "every weight is 0");
}

#[test]
fn mirroring_copies_to_single_services_where_every_request_goes() {
    let yaml = services("apps", &["main", "m1", "m2", "b"])
        + &ts(
            "apps",
            "mirror",
            "{mirroring: {name: main, port: 80, mirrors: [{name: m1, port: 80, percent: 10}, \
             {name: m2, port: 80, percent: 100}, {name: b, port: 80, percent: 0}]}}",
        )
        + &ir("[{name: mirror, kind: TraefikService}]");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let r = route(&dag, "a.example.com");
    assert_eq!(weights(r), [("main".into(), 1)]);
    let mirrors: Vec<(String, u32)> = r
        .extra
        .as_ref()
        .unwrap()
        .mirrors
        .iter()
        .map(|m| (m.cluster.split('/').nth(1).unwrap().to_owned(), m.percent))
        .collect();
    assert_eq!(mirrors, [("m1".into(), 10), ("m2".into(), 100)]);
    for m in &r.extra.as_ref().unwrap().mirrors {
        assert!(dag.clusters.iter().any(|c| c.name == m.cluster), "{m:?}");
    }

    let refused = [
        (
            "{mirroring: {name: main, port: 80, mirrors: [{name: m1, port: 80, percent: 101}]}}",
            "percent: 101 must be between 0 and 100",
        ),
        (
            "{mirroring: {name: main, port: 80, mirrorBody: false, mirrors: []}}",
            "mirrorBody: false is not served",
        ),
        (
            "{mirroring: {name: main, port: 80, maxBodySize: 1024, mirrors: []}}",
            "maxBodySize: not served",
        ),
        (
            "{mirroring: {name: main, port: 80, mirrors: [{name: split, kind: TraefikService, \
             percent: 5}]}}",
            "a mirror that splits over several Services is not served",
        ),
        (
            "{mirroring: {name: main, port: 80, mirrors: [{name: inner, kind: TraefikService, \
             percent: 5}]}}",
            "a mirror that mirrors again is not served",
        ),
        (
            "{highestRandomWeight: {services: [{name: main, port: 80}]}}",
            "spec.highestRandomWeight: this kind of TraefikService is not served",
        ),
        (
            "{failover: {service: {name: main, port: 80}, fallback: {name: b, port: 80}}}",
            "spec.failover: this kind of TraefikService is not served",
        ),
        ("{}", "set weighted or mirroring"),
    ];
    for (spec, expected) in refused {
        let yaml = services("apps", &["main", "m1", "b"])
            + &ts("apps", "t", spec)
            + &ts(
                "apps",
                "split",
                "{weighted: {services: [{name: main, port: 80}, {name: b, port: 80}]}}",
            )
            + &ts(
                "apps",
                "inner",
                "{mirroring: {name: main, port: 80, mirrors: [{name: b, port: 80, percent: 5}]}}",
            )
            + &ir("[{name: t, kind: TraefikService}]");
        invalid_with(&dag_of(&yaml), expected);
    }

    // Under a split, a mirroring service is reached by some requests only: refused, unless
    // the other branches weigh 0. A mirror that is a split with one live branch is one Service.
    let inner = ts(
        "apps",
        "inner",
        "{mirroring: {name: main, port: 80, mirrors: [{name: one, kind: TraefikService, \
         percent: 50}]}}",
    ) + &ts(
        "apps",
        "one",
        "{weighted: {services: [{name: m1, port: 80}, {name: b, port: 80, weight: 0}]}}",
    ) + &services("apps", &["main", "m1", "b"]);
    let dag = dag_of(
        &(inner.clone() + &ir("[{name: inner, kind: TraefikService}, {name: b, port: 80}]")),
    );
    invalid_with(&dag, "Envoy mirrors per route, not per weighted branch");
    let dag = dag_of(
        &(inner + &ir("[{name: inner, kind: TraefikService}, {name: b, port: 80, weight: 0}]")),
    );
    assert_eq!(
        verdict(&dag, "apps/r").0,
        "valid",
        "{:?}",
        verdict(&dag, "apps/r")
    );
    let r = route(&dag, "a.example.com");
    assert_eq!(r.extra.as_ref().unwrap().mirrors.len(), 1);
    assert!(
        r.extra.as_ref().unwrap().mirrors[0]
            .cluster
            .starts_with("apps/m1/")
    );
}

#[test]
fn cross_namespace_references_need_the_gateway_opt_in() {
    let mw = "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: m, \
              namespace: other}\nspec: {addPrefix: {prefix: /x}}\n";
    let cases = [
        ("[{name: s, namespace: other, port: 80}]", "Service other/s"),
        (
            "[{name: t, namespace: other, kind: TraefikService}]",
            "TraefikService other/t",
        ),
    ];
    for (refs, what) in cases {
        let yaml = svc("other", "s")
            + &ts(
                "other",
                "t",
                "{weighted: {services: [{name: s, port: 80}]}}",
            )
            + &ir(refs);
        invalid_with(
            &dag_of(&yaml),
            &format!(
                "{what} is in another namespace: cross-namespace references are refused unless \
                 the Gateway sets spec.allowCrossNamespace"
            ),
        );
        let dag = dag_crossing(&yaml);
        assert_eq!(verdict(&dag, "apps/r").0, "valid", "{refs}");
        // The TraefikService's own references are relative to its namespace.
        assert!(
            route(&dag, "a.example.com").clusters[0]
                .cluster
                .starts_with("other/s/80/")
        );
    }
    let yaml = svc("apps", "s")
        + mw
        + "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: r, \
           namespace: apps}\nspec:\n  routes:\n  - match: Host(`a.example.com`)\n    \
           middlewares: [{name: m, namespace: other}]\n    services: [{name: s, port: 80}]\n";
    invalid_with(&dag_of(&yaml), "Middleware other/m is in another namespace");
    let dag = dag_crossing(&yaml);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");

    // ExternalName Services follow the Gateway's enableExternalNameServices.
    let yaml = "---\napiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: apps}\n\
                spec: {type: ExternalName, externalName: example.org, ports: [{port: 80}]}\n"
        .to_owned()
        + &ir("[{name: ext, port: 80}]");
    invalid_with(&dag_of(&yaml), "spec.enableExternalNameServices");
    let mut sel = Selection::default_instance();
    sel.enable_external_name_services = true;
    let dag = build(&snapshot(&yaml), &sel);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
}

static CA: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
});

fn ca_secret(ns: &str, name: &str, key: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(CA.as_bytes());
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         data: {{{key}: {data}}}\n"
    )
}

fn transport(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {{name: \
         {name}, namespace: apps}}\nspec: {spec}\n"
    )
}

#[test]
fn https_backends_need_a_transport_with_server_name_and_root_cas() {
    let base = svc("apps", "s")
        + &ca_secret("apps", "ca", "tls.ca")
        + &ca_secret("apps", "ca2", "ca.crt")
        + &transport(
            "tr",
            "{serverName: backend.internal, rootCAs: [{secret: ca}], rootCAsSecrets: [ca2]}",
        );
    // Port 443 defaults to https.
    let dag = dag_of(&(base.clone() + &ir("[{name: s, port: 443, serversTransport: tr}]")));
    assert_eq!(
        verdict(&dag, "apps/r").0,
        "valid",
        "{:?}",
        verdict(&dag, "apps/r")
    );
    let c = dag
        .clusters
        .iter()
        .find(|c| c.name == route(&dag, "a.example.com").clusters[0].cluster)
        .unwrap();
    assert_eq!(c.protocol, UpstreamProtocol::Tls);
    let v = c.validation.as_ref().unwrap();
    assert_eq!(v.subject_name, "backend.internal");
    assert_eq!(v.ca_secret, "traefik:apps/tr/ca");
    let secret = dag.secrets.iter().find(|s| s.name == v.ca_secret).unwrap();
    let SecretKind::Ca { ca } = &secret.kind else {
        panic!("{secret:?}")
    };
    assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 2);

    // scheme http with a transport: plain text, the transport's TLS settings unused.
    let dag = dag_of(&(base.clone() + &ir("[{name: s, port: 80, serversTransport: tr}]")));
    assert_eq!(dag.clusters[0].protocol, UpstreamProtocol::Http1);
    assert!(dag.secrets.is_empty());

    let refused = [
        (
            "[{name: s, port: 443}]",
            "needs a serversTransport with serverName and rootCAs",
        ),
        (
            "[{name: s, port: 80, scheme: https}]",
            "needs a serversTransport",
        ),
        (
            "[{name: s, port: 80, scheme: ftp}]",
            "\"ftp\" must be http, https or h2c",
        ),
        (
            "[{name: s, port: 443, serversTransport: bad1}]",
            "spec.insecureSkipVerify: not served",
        ),
        (
            "[{name: s, port: 443, serversTransport: bad2}]",
            "spec.serverName is required",
        ),
        (
            "[{name: s, port: 443, serversTransport: bad3}]",
            "spec.rootCAs is required",
        ),
        (
            "[{name: s, port: 443, serversTransport: bad4}]",
            "configMap: CA bundles from ConfigMaps",
        ),
        (
            "[{name: s, port: 443, serversTransport: bad5}]",
            "Secret apps/nope not found",
        ),
        (
            "[{name: s, port: 443, serversTransport: bad6}]",
            "spec.forwardingTimeouts.responseHeaderTimeout: not served",
        ),
        (
            "[{name: s, port: 443, serversTransport: gone}]",
            "ServersTransport apps/gone not found",
        ),
        (
            "[{name: s, port: 443, serversTransport: bad7}]",
            "spec.serverName",
        ),
        (
            "[{name: s, port: 80, strategy: leastconn}]",
            "\"leastconn\" is not served",
        ),
        (
            "[{name: s, port: 80, healthCheck: {path: /, mode: grpc}}]",
            "healthCheck.mode: \"grpc\" is not served",
        ),
    ];
    let bad = transport(
        "bad1",
        "{serverName: a.internal, insecureSkipVerify: true, rootCAs: [{secret: ca}]}",
    ) + &transport("bad2", "{rootCAs: [{secret: ca}]}")
        + &transport("bad3", "{serverName: a.internal}")
        + &transport(
            "bad4",
            "{serverName: a.internal, rootCAs: [{configMap: ca}]}",
        )
        + &transport(
            "bad5",
            "{serverName: a.internal, rootCAs: [{secret: nope}]}",
        )
        + &transport(
            "bad6",
            "{serverName: a.internal, rootCAs: [{secret: ca}], forwardingTimeouts: \
             {responseHeaderTimeout: 1s}}",
        )
        + &transport(
            "bad7",
            "{serverName: \"a b\\x01\", rootCAs: [{secret: ca}]}",
        );
    for (refs, expected) in refused {
        invalid_with(&dag_of(&(base.clone() + &bad + &ir(refs))), expected);
    }

    let dag = dag_of(&(base.clone() + &ir("[{name: s, port: 80, strategy: p2c}]")));
    assert_eq!(dag.clusters[0].lb_policy, LbPolicy::LeastRequest);

    // scheme h2c: cleartext HTTP/2 (e2e/tests/traefik_more.rs sends it through Envoy), with
    // p2c too; a transport's TLS settings stay unused.
    let dag = dag_of(
        &(base + &ir("[{name: s, port: 80, scheme: h2c, strategy: p2c, serversTransport: tr}]")),
    );
    assert_eq!(
        verdict(&dag, "apps/r").0,
        "valid",
        "{:?}",
        verdict(&dag, "apps/r")
    );
    let c = &dag.clusters[0];
    assert_eq!(
        (c.protocol, c.lb_policy),
        (UpstreamProtocol::H2c, LbPolicy::LeastRequest)
    );
    assert!(c.validation.is_none());
    assert!(dag.secrets.is_empty());
}

/// A ServersTransport without `serverName` or root CAs (timeouts only, or even CAs that do not
/// exist) serves a plain-text backend, as in Traefik, where those fields only check a TLS
/// backend's certificate; a TLS backend is still refused with it, naming the missing field.
#[test]
fn a_transport_without_tls_settings_serves_plain_backends_only() {
    let base = svc("apps", "s")
        + &transport(
            "timeouts",
            "{forwardingTimeouts: {dialTimeout: 2s, idleConnTimeout: 30s}}",
        )
        + &transport(
            "missing-ca",
            "{serverName: a.internal, rootCAs: [{secret: nope}]}",
        );
    for (scheme, name) in [
        ("http", "timeouts"),
        ("h2c", "timeouts"),
        ("http", "missing-ca"),
    ] {
        let dag = dag_of(
            &(base.clone()
                + &ir(&format!(
                    "[{{name: s, port: 80, scheme: {scheme}, serversTransport: {name}}}]"
                ))),
        );
        assert_eq!(
            verdict(&dag, "apps/r"),
            ("valid", "valid IngressRoute"),
            "{scheme} with {name}"
        );
        assert!(dag.clusters[0].validation.is_none());
        assert!(dag.secrets.is_empty());
        let options = dag.clusters[0].transport.as_deref().cloned();
        let expected = (name == "timeouts").then(|| TransportOptions {
            connect_timeout_ms: Some(2000),
            idle_timeout_ms: Some(30_000),
            ..TransportOptions::default()
        });
        assert_eq!(options, expected, "{scheme} with {name}");
    }
    for (name, expected) in [
        (
            "timeouts",
            "services[0].serversTransport: ServersTransport apps/timeouts: spec.serverName is \
             required",
        ),
        (
            "missing-ca",
            "services[0].serversTransport: ServersTransport apps/missing-ca: \
             spec.rootCAs[0]: Secret apps/nope not found",
        ),
    ] {
        let route = ir(&format!(
            "[{{name: s, port: 443, serversTransport: {name}}}]"
        ));
        invalid_with(&dag_of(&(base.clone() + &route)), expected);
    }
}

#[test]
fn options_on_a_traefik_service_reference_are_refused() {
    let yaml = svc("apps", "a")
        + &ts("apps", "x", "{weighted: {services: [{name: a, port: 80}]}}")
        + &ir("[{name: x, kind: TraefikService, port: 80}]");
    invalid_with(&dag_of(&yaml), "port: set on a TraefikService reference");
}

#[test]
fn insecure_skip_verify_is_served_only_where_the_gateway_allows_it() {
    // The root CA names a Secret that does not exist: with verification skipped it is not read.
    let yaml = svc("apps", "s")
        + &transport(
            "tr",
            "{serverName: backend.internal, insecureSkipVerify: true, rootCAs: [{secret: nope}]}",
        )
        + &transport("nosni", "{insecureSkipVerify: true}")
        + &transport("badsni", "{insecureSkipVerify: true, serverName: \"a b\"}")
        + &ir("[{name: s, port: 443, serversTransport: tr}]");
    invalid_with(
        &dag_of(&yaml),
        "spec.insecureSkipVerify: not served: Sluice verifies backends' certificates unless the \
         Gateway sets spec.allowInsecureSkipVerify",
    );
    let mut sel = Selection::default_instance();
    sel.allow_insecure_skip_verify = true;
    let dag = build(&snapshot(&yaml), &sel);
    assert_eq!(
        verdict(&dag, "apps/r").0,
        "valid",
        "{:?}",
        verdict(&dag, "apps/r")
    );
    let c = &dag.clusters[0];
    assert_eq!(c.protocol, UpstreamProtocol::Tls);
    assert!(c.validation.is_none(), "{c:?}");
    let t = c.transport.as_deref().unwrap();
    assert_eq!(t.unverified_sni.as_deref(), Some("backend.internal"));
    assert!(dag.secrets.is_empty(), "{:?}", dag.secrets);
    // Without serverName, no SNI; a serverName that is no DNS name is refused all the same.
    let without = yaml.replace("serversTransport: tr}", "serversTransport: nosni}");
    let dag = build(&snapshot(&without), &sel);
    assert_eq!(verdict(&dag, "apps/r").0, "valid");
    let t = dag.clusters[0].transport.as_deref().unwrap();
    assert_eq!(t.unverified_sni.as_deref(), Some(""));
    let bad = yaml.replace("serversTransport: tr}", "serversTransport: badsni}");
    invalid_with(&build(&snapshot(&bad), &sel), "spec.serverName");
    // A plain-text backend with that transport: plain text, nothing of TLS.
    let plain = yaml.replace("port: 443, serversTransport", "port: 80, serversTransport");
    let dag = build(&snapshot(&plain), &sel);
    assert_eq!(dag.clusters[0].protocol, UpstreamProtocol::Http1);
    assert!(dag.clusters[0].transport.is_none(), "{:?}", dag.clusters[0]);
}
