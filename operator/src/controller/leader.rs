//! Leader election with a coordination.k8s.io Lease. Every replica serves xDS; only the holder
//! of the lease writes to the API (statuses, provisioned objects).
//!
//! The semantics are client-go's (`tools/leaderelection`):
//!
//! - Expiry is judged by local observation, never by comparing the Lease's `renewTime` with the
//!   local clock (clocks of two machines may disagree). A candidate records, on its own
//!   monotonic clock, when it last saw the Lease change (holder, `renewTime`,
//!   `resourceVersion`, ...), and takes the lease over only once it has seen no change for the
//!   lease duration (the longer of its own and the Lease's `leaseDurationSeconds`).
//! - Every write carries the `resourceVersion` that was read: of two replicas racing for the
//!   lease, one gets a 409 Conflict.
//! - The leader leads while its last successful renewal started less than the renew deadline
//!   ago, which is shorter than the lease duration: errors and timeouts in between are ridden
//!   out, and it steps down before any follower may take over. It steps down at once when it
//!   sees another holder.
//! - Writers ask [`Leadership::is_leading`] before each write; the answer comes from the
//!   monotonic clock and the deadline, so it turns false at the deadline even if the election
//!   task is stuck.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (pod name, or host + pid).
    pub identity: String,
    /// How long followers wait, after they last saw the Lease change, before taking it over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading after its last successful renewal; shorter than
    /// `lease_duration`.
    pub renew_deadline: Duration,
    /// How often every replica reads (and the leader renews) the Lease.
    pub retry_period: Duration,
}

/// client-go's proportions: a renew deadline of two thirds of the lease duration (10 s of 15).
pub fn default_renew_deadline(lease_duration: Duration) -> Duration {
    lease_duration * 2 / 3
}

/// Whether the settings make sense: a leader must step down (renew deadline) before a follower
/// may take over (lease duration), and get more than one try at renewing in between.
pub fn check_config(cfg: &LeaseConfig) -> Result<(), String> {
    if cfg.renew_deadline >= cfg.lease_duration {
        return Err(format!(
            "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
            cfg.renew_deadline, cfg.lease_duration
        ));
    }
    if cfg.retry_period >= cfg.renew_deadline {
        return Err(format!(
            "the renew period ({:?}) must be shorter than the renew deadline ({:?})",
            cfg.retry_period, cfg.renew_deadline
        ));
    }
    Ok(())
}

/// What a replica compares to tell that the Lease changed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<jiff::Timestamp>,
    acquire_time: Option<jiff::Timestamp>,
    transitions: Option<i32>,
    duration_seconds: Option<i32>,
    resource_version: Option<String>,
    uid: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            transitions: spec.lease_transitions,
            duration_seconds: spec.lease_duration_seconds,
            resource_version: lease.metadata.resource_version.clone(),
            uid: lease.metadata.uid.clone(),
        }
    }
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// There is no Lease: create it, holding it.
    Create(Lease),
    /// Take or renew the Lease: replace it (carrying the `resourceVersion` read).
    Replace(Lease),
    /// Another replica holds it, and it has not been seen unchanged for the lease duration.
    Wait,
}

/// The election state machine of one replica, pure: time comes in as arguments (`now` from a
/// monotonic clock, `wall` for the timestamps written into the Lease).
#[derive(Clone, Debug)]
pub struct Election {
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    /// The Lease as last seen, and when it was first seen so.
    observed: Option<(Record, Instant)>,
    /// When the attempt that last took or renewed the Lease started (cleared when another
    /// holder is seen).
    renewed: Option<Instant>,
}

impl Election {
    pub fn new(cfg: &LeaseConfig) -> Self {
        Self {
            identity: cfg.identity.clone(),
            lease_duration: cfg.lease_duration,
            renew_deadline: cfg.renew_deadline,
            observed: None,
            renewed: None,
        }
    }

