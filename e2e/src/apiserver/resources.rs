//! The resource types the server knows: built-in kinds and kinds defined by stored CRDs, and the
//! discovery documents describing them.

use serde_json::{Map, Value, json};

use super::validation;

/// `(group, plural)`: how objects of one resource are keyed in the store, whatever version served them.
pub(crate) type TypeKey = (String, String);

/// Which names a resource accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// DNS-1123 subdomain: most resources.
    Subdomain,
    /// DNS-1123 label: namespaces.
    Label,
    /// DNS-1035 label (starts with a letter): services.
    Label1035,
    /// Any path segment (no `/`, `%`, not `.` or `..`): RBAC objects.
    PathSegment,
}

/// One served resource.
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    /// Has a `/status` subresource: main writes ignore `status`, status writes touch only `status`.
    pub status: bool,
    pub short_names: Vec<String>,
    pub name_rule: NameRule,
    /// Fields a `fieldSelector` may use besides `metadata.name` and `metadata.namespace`.
    pub selectable_fields: Vec<String>,
}

impl ResourceType {
    pub fn key(&self) -> TypeKey {
        (self.group.clone(), self.plural.clone())
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// Finds the served version named by an `apiVersion` string, if it is this type's group.
    pub fn version_of(&self, api_version: &str) -> Option<String> {
        let (group, version) = split_api_version(api_version);
        (group == self.group && self.serves(version)).then(|| version.to_string())
    }
}

/// `"apps/v1"` → `("apps", "v1")`, `"v1"` → `("", "v1")`.
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The built-in resources.
pub(crate) fn builtins() -> Vec<ResourceType> {
    // (group, version, plural, kind, namespaced, status, short names)
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        bool,
        bool,
        &'static [&'static str],
    );
    let table: [Row; 22] = [
        ("", "v1", "namespaces", "Namespace", false, true, &["ns"]),
        ("", "v1", "services", "Service", true, true, &["svc"]),
        ("", "v1", "endpoints", "Endpoints", true, false, &["ep"]),
        ("", "v1", "secrets", "Secret", true, false, &[]),
        ("", "v1", "configmaps", "ConfigMap", true, false, &["cm"]),
        (
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            false,
            &["sa"],
        ),
        ("", "v1", "pods", "Pod", true, true, &["po"]),
        ("", "v1", "events", "Event", true, false, &["ev"]),
        ("apps", "v1", "daemonsets", "DaemonSet", true, true, &["ds"]),
        (
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            true,
            &["deploy"],
        ),
        (
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
            false,
            &[],
        ),
        (
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            false,
            &[],
        ),
        (
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            false,
            &["ev"],
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            false,
            &[],
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            false,
            &[],
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            false,
            &[],
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            false,
            &[],
        ),
        (
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            true,
            &["crd", "crds"],
        ),
        (
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            true,
            &["pdb"],
        ),
        (
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            true,
            &["rs"],
        ),
        ("", "v1", "nodes", "Node", false, true, &["no"]),
        (
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            true,
            &["pvc"],
        ),
    ];
    table
        .iter()
        .map(
            |&(group, version, plural, kind, namespaced, status, short)| {
                let name_rule = match (group, plural) {
                    (_, "namespaces") => NameRule::Label,
                    (_, "services") => NameRule::Label1035,
                    ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
                    _ => NameRule::Subdomain,
                };
                ResourceType {
                    group: group.into(),
                    versions: vec![version.into()],
                    plural: plural.into(),
                    singular: kind.to_ascii_lowercase(),
                    kind: kind.into(),
                    list_kind: format!("{kind}List"),
                    namespaced,
                    status,
                    short_names: short.iter().map(|s| (*s).to_string()).collect(),
                    name_rule,
                    selectable_fields: validation::builtin_selectable_fields(group, plural)
                        .iter()
                        .map(|f| (*f).to_string())
                        .collect(),
                }
            },
        )
        .collect()
}

