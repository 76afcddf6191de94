//! Which Secret watches run: the [`SecretScope`] the objects call for, plus the namespaces
//! that left it less than a grace period ago.
//!
//! Tenants move the scope: a basicAuth Middleware reached across namespaces, an IngressRoute
//! asking for upstream validation, a TLSCertificateDelegation each add their namespace while
//! they exist (see [`super::secret_reach`]). A tenant toggling such a setting on and off would
//! otherwise stop and restart a namespace's watch, and each restart lists that namespace's
//! Secrets again. A namespace leaving the scope keeps its watch (and its Secrets stay in the
//! snapshot) for [`SECRET_WATCH_GRACE`]; coming back within it restarts nothing.
//!
//! No bound on how many namespaces one change adds: a tenant's object adds only its own
//! namespace (one per object, and only where the tenant may write), and only Gateways, which
//! tenants do not write, add several at once. Listing a new namespace never holds up the
//! rebuilds of the others (the watch lists concurrently and its Secrets arrive as events).
//!
//! The cluster-wide watch (scope [`SecretScope::All`]) has no grace: it replaces, or is
//! replaced by, the namespaced watches at once, so two watches never list the same Secret.
//!
//! Pure: the caller passes the time, so tests drive the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::kube::SecretScope;

/// How long a namespace that left the Secret scope keeps its watch.
pub const SECRET_WATCH_GRACE: Duration = Duration::from_secs(180);

/// A Secret watch: `None` is the cluster-wide one.
pub type SecretWatch = Option<String>;

/// The namespaces whose watch outlives their leaving the scope, with when each left.
#[derive(Debug)]
pub struct GraceScope {
    grace: Duration,
    leaving: BTreeMap<String, Instant>,
}

/// The watches to run now, and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchPlan {
    /// Every watch that should run (the scope's and those in grace).
    pub watches: BTreeSet<SecretWatch>,
    /// The same as a scope: Secrets outside it leave the snapshot.
    pub scope: SecretScope,
    /// How many of [`Self::watches`] the scope calls for.
    pub needed: usize,
    /// How many run only for their grace period.
    pub in_grace: usize,
    /// When the earliest grace period ends: the plan must be made again then.
    pub next_expiry: Option<Instant>,
}

