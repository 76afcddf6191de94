//! Behaviour of the DAG builder on small snapshots written as manifests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::model::*;
use super::{Selection, build};
use crate::api::ingressroute::TlsVersion;
use crate::snapshot::ClusterSnapshot;

/// A snapshot from multi-document YAML, through the real manifest loader; fixtures must load
/// without errors or warnings (a misspelt field would otherwise be silently ignored).
pub(super) fn snapshot(yaml: &str) -> ClusterSnapshot {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(
        report.errors.is_empty(),
        "fixture errors: {:?}",
        report.errors
    );
    assert!(
        report.warnings.is_empty(),
        "fixture warnings: {:?}",
        report.warnings
    );
    report.snapshot
}

fn default_build(yaml: &str) -> Dag {
    build(&snapshot(yaml), &Selection::default_instance())
}

pub(super) fn status<'a>(dag: &'a Dag, key: &str) -> (&'static str, &'a str) {
    let (ns, name) = key.split_once('/').unwrap();
    let s = dag
        .statuses
        .iter()
        .find(|s| s.namespace == ns && s.name == name)
        .unwrap_or_else(|| panic!("no status for {key}: {:#?}", dag.statuses));
    (s.current_status.as_str(), s.description.as_str())
}

fn vhost<'a>(dag: &'a Dag, fqdn: &str) -> &'a VirtualHost {
    dag.virtual_hosts
        .iter()
        .find(|v| v.fqdn == fqdn)
        .unwrap_or_else(|| panic!("no vhost {fqdn}: {:#?}", dag.virtual_hosts))
}

fn prefixes(v: &VirtualHost) -> Vec<(&str, &str)> {
    v.routes
        .iter()
        .map(|r| (r.prefix.as_str(), r.owner.as_str()))
        .collect()
}

pub(super) fn svc(ns: &str, name: &str, port: i32) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  ports: [{{port: {port}, name: http, targetPort: 8080}}]\n"
    )
}

pub(super) fn root(ns: &str, name: &str, fqdn: &str, routes: &str) -> String {
    format!(
        "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec:\n  virtualhost: {{fqdn: {fqdn}}}\n  routes:\n{routes}"
    )
}

pub(super) fn child(ns: &str, name: &str, routes: &str) -> String {
    format!(
        "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec:\n  routes:\n{routes}"
    )
}

pub(super) fn to_svc(prefix: &str, name: &str) -> String {
    format!("  - match: {prefix}\n    services: [{{name: {name}, port: 80}}]\n")
}

pub(super) fn to_delegate(prefix: &str, name: &str, ns: Option<&str>) -> String {
    match ns {
        Some(ns) => {
            format!("  - match: {prefix}\n    delegate: {{name: {name}, namespace: {ns}}}\n")
        }
        None => format!("  - match: {prefix}\n    delegate: {{name: {name}}}\n"),
    }
}

/// A real certificate and its key (the DAG parses both and checks that they match).
static PAIR: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["tls.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
});

/// Another pair, whose key matches none of [`PAIR`]'s.
static OTHER_PAIR: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["other.com".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
});

#[allow(non_snake_case)]
fn CERT() -> &'static str {
    &PAIR.0
}

#[allow(non_snake_case)]
fn KEY() -> &'static str {
    &PAIR.1
}

pub(super) fn tls_secret(ns: &str, name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}\n",
        CERT(),
        KEY()
    )
}

#[test]
fn basic_root_is_valid_and_routes_to_its_service() {
    let dag = default_build(
        &(svc("default", "s1", 80)
            + &root("default", "basic", "foo-basic.bar.com", &to_svc("/", "s1"))),
    );
    assert_eq!(
        status(&dag, "default/basic"),
        ("valid", "valid IngressRoute")
    );
    let v = vhost(&dag, "foo-basic.bar.com");
    assert_eq!(v.owner, "default/basic");
    assert_eq!(v.routes.len(), 1);
    let c = &v.routes[0].clusters;
    assert_eq!(c.len(), 1);
    assert!(
        c[0].cluster.starts_with("default/s1/80/"),
        "{}",
        c[0].cluster
    );
    assert_eq!(dag.clusters.len(), 1);
    assert_eq!(
        dag.clusters[0].upstream,
        Upstream::Eds {
            service_name: "default/s1/http".into()
        }
    );
}

#[test]
fn unreferenced_child_is_orphaned() {
    let dag = default_build(
        &(svc("default", "s1", 80) + &child("default", "lonely", &to_svc("/", "s1"))),
    );
    assert_eq!(
        status(&dag, "default/lonely"),
        (
            "orphaned",
            "this IngressRoute is not part of a delegation chain from a root IngressRoute"
        )
    );
    assert!(dag.virtual_hosts.is_empty());
}

