//! TLSOptions, TLSStores and IngressRouteTCPs on small manifests: what applies to which hosts,
//! what is served, and what is refused by name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use crate::api::ingressroute::TlsVersion;
use crate::dag::model::*;
use crate::dag::{Selection, build};

struct Pems {
    /// Serving certificate for every name the tests use, and its key.
    cert: String,
    key: String,
    /// A CA certificate, for client authentication.
    ca: String,
}

fn pems() -> &'static Pems {
    static PEMS: OnceLock<Pems> = OnceLock::new();
    PEMS.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        Pems {
            cert: cert.pem(),
            key: key.serialize_pem(),
            ca: ca.pem(),
        }
    })
}

fn dag_with(yaml: &str, sel: &Selection) -> Dag {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    build(&report.snapshot, sel)
}

pub(super) fn dag_of(yaml: &str) -> Dag {
    dag_with(yaml, &Selection::default_instance())
}

pub(super) fn verdict<'a>(dag: &'a Dag, kind: &str, key: &str) -> (&'static str, &'a str) {
    let (ns, name) = key.split_once('/').unwrap();
    let s = dag
        .object_statuses
        .iter()
        .find(|s| s.kind == kind && s.namespace == ns && s.name == name)
        .unwrap_or_else(|| panic!("no status for {kind} {key}: {:#?}", dag.object_statuses));
    (s.current_status.as_str(), s.description.as_str())
}

pub(super) fn vhost<'a>(dag: &'a Dag, fqdn: &str) -> &'a VirtualHost {
    dag.virtual_hosts
        .iter()
        .find(|v| v.fqdn == fqdn)
        .unwrap_or_else(|| panic!("no vhost {fqdn}: {:#?}", dag.virtual_hosts))
}

pub(super) fn base(ns: &str) -> String {
    let p = pems();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: {ns}}}\n\
         spec:\n  ports: [{{port: 80, name: http}}, {{port: 81, name: other}}]\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: {ns}}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: client-ca, namespace: {ns}}}\n\
         stringData:\n  ca.crt: {:?}\n",
        p.cert, p.key, p.ca
    )
}

pub(super) fn object(kind: &str, ns: &str, name: &str, created: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  \
         namespace: {ns}\n  creationTimestamp: \"{created}\"\nspec:\n{spec}"
    )
}

/// An HTTPS IngressRoute for `host` with `tls` (YAML flow mapping).
pub(super) fn https_route(ns: &str, name: &str, host: &str, tls: &str) -> String {
    object(
        "IngressRoute",
        ns,
        name,
        "2024-01-01T00:00:00Z",
        &format!(
            "  entryPoints: [websecure]\n  routes:\n  - match: Host(`{host}`)\n    \
             services: [{{name: s, port: 80}}]\n  tls: {tls}\n"
        ),
    )
}

fn tls_option(ns: &str, name: &str, spec: &str) -> String {
    object("TLSOption", ns, name, "2024-01-01T00:00:00Z", spec)
}

#[test]
fn a_named_tls_option_sets_the_virtual_hosts_tls() {
    let spec = concat!(
        "  minVersion: VersionTLS12\n  maxVersion: VersionTLS12\n",
        "  cipherSuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
        "  curvePreferences: [CurveP384]\n  alpnProtocols: [http/1.1]\n",
        "  clientAuth: {secretNames: [client-ca], clientAuthType: VerifyClientCertIfGiven}\n",
        "  sniStrict: true\n  disableSessionTickets: true\n",
    );
    let yaml = base("apps")
        + &tls_option("apps", "strict", spec)
        + &https_route(
            "apps",
            "r",
            "a.example.com",
            "{secretName: cert, options: {name: strict}}",
        );
    let dag = dag_of(&yaml);
    assert_eq!(
        verdict(&dag, "IngressRoute", "apps/r"),
        ("valid", "valid IngressRoute")
    );
    let tls = vhost(&dag, "a.example.com").tls.as_ref().unwrap();
    assert_eq!(tls.minimum_protocol_version, TlsVersion::V1_2);
    assert_eq!(
        tls.options.as_deref(),
        Some(&TlsOptions {
            source: "apps/strict".into(),
            maximum_protocol_version: Some(TlsVersion::V1_2),
            cipher_suites: vec!["ECDHE-ECDSA-AES128-GCM-SHA256".into()],
            ecdh_curves: vec!["P-384".into()],
            alpn_protocols: Some(vec!["http/1.1".into()]),
            client_validation: Some(ClientValidation {
                ca_secret: "apps/strict/client-ca".into(),
                require: false,
                accept_untrusted: false,
            }),
            disable_session_tickets: true,
        })
    );
    let ca = dag
        .secrets
        .iter()
        .find(|s| s.name == "apps/strict/client-ca")
        .unwrap();
    assert!(matches!(&ca.kind, SecretKind::Ca { ca } if ca == &pems().ca));
}

