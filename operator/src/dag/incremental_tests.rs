//! The incremental DAG against the full build: random worlds, random edit sequences, the two
//! compared after every step. The seed is printed; `SLUICE_DAG_SEED=<n>` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use serde_json::{Value, json};

use super::incremental_traefik_gen as tgen;
use super::{ClaimAges, IncrementalDag, Selection, build, build_quarantined};
use crate::api::traefik::Group;
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, Object, TraefikKind};
use crate::xds::resource::InstanceResources;
use crate::xds::translate::{TranslateOptions, Translator, translate};
use sluice_e2e::rng::Rng;

pub(super) const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const ROUTES: usize = 8;
pub(super) const SERVICES: usize = 4;
const SLICES: usize = 4;
pub(super) const SECRETS: usize = 3;
/// A chain longer than the delegation depth limit lives in namespace `c`.
const CHAIN: usize = 34;

/// Certificates made once: a valid pair, and a CA bundle.
struct Pem {
    cert: String,
    key: String,
    ca: String,
}

fn pem() -> &'static Pem {
    static PEM: std::sync::OnceLock<Pem> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["h0.example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
            ca: ca.self_signed(&ca_key).unwrap().pem(),
        }
    })
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub(super) fn meta(ns: &str, name: &str, rng: &mut Rng) -> Value {
    let mut m = json!({"namespace": ns, "name": name});
    if rng.chance(70) {
        m["creationTimestamp"] = json!(format!("2024-01-0{}T00:00:00Z", 1 + rng.below(3)));
    }
    if rng.chance(10) {
        m["annotations"] = json!({"kubernetes.io/ingress.class": "other"});
    }
    m
}

