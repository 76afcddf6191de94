//! A manifest directory kept parsed per file, for `sluice standalone`: a reload stats every
//! file, re-reads and re-parses only those that changed, and returns the change to the snapshot
//! as a [`FileDelta`] (objects upserted and removed), with the warnings and errors of the whole
//! directory exactly as [`load_dir`](super::files::load_dir) gives them.
//!
//! A file counts as unchanged when its size, modification and change times, device and inode
//! are those of the last read, and those times are older than the read by more than
//! [`RACY_WINDOW`]. Within that window a write in the same clock tick could leave every stamp
//! equal, so the file is read again and its content hash decides (git's "racy clean" rule).
//!
//! The delta is relative to the last state the caller [`accept`](IncrementalLoader::accept)ed:
//! a caller that keeps its last good configuration when the directory has errors simply does
//! not accept, and the next delta still covers every change since.
//!
//! [`load_dir`](super::files::load_dir) stays the from-scratch reference: after any sequence of
//! reloads, the accepted deltas applied in order give its snapshot (a test checks this on random
//! edit sequences). Tenant bounds are those of the parser: files are parsed by the same code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::files::{
    DocRef, FileDelta, Item, LoadError, LoadWarning, ParsedFile, collect_manifest_paths, identity,
    parse_file,
};
use crate::snapshot::{Kind, ObjKey, SharedObject};

/// Files whose times are this close to (or after) the last read are hashed, not trusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

type Id = (Kind, ObjKey);

/// Which parse of which file, and which item of it: changes whenever the object may have.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    generation: u64,
    item: usize,
}

/// What a stat tells about a file: equal stamps mean an unchanged file outside the racy window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The later of the two times, as a `SystemTime` (before the epoch counts as the epoch).
    fn latest(&self) -> SystemTime {
        let at = |(s, ns): (i64, i64)| {
            SystemTime::UNIX_EPOCH
                + Duration::new(
                    u64::try_from(s).unwrap_or(0),
                    u32::try_from(ns).unwrap_or(0),
                )
        };
        at(self.mtime).max(at(self.ctime))
    }
}

/// One file as last read. Boxed in the loader's map: a map node holds eleven entries, most of
/// them empty, and an entry is then a pointer, not the whole record.
struct CachedFile {
    /// `None` when the file could not be stat'ed: it is read again on every reload.
    stamp: Option<Stamp>,
    /// When the file was last read.
    read_at: SystemTime,
    hash: Option<[u8; 32]>,
    generation: u64,
    content: Content,
    /// Whether some object appears more than once in the file.
    repeats: bool,
}

enum Content {
    Parsed(ParsedFile),
    /// The file could not be read (it may hold a Gateway: fail closed).
    Unreadable(Box<LoadError>),
}

/// What the loader knows of one object: the files that hold it, and the winner of the last
/// accepted reload. One map entry per object (not a map per object, nor a second map for the
/// baseline), and the files' paths are the `Arc`s the file map holds, not copies.
#[derive(Debug, Default)]
struct Entry {
    holders: Holders,
    /// The winner as of the last accepted reload.
    baseline: Option<Version>,
}

/// The files holding one object, in path order, each with the index of its last item there.
/// Nearly every object is in exactly one file: that case takes no allocation.
#[derive(Debug, Default)]
enum Holders {
    #[default]
    None,
    One(Arc<Path>, usize),
    /// Two or more, in path order.
    Many(Vec<(Arc<Path>, usize)>),
}

impl Holders {
    /// Records that `path` holds the object, its last item at `index`; true if `path` held it
    /// already (the object appears twice in the file).
    fn insert(&mut self, path: &Arc<Path>, index: usize) -> bool {
        match self {
            Holders::None => *self = Holders::One(path.clone(), index),
            Holders::One(p, i) if **p == **path => {
                *i = index;
                return true;
            }
            Holders::One(p, i) => {
                let mut many = vec![(p.clone(), *i), (path.clone(), index)];
                many.sort_by(|a, b| a.0.cmp(&b.0));
                *self = Holders::Many(many);
            }
            Holders::Many(many) => match many.binary_search_by(|(p, _)| (**p).cmp(&**path)) {
                Ok(at) => {
                    many[at].1 = index;
                    return true;
                }
                Err(at) => many.insert(at, (path.clone(), index)),
            },
        }
        false
    }