#[test]
fn client_auth_types_map_to_envoys_validation() {
    for (auth_type, require, untrusted) in [
        ("RequireAndVerifyClientCert", true, false),
        ("", true, false),
        ("RequireAnyClientCert", true, true),
        ("RequestClientCert", false, true),
    ] {
        let spec =
            format!("  clientAuth: {{secretNames: [client-ca], clientAuthType: {auth_type:?}}}\n");
        let yaml = base("apps")
            + &tls_option("apps", "o", &spec)
            + &https_route(
                "apps",
                "r",
                "a.example.com",
                "{secretName: cert, options: {name: o}}",
            );
        let dag = dag_of(&yaml);
        let tls = vhost(&dag, "a.example.com").tls.as_ref().unwrap();
        let v = tls.options.as_ref().unwrap().client_validation.as_ref();
        assert_eq!(
            v.map(|v| (v.require, v.accept_untrusted)),
            Some((require, untrusted)),
            "{auth_type}"
        );
    }
}

#[test]
fn a_namespaces_default_option_applies_to_its_own_hosts_only() {
    let yaml = base("team-a")
        + &base("team-b")
        + &tls_option("team-a", "default", "  minVersion: VersionTLS13\n")
        + &https_route("team-a", "r", "a.example.com", "{secretName: cert}")
        + &https_route("team-b", "r", "b.example.com", "{secretName: cert}");
    let dag = dag_of(&yaml);
    let a = vhost(&dag, "a.example.com").tls.as_ref().unwrap();
    assert_eq!(a.minimum_protocol_version, TlsVersion::V1_3);
    assert_eq!(a.options.as_ref().unwrap().source, "team-a/default");
    let b = vhost(&dag, "b.example.com").tls.as_ref().unwrap();
    assert_eq!(b.minimum_protocol_version, TlsVersion::V1_2);
    assert_eq!(b.options, None);
}

#[test]
fn the_gateways_floor_raises_an_options_minimum() {
    let mut sel = Selection::default_instance();
    sel.minimum_tls_version = Some(TlsVersion::V1_3);
    let yaml = base("apps")
        + &tls_option("apps", "default", "  minVersion: VersionTLS11\n")
        + &https_route("apps", "r", "a.example.com", "{secretName: cert}");
    let dag = dag_with(&yaml, &sel);
    let tls = vhost(&dag, "a.example.com").tls.as_ref().unwrap();
    assert_eq!(tls.minimum_protocol_version, TlsVersion::V1_3);
    let yaml = base("apps")
        + &tls_option("apps", "default", "  maxVersion: VersionTLS12\n")
        + &https_route("apps", "r", "a.example.com", "{secretName: cert}");
    let dag = dag_with(&yaml, &sel);
    let (status, description) = verdict(&dag, "IngressRoute", "apps/r");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("the namespace's default): spec.maxVersion is below the Gateway's"),
        "{description}"
    );
}

#[test]
fn a_namespaces_default_store_certificate_serves_its_routes_without_a_secret() {
    let store = object(
        "TLSStore",
        "team-a",
        "default",
        "2024-01-01T00:00:00Z",
        "  defaultCertificate: {secretName: cert}\n",
    );
    let yaml = base("team-a")
        + &base("team-b")
        + &store
        + &https_route("team-a", "r", "a.example.com", "{}")
        + &https_route("team-b", "r", "b.example.com", "{}");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRoute", "team-a/r").0, "valid");
    let tls = vhost(&dag, "a.example.com").tls.as_ref().unwrap();
    assert_eq!(tls.secret.as_deref(), Some("team-a/cert"));
    let (status, description) = verdict(&dag, "IngressRoute", "team-b/r");
    assert_eq!(status, "invalid");
    assert!(
        description.contains(
            "spec.tls.secretName: required for host \"b.example.com\", since TLSStore \
             team-b/default"
        ),
        "{description}"
    );
    assert!(!dag.virtual_hosts.iter().any(|v| v.fqdn == "b.example.com"));
}

