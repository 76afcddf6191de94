//! The builder: selects the instance's IngressRoutes, resolves FQDN ownership, walks delegations
//! from every root and validates each IngressRoute on the way. Pure: reads the snapshot only.
//!
//! Rules (see the IngressRoute reference and contour-behaviour.md):
//! - the first problem found in an IngressRoute is its status; an invalid IngressRoute
//!   contributes nothing, and IngressRoutes only reachable through it stay orphaned;
//! - an IngressRoute reached from several roots (aliases) is invalid if any path finds a problem;
//! - a delegation to an IngressRoute that does not exist (or that another instance selects) is
//!   skipped, as Contour did: the parent stays valid and the path is not served.
//!
//! [`build`] is the whole build from scratch. The same [`Builder`] also builds any subset of the
//! roots, recording what each root read and reached; `incremental` uses that to rebuild only what
//! a change touches, with the same result.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::claim_ages::ClaimAges;
use super::claims::{self, Claimant};
use super::deps::Dep;
use super::model::{
    self, Cluster, ClusterEndpoints, Dag, RouteStatus, Secret, Upstream, Validity, VirtualHost, msg,
};
use super::open_hosts;
use super::quarantine::Quarantine;
use super::select::Selection;
use super::traefik;
use super::walk::WalkError;
use crate::api::IngressRoute;
use crate::snapshot::{ClusterSnapshot, ObjKey};

pub use super::upstream::DEFAULT_HEALTH_CHECK_HOST;

/// The IngressRoutes an instance judges, by key.
pub type Selected = BTreeMap<ObjKey, Arc<IngressRoute>>;

/// Status of each IngressRoute, by key.
pub type Statuses = BTreeMap<ObjKey, (Validity, String)>;

/// Builds what `sel`'s instance serves from `snapshot`, as a process that just started (no
/// claims record) would. Pure and deterministic.
pub fn build(snapshot: &ClusterSnapshot, sel: &Selection) -> Dag {
    // Claims dated as a process that just started dates them (no record).
    let mut ages = ClaimAges::default();
    let none = crate::snapshot::ChangeSet::default();
    ages.observe((snapshot, sel), (snapshot, sel), &none, false);
    build_aged(snapshot, sel, &ages)
}

/// [`build`] with host claims dated by `ages` (see `claim_ages`): what an instance that has seen
/// the claims come and go serves.
pub fn build_aged(snapshot: &ClusterSnapshot, sel: &Selection, ages: &ClaimAges) -> Dag {
    build_quarantined(snapshot, sel, ages, &Quarantine::default())
}

