//! A DAG exercising every feature the translation knows, built from small constructors.
//!
//! Hosts: `app.example.com` (plain HTTP: weights, timeouts, retry, websocket, rewrite, session
//! affinity, an all-zero-weight route, a health-checked cluster), `external.example.com` (an
//! ExternalName upstream over TLS), `passthrough.example.com` (TLS passthrough to a tcpproxy),
//! `secure.example.com` (TLS 1.2 terminated, permitInsecure, h2/h2c/tls upstreams with
//! validation) and `tcp.example.com` (TLS 1.3 terminated into a weighted tcpproxy).

use crate::api::ingressroute::TlsVersion;
use crate::dag::Dag;
use crate::dag::model::{
    Cluster, ClusterEndpoints, HealthCheck, LbPolicy, Retry, Route, Secret, SecretKind,
    SocketAddress, TcpProxy, Timeout, Upstream, UpstreamProtocol, UpstreamValidation, VirtualHost,
    VirtualHostTls, WeightedCluster,
};

/// PEM material for the fixture's secrets.
#[derive(Clone, Debug)]
pub struct Pems {
    pub secure_cert: String,
    pub secure_key: String,
    pub tcp_cert: String,
    pub tcp_key: String,
    pub ca: String,
}

impl Pems {
    /// Fixed text: stable output for unit and golden tests (Envoy would not parse it).
    pub fn placeholder() -> Self {
        let pem = |what: &str, body: &str| {
            format!("-----BEGIN {what}-----\n{body}\n-----END {what}-----\n")
        };
        Self {
            secure_cert: pem("CERTIFICATE", "secure-cert"),
            secure_key: pem("PRIVATE KEY", "secure-key"),
            tcp_cert: pem("CERTIFICATE", "tcp-cert"),
            tcp_key: pem("PRIVATE KEY", "tcp-key"),
            ca: pem("CERTIFICATE", "ca-cert"),
        }
    }
}

pub const SECURE_SECRET: &str = "default/secure-tls";
pub const TCP_SECRET: &str = "default/tcp-tls";
pub const CA_SECRET: &str = "default/upstream-ca";

/// Cluster name for a service port, as the DAG builder names them.
pub fn cluster_name(service: &str, port: u16) -> String {
    format!("default/{service}/{port}/c0ffee")
}

pub fn eds_name(service: &str) -> String {
    format!("default/{service}/http")
}

