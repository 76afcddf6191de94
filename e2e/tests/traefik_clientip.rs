//! Traefik `ClientIP()` in IngressRoute rules end to end, through `sluice standalone` and a real
//! Envoy: requests from 127.0.0.1 and 127.0.0.2 (both loopback; standalone's listeners are
//! IPv4 here), over plain HTTP and HTTPS (certificates made by the test). A route whose network does not match the client falls
//! through to the next route, as in Traefik; the address is the TCP peer's, never
//! `X-Forwarded-For`; another tenant's `ClientIP(`0.0.0.0/0`)` takes only the catch-all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use sluice_e2e::backend::Backend;
use sluice_e2e::manifests::{Manifests, service, tls_secret};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::try_wait_for;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn ingress_route(namespace: &str, name: &str, created: &str, spec: Value) -> String {
    format!(
        "---\n{}\n",
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
            "spec": spec,
        })
    )
}

/// A TCP connection to Envoy's `port` from `from` (to the loopback of its family).
async fn tcp_from(from: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let (socket, to) = match from {
        IpAddr::V4(_) => (TcpSocket::new_v4()?, IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(_) => (TcpSocket::new_v6()?, IpAddr::V6(Ipv6Addr::LOCALHOST)),
    };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(SocketAddr::new(to, port)).await
}

/// Sends one GET and names who answered: the test backend's name, else `status <code>`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    path: &str,
    headers: &str,
) -> Option<String> {
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{headers}connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.ok()?;
    let text = String::from_utf8_lossy(&answer);
    let backend = text
        .split_once("\"backend\":\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name.to_owned());
    backend.or_else(|| {
        let status = text.split(' ').nth(1)?;
        Some(format!("status {status}"))
    })
}

async fn http_from(from: IpAddr, port: u16, host: &str, path: &str, headers: &str) -> String {
    tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = tcp_from(from, port).await.ok()?;
        exchange(tcp, host, path, headers).await
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| "no answer".to_owned())
}

