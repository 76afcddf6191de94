//! Secrets of Traefik objects reached from other namespaces. A Gateway that sets
//! `allowCrossNamespace` lets its Traefik routes use Middlewares and TraefikServices of any
//! namespace, and those read Secrets of their *own* namespace: a basicAuth users list, a
//! ServersTransport's CAs and client certificate (named by a service of a TraefikService of that
//! namespace), an https forwardAuth's CA and client certificate. Secrets the DAG refuses to read
//! (an http forwardAuth's TLS Secrets) widen nothing. Such a namespace need not be a root
//! namespace, so the Secret scope (see
//! [`SecretScope`]) also holds, while at least one Gateway sets `allowCrossNamespace`, the
//! namespaces of the Middlewares and ServersTransports that name a Secret. Only those: never the
//! whole cluster, so a tenant widens the watch only to a namespace where it can write Traefik
//! objects, and a Secret-less Middleware widens nothing. RBAC is unchanged (the operator's
//! Secret permissions already cover every namespace it watches).
//!
//! Pure; [`WatchedSnapshot`](super::watched::WatchedSnapshot) keeps the same namespaces per
//! event, and [`reached_scope`] is its from-scratch reference.

use std::collections::BTreeSet;

use super::kube::SecretScope;
use crate::api::Gateway;
use crate::api::traefik::middleware::MiddlewareSpec;
use crate::api::traefik::objects::ServersTransportSpec;
use crate::snapshot::{ClusterSnapshot, Kind, ObjKey, TraefikKind};

/// Whether a Gateway lets Traefik routes reach other namespaces.
pub fn allows_cross_namespace(gateway: &Gateway) -> bool {
    gateway.spec.allow_cross_namespace
}

/// Whether a Middleware reads a Secret of its namespace: basicAuth's users, an https
/// forwardAuth's CA and client certificate (the DAG refuses them with an http address).
pub fn middleware_names_secret(spec: &MiddlewareSpec) -> bool {
    let named = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.trim().is_empty());
    spec.basic_auth
        .as_ref()
        .is_some_and(|b| !b.secret.is_empty())
        || spec.forward_auth.as_ref().is_some_and(|f| {
            f.address.starts_with("https://")
                && f.tls
                    .as_ref()
                    .is_some_and(|t| named(&t.ca_secret) || named(&t.cert_secret))
        })
}

/// Whether a ServersTransport reads a Secret of its namespace (its CAs, its client
/// `certificatesSecrets`).
pub fn transport_names_secret(spec: &ServersTransportSpec) -> bool {
    spec.root_cas.iter().any(|ca| ca.secret.is_some())
        || !spec.root_cas_secrets.is_empty()
        || !spec.certificates_secrets.is_empty()
}

/// Whether the object of `kind` that `snap` holds under `key` reads a Secret of its namespace
/// and may be reached from another namespace (a Middleware or a ServersTransport).
pub fn names_secret(snap: &ClusterSnapshot, kind: Kind, key: &ObjKey) -> bool {
    match kind {
        Kind::Traefik(TraefikKind::Middleware, group) => snap
            .traefik_middlewares
            .group(group)
            .get(key)
            .and_then(|m| m.decoded.as_ref().ok())
            .is_some_and(|m| middleware_names_secret(&m.spec)),
        Kind::Traefik(TraefikKind::ServersTransport, group) => snap
            .traefik_transports
            .group(group)
            .get(key)
            .and_then(|t| t.decoded.as_ref().ok())
            .is_some_and(|t| transport_names_secret(&t.spec)),
        _ => false,
    }
}

