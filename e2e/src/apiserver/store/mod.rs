//! The object store: every object of every served resource, one global resourceVersion counter,
//! a bounded history of change events for watches, and the write semantics (create, update,
//! patch, apply, delete with finalizers and owner-reference garbage collection).
//!
//! This file holds the state, lookups and the event history watches read; the write paths are
//! split by kind of request: [`write`] (create, update, generation, managed fields), [`patch`]
//! (JSON and merge patches, server-side apply), [`delete`] (finalizers, propagation, garbage
//! collection), [`admission`] (what every write is checked against) and [`list`] (selectors and
//! paging).

mod admission;
mod delete;
mod list;
mod patch;
mod schemas;
mod write;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::managed::{Managed, Writer};
use super::meta::{Ids, meta_str};
use super::resources::{self, ResourceType, TypeKey};
use super::selector::{FieldSelector, LabelSelector};

/// `(namespace, name)`; the namespace is `""` for cluster-scoped objects.
pub(crate) type ObjName = (String, String);

/// What a request addresses: a resource, the version it was called with, and a namespace (`""`
/// for all namespaces or a cluster-scoped resource).
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub key: TypeKey,
    pub version: String,
    pub namespace: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Json,
    Merge,
    /// Treated as a JSON merge patch: lists are replaced, never merged by key.
    StrategicMerge,
    Apply,
}

/// `propagationPolicy`. Foreground is carried out like Background (owner first, then dependents).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub propagation: Propagation,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ListOptions {
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

pub(crate) struct Page {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as kept in the history.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub key: TypeKey,
    pub namespace: String,
    pub kind: EventType,
    /// The object as stored (shared with the store while it is the current version).
    pub object: Arc<Value>,
    /// The object before a modification, to turn selector transitions into ADDED/DELETED.
    pub old: Option<Arc<Value>>,
}

#[derive(Debug)]
struct Stored {
    /// Shared with the history's events: a write replaces it, never changes it in place.
    obj: Arc<Value>,
    /// Last applied configuration per `(field manager, status subresource)`.
    applied: BTreeMap<(String, bool), Value>,
    /// What `metadata.managedFields` is made of.
    managed: Managed,
    /// The propagation policy of a deletion waiting for finalizers.
    pending: Propagation,
}

pub(crate) struct Store {
    rv: u64,
    types: BTreeMap<TypeKey, ResourceType>,
    objects: BTreeMap<TypeKey, BTreeMap<ObjName, Stored>>,
    history: VecDeque<Arc<Event>>,
    /// Every event with `rv > history_floor` is still in `history`.
    history_floor: u64,
    /// Per resource: every event of it with `rv >` this is still in `history` (what an
    /// established watch of that resource can miss; a new watch is held to `history_floor`).
    kind_floor: BTreeMap<TypeKey, u64>,
    history_limit: usize,
    ids: Ids,
    /// Accept loopback addresses in Endpoints and EndpointSlices (kube-apiserver never does).
    pub allow_loopback_endpoints: bool,
    /// The write under way stands in for a CRD created through apiextensions v1beta1
    /// (`ApiServer::create_v1beta1_crd`): `preserveUnknownFields: true` is accepted.
    pub v1beta1_crd_write: bool,
    /// The field manager of the write under way, taken by the first object it stores (so
    /// that garbage collection it sets off is nobody's).
    writer: Option<Writer>,
    /// The schemas of every stored CRD, by CRD name (kept with the stored CRDs).
    schemas: BTreeMap<String, schemas::CrdSchemas>,
    /// The resources whose objects changed since [`Store::take_touched`] was last called
    /// (which watches to wake).
    touched: BTreeSet<TypeKey>,
}

fn crd_key() -> TypeKey {
    (
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
    )
}

