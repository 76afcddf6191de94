//! The xDS translation: a pure function from a [`Dag`] to the Envoy v3 resources one Gateway
//! instance serves (listeners, route configurations, clusters, cluster load assignments, secrets).
//!
//! No I/O, no clock, no randomness: the same DAG always gives byte-identical resources, each list
//! sorted by name, so versions are stable and a no-op change pushes nothing. This module must not
//! decide what is valid input (the DAG builder did that); it only refuses a DAG that breaks the
//! DAG's own invariants (a reference to a cluster or secret it does not hold), so a builder bug
//! becomes a clear error and the last good configuration keeps being served.
//!
//! Layout: `listeners`, `routes`, `scopes` (plain HTTP's per-host scoped routes), `open_hosts`
//! (the shared plain-HTTP table of a Gateway with a catch-all or wildcard host), `clusters`
//! (with endpoints) and `secrets` build the messages,
//! `envoy` holds tiny proto constructors, `json` renders resources in Envoy's JSON form, and
//! `validate` builds a self-contained bootstrap so real Envoy can check the output.

mod by_type;
mod client_ip;
mod clusters;
pub mod constraints;
mod envoy;
mod ext_authz;
mod incremental;
pub mod json;
mod listeners;
pub(crate) mod listeners_hold;
mod listeners_plain;
mod listeners_sni;
mod matching;
mod mirrors;
pub mod open_hosts;
pub mod policies;
mod routes;
pub mod scopes;
mod secrets;
mod service_options;
mod tls_options;
mod transport;
mod upstream_proxy;
pub mod validate;

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod policies_tests;
#[cfg(test)]
mod scopes_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, ScopedRouteConfiguration};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use crate::api::gateway::IpFamily;
use crate::dag::Dag;
use crate::dag::model::{
    Cluster as DagCluster, SecretKind, Upstream, VirtualHost, WeightedCluster,
};
use crate::xds::resource::{InstanceResources, VersionedResource, resource_version};

pub use crate::xds::resource::ResourceType;
pub use by_type::ByType;
pub use incremental::Translator;
pub use json::to_json;
pub use listeners_hold::HOLD_PREFIX;

/// Name of the plain HTTP listener, of its shared route configuration (when not scoped) and of
/// its scoped routes.
pub const HTTP_LISTENER: &str = "ingress_http";
/// Name of the TLS listener (one filter chain per SNI name).
pub const HTTPS_LISTENER: &str = "ingress_https";
/// Name of the health and stats listener.
pub const STATS_LISTENER: &str = "stats_health";
/// Static cluster reaching Envoy's own admin interface, used only by the stats listener.
pub const ADMIN_CLUSTER: &str = "sluice_admin";

/// The route configuration serving `fqdn` on the TLS listener.
pub fn https_route_config_name(fqdn: &str) -> String {
    format!("https/{fqdn}")
}

/// Addresses and ports of the listeners Sluice generates. Defaults match Contour's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateOptions {
    pub http_address: String,
    pub http_port: u16,
    pub https_address: String,
    pub https_port: u16,
    pub stats_address: String,
    pub stats_port: u16,
    /// The Unix domain socket Envoy's admin interface binds (the bootstrap must agree). Only
    /// `/ready` and `/stats/prometheus` are exposed, through the stats listener. Admin has no
    /// TCP address, so no route, endpoint or ExternalName service can reach it.
    pub admin_socket: String,
    /// Listeners bound to the IPv6 wildcard `::` accept IPv4 too (Envoy's `ipv4_compat`).
    pub ipv4_compat: bool,
    /// Proxies in front of Envoy trusted to append `X-Forwarded-For` (the Gateway's
    /// `xffTrustedHops`; Envoy's `xff_num_trusted_hops`); 0: the client is the TCP peer.
    pub xff_trusted_hops: u32,
}

impl Default for TranslateOptions {
    /// Contour's ports, on a dual-stack `::` (a Gateway's default `spec.ipFamily`).
    fn default() -> Self {
        Self {
            http_address: "::".to_owned(),
            http_port: 8080,
            https_address: "::".to_owned(),
            https_port: 8443,
            stats_address: "::".to_owned(),
            stats_port: 8002,
            admin_socket: crate::provision::bootstrap::DEFAULT_ADMIN_SOCKET.to_owned(),
            ipv4_compat: true,
            xff_trusted_hops: 0,
        }
    }
}

