//! Deletion: preconditions, finalizers, propagation and owner-reference garbage collection.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::super::error::ApiError;
use super::super::meta::{self, meta_str, now_rfc3339, set_meta};
use super::super::resources::{self, ResourceType, TypeKey};
use super::{
    DeleteOptions, EventType, ListOptions, ObjName, Propagation, Store, Target, crd_key,
    namespace_key,
};

impl Store {
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
            .map(|s| Value::clone(&s.obj))
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
    pub(super) fn remove(
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
        if *key == crd_key() {
            self.schemas.remove(name);
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
        let stored = self
            .objects
            .get_mut(key)
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))?
            .obj;
        let mut obj = Value::clone(&stored);
        let rv = self.next_rv();
        set_meta(
            &mut obj,
            "resourceVersion",
            Some(Value::String(rv.to_string())),
        );
        let obj = Arc::new(obj);
        self.record(key, EventType::Deleted, &obj, None);
        if propagation != Propagation::Orphan {
            self.collect_dependents(&uid);
        }
        Some(Arc::unwrap_or_clone(obj))
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
            self.stored(key, ns, name).map(|s| Value::clone(&s.obj)),
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
            let Some(obj) = self.stored(&key, &ns, &name).map(|s| Value::clone(&s.obj)) else {
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

    /// Kubernetes' garbage collector also finds dependents written *after* their owner went
    /// away (a controller acting on a stale cache re-creates a child of a deleted parent): with no
    /// owner left it deletes the object, else it drops the dangling references. Kubernetes does
    /// this shortly after the write; here it happens at once, after the write succeeded.
    pub(super) fn collect_if_owners_gone(&mut self, key: &TypeKey, obj: &Value) {
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
}
