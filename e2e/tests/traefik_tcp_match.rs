//! IngressRouteTCP matchers end to end, through `sluice standalone` and a real Envoy with real
//! sockets: plain TCP (`HostSNI(`*`)` without `tls`, with and without `ClientIP()`) on the
//! Gateway's HTTPS port, alone and, after a live edit, beside another tenant's TLS route. The
//! listener always reads the client's first bytes to tell TLS apart: a client that speaks first
//! is served, one that waits for the server is not, and a TLS connection never reaches the
//! plain route, whatever its name. Clients connect from 127.0.0.1 and 127.0.0.2 (both loopback).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use sluice_e2e::backend::TcpEchoBackend;
use sluice_e2e::manifests::{Manifests, service, tls_secret};
use sluice_e2e::sluice::Standalone;
use sluice_e2e::tls::{TestCa, TlsClient};
use sluice_e2e::try_wait_for;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const WAIT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const GREETING: &[u8] = b"220 server speaks first\n";

fn tcp_route(namespace: &str, name: &str, created: &str, spec: Value) -> String {
    format!(
        "---\n{}\n",
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP",
            "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
            "spec": spec,
        })
    )
}

/// A backend that greets each connection at once, then echoes what it reads; the port and
/// the count of connections it accepted.
async fn server_first() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if s.write_all(GREETING).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 512];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

async fn tcp_from(from: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(SocketAddr::from((LOCAL, port))).await
}

/// Reads until `expected` has arrived; false when the connection closes or `within` passes.
async fn reads<S: AsyncRead + Unpin>(s: &mut S, expected: &[u8], within: Duration) -> bool {
    let mut got = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 512];
        while !got.windows(expected.len()).any(|w| w == expected) {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return false,
            }
        }
        true
    })
    .await
    .unwrap_or(false)
}

/// A plain connection from `from` that waits for the server's greeting without sending.
async fn greeted_at_once(from: Ipv4Addr, port: u16) -> bool {
    match tcp_from(from, port).await {
        Ok(mut s) => reads(&mut s, GREETING, Duration::from_secs(2)).await,
        Err(_) => false,
    }
}

/// A plain connection from `from` that speaks first, then reads the greeting and its echo.
async fn served_after_speaking(from: Ipv4Addr, port: u16) -> bool {
    let Ok(mut s) = tcp_from(from, port).await else {
        return false;
    };
    if s.write_all(b"hello\n").await.is_err() {
        return false;
    }
    // The greeting, then the echo (possibly in one read).
    let expected = [GREETING, b"hello\n"].concat();
    reads(&mut s, &expected, IO_TIMEOUT).await
}

