//! The claims file (`--claims-file`): each instance's record of contested host claims (see
//! `dag::ClaimRecord`), read at start and given to the instance before its first build, and
//! written again, atomically, whenever a record changes. So a restart orders contested claims
//! as before, and an object edited to claim a held name stays refused.
//!
//! A file that cannot be read as a claims file (corrupt, or some other file given by mistake) is
//! reported and left alone: its content is not used, and it is not overwritten (remove it to
//! start afresh). Records of Gateways not seen since the start are kept as they were.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dag::ClaimRecord;
use crate::pipeline::Pipelines;

/// What the file holds. Fields a newer version adds are ignored, so that a version rolled
/// back to still reads the file; one that changes what the known fields mean changes
/// [`FORMAT`], and a file of another format is reported and left alone.
#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ClaimsFileBody {
    /// [`FORMAT`].
    format: String,
    /// Each instance's record, by Gateway (`namespace/name`).
    gateways: BTreeMap<String, ClaimRecord>,
}

/// The `format` of a claims file.
pub const FORMAT: &str = "sluice.dev/claims/v1";

/// A record larger than this leaves names out (reported); see `dag::claim_record`.
pub const RECORD_BUDGET: usize = 900 * 1024;

/// Files larger than this are not read (a record is bounded per instance).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The claims file of a run.
#[derive(Debug)]
pub struct ClaimsFile {
    path: PathBuf,
    /// Records read at start, until their instance takes them.
    pending: BTreeMap<String, ClaimRecord>,
    /// What the file holds now (as written or read); `None`: not ours, never written.
    written: Option<BTreeMap<String, ClaimRecord>>,
    /// Names left out per instance, as last reported.
    dropped: BTreeMap<String, usize>,
}

impl ClaimsFile {
    /// Reads `path` (a missing file is an empty one); reports a file it cannot use.
    pub fn load(path: &Path) -> Self {
        let mut file = Self {
            path: path.to_owned(),
            pending: BTreeMap::new(),
            written: Some(BTreeMap::new()),
            dropped: BTreeMap::new(),
        };
        match read(path) {
            Ok(Some(records)) => {
                eprintln!(
                    "sluice: claims file {}: {} Gateway record(s) read",
                    path.display(),
                    records.len()
                );
                file.written = Some(records.clone());
                file.pending = records;
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!(
                    "sluice: error: claims file {}: {e}; ignored, and not overwritten (remove \
                     it to start afresh): host claim dates are not kept across restarts",
                    path.display()
                );
                file.written = None;
            }
        }
        file
    }

    /// The record read at start for `gateway`, once.
    pub fn take(&mut self, gateway: &str) -> Option<ClaimRecord> {
        self.pending.remove(gateway)
    }

    /// Writes the records of `pipelines` (and those still pending) when they differ from the
    /// file's.
    pub fn save(&mut self, pipelines: &Pipelines) {
        let Some(written) = &self.written else {
            return;
        };
        let mut records = self.pending.clone();
        for (gateway, pipeline) in pipelines.iter() {
            // Nothing built (a build that panicked): what the file holds stands.
            let Some((record, dropped)) = pipeline.claim_record(RECORD_BUDGET) else {
                if let Some(kept) = written.get(gateway) {
                    records.insert(gateway.to_owned(), kept.clone());
                }
                continue;
            };
            let before = self.dropped.insert(gateway.to_owned(), dropped);
            if dropped > 0 && before != Some(dropped) {
                eprintln!(
                    "sluice: warning: {gateway}: {dropped} contested host name(s) left out of the \
                     claims file or kept with their holder alone (over {RECORD_BUDGET} bytes)"
                );
            }
            if !record.is_empty() {
                records.insert(gateway.to_owned(), record);
            }
        }
        if *written == records {
            return;
        }
        match write(&self.path, &records) {
            Ok(()) => self.written = Some(records),
            Err(e) => eprintln!(
                "sluice: error: writing claims file {}: {e}",
                self.path.display()
            ),
        }
    }
}

/// The records of the file at `path`; `None` when there is none.
fn read(path: &Path) -> Result<Option<BTreeMap<String, ClaimRecord>>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!("{len} bytes, more than a claims file holds"));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::BufReader::new(file), &mut text)
        .map_err(|e| format!("not text: {e}"))?;
    let body: ClaimsFileBody =
        serde_json::from_str(&text).map_err(|e| format!("not a Sluice claims file: {e}"))?;
    if body.format != FORMAT {
        return Err(format!(
            "format {:?}, not {FORMAT:?}",
            body.format.chars().take(64).collect::<String>()
        ));
    }
    Ok(Some(body.gateways))
}

