//! The services of a Traefik route, resolved: Kubernetes Services and TraefikServices
//! (`weighted`, `mirroring`), nested as deep as [`MAX_DEPTH`], flattened into one list of
//! weighted clusters and the mirrors every request is copied to.
//!
//! Weights are exact: a Service two levels down gets the product of the shares on its way, each
//! level's weights brought to a common denominator (the least common multiple of its children's
//! totals); a total over `u32::MAX` is divided by the weights' greatest common divisor, and
//! refused, never rounded, if it still does not fit. Traefik picks among weights with a
//! smooth weighted round robin, Envoy at random with the same proportions.
//!
//! Envoy mirrors per route, not per weighted branch, so a `mirroring` TraefikService is served
//! where every request of the route reaches it (at the top, or under a split whose other
//! branches all weigh 0), and a mirror must be one Kubernetes Service.

use std::collections::BTreeMap;

use crate::api::traefik::objects::{Mirroring, TraefikServiceSpec, Weighted};
use crate::api::traefik::routes as tr;
use crate::dag::build::Builder;
use crate::dag::model::traefik_options::StickyCookie;
use crate::dag::model::{Cluster, Mirror, Secret, WeightedCluster};
use crate::snapshot::ObjKey;

/// How deep TraefikServices may nest under a route (a route's TraefikService is depth 1).
pub const MAX_DEPTH: usize = 8;
/// How many service references (at every depth, each time reached) one route may resolve.
pub const MAX_REFERENCES: usize = 256;
/// How many distinct clusters one route may split over.
pub const MAX_CLUSTERS: usize = 64;
/// How many mirrors one route may copy requests to.
pub const MAX_MIRRORS: usize = 8;

/// What a route's services resolve to.
#[derive(Debug, Default)]
pub(super) struct Backend {
    /// Clusters and their weights, reduced; empty or all zero: no cluster is served.
    pub weighted: Vec<WeightedCluster>,
    /// Every cluster the route uses (weighted and mirrors).
    pub clusters: Vec<Cluster>,
    pub mirrors: Vec<Mirror>,
    /// CA bundles of the upstream TLS its clusters verify.
    pub secrets: Vec<Secret>,
    /// The sticky cookie of each cluster (by name), if any.
    pub sticky: BTreeMap<String, Option<StickyCookie>>,
}

/// A resolved subtree: leaf clusters with weights whose sum is `total`.
#[derive(Debug, Default)]
struct Dist {
    leaves: Vec<(String, u128)>,
    total: u128,
    mirrors: Vec<Mirror>,
}

/// The walk of one route's services.
struct Walk {
    /// TraefikServices being resolved, outermost first (for cycles).
    stack: Vec<ObjKey>,
    references: usize,
    out: Backend,
}

