//! When a status write or an Event that failed (refused, or not answered within
//! `--status-call-timeout-seconds`) is tried again: per object, soon, then less and less often,
//! up to a capped interval, for as long as it is due (never given up here). Each object keeps
//! its own schedule, so one that always fails (a status the API server refuses every time, a
//! namespace whose admission hangs) is tried once per [`MAX_DELAY`] and never makes the rounds
//! run again for everyone: the next retry round is the earliest instant some object is due, and
//! the rounds in between leave the failing object alone. Pure: the caller passes the time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The delay before the first retry; each next one doubles it.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between two tries of one object.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(60);

/// The delay after `failures` failures in a row (at least one).
fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_DELAY
        .checked_mul(1 << doublings)
        .map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
}

/// One failing object: failures in a row, and when it is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Failing {
    failures: u32,
    next: Instant,
}

/// The retry schedule of failing objects, by key (an object, at a version where it matters).
#[derive(Debug)]
pub(super) struct Backoff<K> {
    failing: BTreeMap<K, Failing>,
}

impl<K> Default for Backoff<K> {
    fn default() -> Self {
        Self {
            failing: BTreeMap::new(),
        }
    }
}

impl<K: Ord> Backoff<K> {
    /// Whether `key` may be tried at `now` (it is not failing, or its delay has passed).
    pub fn ready(&self, key: &K, now: Instant) -> bool {
        self.failing.get(key).is_none_or(|f| f.next <= now)
    }

    /// Whether `key` failed (and has not succeeded since).
    pub fn is_failing(&self, key: &K) -> bool {
        self.failing.contains_key(key)
    }

    /// `key` failed at `now`: tried again after a delay twice the last one (capped).
    pub fn failed(&mut self, key: K, now: Instant) {
        let f = self.failing.entry(key).or_insert(Failing {
            failures: 0,
            next: now,
        });
        f.failures = f.failures.saturating_add(1);
        f.next = now + delay(f.failures);
    }

    /// `key` succeeded (or is no longer to be tried): its schedule is forgotten.
    pub fn succeeded(&mut self, key: &K) {
        self.failing.remove(key);
    }

    /// Keeps the schedules of the keys `keep` says are still to be tried.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.failing.retain(|k, _| keep(k));
    }

    /// When the first failing object is due again.
    pub fn next_due(&self) -> Option<Instant> {
        self.failing.values().map(|f| f.next).min()
    }

    /// How many objects are failing.
    pub fn len(&self) -> usize {
        self.failing.len()
    }
}

/// The earliest of some instants.
pub(super) fn earliest(instants: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    instants.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_object_is_retried_with_a_growing_delay_capped_and_never_dropped() {
        let t = Instant::now();
        let mut b = Backoff::default();
        let mut delays = Vec::new();
        let mut now = t;
        for _ in 0..10 {
            assert!(b.ready(&"doomed", now));
            b.failed("doomed", now);
            let next = b.next_due().unwrap_or(now);
            assert!(!b.ready(&"doomed", next - Duration::from_millis(1)));
            delays.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(b.len(), 1, "still scheduled after ten failures");
        b.succeeded(&"doomed");
        assert_eq!(b.next_due(), None);
        assert!(b.ready(&"doomed", t));
    }

    /// One object failing for a long time does not delay another's first retry: each has its
    /// own schedule, and the next retry round is the earliest of them.
    #[test]
    fn one_failing_object_does_not_delay_another() {
        let t = Instant::now();
        let mut b = Backoff::default();
        let mut now = t;
        for _ in 0..8 {
            b.failed("doomed", now);
            now += Duration::from_secs(60);
        }
        // Just after the doomed object's last failure, another fails for the first time: it is
        // due after its own first delay, not the doomed object's.
        let last = now - Duration::from_secs(60);
        let doomed_next = b.next_due();
        assert_eq!(doomed_next, Some(last + Duration::from_secs(60)));
        b.failed("other", last);
        assert_eq!(b.next_due(), Some(last + Duration::from_secs(1)));
        assert!(b.ready(&"other", last + Duration::from_secs(1)));
        assert!(!b.ready(&"doomed", last + Duration::from_secs(1)));
        b.retain(|k| *k == "other");
        assert_eq!(b.len(), 1);
        assert_ne!(b.next_due(), doomed_next);
        assert_eq!(
            earliest([None, Some(now), Some(t)]),
            Some(t),
            "the earliest schedule"
        );
    }
}
