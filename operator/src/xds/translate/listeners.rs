//! Listeners: `ingress_http` (plain HTTP, a route configuration per virtual host through scoped
//! RDS, or all of them in one through RDS), `ingress_https` (one
//! filter chain per SNI name: HTTP behind TLS, or a TCP proxy), and `stats_health` exposing only
//! Envoy's readiness and Prometheus stats from the admin interface.

use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use envoy_types::pb::envoy::config::core::v3::{
    CidrRange, Http2ProtocolOptions, HttpProtocolOptions, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route as EnvoyRoute, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost as EnvoyVirtualHost, header_matcher, route, route_action, route_match,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::StdoutAccessLog;
use envoy_types::pb::envoy::extensions::compression::gzip::compressor::v3::Gzip;
use envoy_types::pb::envoy::extensions::filters::http::compressor::v3::Compressor;
use envoy_types::pb::envoy::extensions::filters::http::grpc_web::v3::GrpcWeb;
use envoy_types::pb::envoy::extensions::filters::http::health_check::v3::HealthCheck as HealthCheckFilter;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy as EnvoyTcpProxy, UpstreamConnectMode, tcp_proxy,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, TlsParameters, tls_parameters::TlsProtocol,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};

use super::envoy::{
    ads_config_source, any, bool_value, http_filter, listen_address, network_filter, sds_secret,
    seconds, transport_socket, u32_value,
};
use super::routes::serves_https_routes;
use super::scopes;
use super::{
    ADMIN_CLUSTER, HTTP_LISTENER, HTTPS_LISTENER, Resource, STATS_LISTENER, TranslateOptions,
    https_route_config_name,
};
use crate::api::ingressroute::TlsVersion;
use crate::dag::Dag;
use crate::dag::model::{SourceRange, TcpBranch, VirtualHost, VirtualHostTls, WeightedCluster};

/// Contour's TCP proxy idle timeout, kept for compatibility.
const TCP_PROXY_IDLE_TIMEOUT_SECONDS: u32 = 9001;
/// Paths of the admin interface the stats listener exposes; nothing else of admin is reachable.
pub const ADMIN_PATHS: [&str; 1] = ["/stats/prometheus"];
/// Readiness path of the stats listener, answered by Envoy's health-check filter: 200 while
/// healthy, 503 once `/healthcheck/fail` was called on admin (the shutdown manager does, to
/// drain) or while the server drains.
pub const READY_PATH: &str = "/ready";

pub fn build_listeners(
    dag: &Dag,
    opts: &TranslateOptions,
    http_scoped: bool,
) -> Vec<Resource<Listener>> {
    let mut listeners = vec![
        Resource::new(HTTP_LISTENER, http_listener(opts, http_scoped)),
        Resource::new(STATS_LISTENER, stats_listener(opts)),
    ];
    let tls_hosts = tls_hosts(dag);
    if !tls_hosts.is_empty() {
        let mut https = https_listener(opts, &tls_hosts);
        https
            .filter_chains
            .extend(super::listeners_hold::hold_chains(dag, &tls_hosts));
        listeners.push(Resource::new(HTTPS_LISTENER, https));
    }
    listeners
}

