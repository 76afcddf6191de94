#![allow(clippy::unwrap_used)]

use super::apply::is_owned_by;
use super::*;
use crate::api::GatewaySpec;
use crate::api::gateway::GatewayStatus;
use crate::provision::status::{
    CONDITION_DEGRADED, ObjectFailure, ObjectProblem, REASON_APPLY_FAILED, REASON_OBJECT_NOT_OWNED,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};

fn gw(uid: Option<&str>) -> Gateway {
    let mut g = Gateway::new("edge", GatewaySpec::default());
    g.metadata.uid = uid.map(str::to_owned);
    g
}

#[test]
fn the_pods_selector_selects_the_daemon_sets_pods() {
    let gw = crate::provision::fixtures::gateway("shop", "edge");
    let desired = provision::desired(&gw, &crate::provision::fixtures::ctx(), None).unwrap();
    let template = desired.daemon_set.spec.unwrap().template.metadata.unwrap();
    let pod_labels = template.labels.unwrap();
    let selector = pods_selector("edge");
    assert_eq!(
        selector,
        "app.kubernetes.io/name=envoy,sluice.dev/gateway=edge"
    );
    for term in selector.split(',') {
        let (k, v) = term.split_once('=').unwrap();
        assert_eq!(pod_labels.get(k).map(String::as_str), Some(v), "{term}");
    }
}

#[test]
fn only_the_same_undeleted_gateway_is_reconciled() {
    assert!(is_same_live_object(&gw(Some("a")), &gw(Some("a"))));
    // Deleted and re-created under the same name: the cached object is gone.
    assert!(!is_same_live_object(&gw(Some("b")), &gw(Some("a"))));
    assert!(!is_same_live_object(&gw(None), &gw(None)));
    let mut deleting = gw(Some("a"));
    deleting.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    assert!(!is_same_live_object(&deleting, &gw(Some("a"))));
}

#[test]
fn rejections_name_the_one_ingressroute_they_come_from() {
    #![allow(clippy::unwrap_used)]
    use crate::xds::cache::{InstanceResources, type_url};
    use crate::xds::translate::fixture::{cluster_name, eds_cluster, route, vhost};
    use envoy_types::pb::google::protobuf::Any;

    let dag = Dag {
        virtual_hosts: vec![vhost("a.example.com", vec![route("/", &[("a", 80, 1)])])].into(),
        clusters: vec![eds_cluster("a", 80)].into(),
        ..Dag::default()
    };
    let cache = Cache::new();
    let mut resources = InstanceResources::default();
    let name = cluster_name("a", 80);
    resources.insert(
        name.clone(),
        Any {
            type_url: type_url::CLUSTER.into(),
            value: b"bad".to_vec(),
        },
    );
    cache.set("ns/gw", resources);
    let latest = cache.get("ns/gw").unwrap();
    let sent: Vec<_> = latest
        .resources(type_url::CLUSTER)
        .unwrap()
        .values()
        .cloned()
        .collect();
    cache.nack(
        "ns/gw",
        type_url::CLUSTER,
        "v1",
        "envoy",
        "bad lb_policy",
        &sent,
    );

    let reports = rejection_reports(cache.rejections("ns/gw"), Some(&dag));
    assert_eq!(
        reports,
        vec![RejectionReport {
            kind: "Cluster".into(),
            resources: vec![name],
            ingress_route: Some("default/root".into()),
            ingress_route_api_version: None,
            error: "bad lb_policy".into(),
        }]
    );
    // Without a DAG, no IngressRoute is named.
    assert_eq!(
        rejection_reports(cache.rejections("ns/gw"), None)[0].ingress_route,
        None
    );
}

fn status_with_degraded(status: &str, reason: &str, message: &str) -> GatewayStatus {
    GatewayStatus {
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: CONDITION_DEGRADED.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }],
        ..GatewayStatus::default()
    }
}