pub fn eds_cluster(service: &str, port: u16) -> Cluster {
    Cluster {
        name: cluster_name(service, port),
        service: format!("default/{service}"),
        port,
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

pub fn with_protocol(mut c: Cluster, protocol: UpstreamProtocol) -> Cluster {
    c.protocol = protocol;
    c
}

pub fn with_validation(mut c: Cluster, subject_name: &str) -> Cluster {
    c.validation = Some(UpstreamValidation {
        ca_secret: CA_SECRET.to_owned(),
        subject_name: subject_name.to_owned(),
    });
    c
}

pub fn with_lb(mut c: Cluster, lb_policy: LbPolicy) -> Cluster {
    c.lb_policy = lb_policy;
    c
}

pub fn with_health_check(mut c: Cluster) -> Cluster {
    c.health_check = Some(HealthCheck {
        path: "/healthz".to_owned(),
        host: "contour-envoy-healthcheck".to_owned(),
        interval_seconds: 5,
        timeout_seconds: 2,
        unhealthy_threshold: 3,
        healthy_threshold: 2,
    });
    c
}

pub fn dns_cluster(service: &str, host: &str, port: u16) -> Cluster {
    Cluster {
        upstream: Upstream::Dns {
            host: host.to_owned(),
            port,
        },
        ..eds_cluster(service, port)
    }
}

/// A route to `(service, port, weight)` clusters with no policy.
pub fn route(prefix: &str, clusters: &[(&str, u16, u32)]) -> Route {
    Route {
        prefix: prefix.to_owned(),
        owner: "default/root".to_owned(),
        clusters: weighted(clusters),
        permit_insecure: false,
        websocket: false,
        prefix_rewrite: None,
        timeout: None,
        retry: None,
        session_affinity: false,
        extra: None,
    }
}

pub fn weighted(clusters: &[(&str, u16, u32)]) -> Vec<WeightedCluster> {
    clusters
        .iter()
        .map(|(service, port, weight)| WeightedCluster {
            cluster: cluster_name(service, *port),
            weight: *weight,
            set_cookie: Vec::new(),
        })
        .collect()
}

pub fn vhost(fqdn: &str, routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        fqdn: fqdn.to_owned(),
        owner: "default/root".to_owned(),
        tls: None,
        routes,
        tcp_proxy: None,
    }
}

pub fn with_tls(mut vh: VirtualHost, secret: &str, minimum: TlsVersion) -> VirtualHost {
    vh.tls = Some(VirtualHostTls {
        secret: Some(secret.to_owned()),
        minimum_protocol_version: minimum,
        passthrough: false,
        options: None,
    });
    vh
}

pub fn with_passthrough(mut vh: VirtualHost) -> VirtualHost {
    vh.tls = Some(VirtualHostTls {
        secret: None,
        minimum_protocol_version: TlsVersion::V1_1,
        passthrough: true,
        options: None,
    });
    vh
}

pub fn with_tcp_proxy(mut vh: VirtualHost, clusters: &[(&str, u16, u32)]) -> VirtualHost {
    vh.tcp_proxy = Some(TcpProxy {
        owner: vh.owner.clone(),
        clusters: weighted(clusters),
        branches: Vec::new(),
        plain: false,
        sni_regexes: Vec::new(),
    });
    vh
}

pub fn endpoints(service: &str, addresses: &[(&str, u16)]) -> ClusterEndpoints {
    ClusterEndpoints {
        service_name: eds_name(service),
        addresses: addresses
            .iter()
            .map(|(ip, port)| SocketAddress {
                ip: (*ip).to_owned(),
                port: *port,
            })
            .collect(),
    }
}

pub fn tls_secret(name: &str, cert_chain: &str, private_key: &str) -> Secret {
    Secret {
        name: name.to_owned(),
        kind: SecretKind::Tls {
            cert_chain: cert_chain.to_owned(),
            private_key: private_key.to_owned(),
        },
    }
}

pub fn ca_secret(name: &str, ca: &str) -> Secret {
    Secret {
        name: name.to_owned(),
        kind: SecretKind::Ca { ca: ca.to_owned() },
    }
}

/// The full-feature DAG.
pub fn dag(pems: &Pems) -> Dag {
    let app = vhost(
        "app.example.com",
        vec![
            Route {
                prefix_rewrite: Some("/v2".to_owned()),
                timeout: Some(Timeout::Millis(2500)),
                retry: Some(Retry {
                    count: 3,
                    per_try_timeout_ms: Some(500),
                }),
                ..route("/api/v2", &[("api-v1", 80, 10), ("api-v2", 80, 90)])
            },
            Route {
                session_affinity: true,
                extra: None,
                timeout: Some(Timeout::Disabled),
                ..route("/cart", &[("cart", 80, 1)])
            },
            Route {
                websocket: true,
                ..route("/chat", &[("chat", 80, 1)])
            },
            route("/dark", &[("dark", 80, 0)]),
            route("/", &[("web", 80, 1), ("dark", 80, 0)]),
        ],
    );
    let external = vhost(
        "external.example.com",
        vec![route("/", &[("httpbin", 443, 1)])],
    );
    let passthrough = with_tcp_proxy(
        with_passthrough(vhost(
            "passthrough.example.com",
            vec![route("/", &[("web", 80, 1)])],
        )),
        &[("tls-backend", 8443, 1)],
    );
    let secure = with_tls(
        vhost(
            "secure.example.com",
            vec![
                Route {
                    permit_insecure: true,
                    ..route("/insecure", &[("web", 80, 1)])
                },
                route("/grpc", &[("grpc", 443, 1)]),
                route("/h2c", &[("h2c", 8080, 1)]),
                route("/tls", &[("backend-tls", 443, 1)]),
                route("/", &[("web", 80, 1)]),
            ],
        ),
        SECURE_SECRET,
        TlsVersion::V1_2,
    );
    let tcp = with_tcp_proxy(
        with_tls(
            vhost(
                "tcp.example.com",
                vec![
                    Route {
                        permit_insecure: true,
                        ..route("/public", &[("web", 80, 1)])
                    },
                    route("/", &[("web", 80, 1)]),
                ],
            ),
            TCP_SECRET,
            TlsVersion::V1_3,
        ),
        &[("tcp-a", 9100, 1), ("tcp-b", 9100, 3)],
    );

    let mut clusters = vec![
        eds_cluster("api-v1", 80),
        eds_cluster("api-v2", 80),
        with_validation(
            with_protocol(eds_cluster("backend-tls", 443), UpstreamProtocol::Tls),
            "backend.example.com",
        ),
        with_lb(eds_cluster("cart", 80), LbPolicy::RingHash),
        with_lb(eds_cluster("chat", 80), LbPolicy::Random),
        eds_cluster("dark", 80),
        with_validation(
            with_protocol(eds_cluster("grpc", 443), UpstreamProtocol::H2),
            "grpc.example.com",
        ),
        with_protocol(eds_cluster("h2c", 8080), UpstreamProtocol::H2c),
        with_protocol(
            dns_cluster("httpbin", "httpbin.org", 443),
            UpstreamProtocol::Tls,
        ),
        eds_cluster("tcp-a", 9100),
        eds_cluster("tcp-b", 9100),
        eds_cluster("tls-backend", 8443),
        with_health_check(with_lb(eds_cluster("web", 80), LbPolicy::LeastRequest)),
    ];
    clusters.sort_by(|a, b| a.name.cmp(&b.name));

    Dag {
        gateway: "sluice/default".to_owned(),
        virtual_hosts: vec![app, external, passthrough, secure, tcp].into(),
        clusters: clusters.into(),
        endpoints: vec![
            endpoints("api-v1", &[("10.0.0.1", 8080)]),
            endpoints("api-v2", &[("10.0.0.2", 8080), ("10.0.0.3", 8080)]),
            endpoints("backend-tls", &[("10.0.1.1", 8443)]),
            endpoints("cart", &[("10.0.2.1", 8080), ("10.0.2.2", 8080)]),
            endpoints("chat", &[("10.0.3.1", 8080)]),
            // "dark" has no ready endpoint: the translation still gives it an (empty) assignment.
            endpoints("grpc", &[("10.0.4.1", 8443)]),
            endpoints("h2c", &[("10.0.5.1", 8080)]),
            endpoints("tcp-a", &[("10.0.6.1", 9100)]),
            endpoints("tcp-b", &[("10.0.6.2", 9100)]),
            endpoints("tls-backend", &[("10.0.7.1", 8443)]),
            endpoints("web", &[("10.0.8.1", 8080), ("10.0.8.2", 8080)]),
        ]
        .into(),
        secrets: vec![
            ca_secret(CA_SECRET, &pems.ca),
            tls_secret(SECURE_SECRET, &pems.secure_cert, &pems.secure_key),
            tls_secret(TCP_SECRET, &pems.tcp_cert, &pems.tcp_key),
        ]
        .into(),
        statuses: Default::default(),
        object_statuses: Default::default(),
    }
}
