//! Authenticated xDS: the ADS server with mutual TLS, over real sockets, with the generated
//! tonic client and with real Envoys (`SLUICE_ENVOY`, else `envoy` on PATH).
//!
//! A refusal is observed as an error in place of the first response: nothing can have been sent
//! before it. Envoy tests wait for something observable (a refusal counted by the server, a
//! failed verification counted by Envoy) before checking what did not happen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{get, label, node, res};
use sluice_e2e::envoy_port;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSpecifier;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, DataSource, SocketAddress};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::util::pack_any;
use sluice::provision::bootstrap::{BootstrapOptions, XdsClientTls, build_bootstrap};
use sluice::snapshot::ObjKey;
use sluice::xds::cache::{Cache, InstanceResources, type_url};
use sluice::pki::identity::{CertificateAuthority, CertifiedKey, DEFAULT_SERVER_NAME};
use sluice::pki::XdsServerTls;
use sluice::xds::server::{AdsServer, ServeError, ServerMetrics};
use sluice_e2e::TempDir;
use sluice_e2e::envoy::Envoy;
use sluice_e2e::process::TAIL_LINES;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

const A: &str = "team-a/gw";
const B: &str = "team-b/gw";
const C: &str = type_url::CLUSTER;
const S: &str = type_url::SECRET;

fn key(instance: &str) -> ObjKey {
    let (ns, name) = instance.split_once('/').unwrap();
    ObjKey::new(ns, name)
}

struct Server {
    addr: SocketAddr,
    cache: Arc<Cache>,
    metrics: Arc<ServerMetrics>,
    ca: CertificateAuthority,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    /// A server with mutual TLS; its certificate carries `server_names` (DNS) and 127.0.0.1.
    async fn start(server_names: &[&str]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ca = CertificateAuthority::generate(SystemTime::now()).unwrap();
        let names: Vec<String> = server_names.iter().map(|n| (*n).to_owned()).collect();
        let server_cert = if server_names.contains(&DEFAULT_SERVER_NAME) {
            ca.issue_server(&names, &[addr.ip()], SystemTime::now())
                .unwrap()
        } else {
            // `issue_server` always adds the default name.
            issue_without_default_name(&ca, server_names)
        };
        let tls = XdsServerTls {
            cert_pem: server_cert.cert_pem,
            key_pem: server_cert.key_pem,
            client_ca_pem: ca.cert_pem().to_owned(),
        };
        let cache = Arc::new(Cache::new());
        let metrics = Arc::new(ServerMetrics::new().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            AdsServer::new(cache.clone(), metrics.clone())
                .with_tls(Some(tls))
                .serve(listener, async {
                    let _ = stopped.await;
                }),
        );
        Server {
            addr,
            cache,
            metrics,
            ca,
            stop: Some(stop),
            task,
        }
    }

    fn client_cert(&self, instance: &str) -> CertifiedKey {
        self.ca
            .issue_gateway(&key(instance), SystemTime::now())
            .unwrap()
    }

