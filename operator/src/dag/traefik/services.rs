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
//!
//! A `weighted` TraefikService with `sticky.cookie` pins a client to one of its children: a
//! request whose cookie names a child of positive weight goes to that child, any other request
//! gets a weighted pick and a response that sets the cookie. Envoy picks weighted clusters per
//! request, so a route's services resolve to a list of *scenarios*, each one Envoy route: one
//! per pinned child (its cookie as a condition on the `Cookie` header), multiplied through
//! nested sticky levels, then the fresh pick, whose weighted clusters each add the `Set-Cookie`
//! of the children chosen on the way. The order is what makes the first matching route the one
//! Traefik's handlers would take: at a sticky level every pinned child before the fresh pick,
//! and under a split the combinations of its children's scenarios in lexicographic order
//! (their cookie names differ, so the first combination matching is the one of each child's
//! first match). At most [`MAX_STICKY_ROUTES`] scenarios per route.

use std::collections::BTreeMap;

use crate::api::traefik::objects::{Mirroring, TraefikServiceSpec, Weighted};
use crate::api::traefik::routes as tr;
use crate::dag::build::Builder;
use crate::dag::model::traefik_options::StickyCookie;
use crate::dag::model::{Cluster, Mirror, Secret, WeightedCluster};
use crate::dag::select::Selection;
use crate::dag::traefik::service_options;
use crate::snapshot::ObjKey;

/// How deep TraefikServices may nest under a route (a route's TraefikService is depth 1).
pub const MAX_DEPTH: usize = 8;
/// How many service references (at every depth, each time reached) one route may resolve.
pub const MAX_REFERENCES: usize = 256;
/// How many distinct clusters one route may split over.
pub const MAX_CLUSTERS: usize = 64;
/// How many mirrors one route may copy requests to.
pub const MAX_MIRRORS: usize = 8;
/// How many Envoy routes the sticky weighted TraefikServices of one route may make of each
/// alternative of its rule (pinned children multiplied through nested sticky levels, and the
/// fresh picks).
pub const MAX_STICKY_ROUTES: usize = 32;
/// Longest cookie name of a sticky weighted TraefikService: the pattern that finds the first
/// cookie of the name nests one group per byte of it (see `cookie_match`).
pub const MAX_PINNING_COOKIE_NAME: usize = 64;

/// What a route's services resolve to.
#[derive(Debug, Default)]
pub(super) struct Backend {
    /// The Envoy routes of each alternative, first match wins: one per combination of pinned
    /// sticky cookies, then the fresh pick (the last, with no cookie condition). One without
    /// sticky weighted TraefikServices.
    pub routes: Vec<BackendRoute>,
    /// Every cluster the route uses (weighted and mirrors).
    pub clusters: Vec<Cluster>,
    /// CA bundles of the upstream TLS its clusters verify.
    pub secrets: Vec<Secret>,
    /// The sticky cookie of each cluster (by name), if any.
    pub sticky: BTreeMap<String, Option<StickyCookie>>,
}

/// One Envoy route of a route's services.
#[derive(Debug, Default)]
pub(super) struct BackendRoute {
    /// `(cookie name, values)`: the first cookie of each name in the request's `Cookie`
    /// header must have one of the values; empty for the fresh pick.
    pub pins: Vec<(String, Vec<String>)>,
    /// Clusters and their weights, reduced; empty or all zero: no cluster is served.
    pub weighted: Vec<WeightedCluster>,
    pub mirrors: Vec<Mirror>,
}

/// A resolved subtree: its scenarios, first match wins; the last has no pins.
#[derive(Debug)]
struct Dist {
    scenarios: Vec<Scenario>,
}

/// One way a request goes through a subtree: the cookies it pins, and leaf clusters with
/// weights whose sum is `total`.
#[derive(Clone, Debug, Default)]
struct Scenario {
    pins: Vec<(String, Vec<String>)>,
    leaves: Vec<Leaf>,
    total: u128,
    mirrors: Vec<Mirror>,
}

