//! Ownership of open hosts: the catch-all `*` and wildcards `*.parent` that Traefik rules claim
//! (see `traefik::hosts`), next to exact names of both dialects.
//!
//! - Each open name is owned like a host: its oldest claimant keeps it.
//! - A wildcard is a claim on the names one label under its parent (Traefik's `*.example.com`
//!   matches `a.example.com`, not `a.b.example.com`): an exact name it covers goes to whichever
//!   is older. A younger exact claim under an older wildcard is refused, naming the wildcard's
//!   owner, so no tenant can take over a name a wildcard owner serves; an exact name older than
//!   the wildcard keeps its own virtual host, which Envoy prefers to the wildcard.
//! - The catch-all is weaker than every name: it only receives requests for names nobody on the
//!   Gateway holds, so it never conflicts with a claim.
//! - A name whose owner is invalid serves nothing, but must still keep requests away from the
//!   wildcards and the catch-all: while the Gateway serves an open host, each such name gets a
//!   virtual host without routes (Envoy answers 404 there), owned by its owner.

use std::collections::BTreeMap;

use super::claims::Claimant;
use super::model::VirtualHost;
use super::traefik::hosts::{covering_wildcard, is_open};

/// The owner (oldest claimant) of every wildcard name among `fqdns` (claimants sorted).
pub fn wildcard_owners(fqdns: &BTreeMap<String, Vec<Claimant>>) -> BTreeMap<&str, &Claimant> {
    fqdns
        .iter()
        .filter(|(name, _)| name.starts_with("*."))
        .filter_map(|(name, c)| Some((name.as_str(), c.first()?)))
        .collect()
}

/// The older wildcard covering `fqdn`, whose oldest claimant is `oldest`: its name and owner.
pub fn covered_by<'a>(
    fqdn: &str,
    oldest: &Claimant,
    owners: &BTreeMap<&'a str, &'a Claimant>,
) -> Option<(&'a str, &'a Claimant)> {
    let wildcard = covering_wildcard(fqdn)?;
    let (name, owner) = owners.get_key_value(wildcard.as_str())?;
    (*owner < oldest).then_some((*name, *owner))
}

/// The status of a claimant of `fqdn` that lost it to the older `wildcard` of `owner`
/// (described as in `traefik::describe_owner`); `contour`: the loser is a Contour root.
pub fn covered(fqdn: &str, wildcard: &str, owner: &str, contour: bool) -> String {
    let what = if contour { "fqdn" } else { "host" };
    format!("{what} {fqdn:?} is covered by the wildcard host {wildcard:?} of the older {owner}")
}

/// Adds a virtual host without routes for every owned name (`owned`: name and owner's DAG name)
/// that serves nothing, when `vhosts` holds an open host; see the module documentation.
pub fn hold_unserved(vhosts: &mut BTreeMap<String, VirtualHost>, owned: Vec<(String, String)>) {
    if !vhosts.keys().any(|name| is_open(name)) {
        return;
    }
    for (fqdn, owner) in owned {
        vhosts.entry(fqdn.clone()).or_insert(VirtualHost {
            fqdn,
            owner,
            tls: None,
            routes: Vec::new(),
            tcp_proxy: None,
        });
    }
}