#[test]
fn tls_domains_without_a_resolver_change_nothing_as_in_traefik() {
    // Traefik's ACME provider is the only reader of `domains`; here they name hosts the route
    // does not serve, and must neither serve nor claim them.
    let tls = "{secretName: cert, domains: [{main: a.example.com, sans: [other.example.com, \
               '*.example.com']}, {main: victim.example.org}]}";
    let yaml = base("apps") + &https_route("apps", "r", "a.example.com", tls);
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRoute", "apps/r").0, "valid");
    let plain =
        dag_of(&(base("apps") + &https_route("apps", "r", "a.example.com", "{secretName: cert}")));
    assert_eq!(
        format!("{:?}", dag.virtual_hosts),
        format!("{:?}", plain.virtual_hosts)
    );
    assert_eq!(format!("{:?}", dag.secrets), format!("{:?}", plain.secrets));
}

#[test]
fn tls_references_and_values_that_cannot_be_served_are_refused_by_name() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "",
            "{secretName: cert, options: {name: o, namespace: other}}",
            "spec.tls.options.namespace: other/o is in another namespace",
        ),
        (
            "",
            "{secretName: cert, options: {name: default@file}}",
            "spec.tls.options.name: \"default@file\"",
        ),
        (
            "",
            "{secretName: cert, options: {name: missing}}",
            "spec.tls.options: TLSOption apps/missing not found",
        ),
        (
            "  minVersion: VersionTLS10\n",
            "{secretName: cert, options: {name: o}}",
            "TLSOption apps/o: TLS 1.0 is not served",
        ),
        (
            "  cipherSuites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "{secretName: cert, options: {name: o}}",
            "TLSOption apps/o: spec.cipherSuites[0]",
        ),
        (
            "  clientAuth: {secretNames: [nope]}\n",
            "{secretName: cert, options: {name: o}}",
            "spec.clientAuth.secretNames[0]: Secret apps/nope not found",
        ),
        (
            "  clientAuth: {secretNames: [cert]}\n",
            "{secretName: cert, options: {name: o}}",
            "spec.clientAuth.secretNames[0]: Secret apps/cert not found or has no tls.ca",
        ),
        (
            "  clientAuth: {clientAuthType: RequestClientCert}\n",
            "{secretName: cert, options: {name: o}}",
            "needs at least one CA Secret",
        ),
        (
            "  unknownField: 1\n",
            "{secretName: cert, options: {name: o}}",
            "spec.unknownField: field not supported",
        ),
        (
            "",
            "{secretName: cert, store: {name: mine}}",
            "spec.tls.store.name: \"mine\"",
        ),
        (
            "",
            "{secretName: cert, certResolver: le}",
            "spec.tls.certResolver",
        ),
        (
            "",
            "{secretName: cert, certResolver: le, domains: [{main: a.example.com}]}",
            "spec.tls.certResolver",
        ),
        (
            "",
            "{secretName: other/cert}",
            "spec.tls.secretName: \"other/cert\"",
        ),
    ];
    for (option, tls, expected) in cases {
        let mut yaml = base("apps") + &https_route("apps", "r", "a.example.com", tls);
        if !option.is_empty() {
            yaml += &tls_option("apps", "o", option);
        }
        let dag = dag_of(&yaml);
        let (status, description) = verdict(&dag, "IngressRoute", "apps/r");
        assert_eq!(status, "invalid", "{tls} {option}");
        assert!(description.contains(expected), "{tls}: {description}");
        assert!(dag.virtual_hosts.is_empty(), "{tls}");
        assert!(dag.secrets.is_empty(), "{tls}");
    }
    // A broken default option holds up its namespace's TLS routes, naming it.
    let yaml = base("apps")
        + &tls_option("apps", "default", "  curvePreferences: [P-999]\n")
        + &https_route("apps", "r", "a.example.com", "{secretName: cert}");
    let dag = dag_of(&yaml);
    let (status, description) = verdict(&dag, "IngressRoute", "apps/r");
    assert_eq!(status, "invalid");
    assert!(
        description.starts_with(
            "TLSOption apps/default (the namespace's default): spec.curvePreferences[0]"
        ),
        "{description}"
    );
}

pub(super) fn tcp_route(ns: &str, name: &str, created: &str, spec: &str) -> String {
    object("IngressRouteTCP", ns, name, created, spec)
}

