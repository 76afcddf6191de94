//! The indexed, immutable view of every object the translation reads. Built by a source (kube
//! watches or a manifest directory); read by `dag::build`. No I/O here.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

pub mod slim;

use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};

mod changes;
mod intern;
mod live;
mod pmap;
pub mod status_only;
mod traefik;

pub use changes::{ChangeSet, Kind};
pub use intern::KeyPart;
pub use live::LiveSnapshot;
pub use pmap::PMap;
pub use traefik::{
    TraefikKind, TraefikMiddleware, TraefikObjects, TraefikRoute, TraefikServiceObj,
    TraefikTcpRoute, TraefikTlsOption, TraefikTlsStore, TraefikTransport, traefik_key,
};

/// Namespace and name of an object; orders by namespace, then name.
///
/// Both are shared strings: the many copies of a key (the snapshot's map, the object's own
/// record, the DAG's groups, claims and dependency index, statuses) are pointers to one
/// allocation, not copies of it; and keys made apart from each other share their equal parts
/// (a namespace is held once, not once per object in it: see `intern`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl serde::Serialize for ObjKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("ObjKey", 2)?;
        s.serialize_field("namespace", &*self.namespace)?;
        s.serialize_field("name", &*self.name)?;
        s.end()
    }
}

impl Default for ObjKey {
    fn default() -> Self {
        Self::new("", "")
    }
}

impl ObjKey {
    pub fn new(namespace: impl KeyPart, name: impl KeyPart) -> Self {
        Self {
            namespace: intern::intern(namespace),
            name: intern::intern(name),
        }
    }

