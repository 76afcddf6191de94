//! Counters, gauges and the push latency histogram of the ADS server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus::core::Collector as _;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use tonic::Status;

use super::ordering::ADD_ORDER;

/// Buckets of the push latency histogram, in seconds: a push is normally sub-millisecond to a
/// few milliseconds; a slow Envoy (full stream buffer) stretches it to seconds.
const PUSH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Counters, gauges and histograms of the ADS server.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    nacks: IntCounterVec,
    responses: IntCounterVec,
    streams: IntGaugeVec,
    /// Open streams by (gateway, protocol), the source of `streams`: a series is removed when
    /// its count falls to zero, so node clusters of closed streams do not linger.
    open: Arc<Mutex<BTreeMap<(String, &'static str), i64>>>,
    refused: IntCounterVec,
    push_seconds: HistogramVec,
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
                    "Open xDS streams, by gateway (node.cluster) and protocol (sotw, delta)",
                ),
                &["gateway", "protocol"],
            )?,
            open: Arc::default(),
            refused: IntCounterVec::new(
                Opts::new(
                    "sluice_xds_refused_streams_total",
                    "xDS streams refused, by reason (unauthenticated: the client certificate \
                     names no Gateway; permission_denied: it names another Gateway than the \
                     requested node.cluster)",
                ),
                &["reason"],
            )?,
            push_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "sluice_xds_push_duration_seconds",
                    "Time from a stream learning that a new snapshot of its Gateway is served \
                     to the last response of the push it causes being handed to the gRPC \
                     transport, by gateway",
                )
                .buckets(PUSH_BUCKETS.to_vec()),
                &["gateway"],
            )?,
        })
    }

    /// Registers every metric with a registry.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.nacks.clone()))?;
        registry.register(Box::new(self.responses.clone()))?;
        registry.register(Box::new(self.streams.clone()))?;
        registry.register(Box::new(self.refused.clone()))?;
        registry.register(Box::new(self.push_seconds.clone()))?;
        Ok(())
    }

    /// NACKs received so far for a type URL, over all gateways.
    pub fn nacks(&self, type_url: &str) -> u64 {
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

    /// Streams currently open for a protocol (`sotw` or `delta`), over all gateways.
    pub fn open_streams(&self, protocol: &str) -> i64 {
        self.lock_open()
            .iter()
            .filter(|((_, p), _)| *p == protocol)
            .map(|(_, n)| n)
            .sum()
    }

    /// Streams currently open for one gateway (`<namespace>/<name>`) and protocol.
    pub fn gateway_streams(&self, gateway: &str, protocol: &str) -> i64 {
        self.lock_open()
            .get(&(gateway.to_owned(), protocol))
            .copied()
            .unwrap_or(0)
    }

    /// Pushes timed so far for one gateway.
    pub fn pushes(&self, gateway: &str) -> u64 {
        self.push_seconds
            .with_label_values(&[gateway])
            .get_sample_count()
    }

    /// Streams refused so far for a reason (`unauthenticated`, `permission_denied`).
    pub fn refused(&self, reason: &str) -> u64 {
        self.refused.with_label_values(&[reason]).get()
    }

    pub(super) fn count_refusal(&self, status: &Status) {
        let reason = match status.code() {
            tonic::Code::Unauthenticated => "unauthenticated",
            tonic::Code::PermissionDenied => "permission_denied",
            _ => "other",
        };
        self.refused.with_label_values(&[reason]).inc();
    }

    pub(super) fn count_nack(&self, gateway: &str, type_url: &str) {
        self.nacks
            .with_label_values(&[gateway, metric_type(type_url)])
            .inc();
    }

    pub(super) fn count_response(&self, type_url: &str, protocol: &str) {
        self.responses
            .with_label_values(&[metric_type(type_url), protocol])
            .inc();
    }

    /// Counts a stream of `gateway` as open until the returned guard is dropped.
    pub(super) fn stream_opened(&self, gateway: &str, protocol: &'static str) -> OpenStream {
        self.add_stream(gateway, protocol, 1);
        OpenStream {
            metrics: self.clone(),
            gateway: gateway.to_owned(),
            protocol,
        }
    }

    /// A timer for a push of `gateway` that starts now; see [`PushTimer`].
    pub(super) fn push_timer(&self, gateway: &str) -> PushTimer {
        PushTimer {
            histogram: self.push_seconds.with_label_values(&[gateway]),
            started: Instant::now(),
        }
    }

    fn add_stream(&self, gateway: &str, protocol: &'static str, delta: i64) {
        let mut open = self.lock_open();
        let key = (gateway.to_owned(), protocol);
        let count = open.entry(key.clone()).or_insert(0);
        *count += delta;
        if *count > 0 {
            self.streams
                .with_label_values(&[gateway, protocol])
                .set(*count);
        } else {
            open.remove(&key);
            // Absent when it never was set: nothing to remove then.
            let _ = self.streams.remove_label_values(&[gateway, protocol]);
        }
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, &'static str), i64>> {
        // A panic while holding the lock leaves the counts consistent (each update is one
        // map operation), so a poisoned lock is used as is.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An open stream, counted in `sluice_xds_streams` until dropped.
#[derive(Debug)]
pub(super) struct OpenStream {
    metrics: ServerMetrics,
    gateway: String,
    protocol: &'static str,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.metrics.add_stream(&self.gateway, self.protocol, -1);
    }
}

/// Measures one push: started when the stream learnt of a new snapshot, observed when the
/// last response of the push leaves for the transport.
#[derive(Debug)]
pub(super) struct PushTimer {
    histogram: Histogram,
    started: Instant,
}

impl PushTimer {
    pub fn observe(self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// The type URL as a metric label: the served types, or `other`, so clients cannot grow the
/// label set.
pub(super) fn metric_type(type_url: &str) -> &str {
    if ADD_ORDER.contains(&type_url) {
        type_url
    } else {
        "other"
    }
}
