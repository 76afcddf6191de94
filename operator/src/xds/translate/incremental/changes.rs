//! The [`Translator`]'s pass over a DAG diff: only the virtual hosts, clusters, load
//! assignments and secrets the diff names are compared and re-encoded, and the previous
//! translation's resources (a persistent map, see [`InstanceResources`]) are updated in place,
//! so a change costs in proportion to what it touched, not to the instance. The route
//! configuration `ingress_http` (when not scoped) and the listener `ingress_https` are
//! re-assembled from cached parts when one of their parts changed.
//!
//! The result is the one [`Translator::translate`] (and so [`super::super::translate`]) gives for
//! the same DAG; the property test in `incremental_tests.rs` checks it after every step of
//! random edit sequences.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{
    Addresses, HostEntry, HttpMode, Memo, Translator, http_route_configuration, regarded_wildcards,
    versioned,
};
use crate::dag::model::{Cluster, ClusterEndpoints, Upstream};
use crate::dag::{Dag, DagDiff};
use crate::xds::resource::{InstanceResources, VersionedResource, type_url};
use crate::xds::translate::envoy::load_assignment;
use crate::xds::translate::{HTTPS_LISTENER, TranslateError, clusters, listeners, secrets};

impl Translator {
    /// Translates `dag`, which differs from the DAG of this translator's previous successful
    /// translation by at most the entries `diff` names. Falls back to [`Translator::translate`]
    /// when the diff is `full`, nothing was translated yet, or plain HTTP switches between scoped,
    /// shared and open routes (see `HttpMode`). Like it, a failed translation leaves the remembered state as it was.
    pub fn translate_changes(
        &mut self,
        dag: &Dag,
        diff: &DagDiff,
    ) -> Result<InstanceResources, TranslateError> {
        // The DAG's invariants and the host names' shape, from what the diff names only; a
        // diff that may break an invariant is judged by the whole check.
        let change = self
            .resources
            .as_ref()
            .filter(|_| !diff.full)
            .and_then(|_| {
                self.refs.check_diff(
                    dag,
                    diff,
                    |name| self.hosts.get(name).map(|h| &h.input),
                    |name| self.clusters.get(name).map(|m| &m.input),
                )
            });
        let Some(change) = change else {
            return self.translate(dag);
        };
        let mode = HttpMode::of_shape(&change.shape);
        let previous = self.resources.as_ref().filter(|_| self.mode == Some(mode));
        let Some(previous) = previous else {
            return self.translate(dag);
        };
        let mut out = previous.clone();
        // The names changed from here on travel with the result, so that a Delta stream that
        // has `previous` compares only those (see `InstanceResources::changed_since`).
        out.record_changes();
        let open = change.shape.open > 0;
        let (http_changed, mut https_changed) =
            self.patch_hosts(dag, &diff.vhosts, mode, open, &mut out);
        https_changed |= self.update_hold(dag, None, change.shape.open_tcp > 0);
        if http_changed && mode != HttpMode::Scoped {
            let parts = dag
                .virtual_hosts
                .iter()
                .filter_map(|vh| self.hosts.get(&vh.fqdn).and_then(HostEntry::insecure_bytes));
            let routes = http_route_configuration(parts, mode);
            out.insert_versioned(routes.clone());
            self.http_routes = Some(routes);
        }
        if https_changed {
            let tls_hosts = listeners::tls_hosts(dag);
            if tls_hosts.is_empty() {
                self.https_listener = None;
                out.remove(type_url::LISTENER, HTTPS_LISTENER);
            } else {
                let listener = self.assemble_https(&tls_hosts);
                out.insert_versioned(listener.clone());
                self.https_listener = Some(listener);
            }
        }
        let services = self.patch_clusters(dag, &diff.clusters, &mut out);
        for name in diff.endpoints.iter().chain(&services) {
            let now = match find(dag.endpoints.entries(), name, |e| &e.service_name) {
                Some(e) => Some(addresses(e)),
                None => self.eds_users.contains_key(name).then_some(None),
            };
            patch_memo(
                &mut self.endpoints,
                name,
                now.as_ref(),
                encode_assignment,
                type_url::ENDPOINT,
                &mut out,
            );
        }
        for name in &diff.secrets {
            let now = find(&dag.secrets, name, |s| &s.name);
            patch_memo(
                &mut self.secrets,
                name,
                now,
                |name, s| versioned(name, &secrets::envoy_secret(s)),
                type_url::SECRET,
                &mut out,
            );
        }
        let mut kept = out.clone();
        kept.forget_changes();
        self.resources = Some(kept);
        self.refs.apply(change);
        Ok(out)
    }

