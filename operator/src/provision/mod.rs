//! Desired objects for a Gateway instance. Pure builders only (`build_*`/`desired_*`); applying
//! them to the API lives with the controller.

pub mod bootstrap;
pub mod images;
pub mod names;
pub mod objects;
pub mod status;
pub mod xds_tls;

#[cfg(test)]
pub(crate) mod fixtures;

pub use objects::{
    DesiredObjects, FIELD_MANAGER, Plan, ProvisionContext, ProvisionError, desired, plan,
};
pub use status::{ObservedState, gateway_status};
