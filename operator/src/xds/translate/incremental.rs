//! Incremental translation: a [`Translator`] remembers, per Gateway, the encoded protobuf of every
//! virtual host, filter chain, cluster, cluster load assignment and secret of its previous
//! translation, with the DAG element it came from, and re-encodes only what the DAG changed.
//!
//! - A DAG element equal (by value) to the previous one with the same name reuses the previous
//!   encoded resource: the same `Arc`, so the cache's old and new snapshots share its bytes and
//!   its version, which is computed once, when the resource is encoded.
//! - Plain HTTP's per-host scopes and route configurations (see [`super::scopes`]) are memoized
//!   with their virtual host, so an edit to one host re-encodes only that host's resources.
//! - While a catch-all or wildcard host is served ([`super::open_hosts`]), each host's part of
//!   `ingress_http` is encoded for it, and a wildcard's `https/` route configuration, which lists
//!   the other names under it, is encoded again when one of them comes or goes.
//! - Route configurations and the TLS listener are assembled from encoded parts: protobuf
//!   encodes a repeated message field as one tag-and-length record per element, so the cached
//!   bytes of each virtual host (or filter chain) are written between the encoded fields that
//!   precede and follow them, instead of re-encoding all of them. When none of its parts changed
//!   or moved, the assembled resource itself is reused.
//!
//! The output is byte-identical to [`super::translate`], the from-scratch reference (a property
//! test compares both after every step of random edit sequences). Like it, this is pure: no I/O,
//! no clock; a failed translation leaves the remembered state as it was.

use std::collections::HashMap;
use std::sync::Arc;

mod changes;
mod checked;
#[cfg(test)]
mod memo_tests;

use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use prost::encoding::encoded_len_varint;
use prost::{Message, Name};

use super::envoy::any;
use super::{
    ADMIN_CLUSTER, HTTP_LISTENER, HTTPS_LISTENER, STATS_LISTENER, TranslateError, TranslateOptions,
    check, clusters, eds_service_names, https_route_config_name, listeners, open_hosts, routes,
    scopes, secrets,
};
use crate::dag::Dag;
use crate::dag::model::{Cluster, ClusterEndpoints, Secret, VirtualHost};
use crate::xds::resource::{InstanceResources, VersionedResource};

/// Field number of `RouteConfiguration.virtual_hosts`.
const ROUTE_CONFIGURATION_VIRTUAL_HOSTS: u32 = 2;
/// Field number of `Listener.filter_chains`.
const LISTENER_FILTER_CHAINS: u32 = 3;

/// Translates successive DAGs of one Gateway, re-encoding only what changed. See the module
/// documentation.
#[derive(Debug)]
pub struct Translator {
    opts: TranslateOptions,
    /// What depends on the options only: the stats listener, the admin cluster.
    fixed: [Arc<VersionedResource>; 2],
    /// The HTTP listener with the shared `ingress_http` and with scoped routes.
    http_listeners: [Arc<VersionedResource>; 2],
    hosts: HashMap<String, HostEntry>,
    /// Keyed by the name their resource holds (shared, not copied).
    clusters: HashMap<Arc<str>, Memo<Arc<Cluster>>>,
    endpoints: HashMap<Arc<str>, Memo<Addresses>>,
    secrets: HashMap<Arc<str>, Memo<Arc<Secret>>>,
    http_routes: Option<Arc<VersionedResource>>,
    https_listener: Option<Arc<VersionedResource>>,
    /// The encoded hold chains at the end of `ingress_https` (see `listeners_hold`).
    hold: Vec<Vec<u8>>,
    /// How many clusters read each EDS service name (one with none has no load assignment).
    eds_users: HashMap<String, usize>,
    /// The last successful translation and how it served plain HTTP: what
    /// [`Translator::translate_changes`] updates in place.
    resources: Option<InstanceResources>,
    mode: Option<HttpMode>,
    /// What the DAG of the last successful translation refers to, and the shape of its host
    /// names: what a diff is checked against (see `checked`).
    refs: checked::Refs,
}

