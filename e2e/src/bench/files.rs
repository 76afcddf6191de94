//! The file-based parts: `sluice render -o json` and `sluice standalone` with a real Envoy, on
//! one world variant (Endpoints or EndpointSlices, one file per object or one file).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::measure::{CpuWindow, mib, ms, status_kib};
use super::{Config, Figures, Variant};
use crate::client::get;
use crate::sluice::{Standalone, sluice_binary};
use crate::tls::TestCa;
use crate::world::{self, World};

fn world(roots: usize, variant: Variant, backend_port: u16) -> World {
    World {
        roots,
        backend_port,
        slices: variant.slices,
    }
}

/// `sluice render -o json` of the world: wall time and peak RSS.
pub(super) fn render(
    roots: usize,
    variant: Variant,
    backend_port: u16,
    ca: &TestCa,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let docs = world::documents(&world(roots, variant, backend_port), ca)?;
    let dir = tempfile::tempdir()?;
    world::write(dir.path(), variant.layout, &docs)?;
    let (took, kib) = render_once(dir.path())?;
    let name = variant.name();
    figures.record(format!("render -o json [{name}]"), "ms", roots, ms(took));
    figures.record(
        format!("render -o json peak RSS [{name}]"),
        "MiB",
        roots,
        mib(kib),
    );
    Ok(())
}

/// `sluice standalone` on the world: start until the last root answers, RSS after load, idle
/// CPU, edit-to-traffic latency, peak RSS after the edits.
pub(super) async fn standalone(
    config: &Config,
    roots: usize,
    variant: Variant,
    backend_port: u16,
    ca: &TestCa,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let name = variant.name();
    let layout = variant.layout;
    let mut docs = world::documents(&world(roots, variant, backend_port), ca)?;
    let dir = tempfile::tempdir()?;
    world::write(dir.path(), layout, &docs)?;
    let started = Instant::now();
    let mut sluice = Standalone::start(dir.path())?;
    let ports = sluice.default_instance(config.timeout).await?;
    // The last root's own route answers: everything loaded and reached Envoy.
    let last = roots - 1;
    wait_answers(
        &mut sluice,
        ports.http,
        &world::host(last),
        "/own",
        config.timeout,
    )
    .await?;
    let figure = |what: &str| format!("standalone {what} [{name}]");
    figures.record(
        figure("start to traffic"),
        "ms",
        roots,
        ms(started.elapsed()),
    );
    let pid = sluice.process().pid();
    if let Some(kib) = status_kib(pid, "VmRSS") {
        figures.record(figure("RSS after load"), "MiB", roots, mib(kib));
    }
    if let Some(kib) = ports.envoy_pid.and_then(|p| status_kib(p, "VmRSS")) {
        figures.record(figure("Envoy RSS after load"), "MiB", roots, mib(kib));
    }

    // The first window after the last root answers still holds the end of the load (Envoy
    // taking the last resources and acknowledging them, the claims file); idle is the next one.
    let after_load = CpuWindow::process(pid)?;
    tokio::time::sleep(config.idle).await;
    let (_, share) = after_load.end()?;
    figures.record(figure("CPU just after load"), "%", roots, share * 100.0);
    let idle = CpuWindow::process(pid)?;
    tokio::time::sleep(config.idle).await;
    let (_, share) = idle.end()?;
    figures.record(figure("idle CPU"), "%", roots, share * 100.0);

    let mut latencies = Vec::with_capacity(config.edits);
    for k in 0..config.edits {
        let i = plain_root(k, roots);
        let path = format!("/edit-{k}");
        world::edit_root(dir.path(), layout, &mut docs, i, &path)?;
        let edited = Instant::now();
        wait_answers(
            &mut sluice,
            ports.http,
            &world::host(i),
            &path,
            config.timeout,
        )
        .await?;
        latencies.push(edited.elapsed());
    }
    figures.record_latency(
        |p| figure(&format!("edit to traffic {p}")),
        roots,
        &latencies,
    );
    if let Some(kib) = status_kib(pid, "VmHWM") {
        figures.record(figure("peak RSS after edits"), "MiB", roots, mib(kib));
    }
    sluice.check_running()?;
    Ok(())
}

/// The root edited by edit `k`: plain HTTP (every tenth root is TLS and redirects), spread over
/// the world.
pub(super) fn plain_root(k: usize, roots: usize) -> usize {
    let mut i = (k * 7919 + 1) % roots;
    if world::is_tls(i) {
        i = (i + 1) % roots;
    }
    i
}

/// Polls until `host` answers `path` with 200 from the backend.
async fn wait_answers(
    sluice: &mut Standalone,
    port: u16,
    host: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if answers(port, host, path, "bench").await {
            return Ok(());
        }
        sluice.check_running()?;
        if Instant::now() > deadline {
            bail!("{host}{path} did not answer within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `host` answers `path` with 200 from `backend`.
pub(super) async fn answers(port: u16, host: &str, path: &str, backend: &str) -> bool {
    get(port, host, path)
        .await
        .is_ok_and(|r| r.status == 200 && r.backend().as_deref() == Some(backend))
}

/// `sluice render -o json` of `dir`: wall time and peak RSS (KiB), from `/usr/bin/time`.
fn render_once(dir: &Path) -> anyhow::Result<(Duration, u64)> {
    let output = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .arg(sluice_binary()?)
        .args(["render", "-o", "json", "--manifests"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running /usr/bin/time sluice render")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("sluice render failed: {stderr}");
    }
    let last = stderr.lines().last().unwrap_or_default();
    let mut parts = last.split_whitespace();
    let seconds: f64 = parts.next().unwrap_or_default().parse()?;
    let kib: u64 = parts.next().unwrap_or_default().parse()?;
    Ok((Duration::from_secs_f64(seconds), kib))
}
