//! Claim dates across a restart: the record a process exports, imported by the next one before
//! its first build, keeps every refused claim refused and every holder holding.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use super::claim_ages_tests::{NEW, OLD, contour_root, owner, step, traefik_route, verdict};
use super::{ClaimRecord, IncrementalDag, Selection, Validity, build_aged};
use crate::snapshot::{ChangeSet, ClusterSnapshot, Object};

pub(super) const BUDGET: usize = 900 * 1024;

/// A process that starts on `snap`, having read `record` (through its JSON) or none.
pub(super) fn restart(snap: &ClusterSnapshot, record: Option<&ClaimRecord>) -> IncrementalDag {
    let sel = Selection::default_instance();
    let mut inc = IncrementalDag::new(sel.clone());
    if let Some(record) = record {
        let text = serde_json::to_string(record).unwrap();
        assert!(inc.import_claims(serde_json::from_str(&text).unwrap()));
    }
    let changes = ChangeSet::diff(&ClusterSnapshot::default(), snap);
    inc.update(&Arc::new(snap.clone()), &sel, &changes);
    assert_eq!(*inc.dag(), build_aged(snap, &sel, inc.claim_ages()));
    // A record imported after the first build is refused.
    assert!(!inc.import_claims(ClaimRecord::default()));
    inc
}

pub(super) fn validity(inc: &IncrementalDag, key: &str) -> Validity {
    let dag = inc.dag();
    let routes = dag
        .statuses
        .iter()
        .map(|s| (&s.namespace, &s.name, s.current_status));
    let objects = (dag.object_statuses.iter()).map(|s| (&s.namespace, &s.name, s.current_status));
    routes
        .chain(objects)
        .map(|(ns, name, v)| (format!("{ns}/{name}"), v))
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no status for {key}"))
}

/// A victim holding `h.example.com` and an older object of `evil` edited to claim it: refused.
fn hijack_refused(evil_before: Object, evil_after: Object) -> (IncrementalDag, ClusterSnapshot) {
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("victim", "site", NEW, "h.example.com"),
            evil_before,
        ],
    );
    let s = step(&mut inc, &mut snap, vec![evil_after]);
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    assert_eq!(verdict(&s, "evil/old").0, Validity::Invalid, "{s:?}");
    (inc, snap)
}

#[test]
fn a_refused_contour_claim_stays_refused_after_a_restart_with_the_record() {
    let (inc, snap) = hijack_refused(
        contour_root("evil", "old", OLD, "mine.example.com"),
        contour_root("evil", "old", OLD, "h.example.com"),
    );
    let (record, dropped) = inc.claim_record(BUDGET).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(record.names.len(), 1, "{record:?}");
    let claims = &record.names["h.example.com"];
    assert_eq!(claims[0].name, "site");
    assert_eq!(claims[1].name, "old");
    assert!(claims[1].since > claims[0].since);

    let after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    assert_eq!(validity(&after, "evil/old"), Validity::Invalid);
    assert_eq!(validity(&after, "victim/site"), Validity::Valid);
    // The restarted process records the same thing: nothing to write again.
    assert_eq!(after.claim_record(BUDGET).unwrap().0, record);
    // Without the record (no status either), the older object takes the name.
    let bare = restart(&snap, None);
    assert_eq!(owner(&bare, "h.example.com"), "evil/old");
}

#[test]
fn a_refused_traefik_claim_stays_refused_after_a_restart_with_the_record() {
    let (inc, snap) = hijack_refused(
        traefik_route("evil", "old", OLD, "Host(`mine.example.com`)"),
        traefik_route(
            "evil",
            "old",
            OLD,
            "Host(`h.example.com`) || Host(`mine.example.com`)",
        ),
    );
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    // `mine.example.com` is evil's alone: not recorded.
    assert_eq!(record.names.keys().collect::<Vec<_>>(), ["h.example.com"]);
    let after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    assert_eq!(validity(&after, "evil/old"), Validity::Invalid);
    let bare = restart(&snap, None);
    // Without the record, the older object takes the name.
    assert_eq!(validity(&bare, "victim/site"), Validity::Invalid);
}

