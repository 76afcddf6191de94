#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source::ConfigSourceSpecifier, data_source, health_check, socket_address,
    transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route as EnvoyRoute, RouteAction, RouteConfiguration, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, UpstreamTlsContext, common_tls_context::ValidationContextType, secret,
    tls_parameters::TlsProtocol,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::google::protobuf::{Any, Duration};
use pretty_assertions::assert_eq;
use prost::{Message, Name};

use super::fixture::{self, Pems, cluster_name, eds_name};
use super::*;
use crate::api::gateway::IpFamily;
use crate::api::ingressroute::TlsVersion;
use crate::dag::model::{SocketAddress, Timeout as DagTimeout};

fn resources() -> Resources {
    translate(
        &fixture::dag(&Pems::placeholder()),
        &TranslateOptions::default(),
    )
    .unwrap()
}

fn unpack<T: Message + Name + Default>(any: &Any) -> T {
    assert_eq!(any.type_url, T::type_url());
    T::decode(any.value.as_slice()).unwrap()
}

fn find<'a, T>(list: &'a [Resource<T>], name: &str) -> &'a T {
    &list
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no resource {name:?}"))
        .message
}

fn listener<'a>(r: &'a Resources, name: &str) -> &'a Listener {
    find(&r.listeners, name)
}

fn route_config<'a>(r: &'a Resources, name: &str) -> &'a RouteConfiguration {
    find(&r.routes, name)
}

fn cluster<'a>(r: &'a Resources, service: &str, port: u16) -> &'a Cluster {
    find(&r.clusters, &cluster_name(service, port))
}

fn chain<'a>(l: &'a Listener, sni: &str) -> &'a FilterChain {
    l.filter_chains
        .iter()
        .find(|c| {
            c.filter_chain_match.as_ref().unwrap().server_names
                == [sni.to_owned(), format!("{sni}.")]
        })
        .unwrap_or_else(|| panic!("no filter chain for {sni}"))
}

fn typed<T: Message + Name + Default>(c: &FilterChain) -> T {
    // The terminal filter, after at most the client-address recorder of HTTP chains.
    let (last, before) = c.filters.split_last().unwrap();
    assert!(before.len() <= 1);
    assert!(
        before
            .iter()
            .all(|f| f.name == "envoy.filters.network.set_filter_state")
    );
    let Some(filter::ConfigType::TypedConfig(cfg)) = &last.config_type else {
        panic!("untyped filter");
    };
    unpack(cfg)
}

fn downstream_tls(c: &FilterChain) -> DownstreamTlsContext {
    let Some(transport_socket::ConfigType::TypedConfig(cfg)) =
        &c.transport_socket.as_ref().unwrap().config_type
    else {
        panic!("untyped transport socket");
    };
    unpack(cfg)
}

fn upstream_tls(c: &Cluster) -> Option<UpstreamTlsContext> {
    let ts = c.transport_socket.as_ref()?;
    let Some(transport_socket::ConfigType::TypedConfig(cfg)) = &ts.config_type else {
        panic!("untyped transport socket");
    };
    Some(unpack(cfg))
}

fn vhost<'a>(rc: &'a RouteConfiguration, fqdn: &str) -> Option<&'a VirtualHost> {
    rc.virtual_hosts.iter().find(|v| v.name == fqdn)
}

/// The virtual host `fqdn` serves over plain HTTP: the only one of its scope's route
/// configuration `http/<fqdn>`.
fn http_vhost<'a>(r: &'a Resources, fqdn: &str) -> Option<&'a VirtualHost> {
    let rc = &r
        .routes
        .iter()
        .find(|x| x.name == format!("http/{fqdn}"))?
        .message;
    assert_eq!(rc.virtual_hosts.len(), 1, "{fqdn}");
    vhost(rc, fqdn)
}

fn prefix(r: &EnvoyRoute) -> &str {
    match &r.r#match.as_ref().unwrap().path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => p,
        other => panic!("not a prefix match: {other:?}"),
    }
}

fn action<'a>(vh: &'a VirtualHost, prefix_: &str) -> &'a route::Action {
    vh.routes
        .iter()
        .find(|r| prefix(r) == prefix_)
        .unwrap_or_else(|| panic!("no route {prefix_}"))
        .action
        .as_ref()
        .unwrap()
}

fn forward<'a>(vh: &'a VirtualHost, prefix_: &str) -> &'a RouteAction {
    match action(vh, prefix_) {
        route::Action::Route(a) => a,
        other => panic!("route {prefix_} does not forward: {other:?}"),
    }
}

fn is_https_redirect(a: &route::Action) -> bool {
    matches!(a, route::Action::Redirect(r) if r.response_code == 0
        && r.scheme_rewrite_specifier
            == Some(envoy_types::pb::envoy::config::route::v3::redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)))
}

fn duration(seconds: i64, nanos: i32) -> Option<Duration> {
    Some(Duration { seconds, nanos })
}

fn port_of(l: &Listener) -> (String, u32) {
    let Some(address::Address::SocketAddress(sa)) = &l.address.as_ref().unwrap().address else {
        panic!("no socket address");
    };
    let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
        panic!("no port");
    };
    (sa.address.clone(), port)
}

fn is_ads(cs: &Option<envoy_types::pb::envoy::config::core::v3::ConfigSource>) -> bool {
    matches!(
        cs.as_ref().and_then(|c| c.config_source_specifier.as_ref()),
        Some(ConfigSourceSpecifier::Ads(_))
    )
}