fn namespace_key() -> TypeKey {
    (String::new(), "namespaces".into())
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let types = resources::builtins()
            .into_iter()
            .map(|t| (t.key(), t))
            .collect();
        let mut store = Self {
            rv: 0,
            types,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_floor: 0,
            kind_floor: BTreeMap::new(),
            history_limit: history_limit.max(1),
            ids: Ids::new(),
            allow_loopback_endpoints: false,
            v1beta1_crd_write: false,
            writer: None,
            schemas: BTreeMap::new(),
            touched: BTreeSet::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let target = Target {
                key: namespace_key(),
                version: "v1".into(),
                namespace: String::new(),
            };
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            // Cannot fail: fixed, valid names in an empty store.
            let _ = store.create(&target, obj, None);
        }
        store
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn types(&self) -> impl Iterator<Item = &ResourceType> + Clone {
        self.types.values()
    }

    /// The resource served at `group/version/plural`.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.serves(version))
    }

    /// The resource and version for an `apiVersion` and `kind`.
    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Option<(&ResourceType, String)> {
        self.types
            .values()
            .filter(|t| t.kind == kind)
            .find_map(|t| t.version_of(api_version).map(|v| (t, v)))
    }

    fn type_of(&self, key: &TypeKey) -> Result<ResourceType, ApiError> {
        self.types
            .get(key)
            .cloned()
            .ok_or_else(ApiError::no_such_path)
    }

    fn stored(&self, key: &TypeKey, ns: &str, name: &str) -> Option<&Stored> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
    }

    fn stored_mut(&mut self, key: &TypeKey, ns: &str, name: &str) -> Option<&mut Stored> {
        self.objects
            .get_mut(key)?
            .get_mut(&(ns.to_string(), name.to_string()))
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(
        &mut self,
        key: &TypeKey,
        kind: EventType,
        object: &Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let event = Event {
            rv: self.rv,
            key: key.clone(),
            namespace: meta_str(object, "namespace").to_string(),
            kind,
            object: Arc::clone(object),
            old,
        };
        self.touched.insert(key.clone());
        self.history.push_back(Arc::new(event));
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.history_floor = e.rv;
                self.kind_floor.insert(e.key.clone(), e.rv);
            }
        }
    }

    /// The resources changed since the last call.
    pub fn take_touched(&mut self) -> BTreeSet<TypeKey> {
        std::mem::take(&mut self.touched)
    }

    /// Every event of resource `key` after `since`, and the resourceVersion the history was
    /// read up to; or the oldest resourceVersion a watch may still start from.
    ///
    /// A watch starting (`established: false`) from before the history's floor is too old,
    /// whatever changed since. A watch already streaming (`established: true`) is too old only
    /// when an event of its own resource was dropped before it read it: kube-apiserver keeps
    /// a watch cache per resource, so writes of other resources never expire it.
    pub fn events_since(
        &self,
        since: u64,
        key: &TypeKey,
        established: bool,
    ) -> Result<(Vec<Arc<Event>>, u64), u64> {
        let floor = if established {
            self.kind_floor.get(key).copied().unwrap_or(0)
        } else {
            self.history_floor
        };
        if since < floor {
            return Err(floor);
        }
        let start = self.history.partition_point(|e| e.rv <= since);
        let events = self
            .history
            .range(start..)
            .filter(|e| e.key == *key)
            .cloned()
            .collect();
        let upto = self.history.back().map_or(since, |e| e.rv.max(since));
        Ok((events, upto))
    }

    fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::not_found(&rt.group, &rt.plural, name)
    }

    pub fn get(&self, t: &Target, name: &str) -> Result<Value, ApiError> {
        let rt = self.type_of(&t.key)?;
        self.stored(&t.key, &t.namespace, name)
            .map(|s| Value::clone(&s.obj))
            .ok_or_else(|| Self::not_found(&rt, name))
    }

    /// The stored form of every object of a resource, shared (for counting without copies).
    pub fn each(&self, key: &TypeKey) -> impl Iterator<Item = &Arc<Value>> {
        self.objects
            .get(key)
            .into_iter()
            .flatten()
            .map(|(_, s)| &s.obj)
    }

    /// The stored form of every object of a resource, for in-process inspection.
    pub fn all(&self, key: &TypeKey) -> Vec<Value> {
        self.objects
            .get(key)
            .into_iter()
            .flatten()
            .map(|(_, s)| Value::clone(&s.obj))
            .collect()
    }
}

/// Rewrites `apiVersion`/`kind` to the version a request used (no schema conversion).
pub(crate) fn present(rt: &ResourceType, version: &str, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version(version)));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

/// A shared object as [`present`] shows it, serialized in place instead of copied first (each
/// watch sends every event of its resource).
pub(crate) struct Presented<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub obj: &'a Value,
}

impl serde::Serialize for Presented<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(map) = self.obj.as_object() else {
            return self.obj.serialize(s);
        };
        let replaced = |k: &String| k == "apiVersion" || k == "kind";
        let mut out = s.serialize_map(Some(2 + map.keys().filter(|k| !replaced(k)).count()))?;
        out.serialize_entry("apiVersion", self.api_version)?;
        out.serialize_entry("kind", self.kind)?;
        for (k, v) in map.iter().filter(|(k, _)| !replaced(k)) {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

/// `PartialObjectMetadata` for metadata-only requests.
pub(crate) fn metadata_only(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new())),
    })
}
