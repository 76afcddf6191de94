//! Reflectors over the Kubernetes API: one watch per kind, shared by every Gateway instance. Each
//! event bumps a counter; consumers debounce and take a [`ClusterSnapshot`] of the stores.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};
use crate::snapshot::{ClusterSnapshot, Object};

/// Secret keys the translation reads; everything else is dropped before it is stored, so
/// unrelated credentials (service-account tokens, passwords) are never held in memory.
const SECRET_KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

/// Secret types never read: service-account tokens, and Helm's release records (large, and
/// numerous in clusters that use Helm). Filtered by the API server, so they are never received.
const IGNORED_SECRET_TYPES: [&str; 2] =
    ["kubernetes.io/service-account-token", "helm.sh/release.v1"];

/// The field selector leaving out [`IGNORED_SECRET_TYPES`].
pub fn secret_field_selector() -> String {
    IGNORED_SECRET_TYPES
        .iter()
        .map(|t| format!("type!={t}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Read handles of every watched kind.
#[derive(Clone)]
pub struct Stores {
    pub gateways: Store<Gateway>,
    pub ingress_routes: Store<IngressRoute>,
    pub delegations: Store<TLSCertificateDelegation>,
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    pub endpoint_slices: Store<EndpointSlice>,
    pub secrets: Store<Secret>,
}

impl Stores {
    /// Waits until every store has completed its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.gateways.wait_until_ready().await?;
        self.ingress_routes.wait_until_ready().await?;
        self.delegations.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.endpoints.wait_until_ready().await?;
        self.endpoint_slices.wait_until_ready().await?;
        self.secrets.wait_until_ready().await
    }

    /// An immutable copy of the current state.
    pub fn snapshot(&self) -> ClusterSnapshot {
        let mut snap = ClusterSnapshot::default();
        fn copy<K>(store: &Store<K>, snap: &mut ClusterSnapshot, wrap: fn(K) -> Object)
        where
            K: Resource + Clone + 'static,
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            for o in store.state() {
                snap.apply(wrap(Arc::unwrap_or_clone(o)));
            }
        }
        copy(&self.gateways, &mut snap, Object::Gateway);
        copy(&self.ingress_routes, &mut snap, Object::IngressRoute);
        copy(&self.delegations, &mut snap, Object::Delegation);
        copy(&self.services, &mut snap, Object::Service);
        copy(&self.endpoints, &mut snap, Object::Endpoints);
        copy(&self.endpoint_slices, &mut snap, Object::EndpointSlice);
        copy(&self.secrets, &mut snap, Object::Secret);
        snap
    }
}

/// Starts one reflector per kind. The returned receiver changes on every watch event.
pub fn start(client: &Client) -> (Stores, watch::Receiver<u64>) {
    let (tx, rx) = watch::channel(0u64);
    let tx = Arc::new(tx);
    let all = watcher::Config::default;
    let secrets = watcher::Config::default().fields(&secret_field_selector());
    let stores = Stores {
        gateways: reflect(Api::all(client.clone()), all(), tx.clone(), |_| {}),
        ingress_routes: reflect(Api::all(client.clone()), all(), tx.clone(), |_| {}),
        delegations: reflect(Api::all(client.clone()), all(), tx.clone(), |_| {}),
        services: reflect(Api::all(client.clone()), all(), tx.clone(), |_| {}),
        endpoints: reflect(Api::all(client.clone()), all(), tx.clone(), |_| {}),
        endpoint_slices: reflect(Api::all(client.clone()), all(), tx.clone(), |_| {}),
        secrets: reflect(Api::all(client.clone()), secrets, tx, strip_secret),
    };
    (stores, rx)
}

fn strip_secret(s: &mut Secret) {
    if let Some(data) = s.data.as_mut() {
        data.retain(|k, _| SECRET_KEYS.contains(&k.as_str()));
    }
    s.string_data = None;
    if let Some(meta) = s.metadata.annotations.as_mut() {
        // kubectl's last-applied annotation carries the whole object, data included.
        meta.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    s.metadata.managed_fields = None;
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: Arc<watch::Sender<u64>>,
    modify: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = watcher(api, config)
        .modify(move |o| {
            modify(o);
            o.meta_mut().managed_fields = None;
        })
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    changed.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
            }
        }
    });
    reader
}
