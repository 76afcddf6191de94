//! The watched snapshot against one built from scratch: random sequences of watch events
//! (upserts, deletes, relists, watches that miss events until they relist, interrupted relists,
//! Secret watches replaced) applied event by event must give, whenever every watch is in step,
//! the snapshot (objects and indexes), unloaded Gateways and Secret scope that the same objects
//! give from scratch; and every change set taken must list at least everything that changed.
//! The seed is printed; `SLUICE_WATCH_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointSubset, Endpoints, Secret, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ObjectMeta;

use super::*;
use crate::api::gateway::GatewaySpec;
use crate::api::ingressroute::{
    CertificateDelegation, Route, Service as IrService, TLSCertificateDelegationSpec,
    UpstreamValidation,
};
use crate::api::traefik::Group;
use crate::api::{Gateway, IngressRouteSpec, TLSCertificateDelegation};
use crate::snapshot::{Object, SERVICE_NAME_LABEL, TraefikKind};
use crate::source::kube::secret_scope;
use sluice_e2e::rng::Rng;

const NAMESPACES: [&str; 2] = ["a", "b"];
const KINDS: [Kind; 8] = [
    Kind::Gateway,
    Kind::Traefik(TraefikKind::Middleware, Group::TraefikIo),
    Kind::IngressRoute,
    Kind::Delegation,
    Kind::Service,
    Kind::Endpoints,
    Kind::EndpointSlice,
    Kind::Secret,
];

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

/// A random object of `kind` (sometimes one that does not decode) named from a small pool, so
/// that upserts replace, and sometimes repeat, what is there.
fn random_object(rng: &mut Rng, kind: Kind, ns: &str) -> Watched {
    let name = format!("{}{}", kind.as_str().to_lowercase(), rng.below(4));
    let key = ObjKey::new(ns, name.as_str());
    let v = rng.below(3);
    let object = match kind {
        Kind::Gateway if rng.chance(15) => {
            return Watched::UnloadedGateway(key, format!("spec.rootNamespaces: bad {v}"));
        }
        Kind::Gateway => {
            let mut gw = Gateway::new(
                &name,
                GatewaySpec {
                    // Rarely every namespace (the Secret scope is then everything).
                    root_namespaces: if rng.chance(5) {
                        vec![]
                    } else {
                        vec![format!("root-{v}")]
                    },
                    allow_cross_namespace: rng.chance(50),
                    ..GatewaySpec::default()
                },
            );
            gw.metadata.namespace = Some(ns.into());
            Object::Gateway(gw)
        }
        Kind::IngressRoute if rng.chance(15) => {
            return Watched::UndecodableRoute(
                key,
                Box::new(UndecodableRoute {
                    metadata: meta(ns, &name),
                    error: format!("spec.routes[0].services[0].port: invalid {v}"),
                    status: None,
                }),
            );
        }
        Kind::IngressRoute => {
            let mut ir = IngressRoute::new(
                &name,
                IngressRouteSpec {
                    routes: vec![Route {
                        match_: format!("/{v}"),
                        services: vec![IrService {
                            name: "service0".into(),
                            port: 80,
                            validation: rng
                                .chance(40)
                                .then(|| Box::new(UpstreamValidation::default())),
                            ..IrService::default()
                        }],
                        ..Route::default()
                    }],
                    ..IngressRouteSpec::default()
                },
            );
            ir.metadata.namespace = Some(ns.into());
            Object::IngressRoute(ir)
        }
        Kind::Delegation if rng.chance(15) => return Watched::Absent(key),
        Kind::Delegation => {
            let mut d = TLSCertificateDelegation::new(
                &name,
                TLSCertificateDelegationSpec {
                    delegations: vec![CertificateDelegation {
                        secret_name: format!("secret{v}"),
                        target_namespaces: vec!["*".into()],
                    }],
                },
            );
            d.metadata.namespace = Some(ns.into());
            Object::Delegation(d)
        }
        Kind::Service => Object::Service(Service {
            metadata: meta(ns, &name),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    port: 80 + i32::try_from(v).unwrap(),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }),
        Kind::Endpoints => Object::Endpoints(Endpoints {
            metadata: meta(ns, &name),
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: format!("10.0.0.{v}"),
                    ..EndpointAddress::default()
                }]),
                ..EndpointSubset::default()
            }]),
        }),
        Kind::EndpointSlice => {
            let mut m = meta(ns, &name);
            // Moves between Services, or belongs to none.
            if v > 0 {
                m.labels = Some(BTreeMap::from([(
                    SERVICE_NAME_LABEL.to_owned(),
                    format!("service{}", rng.below(3)),
                )]));
            }
            Object::EndpointSlice(EndpointSlice {
                metadata: m,
                address_type: "IPv4".into(),
                ..EndpointSlice::default()
            })
        }
        Kind::Secret => Object::Secret(Secret {
            metadata: meta(ns, &name),
            data: Some(BTreeMap::from([(
                "tls.crt".to_owned(),
                ByteString(vec![u8::try_from(v).unwrap()]),
            )])),
            ..Secret::default()
        }),
        Kind::Traefik(TraefikKind::Middleware, group) => {
            // Reading a Secret (basicAuth) or not.
            let spec = if rng.chance(50) {
                serde_json::json!({"basicAuth": {"secret": format!("users{v}")}})
            } else {
                serde_json::json!({"addPrefix": {"prefix": format!("/{v}")}})
            };
            let value = serde_json::json!({"apiVersion": group.api_version(), "kind": "Middleware",
                                           "metadata": {"namespace": ns, "name": name},
                                           "spec": spec});
            Object::TraefikMiddleware(crate::api::traefik::decode(value).unwrap())
        }
        Kind::UndecodableRoute | Kind::Traefik(..) => unreachable!("not a watched kind"),
    };
    Watched::Object(object.into())
}

