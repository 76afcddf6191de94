//! Hand-built DAGs for the tests that feed Sluice's translator and ADS server directly (no
//! manifests): EDS clusters of namespace `team-a` whose endpoints are local test backends, and
//! plain-HTTP routes to them.

use sluice::dag::Dag;
use sluice::dag::model::{
    Cluster, ClusterEndpoints, LbPolicy, Route, SocketAddress, Upstream, UpstreamProtocol,
    VirtualHost, WeightedCluster,
};

use sluice_e2e::backend::Backend;

/// The instance these DAGs belong to.
pub const INSTANCE: &str = "team-a/gw";

/// The EDS cluster of Service `team-a/<service>`, port 80.
pub fn cluster(service: &str) -> Cluster {
    Cluster {
        name: format!("team-a/{service}/80/c0ffee"),
        service: format!("team-a/{service}"),
        port: 80,
        upstream: Upstream::Eds {
            service_name: eds_name(service),
        },
        protocol: UpstreamProtocol::Http1,
        lb_policy: LbPolicy::RoundRobin,
        health_check: None,
        validation: None,
        proxy_protocol: None,
        active_health_check: None,
        transport: None,
    }
}

fn eds_name(service: &str) -> String {
    format!("team-a/{service}/http")
}

/// A route of `owner` for `prefix` to [`cluster`]`(service)`, a WebSocket route if `websocket`.
pub fn route(prefix: &str, owner: &str, service: &str, websocket: bool) -> Route {
    Route {
        prefix: prefix.to_owned(),
        owner: owner.to_owned(),
        clusters: vec![WeightedCluster {
            cluster: cluster(service).name,
            weight: 1,
            set_cookie: Vec::new(),
        }],
        permit_insecure: false,
        websocket,
        prefix_rewrite: None,
        timeout: None,
        retry: None,
        session_affinity: false,
        extra: None,
    }
}

/// The plain-HTTP virtual host `fqdn` of `owner` with `routes`.
pub fn plain_host(fqdn: &str, owner: &str, routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        fqdn: fqdn.to_owned(),
        owner: owner.to_owned(),
        tls: None,
        routes,
        tcp_proxy: None,
    }
}

/// [`INSTANCE`]'s DAG of `virtual_hosts` (in their order), with Services `a` and `b` served by
/// backends `a` and `b`.
pub fn dag(virtual_hosts: Vec<VirtualHost>, a: &Backend, b: &Backend) -> Dag {
    let endpoints = |service: &str, backend: &Backend| ClusterEndpoints {
        service_name: eds_name(service),
        addresses: vec![SocketAddress {
            ip: "127.0.0.1".to_owned(),
            port: backend.port(),
        }],
    };
    Dag {
        gateway: INSTANCE.to_owned(),
        virtual_hosts: virtual_hosts.into(),
        clusters: vec![cluster("a"), cluster("b")].into(),
        endpoints: vec![endpoints("a", a), endpoints("b", b)].into(),
        ..Dag::default()
    }
}
