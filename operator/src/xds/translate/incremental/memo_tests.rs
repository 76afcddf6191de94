//! The `Translator`'s load-assignment memos hold the DAG's entries, not copies of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use super::{TranslateOptions, Translator};
use crate::dag::model::{ClusterEndpoints, SocketAddress};
use crate::dag::{Dag, DagDiff};
use crate::xds::resource::{VersionedResource, type_url};
use crate::xds::translate::fixture::{eds_cluster, eds_name};

fn endpoints(service: &str) -> Arc<ClusterEndpoints> {
    Arc::new(ClusterEndpoints {
        service_name: eds_name(service),
        addresses: vec![SocketAddress {
            ip: "10.0.0.1".to_owned(),
            port: 8080,
        }],
    })
}

/// Clusters `a` (with an address) and `b` (none).
fn dag(a: Arc<ClusterEndpoints>) -> Dag {
    Dag {
        clusters: vec![eds_cluster("a", 80), eds_cluster("b", 80)].into(),
        endpoints: [a].into_iter().collect(),
        ..Dag::default()
    }
}

/// Whether the memo of `a`'s load assignment holds `entry` itself.
fn holds(t: &Translator, entry: &Arc<ClusterEndpoints>) -> bool {
    let memo = t.endpoints.get(eds_name("a").as_str()).expect("a's memo");
    memo.input.as_ref().is_some_and(|e| Arc::ptr_eq(e, entry))
}

/// The encoded load assignment of `a` the memo holds.
fn output(t: &Translator) -> Arc<VersionedResource> {
    t.endpoints[eds_name("a").as_str()].output.clone()
}

#[test]
fn load_assignment_memos_share_the_dags_entries() {
    let mut t = Translator::new(TranslateOptions::default());
    let first = endpoints("a");
    t.translate(&dag(first.clone())).unwrap();
    assert!(holds(&t, &first));
    // `b` has no endpoints: an empty assignment, remembered without any entry.
    let b = t.endpoints.get(eds_name("b").as_str()).expect("b's memo");
    assert!(b.input.is_none());
    let encoded = output(&t);

    // An equal entry in a new allocation (a rebuilt group's): not encoded again, and the memo
    // moves to the DAG's allocation, so the previous one is freed.
    let second = endpoints("a");
    let diff = DagDiff {
        endpoints: [eds_name("a")].into_iter().collect(),
        ..DagDiff::default()
    };
    let out = t.translate_changes(&dag(second.clone()), &diff).unwrap();
    assert!(holds(&t, &second));
    assert!(Arc::ptr_eq(&output(&t), &encoded), "encoded again");
    let served = out.by_type()[type_url::ENDPOINT].get(eds_name("a").as_str());
    assert!(served.is_some_and(|r| Arc::ptr_eq(r, &encoded)));
    assert_eq!(
        Arc::strong_count(&first),
        1,
        "the previous entry is still held"
    );

    // The same through a whole translation.
    let third = endpoints("a");
    t.translate(&dag(third.clone())).unwrap();
    assert!(holds(&t, &third));
    assert_eq!(
        Arc::strong_count(&second),
        1,
        "the previous entry is still held"
    );
}
