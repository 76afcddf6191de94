//! The `apiserver` part: what the in-memory API server itself costs for the writes of a status
//! settle, without the operator and without HTTP, on the calling thread (so its CPU time is the
//! server's work and little else, whatever else the machine runs). The world of the `run` part
//! (EndpointSlices) is created in process; then every IngressRoute (roots and children) gets
//! its status as the operator writes it (server-side apply on `/status`, forced), each followed
//! by the Event the operator creates. Times by the wall clock and by the thread's CPU.
//!
//! No watch is open and no request is served: the HTTP side (request parsing, RBAC, watch
//! streams) is measured with the operator by the `run` part.

use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};

use super::Figures;
use super::measure::{CpuWindow, ms};
use crate::apiserver::{ApiServer, ApiServerOptions};
use crate::tls::TestCa;
use crate::world::{self, World};

const IR_API: &str = "contour.heptio.com/v1beta1";
/// The calling thread's `/proc` directory.
const THIS_THREAD: &str = "/proc/thread-self";

pub(super) async fn run(
    roots: usize,
    backend_port: u16,
    ca: &TestCa,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let server = ApiServer::start_with(ApiServerOptions {
        history_limit: 50 * roots + 100_000,
        allow_loopback_endpoints: true,
        ..ApiServerOptions::default()
    })?;
    let crds = crate::sluice::run(&["crds"]).await?;
    server
        .apply_yaml(&crds)
        .map_err(|e| anyhow::anyhow!("installing the CRDs: {e}"))?;
    let world = World {
        roots,
        backend_port,
        slices: true,
    };
    let docs = world::documents(&world, ca)?;
    let objects = docs
        .iter()
        .map(|(file, doc)| serde_json::from_str::<Value>(doc).with_context(|| file.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let figure = |what: &str| format!("apiserver {what}");

    // No await from here to the end: the thread measured is the one writing.
    let started = Instant::now();
    let cpu = CpuWindow::at(THIS_THREAD.to_owned())?;
    for ns in world::namespaces(&world) {
        server
            .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .map_err(|e| anyhow::anyhow!("creating namespace {ns}: {e}"))?;
    }
    for obj in objects {
        server
            .create(obj)
            .map_err(|e| anyhow::anyhow!("creating an object: {e}"))?;
    }
    let created = (started.elapsed(), cpu.end()?.0);

    let routes: Vec<(String, String)> = server
        .list(IR_API, "IngressRoute", None)
        .iter()
        .map(|r| {
            let meta = |f: &str| r["metadata"][f].as_str().unwrap_or_default().to_owned();
            (meta("namespace"), meta("name"))
        })
        .collect();
    let started = Instant::now();
    let cpu = CpuWindow::at(THIS_THREAD.to_owned())?;
    let mut written_count = 0usize;
    for (i, (namespace, name)) in routes.iter().enumerate() {
        server
            .apply_status(json!({
                "apiVersion": IR_API, "kind": "IngressRoute",
                "metadata": {"namespace": namespace, "name": name},
                "status": {"currentStatus": "valid", "description": "valid IngressRoute"},
            }))
            .map_err(|e| anyhow::anyhow!("writing the status of {namespace}/{name}: {e}"))?;
        server
            .create(json!({
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"namespace": namespace, "name": format!("{name}.{i:x}")},
                "eventTime": "2026-11-30T00:00:00.000000Z",
                "reportingController": "sluice.dev/bench", "reportingInstance": "bench",
                "action": "Reconcile", "reason": "Valid", "type": "Normal",
                "note": "valid IngressRoute",
                "regarding": {"apiVersion": IR_API, "kind": "IngressRoute",
                    "namespace": namespace, "name": name},
            }))
            .map_err(|e| anyhow::anyhow!("creating the Event of {namespace}/{name}: {e}"))?;
        written_count += 1;
    }
    let written = (started.elapsed(), cpu.end()?.0);

    let n = written_count.max(1) as f64;
    figures.record(figure("create the world: time"), "ms", roots, ms(created.0));
    figures.record(figure("create the world: CPU"), "ms", roots, ms(created.1));
    figures.record(
        figure("status writes + Events"),
        "",
        roots,
        written_count as f64,
    );
    figures.record(
        figure("status writes + Events: time"),
        "ms",
        roots,
        ms(written.0),
    );
    figures.record(
        figure("status writes + Events: CPU"),
        "ms",
        roots,
        ms(written.1),
    );
    figures.record(
        figure("CPU per status write + Event"),
        "µs",
        roots,
        ms(written.1) * 1000.0 / n,
    );
    Ok(())
}
