//! Helpers shared by the ADS integration tests (`ads.rs`, `ads_mtls.rs`, `ads_envoy.rs`).
#![allow(dead_code, clippy::unwrap_used)]

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Any;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The node of a test client asking for `instance`.
pub fn node(instance: &str) -> Node {
    Node {
        id: "test-envoy".into(),
        cluster: instance.into(),
        ..Default::default()
    }
}

/// A resource whose bytes are just its label, so tests can read back what they got.
pub fn res(type_url: &str, label: &str) -> Any {
    Any {
        type_url: type_url.into(),
        value: label.as_bytes().to_vec(),
    }
}

/// The label of a resource made by [`res`].
pub fn label(any: &Any) -> String {
    String::from_utf8(any.value.clone()).unwrap()
}

/// A port nothing listens on right now (bound, then released).
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// GET over HTTP/1.1; (status, body), or None if the connection failed.
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let conn = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    get_over(conn, path).await
}

async fn get_over(
    mut conn: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    path: &str,
) -> Option<(u16, String)> {
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}
