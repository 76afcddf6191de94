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
use std::num::{NonZeroU32, NonZeroU64};
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

/// A file's number in the loader's table of files; a deleted file's number goes to the next
/// new file.
type FileNo = u32;

/// Which parse of which file, and which item of it: changes whenever the object may have.
/// Generations are never reused (file numbers are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    generation: NonZeroU64,
    item: u32,
}

/// What a stat tells about a file: equal stamps mean an unchanged file outside the racy window.
/// Nanoseconds are below 10^9: in 32 bits each, apart from the seconds (a `(i64, u32)` pair
/// takes two words), a stamp is six words, not seven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: i64,
    ctime: i64,
    mtime_ns: u32,
    ctime_ns: u32,
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let ns = |ns: i64| u32::try_from(ns).unwrap_or(u32::MAX);
        Self {
            len: meta.len(),
            mtime: meta.mtime(),
            ctime: meta.ctime(),
            mtime_ns: ns(meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The later of the two times, as a `SystemTime` (before the epoch counts as the epoch).
    fn latest(&self) -> SystemTime {
        let at = |s: i64, ns: u32| {
            SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(s).unwrap_or(0))
                + Duration::from_nanos(u64::from(ns))
        };
        at(self.mtime, self.mtime_ns).max(at(self.ctime, self.ctime_ns))
    }
}

/// One file as last read, inline in the loader's table of files (no allocation of its own).
struct CachedFile {
    /// Shared with the table's index by path, the reports, and nothing else.
    path: Arc<Path>,
    /// `None` when the file could not be stat'ed: it is read again on every reload.
    stamp: Option<Stamp>,
    /// When the file was last read.
    read_at: SystemTime,
    /// `None` when the file could not be read.
    hash: Option<[u8; 32]>,
    generation: NonZeroU64,
    /// Objects and warnings in document order (none when the file could not be read).
    items: Box<[Kept]>,
    /// What else the file has to report; `None` for nearly every file.
    trouble: Option<Box<Trouble>>,
    /// Whether some object appears more than once in the file.
    repeats: bool,
}

/// A file's share of the errors (and unloaded Gateways), when it has one.
enum Trouble {
    Parsed {
        errors: Box<[LoadError]>,
        unloaded_gateways: Box<[String]>,
    },
    /// The file could not be read (it may hold a Gateway: fail closed).
    Unreadable(LoadError),
}

/// An item of a kept file: the parser's [`Item`] with the object's place in the file as two
/// numbers and its description only where its kind and key do not give it ([`kept`]).
#[derive(Debug)]
enum Kept {
    Object(Placed),
    Warning(Box<LoadWarning>),
}

/// An object of a kept file and where it is: what [`doc_ref`] makes the parser's [`DocRef`]
/// from, with the file's path.
#[derive(Debug)]
struct Placed {
    /// 1-based index of the document in the file.
    document: u32,
    /// 1-based index in the `items` of a `v1` `List`.
    item: Option<NonZeroU32>,
    /// The description, when it is not `Kind namespace/name` of the object.
    object: Option<Box<str>>,
    obj: SharedObject,
}

/// The files of the last reload: records by number, and the numbers by path (path order is
/// the order in which files replace each other's objects).
#[derive(Default)]
struct Files {
    /// By file number; `None` for a number that is free.
    slots: Vec<Option<CachedFile>>,
    free: Vec<FileNo>,
    numbers: BTreeMap<Arc<Path>, FileNo>,
}

impl Files {
    fn number(&self, path: &Path) -> Option<FileNo> {
        self.numbers.get(path).copied()
    }

    fn get(&self, no: FileNo) -> Option<&CachedFile> {
        self.slots.get(usize::try_from(no).ok()?)?.as_ref()
    }

    fn of(&self, path: &Path) -> Option<&CachedFile> {
        self.get(self.number(path)?)
    }

    fn of_mut(&mut self, path: &Path) -> Option<&mut CachedFile> {
        let no = usize::try_from(self.number(path)?).ok()?;
        self.slots.get_mut(no)?.as_mut()
    }