#[test]
fn a_wildcard_edited_over_a_held_name_stays_behind_it_after_a_restart() {
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("victim", "site", NEW, "h.example.com"),
            traefik_route("evil", "old", OLD, "Host(`mine.example.com`)"),
        ],
    );
    step(
        &mut inc,
        &mut snap,
        vec![traefik_route("evil", "old", OLD, "Host(`*.example.com`)")],
    );
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    // Nobody else claims either name: only their comparison needs the dates.
    assert_eq!(
        record.names.keys().collect::<Vec<_>>(),
        ["*.example.com", "h.example.com"]
    );
    let after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    assert_eq!(validity(&after, "victim/site"), Validity::Valid);
    let bare = restart(&snap, None);
    assert_eq!(validity(&bare, "victim/site"), Validity::Invalid);
}

#[test]
fn a_claim_made_while_no_process_watched_comes_after_the_recorded_ones() {
    let (inc, mut snap) = hijack_refused(
        contour_root("evil", "old", OLD, "mine.example.com"),
        contour_root("evil", "old", OLD, "h.example.com"),
    );
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    // While down, another old object of evil's claims the name too.
    snap.apply(traefik_route(
        "evil",
        "older",
        "2020-01-01T00:00:00Z",
        "Host(`h.example.com`)",
    ));
    let after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    assert_eq!(validity(&after, "evil/older"), Validity::Invalid);
    assert_eq!(validity(&after, "evil/old"), Validity::Invalid);
    // The waiting order is kept too: `old` waited first.
    let names = &after.claim_record(BUDGET).unwrap().0.names["h.example.com"];
    let order: Vec<&str> = names.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(order, ["site", "old", "older"]);
}

#[test]
fn a_recorded_claim_of_an_object_that_no_longer_claims_the_name_is_ignored() {
    let (inc, mut snap) = hijack_refused(
        contour_root("evil", "old", OLD, "mine.example.com"),
        contour_root("evil", "old", OLD, "h.example.com"),
    );
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    // While down, evil withdrew its claim; later it claims the name again.
    snap.apply(contour_root("evil", "old", OLD, "mine.example.com"));
    let mut after = restart(&snap, Some(&record));
    let mut clean = restart(&snap, None);
    assert_eq!(after.claim_ages(), clean.claim_ages());
    for inc in [&mut after, &mut clean] {
        let mut s = snap.clone();
        let v = step(
            inc,
            &mut s,
            vec![contour_root("evil", "old", OLD, "h.example.com")],
        );
        assert_eq!(verdict(&v, "evil/old").0, Validity::Invalid);
    }
}

#[test]
fn names_whose_order_needs_no_dates_are_not_recorded() {
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    // Standing contests, and a younger object claiming a held name: creation order agrees.
    step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("a", "first", OLD, "h.example.com"),
            contour_root("b", "second", NEW, "h.example.com"),
        ],
    );
    step(
        &mut inc,
        &mut snap,
        vec![traefik_route("c", "third", NEW, "Host(`h.example.com`)")],
    );
    assert_eq!(
        inc.claim_record(BUDGET).unwrap(),
        (ClaimRecord::default(), 0)
    );
}

#[test]
fn a_tenant_making_thousands_of_contests_crowds_out_only_its_own() {
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    let names: Vec<String> = (0..300).map(|i| format!("n{i}.evil.example")).collect();
    let mut objects: Vec<Object> = names
        .iter()
        .enumerate()
        .map(|(i, n)| contour_root("evil", &format!("holder{i}"), NEW, n))
        .collect();
    let old = |i: usize, host: &str| traefik_route("evil", &format!("old{i}"), OLD, host);
    objects.extend((0..names.len()).map(|i| old(i, &format!("Host(`x{i}.evil.example`)"))));
    objects.push(contour_root("victim", "site", NEW, "h.example.com"));
    objects.push(contour_root("other", "old", OLD, "other.example.com"));
    step(&mut inc, &mut snap, objects);
    let mut edits: Vec<Object> = (names.iter().enumerate())
        .map(|(i, n)| old(i, &format!("Host(`{n}`)")))
        .collect();
    edits.push(contour_root("other", "old", OLD, "h.example.com"));
    step(&mut inc, &mut snap, edits);
    let (full, dropped) = inc.claim_record(BUDGET).unwrap();
    assert_eq!((full.names.len(), dropped), (301, 0));
    let size = |r: &ClaimRecord| serde_json::to_string(r).unwrap().len();
    let budget = size(&full) / 3;
    let (capped, dropped) = inc.claim_record(budget).unwrap();
    assert!(size(&capped) <= budget, "{} > {budget}", size(&capped));
    assert!(dropped > 150, "{dropped}");
    assert!(capped.names.len() <= 301 && capped.names.len() + dropped >= 301);
    assert!(capped.names.contains_key("h.example.com"));
}

