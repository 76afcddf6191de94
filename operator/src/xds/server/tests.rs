//! Unit tests of the stream state machines: no sockets, no clock.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

use super::delta::DeltaStream;
use super::metrics::ServerMetrics;
use super::sotw::SotwStream;
use super::stream::{Protocol, StreamCore, Verdict};
use crate::xds::cache::InstanceResources;
use crate::xds::cache::{Snapshot, type_url};
use envoy_types::pb::google::protobuf::Any;

fn snapshot(entries: &[(&str, &str, &str)]) -> Snapshot {
    let mut r = InstanceResources::default();
    for (type_url, name, content) in entries {
        r.insert(
            *name,
            Any {
                type_url: (*type_url).to_owned(),
                value: content.as_bytes().to_vec(),
            },
        );
    }
    Snapshot::new(r)
}

/// A real EDS cluster `name` reading endpoints `eds_name`.
fn eds_cluster(name: &str, eds_name: &str) -> Any {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
    };
    use prost::Message as _;
    let cluster = Cluster {
        name: name.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            service_name: eds_name.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Any {
        type_url: type_url::CLUSTER.to_owned(),
        value: cluster.encode_to_vec(),
    }
}

/// `entries` plus real EDS clusters (`name`, `eds_name`).
fn snapshot_with_clusters(entries: &[(&str, &str, &str)], clusters: &[(&str, &str)]) -> Snapshot {
    let mut r = InstanceResources::default();
    for (type_url, name, content) in entries {
        r.insert(
            *name,
            Any {
                type_url: (*type_url).to_owned(),
                value: content.as_bytes().to_vec(),
            },
        );
    }
    for (name, eds_name) in clusters {
        r.insert(*name, eds_cluster(name, eds_name));
    }
    Snapshot::new(r)
}

fn core() -> StreamCore {
    StreamCore::new(
        "ns/gw".into(),
        "node".into(),
        Arc::new(ServerMetrics::new().unwrap()),
    )
}

fn sotw() -> SotwStream {
    SotwStream::new(core())
}

fn delta() -> DeltaStream {
    DeltaStream::new(core())
}

fn sotw_request(type_url: &str, names: &[&str], nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        response_nonce: nonce.to_owned(),
        ..Default::default()
    }
}

fn sotw_names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|a| String::from_utf8(a.value.clone()).unwrap())
        .collect()
}

#[test]
fn sotw_removed_cluster_outlives_the_route_that_used_it() {
    let mut s = sotw();
    let before = snapshot(&[
        (type_url::CLUSTER, "old", "old"),
        (type_url::ROUTE, "r", "r-old"),
    ]);
    s.on_request(sotw_request(type_url::CLUSTER, &[], ""))
        .unwrap();
    s.on_request(sotw_request(type_url::ROUTE, &["r"], ""))
        .unwrap();
    let first = s.push(&before);
    assert_eq!(first.len(), 2);
    // "old" replaced by "new", and the route now points at "new".
    let after = snapshot(&[
        (type_url::CLUSTER, "new", "new"),
        (type_url::ROUTE, "r", "r-new"),
    ]);
    let pushed = s.push(&after);
    let seen: Vec<(String, Vec<String>)> = pushed
        .iter()
        .map(|r| (r.type_url.clone(), sotw_names(r)))
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                type_url::CLUSTER.to_owned(),
                vec!["new".to_owned(), "old".to_owned()]
            ),
            (type_url::ROUTE.to_owned(), vec!["r-new".to_owned()]),
            (type_url::CLUSTER.to_owned(), vec!["new".to_owned()]),
        ]
    );
    // Nothing more to send.
    assert!(s.push(&after).is_empty());
}