/// The cluster as the API server holds it, and the watches over it.
struct World {
    /// By watched kind and key.
    objects: BTreeMap<(Kind, ObjKey), Watched>,
    /// Running watches, and whether each is in step (false: it missed events, as after a
    /// `410 Gone`, until it relists).
    watches: BTreeMap<WatchId, bool>,
    /// The namespaces Secrets are watched in (`None`: all).
    secret_scope: SecretScope,
    serial: u64,
}

impl World {
    fn watch_of(&self, kind: Kind, ns: &str) -> Option<WatchId> {
        self.watches
            .keys()
            .find(|id| id.kind == kind && id.namespace.as_deref().is_none_or(|n| n == ns))
            .cloned()
    }

    fn in_scope(id: &WatchId, key: &ObjKey) -> bool {
        id.namespace
            .as_deref()
            .is_none_or(|ns| *ns == *key.namespace)
    }

    /// A full relist of `id`, now.
    fn relist(&mut self, state: &mut WatchedSnapshot, id: &WatchId) {
        state.apply(id, WatchEvent::Init);
        for ((kind, key), obj) in &self.objects {
            if *kind == id.kind && Self::in_scope(id, key) {
                state.apply(id, WatchEvent::InitApply(obj.clone()));
            }
        }
        state.apply(id, WatchEvent::InitDone);
        self.watches.insert(id.clone(), true);
    }