    /// Re-encodes the named virtual hosts that changed, and the wildcards listing a name that
    /// came or went (`open`: the DAG has catch-all or wildcard hosts), replacing their resources
    /// in `out`; returns whether `ingress_http` and `ingress_https` must be assembled again.
    fn patch_hosts(
        &mut self,
        dag: &Dag,
        names: &BTreeSet<String>,
        mode: HttpMode,
        open: bool,
        out: &mut InstanceResources,
    ) -> (bool, bool) {
        let came_or_went = names.iter().map(String::as_str).filter(|fqdn| {
            open && self.hosts.contains_key(*fqdn)
                != find(&dag.virtual_hosts, fqdn, |v| &v.fqdn).is_some()
        });
        let regard = regarded_wildcards(dag, came_or_went);
        let (mut http_changed, mut https_changed) = (false, false);
        for fqdn in names.iter().chain(regard.difference(names)) {
            let now = find(&dag.virtual_hosts, fqdn, |v| &v.fqdn);
            let before = match (self.hosts.remove(fqdn), now) {
                (Some(b), Some(vh))
                    if super::same(&b.input, vh) && b.mode == mode && !regard.contains(fqdn) =>
                {
                    self.hosts.insert(fqdn.clone(), b);
                    continue;
                }
                (before, _) => before,
            };
            if let Some(b) = &before {
                for r in b.resources() {
                    out.remove(r.type_url(), &r.name);
                }
            }
            let mut fresh = now.map(|vh| HostEntry::encode(&self.opts, dag, vh, mode));
            if let Some(fresh) = &mut fresh {
                // A scope depends on the name only: keep sharing it.
                if let (Some(new), Some(old)) = (
                    &mut fresh.http_scope,
                    before.as_ref().and_then(|o| o.http_scope.as_ref()),
                ) && new[0] == old[0]
                {
                    new[0] = old[0].clone();
                }
                for r in fresh.resources() {
                    out.insert_versioned(r.clone());
                }
            }
            let (before_ref, fresh_ref) = (before.as_ref(), fresh.as_ref());
            http_changed |= before_ref.and_then(HostEntry::insecure_bytes)
                != fresh_ref.and_then(HostEntry::insecure_bytes);
            https_changed |=
                before_ref.and_then(HostEntry::chains) != fresh_ref.and_then(HostEntry::chains);
            if let Some(fresh) = fresh {
                self.hosts.insert(fqdn.clone(), fresh);
            }
        }
        (http_changed, https_changed)
    }

    /// Re-encodes the named clusters that changed, replacing them in `out`; returns the EDS
    /// service names whose users changed (their empty load assignment may come or go).
    fn patch_clusters(
        &mut self,
        dag: &Dag,
        names: &BTreeSet<String>,
        out: &mut InstanceResources,
    ) -> BTreeSet<String> {
        let mut services = BTreeSet::new();
        for name in names {
            let now = find(&dag.clusters, name, |c| &c.name);
            if let Some(service) = self
                .clusters
                .get(name.as_str())
                .and_then(|m| eds_service(&m.input))
            {
                services.insert(service.to_owned());
                forget_user(&mut self.eds_users, service);
            }
            if let Some(service) = now.and_then(|c| eds_service(c)) {
                services.insert(service.to_owned());
                *self.eds_users.entry(service.to_owned()).or_default() += 1;
            }
            patch_memo(
                &mut self.clusters,
                name,
                now,
                |name, c| versioned(name, &clusters::cluster(c)),
                type_url::CLUSTER,
                out,
            );
        }
        services
    }
}

impl HostEntry {
    /// The resources this virtual host has of its own (not the parts it adds to shared ones).
    fn resources(&self) -> impl Iterator<Item = &Arc<VersionedResource>> {
        self.https_routes
            .iter()
            .chain(self.http_scope.iter().flatten())
    }
}

/// The EDS service name a cluster reads its endpoints from.
pub(super) fn eds_service(c: &Cluster) -> Option<&str> {
    match &c.upstream {
        Upstream::Eds { service_name } => Some(service_name),
        Upstream::Dns { .. } => None,
    }
}

fn forget_user(users: &mut HashMap<String, usize>, service: &str) {
    if let Some(n) = users.get_mut(service) {
        *n -= 1;
        if *n == 0 {
            users.remove(service);
        }
    }
}

/// The load assignment of `name` (its input is the memo's, a `Vec`, hence the `&Vec`).
#[allow(clippy::ptr_arg)]
pub(super) fn encode_assignment(name: &str, input: &Addresses) -> Arc<VersionedResource> {
    let addresses = input
        .iter()
        .flat_map(|e| &e.addresses)
        .map(|a| (a.ip.as_str(), a.port));
    versioned(name, &load_assignment(name, addresses))
}

/// The memo input of an entry of `Dag::endpoints`: shared, and `None` when it has no address
/// (as for a service name without endpoints, which encodes the same).
pub(super) fn addresses(e: &Arc<ClusterEndpoints>) -> Addresses {
    (!e.addresses.is_empty()).then(|| e.clone())
}

/// The entry named `name` of a list sorted by name (every DAG list is).
fn find<'a, T>(list: &'a [T], name: &str, key: impl Fn(&T) -> &String) -> Option<&'a T> {
    list.binary_search_by(|e| key(e).as_str().cmp(name))
        .ok()
        .map(|i| &list[i])
}

/// Brings the memo and `out`'s resource named `name` in line with `now` (gone when `None`),
/// encoding only when the input changed.
fn patch_memo<I: Clone + PartialEq>(
    memos: &mut HashMap<Arc<str>, Memo<I>>,
    name: &str,
    now: Option<&I>,
    encode: impl Fn(&str, &I) -> Arc<VersionedResource>,
    type_url: &str,
    out: &mut InstanceResources,
) {
    match now {
        Some(input) => {
            if let Some(m) = memos.get_mut(name)
                && m.input == *input
            {
                // The DAG's allocation, not an equal one it no longer holds.
                m.input = input.clone();
                return;
            }
            let memo = Memo {
                input: input.clone(),
                output: encode(name, input),
            };
            out.insert_versioned(memo.output.clone());
            memos.insert(memo.output.name.clone(), memo);
        }
        None => {
            if memos.remove(name).is_some() {
                out.remove(type_url, name);
            }
        }
    }
}