#[test]
fn sotw_stale_nonce_is_ignored() {
    let mut s = sotw();
    let snap = snapshot(&[
        (type_url::ENDPOINT, "a", "a"),
        (type_url::ENDPOINT, "b", "b"),
    ]);
    s.on_request(sotw_request(type_url::ENDPOINT, &["a"], ""))
        .unwrap();
    let sent = s.push(&snap);
    assert_eq!(sent.len(), 1);
    // A request with an older nonce does not change the subscription.
    s.on_request(sotw_request(type_url::ENDPOINT, &["a", "b"], "0"))
        .unwrap();
    assert!(s.push(&snap).is_empty());
    s.on_request(sotw_request(
        type_url::ENDPOINT,
        &["a", "b"],
        &sent[0].nonce,
    ))
    .unwrap();
    let sent = s.push(&snap);
    assert_eq!(sotw_names(&sent[0]), vec!["a", "b"]);
}

fn delta_request(
    type_url: &str,
    subscribe: &[&str],
    unsubscribe: &[&str],
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_owned(),
        resource_names_subscribe: subscribe.iter().map(|n| (*n).to_owned()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

#[test]
fn delta_named_subscription_tells_absent_once_and_sends_when_it_appears() {
    let mut d = delta();
    d.on_request(delta_request(type_url::SECRET, &["tls"], &[]))
        .unwrap();
    let empty = snapshot(&[(type_url::CLUSTER, "c", "c")]);
    let sent = d.push(&empty);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].removed_resources, vec!["tls"]);
    assert!(sent[0].resources.is_empty());
    assert!(d.push(&empty).is_empty());

    let with = snapshot(&[
        (type_url::SECRET, "tls", "k1"),
        (type_url::SECRET, "other", "k2"),
    ]);
    let sent = d.push(&with);
    assert_eq!(sent.len(), 1);
    let names: Vec<&str> = sent[0].resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["tls"]);

    // Unsubscribed: nothing more about it, not even its removal.
    d.on_request(delta_request(type_url::SECRET, &[], &["tls"]))
        .unwrap();
    assert!(d.push(&empty).is_empty());
}

