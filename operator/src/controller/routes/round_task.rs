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

/// Writes one status round (see [`write_verdicts`]) as a task of its own. The round stops as
/// soon as this replica stops leading: the writes and Events under way are dropped with it
/// (a request the API server already took may still land; it is harmless: the new leader
/// compares every status it sees with its own verdicts and writes over it), and none is
/// announced.
pub(super) async fn write_round(
    ctx: Arc<RoutesContext>,
    snapshot: Arc<ClusterSnapshot>,
    dags: Vec<Arc<Dag>>,
    (mut announced, mut traefik_announced): (Announced, TraefikAnnounced),
) -> Written {
    let mut leading = ctx.leadership.changes();
    let written = {
        let records = (&mut announced, &mut traefik_announced);
        let round = write_verdicts(&ctx, &snapshot, &dags, records);
        tokio::select! {
            counts = round => Some(counts),
            () = stepped_down(&mut leading) => None,
        }
    };
    let Some(outcome) = written else {
        tracing::info!("no longer leading; the status round stopped with its writes under way");
        return unknown_round();
    };
    Written {
        dags,
        outcome,
        announced,
        traefik_announced,
    }
}

/// Returns once `leading` says this replica does not lead (pending forever if the election
/// is gone: every write still asks [`crate::controller::leader::Leadership::is_leading`]).
async fn stepped_down(leading: &mut tokio::sync::watch::Receiver<bool>) {
    if leading.wait_for(|l| !*l).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A round whose outcome is not known (stopped, or failed): taken as one that found statuses
/// to write, so the next pass writes a round again; its announcement records are lost with it
/// (a replica that stopped leading forgets them anyway; otherwise Events may be announced
/// twice).
fn unknown_round() -> Written {
    Written {
        dags: Vec::new(),
        outcome: RoundOutcome {
            statuses_differed: 1,
            ..RoundOutcome::default()
        },
        announced: Announced::default(),
        traefik_announced: TraefikAnnounced::new(),
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
            Some(unknown_round())
        }
    }
}
