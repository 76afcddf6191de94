//! The object store: every object of every served resource, one global resourceVersion counter,
//! a bounded history of change events for watches, and the write semantics (create, update,
//! patch, apply, delete with finalizers and owner-reference garbage collection).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::apply;
use super::builtin;
use super::error::ApiError;
use super::lists::{self, Lists};
use super::managed::{Managed, Writer};
use super::meta::{self, Ids, meta_str, now_rfc3339, set_meta};
use super::resources::{self, ResourceType, TypeKey};
use super::schema;
use super::selector::{FieldSelector, LabelSelector};
use super::validation;

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
    pub object: Value,
    /// The object before a modification, to turn selector transitions into ADDED/DELETED.
    pub old: Option<Value>,
}

#[derive(Debug)]
struct Stored {
    obj: Value,
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

fn into_object(v: Value) -> Result<Value, ApiError> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ))
    }
}

/// The object without what does not count for `metadata.generation`.
fn generation_view(obj: &Value, status_subresource: bool) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if status_subresource {
            m.remove("status");
        }
    }
    v
}

/// `Some(list)` unless the list is empty (an object nobody wrote has no `managedFields`).
fn non_empty(list: Value) -> Option<Value> {
    list.as_array()
        .is_some_and(|l| !l.is_empty())
        .then_some(list)
}