    /// A TLS channel trusting the server's CA, presenting `identity` if given.
    async fn connect(
        &self,
        identity: Option<&CertifiedKey>,
    ) -> Result<AggregatedDiscoveryServiceClient<Channel>, tonic::transport::Error> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.cert_pem()))
            .domain_name(DEFAULT_SERVER_NAME);
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        let channel = Endpoint::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(AggregatedDiscoveryServiceClient::new(channel))
    }

    fn responses_sent(&self) -> u64 {
        [
            type_url::CLUSTER,
            type_url::ENDPOINT,
            type_url::LISTENER,
            type_url::ROUTE,
            type_url::SECRET,
        ]
        .iter()
        .flat_map(|t| ["sotw", "delta"].map(|p| self.metrics.responses(t, p)))
        .sum()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// A server certificate signed by `ca` naming only `names`.
fn issue_without_default_name(ca: &CertificateAuthority, names: &[&str]) -> CertifiedKey {
    let params = rcgen_params(names);
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        ca.cert_pem(),
        rcgen::KeyPair::from_pem(ca.key_pem()).unwrap(),
    )
    .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn rcgen_params(names: &[&str]) -> rcgen::CertificateParams {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params
}

/// Both instances: a cluster each, and a secret each (B's is what A must never get).
fn seed(cache: &Cache) {
    for (instance, tag) in [(A, "a"), (B, "b")] {
        let mut r = InstanceResources::default();
        r.insert(format!("{tag}-cluster"), res(C, &format!("{tag}-cluster")));
        r.insert(
            format!("{tag}-secret"),
            res(S, &format!("{tag}-private-key")),
        );
        cache.set(instance, r);
    }
}

/// Opens a SotW stream as `instance`, asks for `names` of `type_url`; the first response, or
/// the error that came instead (when opening the stream or as its first message).
async fn first_sotw(
    client: &mut AggregatedDiscoveryServiceClient<Channel>,
    instance: &str,
    type_url: &str,
    names: &[&str],
) -> Result<DiscoveryResponse, Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(node(instance)),
        type_url: type_url.into(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut inbound = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = inbound.message().await?;
    drop(tx);
    first.ok_or_else(|| Status::unknown("stream ended without a response"))
}

/// [`first_sotw`] for Delta: subscribes to `names` of `type_url`.
async fn first_delta(
    client: &mut AggregatedDiscoveryServiceClient<Channel>,
    instance: &str,
    type_url: &str,
    names: &[&str],
) -> Result<DeltaDiscoveryResponse, Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(DeltaDiscoveryRequest {
        node: Some(node(instance)),
        type_url: type_url.into(),
        resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut inbound = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let first = inbound.message().await?;
    drop(tx);
    first.ok_or_else(|| Status::unknown("stream ended without a response"))
}

#[tokio::test]
async fn a_certificate_for_a_gets_a_and_never_b() {
    let server = Server::start(&[DEFAULT_SERVER_NAME]).await;
    seed(&server.cache);
    let cert_a = server.client_cert(A);
    let mut client = server.connect(Some(&cert_a)).await.unwrap();

    let cds = first_sotw(&mut client, A, C, &[]).await.unwrap();
    assert_eq!(
        cds.resources.iter().map(label).collect::<Vec<_>>(),
        vec!["a-cluster"]
    );
    // Asking by name for B's secret on A's stream: only A's own is there to send.
    let sds = first_sotw(&mut client, A, S, &["a-secret", "b-secret"])
        .await
        .unwrap();
    assert_eq!(
        sds.resources.iter().map(label).collect::<Vec<_>>(),
        vec!["a-private-key"]
    );
    let delta = first_delta(&mut client, A, S, &["a-secret", "b-secret"])
        .await
        .unwrap();
    let got: Vec<(String, String)> = delta
        .resources
        .iter()
        .map(|r| (r.name.clone(), label(r.resource.as_ref().unwrap())))
        .collect();
    assert_eq!(got, vec![("a-secret".into(), "a-private-key".into())]);
    assert_eq!(server.metrics.refused("permission_denied"), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_a_asking_for_b_is_denied_on_sotw_and_delta() {
    let server = Server::start(&[DEFAULT_SERVER_NAME]).await;
    seed(&server.cache);
    let cert_a = server.client_cert(A);
    let mut client = server.connect(Some(&cert_a)).await.unwrap();

    let sotw = first_sotw(&mut client, B, S, &["b-secret"])
        .await
        .unwrap_err();
    assert_eq!(sotw.code(), Code::PermissionDenied, "{sotw:?}");
    assert!(sotw.message().contains(A), "{sotw:?}");
    let sotw_wildcard = first_sotw(&mut client, B, C, &[]).await.unwrap_err();
    assert_eq!(sotw_wildcard.code(), Code::PermissionDenied);
    let delta = first_delta(&mut client, B, S, &["b-secret"])
        .await
        .unwrap_err();
    assert_eq!(delta.code(), Code::PermissionDenied, "{delta:?}");
    assert_eq!(server.metrics.refused("permission_denied"), 3);
    assert_eq!(server.responses_sent(), 0);

    // The same connection still serves A: the refusals were per stream.
    let own = first_delta(&mut client, A, C, &[]).await.unwrap();
    assert_eq!(own.resources.len(), 1);
    server.shutdown().await;
}

/// The server certificate of `ca` for 127.0.0.1 and the default name, as server TLS material.
fn server_tls(ca: &CertificateAuthority) -> XdsServerTls {
    let cert = ca
        .issue_server(
            &[],
            &[std::net::Ipv4Addr::LOCALHOST.into()],
            SystemTime::now(),
        )
        .unwrap();
    XdsServerTls {
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        client_ca_pem: ca.cert_pem().to_owned(),
    }
}

#[tokio::test]
async fn a_renewed_server_certificate_serves_new_connections_without_a_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A server certificate that expires in 3 s.
    let ca = CertificateAuthority::generate(SystemTime::now())
        .unwrap()
        .with_leaf_validity(Duration::from_secs(3));
    let first = server_tls(&ca);
    let expiry = sluice::pki::identity::CertificateInfo::from_pem(&first.cert_pem)
        .unwrap()
        .not_after;
    let (tls_tx, tls_rx) = tokio::sync::watch::channel(first);
    let cache = Arc::new(Cache::new());
    seed(&cache);
    let metrics = Arc::new(ServerMetrics::new().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        AdsServer::new(cache.clone(), metrics.clone())
            .with_tls_updates(tls_rx)
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );
    // The same CA issuing for the default lifetime: the client's certificate, and the renewal.
    let long_lived =
        CertificateAuthority::from_pem(ca.cert_pem(), ca.key_pem(), SystemTime::now()).unwrap();
    let client_cert = long_lived
        .issue_gateway(&key(A), SystemTime::now())
        .unwrap();
    let connect = async || {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.cert_pem()))
            .identity(Identity::from_pem(
                &client_cert.cert_pem,
                &client_cert.key_pem,
            ))
            .domain_name(DEFAULT_SERVER_NAME);
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await?;
        Ok::<_, tonic::transport::Error>(AggregatedDiscoveryServiceClient::new(channel))
    };

    // A stream opened with the first certificate.
    let mut old = connect().await.unwrap();
    let (old_tx, old_rx) = mpsc::channel(4);
    old_tx
        .send(DeltaDiscoveryRequest {
            node: Some(node(A)),
            type_url: C.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut old_stream = old
        .delta_aggregated_resources(ReceiverStream::new(old_rx))
        .await
        .unwrap()
        .into_inner();
    let cds = old_stream.message().await.unwrap().unwrap();
    assert_eq!(cds.resources.len(), 1);

    // Renewed (as the operator does: a new certificate from the same CA).
    tls_tx.send(server_tls(&long_lived)).unwrap();

    // Once the first certificate has expired, a new connection still succeeds: it is served the
    // renewed one (a client verifying an expired certificate would fail the handshake).
    let wait =
        expiry.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(wait).await;
    assert!(SystemTime::now() > expiry);
    let mut new = connect()
        .await
        .expect("a new connection after the first certificate expired");
    let sotw = first_sotw(&mut new, A, C, &[]).await.unwrap();
    assert_eq!(sotw.resources.len(), 1);

    // The stream opened before goes on: an ACK, then a change reaches it.
    old_tx
        .send(DeltaDiscoveryRequest {
            type_url: C.into(),
            response_nonce: cds.nonce.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut r = InstanceResources::default();
    r.insert("a-cluster-2".to_owned(), res(C, "a-cluster-2"));
    cache.set(A, r);
    let update = tokio::time::timeout(Duration::from_secs(10), old_stream.message())
        .await
        .expect("an update on the stream opened before the renewal")
        .unwrap()
        .unwrap();
    assert!(
        update.resources.iter().any(|r| r.name == "a-cluster-2"),
        "{update:?}"
    );

    // An unusable update is ignored: the server keeps serving the renewed certificate.
    tls_tx
        .send(XdsServerTls {
            cert_pem: "junk".into(),
            key_pem: "junk".into(),
            client_ca_pem: ca.cert_pem().to_owned(),
        })
        .unwrap();
    let mut after_junk = connect().await.expect("still serving after a bad update");
    assert_eq!(
        first_sotw(&mut after_junk, A, C, &[])
            .await
            .unwrap()
            .resources
            .len(),
        1
    );

    drop((old_tx, old_stream, old, new, after_junk));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn switching_instance_mid_stream_is_refused() {
    let server = Server::start(&[DEFAULT_SERVER_NAME]).await;
    seed(&server.cache);
    let cert_a = server.client_cert(A);
    let mut client = server.connect(Some(&cert_a)).await.unwrap();
    let (tx, rx) = mpsc::channel(4);
    let request = |instance: &str, type_url: &str, nonce: &str| DeltaDiscoveryRequest {
        node: Some(node(instance)),
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    };
    tx.send(request(A, C, "")).await.unwrap();
    let mut inbound = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let cds = inbound.message().await.unwrap().unwrap();
    tx.send(request(B, S, &cds.nonce)).await.unwrap();
    let err = inbound.message().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(server.metrics.responses(S, "delta"), 0);
    server.shutdown().await;
}

/// The client got no response: connecting, opening the stream or reading failed.
async fn refused(server: &Server, identity: Option<&CertifiedKey>) {
    let Ok(mut client) = server.connect(identity).await else {
        return;
    };
    assert!(first_sotw(&mut client, A, C, &[]).await.is_err());
    assert!(first_delta(&mut client, A, C, &[]).await.is_err());
}

#[tokio::test]
async fn clients_without_a_valid_certificate_are_refused() {
    let server = Server::start(&[DEFAULT_SERVER_NAME]).await;
    seed(&server.cache);

    // No client certificate.
    refused(&server, None).await;
    // A certificate for A from another CA.
    let other = CertificateAuthority::generate(SystemTime::now()).unwrap();
    let foreign = other.issue_gateway(&key(A), SystemTime::now()).unwrap();
    refused(&server, Some(&foreign)).await;
    // A certificate from the right CA but for serving, not for a Gateway (no clientAuth).
    let server_cert = server.ca.issue_server(&[], &[], SystemTime::now()).unwrap();
    refused(&server, Some(&server_cert)).await;
    // Plaintext.
    let plain = AggregatedDiscoveryServiceClient::connect(format!("http://{}", server.addr)).await;
    if let Ok(mut client) = plain {
        assert!(first_sotw(&mut client, A, C, &[]).await.is_err());
    }

    assert_eq!(server.responses_sent(), 0);
    assert_eq!(server.metrics.open_streams("sotw"), 0);
    // The control: the same server answers a good certificate.
    let good = server.client_cert(A);
    let mut client = server.connect(Some(&good)).await.unwrap();
    assert!(first_sotw(&mut client, A, C, &[]).await.is_ok());
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Real Envoy

/// A listener on `port` answering every request with `body`.
fn listener_resources(port: u16, body: &str) -> InstanceResources {
    let routes = RouteConfiguration {
        name: "direct".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::DirectResponse(DirectResponseAction {
                    status: 200,
                    body: Some(DataSource {
                        specifier: Some(DataSpecifier::InlineString(body.into())),
                        ..Default::default()
                    }),
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
        route_specifier: Some(RouteSpecifier::RouteConfig(routes)),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    };
    let listener = Listener {
        name: format!("listener-{body}"),
        address: Some(Address {
            address: Some(AddressKind::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(FilterConfig::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut r = InstanceResources::default();
    r.insert(listener.name.clone(), pack_any(listener));
    r
}

/// An Envoy (the workspace's one test launcher) with its xDS client credentials; the process is
/// killed and both directories removed on drop, in that order.
struct TlsEnvoy {
    envoy: Envoy,
    _certs: TempDir,
}

impl TlsEnvoy {
    /// Starts Envoy as `node_cluster`, presenting `cert`, trusting `ca_pem`, expecting the
    /// server to be named `server_name`. Returns once its admin interface answers: whether it
    /// gets configuration at all is what the tests look at.
    async fn start(
        xds: SocketAddr,
        node_cluster: &str,
        cert: &CertifiedKey,
        ca_pem: &str,
        server_name: &str,
    ) -> TlsEnvoy {
        let certs = tempfile::tempdir().unwrap();
        let path = |f: &str| certs.path().join(f).display().to_string();
        std::fs::write(certs.path().join("ca.crt"), ca_pem).unwrap();
        std::fs::write(certs.path().join("tls.crt"), &cert.cert_pem).unwrap();
        std::fs::write(certs.path().join("tls.key"), &cert.key_pem).unwrap();
        let mut opts = BootstrapOptions::new(key(node_cluster), xds.ip().to_string(), xds.port());
        opts.tls = Some(XdsClientTls {
            ca_file: path("ca.crt"),
            cert_file: path("tls.crt"),
            key_file: path("tls.key"),
            server_name: server_name.into(),
        });
        // The bootstrap's admin socket is a pod's path: moved into the Envoy's own directory.
        let envoy = Envoy::builder(build_bootstrap(&opts).to_string())
            .local_admin_socket()
            .admin_only()
            .start()
            .await
            .unwrap();
        TlsEnvoy {
            envoy,
            _certs: certs,
        }
    }

    fn log(&self) -> String {
        self.envoy.log_tail(TAIL_LINES)
    }

    /// The value of one admin statistic.
    async fn stat(&self, name: &str) -> Option<u64> {
        self.envoy.stat(name).await.unwrap()
    }
}

/// Polls `check` until it holds. The deadline only bounds a broken setup.
async fn wait_until(what: &str, envoy: &TlsEnvoy, check: impl AsyncFnMut() -> bool) {
    if let Err(e) = sluice_e2e::wait_until(what, Duration::from_secs(60), check).await {
        panic!("{e}\nEnvoy log:\n{}", envoy.log());
    }
}

#[tokio::test]
async fn envoy_gets_only_the_instance_its_certificate_names() {
    let server = Server::start(&[DEFAULT_SERVER_NAME]).await;
    let (port_a, port_b) = (envoy_port().unwrap(), envoy_port().unwrap());
    server.cache.set(A, listener_resources(port_a, "a"));
    server.cache.set(B, listener_resources(port_b, "b"));
    let cert_a = server.client_cert(A);

    // A's certificate, A's node cluster: A's listener serves.
    let good = TlsEnvoy::start(
        server.addr,
        A,
        &cert_a,
        server.ca.cert_pem(),
        DEFAULT_SERVER_NAME,
    )
    .await;
    wait_until("A's listener answers", &good, async || {
        get(port_a, "/").await == Some((200, "a".into()))
    })
    .await;
    drop(good);
    let sent_to_a = server.responses_sent();

    // A's certificate, B's node cluster: refused, again on every retry; B's listener never
    // appears.
    let bad = TlsEnvoy::start(
        server.addr,
        B,
        &cert_a,
        server.ca.cert_pem(),
        DEFAULT_SERVER_NAME,
    )
    .await;
    wait_until("the server refused the Envoy twice", &bad, async || {
        server.metrics.refused("permission_denied") >= 2
    })
    .await;
    assert_eq!(server.responses_sent(), sent_to_a, "{}", bad.log());
    // Nothing accepted, not even an empty update, and no listener. (`connected_state` is no
    // use here: it is 1 while each refused attempt is in flight.)
    for stat in [
        "cluster_manager.cds.update_success",
        "listener_manager.lds.update_success",
        "listener_manager.total_listeners_active",
        "listener_manager.total_listeners_warming",
    ] {
        assert_eq!(bad.stat(stat).await, Some(0), "{stat}");
    }
    assert_eq!(get(port_b, "/").await, None);
    drop(bad);
    server.shutdown().await;
}

#[tokio::test]
async fn envoy_refuses_a_server_without_the_expected_name() {
    let server = Server::start(&["not-sluice"]).await;
    server
        .cache
        .set(A, listener_resources(envoy_port().unwrap(), "a"));
    let cert_a = server.client_cert(A);
    let envoy = TlsEnvoy::start(
        server.addr,
        A,
        &cert_a,
        server.ca.cert_pem(),
        DEFAULT_SERVER_NAME,
    )
    .await;
    wait_until(
        "Envoy rejected the server certificate's names",
        &envoy,
        async || {
            envoy
                .stat("cluster.sluice-xds.ssl.fail_verify_san")
                .await
                .is_some_and(|n| n >= 1)
        },
    )
    .await;
    assert_eq!(
        envoy.stat("cluster_manager.cds.update_success").await,
        Some(0)
    );
    assert_eq!(server.responses_sent(), 0);
    assert_eq!(server.metrics.open_streams("delta"), 0);
    drop(envoy);
    server.shutdown().await;
}