#[test]
fn every_list_is_sorted_by_name_and_names_match_messages() {
    let r = resources();
    fn sorted<T>(list: &[Resource<T>]) -> bool {
        list.windows(2).all(|w| w[0].name < w[1].name)
    }
    assert!(sorted(&r.listeners) && sorted(&r.routes) && sorted(&r.clusters));
    assert!(sorted(&r.endpoints) && sorted(&r.secrets));
    assert!(r.listeners.iter().all(|l| l.name == l.message.name));
    assert!(r.routes.iter().all(|l| l.name == l.message.name));
    assert!(r.clusters.iter().all(|l| l.name == l.message.name));
    assert!(r.endpoints.iter().all(|l| l.name == l.message.cluster_name));
    assert!(r.secrets.iter().all(|l| l.name == l.message.name));
}

/// Each listener's address, port and `ipv4_compat`, by name.
fn binds(r: &Resources) -> Vec<(String, String, u32, bool)> {
    r.listeners
        .iter()
        .map(|l| {
            let Some(address::Address::SocketAddress(sa)) =
                &l.message.address.as_ref().unwrap().address
            else {
                panic!("no socket address");
            };
            let (ip, port) = port_of(&l.message);
            (l.name.clone(), ip, port, sa.ipv4_compat)
        })
        .collect()
}

#[test]
fn listeners_and_their_default_addresses() {
    // Dual-stack by default: `::` accepting IPv4 too, so IPv4-only, IPv6-only and dual-stack
    // clusters all reach Envoy (and the kubelet's probe reaches the stats listener on the pod IP).
    let r = resources();
    assert_eq!(
        binds(&r),
        [
            ("ingress_http".into(), "::".into(), 8080, true),
            ("ingress_https".into(), "::".into(), 8443, true),
            ("stats_health".into(), "::".into(), 8002, true),
        ]
    );
}

#[test]
fn listener_addresses_follow_the_ip_family() {
    let dag = fixture::dag(&Pems::placeholder());
    let of = |family| {
        let opts = TranslateOptions {
            http_port: 18080,
            ..TranslateOptions::default()
        }
        .with_ip_family(family);
        binds(&translate(&dag, &opts).unwrap())
    };
    let all = |ip: &str, compat: bool| -> Vec<(String, String, u32, bool)> {
        [
            ("ingress_http", 18080),
            ("ingress_https", 8443),
            ("stats_health", 8002),
        ]
        .into_iter()
        .map(|(n, p)| (n.to_owned(), ip.to_owned(), p, compat))
        .collect()
    };
    assert_eq!(of(IpFamily::DualStack), all("::", true));
    assert_eq!(of(IpFamily::Ipv6), all("::", false));
    assert_eq!(of(IpFamily::Ipv4), all("0.0.0.0", false));
    assert_eq!(
        TranslateOptions::default().with_ip_family(IpFamily::DualStack),
        TranslateOptions::default()
    );
}

#[test]
fn ipv4_compat_applies_to_the_ipv6_wildcard_only() {
    let dag = fixture::dag(&Pems::placeholder());
    for (ip, compat) in [
        ("::1", false),
        ("127.0.0.1", false),
        ("::", true),
        ("0:0::0", true),
    ] {
        let opts = TranslateOptions {
            http_address: ip.into(),
            https_address: ip.into(),
            stats_address: ip.into(),
            ..TranslateOptions::default()
        };
        let r = translate(&dag, &opts).unwrap();
        assert!(
            binds(&r).iter().all(|b| b.1 == ip && b.3 == compat),
            "{ip}: {:?}",
            binds(&r)
        );
    }
}

#[test]
fn listener_addresses_follow_the_options() {
    let opts = TranslateOptions {
        http_address: "127.0.0.1".into(),
        http_port: 18080,
        https_port: 18443,
        stats_port: 18002,
        ..TranslateOptions::default()
    };
    let r = translate(&fixture::dag(&Pems::placeholder()), &opts).unwrap();
    assert_eq!(
        port_of(listener(&r, "ingress_http")),
        ("127.0.0.1".into(), 18080)
    );
    assert_eq!(port_of(listener(&r, "ingress_https")).1, 18443);
    assert_eq!(port_of(listener(&r, "stats_health")).1, 18002);
}

#[test]
fn http_listener_is_an_edge_connection_manager_using_scoped_rds() {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::scoped_routes::{
        ConfigSpecifier, scope_key_builder::fragment_builder,
    };
    let r = resources();
    let l = listener(&r, "ingress_http");
    assert_eq!(l.filter_chains.len(), 1);
    let hcm: HttpConnectionManager = typed(&l.filter_chains[0]);
    let Some(RouteSpecifier::ScopedRoutes(scoped)) = &hcm.route_specifier else {
        panic!("not scoped RDS");
    };
    assert_eq!(scoped.name, "ingress_http");
    assert!(is_ads(&scoped.rds_config_source));
    let Some(ConfigSpecifier::ScopedRds(srds)) = &scoped.config_specifier else {
        panic!("scopes not from SRDS");
    };
    assert!(is_ads(&srds.scoped_rds_config_source));
    // The key is the Host header up to the port.
    let fragments = &scoped.scope_key_builder.as_ref().unwrap().fragments;
    assert_eq!(fragments.len(), 1);
    let Some(fragment_builder::Type::HeaderValueExtractor(host)) = &fragments[0].r#type else {
        panic!("not a header value");
    };
    assert_eq!(
        (host.name.as_str(), host.element_separator.as_str()),
        (":authority", ":")
    );
    assert_eq!(
        host.extract_type,
        Some(fragment_builder::header_value_extractor::ExtractType::Index(0))
    );
    // Lower-casing the host comes first.
    assert_eq!(hcm.http_filters[0].name, "envoy.filters.http.lua");
    assert_eq!(hcm.use_remote_address.unwrap().value, true);
    assert_eq!(hcm.normalize_path.unwrap().value, true);
    assert!(hcm.merge_slashes);
    assert_eq!(hcm.generate_request_id.unwrap().value, true);
    assert!(hcm.preserve_external_request_id);
    assert!(hcm.stream_idle_timeout.is_some() && hcm.request_headers_timeout.is_some());
    assert_eq!(
        hcm.common_http_protocol_options.unwrap().idle_timeout,
        duration(60, 0)
    );
    let last = hcm.http_filters.last().unwrap();
    assert_eq!(last.name, "envoy.filters.http.router");
    let Some(http_filter::ConfigType::TypedConfig(router)) = &last.config_type else {
        panic!("untyped router");
    };
    assert_eq!(
        router.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    );
}