/// The object without the times of its managed fields, to tell real changes.
fn without_times(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(entries) = v
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in entries {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    v
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
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
            history_limit: history_limit.max(1),
            ids: Ids::new(),
            allow_loopback_endpoints: false,
            v1beta1_crd_write: false,
            writer: None,
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

    fn record(&mut self, key: &TypeKey, kind: EventType, object: &Value, old: Option<Value>) {
        let event = Event {
            rv: self.rv,
            key: key.clone(),
            namespace: meta_str(object, "namespace").to_string(),
            kind,
            object: object.clone(),
            old,
        };
        self.history.push_back(Arc::new(event));
        while self.history.len() > self.history_limit {
            if let Some(e) = self.history.pop_front() {
                self.history_floor = e.rv;
            }
        }
    }

    /// Every event after `since`, or the oldest resourceVersion a watch may still start from.
    pub fn events_since(&self, since: u64) -> Result<Vec<Arc<Event>>, u64> {
        if since < self.history_floor {
            return Err(self.history_floor);
        }
        let start = self.history.partition_point(|e| e.rv <= since);
        Ok(self.history.range(start..).cloned().collect())
    }

    fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::not_found(&rt.group, &rt.plural, name)
    }

    pub fn get(&self, t: &Target, name: &str) -> Result<Value, ApiError> {
        let rt = self.type_of(&t.key)?;
        self.stored(&t.key, &t.namespace, name)
            .map(|s| s.obj.clone())
            .ok_or_else(|| Self::not_found(&rt, name))
    }

    /// Objects matching the selectors, in `(namespace, name)` order.
    pub fn matching(&self, t: &Target, label: &LabelSelector, field: &FieldSelector) -> Vec<Value> {
        self.objects
            .get(&t.key)
            .into_iter()
            .flatten()
            .filter(|((ns, _), _)| t.namespace.is_empty() || *ns == t.namespace)
            .map(|(_, s)| &s.obj)
            .filter(|o| label.matches(o) && field.matches(o))
            .cloned()
            .collect()
    }

    pub fn list(&self, t: &Target, opts: &ListOptions) -> Result<Page, ApiError> {
        self.type_of(&t.key)?;
        // Continue tokens carry the first page's resourceVersion and the last key returned.
        let (rv, after) = match &opts.continue_token {
            None => (self.rv, None),
            Some(token) => {
                let decoded =
                    unhex(token).ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                let mut parts = decoded.splitn(3, '\0');
                let rv = parts.next().and_then(|r| r.parse::<u64>().ok());
                let (Some(rv), Some(ns), Some(name)) = (rv, parts.next(), parts.next()) else {
                    return Err(ApiError::bad_request("invalid continue token"));
                };
                if rv < self.history_floor {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, Some((ns.to_string(), name.to_string())))
            }
        };
        let mut items = Vec::new();
        let mut continue_token = None;
        let candidates = self
            .objects
            .get(&t.key)
            .into_iter()
            .flatten()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .filter(|((ns, _), _)| t.namespace.is_empty() || *ns == t.namespace)
            .filter(|(_, s)| opts.label.matches(&s.obj) && opts.field.matches(&s.obj));
        for ((ns, name), s) in candidates {
            if opts.limit.is_some_and(|l| l > 0 && items.len() >= l) {
                let last = items
                    .last()
                    .map_or((ns.as_str(), name.as_str()), |o: &Value| {
                        (meta_str(o, "namespace"), meta_str(o, "name"))
                    });
                continue_token = Some(hex(&format!("{rv}\0{}\0{}", last.0, last.1)));
                break;
            }
            items.push(s.obj.clone());
        }
        Ok(Page {
            items,
            resource_version: rv,
            continue_token,
        })
    }

    /// Fills or checks `apiVersion` and `kind` against the addressed resource.
    fn check_type_meta(
        rt: &ResourceType,
        version: &str,
        obj: &mut Value,
        required: bool,
    ) -> Result<(), ApiError> {
        let want_av = rt.api_version(version);
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        for (field, want) in [("apiVersion", want_av.as_str()), ("kind", rt.kind.as_str())] {
            match map.get(field).and_then(Value::as_str) {
                Some(got) if field == "apiVersion" && rt.version_of(got).is_some() => {}
                Some(got) if got == want => {}
                Some(got) => {
                    return Err(ApiError::bad_request(format!(
                        "the {field} in the data ({got}) does not match the expected {field} ({want})"
                    )));
                }
                None if required => {
                    return Err(ApiError::bad_request(format!("{field} must be set")));
                }
                None => {
                    map.insert(field.into(), Value::String(want.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Sets `metadata.namespace` from the request, rejecting a different one in the body.
    fn check_namespace(rt: &ResourceType, t: &Target, obj: &mut Value) -> Result<(), ApiError> {
        let body_ns = meta_str(obj, "namespace").to_string();
        if rt.namespaced {
            if t.namespace.is_empty() {
                return Err(ApiError::bad_request(
                    "a namespace is required for namespaced resources",
                ));
            }
            if !body_ns.is_empty() && body_ns != t.namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            set_meta(obj, "namespace", Some(Value::String(t.namespace.clone())));
        } else {
            set_meta(obj, "namespace", None);
        }
        Ok(())
    }

    /// Shape checks on metadata the server relies on.
    fn validate_metadata(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        let name = meta_str(obj, "name");
        let invalid =
            |field: &str, why: &str| ApiError::invalid(&rt.group, &rt.kind, name, field, why);
        let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
            return Err(invalid("metadata", "Required value"));
        };
        let mut causes = Vec::new();
        for field in ["labels", "annotations"] {
            match meta.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) if m.values().all(Value::is_string) => {
                    causes.extend(if field == "labels" {
                        validation::labels(m)
                    } else {
                        validation::annotations(m)
                    });
                }
                Some(_) => {
                    return Err(invalid(
                        &format!("metadata.{field}"),
                        "must be a map of strings",
                    ));
                }
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_causes(&rt.group, &rt.kind, name, &causes));
        }
        match meta.get("finalizers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(f)) if f.iter().all(Value::is_string) => {}
            Some(_) => return Err(invalid("metadata.finalizers", "must be a list of strings")),
        }
        match meta.get("ownerReferences") {
            None | Some(Value::Null) => {}
            Some(Value::Array(refs)) => {
                for r in refs {
                    for f in ["apiVersion", "kind", "name", "uid"] {
                        if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                            return Err(invalid(
                                &format!("metadata.ownerReferences.{f}"),
                                "Required value",
                            ));
                        }
                    }
                }
            }
            Some(_) => return Err(invalid("metadata.ownerReferences", "must be a list")),
        }
        Ok(())
    }

    /// Kind-specific server behaviour on every write: CRD validation and status, namespace phase.
    fn prepare(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        status_only: bool,
    ) -> Result<(), ApiError> {
        Self::validate_metadata(rt, obj)?;
        // What kube-apiserver validates in the contents of the few kinds with rules here.
        let loopback = self.allow_loopback_endpoints;
        let causes = match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "endpoints") => validation::endpoints(obj, loopback),
            ("discovery.k8s.io", "endpointslices") => validation::endpoint_slice(obj, loopback),
            ("", "pods") => {
                let mut causes = builtin::pod_spec(obj.get("spec"), "spec", false);
                causes.extend(validation::pod_spec_resources(obj.get("spec"), "spec"));
                causes
            }
            ("apps", "daemonsets") => {
                let mut causes = builtin::daemon_set(obj, old);
                causes.extend(validation::pod_spec_resources(
                    obj.get("spec")
                        .and_then(|s| s.get("template"))
                        .and_then(|t| t.get("spec")),
                    "spec.template.spec",
                ));
                causes
            }
            ("", "services") => builtin::service(obj),
            ("", "configmaps") => builtin::config_map(obj, old),
            ("", "secrets") => builtin::secret(obj, old),
            ("coordination.k8s.io", "leases") => builtin::lease(obj),
            _ => Vec::new(),
        };
        if !causes.is_empty() {
            let name = meta_str(obj, "name");
            return Err(ApiError::invalid_causes(&rt.group, &rt.kind, name, &causes));
        }
        self.check_custom(rt, obj, old, status_only)?;
        let key = rt.key();
        if key == namespace_key()
            && let Some(map) = obj.as_object_mut()
        {
            let phase = if map
                .get("metadata")
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some()
            {
                "Terminating"
            } else {
                "Active"
            };
            map.insert("status".into(), json!({"phase": phase}));
        }
        if key == crd_key() {
            let name = meta_str(obj, "name").to_string();
            let def = resources::from_crd(obj).map_err(|(field, why)| {
                ApiError::invalid(&rt.group, &rt.kind, &name, field, &why)
            })?;
            let causes = validation::crd_preserve_unknown_fields(obj, old, self.v1beta1_crd_write);
            if !causes.is_empty() {
                return Err(ApiError::invalid_causes(
                    &rt.group, &rt.kind, &name, &causes,
                ));
            }
            // A resource may be served by one CRD only, and never shadow a built-in one.
            if self.types.contains_key(&def.key()) && self.stored(&crd_key(), "", &name).is_none() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    "spec.names",
                    "the resource is already served",
                ));
            }
            if let Some(old) = old
                && let Ok(old_def) = resources::from_crd(old)
                && old_def.namespaced != def.namespaced
            {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    "spec.scope",
                    "field is immutable",
                ));
            }
            let since = meta_str(obj, "creationTimestamp").to_string();
            let status = resources::crd_status(obj, &since);
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), status);
            }
        }
        Ok(())
    }

    /// A custom object against the schema of its CRD's version: unknown fields pruned (unless
    /// the CRD still has `spec.preserveUnknownFields: true`), then validated, with ratcheting
    /// against `old` on updates. A `/status` write prunes only `status`: kube copies the rest
    /// from the stored object, as it is.
    fn check_custom(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        status_only: bool,
    ) -> Result<(), ApiError> {
        let crd_name = format!("{}.{}", rt.plural, rt.group);
        let Some(crd) = self.stored(&crd_key(), "", &crd_name) else {
            return Ok(());
        };
        let version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|av| rt.version_of(av))
            .or_else(|| rt.versions.first().cloned())
            .unwrap_or_default();
        let Some(schema) = schema::of_version(&crd.obj, &version) else {
            return Ok(());
        };
        if !validation::preserves_unknown_fields(&crd.obj) {
            let mut pruned = obj.clone();
            schema::prune(schema, &mut pruned);
            if !status_only {
                *obj = pruned;
            } else if let Some(map) = obj.as_object_mut() {
                match pruned.get("status") {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
            }
        }
        let causes = schema::validate(schema, obj, old);
        if causes.is_empty() {
            Ok(())
        } else {
            let name = meta_str(obj, "name");
            Err(ApiError::invalid_custom(&rt.group, &rt.kind, name, &causes))
        }
    }

    /// Effects after a write: a stored CRD serves its resource, and an object whose owners are
    /// gone is garbage-collected.
    fn after_write(&mut self, key: &TypeKey, obj: &Value) {
        if *key == crd_key()
            && let Ok(def) = resources::from_crd(obj)
        {
            self.types.insert(def.key(), def);
        }
        self.collect_if_owners_gone(key, obj);
    }

    /// Kubernetes' garbage collector also finds dependents written *after* their owner went
    /// away (a controller acting on a stale cache re-creates a child of a deleted parent): with no
    /// owner left it deletes the object, else it drops the dangling references. Kubernetes does
    /// this shortly after the write; here it happens at once, after the write succeeded.
    fn collect_if_owners_gone(&mut self, key: &TypeKey, obj: &Value) {
        let owners: Vec<String> = meta::owner_uids(obj).map(str::to_string).collect();
        if owners.is_empty() {
            return;
        }
        let live: Vec<String> = owners
            .iter()
            .filter(|u| self.uid_exists(u))
            .cloned()
            .collect();
        if live.len() == owners.len() {
            return;
        }
        let (ns, name) = (
            meta_str(obj, "namespace").to_string(),
            meta_str(obj, "name").to_string(),
        );
        if live.is_empty() {
            if let Ok(rt) = self.type_of(key) {
                let _ = self.delete_object(&rt, &ns, &name, Propagation::Background);
            }
        } else {
            self.retain_owners(key, &ns, &name, |u| live.iter().any(|l| l == u));
        }
    }

    /// Where the list types of `obj` come from: the schema of its CRD version for custom
    /// objects, Kubernetes' markers for built-in ones.
    fn lists(&self, rt: &ResourceType, obj: &Value) -> Lists {
        let crd_name = format!("{}.{}", rt.plural, rt.group);
        let Some(crd) = self.stored(&crd_key(), "", &crd_name) else {
            return Lists::Builtin {
                plural: rt.plural.clone(),
            };
        };
        let version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|av| rt.version_of(av))
            .or_else(|| rt.versions.first().cloned())
            .unwrap_or_default();
        Lists::Custom(
            schema::of_version(&crd.obj, &version)
                .cloned()
                .unwrap_or(Value::Null),
        )
    }

    /// The writer of a request by `manager` (none for the server's own writes).
    fn set_writer(
        &mut self,
        rt: &ResourceType,
        t: &Target,
        manager: Option<&str>,
        apply: bool,
        status: bool,
    ) {
        self.writer = manager.filter(|m| !m.is_empty()).map(|m| Writer {
            manager: m.to_string(),
            apply,
            status,
            api_version: rt.api_version(&t.version),
        });
    }

    /// Creates an object written by `manager` (an `Update` in its managed fields).
    pub fn create(
        &mut self,
        t: &Target,
        body: Value,
        manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        let rt = self.type_of(&t.key)?;
        self.set_writer(&rt, t, manager, false, false);
        let out = self.create_as_writer(&rt, t, body);
        self.writer = None;
        out
    }

    fn create_as_writer(
        &mut self,
        rt: &ResourceType,
        t: &Target,
        body: Value,
    ) -> Result<Value, ApiError> {
        let rt = rt.clone();
        let mut obj = into_object(body)?;
        Self::check_type_meta(&rt, &t.version, &mut obj, false)?;
        if !meta_str(&obj, "resourceVersion").is_empty() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        self.insert_new(&rt, t, obj, BTreeMap::new())
    }

    /// Stores a new object; `applied` is the configuration of an apply that creates it.
    fn insert_new(
        &mut self,
        rt: &ResourceType,
        t: &Target,
        mut obj: Value,
        applied: BTreeMap<(String, bool), Value>,
    ) -> Result<Value, ApiError> {
        Self::check_namespace(rt, t, &mut obj)?;
        let ns = meta_str(&obj, "namespace").to_string();
        let mut name = meta_str(&obj, "name").to_string();
        let generate_name = meta_str(&obj, "generateName").to_string();
        if !generate_name.is_empty() {
            // Checked as a name prefix: a trailing '-' is allowed.
            let masked = match generate_name.strip_suffix('-') {
                Some(head) => format!("{head}a"),
                None => generate_name.clone(),
            };
            meta::validate_name(rt.name_rule, &masked).map_err(|why| {
                ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    "metadata.generateName",
                    &why.replace(&format!("{masked:?}"), &format!("{generate_name:?}")),
                )
            })?;
        }
        if name.is_empty() {
            // Kubernetes keeps at most 58 characters of the prefix, so that names fit in 63.
            let prefix: String = generate_name
                .chars()
                .take(validation::MAX_GENERATE_NAME_PREFIX)
                .collect();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            for _ in 0..16 {
                name = format!("{prefix}{}", self.ids.suffix());
                if self.stored(&t.key, &ns, &name).is_none() {
                    break;
                }
            }
            set_meta(&mut obj, "name", Some(Value::String(name.clone())));
        }
        meta::validate_name(rt.name_rule, &name)
            .map_err(|why| ApiError::invalid(&rt.group, &rt.kind, &name, "metadata.name", &why))?;
        if rt.namespaced && self.stored(&namespace_key(), "", &ns).is_none() {
            return Err(ApiError::not_found("", "namespaces", &ns));
        }
        if self.stored(&t.key, &ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
            "resourceVersion",
        ] {
            set_meta(&mut obj, field, None);
        }
        if rt.status
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        let uid = self.ids.uid();
        set_meta(&mut obj, "uid", Some(Value::String(uid)));
        set_meta(
            &mut obj,
            "creationTimestamp",
            Some(Value::String(now_rfc3339())),
        );
        set_meta(&mut obj, "generation", Some(json!(1)));
        self.prepare(rt, &mut obj, None, false)?;
        let mut managed = Managed::default();
        let writer = self.writer.take();
        let mut applied = applied;
        let lists = self.lists(rt, &obj);
        let fields = managed.record(
            writer.as_ref(),
            None,
            &obj,
            &mut applied,
            &lists,
            &now_rfc3339(),
        );
        set_meta(&mut obj, "managedFields", non_empty(fields));
        let rv = self.next_rv();
        set_meta(
            &mut obj,
            "resourceVersion",
            Some(Value::String(rv.to_string())),
        );
        self.objects.entry(t.key.clone()).or_default().insert(
            (ns, name),
            Stored {
                obj: obj.clone(),
                applied,
                managed,
                pending: Propagation::Background,
            },
        );
        self.record(&t.key, EventType::Added, &obj, None);
        self.after_write(&t.key, &obj);
        Ok(obj)
    }

    /// Stores a new version of an existing object: no-op writes change nothing, `generation`
    /// follows the non-metadata, non-status content, and a deleted object whose last finalizer
    /// went away is removed.
    fn commit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut new: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let key = rt.key();
        let old = self
            .stored(&key, ns, name)
            .map(|s| s.obj.clone())
            .ok_or_else(|| Self::not_found(rt, name))?;
        let old_generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        set_meta(&mut new, "generation", Some(json!(old_generation)));
        // Before judging generation: pruning may drop what the write added.
        self.prepare(rt, &mut new, Some(&old), status_only)?;
        if generation_view(&new, rt.status) != generation_view(&old, rt.status) {
            set_meta(&mut new, "generation", Some(json!(old_generation + 1)));
        }
        set_meta(
            &mut new,
            "resourceVersion",
            old.get("metadata")
                .and_then(|m| m.get("resourceVersion"))
                .cloned(),
        );
        let writer = self.writer.take();
        let (mut managed, mut applied) = self
            .stored(&key, ns, name)
            .map(|s| (s.managed.clone(), s.applied.clone()))
            .ok_or_else(|| Self::not_found(rt, name))?;
        let lists = self.lists(rt, &new);
        let fields = managed.record(
            writer.as_ref(),
            Some(&old),
            &new,
            &mut applied,
            &lists,
            &now_rfc3339(),
        );
        set_meta(&mut new, "managedFields", non_empty(fields));
        // A write that changes nothing but the times of managed fields changes nothing.
        if without_times(&new) == without_times(&old) {
            return Ok(old);
        }
        let rv = self.next_rv();
        set_meta(
            &mut new,
            "resourceVersion",
            Some(Value::String(rv.to_string())),
        );
        let pending = match self.stored_mut(&key, ns, name) {
            Some(stored) => {
                stored.obj = new.clone();
                stored.managed = managed;
                stored.applied = applied;
                stored.pending
            }
            None => return Err(Self::not_found(rt, name)),
        };
        self.record(&key, EventType::Modified, &new, Some(old));
        self.after_write(&key, &new);
        let deleting = new
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some();
        if deleting && !meta::has_finalizers(&new) {
            return Ok(self.remove(&key, ns, name, pending).unwrap_or(new));
        }
        Ok(new)
    }

    /// Writes a candidate full object over an existing one, as PUT and patches do.
    fn write_existing(
        &mut self,
        rt: &ResourceType,
        t: &Target,
        name: &str,
        candidate: Value,
        status_subresource: bool,
    ) -> Result<Value, ApiError> {
        let old = self.get(t, name)?;
        let mut cand = into_object(candidate)?;
        Self::check_type_meta(rt, &t.version, &mut cand, false)?;
        let body_name = meta_str(&cand, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        Self::check_namespace(rt, t, &mut cand)?;
        let want_rv = meta_str(&cand, "resourceVersion");
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let new = if status_subresource {
            let mut n = old.clone();
            if let Some(map) = n.as_object_mut() {
                match cand.get("status") {
                    Some(s) if !s.is_null() => map.insert("status".into(), s.clone()),
                    _ => map.remove("status"),
                };
            }
            n
        } else {
            let mut n = cand;
            for field in [
                "name",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                set_meta(
                    &mut n,
                    field,
                    old.get("metadata").and_then(|m| m.get(field)).cloned(),
                );
            }
            set_meta(&mut n, "managedFields", None);
            set_meta(&mut n, "selfLink", None);
            if rt.status
                && let Some(map) = n.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
            }
            n
        };
        self.commit(rt, &t.namespace, name, new, status_subresource)
    }

    pub fn update(
        &mut self,
        t: &Target,
        name: &str,
        body: Value,
        status: bool,
        manager: Option<&str>,
    ) -> Result<Value, ApiError> {
        let rt = self.type_of(&t.key)?;
        self.set_writer(&rt, t, manager, false, status);
        let out = self.write_existing(&rt, t, name, body, status);
        self.writer = None;
        out
    }

    /// Applies a patch; returns the object and whether it was created (apply only).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        t: &Target,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        status: bool,
        manager: Option<&str>,
        force: bool,
    ) -> Result<(Value, bool), ApiError> {
        let rt = self.type_of(&t.key)?;
        self.set_writer(&rt, t, manager, kind == PatchKind::Apply, status);
        let out = self.patch_as_writer(&rt, t, name, kind, body, status, manager, force);
        self.writer = None;
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn patch_as_writer(
        &mut self,
        rt: &ResourceType,
        t: &Target,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        status: bool,
        manager: Option<&str>,
        force: bool,
    ) -> Result<(Value, bool), ApiError> {
        let rt = rt.clone();
        let bad =
            |e: &dyn std::fmt::Display| ApiError::bad_request(format!("error decoding patch: {e}"));
        match kind {
            PatchKind::Merge | PatchKind::StrategicMerge => {
                let patch: Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                let mut doc = self.get(t, name)?;
                json_patch::merge(&mut doc, &patch);
                Ok((self.write_existing(&rt, t, name, doc, status)?, false))
            }
            PatchKind::Json => {
                let patch: json_patch::Patch = serde_json::from_slice(body).map_err(|e| bad(&e))?;
                let mut doc = self.get(t, name)?;
                for op in patch.iter() {
                    // As in Kubernetes, testing for `null` passes on a missing path (kube-runtime's
                    // finalizer helper relies on it).
                    if let json_patch::PatchOperation::Test(test) = op
                        && test.value.is_null()
                    {
                        if doc.pointer(test.path.as_str()).is_none_or(Value::is_null) {
                            continue;
                        }
                        return Err(ApiError::invalid(
                            &rt.group,
                            &rt.kind,
                            name,
                            "patch",
                            &format!("test failed: {} is not null", test.path.as_str()),
                        ));
                    }
                    json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
                        ApiError::invalid(&rt.group, &rt.kind, name, "patch", &e.to_string())
                    })?;
                }
                Ok((self.write_existing(&rt, t, name, doc, status)?, false))
            }
            PatchKind::Apply => self.apply(&rt, t, name, body, status, manager, force),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        rt: &ResourceType,
        t: &Target,
        name: &str,
        body: &[u8],
        status: bool,
        manager: Option<&str>,
        force: bool,
    ) -> Result<(Value, bool), ApiError> {
        let Some(manager) = manager.filter(|m| !m.is_empty()) else {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                "fieldManager",
                "Required value: is required for apply patch",
            ));
        };
        let applied: Value = serde_norway::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        let mut applied = into_object(applied)?;
        Self::check_type_meta(rt, &t.version, &mut applied, true)?;
        let body_name = meta_str(&applied, "name");
        if body_name.is_empty() {
            set_meta(&mut applied, "name", Some(Value::String(name.to_string())));
        } else if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&applied, "namespace");
        if !body_ns.is_empty() && rt.namespaced && body_ns != t.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let precondition = meta_str(&applied, "resourceVersion").to_string();
        set_meta(&mut applied, "resourceVersion", None);
        // The configuration this manager now applies, limited to what the endpoint writes.
        let mut cfg = applied;
        if let Some(map) = cfg.as_object_mut() {
            if status {
                map.retain(|k, _| {
                    matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status")
                });
                if let Some(Value::Object(m)) = map.get_mut("metadata") {
                    m.retain(|k, _| k == "name" || k == "namespace");
                }
            } else if rt.status {
                map.remove("status");
            }
        }
        let Some(stored) = self.stored(&t.key, &t.namespace, name) else {
            if status {
                return Err(Self::not_found(rt, name));
            }
            let applied = BTreeMap::from([((manager.to_string(), status), cfg)]);
            let obj = self.insert_new(
                rt,
                t,
                applied.values().next().cloned().unwrap_or_default(),
                applied,
            )?;
            return Ok((obj, true));
        };
        let lists = self.lists(rt, &stored.obj);
        let others = stored
            .managed
            .owned_by_others(manager, &stored.applied, &lists);
        let found = apply::conflicts(&cfg, &stored.obj, &others, &lists);
        if !force && !found.is_empty() {
            return Err(ApiError::apply_conflict(
                &rt.group,
                &rt.plural,
                name,
                apply::conflict_message(&found),
            ));
        }
        let mut live = stored.obj.clone();
        if let Some(previous) = stored.applied.get(&(manager.to_string(), status)) {
            // What others keep owning after this apply (a forced apply takes what it contested).
            let kept: Vec<lists::Path> = others
                .iter()
                .flat_map(|(_, owned)| owned.iter())
                .filter(|p| !found.iter().any(|(_, f)| f == *p))
                .cloned()
                .collect();
            apply::release(&mut live, previous, &cfg, &kept, &lists);
        }
        apply::merge_applied(&mut live, &cfg, &lists);
        let rv = if precondition.is_empty() {
            meta_str(&stored.obj, "resourceVersion").to_string()
        } else {
            precondition
        };
        set_meta(&mut live, "resourceVersion", Some(Value::String(rv)));
        // The configurations after this apply, in place before the write so that its managed
        // fields show them; put back if the write fails.
        let mut saved = None;
        if let Some(s) = self.stored_mut(&t.key, &t.namespace, name) {
            saved = Some((s.applied.clone(), s.managed.clone()));
            // A forced apply takes the contested fields over from their previous owners.
            for (other, path) in &found {
                for ((m, _), their_cfg) in s.applied.iter_mut() {
                    if m == other {
                        apply::disown(their_cfg, path);
                    }
                }
                s.managed.disown(other, path);
            }
            s.applied.insert((manager.to_string(), status), cfg);
        }
        match self.write_existing(rt, t, name, live, status) {
            Ok(result) => Ok((result, false)),
            Err(e) => {
                if let (Some(s), Some(saved)) = (self.stored_mut(&t.key, &t.namespace, name), saved)
                {
                    (s.applied, s.managed) = saved;
                }
                Err(e)
            }
        }
    }

    /// Deletes an object: immediately without finalizers, otherwise by setting
    /// `deletionTimestamp`. Returns the object and whether it is gone.
    pub fn delete(
        &mut self,
        t: &Target,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        let rt = self.type_of(&t.key)?;
        let obj = self.get(t, name)?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&obj, "uid")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&obj, "uid")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta_str(&obj, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&obj, "resourceVersion")
                ),
            ));
        }
        self.delete_object(&rt, &t.namespace, name, opts.propagation)
    }

    fn delete_object(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(Value, bool), ApiError> {
        let key = rt.key();
        let obj = self
            .stored(&key, ns, name)
            .map(|s| s.obj.clone())
            .ok_or_else(|| Self::not_found(rt, name))?;
        if meta::has_finalizers(&obj) {
            if obj
                .get("metadata")
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some()
            {
                return Ok((obj, false));
            }
            if let Some(s) = self.stored_mut(&key, ns, name) {
                s.pending = propagation;
            }
            let mut new = obj;
            set_meta(
                &mut new,
                "deletionTimestamp",
                Some(Value::String(now_rfc3339())),
            );
            set_meta(&mut new, "deletionGracePeriodSeconds", Some(json!(0)));
            let new = self.commit(rt, ns, name, new, false)?;
            return Ok((new, false));
        }
        let removed = self.remove(&key, ns, name, propagation).unwrap_or(obj);
        Ok((removed, true))
    }

    pub fn delete_collection(
        &mut self,
        t: &Target,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let rt = self.type_of(&t.key)?;
        let victims = self.matching(t, &list.label, &list.field);
        let mut out = Vec::new();
        for v in victims {
            let (ns, name) = (
                meta_str(&v, "namespace").to_string(),
                meta_str(&v, "name").to_string(),
            );
            if let Ok((obj, _)) = self.delete_object(&rt, &ns, &name, opts.propagation) {
                out.push(obj);
            }
        }
        Ok(out)
    }

    /// Removes an object for good, with what hangs off it: the objects of a CRD, the contents of
    /// a namespace (both at once, finalizers notwithstanding), and dependents by owner reference.
    fn remove(
        &mut self,
        key: &TypeKey,
        ns: &str,
        name: &str,
        propagation: Propagation,
    ) -> Option<Value> {
        let obj = self.stored(key, ns, name)?.obj.clone();
        let uid = meta_str(&obj, "uid").to_string();
        if propagation == Propagation::Orphan {
            self.orphan(&uid);
        }
        if *key == crd_key()
            && let Ok(def) = resources::from_crd(&obj)
        {
            let names: Vec<ObjName> = self
                .objects
                .get(&def.key())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for (ons, oname) in names {
                self.remove(&def.key(), &ons, &oname, Propagation::Background);
            }
            self.types.remove(&def.key());
            self.objects.remove(&def.key());
        }
        if *key == namespace_key() {
            let contents: Vec<(TypeKey, ObjName)> = self
                .objects
                .iter()
                .flat_map(|(k, m)| {
                    m.keys()
                        .filter(|(n, _)| n == name)
                        .map(|o| (k.clone(), o.clone()))
                })
                .collect();
            for (k, (ons, oname)) in contents {
                self.remove(&k, &ons, &oname, Propagation::Background);
            }
        }
        let mut obj = self
            .objects
            .get_mut(key)
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))?
            .obj;
        let rv = self.next_rv();
        set_meta(
            &mut obj,
            "resourceVersion",
            Some(Value::String(rv.to_string())),
        );
        self.record(key, EventType::Deleted, &obj, None);
        if propagation != Propagation::Orphan {
            self.collect_dependents(&uid);
        }
        Some(obj)
    }

    fn uid_exists(&self, uid: &str) -> bool {
        self.objects
            .values()
            .flat_map(BTreeMap::values)
            .any(|s| meta_str(&s.obj, "uid") == uid)
    }

    fn dependents_of(&self, uid: &str) -> Vec<(TypeKey, ObjName)> {
        self.objects
            .iter()
            .flat_map(|(k, m)| {
                m.iter()
                    .filter(|(_, s)| meta::owner_uids(&s.obj).any(|u| u == uid))
                    .map(|(o, _)| (k.clone(), o.clone()))
            })
            .collect()
    }

    /// Rewrites an object's owner references to those `keep` accepts.
    fn retain_owners(&mut self, key: &TypeKey, ns: &str, name: &str, keep: impl Fn(&str) -> bool) {
        let (Some(obj), Ok(rt)) = (
            self.stored(key, ns, name).map(|s| s.obj.clone()),
            self.type_of(key),
        ) else {
            return;
        };
        let refs: Vec<Value> = obj
            .get("metadata")
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| keep(r.get("uid").and_then(Value::as_str).unwrap_or_default()))
            .cloned()
            .collect();
        let mut new = obj;
        set_meta(
            &mut new,
            "ownerReferences",
            (!refs.is_empty()).then_some(Value::Array(refs)),
        );
        let _ = self.commit(&rt, ns, name, new, false);
    }

    fn orphan(&mut self, uid: &str) {
        for (key, (ns, name)) in self.dependents_of(uid) {
            self.retain_owners(&key, &ns, &name, |u| u != uid);
        }
    }

    /// Garbage collection after `uid` went away: dependents left without any live owner are
    /// deleted (recursively); others lose the dangling references.
    fn collect_dependents(&mut self, uid: &str) {
        for (key, (ns, name)) in self.dependents_of(uid) {
            let Some(obj) = self.stored(&key, &ns, &name).map(|s| s.obj.clone()) else {
                continue;
            };
            let live: Vec<String> = meta::owner_uids(&obj)
                .filter(|u| *u != uid && self.uid_exists(u))
                .map(str::to_string)
                .collect();
            if live.is_empty() {
                if let Ok(rt) = self.type_of(&key) {
                    let _ = self.delete_object(&rt, &ns, &name, Propagation::Background);
                }
            } else {
                self.retain_owners(&key, &ns, &name, |u| live.iter().any(|l| l == u));
            }
        }
    }

    /// The stored form of every object of a resource, borrowed (for counting without copies).
    pub fn each(&self, key: &TypeKey) -> impl Iterator<Item = &Value> {
        self.objects
            .get(key)
            .into_iter()
            .flat_map(|m| m.values().map(|s| &s.obj))
    }

    /// The stored form of every object of a resource, for in-process inspection.
    pub fn all(&self, key: &TypeKey) -> Vec<Value> {
        self.objects
            .get(key)
            .into_iter()
            .flatten()
            .map(|(_, s)| s.obj.clone())
            .collect()
    }
}

/// Rewrites `apiVersion`/`kind` to the version a request used (no schema conversion).
pub(crate) fn present(rt: &ResourceType, version: &str, obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version(version)));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    out
}

/// `PartialObjectMetadata` for metadata-only requests.
pub(crate) fn metadata_only(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new())),
    })
}
