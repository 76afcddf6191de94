//! Helpers shared by the ADS integration tests (`ads.rs`, `ads_mtls.rs`, `ads_envoy.rs`,
//! `quarantine_envoy.rs`); the
//! rest (Envoy, ports, waits, HTTP) comes from the test-support crate `sluice-e2e`.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::Any;
use sluice::xds::cache::Cache;
use sluice::xds::server::{AdsServer, ServeError, ServerMetrics};
use sluice_e2e::client::Request;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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

/// Sluice's ADS server on a port the OS chooses, until `stop` is sent.
pub struct Xds {
    pub port: u16,
    pub cache: Arc<Cache>,
    pub metrics: Arc<ServerMetrics>,
    pub stop: oneshot::Sender<()>,
    pub server: JoinHandle<Result<(), ServeError>>,
}

impl Xds {
    pub async fn start() -> Xds {
        let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = xds.local_addr().unwrap().port();
        let cache = Arc::new(Cache::new());
        let metrics = Arc::new(ServerMetrics::new().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(AdsServer::new(cache.clone(), metrics.clone()).serve(
            xds,
            async {
                let _ = stopped.await;
            },
        ));
        Xds {
            port,
            cache,
            metrics,
            stop,
            server,
        }
    }
}

/// An Envoy of `instance` (`node.cluster`) fetching everything over ADS (`api_type`: `GRPC`
/// or `DELTA_GRPC`) from 127.0.0.1:`xds_port`; admin on a port the OS chooses.
pub fn ads_bootstrap(api_type: &str, instance: &str, xds_port: u16) -> String {
    format!(
        r#"admin:
  address:
    socket_address:
      address: 127.0.0.1
      port_value: 0
node:
  id: smoke
  cluster: {instance}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services:
    - envoy_grpc:
        cluster_name: xds
  cds_config:
    ads: {{}}
    resource_api_version: V3
  lds_config:
    ads: {{}}
    resource_api_version: V3
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: 127.0.0.1
                port_value: {xds_port}
"#
    )
}
