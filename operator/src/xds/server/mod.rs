//! The ADS gRPC server: State-of-the-world (`StreamAggregatedResources`) and incremental
//! (`DeltaAggregatedResources`) xDS over one stream per Envoy.
//!
//! The first request's `node.cluster` (`<namespace>/<gateway>`) selects the instance; a stream
//! only ever reads that instance's [`Snapshot`]s. An unknown instance is waited for.
//!
//! With [`XdsServerTls`] (`sluice standalone`'s default; only `--insecure-xds` goes without),
//! the server requires a client certificate signed by the xDS CA, and a stream may only ask for
//! the instance its certificate names ([`super::identity`]); anything else is refused before a
//! single resource is sent. The server offers only the two ADS streams: no unary `Fetch*` calls.
//! Its certificate can be replaced while it serves ([`AdsServer::with_tls_updates`]): each new
//! connection is accepted with the latest one, open connections keep theirs.
//!
//! Each stream keeps its own protocol state (subscriptions, what the Envoy has, nonces) in a plain
//! synchronous state machine (`SotwStream`, `DeltaStream`); the async driver only moves
//! requests, snapshots and responses between it and the wire.
//!
//! Ordering follows the xDS eventual-consistency rules so that no request meets a missing
//! cluster: within a push, additions go CDS → EDS → LDS → RDS → SDS, and removals come after
//! all additions (listeners and routes first, clusters, endpoints and secrets last). For SotW,
//! where leaving a cluster out of a CDS response removes it, a removed cluster is kept in an
//! interim CDS response until the listeners and routes that stopped using it have been sent.
//!
//! A new EDS cluster only becomes usable once its endpoints arrive, and Envoy asks for them
//! (subscribes to the cluster's EDS service name) only after it has read the CDS response. A
//! route sent before that would point at a cluster Envoy does not have yet (503 "no cluster").
//! So after CDS and EDS, a push holds back everything else (listeners, routes, secrets, and every
//! removal) until the Envoy has subscribed to the EDS names of all its clusters; the request
//! that subscribes triggers the next push, which sends the endpoints and then the rest. A CDS
//! NACK lifts the hold: a rejected cluster is never subscribed to.
//!
//! ACKs and NACKs go to the [`Cache`], which tracks per instance what its Envoys accepted and
//! serves accepted versions in place of rejected ones (so new and reconnecting Envoys never get
//! rejected content). A NACK is logged and counted by gateway and type; the rejected content is
//! not resent as long as it stays the same. What a stream considers its Envoy to have is what it
//! ACKed: after a NACK, the resources of the rejected response count as not received, and once
//! the rejected content changes, the next push resends every one of them (Delta) or the whole
//! type (SotW). The server does not wait for ACKs between types.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::cache::{
    Cache, Snapshot, SnapshotReceiver, TypeResources, VersionedResource, hash_versions, type_url,
};
use super::identity::{IdentityError, instance_from_peer_chain};
use crate::snapshot::ObjKey;

/// Order in which added or changed resources are sent within one push.
const ADD_ORDER: [&str; 5] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::ROUTE,
    type_url::SECRET,
];

/// Order in which removals are sent, after every addition: first what refers to others
/// (listeners, then route configurations), then what is referred to.
const REMOVE_ORDER: [&str; 5] = [
    type_url::LISTENER,
    type_url::ROUTE,
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::SECRET,
];

/// Types for which a request without names means "everything" (legacy wildcard).
const WILDCARD_TYPES: [&str; 2] = [type_url::CLUSTER, type_url::LISTENER];

/// The explicit wildcard resource name.
const WILDCARD: &str = "*";

/// Responses buffered per stream before the stream task waits for the Envoy to read.
const RESPONSE_BUFFER: usize = 16;

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("creating xDS metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("xDS gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("xDS server TLS configuration: {0}")]
    Tls(String),
}

impl ServeError {
    /// A stable short label, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ServeError::Metrics(_) => "metrics",
            ServeError::Transport(_) => "transport",
            ServeError::Tls(_) => "tls",
        }
    }
}

/// Counters and gauges of the ADS server.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    nacks: IntCounterVec,
    responses: IntCounterVec,
    streams: IntGaugeVec,
    refused: IntCounterVec,
}

impl ServerMetrics {
    /// Creates the metrics, not yet registered anywhere.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(ServerMetrics {
            nacks: IntCounterVec::new(
                Opts::new(
                    "sluice_xds_nacks_total",
                    "xDS responses rejected by Envoy (NACK), by gateway (node.cluster) and type URL",
                ),
                &["gateway", "type_url"],
            )?,
            responses: IntCounterVec::new(
                Opts::new(
                    "sluice_xds_responses_total",
                    "xDS responses sent, by type URL and protocol (sotw, delta)",
                ),
                &["type_url", "protocol"],
            )?,
            streams: IntGaugeVec::new(
                Opts::new(
                    "sluice_xds_streams",
                    "Open xDS streams, by protocol (sotw, delta)",
                ),
                &["protocol"],
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "sluice_xds_refused_streams_total",
                    "xDS streams refused, by reason (unauthenticated: the client certificate \
                     names no Gateway; permission_denied: it names another Gateway than the \
                     requested node.cluster)",
                ),
                &["reason"],
            )?,
        })
    }

    /// Registers every metric with a registry.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.nacks.clone()))?;
        registry.register(Box::new(self.responses.clone()))?;
        registry.register(Box::new(self.streams.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        Ok(())
    }

    /// NACKs received so far for a type URL, over all gateways.
    pub fn nacks(&self, type_url: &str) -> u64 {
        use prometheus::core::Collector as _;
        let type_url = metric_type(type_url);
        self.nacks
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "type_url" && l.value() == type_url)
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// NACKs received so far from the Envoys of one gateway (`<namespace>/<name>`) for a type.
    pub fn gateway_nacks(&self, gateway: &str, type_url: &str) -> u64 {
        self.nacks
            .with_label_values(&[gateway, metric_type(type_url)])
            .get()
    }

    /// Responses sent so far for a type URL and protocol (`sotw` or `delta`).
    pub fn responses(&self, type_url: &str, protocol: &str) -> u64 {
        self.responses
            .with_label_values(&[metric_type(type_url), protocol])
            .get()
    }

    /// Streams currently open for a protocol (`sotw` or `delta`).
    pub fn open_streams(&self, protocol: &str) -> i64 {
        self.streams.with_label_values(&[protocol]).get()
    }

    /// Streams refused so far for a reason (`unauthenticated`, `permission_denied`).
    pub fn refused(&self, reason: &str) -> u64 {
        self.refused.with_label_values(&[reason]).get()
    }

    fn count_refusal(&self, status: &Status) {
        let reason = match status.code() {
            tonic::Code::Unauthenticated => "unauthenticated",
            tonic::Code::PermissionDenied => "permission_denied",
            _ => "other",
        };
        self.refused.with_label_values(&[reason]).inc();
    }
}

/// TLS material of the xDS server, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct XdsServerTls {
    /// The server's certificate (chain), leaf first.
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA client certificates must chain to.
    pub client_ca_pem: String,
}

impl std::fmt::Debug for XdsServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServerTls")
            .field("cert_pem", &self.cert_pem)
            .field("client_ca_pem", &self.client_ca_pem)
            .finish_non_exhaustive()
    }
}

