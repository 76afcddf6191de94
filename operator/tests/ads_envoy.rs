//! Smoke test with a real Envoy (`SLUICE_ENVOY`, else `envoy` on PATH): Envoy fetches a
//! cluster, its endpoints, a listener and a route configuration over ADS (Delta and SotW),
//! serves traffic with them, and picks up an update.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{free_port, get};

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSpecifier;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use envoy_types::util::pack_any;
use sluice::xds::cache::{Cache, InstanceResources, type_url};
use sluice::xds::server::{AdsServer, ServerMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const INSTANCE: &str = "team-a/gateway";

fn socket(port: u16) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn route(prefix: &str, action: Action) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(action),
        ..Default::default()
    }
}

/// A cluster (EDS) pointing at the backend, a listener with an RDS route configuration:
/// `/direct` answers `direct_body`, everything else goes to the backend.
fn resources(listener_port: u16, backend_port: u16, direct_body: &str) -> InstanceResources {
    let cluster = Cluster {
        name: "backend".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let endpoints = ClusterLoadAssignment {
        cluster_name: "backend".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(backend_port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "ingress_http".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "ingress_http".into(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    };
    let listener = Listener {
        name: "ingress_http".into(),
        address: Some(socket(listener_port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(FilterConfig::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let routes = RouteConfiguration {
        name: "ingress_http".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![
                route(
                    "/direct",
                    Action::DirectResponse(DirectResponseAction {
                        status: 200,
                        body: Some(DataSource {
                            specifier: Some(DataSpecifier::InlineString(direct_body.into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                ),
                route(
                    "/",
                    Action::Route(RouteAction {
                        cluster_specifier: Some(ClusterSpecifier::Cluster("backend".into())),
                        ..Default::default()
                    }),
                ),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut r = InstanceResources::default();
    r.insert("backend", pack_any(cluster));
    r.insert("backend", pack_any(endpoints));
    r.insert("ingress_http", pack_any(listener));
    r.insert("ingress_http", pack_any(routes));
    r
}

fn bootstrap(api_type: &str, xds_port: u16) -> String {
    format!(
        r#"node:
  id: smoke
  cluster: {INSTANCE}
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

/// Envoy, killed on drop; its working directory removed.
struct Envoy {
    child: Child,
    dir: PathBuf,
}

impl Envoy {
    fn start(bootstrap: &str, name: &str) -> Envoy {
        let binary = std::env::var("SLUICE_ENVOY").unwrap_or_else(|_| "envoy".into());
        let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("bootstrap.yaml");
        std::fs::write(&config, bootstrap).unwrap();
        let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run Envoy ({binary}): {e}; install envoy or set SLUICE_ENVOY")
            });
        Envoy { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A backend answering every request with `backend`.
async fn start_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nbackend",
                    )
                    .await;
            });
        }
    });
    port
}

/// Polls until `path` answers 200 with `body`. The deadline only bounds a broken setup.
async fn wait_for(envoy: &Envoy, port: u16, path: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = get(port, path).await;
        if last.as_ref().is_some_and(|(s, b)| *s == 200 && b == body) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "GET {path} never returned 200 {body:?}; last: {last:?}\nEnvoy log:\n{}",
        envoy.log()
    );
}

async fn smoke(api_type: &str) {
    let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_port = xds.local_addr().unwrap().port();
    let cache = Arc::new(Cache::new());
    let metrics = Arc::new(ServerMetrics::new().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        AdsServer::new(cache.clone(), metrics.clone()).serve(xds, async {
            let _ = stopped.await;
        }),
    );

    let backend_port = start_backend().await;
    let listener_port = free_port().await;
    cache.set(INSTANCE, resources(listener_port, backend_port, "v1"));
    // Another instance's content must never reach this Envoy.
    cache.set("team-b/gateway", InstanceResources::default());
    let envoy = Envoy::start(&bootstrap(api_type, xds_port), &api_type.to_lowercase());

    wait_for(&envoy, listener_port, "/direct", "v1").await;
    wait_for(&envoy, listener_port, "/", "backend").await;

    cache.set(INSTANCE, resources(listener_port, backend_port, "v2"));
    wait_for(&envoy, listener_port, "/direct", "v2").await;
    wait_for(&envoy, listener_port, "/", "backend").await;

    for t in [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ] {
        assert_eq!(metrics.nacks(t), 0, "Envoy rejected {t}:\n{}", envoy.log());
    }
    drop(envoy);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn envoy_delta_ads() {
    smoke("DELTA_GRPC").await;
}

#[tokio::test]
async fn envoy_sotw_ads() {
    smoke("GRPC").await;
}
