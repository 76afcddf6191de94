//! The delegation walk: from a root, each IngressRoute's own routes are checked, then its
//! delegations followed, once per (prefix, child, depth) and never deeper than
//! [`MAX_DELEGATION_DEPTH`]. Records what it reads and which IngressRoutes it reaches, for the
//! incremental builder's dependency index.

use std::collections::BTreeSet;

use super::build::Builder;
use super::checks::{self, MAX_DELEGATION_DEPTH};
use super::deps::Dep;
use super::model::{self, Validity, msg};
use super::upstream::{check_port_and_weight, check_weight_sum, service_port, weigh};
use crate::api::IngressRoute;
use crate::api::ingressroute as ir;
use crate::snapshot::ObjKey;

impl<'a> Builder<'a> {
    /// Validates `route`'s own routes, then follows its delegations. Returns the routes it
    /// contributes (its own and those of valid descendants), or its status description.
    pub(super) fn walk_routes(
        &mut self,
        key: &ObjKey,
        route: &'a IngressRoute,
        parent_prefix: &str,
        chain: &mut Vec<ObjKey>,
    ) -> Result<Vec<model::Route>, WalkError> {
        if let Some(quarantined) = self.quarantine.contour(key) {
            return Err(WalkError::Own(quarantined.to_owned()));
        }
        // Pass 1: everything about this IngressRoute itself, in route order.
        let mut own = Vec::new();
        let mut delegations = Vec::new();
        for r in &route.spec.routes {
            let prefix = r.match_.as_str();
            if !r.services.is_empty() && r.delegate.is_some() {
                return Err(WalkError::Own(format!(
                    "route {prefix:?}: cannot specify services and delegate in the same route"
                )));
            }
            if !prefix.starts_with('/') {
                return Err(WalkError::Own(format!(
                    "route {prefix:?}: match must start with \"/\""
                )));
            }
            checks::path(prefix)
                .map_err(|e| WalkError::Own(format!("route {prefix:?}: match {e}")))?;
            if let Some(rewrite) = &r.prefix_rewrite {
                checks::path(rewrite)
                    .map_err(|e| WalkError::Own(format!("route {prefix:?}: prefixRewrite {e}")))?;
            }
            if !prefix.starts_with(parent_prefix) {
                return Err(WalkError::Path(format!(
                    "the path prefix {prefix:?} does not match the parent's path prefix \
                     {parent_prefix:?}"
                )));
            }
            if let Some(d) = &r.delegate {
                let target = delegate_key(key, d);
                if let Some(cycle) = cycle_description(chain, &target) {
                    return Err(WalkError::Path(format!(
                        "route creates a delegation cycle: {cycle}"
                    )));
                }
                self.read(Dep::Route(target.clone()));
                match self.selected.get(&target) {
                    Some(t) if t.spec.virtualhost.is_some() => {
                        return Err(WalkError::Own(msg::ROOT_TO_ROOT.into()));
                    }
                    Some(t) => delegations.push((prefix.to_owned(), target, &**t)),
                    None => {} // Not (yet) present: the path is not served.
                }
                continue;
            }
            if r.enable_websockets && r.services.len() > 1 {
                return Err(WalkError::Own(format!(
                    "route {prefix:?}: cannot specify multiple services and enable websockets"
                )));
            }
            own.push(self.build_route(key, route, r).map_err(WalkError::Own)?);
        }
        if !delegations.is_empty() && chain.len() >= MAX_DELEGATION_DEPTH {
            return Err(WalkError::Path(too_deep(chain)));
        }

        // Pass 2: descend. A child's problem is the child's status, not ours. Each (prefix,
        // child, depth) is expanded once per build, and recursion stops at the depth limit, so the
        // work is bounded by the routes produced whatever the delegation graph looks like. The
        // depth is part of the key: a child reached deep down someone else's chain is judged
        // for that path only, never for its own team's shallower one.
        for (prefix, target, child) in delegations {
            let target_ref = self.selected.get_key_value(&target).map(|(k, _)| k);
            let Some(target_key) = target_ref else {
                continue;
            };
            self.visit(target_key);
            let memo_key = (prefix, target_key.clone(), chain.len());
            let result = match self.expanded.get(&memo_key) {
                Some(done) => done.clone(),
                None => {
                    chain.push(target_key.clone());
                    let result = self.walk_routes(target_key, child, &memo_key.0, chain);
                    chain.pop();
                    self.expanded.insert(memo_key, result.clone());
                    result
                }
            };
            match result {
                Ok(routes) => {
                    self.set_status(target_key, Validity::Valid, msg::VALID);
                    own.extend(routes);
                }
                Err(WalkError::Own(e)) => self.invalid(target_key, e),
                // A problem of this path alone (prefix, cycle, depth): the child's own team
                // hears of it only from their own IngressRoutes; another team's delegation
                // just goes unserved, so nobody can make a team's IngressRoute invalid by
                // delegating to it.
                Err(WalkError::Path(e)) if target_key.namespace == key.namespace => {
                    self.invalid(target_key, e);
                }
                Err(WalkError::Path(_)) => {}
            }
        }
        // The same child reached under several prefixes contributes its routes once.
        let mut seen = BTreeSet::new();
        own.retain(|r| seen.insert((r.prefix.clone(), r.owner.clone())));
        Ok(own)
    }

