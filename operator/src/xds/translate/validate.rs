//! Self-contained Envoy bootstraps holding translated resources, so `envoy --mode validate` can
//! check exactly what Sluice would serve.
//!
//! [`inline_bootstrap`] makes every resource static: RDS references become inline route
//! configurations, scoped RDS a static list of scopes with their route configurations inline, EDS clusters become static clusters carrying their load assignment, and SDS
//! references name the static secrets. Envoy then parses and builds every listener, route,
//! cluster, endpoint and secret, including the certificates. [`ads_bootstrap`] keeps the
//! resources as served (references over ADS) beside a placeholder ADS cluster, to check that the
//! references themselves are well formed.

use envoy_types::pb::envoy::config::bootstrap::v3::{
    Admin, Bootstrap, LayeredRuntime, RuntimeLayer, bootstrap, runtime_layer,
};
use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType},
};
use envoy_types::pb::envoy::config::core::v3::{
    ApiConfigSource, ApiVersion, ConfigSource, GrpcService, Node, SelfConfigSource,
    TransportSocket, api_config_source, config_source::ConfigSourceSpecifier, grpc_service,
    transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::ScopedRouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, ScopedRouteConfigurationsList, http_connection_manager::RouteSpecifier,
    scoped_routes::ConfigSpecifier,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
    common_tls_context::ValidationContextType,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::envoy::{any, load_assignment, millis, pipe_address};
use super::{Resources, TranslateOptions};

/// Node id and cluster of the validation bootstraps.
const NODE: &str = "sluice-validate";
/// Placeholder ADS cluster of [`ads_bootstrap`]; Envoy does not connect in validate mode.
const XDS_CLUSTER: &str = "sluice_xds";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error("listener {listener:?} uses route configuration {route:?}, which is not in the set")]
    UnknownRouteConfig { listener: String, route: String },
    #[error("cluster {cluster:?} uses endpoints {service:?}, which are not in the set")]
    UnknownEndpoints { cluster: String, service: String },
    #[error("re-reading a packed {type_url}: {message}")]
    Decode { type_url: String, message: String },
}

/// Every resource static, references resolved: see the module docs.
pub fn inline_bootstrap(
    resources: &Resources,
    opts: &TranslateOptions,
) -> Result<Bootstrap, BootstrapError> {
    let listeners = resources
        .listeners
        .iter()
        .map(|l| inline_listener(&l.message, resources))
        .collect::<Result<_, _>>()?;
    let clusters = resources
        .clusters
        .iter()
        .map(|c| inline_cluster(&c.message, resources))
        .collect::<Result<_, _>>()?;
    Ok(Bootstrap {
        node: Some(node()),
        admin: Some(admin(opts)),
        static_resources: Some(bootstrap::StaticResources {
            listeners,
            clusters,
            secrets: resources
                .secrets
                .iter()
                .map(|s| s.message.clone())
                .collect(),
        }),
        layered_runtime: Some(runtime()),
        ..Default::default()
    })
}

/// The runtime every Sluice bootstrap sets that changes what Envoy accepts: the RE2 program
/// size limit (see `traefik::regex::ENVOY_MAX_PROGRAM_SIZE`).
fn runtime() -> LayeredRuntime {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    let object = |key: &str, value: Value| Value {
        kind: Some(Kind::StructValue(Struct {
            fields: std::collections::HashMap::from([(key.to_owned(), value)]),
        })),
    };
    #[allow(clippy::cast_precision_loss)]
    let limit = Value {
        kind: Some(Kind::NumberValue(
            crate::traefik::regex::ENVOY_MAX_PROGRAM_SIZE as f64,
        )),
    };
    let re2 = object("max_program_size", object("error_level", limit));
    LayeredRuntime {
        layers: vec![RuntimeLayer {
            name: "static".to_owned(),
            layer_specifier: Some(runtime_layer::LayerSpecifier::StaticLayer(Struct {
                fields: std::collections::HashMap::from([("re2".to_owned(), re2)]),
            })),
        }],
    }
}