#[test]
fn an_event_is_recorded_when_the_failure_changes_only() {
    let failures = [ObjectFailure {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: "ns".into(),
        name: "edge-envoy-bootstrap".into(),
        problem: ObjectProblem::NotOwned,
    }];
    let not_owned = status_with_degraded("True", REASON_OBJECT_NOT_OWNED, "ConfigMap ns/x");
    let event = failure_event(None, &not_owned, &failures).unwrap();
    assert_eq!(event.type_, EventType::Warning);
    assert_eq!(event.reason, REASON_OBJECT_NOT_OWNED);
    assert_eq!(event.note.as_deref(), Some("ConfigMap ns/x"));
    let related = event.secondary.unwrap();
    assert_eq!(
        (related.kind.as_deref(), related.name.as_deref()),
        (Some("ConfigMap"), Some("edge-envoy-bootstrap"))
    );
    // The same condition again: nothing new.
    assert!(failure_event(Some(&not_owned), &not_owned, &failures).is_none());
    // Another message: a new event.
    let other = status_with_degraded("True", REASON_APPLY_FAILED, "applying Service ns/x: no");
    assert!(failure_event(Some(&not_owned), &other, &failures).is_some());
    // Other reasons for Degraded, or none, record nothing here.
    for (status, reason) in [("True", "EnvoyPodsFailing"), ("False", "AsExpected")] {
        let s = status_with_degraded(status, reason, "m");
        assert!(failure_event(Some(&not_owned), &s, &[]).is_none());
    }
    // Notes stay within the API's limit, cut on a character boundary.
    let long = status_with_degraded("True", REASON_APPLY_FAILED, &"é".repeat(1000));
    let note = failure_event(None, &long, &failures).unwrap().note.unwrap();
    assert_eq!(note.len(), 1024);
}

fn status_of(conditions: &[(&str, &str, &str, &str)]) -> GatewayStatus {
    GatewayStatus {
        conditions: conditions
            .iter()
            .map(|(type_, status, reason, message)| Condition {
                type_: (*type_).into(),
                status: (*status).into(),
                reason: (*reason).into(),
                message: (*message).into(),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            })
            .collect(),
        ..GatewayStatus::default()
    }
}

fn reasons(events: &[Event]) -> Vec<(EventType, &str, &str)> {
    events
        .iter()
        .map(|e| (e.type_, e.reason.as_str(), e.note.as_deref().unwrap_or("")))
        .collect()
}

