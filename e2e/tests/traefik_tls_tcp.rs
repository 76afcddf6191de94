//! Traefik TLSOptions, TLSStores and IngressRouteTCPs end to end, through `sluice standalone`
//! and a real Envoy, with certificates made by the test: version floor and ceiling, a cipher
//! restriction, curves, ALPN, every client auth type (required and verified, verified when
//! given, any certificate required or requested, none), strict SNI, a namespace's `default`
//! TLSOption and TLSStore applying to that namespace only, and standalone's lines for refused
//! Traefik objects; TCP passthrough and termination by SNI, weights, and PROXY protocol
//! headers to the backend.
//!
//! Every refusal is checked after a success on the same listener (the other host, or another
//! client on the same host), so it cannot pass merely because Envoy has not got its
//! configuration yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::crypto::SupportedKxGroup;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ProtocolVersion, SupportedCipherSuite, SupportedProtocolVersion};
use serde_json::{Value, json};
use sluice_e2e::backend::{Backend, TcpEchoBackend};
use sluice_e2e::manifests::{self, Manifests, ca_secret, service, tls_secret};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::tls::{CertKey, TestCa};
use sluice_e2e::try_wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn secret_doc(s: String) -> String {
    format!("---\n{s}")
}

fn traefik(kind: &str, namespace: &str, name: &str, spec: Value) -> String {
    manifests::traefik(kind, namespace, name, None, spec)
}

/// An HTTPS IngressRoute for `host` to the Service `web`, with `tls`.
fn https_route(namespace: &str, name: &str, host: &str, tls: Value) -> String {
    traefik(
        "IngressRoute",
        namespace,
        name,
        json!({
            "entryPoints": ["websecure"],
            "routes": [{"match": format!("Host(`{host}`)"), "services": [{"name": "web", "port": 80}]}],
            "tls": tls,
        }),
    )
}

/// How a test client connects: versions, cipher suites, key exchange groups (curves), ALPN,
/// client certificate, whether it sends SNI.
struct Client {
    ca_pem: String,
    versions: Vec<&'static SupportedProtocolVersion>,
    suites: Option<Vec<SupportedCipherSuite>>,
    groups: Option<Vec<&'static dyn SupportedKxGroup>>,
    alpn: Vec<&'static str>,
    cert: Option<CertKey>,
    send_sni: bool,
    /// Set when a server asked this client for its certificate (see [`AskedCert`]).
    asked: Arc<AtomicBool>,
}

/// Presents the client's certificate, noting that the server asked for one: rustls asks its
/// resolver only when the server sends a CertificateRequest.
#[derive(Debug)]
struct AskedCert {
    key: Arc<rustls::sign::CertifiedKey>,
    asked: Arc<AtomicBool>,
}