    fn path(&self, no: FileNo) -> Option<&Arc<Path>> {
        self.get(no).map(|f| &f.path)
    }

    /// Puts `file` in the table, in place of the file of the same path if there is one
    /// (returned), under that file's number or else a free one.
    fn put(&mut self, file: CachedFile) -> (FileNo, Option<CachedFile>) {
        if let Some(no) = self.number(&file.path)
            && let Some(slot) = usize::try_from(no).ok().and_then(|i| self.slots.get_mut(i))
        {
            return (no, slot.replace(file));
        }
        let no = match self.free.pop() {
            Some(no) => no,
            None => {
                // More than 2^32 files cannot be listed, let alone held, before this.
                let no = FileNo::try_from(self.slots.len()).unwrap_or(FileNo::MAX);
                self.slots.push(None);
                no
            }
        };
        self.numbers.insert(file.path.clone(), no);
        if let Some(slot) = usize::try_from(no).ok().and_then(|i| self.slots.get_mut(i)) {
            *slot = Some(file);
        }
        (no, None)
    }

    /// Takes the file at `path` out of the table; its number is free.
    fn remove(&mut self, path: &Path) -> Option<(FileNo, CachedFile)> {
        let no = self.numbers.remove(path)?;
        let file = self.slots.get_mut(usize::try_from(no).ok()?)?.take()?;
        self.free.push(no);
        Some((no, file))
    }
}

/// What the loader knows of one object: the files that hold it, and the winner of the last
/// accepted reload. One map entry per object (not a map per object, nor a second map for the
/// baseline); files are numbers into the loader's table, not paths.
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
    One(FileNo, u32),
    /// Two or more, in path order. Boxed: a `Vec` inline would make every object's entry a
    /// word longer for the few objects held by several files.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<(FileNo, u32)>>),
}

impl Holders {
    /// Records that file `no` (at `path`) holds the object, its last item at `index`; true if
    /// the file held it already (the object appears twice in the file).
    fn insert(&mut self, files: &Files, no: FileNo, path: &Path, index: u32) -> bool {
        let path_of = |n: FileNo| files.path(n).map(|p| &**p);
        match self {
            Holders::None => *self = Holders::One(no, index),
            Holders::One(n, i) if *n == no => {
                *i = index;
                return true;
            }
            Holders::One(n, i) => {
                let mut many = vec![(*n, *i), (no, index)];
                many.sort_by(|a, b| path_of(a.0).cmp(&path_of(b.0)));
                *self = Holders::Many(Box::new(many));
            }
            Holders::Many(many) => {
                match many.binary_search_by(|(n, _)| path_of(*n).cmp(&Some(path))) {
                    Ok(at) => {
                        if let Some(holder) = many.get_mut(at) {
                            holder.1 = index;
                        }
                        return true;
                    }
                    Err(at) => many.insert(at, (no, index)),
                }
            }
        }
        false
    }

    fn remove(&mut self, no: FileNo) {
        match self {
            Holders::None => {}
            Holders::One(n, _) => {
                if *n == no {
                    *self = Holders::None;
                }
            }
            Holders::Many(many) => {
                many.retain(|(n, _)| *n != no);
                if let [(n, i)] = many.as_slice() {
                    *self = Holders::One(*n, *i);
                }
            }
        }
    }

    /// The holder that wins: the last in path order.
    fn last(&self) -> Option<(FileNo, u32)> {
        match self {
            Holders::None => None,
            Holders::One(n, i) => Some((*n, *i)),
            Holders::Many(many) => many.last().copied(),
        }
    }

    /// The holder just before `path` in path order (whose last item `path`'s first replaces).
    fn before(&self, files: &Files, path: &Path) -> Option<(FileNo, u32)> {
        match self {
            Holders::None | Holders::One(..) => None,
            Holders::Many(many) => {
                // Sorted by path (`insert`): one object in N files costs log N per file here,
                // not N (review 4 F4.1).
                let at = many
                    .binary_search_by(|(n, _)| files.path(*n).map(|p| &**p).cmp(&Some(path)))
                    .ok()?;
                many.get(at.checked_sub(1)?).copied()
            }
        }
    }

