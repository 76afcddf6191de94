//! `cargo bench -p sluice --bench scale`: DAG build and xDS translation time at scale, printed
//! as figures (no timing is asserted anywhere). Generates N root IngressRoutes, each with a
//! delegated child, its own Service and Endpoints (every other one an EndpointSlice instead),
//! plus every 10th with TLS. First table: the incremental DAG against a full rebuild, for one
//! edit of each kind. Then one route edit while a reader holds the previous DAG
//! (`scale/held.rs`), and one reconcile pass split into DAG, translation and cache
//! (`scale/pass.rs`, `SLUICE_SCALE_ONLY=pass` alone), and `sluice standalone`'s loader reading
//! one edited file again (`scale/loader.rs`, `SLUICE_SCALE_ONLY=loader`). Then one watch event (or one file's delta) applied to the kept
//! snapshot against rebuilding (or diffing) the snapshot, the way it was done before, same run.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Secret, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort as EndpointPortV1, EndpointSlice};
use kube::api::ObjectMeta;
use sluice::api::ingressroute::{Delegate, Route, Service as IrService, Tls, VirtualHost};
use sluice::api::{IngressRoute, IngressRouteSpec};
use std::sync::Arc;

use sluice::dag::{IncrementalDag, Selection, build};
use sluice::pipeline::InstancePipeline;
use sluice::snapshot::{
    ChangeSet, ClusterSnapshot, Kind, LiveSnapshot, ObjKey, Object, SharedObject,
};
use sluice::source::FileDelta;
use sluice::source::watched::{WatchEvent, WatchId, Watched, WatchedSnapshot};
use sluice::xds::translate::{TranslateOptions, translate};

#[path = "scale/bookkeeping.rs"]
mod bookkeeping;
#[path = "scale/held.rs"]
mod held;
#[path = "scale/loader.rs"]
mod loader;
#[path = "scale/pass.rs"]
mod pass;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

/// One real certificate and key for every TLS root (the DAG parses and matches them).
fn cert_and_key() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["example.com".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn snapshot(n: usize) -> ClusterSnapshot {
    let (cert, key) = cert_and_key();
    let mut snap = ClusterSnapshot::default();
    for i in 0..n {
        let ns = format!("team-{}", i % 50);
        let svc = format!("svc-{i}");
        snap.apply(Object::Service(Service {
            metadata: meta(&ns, &svc),
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }));
        if i % 2 == 1 {
            snap.apply(Object::EndpointSlice(slice(&ns, &svc, i, 0)));
        } else {
            snap.apply(Object::Endpoints(Endpoints {
                metadata: meta(&ns, &svc),
                subsets: Some(vec![EndpointSubset {
                    addresses: Some(
                        (0..3)
                            .map(|k| EndpointAddress {
                                ip: format!("10.{}.{}.{k}", i / 250, i % 250),
                                ..EndpointAddress::default()
                            })
                            .collect(),
                    ),
                    ports: Some(vec![EndpointPort {
                        name: Some("http".into()),
                        port: 8080,
                        ..EndpointPort::default()
                    }]),
                    ..EndpointSubset::default()
                }]),
            }));
        }
        let tls = (i % 10 == 0).then(|| {
            snap.apply(Object::Secret(Secret {
                metadata: meta(&ns, &format!("cert-{i}")),
                type_: Some("kubernetes.io/tls".into()),
                data: Some(BTreeMap::from([
                    ("tls.crt".to_owned(), ByteString(cert.as_bytes().to_vec())),
                    ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
                ])),
                ..Secret::default()
            }));
            Tls {
                secret_name: Some(format!("cert-{i}")),
                ..Tls::default()
            }
        });
        let service = |port| IrService {
            name: svc.clone(),
            port,
            ..IrService::default()
        };
        let mut root = IngressRoute::new(
            &format!("root-{i}"),
            IngressRouteSpec {
                virtualhost: Some(VirtualHost {
                    fqdn: format!("host-{i}.example.com"),
                    tls,
                }),
                routes: vec![
                    Route {
                        match_: "/".into(),
                        services: vec![service(80)],
                        ..Route::default()
                    },
                    Route {
                        match_: "/api".into(),
                        delegate: Some(Delegate {
                            name: format!("child-{i}"),
                            namespace: None,
                        }),
                        ..Route::default()
                    },
                ],
                ..IngressRouteSpec::default()
            },
        );
        root.metadata.namespace = Some(ns.clone());
        let mut child = IngressRoute::new(
            &format!("child-{i}"),
            IngressRouteSpec {
                routes: vec![Route {
                    match_: "/api".into(),
                    services: vec![service(80)],
                    ..Route::default()
                }],
                ..IngressRouteSpec::default()
            },
        );
        child.metadata.namespace = Some(ns);
        snap.apply(Object::IngressRoute(root));
        snap.apply(Object::IngressRoute(child));
    }
    snap
}

/// The EndpointSlice of Service `svc` (number `i`); `generation` varies its last address.
fn slice(ns: &str, svc: &str, i: usize, generation: usize) -> EndpointSlice {
    let mut metadata = meta(ns, &format!("{svc}-abcde"));
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        svc.to_owned(),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: (0..3)
            .map(|k| Endpoint {
                // An octet whatever the generation (an invalid address is no endpoint); modulo
                // 251, so that generation 1,000 and on differ from generation 0.
                addresses: vec![format!(
                    "10.{}.{}.{}",
                    i / 250,
                    i % 250,
                    (k + generation) % 251
                )],
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPortV1 {
            name: Some("http".into()),
            port: Some(8080),
            ..EndpointPortV1::default()
        }]),
    }
}

