//! The incremental DAG against the full build: random worlds, random edit sequences, the two
//! compared after every step. The seed is printed; `SLUICE_DAG_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::{IncrementalDag, Selection, build};
use crate::api::traefik::Group;
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, Object, TraefikKind};
use crate::xds::resource::InstanceResources;
use crate::xds::translate::{TranslateOptions, Translator, translate};
use sluice_e2e::rng::Rng;

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const ROUTES: usize = 8;
const SERVICES: usize = 4;
const SLICES: usize = 4;
const SECRETS: usize = 3;
/// A chain longer than the delegation depth limit lives in namespace `c`.
const CHAIN: usize = 34;

/// Certificates made once: a valid pair, and a CA bundle.
struct Pem {
    cert: String,
    key: String,
}

fn pem() -> &'static Pem {
    static PEM: std::sync::OnceLock<Pem> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["h0.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    })
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn meta(ns: &str, name: &str, rng: &mut Rng) -> Value {
    let mut m = json!({"namespace": ns, "name": name});
    if rng.chance(70) {
        m["creationTimestamp"] = json!(format!("2024-01-0{}T00:00:00Z", 1 + rng.below(3)));
    }
    if rng.chance(10) {
        m["annotations"] = json!({"kubernetes.io/ingress.class": "other"});
    }
    m
}

fn random_route(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let prefixes = ["/", "/", "/a", "/a/b", "/b"];
    let mut spec = json!({"routes": []});
    // Mostly r0-r2 are roots and the others their children.
    let root_name = ["r0", "r1", "r2"].contains(&name);
    if rng.chance(if root_name { 85 } else { 5 }) {
        let mut vh = json!({"fqdn": format!("h{}.example.com", rng.below(5))});
        if rng.chance(10) {
            vh["fqdn"] = json!(*rng.pick(&["", "*.example.com", "bad..name"]));
        }
        if rng.chance(30) {
            let secret = format!("s{}", rng.below(SECRETS));
            let secret = if rng.chance(40) {
                format!("{}/{secret}", rng.pick(&NAMESPACES))
            } else {
                secret
            };
            vh["tls"] = json!({"secretName": secret});
            if rng.chance(20) {
                vh["tls"] = json!({"passthrough": true});
            }
        }
        spec["virtualhost"] = vh;
    }
    let n = 1 + rng.below(3);
    for _ in 0..n {
        let prefix = if rng.chance(3) {
            "a"
        } else {
            *rng.pick(&prefixes)
        };
        let route = if rng.chance(40) {
            let target = if rng.chance(90) {
                3 + rng.below(ROUTES - 3)
            } else {
                rng.below(3)
            };
            let mut d = json!({"name": format!("r{target}")});
            if rng.chance(30) {
                d["namespace"] = json!(*rng.pick(&NAMESPACES));
            }
            json!({"match": prefix, "delegate": d})
        } else {
            let mut svc = json!({
                "name": format!("svc{}", rng.below(SERVICES)),
                "port": if rng.chance(5) { 0 } else { *rng.pick(&[80, 80, 8080]) },
            });
            if rng.chance(20) {
                svc["weight"] = json!(rng.below(3));
            }
            if rng.chance(10) {
                svc["validation"] = json!({"caSecret": format!("s{}", rng.below(SECRETS)), "subjectName": "x.example.com"});
            }
            if rng.chance(10) {
                svc["strategy"] = json!("Cookie");
            }
            json!({"match": prefix, "services": [svc]})
        };
        spec["routes"].as_array_mut().unwrap().push(route);
    }
    if rng.chance(10) {
        let tcp = if rng.chance(50) {
            json!({"delegate": {"name": format!("r{}", rng.below(ROUTES))}})
        } else {
            json!({"services": [{"name": format!("svc{}", rng.below(SERVICES)), "port": 80}]})
        };
        spec["tcpproxy"] = tcp;
    }
    ir(json!({"metadata": meta(ns, name, rng), "spec": spec}))
}

/// Traefik IngressRoutes `t0`..`t2` claim the Contour roots' hosts too.
const TRAEFIK_ROUTES: usize = 3;

fn random_traefik_route(ns: &str, name: &str, group: Group, rng: &mut Rng) -> Object {
    let mut routes = Vec::new();
    for _ in 0..1 + rng.below(2) {
        let host = format!("h{}.example.com", rng.below(5));
        let rule = match rng.below(4) {
            0 => format!("Host(`{host}`)"),
            1 => format!("Host(`{host}`) && PathPrefix(`/a`)"),
            2 => format!("Host(`{host}`) && Header(`x-k`, `v`)"),
            _ => "PathPrefix(`/`)".to_owned(), // refused: no Host
        };
        let mut route = json!({
            "match": rule,
            "services": [{"name": format!("svc{}", rng.below(SERVICES)), "port": *rng.pick(&[80, 8080])}],
        });
        if rng.chance(30) {
            route["middlewares"] = json!([{"name": format!("m{}", rng.below(2))}]);
        }
        routes.push(route);
    }
    let mut spec = json!({"routes": routes});
    if rng.chance(30) {
        spec["tls"] = json!({"secretName": format!("s{}", rng.below(SECRETS))});
    }
    let v = json!({"apiVersion": group.api_version(), "kind": "IngressRoute",
                   "metadata": meta(ns, name, rng), "spec": spec});
    Object::TraefikRoute(crate::api::traefik::decode(v).unwrap())
}

fn random_middleware(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let spec = match rng.below(3) {
        0 => json!({"addPrefix": {"prefix": "/p"}}),
        1 => json!({"headers": {"customRequestHeaders": {"x-a": "b"}}}),
        _ => json!({"rateLimit": {"average": 1}}),
    };
    let v = json!({"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
                   "metadata": {"namespace": ns, "name": name}, "spec": spec});
    Object::TraefikMiddleware(crate::api::traefik::decode(v).unwrap())
}

fn ir(v: Value) -> Object {
    let mut v = v;
    v["apiVersion"] = json!("contour.heptio.com/v1beta1");
    v["kind"] = json!("IngressRoute");
    Object::IngressRoute(serde_json::from_value(v).unwrap())
}

/// Link `i` of the long chain in namespace `c`: `chain-0` is a root, each delegates to the next.
fn chain_route(i: usize, rng: &mut Rng) -> Object {
    let mut spec = json!({"routes": [
        {"match": "/", "services": [{"name": "svc0", "port": 80}]},
    ]});
    if i + 1 < CHAIN && !rng.chance(10) {
        spec["routes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"match": "/", "delegate": {"name": format!("chain-{}", i + 1)}}));
    }
    if i == 0 {
        spec["virtualhost"] = json!({"fqdn": "chain.example.com"});
    }
    ir(json!({"metadata": {"namespace": "c", "name": format!("chain-{i}")}, "spec": spec}))
}

fn random_service(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let mut v = json!({
        "metadata": meta(ns, name, rng),
        "spec": {"ports": [{"name": "http", "port": 80}]},
    });
    if rng.chance(40) {
        v["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "alt", "port": 8080}));
    }
    if rng.chance(15) {
        v["metadata"]["annotations"] =
            json!({"projectcontour.io/upstream-protocol.tls": "80,8080"});
    }
    if rng.chance(10) {
        v["spec"] = json!({"type": "ExternalName", "externalName": "ext.example.com", "ports": [{"port": 80}]});
    }
    Object::Service(serde_json::from_value(v).unwrap())
}

fn addresses(rng: &mut Rng) -> Vec<String> {
    (0..rng.below(3))
        .map(|_| format!("10.0.{}.{}", rng.below(3), rng.below(4)))
        .collect()
}

fn random_endpoints(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let addrs: Vec<Value> = addresses(rng)
        .into_iter()
        .map(|ip| json!({"ip": ip}))
        .collect();
    let v = json!({
        "metadata": {"namespace": ns, "name": name},
        "subsets": [{"addresses": addrs, "ports": [{"name": "http", "port": 8000 + rng.below(3)}]}],
    });
    Object::Endpoints(serde_json::from_value(v).unwrap())
}

fn random_slice(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let v = json!({
        "metadata": {"namespace": ns, "name": name,
                     "labels": {"kubernetes.io/service-name": format!("svc{}", rng.below(SERVICES))}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": addresses(rng), "conditions": {"ready": !rng.chance(20)}}],
        "ports": [{"name": *rng.pick(&["http", "alt"]), "port": 9000 + rng.below(3)}],
    });
    Object::EndpointSlice(serde_json::from_value(v).unwrap())
}

fn random_secret(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let p = pem();
    let data = match rng.below(4) {
        0 => json!({"tls.crt": b64(&p.cert), "tls.key": b64("junk")}),
        1 => json!({"ca.crt": b64(&p.cert)}),
        _ => json!({"tls.crt": b64(&p.cert), "tls.key": b64(&p.key), "ca.crt": b64(&p.cert)}),
    };
    let type_ = if rng.chance(85) {
        "kubernetes.io/tls"
    } else {
        "Opaque"
    };
    let v = json!({"metadata": {"namespace": ns, "name": name}, "type": type_, "data": data});
    Object::Secret(serde_json::from_value(v).unwrap())
}

fn random_delegation(ns: &str, name: &str, rng: &mut Rng) -> Object {
    let target = *rng.pick(&["a", "b", "*"]);
    let v = json!({
        "apiVersion": "contour.heptio.com/v1beta1", "kind": "TLSCertificateDelegation",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"delegations": [{"secretName": format!("s{}", rng.below(SECRETS)), "targetNamespaces": [target]}]},
    });
    Object::Delegation(serde_json::from_value(v).unwrap())
}

fn random_selection(rng: &mut Rng) -> Selection {
    let mut sel = Selection::default_instance();
    sel.root_namespaces = match rng.below(4) {
        0 => vec![],
        1 => vec!["a".into()],
        2 => vec!["a".into(), "c".into()],
        _ => vec!["b".into(), "c".into()],
    };
    sel
}

/// One random edit: an object of a random kind and key is written anew or deleted.
pub(super) fn edit(snap: &mut ClusterSnapshot, rng: &mut Rng, changes: &mut ChangeSet) {
    let ns = *rng.pick(&NAMESPACES);
    let traefik_group = *rng.pick(&[Group::TraefikIo, Group::ContainoUs]);
    let (kind, name) = match rng.below(9) {
        8 if rng.chance(30) => (
            Kind::Traefik(TraefikKind::Middleware, Group::TraefikIo),
            format!("m{}", rng.below(2)),
        ),
        8 => (
            Kind::Traefik(TraefikKind::IngressRoute, traefik_group),
            format!("t{}", rng.below(TRAEFIK_ROUTES)),
        ),
        0..=2 => (Kind::IngressRoute, format!("r{}", rng.below(ROUTES))),
        3 => (Kind::Service, format!("svc{}", rng.below(SERVICES))),
        4 => (Kind::Endpoints, format!("svc{}", rng.below(SERVICES))),
        5 => (Kind::EndpointSlice, format!("sl{}", rng.below(SLICES))),
        6 => (Kind::Secret, format!("s{}", rng.below(SECRETS))),
        _ if rng.chance(30) => (Kind::IngressRoute, format!("chain-{}", rng.below(CHAIN))),
        _ => (Kind::Delegation, format!("d{}", rng.below(2))),
    };
    let key = ObjKey::new(ns, name.clone());
    changes.insert(kind, key.clone());
    if rng.chance(20) {
        snap.remove(kind, &key);
        return;
    }
    let obj = match kind {
        Kind::IngressRoute if name.starts_with("chain-") => {
            let i: usize = name["chain-".len()..].parse().unwrap();
            let mut o = chain_route(i, rng);
            if let Object::IngressRoute(r) = &mut o {
                r.metadata.namespace = Some(ns.to_owned());
            }
            o
        }
        Kind::IngressRoute => random_route(ns, &name, rng),
        Kind::Service => random_service(ns, &name, rng),
        Kind::Endpoints => random_endpoints(ns, &name, rng),
        Kind::EndpointSlice => random_slice(ns, &name, rng),
        Kind::Secret => random_secret(ns, &name, rng),
        Kind::Traefik(TraefikKind::IngressRoute, group) => {
            random_traefik_route(ns, &name, group, rng)
        }
        Kind::Traefik(TraefikKind::Middleware, _) => random_middleware(ns, &name, rng),
        _ => random_delegation(ns, &name, rng),
    };
    snap.apply(obj);
}

pub(super) fn world(rng: &mut Rng) -> ClusterSnapshot {
    let mut snap = ClusterSnapshot::default();
    for ns in NAMESPACES {
        for i in 0..ROUTES {
            if rng.chance(80) {
                snap.apply(random_route(ns, &format!("r{i}"), rng));
            }
        }
        for i in 0..SERVICES {
            snap.apply(random_service(ns, &format!("svc{i}"), rng));
            snap.apply(random_endpoints(ns, &format!("svc{i}"), rng));
        }
        for i in 0..SLICES {
            snap.apply(random_slice(ns, &format!("sl{i}"), rng));
        }
        for i in 0..SECRETS {
            snap.apply(random_secret(ns, &format!("s{i}"), rng));
        }
        snap.apply(random_delegation(ns, "d0", rng));
    }
    for i in 0..CHAIN {
        snap.apply(chain_route(i, rng));
    }
    // A third of the worlds start with Traefik objects; edits add and remove them in all.
    if rng.chance(33) {
        for ns in NAMESPACES {
            for i in 0..TRAEFIK_ROUTES {
                let group = *rng.pick(&[Group::TraefikIo, Group::ContainoUs]);
                snap.apply(random_traefik_route(ns, &format!("t{i}"), group, rng));
            }
            snap.apply(random_middleware(ns, "m0", rng));
        }
    }
    snap
}

pub(super) fn seed() -> u64 {
    match std::env::var("SLUICE_DAG_SEED") {
        Ok(s) => s.parse().expect("SLUICE_DAG_SEED is a number"),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        }
    }
}

#[test]
fn incremental_equals_full_rebuild_after_every_random_edit() {
    let seed = seed();
    println!("SLUICE_DAG_SEED={seed}");
    let mut rng = Rng(seed);
    let mut rebuilt = 0usize;
    let mut full = 0usize;
    let (mut vhosts, mut valid, mut clusters, mut traefik_valid) = (0, 0, 0, 0);
    let mut diffs = 0usize;
    for world_no in 0..24 {
        let mut snap = world(&mut rng);
        let mut sel = random_selection(&mut rng);
        let mut inc = IncrementalDag::new(sel.clone());
        inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::everything());
        // The translation of each update's diff, as the pipeline makes it.
        let opts = TranslateOptions::default();
        let mut translator = Translator::new(opts.clone());
        let mut translated = translator.translate(inc.dag()).is_ok();
        assert_eq!(
            *inc.dag(),
            build(&snap, &sel),
            "seed {seed}: world {world_no}: first build"
        );
        for step in 0..100 {
            let mut changes = ChangeSet::default();
            for _ in 0..1 + rng.below(3) {
                edit(&mut snap, &mut rng, &mut changes);
            }
            if rng.chance(5) {
                sel = random_selection(&mut rng);
            }
            // Sources that only know "something changed" are covered too.
            if rng.chance(5) {
                changes = ChangeSet::everything();
            }
            let stats = inc.update(&Arc::new(snap.clone()), &sel, &changes);
            rebuilt += stats.roots_rebuilt;
            full += snap
                .ingress_routes
                .values()
                .filter(|r| r.spec.virtualhost.is_some())
                .count()
                + snap.traefik_routes.effective().len();
            let want = build(&snap, &sel);
            vhosts += want.virtual_hosts.len();
            valid += want
                .statuses
                .iter()
                .filter(|s| s.current_status == super::Validity::Valid)
                .count();
            clusters += want.clusters.len();
            traefik_valid += want
                .object_statuses
                .iter()
                .filter(|s| s.current_status == super::Validity::Valid)
                .count();
            pretty_assertions::assert_eq!(
                *inc.dag(),
                want,
                "seed {seed}: world {world_no}, step {step}: incremental differs from a full build"
            );
            // Private keys do not serialise: compare them too.
            let keys = |d: &super::Dag| format!("{:?}", d.secrets);
            assert_eq!(keys(inc.dag()), keys(&want), "seed {seed}: secrets");
            if stats.changed || !translated {
                let got = if translated {
                    diffs += usize::from(!inc.last_diff().full);
                    translator.translate_changes(inc.dag(), inc.last_diff())
                } else {
                    translator.translate(inc.dag())
                };
                translated = got.is_ok();
                let expected = translate(&want, &opts).map(|r| InstanceResources::from(&r));
                assert!(
                    got == expected,
                    "seed {seed}: world {world_no}, step {step}: translation of the diff differs"
                );
            }
        }
    }
    println!("roots rebuilt: {rebuilt} incremental, {full} with full rebuilds");
    println!(
        "checked: {vhosts} virtual hosts, {valid} valid routes, {clusters} clusters, \
         {traefik_valid} valid Traefik IngressRoutes"
    );
    assert!(traefik_valid > 0, "no world served a Traefik IngressRoute");
    assert!(rebuilt < full, "the incremental builds rebuilt everything");
    println!("translations of a diff: {diffs}");
    assert!(diffs > 10, "only {diffs} translations of a diff");
}

#[test]
fn an_unrelated_change_rebuilds_nothing() {
    let mut rng = Rng(7);
    let mut snap = world(&mut rng);
    // Traefik objects make every update a full build (see `IncrementalDag::update`).
    snap.traefik_routes = Default::default();
    snap.traefik_middlewares = Default::default();
    let sel = Selection::default_instance();
    let mut inc = IncrementalDag::new(sel.clone());
    inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::everything());
    let mut next = snap.clone();
    let mut changes = ChangeSet::default();
    // A slice of a Service no route uses, in a namespace of its own.
    next.apply(random_slice("elsewhere", "sl0", &mut rng));
    changes.insert(Kind::EndpointSlice, ObjKey::new("elsewhere", "sl0"));
    let stats = inc.update(&Arc::new(next.clone()), &sel, &changes);
    assert_eq!(stats.roots_rebuilt, 0);
    assert!(!stats.changed);
    assert_eq!(*inc.dag(), build(&next, &sel));
}