#[test]
fn tcp_routes_become_sni_filter_chains_with_weighted_services() {
    let spec = concat!(
        "  entryPoints: [websecure]\n  routes:\n",
        "  - match: HostSNI(`a.example.com`) || HostSNI(`b.example.com`)\n",
        "    services:\n    - {name: s, port: 80, weight: 3}\n",
        "    - {name: s, port: other, proxyProtocol: {version: 1}}\n",
        "  tls: {secretName: cert}\n",
    );
    let pass = concat!(
        "  routes:\n  - match: HostSNI(`c.example.com`)\n",
        "    services: [{name: s, port: 80, proxyProtocol: {}}]\n",
        "  tls: {passthrough: true}\n",
    );
    let yaml = base("apps")
        + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)
        + &tcp_route("apps", "p", "2024-01-01T00:00:00Z", pass);
    let dag = dag_of(&yaml);
    assert_eq!(
        verdict(&dag, "IngressRouteTCP", "apps/t"),
        ("valid", "valid IngressRoute")
    );
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/p").0, "valid");
    for host in ["a.example.com", "b.example.com"] {
        let v = vhost(&dag, host);
        assert_eq!(v.owner, "traefik-tcp:apps/t");
        assert!(v.routes.is_empty());
        let tls = v.tls.as_ref().unwrap();
        assert_eq!(
            (tls.secret.as_deref(), tls.passthrough),
            (Some("apps/cert"), false)
        );
        let tcp = v.tcp_proxy.as_ref().unwrap();
        let weights: Vec<u32> = tcp.clusters.iter().map(|c| c.weight).collect();
        assert_eq!(weights, [3, 1]);
        assert!(tcp.clusters[1].cluster.ends_with("/proxy-v1"), "{tcp:?}");
    }
    let c = vhost(&dag, "c.example.com");
    let tls = c.tls.as_ref().unwrap();
    assert_eq!((tls.secret.as_deref(), tls.passthrough), (None, true));
    let cluster = &c.tcp_proxy.as_ref().unwrap().clusters[0].cluster;
    let cluster = dag.clusters.iter().find(|x| &x.name == cluster).unwrap();
    assert_eq!(cluster.proxy_protocol, Some(2), "Traefik's default version");
    assert_eq!(cluster.port, 80);
}

#[test]
fn host_ownership_spans_http_and_tcp_routes() {
    let older_tcp = tcp_route(
        "team-a",
        "t",
        "2023-01-01T00:00:00Z",
        "  routes:\n  - match: HostSNI(`a.example.com`)\n    services: [{name: s, port: 80}]\n  \
         tls: {passthrough: true}\n",
    );
    let yaml = base("team-a")
        + &base("team-b")
        + &older_tcp
        + &https_route("team-b", "r", "a.example.com", "{secretName: cert}");
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "team-a/t").0, "valid");
    assert_eq!(
        verdict(&dag, "IngressRoute", "team-b/r"),
        (
            "invalid",
            "host \"a.example.com\" is already used by the older Traefik IngressRouteTCP team-a/t"
        )
    );
    assert_eq!(vhost(&dag, "a.example.com").owner, "traefik-tcp:team-a/t");

    // A younger TCP route loses to an older HTTP one, and a Contour root keeps its fqdn.
    let contour = "---\napiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata:\n  \
         name: c\n  namespace: team-b\n  creationTimestamp: \"2020-01-01T00:00:00Z\"\nspec:\n  \
         virtualhost: {fqdn: b.example.com}\n  routes: [{match: /, services: [{name: s, port: 80}]}]\n";
    let younger_tcp = tcp_route(
        "team-a",
        "t",
        "2025-01-01T00:00:00Z",
        "  routes:\n  - match: HostSNI(`b.example.com`)\n    services: [{name: s, port: 80}]\n  \
         tls: {passthrough: true}\n",
    );
    let dag = dag_of(&(base("team-a") + &base("team-b") + contour + &younger_tcp));
    assert_eq!(
        verdict(&dag, "IngressRouteTCP", "team-a/t"),
        (
            "invalid",
            "host \"b.example.com\" is already used by the older IngressRoute team-b/c"
        )
    );
    assert_eq!(vhost(&dag, "b.example.com").owner, "team-b/c");
    assert!(vhost(&dag, "b.example.com").tcp_proxy.is_none());
}

