//! The CRDs Sluice serves, as the cluster has them. A cluster that ran Contour (up to 1.5) may
//! still carry Contour's own `contour.heptio.com` CRDs, installed through apiextensions v1beta1:
//! no status subresource and `preserveUnknownFields: true`. Sluice works with them (statuses go
//! through the main resource, as Contour wrote them), but says so: in the log and in the
//! `sluice_crd_info` metric, at start, whenever a recheck finds a change, and whenever a status
//! write shows the CRD changed under it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

use crate::metrics::Metrics;

/// The IngressRoute CRD.
pub const INGRESSROUTES: &str = "ingressroutes.contour.heptio.com";

/// Every CRD Sluice serves, with the version it reads and writes.
pub const SERVED: [(&str, &str); 3] = [
    (INGRESSROUTES, "v1beta1"),
    ("tlscertificatedelegations.contour.heptio.com", "v1beta1"),
    ("gateways.sluice.dev", "v1alpha1"),
];

/// How often the CRDs are looked at again, besides when a status write hints at a change.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// What matters to Sluice in one installed CRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrdInfo {
    pub name: String,
    /// The version Sluice uses.
    pub version: String,
    /// Every served version.
    pub served_versions: Vec<String>,
    /// The version Sluice uses has a `status` subresource.
    pub status_subresource: bool,
    /// `spec.preserveUnknownFields` (true on CRDs kept from apiextensions v1beta1).
    pub preserve_unknown_fields: bool,
}

impl CrdInfo {
    /// Reads `crd`, of which Sluice uses `version`.
    pub fn inspect(crd: &CustomResourceDefinition, version: &str) -> Self {
        let served_versions = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.clone())
            .collect();
        let status_subresource = crd.spec.versions.iter().any(|v| {
            v.name == version && v.subresources.as_ref().is_some_and(|s| s.status.is_some())
        });
        Self {
            name: crd.metadata.name.clone().unwrap_or_default(),
            version: version.to_owned(),
            served_versions,
            status_subresource,
            preserve_unknown_fields: crd.spec.preserve_unknown_fields == Some(true),
        }
    }

    pub fn serves_version(&self) -> bool {
        self.served_versions.contains(&self.version)
    }

    /// What is wrong with it for Sluice, as sentences for the log; empty when nothing is.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.serves_version() {
            out.push(format!(
                "version {} is not served (served: {:?}): Sluice cannot read these objects",
                self.version, self.served_versions
            ));
        }
        if !self.status_subresource && self.name == INGRESSROUTES {
            out.push(
                "no status subresource (Contour's legacy CRD?): statuses are written through \
                 the main resource, as Contour did"
                    .into(),
            );
        }
        if !self.status_subresource && self.name == "gateways.sluice.dev" {
            out.push("no status subresource: Gateway statuses cannot be written".into());
        }
        if self.preserve_unknown_fields {
            out.push(
                "spec.preserveUnknownFields is true (a CRD from apiextensions v1beta1): \
                 unknown fields are kept and the schema is not enforced"
                    .into(),
            );
        }
        out
    }
}

/// What the CRDs looked like when last checked, shared by the status writer. Cheap to clone.
#[derive(Clone, Default)]
pub struct CrdState {
    seen: Arc<Mutex<BTreeMap<String, CrdInfo>>>,
}

impl CrdState {
    /// Whether statuses of the CRD's objects go through `/status`. True until known otherwise
    /// (what Sluice's own CRDs have).
    pub fn status_subresource(&self, crd: &str) -> bool {
        crate::controller::routes::lock(&self.seen)
            .get(crd)
            .is_none_or(|i| i.status_subresource)
    }

    pub fn get(&self, crd: &str) -> Option<CrdInfo> {
        crate::controller::routes::lock(&self.seen)
            .get(crd)
            .cloned()
    }

