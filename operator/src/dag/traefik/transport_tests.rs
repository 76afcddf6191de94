//! A ServersTransport's client certificate, timeouts, connection reuse and HTTP/2 setting in
//! the DAG, and hostile or inexpressible values refused naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;

use crate::dag::model::transport::TransportOptions;
use crate::dag::model::*;
use crate::dag::{Selection, build};

fn dag_of(yaml: &str) -> Dag {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    build(&report.snapshot, &Selection::default_instance())
}

fn verdict(dag: &Dag) -> (&'static str, &str) {
    let s = dag
        .object_statuses
        .iter()
        .find(|s| s.namespace == "apps" && s.name == "r")
        .unwrap_or_else(|| panic!("no status: {:#?}", dag.object_statuses));
    (s.current_status.as_str(), s.description.as_str())
}

static CA: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
});

static CLIENT: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client.internal".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
});

fn base() -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(CA.as_bytes());
    let secret = |name: &str, type_: &str, cert: &str, key: &str| {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: apps}}\n\
             type: {type_}\nstringData:\n  tls.crt: {cert:?}\n  tls.key: {key:?}\n"
        )
    };
    let (cert, key) = &*CLIENT;
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: apps}}\n\
         spec:\n  ports: [{{port: 80, name: http}}, {{port: 443, name: tls}}]\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: apps}}\n\
         data: {{ca.crt: {ca}}}\n"
    ) + &secret("client", "kubernetes.io/tls", cert, key)
        + &secret("opaque", "Opaque", cert, key)
        + &secret("mismatch", "kubernetes.io/tls", cert, "not a key")
}

/// A ServersTransport `apps/tr` with `extra` (YAML flow fields) beside its name and CA, and an
/// IngressRoute `apps/r` to the Service `s` on `port` through it.
fn with_transport(extra: &str, port: u16) -> String {
    base()
        + &format!(
            "---\napiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {{name: tr, \
             namespace: apps}}\nspec: {{serverName: backend.internal, rootCAs: [{{secret: ca}}], \
             {extra}}}\n\
             ---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {{name: r, \
             namespace: apps}}\nspec:\n  routes:\n  - match: Host(`a.example.com`)\n    \
             services: [{{name: s, port: {port}, serversTransport: tr}}]\n"
        )
}

#[test]
fn served_fields_reach_the_cluster() {
    let extra = "certificatesSecrets: [client], disableHTTP2: true, maxIdleConnsPerHost: -1, \
                 forwardingTimeouts: {dialTimeout: 3s, idleConnTimeout: 0, \
                 responseHeaderTimeout: 0, readIdleTimeout: 0s, pingTimeout: 15}";
    let dag = dag_of(&with_transport(extra, 443));
    assert_eq!(verdict(&dag).0, "valid", "{:?}", verdict(&dag));
    let clusters: Vec<&Cluster> = dag.clusters.iter().collect();
    let [cluster] = clusters.as_slice() else {
        panic!("{clusters:#?}")
    };
    assert_eq!(cluster.protocol, UpstreamProtocol::Tls);
    let expected = TransportOptions {
        connect_timeout_ms: Some(3000),
        idle_timeout_ms: Some(0),
        one_request_per_connection: true,
        client_certificate: Some("apps/client".to_owned()),
        unverified_sni: None,
    };
    assert_eq!(cluster.transport.as_deref(), Some(&expected));
    let secret = dag
        .secrets
        .iter()
        .find(|s| s.name == "apps/client")
        .unwrap();
    let SecretKind::Tls { cert_chain, .. } = &secret.kind else {
        panic!("{secret:?}")
    };
    assert_eq!(*cert_chain, CLIENT.0);
    assert_eq!(
        cluster.secret_names().collect::<Vec<_>>(),
        ["traefik:apps/tr/ca", "apps/client"]
    );

    // A plain-text backend: the timeouts apply, the client certificate does not.
    let dag = dag_of(&with_transport(extra, 80));
    assert_eq!(verdict(&dag).0, "valid", "{:?}", verdict(&dag));
    let t = dag.clusters[0].transport.as_deref().unwrap();
    assert_eq!(t.client_certificate, None);
    assert_eq!(t.connect_timeout_ms, Some(3000));
    assert!(dag.secrets.is_empty(), "{:?}", dag.secrets);

    // Nothing set: no options, and the cluster keeps the name it had before they existed.
    let dag = dag_of(&with_transport("disableHTTP2: true", 443));
    assert_eq!(dag.clusters[0].transport, None);
    // Options change the cluster's name (its policy).
    let other = dag_of(&with_transport("maxIdleConnsPerHost: -1", 443));
    assert_ne!(dag.clusters[0].name, other.clusters[0].name);
}

