//! Test-only: makes a build panic at a chosen point, to test what survives a panicking build
//! (no input may make one panic; the guard is for the bugs that still could).

use std::cell::Cell;

/// Where a build may be made to panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// While comparing the roots' host claims, before any is recorded.
    ClaimAges,
    /// After the claims were recorded, before the DAG is built.
    Build,
}

thread_local! {
    static ARMED: Cell<Option<Stage>> = const { Cell::new(None) };
}

/// The next build on this thread panics at `stage`, once.
pub fn arm(stage: Stage) {
    ARMED.with(|a| a.set(Some(stage)));
}

/// Panics if armed for `stage` (and disarms).
#[allow(clippy::panic)]
pub fn hit(stage: Stage) {
    if ARMED.with(|a| a.get()) == Some(stage) {
        ARMED.with(|a| a.set(None));
        panic!("fault injected at {stage:?}");
    }
}
