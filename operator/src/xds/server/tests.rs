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
