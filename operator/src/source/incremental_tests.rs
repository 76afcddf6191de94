#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::snapshot::{ChangeSet, ClusterSnapshot, Kind, LiveSnapshot, ObjKey};
use crate::source::files::load_dir;
use sluice_e2e::rng::Rng;

/// One random document: objects drawn from a small pool of names so that files collide, and
/// now and then one that does not load.
fn document(rng: &mut Rng) -> String {
    let ns = ["a", "b"][rng.below(2)];
    let name = rng.below(4);
    let port = 80 + rng.below(10);
    match rng.below(28) {
        0..=7 => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s{name}\n  namespace: {ns}\nspec:\n  ports:\n  - port: {port}\n"
        ),
        8..=13 => format!(
            "apiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata:\n  name: r{name}\n  namespace: {ns}\nspec:\n  virtualhost:\n    fqdn: r{name}.example.com\n  routes:\n  - match: /p{port}\n    services:\n    - name: s{name}\n      port: {port}\n"
        ),
        14..=16 => format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: s{name}\n  namespace: {ns}\nsubsets:\n- addresses:\n  - ip: 127.0.0.{port}\n  ports:\n  - port: {port}\n"
        ),
        17..=19 => format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Gateway\nmetadata:\n  name: g{name}\n  namespace: {ns}\nspec:\n  ingressClassName: c{port}\n"
        ),
        // A Gateway that does not load: fail closed.
        20 => format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Gateway\nmetadata:\n  name: g{name}\nspec:\n  rootNamespaces: {port}\n"
        ),
        21 => "kind: [unclosed\n".to_owned(),
        // Indexed kinds: a slice moving between Services, a delegation between Secrets.
        22 | 23 => format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: sl{name}\n  namespace: {ns}\n  labels:\n    kubernetes.io/service-name: s{}\naddressType: IPv4\nendpoints: []\n",
            port % 4
        ),
        24 | 25 => format!(
            "apiVersion: contour.heptio.com/v1beta1\nkind: TLSCertificateDelegation\nmetadata:\n  name: d{name}\n  namespace: {ns}\nspec:\n  delegations:\n  - secretName: c{}\n    targetNamespaces: [\"*\"]\n",
            port % 3
        ),
        _ => format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{name}\n  namespace: {ns}\n"
        ),
    }
}

fn documents(rng: &mut Rng, count: usize) -> String {
    (0..count)
        .map(|_| format!("---\n{}", document(rng)))
        .collect()
}

const NAMES: [&str; 9] = [
    "a.yaml",
    "b.yml",
    "c.yaml",
    "sub/d.yaml",
    "sub/e.yaml",
    "sub/deeper/f.yaml",
    "g.json",
    "notes.txt",
    ".hidden.yaml",
];

/// The multi-document file every sequence keeps editing.
const ALL: &str = "all.yaml";

fn write(dir: &Path, name: &str, text: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn json_documents(rng: &mut Rng) -> String {
    let count = 1 + rng.below(3);
    (0..count)
        .map(|i| {
            let port = 80 + rng.below(10);
            format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"s{i}\",\"namespace\":\"b\"}},\"spec\":{{\"ports\":[{{\"port\":{port}}}]}}}}\n"
            )
        })
        .collect()
}

/// One random change to the directory.
fn mutate(rng: &mut Rng, dir: &Path) -> String {
    let name = NAMES[rng.below(NAMES.len())];
    let path = dir.join(name);
    match rng.below(10) {
        0..=2 => {
            let text = if name.ends_with(".json") {
                json_documents(rng)
            } else {
                let count = 1 + rng.below(3);
                documents(rng, count)
            };
            write(dir, name, text.as_bytes());
            format!("write {name}")
        }
        3 => {
            let _ = std::fs::remove_file(&path);
            format!("delete {name}")
        }
        4 => {
            let to = NAMES[rng.below(NAMES.len())];
            if path.exists() {
                std::fs::create_dir_all(dir.join(to).parent().unwrap()).unwrap();
                std::fs::rename(&path, dir.join(to)).unwrap();
            }
            format!("rename {name} {to}")
        }
        5 => {
            // Same size, same modification time: only the content hash tells.
            let Ok(text) = std::fs::read_to_string(&path) else {
                return format!("(no {name} to edit)");
            };
            let Some(at) = text.find(|c: char| c.is_ascii_digit()) else {
                return format!("(nothing to edit in {name})");
            };
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            let mut bytes = text.into_bytes();
            bytes[at] = b'0' + u8::try_from(rng.below(10)).unwrap();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            use std::io::Write as _;
            (&file).write_all(&bytes).unwrap();
            file.set_modified(mtime).unwrap();
            format!("edit in place {name}")
        }
        6 if rng.chance(30) => {
            write(dir, name, b"kind: Gateway\n\xff\xfe\n");
            format!("not UTF-8 {name}")
        }
        _ => {
            // Change, add or drop one document of the multi-document file.
            let text = std::fs::read_to_string(dir.join(ALL)).unwrap_or_default();
            let mut docs: Vec<String> = text
                .split("---\n")
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect();
            match rng.below(3) {
                0 if !docs.is_empty() => {
                    let at = rng.below(docs.len());
                    docs[at] = document(rng);
                }
                1 if !docs.is_empty() => {
                    docs.remove(rng.below(docs.len()));
                }
                _ => docs.push(document(rng)),
            }
            let text: String = docs.iter().map(|d| format!("---\n{d}")).collect();
            write(dir, ALL, text.as_bytes());
            format!("edit {ALL}")
        }
    }
}

