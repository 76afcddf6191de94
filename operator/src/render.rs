//! The `sluice render` report: per Gateway instance, the status of every IngressRoute it judges
//! and the xDS resources it would serve. A pure function of a snapshot; the CLI only prints it.
//!
//! [`render_report`] builds it as a `serde_json::Value` (the reference, for tests);
//! [`write_report_json`] and [`write_report_yaml`] write the same JSON and YAML text as they go,
//! one instance, one resource type and one resource at a time, without the `Value` tree.

mod pretty;
mod yaml;

pub use yaml::write_report_yaml;

use std::io::{self, Write};

use prost::{Message, Name};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::dag::{self, Dag};
use crate::pipeline;
use crate::snapshot::ClusterSnapshot;
use crate::xds::translate::json::{self, to_json};
use crate::xds::translate::{Resource, Resources, TranslateError, TranslateOptions};

/// What to put in the report besides statuses and xDS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Add each instance's DAG (`"dag"`), the input of the xDS translation.
    pub include_dag: bool,
}

/// The report, shaped as in DESIGN.md:
/// `{"gateways":[{"gateway":"ns/name","ingressRoutes":[...],"xds":{...}}]}`, instances in
/// namespace/name order.
pub fn render_report(snapshot: &ClusterSnapshot, options: RenderOptions) -> Value {
    // Render shows what `sluice standalone` serves, loopback endpoints included.
    let shared = Arc::new(snapshot.clone());
    let gateways: Vec<Value> = dag::instances(snapshot)
        .into_iter()
        .map(dag::Selection::local)
        .map(|selection| {
            let (dag, resources) =
                pipeline::build_once(&shared, &selection, &TranslateOptions::default());
            let mut gateway = json!({
                "gateway": selection.gateway.to_string(),
                "ingressRoutes": route_entries(&dag),
                "xds": render_resources(resources),
            });
            if options.include_dag
                && let Some(obj) = gateway.as_object_mut()
            {
                obj.insert("dag".to_owned(), json!(*dag));
            }
            gateway
        })
        .collect();
    json!({ "gateways": gateways })
}

/// One entry of an instance's `ingressRoutes`: a Contour IngressRoute's status as it always was,
/// then the verdicts on other kinds (Traefik's), each naming its `kind` and `apiVersion`.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum RouteEntry<'a> {
    Contour(&'a dag::RouteStatus),
    Other(&'a dag::model::ObjectStatus),
}

fn route_entries(dag: &Dag) -> Vec<RouteEntry<'_>> {
    dag.statuses
        .iter()
        .map(RouteEntry::Contour)
        .chain(dag.object_statuses.iter().map(RouteEntry::Other))
        .collect()
}

/// The xDS resources of one instance in Envoy's JSON form (proto3 JSON, `@type` on every Any),
/// private keys redacted. A translation failure (a builder bug) is reported in place. The
/// default options: the listeners of a Gateway trusting no X-Forwarded-For hop.
pub fn render_xds(dag: &Dag) -> Value {
    render_resources(pipeline::translate_dag(dag, &TranslateOptions::default()))
}

/// [`render_xds`] of a translation already made.
fn render_resources(resources: Result<Resources, TranslateError>) -> Value {
    let rendered = resources
        .map_err(|e| e.to_string())
        .and_then(|r| to_json(&r, true).map_err(|e| e.to_string()));
    match rendered {
        Ok(v) => v,
        Err(e) => json!({ "error": e }),
    }
}

/// Writes [`render_report`]'s JSON exactly as `serde_json::to_string_pretty` prints it, plus a
/// line break, without building it first. A resource that cannot be shown as JSON (a bug in the
/// bundled descriptors) fails the write where `render_report` would show `{"error": …}`.
///
/// The snapshot is taken, not borrowed: once the last instance's DAG is built, its objects are
/// dropped before the translation and the writing (`render` of 10,000 roots no longer holds
/// 60,000 decoded objects beside the Envoy resources).
pub fn write_report_json<W: Write>(
    snapshot: ClusterSnapshot,
    options: RenderOptions,
    out: &mut W,
) -> io::Result<()> {
    out.write_all(b"{")?;
    pretty::newline(out, 1)?;
    pretty::key(out, "gateways")?;
    let selections: Vec<_> = dag::instances(&snapshot)
        .into_iter()
        .map(dag::Selection::local)
        .collect();
    match selections.split_last() {
        None => out.write_all(b"[]")?,
        Some((last, others)) => {
            out.write_all(b"[")?;
            let translated = |out: &mut W, dag: Dag, selection: &dag::Selection| {
                pretty::newline(out, 2)?;
                let opts = TranslateOptions::default().with_selection(selection);
                write_instance(out, 2, &dag, &opts, options)
            };
            for selection in others {
                translated(out, dag::build(&snapshot, selection), selection)?;
                out.write_all(b",")?;
            }
            let dag = dag::build(&snapshot, last);
            drop(snapshot);
            translated(out, dag, last)?;
            pretty::newline(out, 1)?;
            out.write_all(b"]")?;
        }
    }
    pretty::newline(out, 0)?;
    out.write_all(b"}\n")
}

