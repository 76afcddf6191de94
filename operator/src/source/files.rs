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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::nesting::{check_yaml_depth, value_depth};
use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};
use crate::snapshot::{ClusterSnapshot, ObjKey, Object};

pub use super::nesting::MAX_NESTING_DEPTH;

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

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

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
                    assembler.report.snapshot.apply(obj);
                }
            }
        }
    }
    assembler.report
}

/// A change to a snapshot: objects added or replaced, and objects gone (by kind and
/// namespace/name). What [`IncrementalLoader::reload`](super::incremental::IncrementalLoader::reload)
/// returns; apply it with [`FileDelta::apply_to`] or by hand.
#[derive(Clone, Debug, Default)]
pub struct FileDelta {
    pub upserts: Vec<Object>,
    pub removals: Vec<(Kind, ObjKey)>,
}

impl FileDelta {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }

    /// Applies the change to `snapshot` (its objects only; `unloaded_gateways` is the
    /// caller's to set).
    pub fn apply_to(self, snapshot: &mut ClusterSnapshot) {
        for (kind, key) in &self.removals {
            match kind {
                Kind::Gateway => drop(snapshot.gateways.remove(key)),
                Kind::IngressRoute => drop(snapshot.ingress_routes.remove(key)),
                Kind::TLSCertificateDelegation => drop(snapshot.delegations.remove(key)),
                Kind::Service => drop(snapshot.services.remove(key)),
                Kind::Endpoints => drop(snapshot.endpoints.remove(key)),
                Kind::EndpointSlice => drop(snapshot.endpoint_slices.remove(key)),
                Kind::Secret => drop(snapshot.secrets.remove(key)),
            }
        }
        for obj in self.upserts {
            snapshot.apply(obj);
        }
    }
}

/// The kinds of object a manifest directory may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Gateway,
    IngressRoute,
    TLSCertificateDelegation,
    Service,
    Endpoints,
    EndpointSlice,
    Secret,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateway",
            Kind::IngressRoute => "IngressRoute",
            Kind::TLSCertificateDelegation => "TLSCertificateDelegation",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
        }
    }
}

/// One file's documents, parsed on their own: what [`load_sources`] assembles in path order,
/// and what the incremental loader keeps per file.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParsedFile {
    /// Objects and warnings in document order. Whether an object replaces one of an earlier
    /// file is only known when files are assembled.
    pub(crate) items: Vec<Item>,
    pub(crate) errors: Vec<LoadError>,
    /// Documents that are, or may be, Gateways and did not load.
    pub(crate) unloaded_gateways: Vec<String>,
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    Warning(LoadWarning),
    Object(DocRef, Object),
}

/// Parses one file: `*.json` as JSON, anything else as YAML.
pub(crate) fn parse_file(name: &str, text: &str) -> ParsedFile {
    let mut loader = Loader::default();
    if name.to_ascii_lowercase().ends_with(".json") {
        loader.load_json(name, text);
    } else {
        loader.load_yaml(name, text);
    }
    loader.file
}

/// Puts parsed files together in order: errors, warnings, and a warning for each object that
/// replaces an earlier one of the same kind and name.
#[derive(Default)]
pub(crate) struct Assembler {
    pub(crate) report: LoadReport,
    /// Where each object came from, to report replacements.
    origins: BTreeMap<(Kind, ObjKey), DocRef>,
}

impl Assembler {
    pub(crate) fn file_errors(&mut self, file: &ParsedFile) {
        self.report.errors.extend(file.errors.iter().cloned());
        self.report
            .snapshot
            .unloaded_gateways
            .extend(file.unloaded_gateways.iter().cloned());
    }

    /// Records an object (the caller puts it in the snapshot, or not).
    pub(crate) fn object(&mut self, at: DocRef, obj: &Object) {
        if let Some(earlier) = self.origins.insert(identity(obj), at.clone()) {
            self.report.warnings.push(LoadWarning {
                at,
                message: format!(
                    "replaces the object of the same kind and name from {}: document {}",
                    earlier.file, earlier.document
                ),
            });
        }
    }
}

#[derive(Default)]
struct Loader {
    file: ParsedFile,
}