#[test]
fn root_outside_root_namespaces_is_invalid() {
    let yaml = svc("team", "s1", 80) + &root("team", "r", "a.com", &to_svc("/", "s1"));
    let mut sel = Selection::default_instance();
    sel.root_namespaces = vec!["admin".into()];
    let dag = build(&snapshot(&yaml), &sel);
    assert_eq!(
        status(&dag, "team/r"),
        (
            "invalid",
            "root IngressRoute cannot be defined in this namespace"
        )
    );
    assert!(dag.virtual_hosts.is_empty());
}

#[test]
fn fqdn_required_and_no_wildcards() {
    let yaml = svc("default", "s1", 80)
        + &root("default", "empty", "\"\"", &to_svc("/", "s1"))
        + &root("default", "wild", "\"*.foo.com\"", &to_svc("/", "s1"));
    let dag = default_build(&yaml);
    assert_eq!(
        status(&dag, "default/empty"),
        ("invalid", "Spec.VirtualHost.Fqdn must be specified")
    );
    assert_eq!(
        status(&dag, "default/wild"),
        (
            "invalid",
            "Spec.VirtualHost.Fqdn \"*.foo.com\" cannot use wildcards"
        )
    );
}

#[test]
fn oldest_root_keeps_a_contested_fqdn() {
    let routes = to_svc("/", "s1");
    let newer = root("a", "first", "Shared.com", &routes).replace(
        "namespace: a}",
        "namespace: a, creationTimestamp: \"2024-02-01T00:00:00Z\"}",
    );
    let older = root("b", "second", "shared.com", &routes).replace(
        "namespace: b}",
        "namespace: b, creationTimestamp: \"2024-01-01T00:00:00Z\"}",
    );
    let yaml = svc("a", "s1", 80) + &svc("b", "s1", 80) + &newer + &older;
    let dag = default_build(&yaml);
    assert_eq!(status(&dag, "b/second").0, "valid");
    assert_eq!(
        status(&dag, "a/first"),
        (
            "invalid",
            "fqdn \"shared.com\" is already used by the older IngressRoute b/second"
        )
    );
    assert_eq!(vhost(&dag, "shared.com").owner, "b/second");

    // Without timestamps, namespace/name decides.
    let yaml = svc("a", "s1", 80)
        + &svc("b", "s1", 80)
        + &root("b", "x", "s.com", &routes)
        + &root("a", "y", "s.com", &routes);
    let dag = default_build(&yaml);
    assert_eq!(status(&dag, "a/y").0, "valid");
    assert_eq!(
        status(&dag, "b/x").1,
        "fqdn \"s.com\" is already used by the older IngressRoute a/y"
    );
}

#[test]
fn tls_secret_must_exist_and_be_well_formed() {
    let tls_root = |secret: &str| {
        root("default", "tls", "tls.com", &to_svc("/", "s1")).replace(
            "virtualhost: {fqdn: tls.com}",
            &format!("virtualhost: {{fqdn: tls.com, tls: {{secretName: {secret}}}}}"),
        )
    };
    let dag = default_build(&(svc("default", "s1", 80) + &tls_root("missing")));
    assert_eq!(
        status(&dag, "default/tls"),
        (
            "invalid",
            "TLS Secret [default/missing] not found or is malformed"
        )
    );

    let bad = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: bad, namespace: default}\ntype: kubernetes.io/tls\nstringData: {}\ndata: {tls.crt: bm90IGEgY2VydA==, tls.key: bm90IGEga2V5}\n";
    let dag = default_build(&(svc("default", "s1", 80) + bad + &tls_root("bad")));
    assert_eq!(
        status(&dag, "default/tls"),
        (
            "invalid",
            "TLS Secret [default/bad] not found or is malformed: tls.crt holds no certificate"
        )
    );

    // Only a BEGIN line, as the old check accepted: the certificate must parse.
    let fake = tls_secret("default", "fake").replace(
        &format!("{:?}", CERT()),
        &format!(
            "{:?}",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        ),
    );
    let dag = default_build(&(svc("default", "s1", 80) + &fake + &tls_root("fake")));
    let (state, description) = status(&dag, "default/tls");
    assert_eq!(state, "invalid");
    assert!(
        description.contains("certificate 1 is not a valid X.509 certificate"),
        "{description}"
    );

    // A real certificate with another certificate's key.
    let mismatched = tls_secret("default", "mismatched")
        .replace(&format!("{:?}", KEY()), &format!("{:?}", OTHER_PAIR.1));
    let dag = default_build(&(svc("default", "s1", 80) + &mismatched + &tls_root("mismatched")));
    assert_eq!(
        status(&dag, "default/tls"),
        (
            "invalid",
            "TLS Secret [default/mismatched] not found or is malformed: tls.key does not match \
             the certificate in tls.crt"
        )
    );
    assert!(dag.secrets.is_empty() && dag.virtual_hosts.is_empty());

    // Contour only used Secrets of type kubernetes.io/tls.
    let opaque = tls_secret("default", "opaque").replace("kubernetes.io/tls", "Opaque");
    let dag = default_build(&(svc("default", "s1", 80) + &opaque + &tls_root("opaque")));
    assert_eq!(
        status(&dag, "default/tls"),
        (
            "invalid",
            "TLS Secret [default/opaque] not found or is malformed: its type is \"Opaque\", not \
             \"kubernetes.io/tls\""
        )
    );

    let dag = default_build(
        &(svc("default", "s1", 80) + &tls_secret("default", "good") + &tls_root("good")),
    );
    assert_eq!(status(&dag, "default/tls").0, "valid");
    let tls = vhost(&dag, "tls.com").tls.clone().unwrap();
    assert_eq!(tls.secret.as_deref(), Some("default/good"));
    assert_eq!(tls.minimum_protocol_version, TlsVersion::V1_1);
    assert_eq!(dag.secrets.len(), 1);
    assert!(
        matches!(&dag.secrets[0].kind, SecretKind::Tls { cert_chain, .. } if cert_chain == CERT())
    );
}

