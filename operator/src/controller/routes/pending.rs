//! Statuses this replica wrote whose own watch event has not come back yet. A status round
//! decides on a snapshot; the next round starts as soon as it ends, on a snapshot that may not
//! yet hold the last writes' echoes, and would write those statuses a second time (hundreds at
//! 10,000 new routes). A write is taken as still on its way back while the object in the
//! snapshot is the very version (`resourceVersion`) the write was decided on: any event since,
//! its own echo or someone else's change, moves the version, and the object is compared with
//! its verdict again as usual. Pure.

use std::collections::BTreeMap;

use crate::api::ingressroute::IngressRouteStatus;
use crate::snapshot::{ClusterSnapshot, ObjKey};

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct PendingWrites(BTreeMap<ObjKey, (Option<String>, IngressRouteStatus)>);

/// The stored version of an IngressRoute (decodable or not) in `snapshot`.
fn version<'a>(snapshot: &'a ClusterSnapshot, key: &ObjKey) -> Option<&'a Option<String>> {
    match snapshot.ingress_routes.get(key) {
        Some(ir) => Some(&ir.metadata.resource_version),
        None => snapshot
            .undecodable_routes
            .get(key)
            .map(|u| &u.metadata.resource_version),
    }
}

impl PendingWrites {
    /// Forgets the writes `snapshot` has seen an event of since (or whose object is gone).
    pub fn settle(&mut self, snapshot: &ClusterSnapshot) {
        self.0
            .retain(|key, (decided_on, _)| version(snapshot, key) == Some(&*decided_on));
    }

    /// Whether writing `want` to `key` would repeat a write still on its way back.
    pub fn in_flight(&self, key: &ObjKey, want: &IngressRouteStatus) -> bool {
        self.0.get(key).is_some_and(|(_, written)| written == want)
    }

    /// Records that `status` was written to `key`, decided on `snapshot`.
    pub fn record(&mut self, snapshot: &ClusterSnapshot, key: ObjKey, status: IngressRouteStatus) {
        if let Some(v) = version(snapshot, &key) {
            self.0.insert(key, (v.clone(), status));
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::{IngressRoute, IngressRouteSpec};
    use crate::snapshot::Object;

    fn route(version: &str, status: Option<&str>) -> Object {
        let mut ir = IngressRoute::new("r", IngressRouteSpec::default());
        ir.metadata.namespace = Some("ns".into());
        ir.metadata.resource_version = Some(version.into());
        ir.status = status.map(|s| IngressRouteStatus {
            current_status: s.into(),
            description: s.into(),
        });
        Object::IngressRoute(ir)
    }

    fn status(s: &str) -> IngressRouteStatus {
        IngressRouteStatus {
            current_status: s.into(),
            description: s.into(),
        }
    }

    #[test]
    fn a_write_is_in_flight_until_its_object_moves() {
        let key = ObjKey::new("ns", "r");
        let mut snap = ClusterSnapshot::default();
        snap.apply(route("1", None));
        let mut pending = PendingWrites::default();
        pending.record(&snap, key.clone(), status("valid"));
        // The next round's snapshot has not seen the echo: the same write is not repeated, a
        // different verdict is written.
        pending.settle(&snap);
        assert!(pending.in_flight(&key, &status("valid")));
        assert!(!pending.in_flight(&key, &status("invalid")));
        // The echo came back (or anything else happened to the object): compared as usual.
        snap.apply(route("2", Some("valid")));
        pending.settle(&snap);
        assert!(!pending.in_flight(&key, &status("valid")));
        assert_eq!(pending.len(), 0);
        // A deleted object is forgotten.
        pending.record(&snap, key.clone(), status("invalid"));
        assert_eq!(pending.len(), 1);
        snap.remove(crate::snapshot::Kind::IngressRoute, &key);
        pending.settle(&snap);
        assert_eq!(pending.len(), 0);
    }
}
