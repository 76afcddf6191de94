//! The owner names of DAG entries (virtual hosts, routes, TCP proxies), and which object each
//! names. A Contour IngressRoute owns as `namespace/name`, a Traefik IngressRoute as
//! `traefik:namespace/name` and a Traefik IngressRouteTCP as `traefik-tcp:namespace/name`, so
//! that objects of different kinds with the same namespace and name are never taken for one
//! another when a rejection is blamed, an Event recorded or a status reported.

use super::model::ObjectStatus;

/// Prefix of the owner name of a Traefik IngressRoute.
pub const TRAEFIK_PREFIX: &str = "traefik:";
/// Prefix of the owner name of a Traefik IngressRouteTCP.
pub const TRAEFIK_TCP_PREFIX: &str = "traefik-tcp:";

/// The kind reported for a Traefik IngressRoute (its statuses, Events and metrics).
pub const TRAEFIK_KIND: &str = super::traefik::KIND;
/// The kind reported for a Traefik IngressRouteTCP.
pub const TRAEFIK_TCP_KIND: &str = super::traefik::tcp::KIND;

/// The object an owner name names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// A Contour IngressRoute (its status is in `Dag::statuses`).
    Contour { namespace: &'a str, name: &'a str },
    /// A Traefik object of `kind` (its status is in `Dag::object_statuses`).
    Traefik {
        kind: &'static str,
        namespace: &'a str,
        name: &'a str,
    },
}

impl<'a> Owner<'a> {
    /// Reads an owner name; `None` if it is not one.
    pub fn parse(owner: &'a str) -> Option<Owner<'a>> {
        let traefik = [
            (TRAEFIK_TCP_PREFIX, TRAEFIK_TCP_KIND),
            (TRAEFIK_PREFIX, TRAEFIK_KIND),
        ];
        for (prefix, kind) in traefik {
            if let Some(rest) = owner.strip_prefix(prefix) {
                let (namespace, name) = rest.split_once('/')?;
                return Some(Owner::Traefik {
                    kind,
                    namespace,
                    name,
                });
            }
        }
        // Namespaces and names never hold ':' (DNS labels and subdomains).
        if owner.contains(':') {
            return None;
        }
        let (namespace, name) = owner.split_once('/')?;
        Some(Owner::Contour { namespace, name })
    }

    /// The object's namespace.
    pub fn namespace(&self) -> &'a str {
        match self {
            Owner::Contour { namespace, .. } | Owner::Traefik { namespace, .. } => namespace,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &'a str {
        match self {
            Owner::Contour { name, .. } | Owner::Traefik { name, .. } => name,
        }
    }

    /// The object's kind and `namespace/name`, as messages name it (`IngressRouteTCP team/db`).
    pub fn describe(&self) -> String {
        match self {
            Owner::Contour { namespace, name } => format!("IngressRoute {namespace}/{name}"),
            Owner::Traefik {
                kind,
                namespace,
                name,
            } => format!("{kind} {namespace}/{name}"),
        }
    }

    /// Whether `status` is the status of this (Traefik) object: same kind, namespace and name.
    pub fn is_status_of(&self, status: &ObjectStatus) -> bool {
        match self {
            Owner::Contour { .. } => false,
            Owner::Traefik {
                kind,
                namespace,
                name,
            } => status.kind == *kind && status.namespace == *namespace && status.name == *name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ObjKey;

    #[test]
    fn owner_names_read_back_as_the_object_of_their_kind() {
        let key = ObjKey::new("apps", "r");
        let http = super::super::traefik::owner_name(&key);
        let tcp = super::super::traefik::tcp::owner_name(&key);
        assert_ne!(http, tcp);
        assert_eq!(
            Owner::parse(&http),
            Some(Owner::Traefik {
                kind: "IngressRoute",
                namespace: "apps",
                name: "r"
            })
        );
        assert_eq!(
            Owner::parse(&tcp),
            Some(Owner::Traefik {
                kind: "IngressRouteTCP",
                namespace: "apps",
                name: "r"
            })
        );
        assert_eq!(
            Owner::parse("apps/r"),
            Some(Owner::Contour {
                namespace: "apps",
                name: "r"
            })
        );
        for bad in ["", "apps", "traefik:apps", "other:apps/r", "traefik-tcp:"] {
            assert_eq!(Owner::parse(bad), None, "{bad}");
        }
        let status = |kind: &str| ObjectStatus {
            kind: kind.into(),
            api_version: "traefik.io/v1alpha1".into(),
            namespace: "apps".into(),
            name: "r".into(),
            current_status: crate::dag::Validity::Valid,
            description: String::new(),
        };
        let tcp = Owner::parse(&tcp).unwrap_or(Owner::Contour {
            namespace: "",
            name: "",
        });
        assert!(tcp.is_status_of(&status("IngressRouteTCP")));
        assert!(!tcp.is_status_of(&status("IngressRoute")));
    }
}
