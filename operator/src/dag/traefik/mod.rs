//! Traefik IngressRoutes as DAG roots: which ones an instance judges, the hosts each claims, and
//! (in `build`) the virtual hosts it serves. A Traefik IngressRoute is always a root: the
//! Gateway's class and root namespaces apply to it as to a Contour root, and it claims every
//! host its rules name, against Contour roots and other Traefik IngressRoutes alike (the oldest
//! claimant keeps a host).
//!
//! What this slice serves: HTTP rules on the `web` (plain HTTP) or `websecure` (HTTPS, with
//! `tls.secretName`) entry points, their hosts exact names, wildcards or (plain HTTP only) the
//! catch-all (see `hosts`); Kubernetes Services
//! of the IngressRoute's namespace by port number or name, with weights; the `stripPrefix`,
//! `stripPrefixRegex`, `addPrefix`, `replacePath`, `replacePathRegex`, `redirectScheme` and
//! `headers` middlewares (`allowedHosts` in `allowed_hosts`), `compress` (in `compress`), and
//! (in `policy`) those served by HTTP filters: `basicAuth`, `ipAllowList`, `rateLimit`,
//! `buffering`, CORS, and `retry`; the services' `passHostHeader`, `sticky` and `healthCheck`
//! (in `service_options`); TraefikServices, `weighted` (with `sticky`) and `mirroring` (in
//! `services`, the `Cookie` pattern of sticky routes in `cookie_match`).
//! Everything else is refused with a message naming the field or the kind, never ignored.

mod allowed_hosts;
mod build;
mod client_ip;
mod compress;
mod cookie_match;
mod filters;
mod forward_auth;
mod forward_auth_more;
pub(super) mod hosts;
mod policy;
mod redirect_regex;
pub(super) mod refused_hosts;
mod service_options;
mod services;
pub(super) mod tcp;
mod tcp_match;
mod tcp_open;
mod tcp_plain;
mod tls;
pub(super) mod tls_store;
mod transport;
mod upstream;
pub(in crate::dag) mod verdicts;

use std::collections::BTreeSet;
use std::sync::Arc;

use super::model::{ObjectStatus, Validity, msg};
use super::select::Selection;
use crate::api::gateway::TraefikEntryPoint;
use crate::api::traefik::routes as tr;
use crate::snapshot::{ClusterSnapshot, ObjKey, TraefikRoute};
use crate::traefik::matcher::Syntax;
use crate::traefik::matches::{HttpRule, http_rule};

/// The kind reported for a Traefik IngressRoute.
pub const KIND: &str = "IngressRoute";

/// Owners of DAG entries built from a Traefik IngressRoute are named `traefik:namespace/name`,
/// never to be taken for a Contour IngressRoute's `namespace/name`.
pub fn owner_name(key: &ObjKey) -> String {
    format!("traefik:{key}")
}

/// A selected Traefik IngressRoute, checked as far as it can be without other objects.
#[derive(Debug)]
pub(super) struct Root<'s> {
    pub key: ObjKey,
    pub obj: &'s Arc<TraefikRoute>,
    /// What it asks for, or its status description.
    pub parsed: Result<Parsed<'s>, String>,
}

#[derive(Debug)]
pub(super) struct Parsed<'s> {
    /// Every host its rules name, lower case: exact names, `*.parent` wildcards and `*` (the
    /// catch-all, for alternatives without `Host()`).
    pub hosts: BTreeSet<String>,
    /// Its certificate and TLSOption when its routes are served over HTTPS.
    pub tls: Option<tls::TlsRequest>,
    pub routes: Vec<ParsedRoute<'s>>,
}

#[derive(Debug)]
pub(super) struct ParsedRoute<'s> {
    /// Index in `spec.routes`.
    pub index: usize,
    pub route: &'s tr::Route,
    pub rule: HttpRule,
}

/// Whether `sel`'s instance judges this object: `spec.ingressClassName` when set (it wins over
/// the annotation, as in Traefik 3.7+), else the class annotations as for Contour.
pub(super) fn selects(sel: &Selection, obj: &TraefikRoute) -> bool {
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

/// The Traefik IngressRoutes `sel` judges, in key order.
pub(super) fn select<'s>(snapshot: &'s ClusterSnapshot, sel: &Selection) -> Vec<Root<'s>> {
    snapshot
        .traefik_routes
        .effective()
        .into_iter()
        .filter(|(_, obj)| selects(sel, obj))
        .map(|(key, obj)| Root {
            key: key.clone(),
            obj,
            parsed: parse(sel, key, obj),
        })
        .collect()
}

/// The Traefik IngressRoute `key` (the one read, of either group), when `sel` judges it.
pub(super) fn root<'s>(
    snapshot: &'s ClusterSnapshot,
    sel: &Selection,
    key: &ObjKey,
) -> Option<Root<'s>> {
    let obj = snapshot
        .traefik_routes
        .get(key)
        .filter(|o| selects(sel, o))?;
    Some(Root {
        key: key.clone(),
        obj,
        parsed: parse(sel, key, obj),
    })
}

/// The status entry of a Traefik IngressRoute.
pub(super) fn status(
    key: &ObjKey,
    obj: &TraefikRoute,
    validity: Validity,
    description: String,
) -> ObjectStatus {
    ObjectStatus {
        kind: KIND.to_owned(),
        api_version: obj.group.api_version().to_owned(),
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
        current_status: validity,
        description,
    }
}

