//! The one pipeline from a snapshot to what an instance serves: snapshot + change set in, DAG
//! with statuses and translated xDS resources out. `sluice standalone`, the controller's route
//! reconcilers and `sluice render` all call it; publishing to the xDS cache is the caller's.
//!
//! Per Gateway instance an [`InstancePipeline`] keeps the incremental DAG ([`IncrementalDag`]):
//! a change rebuilds only the roots it touches, and a change that touches none of the instance's
//! dependencies does no work (no build, no translation). Its translation is incremental too
//! ([`Translator`]: only changed virtual hosts, clusters, endpoints and secrets are encoded
//! again); one-shot callers (`render`) translate from scratch with [`translate_dag`], the
//! reference the incremental translation is tested against.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dag::{ClaimRecord, Dag, IncrementalDag, Selection, UpdateStats};
use crate::snapshot::{ChangeSet, ClusterSnapshot};
use crate::xds::cache::{InstanceResources, Rejection};
use crate::xds::translate::{self, Resources, TranslateError, TranslateOptions, Translator};

/// Turns a DAG into Envoy resources from scratch (one-shot callers; the reference of
/// [`Translator`]).
pub fn translate_dag(dag: &Dag, opts: &TranslateOptions) -> Result<Resources, TranslateError> {
    translate::translate(dag, opts)
}

/// [`translate_dag`] one resource type at a time (`sluice render` writes each and drops it).
pub fn translate_by_type<'a>(
    dag: &'a Dag,
    opts: &'a TranslateOptions,
) -> Result<translate::ByType<'a>, TranslateError> {
    translate::ByType::new(dag, opts)
}

/// One Gateway instance's state between changes.
#[derive(Debug)]
pub struct InstancePipeline {
    dag: IncrementalDag,
    /// Keeps the encoded resources of the previous translation; made at the first one.
    translator: Option<Translator>,
    /// Whether the last translation succeeded with the translator's options (a failed one is
    /// retried with the next change; a change of ports translates again).
    translated: bool,
}

/// What one update produced.
#[derive(Debug)]
pub struct Built {
    /// The instance's DAG and statuses, current.
    pub dag: Arc<Dag>,
    pub stats: UpdateStats,
    /// New resources, when the DAG or the options changed; `None` when what was published last
    /// still holds. Unchanged resources are shared (`Arc`) with the previous translation.
    pub resources: Option<Result<InstanceResources, TranslateError>>,
    /// Time spent building the DAG, and translating (when it did), for the metrics only.
    pub build_time: Duration,
    pub translate_time: Option<Duration>,
}

impl InstancePipeline {
    pub fn new(sel: Selection) -> Self {
        Self {
            dag: IncrementalDag::new(sel),
            translator: None,
            translated: false,
        }
    }

    /// Brings the instance up to `snap`, which differs from the snapshot of the previous call
    /// by `changes` ([`ChangeSet::everything`] when unknown). The first call, and a change of
    /// selection, builds everything.
    pub fn update(
        &mut self,
        snap: &Arc<ClusterSnapshot>,
        sel: &Selection,
        changes: &ChangeSet,
        opts: &TranslateOptions,
    ) -> Built {
        let opts = &opts.clone().with_selection(sel);
        let started = Instant::now();
        let stats = self.dag.update(snap, sel, changes);
        let build_time = started.elapsed();
        let same_options = self.translator.as_ref().map(Translator::options) == Some(opts);
        let translate = stats.changed || !same_options || !self.translated;
        let started = Instant::now();
        let resources = translate.then(|| {
            let translator = self
                .translator
                .get_or_insert_with(|| Translator::new(opts.clone()));
            translator.set_options(opts);
            // Only what the DAG update touched, when the translator holds the previous DAG's
            // translation (same options, and it succeeded).
            let result = if same_options && self.translated {
                translator.translate_changes(self.dag.dag(), self.dag.last_diff())
            } else {
                translator.translate(self.dag.dag())
            };
            // A failed translation is retried with the next change.
            self.translated = result.is_ok();
            result
        });
        Built {
            dag: self.dag.shared_dag(),
            stats,
            translate_time: resources.is_some().then(|| started.elapsed()),
            resources,
            build_time,
        }
    }