/// The resource a `CustomResourceDefinition` (apiextensions.k8s.io/v1) defines, or why it is invalid
/// as `(field, reason)`.
pub(crate) fn from_crd(crd: &Value) -> Result<ResourceType, (&'static str, String)> {
    let spec = crd
        .get("spec")
        .ok_or(("spec", "Required value".to_string()))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let group = text(spec.get("group"));
    let names = spec.get("names");
    let plural = text(names.and_then(|n| n.get("plural")));
    let kind = text(names.and_then(|n| n.get("kind")));
    if group.is_empty() {
        return Err(("spec.group", "Required value".into()));
    }
    if plural.is_empty() || plural != plural.to_ascii_lowercase() {
        return Err(("spec.names.plural", "Required lowercase value".into()));
    }
    if kind.is_empty() {
        return Err(("spec.names.kind", "Required value".into()));
    }
    let name = text(crd.get("metadata").and_then(|m| m.get("name")));
    if name != format!("{plural}.{group}") {
        return Err((
            "metadata.name",
            format!("must be spec.names.plural+\".\"+spec.group ({plural}.{group})"),
        ));
    }
    let namespaced = match spec.get("scope").and_then(Value::as_str) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => {
            return Err((
                "spec.scope",
                "Unsupported value: supported values: \"Cluster\", \"Namespaced\"".into(),
            ));
        }
    };
    let mut versions = Vec::new();
    let mut selectable_fields = Vec::new();
    let mut status = false;
    let mut storage = None;
    for v in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let vname = text(v.get("name"));
        if vname.is_empty() {
            return Err(("spec.versions.name", "Required value".into()));
        }
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage = Some(vname.clone());
        }
        if v.get("served").and_then(Value::as_bool) != Some(false) {
            // `selectableFields[*].jsonPath` (`.spec.x`), pooled over served versions.
            let paths = v.get("selectableFields").and_then(Value::as_array);
            for path in paths.into_iter().flatten() {
                let json_path = text(path.get("jsonPath"));
                let field = json_path.trim_start_matches('.').to_string();
                if !field.is_empty() && !selectable_fields.contains(&field) {
                    selectable_fields.push(field);
                }
            }
            status |= v
                .get("subresources")
                .and_then(|s| s.get("status"))
                .is_some();
            versions.push(vname);
        }
    }
    if versions.is_empty() {
        return Err((
            "spec.versions",
            "must have at least one served version".into(),
        ));
    }
    // Prefer the storage version when it is served (Kubernetes orders by version priority instead).
    if let Some(s) = storage
        && let Some(pos) = versions.iter().position(|v| *v == s)
    {
        let preferred = versions.remove(pos);
        versions.insert(0, preferred);
    }
    let singular = names
        .and_then(|n| n.get("singular"))
        .and_then(Value::as_str)
        .map_or_else(|| kind.to_ascii_lowercase(), str::to_string);
    let list_kind = names
        .and_then(|n| n.get("listKind"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("{kind}List"), str::to_string);
    let short_names = names
        .and_then(|n| n.get("shortNames"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    Ok(ResourceType {
        group,
        versions,
        plural,
        singular,
        kind,
        list_kind,
        namespaced,
        status,
        short_names,
        name_rule: NameRule::Subdomain,
        selectable_fields,
    })
}

/// The status the API server gives an accepted CRD.
pub(crate) fn crd_status(crd: &Value, now: &str) -> Value {
    let names = crd
        .get("spec")
        .and_then(|s| s.get("names"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let stored: Vec<Value> = crd
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    json!({
        "acceptedNames": names,
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    })
}

/// `/version`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-sluice-e2e",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub(crate) fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Groups (other than core) with their versions, preferred version first.
fn groups<'a>(types: impl Iterator<Item = &'a ResourceType>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in types.filter(|t| !t.group.is_empty()) {
        let entry = match out.iter_mut().position(|(g, _)| *g == t.group) {
            Some(i) => &mut out[i].1,
            None => {
                out.push((t.group.clone(), Vec::new()));
                let last = out.len() - 1;
                &mut out[last].1
            }
        };
        for v in &t.versions {
            if !entry.contains(v) {
                entry.push(v.clone());
            }
        }
    }
    out
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv).unwrap_or(Value::Null),
    })
}

/// `/apis`.
pub(crate) fn group_list<'a>(types: impl Iterator<Item = &'a ResourceType>) -> Value {
    let groups: Vec<Value> = groups(types)
        .iter()
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, if the group is served.
pub(crate) fn group<'a>(
    types: impl Iterator<Item = &'a ResourceType>,
    name: &str,
) -> Option<Value> {
    groups(types)
        .iter()
        .find(|(g, _)| g == name)
        .map(|(g, vs)| {
            let mut doc = group_doc(g, vs);
            if let Value::Object(m) = &mut doc {
                m.insert("kind".into(), json!("APIGroup"));
                m.insert("apiVersion".into(), json!("v1"));
            }
            doc
        })
}

/// `/api/v1` or `/apis/<group>/<version>`, if that group version is served.
pub(crate) fn resource_list<'a>(
    types: impl Iterator<Item = &'a ResourceType>,
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types.filter(|t| t.group == group && t.serves(version)) {
        resources.push(json!({
            "name": t.plural,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": VERBS,
            "shortNames": t.short_names,
        }));
        if t.status {
            resources.push(json!({
                "name": format!("{}/status", t.plural),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) for `/api` (core) or
/// `/apis` (every other group).
pub(crate) fn aggregated<'a>(
    types: impl Iterator<Item = &'a ResourceType> + Clone,
    core: bool,
) -> Value {
    let group_names: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".to_string()])]
    } else {
        groups(types.clone())
    };
    let items: Vec<Value> = group_names
        .iter()
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = types
                        .clone()
                        .filter(|t| t.group == *g && t.serves(v))
                        .map(|t| {
                            let kind = json!({"group": g, "version": v, "kind": t.kind});
                            let mut r = Map::new();
                            r.insert("resource".into(), json!(t.plural));
                            r.insert("responseKind".into(), kind.clone());
                            r.insert(
                                "scope".into(),
                                json!(if t.namespaced { "Namespaced" } else { "Cluster" }),
                            );
                            r.insert("singularResource".into(), json!(t.singular));
                            r.insert("verbs".into(), json!(VERBS));
                            r.insert("shortNames".into(), json!(t.short_names));
                            if t.status {
                                r.insert(
                                    "subresources".into(),
                                    json!([{"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}]),
                                );
                            }
                            Value::Object(r)
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
