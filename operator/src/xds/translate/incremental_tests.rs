//! The incremental [`Translator`] against the from-scratch [`translate`], on random edit
//! sequences of a DAG.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::fixture::{self, Pems};
use super::{TranslateOptions, Translator, translate};
use crate::api::ingressroute::TlsVersion;
use crate::dag::model::{LbPolicy, SocketAddress, VirtualHost};
use crate::dag::{Dag, DagDiff};
use crate::xds::cache::Snapshot;
use crate::xds::resource::{InstanceResources, type_url};

/// A small deterministic generator (SplitMix64): reproducible sequences without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Services of the fixture that have an EDS cluster on port 80 or a known port.
const SERVICES: [(&str, u16); 6] = [
    ("web", 80),
    ("api-v1", 80),
    ("api-v2", 80),
    ("cart", 80),
    ("chat", 80),
    ("dark", 80),
];

fn random_host(rng: &mut Rng, fqdn: &str) -> VirtualHost {
    let (a, pa) = SERVICES[rng.below(SERVICES.len())];
    let (b, pb) = SERVICES[rng.below(SERVICES.len())];
    let mut routes = vec![fixture::route("/", &[(a, pa, 1)])];
    if rng.chance(50) {
        let mut r = fixture::route("/api", &[(a, pa, 3), (b, pb, rng.below(3) as u32)]);
        r.permit_insecure = rng.chance(50);
        r.prefix_rewrite = rng.chance(30).then(|| "/".to_owned());
        routes.insert(0, r);
    }
    let vh = fixture::vhost(fqdn, routes);
    match rng.below(5) {
        0 | 1 => vh,
        2 => fixture::with_tls(vh, fixture::SECURE_SECRET, TlsVersion::V1_2),
        3 => fixture::with_tcp_proxy(fixture::with_passthrough(vh), &[("tls-backend", 8443, 1)]),
        _ => fixture::with_tcp_proxy(
            fixture::with_tls(vh, fixture::TCP_SECRET, TlsVersion::V1_3),
            &[("tcp-a", 9100, 1)],
        ),
    }
}