    /// [`Self::update`], kept going when it panics (a bug: no input may make a build panic, but
    /// one that still could must not stop every other Gateway, nor leave this one's state half
    /// updated). After a panic the next update builds and translates everything again; the
    /// claim dates are kept ([`IncrementalDag::resume`]); the caller keeps serving the last
    /// good configuration.
    pub fn update_guarded(
        &mut self,
        snap: &Arc<ClusterSnapshot>,
        sel: &Selection,
        changes: &ChangeSet,
        opts: &TranslateOptions,
    ) -> Result<Built, BuildPanicked> {
        let update = AssertUnwindSafe(|| self.update(snap, sel, changes, opts));
        std::panic::catch_unwind(update).map_err(|payload| {
            self.dag = IncrementalDag::resume(&self.dag);
            self.translator = None;
            self.translated = false;
            BuildPanicked {
                message: panic_message(payload.as_ref()),
            }
        })
    }

    pub fn dag(&self) -> &Dag {
        self.dag.dag()
    }

    /// Claim dates for the first build (see [`IncrementalDag::import_claims`]).
    pub fn import_claims(&mut self, record: ClaimRecord) -> bool {
        self.dag.import_claims(record)
    }

    /// The record of contested claims to keep across restarts, and how many names `budget`
    /// left out; `None` while nothing is built (see [`IncrementalDag::claim_record`]).
    pub fn claim_record(&self, budget: usize) -> Option<(ClaimRecord, usize)> {
        self.dag.claim_record(budget)
    }

    /// Quarantines the objects `rejections` (the instance's rejections still in force, see
    /// [`crate::xds::cache::Cache::rejections`]) are blamed on in the current DAG: from the next
    /// update on they are built as invalid with Envoy's message, so the configuration leaves
    /// their parts out and the resource every tenant shares is accepted again (see
    /// `dag::quarantine`). Returns the objects newly quarantined (DAG owner names).
    ///
    /// Only a rejected HTTPS listener is acted on: it is the resource whose one rejected part
    /// holds back everyone's (every other resource is held back alone, by name, and the others
    /// go on without a quarantine). And only when every object it is blamed on is of one
    /// namespace (one team's objects, never another's along with them) and some filter chain of
    /// the listener is not theirs (when every chain is blamed, as when a Sluice upgrade changes
    /// them all, the last accepted listener keeps serving them, which quarantine would stop).
    pub fn quarantine_rejected(&mut self, rejections: &[Rejection]) -> Vec<String> {
        let mut newly = Vec::new();
        if rejections.is_empty() {
            return newly;
        }
        let dag = self.dag.shared_dag();
        fn namespace(owner: &str) -> Option<&str> {
            crate::dag::owner::Owner::parse(owner).map(|o| o.namespace())
        }
        for r in rejections {
            if r.type_url != crate::xds::resource::type_url::LISTENER {
                continue;
            }
            let owners = crate::xds::attribution::rejection_owners(&dag, r);
            let namespaces: BTreeSet<Option<&str>> = owners.iter().map(|o| namespace(o)).collect();
            if namespaces.len() != 1 || namespaces.contains(&None) {
                continue;
            }
            // The HTTPS listener's chains: TLS virtual hosts (terminated or passed through).
            let others = (dag.virtual_hosts.iter())
                .filter(|vh| vh.tls.is_some() || vh.tcp_proxy.is_some())
                .any(|vh| !owners.contains(&vh.owner));
            if !others {
                continue;
            }
            // All or none: a part of them would leave the listener rejected all the same.
            let quarantined = self.dag.quarantined();
            let fresh: Vec<&String> = owners.iter().filter(|o| !quarantined.holds(o)).collect();
            let ns = namespaces.first().copied().flatten().unwrap_or_default();
            let cap = crate::dag::quarantine::MAX_QUARANTINED;
            if quarantined.count_in(ns) + fresh.len() > cap {
                continue;
            }
            let description = crate::dag::quarantine::description(&r.error);
            for owner in fresh {
                if self.dag.quarantine(owner, description.clone()) {
                    newly.push(owner.clone());
                }
            }
        }
        newly
    }

    /// The objects quarantined now (see [`Self::quarantine_rejected`]).
    pub fn quarantined(&self) -> &crate::dag::quarantine::Quarantine {
        self.dag.quarantined()
    }