#[test]
fn cross_namespace_secrets_need_a_delegation() {
    let routes = to_svc("/", "s1");
    let r = |ns: &str| {
        root(ns, "www", &format!("{ns}.com"), &routes).replace(
            &format!("virtualhost: {{fqdn: {ns}.com}}"),
            &format!("virtualhost: {{fqdn: {ns}.com, tls: {{secretName: www-admin/wildcard}}}}"),
        )
    };
    let delegation = |targets: &str| {
        format!(
            "---\napiVersion: contour.heptio.com/v1beta1\nkind: TLSCertificateDelegation\n\
             metadata: {{name: d, namespace: www-admin}}\nspec:\n  delegations:\n  - secretName: wildcard\n    targetNamespaces: {targets}\n"
        )
    };
    let base = tls_secret("www-admin", "wildcard")
        + &svc("example-com", "s1", 80)
        + &svc("other", "s1", 80)
        + &r("example-com")
        + &r("other");

    let dag = default_build(&base);
    assert_eq!(
        status(&dag, "example-com/www"),
        (
            "invalid",
            "www-admin/wildcard: certificate delegation not permitted"
        )
    );
    assert!(dag.secrets.is_empty());

    let dag = default_build(&(base.clone() + &delegation("[example-com]")));
    assert_eq!(status(&dag, "example-com/www").0, "valid");
    assert_eq!(
        status(&dag, "other/www"),
        (
            "invalid",
            "www-admin/wildcard: certificate delegation not permitted"
        )
    );
    assert_eq!(
        dag.secrets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["www-admin/wildcard"]
    );

    let dag = default_build(&(base + &delegation("[\"*\"]")));
    assert_eq!(status(&dag, "other/www").0, "valid");
}

#[test]
fn gateway_tls_floor_raises_the_minimum() {
    let yaml = svc("default", "s1", 80)
        + &tls_secret("default", "s")
        + &root("default", "a", "a.com", &to_svc("/", "s1")).replace(
            "virtualhost: {fqdn: a.com}",
            "virtualhost: {fqdn: a.com, tls: {secretName: s, minimumProtocolVersion: \"1.2\"}}",
        );
    let snap = snapshot(&yaml);
    let mut sel = Selection::default_instance();
    assert_eq!(
        build(&snap, &sel).virtual_hosts[0]
            .tls
            .as_ref()
            .unwrap()
            .minimum_protocol_version,
        TlsVersion::V1_2
    );
    sel.minimum_tls_version = Some(TlsVersion::V1_3);
    assert_eq!(
        build(&snap, &sel).virtual_hosts[0]
            .tls
            .as_ref()
            .unwrap()
            .minimum_protocol_version,
        TlsVersion::V1_3
    );
    sel.minimum_tls_version = Some(TlsVersion::V1_1);
    assert_eq!(
        build(&snap, &sel).virtual_hosts[0]
            .tls
            .as_ref()
            .unwrap()
            .minimum_protocol_version,
        TlsVersion::V1_2
    );
}