#[test]
fn status_changes_record_provisioning_rollouts_and_rejections_once() {
    let ok = ("Degraded", "False", "AsExpected", "m");
    let missing = status_of(&[
        ("Available", "False", "DaemonSetMissing", "m"),
        ("Progressing", "True", "Provisioning", "creating"),
        ok,
    ]);
    let rolling = status_of(&[
        ("Available", "False", "NoEnvoyReady", "m"),
        (
            "Progressing",
            "True",
            "RollingOut",
            "0 of 1 run the current template",
        ),
        ok,
    ]);
    let done = status_of(&[
        ("Available", "True", "EnvoyReady", "m"),
        ("Progressing", "False", "RolloutComplete", "all 1 run it"),
        ok,
    ]);
    // Without a DaemonSet, nothing yet; once it exists, provisioned and rolling out.
    assert!(status_events(None, &missing, &[]).is_empty());
    let first = [
        (
            EventType::Normal,
            "Provisioned",
            "the Envoy DaemonSet, its Service and configuration are applied",
        ),
        (
            EventType::Normal,
            "RolloutStarted",
            "0 of 1 run the current template",
        ),
    ];
    assert_eq!(
        reasons(&status_events(Some(&missing), &rolling, &[])),
        first
    );
    assert_eq!(reasons(&status_events(None, &rolling, &[])), first);
    assert_eq!(
        reasons(&status_events(Some(&rolling), &done, &[])),
        vec![(EventType::Normal, "RolloutFinished", "all 1 run it")]
    );
    // Nothing changed: nothing recorded, however often.
    for s in [&missing, &rolling, &done] {
        assert!(status_events(Some(s), s, &[]).is_empty());
    }
    // A new rollout.
    assert_eq!(
        reasons(&status_events(Some(&done), &rolling, &[])),
        vec![(
            EventType::Normal,
            "RolloutStarted",
            "0 of 1 run the current template"
        )]
    );
    // Objects not applied, then applied again: provisioned again.
    let blocked = status_of(&[
        ("Available", "True", "EnvoyReady", "m"),
        ("Progressing", "False", "RolloutComplete", "all 1 run it"),
        ("Degraded", "True", REASON_APPLY_FAILED, "no"),
    ]);
    assert!(status_events(Some(&done), &blocked, &[]).is_empty());
    assert_eq!(
        reasons(&status_events(Some(&blocked), &done, &[]))[0].1,
        "Provisioned"
    );
    // Envoy rejects configuration: one Warning naming the IngressRoute, again only when
    // what was rejected changes.
    let rejected = |m: &str| {
        status_of(&[
            ("Available", "True", "EnvoyReady", "m"),
            ("Progressing", "False", "RolloutComplete", "all 1 run it"),
            ("Degraded", "True", "EnvoyRejectedConfiguration", m),
        ])
    };
    let report = [RejectionReport {
        kind: "Cluster".into(),
        resources: vec!["c".into()],
        ingress_route: Some("team/web".into()),
        ingress_route_api_version: None,
        error: "bad".into(),
    }];
    let events = status_events(Some(&done), &rejected("a"), &report);
    assert_eq!(
        reasons(&events),
        vec![(EventType::Warning, "EnvoyRejectedConfiguration", "a")]
    );
    let related = events[0].secondary.clone().unwrap();
    assert_eq!(
        (
            related.kind.as_deref(),
            related.namespace.as_deref(),
            related.name.as_deref()
        ),
        (Some("IngressRoute"), Some("team"), Some("web"))
    );
    assert!(status_events(Some(&rejected("a")), &rejected("a"), &report).is_empty());
    // A Traefik owner is no Contour IngressRoute: the related object is of its kind and API
    // version, or none when that is not known, never a wrong one.
    for (owner, kind) in [
        ("traefik:team/web", "IngressRoute"),
        ("traefik-tcp:team/web", "IngressRouteTCP"),
    ] {
        let mut traefik = [RejectionReport {
            ingress_route: Some(owner.into()),
            ..report[0].clone()
        }];
        let events = status_events(Some(&done), &rejected("a"), &traefik);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].secondary, None, "{owner}");
        traefik[0].ingress_route_api_version = Some("traefik.containo.us/v1alpha1".into());
        let events = status_events(Some(&done), &rejected("a"), &traefik);
        let related = events[0].secondary.clone().unwrap();
        assert_eq!(
            (
                related.api_version.as_deref(),
                related.kind.as_deref(),
                related.namespace.as_deref(),
                related.name.as_deref()
            ),
            (
                Some("traefik.containo.us/v1alpha1"),
                Some(kind),
                Some("team"),
                Some("web")
            ),
            "{owner}"
        );
    }
    assert_eq!(
        status_events(Some(&rejected("a")), &rejected("b"), &[]).len(),
        1
    );
    assert!(status_events(Some(&rejected("a")), &done, &[]).is_empty());
}

#[test]
fn ownership_is_by_uid() {
    let mut meta = ObjectMeta::default();
    assert!(!is_owned_by(&meta, "u1"));
    meta.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "sluice.dev/v1alpha1".into(),
            kind: "Gateway".into(),
            name: "edge".into(),
            uid: "u1".into(),
            ..Default::default()
        },
    ]);
    assert!(is_owned_by(&meta, "u1"));
    // Same name, another Gateway (deleted and re-created): not owned.
    assert!(!is_owned_by(&meta, "u2"));
    assert!(!is_owned_by(&meta, ""));
}