/// A hostile delegation graph in one namespace: a root, then `depth` IngressRoutes each
/// delegating `fanout` times to the next and routing one path of its own.
fn delegation_graph(depth: usize, fanout: usize) -> ClusterSnapshot {
    let mut snap = ClusterSnapshot::default();
    snap.apply(Object::Service(Service {
        metadata: meta("evil", "svc"),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }));
    let delegations = |next: usize| -> Vec<Route> {
        (0..fanout)
            .map(|_| Route {
                match_: "/".into(),
                delegate: Some(Delegate {
                    name: format!("c{next}"),
                    namespace: None,
                }),
                ..Route::default()
            })
            .collect()
    };
    for i in 0..=depth {
        let mut routes = delegations(i + 1);
        if i > 0 {
            routes.push(Route {
                match_: format!("/l{i}"),
                services: vec![IrService {
                    name: "svc".into(),
                    port: 80,
                    ..IrService::default()
                }],
                ..Route::default()
            });
        }
        let mut ir = IngressRoute::new(
            &format!("c{i}"),
            IngressRouteSpec {
                virtualhost: (i == 0).then(|| VirtualHost {
                    fqdn: "evil.example.com".into(),
                    tls: None,
                }),
                routes,
                ..IngressRouteSpec::default()
            },
        );
        ir.metadata.namespace = Some("evil".into());
        snap.apply(Object::IngressRoute(ir));
    }
    snap
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("at least one run"))
}

/// Resident memory of this process, from /proc (0 where there is none).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// One kind of edit, applied to a snapshot: returns the edited snapshot and its change set.
type Edit = fn(&ClusterSnapshot, usize, usize) -> (ClusterSnapshot, ChangeSet);

/// Root `root-k`'s first route gets a new prefix rewrite.
fn edit_route(snap: &ClusterSnapshot, n: usize, generation: usize) -> (ClusterSnapshot, ChangeSet) {
    let k = n / 2;
    let key = ObjKey::new(format!("team-{}", k % 50), format!("root-{k}"));
    let mut route = (**snap.ingress_routes.get(&key).expect("root")).clone();
    route.spec.routes[0].prefix_rewrite = Some(format!("/v{generation}"));
    let mut next = snap.clone();
    next.apply(Object::IngressRoute(route));
    let mut changes = ChangeSet::default();
    changes.insert(Kind::IngressRoute, key);
    (next, changes)
}

