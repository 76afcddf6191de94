//! Verdicts on the Traefik objects that routes use (Middleware, TraefikService, TLSOption,
//! TLSStore, ServersTransport), each from its own fields, whether a route uses it or not: a user
//! who writes a broken Middleware learns it at once, not when a route first names it.
//!
//! A verdict reads the object and the instance's selection only (never a route, Secret or
//! Service), so it changes only when the object or the Gateway does: a route coming or going
//! never changes another object's verdict (nor records an Event on it), and the incremental DAG
//! judges again only the objects a change lists. What depends on the route that uses an object
//! (its order among the route's middlewares, a cross-namespace reference from the route, the
//! Secrets and Services the object names, what a TLS backend needs of a ServersTransport) is
//! checked where a route uses it, and named in that route's verdict. A valid object says
//! `valid <Kind>` whether or not a route uses it.

use super::super::model::{ObjectStatus, Validity};
use super::super::select::Selection;
use crate::api::traefik::Decoded;
use crate::snapshot::{ClusterSnapshot, ObjKey, TraefikKind};
use crate::traefik::{middleware as mw, tls as ttls};

/// The kinds judged here, in the order their verdicts are listed (after IngressRoutes and
/// IngressRouteTCPs).
pub(in crate::dag) const KINDS: [TraefikKind; 5] = [
    TraefikKind::Middleware,
    TraefikKind::TraefikService,
    TraefikKind::TlsOption,
    TraefikKind::TlsStore,
    TraefikKind::ServersTransport,
];

/// Where verdicts of `kind` (as `ObjectStatus::kind` names it) sort in `Dag::object_statuses`:
/// IngressRoutes, IngressRouteTCPs, then [`KINDS`] in order.
pub(in crate::dag) fn rank(kind: &str) -> u8 {
    if kind == super::KIND {
        return 0;
    }
    if kind == super::tcp::KIND {
        return 1;
    }
    (KINDS.iter().position(|k| k.as_str() == kind)).map_or(u8::MAX, |i| i as u8 + 2)
}

/// The rank of a Traefik kind (see [`rank`]).
pub(in crate::dag) fn kind_rank(kind: TraefikKind) -> u8 {
    rank(kind.as_str())
}

/// The verdict on the object `key` of `kind` (one of [`KINDS`]) that `sel`'s instance gives;
/// `None` when there is none (no such object, not selected, or not a kind judged here).
pub(in crate::dag) fn status(
    snap: &ClusterSnapshot,
    sel: &Selection,
    kind: TraefikKind,
    key: &ObjKey,
) -> Option<ObjectStatus> {
    match kind {
        TraefikKind::Middleware => {
            let obj = snap.traefik_middlewares.get(key)?;
            judge(sel, kind, key, obj, |m| {
                check_middleware(snap, sel, key, &m.spec, &obj.ignored)
            })
        }
        TraefikKind::TraefikService => {
            let obj = snap.traefik_services.get(key)?;
            judge(sel, kind, key, obj, |s| match obj.ignored.first() {
                Some(field) => Err(format!("{field}: field not supported by Sluice")),
                None => super::services::own_fields(sel, key, &s.spec),
            })
        }
        TraefikKind::TlsOption => {
            let obj = snap.traefik_tls_options.get(key)?;
            judge(sel, kind, key, obj, |o| {
                spec_fields(&obj.ignored)?;
                let model = ttls::build(&o.spec)?;
                super::tls::served_versions(sel.minimum_tls_version, &model)?;
                super::tls::client_auth(&model).map(drop)
            })
        }
        TraefikKind::TlsStore => {
            let obj = snap.traefik_tls_stores.get(key)?;
            judge(sel, kind, key, obj, |s| {
                spec_fields(&obj.ignored)?;
                super::tls_store::own_fields(&s.spec)
            })
        }
        TraefikKind::ServersTransport => {
            let obj = snap.traefik_transports.get(key)?;
            judge(sel, kind, key, obj, |t| match obj.ignored.first() {
                Some(field) => Err(format!("{field}: field not supported by Sluice")),
                None => super::transport::own_fields(sel.allow_insecure_skip_verify, &t.spec),
            })
        }
        TraefikKind::IngressRoute | TraefikKind::IngressRouteTcp => None,
    }
}

