//! Structural schemas: apiextensions v1 refuses a CRD whose version schema is not structural
//! (apiextensions-apiserver `pkg/apiserver/schema` `ValidateStructural`, run by
//! `validateCustomResourceDefinitionVersion`). The rules checked here, each with the path
//! kube reports (`spec.versions[0].schema.openAPIV3Schema.properties[spec].type`):
//!
//! - every node has a non-empty `type` at the root (which must be `object`), for each field
//!   under `properties` or `additionalProperties`, and for `items`; except a node with
//!   `x-kubernetes-int-or-string: true` (whose `type` must then be empty) or
//!   `x-kubernetes-preserve-unknown-fields: true`;
//! - `properties` and `additionalProperties` are not both set;
//! - inside `allOf`, `anyOf`, `oneOf` and `not`, no `type`, `nullable`, `default`,
//!   `description` or `additionalProperties` (but the `anyOf: [{type: integer}, {type: string}]`
//!   that goes with `x-kubernetes-int-or-string`).
//!
//! Not checked: that fields named inside junctors are also named outside them, and the
//! restrictions on `metadata`. A CRD created through v1beta1 (`preserveUnknownFields: true`)
//! or already stored non-structural is not judged, as kube lets such CRDs be updated.
//! The messages are written from kube's, from memory.

use serde_json::{Map, Value};

use super::validation::Cause;

const JUNCTORS: [&str; 4] = ["allOf", "anyOf", "oneOf", "not"];
const FORBIDDEN_IN_JUNCTORS: [&str; 5] = [
    "type",
    "nullable",
    "default",
    "description",
    "additionalProperties",
];

/// Where a node sits, for the `type` rule.
#[derive(Clone, Copy)]
enum Place {
    Root,
    Field,
    Item,
    /// Inside a junctor: `type` is forbidden rather than required.
    Junctor,
}

fn flag(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool) == Some(true)
}

/// The `anyOf` that goes with `x-kubernetes-int-or-string`.
fn int_or_string_any_of(any_of: &Value) -> bool {
    let types: Vec<Option<&str>> = any_of
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s.get("type").and_then(Value::as_str))
        .collect();
    types == [Some("integer"), Some("string")]
}

/// The structural-schema violations of every version of `crd`. Iterative (no recursion on the
/// schema's depth).
pub(crate) fn crd(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    for (i, version) in versions.into_iter().flatten().enumerate() {
        let Some(schema) = version.pointer("/schema/openAPIV3Schema") else {
            continue;
        };
        let base = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let mut todo: Vec<(&Value, String, Place)> = vec![(schema, base, Place::Root)];
        while let Some((node, path, place)) = todo.pop() {
            let Some(map) = node.as_object() else {
                continue;
            };
            let int_or_string = flag(map, "x-kubernetes-int-or-string");
            let preserve = flag(map, "x-kubernetes-preserve-unknown-fields");
            let ty = map.get("type").and_then(Value::as_str).unwrap_or_default();
            match place {
                Place::Junctor => {
                    for key in FORBIDDEN_IN_JUNCTORS {
                        if map.contains_key(key) {
                            causes.push((
                                format!("{path}.{key}"),
                                "Forbidden: must be empty to be structural".into(),
                            ));
                        }
                    }
                }
                _ if int_or_string && !ty.is_empty() => {
                    causes.push((
                        format!("{path}.type"),
                        format!(
                            "Invalid value: {ty:?}: must be empty if x-kubernetes-int-or-string is true"
                        ),
                    ));
                }
                _ if int_or_string => {}
                Place::Root if ty != "object" => {
                    let why = if ty.is_empty() {
                        "Required value: must not be empty at the root".to_owned()
                    } else {
                        format!("Invalid value: {ty:?}: must be object at the root")
                    };
                    causes.push((format!("{path}.type"), why));
                }
                Place::Field | Place::Item if ty.is_empty() && !preserve => {
                    let what = match place {
                        Place::Item => "array items",
                        _ => "object fields",
                    };
                    causes.push((
                        format!("{path}.type"),
                        format!("Required value: must not be empty for specified {what}"),
                    ));
                }
                _ => {}
            }
            if map.contains_key("properties")
                && map
                    .get("additionalProperties")
                    .is_some_and(Value::is_object)
            {
                causes.push((
                    format!("{path}.additionalProperties"),
                    "Forbidden: additionalProperties and properties are mutual exclusive".into(),
                ));
            }
            let inner = if matches!(place, Place::Junctor) {
                Place::Junctor
            } else {
                Place::Field
            };
            if let Some(props) = map.get("properties").and_then(Value::as_object) {
                for (name, child) in props {
                    todo.push((child, format!("{path}.properties[{name}]"), inner));
                }
            }
            if let Some(child) = map.get("additionalProperties").filter(|a| a.is_object()) {
                todo.push((child, format!("{path}.additionalProperties"), inner));
            }
            if let Some(child) = map.get("items").filter(|a| a.is_object()) {
                let item = if matches!(place, Place::Junctor) {
                    Place::Junctor
                } else {
                    Place::Item
                };
                todo.push((child, format!("{path}.items"), item));
            }
            for junctor in JUNCTORS {
                let Some(value) = map.get(junctor) else {
                    continue;
                };
                if junctor == "anyOf" && int_or_string && int_or_string_any_of(value) {
                    continue;
                }
                match value {
                    Value::Array(list) => {
                        for (j, child) in list.iter().enumerate() {
                            todo.push((child, format!("{path}.{junctor}[{j}]"), Place::Junctor));
                        }
                    }
                    child @ Value::Object(_) => {
                        todo.push((child, format!("{path}.{junctor}"), Place::Junctor));
                    }
                    _ => {}
                }
            }
        }
    }
    causes.sort();
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_schema(schema: Value) -> Value {
        json!({"spec": {"versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}})
    }

    #[test]
    fn structural_schemas_pass() {
        let ok = with_schema(json!({"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                     "properties": {
                        "port": {"x-kubernetes-int-or-string": true,
                                 "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "any": {"x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "list": {"type": "array", "items": {"type": "string"}}}}}}));
        assert_eq!(crd(&ok), Vec::<Cause>::new());
    }

    #[test]
    fn non_structural_schemas_are_named() {
        let bad = with_schema(json!({"properties": {
            "spec": {"properties": {
                "a": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
                "n": {"type": "string", "x-kubernetes-int-or-string": true},
                "x": {"type": "object", "anyOf": [{"type": "object", "description": "d"}]},
                "l": {"type": "array", "items": {}}}}}}));
        let fields: Vec<String> = crd(&bad).into_iter().map(|(f, _)| f).collect();
        let p = "spec.versions[0].schema.openAPIV3Schema";
        assert_eq!(
            fields,
            [
                format!("{p}.properties[spec].properties[a].additionalProperties"),
                format!("{p}.properties[spec].properties[l].items.type"),
                format!("{p}.properties[spec].properties[n].type"),
                format!("{p}.properties[spec].properties[x].anyOf[0].description"),
                format!("{p}.properties[spec].properties[x].anyOf[0].type"),
                format!("{p}.properties[spec].type"),
                format!("{p}.type"),
            ]
        );
    }
}