/// One random edit, the kind a user or the cluster makes; a few break the DAG's invariants.
fn edit(rng: &mut Rng, dag: &mut Dag, step: usize) {
    match rng.below(15) {
        0 | 1 => {
            // Some under a wildcard of edit 12, whose `https/` route configuration lists them.
            let fqdn = if rng.chance(25) {
                format!("h{}.w{}.example.com", rng.below(10), rng.below(3))
            } else {
                format!("h{}.example.com", rng.below(40))
            };
            let vh = random_host(rng, &fqdn);
            match dag.virtual_hosts.binary_search_by(|v| v.fqdn.cmp(&fqdn)) {
                Ok(i) => dag.virtual_hosts[i] = vh.into(),
                Err(i) => dag.virtual_hosts.insert(i, vh),
            }
        }
        2 if !dag.virtual_hosts.is_empty() => {
            let i = rng.below(dag.virtual_hosts.len());
            dag.virtual_hosts.remove(i);
        }
        3 | 4 if !dag.virtual_hosts.is_empty() => {
            let i = rng.below(dag.virtual_hosts.len());
            let vh = dag.virtual_hosts.make_mut(i);
            let j = rng.below(vh.routes.len());
            let r = &mut vh.routes[j];
            match rng.below(4) {
                0 => r.permit_insecure = !r.permit_insecure,
                1 => r.websocket = !r.websocket,
                2 => {
                    for c in &mut r.clusters {
                        c.weight = rng.below(4) as u32;
                    }
                }
                _ => r.prefix_rewrite = Some(format!("/v{step}/")),
            }
        }
        5 if !dag.virtual_hosts.is_empty() => {
            // TLS on or off (terminated, no tcpproxy).
            let i = rng.below(dag.virtual_hosts.len());
            let vh = VirtualHost::clone(&dag.virtual_hosts[i]);
            dag.virtual_hosts[i] = Arc::new(if vh.tls.is_some() {
                VirtualHost {
                    tls: None,
                    tcp_proxy: None,
                    ..vh
                }
            } else {
                fixture::with_tls(vh, fixture::SECURE_SECRET, TlsVersion::V1_3)
            });
        }
        6 | 7 if !dag.endpoints.is_empty() => {
            let i = rng.below(dag.endpoints.len());
            let addresses = &mut dag.endpoints.make_mut(i).addresses;
            if rng.chance(30) || addresses.is_empty() {
                addresses.push(SocketAddress {
                    ip: format!("10.9.{}.{}", step % 250, rng.below(250)),
                    port: 8080,
                });
                addresses.sort();
            } else if rng.chance(20) {
                // No ready endpoint at all: the translation gives an empty assignment.
                dag.endpoints.remove(i);
            } else {
                let j = rng.below(addresses.len());
                addresses.remove(j);
            }
        }
        8 if !dag.clusters.is_empty() => {
            let i = rng.below(dag.clusters.len());
            let c = dag.clusters.make_mut(i);
            c.lb_policy =
                [LbPolicy::RoundRobin, LbPolicy::Random, LbPolicy::RingHash][rng.below(3)];
        }
        9 => {
            let i = rng.below(dag.secrets.len());
            dag.secrets[i] = Arc::new(match &dag.secrets[i].kind {
                crate::dag::model::SecretKind::Ca { .. } => {
                    fixture::ca_secret(&dag.secrets[i].name, &format!("ca {step}"))
                }
                crate::dag::model::SecretKind::Tls { .. } => fixture::tls_secret(
                    &dag.secrets[i].name,
                    &format!("cert {step}"),
                    &format!("key {step}"),
                ),
            });
        }
        10 if dag.virtual_hosts.len() > 1 => {
            // Out of order: the HTTP route configuration follows the DAG's order.
            let i = rng.below(dag.virtual_hosts.len() - 1);
            dag.virtual_hosts.swap(i, i + 1);
        }
        12 => {
            // A name plain HTTP cannot be scoped by (a wildcard, upper case): the Gateway falls
            // back to the shared `ingress_http` until the host goes again (edit 2).
            let fqdn = if rng.chance(50) {
                format!("*.w{}.example.com", rng.below(3))
            } else {
                format!("W{}.example.com", rng.below(3))
            };
            let vh = random_host(rng, &fqdn);
            match dag.virtual_hosts.binary_search_by(|v| v.fqdn.cmp(&fqdn)) {
                Ok(i) => dag.virtual_hosts[i] = vh.into(),
                Err(i) => dag.virtual_hosts.insert(i, vh),
            }
        }
        13 if !dag.clusters.is_empty() => {
            // A cluster goes; if some unchanged host or mirror still names it, the invariant
            // breaks where the diff does not name the host (the diff's check counts references).
            let i = rng.below(dag.clusters.len());
            dag.clusters.remove(i);
        }
        14 if !dag.secrets.is_empty() => {
            // A secret goes or changes kind under the hosts and clusters naming it.
            let i = rng.below(dag.secrets.len());
            let name = dag.secrets[i].name.clone();
            if rng.chance(50) {
                dag.secrets.remove(i);
            } else {
                dag.secrets[i] = Arc::new(match &dag.secrets[i].kind {
                    crate::dag::model::SecretKind::Tls { .. } => fixture::ca_secret(&name, "ca"),
                    crate::dag::model::SecretKind::Ca { .. } => {
                        fixture::tls_secret(&name, "cert", "key")
                    }
                });
            }
        }
        11 => {
            // Breaks an invariant (a route to a cluster the DAG lacks): both refuse.
            if let Some(vh) = dag.virtual_hosts.first_mut().map(Arc::make_mut) {
                vh.routes[0].clusters[0].cluster = format!("missing/{step}");
            }
        }
        _ => {}
    }
}