#[test]
fn https_listener_has_one_chain_per_tls_host_and_inspects_sni() {
    let r = resources();
    let l = listener(&r, "ingress_https");
    assert_eq!(l.listener_filters.len(), 1);
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    let snis: Vec<Vec<String>> = l
        .filter_chains
        .iter()
        .map(|c| {
            super::listeners_hold::names_once(&c.filter_chain_match.as_ref().unwrap().server_names)
        })
        .collect();
    assert_eq!(
        snis,
        [
            ["passthrough.example.com".to_owned()],
            ["secure.example.com".to_owned()],
            ["tcp.example.com".to_owned()]
        ]
    );
}

#[test]
fn terminated_http_chain_gets_certificate_over_sds_and_alpn() {
    let r = resources();
    let c = chain(listener(&r, "ingress_https"), "secure.example.com");
    let tls = downstream_tls(c).common_tls_context.unwrap();
    assert_eq!(tls.alpn_protocols, ["h2", "http/1.1"]);
    assert_eq!(tls.tls_certificate_sds_secret_configs.len(), 1);
    let sds = &tls.tls_certificate_sds_secret_configs[0];
    assert_eq!(sds.name, fixture::SECURE_SECRET);
    assert!(is_ads(&sds.sds_config));
    let params = tls.tls_params.unwrap();
    assert_eq!(
        params.tls_minimum_protocol_version,
        TlsProtocol::TlSv12 as i32
    );
    assert!(tls.tls_certificates.is_empty(), "keys only travel over SDS");

    let hcm: HttpConnectionManager = typed(c);
    let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
        panic!("not RDS");
    };
    assert_eq!(rds.route_config_name, "https/secure.example.com");
}

#[test]
fn minimum_tls_version_follows_the_virtual_host() {
    let mut dag = fixture::dag(&Pems::placeholder());
    let secure = dag
        .virtual_hosts
        .iter_mut()
        .find(|v| v.fqdn == "secure.example.com")
        .unwrap();
    secure.tls.as_mut().unwrap().minimum_protocol_version = TlsVersion::V1_1;
    let r = translate(&dag, &TranslateOptions::default()).unwrap();
    let https = listener(&r, "ingress_https");
    let min = |sni| {
        downstream_tls(chain(https, sni))
            .common_tls_context
            .unwrap()
            .tls_params
            .unwrap()
            .tls_minimum_protocol_version
    };
    assert_eq!(min("secure.example.com"), TlsProtocol::TlSv11 as i32);
    assert_eq!(min("tcp.example.com"), TlsProtocol::TlSv13 as i32);
}

#[test]
fn terminated_tcp_proxy_chain() {
    let r = resources();
    let c = chain(listener(&r, "ingress_https"), "tcp.example.com");
    let tls = downstream_tls(c).common_tls_context.unwrap();
    assert!(
        tls.alpn_protocols.is_empty(),
        "a TCP backend need not speak HTTP"
    );
    assert_eq!(
        tls.tls_certificate_sds_secret_configs[0].name,
        fixture::TCP_SECRET
    );
    let tcp: TcpProxy = typed(c);
    assert_eq!(tcp.idle_timeout, duration(9001, 0));
    let Some(tcp_proxy::ClusterSpecifier::WeightedClusters(wc)) = tcp.cluster_specifier else {
        panic!("not weighted");
    };
    let weights: Vec<(String, u32)> = wc
        .clusters
        .into_iter()
        .map(|c| (c.name, c.weight))
        .collect();
    assert_eq!(
        weights,
        [
            (cluster_name("tcp-a", 9100), 1),
            (cluster_name("tcp-b", 9100), 3)
        ]
    );
}

#[test]
fn passthrough_chain_matches_sni_only() {
    let r = resources();
    let c = chain(listener(&r, "ingress_https"), "passthrough.example.com");
    assert!(c.transport_socket.is_none());
    let tcp: TcpProxy = typed(c);
    assert_eq!(
        tcp.cluster_specifier,
        Some(tcp_proxy::ClusterSpecifier::Cluster(cluster_name(
            "tls-backend",
            8443
        )))
    );
}

#[test]
fn tcp_proxy_with_only_zero_weights_splits_evenly() {
    let mut dag = fixture::dag(&Pems::placeholder());
    let tcp = dag
        .virtual_hosts
        .iter_mut()
        .find(|v| v.fqdn == "tcp.example.com")
        .unwrap();
    for c in &mut tcp.tcp_proxy.as_mut().unwrap().clusters {
        c.weight = 0;
    }
    let r = translate(&dag, &TranslateOptions::default()).unwrap();
    let tcp: TcpProxy = typed(chain(listener(&r, "ingress_https"), "tcp.example.com"));
    let Some(tcp_proxy::ClusterSpecifier::WeightedClusters(wc)) = tcp.cluster_specifier else {
        panic!("not weighted");
    };
    assert!(wc.clusters.iter().all(|c| c.weight == 1));
}

