//! TLS and TCP proxying end to end, through `sluice standalone` and a real Envoy, with
//! certificates made by the test: SNI certificate selection, minimum TLS versions (per virtual
//! host and the Gateway floor), secure-first redirects, TLS certificate delegation, upstream TLS
//! with and without validation, and `tcpproxy` (TLS terminated by Envoy, and passthrough).
//!
//! Every negative check (a refused handshake, a failed upstream) comes after a positive one on
//! the same listener or route configuration, so it cannot pass merely because Envoy has not got
//! its configuration yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_e2e::backend::{Backend, TcpEchoBackend};
use sluice_e2e::client::{Request, Response, get};
use sluice_e2e::manifests::{Manifests, ca_secret, doc, service, tls_secret};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::tls::{CertKey, TestCa, TlsClient};
use sluice_e2e::tls_session::{TlsSession, certificates_der, client_with_versions};
use sluice_e2e::{Error, try_wait_for};

const WAIT: Duration = Duration::from_secs(30);

/// An IngressRoute `namespace/name` with `spec`, optionally with an ingress class.
fn ingressroute(namespace: &str, name: &str, class: Option<&str>, spec: Value) -> String {
    let mut metadata = json!({"namespace": namespace, "name": name});
    if let Some(class) = class {
        metadata["annotations"] = json!({"kubernetes.io/ingress.class": class});
    }
    doc(&json!({
        "apiVersion": "contour.heptio.com/v1beta1",
        "kind": "IngressRoute",
        "metadata": metadata,
        "spec": spec,
    }))
}

/// A route for `prefix` to `service:port`.
fn route(prefix: &str, service: &str, port: u16) -> Value {
    json!({"match": prefix, "services": [{"name": service, "port": port}]})
}

/// A Service with one port `port` named `port_name`, annotated
/// `contour.heptio.com/upstream-protocol.tls: <tls_annotation>`, whose endpoint is the backend
/// on 127.0.0.1:`backend_port`.
fn tls_service(
    namespace: &str,
    name: &str,
    port: u16,
    port_name: &str,
    tls_annotation: &str,
    backend_port: u16,
) -> String {
    let ports = json!([{"name": port_name, "protocol": "TCP", "port": port}]);
    doc(&json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "annotations": {"contour.heptio.com/upstream-protocol.tls": tls_annotation},
        },
        "spec": {"ports": ports},
    })) + &doc(&json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"namespace": namespace, "name": name},
        "subsets": [{
            "addresses": [{"ip": "127.0.0.1"}],
            "ports": [{"name": port_name, "protocol": "TCP", "port": backend_port}],
        }],
    }))
}

/// [`tls_secret`] as one document of a multi-document stream.
fn tls_doc(namespace: &str, name: &str, cert: &CertKey) -> String {
    format!("---\n{}", tls_secret(namespace, name, cert))
}

/// The leaf certificate of `pem`, DER.
fn leaf_der(pem: &str) -> Vec<u8> {
    certificates_der(pem).unwrap().remove(0)
}

/// Waits until `GET https://host{path}` (SNI `host`) answers 200 through `ports.https`.
async fn wait_https(
    sluice: &mut Standalone,
    ports: &InstancePorts,
    tls: &TlsClient,
    host: &str,
    path: &str,
) -> Response {
    try_wait_for(
        &format!("https://{host}{path} to answer 200"),
        WAIT,
        async || {
            sluice.check_running()?;
            let resp = Request::get(host, path).send_tls(ports.https, tls).await;
            Ok(resp.ok().filter(|r| r.status == 200))
        },
    )
    .await
    .unwrap()
}

/// Waits until `GET http://host{path}` answers 200 through `ports.http`.
async fn wait_http(
    sluice: &mut Standalone,
    ports: &InstancePorts,
    host: &str,
    path: &str,
) -> Response {
    wait_http_status(sluice, ports, host, path, 200).await
}

/// Waits until `GET http://host{path}` answers `status` through `ports.http`.
async fn wait_http_status(
    sluice: &mut Standalone,
    ports: &InstancePorts,
    host: &str,
    path: &str,
    status: u16,
) -> Response {
    try_wait_for(
        &format!("http://{host}{path} to answer {status}"),
        WAIT,
        async || {
            sluice.check_running()?;
            let resp = get(ports.http, host, path).await;
            Ok(resp.ok().filter(|r| r.status == status))
        },
    )
    .await
    .unwrap()
}

