//! The virtual hosts of a Traefik IngressRoute that owns its hosts: each alternative of each
//! rule becomes a DAG route in the virtual host of its `Host`, in Traefik's priority order
//! (higher first; ties in the order of `spec.routes`), with the route's middlewares and its
//! services resolved. The whole IngressRoute is served or, at its first problem, nothing of it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::filters::{self, Filters};
use super::{Parsed, ParsedRoute, owner_name};
use crate::api::ingressroute::{self as ir, TlsVersion};
use crate::api::traefik::routes as tr;
use crate::dag::build::Builder;
use crate::dag::checks;
use crate::dag::model::{
    self, Cluster, HeaderCondition, LbPolicy, PathKind, QueryCondition, Redirect, RouteExtra,
    UpstreamProtocol, ValueCondition, VirtualHost, WeightedCluster,
};
use crate::dag::upstream::{check_weight_sum, policy_hash, upstream_protocol};
use crate::snapshot::ObjKey;
use crate::traefik::matches::{HostMatch, HttpMatch, PathMatch, StringMatch};

/// How many Envoy routes one Traefik IngressRoute may make (its rules' alternatives, for every
/// host they name): each carries its own copy of the route's header edits, so this bounds what
/// one object can make the Gateway's configuration cost.
const MAX_ENVOY_ROUTES: usize = 1024;

/// Traefik's minimum TLS version when no TLSOption says otherwise.
const TRAEFIK_MIN_TLS: TlsVersion = TlsVersion::V1_2;

impl Builder<'_> {
    /// Builds every virtual host of the Traefik IngressRoute `key`, which owns all the hosts it
    /// claims. Returns its status description when it is invalid (then nothing is added).
    pub(in crate::dag) fn build_traefik(
        &mut self,
        key: &ObjKey,
        parsed: &Parsed<'_>,
    ) -> Result<(), String> {
        let (tls, secret) = match &parsed.tls_secret {
            None => (None, None),
            Some(name) => {
                let spec = ir::Tls {
                    secret_name: Some(name.clone()),
                    minimum_protocol_version: Some(TRAEFIK_MIN_TLS),
                    passthrough: false,
                };
                let (tls, secret) = self
                    .build_vhost_tls(key, &spec)
                    .map_err(|e| format!("spec.tls.secretName: {e}"))?;
                (Some(tls), secret)
            }
        };
        let mut hosts: BTreeMap<String, Vec<model::Route>> = BTreeMap::new();
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut total_routes = 0usize;
        for p in &parsed.routes {
            let at = format!("spec.routes[{}]", p.index);
            let filters = filters::resolve(self.snap, key, &p.route.middlewares, &at)?;
            let redirect = effective_redirect(&filters, tls.is_some())
                .map_err(|e| format!("{at}.middlewares: {e}"))?;
            let mut weighted = Vec::with_capacity(p.route.services.len());
            for (i, s) in p.route.services.iter().enumerate() {
                let context = format!("{at}.services[{i}]");
                let weight = service_weight(s).map_err(|e| format!("{context}: {e}"))?;
                let cluster = self.traefik_cluster(key, s, &context)?;
                weighted.push(WeightedCluster {
                    cluster: cluster.name.clone(),
                    weight,
                });
                clusters.push(cluster);
            }
            let weighted = merge_weights(weighted);
            check_weight_sum(&at, &weighted)?;
            if weighted.is_empty() && redirect.is_none() {
                return Err(format!(
                    "{at}.services: a route needs a service (or a redirectScheme middleware)"
                ));
            }
            for m in &p.rule.matches {
                let HostMatch::Exact(host) = &m.host else {
                    continue; // Refused when parsed.
                };
                let routes = hosts.entry(host.clone()).or_default();
                let action = Action {
                    filters: &filters,
                    redirect: redirect.as_ref(),
                    clusters: &weighted,
                    tls: tls.is_some(),
                };
                let made = dag_routes(key, p, m, &action, &at)?;
                total_routes += made.len();
                if total_routes > MAX_ENVOY_ROUTES {
                    return Err(format!(
                        "{at}.match: the IngressRoute's rules make more than {MAX_ENVOY_ROUTES} \
                         Envoy routes (each alternative of a rule is one per host)"
                    ));
                }
                routes.extend(made);
            }
        }
        for routes in hosts.values_mut() {
            // Stable: equal priorities keep the order of spec.routes.
            routes.sort_by_key(|r| std::cmp::Reverse(r.extra.as_ref().map_or(0, |e| e.priority)));
        }
        for c in clusters {
            self.clusters.insert(c.name.clone(), c);
        }
        if let Some(secret) = secret {
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
                    tls: tls.clone(),
                    routes,
                    tcp_proxy: None,
                },
            );
        }
        Ok(())
    }

    /// A Kubernetes Service of the IngressRoute's namespace, by port number or name, as a
    /// cluster (its endpoints recorded); `context` names the field in errors.
    fn traefik_cluster(
        &mut self,
        key: &ObjKey,
        s: &tr::Service,
        context: &str,
    ) -> Result<Cluster, String> {
        refuse_unserved_fields(s).map_err(|e| format!("{context}.{e}"))?;
        match s.kind.as_deref() {
            None | Some("" | "Service") => {}
            Some("TraefikService") => {
                return Err(format!("{context}.kind: TraefikService is not served yet"));
            }
            Some(other) => return Err(format!("{context}.kind: {other:?} is not a service kind")),
        }
        if s.name.is_empty() || s.name.contains('@') {
            return Err(format!(
                "{context}.name: {:?} must name a Service (name@provider references do not exist \
                 in Sluice)",
                s.name
            ));
        }
        if let Some(ns) = s.namespace.as_deref().filter(|n| !n.is_empty())
            && ns != key.namespace
        {
            return Err(format!(
                "{context}.namespace: Service {ns}/{} is in another namespace: cross-namespace \
                 references are refused (a Gateway has no setting to allow them)",
                s.name
            ));
        }
        let svc_key = ObjKey::new(key.namespace.clone(), s.name.clone());
        let port_text = match &s.port {
            None => return Err(format!("{context}.port: required")),
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(n)) => n.clone(),
        };
        let missing = || format!("{context}: Service {svc_key} port {port_text} not found");
        self.read(crate::dag::Dep::Service(svc_key.clone()));
        let svc = self.snap.services.get(&svc_key).ok_or_else(missing)?;
        let ports = svc.spec.as_ref().and_then(|sp| sp.ports.as_ref());
        let svc_port = ports
            .into_iter()
            .flatten()
            .find(|p| match s.port.as_ref() {
                Some(IntOrString::Int(n)) => *n != 0 && p.port == *n,
                Some(IntOrString::String(name)) => p.name.as_deref() == Some(name.as_str()),
                None => false,
            })
            .ok_or_else(missing)?;
        let port = u16::try_from(svc_port.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(missing)?;
        let name = svc_port.name.as_deref().unwrap_or("");
        let scheme = match s.scheme.as_deref() {
            Some(scheme) => scheme,
            // Traefik's default: https on port 443 or a port named https*.
            None if port == 443 || name.starts_with("https") => "https",
            None => "http",
        };
        let protocol = match (scheme, upstream_protocol(svc, svc_port)) {
            ("http", UpstreamProtocol::Http1) => UpstreamProtocol::Http1,
            ("h2c", UpstreamProtocol::Http1 | UpstreamProtocol::H2c) => UpstreamProtocol::H2c,
            ("https", _) => {
                return Err(format!(
                    "{context}: scheme https (TLS to the backend, Traefik's default for port 443 \
                     or a port named https*) is not served yet; set scheme: http if the backend \
                     speaks plain HTTP"
                ));
            }
            ("http" | "h2c", other) => {
                return Err(format!(
                    "{context}: Service {svc_key} port {port} is annotated as {other:?}, which \
                     contradicts scheme {scheme}"
                ));
            }
            (other, _) => {
                return Err(format!(
                    "{context}.scheme: {other:?} must be http, https or h2c"
                ));
            }
        };
        let upstream = self.build_upstream(&svc_key, svc, svc_port, context)?;
        let mut cluster = Cluster {
            name: String::new(),
            service: svc_key.to_string(),
            port,
            upstream,
            protocol,
            lb_policy: LbPolicy::RoundRobin,
            health_check: None,
            validation: None,
        };
        let hash = policy_hash(&cluster)
            .map_err(|e| format!("{context}: cannot name its cluster: {e}"))?;
        cluster.name = format!("{svc_key}/{port}/{hash}");
        Ok(cluster)
    }
}

