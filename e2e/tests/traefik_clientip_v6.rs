//! Traefik `ClientIP()` with IPv6 clients, end to end through `sluice standalone` and a real
//! Envoy whose listeners are on the IPv6 wildcard `::` (so they take IPv4 clients too):
//! IngressRoutes (HTTP and HTTPS) and an IngressRouteTCP answer `ClientIP(`::1/128`)` for a
//! client connecting from `::1` and not for one connecting from 127.0.0.1, and an IPv4 network
//! for 127.0.0.1 and not for `::1` (Envoy must see an IPv4 client of the dual-stack socket as
//! IPv4, never as the mapped `::ffff:127.0.0.1`).
//!
//! A machine without an IPv6 loopback cannot run this: each test then says so on stderr and
//! returns (the message is the visible trace of the skip).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use sluice_e2e::backend::{Backend, TcpEchoBackend};
use sluice_e2e::manifests::{Manifests, service, tls_secret};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::try_wait_for;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Whether this machine can bind `::1`; when not, says that the test is skipped.
fn ipv6_loopback(test: &str) -> bool {
    match std::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED {test}: this machine has no IPv6 loopback (binding [::1]: {e})");
            false
        }
    }
}

fn traefik(kind: &str, namespace: &str, name: &str, spec: Value) -> String {
    format!(
        "---\n{}\n",
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": kind,
            "metadata": {"namespace": namespace, "name": name,
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": spec,
        })
    )
}

/// Standalone listening on `::` (both families).
fn start(dir: &Manifests) -> Standalone {
    Standalone::builder(dir.path())
        .arg("--listen-address")
        .arg("::")
        .start()
        .unwrap()
}