    fn remove(&mut self, path: &Path) {
        match self {
            Holders::None => {}
            Holders::One(p, _) => {
                if **p == *path {
                    *self = Holders::None;
                }
            }
            Holders::Many(many) => {
                many.retain(|(p, _)| **p != *path);
                if let [(p, i)] = many.as_slice() {
                    *self = Holders::One(p.clone(), *i);
                }
            }
        }
    }

    /// The holder that wins: the last in path order.
    fn last(&self) -> Option<(&Arc<Path>, usize)> {
        match self {
            Holders::None => None,
            Holders::One(p, i) => Some((p, *i)),
            Holders::Many(many) => many.last().map(|(p, i)| (p, *i)),
        }
    }

    /// The holder just before `path` in path order (whose last item `path`'s first replaces).
    fn before(&self, path: &Path) -> Option<(&Arc<Path>, usize)> {
        match self {
            Holders::None | Holders::One(..) => None,
            Holders::Many(many) => {
                // Sorted by path (`insert`): one object in N files costs log N per file here,
                // not N (review 4 F4.1).
                let at = many.binary_search_by(|(p, _)| (**p).cmp(path)).ok()?;
                let (p, i) = many.get(at.checked_sub(1)?)?;
                Some((p, *i))
            }
        }
    }

    /// Every holder's path.
    fn paths(&self) -> impl Iterator<Item = &Arc<Path>> {
        let (one, many) = match self {
            Holders::None => (None, &[][..]),
            Holders::One(p, _) => (Some(p), &[][..]),
            Holders::Many(many) => (None, many.as_slice()),
        };
        one.into_iter().chain(many.iter().map(|(p, _)| p))
    }

    fn is_empty(&self) -> bool {
        matches!(self, Holders::None)
    }
}

/// What one reload found.
#[derive(Debug, Default)]
pub struct Reload {
    /// The change since the last accepted reload.
    pub delta: FileDelta,
    /// Warnings and errors of the whole directory, as [`load_dir`](super::files::load_dir)
    /// reports them.
    pub warnings: Vec<LoadWarning>,
    pub errors: Vec<LoadError>,
    /// The snapshot's new [`unloaded_gateways`](crate::snapshot::ClusterSnapshot::unloaded_gateways).
    pub unloaded_gateways: Vec<String>,
    /// Files read and parsed anew by this reload.
    pub reparsed: usize,
}

