//! When the leader's status round can be skipped. A round combines every instance's verdicts
//! (O(routes)) and writes what differs from what the objects carry; once a round found
//! everything in step, the next ones are skipped until something can have changed a status:
//! the IngressRoutes themselves (their `status` included), a verdict of some DAG, or a
//! rejection blamed on a route. Pure: the coordinator asks and reports.

use std::sync::Arc;
use std::time::Instant;

use crate::dag::Dag;

/// What one status round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct RoundOutcome {
    /// Statuses that differed from what the objects carry (written or not).
    pub statuses_differed: usize,
    /// Events that were due and not recorded, and status writes that failed (both retried by
    /// a later round, each object on its own schedule: see `retry`).
    pub missed: usize,
    /// Whether a rejection was blamed when the round ended: the statuses written then are not
    /// the DAGs' own, and must be written again once the rejection clears.
    pub rejected: bool,
    /// When the first of the `missed` objects is due to be tried again.
    pub retry_at: Option<Instant>,
    /// Of `statuses_differed`, those whose write failed and waits for its back-off: they make
    /// a round due when `retry_at` comes, not at every pass.
    pub waiting: usize,
}

/// The DAGs of the last round that found every status in step, while leading.
#[derive(Debug, Default)]
pub(super) struct StatusRounds {
    in_step: Option<Vec<Arc<Dag>>>,
    /// When the last round's first failed write or Event is due again.
    retry_at: Option<Instant>,
}

impl StatusRounds {
    /// Forgets the last round (this replica stopped leading: the next leader's first round is
    /// always due).
    pub fn forget(&mut self) {
        self.in_step = None;
        self.retry_at = None;
    }

    /// When a failed write or Event of the last round is due again (a round is due then).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Whether a round is due for `dags` at `now`: `touched` when the change set touched the
    /// route kinds (statuses live there), `rejected` while a rejection is blamed on some
    /// instance.
    pub fn due(&self, touched: bool, dags: &[Arc<Dag>], rejected: bool, now: Instant) -> bool {
        touched
            || rejected
            || self.retry_at.is_some_and(|t| t <= now)
            || !self
                .in_step
                .as_ref()
                .is_some_and(|last| same_statuses(last, dags))
    }

    /// Records the outcome of a round over `dags`: in step when nothing differed but writes
    /// waiting for their back-off, and no rejection was blamed. Failed writes and Events are
    /// due again at `retry_at` (each object has its own back-off, see `retry`), not at every
    /// pass: an object the API server always refuses does not make every change anywhere
    /// combine every verdict again.
    pub fn finished(&mut self, dags: &[Arc<Dag>], outcome: RoundOutcome) {
        let in_step = outcome.statuses_differed <= outcome.waiting && !outcome.rejected;
        self.in_step = in_step.then(|| dags.to_vec());
        self.retry_at = outcome.retry_at;
    }
}

/// Whether two generations' DAGs, Gateway by Gateway, judge every IngressRoute the same.
fn same_statuses(a: &[Arc<Dag>], b: &[Arc<Dag>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            Arc::ptr_eq(a, b)
                || (a.gateway == b.gateway
                    && a.statuses == b.statuses
                    && a.object_statuses == b.object_statuses)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(gateway: &str) -> Arc<Dag> {
        Arc::new(Dag {
            gateway: gateway.to_owned(),
            ..Dag::default()
        })
    }

    const IN_STEP: RoundOutcome = RoundOutcome {
        statuses_differed: 0,
        missed: 0,
        rejected: false,
        retry_at: None,
        waiting: 0,
    };

    #[test]
    fn a_round_in_step_is_skipped_until_something_can_change_a_status() {
        let dags = vec![dag("ns/gw")];
        let mut rounds = StatusRounds::default();
        assert!(
            rounds.due(false, &dags, false, now()),
            "the first round is due"
        );
        rounds.finished(&dags, IN_STEP);
        assert!(!rounds.due(false, &dags, false, now()));
        // Equal verdicts in a new DAG: still skipped.
        assert!(!rounds.due(false, &[dag("ns/gw")], false, now()));
        // A touched route kind, another Gateway, a new leader: due.
        assert!(rounds.due(true, &dags, false, now()));
        assert!(rounds.due(false, &[dag("ns/other")], false, now()));
        rounds.forget();
        assert!(rounds.due(false, &dags, false, now()));
    }

    /// A blamed rejection rewrites statuses that are not the DAGs' own: every round is due
    /// while it lasts, and the round after it clears too, although the DAGs did not change
    /// (the fix may be to a Secret or a Service, which touches no route).
    #[test]
    fn no_round_is_skipped_while_or_after_a_rejection_is_blamed() {
        let dags = vec![dag("ns/gw")];
        let mut rounds = StatusRounds::default();
        rounds.finished(&dags, IN_STEP);
        assert!(
            rounds.due(false, &dags, true, now()),
            "a rejection is blamed now"
        );
        // The blamed status was written (one difference)...
        rounds.finished(
            &dags,
            RoundOutcome {
                statuses_differed: 1,
                rejected: true,
                ..IN_STEP
            },
        );
        // ...and the next round, rejection still blamed, finds it in place.
        assert!(rounds.due(false, &dags, true, now()));
        rounds.finished(
            &dags,
            RoundOutcome {
                rejected: true,
                ..IN_STEP
            },
        );
        // The rejection clears without any DAG change: the own statuses go back.
        assert!(rounds.due(false, &dags, false, now()));
    }

    fn now() -> Instant {
        Instant::now()
    }

    /// Traefik objects have no status: a missed Event is known only from the round's retry
    /// time, which makes a round due then although every status was in step.
    #[test]
    fn a_missed_event_makes_a_round_due_at_its_retry() {
        let dags = vec![dag("ns/gw")];
        let mut rounds = StatusRounds::default();
        let t = now();
        let retry = t + std::time::Duration::from_secs(2);
        rounds.finished(
            &dags,
            RoundOutcome {
                missed: 1,
                retry_at: Some(retry),
                ..IN_STEP
            },
        );
        assert!(!rounds.due(false, &dags, false, t));
        assert!(rounds.due(false, &dags, false, retry));
        rounds.finished(&dags, IN_STEP);
        assert!(!rounds.due(false, &dags, false, retry));
    }

    /// A status whose write always fails differs in every round; it makes a round due when
    /// its back-off ends, not at every pass (every change anywhere).
    #[test]
    fn a_write_waiting_for_its_back_off_makes_no_round_due_before_then() {
        let dags = vec![dag("ns/gw")];
        let mut rounds = StatusRounds::default();
        let t = now();
        let retry = t + std::time::Duration::from_secs(60);
        let waiting = RoundOutcome {
            statuses_differed: 1,
            missed: 1,
            retry_at: Some(retry),
            waiting: 1,
            ..IN_STEP
        };
        rounds.finished(&dags, waiting);
        assert!(!rounds.due(false, &[dag("ns/gw")], false, t));
        assert!(rounds.due(false, &dags, false, retry));
        // Another status to write besides: due at every pass, as before.
        rounds.finished(
            &dags,
            RoundOutcome {
                statuses_differed: 2,
                ..waiting
            },
        );
        assert!(rounds.due(false, &dags, false, t));
    }
}
