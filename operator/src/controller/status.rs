//! Combining what several Gateway instances concluded about one IngressRoute into the one status
//! the object carries. Pure and deterministic, so two writers (or two runs) never disagree and the
//! status never flaps.

use std::collections::BTreeMap;

use crate::api::ingressroute::IngressRouteStatus;
use crate::dag::{Dag, Validity};
use crate::snapshot::ObjKey;

/// The status each judged IngressRoute should carry.
///
/// Rules: when every instance agrees, that status. Otherwise a problem wins (`invalid` from any
/// instance); then `valid` (an IngressRoute one instance serves is not orphaned because another
/// instance, with other root namespaces, cannot reach it); `orphaned` only when no instance
/// reaches it. Differing descriptions of the winning status are joined, each prefixed with its
/// Gateway, in Gateway order.
pub fn combine_statuses<'a>(
    dags: impl IntoIterator<Item = &'a Dag>,
) -> BTreeMap<ObjKey, IngressRouteStatus> {
    combine_verdicts(dags.into_iter().flat_map(|dag| {
        dag.statuses.iter().map(|s| {
            (
                ObjKey::new(s.namespace.clone(), s.name.clone()),
                dag.gateway.as_str(),
                s.current_status,
                s.description.as_str(),
            )
        })
    }))
}

/// The combination of [`combine_statuses`] over any verdicts: `(object, gateway, verdict,
/// description)`, by object. Used for Traefik objects too, whose verdicts are announced in
/// events (they have no status).
pub fn combine_verdicts<'a, K: Ord>(
    verdicts: impl IntoIterator<Item = (K, &'a str, Validity, &'a str)>,
) -> BTreeMap<K, IngressRouteStatus> {
    let mut seen: BTreeMap<K, Vec<(&'a str, Validity, &'a str)>> = BTreeMap::new();
    for (key, gateway, validity, description) in verdicts {
        seen.entry(key)
            .or_default()
            .push((gateway, validity, description));
    }
    seen.into_iter()
        .map(|(key, mut verdicts)| {
            verdicts.sort();
            let winner = [Validity::Invalid, Validity::Valid, Validity::Orphaned]
                .into_iter()
                .find(|v| verdicts.iter().any(|(_, w, _)| w == v))
                .unwrap_or(Validity::Orphaned);
            let winning: Vec<_> = verdicts.iter().filter(|(_, v, _)| *v == winner).collect();
            let all_same = winning.iter().all(|(_, _, d)| *d == winning[0].2);
            // A problem seen by some Gateways only names them: it is not true of the others
            // (review 7 R7.2: at another Gateway's start, an unnamed "already used by the
            // older" loss was read as its own and handed the name to a younger claimant).
            let everywhere = winning.len() == verdicts.len();
            let description = if all_same && (winner != Validity::Invalid || everywhere) {
                winning[0].2.to_owned()
            } else {
                winning
                    .iter()
                    .map(|(g, _, d)| format!("Gateway {g}: {d}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            (
                key,
                IngressRouteStatus {
                    current_status: winner.as_str().to_owned(),
                    description,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::RouteStatus;

    fn dag(gateway: &str, statuses: &[(&str, Validity, &str)]) -> Dag {
        Dag {
            gateway: gateway.into(),
            statuses: statuses
                .iter()
                .map(|(n, v, d)| RouteStatus {
                    namespace: "ns".into(),
                    name: (*n).into(),
                    current_status: *v,
                    description: (*d).into(),
                })
                .collect(),
            ..Dag::default()
        }
    }

    #[test]
    fn combination_is_deterministic_and_problems_win() {
        let a = dag(
            "a/gw",
            &[
                ("x", Validity::Valid, "valid IngressRoute"),
                ("y", Validity::Valid, "valid IngressRoute"),
                ("z", Validity::Orphaned, "o"),
            ],
        );
        let b = dag(
            "b/gw",
            &[
                ("x", Validity::Orphaned, "o"),
                ("y", Validity::Invalid, "bad"),
                ("z", Validity::Orphaned, "o"),
            ],
        );
        let c = dag(
            "c/gw",
            &[
                ("y", Validity::Invalid, "worse"),
                ("w", Validity::Invalid, "lost"),
                ("v", Validity::Invalid, "lost"),
            ],
        );
        let d = dag("d/gw", &[("w", Validity::Valid, "valid IngressRoute")]);
        let one = combine_statuses([&a, &b, &c, &d]);
        let other = combine_statuses([&d, &c, &b, &a]);
        assert_eq!(one, other);
        let get = |n: &str| {
            let s = &one[&ObjKey::new("ns", n)];
            (s.current_status.as_str(), s.description.as_str())
        };
        assert_eq!(get("x"), ("valid", "valid IngressRoute"));
        assert_eq!(
            get("y"),
            ("invalid", "Gateway b/gw: bad; Gateway c/gw: worse")
        );
        assert_eq!(get("z"), ("orphaned", "o"));
        // Invalid on one Gateway, valid on another: the problem names its Gateway.
        assert_eq!(get("w"), ("invalid", "Gateway c/gw: lost"));
        // Judged by one Gateway only: its words, as Contour wrote them.
        assert_eq!(get("v"), ("invalid", "lost"));
    }
}
