//! The incremental DAG's entries in vectors of their own length.
//!
//! Why. The incremental DAG keeps every virtual host it built for as long as its root does not
//! change: at steady state, all of them. A build grows its lists by pushing, and a vector grown
//! by pushing keeps room for four entries once it holds one (`Vec`'s smallest non-zero capacity
//! for entries of up to a kilobyte): a root with two routes held room for four `Route`s (about
//! 170 bytes each), and each route with one cluster room for four weighted clusters. The
//! entries are fitted once, when the incremental DAG takes them; its readers never grow them
//! (a change makes a new entry, `SharedList::make_mut` a copy).

use crate::dag::model::VirtualHost;

/// `v` with its lists (routes, each route's clusters, the TCP proxy's clusters and branches)
/// in allocations of their own length. The content is unchanged.
pub(super) fn fitted(mut v: VirtualHost) -> VirtualHost {
    v.routes.shrink_to_fit();
    for r in &mut v.routes {
        r.clusters.shrink_to_fit();
    }
    if let Some(t) = v.tcp_proxy.as_mut() {
        t.clusters.shrink_to_fit();
        t.branches.shrink_to_fit();
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use serde_json::json;

    use crate::dag::incremental::IncrementalDag;
    use crate::dag::{Selection, build};
    use crate::snapshot::{ChangeSet, ClusterSnapshot, Object};

    fn object(kind: &str, v: serde_json::Value) -> Object {
        let mut v = v;
        match kind {
            "IngressRoute" => {
                v["apiVersion"] = json!("contour.heptio.com/v1beta1");
                v["kind"] = json!("IngressRoute");
                Object::IngressRoute(serde_json::from_value(v).unwrap())
            }
            _ => {
                v["apiVersion"] = json!("v1");
                v["kind"] = json!("Service");
                Object::Service(serde_json::from_value(v).unwrap())
            }
        }
    }

    /// A root with three routes, one of them to two Services, and one delegated to a child.
    fn world() -> ClusterSnapshot {
        let mut snap = ClusterSnapshot::default();
        for name in ["a", "b", "c"] {
            snap.apply(object(
                "Service",
                json!({"metadata": {"namespace": "ns", "name": name},
                       "spec": {"ports": [{"name": "http", "port": 80}]}}),
            ));
        }
        snap.apply(object(
            "IngressRoute",
            json!({"metadata": {"namespace": "ns", "name": "root"},
            "spec": {"virtualhost": {"fqdn": "fit.example.com"}, "routes": [
                {"match": "/", "services": [{"name": "a", "port": 80}]},
                {"match": "/two", "services": [{"name": "a", "port": 80},
                                               {"name": "b", "port": 80}]},
                {"match": "/child", "delegate": {"name": "child"}},
            ]}}),
        ));
        snap.apply(object(
            "IngressRoute",
            json!({"metadata": {"namespace": "ns", "name": "child"},
            "spec": {"routes": [
                {"match": "/child", "services": [{"name": "c", "port": 80}]},
            ]}}),
        ));
        snap
    }

    #[test]
    fn the_incremental_dags_virtual_hosts_hold_lists_of_their_own_length() {
        let snap = Arc::new(world());
        let sel = Selection::default_instance();
        let mut inc = IncrementalDag::new(sel.clone());
        inc.update(&snap, &sel, &ChangeSet::everything());
        // Fitting changes no content: the same DAG as a full build.
        assert_eq!(*inc.dag(), build(&snap, &sel));
        let vh = inc
            .dag()
            .virtual_hosts
            .iter()
            .next()
            .expect("one virtual host");
        assert_eq!(vh.routes.len(), 3, "{vh:?}");
        assert_eq!(vh.routes.capacity(), vh.routes.len());
        for r in &vh.routes {
            assert!(!r.clusters.is_empty(), "{r:?}");
            assert_eq!(r.clusters.capacity(), r.clusters.len(), "{r:?}");
        }
    }

    /// A Service, its Endpoints and its EndpointSlices are one dependency, so the index holds
    /// one entry per Service read (and per IngressRoute), not three.
    #[test]
    fn the_dependency_index_holds_one_entry_per_service_read() {
        let snap = Arc::new(world());
        let sel = Selection::default_instance();
        let mut inc = IncrementalDag::new(sel.clone());
        inc.update(&snap, &sel, &ChangeSet::everything());
        let mut deps: Vec<String> = inc.dep_index.keys().map(|d| format!("{d:?}")).collect();
        deps.sort();
        // Two IngressRoutes and three Services.
        assert_eq!(deps.len(), 5, "{deps:#?}");
    }

    #[test]
    fn a_sorted_vec_grows_exactly_while_small_and_by_doubling_beyond() {
        use crate::dag::incremental::parts::SortedVec;
        let mut v = SortedVec::default();
        assert!(v.insert(5));
        assert_eq!(v.as_ref().len(), 1);
        assert_eq!(v.capacity(), 1);
        assert!(v.insert(3));
        assert!(!v.insert(3));
        assert!(v.insert(4));
        assert_eq!(v.as_ref(), &[3, 4, 5][..]);
        assert_eq!(v.capacity(), 3);
        for x in 10..100 {
            assert!(v.insert(x));
        }
        assert_eq!(v.as_ref().len(), 93);
        // Beyond the first few, the vector doubles (93 entries in at most 2 x 93).
        assert!(v.capacity() < 2 * 93, "{}", v.capacity());
        assert!(v.as_ref().windows(2).all(|w| w[0] < w[1]));
    }
}
