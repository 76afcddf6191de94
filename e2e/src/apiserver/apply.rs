//! Server-side apply, approximated on plain JSON.
//!
//! Each object keeps, per field manager (and separately for the `status` subresource), the last
//! configuration that manager applied; ownership is read off those configurations and off the
//! fields updates wrote (`managed.rs`). Paths reach into lists as Kubernetes does (`lists.rs`):
//! items of map-lists by their key (`containers[name="envoy"].image`), members of sets by value;
//! atomic lists are one field.
//! - merge: maps merge key by key; map-lists item by item (an applied item merges into the live
//!   item with its key, new items are appended in applied order, other live items stay); sets
//!   gain the applied members; atomic lists and scalars are replaced; `null` removes;
//! - release: a field (or list item) the manager applied before and omits now is removed from the
//!   object, unless another manager still owns it or something beneath it;
//! - conflict: without `force`, applying a value that differs from the live one at a field another
//!   manager owns (by apply or by update) fails with 409.

use serde_json::Value;

use super::lists::{ListType, Lists, Path, Seg, display};

/// Merges an applied configuration into the live object.
pub(crate) fn merge_applied(live: &mut Value, applied: &Value, lists: &Lists) {
    merge_at(live, applied, lists, &mut Vec::new());
}

fn merge_at<'a>(live: &mut Value, applied: &'a Value, lists: &Lists, fields: &mut Vec<&'a str>) {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            for (k, v) in applied {
                if v.is_null() {
                    live.remove(k);
                    continue;
                }
                match live.get_mut(k) {
                    Some(existing)
                        if (existing.is_object() && v.is_object())
                            || (existing.is_array() && v.is_array()) =>
                    {
                        fields.push(k);
                        merge_at(existing, v, lists, fields);
                        fields.pop();
                    }
                    _ => {
                        live.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied)) => {
            let kind = lists.of(fields);
            match kind {
                ListType::Atomic => *live = applied.clone(),
                ListType::Set => {
                    for item in applied {
                        if !live.contains(item) {
                            live.push(item.clone());
                        }
                    }
                }
                ListType::Map(_) => {
                    let (Some(_), Some(segs)) = (kind.segs(live), kind.segs(applied)) else {
                        *live = applied.clone();
                        return;
                    };
                    for (item, seg) in applied.iter().zip(segs) {
                        match live.iter_mut().find(|l| seg.selects(l)) {
                            Some(existing) => merge_at(existing, item, lists, fields),
                            None => live.push(item.clone()),
                        }
                    }
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Whether a path takes part in ownership: identity fields never do, nor server-set metadata.
fn tracked(path: &[Seg]) -> bool {
    match path {
        [] => false,
        [top, ..] if matches!(top.field(), Some("apiVersion" | "kind")) => false,
        [top, field, ..] if top.field() == Some("metadata") => matches!(
            field.field(),
            Some("labels" | "annotations" | "ownerReferences" | "finalizers")
        ),
        [top] if top.field() == Some("metadata") => false,
        _ => true,
    }
}

/// The fields of a configuration with their values: leaves (scalars, empty maps, atomic lists,
/// set members) with `Some(value)`, and each map-list item itself with `None` (its `"."` in
/// `FieldsV1`), before its fields.
pub(crate) fn leaves<'a>(cfg: &'a Value, lists: &Lists) -> Vec<(Path, Option<&'a Value>)> {
    fn walk<'a>(
        v: &'a Value,
        lists: &Lists,
        path: &mut Path,
        fields: &mut Vec<&'a str>,
        out: &mut Vec<(Path, Option<&'a Value>)>,
    ) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(Seg::Field(k.clone()));
                    fields.push(k);
                    walk(child, lists, path, fields, out);
                    fields.pop();
                    path.pop();
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let kind = lists.of(fields);
                match kind.segs(items) {
                    Some(segs) => {
                        for (item, seg) in items.iter().zip(segs) {
                            let member = matches!(seg, Seg::Value(_));
                            path.push(seg);
                            if tracked(path) {
                                out.push((path.clone(), member.then_some(item)));
                            }
                            if !member {
                                walk(item, lists, path, fields, out);
                            }
                            path.pop();
                        }
                    }
                    None => {
                        if tracked(path) {
                            out.push((path.clone(), Some(v)));
                        }
                    }
                }
            }
            _ => {
                if tracked(path) {
                    out.push((path.clone(), Some(v)));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(cfg, lists, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn child<'a>(v: &'a Value, seg: &Seg) -> Option<&'a Value> {
    match seg {
        Seg::Field(f) => v.as_object()?.get(f),
        _ => v.as_array()?.iter().find(|item| seg.selects(item)),
    }
}

fn child_mut<'a>(v: &'a mut Value, seg: &Seg) -> Option<&'a mut Value> {
    match seg {
        Seg::Field(f) => v.as_object_mut()?.get_mut(f),
        _ => v.as_array_mut()?.iter_mut().find(|item| seg.selects(item)),
    }
}

/// The value at `path`.
pub(crate) fn at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, child)
}

/// Removes the value at `path`, then any map or list left empty on the way up (below the top
/// level).
fn remove_path(v: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = parents.iter().try_fold(&mut *v, child_mut) else {
        return;
    };
    let empty = match (parent, last) {
        (Value::Object(m), Seg::Field(f)) => {
            m.remove(f);
            m.is_empty()
        }
        (Value::Array(items), seg) => {
            items.retain(|item| !seg.selects(item));
            items.is_empty()
        }
        _ => return,
    };
    if empty && parents.len() > 1 {
        remove_path(v, parents);
    }
}