impl Loader {
    fn load_yaml(&mut self, file: &str, text: &str) {
        for (index, doc) in split_yaml_documents(text).into_iter().enumerate() {
            let at = DocRef {
                file: file.to_owned(),
                document: index + 1,
                item: None,
                object: None,
            };
            if doc.is_blank {
                continue;
            }
            if let Err(deep) = check_yaml_depth(&doc.text, MAX_NESTING_DEPTH) {
                self.syntax_error(
                    at,
                    format!(
                        "{} at line {} column {}; the document is not loaded",
                        too_deep(),
                        doc.first_line + deep.line + 1,
                        deep.column + 1
                    ),
                    &doc.text,
                );
                continue;
            }
            match serde_norway::from_str::<Value>(&doc.text) {
                Ok(value) => self.load_value(at, value),
                Err(e) => {
                    let message = shift_line_numbers(&e.to_string(), doc.first_line);
                    self.syntax_error(at, message, &doc.text);
                }
            }
        }
    }

    /// Records a document that could not be parsed. Its kind is unknown; if its text mentions
    /// the Sluice API group it may be a Gateway, and the snapshot must not fall back to the
    /// default instance.
    fn syntax_error(&mut self, at: DocRef, message: String, text: &str) {
        if text.contains(SLUICE_API_GROUP) {
            self.gateway_not_loaded(&at);
        }
        self.file.errors.push(LoadError::Syntax { at, message });
    }

    fn gateway_not_loaded(&mut self, at: &DocRef) {
        self.file.unloaded_gateways.push(at.to_string());
    }

    fn load_json(&mut self, file: &str, text: &str) {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        for (index, value) in stream.enumerate() {
            let at = DocRef {
                file: file.to_owned(),
                document: index + 1,
                item: None,
                object: None,
            };
            match value {
                Ok(value) => self.load_value(at, value),
                Err(e) => {
                    // The stream cannot resynchronise after a syntax error. serde_json refuses
                    // values nested deeper than 128 levels with this error, before building them.
                    let message = if e.to_string().starts_with("recursion limit exceeded") {
                        format!(
                            "{} (the JSON parser gave up at 128, at line {} column {}); the rest \
                             of the file is not loaded",
                            too_deep(),
                            e.line(),
                            e.column()
                        )
                    } else {
                        e.to_string()
                    };
                    self.syntax_error(at, message, text);
                    break;
                }
            }
        }
    }

    fn load_value(&mut self, mut at: DocRef, value: Value) {
        if value.is_null() {
            return;
        }
        let Some(map) = value.as_object() else {
            self.file.errors.push(LoadError::Decode {
                at,
                field: String::new(),
                message: "expected a Kubernetes object (a mapping with apiVersion and kind)"
                    .to_owned(),
            });
            return;
        };
        let text_of = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default();
        let api_version = text_of("apiVersion").to_owned();
        let kind = text_of("kind").to_owned();
        // Fail closed: anything that may be a Sluice Gateway and does not load disables the
        // default instance.
        let may_be_gateway = api_version
            .strip_prefix(SLUICE_API_GROUP)
            .is_some_and(|v| v.starts_with('/'))
            || (kind == "Gateway" && api_version.is_empty());
        if api_version.is_empty() || kind.is_empty() {
            if may_be_gateway {
                self.gateway_not_loaded(&at);
            }
            self.file.errors.push(LoadError::Decode {
                at,
                field: String::new(),
                message: "apiVersion and kind must be set".to_owned(),
            });
            return;
        }
        if at.item.is_none() && api_version == "v1" && kind == "List" {
            self.load_list(at, value);
            return;
        }
        at.object = Some(describe(&kind, map.get("metadata")));
        // Only a whole document can be too deep; list items are inside one that was checked.
        if at.item.is_none() && value_depth(&value) > MAX_NESTING_DEPTH {
            if may_be_gateway {
                self.gateway_not_loaded(&at);
            }
            self.file.errors.push(LoadError::Decode {
                at,
                field: String::new(),
                message: format!("{}; the document is not loaded", too_deep()),
            });
            return;
        }

        let decoded = match (api_version.as_str(), kind.as_str()) {
            ("contour.heptio.com/v1beta1", "IngressRoute") => self
                .decode::<IngressRoute>(&at, value)
                .map(Object::IngressRoute),
            ("contour.heptio.com/v1beta1", "TLSCertificateDelegation") => self
                .decode::<TLSCertificateDelegation>(&at, value)
                .map(Object::Delegation),
            ("sluice.dev/v1alpha1", "Gateway") => {
                let gateway = self.decode::<Gateway>(&at, value).map(Object::Gateway);
                if gateway.is_none() {
                    self.gateway_not_loaded(&at);
                }
                gateway
            }
            (_, "Gateway") if may_be_gateway => {
                self.gateway_not_loaded(&at);
                self.file.errors.push(LoadError::Decode {
                    field: "apiVersion".to_owned(),
                    message: format!(
                        "{api_version} is not a version sluice reads (sluice.dev/v1alpha1)"
                    ),
                    at,
                });
                return;
            }
            ("v1", "Service") => self.decode::<Service>(&at, value).map(Object::Service),
            #[allow(deprecated)]
            ("v1", "Endpoints") => self.decode::<Endpoints>(&at, value).map(Object::Endpoints),
            ("discovery.k8s.io/v1", "EndpointSlice") => self
                .decode::<EndpointSlice>(&at, value)
                .map(Object::EndpointSlice),
            ("v1", "Secret") => self
                .decode::<Secret>(&at, value)
                .map(|s| Object::Secret(merge_string_data(s))),
            _ => {
                self.file.items.push(Item::Warning(LoadWarning {
                    at,
                    message: format!("{api_version} {kind} is not read by sluice; skipped"),
                }));
                return;
            }
        };
        if let Some(obj) = decoded {
            self.apply(at, with_default_namespace(obj));
        }
    }

