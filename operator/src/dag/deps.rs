//! What a build reads from the snapshot, as keys a change set can be matched against.

use crate::snapshot::{
    ChangeSet, ClusterSnapshot, Kind, ObjKey, TraefikKind, delegated_secrets, slice_service,
};

/// One thing a root's build read. Absent objects are read too (a delegation to an IngressRoute
/// that does not exist yet depends on it appearing).
///
/// A key stands for everything named after one object that a build reads together: a Service
/// with its Endpoints and EndpointSlices, a Secret with the delegations naming it. A change to
/// any of them touches every group that read any (a superset of what it changed, so a rebuild
/// gives what it gave before); the dependency index then holds one entry per Service and Secret
/// read, not three and two (at 10,000 roots, tens of thousands of hash-table entries fewer).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dep {
    /// The IngressRoute (whether it exists, whether this instance selects it, its spec).
    Route(ObjKey),
    /// The Service, its Endpoints object and the EndpointSlices labelled with it.
    Service(ObjKey),
    /// The Secret and the TLSCertificateDelegations naming it.
    Secret(ObjKey),
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
            Kind::Endpoints => out.push(Dep::Service(key.clone())),
            Kind::Secret => out.push(Dep::Secret(key.clone())),
            Kind::EndpointSlice => {
                for snap in [old, new] {
                    if let Some(svc) = snap.endpoint_slices.get(key).and_then(|s| slice_service(s))
                    {
                        out.push(Dep::Service(svc));
                    }
                }
            }
            Kind::Delegation => {
                for snap in [old, new] {
                    if let Some(d) = snap.delegations.get(key) {
                        out.extend(delegated_secrets(d).map(Dep::Secret));
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
