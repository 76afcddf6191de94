//! Create and update: new objects, new versions of existing ones, generation and managed
//! fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::super::error::ApiError;
use super::super::managed::{Managed, Writer};
use super::super::meta::{self, meta_str, now_rfc3339, set_meta};
use super::super::resources::{self, ResourceType, TypeKey};
use super::super::validation;
use super::schemas::CrdSchemas;
use super::{EventType, Propagation, Store, Stored, Target, crd_key, namespace_key};

pub(super) fn into_object(v: Value) -> Result<Value, ApiError> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ))
    }
}

/// Whether two objects are equal but for the top-level fields `skip` names (compared in
/// place, without copies).
fn equal_but(a: &Value, b: &Value, skip: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let kept = |m: &'_ serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .count()
            };
            kept(a) == kept(b)
                && a.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Whether the two objects differ in what counts for `metadata.generation` (everything but
/// metadata, and status where it is a subresource).
fn generation_changes(new: &Value, old: &Value, status_subresource: bool) -> bool {
    let skip: &[&str] = if status_subresource {
        &["metadata", "status"]
    } else {
        &["metadata"]
    };
    !equal_but(new, old, skip)
}

/// `Some(list)` unless the list is empty (an object nobody wrote has no `managedFields`).
fn non_empty(list: Value) -> Option<Value> {
    list.as_array()
        .is_some_and(|l| !l.is_empty())
        .then_some(list)
}

/// Whether two objects are equal but for the times of their managed fields (a write that
/// changes only those changes nothing), compared in place.
fn equal_but_times(a: &Value, b: &Value) -> bool {
    if !equal_but(a, b, &["metadata"]) {
        return false;
    }
    let (ma, mb) = (a.get("metadata"), b.get("metadata"));
    if !equal_but(
        ma.unwrap_or(&Value::Null),
        mb.unwrap_or(&Value::Null),
        &["managedFields"],
    ) {
        return false;
    }
    match (
        ma.and_then(|m| m.get("managedFields")),
        mb.and_then(|m| m.get("managedFields")),
    ) {
        (Some(Value::Array(ea)), Some(Value::Array(eb))) => {
            ea.len() == eb.len() && ea.iter().zip(eb).all(|(x, y)| equal_but(x, y, &["time"]))
        }
        (fa, fb) => fa == fb,
    }
}

impl Store {
    /// Effects after a write: a stored CRD serves its resource, and an object whose owners are
    /// gone is garbage-collected.
    fn after_write(&mut self, key: &TypeKey, obj: &Value) {
        if *key == crd_key() {
            let name = meta_str(obj, "name").to_string();
            self.schemas.insert(name, CrdSchemas::of(obj));
            if let Ok(def) = resources::from_crd(obj) {
                self.types.insert(def.key(), def);
            }
        }
        self.collect_if_owners_gone(key, obj);
    }

    /// The writer of a request by `manager` (none for the server's own writes).
    pub(super) fn set_writer(
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
    pub(super) fn insert_new(
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
        let obj = Arc::new(obj);
        self.objects.entry(t.key.clone()).or_default().insert(
            (ns, name),
            Stored {
                obj: Arc::clone(&obj),
                applied,
                managed,
                pending: Propagation::Background,
            },
        );
        self.record(&t.key, EventType::Added, &obj, None);
        self.after_write(&t.key, &obj);
        Ok(Value::clone(&obj))
    }

    /// Stores a new version of an existing object: no-op writes change nothing, `generation`
    /// follows the non-metadata, non-status content, and a deleted object whose last finalizer
    /// went away is removed.
    pub(super) fn commit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        new: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let old = self
            .stored(&rt.key(), ns, name)
            .map(|s| Arc::clone(&s.obj))
            .ok_or_else(|| Self::not_found(rt, name))?;
        self.commit_over(rt, ns, name, old, new, status_only)
    }

    /// [`Self::commit`] with the stored object already at hand (`old`, as stored now).
    fn commit_over(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Arc<Value>,
        mut new: Value,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let key = rt.key();
        let old_generation = old
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        set_meta(&mut new, "generation", Some(json!(old_generation)));
        // Before judging generation: pruning may drop what the write added.
        self.prepare(rt, &mut new, Some(&old), status_only)?;
        if generation_changes(&new, &old, rt.status) {
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
        if equal_but_times(&new, &old) {
            return Ok(Value::clone(&old));
        }
        let rv = self.next_rv();
        set_meta(
            &mut new,
            "resourceVersion",
            Some(Value::String(rv.to_string())),
        );
        let new = Arc::new(new);
        let pending = match self.stored_mut(&key, ns, name) {
            Some(stored) => {
                stored.obj = Arc::clone(&new);
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
            return Ok(self
                .remove(&key, ns, name, pending)
                .unwrap_or_else(|| Value::clone(&new)));
        }
        Ok(Value::clone(&new))
    }

    /// Writes a candidate full object over an existing one, as PUT and patches do.
    pub(super) fn write_existing(
        &mut self,
        rt: &ResourceType,
        t: &Target,
        name: &str,
        candidate: Value,
        status_subresource: bool,
    ) -> Result<Value, ApiError> {
        let old = self
            .stored(&t.key, &t.namespace, name)
            .map(|s| Arc::clone(&s.obj))
            .ok_or_else(|| Self::not_found(rt, name))?;
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
            let mut n = Value::clone(&old);
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
        self.commit_over(rt, &t.namespace, name, old, new, status_subresource)
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What the comparisons replaced: copies without the ignored parts, compared whole.
    fn copy_without(obj: &Value, top: &[&str], times: bool) -> Value {
        let mut v = obj.clone();
        if let Some(m) = v.as_object_mut() {
            for k in top {
                m.remove(*k);
            }
        }
        if times
            && let Some(entries) = v
                .pointer_mut("/metadata/managedFields")
                .and_then(Value::as_array_mut)
        {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
        v
    }

    #[test]
    fn in_place_comparisons_answer_what_comparing_copies_answered() {
        let entry = |t: &str, f: Value| json!({"manager": "m", "time": t, "fieldsV1": f});
        let objects = [
            json!({"metadata": {"name": "a", "managedFields": [entry("1", json!({"f:spec": {}}))]},
                "spec": {"x": 1}, "status": {"s": 1}}),
            json!({"metadata": {"name": "a", "managedFields": [entry("2", json!({"f:spec": {}}))]},
                "spec": {"x": 1}, "status": {"s": 1}}),
            json!({"metadata": {"name": "a", "managedFields": [entry("2", json!({}))]},
                "spec": {"x": 1}, "status": {"s": 2}}),
            json!({"metadata": {"name": "a", "managedFields": [entry("1", json!({})), "odd"]},
                "spec": {"x": 1}}),
            json!({"metadata": {"name": "b"}, "spec": {"x": 1}, "status": {"s": 1}}),
            json!({"metadata": {"name": "a", "managedFields": 3}, "spec": {"x": 2}}),
            json!({"spec": {"x": 1}, "status": {"s": 1}}),
            json!({"metadata": {}, "spec": {"x": 1}, "status": {"s": 1}}),
            json!({"metadata": "odd", "spec": {"x": 1}, "status": {"s": 1}, "extra": null}),
            json!([1, 2]),
            Value::Null,
        ];
        for a in &objects {
            for b in &objects {
                assert_eq!(
                    equal_but_times(a, b),
                    copy_without(a, &[], true) == copy_without(b, &[], true),
                    "{a} {b}"
                );
                for status in [false, true] {
                    let skip: &[&str] = if status {
                        &["metadata", "status"]
                    } else {
                        &["metadata"]
                    };
                    assert_eq!(
                        generation_changes(a, b, status),
                        copy_without(a, skip, false) != copy_without(b, skip, false),
                        "{a} {b} {status}"
                    );
                }
            }
        }
    }
}
