//! Traefik IngressRouteTCPs as SNI filter chains of the Gateway's HTTPS listener, as Contour's
//! `tcpproxy` is: each name a route's `HostSNI()` gives is a host the IngressRouteTCP claims
//! (ownership spans both dialects and HTTP, the oldest claimant keeping a name), served either
//! by forwarding the TLS session untouched (`tls.passthrough`) or by terminating it with the
//! route's certificate and TLSOption, then proxying to its weighted Services, optionally with
//! a PROXY protocol header.
//!
//! `ClientIP()` and `ALPN()` add conditional chains of a name (see `tcp_match`);
//! `HostSNI(`*`)`, `HostSNI(`*.name`)` and `HostSNIRegexp()` claim the catch-all and wildcard
//! hosts (see `tcp_open`); without `tls`, `HostSNI(`*`)` is plain TCP (see `tcp_plain`). What a
//! filter chain cannot express exactly is refused, naming the part (TCP middlewares, and the
//! combinations `tcp_match` cannot plan).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tcp_match::{self, Alternative, Chain};
use super::tcp_open;
use super::tcp_plain;
use super::tls::{self, TlsRequest};
use crate::api::gateway::TraefikEntryPoint;
use crate::api::traefik::routes::{RouteTCP, ServiceTCP};
use crate::dag::build::Builder;
use crate::dag::model::{
    Cluster, LbPolicy, ObjectStatus, SourceRange, TcpBranch, TcpProxy, UpstreamProtocol, Validity,
    VirtualHost, WeightedCluster, msg,
};
use crate::dag::select::Selection;
use crate::dag::upstream::{check_weight_sum, policy_hash};
use crate::snapshot::{ClusterSnapshot, ObjKey, TraefikTcpRoute};
use crate::traefik::matcher::Syntax;
use crate::traefik::tcp::{SniMatch, tcp_rule};

/// The kind reported for a Traefik IngressRouteTCP.
pub const KIND: &str = "IngressRouteTCP";

/// Owners of DAG entries built from an IngressRouteTCP: `traefik-tcp:namespace/name`.
pub fn owner_name(key: &ObjKey) -> String {
    format!("traefik-tcp:{key}")
}

/// How an IngressRouteTCP owner is named in a loser's status.
pub fn describe_owner(key: &ObjKey) -> String {
    format!("Traefik IngressRouteTCP {key}")
}

/// A selected IngressRouteTCP, checked as far as it can be without other objects.
#[derive(Debug)]
pub(in crate::dag) struct TcpRoot<'s> {
    pub key: ObjKey,
    pub obj: &'s Arc<TraefikTcpRoute>,
    pub parsed: Result<TcpParsed<'s>, String>,
}

#[derive(Debug)]
pub(in crate::dag) struct TcpParsed<'s> {
    /// Each host it claims, lower case, and its filter chains (which route serves what).
    pub hosts: BTreeMap<String, Vec<Chain>>,
    pub routes: &'s [RouteTCP],
    pub tls: TlsRequest,
    pub passthrough: bool,
    /// No `tls`: plain TCP (then `passthrough` too, without certificate).
    pub plain: bool,
}

/// Whether `sel`'s instance judges this IngressRouteTCP (as for an IngressRoute).
pub(in crate::dag) fn selects(sel: &Selection, obj: &TraefikTcpRoute) -> bool {
    let spec_class = obj
        .decoded
        .as_ref()
        .ok()
        .and_then(|r| r.spec.ingress_class_name.as_deref())
        .filter(|c| !c.is_empty());
    match spec_class {
        Some(class) => sel.ingress_class.as_deref() == Some(class),
        None => sel.selects_meta(&obj.metadata),
    }
}