#[test]
fn delta_removals_follow_all_additions_listeners_first() {
    let mut d = delta();
    d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::LISTENER, &[], &[]))
        .unwrap();
    let before = snapshot(&[
        (type_url::CLUSTER, "c1", "c1"),
        (type_url::LISTENER, "l1", "l1"),
    ]);
    assert_eq!(d.push(&before).len(), 2);
    let after = snapshot(&[
        (type_url::CLUSTER, "c2", "c2"),
        (type_url::LISTENER, "l2", "l2"),
    ]);
    let seen: Vec<(String, Vec<String>, Vec<String>)> = d
        .push(&after)
        .iter()
        .map(|r| {
            (
                r.type_url.clone(),
                r.resources.iter().map(|x| x.name.clone()).collect(),
                r.removed_resources.clone(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        vec![
            (type_url::CLUSTER.to_owned(), s(&["c2"]), s(&[])),
            (type_url::LISTENER.to_owned(), s(&["l2"]), s(&[])),
            (type_url::LISTENER.to_owned(), s(&[]), s(&["l1"])),
            (type_url::CLUSTER.to_owned(), s(&[]), s(&["c1"])),
        ]
    );
}

/// The types and resource names (SotW: decoded only for non-cluster fakes) of responses.
fn sotw_seen(responses: &[DiscoveryResponse]) -> Vec<(String, usize)> {
    responses
        .iter()
        .map(|r| (r.type_url.clone(), r.resources.len()))
        .collect()
}

#[test]
fn sotw_route_to_a_new_cluster_waits_for_its_endpoint_subscription() {
    let mut s = sotw();
    let before = snapshot_with_clusters(
        &[
            (type_url::ENDPOINT, "ns/old/http", "e-old"),
            (type_url::ROUTE, "r", "r-old"),
        ],
        &[("ns/old/80", "ns/old/http")],
    );
    s.on_request(sotw_request(type_url::CLUSTER, &[], ""))
        .unwrap();
    assert_eq!(
        sotw_seen(&s.push(&before)),
        vec![(type_url::CLUSTER.to_owned(), 1)]
    );
    s.on_request(sotw_request(type_url::ENDPOINT, &["ns/old/http"], ""))
        .unwrap();
    s.on_request(sotw_request(type_url::ROUTE, &["r"], ""))
        .unwrap();
    let sent = s.push(&before);
    assert_eq!(
        sotw_seen(&sent),
        vec![
            (type_url::ENDPOINT.to_owned(), 1),
            (type_url::ROUTE.to_owned(), 1)
        ]
    );

    // The route moves to a new cluster: CDS goes out (old and new clusters), and EDS for
    // what Envoy subscribes to now (no longer served; in SotW EDS that deletes nothing);
    // the route waits.
    let after = snapshot_with_clusters(
        &[
            (type_url::ENDPOINT, "ns/new/http", "e-new"),
            (type_url::ROUTE, "r", "r-new"),
        ],
        &[("ns/new/80", "ns/new/http")],
    );
    let sent = s.push(&after);
    assert_eq!(
        sotw_seen(&sent),
        vec![
            (type_url::CLUSTER.to_owned(), 2),
            (type_url::ENDPOINT.to_owned(), 0)
        ]
    );
    let eds_nonce = sent[1].nonce.clone();
    assert!(s.push(&after).is_empty(), "still waiting");

    // Envoy subscribes to the new cluster's endpoints: endpoints, route, then the old
    // cluster goes.
    s.on_request(sotw_request(
        type_url::ENDPOINT,
        &["ns/new/http", "ns/old/http"],
        &eds_nonce,
    ))
    .unwrap();
    let sent = s.push(&after);
    assert_eq!(
        sotw_seen(&sent),
        vec![
            (type_url::ENDPOINT.to_owned(), 1),
            (type_url::ROUTE.to_owned(), 1),
            (type_url::CLUSTER.to_owned(), 1),
        ]
    );
    assert_eq!(sotw_names(&sent[1]), vec!["r-new"]);
    assert!(s.push(&after).is_empty());
}

#[test]
fn sotw_cds_nack_lifts_the_wait_for_endpoints() {
    let mut s = sotw();
    let snap = snapshot_with_clusters(
        &[(type_url::ROUTE, "r", "r")],
        &[("ns/bad/80", "ns/bad/http")],
    );
    s.on_request(sotw_request(type_url::CLUSTER, &[], ""))
        .unwrap();
    s.on_request(sotw_request(type_url::ROUTE, &["r"], ""))
        .unwrap();
    let sent = s.push(&snap);
    assert_eq!(sotw_seen(&sent), vec![(type_url::CLUSTER.to_owned(), 1)]);
    s.on_request(DiscoveryRequest {
        error_detail: Some(envoy_types::pb::google::rpc::Status {
            message: "rejected".into(),
            ..Default::default()
        }),
        ..sotw_request(type_url::CLUSTER, &[], &sent[0].nonce)
    })
    .unwrap();
    assert_eq!(
        sotw_seen(&s.push(&snap)),
        vec![(type_url::ROUTE.to_owned(), 1)]
    );
}

#[test]
fn delta_route_to_a_new_cluster_waits_for_its_endpoint_subscription() {
    let mut d = delta();
    let before = snapshot_with_clusters(
        &[
            (type_url::ENDPOINT, "ns/old/http", "e-old"),
            (type_url::ROUTE, "r", "r-old"),
        ],
        &[("ns/old/80", "ns/old/http")],
    );
    d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::ROUTE, &["r"], &[]))
        .unwrap();
    let seen = |responses: Vec<DeltaDiscoveryResponse>| -> Vec<(String, Vec<String>, Vec<String>)> {
        responses
            .iter()
            .map(|r| {
                (
                    r.type_url.clone(),
                    r.resources.iter().map(|x| x.name.clone()).collect(),
                    r.removed_resources.clone(),
                )
            })
            .collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        seen(d.push(&before)),
        vec![(type_url::CLUSTER.to_owned(), s(&["ns/old/80"]), s(&[]))],
        "the route waits for the cluster's endpoints"
    );
    d.on_request(delta_request(type_url::ENDPOINT, &["ns/old/http"], &[]))
        .unwrap();
    assert_eq!(
        seen(d.push(&before)),
        vec![
            (type_url::ENDPOINT.to_owned(), s(&["ns/old/http"]), s(&[])),
            (type_url::ROUTE.to_owned(), s(&["r"]), s(&[])),
        ]
    );

    let after = snapshot_with_clusters(
        &[
            (type_url::ENDPOINT, "ns/new/http", "e-new"),
            (type_url::ROUTE, "r", "r-new"),
        ],
        &[("ns/new/80", "ns/new/http")],
    );
    assert_eq!(
        seen(d.push(&after)),
        vec![(type_url::CLUSTER.to_owned(), s(&["ns/new/80"]), s(&[]))],
        "the new cluster only; the route and the removals wait"
    );
    assert!(d.push(&after).is_empty(), "still waiting");
    d.on_request(delta_request(
        type_url::ENDPOINT,
        &["ns/new/http"],
        &["ns/old/http"],
    ))
    .unwrap();
    assert_eq!(
        seen(d.push(&after)),
        vec![
            (type_url::ENDPOINT.to_owned(), s(&["ns/new/http"]), s(&[])),
            (type_url::ROUTE.to_owned(), s(&["r"]), s(&[])),
            (type_url::CLUSTER.to_owned(), s(&[]), s(&["ns/old/80"])),
        ]
    );
    assert!(d.push(&after).is_empty());
}

