//! Authorization of impersonated requests against the RBAC objects stored in the server.
//!
//! A request carrying `Impersonate-User` (as kube-rs sends for a kubeconfig user with `as:`) is
//! authorized as kube-apiserver's RBAC authorizer does (`plugin/pkg/auth/authorizer/rbac`): it
//! is allowed when a rule of a ClusterRole bound by a ClusterRoleBinding, or of a Role or
//! ClusterRole bound by a RoleBinding in the request's namespace, names its API group, resource
//! (`ingressroutes/status` for a subresource) and verb (`*` matching any), and, when the rule
//! has `resourceNames`, the object's name (never for list, watch, create and deletecollection).
//! Subjects match by user name, by ServiceAccount (`system:serviceaccount:<ns>:<name>`) or by
//! group (`Impersonate-Group`, and for service accounts `system:serviceaccounts`,
//! `system:serviceaccounts:<ns>`; everyone is `system:authenticated`). Otherwise 403
//! `Forbidden`. Requests without impersonation are not authorized (they act as an admin).

use serde_json::Value;

use super::error::ApiError;
use super::store::Store;

/// Who a request acts as, and what it does.
pub(crate) struct Attributes<'a> {
    pub user: &'a str,
    pub groups: &'a [String],
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    /// Empty for cluster-scoped requests.
    pub namespace: &'a str,
    /// Empty for requests on collections.
    pub name: &'a str,
}

fn rbac(plural: &str) -> (String, String) {
    ("rbac.authorization.k8s.io".to_string(), plural.to_string())
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

impl Attributes<'_> {
    fn groups(&self) -> Vec<String> {
        let mut groups = self.groups.to_vec();
        groups.push("system:authenticated".into());
        if let Some(sa) = self.user.strip_prefix("system:serviceaccount:")
            && let Some((ns, _)) = sa.split_once(':')
        {
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
        groups
    }

    fn bound(&self, binding: &Value) -> bool {
        let groups = self.groups();
        binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| {
                let name = text(s, "/name");
                match text(s, "/kind") {
                    "User" => name == self.user,
                    "Group" => groups.iter().any(|g| g == name),
                    "ServiceAccount" => {
                        let ns = text(s, "/namespace");
                        self.user == format!("system:serviceaccount:{ns}:{name}")
                    }
                    _ => false,
                }
            })
    }

    fn rule_allows(&self, rule: &Value) -> bool {
        let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        };
        let resources = strings(rule, "resources");
        let resource_ok = resources.iter().any(|r| {
            *r == "*"
                || *r == resource
                || self.subresource.is_some_and(|sub| *r == format!("*/{sub}"))
        });
        let names = strings(rule, "resourceNames");
        let named = names.is_empty()
            || (!self.name.is_empty()
                && !matches!(self.verb, "list" | "watch" | "create" | "deletecollection")
                && names.iter().any(|n| n == self.name));
        any(&strings(rule, "apiGroups"), self.group)
            && resource_ok
            && any(&strings(rule, "verbs"), self.verb)
            && named
    }

    fn role_allows(&self, store: &Store, role_ref: &Value, namespace: &str) -> bool {
        let name = text(role_ref, "/name");
        let role = match text(role_ref, "/kind") {
            "ClusterRole" => store
                .all(&rbac("clusterroles"))
                .into_iter()
                .find(|r| text(r, "/metadata/name") == name),
            "Role" => store.all(&rbac("roles")).into_iter().find(|r| {
                text(r, "/metadata/name") == name && text(r, "/metadata/namespace") == namespace
            }),
            _ => None,
        };
        role.and_then(|r| r.get("rules").cloned())
            .and_then(|rules| rules.as_array().cloned())
            .is_some_and(|rules| rules.iter().any(|rule| self.rule_allows(rule)))
    }

    /// Whether the stored RBAC objects allow the request.
    pub fn allowed(&self, store: &Store) -> bool {
        let cluster = store
            .all(&rbac("clusterrolebindings"))
            .into_iter()
            .filter(|b| self.bound(b))
            .any(|b| {
                b.get("roleRef")
                    .is_some_and(|r| self.role_allows(store, r, ""))
            });
        cluster
            || (!self.namespace.is_empty()
                && store
                    .all(&rbac("rolebindings"))
                    .into_iter()
                    .filter(|b| text(b, "/metadata/namespace") == self.namespace)
                    .filter(|b| self.bound(b))
                    .any(|b| {
                        b.get("roleRef")
                            .is_some_and(|r| self.role_allows(store, r, self.namespace))
                    }))
    }

    /// The 403 kube-apiserver answers.
    pub fn forbidden(&self) -> ApiError {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        };
        let qualified = if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let object = if self.name.is_empty() {
            qualified.clone()
        } else {
            format!("{qualified} {:?}", self.name)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        ApiError::forbidden(
            self.group,
            self.resource,
            self.name,
            format!(
                "{object} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                self.user, self.verb, self.group
            ),
        )
    }
}
