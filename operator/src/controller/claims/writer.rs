//! The leader's writer of one Gateway's claims ConfigMap, as a task of its own beside the
//! Gateway's build loop: the loop hands it the latest record ([`ClaimsWriter::offer`]) and
//! never waits for the API server.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::watch;

use super::{
    Decision, FOREIGN_RECHECK, RECORD_BUDGET, SharedClaimsProblems, WriteError, config_map_name,
    decide, read_once, write,
};
use crate::api::gateway::Gateway;
use crate::controller::leader::{Leadership, LeaseTerm};
use crate::dag::ClaimRecord;
use crate::pipeline::InstancePipeline;

/// How long one read or write of the ConfigMap may take before it is given up (and tried
/// again with the latest record).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a write that met a 409 is read, decided and tried again in a row.
const CONFLICT_ATTEMPTS: u32 = 5;

/// The longest wait before a failed write is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the writer needs besides the record.
#[derive(Clone)]
pub struct WriterContext {
    pub client: kube::Client,
    pub leadership: Leadership,
    /// Where a ConfigMap not owned by the Gateway is reported (for its status).
    pub problems: SharedClaimsProblems,
    /// Bumped when `problems` changes, so the Gateway controller writes the status.
    pub notify: Arc<dyn Fn() + Send + Sync>,
    /// The operator's Lease (namespace, name): read before writing over a record stamped
    /// under another Lease (see [`Decision::OtherLease`]).
    pub lease: (String, String),
}

/// The record to store, and the Gateway it is for.
#[derive(Clone)]
struct Wanted {
    gw: Arc<Gateway>,
    record: ClaimRecord,
}

/// The handle of one Gateway's writer task; dropping it stops the task.
pub struct ClaimsWriter {
    wanted: watch::Sender<Option<Wanted>>,
    task: tokio::task::JoinHandle<()>,
    problems: SharedClaimsProblems,
    leadership: Leadership,
    gateway: String,
    /// Names left out, as last logged.
    dropped: usize,
    /// The DAG changed since a record was last offered (or none was).
    dirty: bool,
}

impl std::fmt::Debug for ClaimsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimsWriter")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl ClaimsWriter {
    /// Starts the writer of Gateway `gateway` (`namespace/name`).
    pub fn start(ctx: WriterContext, gateway: String) -> Self {
        let (tx, rx) = watch::channel(None);
        let (problems, leadership) = (ctx.problems.clone(), ctx.leadership.clone());
        let task = tokio::spawn(run(ctx, gateway.clone(), rx));
        Self {
            wanted: tx,
            task,
            problems,
            leadership,
            gateway,
            dropped: 0,
            dirty: true,
        }
    }

    /// Hands the writer `pipeline`'s record for `gw` after a pass; `changed`: the pass changed
    /// the DAG (otherwise the record is the one offered last). Never waits. A follower
    /// computes no record: the first pass after it starts leading does.
    pub fn offer(&mut self, gw: &Arc<Gateway>, pipeline: &InstancePipeline, changed: bool) {
        self.dirty |= changed;
        if !self.dirty {
            return;
        }
        if !self.leadership.is_leading() {
            // What was offered before is stale by now: nothing to write until the next pass.
            self.wanted.send_if_modified(|w| w.take().is_some());
            return;
        }
        let Some((record, dropped)) = pipeline.claim_record(RECORD_BUDGET) else {
            return;
        };
        self.dirty = false;
        if dropped != self.dropped && dropped > 0 {
            tracing::warn!(
                gateway = %self.gateway,
                dropped,
                budget = RECORD_BUDGET,
                "contested host names left out of the claims ConfigMap or kept with their holder alone (over its budget)"
            );
        }
        self.dropped = dropped;
        self.wanted.send_if_modified(|wanted| {
            let same = wanted
                .as_ref()
                .is_some_and(|w| w.record == record && w.gw.metadata.uid == gw.metadata.uid);
            if !same {
                *wanted = Some(Wanted {
                    gw: gw.clone(),
                    record,
                });
            }
            !same
        });
    }
}

impl Drop for ClaimsWriter {
    fn drop(&mut self) {
        self.task.abort();
        super::super::routes::lock(&self.problems).remove(&self.gateway);
    }
}

/// What one attempt to store a record came to.
#[derive(Debug)]
enum Outcome {
    /// The ConfigMap holds the record (written now, or already).
    Stored,
    /// A leader of a later term wrote it (or of a Lease created after this writer's).
    Newer,
    /// The name is taken by a ConfigMap the Gateway does not own.
    Foreign,
    /// This replica stopped leading (or its term changed) before the write.
    NotLeading,
    Failed(String),
}

/// How soon a write refused for a term change is tried again while this replica leads.
const TERM_RETRY: Duration = Duration::from_millis(500);