/// Every verdict of [`KINDS`] `sel`'s instance gives, in the order of `Dag::object_statuses`.
pub(in crate::dag) fn statuses(snap: &ClusterSnapshot, sel: &Selection) -> Vec<ObjectStatus> {
    let mut out = Vec::new();
    for kind in KINDS {
        let keys: Vec<&ObjKey> = match kind {
            TraefikKind::Middleware => snap.traefik_middlewares.effective().into_keys().collect(),
            TraefikKind::TraefikService => snap.traefik_services.effective().into_keys().collect(),
            TraefikKind::TlsOption => snap.traefik_tls_options.effective().into_keys().collect(),
            TraefikKind::TlsStore => snap.traefik_tls_stores.effective().into_keys().collect(),
            TraefikKind::ServersTransport => {
                snap.traefik_transports.effective().into_keys().collect()
            }
            TraefikKind::IngressRoute | TraefikKind::IngressRouteTcp => Vec::new(),
        };
        out.extend(keys.into_iter().filter_map(|k| status(snap, sel, kind, k)));
    }
    out
}

/// The verdict on `obj` when `sel` judges it: `check` on the decoded object.
fn judge<T>(
    sel: &Selection,
    kind: TraefikKind,
    key: &ObjKey,
    obj: &Decoded<T>,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Option<ObjectStatus> {
    if !sel.selects_helper(&obj.metadata, &key.namespace) {
        return None;
    }
    let name = kind.as_str();
    let verdict = match &obj.decoded {
        Err(e) => Err(format!("this {name} could not be read: {e}")),
        Ok(decoded) => check(decoded),
    };
    let (current_status, description) = match verdict {
        Ok(()) => (Validity::Valid, format!("valid {name}")),
        Err(e) => (Validity::Invalid, e),
    };
    Some(ObjectStatus {
        kind: name.to_owned(),
        api_version: obj.group.api_version().to_owned(),
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
        current_status,
        description,
    })
}

/// Fields under `spec` the types did not know: Sluice would serve the object without them.
fn spec_fields(ignored: &[String]) -> Result<(), String> {
    match ignored.iter().find(|f| f.starts_with("spec.")) {
        Some(field) => Err(format!("{field}: field not supported by Sluice")),
        None => Ok(()),
    }
}

/// A Middleware's own fields (`middleware::build`; what a route would refuse of it alone,
/// `filters::check_alone`, which reads no other object; a forwardAuth's policy, with its
/// `tls.insecureSkipVerify` against the Gateway's `allowInsecureSkipVerify`), and a chain's
/// references to other namespaces against the Gateway's `allowCrossNamespace` (a chain's references are relative to
/// its namespace, as in Traefik).
fn check_middleware(
    snap: &ClusterSnapshot,
    sel: &Selection,
    key: &ObjKey,
    spec: &crate::api::traefik::MiddlewareSpec,
    ignored: &[String],
) -> Result<(), String> {
    let model = mw::build(spec, ignored)?;
    super::filters::check_alone(snap, sel, key, &model)?;
    if let mw::Middleware::ForwardAuth(f) = &model {
        // Its own fields as a route would check them; the auth Service is not read.
        let allow_insecure = sel.allow_insecure_skip_verify;
        let (_, auth) = super::forward_auth::policy(key, String::new(), f, allow_insecure)?;
        // The auth Service's namespace against allowCrossNamespace (the Service is not read).
        let namespace = auth.namespace.as_deref().unwrap_or(&key.namespace);
        sel.cross_namespace(
            &key.namespace,
            "Service",
            &ObjKey::new(namespace, auth.service),
        )
        .map_err(|e| format!("spec.forwardAuth.address.namespace: {e}"))?;
    }
    if let mw::Middleware::Chain(refs) = model {
        for (i, r) in refs.iter().enumerate() {
            let namespace = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(&key.namespace);
            sel.cross_namespace(
                &key.namespace,
                "Middleware",
                &ObjKey::new(namespace, r.name.clone()),
            )
            .map_err(|e| format!("spec.chain.middlewares[{i}]: {e}"))?;
        }
    }
    Ok(())
}