impl Builder<'_> {
    /// Resolves the services of a route of `key`'s IngressRoute (`at` is `spec.routes[i]`).
    pub(super) fn traefik_backend(
        &mut self,
        key: &ObjKey,
        services: &[tr::Service],
        at: &str,
    ) -> Result<Backend, String> {
        let mut walk = Walk {
            stack: Vec::new(),
            references: 0,
            out: Backend::default(),
        };
        let mut children = Vec::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            let context = format!("{at}.services[{i}]");
            let weight = weight_of(s).map_err(|e| format!("{context}: {e}"))?;
            let dist = self.service_ref(&mut walk, &key.namespace, s, &context)?;
            children.push((weight, dist, context));
        }
        let dist = combine(children, &format!("{at}.services"))?;
        let mut weighted = Vec::with_capacity(dist.leaves.len());
        for (cluster, w) in dist.leaves {
            let weight = u32::try_from(w).map_err(|_| too_heavy(at, dist.total))?;
            weighted.push(WeightedCluster { cluster, weight });
        }
        if dist.total > u128::from(u32::MAX) {
            return Err(too_heavy(at, dist.total));
        }
        walk.out.weighted = weighted;
        walk.out.mirrors = dist.mirrors;
        Ok(walk.out)
    }

    /// One entry of a services list of an object of namespace `from`.
    fn service_ref(
        &mut self,
        walk: &mut Walk,
        from: &str,
        s: &tr::Service,
        context: &str,
    ) -> Result<Dist, String> {
        walk.references += 1;
        if walk.references > MAX_REFERENCES {
            return Err(format!(
                "{context}: the route's services, TraefikServices expanded, make more than \
                 {MAX_REFERENCES} references"
            ));
        }
        match s.kind.as_deref() {
            None | Some("" | "Service") => {
                let (cluster, sticky) =
                    self.traefik_cluster(from, s, context, &mut walk.out.secrets)?;
                let name = cluster.name.clone();
                match walk.out.sticky.get(&name) {
                    Some(known) if *known != sticky => {
                        return Err(format!(
                            "{context}.sticky: Service port {name} is reached with two                              different sticky settings"
                        ));
                    }
                    _ => {
                        walk.out.sticky.insert(name.clone(), sticky);
                    }
                }
                if !walk.out.clusters.iter().any(|c| c.name == name) {
                    if walk.out.clusters.len() >= MAX_CLUSTERS {
                        return Err(format!(
                            "{context}: the route's services reach more than {MAX_CLUSTERS} \
                             distinct Service ports"
                        ));
                    }
                    walk.out.clusters.push(cluster);
                }
                Ok(Dist {
                    leaves: vec![(name, 1)],
                    total: 1,
                    mirrors: Vec::new(),
                })
            }
            Some("TraefikService") => self.traefik_service(walk, from, s, context),
            Some(other) => Err(format!("{context}.kind: {other:?} is not a service kind")),
        }
    }

    fn traefik_service(
        &mut self,
        walk: &mut Walk,
        from: &str,
        s: &tr::Service,
        context: &str,
    ) -> Result<Dist, String> {
        if s.name.is_empty() || s.name.contains('@') {
            return Err(format!(
                "{context}.name: {:?} must name a TraefikService (name@provider references do not \
                 exist in Sluice)",
                s.name
            ));
        }
        refuse_options(s).map_err(|e| format!("{context}.{e}"))?;
        let namespace = s
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(from);
        let key = ObjKey::new(namespace, s.name.clone());
        self.sel
            .cross_namespace(from, "TraefikService", &key)
            .map_err(|e| format!("{context}.namespace: {e}"))?;
        if walk.stack.contains(&key) {
            let chain: Vec<String> = walk
                .stack
                .iter()
                .skip_while(|k| **k != key)
                .chain(std::iter::once(&key))
                .map(ToString::to_string)
                .collect();
            return Err(format!(
                "{context}: TraefikServices reference each other in a cycle: {}",
                chain.join(" -> ")
            ));
        }
        if walk.stack.len() >= MAX_DEPTH {
            return Err(format!(
                "{context}: TraefikService {key} is nested more than {MAX_DEPTH} deep"
            ));
        }
        self.read(crate::dag::Dep::Traefik(
            crate::snapshot::TraefikKind::TraefikService,
            key.clone(),
        ));
        let snap = self.snap;
        let obj = snap
            .traefik_services
            .get(&key)
            .ok_or_else(|| format!("{context}: TraefikService {key} not found"))?;
        let spec = &obj
            .decoded
            .as_ref()
            .map_err(|e| format!("{context}: TraefikService {key} could not be read: {e}"))?
            .spec;
        if let Some(field) = obj.ignored.first() {
            return Err(format!(
                "{context}: TraefikService {key}: {field}: field not supported by Sluice"
            ));
        }
        walk.stack.push(key.clone());
        let at = format!("TraefikService {key}");
        let result = self.traefik_service_spec(walk, &key, spec, &at);
        walk.stack.pop();
        result.map_err(|e| format!("{context}: {e}"))
    }

    fn traefik_service_spec(
        &mut self,
        walk: &mut Walk,
        key: &ObjKey,
        spec: &TraefikServiceSpec,
        at: &str,
    ) -> Result<Dist, String> {
        if let Some(kind) = spec.other.keys().next() {
            let why = match kind.as_str() {
                "highestRandomWeight" => {
                    " (Envoy's ring hash and Maglev hash on request \
                     attributes, not on the server choice Traefik keeps per request)"
                }
                "failover" => " (it needs Traefik's health checks of the main service)",
                _ => "",
            };
            return Err(format!(
                "{at}: spec.{kind}: this kind of TraefikService is not served by Sluice{why}; \
                 weighted and mirroring are"
            ));
        }
        match (&spec.weighted, &spec.mirroring) {
            (Some(w), None) => self.weighted(walk, key, w, at),
            (None, Some(m)) => self.mirroring(walk, key, m, at),
            (Some(_), Some(_)) => Err(format!(
                "{at}: spec: exactly one of weighted and mirroring may be set"
            )),
            (None, None) => Err(format!("{at}: spec: set weighted or mirroring")),
        }
    }

    fn weighted(
        &mut self,
        walk: &mut Walk,
        key: &ObjKey,
        w: &Weighted,
        at: &str,
    ) -> Result<Dist, String> {
        if w.sticky.is_some() {
            return Err(format!(
                "{at}: spec.weighted.sticky: not served: Traefik pins a client to one of the \
                 weighted services with a cookie, and Envoy picks weighted clusters per request"
            ));
        }
        if w.services.is_empty() {
            return Err(format!("{at}: spec.weighted.services: must not be empty"));
        }
        let mut children = Vec::with_capacity(w.services.len());
        for (i, s) in w.services.iter().enumerate() {
            let context = format!("{at}: spec.weighted.services[{i}]");
            let weight = weight_of(s).map_err(|e| format!("{context}: {e}"))?;
            let dist = self.service_ref(walk, &key.namespace, s, &context)?;
            children.push((weight, dist, context));
        }
        let dist = combine(children, &format!("{at}: spec.weighted.services"))?;
        if dist.total == 0 {
            return Err(format!(
                "{at}: spec.weighted.services: every weight is 0, so Traefik would answer 503"
            ));
        }
        Ok(dist)
    }

    fn mirroring(
        &mut self,
        walk: &mut Walk,
        key: &ObjKey,
        m: &Mirroring,
        at: &str,
    ) -> Result<Dist, String> {
        if m.mirror_body == Some(false) {
            return Err(format!(
                "{at}: spec.mirroring.mirrorBody: false is not served: Envoy's mirrors always \
                 carry the request body"
            ));
        }
        if m.max_body_size.is_some_and(|n| n != -1) {
            return Err(format!(
                "{at}: spec.mirroring.maxBodySize: not served: Envoy mirrors bodies of any size \
                 (-1, the default, is accepted)"
            ));
        }
        let context = format!("{at}: spec.mirroring");
        let mut main = self.service_ref(walk, &key.namespace, &m.service, &context)?;
        for (i, mirror) in m.mirrors.iter().enumerate() {
            let context = format!("{at}: spec.mirroring.mirrors[{i}]");
            let percent = u32::try_from(mirror.percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    format!(
                        "{context}.percent: {} must be between 0 and 100",
                        mirror.percent
                    )
                })?;
            let target = self.service_ref(walk, &key.namespace, &mirror.service, &context)?;
            let cluster = single_cluster(target).map_err(|e| format!("{context}: {e}"))?;
            if percent == 0 {
                continue;
            }
            if main.mirrors.len() >= MAX_MIRRORS {
                return Err(format!(
                    "{context}: a route may copy its requests to at most {MAX_MIRRORS} mirrors"
                ));
            }
            main.mirrors.push(Mirror { cluster, percent });
        }
        Ok(main)
    }
}

