//! `metadata.managedFields`, approximated from what each field manager wrote.
//!
//! As kube-apiserver (apiserver `pkg/endpoints/handlers/fieldmanager`, structured-merge-diff
//! `fieldpath` for the `FieldsV1` format), an object carries one entry per field manager,
//! operation (`Apply` or `Update`) and subresource, with the manager's fields as a `FieldsV1`
//! set: `{"f:spec": {"f:replicas": {}}}`. Here:
//! - an `Apply` entry holds the fields of the configuration the manager last applied (the one
//!   server-side apply tracks in `apply.rs`), replaced on its next apply;
//! - an `Update` entry (create, update, patch) gains the fields the write set or changed, which
//!   then leave every other entry (an applier loses them from its applied configuration);
//! - fields no longer in the object leave every `Update` entry; an entry left empty goes.
//!
//! Fields reach into lists as `lists.rs` says: an item of a map-list is `k:{"name":"envoy"}`
//! with a `"."` of its own, a set member `v:"x"`, an atomic list one field. Approximations: a
//! map is never owned as a whole (no `"."` for maps), and list items by index (`i:`) never
//! appear (only atomic lists have no keys, and they are one field).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::apply;
use super::lists::{Lists, Path, Seg};

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
    fields: Vec<Path>,
}

impl Managed {
    /// Records a write that turned `old` (none on create) into `new`, and returns the
    /// `managedFields` list for `new`. `applied` is the applied configuration per
    /// `(manager, status subresource)` after the write; an update takes the fields it changed
    /// out of them.
    pub fn record(
        &mut self,
        writer: Option<&Writer>,
        old: Option<&Value>,
        new: &Value,
        applied: &mut BTreeMap<(String, bool), Value>,
        lists: &Lists,
        now: &str,
    ) -> Value {
        if let Some(w) = writer {
            let key = (w.manager.clone(), w.status, w.apply);
            let mut changed = Vec::new();
            if !w.apply {
                changed = apply::leaves(new, lists)
                    .into_iter()
                    .filter(|(path, value)| {
                        let before = old.and_then(|o| apply::at(o, path));
                        match value {
                            Some(v) => before != Some(*v),
                            None => before.is_none(),
                        }
                    })
                    .map(|(path, _)| path)
                    .collect::<Vec<_>>();
                for (k, e) in &mut self.entries {
                    if *k != key && !k.2 {
                        e.fields.retain(|p| !changed.contains(p));
                    }
                }
                for cfg in applied.values_mut() {
                    for path in &changed {
                        if apply::at(cfg, path).is_some() {
                            apply::disown(cfg, path);
                        }
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
                        .map(|cfg| paths(cfg, lists))
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

/// The fields a configuration sets.
fn paths(cfg: &Value, lists: &Lists) -> Vec<Path> {
    apply::leaves(cfg, lists)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

impl Managed {
    /// Takes a field away from `manager`'s `Update` entries (lost to a forced apply).
    pub fn disown(&mut self, manager: &str, path: &Path) {
        for ((m, _, is_apply), e) in &mut self.entries {
            if m == manager && !*is_apply {
                e.fields.retain(|p| !p.starts_with(path));
            }
        }
    }

    /// The fields every other manager owns (by update, or by the configuration it applied), for
    /// the conflicts and releases of an apply by `manager`.
    pub fn owned_by_others(
        &self,
        manager: &str,
        applied: &BTreeMap<(String, bool), Value>,
        lists: &Lists,
    ) -> Vec<(String, Vec<Path>)> {
        let mut out: Vec<(String, Vec<Path>)> = Vec::new();
        for ((m, _, is_apply), e) in &self.entries {
            if m != manager && !*is_apply {
                out.push((m.clone(), e.fields.clone()));
            }
        }
        for ((m, _), cfg) in applied {
            if m != manager {
                out.push((m.clone(), paths(cfg, lists)));
            }
        }
        out
    }
}

/// A set of field paths in the `FieldsV1` form: `{"f:a": {"k:{\"name\":\"x\"}": {".": {}}}}`.
pub(crate) fn fields_v1(paths: &[Path]) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &[Seg]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let child = node
            .entry(first.fields_v1())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = child {
            // A map-list item is owned as itself too.
            if rest.is_empty() && matches!(first, Seg::Key(..)) {
                m.insert(".".into(), Value::Object(Map::new()));
            }
            insert(m, rest);
        }
    }
    let mut root = Map::new();
    for path in paths {
        insert(&mut root, path);
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
        let mut none = BTreeMap::new();
        let lists = Lists::Builtin {
            plural: "configmaps".into(),
        };
        let a = json!({"metadata": {"name": "x", "labels": {"l": "1"}}, "data": {"k": "v"}});
        let list = m.record(
            Some(&writer("one", false)),
            None,
            &a,
            &mut none,
            &lists,
            "t1",
        );
        assert_eq!(
            list[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:l": {}}}, "f:data": {"f:k": {}}})
        );
        let b = json!({"metadata": {"name": "x", "labels": {"l": "1"}}, "data": {"k": "w"}});
        let list = m.record(
            Some(&writer("two", false)),
            Some(&a),
            &b,
            &mut none,
            &lists,
            "t2",
        );
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
        let list = m.record(
            Some(&writer("one", false)),
            Some(&b),
            &c,
            &mut none,
            &lists,
            "t3",
        );
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    }

    #[test]
    fn apply_entries_follow_the_applied_configuration() {
        let mut m = Managed::default();
        let cfg =
            json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": 1}});
        let mut applied = BTreeMap::from([(("ssa".to_string(), false), cfg.clone())]);
        let lists = Lists::Builtin {
            plural: "configmaps".into(),
        };
        let list = m.record(
            Some(&writer("ssa", true)),
            None,
            &cfg,
            &mut applied,
            &lists,
            "t1",
        );
        assert_eq!(list[0]["operation"], "Apply");
        assert_eq!(list[0]["fieldsV1"], json!({"f:spec": {"f:a": {}}}));
        assert_eq!(list[0]["fieldsType"], "FieldsV1");
    }
}