/// The writer task: stores the latest record offered whenever this replica leads and the
/// ConfigMap may hold another; ends when its handle is dropped.
async fn run(ctx: WriterContext, gateway: String, mut wanted: watch::Receiver<Option<Wanted>>) {
    let mut leading = ctx.leadership.changes();
    // The record this replica knows the ConfigMap holds (or need not write), and in which term.
    let mut settled: Option<(LeaseTerm, ClaimRecord)> = None;
    let mut backoff = Duration::ZERO;
    loop {
        let latest = wanted.borrow_and_update().clone();
        let term = ctx.leadership.term();
        if term.is_none() {
            // Only the leader's finding stands (looked at again when this replica leads).
            report_foreign(&ctx, &gateway, None);
        }
        let mut retry = None;
        if let (Some(w), Some(term)) = (latest, term) {
            let known = settled
                .as_ref()
                .is_some_and(|(t, r)| *t == term && *r == w.record);
            if !known {
                let outcome = tokio::select! {
                    outcome = store(&ctx, &w, &term) => outcome,
                    () = stepped_down(&mut leading) => Outcome::NotLeading,
                };
                match outcome {
                    Outcome::Stored | Outcome::Newer => {
                        report_foreign(&ctx, &gateway, None);
                        settled = Some((term, w.record));
                        backoff = Duration::ZERO;
                    }
                    Outcome::Foreign => {
                        report_foreign(&ctx, &gateway, Some(&w.gw));
                        settled = Some((term, w.record));
                        retry = Some(FOREIGN_RECHECK);
                    }
                    Outcome::NotLeading => {
                        // Still leading, in another term (the Lease was recreated): no
                        // leadership flip will come, so write again soon, stamped with it.
                        if ctx.leadership.term().is_some() {
                            retry = Some(TERM_RETRY);
                        }
                    }
                    Outcome::Failed(e) => {
                        backoff = (backoff * 2).clamp(Duration::from_millis(500), MAX_BACKOFF);
                        tracing::warn!(gateway = %gateway, error = %e, retry_in = ?backoff, "claims ConfigMap not written; tried again");
                        retry = Some(backoff);
                    }
                }
            }
        }
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = leadership_changed(&mut leading) => {}
            () = tokio::time::sleep(retry.unwrap_or(FOREIGN_RECHECK)), if retry.is_some() => {
                // Look again (a ConfigMap not owned by the Gateway may be gone).
                settled = None;
            }
        }
    }
}

/// Resolves when leadership changes; never if the election task is gone.
async fn leadership_changed(leading: &mut watch::Receiver<bool>) {
    if leading.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves when this replica no longer leads.
async fn stepped_down(leading: &mut watch::Receiver<bool>) {
    loop {
        if !*leading.borrow_and_update() {
            return;
        }
        leadership_changed(leading).await;
    }
}

/// Reads the ConfigMap, decides, writes on condition; on a 409 reads and decides again.
async fn store(ctx: &WriterContext, w: &Wanted, term: &LeaseTerm) -> Outcome {
    for _ in 0..CONFLICT_ATTEMPTS {
        let found = match tokio::time::timeout(CALL_TIMEOUT, read_once(&ctx.client, &w.gw)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Outcome::Failed(format!("reading: {e}")),
            Err(_) => return Outcome::Failed("reading: timed out".to_owned()),
        };
        let rv = match decide(&found, &w.record, term) {
            Decision::Stored => return Outcome::Stored,
            Decision::Newer => return Outcome::Newer,
            Decision::Foreign => return Outcome::Foreign,
            Decision::Create => None,
            Decision::Replace(rv) => Some(rv),
            Decision::OtherLease(rv) => match current_lease_uid(ctx).await {
                // The record's Lease was deleted since: this writer's is the current one.
                Ok(Some(uid)) if uid == term.lease_uid => Some(rv),
                // This writer's Lease was deleted: it no longer leads, whatever its deadline.
                Ok(_) => {
                    tracing::info!(lease_uid = %term.lease_uid, "the claims ConfigMap was written under another Lease and this replica's is gone: not written");
                    return Outcome::Newer;
                }
                Err(e) => return Outcome::Failed(format!("reading the Lease: {e}")),
            },
        };
        // Asked right before the write: a replica that lost the lease (or leads in another
        // term) writes nothing more.
        if ctx.leadership.term().as_ref() != Some(term) {
            return Outcome::NotLeading;
        }
        let written = write(&ctx.client, &w.gw, &w.record, term, rv);
        match tokio::time::timeout(CALL_TIMEOUT, written).await {
            Ok(Ok(())) => return Outcome::Stored,
            Ok(Err(WriteError::Conflict)) => {}
            Ok(Err(WriteError::Other(e))) => return Outcome::Failed(format!("writing: {e}")),
            Err(_) => return Outcome::Failed("writing: timed out".to_owned()),
        }
    }
    Outcome::Failed("the ConfigMap kept changing while it was written".to_owned())
}

/// The uid of the operator's Lease as it stands now; `None` when there is none.
async fn current_lease_uid(ctx: &WriterContext) -> Result<Option<String>, String> {
    let (ns, name) = &ctx.lease;
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), ns);
    match tokio::time::timeout(CALL_TIMEOUT, api.get_opt(name)).await {
        Ok(Ok(lease)) => Ok(lease.map(|l| l.metadata.uid.unwrap_or_default())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Records (`Some`) or clears the report of Gateway `gateway`'s ConfigMap taken by one it does
/// not own; tells the Gateway controller when that changed.
fn report_foreign(ctx: &WriterContext, gateway: &str, gw: Option<&Gateway>) {
    let changed = {
        let mut problems = super::super::routes::lock(&ctx.problems);
        match gw {
            Some(gw) => {
                let ns = gw.metadata.namespace.as_deref().unwrap_or_default();
                let name = gw.metadata.name.as_deref().unwrap_or_default();
                let cm = format!("{ns}/{}", config_map_name(name));
                problems.insert(gateway.to_owned(), cm.clone()) != Some(cm)
            }
            None => problems.remove(gateway).is_some(),
        }
    };
    if changed {
        (ctx.notify)();
    }
}
