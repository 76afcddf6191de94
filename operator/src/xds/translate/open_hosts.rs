//! Route configurations of a Gateway serving an open host: the catch-all `*` or a wildcard
//! `*.parent` (from Traefik rules; see `dag::open_hosts` for who may hold them).
//!
//! - Scoped routes cannot serve them: Envoy matches scope keys exactly and has no default
//!   scope for a key no scope has (the request gets 404), so such a Gateway uses the shared
//!   `ingress_http` (see [`super::scopes`]), where Envoy's own domain matching picks exact names
//!   first, then the longest `*.suffix`, then `*`.
//! - Every virtual host of the DAG is in `ingress_http`, even one serving nothing over plain
//!   HTTP (a TLS passthrough host, a host whose owner is invalid): without routes, Envoy answers
//!   404 there, so a request for it never falls through to a wildcard or the catch-all.
//! - Envoy compares the whole Host header with the domains, port included, and a wildcard
//!   cannot carry a port pattern (`*.example.com:*` is read as the literal suffix
//!   `.example.com:*`): `b.example.com:8080` would skip `*.example.com` and reach `*`. These
//!   route configurations set `ignore_port_in_host_matching`, which picks the virtual host by
//!   the host alone and passes the Host header on unchanged.
//! - A Host with a trailing dot (`a.example.com.`) names the same host (Traefik strips the
//!   dot), but Envoy's domains do not match it, so it would fall through to the catch-all:
//!   every virtual host of these route configurations also carries its domains with a trailing
//!   dot.
//! - A wildcard's `https/*.parent` route configuration, reached by any SNI name under the parent
//!   that has no filter chain of its own, also holds a virtual host without routes for every
//!   other name under the parent the DAG has: a client sending one of those in the Host header
//!   over the wildcard's TLS session gets 404, never the wildcard owner's routes (a host served
//!   over plain HTTP only by its owner is not served over HTTPS by the wildcard's).

use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost as EnvoyVirtualHost,
};

use super::HTTP_LISTENER;
use super::routes::{insecure_virtual_host, route_configuration, virtual_host};
use crate::dag::Dag;
use crate::dag::model::VirtualHost;

/// Whether `name` is a catch-all or wildcard virtual host name.
pub fn is_open(name: &str) -> bool {
    name.starts_with('*')
}

/// Whether `dag` serves an open host.
pub fn open(dag: &Dag) -> bool {
    open_hosts(dag).next().is_some()
}

/// The open hosts of `dag`.
pub fn open_hosts(dag: &Dag) -> impl Iterator<Item = &VirtualHost> {
    dag.virtual_hosts.iter().filter(|vh| is_open(&vh.fqdn))
}

/// `ingress_http` of a Gateway serving an open host: every virtual host, those serving nothing
/// over plain HTTP without routes.
pub fn http_route_configuration(dag: &Dag) -> RouteConfiguration {
    let hosts = dag.virtual_hosts.iter().map(http_virtual_host).collect();
    open_route_configuration(HTTP_LISTENER, hosts)
}

/// `vh` in the `ingress_http` of a Gateway serving an open host.
pub fn http_virtual_host(vh: &VirtualHost) -> EnvoyVirtualHost {
    with_trailing_dots(
        insecure_virtual_host(vh).unwrap_or_else(|| virtual_host(&vh.fqdn, Vec::new())),
    )
}

/// A route configuration of a Gateway serving an open host, picking virtual hosts without the
/// port.
pub fn open_route_configuration(name: &str, hosts: Vec<EnvoyVirtualHost>) -> RouteConfiguration {
    let mut config = route_configuration(name, hosts);
    config.ignore_port_in_host_matching = true;
    config
}

/// Whether `name` is one of the other names under the wildcard `wildcard` (whose `https/`
/// route configuration lists them, see [`guard_https`]).
pub fn guarded_by(wildcard: &str, name: &str) -> bool {
    wildcard
        .strip_prefix('*')
        .is_some_and(|suffix| name != wildcard && name.ends_with(suffix))
}

