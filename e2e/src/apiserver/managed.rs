//! `metadata.managedFields`, approximated from what each field manager wrote.
//!
//! As kube-apiserver (apiserver `pkg/endpoints/handlers/fieldmanager`, structured-merge-diff
//! `fieldpath` for the `FieldsV1` format), an object carries one entry per field manager,
//! operation (`Apply` or `Update`) and subresource, with the manager's fields as a `FieldsV1`
//! set: `{"f:spec": {"f:replicas": {}}}`. Here:
//! - an `Apply` entry holds the fields of the configuration the manager last applied (the one
//!   server-side apply tracks in `apply.rs`), replaced on its next apply;
//! - an `Update` entry (create, update, patch) gains the fields the write set or changed, which
//!   then leave every other manager's `Update` entry;
//! - fields no longer in the object leave every `Update` entry; an entry left empty goes.
//!
//! Approximations: a field is a leaf of maps; lists and their items are one field (no `k:`,
//! `v:` or `i:` keys), and a map is never owned as a whole (no `"."` entries); a field taken by
//! an update stays in the `Apply` entry of its applier too (kube moves it), since apply
//! ownership here does not know updates.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::apply;

/// Who is writing, and how.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pub manager: String,
    pub apply: bool,
    /// Through the `status` subresource.
    pub status: bool,
    pub api_version: String,
}

/// What an object's managed fields are made of: per `(manager, status subresource, apply)`,
/// when and through which apiVersion the manager last wrote, and (for updates) its fields.
#[derive(Clone, Debug, Default)]
pub(crate) struct Managed {
    entries: BTreeMap<(String, bool, bool), Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    api_version: String,
    time: String,
    /// Fields of an `Update` entry; `Apply` entries read theirs off the applied configuration.
    fields: Vec<Vec<String>>,
}

impl Managed {
    /// Records a write that turned `old` (none on create) into `new`, and returns the
    /// `managedFields` list for `new`. `applied` is the applied configuration per
    /// `(manager, status subresource)` after the write.
    pub fn record(
        &mut self,
        writer: Option<&Writer>,
        old: Option<&Value>,
        new: &Value,
        applied: &BTreeMap<(String, bool), Value>,
        now: &str,
    ) -> Value {
        if let Some(w) = writer {
            let key = (w.manager.clone(), w.status, w.apply);
            let mut changed = Vec::new();
            if !w.apply {
                changed = apply::leaves(new)
                    .into_iter()
                    .filter(|(path, value)| old.and_then(|o| apply::at(o, path)) != Some(value))
                    .map(|(path, _)| path)
                    .collect::<Vec<_>>();
                for (k, e) in &mut self.entries {
                    if *k != key && !k.2 {
                        e.fields.retain(|p| !changed.contains(p));
                    }
                }
            }
            let entry = self.entries.entry(key).or_insert_with(|| Entry {
                api_version: String::new(),
                time: String::new(),
                fields: Vec::new(),
            });
            entry.api_version.clone_from(&w.api_version);
            entry.time = now.to_string();
            for path in changed {
                if !entry.fields.contains(&path) {
                    entry.fields.push(path);
                }
            }
        }
        for e in self.entries.values_mut() {
            e.fields.retain(|p| apply::at(new, p).is_some());
        }
        self.entries.retain(|(manager, status, is_apply), e| {
            if *is_apply {
                applied.contains_key(&(manager.clone(), *status))
            } else {
                !e.fields.is_empty()
            }
        });
        let list: Vec<Value> = self
            .entries
            .iter()
            .map(|((manager, status, is_apply), e)| {
                let fields = if *is_apply {
                    applied
                        .get(&(manager.clone(), *status))
                        .map(|cfg| apply::leaves(cfg).into_iter().map(|(p, _)| p).collect())
                        .unwrap_or_default()
                } else {
                    e.fields.clone()
                };
                let mut entry = json!({
                    "manager": manager,
                    "operation": if *is_apply { "Apply" } else { "Update" },
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields_v1(&fields),
                });
                if *status && let Value::Object(m) = &mut entry {
                    m.insert("subresource".into(), json!("status"));
                }
                entry
            })
            .collect();
        Value::Array(list)
    }
}

/// A set of field paths in the `FieldsV1` form: `{"f:a": {"f:b": {}}}`.
pub(crate) fn fields_v1(paths: &[Vec<String>]) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for seg in path {
            let child = node
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = child else {
                break;
            };
            node = m;
        }
    }
    Value::Object(root)
}

/// The manager kube-apiserver names for a write without `fieldManager`: the user agent up to its
/// first `/` (apiserver `prefixFromUserAgent`), at most 128 characters.
pub(crate) fn manager_from_user_agent(user_agent: &str) -> String {
    let prefix = user_agent.split('/').next().unwrap_or_default();
    prefix.chars().take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str, apply: bool) -> Writer {
        Writer {
            manager: manager.into(),
            apply,
            status: false,
            api_version: "v1".into(),
        }
    }

    #[test]
    fn updates_take_fields_from_other_updaters() {
        let mut m = Managed::default();
        let none = BTreeMap::new();
        let a = json!({"metadata": {"name": "x", "labels": {"l": "1"}}, "data": {"k": "v"}});
        let list = m.record(Some(&writer("one", false)), None, &a, &none, "t1");
        assert_eq!(
            list[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:l": {}}}, "f:data": {"f:k": {}}})
        );
        let b = json!({"metadata": {"name": "x", "labels": {"l": "1"}}, "data": {"k": "w"}});
        let list = m.record(Some(&writer("two", false)), Some(&a), &b, &none, "t2");
        assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
        assert_eq!(list[0]["manager"], "one");
        assert_eq!(
            list[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:l": {}}}})
        );
        assert_eq!(list[1]["fieldsV1"], json!({"f:data": {"f:k": {}}}));
        assert_eq!(
            (&list[1]["operation"], &list[1]["time"]),
            (&json!("Update"), &json!("t2"))
        );
        // A field removed leaves its owner; an emptied entry goes.
        let c = json!({"metadata": {"name": "x", "labels": {"l": "1"}}});
        let list = m.record(Some(&writer("one", false)), Some(&b), &c, &none, "t3");
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    }

    #[test]
    fn apply_entries_follow_the_applied_configuration() {
        let mut m = Managed::default();
        let cfg =
            json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": 1}});
        let applied = BTreeMap::from([(("ssa".to_string(), false), cfg.clone())]);
        let list = m.record(Some(&writer("ssa", true)), None, &cfg, &applied, "t1");
        assert_eq!(list[0]["operation"], "Apply");
        assert_eq!(list[0]["fieldsV1"], json!({"f:spec": {"f:a": {}}}));
        assert_eq!(list[0]["fieldsType"], "FieldsV1");
    }
}