#[test]
fn delta_cds_nack_lifts_the_wait_for_endpoints() {
    let mut d = delta();
    let snap = snapshot_with_clusters(
        &[(type_url::ROUTE, "r", "r")],
        &[("ns/bad/80", "ns/bad/http")],
    );
    d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::ROUTE, &["r"], &[]))
        .unwrap();
    let sent = d.push(&snap);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].type_url, type_url::CLUSTER);
    d.on_request(DeltaDiscoveryRequest {
        response_nonce: sent[0].nonce.clone(),
        error_detail: Some(envoy_types::pb::google::rpc::Status {
            message: "rejected".into(),
            ..Default::default()
        }),
        ..delta_request(type_url::CLUSTER, &[], &[])
    })
    .unwrap();
    let sent = d.push(&snap);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].type_url, type_url::ROUTE);
}

fn delta_names(responses: &[DeltaDiscoveryResponse]) -> Vec<(String, Vec<String>)> {
    responses
        .iter()
        .map(|r| {
            (
                r.type_url.clone(),
                r.resources.iter().map(|x| x.name.clone()).collect(),
            )
        })
        .collect()
}

fn delta_verdict(
    d: &mut DeltaStream,
    response: &DeltaDiscoveryResponse,
    error: Option<&str>,
) -> Vec<Verdict> {
    d.on_request(DeltaDiscoveryRequest {
        response_nonce: response.nonce.clone(),
        error_detail: error.map(|message| envoy_types::pb::google::rpc::Status {
            message: message.into(),
            ..Default::default()
        }),
        ..delta_request(&response.type_url, &[], &[])
    })
    .unwrap()
}

#[test]
fn delta_resends_everything_a_nack_rejected_once_it_changes() {
    let mut d = delta();
    d.on_request(delta_request(type_url::SECRET, &["victim", "bad"], &[]))
        .unwrap();
    let v1 = snapshot(&[
        (type_url::SECRET, "victim", "v1"),
        (type_url::SECRET, "bad", "b1"),
    ]);
    let sent = d.push(&v1);
    let verdicts = delta_verdict(&mut d, &sent[0], None);
    assert!(matches!(&verdicts[..], [Verdict::Ack { resources, .. }] if resources.len() == 2));

    // The victim's new certificate goes out with a bad one; Envoy rejects the response.
    let v2 = snapshot(&[
        (type_url::SECRET, "victim", "v2"),
        (type_url::SECRET, "bad", "b2"),
    ]);
    let sent = d.push(&v2);
    assert_eq!(
        delta_names(&sent),
        vec![(
            type_url::SECRET.to_owned(),
            vec!["bad".into(), "victim".into()]
        )]
    );
    let verdicts = delta_verdict(&mut d, &sent[0], Some("bad key"));
    assert!(
        matches!(&verdicts[..], [Verdict::Nack { resources, error, .. }]
            if resources.len() == 2 && error == "bad key")
    );
    // Not resent while unchanged.
    assert!(d.push(&v2).is_empty());

    // The bad one is fixed: the victim, which the Envoy never accepted, is resent too.
    let v3 = snapshot(&[
        (type_url::SECRET, "victim", "v2"),
        (type_url::SECRET, "bad", "b3"),
    ]);
    assert_eq!(
        delta_names(&d.push(&v3)),
        vec![(
            type_url::SECRET.to_owned(),
            vec!["bad".into(), "victim".into()]
        )]
    );
    // A verdict on an unknown nonce is none.
    assert!(delta_verdict(&mut d, &sent[0], None).is_empty());
}