#[derive(Clone, Debug)]
struct Leaf {
    cluster: String,
    weight: u128,
    /// `Set-Cookie` values of the sticky levels picked on the way, outermost first.
    set_cookie: Vec<String>,
}

impl Dist {
    /// The scenario with no pins (the last).
    fn fresh(&self) -> &Scenario {
        // Every Dist is built with at least one scenario.
        &self.scenarios[self.scenarios.len() - 1]
    }
}

/// A sticky level: its cookie's name and, per child, the value naming it, the values that pin
/// it (that one first) and the `Set-Cookie` header a fresh pick of it sends.
struct StickyLevel {
    name: String,
    values: Vec<String>,
    accepted: Vec<Vec<String>>,
    headers: Vec<String>,
}

/// The walk of one route's services.
struct Walk {
    /// TraefikServices being resolved, outermost first (for cycles).
    stack: Vec<ObjKey>,
    references: usize,
    /// Sticky cookie names of the weighted TraefikServices reached, and their service.
    cookies: BTreeMap<String, ObjKey>,
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
            cookies: BTreeMap::new(),
            out: Backend::default(),
        };
        let mut children = Vec::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            let context = format!("{at}.services[{i}]");
            let weight = weight_of(s).map_err(|e| format!("{context}: {e}"))?;
            let dist = self.service_ref(&mut walk, &key.namespace, s, &context)?;
            children.push((weight, dist, context));
        }
        let dist = combine(children, &format!("{at}.services"), None)?;
        let mut routes = Vec::with_capacity(dist.scenarios.len());
        for scenario in dist.scenarios {
            if scenario.total > u128::from(u32::MAX) {
                return Err(too_heavy(at, scenario.total));
            }
            let mut weighted = Vec::with_capacity(scenario.leaves.len());
            for leaf in scenario.leaves {
                let weight =
                    u32::try_from(leaf.weight).map_err(|_| too_heavy(at, scenario.total))?;
                weighted.push(WeightedCluster {
                    cluster: leaf.cluster,
                    weight,
                    set_cookie: leaf.set_cookie,
                });
            }
            routes.push(BackendRoute {
                pins: scenario.pins,
                weighted,
                mirrors: scenario.mirrors,
            });
        }
        // Envoy would issue and hash a Service's cookie while the route matches on the same
        // name for a child's value.
        for (cluster, cookie) in &walk.out.sticky {
            if let Some(cookie) = cookie
                && let Some(level) = walk.cookies.get(&cookie.name)
            {
                return Err(format!(
                    "{at}.services: the sticky cookie {:?} of Service port {cluster} is also the \
                     cookie of the sticky weighted TraefikService {level}; give them different \
                     names",
                    cookie.name
                ));
            }
        }
        walk.out.routes = routes;
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
                    scenarios: vec![Scenario {
                        leaves: vec![Leaf {
                            cluster: name,
                            weight: 1,
                            set_cookie: Vec::new(),
                        }],
                        total: 1,
                        ..Scenario::default()
                    }],
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
        traefik_service_reference(s, context)?;
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
        match spec_kind(spec, at)? {
            SpecKind::Weighted(w) => self.weighted(walk, key, w, at),
            SpecKind::Mirroring(m) => self.mirroring(walk, key, m, at),
        }
    }

    fn weighted(
        &mut self,
        walk: &mut Walk,
        key: &ObjKey,
        w: &Weighted,
        at: &str,
    ) -> Result<Dist, String> {
        weighted_services(w, at)?;
        let sticky = match &w.sticky {
            Some(sticky) => Some(sticky_level(walk, key, sticky, &w.services, at)?),
            None => None,
        };
        let mut children = Vec::with_capacity(w.services.len());
        for (i, s) in w.services.iter().enumerate() {
            let context = format!("{at}: spec.weighted.services[{i}]");
            let weight = weight_of(s).map_err(|e| format!("{context}: {e}"))?;
            let dist = self.service_ref(walk, &key.namespace, s, &context)?;
            children.push((weight, dist, context));
        }
        let dist = combine(
            children,
            &format!("{at}: spec.weighted.services"),
            sticky.as_ref(),
        )?;
        if dist.fresh().total == 0 {
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
        mirroring_fields(m, at)?;
        let context = format!("{at}: spec.mirroring");
        let mut main = self.service_ref(walk, &key.namespace, &m.service, &context)?;
        for (i, mirror) in m.mirrors.iter().enumerate() {
            let context = format!("{at}: spec.mirroring.mirrors[{i}]");
            let percent = mirror_percent(mirror.percent, &context)?;
            let target = self.service_ref(walk, &key.namespace, &mirror.service, &context)?;
            let cluster = single_cluster(target).map_err(|e| format!("{context}: {e}"))?;
            if percent == 0 {
                continue;
            }
            for scenario in &mut main.scenarios {
                if scenario.mirrors.len() >= MAX_MIRRORS {
                    return Err(format!(
                        "{context}: a route may copy its requests to at most {MAX_MIRRORS} \
                         mirrors"
                    ));
                }
                scenario.mirrors.push(Mirror {
                    cluster: cluster.clone(),
                    percent,
                });
            }
        }
        Ok(main)
    }
}

