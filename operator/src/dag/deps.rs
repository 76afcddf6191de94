//! What a build reads from the snapshot, as keys a change set can be matched against.

use crate::snapshot::{
    ChangeSet, ClusterSnapshot, Kind, ObjKey, TraefikKind, delegated_secrets, slice_service,
};

/// One thing a root's build read. Absent objects are read too (a delegation to an IngressRoute
/// that does not exist yet depends on it appearing).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dep {
    /// The IngressRoute (whether it exists, whether this instance selects it, its spec).
    Route(ObjKey),
    Service(ObjKey),
    /// The Endpoints object of this Service.
    Endpoints(ObjKey),
    /// The EndpointSlices labelled with this Service.
    Slices(ObjKey),
    Secret(ObjKey),
    /// The TLSCertificateDelegations naming this Secret.
    Delegation(ObjKey),
    /// The Traefik object of this kind and key that is read (of either API group), present or
    /// not: a namespace's `default` TLSOption and TLSStore are read even when absent.
    Traefik(TraefikKind, ObjKey),
}

/// The dependencies a change set touches, judged against the snapshot before (`old`) and after
/// (`new`) it: a slice moved from one Service to another touches both, as does a delegation
/// that names other Secrets than before. Gateways and undecodable routes are not dependencies
/// of a root (the caller handles them).
pub fn touched(changes: &ChangeSet, old: &ClusterSnapshot, new: &ClusterSnapshot) -> Vec<Dep> {
    let mut out = Vec::new();
    for (kind, key) in changes.objects() {
        match kind {
            Kind::IngressRoute => out.push(Dep::Route(key.clone())),
            Kind::Service => out.push(Dep::Service(key.clone())),
            Kind::Endpoints => out.push(Dep::Endpoints(key.clone())),
            Kind::Secret => out.push(Dep::Secret(key.clone())),
            Kind::EndpointSlice => {
                for snap in [old, new] {
                    if let Some(svc) = snap.endpoint_slices.get(key).and_then(|s| slice_service(s))
                    {
                        out.push(Dep::Slices(svc));
                    }
                }
            }
            Kind::Delegation => {
                for snap in [old, new] {
                    if let Some(d) = snap.delegations.get(key) {
                        out.extend(delegated_secrets(d).map(Dep::Delegation));
                    }
                }
            }
            // Either group's object may be the one read (`traefik.io` wins while it exists).
            Kind::Traefik(kind, _) => out.push(Dep::Traefik(kind, key.clone())),
            Kind::Gateway | Kind::UndecodableRoute => {}
        }
    }
    out
}