impl TranslateOptions {
    /// These options with the proxies the Gateway's selection trusts in front of Envoy.
    #[must_use]
    pub fn with_selection(self, sel: &crate::dag::Selection) -> Self {
        Self {
            xff_trusted_hops: sel.xff_trusted_hops,
            ..self
        }
    }

    /// These options with every listener on the wildcard address of a Gateway's
    /// `spec.ipFamily`: `0.0.0.0` (IPv4), `::` (IPv6) or `::` with `ipv4_compat` (DualStack).
    #[must_use]
    pub fn with_ip_family(self, family: IpFamily) -> Self {
        let address = match family {
            IpFamily::Ipv4 => "0.0.0.0",
            IpFamily::Ipv6 | IpFamily::DualStack => "::",
        };
        Self {
            http_address: address.to_owned(),
            https_address: address.to_owned(),
            stats_address: address.to_owned(),
            ipv4_compat: family == IpFamily::DualStack,
            ..self
        }
    }
}

/// A DAG that breaks the DAG's own invariants. Each is a bug in the DAG builder, reported instead
/// of producing configuration Envoy would reject or silently misroute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("{kind} {name:?} appears more than once")]
    Duplicate { kind: &'static str, name: String },
    #[error("{user} references cluster {cluster:?}, which the DAG does not hold")]
    UnknownCluster { user: String, cluster: String },
    #[error("{user} references secret {secret:?}, which the DAG does not hold")]
    UnknownSecret { user: String, secret: String },
    #[error("{user} needs a {expected} secret but {secret:?} is not one")]
    WrongSecretKind {
        user: String,
        secret: String,
        expected: &'static str,
    },
    #[error("virtual host {fqdn:?} terminates TLS but names no certificate secret")]
    MissingCertificate { fqdn: String },
    #[error("virtual host {fqdn:?} uses TLS passthrough without a tcpproxy")]
    PassthroughWithoutTcpProxy { fqdn: String },
    #[error("virtual host {fqdn:?} has a tcpproxy but no TLS")]
    TcpProxyWithoutTls { fqdn: String },
    #[error("the tcpproxy of virtual host {fqdn:?} has no cluster")]
    EmptyTcpProxy { fqdn: String },
}

impl TranslateError {
    /// Stable short label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Duplicate { .. } => "duplicate",
            Self::UnknownCluster { .. } => "unknown_cluster",
            Self::UnknownSecret { .. } => "unknown_secret",
            Self::WrongSecretKind { .. } => "wrong_secret_kind",
            Self::MissingCertificate { .. } => "missing_certificate",
            Self::PassthroughWithoutTcpProxy { .. } => "passthrough_without_tcpproxy",
            Self::TcpProxyWithoutTls { .. } => "tcpproxy_without_tls",
            Self::EmptyTcpProxy { .. } => "empty_tcpproxy",
        }
    }
}

/// One named resource, as its typed message.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource<T> {
    pub name: String,
    pub message: T,
}

impl<T: Message + Name> Resource<T> {
    fn new(name: impl Into<String>, message: T) -> Self {
        Self {
            name: name.into(),
            message,
        }
    }

    /// The message in protobuf wire form.
    pub fn encode(&self) -> Vec<u8> {
        self.message.encode_to_vec()
    }

    /// The message packed in an `Any` with its type URL, as xDS sends it.
    pub fn to_any(&self) -> Any {
        envoy::any(&self.message)
    }

    /// A stable version for this resource alone (the one the xDS cache uses).
    pub fn version(&self) -> String {
        resource_version(&self.to_any())
    }
}

/// Everything one Gateway instance serves. Every list is sorted by name, names are unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub listeners: Vec<Resource<Listener>>,
    pub routes: Vec<Resource<RouteConfiguration>>,
    /// Plain HTTP's scopes, one per virtual host, when the Gateway's hosts can all be keyed.
    pub scoped_routes: Vec<Resource<ScopedRouteConfiguration>>,
    pub clusters: Vec<Resource<Cluster>>,
    pub endpoints: Vec<Resource<ClusterLoadAssignment>>,
    pub secrets: Vec<Resource<Secret>>,
}

