#![allow(clippy::unwrap_used, clippy::panic)]
use super::*;
use crate::source::watched::{WatchEvent, WatchedSnapshot};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

fn entry(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
    APIResource {
        name: name.into(),
        kind: kind.into(),
        namespaced,
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..APIResource::default()
    }
}

const ALL_VERBS: [&str; 8] = [
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

fn list(group_version: &str, resources: Vec<APIResource>) -> APIResourceList {
    APIResourceList {
        group_version: group_version.into(),
        resources,
    }
}

#[test]
fn each_kind_is_served_on_its_own() {
    let both = list(
        "traefik.io/v1alpha1",
        vec![
            entry("ingressroutes", "IngressRoute", true, &ALL_VERBS),
            entry("ingressroutes/status", "IngressRoute", true, &["get"]),
            entry("middlewares", "Middleware", true, &ALL_VERBS),
            entry("tlsoptions", "TLSOption", true, &ALL_VERBS),
            // A kind Sluice does not read.
            entry("ingressrouteudps", "IngressRouteUDP", true, &ALL_VERBS),
        ],
    );
    let (kinds, notes) = served_kinds(Group::TraefikIo, &both);
    assert_eq!(
        kinds,
        BTreeSet::from([
            TraefikKind::IngressRoute,
            TraefikKind::Middleware,
            TraefikKind::TlsOption
        ])
    );
    assert!(notes.is_empty(), "{notes:?}");
    // Only IngressRoutes installed: Middlewares are not watched.
    let one = list(
        "traefik.io/v1alpha1",
        vec![entry("ingressroutes", "IngressRoute", true, &ALL_VERBS)],
    );
    assert_eq!(
        served_kinds(Group::TraefikIo, &one).0,
        BTreeSet::from([TraefikKind::IngressRoute])
    );
}

#[test]
fn odd_discovery_answers_watch_nothing_and_say_why() {
    let odd = list(
        "traefik.io/v1alpha1",
        vec![
            entry("ingressroutes", "IngressRoute", true, &["get", "list"]),
            entry("middlewares", "Middleware", false, &ALL_VERBS),
        ],
    );
    let (kinds, notes) = served_kinds(Group::TraefikIo, &odd);
    assert!(kinds.is_empty());
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("ingressroutes.traefik.io is served without list and watch"));
    assert!(notes[1].contains("middlewares.traefik.io is cluster-scoped"));
    let wrong_kind = list(
        "traefik.containo.us/v1alpha1",
        vec![entry("middlewares", "Other", true, &ALL_VERBS)],
    );
    let (kinds, notes) = served_kinds(Group::ContainoUs, &wrong_kind);
    assert!(kinds.is_empty());
    assert!(notes[0].contains("kind \"Other\""), "{notes:?}");
    // An answer for another group version, an empty one: nothing, no panic.
    let other = list(
        "example.com/v1",
        vec![entry("ingressroutes", "IngressRoute", true, &ALL_VERBS)],
    );
    assert!(served_kinds(Group::TraefikIo, &other).0.is_empty());
    assert!(
        served_kinds(Group::TraefikIo, &APIResourceList::default())
            .0
            .is_empty()
    );
}

#[test]
fn a_failed_discovery_keeps_what_is_watched_of_that_group() {
    let served = list(
        "traefik.containo.us/v1alpha1",
        vec![entry("middlewares", "Middleware", true, &ALL_VERBS)],
    );
    let current = BTreeSet::from([
        (TraefikKind::IngressRoute, Group::TraefikIo),
        (TraefikKind::IngressRoute, Group::ContainoUs),
    ]);
    let (want, notes) = wanted(
        &[
            (Group::TraefikIo, GroupAnswer::Failed("503".into())),
            (Group::ContainoUs, GroupAnswer::Served(served)),
        ],
        &current,
    );
    assert_eq!(
        want,
        BTreeSet::from([
            (TraefikKind::IngressRoute, Group::TraefikIo),
            (TraefikKind::Middleware, Group::ContainoUs),
        ])
    );
    assert_eq!(notes.len(), 1);
    let (want, _) = wanted(
        &[
            (Group::TraefikIo, GroupAnswer::Absent),
            (Group::ContainoUs, GroupAnswer::Absent),
        ],
        &current,
    );
    assert!(want.is_empty());
}