/// How a Gateway serves plain HTTP, which decides how each virtual host is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HttpMode {
    /// One `ingress_http` with the virtual hosts that serve plain HTTP.
    Shared,
    /// One scope and `http/<fqdn>` route configuration per host (see [`scopes`]).
    Scoped,
    /// A catch-all or wildcard host is served: one `ingress_http` with every virtual host,
    /// matched without the port, and wildcards' `https/` route configurations listing the
    /// other names under them (see [`open_hosts`]).
    Open,
}

impl HttpMode {
    fn of(dag: &Dag) -> Self {
        if scopes::scoped(dag) {
            Self::Scoped
        } else if open_hosts::open(dag) {
            Self::Open
        } else {
            Self::Shared
        }
    }

    /// The same as [`HttpMode::of`], from the counts of the DAG's host names.
    fn of_shape(shape: &checked::Shape) -> Self {
        if shape.unkeyable == 0 {
            Self::Scoped
        } else if shape.open > 0 {
            Self::Open
        } else {
            Self::Shared
        }
    }
}

/// A DAG element and the resource encoded from it. The element is the DAG's own (`Arc`), not a
/// copy: the translator holds no second copy of the instance, and an element a DAG update did
/// not change is recognized without a look inside.
#[derive(Debug)]
struct Memo<I> {
    input: I,
    output: Arc<VersionedResource>,
}

/// A load assignment's input: the DAG's entry, shared with it (`None`: no address, as for a
/// service name a cluster uses without endpoints). Held by pointer, not copied: the DAG holds
/// the same addresses.
type Addresses = Option<Arc<ClusterEndpoints>>;

/// One virtual host and what it contributes to each resource.
#[derive(Debug)]
struct HostEntry {
    input: Arc<VirtualHost>,
    /// Its encoded `VirtualHost` in `ingress_http`, if it serves anything over plain HTTP, and
    /// its position there. When scoped, the bytes are in its `http/<fqdn>` route configuration
    /// only (nothing assembles `ingress_http` from them), and this holds none.
    insecure: Option<(Vec<u8>, usize)>,
    /// Its encoded `FilterChain` in `ingress_https`, if it has TLS, and its position there.
    filter_chain: Option<(Vec<Vec<u8>>, usize)>,
    /// Its `https/<fqdn>` route configuration, if it serves HTTP routes behind TLS.
    https_routes: Option<Arc<VersionedResource>>,
    /// How plain HTTP was served when it was encoded.
    mode: HttpMode,
    /// Its plain-HTTP scope and `http/<fqdn>` route configuration, when scoped and it serves
    /// anything over plain HTTP.
    http_scope: Option<[Arc<VersionedResource>; 2]>,
}

impl Translator {
    /// A translator with nothing remembered; the first translation encodes everything.
    pub fn new(opts: TranslateOptions) -> Self {
        let fixed = [
            versioned(STATS_LISTENER, &listeners::stats_listener(&opts)),
            versioned(ADMIN_CLUSTER, &clusters::admin_cluster(&opts)),
        ];
        let http_listeners = [false, true]
            .map(|scoped| versioned(HTTP_LISTENER, &listeners::http_listener(&opts, scoped)));
        Self {
            opts,
            fixed,
            http_listeners,
            hosts: HashMap::new(),
            clusters: HashMap::new(),
            endpoints: HashMap::new(),
            secrets: HashMap::new(),
            http_routes: None,
            https_listener: None,
            hold: Vec::new(),
            eds_users: HashMap::new(),
            resources: None,
            mode: None,
            refs: checked::Refs::default(),
        }
    }

    /// The options every translation uses.
    pub fn options(&self) -> &TranslateOptions {
        &self.opts
    }

    /// Uses `opts` from now on; forgets everything if they differ from the current ones.
    pub fn set_options(&mut self, opts: &TranslateOptions) {
        if *opts != self.opts {
            *self = Self::new(opts.clone());
        }
    }

