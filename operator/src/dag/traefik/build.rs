//! The virtual hosts of a Traefik IngressRoute that owns its hosts: each alternative of each
//! rule becomes a DAG route in the virtual host of its `Host` (a host-less alternative in each
//! of the IngressRoute's hosts, a wildcard one in the wildcard's and those one label under it,
//! see `hosts::targets`), in Traefik's priority order
//! (higher first; ties in the order of `spec.routes`), with the route's middlewares and its
//! services resolved. The whole IngressRoute is served or, at its first problem, nothing of it.

use std::collections::BTreeMap;

use super::filters::{self, Filters};
use super::{Parsed, ParsedRoute, owner_name};
use crate::dag::build::Builder;
use crate::dag::checks;
use crate::dag::model::traefik_options::RouteServiceOptions;
use crate::dag::model::{
    self, Cluster, HeaderCondition, PathKind, QueryCondition, Redirect, RouteExtra, ValueCondition,
    VirtualHost, WeightedCluster,
};
use crate::snapshot::ObjKey;
use crate::traefik::matches::{HttpMatch, PathMatch, StringMatch};

/// How many Envoy routes one Traefik IngressRoute may make (its rules' alternatives, for every
/// host they name): each carries its own copy of the route's header edits, so this bounds what
/// one object can make the Gateway's configuration cost.
const MAX_ENVOY_ROUTES: usize = 1024;

impl Builder<'_> {
    /// Builds every virtual host of the Traefik IngressRoute `key`, which owns all the hosts it
    /// claims. Returns its status description when it is invalid (then nothing is added).
    pub(in crate::dag) fn build_traefik(
        &mut self,
        key: &ObjKey,
        parsed: &Parsed<'_>,
    ) -> Result<(), String> {
        if let Some(quarantined) = self.quarantine.traefik(key) {
            return Err(quarantined.to_owned());
        }
        // Each host's TLS: the certificate of a TLSStore may differ per host.
        let (mut host_tls, tls_secrets) = match &parsed.tls {
            Some(req) => self.traefik_tls_per_host(key, req, false, true, &parsed.hosts)?,
            None => (BTreeMap::new(), Vec::new()),
        };
        let tls = parsed.tls.as_ref();
        let mut hosts: BTreeMap<String, Vec<model::Route>> = BTreeMap::new();
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut secrets: Vec<model::Secret> = Vec::new();
        let mut total_routes = 0usize;
        for p in &parsed.routes {
            let at = format!("spec.routes[{}]", p.index);
            let read = |d| self.read(d);
            let mut filters =
                filters::resolve(self.snap, self.sel, &read, key, &p.route.middlewares, &at)?;
            self.traefik_forward_auth(&mut filters.policies, &mut clusters, &mut secrets)?;
            let redirect = effective_redirect(&filters, tls.is_some())
                .map_err(|e| format!("{at}.middlewares: {e}"))?;
            let regex_redirect = filters
                .regex_redirect(tls.is_some())
                .map_err(|e| format!("{at}.middlewares: {e}"))?;
            let backend = self.traefik_backend(key, &p.route.services, &at)?;
            let mut served = Vec::with_capacity(backend.routes.len());
            for r in &backend.routes {
                let service_options = super::service_options::for_route(&backend, r)
                    .map_err(|e| format!("{at}.services: {e}"))?;
                served.push(Served {
                    cookies: r
                        .pins
                        .iter()
                        .map(|(name, value)| HeaderCondition {
                            name: "cookie".to_owned(),
                            value: ValueCondition::Regex(super::cookie_match::first_cookie_is(
                                name, value,
                            )),
                            invert: false,
                        })
                        .collect(),
                    clusters: r.weighted.clone(),
                    mirrors: r.mirrors.clone(),
                    service_options,
                });
            }
            clusters.extend(backend.clusters);
            secrets.extend(backend.secrets);
            let fresh_clusters = served.last().map_or(0, |s| s.clusters.len());
            if fresh_clusters == 0 && redirect.is_none() {
                return Err(format!(
                    "{at}.services: a route needs a service (or a redirectScheme middleware)"
                ));
            }
            for m in &p.rule.matches {
                let targets = super::hosts::targets(&m.host, &parsed.hosts);
                let action = Action {
                    filters: &filters,
                    redirect: redirect.as_ref(),
                    regex_redirect: regex_redirect.as_ref(),
                    served: &served,
                    tls: tls.is_some(),
                };
                let made = dag_routes(key, p, m, &action, &at)?;
                total_routes += made.len() * targets.len();
                if total_routes > MAX_ENVOY_ROUTES {
                    return Err(format!(
                        "{at}.match: the IngressRoute's rules make more than {MAX_ENVOY_ROUTES} \
                         Envoy routes (each alternative of a rule is one per host)"
                    ));
                }
                for host in targets {
                    hosts
                        .entry(host.clone())
                        .or_default()
                        .extend(made.iter().cloned());
                }
            }
        }
        for routes in hosts.values_mut() {
            // Stable: equal priorities keep the order of spec.routes.
            routes.sort_by_key(|r| std::cmp::Reverse(r.extra.as_ref().map_or(0, |e| e.priority)));
        }
        for c in clusters {
            self.clusters.insert(c.name.clone(), c);
        }
        for secret in tls_secrets.into_iter().chain(secrets) {
            self.secrets.insert(secret.name.clone(), secret);
        }
        let owner = owner_name(key);
        for host in &parsed.hosts {
            let routes = hosts.remove(host).unwrap_or_default();
            self.vhosts.insert(
                host.clone(),
                VirtualHost {
                    fqdn: host.clone(),
                    owner: owner.clone(),
                    tls: host_tls.remove(host.as_str()),
                    routes,
                    tcp_proxy: None,
                },
            );
        }
        Ok(())
    }
}