#[test]
fn delta_back_to_the_accepted_version_after_a_nack_sends_nothing() {
    let mut d = delta();
    d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
        .unwrap();
    let v1 = snapshot(&[(type_url::CLUSTER, "c", "c1")]);
    let sent = d.push(&v1);
    delta_verdict(&mut d, &sent[0], None);
    let sent = d.push(&snapshot(&[(type_url::CLUSTER, "c", "c2")]));
    delta_verdict(&mut d, &sent[0], Some("bad"));
    // What the cache serves after the NACK: the accepted version, which the Envoy has.
    assert!(d.push(&v1).is_empty());
}

#[test]
fn sotw_verdicts_follow_the_version_envoy_reports() {
    let mut s = sotw();
    s.on_request(sotw_request(type_url::LISTENER, &[], ""))
        .unwrap();
    let v1 = snapshot(&[(type_url::LISTENER, "l", "l1")]);
    let sent = s.push(&v1);
    let ack = DiscoveryRequest {
        version_info: sent[0].version_info.clone(),
        ..sotw_request(type_url::LISTENER, &[], &sent[0].nonce)
    };
    let verdicts = s.on_request(ack.clone()).unwrap();
    assert!(matches!(
        &verdicts[..],
        [Verdict::Ack { complete: true, .. }]
    ));
    // Judged once.
    assert!(s.on_request(ack).unwrap().is_empty());

    let sent = s.push(&snapshot(&[(type_url::LISTENER, "l", "l2")]));
    let nack = DiscoveryRequest {
        // Envoy reports the version it still runs.
        version_info: "v1".into(),
        error_detail: Some(envoy_types::pb::google::rpc::Status {
            message: "bad listener".into(),
            ..Default::default()
        }),
        ..sotw_request(type_url::LISTENER, &[], &sent[0].nonce)
    };
    let verdicts = s.on_request(nack).unwrap();
    assert!(
        matches!(&verdicts[..], [Verdict::Nack { version, .. }] if *version == sent[0].version_info)
    );
    // A later request with that nonce and the old version is no ACK.
    let later = DiscoveryRequest {
        version_info: "v1".into(),
        ..sotw_request(type_url::LISTENER, &[], &sent[0].nonce)
    };
    assert!(s.on_request(later).unwrap().is_empty());
    // Back to the accepted content (what the cache serves after the NACK): sent again.
    assert_eq!(s.push(&v1).len(), 1);
    assert_eq!(s.core.metrics.gateway_nacks("ns/gw", type_url::LISTENER), 1);
    assert_eq!(s.core.metrics.nacks(type_url::LISTENER), 1);
}

