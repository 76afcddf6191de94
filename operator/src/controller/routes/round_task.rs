//! The status round as a task of its own, beside the coordinator's passes: one tenant's
//! thousands of status writes and Events must not hold back every Gateway's configuration.

use std::sync::Arc;

use super::rounds::RoundOutcome;
use super::traefik::TraefikAnnounced;
use super::{Announced, RoutesContext, write_verdicts};
use crate::dag::Dag;
use crate::snapshot::ClusterSnapshot;

/// A status round written: what it was about and what it found, and the announcement records
/// it took (handed back to the coordinator).
pub(super) struct Written {
    pub dags: Vec<Arc<Dag>>,
    pub outcome: RoundOutcome,
    pub announced: Announced,
    pub traefik_announced: TraefikAnnounced,
}

/// Writes one status round (see [`write_verdicts`]) as a task of its own.
pub(super) async fn write_round(
    ctx: Arc<RoutesContext>,
    snapshot: Arc<ClusterSnapshot>,
    dags: Vec<Arc<Dag>>,
    (mut announced, mut traefik_announced): (Announced, TraefikAnnounced),
) -> Written {
    let records = (&mut announced, &mut traefik_announced);
    let (statuses_differed, events_missed) = write_verdicts(&ctx, &snapshot, &dags, records).await;
    Written {
        dags,
        outcome: RoundOutcome {
            statuses_differed,
            events_missed,
            rejected: false,
        },
        announced,
        traefik_announced,
    }
}

/// The round `writing` wrote, if it has ended (it is then taken).
pub(super) async fn finished_round(
    writing: &mut Option<tokio::task::JoinHandle<Written>>,
) -> Option<Written> {
    if !writing.as_ref()?.is_finished() {
        return None;
    }
    join_round(writing).await
}

/// Waits for the round `writing` to end and takes it; pending forever while none is written.
/// A round that failed (a panic) is logged and taken as one that found statuses to write, so
/// the next pass writes a round again.
pub(super) async fn join_round(
    writing: &mut Option<tokio::task::JoinHandle<Written>>,
) -> Option<Written> {
    let Some(round) = writing.as_mut() else {
        return std::future::pending().await;
    };
    let result = round.await;
    *writing = None;
    match result {
        Ok(written) => Some(written),
        Err(e) => {
            tracing::error!(error = %e, "status round failed");
            // Nothing is known in step: the next pass writes a round again (its announcement
            // records are lost with the task, so Events may be announced twice).
            Some(Written {
                dags: Vec::new(),
                outcome: RoundOutcome {
                    statuses_differed: 1,
                    ..RoundOutcome::default()
                },
                announced: Announced::default(),
                traefik_announced: TraefikAnnounced::new(),
            })
        }
    }
}
