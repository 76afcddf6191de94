//! Server-side apply, approximated on plain JSON.
//!
//! Each object keeps, per field manager (and separately for the `status` subresource), the last
//! configuration that manager applied. Ownership is read off those configurations:
//! - merge: maps merge key by key, everything else (lists included) is replaced, `null` removes;
//! - release: a leaf the manager applied before and omits now is removed from the object, unless
//!   another manager's applied configuration still sets it;
//! - conflict: without `force`, applying a leaf another manager applied with a different value
//!   fails with 409.
//!
//! Fields written by update/patch (not apply) are owned by no one here, so they are never
//! released and never conflict. Lists are atomic, even those Kubernetes merges by key.

use serde_json::Value;

/// Merges an applied configuration into the live object.
pub(crate) fn merge_applied(live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            for (k, v) in applied {
                if v.is_null() {
                    live.remove(k);
                } else if let Some(existing) = live.get_mut(k)
                    && existing.is_object()
                    && v.is_object()
                {
                    merge_applied(existing, v);
                } else {
                    live.insert(k.clone(), v.clone());
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Whether a path takes part in ownership: identity fields never do, nor server-set metadata.
fn tracked(path: &[String]) -> bool {
    match path {
        [] => false,
        [top, ..] if top == "apiVersion" || top == "kind" => false,
        [top, field, ..] if top == "metadata" => matches!(
            field.as_str(),
            "labels" | "annotations" | "ownerReferences" | "finalizers"
        ),
        [top] if top == "metadata" => false,
        _ => true,
    }
}

/// Leaf paths of a configuration (non-map values and empty maps), with their values.
pub(crate) fn leaves(cfg: &Value) -> Vec<(Vec<String>, &Value)> {
    fn walk<'a>(v: &'a Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if tracked(path) {
                    out.push((path.clone(), v));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(cfg, &mut Vec::new(), &mut out);
    out
}

/// The value at `path`, following maps only.
pub(crate) fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| v.as_object()?.get(seg))
}

/// Removes the value at `path`, then any map left empty on the way up (below the top level).
fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = parents
        .iter()
        .try_fold(&mut *v, |v, seg| v.as_object_mut()?.get_mut(seg))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    parent.remove(last);
    if parent.is_empty() && parents.len() > 1 {
        remove_path(v, parents);
    }
}

/// Removes from `live` the leaves `previous` set, `current` no longer sets and no other manager sets.
pub(crate) fn release(live: &mut Value, previous: &Value, current: &Value, others: &[&Value]) {
    for (path, _) in leaves(previous) {
        let kept = at(current, &path).is_some() || others.iter().any(|o| at(o, &path).is_some());
        if !kept {
            remove_path(live, &path);
        }
    }
}

/// Leaves of `applied` that another manager applied with a different value, as
/// `(manager, path)`.
pub(crate) fn conflicts<'a>(
    applied: &Value,
    others: impl Iterator<Item = (&'a str, &'a Value)> + Clone,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (path, value) in leaves(applied) {
        for (manager, cfg) in others.clone() {
            if let Some(theirs) = at(cfg, &path)
                && theirs != value
            {
                out.push((manager.to_string(), path.clone()));
            }
        }
    }
    out
}

/// Takes a field away from a manager that lost it to a forced apply.
pub(crate) fn disown(cfg: &mut Value, path: &[String]) {
    remove_path(cfg, path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_maps_replace_lists_null_removes() {
        let mut live = json!({"spec": {"a": 1, "b": {"c": 2}, "l": [1, 2]}, "status": {"x": 1}});
        merge_applied(
            &mut live,
            &json!({"spec": {"b": {"d": 3}, "l": [3], "a": null}}),
        );
        assert_eq!(
            live,
            json!({"spec": {"b": {"c": 2, "d": 3}, "l": [3]}, "status": {"x": 1}})
        );
    }

    #[test]
    fn release_only_unowned_leaves() {
        let mut live = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2", "c": "3"}}, "spec": {"p": {"q": 1}}});
        let previous = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}, "spec": {"p": {"q": 1}}});
        let current = json!({"metadata": {"name": "x", "labels": {"a": "1"}}});
        let other = json!({"metadata": {"labels": {"c": "3"}}});
        release(&mut live, &previous, &current, &[&other]);
        assert_eq!(
            live,
            json!({"metadata": {"name": "x", "labels": {"a": "1", "c": "3"}}, "spec": {}})
        );
    }

    #[test]
    fn conflicts_name_manager_and_path() {
        let applied = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": 1, "b": 2}});
        let other = json!({"apiVersion": "v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"a": 1, "b": 3}});
        let found = conflicts(&applied, [("other", &other)].into_iter());
        assert_eq!(
            found,
            vec![(
                "other".to_string(),
                vec!["spec".to_string(), "b".to_string()]
            )]
        );
    }
}