async fn echoes<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> bool {
    s.write_all(data).await.is_ok() && reads(s, data, IO_TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_serves_the_connections_that_are_not_tls() {
    let ca = TestCa::new("edge ca").unwrap();
    let edge = ca.issue(&["a.example.com"]).unwrap();
    let (database, accepted) = server_first().await;
    let tls_backend = TcpEchoBackend::start().await.unwrap();
    let dir = Manifests::new().unwrap();
    let mut base = service("db", "mysql", 3306, &[database]);
    base += &service("web", "echo", 9000, &[tls_backend.port()]);
    base += &format!("---\n{}", tls_secret("web", "edge", &edge));
    let plain = tcp_route(
        "db",
        "mysql",
        "2024-01-01T00:00:00Z",
        json!({"routes": [
            {"match": "HostSNI(`*`) && ClientIP(`127.0.0.2`)",
             "services": [{"name": "mysql", "port": 3306}]},
        ]}),
    );
    dir.write("objects.yaml", &(base.clone() + &plain)).unwrap();

    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let https = ports.https;
    // Alone: a client that speaks first is served, only from the route's network.
    try_wait_for("the plain TCP route", WAIT, async || {
        sluice.check_running()?;
        Ok(served_after_speaking(OTHER, https).await.then_some(()))
    })
    .await
    .unwrap();
    assert!(
        !served_after_speaking(LOCAL, https).await,
        "127.0.0.1 is outside ClientIP()"
    );
    // The listener reads the client's first bytes even with nothing else on the port, so what
    // other tenants serve never changes it: a silent client is not handed over.
    assert!(
        !greeted_at_once(OTHER, https).await,
        "the TLS inspector waits for the client's first bytes"
    );
    // A TLS connection, for a name nobody serves over TLS, never reaches the plain route.
    let before = accepted.load(Ordering::SeqCst);
    let config = Arc::new(TlsClient::trusting(&ca.cert_pem()).unwrap().rustls_config());
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let held = ServerName::try_from("held.example.com").unwrap();
    let tcp = tcp_from(OTHER, https).await.unwrap();
    let handshake = tokio::time::timeout(IO_TIMEOUT, connector.connect(held, tcp)).await;
    assert!(!matches!(handshake, Ok(Ok(_))), "no chain takes it");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        before,
        "TLS reached plain TCP"
    );

    // Live edit: another tenant serves a TLS name on the same port.
    let tls = tcp_route(
        "web",
        "tls",
        "2025-01-01T00:00:00Z",
        json!({"routes": [{"match": "HostSNI(`a.example.com`)",
                           "services": [{"name": "echo", "port": 9000}]}],
               "tls": {"secretName": "edge"}}),
    );
    dir.write("objects.yaml", &(base + &plain + &tls)).unwrap();
    let name = ServerName::try_from("a.example.com").unwrap();
    let mut session = try_wait_for("the TLS route beside plain TCP", WAIT, async || {
        sluice.check_running()?;
        let Ok(tcp) = tcp_from(LOCAL, https).await else {
            return Ok(None);
        };
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        Ok(
            tokio::time::timeout(IO_TIMEOUT, connector.connect(name.clone(), tcp))
                .await
                .ok()
                .and_then(Result::ok),
        )
    })
    .await
    .unwrap();
    assert!(echoes(&mut session, b"over tls\n").await);
    assert_eq!(tls_backend.connection_count(), 1);
    // Plain TCP still gets the connections that are not TLS, once the client has spoken
    // (Envoy, like Traefik here, must read the first bytes to tell TLS from the rest).
    assert!(served_after_speaking(OTHER, https).await);
    assert!(!served_after_speaking(LOCAL, https).await);
    assert!(
        !greeted_at_once(OTHER, https).await,
        "the TLS inspector waits for the client's first bytes"
    );
    assert_eq!(tls_backend.connection_count(), 1);
    sluice.check_running().unwrap();
}

/// Which of `backends` a TLS session for `sni` from `from` reaches (by their connection
/// counts); `None` when the handshake fails or the connection closes.
async fn reached(
    ca: &TestCa,
    port: u16,
    backends: &[(&str, &TcpEchoBackend)],
    from: Ipv4Addr,
    sni: &str,
) -> Option<String> {
    let before: Vec<u64> = backends.iter().map(|(_, b)| b.connection_count()).collect();
    let config = Arc::new(TlsClient::trusting(&ca.cert_pem()).unwrap().rustls_config());
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut s = tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = tcp_from(from, port).await.ok()?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()
    })
    .await
    .ok()
    .flatten()?;
    if !echoes(&mut s, b"ping\n").await {
        return None;
    }
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
async fn client_ip_alone_is_a_catch_all_condition_and_or_spreads_it() {
    let ca = TestCa::new("edge ca").unwrap();
    let edge = ca.issue(&["a.example.com", "unheld.example.net"]).unwrap();
    let inside = TcpEchoBackend::start().await.unwrap();
    let named = TcpEchoBackend::start().await.unwrap();
    let dir = Manifests::new().unwrap();
    let mut objects = format!("---\n{}", tls_secret("apps", "edge", &edge));
    objects += &service("apps", "inside", 9000, &[inside.port()]);
    objects += &service("apps", "named", 9000, &[named.port()]);
    // `ClientIP()` alone claims the catch-all; `||` puts the network's alternative there too
    // and, within the object, on its own name (where the longer rule's priority wins).
    objects += &tcp_route(
        "apps",
        "ip",
        "2024-01-01T00:00:00Z",
        json!({"routes": [
            {"match": "ClientIP(`127.0.0.2`)", "services": [{"name": "inside", "port": 9000}]},
            {"match": "HostSNI(`a.example.com`) || ClientIP(`10.0.0.0/8`)",
             "services": [{"name": "named", "port": 9000}]},
        ], "tls": {"secretName": "edge"}}),
    );
    dir.write("objects.yaml", &objects).unwrap();
    let mut sluice = Standalone::start(dir.path()).unwrap();
    let ports = sluice.default_instance(WAIT).await.unwrap();
    let backends = [("inside", &inside), ("named", &named)];
    let first = try_wait_for("the catch-all for 127.0.0.2", WAIT, async || {
        sluice.check_running()?;
        Ok(reached(&ca, ports.https, &backends, OTHER, "unheld.example.net").await)
    })
    .await
    .unwrap();
    assert_eq!(first, "inside");
    let cases: &[(Ipv4Addr, &str, Option<&str>)] = &[
        // No chain of the catch-all takes 127.0.0.1: closed.
        (LOCAL, "unheld.example.net", None),
        (LOCAL, "a.example.com", Some("named")),
        (OTHER, "a.example.com", Some("named")),
    ];
    for (from, sni, expected) in cases {
        let got = reached(&ca, ports.https, &backends, *from, sni).await;
        assert_eq!(got.as_deref(), *expected, "{sni} from {from}");
    }
    sluice.check_running().unwrap();
}
