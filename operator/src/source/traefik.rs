//! Traefik's CRDs in `sluice run`. They are optional: a cluster may have Traefik's chart
//! installed (both groups, or one), or nothing Traefik at all. Which kinds are *served* is asked
//! of API discovery (`/apis/traefik.io/v1alpha1`, `/apis/traefik.containo.us/v1alpha1`), each
//! kind on its own; those served are watched through the same kept snapshot as every other kind
//! ([`super::kube`]: events applied in place, relists compared per kind and namespace). Those not
//! served are not watched, and the operator says so once, when that set changes.
//!
//! Discovery is asked again every [`DISCOVERY_INTERVAL`] (by the task [`TraefikWatches::maintain`]),
//! so CRDs installed later are picked up and CRDs removed stop their watches and take their
//! objects out of the snapshot. Rediscovery rather than a watch on CustomResourceDefinitions: it
//! needs no permission (discovery is open to every authenticated user), where a CRD watch would
//! need `list`/`watch` on every CRD of the cluster; and it says what the API server *serves*
//! (a CRD that is stored but not yet established, or that no longer serves `v1alpha1`, serves
//! nothing). Its cost is two small GETs per interval, and a delay of at most one interval.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::kube::{Notify, WatchScope, watch_task};
use super::watched::{WatchId, Watched};
use crate::api::traefik::{self as t, Group};
use crate::snapshot::{Kind, ObjKey, SharedObject, TraefikKind};

/// How often discovery is asked again (the default of `--traefik-discovery-interval-seconds`).
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);

/// The Traefik kinds the operator watches (those the snapshot holds).
pub const WATCHED_KINDS: [TraefikKind; 7] = [
    TraefikKind::IngressRoute,
    TraefikKind::Middleware,
    TraefikKind::IngressRouteTcp,
    TraefikKind::TlsOption,
    TraefikKind::TlsStore,
    TraefikKind::TraefikService,
    TraefikKind::ServersTransport,
];

/// Both groups, `traefik.io` first.
pub const GROUPS: [Group; 2] = [Group::TraefikIo, Group::ContainoUs];

/// One Traefik resource: a kind of one group.
pub type Resource = (TraefikKind, Group);

/// The resource name (plural) of a kind, as Traefik's CRDs and Sluice's name it.
pub fn plural(kind: TraefikKind) -> &'static str {
    match kind {
        TraefikKind::IngressRoute => "ingressroutes",
        TraefikKind::Middleware => "middlewares",
        TraefikKind::IngressRouteTcp => "ingressroutetcps",
        TraefikKind::TlsOption => "tlsoptions",
        TraefikKind::TlsStore => "tlsstores",
        TraefikKind::TraefikService => "traefikservices",
        TraefikKind::ServersTransport => "serverstransports",
    }
}

/// `ingressroutes.traefik.io`: how a resource is named in the log.
pub fn resource_name((kind, group): Resource) -> String {
    let group = group.api_version().split('/').next().unwrap_or_default();
    format!("{}.{group}", plural(kind))
}

fn api_resource((kind, group): Resource) -> ApiResource {
    let api_version = group.api_version();
    let (g, version) = api_version.split_once('/').unwrap_or((api_version, ""));
    ApiResource {
        group: g.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: kind.as_str().to_owned(),
        plural: plural(kind).to_owned(),
    }
}

/// What discovery answered for one group.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupAnswer {
    /// 404: the group version is not served.
    Absent,
    Served(APIResourceList),
    /// Any other failure: what is watched stays as it is.
    Failed(String),
}

/// The kinds of `group` an APIResourceList serves in a way the operator can watch, and a note
/// for each entry that names a watched kind but cannot be used (not namespaced, no `list` or
/// `watch`, another kind, another group version). Pure; never fails on odd answers.
pub fn served_kinds(group: Group, list: &APIResourceList) -> (BTreeSet<TraefikKind>, Vec<String>) {
    let mut served = BTreeSet::new();
    let mut notes = Vec::new();
    if list.group_version != group.api_version() {
        notes.push(format!(
            "discovery of {} answered for {:?}; ignored",
            group.api_version(),
            list.group_version
        ));
        return (served, notes);
    }
    for kind in WATCHED_KINDS {
        let Some(entry) = list.resources.iter().find(|r| r.name == plural(kind)) else {
            continue;
        };
        let name = resource_name((kind, group));
        let verbs = |v: &str| entry.verbs.iter().any(|have| have == v);
        if entry.kind != kind.as_str() {
            notes.push(format!(
                "{name} is served as kind {:?}, not {}: not watched",
                entry.kind,
                kind.as_str()
            ));
        } else if !entry.namespaced {
            notes.push(format!("{name} is cluster-scoped: not watched"));
        } else if !(verbs("list") && verbs("watch")) {
            notes.push(format!(
                "{name} is served without list and watch (verbs {:?}): not watched",
                entry.verbs
            ));
        } else {
            served.insert(kind);
        }
    }
    (served, notes)
}