/// Review 4 F3.1: a tenant whose old Traefik route (no status to seed a restart from) lost a
/// contest for another tenant's name makes thousands of contests on its own names, named to
/// sort before the victim's and charged to the same namespace, to push the victim's name out
/// of a record over its budget, so that at the next start its older route takes the name.
#[test]
fn self_contests_named_to_sort_first_cannot_push_out_a_lost_contest() {
    let (mut inc, mut snap) = hijack_refused(
        traefik_route("evil", "old", OLD, "Host(`mine.example.com`)"),
        traefik_route("evil", "old", OLD, "Host(`h.example.com`)"),
    );
    // Entries smaller than the victim's, so that none of the victim's fits where one of them
    // did not.
    let names: Vec<String> = (0..300).map(|i| format!("a{i}.e")).collect();
    let mut objects: Vec<Object> = (names.iter().enumerate())
        .map(|(i, n)| contour_root("evil", &format!("h{i}"), NEW, n))
        .collect();
    let old = |i: usize, host: &str| traefik_route("evil", &format!("o{i}"), OLD, host);
    objects.extend((0..names.len()).map(|i| old(i, &format!("Host(`x{i}.e`)"))));
    step(&mut inc, &mut snap, objects);
    let edits: Vec<Object> = (names.iter().enumerate())
        .map(|(i, n)| old(i, &format!("Host(`{n}`)")))
        .collect();
    step(&mut inc, &mut snap, edits);
    let (full, dropped) = inc.claim_record(BUDGET).unwrap();
    assert_eq!((full.names.len(), dropped), (301, 0));
    let size = |r: &ClaimRecord| serde_json::to_string(r).unwrap().len();
    // Room for a fifth of the record: most of evil's own contests go.
    let (capped, dropped) = inc.claim_record(size(&full) / 5).unwrap();
    assert!(dropped > 200, "{dropped}");
    // The victim's name keeps at least its holder (every holder goes in before any line).
    assert_eq!(
        capped
            .names
            .get("h.example.com")
            .map(|c| c[0].name.as_str()),
        Some("site"),
        "{:?}",
        capped.names.keys().take(5).collect::<Vec<_>>()
    );
    let after = restart(&snap, Some(&capped));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    assert_eq!(validity(&after, "evil/old"), Validity::Invalid);
    // With room for holders alone, every name keeps its holder.
    let holders: usize = (full.names.iter())
        .map(|(n, c)| serde_json::to_string(&(n, &c[..1])).unwrap().len() + 1)
        .sum::<usize>()
        + 12;
    let (holders_only, dropped) = inc.claim_record(holders).unwrap();
    assert_eq!(holders_only.names.len(), 301);
    assert!(dropped > 250, "{dropped}");
    let after = restart(&snap, Some(&holders_only));
    for (i, n) in names.iter().enumerate() {
        assert_eq!(owner(&after, n), format!("evil/h{i}"));
    }
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
}

/// Random edits of a few roots of both dialects over a few names (a wildcard among them): after
/// every step, a process started on the same objects with the record builds the same DAG.
#[test]
fn a_restart_with_the_record_builds_what_the_running_process_built() {
    let hosts = [
        "h1.ex.com",
        "h2.ex.com",
        "a.h1.ex.com",
        "*.ex.com",
        "*.h1.ex.com",
    ];
    let created = [OLD, NEW, "2023-03-03T00:00:00Z"];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % n as u64).unwrap()
    };
    let mut recorded = 0;
    for _run in 0..30 {
        let mut inc = IncrementalDag::new(Selection::default_instance());
        let mut snap = ClusterSnapshot::default();
        for step_no in 0..12 {
            let mut objects = Vec::new();
            for _ in 0..1 + next(2) {
                let name = format!("r{}", next(5));
                let ns = ["a", "b"][next(2)];
                let when = created[next(created.len())];
                let host = hosts[next(hosts.len())];
                let object = if next(2) == 0 && !host.starts_with('*') {
                    contour_root(ns, &name, when, host)
                } else {
                    let other = hosts[next(hosts.len())];
                    let mut rule = format!("Host(`{host}`) || Host(`{other}`)");
                    if next(4) == 0 {
                        // Refused while parsing: it still claims both hosts.
                        rule = format!("({rule}) && SomeFutureMatcher(`x`)");
                    }
                    traefik_route(ns, &format!("t{name}"), when, &rule)
                };
                objects.push(object);
            }
            step(&mut inc, &mut snap, objects);
            let (record, dropped) = inc.claim_record(BUDGET).unwrap();
            assert_eq!(dropped, 0);
            recorded += usize::from(!record.is_empty());
            let after = restart(&snap, Some(&record));
            assert_eq!(
                *after.dag(),
                *inc.dag(),
                "step {step_no}, record {record:?}"
            );
        }
    }
    // Not vacuous: many steps had contests to record.
    assert!(recorded > 30, "{recorded}");
}

