//! The scale benchmark (`make bench`; a tiny run in CI): a generated [`world`](crate::world)
//! of N roots, measured with the real `sluice` binary (`$SLUICE_BIN` to measure another build)
//! and a real Envoy. Every figure is printed with the same run's figure for the smallest size
//! (the baseline) and the ratio between them. Nothing is asserted about speed.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::backend::Backend;
use crate::client::get;
use crate::sluice::{Standalone, sluice_binary};
use crate::tls::TestCa;
use crate::world::{self, Layout, World};

#[derive(Clone, Debug)]
pub struct Config {
    /// World sizes; the first is the baseline.
    pub sizes: Vec<usize>,
    /// Edits measured per size.
    pub edits: usize,
    /// How long idle CPU is measured.
    pub idle: Duration,
    /// Longest wait for one edit or the first load to reach Envoy.
    pub timeout: Duration,
}

/// One size's figures, `None` where not measured.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub roots: usize,
    pub render_file_per_object: Option<(Duration, u64)>,
    pub render_one_file: Option<(Duration, u64)>,
    pub load_to_traffic: Option<Duration>,
    pub rss_after_load_kib: Option<u64>,
    pub idle_cpu: Option<f64>,
    pub edit_latency: Vec<Duration>,
    pub rss_peak_kib: Option<u64>,
}

/// Runs every size and prints the table; returns the figures.
pub async fn run(config: &Config) -> anyhow::Result<Vec<Figures>> {
    let backend = Backend::start("bench").await?;
    let ca = TestCa::new("bench CA")?;
    let binary = sluice_binary()?;
    println!("sluice: {}", binary.display());
    let mut all = Vec::new();
    for &roots in &config.sizes {
        let figures = measure(config, roots, backend.port(), &ca).await?;
        all.push(figures);
    }
    print_table(&all);
    Ok(all)
}

