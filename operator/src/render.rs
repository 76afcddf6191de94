//! The `sluice render` report: per Gateway instance, the status of every IngressRoute it judges
//! and the xDS resources it would serve. A pure function of a snapshot; the CLI only prints it.

use serde_json::{Value, json};

use std::sync::Arc;

use crate::dag::{self, Dag};
use crate::pipeline;
use crate::snapshot::ClusterSnapshot;
use crate::xds::translate::json::to_json;
use crate::xds::translate::{Resources, TranslateError, TranslateOptions};

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
                "ingressRoutes": dag.statuses,
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

/// The xDS resources of one instance in Envoy's JSON form (proto3 JSON, `@type` on every Any),
/// private keys redacted. A translation failure (a builder bug) is reported in place.
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
        for kind in ["listeners", "routes", "clusters", "endpoints", "secrets"] {
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
