//! Which changes of an IngressRoute the DAG cannot see: its stored `status`, its
//! `resourceVersion` and its `managedFields` (dropped by the watches anyway). Every status the
//! leader writes comes back as a watch event with exactly those changed; listed as a change of
//! the object, it would rebuild and translate its root again for nothing (at 10,000 roots, the
//! whole status settle over again).
//!
//! The DAG reads everything else of an IngressRoute, metadata included (name, namespace, class
//! annotations, creationTimestamp for host ownership, uid for Events and claim records), so
//! everything else counts: the comparison destructures [`ObjectMeta`] field by field, and a
//! field added to it by a new `k8s-openapi` fails to compile here until it is classified.
//!
//! The one reader of stored statuses before the status round is a Gateway's first build (the
//! restart seed of host claims, `dag::claim_ages`), which reads the whole snapshot: the
//! snapshot always holds the object as last seen, status included; only the change set tells
//! the two kinds of change apart ([`ChangeSet::insert_status`](super::ChangeSet::insert_status)).

use kube::api::ObjectMeta;

use super::UndecodableRoute;
use crate::api::IngressRoute;

/// Whether `new` differs from `old` in nothing the DAG reads (it may differ in status,
/// `resourceVersion` and `managedFields`, or not at all).
pub fn same_for_dag(old: &IngressRoute, new: &IngressRoute) -> bool {
    old.spec == new.spec && same_meta(&old.metadata, &new.metadata)
}

/// [`same_for_dag`] for an IngressRoute that does not decode: its metadata and the decoder's
/// message are what the DAG reads.
pub fn same_undecodable_for_dag(old: &UndecodableRoute, new: &UndecodableRoute) -> bool {
    old.error == new.error && same_meta(&old.metadata, &new.metadata)
}

/// Metadata equal but for `resourceVersion` and `managedFields`.
fn same_meta(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    // Exhaustive on purpose: see the module documentation.
    let ObjectMeta {
        annotations,
        creation_timestamp,
        deletion_grace_period_seconds,
        deletion_timestamp,
        finalizers,
        generate_name,
        generation,
        labels,
        managed_fields: _,
        name,
        namespace,
        owner_references,
        resource_version: _,
        self_link,
        uid,
    } = a;
    *annotations == b.annotations
        && *creation_timestamp == b.creation_timestamp
        && *deletion_grace_period_seconds == b.deletion_grace_period_seconds
        && *deletion_timestamp == b.deletion_timestamp
        && *finalizers == b.finalizers
        && *generate_name == b.generate_name
        && *generation == b.generation
        && *labels == b.labels
        && *name == b.name
        && *namespace == b.namespace
        && *owner_references == b.owner_references
        && *self_link == b.self_link
        && *uid == b.uid
}

#[cfg(test)]
#[path = "status_only_tests.rs"]
mod tests;