#[test]
fn delegation_within_and_across_namespaces_and_nested() {
    let yaml = svc("default", "s1", 80)
        + &svc("default", "s2", 80)
        + &svc("marketing", "blog", 80)
        + &svc("marketing", "deep", 80)
        + &root(
            "default",
            "root",
            "root.com",
            &(to_svc("/", "s1")
                + &to_delegate("/service2", "service2", None)
                + &to_delegate("/blog", "blog", Some("marketing"))),
        )
        + &child("default", "service2", &to_svc("/service2", "s2"))
        + &child(
            "marketing",
            "blog",
            &(to_svc("/blog", "blog") + &to_delegate("/blog/deep", "deep", None)),
        )
        + &child("marketing", "deep", &to_svc("/blog/deep/er", "deep"));
    let dag = default_build(&yaml);
    for k in [
        "default/root",
        "default/service2",
        "marketing/blog",
        "marketing/deep",
    ] {
        assert_eq!(status(&dag, k), ("valid", "valid IngressRoute"), "{k}");
    }
    assert_eq!(
        prefixes(vhost(&dag, "root.com")),
        [
            ("/blog/deep/er", "marketing/deep"),
            ("/service2", "default/service2"),
            ("/blog", "marketing/blog"),
            ("/", "default/root"),
        ]
    );
    // Services resolve in the child's namespace.
    let blog = &vhost(&dag, "root.com").routes[2].clusters[0].cluster;
    assert!(blog.starts_with("marketing/blog/80/"), "{blog}");
}

#[test]
fn aliases_share_one_child() {
    let yaml = svc("default", "example-service", 8080)
        + &root(
            "default",
            "www",
            "www.example.com",
            &to_delegate("/", "example-root", None),
        )
        + &root(
            "default",
            "bare",
            "example.com",
            &to_delegate("/", "example-root", None),
        )
        + &child(
            "default",
            "example-root",
            &to_svc("/", "example-service").replace("port: 80", "port: 8080"),
        );
    let dag = default_build(&yaml);
    assert_eq!(status(&dag, "default/example-root").0, "valid");
    assert_eq!(dag.virtual_hosts.len(), 2);
    assert_eq!(
        vhost(&dag, "www.example.com").routes,
        vhost(&dag, "example.com").routes
    );
    assert_eq!(dag.clusters.len(), 1);
}

#[test]
fn child_prefix_must_lie_under_the_parent_prefix() {
    let yaml = svc("default", "s2", 80)
        + &root("default", "root", "r.com", &to_delegate("/foo", "c", None))
        + &child("default", "c", &to_svc("/bar", "s2"));
    let dag = default_build(&yaml);
    assert_eq!(status(&dag, "default/root").0, "valid");
    assert_eq!(
        status(&dag, "default/c"),
        (
            "invalid",
            "the path prefix \"/bar\" does not match the parent's path prefix \"/foo\""
        )
    );
    assert!(vhost(&dag, "r.com").routes.is_empty());
}

#[test]
fn delegation_cycles_name_the_chain() {
    let yaml = root("ns", "r", "r.com", &to_delegate("/", "a", None))
        + &child("ns", "a", &to_delegate("/", "b", None))
        + &child("ns", "b", &to_delegate("/", "a", None))
        + &root("ns", "self", "s.com", &to_delegate("/", "self", None));
    let dag = default_build(&yaml);
    assert_eq!(
        status(&dag, "ns/b"),
        (
            "invalid",
            "route creates a delegation cycle: ns/r -> ns/a -> ns/b -> ns/a"
        )
    );
    assert_eq!(status(&dag, "ns/a").0, "valid");
    assert_eq!(
        status(&dag, "ns/self"),
        (
            "invalid",
            "route creates a delegation cycle: ns/self -> ns/self"
        )
    );
    // A cycle of children never reached from a root is orphaned.
    let dag = default_build(
        &(child("ns", "x", &to_delegate("/", "y", None))
            + &child("ns", "y", &to_delegate("/", "x", None))),
    );
    assert_eq!(status(&dag, "ns/x").0, "orphaned");
    assert_eq!(status(&dag, "ns/y").0, "orphaned");
}

#[test]
fn root_cannot_delegate_to_root() {
    let yaml = svc("ns", "s1", 80)
        + &root("ns", "a", "a.com", &to_delegate("/", "b", None))
        + &root("ns", "b", "b.com", &to_svc("/", "s1"));
    let dag = default_build(&yaml);
    assert_eq!(
        status(&dag, "ns/a"),
        (
            "invalid",
            "root ingressroute cannot delegate to another root ingressroute"
        )
    );
    assert_eq!(status(&dag, "ns/b").0, "valid");
}