/// `weight` of a service reference: unset counts as 1, as in Traefik.
fn weight_of(s: &tr::Service) -> Result<u32, String> {
    match s.weight {
        None => Ok(1),
        Some(w) => {
            u32::try_from(w).map_err(|_| format!("weight {w} must be between 0 and {}", u32::MAX))
        }
    }
}

/// Options of a service reference that mean nothing for a TraefikService.
fn refuse_options(s: &tr::Service) -> Result<(), String> {
    let set = [
        ("port", s.port.is_some()),
        ("scheme", s.scheme.is_some()),
        ("strategy", s.strategy.is_some()),
        ("passHostHeader", s.pass_host_header.is_some()),
        ("serversTransport", s.servers_transport.is_some()),
        ("sticky", s.sticky.is_some()),
        ("responseForwarding", s.response_forwarding.is_some()),
        ("healthCheck", s.health_check.is_some()),
        ("nativeLB", s.native_lb.is_some()),
        ("nodePortLB", s.node_port_lb.is_some()),
    ];
    match set.iter().find(|(_, on)| *on) {
        Some((field, _)) => Err(format!(
            "{field}: set on a TraefikService reference, where it means nothing; set it on the \
             TraefikService's own services"
        )),
        None => Ok(()),
    }
}

/// The one cluster a mirror sends to: Envoy mirrors to one cluster, so a mirror that splits
/// (or mirrors again) is refused.
fn single_cluster(target: Dist) -> Result<String, String> {
    if !target.mirrors.is_empty() {
        return Err(
            "a mirror that mirrors again is not served: Envoy mirrors to one cluster".to_owned(),
        );
    }
    let mut live = target.leaves.into_iter().filter(|(_, w)| *w > 0);
    match (live.next(), live.next()) {
        (Some((cluster, _)), None) => Ok(cluster),
        _ => Err(
            "a mirror that splits over several Services is not served: Envoy mirrors to \
                  one cluster"
                .to_owned(),
        ),
    }
}

