//! Blame for a rejected listener. The HTTPS listener is shared: one filter chain per TLS
//! virtual host (an IngressRoute's, an IngressRouteTCP's passthrough or termination), each
//! named after its SNI name ([`sni_filter_chain`](super::translate)). When Envoy rejects it,
//! the filter chains that differ from the version an Envoy of the instance last accepted hold
//! the cause, and the objects owning them are blamed: an IngressRouteTCP whose chain alone
//! changed gets the rejection (owner `traefik-tcp:namespace/name`); a *hold* chain
//! (`hold/name`) is blamed on the holder of its name.
//!
//! Pure: the cache records which chains changed ([`changed_filter_chains`]), attribution maps
//! them to owners ([`owners`]).

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use prost::Message;

use super::translate::{HOLD_PREFIX, HTTPS_LISTENER};
use crate::dag::Dag;

/// The filter chains of each listener of a rejected response, by listener name.
pub type ChangedChains = BTreeMap<String, BTreeSet<String>>;

/// The names of the filter chains of `rejected` that `accepted` (the version last accepted,
/// if any) lacks or holds with other content. Empty when either does not decode as a
/// Listener, or when only the listener's own fields changed.
pub fn changed_filter_chains(rejected: &[u8], accepted: Option<&[u8]>) -> BTreeSet<String> {
    let Ok(rejected) = Listener::decode(rejected) else {
        return BTreeSet::new();
    };
    let accepted = match accepted.map(Listener::decode) {
        Some(Err(_)) => return BTreeSet::new(),
        Some(Ok(l)) => Some(l),
        None => None,
    };
    let before: BTreeMap<&str, &FilterChain> = accepted
        .iter()
        .flat_map(|l| &l.filter_chains)
        .map(|c| (c.name.as_str(), c))
        .collect();
    rejected
        .filter_chains
        .iter()
        .filter(|c| before.get(c.name.as_str()).is_none_or(|b| **b != **c))
        .map(|c| c.name.clone())
        .collect()
}

