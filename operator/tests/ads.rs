//! The ADS server over real sockets, with the generated tonic client, and with a real Envoy.
//!
//! "Nothing else was sent" is checked without timers: after the action, a second, distinct
//! change is made and the next message on the stream must be the response to that change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{label, node, res};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use sluice::xds::cache::{Cache, InstanceResources, type_url};
use sluice::xds::server::{AdsServer, ServeError, ServerMetrics};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

struct Server {
    addr: SocketAddr,
    cache: Arc<Cache>,
    metrics: Arc<ServerMetrics>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cache = Arc::new(Cache::new());
        let metrics = Arc::new(ServerMetrics::new().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = AdsServer::new(cache.clone(), metrics.clone());
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            cache,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    async fn client(&self) -> AggregatedDiscoveryServiceClient<Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn sotw(&self, instance: &str) -> Sotw {
        let (tx, rx) = mpsc::channel(16);
        let inbound = self
            .client()
            .await
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Sotw {
            tx,
            inbound,
            node: node(instance),
        }
    }

    async fn delta(&self, instance: &str) -> Delta {
        let (tx, rx) = mpsc::channel(16);
        let inbound = self
            .client()
            .await
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Delta {
            tx,
            inbound,
            node: node(instance),
        }
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// `entries`: (type URL, name, content label).
fn resources(entries: &[(&str, &str, &str)]) -> InstanceResources {
    let mut r = InstanceResources::default();
    for (t, name, content) in entries {
        r.insert(*name, res(t, content));
    }
    r
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    inbound: Streaming<DiscoveryResponse>,
    node: Node,
}

impl Sotw {
    async fn request(&self, type_url: &str, names: &[&str], ack: Option<&DiscoveryResponse>) {
        self.send(type_url, names, ack, None).await;
    }

    async fn nack(&self, type_url: &str, names: &[&str], rejected: &DiscoveryResponse) {
        self.send(type_url, names, Some(rejected), Some("rejected by test"))
            .await;
    }

    async fn send(
        &self,
        type_url: &str,
        names: &[&str],
        responded: Option<&DiscoveryResponse>,
        error: Option<&str>,
    ) {
        let (version_info, response_nonce) = match responded {
            // A NACK carries the last accepted version; the test's Envoy accepted nothing.
            Some(r) if error.is_none() => (r.version_info.clone(), r.nonce.clone()),
            Some(r) => (String::new(), r.nonce.clone()),
            None => (String::new(), String::new()),
        };
        self.tx
            .send(DiscoveryRequest {
                version_info,
                node: Some(self.node.clone()),
                resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
                type_url: type_url.into(),
                response_nonce,
                error_detail: error.map(|message| RpcStatus {
                    code: 3,
                    message: message.into(),
                    details: vec![],
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> DiscoveryResponse {
        self.inbound.message().await.unwrap().expect("stream ended")
    }
}

fn labels(r: &DiscoveryResponse) -> Vec<String> {
    r.resources.iter().map(label).collect()
}

struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    inbound: Streaming<DeltaDiscoveryResponse>,
    node: Node,
}

impl Delta {
    async fn send(&self, request: DeltaDiscoveryRequest) {
        self.tx
            .send(DeltaDiscoveryRequest {
                node: Some(self.node.clone()),
                ..request
            })
            .await
            .unwrap();
    }

    async fn subscribe(&self, type_url: &str, names: &[&str]) {
        self.send(DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        })
        .await;
    }

    async fn ack(&self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        self.inbound.message().await.unwrap().expect("stream ended")
    }
}

/// (name, content label) of the resources in a delta response.
fn delta_resources(r: &DeltaDiscoveryResponse) -> Vec<(String, String)> {
    r.resources
        .iter()
        .map(|x| (x.name.clone(), label(x.resource.as_ref().unwrap())))
        .collect()
}

fn versions(r: &DeltaDiscoveryResponse) -> HashMap<String, String> {
    r.resources
        .iter()
        .map(|x| (x.name.clone(), x.version.clone()))
        .collect()
}

const C: &str = type_url::CLUSTER;
const E: &str = type_url::ENDPOINT;
const L: &str = type_url::LISTENER;
const R: &str = type_url::ROUTE;

#[tokio::test]
async fn sotw_wildcard_cds_and_named_eds() {
    let server = Server::start().await;
    server.cache.set(
        "ns/a",
        resources(&[
            (C, "c2", "cluster-2"),
            (C, "c1", "cluster-1"),
            (E, "c1", "endpoints-1"),
            (E, "c2", "endpoints-2"),
        ]),
    );
    let mut s = server.sotw("ns/a").await;
    s.request(C, &[], None).await;
    let cds = s.next().await;
    assert_eq!(cds.type_url, C);
    assert_eq!(labels(&cds), vec!["cluster-1", "cluster-2"]);
    assert!(!cds.version_info.is_empty());
    assert!(!cds.nonce.is_empty());

    s.request(C, &[], Some(&cds)).await;
    s.request(E, &["c2"], None).await;
    let eds = s.next().await;
    assert_eq!(eds.type_url, E);
    assert_eq!(labels(&eds), vec!["endpoints-2"]);
    assert_ne!(eds.nonce, cds.nonce);
    server.shutdown().await;
}

#[tokio::test]
async fn sotw_ack_then_update_pushes_only_changed_types() {
    let server = Server::start().await;
    server.cache.set(
        "ns/a",
        resources(&[(C, "c1", "cluster-1"), (L, "l1", "listener-1")]),
    );
    let mut s = server.sotw("ns/a").await;
    s.request(C, &[], None).await;
    let cds = s.next().await;
    s.request(C, &[], Some(&cds)).await;
    s.request(L, &[], None).await;
    // The ACK of CDS produced nothing: the next message is the listener response.
    let lds = s.next().await;
    assert_eq!(lds.type_url, L);
    assert_eq!(labels(&lds), vec!["listener-1"]);
    s.request(L, &[], Some(&lds)).await;

    // Only the listener changes: only LDS is pushed.
    server.cache.set(
        "ns/a",
        resources(&[(C, "c1", "cluster-1"), (L, "l1", "listener-1b")]),
    );
    let lds2 = s.next().await;
    assert_eq!(lds2.type_url, L);
    assert_eq!(labels(&lds2), vec!["listener-1b"]);
    assert_ne!(lds2.version_info, lds.version_info);
    s.request(L, &[], Some(&lds2)).await;

    // Then only the cluster: the next message is CDS, so no other LDS came in between.
    server.cache.set(
        "ns/a",
        resources(&[(C, "c1", "cluster-1b"), (L, "l1", "listener-1b")]),
    );
    let cds2 = s.next().await;
    assert_eq!(cds2.type_url, C);
    assert_eq!(labels(&cds2), vec!["cluster-1b"]);
    assert_eq!(server.metrics.nacks(C), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn sotw_nack_keeps_last_good_and_is_counted() {
    let server = Server::start().await;
    server.cache.set("ns/a", resources(&[(C, "c1", "bad")]));
    let mut s = server.sotw("ns/a").await;
    s.request(C, &[], None).await;
    let cds = s.next().await;
    s.nack(C, &[], &cds).await;
    // Requests are handled in order: the LDS answer proves the NACK was handled, and that
    // the rejected CDS was not sent again.
    s.request(L, &[], None).await;
    let lds = s.next().await;
    assert_eq!(lds.type_url, L);
    assert!(lds.resources.is_empty());
    assert_eq!(server.metrics.nacks(C), 1);
    assert_eq!(server.metrics.nacks(L), 0);

    // The next change of the type is sent.
    server.cache.set("ns/a", resources(&[(C, "c1", "good")]));
    let cds2 = s.next().await;
    assert_eq!(cds2.type_url, C);
    assert_eq!(labels(&cds2), vec!["good"]);
    server.shutdown().await;
}

#[tokio::test]
async fn instances_are_isolated_and_unknown_instances_wait() {
    let server = Server::start().await;
    server.cache.set("ns/a", resources(&[(C, "a", "a-1")]));
    server.cache.set("ns/b", resources(&[(C, "b", "b-1")]));
    let mut a = server.sotw("ns/a").await;
    let mut b = server.delta("ns/b").await;
    let mut c = server.sotw("ns/c").await;
    a.request(C, &[], None).await;
    b.subscribe(C, &[]).await;
    c.request(C, &[], None).await;
    let a1 = a.next().await;
    assert_eq!(labels(&a1), vec!["a-1"]);
    a.request(C, &[], Some(&a1)).await;
    let b1 = b.next().await;
    assert_eq!(delta_resources(&b1), vec![("b".into(), "b-1".into())]);
    b.ack(&b1).await;

    // B changes: B's stream gets it; A's and C's next messages are their own later changes.
    server.cache.set("ns/b", resources(&[(C, "b", "b-2")]));
    let b2 = b.next().await;
    assert_eq!(delta_resources(&b2), vec![("b".into(), "b-2".into())]);
    server.cache.set("ns/a", resources(&[(C, "a", "a-2")]));
    let a2 = a.next().await;
    assert_eq!(labels(&a2), vec!["a-2"]);
    // C was waiting for its instance and gets only its own resources.
    server.cache.set("ns/c", resources(&[(C, "c", "c-1")]));
    let c1 = c.next().await;
    assert_eq!(labels(&c1), vec!["c-1"]);
    server.shutdown().await;
}

#[tokio::test]
async fn delta_incremental_changes_removals_and_ordering() {
    let server = Server::start().await;
    server.cache.set(
        "ns/a",
        resources(&[(C, "c1", "c1-v1"), (C, "c2", "c2-v1"), (L, "l1", "l1-v1")]),
    );
    let mut d = server.delta("ns/a").await;
    d.subscribe(C, &[]).await;
    let cds = d.next().await;
    assert_eq!(cds.type_url, C);
    assert_eq!(
        delta_resources(&cds),
        vec![("c1".into(), "c1-v1".into()), ("c2".into(), "c2-v1".into())]
    );
    assert!(cds.removed_resources.is_empty());
    d.ack(&cds).await;
    d.subscribe(L, &[]).await;
    let lds = d.next().await;
    assert_eq!(lds.type_url, L);
    assert_eq!(delta_resources(&lds), vec![("l1".into(), "l1-v1".into())]);
    d.ack(&lds).await;

    // One cluster changes: only it is sent.
    server.cache.set(
        "ns/a",
        resources(&[(C, "c1", "c1-v1"), (C, "c2", "c2-v2"), (L, "l1", "l1-v1")]),
    );
    let change = d.next().await;
    assert_eq!(change.type_url, C);
    assert_eq!(
        delta_resources(&change),
        vec![("c2".into(), "c2-v2".into())]
    );
    d.ack(&change).await;

    // A cluster goes away: it comes in removed_resources.
    server
        .cache
        .set("ns/a", resources(&[(C, "c2", "c2-v2"), (L, "l1", "l1-v1")]));
    let removal = d.next().await;
    assert_eq!(removal.type_url, C);
    assert!(removal.resources.is_empty());
    assert_eq!(removal.removed_resources, vec!["c1"]);
    d.ack(&removal).await;

    // Clusters and listeners change together: CDS first, then LDS, then the removal.
    server.cache.set(
        "ns/a",
        resources(&[(C, "c2", "c2-v2"), (C, "c3", "c3-v1"), (L, "l2", "l2-v1")]),
    );
    let first = d.next().await;
    let second = d.next().await;
    let third = d.next().await;
    assert_eq!(first.type_url, C);
    assert_eq!(delta_resources(&first), vec![("c3".into(), "c3-v1".into())]);
    assert_eq!(second.type_url, L);
    assert_eq!(
        delta_resources(&second),
        vec![("l2".into(), "l2-v1".into())]
    );
    assert!(second.removed_resources.is_empty());
    assert_eq!(third.type_url, L);
    assert_eq!(third.removed_resources, vec!["l1"]);
    assert!(third.resources.is_empty());
    for r in [&first, &second, &third] {
        d.ack(r).await;
    }
    let c3_version = versions(&first)["c3"].clone();
    let c2_version = versions(&change)["c2"].clone();
    drop(d);

    // Reconnect: the Envoy says what it has; only what differs is sent.
    let mut d = server.delta("ns/a").await;
    d.send(DeltaDiscoveryRequest {
        type_url: C.into(),
        initial_resource_versions: HashMap::from([
            ("c2".to_owned(), c2_version),
            ("c3".to_owned(), "stale".to_owned()),
            ("c1".to_owned(), "gone-meanwhile".to_owned()),
        ]),
        ..Default::default()
    })
    .await;
    let resync = d.next().await;
    assert_eq!(resync.type_url, C);
    assert_eq!(
        delta_resources(&resync),
        vec![("c3".into(), "c3-v1".into())]
    );
    assert_eq!(versions(&resync)["c3"], c3_version);
    let gone = d.next().await;
    assert_eq!(gone.type_url, C);
    assert_eq!(gone.removed_resources, vec!["c1"]);
    server.shutdown().await;
}

#[tokio::test]
async fn delta_named_subscriptions_and_nack() {
    let server = Server::start().await;
    server.cache.set(
        "ns/a",
        resources(&[
            (C, "c1", "c1"),
            (E, "c1", "e1-v1"),
            (E, "c2", "e2-v1"),
            (R, "r1", "r1-v1"),
        ]),
    );
    let mut d = server.delta("ns/a").await;
    d.subscribe(E, &["c1"]).await;
    let eds = d.next().await;
    assert_eq!(delta_resources(&eds), vec![("c1".into(), "e1-v1".into())]);
    // Rejected: not resent, counted.
    d.send(DeltaDiscoveryRequest {
        type_url: E.into(),
        response_nonce: eds.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "bad endpoints".into(),
            details: vec![],
        }),
        ..Default::default()
    })
    .await;
    d.subscribe(E, &["c2"]).await;
    let eds2 = d.next().await;
    assert_eq!(delta_resources(&eds2), vec![("c2".into(), "e2-v1".into())]);
    assert_eq!(server.metrics.nacks(E), 1);

    // Unsubscribed names are not sent on change; subscribed ones are.
    d.send(DeltaDiscoveryRequest {
        type_url: E.into(),
        resource_names_unsubscribe: vec!["c1".into()],
        ..Default::default()
    })
    .await;
    d.subscribe(R, &["r1"]).await;
    let rds = d.next().await;
    assert_eq!(rds.type_url, R);
    server.cache.set(
        "ns/a",
        resources(&[
            (C, "c1", "c1"),
            (E, "c1", "e1-v2"),
            (E, "c2", "e2-v2"),
            (R, "r1", "r1-v1"),
        ]),
    );
    let eds3 = d.next().await;
    assert_eq!(delta_resources(&eds3), vec![("c2".into(), "e2-v2".into())]);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let server = Server::start().await;
    server.cache.set("ns/a", resources(&[(C, "c1", "c1")]));
    let mut s = server.sotw("ns/a").await;
    s.request(C, &[], None).await;
    s.next().await;
    let mut d = server.delta("ns/unknown").await;
    d.subscribe(C, &[]).await;
    assert_eq!(server.metrics.open_streams("sotw"), 1);
    server.shutdown().await;
    // Both streams end: cleanly, or at worst with the connection closing.
    assert!(!matches!(s.inbound.message().await, Ok(Some(_))));
    assert!(!matches!(d.inbound.message().await, Ok(Some(_))));
}

/// The value of a series in the Prometheus text of `registry`, if it is there.
fn series(registry: &prometheus::Registry, name_and_labels: &str) -> Option<f64> {
    use prometheus::Encoder as _;
    let mut text = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .unwrap();
    String::from_utf8(text).unwrap().lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        (series == name_and_labels).then(|| value.parse().unwrap())
    })
}

#[tokio::test]
async fn metrics_name_the_gateway_of_each_stream_and_time_pushes() {
    let server = Server::start().await;
    let registry = prometheus::Registry::new();
    server.metrics.register(&registry).unwrap();
    let streams = |gateway: &str, protocol: &str| {
        series(
            &registry,
            &format!("sluice_xds_streams{{gateway=\"{gateway}\",protocol=\"{protocol}\"}}"),
        )
    };
    let pushes = |gateway: &str| {
        series(
            &registry,
            &format!("sluice_xds_push_duration_seconds_count{{gateway=\"{gateway}\"}}"),
        )
    };
    server.cache.set("ns/a", resources(&[(C, "c1", "c1")]));
    server.cache.set("ns/b", resources(&[(C, "c1", "c1")]));
    let mut s = server.sotw("ns/a").await;
    s.request(C, &[], None).await;
    let first = s.next().await;
    let mut d = server.delta("ns/b").await;
    d.subscribe(C, &[]).await;
    d.next().await;
    assert_eq!(streams("ns/a", "sotw"), Some(1.0));
    assert_eq!(streams("ns/b", "delta"), Some(1.0));
    assert_eq!(streams("ns/a", "delta"), None);
    // Answering a stream's first request is no push of a new snapshot.
    assert_eq!(pushes("ns/a"), None);

    s.request(C, &[], Some(&first)).await;
    server.cache.set("ns/a", resources(&[(C, "c1", "c1-v2")]));
    assert_eq!(labels(&s.next().await), vec!["c1-v2"]);
    // Observed when the response was handed to the transport, so before it arrived here.
    assert_eq!(pushes("ns/a"), Some(1.0));
    assert_eq!(pushes("ns/b"), None);

    // The series of a Gateway without streams goes away.
    let metrics = server.metrics.clone();
    server.shutdown().await;
    assert_eq!(streams("ns/a", "sotw"), None);
    assert_eq!(streams("ns/b", "delta"), None);
    assert_eq!(metrics.open_streams("sotw"), 0);
}

#[tokio::test]
async fn first_request_without_node_cluster_is_refused() {
    let server = Server::start().await;
    let mut s = server.sotw("").await;
    s.request(C, &[], None).await;
    let status = s.inbound.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    server.shutdown().await;
}
