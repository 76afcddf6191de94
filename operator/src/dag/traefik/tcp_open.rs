//! The catch-all `HostSNI(`*`)`, wildcards `HostSNI(`*.name`)` and `HostSNIRegexp()` of
//! IngressRouteTCPs: the host names they claim and how their routes reach the
//! IngressRouteTCP's other names.
//!
//! - `HostSNI(`*`)` claims the catch-all host `*` and `HostSNI(`*.name`)` the wildcard
//!   `*.name` (one label under `name`, as Traefik matches), the same names an IngressRoute's
//!   host-less and wildcard rules claim (see `hosts`): one owner per name across dialects and
//!   listeners, the oldest claimant keeping it, and a younger exact name under an older
//!   wildcard refused (`dag::open_hosts`).
//! - Envoy picks a filter chain by server name before anything else (the exact name, then the
//!   longest `*.suffix`, then the chains without server names), so names another claimant holds
//!   never reach the catch-all or a wildcard; the HTTPS listener closes the connections of held
//!   names that have no chain of their own instead of letting them fall through (see
//!   `xds::translate::listeners_hold`).
//! - `HostSNIRegexp()` claims `*.parent` when its pattern is proved to match only names one
//!   label under `parent` (`traefik::regex::one_label_parent`), else `*` (it could match any
//!   name): so it only ever receives names nobody else holds, and its chain closes those the
//!   pattern does not match (`xds::translate::listeners_sni`).
//! - Within one IngressRouteTCP, Traefik tries every route whose rule matches in priority
//!   order, whatever its `HostSNI()`: so the catch-all's routes also belong to each of the
//!   object's names, and a wildcard's to the object's names one label under its parent, where
//!   the filter-chain plan (`tcp_match`) resolves priorities. A pattern's route reaches an
//!   exact name only where the pattern matches it (decided here, with the `regex` crate).

use std::collections::BTreeMap;

use super::hosts::{self, CATCH_ALL, covering_wildcard};
use super::tcp_match::Alternative;
use crate::dag::checks;
use crate::traefik::matches::HostMatch;
use crate::traefik::tcp::SniMatch;

/// The host name an alternative's `HostSNI()` or `HostSNIRegexp()` claims: an exact name,
/// `*.parent` or `*`.
pub fn claim(sni: &SniMatch) -> Result<String, String> {
    match sni {
        SniMatch::Exact(h) => checks::dns_name(h).map_err(|e| format!("host {h:?} {e}")),
        SniMatch::Any => Ok(CATCH_ALL.to_owned()),
        SniMatch::OneLabelUnder(parent) => {
            hosts::claim(&HostMatch::OneLabelUnder(parent.clone()), false)
        }
        // A pattern proved to match only names one label under a parent claims the wildcard;
        // any other (or one under a top-level domain, which no wildcard may claim) could
        // match any name: the catch-all.
        SniMatch::Regex(r) => Ok(r
            .parent
            .as_ref()
            .and_then(|p| hosts::claim(&HostMatch::OneLabelUnder(p.clone()), false).ok())
            .unwrap_or_else(|| CATCH_ALL.to_owned())),
    }
}

/// Adds to each host of one IngressRouteTCP the alternatives of its catch-all and of the
/// wildcard covering it (see the module documentation). On an exact name, a `HostSNIRegexp()`
/// alternative is decided now: kept without its pattern where the pattern's search finds the
/// name, dropped elsewhere.
pub fn spread(alternatives: &mut BTreeMap<String, Vec<Alternative>>) -> Result<(), String> {
    let any = alternatives.get(CATCH_ALL).cloned().unwrap_or_default();
    let wildcards: BTreeMap<String, Vec<Alternative>> = alternatives
        .iter()
        .filter(|(name, _)| name.starts_with("*."))
        .map(|(name, alts)| (name.clone(), alts.clone()))
        .collect();
    for (host, alts) in alternatives.iter_mut() {
        if host == CATCH_ALL {
            continue;
        }
        let mut added: Vec<Alternative> = Vec::new();
        if let Some(w) = covering_wildcard(host).and_then(|w| wildcards.get(&w)) {
            added.extend(w.iter().cloned());
        }
        added.extend(any.iter().cloned());
        if host.starts_with("*.") {
            alts.extend(added);
            continue;
        }
        for mut a in added {
            if let Some(r) = a.regex.take() {
                let found = r
                    .searcher
                    .is_match(host)
                    .map_err(|e| format!("spec.routes[{}].match: HostSNIRegexp(): {e}", a.route))?;
                if !found {
                    continue;
                }
            }
            alts.push(a);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::traefik::tcp::SniRegex;

    fn alt(route: usize, priority: i64) -> Alternative {
        Alternative {
            route,
            priority,
            alpn: None,
            source: None,
            regex: None,
        }
    }

    #[test]
    fn claims_the_catch_all_and_wildcards_and_refuses_regexes_and_tlds() {
        assert_eq!(claim(&SniMatch::Any).unwrap(), "*");
        assert_eq!(
            claim(&SniMatch::OneLabelUnder("Example.com".into())).unwrap(),
            "*.example.com"
        );
        assert_eq!(
            claim(&SniMatch::Exact("A.example.com".into())).unwrap(),
            "a.example.com"
        );
        let e = claim(&SniMatch::OneLabelUnder("com".into())).unwrap_err();
        assert!(e.contains("top-level domain"), "{e}");
        let regex = |p: &str| {
            let pattern = crate::traefik::regex::check(p).unwrap();
            let hir = crate::traefik::regex::parse(p).unwrap();
            SniMatch::Regex(SniRegex {
                pattern,
                parent: crate::traefik::regex::one_label_parent(&hir),
                searcher: crate::traefik::regex::Searcher::new(p),
            })
        };
        assert_eq!(
            claim(&regex("^[a-z0-9-]+\\.db\\.example\\.com$")).unwrap(),
            "*.db.example.com"
        );
        // It could match any name: the catch-all.
        assert_eq!(claim(&regex("db\\.example\\.com")).unwrap(), "*");
        assert_eq!(claim(&regex("^[a-z]+\\.example\\.com\\.?$")).unwrap(), "*");
        // No wildcard directly under a top-level domain: the catch-all.
        assert_eq!(claim(&regex("^[a-z]+\\.com$")).unwrap(), "*");
    }

    #[test]
    fn the_catch_all_and_a_covering_wildcard_reach_the_objects_own_names() {
        let mut alts = BTreeMap::from([
            ("*".to_owned(), vec![alt(0, -1)]),
            ("*.example.com".to_owned(), vec![alt(1, 20)]),
            ("a.example.com".to_owned(), vec![alt(2, 10)]),
            ("a.b.example.com".to_owned(), vec![alt(3, 10)]),
        ]);
        spread(&mut alts).unwrap();
        let routes = |h: &str| alts[h].iter().map(|a| a.route).collect::<Vec<_>>();
        assert_eq!(routes("*"), [0]);
        assert_eq!(routes("*.example.com"), [1, 0]);
        assert_eq!(routes("a.example.com"), [2, 1, 0]);
        // Two labels under the parent: not the wildcard's, as in Traefik.
        assert_eq!(routes("a.b.example.com"), [3, 0]);
    }
}