/// Every object that differs between `before` and `after` is listed in `changes`.
fn lists_every_change(changes: &ChangeSet, before: &ClusterSnapshot, after: &ClusterSnapshot) {
    for (kind, key) in ChangeSet::diff(before, after).objects() {
        assert!(
            changes.lists(kind, key),
            "{kind:?} {key} changed, not listed"
        );
    }
    if before.unloaded_gateways != after.unloaded_gateways {
        assert!(changes.unloaded_gateways_changed());
    }
}

#[test]
fn random_edit_sequences_give_the_from_scratch_snapshot_after_every_step() {
    let mut compared = 0;
    let mut with_errors = 0;
    let mut fast = 0;
    for seed in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491));
        write(dir.path(), ALL, documents(&mut rng, 8).as_bytes());
        let mut loader = IncrementalLoader::new(dir.path());
        let mut served = LiveSnapshot::default();
        let mut steps = Vec::new();
        for step in 0..80 {
            // What the file-system events would name: the files the step touched.
            let mut touched = BTreeSet::new();
            if step > 0 {
                let step = mutate(&mut rng, dir.path());
                touched.extend(
                    step.split(' ')
                        .filter(|w| NAMES.contains(w) || *w == ALL)
                        .map(|w| dir.path().join(w)),
                );
                steps.push(step);
            }
            let reference = load_dir(dir.path()).unwrap();
            // Every other reload is told the touched files (as standalone is by inotify).
            let reload = if rng.chance(50) {
                fast += usize::from(
                    !touched.is_empty() && touched.iter().all(|p| p.is_file() && loader.holds(p)),
                );
                loader.reload_paths(&touched).unwrap()
            } else {
                loader.reload().unwrap()
            };
            let context = || format!("seed {seed}, steps {steps:?}");
            assert_eq!(reload.errors, reference.errors, "{}", context());
            with_errors += usize::from(!reload.is_clean());
            assert_eq!(reload.warnings, reference.warnings, "{}", context());
            assert_eq!(
                reload.unloaded_gateways,
                reference.snapshot.unloaded_gateways,
                "{}",
                context()
            );
            // A caller may skip a change (standalone does when it has errors): the next
            // delta must still cover it.
            if rng.chance(75) {
                compared += 1;
                let before = served.snapshot().clone();
                reload.delta.apply_to(&mut served);
                served.set_unloaded_gateways(reload.unloaded_gateways);
                loader.accept();
                // Objects and indexes.
                assert!(
                    *served.snapshot() == reference.snapshot,
                    "{}\nincremental: {:#?}\nfrom scratch: {:#?}",
                    context(),
                    served.snapshot(),
                    reference.snapshot
                );
                let (_, changes) = served.take();
                lists_every_change(&changes, &before, &reference.snapshot);
            }
        }
    }
    println!(
        "{compared} comparisons, {with_errors} steps with errors, {fast} reloads of the touched files only"
    );
    assert!(fast > 100, "{fast}");
    // The sequences exercise both clean and broken directories.
    assert!(compared > 600, "{compared}");
    assert!(with_errors > 100 && with_errors < 900, "{with_errors}");
}

#[test]
fn equal_stamps_are_trusted_only_outside_the_racy_window() {
    let stamp = Stamp {
        len: 10,
        mtime: 1_000,
        ctime: 1_000,
        mtime_ns: 5,
        ctime_ns: 5,
        dev: 1,
        ino: 2,
    };
    let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    assert!(unchanged(Some(stamp), at(1_003), Some(stamp)));
    // Read within the window: a write in the same clock tick could leave the stamp equal.
    assert!(!unchanged(Some(stamp), at(1_001), Some(stamp)));
    let other = Stamp { ino: 3, ..stamp };
    assert!(!unchanged(Some(stamp), at(1_003), Some(other)));
    assert!(!unchanged(None, at(1_003), None));
}

