//! forwardAuth in the DAG: the auth Service an address names (and what it may not name), the
//! policy each route gets, and the fields and orders refused, each naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::dag::ext_authz::ExtAuthzPolicy;
use crate::dag::model::*;
use crate::dag::{Selection, build};

const SERVICES: &str = "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: apps}\n\
    spec:\n  ports: [{port: 80, name: http}]\n\
    ---\napiVersion: v1\nkind: Service\nmetadata: {name: auth, namespace: apps}\n\
    spec:\n  ports: [{port: 4181, name: http}]\n\
    ---\napiVersion: v1\nkind: Service\nmetadata: {name: auth, namespace: other}\n\
    spec:\n  ports: [{port: 80}]\n\
    ---\napiVersion: v1\nkind: Service\nmetadata: {name: far, namespace: apps}\n\
    spec:\n  type: ExternalName\n  externalName: auth.example.net\n  ports: [{port: 80}]\n";

fn middleware(spec: &str) -> String {
    format!(
        "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {{name: fa, \
         namespace: apps}}\nspec:\n  forwardAuth: {spec}\n"
    )
}

/// `apps/r` with one route per middleware list, all on `a.example.com`, and an IngressRoute
/// `apps/plain` without middlewares.
fn routes(lists: &[&[&str]]) -> String {
    let mut out = String::from(
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: r, \
         namespace: apps}\nspec:\n  entryPoints: [web]\n  routes:\n",
    );
    for (i, mws) in lists.iter().enumerate() {
        let list: Vec<String> = mws.iter().map(|m| format!("{{name: {m}}}")).collect();
        out.push_str(&format!(
            "  - match: Host(`a.example.com`) && PathPrefix(`/p{i}`)\n    middlewares: [{}]\n    \
             services: [{{name: s, port: 80}}]\n",
            list.join(", ")
        ));
    }
    out.push_str(
        "---\napiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata: {name: plain, \
         namespace: apps}\nspec:\n  entryPoints: [web]\n  routes:\n  - match: \
         Host(`b.example.com`)\n    services: [{name: s, port: 80}]\n",
    );
    out
}