#[test]
fn tcp_rules_and_fields_that_cannot_be_served_are_refused_by_name() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "HostSNI(`a.example.com`)",
            "null",
            "spec.routes[0].match: HostSNI(`a.example.com`) needs spec.tls",
        ),
        (
            "HostSNI(`*`) && ALPN(`h2`)",
            "null",
            "spec.routes[0].match: ALPN(`h2`) needs spec.tls",
        ),
        (
            "HostSNI(`*.com`)",
            "{passthrough: true}",
            "a wildcard directly under a top-level domain is refused",
        ),
        (
            "HostSNIRegexp(`^A.+$`)",
            "{passthrough: true}",
            "write it in lower case",
        ),
        (
            "HostSNI(`a.example.com`) && ClientIP(`::ffff:10.0.0.0/104`)",
            "{passthrough: true}",
            "ClientIP(`::ffff:10.0.0.0/104`): an IPv4-mapped IPv6 network is not served",
        ),
        (
            "HostSNI(`a.example.com`) && ClientIP(`10.0.0.0/33`)",
            "{passthrough: true}",
            "prefix length must be 0 to 32",
        ),
        (
            "HostSNI(`a.example.com`) && ClientIP(`10.0.0.300`)",
            "{passthrough: true}",
            "is not an IP address or CIDR",
        ),
        (
            "(HostSNI(`a.example.com`) && ALPN(`h2`)) || (HostSNI(`a.example.com`) && ALPN(`x`) && ClientIP(`10.0.0.0/8`))",
            "{passthrough: true}",
            "ALPN(`h2`) and ALPN(`x`) lead to different routes or client addresses",
        ),
        (
            "!HostSNI(`a.example.com`)",
            "{passthrough: true}",
            "cannot be negated",
        ),
        (
            "HostSNI(`a.example.com`)",
            "{passthrough: true, secretName: cert}",
            "passthrough forwards the TLS session as it is",
        ),
        (
            "HostSNI(`a.example.com`)",
            "{secretName: cert, options: {name: o, namespace: x}}",
            "spec.tls.options.namespace",
        ),
        (
            "HostSNI(`a.example.com`)",
            "{}",
            "spec.tls.secretName: required",
        ),
        (
            "HostSNI(`a.example.com`)",
            "{certResolver: le}",
            "spec.tls.certResolver",
        ),
    ];
    for (rule, tls, expected) in cases {
        let spec = format!(
            "  routes:\n  - match: '{rule}'\n    services: [{{name: s, port: 80}}]\n  tls: {tls}\n"
        );
        let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", &spec)));
        let (status, description) = verdict(&dag, "IngressRouteTCP", "apps/t");
        assert_eq!(status, "invalid", "{rule} {tls}");
        assert!(
            description.contains(expected),
            "{rule} {tls}: {description}"
        );
        assert!(dag.virtual_hosts.is_empty(), "{rule}");
    }
    let services: &[(&str, &str)] = &[
        ("{name: s, port: 80, weight: 0}", "every weight is 0"),
        ("{name: s, port: 80, weight: -1}", "services[0].weight: -1"),
        (
            "{name: s, port: 80, proxyProtocol: {version: 3}}",
            "proxyProtocol.version: 3",
        ),
        (
            "{name: s, port: 80, tls: true}",
            "services[0].tls: not served yet",
        ),
        (
            "{name: s, port: 80, terminationDelay: 5}",
            "terminationDelay: not served yet",
        ),
        (
            "{name: s, port: 80, serversTransport: tr}",
            "services[0].serversTransport: not served yet (it names a ServersTransportTCP, a \
             kind Sluice does not read",
        ),
        (
            "{name: s, namespace: other, port: 80}",
            "in another namespace",
        ),
        (
            "{name: s, port: 8080}",
            "Service apps/s port 8080 not found",
        ),
    ];
    for (service, expected) in services {
        let spec = format!(
            "  entryPoints: [websecure]\n  routes:\n  - match: HostSNI(`a.example.com`)\n    \
             services: [{service}]\n  tls: {{passthrough: true}}\n"
        );
        let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", &spec)));
        let (status, description) = verdict(&dag, "IngressRouteTCP", "apps/t");
        assert_eq!(status, "invalid", "{service}");
        assert!(description.contains(expected), "{service}: {description}");
        assert!(
            dag.virtual_hosts.is_empty() && dag.clusters.is_empty(),
            "{service}"
        );
    }
    let spec = "  entryPoints: [web]\n  routes:\n  - match: HostSNI(`a.example.com`)\n    \
                services: [{name: s, port: 80}]\n  tls: {passthrough: true}\n";
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)));
    let (_, description) = verdict(&dag, "IngressRouteTCP", "apps/t");
    assert!(
        description.contains("spec.entryPoints[0]: entry point \"web\""),
        "{description}"
    );
}

