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

use super::{CachedFile, Files, Holders, Id, IncrementalLoader, Kept, Reload, Trouble, doc_ref};
use crate::source::files::{DocRef, FileDelta, LoadError, LoadWarning, identity, replacement};

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
    pub(super) fn stale_holders(&mut self, files: &Files, holders: &Holders) {
        for path in holders.numbers().filter_map(|no| files.path(no)) {
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
            let share = self.files.of(&path).and_then(|file| {
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
                .filter_map(|(path, w)| Some((self.files.of(path)?, w)))
        };
        for (file, _) in noted() {
            if let Some(Trouble::Unreadable(e)) = file.trouble.as_deref() {
                errors.push(e.clone());
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
            match file.trouble.as_deref() {
                Some(Trouble::Unreadable(_)) => continue,
                Some(Trouble::Parsed {
                    errors: file_errors,
                    unloaded_gateways: file_gateways,
                }) => {
                    errors.extend(file_errors.iter().cloned());
                    unloaded_gateways.extend(file_gateways.iter().cloned());
                }
                None => {}
            }
            warnings.extend(file_warnings.iter().cloned());
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
        let mut warnings = Vec::new();
        // Where each object was last seen in this file (only needed when one repeats).
        let mut seen: HashMap<Id, DocRef> = HashMap::new();
        for item in &file.items {
            match item {
                Kept::Warning(w) => warnings.push((**w).clone()),
                Kept::Object(placed) => {
                    let id = identity(&placed.obj);
                    let earlier = match seen.get(&id) {
                        Some(earlier) => Some(earlier.clone()),
                        None => self.last_before(&id, path),
                    };
                    if earlier.is_none() && !file.repeats {
                        continue;
                    }
                    let at = doc_ref(path, placed);
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
        let (before, index) = (self.objects.get(id)?.holders).before(&self.files, path)?;
        let file = self.files.get(before)?;
        match file.items.get(usize::try_from(index).ok()?)? {
            Kept::Object(placed) => Some(doc_ref(&file.path, placed)),
            Kept::Warning(_) => None,
        }
    }
}

/// Whether `file`, with `warnings`, has anything to report.
fn has_report(file: &CachedFile, warnings: &[LoadWarning]) -> bool {
    // `trouble` is there only when the file has errors or unloaded Gateways (`kept`).
    file.trouble.is_some() || !warnings.is_empty()
}
