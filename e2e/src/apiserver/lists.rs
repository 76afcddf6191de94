//! How server-side apply treats each list: atomic, a set, or a map keyed by some of its items'
//! fields.
//!
//! Kubernetes reads this off the `+listType`/`+listMapKey` markers of `k8s.io/api` (the
//! `patchMergeKey` of strategic merge patch mostly agrees) for built-in kinds, and off
//! `x-kubernetes-list-type`/`x-kubernetes-list-map-keys` in the CRD schema for custom objects
//! (unmarked lists are atomic). A key field missing from an item takes its schema default
//! (`protocol: TCP` for ports), as structured-merge-diff does since Kubernetes 1.21.
//!
//! Built-in lists merged here (everything else is atomic, e.g. tolerations, command, args,
//! envFrom, Endpoints subsets, RBAC rules):
//! - every object: `metadata.ownerReferences` by `uid`, `metadata.finalizers` as a set;
//! - pod specs (Pods, and the `template.spec` of workloads): `containers`, `initContainers`,
//!   `ephemeralContainers`, `volumes`, `imagePullSecrets`, `resourceClaims`, `schedulingGates`
//!   by `name`, `hostAliases` by `ip`, `topologySpreadConstraints` by `topologyKey` and
//!   `whenUnsatisfiable`;
//! - containers: `ports` by `containerPort` and `protocol`, `env` by `name`, `volumeMounts` by
//!   `mountPath`, `volumeDevices` by `devicePath`;
//! - Services: `spec.ports` by `port` and `protocol`; ServiceAccounts: `secrets` by `name`;
//! - every `status.conditions` of a built-in kind by `type`.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// One step of a field path: a map field, a list item by its key fields, or a set member.
#[derive(Clone, Debug)]
pub(crate) enum Seg {
    Field(String),
    /// An item of a map-list: its key in the `FieldsV1` form (`{"name":"envoy"}`), and each
    /// key field with its value and schema default.
    Key(String, Vec<KeyField>),
    Value(Value),
}

/// A key field of a map-list item: name, value, default.
pub(crate) type KeyField = (String, Value, Option<Value>);

pub(crate) type Path = Vec<Seg>;