#[test]
fn no_https_listener_without_tls_hosts() {
    let mut dag = fixture::dag(&Pems::placeholder());
    dag.virtual_hosts.retain(|v| v.tls.is_none());
    let r = translate(&dag, &TranslateOptions::default()).unwrap();
    let names: Vec<&str> = r.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["ingress_http", "stats_health"]);
    let routes: Vec<&str> = r.routes.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        routes,
        ["http/app.example.com", "http/external.example.com"]
    );
}

#[test]
fn stats_listener_answers_ready_and_reaches_only_prometheus_on_admin() {
    let r = resources();
    let hcm: HttpConnectionManager = typed(&listener(&r, "stats_health").filter_chains[0]);
    let Some(RouteSpecifier::RouteConfig(rc)) = hcm.route_specifier else {
        panic!("stats routes are inline");
    };
    let routes = &rc.virtual_hosts[0].routes;
    let exposed: Vec<(&str, &str)> = routes
        .iter()
        .map(|r| {
            let Some(route_match::PathSpecifier::Path(p)) =
                &r.r#match.as_ref().unwrap().path_specifier
            else {
                panic!("stats routes match exact paths");
            };
            let Some(route::Action::Route(a)) = &r.action else {
                panic!("stats routes forward");
            };
            let Some(route_action::ClusterSpecifier::Cluster(c)) = &a.cluster_specifier else {
                panic!("one cluster");
            };
            (p.as_str(), c.as_str())
        })
        .collect();
    assert_eq!(exposed, [("/stats/prometheus", ADMIN_CLUSTER)]);
    // /ready is answered by the health-check filter, ahead of the router, so that failing
    // health checks on admin (to drain) turns it to 503.
    let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.health_check",
            "envoy.filters.http.router"
        ]
    );
    let admin = cluster_by_name(&r, ADMIN_CLUSTER);
    let cla = admin.load_assignment.as_ref().unwrap();
    let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) =
        &cla.endpoints[0].lb_endpoints[0].host_identifier
    else {
        panic!("no endpoint");
    };
    // Admin has no TCP address: the stats listener reaches it over its Unix socket.
    let Some(address::Address::Pipe(pipe)) = &ep.address.as_ref().unwrap().address else {
        panic!("the admin cluster's endpoint is not a Unix socket: {ep:?}");
    };
    assert_eq!(pipe.path, "/var/run/sluice/admin.sock");
}

fn cluster_by_name<'a>(r: &'a Resources, name: &str) -> &'a Cluster {
    find(&r.clusters, name)
}

#[test]
fn no_ingress_route_reaches_the_admin_cluster() {
    let r = resources();
    for rc in &r.routes {
        let text = format!("{:?}", rc.message);
        assert!(!text.contains(ADMIN_CLUSTER), "{} reaches admin", rc.name);
    }
    for name in ["ingress_http", "ingress_https"] {
        let text = format!("{:?}", listener(&r, name));
        assert!(!text.contains(ADMIN_CLUSTER), "{name} reaches admin");
    }
}

#[test]
fn insecure_route_config_holds_every_http_reachable_host() {
    let r = resources();
    let names: Vec<&str> = r.scoped_routes.iter().map(|v| v.name.as_str()).collect();
    // passthrough.example.com keeps TLS at its backend: nothing of it is served in clear.
    assert_eq!(
        names,
        [
            "http/app.example.com",
            "http/external.example.com",
            "http/secure.example.com",
            "http/tcp.example.com"
        ]
    );
    assert!(http_vhost(&r, "passthrough.example.com").is_none());
    let app = http_vhost(&r, "app.example.com").unwrap();
    assert_eq!(app.domains, ["app.example.com", "app.example.com:*"]);
}

#[test]
fn tls_host_redirects_to_https_except_permit_insecure() {
    let r = resources();
    let secure = http_vhost(&r, "secure.example.com").unwrap();
    for p in ["/grpc", "/h2c", "/tls", "/"] {
        assert!(is_https_redirect(action(secure, p)), "{p} must redirect");
    }
    assert!(matches!(
        action(secure, "/insecure"),
        route::Action::Route(_)
    ));
}

#[test]
fn tcp_proxy_host_serves_only_permit_insecure_routes_in_clear() {
    let r = resources();
    let tcp = http_vhost(&r, "tcp.example.com").unwrap();
    let prefixes: Vec<&str> = tcp.routes.iter().map(prefix).collect();
    assert_eq!(prefixes, ["/public"]);
    assert!(matches!(action(tcp, "/public"), route::Action::Route(_)));
}

#[test]
fn https_route_configs_exist_only_for_terminated_http_hosts() {
    let r = resources();
    let names: Vec<&str> = r
        .routes
        .iter()
        .map(|x| x.name.as_str())
        .filter(|x| !x.starts_with("http/"))
        .collect();
    assert_eq!(names, ["https/secure.example.com"]);
    let rc = route_config(&r, "https/secure.example.com");
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, ["secure.example.com", "secure.example.com:*"]);
    let prefixes: Vec<&str> = vh.routes.iter().map(prefix).collect();
    assert_eq!(
        prefixes,
        ["/insecure", "/grpc", "/h2c", "/tls", "/"],
        "DAG order kept"
    );
    assert!(
        vh.routes
            .iter()
            .all(|r| matches!(r.action, Some(route::Action::Route(_))))
    );
}

#[test]
fn routes_keep_the_dag_order() {
    let r = resources();
    let app = http_vhost(&r, "app.example.com").unwrap();
    let prefixes: Vec<&str> = app.routes.iter().map(prefix).collect();
    assert_eq!(prefixes, ["/api/v2", "/cart", "/chat", "/dark", "/"]);
}

