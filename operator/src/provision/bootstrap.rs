//! Envoy bootstrap pointing an instance's Envoy at Sluice's ADS server. Pure: returns JSON.

use serde_json::{Value, json};

pub use crate::api::gateway::EnvoyStats;
use crate::snapshot::ObjKey;

/// Name of the static cluster that reaches Sluice's xDS server.
pub const XDS_CLUSTER: &str = "sluice-xds";
/// Directory holding Envoy's admin socket in a pod: an `emptyDir` shared by the Envoy and
/// `shutdown-manager` containers, and nothing else.
pub const ADMIN_SOCKET_DIR: &str = "/var/run/sluice";
/// Envoy's admin interface: a Unix domain socket, never a TCP port, so that no route, endpoint
/// or ExternalName service can reach it.
pub const DEFAULT_ADMIN_SOCKET: &str = "/var/run/sluice/admin.sock";
/// Permissions of the admin socket: its owner only (both containers run as the same user).
pub const ADMIN_SOCKET_MODE: u32 = 0o600;

/// The xDS transport variant Envoy uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AdsFlavour {
    /// Incremental (delta) ADS.
    #[default]
    Delta,
    /// State-of-the-world ADS.
    Sotw,
}

/// Client-side TLS material for the xDS connection (file paths inside the Envoy container).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsClientTls {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    /// Name the server's certificate must carry.
    pub server_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// Instance whose resources this Envoy receives (`node.cluster`).
    pub gateway: ObjKey,
    /// `node.id`; Envoys of one instance need distinct ids only for logs.
    pub node_id: String,
    pub xds_host: String,
    pub xds_port: u16,
    pub ads: AdsFlavour,
    /// Path of the Unix domain socket Envoy's admin interface binds.
    pub admin_socket: String,
    pub tls: Option<XdsClientTls>,
    /// Which statistics Envoy keeps (a Gateway's `spec.envoy.stats`).
    pub stats: EnvoyStats,
}

impl BootstrapOptions {
    pub fn new(gateway: ObjKey, xds_host: impl Into<String>, xds_port: u16) -> Self {
        Self {
            node_id: format!("{}-{}", gateway.namespace, gateway.name),
            gateway,
            xds_host: xds_host.into(),
            xds_port,
            ads: AdsFlavour::Delta,
            admin_socket: DEFAULT_ADMIN_SOCKET.to_owned(),
            tls: None,
            stats: EnvoyStats::default(),
        }
    }
}

/// Mutual TLS to the xDS server: present the instance's client certificate, trust only the xDS
/// CA, and require the server certificate to carry `server_name` (a DNS SAN, sent as SNI; or an
/// IP SAN when `server_name` is an IP address, which SNI cannot carry).
fn xds_transport_socket(tls: &XdsClientTls) -> Value {
    let san_type = if tls.server_name.parse::<std::net::IpAddr>().is_ok() {
        "IP_ADDRESS"
    } else {
        "DNS"
    };
    let mut context = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            // gRPC is HTTP/2; say so in the handshake.
            "alpn_protocols": ["h2"],
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "tls_certificates": [{
                "certificate_chain": {"filename": tls.cert_file},
                "private_key": {"filename": tls.key_file}
            }],
            "validation_context": {
                "trusted_ca": {"filename": tls.ca_file},
                "match_typed_subject_alt_names": [{
                    "san_type": san_type,
                    "matcher": {"exact": tls.server_name}
                }]
            }
        }
    });
    if san_type == "DNS" {
        context["sni"] = json!(tls.server_name);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": context})
}

/// Top-level statistic families [`EnvoyStats::Minimal`] keeps whole: none of them grows with
/// the number of clusters.
pub const MINIMAL_STATS_PREFIXES: [&str; 16] = [
    "server.",
    "listener.",
    "listener_manager.",
    "http.",
    "http1.",
    "http2.",
    "tcp.",
    "tls_inspector.",
    "cluster_manager.",
    "control_plane.",
    "runtime.",
    "overload.",
    "main_thread.",
    "workers.",
    "filesystem.",
    "vhost.",
];