/// One instance's object, its keys in sorted order as a `Value` has them.
fn write_instance<W: Write>(
    out: &mut W,
    indent: usize,
    dag: &Dag,
    opts: &TranslateOptions,
    options: RenderOptions,
) -> io::Result<()> {
    let mut first = true;
    out.write_all(b"{")?;
    if options.include_dag {
        field(out, indent, &mut first, "dag")?;
        pretty::write_value(out, indent + 1, dag)?;
    }
    field(out, indent, &mut first, "gateway")?;
    pretty::write_value(out, indent + 1, &dag.gateway.to_string())?;
    field(out, indent, &mut first, "ingressRoutes")?;
    pretty::write_value(out, indent + 1, &route_entries(dag))?;
    field(out, indent, &mut first, "xds")?;
    write_xds(out, indent + 1, dag, opts)?;
    pretty::newline(out, indent)?;
    out.write_all(b"}")
}

/// Starts the next field of an object whose fields are at `indent + 1`.
fn field<W: Write>(out: &mut W, indent: usize, first: &mut bool, name: &str) -> io::Result<()> {
    if !std::mem::take(first) {
        out.write_all(b",")?;
    }
    pretty::newline(out, indent + 1)?;
    Ok(pretty::key(out, name)?)
}

/// [`render_xds`], written as it goes: each type is translated just before it is written and
/// dropped after, and clusters are made one at a time, so the instance's resources are never
/// all in memory at once.
fn write_xds<W: Write>(
    out: &mut W,
    indent: usize,
    dag: &Dag,
    opts: &TranslateOptions,
) -> io::Result<()> {
    let by_type = match pipeline::translate_by_type(dag, opts) {
        Ok(t) => t,
        Err(e) => {
            return Ok(pretty::write_value(
                out,
                indent,
                &json!({ "error": e.to_string() }),
            )?);
        }
    };
    let mut first = true;
    out.write_all(b"{")?;
    field(out, indent, &mut first, "clusters")?;
    write_messages(
        out,
        indent + 1,
        by_type.clusters_one_by_one().map(|r| r.message),
    )?;
    field(out, indent, &mut first, "endpoints")?;
    write_messages(out, indent + 1, messages(by_type.endpoints()))?;
    field(out, indent, &mut first, "listeners")?;
    write_messages(out, indent + 1, messages(by_type.listeners()))?;
    field(out, indent, &mut first, "routes")?;
    write_messages(out, indent + 1, messages(by_type.routes()))?;
    field(out, indent, &mut first, "scoped_routes")?;
    write_messages(out, indent + 1, messages(by_type.scoped_routes()))?;
    field(out, indent, &mut first, "secrets")?;
    let secrets = by_type.secrets();
    write_messages(
        out,
        indent + 1,
        secrets.iter().map(|s| json::redacted(&s.message)),
    )?;
    pretty::newline(out, indent)?;
    out.write_all(b"}")
}

/// The messages of a list of resources.
fn messages<T>(list: Vec<Resource<T>>) -> impl Iterator<Item = T> {
    list.into_iter().map(|r| r.message)
}

/// A list of messages in Envoy's JSON form, one message in memory at a time.
fn write_messages<W: Write, T: Message + Name>(
    out: &mut W,
    indent: usize,
    messages: impl Iterator<Item = T>,
) -> io::Result<()> {
    let mut messages = messages.peekable();
    if messages.peek().is_none() {
        return out.write_all(b"[]");
    }
    out.write_all(b"[")?;
    let options = json::serialize_options();
    for (i, message) in messages.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        pretty::newline(out, indent + 1)?;
        let dynamic = json::to_dynamic(&message).map_err(io::Error::other)?;
        pretty::write_value(out, indent + 1, &WithOptions(&dynamic, &options))?;
    }
    pretty::newline(out, indent)?;
    out.write_all(b"]")
}