impl rustls::client::ResolvesClientCert for AskedCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl Client {
    fn trusting(ca: &TestCa) -> Client {
        Client {
            ca_pem: ca.cert_pem(),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            suites: None,
            groups: None,
            alpn: vec!["http/1.1"],
            cert: None,
            send_sni: true,
            asked: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a server asked for the client's certificate since the last call (only a client
    /// with [`Client::cert`] notices).
    fn take_asked(&self) -> bool {
        self.asked.swap(false, Ordering::SeqCst)
    }

    /// Offers only these key exchange groups (a client limited to some curves).
    fn groups(mut self, g: &[&'static dyn SupportedKxGroup]) -> Client {
        self.groups = Some(g.to_vec());
        self
    }

    /// Sends no SNI; the server's certificate is still verified against the name connected to.
    fn without_sni(mut self) -> Client {
        self.send_sni = false;
        self
    }

    fn versions(mut self, v: &[&'static SupportedProtocolVersion]) -> Client {
        self.versions = v.to_vec();
        self
    }

    fn suites(mut self, s: &[SupportedCipherSuite]) -> Client {
        self.suites = Some(s.to_vec());
        self
    }

    fn alpn(mut self, a: &[&'static str]) -> Client {
        self.alpn = a.to_vec();
        self
    }

    fn cert(mut self, c: &CertKey) -> Client {
        self.cert = Some(c.clone());
        self
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = &self.suites {
            provider.cipher_suites = suites.clone();
        }
        if let Some(groups) = &self.groups {
            provider.kx_groups = groups.clone();
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(provider);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.cert {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain = CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
                let key = rustls::sign::CertifiedKey::from_der(chain, key, &provider).unwrap();
                builder.with_client_cert_resolver(Arc::new(AskedCert {
                    key: Arc::new(key),
                    asked: self.asked.clone(),
                }))
            }
        };
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.enable_sni = self.send_sni;
        Arc::new(config)
    }

    /// A TLS session with 127.0.0.1:`port` for `sni`, the server's certificate verified.
    async fn connect(&self, port: u16, sni: &str) -> Result<TlsStream<TcpStream>, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let name = ServerName::try_from(sni.to_owned()).unwrap();
        let handshake = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            tokio_rustls::TlsConnector::from(self.config())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))
        };
        tokio::time::timeout(IO_TIMEOUT, handshake)
            .await
            .unwrap_or_else(|_| Err("handshake timed out".into()))
    }

    /// `GET /` over HTTP/1.1 for `host`: the status and body, or why there is none (a refused
    /// handshake, or a connection closed before an answer: with TLS 1.3 a refused client
    /// certificate shows only when reading).
    async fn get(&self, port: u16, host: &str) -> Result<(u16, String), String> {
        let mut s = self.connect(port, host).await?;
        let exchange = async {
            let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            s.write_all(request.as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer)
                .await
                .map_err(|e| format!("read: {e}"))?;
            let text = String::from_utf8_lossy(&answer).into_owned();
            let status = text
                .strip_prefix("HTTP/1.1 ")
                .and_then(|t| t.get(..3))
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
            Ok((status, text))
        };
        tokio::time::timeout(IO_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err("request timed out".into()))
    }
}

async fn wait_ok(sluice: &mut Standalone, ports: &InstancePorts, client: &Client, host: &str) {
    try_wait_for(
        &format!("https://{host}/ to answer 200"),
        WAIT,
        async || {
            sluice.check_running()?;
            Ok(client
                .get(ports.https, host)
                .await
                .ok()
                .filter(|(s, _)| *s == 200))
        },
    )
    .await
    .unwrap();
}

async fn assert_ok(ports: &InstancePorts, client: &Client, host: &str, what: &str) {
    match client.get(ports.https, host).await {
        Ok((200, body)) => assert!(body.contains("\"web\""), "{what}: {body}"),
        other => panic!("{what}: expected 200 from {host}, got {other:?}"),
    }
}

async fn assert_refused(ports: &InstancePorts, client: &Client, host: &str, what: &str) {
    if let Ok(answer) = client.get(ports.https, host).await {
        panic!("{what}: {host} answered {answer:?}; it should have refused the client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_options_set_versions_ciphers_alpn_and_client_certificates_per_namespace() {
    let ca = TestCa::new("edge ca").unwrap();
    let client_ca = TestCa::new("client ca").unwrap();
    let other_ca = TestCa::new("other ca").unwrap();
    let hosts = [
        "plain.example.com",
        "tls12.example.com",
        "cipher.example.com",
        "alpn.example.com",
        "mtls.example.com",
        "mtls-opt.example.com",
        "a.example.com",
        "store.example.com",
        "b.example.com",
        "curves.example.com",
        "any-cert.example.com",
        "request-cert.example.com",
        "no-cert.example.com",
        "lax-sni.example.com",
    ];
    // The certificate also names a host nobody serves, so a handshake for it can only fail
    // because Envoy refuses it, never because a certificate it served does not match.
    let mut names = hosts.to_vec();
    names.extend(["unknown.example.com", "cross.example.com"]);
    let cert = ca.issue(&names).unwrap();
    let web = Backend::start("web").await.unwrap();

    let dir = Manifests::new().unwrap();
    let mut objects = String::new();
    for ns in ["apps", "team-a", "team-b"] {
        objects += &secret_doc(tls_secret(ns, "cert", &cert));
        objects += &service(ns, "web", 80, &[web.port()]);
    }
    objects += &secret_doc(ca_secret("apps", "client-ca", &client_ca.cert_pem()));
    let tls = |options: &str| json!({"secretName": "cert", "options": {"name": options}});
    objects += &https_route(
        "apps",
        "plain",
        "plain.example.com",
        json!({"secretName": "cert"}),
    );
    objects += &traefik(
        "TLSOption",
        "apps",
        "tls12",
        json!({"maxVersion": "VersionTLS12"}),
    );
    objects += &https_route("apps", "tls12", "tls12.example.com", tls("tls12"));
    objects += &traefik(
        "TLSOption",
        "apps",
        "cipher",
        json!({"maxVersion": "VersionTLS12",
               "cipherSuites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]}),
    );
    objects += &https_route("apps", "cipher", "cipher.example.com", tls("cipher"));
    objects += &traefik(
        "TLSOption",
        "apps",
        "alpn",
        json!({"alpnProtocols": ["http/1.1"]}),
    );
    objects += &https_route("apps", "alpn", "alpn.example.com", tls("alpn"));
    objects += &traefik(
        "TLSOption",
        "apps",
        "mtls",
        json!({"clientAuth": {"secretNames": ["client-ca"],
                              "clientAuthType": "RequireAndVerifyClientCert"}}),
    );
    objects += &https_route("apps", "mtls", "mtls.example.com", tls("mtls"));
    objects += &traefik(
        "TLSOption",
        "apps",
        "mtls-opt",
        json!({"clientAuth": {"secretNames": ["client-ca"],
                              "clientAuthType": "VerifyClientCertIfGiven"}}),
    );
    objects += &https_route("apps", "mtls-opt", "mtls-opt.example.com", tls("mtls-opt"));
    // Curves: P-384 only.
    objects += &traefik(
        "TLSOption",
        "apps",
        "curves",
        json!({"curvePreferences": ["CurveP384"]}),
    );
    objects += &https_route("apps", "curves", "curves.example.com", tls("curves"));
    // The client auth types that do not verify (any certificate; required or not) and
    // NoClientCert, which ignores its CAs.
    for (name, auth_type) in [
        ("any-cert", "RequireAnyClientCert"),
        ("request-cert", "RequestClientCert"),
        ("no-cert", "NoClientCert"),
    ] {
        objects += &traefik(
            "TLSOption",
            "apps",
            name,
            json!({"clientAuth": {"secretNames": ["client-ca"], "clientAuthType": auth_type}}),
        );
        objects += &https_route("apps", name, &format!("{name}.example.com"), tls(name));
    }
    // A broken Middleware no route names: its own verdict says so on standalone's output.
    objects += &traefik(
        "Middleware",
        "apps",
        "unused",
        json!({"stripPrefix": {"prefixes": []}}),
    );
    // sniStrict: false is accepted and changes nothing: the listener is always strict.
    objects += &traefik("TLSOption", "apps", "lax-sni", json!({"sniStrict": false}));
    objects += &https_route("apps", "lax-sni", "lax-sni.example.com", tls("lax-sni"));
    // Refused, and said so on standalone's output: RequireAnyClientCert without a CA (Envoy
    // asks for a certificate only with CAs to name), and an IngressRouteTCP on `web`.
    objects += &traefik(
        "TLSOption",
        "apps",
        "any-no-ca",
        json!({"clientAuth": {"clientAuthType": "RequireAnyClientCert"}}),
    );
    objects += &https_route(
        "apps",
        "any-no-ca",
        "any-no-ca.example.com",
        tls("any-no-ca"),
    );
    // Another namespace's TLSOption, refused although the Gateway sets allowCrossNamespace.
    objects += &https_route(
        "team-b",
        "cross",
        "cross.example.com",
        json!({"secretName": "cert", "options": {"name": "tls12", "namespace": "apps"}}),
    );
    objects += &manifests::doc(&json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Gateway",
        "metadata": {"namespace": "ingress", "name": "gw"},
        "spec": {"allowCrossNamespace": true},
    }));
    objects += &traefik(
        "IngressRouteTCP",
        "apps",
        "tcp-on-web",
        json!({"entryPoints": ["web"],
               "routes": [{"match": "HostSNI(`tcp-on-web.example.com`)",
                           "services": [{"name": "web", "port": 80}]}],
               "tls": {"secretName": "cert"}}),
    );
    // team-a's `default` TLSOption (TLS 1.3 only) and TLSStore apply to team-a's routes only.
    objects += &traefik(
        "TLSOption",
        "team-a",
        "default",
        json!({"minVersion": "VersionTLS13"}),
    );
    objects += &traefik(
        "TLSStore",
        "team-a",
        "default",
        json!({"defaultCertificate": {"secretName": "cert"}}),
    );
    objects += &https_route(
        "team-a",
        "a",
        "a.example.com",
        json!({"secretName": "cert"}),
    );
    objects += &https_route("team-a", "store", "store.example.com", json!({}));
    objects += &https_route(
        "team-b",
        "b",
        "b.example.com",
        json!({"secretName": "cert"}),
    );
    dir.write("objects.yaml", &objects).unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.instance("ingress/gw", WAIT).await.unwrap();
    let any = Client::trusting(&ca);
    for host in hosts
        .iter()
        .filter(|h| !h.starts_with("mtls.") && !h.starts_with("any-cert."))
    {
        wait_ok(&mut sluice, &ports, &any, host).await;
    }
    let tls12 = Client::trusting(&ca).versions(&[&rustls::version::TLS12]);
    let tls13 = Client::trusting(&ca).versions(&[&rustls::version::TLS13]);

    // Ceiling: TLS 1.2 at most on tls12; TLS 1.3 elsewhere.
    let s = tls13
        .connect(ports.https, "plain.example.com")
        .await
        .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let s = any.connect(ports.https, "tls12.example.com").await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_refused(&ports, &tls13, "tls12.example.com", "maxVersion TLS 1.2").await;

    // Floor: team-a's default option refuses TLS 1.2; team-b's hosts do not see it.
    assert_ok(&ports, &tls12, "b.example.com", "team-b keeps TLS 1.2").await;
    assert_ok(&ports, &tls12, "plain.example.com", "apps keeps TLS 1.2").await;
    for host in ["a.example.com", "store.example.com"] {
        assert_ok(&ports, &tls13, host, "team-a over TLS 1.3").await;
        assert_refused(
            &ports,
            &tls12,
            host,
            "team-a's default option: TLS 1.3 only",
        )
        .await;
    }
    // The store's default certificate serves team-a's route that names no Secret.
    let s = any.connect(ports.https, "store.example.com").await.unwrap();
    let served = s.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec();
    let expected = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(served, expected.as_ref());

    // Cipher suites: only ECDHE-ECDSA-AES256-GCM-SHA384 on cipher (TLS 1.2).
    use rustls::crypto::ring::cipher_suite as cs;
    let aes128 = Client::trusting(&ca)
        .versions(&[&rustls::version::TLS12])
        .suites(&[cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]);
    let aes256 = Client::trusting(&ca)
        .versions(&[&rustls::version::TLS12])
        .suites(&[cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]);
    assert_ok(
        &ports,
        &aes128,
        "plain.example.com",
        "AES128 without the option",
    )
    .await;
    assert_ok(&ports, &aes256, "cipher.example.com", "the allowed suite").await;
    assert_refused(
        &ports,
        &aes128,
        "cipher.example.com",
        "a suite the option leaves out",
    )
    .await;

    // ALPN: h2 is offered by default; the alpn option advertises http/1.1 only.
    let h2 = Client::trusting(&ca).alpn(&["h2", "http/1.1"]);
    let s = h2.connect(ports.https, "plain.example.com").await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let s = h2.connect(ports.https, "alpn.example.com").await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // Client certificates: required and verified on mtls, verified if given on mtls-opt.
    let good = Client::trusting(&ca).cert(&client_ca.issue(&["client.example.com"]).unwrap());
    let wrong = Client::trusting(&ca).cert(&other_ca.issue(&["client.example.com"]).unwrap());
    wait_ok(&mut sluice, &ports, &good, "mtls.example.com").await;
    assert_refused(&ports, &any, "mtls.example.com", "no client certificate").await;
    assert_refused(
        &ports,
        &wrong,
        "mtls.example.com",
        "a certificate of another CA",
    )
    .await;
    assert_ok(
        &ports,
        &any,
        "mtls-opt.example.com",
        "no certificate, none required",
    )
    .await;
    assert_ok(&ports, &good, "mtls-opt.example.com", "a good certificate").await;
    assert_refused(
        &ports,
        &wrong,
        "mtls-opt.example.com",
        "a bad certificate given",
    )
    .await;
    // Without the option, a client certificate is neither asked for nor checked.
    wrong.take_asked();
    assert_ok(&ports, &wrong, "plain.example.com", "no client auth").await;
    assert!(
        !wrong.take_asked(),
        "plain.example.com asked for a certificate"
    );

    // RequireAnyClientCert: a certificate is required, but any will do (another CA's too).
    assert_ok(&ports, &wrong, "any-cert.example.com", "any certificate").await;
    assert!(wrong.take_asked());
    assert_ok(&ports, &good, "any-cert.example.com", "a good certificate").await;
    assert_refused(
        &ports,
        &any,
        "any-cert.example.com",
        "RequireAnyClientCert without a certificate",
    )
    .await;
    // RequestClientCert: asked for, neither required nor verified.
    assert_ok(
        &ports,
        &wrong,
        "request-cert.example.com",
        "any certificate",
    )
    .await;
    assert!(
        wrong.take_asked(),
        "RequestClientCert asks for a certificate"
    );
    assert_ok(&ports, &any, "request-cert.example.com", "none given").await;
    // NoClientCert: its CAs are ignored, no certificate is asked for.
    assert_ok(&ports, &wrong, "no-cert.example.com", "NoClientCert").await;
    assert!(!wrong.take_asked(), "NoClientCert asked for a certificate");
    assert_ok(
        &ports,
        &any,
        "no-cert.example.com",
        "NoClientCert, none given",
    )
    .await;

    // Curves: the option allows P-384 only. A client without it is refused there and served
    // elsewhere; one preferring P-256 gets P-384 there. Over TLS 1.2 the client must also
    // offer P-256, the curve of the server's ECDSA certificate (as Go's TLS requires too).
    use rustls::NamedGroup;
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    for (version, without, with) in [
        (
            &rustls::version::TLS13,
            vec![X25519],
            vec![SECP256R1, SECP384R1],
        ),
        (
            &rustls::version::TLS12,
            vec![X25519, SECP256R1],
            vec![SECP256R1, SECP384R1],
        ),
    ] {
        let without = Client::trusting(&ca).versions(&[version]).groups(&without);
        let with = Client::trusting(&ca).versions(&[version]).groups(&with);
        assert_ok(&ports, &without, "plain.example.com", "no curve option").await;
        assert_ok(&ports, &with, "curves.example.com", "a listed curve").await;
        let s = with
            .connect(ports.https, "curves.example.com")
            .await
            .unwrap();
        assert_eq!(
            s.get_ref()
                .1
                .negotiated_key_exchange_group()
                .map(|g| g.name()),
            Some(NamedGroup::secp384r1),
            "{version:?}"
        );
        assert_refused(&ports, &without, "curves.example.com", "no listed curve").await;
    }

    // SNI is strict whatever sniStrict says: no SNI, or a name nobody serves, gets no
    // handshake, although the one certificate served names both.
    assert_ok(&ports, &any, "lax-sni.example.com", "sniStrict: false").await;
    let no_sni = Client::trusting(&ca).without_sni();
    for host in ["lax-sni.example.com", "plain.example.com"] {
        assert!(
            no_sni.connect(ports.https, host).await.is_err(),
            "a handshake without SNI, verifying {host}"
        );
    }
    for host in ["unknown.example.com", "cross.example.com"] {
        assert!(
            any.connect(ports.https, host).await.is_err(),
            "a handshake for {host}, which nobody serves"
        );
    }

    // Standalone names the refused Traefik objects, with kind and API version, and only them
    // (a route refused for an object, and the object itself).
    for (object, reason) in [
        (
            "IngressRoute apps/any-no-ca (traefik.io/v1alpha1) is invalid: ",
            "Envoy asks for a client certificate only with CAs to name",
        ),
        (
            "IngressRouteTCP apps/tcp-on-web (traefik.io/v1alpha1) is invalid: ",
            "spec.entryPoints[0]: entry point \"web\" is not served",
        ),
        (
            "IngressRoute team-b/cross (traefik.io/v1alpha1) is invalid: ",
            "spec.tls.options.namespace: apps/tls12 is in another namespace",
        ),
        (
            "Middleware apps/unused (traefik.io/v1alpha1) is invalid: ",
            "spec.stripPrefix",
        ),
        // The TLSOption's own verdict says why too (every Traefik object has one).
        (
            "TLSOption apps/any-no-ca (traefik.io/v1alpha1) is invalid: ",
            "spec.clientAuth.secretNames: Envoy asks for a client certificate only",
        ),
    ] {
        sluice.wait_log_line(&[object, reason], WAIT).await.unwrap();
    }
    let log = sluice.log();
    let traefik_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("(traefik.io/v1alpha1) is"))
        .collect();
    assert!(
        traefik_lines.iter().all(|l| [
            "apps/any-no-ca (",
            "apps/tcp-on-web (",
            "team-b/cross (",
            "apps/unused ("
        ]
        .iter()
        .any(|o| l.contains(o))),
        "only the refused objects: {traefik_lines:#?}"
    );
    sluice.check_running().unwrap();
}

/// Writes `data` and reads until the answer ends with it (an echo, after whatever the backend
/// saw before it); returns everything read.
async fn echo(s: &mut TlsStream<TcpStream>, data: &[u8]) -> Vec<u8> {
    s.write_all(data).await.unwrap();
    s.flush().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, async {
        let mut buf = [0u8; 512];
        while !answer.ends_with(data) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {answer:?}");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no echo of {data:?}: got {answer:?}"));
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_routes_pass_through_or_terminate_with_weights_and_proxy_protocol() {
    let ca = TestCa::new("edge ca").unwrap();
    let backend_ca = TestCa::new("backend ca").unwrap();
    let edge = ca
        .issue(&[
            "tcp.example.com",
            "w.example.com",
            "pp1.example.com",
            "pp2.example.com",
        ])
        .unwrap();
    let pass = Backend::start_tls("pass", &backend_ca.issue(&["pass.example.com"]).unwrap())
        .await
        .unwrap();
    let [a, b, c, d, p1, p2] = [(); 6].map(|()| TcpEchoBackend::start());
    let (a, b, c, d, p1, p2) = (
        a.await.unwrap(),
        b.await.unwrap(),
        c.await.unwrap(),
        d.await.unwrap(),
        p1.await.unwrap(),
        p2.await.unwrap(),
    );

    let dir = Manifests::new().unwrap();
    let mut objects = secret_doc(tls_secret("apps", "edge", &edge));
    for (name, port) in [
        ("pass", pass.port()),
        ("a", a.port()),
        ("b", b.port()),
        ("c", c.port()),
        ("d", d.port()),
        ("p1", p1.port()),
        ("p2", p2.port()),
    ] {
        objects += &service("apps", name, 9000, &[port]);
    }
    let tcp = |name: &str, host: &str, services: Value, tls: Value| {
        traefik(
            "IngressRouteTCP",
            "apps",
            name,
            json!({"entryPoints": ["websecure"],
                   "routes": [{"match": format!("HostSNI(`{host}`)"), "services": services}],
                   "tls": tls}),
        )
    };
    let edge_tls = json!({"secretName": "edge"});
    objects += &tcp(
        "pass",
        "pass.example.com",
        json!([{"name": "pass", "port": 9000}]),
        json!({"passthrough": true}),
    );
    // A TLSOption on a terminated TCP route: TLS 1.3 only, and the ALPN it names.
    objects += &traefik(
        "TLSOption",
        "apps",
        "tcp13",
        json!({"minVersion": "VersionTLS13", "alpnProtocols": ["x-echo"]}),
    );
    objects += &tcp(
        "tcp",
        "tcp.example.com",
        json!([{"name": "a", "port": 9000, "weight": 1}, {"name": "b", "port": 9000, "weight": 0}]),
        json!({"secretName": "edge", "options": {"name": "tcp13"}}),
    );
    objects += &tcp(
        "w",
        "w.example.com",
        json!([{"name": "c", "port": 9000, "weight": 3}, {"name": "d", "port": 9000}]),
        edge_tls.clone(),
    );
    objects += &tcp(
        "pp1",
        "pp1.example.com",
        json!([{"name": "p1", "port": 9000, "proxyProtocol": {"version": 1}}]),
        edge_tls.clone(),
    );
    objects += &tcp(
        "pp2",
        "pp2.example.com",
        json!([{"name": "p2", "port": 9000, "proxyProtocol": {}}]),
        edge_tls,
    );
    dir.write("objects.yaml", &objects).unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let client = Client::trusting(&ca);

    // Termination: Envoy's certificate, no ALPN, raw bytes to the only weighted service.
    let mut s = try_wait_for("a TLS session for tcp.example.com", WAIT, async || {
        sluice.check_running()?;
        Ok(client.connect(ports.https, "tcp.example.com").await.ok())
    })
    .await
    .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let bytes = b"\x00raw, not HTTP\r\n\xff";
    assert_eq!(echo(&mut s, bytes).await, bytes);
    for _ in 0..5 {
        let mut s = client
            .connect(ports.https, "tcp.example.com")
            .await
            .unwrap();
        echo(&mut s, b"again").await;
    }
    assert_eq!(
        (a.connection_count(), b.connection_count()),
        (6, 0),
        "weight 0 excludes"
    );
    let x_echo = Client::trusting(&ca).alpn(&["x-echo"]);
    let s = x_echo
        .connect(ports.https, "tcp.example.com")
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"x-echo"[..]));
    let tls12 = Client::trusting(&ca).versions(&[&rustls::version::TLS12]);
    assert!(
        tls12.connect(ports.https, "tcp.example.com").await.is_err(),
        "the route's TLSOption allows TLS 1.3 only"
    );
    let s = tls12.connect(ports.https, "pp2.example.com").await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    drop(s);

