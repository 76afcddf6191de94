//! Review 7: hostile-tenant findings on the claims record, as tests (each failed before its fix).
#![allow(clippy::unwrap_used, clippy::panic)]

use serde_json::json;

use std::sync::Arc;

use super::{IncrementalDag, Selection, Validity};
use crate::controller::status::combine_statuses;
use crate::snapshot::{ChangeSet, ClusterSnapshot, ObjKey, Object};

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

fn contour_root(ns: &str, name: &str, created: &str, fqdn: &str) -> serde_json::Value {
    json!({
        "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created,
                     "uid": format!("uid-{ns}-{name}"),
                     "annotations": {"kubernetes.io/ingress.class": "shared"}},
        "spec": {"virtualhost": {"fqdn": fqdn}, "routes": []},
    })
}

fn obj(v: &serde_json::Value) -> Object {
    Object::IngressRoute(serde_json::from_value(v.clone()).unwrap())
}

fn gateway(name: &str, roots: &[&str]) -> Selection {
    Selection {
        gateway: ObjKey::new("sluice-system", name),
        ingress_class: Some("shared".into()),
        root_namespaces: roots.iter().map(|s| (*s).to_owned()).collect(),
        ..Selection::default_instance()
    }
}

fn owner(inc: &IncrementalDag, fqdn: &str) -> String {
    let vh = inc.dag().virtual_hosts.iter().find(|v| v.fqdn == fqdn);
    vh.map_or_else(String::new, |v| v.owner.clone())
}

/// R7.2: a Contour root selected by two Gateways (same class) that lost its name on one of
/// them only carries, combined, that Gateway's "already used by the older" status. At the other
/// Gateway's next start (a leader change, with that Gateway's claims record), the status puts
/// the root behind a younger claimant there, which takes the name.
#[test]
fn a_loss_on_one_gateway_does_not_hand_the_name_to_a_younger_claimant_on_another() {
    const OLD: &str = "2020-01-01T00:00:00Z";
    const MID: &str = "2022-01-01T00:00:00Z";
    const NEW: &str = "2025-01-01T00:00:00Z";
    let h = "h.example.com";
    // g1 selects team `early` (an older root for h) and the victim; g2 the victim and evil.
    let g1 = gateway("g1", &["early", "victim"]);
    let g2 = gateway("g2", &["victim", "evil"]);
    let early = contour_root("early", "x", OLD, h);
    let mut victim = contour_root("victim", "site", MID, h);
    let evil = contour_root("evil", "late", NEW, h);

    let mut snap = ClusterSnapshot::default();
    for o in [&early, &victim] {
        snap.apply(obj(o));
    }
    let snap0 = Arc::new(snap.clone());
    let mut inc1 = IncrementalDag::new(g1.clone());
    let mut inc2 = IncrementalDag::new(g2.clone());
    inc1.update(
        &snap0,
        &g1,
        &ChangeSet::diff(&ClusterSnapshot::default(), &snap0),
    );
    inc2.update(
        &snap0,
        &g2,
        &ChangeSet::diff(&ClusterSnapshot::default(), &snap0),
    );
    // evil claims h later: on g2 it is younger than the victim, and refused.
    let before = snap.clone();
    snap.apply(obj(&evil));
    let snap1 = Arc::new(snap.clone());
    inc1.update(&snap1, &g1, &ChangeSet::diff(&before, &snap1));
    inc2.update(&snap1, &g2, &ChangeSet::diff(&before, &snap1));
    assert_eq!(owner(&inc1, h), "early/x");
    assert_eq!(owner(&inc2, h), "victim/site");

    // The leader writes the combined status on the victim's root.
    let combined = combine_statuses([inc1.dag(), inc2.dag()]);
    let status = combined[&ObjKey::new("victim", "site")].clone();
    assert_eq!(status.current_status, "invalid");
    println!("victim's combined status: {}", status.description);
    victim["status"] = json!({"currentStatus": status.current_status,
                              "description": status.description});
    let before = snap.clone();
    snap.apply(obj(&victim));

    // g2's record, as its leader would write it.
    let (record2, _) = inc2.claim_record(900 * 1024).unwrap();
    println!("g2's record: {record2:?}");

    // g2's leader changes: a new process imports the record and builds.
    let mut restarted = IncrementalDag::new(g2.clone());
    restarted.import_claims(record2);
    let snap2 = Arc::new(snap.clone());
    restarted.update(
        &snap2,
        &g2,
        &ChangeSet::diff(&ClusterSnapshot::default(), &snap2),
    );
    let _ = before;
    let verdict = restarted
        .dag()
        .statuses
        .iter()
        .find(|s| s.namespace == "victim")
        .map(|s| (s.current_status, s.description.clone()))
        .unwrap();
    assert_eq!(
        owner(&restarted, h),
        "victim/site",
        "after g2's restart, the younger evil/late holds {h} on g2; the victim is now {verdict:?}"
    );
    assert_eq!(verdict.0, Validity::Valid);
}