    fn load_list(&mut self, at: DocRef, value: Value) {
        let items = match value {
            Value::Object(mut map) => map.remove("items"),
            _ => None,
        };
        match items {
            Some(Value::Array(items)) => {
                for (index, item) in items.into_iter().enumerate() {
                    let at = DocRef {
                        item: Some(index + 1),
                        ..at.clone()
                    };
                    self.load_value(at, item);
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => self.file.errors.push(LoadError::Decode {
                at: DocRef {
                    object: Some("List".to_owned()),
                    ..at
                },
                field: "items".to_owned(),
                message: "expected a sequence of objects".to_owned(),
            }),
        }
    }

    /// Decodes one object, recording the field path of an error and every ignored field.
    fn decode<K: DeserializeOwned>(&mut self, at: &DocRef, value: Value) -> Option<K> {
        let mut ignored = Vec::new();
        let result = {
            let mut on_ignored = |path: serde_ignored::Path<'_>| {
                let path = format_path(&path);
                // The derived custom resources skip these; they were read to dispatch.
                if path != "apiVersion" && path != "kind" {
                    ignored.push(path);
                }
            };
            let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
            serde_path_to_error::deserialize::<_, K>(de)
        };
        match result {
            Ok(obj) => {
                for field in ignored {
                    self.file.items.push(Item::Warning(LoadWarning {
                        at: at.clone(),
                        message: format!("{field}: unknown field, ignored"),
                    }));
                }
                Some(obj)
            }
            Err(e) => {
                let field = e.path().to_string();
                self.file.errors.push(LoadError::Decode {
                    at: at.clone(),
                    field: if field == "." { String::new() } else { field },
                    message: e.into_inner().to_string(),
                });
                None
            }
        }
    }

    fn apply(&mut self, at: DocRef, obj: Object) {
        self.file.items.push(Item::Object(at, obj));
    }
}

/// The start of the error for a document nested too deep.
fn too_deep() -> String {
    format!("nested deeper than the limit of {MAX_NESTING_DEPTH} levels")
}

/// Adds `offset` to every `line N` in a parser message: the parser saw one document, the user
/// wants the file's line numbers.
fn shift_line_numbers(message: &str, offset: usize) -> String {
    const WORD: &str = "line ";
    if offset == 0 {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len() + 8);
    let mut rest = message;
    while let Some(at) = rest.find(WORD) {
        let (before, after) = rest.split_at(at + WORD.len());
        out.push_str(before);
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&n.saturating_add(offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// `Kind namespace/name` as far as the raw metadata tells.
fn describe(kind: &str, metadata: Option<&Value>) -> String {
    let field = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let namespace = field("namespace").unwrap_or(DEFAULT_NAMESPACE);
    let name = field("name").unwrap_or("<no name>");
    format!("{kind} {namespace}/{name}")
}

/// Formats an ignored field's path like `serde_path_to_error` does: `spec.routes[0].foo`.
fn format_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", format_path(parent)),
        P::Map { parent, key } => {
            let parent = format_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            format_path(parent)
        }
    }
}

/// Kind, namespace and name of an object.
pub fn identity(obj: &Object) -> (Kind, ObjKey) {
    match obj {
        Object::Gateway(o) => (Kind::Gateway, ObjKey::of(o)),
        Object::IngressRoute(o) => (Kind::IngressRoute, ObjKey::of(o)),
        Object::Delegation(o) => (Kind::TLSCertificateDelegation, ObjKey::of(o)),
        Object::Service(o) => (Kind::Service, ObjKey::of(o)),
        Object::Endpoints(o) => (Kind::Endpoints, ObjKey::of(o)),
        Object::EndpointSlice(o) => (Kind::EndpointSlice, ObjKey::of(o)),
        Object::Secret(o) => (Kind::Secret, ObjKey::of(o)),
    }
}

fn with_default_namespace(mut obj: Object) -> Object {
    fn set(meta: &mut ObjectMeta) {
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(DEFAULT_NAMESPACE.to_owned());
        }
    }
    match &mut obj {
        Object::Gateway(o) => set(&mut o.metadata),
        Object::IngressRoute(o) => set(&mut o.metadata),
        Object::Delegation(o) => set(&mut o.metadata),
        Object::Service(o) => set(&mut o.metadata),
        Object::Endpoints(o) => set(&mut o.metadata),
        Object::EndpointSlice(o) => set(&mut o.metadata),
        Object::Secret(o) => set(&mut o.metadata),
    }
    obj
}

/// `stringData` entries override `data` entries of the same key, as on the API server.
fn merge_string_data(mut secret: Secret) -> Secret {
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in string_data {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
    secret
}

/// One YAML document of a file.
#[derive(Debug, PartialEq, Eq)]
struct YamlDocument {
    /// The document's text (a `---` marker replaced by spaces, to keep columns).
    text: String,
    /// Lines of the file before the document's first line.
    first_line: usize,
    /// Only blank lines, comments and directives.
    is_blank: bool,
}

/// Splits a YAML stream at its document markers. Done by hand rather than with the parser's
/// document iterator so that a syntax error in one document does not hide the others. Sound
/// because YAML forbids `---` and `...` followed by a space or line end at the start of a line
/// anywhere except as document markers.
fn split_yaml_documents(text: &str) -> Vec<YamlDocument> {
    enum Opened {
        Start,
        Marker,
        End,
    }
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut opened = Opened::Start;
    let mut first_line = 0usize;

    let mut finish = |current: &mut String, opened: &Opened, first_line: usize| {
        let is_blank = current.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l.starts_with('%')
        });
        // Text before the first marker, or after an end marker, is a document only if it holds
        // something; text after a `---` always is one (possibly empty).
        if matches!(opened, Opened::Marker) || !is_blank {
            docs.push(YamlDocument {
                text: std::mem::take(current),
                first_line,
                is_blank,
            });
        }
        current.clear();
    };

