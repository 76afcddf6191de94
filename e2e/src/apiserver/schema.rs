//! CRD OpenAPI v3 schemas applied to custom objects on write, as kube-apiserver does
//! (apiextensions-apiserver `pkg/apiserver/schema/pruning`, `pkg/apiserver/schema/defaulting`
//! `PruneNonNullableNullsWithoutDefaults`, `pkg/apiserver/validation` with kube-openapi's
//! validators, and `pkg/apiserver/validation/ratcheting.go`).
//!
//! Pruning drops what the schema does not describe; validation then reports every refused
//! field in kube's words. On updates, a value equal to the old one at the same place is not
//! judged again (validation ratcheting), so objects stored under an older schema can still have
//! their status written.

use serde_json::{Map, Value};

use super::validation::Cause;

/// The schema of `version` of a CRD (`spec.versions[*].schema.openAPIV3Schema`, or the
/// top-level `spec.validation.openAPIV3Schema` of old CRDs).
pub(crate) fn of_version<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    let spec = crd.get("spec")?;
    spec.get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))
        .and_then(|v| v.get("schema"))
        .or_else(|| spec.get("validation"))
        .and_then(|s| s.get("openAPIV3Schema"))
        .filter(|s| s.is_object())
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// Removes the fields `schema` does not describe, and `null` values of fields that are not
/// `nullable` (kube prunes those before defaulting). At the top level (and in embedded
/// resources) `apiVersion`, `kind` and `metadata` are kept.
pub(crate) fn prune(schema: &Value, obj: &mut Value) {
    prune_node(schema, obj, true);
}

/// Prunes one top-level field of `obj` as [`prune`] would, leaving the others as they are (a
/// `/status` write prunes only `status`, without copying the rest of the object).
pub(crate) fn prune_field(schema: &Value, obj: &mut Value, key: &str) {
    if matches!(key, "apiVersion" | "kind" | "metadata") {
        return;
    }
    if let Value::Object(map) = obj
        && map.contains_key(key)
    {
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
        prune_key(map, key, props, additional, preserve);
    }
}

/// Prunes `map[key]` against the properties of the schema of `map`.
fn prune_key(
    map: &mut Map<String, Value>,
    key: &str,
    props: Option<&Map<String, Value>>,
    additional: Option<&Value>,
    preserve: bool,
) {
    let child_schema = props
        .and_then(|p| p.get(key))
        .or(additional.filter(|a| a.is_object()));
    match child_schema {
        Some(s) => {
            let null = map.get(key).is_some_and(Value::is_null);
            if null && !flag(s, "nullable") {
                map.remove(key);
            } else if let Some(child) = map.get_mut(key) {
                prune_node(s, child, false);
            }
        }
        None if preserve || additional == Some(&Value::Bool(true)) => {}
        None => {
            map.remove(key);
        }
    }
}

fn prune_node(schema: &Value, value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                prune_key(map, &key, props, additional, preserve);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for item in items {
                    prune_node(s, item, false);
                }
            }
        }
        _ => {}
    }
}

/// kube-openapi's name of a JSON value's type.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(v: &Value, want: &str) -> bool {
    match want {
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => type_name(v) == other,
    }
}

/// A value as Go's `%v`/`%q` shows it in field errors: strings quoted, others as JSON.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Validates a (pruned) custom object against its schema; `old` is the stored object on
/// updates, for ratcheting. `apiVersion`, `kind` and `metadata` are checked elsewhere.
pub(crate) fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(map) = obj.as_object() else {
        return causes;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    for (key, value) in map {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(s) = props
            .and_then(|p| p.get(key))
            .or(schema.get("additionalProperties").filter(|a| a.is_object()))
        {
            let old = old.and_then(|o| o.get(key));
            node(s, value, old, key, &mut causes);
        }
    }
    required(schema, map, "", old, &mut causes);
    causes
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn required(
    schema: &Value,
    map: &Map<String, Value>,
    path: &str,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(name) && old.and_then(|o| o.get(name)).is_none() {
            causes.push((child_path(path, name), "Required value".into()));
        }
    }
}

