//! Smoke test with a real Envoy (`SLUICE_ENVOY`, else `envoy` on PATH): Envoy fetches a
//! cluster, its endpoints, a listener and a route configuration over ADS (Delta and SotW),
//! serves traffic with them, and picks up an update. Then NACKs: a cluster only Envoy rejects
//! must not reach new Envoys, and everything its rejected responses carried must arrive once it
//! is gone. Traffic alone tells what an Envoy has (its admin interface only says it is ready).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Xds, ads_bootstrap, get};
use sluice_e2e::envoy_port;

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSpecifier;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, SocketAddress,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use envoy_types::util::pack_any;
use sluice::xds::cache::{Cache, InstanceResources, type_url};
use sluice_e2e::backend::{Backend, Echo};
use sluice_e2e::envoy::Envoy;
use sluice_e2e::process::TAIL_LINES;

const INSTANCE: &str = "team-a/gateway";

/// How long a wait may take before the setup counts as broken; no assertion depends on it.
const PATIENCE: Duration = Duration::from_secs(60);

fn socket(port: u16) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

fn route(prefix: &str, action: Action) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix(prefix.into())),
            ..Default::default()
        }),
        action: Some(action),
        ..Default::default()
    }
}

/// A cluster (EDS) pointing at the backend, a listener with an RDS route configuration:
/// `/direct` answers `direct_body`, everything else goes to the backend.
fn resources(listener_port: u16, backend_port: u16, direct_body: &str) -> InstanceResources {
    resources_with(listener_port, backend_port, direct_body, &[])
}