/// The per-cluster statistics [`EnvoyStats::Minimal`] keeps (of about 110 per cluster), matched
/// on Envoy's own stat names, `cluster.<name>.<stat>`. Sluice's cluster names hold no dot.
/// Requests: totals, classes (`upstream_rq_2xx`…, `envoy_cluster_upstream_rq_xx` in Prometheus),
/// time, timeouts, retries, active and pending; connections: active, total, failed; health:
/// membership and health-check outcomes; outlier ejections.
pub const MINIMAL_CLUSTER_STATS: &str = concat!(
    r"^cluster\.[^.]+\.(",
    r"upstream_rq_(total|[1-5]xx|time|timeout|retry|active|pending_active|pending_overflow)",
    r"|upstream_cx_(active|total|connect_fail|none_healthy)",
    r"|membership_(healthy|degraded|total)",
    r"|health_check\.(attempt|success|failure|network_failure|healthy)",
    r"|outlier_detection\.ejections_active",
    r")$"
);

/// Envoy's `stats_config` for `stats`: with [`EnvoyStats::Minimal`], an inclusion list, so the
/// statistics it leaves out are never allocated.
pub fn stats_config(stats: EnvoyStats) -> Option<Value> {
    match stats {
        EnvoyStats::Full => None,
        EnvoyStats::Minimal => {
            let mut patterns: Vec<Value> = MINIMAL_STATS_PREFIXES
                .iter()
                .map(|p| json!({"prefix": p}))
                .collect();
            patterns.push(json!({"safe_regex": {"regex": MINIMAL_CLUSTER_STATS}}));
            // The connection to Sluice itself, whole (TLS failures included): one cluster.
            patterns.push(json!({"prefix": format!("cluster.{XDS_CLUSTER}.")}));
            Some(json!({"stats_matcher": {"inclusion_list": {"patterns": patterns}}}))
        }
    }
}