async fn https_from(ca: &TestCa, from: IpAddr, port: u16, host: &str, path: &str) -> String {
    let config = Arc::new(TlsClient::trusting(&ca.cert_pem()).unwrap().rustls_config());
    let name = ServerName::try_from(host.to_owned()).unwrap();
    tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = tcp_from(from, port).await.ok()?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        exchange(tls, host, path, "").await
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| "no answer".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_routes_fall_through_as_traefiks_routers_do() {
    let ca = TestCa::new("edge ca").unwrap();
    let edge = ca.issue(&["tls.example.com"]).unwrap();
    let names = ["inside", "beta", "public", "thief"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(Backend::start(name).await.unwrap());
    }
    let dir = Manifests::new().unwrap();
    let mut objects = format!("---\n{}", tls_secret("apps", "edge", &edge));
    for b in &backends {
        let ns = if b.name() == "thief" { "evil" } else { "apps" };
        objects += &service(ns, b.name(), 80, &[b.port()]);
    }
    let svc = |name: &str| json!([{"name": name, "port": 80}]);
    let old = "2024-01-01T00:00:00Z";
    objects += &ingress_route(
        "apps",
        "by-client",
        old,
        json!({"entryPoints": ["web"], "routes": [
            {"match": "Host(`ip.example.com`) && PathPrefix(`/admin`) && \
                       (ClientIP(`127.0.0.2/32`) || ClientIP(`10.0.0.0/8`))",
             "services": svc("inside")},
            {"match": "Host(`ip.example.com`) && PathPrefix(`/beta`) && !ClientIP(`127.0.0.2`)",
             "services": svc("beta")},
            {"match": "Host(`ip.example.com`)", "services": svc("public")},
        ]}),
    );
    objects += &ingress_route(
        "apps",
        "tls",
        old,
        json!({"entryPoints": ["websecure"], "tls": {"secretName": "edge"}, "routes": [
            {"match": "Host(`tls.example.com`) && ClientIP(`127.0.0.2`)", "priority": 10,
             "services": svc("inside")},
            {"match": "Host(`tls.example.com`)", "priority": 1, "services": svc("public")},
        ]}),
    );
    // Another tenant: every IPv4 client at the highest priority, without Host() (the catch-all
    // only), and a younger claim on a held name for one client (refused).
    let young = "2025-01-01T00:00:00Z";
    let without_catch_all = objects.clone();
    objects += &ingress_route(
        "evil",
        "everyone",
        young,
        json!({"entryPoints": ["web"], "routes": [
            {"match": "ClientIP(`0.0.0.0/0`) || ClientIP(`::/0`)", "priority": 100000,
             "services": svc("thief")},
        ]}),
    );
    objects += &ingress_route(
        "evil",
        "steal",
        young,
        json!({"entryPoints": ["web"], "routes": [
            {"match": "Host(`ip.example.com`) && ClientIP(`127.0.0.1`)", "priority": 100000,
             "services": svc("thief")},
        ]}),
    );
    dir.write("objects.yaml", &objects).unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let http = ports.http;
    try_wait_for("ip.example.com served", WAIT, async || {
        sluice.check_running()?;
        let got = http_from(LOCAL, http, "ip.example.com", "/", "").await;
        Ok((got == "public").then_some(()))
    })
    .await
    .unwrap();
    let cases: &[(IpAddr, &str, &str, &str)] = &[
        (OTHER, "/admin", "", "inside"),
        // Not the client's network: the next route answers, not a 403.
        (LOCAL, "/admin", "", "public"),
        // The TCP peer decides, never X-Forwarded-For.
        (LOCAL, "/admin", "x-forwarded-for: 127.0.0.2\r\n", "public"),
        (
            LOCAL,
            "/admin",
            "x-forwarded-for: 10.1.2.3\r\nx-real-ip: 10.1.2.3\r\n",
            "public",
        ),
        (LOCAL, "/beta", "", "beta"),
        (OTHER, "/beta", "", "public"),
        (OTHER, "/other", "", "public"),
    ];
    for (from, path, headers, expected) in cases {
        let got = http_from(*from, http, "ip.example.com", path, headers).await;
        assert_eq!(got, *expected, "{path} from {from} with {headers:?}");
    }
    // The other tenant's ClientIP-only rule is its catch-all: names nobody holds, only.
    assert_eq!(
        http_from(LOCAL, http, "unheld.example.net", "/", "").await,
        "thief"
    );
    // HTTPS: the address is recorded on the SNI chains too.
    let https = ports.https;
    assert_eq!(
        https_from(&ca, OTHER, https, "tls.example.com", "/").await,
        "inside"
    );
    assert_eq!(
        https_from(&ca, LOCAL, https, "tls.example.com", "/").await,
        "public"
    );
    let thief = backends.iter().find(|b| b.name() == "thief").unwrap();
    let stolen: Vec<_> = thief
        .control()
        .received()
        .into_iter()
        .filter(|e| e.header("host") != Some("unheld.example.net"))
        .collect();
    assert!(stolen.is_empty(), "{stolen:?}");
    // Without a catch-all the Gateway serves plain HTTP through scoped route configurations
    // (one per host): the address conditions hold there too.
    dir.write("objects.yaml", &without_catch_all).unwrap();
    try_wait_for("the catch-all gone", WAIT, async || {
        sluice.check_running()?;
        let got = http_from(LOCAL, http, "unheld.example.net", "/", "").await;
        Ok((got == "status 404").then_some(()))
    })
    .await
    .unwrap();
    for (from, path, expected) in [
        (OTHER, "/admin", "inside"),
        (LOCAL, "/admin", "public"),
        (OTHER, "/beta", "public"),
        (LOCAL, "/beta", "beta"),
    ] {
        let got = http_from(from, http, "ip.example.com", path, "").await;
        assert_eq!(got, expected, "scoped: {path} from {from}");
    }
    sluice.check_running().unwrap();
}