pub(super) fn random_route(ns: &str, name: &str, rng: &mut Rng) -> Object {
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
    let data = match rng.below(6) {
        0 => json!({"tls.crt": b64(&p.cert), "tls.key": b64("junk")}),
        1 => json!({"ca.crt": b64(&p.ca)}),
        // htpasswd users for a basicAuth Middleware ({SHA} of "password").
        2 | 3 => json!({"users": b64("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=")}),
        _ => json!({"tls.crt": b64(&p.cert), "tls.key": b64(&p.key), "ca.crt": b64(&p.ca)}),
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
    sel.allow_cross_namespace = rng.chance(30);
    sel.allow_insecure_skip_verify = rng.chance(30);
    sel
}

/// How a property test's worlds and edits are made.
#[derive(Clone, Copy)]
pub(super) struct Mix {
    worlds: usize,
    /// Out of ten edits, how many touch a Traefik object.
    traefik_edits: usize,
    /// Percent of the worlds that start with Traefik objects.
    traefik_worlds: u64,
    /// Worlds go on past `worlds` (up to four times as many) until this many of the Traefik
    /// features have been seen, so a rare feature missed by an unlucky seed does not fail
    /// the run.
    min_features: usize,
}

impl Mix {
    /// Contour and Traefik objects, as the first property test makes them.
    pub(super) const MIXED: Mix = Mix {
        worlds: 0,
        traefik_edits: 2,
        traefik_worlds: 50,
        min_features: 0,
    };
}

/// One random edit: an object of a random kind and key is written anew or deleted.
pub(super) fn edit(snap: &mut ClusterSnapshot, rng: &mut Rng, changes: &mut ChangeSet, mix: Mix) {
    let ns = *rng.pick(&NAMESPACES);
    let traefik = rng.below(10) < mix.traefik_edits;
    let (kind, name) = match rng.below(8) {
        _ if traefik => tgen::random_edit(rng),
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
        Kind::Traefik(..) => tgen::random_object(kind, ns, &name, rng),
        _ => random_delegation(ns, &name, rng),
    };
    snap.apply(obj);
}

pub(super) fn world(rng: &mut Rng, mix: Mix) -> ClusterSnapshot {
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
    // Some worlds start with Traefik objects; edits add and remove them in all.
    if rng.chance(mix.traefik_worlds) {
        tgen::populate(&mut snap, rng);
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

/// What a property run saw.
#[derive(Default)]
struct Seen {
    /// Roots built by the incremental updates, and by full rebuilds of the same steps.
    rebuilt: usize,
    full: usize,
    traefik_valid: usize,
    /// Translations of an incremental diff.
    diffs: usize,
    /// Updates of an instance judging Traefik routes: incremental (a diff), or whole builds.
    traefik_incremental: usize,
    traefik_whole: usize,
    /// Updates that patched the spare DAG while a reader held the current one.
    spare_reused: usize,
    /// Names in the claims records compared, and wildcards among them.
    recorded: usize,
    recorded_wildcards: usize,
    features: std::collections::BTreeSet<&'static str>,
    /// Objects quarantined, and statuses of quarantined objects in the DAGs compared.
    quarantined: usize,
    quarantined_invalid: usize,
}

/// Random worlds and edit sequences; the incremental DAG (and the translation of its diffs)
/// against a full build after every step.
fn property(mix: Mix) -> Seen {
    let seed = seed();
    println!("SLUICE_DAG_SEED={seed}");
    let mut rng = Rng(seed);
    let mut seen = Seen::default();
    let (mut vhosts, mut valid, mut clusters) = (0, 0, 0);
    for world_no in 0.. {
        let enough = world_no >= 40 * mix.worlds || seen.features.len() >= mix.min_features;
        if world_no >= mix.worlds && enough {
            break;
        }
        let mut snap = world(&mut rng, mix);
        let mut sel = random_selection(&mut rng);
        let mut inc = IncrementalDag::new(sel.clone());
        inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::everything());
        // Claim dates kept the naive way: every root compared at every step.
        let mut ages = ClaimAges::default();
        let mut aged = (snap.clone(), sel.clone());
        ages.observe(
            (&aged.0, &aged.1),
            (&snap, &sel),
            &ChangeSet::everything(),
            true,
        );
        // The translation of each update's diff, as the pipeline makes it.
        let opts = TranslateOptions::default();
        let mut translator = Translator::new(opts.clone());
        let mut translated = translator.translate(inc.dag()).is_ok();
        assert_eq!(
            *inc.dag(),
            build(&snap, &sel),
            "seed {seed}: world {world_no}: first build"
        );
        let mut open_owners = tgen::open_owners(inc.dag());
        // DAGs readers still hold, as the route coordinator does (none, one, or two passes
        // in flight): the update patches in place, patches the spare, or copies.
        let mut held: Vec<Arc<super::Dag>> = Vec::new();
        for step in 0..100 {
            if rng.below(4) == 0 {
                let older = held.len().saturating_sub(1);
                held.drain(..older);
            } else {
                held.clear();
            }
            if rng.below(4) != 0 {
                held.push(inc.shared_dag());
            }
            let mut changes = ChangeSet::default();
            for _ in 0..1 + rng.below(3) {
                edit(&mut snap, &mut rng, &mut changes, mix);
            }
            if rng.chance(5) {
                sel = random_selection(&mut rng);
            }
            // Sources that only know "something changed" are covered too.
            if rng.chance(5) {
                changes = ChangeSet::everything();
            }
            // Objects an Envoy rejected: any owner of the DAG, quarantined until their
            // namespace changes.
            if rng.chance(15) {
                let owners: Vec<&str> = (inc.dag().virtual_hosts.iter())
                    .flat_map(|vh| {
                        let routes = vh.routes.iter().map(|r| r.owner.as_str());
                        let tcp = vh.tcp_proxy.iter().map(|t| t.owner.as_str());
                        std::iter::once(vh.owner.as_str()).chain(routes).chain(tcp)
                    })
                    .collect();
                if !owners.is_empty() {
                    let owner = owners[rng.below(owners.len())].to_owned();
                    let why = format!("rejected at step {step}");
                    inc.quarantine(&owner, crate::dag::quarantine::description(&why));
                    seen.quarantined += 1;
                }
            }
            let reused = inc.spare_counts().0;
            let stats = inc.update(&Arc::new(snap.clone()), &sel, &changes);
            // (A selection change starts a new instance, and its counts.)
            seen.spare_reused += usize::from(inc.spare_counts().0 > reused);
            ages.observe((&aged.0, &aged.1), (&snap, &sel), &changes, true);
            aged = (snap.clone(), sel.clone());
            assert_eq!(
                inc.claim_ages(),
                &ages,
                "seed {seed}: world {world_no}, step {step}: claim dates differ"
            );
            // The statuses counted as they were patched, against every status counted.
            let tally = inc.status_tally();
            assert_eq!(
                tally,
                &super::StatusTally::of(inc.dag()),
                "seed {seed}: world {world_no}, step {step}: status counts differ"
            );
            let (routes, objects) = tally.not_valid(inc.dag());
            let not_valid = |v: &super::Validity| *v != super::Validity::Valid;
            assert!(
                routes.eq(inc
                    .dag()
                    .statuses
                    .iter()
                    .filter(|s| not_valid(&s.current_status))),
                "seed {seed}: world {world_no}, step {step}: statuses not valid differ"
            );
            assert!(
                objects.eq((inc.dag().object_statuses.iter())
                    .filter(|s| not_valid(&s.current_status))),
                "seed {seed}: world {world_no}, step {step}: object statuses not valid differ"
            );
            // The claims record from the names kept per change, against every name looked at.
            let record = inc.claim_record(1 << 20);
            assert_eq!(
                record,
                inc.claim_record_from_scratch(1 << 20),
                "seed {seed}: world {world_no}, step {step}: claims record differs"
            );
            // And over a budget too small for it, where the order of what is kept matters
            // (review 6 R6.4).
            if let Some((full, _)) = &record {
                let budget = serde_json::to_string(full).map_or(0, |t| t.len()) / 2;
                assert_eq!(
                    inc.claim_record(budget),
                    inc.claim_record_from_scratch(budget),
                    "seed {seed}: world {world_no}, step {step}: capped claims record differs"
                );
            }
            if let Some((record, _)) = record {
                seen.recorded += record.names.len();
                seen.recorded_wildcards += (record.names.keys())
                    .filter(|n| n.starts_with("*."))
                    .count();
            }
            seen.rebuilt += stats.roots_rebuilt;
            seen.full += snap
                .ingress_routes
                .values()
                .filter(|r| r.spec.virtualhost.is_some())
                .count()
                + snap.traefik_routes.effective().len()
                + snap.traefik_tcp_routes.effective().len();
            let want = build_quarantined(&snap, &sel, &ages, inc.quarantined());
            seen.quarantined_invalid += (want.statuses.iter().map(|s| &s.description))
                .chain(want.object_statuses.iter().map(|s| &s.description))
                .filter(|d| d.starts_with("Envoy rejected"))
                .count();
            vhosts += want.virtual_hosts.len();
            valid += want
                .statuses
                .iter()
                .filter(|s| s.current_status == super::Validity::Valid)
                .count();
            clusters += want.clusters.len();
            seen.traefik_valid += want
                .object_statuses
                .iter()
                .filter(|s| s.current_status == super::Validity::Valid)
                .count();
            tgen::features_seen(&want, &mut seen.features);
            let owners = tgen::open_owners(&want);
            for (fqdn, owner) in &owners {
                let Some(before) = open_owners.get(fqdn).filter(|b| *b != owner) else {
                    continue;
                };
                seen.features.insert(tgen::OPEN_HOST_MOVED);
                // The owner is an IngressRoute or an IngressRouteTCP (TCP catch-alls and
                // wildcards, plain TCP included, own open hosts too).
                let gone = |prefix: &str, tcp: bool| {
                    before
                        .strip_prefix(prefix)
                        .and_then(|k| k.split_once('/'))
                        .is_some_and(|(ns, name)| {
                            let key = ObjKey::new(ns, name);
                            if tcp {
                                snap.traefik_tcp_routes.get(&key).is_none()
                            } else {
                                snap.traefik_routes.get(&key).is_none()
                            }
                        })
                };
                let gone = gone("traefik:", false) || gone("traefik-tcp:", true);
                if gone {
                    seen.features.insert(tgen::OLDEST_DELETED);
                }
            }
            open_owners = owners;
            if !want.object_statuses.is_empty() {
                if inc.last_diff().full {
                    seen.traefik_whole += 1;
                } else {
                    seen.traefik_incremental += 1;
                }
            }
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
                    seen.diffs += usize::from(!inc.last_diff().full);
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
    println!(
        "roots rebuilt: {} incremental, {} with full rebuilds",
        seen.rebuilt, seen.full
    );
    println!(
        "checked: {vhosts} virtual hosts, {valid} valid routes, {clusters} clusters, {} valid \
         Traefik routes",
        seen.traefik_valid
    );
    println!("translations of a diff: {}", seen.diffs);
    println!("updates that patched the spare DAG: {}", seen.spare_reused);
    println!(
        "claims records compared: {} names, {} of them wildcards",
        seen.recorded, seen.recorded_wildcards
    );
    println!(
        "updates judging Traefik routes: {} incremental, {} whole (selection changes)",
        seen.traefik_incremental, seen.traefik_whole
    );
    println!("Traefik features seen: {:?}", seen.features);
    println!(
        "quarantined: {} objects; {} statuses of quarantined objects compared",
        seen.quarantined, seen.quarantined_invalid
    );
    seen
}

#[test]
fn incremental_equals_full_rebuild_after_every_random_edit() {
    let seen = property(Mix {
        worlds: 24,
        traefik_edits: 2,
        traefik_worlds: 50,
        min_features: 0,
    });
    assert!(seen.traefik_valid > 0, "no world served a Traefik route");
    assert!(
        seen.rebuilt < seen.full,
        "the incremental builds rebuilt everything"
    );
    assert!(
        seen.diffs > 10,
        "only {} translations of a diff",
        seen.diffs
    );
    assert!(seen.spare_reused > 100, "{}", seen.spare_reused);
    assert!(
        seen.quarantined_invalid > 100,
        "{}",
        seen.quarantined_invalid
    );
}

/// Traefik worlds: every kind a Traefik route reads edited (see `incremental_traefik_gen.rs`),
/// beside the Contour roots contending for the same hosts.
#[test]
fn incremental_equals_full_rebuild_in_traefik_worlds() {
    let seen = property(Mix {
        worlds: 24,
        traefik_edits: 7,
        traefik_worlds: 100,
        min_features: tgen::FEATURES,
    });
    let features = &seen.features;
    assert_eq!(
        features.len(),
        tgen::FEATURES,
        "features seen: {features:?}"
    );
    println!("features: {features:?}");
    // Only a selection change (one step in twenty, some choosing the same selection) builds
    // whole, catch-all and wildcard hosts included: 19 to 27 times as many incremental updates
    // on clock seeds; when open hosts built whole, 2.7 to 7.9.
    assert!(
        seen.traefik_incremental > 10 * seen.traefik_whole,
        "Traefik updates were mostly whole builds: {} incremental, {} whole",
        seen.traefik_incremental,
        seen.traefik_whole
    );
    assert!(
        seen.rebuilt * 2 < seen.full,
        "the incremental builds rebuilt half of everything"
    );
    assert!(seen.spare_reused > 100, "{}", seen.spare_reused);
    // Records holding wildcard comparisons were compared, not only empty ones.
    assert!(seen.recorded_wildcards > 10, "{}", seen.recorded_wildcards);
}

#[test]
fn an_unrelated_change_rebuilds_nothing() {
    let mut rng = Rng(7);
    let snap = world(
        &mut rng,
        Mix {
            worlds: 1,
            traefik_edits: 0,
            traefik_worlds: 100,
            min_features: 0,
        },
    );
    // Whatever catch-all and wildcard hosts the world claims stay.
    let sel = Selection::default_instance();
    let mut inc = IncrementalDag::new(sel.clone());
    inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::everything());
    assert!(!inc.dag().object_statuses.is_empty());
    let mut next = snap.clone();
    let mut changes = ChangeSet::default();
    // A slice of a Service no route uses, in a namespace of its own.
    next.apply(random_slice("elsewhere", "sl0", &mut rng));
    changes.insert(Kind::EndpointSlice, ObjKey::new("elsewhere", "sl0"));
    let stats = inc.update(&Arc::new(next.clone()), &sel, &changes);
    assert_eq!(stats.roots_rebuilt, 0);
    assert!(!stats.changed);
    assert!(!inc.last_diff().full);
    assert_eq!(*inc.dag(), build(&next, &sel));
}

fn traefik_object(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "traefik.io/v1alpha1", "kind": kind,
           "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

/// Ten Traefik IngressRoutes in each of namespaces `a` and `b`, every one through the
/// namespace's Middleware `m`, the even ones with TLS.
fn traefik_world() -> ClusterSnapshot {
    use crate::api::traefik::decode;
    let p = pem();
    let mut snap = ClusterSnapshot::default();
    for ns in ["a", "b"] {
        let svc = json!({"metadata": {"namespace": ns, "name": "svc"},
                         "spec": {"ports": [{"name": "http", "port": 80}]}});
        snap.apply(Object::Service(serde_json::from_value(svc).unwrap()));
        let secret = json!({"metadata": {"namespace": ns, "name": "cert"},
                            "type": "kubernetes.io/tls",
                            "data": {"tls.crt": b64(&p.cert), "tls.key": b64(&p.key)}});
        snap.apply(Object::Secret(serde_json::from_value(secret).unwrap()));
        let m = json!({"headers": {"customRequestHeaders": {"x-ns": ns}}});
        snap.apply(Object::TraefikMiddleware(
            decode(traefik_object("Middleware", ns, "m", m)).unwrap(),
        ));
        for i in 0..10 {
            let mut spec = json!({"routes": [{
                "match": format!("Host(`{ns}{i}.example.com`)"),
                "middlewares": [{"name": "m"}],
                "services": [{"name": "svc", "port": 80}],
            }]});
            if i % 2 == 0 {
                spec["tls"] = json!({"secretName": "cert"});
            }
            let v = traefik_object("IngressRoute", ns, &format!("t{i}"), spec);
            snap.apply(Object::TraefikRoute(decode(v).unwrap()));
        }
    }
    snap
}

#[test]
fn a_traefik_object_change_rebuilds_only_the_routes_that_read_it() {
    use crate::api::traefik::decode;
    let sel = Selection::default_instance();
    let snap = traefik_world();
    let mut inc = IncrementalDag::new(sel.clone());
    inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::everything());
    let valid = |d: &super::Dag| {
        d.object_statuses
            .iter()
            .filter(|s| s.kind == "IngressRoute" && s.current_status == super::Validity::Valid)
            .count()
    };
    assert_eq!(valid(inc.dag()), 20, "{:#?}", inc.dag().object_statuses);
    let verdict = |d: &super::Dag, kind: &str, ns: &str, name: &str| {
        d.object_statuses
            .iter()
            .find(|s| s.kind == kind && s.namespace == ns && s.name == name)
            .map(|s| (s.current_status, s.description.clone()))
    };
    let step =
        |inc: &mut IncrementalDag, snap: &mut ClusterSnapshot, kind: TraefikKind, obj: Value| {
            let key = ObjKey::new(
                obj["metadata"]["namespace"].as_str().unwrap(),
                obj["metadata"]["name"].as_str().unwrap(),
            );
            snap.apply(match kind {
                TraefikKind::Middleware => Object::TraefikMiddleware(decode(obj).unwrap()),
                _ => Object::TraefikTlsOption(decode(obj).unwrap()),
            });
            let mut changes = ChangeSet::default();
            changes.insert(Kind::Traefik(kind, Group::TraefikIo), key);
            let stats = inc.update(&Arc::new(snap.clone()), &sel, &changes);
            assert!(!inc.last_diff().full);
            assert_eq!(*inc.dag(), build(snap, &sel));
            stats.roots_rebuilt
        };
    let mut snap = snap;
    // The Middleware of namespace `a`: its ten routes.
    let m = json!({"headers": {"customRequestHeaders": {"x-ns": "changed"}}});
    let mw = traefik_object("Middleware", "a", "m", m);
    assert_eq!(step(&mut inc, &mut snap, TraefikKind::Middleware, mw), 10);
    // A Middleware nobody names.
    let m = json!({"addPrefix": {"prefix": "/p"}});
    let mw = traefik_object("Middleware", "a", "unused", m);
    assert_eq!(step(&mut inc, &mut snap, TraefikKind::Middleware, mw), 0);
    assert_eq!(
        verdict(inc.dag(), "Middleware", "a", "unused"),
        Some((super::Validity::Valid, "valid Middleware".into()))
    );
    // Broken while nobody names it: its own verdict says so, and no route is built again.
    let m = json!({"addPrefix": {"prefix": "no-slash"}});
    let mw = traefik_object("Middleware", "a", "unused", m);
    assert_eq!(step(&mut inc, &mut snap, TraefikKind::Middleware, mw), 0);
    let (validity, description) = verdict(inc.dag(), "Middleware", "a", "unused").unwrap();
    assert_eq!(validity, super::Validity::Invalid);
    assert!(
        description.starts_with("spec.addPrefix.prefix: "),
        "{description}"
    );
    // Namespace `b`'s default TLSOption appears: its five TLS routes, now refused (TLS 1.0).
    let o = traefik_object(
        "TLSOption",
        "b",
        "default",
        json!({"minVersion": "VersionTLS10"}),
    );
    assert_eq!(step(&mut inc, &mut snap, TraefikKind::TlsOption, o), 5);
    assert_eq!(valid(inc.dag()), 15);
    // The TLSOption's own verdict says why too.
    assert_eq!(
        verdict(inc.dag(), "TLSOption", "b", "default"),
        Some((
            super::Validity::Invalid,
            "TLS 1.0 is not served by Sluice (its lowest version is TLS 1.1)".into()
        ))
    );
}

/// A Traefik IngressRoute in namespace `c` with one rule, created on `day` of January 2024.
fn open_route(name: &str, day: u32, rule: &str) -> Object {
    let mut v = traefik_object(
        "IngressRoute",
        "c",
        name,
        json!({"routes": [{"match": rule, "services": [{"name": "svc", "port": 80}]}]}),
    );
    v["metadata"]["creationTimestamp"] = json!(format!("2024-01-0{day}T00:00:00Z"));
    Object::TraefikRoute(crate::api::traefik::decode(v).unwrap())
}

/// The catch-all and a wildcard claimed beside twenty routes of exact names: an edit of
/// anything else rebuilds what it touches only, never the open hosts' routes; names claimed
/// under the wildcard follow its oldest claimant, and the names held (404) beside the open hosts
/// follow their owners.
#[test]
fn open_hosts_are_rebuilt_only_when_what_they_read_changes() {
    use crate::api::traefik::decode;
    let sel = Selection::default_instance();
    let mut snap = traefik_world();
    let svc = json!({"metadata": {"namespace": "c", "name": "svc"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}});
    snap.apply(Object::Service(serde_json::from_value(svc).unwrap()));
    snap.apply(open_route("catch", 1, "PathPrefix(`/`)"));
    snap.apply(open_route("wild", 2, "Host(`*.w.example.com`)"));
    snap.apply(open_route("wild2", 3, "Host(`*.w.example.com`)"));
    // Held: an exact name whose owner is refused (its TLS Secret is missing).
    let spec = json!({"routes": [{"match": "Host(`held.example.com`)",
                                  "services": [{"name": "svc", "port": 80}]}],
                      "tls": {"secretName": "missing"}});
    let refused = traefik_object("IngressRoute", "c", "refused", spec);
    snap.apply(Object::TraefikRoute(decode(refused).unwrap()));
    let mut inc = IncrementalDag::new(sel.clone());
    inc.update(&Arc::new(snap.clone()), &sel, &ChangeSet::everything());
    assert_eq!(*inc.dag(), build(&snap, &sel));
    let vhost = |d: &super::Dag, fqdn: &str| {
        d.virtual_hosts
            .iter()
            .find(|v| v.fqdn == fqdn)
            .map(|v| (v.owner.clone(), v.routes.len()))
    };
    assert_eq!(
        vhost(inc.dag(), "*").unwrap(),
        ("traefik:c/catch".into(), 1)
    );
    assert_eq!(vhost(inc.dag(), "held.example.com").unwrap().1, 0);
    let mut step = |snap: &ClusterSnapshot, kind: Kind, key: (&str, &str)| {
        let mut changes = ChangeSet::default();
        changes.insert(kind, ObjKey::new(key.0, key.1));
        let stats = inc.update(&Arc::new(snap.clone()), &sel, &changes);
        assert!(!inc.last_diff().full);
        pretty_assertions::assert_eq!(*inc.dag(), build(snap, &sel));
        (stats.roots_rebuilt, inc.dag().clone())
    };
    let route = Kind::Traefik(TraefikKind::IngressRoute, Group::TraefikIo);
    // The Middleware of namespace `a`: its ten routes, not the open hosts'.
    let m = json!({"headers": {"customRequestHeaders": {"x-ns": "changed"}}});
    let mw = traefik_object("Middleware", "a", "m", m);
    snap.apply(Object::TraefikMiddleware(decode(mw).unwrap()));
    let middleware = Kind::Traefik(TraefikKind::Middleware, Group::TraefikIo);
    assert_eq!(step(&snap, middleware, ("a", "m")).0, 10);
    // A new exact name under the wildcard, younger than its owner: covered, only it is built.
    snap.apply(open_route("late", 5, "Host(`n.w.example.com`)"));
    let (rebuilt, dag) = step(&snap, route, ("c", "late"));
    assert_eq!(rebuilt, 1);
    let late = dag.object_statuses.iter().find(|s| s.name == "late");
    assert!(late.unwrap().description.contains("c/wild"), "{late:?}");
    // The wildcard's owner goes: the younger claimant takes it, and the covered name is judged
    // again (its status names the new owner); the catch-all is not rebuilt.
    snap.remove(route, &ObjKey::new("c", "wild"));
    let (rebuilt, dag) = step(&snap, route, ("c", "wild"));
    assert_eq!(rebuilt, 2);
    assert_eq!(vhost(&dag, "*.w.example.com").unwrap().0, "traefik:c/wild2");
    // The last claimant of the wildcard goes: the name under it is served.
    snap.remove(route, &ObjKey::new("c", "wild2"));
    let (rebuilt, dag) = step(&snap, route, ("c", "wild2"));
    assert_eq!(rebuilt, 1);
    assert_eq!(vhost(&dag, "n.w.example.com").unwrap().0, "traefik:c/late");
    // An unrelated Service: nothing is rebuilt.
    let svc = json!({"metadata": {"namespace": "elsewhere", "name": "svc"},
                     "spec": {"ports": [{"name": "http", "port": 80}]}});
    snap.apply(Object::Service(serde_json::from_value(svc).unwrap()));
    assert_eq!(step(&snap, Kind::Service, ("elsewhere", "svc")).0, 0);
    // The catch-all goes: no open host is served, the held name is no longer held.
    snap.remove(route, &ObjKey::new("c", "catch"));
    let (rebuilt, dag) = step(&snap, route, ("c", "catch"));
    assert_eq!(rebuilt, 0);
    assert_eq!(vhost(&dag, "held.example.com"), None);
}
