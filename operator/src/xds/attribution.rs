//! Which IngressRoutes a translated resource comes from, so that a configuration Envoy rejects
//! can be blamed on the objects whose change caused it.
//!
//! Clusters are owned by the IngressRoutes whose routes or tcpproxies use them; endpoints by
//! the owners of their clusters; TLS secrets by the root IngressRoutes of the virtual hosts
//! serving them, CA secrets by the owners of the clusters validating with them; the route
//! configuration of one TLS virtual host by its root IngressRoute. The shared listeners and the
//! plain HTTP route configuration belong to no single IngressRoute, but a rejected HTTPS
//! listener is blamed on the owner of the filter chains that changed (an IngressRouteTCP's
//! passthrough or termination, a TLS virtual host's root; [`super::listener_blame`]).

use std::collections::BTreeSet;

use super::resource::type_url;
use super::translate::https_route_config_name;
use crate::dag::Dag;
use crate::dag::model::Upstream;
use crate::dag::owner::Owner;

/// The IngressRoutes (`namespace/name`) a resource of `type_url` named `name` comes from; empty
/// when it is shared or unknown.
pub fn owners(dag: &Dag, type_url: &str, name: &str) -> BTreeSet<String> {
    match type_url {
        type_url::CLUSTER => cluster_owners(dag, name),
        type_url::ENDPOINT => dag
            .clusters
            .iter()
            .filter(
                |c| matches!(&c.upstream, Upstream::Eds { service_name } if service_name == name),
            )
            .flat_map(|c| cluster_owners(dag, &c.name))
            .collect(),
        type_url::SECRET => {
            let mut owners: BTreeSet<String> = dag
                .virtual_hosts
                .iter()
                .filter(|vh| {
                    vh.tls.as_ref().is_some_and(|t| {
                        let client_ca = t
                            .options
                            .as_ref()
                            .and_then(|o| o.client_validation.as_ref());
                        t.secret.as_deref() == Some(name)
                            || client_ca.is_some_and(|c| c.ca_secret == name)
                    })
                })
                .map(|vh| vh.owner.clone())
                .collect();
            owners.extend(
                dag.clusters
                    .iter()
                    .filter(|c| c.validation.as_ref().is_some_and(|v| v.ca_secret == name))
                    .flat_map(|c| cluster_owners(dag, &c.name)),
            );
            owners
        }
        type_url::ROUTE => dag
            .virtual_hosts
            .iter()
            .filter(|vh| https_route_config_name(&vh.fqdn) == name)
            .map(|vh| vh.owner.clone())
            .collect(),
        _ => BTreeSet::new(),
    }
}

fn cluster_owners(dag: &Dag, cluster: &str) -> BTreeSet<String> {
    let mut owners = BTreeSet::new();
    for vh in &dag.virtual_hosts {
        for route in &vh.routes {
            if route.cluster_names().any(|c| c == cluster) {
                owners.insert(route.owner.clone());
            }
        }
        if let Some(tcp) = &vh.tcp_proxy
            && tcp.cluster_names().any(|c| c == cluster)
        {
            owners.insert(tcp.owner.clone());
        }
    }
    owners
}

/// The one IngressRoute all of `resources` (of `type_url`) come from, if there is exactly one
/// and every resource has an owner.
pub fn single_owner<'a>(
    dag: &Dag,
    type_url: &str,
    resources: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut all = BTreeSet::new();
    for name in resources {
        let owners = owners(dag, type_url, name);
        if owners.is_empty() {
            return None;
        }
        all.extend(owners);
    }
    match all.len() {
        1 => all.pop_first(),
        _ => None,
    }
}

/// The one object a rejection is blamed on, if there is exactly one: for a listener, the owner
/// of the filter chains that changed ([`super::listener_blame`]); otherwise the owner of every
/// changed resource ([`single_owner`]).
pub fn rejection_owner(dag: &Dag, rejection: &super::cache::Rejection) -> Option<String> {
    let mut owners = rejection_owners(dag, rejection);
    match owners.len() {
        1 => owners.pop_first(),
        _ => None,
    }
}

