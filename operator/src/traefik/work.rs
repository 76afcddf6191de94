//! The work a rule costs, counted in steps so that tests can bound it without a clock: every
//! loop of the rule pipeline (lexer, parser, matchers, regex checks, normal form, translation)
//! that is not bounded by a constant calls [`tick`] with what it walks. Only test builds count;
//! elsewhere [`tick`] does nothing.

#[cfg(test)]
thread_local! {
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` steps of work (in test builds).
#[inline]
pub fn tick(n: usize) {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get().saturating_add(n as u64)));
    #[cfg(not(test))]
    let _ = n;
}

/// Runs `f` and returns its result and the steps it counted on this thread.
#[cfg(test)]
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, u64) {
    STEPS.with(|s| s.set(0));
    let out = f();
    (out, STEPS.with(std::cell::Cell::get))
}
