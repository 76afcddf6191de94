//! Parsing one file's documents into objects, warnings and errors.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Endpoints, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::traefik;
use crate::api::{Gateway, IngressRoute, TLSCertificateDelegation};
use crate::snapshot::{Object, SharedObject};
use crate::source::nesting::{check_yaml_depth, value_depth};

use super::documents::split_yaml_documents;

use super::{
    DEFAULT_NAMESPACE, DocRef, LoadError, LoadWarning, MAX_NESTING_DEPTH, SLUICE_API_GROUP,
};

/// One file's documents, parsed on their own: what [`load_sources`](super::load_sources)
/// assembles in path order, and what the incremental loader keeps per file.
///
/// Held for as long as the file is unchanged (one per file of the directory), so each list is a
/// boxed slice of its own length: no spare capacity, and a word less each than a `Vec`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParsedFile {
    /// Objects and warnings in document order. Whether an object replaces one of an earlier
    /// file is only known when files are assembled.
    pub(crate) items: Box<[Item]>,
    pub(crate) errors: Box<[LoadError]>,
    /// Documents that are, or may be, Gateways and did not load.
    pub(crate) unloaded_gateways: Box<[String]>,
}

/// An object is kept as the snapshot will hold it (`Arc`): the incremental loader's parsed
/// files and the snapshot share one copy, and an item is a few words, not the size of the
/// largest kind (a `Vec<Object>` reserves that for every object).
#[derive(Clone, Debug)]
pub(crate) enum Item {
    Warning(LoadWarning),
    Object(DocRef, SharedObject),
}

/// Parses one file: `*.json` as JSON, anything else as YAML.
pub(crate) fn parse_file(name: &str, text: &str) -> ParsedFile {
    let mut loader = Loader::default();
    if name.to_ascii_lowercase().ends_with(".json") {
        loader.load_json(name, text);
    } else {
        loader.load_yaml(name, text);
    }
    // Kept for as long as the file is unchanged: without spare capacity (a file of one object
    // would otherwise keep room for four items).
    ParsedFile {
        items: loader.items.into_boxed_slice(),
        errors: loader.errors.into_boxed_slice(),
        unloaded_gateways: loader.unloaded_gateways.into_boxed_slice(),
    }
}

#[derive(Default)]
pub(super) struct Loader {
    items: Vec<Item>,
    errors: Vec<LoadError>,
    unloaded_gateways: Vec<String>,
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
        self.errors.push(LoadError::Syntax { at, message });
    }

    fn gateway_not_loaded(&mut self, at: &DocRef) {
        self.unloaded_gateways.push(at.to_string());
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
            self.errors.push(LoadError::Decode {
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
            self.errors.push(LoadError::Decode {
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
            self.errors.push(LoadError::Decode {
                at,
                field: String::new(),
                message: format!("{}; the document is not loaded", too_deep()),
            });
            return;
        }

        let decoded = match (api_version.as_str(), kind.as_str()) {
            ("contour.heptio.com/v1beta1", "IngressRoute") => self
                .decode::<IngressRoute>(&at, value)
                .map(|ir| Object::IngressRoute(without_unread(ir))),
            ("contour.heptio.com/v1beta1", "TLSCertificateDelegation") => self
                .decode::<TLSCertificateDelegation>(&at, value)
                .map(|d| Object::Delegation(without_unread(d))),
            ("sluice.dev/v1alpha1", "Gateway") => {
                let gateway = self.decode::<Gateway>(&at, value).map(Object::Gateway);
                if gateway.is_none() {
                    self.gateway_not_loaded(&at);
                }
                gateway
            }
            (_, "Gateway") if may_be_gateway => {
                self.gateway_not_loaded(&at);
                self.errors.push(LoadError::Decode {
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
            // Decoded even when they do not fit the types: such an object is `invalid` with the
            // decoder's message, and unknown fields make it invalid too (the DAG names them).
            (_, "IngressRoute") if traefik::Group::of_api_version(&api_version).is_some() => {
                traefik::decode::<traefik::IngressRoute>(value).map(Object::TraefikRoute)
            }
            (_, "Middleware") if traefik::Group::of_api_version(&api_version).is_some() => {
                traefik::decode::<traefik::Middleware>(value).map(Object::TraefikMiddleware)
            }
            (_, "IngressRouteTCP") if traefik::Group::of_api_version(&api_version).is_some() => {
                traefik::decode::<traefik::IngressRouteTCP>(value).map(Object::TraefikTcpRoute)
            }
            (_, "TLSOption") if traefik::Group::of_api_version(&api_version).is_some() => {
                traefik::decode::<traefik::TLSOption>(value).map(Object::TraefikTlsOption)
            }
            (_, "TLSStore") if traefik::Group::of_api_version(&api_version).is_some() => {
                traefik::decode::<traefik::TLSStore>(value).map(Object::TraefikTlsStore)
            }
            (_, "TraefikService") if traefik::Group::of_api_version(&api_version).is_some() => {
                traefik::decode::<traefik::TraefikService>(value).map(Object::TraefikService)
            }
            (_, "ServersTransport") if traefik::Group::of_api_version(&api_version).is_some() => {
                traefik::decode::<traefik::ServersTransport>(value).map(Object::TraefikTransport)
            }
            _ => {
                self.items.push(Item::Warning(LoadWarning {
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
            Some(_) => self.errors.push(LoadError::Decode {
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
                    self.items.push(Item::Warning(LoadWarning {
                        at: at.clone(),
                        message: format!("{field}: unknown field, ignored"),
                    }));
                }
                Some(obj)
            }
            Err(e) => {
                let field = e.path().to_string();
                self.errors.push(LoadError::Decode {
                    at: at.clone(),
                    field: if field == "." { String::new() } else { field },
                    message: e.into_inner().to_string(),
                });
                None
            }
        }
    }

    fn apply(&mut self, at: DocRef, obj: Object) {
        self.items.push(Item::Object(at, obj.into()));
    }
}

/// The start of the error for a document nested too deep.
pub(super) fn too_deep() -> String {
    format!("nested deeper than the limit of {MAX_NESTING_DEPTH} levels")
}

/// Adds `offset` to every `line N` in a parser message: the parser saw one document, the user
/// wants the file's line numbers.
pub(super) fn shift_line_numbers(message: &str, offset: usize) -> String {
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
pub(super) fn describe(kind: &str, metadata: Option<&Value>) -> String {
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
pub(crate) fn format_path(path: &serde_ignored::Path<'_>) -> String {
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

pub(super) fn with_default_namespace(mut obj: Object) -> Object {
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
        Object::TraefikRoute(o) => set(&mut o.metadata),
        Object::TraefikMiddleware(o) => set(&mut o.metadata),
        Object::TraefikTcpRoute(o) => set(&mut o.metadata),
        Object::TraefikTlsOption(o) => set(&mut o.metadata),
        Object::TraefikTlsStore(o) => set(&mut o.metadata),
        Object::TraefikService(o) => set(&mut o.metadata),
        Object::TraefikTransport(o) => set(&mut o.metadata),
    }
    obj
}

/// `stringData` entries override `data` entries of the same key, as on the API server.
pub(super) fn merge_string_data(mut secret: Secret) -> Secret {
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in string_data {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
    secret
}

/// `obj` without the metadata nothing reads (managed fields, kubectl's last-applied copy:
/// manifests exported with `kubectl get -o yaml` carry both).
fn without_unread<K: kube::Resource>(mut obj: K) -> K {
    crate::source::lenient::strip_unread_meta(obj.meta_mut());
    obj
}