fn node(schema: &Value, value: &Value, old: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    // Ratcheting: an unchanged value is not judged again.
    if old == Some(value) {
        return;
    }
    if value.is_null() && flag(schema, "nullable") {
        return;
    }
    let invalid = |why: String| format!("Invalid value: {}: {path} in body {why}", shown(value));
    let types: Vec<&str> = if flag(schema, "x-kubernetes-int-or-string") {
        vec!["integer", "string"]
    } else {
        schema
            .get("type")
            .and_then(Value::as_str)
            .into_iter()
            .collect()
    };
    if !types.is_empty() && !types.iter().any(|t| is_type(value, t)) {
        let got = type_name(value);
        causes.push((
            path.to_string(),
            format!(
                "Invalid value: \"{got}\": {path} in body must be of type {}: \"{got}\"",
                types.join(",")
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let listed: Vec<String> = allowed.iter().map(shown).collect();
        causes.push((
            path.to_string(),
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                listed.join(", ")
            ),
        ));
    }
    if let Some(n) = value.as_f64() {
        let exclusive = |k: &str| flag(schema, k);
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if exclusive("exclusiveMinimum") && n <= min {
                causes.push((
                    path.into(),
                    invalid(format!("should be greater than {}", schema["minimum"])),
                ));
            } else if n < min {
                causes.push((
                    path.into(),
                    invalid(format!(
                        "should be greater than or equal to {}",
                        schema["minimum"]
                    )),
                ));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if exclusive("exclusiveMaximum") && n >= max {
                causes.push((
                    path.into(),
                    invalid(format!("should be less than {}", schema["maximum"])),
                ));
            } else if n > max {
                causes.push((
                    path.into(),
                    invalid(format!(
                        "should be less than or equal to {}",
                        schema["maximum"]
                    )),
                ));
            }
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            causes.push((
                path.into(),
                invalid(format!("should be at least {min} chars long")),
            ));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            causes.push((
                path.into(),
                format!("Too long: may not be more than {max} bytes"),
            ));
        }
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if let Some(s) = props.and_then(|p| p.get(key)).or(additional) {
                    let old = old.and_then(|o| o.get(key));
                    node(s, child, old, &child_path(path, key), causes);
                }
            }
            required(schema, map, path, old, causes);
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    let old = old.and_then(|o| o.get(i));
                    node(s, item, old, &format!("{path}[{i}]"), causes);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "maxLength": 5},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "mode": {"type": "string", "enum": ["A", "B"]},
                "target": {"x-kubernetes-int-or-string": true},
                "maybe": {"type": "string", "nullable": true},
                "list": {"type": "array", "items": {"type": "object", "properties": {
                    "port": {"type": "integer"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}})
    }

    #[test]
    fn prunes_unknown_fields_and_non_nullable_nulls() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "zz": 1},
            "extra": 1,
            "spec": {"name": "a", "unknown": 1, "port": null, "maybe": null,
                     "list": [{"port": 1, "junk": 2}], "labels": {"a": "b"},
                     "free": {"anything": {"deep": 1}}}});
        prune(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "zz": 1},
                "spec": {"name": "a", "maybe": null, "list": [{"port": 1}], "labels": {"a": "b"},
                         "free": {"anything": {"deep": 1}}}})
        );
    }

    /// A `/status` write prunes only `status`: what pruning the whole object gives there, the
    /// rest untouched, for fields with a schema, without one, null and preserved.
    #[test]
    fn pruning_one_field_is_pruning_the_object_there_only() {
        let with_status = |extra: Value| {
            let mut s = schema();
            s["properties"]["status"] = extra;
            s
        };
        let schemas = [
            schema(),
            with_status(json!({"type": "object", "properties": {"a": {"type": "string"}}})),
            with_status(json!({"type": "object", "nullable": true})),
            with_status(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})),
        ];
        let statuses = [
            json!({"a": "x", "junk": 1}),
            Value::Null,
            json!({"deep": {"junk": 1}}),
        ];
        for s in &schemas {
            for status in &statuses {
                let obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
                    "spec": {"name": "a", "unknown": 1}, "extra": 2, "status": status});
                let mut whole = obj.clone();
                prune(s, &mut whole);
                let mut want = obj.clone();
                match whole.get("status") {
                    Some(v) => want["status"] = v.clone(),
                    None => {
                        want.as_object_mut().map(|m| m.remove("status"));
                    }
                }
                let mut got = obj.clone();
                prune_field(s, &mut got, "status");
                assert_eq!(got, want, "{s} {status}");
            }
        }
    }

    #[test]
    fn reports_every_error_in_kube_words() {
        let obj = json!({"spec": {"port": 0, "mode": "C", "target": true, "name": "toolong",
            "list": [{"port": "80"}], "labels": {"a": 1}}});
        let causes = validate(&schema(), &obj, None);
        let want: Vec<Cause> = vec![
            ("spec.labels.a".into(), "Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"".into()),
            ("spec.list[0].port".into(), "Invalid value: \"string\": spec.list[0].port in body must be of type integer: \"string\"".into()),
            ("spec.mode".into(), "Unsupported value: \"C\": supported values: \"A\", \"B\"".into()),
            ("spec.name".into(), "Too long: may not be more than 5 bytes".into()),
            ("spec.port".into(), "Invalid value: 0: spec.port in body should be greater than or equal to 1".into()),
            ("spec.target".into(), "Invalid value: \"boolean\": spec.target in body must be of type integer,string: \"boolean\"".into()),
        ];
        assert_eq!(causes, want);
        let missing = validate(&schema(), &json!({"spec": {}}), None);
        assert_eq!(
            missing,
            vec![("spec.name".to_string(), "Required value".to_string())]
        );
    }

    #[test]
    fn unchanged_values_are_not_judged_again() {
        let old = json!({"spec": {"name": "a", "list": [{"port": "80"}]}, "status": {}});
        let new = json!({"spec": {"name": "a", "list": [{"port": "80"}]}, "status": {"x": 1}});
        assert_eq!(validate(&schema(), &new, Some(&old)), vec![]);
        let changed = json!({"spec": {"name": "a", "list": [{"port": "81"}]}});
        assert_eq!(validate(&schema(), &changed, Some(&old)).len(), 1);
    }
}