/// The kind of a TraefikService: the one of weighted and mirroring it sets.
enum SpecKind<'a> {
    Weighted(&'a Weighted),
    Mirroring(&'a Mirroring),
}

/// The kind `spec` sets, when it is one Sluice serves. `at` names the TraefikService.
fn spec_kind<'a>(spec: &'a TraefikServiceSpec, at: &str) -> Result<SpecKind<'a>, String> {
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
        (Some(w), None) => Ok(SpecKind::Weighted(w)),
        (None, Some(m)) => Ok(SpecKind::Mirroring(m)),
        (Some(_), Some(_)) => Err(format!(
            "{at}: spec: exactly one of weighted and mirroring may be set"
        )),
        (None, None) => Err(format!("{at}: spec: set weighted or mirroring")),
    }
}

fn weighted_services(w: &Weighted, at: &str) -> Result<(), String> {
    if w.services.is_empty() {
        return Err(format!("{at}: spec.weighted.services: must not be empty"));
    }
    Ok(())
}

/// The fields of a mirroring TraefikService besides its services.
fn mirroring_fields(m: &Mirroring, at: &str) -> Result<(), String> {
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
    Ok(())
}

fn mirror_percent(percent: i64, context: &str) -> Result<u32, String> {
    u32::try_from(percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| format!("{context}.percent: {percent} must be between 0 and 100"))
}

/// A `kind: TraefikService` reference's own fields: a plain name, and none of a Service's
/// options.
fn traefik_service_reference(s: &tr::Service, context: &str) -> Result<(), String> {
    if s.name.is_empty() || s.name.contains('@') {
        return Err(format!(
            "{context}.name: {:?} must name a TraefikService (name@provider references do not \
             exist in Sluice)",
            s.name
        ));
    }
    refuse_options(s).map_err(|e| format!("{context}.{e}"))
}