    /// Validates a root's tcpproxy, following its delegation. Returns the proxy or the root's
    /// (or delegating IngressRoute's) status description.
    pub(super) fn walk_tcpproxy(
        &mut self,
        key: &ObjKey,
        tcp: &ir::TcpProxy,
        chain: &mut Vec<ObjKey>,
    ) -> Result<model::TcpProxy, WalkError> {
        if let Some(quarantined) = self.quarantine.contour(key) {
            return Err(WalkError::Own(quarantined.to_owned()));
        }
        if !tcp.services.is_empty() && tcp.delegate.is_some() {
            return Err(WalkError::Own(
                "tcpproxy: cannot specify services and delegate in the same tcpproxy".into(),
            ));
        }
        if tcp.services.is_empty() && tcp.delegate.is_none() {
            return Err(WalkError::Own(
                "tcpproxy: must specify services or delegate".into(),
            ));
        }
        if let Some(d) = &tcp.delegate {
            let target = delegate_key(key, d);
            if let Some(cycle) = cycle_description(chain, &target) {
                return Err(WalkError::Path(format!(
                    "tcpproxy creates a delegation cycle: {cycle}"
                )));
            }
            self.read(Dep::Route(target.clone()));
            let Some((target_key, child)) = self.selected.get_key_value(&target) else {
                return Err(WalkError::Own(format!(
                    "tcpproxy: delegate {target}: not found"
                )));
            };
            let child: &'a IngressRoute = child;
            if child.spec.virtualhost.is_some() {
                return Err(WalkError::Own(msg::ROOT_TO_ROOT.into()));
            }
            let Some(child_tcp) = &child.spec.tcpproxy else {
                return Err(WalkError::Own(format!(
                    "tcpproxy: delegate {target}: it has no tcpproxy"
                )));
            };
            if chain.len() >= MAX_DELEGATION_DEPTH {
                return Err(WalkError::Path(too_deep(chain)));
            }
            self.visit(target_key);
            chain.push(target_key.clone());
            let result = self.walk_tcpproxy(target_key, child_tcp, chain);
            chain.pop();
            let invalid_delegate =
                || WalkError::Own(format!("tcpproxy: delegate {target} is invalid"));
            return match result {
                Ok(p) => {
                    self.set_status(target_key, Validity::Valid, msg::VALID);
                    Ok(p)
                }
                Err(WalkError::Own(e)) => {
                    self.invalid(target_key, e);
                    Err(invalid_delegate())
                }
                // As for routes: another team's delegation does not make it invalid.
                Err(WalkError::Path(e)) if target_key.namespace == key.namespace => {
                    self.invalid(target_key, e);
                    Err(invalid_delegate())
                }
                Err(WalkError::Path(_)) => Err(invalid_delegate()),
            };
        }
        let owner = self.selected.get(key).map(|r| &**r);
        let mut built = Vec::with_capacity(tcp.services.len());
        for s in &tcp.services {
            let context = format!("tcpproxy: service {:?}", s.name);
            let port = check_port_and_weight(&context, s).map_err(WalkError::Own)?;
            let svc_key = ObjKey::new(&key.namespace, s.name.as_str());
            self.read(Dep::Service(svc_key.clone()));
            let found = self
                .snap
                .services
                .get(&svc_key)
                .and_then(|svc| service_port(svc, port));
            if found.is_none() {
                return Err(WalkError::Own(format!(
                    "tcpproxy: service {svc_key}/{port}: not found"
                )));
            }
            let Some(owner) = owner else { continue };
            let cluster = self
                .build_cluster(key, owner, s, port, &context)
                .map_err(WalkError::Own)?;
            // Contour treated a zero weight in a tcpproxy as one.
            built.push((cluster, Some(s.weight.unwrap_or(1).max(1))));
        }
        let clusters = weigh(built.iter().map(|(c, w)| (c.name.clone(), *w)), true);
        check_weight_sum("tcpproxy", &clusters).map_err(WalkError::Own)?;
        for (c, _) in built {
            self.clusters.insert(c.name.clone(), c);
        }
        Ok(model::TcpProxy {
            owner: key.to_string(),
            clusters,
            branches: Vec::new(),
            plain: false,
            sni_regexes: Vec::new(),
        })
    }
}