/// A cluster this Envoy rejected, still served because another Envoy of the instance took it,
/// is never subscribed to: later pushes must not wait for its endpoints (review F5).
#[test]
fn delta_a_rejected_cluster_still_served_does_not_hold_later_pushes() {
    let mut d = delta();
    d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::ENDPOINT, &["ns/ok/http"], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::ROUTE, &["r"], &[]))
        .unwrap();
    let ok = ("ns/ok/80", "ns/ok/http");
    let s1 = snapshot_with_clusters(
        &[
            (type_url::ENDPOINT, "ns/ok/http", "e-ok"),
            (type_url::ROUTE, "r", "r1"),
        ],
        &[ok],
    );
    for response in d.push(&s1) {
        delta_verdict(&mut d, &response, None);
    }
    // A new cluster X: this Envoy rejects it.
    let x = ("ns/x/80", "ns/x/http");
    let s2 = snapshot_with_clusters(
        &[
            (type_url::ENDPOINT, "ns/ok/http", "e-ok"),
            (type_url::ROUTE, "r", "r1"),
        ],
        &[ok, x],
    );
    let sent = d.push(&s2);
    assert_eq!(
        delta_names(&sent),
        vec![(type_url::CLUSTER.to_owned(), vec!["ns/x/80".to_owned()])]
    );
    delta_verdict(&mut d, &sent[0], Some("rejected"));
    // X is still served (unchanged), a cluster Y and a new route come: Y waits for its
    // endpoint subscription, and once it has it the route goes out.
    let y = ("ns/y/80", "ns/y/http");
    let s3 = snapshot_with_clusters(
        &[
            (type_url::ENDPOINT, "ns/ok/http", "e-ok"),
            (type_url::ENDPOINT, "ns/y/http", "e-y"),
            (type_url::ROUTE, "r", "r2"),
        ],
        &[ok, x, y],
    );
    let sent = d.push(&s3);
    assert_eq!(
        delta_names(&sent),
        vec![(type_url::CLUSTER.to_owned(), vec!["ns/y/80".to_owned()])]
    );
    delta_verdict(&mut d, &sent[0], None);
    d.on_request(delta_request(type_url::ENDPOINT, &["ns/y/http"], &[]))
        .unwrap();
    assert_eq!(
        delta_names(&d.push(&s3)),
        vec![
            (type_url::ENDPOINT.to_owned(), vec!["ns/y/http".to_owned()]),
            (type_url::ROUTE.to_owned(), vec!["r".to_owned()]),
        ]
    );
}

/// `count` load assignments `e000`, `e001`, ... with content `tag`.
fn assignments(count: usize, tag: &str) -> InstanceResources {
    let mut r = InstanceResources::default();
    for i in 0..count {
        r.insert(format!("e{i:03}"), endpoint_any(&format!("{tag}-{i}")));
    }
    r
}

fn endpoint_any(content: &str) -> Any {
    Any {
        type_url: type_url::ENDPOINT.to_owned(),
        value: content.as_bytes().to_vec(),
    }
}

/// A Delta stream subscribed to the load assignments `e000`..`e{count-1}` by name (as Envoy
/// subscribes to them) that was sent and ACKed `first`.
fn delta_with_assignments(count: usize, first: &Snapshot) -> DeltaStream {
    let names: Vec<String> = (0..count).map(|i| format!("e{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut d = delta();
    d.on_request(delta_request(type_url::ENDPOINT, &names, &[]))
        .unwrap();
    let sent = d.push(first);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].resources.len(), count);
    delta_verdict(&mut d, &sent[0], None);
    d
}

/// (added, removed) names of each response.
fn delta_changes(responses: &[DeltaDiscoveryResponse]) -> Vec<(Vec<String>, Vec<String>)> {
    responses
        .iter()
        .map(|r| {
            (
                r.resources.iter().map(|x| x.name.clone()).collect(),
                r.removed_resources.clone(),
            )
        })
        .collect()
}

/// A snapshot that says which names changed since the one the stream has: a changed load
/// assignment is sent, an unchanged one is not (not even one replaced by equal content), a
/// removed one is removed, and only the names the snapshot changed are looked at, not all of
/// them.
#[test]
fn delta_push_looks_only_at_the_names_a_snapshot_changed() {
    const N: usize = 500;
    let r1 = assignments(N, "v1");
    let s1 = Snapshot::new(r1.clone());
    let mut d = delta_with_assignments(N, &s1);
    let compared = d.compared();
    assert_eq!(compared, N, "the first push compares everything");

    let mut r2 = r1.clone();
    r2.record_changes();
    r2.insert("e005", endpoint_any("v2-5"));
    // Equal content in a new resource: recorded as a change, but the Envoy has it.
    r2.insert("e006", endpoint_any("v1-6"));
    r2.remove(type_url::ENDPOINT, "e010");
    let s2 = Snapshot::new(r2.clone());
    let sent = d.push(&s2);
    assert_eq!(
        delta_changes(&sent),
        vec![
            (vec!["e005".to_owned()], vec![]),
            (vec![], vec!["e010".to_owned()]),
        ]
    );
    assert_eq!(
        d.compared() - compared,
        3,
        "the three names changed, not {N}"
    );
    assert!(d.push(&s2).is_empty());

    // The next snapshot, made from this one, again by its changes only.
    let compared = d.compared();
    let mut r3 = r2.clone();
    r3.record_changes();
    r3.insert("e007", endpoint_any("v3-7"));
    let sent = d.push(&Snapshot::new(r3));
    assert_eq!(
        delta_changes(&sent),
        vec![(vec!["e007".to_owned()], vec![])]
    );
    assert_eq!(d.compared() - compared, 1);
}

