//! Patches: JSON patch, merge patch and server-side apply.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::apply;
use super::super::error::ApiError;
use super::super::lists;
use super::super::meta::{meta_str, set_meta};
use super::super::resources::ResourceType;
use super::write::into_object;
use super::{PatchKind, Store, Target};

impl Store {
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
        let mut live = Value::clone(&stored.obj);
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
}