/// Asks discovery about one group.
async fn discover_group(client: &Client, group: Group) -> GroupAnswer {
    match client.list_api_group_resources(group.api_version()).await {
        Ok(list) => GroupAnswer::Served(list),
        Err(kube::Error::Api(e)) if e.code == 404 => GroupAnswer::Absent,
        Err(e) => GroupAnswer::Failed(e.to_string()),
    }
}

/// The resources to watch given each group's answer; a group whose discovery failed keeps what
/// `current` watches of it. Also returns the notes to log. Pure.
pub fn wanted(
    answers: &[(Group, GroupAnswer)],
    current: &BTreeSet<Resource>,
) -> (BTreeSet<Resource>, Vec<String>) {
    let mut out = BTreeSet::new();
    let mut notes = Vec::new();
    for (group, answer) in answers {
        match answer {
            GroupAnswer::Absent => {}
            GroupAnswer::Served(list) => {
                let (kinds, n) = served_kinds(*group, list);
                out.extend(kinds.into_iter().map(|k| (k, *group)));
                notes.extend(n);
            }
            GroupAnswer::Failed(e) => {
                notes.push(format!(
                    "cannot ask discovery about {}: {e}; watches unchanged",
                    group.api_version()
                ));
                out.extend(current.iter().filter(|(_, g)| g == group).copied());
            }
        }
    }
    (out, notes)
}

/// The sentence logged when the set of watched Traefik resources becomes `now`.
pub fn describe(now: &BTreeSet<Resource>) -> String {
    let all: Vec<Resource> = GROUPS
        .iter()
        .flat_map(|g| WATCHED_KINDS.iter().map(move |k| (*k, *g)))
        .collect();
    let names = |rs: &mut dyn Iterator<Item = &Resource>| {
        rs.map(|r| resource_name(*r)).collect::<Vec<_>>().join(", ")
    };
    let missing: Vec<Resource> = all.iter().filter(|r| !now.contains(r)).copied().collect();
    if now.is_empty() {
        format!(
            "Traefik's CRDs are not served ({}): Traefik objects are not watched; \
             discovery is asked again periodically",
            names(&mut missing.iter())
        )
    } else if missing.is_empty() {
        format!("watching Traefik objects: {}", names(&mut now.iter()))
    } else {
        format!(
            "watching Traefik objects: {}; not served, so not watched: {}",
            names(&mut now.iter()),
            names(&mut missing.iter())
        )
    }
}

/// The running Traefik watches, by resource (one per watched namespace each).
type Active = BTreeMap<Resource, Vec<(WatchId, tokio::task::AbortHandle)>>;

#[derive(Default)]
struct State {
    active: Active,
    /// What was last said in the log (`None`: nothing yet), and the last notes.
    reported: Option<BTreeSet<Resource>>,
    notes: Vec<String>,
    /// Tells a restarted watch (a resource served again) from the one it replaces.
    serial: u64,
}

/// The Traefik watches of `sluice run`, started and stopped as discovery says. Cheap to clone.
#[derive(Clone)]
pub struct TraefikWatches {
    client: Client,
    notify: Notify,
    scope: WatchScope,
    state: Arc<Mutex<State>>,
}