    /// The current DAG's statuses counted, and those not valid (kept per change).
    pub fn status_tally(&self) -> &crate::dag::StatusTally {
        self.dag.status_tally()
    }

    /// The same record worked out from every claimed name (the benchmark's baseline).
    #[doc(hidden)]
    pub fn claim_record_from_scratch(&self, budget: usize) -> Option<(ClaimRecord, usize)> {
        self.dag.claim_record_from_scratch(budget)
    }
}

/// An update that panicked, with the panic's message.
#[derive(Debug)]
pub struct BuildPanicked {
    pub message: String,
}

impl std::fmt::Display for BuildPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "building the configuration panicked: {}", self.message)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// The pipelines of every instance of one source (a manifest directory), each updated with the
/// same snapshot and change set.
#[derive(Debug, Default)]
pub struct Pipelines {
    instances: BTreeMap<String, InstancePipeline>,
}

impl Pipelines {
    /// The pipeline of `sel`'s instance, new if it had none.
    pub fn instance(&mut self, sel: &Selection) -> &mut InstancePipeline {
        self.instances
            .entry(sel.gateway.to_string())
            .or_insert_with(|| InstancePipeline::new(sel.clone()))
    }

    /// Each instance's pipeline, by Gateway (`namespace/name`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &InstancePipeline)> {
        self.instances.iter().map(|(k, p)| (k.as_str(), p))
    }

    /// Each instance's pipeline, by Gateway, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut InstancePipeline)> {
        self.instances.iter_mut().map(|(k, p)| (k.as_str(), p))
    }

    /// Forgets instances not named in `wanted` (`namespace/name`).
    pub fn retain(&mut self, wanted: &[String]) {
        self.instances.retain(|k, _| wanted.contains(k));
    }
}