impl Resources {
    /// The resources of one type, encoded and versioned for xDS, in name order.
    pub fn of_type(&self, ty: ResourceType) -> Vec<VersionedResource> {
        match ty {
            ResourceType::Cluster => packed(&self.clusters),
            ResourceType::Endpoint => packed(&self.endpoints),
            ResourceType::Secret => packed(&self.secrets),
            ResourceType::Listener => packed(&self.listeners),
            ResourceType::ScopedRoute => packed(&self.scoped_routes),
            ResourceType::Route => packed(&self.routes),
        }
    }
}

fn packed<T: Message + Name>(list: &[Resource<T>]) -> Vec<VersionedResource> {
    list.iter()
        .map(|r| VersionedResource::new(r.name.clone(), r.to_any()))
        .collect()
}

impl From<&Resources> for InstanceResources {
    /// Everything a translation produced, encoded and versioned for the cache.
    fn from(resources: &Resources) -> Self {
        let mut out = Self::default();
        for ty in ResourceType::ALL {
            for r in resources.of_type(ty) {
                out.insert_versioned(std::sync::Arc::new(r));
            }
        }
        out
    }
}

/// Translate one instance's DAG into Envoy resources.
pub fn translate(dag: &Dag, opts: &TranslateOptions) -> Result<Resources, TranslateError> {
    let by_type = ByType::new(dag, opts)?;
    Ok(Resources {
        listeners: by_type.listeners(),
        routes: by_type.routes(),
        scoped_routes: by_type.scoped_routes(),
        clusters: by_type.clusters(),
        endpoints: by_type.endpoints(),
        secrets: by_type.secrets(),
    })
}

fn sort_by_name<T>(list: &mut [Resource<T>]) {
    list.sort_by(|a, b| a.name.cmp(&b.name));
}

/// The DAG's invariants the translation relies on.
fn check(dag: &Dag) -> Result<(), TranslateError> {
    // Lists in strict name order (as the DAG builder makes them) hold each name once, and are
    // searched by bisection; others are checked with sets (the same verdicts, slower).
    let in_order = strictly_ordered(&dag.virtual_hosts, |v| &v.fqdn)
        && strictly_ordered(&dag.clusters, |c| &c.name)
        && strictly_ordered(&dag.endpoints, |e| &e.service_name)
        && strictly_ordered(&dag.secrets, |s| &s.name);
    let clusters: BTreeSet<&str> = if in_order {
        BTreeSet::new()
    } else {
        unique(
            "virtual host",
            dag.virtual_hosts.iter().map(|v| v.fqdn.as_str()),
        )?;
        unique("cluster", dag.clusters.iter().map(|c| c.name.as_str()))?;
        unique(
            "endpoints",
            dag.endpoints.iter().map(|e| e.service_name.as_str()),
        )?;
        unique("secret", dag.secrets.iter().map(|s| s.name.as_str()))?;
        dag.clusters.iter().map(|c| c.name.as_str()).collect()
    };
    let has_cluster = |name: &str| {
        if in_order {
            dag.clusters
                .binary_search_by(|c| c.name.as_str().cmp(name))
                .is_ok()
        } else {
            clusters.contains(name)
        }
    };
    let sorted = dag.secrets.windows(2).all(|w| w[0].name < w[1].name);
    for vh in &dag.virtual_hosts {
        check_host(dag, vh, &has_cluster, sorted)?;
    }
    for cluster in &dag.clusters {
        check_cluster(dag, cluster, sorted)?;
    }
    Ok(())
}