fn dag_with(yaml: &str, sel: &Selection) -> Dag {
    let report = crate::source::load_sources([("fixture.yaml", yaml)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    build(&report.snapshot, sel)
}

fn verdict(dag: &Dag, name: &str) -> String {
    let s = dag.object_statuses.iter().find(|s| s.name == name).unwrap();
    s.description.clone()
}

fn auth_of(r: &Route) -> Option<&ExtAuthzPolicy> {
    r.extra.as_ref()?.policy.as_ref()?.ext_authz.as_deref()
}

/// The policy of `apps/r`'s route with `fa` (its cluster checked to be in the DAG).
fn served_with(spec: &str, sel: &Selection) -> (ExtAuthzPolicy, Cluster) {
    let dag = dag_with(
        &format!("{SERVICES}{}{}", middleware(spec), routes(&[&["fa"]])),
        sel,
    );
    assert_eq!(verdict(&dag, "r"), "valid IngressRoute");
    let auth = dag
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .find_map(auth_of)
        .unwrap()
        .clone();
    let cluster = dag
        .clusters
        .iter()
        .find(|c| c.name == auth.cluster)
        .unwrap()
        .clone();
    (auth, cluster)
}

fn served(spec: &str) -> (ExtAuthzPolicy, Cluster) {
    served_with(spec, &Selection::default_instance())
}

fn refused_with(spec: &str, sel: &Selection, expected: &str) {
    let dag = dag_with(
        &format!("{SERVICES}{}{}", middleware(spec), routes(&[&["fa"]])),
        sel,
    );
    let v = verdict(&dag, "r");
    assert!(v.contains(expected), "{spec}: {v}");
    assert!(v.contains("spec.routes[0].middlewares[0]"), "{v}");
    assert!(!dag.virtual_hosts.iter().any(|h| h.fqdn == "a.example.com"));
    // Another IngressRoute is not affected.
    assert_eq!(verdict(&dag, "plain"), "valid IngressRoute");
}

fn refused(spec: &str, expected: &str) {
    refused_with(spec, &Selection::default_instance(), expected);
}

#[test]
fn the_address_names_a_service_of_the_middlewares_namespace() {
    for address in [
        "http://auth:4181",
        "http://auth.apps:4181/",
        "http://AUTH.apps.svc:4181",
        "http://auth.apps.svc.cluster.local:4181",
    ] {
        let (auth, cluster) = served(&format!("{{address: '{address}'}}"));
        assert_eq!(cluster.service, "apps/auth", "{address}");
        assert_eq!(cluster.port, 4181);
        assert_eq!(cluster.protocol, UpstreamProtocol::Http1);
        assert_eq!(auth.uri, "http://auth.apps:4181");
        assert_eq!(auth.path, "/");
        assert_eq!(auth.source, "apps/fa");
        assert_eq!(auth.body_limit, None);
    }
    let (auth, _) = served(
        "{address: 'http://auth:4181/oauth2/auth?rd=x', authResponseHeaders: [X-User, \
         X-Email, x-user], authResponseHeadersRegex: '^X-Auth-'}",
    );
    assert_eq!(auth.path, "/oauth2/auth?rd=x");
    assert_eq!(auth.upstream_headers, ["x-email", "x-user"]);
    // Traefik searches canonical names (X-Auth-User); Envoy matches whole lower-case ones.
    assert_eq!(
        auth.upstream_headers_regex.as_deref(),
        Some("(?i:(?s:.*)(?:^X-Auth-)(?s:.*))")
    );
    let (auth, _) = served(
        "{address: 'http://auth:4181', forwardBody: true, maxBodySize: 1024, \
         preserveRequestMethod: true, preserveLocationHeader: true}",
    );
    assert_eq!(auth.body_limit, Some(1024));
}

#[test]
fn another_namespace_or_host_needs_the_gateways_consent() {
    refused(
        "{address: 'http://auth.other'}",
        "Service other/auth is in another namespace",
    );
    let mut cross = Selection::default_instance();
    cross.allow_cross_namespace = true;
    let (auth, cluster) = served_with("{address: 'http://auth.other.svc'}", &cross);
    assert_eq!(cluster.service, "other/auth");
    assert_eq!(auth.uri, "http://auth.other:80");

    refused("{address: 'http://far'}", "enableExternalNameServices");
    let mut external = Selection::default_instance();
    external.enable_external_name_services = true;
    let (_, cluster) = served_with("{address: 'http://far'}", &external);
    assert_eq!(
        cluster.upstream,
        Upstream::Dns {
            host: "auth.example.net".into(),
            port: 80
        }
    );

    for (address, expected) in [
        ("http://10.0.0.1:80", "is an IP address"),
        ("http://[::1]:80", "is an IP address"),
        (
            "http://auth.example.com",
            "must name a Service of the cluster",
        ),
        (
            "http://auth.apps.svc.cluster.example",
            "must name a Service",
        ),
        (
            "http://kubernetes.default.svc.cluster.local.",
            "spec.forwardAuth.address",
        ),
        ("http://missing", "Service apps/missing port 80 not found"),
        ("http://auth", "Service apps/auth port 80 not found"),
        ("http://auth:4181/a#b", "fragment"),
        ("http://auth:4181/a b", "spec.forwardAuth.address"),
        ("http://user@auth:4181/", "spec.forwardAuth.address"),
        (
            "https://auth:4181/",
            "spec.forwardAuth.tls.caSecret: required",
        ),
        ("ftp://auth/", "http:// or https://"),
    ] {
        refused(&format!("{{address: '{address}'}}"), expected);
    }
}

#[test]
fn fields_envoy_cannot_serve_are_refused_by_name() {
    for (fields, expected) in [
        (
            "authRequestHeaders: [Cookie]",
            "spec.forwardAuth.authRequestHeaders: not served: Envoy's ext_authz",
        ),
        (
            "tls: {caSecret: ca}",
            "spec.forwardAuth.tls: applies to an https:// address only",
        ),
        (
            "tls: {certSecret: c}",
            "applies to an https:// address only",
        ),
        (
            "tls: {insecureSkipVerify: true}",
            "spec.forwardAuth.tls.insecureSkipVerify: not served: Sluice verifies the auth \
             server's certificate unless the Gateway sets spec.allowInsecureSkipVerify",
        ),
        (
            "addAuthCookiesToResponse: [a]",
            "addAuthCookiesToResponse: not served: Envoy passes auth response headers",
        ),
        ("headerField: X-User", "headerField"),
        ("forwardBody: true", "spec.forwardAuth.maxBodySize"),
        (
            "forwardBody: true, maxBodySize: -1",
            "spec.forwardAuth.maxBodySize",
        ),
        (
            "forwardBody: true, maxBodySize: 999999999",
            "spec.forwardAuth.maxBodySize",
        ),
        (
            "authResponseHeaders: [Host]",
            "authResponseHeaders: \"host\"",
        ),
        (
            "authResponseHeaders: [X-User, Content-Length]",
            "authResponseHeaders: \"content-length\" is not served",
        ),
        (
            "authResponseHeaders: [Transfer-Encoding]",
            "\"transfer-encoding\" is not served",
        ),
        (
            "authResponseHeadersRegex: '.*'",
            "authResponseHeadersRegex: matches \"host\"",
        ),
        (
            "authResponseHeadersRegex: '^Content-'",
            "authResponseHeadersRegex: matches \"content-length\"",
        ),
        (
            "authResponseHeaders: [X-User, X-Envoy-Retry-On]",
            "authResponseHeaders: \"x-envoy-retry-on\" is not served",
        ),
        (
            "authResponseHeadersRegex: '^X-Envoy-'",
            "authResponseHeadersRegex: matches \"x-envoy-retry-on\"",
        ),
        (
            "authResponseHeadersRegex: 'ENCODING'",
            "matches \"transfer-encoding\"",
        ),
        ("authResponseHeaders: ['a b']", "authResponseHeaders[0]"),
        ("authResponseHeadersRegex: '(a'", "authResponseHeadersRegex"),
        (
            "authResponseHeadersRegex: '(?=a)'",
            "authResponseHeadersRegex",
        ),
        ("unknownField: 1", "spec.forwardAuth.unknownField"),
    ] {
        refused(
            &format!("{{address: 'http://auth:4181', {fields}}}"),
            expected,
        );
    }
    let many: Vec<String> = (0..65).map(|i| format!("x-h{i}")).collect();
    refused(
        &format!(
            "{{address: 'http://auth:4181', authResponseHeaders: [{}]}}",
            many.join(", ")
        ),
        "at most 64",
    );
}

#[test]
fn order_on_the_route_is_what_envoy_runs() {
    let others = "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: strip, \
                  namespace: apps}\nspec:\n  stripPrefix: {prefixes: [/p]}\n\
                  ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: hdr, \
                  namespace: apps}\nspec:\n  headers: {customRequestHeaders: {X-A: b}}\n\
                  ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: buf, \
                  namespace: apps}\nspec:\n  buffering: {maxRequestBodyBytes: 10}\n\
                  ---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: fb, \
                  namespace: apps}\nspec:\n  forwardAuth: {address: 'http://auth:4181/b'}\n";
    let sel = Selection::default_instance();
    let judge = |list: &[&str]| {
        let yaml = format!(
            "{SERVICES}{}{others}{}",
            middleware("{address: 'http://auth:4181'}"),
            routes(&[list])
        );
        verdict(&dag_with(&yaml, &sel), "r")
    };
    // After the auth check, edits apply to what is forwarded: served.
    for list in [
        &["fa", "strip", "hdr", "buf"][..],
        &["fa"][..],
        &["hdr"][..],
    ] {
        assert_eq!(judge(list), "valid IngressRoute", "{list:?}");
    }
    for (list, expected) in [
        (&["strip", "fa"][..], "list forwardAuth first"),
        (&["hdr", "fa"][..], "list forwardAuth first"),
        (&["buf", "fa"][..], "forwardAuth after buffering"),
        (&["fa", "fb"][..], "a second forwardAuth middleware"),
    ] {
        let v = judge(list);
        assert!(v.contains(expected), "{list:?}: {v}");
    }
    // Two routes of one IngressRoute with their own auth servers; the route without one has
    // none.
    let yaml = format!(
        "{SERVICES}{}{others}{}",
        middleware("{address: 'http://auth:4181'}"),
        routes(&[&["fa"], &["fb"], &[]])
    );
    let dag = dag_with(&yaml, &sel);
    let paths: Vec<Option<String>> = dag
        .virtual_hosts
        .iter()
        .find(|v| v.fqdn == "a.example.com")
        .unwrap()
        .routes
        .iter()
        .map(|r| auth_of(r).map(|a| a.path.clone()))
        .collect();
    assert_eq!(
        paths,
        [Some("/".to_owned()), Some("/b".to_owned()), None],
        "{paths:?}"
    );
    let routes: Vec<&Route> = dag.virtual_hosts.iter().flat_map(|v| &v.routes).collect();
    assert!(
        routes
            .iter()
            .any(|r| r.cluster_names().any(|c| c.starts_with("apps/auth/4181/")))
    );
}

#[test]
fn a_forward_auth_before_a_redirect_also_checks_the_redirected_requests() {
    let redirect = "---\napiVersion: traefik.io/v1alpha1\nkind: Middleware\nmetadata: {name: \
                    https, namespace: apps}\nspec:\n  redirectScheme: {scheme: https}\n";
    let sel = Selection::default_instance();
    for (list, checked) in [(&["fa", "https"][..], true), (&["https", "fa"][..], false)] {
        let yaml = format!(
            "{SERVICES}{}{redirect}{}",
            middleware("{address: 'http://auth:4181'}"),
            routes(&[list])
        );
        let dag = dag_with(&yaml, &sel);
        assert_eq!(verdict(&dag, "r"), "valid IngressRoute");
        let redirects: Vec<&Route> = dag
            .virtual_hosts
            .iter()
            .flat_map(|v| &v.routes)
            .filter(|r| r.extra.as_ref().unwrap().redirect.is_some())
            .collect();
        assert_eq!(redirects.len(), 2);
        for r in redirects {
            let auth = auth_of(r);
            assert_eq!(auth.is_some(), checked, "{list:?}");
            if let Some(a) = auth {
                assert!(a.cluster.starts_with("apps/auth/4181/"), "{a:?}");
            }
        }
    }
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

/// Secrets of `apps`: `ca` (a CA bundle under `ca.crt`), `client` (a TLS key pair), `junk`.
fn tls_secrets() -> String {
    let (cert, key) = &*CLIENT;
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: apps}}\n\
         stringData:\n  ca.crt: {ca:?}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: client, namespace: apps}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: {cert:?}\n  tls.key: {key:?}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: junk, namespace: apps}}\n\
         stringData:\n  ca.crt: not a certificate\n",
        ca = &*CA
    )
}

