#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;
use crate::api::ingressroute::IngressRouteStatus;
use crate::snapshot::{ChangeSet, Kind, LiveSnapshot, ObjKey, SharedObject};

fn route() -> IngressRoute {
    serde_json::from_value(json!({
        "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
        "metadata": {"namespace": "ns", "name": "r", "uid": "u1", "resourceVersion": "7",
                     "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z",
                     "annotations": {"kubernetes.io/ingress.class": "a"}},
        "spec": {"virtualhost": {"fqdn": "r.example.com"},
                 "routes": [{"match": "/", "services": [{"name": "s", "port": 80}]}]}
    }))
    .unwrap()
}

fn status(s: &str) -> Option<IngressRouteStatus> {
    Some(IngressRouteStatus {
        current_status: s.into(),
        description: format!("{s} IngressRoute"),
    })
}

/// What a status write does to the object: a new status and resourceVersion.
fn written(r: &IngressRoute, s: &str, version: &str) -> IngressRoute {
    let mut w = r.clone();
    w.status = status(s);
    w.metadata.resource_version = Some(version.into());
    w
}

/// An edit of an IngressRoute, named.
type Edit = (&'static str, fn(&mut IngressRoute));

#[test]
fn only_status_resource_version_and_managed_fields_are_invisible_to_the_dag() {
    let r = route();
    assert!(same_for_dag(&r, &r));
    assert!(same_for_dag(&r, &written(&r, "valid", "8")));
    let mut managed = r.clone();
    managed.metadata.managed_fields = Some(vec![Default::default()]);
    assert!(same_for_dag(&r, &managed));

    // Everything else is read (or may be): each is a change for the DAG.
    let edits: [Edit; 9] = [
        ("spec", |r| r.spec.routes[0].match_ = "/x".into()),
        ("class annotation", |r| {
            r.metadata.annotations =
                Some([("kubernetes.io/ingress.class".into(), "b".into())].into())
        }),
        ("creationTimestamp", |r| {
            r.metadata.creation_timestamp = Some(Time(Default::default()))
        }),
        ("uid", |r| r.metadata.uid = Some("u2".into())),
        ("generation", |r| r.metadata.generation = Some(2)),
        ("labels", |r| {
            r.metadata.labels = Some([("a".into(), "b".into())].into())
        }),
        ("deletionTimestamp", |r| {
            r.metadata.deletion_timestamp = Some(Time(Default::default()))
        }),
        ("finalizers", |r| {
            r.metadata.finalizers = Some(vec!["f".into()])
        }),
        ("name", |r| r.metadata.name = Some("other".into())),
    ];
    for (what, edit) in edits {
        let mut e = written(&r, "valid", "9");
        edit(&mut e);
        assert!(!same_for_dag(&r, &e), "{what}");
    }
}

#[test]
fn a_status_write_coming_back_is_listed_for_the_status_round_only() {
    let key = ObjKey::new("ns", "r");
    let r = route();
    let mut live = LiveSnapshot::default();
    assert!(live.upsert(SharedObject::IngressRoute(Arc::new(r.clone()))));
    let (_, first) = live.take();
    assert_eq!(first.objects().count(), 1);

    // The status written comes back: the snapshot holds it, the DAG's list does not.
    let w = written(&r, "valid", "8");
    assert!(live.upsert(SharedObject::IngressRoute(Arc::new(w.clone()))));
    let (snap, changes) = live.take();
    assert_eq!(
        snap.ingress_routes.get(&key).unwrap().status,
        status("valid")
    );
    assert_eq!(changes.objects().count(), 0, "{changes:?}");
    assert_eq!(
        changes.statuses().collect::<Vec<_>>(),
        [(Kind::IngressRoute, &key)]
    );
    assert!(!changes.touches_kind(Kind::IngressRoute));
    assert!(changes.touches_statuses_of(Kind::IngressRoute));
    assert!(!changes.is_empty());

    // The same object again: nothing at all.
    assert!(!live.upsert(SharedObject::IngressRoute(Arc::new(w.clone()))));
    assert!(live.take().1.is_empty());

    // A status and an edit between two takes, either way round: an object change.
    let mut edited = w.clone();
    edited.spec.routes[0].match_ = "/x".into();
    live.upsert(SharedObject::IngressRoute(Arc::new(written(
        &w, "invalid", "9",
    ))));
    live.upsert(SharedObject::IngressRoute(Arc::new(edited.clone())));
    let (_, changes) = live.take();
    assert!(changes.lists(Kind::IngressRoute, &key));
    assert_eq!(changes.statuses().count(), 0);
    live.upsert(SharedObject::IngressRoute(Arc::new(w.clone())));
    live.upsert(SharedObject::IngressRoute(Arc::new(written(
        &w, "orphaned", "11",
    ))));
    let (_, changes) = live.take();
    assert!(changes.lists(Kind::IngressRoute, &key));
    assert_eq!(changes.statuses().count(), 0);
}

#[test]
fn comparing_snapshots_tells_status_changes_apart_too() {
    let key = ObjKey::new("ns", "r");
    let r = route();
    let mut live = LiveSnapshot::default();
    live.upsert(SharedObject::IngressRoute(Arc::new(r.clone())));
    let (old, _) = live.take();
    live.upsert(SharedObject::IngressRoute(Arc::new(written(
        &r, "valid", "8",
    ))));
    let (new, _) = live.take();
    let diff = ChangeSet::diff(&old, &new);
    assert_eq!(diff.objects().count(), 0);
    assert_eq!(
        diff.statuses().collect::<Vec<_>>(),
        [(Kind::IngressRoute, &key)]
    );
    // A whole kind resolved keeps what was listed one by one apart.
    let mut changes = ChangeSet::default();
    changes.insert_status(Kind::IngressRoute, ObjKey::new("ns", "other"));
    changes.insert_kind(Kind::Service);
    let resolved = changes.resolve(&old, &new);
    assert_eq!(resolved.statuses().count(), 1);
    assert!(!resolved.has_whole_kinds());
}

#[test]
fn an_undecodable_route_status_is_invisible_to_the_dag_too() {
    let meta: ObjectMeta =
        serde_json::from_value(json!({"namespace": "ns", "name": "bad", "resourceVersion": "1"}))
            .unwrap();
    let bad = UndecodableRoute {
        metadata: meta,
        error: "spec.routes[0]: invalid type".into(),
        status: None,
    };
    let mut w = bad.clone();
    w.status = status("invalid");
    w.metadata.resource_version = Some("2".into());
    assert!(same_undecodable_for_dag(&bad, &w));
    let mut other = w.clone();
    other.error = "another".into();
    assert!(!same_undecodable_for_dag(&bad, &other));

    let key = ObjKey::new("ns", "bad");
    let mut live = LiveSnapshot::default();
    live.upsert_undecodable_route(key.clone(), bad);
    live.take();
    live.upsert_undecodable_route(key.clone(), w);
    let (snap, changes) = live.take();
    assert!(snap.undecodable_routes.get(&key).unwrap().status.is_some());
    assert_eq!(changes.objects().count(), 0);
    assert!(changes.touches_statuses_of(Kind::UndecodableRoute));
}
