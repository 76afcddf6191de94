//! `cargo bench -p sluice --bench tls_store`: the full DAG build of one namespace whose Traefik
//! IngressRoute has H hosts served over HTTPS, their certificates picked by name from the
//! namespace's TLSStore `default` (64 certificates, a `defaultCertificate`), printed as figures
//! (no timing is asserted). Baseline, same run: the same route naming its Secret
//! (`tls.secretName`), whose certificate is checked once for every host.
#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use sluice::dag::{Selection, build};
use sluice::snapshot::ClusterSnapshot;

const CERTIFICATES: usize = 64;
const RUNS: usize = 5;

fn secret(name: &str, names: &[String]) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(names.to_vec())
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let doc = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                     "metadata": {"namespace": "apps", "name": name},
                     "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}});
    format!("---\n{doc}\n")
}

/// The namespace's objects: the store's Secrets (certificate `i` for `hI.example.com`, so
/// hosts pick different ones), the store, a Service and the IngressRoute with `tls`.
fn world(hosts: usize, tls: &serde_json::Value) -> ClusterSnapshot {
    let mut yaml = String::new();
    for i in 0..CERTIFICATES {
        yaml += &secret(&format!("c{i}"), &[format!("h{i}.example.com")]);
    }
    yaml += &secret("fallback", &["fallback.example.com".to_owned()]);
    let store = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "TLSStore",
        "metadata": {"namespace": "apps", "name": "default"},
        "spec": {"certificates": (0..CERTIFICATES)
                     .map(|i| json!({"secretName": format!("c{i}")}))
                     .collect::<Vec<_>>(),
                 "defaultCertificate": {"secretName": "fallback"}},
    });
    let service = json!({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"namespace": "apps", "name": "web"},
                         "spec": {"ports": [{"port": 80}]}});
    let route = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"namespace": "apps", "name": "many"},
        "spec": {"entryPoints": ["websecure"], "tls": tls,
                 "routes": (0..hosts)
                     .map(|i| json!({"match": format!("Host(`h{i}.example.com`)"),
                                     "services": [{"name": "web", "port": 80}]}))
                     .collect::<Vec<_>>()},
    });
    yaml += &format!("---\n{store}\n---\n{service}\n---\n{route}\n");
    let report = sluice::source::load_sources([("bench.yaml", yaml.as_str())]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.snapshot
}

fn median_build(snapshot: &ClusterSnapshot, sel: &Selection) -> (Duration, usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut hosts = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let dag = build(snapshot, sel);
        times.push(start.elapsed());
        hosts = dag.virtual_hosts.len();
    }
    times.sort();
    (times[RUNS / 2], hosts)
}

fn main() {
    let sel = Selection::default_instance();
    println!("hosts  store (tls: {{}})  secretName (baseline)  store/baseline");
    for hosts in [100, 400] {
        let store = world(hosts, &json!({}));
        let named = world(hosts, &json!({"secretName": "fallback"}));
        let (s, served) = median_build(&store, &sel);
        assert_eq!(served, hosts, "every host served from the store");
        let (b, served) = median_build(&named, &sel);
        assert_eq!(served, hosts);
        println!(
            "{hosts:>5}  {:>14.1} ms  {:>19.1} ms  {:>13.1}x",
            s.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            s.as_secs_f64() / b.as_secs_f64()
        );
    }
}