#[test]
fn an_https_auth_server_is_verified_with_the_middlewares_ca_and_name() {
    let sel = Selection::default_instance();
    let judge = |spec: &str| {
        let yaml = format!(
            "{SERVICES}{}{}{}",
            tls_secrets(),
            middleware(spec),
            routes(&[&["fa"]])
        );
        dag_with(&yaml, &sel)
    };
    let dag =
        judge("{address: 'https://auth.apps.svc:4181/v', tls: {caSecret: ca, certSecret: client}}");
    assert_eq!(verdict(&dag, "r"), "valid IngressRoute");
    let auth = dag
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .find_map(auth_of)
        .unwrap()
        .clone();
    assert_eq!(auth.uri, "https://auth.apps:4181");
    let cluster = dag
        .clusters
        .iter()
        .find(|c| c.name == auth.cluster)
        .unwrap();
    assert_eq!(cluster.protocol, UpstreamProtocol::Tls);
    let v = cluster.validation.as_ref().unwrap();
    assert_eq!(v.subject_name, "auth.apps.svc");
    assert_eq!(v.ca_secret, "traefik:apps/fa/forwardauth-ca");
    let client = cluster
        .transport
        .as_ref()
        .unwrap()
        .client_certificate
        .clone();
    assert_eq!(client.as_deref(), Some("apps/client"));
    for name in cluster.secret_names() {
        assert!(dag.secrets.iter().any(|s| s.name == name), "{name}");
    }
    // The plain-text cluster of the same Service is another one.
    let plain = judge("{address: 'http://auth.apps.svc:4181/v'}");
    let plain_auth = plain
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .find_map(auth_of)
        .unwrap();
    assert_ne!(plain_auth.cluster, auth.cluster);

    for (spec, expected) in [
        (
            "{address: 'https://auth:4181', tls: {caSecret: missing}}",
            "spec.forwardAuth.tls.caSecret: Secret apps/missing not found",
        ),
        (
            "{address: 'https://auth:4181', tls: {caSecret: junk}}",
            "spec.forwardAuth.tls.caSecret: Secret apps/junk",
        ),
        (
            "{address: 'https://auth:4181', tls: {caSecret: ca, certSecret: junk}}",
            "spec.forwardAuth.tls.certSecret",
        ),
        (
            "{address: 'https://auth:4181', tls: {caSecret: ../other/ca}}",
            "must name a Secret of the Middleware's namespace",
        ),
        (
            "{address: 'https://auth:4181', tls: {caSecret: ca, caOptional: true}}",
            "caOptional",
        ),
    ] {
        let v = verdict(&judge(spec), "r");
        assert!(v.contains(expected), "{spec}: {v}");
    }
}

