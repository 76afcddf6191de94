//! IngressRouteTCP `ClientIP()`, `ALPN()`, open SNI names and TLSStore certificates end to end,
//! through `sluice standalone` and a real Envoy, with certificates made by the test and real
//! sockets: two client addresses (127.0.0.1 and 127.0.0.2, both loopback), ALPN offered or not.
//!
//! Every refusal is checked after a success on the same listener, so it cannot pass merely
//! because Envoy has not got its configuration yet.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use sluice_e2e::backend::TcpEchoBackend;
use sluice_e2e::manifests::{Manifests, service, tls_secret};
use sluice_e2e::sluice::{InstancePorts, Standalone};
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::tls_session::certificates_der;
use sluice_e2e::try_wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

const WAIT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A Traefik object of `kind`.
fn traefik(kind: &str, namespace: &str, name: &str, created: &str, spec: Value) -> String {
    format!(
        "---\n{}\n",
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": kind,
            "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
            "spec": spec,
        })
    )
}

fn tcp_route(namespace: &str, name: &str, created: &str, routes: Value, tls: Value) -> String {
    traefik(
        "IngressRouteTCP",
        namespace,
        name,
        created,
        json!({"entryPoints": ["websecure"], "routes": routes, "tls": tls}),
    )
}

/// A TCP connection to Envoy's HTTPS port from `from`.
async fn tcp_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
}

fn client_config(ca_pem: &str, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut config = TlsClient::trusting(ca_pem).unwrap().rustls_config();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A TLS session for `sni` from `from`, offering `alpn`, the certificate checked against `ca`.
async fn connect(
    ca: &TestCa,
    from: Ipv4Addr,
    port: u16,
    sni: &str,
    alpn: &[&str],
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let config = client_config(&ca.cert_pem(), alpn);
    tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = tcp_from(from, port).await.map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    })
    .await
    .map_err(|_| "timed out".to_owned())?
}

/// Writes `data` and reads its echo; `None` when the connection closes first.
async fn echo(s: &mut TlsStream<TcpStream>, data: &[u8]) -> Option<Vec<u8>> {
    s.write_all(data).await.ok()?;
    s.flush().await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, async {
        let mut buf = [0u8; 512];
        while !answer.ends_with(data) {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
        Some(answer)
    })
    .await
    .ok()
    .flatten()
}

