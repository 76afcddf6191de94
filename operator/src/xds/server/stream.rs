//! The stream core both protocols share: the bookkeeping of one stream (who it serves, nonces,
//! NACK handling, the endpoint-subscription hold) in [`StreamCore`], and the async driver that
//! moves requests, snapshots and responses between a protocol's state machine and the wire.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use super::auth::{PeerIdentity, authorize};
use super::metrics::{PushTimer, ServerMetrics};
use super::ordering::{Subscription, awaits_endpoint_subscriptions, awaits_endpoints_of};
use super::{AdsService, RESPONSE_BUFFER};
use crate::xds::cache::{
    Cache, Snapshot, SnapshotReceiver, TypeResources, VersionedResource, type_url,
};

/// One protocol's per-stream state machine. Pure: no I/O, no clock.
pub(super) trait Protocol: Send + Sized + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    /// `sotw` or `delta`, for metrics and logs.
    const NAME: &'static str;

    fn node(request: &Self::Request) -> Option<&Node>;
    fn new(core: StreamCore) -> Self;
    /// Records a request (subscription changes, ACK or NACK); returns the Envoy's verdicts on
    /// earlier responses, for the cache.
    fn on_request(&mut self, request: Self::Request) -> Result<Vec<Verdict>, Status>;
    /// The responses that bring the Envoy from what it has to `snapshot`, in send order.
    fn push(&mut self, snapshot: &Snapshot) -> Vec<Self::Response>;
    /// Whether the requests since the last push may change what a push of the same snapshot
    /// sends (false after a mere ACK: the push would find nothing, after comparing every
    /// resource). Asked once per request; answering resets it.
    fn push_after_request(&mut self) -> bool {
        true
    }
}

/// What an Envoy said about one response.
#[derive(Debug)]
pub(super) enum Verdict {
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

/// What every stream keeps, whatever its protocol: whom it serves, its nonces, and whether the
/// Envoy rejected the latest clusters.
#[derive(Debug)]
pub(super) struct StreamCore {
    pub instance: String,
    pub node_id: String,
    pub metrics: Arc<ServerMetrics>,
    nonce: u64,
    /// The latest CDS response was rejected: its clusters will not be subscribed to.
    cds_nacked: bool,
}

impl StreamCore {
    pub fn new(instance: String, node_id: String, metrics: Arc<ServerMetrics>) -> Self {
        StreamCore {
            instance,
            node_id,
            metrics,
            nonce: 0,
            cds_nacked: false,
        }
    }

    /// Refuses a request that names no type.
    pub fn check_type_url(type_url: &str) -> Result<(), Status> {
        if type_url.is_empty() {
            return Err(Status::invalid_argument("xDS request without type_url"));
        }
        Ok(())
    }

    /// Records that the Envoy rejected the response `nonce` of `type_url`: logged, counted by
    /// gateway and type; a rejected CDS response lifts the endpoint-subscription hold, since
    /// its clusters will never be subscribed to.
    pub fn on_nack(
        &mut self,
        type_url: &str,
        nonce: &str,
        error: &envoy_types::pb::google::rpc::Status,
    ) {
        warn!(
            instance = self.instance,
            node_id = self.node_id,
            type_url,
            nonce,
            error = %error.message,
            "Envoy rejected xDS configuration (NACK); it keeps its last good configuration"
        );
        self.metrics.count_nack(&self.instance, type_url);
        if type_url == type_url::CLUSTER {
            self.cds_nacked = true;
        }
    }

    /// Records a response about to be sent for `type_url` (`with_resources`: it carries
    /// resources, not only removals); returns its nonce.
    pub fn responding(&mut self, type_url: &str, protocol: &str, with_resources: bool) -> u64 {
        self.metrics.count_response(type_url, protocol);
        if type_url == type_url::CLUSTER && with_resources {
            // New clusters: their endpoint subscriptions are awaited again.
            self.cds_nacked = false;
        }
        self.nonce += 1;
        self.nonce
    }

    /// Whether a push must stop after CDS and EDS (see
    /// [`awaits_endpoint_subscriptions`]), unless the latest clusters were rejected.
    pub fn awaits_endpoints(
        &self,
        clusters: Option<&TypeResources>,
        eds: Option<&Subscription>,
    ) -> bool {
        !self.cds_nacked && awaits_endpoint_subscriptions(clusters, eds)
    }

    /// [`Self::awaits_endpoints`] over the clusters `clusters`.
    pub fn awaits_endpoints_of<'a>(
        &self,
        clusters: impl Iterator<Item = &'a VersionedResource>,
        eds: Option<&Subscription>,
    ) -> bool {
        !self.cds_nacked && awaits_endpoints_of(clusters, eds)
    }
}

/// The response half of a stream, as tonic reads it.
pub(super) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A response on its way to the transport, with the timer of the push it ends, if any.
pub(super) struct Outgoing<R> {
    item: Result<R, Status>,
    push: Option<PushTimer>,
}