/// Every object a rejection may be blamed on: for a listener, the owners of the filter chains
/// that changed ([`super::listener_blame`]); otherwise the owners of the changed resources.
/// Empty when some changed resource has no owner (shared, or unknown): then the cause may be
/// anyone's.
pub fn rejection_owners(dag: &Dag, rejection: &super::cache::Rejection) -> BTreeSet<String> {
    if rejection.type_url == type_url::LISTENER {
        return super::listener_blame::owners(dag, &rejection.changed_filter_chains);
    }
    let mut all = BTreeSet::new();
    for name in rejection.changed_resources.keys() {
        let owners = owners(dag, &rejection.type_url, name);
        if owners.is_empty() {
            return BTreeSet::new();
        }
        all.extend(owners);
    }
    all
}

/// The `apiVersion` of the Traefik object that owner name `owner` names, from its status in
/// `dag` (the name does not say the API group); `None` for a Contour owner or an unknown one.
pub fn traefik_api_version(dag: &Dag, owner: &str) -> Option<String> {
    let owner = Owner::parse(owner).filter(|o| matches!(o, Owner::Traefik { .. }))?;
    dag.object_statuses
        .iter()
        .find(|s| owner.is_status_of(s))
        .map(|s| s.api_version.clone())
}

/// `dag`'s statuses, with every IngressRoute that alone is to blame for a rejection still in
/// force marked `invalid`, saying that Envoy rejected its configuration and why. The DAG's
/// resources are left as they are: what Envoys receive instead is the cache's business. The DAG
/// is only copied when a status changes (rejections are rare; this runs on every rebuild).
pub fn blame_statuses<'a>(
    dag: &'a Dag,
    rejections: &[super::cache::Rejection],
) -> std::borrow::Cow<'a, Dag> {
    let mut out = std::borrow::Cow::Borrowed(dag);
    for r in rejections {
        let Some(owner) = rejection_owner(dag, r) else {
            continue;
        };
        // Traefik objects own their resources as `traefik:namespace/name` (IngressRoute) or
        // `traefik-tcp:namespace/name` (IngressRouteTCP): the status blamed is of that kind.
        let Some(owner) = Owner::parse(&owner) else {
            continue;
        };
        let traefik = matches!(owner, Owner::Traefik { .. });
        let found = match owner {
            Owner::Traefik { .. } => dag
                .object_statuses
                .iter()
                .position(|s| owner.is_status_of(s)),
            Owner::Contour { namespace, name } => dag
                .statuses
                .iter()
                .position(|s| s.namespace == namespace && s.name == name),
        };
        let Some(i) = found else {
            continue;
        };
        let error = crate::dag::quarantine::quoted_error(&r.error);
        let description = format!(
            "Envoy rejected the configuration made from this IngressRoute (the last accepted \
             one is served instead): {error}"
        );
        let out = out.to_mut();
        let (current, text) = if traefik {
            let s = out.object_statuses.make_mut(i);
            (&mut s.current_status, &mut s.description)
        } else {
            let s = out.statuses.make_mut(i);
            (&mut s.current_status, &mut s.description)
        };
        *current = crate::dag::Validity::Invalid;
        *text = description;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::api::ingressroute::TlsVersion;
    use crate::xds::translate::fixture::{
        cluster_name, eds_cluster, eds_name, route, vhost, with_tls,
    };

    #[test]
    fn resources_are_attributed_to_the_ingressroutes_using_them() {
        let mut child = route("/b", &[("b", 80, 1)]);
        child.owner = "default/child".into();
        let root = with_tls(
            vhost("a.example.com", vec![route("/", &[("a", 80, 1)]), child]),
            "default/tls",
            TlsVersion::V1_2,
        );
        let dag = Dag {
            virtual_hosts: vec![root].into(),
            clusters: vec![eds_cluster("a", 80), eds_cluster("b", 80)].into(),
            ..Dag::default()
        };
        let a = cluster_name("a", 80);
        let b = cluster_name("b", 80);
        let root = Some("default/root".to_owned());
        assert_eq!(single_owner(&dag, type_url::CLUSTER, [a.as_str()]), root);
        assert_eq!(
            single_owner(&dag, type_url::CLUSTER, [b.as_str()]),
            Some("default/child".to_owned())
        );
        assert_eq!(
            single_owner(&dag, type_url::ENDPOINT, [eds_name("a").as_str()]),
            // Both fixture clusters read the same EDS name pattern per service.
            root
        );
        assert_eq!(single_owner(&dag, type_url::SECRET, ["default/tls"]), root);
        assert_eq!(
            single_owner(&dag, type_url::ROUTE, ["https/a.example.com"]),
            root
        );
        // Two owners, or a shared or unknown resource: no single one.
        assert_eq!(
            single_owner(&dag, type_url::CLUSTER, [a.as_str(), b.as_str()]),
            None
        );
        assert_eq!(
            single_owner(&dag, type_url::LISTENER, ["ingress_https"]),
            None
        );
        assert_eq!(single_owner(&dag, type_url::ROUTE, ["ingress_http"]), None);
        assert_eq!(single_owner(&dag, type_url::CLUSTER, ["unknown"]), None);
    }

    #[test]
    fn a_rejection_one_ingressroute_caused_makes_it_invalid() {
        use crate::dag::{RouteStatus, Validity};
        use crate::xds::cache::Rejection;
        let mut child = route("/b", &[("b", 80, 1)]);
        child.owner = "default/child".into();
        let status = |name: &str| RouteStatus {
            namespace: "default".into(),
            name: name.into(),
            current_status: Validity::Valid,
            description: "valid IngressRoute".into(),
        };
        let dag = Dag {
            virtual_hosts: vec![vhost(
                "a.example.com",
                vec![route("/", &[("a", 80, 1)]), child],
            )]
            .into(),
            clusters: vec![eds_cluster("a", 80), eds_cluster("b", 80)].into(),
            statuses: vec![status("child"), status("root")].into(),
            ..Dag::default()
        };
        let b = cluster_name("b", 80);
        let a = cluster_name("a", 80);
        let long = "x".repeat(400);
        let blamed = blame_statuses(
            &dag,
            &[Rejection::for_test(type_url::CLUSTER, &[b.as_str()], &long)],
        );
        assert_eq!(blamed.statuses[0].current_status, Validity::Invalid);
        assert!(blamed.statuses[0].description.starts_with("Envoy rejected"));
        assert!(blamed.statuses[0].description.ends_with('…'));
        assert!(blamed.statuses[0].description.len() < 450);
        assert_eq!(blamed.statuses[1], dag.statuses[1]);
        // Two IngressRoutes' resources changed together: no one alone is blamed.
        let shared = blame_statuses(
            &dag,
            &[Rejection::for_test(
                type_url::CLUSTER,
                &[a.as_str(), b.as_str()],
                "bad",
            )],
        );
        assert_eq!(shared.statuses, dag.statuses);
        assert!(matches!(
            blame_statuses(&dag, &[]),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_rejection_one_traefik_ingressroute_caused_makes_it_invalid() {
        use crate::dag::Validity;
        use crate::dag::model::ObjectStatus;
        use crate::xds::cache::Rejection;
        let mut r = route("/", &[("a", 80, 1)]);
        // As `dag::traefik::owner_name` names it.
        r.owner = "traefik:default/t".into();
        let status = ObjectStatus {
            kind: "IngressRoute".into(),
            api_version: "traefik.io/v1alpha1".into(),
            namespace: "default".into(),
            name: "t".into(),
            current_status: Validity::Valid,
            description: "valid".into(),
        };
        let dag = Dag {
            virtual_hosts: vec![vhost("a.example.com", vec![r])].into(),
            clusters: vec![eds_cluster("a", 80)].into(),
            object_statuses: vec![status].into(),
            ..Dag::default()
        };
        let a = cluster_name("a", 80);
        let blamed = blame_statuses(
            &dag,
            &[Rejection::for_test(type_url::CLUSTER, &[a.as_str()], "bad")],
        );
        assert_eq!(blamed.object_statuses[0].current_status, Validity::Invalid);
        assert!(
            blamed.object_statuses[0]
                .description
                .starts_with("Envoy rejected"),
            "{}",
            blamed.object_statuses[0].description
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod kind_tests {
    use super::*;
    use crate::dag::Validity;
    use crate::dag::model::ObjectStatus;
    use crate::xds::cache::Rejection;
    use crate::xds::translate::fixture::{
        cluster_name, eds_cluster, route, vhost, with_passthrough, with_tcp_proxy,
    };

    /// An IngressRoute and an IngressRouteTCP with the same namespace and name: a rejection of
    /// the TCP route's cluster is blamed on the IngressRouteTCP alone, one of the HTTP route's
    /// cluster on the IngressRoute alone.
    #[test]
    fn a_rejection_is_blamed_on_the_traefik_object_of_the_owning_kind() {
        let mut r = route("/", &[("web", 80, 1)]);
        r.owner = crate::dag::owner::TRAEFIK_PREFIX.to_owned() + "apps/same";
        let mut http = vhost("a.example.com", vec![r]);
        http.owner = "traefik:apps/same".into();
        let mut tcp = with_tcp_proxy(
            with_passthrough(vhost("b.example.com", vec![])),
            &[("db", 5432, 1)],
        );
        tcp.owner = "traefik-tcp:apps/same".into();
        if let Some(p) = tcp.tcp_proxy.as_mut() {
            p.owner = "traefik-tcp:apps/same".into();
        }
        let status = |kind: &str| ObjectStatus {
            kind: kind.into(),
            api_version: "traefik.io/v1alpha1".into(),
            namespace: "apps".into(),
            name: "same".into(),
            current_status: Validity::Valid,
            description: "valid".into(),
        };
        let dag = Dag {
            virtual_hosts: vec![http, tcp].into(),
            clusters: vec![eds_cluster("web", 80), eds_cluster("db", 5432)].into(),
            object_statuses: vec![status("IngressRoute"), status("IngressRouteTCP")].into(),
            ..Dag::default()
        };
        let verdicts = |cluster: &str| {
            let blamed = blame_statuses(
                &dag,
                &[Rejection::for_test(type_url::CLUSTER, &[cluster], "bad")],
            );
            blamed
                .object_statuses
                .iter()
                .map(|s| (s.kind.clone(), s.current_status))
                .collect::<Vec<_>>()
        };
        let both = |http, tcp| {
            vec![
                ("IngressRoute".to_owned(), http),
                ("IngressRouteTCP".to_owned(), tcp),
            ]
        };
        assert_eq!(
            verdicts(&cluster_name("db", 5432)),
            both(Validity::Valid, Validity::Invalid)
        );
        assert_eq!(
            verdicts(&cluster_name("web", 80)),
            both(Validity::Invalid, Validity::Valid)
        );
        // The TCP route listed first: still its own status that is blamed.
        let mut reversed = dag.clone();
        reversed.object_statuses.reverse();
        let blamed = blame_statuses(
            &reversed,
            &[Rejection::for_test(
                type_url::CLUSTER,
                &[cluster_name("web", 80).as_str()],
                "bad",
            )],
        );
        assert_eq!(blamed.object_statuses[0].current_status, Validity::Valid);
        assert_eq!(blamed.object_statuses[1].current_status, Validity::Invalid);
        // The API version a rejection's related object is named with: the owner's kind's.
        let mut legacy_tcp = dag.clone();
        legacy_tcp.object_statuses.make_mut(1).api_version = "traefik.containo.us/v1alpha1".into();
        let version = |owner: &str| traefik_api_version(&legacy_tcp, owner);
        assert_eq!(
            version("traefik-tcp:apps/same").as_deref(),
            Some("traefik.containo.us/v1alpha1")
        );
        assert_eq!(
            version("traefik:apps/same").as_deref(),
            Some("traefik.io/v1alpha1")
        );
        assert_eq!(version("apps/same"), None);
        assert_eq!(version("traefik:apps/other"), None);

        // A rejected HTTPS listener whose changed filter chain is the TCP route's SNI name: the
        // IngressRouteTCP alone is blamed; with no changed chain known, nobody.
        let listener = |chains: &[&str]| {
            let mut r = Rejection::for_test(
                type_url::LISTENER,
                &[crate::xds::translate::HTTPS_LISTENER],
                "bad listener",
            );
            r.changed_filter_chains = std::collections::BTreeMap::from([(
                crate::xds::translate::HTTPS_LISTENER.to_owned(),
                chains.iter().map(|c| (*c).to_owned()).collect(),
            )]);
            r
        };
        let verdicts = |r: Rejection| {
            let blamed = blame_statuses(&dag, &[r]);
            (blamed.object_statuses.iter())
                .map(|s| (s.kind.clone(), s.current_status))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            verdicts(listener(&["b.example.com"])),
            both(Validity::Valid, Validity::Invalid)
        );
        assert_eq!(
            rejection_owner(&dag, &listener(&["b.example.com"])).as_deref(),
            Some("traefik-tcp:apps/same")
        );
        assert_eq!(
            verdicts(listener(&[])),
            both(Validity::Valid, Validity::Valid)
        );
    }
}