#[test]
fn route_level_validation_messages() {
    let cases = [
        (
            "  - match: /foo\n    services: [{name: s1, port: 80}]\n    delegate: {name: x}\n",
            "route \"/foo\": cannot specify services and delegate in the same route",
        ),
        (
            "  - match: /foo\n    enableWebsockets: true\n    services: [{name: s1, port: 80}, {name: s2, port: 80}]\n",
            "route \"/foo\": cannot specify multiple services and enable websockets",
        ),
        (
            "  - match: /foo\n    services: [{name: home, port: 0}]\n",
            "route \"/foo\": service \"home\": port must be in the range 1-65535",
        ),
        (
            "  - match: /foo\n    services: [{name: home, port: 65536}]\n",
            "route \"/foo\": service \"home\": port must be in the range 1-65535",
        ),
        (
            "  - match: /foo\n    services: [{name: home, port: -80}]\n",
            "route \"/foo\": service \"home\": port must be in the range 1-65535",
        ),
        (
            "  - match: /foo\n    services: [{name: home, port: 80, weight: -1}]\n",
            "route \"/foo\": service \"home\": weight must be greater than or equal to zero",
        ),
        (
            "  - match: /foo\n    services: [{name: nope, port: 80}]\n",
            "Service [ns/nope:80] is invalid or missing",
        ),
        (
            "  - match: /foo\n    services: [{name: s1, port: 81}]\n",
            "Service [ns/s1:81] is invalid or missing",
        ),
        (
            "  - match: /\n    services: [{name: tls-nginx, port: 443, validation: {caSecret: nope, subjectName: a.b}}]\n",
            "route \"/\": service \"tls-nginx\": upstreamValidation requested but secret not found or misconfigured",
        ),
        (
            "  - match: /\n    services: [{name: tls-nginx, port: 443, validation: {caSecret: ca}}]\n",
            "route \"/\": service \"tls-nginx\": upstreamValidation requested but subject alt name not found or misconfigured",
        ),
    ];
    let base = svc("ns", "s1", 80)
        + &svc("ns", "s2", 80)
        + &svc("ns", "home", 80)
        + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: tls-nginx\n  namespace: ns\n  annotations: {contour.heptio.com/upstream-protocol.tls: \"443\"}\nspec: {ports: [{port: 443}]}\n"
        + &format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: ns}}\nstringData: {{ca.crt: {:?}}}\n",
            CERT()
        );
    for (routes, want) in cases {
        let dag = default_build(&(base.clone() + &root("ns", "r", "r.com", routes)));
        assert_eq!(status(&dag, "ns/r"), ("invalid", want), "{routes}");
        assert!(dag.virtual_hosts.is_empty() && dag.clusters.is_empty() && dag.secrets.is_empty());
    }
    // The same root with a valid validation block is valid and carries the CA secret.
    let ok = "  - match: /\n    services: [{name: tls-nginx, port: 443, validation: {caSecret: ca, subjectName: backend.example.com}}]\n";
    let dag = default_build(&(base + &root("ns", "r", "r.com", ok)));
    assert_eq!(status(&dag, "ns/r").0, "valid");
    let c = &dag.clusters[0];
    assert_eq!(c.protocol, UpstreamProtocol::Tls);
    assert_eq!(
        c.validation.as_ref().unwrap().subject_name,
        "backend.example.com"
    );
    assert_eq!(
        dag.secrets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["ns/ca/ca"]
    );
}

#[test]
fn weights_timeouts_retries_health_checks_and_strategies() {
    let routes = "
  - match: /w
    services: [{name: s1, port: 80, weight: 10}, {name: s2, port: 80}]
  - match: /t
    timeoutPolicy: {request: 1s}
    retryPolicy: {count: 3, perTryTimeout: 150ms}
    services: [{name: s1, port: 80}]
  - match: /inf
    timeoutPolicy: {request: infinity}
    retryPolicy: {}
    services: [{name: s1, port: 80}]
  - match: /zero
    timeoutPolicy: {request: 0s}
    services: [{name: s1, port: 80}]
  - match: /hc
    services:
    - {name: s1, port: 80, strategy: Cookie, healthCheck: {path: /healthy}}
    - {name: s2, port: 80, strategy: WeightedLeastRequest}
";
    let dag = default_build(
        &(svc("ns", "s1", 80) + &svc("ns", "s2", 80) + &root("ns", "r", "r.com", routes)),
    );
    assert_eq!(status(&dag, "ns/r").0, "valid");
    let v = vhost(&dag, "r.com");
    let route = |p: &str| v.routes.iter().find(|r| r.prefix == p).unwrap();
    assert_eq!(
        route("/w")
            .clusters
            .iter()
            .map(|c| c.weight)
            .collect::<Vec<_>>(),
        [10, 0]
    );
    assert_eq!(
        route("/hc")
            .clusters
            .iter()
            .map(|c| c.weight)
            .collect::<Vec<_>>(),
        [1, 1]
    );
    assert_eq!(route("/t").timeout, Some(Timeout::Millis(1000)));
    assert_eq!(
        route("/t").retry,
        Some(Retry {
            count: 3,
            per_try_timeout_ms: Some(150)
        })
    );
    assert_eq!(route("/inf").timeout, Some(Timeout::Disabled));
    assert_eq!(
        route("/inf").retry,
        Some(Retry {
            count: 1,
            per_try_timeout_ms: None
        })
    );
    assert_eq!(route("/zero").timeout, Some(Timeout::Disabled));
    assert_eq!(route("/w").timeout, None);
    assert!(route("/hc").session_affinity && !route("/w").session_affinity);

    let hc_cluster = dag
        .clusters
        .iter()
        .find(|c| c.health_check.is_some())
        .unwrap();
    assert_eq!(hc_cluster.lb_policy, LbPolicy::RingHash);
    assert_eq!(
        hc_cluster.health_check,
        Some(HealthCheck {
            path: "/healthy".into(),
            host: "contour-envoy-healthcheck".into(),
            interval_seconds: 5,
            timeout_seconds: 2,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        })
    );
    let policies: Vec<LbPolicy> = dag.clusters.iter().map(|c| c.lb_policy).collect();
    assert!(policies.contains(&LbPolicy::LeastRequest) && policies.contains(&LbPolicy::RoundRobin));
    // One service port with two policies gives two clusters; the same policy shares one.
    assert_eq!(
        dag.clusters.iter().filter(|c| c.service == "ns/s1").count(),
        2
    );
}