#[test]
fn only_changed_files_are_parsed_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    for name in ["a.yaml", "b.yaml", "c.yaml"] {
        write(dir.path(), name, documents(&mut rng, 3).as_bytes());
    }
    let mut loader = IncrementalLoader::new(dir.path());
    let first = loader.reload().unwrap();
    assert_eq!(first.reparsed, 3);
    loader.accept();

    let again = loader.reload().unwrap();
    assert_eq!(again.reparsed, 0);
    assert!(again.delta.is_empty(), "{:?}", again.delta);

    let route = "apiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata:\n  name: only\n  namespace: x\nspec:\n  routes: []\n";
    write(dir.path(), "b.yaml", route.as_bytes());
    let edited = loader.reload().unwrap();
    assert_eq!(edited.reparsed, 1);
    assert!(
        edited
            .delta
            .upserts
            .iter()
            .any(|o| identity(o) == (Kind::IngressRoute, ObjKey::new("x", "only"))),
        "{:?}",
        edited.delta
    );
    loader.accept();

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let removed = loader.reload().unwrap();
    assert_eq!(removed.reparsed, 0);
    assert_eq!(
        removed.delta.removals,
        vec![(Kind::IngressRoute, ObjKey::new("x", "only"))]
    );
}

#[test]
fn a_delta_that_was_not_accepted_is_carried_into_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let svc = |name: &str| format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n");
    write(dir.path(), "a.yaml", svc("one").as_bytes());
    let mut loader = IncrementalLoader::new(dir.path());
    assert_eq!(loader.reload().unwrap().delta.upserts.len(), 1);
    loader.accept();
    write(dir.path(), "a.yaml", svc("two").as_bytes());
    let skipped = loader.reload().unwrap();
    assert_eq!(skipped.delta.upserts.len(), 1);
    assert_eq!(skipped.delta.removals.len(), 1);
    // Not accepted: a later reload still carries the whole change.
    write(dir.path(), "b.yaml", svc("three").as_bytes());
    let next = loader.reload().unwrap();
    let mut names: Vec<String> = next
        .delta
        .upserts
        .iter()
        .map(|o| identity(o).1.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["three", "two"]);
    assert_eq!(
        next.delta.removals,
        vec![(Kind::Service, ObjKey::new("default", "one"))]
    );
}

#[test]
fn a_missing_root_fails_like_load_dir() {
    let mut loader = IncrementalLoader::new("/nonexistent/sluice-manifests");
    let err = loader.reload().unwrap_err();
    assert_eq!(
        err,
        load_dir(Path::new("/nonexistent/sluice-manifests")).unwrap_err()
    );
}

#[test]
fn a_reload_works_out_the_report_of_the_changed_files_and_their_objects_holders_only() {
    let dir = tempfile::tempdir().unwrap();
    let svc = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
        )
    };
    for i in 0..40 {
        write(
            dir.path(),
            &format!("f{i:02}.yaml"),
            svc(&format!("s{i}"), 80).as_bytes(),
        );
    }
    // Two files holding one object: the later one replaces the earlier.
    write(dir.path(), "z1.yaml", svc("shared", 80).as_bytes());
    write(dir.path(), "z2.yaml", svc("shared", 81).as_bytes());
    let mut loader = IncrementalLoader::new(dir.path());
    let first = loader.reload().unwrap();
    assert_eq!(loader.reports.reworked, 42);
    assert_eq!(first.warnings.len(), 1, "{:?}", first.warnings);
    loader.accept();

    let again = loader.reload().unwrap();
    assert_eq!(loader.reports.reworked, 0);
    assert_eq!(again.warnings, first.warnings);

    write(dir.path(), "f07.yaml", svc("s7", 82).as_bytes());
    let touched = BTreeSet::from([dir.path().join("f07.yaml")]);
    let edited = loader.reload_paths(&touched).unwrap();
    assert_eq!(edited.reparsed, 1);
    assert_eq!(loader.reports.reworked, 1);
    assert_eq!(edited.warnings, first.warnings);

    // The earlier holder changes: the later one's warning names it again.
    write(
        dir.path(),
        "z1.yaml",
        format!("---\n{}", svc("shared", 83)).as_bytes(),
    );
    let touched = BTreeSet::from([dir.path().join("z1.yaml")]);
    let edited = loader.reload_paths(&touched).unwrap();
    assert_eq!(loader.reports.reworked, 2);
    assert_eq!(edited.warnings, load_dir(dir.path()).unwrap().warnings);
}