/// Fields of a service this slice does not serve; their defaults are accepted.
fn refuse_unserved_fields(s: &tr::Service) -> Result<(), String> {
    let unserved = [
        (
            "strategy",
            s.strategy
                .as_deref()
                .is_some_and(|v| !matches!(v, "" | "RoundRobin" | "wrr")),
        ),
        ("passHostHeader", s.pass_host_header == Some(false)),
        ("serversTransport", s.servers_transport.is_some()),
        ("sticky", s.sticky.is_some()),
        ("healthCheck", s.health_check.is_some()),
        ("nativeLB", s.native_lb == Some(true)),
        ("nodePortLB", s.node_port_lb == Some(true)),
    ];
    match unserved.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(format!("{field}: not served yet")),
        None => Ok(()),
    }
}

/// A service's weight: unset counts as 1, as in Traefik.
fn service_weight(s: &tr::Service) -> Result<u32, String> {
    match s.weight {
        None => Ok(1),
        Some(w) => {
            u32::try_from(w).map_err(|_| format!("weight {w} must be between 0 and {}", u32::MAX))
        }
    }
}

/// Services sharing a cluster add up their weights.
fn merge_weights(list: Vec<WeightedCluster>) -> Vec<WeightedCluster> {
    let mut out: Vec<WeightedCluster> = Vec::with_capacity(list.len());
    for c in list {
        match out.iter_mut().find(|o| o.cluster == c.cluster) {
            Some(o) => o.weight = o.weight.saturating_add(c.weight),
            None => out.push(c),
        }
    }
    out
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
    }))
}

fn value_text(v: &StringMatch) -> &str {
    match v {
        StringMatch::Exact(s) | StringMatch::Regex(s) => s,
        StringMatch::Present => "",
    }
}

/// What every alternative of a route does.
struct Action<'a> {
    filters: &'a Filters,
    redirect: Option<&'a Redirect>,
    clusters: &'a [WeightedCluster],
    /// Served over HTTPS.
    tls: bool,
}

/// The DAG routes of one alternative of a rule: one, or two with a redirect (Traefik answers
/// GET with 301/302 and other methods with 308/307).
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
        clusters,
        tls,
    } = *action;
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
        policy: f.policies.route_policy(false),
    };
    let route = |extra: RouteExtra| model::Route {
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
    let Some(redirect) = redirect else {
        return Ok(vec![route(extra)]);
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
    Ok(vec![route(get), route(other)])
}