#[test]
fn spec_level_health_check_is_a_default() {
    let yaml = svc("ns", "a", 80)
        + &svc("ns", "b", 80)
        + &root("ns", "r", "r.com", "  - match: /\n    services: [{name: a, port: 80}, {name: b, port: 80, healthCheck: {path: /own}}]\n")
            .replace("  routes:\n", "  healthCheck: {path: /healthy, intervalSeconds: 7}\n  routes:\n");
    let dag = default_build(&yaml);
    let paths: Vec<(String, u32)> = dag
        .clusters
        .iter()
        .map(|c| {
            let h = c.health_check.as_ref().unwrap();
            (h.path.clone(), h.interval_seconds)
        })
        .collect();
    assert_eq!(paths, [("/healthy".to_owned(), 7), ("/own".to_owned(), 5)]);
}

#[test]
fn endpoints_are_ready_addresses_from_endpoints_and_slices() {
    let yaml = "\
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec:
  ports: [{name: http, port: 80, targetPort: web}, {name: admin, port: 9000}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: ns}
subsets:
- addresses: [{ip: 10.0.0.2}, {ip: 10.0.0.1}]
  notReadyAddresses: [{ip: 10.0.0.9}]
  ports: [{name: http, port: 8080}, {name: admin, port: 9090}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: ns, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.3]
  conditions: {ready: true}
- addresses: [10.0.0.4]
- addresses: [10.0.0.5]
  conditions: {ready: false}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other, namespace: ns, labels: {kubernetes.io/service-name: not-web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.9.9.9]}]
"
    .to_owned()
        + &root(
            "ns",
            "r",
            "r.com",
            "  - match: /\n    services: [{name: web, port: 80}]\n",
        );
    let dag = default_build(&yaml);
    assert_eq!(dag.endpoints.len(), 1);
    assert_eq!(dag.endpoints[0].service_name, "ns/web/http");
    let ips: Vec<String> = dag.endpoints[0]
        .addresses
        .iter()
        .map(|a| format!("{}:{}", a.ip, a.port))
        .collect();
    assert_eq!(
        ips,
        [
            "10.0.0.1:8080",
            "10.0.0.2:8080",
            "10.0.0.3:8080",
            "10.0.0.4:8080"
        ]
    );
}

#[test]
fn upstream_protocol_annotations_by_number_or_name() {
    let yaml = "\
---
apiVersion: v1
kind: Service
metadata:
  name: multi
  namespace: ns
  annotations:
    contour.heptio.com/upstream-protocol.h2: \"81\"
    projectcontour.io/upstream-protocol.h2c: \"grpc\"
    contour.heptio.com/upstream-protocol.tls: \"443,https\"
spec:
  ports: [{port: 80}, {port: 81, name: h2}, {port: 82, name: grpc}, {port: 8443, name: https}]
"
    .to_owned()
        + &root(
            "ns",
            "r",
            "r.com",
            "
  - match: /a
    services: [{name: multi, port: 80}]
  - match: /b
    services: [{name: multi, port: 81}]
  - match: /c
    services: [{name: multi, port: 82}]
  - match: /d
    services: [{name: multi, port: 8443}]
",
        );
    let dag = default_build(&yaml);
    let proto = |port: u16| {
        dag.clusters
            .iter()
            .find(|c| c.port == port)
            .unwrap()
            .protocol
    };
    assert_eq!(proto(80), UpstreamProtocol::Http1);
    assert_eq!(proto(81), UpstreamProtocol::H2);
    assert_eq!(proto(82), UpstreamProtocol::H2c);
    assert_eq!(proto(8443), UpstreamProtocol::Tls);
}

