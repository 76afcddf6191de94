//! Clusters (EDS over ADS, or DNS for ExternalName services) and their cluster load assignments,
//! plus the static cluster to Envoy's admin interface that only the stats listener uses.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster as EnvoyCluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy as EnvoyLbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::{
    HealthCheck as EnvoyHealthCheck, Http2ProtocolOptions, health_check,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions as UpstreamHttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};

use super::envoy::{
    ads_config_source, any, load_assignment, millis, pipe_address, sds_secret, seconds,
    transport_socket, u32_value,
};
use super::{ADMIN_CLUSTER, Resource, TranslateOptions, eds_service_names};
use crate::dag::Dag;
use crate::dag::model::{
    Cluster, HealthCheck, LbPolicy, Upstream, UpstreamProtocol, UpstreamValidation,
};

/// Contour's upstream connect timeout.
const CONNECT_TIMEOUT_MS: u64 = 250;
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub fn build_clusters(dag: &Dag, opts: &TranslateOptions) -> Vec<Resource<EnvoyCluster>> {
    // Reserved exactly: an Envoy `Cluster` message is kilobytes, and pushing the admin cluster
    // onto a vector collected to the DAG's length would double its capacity.
    let mut clusters = Vec::with_capacity(dag.clusters.len() + 1);
    clusters.extend(
        dag.clusters
            .iter()
            .map(|c| Resource::new(c.name.clone(), cluster(c))),
    );
    clusters.push(Resource::new(ADMIN_CLUSTER, admin_cluster(opts)));
    clusters
}

/// One load assignment per EDS service name; a service name a cluster uses but the DAG holds no
/// endpoints for gets an empty one, so the cluster finishes warming instead of waiting for EDS.
pub fn build_endpoints(dag: &Dag) -> Vec<Resource<ClusterLoadAssignment>> {
    let mut by_name: std::collections::BTreeMap<&str, ClusterLoadAssignment> = dag
        .endpoints
        .iter()
        .map(|e| {
            let addresses = e.addresses.iter().map(|a| (a.ip.as_str(), a.port));
            (
                e.service_name.as_str(),
                load_assignment(&e.service_name, addresses),
            )
        })
        .collect();
    for name in eds_service_names(dag) {
        by_name
            .entry(name)
            .or_insert_with(|| load_assignment(name, []));
    }
    by_name
        .into_iter()
        .map(|(name, cla)| Resource::new(name, cla))
        .collect()
}

pub(super) fn cluster(c: &Cluster) -> EnvoyCluster {
    let mut cluster = EnvoyCluster {
        name: c.name.clone(),
        connect_timeout: Some(millis(CONNECT_TIMEOUT_MS)),
        lb_policy: lb_policy(c.lb_policy) as i32,
        ..Default::default()
    };
    match &c.upstream {
        Upstream::Eds { service_name } => {
            cluster.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
            cluster.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(ads_config_source()),
                service_name: service_name.clone(),
            });
        }
        Upstream::Dns { host, port } => {
            cluster.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32));
            cluster.load_assignment = Some(load_assignment(&c.name, [(host.as_str(), *port)]));
        }
    }
    if let Some(hc) = &c.health_check {
        cluster.health_checks = vec![http_health_check(hc)];
        // Hosts removed from discovery leave at once instead of lingering until they fail
        // their health checks (Contour drained them the same way).
        cluster.ignore_health_on_host_removal = true;
    }
    if matches!(c.protocol, UpstreamProtocol::H2 | UpstreamProtocol::H2c) {
        cluster.typed_extension_protocol_options = HashMap::from([(
            HTTP_PROTOCOL_OPTIONS.to_owned(),
            any(&http2_protocol_options()),
        )]);
    }
    if matches!(c.protocol, UpstreamProtocol::H2 | UpstreamProtocol::Tls) {
        cluster.transport_socket = Some(transport_socket(
            "envoy.transport_sockets.tls",
            &upstream_tls_context(c),
        ));
    }
    super::service_options::cluster(c, &mut cluster);
    super::transport::cluster(c, &mut cluster);
    if let Some(version) = c.proxy_protocol {
        let inner = cluster.transport_socket.take();
        cluster.transport_socket = Some(super::upstream_proxy::wrap(version, inner));
    }
    cluster
}

