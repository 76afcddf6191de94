//! Desired objects for a Gateway instance. Pure builders only (`build_*`/`desired_*`); applying
//! them to the API lives with the controller.

pub mod bootstrap;