    /// Key of a namespaced object; objects without a namespace are in `default`.
    pub fn of<K: ResourceExt>(obj: &K) -> Self {
        // As `namespace()` and `name_any()`, without copying either first.
        let meta = obj.meta();
        let name = meta.name.as_deref().or(meta.generate_name.as_deref());
        Self::new(
            meta.namespace.as_deref().unwrap_or("default"),
            name.unwrap_or_default(),
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

/// Every object the translation reads, keyed by namespace/name. Objects are shared (`Arc`) and
/// the maps are persistent ([`PMap`]): a clone of a snapshot is a few pointer copies, and a
/// snapshot updated by one object ([`LiveSnapshot`]) shares every other object, and every map
/// node off the path to it, with the one before.
///
/// The maps are read directly; they are written only through [`Self::apply`] and
/// [`Self::remove`] (or a [`LiveSnapshot`]), which keep the indexes ([`Self::slices_of`],
/// [`Self::delegations_of`]) in step. Equality compares objects and indexes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterSnapshot {
    pub gateways: ObjMap<Gateway>,
    pub ingress_routes: ObjMap<IngressRoute>,
    pub delegations: ObjMap<TLSCertificateDelegation>,
    /// Services, Endpoints, EndpointSlices and Secrets as the DAG reads them ([`slim`]), not
    /// as decoded.
    pub services: ObjMap<slim::Service>,
    pub endpoints: ObjMap<slim::Endpoints>,
    pub endpoint_slices: ObjMap<slim::EndpointSlice>,
    pub secrets: ObjMap<slim::Secret>,
    /// Documents that are, or may be, Gateways and did not load (`file: document N (…)`).
    /// While any is listed the snapshot counts as having Gateways: the open default instance is
    /// never used in their place.
    pub unloaded_gateways: Vec<String>,
    /// IngressRoutes that are stored but do not decode (a cluster's older, schema-less CRD let
    /// anything in): each is `invalid` with the decoder's message; nothing else is held up.
    pub undecodable_routes: PMap<ObjKey, UndecodableRoute>,
    /// Traefik IngressRoutes (both API groups), decoded or not.
    pub traefik_routes: TraefikObjects<crate::api::traefik::IngressRoute>,
    /// Traefik Middlewares (both API groups), decoded or not.
    pub traefik_middlewares: TraefikObjects<crate::api::traefik::Middleware>,
    /// Traefik IngressRouteTCPs (both API groups), decoded or not.
    pub traefik_tcp_routes: TraefikObjects<crate::api::traefik::IngressRouteTCP>,
    /// Traefik TLSOptions (both API groups), decoded or not.
    pub traefik_tls_options: TraefikObjects<crate::api::traefik::TLSOption>,
    /// Traefik TLSStores (both API groups), decoded or not.
    pub traefik_tls_stores: TraefikObjects<crate::api::traefik::TLSStore>,
    /// TraefikServices (both API groups), decoded or not.
    pub traefik_services: TraefikObjects<crate::api::traefik::TraefikService>,
    /// Traefik ServersTransports (both API groups), decoded or not.
    pub traefik_transports: TraefikObjects<crate::api::traefik::ServersTransport>,
    /// EndpointSlices by the Service their `kubernetes.io/service-name` label names.
    slices_by_service: Index,
    /// TLSCertificateDelegations by the Secret they delegate (`namespace/secretName`).
    delegations_by_secret: Index,
}

/// The objects of one kind, by namespace/name.
pub type ObjMap<T> = PMap<ObjKey, Arc<T>>;

/// Objects (values) by the key they point at.
type Index = PMap<ObjKey, PMap<ObjKey, ()>>;

/// What is known of an IngressRoute that does not decode.
#[derive(Clone, Debug, PartialEq)]
pub struct UndecodableRoute {
    pub metadata: kube::api::ObjectMeta,
    /// The decoder's message, field path first.
    pub error: String,
    /// Its stored status, when that part decodes.
    pub status: Option<crate::api::ingressroute::IngressRouteStatus>,
}

/// Any object a snapshot holds, as decoded (Services, Endpoints, EndpointSlices and Secrets are
/// held in their [`slim`] form: see [`SharedObject`]).
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
    TraefikTcpRoute(TraefikTcpRoute),
    TraefikTlsOption(TraefikTlsOption),
    TraefikTlsStore(TraefikTlsStore),
    TraefikService(TraefikServiceObj),
    TraefikTransport(TraefikTransport),
}

/// Any object a snapshot holds, as it holds it, shared with whoever else holds it (the
/// loader's parsed files).
#[derive(Clone, Debug)]
pub enum SharedObject {
    Gateway(Arc<Gateway>),
    IngressRoute(Arc<IngressRoute>),
    Delegation(Arc<TLSCertificateDelegation>),
    Service(Arc<slim::Service>),
    Endpoints(Arc<slim::Endpoints>),
    EndpointSlice(Arc<slim::EndpointSlice>),
    Secret(Arc<slim::Secret>),
    TraefikRoute(Arc<TraefikRoute>),
    TraefikMiddleware(Arc<TraefikMiddleware>),
    TraefikTcpRoute(Arc<TraefikTcpRoute>),
    TraefikTlsOption(Arc<TraefikTlsOption>),
    TraefikTlsStore(Arc<TraefikTlsStore>),
    TraefikService(Arc<TraefikServiceObj>),
    TraefikTransport(Arc<TraefikTransport>),
}

impl From<Object> for SharedObject {
    fn from(obj: Object) -> Self {
        match obj {
            Object::Gateway(o) => Self::Gateway(Arc::new(o)),
            Object::IngressRoute(o) => Self::IngressRoute(Arc::new(o)),
            Object::Delegation(o) => Self::Delegation(Arc::new(o)),
            Object::Service(o) => Self::Service(Arc::new(o.into())),
            Object::Endpoints(o) => Self::Endpoints(Arc::new(o.into())),
            Object::EndpointSlice(o) => Self::EndpointSlice(Arc::new(o.into())),
            Object::Secret(o) => Self::Secret(Arc::new(o.into())),
            Object::TraefikRoute(o) => Self::TraefikRoute(Arc::new(o)),
            Object::TraefikMiddleware(o) => Self::TraefikMiddleware(Arc::new(o)),
            Object::TraefikTcpRoute(o) => Self::TraefikTcpRoute(Arc::new(o)),
            Object::TraefikTlsOption(o) => Self::TraefikTlsOption(Arc::new(o)),
            Object::TraefikTlsStore(o) => Self::TraefikTlsStore(Arc::new(o)),
            Object::TraefikService(o) => Self::TraefikService(Arc::new(o)),
            Object::TraefikTransport(o) => Self::TraefikTransport(Arc::new(o)),
        }
    }
}

impl Object {
    /// Kind, namespace and name.
    pub fn identity(&self) -> (Kind, ObjKey) {
        match self {
            Object::Gateway(o) => (Kind::Gateway, ObjKey::of(o)),
            Object::IngressRoute(o) => (Kind::IngressRoute, ObjKey::of(o)),
            Object::Delegation(o) => (Kind::Delegation, ObjKey::of(o)),
            Object::Service(o) => (Kind::Service, ObjKey::of(o)),
            Object::Endpoints(o) => (Kind::Endpoints, ObjKey::of(o)),
            Object::EndpointSlice(o) => (Kind::EndpointSlice, ObjKey::of(o)),
            Object::Secret(o) => (Kind::Secret, ObjKey::of(o)),
            Object::TraefikRoute(o) => (
                Kind::Traefik(TraefikKind::IngressRoute, o.group),
                traefik_key(o),
            ),
            Object::TraefikMiddleware(o) => (
                Kind::Traefik(TraefikKind::Middleware, o.group),
                traefik_key(o),
            ),
            Object::TraefikTcpRoute(o) => (
                Kind::Traefik(TraefikKind::IngressRouteTcp, o.group),
                traefik_key(o),
            ),
            Object::TraefikTlsOption(o) => (
                Kind::Traefik(TraefikKind::TlsOption, o.group),
                traefik_key(o),
            ),
            Object::TraefikTlsStore(o) => (
                Kind::Traefik(TraefikKind::TlsStore, o.group),
                traefik_key(o),
            ),
            Object::TraefikService(o) => (
                Kind::Traefik(TraefikKind::TraefikService, o.group),
                traefik_key(o),
            ),
            Object::TraefikTransport(o) => (
                Kind::Traefik(TraefikKind::ServersTransport, o.group),
                traefik_key(o),
            ),
        }
    }
}

impl SharedObject {
    /// Kind, namespace and name.
    pub fn identity(&self) -> (Kind, ObjKey) {
        (self.kind(), self.key())
    }

