//! What the snapshot keeps of Services, Endpoints, EndpointSlices and Secrets: the fields the
//! DAG reads, shaped as in `k8s-openapi` (so readers use the same paths), and nothing else.
//!
//! A decoded `k8s-openapi` object has every optional field of its kind (an `ObjectMeta` alone
//! is about 400 bytes before any string), which at tens of thousands of Services and
//! EndpointSlices is most of the snapshot. Objects are decoded as before (so the loader's
//! warnings and errors do not change) and turned into these at once. An update that changes
//! only fields not kept (a resourceVersion, a selector, a status) is then equal to the object
//! held, and is no change.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;

use super::{ObjKey, SERVICE_NAME_LABEL};

/// Service annotation prefixes naming ports spoken as TLS, HTTP/2 or cleartext HTTP/2: the only
/// annotations of a Service the DAG reads, and the only ones kept.
pub const UPSTREAM_PROTOCOL_PREFIXES: [&str; 2] = [
    "contour.heptio.com/upstream-protocol.",
    "projectcontour.io/upstream-protocol.",
];

/// A Service: its ports, type, ExternalName and upstream-protocol annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    pub key: ObjKey,
    pub metadata: ServiceMeta,
    pub spec: Option<ServiceSpec>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceMeta {
    /// Only those starting with one of [`UPSTREAM_PROTOCOL_PREFIXES`].
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceSpec {
    pub ports: Option<Vec<ServicePort>>,
    pub type_: Option<String>,
    pub external_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: i32,
}

/// Endpoints: the ready addresses and the ports of each subset.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Endpoints {
    pub key: ObjKey,
    pub subsets: Option<Vec<EndpointSubset>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointSubset {
    pub addresses: Option<Vec<EndpointAddress>>,
    pub ports: Option<Vec<EndpointPort>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointAddress {
    pub ip: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: i32,
}

/// An EndpointSlice: its Service (label `kubernetes.io/service-name`), ports, and endpoints'
/// addresses and readiness.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointSlice {
    pub key: ObjKey,
    /// The value of its `kubernetes.io/service-name` label.
    pub service_name: Option<String>,
    pub ports: Option<Vec<SlicePort>>,
    pub endpoints: Vec<SliceEndpoint>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceEndpoint {
    pub addresses: Vec<String>,
    pub conditions: Option<EndpointConditions>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointConditions {
    pub ready: Option<bool>,
}

/// A Secret: its type and data (`stringData` already merged by the loader; a watched Secret
/// keeps only the keys the translation reads, see `source::kube`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Secret {
    pub key: ObjKey,
    pub type_: Option<String>,
    pub data: Option<BTreeMap<String, ByteString>>,
}

/// `v`'s elements mapped by `f`, in a vector of exactly their number. Not `into_iter().map()
/// .collect()`: that collects in place, keeping the decoded vector's whole allocation (its
/// larger elements, and the room the decoder's growth left), which made a slim EndpointSlice
/// hold over a kilobyte for one endpoint.
fn each<T, U>(v: Vec<T>, f: impl FnMut(T) -> U) -> Vec<U> {
    let mut out = Vec::with_capacity(v.len());
    out.extend(v.into_iter().map(f));
    out
}

/// `v` without the room the decoder's growth left.
fn fitted<T>(mut v: Vec<T>) -> Vec<T> {
    v.shrink_to_fit();
    v
}

impl From<core::Service> for Service {
    fn from(o: core::Service) -> Self {
        let key = ObjKey::of(&o);
        let annotations = o.metadata.annotations.map(|a| {
            a.into_iter()
                .filter(|(k, _)| UPSTREAM_PROTOCOL_PREFIXES.iter().any(|p| k.starts_with(p)))
                .collect()
        });
        let spec = o.spec.map(|s| ServiceSpec {
            ports: s.ports.map(|ports| {
                each(ports, |p| ServicePort {
                    name: p.name,
                    port: p.port,
                })
            }),
            type_: s.type_,
            external_name: s.external_name,
        });
        Self {
            key,
            metadata: ServiceMeta { annotations },
            spec,
        }
    }
}

#[allow(deprecated)]
impl From<core::Endpoints> for Endpoints {
    fn from(o: core::Endpoints) -> Self {
        let key = ObjKey::of(&o);
        let subsets = o.subsets.map(|subsets| {
            each(subsets, |s| EndpointSubset {
                addresses: s
                    .addresses
                    .map(|a| each(a, |a| EndpointAddress { ip: a.ip })),
                ports: s.ports.map(|p| {
                    each(p, |p| EndpointPort {
                        name: p.name,
                        port: p.port,
                    })
                }),
            })
        });
        Self { key, subsets }
    }
}

impl From<discovery::EndpointSlice> for EndpointSlice {
    fn from(o: discovery::EndpointSlice) -> Self {
        let key = ObjKey::of(&o);
        let service_name = o
            .metadata
            .labels
            .and_then(|mut l| l.remove(SERVICE_NAME_LABEL));
        let ports = o.ports.map(|ports| {
            each(ports, |p| SlicePort {
                name: p.name,
                port: p.port,
            })
        });
        let endpoints = each(o.endpoints, |e| SliceEndpoint {
            addresses: fitted(e.addresses),
            conditions: e.conditions.map(|c| EndpointConditions { ready: c.ready }),
        });
        Self {
            key,
            service_name,
            ports,
            endpoints,
        }
    }
}

impl From<core::Secret> for Secret {
    fn from(o: core::Secret) -> Self {
        Self {
            key: ObjKey::of(&o),
            type_: o.type_,
            data: o.data,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::{LiveSnapshot, Object, SharedObject};

    fn service(json: serde_json::Value) -> SharedObject {
        Object::Service(serde_json::from_value(json).unwrap()).into()
    }

    /// What the DAG reads is kept; an update of anything else is no change to the snapshot.
    #[test]
    fn a_service_keeps_what_the_dag_reads_and_nothing_else() {
        let base = serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "1",
                         "labels": {"app": "x"},
                         "annotations": {"projectcontour.io/upstream-protocol.h2": "80",
                                         "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"type": "ClusterIP", "selector": {"app": "x"}, "clusterIP": "10.0.0.1",
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
            "status": {"loadBalancer": {}}
        });
        let SharedObject::Service(held) = service(base.clone()) else {
            unreachable!()
        };
        assert_eq!(held.key, ObjKey::new("ns", "s"));
        assert_eq!(
            held.metadata.annotations,
            Some(BTreeMap::from([(
                "projectcontour.io/upstream-protocol.h2".to_owned(),
                "80".to_owned()
            )]))
        );
        let spec = held.spec.as_ref().unwrap();
        assert_eq!(spec.ports.as_ref().map(Vec::capacity), Some(1));
        assert_eq!(
            spec.ports,
            Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: 80
            }])
        );
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));

        let mut live = LiveSnapshot::default();
        assert!(live.upsert(service(base.clone())));
        let mut unread = base.clone();
        unread["metadata"]["resourceVersion"] = "2".into();
        unread["metadata"]["labels"]["app"] = "y".into();
        unread["metadata"]["annotations"]["other"] = "z".into();
        unread["spec"]["selector"]["app"] = "y".into();
        unread["spec"]["ports"][0]["targetPort"] = 9090.into();
        assert!(!live.upsert(service(unread)), "only unread fields changed");
        for (path, value) in [
            (
                "/metadata/annotations/contour.heptio.com~1upstream-protocol.tls",
                "443",
            ),
            ("/spec/ports/0/name", "web"),
            ("/spec/type", "ExternalName"),
            ("/spec/externalName", "example.com"),
        ] {
            let mut read = base.clone();
            let (parent, field) = path.rsplit_once('/').unwrap();
            read.pointer_mut(parent).unwrap()[field.replace("~1", "/")] = value.into();
            assert!(live.upsert(service(read)), "{path}");
            assert!(live.upsert(service(base.clone())));
        }
    }

    #[test]
    fn a_slice_keeps_its_service_ports_addresses_and_readiness() {
        // From text, as a watch decodes it (no length known ahead, so vectors grow).
        let slice: discovery::EndpointSlice = serde_json::from_str(
            &serde_json::json!({
                "metadata": {"name": "s-1", "namespace": "ns",
                             "labels": {SERVICE_NAME_LABEL: "s", "other": "x"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": false},
                               "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "p"}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            })
            .to_string(),
        )
        .unwrap();
        let slim = EndpointSlice::from(slice);
        // The decoded vectors are not reused: each holds its own elements, not the room of
        // the larger decoded ones (a `Vec` collected in place keeps its source's allocation).
        assert_eq!(slim.endpoints.capacity(), slim.endpoints.len());
        assert_eq!(slim.endpoints[0].addresses.capacity(), 1);
        assert_eq!(slim.ports.as_ref().map(Vec::capacity), Some(1));
        assert_eq!(
            slim,
            EndpointSlice {
                key: ObjKey::new("ns", "s-1"),
                service_name: Some("s".to_owned()),
                ports: Some(vec![SlicePort {
                    name: Some("http".to_owned()),
                    port: Some(8080)
                }]),
                endpoints: vec![SliceEndpoint {
                    addresses: vec!["10.0.0.1".to_owned()],
                    conditions: Some(EndpointConditions { ready: Some(false) }),
                }],
            }
        );
    }

    #[test]
    #[allow(deprecated)]
    fn endpoints_keep_their_addresses_and_ports_in_vectors_of_their_own() {
        let endpoints: core::Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1", "nodeName": "n1",
                                        "targetRef": {"kind": "Pod", "name": "p"}}],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
        }))
        .unwrap();
        let slim = Endpoints::from(endpoints);
        let subsets = slim.subsets.as_ref().unwrap();
        assert_eq!(subsets.capacity(), 1);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::capacity), Some(1));
        assert_eq!(subsets[0].ports.as_ref().map(Vec::capacity), Some(1));
        assert_eq!(
            subsets[0].addresses.as_deref(),
            Some(
                &[EndpointAddress {
                    ip: "10.0.0.1".to_owned()
                }][..]
            )
        );
    }
}