    /// Takes in the Lease as read at `now` (`None`: there is none) and says what to write.
    pub fn plan(&mut self, current: Option<&Lease>, now: Instant, wall: jiff::Timestamp) -> Plan {
        let duration_secs = i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(15);
        let Some(lease) = current else {
            // Gone (or never made): whoever creates it first leads; until then, nobody.
            self.observed = None;
            self.renewed = None;
            return Plan::Create(Lease {
                metadata: ObjectMeta::default(),
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(wall)),
                    renew_time: Some(MicroTime(wall)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            });
        };
        let record = Record::of(lease);
        let since = match &self.observed {
            Some((seen, since)) if *seen == record => *since,
            _ => now,
        };
        self.observed = Some((record.clone(), since));
        let mine = record.holder.as_deref() == Some(self.identity.as_str());
        if !mine {
            self.renewed = None;
        }
        if record.holder.is_some() && !mine {
            let declared = record
                .duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(Duration::ZERO, Duration::from_secs);
            if now.saturating_duration_since(since) < self.lease_duration.max(declared) {
                return Plan::Wait;
            }
        }
        let mut spec = lease.spec.clone().unwrap_or_default();
        if !mine {
            spec.acquire_time = Some(MicroTime(wall));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_secs);
        spec.renew_time = Some(MicroTime(wall));
        Plan::Replace(Lease {
            metadata: lease.metadata.clone(),
            spec: Some(spec),
        })
    }

    /// The planned write succeeded at `now`; the attempt (read and write) began at `started`.
    pub fn written(&mut self, written: &Lease, started: Instant, now: Instant) {
        self.observed = Some((Record::of(written), now));
        self.renewed = Some(started);
    }

    /// Until when this replica leads, if it does (or did: the instant may be past).
    pub fn leading_until(&self) -> Option<Instant> {
        self.renewed.map(|t| t + self.renew_deadline)
    }

    /// Whether this replica leads at `now`.
    pub fn is_leading(&self, now: Instant) -> bool {
        self.leading_until().is_some_and(|until| now < until)
    }

    /// The term of the Lease this replica took or renewed last, if it did (see [`LeaseTerm`]).
    pub fn term(&self) -> Option<LeaseTerm> {
        self.renewed?;
        let (record, _) = self.observed.as_ref()?;
        Some(LeaseTerm {
            lease_uid: record.uid.clone().unwrap_or_default(),
            holder: record.holder.clone()?,
            transitions: record.transitions.unwrap_or(0),
        })
    }
}

/// Which term of leadership a write is from: the Lease (by uid), its holder and its
/// `leaseTransitions`, which every change of holder increments. Of two writers of the same
/// Lease, the one with more transitions leads now (or did more recently).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTerm {
    pub lease_uid: String,
    pub holder: String,
    pub transitions: i32,
}

/// Whether this replica leads, for the writers: ask [`Leadership::is_leading`] right before
/// every write; [`Leadership::changes`] tells when it starts or stops leading.
#[derive(Clone, Debug)]
pub struct Leadership {
    held: Arc<Mutex<Held>>,
    changes: watch::Receiver<bool>,
}

/// Until when this replica leads, and in which term.
#[derive(Debug, Default)]
struct Held {
    until: Option<Instant>,
    term: Option<LeaseTerm>,
}

impl Leadership {
    /// Whether this replica leads now (its renew deadline has not passed).
    pub fn is_leading(&self) -> bool {
        let until = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .until;
        until.is_some_and(|u| Instant::now() < u)
    }

    /// The term this replica leads in, if it leads now (its renew deadline has not passed).
    pub fn term(&self) -> Option<LeaseTerm> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let leading = held.until.is_some_and(|u| Instant::now() < u);
        held.term.clone().filter(|_| leading)
    }

    /// A receiver that changes when this replica starts or stops leading.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }
}

/// The election task's side of [`Leadership`].
#[derive(Debug)]
pub struct LeadershipPublisher {
    held: Arc<Mutex<Held>>,
    changes: watch::Sender<bool>,
}

/// A new leadership (not leading) and its publisher.
pub fn leadership() -> (LeadershipPublisher, Leadership) {
    let held = Arc::new(Mutex::new(Held::default()));
    let (tx, rx) = watch::channel(false);
    (
        LeadershipPublisher {
            held: held.clone(),
            changes: tx,
        },
        Leadership { held, changes: rx },
    )
}