/// The plain HTTP listener: routes from the scopes of [`super::scopes`] when `scoped`, else from
/// the shared `ingress_http`.
pub(super) fn http_listener(opts: &TranslateOptions, scoped: bool) -> Listener {
    let hcm = if scoped {
        let mut hcm = ingress_hcm(opts, HTTP_LISTENER, HTTP_LISTENER);
        hcm.route_specifier = Some(scopes::scoped_routes_specifier());
        hcm.http_filters.insert(0, scopes::lowercase_host_filter());
        hcm
    } else {
        ingress_hcm(opts, HTTP_LISTENER, HTTP_LISTENER)
    };
    Listener {
        name: HTTP_LISTENER.to_owned(),
        address: Some(listen_address(
            &opts.http_address,
            opts.http_port,
            opts.ipv4_compat,
        )),
        filter_chains: vec![FilterChain {
            filters: vec![super::client_ip::record_filter(), hcm_filter(&hcm)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(super) fn https_listener(opts: &TranslateOptions, hosts: &[&VirtualHost]) -> Listener {
    Listener {
        filter_chains: hosts
            .iter()
            .filter_map(|vh| {
                let tls = vh.tls.as_ref()?;
                Some(sni_filter_chains(opts, vh, tls))
            })
            .flatten()
            .collect(),
        ..https_listener_template(opts)
    }
}

/// `ingress_https` without filter chains. It always reads the client's first bytes with the TLS
/// inspector (see [`super::listeners_plain`]).
pub(super) fn https_listener_template(opts: &TranslateOptions) -> Listener {
    let inspector = ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".to_owned(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    };
    Listener {
        name: HTTPS_LISTENER.to_owned(),
        address: Some(listen_address(
            &opts.https_address,
            opts.https_port,
            opts.ipv4_compat,
        )),
        listener_filters: vec![inspector],
        ..Default::default()
    }
}

/// The filter chains for one SNI name: an HTTP connection manager behind TLS, a TCP proxy behind
/// TLS, or (passthrough) a TCP proxy forwarding the still encrypted session; a TCP proxy with
/// branches (Traefik `ALPN()`, `ClientIP()`) has a chain per branch, and one for the rest when
/// it has clusters for the rest.
pub(super) fn sni_filter_chains(
    opts: &TranslateOptions,
    vh: &VirtualHost,
    tls: &VirtualHostTls,
) -> Vec<FilterChain> {
    // HTTP gets ALPN h2 and http/1.1; a TCP proxy's backend may speak anything, so none is
    // advertised for it.
    let alpn: &[&str] = if serves_https_routes(vh) {
        &["h2", "http/1.1"]
    } else {
        &[]
    };
    let transport_socket = match (&tls.secret, tls.passthrough) {
        (Some(secret), false) => {
            let mut ctx = downstream_tls_context(secret, tls.minimum_protocol_version, alpn);
            if let Some(options) = &tls.options {
                super::tls_options::apply(&mut ctx, options);
            }
            Some(transport_socket("envoy.transport_sockets.tls", &ctx))
        }
        _ => None,
    };
    let chain = |name: String, filters: Vec<Filter>, branch: Option<&TcpBranch>| FilterChain {
        name,
        filter_chain_match: Some(FilterChainMatch {
            server_names: super::listeners_hold::server_names(&vh.fqdn),
            transport_protocol: super::listeners_plain::transport_protocol(vh),
            application_protocols: branch.map(|b| b.alpn.clone()).unwrap_or_default(),
            source_prefix_ranges: branch
                .map(|b| b.sources.iter().map(cidr_range).collect())
                .unwrap_or_default(),
            ..Default::default()
        }),
        filters,
        transport_socket: transport_socket.clone(),
        ..Default::default()
    };
    let Some(tcp) = &vh.tcp_proxy else {
        let hcm = ingress_hcm(opts, HTTPS_LISTENER, &https_route_config_name(&vh.fqdn));
        let filters = vec![super::client_ip::record_filter(), hcm_filter(&hcm)];
        return vec![chain(vh.fqdn.clone(), filters, None)];
    };
    let filters = |clusters: &[WeightedCluster]| {
        if tcp.sni_regexes.is_empty() {
            vec![tcp_proxy_filter(clusters, false)]
        } else {
            vec![
                super::listeners_sni::sni_rbac_filter(&tcp.sni_regexes),
                tcp_proxy_filter(clusters, true),
            ]
        }
    };
    let mut chains: Vec<FilterChain> = tcp
        .branches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let name = format!("{}#{i}", vh.fqdn);
            chain(name, filters(&b.clusters), Some(b))
        })
        .collect();
    if tcp.branches.is_empty() || !tcp.clusters.is_empty() {
        chains.push(chain(vh.fqdn.clone(), filters(&tcp.clusters), None));
    }
    chains
}

fn cidr_range(r: &SourceRange) -> CidrRange {
    CidrRange {
        address_prefix: r.address.to_string(),
        prefix_len: Some(u32_value(u32::from(r.prefix_len))),
    }
}

fn downstream_tls_context(
    secret: &str,
    minimum: TlsVersion,
    alpn: &[&str],
) -> DownstreamTlsContext {
    DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: tls_protocol(minimum) as i32,
                tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
                ..Default::default()
            }),
            tls_certificate_sds_secret_configs: vec![sds_secret(secret)],
            alpn_protocols: alpn.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn tls_protocol(version: TlsVersion) -> TlsProtocol {
    match version {
        TlsVersion::V1_1 => TlsProtocol::TlSv11,
        TlsVersion::V1_2 => TlsProtocol::TlSv12,
        TlsVersion::V1_3 => TlsProtocol::TlSv13,
    }
}

/// A TCP proxy to the weighted clusters. Envoy requires positive weights here: zero weights are
/// dropped, and if every weight is zero the clusters share evenly (Contour treated 0 as 1).
/// `deferred`: connect upstream only on the client's first bytes (see `listeners_sni`).
fn tcp_proxy_filter(clusters: &[WeightedCluster], deferred: bool) -> Filter {
    let live: Vec<(&str, u32)> = if clusters.iter().all(|c| c.weight == 0) {
        clusters.iter().map(|c| (c.cluster.as_str(), 1)).collect()
    } else {
        clusters
            .iter()
            .filter(|c| c.weight > 0)
            .map(|c| (c.cluster.as_str(), c.weight))
            .collect()
    };
    let cluster_specifier = match live.as_slice() {
        [(one, _)] => tcp_proxy::ClusterSpecifier::Cluster((*one).to_owned()),
        many => tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
            clusters: many
                .iter()
                .map(
                    |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                        name: (*name).to_owned(),
                        weight: *weight,
                        ..Default::default()
                    },
                )
                .collect(),
        }),
    };
    network_filter(
        "envoy.filters.network.tcp_proxy",
        &EnvoyTcpProxy {
            stat_prefix: HTTPS_LISTENER.to_owned(),
            idle_timeout: Some(seconds(TCP_PROXY_IDLE_TIMEOUT_SECONDS)),
            cluster_specifier: Some(cluster_specifier),
            upstream_connect_mode: if deferred {
                UpstreamConnectMode::OnDownstreamData as i32
            } else {
                UpstreamConnectMode::Immediate as i32
            },
            max_early_data_bytes: deferred
                .then(|| u32_value(super::listeners_sni::EARLY_DATA_BYTES)),
            ..Default::default()
        },
    )
}