/// A tenant cannot push another tenant's contested name out of the record: neither by piling
/// claimants onto it (only the first `MAX_CLAIMANTS` are recorded, the holder and the refused
/// old object among them), nor by contesting many of the victim's names (each is charged to
/// the namespace whose claim made it need a record, not to the holder's).
#[test]
fn a_tenant_cannot_push_another_tenants_name_out_of_the_record() {
    let (mut inc, mut snap) = hijack_refused(
        contour_root("evil", "old", OLD, "mine.example.com"),
        contour_root("evil", "old", OLD, "h.example.com"),
    );
    // Many younger claimants of the victim's name.
    let pile: Vec<Object> = (0..60)
        .map(|i| {
            contour_root(
                "evil",
                &format!("pile{i}"),
                "2026-01-01T00:00:00Z",
                "h.example.com",
            )
        })
        .collect();
    step(&mut inc, &mut snap, pile);
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    let claims = &record.names["h.example.com"];
    assert!(
        claims.len() <= super::claim_record::MAX_CLAIMANTS,
        "{}",
        claims.len()
    );
    assert_eq!(
        (claims[0].name.as_str(), claims[1].name.as_str()),
        ("site", "old")
    );
    let after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    assert_eq!(validity(&after, "evil/old"), Validity::Invalid);

    // The victim also holds 100 names that evil's old objects were edited to claim, and one
    // contested by another team (`z.example.com`, last by name).
    let mut objects = Vec::new();
    for i in 0..100 {
        objects.push(contour_root(
            "victim",
            &format!("v{i}"),
            NEW,
            &format!("v{i}.example.com"),
        ));
        objects.push(contour_root(
            "evil",
            &format!("e{i}"),
            OLD,
            &format!("e{i}.evil.example"),
        ));
    }
    objects.push(contour_root("victim", "z", NEW, "z.example.com"));
    objects.push(contour_root("other", "z", OLD, "o.example.com"));
    step(&mut inc, &mut snap, objects);
    let mut edits: Vec<Object> = (0..100)
        .map(|i| contour_root("evil", &format!("e{i}"), OLD, &format!("v{i}.example.com")))
        .collect();
    edits.push(contour_root("other", "z", OLD, "z.example.com"));
    step(&mut inc, &mut snap, edits);
    let (full, dropped) = inc.claim_record(BUDGET).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(full.names.len(), 102);
    let size = |r: &ClaimRecord| serde_json::to_string(r).unwrap().len();
    let (capped, dropped) = inc.claim_record(size(&full) / 2).unwrap();
    assert!(dropped > 40, "{dropped}");
    assert!(
        capped.names.contains_key("z.example.com"),
        "{:?}",
        capped.names.keys()
    );
}

/// A record's dates count by their order only: a forged one (`u64::MAX`) cannot make every
/// later claim tie with every other, which would let an old object edited to claim a name held
/// since the start win by creation time again.
#[test]
fn a_forged_date_in_the_record_does_not_switch_dating_off() {
    let (inc, mut snap) = hijack_refused(
        contour_root("evil", "old", OLD, "mine.example.com"),
        contour_root("evil", "old", OLD, "h.example.com"),
    );
    let (mut record, _) = inc.claim_record(BUDGET).unwrap();
    for c in record.names.values_mut().flatten().filter(|c| c.since > 0) {
        c.since = u64::MAX;
    }
    snap.apply(contour_root("evil", "old2", OLD, "other.evil.example"));
    let mut after = restart(&snap, Some(&record));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    // A name claimed after the start, then an old object edited to claim it: refused.
    step(
        &mut after,
        &mut snap,
        vec![contour_root("victim", "fresh", NEW, "fresh.example.com")],
    );
    let s = step(
        &mut after,
        &mut snap,
        vec![contour_root("evil", "old2", OLD, "fresh.example.com")],
    );
    assert_eq!(owner(&after, "fresh.example.com"), "victim/fresh");
    assert_eq!(verdict(&s, "evil/old2").0, Validity::Invalid, "{s:?}");
}

