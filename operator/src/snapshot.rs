//! The indexed, immutable view of every object the translation reads. Built by a source (kube
//! reflectors or a manifest directory); read by `dag::build`. No I/O here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};

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

/// Every object the translation reads, keyed by namespace/name.
#[derive(Clone, Debug, Default)]
pub struct ClusterSnapshot {
    pub gateways: BTreeMap<ObjKey, Gateway>,
    pub ingress_routes: BTreeMap<ObjKey, IngressRoute>,
    pub delegations: BTreeMap<ObjKey, TLSCertificateDelegation>,
    pub services: BTreeMap<ObjKey, Service>,
    #[allow(deprecated)]
    pub endpoints: BTreeMap<ObjKey, Endpoints>,
    pub endpoint_slices: BTreeMap<ObjKey, EndpointSlice>,
    pub secrets: BTreeMap<ObjKey, Secret>,
    /// Documents that are, or may be, Gateways and did not load (`file: document N (…)`).
    /// While any is listed the snapshot counts as having Gateways: the open default instance is
    /// never used in their place.
    pub unloaded_gateways: Vec<String>,
    /// IngressRoutes that are stored but do not decode (a cluster's older, schema-less CRD let
    /// anything in): each is `invalid` with the decoder's message; nothing else is held up.
    pub undecodable_routes: BTreeMap<ObjKey, UndecodableRoute>,
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
}

impl ClusterSnapshot {
    /// Adds or replaces an object.
    pub fn apply(&mut self, obj: Object) {
        match obj {
            Object::Gateway(o) => {
                self.gateways.insert(ObjKey::of(&o), o);
            }
            Object::IngressRoute(o) => {
                self.ingress_routes.insert(ObjKey::of(&o), o);
            }
            Object::Delegation(o) => {
                self.delegations.insert(ObjKey::of(&o), o);
            }
            Object::Service(o) => {
                self.services.insert(ObjKey::of(&o), o);
            }
            Object::Endpoints(o) => {
                self.endpoints.insert(ObjKey::of(&o), o);
            }
            Object::EndpointSlice(o) => {
                self.endpoint_slices.insert(ObjKey::of(&o), o);
            }
            Object::Secret(o) => {
                self.secrets.insert(ObjKey::of(&o), o);
            }
        }
    }

    /// EndpointSlices of one Service, in name order.
    pub fn slices_of<'a>(
        &'a self,
        svc: &'a ObjKey,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.endpoint_slices
            .range(ObjKey::new(svc.namespace.clone(), String::new())..)
            .take_while(move |(k, _)| k.namespace == svc.namespace)
            .filter(move |(_, s)| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    == Some(&svc.name)
            })
            .map(|(_, s)| s)
    }

    /// The value of `key` in a Secret's data, decoded.
    pub fn secret_data(&self, secret: &ObjKey, key: &str) -> Option<&[u8]> {
        let s = self.secrets.get(secret)?;
        s.data.as_ref()?.get(key).map(|b| b.0.as_slice())
    }
}
