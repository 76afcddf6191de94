#![allow(clippy::unwrap_used)]
use super::*;
use crate::dag::model::ObjectStatus;
use crate::dag::{RouteStatus, Validity};
use crate::snapshot::Object;

fn object(group: Group, name: &str, v: Validity, d: &str) -> ObjectStatus {
    ObjectStatus {
        kind: "IngressRoute".into(),
        api_version: group.api_version().into(),
        namespace: "ns".into(),
        name: name.into(),
        current_status: v,
        description: d.into(),
    }
}

fn dag(gateway: &str, contour: &[Validity], traefik: Vec<ObjectStatus>) -> Dag {
    Dag {
        gateway: gateway.into(),
        statuses: contour
            .iter()
            .enumerate()
            .map(|(i, v)| RouteStatus {
                namespace: "ns".into(),
                name: format!("c{i}"),
                current_status: *v,
                description: String::new(),
            })
            .collect(),
        object_statuses: traefik.into(),
        ..Dag::default()
    }
}

#[test]
fn counts_and_series_include_traefik_objects_by_group() {
    let d = dag(
        "a/gw",
        &[Validity::Valid, Validity::Orphaned],
        vec![
            object(Group::TraefikIo, "t1", Validity::Valid, "ok"),
            object(Group::TraefikIo, "t2", Validity::Invalid, "bad"),
            object(Group::ContainoUs, "t3", Validity::Invalid, "bad"),
        ],
    );
    assert_eq!(
        super::super::route_counts(&d),
        RouteCounts {
            valid: 2,
            invalid: 2,
            orphaned: 1
        }
    );
    let series = series_counts(&d);
    let get = |group| series[&("IngressRoute", group)].clone();
    assert_eq!(
        get("contour.heptio.com"),
        RouteCounts {
            valid: 1,
            invalid: 0,
            orphaned: 1
        }
    );
    assert_eq!(
        get("traefik.io"),
        RouteCounts {
            valid: 1,
            invalid: 1,
            orphaned: 0
        }
    );
    assert_eq!(
        get("traefik.containo.us"),
        RouteCounts {
            valid: 0,
            invalid: 1,
            orphaned: 0
        }
    );
    // Every series is there, even empty.
    assert_eq!(series_counts(&Dag::default()).len(), ROUTE_SERIES.len());
}

fn snapshot_with(group: Group, name: &str, uid: &str) -> ClusterSnapshot {
    let value = serde_json::json!({
        "apiVersion": group.api_version(), "kind": "IngressRoute",
        "metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": "7"},
        "spec": {"routes": []},
    });
    let mut snap = ClusterSnapshot::default();
    snap.apply(Object::TraefikRoute(
        crate::api::traefik::decode(value).unwrap(),
    ));
    snap
}

#[test]
fn a_verdict_is_announced_once_per_change_and_again_for_a_new_object() {
    let snap = snapshot_with(Group::TraefikIo, "r", "u1");
    let invalid = dag(
        "a/gw",
        &[],
        vec![object(Group::TraefikIo, "r", Validity::Invalid, "bad")],
    );
    let mut announced = TraefikAnnounced::new();
    let todo = to_announce(&snap, traefik_verdicts([&invalid]), &announced);
    assert_eq!(todo.len(), 1);
    let (r, reference, status) = &todo[0];
    assert_eq!(reference.uid.as_deref(), Some("u1"));
    assert_eq!(
        reference.api_version.as_deref(),
        Some("traefik.io/v1alpha1")
    );
    assert_eq!(reference.resource_version.as_deref(), Some("7"));
    assert_eq!(status.current_status, "invalid");
    announced.insert(r.clone(), (reference.uid.clone(), status.clone()));
    // The same verdict again: nothing.
    assert!(to_announce(&snap, traefik_verdicts([&invalid]), &announced).is_empty());
    // Another reason: announced.
    let worse = dag(
        "a/gw",
        &[],
        vec![object(Group::TraefikIo, "r", Validity::Invalid, "worse")],
    );
    assert_eq!(
        to_announce(&snap, traefik_verdicts([&worse]), &announced).len(),
        1
    );
    // The object deleted and created again (new uid): announced.
    let again = snapshot_with(Group::TraefikIo, "r", "u2");
    assert_eq!(
        to_announce(&again, traefik_verdicts([&invalid]), &announced).len(),
        1
    );
    // An object the snapshot no longer holds: nothing to record an event on.
    let other = snapshot_with(Group::ContainoUs, "r", "u1");
    assert!(to_announce(&other, traefik_verdicts([&invalid]), &announced).is_empty());
}