/// Listeners and clusters as served (RDS, EDS and SDS over ADS) with a placeholder ADS server.
pub fn ads_bootstrap(resources: &Resources, opts: &TranslateOptions) -> Bootstrap {
    let mut clusters: Vec<Cluster> = resources
        .clusters
        .iter()
        .map(|c| c.message.clone())
        .collect();
    clusters.push(Cluster {
        name: XDS_CLUSTER.to_owned(),
        connect_timeout: Some(millis(1000)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(load_assignment(XDS_CLUSTER, [("127.0.0.1", 18000)])),
        typed_extension_protocol_options: std::collections::HashMap::from([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
            any(&super::clusters::http2_protocol_options()),
        )]),
        ..Default::default()
    });
    Bootstrap {
        node: Some(node()),
        admin: Some(admin(opts)),
        static_resources: Some(bootstrap::StaticResources {
            listeners: resources
                .listeners
                .iter()
                .map(|l| l.message.clone())
                .collect(),
            clusters,
            secrets: Vec::new(),
        }),
        dynamic_resources: Some(bootstrap::DynamicResources {
            ads_config: Some(ApiConfigSource {
                api_type: api_config_source::ApiType::Grpc as i32,
                transport_api_version: ApiVersion::V3 as i32,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                        grpc_service::EnvoyGrpc {
                            cluster_name: XDS_CLUSTER.to_owned(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        layered_runtime: Some(runtime()),
        ..Default::default()
    }
}

fn node() -> Node {
    Node {
        id: NODE.to_owned(),
        cluster: NODE.to_owned(),
        ..Default::default()
    }
}

fn admin(opts: &TranslateOptions) -> Admin {
    Admin {
        address: Some(pipe_address(
            &opts.admin_socket,
            crate::provision::bootstrap::ADMIN_SOCKET_MODE,
        )),
        ..Default::default()
    }
}

fn inline_listener(l: &Listener, resources: &Resources) -> Result<Listener, BootstrapError> {
    let mut l = l.clone();
    for chain in &mut l.filter_chains {
        for f in &mut chain.filters {
            let Some(filter::ConfigType::TypedConfig(cfg)) = &mut f.config_type else {
                continue;
            };
            if cfg.type_url != HttpConnectionManager::type_url() {
                continue;
            }
            let mut hcm: HttpConnectionManager = unpack(cfg)?;
            if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                let rc = resources
                    .routes
                    .iter()
                    .find(|r| r.name == rds.route_config_name)
                    .ok_or_else(|| BootstrapError::UnknownRouteConfig {
                        listener: l.name.clone(),
                        route: rds.route_config_name.clone(),
                    })?;
                hcm.route_specifier = Some(RouteSpecifier::RouteConfig(rc.message.clone()));
            }
            if let Some(RouteSpecifier::ScopedRoutes(scoped)) = &mut hcm.route_specifier {
                if resources.scoped_routes.is_empty() {
                    // A static list may not be empty; no scope answers like an empty table.
                    hcm.route_specifier = Some(RouteSpecifier::RouteConfig(
                        super::routes::route_configuration(&scoped.name, Vec::new()),
                    ));
                } else {
                    scoped.config_specifier = Some(ConfigSpecifier::ScopedRouteConfigurationsList(
                        inline_scopes(&l.name, resources)?,
                    ));
                    // Required, and unused: every route configuration is inline.
                    scoped.rds_config_source = Some(ConfigSource {
                        resource_api_version: ApiVersion::V3 as i32,
                        config_source_specifier: Some(ConfigSourceSpecifier::Self_(
                            SelfConfigSource::default(),
                        )),
                        ..Default::default()
                    });
                }
            }
            *cfg = any(&hcm);
        }
        if let Some(ts) = &mut chain.transport_socket {
            rewrite_transport_socket::<DownstreamTlsContext>(ts, |ctx| {
                ctx.common_tls_context.as_mut().map(static_secrets);
            })?;
        }
    }
    Ok(l)
}

/// Every scope with its route configuration inline.
fn inline_scopes(
    listener: &str,
    resources: &Resources,
) -> Result<ScopedRouteConfigurationsList, BootstrapError> {
    let scoped_route_configurations = resources
        .scoped_routes
        .iter()
        .map(|scope| {
            let name = &scope.message.route_configuration_name;
            let rc = resources
                .routes
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| BootstrapError::UnknownRouteConfig {
                    listener: listener.to_owned(),
                    route: name.clone(),
                })?;
            Ok(ScopedRouteConfiguration {
                route_configuration_name: String::new(),
                route_configuration: Some(rc.message.clone()),
                ..scope.message.clone()
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(ScopedRouteConfigurationsList {
        scoped_route_configurations,
    })
}

fn inline_cluster(c: &Cluster, resources: &Resources) -> Result<Cluster, BootstrapError> {
    let mut c = c.clone();
    if let Some(eds) = c.eds_cluster_config.take() {
        let cla = resources
            .endpoints
            .iter()
            .find(|e| e.name == eds.service_name)
            .ok_or_else(|| BootstrapError::UnknownEndpoints {
                cluster: c.name.clone(),
                service: eds.service_name.clone(),
            })?;
        let mut cla = cla.message.clone();
        cla.cluster_name = c.name.clone();
        c.load_assignment = Some(cla);
        c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
    }
    if let Some(ts) = &mut c.transport_socket {
        rewrite_transport_socket::<UpstreamTlsContext>(ts, |ctx| {
            ctx.common_tls_context.as_mut().map(static_secrets);
        })?;
    }
    Ok(c)
}

/// An SDS reference with no config source names a secret of `static_resources.secrets`.
fn static_secrets(ctx: &mut CommonTlsContext) {
    for sds in &mut ctx.tls_certificate_sds_secret_configs {
        sds.sds_config = None;
    }
    match &mut ctx.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(sds)) => {
            sds.sds_config = None;
        }
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            if let Some(sds) = &mut combined.validation_context_sds_secret_config {
                sds.sds_config = None;
            }
        }
        _ => {}
    }
}

fn rewrite_transport_socket<T: Message + Name + Default>(
    ts: &mut TransportSocket,
    edit: impl FnOnce(&mut T),
) -> Result<(), BootstrapError> {
    if let Some(transport_socket::ConfigType::TypedConfig(cfg)) = &mut ts.config_type
        && cfg.type_url == T::type_url()
    {
        let mut ctx: T = unpack(cfg)?;
        edit(&mut ctx);
        *cfg = any(&ctx);
    }
    Ok(())
}

fn unpack<T: Message + Default>(packed: &Any) -> Result<T, BootstrapError> {
    T::decode(packed.value.as_slice()).map_err(|e| BootstrapError::Decode {
        type_url: packed.type_url.clone(),
        message: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::dag::Dag;
    use crate::xds::translate::fixture::{self, Pems};
    use crate::xds::translate::json::message_to_json;
    use crate::xds::translate::translate;

    fn envoy_validate(tag: &str, bootstrap: &Bootstrap) {
        if let Some(keep) = std::env::var_os("SLUICE_KEEP_BOOTSTRAP") {
            let json = message_to_json(bootstrap).unwrap();
            let path = PathBuf::from(keep).join(format!("{tag}.json"));
            std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bootstrap.json");
        let json = message_to_json(bootstrap).unwrap();
        std::fs::write(&file, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        run_validate(&file);
    }

    /// `envoy --mode validate` through the workspace's one launcher (`SLUICE_ENVOY`, else
    /// `envoy` on PATH; a missing Envoy fails the test, CI installs it).
    fn run_validate(file: &Path) {
        if let Err(e) = sluice_e2e::envoy::validate_file_blocking(file) {
            panic!(
                "{e}\nconfig:\n{}",
                std::fs::read_to_string(file).unwrap_or_default()
            );
        }
    }

    fn self_signed(names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    fn real_pems() -> Pems {
        let (secure_cert, secure_key) = self_signed(&["secure.example.com"]);
        let (tcp_cert, tcp_key) = self_signed(&["tcp.example.com"]);
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap().pem();
        Pems {
            secure_cert,
            secure_key,
            tcp_cert,
            tcp_key,
            ca,
        }
    }

    #[test]
    fn envoy_accepts_every_feature_inline() {
        let opts = TranslateOptions::default();
        let resources = translate(&fixture::dag(&real_pems()), &opts).unwrap();
        envoy_validate("inline", &inline_bootstrap(&resources, &opts).unwrap());
    }

    #[test]
    fn envoy_accepts_every_feature_over_ads() {
        let opts = TranslateOptions::default();
        let resources = translate(&fixture::dag(&real_pems()), &opts).unwrap();
        envoy_validate("ads", &ads_bootstrap(&resources, &opts));
    }

    #[test]
    fn envoy_accepts_an_empty_dag() {
        let opts = TranslateOptions::default();
        let resources = translate(&Dag::default(), &opts).unwrap();
        envoy_validate("empty", &inline_bootstrap(&resources, &opts).unwrap());
    }

    #[test]
    fn envoy_rejects_broken_certificates() {
        // The inline bootstrap really makes Envoy load the certificates: placeholders fail.
        let opts = TranslateOptions::default();
        let resources = translate(&fixture::dag(&Pems::placeholder()), &opts).unwrap();
        let bootstrap = inline_bootstrap(&resources, &opts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bootstrap.json");
        let json = message_to_json(&bootstrap).unwrap();
        std::fs::write(&file, serde_json::to_vec(&json).unwrap()).unwrap();
        match sluice_e2e::envoy::validate_file_blocking(&file) {
            Err(sluice_e2e::Error::EnvoyInvalid { .. }) => {}
            other => panic!("placeholder PEM must not validate: {other:?}"),
        }
    }

    #[test]
    fn inline_bootstrap_resolves_every_reference() {
        let opts = TranslateOptions::default();
        let resources = translate(&fixture::dag(&Pems::placeholder()), &opts).unwrap();
        let json = message_to_json(&inline_bootstrap(&resources, &opts).unwrap()).unwrap();
        let text = json.to_string();
        assert!(
            !text.contains("\"ads\""),
            "an ADS reference is left: {text}"
        );
        assert!(!text.contains("\"rds\""));
        assert!(!text.contains("eds_cluster_config"));
    }
}