/// The redirect a route really makes. Traefik passes a request through when the redirect would
/// not change its URL: an https redirect on a TLS route (to the default port) does nothing.
fn effective_redirect(f: &Filters, tls: bool) -> Result<Option<Redirect>, String> {
    let Some(r) = &f.redirect else {
        return Ok(None);
    };
    let default_port = if r.https { 443 } else { 80 };
    let port = r.port.filter(|p| *p != default_port);
    if r.https == tls {
        return match port {
            None => Ok(None),
            Some(_) => Err(
                "redirectScheme to the route's own scheme on another port is not served yet".into(),
            ),
        };
    }
    Ok(Some(Redirect {
        scheme: if r.https { "https" } else { "http" }.to_owned(),
        port,
        status: if r.permanent { 301 } else { 302 },
        host: None,
        path: None,
    }))
}

fn value_text(v: &StringMatch) -> &str {
    match v {
        StringMatch::Exact(s) | StringMatch::Regex(s) => s,
        StringMatch::Present => "",
    }
}

/// One Envoy route forwarding an alternative of a route (see `services::BackendRoute`).
struct Served {
    /// Conditions on the `Cookie` header: the sticky cookies it pins.
    cookies: Vec<HeaderCondition>,
    clusters: Vec<WeightedCluster>,
    mirrors: Vec<model::Mirror>,
    service_options: Option<Box<RouteServiceOptions>>,
}

/// What every alternative of a route does.
struct Action<'a> {
    filters: &'a Filters,
    redirect: Option<&'a Redirect>,
    /// A `redirectRegex`: redirect routes ahead of the route (see `redirect_regex.rs`).
    regex_redirect: Option<&'a super::redirect_regex::RegexRedirect>,
    /// The forwarding routes, first match wins; the last pins no cookie.
    served: &'a [Served],
    /// Served over HTTPS.
    tls: bool,
}

