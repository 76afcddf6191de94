//! A TLS client for the HTTPS listener's SNI filter chains, shared by the IngressRouteTCP
//! end-to-end tests (a `#[path]` module): a session for a name (sent as SNI or not), an
//! exchange that ends at a marker or when the connection closes, and the two answers those
//! tests look for (a TCP echo after termination, an HTTP answer from a TLS backend through
//! passthrough); and the manifests those tests write.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use sluice_e2e::tls::{TestCa, TlsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long one connection, handshake or exchange may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A client configuration trusting `ca_pem`, offering no ALPN, sending SNI when `sni`.
pub fn client_config(ca_pem: &str, sni: bool) -> Arc<rustls::ClientConfig> {
    let mut config = TlsClient::trusting(ca_pem).unwrap().rustls_config();
    config.alpn_protocols = Vec::new();
    config.enable_sni = sni;
    Arc::new(config)
}

/// A TLS session to Envoy's HTTPS port for `name` (sent as SNI when `sni`), the certificate
/// checked against `ca` for `name`.
pub async fn connect(
    ca: &TestCa,
    port: u16,
    name: &str,
    sni: bool,
) -> Result<TlsStream<TcpStream>, String> {
    let server = ServerName::try_from(name.to_owned()).unwrap();
    let config = client_config(&ca.cert_pem(), sni);
    tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(config)
            .connect(server, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    })
    .await
    .map_err(|_| "timed out".to_owned())?
}

/// Writes `data` and reads until the answer ends with `until`; `None` when the connection
/// closes first.
pub async fn exchange(s: &mut TlsStream<TcpStream>, data: &[u8], until: &[u8]) -> Option<Vec<u8>> {
    s.write_all(data).await.ok()?;
    s.flush().await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        while !answer.windows(until.len()).any(|w| w == until) {
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

/// Whether a terminated session for `sni` (trusting `ca`) echoes through.
pub async fn echoes(ca: &TestCa, port: u16, sni: &str) -> bool {
    let Ok(mut s) = connect(ca, port, sni, true).await else {
        return false;
    };
    exchange(&mut s, b"ping\n", b"ping\n").await.is_some()
}

/// Whether a passed-through session for `name` (trusting the backend's `ca`) gets an HTTP
/// answer from the TLS backend.
pub async fn passes_through(ca: &TestCa, port: u16, name: &str, sni: bool) -> bool {
    let Ok(mut s) = connect(ca, port, name, sni).await else {
        return false;
    };
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    exchange(&mut s, request.as_bytes(), b"\r\n\r\n")
        .await
        .is_some_and(|a| a.starts_with(b"HTTP/1.1 200"))
}

/// A Traefik object (`traefik.io/v1alpha1`) as a YAML document.
pub fn object(kind: &str, namespace: &str, name: &str, created: &str, spec: Value) -> String {
    format!(
        "---\n{}\n",
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": kind,
            "metadata": {"namespace": namespace, "name": name, "creationTimestamp": created},
            "spec": spec,
        })
    )
}

/// An IngressRouteTCP on `websecure` with one route to `svc` port 9000.
pub fn tcp_route(
    namespace: &str,
    name: &str,
    created: &str,
    rule: &str,
    svc: &str,
    tls: Value,
) -> String {
    object(
        "IngressRouteTCP",
        namespace,
        name,
        created,
        json!({"entryPoints": ["websecure"], "tls": tls,
               "routes": [{"match": rule, "services": [{"name": svc, "port": 9000}]}]}),
    )
}