/// The IngressRouteTCPs `sel` judges, in key order.
pub(in crate::dag) fn select<'s>(
    snapshot: &'s ClusterSnapshot,
    sel: &Selection,
) -> Vec<TcpRoot<'s>> {
    snapshot
        .traefik_tcp_routes
        .effective()
        .into_iter()
        .filter(|(_, obj)| selects(sel, obj))
        .map(|(key, obj)| TcpRoot {
            key: key.clone(),
            obj,
            parsed: parse(sel, key, obj),
        })
        .collect()
}

/// The IngressRouteTCP `key` (the one read, of either group), when `sel` judges it.
pub(in crate::dag) fn root<'s>(
    snapshot: &'s ClusterSnapshot,
    sel: &Selection,
    key: &ObjKey,
) -> Option<TcpRoot<'s>> {
    let obj = snapshot
        .traefik_tcp_routes
        .get(key)
        .filter(|o| selects(sel, o))?;
    Some(TcpRoot {
        key: key.clone(),
        obj,
        parsed: parse(sel, key, obj),
    })
}

/// The status entry of an IngressRouteTCP.
pub(in crate::dag) fn status(
    key: &ObjKey,
    obj: &TraefikTcpRoute,
    verdict: Result<(), String>,
) -> ObjectStatus {
    let (current_status, description) = match verdict {
        Ok(()) => (Validity::Valid, msg::VALID.to_owned()),
        Err(e) => (Validity::Invalid, e),
    };
    ObjectStatus {
        kind: KIND.to_owned(),
        api_version: obj.group.api_version().to_owned(),
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
        current_status,
        description,
    }
}

fn parse<'s>(
    sel: &Selection,
    key: &ObjKey,
    obj: &'s TraefikTcpRoute,
) -> Result<TcpParsed<'s>, String> {
    let route = obj
        .decoded
        .as_ref()
        .map_err(|e| format!("this IngressRouteTCP could not be read: {e}"))?;
    if let Some(field) = obj.ignored.iter().find(|f| f.starts_with("spec.")) {
        return Err(format!("{field}: field not supported by Sluice"));
    }
    if !sel.root_allowed(&key.namespace) {
        return Err(msg::ROOT_NAMESPACE.to_owned());
    }
    let spec = &route.spec;
    for (i, name) in spec.entry_points.iter().enumerate() {
        if sel.entry_point(name) != Some(TraefikEntryPoint::WebSecure) {
            return Err(format!(
                "spec.entryPoints[{i}]: entry point {name:?} is not served: Sluice serves TCP \
                 routes on \"websecure\" only (SNI filter chains of the Gateway's HTTPS \
                 listener), or a name the Gateway's spec.traefikEntryPoints maps to it"
            ));
        }
    }
    let (tls, passthrough) = match &spec.tls {
        None => (tcp_plain::request(), true),
        Some(t) => {
            let tls = tls::request(
                &key.namespace,
                &tls::TlsFields {
                    secret_name: t.secret_name.as_deref(),
                    options: t.options.as_ref(),
                    store: t.store.as_ref(),
                    cert_resolver: t.cert_resolver.as_deref(),
                },
            )?;
            (tls, t.passthrough)
        }
    };
    let plain = spec.tls.is_none();
    if spec.routes.is_empty() {
        return Err("spec.routes: at least one route is required".into());
    }
    // Each host's alternatives, planned into filter chains once all are known.
    let mut alternatives: BTreeMap<String, Vec<Alternative>> = BTreeMap::new();
    for (index, r) in spec.routes.iter().enumerate() {
        let at = format!("spec.routes[{index}]");
        if !r.middlewares.is_empty() {
            return Err(format!(
                "{at}.middlewares: MiddlewareTCP is not served by Sluice"
            ));
        }
        if r.match_.trim().is_empty() {
            return Err(format!("{at}.match: must not be empty"));
        }
        let (syntax, _) = Syntax::select(r.syntax.as_deref(), Syntax::V3);
        let rule =
            tcp_rule(&r.match_, syntax, r.priority).map_err(|e| format!("{at}.match: {e}"))?;
        for m in &rule.matches {
            if plain {
                tcp_plain::check(m).map_err(|e| format!("{at}.match: {e}"))?;
            }
            let host = tcp_open::claim(&m.sni).map_err(|e| format!("{at}.match: {e}"))?;
            let source = match m.source_ips.as_slice() {
                [] => None,
                [one] => Some(tcp_match::source(one).map_err(|e| format!("{at}.match: {e}"))?),
                _ => {
                    return Err(format!(
                        "{at}.match: one alternative with several ClientIP() networks"
                    ));
                }
            };
            let regex = match &m.sni {
                SniMatch::Regex(r) => Some(r.clone()),
                _ => None,
            };
            alternatives.entry(host).or_default().push(Alternative {
                route: index,
                priority: rule.priority,
                alpn: m.alpn.first().cloned(),
                source,
                regex,
            });
        }
    }
    tcp_open::spread(&mut alternatives)?;
    let mut hosts = BTreeMap::new();
    for (host, alts) in alternatives {
        let chains = tcp_match::plan(&host, &alts).map_err(|e| format!("spec.routes: {e}"))?;
        hosts.insert(host, chains);
    }
    Ok(TcpParsed {
        hosts,
        routes: &spec.routes,
        tls,
        passthrough,
        plain,
    })
}