/// The channel between a stream's task and the transport: a push timer travels with the last
/// response of its push and is observed when the transport takes that response.
pub(super) fn response_channel<R: Send + 'static>() -> (mpsc::Sender<Outgoing<R>>, ResponseStream<R>)
{
    let (tx, rx) = mpsc::channel::<Outgoing<R>>(RESPONSE_BUFFER);
    let stream = ReceiverStream::new(rx).map(|outgoing| {
        if let Some(timer) = outgoing.push {
            timer.observe();
        }
        outgoing.item
    });
    (tx, Box::pin(stream))
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

/// A stream's task: reads the first request, authorizes its `node.cluster`, then drives the
/// stream until it ends.
pub(super) async fn run_stream<P: Protocol>(
    service: AdsService,
    peer: PeerIdentity,
    mut inbound: Streaming<P::Request>,
    tx: mpsc::Sender<Outgoing<P::Response>>,
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
        let status = Status::invalid_argument(
            "the first xDS request must carry node.cluster (<namespace>/<gateway>)",
        );
        let _ = tx.send(Outgoing::error(status)).await;
        return;
    };
    let instance = node.cluster.clone();
    let node_id = node.id.clone();
    if let Err(status) = authorize(&peer, &instance) {
        warn!(%instance, node_id, peer = ?peer.remote_addr, %status, "xDS stream refused");
        service.metrics.count_refusal(&status);
        let _ = tx.send(Outgoing::error(status)).await;
        return;
    }

    info!(%instance, node_id, protocol = P::NAME, peer = ?peer.remote_addr, "xDS stream opened");
    let open = service.metrics.stream_opened(&instance, P::NAME);
    let mut snapshots = service.cache.subscribe(&instance);
    let mut state = P::new(StreamCore::new(
        instance.clone(),
        node_id.clone(),
        service.metrics.clone(),
    ));
    let mut wire = Wire {
        cache: &service.cache,
        metrics: &service.metrics,
        instance: &instance,
        node_id: &node_id,
        snapshots: &mut snapshots,
        tx: &tx,
        shutdown: &mut shutdown,
    };
    if let Err(status) = wire.drive(&mut state, first, &mut inbound).await {
        warn!(%instance, node_id, %status, "xDS stream ended with an error");
        let _ = tx.send(Outgoing::error(status)).await;
    }
    drop(open);
    drop(snapshots);
    service.cache.prune(&instance);
    info!(%instance, node_id, protocol = P::NAME, "xDS stream closed");
}

impl<R> Outgoing<R> {
    fn error(status: Status) -> Self {
        Outgoing {
            item: Err(status),
            push: None,
        }
    }
}

/// What a stream reads from and writes to, besides its requests.
struct Wire<'a, R> {
    cache: &'a Cache,
    metrics: &'a ServerMetrics,
    instance: &'a str,
    node_id: &'a str,
    snapshots: &'a mut SnapshotReceiver,
    tx: &'a mpsc::Sender<Outgoing<R>>,
    shutdown: &'a mut watch::Receiver<bool>,
}

impl<R: Send> Wire<'_, R> {
    /// The stream loop: apply requests, push on snapshot changes, stop on shutdown or hang-up.
    async fn drive<P: Protocol<Response = R>>(
        &mut self,
        state: &mut P,
        first: P::Request,
        inbound: &mut Streaming<P::Request>,
    ) -> Result<(), Status> {
        let mut next = Some(first);
        loop {
            if let Some(request) = next.take() {
                if let Some(node) = P::node(&request)
                    && !node.cluster.is_empty()
                    && node.cluster != self.instance
                {
                    return Err(Status::invalid_argument(
                        "node.cluster must not change within a stream",
                    ));
                }
                let verdicts = state.on_request(request)?;
                // Applied before reading the snapshot: a NACK can change what is served.
                record_verdicts(self.cache, self.instance, self.node_id, verdicts);
                // A snapshot that arrived meanwhile is new to the stream.
                let fresh = self.snapshots.has_changed().unwrap_or(false);
                let wanted = state.push_after_request();
                if (fresh || wanted) && !self.push(state, fresh).await {
                    return Ok(());
                }
            }
            tokio::select! {
                biased;
                () = shutdown_signalled(self.shutdown) => return Ok(()),
                message = inbound.message() => match message {
                    Ok(Some(request)) => next = Some(request),
                    Ok(None) => return Ok(()),
                    Err(status) => {
                        debug!(instance = self.instance, %status, "xDS stream receive failed");
                        return Ok(());
                    }
                },
                changed = self.snapshots.changed() => {
                    if changed.is_err() || !self.push(state, true).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Sends what brings the Envoy to the served snapshot; timed if `fresh` (a snapshot the
    /// stream had not seen). `None` (the instance was removed): the Envoy keeps its last
    /// configuration. False if the stream is gone or the server is shutting down.
    async fn push<P: Protocol<Response = R>>(&mut self, state: &mut P, fresh: bool) -> bool {
        let timer = fresh.then(|| self.metrics.push_timer(self.instance));
        let snapshot = self.snapshots.borrow_and_update().clone();
        match snapshot {
            Some(snapshot) => self.send_all(state.push(&snapshot), timer).await,
            None => true,
        }
    }

    /// Sends responses in order, the push timer with the last; false if the stream is gone or
    /// the server is shutting down.
    async fn send_all(&mut self, responses: Vec<R>, mut timer: Option<PushTimer>) -> bool {
        let last = responses.len().saturating_sub(1);
        for (i, response) in responses.into_iter().enumerate() {
            let outgoing = Outgoing {
                item: Ok(response),
                push: if i == last { timer.take() } else { None },
            };
            tokio::select! {
                biased;
                () = shutdown_signalled(self.shutdown) => return false,
                sent = self.tx.send(outgoing) => if sent.is_err() {
                    return false;
                },
            }
        }
        true
    }
}

/// Completes when the server shuts down (or is gone).
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}