impl Reload {
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A manifest directory (or one file), parsed per file. See the module documentation.
pub struct IncrementalLoader {
    root: PathBuf,
    files: BTreeMap<Arc<Path>, Box<CachedFile>>,
    /// For every object, the files that hold it (the last file in path order wins, as in
    /// `load_dir`), and its winner as of the last accepted reload.
    objects: HashMap<Id, Entry>,
    /// Objects whose files changed since the last accepted reload.
    dirty: BTreeSet<Id>,
    next_generation: u64,
    /// What the last walk of the directory could not read.
    walk_errors: Vec<LoadError>,
    /// Each file's share of the report, kept between reloads (see `report`).
    reports: report::Reports,
}

impl IncrementalLoader {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            files: BTreeMap::new(),
            objects: HashMap::new(),
            dirty: BTreeSet::new(),
            next_generation: 0,
            walk_errors: Vec::new(),
            reports: report::Reports::default(),
        }
    }

    /// Re-reads what changed. Fails, changing nothing, only when the root cannot be read.
    pub fn reload(&mut self) -> Result<Reload, LoadError> {
        let mut walk_errors = Vec::new();
        let mut paths = Vec::new();
        if self.root.is_file() {
            paths.push(self.root.clone());
        } else {
            let top = std::fs::read_dir(&self.root).map_err(|e| LoadError::Read {
                path: self.root.display().to_string(),
                message: e.to_string(),
            })?;
            collect_manifest_paths(&self.root, top, &mut paths, &mut walk_errors);
            paths.sort();
        }
        self.walk_errors.clone_from(&walk_errors);

        let mut reparsed = 0;
        let present: BTreeSet<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let gone: Vec<Arc<Path>> = self
            .files
            .keys()
            .filter(|p| !present.contains(&***p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(old) = self.files.remove(&path) {
                self.forget(&path, &old);
                self.reports.gone(&path);
            }
        }
        for path in &paths {
            if self.refresh(path) {
                reparsed += 1;
            }
        }

        let delta = self.delta();
        let mut reload = self.report(walk_errors);
        reload.delta = delta;
        reload.reparsed = reparsed;
        Ok(reload)
    }

    /// Like [`IncrementalLoader::reload`], when the file-system events since the last reload
    /// named only `paths`: if each is a regular file this loader already holds (edited in place
    /// or rewritten), only those files are looked at, and the directory is not walked. Anything
    /// else (a new or deleted file, a directory, a symlink, no path at all, a root that is a
    /// file) reads the whole directory as `reload` does, so the result is always `reload`'s.
    pub fn reload_paths(&mut self, paths: &BTreeSet<PathBuf>) -> Result<Reload, LoadError> {
        let known_files = !paths.is_empty()
            && !self.root.is_file()
            && paths.iter().all(|p| {
                self.files.contains_key(p.as_path())
                    && std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
            });
        if !known_files {
            return self.reload();
        }
        let mut reparsed = 0;
        for path in paths {
            if self.refresh(path) {
                reparsed += 1;
            }
        }
        let delta = self.delta();
        // The directory was not walked: its walk errors are those of the last walk.
        let mut reload = self.report(self.walk_errors.clone());
        reload.delta = delta;
        reload.reparsed = reparsed;
        Ok(reload)
    }

    /// Whether `path` was a file of the last reload.
    pub fn holds(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    /// Takes the state of the last reload as the base of the next delta.
    pub fn accept(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let version = self.winner(&id).map(|(_, version)| version);
            if let Some(entry) = self.objects.get_mut(&id) {
                entry.baseline = version;
                if entry.holders.is_empty() {
                    self.objects.remove(&id);
                }
            }
        }
    }

    /// Brings one file's cache entry up to date; true if it was parsed anew.
    fn refresh(&mut self, path: &Path) -> bool {
        let stamp = std::fs::metadata(path).ok().map(|m| Stamp::of(&m));
        if self
            .files
            .get(path)
            .is_some_and(|c| unchanged(c.stamp, c.read_at, stamp))
        {
            return false;
        }
        let read_at = SystemTime::now();
        let (hash, content) = match std::fs::read(path) {
            Ok(bytes) => {
                let hash: [u8; 32] = Sha256::digest(&bytes).into();
                if let Some(cached) = self.files.get_mut(path)
                    && cached.hash == Some(hash)
                {
                    cached.stamp = stamp;
                    cached.read_at = read_at;
                    return false;
                }
                let name = path.display().to_string();
                let content = match String::from_utf8(bytes) {
                    Ok(text) => Content::Parsed(kept(parse_file(&name, &text))),
                    // `load_dir`'s message for the same file.
                    Err(_) => Content::Unreadable(Box::new(read_error(path))),
                };
                (Some(hash), content)
            }
            Err(e) => (
                None,
                Content::Unreadable(Box::new(LoadError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })),
            ),
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut file = CachedFile {
            stamp,
            read_at,
            hash,
            generation,
            content,
            repeats: false,
        };
        // The path is allocated once, shared by the file map and every object's holders.
        let key: Arc<Path> = match self.files.remove_entry(path) {
            Some((key, old)) => {
                self.forget(path, &old);
                key
            }
            None => Arc::from(path),
        };
        self.reports.stale(&key);
        if let Content::Parsed(parsed) = &file.content {
            for (index, item) in parsed.items.iter().enumerate() {
                if let Item::Object(_, obj) = item {
                    let id = identity(obj);
                    let entry = self.objects.entry(id.clone()).or_default();
                    file.repeats |= entry.holders.insert(&key, index);
                    // The other files holding the object may now replace another.
                    if matches!(entry.holders, Holders::Many(_)) {
                        self.reports.stale_holders(&entry.holders);
                    }
                    self.dirty.insert(id);
                }
            }
        }
        self.files.insert(key, Box::new(file));
        true
    }

    /// Drops a file's objects from the holders.
    fn forget(&mut self, path: &Path, old: &CachedFile) {
        let Content::Parsed(parsed) = &old.content else {
            return;
        };
        for item in &parsed.items {
            if let Item::Object(_, obj) = item {
                let id = identity(obj);
                if let Some(entry) = self.objects.get_mut(&id) {
                    entry.holders.remove(path);
                    // The files still holding the object may now replace another, or none.
                    self.reports.stale_holders(&entry.holders);
                    if entry.holders.is_empty() && entry.baseline.is_none() {
                        self.objects.remove(&id);
                    }
                }
                self.dirty.insert(id);
            }
        }
    }

    /// The file and version of the object that wins for `id`.
    fn winner(&self, id: &Id) -> Option<(&Arc<Path>, Version)> {
        let (path, item) = self.objects.get(id)?.holders.last()?;
        let generation = self.files.get(&**path)?.generation;
        Some((path, Version { generation, item }))
    }

    /// Every dirty object whose winner differs from the baseline.
    fn delta(&self) -> FileDelta {
        let mut delta = FileDelta::default();
        for id in &self.dirty {
            let before = self.objects.get(id).and_then(|e| e.baseline.as_ref());
            match self.winner(id) {
                Some((path, version)) => {
                    if before == Some(&version) {
                        continue;
                    }
                    let obj = self.files.get(&**path).and_then(|f| match &f.content {
                        Content::Parsed(p) => match p.items.get(version.item) {
                            Some(Item::Object(_, obj)) => Some(obj.clone()),
                            _ => None,
                        },
                        Content::Unreadable(_) => None,
                    });
                    if let Some(obj) = obj {
                        delta.upserts.push(obj);
                    }
                }
                None => {
                    if before.is_some() {
                        delta.removals.push(id.clone());
                    }
                }
            }
        }
        delta
    }
}

