//! Envoy's JSON form of resources (proto3 JSON, proto field names, `@type` on every `Any`), for
//! `sluice render` and for feeding real Envoy in tests.
//!
//! The generated Rust types carry no serde support, so messages are re-read through
//! `prost-reflect` with the descriptors `envoy-types` ships (copied into OUT_DIR by `build.rs`).

use std::sync::LazyLock;

use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Map, Value};

use super::envoy::inline_string;
use super::{Resource, Resources};

/// Shown instead of a private key when rendering with redaction.
pub const REDACTED: &str = "[redacted]";

static ENVOY_DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));

static POOL: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(ENVOY_DESCRIPTORS).map_err(|e| e.to_string()));

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the bundled Envoy protobuf descriptors do not load: {0}")]
    Descriptors(String),
    #[error("no protobuf descriptor for {0}")]
    UnknownType(String),
    #[error("re-reading a {type_name}: {message}")]
    Decode { type_name: String, message: String },
    #[error("rendering a {type_name} as JSON: {message}")]
    Render { type_name: String, message: String },
}

impl JsonError {
    /// Stable short label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Descriptors(_) => "descriptors",
            Self::UnknownType(_) => "unknown_type",
            Self::Decode { .. } => "decode",
            Self::Render { .. } => "render",
        }
    }
}

/// Every resource as `{"listeners":[],"routes":[],"scoped_routes":[],"clusters":[],
/// "endpoints":[],"secrets":[]}`,
/// each list in name order. With `redact_private_keys`, every private key reads
/// [`REDACTED`].
pub fn to_json(resources: &Resources, redact_private_keys: bool) -> Result<Value, JsonError> {
    let secrets: Vec<Resource<Secret>> = resources
        .secrets
        .iter()
        .map(|s| Resource {
            name: s.name.clone(),
            message: if redact_private_keys {
                redacted(&s.message)
            } else {
                s.message.clone()
            },
        })
        .collect();
    let mut out = Map::new();
    out.insert("listeners".into(), list_json(&resources.listeners)?);
    out.insert("routes".into(), list_json(&resources.routes)?);
    out.insert("scoped_routes".into(), list_json(&resources.scoped_routes)?);
    out.insert("clusters".into(), list_json(&resources.clusters)?);
    out.insert("endpoints".into(), list_json(&resources.endpoints)?);
    out.insert("secrets".into(), list_json(&secrets)?);
    Ok(Value::Object(out))
}

fn list_json<T: Message + Name>(list: &[Resource<T>]) -> Result<Value, JsonError> {
    list.iter()
        .map(|r| message_to_json(&r.message))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// One message in Envoy's JSON form.
pub fn message_to_json<T: Message + Name>(message: &T) -> Result<Value, JsonError> {
    let dynamic = to_dynamic(message)?;
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|e| JsonError::Render {
            type_name: T::full_name(),
            message: e.to_string(),
        })
}

/// A message re-read through its descriptor: serialising it (with [`serialize_options`]) with
/// any serde serializer gives Envoy's JSON form. `render` streams it.
pub fn to_dynamic<T: Message + Name>(message: &T) -> Result<DynamicMessage, JsonError> {
    let pool = POOL
        .as_ref()
        .map_err(|e| JsonError::Descriptors(e.clone()))?;
    let type_name = T::full_name();
    let descriptor = pool
        .get_message_by_name(&type_name)
        .ok_or_else(|| JsonError::UnknownType(type_name.clone()))?;
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).map_err(|e| {
        JsonError::Decode {
            type_name,
            message: e.to_string(),
        }
    })
}

/// Proto field names, as Envoy's own JSON form uses.
pub fn serialize_options() -> SerializeOptions {
    SerializeOptions::new().use_proto_field_name(true)
}

/// A Secret as `render` shows it: with [`REDACTED`] in place of a private key.
pub fn redacted(s: &Secret) -> Secret {
    let mut s = s.clone();
    if let Some(secret::Type::TlsCertificate(cert)) = &mut s.r#type
        && cert.private_key.is_some()
    {
        cert.private_key = Some(inline_string(REDACTED));
    }
    s
}