/// The EndpointSlice of `svc-k` gets new addresses.
fn edit_slice(snap: &ClusterSnapshot, n: usize, generation: usize) -> (ClusterSnapshot, ChangeSet) {
    let k = n / 2 + 1; // odd: a Service with an EndpointSlice
    let ns = format!("team-{}", k % 50);
    let s = slice(&ns, &format!("svc-{k}"), k, generation);
    let mut changes = ChangeSet::default();
    changes.insert(
        Kind::EndpointSlice,
        ObjKey::new(ns.as_str(), format!("svc-{k}-abcde")),
    );
    let mut next = snap.clone();
    next.apply(Object::EndpointSlice(s));
    (next, changes)
}

/// The EndpointSlice of a Service no IngressRoute uses gets new addresses.
fn edit_unused_slice(
    snap: &ClusterSnapshot,
    _: usize,
    generation: usize,
) -> (ClusterSnapshot, ChangeSet) {
    let s = slice("team-0", "unused", 0, generation);
    let mut changes = ChangeSet::default();
    changes.insert(Kind::EndpointSlice, ObjKey::new("team-0", "unused-abcde"));
    let mut next = snap.clone();
    next.apply(Object::EndpointSlice(s));
    (next, changes)
}

/// An IngressRoute of another Gateway's class changes.
fn edit_elsewhere(
    snap: &ClusterSnapshot,
    _: usize,
    generation: usize,
) -> (ClusterSnapshot, ChangeSet) {
    let mut route = IngressRoute::new(
        "elsewhere",
        IngressRouteSpec {
            virtualhost: Some(VirtualHost {
                fqdn: format!("other-{generation}.example.com"),
                tls: None,
            }),
            ..IngressRouteSpec::default()
        },
    );
    route.metadata.namespace = Some("team-0".into());
    route.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/ingress.class".to_owned(),
        "other".to_owned(),
    )]));
    let mut next = snap.clone();
    next.apply(Object::IngressRoute(route));
    let mut changes = ChangeSet::default();
    changes.insert(Kind::IngressRoute, ObjKey::new("team-0", "elsewhere"));
    (next, changes)
}

/// The median of a few runs of `edit` on an instance kept up to date incrementally: the
/// snapshot step (a shared clone plus the edit) and the DAG update, with the roots rebuilt.
fn incremental(
    inc: &mut IncrementalDag,
    snap: &mut Arc<ClusterSnapshot>,
    sel: &Selection,
    n: usize,
    edit: Edit,
) -> (Duration, Duration, usize) {
    let (mut snaps, mut dags, mut rebuilt) = (Vec::new(), Vec::new(), 0);
    for generation in 1..=7 {
        let start = Instant::now();
        let (next, changes) = edit(snap, n, generation);
        let next = Arc::new(next);
        snaps.push(start.elapsed());
        let start = Instant::now();
        rebuilt = inc.update(&next, sel, &changes).roots_rebuilt;
        dags.push(start.elapsed());
        *snap = next;
    }
    snaps.sort();
    dags.sort();
    (snaps[3], dags[3], rebuilt)
}

/// Full rebuild against incremental updates, at 1,000 and 10,000 roots, same run.
fn incremental_table() {
    let sel = Selection::default_instance();
    println!();
    println!(
        "{:>7} {:<36} {:>12} {:>12} {:>8}",
        "roots", "change", "snapshot", "dag", "rebuilt"
    );
    for n in [1_000, 10_000] {
        let before = rss_bytes();
        let world = snapshot(n);
        let snapshot_mb = rss_bytes().saturating_sub(before) as f64 / 1e6;
        let before = rss_bytes();
        let shared = world.clone();
        let shared_mb = rss_bytes().saturating_sub(before) as f64 / 1e6;
        drop(shared);
        let (full, _) = best_of(3, || build(&world, &sel));
        println!(
            "{n:>7} {:<36} {:>12} {:>10.2}ms {n:>8}",
            "full rebuild (dag::build)",
            "-",
            full.as_secs_f64() * 1e3
        );
        let mut snap = Arc::new(world);
        let mut inc = IncrementalDag::new(sel.clone());
        let start = Instant::now();
        inc.update(&snap, &sel, &ChangeSet::everything());
        println!(
            "{n:>7} {:<36} {:>12} {:>10.2}ms {n:>8}",
            "first incremental build (all)",
            "-",
            start.elapsed().as_secs_f64() * 1e3
        );
        for (label, edit) in [
            ("one IngressRoute edited", edit_route as Edit),
            ("one EndpointSlice edited", edit_slice),
            ("EndpointSlice of an unused Service", edit_unused_slice),
            ("edit in an unrelated Gateway", edit_elsewhere),
        ] {
            let (s, d, rebuilt) = incremental(&mut inc, &mut snap, &sel, n, edit);
            println!(
                "{n:>7} {label:<36} {:>10.2}ms {:>10.3}ms {rebuilt:>8}",
                s.as_secs_f64() * 1e3,
                d.as_secs_f64() * 1e3
            );
        }
        assert_eq!(*inc.dag(), build(&snap, &sel), "incremental equals full");
        println!(
            "{n:>7} snapshot memory: {snapshot_mb:.1} MB resident for the world; a shared clone \
             (old and new snapshot together) adds {shared_mb:.1} MB"
        );
    }
}