#[test]
fn external_name_services_are_opt_in_and_never_local() {
    let ext = |name: &str, target: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{type: ExternalName, externalName: {target}, ports: [{{port: 80, name: http}}]}}\n"
        )
    };
    let yaml = ext("good", "backend.example.com")
        + &ext("local", "LOCALHOST.")
        + &root("ns", "a", "a.com", &to_svc("/", "good"))
        + &root("ns", "b", "b.com", &to_svc("/", "local"));
    let snap = snapshot(&yaml);
    let dag = build(&snap, &Selection::default_instance());
    assert_eq!(
        status(&dag, "ns/a"),
        (
            "invalid",
            "route \"/\": service \"good\": Service ns/good is of type ExternalName, which this Gateway does not allow (spec.enableExternalNameServices)"
        )
    );
    let mut sel = Selection::default_instance();
    sel.enable_external_name_services = true;
    let dag = build(&snap, &sel);
    assert_eq!(status(&dag, "ns/a").0, "valid");
    assert_eq!(
        dag.clusters[0].upstream,
        Upstream::Dns {
            host: "backend.example.com".into(),
            port: 80
        }
    );
    assert!(dag.endpoints.is_empty());
    assert_eq!(
        status(&dag, "ns/b"),
        (
            "invalid",
            "route \"/\": service \"local\": ExternalName \"localhost\" of Service ns/local is not allowed: points at the proxy itself or a cloud metadata server"
        )
    );
}

#[test]
fn tcpproxy_rules() {
    let tls = "virtualhost: {fqdn: t.com, tls: {secretName: s}}";
    let tcp_root = |tcp: &str| {
        root("ns", "r", "t.com", &to_svc("/", "kuard"))
            .replace("virtualhost: {fqdn: t.com}", tls)
            .replace("  routes:\n", &format!("  tcpproxy:\n{tcp}  routes:\n"))
    };
    let base = svc("ns", "kuard", 80)
        + &svc("ns", "tcpservice", 8080)
        + &svc("ns", "other", 9999)
        + &tls_secret("ns", "s");

    let dag = default_build(
        &(base.clone()
            + &tcp_root(
                "    services: [{name: tcpservice, port: 8080}, {name: other, port: 9999, weight: 20}]\n",
            )),
    );
    assert_eq!(status(&dag, "ns/r").0, "valid");
    let t = vhost(&dag, "t.com").tcp_proxy.clone().unwrap();
    assert_eq!(
        t.clusters.iter().map(|c| c.weight).collect::<Vec<_>>(),
        [1, 20]
    );

    let dag = default_build(
        &(base.clone()
            + &tcp_root(
                "    services: [{name: tcpservice, port: 8080}]\n    delegate: {name: x}\n",
            )),
    );
    assert_eq!(
        status(&dag, "ns/r"),
        (
            "invalid",
            "tcpproxy: cannot specify services and delegate in the same tcpproxy"
        )
    );

    let dag =
        default_build(&(base.clone() + &tcp_root("    services: [{name: missing, port: 8080}]\n")));
    assert_eq!(
        status(&dag, "ns/r"),
        ("invalid", "tcpproxy: service ns/missing/8080: not found")
    );

    let tcp_child = |name: &str, tcp: &str| {
        format!(
            "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata: {{name: {name}, namespace: ns}}\nspec:\n  tcpproxy:\n{tcp}"
        )
    };
    let dag = default_build(
        &(base.clone()
            + &tcp_root("    delegate: {name: c1}\n")
            + &tcp_child("c1", "    delegate: {name: c2}\n")
            + &tcp_child("c2", "    services: [{name: tcpservice, port: 8080}]\n")),
    );
    assert_eq!(status(&dag, "ns/r").0, "valid");
    assert_eq!(status(&dag, "ns/c1").0, "valid");
    assert_eq!(status(&dag, "ns/c2").0, "valid");
    assert_eq!(
        vhost(&dag, "t.com").tcp_proxy.as_ref().unwrap().owner,
        "ns/c2"
    );

    let dag = default_build(
        &(base.clone()
            + &tcp_root("    delegate: {name: c1}\n")
            + &tcp_child("c1", "    delegate: {name: c2}\n")
            + &tcp_child("c2", "    delegate: {name: c1}\n")),
    );
    assert_eq!(
        status(&dag, "ns/c2"),
        (
            "invalid",
            "tcpproxy creates a delegation cycle: ns/r -> ns/c1 -> ns/c2 -> ns/c1"
        )
    );
    assert_eq!(status(&dag, "ns/r").0, "invalid");

    // TCP proxying needs TLS.
    let plain = root("ns", "p", "p.com", &to_svc("/", "kuard")).replace(
        "  routes:\n",
        "  tcpproxy:\n    services: [{name: tcpservice, port: 8080}]\n  routes:\n",
    );
    let dag = default_build(&(base.clone() + &plain));
    assert_eq!(
        status(&dag, "ns/p"),
        (
            "invalid",
            "tcpproxy: missing tls.passthrough or tls.secretName"
        )
    );

    // Passthrough needs no secret.
    let pass = tcp_root("    services: [{name: tcpservice, port: 8080}]\n")
        .replace(tls, "virtualhost: {fqdn: t.com, tls: {passthrough: true}}");
    let dag = default_build(&(base + &pass));
    assert_eq!(status(&dag, "ns/r").0, "valid");
    let v = vhost(&dag, "t.com");
    assert!(v.tls.as_ref().unwrap().passthrough && v.tls.as_ref().unwrap().secret.is_none());
    assert!(dag.secrets.is_empty());
}