    /// Translates `dag`: the same resources as [`super::translate`], encoded and versioned, each
    /// shared with the previous translation when its DAG input did not change.
    pub fn translate(&mut self, dag: &Dag) -> Result<InstanceResources, TranslateError> {
        check(dag)?;
        let mut out = InstanceResources::default();
        for r in &self.fixed {
            out.insert_versioned(r.clone());
        }
        let mode = HttpMode::of(dag);
        self.translate_hosts(dag, mode, &mut out);
        self.clusters = memoize(
            std::mem::take(&mut self.clusters),
            dag.clusters.entries().iter().map(|c| (c.name.as_str(), c)),
            |name, c| versioned(name, &clusters::cluster(c)),
            &mut out,
        );
        let mut endpoints: Vec<(&str, Addresses)> = dag
            .endpoints
            .entries()
            .iter()
            .map(|e| (e.service_name.as_str(), changes::addresses(e)))
            .collect();
        // A service name a cluster uses without endpoints gets an empty assignment.
        let with_endpoints: std::collections::BTreeSet<&str> =
            endpoints.iter().map(|(name, _)| *name).collect();
        for name in eds_service_names(dag) {
            if !with_endpoints.contains(name) {
                endpoints.push((name, None));
            }
        }
        self.endpoints = memoize(
            std::mem::take(&mut self.endpoints),
            endpoints.iter().map(|(name, a)| (*name, a)),
            changes::encode_assignment,
            &mut out,
        );
        self.secrets = memoize(
            std::mem::take(&mut self.secrets),
            dag.secrets.entries().iter().map(|s| (s.name.as_str(), s)),
            |name, s| versioned(name, &secrets::envoy_secret(s)),
            &mut out,
        );
        self.eds_users.clear();
        for service in dag.clusters.iter().filter_map(changes::eds_service) {
            *self.eds_users.entry(service.to_owned()).or_default() += 1;
        }
        self.resources = Some(out.clone());
        self.mode = Some(mode);
        self.refs = checked::Refs::of(dag);
        Ok(out)
    }

    /// Virtual hosts: the HTTP listener with `ingress_http` or the per-host scopes and
    /// `http/<fqdn>` route configurations, the `https/<fqdn>` route configurations and
    /// `ingress_https`.
    fn translate_hosts(&mut self, dag: &Dag, mode: HttpMode, out: &mut InstanceResources) {
        let scoped = mode == HttpMode::Scoped;
        out.insert_versioned(self.http_listeners[usize::from(scoped)].clone());
        if scoped {
            // Rebuilt from scratch if the Gateway falls back to it later.
            self.http_routes = None;
        }
        let mut old = std::mem::take(&mut self.hosts);
        let regard = regarded_wildcards(
            dag,
            dag.virtual_hosts
                .iter()
                .map(|vh| vh.fqdn.as_str())
                .filter(|n| !old.contains_key(*n))
                .chain(
                    old.keys()
                        .map(String::as_str)
                        .filter(|n| find_host(dag, n).is_none()),
                ),
        );
        let mut http_changed = self.http_routes.is_none();
        let mut https_changed = false;
        let mut hosts = HashMap::with_capacity(dag.virtual_hosts.len());
        let mut http_parts = Vec::new();
        let tls_hosts = super::listeners::tls_hosts(dag);
        let chain_position: HashMap<&str, usize> = tls_hosts
            .iter()
            .enumerate()
            .map(|(i, vh)| (vh.fqdn.as_str(), i))
            .collect();
        for vh in dag.virtual_hosts.entries() {
            let previous = old.remove(&vh.fqdn);
            let mut entry = match previous {
                Some(p) if same(&p.input, vh) && p.mode == mode && !regard.contains(&vh.fqdn) => p,
                previous => {
                    // Re-encoded; a part whose bytes did not change needs no reassembly.
                    let mut fresh = HostEntry::encode(&self.opts, dag, vh, mode);
                    let old = previous.as_ref();
                    // A scope depends on the name only: keep sharing it.
                    if let (Some(new), Some(old)) = (
                        &mut fresh.http_scope,
                        old.and_then(|o| o.http_scope.as_ref()),
                    ) && new[0] == old[0]
                    {
                        new[0] = old[0].clone();
                    }
                    http_changed |=
                        old.and_then(HostEntry::insecure_bytes) != fresh.insecure_bytes();
                    https_changed |= old.and_then(HostEntry::chains) != fresh.chains();
                    fresh
                }
            };
            // A part that moved changes its resource too.
            if let Some((_, position)) = &mut entry.insecure {
                http_changed |= *position != http_parts.len();
                *position = http_parts.len();
                http_parts.push(vh.fqdn.as_str());
            }
            if let (Some((_, position)), Some(now)) = (
                &mut entry.filter_chain,
                chain_position.get(vh.fqdn.as_str()),
            ) {
                https_changed |= position != now;
                *position = *now;
            }
            if let Some(r) = &entry.https_routes {
                out.insert_versioned(r.clone());
            }
            for r in entry.http_scope.iter().flatten() {
                out.insert_versioned(r.clone());
            }
            hosts.insert(vh.fqdn.clone(), entry);
        }
        // Removed hosts take their parts with them.
        for gone in old.values() {
            http_changed |= gone.insecure.is_some();
            https_changed |= gone.filter_chain.is_some();
        }
        self.hosts = hosts;

        if scoped {
            // Plain HTTP is served by the scopes added with their hosts.
        } else if http_changed || self.http_routes.is_none() {
            let parts = http_parts
                .iter()
                .filter_map(|fqdn| self.hosts.get(*fqdn).and_then(HostEntry::insecure_bytes));
            self.http_routes = Some(http_route_configuration(parts, mode));
        }
        if let Some(r) = self.http_routes.as_ref().filter(|_| !scoped) {
            out.insert_versioned(r.clone());
        }

        let tcp_open = open_hosts::open_hosts(dag).any(|vh| vh.tcp_proxy.is_some());
        https_changed |= self.update_hold(dag, Some(&tls_hosts), tcp_open);
        if tls_hosts.is_empty() {
            self.https_listener = None;
        } else {
            if https_changed || self.https_listener.is_none() {
                self.https_listener = Some(self.assemble_https(&tls_hosts));
            }
            if let Some(r) = &self.https_listener {
                out.insert_versioned(r.clone());
            }
        }
    }
}