#[test]
fn unserved_and_hostile_values_are_refused_naming_the_field() {
    let refused = [
        (
            "certificatesSecrets: [client, client]",
            "spec.certificatesSecrets: name at most one Secret",
        ),
        (
            "certificatesSecrets: [opaque]",
            "spec.certificatesSecrets[0]: TLS Secret [apps/opaque] not found or is malformed: \
             its type is \"Opaque\"",
        ),
        (
            "certificatesSecrets: [mismatch]",
            "spec.certificatesSecrets[0]: TLS Secret [apps/mismatch]",
        ),
        (
            "certificatesSecrets: [nope]",
            "spec.certificatesSecrets[0]: TLS Secret [apps/nope] not found",
        ),
        (
            "certificatesSecrets: [other/client]",
            "spec.certificatesSecrets[0]: \"other/client\" must name a Secret of the \
             ServersTransport's namespace",
        ),
        (
            "forwardingTimeouts: {dialTimeout: 0}",
            "spec.forwardingTimeouts.dialTimeout: 0 (no timeout) is not served",
        ),
        (
            "forwardingTimeouts: {dialTimeout: 999999h}",
            "spec.forwardingTimeouts.dialTimeout: is longer than 100 years",
        ),
        (
            "forwardingTimeouts: {dialTimeout: -1}",
            "spec.forwardingTimeouts.dialTimeout: -1 is negative",
        ),
        (
            "forwardingTimeouts: {idleConnTimeout: -5s}",
            "spec.forwardingTimeouts.idleConnTimeout: \"-5s\" is not a duration",
        ),
        (
            "forwardingTimeouts: {idleConnTimeout: 9223372036854775807}",
            "could not be read: spec.forwardingTimeouts.idleConnTimeout: invalid value",
        ),
        (
            "forwardingTimeouts: {responseHeaderTimeout: 10s}",
            "spec.forwardingTimeouts.responseHeaderTimeout: not served",
        ),
        (
            "forwardingTimeouts: {readIdleTimeout: 5s}",
            "spec.forwardingTimeouts.readIdleTimeout: not served",
        ),
        (
            "forwardingTimeouts: {pingTimeout: 1000000h}",
            "spec.forwardingTimeouts.pingTimeout: is longer than 100 years",
        ),
        (
            "disableHTTP2: false",
            "spec.disableHTTP2: false asks for HTTP/2",
        ),
        (
            "maxIdleConnsPerHost: 100",
            "spec.maxIdleConnsPerHost: 100 is not served",
        ),
        (
            "maxIdleConnsPerHost: 0",
            "spec.maxIdleConnsPerHost: 0 is not served",
        ),
        (
            "peerCertURI: spiffe://example.org/backend",
            "spec.peerCertURI: not served",
        ),
        ("spiffe: {ids: [spiffe://x/y]}", "spec.spiffe: not served"),
    ];
    for (extra, expected) in refused {
        let dag = dag_of(&with_transport(extra, 443));
        let (status, description) = verdict(&dag);
        assert_eq!(status, "invalid", "{extra}: {description}");
        assert!(
            description.contains(&format!("ServersTransport apps/tr: {expected}"))
                || description.contains(&format!("ServersTransport apps/tr {expected}")),
            "{extra}: expected {expected:?} in {description:?}"
        );
        assert!(dag.clusters.is_empty() && dag.secrets.is_empty(), "{extra}");
    }
}
