//! Review 7: hostile-tenant findings on the claims record, as tests (each failed before its fix).
#![allow(clippy::unwrap_used, clippy::panic)]

use serde_json::json;

use super::{IncrementalDag, Selection, Validity};
use crate::snapshot::{ClusterSnapshot, Object};

fn tcp_route(ns: &str, name: &str, created: &str, rule: &str) -> Object {
    let v = json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP",
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
        "spec": {"routes": [{"match": rule, "services": [{"name": "db", "port": 5432}]}],
                 "tls": {"passthrough": true}},
    });
    Object::TraefikTcpRoute(crate::api::traefik::decode(v).unwrap())
}

/// R7.6: a name held by a `late` (HostSNIRegexp) or refused root ahead of a served younger
/// claimant of another namespace is recorded (`refused_ahead`), but not classed as crossing:
/// `Start::seeds` only asks whether a served root claims a covering wildcard or a name under
/// it, never the name itself, where `ClaimAges::seed_refused` moves the late holder behind. So
/// the name goes after every crossing name when the record is over its budget, and an attacker
/// who fills the budget with crossing names of two namespaces of its own (no one else's
/// crossing names are displaced: one turn per pair) takes the name at the next start.
#[test]
fn a_late_holders_name_is_kept_first_when_the_record_is_full() {
    use super::claim_ages_tests::step;
    use super::claim_record_tests::restart;
    const OLD: &str = "2020-01-01T00:00:00Z";
    const MID: &str = "2022-01-01T00:00:00Z";
    const NEW: &str = "2025-01-01T00:00:00Z";
    let flood = 3;
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    let victim = tcp_route(
        "victim",
        "db",
        OLD,
        "HostSNI(`v.example.com`) || HostSNIRegexp(`^[a-z]+\\.dbs\\.example\\.com$`)",
    );
    // evil's older object in namespace q, and its younger holder of the flood names in p.
    let q_before =
        super::claim_ages_tests::traefik_route("q", "old", MID, "Host(`q0.example.com`)");
    let names: Vec<String> = (0..flood).map(|i| format!("f{i}.example.com")).collect();
    let hosts = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("Host(`{n}`)"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    let p = super::claim_ages_tests::traefik_route("p", "new", NEW, &hosts(&names));
    step(&mut inc, &mut snap, vec![victim, q_before, p]);
    // Then: evil's younger claim on the victim's name, and q's old object edited to contest
    // p's names (crossing names of the pair (p, q)).
    let thief =
        super::claim_ages_tests::traefik_route("evil", "thief", NEW, "Host(`v.example.com`)");
    let q_after = super::claim_ages_tests::traefik_route("q", "old", MID, &hosts(&names));
    let s = step(&mut inc, &mut snap, vec![thief, q_after]);
    // The victim holds its name: evil's younger claim is refused naming it.
    let (v, d) = super::claim_ages_tests::verdict(&s, "evil/thief");
    println!("evil/thief: {v:?} {d}");
    assert_eq!(v, Validity::Invalid);
    assert!(d.contains("victim/db"), "{d}");

    let (full, dropped) = inc.claim_record(usize::MAX).unwrap();
    assert_eq!(dropped, 0);
    assert!(full.names.contains_key("v.example.com"), "{full:?}");
    // A budget with room for all but one holder line.
    let holder_line = |name: &str| {
        let first = &full.names[name][..1];
        serde_json::to_string(&(name, first)).unwrap().len() + 1
    };
    let budget = 12 + names.iter().map(|n| holder_line(n)).sum::<usize>() + 10;
    let (record, dropped) = inc.claim_record(budget).unwrap();
    println!(
        "record over budget {budget}: {:?}, dropped {dropped}",
        record.names.keys().collect::<Vec<_>>()
    );
    let again = restart(&snap, Some(&record));
    let victim = again
        .dag()
        .object_statuses
        .iter()
        .find(|st| st.namespace == "victim" && st.name == "db")
        .map(|st| st.description.clone())
        .unwrap();
    assert!(
        !victim.contains("evil/thief"),
        "after the restart, evil/thief holds v.example.com (victim/db: {victim}); the record kept \
         {:?} (evil's own crossing names) and left out v.example.com",
        record.names.keys().collect::<Vec<_>>()
    );
}
