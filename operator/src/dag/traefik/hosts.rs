//! The host names a Traefik rule claims, beyond exact names: the catch-all `*` (rules without
//! `Host()`, `Host(`*`)`, `HostRegexp()` alone) and wildcards `*.parent` (`Host(`*.parent`)`),
//! and which of an IngressRoute's virtual hosts each alternative of a rule belongs in.
//!
//! Envoy picks a virtual host by name before any route (exact names, then the longest
//! `*.suffix`, then `*`), so a catch-all or wildcard virtual host only ever receives requests
//! for names no other virtual host has; ownership (see `dag::open_hosts`) decides who may hold
//! which. Within one IngressRoute, a host-less alternative applies to every host the
//! IngressRoute holds and a wildcard alternative to its hosts one label under the parent, as in
//! Traefik, where the host is just another condition of the rule.

use std::collections::BTreeSet;

use crate::dag::checks;
use crate::traefik::matches::HostMatch;

/// The name of the catch-all virtual host.
pub const CATCH_ALL: &str = "*";

/// The virtual host name an alternative's host condition claims (lower case): an exact name,
/// `*.parent`, or [`CATCH_ALL`]. `tls`: the IngressRoute is served over HTTPS.
pub fn claim(host: &HostMatch, tls: bool) -> Result<String, String> {
    match host {
        HostMatch::Exact(h) => checks::dns_name(h).map_err(|e| format!("host {h:?} {e}")),
        HostMatch::Any if tls => Err(
            "a rule (or an alternative of it) without Host() is served in the catch-all virtual \
             host, which is plain HTTP only (no certificate covers every host name): give it a \
             Host(), or put it in an IngressRoute without spec.tls"
                .into(),
        ),
        HostMatch::Any => Ok(CATCH_ALL.to_owned()),
        HostMatch::OneLabelUnder(parent) => {
            let name = checks::dns_name(parent)
                .map_err(|e| format!("wildcard host *.{parent}: the parent {e}"))?;
            if !name.contains('.') {
                return Err(format!(
                    "wildcard host *.{name}: a wildcard directly under a top-level domain is \
                     refused (it would claim every name of {name:?} on the Gateway)"
                ));
            }
            if is_public_suffix(&name) {
                return Err(format!(
                    "wildcard host *.{name}: {name:?} is a public suffix (on the Public Suffix \
                     List: its names belong to unrelated owners), so the wildcard would claim \
                     every name of {name:?} on the Gateway"
                ));
            }
            let wildcard = format!("*.{name}");
            if wildcard.len() > checks::MAX_DNS_NAME {
                return Err(format!(
                    "wildcard host {wildcard:?} is longer than {} bytes",
                    checks::MAX_DNS_NAME
                ));
            }
            Ok(wildcard)
        }
    }
}

/// Whether the (lower-case) name `name` is a public suffix of the Public Suffix List, ICANN's
/// (`co.uk`, `kawasaki.jp` but not its exception `city.kawasaki.jp`) or a private registry's
/// (`github.io`). A name under a top-level domain the list does not know (`example.test`) is
/// not.
fn is_public_suffix(name: &str) -> bool {
    psl::suffix(name.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
}

/// Whether `name` is a catch-all or wildcard virtual host name.
pub fn is_open(name: &str) -> bool {
    name.starts_with('*')
}

/// The wildcard that covers the exact name `fqdn` in Traefik's sense (one label more than its
/// parent): `*.example.com` for `a.example.com`; `None` for open names and names without a dot.
pub fn covering_wildcard(fqdn: &str) -> Option<String> {
    if is_open(fqdn) {
        return None;
    }
    let (_, parent) = fqdn.split_once('.')?;
    parent.contains('.').then(|| format!("*.{parent}"))
}

/// The virtual hosts among `hosts` (all those the IngressRoute holds) that an alternative with
/// this host condition belongs in.
pub fn targets<'a>(host: &HostMatch, hosts: &'a BTreeSet<String>) -> Vec<&'a String> {
    match host {
        HostMatch::Any => hosts.iter().collect(),
        HostMatch::Exact(h) => hosts.iter().filter(|n| *n == h).collect(),
        HostMatch::OneLabelUnder(parent) => {
            let wildcard = format!("*.{parent}");
            hosts
                .iter()
                .filter(|n| **n == wildcard || covering_wildcard(n).as_ref() == Some(&wildcard))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn claims_name_catch_all_and_wildcards() {
        assert_eq!(claim(&HostMatch::Any, false).unwrap(), "*");
        assert!(
            claim(&HostMatch::Any, true)
                .unwrap_err()
                .contains("plain HTTP only")
        );
        let w = HostMatch::OneLabelUnder("Example.com".into());
        assert_eq!(claim(&w, true).unwrap(), "*.example.com");
        let tld = HostMatch::OneLabelUnder("com".into());
        assert!(claim(&tld, false).unwrap_err().contains("top-level"));
        // Nor under a public suffix (review 7 R7.7), ICANN's or a private registry's, or one
        // a wildcard rule of the list makes; its exceptions and a name under it are fine.
        for suffix in ["co.uk", "CO.UK", "github.io", "com.au", "x.kawasaki.jp"] {
            let w = HostMatch::OneLabelUnder(suffix.into());
            let e = claim(&w, false).unwrap_err();
            assert!(e.contains("public suffix"), "{suffix}: {e}");
        }
        for parent in [
            "example.co.uk",
            "team.github.io",
            "city.kawasaki.jp",
            "example.test",
        ] {
            let w = HostMatch::OneLabelUnder(parent.into());
            assert_eq!(claim(&w, false).unwrap(), format!("*.{parent}"));
        }
        let ip = HostMatch::OneLabelUnder("10.0.0.1".into());
        assert!(claim(&ip, false).is_err());
        let long = HostMatch::OneLabelUnder(format!("{}.{}", "a".repeat(63), "b".repeat(63)));
        assert!(claim(&long, false).is_ok());
        let too_long = HostMatch::OneLabelUnder(
            [
                &"a".repeat(63)[..],
                &"b".repeat(63),
                &"c".repeat(63),
                &"d".repeat(61),
            ]
            .join("."),
        );
        assert!(claim(&too_long, false).unwrap_err().contains("longer than"));
    }

    #[test]
    fn a_wildcard_covers_one_label() {
        assert_eq!(
            covering_wildcard("a.example.com").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(covering_wildcard("example.com"), None);
        assert_eq!(covering_wildcard("*.example.com"), None);
        assert_eq!(covering_wildcard("*"), None);
        let hosts: BTreeSet<String> = ["*", "*.example.com", "a.example.com", "x.a.example.com"]
            .map(String::from)
            .into();
        let w = HostMatch::OneLabelUnder("example.com".into());
        assert_eq!(targets(&w, &hosts), ["*.example.com", "a.example.com"]);
        assert_eq!(targets(&HostMatch::Any, &hosts).len(), 4);
        let e = HostMatch::Exact("x.a.example.com".into());
        assert_eq!(targets(&e, &hosts), ["x.a.example.com"]);
    }
}
