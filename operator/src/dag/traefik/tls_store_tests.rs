//! TLSStore `certificates`: chosen per host for the routes of the store's namespace that name
//! no Secret, checked as every TLS Secret, never for another namespace.

use super::*;

/// A `kubernetes.io/tls` Secret `name` in `ns` for `names`.
fn cert_secret(ns: &str, name: &str, names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(
        names
            .iter()
            .map(|n| (*n).to_owned())
            .collect::<Vec<String>>(),
    )
    .unwrap()
    .self_signed(&key)
    .unwrap();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: {:?}\n  tls.key: {:?}\n",
        cert.pem(),
        key.serialize_pem()
    )
}

fn store(ns: &str, spec: &str) -> String {
    object("TLSStore", ns, "default", "2024-01-01T00:00:00Z", spec)
}

fn secret_of<'a>(dag: &'a Dag, host: &str) -> Option<&'a str> {
    vhost(dag, host).tls.as_ref().unwrap().secret.as_deref()
}

#[test]
fn a_store_certificate_is_chosen_per_host_exact_then_wildcard_then_default() {
    let yaml = base("apps")
        + &cert_secret("apps", "wild", &["*.example.com"])
        + &cert_secret("apps", "exact", &["x.example.com", "y.example.com"])
        + &store(
            "apps",
            "  certificates: [{secretName: wild}, {secretName: exact}]\n  \
             defaultCertificate: {secretName: cert}\n",
        )
        + &https_route("apps", "x", "x.example.com", "{}")
        + &https_route("apps", "z", "z.example.com", "{}")
        + &https_route("apps", "deep", "a.b.example.com", "{}")
        + &https_route("apps", "other", "other.org", "{}")
        + &https_route("apps", "named", "y.example.com", "{secretName: cert}");
    let dag = dag_of(&yaml);
    for name in ["x", "z", "deep", "other", "named"] {
        assert_eq!(
            verdict(&dag, "IngressRoute", &format!("apps/{name}")).0,
            "valid"
        );
    }
    // Exact before wildcard, whatever the order in the store.
    assert_eq!(secret_of(&dag, "x.example.com"), Some("apps/exact"));
    assert_eq!(secret_of(&dag, "z.example.com"), Some("apps/wild"));
    // A wildcard covers one label only.
    assert_eq!(secret_of(&dag, "a.b.example.com"), Some("apps/cert"));
    assert_eq!(secret_of(&dag, "other.org"), Some("apps/cert"));
    // A route naming its Secret keeps it.
    assert_eq!(secret_of(&dag, "y.example.com"), Some("apps/cert"));
    assert!(dag.secrets.iter().any(|s| s.name == "apps/exact"));

    // An IngressRouteTCP terminating TLS too, per host.
    let tcp = tcp_route(
        "apps",
        "t",
        "2024-01-01T00:00:00Z",
        "  routes:\n  - match: HostSNI(`t.example.com`) || HostSNI(`x2.example.com`)\n    \
         services: [{name: s, port: 80}]\n  tls: {}\n",
    );
    let yaml = base("apps")
        + &cert_secret("apps", "wild", &["*.example.com"])
        + &cert_secret("apps", "x2", &["x2.example.com"])
        + &store(
            "apps",
            "  certificates: [{secretName: wild}, {secretName: x2}]\n",
        )
        + &tcp;
    let dag = dag_of(&yaml);
    assert_eq!(verdict(&dag, "IngressRouteTCP", "apps/t").0, "valid");
    assert_eq!(secret_of(&dag, "t.example.com"), Some("apps/wild"));
    assert_eq!(secret_of(&dag, "x2.example.com"), Some("apps/x2"));
}

#[test]
fn a_store_never_serves_another_namespaces_hosts() {
    let yaml = base("team-a")
        + &base("team-b")
        + &cert_secret("team-a", "b-cert", &["b.example.com"])
        + &store("team-a", "  certificates: [{secretName: b-cert}]\n")
        + &https_route("team-b", "r", "b.example.com", "{}");
    let dag = dag_of(&yaml);
    let (status, description) = verdict(&dag, "IngressRoute", "team-b/r");
    assert_eq!(status, "invalid");
    assert!(
        description.contains("since TLSStore team-b/default has no certificate for it"),
        "{description}"
    );
    assert!(!dag.secrets.iter().any(|s| s.name == "team-a/b-cert"));
}

#[test]
fn store_certificates_are_checked_as_every_tls_secret() {
    let opaque = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: opaque, namespace: apps}\n\
                  stringData: {tls.crt: x, tls.key: y}\n";
    let cases: &[(&str, &str)] = &[
        (
            "  certificates: [{secretName: missing}]\n",
            "TLSStore apps/default: spec.certificates[0].secretName: TLS Secret [apps/missing] \
             not found",
        ),
        (
            "  certificates: [{secretName: other/cert}]\n",
            "spec.certificates[0].secretName: \"other/cert\" must name a Secret of the store's \
             namespace",
        ),
        (
            "  certificates: [{secretName: cert}, {secretName: opaque}]\n",
            "spec.certificates[1].secretName: TLS Secret [apps/opaque] not found or is \
             malformed: its type is \"Opaque\"",
        ),
    ];
    for (spec, expected) in cases {
        let yaml = base("apps")
            + opaque
            + &store("apps", spec)
            + &https_route("apps", "r", "a.example.com", "{}");
        let dag = dag_of(&yaml);
        let (status, description) = verdict(&dag, "IngressRoute", "apps/r");
        assert_eq!(status, "invalid", "{spec}");
        assert!(description.contains(expected), "{spec}: {description}");
    }
    let many: String = (0..=crate::dag::traefik::tls_store::MAX_STORE_CERTIFICATES)
        .map(|_| "{secretName: cert}, ")
        .collect();
    let yaml = base("apps")
        + &store("apps", &format!("  certificates: [{many}]\n"))
        + &https_route("apps", "r", "a.example.com", "{}");
    let dag = dag_of(&yaml);
    let (_, description) = verdict(&dag, "IngressRoute", "apps/r");
    assert!(
        description.contains("65 entries, more than the 64"),
        "{description}"
    );
}
