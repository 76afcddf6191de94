//! `cargo bench -p sluice --bench scale`: DAG build and xDS translation time at scale, printed
//! as figures (no timing is asserted anywhere). Generates N root IngressRoutes, each with a
//! delegated child, its own Service and Endpoints, plus every 10th with TLS.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Secret, Service, ServicePort,
    ServiceSpec,
};
use kube::api::ObjectMeta;
use sluice::api::ingressroute::{Delegate, Route, Service as IrService, Tls, VirtualHost};
use sluice::api::{IngressRoute, IngressRouteSpec};
use sluice::dag::{Selection, build};
use sluice::snapshot::{ClusterSnapshot, Object};
use sluice::xds::translate::{TranslateOptions, translate};

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

fn main() {
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
            .map(|r| r.resource.value.len())
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
