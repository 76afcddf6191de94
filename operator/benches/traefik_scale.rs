//! `cargo bench -p sluice --bench traefik_scale`: the incremental DAG on a world of Traefik
//! IngressRoutes, printed as figures (no timing is asserted). N IngressRoutes in 50 namespaces,
//! each with its own host, Service and EndpointSlice, a namespace Middleware on every route,
//! every 10th route with TLS (a Secret of its namespace, the namespace's `default` TLSOption),
//! every 5th through a TraefikService, and N/10 IngressRouteTCPs. Baseline, same run: the full
//! build (`dag::build`), which is what every update cost while an instance selected any
//! Traefik route. Then a catch-all route and a wildcard `*.example.com` (younger than every
//! route, so each keeps its name) are claimed and the edits run again: what every update cost
//! while an open host was claimed was the full build too. Each update is also translated, as
//! the pipeline does: the incremental `Translator` given the DAG's diff, against a translation
//! from scratch (what every change cost while an open host was served, before it was
//! incremental).
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::api::traefik::decode;
use sluice::dag::{ClaimAges, IncrementalDag, Selection, build};
use sluice::snapshot::{ChangeSet, ClusterSnapshot, Kind, ObjKey, Object, TraefikKind};
use sluice::xds::resource::InstanceResources;
use sluice::xds::translate::{TranslateOptions, Translator, translate};

const NAMESPACES: usize = 50;

fn ns(i: usize) -> String {
    format!("team-{}", i % NAMESPACES)
}

fn traefik(kind: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "traefik.io/v1alpha1", "kind": kind,
           "metadata": {"namespace": ns, "name": name,
                        "creationTimestamp": "2024-01-01T00:00:00Z"},
           "spec": spec})
}

fn route(i: usize, generation: usize) -> Object {
    let service = if i.is_multiple_of(5) {
        json!({"name": format!("ts-{i}"), "kind": "TraefikService"})
    } else {
        json!({"name": format!("svc-{i}"), "port": 80})
    };
    let mut spec = json!({"routes": [{
        "match": format!("Host(`r{i}.example.com`) && PathPrefix(`/v{generation}`)"),
        "middlewares": [{"name": "headers"}],
        "services": [service],
    }]});
    if i.is_multiple_of(10) {
        spec["tls"] = json!({"secretName": "cert"});
    }
    let v = traefik("IngressRoute", &ns(i), &format!("route-{i}"), spec);
    Object::TraefikRoute(decode(v).expect("IngressRoute"))
}

/// An open-host contender in `team-0`: the catch-all, or the wildcard `*.example.com` created
/// after every other route.
fn open_route(name: &str, rule: &str, created: &str) -> Object {
    let mut v = traefik(
        "IngressRoute",
        "team-0",
        name,
        json!({"routes": [{"match": rule, "services": [{"name": "svc-0", "port": 80}]}]}),
    );
    v["metadata"]["creationTimestamp"] = json!(created);
    Object::TraefikRoute(decode(v).expect("IngressRoute"))
}

fn tcp_route(i: usize) -> Object {
    let spec = json!({
        "routes": [{"match": format!("HostSNI(`tcp{i}.example.com`)"),
                    "services": [{"name": format!("svc-{i}"), "port": 80}]}],
        "tls": {"passthrough": true},
    });
    let v = traefik("IngressRouteTCP", &ns(i), &format!("tcp-{i}"), spec);
    Object::TraefikTcpRoute(decode(v).expect("IngressRouteTCP"))
}

fn middleware(ns: &str, value: &str) -> Object {
    let spec = json!({"headers": {"customRequestHeaders": {"x-team": value}}});
    Object::TraefikMiddleware(decode(traefik("Middleware", ns, "headers", spec)).expect("mw"))
}

fn tls_option(ns: &str, min: &str) -> Object {
    let v = traefik("TLSOption", ns, "default", json!({"minVersion": min}));
    Object::TraefikTlsOption(decode(v).expect("TLSOption"))
}