#[test]
fn ingress_class_and_root_namespaces_split_instances() {
    let yaml = "\
---
apiVersion: sluice.dev/v1alpha1
kind: Gateway
metadata: {name: gw-a, namespace: team-a}
spec: {ingressClassName: a, rootNamespaces: [team-a]}
---
apiVersion: sluice.dev/v1alpha1
kind: Gateway
metadata: {name: gw-b, namespace: team-b}
spec: {ingressClassName: b, rootNamespaces: [team-b]}
"
    .to_owned()
        + &svc("team-a", "s1", 80)
        + &svc("team-b", "s1", 80)
        + &tls_secret("team-a", "cert")
        + &tls_secret("team-b", "cert")
        + &root("team-a", "r", "a.com", &to_svc("/", "s1"))
            .replace("namespace: team-a}", "namespace: team-a, annotations: {kubernetes.io/ingress.class: a}}")
            .replace("virtualhost: {fqdn: a.com}", "virtualhost: {fqdn: a.com, tls: {secretName: cert}}")
        + &root("team-b", "r", "b.com", &to_svc("/", "s1"))
            .replace("namespace: team-b}", "namespace: team-b, annotations: {contour.heptio.com/ingress.class: b}}")
            .replace("virtualhost: {fqdn: b.com}", "virtualhost: {fqdn: b.com, tls: {secretName: cert}}")
        // Class b, but its root lives in team-a: team b's Gateway refuses it.
        + &root("team-a", "sneaky", "a.com", &to_svc("/", "s1"))
            .replace("namespace: team-a}", "namespace: team-a, annotations: {kubernetes.io/ingress.class: b}}")
        + &root("team-a", "classless", "c.com", &to_svc("/", "s1"));
    let snap = snapshot(&yaml);
    let instances = super::instances(&snap);
    assert_eq!(instances.len(), 2);
    let a = build(&snap, &instances[0]);
    let b = build(&snap, &instances[1]);
    assert_eq!(a.gateway, "team-a/gw-a");
    let keys = |d: &Dag| {
        d.statuses
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&a), ["team-a/r"]);
    assert_eq!(keys(&b), ["team-a/sneaky", "team-b/r"]);
    assert_eq!(
        status(&b, "team-a/sneaky").1,
        "root IngressRoute cannot be defined in this namespace"
    );
    let hosts = |d: &Dag| {
        d.virtual_hosts
            .iter()
            .map(|v| v.fqdn.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(hosts(&a), ["a.com"]);
    assert_eq!(hosts(&b), ["b.com"]);
    let secrets = |d: &Dag| d.secrets.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(secrets(&a), ["team-a/cert"]);
    assert_eq!(secrets(&b), ["team-b/cert"]);
    // No Gateway: one default instance judging only class-less IngressRoutes.
    let mut no_gw = snap.clone();
    no_gw.gateways = Default::default();
    let d = build(&no_gw, &super::instances(&no_gw)[0]);
    assert_eq!(d.gateway, "sluice-system/default");
    assert_eq!(keys(&d), ["team-a/classless"]);
}

#[test]
fn build_is_deterministic() {
    let yaml = svc("default", "s1", 80)
        + &svc("default", "s2", 80)
        + &root(
            "default",
            "root",
            "root.com",
            &(to_svc("/", "s1") + &to_delegate("/x", "c", None)),
        )
        + &child(
            "default",
            "c",
            &(to_svc("/x", "s2") + &to_svc("/x/y", "s1")),
        );
    let snap = snapshot(&yaml);
    let first = serde_json::to_string(&build(&snap, &Selection::default_instance())).unwrap();
    for _ in 0..3 {
        assert_eq!(
            first,
            serde_json::to_string(&build(&snap, &Selection::default_instance())).unwrap()
        );
    }
}