/// The status of a claimant that lost `fqdn` to `owner` (described by [`describe_owner`]);
/// `tcp`: the loser is an IngressRouteTCP (its catch-all is `HostSNI(`*`)`).
pub(super) fn taken(fqdn: &str, owner: &str, tcp: bool) -> String {
    if fqdn == hosts::CATCH_ALL {
        let how = if tcp {
            "HostSNI(`*`)"
        } else {
            "rules without Host()"
        };
        return format!("the catch-all host \"*\" ({how}) is already used by the older {owner}");
    }
    format!("host {fqdn:?} is already used by the older {owner}")
}

/// How a claimant that owns a host is named in a loser's status.
/// A refused owner (see `refused_hosts`) is said to be invalid and to serve nothing.
pub(super) fn describe_claimant(c: &super::claims::Claimant) -> String {
    let owner = if c.tcp {
        tcp::describe_owner(&c.key)
    } else {
        describe_owner(&c.key, c.traefik)
    };
    if c.refused {
        return format!(
            "{owner}, which is invalid (the name is held unserved until it is fixed or deleted)"
        );
    }
    owner
}

/// How an owner is named in a loser's status.
pub(super) fn describe_owner(key: &ObjKey, traefik: bool) -> String {
    if traefik {
        format!("Traefik IngressRoute {key}")
    } else {
        format!("IngressRoute {key}")
    }
}

fn parse<'s>(sel: &Selection, key: &ObjKey, obj: &'s TraefikRoute) -> Result<Parsed<'s>, String> {
    let route = obj
        .decoded
        .as_ref()
        .map_err(|e| format!("this IngressRoute could not be read: {e}"))?;
    if let Some(field) = obj.ignored.iter().find(|f| f.starts_with("spec.")) {
        return Err(format!("{field}: field not supported by Sluice"));
    }
    if !sel.root_allowed(&key.namespace) {
        return Err(msg::ROOT_NAMESPACE.to_owned());
    }
    let spec = &route.spec;
    let (web, websecure) = entry_points(sel, &spec.entry_points)?;
    let tls = match &spec.tls {
        None if !web => {
            return Err(
                "spec.entryPoints: `websecure` without spec.tls: Sluice serves routes \
                        without TLS on `web` only; set spec.tls.secretName"
                    .into(),
            );
        }
        None => None,
        Some(_) if !websecure => {
            return Err("spec.tls: routes with TLS are served on `websecure`, but \
                        spec.entryPoints names only `web`"
                .into());
        }
        Some(t) => Some(tls::request(
            &key.namespace,
            &tls::TlsFields {
                secret_name: t.secret_name.as_deref(),
                options: t.options.as_ref(),
                store: t.store.as_ref(),
                cert_resolver: t.cert_resolver.as_deref(),
            },
        )?),
    };
    let mut hosts = BTreeSet::new();
    let mut routes: Vec<ParsedRoute<'s>> = Vec::with_capacity(spec.routes.len());
    for (index, r) in spec.routes.iter().enumerate() {
        let at = format!("spec.routes[{index}]");
        match r.kind.as_deref() {
            None | Some("" | "Rule") => {}
            Some(other) => return Err(format!("{at}.kind: {other:?}: only \"Rule\" is supported")),
        }
        if r.match_.trim().is_empty() {
            return Err(format!("{at}.match: must not be empty"));
        }
        let (syntax, _) = Syntax::select(r.syntax.as_deref(), Syntax::V3);
        let rule =
            http_rule(&r.match_, syntax, r.priority).map_err(|e| format!("{at}.match: {e}"))?;
        for m in &rule.matches {
            let host =
                hosts::claim(&m.host, tls.is_some()).map_err(|e| format!("{at}.match: {e}"))?;
            hosts.insert(host);
            client_ip::check(m).map_err(|e| format!("{at}.match: {e}"))?;
        }
        // Routes with the same rule are one router in Traefik; the later one wins.
        routes.retain(|p| p.route.match_ != r.match_);
        routes.push(ParsedRoute {
            index,
            route: r,
            rule,
        });
    }
    Ok(Parsed { hosts, tls, routes })
}

/// Whether the routes are on `web` and on `websecure`; empty means both, as Traefik's default
/// entry points are with its Helm chart. Other names count as the Gateway maps them.
fn entry_points(sel: &Selection, names: &[String]) -> Result<(bool, bool), String> {
    if names.is_empty() {
        return Ok((true, true));
    }
    let (mut web, mut websecure) = (false, false);
    for (i, name) in names.iter().enumerate() {
        match sel.entry_point(name) {
            Some(TraefikEntryPoint::Web) => web = true,
            Some(TraefikEntryPoint::WebSecure) => websecure = true,
            None => {
                return Err(format!(
                    "spec.entryPoints[{i}]: entry point {name:?} is not served: Sluice serves \
                     \"web\" (the Gateway's HTTP listener), \"websecure\" (its HTTPS listener) \
                     and the names the Gateway's spec.traefikEntryPoints maps to them"
                ));
            }
        }
    }
    Ok((web, websecure))
}

#[cfg(test)]
mod hosts_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod redirect_regex_tests;
#[cfg(test)]
mod service_options_tests;
#[cfg(test)]
mod tcp_open_tests;
#[cfg(test)]
mod tcp_plain_tests;
#[cfg(test)]
mod tcp_regex_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tcp_tests;
#[cfg(test)]
mod transport_tests;
#[cfg(test)]
mod verdicts_tests;