impl PartialEq for Seg {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Seg::Field(a), Seg::Field(b)) => a == b,
            (Seg::Key(a, _), Seg::Key(b, _)) => a == b,
            (Seg::Value(a), Seg::Value(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Seg {}

impl Seg {
    pub fn field(&self) -> Option<&str> {
        match self {
            Seg::Field(f) => Some(f),
            _ => None,
        }
    }

    /// The `FieldsV1` key: `f:name`, `k:{"name":"envoy"}`, `v:"x"`.
    pub fn fields_v1(&self) -> String {
        match self {
            Seg::Field(f) => format!("f:{f}"),
            Seg::Key(k, _) => format!("k:{k}"),
            Seg::Value(v) => format!("v:{v}"),
        }
    }

    /// Whether a list item is the one this step names.
    pub fn selects(&self, item: &Value) -> bool {
        match self {
            Seg::Field(_) => false,
            Seg::Key(_, fields) => fields
                .iter()
                .all(|(name, value, default)| item.get(name).or(default.as_ref()) == Some(value)),
            Seg::Value(v) => item == v,
        }
    }
}

impl fmt::Display for Seg {
    /// As kube-apiserver prints paths in conflicts: `.spec`, `[name="envoy"]`, `[="x"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Field(name) => write!(f, ".{name}"),
            Seg::Key(_, fields) => {
                let parts: Vec<String> =
                    fields.iter().map(|(n, v, _)| format!("{n}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            Seg::Value(v) => write!(f, "[={v}]"),
        }
    }
}

/// A path as kube-apiserver prints it.
pub(crate) fn display(path: &[Seg]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// How a list merges.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ListType {
    Atomic,
    Set,
    /// Key fields, each with its schema default.
    Map(Vec<(String, Option<Value>)>),
}

impl ListType {
    fn keys(names: &[&str]) -> Self {
        ListType::Map(
            names
                .iter()
                .map(|n| {
                    let default = (*n == "protocol").then(|| Value::String("TCP".into()));
                    ((*n).to_string(), default)
                })
                .collect(),
        )
    }

    /// The step naming `item` in a list of this type; `None` for atomic lists and for items
    /// that lack a key field without default (the list is then treated as atomic).
    pub fn seg(&self, item: &Value) -> Option<Seg> {
        match self {
            ListType::Atomic => None,
            ListType::Set => Some(Seg::Value(item.clone())),
            ListType::Map(keys) => {
                let mut fields: Vec<KeyField> = Vec::new();
                for (name, default) in keys {
                    let value = item.get(name).or(default.as_ref())?.clone();
                    fields.push((name.clone(), value, default.clone()));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                let text: Vec<String> = fields
                    .iter()
                    .map(|(n, v, _)| format!("{}:{v}", Value::String(n.clone())))
                    .collect();
                Some(Seg::Key(format!("{{{}}}", text.join(",")), fields))
            }
        }
    }

    /// The steps of every item, unless the list must be treated as atomic (an item without its
    /// key, or two items with one key).
    pub fn segs(&self, items: &[Value]) -> Option<Vec<Seg>> {
        let mut out: Vec<Seg> = Vec::with_capacity(items.len());
        for item in items {
            let seg = self.seg(item)?;
            if out.contains(&seg) {
                return None;
            }
            out.push(seg);
        }
        Some(out)
    }
}

/// Where list types come from for one object.
#[derive(Clone, Debug)]
pub(crate) enum Lists {
    Builtin {
        plural: String,
    },
    /// The `openAPIV3Schema` of the object's CRD version (`Null` when it has none).
    Custom(Arc<Value>),
}

impl Lists {
    /// The type of the list at `fields` (map field names from the top, list items skipped).
    pub fn of(&self, fields: &[&str]) -> ListType {
        if let ["metadata", last] = fields {
            return match *last {
                "ownerReferences" => ListType::keys(&["uid"]),
                "finalizers" => ListType::Set,
                _ => ListType::Atomic,
            };
        }
        match self {
            Lists::Builtin { plural } => builtin(plural, fields),
            Lists::Custom(schema) => custom(schema, fields),
        }
    }
}

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

fn builtin(plural: &str, fields: &[&str]) -> ListType {
    let n = fields.len();
    let Some(&last) = fields.last() else {
        return ListType::Atomic;
    };
    let parent = n.checked_sub(2).map(|i| fields[i]);
    let pod_spec = parent == Some("spec")
        && ((plural == "pods" && n == 2) || (n >= 3 && fields[n - 3] == "template"));
    if pod_spec {
        return match last {
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims"
            | "schedulingGates" => ListType::keys(&["name"]),
            "hostAliases" => ListType::keys(&["ip"]),
            "topologySpreadConstraints" => ListType::keys(&["topologyKey", "whenUnsatisfiable"]),
            _ => ListType::Atomic,
        };
    }
    if parent.is_some_and(|p| CONTAINER_LISTS.contains(&p)) {
        return match last {
            "ports" => ListType::keys(&["containerPort", "protocol"]),
            "env" => ListType::keys(&["name"]),
            "volumeMounts" => ListType::keys(&["mountPath"]),
            "volumeDevices" => ListType::keys(&["devicePath"]),
            _ => ListType::Atomic,
        };
    }
    match (plural, fields) {
        ("services", ["spec", "ports"]) => ListType::keys(&["port", "protocol"]),
        ("serviceaccounts", ["secrets"]) => ListType::keys(&["name"]),
        (_, ["status", "conditions"]) => ListType::keys(&["type"]),
        _ => ListType::Atomic,
    }
}

fn custom(schema: &Value, fields: &[&str]) -> ListType {
    let mut node = schema;
    for field in fields {
        if node.get("type").and_then(Value::as_str) == Some("array") {
            let Some(items) = node.get("items") else {
                return ListType::Atomic;
            };
            node = items;
        }
        let next = node
            .get("properties")
            .and_then(|p| p.get(*field))
            .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
        let Some(next) = next else {
            return ListType::Atomic;
        };
        node = next;
    }
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => {
            let item_props = node.get("items").and_then(|i| i.get("properties"));
            let keys = node
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(|k| {
                            let default = item_props
                                .and_then(|p| p.get(k))
                                .and_then(|s| s.get("default"))
                                .cloned();
                            (k.to_string(), default)
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if keys.is_empty() {
                ListType::Atomic
            } else {
                ListType::Map(keys)
            }
        }
        _ => ListType::Atomic,
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_lists_by_place() {
        let b = |plural: &str| Lists::Builtin {
            plural: plural.into(),
        };
        let ds = b("daemonsets");
        assert_eq!(
            ds.of(&["spec", "template", "spec", "containers"]),
            ListType::keys(&["name"])
        );
        assert_eq!(
            ds.of(&["spec", "template", "spec", "containers", "ports"]),
            ListType::keys(&["containerPort", "protocol"])
        );
        assert_eq!(
            ds.of(&["spec", "template", "spec", "tolerations"]),
            ListType::Atomic
        );
        assert_eq!(
            ds.of(&["spec", "template", "spec", "containers", "args"]),
            ListType::Atomic
        );
        assert_eq!(
            b("pods").of(&["spec", "volumes"]),
            ListType::keys(&["name"])
        );
        assert_eq!(
            b("services").of(&["spec", "ports"]),
            ListType::keys(&["port", "protocol"])
        );
        assert_eq!(b("endpoints").of(&["subsets"]), ListType::Atomic);
        assert_eq!(b("pods").of(&["metadata", "finalizers"]), ListType::Set);
    }

    #[test]
    fn keys_take_defaults_and_sort() {
        let ports = ListType::keys(&["containerPort", "protocol"]);
        let Some(seg) = ports.seg(&json!({"containerPort": 80})) else {
            panic!("a port without protocol has a key");
        };
        assert_eq!(
            seg.fields_v1(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert_eq!(seg.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert!(seg.selects(&json!({"containerPort": 80, "protocol": "TCP"})));
        assert!(!seg.selects(&json!({"containerPort": 80, "protocol": "UDP"})));
        let names = ListType::keys(&["name"]);
        assert_eq!(names.seg(&json!({"image": "x"})), None);
        assert_eq!(
            names.segs(&[json!({"name": "a"}), json!({"name": "a"})]),
            None
        );
    }

    #[test]
    fn custom_lists_from_the_schema() {
        let schema = json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
            "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"], "items": {"type": "object"}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "plain": {"type": "array", "items": {"type": "object"}}}}}});
        let l = Lists::Custom(Arc::new(schema));
        assert_eq!(l.of(&["status", "conditions"]), ListType::keys(&["type"]));
        assert_eq!(l.of(&["status", "tags"]), ListType::Set);
        assert_eq!(l.of(&["status", "plain"]), ListType::Atomic);
        assert_eq!(
            l.of(&["metadata", "ownerReferences"]),
            ListType::keys(&["uid"])
        );
    }
}