    // Passthrough: the backend completes the handshake with its own certificate.
    let backend_client = Client::trusting(&backend_ca);
    let (status, body) = backend_client
        .get(ports.https, "pass.example.com")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"pass\""), "{body}");
    assert!(
        client
            .connect(ports.https, "pass.example.com")
            .await
            .is_err(),
        "the edge CA does not sign the passthrough backend's certificate"
    );

    // Weights 3 and 1 (unset): both services get connections.
    for _ in 0..40 {
        let mut s = client.connect(ports.https, "w.example.com").await.unwrap();
        echo(&mut s, b"w").await;
    }
    let (c_n, d_n) = (c.connection_count(), d.connection_count());
    assert_eq!(c_n + d_n, 40);
    assert!(
        c_n > d_n && d_n > 0,
        "3:1 split over 40 connections: {c_n} and {d_n}"
    );

    // PROXY protocol: the backend reads the header before the client's bytes.
    let mut s = client
        .connect(ports.https, "pp1.example.com")
        .await
        .unwrap();
    let answer = echo(&mut s, b"hello\n").await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
        "{text:?}"
    );
    assert!(text.ends_with("\r\nhello\n"), "{text:?}");
    let mut s = client
        .connect(ports.https, "pp2.example.com")
        .await
        .unwrap();
    let answer = echo(&mut s, b"hello\n").await;
    let signature = b"\r\n\r\n\x00\r\nQUIT\n";
    assert!(
        answer.starts_with(signature),
        "version 2 by default: {answer:?}"
    );
    assert_eq!(answer[12], 0x21, "v2, PROXY command");
    assert!(answer.ends_with(b"hello\n"));
    sluice.check_running().unwrap();
}
