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

fn snapshot(n: usize) -> ClusterSnapshot {
    let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
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
}
