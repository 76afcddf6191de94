//! The ADS gRPC server: State-of-the-world (`StreamAggregatedResources`) and incremental
//! (`DeltaAggregatedResources`) xDS over one stream per Envoy.
//!
//! The first request's `node.cluster` (`<namespace>/<gateway>`) selects the instance; a stream
//! only ever reads that instance's [`Snapshot`]s. An unknown instance is waited for.
//!
//! With [`XdsServerTls`] (`sluice standalone`'s default; only `--insecure-xds` goes without),
//! the server requires a client certificate signed by the xDS CA, and a stream may only ask for
//! the instance its certificate names ([`crate::pki::identity`]); anything else is refused before a
//! single resource is sent. The server offers only the two ADS streams: no unary `Fetch*` calls.
//! Its certificate can be replaced while it serves ([`AdsServer::with_tls_updates`]): each new
//! connection is accepted with the latest one, open connections keep theirs.
//!
//! Each stream keeps its own protocol state (subscriptions, what the Envoy has, nonces) in a plain
//! synchronous state machine (`sotw`, `delta`) over a shared core (`stream`: the bookkeeping
//! both need, NACK handling, and the async driver that only moves requests, snapshots and
//! responses between the state machine and the wire). `auth` decides who may read what;
//! `ordering` holds the rules below; `metrics` the counters and the push latency histogram.
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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::warn;

use super::cache::Cache;

mod auth;
mod delta;
mod metrics;
mod ordering;
mod sotw;
mod stream;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use crate::pki::XdsServerTls;
pub use auth::{PeerAuth, PeerIdentity, authorize};
pub use metrics::ServerMetrics;

use delta::DeltaStream;
use sotw::SotwStream;
use stream::{Protocol, ResponseStream, response_channel, run_stream};

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
    Tls(#[from] crate::pki::TlsConfigError),
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
                    .serve_with_incoming_shutdown(auth::tls_incoming(listener, tls, config), signal)
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
        let (tx, responses) = response_channel();
        tokio::spawn(run_stream::<P>(self.clone(), peer, inbound, tx));
        Ok(responses)
    }
}
