//! `render -o yaml` written as it goes: the same YAML `serde_norway` prints for
//! [`render_report`](super::render_report)'s `Value`, produced by a `Serialize` that builds one
//! instance's DAG at a time, translates one resource type at a time and turns one message at a
//! time into a `Value`, so neither the whole report nor an instance's resources are ever held.

use std::cell::RefCell;
use std::io::Write;

use prost::{Message, Name};
use serde::Serialize;
use serde::ser::{Error as _, SerializeMap, SerializeSeq, Serializer};
use serde_json::json;

use super::{RenderOptions, route_entries};
use crate::dag::{self, Dag, Selection};
use crate::pipeline;
use crate::snapshot::ClusterSnapshot;
use crate::xds::translate::json;
use crate::xds::translate::{Resource, TranslateOptions};

/// Writes the report as YAML. The snapshot is taken, and dropped once the last instance's DAG is
/// built, as [`write_report_json`](super::write_report_json) does.
pub fn write_report_yaml<W: Write>(
    snapshot: ClusterSnapshot,
    options: RenderOptions,
    out: W,
) -> Result<(), serde_norway::Error> {
    let selections = dag::instances(&snapshot)
        .into_iter()
        .map(Selection::local)
        .collect();
    let report = Report {
        gateways: Gateways {
            snapshot: RefCell::new(Some(snapshot)),
            selections,
            options,
        },
    };
    let mut ser = serde_norway::Serializer::new(out);
    report.serialize(&mut ser)
}

/// `{"gateways": [...]}`.
struct Report {
    gateways: Gateways,
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("gateways", &self.gateways)?;
        map.end()
    }
}

struct Gateways {
    /// Taken (and dropped) when the last instance's DAG is built.
    snapshot: RefCell<Option<ClusterSnapshot>>,
    selections: Vec<Selection>,
    options: RenderOptions,
}

impl Serialize for Gateways {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.selections.len()))?;
        for (i, selection) in self.selections.iter().enumerate() {
            let dag = {
                let snapshot = self.snapshot.borrow();
                let snapshot = snapshot
                    .as_ref()
                    .ok_or_else(|| S::Error::custom("the snapshot is gone"))?;
                dag::build(snapshot, selection)
            };
            if i + 1 == self.selections.len() {
                drop(self.snapshot.borrow_mut().take());
            }
            seq.serialize_element(&Instance {
                dag: &dag,
                opts: TranslateOptions::default().with_selection(selection),
                options: self.options,
            })?;
        }
        seq.end()
    }
}

/// One instance, its keys in the sorted order of a `Value`'s map.
struct Instance<'a> {
    dag: &'a Dag,
    /// How the instance's Envoys are configured (the Gateway's trusted hops).
    opts: TranslateOptions,
    options: RenderOptions,
}

impl Serialize for Instance<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = 3 + usize::from(self.options.include_dag);
        let mut map = s.serialize_map(Some(len))?;
        if self.options.include_dag {
            map.serialize_entry("dag", &to_value::<_, S::Error>(self.dag)?)?;
        }
        map.serialize_entry("gateway", &self.dag.gateway.to_string())?;
        map.serialize_entry(
            "ingressRoutes",
            &to_value::<_, S::Error>(&route_entries(self.dag))?,
        )?;
        map.serialize_entry("xds", &Xds(self.dag, &self.opts))?;
        map.end()
    }
}

/// One part as a `serde_json::Value`, as `render_report` makes it with `json!`.
fn to_value<T: Serialize + ?Sized, E: serde::ser::Error>(v: &T) -> Result<serde_json::Value, E> {
    serde_json::to_value(v).map_err(E::custom)
}

/// An instance's resources, one type at a time, keys in sorted order.
struct Xds<'a>(&'a Dag, &'a TranslateOptions);

impl Serialize for Xds<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let by_type = match pipeline::translate_by_type(self.0, self.1) {
            Ok(t) => t,
            Err(e) => return json!({ "error": e.to_string() }).serialize(s),
        };
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("clusters", &Messages::new(by_type.clusters_one_by_one()))?;
        map.serialize_entry("endpoints", &Messages::new(by_type.endpoints()))?;
        map.serialize_entry("listeners", &Messages::new(by_type.listeners()))?;
        map.serialize_entry("routes", &Messages::new(by_type.routes()))?;
        map.serialize_entry("scoped_routes", &Messages::new(by_type.scoped_routes()))?;
        let secrets = by_type.secrets().into_iter().map(|r| Resource {
            name: r.name,
            message: json::redacted(&r.message),
        });
        map.serialize_entry("secrets", &Messages::new(secrets))?;
        map.end()
    }
}

/// A list of messages, each made (clusters) and turned into its JSON `Value` only as it is
/// written. Serialised once: the iterator is used up.
struct Messages<I>(RefCell<I>);

impl<I> Messages<I> {
    fn new(messages: impl IntoIterator<IntoIter = I>) -> Self {
        Self(RefCell::new(messages.into_iter()))
    }
}

impl<T: Message + Name, I: Iterator<Item = Resource<T>>> Serialize for Messages<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The length is not used by the YAML serializer for sequences.
        let mut seq = s.serialize_seq(None)?;
        for r in &mut *self.0.borrow_mut() {
            let value = json::message_to_json(&r.message).map_err(S::Error::custom)?;
            seq.serialize_element(&value)?;
        }
        seq.end()
    }
}