#[test]
fn route_policies() {
    let r = resources();
    let app = http_vhost(&r, "app.example.com").unwrap();

    let api = forward(app, "/api/v2");
    let Some(route_action::ClusterSpecifier::WeightedClusters(wc)) = &api.cluster_specifier else {
        panic!("not weighted");
    };
    let weights: Vec<(&str, u32)> = wc
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.unwrap().value))
        .collect();
    let (v1, v2) = (cluster_name("api-v1", 80), cluster_name("api-v2", 80));
    assert_eq!(weights, [(v1.as_str(), 10), (v2.as_str(), 90)]);
    assert_eq!(api.timeout, duration(2, 500_000_000));
    assert_eq!(api.prefix_rewrite, "/v2");
    let retry = api.retry_policy.as_ref().unwrap();
    assert_eq!(retry.retry_on, "5xx");
    assert_eq!(retry.num_retries.unwrap().value, 3);
    assert_eq!(retry.per_try_timeout, duration(0, 500_000_000));
    assert!(api.upgrade_configs.is_empty() && api.hash_policy.is_empty());

    let cart = forward(app, "/cart");
    assert_eq!(
        cart.timeout,
        duration(0, 0),
        "disabled timeout is an explicit 0s"
    );
    let Some(route_action::hash_policy::PolicySpecifier::Cookie(cookie)) =
        &cart.hash_policy[0].policy_specifier
    else {
        panic!("not a cookie hash");
    };
    assert_eq!(cookie.name, "X-Contour-Session-Affinity");
    assert_eq!(cookie.path, "/");
    assert_eq!(cookie.ttl, duration(0, 0));

    let chat = forward(app, "/chat");
    assert_eq!(chat.upgrade_configs.len(), 1);
    assert_eq!(chat.upgrade_configs[0].upgrade_type, "websocket");
    assert_eq!(chat.upgrade_configs[0].enabled.unwrap().value, true);
    assert_eq!(chat.timeout, None, "no timeout: Envoy's default");
    assert!(chat.retry_policy.is_none());

    // The zero-weight cluster on "/" gets no traffic and is left out.
    let root = forward(app, "/");
    assert_eq!(
        root.cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(cluster_name(
            "web", 80
        )))
    );
    assert!(root.upgrade_configs.is_empty());
}

/// A route with its prefix rewrite, to `web`.
fn rewrite(prefix: &str, to: &str) -> crate::dag::model::Route {
    crate::dag::model::Route {
        prefix_rewrite: Some(to.to_owned()),
        ..fixture::route(prefix, &[("web", 80, 1)])
    }
}

#[test]
fn prefix_rewrite_to_a_slash_also_replaces_the_slash_after_the_prefix() {
    let mut dag = fixture::dag(&Pems::placeholder());
    dag.virtual_hosts.make_mut(0).routes = vec![
        rewrite("/service2", "/"),
        rewrite("/trailing/", "/"),
        fixture::route("/own/", &[("chat", 80, 1)]),
        rewrite("/own", "/"),
        rewrite("/v1", "/v2"),
        rewrite("/v3", "/api/"),
        fixture::route("/", &[("web", 80, 1)]),
    ];
    let r = translate(&dag, &TranslateOptions::default()).unwrap();
    let app = http_vhost(&r, "app.example.com").unwrap();
    let prefixes: Vec<&str> = app.routes.iter().map(prefix).collect();
    assert_eq!(
        prefixes,
        [
            // `/service2/foo` matches here and goes up as `/foo`, not `//foo`.
            "/service2/",
            "/service2",
            // Already ends with a slash.
            "/trailing/",
            // The user's own `/own/` route is kept and wins; no extra route.
            "/own/",
            "/own",
            // The rewrite does not end with a slash.
            "/v1",
            "/v3/",
            "/v3",
            "/",
        ]
    );
    assert_eq!(
        forward(app, "/service2/"),
        forward(app, "/service2"),
        "same action"
    );
    assert_eq!(forward(app, "/service2/").prefix_rewrite, "/");
    assert_eq!(forward(app, "/v3/").prefix_rewrite, "/api/");
    assert_eq!(
        forward(app, "/own/").cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(cluster_name(
            "chat", 80
        )))
    );
}

#[test]
fn prefix_rewrite_slash_route_on_tls_hosts() {
    let mut dag = fixture::dag(&Pems::placeholder());
    let secure = dag
        .virtual_hosts
        .iter_mut()
        .find(|v| v.fqdn == "secure.example.com")
        .unwrap();
    secure.routes[0].prefix_rewrite = Some("/".to_owned());
    assert_eq!(secure.routes[0].prefix, "/insecure");
    assert!(secure.routes[0].permit_insecure);
    secure.routes[1].prefix_rewrite = Some("/".to_owned());
    assert_eq!(secure.routes[1].prefix, "/grpc");
    let r = translate(&dag, &TranslateOptions::default()).unwrap();

    let https = vhost(
        route_config(&r, "https/secure.example.com"),
        "secure.example.com",
    )
    .unwrap();
    let prefixes: Vec<&str> = https.routes.iter().map(prefix).collect();
    assert_eq!(
        prefixes,
        [
            "/insecure/",
            "/insecure",
            "/grpc/",
            "/grpc",
            "/h2c",
            "/tls",
            "/"
        ]
    );

    // Over plain HTTP the permitInsecure route is forwarded, the others redirect (once each).
    let http = http_vhost(&r, "secure.example.com").unwrap();
    let prefixes: Vec<&str> = http.routes.iter().map(prefix).collect();
    assert_eq!(
        prefixes,
        ["/insecure/", "/insecure", "/grpc", "/h2c", "/tls", "/"]
    );
    assert_eq!(forward(http, "/insecure/").prefix_rewrite, "/");
    assert!(is_https_redirect(action(http, "/grpc")));
}