fn slice(i: usize, generation: usize) -> Object {
    let v = json!({
        "metadata": {"namespace": ns(i), "name": format!("svc-{i}-abcde"),
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [format!("10.{}.{}.{}", generation % 200, i / 250 % 250, i % 250)]}],
        "ports": [{"name": "http", "port": 8080}],
    });
    Object::EndpointSlice(serde_json::from_value(v).expect("slice"))
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn world(n: usize) -> ClusterSnapshot {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["example.com".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let mut snap = ClusterSnapshot::default();
    for t in 0..NAMESPACES {
        let ns = ns(t);
        snap.apply(middleware(&ns, "a"));
        snap.apply(tls_option(&ns, "VersionTLS12"));
        let secret = json!({
            "metadata": {"namespace": ns, "name": "cert"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(&cert.pem()), "tls.key": b64(&key.serialize_pem())},
        });
        snap.apply(Object::Secret(
            serde_json::from_value(secret).expect("secret"),
        ));
    }
    for i in 0..n {
        let svc = json!({"metadata": {"namespace": ns(i), "name": format!("svc-{i}")},
                         "spec": {"ports": [{"name": "http", "port": 80}]}});
        snap.apply(Object::Service(
            serde_json::from_value(svc).expect("service"),
        ));
        snap.apply(slice(i, 0));
        snap.apply(route(i, 0));
        if i.is_multiple_of(5) {
            let spec =
                json!({"weighted": {"services": [{"name": format!("svc-{i}"), "port": 80}]}});
            let v = traefik("TraefikService", &ns(i), &format!("ts-{i}"), spec);
            snap.apply(Object::TraefikService(decode(v).expect("TraefikService")));
        }
        if i % 10 == 5 {
            snap.apply(tcp_route(i));
        }
    }
    snap
}

type Edit = fn(&ClusterSnapshot, usize, usize) -> (ClusterSnapshot, ChangeSet);

fn edit_route(snap: &ClusterSnapshot, n: usize, generation: usize) -> (ClusterSnapshot, ChangeSet) {
    let i = n / 2 + 1;
    let mut next = snap.clone();
    next.apply(route(i, generation));
    let mut changes = ChangeSet::default();
    changes.insert(
        Kind::Traefik(
            TraefikKind::IngressRoute,
            sluice::api::traefik::Group::TraefikIo,
        ),
        ObjKey::new(ns(i), format!("route-{i}")),
    );
    (next, changes)
}

fn edit_slice(snap: &ClusterSnapshot, n: usize, generation: usize) -> (ClusterSnapshot, ChangeSet) {
    let i = n / 2 + 1;
    let mut next = snap.clone();
    next.apply(slice(i, generation));
    let mut changes = ChangeSet::default();
    changes.insert(
        Kind::EndpointSlice,
        ObjKey::new(ns(i), format!("svc-{i}-abcde")),
    );
    (next, changes)
}

/// The Middleware every route of one namespace uses (N/50 routes).
fn edit_middleware(
    snap: &ClusterSnapshot,
    _: usize,
    generation: usize,
) -> (ClusterSnapshot, ChangeSet) {
    let mut next = snap.clone();
    next.apply(middleware("team-7", &format!("g{generation}")));
    let mut changes = ChangeSet::default();
    changes.insert(
        Kind::Traefik(
            TraefikKind::Middleware,
            sluice::api::traefik::Group::TraefikIo,
        ),
        ObjKey::new("team-7", "headers"),
    );
    (next, changes)
}

/// The `default` TLSOption of one namespace (its TLS routes: N/500).
fn edit_tls_option(
    snap: &ClusterSnapshot,
    _: usize,
    generation: usize,
) -> (ClusterSnapshot, ChangeSet) {
    let mut next = snap.clone();
    let min = if generation.is_multiple_of(2) {
        "VersionTLS12"
    } else {
        "VersionTLS13"
    };
    next.apply(tls_option("team-10", min));
    let mut changes = ChangeSet::default();
    changes.insert(
        Kind::Traefik(
            TraefikKind::TlsOption,
            sluice::api::traefik::Group::TraefikIo,
        ),
        ObjKey::new("team-10", "default"),
    );
    (next, changes)
}

/// Resident memory of this process, from /proc (0 where there is none).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let sel = Selection::default_instance();
    println!(
        "{:>7} {:<40} {:>12} {:>12} {:>8}   {:>14} {:>14}",
        "routes", "change", "full build", "incremental", "rebuilt", "translate full", "incremental"
    );
    let opts = TranslateOptions::default();
    // `SLUICE_TRAEFIK_SIZES=1000,10000` (the default) chooses the sizes.
    let sizes: Vec<usize> = std::env::var("SLUICE_TRAEFIK_SIZES")
        .unwrap_or_else(|_| "1000,10000".to_owned())
        .split(',')
        .map(|s| s.trim().parse().expect("SLUICE_TRAEFIK_SIZES: numbers"))
        .collect();
    for n in sizes {
        let world = world(n);
        let before = rss_bytes();
        let (full, dag) = {
            let start = Instant::now();
            let dag = build(&world, &sel);
            (start.elapsed(), dag)
        };
        let dag_mb = rss_bytes().saturating_sub(before) as f64 / 1e6;
        let invalid = dag
            .object_statuses
            .iter()
            .filter(|s| s.description != "valid IngressRoute")
            .count();
        assert_eq!(invalid, 0, "every route of the world is valid");
        drop(dag);
        let mut snap = Arc::new(world);
        let mut inc = IncrementalDag::new(sel.clone());
        let before = rss_bytes();
        let start = Instant::now();
        inc.update(&snap, &sel, &ChangeSet::everything());
        let first = start.elapsed();
        let inc_mb = rss_bytes().saturating_sub(before) as f64 / 1e6;
        let mut translator = Translator::new(opts.clone());
        translator.translate(inc.dag()).expect("translates");
        // `SLUICE_TRAEFIK_FIRST=1`: the first build only (to profile it), as many times.
        if let Some(times) = std::env::var("SLUICE_TRAEFIK_FIRST")
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
        {
            for _ in 0..times {
                let start = Instant::now();
                drop(build(&snap, &sel));
                let full = start.elapsed();
                let start = Instant::now();
                IncrementalDag::new(sel.clone()).update(&snap, &sel, &ChangeSet::everything());
                let first = start.elapsed();
                // The first build's claim dating alone, reading every root's claims itself
                // (parsing every Traefik root's rules): what the first build did besides the
                // DAG's own parse before both shared one read of each root's claims.
                let start = Instant::now();
                let empty = ClusterSnapshot::default();
                ClaimAges::default().observe(
                    (&empty, &sel),
                    (&snap, &sel),
                    &ChangeSet::everything(),
                    true,
                );
                let seeding = start.elapsed();
                println!(
                    "{n:>7} again: full build {:>10.2}ms, first build {:>10.2}ms; claim dating reading \
                     the roots itself {:>10.2}ms",
                    ms(full),
                    ms(first),
                    ms(seeding)
                );
            }
            continue;
        }
        println!(
            "{n:>7} {:<40} {:>10.2}ms {:>10.2}ms {:>8}",
            "first build (everything)",
            ms(full),
            ms(first),
            "all"
        );
        println!(
            "{n:>7} resident memory: one full DAG {dag_mb:.1} MB; the incremental instance \
             (DAG, parts, claims, indexes) {inc_mb:.1} MB"
        );
        let edits = [
            ("one Traefik IngressRoute edited", edit_route as Edit),
            ("one EndpointSlice edited", edit_slice),
            ("a namespace's Middleware edited", edit_middleware),
            ("a namespace's default TLSOption edited", edit_tls_option),
        ];
        let open = [
            ("(open hosts) IngressRoute edited", edit_route as Edit),
            ("(open hosts) Middleware edited", edit_middleware),
        ];
        for (round, (label, edit)) in edits.into_iter().chain(open).enumerate() {
            if round == edits.len() {
                let mut next = (*snap).clone();
                let catch_all = open_route("catch-all", "PathPrefix(`/`)", "2024-01-01T00:00:00Z");
                next.apply(catch_all);
                let wildcard = "Host(`*.example.com`)";
                next.apply(open_route("wildcard", wildcard, "2025-01-01T00:00:00Z"));
                let mut changes = ChangeSet::default();
                let kind = Kind::Traefik(
                    TraefikKind::IngressRoute,
                    sluice::api::traefik::Group::TraefikIo,
                );
                for name in ["catch-all", "wildcard"] {
                    changes.insert(kind, ObjKey::new("team-0", name));
                }
                snap = Arc::new(next);
                let start = Instant::now();
                let rebuilt = inc.update(&snap, &sel, &changes).roots_rebuilt;
                let took = start.elapsed();
                translator
                    .translate_changes(inc.dag(), inc.last_diff())
                    .expect("translates");
                let served = inc
                    .dag()
                    .virtual_hosts
                    .iter()
                    .filter(|v| v.fqdn.starts_with('*'))
                    .count();
                assert_eq!(served, 2, "the catch-all and the wildcard are served");
                assert!(*inc.dag() == build(&snap, &sel), "incremental equals full");
                println!(
                    "{n:>7} {:<40} {:>12} {:>10.3}ms {rebuilt:>8}",
                    "catch-all and wildcard claimed",
                    "",
                    ms(took)
                );
            }
            let (mut full, mut incremental, mut rebuilt) = (Vec::new(), Vec::new(), 0);
            let (mut tr_full, mut tr_inc) = (Vec::new(), Vec::new());
            for generation in 1..=5 {
                let (next, changes) = edit(&snap, n, generation);
                let next = Arc::new(next);
                let start = Instant::now();
                let want = build(&next, &sel);
                full.push(start.elapsed());
                let start = Instant::now();
                rebuilt = inc.update(&next, &sel, &changes).roots_rebuilt;
                incremental.push(start.elapsed());
                assert!(*inc.dag() == want, "incremental equals full");
                let start = Instant::now();
                let reference = translate(&want, &opts).expect("translates");
                tr_full.push(start.elapsed());
                let start = Instant::now();
                let got = translator
                    .translate_changes(inc.dag(), inc.last_diff())
                    .expect("translates");
                tr_inc.push(start.elapsed());
                assert!(
                    got == InstanceResources::from(&reference),
                    "incremental translation equals a translation from scratch"
                );
                snap = next;
            }
            let (f, i) = (median(full), median(incremental));
            let (tf, ti) = (median(tr_full), median(tr_inc));
            println!(
                "{n:>7} {label:<40} {:>10.2}ms {:>10.3}ms {rebuilt:>8}   {:>12.2}ms {:>12.3}ms",
                ms(f),
                ms(i),
                ms(tf),
                ms(ti)
            );
        }
    }
}
