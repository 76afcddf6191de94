//! What a stream selects and in which order it sends it: the xDS eventual-consistency rules
//! shared by both protocols (see the module documentation of [`super`]). Pure.

use std::collections::BTreeSet;

use crate::xds::cache::{TypeResources, type_url};

/// Order in which added or changed resources are sent within one push.
pub(super) const ADD_ORDER: [&str; 6] = [
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::LISTENER,
    type_url::SCOPED_ROUTE,
    type_url::ROUTE,
    type_url::SECRET,
];

/// Order in which removals are sent, after every addition: first what refers to others
/// (listeners, then scopes, then route configurations), then what is referred to.
pub(super) const REMOVE_ORDER: [&str; 6] = [
    type_url::LISTENER,
    type_url::SCOPED_ROUTE,
    type_url::ROUTE,
    type_url::CLUSTER,
    type_url::ENDPOINT,
    type_url::SECRET,
];

/// Types for which a request without names means "everything" (legacy wildcard). Envoy
/// subscribes to scoped route configurations that way, like to listeners and clusters.
const WILDCARD_TYPES: [&str; 3] = [
    type_url::CLUSTER,
    type_url::LISTENER,
    type_url::SCOPED_ROUTE,
];

/// The explicit wildcard resource name.
pub(super) const WILDCARD: &str = "*";

/// Whether a first request for `type_url` naming no resources subscribes to all of them.
pub(super) fn legacy_wildcard(type_url: &str) -> bool {
    WILDCARD_TYPES.contains(&type_url)
}

/// What a stream subscribes to for one type.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Subscription {
    /// Every resource of the type.
    pub wildcard: bool,
    /// These names (besides the wildcard, if set).
    pub names: BTreeSet<String>,
}

impl Subscription {
    /// The resources of one type this subscription selects.
    pub fn select(&self, all: Option<&TypeResources>) -> TypeResources {
        let Some(all) = all else {
            return TypeResources::new();
        };
        if self.wildcard {
            return all.clone();
        }
        self.names
            .iter()
            .filter_map(|name| all.get(name).map(|r| (name.clone(), r.clone())))
            .collect()
    }
}

/// Type URLs sorted by an order list; types not in it come last, by name.
pub(super) fn ordered<'a>(types: impl Iterator<Item = &'a String>, order: &[&str]) -> Vec<String> {
    let mut types: Vec<&String> = types.collect();
    types.sort_by_key(|t| {
        (
            order.iter().position(|o| o == t).unwrap_or(order.len()),
            t.as_str(),
        )
    });
    types.into_iter().cloned().collect()
}

/// Whether a push must stop after CDS and EDS: the Envoy has (or is being sent) `clusters`, and
/// some of them read endpoints from an EDS service name it has not subscribed to (`eds`) yet.
/// Cluster resources that do not decode are not waited for.
pub(super) fn awaits_endpoint_subscriptions(
    clusters: Option<&TypeResources>,
    eds: Option<&Subscription>,
) -> bool {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    use prost::Message as _;

    if eds.is_some_and(|e| e.wildcard) {
        return false;
    }
    let Some(clusters) = clusters else {
        return false;
    };
    clusters.values().any(|r| {
        let Ok(cluster) = Cluster::decode(r.resource.value.as_slice()) else {
            return false;
        };
        let eds_cluster = cluster.cluster_discovery_type
            == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
        if !eds_cluster {
            return false;
        }
        // An EDS cluster without a service name reads the endpoints named after itself.
        let name = cluster
            .eds_cluster_config
            .map(|c| c.service_name)
            .filter(|n| !n.is_empty())
            .unwrap_or(cluster.name);
        !eds.is_some_and(|e| e.names.contains(&name))
    })
}

/// Whether `type_url` comes after EDS in a push, and so waits for endpoint subscriptions.
pub(super) fn after_endpoints(type_url: &str) -> bool {
    type_url != type_url::CLUSTER && type_url != type_url::ENDPOINT
}