/// A dynamic message serialised with options.
struct WithOptions<'a>(
    &'a prost_reflect::DynamicMessage,
    &'a prost_reflect::SerializeOptions,
);

impl serde::Serialize for WithOptions<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_with_options(s, self.1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_snapshot_renders_the_default_instance() {
        let report = render_report(&ClusterSnapshot::default(), RenderOptions::default());
        let gw = &report["gateways"][0];
        assert_eq!(gw["gateway"], "sluice-system/default");
        assert_eq!(gw["ingressRoutes"], json!([]));
        for kind in [
            "listeners",
            "routes",
            "scoped_routes",
            "clusters",
            "endpoints",
            "secrets",
        ] {
            assert!(gw["xds"][kind].is_array(), "{kind}: {}", gw["xds"]);
        }
        // An instance with no routes still has its HTTP and stats listeners, and no secrets.
        assert!(!gw["xds"]["listeners"].as_array().unwrap().is_empty());
        assert_eq!(gw["xds"]["secrets"], json!([]));
    }

    #[test]
    fn a_gateway_that_did_not_load_renders_no_instance_at_all() {
        let text = "apiVersion: sluice.dev/v1alpha1\nkind: Gateway\nmetadata:\n  name: g\n\
                    spec:\n  ingressClassName: [oops]\n---\n\
                    apiVersion: contour.heptio.com/v1beta1\nkind: IngressRoute\nmetadata:\n  \
                    name: r\nspec:\n  virtualhost:\n    fqdn: r.example.com\n  routes: []\n";
        let loaded = crate::source::load_sources([("x.yaml", text)]);
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        let report = render_report(&loaded.snapshot, RenderOptions::default());
        assert_eq!(report, json!({ "gateways": [] }));
    }

    #[test]
    fn dag_is_included_on_request() {
        let options = RenderOptions { include_dag: true };
        let report = render_report(&ClusterSnapshot::default(), options);
        assert_eq!(
            report["gateways"][0]["dag"]["gateway"],
            json!("sluice-system/default")
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod stream_tests {
    use super::*;

    fn both(snapshot: &ClusterSnapshot, options: RenderOptions) -> (String, String) {
        let mut out = Vec::new();
        write_report_json(snapshot.clone(), options, &mut out).unwrap();
        let reference =
            serde_json::to_string_pretty(&render_report(snapshot, options)).unwrap() + "\n";
        (String::from_utf8(out).unwrap(), reference)
    }

    type Both = fn(&ClusterSnapshot, RenderOptions) -> (String, String);

    /// Every example group with and without the DAG, no snapshot, and a Gateway that did not
    /// load: the streamed output is byte for byte the reference `both` gives beside it.
    fn streamed_equals_reference(both: Both, what: &str) {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut groups = 0;
        for entry in std::fs::read_dir(examples).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            let loaded = crate::source::load_dir(&dir).unwrap();
            for include_dag in [false, true] {
                let (ours, reference) = both(&loaded.snapshot, RenderOptions { include_dag });
                assert!(
                    ours == reference,
                    "{}: streamed {what} differs",
                    dir.display()
                );
            }
            groups += 1;
        }
        assert!(groups >= 20, "{groups}");
        let (ours, reference) = both(&ClusterSnapshot::default(), RenderOptions::default());
        assert_eq!(ours, reference);
        // No instance at all: a Gateway that did not load.
        let mut unloaded = ClusterSnapshot::default();
        unloaded.unloaded_gateways = vec!["x".to_owned()];
        let (ours, reference) = both(&unloaded, RenderOptions::default());
        assert_eq!(ours, reference);
    }

    /// JSON: byte for byte what the `Value` gives, printed pretty.
    #[test]
    fn streamed_json_is_the_value_printed_pretty_for_every_example() {
        streamed_equals_reference(both, "JSON");
    }

    fn both_yaml(snapshot: &ClusterSnapshot, options: RenderOptions) -> (String, String) {
        let mut out = Vec::new();
        write_report_yaml(snapshot.clone(), options, &mut out).unwrap();
        let reference = serde_norway::to_string(&render_report(snapshot, options)).unwrap();
        (String::from_utf8(out).unwrap(), reference)
    }

    /// YAML: byte for byte what `serde_norway` prints for the `Value`.
    #[test]
    fn streamed_yaml_is_the_value_printed_for_every_example() {
        streamed_equals_reference(both_yaml, "YAML");
    }
}
