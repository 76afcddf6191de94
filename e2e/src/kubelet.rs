//! A stand-in for the kubelet and the DaemonSet controller of one node, for the in-memory API
//! server: [`run_daemon_sets`] gives every DaemonSet of a namespace one ready Pod and the status
//! the DaemonSet controller would write. Against a real cluster, its own kubelets do this: do not
//! run it there.

use std::time::Duration;

use serde_json::{Value, json};

use crate::apiserver::{ApiError, ApiServer};

/// The one node the DaemonSets run on.
pub const NODE_NAME: &str = "e2e-node";

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The name of the Pod standing for DaemonSet `ds` on [`NODE_NAME`].
pub fn pod_name(ds: &str) -> String {
    // A DaemonSet name is at most 253 characters; keep the Pod's a valid name too.
    let base: String = ds.chars().take(240).collect();
    format!("{base}-{NODE_NAME}")
}

/// Brings one DaemonSet's Pod and status in line with its template. Writes that change nothing
/// are no-ops for the server (no new resourceVersion), so this can run after every change.
fn sync_daemon_set(server: &ApiServer, ds: &Value) -> Result<(), ApiError> {
    let ns = str_at(ds, "/metadata/namespace");
    let name = str_at(ds, "/metadata/name");
    let uid = str_at(ds, "/metadata/uid");
    if ds.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(());
    }
    let template = ds.pointer("/spec/template").cloned().unwrap_or_default();
    let labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = spec.as_object_mut() {
        map.insert("nodeName".into(), json!(NODE_NAME));
    }
    let pod = pod_name(name);
    server.apply(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": ns,
            "name": pod,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "name": name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    }))?;
    let containers: Vec<Value> = spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c.get("name").cloned().unwrap_or_default(),
                "image": c.get("image").cloned().unwrap_or_default(),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
            })
        })
        .collect();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"});
    server.apply_status(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": pod},
        "status": {
            "phase": "Running",
            "conditions": [
                condition("PodScheduled"),
                condition("Initialized"),
                condition("ContainersReady"),
                condition("Ready"),
            ],
            "containerStatuses": containers,
        },
    }))?;
    let generation = ds
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    server.apply_status(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"namespace": ns, "name": name},
        "status": {
            "observedGeneration": generation,
            "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1,
            "updatedNumberScheduled": 1,
            "numberReady": 1,
            "numberAvailable": 1,
            "numberMisscheduled": 0,
        },
    }))?;
    Ok(())
}

/// Runs until the server stops (or for a year): after every change, each DaemonSet of
/// `namespace` gets one Pod on [`NODE_NAME`] carrying its template's labels, annotations and spec,
/// Running and Ready, and the status a DaemonSet controller writes for one scheduled, updated,
/// ready Pod. Await it alongside the test's own waits (e.g. in `tokio::select!`).
pub async fn run_daemon_sets(server: &ApiServer, namespace: &str) {
    let mut last_error = None;
    server
        .wait_for(Duration::from_secs(365 * 24 * 3600), |s| {
            for ds in s.list("apps/v1", "DaemonSet", Some(namespace)) {
                if let Err(e) = sync_daemon_set(s, &ds) {
                    // A DaemonSet deleted meanwhile, or a namespace going away: report each new
                    // error once, then retry on the next change.
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        eprintln!("kubelet stand-in: {message}");
                        last_error = Some(message);
                    }
                }
            }
            None::<()>
        })
        .await;
}