/// A record a newer version wrote may hold claims of a kind of root this version does not
/// know: they are ignored, and the known claims keep their order.
#[test]
fn a_recorded_claim_of_an_unknown_kind_is_ignored() {
    let (inc, snap) = hijack_refused(
        contour_root("evil", "old", OLD, "mine.example.com"),
        contour_root("evil", "old", OLD, "h.example.com"),
    );
    let (record, _) = inc.claim_record(BUDGET).unwrap();
    let mut text: serde_json::Value = serde_json::to_value(&record).unwrap();
    let claims = text["names"]["h.example.com"].as_array_mut().unwrap();
    claims.insert(
        0,
        serde_json::json!({"kind": "someNewKind", "namespace": "evil", "name": "old",
                           "since": 1, "note": "from a newer version"}),
    );
    let newer: ClaimRecord = serde_json::from_value(text).unwrap();
    let after = restart(&snap, Some(&newer));
    assert_eq!(owner(&after, "h.example.com"), "victim/site");
    assert_eq!(validity(&after, "evil/old"), Validity::Invalid);
}

/// review5 R5.1: the lost contest need not be on the victim's name. An old object of `evil`
/// edited to claim a wildcard over a name the victim serves (`*.example.com` over
/// `h.example.com`) is recorded as a pair; the wildcard's line is charged to `evil` and its
/// holder is `evil`, so `evil`'s self-contests named to sort before `*.example.com` push the
/// wildcard out of a record over its budget, and at the next start the wildcard, older by
/// creation time, covers the victim's name.
#[test]
fn self_contests_cannot_push_out_a_wildcard_over_another_tenants_name() {
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    step(
        &mut inc,
        &mut snap,
        vec![
            contour_root("victim", "site", NEW, "h.example.com"),
            traefik_route("evil", "old", OLD, "Host(`mine.example.com`)"),
        ],
    );
    step(
        &mut inc,
        &mut snap,
        vec![traefik_route("evil", "old", OLD, "Host(`*.example.com`)")],
    );
    assert_eq!(owner(&inc, "h.example.com"), "victim/site");
    assert_eq!(validity(&inc, "victim/site"), Validity::Valid);
    // Self-contests on wildcards of evil's own, sorting before `*.example.com`.
    let names: Vec<String> = (0..300).map(|i| format!("*.a{i}.e")).collect();
    let new = |i: usize, host: &str| traefik_route("evil", &format!("h{i}"), NEW, host);
    let old = |i: usize, host: &str| traefik_route("evil", &format!("o{i}"), OLD, host);
    let mut objects: Vec<Object> = (names.iter().enumerate())
        .map(|(i, n)| new(i, &format!("Host(`{n}`)")))
        .collect();
    objects.extend((0..names.len()).map(|i| old(i, &format!("Host(`x{i}.e`)"))));
    step(&mut inc, &mut snap, objects);
    let edits: Vec<Object> = (names.iter().enumerate())
        .map(|(i, n)| old(i, &format!("Host(`{n}`)")))
        .collect();
    step(&mut inc, &mut snap, edits);
    let (full, dropped) = inc.claim_record(BUDGET).unwrap();
    assert_eq!(dropped, 0);
    assert!(
        full.names.contains_key("*.example.com"),
        "{:?}",
        full.names.keys().last()
    );
    // With the whole record, the victim keeps its name at the next start.
    let after = restart(&snap, Some(&full));
    assert_eq!(validity(&after, "victim/site"), Validity::Valid);
    let size = |r: &ClaimRecord| serde_json::to_string(r).unwrap().len();
    let (capped, dropped) = inc.claim_record(size(&full) / 5).unwrap();
    assert!(dropped > 200, "{dropped}");
    let after = restart(&snap, Some(&capped));
    let victim = verdict_of(&after, "victim/site");
    assert!(
        capped.names.contains_key("*.example.com") && victim.0 == Validity::Valid,
        "wildcard recorded: {}; the victim after a restart: {victim:?}; h.example.com served by {:?}",
        capped.names.contains_key("*.example.com"),
        owner(&after, "h.example.com"),
    );
}

fn verdict_of(inc: &IncrementalDag, key: &str) -> (Validity, String) {
    let dag = inc.dag();
    (dag.statuses.iter())
        .find(|s| format!("{}/{}", s.namespace, s.name) == key)
        .map(|s| (s.current_status, s.description.clone()))
        .unwrap_or_else(|| panic!("no status for {key}"))
}

