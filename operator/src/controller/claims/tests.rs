#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::dag::{RecordedClaim, RecordedKind};

fn record(holder: &str) -> ClaimRecord {
    let claim = |name: &str, since| RecordedClaim {
        kind: RecordedKind::Contour,
        namespace: "ns".into(),
        name: name.into(),
        uid: Some(format!("uid-{name}")),
        since,
    };
    let other = if holder == "a" { "b" } else { "a" };
    ClaimRecord {
        names: BTreeMap::from([(
            "h.example.com".to_owned(),
            vec![claim(holder, 1), claim(other, 2)],
        )]),
    }
}

fn term(holder: &str, transitions: i32) -> LeaseTerm {
    LeaseTerm {
        lease_uid: "lease-1".into(),
        holder: holder.into(),
        transitions,
    }
}

fn stored(record: ClaimRecord, by: Option<&LeaseTerm>) -> Found {
    Found::Record {
        record,
        written_by: by.map(WrittenBy::of),
        resource_version: "7".into(),
    }
}

#[test]
fn a_leader_writes_over_a_record_of_its_own_or_an_earlier_term_only() {
    let (old, new) = (term("pod-a", 3), term("pod-b", 4));
    let mine = record("a");
    // Nothing stored: created (409 if it appears meanwhile).
    assert_eq!(decide(&Found::Absent, &mine, &old), Decision::Create);
    // Nothing to record and nothing stored: nothing to write.
    let empty = ClaimRecord::default();
    assert_eq!(decide(&Found::Absent, &empty, &old), Decision::Stored);
    // Another record of an earlier term, of its own, or of none (an earlier version): written
    // over on condition that it is still the one read.
    for by in [Some(&old), Some(&new), None] {
        let found = stored(record("b"), by);
        assert_eq!(decide(&found, &mine, &new), Decision::Replace("7".into()));
    }
    // A former leader (term 3) never writes over the record of term 4.
    let found = stored(record("b"), Some(&new));
    assert_eq!(decide(&found, &mine, &old), Decision::Newer);
    // Same record of the same term: nothing to write.
    let found = stored(mine.clone(), Some(&old));
    assert_eq!(decide(&found, &mine, &old), Decision::Stored);
    // Same record of an earlier term (or of none): stamped with this term once, so that a
    // write of the earlier term still in flight fails.
    let found = stored(mine.clone(), Some(&old));
    assert_eq!(decide(&found, &mine, &new), Decision::Replace("7".into()));
    let found = stored(mine.clone(), None);
    assert_eq!(decide(&found, &mine, &new), Decision::Replace("7".into()));
    // Terms of another Lease (deleted and created again: transitions restart) do not compare.
    let other_lease = LeaseTerm {
        lease_uid: "lease-2".into(),
        ..term("pod-b", 0)
    };
    let found = stored(record("b"), Some(&new));
    assert_eq!(
        decide(&found, &mine, &other_lease),
        Decision::OtherLease("7".into())
    );
    // Nor the other way round: a leader of a deleted Lease, whatever its transitions, never
    // takes a record stamped under another Lease for one it may write over without reading
    // the Lease (which tells whether its own or the record's was deleted).
    let found = stored(mine.clone(), Some(&other_lease));
    for t in [old.clone(), new.clone(), term("pod-a", 1000)] {
        assert_eq!(decide(&found, &mine, &t), Decision::OtherLease("7".into()));
    }
}

#[test]
fn a_config_map_not_owned_by_the_gateway_is_never_written() {
    let found = Found::Unusable {
        owned: false,
        resource_version: "3".into(),
    };
    assert_eq!(
        decide(&found, &record("a"), &term("pod-a", 9)),
        Decision::Foreign
    );
    // An unusable one the Gateway owns (another format, corrupt) is written over, on condition.
    let found = Found::Unusable {
        owned: true,
        resource_version: "3".into(),
    };
    assert_eq!(
        decide(&found, &record("a"), &term("pod-a", 9)),
        Decision::Replace("3".into())
    );
}

#[test]
fn the_stored_record_names_its_writer_and_reads_back() {
    let s = Stored {
        format: FORMAT.into(),
        gateway: "ns/gw".into(),
        written_by: Some(WrittenBy::of(&term("pod-a", 2))),
        record: record("a"),
    };
    let text = serde_json::to_string(&s).unwrap();
    assert!(
        text.contains(
            r#""writtenBy":{"leaseUid":"lease-1","holder":"pod-a","leaseTransitions":2}"#
        ),
        "{text}"
    );
    let back: Stored = serde_json::from_str(&text).unwrap();
    assert_eq!(back.written_by, s.written_by);
    // A record of an earlier version (no writer, no uids) still reads.
    let old = r#"{"format":"sluice.dev/claims/v1","gateway":"ns/gw","record":{"names":{"h":[{"kind":"contour","namespace":"ns","name":"a","since":1}]}}}"#;
    let back: Stored = serde_json::from_str(old).unwrap();
    assert_eq!(back.written_by, None);
    assert_eq!(back.record.names["h"][0].uid, None);
}

/// A version rolled back to reads a record a newer one wrote: unknown fields at every level
/// are ignored, known ones keep their types.
#[test]
fn a_record_written_by_a_newer_version_reads_back() {
    let newer = r#"{"format":"sluice.dev/claims/v1","gateway":"ns/gw","schema":3,
        "writtenBy":{"leaseUid":"l","holder":"p","leaseTransitions":1,"renewedAt":"x"},
        "record":{"names":{"h":[{"kind":"contour","namespace":"ns","name":"a","since":1,
            "uid":"u","origin":"y"},
            {"kind":"someNewKind","namespace":"ns","name":"b","since":2}]},"extra":{}}}"#;
    let back: Stored = serde_json::from_str(newer).unwrap();
    assert_eq!(back.written_by.unwrap().lease_uid, "l");
    assert_eq!(back.record.names["h"].len(), 2);
    assert_eq!(back.record.names["h"][1].kind, RecordedKind::Unknown);
    let mistyped = newer.replace(r#""leaseTransitions":1"#, r#""leaseTransitions":"1""#);
    assert!(serde_json::from_str::<Stored>(&mistyped).is_err());
}