fn too_heavy(at: &str, total: u128) -> String {
    format!(
        "{at}.services: the weights, multiplied through nested TraefikServices, add up to \
         {total}, more than Envoy's {}; use smaller weights",
        u32::MAX
    )
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A weighted split over `children` (weight, subtree, field): each leaf gets its child's weight
/// times its share of the child, every child brought to the least common multiple of the
/// children's totals; weights whose total Envoy cannot hold are reduced by their greatest common
/// divisor.
fn combine(children: Vec<(u32, Dist, String)>, at: &str) -> Result<Dist, String> {
    let overflow = || {
        format!(
            "{at}: the weights, multiplied through nested TraefikServices, overflow; use \
             smaller weights"
        )
    };
    let live: Vec<&(u32, Dist, String)> = children.iter().filter(|(w, ..)| *w > 0).collect();
    if live.len() > 1
        && let Some((_, _, field)) = live.iter().find(|(_, d, _)| !d.mirrors.is_empty())
    {
        return Err(format!(
            "{field}: a mirroring TraefikService is served only where every request of the \
             route reaches it: Envoy mirrors per route, not per weighted branch"
        ));
    }
    if let Some((_, _, field)) = live.iter().find(|(_, d, _)| d.total == 0) {
        return Err(format!("{field}: every weight under it is 0"));
    }
    let mut lcm: u128 = 1;
    for (_, d, _) in &live {
        lcm = lcm
            .checked_mul(d.total / gcd(lcm, d.total))
            .ok_or_else(overflow)?;
    }
    let mut leaves: Vec<(String, u128)> = Vec::new();
    let mut mirrors = Vec::new();
    for (w, d, _) in children {
        let scale = if w == 0 {
            0
        } else {
            u128::from(w)
                .checked_mul(lcm / d.total)
                .ok_or_else(overflow)?
        };
        if w > 0 {
            mirrors.extend(d.mirrors);
        }
        for (cluster, v) in d.leaves {
            let weight = v.checked_mul(scale).ok_or_else(overflow)?;
            match leaves.iter_mut().find(|(c, _)| *c == cluster) {
                Some((_, held)) => *held = held.checked_add(weight).ok_or_else(overflow)?,
                None => leaves.push((cluster, weight)),
            }
        }
    }
    let mut total: u128 = 0;
    for (_, w) in &leaves {
        total = total.checked_add(*w).ok_or_else(overflow)?;
    }
    // Weights as written stay as written; only a total Envoy cannot hold is reduced.
    if total > u128::from(u32::MAX) {
        let divisor = leaves.iter().fold(0, |g, (_, w)| gcd(g, *w)).max(1);
        for (_, w) in &mut leaves {
            *w /= divisor;
        }
        total /= divisor;
    }
    Ok(Dist {
        leaves,
        total,
        mirrors,
    })
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