/// A stream that skipped a snapshot (it saw only the one after) gets everything that changed
/// in both: the latest snapshot's change record is relative to the skipped one, not to what the
/// stream has, so every resource is compared.
#[test]
fn delta_stream_behind_by_a_snapshot_gets_everything_that_changed() {
    const N: usize = 50;
    let r1 = assignments(N, "v1");
    let mut d = delta_with_assignments(N, &Snapshot::new(r1.clone()));
    let mut r2 = r1.clone();
    r2.record_changes();
    r2.insert("e001", endpoint_any("v2-1"));
    r2.remove(type_url::ENDPOINT, "e003");
    let mut r3 = r2.clone();
    r3.record_changes();
    r3.insert("e002", endpoint_any("v3-2"));
    let compared = d.compared();
    let sent = d.push(&Snapshot::new(r3));
    assert_eq!(
        delta_changes(&sent),
        vec![
            (vec!["e001".to_owned(), "e002".to_owned()], vec![]),
            (vec![], vec!["e003".to_owned()]),
        ]
    );
    assert_eq!(d.compared() - compared, N - 1, "a full comparison");
}

/// A new cluster that reads a load assignment the Envoy has not subscribed to holds the route
/// back, also when the snapshot names its changes (the clusters found ready before are not
/// looked at again, the new one is).
#[test]
fn delta_new_cluster_in_a_snapshot_of_changes_waits_for_its_endpoints() {
    let mut r1 = InstanceResources::default();
    r1.insert("ns/a/80", eds_cluster("ns/a/80", "ns/a/http"));
    r1.insert("ns/a/http", endpoint_any("a"));
    r1.insert(
        "r",
        Any {
            type_url: type_url::ROUTE.to_owned(),
            value: b"r1".to_vec(),
        },
    );
    let mut d = delta();
    d.on_request(delta_request(type_url::CLUSTER, &[], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::ENDPOINT, &["ns/a/http"], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::ROUTE, &["r"], &[]))
        .unwrap();
    let s1 = Snapshot::new(r1.clone());
    assert_eq!(d.push(&s1).len(), 3);

    // A route change alone goes out at once.
    let mut r2 = r1.clone();
    r2.record_changes();
    r2.insert(
        "r",
        Any {
            type_url: type_url::ROUTE.to_owned(),
            value: b"r2".to_vec(),
        },
    );
    assert_eq!(
        delta_names(&d.push(&Snapshot::new(r2.clone()))),
        vec![(type_url::ROUTE.to_owned(), vec!["r".to_owned()])]
    );

    // A new cluster with a route to it: the route waits for the endpoint subscription.
    let mut r3 = r2.clone();
    r3.record_changes();
    r3.insert("ns/b/80", eds_cluster("ns/b/80", "ns/b/http"));
    r3.insert("ns/b/http", endpoint_any("b"));
    r3.insert(
        "r",
        Any {
            type_url: type_url::ROUTE.to_owned(),
            value: b"r3".to_vec(),
        },
    );
    let s3 = Snapshot::new(r3);
    assert_eq!(
        delta_names(&d.push(&s3)),
        vec![(type_url::CLUSTER.to_owned(), vec!["ns/b/80".to_owned()])]
    );
    d.on_request(delta_request(type_url::ENDPOINT, &["ns/b/http"], &[]))
        .unwrap();
    assert_eq!(
        delta_names(&d.push(&s3)),
        vec![
            (type_url::ENDPOINT.to_owned(), vec!["ns/b/http".to_owned()]),
            (type_url::ROUTE.to_owned(), vec!["r".to_owned()]),
        ]
    );
}

