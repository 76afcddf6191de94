//! When a status round that missed Events or status writes (the API refused or failed a write)
//! runs again: soon,
//! then less and less often, a bounded number of times; after that, with the next change or
//! the periodic resync, as before. Nothing is queued: a round recomputes what is still to be
//! announced (what was announced is remembered per object), so the state is one counter and one
//! instant whatever the number of Events missed. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// The delay before the first retry; each next one doubles it.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between two retries.
const MAX_DELAY: Duration = Duration::from_secs(16);
/// Retries after as many rounds in a row that missed Events; then only changes and the resync
/// bring the next round.
const MAX_ATTEMPTS: u32 = 6;

/// The retry schedule of missed Events.
#[derive(Debug, Default)]
pub(super) struct EventRetry {
    /// Rounds in a row that missed Events.
    failed_rounds: u32,
}

impl EventRetry {
    /// A round ended at `now` with `missed` Events not recorded: when to run a round again
    /// (`None`: no retry scheduled, because nothing was missed or the attempts are spent).
    pub fn after_round(&mut self, missed: usize, now: Instant) -> Option<Instant> {
        if missed == 0 {
            self.failed_rounds = 0;
            return None;
        }
        self.failed_rounds = self.failed_rounds.saturating_add(1);
        if self.failed_rounds > MAX_ATTEMPTS {
            return None;
        }
        let doublings = self.failed_rounds - 1;
        let delay = FIRST_DELAY
            .checked_mul(1 << doublings.min(16))
            .map_or(MAX_DELAY, |d| d.min(MAX_DELAY));
        Some(now + delay)
    }

    /// This replica stopped leading: the next leader starts afresh.
    pub fn forget(&mut self) {
        self.failed_rounds = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_events_are_retried_with_a_growing_delay_a_bounded_number_of_times() {
        let t = Instant::now();
        let mut r = EventRetry::default();
        let delays: Vec<Option<Duration>> = (0..8)
            .map(|_| r.after_round(3, t).map(|at| at - t))
            .collect();
        let s = Duration::from_secs;
        assert_eq!(
            delays,
            [
                Some(s(1)),
                Some(s(2)),
                Some(s(4)),
                Some(s(8)),
                Some(s(16)),
                Some(s(16)),
                None,
                None
            ]
        );
        // A round that missed nothing resets the schedule.
        assert_eq!(r.after_round(0, t), None);
        assert_eq!(r.after_round(1, t), Some(t + s(1)));
        r.forget();
        assert_eq!(r.after_round(1, t), Some(t + s(1)));
    }
}
