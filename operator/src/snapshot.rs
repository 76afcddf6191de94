//! The indexed, immutable view of every object the translation reads. Built by a source (kube
//! reflectors or a manifest directory); read by `dag::build`. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};

mod changes;
mod traefik;

pub use changes::{ChangeSet, Kind};
pub use traefik::{TraefikKind, TraefikMiddleware, TraefikObjects, TraefikRoute, traefik_key};

/// Namespace and name of an object; orders by namespace, then name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ObjKey {
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Key of a namespaced object; objects without a namespace are in `default`.
    pub fn of<K: ResourceExt>(obj: &K) -> Self {
        Self::new(
            obj.namespace().unwrap_or_else(|| "default".to_owned()),
            obj.name_any(),
        )
    }
}

impl fmt::Display for ObjKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Label on an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every object the translation reads, keyed by namespace/name. Objects are shared (`Arc`): a
/// snapshot taken from the reflector stores, or the next snapshot of a manifest directory, holds
/// the same allocations as the previous one for everything that did not change, and a clone of a
/// snapshot copies pointers, never objects.
///
/// The maps are read directly; they are written only through [`Self::apply`] and
/// [`Self::remove`], which keep the indexes ([`Self::slices_of`], [`Self::delegations_of`]) in
/// step.
#[derive(Clone, Debug, Default)]
pub struct ClusterSnapshot {
    pub gateways: BTreeMap<ObjKey, Arc<Gateway>>,
    pub ingress_routes: BTreeMap<ObjKey, Arc<IngressRoute>>,
    pub delegations: BTreeMap<ObjKey, Arc<TLSCertificateDelegation>>,
    pub services: BTreeMap<ObjKey, Arc<Service>>,
    #[allow(deprecated)]
    pub endpoints: BTreeMap<ObjKey, Arc<Endpoints>>,
    pub endpoint_slices: BTreeMap<ObjKey, Arc<EndpointSlice>>,
    pub secrets: BTreeMap<ObjKey, Arc<Secret>>,
    /// Documents that are, or may be, Gateways and did not load (`file: document N (…)`).
    /// While any is listed the snapshot counts as having Gateways: the open default instance is
    /// never used in their place.
    pub unloaded_gateways: Vec<String>,
    /// IngressRoutes that are stored but do not decode (a cluster's older, schema-less CRD let
    /// anything in): each is `invalid` with the decoder's message; nothing else is held up.
    pub undecodable_routes: BTreeMap<ObjKey, UndecodableRoute>,
    /// Traefik IngressRoutes (both API groups), decoded or not.
    pub traefik_routes: TraefikObjects<crate::api::traefik::IngressRoute>,
    /// Traefik Middlewares (both API groups), decoded or not.
    pub traefik_middlewares: TraefikObjects<crate::api::traefik::Middleware>,
    /// EndpointSlices by the Service their `kubernetes.io/service-name` label names.
    slices_by_service: BTreeMap<ObjKey, BTreeSet<ObjKey>>,
    /// TLSCertificateDelegations by the Secret they delegate (`namespace/secretName`).
    delegations_by_secret: BTreeMap<ObjKey, BTreeSet<ObjKey>>,
}

/// What is known of an IngressRoute that does not decode.
#[derive(Clone, Debug, PartialEq)]
pub struct UndecodableRoute {
    pub metadata: kube::api::ObjectMeta,
    /// The decoder's message, field path first.
    pub error: String,
    /// Its stored status, when that part decodes.
    pub status: Option<crate::api::ingressroute::IngressRouteStatus>,
}

/// Any object a snapshot holds.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    Gateway(Gateway),
    IngressRoute(IngressRoute),
    Delegation(TLSCertificateDelegation),
    Service(Service),
    #[allow(deprecated)]
    Endpoints(Endpoints),
    EndpointSlice(EndpointSlice),
    Secret(Secret),
    TraefikRoute(TraefikRoute),
    TraefikMiddleware(TraefikMiddleware),
}

/// Any object a snapshot holds, shared with whoever else holds it (a reflector store).
#[derive(Clone, Debug)]
pub enum SharedObject {
    Gateway(Arc<Gateway>),
    IngressRoute(Arc<IngressRoute>),
    Delegation(Arc<TLSCertificateDelegation>),
    Service(Arc<Service>),
    #[allow(deprecated)]
    Endpoints(Arc<Endpoints>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
    TraefikRoute(Arc<TraefikRoute>),
    TraefikMiddleware(Arc<TraefikMiddleware>),
}

impl From<Object> for SharedObject {
    fn from(obj: Object) -> Self {
        match obj {
            Object::Gateway(o) => Self::Gateway(Arc::new(o)),
            Object::IngressRoute(o) => Self::IngressRoute(Arc::new(o)),
            Object::Delegation(o) => Self::Delegation(Arc::new(o)),
            Object::Service(o) => Self::Service(Arc::new(o)),
            Object::Endpoints(o) => Self::Endpoints(Arc::new(o)),
            Object::EndpointSlice(o) => Self::EndpointSlice(Arc::new(o)),
            Object::Secret(o) => Self::Secret(Arc::new(o)),
            Object::TraefikRoute(o) => Self::TraefikRoute(Arc::new(o)),
            Object::TraefikMiddleware(o) => Self::TraefikMiddleware(Arc::new(o)),
        }
    }
}

/// The Service an EndpointSlice belongs to, by its label.
pub fn slice_service(slice: &EndpointSlice) -> Option<ObjKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ObjKey::new(ObjKey::of(slice).namespace, name.clone()))
}