    /// The snapshot, unloaded Gateways and Secret scope the objects give from scratch.
    fn built_from_scratch(&self) -> (ClusterSnapshot, SecretScope) {
        let mut snap = ClusterSnapshot::default();
        for ((kind, key), obj) in &self.objects {
            if *kind == Kind::Secret
                && matches!(&self.secret_scope, SecretScope::Namespaces(ns) if !ns.contains(&*key.namespace))
            {
                continue;
            }
            match obj {
                Watched::Object(o) => snap.apply_shared(o.clone()),
                Watched::UnloadedGateway(k, e) => {
                    snap.unloaded_gateways.push(format!("Gateway {k}: {e}"));
                }
                Watched::UndecodableRoute(k, r) => {
                    snap.undecodable_routes.insert(k.clone(), (**r).clone());
                }
                Watched::Absent(_) => {}
            }
        }
        snap.unloaded_gateways.sort();
        let scope = secret_scope(
            snap.gateways.values().map(|g| &**g),
            snap.delegations.values().map(|d| &**d),
            snap.ingress_routes.values().map(|r| &**r),
        );
        let scope = crate::source::secret_reach::reached_scope(scope, &snap);
        (snap, scope)
    }
}

/// Every object that differs between `before` and `after` is listed in `changes`.
fn lists_every_change(changes: &ChangeSet, before: &ClusterSnapshot, after: &ClusterSnapshot) {
    for (kind, key) in ChangeSet::diff(before, after).objects() {
        assert!(
            changes.lists(kind, key),
            "{kind:?} {key} changed, not listed"
        );
    }
    if before.unloaded_gateways != after.unloaded_gateways {
        assert!(changes.unloaded_gateways_changed(), "unloaded Gateways");
    }
    assert!(
        !changes.has_whole_kinds(),
        "a whole kind listed: {changes:?}"
    );
}

fn run(seed: u64) -> (usize, usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let namespaced = rng.chance(50);
    let mut world = World {
        objects: BTreeMap::new(),
        watches: BTreeMap::new(),
        secret_scope: SecretScope::All,
        serial: 1,
    };
    let mut state = WatchedSnapshot::default();
    for kind in KINDS {
        let scopes: Vec<Option<String>> = if namespaced {
            NAMESPACES.iter().map(|n| Some((*n).to_owned())).collect()
        } else {
            vec![None]
        };
        for ns in scopes {
            let id = WatchId::new(kind, ns, 0);
            state.add_watch(id.clone());
            world.watches.insert(id, false);
        }
    }
    // Nothing is ready before every watch listed.
    let ids: Vec<WatchId> = world.watches.keys().cloned().collect();
    for id in &ids {
        assert!(!state.all_listed(None));
        world.relist(&mut state, id);
    }
    assert!(state.all_listed(None));
    let mut taken = state.take().0;
    let (mut compared, mut relists) = (0, 0);
    for _ in 0..300 {
        let kind = KINDS[rng.below(KINDS.len())];
        let ns = NAMESPACES[rng.below(NAMESPACES.len())];
        match rng.below(22) {
            // An upsert or a delete, seen by the watch if it is in step.
            0..=11 => {
                let obj = random_object(&mut rng, kind, ns);
                let key = obj.key();
                let delete = rng.chance(25);
                let event = if delete {
                    world.objects.remove(&(kind, key.clone()));
                    WatchEvent::Delete(key)
                } else {
                    world.objects.insert((kind, key), obj.clone());
                    WatchEvent::Apply(obj)
                };
                if let Some(id) = world.watch_of(kind, ns)
                    && world.watches[&id]
                {
                    state.apply(&id, event);
                }
            }
            // A watch misses what follows (its resourceVersion expired).
            12 => {
                if let Some(id) = world.watch_of(kind, ns) {
                    world.watches.insert(id, false);
                }
            }
            // A relist (of a watch that missed events, if any), sometimes interrupted by
            // another first.
            13..=16 => {
                let behind = world.watches.iter().find(|(_, in_step)| !**in_step);
                let id = behind.map(|(id, _)| id.clone());
                if let Some(id) = id.or_else(|| world.watch_of(kind, ns)) {
                    let kind = id.kind;
                    if rng.chance(30) {
                        state.apply(&id, WatchEvent::Init);
                        let first = world
                            .objects
                            .iter()
                            .find(|((k, key), _)| *k == kind && World::in_scope(&id, key));
                        if let Some((_, obj)) = first {
                            state.apply(&id, WatchEvent::InitApply(obj.clone()));
                        }
                    }
                    world.relist(&mut state, &id);
                    relists += 1;
                }
            }
            // The Secret watches are replaced by others over another scope; an event of a
            // stopped one still arrives and must be ignored.
            17 => {
                let scope = match rng.below(4) {
                    0 => SecretScope::All,
                    n => SecretScope::Namespaces(
                        NAMESPACES
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| (n >> i) & 1 == 1)
                            .map(|(_, ns)| (*ns).to_owned())
                            .collect(),
                    ),
                };
                let old: Vec<WatchId> = world
                    .watches
                    .keys()
                    .filter(|id| id.kind == Kind::Secret)
                    .cloned()
                    .collect();
                for id in &old {
                    state.stop_watch(id);
                    world.watches.remove(id);
                }
                let wanted: Vec<Option<String>> = match &scope {
                    SecretScope::All => vec![None],
                    SecretScope::Namespaces(ns) => ns.iter().cloned().map(Some).collect(),
                };
                for ns in wanted {
                    world.serial += 1;
                    let id = WatchId::new(Kind::Secret, ns, world.serial);
                    state.add_watch(id.clone());
                    world.watches.insert(id, false);
                }
                state.remove_secrets_outside(&scope);
                world.secret_scope = scope;
                if let Some(stale) = old.first() {
                    let obj = random_object(&mut rng, Kind::Secret, ns);
                    state.apply(stale, WatchEvent::Apply(obj));
                }
            }
            _ => {
                let (snapshot, changes) = state.take();
                lists_every_change(&changes, &taken, &snapshot);
                taken = snapshot;
            }
        }
        let in_step = world.watches.values().all(|s| *s);
        assert!(!in_step || state.all_listed(None));
        if in_step {
            compared += 1;
            let (want, scope) = world.built_from_scratch();
            // Objects and indexes.
            pretty_assertions::assert_eq!(*state.snapshot(), want);
            assert_eq!(state.secret_scope(), scope);
        }
    }
    let (snapshot, changes) = state.take();
    lists_every_change(&changes, &taken, &snapshot);
    (compared, relists)
}