fn hcm_filter(hcm: &HttpConnectionManager) -> Filter {
    network_filter("envoy.filters.network.http_connection_manager", hcm)
}

/// The HTTP connection manager of an edge proxy, routes from RDS over ADS.
fn ingress_hcm(
    opts: &TranslateOptions,
    stat_prefix: &str,
    route_config_name: &str,
) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: stat_prefix.to_owned(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: route_config_name.to_owned(),
        })),
        http_filters: [
            super::policies::listener_filters(),
            vec![
                http_filter(
                    super::service_options::COMPRESSOR_FILTER,
                    &Compressor {
                        compressor_library: Some(TypedExtensionConfig {
                            name: "envoy.compression.gzip.compressor".to_owned(),
                            typed_config: Some(any(&Gzip::default())),
                        }),
                        ..Default::default()
                    },
                ),
                http_filter("envoy.filters.http.grpc_web", &GrpcWeb::default()),
                router_filter(),
            ],
        ]
        .concat(),
        access_log: vec![stdout_access_log()],
        // The client address Envoy sees is the real one: this is the edge, unless the Gateway
        // trusts proxies in front of it (`xffTrustedHops`): then it is the entry that many places
        // from the right of X-Forwarded-For as received (the TCP peer when the header is shorter
        // or that entry is no address). RBAC's `direct_remote_ip` and the
        // `DOWNSTREAM_DIRECT_REMOTE_ADDRESS` formatters still see the TCP peer.
        use_remote_address: Some(bool_value(true)),
        xff_num_trusted_hops: opts.xff_trusted_hops,
        normalize_path: Some(bool_value(true)),
        merge_slashes: true,
        generate_request_id: Some(bool_value(true)),
        preserve_external_request_id: true,
        common_http_protocol_options: Some(HttpProtocolOptions {
            idle_timeout: Some(seconds(60)),
            ..Default::default()
        }),
        stream_idle_timeout: Some(seconds(300)),
        request_headers_timeout: Some(seconds(10)),
        // Envoy's edge recommendations: bound what one client can ask of an HTTP/2 connection.
        http2_protocol_options: Some(Http2ProtocolOptions {
            max_concurrent_streams: Some(u32_value(100)),
            initial_stream_window_size: Some(u32_value(65_536)),
            initial_connection_window_size: Some(u32_value(1_048_576)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The router, always the last HTTP filter.
/// Answers [`READY_PATH`] itself (not passed to admin), failing once health checks are failed.
fn ready_filter() -> HttpFilter {
    let config = HealthCheckFilter {
        pass_through_mode: Some(bool_value(false)),
        headers: vec![HeaderMatcher {
            name: ":path".to_owned(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(READY_PATH.to_owned())),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    http_filter("envoy.filters.http.health_check", &config)
}

fn router_filter() -> HttpFilter {
    http_filter("envoy.filters.http.router", &Router::default())
}

fn stdout_access_log() -> AccessLog {
    AccessLog {
        name: "envoy.access_loggers.stdout".to_owned(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(
            &StdoutAccessLog::default(),
        ))),
        ..Default::default()
    }
}

/// Health and stats: [`READY_PATH`] is answered by the health-check filter; exactly
/// [`ADMIN_PATHS`] go to the admin cluster; everything else is a 404.
/// Exact path matches (the query string is not part of the path) keep every other admin
/// endpoint, including the mutating ones, out of reach.
pub(super) fn stats_listener(opts: &TranslateOptions) -> Listener {
    let routes = ADMIN_PATHS
        .iter()
        .map(|path| EnvoyRoute {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Path((*path).to_owned())),
                ..Default::default()
            }),
            action: Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                    ADMIN_CLUSTER.to_owned(),
                )),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    let hcm = HttpConnectionManager {
        stat_prefix: STATS_LISTENER.to_owned(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: STATS_LISTENER.to_owned(),
                virtual_hosts: vec![EnvoyVirtualHost {
                    name: STATS_LISTENER.to_owned(),
                    domains: vec!["*".to_owned()],
                    routes,
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters: vec![ready_filter(), router_filter()],
        normalize_path: Some(bool_value(true)),
        merge_slashes: true,
        ..Default::default()
    };
    Listener {
        name: STATS_LISTENER.to_owned(),
        address: Some(listen_address(
            &opts.stats_address,
            opts.stats_port,
            opts.ipv4_compat,
        )),
        filter_chains: vec![FilterChain {
            filters: vec![hcm_filter(&hcm)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The virtual hosts served over TLS, in fqdn order: the HTTPS listener's filter chains.
pub(super) fn tls_hosts(dag: &Dag) -> Vec<&VirtualHost> {
    let mut hosts: Vec<&VirtualHost> = dag
        .virtual_hosts
        .iter()
        .filter(|vh| vh.tls.is_some())
        .collect();
    hosts.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
    hosts
}
