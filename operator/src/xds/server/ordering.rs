//! What a stream selects and in which order it sends it: the xDS eventual-consistency rules
//! shared by both protocols (see the module documentation of [`super`]). Pure.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::xds::cache::{TypeResources, VersionedResource, type_url};

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
        if self.names.len() * 2 < all.len() {
            return self
                .names
                .iter()
                .filter_map(|name| all.get(name.as_str()).map(|r| (r.name.clone(), r.clone())))
                .collect();
        }
        // Most of them (an Envoy subscribes to the load assignment of every cluster and the
        // route configuration of every scope by name): the shared map minus the others, found
        // by one walk of both sorted lists, instead of a new map entry by entry.
        let mut names = self.names.iter().peekable();
        let unsubscribed: Vec<&Arc<str>> = all
            .keys()
            .filter(|key| {
                while names.next_if(|n| n.as_str() < &***key).is_some() {}
                names.next_if(|n| n.as_str() == &***key).is_none()
            })
            .collect();
        let mut selected = all.clone();
        for name in unsubscribed {
            selected.remove(&**name);
        }
        selected
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
    let clusters = clusters.into_iter().flat_map(|c| c.values());
    awaits_endpoints_of(clusters.map(|r| &**r), eds)
}

/// [`awaits_endpoint_subscriptions`] over the clusters `clusters`.
pub(super) fn awaits_endpoints_of<'a>(
    mut clusters: impl Iterator<Item = &'a VersionedResource>,
    eds: Option<&Subscription>,
) -> bool {
    if eds.is_some_and(|e| e.wildcard) {
        return false;
    }
    // Each cluster is decoded once in its life (the name is kept with the resource).
    clusters.any(|r| {
        r.eds_service_name()
            .is_some_and(|name| !eds.is_some_and(|e| e.names.contains(name)))
    })
}

/// Whether `type_url` comes after EDS in a push, and so waits for endpoint subscriptions.
pub(super) fn after_endpoints(type_url: &str) -> bool {
    type_url != type_url::CLUSTER && type_url != type_url::ENDPOINT
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use envoy_types::pb::google::protobuf::Any;
    use sluice_e2e::rng::Rng;

    use super::*;
    use crate::xds::cache::VersionedResource;

    /// Both ways of selecting (few names: entry by entry; most: the shared map minus the
    /// others) give exactly the subscribed resources that exist.
    #[test]
    fn a_subscription_selects_exactly_its_existing_names() {
        let mut rng = Rng(7);
        let (mut few, mut most) = (0, 0);
        for round in 0..300 {
            let all: TypeResources = (0..rng.below(30))
                .map(|i| {
                    let name = format!("r{i:02}");
                    let any = Any {
                        type_url: type_url::ENDPOINT.to_owned(),
                        value: vec![],
                    };
                    (
                        name.as_str().into(),
                        Arc::new(VersionedResource::new(name, any)),
                    )
                })
                .collect();
            let wanted = rng.below(101) as u64;
            let names: BTreeSet<String> = (0..40)
                .filter(|_| rng.chance(wanted))
                .map(|i| format!("r{i:02}"))
                .collect();
            if names.len() * 2 < all.len() {
                few += 1;
            } else {
                most += 1;
            }
            let expected: Vec<&str> = all
                .keys()
                .map(|k| &**k)
                .filter(|k| names.contains(*k))
                .collect();
            let sub = Subscription {
                wildcard: false,
                names,
            };
            let selected = sub.select(Some(&all));
            let got: Vec<&str> = selected.keys().map(|k| &**k).collect();
            assert_eq!(got, expected, "round {round}");
        }
        assert!(few > 20 && most > 20, "{few} {most}");
    }
}