    /// Records what a check found; when it differs from before, logs it and updates the
    /// metric. Returns whether anything changed.
    pub fn record(&self, info: CrdInfo, metrics: &Metrics) -> bool {
        let previous = {
            let mut seen = crate::controller::routes::lock(&self.seen);
            if seen.get(&info.name) == Some(&info) {
                return false;
            }
            seen.insert(info.name.clone(), info.clone())
        };
        if let Some(old) = &previous {
            set_metric(metrics, old, None);
        }
        set_metric(metrics, &info, Some(1));
        let problems = info.problems();
        if problems.is_empty() {
            tracing::info!(
                crd = %info.name,
                served_versions = ?info.served_versions,
                status_subresource = info.status_subresource,
                preserve_unknown_fields = info.preserve_unknown_fields,
                changed = previous.is_some(),
                "CRD checked"
            );
        } else {
            for problem in problems {
                tracing::warn!(
                    crd = %info.name,
                    served_versions = ?info.served_versions,
                    status_subresource = info.status_subresource,
                    preserve_unknown_fields = info.preserve_unknown_fields,
                    "CRD {}: {problem}; apply Sluice's CRDs (`sluice crds`, see \"Migrating from Contour\" in the README)",
                    info.name
                );
            }
        }
        true
    }
}

fn labels(info: &CrdInfo) -> [String; 4] {
    [
        info.name.clone(),
        info.served_versions.join(","),
        info.status_subresource.to_string(),
        info.preserve_unknown_fields.to_string(),
    ]
}

fn set_metric(metrics: &Metrics, info: &CrdInfo, value: Option<i64>) {
    let labels = labels(info);
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    match value {
        Some(v) => metrics.crd_info.with_label_values(&labels).set(v),
        None => {
            let _ = metrics.crd_info.remove_label_values(&labels);
        }
    }
}

/// Looks at every served CRD once and records what it finds; returns whether anything
/// changed. A CRD that cannot be read is logged and left as last seen.
pub async fn check(client: &kube::Client, state: &CrdState, metrics: &Metrics) -> bool {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut changed = false;
    for (name, version) in SERVED {
        match api.get_opt(name).await {
            Ok(Some(crd)) => changed |= state.record(CrdInfo::inspect(&crd, version), metrics),
            Ok(None) => tracing::error!(crd = name, "CRD is not installed"),
            Err(e) => tracing::warn!(crd = name, error = %e, "cannot check CRD"),
        }
    }
    changed
}

/// Rechecks the CRDs every [`RECHECK_INTERVAL`], forever.
pub async fn recheck(client: kube::Client, state: CrdState, metrics: Metrics) {
    loop {
        tokio::time::sleep(RECHECK_INTERVAL).await;
        check(&client, &state, &metrics).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn crd(value: serde_json::Value) -> CustomResourceDefinition {
        serde_json::from_value(value).unwrap()
    }

    /// Contour's CRD as a cluster keeps it from apiextensions v1beta1, then Sluice's.
    #[test]
    fn legacy_and_current_crds() {
        let legacy = crd(serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": INGRESSROUTES},
            "spec": {"group": "contour.heptio.com", "scope": "Namespaced",
                     "preserveUnknownFields": true,
                     "names": {"kind": "IngressRoute", "plural": "ingressroutes"},
                     "versions": [{"name": "v1beta1", "served": true, "storage": true}]}
        }));
        let info = CrdInfo::inspect(&legacy, "v1beta1");
        assert_eq!(
            (
                info.status_subresource,
                info.preserve_unknown_fields,
                info.serves_version()
            ),
            (false, true, true)
        );
        assert_eq!(info.problems().len(), 2, "{:?}", info.problems());

        let ours = crate::api::crds()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(INGRESSROUTES))
            .unwrap();
        let info_ours = CrdInfo::inspect(&ours, "v1beta1");
        assert_eq!(
            (
                info_ours.status_subresource,
                info_ours.preserve_unknown_fields
            ),
            (true, false)
        );
        assert!(info_ours.problems().is_empty());

        let metrics = Metrics::new().unwrap();
        let state = CrdState::default();
        assert!(
            state.status_subresource(INGRESSROUTES),
            "assumed until known"
        );
        assert!(state.record(info.clone(), &metrics));
        assert!(!state.record(info, &metrics), "unchanged");
        assert!(!state.status_subresource(INGRESSROUTES));
        assert!(metrics.render().contains(
            r#"sluice_crd_info{crd="ingressroutes.contour.heptio.com",preserve_unknown_fields="true",served_versions="v1beta1",status_subresource="false"} 1"#
        ));
        assert!(state.record(info_ours, &metrics));
        assert!(state.status_subresource(INGRESSROUTES));
        let text = metrics.render();
        assert!(text.contains(r#"status_subresource="true"} 1"#), "{text}");
        assert!(
            !text.contains(r#"status_subresource="false""#),
            "old series gone: {text}"
        );
    }
}