/// Writes `records` to `path` through a temporary file in the same directory, renamed over it.
fn write(path: &Path, records: &BTreeMap<String, ClaimRecord>) -> std::io::Result<()> {
    let body = ClaimsFileBody {
        format: FORMAT.to_owned(),
        gateways: records.clone(),
    };
    let text = serde_json::to_vec(&body)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-claims-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Pipelines whose one instance holds a contest that needs its dates: an older root edited
    /// to claim a name a younger one holds.
    fn contested() -> Pipelines {
        use std::sync::Arc;

        use crate::dag::Selection;
        use crate::snapshot::{ChangeSet, ClusterSnapshot, Object};
        use crate::xds::translate::TranslateOptions;
        let root = |ns: &str, created: &str, fqdn: &str| {
            Object::IngressRoute(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "contour.heptio.com/v1beta1", "kind": "IngressRoute",
                    "metadata": {"namespace": ns, "name": "r", "creationTimestamp": created},
                    "spec": {"virtualhost": {"fqdn": fqdn}, "routes": []},
                }))
                .unwrap(),
            )
        };
        let sel = Selection::default_instance();
        let mut pipelines = Pipelines::default();
        let mut snap = ClusterSnapshot::default();
        for objects in [
            vec![
                root("victim", "2025-01-01T00:00:00Z", "h.example.com"),
                root("evil", "2020-01-01T00:00:00Z", "e.example.com"),
            ],
            vec![root("evil", "2020-01-01T00:00:00Z", "h.example.com")],
        ] {
            let old = snap.clone();
            objects.into_iter().for_each(|o| snap.apply(o));
            let changes = ChangeSet::diff(&old, &snap);
            let opts = TranslateOptions::default();
            (pipelines.instance(&sel)).update(&Arc::new(snap.clone()), &sel, &changes, &opts);
        }
        assert!(
            !pipelines
                .iter()
                .next()
                .unwrap()
                .1
                .claim_record(RECORD_BUDGET)
                .unwrap()
                .0
                .is_empty()
        );
        pipelines
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_reported_ignored_and_left_alone() {
        let pipelines = contested();
        let dir = temp_dir("foreign");
        for (n, text) in [
            "not json at all".as_bytes(),
            br#"{"format":"other/v1","gateways":{}}"#,
            // A newer layout that changes meaning: refused, not misread.
            br#"{"format":"sluice.dev/claims/v2","gateways":{"a/b":{"names":{}}}}"#,
            br#"{"format":"sluice.dev/claims/v1","gateways":{"a/b":{"names":{"h":[{"kind":"x"}]}}}}"#,
            &[0xff, 0xfe, 0x00],
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.join(format!("f{n}"));
            std::fs::write(&path, text).unwrap();
            let mut file = ClaimsFile::load(&path);
            assert!(file.take("a/b").is_none());
            file.save(&pipelines);
            assert_eq!(std::fs::read(&path).unwrap(), text, "file {n} was overwritten");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A version rolled back to reads what a newer one wrote: the fields it does not know,
    /// and claims of a kind of root it does not know, are ignored.
    #[test]
    fn a_file_written_by_a_newer_version_is_read_ignoring_what_it_does_not_know() {
        let dir = temp_dir("newer");
        let path = dir.join("claims.json");
        let text = serde_json::json!({
            "format": FORMAT, "writtenAt": "2031-01-01T00:00:00Z",
            "gateways": {"gw/one": {"names": {"h.example.com": [
                {"kind": "gatewayHTTPRoute", "namespace": "x", "name": "y", "since": 1},
                {"kind": "contour", "namespace": "victim", "name": "site", "since": 2,
                 "uid": "u1", "generation": 4},
                {"kind": "traefik", "namespace": "evil", "name": "old", "since": 3},
            ]}, "budget": 1}},
        });
        std::fs::write(&path, text.to_string()).unwrap();
        let mut file = ClaimsFile::load(&path);
        let record = file.take("gw/one").unwrap();
        let claims = &record.names["h.example.com"];
        assert_eq!(claims.len(), 3);
        assert_eq!(claims[0].kind, crate::dag::RecordedKind::Unknown);
        assert_eq!(
            (claims[1].name.as_str(), claims[1].uid.as_deref()),
            ("site", Some("u1"))
        );
        // Known fields keep their types: a date that is not a number is refused.
        let bad = text.to_string().replace("\"since\":2", "\"since\":\"2\"");
        assert_ne!(bad, text.to_string());
        std::fs::write(&path, &bad).unwrap();
        assert!(ClaimsFile::load(&path).take("gw/one").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = temp_dir("round");
        let path = dir.join("claims.json");
        let record: ClaimRecord = serde_json::from_value(serde_json::json!({"names": {
        "h.example.com": [
            {"kind": "contour", "namespace": "victim", "name": "site", "since": 0},
            {"kind": "traefik", "namespace": "evil", "name": "old", "since": 7},
        ]}}))
        .unwrap();
        let records = BTreeMap::from([("gw/one".to_owned(), record.clone())]);
        write(&path, &records).unwrap();
        let mut file = ClaimsFile::load(&path);
        // Nothing new: the file is not written again (a Gateway not seen keeps its record).
        std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        file.save(&Pipelines::default());
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(file.take("gw/one"), Some(record));
        assert_eq!(file.take("gw/one"), None);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "a temporary file is left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