/// review5 R5.2: a tenant that contests every name of the Gateway (old objects edited to claim
/// them: refused, harmless while running) made the tenant holding the most names sort last, so
/// a record over its budget dropped exactly that tenant's names, and at the next start the
/// older objects took them. A budget too small for every contested name must lose some; it
/// keeps each holder namespace's names in turns, so no tenant keeps a second name while
/// another loses its first.
#[test]
fn a_record_too_small_for_every_contested_name_keeps_each_tenants_names_in_turns() {
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    let small: Vec<String> = (0..30).map(|i| format!("s{i}.small.example")).collect();
    let big: Vec<String> = (0..3).map(|i| format!("b{i}.big.example")).collect();
    let mut objects: Vec<Object> = (small.iter().enumerate())
        .map(|(i, n)| contour_root(&format!("t{i}"), "site", NEW, n))
        .collect();
    objects.extend(
        (big.iter().enumerate()).map(|(i, n)| contour_root("big", &format!("site{i}"), NEW, n)),
    );
    let all: Vec<&String> = small.iter().chain(big.iter()).collect();
    let old = |i: usize, host: &str| traefik_route("evil", &format!("o{i}"), OLD, host);
    objects.extend((0..all.len()).map(|i| old(i, &format!("Host(`x{i}.evil.example`)"))));
    step(&mut inc, &mut snap, objects);
    let edits: Vec<Object> = (all.iter().enumerate())
        .map(|(i, n)| old(i, &format!("Host(`{n}`)")))
        .collect();
    step(&mut inc, &mut snap, edits);
    for n in &big {
        assert!(owner(&inc, n).starts_with("big/"), "{n}");
    }
    let (full, dropped) = inc.claim_record(BUDGET).unwrap();
    assert_eq!((full.names.len(), dropped), (all.len(), 0));
    let size = |r: &ClaimRecord| serde_json::to_string(r).unwrap().len();
    let (capped, dropped) = inc.claim_record(size(&full) / 3).unwrap();
    assert!(dropped > 0);
    let after = restart(&snap, Some(&capped));
    let kept = |names: &[String], prefix: char| {
        (names.iter())
            .filter(|n| owner(&after, n).starts_with(prefix))
            .count()
    };
    let (big_kept, small_kept) = (kept(&big, 'b'), kept(&small, 't'));
    assert!(small_kept > 0 && small_kept < small.len(), "{small_kept}");
    assert_eq!(
        big_kept,
        1,
        "the tenant holding three names keeps its first one, and only that one while \
         {} one-name tenants lose theirs",
        small.len() - small_kept
    );
    // Exactly the names the record left out were lost.
    for (n, tenant) in (small.iter().map(|n| (n, 't'))).chain(big.iter().map(|n| (n, 'b'))) {
        let lost = !owner(&after, n).starts_with(tenant);
        assert_eq!(lost, !capped.names.contains_key(n.as_str()), "{n}");
    }
    assert!(dropped >= small.len() - small_kept + big.len() - big_kept);
}

/// The names a record needs are kept per change (`claim_record::NeededNames`): a name under a
/// wildcard whose oldest claimant is refused becoming served changes how that claimant goes at
/// a start (behind every dated claim), so how it compares with every other name under it.
#[test]
fn a_name_served_under_a_refused_wildcard_compares_every_other_name_again() {
    let refused = |host: &str| format!("Host(`{host}`) && SomeFutureMatcher(`x`)");
    let mut inc = IncrementalDag::new(Selection::default_instance());
    let mut snap = ClusterSnapshot::default();
    let record = |inc: &IncrementalDag| {
        let record = inc.claim_record(BUDGET);
        assert_eq!(record, inc.claim_record_from_scratch(BUDGET));
        record.unwrap().0
    };
    step(
        &mut inc,
        &mut snap,
        vec![
            traefik_route("w", "wild", OLD, &refused("*.example.com")),
            traefik_route("b", "refused", NEW, &refused("b.example.com")),
        ],
    );
    assert!(record(&inc).is_empty());
    step(
        &mut inc,
        &mut snap,
        vec![contour_root("z", "served", NEW, "z.example.com")],
    );
    let names: Vec<String> = record(&inc).names.into_keys().collect();
    assert_eq!(names, ["*.example.com", "b.example.com"]);
}