/// [`build_aged`] with the objects in `quarantine` built as invalid (see `quarantine`): what
/// an instance whose Envoys rejected their configuration serves.
pub fn build_quarantined(
    snapshot: &ClusterSnapshot,
    sel: &Selection,
    ages: &ClaimAges,
    quarantine: &Quarantine,
) -> Dag {
    let selected = select_routes(snapshot, sel);
    let mut b = Builder::new(snapshot, sel, &selected, quarantine, false);

    // Roots that may claim their fqdn, grouped by fqdn.
    let mut fqdns: BTreeMap<String, Vec<Claimant>> = BTreeMap::new();
    for (key, route) in &selected {
        match claims::claim(sel, key, route) {
            None => {}
            Some(Err(e)) => b.invalid(key, e),
            Some(Ok(fqdn)) => {
                let claimant = ages.aged(&fqdn, Claimant::new(key, route));
                fqdns.entry(fqdn).or_default().push(claimant);
            }
        }
    }
    let traefik_roots = traefik::select(snapshot, sel);
    // A root refused while parsing still claims the names its rules name (`refused_hosts`).
    for root in &traefik_roots {
        let (hosts, refused) = traefik::refused_hosts::of_route(sel, root);
        let created = &root.obj.metadata.creation_timestamp;
        let claimant = Claimant::traefik(&root.key, created.clone()).refused(refused);
        for host in hosts {
            let aged = ages.aged(&host, claimant.clone());
            fqdns.entry(host).or_default().push(aged);
        }
    }
    let tcp_roots = traefik::tcp::select(snapshot, sel);
    for root in &tcp_roots {
        let (hosts, refused) = traefik::refused_hosts::of_tcp(sel, root);
        let created = &root.obj.metadata.creation_timestamp;
        let claimant = Claimant::traefik_tcp(&root.key, created.clone())
            .refused(refused)
            .late(traefik::refused_hosts::late_tcp(root));
        for host in hosts {
            let aged = ages.aged(&host, claimant.clone());
            fqdns.entry(host).or_default().push(aged);
        }
    }
    // A Traefik IngressRoute or IngressRouteTCP that loses one of its hosts is refused whole.
    let mut traefik_lost: BTreeMap<ObjKey, String> = BTreeMap::new();
    let mut tcp_lost: BTreeMap<ObjKey, String> = BTreeMap::new();
    fqdns.values_mut().for_each(|c| c.sort());
    let wildcards = open_hosts::wildcard_owners(&fqdns);
    let mut owned = Vec::with_capacity(fqdns.len());
    for (fqdn, claimants) in &fqdns {
        let owner = &claimants[0];
        if let Some((wildcard, w)) = open_hosts::covered_by(fqdn, owner, &wildcards) {
            let by = traefik::describe_claimant(w);
            for c in claimants {
                let lost = open_hosts::covered(fqdn, wildcard, &by, !c.traefik);
                if !c.traefik {
                    b.invalid(&c.key, lost);
                    continue;
                }
                let map = if c.tcp {
                    &mut tcp_lost
                } else {
                    &mut traefik_lost
                };
                map.entry(c.key.clone()).or_insert(lost);
            }
            continue;
        }
        owned.push((fqdn.clone(), owner_name(owner)));
        for other in &claimants[1..] {
            if other.traefik {
                let owner = traefik::describe_claimant(owner);
                let lost = if other.tcp {
                    &mut tcp_lost
                } else {
                    &mut traefik_lost
                };
                lost.entry(other.key.clone())
                    .or_insert_with(|| traefik::taken(fqdn, &owner, other.tcp));
            } else if owner.traefik {
                let owner = traefik::describe_claimant(owner);
                b.invalid(&other.key, traefik::taken(fqdn, &owner, false));
            } else {
                b.invalid(&other.key, claims::taken(fqdn, &owner.key));
            }
        }
        if !owner.traefik {
            b.build_owner(&owner.key, fqdn);
        }
    }
    let mut object_statuses = Vec::with_capacity(traefik_roots.len());
    for root in &traefik_roots {
        let verdict = match (&root.parsed, traefik_lost.remove(&root.key)) {
            (Err(e), _) => Err(e.clone()),
            (Ok(_), Some(lost)) => Err(lost),
            (Ok(parsed), None) => b.build_traefik(&root.key, parsed),
        };
        let (validity, description) = match verdict {
            Ok(()) => (Validity::Valid, msg::VALID.to_owned()),
            Err(e) => (Validity::Invalid, e),
        };
        object_statuses.push(traefik::status(&root.key, root.obj, validity, description));
    }
    for root in &tcp_roots {
        let verdict = match (&root.parsed, tcp_lost.remove(&root.key)) {
            (Err(e), _) => Err(e.clone()),
            (Ok(_), Some(lost)) => Err(lost),
            (Ok(parsed), None) => b.build_traefik_tcp(&root.key, parsed),
        };
        object_statuses.push(traefik::tcp::status(&root.key, root.obj, verdict));
    }
    // Middlewares, TraefikServices, TLSOptions, TLSStores and ServersTransports, used or not.
    object_statuses.extend(traefik::verdicts::statuses(snapshot, sel));

    let mut parts = b.into_parts();
    open_hosts::hold_unserved(&mut parts.vhosts, owned);
    let mut statuses = std::mem::take(&mut parts.statuses);
    for (key, status) in snapshot_only_statuses(snapshot, sel) {
        statuses.insert(key, status);
    }
    for key in selected.keys() {
        statuses
            .entry(key.clone())
            .or_insert_with(|| (Validity::Orphaned, msg::ORPHANED.to_owned()));
    }
    parts.retain_used();
    Dag {
        gateway: sel.gateway.to_string(),
        virtual_hosts: parts.vhosts.into_values().collect(),
        clusters: parts.clusters.into_values().collect(),
        endpoints: parts.endpoints.into_values().collect(),
        secrets: parts.secrets.into_values().collect(),
        statuses: statuses.into_iter().map(route_status).collect(),
        object_statuses: object_statuses.into(),
    }
}

/// The IngressRoutes `sel` judges.
pub fn select_routes(snapshot: &ClusterSnapshot, sel: &Selection) -> Selected {
    snapshot
        .ingress_routes
        .iter()
        .filter(|(_, r)| sel.selects(r))
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect()
}