impl Builder<'_> {
    /// Builds the SNI filter chains of the IngressRouteTCP `key`, which owns every host it
    /// claims. Returns its status description when it is invalid (then nothing is added).
    pub(in crate::dag) fn build_traefik_tcp(
        &mut self,
        key: &ObjKey,
        parsed: &TcpParsed<'_>,
    ) -> Result<(), String> {
        if let Some(quarantined) = self.quarantine.traefik_tcp(key) {
            return Err(quarantined.to_owned());
        }
        let (mut host_tls, secrets) = self.traefik_tls_per_host(
            key,
            &parsed.tls,
            parsed.passthrough,
            false,
            parsed.hosts.keys(),
        )?;
        let mut clusters: Vec<Cluster> = Vec::new();
        let mut per_route: BTreeMap<usize, Vec<WeightedCluster>> = BTreeMap::new();
        for chain in parsed.hosts.values().flatten() {
            let index = chain.route;
            if per_route.contains_key(&index) {
                continue;
            }
            let at = format!("spec.routes[{index}]");
            let route = parsed
                .routes
                .get(index)
                .ok_or_else(|| format!("{at}: missing"))?;
            let weighted = self.traefik_tcp_services(key, route, &at, &mut clusters)?;
            per_route.insert(index, weighted);
        }
        for c in clusters {
            self.clusters.insert(c.name.clone(), c);
        }
        for s in secrets {
            self.secrets.insert(s.name.clone(), s);
        }
        let owner = owner_name(key);
        for (host, chains) in &parsed.hosts {
            let weighted = |route: usize| per_route.get(&route).cloned().unwrap_or_default();
            let mut proxy = TcpProxy {
                owner: owner.clone(),
                clusters: Vec::new(),
                branches: Vec::new(),
                plain: parsed.plain,
                sni_regexes: Vec::new(),
            };
            for chain in chains {
                // Only a host with a single chain has patterns (see `tcp_match::plan`).
                proxy.sni_regexes.extend(chain.sni.iter().cloned());
                if chain.alpn.is_empty() && chain.sources.is_empty() {
                    proxy.clusters = weighted(chain.route);
                } else {
                    proxy.branches.push(TcpBranch {
                        alpn: chain.alpn.clone(),
                        sources: chain
                            .sources
                            .iter()
                            .map(|c| SourceRange {
                                address: c.addr,
                                prefix_len: c.prefix_len,
                            })
                            .collect(),
                        clusters: weighted(chain.route),
                    });
                }
            }
            self.vhosts.insert(
                host.clone(),
                VirtualHost {
                    fqdn: host.clone(),
                    owner: owner.clone(),
                    tls: host_tls.remove(host.as_str()),
                    routes: Vec::new(),
                    tcp_proxy: Some(proxy),
                },
            );
        }
        Ok(())
    }

    /// The weighted clusters of one route (`at`), adding them to `clusters`.
    fn traefik_tcp_services(
        &mut self,
        key: &ObjKey,
        route: &RouteTCP,
        at: &str,
        clusters: &mut Vec<Cluster>,
    ) -> Result<Vec<WeightedCluster>, String> {
        if route.services.is_empty() {
            return Err(format!("{at}.services: a route needs a service"));
        }
        let mut weighted: Vec<WeightedCluster> = Vec::with_capacity(route.services.len());
        for (i, s) in route.services.iter().enumerate() {
            let context = format!("{at}.services[{i}]");
            let weight = match s.weight {
                None => 1,
                Some(w) => u32::try_from(w).map_err(|_| {
                    format!("{context}.weight: {w} must be between 0 and {}", u32::MAX)
                })?,
            };
            let cluster = self.traefik_tcp_cluster(key, s, &context)?;
            match weighted.iter_mut().find(|w| w.cluster == cluster.name) {
                Some(w) => w.weight = w.weight.saturating_add(weight),
                None => weighted.push(WeightedCluster {
                    cluster: cluster.name.clone(),
                    weight,
                    set_cookie: Vec::new(),
                }),
            }
            clusters.push(cluster);
        }
        check_weight_sum(at, &weighted)?;
        if weighted.iter().all(|w| w.weight == 0) {
            return Err(format!(
                "{at}.services: every weight is 0, so no service would receive connections"
            ));
        }
        Ok(weighted)
    }

    /// A Kubernetes Service of the IngressRouteTCP's namespace as a cluster.
    fn traefik_tcp_cluster(
        &mut self,
        key: &ObjKey,
        s: &ServiceTCP,
        context: &str,
    ) -> Result<Cluster, String> {
        let unserved = [
            ("tls", s.tls == Some(true)),
            ("serversTransport", s.servers_transport.is_some()),
            ("nativeLB", s.native_lb == Some(true)),
            ("nodePortLB", s.node_port_lb == Some(true)),
            ("terminationDelay", s.termination_delay.is_some()),
        ];
        if let Some((field, _)) = unserved.iter().find(|(_, set)| *set) {
            let why = if *field == "serversTransport" {
                " (it names a ServersTransportTCP, a kind Sluice does not read: no TLS to TCP \
                 backends)"
            } else {
                ""
            };
            return Err(format!("{context}.{field}: not served yet{why}"));
        }
        let proxy_protocol = match s.proxy_protocol.as_ref().map(|p| p.version) {
            None => None,
            Some(None | Some(2)) => Some(2),
            Some(Some(1)) => Some(1),
            Some(Some(v)) => {
                return Err(format!(
                    "{context}.proxyProtocol.version: {v} must be 1 or 2"
                ));
            }
        };
        let super::upstream::TraefikServicePort {
            key: svc_key,
            service: svc,
            port: svc_port,
            number: port,
        } = self.traefik_service_port(
            &key.namespace,
            &s.name,
            s.namespace.as_deref(),
            s.port.as_ref(),
            context,
        )?;
        let upstream = self.build_upstream(&svc_key, svc, svc_port, context)?;
        let mut cluster = Cluster {
            name: String::new(),
            service: svc_key.to_string(),
            port,
            upstream,
            protocol: UpstreamProtocol::Http1,
            lb_policy: LbPolicy::RoundRobin,
            health_check: None,
            validation: None,
            proxy_protocol,
            active_health_check: None,
            transport: None,
        };
        let hash = policy_hash(&cluster)
            .map_err(|e| format!("{context}: cannot name its cluster: {e}"))?;
        cluster.name = match proxy_protocol {
            None => format!("{svc_key}/{port}/{hash}"),
            Some(v) => format!("{svc_key}/{port}/{hash}/proxy-v{v}"),
        };
        Ok(cluster)
    }
}
