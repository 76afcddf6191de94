//! Objects decoded one by one, so that one that does not fit the types stops nothing else.
//!
//! A typed watch fails as a whole when a single stored object does not decode (an IngressRoute
//! written under Contour's schema-less CRD with `port: "80"`, say): the watch retries
//! forever and no Gateway gets configuration. [`Lenient`] wraps a kind for the watches: it
//! always decodes, keeping the object's metadata and either the typed object or the decoder's
//! message with the field path.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// An object of kind `K` as stored: decoded, or the reason it could not be.
#[derive(Clone, Debug)]
pub struct Lenient<K> {
    pub metadata: ObjectMeta,
    /// Shared: a snapshot takes this `Arc`, never a copy of the object.
    pub decoded: Result<Arc<K>, Undecodable>,
}

/// What could be read of an object that does not decode as its kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Undecodable {
    /// The decoder's message, starting with the field path (`spec.routes[0].services[0].port:
    /// invalid type: string "80", expected i64`).
    pub error: String,
    /// The object's `status`, as stored (to write a new one only when it differs).
    pub status: Option<serde_json::Value>,
}

impl<K> Lenient<K> {
    /// The typed object, when it decoded.
    pub fn ok(&self) -> Option<&K> {
        self.decoded.as_deref().ok()
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Self::from_value(value))
    }
}

/// Metadata fields nothing in Sluice reads, removed before an object is decoded so the decoded
/// object never holds them: `managedFields` (a JSON tree per field manager, several kilobytes
/// per object: 57 MB of the operator's heap at 10,000 roots when the decoded IngressRoutes kept
/// them), and kubectl's last-applied annotation (a copy of the whole object as applied).
const UNREAD_METADATA: [&str; 1] = ["managedFields"];
const UNREAD_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// Removes [`UNREAD_METADATA`] and [`UNREAD_ANNOTATIONS`] from a stored object.
fn strip_unread(value: &mut serde_json::Value) {
    let Some(meta) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for field in UNREAD_METADATA {
        meta.remove(field);
    }
    if let Some(annotations) = meta
        .get_mut("annotations")
        .and_then(serde_json::Value::as_object_mut)
    {
        for a in UNREAD_ANNOTATIONS {
            annotations.remove(a);
        }
    }
}

/// Removes [`UNREAD_METADATA`] and [`UNREAD_ANNOTATIONS`] from decoded metadata (the manifest
/// loader's objects, decoded first so its warnings do not change).
pub fn strip_unread_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        for a in UNREAD_ANNOTATIONS {
            annotations.remove(a);
        }
    }
}

impl<K: DeserializeOwned> Lenient<K> {
    /// Decodes a stored object, without the metadata nothing reads ([`strip_unread`]).
    pub fn from_value(mut value: serde_json::Value) -> Self {
        strip_unread(&mut value);
        let metadata: ObjectMeta = value
            .get("metadata")
            .cloned()
            .and_then(|m| serde_json::from_value(m).ok())
            .unwrap_or_default();
        let status = value.get("status").cloned();
        let decoded = serde_path_to_error::deserialize::<_, K>(value)
            .map(Arc::new)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                Undecodable {
                    error: if path == "." {
                        inner.to_string()
                    } else {
                        format!("{path}: {inner}")
                    },
                    status,
                }
            });
        Self { metadata, decoded }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::api::IngressRoute;
    use serde_json::json;

    #[test]
    fn a_bad_field_is_an_error_naming_it_and_metadata_survives() {
        let bad: Lenient<IngressRoute> = serde_json::from_value(json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"name": "old", "namespace": "ns"},
            "spec": {"routes": [{"match": "/", "services": [{"name": "s", "port": "80"}]}]},
            "status": {"currentStatus": "valid", "description": "valid IngressRoute"}
        }))
        .unwrap();
        assert_eq!(bad.metadata.name.as_deref(), Some("old"));
        let Err(e) = &bad.decoded else {
            panic!("decoded");
        };
        assert!(
            e.error
                .starts_with("spec.routes[0].services[0].port: invalid type"),
            "{}",
            e.error
        );
        assert_eq!(e.status.as_ref().unwrap()["currentStatus"], "valid");

        let good: Lenient<IngressRoute> = serde_json::from_value(json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {"name": "new", "namespace": "ns"}, "spec": {}
        }))
        .unwrap();
        assert_eq!(good.ok().unwrap().metadata.name.as_deref(), Some("new"));
    }

    /// The decoded object and the kept metadata hold no managed fields and no last-applied
    /// copy; every other field, the class annotation included, decodes as before.
    #[test]
    fn unread_metadata_is_not_held() {
        let stored = json!({
            "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
            "metadata": {
                "name": "r", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"kubernetes.io/ingress.class": "team-a",
                                "kubectl.kubernetes.io/last-applied-configuration": "{\"spec\":{}}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                   "apiVersion": "contour.heptio.com/v1beta1",
                                   "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:spec": {"f:routes": {}}}}]
            },
            "spec": {"virtualhost": {"fqdn": "a.example.com"},
                     "routes": [{"match": "/", "services": [{"name": "s", "port": 80}]}]},
            "status": {"currentStatus": "valid", "description": "valid IngressRoute"}
        });
        let lenient = Lenient::<IngressRoute>::from_value(stored.clone());
        let decoded = lenient.ok().unwrap();
        let mut want: IngressRoute = serde_json::from_value(stored).unwrap();
        want.metadata.managed_fields = None;
        want.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("kubectl.kubernetes.io/last-applied-configuration");
        assert_eq!(decoded, &want);
        assert_eq!(
            decoded
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["kubernetes.io/ingress.class"]
        );
        assert_eq!(lenient.metadata, want.metadata);
    }
}
