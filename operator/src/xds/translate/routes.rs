//! Route configurations: for plain HTTP, one `http/<fqdn>` per virtual host (scoped, see
//! [`super::scopes`]) or, when a Gateway's hosts cannot all be keyed, `ingress_http` with every
//! virtual host reachable over plain HTTP; and one `https/<fqdn>` per TLS virtual host that
//! terminates HTTP.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy, Route as EnvoyRoute, RouteAction,
    RouteConfiguration, VirtualHost as EnvoyVirtualHost, WeightedCluster, redirect_action, route,
    route_action, weighted_cluster,
};
use envoy_types::pb::google::protobuf::Duration;

use super::envoy::{bool_value, millis, u32_value};
use super::{HTTP_LISTENER, Resource, https_route_config_name, matching, open_hosts};
use crate::dag::Dag;
use crate::dag::model::{Route, Timeout, VirtualHost};

/// Cookie Envoy generates for session affinity (Contour's name, kept for compatibility).
pub const SESSION_AFFINITY_COOKIE: &str = "X-Contour-Session-Affinity";

/// The route configurations; `http_scoped` gives plain HTTP one per host (see [`super::scopes`])
/// instead of the shared `ingress_http`.
pub fn build_route_configs(dag: &Dag, http_scoped: bool) -> Vec<Resource<RouteConfiguration>> {
    let mut configs = if http_scoped {
        super::scopes::build_scopes(dag).1
    } else if open_hosts::open(dag) {
        vec![Resource::new(
            HTTP_LISTENER,
            open_hosts::http_route_configuration(dag),
        )]
    } else {
        let http_hosts = dag
            .virtual_hosts
            .iter()
            .filter_map(insecure_virtual_host)
            .collect();
        vec![Resource::new(
            HTTP_LISTENER,
            route_configuration(HTTP_LISTENER, http_hosts),
        )]
    };
    for vh in dag
        .virtual_hosts
        .iter()
        .filter(|vh| serves_https_routes(vh))
    {
        let name = https_route_config_name(&vh.fqdn);
        let host = virtual_host(&vh.fqdn, forward_routes(&vh.routes, |_| true));
        let mut config = route_configuration(&name, vec![host]);
        open_hosts::guard_https(dag, vh, &mut config);
        configs.push(Resource::new(name.clone(), config));
    }
    configs
}

/// Whether `vh` terminates TLS and serves its HTTP routes behind it: the TLS listener then uses
/// the `https/<fqdn>` route configuration. A tcpproxy takes the whole TLS session instead.
pub fn serves_https_routes(vh: &VirtualHost) -> bool {
    vh.tls.as_ref().is_some_and(|t| !t.passthrough) && vh.tcp_proxy.is_none()
}

/// What `vh` serves on the plain HTTP listener, if anything.
///
/// - No TLS: every route, forwarded.
/// - TLS terminated by Envoy for HTTP routes: every route 301-redirects to HTTPS, except routes
///   with `permitInsecure`, which are forwarded.
/// - A tcpproxy (TLS terminated or passed through): port 8443 carries the tcpproxy, not these
///   routes, and what it speaks need not be HTTP, so a redirect there could send a browser to a
///   raw TCP service (Contour redirected nothing either). Only routes the user explicitly opened
///   with `permitInsecure` are served over plain HTTP, and only when Envoy holds the certificate:
///   with passthrough the user chose to keep TLS at the backend, so nothing of this host is
///   served over plain HTTP at all (the routes of such an IngressRoute are the dummy the API
///   required for validation).
///
/// A host left with no route gets no virtual host: plain HTTP requests for it get Envoy's 404
/// like any unknown host.
pub(super) fn insecure_virtual_host(vh: &VirtualHost) -> Option<EnvoyVirtualHost> {
    let routes: Vec<EnvoyRoute> = match (&vh.tls, &vh.tcp_proxy) {
        (None, _) => forward_routes(&vh.routes, |_| true),
        (Some(tls), None) if !tls.passthrough => vh
            .routes
            .iter()
            .flat_map(|r| {
                if r.permit_insecure {
                    forward_route(r, |p| vh.routes.iter().any(|s| s.prefix == p))
                } else {
                    vec![https_redirect_route(r)]
                }
            })
            .collect(),
        (Some(tls), Some(_)) if !tls.passthrough => {
            forward_routes(&vh.routes, |r| r.permit_insecure)
        }
        (Some(_), _) => Vec::new(),
    };
    (!routes.is_empty()).then(|| virtual_host(&vh.fqdn, routes))
}