/// The Secrets a TLSCertificateDelegation delegates (in its own namespace).
pub fn delegated_secrets(d: &TLSCertificateDelegation) -> impl Iterator<Item = ObjKey> + '_ {
    let namespace = ObjKey::of(d).namespace;
    d.spec
        .delegations
        .iter()
        .map(move |s| ObjKey::new(namespace.clone(), s.secret_name.clone()))
}

impl ClusterSnapshot {
    /// Adds or replaces an object.
    pub fn apply(&mut self, obj: Object) {
        self.apply_shared(obj.into());
    }

    /// Adds or replaces an object without copying it.
    pub fn apply_shared(&mut self, obj: SharedObject) {
        match obj {
            SharedObject::Gateway(o) => {
                self.gateways.insert(ObjKey::of(&*o), o);
            }
            SharedObject::IngressRoute(o) => {
                self.ingress_routes.insert(ObjKey::of(&*o), o);
            }
            SharedObject::Delegation(o) => {
                let key = ObjKey::of(&*o);
                self.unindex_delegation(&key);
                for secret in delegated_secrets(&o) {
                    self.delegations_by_secret
                        .entry(secret)
                        .or_default()
                        .insert(key.clone());
                }
                self.delegations.insert(key, o);
            }
            SharedObject::Service(o) => {
                self.services.insert(ObjKey::of(&*o), o);
            }
            SharedObject::Endpoints(o) => {
                self.endpoints.insert(ObjKey::of(&*o), o);
            }
            SharedObject::EndpointSlice(o) => {
                let key = ObjKey::of(&*o);
                self.unindex_slice(&key);
                if let Some(svc) = slice_service(&o) {
                    self.slices_by_service
                        .entry(svc)
                        .or_default()
                        .insert(key.clone());
                }
                self.endpoint_slices.insert(key, o);
            }
            SharedObject::Secret(o) => {
                self.secrets.insert(ObjKey::of(&*o), o);
            }
            SharedObject::TraefikRoute(o) => {
                let group = o.group;
                self.traefik_routes
                    .group_mut(group)
                    .insert(traefik_key(&o), o);
            }
            SharedObject::TraefikMiddleware(o) => {
                let group = o.group;
                self.traefik_middlewares
                    .group_mut(group)
                    .insert(traefik_key(&o), o);
            }
        }
    }

    /// Removes an object of `kind`; returns whether there was one.
    pub fn remove(&mut self, kind: Kind, key: &ObjKey) -> bool {
        match kind {
            Kind::Gateway => self.gateways.remove(key).is_some(),
            Kind::IngressRoute => self.ingress_routes.remove(key).is_some(),
            Kind::Delegation => {
                self.unindex_delegation(key);
                self.delegations.remove(key).is_some()
            }
            Kind::Service => self.services.remove(key).is_some(),
            Kind::Endpoints => self.endpoints.remove(key).is_some(),
            Kind::EndpointSlice => {
                self.unindex_slice(key);
                self.endpoint_slices.remove(key).is_some()
            }
            Kind::Secret => self.secrets.remove(key).is_some(),
            Kind::UndecodableRoute => self.undecodable_routes.remove(key).is_some(),
            Kind::Traefik(TraefikKind::IngressRoute, group) => {
                self.traefik_routes.group_mut(group).remove(key).is_some()
            }
            Kind::Traefik(TraefikKind::Middleware, group) => self
                .traefik_middlewares
                .group_mut(group)
                .remove(key)
                .is_some(),
        }
    }

    fn unindex_slice(&mut self, key: &ObjKey) {
        let Some(svc) = self.endpoint_slices.get(key).and_then(|s| slice_service(s)) else {
            return;
        };
        if let Some(set) = self.slices_by_service.get_mut(&svc) {
            set.remove(key);
            if set.is_empty() {
                self.slices_by_service.remove(&svc);
            }
        }
    }

    fn unindex_delegation(&mut self, key: &ObjKey) {
        let Some(old) = self.delegations.get(key).cloned() else {
            return;
        };
        for secret in delegated_secrets(&old) {
            if let Some(set) = self.delegations_by_secret.get_mut(&secret) {
                set.remove(key);
                if set.is_empty() {
                    self.delegations_by_secret.remove(&secret);
                }
            }
        }
    }

    /// EndpointSlices of one Service, in name order (from the index: no scan).
    pub fn slices_of<'a>(&'a self, svc: &ObjKey) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.slices_by_service
            .get(svc)
            .into_iter()
            .flatten()
            .filter_map(|k| self.endpoint_slices.get(k).map(|s| &**s))
    }

    /// TLSCertificateDelegations naming the Secret `secret`, in name order (from the index).
    pub fn delegations_of<'a>(
        &'a self,
        secret: &ObjKey,
    ) -> impl Iterator<Item = &'a TLSCertificateDelegation> + 'a {
        self.delegations_by_secret
            .get(secret)
            .into_iter()
            .flatten()
            .filter_map(|k| self.delegations.get(k).map(|d| &**d))
    }

    /// The value of `key` in a Secret's data, decoded.
    pub fn secret_data(&self, secret: &ObjKey, key: &str) -> Option<&[u8]> {
        let s = self.secrets.get(secret)?;
        s.data.as_ref()?.get(key).map(|b| b.0.as_slice())
    }
}