#[test]
fn verdicts_of_several_gateways_combine_like_statuses() {
    let a = dag(
        "a/gw",
        &[],
        vec![object(Group::TraefikIo, "r", Validity::Valid, "ok")],
    );
    let b = dag(
        "b/gw",
        &[],
        vec![object(Group::TraefikIo, "r", Validity::Invalid, "bad")],
    );
    let v = traefik_verdicts([&a, &b]);
    assert_eq!(v.len(), 1);
    let status = v.values().next().unwrap();
    assert_eq!(
        (status.current_status.as_str(), status.description.as_str()),
        // Found on one Gateway only: it names that Gateway (review 7 R7.2).
        ("invalid", "Gateway b/gw: bad")
    );
    assert_eq!(traefik_verdicts([&b, &a]), v);
}

/// An IngressRoute and an IngressRouteTCP with the same namespace and name: each verdict is
/// recorded on the object of its kind (by uid), and counted in the series of its kind.
#[test]
fn an_ingressroutetcp_verdict_goes_to_the_tcp_object_and_its_own_series() {
    let mut snap = snapshot_with(Group::TraefikIo, "r", "http-uid");
    let tcp = serde_json::json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP",
        "metadata": {"namespace": "ns", "name": "r", "uid": "tcp-uid", "resourceVersion": "9"},
        "spec": {"routes": []},
    });
    snap.apply(Object::TraefikTcpRoute(
        crate::api::traefik::decode(tcp).unwrap(),
    ));
    let mut tcp_status = object(Group::TraefikIo, "r", Validity::Invalid, "tcp bad");
    tcp_status.kind = "IngressRouteTCP".into();
    let d = dag(
        "a/gw",
        &[],
        vec![
            object(Group::TraefikIo, "r", Validity::Valid, "ok"),
            tcp_status,
        ],
    );
    let todo = to_announce(&snap, traefik_verdicts([&d]), &TraefikAnnounced::new());
    let got: Vec<_> = todo
        .iter()
        .map(|(r, reference, status)| {
            (
                r.kind.as_str(),
                reference.kind.as_deref(),
                reference.uid.as_deref(),
                status.current_status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "IngressRoute",
                Some("IngressRoute"),
                Some("http-uid"),
                "valid"
            ),
            (
                "IngressRouteTCP",
                Some("IngressRouteTCP"),
                Some("tcp-uid"),
                "invalid"
            ),
        ]
    );
    // Without the IngressRouteTCP in the snapshot, nothing to record its verdict on.
    let only_http = snapshot_with(Group::TraefikIo, "r", "http-uid");
    let todo = to_announce(&only_http, traefik_verdicts([&d]), &TraefikAnnounced::new());
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].0.kind, "IngressRoute");
    let series = series_counts(&d);
    let ones = |valid, invalid| RouteCounts {
        valid,
        invalid,
        orphaned: 0,
    };
    assert_eq!(series[&("IngressRoute", "traefik.io")], ones(1, 0));
    assert_eq!(series[&("IngressRouteTCP", "traefik.io")], ones(0, 1));
}

/// A Middleware's own verdict is recorded on the Middleware (by uid, even beside a route of
/// the same name) and counted in its own gauge series, never in the route counts.
#[test]
fn a_middleware_verdict_goes_to_the_middleware_and_not_to_the_route_counts() {
    let mut snap = snapshot_with(Group::TraefikIo, "r", "http-uid");
    let mw = serde_json::json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
        "metadata": {"namespace": "ns", "name": "r", "uid": "mw-uid", "resourceVersion": "3"},
        "spec": {"addPrefix": {"prefix": "/p"}},
    });
    snap.apply(Object::TraefikMiddleware(
        crate::api::traefik::decode(mw).unwrap(),
    ));
    let mut mw_status = object(Group::TraefikIo, "r", Validity::Invalid, "mw bad");
    mw_status.kind = "Middleware".into();
    let d = dag(
        "a/gw",
        &[],
        vec![
            object(Group::TraefikIo, "r", Validity::Valid, "ok"),
            mw_status,
        ],
    );
    let todo = to_announce(&snap, traefik_verdicts([&d]), &TraefikAnnounced::new());
    let got: Vec<_> = todo
        .iter()
        .map(|(r, reference, _)| (r.kind.as_str(), reference.uid.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("IngressRoute", Some("http-uid")),
            ("Middleware", Some("mw-uid"))
        ]
    );
    let ones = |valid, invalid| RouteCounts {
        valid,
        invalid,
        orphaned: 0,
    };
    assert_eq!(super::super::route_counts(&d), ones(1, 0));
    let counts = StatusTally::of(&d).counts;
    assert_eq!(
        series_of(&counts)[&("IngressRoute", "traefik.io")],
        ones(1, 0)
    );
    let objects = object_series_of(&counts);
    assert_eq!(objects[&("Middleware", "traefik.io")], ones(0, 1));
    assert_eq!(objects[&("TLSOption", "traefik.io")], ones(0, 0));
    assert_eq!(objects.len(), OBJECT_SERIES.len());
}