/// The IngressRoute a delegation names: its namespace defaults to the delegating one's.
pub(super) fn delegate_key(from: &ObjKey, d: &ir::Delegate) -> ObjKey {
    match d.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(namespace) => ObjKey::new(namespace, d.name.as_str()),
        None => ObjKey::new(from.namespace.clone(), d.name.as_str()),
    }
}

/// The walk from the root, `r -> a -> b -> a`, when following an edge to `target` closes a cycle.
pub(super) fn cycle_description(chain: &[ObjKey], target: &ObjKey) -> Option<String> {
    chain.contains(target).then(|| {
        let names: Vec<String> = chain
            .iter()
            .chain([target])
            .map(ToString::to_string)
            .collect();
        names.join(" -> ")
    })
}

/// Why an IngressRoute at the depth limit may not delegate further: `root -> … -> it`.
pub(super) fn too_deep(chain: &[ObjKey]) -> String {
    let path = match (chain.first(), chain.last()) {
        (Some(root), Some(last)) => format!("{root} -> … -> {last}"),
        _ => String::new(),
    };
    format!(
        "delegation chain is deeper than {MAX_DELEGATION_DEPTH} IngressRoutes ({path}): it may \
         not delegate further"
    )
}

/// Why a walk failed: a problem of the IngressRoute itself, or only of the path that reached
/// it (a prefix that does not fit the parent's, a cycle, the depth limit).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum WalkError {
    Own(String),
    Path(String),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Own(e) | Self::Path(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn cycles_name_the_chain() {
        let a = ObjKey::new("ns", "a");
        let b = ObjKey::new("ns", "b");
        assert_eq!(
            cycle_description(&[a.clone(), b.clone()], &a).as_deref(),
            Some("ns/a -> ns/b -> ns/a")
        );
        assert_eq!(cycle_description(std::slice::from_ref(&a), &b), None);
        assert_eq!(
            cycle_description(std::slice::from_ref(&a), &a).as_deref(),
            Some("ns/a -> ns/a")
        );
    }
}