/// Builds the bootstrap. Everything but the xDS cluster arrives over ADS.
pub fn build_bootstrap(opts: &BootstrapOptions) -> Value {
    let api_type = match opts.ads {
        AdsFlavour::Delta => "DELTA_GRPC",
        AdsFlavour::Sotw => "GRPC",
    };
    let ads_source = json!({"ads": {}, "resource_api_version": "V3"});
    let is_ip = opts.xds_host.parse::<std::net::IpAddr>().is_ok();
    let mut xds_cluster = json!({
        "name": XDS_CLUSTER,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": opts.xds_host, "port_value": opts.xds_port
            }}}}]}]
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {
                    // Keep the xDS stream alive through idle NATs and detect dead servers.
                    "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                }}
            }
        }
    });
    if let Some(tls) = &opts.tls {
        xds_cluster["transport_socket"] = xds_transport_socket(tls);
    }
    let mut bootstrap = json!({
        "node": {"id": opts.node_id, "cluster": opts.gateway.to_string()},
        "admin": {"address": {"pipe": {"path": opts.admin_socket, "mode": ADMIN_SOCKET_MODE}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}]
            },
            "cds_config": ads_source,
            "lds_config": ads_source
        },
        "static_resources": {"clusters": [xds_cluster]},
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            // An edge proxy should not accept unbounded downstream connections by default.
            "overload": {"global_downstream_max_connections": 50000},
            // Envoy's default (100) refuses regexes Sluice accepts from Traefik rules.
            "re2": {"max_program_size": {
                "error_level": crate::traefik::regex::ENVOY_MAX_PROGRAM_SIZE
            }}
        }}]}
    });
    if let Some(stats) = stats_config(opts.stats) {
        bootstrap["stats_config"] = stats;
        // A cluster's traffic statistics are created when it first carries traffic: an idle
        // cluster costs none (its metrics appear with its first request).
        bootstrap["deferred_stat_options"] = json!({"enable_deferred_creation_stats": true});
        // A worker builds its copy of a cluster (load balancer, host sets) when a request first
        // needs it: measured 2.5 KiB less per cluster and worker on Envoy 1.40
        // (README "Envoy statistics"). Sluice's clusters are EDS and static, the kinds Envoy
        // defers.
        bootstrap["cluster_manager"] = json!({"enable_deferred_cluster_creation": true});
    }
    bootstrap
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bootstrap_names_the_instance_and_the_server() {
        let b = build_bootstrap(&BootstrapOptions::new(
            ObjKey::new("team-a", "gw"),
            "10.0.0.5",
            18000,
        ));
        assert_eq!(b["node"]["cluster"], "team-a/gw");
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        // Admin is a Unix socket for its owner only; no TCP address at all.
        assert_eq!(
            b["admin"]["address"],
            json!({"pipe": {"path": "/var/run/sluice/admin.sock", "mode": 0o600}})
        );
        let c = &b["static_resources"]["clusters"][0];
        assert_eq!(c["type"], "STATIC");
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            18000
        );
        assert!(c.get("transport_socket").is_none());

        let mut opts =
            BootstrapOptions::new(ObjKey::new("a", "b"), "sluice-xds.sluice-system.svc", 8001);
        opts.ads = AdsFlavour::Sotw;
        opts.tls = Some(XdsClientTls {
            ca_file: "/certs/ca.crt".into(),
            cert_file: "/certs/tls.crt".into(),
            key_file: "/certs/tls.key".into(),
            server_name: "sluice-xds".into(),
        });
        let b = build_bootstrap(&opts);
        assert_eq!(b["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        let c = &b["static_resources"]["clusters"][0];
        assert_eq!(c["type"], "STRICT_DNS");
        let tls = &c["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "sluice-xds");
        let common = &tls["common_tls_context"];
        assert_eq!(common["alpn_protocols"], json!(["h2"]));
        assert_eq!(
            common["validation_context"]["match_typed_subject_alt_names"],
            json!([{"san_type": "DNS", "matcher": {"exact": "sluice-xds"}}])
        );

        // An IP address is matched as an IP SAN and not sent as SNI.
        if let Some(t) = opts.tls.as_mut() {
            t.server_name = "10.0.0.5".into();
        }
        let b = build_bootstrap(&opts);
        let tls = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert!(tls.get("sni").is_none());
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["san_type"],
            "IP_ADDRESS"
        );
    }

    #[test]
    fn minimal_statistics_are_the_default_and_full_keeps_all() {
        let mut opts = BootstrapOptions::new(ObjKey::new("a", "b"), "10.0.0.5", 18000);
        let minimal = build_bootstrap(&opts);
        let patterns = minimal["stats_config"]["stats_matcher"]["inclusion_list"]["patterns"]
            .as_array()
            .unwrap();
        assert!(patterns.contains(&json!({"prefix": "server."})));
        assert!(patterns.contains(&json!({"prefix": "http."})));
        assert!(patterns.contains(&json!({"safe_regex": {"regex": MINIMAL_CLUSTER_STATS}})));
        // No pattern keeps every cluster statistic.
        assert!(!patterns.iter().any(|p| {
            p["prefix"]
                .as_str()
                .is_some_and(|p| "cluster.".starts_with(p))
        }));
        assert_eq!(
            minimal["deferred_stat_options"]["enable_deferred_creation_stats"],
            true
        );
        assert_eq!(
            minimal["cluster_manager"]["enable_deferred_cluster_creation"],
            true
        );
        opts.stats = EnvoyStats::Full;
        let full = build_bootstrap(&opts);
        assert!(full.get("stats_config").is_none());
        assert!(full.get("deferred_stat_options").is_none());
        assert!(full.get("cluster_manager").is_none());
    }
}