/// Statuses that override every other: IngressRoutes this instance selects that do not decode.
pub(super) fn snapshot_only_statuses<'s>(
    snapshot: &'s ClusterSnapshot,
    sel: &'s Selection,
) -> impl Iterator<Item = (ObjKey, (Validity, String))> + 's {
    snapshot
        .undecodable_routes
        .iter()
        .filter(|(_, u)| sel.selects_meta(&u.metadata))
        .map(|(key, u)| (key.clone(), undecodable_status(&u.error)))
}

pub(super) fn undecodable_status(error: &str) -> (Validity, String) {
    (
        Validity::Invalid,
        format!("this IngressRoute could not be read: {error}"),
    )
}

pub(super) fn route_status(
    (k, (current_status, description)): (ObjKey, (Validity, String)),
) -> RouteStatus {
    RouteStatus {
        namespace: k.namespace.to_string(),
        name: k.name.to_string(),
        current_status,
        description,
    }
}

/// What one build of some roots produced, before anything unused is dropped.
#[derive(Debug, Default)]
pub(super) struct Parts {
    pub statuses: Statuses,
    pub vhosts: BTreeMap<String, VirtualHost>,
    pub clusters: BTreeMap<String, Cluster>,
    pub endpoints: BTreeMap<String, ClusterEndpoints>,
    pub secrets: BTreeMap<String, Secret>,
}

impl Parts {
    /// Only what valid routes use is served: drops clusters, endpoints and secrets that ended
    /// up unused because their IngressRoute was found invalid later.
    pub fn retain_used(&mut self) {
        let used_clusters: BTreeSet<&str> = self
            .vhosts
            .values()
            .flat_map(|v| {
                v.routes
                    .iter()
                    .flat_map(model::Route::cluster_names)
                    .chain(v.tcp_proxy.iter().flat_map(model::TcpProxy::cluster_names))
            })
            .collect();
        self.clusters
            .retain(|name, _| used_clusters.contains(name.as_str()));
        let used_eds: BTreeSet<&str> = self
            .clusters
            .values()
            .filter_map(|c| match &c.upstream {
                Upstream::Eds { service_name } => Some(service_name.as_str()),
                Upstream::Dns { .. } => None,
            })
            .collect();
        self.endpoints
            .retain(|name, _| used_eds.contains(name.as_str()));
        let used_secrets: BTreeSet<&str> = self
            .vhosts
            .values()
            .filter_map(|v| v.tls.as_ref())
            .flat_map(|t| {
                let client_ca = t
                    .options
                    .as_ref()
                    .and_then(|o| o.client_validation.as_ref());
                t.secret
                    .as_deref()
                    .into_iter()
                    .chain(client_ca.map(|c| c.ca_secret.as_str()))
            })
            .chain(self.clusters.values().flat_map(Cluster::secret_names))
            .collect();
        self.secrets
            .retain(|name, _| used_secrets.contains(name.as_str()));
    }
}

/// What building one root read from the snapshot, and the IngressRoutes its walk reached
/// (whose statuses it may have set).
#[derive(Debug, Default)]
pub(super) struct RootTrace {
    pub reads: Vec<Dep>,
    pub reached: Vec<ObjKey>,
}

