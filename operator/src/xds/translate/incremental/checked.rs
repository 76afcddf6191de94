//! What lets the [`super::Translator`]'s pass over a DAG diff check the DAG's invariants and
//! decide how plain HTTP is served without walking the whole DAG.
//!
//! [`super::super::check`] walks every virtual host and cluster, and the plain-HTTP mode
//! (`HttpMode::of`) and the TCP hold chains look at every host name: at 10,000 roots that is
//! most of a diff's translation. Instead the translator keeps, for the DAG of its last
//! successful translation, [`Refs`]: how many references the hosts and clusters make to each
//! cluster, TLS certificate and CA bundle (counted by a hash of the name), and how many host
//! names cannot be scope keys, are open (catch-all or wildcard) and open with a TCP proxy. A diff
//! then needs:
//!
//! - each list still in strict name order around every name the diff names (the other entries
//!   did not change, so the list is in order everywhere);
//! - each virtual host and cluster the diff names checked alone (`check_host`, `check_cluster`:
//!   the same functions the whole check runs);
//! - no reference left to a cluster the diff removed, nor to a secret it removed or whose kind
//!   it changed, counting the references of the named hosts and clusters as they are now.
//!
//! Counting by hash can only over-count a name (two names with one hash add up), which makes a
//! sound DAG look suspicious, never the reverse. Anything suspicious is not judged here: the
//! translator translates from scratch, whose whole check names the problem exactly as
//! [`super::super::translate`] does, so results stay identical.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::dag::model::{Cluster, SecretKind, VirtualHost};
use crate::dag::{Dag, DagDiff};
use crate::xds::translate::{check_cluster, check_host, open_hosts, scopes};

/// What a reference is to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Target {
    Cluster,
    /// A secret used as a TLS certificate.
    Certificate,
    /// A secret used as a CA bundle.
    Bundle,
}

/// The references of the hosts and clusters of one DAG, and the shape of its host names. See
/// the module documentation.
#[derive(Debug, Default)]
pub(super) struct Refs {
    counts: HashMap<(Target, u64), usize>,
    pub(super) shape: Shape,
    /// Every list of the DAG was in strict name order (as the DAG builder makes them): the
    /// precondition of every look-up by bisection.
    sorted: bool,
}

/// Counts over the virtual host names of a DAG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Shape {
    /// Names that cannot be scope keys (open ones included).
    pub(super) unkeyable: usize,
    /// Catch-all and wildcard names.
    pub(super) open: usize,
    /// Open names with a TCP proxy.
    pub(super) open_tcp: usize,
}

impl Shape {
    fn add(&mut self, vh: &VirtualHost, sign: isize) {
        let bump = |n: &mut usize, on: bool| {
            if on {
                *n = n.saturating_add_signed(sign);
            }
        };
        let open = open_hosts::is_open(&vh.fqdn);
        bump(&mut self.unkeyable, !scopes::keyable(&vh.fqdn));
        bump(&mut self.open, open);
        bump(&mut self.open_tcp, open && vh.tcp_proxy.is_some());
    }
}

/// What one diff changes in [`Refs`], once its translation succeeds.
#[derive(Debug)]
pub(super) struct RefsChange {
    counts: HashMap<(Target, u64), isize>,
    pub(super) shape: Shape,
}

impl Refs {
    /// The references and shape of `dag`, which passed the whole check.
    pub(super) fn of(dag: &Dag) -> Self {
        let mut refs = Self {
            sorted: sorted(dag),
            ..Self::default()
        };
        let mut add = |target: Target, name: &str| {
            *refs.counts.entry((target, hash(name))).or_default() += 1;
        };
        for vh in &dag.virtual_hosts {
            host_refs(vh, &mut add);
        }
        for c in &dag.clusters {
            cluster_refs(c, &mut add);
        }
        for vh in &dag.virtual_hosts {
            refs.shape.add(vh, 1);
        }
        refs
    }

