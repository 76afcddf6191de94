//! Delegation walk, validation, class and root-namespace selection, and statuses: a pure function
//! from a snapshot and one Gateway's selection rules to a [`Dag`]. No I/O, no clock.
//!
//! | file | holds |
//! |---|---|
//! | `build.rs` | the builder and [`build`], the whole build from scratch |
//! | `claims.rs` | host ownership: which root claims which fqdn, the oldest wins |
//! | `claim_ages.rs`, `claim_record.rs` | when each claim was first seen; its record across restarts |
//! | `open_hosts.rs` | ownership of the catch-all and wildcard hosts Traefik rules claim |
//! | `owner.rs` | owner names of DAG entries and the object (and kind) each names |
//! | `walk.rs` | the delegation walk (routes and tcpproxy), its memo and depth limit |
//! | `upstream.rs` | services to clusters (protocol, policies, health checks) and endpoints |
//! | `vhost_tls.rs` | a virtual host's TLS: version floor, certificate, delegation |
//! | `deps.rs`, `incremental.rs` | the dependency index and [`IncrementalDag`] |
//! | `quarantine.rs` | objects an Envoy rejected the configuration of, built as invalid |

mod build;
pub mod checks;
mod claim_ages;
mod claim_record;
mod claims;
mod deps;
pub(crate) mod durations;
pub mod ext_authz;
mod incremental;
pub mod model;
mod open_hosts;
pub mod owner;
pub mod policy;
pub mod quarantine;
mod select;
mod tally;
mod traefik;
mod upstream;
mod vhost_tls;
mod walk;

pub use build::{DEFAULT_HEALTH_CHECK_HOST, build, build_aged, build_quarantined};
pub use claim_ages::ClaimAges;
pub use claim_record::{ClaimRecord, RecordedClaim, RecordedKind};
pub use deps::Dep;
pub use incremental::{DagDiff, IncrementalDag, UpdateStats};
pub use model::{Dag, RouteStatus, Validity};
pub use select::{Selection, instances};
pub use tally::{StatusCounts, StatusTally};

#[cfg(test)]
mod claim_ages_tests;
#[cfg(test)]
mod claim_record_tests;
#[cfg(test)]
mod claim_record_uid_tests;
#[cfg(test)]
pub(crate) mod faults;
#[cfg(test)]
mod held_tests;
#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod incremental_traefik_gen;
#[cfg(test)]
mod quarantine_tests;
#[cfg(test)]
mod refused_claims_tests;
#[cfg(test)]
mod restart_chain_tests;
#[cfg(test)]
mod review7_tests;
#[cfg(test)]
mod status_writes_tests;
#[cfg(test)]
mod tests;