/// Every object of a snapshot, as the watches deliver them.
fn objects(snap: &ClusterSnapshot) -> Vec<SharedObject> {
    let mut out = Vec::new();
    out.extend(snap.gateways.values().cloned().map(SharedObject::Gateway));
    out.extend(
        snap.ingress_routes
            .values()
            .cloned()
            .map(SharedObject::IngressRoute),
    );
    out.extend(
        snap.delegations
            .values()
            .cloned()
            .map(SharedObject::Delegation),
    );
    out.extend(snap.services.values().cloned().map(SharedObject::Service));
    out.extend(
        snap.endpoints
            .values()
            .cloned()
            .map(SharedObject::Endpoints),
    );
    out.extend(
        snap.endpoint_slices
            .values()
            .cloned()
            .map(SharedObject::EndpointSlice),
    );
    out.extend(snap.secrets.values().cloned().map(SharedObject::Secret));
    out
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One change on a 10,000-root world: the snapshot step as it is now (the event, or the file's
/// delta, applied to the one kept snapshot, which lists the change) against how it was before
/// (the snapshot rebuilt from every stored object per change in `sluice run`; the delta applied
/// to a copy and the two snapshots compared in standalone), same run. Then the whole in-process
/// cost of the event for one Gateway instance (snapshot step + DAG + translation).
fn event_table() {
    const N: usize = 10_000;
    let world = snapshot(N);
    let all = objects(&world);
    let k = N / 2 + 1; // a Service with an EndpointSlice
    let ns = format!("team-{}", k % 50);
    let event = |generation: usize| slice(&ns, &format!("svc-{k}"), k, generation);

    // sluice run: the watches' state, listed once.
    let mut state = WatchedSnapshot::default();
    let mut ids = BTreeMap::new();
    for obj in &all {
        let kind = obj.kind();
        let id = ids.entry(kind).or_insert_with(|| {
            let id = WatchId::new(kind, None, 0);
            state.add_watch(id.clone());
            state.apply(&id, WatchEvent::Init);
            id
        });
        state.apply(id, WatchEvent::InitApply(Watched::Object(obj.clone())));
    }
    for id in ids.values() {
        state.apply(id, WatchEvent::InitDone);
    }
    let slices = ids[&Kind::EndpointSlice].clone();
    let (first, _) = state.take();
    assert_eq!(*first, world, "the listed snapshot is the world");

    let mut generation = 100;
    let apply_event = |state: &mut WatchedSnapshot, slice: EndpointSlice| {
        let start = Instant::now();
        state.apply(
            &slices,
            WatchEvent::Apply(Watched::Object(SharedObject::EndpointSlice(Arc::new(
                slice.into(),
            )))),
        );
        let (snap, changes) = state.take();
        (start.elapsed(), snap, changes)
    };
    let now = median(
        (0..9)
            .map(|_| {
                generation += 1;
                apply_event(&mut state, event(generation)).0
            })
            .collect(),
    );
    let (before, rebuilt) = best_of(3, || {
        // What `Stores::snapshot` did per change: every stored object into new maps.
        let mut snap = ClusterSnapshot::default();
        for obj in &all {
            snap.apply_shared(obj.clone());
        }
        snap
    });
    assert_eq!(rebuilt.services.len(), world.services.len());

    // sluice standalone: one file's object changed.
    let mut live = LiveSnapshot::default();
    for obj in &all {
        live.upsert(obj.clone());
    }
    let mut previous = live.take().0;
    let delta = |generation: usize| FileDelta {
        upserts: vec![Object::EndpointSlice(event(generation)).into()],
        removals: Vec::new(),
    };
    let file_now = median(
        (0..9)
            .map(|_| {
                generation += 1;
                let start = Instant::now();
                delta(generation).apply_to(&mut live);
                let taken = live.take();
                let t = start.elapsed();
                assert_eq!(taken.1.objects().count(), 1);
                t
            })
            .collect(),
    );
    let file_before = median(
        (0..5)
            .map(|_| {
                generation += 1;
                let start = Instant::now();
                // What standalone did: the delta applied to the last snapshot (a copy while the
                // pipelines held the previous one), then the two compared.
                let mut next = (*previous).clone();
                for obj in delta(generation).upserts {
                    next.apply_shared(obj);
                }
                let next = Arc::new(next);
                let changes = ChangeSet::diff(&previous, &next);
                let t = start.elapsed();
                assert_eq!(changes.objects().count(), 1);
                previous = next;
                t
            })
            .collect(),
    );

    // The whole event for one instance: snapshot step, DAG, translation.
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    let mut pipeline = InstancePipeline::new(sel.clone());
    let (snap, _) = state.take();
    pipeline.update(&snap, &sel, &ChangeSet::everything(), &opts);
    // Median of the whole, and of its DAG and translation parts.
    let mut whole = |slice: fn(usize) -> EndpointSlice, state: &mut WatchedSnapshot| {
        let (mut times, mut dags, mut xds) = (Vec::new(), Vec::new(), Vec::new());
        let mut rebuilt = 0;
        for _ in 0..7 {
            generation += 1;
            let start = Instant::now();
            let (_, snap, changes) = apply_event(state, slice(generation));
            let built = pipeline.update(&snap, &sel, &changes, &opts);
            times.push(start.elapsed());
            dags.push(built.build_time);
            xds.push(built.translate_time.unwrap_or_default());
            rebuilt = built.stats.roots_rebuilt;
        }
        (median(times), median(dags), median(xds), rebuilt)
    };
    let used_slice: fn(usize) -> EndpointSlice = |g| slice("team-1", "svc-5001", 5001, g);
    let unused_slice: fn(usize) -> EndpointSlice = |g| slice("team-0", "unused", 0, g);
    let (used, used_dag, used_xds, used_rebuilt) = whole(used_slice, &mut state);
    let (unused_t, unused_dag, unused_xds, unused_rebuilt) = whole(unused_slice, &mut state);

    // What the persistent maps cost the readers: every IngressRoute looked up, and iterated,
    // in the snapshot's map and in a `BTreeMap` of the same entries (the maps before).
    let tree: std::collections::BTreeMap<ObjKey, Arc<IngressRoute>> = world
        .ingress_routes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let keys: Vec<ObjKey> = tree.keys().cloned().collect();
    let routes =
        |get: &dyn Fn(&ObjKey) -> Option<usize>| -> usize { keys.iter().filter_map(get).sum() };
    let (pmap_get, found) = best_of(5, || {
        routes(&|k| world.ingress_routes.get(k).map(|r| r.spec.routes.len()))
    });
    let (btree_get, found_too) =
        best_of(5, || routes(&|k| tree.get(k).map(|r| r.spec.routes.len())));
    assert_eq!(found, found_too);
    let roots = |r: &&Arc<IngressRoute>| r.spec.virtualhost.is_some();
    let (pmap_iter, _) = best_of(5, || world.ingress_routes.values().filter(roots).count());
    let (btree_iter, _) = best_of(5, || tree.values().filter(roots).count());

    println!();
    println!(
        "one change at {N} roots (median)            {:>12} {:>12} {:>9}",
        "now", "before", "ratio"
    );
    println!(
        "{:<44} {:>10.3}ms {:>10.2}ms {:>8.0}x",
        "sluice run: one watch event -> snapshot",
        ms(now),
        ms(before),
        before.as_secs_f64() / now.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.3}ms {:>10.2}ms {:>8.0}x",
        "standalone: one file's object -> snapshot",
        ms(file_now),
        ms(file_before),
        file_before.as_secs_f64() / file_now.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.3}ms {:>10.3}ms {:>8.2}x  (persistent map / BTreeMap)",
        format!("get every IngressRoute ({})", keys.len()),
        ms(pmap_get),
        ms(btree_get),
        pmap_get.as_secs_f64() / btree_get.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.3}ms {:>10.3}ms {:>8.2}x  (persistent map / BTreeMap)",
        "iterate every IngressRoute",
        ms(pmap_iter),
        ms(btree_iter),
        pmap_iter.as_secs_f64() / btree_iter.as_secs_f64()
    );
    println!(
        "{:<44} {:>10.3}ms {:>12} {:>9}  ({used_rebuilt} root rebuilt; DAG {:.3} ms, xDS {:.3} ms)",
        "event + DAG + xDS, slice of a used Service",
        ms(used),
        "-",
        "-",
        ms(used_dag),
        ms(used_xds)
    );
    println!(
        "{:<44} {:>10.3}ms {:>12} {:>9}  ({unused_rebuilt} roots rebuilt; DAG {:.3} ms, xDS {:.3} ms)",
        "event + DAG + xDS, slice of an unused Service",
        ms(unused_t),
        "-",
        "-",
        ms(unused_dag),
        ms(unused_xds)
    );
}