/// The loader keeps each object of a file without its own copy of the file's name, and
/// without its description when the object's kind and key give it; the warnings it reports
/// name both as `load_dir`'s do, description kept where the key does not give it (an object
/// without a name is described `<no name>`).
#[test]
fn kept_objects_hold_no_file_name_nor_a_description_their_key_gives() {
    let dir = tempfile::tempdir().unwrap();
    let svc = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  {name}namespace: a\nspec:\n  ports:\n  - port: {port}\n"
        )
    };
    write(dir.path(), "a.yaml", svc("name: s\n  ", 80).as_bytes());
    write(dir.path(), "sub/b.yaml", svc("name: s\n  ", 81).as_bytes());
    let unnamed = format!("---\n{}---\n{}", svc("", 82), svc("", 83));
    write(dir.path(), "sub/c.yaml", unnamed.as_bytes());
    let mut loader = IncrementalLoader::new(dir.path());
    let reload = loader.reload().unwrap();
    let reference = load_dir(dir.path()).unwrap();
    assert_eq!(reload.warnings, reference.warnings);
    assert_eq!(reload.warnings.len(), 2, "{:?}", reload.warnings);
    assert!(
        reload.warnings[1]
            .to_string()
            .contains("(Service a/<no name>)"),
        "{}",
        reload.warnings[1]
    );

    let mut described = Vec::new();
    for path in loader.files.numbers.keys() {
        let file = loader.files.of(path).unwrap();
        assert!(file.trouble.is_none(), "{}", path.display());
        for item in &file.items {
            let Kept::Object(placed) = item else {
                panic!("{} holds a warning", path.display());
            };
            described.push(placed.object.as_deref().map(str::to_owned));
        }
    }
    let unnamed = Some("Service a/<no name>".to_owned());
    assert_eq!(described, [None, None, unnamed.clone(), unnamed]);
}

/// The loader's per-object and per-file records stay small: at 10,000 roots there are some
/// 61,000 objects and files, so every word here is about half a megabyte (the object table
/// has 131,072 slots for 61,000 objects). An object's holder is a file number and an item
/// index (not a path and a `usize`), a file's record sits inline in the table of files, and a
/// kept object is two numbers, its description when its key does not give it, and the object.
#[test]
fn the_loaders_records_stay_small() {
    use std::mem::size_of;
    assert!(
        size_of::<(Id, Entry)>() <= 72,
        "{}",
        size_of::<(Id, Entry)>()
    );
    assert!(size_of::<Kept>() <= 40, "{}", size_of::<Kept>());
    assert!(
        size_of::<Option<CachedFile>>() <= 160,
        "{}",
        size_of::<Option<CachedFile>>()
    );
}

/// A deleted file's number goes to the next new file: the objects the new file holds are its
/// own, the deleted file's are gone, and an object the deleted file shared with a later file
/// is that file's alone.
#[test]
fn a_deleted_files_number_is_reused_by_the_next_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let svc = |name: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
        )
    };
    write(
        dir.path(),
        "a.yaml",
        format!("{}---\n{}", svc("one", 80), svc("shared", 80)).as_bytes(),
    );
    write(dir.path(), "b.yaml", svc("shared", 81).as_bytes());
    let mut loader = IncrementalLoader::new(dir.path());
    loader.reload().unwrap();
    loader.accept();
    let a = loader.files.number(&dir.path().join("a.yaml")).unwrap();

    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    write(dir.path(), "c.yaml", svc("three", 82).as_bytes());
    let reload = loader.reload().unwrap();
    assert_eq!(loader.files.number(&dir.path().join("c.yaml")), Some(a));
    assert_eq!(
        reload.delta.removals,
        vec![(Kind::Service, ObjKey::new("default", "one"))]
    );
    let upserted: Vec<String> = (reload.delta.upserts.iter())
        .map(|o| identity(o).1.name.to_string())
        .collect();
    assert_eq!(upserted, vec!["three"]);
    assert!(reload.warnings.is_empty(), "{:?}", reload.warnings);
    loader.accept();
    let reference = load_dir(dir.path()).unwrap();
    let mut served = LiveSnapshot::default();
    let mut all = IncrementalLoader::new(dir.path());
    all.reload().unwrap().delta.apply_to(&mut served);
    assert!(*served.snapshot() == reference.snapshot);
    assert_eq!(loader.reload().unwrap().warnings, reference.warnings);
}