/// What a Delta stream records of what its Envoy has and ACKed (a name and a version per
/// resource, per connected Envoy) points at the served resources' own strings, not at copies.
#[test]
fn delta_records_share_the_resources_names_and_versions() {
    const N: usize = 20;
    let s1 = Snapshot::new(assignments(N, "v1"));
    let d = delta_with_assignments(N, &s1);
    assert_eq!(d.records_sharing(&s1), (N, N));
}

/// A push larger than [`RESPONSE_BYTES`] goes out in several responses of at most that size
/// (tonic keeps its encode buffer at the largest response it sent), each resource once and in
/// order, each with its own nonce whose ACK counts; removals of as many names too.
#[test]
fn delta_large_push_goes_out_in_responses_of_bounded_size() {
    use super::delta::RESPONSE_BYTES;
    use prost::Message as _;
    const N: usize = 4_000;
    let content = "x".repeat(300);
    let name = |i: usize| format!("cluster-{i:05}");
    let names: Vec<String> = (0..N).map(name).collect();
    let entries: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (type_url::ENDPOINT, n.as_str(), content.as_str()))
        .collect();
    let all = snapshot(&entries);
    let mut d = delta();
    d.on_request(delta_request(type_url::ENDPOINT, &[], &[]))
        .unwrap();
    d.on_request(delta_request(type_url::ENDPOINT, &["*"], &[]))
        .unwrap();
    let sent = d.push(&all);
    assert!(sent.len() >= 4, "{} responses", sent.len());
    for response in &sent {
        assert!(
            response.encoded_len() <= RESPONSE_BYTES,
            "{} bytes",
            response.encoded_len()
        );
    }
    let got: Vec<String> = delta_names(&sent)
        .into_iter()
        .flat_map(|(_, names)| names)
        .collect();
    assert_eq!(got, names);
    let nonces: std::collections::BTreeSet<&str> = sent.iter().map(|r| r.nonce.as_str()).collect();
    assert_eq!(nonces.len(), sent.len());
    let mut acked = 0;
    for response in &sent {
        for verdict in delta_verdict(&mut d, response, None) {
            if let Verdict::Ack { resources, .. } = verdict {
                acked += resources.len();
            }
        }
    }
    assert_eq!(acked, N);
    assert!(d.push(&all).is_empty());

    // Every name removed: the removals are cut the same way.
    let gone = d.push(&snapshot(&[(type_url::ENDPOINT, "other", "o")]));
    let removed: Vec<String> = gone
        .iter()
        .flat_map(|r| r.removed_resources.clone())
        .collect();
    assert_eq!(removed, names);
    assert!(gone.iter().all(|r| r.encoded_len() <= RESPONSE_BYTES));
}

/// A push cut into more responses than the 256 that used to be remembered awaiting their ACK
/// (a first push of over 64 MiB) keeps every one: each ACK counts.
#[test]
fn delta_every_response_of_a_long_cut_push_awaits_its_ack() {
    use super::delta::RESPONSE_BYTES;
    const N: usize = 300;
    // Each resource alone in its response.
    let content = "x".repeat(RESPONSE_BYTES / 2 + 1);
    let names: Vec<String> = (0..N).map(|i| format!("e{i:03}")).collect();
    let entries: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (type_url::ENDPOINT, n.as_str(), content.as_str()))
        .collect();
    let all = snapshot(&entries);
    let mut d = delta();
    d.on_request(delta_request(type_url::ENDPOINT, &["*"], &[]))
        .unwrap();
    let sent = d.push(&all);
    assert_eq!(sent.len(), N);
    let acked: usize = sent
        .iter()
        .map(|response| delta_verdict(&mut d, response, None).len())
        .sum();
    assert_eq!(acked, N);
}