impl GraceScope {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            leaving: BTreeMap::new(),
        }
    }

    /// The watches to run for `wanted`, given those `running` now, at `now`. A namespaced watch
    /// `wanted` no longer asks for keeps running until `grace` after it first left.
    pub fn plan(
        &mut self,
        wanted: &SecretScope,
        running: &BTreeSet<SecretWatch>,
        now: Instant,
    ) -> WatchPlan {
        let SecretScope::Namespaces(needed) = wanted else {
            self.leaving.clear();
            return WatchPlan {
                watches: BTreeSet::from([None]),
                scope: SecretScope::All,
                needed: 1,
                in_grace: 0,
                next_expiry: None,
            };
        };
        // Back in the scope, or no longer running: no grace to track.
        self.leaving
            .retain(|ns, _| !needed.contains(ns) && running.contains(&Some(ns.clone())));
        for ns in running.iter().flatten() {
            if !needed.contains(ns) {
                self.leaving.entry(ns.clone()).or_insert(now);
            }
        }
        let grace = self.grace;
        self.leaving
            .retain(|_, left| now.saturating_duration_since(*left) < grace);
        let mut namespaces = needed.clone();
        namespaces.extend(self.leaving.keys().cloned());
        WatchPlan {
            watches: namespaces.iter().cloned().map(Some).collect(),
            scope: SecretScope::Namespaces(namespaces),
            needed: needed.len(),
            in_grace: self.leaving.len(),
            next_expiry: self.leaving.values().map(|left| *left + grace).min(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(60);

    fn scope(names: &[&str]) -> SecretScope {
        SecretScope::Namespaces(names.iter().map(|s| (*s).to_owned()).collect())
    }

    fn watches(names: &[&str]) -> BTreeSet<SecretWatch> {
        names.iter().map(|s| Some((*s).to_owned())).collect()
    }

    /// Plans at `now` and takes the plan's watches as running, as the caller does.
    fn step(
        g: &mut GraceScope,
        running: &mut BTreeSet<SecretWatch>,
        wanted: &SecretScope,
        now: Instant,
    ) -> WatchPlan {
        let plan = g.plan(wanted, running, now);
        running.clone_from(&plan.watches);
        plan
    }

    #[test]
    fn a_namespace_leaving_the_scope_keeps_its_watch_for_the_grace_period_only() {
        let t0 = Instant::now();
        let mut g = GraceScope::new(GRACE);
        let mut running = BTreeSet::new();
        let plan = step(&mut g, &mut running, &scope(&["root", "tenant"]), t0);
        assert_eq!(plan.watches, watches(&["root", "tenant"]));
        assert_eq!((plan.needed, plan.in_grace, plan.next_expiry), (2, 0, None));

        // The tenant's Middleware stops naming its Secret: the watch stays, Secrets too.
        let t1 = t0 + Duration::from_secs(5);
        let plan = step(&mut g, &mut running, &scope(&["root"]), t1);
        assert_eq!(plan.watches, watches(&["root", "tenant"]));
        assert_eq!(plan.scope, scope(&["root", "tenant"]));
        assert_eq!((plan.needed, plan.in_grace), (1, 1));
        assert_eq!(plan.next_expiry, Some(t1 + GRACE));

        // Still out just before the end of the grace: kept; at its end: stopped.
        let plan = step(&mut g, &mut running, &scope(&["root"]), t1 + GRACE / 2);
        assert_eq!(plan.watches, watches(&["root", "tenant"]));
        assert_eq!(
            plan.next_expiry,
            Some(t1 + GRACE),
            "the grace is not renewed"
        );
        let plan = step(&mut g, &mut running, &scope(&["root"]), t1 + GRACE);
        assert_eq!(plan.watches, watches(&["root"]));
        assert_eq!((plan.in_grace, plan.next_expiry), (0, None));
    }

    #[test]
    fn toggling_within_the_grace_never_stops_the_watch_and_each_leave_starts_a_new_grace() {
        let t0 = Instant::now();
        let mut g = GraceScope::new(GRACE);
        let mut running = BTreeSet::new();
        step(&mut g, &mut running, &scope(&["root", "tenant"]), t0);
        let mut now = t0;
        for i in 0..20 {
            now += Duration::from_secs(10);
            let wanted = if i % 2 == 0 {
                scope(&["root"])
            } else {
                scope(&["root", "tenant"])
            };
            let plan = step(&mut g, &mut running, &wanted, now);
            assert_eq!(plan.watches, watches(&["root", "tenant"]), "toggle {i}");
        }
        // Last toggle put it back at `now`; it leaves once more and its grace starts then.
        let left = now + Duration::from_secs(1);
        let plan = step(&mut g, &mut running, &scope(&["root"]), left);
        assert_eq!(plan.next_expiry, Some(left + GRACE));
        let plan = step(&mut g, &mut running, &scope(&["root"]), left + GRACE);
        assert_eq!(plan.watches, watches(&["root"]));
    }

    #[test]
    fn the_cluster_wide_watch_has_no_grace_either_way() {
        let t0 = Instant::now();
        let mut g = GraceScope::new(GRACE);
        let mut running = BTreeSet::new();
        step(&mut g, &mut running, &scope(&["a", "b"]), t0);
        step(&mut g, &mut running, &scope(&["a"]), t0);
        // A Gateway accepting every namespace: one cluster-wide watch replaces them all.
        let plan = step(&mut g, &mut running, &SecretScope::All, t0);
        assert_eq!(plan.watches, BTreeSet::from([None]));
        assert_eq!((plan.scope, plan.in_grace), (SecretScope::All, 0));
        // And back: only what the scope names, at once (two watches never list one Secret).
        let plan = step(&mut g, &mut running, &scope(&["a"]), t0);
        assert_eq!(plan.watches, watches(&["a"]));
        assert_eq!((plan.needed, plan.in_grace), (1, 0));
    }

    #[test]
    fn expiries_are_per_namespace_and_the_earliest_is_next() {
        let t0 = Instant::now();
        let mut g = GraceScope::new(GRACE);
        let mut running = BTreeSet::new();
        step(&mut g, &mut running, &scope(&["x", "y", "z"]), t0);
        let t1 = t0 + Duration::from_secs(1);
        step(&mut g, &mut running, &scope(&["y", "z"]), t1);
        let t2 = t0 + Duration::from_secs(30);
        let plan = step(&mut g, &mut running, &scope(&["z"]), t2);
        assert_eq!(plan.watches, watches(&["x", "y", "z"]));
        assert_eq!(plan.next_expiry, Some(t1 + GRACE));
        let plan = step(&mut g, &mut running, &scope(&["z"]), t1 + GRACE);
        assert_eq!(plan.watches, watches(&["y", "z"]));
        assert_eq!(plan.next_expiry, Some(t2 + GRACE));
        // A namespace running though the plan never saw it (a watch started elsewhere) is
        // graced like any other.
        let mut g = GraceScope::new(GRACE);
        let plan = g.plan(&scope(&[]), &watches(&["q"]), t0);
        assert_eq!(plan.watches, watches(&["q"]));
    }
}