    for (number, line) in text.lines().enumerate() {
        if let Some(rest) = marker_rest(line, "---") {
            finish(&mut current, &opened, first_line);
            opened = Opened::Marker;
            first_line = number;
            // Keep the columns of anything after the marker (`--- {a: 1}`).
            current.push_str("   ");
            current.push_str(rest);
            current.push('\n');
        } else if marker_rest(line, "...").is_some() {
            finish(&mut current, &opened, first_line);
            opened = Opened::End;
            first_line = number + 1;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    finish(&mut current, &opened, first_line);
    docs
}

/// If `line` is the document marker `marker` (alone, or followed by whitespace), what follows.
fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r'])).then_some(rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn load(text: &str) -> LoadReport {
        load_sources([("x.yaml", text)])
    }

    const ROUTE: &str = "apiVersion: contour.heptio.com/v1beta1
kind: IngressRoute
metadata:
  name: foo
spec:
  virtualhost:
    fqdn: foo.example.com
  routes:
    - match: /
      services:
        - name: s1
          port: 80
";

    #[test]
    fn loads_multi_document_yaml_into_default_namespace() {
        let text = format!(
            "---\n{ROUTE}---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s1\n  namespace: team\n"
        );
        let report = load(&text);
        assert_eq!(report.errors, vec![]);
        assert_eq!(report.warnings, vec![]);
        let key = ObjKey::new("default", "foo");
        let ir = &report.snapshot.ingress_routes[&key];
        assert_eq!(ir.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(ir.spec.routes[0].services[0].port, 80);
        assert!(
            report
                .snapshot
                .services
                .contains_key(&ObjKey::new("team", "s1"))
        );
    }

    #[test]
    fn bad_field_names_file_document_object_and_path_and_others_still_load() {
        let bad = ROUTE
            .replace("name: foo", "name: bad")
            .replace("port: 80", "port: x");
        let text = format!("{ROUTE}---\n{bad}");
        let report = load(&text);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(
            report.errors[0].to_string(),
            "x.yaml: document 2 (IngressRoute default/bad): spec.routes[0].services[0].port: \
             invalid type: string \"x\", expected i64"
        );
        assert_eq!(report.errors[0].label(), "decode");
        assert_eq!(report.snapshot.ingress_routes.len(), 1);
    }

    #[test]
    fn syntax_error_in_one_document_keeps_the_others_and_reports_file_lines() {
        let text = format!("kind: [unclosed\n---\n{ROUTE}");
        let report = load(&text);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert_eq!(report.errors[0].label(), "syntax");
        let msg = report.errors[0].to_string();
        assert!(msg.starts_with("x.yaml: document 1: "), "{msg}");
        assert_eq!(report.snapshot.ingress_routes.len(), 1);

        let text = format!("{ROUTE}---\nkind: [unclosed\n");
        let report = load(&text);
        let msg = report.errors[0].to_string();
        assert!(msg.starts_with("x.yaml: document 2: "), "{msg}");
        // Line numbers are the file's: the broken document starts on line 14.
        assert!(
            msg.contains("parsing a flow sequence at line 14 column 7"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_kinds_and_fields_are_warnings() {
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i\n---\n{}",
            ROUTE.replace(
                "      services:",
                "      permitinsecure: true\n      services:"
            )
        );
        let report = load(&text);
        assert_eq!(report.errors, vec![]);
        let warnings: Vec<String> = report.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            vec![
                "x.yaml: document 1 (Ingress default/i): networking.k8s.io/v1 Ingress is not \
                 read by sluice; skipped"
                    .to_owned(),
                "x.yaml: document 2 (IngressRoute default/foo): spec.routes[0].permitinsecure: \
                 unknown field, ignored"
                    .to_owned(),
            ]
        );
        assert_eq!(report.snapshot.ingress_routes.len(), 1);
    }

    #[test]
    fn secret_string_data_overrides_data() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  a: eA==\n  b: eA==\nstringData:\n  b: y\n  c: z\n";
        let report = load(text);
        assert_eq!(report.errors, vec![]);
        let s = &report.snapshot;
        let key = ObjKey::new("default", "s");
        assert_eq!(s.secret_data(&key, "a"), Some(&b"x"[..]));
        assert_eq!(s.secret_data(&key, "b"), Some(&b"y"[..]));
        assert_eq!(s.secret_data(&key, "c"), Some(&b"z"[..]));
        assert_eq!(s.secrets[&key].string_data, None);
    }

    #[test]
    fn lists_json_streams_and_non_objects() {
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": 3}},
            ]
        });
        let text = format!(
            "{list}\n{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"c\"}}}}"
        );
        let report = load_sources([("l.json", text.as_str()), ("n.yaml", "- 1\n- 2\n")]);
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "l.json: document 1, item 2 (Service default/b): spec.ports: invalid type: \
                 integer `3`, expected a sequence"
                    .to_owned(),
                "n.yaml: document 1: expected a Kubernetes object (a mapping with apiVersion \
                 and kind)"
                    .to_owned(),
            ]
        );
        let names: Vec<&str> = report
            .snapshot
            .services
            .keys()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, vec!["a", "c"]);
    }

    #[test]
    fn later_duplicate_replaces_earlier_with_a_warning() {
        let other = ROUTE.replace("foo.example.com", "bar.example.com");
        let report = load_sources([("a.yaml", ROUTE), ("b.yaml", other.as_str())]);
        let key = ObjKey::new("default", "foo");
        let vhost = report.snapshot.ingress_routes[&key]
            .spec
            .virtualhost
            .clone();
        assert_eq!(vhost.map(|v| v.fqdn).as_deref(), Some("bar.example.com"));
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(
            report.warnings[0].to_string(),
            "b.yaml: document 1 (IngressRoute default/foo): replaces the object of the same \
             kind and name from a.yaml: document 1"
        );
    }

    #[test]
    fn missing_kind_is_an_error() {
        let report = load("metadata:\n  name: x\n");
        assert_eq!(
            report.errors[0].to_string(),
            "x.yaml: document 1: apiVersion and kind must be set"
        );
    }

    #[test]
    fn split_counts_documents_like_yaml() {
        let docs = split_yaml_documents("# header\n%YAML 1.2\n---\na: 1\n---\n---\nb: 2\n...\n");
        let blank: Vec<bool> = docs.iter().map(|d| d.is_blank).collect();
        assert_eq!(blank, vec![false, true, false]);
        assert_eq!(docs[0].text, "   \na: 1\n");
        assert_eq!(docs[0].first_line, 2);
        assert_eq!(docs[2].first_line, 5);
        let docs = split_yaml_documents("a: 1\n--- {b: 2}\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].text, "    {b: 2}\n");
        assert_eq!(docs[1].first_line, 1);
        // A marker needs a space or line end after it.
        assert_eq!(split_yaml_documents("a: |\n ---x\n---x: 1\n").len(), 1);
    }

    fn service_doc(i: usize) -> String {
        format!("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\n")
    }

    #[test]
    fn forty_thousand_documents_in_one_file_load() {
        let text: String = (0..40_000).map(service_doc).collect();
        let started = std::time::Instant::now();
        let report = load(&text);
        println!(
            "{} bytes, 40000 documents: loaded in {:?}",
            text.len(),
            started.elapsed()
        );
        assert_eq!(report.errors, vec![]);
        assert_eq!(report.snapshot.services.len(), 40_000);
        assert!(
            report
                .snapshot
                .services
                .contains_key(&ObjKey::new("default", "s39999"))
        );
    }

    #[test]
    fn a_file_of_document_markers_loads_nothing_quickly() {
        let text = "---\n".repeat(390 * 1024 / 4);
        let started = std::time::Instant::now();
        let report = load(&text);
        println!(
            "{} bytes of `---` lines: loaded in {:?}",
            text.len(),
            started.elapsed()
        );
        assert_eq!(report.errors, vec![]);
        assert_eq!(report.warnings, vec![]);
        assert!(report.snapshot.services.is_empty());
    }

    /// A good document, the given one, and another good document: only the middle one fails.
    fn load_between(doc: &str) -> LoadReport {
        let text = format!("{}---\n{doc}{}", service_doc(1), service_doc(2));
        let report = load(&text);
        assert_eq!(report.snapshot.services.len(), 2, "{:?}", report.errors);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        report
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}\n", "[".repeat(100_000));
        let started = std::time::Instant::now();
        let report = load_between(&deep);
        println!("100000 `[`: refused in {:?}", started.elapsed());
        // The document's `---` is line 6. With the top-level mapping, the 64th `[` (column 67)
        // is the 65th level.
        assert_eq!(
            report.errors[0].to_string(),
            "x.yaml: document 2: nested deeper than the limit of 64 levels at line 7 column 67; \
             the document is not loaded"
        );
        let deep_map = format!("a: {}1\n", "{b: ".repeat(100_000));
        let report = load_between(&deep_map);
        assert!(
            report.errors[0]
                .to_string()
                .contains("nested deeper than the limit of 64 levels at line 7 column "),
            "{}",
            report.errors[0]
        );
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let compact = format!("a:\n{}x\n", "- ".repeat(100_000));
        let report = load_between(&compact);
        assert_eq!(
            report.errors[0].to_string(),
            "x.yaml: document 2: nested deeper than the limit of 64 levels at line 8 column 127; \
             the document is not loaded"
        );
        let indented: String = (0..200)
            .map(|level| format!("{}k{level}:\n", " ".repeat(level)))
            .collect();
        let report = load_between(&indented);
        assert_eq!(
            report.errors[0].to_string(),
            "x.yaml: document 2: nested deeper than the limit of 64 levels at line 71 column 65; \
             the document is not loaded"
        );
    }

    #[test]
    fn nesting_up_to_the_limit_loads_and_brackets_in_strings_do_not_count() {
        // 62 levels below the top-level mapping and `metadata`: 64 in all.
        let nested = format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: n\n  annotations:\n    a: '{}'\n    b: \"{}\"\n    c: |\n      {}\n    d: x[{{y # [[[[\n  labels: {{}}\nspec:\n  x: {}{}\n",
            "[".repeat(500),
            "{".repeat(500),
            "[".repeat(500),
            "[".repeat(62),
            "]".repeat(62),
        );
        let report = load(&nested);
        // The unknown field `spec.x` is a warning; the depth is accepted.
        assert_eq!(report.errors, vec![]);
        assert_eq!(report.snapshot.services.len(), 1);
        let too_deep = nested.replace(
            &format!("{}{}", "[".repeat(62), "]".repeat(62)),
            &format!("{}{}", "[".repeat(63), "]".repeat(63)),
        );
        let report = load(&too_deep);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(
            report.errors[0]
                .to_string()
                .contains("nested deeper than the limit of 64 levels at line 13 column 68"),
            "{}",
            report.errors[0]
        );
    }

    #[test]
    fn syntax_errors_in_later_documents_report_file_lines() {
        let text = format!(
            "{}{}---\n\nkind: Service\nspec: {{ports: [1, 2}}\n",
            service_doc(1),
            service_doc(2)
        );
        let report = load(&text);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        let msg = report.errors[0].to_string();
        // Both positions libyaml reports are the file's.
        assert!(msg.starts_with("x.yaml: document 3: "), "{msg}");
        assert!(
            msg.ends_with(
                "at line 14 column 20, while parsing a flow sequence at line 14 column 15"
            ),
            "{msg}"
        );
        assert!(!msg.contains("line 4 "), "{msg}");
        assert_eq!(report.snapshot.services.len(), 2);
    }

    #[test]
    fn shift_line_numbers_adds_the_offset_to_every_line() {
        assert_eq!(
            shift_line_numbers(
                "x at line 2 column 3, while parsing y at line 10 column 1",
                5
            ),
            "x at line 7 column 3, while parsing y at line 15 column 1"
        );
        assert_eq!(shift_line_numbers("no lines here", 5), "no lines here");
        assert_eq!(shift_line_numbers("line x", 5), "line x");
    }

    #[test]
    fn json_nesting_is_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"after"}}"#;
        // Deeper than the limit but within serde_json's own: refused, the stream goes on.
        let text = format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"deep"}},"spec":{{"x":{}}}}}{svc}"#,
            deep(70)
        );
        let report = load_sources([("d.json", text.as_str())]);
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "d.json: document 1 (Service default/deep): nested deeper than the limit of 64 \
                 levels; the document is not loaded"
                    .to_owned()
            ]
        );
        let names: Vec<&str> = report
            .snapshot
            .services
            .keys()
            .map(|k| k.name.as_str())
            .collect();
        assert_eq!(names, vec!["after"]);
        // serde_json stops at 128 levels before building anything; the stream cannot go on.
        let text = format!("{svc}\n{}", deep(100_000));
        let report = load_sources([("d.json", text.as_str())]);
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            vec![
                "d.json: document 2: nested deeper than the limit of 64 levels (the JSON parser \
                 gave up at 128, at line 2 column 128); the rest of the file is not loaded"
                    .to_owned()
            ]
        );
        assert_eq!(report.snapshot.services.len(), 1);
    }

    const GATEWAY: &str = "apiVersion: sluice.dev/v1alpha1