    /// Checks `dag`, which differs from the DAG these references are of by at most the entries
    /// `diff` names, as far as the diff can tell (see the module documentation); `hosts` and
    /// `clusters` give the entries of that previous DAG. `None`: the DAG may break an invariant,
    /// or these references cannot tell (the previous DAG was out of name order): translate it
    /// from scratch.
    pub(super) fn check_diff<'a>(
        &self,
        dag: &Dag,
        diff: &DagDiff,
        hosts: impl Fn(&str) -> Option<&'a Arc<VirtualHost>>,
        clusters: impl Fn(&str) -> Option<&'a Arc<Cluster>>,
    ) -> Option<RefsChange> {
        if !self.sorted || diff.full {
            return None;
        }
        let in_order = names_in_order(&dag.virtual_hosts, &diff.vhosts, |v| &v.fqdn)
            && names_in_order(&dag.clusters, &diff.clusters, |c| &c.name)
            && names_in_order(&dag.endpoints, &diff.endpoints, |e| &e.service_name)
            && names_in_order(&dag.secrets, &diff.secrets, |s| &s.name);
        if !in_order {
            return None;
        }
        let mut change = RefsChange {
            counts: HashMap::new(),
            shape: self.shape,
        };
        let has_cluster = |name: &str| find(&dag.clusters, name, |c| &c.name).is_some();
        for name in &diff.vhosts {
            let before = hosts(name);
            let now = find(&dag.virtual_hosts, name, |v| &v.fqdn);
            if let (Some(b), Some(n)) = (before, now)
                && Arc::ptr_eq(b, n)
            {
                continue;
            }
            if let Some(vh) = now {
                check_host(dag, vh, &has_cluster, true).ok()?;
                host_refs(vh, |t, n| bump(&mut change.counts, t, n, 1));
                change.shape.add(vh, 1);
            }
            if let Some(vh) = before {
                host_refs(vh, |t, n| bump(&mut change.counts, t, n, -1));
                change.shape.add(vh, -1);
            }
        }
        for name in &diff.clusters {
            let before = clusters(name);
            let now = find(&dag.clusters, name, |c| &c.name);
            if let Some(c) = now {
                check_cluster(dag, c, true).ok()?;
                cluster_refs(c, |t, n| bump(&mut change.counts, t, n, 1));
            }
            if let Some(c) = before {
                cluster_refs(c, |t, n| bump(&mut change.counts, t, n, -1));
            }
        }
        // What the unchanged entries still name must still be there.
        let used = |target: Target, name: &str| {
            let key = (target, hash(name));
            let n = self.counts.get(&key).copied().unwrap_or(0);
            n.saturating_add_signed(change.counts.get(&key).copied().unwrap_or(0)) > 0
        };
        for name in &diff.clusters {
            if used(Target::Cluster, name) && !has_cluster(name) {
                return None;
            }
        }
        for name in &diff.secrets {
            let kind = find(&dag.secrets, name, |s| &s.name).map(|s| &s.kind);
            let certificate = matches!(kind, Some(SecretKind::Tls { .. }));
            let bundle = matches!(kind, Some(SecretKind::Ca { .. }));
            if (used(Target::Certificate, name) && !certificate)
                || (used(Target::Bundle, name) && !bundle)
            {
                return None;
            }
        }
        Some(change)
    }

    /// Takes in the change of a diff whose translation succeeded.
    pub(super) fn apply(&mut self, change: RefsChange) {
        for (key, delta) in change.counts {
            let n = self.counts.entry(key).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
        self.shape = change.shape;
    }
}

fn bump(counts: &mut HashMap<(Target, u64), isize>, target: Target, name: &str, by: isize) {
    let key = (target, hash(name));
    let n = counts.entry(key).or_default();
    *n += by;
    if *n == 0 {
        counts.remove(&key);
    }
}

/// Every cluster and secret `vh` names: at least what [`check_host`] looks up (a test checks
/// that removing any one of them fails the check, and that nothing else does).
fn host_refs(vh: &VirtualHost, mut add: impl FnMut(Target, &str)) {
    for route in &vh.routes {
        for wc in &route.clusters {
            add(Target::Cluster, &wc.cluster);
        }
        for m in route.extra.iter().flat_map(|e| &e.mirrors) {
            add(Target::Cluster, &m.cluster);
        }
    }
    if let Some(tcp) = &vh.tcp_proxy {
        let branches = tcp.branches.iter().flat_map(|b| &b.clusters);
        for wc in tcp.clusters.iter().chain(branches) {
            add(Target::Cluster, &wc.cluster);
        }
    }
    if let Some(tls) = vh.tls.as_ref().filter(|t| !t.passthrough) {
        if let Some(secret) = &tls.secret {
            add(Target::Certificate, secret);
        }
        let validation = tls
            .options
            .as_ref()
            .and_then(|o| o.client_validation.as_ref());
        if let Some(v) = validation {
            add(Target::Bundle, &v.ca_secret);
        }
    }
}

/// The secret `c` names ([`check_cluster`] looks it up).
fn cluster_refs(c: &Cluster, mut add: impl FnMut(Target, &str)) {
    if let Some(v) = &c.validation {
        add(Target::Bundle, &v.ca_secret);
    }
}

/// A fixed hash of a name (SipHash with fixed keys: the same in every process).
fn hash(name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

fn sorted(dag: &Dag) -> bool {
    fn strictly<T>(list: &[Arc<T>], key: impl Fn(&T) -> &String) -> bool {
        list.windows(2).all(|w| key(&w[0]) < key(&w[1]))
    }
    strictly(&dag.virtual_hosts, |v| &v.fqdn)
        && strictly(&dag.clusters, |c| &c.name)
        && strictly(&dag.endpoints, |e| &e.service_name)
        && strictly(&dag.secrets, |s| &s.name)
}

/// Whether the entries of `list` around where each of `names` is (or would be) are in strict
/// name order.
fn names_in_order<T>(
    list: &[Arc<T>],
    names: &BTreeSet<String>,
    key: impl Fn(&T) -> &String,
) -> bool {
    names.iter().all(|name| {
        let i = list.partition_point(|e| key(e).as_str() < name.as_str());
        let around = &list[i.saturating_sub(1)..(i + 2).min(list.len())];
        around.windows(2).all(|w| key(&w[0]) < key(&w[1]))
    })
}

/// The entry named `name` of a list in name order.
fn find<'a, T>(list: &'a [Arc<T>], name: &str, key: impl Fn(&T) -> &String) -> Option<&'a Arc<T>> {
    list.binary_search_by(|e| key(e).as_str().cmp(name))
        .ok()
        .map(|i| &list[i])
}

#[cfg(test)]
#[path = "checked_tests.rs"]
mod tests;
