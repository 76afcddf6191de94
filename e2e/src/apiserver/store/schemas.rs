//! The schemas of every stored CRD, worked out once per CRD write and shared (`Arc`) by the
//! writes of its custom objects, instead of looked up and deep-copied on every write.
//!
//! What a lookup answers is exactly what [`schema::of_version`] answers on the stored CRD:
//! the schema of the first listed version of that name, else (for a version the CRD does not
//! list) the old top-level `spec.validation` schema.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::super::schema;

/// One CRD's schemas, per version name.
#[derive(Debug, Default)]
pub(super) struct CrdSchemas {
    listed: BTreeMap<String, Option<Arc<Value>>>,
    /// What [`schema::of_version`] answers for a version the CRD does not list.
    unlisted: Option<Arc<Value>>,
}

impl CrdSchemas {
    pub fn of(crd: &Value) -> Self {
        let mut listed = BTreeMap::new();
        let names = crd
            .get("spec")
            .and_then(|s| s.get("versions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.get("name").and_then(Value::as_str));
        for name in names {
            listed
                .entry(name.to_string())
                .or_insert_with(|| schema::of_version(crd, name).cloned().map(Arc::new));
        }
        let unlisted = crd
            .get("spec")
            .and_then(|s| s.get("validation"))
            .and_then(|s| s.get("openAPIV3Schema"))
            .filter(|s| s.is_object())
            .cloned()
            .map(Arc::new);
        Self { listed, unlisted }
    }

    pub fn version(&self, version: &str) -> Option<&Arc<Value>> {
        match self.listed.get(version) {
            Some(s) => s.as_ref(),
            None => self.unlisted.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every version name a CRD may be asked for answers what `schema::of_version` answers.
    #[test]
    fn lookups_answer_what_the_stored_crd_answers() {
        let s = |t: &str| json!({"openAPIV3Schema": {"type": "object", "description": t}});
        let crds = [
            json!({"spec": {"versions": [
                {"name": "v1", "schema": s("v1")},
                {"name": "v2"},
                {"name": "v1", "schema": s("second v1")},
                {"name": "v3", "schema": {"other": 1}},
            ], "validation": s("top")}}),
            json!({"spec": {"versions": [{"name": "v1", "schema": s("v1")}]}}),
            json!({"spec": {"validation": s("top")}}),
            json!({"spec": {"versions": [{"name": "v1"}], "validation": {"openAPIV3Schema": 3}}}),
            json!({}),
        ];
        for crd in &crds {
            let cached = CrdSchemas::of(crd);
            for v in ["v1", "v2", "v3", "v4", ""] {
                assert_eq!(
                    cached.version(v).map(|a| &**a),
                    schema::of_version(crd, v),
                    "{crd} {v}"
                );
            }
        }
    }
}