kind: Gateway
metadata:
  name: team-a
  namespace: sluice-system
spec:
  ingressClassName: team-a
";

    #[test]
    fn gateways_that_do_not_load_are_recorded() {
        let report = load(GATEWAY);
        assert_eq!(report.errors, vec![]);
        assert_eq!(report.snapshot.gateways.len(), 1);
        assert!(report.snapshot.unloaded_gateways.is_empty());

        let cases = [
            // A type error in the spec.
            GATEWAY.replace("ingressClassName: team-a", "rootNamespaces: 3"),
            // A version sluice does not read.
            GATEWAY.replace("v1alpha1", "v1"),
            // No apiVersion.
            GATEWAY.replace("apiVersion: sluice.dev/v1alpha1\n", ""),
            // Not YAML at all: it mentions the Sluice API group, so it may be a Gateway.
            GATEWAY.replace("spec:", "spec: [unclosed"),
            // Too deep to parse.
            format!("{GATEWAY}  x: {}\n", "[".repeat(100)),
            // Parsed, but too deep.
            format!("{GATEWAY}  x:\n{}y\n", "  - ".repeat(100)),
        ];
        for text in cases {
            let report = load(&text);
            assert_eq!(report.errors.len(), 1, "{text}: {:?}", report.errors);
            assert!(report.snapshot.gateways.is_empty(), "{text}");
            let at = match &report.errors[0] {
                LoadError::Syntax { at, .. } | LoadError::Decode { at, .. } => at.to_string(),
                LoadError::Read { path, .. } => path.clone(),
            };
            assert_eq!(report.snapshot.unloaded_gateways, vec![at], "{text}");
        }

        // Other kinds that fail, and other APIs' Gateways, are not Sluice Gateways.
        let report = load(
            "apiVersion: v1\nkind: Service\nspec: 3\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\n---\n[unclosed\n",
        );
        assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
        assert!(report.snapshot.unloaded_gateways.is_empty());
    }

    /// The depth pre-scan agrees with the parser on every YAML document in the repository.
    #[test]
    fn depth_scan_agrees_with_the_parser_on_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stack = vec![
            root.join("examples"),
            root.join("config"),
            root.join("crds"),
        ];
        stack.push(root.join("operator/tests"));
        let mut compared = 0;
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !is_manifest(&path) || path.extension().is_some_and(|e| e == "json") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for doc in split_yaml_documents(&text) {
                    let Ok(value) = serde_norway::from_str::<Value>(&doc.text) else {
                        continue;
                    };
                    let depth = value_depth(&value);
                    let scanned = (0..=depth).find(|l| check_yaml_depth(&doc.text, *l).is_ok());
                    assert_eq!(scanned, Some(depth), "{}: {}", path.display(), doc.text);
                    compared += 1;
                }
            }
        }
        println!("{compared} documents compared");
        assert!(compared > 50, "{compared}");
    }

    #[test]
    fn load_dir_reads_sorted_recursive_and_skips_hidden_and_other_files() {
        let dir = std::env::temp_dir().join(format!("sluice-files-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join(".hidden")).unwrap();
        let svc = |name: &str, port: u16| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  ports:\n  - port: {port}\n"
            )
        };
        std::fs::write(dir.join("b.yml"), svc("s", 2)).unwrap();
        std::fs::write(dir.join("a.yaml"), svc("s", 1)).unwrap();
        std::fs::write(dir.join("sub/c.yaml"), svc("t", 3)).unwrap();
        std::fs::write(dir.join(".hidden/d.yaml"), svc("u", 4)).unwrap();
        std::fs::write(dir.join("notes.txt"), "not yaml: [").unwrap();
        let report = load_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(report.errors, vec![]);
        let services = &report.snapshot.services;
        let names: Vec<&str> = services.keys().map(|k| k.name.as_str()).collect();
        assert_eq!(names, vec!["s", "t"]);
        let port = |name: &str| {
            services[&ObjKey::new("default", name)]
                .spec
                .as_ref()
                .unwrap()
                .ports
                .as_ref()
                .unwrap()[0]
                .port
        };
        // b.yml sorts after a.yaml and wins.
        assert_eq!(port("s"), 2);
        assert_eq!(report.warnings.len(), 1);
    }

    #[test]
    fn an_unreadable_manifest_file_may_be_a_gateway() {
        let dir = std::env::temp_dir().join(format!("sluice-unread-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), ROUTE).unwrap();
        // Not UTF-8: read_to_string fails.
        std::fs::write(dir.join("b.yaml"), b"kind: Gateway\n\xff\xfe\n").unwrap();
        let report = load_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert_eq!(report.errors[0].label(), "read");
        assert_eq!(report.snapshot.ingress_routes.len(), 1);
        let unloaded = &report.snapshot.unloaded_gateways;
        assert_eq!(unloaded.len(), 1);
        assert!(unloaded[0].ends_with("b.yaml"), "{unloaded:?}");
    }

    #[test]
    fn load_dir_accepts_a_single_file() {
        let file =
            std::env::temp_dir().join(format!("sluice-file-test-{}.yaml", std::process::id()));
        std::fs::write(&file, ROUTE).unwrap();
        let report = load_dir(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(report.errors, vec![]);
        assert_eq!(report.snapshot.ingress_routes.len(), 1);
    }

    #[test]
    fn load_dir_of_missing_directory_fails() {
        let err = load_dir(Path::new("/nonexistent/sluice-manifests")).unwrap_err();
        assert_eq!(err.label(), "read");
        assert!(
            err.to_string()
                .starts_with("/nonexistent/sluice-manifests: ")
        );
    }
}