#[test]
fn all_zero_weights_answer_503() {
    let r = resources();
    let app = http_vhost(&r, "app.example.com").unwrap();
    let route::Action::DirectResponse(d) = action(app, "/dark") else {
        panic!("not a direct response");
    };
    assert_eq!(d.status, 503);
}

#[test]
fn timeout_set_disabled_and_absent() {
    let mut dag = fixture::dag(&Pems::placeholder());
    let app = dag.virtual_hosts.make_mut(0);
    app.routes[0].timeout = Some(DagTimeout::Millis(15_000));
    let r = translate(&dag, &TranslateOptions::default()).unwrap();
    let app = http_vhost(&r, "app.example.com").unwrap();
    assert_eq!(forward(app, "/api/v2").timeout, duration(15, 0));
}

#[test]
fn eds_clusters() {
    let r = resources();
    let web = cluster(&r, "web", 80);
    assert_eq!(
        web.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
    );
    let eds = web.eds_cluster_config.as_ref().unwrap();
    assert_eq!(eds.service_name, eds_name("web"));
    assert!(is_ads(&eds.eds_config));
    assert_eq!(web.connect_timeout, duration(0, 250_000_000));
    assert!(web.transport_socket.is_none());
    assert!(web.typed_extension_protocol_options.is_empty());
}

#[test]
fn lb_policies() {
    let r = resources();
    let lb = |s, p| cluster(&r, s, p).lb_policy;
    assert_eq!(lb("web", 80), LbPolicy::LeastRequest as i32);
    assert_eq!(lb("chat", 80), LbPolicy::Random as i32);
    assert_eq!(lb("cart", 80), LbPolicy::RingHash as i32);
    assert_eq!(lb("api-v1", 80), LbPolicy::RoundRobin as i32);
}

#[test]
fn health_checked_cluster_drains_removed_hosts() {
    let r = resources();
    let web = cluster(&r, "web", 80);
    assert_eq!(web.health_checks.len(), 1);
    let hc = &web.health_checks[0];
    assert_eq!(hc.interval, duration(5, 0));
    assert_eq!(
        hc.no_traffic_interval, hc.interval,
        "a cluster without traffic yet is checked as often (Envoy's default is 60 s)"
    );
    assert_eq!(hc.timeout, duration(2, 0));
    assert_eq!(hc.unhealthy_threshold.unwrap().value, 3);
    assert_eq!(hc.healthy_threshold.unwrap().value, 2);
    let Some(health_check::HealthChecker::HttpHealthCheck(http)) = &hc.health_checker else {
        panic!("not HTTP");
    };
    assert_eq!(http.path, "/healthz");
    assert_eq!(http.host, "contour-envoy-healthcheck");
    assert!(web.ignore_health_on_host_removal);
    let plain = cluster(&r, "api-v1", 80);
    assert!(plain.health_checks.is_empty() && !plain.ignore_health_on_host_removal);
}

fn http2_enabled(c: &Cluster) -> bool {
    c.typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        .map(|any| {
            let opts: HttpProtocolOptions = unpack(any);
            format!("{opts:?}").contains("Http2ProtocolOptions")
        })
        .unwrap_or(false)
}

#[test]
fn upstream_protocols() {
    let r = resources();
    // h2: HTTP/2 over TLS, ALPN h2, validated.
    let grpc = cluster(&r, "grpc", 443);
    assert!(http2_enabled(grpc));
    let tls = upstream_tls(grpc).unwrap();
    assert_eq!(tls.sni, "grpc.example.com");
    let common = tls.common_tls_context.unwrap();
    assert_eq!(common.alpn_protocols, ["h2"]);
    let Some(ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type
    else {
        panic!("no combined validation context");
    };
    let sds = v.validation_context_sds_secret_config.unwrap();
    assert_eq!(sds.name, fixture::CA_SECRET);
    assert!(is_ads(&sds.sds_config));
    let san = &v
        .default_validation_context
        .unwrap()
        .match_typed_subject_alt_names[0];
    assert!(format!("{san:?}").contains("Exact(\"grpc.example.com\")"));

    // h2c: cleartext HTTP/2.
    let h2c = cluster(&r, "h2c", 8080);
    assert!(http2_enabled(h2c));
    assert!(upstream_tls(h2c).is_none());

    // tls: HTTP/1.1 over TLS.
    let backend = cluster(&r, "backend-tls", 443);
    assert!(!http2_enabled(backend));
    let tls = upstream_tls(backend).unwrap();
    assert_eq!(tls.sni, "backend.example.com");
    assert!(tls.common_tls_context.unwrap().alpn_protocols.is_empty());
}

#[test]
fn external_name_cluster_resolves_by_dns() {
    let r = resources();
    let ext = cluster(&r, "httpbin", 443);
    assert_eq!(
        ext.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32))
    );
    assert!(ext.eds_cluster_config.is_none());
    let cla = ext.load_assignment.as_ref().unwrap();
    assert_eq!(cla.cluster_name, ext.name);
    assert!(format!("{cla:?}").contains("\"httpbin.org\""));
    let tls = upstream_tls(ext).unwrap();
    assert_eq!(tls.sni, "httpbin.org");
    assert!(
        tls.common_tls_context
            .unwrap()
            .validation_context_type
            .is_none()
    );
}