    pub fn kind(&self) -> Kind {
        match self {
            SharedObject::Gateway(_) => Kind::Gateway,
            SharedObject::IngressRoute(_) => Kind::IngressRoute,
            SharedObject::Delegation(_) => Kind::Delegation,
            SharedObject::Service(_) => Kind::Service,
            SharedObject::Endpoints(_) => Kind::Endpoints,
            SharedObject::EndpointSlice(_) => Kind::EndpointSlice,
            SharedObject::Secret(_) => Kind::Secret,
            SharedObject::TraefikRoute(o) => Kind::Traefik(TraefikKind::IngressRoute, o.group),
            SharedObject::TraefikMiddleware(o) => Kind::Traefik(TraefikKind::Middleware, o.group),
            SharedObject::TraefikTcpRoute(o) => {
                Kind::Traefik(TraefikKind::IngressRouteTcp, o.group)
            }
            SharedObject::TraefikTlsOption(o) => Kind::Traefik(TraefikKind::TlsOption, o.group),
            SharedObject::TraefikTlsStore(o) => Kind::Traefik(TraefikKind::TlsStore, o.group),
            SharedObject::TraefikService(o) => Kind::Traefik(TraefikKind::TraefikService, o.group),
            SharedObject::TraefikTransport(o) => {
                Kind::Traefik(TraefikKind::ServersTransport, o.group)
            }
        }
    }