/// The DAG routes of one alternative of a rule: one forwarding route per entry of `served`
/// (the sticky cookies it pins as conditions, every other setting the same), or two with a
/// redirect (Traefik answers GET with 301/302 and other methods with 308/307).
fn dag_routes(
    key: &ObjKey,
    p: &ParsedRoute<'_>,
    m: &HttpMatch,
    action: &Action<'_>,
    at: &str,
) -> Result<Vec<model::Route>, String> {
    let Action {
        filters: f,
        redirect,
        regex_redirect,
        served,
        tls,
    } = *action;
    let Some(fresh) = served.last() else {
        return Err(format!("{at}.services: a route needs a service"));
    };
    // Each pinned copy is its own Envoy route, with its own token buckets: a client choosing
    // its cookie (the values are public) would get the limit once per copy (review 8 R8.1).
    if served.len() > 1
        && f.policies
            .route_policy(false)
            .is_some_and(|p| p.rate_limit.is_some())
    {
        return Err(format!(
            "{at}.middlewares: a rateLimit with a sticky weighted service is not served: each \
             child its cookie pins is an Envoy route of its own with its own token buckets, so \
             a client choosing its cookie would get the limit once per child"
        ));
    }
    let (path, prefix) = match &m.path {
        PathMatch::Any => (PathKind::Prefix, "/".to_owned()),
        PathMatch::Prefix(p) => (PathKind::Prefix, p.clone()),
        PathMatch::Exact(p) => (PathKind::Exact, p.clone()),
        PathMatch::Regex(r) => (PathKind::Regex, r.clone()),
    };
    if path != PathKind::Regex {
        checks::path(&prefix).map_err(|e| format!("{at}.match: path {prefix:?} {e}"))?;
    }
    // Go escapes in double-quoted rule strings can write any byte; Envoy takes none of these.
    let strings = std::iter::once(prefix.as_str())
        .chain(
            m.headers
                .iter()
                .flat_map(|h| [h.name.as_str(), value_text(&h.value)]),
        )
        .chain(
            m.query
                .iter()
                .flat_map(|q| [q.key.as_str(), value_text(&q.value)]),
        );
    for s in strings {
        if let Some(b) = s.bytes().find(|b| b.is_ascii_control()) {
            return Err(format!(
                "{at}.match: {s:?} holds the control character 0x{b:02x}, which Envoy refuses"
            ));
        }
    }
    let value = |v: &StringMatch| match v {
        StringMatch::Exact(s) => ValueCondition::Exact(s.clone()),
        StringMatch::Regex(r) => ValueCondition::Regex(r.clone()),
        StringMatch::Present => ValueCondition::Present,
    };
    let mut response_set: Vec<(String, String)> = f
        .response_set
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some((sts, on_plain)) = &f.sts
        && (*on_plain || tls)
    {
        response_set.push(("strict-transport-security".to_owned(), sts.clone()));
        response_set.sort();
    }
    let extra = RouteExtra {
        path,
        headers: m
            .headers
            .iter()
            .map(|h| HeaderCondition {
                name: h.name.clone(),
                value: value(&h.value),
                invert: h.invert,
            })
            .collect(),
        query: m
            .query
            .iter()
            .map(|q| QueryCondition {
                name: q.key.clone(),
                value: value(&q.value),
            })
            .collect(),
        sources: super::client_ip::conditions(m),
        priority: p.rule.priority,
        redirect: None,
        path_rewrite: f.path_rewrite.clone(),
        request_headers_set: f
            .request_set
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        request_headers_remove: f.request_remove.clone(),
        response_headers_set: response_set,
        response_headers_remove: f.response_remove.clone(),
        host_rewrite: f.host_rewrite.clone(),
        mirrors: fresh.mirrors.clone(),
        policy: f.policies.route_policy(false),
        service_options: fresh.service_options.clone(),
        direct_response: None,
        compress: f.compress,
    };
    let routed = |extra: RouteExtra, clusters: &[WeightedCluster]| model::Route {
        prefix: prefix.clone(),
        owner: owner_name(key),
        clusters: clusters.to_vec(),
        permit_insecure: false,
        // Traefik proxies upgrades as they come.
        websocket: clusters.len() == 1,
        prefix_rewrite: None,
        timeout: None,
        retry: None,
        session_affinity: false,
        extra: Some(Box::new(extra)),
    };
    let route = |extra: RouteExtra| routed(extra, &fresh.clusters);
    // The forwarding routes: those pinned by sticky cookies first, each a copy of the fresh
    // pick's with its cookie conditions, clusters, mirrors and service options.
    let forward = |extra: RouteExtra| -> Vec<model::Route> {
        served
            .iter()
            .map(|s| {
                let mut e = extra.clone();
                e.headers.extend(s.cookies.iter().cloned());
                e.mirrors.clone_from(&s.mirrors);
                e.service_options.clone_from(&s.service_options);
                routed(e, &s.clusters)
            })
            .collect()
    };
    // Requests for a Host `allowedHosts` refuses are answered first, unless a redirect listed
    // before it answers them.
    let bad_host = f
        .allowed_hosts
        .as_ref()
        .filter(|a| redirect.is_none() || !a.after_redirect)
        .map(|a| route(super::allowed_hosts::bad_host_route(&extra, a)));
    if let Some(r) = regex_redirect {
        let redirects = super::redirect_regex::routes(&extra, r, f.policies.route_policy(true));
        return Ok(bad_host
            .into_iter()
            .chain(redirects.into_iter().map(&route))
            .chain(forward(extra))
            .collect());
    }
    let Some(redirect) = redirect else {
        return Ok(bad_host.into_iter().chain(forward(extra)).collect());
    };
    let mut get = extra.clone();
    get.headers.push(HeaderCondition {
        name: ":method".to_owned(),
        value: ValueCondition::Exact("GET".to_owned()),
        invert: false,
    });
    get.redirect = Some(redirect.clone());
    get.policy = f.policies.route_policy(true);
    let mut other = extra;
    other.policy = f.policies.route_policy(true);
    other.redirect = Some(Redirect {
        status: if redirect.status == 301 { 308 } else { 307 },
        ..redirect.clone()
    });
    Ok(bad_host
        .into_iter()
        .chain([route(get), route(other)])
        .collect())
}