fn main() {
    match std::env::var("SLUICE_SCALE_ONLY").as_deref() {
        Ok("held") => return held::table(),
        Ok("pass") => return pass::table(),
        Ok("loader") => return loader::table(),
        Ok("bookkeeping") => return bookkeeping::table(),
        _ => {}
    }
    // First: its memory figures are resident-set differences, which memory freed by an earlier
    // table would hide.
    incremental_table();
    held::table();
    pass::table();
    loader::table();
    bookkeeping::table();
    event_table();
    let sel = Selection::default_instance();
    let opts = TranslateOptions::default();
    println!(
        "{:>8} {:>10} {:>14} {:>14} {:>12}",
        "roots", "routes", "dag build", "translate", "xds bytes"
    );
    for n in [100, 1_000, 5_000, 10_000] {
        let snap = snapshot(n);
        let (dag_time, dag) = best_of(3, || build(&snap, &sel));
        let (xds_time, resources) = best_of(3, || translate(&dag, &opts).expect("translation"));
        let bytes: usize = sluice::xds::translate::ResourceType::ALL
            .into_iter()
            .flat_map(|t| resources.of_type(t))
            .map(|r| r.value().len())
            .sum();
        let routes: usize = dag.virtual_hosts.iter().map(|v| v.routes.len()).sum();
        println!(
            "{n:>8} {routes:>10} {:>12.1}ms {:>12.1}ms {bytes:>12}",
            dag_time.as_secs_f64() * 1e3,
            xds_time.as_secs_f64() * 1e3
        );
    }

    // Hostile delegation graphs (the tenant-safety issue): before the depth limit and the
    // per-(prefix, child) memo, the 5,000-deep chain overflowed the stack and the 10x10 fan-out
    // ran for more than 30 s. Baseline: 100 ordinary roots, built in the same run.
    println!();
    println!(
        "{:<40} {:>12} {:>10}",
        "delegation graph", "dag build", "routes"
    );
    let baseline = snapshot(100);
    let (t, dag) = best_of(3, || build(&baseline, &sel));
    let routes: usize = dag.virtual_hosts.iter().map(|v| v.routes.len()).sum();
    println!(
        "{:<40} {:>10.2}ms {routes:>10}",
        "baseline: 100 roots + children",
        t.as_secs_f64() * 1e3
    );
    for (label, depth, fanout) in [
        ("chain of 5,000 IngressRoutes", 5_000, 1),
        ("10 IngressRoutes delegating 10 times", 10, 10),
        ("40 IngressRoutes delegating 100 times", 40, 100),
    ] {
        let snap = delegation_graph(depth, fanout);
        let (t, dag) = best_of(3, || build(&snap, &sel));
        let routes: usize = dag.virtual_hosts.iter().map(|v| v.routes.len()).sum();
        println!("{label:<40} {:>10.2}ms {routes:>10}", t.as_secs_f64() * 1e3);
    }
}
