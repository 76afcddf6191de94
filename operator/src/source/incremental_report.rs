//! The loader's report (warnings, errors, unloaded Gateways of the whole directory, in
//! `load_dir`'s order), kept per file: a reload works out again only the files whose share can
//! have changed, and puts the report together from the files that have something to report.
//!
//! A file's share is its own (its parse errors, unloaded Gateways and warnings, or the error of
//! a file that could not be read) plus one warning for each object that replaces an earlier one
//! of the same kind and name: the one before it in the same file, or else the last one in the
//! file before it in path order among those holding the object. So a file's share changes only
//! when the file changes, or when a file holding one of its objects comes, goes or changes:
//! those are marked stale by the loader (`stale`, `stale_holders`), and nothing else is
//! looked at. The work of a reload is proportional to the files changed, the files sharing an
//! object with them, and the size of the report, not to the directory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::{CachedFile, Content, Holders, Id, IncrementalLoader, Reload, doc_ref};
use crate::source::files::{
    DocRef, FileDelta, Item, LoadError, LoadWarning, identity, replacement,
};

/// Each file's share of the report, for the files that have one.
#[derive(Default)]
pub(super) struct Reports {
    /// Files with something to report (a read error, parse errors, unloaded Gateways or
    /// warnings), in path order, each with its warnings in document order.
    noted: BTreeMap<Arc<Path>, Vec<LoadWarning>>,
    /// Files whose share must be worked out again.
    stale: BTreeSet<Arc<Path>>,
    /// How many files' shares the last report worked out again.
    pub(super) reworked: usize,
}

impl Reports {
    /// `path` changed (or is new).
    pub(super) fn stale(&mut self, path: &Arc<Path>) {
        self.stale.insert(path.clone());
    }

    /// Every file holding an object some change touched.
    pub(super) fn stale_holders(&mut self, holders: &Holders) {
        for path in holders.paths() {
            if !self.stale.contains(path) {
                self.stale.insert(path.clone());
            }
        }
    }

    /// `path` is no longer in the directory.
    pub(super) fn gone(&mut self, path: &Path) {
        self.noted.remove(path);
        self.stale.remove(path);
    }
}

impl IncrementalLoader {
    /// Warnings, errors and unloaded Gateways of the whole directory, in `load_dir`'s order:
    /// walk errors, unreadable files, then each file's documents in path order.
    pub(super) fn report(&mut self, walk_errors: Vec<LoadError>) -> Reload {
        let stale = std::mem::take(&mut self.reports.stale);
        self.reports.reworked = stale.len();
        for path in stale {
            let share = self.files.get(&path).and_then(|file| {
                let warnings = self.warnings_of(&path, file);
                has_report(file, &warnings).then_some(warnings)
            });
            match share {
                Some(warnings) => {
                    self.reports.noted.insert(path, warnings);
                }
                None => {
                    self.reports.noted.remove(&path);
                }
            }
        }
        let mut errors = walk_errors;
        let noted = || {
            self.reports
                .noted
                .iter()
                .filter_map(|(path, w)| Some((self.files.get(path)?, w)))
        };
        for (file, _) in noted() {
            if let Content::Unreadable(e) = &file.content {
                errors.push((**e).clone());
            }
        }
        let mut unloaded_gateways: Vec<String> = errors
            .iter()
            .filter_map(|e| match e {
                LoadError::Read { path, .. } => Some(path.clone()),
                LoadError::Syntax { .. } | LoadError::Decode { .. } => None,
            })
            .collect();
        let mut warnings = Vec::new();
        for (file, file_warnings) in noted() {
            if let Content::Parsed(parsed) = &file.content {
                errors.extend(parsed.errors.iter().cloned());
                unloaded_gateways.extend(parsed.unloaded_gateways.iter().cloned());
                warnings.extend(file_warnings.iter().cloned());
            }
        }
        Reload {
            delta: FileDelta::default(),
            warnings,
            errors,
            unloaded_gateways,
            reparsed: 0,
        }
    }

    /// The warnings of the file at `path`, in document order: its own, and one for each object
    /// that replaces an earlier one.
    fn warnings_of(&self, path: &Path, file: &CachedFile) -> Vec<LoadWarning> {
        let Content::Parsed(parsed) = &file.content else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        // Where each object was last seen in this file (only needed when one repeats).
        let mut seen: HashMap<Id, DocRef> = HashMap::new();
        for item in &parsed.items {
            match item {
                Item::Warning(w) => warnings.push(w.clone()),
                Item::Object(at, obj) => {
                    let id = identity(obj);
                    let earlier = match seen.get(&id) {
                        Some(earlier) => Some(earlier.clone()),
                        None => self.last_before(&id, path),
                    };
                    if earlier.is_none() && !file.repeats {
                        continue;
                    }
                    let at = doc_ref(path, at, obj);
                    if let Some(earlier) = earlier {
                        warnings.push(replacement(at.clone(), &earlier));
                    }
                    if file.repeats {
                        seen.insert(id, at);
                    }
                }
            }
        }
        warnings
    }

    /// Where the object `id` last appears in the files before `path` in path order.
    fn last_before(&self, id: &Id, path: &Path) -> Option<DocRef> {
        let (before, index) = self.objects.get(id)?.holders.before(path)?;
        match &self.files.get(before)?.content {
            Content::Parsed(parsed) => match parsed.items.get(index)? {
                Item::Object(at, obj) => Some(doc_ref(before, at, obj)),
                Item::Warning(_) => None,
            },
            Content::Unreadable(_) => None,
        }
    }
}

/// Whether `file`, with `warnings`, has anything to report.
fn has_report(file: &CachedFile, warnings: &[LoadWarning]) -> bool {
    match &file.content {
        Content::Unreadable(_) => true,
        Content::Parsed(parsed) => {
            !warnings.is_empty()
                || !parsed.errors.is_empty()
                || !parsed.unloaded_gateways.is_empty()
        }
    }
}