impl Translator {
    /// Brings the hold chains up to `dag` (`tls_hosts`: its hosts with chains, when known);
    /// returns whether they changed. They exist only while a TCP catch-all or wildcard is
    /// served (`tcp_open`), and are then worked out from every host.
    fn update_hold(
        &mut self,
        dag: &Dag,
        tls_hosts: Option<&[&VirtualHost]>,
        tcp_open: bool,
    ) -> bool {
        let hold: Vec<Vec<u8>> = if tcp_open {
            let found;
            let tls_hosts = match tls_hosts {
                Some(t) => t,
                None => {
                    found = listeners::tls_hosts(dag);
                    &found
                }
            };
            super::listeners_hold::hold_chains(dag, tls_hosts)
                .iter()
                .map(Message::encode_to_vec)
                .collect()
        } else {
            Vec::new()
        };
        let changed = hold != self.hold;
        self.hold = hold;
        changed
    }

    /// `ingress_https` from the cached chains of `tls_hosts`, then the hold chains.
    fn assemble_https(&self, tls_hosts: &[&VirtualHost]) -> Arc<VersionedResource> {
        let parts = tls_hosts
            .iter()
            .filter_map(|vh| self.hosts.get(&vh.fqdn))
            .flat_map(HostEntry::chain_bytes)
            .chain(self.hold.iter().map(Vec::as_slice));
        https_listener(&self.opts, parts)
    }
}