/// Which of `backends` a session for `sni` from `from` offering `alpn` reaches (by the echo
/// backends' connection counts); `None` when the connection is refused or closed.
async fn reached(
    ca: &TestCa,
    ports: &InstancePorts,
    backends: &[(&str, &TcpEchoBackend)],
    from: Ipv4Addr,
    sni: &str,
    alpn: &[&str],
) -> Option<String> {
    let before: Vec<u64> = backends.iter().map(|(_, b)| b.connection_count()).collect();
    let mut s = connect(ca, from, ports.https, sni, alpn).await.ok()?;
    echo(&mut s, b"ping\n").await?;
    let after: Vec<u64> = backends.iter().map(|(_, b)| b.connection_count()).collect();
    let moved: Vec<&str> = backends
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| a > b)
        .map(|((n, _), _)| *n)
        .collect();
    assert_eq!(moved.len(), 1, "{sni} from {from}: {moved:?}");
    Some(moved[0].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_and_alpn_choose_the_chain_as_traefiks_priorities_do() {
    let ca = TestCa::new("edge ca").unwrap();
    let edge = ca
        .issue(&["ip.example.com", "only.example.com", "b.example.com"])
        .unwrap();
    let [inside, proto, rest, thief] = [(); 4].map(|()| TcpEchoBackend::start());
    let (inside, proto, rest, thief) = (
        inside.await.unwrap(),
        proto.await.unwrap(),
        rest.await.unwrap(),
        thief.await.unwrap(),
    );
    let dir = Manifests::new().unwrap();
    let mut objects = format!("---\n{}", tls_secret("apps", "edge", &edge));
    objects += &format!("---\n{}", tls_secret("evil", "edge", &edge));
    for (ns, name, port) in [
        ("apps", "inside", inside.port()),
        ("apps", "proto", proto.port()),
        ("apps", "rest", rest.port()),
        ("evil", "thief", thief.port()),
    ] {
        objects += &service(ns, name, 9000, &[port]);
    }
    let svc = |name: &str| json!([{"name": name, "port": 9000}]);
    let edge_tls = json!({"secretName": "edge"});
    objects += &tcp_route(
        "apps",
        "ip",
        "2024-01-01T00:00:00Z",
        json!([
            {"match": "HostSNI(`ip.example.com`) && ClientIP(`127.0.0.2/32`)", "priority": 100,
             "services": svc("inside")},
            {"match": "HostSNI(`ip.example.com`) && ALPN(`x-proto`)", "priority": 50,
             "services": svc("proto")},
            {"match": "HostSNI(`ip.example.com`)", "priority": 1, "services": svc("rest")},
            {"match": "HostSNI(`only.example.com`) && ClientIP(`127.0.0.2`)",
             "services": svc("inside")},
        ]),
        edge_tls.clone(),
    );
    // Another tenant: a younger claim on a held name with a higher priority and a narrower
    // network (refused: the name is held), and invalid networks on its own name (refused
    // before Envoy).
    objects += &tcp_route(
        "evil",
        "steal",
        "2025-01-01T00:00:00Z",
        json!([{"match": "HostSNI(`ip.example.com`) && ClientIP(`127.0.0.1`)",
                "priority": 10000, "services": svc("thief")}]),
        edge_tls.clone(),
    );
    objects += &tcp_route(
        "evil",
        "bad-cidr",
        "2025-01-01T00:00:00Z",
        json!([{"match": "HostSNI(`b.example.com`) && ClientIP(`127.0.0.0/99`)",
                "services": svc("thief")}]),
        edge_tls.clone(),
    );
    dir.write("objects.yaml", &objects).unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let backends = [
        ("inside", &inside),
        ("proto", &proto),
        ("rest", &rest),
        ("thief", &thief),
    ];
    let local = Ipv4Addr::LOCALHOST;
    let first = try_wait_for("a TLS session for ip.example.com", WAIT, async || {
        sluice.check_running()?;
        Ok(reached(&ca, &ports, &backends, local, "ip.example.com", &[]).await)
    })
    .await
    .unwrap();
    assert_eq!(
        first, "rest",
        "no ALPN, from 127.0.0.1: the route without conditions"
    );
    let cases: &[(Ipv4Addr, &[&str], &str, Option<&str>)] = &[
        (local, &["x-proto"], "ip.example.com", Some("proto")),
        (local, &["h2", "x-proto"], "ip.example.com", Some("proto")),
        (local, &["h2"], "ip.example.com", Some("rest")),
        (OTHER_CLIENT, &[], "ip.example.com", Some("inside")),
        // ClientIP's priority is higher than ALPN's: Envoy's ALPN chains hold it too.
        (OTHER_CLIENT, &["x-proto"], "ip.example.com", Some("inside")),
        (OTHER_CLIENT, &[], "only.example.com", Some("inside")),
        // No chain of a held name takes it: closed, never passed to another chain.
        (local, &[], "only.example.com", None),
        (local, &["x-proto"], "only.example.com", None),
        (local, &[], "b.example.com", None),
    ];
    for (from, alpn, sni, expected) in cases {
        let got = reached(&ca, &ports, &backends, *from, sni, alpn).await;
        assert_eq!(
            got.as_deref(),
            *expected,
            "{sni} from {from} offering {alpn:?}"
        );
    }
    assert_eq!(thief.connection_count(), 0);
    sluice.check_running().unwrap();
}

/// The leaf certificate a TLS session was served.
fn served_leaf(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn leaf_of(pem: &str) -> Vec<u8> {
    certificates_der(pem).unwrap().swap_remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaces_store_serves_its_certificates_by_host_to_its_own_routes() {
    let ca = TestCa::new("edge ca").unwrap();
    let other_ca = TestCa::new("another tenant's ca").unwrap();
    let exact = ca.issue(&["x.store.example.com"]).unwrap();
    let wild = ca.issue(&["*.store.example.com"]).unwrap();
    let fallback = ca.issue(&["other.test"]).unwrap();
    // Another tenant's store holds a certificate for a host of `apps`.
    let stolen = other_ca.issue(&["x.store.example.com"]).unwrap();
    let backend = TcpEchoBackend::start().await.unwrap();
    let dir = Manifests::new().unwrap();
    let mut objects = String::new();
    for (ns, name, cert) in [
        ("apps", "exact", &exact),
        ("apps", "wild", &wild),
        ("apps", "fallback", &fallback),
        ("evil", "stolen", &stolen),
    ] {
        objects += &format!("---\n{}", tls_secret(ns, name, cert));
    }
    objects += &service("apps", "echo", 9000, &[backend.port()]);
    let created = "2024-01-01T00:00:00Z";
    objects += &traefik(
        "TLSStore",
        "apps",
        "default",
        created,
        json!({"certificates": [{"secretName": "wild"}, {"secretName": "exact"}],
               "defaultCertificate": {"secretName": "fallback"}}),
    );
    objects += &traefik(
        "TLSStore",
        "evil",
        "default",
        created,
        json!({"certificates": [{"secretName": "stolen"}]}),
    );
    objects += &tcp_route(
        "apps",
        "store",
        created,
        json!([{"match": "HostSNI(`x.store.example.com`) || HostSNI(`y.store.example.com`) \
                          || HostSNI(`other.test`)",
                "services": [{"name": "echo", "port": 9000}]}]),
        json!({}),
    );
    dir.write("objects.yaml", &objects).unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let local = Ipv4Addr::LOCALHOST;
    let mut s = try_wait_for("a TLS session for x.store.example.com", WAIT, async || {
        sluice.check_running()?;
        Ok(connect(&ca, local, ports.https, "x.store.example.com", &[])
            .await
            .ok())
    })
    .await
    .unwrap();
    assert_eq!(
        served_leaf(&s),
        leaf_of(&exact.cert_pem),
        "the exact name before the wildcard listed first"
    );
    assert!(echo(&mut s, b"x\n").await.is_some());
    for (sni, cert) in [("y.store.example.com", &wild), ("other.test", &fallback)] {
        let mut s = connect(&ca, local, ports.https, sni, &[]).await.unwrap();
        assert_eq!(served_leaf(&s), leaf_of(&cert.cert_pem), "{sni}");
        assert!(echo(&mut s, b"y\n").await.is_some(), "{sni}");
    }
    // The other tenant's certificate for x.store.example.com is never served.
    assert!(
        connect(&other_ca, local, ports.https, "x.store.example.com", &[])
            .await
            .is_err()
    );
    sluice.check_running().unwrap();
}
