//! Helpers shared by the ADS integration tests (`ads.rs`, `ads_mtls.rs`, `ads_envoy.rs`); the
//! rest (Envoy, ports, waits, HTTP) comes from the test-support crate `sluice-e2e`.
#![allow(dead_code, clippy::unwrap_used)]

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Any;
use sluice_e2e::client::Request;

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

/// GET over HTTP/1.1 to 127.0.0.1 (sluice-e2e's client); (status, body), or None if the
/// connection failed.
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let response = Request::get("test", path).send(port).await.ok()?;
    Some((response.status, response.text()))
}