impl HostEntry {
    /// `vh` encoded for `mode`. `dag` is read for a wildcard's `https/` route configuration
    /// only.
    fn encode(opts: &TranslateOptions, dag: &Dag, vh: &Arc<VirtualHost>, mode: HttpMode) -> Self {
        let scoped = mode == HttpMode::Scoped;
        let insecure = if mode == HttpMode::Open {
            Some(open_hosts::http_virtual_host(vh).encode_to_vec())
        } else {
            routes::insecure_virtual_host(vh).map(|h| h.encode_to_vec())
        };
        let http_scope = insecure.as_deref().filter(|_| scoped).map(|host| {
            let name = scopes::http_scope_name(&vh.fqdn);
            [
                versioned(&name, &scopes::scope(&vh.fqdn)),
                route_configuration(&name, std::iter::once(host)),
            ]
        });
        let https_routes = routes::serves_https_routes(vh).then(|| {
            let name = https_route_config_name(&vh.fqdn);
            let host = routes::virtual_host(&vh.fqdn, routes::forward_routes(&vh.routes, |_| true));
            let mut config = routes::route_configuration(&name, vec![host]);
            open_hosts::guard_https(dag, vh, &mut config);
            versioned(&name, &config)
        });
        Self {
            input: vh.clone(),
            insecure: insecure.map(|h| (if scoped { Vec::new() } else { h }, usize::MAX)),
            filter_chain: vh.tls.as_ref().map(|tls| {
                let chains = listeners::sni_filter_chains(opts, vh, tls);
                let bytes = chains.iter().map(Message::encode_to_vec).collect();
                (bytes, usize::MAX)
            }),
            https_routes,
            mode,
            http_scope,
        }
    }

    fn insecure_bytes(&self) -> Option<&[u8]> {
        self.insecure.as_ref().map(|(b, _)| b.as_slice())
    }

    fn chains(&self) -> Option<&[Vec<u8>]> {
        self.filter_chain.as_ref().map(|(c, _)| c.as_slice())
    }

    /// Its encoded filter chains (none without TLS).
    fn chain_bytes(&self) -> impl Iterator<Item = &[u8]> {
        self.filter_chain
            .iter()
            .flat_map(|(chains, _)| chains.iter().map(Vec::as_slice))
    }
}

/// `ingress_http` with the given encoded virtual hosts, in order.
fn http_route_configuration<'a>(
    hosts: impl Iterator<Item = &'a [u8]>,
    mode: HttpMode,
) -> Arc<VersionedResource> {
    let template = if mode == HttpMode::Open {
        open_hosts::open_route_configuration(HTTP_LISTENER, Vec::new())
    } else {
        routes::route_configuration(HTTP_LISTENER, Vec::new())
    };
    assembled_route_configuration(template, hosts)
}

/// The route configuration `name` with the given encoded virtual hosts, in order.
fn route_configuration<'a>(
    name: &str,
    hosts: impl Iterator<Item = &'a [u8]>,
) -> Arc<VersionedResource> {
    assembled_route_configuration(routes::route_configuration(name, Vec::new()), hosts)
}

/// `template` (without virtual hosts) with the given encoded virtual hosts, in order.
fn assembled_route_configuration<'a>(
    template: RouteConfiguration,
    hosts: impl Iterator<Item = &'a [u8]>,
) -> Arc<VersionedResource> {
    let name = template.name.clone();
    let head = RouteConfiguration {
        name: template.name.clone(),
        ..Default::default()
    };
    let tail = RouteConfiguration {
        name: String::new(),
        ..template
    };
    assembled(
        &name,
        &head,
        ROUTE_CONFIGURATION_VIRTUAL_HOSTS,
        hosts,
        &tail,
    )
}

/// `ingress_https` with the given encoded filter chains, in order.
fn https_listener<'a>(
    opts: &TranslateOptions,
    chains: impl Iterator<Item = &'a [u8]>,
) -> Arc<VersionedResource> {
    let template = listeners::https_listener_template(opts);
    let head = Listener {
        name: template.name.clone(),
        address: template.address.clone(),
        ..Default::default()
    };
    let tail = Listener {
        name: String::new(),
        address: None,
        ..template
    };
    assembled(HTTPS_LISTENER, &head, LISTENER_FILTER_CHAINS, chains, &tail)
}