/// The owners of the changed filter chains of a rejected listener response: every listener
/// changed must be the HTTPS one and every changed chain a TLS virtual host of `dag`, else
/// nothing is blamed (empty). A chain's owners are its virtual host's root and the owner of
/// its TCP proxy (the same object for an IngressRouteTCP).
pub fn owners(dag: &Dag, listeners: &ChangedChains) -> BTreeSet<String> {
    let mut owners = BTreeSet::new();
    for (listener, chains) in listeners {
        if listener != HTTPS_LISTENER || chains.is_empty() {
            return BTreeSet::new();
        }
        // A hold chain's content is made of a checked name alone: beside other changed chains
        // it is not what Envoy refused, but what a new TCP catch-all or wildcard brought along
        // (one chain per name other namespaces hold over plain HTTP only): blamed on those
        // names' holders, it would spread every such rejection over several namespaces.
        let only_holds = chains.iter().all(|c| c.starts_with(HOLD_PREFIX));
        for chain in chains {
            // A hold chain keeps a name served over plain HTTP only away from a TCP catch-all
            // or wildcard (`translate::listeners_hold`): it is that name's holder's.
            if let Some(held) = chain.strip_prefix(HOLD_PREFIX) {
                let Some(vh) = dag
                    .virtual_hosts
                    .iter()
                    .find(|vh| vh.tls.is_none() && vh.fqdn == held)
                else {
                    return BTreeSet::new();
                };
                if only_holds {
                    owners.insert(vh.owner.clone());
                }
                continue;
            }
            // A name's chains with conditions (Traefik `ClientIP()`, `ALPN()`) are `name#i`.
            let fqdn = chain
                .split_once('#')
                .map_or(chain.as_str(), |(name, _)| name);
            let Some(vh) = dag
                .virtual_hosts
                .iter()
                .find(|vh| vh.tls.is_some() && vh.fqdn == fqdn)
            else {
                return BTreeSet::new();
            };
            owners.insert(vh.owner.clone());
            if let Some(tcp) = &vh.tcp_proxy {
                owners.insert(tcp.owner.clone());
            }
        }
    }
    owners
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dag::model::TcpProxy;
    use crate::xds::translate::fixture::{route, vhost, with_tls};
    use envoy_types::pb::envoy::config::listener::v3::FilterChainMatch;

    fn chain(name: &str, sni: &str) -> FilterChain {
        FilterChain {
            name: name.to_owned(),
            filter_chain_match: Some(FilterChainMatch {
                server_names: vec![sni.to_owned()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn listener(chains: Vec<FilterChain>) -> Vec<u8> {
        Listener {
            name: HTTPS_LISTENER.to_owned(),
            filter_chains: chains,
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn the_chains_added_or_changed_since_the_accepted_listener_are_named() {
        let accepted = listener(vec![chain("a", "a"), chain("b", "b")]);
        let rejected = listener(vec![chain("a", "a"), chain("b", "other"), chain("c", "c")]);
        let names = |s: &[&str]| s.iter().map(|n| (*n).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(
            changed_filter_chains(&rejected, Some(accepted.as_slice())),
            names(&["b", "c"])
        );
        // Nothing accepted yet: every chain may be the cause.
        assert_eq!(
            changed_filter_chains(&rejected, None),
            names(&["a", "b", "c"])
        );
        // A chain removed, or nothing that decodes: no chain to name.
        assert!(
            changed_filter_chains(&listener(vec![chain("a", "a")]), Some(accepted.as_slice()))
                .is_empty()
        );
        let junk = [0xff, 0xff];
        assert!(changed_filter_chains(&junk, Some(accepted.as_slice())).is_empty());
    }

    /// The cache records, with a listener NACK, the chains changed since the accepted version.
    #[test]
    fn a_listener_nack_records_the_chains_changed_since_the_accepted_listener() {
        use crate::xds::cache::Cache;
        use crate::xds::resource::{InstanceResources, type_url::LISTENER};
        let set = |cache: &Cache, chains: Vec<FilterChain>| {
            let mut r = InstanceResources::default();
            r.insert(
                HTTPS_LISTENER,
                envoy_types::pb::google::protobuf::Any {
                    type_url: LISTENER.to_owned(),
                    value: listener(chains),
                },
            );
            cache.set("ns/gw", r);
            let snapshot = cache.get("ns/gw").unwrap();
            let sent: Vec<_> = snapshot
                .resources(LISTENER)
                .unwrap()
                .values()
                .cloned()
                .collect();
            sent
        };
        let cache = Cache::new();
        let sent = set(&cache, vec![chain("a", "a"), chain("b", "b")]);
        cache.ack("ns/gw", LISTENER, &sent, &[], true);
        let sent = set(&cache, vec![chain("a", "a"), chain("b", "b2")]);
        cache.nack("ns/gw", LISTENER, "v2", "envoy", "bad", &sent);
        let rejections = cache.rejections("ns/gw");
        let changed: Vec<_> = rejections
            .iter()
            .map(|r| r.changed_filter_chains.clone())
            .collect();
        let expected =
            BTreeMap::from([(HTTPS_LISTENER.to_owned(), BTreeSet::from(["b".to_owned()]))]);
        assert_eq!(changed, [expected]);
    }

    fn dag() -> Dag {
        let mut http = with_tls(
            vhost("web.example.com", vec![route("/", &[("a", 80, 1)])]),
            "default/tls",
            envoy_tls_version(),
        );
        http.owner = "traefik:team/web".into();
        let mut tcp = with_tls(
            vhost("db.example.com", vec![]),
            "team/tls",
            envoy_tls_version(),
        );
        tcp.owner = "traefik-tcp:team/db".into();
        tcp.tcp_proxy = Some(TcpProxy {
            owner: "traefik-tcp:team/db".into(),
            clusters: Vec::new(),
            branches: Vec::new(),
            plain: false,
            sni_regexes: Vec::new(),
        });
        let mut plain = vhost("plain.example.com", vec![route("/", &[("a", 80, 1)])]);
        plain.owner = "plain".into();
        Dag {
            virtual_hosts: vec![http, tcp, plain].into(),
            ..Dag::default()
        }
    }

    fn envoy_tls_version() -> crate::api::ingressroute::TlsVersion {
        crate::api::ingressroute::TlsVersion::V1_2
    }

    fn changed(listener: &str, chains: &[&str]) -> ChangedChains {
        BTreeMap::from([(
            listener.to_owned(),
            chains.iter().map(|c| (*c).to_owned()).collect(),
        )])
    }

    #[test]
    fn a_changed_chain_is_blamed_on_its_virtual_hosts_owner() {
        let dag = dag();
        let owned = |c: &ChangedChains| owners(&dag, c).into_iter().collect::<Vec<_>>();
        assert_eq!(
            owned(&changed(HTTPS_LISTENER, &["db.example.com"])),
            ["traefik-tcp:team/db"]
        );
        assert_eq!(
            owned(&changed(HTTPS_LISTENER, &["db.example.com#1"])),
            ["traefik-tcp:team/db"],
            "a chain with conditions is its name's"
        );
        assert_eq!(
            owned(&changed(
                HTTPS_LISTENER,
                &["db.example.com", "web.example.com"]
            )),
            ["traefik-tcp:team/db", "traefik:team/web"]
        );
        assert_eq!(
            owned(&changed(HTTPS_LISTENER, &["hold/plain.example.com"])),
            ["plain"],
            "a hold chain is its name's holder's"
        );
        // Beside another changed chain, a hold chain (made of a checked name alone) is what a
        // new TCP catch-all or wildcard brought along, not what Envoy refused (review 9 R3).
        assert_eq!(
            owned(&changed(
                HTTPS_LISTENER,
                &["hold/plain.example.com", "db.example.com"]
            )),
            ["traefik-tcp:team/db"],
        );
        // A chain of no TLS virtual host, a hold chain of a name nobody holds over plain HTTP,
        // another listener, or no chain: nobody.
        for c in [
            changed(HTTPS_LISTENER, &["plain.example.com"]),
            changed(HTTPS_LISTENER, &["hold/web.example.com"]),
            changed(HTTPS_LISTENER, &["hold/gone.example.com", "db.example.com"]),
            changed(HTTPS_LISTENER, &["gone.example.com"]),
            changed(HTTPS_LISTENER, &[]),
            changed("ingress_http", &["db.example.com"]),
        ] {
            assert!(owners(&dag, &c).is_empty(), "{c:?}");
        }
    }
}
