//! Delegation walk, validation, class and root-namespace selection, and statuses: a pure function
//! from a snapshot and one Gateway's selection rules to a [`Dag`]. No I/O, no clock.

mod build;
pub mod checks;
mod durations;
pub mod model;
mod select;

pub use build::build;
pub use model::{Dag, RouteStatus, Validity};
pub use select::{Selection, instances};

#[cfg(test)]
mod tests;