/// One instance built once from scratch (`sluice render`): the same DAG and resources an
/// [`InstancePipeline`] arrives at (property-tested), without keeping anything.
pub fn build_once(
    snap: &Arc<ClusterSnapshot>,
    sel: &Selection,
    opts: &TranslateOptions,
) -> (Arc<Dag>, Result<Resources, TranslateError>) {
    // From scratch: the full build is what the incremental one is tested against, and faster
    // when nothing is kept for a next change.
    let dag = Arc::new(crate::dag::build(snap, sel));
    let resources = translate_dag(&dag, &opts.clone().with_selection(sel));
    (dag, resources)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::{Kind, ObjKey};

    const WORLD: &str = "apiVersion: contour.heptio.com/v1beta1
kind: IngressRoute
metadata: {name: root, namespace: ns}
spec:
  virtualhost: {fqdn: a.example.com}
  routes: [{match: /, services: [{name: s, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: ns}
spec: {ports: [{port: 80}]}
";

    #[test]
    fn an_unrelated_change_neither_builds_nor_translates() {
        let loaded = crate::source::load_sources([("w.yaml", WORLD)]);
        let snap = Arc::new(loaded.snapshot);
        let sel = Selection::default_instance();
        let opts = TranslateOptions::default();
        let mut p = InstancePipeline::new(sel.clone());
        let first = p.update(&snap, &sel, &ChangeSet::everything(), &opts);
        assert_eq!(first.stats.roots_rebuilt, 1);
        assert!(first.resources.unwrap().is_ok());

        let mut next = (*snap).clone();
        next.remove(Kind::Service, &ObjKey::new("other", "x"));
        let mut changes = ChangeSet::default();
        changes.insert(Kind::Service, ObjKey::new("other", "x"));
        let again = p.update(&Arc::new(next), &sel, &changes, &opts);
        assert_eq!(again.stats.roots_rebuilt, 0);
        assert!(again.resources.is_none());
        assert!(Arc::ptr_eq(&first.dag, &again.dag));

        // New ports translate again, without a build.
        let moved = TranslateOptions {
            http_port: 9080,
            ..opts
        };
        let moved = p.update(&snap, &sel, &ChangeSet::default(), &moved);
        assert_eq!(moved.stats.roots_rebuilt, 0);
        assert!(moved.resources.is_some());
    }

    /// A Traefik route `ns/name` for `host`, created at `created`.
    fn traefik_route(ns: &str, name: &str, created: &str, host: &str) -> crate::snapshot::Object {
        let v = serde_json::json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
            "spec": {"routes": [{"match": format!("Host(`{host}`)"), "kind": "Rule",
                                 "services": [{"name": "web", "port": 80}]}]},
        });
        crate::snapshot::Object::TraefikRoute(crate::api::traefik::decode(v).unwrap())
    }

    /// A Contour root `ns/name` for `fqdn`, created at `created`.
    fn contour_root(ns: &str, name: &str, created: &str, fqdn: &str) -> crate::snapshot::Object {
        crate::snapshot::Object::IngressRoute(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
                "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
                "spec": {"virtualhost": {"fqdn": fqdn}, "routes": []},
            }))
            .unwrap(),
        )
    }

    fn owner_of(dag: &Dag, fqdn: &str) -> String {
        let vh = dag.virtual_hosts.iter().find(|v| v.fqdn == fqdn);
        vh.map_or_else(String::new, |v| v.owner.clone())
    }

    /// A build that panics (a bug) is caught: the instance keeps its claim dates, so an old
    /// route edited to claim a held host stays refused after the panic, wherever it happened
    /// (while the claims were compared, or after), and the next update builds again.
    #[test]
    fn a_panicking_build_is_caught_and_keeps_who_holds_which_host() {
        use crate::dag::faults::{self, Stage};
        let sel = Selection::default_instance();
        let opts = TranslateOptions::default();
        for stage in [Stage::ClaimAges, Stage::Build] {
            let mut snap = ClusterSnapshot::default();
            snap.apply(contour_root(
                "victim",
                "v",
                "2025-06-01T00:00:00Z",
                "shop.example.com",
            ));
            snap.apply(traefik_route(
                "att",
                "a",
                "2020-01-01T00:00:00Z",
                "att.example.com",
            ));
            let mut p = InstancePipeline::new(sel.clone());
            let step = |p: &mut InstancePipeline, next: ClusterSnapshot, prev: &ClusterSnapshot| {
                let changes = ChangeSet::diff(prev, &next);
                p.update_guarded(&Arc::new(next), &sel, &changes, &opts)
            };
            let first = step(&mut p, snap.clone(), &ClusterSnapshot::default()).unwrap();
            assert_eq!(owner_of(&first.dag, "shop.example.com"), "victim/v");

            // The old route is edited to claim the held host; the update panics.
            let mut edited = snap.clone();
            edited.apply(traefik_route(
                "att",
                "a",
                "2020-01-01T00:00:00Z",
                "shop.example.com",
            ));
            if stage == Stage::Build {
                // The edit is seen (and refused) first; a later update panics.
                let seen = step(&mut p, edited.clone(), &snap).unwrap();
                assert_eq!(owner_of(&seen.dag, "shop.example.com"), "victim/v");
                snap = edited.clone();
                edited.apply(contour_root(
                    "other",
                    "o",
                    "2025-07-01T00:00:00Z",
                    "o.example.com",
                ));
            }
            faults::arm(stage);
            let err = step(&mut p, edited.clone(), &snap).unwrap_err();
            assert!(err.message.contains("fault injected"), "{err}");

            // Going on: everything built again, the holder kept.
            let mut later = edited.clone();
            later.apply(contour_root(
                "more",
                "m",
                "2025-08-01T00:00:00Z",
                "m.example.com",
            ));
            let after = step(&mut p, later.clone(), &edited).unwrap();
            assert_eq!(
                owner_of(&after.dag, "shop.example.com"),
                "victim/v",
                "{stage:?}"
            );
            assert_eq!(owner_of(&after.dag, "m.example.com"), "more/m");
            assert!(after.resources.unwrap().is_ok());
            let refused = after
                .dag
                .object_statuses
                .iter()
                .find(|s| s.name == "a")
                .unwrap();
            assert_eq!(
                refused.current_status,
                crate::dag::Validity::Invalid,
                "{stage:?}"
            );
            // And it is what a full build with those dates gives.
            assert_eq!(
                *after.dag,
                crate::dag::build_aged(&later, &sel, p.dag.claim_ages()),
                "{stage:?}"
            );
        }
    }
}