    pub fn key(&self) -> ObjKey {
        match self {
            SharedObject::Gateway(o) => ObjKey::of(&**o),
            SharedObject::IngressRoute(o) => ObjKey::of(&**o),
            SharedObject::Delegation(o) => ObjKey::of(&**o),
            SharedObject::Service(o) => o.key.clone(),
            SharedObject::Endpoints(o) => o.key.clone(),
            SharedObject::EndpointSlice(o) => o.key.clone(),
            SharedObject::Secret(o) => o.key.clone(),
            SharedObject::TraefikRoute(o) => traefik_key(o),
            SharedObject::TraefikMiddleware(o) => traefik_key(o),
            SharedObject::TraefikTcpRoute(o) => traefik_key(o),
            SharedObject::TraefikTlsOption(o) => traefik_key(o),
            SharedObject::TraefikTlsStore(o) => traefik_key(o),
            SharedObject::TraefikService(o) => traefik_key(o),
            SharedObject::TraefikTransport(o) => traefik_key(o),
        }
    }
}

/// The Service an EndpointSlice belongs to, by its label.
pub fn slice_service(slice: &slim::EndpointSlice) -> Option<ObjKey> {
    let name = slice.service_name.as_ref()?;
    Some(ObjKey::new(&slice.key.namespace, name))
}

/// The Secrets a TLSCertificateDelegation delegates (in its own namespace).
pub fn delegated_secrets(d: &TLSCertificateDelegation) -> impl Iterator<Item = ObjKey> + '_ {
    let namespace = ObjKey::of(d).namespace;
    d.spec
        .delegations
        .iter()
        .map(move |s| ObjKey::new(&namespace, &s.secret_name))
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
                    index(&mut self.delegations_by_secret, secret, key.clone());
                }
                self.delegations.insert(key, o);
            }
            SharedObject::Service(o) => {
                self.services.insert(o.key.clone(), o);
            }
            SharedObject::Endpoints(o) => {
                self.endpoints.insert(o.key.clone(), o);
            }
            SharedObject::EndpointSlice(o) => {
                let key = o.key.clone();
                self.unindex_slice(&key);
                if let Some(svc) = slice_service(&o) {
                    index(&mut self.slices_by_service, svc, key.clone());
                }
                self.endpoint_slices.insert(key, o);
            }
            SharedObject::Secret(o) => {
                self.secrets.insert(o.key.clone(), o);
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
            SharedObject::TraefikTcpRoute(o) => {
                let group = o.group;
                self.traefik_tcp_routes
                    .group_mut(group)
                    .insert(traefik_key(&o), o);
            }
            SharedObject::TraefikTlsOption(o) => {
                let group = o.group;
                self.traefik_tls_options
                    .group_mut(group)
                    .insert(traefik_key(&o), o);
            }
            SharedObject::TraefikTlsStore(o) => {
                let group = o.group;
                self.traefik_tls_stores
                    .group_mut(group)
                    .insert(traefik_key(&o), o);
            }
            SharedObject::TraefikService(o) => {
                let group = o.group;
                self.traefik_services
                    .group_mut(group)
                    .insert(traefik_key(&o), o);
            }
            SharedObject::TraefikTransport(o) => {
                let group = o.group;
                self.traefik_transports
                    .group_mut(group)
                    .insert(traefik_key(&o), o);
            }
        }
    }

    /// Removes an object of `kind`; returns whether there was one.
    pub fn remove(&mut self, kind: Kind, key: &ObjKey) -> bool {
        match kind {
            Kind::Gateway => self.gateways.remove(key),
            Kind::IngressRoute => self.ingress_routes.remove(key),
            Kind::Delegation => {
                self.unindex_delegation(key);
                self.delegations.remove(key)
            }
            Kind::Service => self.services.remove(key),
            Kind::Endpoints => self.endpoints.remove(key),
            Kind::EndpointSlice => {
                self.unindex_slice(key);
                self.endpoint_slices.remove(key)
            }
            Kind::Secret => self.secrets.remove(key),
            Kind::UndecodableRoute => self.undecodable_routes.remove(key),
            Kind::Traefik(TraefikKind::IngressRoute, group) => {
                self.traefik_routes.group_mut(group).remove(key)
            }
            Kind::Traefik(TraefikKind::Middleware, group) => {
                self.traefik_middlewares.group_mut(group).remove(key)
            }
            Kind::Traefik(TraefikKind::IngressRouteTcp, group) => {
                self.traefik_tcp_routes.group_mut(group).remove(key)
            }
            Kind::Traefik(TraefikKind::TlsOption, group) => {
                self.traefik_tls_options.group_mut(group).remove(key)
            }
            Kind::Traefik(TraefikKind::TlsStore, group) => {
                self.traefik_tls_stores.group_mut(group).remove(key)
            }
            Kind::Traefik(TraefikKind::TraefikService, group) => {
                self.traefik_services.group_mut(group).remove(key)
            }
            Kind::Traefik(TraefikKind::ServersTransport, group) => {
                self.traefik_transports.group_mut(group).remove(key)
            }
        }
    }

    fn unindex_slice(&mut self, key: &ObjKey) {
        if let Some(svc) = self.endpoint_slices.get(key).and_then(|s| slice_service(s)) {
            unindex(&mut self.slices_by_service, &svc, key);
        }
    }

    fn unindex_delegation(&mut self, key: &ObjKey) {
        let Some(old) = self.delegations.get(key).cloned() else {
            return;
        };
        for secret in delegated_secrets(&old) {
            unindex(&mut self.delegations_by_secret, &secret, key);
        }
    }

    /// EndpointSlices of one Service, in name order (from the index: no scan).
    pub fn slices_of<'a>(
        &'a self,
        svc: &ObjKey,
    ) -> impl Iterator<Item = &'a slim::EndpointSlice> + 'a {
        self.slices_by_service
            .get(svc)
            .into_iter()
            .flat_map(PMap::keys)
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
            .flat_map(PMap::keys)
            .filter_map(|k| self.delegations.get(k).map(|d| &**d))
    }

    /// The value of `key` in a Secret's data, decoded.
    pub fn secret_data(&self, secret: &ObjKey, key: &str) -> Option<&[u8]> {
        let s = self.secrets.get(secret)?;
        s.data.as_ref()?.get(key).map(|b| b.0.as_slice())
    }
}

/// Records that `value` points at `target`.
fn index(index: &mut Index, target: ObjKey, value: ObjKey) {
    let mut set = index.get(&target).cloned().unwrap_or_default();
    set.insert(value, ());
    index.insert(target, set);
}

/// Forgets that `value` points at `target`; an empty entry goes.
fn unindex(index: &mut Index, target: &ObjKey, value: &ObjKey) {
    let Some(mut set) = index.get(target).cloned() else {
        return;
    };
    set.remove(value);
    if set.is_empty() {
        index.remove(target);
    } else {
        index.insert(target.clone(), set);
    }
}