/// `parsed` as the loader keeps it: each object's [`DocRef`] without the file's name (the
/// path it is kept under gives it) nor, when it is the object's kind and key, its description
/// (`Kind namespace/name`). Those are two strings per object of the directory, held for as long
/// as its file is unchanged and read only for the warning of an object that replaces another;
/// [`doc_ref`] makes the `DocRef` again, equal to the parser's.
fn kept(mut parsed: ParsedFile) -> ParsedFile {
    for item in &mut parsed.items {
        if let Item::Object(at, obj) = item {
            at.file = String::new();
            if at.object.as_deref().is_some_and(|d| describes(d, obj)) {
                at.object = None;
            }
        }
    }
    parsed
}

/// Whether `description` is `Kind namespace/name` of `obj`, as the parser describes it.
fn describes(description: &str, obj: &SharedObject) -> bool {
    let (kind, key) = identity(obj);
    (description.strip_prefix(kind.as_str()))
        .and_then(|d| d.strip_prefix(' '))
        .and_then(|d| d.strip_prefix(&*key.namespace))
        .and_then(|d| d.strip_prefix('/'))
        == Some(&*key.name)
}

/// The [`DocRef`] the parser gave the object `obj` of the file at `path`, from what [`kept`]
/// kept of it.
fn doc_ref(path: &Path, at: &DocRef, obj: &SharedObject) -> DocRef {
    let object = at.object.clone().or_else(|| {
        let (kind, key) = identity(obj);
        Some(format!("{} {key}", kind.as_str()))
    });
    DocRef {
        // As `refresh` names the file to the parser.
        file: path.display().to_string(),
        document: at.document,
        item: at.item,
        object,
    }
}

/// Whether a file last read at `read_at` with stamp `before` is surely unchanged now.
fn unchanged(before: Option<Stamp>, read_at: SystemTime, now: Option<Stamp>) -> bool {
    match (before, now) {
        (Some(before), Some(now)) => before == now && now.latest() + RACY_WINDOW < read_at,
        _ => false,
    }
}

/// The error `load_dir` reports for a file it cannot read as text.
fn read_error(path: &Path) -> LoadError {
    let message = match std::fs::read_to_string(path) {
        Err(e) => e.to_string(),
        Ok(_) => "the file changed while it was read".to_owned(),
    };
    LoadError::Read {
        path: path.display().to_string(),
        message,
    }
}

#[path = "incremental_report.rs"]
mod report;
#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