    /// Every holder's number.
    fn numbers(&self) -> impl Iterator<Item = FileNo> + '_ {
        let (one, many) = match self {
            Holders::None => (None, &[][..]),
            Holders::One(n, _) => (Some(*n), &[][..]),
            Holders::Many(many) => (None, many.as_slice()),
        };
        one.into_iter().chain(many.iter().map(|(n, _)| *n))
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
    files: Files,
    /// For every object, the files that hold it (the last file in path order wins, as in
    /// `load_dir`), and its winner as of the last accepted reload.
    objects: HashMap<Id, Entry>,
    /// Objects whose files changed since the last accepted reload.
    dirty: BTreeSet<Id>,
    /// The generation of the next parse (never reused).
    next_generation: NonZeroU64,
    /// What the last walk of the directory could not read.
    walk_errors: Vec<LoadError>,
    /// Each file's share of the report, kept between reloads (see `report`).
    reports: report::Reports,
}

impl IncrementalLoader {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            files: Files::default(),
            objects: HashMap::new(),
            dirty: BTreeSet::new(),
            next_generation: NonZeroU64::MIN,
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
        let gone: Vec<Arc<Path>> = (self.files.numbers.keys())
            .filter(|p| !present.contains(&***p))
            .cloned()
            .collect();
        for path in gone {
            if let Some((no, old)) = self.files.remove(&path) {
                self.forget(no, &old);
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
                self.holds(p) && std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
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
        self.files.numbers.contains_key(path)
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
        if (self.files.of(path)).is_some_and(|c| unchanged(c.stamp, c.read_at, stamp)) {
            return false;
        }
        let read_at = SystemTime::now();
        let (hash, items, trouble) = match std::fs::read(path) {
            Ok(bytes) => {
                let hash: [u8; 32] = Sha256::digest(&bytes).into();
                if let Some(cached) = self.files.of_mut(path)
                    && cached.hash == Some(hash)
                {
                    cached.stamp = stamp;
                    cached.read_at = read_at;
                    return false;
                }
                let name = path.display().to_string();
                let (items, trouble) = match String::from_utf8(bytes) {
                    Ok(text) => kept(path, parse_file(&name, &text)),
                    // `load_dir`'s message for the same file.
                    Err(_) => (Box::default(), Some(Trouble::Unreadable(read_error(path)))),
                };
                (Some(hash), items, trouble)
            }
            Err(e) => (
                None,
                Box::default(),
                Some(Trouble::Unreadable(LoadError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })),
            ),
        };
        let generation = self.next_generation;
        self.next_generation = generation.saturating_add(1);
        // The path is allocated once, shared by the table's index and the reports.
        let key: Arc<Path> = match self.files.numbers.get_key_value(path) {
            Some((key, _)) => key.clone(),
            None => Arc::from(path),
        };
        self.reports.stale(&key);
        let file = CachedFile {
            path: key,
            stamp,
            read_at,
            hash,
            generation,
            items,
            trouble: trouble.map(Box::new),
            repeats: false,
        };
        let (no, old) = self.files.put(file);
        if let Some(old) = old {
            self.forget(no, &old);
        }
        let mut repeats = false;
        if let Some(file) = self.files.get(no) {
            for (index, item) in (0..).zip(&file.items) {
                if let Kept::Object(placed) = item {
                    let id = identity(&placed.obj);
                    let entry = self.objects.entry(id.clone()).or_default();
                    repeats |= entry.holders.insert(&self.files, no, path, index);
                    // The other files holding the object may now replace another.
                    if matches!(entry.holders, Holders::Many(_)) {
                        self.reports.stale_holders(&self.files, &entry.holders);
                    }
                    self.dirty.insert(id);
                }
            }
        }
        if let Some(file) = usize::try_from(no)
            .ok()
            .and_then(|i| self.files.slots.get_mut(i))
            .and_then(Option::as_mut)
        {
            file.repeats = repeats;
        }
        true
    }