/// `scope` with the namespaces Traefik objects reached across namespaces read Secrets in, when a
/// Gateway of `snap` allows it. O(objects): the reference, not the per-event path.
pub fn reached_scope(scope: SecretScope, snap: &ClusterSnapshot) -> SecretScope {
    let SecretScope::Namespaces(mut namespaces) = scope else {
        return scope;
    };
    if !snap.gateways.values().any(|g| allows_cross_namespace(g)) {
        return SecretScope::Namespaces(namespaces);
    }
    let mut reached = BTreeSet::new();
    for group in super::traefik::GROUPS {
        let mws = snap.traefik_middlewares.group(group).keys();
        let transports = snap.traefik_transports.group(group).keys();
        let kinds = mws
            .map(|k| (Kind::Traefik(TraefikKind::Middleware, group), k))
            .chain(transports.map(|k| (Kind::Traefik(TraefikKind::ServersTransport, group), k)));
        for (kind, key) in kinds {
            if names_secret(snap, kind, key) {
                reached.insert(key.namespace.to_string());
            }
        }
    }
    namespaces.extend(reached);
    SecretScope::Namespaces(namespaces)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::gateway::GatewaySpec;
    use crate::snapshot::Object;
    use serde_json::json;

    fn gateway(cross: bool) -> Gateway {
        let mut gw = Gateway::new(
            "edge",
            GatewaySpec {
                root_namespaces: vec!["team-a".into()],
                allow_cross_namespace: cross,
                ..GatewaySpec::default()
            },
        );
        gw.metadata.namespace = Some("team-a".into());
        gw
    }

    fn snapshot(cross: bool) -> ClusterSnapshot {
        let mut snap = ClusterSnapshot::default();
        snap.apply(Object::Gateway(gateway(cross)));
        let objects = [
            json!({"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
                   "metadata": {"namespace": "auth", "name": "users"},
                   "spec": {"basicAuth": {"secret": "users"}}}),
            json!({"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
                   "metadata": {"namespace": "plain", "name": "prefix"},
                   "spec": {"addPrefix": {"prefix": "/v1"}}}),
            json!({"apiVersion": "traefik.containo.us/v1alpha1", "kind": "ServersTransport",
                   "metadata": {"namespace": "upstream", "name": "tr"},
                   "spec": {"serverName": "x", "rootCAs": [{"secret": "ca"}]}}),
            json!({"apiVersion": "traefik.io/v1alpha1", "kind": "ServersTransport",
                   "metadata": {"namespace": "nosecret", "name": "tr"},
                   "spec": {"serverName": "x"}}),
            // Secrets the DAG refuses to read widen nothing.
            json!({"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
                   "metadata": {"namespace": "forward", "name": "auth"},
                   "spec": {"forwardAuth": {"address": "http://a",
                                            "tls": {"caSecret": "ca", "certSecret": "c"}}}}),
            // An https forwardAuth's are read.
            json!({"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
                   "metadata": {"namespace": "forward-tls", "name": "auth"},
                   "spec": {"forwardAuth": {"address": "https://a",
                                            "tls": {"caSecret": "ca"}}}}),
            // A client certificate is read (as the CAs are).
            json!({"apiVersion": "traefik.io/v1alpha1", "kind": "ServersTransport",
                   "metadata": {"namespace": "client", "name": "tr"},
                   "spec": {"serverName": "x", "certificatesSecrets": ["c"]}}),
        ];
        for v in objects {
            let obj = if v["kind"] == "Middleware" {
                Object::TraefikMiddleware(crate::api::traefik::decode(v).unwrap())
            } else {
                Object::TraefikTransport(crate::api::traefik::decode(v).unwrap())
            };
            snap.apply(obj);
        }
        snap
    }

    fn set(names: &[&str]) -> SecretScope {
        SecretScope::Namespaces(names.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn objects_reached_across_namespaces_add_their_namespace_only_when_a_gateway_allows_it() {
        let roots = set(&["team-a"]);
        assert_eq!(
            reached_scope(roots.clone(), &snapshot(true)),
            set(&["auth", "client", "forward-tls", "team-a", "upstream"])
        );
        assert_eq!(reached_scope(roots.clone(), &snapshot(false)), roots);
        assert_eq!(
            reached_scope(SecretScope::All, &snapshot(true)),
            SecretScope::All
        );
    }
}