fn lb_policy(policy: LbPolicy) -> EnvoyLbPolicy {
    match policy {
        LbPolicy::RoundRobin => EnvoyLbPolicy::RoundRobin,
        LbPolicy::LeastRequest => EnvoyLbPolicy::LeastRequest,
        LbPolicy::Random => EnvoyLbPolicy::Random,
        LbPolicy::RingHash => EnvoyLbPolicy::RingHash,
    }
}

/// Envoy requires a positive interval and timeout; the DAG's defaults already are.
///
/// The interval also applies while the cluster has had no traffic. Envoy otherwise checks such a
/// cluster only every 60 s (`no_traffic_interval`), and since every new cluster starts without
/// traffic and Envoy keeps a check already scheduled, a host failing in the first minute of a
/// cluster's life went unnoticed for up to 60 s whatever `intervalSeconds` said.
fn http_health_check(hc: &HealthCheck) -> EnvoyHealthCheck {
    let interval = seconds(hc.interval_seconds.max(1));
    EnvoyHealthCheck {
        timeout: Some(seconds(hc.timeout_seconds.max(1))),
        interval: Some(interval),
        no_traffic_interval: Some(interval),
        unhealthy_threshold: Some(u32_value(hc.unhealthy_threshold)),
        healthy_threshold: Some(u32_value(hc.healthy_threshold)),
        health_checker: Some(health_check::HealthChecker::HttpHealthCheck(
            health_check::HttpHealthCheck {
                host: hc.host.clone(),
                path: hc.path.clone(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

pub(super) fn http2_protocol_options() -> UpstreamHttpProtocolOptions {
    UpstreamHttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    }
}

/// TLS to the upstream. SNI is the name the certificate is checked against when validation is
/// on, else the ExternalName host; EDS upstreams without validation send no SNI.
fn upstream_tls_context(c: &Cluster) -> UpstreamTlsContext {
    let sni = match (&c.validation, &c.upstream) {
        (Some(v), _) => v.subject_name.clone(),
        (None, Upstream::Dns { host, .. }) => host.clone(),
        (None, Upstream::Eds { .. }) => String::new(),
    };
    let alpn = match c.protocol {
        UpstreamProtocol::H2 => vec!["h2".to_owned()],
        _ => Vec::new(),
    };
    let mut context = UpstreamTlsContext {
        sni,
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: alpn,
            validation_context_type: c.validation.as_ref().map(validation_context),
            ..Default::default()
        }),
        ..Default::default()
    };
    super::transport::tls(c, &mut context);
    context
}

/// Trust the CA bundle fetched over SDS and require the subject name among the DNS SANs.
fn validation_context(v: &UpstreamValidation) -> ValidationContextType {
    ValidationContextType::CombinedValidationContext(CombinedCertificateValidationContext {
        default_validation_context: Some(CertificateValidationContext {
            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                san_type: SanType::Dns as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(
                        v.subject_name.clone(),
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        validation_context_sds_secret_config: Some(sds_secret(&v.ca_secret)),
        ..Default::default()
    })
}

pub(super) fn admin_cluster(opts: &TranslateOptions) -> EnvoyCluster {
    EnvoyCluster {
        name: ADMIN_CLUSTER.to_owned(),
        connect_timeout: Some(millis(CONNECT_TIMEOUT_MS)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        // Envoy reaches its own admin over the Unix socket admin binds; admin has no TCP port.
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: ADMIN_CLUSTER.to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(pipe_address(&opts.admin_socket, 0)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}
