//! The translation one resource type at a time, for a caller that writes each type and drops
//! it before building the next (`sluice render`): what [`translate`](super::translate) returns,
//! type by type, so at most one type is in memory, and clusters one at a time.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, ScopedRouteConfiguration};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

use super::clusters::{admin_cluster, cluster};
use super::{
    ADMIN_CLUSTER, Resource, TranslateError, TranslateOptions, check, clusters, listeners, routes,
    scopes, secrets, sort_by_name,
};
use crate::dag::Dag;

/// A DAG that passed the translation's checks, translated on demand. Each method returns that
/// type's resources exactly as [`translate`](super::translate) lists them (in name order).
pub struct ByType<'a> {
    dag: &'a Dag,
    opts: &'a TranslateOptions,
    /// Whether plain HTTP goes through scoped routes.
    scoped: bool,
}

impl<'a> ByType<'a> {
    /// Checks the DAG's invariants, as [`translate`](super::translate) does first.
    pub fn new(dag: &'a Dag, opts: &'a TranslateOptions) -> Result<Self, TranslateError> {
        check(dag)?;
        Ok(Self {
            dag,
            opts,
            scoped: scopes::scoped(dag),
        })
    }

    pub fn listeners(&self) -> Vec<Resource<Listener>> {
        sorted(listeners::build_listeners(self.dag, self.opts, self.scoped))
    }

    pub fn routes(&self) -> Vec<Resource<RouteConfiguration>> {
        sorted(routes::build_route_configs(self.dag, self.scoped))
    }

    pub fn scoped_routes(&self) -> Vec<Resource<ScopedRouteConfiguration>> {
        if self.scoped {
            sorted(scopes::build_scopes(self.dag).0)
        } else {
            Vec::new()
        }
    }

    pub fn clusters(&self) -> Vec<Resource<Cluster>> {
        sorted(clusters::build_clusters(self.dag, self.opts))
    }

    /// [`Self::clusters`] made one at a time as the iterator is read (an Envoy `Cluster` is
    /// kilobytes: 20,000 of them are tens of megabytes). When the DAG's clusters are not in
    /// strict name order (the DAG builder makes them so; `check` accepts either), they are all
    /// built and sorted first.
    pub fn clusters_one_by_one(&self) -> Box<dyn Iterator<Item = Resource<Cluster>> + 'a> {
        let in_order = self.dag.clusters.windows(2).all(|w| w[0].name < w[1].name);
        if !in_order {
            return Box::new(self.clusters().into_iter());
        }
        let mut admin = Some(Resource::new(ADMIN_CLUSTER, admin_cluster(self.opts)));
        let mut dag_clusters = self.dag.clusters.iter().peekable();
        // A stable sort of the DAG's clusters followed by the admin cluster: the admin cluster
        // goes before the first DAG cluster whose name is greater, after any of equal name.
        Box::new(std::iter::from_fn(move || {
            let admin_first = match dag_clusters.peek() {
                Some(c) => admin.is_some() && c.name.as_str() > ADMIN_CLUSTER,
                None => true,
            };
            if admin_first {
                admin.take()
            } else {
                let c = dag_clusters.next()?;
                Some(Resource::new(c.name.clone(), cluster(c)))
            }
        }))
    }

    pub fn endpoints(&self) -> Vec<Resource<ClusterLoadAssignment>> {
        sorted(clusters::build_endpoints(self.dag))
    }

    pub fn secrets(&self) -> Vec<Resource<Secret>> {
        sorted(secrets::build_secrets(self.dag))
    }
}

fn sorted<T>(mut list: Vec<Resource<T>>) -> Vec<Resource<T>> {
    sort_by_name(&mut list);
    list
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// One at a time or all at once: the same clusters in the same order, wherever the admin
    /// cluster's name falls among the DAG's (before, between, after, equal).
    #[test]
    fn clusters_one_by_one_are_the_sorted_list() {
        let dag = super::super::fixture::dag(&super::super::fixture::Pems::placeholder());
        let opts = TranslateOptions::default();
        let extras: [&[&str]; 6] = [
            &[],
            &["0"],
            &["~"],
            &["0", ADMIN_CLUSTER, "~"],
            &["sluice_admim", "sluice_admio"],
            &[ADMIN_CLUSTER],
        ];
        for extra in extras {
            let mut d = dag.clone();
            for name in extra {
                let mut c = (*d.clusters[0]).clone();
                c.name = (*name).to_owned();
                d.clusters.push(c);
            }
            d.clusters.sort_by(|a, b| a.name.cmp(&b.name));
            let by = ByType::new(&d, &opts).unwrap();
            let streamed: Vec<Resource<Cluster>> = by.clusters_one_by_one().collect();
            assert_eq!(streamed, by.clusters(), "{extra:?}");
            assert_eq!(streamed.len(), d.clusters.len() + 1);
        }
    }
}