pub(super) fn route_configuration(
    name: &str,
    virtual_hosts: Vec<EnvoyVirtualHost>,
) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_owned(),
        virtual_hosts,
        ..Default::default()
    }
}

/// A virtual host matching `fqdn` with or without a port in the Host header. A catch-all or
/// wildcard name is its only domain: a port pattern cannot follow a wildcard in Envoy, so their
/// route configurations ignore the port instead (see [`open_hosts`]).
pub(super) fn virtual_host(fqdn: &str, routes: Vec<EnvoyRoute>) -> EnvoyVirtualHost {
    let domains = if open_hosts::is_open(fqdn) {
        vec![fqdn.to_owned()]
    } else {
        vec![fqdn.to_owned(), format!("{fqdn}:*")]
    };
    EnvoyVirtualHost {
        name: fqdn.to_owned(),
        domains,
        routes,
        ..Default::default()
    }
}

/// Redirects what `r` matches to HTTPS.
fn https_redirect_route(r: &Route) -> EnvoyRoute {
    EnvoyRoute {
        r#match: Some(matching::route_match(r, &r.prefix)),
        action: Some(route::Action::Redirect(RedirectAction {
            response_code: redirect_action::RedirectResponseCode::MovedPermanently as i32,
            scheme_rewrite_specifier: Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(
                true,
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The Envoy routes forwarding those of `routes` that `keep` selects, in order.
pub(super) fn forward_routes(routes: &[Route], keep: impl Fn(&Route) -> bool) -> Vec<EnvoyRoute> {
    let kept: Vec<&Route> = routes.iter().filter(|r| keep(r)).collect();
    let taken = |p: &str| kept.iter().any(|s| s.prefix == p);
    kept.iter().flat_map(|r| forward_route(r, taken)).collect()
}

/// The Envoy routes forwarding `r` to its clusters; `taken(prefix)` tells whether the same
/// route configuration has a route of its own for `prefix`.
///
/// Envoy's `prefix_rewrite` swaps the matched prefix literally, so the reference's own example
/// (`match: /service2`, `prefixRewrite: "/"`) would send `/service2/foo` upstream as `//foo`.
/// When the rewrite ends with `/` and the prefix does not, a route for `<prefix>/` with the same
/// action comes first, so that the slash after the prefix is replaced too: `/service2/foo`
/// becomes `/foo`, while `/service2` still becomes `/`. Routes are ordered longest prefix
/// first, so every route that could overlap the extra one already precedes it; a route the user
/// wrote for exactly that prefix is theirs to configure, so no extra route is added then.
fn forward_route(r: &Route, taken: impl Fn(&str) -> bool) -> Vec<EnvoyRoute> {
    let route = forward_route_at(r, &r.prefix);
    let with_slash = format!("{}/", r.prefix);
    let needs_slash_route = r
        .prefix_rewrite
        .as_deref()
        .is_some_and(|rw| rw.ends_with('/'))
        && !r.prefix.ends_with('/')
        && !taken(&with_slash);
    if needs_slash_route {
        vec![forward_route_at(r, &with_slash), route]
    } else {
        vec![route]
    }
}

/// An Envoy route matching `prefix`, sending its traffic to `r`'s clusters with `r`'s policies.
fn forward_route_at(r: &Route, prefix: &str) -> EnvoyRoute {
    let action = match cluster_specifier(r) {
        Some(cluster_specifier) => route::Action::Route(RouteAction {
            cluster_specifier: Some(cluster_specifier),
            prefix_rewrite: r.prefix_rewrite.clone().unwrap_or_default(),
            timeout: r.timeout.map(timeout),
            retry_policy: r.retry.as_ref().map(|retry| RetryPolicy {
                retry_on: "5xx".to_owned(),
                num_retries: Some(u32_value(retry.count)),
                per_try_timeout: retry.per_try_timeout_ms.map(millis),
                ..Default::default()
            }),
            upgrade_configs: if r.websocket {
                vec![route_action::UpgradeConfig {
                    upgrade_type: "websocket".to_owned(),
                    enabled: Some(bool_value(true)),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
            hash_policy: if r.session_affinity {
                vec![session_affinity_hash_policy()]
            } else {
                Vec::new()
            },
            ..Default::default()
        }),
        // Every weight is zero: there is no cluster to send to, so answer 503 like Envoy does
        // for a cluster with no healthy host.
        None => route::Action::DirectResponse(DirectResponseAction {
            status: 503,
            ..Default::default()
        }),
    };
    let mut route = EnvoyRoute {
        r#match: Some(matching::route_match(r, prefix)),
        action: Some(action),
        ..Default::default()
    };
    matching::decorate(r, &mut route);
    route
}

/// The cluster or weighted clusters of a route; `None` when no cluster has a positive weight.
/// Zero-weight clusters get no traffic, so leaving them out changes nothing. A pick that sets
/// cookies (a sticky weighted TraefikService) is always a weighted cluster, whose
/// `response_headers_to_add` carries them.
fn cluster_specifier(r: &Route) -> Option<route_action::ClusterSpecifier> {
    let live: Vec<_> = r.clusters.iter().filter(|c| c.weight > 0).collect();
    match live.as_slice() {
        [] => None,
        [one] if one.set_cookie.is_empty() => {
            Some(route_action::ClusterSpecifier::Cluster(one.cluster.clone()))
        }
        many => Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters: many
                    .iter()
                    .map(|c| weighted_cluster::ClusterWeight {
                        name: c.cluster.clone(),
                        weight: Some(u32_value(c.weight)),
                        response_headers_to_add: c
                            .set_cookie
                            .iter()
                            .map(|cookie| set_cookie(cookie))
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )),
    }
}

/// A `Set-Cookie` added to a response (next to the backend's own), its value literal.
fn set_cookie(value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: "set-cookie".to_owned(),
            value: matching::literal_header_value(value),
            ..Default::default()
        }),
        append_action: header_value_option::HeaderAppendAction::AppendIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// Envoy reads a zero route timeout as "no timeout"; an unset one as its 15 s default.
fn timeout(t: Timeout) -> Duration {
    match t {
        Timeout::Disabled => millis(0),
        Timeout::Millis(ms) => millis(ms),
    }
}

/// Hash on the session-affinity cookie; a zero TTL makes Envoy generate a session cookie when the
/// request has none.
fn session_affinity_hash_policy() -> route_action::HashPolicy {
    route_action::HashPolicy {
        policy_specifier: Some(route_action::hash_policy::PolicySpecifier::Cookie(
            route_action::hash_policy::Cookie {
                name: SESSION_AFFINITY_COOKIE.to_owned(),
                ttl: Some(millis(0)),
                path: "/".to_owned(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::xds::translate::fixture;

    fn clusters_of(r: &Route) -> Vec<weighted_cluster::ClusterWeight> {
        match cluster_specifier(r) {
            Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w.clusters,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pick_that_sets_cookies_is_a_weighted_cluster_adding_them() {
        // One live cluster that sets a cookie still needs the weighted form to carry it.
        let mut r = fixture::route("/", &[("a", 80, 1), ("b", 80, 0)]);
        r.clusters[0].set_cookie = vec!["o=1; Path=/".into(), "i=%25; Path=/".into()];
        r.clusters[1].set_cookie = vec!["o=2; Path=/".into()];
        let list = clusters_of(&r);
        assert_eq!(list.len(), 1, "the weight-0 pick is left out");
        let added: Vec<(String, String, i32)> = list[0]
            .response_headers_to_add
            .iter()
            .map(|h| {
                let hv = h.header.as_ref().unwrap();
                (hv.key.clone(), hv.value.clone(), h.append_action)
            })
            .collect();
        let append = header_value_option::HeaderAppendAction::AppendIfExistsOrAdd as i32;
        assert_eq!(
            added,
            [
                ("set-cookie".into(), "o=1; Path=/".into(), append),
                // `%` read literally, never as a formatter command.
                ("set-cookie".into(), "i=%%25; Path=/".into(), append),
            ]
        );
        // Without cookies, one live cluster stays a plain cluster.
        let plain = fixture::route("/", &[("a", 80, 1), ("b", 80, 0)]);
        assert!(matches!(
            cluster_specifier(&plain),
            Some(route_action::ClusterSpecifier::Cluster(_))
        ));
    }
}
