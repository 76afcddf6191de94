//! A directory of manifests as a [`ClusterSnapshot`].
//!
//! Every `.yaml`, `.yml` and `.json` file under the directory is read, recursively, in sorted
//! path order. YAML files may hold several documents; JSON files several concatenated values.
//! A `v1` `List` is expanded into its items. Objects without a namespace are put in `default`,
//! and a Secret's `stringData` is merged into `data`, as the API server would.
//!
//! Bad input never stops the load: a malformed document becomes a [`LoadError`] naming the file,
//! the document and the field, and every other document still loads. Kinds Sluice does not read
//! and fields it does not know become [`LoadWarning`]s.
//!
//! Work is linear in the input: each YAML document is parsed on its own (line numbers in errors
//! are shifted to the file's), and a document nested deeper than [`MAX_NESTING_DEPTH`] is
//! refused before it is parsed (see [`nesting`](super::nesting)).
//!
//! A document that is, or may be, a Sluice `Gateway` and does not load, and a manifest file or
//! directory that cannot be read, is recorded in [`ClusterSnapshot::unloaded_gateways`]: the
//! snapshot then never falls back to the open default instance.
//!
//! [`load_sources`] is the pure part (text in, snapshot out); [`load_dir`] only adds reading the
//! directory. Neither keeps state, so a watcher can simply call [`load_dir`] again on change.
//!
//! Layout: `walk` finds the manifest files, `documents` splits a YAML file into documents,
//! `parse` turns one file into objects, warnings and errors, `assemble` puts files together.

use std::fmt;

use crate::snapshot::{ClusterSnapshot, Kind, LiveSnapshot, ObjKey, SharedObject};

pub use super::nesting::MAX_NESTING_DEPTH;

mod assemble;
mod documents;
mod parse;
#[cfg(test)]
mod tests;
mod walk;

pub use assemble::load_sources;
pub(crate) use assemble::replacement;
pub(crate) use parse::{Item, ParsedFile, format_path as format_ignored_path, parse_file};
pub(crate) use walk::collect_manifest_paths;
pub use walk::load_dir;

/// API group of the Sluice `Gateway`.
const SLUICE_API_GROUP: &str = "sluice.dev";

/// Namespace given to objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// File name extensions read from a manifest directory.
pub const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Where a document came from: file, 1-based document index, list item, and the object it
/// claims to be (when its apiVersion, kind and name could be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRef {
    pub file: String,
    /// 1-based index of the document in the file.
    pub document: usize,
    /// 1-based index in the `items` of a `v1` `List`.
    pub item: Option<usize>,
    /// `Kind namespace/name`.
    pub object: Option<String>,
}

impl fmt::Display for DocRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        Ok(())
    }
}

/// A file or document that could not be loaded. Other documents are not affected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    /// A document is not valid YAML or JSON.
    #[error("{at}: {message}")]
    Syntax { at: DocRef, message: String },
    /// A document parsed but is not a valid object of its kind. `field` is the path of the
    /// offending field (`spec.routes[0].services[0].port`), empty for the whole object.
    #[error("{at}: {}{message}", field_prefix(.field))]
    Decode {
        at: DocRef,
        field: String,
        message: String,
    },
}

impl LoadError {
    /// Stable short label, for metrics and tests.
    pub fn label(&self) -> &'static str {
        match self {
            LoadError::Read { .. } => "read",
            LoadError::Syntax { .. } => "syntax",
            LoadError::Decode { .. } => "decode",
        }
    }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Something loaded, or skipped, that the user probably wants to know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadWarning {
    pub at: DocRef,
    pub message: String,
}

impl fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// The outcome of loading: the snapshot of everything that loaded, and what did not.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub snapshot: ClusterSnapshot,
    pub warnings: Vec<LoadWarning>,
    pub errors: Vec<LoadError>,
}

impl LoadReport {
    /// True when every document loaded.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// A change to a snapshot: objects added or replaced, and objects gone (by kind and
/// namespace/name). What [`IncrementalLoader::reload`](super::incremental::IncrementalLoader::reload)
/// returns; [`FileDelta::apply_to`] writes it to a [`LiveSnapshot`], which lists what it changed.
#[derive(Clone, Debug, Default)]
pub struct FileDelta {
    /// Shared with the loader's parsed files: the snapshot holds the same objects, not copies.
    pub upserts: Vec<SharedObject>,
    pub removals: Vec<(Kind, ObjKey)>,
}

impl FileDelta {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }

    /// Applies the change to `live` (its objects only; `unloaded_gateways` is the caller's to
    /// set). O(size of the delta × log n).
    pub fn apply_to(self, live: &mut LiveSnapshot) {
        for (kind, key) in &self.removals {
            live.remove(*kind, key);
        }
        for obj in self.upserts {
            live.upsert(obj);
        }
    }
}

/// Kind, namespace and name of an object.
pub fn identity(obj: &SharedObject) -> (Kind, ObjKey) {
    obj.identity()
}