/// The TraefikService `key`'s verdict from its own fields, whether a route uses it or not: its
/// kind, weights, mirroring fields, and each reference's kind, name and namespace (against the
/// Gateway's `allowCrossNamespace`). What the references lead to is checked where a route uses
/// it. Pure.
pub(super) fn own_fields(
    sel: &Selection,
    key: &ObjKey,
    spec: &TraefikServiceSpec,
) -> Result<(), String> {
    let at = format!("TraefikService {key}");
    let reference = |s: &tr::Service, context: &str| -> Result<(), String> {
        let what = match s.kind.as_deref() {
            None | Some("" | "Service") => "Service",
            Some("TraefikService") => {
                traefik_service_reference(s, context)?;
                "TraefikService"
            }
            Some(other) => return Err(format!("{context}.kind: {other:?} is not a service kind")),
        };
        let namespace = s
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&key.namespace);
        sel.cross_namespace(
            &key.namespace,
            what,
            &ObjKey::new(namespace, s.name.clone()),
        )
        .map_err(|e| format!("{context}.namespace: {e}"))
    };
    match spec_kind(spec, &at)? {
        SpecKind::Weighted(w) => {
            weighted_services(w, &at)?;
            for (i, s) in w.services.iter().enumerate() {
                let context = format!("{at}: spec.weighted.services[{i}]");
                weight_of(s).map_err(|e| format!("{context}: {e}"))?;
                reference(s, &context)?;
            }
        }
        SpecKind::Mirroring(m) => {
            mirroring_fields(m, &at)?;
            reference(&m.service, &format!("{at}: spec.mirroring"))?;
            for (i, mirror) in m.mirrors.iter().enumerate() {
                let context = format!("{at}: spec.mirroring.mirrors[{i}]");
                mirror_percent(mirror.percent, &context)?;
                reference(&mirror.service, &context)?;
            }
        }
    }
    Ok(())
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
fn single_cluster(mut target: Dist) -> Result<String, String> {
    // The fresh pick: a mirror's responses are dropped, so its cookies mean nothing.
    let target = target.scenarios.pop().unwrap_or_default();
    if !target.mirrors.is_empty() {
        return Err(
            "a mirror that mirrors again is not served: Envoy mirrors to one cluster".to_owned(),
        );
    }
    let mut live = target.leaves.into_iter().filter(|l| l.weight > 0);
    match (live.next(), live.next()) {
        (Some(leaf), None) => Ok(leaf.cluster),
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

/// A weighted split over `children` (weight, subtree, field), pinned by `sticky` if set: each
/// child of positive weight first on its own under its cookie (every scenario of it), then
/// every combination of the children's scenarios (children of weight 0 only with their fresh
/// pick), in lexicographic order, each mixed by [`mix`].
fn combine(
    children: Vec<(u32, Dist, String)>,
    at: &str,
    sticky: Option<&StickyLevel>,
) -> Result<Dist, String> {
    let live: Vec<usize> = (0..children.len()).filter(|i| children[*i].0 > 0).collect();
    if live.len() > 1
        && let Some((_, _, field)) = live
            .iter()
            .map(|i| &children[*i])
            .find(|(_, d, _)| d.scenarios.iter().any(|s| !s.mirrors.is_empty()))
    {
        return Err(format!(
            "{field}: a mirroring TraefikService is served only where every request of the \
             route reaches it: Envoy mirrors per route, not per weighted branch"
        ));
    }
    if let Some((_, _, field)) = live
        .iter()
        .map(|i| &children[*i])
        .find(|(_, d, _)| d.fresh().total == 0)
    {
        return Err(format!("{field}: every weight under it is 0"));
    }
    let too_many = || {
        format!(
            "{at}: sticky weighted TraefikServices make more than {MAX_STICKY_ROUTES} Envoy \
             routes for each alternative of the rule (one per child a cookie pins, multiplied \
             through nested sticky levels, and one per fresh pick); use fewer children or \
             fewer nested sticky levels"
        )
    };
    let mut scenarios = Vec::new();
    if let Some(level) = sticky {
        for &i in &live {
            // A value an earlier live child has too pins that one.
            if live
                .iter()
                .take_while(|j| **j < i)
                .any(|j| level.values[*j] == level.values[i])
            {
                continue;
            }
            for s in &children[i].1.scenarios {
                if scenarios.len() >= MAX_STICKY_ROUTES {
                    return Err(too_many());
                }
                let mut pinned = s.clone();
                pinned
                    .pins
                    .insert(0, (level.name.clone(), level.accepted[i].clone()));
                scenarios.push(pinned);
            }
        }
    }
    // Children of weight 0 take no part but their clusters stay listed (at weight 0).
    let lists: Vec<&[Scenario]> = children
        .iter()
        .map(|(w, d, _)| {
            if *w > 0 {
                d.scenarios.as_slice()
            } else {
                std::slice::from_ref(d.fresh())
            }
        })
        .collect();
    let mut count: usize = 1;
    for list in &lists {
        count = count
            .checked_mul(list.len())
            .filter(|n| scenarios.len() + n <= MAX_STICKY_ROUTES)
            .ok_or_else(too_many)?;
    }
    let mut index = vec![0usize; lists.len()];
    for _ in 0..count {
        let parts: Vec<(u32, &Scenario, Option<&str>)> = children
            .iter()
            .enumerate()
            .map(|(j, (w, _, _))| {
                (
                    *w,
                    &lists[j][index[j]],
                    sticky.map(|l| l.headers[j].as_str()),
                )
            })
            .collect();
        scenarios.push(mix(&parts, at)?);
        // The next combination, the last child counting fastest.
        for j in (0..index.len()).rev() {
            index[j] += 1;
            if index[j] < lists[j].len() {
                break;
            }
            index[j] = 0;
        }
    }
    Ok(Dist { scenarios })
}

/// One scenario of each child (weight, scenario, the `Set-Cookie` a pick of it sends), mixed:
/// each leaf gets its child's weight times its share of the child, every child brought to the
/// least common multiple of the children's totals; weights whose total Envoy cannot hold are
/// reduced by their greatest common divisor.
fn mix(parts: &[(u32, &Scenario, Option<&str>)], at: &str) -> Result<Scenario, String> {
    let overflow = || {
        format!(
            "{at}: the weights, multiplied through nested TraefikServices, overflow; use \
             smaller weights"
        )
    };
    let mut lcm: u128 = 1;
    for (_, s, _) in parts.iter().filter(|(w, ..)| *w > 0) {
        lcm = lcm
            .checked_mul(s.total / gcd(lcm, s.total))
            .ok_or_else(overflow)?;
    }
    let mut out = Scenario::default();
    for (w, s, set_cookie) in parts {
        out.pins.extend(s.pins.iter().cloned());
        let scale = if *w == 0 {
            0
        } else {
            out.mirrors.extend(s.mirrors.iter().cloned());
            u128::from(*w)
                .checked_mul(lcm / s.total)
                .ok_or_else(overflow)?
        };
        for leaf in &s.leaves {
            let weight = leaf.weight.checked_mul(scale).ok_or_else(overflow)?;
            let cookies: Vec<String> = set_cookie
                .iter()
                .map(|c| (*c).to_owned())
                .chain(leaf.set_cookie.iter().cloned())
                .collect();
            match out
                .leaves
                .iter_mut()
                .find(|l| l.cluster == leaf.cluster && l.set_cookie == cookies)
            {
                Some(held) => held.weight = held.weight.checked_add(weight).ok_or_else(overflow)?,
                None => out.leaves.push(Leaf {
                    cluster: leaf.cluster.clone(),
                    weight,
                    set_cookie: cookies,
                }),
            }
        }
    }
    for l in &out.leaves {
        out.total = out.total.checked_add(l.weight).ok_or_else(overflow)?;
    }
    // Weights as written stay as written; only a total Envoy cannot hold is reduced.
    if out.total > u128::from(u32::MAX) {
        let divisor = out.leaves.iter().fold(0, |g, l| gcd(g, l.weight)).max(1);
        for l in &mut out.leaves {
            l.weight /= divisor;
        }
        out.total /= divisor;
    }
    Ok(out)
}

/// The sticky level of the weighted TraefikService `key` (at `at`) over `services`: its cookie
/// (checked, the name Traefik derives when unset), registered in `walk` so that no other
/// sticky level of the route uses the same name, and a value per child.
fn sticky_level(
    walk: &mut Walk,
    key: &ObjKey,
    sticky: &tr::Sticky,
    services: &[tr::Service],
    at: &str,
) -> Result<StickyLevel, String> {
    let field = format!("{at}: spec.weighted.sticky");
    // Traefik names a TraefikService's handler `namespace-name@kubernetescrd`.
    let service = format!(
        "{}@kubernetescrd",
        normalize(&format!("{}-{}", key.namespace, key.name))
    );
    let cookie =
        service_options::sticky_cookie(sticky, &service).map_err(|e| format!("{field}.{e}"))?;
    let http_only = sticky
        .cookie
        .as_ref()
        .is_some_and(|c| c.http_only == Some(true));
    if cookie.name.len() > MAX_PINNING_COOKIE_NAME {
        return Err(format!(
            "{field}.cookie.name: {} bytes, more than the {MAX_PINNING_COOKIE_NAME} a sticky \
             weighted TraefikService's cookie may have (its routes match the name in the Cookie \
             header with a pattern that grows with it)",
            cookie.name.len()
        ));
    }
    if let Some(other) = walk.cookies.get(&cookie.name) {
        let why = if other == key {
            format!("TraefikService {key} is reached twice by this route")
        } else {
            format!("TraefikService {other} uses the same cookie on this route")
        };
        return Err(format!(
            "{field}.cookie.name: {:?}: {why}; each sticky level needs a cookie of its own",
            cookie.name
        ));
    }
    walk.cookies.insert(cookie.name.clone(), key.clone());
    // A service listed twice has one name in Traefik, so one value: the cookie pins the first
    // listing of positive weight (see `combine`).
    let names: Vec<String> = services
        .iter()
        .map(|s| child_name(s, &key.namespace))
        .collect();
    let values: Vec<String> = names.iter().map(|n| sha256_value(n)).collect();
    // Traefik also takes the name itself and the FNV hashes older versions wrote.
    let accepted = names
        .iter()
        .zip(&values)
        .map(|(name, value)| {
            let fnv = fnv64_hex(name);
            let again = fnv64_hex(&fnv);
            let mut all = vec![value.clone()];
            // A name is a cookie value only in ASCII (Kubernetes names are).
            let plain = name.is_ascii().then(|| name.clone());
            for v in plain.into_iter().chain([fnv, again]) {
                if !all.contains(&v) {
                    all.push(v);
                }
            }
            all
        })
        .collect();
    let headers = values
        .iter()
        .map(|v| service_options::set_cookie_header(&cookie, v, http_only))
        .collect();
    Ok(StickyLevel {
        name: cookie.name,
        values,
        accepted,
        headers,
    })
}

/// The name Traefik's Kubernetes provider gives the child `s` of a weighted TraefikService of
/// namespace `from`: `namespace-name-port` (the port as written), `namespace-name` for a
/// TraefikService, normalized.
fn child_name(s: &tr::Service, from: &str) -> String {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let namespace = s
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(from);
    let port = match (s.kind.as_deref(), &s.port) {
        (Some("TraefikService"), _) | (_, None | Some(IntOrString::Int(0))) => String::new(),
        (_, Some(IntOrString::Int(p))) => p.to_string(),
        (_, Some(IntOrString::String(p))) => p.clone(),
    };
    if port.is_empty() {
        normalize(&format!("{namespace}-{}", s.name))
    } else {
        normalize(&format!("{namespace}-{}-{port}", s.name))
    }
}

/// The cookie value naming a child: Traefik v3's, 16 hex digits of a SHA-256 of its name, so
/// a value says nothing of the names, is the same at every translation, and a cookie Traefik
/// v3 issued keeps pinning after a migration.
fn sha256_value(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Go's 64-bit FNV-1 of `input` in hex without leading zeros (Traefik's older cookie values).
fn fnv64_hex(input: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= u64::from(b);
    }
    format!("{hash:x}")
}

/// Traefik's `provider.Normalize`: runs of anything but letters and digits become one `-`,
/// none at either end.
fn normalize(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "sticky_weighted_tests.rs"]
mod sticky_tests;