/// [`resources`], plus a route `prefix` → `cluster` for each `extra_routes`, before the
/// catch-all.
fn resources_with(
    listener_port: u16,
    backend_port: u16,
    direct_body: &str,
    extra_routes: &[(&str, &str)],
) -> InstanceResources {
    let cluster = Cluster {
        name: "backend".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let endpoints = ClusterLoadAssignment {
        cluster_name: "backend".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(backend_port)),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "ingress_http".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "ingress_http".into(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    };
    let listener = Listener {
        name: "ingress_http".into(),
        address: Some(socket(listener_port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(FilterConfig::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let routes = RouteConfiguration {
        name: "ingress_http".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: [route(
                "/direct",
                Action::DirectResponse(DirectResponseAction {
                    status: 200,
                    body: Some(DataSource {
                        specifier: Some(DataSpecifier::InlineString(direct_body.into())),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )]
            .into_iter()
            .chain(extra_routes.iter().map(|(prefix, cluster)| {
                route(
                    prefix,
                    Action::Route(RouteAction {
                        cluster_specifier: Some(ClusterSpecifier::Cluster((*cluster).into())),
                        ..Default::default()
                    }),
                )
            }))
            .chain([route(
                "/",
                Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster("backend".into())),
                    ..Default::default()
                }),
            )])
            .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut r = InstanceResources::default();
    r.insert("backend", pack_any(cluster));
    r.insert("backend", pack_any(endpoints));
    r.insert("ingress_http", pack_any(listener));
    r.insert("ingress_http", pack_any(routes));
    r
}

/// Starts Envoy (the workspace's one test launcher: `SLUICE_ENVOY` or PATH, admin on a port the
/// OS chooses, `/ready` awaited, killed on drop).
async fn start_envoy(bootstrap: String) -> Envoy {
    Envoy::start(bootstrap).await.unwrap()
}

/// A backend (sluice-e2e's) called `name`, on a port the OS chooses; stops on drop.
async fn start_backend(name: &str) -> Backend {
    Backend::start(name).await.unwrap()
}

/// Who answered a body: a backend's name (backends answer with a JSON echo naming themselves),
/// else the body itself (a direct response).
fn answered_by(body: &str) -> String {
    serde_json::from_str::<Echo>(body).map_or_else(|_| body.to_owned(), |echo| echo.backend)
}

/// Polls until `path` answers 200 from `who` (see [`answered_by`]). The deadline only bounds a
/// broken setup.
async fn wait_for(envoy: &Envoy, port: u16, path: &str, who: &str) {
    let mut last = None;
    let what = format!("GET {path} to return 200 from {who:?}");
    let found = sluice_e2e::wait_until(&what, PATIENCE, async || {
        last = get(port, path).await;
        last.as_ref()
            .is_some_and(|(s, b)| *s == 200 && answered_by(b) == who)
    })
    .await;
    if let Err(e) = found {
        panic!(
            "{e}; last: {last:?}\nEnvoy log:\n{}",
            envoy.log_tail(TAIL_LINES)
        );
    }
}

async fn smoke(api_type: &str) {
    let Xds {
        port: xds_port,
        cache,
        metrics,
        stop,
        server,
    } = Xds::start().await;

    let backend = start_backend("backend").await;
    let backend_port = backend.port();
    let listener_port = envoy_port().unwrap();
    cache.set(INSTANCE, resources(listener_port, backend_port, "v1"));
    // Another instance's content, on a port of its own, must never reach this Envoy.
    let other_port = envoy_port().unwrap();
    cache.set(
        "team-b/gateway",
        resources(other_port, backend_port, "team-b only"),
    );
    let envoy = start_envoy(ads_bootstrap(api_type, INSTANCE, xds_port)).await;

    wait_for(&envoy, listener_port, "/direct", "v1").await;
    wait_for(&envoy, listener_port, "/", "backend").await;

    cache.set(INSTANCE, resources(listener_port, backend_port, "v2"));
    wait_for(&envoy, listener_port, "/direct", "v2").await;
    wait_for(&envoy, listener_port, "/", "backend").await;

    for t in [
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::LISTENER,
        type_url::ROUTE,
    ] {
        assert_eq!(
            metrics.nacks(t),
            0,
            "Envoy rejected {t}:\n{}",
            envoy.log_tail(TAIL_LINES)
        );
    }
    // Configured twice with this instance's content, and never listening for the other's.
    assert_eq!(
        get(other_port, "/direct").await,
        None,
        "team-b's listener reached this Envoy"
    );
    drop(envoy);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn envoy_delta_ads() {
    smoke("DELTA_GRPC").await;
}

#[tokio::test]
async fn envoy_sotw_ads() {
    smoke("GRPC").await;
}

/// A static cluster `name` sending to `port` on 127.0.0.1.
fn static_cluster(name: &str, port: u16) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket(port)),
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

/// A cluster only Envoy rejects: its load balancing policy is no defined value. Envoy refuses
/// the whole response carrying it, so nothing else in that response is applied either.
fn rejected_cluster(port: u16) -> Cluster {
    Cluster {
        lb_policy: 99,
        ..static_cluster("bad", port)
    }
}

/// `base` plus a static cluster and a route `/<name>` to it for each of `victims`, and the
/// rejected cluster if `bad`.
fn with_clusters(
    listener_port: u16,
    backend_port: u16,
    direct_body: &str,
    victims: &[(&str, u16)],
    bad: bool,
) -> InstanceResources {
    let prefixes: Vec<(String, &str)> = victims
        .iter()
        .map(|(name, _)| (format!("/{name}"), *name))
        .collect();
    let routes: Vec<(&str, &str)> = prefixes.iter().map(|(p, n)| (p.as_str(), *n)).collect();
    let mut r = resources_with(listener_port, backend_port, direct_body, &routes);
    for (name, port) in victims {
        r.insert(*name, pack_any(static_cluster(name, *port)));
    }
    if bad {
        r.insert("bad", pack_any(rejected_cluster(backend_port)));
    }
    r
}

/// Waits until the cache records a rejection of clusters blaming exactly `blamed`.
async fn wait_for_rejection(cache: &Cache, envoy: &Envoy, blamed: &[&str]) {
    let what = format!("a rejection of {blamed:?}");
    let found = sluice_e2e::wait_until(&what, PATIENCE, async || {
        cache.rejections(INSTANCE).iter().any(|r| {
            r.type_url == type_url::CLUSTER
                && r.changed_resources
                    .keys()
                    .map(String::as_str)
                    .eq(blamed.iter().copied())
        })
    })
    .await;
    if let Err(e) = found {
        panic!(
            "{e}; rejections: {:?}\nEnvoy log:\n{}",
            cache.rejections(INSTANCE),
            envoy.log_tail(TAIL_LINES)
        );
    }
}

async fn nack(api_type: &str) {
    let Xds {
        port: xds_port,
        cache,
        metrics,
        stop,
        server,
    } = Xds::start().await;
    let backends = [
        start_backend("backend").await,
        start_backend("victim").await,
        start_backend("other").await,
    ];
    let [backend, victim, other] = backends.each_ref().map(Backend::port);
    let port = envoy_port().unwrap();

    cache.set(INSTANCE, resources(port, backend, "v1"));
    let first = start_envoy(ads_bootstrap(api_type, INSTANCE, xds_port)).await;
    wait_for(&first, port, "/direct", "v1").await;
    wait_for(&first, port, "/", "backend").await;

    // A victim's new cluster goes out with one Envoy rejects: the whole CDS response is
    // rejected, and both are blamed. The route configuration is accepted.
    cache.set(
        INSTANCE,
        with_clusters(port, backend, "v2", &[("victim", victim)], true),
    );
    wait_for_rejection(&cache, &first, &["bad", "victim"]).await;
    assert!(metrics.gateway_nacks(INSTANCE, type_url::CLUSTER) >= 1);
    wait_for(&first, port, "/direct", "v2").await;
    wait_for(&first, port, "/", "backend").await;

    // The bad cluster goes: the victim's cluster, rejected before, arrives.
    cache.set(
        INSTANCE,
        with_clusters(port, backend, "v3", &[("victim", victim)], false),
    );
    wait_for(&first, port, "/victim", "victim").await;
    wait_for(&first, port, "/direct", "v3").await;
    assert!(cache.rejections(INSTANCE).is_empty());

    // Rejected again, with another victim; then the Envoy is replaced by a new one, which must
    // get the accepted clusters (a rejected CDS would leave it with none).
    cache.set(
        INSTANCE,
        with_clusters(
            port,
            backend,
            "v4",
            &[("victim", victim), ("other", other)],
            true,
        ),
    );
    wait_for_rejection(&cache, &first, &["bad", "other"]).await;
    wait_for(&first, port, "/direct", "v4").await;
    drop(first);
    let second = start_envoy(ads_bootstrap(api_type, INSTANCE, xds_port)).await;
    wait_for(&second, port, "/direct", "v4").await;
    wait_for(&second, port, "/", "backend").await;
    wait_for(&second, port, "/victim", "victim").await;
    let held = get(port, "/other").await;
    assert!(
        !held.is_some_and(|(status, body)| status == 200 && answered_by(&body) == "other"),
        "a rejected cluster was served"
    );

    // Fixed: the new Envoy gets the cluster held back from it.
    cache.set(
        INSTANCE,
        with_clusters(
            port,
            backend,
            "v5",
            &[("victim", victim), ("other", other)],
            false,
        ),
    );
    wait_for(&second, port, "/other", "other").await;
    wait_for(&second, port, "/", "backend").await;
    assert!(cache.rejections(INSTANCE).is_empty());

    drop(second);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn envoy_delta_nack_serves_accepted_and_resends_rejected() {
    nack("DELTA_GRPC").await;
}

#[tokio::test]
async fn envoy_sotw_nack_serves_accepted_and_resends_rejected() {
    nack("GRPC").await;
}

/// A first push larger than a Delta response may be (256 KiB) goes out cut into several
/// responses of clusters: Envoy takes them all (the first and the last cluster answer), and
/// rejects none.
#[tokio::test]
async fn envoy_delta_takes_a_push_cut_into_several_responses() {
    const CLUSTERS: usize = 4_000;
    let Xds {
        port: xds_port,
        cache,
        metrics,
        stop,
        server,
    } = Xds::start().await;
    let backend = start_backend("backend").await;
    let listener_port = envoy_port().unwrap();
    let names: Vec<String> = (0..CLUSTERS).map(|i| format!("c{i:04}")).collect();
    let victims: Vec<(&str, u16)> = names.iter().map(|n| (n.as_str(), backend.port())).collect();
    cache.set(
        INSTANCE,
        with_clusters(listener_port, backend.port(), "v1", &victims, false),
    );
    let envoy = start_envoy(ads_bootstrap("DELTA_GRPC", INSTANCE, xds_port)).await;
    for name in [&names[0], &names[CLUSTERS - 1]] {
        wait_for(&envoy, listener_port, &format!("/{name}"), "backend").await;
    }
    let cds = metrics.responses(type_url::CLUSTER, "delta");
    assert!(cds >= 2, "{cds} CDS responses");
    for t in [type_url::CLUSTER, type_url::LISTENER, type_url::ROUTE] {
        assert_eq!(metrics.nacks(t), 0, "{}", envoy.log_tail(TAIL_LINES));
    }
    drop(envoy);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
