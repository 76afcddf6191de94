//! Putting parsed files together into one report, in path order.

use std::collections::BTreeMap;

use crate::snapshot::{ObjKey, SharedObject};

use super::parse::{Item, ParsedFile, parse_file};
use super::{DocRef, LoadReport, LoadWarning, identity};
use crate::snapshot::Kind;

/// Loads `(file name, text)` pairs in the given order; a later object with the same kind,
/// namespace and name replaces an earlier one (with a warning). Files named `*.json` are read
/// as JSON, everything else as YAML.
pub fn load_sources<I, S, T>(sources: I) -> LoadReport
where
    I: IntoIterator<Item = (S, T)>,
    S: AsRef<str>,
    T: AsRef<str>,
{
    let mut assembler = Assembler::default();
    for (name, text) in sources {
        let file = parse_file(name.as_ref(), text.as_ref());
        assembler.file_errors(&file);
        for item in file.items {
            match item {
                Item::Warning(w) => assembler.report.warnings.push(w),
                Item::Object(at, obj) => {
                    assembler.object(at, &obj);
                    assembler.report.snapshot.apply_shared(obj);
                }
            }
        }
    }
    assembler.report
}

/// Puts parsed files together in order: errors, warnings, and a warning for each object that
/// replaces an earlier one of the same kind and name.
#[derive(Default)]
struct Assembler {
    report: LoadReport,
    /// Where each object came from, to report replacements.
    origins: BTreeMap<(Kind, ObjKey), DocRef>,
}

impl Assembler {
    fn file_errors(&mut self, file: &ParsedFile) {
        self.report.errors.extend(file.errors.iter().cloned());
        self.report
            .snapshot
            .unloaded_gateways
            .extend(file.unloaded_gateways.iter().cloned());
    }

    /// Records an object (the caller puts it in the snapshot, or not).
    fn object(&mut self, at: DocRef, obj: &SharedObject) {
        if let Some(earlier) = self.origins.insert(identity(obj), at.clone()) {
            self.report.warnings.push(replacement(at, &earlier));
        }
    }
}

/// The warning for the object at `at`, which replaces the one at `earlier`.
pub(crate) fn replacement(at: DocRef, earlier: &DocRef) -> LoadWarning {
    LoadWarning {
        at,
        message: format!(
            "replaces the object of the same kind and name from {}: document {}",
            earlier.file, earlier.document
        ),
    }
}