impl LeadershipPublisher {
    /// Leads until `until` (`None`: not leading) in `term`; tells watchers if that changed
    /// whether it leads now.
    fn publish(&self, until: Option<Instant>, term: Option<LeaseTerm>, identity: &str) {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Held { until, term };
        self.refresh(identity);
    }

    /// Tells watchers whether this replica leads now (call when the deadline passes).
    fn refresh(&self, identity: &str) {
        let until = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .until;
        let leading = until.is_some_and(|u| Instant::now() < u);
        self.changes.send_if_modified(|v| {
            let changed = *v != leading;
            if changed {
                tracing::info!(identity, leader = leading, "leadership changed");
            }
            *v = leading;
            changed
        });
    }

    /// Awaits `work`; if this replica's leadership deadline passes meanwhile, tells watchers at
    /// once.
    async fn meanwhile<T>(&self, identity: &str, work: impl Future<Output = T>) -> T {
        let until = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .until;
        tokio::pin!(work);
        if let Some(until) = until.filter(|u| Instant::now() < *u) {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep_until(until.into()) => self.refresh(identity),
            }
        }
        work.await
    }
}

/// Runs the election loop forever, publishing whether this replica leads.
pub async fn run(client: kube::Client, cfg: LeaseConfig, leadership: LeadershipPublisher) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut election = Election::new(&cfg);
    // An attempt that takes longer than the renew deadline cannot keep a leader leading.
    let bound = cfg.renew_deadline.max(Duration::from_millis(100));
    loop {
        let started = Instant::now();
        let outcome = leadership
            .meanwhile(
                &cfg.identity,
                tokio::time::timeout(bound, attempt(&api, &cfg, &mut election, started)),
            )
            .await;
        let mut retry_now = false;
        match outcome {
            Ok(Ok(())) => {}
            // Another replica wrote first: read again at once to see who holds the lease.
            Ok(Err(kube::Error::Api(e))) if e.code == 409 => {
                tracing::debug!(lease = %cfg.name, "lease changed meanwhile; reading it again");
                retry_now = true;
            }
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                lease = %cfg.name,
                leading = election.is_leading(Instant::now()),
                "lease update failed; leading (if so) until the renew deadline"
            ),
            Err(_) => tracing::warn!(lease = %cfg.name, after = ?bound, "lease update timed out"),
        }
        leadership.publish(election.leading_until(), election.term(), &cfg.identity);
        if !retry_now {
            leadership
                .meanwhile(&cfg.identity, tokio::time::sleep(cfg.retry_period))
                .await;
        }
    }
}

/// One read, then (if the plan says so) one write of the Lease.
async fn attempt(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    election: &mut Election,
    started: Instant,
) -> Result<(), kube::Error> {
    let current = api.get_opt(&cfg.name).await?;
    let written = match election.plan(current.as_ref(), Instant::now(), jiff::Timestamp::now()) {
        Plan::Wait => return Ok(()),
        Plan::Create(mut lease) => {
            lease.metadata.name = Some(cfg.name.clone());
            api.create(&PostParams::default(), &lease).await?
        }
        Plan::Replace(lease) => {
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await?
        }
    };
    election.written(&written, started, Instant::now());
    Ok(())
}