impl TraefikWatches {
    pub(super) fn new(client: Client, notify: Notify, scope: WatchScope) -> Self {
        Self {
            client,
            notify,
            scope,
            state: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The resources watched now.
    pub fn watched(&self) -> BTreeSet<Resource> {
        self.state().active.keys().copied().collect()
    }

    /// Asks discovery about both groups and starts or stops watches to match. Returns whether
    /// anything changed.
    pub async fn discover(&self) -> bool {
        let mut answers = Vec::new();
        for group in GROUPS {
            answers.push((group, discover_group(&self.client, group).await));
        }
        let (want, notes) = wanted(&answers, &self.watched());
        self.ensure(&want, notes)
    }

    /// Asks discovery again every `interval`. Never returns.
    pub async fn maintain(self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            self.discover().await;
        }
    }

    /// Watches exactly `want`; logs what is watched when that changes, and `notes` when they
    /// change. A resource no longer served loses its watches and its objects.
    pub fn ensure(&self, want: &BTreeSet<Resource>, notes: Vec<String>) -> bool {
        let mut state = self.state();
        if state.notes != notes {
            for note in &notes {
                tracing::warn!("{note}");
            }
            state.notes = notes;
        }
        let mut changed = false;
        let gone: Vec<Resource> = state
            .active
            .keys()
            .filter(|r| !want.contains(r))
            .copied()
            .collect();
        for resource in gone {
            for (id, task) in state.active.remove(&resource).unwrap_or_default() {
                task.abort();
                self.notify.stop_watch(&id);
            }
            self.notify
                .forget_kind(Kind::Traefik(resource.0, resource.1));
            changed = true;
        }
        for resource in want {
            if state.active.contains_key(resource) {
                continue;
            }
            state.serial += 1;
            let serial = state.serial;
            let tasks = self
                .scope
                .watches()
                .into_iter()
                .map(|ns| self.start(*resource, ns, serial))
                .collect();
            state.active.insert(*resource, tasks);
            changed = true;
        }
        if state.reported.as_ref() != Some(want) {
            tracing::info!(
                watched = %want.iter().map(|r| resource_name(*r)).collect::<Vec<_>>().join(","),
                "{}",
                describe(want)
            );
            state.reported = Some(want.clone());
        }
        changed
    }

    fn start(
        &self,
        resource: Resource,
        ns: Option<String>,
        serial: u64,
    ) -> (WatchId, tokio::task::AbortHandle) {
        let ar = api_resource(resource);
        let api: Api<DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let id = WatchId::new(Kind::Traefik(resource.0, resource.1), ns, serial);
        let task = watch_task(
            api,
            watcher::Config::default(),
            id.clone(),
            self.notify.clone(),
            |_| {},
            move |o| watched(resource, o),
        );
        (id, task)
    }
}

/// One watched object as the snapshot holds it: decoded as its kind, or why it did not decode.
pub fn watched((kind, group): Resource, obj: DynamicObject) -> Watched {
    let key = ObjKey::new(obj.namespace().unwrap_or_default(), obj.name_any());
    let mut value = match obj.data {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    value.insert("apiVersion".into(), group.api_version().into());
    value.insert("kind".into(), kind.as_str().into());
    value.insert(
        "metadata".into(),
        serde_json::to_value(&obj.metadata).unwrap_or_default(),
    );
    let value = serde_json::Value::Object(value);
    let shared =
        match kind {
            TraefikKind::IngressRoute => {
                t::decode::<t::IngressRoute>(value).map(|d| SharedObject::TraefikRoute(Arc::new(d)))
            }
            TraefikKind::Middleware => t::decode::<t::Middleware>(value)
                .map(|d| SharedObject::TraefikMiddleware(Arc::new(d))),
            TraefikKind::IngressRouteTcp => t::decode::<t::IngressRouteTCP>(value)
                .map(|d| SharedObject::TraefikTcpRoute(Arc::new(d))),
            TraefikKind::TlsOption => t::decode::<t::TLSOption>(value)
                .map(|d| SharedObject::TraefikTlsOption(Arc::new(d))),
            TraefikKind::TlsStore => {
                t::decode::<t::TLSStore>(value).map(|d| SharedObject::TraefikTlsStore(Arc::new(d)))
            }
            TraefikKind::TraefikService => t::decode::<t::TraefikService>(value)
                .map(|d| SharedObject::TraefikService(Arc::new(d))),
            TraefikKind::ServersTransport => t::decode::<t::ServersTransport>(value)
                .map(|d| SharedObject::TraefikTransport(Arc::new(d))),
        };
    match shared {
        Some(o) => Watched::Object(o),
        None => Watched::Absent(key),
    }
}

#[cfg(test)]
#[path = "traefik_tests.rs"]
mod tests;