/// The Gateway, like Traefik's entry point without trusted IPs, has replaced the client's
/// X-Forwarded-* before any middleware sees them: trusting them serves what not trusting does.
#[test]
fn trust_forward_header_serves_what_not_trusting_serves() {
    let base = "address: 'http://auth:4181/verify', authResponseHeaders: [X-User]";
    let trusting = served(&format!("{{{base}, trustForwardHeader: true}}"));
    let not = served(&format!("{{{base}, trustForwardHeader: false}}"));
    assert_eq!(trusting, not);
    assert_eq!(trusting.0.path, "/verify");
}

/// `tls.insecureSkipVerify` waits for the Gateway's `allowInsecureSkipVerify`; then the auth
/// server's certificate is not checked (no validation context), `caSecret` is not read (it
/// may name nothing), the address's host is sent as SNI and `certSecret` is still presented.
/// The Middleware's own verdict follows the same setting.
#[test]
fn insecure_skip_verify_is_served_where_the_gateway_allows_it() {
    let spec = "{address: 'https://auth.apps:4181/v', tls: {insecureSkipVerify: true, \
                caSecret: missing}}";
    let own = |sel: &Selection| {
        let dag = dag_with(&format!("{SERVICES}{}", middleware(spec)), sel);
        let s = dag.object_statuses.iter().find(|s| s.kind == "Middleware");
        let s = s.unwrap();
        (s.current_status, s.description.clone())
    };
    let closed = Selection::default_instance();
    refused_with(spec, &closed, "spec.allowInsecureSkipVerify");
    let (status, description) = own(&closed);
    assert_eq!(status, Validity::Invalid);
    assert!(
        description.contains("spec.forwardAuth.tls.insecureSkipVerify: not served"),
        "{description}"
    );
    let mut open = Selection::default_instance();
    open.allow_insecure_skip_verify = true;
    let (auth, cluster) = served_with(spec, &open);
    assert_eq!(auth.uri, "https://auth.apps:4181");
    assert_eq!(cluster.protocol, UpstreamProtocol::Tls);
    assert_eq!(cluster.validation, None);
    let transport = cluster.transport.as_deref().unwrap();
    assert_eq!(transport.unverified_sni.as_deref(), Some("auth.apps"));
    assert_eq!(own(&open), (Validity::Valid, "valid Middleware".into()));
    // Never with an http:// address, allowed or not.
    refused_with(
        "{address: 'http://auth:4181', tls: {insecureSkipVerify: true}}",
        &open,
        "spec.forwardAuth.tls: applies to an https:// address only",
    );
}