/// One virtual host's part of [`check`]: its own consistency, and that every cluster and secret
/// it names is in `dag` (`has_cluster`), of the right kind. The incremental translation checks
/// the hosts a diff names with it (`incremental/checked.rs`).
fn check_host(
    dag: &Dag,
    vh: &VirtualHost,
    has_cluster: &dyn Fn(&str) -> bool,
    sorted: bool,
) -> Result<(), TranslateError> {
    // The user's name is only made for an error (this runs over every route of every pass).
    let check_clusters = |user: &dyn Fn() -> String, list: &[WeightedCluster]| {
        list.iter()
            .find(|wc| !has_cluster(wc.cluster.as_str()))
            .map_or(Ok(()), |wc| {
                Err(TranslateError::UnknownCluster {
                    user: user(),
                    cluster: wc.cluster.clone(),
                })
            })
    };
    for route in &vh.routes {
        let user = || format!("route {:?} of {:?}", route.prefix, vh.fqdn);
        check_clusters(&user, &route.clusters)?;
        if let Some(m) = route
            .extra
            .iter()
            .flat_map(|e| &e.mirrors)
            .find(|m| !has_cluster(m.cluster.as_str()))
        {
            return Err(TranslateError::UnknownCluster {
                user: user(),
                cluster: m.cluster.clone(),
            });
        }
    }
    if let Some(tcp) = &vh.tcp_proxy {
        if (tcp.clusters.is_empty() && tcp.branches.is_empty())
            || tcp.branches.iter().any(|b| b.clusters.is_empty())
        {
            return Err(TranslateError::EmptyTcpProxy {
                fqdn: vh.fqdn.clone(),
            });
        }
        for clusters in
            std::iter::once(&tcp.clusters).chain(tcp.branches.iter().map(|b| &b.clusters))
        {
            check_clusters(&|| format!("tcpproxy of {:?}", vh.fqdn), clusters)?;
        }
    }
    match (&vh.tls, &vh.tcp_proxy) {
        (None, Some(_)) => {
            return Err(TranslateError::TcpProxyWithoutTls {
                fqdn: vh.fqdn.clone(),
            });
        }
        (Some(tls), None) if tls.passthrough => {
            return Err(TranslateError::PassthroughWithoutTcpProxy {
                fqdn: vh.fqdn.clone(),
            });
        }
        _ => {}
    }
    if let Some(tls) = vh.tls.as_ref().filter(|t| !t.passthrough) {
        let secret = tls
            .secret
            .as_deref()
            .ok_or_else(|| TranslateError::MissingCertificate {
                fqdn: vh.fqdn.clone(),
            })?;
        check_secret(
            dag,
            sorted,
            &format!("virtual host {:?}", vh.fqdn),
            secret,
            true,
        )?;
        if let Some(v) = tls
            .options
            .as_ref()
            .and_then(|o| o.client_validation.as_ref())
        {
            let user = format!("client validation of {:?}", vh.fqdn);
            check_secret(dag, sorted, &user, &v.ca_secret, false)?;
        }
    }
    Ok(())
}

/// One cluster's part of [`check`]: the CA bundle it validates its upstream with is in `dag`.
fn check_cluster(dag: &Dag, cluster: &DagCluster, sorted: bool) -> Result<(), TranslateError> {
    if let Some(v) = &cluster.validation {
        check_secret(
            dag,
            sorted,
            &format!("cluster {:?}", cluster.name),
            &v.ca_secret,
            false,
        )?;
    }
    Ok(())
}

fn strictly_ordered<T>(list: &[T], name: impl Fn(&T) -> &String) -> bool {
    list.windows(2).all(|w| name(&w[0]) < name(&w[1]))
}

fn unique<'a>(
    kind: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), TranslateError> {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(TranslateError::Duplicate {
                kind,
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// `sorted`: the DAG's secrets are in name order (as the builder makes them), so they are found
/// by binary search; otherwise by a full search.
fn check_secret(
    dag: &Dag,
    sorted: bool,
    user: &str,
    name: &str,
    tls: bool,
) -> Result<(), TranslateError> {
    let found = if sorted {
        dag.secrets
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .map(|i| &*dag.secrets[i])
    } else {
        dag.secrets.iter().find(|s| s.name == name)
    };
    let secret = found.ok_or_else(|| TranslateError::UnknownSecret {
        user: user.to_owned(),
        secret: name.to_owned(),
    })?;
    match (&secret.kind, tls) {
        (SecretKind::Tls { .. }, true) | (SecretKind::Ca { .. }, false) => Ok(()),
        _ => Err(TranslateError::WrongSecretKind {
            user: user.to_owned(),
            secret: name.to_owned(),
            expected: if tls { "TLS certificate" } else { "CA bundle" },
        }),
    }
}

/// EDS service names used by clusters, for endpoints the DAG may lack.
fn eds_service_names(dag: &Dag) -> BTreeSet<&str> {
    dag.clusters
        .iter()
        .filter_map(|c| match &c.upstream {
            Upstream::Eds { service_name } => Some(service_name.as_str()),
            Upstream::Dns { .. } => None,
        })
        .collect()
}