/// Completes the `https/<fqdn>` route configuration of `vh` when it is a wildcard: the other
/// names under its parent, without routes, and host matching without the port.
pub fn guard_https(dag: &Dag, vh: &VirtualHost, config: &mut RouteConfiguration) {
    if !vh.fqdn.starts_with('*') {
        return;
    }
    // In name order whatever the DAG's order: the incremental translator encodes this again
    // only when a name under the wildcard comes or goes.
    let mut others: Vec<&str> = dag
        .virtual_hosts
        .iter()
        .map(|other| other.fqdn.as_str())
        .filter(|other| guarded_by(&vh.fqdn, other))
        .collect();
    others.sort_unstable();
    config.virtual_hosts.extend(
        others
            .into_iter()
            .map(|other| virtual_host(other, Vec::new())),
    );
    config.virtual_hosts = std::mem::take(&mut config.virtual_hosts)
        .into_iter()
        .map(with_trailing_dots)
        .collect();
    config.ignore_port_in_host_matching = true;
}

/// `host` also matching its names written with a trailing dot (with or without a port).
fn with_trailing_dots(mut host: EnvoyVirtualHost) -> EnvoyVirtualHost {
    let dotted: Vec<String> = host
        .domains
        .iter()
        .filter(|d| d.as_str() != "*")
        .map(|d| match d.strip_suffix(":*") {
            Some(name) => format!("{name}.:*"),
            None => format!("{d}."),
        })
        .collect();
    host.domains.extend(dotted);
    host
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::super::fixture::{self, Pems};
    use super::super::{TranslateOptions, Translator, translate};
    use crate::api::ingressroute::TlsVersion;
    use crate::xds::resource::InstanceResources;

    #[test]
    fn a_wildcard_with_tls_gets_its_chain_and_404s_every_other_name_under_its_parent() {
        let mut dag = fixture::dag(&Pems::placeholder());
        let wild = fixture::with_tls(
            fixture::vhost(
                "*.example.com",
                vec![fixture::route("/", &[("web", 80, 1)])],
            ),
            fixture::SECURE_SECRET,
            TlsVersion::V1_2,
        );
        dag.virtual_hosts.insert(0, wild);
        let opts = TranslateOptions::default();
        let r = translate(&dag, &opts).unwrap();
        let config = &r
            .routes
            .iter()
            .find(|rc| rc.name == "https/*.example.com")
            .unwrap()
            .message;
        assert!(config.ignore_port_in_host_matching);
        let hosts: Vec<(&str, usize)> = config
            .virtual_hosts
            .iter()
            .map(|v| (v.name.as_str(), v.routes.len()))
            .collect();
        let others: Vec<&str> = dag
            .virtual_hosts
            .iter()
            .skip(1)
            .map(|v| v.fqdn.as_str())
            .collect();
        assert!(
            others.iter().all(|n| n.ends_with(".example.com")),
            "{others:?}"
        );
        assert_eq!(hosts[0], ("*.example.com", 1));
        assert_eq!(hosts.len(), 1 + others.len());
        for (name, routes) in &hosts[1..] {
            assert!(others.contains(name) && *routes == 0, "{name}");
        }
        let app = config
            .virtual_hosts
            .iter()
            .find(|v| v.name == "app.example.com");
        assert_eq!(
            app.unwrap().domains,
            [
                "app.example.com",
                "app.example.com:*",
                "app.example.com.",
                "app.example.com.:*"
            ]
        );
        // Its own SNI filter chain; exact names keep theirs.
        let listener = &r
            .listeners
            .iter()
            .find(|l| l.name == super::super::HTTPS_LISTENER)
            .unwrap()
            .message;
        let names: Vec<&str> = listener
            .filter_chains
            .iter()
            .flat_map(|c| &c.filter_chain_match.as_ref().unwrap().server_names)
            .map(String::as_str)
            .collect();
        assert!(names.contains(&"*.example.com") && names.contains(&"secure.example.com"));
        // The incremental translator gives the same bytes, and starts afresh after.
        let mut t = Translator::new(opts.clone());
        assert_eq!(t.translate(&dag), Ok(InstanceResources::from(&r)));
        dag.virtual_hosts.remove(0);
        let plain = InstanceResources::from(&translate(&dag, &opts).unwrap());
        assert_eq!(t.translate(&dag), Ok(plain));
    }
}