#[test]
fn endpoints_per_service_name_with_empty_ones_for_missing() {
    let r = resources();
    let names: Vec<&str> = r.endpoints.iter().map(|e| e.name.as_str()).collect();
    let mut expected: Vec<String> = [
        "api-v1",
        "api-v2",
        "backend-tls",
        "cart",
        "chat",
        "dark",
        "grpc",
        "h2c",
        "tcp-a",
        "tcp-b",
        "tls-backend",
        "web",
    ]
    .iter()
    .map(|s| eds_name(s))
    .collect();
    expected.sort();
    assert_eq!(names, expected);
    let dark = find(&r.endpoints, &eds_name("dark"));
    assert!(dark.endpoints.is_empty());
    let api = find(&r.endpoints, &eds_name("api-v2"));
    assert_eq!(api.endpoints[0].lb_endpoints.len(), 2);
}

#[test]
fn loopback_backends_are_served_and_only_the_admin_cluster_uses_a_unix_socket() {
    // Admin listens on a Unix socket only, so a loopback address is an ordinary backend (that is
    // how `sluice standalone` reaches local services), whatever its port.
    let opts = TranslateOptions::default();
    let mut dag = fixture::dag(&Pems::placeholder());
    dag.endpoints.make_mut(0).addresses.push(SocketAddress {
        ip: "127.0.0.1".into(),
        port: 9001,
    });
    dag.clusters.iter_mut().for_each(|c| {
        if let Upstream::Dns { host, port } = &mut c.upstream {
            *host = "localhost".into();
            *port = 9001;
        }
    });
    let r = translate(&dag, &opts).unwrap();
    let text = format!("{:?}", r.endpoints);
    assert!(text.contains("PortValue(9001)"), "{text}");
    let ext = cluster(&r, "httpbin", 443);
    assert_eq!(
        ext.load_assignment.as_ref().unwrap().endpoints[0]
            .lb_endpoints
            .len(),
        1
    );

    for c in &r.clusters {
        let uses_pipe = format!("{:?}", c.message).contains("Pipe(");
        assert_eq!(uses_pipe, c.name == ADMIN_CLUSTER, "{}", c.name);
    }
    assert!(!format!("{:?}", r.endpoints).contains("Pipe("));
    for l in &r.listeners {
        assert!(!format!("{:?}", l.message).contains("Pipe("), "{}", l.name);
    }
}

#[test]
fn secrets() {
    let r = resources();
    let pems = Pems::placeholder();
    let names: Vec<&str> = r.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            fixture::SECURE_SECRET,
            fixture::TCP_SECRET,
            fixture::CA_SECRET
        ]
    );
    let inline = |ds: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>| match ds
        .as_ref()
        .and_then(|d| d.specifier.clone())
    {
        Some(data_source::Specifier::InlineString(s)) => s,
        other => panic!("not inline: {other:?}"),
    };
    let Some(secret::Type::TlsCertificate(cert)) = &find(&r.secrets, fixture::SECURE_SECRET).r#type
    else {
        panic!("not a certificate");
    };
    assert_eq!(inline(&cert.certificate_chain), pems.secure_cert);
    assert_eq!(inline(&cert.private_key), pems.secure_key);
    let Some(secret::Type::ValidationContext(ca)) = &find(&r.secrets, fixture::CA_SECRET).r#type
    else {
        panic!("not a CA");
    };
    assert_eq!(inline(&ca.trusted_ca), pems.ca);
}

#[test]
fn translation_is_deterministic() {
    let a = resources();
    let b = resources();
    for ty in ResourceType::ALL {
        assert_eq!(a.of_type(ty), b.of_type(ty));
    }
    let bytes = |r: &Resources| -> Vec<Vec<u8>> {
        ResourceType::ALL
            .into_iter()
            .flat_map(|ty| r.of_type(ty))
            .map(|x| x.to_any().encode_to_vec())
            .collect()
    };
    assert_eq!(bytes(&a), bytes(&b));
    assert_eq!(to_json(&a, true).unwrap(), to_json(&b, true).unwrap());
}

#[test]
fn versions_change_only_with_content() {
    let a = resources();
    let mut dag = fixture::dag(&Pems::placeholder());
    dag.virtual_hosts.make_mut(0).routes[0].retry = None;
    let b = translate(&dag, &TranslateOptions::default()).unwrap();
    let versions = |r: &Resources, ty| -> Vec<(String, String)> {
        r.of_type(ty)
            .into_iter()
            .map(|x| (x.name.to_string(), x.version.to_string()))
            .collect()
    };
    assert_eq!(
        versions(&a, ResourceType::Cluster),
        versions(&b, ResourceType::Cluster)
    );
    assert_eq!(
        versions(&a, ResourceType::Listener),
        versions(&b, ResourceType::Listener)
    );
    let (ra, rb) = (
        versions(&a, ResourceType::Route),
        versions(&b, ResourceType::Route),
    );
    // Only the edited host's plain-HTTP route configuration changed.
    let edited = format!("http/{}", dag.virtual_hosts[0].fqdn);
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x.0, y.0);
        assert_eq!(x.1 != y.1, x.0 == edited, "{}", x.0);
    }
    assert_eq!(
        versions(&a, ResourceType::ScopedRoute),
        versions(&b, ResourceType::ScopedRoute)
    );
    // The packed version is the one the xDS cache computes for the same resource.
    assert_eq!(ra[1].1, a.routes[1].version());
    assert_eq!(
        ra[1].1,
        crate::xds::resource::resource_version(&a.routes[1].to_any())
    );
}

#[test]
fn packed_resources_carry_their_type_urls() {
    let r = resources();
    for ty in ResourceType::ALL {
        assert_eq!(ResourceType::from_type_url(ty.type_url()), Some(ty));
        for x in r.of_type(ty) {
            assert_eq!(x.type_url(), ty.type_url());
        }
    }
    assert_eq!(ResourceType::Listener.type_url(), Listener::type_url());
    assert_eq!(
        ResourceType::Route.type_url(),
        RouteConfiguration::type_url()
    );
    assert_eq!(ResourceType::Cluster.type_url(), Cluster::type_url());
    assert_eq!(
        ResourceType::Endpoint.type_url(),
        envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment::type_url()
    );
    assert_eq!(
        ResourceType::Secret.type_url(),
        envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret::type_url()
    );
}