#[test]
fn watch_events_applied_one_by_one_give_the_from_scratch_snapshot() {
    let seeds: Vec<u64> = match std::env::var("SLUICE_WATCH_SEED") {
        Ok(s) => vec![s.parse().expect("SLUICE_WATCH_SEED is a number")],
        Err(_) => (1..=40).collect(),
    };
    let (mut compared, mut relists) = (0, 0);
    for seed in seeds {
        println!("seed {seed} (replay with SLUICE_WATCH_SEED={seed})");
        let (c, r) = run(seed);
        compared += c;
        relists += r;
    }
    println!("{compared} comparisons with the from-scratch snapshot, {relists} relists");
    assert!(compared > 0 && relists > 0);
}

#[test]
fn the_end_of_a_relist_that_never_started_deletes_nothing() {
    let mut state = WatchedSnapshot::default();
    let id = WatchId::new(Kind::IngressRoute, Some("a".into()), 1);
    state.add_watch(id.clone());
    let mut rng = Rng(7);
    let obj = random_object(&mut rng, Kind::IngressRoute, "a");
    let key = obj.key();
    state.apply(&id, WatchEvent::Init);
    state.apply(&id, WatchEvent::InitApply(obj));
    state.apply(&id, WatchEvent::InitDone);
    let held = |s: &WatchedSnapshot| {
        let snap = s.snapshot();
        snap.ingress_routes.contains_key(&key) || snap.undecodable_routes.contains_key(&key)
    };
    assert!(held(&state));
    // An InitDone with no Init before it is ignored, not taken as an empty list.
    state.apply(&id, WatchEvent::InitDone);
    assert!(held(&state));
    // A relist that lists nothing does delete.
    state.apply(&id, WatchEvent::Init);
    state.apply(&id, WatchEvent::InitDone);
    assert!(!held(&state));
}