pub(super) struct Builder<'a> {
    pub(super) snap: &'a ClusterSnapshot,
    pub(super) sel: &'a Selection,
    /// IngressRoutes this instance judges.
    pub(super) selected: &'a Selected,
    /// Objects built as invalid: their configuration was rejected by an Envoy.
    pub(super) quarantine: &'a Quarantine,
    statuses: Statuses,
    pub(super) vhosts: BTreeMap<String, VirtualHost>,
    pub(super) clusters: BTreeMap<String, Cluster>,
    pub(super) endpoints: BTreeMap<String, ClusterEndpoints>,
    pub(super) secrets: BTreeMap<String, Secret>,
    /// Each (parent prefix, child, depth of the parent) already walked, and what came of it.
    pub(super) expanded: BTreeMap<(String, ObjKey, usize), Result<Vec<model::Route>, WalkError>>,
    /// Whether reads and reached IngressRoutes are recorded ([`Self::build_owner_traced`]).
    tracking: bool,
    trace: RefCell<RootTrace>,
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        snap: &'a ClusterSnapshot,
        sel: &'a Selection,
        selected: &'a Selected,
        quarantine: &'a Quarantine,
        tracking: bool,
    ) -> Self {
        Self {
            snap,
            sel,
            selected,
            quarantine,
            statuses: BTreeMap::new(),
            vhosts: BTreeMap::new(),
            clusters: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            secrets: BTreeMap::new(),
            expanded: BTreeMap::new(),
            tracking,
            trace: RefCell::default(),
        }
    }

    /// Records that the root being built read `dep`.
    pub(super) fn read(&self, dep: Dep) {
        if self.tracking {
            self.trace.borrow_mut().reads.push(dep);
        }
    }

    /// Records that the root being built reached the IngressRoute `key` by delegation.
    pub(super) fn visit(&self, key: &ObjKey) {
        if self.tracking {
            self.trace.borrow_mut().reached.push(key.clone());
        }
    }

    /// Records a status; the first problem found wins over anything found later.
    pub(super) fn set_status(
        &mut self,
        key: &ObjKey,
        validity: Validity,
        description: impl Into<String>,
    ) {
        match self.statuses.get(key) {
            Some((Validity::Invalid, _)) => {}
            Some((Validity::Valid, _)) if validity == Validity::Valid => {}
            _ => {
                self.statuses
                    .insert(key.clone(), (validity, description.into()));
            }
        }
    }

    pub(super) fn invalid(&mut self, key: &ObjKey, description: impl Into<String>) {
        self.set_status(key, Validity::Invalid, description);
    }

    /// Builds a root that owns `fqdn`, and returns what it read and reached.
    pub(super) fn build_owner_traced(&mut self, key: &ObjKey, fqdn: &str) -> RootTrace {
        self.trace.replace(RootTrace::default());
        self.read(Dep::Route(key.clone()));
        self.build_owner(key, fqdn);
        self.trace.take()
    }

    /// Runs `f` on this builder and returns what it read (when tracking).
    pub(super) fn traced<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> (T, RootTrace) {
        self.trace.replace(RootTrace::default());
        let out = f(self);
        (out, self.trace.take())
    }

    /// Builds the virtual host of the root `key`, which owns `fqdn`.
    pub(super) fn build_owner(&mut self, key: &ObjKey, fqdn: &str) {
        let selected = self.selected;
        let Some(root) = selected.get(key) else {
            return;
        };
        let root: &'a IngressRoute = root;
        let Some(vh) = root.spec.virtualhost.as_ref() else {
            return;
        };
        if let Some(quarantined) = self.quarantine.contour(key) {
            return self.invalid(key, quarantined);
        }
        let (tls, tls_secret) = match vh.tls.as_ref().map(|t| self.build_vhost_tls(key, t)) {
            None => (None, None),
            Some(Ok((tls, secret))) => (Some(tls), secret),
            Some(Err(e)) => return self.invalid(key, e),
        };

        let tcp_proxy = match &root.spec.tcpproxy {
            None => None,
            Some(_) if tls.is_none() => {
                return self.invalid(key, "tcpproxy: missing tls.passthrough or tls.secretName");
            }
            Some(tcp) => {
                let mut chain = vec![key.clone()];
                match self.walk_tcpproxy(key, tcp, &mut chain) {
                    Ok(p) => Some(p),
                    Err(e) => return self.invalid(key, e.to_string()),
                }
            }
        };
        if tcp_proxy.is_none() && tls.as_ref().is_some_and(|t| t.passthrough) {
            return self.invalid(
                key,
                "Spec.VirtualHost.TLS.Passthrough requires Spec.TCPProxy",
            );
        }

        let mut chain = vec![key.clone()];
        let mut routes = match self.walk_routes(key, root, "/", &mut chain) {
            Ok(routes) => routes,
            Err(e) => return self.invalid(key, e.to_string()),
        };
        self.set_status(key, Validity::Valid, msg::VALID);

        routes.sort_by(|a, b| {
            (b.prefix.len(), &a.prefix, &a.owner).cmp(&(a.prefix.len(), &b.prefix, &b.owner))
        });
        if let Some(secret) = tls_secret {
            self.secrets.insert(secret.name.clone(), secret);
        }
        self.vhosts.insert(
            fqdn.to_owned(),
            VirtualHost {
                fqdn: fqdn.to_owned(),
                owner: key.to_string(),
                tls,
                routes,
                tcp_proxy,
            },
        );
    }

    pub(super) fn into_parts(self) -> Parts {
        Parts {
            statuses: self.statuses,
            vhosts: self.vhosts,
            clusters: self.clusters,
            endpoints: self.endpoints,
            secrets: self.secrets,
        }
    }
}

/// The DAG name of a claimant (see `super::owner`): `namespace/name`, `traefik:namespace/name`
/// or, for an IngressRouteTCP, `traefik-tcp:namespace/name`.
pub(super) fn owner_name(c: &Claimant) -> String {
    if c.tcp {
        traefik::tcp::owner_name(&c.key)
    } else if c.traefik {
        traefik::owner_name(&c.key)
    } else {
        c.key.to_string()
    }
}
