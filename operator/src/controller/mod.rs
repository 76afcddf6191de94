//! The in-cluster operator: the Gateway controller, the per-instance route reconcilers, the
//! status writer and leader election.

pub mod claims;
pub mod crds;
pub mod gateway;
pub mod http;
pub mod leader;
pub mod routes;
pub mod run;
pub mod status;