#[test]
fn the_highest_priority_route_serves_a_host_and_ties_are_refused() {
    let spec = concat!(
        "  routes:\n",
        "  - match: HostSNI(`a.example.com`)\n    services: [{name: s, port: 80}]\n",
        "  - match: HostSNI(`a.example.com`)\n    priority: 100\n",
        "    services: [{name: s, port: other}]\n",
        "  tls: {passthrough: true}\n",
    );
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", spec)));
    let tcp = vhost(&dag, "a.example.com").tcp_proxy.as_ref().unwrap();
    assert!(tcp.clusters[0].cluster.starts_with("apps/s/81/"), "{tcp:?}");
    let tie = spec.replace("priority: 100", "priority: 24");
    let dag = dag_of(&(base("apps") + &tcp_route("apps", "t", "2024-01-01T00:00:00Z", &tie)));
    let (status, description) = verdict(&dag, "IngressRouteTCP", "apps/t");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("have the same priority 24 and overlapping conditions"),
        "{description}"
    );
}

#[path = "tcp_more_tests.rs"]
mod more;

#[path = "tls_store_tests.rs"]
mod store;

#[test]
fn the_gateway_names_more_entry_points_for_its_listeners() {
    use crate::api::gateway::TraefikEntryPoint::{Web, WebSecure};
    let http = |name: &str, entry: &str, tls: &str| {
        object(
            "IngressRoute",
            "apps",
            name,
            "2024-01-01T00:00:00Z",
            &format!(
                "  entryPoints: [{entry}]\n  routes:\n  - match: Host(`{name}.example.com`)\n    \
                 services: [{{name: s, port: 80}}]\n{tls}"
            ),
        )
    };
    let tcp = |name: &str, entry: &str| {
        tcp_route(
            "apps",
            name,
            "2024-01-01T00:00:00Z",
            &format!(
                "  entryPoints: [{entry}]\n  routes:\n  - match: HostSNI(`{name}.example.com`)\n    \
                 services: [{{name: s, port: 80}}]\n  tls: {{passthrough: true}}\n"
            ),
        )
    };
    let yaml = base("apps")
        + &http("plain", "http", "")
        + &http("secure", "https", "  tls: {secretName: cert}\n")
        + &http("nottls", "https", "")
        + &http("builtin", "web", "")
        + &http("unmapped", "internal", "")
        + &tcp("tcps", "https")
        + &tcp("tcpplain", "http");
    let mut sel = Selection::default_instance();
    // `web: websecure` is not used: the built-in names keep their meaning.
    sel = Selection {
        traefik_entry_points: vec![("http".into(), Web), ("https".into(), WebSecure)],
        ..sel
    };
    let mut gw = crate::api::Gateway::new("default", Default::default());
    gw.metadata.namespace = Some("sluice-system".into());
    gw.spec.traefik_entry_points = [
        ("http".to_owned(), Web),
        ("https".to_owned(), WebSecure),
        ("web".to_owned(), WebSecure),
    ]
    .into();
    assert_eq!(
        Selection::from_gateway(&gw).traefik_entry_points,
        sel.traefik_entry_points
    );
    let dag = dag_with(&yaml, &sel);
    for ok in ["plain", "secure", "builtin"] {
        assert_eq!(
            verdict(&dag, "IngressRoute", &format!("apps/{ok}")).0,
            "valid",
            "{ok}"
        );
    }
    assert!(vhost(&dag, "plain.example.com").tls.is_none());
    assert!(vhost(&dag, "secure.example.com").tls.is_some());
    // `https` means websecure: without tls it is refused as `websecure` would be.
    let (status, description) = verdict(&dag, "IngressRoute", "apps/nottls");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("`websecure` without spec.tls"),
        "{description}"
    );
    let (status, description) = verdict(&dag, "IngressRoute", "apps/unmapped");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("entry point \"internal\" is not served")
            && description.contains("spec.traefikEntryPoints"),
        "{description}"
    );
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/tcps").0, "valid");
    let (status, description) = verdict(&dag, "IngressRouteTCP", "apps/tcpplain");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("entry point \"http\" is not served"),
        "{description}"
    );
    // Without the Gateway's names, `http` and `https` are refused.
    let dag = dag_of(&yaml);
    for refused in ["plain", "secure"] {
        assert_eq!(
            verdict(&dag, "IngressRoute", &format!("apps/{refused}")).0,
            "invalid"
        );
    }
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/tcps").0, "invalid");
}