/// Whether `path` names a key field of a map-list item (kept while the item is).
fn is_key_field(path: &[Seg]) -> bool {
    match path {
        [.., Seg::Key(_, keys), Seg::Field(f)] => keys.iter().any(|(n, _, _)| n == f),
        _ => false,
    }
}

/// Removes from `live` the fields `previous` set, `current` no longer sets and no other manager
/// owns (nor owns anything beneath).
pub(crate) fn release(
    live: &mut Value,
    previous: &Value,
    current: &Value,
    others: &[Path],
    lists: &Lists,
) {
    for (path, _) in leaves(previous, lists) {
        let kept = at(current, &path).is_some()
            || others.iter().any(|o| o.starts_with(&path))
            || is_key_field(&path);
        if !kept {
            remove_path(live, &path);
        }
    }
}

/// Fields of `applied` whose value differs from the live one and that another manager owns, as
/// `(manager, path)`.
pub(crate) fn conflicts(
    applied: &Value,
    live: &Value,
    others: &[(String, Vec<Path>)],
    lists: &Lists,
) -> Vec<(String, Path)> {
    let mut out = Vec::new();
    for (path, value) in leaves(applied, lists) {
        let Some(value) = value else {
            continue;
        };
        if at(live, &path) == Some(value) {
            continue;
        }
        for (manager, owned) in others {
            if owned.contains(&path) {
                out.push((manager.clone(), path.clone()));
            }
        }
    }
    out
}

/// The conflict lines of a 409, as kube-apiserver words them.
pub(crate) fn conflict_message(found: &[(String, Path)]) -> String {
    let lines: Vec<String> = found
        .iter()
        .map(|(m, p)| format!("conflict with {m:?}: {}", display(p)))
        .collect();
    format!(
        "Apply failed with {} conflict{}: {}",
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        lines.join(", ")
    )
}

/// Takes a field away from a manager's applied configuration (lost to a forced apply or an
/// update).
pub(crate) fn disown(cfg: &mut Value, path: &[Seg]) {
    remove_path(cfg, path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> Lists {
        Lists::Builtin {
            plural: "services".into(),
        }
    }

    fn ds() -> Lists {
        Lists::Builtin {
            plural: "daemonsets".into(),
        }
    }

    fn f(names: &[&str]) -> Path {
        names.iter().map(|n| Seg::Field((*n).to_string())).collect()
    }

    #[test]
    fn merge_maps_replace_atomic_lists_null_removes() {
        let mut live = json!({"spec": {"a": 1, "b": {"c": 2}, "l": [1, 2]}, "status": {"x": 1}});
        merge_applied(
            &mut live,
            &json!({"spec": {"b": {"d": 3}, "l": [3], "a": null}}),
            &svc(),
        );
        assert_eq!(
            live,
            json!({"spec": {"b": {"c": 2, "d": 3}, "l": [3]}, "status": {"x": 1}})
        );
    }

    #[test]
    fn map_lists_merge_by_key_and_sets_by_value() {
        let mut live = json!({"metadata": {"finalizers": ["a"]}, "spec": {"template": {"spec": {"containers": [
            {"name": "envoy", "image": "e:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "s:1"}]}}}});
        merge_applied(
            &mut live,
            &json!({"metadata": {"finalizers": ["b", "a"]}, "spec": {"template": {"spec": {"containers": [
                {"name": "new", "image": "n:1"},
                {"name": "envoy", "image": "e:2", "env": [{"name": "B", "value": "2"}]}]}}}}),
            &ds(),
        );
        assert_eq!(
            live,
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"template": {"spec": {"containers": [
                {"name": "envoy", "image": "e:2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "side", "image": "s:1"},
                {"name": "new", "image": "n:1"}]}}}})
        );
    }

    #[test]
    fn leaves_name_list_items_by_key() {
        let cfg = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let found: Vec<String> = leaves(&cfg, &svc())
            .iter()
            .map(|(p, v)| {
                format!(
                    "{}={}",
                    display(p),
                    v.map_or("item".into(), ToString::to_string)
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                r#".spec.ports[port=80,protocol="TCP"]=item"#,
                r#".spec.ports[port=80,protocol="TCP"].name="http""#,
                r#".spec.ports[port=80,protocol="TCP"].port=80"#,
            ]
        );
    }

    #[test]
    fn release_only_unowned_fields_and_items() {
        let mut live = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2", "c": "3"}}, "spec": {"p": {"q": 1},
            "ports": [{"port": 1, "name": "one"}, {"port": 2, "name": "two"}]}});
        let previous = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}, "spec": {"p": {"q": 1},
            "ports": [{"port": 1, "name": "one"}, {"port": 2, "name": "two"}]}});
        let current = json!({"metadata": {"name": "x", "labels": {"a": "1"}}});
        let others = leaves(
            &json!({"metadata": {"labels": {"c": "3"}}, "spec": {"ports": [{"port": 2, "name": "two"}]}}),
            &svc(),
        )
        .into_iter()
        .map(|(p, _)| p)
        .collect::<Vec<_>>();
        release(&mut live, &previous, &current, &others, &svc());
        assert_eq!(
            live,
            json!({"metadata": {"name": "x", "labels": {"a": "1", "c": "3"}}, "spec": {"ports": [{"port": 2, "name": "two"}]}})
        );
    }

    #[test]
    fn conflicts_name_manager_and_path() {
        let live = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": 1, "b": 3}});
        let applied = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": 1, "b": 2}});
        let owned = vec![f(&["spec", "a"]), f(&["spec", "b"])];
        let found = conflicts(&applied, &live, &[("other".to_string(), owned)], &svc());
        assert_eq!(found, vec![("other".to_string(), f(&["spec", "b"]))]);
        assert_eq!(
            conflict_message(&found),
            "Apply failed with 1 conflict: conflict with \"other\": .spec.b"
        );
    }
}