#[test]
fn json_has_the_render_shape_and_type_annotations() {
    let json = to_json(&resources(), false).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "clusters",
            "endpoints",
            "listeners",
            "routes",
            "scoped_routes",
            "secrets"
        ]
    );
    let l = &json["listeners"][0];
    assert_eq!(l["name"], "ingress_http");
    assert_eq!(
        l["filter_chains"][0]["filters"][1]["typed_config"]["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    );
    assert_eq!(
        l["filter_chains"][0]["filters"][1]["typed_config"]["scoped_routes"]["name"],
        "ingress_http"
    );
    assert_eq!(l["address"]["socket_address"]["port_value"], 8080);
    assert_eq!(json["clusters"][0]["connect_timeout"], "0.250s");
}

#[test]
fn json_redacts_private_keys_when_asked() {
    let r = resources();
    let pems = Pems::placeholder();
    let plain = to_json(&r, false).unwrap().to_string();
    assert!(plain.contains("secure-key"));
    let redacted = to_json(&r, true).unwrap();
    let text = redacted.to_string();
    assert!(
        !text.contains("secure-key") && !text.contains("tcp-key"),
        "{text}"
    );
    let secure = redacted["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == fixture::SECURE_SECRET)
        .unwrap();
    assert_eq!(
        secure["tls_certificate"]["private_key"]["inline_string"],
        json::REDACTED
    );
    assert_eq!(
        secure["tls_certificate"]["certificate_chain"]["inline_string"],
        pems.secure_cert.as_str()
    );
}

#[test]
fn golden_json() {
    let json = to_json(&resources(), true).unwrap();
    let rendered = serde_json::to_string_pretty(&json).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/xds/translate/testdata/fixture.json");
    // `make golden` sets it: write, say so, and check nothing (a pass means "written").
    if std::env::var("SLUICE_UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0") {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(rendered.as_str()) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &rendered).unwrap();
            println!("wrote {}", path.display());
        }
        return;
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with make golden", path.display()));
    assert_eq!(
        golden, rendered,
        "translation output changed; review and regenerate with make golden"
    );
}

mod invariants {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::dag::model::SecretKind;

    fn err(edit: impl FnOnce(&mut Dag)) -> TranslateError {
        let mut dag = fixture::dag(&Pems::placeholder());
        edit(&mut dag);
        translate(&dag, &TranslateOptions::default()).unwrap_err()
    }

    #[test]
    fn unknown_cluster() {
        let e = err(|d| d.clusters.retain(|c| c.name != cluster_name("chat", 80)));
        assert_eq!(e.label(), "unknown_cluster");
        assert!(e.to_string().contains("/chat"), "{e}");
    }

    #[test]
    fn unknown_and_mistyped_secrets() {
        let e = err(|d| d.secrets.retain(|s| s.name != fixture::SECURE_SECRET));
        assert_eq!(e.label(), "unknown_secret");
        let e = err(|d| d.secrets.retain(|s| s.name != fixture::CA_SECRET));
        assert_eq!(e.label(), "unknown_secret");
        let e = err(|d| {
            for s in d.secrets.iter_mut() {
                if s.name == fixture::CA_SECRET {
                    s.kind = SecretKind::Tls {
                        cert_chain: String::new(),
                        private_key: String::new(),
                    };
                }
            }
        });
        assert_eq!(e.label(), "wrong_secret_kind");
    }

    #[test]
    fn tls_shapes() {
        let e = err(|d| d.virtual_hosts.make_mut(3).tls.as_mut().unwrap().secret = None);
        assert_eq!(e.label(), "missing_certificate");
        let e = err(|d| d.virtual_hosts.make_mut(2).tcp_proxy = None);
        assert_eq!(e.label(), "passthrough_without_tcpproxy");
        let e = err(|d| d.virtual_hosts.make_mut(4).tls = None);
        assert_eq!(e.label(), "tcpproxy_without_tls");
        let e = err(|d| {
            d.virtual_hosts
                .make_mut(4)
                .tcp_proxy
                .as_mut()
                .unwrap()
                .clusters
                .clear()
        });
        assert_eq!(e.label(), "empty_tcpproxy");
    }

    #[test]
    fn duplicates() {
        let e = err(|d| {
            let again = d.virtual_hosts[0].clone();
            d.virtual_hosts.entries_mut().push(again);
        });
        assert_eq!(
            e,
            TranslateError::Duplicate {
                kind: "virtual host",
                name: "app.example.com".into()
            }
        );
        let e = err(|d| {
            let again = d.secrets[0].clone();
            d.secrets.entries_mut().push(again);
        });
        assert_eq!(e.label(), "duplicate");
    }
}

#[test]
fn ip_family_reads_as_in_the_crd() {
    for (name, family) in [
        ("IPv4", IpFamily::Ipv4),
        ("IPv6", IpFamily::Ipv6),
        ("DualStack", IpFamily::DualStack),
    ] {
        assert_eq!(
            serde_json::from_value::<IpFamily>(serde_json::json!(name)).unwrap(),
            family
        );
        assert_eq!(
            serde_json::to_value(family).unwrap(),
            serde_json::json!(name)
        );
    }
    let spec: crate::api::gateway::GatewaySpec = serde_json::from_str("{}").unwrap();
    assert_eq!(spec.ip_family, IpFamily::DualStack);
}