/// Every list of the DAG in name order.
fn sort(dag: &mut Dag) {
    dag.virtual_hosts.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
    dag.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    dag.endpoints
        .sort_by(|a, b| a.service_name.cmp(&b.service_name));
    dag.secrets.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The names of the entries that differ between two DAGs, plus a few that do not; `full` when
/// a list is out of name order.
fn diff(before: &Dag, after: &Dag, rng: &mut Rng) -> DagDiff {
    fn changed<T: PartialEq>(
        a: &[T],
        b: &[T],
        name: impl Fn(&T) -> &str,
        rng: &mut Rng,
    ) -> BTreeSet<String> {
        let index = |l: &[T]| -> BTreeMap<String, usize> {
            l.iter()
                .enumerate()
                .map(|(i, e)| (name(e).to_owned(), i))
                .collect()
        };
        let (ia, ib) = (index(a), index(b));
        ia.keys()
            .chain(ib.keys())
            .filter(|n| {
                let same = matches!((ia.get(*n), ib.get(*n)), (Some(x), Some(y)) if a[*x] == b[*y]);
                !same || rng.chance(5)
            })
            .cloned()
            .collect()
    }
    let sorted = |d: &Dag| {
        d.virtual_hosts.windows(2).all(|w| w[0].fqdn < w[1].fqdn)
            && d.clusters.windows(2).all(|w| w[0].name < w[1].name)
            && d.endpoints
                .windows(2)
                .all(|w| w[0].service_name < w[1].service_name)
            && d.secrets.windows(2).all(|w| w[0].name < w[1].name)
    };
    if !sorted(before) || !sorted(after) {
        return DagDiff::full();
    }
    DagDiff {
        full: false,
        vhosts: changed(
            &before.virtual_hosts,
            &after.virtual_hosts,
            |v| &v.fqdn,
            rng,
        ),
        clusters: changed(&before.clusters, &after.clusters, |c| &c.name, rng),
        endpoints: changed(
            &before.endpoints,
            &after.endpoints,
            |e| &e.service_name,
            rng,
        ),
        secrets: changed(&before.secrets, &after.secrets, |s| &s.name, rng),
    }
}

fn reference(
    dag: &Dag,
    opts: &TranslateOptions,
) -> Result<InstanceResources, super::TranslateError> {
    translate(dag, opts).map(|r| InstanceResources::from(&r))
}

#[test]
fn incremental_output_is_byte_identical_to_a_full_translation_after_every_edit() {
    for seed in 0..8 {
        // Some Gateways trust X-Forwarded-For hops: every connection manager says so.
        let opts = TranslateOptions {
            xff_trusted_hops: u32::try_from(seed % 3).unwrap(),
            ..TranslateOptions::default()
        };
        let mut rng = Rng(seed);
        let mut translator = Translator::new(opts.clone());
        let mut dag = fixture::dag(&Pems::placeholder());
        let mut errors = 0;
        let mut diffs = 0;
        let mut modes = std::collections::BTreeSet::new();
        sort(&mut dag);
        for step in 0..150 {
            let before = dag.clone();
            if rng.chance(30) {
                // Back in name order after a swap (edit 10), as every real DAG is.
                sort(&mut dag);
            }
            edit(&mut rng, &mut dag, step);
            let expected = reference(&dag, &opts);
            // Every other translation goes through the diff of the two DAGs (sometimes naming
            // more than changed); a DAG out of name order (edit 10) is never handed a diff.
            let got = if step % 2 == 0 {
                translator.translate(&dag)
            } else {
                let diff = diff(&before, &dag, &mut rng);
                diffs += usize::from(!diff.full);
                translator.translate_changes(&dag, &diff)
            };
            assert_eq!(got, expected, "seed {seed}, step {step}");
            if let Ok(got) = &got {
                assert_eq!(
                    Snapshot::new(got.clone()).version(),
                    Snapshot::new(expected.clone().unwrap()).version(),
                    "seed {seed}, step {step}: snapshot version"
                );
            }
            if let Ok(r) = &expected {
                modes.insert(r.by_type().contains_key(type_url::SCOPED_ROUTE));
            }
            if expected.is_err() {
                // The last good DAG again: the failed translation changed nothing remembered.
                errors += 1;
                dag = before;
            }
        }
        assert!(errors > 0, "seed {seed} never broke an invariant");
        assert!(
            diffs > 40,
            "seed {seed}: only {diffs} translations of a diff"
        );
        assert!(
            modes.len() == 2,
            "seed {seed} did not go through both plain-HTTP modes"
        );
    }
}

#[test]
fn unchanged_resources_are_shared_not_re_encoded() {
    let opts = TranslateOptions::default();
    let mut translator = Translator::new(opts.clone());
    let mut dag = fixture::dag(&Pems::placeholder());
    let first = translator.translate(&dag).unwrap();
    let again = translator.translate(&dag).unwrap();
    let same = |a: &InstanceResources, b: &InstanceResources, ty: &str, name: &str| {
        Arc::ptr_eq(&a.by_type()[ty][name], &b.by_type()[ty][name])
    };
    for (ty, named) in first.by_type() {
        for name in named.keys() {
            assert!(same(&first, &again, ty, name), "{ty} {name} re-encoded");
        }
    }
    // One route of a plain-HTTP host changes: only its `http/<fqdn>` is new.
    dag.virtual_hosts.make_mut(0).routes[0].retry = None;
    let edited = translator.translate(&dag).unwrap();
    assert_eq!(edited, reference(&dag, &opts).unwrap());
    let scope = format!("http/{}", dag.virtual_hosts[0].fqdn);
    for (ty, named) in first.by_type() {
        for name in named.keys() {
            let changed = ty == type_url::ROUTE && **name == *scope;
            assert_eq!(!same(&first, &edited, ty, name), changed, "{ty} {name}");
        }
    }
    // New options start afresh, with their own listeners.
    translator.set_options(&TranslateOptions {
        http_port: 9090,
        ..opts.clone()
    });
    let moved = translator.translate(&dag).unwrap();
    assert_ne!(
        moved.by_type()[type_url::LISTENER][super::HTTP_LISTENER],
        edited.by_type()[type_url::LISTENER][super::HTTP_LISTENER]
    );
}

#[test]
fn the_shared_http_route_configuration_is_rebuilt_after_a_spell_of_scopes() {
    // Shared (a wildcard host), scoped (it goes), a host goes while scoped, then shared again
    // with no plain-HTTP host at all: `ingress_http` must not be the one from before.
    let opts = TranslateOptions::default();
    let mut translator = Translator::new(opts.clone());
    let mut dag = fixture::dag(&Pems::placeholder());
    let wild = |fqdn: &str| {
        fixture::with_tcp_proxy(
            fixture::with_passthrough(fixture::vhost(fqdn, vec![fixture::route("/", &[])])),
            &[("tls-backend", 8443, 1)],
        )
    };
    dag.virtual_hosts.insert(0, wild("*.a.example.com"));
    let steps: [&dyn Fn(&mut Dag); 3] = [
        &|d| {
            d.virtual_hosts.remove(0);
        },
        &|d| {
            d.virtual_hosts
                .retain(|v| v.tls.as_ref().is_some_and(|t| t.passthrough))
        },
        &|d| d.virtual_hosts.insert(0, wild("*.b.example.com")),
    ];
    assert_eq!(translator.translate(&dag), reference(&dag, &opts));
    for step in steps {
        step(&mut dag);
        assert_eq!(translator.translate(&dag), reference(&dag, &opts));
    }
}

#[test]
fn a_name_ordered_dag_with_a_missing_cluster_or_secret_is_refused() {
    // The checks' fast path (lists in name order, searched by bisection) refuses what the
    // slow path does.
    let mut dag = fixture::dag(&Pems::placeholder());
    sort(&mut dag);
    assert!(translate(&dag, &TranslateOptions::default()).is_ok());
    let mut missing_cluster = dag.clone();
    missing_cluster.virtual_hosts.make_mut(0).routes[0].clusters[0].cluster = "missing".to_owned();
    assert!(matches!(
        translate(&missing_cluster, &TranslateOptions::default()),
        Err(super::TranslateError::UnknownCluster { .. })
    ));
    let mut missing_secret = dag.clone();
    let tls = missing_secret
        .virtual_hosts
        .iter_mut()
        .find_map(|v| v.tls.as_mut().filter(|t| t.secret.is_some()))
        .unwrap();
    tls.secret = Some("missing".to_owned());
    assert!(matches!(
        translate(&missing_secret, &TranslateOptions::default()),
        Err(super::TranslateError::UnknownSecret { .. })
    ));
}

/// Every `.yaml` under `examples/traefik/`, by path, in path order.
fn traefik_example_files() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/traefik");
    let mut out = Vec::new();
    walk(&dir, &mut out);
    out
}

