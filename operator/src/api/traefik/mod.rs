//! Traefik's CRD dialect: the kinds of `traefik.io/v1alpha1` and, read the same way, of the
//! legacy `traefik.containo.us/v1alpha1` group. Types only, shaped so that manifests written for
//! Traefik decode unchanged (camelCase, `port` as a number or a name, durations as seconds or Go
//! strings); what the values mean and whether Sluice can serve them is `crate::traefik`'s job.
//!
//! Decoding is per object ([`decode`]): one object that does not fit stops nothing else, and
//! every field the types do not know is reported by path instead of vanishing.

pub mod middleware;
pub mod objects;
pub mod routes;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;

pub use middleware::{Middleware, MiddlewareSpec};
pub use objects::{
    ServersTransport, ServersTransportSpec, TLSOption, TLSOptionSpec, TLSStore, TLSStoreSpec,
    TraefikService, TraefikServiceSpec,
};
pub use routes::{IngressRoute, IngressRouteSpec, IngressRouteTCP, IngressRouteTCPSpec};

/// The group Traefik 2.10+ and 3.x serve.
pub const GROUP: &str = "traefik.io";
/// The group of Traefik up to 2.9, still read (Traefik 2.10/2.11 read both).
pub const LEGACY_GROUP: &str = "traefik.containo.us";
pub const VERSION: &str = "v1alpha1";
/// Kinds of both groups that Sluice reads.
pub const KINDS: [&str; 7] = [
    "IngressRoute",
    "IngressRouteTCP",
    "Middleware",
    "TraefikService",
    "TLSOption",
    "TLSStore",
    "ServersTransport",
];

/// Which of the two groups an object came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    TraefikIo,
    ContainoUs,
}

impl Group {
    /// The group of an `apiVersion`, when it is one of Traefik's.
    pub fn of_api_version(api_version: &str) -> Option<Group> {
        match api_version.split_once('/') {
            Some((GROUP, VERSION)) => Some(Group::TraefikIo),
            Some((LEGACY_GROUP, VERSION)) => Some(Group::ContainoUs),
            _ => None,
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Group::TraefikIo => "traefik.io/v1alpha1",
            Group::ContainoUs => "traefik.containo.us/v1alpha1",
        }
    }
}

/// One stored Traefik object: its metadata, its group, and the typed object or why it did not
/// decode.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded<K> {
    pub metadata: ObjectMeta,
    pub group: Group,
    pub decoded: Result<K, String>,
    /// Paths of fields the types do not know (`spec.routes[0].observability`), sorted.
    pub ignored: Vec<String>,
}

impl<K> Decoded<K> {
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

/// Decodes one object of kind `K` from either group. `None` when `apiVersion` is not one of
/// Traefik's (the caller routes objects by `apiVersion` and `kind`).
pub fn decode<K: DeserializeOwned>(value: serde_json::Value) -> Option<Decoded<K>> {
    let group = value
        .get("apiVersion")
        .and_then(serde_json::Value::as_str)
        .and_then(Group::of_api_version)?;
    let metadata: ObjectMeta = value
        .get("metadata")
        .cloned()
        .and_then(|m| serde_json::from_value(m).ok())
        .unwrap_or_default();
    let mut ignored = Vec::new();
    let result = {
        let mut on_ignored = |path: serde_ignored::Path<'_>| {
            let path = format_path(&path);
            // Read to dispatch; `status` is never written by Traefik and means nothing here.
            if !matches!(path.as_str(), "apiVersion" | "kind" | "status") {
                ignored.push(path);
            }
        };
        let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
        serde_path_to_error::deserialize::<_, K>(de)
    };
    ignored.sort();
    let decoded = result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    });
    Some(Decoded {
        metadata,
        group,
        decoded,
        ignored,
    })
}

/// Keeps, for each `namespace/name`, the `traefik.io` object over the `traefik.containo.us`
/// one (as Traefik 2.10+ does), and returns the survivors sorted by namespace and name.
pub fn prefer_traefik_io<K>(objects: Vec<Decoded<K>>) -> Vec<Decoded<K>> {
    let mut by_key: std::collections::BTreeMap<(String, String), Decoded<K>> =
        std::collections::BTreeMap::new();
    for obj in objects {
        let key = (obj.namespace().to_owned(), obj.name().to_owned());
        match by_key.get(&key) {
            Some(kept) if kept.group <= obj.group => {}
            _ => {
                by_key.insert(key, obj);
            }
        }
    }
    by_key.into_values().collect()
}

/// CRDs of `traefik.io/v1alpha1` for clusters without Traefik's (`sluice crds --traefik`).
///
/// Each spec keeps unknown fields (`x-kubernetes-preserve-unknown-fields`): Traefik adds fields
/// in minor releases, and a field the API server silently pruned could not be reported. Sluice
/// reads the stored object, and refuses or warns about what it does not support by name.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    let mut crds = vec![
        IngressRoute::crd(),
        IngressRouteTCP::crd(),
        Middleware::crd(),
        TraefikService::crd(),
        TLSOption::crd(),
        TLSStore::crd(),
        ServersTransport::crd(),
    ];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            let spec = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
                .and_then(|s| s.properties.as_mut())
                .and_then(|p| p.get_mut("spec"));
            if let Some(spec) = spec {
                spec.x_kubernetes_preserve_unknown_fields = Some(true);
            }
        }
    }
    crds
}

/// [`crds`] as one multi-document YAML string.
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    super::yaml_stream(&crds())
}

/// An ignored field's path, written like `serde_path_to_error` writes one.
fn format_path(path: &serde_ignored::Path<'_>) -> String {
    crate::source::files::format_ignored_path(path)
}

#[cfg(test)]
mod tests;