/// Gives the lease up if this replica holds it (on shutdown), so a follower can take it at once.
pub async fn release(client: &kube::Client, cfg: &LeaseConfig) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let attempt = async {
        let Some(mut lease) = api.get_opt(&cfg.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        // Carries the resourceVersion read: a lease taken over meanwhile is left alone (409).
        api.replace(&cfg.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    };
    match tokio::time::timeout(cfg.retry_period.max(Duration::from_secs(1)), attempt).await {
        Ok(r) => r,
        Err(_) => Ok(()), // The lease simply expires.
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);
    const DEADLINE: Duration = Duration::from_secs(10);
    const RETRY: Duration = Duration::from_secs(2);

    fn cfg(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: identity.into(),
            lease_duration: LEASE,
            renew_deadline: DEADLINE,
            retry_period: RETRY,
        }
    }

    /// An in-memory Lease store with resourceVersions and conflicts, and one fake clock: a
    /// monotonic start plus seconds elapsed, and a wall clock per replica (skewed at will).
    struct World {
        lease: Option<Lease>,
        rv: u64,
        start: Instant,
        elapsed: Duration,
    }

    /// What one attempt of a replica did.
    #[derive(Debug, PartialEq, Eq)]
    enum Did {
        Wrote,
        Waited,
        Conflict,
        Failed,
    }

    impl World {
        fn new() -> Self {
            Self {
                lease: None,
                rv: 0,
                start: Instant::now(),
                elapsed: Duration::ZERO,
            }
        }

        fn now(&self) -> Instant {
            self.start + self.elapsed
        }

        fn advance(&mut self, by: Duration) {
            self.elapsed += by;
        }

        /// The wall clock of a replica whose clock is `skew_secs` off.
        fn wall(&self, skew_secs: i64) -> jiff::Timestamp {
            let base = jiff::Timestamp::from_second(1_700_000_000).unwrap();
            base + jiff::SignedDuration::try_from(self.elapsed).unwrap()
                + jiff::SignedDuration::from_secs(skew_secs)
        }

        /// One attempt of `e`: read, plan, write (unless `fail`, a transient API error).
        fn attempt(&mut self, e: &mut Election, skew_secs: i64, fail: bool) -> Did {
            if fail {
                return Did::Failed;
            }
            let started = self.now();
            let read = self.lease.clone();
            match e.plan(read.as_ref(), self.now(), self.wall(skew_secs)) {
                Plan::Wait => Did::Waited,
                Plan::Create(mut lease) => {
                    if self.lease.is_some() {
                        return Did::Conflict;
                    }
                    self.rv += 1;
                    lease.metadata.resource_version = Some(self.rv.to_string());
                    self.lease = Some(lease.clone());
                    e.written(&lease, started, self.now());
                    Did::Wrote
                }
                Plan::Replace(mut lease) => {
                    let current = self
                        .lease
                        .as_ref()
                        .and_then(|l| l.metadata.resource_version.clone());
                    if lease.metadata.resource_version != current {
                        return Did::Conflict;
                    }
                    self.rv += 1;
                    lease.metadata.resource_version = Some(self.rv.to_string());
                    self.lease = Some(lease.clone());
                    e.written(&lease, started, self.now());
                    Did::Wrote
                }
            }
        }

        fn holder(&self) -> Option<String> {
            self.lease.as_ref()?.spec.as_ref()?.holder_identity.clone()
        }
    }

    #[test]
    fn the_defaults_leave_a_gap_between_stepping_down_and_taking_over() {
        assert_eq!(default_renew_deadline(LEASE), DEADLINE);
        assert!(check_config(&cfg("a")).is_ok());
        let mut bad = cfg("a");
        bad.renew_deadline = LEASE;
        assert!(check_config(&bad).is_err());
        bad.renew_deadline = RETRY;
        assert!(check_config(&bad).is_err());
    }

    /// The term a leader writes with: its identity and the Lease's transitions, which a takeover
    /// increments; a replica that saw another holder has none.
    #[test]
    fn each_takeover_starts_a_later_term() {
        let mut w = World::new();
        let mut a = Election::new(&cfg("a"));
        let mut b = Election::new(&cfg("b"));
        assert_eq!(a.term(), None);
        assert_eq!(w.attempt(&mut a, 0, false), Did::Wrote);
        let first = a.term().unwrap();
        assert_eq!((first.holder.as_str(), first.transitions), ("a", 0));
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        assert_eq!(b.term(), None);
        w.advance(LEASE + RETRY);
        assert_eq!(w.attempt(&mut b, 0, false), Did::Wrote);
        let second = b.term().unwrap();
        assert_eq!((second.holder.as_str(), second.transitions), ("b", 1));
        // The former leader, stuck meanwhile, still thinks it leads in its old term until it
        // reads the Lease again; then it has none.
        assert_eq!(a.term(), Some(first));
        assert_eq!(w.attempt(&mut a, 0, false), Did::Waited);
        assert_eq!(a.term(), None);
    }

    /// The holder's clock runs an hour behind: its renewTime always looks an hour old. As long
    /// as it keeps renewing, a second candidate never takes over (the old rule, renewTime +
    /// duration < local now, let it in at once).
    #[test]
    fn a_skewed_renew_time_does_not_let_a_second_candidate_in() {
        let mut w = World::new();
        let mut a = Election::new(&cfg("a"));
        let mut b = Election::new(&cfg("b"));
        assert_eq!(w.attempt(&mut a, -3600, false), Did::Wrote);
        assert!(a.is_leading(w.now()));
        for _ in 0..100 {
            w.advance(RETRY);
            assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
            assert_eq!(w.attempt(&mut a, -3600, false), Did::Wrote);
            assert!(a.is_leading(w.now()));
            assert!(!b.is_leading(w.now()));
        }
        assert_eq!(w.holder().as_deref(), Some("a"));
        // A renewTime from the future (a clock ahead) does not keep a dead holder either: once
        // it stops renewing, the candidate takes over after the lease duration it observed.
        let mut w = World::new();
        let mut a = Election::new(&cfg("a"));
        let mut b = Election::new(&cfg("b"));
        assert_eq!(w.attempt(&mut a, 3600, false), Did::Wrote);
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        w.advance(LEASE - Duration::from_millis(1));
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        w.advance(Duration::from_millis(1));
        assert_eq!(w.attempt(&mut b, 0, false), Did::Wrote);
        assert_eq!(w.holder().as_deref(), Some("b"));
        assert!(b.is_leading(w.now()));
        assert_eq!(w.attempt(&mut a, 3600, false), Did::Waited);
        assert!(!a.is_leading(w.now()));
    }

    /// Renewals that fail for less than the renew deadline keep the leadership; the first
    /// success renews it for another deadline.
    #[test]
    fn transient_errors_shorter_than_the_renew_deadline_keep_leadership() {
        let mut w = World::new();
        let mut a = Election::new(&cfg("a"));
        assert_eq!(w.attempt(&mut a, 0, false), Did::Wrote);
        // Four failures, 2 s apart: 8 s < 10 s since the last renewal.
        for _ in 0..4 {
            w.advance(RETRY);
            assert_eq!(w.attempt(&mut a, 0, true), Did::Failed);
            assert!(a.is_leading(w.now()), "stepped down after {:?}", w.elapsed);
        }
        w.advance(RETRY - Duration::from_millis(1));
        assert!(a.is_leading(w.now()));
        assert_eq!(w.attempt(&mut a, 0, false), Did::Wrote);
        w.advance(DEADLINE - Duration::from_millis(1));
        assert!(a.is_leading(w.now()));
    }

    /// Failures lasting the renew deadline end the leadership, before the lease expires for a
    /// follower (who then takes over); the old leader does not get it back while the new one
    /// renews.
    #[test]
    fn errors_lasting_the_renew_deadline_step_down_before_a_follower_takes_over() {
        let mut w = World::new();
        let mut a = Election::new(&cfg("a"));
        let mut b = Election::new(&cfg("b"));
        assert_eq!(w.attempt(&mut a, 0, false), Did::Wrote);
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        let renewed = w.now();
        let mut stepped_down = None;
        let mut took_over = None;
        while took_over.is_none() {
            w.advance(RETRY / 4);
            let _ = w.attempt(&mut a, 0, true);
            if stepped_down.is_none() && !a.is_leading(w.now()) {
                stepped_down = Some(w.now() - renewed);
            }
            if w.attempt(&mut b, 0, false) == Did::Wrote {
                took_over = Some(w.now() - renewed);
            }
            // Never two leaders at once.
            assert!(!(a.is_leading(w.now()) && b.is_leading(w.now())));
        }
        assert_eq!(stepped_down, Some(DEADLINE));
        assert_eq!(took_over, Some(LEASE));
        assert_eq!(w.holder().as_deref(), Some("b"));
        // A's errors end; it sees B renewing and stays a follower.
        for _ in 0..20 {
            w.advance(RETRY);
            assert_eq!(w.attempt(&mut b, 0, false), Did::Wrote);
            assert_eq!(w.attempt(&mut a, 0, false), Did::Waited);
            assert!(!a.is_leading(w.now()));
        }
    }

    /// Two candidates racing for an expired or released lease: the resourceVersion lets one
    /// win; the other gets a conflict and follows.
    #[test]
    fn racing_candidates_are_told_apart_by_the_resource_version() {
        let mut w = World::new();
        let mut a = Election::new(&cfg("a"));
        let mut b = Election::new(&cfg("b"));
        let mut c = Election::new(&cfg("c"));
        assert_eq!(w.attempt(&mut a, 0, false), Did::Wrote);
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        assert_eq!(w.attempt(&mut c, 0, false), Did::Waited);
        w.advance(LEASE);
        // Both read the same expired lease before either writes.
        let read = w.lease.clone();
        let plan_b = b.plan(read.as_ref(), w.now(), w.wall(0));
        let plan_c = c.plan(read.as_ref(), w.now(), w.wall(0));
        assert!(matches!(plan_b, Plan::Replace(_)) && matches!(plan_c, Plan::Replace(_)));
        assert_eq!(w.attempt(&mut b, 0, false), Did::Wrote);
        // C's write carries the old resourceVersion: the store refuses it.
        let Plan::Replace(stale) = plan_c else {
            panic!("no plan")
        };
        assert_ne!(
            stale.metadata.resource_version,
            w.lease.as_ref().unwrap().metadata.resource_version
        );
        assert!(!c.is_leading(w.now()));
        // Reading again, C sees B (a change) and waits a whole lease duration.
        assert_eq!(w.attempt(&mut c, 0, false), Did::Waited);
        let spec = w.lease.as_ref().unwrap().spec.clone().unwrap();
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        // A released lease (no holder) is taken at once.
        w.lease
            .as_mut()
            .unwrap()
            .spec
            .as_mut()
            .unwrap()
            .holder_identity = None;
        w.rv += 1;
        w.lease.as_mut().unwrap().metadata.resource_version = Some(w.rv.to_string());
        assert!(b.is_leading(w.now()));
        assert_eq!(w.attempt(&mut c, 0, false), Did::Wrote);
        assert!(c.is_leading(w.now()));
        // B, well within its renew deadline, sees another holder and stops leading at once.
        assert!(b.is_leading(w.now()));
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        assert!(!b.is_leading(w.now()));
    }

    /// A follower waits for the longer of its own lease duration and the holder's declared one.
    #[test]
    fn followers_honour_the_holders_declared_duration() {
        let mut w = World::new();
        let mut long = cfg("a");
        long.lease_duration = Duration::from_secs(60);
        let mut a = Election::new(&long);
        let mut b = Election::new(&cfg("b"));
        assert_eq!(w.attempt(&mut a, 0, false), Did::Wrote);
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        w.advance(Duration::from_secs(59));
        assert_eq!(w.attempt(&mut b, 0, false), Did::Waited);
        w.advance(Duration::from_secs(1));
        assert_eq!(w.attempt(&mut b, 0, false), Did::Wrote);
    }

    #[tokio::test]
    async fn leadership_ends_at_the_deadline_without_the_election_task() {
        let (publisher, leadership) = leadership();
        let mut changes = leadership.changes();
        assert!(!leadership.is_leading());
        publisher.publish(
            Some(Instant::now() + Duration::from_millis(200)),
            None,
            "me",
        );
        assert!(leadership.is_leading());
        assert!(*changes.borrow_and_update());
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Writers see it at once; watchers once the task notices.
        assert!(!leadership.is_leading());
        publisher
            .meanwhile("me", tokio::time::sleep(Duration::from_millis(1)))
            .await;
        publisher.refresh("me");
        assert!(!*changes.borrow_and_update());
        // A deadline passing while the task waits is told at once.
        publisher.publish(Some(Instant::now() + Duration::from_millis(50)), None, "me");
        assert!(*changes.borrow_and_update());
        let waited = Instant::now();
        publisher
            .meanwhile("me", async {
                changes.changed().await.unwrap();
                assert!(!*changes.borrow());
            })
            .await;
        assert!(waited.elapsed() < Duration::from_secs(5));
    }
}
