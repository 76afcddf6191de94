//! What every write goes through before it is stored: type meta, namespace, metadata shape,
//! built-in and CRD-schema validation, and the list types a write merges by.

use std::sync::Arc;

use serde_json::{Value, json};

use super::super::builtin;
use super::super::error::ApiError;
use super::super::lists::Lists;
use super::super::meta::{meta_str, set_meta};
use super::super::resources::{self, ResourceType};
use super::super::schema;
use super::super::structural;
use super::super::validation;
use super::{Store, Target, crd_key, namespace_key};

impl Store {
    /// Fills or checks `apiVersion` and `kind` against the addressed resource.
    pub(super) fn check_type_meta(
        rt: &ResourceType,
        version: &str,
        obj: &mut Value,
        required: bool,
    ) -> Result<(), ApiError> {
        let want_av = rt.api_version(version);
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        for (field, want) in [("apiVersion", want_av.as_str()), ("kind", rt.kind.as_str())] {
            match map.get(field).and_then(Value::as_str) {
                Some(got) if field == "apiVersion" && rt.version_of(got).is_some() => {}
                Some(got) if got == want => {}
                Some(got) => {
                    return Err(ApiError::bad_request(format!(
                        "the {field} in the data ({got}) does not match the expected {field} ({want})"
                    )));
                }
                None if required => {
                    return Err(ApiError::bad_request(format!("{field} must be set")));
                }
                None => {
                    map.insert(field.into(), Value::String(want.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Sets `metadata.namespace` from the request, rejecting a different one in the body.
    pub(super) fn check_namespace(
        rt: &ResourceType,
        t: &Target,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let body_ns = meta_str(obj, "namespace").to_string();
        if rt.namespaced {
            if t.namespace.is_empty() {
                return Err(ApiError::bad_request(
                    "a namespace is required for namespaced resources",
                ));
            }
            if !body_ns.is_empty() && body_ns != t.namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            set_meta(obj, "namespace", Some(Value::String(t.namespace.clone())));
        } else {
            set_meta(obj, "namespace", None);
        }
        Ok(())
    }

    /// Shape checks on metadata the server relies on.
    fn validate_metadata(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        let name = meta_str(obj, "name");
        let invalid =
            |field: &str, why: &str| ApiError::invalid(&rt.group, &rt.kind, name, field, why);
        let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
            return Err(invalid("metadata", "Required value"));
        };
        let mut causes = Vec::new();
        for field in ["labels", "annotations"] {
            match meta.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) if m.values().all(Value::is_string) => {
                    causes.extend(if field == "labels" {
                        validation::labels(m)
                    } else {
                        validation::annotations(m)
                    });
                }
                Some(_) => {
                    return Err(invalid(
                        &format!("metadata.{field}"),
                        "must be a map of strings",
                    ));
                }
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_causes(&rt.group, &rt.kind, name, &causes));
        }
        match meta.get("finalizers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(f)) if f.iter().all(Value::is_string) => {}
            Some(_) => return Err(invalid("metadata.finalizers", "must be a list of strings")),
        }
        match meta.get("ownerReferences") {
            None | Some(Value::Null) => {}
            Some(Value::Array(refs)) => {
                for r in refs {
                    for f in ["apiVersion", "kind", "name", "uid"] {
                        if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                            return Err(invalid(
                                &format!("metadata.ownerReferences.{f}"),
                                "Required value",
                            ));
                        }
                    }
                }
            }
            Some(_) => return Err(invalid("metadata.ownerReferences", "must be a list")),
        }
        Ok(())
    }

    /// Kind-specific server behaviour on every write: CRD validation and status, namespace phase.
    pub(super) fn prepare(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        status_only: bool,
    ) -> Result<(), ApiError> {
        Self::validate_metadata(rt, obj)?;
        // What kube-apiserver validates in the contents of the few kinds with rules here.
        let loopback = self.allow_loopback_endpoints;
        let causes = match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "endpoints") => validation::endpoints(obj, loopback),
            ("discovery.k8s.io", "endpointslices") => validation::endpoint_slice(obj, loopback),
            ("", "pods") => {
                let mut causes = builtin::pod_spec(obj.get("spec"), "spec", false);
                causes.extend(validation::pod_spec_resources(obj.get("spec"), "spec"));
                causes
            }
            ("apps", "daemonsets") => {
                let mut causes = builtin::daemon_set(obj, old);
                causes.extend(validation::pod_spec_resources(
                    obj.get("spec")
                        .and_then(|s| s.get("template"))
                        .and_then(|t| t.get("spec")),
                    "spec.template.spec",
                ));
                causes
            }
            ("", "services") => builtin::service(obj),
            ("", "configmaps") => builtin::config_map(obj, old),
            ("", "secrets") => builtin::secret(obj, old),
            ("coordination.k8s.io", "leases") => builtin::lease(obj),
            _ => Vec::new(),
        };
        if !causes.is_empty() {
            let name = meta_str(obj, "name");
            return Err(ApiError::invalid_causes(&rt.group, &rt.kind, name, &causes));
        }
        self.check_custom(rt, obj, old, status_only)?;
        let key = rt.key();
        if key == namespace_key()
            && let Some(map) = obj.as_object_mut()
        {
            let phase = if map
                .get("metadata")
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some()
            {
                "Terminating"
            } else {
                "Active"
            };
            map.insert("status".into(), json!({"phase": phase}));
        }
        if key == crd_key() {
            let name = meta_str(obj, "name").to_string();
            let def = resources::from_crd(obj).map_err(|(field, why)| {
                ApiError::invalid(&rt.group, &rt.kind, &name, field, &why)
            })?;
            let mut causes =
                validation::crd_preserve_unknown_fields(obj, old, self.v1beta1_crd_write);
            // Schemas must be structural, unless the CRD comes from v1beta1 or already was not.
            let judged = !self.v1beta1_crd_write
                && !validation::preserves_unknown_fields(obj)
                && old.is_none_or(|o| structural::crd(o).is_empty());
            if judged {
                causes.extend(structural::crd(obj));
            }
            if !causes.is_empty() {
                return Err(ApiError::invalid_causes(
                    &rt.group, &rt.kind, &name, &causes,
                ));
            }
            // A resource may be served by one CRD only, and never shadow a built-in one.
            if self.types.contains_key(&def.key()) && self.stored(&crd_key(), "", &name).is_none() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    "spec.names",
                    "the resource is already served",
                ));
            }
            if let Some(old) = old
                && let Ok(old_def) = resources::from_crd(old)
                && old_def.namespaced != def.namespaced
            {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    &name,
                    "spec.scope",
                    "field is immutable",
                ));
            }
            let since = meta_str(obj, "creationTimestamp").to_string();
            let status = resources::crd_status(obj, &since);
            if let Some(map) = obj.as_object_mut() {
                map.insert("status".into(), status);
            }
        }
        Ok(())
    }

    /// A custom object against the schema of its CRD's version: unknown fields pruned (unless
    /// the CRD still has `spec.preserveUnknownFields: true`), then validated, with ratcheting
    /// against `old` on updates. A `/status` write prunes only `status`: kube copies the rest
    /// from the stored object, as it is.
    fn check_custom(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        status_only: bool,
    ) -> Result<(), ApiError> {
        let Some((crd, Some(schema))) = self.crd_and_schema(rt, obj) else {
            return Ok(());
        };
        if !validation::preserves_unknown_fields(crd) {
            if status_only {
                schema::prune_field(schema, obj, "status");
            } else {
                schema::prune(schema, obj);
            }
        }
        let causes = schema::validate(schema, obj, old);
        if causes.is_empty() {
            Ok(())
        } else {
            let name = meta_str(obj, "name");
            Err(ApiError::invalid_custom(&rt.group, &rt.kind, name, &causes))
        }
    }

    /// The stored CRD serving `rt`, if any, and the schema of the version `obj` names (the
    /// CRD's first version if it names none), shared with the CRD's other objects.
    fn crd_and_schema(
        &self,
        rt: &ResourceType,
        obj: &Value,
    ) -> Option<(&Value, Option<&Arc<Value>>)> {
        let crd_name = format!("{}.{}", rt.plural, rt.group);
        let crd: &Value = &self.stored(&crd_key(), "", &crd_name)?.obj;
        let version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|av| rt.version_of(av))
            .or_else(|| rt.versions.first().cloned())
            .unwrap_or_default();
        let schema = self
            .schemas
            .get(&crd_name)
            .and_then(|s| s.version(&version));
        Some((crd, schema))
    }

    /// Where the list types of `obj` come from: the schema of its CRD version for custom
    /// objects, Kubernetes' markers for built-in ones.
    pub(super) fn lists(&self, rt: &ResourceType, obj: &Value) -> Lists {
        match self.crd_and_schema(rt, obj) {
            None => Lists::Builtin {
                plural: rt.plural.clone(),
            },
            Some((_, schema)) => {
                Lists::Custom(schema.cloned().unwrap_or_else(|| Arc::new(Value::Null)))
            }
        }
    }
}