/// Waits until a TLS handshake for `sni` succeeds on `ports.https`.
async fn wait_session(
    sluice: &mut Standalone,
    ports: &InstancePorts,
    tls: &TlsClient,
    sni: &str,
) -> TlsSession {
    try_wait_for(&format!("a TLS handshake for {sni}"), WAIT, async || {
        sluice.check_running()?;
        Ok(TlsSession::connect(ports.https, sni, tls).await.ok())
    })
    .await
    .unwrap()
}

/// Asserts that the TLS handshake for `sni` on `port` is refused, and returns the I/O error
/// that refused it.
async fn refused_handshake(port: u16, sni: &str, tls: &TlsClient) -> std::io::Error {
    match TlsSession::connect(port, sni, tls).await {
        Ok(session) => panic!(
            "the handshake for {sni} succeeded ({:?}); it should have been refused",
            session.protocol_version()
        ),
        Err(Error::Io { source, .. }) => source,
        Err(other) => panic!("the handshake for {sni} failed in an unexpected way: {other}"),
    }
}

/// Asserts that `sni` has no filter chain on `port`: Envoy drops the connection without
/// presenting any certificate (not: presents one the client rejects).
async fn assert_no_certificate(port: u16, sni: &str, tls: &TlsClient) {
    let e = refused_handshake(port, sni, tls).await;
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
        ),
        "{sni}: expected the connection to be dropped, got {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate_and_the_backend() {
    let ca = TestCa::new("edge ca").unwrap();
    let cert_a = ca.issue(&["a.example.com"]).unwrap();
    let cert_b = ca.issue(&["b.example.com"]).unwrap();
    let a = Backend::start("a").await.unwrap();
    let b = Backend::start("b").await.unwrap();

    let dir = Manifests::new().unwrap();
    dir.write(
        "secrets.yaml",
        &(tls_doc("default", "a-cert", &cert_a) + &tls_doc("default", "b-cert", &cert_b)),
    )
    .unwrap();
    dir.write(
        "services.yaml",
        &(service("default", "svc-a", 80, &[a.port()])
            + &service("default", "svc-b", 80, &[b.port()])),
    )
    .unwrap();
    let root = |name: &str, fqdn: &str, secret: &str, svc: &str| {
        ingressroute(
            "default",
            name,
            None,
            json!({
                "virtualhost": {"fqdn": fqdn, "tls": {"secretName": secret}},
                "routes": [route("/", svc, 80)],
            }),
        )
    };
    dir.write(
        "routes.yaml",
        &(root("a", "a.example.com", "a-cert", "svc-a")
            + &root("b", "b.example.com", "b-cert", "svc-b")),
    )
    .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    // The client trusts only the test CA and checks the certificate against the SNI name.
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();

    for (host, cert, backend) in [
        ("a.example.com", &cert_a, "a"),
        ("b.example.com", &cert_b, "b"),
    ] {
        let resp = wait_https(&mut sluice, &ports, &client, host, "/hello").await;
        let echo = resp.echo().unwrap();
        assert_eq!(echo.backend, backend, "{host}");
        assert_eq!(echo.path, "/hello");
        assert_eq!(echo.header("host"), Some(host));
        assert_eq!(echo.header("x-forwarded-proto"), Some("https"), "{host}");

        let session = TlsSession::connect(ports.https, host, &client)
            .await
            .unwrap();
        assert_eq!(
            session.peer_certificates().first(),
            Some(&leaf_der(&cert.cert_pem)),
            "{host} must be served its own certificate"
        );
        assert_eq!(
            session.alpn_protocol().as_deref(),
            Some(&b"http/1.1"[..]),
            "{host}"
        );
    }

    // A name without a virtual host has no filter chain: no certificate at all.
    assert_no_certificate(ports.https, "c.example.com", &client).await;
    sluice.check_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_protocol_version_refuses_older_clients() {
    let ca = TestCa::new("edge ca").unwrap();
    let web = Backend::start("web").await.unwrap();
    let dir = Manifests::new().unwrap();

    // Two instances: `edge` serves unclassed IngressRoutes with no floor; `strict` serves class
    // `strict` with a TLS 1.3 floor.
    let gateway = |name: &str, spec: Value| {
        doc(&json!({
            "apiVersion": "sluice.dev/v1alpha1",
            "kind": "Gateway",
            "metadata": {"namespace": "sluice-system", "name": name},
            "spec": spec,
        }))
    };
    dir.write(
        "gateways.yaml",
        &(gateway("edge", json!({}))
            + &gateway(
                "strict",
                json!({"ingressClassName": "strict", "tls": {"minimumProtocolVersion": "1.3"}}),
            )),
    )
    .unwrap();
    dir.write(
        "service.yaml",
        &service("default", "web", 80, &[web.port()]),
    )
    .unwrap();

    let hosts = ["v13.example.com", "v12.example.com", "floor.example.com"];
    let mut secrets = String::new();
    for host in hosts {
        let cert = ca.issue(&[host]).unwrap();
        secrets += &tls_doc("default", host, &cert);
    }
    dir.write("secrets.yaml", &secrets).unwrap();
    let root = |fqdn: &str, class: Option<&str>, minimum: &str| {
        ingressroute(
            "default",
            fqdn.split('.').next().unwrap(),
            class,
            json!({
                "virtualhost": {
                    "fqdn": fqdn,
                    "tls": {"secretName": fqdn, "minimumProtocolVersion": minimum},
                },
                "routes": [route("/", "web", 80)],
            }),
        )
    };
    dir.write(
        "routes.yaml",
        &(root("v13.example.com", None, "1.3")
            + &root("v12.example.com", None, "1.2")
            + &root("floor.example.com", Some("strict"), "1.2")),
    )
    .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let edge = sluice.instance("sluice-system/edge", WAIT).await.unwrap();
    let strict = sluice.instance("sluice-system/strict", WAIT).await.unwrap();
    let tls13_only = client_with_versions(&ca.cert_pem(), &[&rustls::version::TLS13]).unwrap();
    let tls12_only = client_with_versions(&ca.cert_pem(), &[&rustls::version::TLS12]).unwrap();

    // A virtual host asking for 1.3: a 1.3 client works...
    wait_https(&mut sluice, &edge, &tls13_only, "v13.example.com", "/").await;
    let session = TlsSession::connect(edge.https, "v13.example.com", &tls13_only)
        .await
        .unwrap();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // ...the TLS 1.2 client works with a virtual host asking for 1.2 on the same listener...
    let resp = wait_https(&mut sluice, &edge, &tls12_only, "v12.example.com", "/").await;
    assert_eq!(resp.backend().as_deref(), Some("web"));
    let session = TlsSession::connect(edge.https, "v12.example.com", &tls12_only)
        .await
        .unwrap();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    // ...and is refused by the 1.3 one.
    let e = refused_handshake(edge.https, "v13.example.com", &tls12_only).await;
    assert!(format!("{e:?}").contains("ProtocolVersion"), "{e:?}");

    // The Gateway's floor raises a virtual host asking for 1.2 to 1.3.
    wait_https(&mut sluice, &strict, &tls13_only, "floor.example.com", "/").await;
    let e = refused_handshake(strict.https, "floor.example.com", &tls12_only).await;
    assert!(format!("{e:?}").contains("ProtocolVersion"), "{e:?}");
    sluice.check_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_first_redirects_plain_http_except_permit_insecure_routes() {
    let ca = TestCa::new("edge ca").unwrap();
    let cert = ca.issue(&["secure.example.com"]).unwrap();
    let web = Backend::start("web").await.unwrap();
    let dir = Manifests::new().unwrap();
    dir.write("secret.yaml", &tls_secret("default", "secure", &cert))
        .unwrap();
    dir.write(
        "service.yaml",
        &service("default", "web", 80, &[web.port()]),
    )
    .unwrap();
    let mut open = route("/open", "web", 80);
    open["permitInsecure"] = json!(true);
    dir.write(
        "route.yaml",
        &ingressroute(
            "default",
            "secure",
            None,
            json!({
                "virtualhost": {"fqdn": "secure.example.com", "tls": {"secretName": "secure"}},
                "routes": [route("/", "web", 80), open],
            }),
        ),
    )
    .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();

    let resp = wait_https(
        &mut sluice,
        &ports,
        &client,
        "secure.example.com",
        "/some/path",
    )
    .await;
    assert_eq!(resp.echo().unwrap().path, "/some/path");

    // The permitInsecure route answers over plain HTTP (so the HTTP route configuration holding
    // this host is in place)...
    let resp = wait_http(&mut sluice, &ports, "secure.example.com", "/open/x").await;
    let echo = resp.echo().unwrap();
    assert_eq!(echo.backend, "web");
    assert_eq!(echo.path, "/open/x");
    assert_eq!(echo.header("x-forwarded-proto"), Some("http"));

    // ...and every other path is sent to HTTPS.
    let before = web.control().request_count();
    let resp = get(ports.http, "secure.example.com", "/some/path?q=1")
        .await
        .unwrap();
    assert_eq!(resp.status, 301, "{}", resp.text());
    assert_eq!(
        resp.header("location"),
        Some("https://secure.example.com/some/path?q=1")
    );
    assert_eq!(
        web.control().request_count(),
        before,
        "a redirect must not reach the backend"
    );
    sluice.check_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_delegation_is_required_across_namespaces() {
    let ca = TestCa::new("edge ca").unwrap();
    let wildcard = ca.issue(&["*.example.com"]).unwrap();
    let private = ca.issue(&["private.example.com"]).unwrap();
    let www = Backend::start("www").await.unwrap();
    let other = Backend::start("other").await.unwrap();

    let dir = Manifests::new().unwrap();
    dir.write(
        "secrets.yaml",
        &(tls_doc("www-admin", "example-com-wildcard", &wildcard)
            + &tls_doc("www-admin", "private", &private)),
    )
    .unwrap();
    dir.write(
        "delegation.yaml",
        &doc(&json!({
            "apiVersion": "contour.heptio.com/v1beta1",
            "kind": "TLSCertificateDelegation",
            "metadata": {"namespace": "www-admin", "name": "example-com-wildcard"},
            "spec": {"delegations": [{
                "secretName": "example-com-wildcard",
                "targetNamespaces": ["example-com"],
            }]},
        })),
    )
    .unwrap();
    dir.write(
        "services.yaml",
        &(service("example-com", "web", 80, &[www.port()])
            + &service("other", "web", 80, &[other.port()])),
    )
    .unwrap();
    let root = |namespace: &str, name: &str, fqdn: &str, secret: &str| {
        ingressroute(
            namespace,
            name,
            None,
            json!({
                "virtualhost": {"fqdn": fqdn, "tls": {"secretName": secret}},
                "routes": [route("/", "web", 80)],
            }),
        )
    };
    dir.write(
        "routes.yaml",
        &(root(
            "example-com",
            "www",
            "www.example.com",
            "www-admin/example-com-wildcard",
        ) + &root(
            "other",
            "stolen",
            "stolen.example.com",
            "www-admin/example-com-wildcard",
        ) + &root(
            "other",
            "private",
            "private.example.com",
            "www-admin/private",
        )),
    )
    .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();

    // The delegated wildcard serves the root in example-com.
    let resp = wait_https(&mut sluice, &ports, &client, "www.example.com", "/").await;
    assert_eq!(resp.backend().as_deref(), Some("www"));
    let session = TlsSession::connect(ports.https, "www.example.com", &client)
        .await
        .unwrap();
    assert_eq!(
        session.peer_certificates().first(),
        Some(&leaf_der(&wildcard.cert_pem))
    );

    // Roots in `other` may not use certificates of www-admin: their hosts get no certificate,
    // although the wildcard (and the private certificate) would be valid for them. Nor are
    // they served over plain HTTP, where the valid root is redirected.
    wait_http_status(&mut sluice, &ports, "www.example.com", "/", 301).await;
    for host in ["stolen.example.com", "private.example.com"] {
        assert_no_certificate(ports.https, host, &client).await;
        let plain = get(ports.http, host, "/").await.unwrap();
        assert_eq!(plain.status, 404, "{host}: {}", plain.text());
    }
    assert_eq!(other.control().request_count(), 0);
    for needle in [
        "IngressRoute other/stolen is invalid: www-admin/example-com-wildcard: certificate \
         delegation not permitted",
        "IngressRoute other/private is invalid: www-admin/private: certificate delegation not \
         permitted",
    ] {
        sluice.wait_log_line(&[needle], WAIT).await.unwrap();
    }
    sluice.check_running().unwrap();

    // `sluice render` on the same manifests: the secret nobody may use is not in xDS at all.
    let out = sluice_e2e::sluice::run(&["render", "--manifests", dir.path().to_str().unwrap()])
        .await
        .unwrap();
    let report: Value = serde_json::from_str(&out).unwrap();
    let gateway = &report["gateways"][0];
    let secrets: Vec<&str> = gateway["xds"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(secrets, ["www-admin/example-com-wildcard"]);
    // The delegated certificate is printed whole; of the other, no line of its own (lines
    // shared with the first, such as the issuer's name, do not count) appears anywhere.
    let body = |pem: &str| -> Vec<String> {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned)
            .collect()
    };
    let delegated = body(&wildcard.cert_pem);
    assert!(delegated.iter().all(|line| out.contains(line.as_str())));
    let own: Vec<String> = body(&private.cert_pem)
        .into_iter()
        .filter(|line| !delegated.contains(line))
        .collect();
    assert!(!own.is_empty());
    for line in &own {
        assert!(!out.contains(line.as_str()), "{line} is in the output");
    }
    let statuses: Vec<(&str, &str)> = gateway["ingressRoutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["currentStatus"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("www", "valid"),
            ("private", "invalid"),
            ("stolen", "invalid")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_validates_the_backend_certificate() {
    let upstream_ca = TestCa::new("upstream ca").unwrap();
    let unrelated_ca = TestCa::new("unrelated ca").unwrap();
    let good = Backend::start_tls(
        "good",
        &upstream_ca.issue(&["backend.example.com"]).unwrap(),
    )
    .await
    .unwrap();
    let wrong = Backend::start_tls("wrong", &upstream_ca.issue(&["wrong.example.com"]).unwrap())
        .await
        .unwrap();
    let plain = Backend::start_tls(
        "plain",
        &unrelated_ca.issue(&["plain.example.com"]).unwrap(),
    )
    .await
    .unwrap();

    let dir = Manifests::new().unwrap();
    dir.write(
        "ca.yaml",
        &ca_secret("default", "upstream-ca", &upstream_ca.cert_pem()),
    )
    .unwrap();
    // Upstream TLS by port number and by port name.
    dir.write(
        "services.yaml",
        &(tls_service("default", "good", 443, "https", "443", good.port())
            + &tls_service("default", "wrong", 443, "https", "https", wrong.port())
            + &tls_service("default", "plain", 443, "https", "443", plain.port())),
    )
    .unwrap();
    let validated = |prefix: &str, svc: &str| {
        let mut r = route(prefix, svc, 443);
        r["services"][0]["validation"] =
            json!({"caSecret": "upstream-ca", "subjectName": "backend.example.com"});
        r
    };
    dir.write(
        "route.yaml",
        &ingressroute(
            "default",
            "upstream",
            None,
            json!({
                "virtualhost": {"fqdn": "up.example.com"},
                "routes": [
                    validated("/good", "good"),
                    validated("/wrong", "wrong"),
                    route("/plain", "plain", 443),
                ],
            }),
        ),
    )
    .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();

    // Validation on: the certificate for the subject name, signed by the CA, is accepted; Envoy
    // sends the subject name as SNI.
    let resp = wait_http(&mut sluice, &ports, "up.example.com", "/good").await;
    let echo = resp.echo().unwrap();
    assert_eq!(echo.backend, "good");
    assert_eq!(echo.tls_sni.as_deref(), Some("backend.example.com"));

    // Validation off: TLS to a backend with a certificate from a CA nobody configured works.
    let resp = wait_http(&mut sluice, &ports, "up.example.com", "/plain").await;
    assert_eq!(resp.backend().as_deref(), Some("plain"));

    // Validation on, same CA, wrong name: Envoy reaches the backend but refuses its certificate,
    // so no request gets through.
    // (Polled until Envoy has connected to it, in case that cluster still warms up; every
    // answer on the way must be a failure.)
    let mut answers = Vec::new();
    try_wait_for("Envoy to connect to the backend wrong", WAIT, async || {
        sluice.check_running()?;
        let resp = get(ports.http, "up.example.com", "/wrong").await?;
        answers.push((resp.status, resp.text()));
        Ok((wrong.control().connection_count() > 0).then_some(()))
    })
    .await
    .unwrap();
    for (status, text) in &answers {
        assert!(*status == 502 || *status == 503, "{status}: {text}");
    }
    assert_eq!(wrong.control().request_count(), 0);
    sluice.check_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcpproxy_terminates_or_passes_tls_through() {
    let ca = TestCa::new("edge ca").unwrap();
    let tcp_cert = ca.issue(&["tcp.example.com"]).unwrap();
    let backend_ca = TestCa::new("backend ca").unwrap();
    let pass_cert = backend_ca.issue(&["pass.example.com"]).unwrap();

    let echo = TcpEchoBackend::start().await.unwrap();
    let pass = Backend::start_tls("pass", &pass_cert).await.unwrap();
    let web = Backend::start("web").await.unwrap();

    let dir = Manifests::new().unwrap();
    dir.write("secret.yaml", &tls_secret("default", "tcp", &tcp_cert))
        .unwrap();
    dir.write(
        "services.yaml",
        &(service("default", "echo", 9000, &[echo.port()])
            + &service("default", "pass", 8443, &[pass.port()])
            + &service("default", "web", 80, &[web.port()])),
    )
    .unwrap();
    let mut open = route("/open", "web", 80);
    open["permitInsecure"] = json!(true);
    dir.write(
        "routes.yaml",
        &(ingressroute(
            "default",
            "tcp",
            None,
            json!({
                "virtualhost": {"fqdn": "tcp.example.com", "tls": {"secretName": "tcp"}},
                "tcpproxy": {"services": [{"name": "echo", "port": 9000}]},
                "routes": [route("/", "web", 80), open],
            }),
        ) + &ingressroute(
            "default",
            "pass",
            None,
            json!({
                "virtualhost": {"fqdn": "pass.example.com", "tls": {"passthrough": true}},
                "tcpproxy": {"services": [{"name": "pass", "port": 8443}]},
                "routes": [route("/", "web", 80)],
            }),
        )),
    )
    .unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();

    // TLS terminated by Envoy with its certificate, then raw bytes to the echo backend.
    let client = TlsClient::trusting(&ca.cert_pem()).unwrap();
    let mut session = wait_session(&mut sluice, &ports, &client, "tcp.example.com").await;
    assert_eq!(
        session.peer_certificates().first(),
        Some(&leaf_der(&tcp_cert.cert_pem))
    );
    assert_eq!(session.alpn_protocol(), None, "no ALPN for a TCP proxy");
    let bytes = b"\x00raw bytes, not HTTP\r\n\xff";
    let answer = session.round_trip(bytes, WAIT).await.unwrap();
    assert_eq!(answer, bytes);
    let again = session.round_trip(b"twice", WAIT).await.unwrap();
    assert_eq!(again, b"twice");
    assert_eq!(echo.connection_count(), 1);
    assert_eq!(web.control().request_count(), 0);

    // Passthrough: the backend completes the handshake itself; the client sees its certificate.
    let backend_client = TlsClient::trusting(&backend_ca.cert_pem()).unwrap();
    let resp = wait_https(
        &mut sluice,
        &ports,
        &backend_client,
        "pass.example.com",
        "/p",
    )
    .await;
    let echoed = resp.echo().unwrap();
    assert_eq!(echoed.backend, "pass");
    assert_eq!(echoed.tls_sni.as_deref(), Some("pass.example.com"));
    assert_eq!(
        echoed.header("x-forwarded-proto"),
        None,
        "Envoy must not have seen the HTTP inside"
    );
    let session = TlsSession::connect(ports.https, "pass.example.com", &backend_client)
        .await
        .unwrap();
    assert_eq!(
        session.peer_certificates().first(),
        Some(&leaf_der(&pass_cert.cert_pem))
    );
    // Envoy holds no certificate of its own for the passthrough host: a client trusting only
    // the edge CA gets the backend's certificate and rejects it.
    let e = refused_handshake(ports.https, "pass.example.com", &client).await;
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");

    // Plain HTTP to the tcpproxy host: only the permitInsecure route, no redirect.
    let resp = wait_http(&mut sluice, &ports, "tcp.example.com", "/open").await;
    assert_eq!(resp.backend().as_deref(), Some("web"));
    for host in ["tcp.example.com", "pass.example.com"] {
        let resp = get(ports.http, host, "/").await.unwrap();
        assert_eq!(resp.status, 404, "{host}: {}", resp.text());
        assert_eq!(resp.header("location"), None, "{host}");
    }
    sluice.check_running().unwrap();
}
