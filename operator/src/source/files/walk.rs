//! Reading a manifest directory: which files are manifests, in which order.

use std::path::{Path, PathBuf};

use super::assemble::load_sources;
use super::{LoadError, LoadReport, MANIFEST_EXTENSIONS};

/// Loads every manifest under `dir` (or the one file `dir` names). Fails only when `dir` itself
/// cannot be read; unreadable files and bad documents are reported in [`LoadReport::errors`].
pub fn load_dir(dir: &Path) -> Result<LoadReport, LoadError> {
    let mut paths = Vec::new();
    let mut read_errors = Vec::new();
    if dir.is_file() {
        paths.push(dir.to_path_buf());
    } else {
        let top = std::fs::read_dir(dir).map_err(|e| LoadError::Read {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        collect_manifest_paths(dir, top, &mut paths, &mut read_errors);
        paths.sort();
    }

    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((path.display().to_string(), text)),
            Err(e) => read_errors.push(LoadError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
    let mut report = load_sources(sources);
    // What could not be read may hold a Gateway: fail closed.
    let mut unread: Vec<String> = read_errors
        .iter()
        .filter_map(|e| match e {
            LoadError::Read { path, .. } => Some(path.clone()),
            LoadError::Syntax { .. } | LoadError::Decode { .. } => None,
        })
        .collect();
    unread.append(&mut report.snapshot.unloaded_gateways);
    report.snapshot.unloaded_gateways = unread;
    read_errors.append(&mut report.errors);
    report.errors = read_errors;
    Ok(report)
}

/// Walks a directory. Entries whose name starts with `.` are skipped (editor files, `.git`,
/// the `..data` links of a mounted ConfigMap); symbolic links to files are followed, symbolic
/// links to directories are not (no loops).
pub(crate) fn collect_manifest_paths(
    dir: &Path,
    entries: std::fs::ReadDir,
    paths: &mut Vec<PathBuf>,
    errors: &mut Vec<LoadError>,
) {
    let read_error = |path: &Path, e: std::io::Error| LoadError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(read_error(dir, e));
                continue;
            }
        };
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                errors.push(read_error(&path, e));
                continue;
            }
        };
        if file_type.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(sub) => collect_manifest_paths(&path, sub, paths, errors),
                Err(e) => errors.push(read_error(&path, e)),
            }
        } else if is_manifest(&path) && (file_type.is_file() || path.is_file()) {
            paths.push(path);
        }
    }
}

pub(super) fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}