    /// Drops the objects of the file that was number `no` from the holders.
    fn forget(&mut self, no: FileNo, old: &CachedFile) {
        for item in &old.items {
            if let Kept::Object(placed) = item {
                let id = identity(&placed.obj);
                if let Some(entry) = self.objects.get_mut(&id) {
                    entry.holders.remove(no);
                    // The files still holding the object may now replace another, or none.
                    self.reports.stale_holders(&self.files, &entry.holders);
                    if entry.holders.is_empty() && entry.baseline.is_none() {
                        self.objects.remove(&id);
                    }
                }
                self.dirty.insert(id);
            }
        }
    }

    /// The file and version of the object that wins for `id`.
    fn winner(&self, id: &Id) -> Option<(FileNo, Version)> {
        let (no, item) = self.objects.get(id)?.holders.last()?;
        let generation = self.files.get(no)?.generation;
        Some((no, Version { generation, item }))
    }

    /// Every dirty object whose winner differs from the baseline.
    fn delta(&self) -> FileDelta {
        let mut delta = FileDelta::default();
        for id in &self.dirty {
            let before = self.objects.get(id).and_then(|e| e.baseline.as_ref());
            match self.winner(id) {
                Some((no, version)) => {
                    if before == Some(&version) {
                        continue;
                    }
                    let obj = (self.files.get(no))
                        .and_then(|f| f.items.get(usize::try_from(version.item).ok()?))
                        .and_then(|item| match item {
                            Kept::Object(placed) => Some(placed.obj.clone()),
                            Kept::Warning(_) => None,
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

/// `parsed` as the loader keeps it: each object's [`DocRef`] as two numbers, without the
/// file's name (the path it is kept under gives it) nor, when it is the object's kind and key,
/// its description (`Kind namespace/name`). Those are two strings per object of the directory,
/// held for as long as its file is unchanged and read only for the warning of an object that
/// replaces another; [`doc_ref`] makes the `DocRef` again, equal to the parser's. Errors and
/// unloaded Gateways, rare, are boxed apart.
///
/// A file whose items or documents cannot be numbered in 32 bits (over four billion) is
/// refused as unreadable: there is no such file this loader could hold in memory anyway.
fn kept(path: &Path, parsed: ParsedFile) -> (Box<[Kept]>, Option<Trouble>) {
    let ParsedFile {
        items,
        errors,
        unloaded_gateways,
    } = parsed;
    let too_many = || {
        let error = LoadError::Read {
            path: path.display().to_string(),
            message: "more than 4294967295 documents or items".to_owned(),
        };
        (Box::default(), Some(Trouble::Unreadable(error)))
    };
    if u32::try_from(items.len()).is_err() {
        return too_many();
    }
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        kept.push(match item {
            Item::Warning(w) => Kept::Warning(Box::new(w)),
            Item::Object(at, obj) => {
                let (Ok(document), Ok(list_item)) = (
                    u32::try_from(at.document),
                    at.item.map(u32::try_from).transpose(),
                ) else {
                    return too_many();
                };
                let object = at.object.filter(|d| !describes(d, &obj));
                Kept::Object(Placed {
                    document,
                    item: list_item.and_then(NonZeroU32::new),
                    object: object.map(String::into_boxed_str),
                    obj,
                })
            }
        });
    }
    let trouble =
        (!errors.is_empty() || !unloaded_gateways.is_empty()).then_some(Trouble::Parsed {
            errors,
            unloaded_gateways,
        });
    (kept.into_boxed_slice(), trouble)
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

/// The [`DocRef`] the parser gave the object `placed` of the file at `path`, from what
/// [`kept`] kept of it.
fn doc_ref(path: &Path, placed: &Placed) -> DocRef {
    let object = match &placed.object {
        Some(description) => description.to_string(),
        None => {
            let (kind, key) = identity(&placed.obj);
            format!("{} {key}", kind.as_str())
        }
    };
    DocRef {
        // As `refresh` names the file to the parser.
        file: path.display().to_string(),
        document: placed.document as usize,
        item: placed.item.map(|i| i.get() as usize),
        object: Some(object),
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