/// The encoding of a message whose repeated message field `field` holds `parts` (each already
/// encoded), `head` holding its fields numbered below `field` and `tail` those above. Prost
/// writes fields in field-number order, so this is byte for byte what encoding the whole message
/// gives.
fn assembled<'a, T: Message + Name>(
    name: &str,
    head: &T,
    field: u32,
    parts: impl Iterator<Item = &'a [u8]>,
    tail: &T,
) -> Arc<VersionedResource> {
    // Key: field number and wire type 2 (length-delimited).
    let key = u64::from(field << 3 | 2);
    let (head, tail) = (head.encode_to_vec(), tail.encode_to_vec());
    let parts: Vec<&[u8]> = parts.collect();
    // Sized exactly: grown by doubling, the listener of every TLS chain kept up to twice its
    // size for as long as it is served.
    let len = parts.iter().fold(head.len() + tail.len(), |n, p| {
        n + encoded_len_varint(key) + encoded_len_varint(p.len() as u64) + p.len()
    });
    let mut value = Vec::with_capacity(len);
    value.extend_from_slice(&head);
    for part in parts {
        put_varint(&mut value, key);
        put_varint(&mut value, part.len() as u64);
        value.extend_from_slice(part);
    }
    value.extend_from_slice(&tail);
    Arc::new(VersionedResource::new(
        name,
        Any {
            type_url: T::type_url(),
            value,
        },
    ))
}

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn versioned<T: Message + Name>(name: &str, message: &T) -> Arc<VersionedResource> {
    Arc::new(VersionedResource::new(name, any(message)))
}

/// The wildcards of `dag` whose `https/` route configuration lists one of the `names` (which
/// came or went), so it must be encoded again though the wildcard itself did not change.
fn regarded_wildcards<'a>(
    dag: &Dag,
    names: impl Iterator<Item = &'a str>,
) -> std::collections::BTreeSet<String> {
    let mut regard = std::collections::BTreeSet::new();
    let mut names = names.peekable();
    if names.peek().is_none() {
        return regard;
    }
    let wildcards: Vec<&str> = open_hosts::open_hosts(dag)
        .filter(|vh| routes::serves_https_routes(vh))
        .map(|vh| vh.fqdn.as_str())
        .collect();
    if wildcards.is_empty() {
        return regard;
    }
    for name in names {
        for w in &wildcards {
            if open_hosts::guarded_by(w, name) {
                regard.insert((*w).to_owned());
            }
        }
    }
    regard
}

/// The virtual host `fqdn` of `dag` (sorted by name).
fn find_host<'a>(dag: &'a Dag, fqdn: &str) -> Option<&'a Arc<VirtualHost>> {
    let hosts = dag.virtual_hosts.entries();
    hosts
        .binary_search_by(|vh| vh.fqdn.as_str().cmp(fqdn))
        .ok()
        .map(|i| &hosts[i])
}

/// The same DAG element: the same allocation, or equal.
fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Reuses the previous resource of every `(name, input)` whose input did not change, encodes
/// the others with `encode`, adds all to `out`, and returns what to remember next time.
fn memoize<'a, I: Clone + PartialEq + 'a>(
    mut previous: HashMap<Arc<str>, Memo<I>>,
    current: impl Iterator<Item = (&'a str, &'a I)>,
    encode: impl Fn(&str, &I) -> Arc<VersionedResource>,
    out: &mut InstanceResources,
) -> HashMap<Arc<str>, Memo<I>> {
    current
        .map(|(name, input)| {
            let memo = match previous.remove(name) {
                // The DAG's allocation, not an equal one it no longer holds.
                Some(p) if p.input == *input => Memo {
                    input: input.clone(),
                    output: p.output,
                },
                _ => Memo {
                    input: input.clone(),
                    output: encode(name, input),
                },
            };
            out.insert_versioned(memo.output.clone());
            (memo.output.name.clone(), memo)
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An assembled resource holds its bytes in a buffer of their size, and they are what
    /// encoding the whole message gives.
    #[test]
    fn assembled_bytes_are_exactly_sized() {
        let chains: Vec<Vec<u8>> = (0..40)
            .map(|i| vec![u8::try_from(i).unwrap(); 100 + 37 * i])
            .collect();
        let head = RouteConfiguration {
            name: "head".into(),
            ..Default::default()
        };
        let tail = RouteConfiguration {
            internal_only_headers: vec!["x-internal".into()],
            ..Default::default()
        };
        let r = assembled("r", &head, 2, chains.iter().map(Vec::as_slice), &tail);
        let value = r.value();
        let mut whole = Vec::new();
        head.encode(&mut whole).unwrap();
        for c in &chains {
            prost::encoding::bytes::encode(2, c, &mut whole);
        }
        tail.encode(&mut whole).unwrap();
        assert_eq!(value, whole.as_slice());
    }
}