async fn measure(
    config: &Config,
    roots: usize,
    backend_port: u16,
    ca: &TestCa,
) -> anyhow::Result<Figures> {
    let world = World {
        roots,
        backend_port,
        slices: false,
    };
    let mut docs = world::documents(&world, ca)?;
    let mut figures = Figures {
        roots,
        ..Figures::default()
    };
    for layout in [Layout::FilePerObject, Layout::OneFile] {
        let dir = tempfile::tempdir()?;
        world::write(dir.path(), layout, &docs)?;
        let rendered = render(dir.path())?;
        match layout {
            Layout::FilePerObject => figures.render_file_per_object = Some(rendered),
            Layout::OneFile => figures.render_one_file = Some(rendered),
        }
    }

    let dir = tempfile::tempdir()?;
    let layout = Layout::FilePerObject;
    world::write(dir.path(), layout, &docs)?;
    let started = Instant::now();
    let mut sluice = Standalone::start(dir.path())?;
    let last = roots - 1;
    let ports = sluice.default_instance(config.timeout).await?;
    // The last root's own route answers: everything loaded and reached Envoy.
    wait_answers(
        &mut sluice,
        ports.http,
        &world::host(last),
        "/own",
        config.timeout,
    )
    .await?;
    figures.load_to_traffic = Some(started.elapsed());
    let pid = sluice.process().pid();
    figures.rss_after_load_kib = proc_status_kib(pid, "VmRSS");

    let before = cpu_ticks(pid)?;
    tokio::time::sleep(config.idle).await;
    let after = cpu_ticks(pid)?;
    let ticks_per_second = 100.0;
    figures.idle_cpu = Some((after - before) as f64 / ticks_per_second / config.idle.as_secs_f64());

    for k in 0..config.edits {
        // A plain-HTTP root (every tenth is TLS and redirects), spread over the world.
        let mut i = (k * 7919 + 1) % roots;
        if i.is_multiple_of(10) {
            i = (i + 1) % roots;
        }
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
        figures.edit_latency.push(edited.elapsed());
    }
    figures.rss_peak_kib = proc_status_kib(pid, "VmHWM");
    sluice.check_running()?;
    Ok(figures)
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
        if let Ok(r) = get(port, host, path).await
            && r.status == 200
            && r.backend().as_deref() == Some("bench")
        {
            return Ok(());
        }
        sluice.check_running()?;
        if Instant::now() > deadline {
            bail!("{host}{path} did not answer within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `sluice render -o json` of `dir`: wall time and peak RSS (KiB), from `/usr/bin/time`.
fn render(dir: &Path) -> anyhow::Result<(Duration, u64)> {
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

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn print_table(all: &[Figures]) {
    let Some(base) = all.first() else {
        return;
    };
    type Row = (&'static str, &'static str, fn(&Figures) -> Option<f64>);
    let rows: [Row; 11] = [
        ("render -o json, one file per object", "ms", |f| {
            f.render_file_per_object.map(|r| ms(r.0))
        }),
        ("render -o json peak RSS, one file per object", "MiB", |f| {
            f.render_file_per_object.map(|r| r.1 as f64 / 1024.0)
        }),
        ("render -o json, one file", "ms", |f| {
            f.render_one_file.map(|r| ms(r.0))
        }),
        ("render -o json peak RSS, one file", "MiB", |f| {
            f.render_one_file.map(|r| r.1 as f64 / 1024.0)
        }),
        ("standalone start to traffic", "ms", |f| {
            f.load_to_traffic.map(ms)
        }),
        ("standalone RSS after load", "MiB", |f| {
            f.rss_after_load_kib.map(|k| k as f64 / 1024.0)
        }),
        ("standalone peak RSS after edits", "MiB", |f| {
            f.rss_peak_kib.map(|k| k as f64 / 1024.0)
        }),
        ("standalone idle CPU", "% core", |f| {
            f.idle_cpu.map(|c| c * 100.0)
        }),
        ("edit to traffic p50", "ms", |f| latency(f, 50.0)),
        ("edit to traffic p90", "ms", |f| latency(f, 90.0)),
        ("edit to traffic p99", "ms", |f| latency(f, 99.0)),
    ];
    println!(
        "{:<46} {:>7} {:>12} {:>12} {:>8}",
        "figure", "roots", "value", "baseline", "ratio"
    );
    for (name, unit, get) in rows {
        for f in all {
            let (Some(v), Some(b)) = (get(f), get(base)) else {
                continue;
            };
            let ratio = if b > 0.0 {
                format!("{:.2}", v / b)
            } else {
                "-".to_owned()
            };
            println!(
                "{name:<46} {:>7} {:>9.1} {unit:<3}{:>9.1} {unit:<3}{ratio:>6}",
                f.roots, v, b
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latency(f: &Figures, p: f64) -> Option<f64> {
    let mut sorted = f.edit_latency.clone();
    sorted.sort();
    percentile(&sorted, p).map(|d| d.as_secs_f64() * 1000.0)
}

/// The configuration from the environment: `SLUICE_BENCH_SIZES` (comma-separated, default
/// `10,1000,10000`), `SLUICE_BENCH_EDITS` (20), `SLUICE_BENCH_IDLE_SECS` (30).
pub fn config_from_env() -> anyhow::Result<Config> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let sizes = var("SLUICE_BENCH_SIZES", "10,1000,10000")
        .split(',')
        .map(|s| s.trim().parse::<usize>().context("SLUICE_BENCH_SIZES"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("SLUICE_BENCH_SIZES: sizes must be positive");
    }
    Ok(Config {
        sizes,
        edits: var("SLUICE_BENCH_EDITS", "20")
            .parse()
            .context("SLUICE_BENCH_EDITS")?,
        idle: Duration::from_secs(
            var("SLUICE_BENCH_IDLE_SECS", "30")
                .parse()
                .context("SLUICE_BENCH_IDLE_SECS")?,
        ),
        timeout: Duration::from_secs(300),
    })
}