/// How long a client may take to finish its TLS handshake before it is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl XdsServerTls {
    /// The rustls configuration serving this certificate and requiring client certificates
    /// that chain to `client_ca_pem`; HTTP/2 only.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ServeError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let err = |what: &str, e: &dyn std::fmt::Display| ServeError::Tls(format!("{what}: {e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("server certificate", &e))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| err("server key", &e))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.client_ca_pem.as_bytes()) {
            let ca = ca.map_err(|e| err("client CA", &e))?;
            roots.add(ca).map_err(|e| err("client CA", &e))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| err("client verifier", &e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err("protocol versions", &e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| err("server certificate", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A connection that finished its TLS handshake.
type TlsConnection = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Accepts TCP connections on `listener` and TLS handshakes (each in its own task, at most
/// [`TLS_HANDSHAKE_TIMEOUT`]) with the latest configuration of `tls`: a new certificate there
/// is used from the next connection on. An unusable update is logged and the previous one kept.
/// Ends when the returned stream is dropped.
fn tls_incoming(
    listener: tokio::net::TcpListener,
    mut tls: watch::Receiver<XdsServerTls>,
    mut config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsConnection, std::io::Error>> {
    let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // E.g. out of file descriptors: wait a little rather than spin.
                    warn!(error = %e, "accepting an xDS connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tls.has_changed().unwrap_or(false) {
                let update = tls.borrow_and_update().clone();
                match update.server_config() {
                    Ok(c) => {
                        info!("xDS server certificate reloaded");
                        config = c;
                    }
                    Err(e) => {
                        warn!(error = %e, "new xDS server certificate unusable; keeping the previous one");
                    }
                }
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "xDS TLS handshake failed"),
                    Err(_) => debug!(%peer, "xDS TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// How a peer authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAuth {
    /// The server runs without TLS (an explicit insecure mode): any peer may read any instance.
    Insecure,
    /// A client certificate, verified against the CA, naming this instance.
    Instance(ObjKey),
    /// TLS, but no certificate naming an instance.
    Unidentified(IdentityError),
}

/// Who is at the other end of a stream.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    pub remote_addr: Option<SocketAddr>,
    pub auth: PeerAuth,
}

impl PeerIdentity {
    /// The identity of a request's peer. `tls`: whether the server requires client
    /// certificates; then the TLS layer has verified the chain `Request::peer_certs` returns.
    fn of<T>(request: &Request<T>, tls: bool) -> Self {
        let auth = if tls {
            match request.peer_certs() {
                Some(chain) => match instance_from_peer_chain(&chain) {
                    Ok(instance) => PeerAuth::Instance(instance),
                    Err(e) => PeerAuth::Unidentified(e),
                },
                None => PeerAuth::Unidentified(IdentityError::NoCertificate),
            }
        } else {
            PeerAuth::Insecure
        };
        PeerIdentity {
            remote_addr: request.remote_addr(),
            auth,
        }
    }
}

/// Decides whether a peer may fetch an instance's configuration: with TLS, only the instance
/// its client certificate names (`node_cluster` must equal `<namespace>/<name>` of the
/// certificate's Gateway identity).
pub fn authorize(peer: &PeerIdentity, node_cluster: &str) -> Result<(), Status> {
    match &peer.auth {
        PeerAuth::Insecure => Ok(()),
        PeerAuth::Instance(instance) if instance.to_string() == node_cluster => Ok(()),
        PeerAuth::Instance(instance) => Err(Status::permission_denied(format!(
            "the client certificate is for Gateway {instance}, not {node_cluster}"
        ))),
        PeerAuth::Unidentified(e) => Err(Status::unauthenticated(e.to_string())),
    }
}

/// Serves ADS on `listener` until `shutdown` completes; open streams then end cleanly.
/// `tls`: `None` serves plaintext to anyone (explicit insecure modes only).
pub async fn serve(
    listener: tokio::net::TcpListener,
    cache: Arc<Cache>,
    tls: Option<XdsServerTls>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    AdsServer::new(cache, Arc::new(ServerMetrics::new()?))
        .with_tls(tls)
        .serve(listener, shutdown)
        .await
}

/// The ADS server with its dependencies; [`serve`] is the short form.
#[derive(Clone, Debug)]
pub struct AdsServer {
    cache: Arc<Cache>,
    metrics: Arc<ServerMetrics>,
    tls: Option<watch::Receiver<XdsServerTls>>,
}

impl AdsServer {
    /// A server without TLS; see [`AdsServer::with_tls`].
    pub fn new(cache: Arc<Cache>, metrics: Arc<ServerMetrics>) -> Self {
        AdsServer {
            cache,
            metrics,
            tls: None,
        }
    }

    /// Requires client certificates signed by `tls.client_ca_pem` and serves each stream only
    /// the instance its certificate names. `None`: plaintext, every instance to anyone.
    pub fn with_tls(mut self, tls: Option<XdsServerTls>) -> Self {
        self.tls = tls.map(|t| watch::channel(t).1);
        self
    }

    /// As [`AdsServer::with_tls`], with the TLS material the channel holds now; what is sent on
    /// it later (a renewed certificate) is used for the connections accepted after that.
    pub fn with_tls_updates(mut self, tls: watch::Receiver<XdsServerTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serves ADS on `listener` until `shutdown` completes; open streams then end cleanly.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let service = AdsService {
            cache: self.cache,
            metrics: self.metrics,
            shutdown: stop_rx,
            tls: self.tls.is_some(),
        };
        // Streams are long-lived: tell them to end, or graceful shutdown would wait forever.
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(AggregatedDiscoveryServiceServer::new(service));
        match self.tls {
            Some(mut tls) => {
                let config = tls.borrow_and_update().server_config()?;
                router
                    .serve_with_incoming_shutdown(tls_incoming(listener, tls, config), signal)
                    .await?;
            }
            None => {
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
                    .await?;
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AdsService {
    cache: Arc<Cache>,
    metrics: Arc<ServerMetrics>,
    shutdown: watch::Receiver<bool>,
    /// Whether client certificates are required (and so identify peers).
    tls: bool,
}

type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        self.spawn_stream::<SotwStream>(request).map(Response::new)
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        self.spawn_stream::<DeltaStream>(request).map(Response::new)
    }
}

impl AdsService {
    /// Starts a stream's task; a peer that cannot be identified is refused at once.
    fn spawn_stream<P: Protocol>(
        &self,
        request: Request<Streaming<P::Request>>,
    ) -> Result<ResponseStream<P::Response>, Status> {
        let peer = PeerIdentity::of(&request, self.tls);
        if let PeerAuth::Unidentified(e) = &peer.auth {
            let status = Status::unauthenticated(e.to_string());
            warn!(peer = ?peer.remote_addr, %status, "xDS stream refused");
            self.metrics.count_refusal(&status);
            return Err(status);
        }
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        tokio::spawn(run_stream::<P>(self.clone(), peer, inbound, tx));
        Ok(ReceiverStream::new(rx))
    }
}

/// One protocol's per-stream state machine. Pure: no I/O, no clock.
trait Protocol: Send + Sized + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    /// `sotw` or `delta`, for metrics and logs.
    const NAME: &'static str;

    fn node(request: &Self::Request) -> Option<&Node>;
    fn new(instance: String, node_id: String, metrics: Arc<ServerMetrics>) -> Self;
    /// Records a request (subscription changes, ACK or NACK); returns the Envoy's verdicts on
    /// earlier responses, for the cache.
    fn on_request(&mut self, request: Self::Request) -> Result<Vec<Verdict>, Status>;
    /// The responses that bring the Envoy from what it has to `snapshot`, in send order.
    fn push(&mut self, snapshot: &Snapshot) -> Vec<Self::Response>;
}

/// What an Envoy said about one response.
#[derive(Debug)]
enum Verdict {
    /// Accepted: `resources` added or updated, `removed` gone. `complete`: the response held
    /// every resource of the type the Envoy has.
    Ack {
        type_url: String,
        resources: Vec<Arc<VersionedResource>>,
        removed: Vec<String>,
        complete: bool,
    },
    /// Rejected: the response (`version`) carried `resources`.
    Nack {
        type_url: String,
        version: String,
        error: String,
        resources: Vec<Arc<VersionedResource>>,
    },
}

/// Hands a stream's verdicts to the cache.
fn record_verdicts(cache: &Cache, instance: &str, node_id: &str, verdicts: Vec<Verdict>) {
    for verdict in verdicts {
        match verdict {
            Verdict::Ack {
                type_url,
                resources,
                removed,
                complete,
            } => cache.ack(instance, &type_url, &resources, &removed, complete),
            Verdict::Nack {
                type_url,
                version,
                error,
                resources,
            } => cache.nack(instance, &type_url, &version, node_id, &error, &resources),
        }
    }
}

async fn run_stream<P: Protocol>(
    service: AdsService,
    peer: PeerIdentity,
    mut inbound: Streaming<P::Request>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
) {
    let mut shutdown = service.shutdown.clone();
    let first = tokio::select! {
        biased;
        () = shutdown_signalled(&mut shutdown) => return,
        message = inbound.message() => message,
    };
    let first = match first {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(status) => {
            debug!(%status, "xDS stream failed before its first request");
            return;
        }
    };
    let Some(node) = P::node(&first).filter(|n| !n.cluster.is_empty()) else {
        let _ = tx
            .send(Err(Status::invalid_argument(
                "the first xDS request must carry node.cluster (<namespace>/<gateway>)",
            )))
            .await;
        return;
    };
    let instance = node.cluster.clone();
    let node_id = node.id.clone();
    if let Err(status) = authorize(&peer, &instance) {
        warn!(%instance, node_id, peer = ?peer.remote_addr, %status, "xDS stream refused");
        service.metrics.count_refusal(&status);
        let _ = tx.send(Err(status)).await;
        return;
    }

    info!(%instance, node_id, protocol = P::NAME, peer = ?peer.remote_addr, "xDS stream opened");
    let gauge = service.metrics.streams.with_label_values(&[P::NAME]);
    gauge.inc();
    let mut snapshots = service.cache.subscribe(&instance);
    let mut state = P::new(instance.clone(), node_id.clone(), service.metrics.clone());
    let result = drive(
        &mut state,
        first,
        Peer {
            cache: &service.cache,
            instance: &instance,
            node_id: &node_id,
        },
        &mut inbound,
        &mut snapshots,
        &tx,
        &mut shutdown,
    )
    .await;
    if let Err(status) = result {
        warn!(%instance, node_id, %status, "xDS stream ended with an error");
        let _ = tx.send(Err(status)).await;
    }
    gauge.dec();
    drop(snapshots);
    service.cache.prune(&instance);
    info!(%instance, node_id, protocol = P::NAME, "xDS stream closed");
}

/// Who a stream serves, and where its verdicts go.
struct Peer<'a> {
    cache: &'a Cache,
    instance: &'a str,
    node_id: &'a str,
}

/// The stream loop: apply requests, push on snapshot changes, stop on shutdown or hang-up.
async fn drive<P: Protocol>(
    state: &mut P,
    first: P::Request,
    peer: Peer<'_>,
    inbound: &mut Streaming<P::Request>,
    snapshots: &mut SnapshotReceiver,
    tx: &mpsc::Sender<Result<P::Response, Status>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Status> {
    let mut next = Some(first);
    loop {
        if let Some(request) = next.take() {
            if let Some(node) = P::node(&request)
                && !node.cluster.is_empty()
                && node.cluster != peer.instance
            {
                return Err(Status::invalid_argument(
                    "node.cluster must not change within a stream",
                ));
            }
            let verdicts = state.on_request(request)?;
            // Applied before reading the snapshot: a NACK can change what is served.
            record_verdicts(peer.cache, peer.instance, peer.node_id, verdicts);
            let snapshot = snapshots.borrow_and_update().clone();
            if let Some(snapshot) = snapshot
                && !send_all(tx, state.push(&snapshot), shutdown).await
            {
                return Ok(());
            }
        }
        tokio::select! {
            biased;
            () = shutdown_signalled(shutdown) => return Ok(()),
            message = inbound.message() => match message {
                Ok(Some(request)) => next = Some(request),
                Ok(None) => return Ok(()),
                Err(status) => {
                    debug!(instance = peer.instance, %status, "xDS stream receive failed");
                    return Ok(());
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let snapshot = snapshots.borrow_and_update().clone();
                // `None`: the instance was removed; the Envoy keeps its last configuration.
                if let Some(snapshot) = snapshot
                    && !send_all(tx, state.push(&snapshot), shutdown).await
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Sends responses in order; false if the stream is gone or the server is shutting down.
async fn send_all<R>(
    tx: &mpsc::Sender<Result<R, Status>>,
    responses: Vec<R>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    for response in responses {
        tokio::select! {
            biased;
            () = shutdown_signalled(shutdown) => return false,
            sent = tx.send(Ok(response)) => if sent.is_err() {
                return false;
            },
        }
    }
    true
}

/// Completes when the server shuts down (or is gone).
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}

/// Type URLs sorted by an order list; types not in it come last, by name.
fn ordered<'a>(types: impl Iterator<Item = &'a String>, order: &[&str]) -> Vec<String> {
    let mut types: Vec<&String> = types.collect();
    types.sort_by_key(|t| {
        (
            order.iter().position(|o| o == t).unwrap_or(order.len()),
            t.as_str(),
        )
    });
    types.into_iter().cloned().collect()
}

/// The resources of one type a subscription selects.
fn select(all: Option<&TypeResources>, wildcard: bool, names: &BTreeSet<String>) -> TypeResources {
    let Some(all) = all else {
        return TypeResources::new();
    };
    if wildcard {
        return all.clone();
    }
    names
        .iter()
        .filter_map(|name| all.get(name).map(|r| (name.clone(), r.clone())))
        .collect()
}

/// Whether a push must stop after CDS and EDS: the Envoy has (or is being sent) `clusters`, and
/// some of them read endpoints from an EDS service name it has not subscribed to yet. Cluster
/// resources that do not decode are not waited for.
fn awaits_endpoint_subscriptions(
    clusters: Option<&TypeResources>,
    eds_wildcard: bool,
    eds_names: Option<&BTreeSet<String>>,
) -> bool {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    use prost::Message as _;

    if eds_wildcard {
        return false;
    }
    let Some(clusters) = clusters else {
        return false;
    };
    clusters.values().any(|r| {
        let Ok(cluster) = Cluster::decode(r.resource.value.as_slice()) else {
            return false;
        };
        let eds = cluster.cluster_discovery_type
            == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
        if !eds {
            return false;
        }
        // An EDS cluster without a service name reads the endpoints named after itself.
        let name = cluster
            .eds_cluster_config
            .map(|c| c.service_name)
            .filter(|n| !n.is_empty())
            .unwrap_or(cluster.name);
        !eds_names.is_some_and(|names| names.contains(&name))
    })
}

/// Whether `type_url` comes after EDS in a push, and so waits for endpoint subscriptions.
fn after_endpoints(type_url: &str) -> bool {
    type_url != type_url::CLUSTER && type_url != type_url::ENDPOINT
}

/// The type URL as a metric label: the served types, or `other`, so clients cannot grow the
/// label set.
fn metric_type(type_url: &str) -> &str {
    if ADD_ORDER.contains(&type_url) {
        type_url
    } else {
        "other"
    }
}

fn next_nonce(counter: &mut u64) -> String {
    *counter += 1;
    counter.to_string()
}

fn log_nack(
    metrics: &ServerMetrics,
    instance: &str,
    node_id: &str,
    type_url: &str,
    nonce: &str,
    error: &envoy_types::pb::google::rpc::Status,
) {
    warn!(
        instance,
        node_id,
        type_url,
        nonce,
        error = %error.message,
        "Envoy rejected xDS configuration (NACK); it keeps its last good configuration"
    );
    metrics
        .nacks
        .with_label_values(&[instance, metric_type(type_url)])
        .inc();
}

// ---------------------------------------------------------------------------------------------
// State of the world

/// What a SotW stream sent last for one type.
#[derive(Debug)]
struct SotwSent {
    version: String,
    resources: TypeResources,
}

#[derive(Debug, Default)]
struct SotwType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// A request that must be answered even if the content equals what was sent.
    needs_response: bool,
    /// The nonce of the latest response; requests carrying another nonce are stale.
    last_nonce: Option<String>,
    /// The latest response. Compared with new content so that a response is not sent twice:
    /// in particular not a rejected one while it stays the same (the cache replaces rejected
    /// versions, so what is served after a NACK differs and goes out).
    sent: Option<SotwSent>,
    /// Whether the Envoy ACKed or NACKed the latest response yet (later requests carrying its
    /// nonce only change subscriptions).
    judged: bool,
}

/// Per-stream state of `StreamAggregatedResources`.
#[derive(Debug)]
struct SotwStream {
    instance: String,
    node_id: String,
    metrics: Arc<ServerMetrics>,
    nonce: u64,
    types: BTreeMap<String, SotwType>,
    /// The latest CDS response was rejected: its clusters will not be subscribed to.
    cds_nacked: bool,
}

impl SotwStream {
    /// A response for `type_url` with `content`, unless the Envoy already has exactly that.
    fn respond(&mut self, type_url: &str, content: TypeResources) -> Option<DiscoveryResponse> {
        let version = hash_versions(
            content
                .values()
                .map(|r| (type_url, r.name.as_str(), r.version.as_str())),
        );
        let state = self.types.get_mut(type_url)?;
        if !state.needs_response && state.sent.as_ref().is_some_and(|s| s.version == version) {
            return None;
        }
        let nonce = next_nonce(&mut self.nonce);
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: content.values().map(|r| r.resource.clone()).collect(),
            type_url: type_url.to_owned(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        state.needs_response = false;
        state.last_nonce = Some(nonce);
        state.judged = false;
        if type_url == type_url::CLUSTER {
            self.cds_nacked = false;
        }
        state.sent = Some(SotwSent {
            version,
            resources: content,
        });
        self.metrics
            .responses
            .with_label_values(&[metric_type(type_url), Self::NAME])
            .inc();
        Some(response)
    }
}

impl SotwStream {
    /// See [`awaits_endpoint_subscriptions`]; the clusters are those last sent.
    fn awaits_endpoints(&self) -> bool {
        if self.cds_nacked {
            return false;
        }
        let clusters = self
            .types
            .get(type_url::CLUSTER)
            .and_then(|s| s.sent.as_ref())
            .map(|s| &s.resources);
        let eds = self.types.get(type_url::ENDPOINT);
        awaits_endpoint_subscriptions(
            clusters,
            eds.is_some_and(|e| e.wildcard),
            eds.map(|e| &e.names),
        )
    }
}

impl Protocol for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "sotw";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(instance: String, node_id: String, metrics: Arc<ServerMetrics>) -> Self {
        SotwStream {
            instance,
            node_id,
            metrics,
            nonce: 0,
            types: BTreeMap::new(),
            cds_nacked: false,
        }
    }

    fn on_request(&mut self, request: DiscoveryRequest) -> Result<Vec<Verdict>, Status> {
        if request.type_url.is_empty() {
            return Err(Status::invalid_argument("xDS request without type_url"));
        }
        let mut verdicts = Vec::new();
        let state = self.types.entry(request.type_url.clone()).or_default();
        if request.response_nonce.is_empty() {
            // A new subscription (or a reconnect): always answered.
            state.needs_response = true;
        } else {
            if state.last_nonce.as_deref() != Some(request.response_nonce.as_str()) {
                debug!(
                    instance = self.instance,
                    type_url = request.type_url,
                    nonce = request.response_nonce,
                    "ignoring SotW request with a stale nonce"
                );
                return Ok(verdicts);
            }
            if !state.judged
                && let Some(sent) = &state.sent
            {
                // Envoy reports the version it runs: the response's version if it accepted it.
                if let Some(error) = &request.error_detail {
                    state.judged = true;
                    verdicts.push(Verdict::Nack {
                        type_url: request.type_url.clone(),
                        version: sent.version.clone(),
                        error: error.message.clone(),
                        resources: sent.resources.values().cloned().collect(),
                    });
                } else if request.version_info == sent.version {
                    state.judged = true;
                    verdicts.push(Verdict::Ack {
                        type_url: request.type_url.clone(),
                        resources: sent.resources.values().cloned().collect(),
                        removed: Vec::new(),
                        // Wildcard responses hold every resource of the type.
                        complete: state.wildcard,
                    });
                }
            }
            if let Some(error) = &request.error_detail {
                log_nack(
                    &self.metrics,
                    &self.instance,
                    &self.node_id,
                    &request.type_url,
                    &request.response_nonce,
                    error,
                );
                if request.type_url == type_url::CLUSTER {
                    self.cds_nacked = true;
                }
            }
        }
        let wildcard = request.resource_names.iter().any(|n| n == WILDCARD)
            || (request.resource_names.is_empty()
                && WILDCARD_TYPES.contains(&request.type_url.as_str()));
        let names: BTreeSet<String> = request
            .resource_names
            .into_iter()
            .filter(|n| n != WILDCARD)
            .collect();
        if wildcard != state.wildcard || names != state.names {
            state.needs_response = true;
        }
        state.wildcard = wildcard;
        state.names = names;
        Ok(verdicts)
    }

    fn push(&mut self, snapshot: &Snapshot) -> Vec<DiscoveryResponse> {
        let mut responses = Vec::new();
        let mut trim_later = Vec::new();
        let mut hold = None;
        for type_url in ordered(self.types.keys(), &ADD_ORDER) {
            if after_endpoints(&type_url) && *hold.get_or_insert_with(|| self.awaits_endpoints()) {
                // The rest, interim cluster trimming included, follows the EDS subscription.
                return responses;
            }
            let Some(state) = self.types.get(&type_url) else {
                continue;
            };
            let mut content = select(snapshot.resources(&type_url), state.wildcard, &state.names);
            // A cluster left out of a CDS response is deleted: keep removed ones until the
            // listeners and routes that stopped using them have been sent.
            if type_url == type_url::CLUSTER
                && let Some(sent) = &state.sent
            {
                let before = content.len();
                for (name, resource) in &sent.resources {
                    content
                        .entry(name.clone())
                        .or_insert_with(|| resource.clone());
                }
                if content.len() != before {
                    trim_later.push(type_url.clone());
                }
            }
            responses.extend(self.respond(&type_url, content));
        }
        for type_url in trim_later {
            let Some(state) = self.types.get(&type_url) else {
                continue;
            };
            let content = select(snapshot.resources(&type_url), state.wildcard, &state.names);
            responses.extend(self.respond(&type_url, content));
        }
        responses
    }
}

// ---------------------------------------------------------------------------------------------
// Delta

#[derive(Debug, Default)]
struct DeltaType {
    /// Whether the client sent its first request for this type.
    requested: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    needs_response: bool,
    /// What the client has or is being sent: name → version, or `None` when it was told the
    /// name does not exist. A NACK takes the rejected response's resources back out (to their
    /// ACKed versions), so that they are sent again.
    known: BTreeMap<String, Option<String>>,
    /// What the client ACKed (or had when it reconnected): name → version.
    acked: BTreeMap<String, String>,
    /// Resources of rejected responses (name → rejected version) that are not sent again while
    /// every resource of that response still has its rejected version; once one changes, they
    /// all are (with everything else the client has not ACKed).
    held: Vec<BTreeMap<String, String>>,
}

/// At most this many Delta responses await their ACK per stream; beyond that, the oldest are
/// forgotten (their verdicts then only count).
const MAX_IN_FLIGHT: usize = 256;

/// A Delta response awaiting its ACK or NACK.
#[derive(Debug)]
struct DeltaSent {
    type_url: String,
    version: String,
    resources: Vec<Arc<VersionedResource>>,
    removed: Vec<String>,
}

/// Per-stream state of `DeltaAggregatedResources`.
#[derive(Debug)]
struct DeltaStream {
    instance: String,
    node_id: String,
    metrics: Arc<ServerMetrics>,
    nonce: u64,
    types: BTreeMap<String, DeltaType>,
    /// The latest CDS response was rejected: its clusters will not be subscribed to.
    cds_nacked: bool,
    /// Responses awaiting their ACK or NACK, by nonce.
    in_flight: BTreeMap<u64, DeltaSent>,
}

impl DeltaStream {
    fn response(
        &mut self,
        snapshot: &Snapshot,
        type_url: &str,
        added: Vec<Arc<VersionedResource>>,
        removed_resources: Vec<String>,
    ) -> DeltaDiscoveryResponse {
        self.metrics
            .responses
            .with_label_values(&[metric_type(type_url), Self::NAME])
            .inc();
        let resources = added
            .iter()
            .map(|r| Resource {
                name: r.name.clone(),
                version: r.version.clone(),
                resource: Some(r.resource.clone()),
                ..Default::default()
            })
            .collect();
        let nonce = next_nonce(&mut self.nonce);
        self.in_flight.insert(
            self.nonce,
            DeltaSent {
                type_url: type_url.to_owned(),
                version: snapshot.version().to_owned(),
                resources: added,
                removed: removed_resources.clone(),
            },
        );
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.in_flight.pop_first();
        }
        DeltaDiscoveryResponse {
            system_version_info: snapshot.version().to_owned(),
            resources,
            type_url: type_url.to_owned(),
            removed_resources,
            nonce,
            ..Default::default()
        }
    }

    /// The verdict of the client on the response `nonce`, if that is one awaiting it.
    fn judge(&mut self, nonce: &str, error: Option<&str>) -> Option<Verdict> {
        let sent = self.in_flight.remove(&nonce.parse::<u64>().ok()?)?;
        let state = self.types.get_mut(&sent.type_url)?;
        let Some(error) = error else {
            for r in &sent.resources {
                state.acked.insert(r.name.clone(), r.version.clone());
            }
            for name in &sent.removed {
                state.acked.remove(name);
            }
            return Some(Verdict::Ack {
                type_url: sent.type_url,
                resources: sent.resources,
                removed: sent.removed,
                complete: false,
            });
        };
        // The client keeps what it ACKed before: take the rejected versions back out of what it
        // has (unless a later response already replaced them), and hold them until they change.
        let mut held = BTreeMap::new();
        for r in &sent.resources {
            if state.known.get(&r.name) == Some(&Some(r.version.clone())) {
                match state.acked.get(&r.name) {
                    Some(v) => state.known.insert(r.name.clone(), Some(v.clone())),
                    None => state.known.remove(&r.name),
                };
            }
            if state.acked.get(&r.name) != Some(&r.version) {
                held.insert(r.name.clone(), r.version.clone());
            }
        }
        if !held.is_empty() {
            state.held.push(held);
        }
        Some(Verdict::Nack {
            type_url: sent.type_url,
            version: sent.version,
            error: error.to_owned(),
            resources: sent.resources,
        })
    }
}

impl DeltaStream {
    /// See [`awaits_endpoint_subscriptions`]; the clusters are those the client subscribes to
    /// (everything just sent included).
    fn awaits_endpoints(&self, snapshot: &Snapshot) -> bool {
        if self.cds_nacked {
            return false;
        }
        let Some(cds) = self.types.get(type_url::CLUSTER) else {
            return false;
        };
        let clusters = select(
            snapshot.resources(type_url::CLUSTER),
            cds.wildcard,
            &cds.names,
        );
        let eds = self.types.get(type_url::ENDPOINT);
        awaits_endpoint_subscriptions(
            Some(&clusters),
            eds.is_some_and(|e| e.wildcard),
            eds.map(|e| &e.names),
        )
    }
}

impl Protocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(instance: String, node_id: String, metrics: Arc<ServerMetrics>) -> Self {
        DeltaStream {
            instance,
            node_id,
            metrics,
            nonce: 0,
            types: BTreeMap::new(),
            cds_nacked: false,
            in_flight: BTreeMap::new(),
        }
    }

    fn on_request(&mut self, request: DeltaDiscoveryRequest) -> Result<Vec<Verdict>, Status> {
        if request.type_url.is_empty() {
            return Err(Status::invalid_argument("xDS request without type_url"));
        }
        let mut verdicts = Vec::new();
        if !request.response_nonce.is_empty() {
            let error = request.error_detail.as_ref().map(|e| e.message.as_str());
            verdicts.extend(self.judge(&request.response_nonce, error));
        }
        if !request.response_nonce.is_empty()
            && let Some(error) = &request.error_detail
        {
            log_nack(
                &self.metrics,
                &self.instance,
                &self.node_id,
                &request.type_url,
                &request.response_nonce,
                error,
            );
            if request.type_url == type_url::CLUSTER {
                self.cds_nacked = true;
            }
        }
        let state = self.types.entry(request.type_url.clone()).or_default();
        if !state.requested {
            state.requested = true;
            state.needs_response = true;
            // Only meaningful on the first request of a type in a stream (a reconnect).
            state.acked = request.initial_resource_versions.into_iter().collect();
            state.known = state
                .acked
                .iter()
                .map(|(name, version)| (name.clone(), Some(version.clone())))
                .collect();
            state.wildcard = request.resource_names_subscribe.is_empty()
                && WILDCARD_TYPES.contains(&request.type_url.as_str());
        }
        for name in request.resource_names_subscribe {
            if name == WILDCARD {
                state.wildcard = true;
            } else {
                state.names.insert(name);
            }
        }
        for name in request.resource_names_unsubscribe {
            if name == WILDCARD {
                state.wildcard = false;
                let names = &state.names;
                state.known.retain(|known, _| names.contains(known));
                state.acked.retain(|acked, _| names.contains(acked));
            } else {
                state.names.remove(&name);
                if !state.wildcard {
                    state.known.remove(&name);
                    state.acked.remove(&name);
                }
            }
        }
        Ok(verdicts)
    }

    fn push(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let mut responses = Vec::new();
        let mut removals: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut hold = None;
        for type_url in ordered(self.types.keys(), &ADD_ORDER) {
            if after_endpoints(&type_url)
                && *hold.get_or_insert_with(|| self.awaits_endpoints(snapshot))
            {
                // The rest, and every removal, follows the EDS subscription; removals are
                // recorded only once sent, so the next push finds them again.
                return responses;
            }
            let Some(state) = self.types.get_mut(&type_url) else {
                continue;
            };
            let all = snapshot.resources(&type_url);
            let selected = select(all, state.wildcard, &state.names);
            // A rejected response is held while all of it is still what would be sent.
            state.held.retain(|held| {
                held.iter().all(|(name, version)| {
                    selected.get(name).is_some_and(|r| &r.version == version)
                })
            });
            let held = &state.held;
            let added: Vec<Arc<VersionedResource>> = selected
                .values()
                .filter(|r| state.known.get(&r.name) != Some(&Some(r.version.clone())))
                .filter(|r| !held.iter().any(|h| h.contains_key(&r.name)))
                .cloned()
                .collect();
            let exists = |name: &String| all.is_some_and(|a| a.contains_key(name));
            // Gone since the client got it, or subscribed by name and never existed.
            let mut removed: BTreeSet<String> = state
                .known
                .iter()
                .filter(|(name, version)| version.is_some() && !exists(name))
                .map(|(name, _)| name.clone())
                .collect();
            removed.extend(
                state
                    .names
                    .iter()
                    .filter(|name| !exists(name) && !state.known.contains_key(*name))
                    .cloned(),
            );
            for resource in &added {
                state
                    .known
                    .insert(resource.name.clone(), Some(resource.version.clone()));
            }
            let answer_empty = std::mem::take(&mut state.needs_response) && removed.is_empty();
            if type_url == type_url::CLUSTER && !added.is_empty() {
                self.cds_nacked = false;
            }
            if !added.is_empty() || answer_empty {
                let response = self.response(snapshot, &type_url, added, Vec::new());
                responses.push(response);
            }
            if !removed.is_empty() {
                removals.insert(type_url, removed.into_iter().collect());
            }
        }
        for type_url in ordered(removals.keys(), &REMOVE_ORDER) {
            let Some(removed) = removals.remove(&type_url) else {
                continue;
            };
            if let Some(state) = self.types.get_mut(&type_url) {
                for name in &removed {
                    if state.names.contains(name) {
                        state.known.insert(name.clone(), None);
                    } else {
                        state.known.remove(name);
                    }
                }
            }
            let response = self.response(snapshot, &type_url, Vec::new(), removed);
            responses.push(response);
        }
        responses
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::xds::cache::InstanceResources;
    use envoy_types::pb::google::protobuf::Any;

    fn snapshot(entries: &[(&str, &str, &str)]) -> Snapshot {
        let mut r = InstanceResources::default();
        for (type_url, name, content) in entries {
            r.insert(
                *name,
                Any {
                    type_url: (*type_url).to_owned(),
                    value: content.as_bytes().to_vec(),
                },
            );
        }
        Snapshot::new(r)
    }

    /// A real EDS cluster `name` reading endpoints `eds_name`.
    fn eds_cluster(name: &str, eds_name: &str) -> Any {
        use envoy_types::pb::envoy::config::cluster::v3::Cluster;
        use envoy_types::pb::envoy::config::cluster::v3::cluster::{
            ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
        };
        use prost::Message as _;
        let cluster = Cluster {
            name: name.to_owned(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: eds_name.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Any {
            type_url: type_url::CLUSTER.to_owned(),
            value: cluster.encode_to_vec(),
        }
    }

    /// `entries` plus real EDS clusters (`name`, `eds_name`).
    fn snapshot_with_clusters(
        entries: &[(&str, &str, &str)],
        clusters: &[(&str, &str)],
    ) -> Snapshot {
        let mut r = InstanceResources::default();
        for (type_url, name, content) in entries {
            r.insert(
                *name,
                Any {
                    type_url: (*type_url).to_owned(),
                    value: content.as_bytes().to_vec(),
                },
            );
        }
        for (name, eds_name) in clusters {
            r.insert(*name, eds_cluster(name, eds_name));
        }
        Snapshot::new(r)
    }

    fn metrics() -> Arc<ServerMetrics> {
        Arc::new(ServerMetrics::new().unwrap())
    }

    fn sotw_request(type_url: &str, names: &[&str], nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url.to_owned(),
            resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
            response_nonce: nonce.to_owned(),
            ..Default::default()
        }
    }

    fn sotw_names(response: &DiscoveryResponse) -> Vec<String> {
        response
            .resources
            .iter()
            .map(|a| String::from_utf8(a.value.clone()).unwrap())
            .collect()
    }

    #[test]
    fn sotw_removed_cluster_outlives_the_route_that_used_it() {
        let mut s = SotwStream::new("ns/gw".into(), "node".into(), metrics());
        let before = snapshot(&[
            (type_url::CLUSTER, "old", "old"),
            (type_url::ROUTE, "r", "r-old"),
        ]);
        s.on_request(sotw_request(type_url::CLUSTER, &[], ""))
            .unwrap();
        s.on_request(sotw_request(type_url::ROUTE, &["r"], ""))
            .unwrap();
        let first = s.push(&before);
        assert_eq!(first.len(), 2);
        // "old" replaced by "new", and the route now points at "new".
        let after = snapshot(&[
            (type_url::CLUSTER, "new", "new"),
            (type_url::ROUTE, "r", "r-new"),
        ]);
        let pushed = s.push(&after);
        let seen: Vec<(String, Vec<String>)> = pushed
            .iter()
            .map(|r| (r.type_url.clone(), sotw_names(r)))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    type_url::CLUSTER.to_owned(),
                    vec!["new".to_owned(), "old".to_owned()]
                ),
                (type_url::ROUTE.to_owned(), vec!["r-new".to_owned()]),
                (type_url::CLUSTER.to_owned(), vec!["new".to_owned()]),
            ]
        );
        // Nothing more to send.
        assert!(s.push(&after).is_empty());
    }

    #[test]
    fn sotw_stale_nonce_is_ignored() {
        let mut s = SotwStream::new("ns/gw".into(), "node".into(), metrics());
        let snap = snapshot(&[
            (type_url::ENDPOINT, "a", "a"),
            (type_url::ENDPOINT, "b", "b"),
        ]);
        s.on_request(sotw_request(type_url::ENDPOINT, &["a"], ""))
            .unwrap();
        let sent = s.push(&snap);
        assert_eq!(sent.len(), 1);
        // A request with an older nonce does not change the subscription.
        s.on_request(sotw_request(type_url::ENDPOINT, &["a", "b"], "0"))
            .unwrap();
        assert!(s.push(&snap).is_empty());
        s.on_request(sotw_request(
            type_url::ENDPOINT,
            &["a", "b"],
            &sent[0].nonce,
        ))
        .unwrap();
        let sent = s.push(&snap);
        assert_eq!(sotw_names(&sent[0]), vec!["a", "b"]);
    }

    fn delta_request(
        type_url: &str,
        subscribe: &[&str],
        unsubscribe: &[&str],
    ) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            resource_names_subscribe: subscribe.iter().map(|n| (*n).to_owned()).collect(),
            resource_names_unsubscribe: unsubscribe.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn delta_named_subscription_tells_absent_once_and_sends_when_it_appears() {
        let mut d = DeltaStream::new("ns/gw".into(), "node".into(), metrics());
        d.on_request(delta_request(type_url::SECRET, &["tls"], &[]))
            .unwrap();
        let empty = snapshot(&[(type_url::CLUSTER, "c", "c")]);
        let sent = d.push(&empty);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].removed_resources, vec!["tls"]);
        assert!(sent[0].resources.is_empty());
        assert!(d.push(&empty).is_empty());

        let with = snapshot(&[
            (type_url::SECRET, "tls", "k1"),
            (type_url::SECRET, "other", "k2"),
        ]);
        let sent = d.push(&with);
        assert_eq!(sent.len(), 1);
        let names: Vec<&str> = sent[0].resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["tls"]);

        // Unsubscribed: nothing more about it, not even its removal.
        d.on_request(delta_request(type_url::SECRET, &[], &["tls"]))
            .unwrap();
        assert!(d.push(&empty).is_empty());
    }

    #[test]
    fn delta_removals_follow_all_additions_listeners_first() {
        let mut d = DeltaStream::new("ns/gw".into(), "node".into(), metrics());
        d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
            .unwrap();
        d.on_request(delta_request(type_url::LISTENER, &[], &[]))
            .unwrap();
        let before = snapshot(&[
            (type_url::CLUSTER, "c1", "c1"),
            (type_url::LISTENER, "l1", "l1"),
        ]);
        assert_eq!(d.push(&before).len(), 2);
        let after = snapshot(&[
            (type_url::CLUSTER, "c2", "c2"),
            (type_url::LISTENER, "l2", "l2"),
        ]);
        let seen: Vec<(String, Vec<String>, Vec<String>)> = d
            .push(&after)
            .iter()
            .map(|r| {
                (
                    r.type_url.clone(),
                    r.resources.iter().map(|x| x.name.clone()).collect(),
                    r.removed_resources.clone(),
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            seen,
            vec![
                (type_url::CLUSTER.to_owned(), s(&["c2"]), s(&[])),
                (type_url::LISTENER.to_owned(), s(&["l2"]), s(&[])),
                (type_url::LISTENER.to_owned(), s(&[]), s(&["l1"])),
                (type_url::CLUSTER.to_owned(), s(&[]), s(&["c1"])),
            ]
        );
    }

    /// The types and resource names (SotW: decoded only for non-cluster fakes) of responses.
    fn sotw_seen(responses: &[DiscoveryResponse]) -> Vec<(String, usize)> {
        responses
            .iter()
            .map(|r| (r.type_url.clone(), r.resources.len()))
            .collect()
    }

    #[test]
    fn sotw_route_to_a_new_cluster_waits_for_its_endpoint_subscription() {
        let mut s = SotwStream::new("ns/gw".into(), "node".into(), metrics());
        let before = snapshot_with_clusters(
            &[
                (type_url::ENDPOINT, "ns/old/http", "e-old"),
                (type_url::ROUTE, "r", "r-old"),
            ],
            &[("ns/old/80", "ns/old/http")],
        );
        s.on_request(sotw_request(type_url::CLUSTER, &[], ""))
            .unwrap();
        assert_eq!(
            sotw_seen(&s.push(&before)),
            vec![(type_url::CLUSTER.to_owned(), 1)]
        );
        s.on_request(sotw_request(type_url::ENDPOINT, &["ns/old/http"], ""))
            .unwrap();
        s.on_request(sotw_request(type_url::ROUTE, &["r"], ""))
            .unwrap();
        let sent = s.push(&before);
        assert_eq!(
            sotw_seen(&sent),
            vec![
                (type_url::ENDPOINT.to_owned(), 1),
                (type_url::ROUTE.to_owned(), 1)
            ]
        );

        // The route moves to a new cluster: CDS goes out (old and new clusters), and EDS for
        // what Envoy subscribes to now (no longer served; in SotW EDS that deletes nothing);
        // the route waits.
        let after = snapshot_with_clusters(
            &[
                (type_url::ENDPOINT, "ns/new/http", "e-new"),
                (type_url::ROUTE, "r", "r-new"),
            ],
            &[("ns/new/80", "ns/new/http")],
        );
        let sent = s.push(&after);
        assert_eq!(
            sotw_seen(&sent),
            vec![
                (type_url::CLUSTER.to_owned(), 2),
                (type_url::ENDPOINT.to_owned(), 0)
            ]
        );
        let eds_nonce = sent[1].nonce.clone();
        assert!(s.push(&after).is_empty(), "still waiting");

        // Envoy subscribes to the new cluster's endpoints: endpoints, route, then the old
        // cluster goes.
        s.on_request(sotw_request(
            type_url::ENDPOINT,
            &["ns/new/http", "ns/old/http"],
            &eds_nonce,
        ))
        .unwrap();
        let sent = s.push(&after);
        assert_eq!(
            sotw_seen(&sent),
            vec![
                (type_url::ENDPOINT.to_owned(), 1),
                (type_url::ROUTE.to_owned(), 1),
                (type_url::CLUSTER.to_owned(), 1),
            ]
        );
        assert_eq!(sotw_names(&sent[1]), vec!["r-new"]);
        assert!(s.push(&after).is_empty());
    }

    #[test]
    fn sotw_cds_nack_lifts_the_wait_for_endpoints() {
        let mut s = SotwStream::new("ns/gw".into(), "node".into(), metrics());
        let snap = snapshot_with_clusters(
            &[(type_url::ROUTE, "r", "r")],
            &[("ns/bad/80", "ns/bad/http")],
        );
        s.on_request(sotw_request(type_url::CLUSTER, &[], ""))
            .unwrap();
        s.on_request(sotw_request(type_url::ROUTE, &["r"], ""))
            .unwrap();
        let sent = s.push(&snap);
        assert_eq!(sotw_seen(&sent), vec![(type_url::CLUSTER.to_owned(), 1)]);
        s.on_request(DiscoveryRequest {
            error_detail: Some(envoy_types::pb::google::rpc::Status {
                message: "rejected".into(),
                ..Default::default()
            }),
            ..sotw_request(type_url::CLUSTER, &[], &sent[0].nonce)
        })
        .unwrap();
        assert_eq!(
            sotw_seen(&s.push(&snap)),
            vec![(type_url::ROUTE.to_owned(), 1)]
        );
    }

    #[test]
    fn delta_route_to_a_new_cluster_waits_for_its_endpoint_subscription() {
        let mut d = DeltaStream::new("ns/gw".into(), "node".into(), metrics());
        let before = snapshot_with_clusters(
            &[
                (type_url::ENDPOINT, "ns/old/http", "e-old"),
                (type_url::ROUTE, "r", "r-old"),
            ],
            &[("ns/old/80", "ns/old/http")],
        );
        d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
            .unwrap();
        d.on_request(delta_request(type_url::ROUTE, &["r"], &[]))
            .unwrap();
        let seen =
            |responses: Vec<DeltaDiscoveryResponse>| -> Vec<(String, Vec<String>, Vec<String>)> {
                responses
                    .iter()
                    .map(|r| {
                        (
                            r.type_url.clone(),
                            r.resources.iter().map(|x| x.name.clone()).collect(),
                            r.removed_resources.clone(),
                        )
                    })
                    .collect()
            };
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            seen(d.push(&before)),
            vec![(type_url::CLUSTER.to_owned(), s(&["ns/old/80"]), s(&[]))],
            "the route waits for the cluster's endpoints"
        );
        d.on_request(delta_request(type_url::ENDPOINT, &["ns/old/http"], &[]))
            .unwrap();
        assert_eq!(
            seen(d.push(&before)),
            vec![
                (type_url::ENDPOINT.to_owned(), s(&["ns/old/http"]), s(&[])),
                (type_url::ROUTE.to_owned(), s(&["r"]), s(&[])),
            ]
        );

        let after = snapshot_with_clusters(
            &[
                (type_url::ENDPOINT, "ns/new/http", "e-new"),
                (type_url::ROUTE, "r", "r-new"),
            ],
            &[("ns/new/80", "ns/new/http")],
        );
        assert_eq!(
            seen(d.push(&after)),
            vec![(type_url::CLUSTER.to_owned(), s(&["ns/new/80"]), s(&[]))],
            "the new cluster only; the route and the removals wait"
        );
        assert!(d.push(&after).is_empty(), "still waiting");
        d.on_request(delta_request(
            type_url::ENDPOINT,
            &["ns/new/http"],
            &["ns/old/http"],
        ))
        .unwrap();
        assert_eq!(
            seen(d.push(&after)),
            vec![
                (type_url::ENDPOINT.to_owned(), s(&["ns/new/http"]), s(&[])),
                (type_url::ROUTE.to_owned(), s(&["r"]), s(&[])),
                (type_url::CLUSTER.to_owned(), s(&[]), s(&["ns/old/80"])),
            ]
        );
        assert!(d.push(&after).is_empty());
    }

    #[test]
    fn delta_cds_nack_lifts_the_wait_for_endpoints() {
        let mut d = DeltaStream::new("ns/gw".into(), "node".into(), metrics());
        let snap = snapshot_with_clusters(
            &[(type_url::ROUTE, "r", "r")],
            &[("ns/bad/80", "ns/bad/http")],
        );
        d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
            .unwrap();
        d.on_request(delta_request(type_url::ROUTE, &["r"], &[]))
            .unwrap();
        let sent = d.push(&snap);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].type_url, type_url::CLUSTER);
        d.on_request(DeltaDiscoveryRequest {
            response_nonce: sent[0].nonce.clone(),
            error_detail: Some(envoy_types::pb::google::rpc::Status {
                message: "rejected".into(),
                ..Default::default()
            }),
            ..delta_request(type_url::CLUSTER, &[], &[])
        })
        .unwrap();
        let sent = d.push(&snap);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].type_url, type_url::ROUTE);
    }

    fn delta_names(responses: &[DeltaDiscoveryResponse]) -> Vec<(String, Vec<String>)> {
        responses
            .iter()
            .map(|r| {
                (
                    r.type_url.clone(),
                    r.resources.iter().map(|x| x.name.clone()).collect(),
                )
            })
            .collect()
    }

    fn delta_verdict(
        d: &mut DeltaStream,
        response: &DeltaDiscoveryResponse,
        error: Option<&str>,
    ) -> Vec<Verdict> {
        d.on_request(DeltaDiscoveryRequest {
            response_nonce: response.nonce.clone(),
            error_detail: error.map(|message| envoy_types::pb::google::rpc::Status {
                message: message.into(),
                ..Default::default()
            }),
            ..delta_request(&response.type_url, &[], &[])
        })
        .unwrap()
    }

    #[test]
    fn delta_resends_everything_a_nack_rejected_once_it_changes() {
        let mut d = DeltaStream::new("ns/gw".into(), "node".into(), metrics());
        d.on_request(delta_request(type_url::SECRET, &["victim", "bad"], &[]))
            .unwrap();
        let v1 = snapshot(&[
            (type_url::SECRET, "victim", "v1"),
            (type_url::SECRET, "bad", "b1"),
        ]);
        let sent = d.push(&v1);
        let verdicts = delta_verdict(&mut d, &sent[0], None);
        assert!(matches!(&verdicts[..], [Verdict::Ack { resources, .. }] if resources.len() == 2));

        // The victim's new certificate goes out with a bad one; Envoy rejects the response.
        let v2 = snapshot(&[
            (type_url::SECRET, "victim", "v2"),
            (type_url::SECRET, "bad", "b2"),
        ]);
        let sent = d.push(&v2);
        assert_eq!(
            delta_names(&sent),
            vec![(
                type_url::SECRET.to_owned(),
                vec!["bad".into(), "victim".into()]
            )]
        );
        let verdicts = delta_verdict(&mut d, &sent[0], Some("bad key"));
        assert!(
            matches!(&verdicts[..], [Verdict::Nack { resources, error, .. }]
                if resources.len() == 2 && error == "bad key")
        );
        // Not resent while unchanged.
        assert!(d.push(&v2).is_empty());

        // The bad one is fixed: the victim, which the Envoy never accepted, is resent too.
        let v3 = snapshot(&[
            (type_url::SECRET, "victim", "v2"),
            (type_url::SECRET, "bad", "b3"),
        ]);
        assert_eq!(
            delta_names(&d.push(&v3)),
            vec![(
                type_url::SECRET.to_owned(),
                vec!["bad".into(), "victim".into()]
            )]
        );
        // A verdict on an unknown nonce is none.
        assert!(delta_verdict(&mut d, &sent[0], None).is_empty());
    }

    #[test]
    fn delta_back_to_the_accepted_version_after_a_nack_sends_nothing() {
        let mut d = DeltaStream::new("ns/gw".into(), "node".into(), metrics());
        d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
            .unwrap();
        let v1 = snapshot(&[(type_url::CLUSTER, "c", "c1")]);
        let sent = d.push(&v1);
        delta_verdict(&mut d, &sent[0], None);
        let sent = d.push(&snapshot(&[(type_url::CLUSTER, "c", "c2")]));
        delta_verdict(&mut d, &sent[0], Some("bad"));
        // What the cache serves after the NACK: the accepted version, which the Envoy has.
        assert!(d.push(&v1).is_empty());
    }

    #[test]
    fn sotw_verdicts_follow_the_version_envoy_reports() {
        let mut s = SotwStream::new("ns/gw".into(), "node".into(), metrics());
        s.on_request(sotw_request(type_url::LISTENER, &[], ""))
            .unwrap();
        let v1 = snapshot(&[(type_url::LISTENER, "l", "l1")]);
        let sent = s.push(&v1);
        let ack = DiscoveryRequest {
            version_info: sent[0].version_info.clone(),
            ..sotw_request(type_url::LISTENER, &[], &sent[0].nonce)
        };
        let verdicts = s.on_request(ack.clone()).unwrap();
        assert!(matches!(
            &verdicts[..],
            [Verdict::Ack { complete: true, .. }]
        ));
        // Judged once.
        assert!(s.on_request(ack).unwrap().is_empty());

        let sent = s.push(&snapshot(&[(type_url::LISTENER, "l", "l2")]));
        let nack = DiscoveryRequest {
            // Envoy reports the version it still runs.
            version_info: "v1".into(),
            error_detail: Some(envoy_types::pb::google::rpc::Status {
                message: "bad listener".into(),
                ..Default::default()
            }),
            ..sotw_request(type_url::LISTENER, &[], &sent[0].nonce)
        };
        let verdicts = s.on_request(nack).unwrap();
        assert!(
            matches!(&verdicts[..], [Verdict::Nack { version, .. }] if *version == sent[0].version_info)
        );
        // A later request with that nonce and the old version is no ACK.
        let later = DiscoveryRequest {
            version_info: "v1".into(),
            ..sotw_request(type_url::LISTENER, &[], &sent[0].nonce)
        };
        assert!(s.on_request(later).unwrap().is_empty());
        // Back to the accepted content (what the cache serves after the NACK): sent again.
        assert_eq!(s.push(&v1).len(), 1);
        assert_eq!(s.metrics.gateway_nacks("ns/gw", type_url::LISTENER), 1);
        assert_eq!(s.metrics.nacks(type_url::LISTENER), 1);
    }
}