#[test]
fn the_log_line_names_what_is_and_is_not_watched() {
    let none = describe(&BTreeSet::new());
    assert!(none.starts_with("Traefik's CRDs are not served"), "{none}");
    assert!(none.contains("middlewares.traefik.containo.us"), "{none}");
    let some = describe(&BTreeSet::from([(
        TraefikKind::IngressRoute,
        Group::TraefikIo,
    )]));
    assert!(
        some.starts_with("watching Traefik objects: ingressroutes.traefik.io; not served"),
        "{some}"
    );
    let all: BTreeSet<Resource> = GROUPS
        .iter()
        .flat_map(|g| WATCHED_KINDS.iter().map(move |k| (*k, *g)))
        .collect();
    assert!(!describe(&all).contains("not served"));
}

fn dynamic(ns: &str, name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        // A list item may come without apiVersion and kind: the watch sets them.
        "metadata": {"namespace": ns, "name": name, "uid": "u1"},
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn watched_objects_are_decoded_per_group_and_leave_with_their_kind() {
    let route = dynamic(
        "team",
        "r",
        serde_json::json!({"routes": [{"match": "Host(`a`)", "services": [{"name": "s", "port": "http"}]}]}),
    );
    let Watched::Object(SharedObject::TraefikRoute(r)) = watched(
        (TraefikKind::IngressRoute, Group::ContainoUs),
        route.clone(),
    ) else {
        panic!("not a Traefik route");
    };
    assert_eq!(r.group, Group::ContainoUs);
    assert!(r.decoded.is_ok(), "{:?}", r.decoded);
    assert_eq!(r.metadata.uid.as_deref(), Some("u1"));
    // One that does not decode is held, with the reason.
    let bad = dynamic("team", "m", serde_json::json!({"addPrefix": {"prefix": 3}}));
    let Watched::Object(SharedObject::TraefikMiddleware(m)) =
        watched((TraefikKind::Middleware, Group::TraefikIo), bad)
    else {
        panic!("not a Traefik middleware");
    };
    assert!(m.decoded.is_err());

    // Through the kept snapshot: listed, then the kind forgotten.
    let mut snap = WatchedSnapshot::default();
    let kind = Kind::Traefik(TraefikKind::IngressRoute, Group::ContainoUs);
    let id = WatchId::new(kind, None, 0);
    snap.add_watch(id.clone());
    snap.apply(&id, WatchEvent::Init);
    snap.apply(
        &id,
        WatchEvent::InitApply(watched(
            (TraefikKind::IngressRoute, Group::ContainoUs),
            route,
        )),
    );
    snap.apply(&id, WatchEvent::InitDone);
    assert!(snap.all_listed(None));
    assert_eq!(snap.snapshot().traefik_routes.legacy.len(), 1);
    let (_, changes) = snap.take();
    assert!(!changes.is_empty());
    snap.stop_watch(&id);
    snap.forget_kind(kind);
    assert!(snap.snapshot().traefik_routes.is_empty());
    let (_, changes) = snap.take();
    assert_eq!(
        changes.objects().collect::<Vec<_>>(),
        [(kind, &ObjKey::new("team", "r"))]
    );
}

#[test]
fn every_watched_kind_decodes_into_its_own_kind_of_both_groups() {
    for kind in WATCHED_KINDS {
        for group in GROUPS {
            let obj = dynamic("team", "x", serde_json::json!({}));
            let Watched::Object(o) = watched((kind, group), obj) else {
                panic!("{kind:?} of {group:?} was not held");
            };
            assert_eq!(o.kind(), Kind::Traefik(kind, group));
            assert_eq!(o.key(), ObjKey::new("team", "x"));
        }
    }
}
