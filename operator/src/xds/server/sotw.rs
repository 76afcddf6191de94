//! State of the world (`StreamAggregatedResources`): every response carries all the resources
//! of its type the Envoy subscribes to.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tonic::Status;
use tracing::debug;

use super::ordering::{
    ADD_ORDER, Subscription, WILDCARD, after_endpoints, legacy_wildcard, ordered,
};
use super::stream::{Protocol, StreamCore, Verdict};
use crate::xds::cache::{Snapshot, TypeResources, hash_versions, type_url};

/// What a SotW stream sent last for one type.
#[derive(Debug)]
struct SotwSent {
    version: String,
    resources: TypeResources,
}

#[derive(Debug, Default)]
struct SotwType {
    subscription: Subscription,
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
pub(super) struct SotwStream {
    pub(super) core: StreamCore,
    types: BTreeMap<String, SotwType>,
}

impl SotwStream {
    /// A response for `type_url` with `content`, unless the Envoy already has exactly that.
    fn respond(&mut self, type_url: &str, content: TypeResources) -> Option<DiscoveryResponse> {
        let version = hash_versions(content.values().map(|r| (type_url, &*r.name, &*r.version)));
        let state = self.types.get_mut(type_url)?;
        if !state.needs_response && state.sent.as_ref().is_some_and(|s| s.version == version) {
            return None;
        }
        let nonce = self
            .core
            .responding(type_url, Self::NAME, !content.is_empty())
            .to_string();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: content.values().map(|r| r.to_any()).collect(),
            type_url: type_url.to_owned(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        state.needs_response = false;
        state.last_nonce = Some(nonce);
        state.judged = false;
        state.sent = Some(SotwSent {
            version,
            resources: content,
        });
        Some(response)
    }

    /// Whether the push waits for endpoint subscriptions; the clusters are those last sent.
    fn awaits_endpoints(&self) -> bool {
        let clusters = self
            .types
            .get(type_url::CLUSTER)
            .and_then(|s| s.sent.as_ref())
            .map(|s| &s.resources);
        let eds = self.types.get(type_url::ENDPOINT).map(|e| &e.subscription);
        self.core.awaits_endpoints(clusters, eds)
    }

    /// The Envoy's verdict on the latest response of a type, if this request gives one:
    /// Envoy reports the version it runs, the response's version if it accepted it.
    fn judge(state: &mut SotwType, request: &DiscoveryRequest) -> Option<Verdict> {
        if state.judged {
            return None;
        }
        let sent = state.sent.as_ref()?;
        if let Some(error) = &request.error_detail {
            state.judged = true;
            return Some(Verdict::Nack {
                type_url: request.type_url.clone(),
                version: sent.version.clone(),
                error: error.message.clone(),
                resources: sent.resources.values().cloned().collect(),
            });
        }
        if request.version_info == sent.version {
            state.judged = true;
            return Some(Verdict::Ack {
                type_url: request.type_url.clone(),
                resources: sent.resources.values().cloned().collect(),
                removed: Vec::new(),
                // Wildcard responses hold every resource of the type.
                complete: state.subscription.wildcard,
            });
        }
        None
    }
}

impl Protocol for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "sotw";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(core: StreamCore) -> Self {
        SotwStream {
            core,
            types: BTreeMap::new(),
        }
    }

    fn on_request(&mut self, request: DiscoveryRequest) -> Result<Vec<Verdict>, Status> {
        StreamCore::check_type_url(&request.type_url)?;
        let mut verdicts = Vec::new();
        let state = self.types.entry(request.type_url.clone()).or_default();
        if request.response_nonce.is_empty() {
            // A new subscription (or a reconnect): always answered.
            state.needs_response = true;
        } else {
            if state.last_nonce.as_deref() != Some(request.response_nonce.as_str()) {
                debug!(
                    instance = self.core.instance,
                    type_url = request.type_url,
                    nonce = request.response_nonce,
                    "ignoring SotW request with a stale nonce"
                );
                return Ok(verdicts);
            }
            verdicts.extend(Self::judge(state, &request));
            if let Some(error) = &request.error_detail {
                self.core
                    .on_nack(&request.type_url, &request.response_nonce, error);
            }
        }
        let wildcard = request.resource_names.iter().any(|n| n == WILDCARD)
            || (request.resource_names.is_empty() && legacy_wildcard(&request.type_url));
        let names: BTreeSet<String> = request
            .resource_names
            .into_iter()
            .filter(|n| n != WILDCARD)
            .collect();
        let subscription = Subscription { wildcard, names };
        if subscription != state.subscription {
            state.needs_response = true;
        }
        state.subscription = subscription;
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
            let mut content = state.subscription.select(snapshot.resources(&type_url));
            // A cluster left out of a CDS response is deleted: keep removed ones until the
            // listeners and routes that stopped using them have been sent.
            if type_url == type_url::CLUSTER
                && let Some(sent) = &state.sent
            {
                let before = content.len();
                for (name, resource) in &sent.resources {
                    if !content.contains_key(name) {
                        content.insert(name.clone(), resource.clone());
                    }
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
            let content = state.subscription.select(snapshot.resources(&type_url));
            responses.extend(self.respond(&type_url, content));
        }
        responses
    }
}
