//! The references [`Refs`] counts are exactly what the whole check looks up.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Target, cluster_refs, host_refs};
use crate::dag::Dag;
use crate::dag::model::{
    ClientValidation, Mirror, RouteExtra, SecretKind, TcpBranch, TlsOptions, WeightedCluster,
};
use crate::xds::translate::check;
use crate::xds::translate::fixture::{self, Pems};

/// The fixture DAG with every kind of reference: a mirror, a TCP branch, client validation,
/// and a cluster and a secret nothing names.
fn dag() -> Dag {
    let mut dag = fixture::dag(&Pems::placeholder());
    let cluster = |service: &str, port: u16| fixture::cluster_name(service, port);
    for vh in dag.virtual_hosts.iter_mut() {
        match vh.fqdn.as_str() {
            "app.example.com" => {
                vh.routes[0].extra = Some(Box::new(RouteExtra {
                    mirrors: vec![Mirror {
                        cluster: cluster("h2c", 8080),
                        percent: 10,
                    }],
                    ..RouteExtra::default()
                }));
            }
            "tcp.example.com" => {
                let tcp = vh.tcp_proxy.as_mut().unwrap();
                tcp.branches.push(TcpBranch {
                    alpn: vec!["h2".to_owned()],
                    sources: Vec::new(),
                    clusters: vec![WeightedCluster {
                        cluster: cluster("tls-backend", 8443),
                        ..tcp.clusters[0].clone()
                    }],
                });
            }
            "secure.example.com" => {
                let tls = vh.tls.as_mut().unwrap();
                tls.options = Some(Box::new(TlsOptions {
                    source: "default/mtls".to_owned(),
                    maximum_protocol_version: None,
                    cipher_suites: Vec::new(),
                    ecdh_curves: Vec::new(),
                    alpn_protocols: None,
                    client_validation: Some(ClientValidation {
                        ca_secret: "default/client-ca".to_owned(),
                        require: true,
                        accept_untrusted: false,
                    }),
                    disable_session_tickets: false,
                }));
            }
            _ => {}
        }
    }
    dag.clusters.push(fixture::eds_cluster("unused", 80));
    dag.secrets
        .push(fixture::ca_secret("default/client-ca", "client ca"));
    dag.secrets
        .push(fixture::ca_secret("default/zz-unused", "nobody"));
    dag.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    dag.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    dag
}

fn refs(dag: &Dag) -> BTreeSet<(String, &'static str)> {
    let mut out = BTreeSet::new();
    let mut add = |t: Target, name: &str| {
        let t = match t {
            Target::Cluster => "cluster",
            Target::Certificate => "certificate",
            Target::Bundle => "bundle",
        };
        out.insert((name.to_owned(), t));
    };
    for vh in &dag.virtual_hosts {
        host_refs(vh, &mut add);
    }
    for c in &dag.clusters {
        cluster_refs(c, &mut add);
    }
    out
}

#[test]
fn the_counted_references_are_what_the_check_looks_up() {
    let dag = dag();
    check(&dag).unwrap();
    let refs = refs(&dag);
    for kind in ["cluster", "certificate", "bundle"] {
        assert!(refs.iter().any(|(_, t)| *t == kind), "no {kind} reference");
    }
    let mirror = fixture::cluster_name("h2c", 8080);
    assert!(refs.contains(&(mirror, "cluster")));
    assert!(refs.contains(&("default/client-ca".to_owned(), "bundle")));
    // Each reference is looked up: without its target, or with a secret of the other kind,
    // the check fails.
    for (name, target) in &refs {
        let mut broken = dag.clone();
        if *target == "cluster" {
            broken.clusters.retain(|c| c.name != *name);
        } else {
            broken.secrets.retain(|s| s.name != *name);
        }
        assert!(check(&broken).is_err(), "{target} {name} removed");
        if *target != "cluster" {
            let mut wrong = dag.clone();
            let i = wrong.secrets.iter().position(|s| s.name == *name).unwrap();
            wrong.secrets[i] = Arc::new(match wrong.secrets[i].kind {
                SecretKind::Tls { .. } => fixture::ca_secret(name, "ca"),
                SecretKind::Ca { .. } => fixture::tls_secret(name, "cert", "key"),
            });
            assert!(check(&wrong).is_err(), "{target} {name} of the other kind");
        }
    }
    // Nothing else is: every cluster and secret no reference names can go.
    let named: BTreeSet<&str> = refs.iter().map(|(n, _)| n.as_str()).collect();
    let mut bare = dag.clone();
    bare.clusters.retain(|c| named.contains(c.name.as_str()));
    bare.secrets.retain(|s| named.contains(s.name.as_str()));
    assert!(bare.clusters.len() < dag.clusters.len());
    assert!(bare.secrets.len() < dag.secrets.len());
    check(&bare).unwrap();
}