/// One GET to `port` on the loopback of `from`'s family; names the backend that answered, else
/// `status <code>`, else `no answer`.
async fn get_from(from: IpAddr, port: u16, host: &str, path: &str) -> String {
    let answer = tokio::time::timeout(IO_TIMEOUT, async {
        let mut s = TcpStream::connect(SocketAddr::new(from, port)).await.ok()?;
        let local = s.local_addr().ok()?.ip();
        assert_eq!(local, from, "the client's own address");
        let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let backend = text
            .split_once("\"backend\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(name, _)| name.to_owned());
        backend.or_else(|| Some(format!("status {}", text.split(' ').nth(1)?)))
    })
    .await;
    answer
        .ok()
        .flatten()
        .unwrap_or_else(|| "no answer".to_owned())
}

/// One GET over TLS for `host` (certificate checked against `ca`), as [`get_from`].
async fn https_get_from(ca: &TestCa, from: IpAddr, port: u16, host: &str) -> String {
    let config = Arc::new(TlsClient::trusting(&ca.cert_pem()).unwrap().rustls_config());
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let answer = tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = TcpStream::connect(SocketAddr::new(from, port)).await.ok()?;
        assert_eq!(
            tcp.local_addr().ok()?.ip(),
            from,
            "the client's own address"
        );
        let mut s = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        let request = format!("GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        // Envoy may close without a TLS close_notify: keep what came.
        let _ = s.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let backend = text
            .split_once("\"backend\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(name, _)| name.to_owned());
        backend.or_else(|| Some(format!("status {}", text.split(' ').nth(1)?)))
    })
    .await;
    answer
        .ok()
        .flatten()
        .unwrap_or_else(|| "no answer".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_client_ip_tells_ipv6_from_ipv4_clients() {
    if !ipv6_loopback("http_client_ip_tells_ipv6_from_ipv4_clients") {
        return;
    }
    let names = ["six", "four", "rest"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(Backend::start(name).await.unwrap());
    }
    let ca = TestCa::new("edge ca").unwrap();
    let edge = ca.issue(&["tls.example.com"]).unwrap();
    let dir = Manifests::new().unwrap();
    let mut objects = format!("---\n{}", tls_secret("apps", "edge", &edge));
    for b in &backends {
        objects += &service("apps", b.name(), 80, &[b.port()]);
    }
    let svc = |name: &str| json!([{"name": name, "port": 80}]);
    objects += &traefik(
        "IngressRoute",
        "apps",
        "by-family",
        json!({"entryPoints": ["web"], "routes": [
            {"match": "Host(`ip.example.com`) && PathPrefix(`/six`) && ClientIP(`::1/128`)",
             "services": svc("six")},
            // An IPv6 network that does not hold ::1, and an IPv4 one that holds 127.0.0.1.
            {"match": "Host(`ip.example.com`) && PathPrefix(`/four`) && \
                       (ClientIP(`127.0.0.0/8`) || ClientIP(`2001:db8::/32`))",
             "services": svc("four")},
            {"match": "Host(`ip.example.com`) && PathPrefix(`/not-six`) && !ClientIP(`::1`)",
             "services": svc("four")},
            {"match": "Host(`ip.example.com`)", "services": svc("rest")},
        ]}),
    );
    objects += &traefik(
        "IngressRoute",
        "apps",
        "tls",
        json!({"entryPoints": ["websecure"], "tls": {"secretName": "edge"}, "routes": [
            {"match": "Host(`tls.example.com`) && ClientIP(`::1`)", "priority": 10,
             "services": svc("six")},
            {"match": "Host(`tls.example.com`)", "priority": 1, "services": svc("rest")},
        ]}),
    );
    dir.write("objects.yaml", &objects).unwrap();
    let mut sluice = start(&dir);
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let http = ports.http;
    try_wait_for("ip.example.com served over IPv6", WAIT, async || {
        sluice.check_running()?;
        let got = get_from(V6, http, "ip.example.com", "/").await;
        Ok((got == "rest").then_some(()))
    })
    .await
    .unwrap();
    let cases = [
        (V6, "/six", "six"),
        // Not the client's network: the next route answers, as Traefik's next router.
        (V4, "/six", "rest"),
        (V4, "/four", "four"),
        (V6, "/four", "rest"),
        (V4, "/not-six", "four"),
        (V6, "/not-six", "rest"),
    ];
    for (from, path, expected) in cases {
        let got = get_from(from, http, "ip.example.com", path).await;
        assert_eq!(got, expected, "{path} from {from}");
    }
    // HTTPS: the address is recorded on the SNI chains too.
    for (from, expected) in [(V6, "six"), (V4, "rest")] {
        let got = https_get_from(&ca, from, ports.https, "tls.example.com").await;
        assert_eq!(got, expected, "https from {from}");
    }
    sluice.check_running().unwrap();
}

/// Which echo backend a TLS session for `sni` from `from` reaches; `None` when refused or closed.
async fn tcp_reached(
    ca: &TestCa,
    from: IpAddr,
    port: u16,
    sni: &str,
    backends: &[(&str, &TcpEchoBackend)],
) -> Option<String> {
    let before: Vec<u64> = backends.iter().map(|(_, b)| b.connection_count()).collect();
    let config = Arc::new(TlsClient::trusting(&ca.cert_pem()).unwrap().rustls_config());
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = TcpStream::connect(SocketAddr::new(from, port)).await.ok()?;
        assert_eq!(
            tcp.local_addr().ok()?.ip(),
            from,
            "the client's own address"
        );
        let mut s = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        s.write_all(b"ping\n").await.ok()?;
        s.flush().await.ok()?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 64];
        while !answer.ends_with(b"ping\n") {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => answer.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
        Some(())
    })
    .await
    .ok()
    .flatten()?;
    let moved: Vec<&str> = backends
        .iter()
        .zip(&before)
        .filter(|((_, b), n)| b.connection_count() > **n)
        .map(|((name, _), _)| *name)
        .collect();
    assert_eq!(moved.len(), 1, "{sni} from {from}: {moved:?}");
    Some(moved[0].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_client_ip_tells_ipv6_from_ipv4_clients() {
    if !ipv6_loopback("tcp_client_ip_tells_ipv6_from_ipv4_clients") {
        return;
    }
    let ca = TestCa::new("edge ca").unwrap();
    let edge = ca
        .issue(&["six.example.com", "four.example.com", "only.example.com"])
        .unwrap();
    let (six, four, rest) = (
        TcpEchoBackend::start().await.unwrap(),
        TcpEchoBackend::start().await.unwrap(),
        TcpEchoBackend::start().await.unwrap(),
    );
    let dir = Manifests::new().unwrap();
    let mut objects = format!("---\n{}", tls_secret("apps", "edge", &edge));
    for (name, port) in [
        ("six", six.port()),
        ("four", four.port()),
        ("rest", rest.port()),
    ] {
        objects += &service("apps", name, 9000, &[port]);
    }
    let svc = |name: &str| json!([{"name": name, "port": 9000}]);
    objects += &traefik(
        "IngressRouteTCP",
        "apps",
        "by-family",
        json!({"entryPoints": ["websecure"], "tls": {"secretName": "edge"}, "routes": [
            {"match": "HostSNI(`six.example.com`) && ClientIP(`::1/128`)", "priority": 10,
             "services": svc("six")},
            {"match": "HostSNI(`six.example.com`)", "priority": 1, "services": svc("rest")},
            {"match": "HostSNI(`four.example.com`) && ClientIP(`127.0.0.0/8`)", "priority": 10,
             "services": svc("four")},
            {"match": "HostSNI(`four.example.com`)", "priority": 1, "services": svc("rest")},
            // Only IPv6 clients in 2001:db8::/32: nobody here.
            {"match": "HostSNI(`only.example.com`) && ClientIP(`2001:db8::/32`)",
             "services": svc("six")},
        ]}),
    );
    dir.write("objects.yaml", &objects).unwrap();
    let mut sluice = start(&dir);
    let https = sluice.default_instance(WAIT).await.unwrap().https;
    let backends = [("six", &six), ("four", &four), ("rest", &rest)];
    let first = try_wait_for("six.example.com over IPv6", WAIT, async || {
        sluice.check_running()?;
        Ok(tcp_reached(&ca, V6, https, "six.example.com", &backends).await)
    })
    .await
    .unwrap();
    assert_eq!(first, "six");
    let cases = [
        (V4, "six.example.com", Some("rest")),
        (V4, "four.example.com", Some("four")),
        (V6, "four.example.com", Some("rest")),
        (V6, "only.example.com", None),
        (V4, "only.example.com", None),
    ];
    for (from, sni, expected) in cases {
        let got = tcp_reached(&ca, from, https, sni, &backends).await;
        assert_eq!(got.as_deref(), expected, "{sni} from {from}");
    }
    sluice.check_running().unwrap();
}