/// A Traefik world (the manifests of `examples/traefik/`, files taken out and put back at
/// random): the DAG kept by the incremental DAG, each update translated through its diff as the
/// pipeline does, against a translation from scratch.
#[test]
fn a_traefik_world_translates_through_the_dag_diffs_as_from_scratch() {
    use crate::dag::{IncrementalDag, Selection};
    use crate::snapshot::{ChangeSet, ClusterSnapshot};

    let files = traefik_example_files();
    assert!(files.len() > 10, "examples/traefik: {} files", files.len());
    let load = |included: &[bool]| -> Arc<ClusterSnapshot> {
        let chosen = files
            .iter()
            .zip(included)
            .filter(|(_, on)| **on)
            .map(|((name, text), _)| (name.as_str(), text.as_str()));
        let report = crate::source::load_sources(chosen);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        Arc::new(report.snapshot)
    };
    let opts = TranslateOptions::default();
    let sel = Selection::default_instance();
    let (mut diffs, mut traefik_valid) = (0, 0);
    // At least 4 seeds, more (up to 12) until the diff path ran 40 times: a world with a
    // catch-all or wildcard host is built whole, and how long the random walk keeps the file
    // claiming one depends on how many files examples/traefik has.
    for seed in 0..12 {
        if seed >= 4 && diffs > 40 {
            break;
        }
        let mut rng = Rng(seed);
        let mut included = vec![true; files.len()];
        let mut snap = load(&included);
        let mut dag = IncrementalDag::new(sel.clone());
        dag.update(&snap, &sel, &ChangeSet::everything());
        let mut translator = Translator::new(opts.clone());
        let mut translated = translator.translate(dag.dag()).is_ok();
        for step in 0..40 {
            for _ in 0..1 + rng.below(2) {
                let i = rng.below(files.len());
                included[i] = !included[i];
            }
            let next = load(&included);
            let changes = ChangeSet::diff(&snap, &next);
            dag.update(&next, &sel, &changes);
            snap = next;
            let want = crate::dag::build_aged(&snap, &sel, dag.claim_ages());
            assert_eq!(*dag.dag(), want, "seed {seed}, step {step}");
            traefik_valid += dag
                .dag()
                .object_statuses
                .iter()
                .filter(|s| s.current_status == crate::dag::Validity::Valid)
                .count();
            let got = if translated {
                diffs += usize::from(!dag.last_diff().full);
                translator.translate_changes(dag.dag(), dag.last_diff())
            } else {
                translator.translate(dag.dag())
            };
            translated = got.is_ok();
            assert_eq!(
                got,
                reference(dag.dag(), &opts),
                "seed {seed}, step {step}: translation of the diff differs"
            );
        }
    }
    assert!(traefik_valid > 100, "{traefik_valid} valid Traefik routes");
    assert!(diffs > 40, "only {diffs} translations of a diff");
}
