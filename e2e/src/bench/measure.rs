//! What the benchmark reads from `/proc` (CPU time, resident memory) and from the operator's
//! `/metrics` (its own timings), and the latency summary.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::Figures;
use crate::sluice::{Operator, metric_value};

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User plus system CPU time of a process (or, with `/proc/self/task/TID`, of a thread), in
/// clock ticks, from the `stat` file under `dir`.
fn ticks_at(dir: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("reading {dir}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// The thread of this process whose name starts with `prefix` (e.g. the in-memory API server's
/// `apiserver-PORT`), as a `/proc/self/task/TID` path.
pub fn own_thread(prefix: &str) -> Option<String> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .map(|e| e.path().display().to_string())
        .find(|dir| {
            std::fs::read_to_string(format!("{dir}/comm"))
                .is_ok_and(|name| name.trim().starts_with(prefix))
        })
}

/// CPU time of a process or thread over a window, as a fraction of one core.
pub struct CpuWindow {
    dir: String,
    ticks: u64,
    started: Instant,
}

impl CpuWindow {
    /// Starts measuring process `pid`.
    pub fn process(pid: u32) -> anyhow::Result<CpuWindow> {
        CpuWindow::at(format!("/proc/{pid}"))
    }

    /// Starts measuring the `/proc` directory `dir` (a process or a task).
    pub fn at(dir: String) -> anyhow::Result<CpuWindow> {
        let ticks = ticks_at(&dir)?;
        Ok(CpuWindow {
            dir,
            ticks,
            started: Instant::now(),
        })
    }

    /// CPU time used since the start, and the fraction of one core over the wall time.
    pub fn end(&self) -> anyhow::Result<(Duration, f64)> {
        let used = ticks_at(&self.dir)?.saturating_sub(self.ticks) as f64 / TICKS_PER_SECOND;
        let wall = self.started.elapsed().as_secs_f64();
        Ok((
            Duration::from_secs_f64(used),
            if wall > 0.0 { used / wall } else { 0.0 },
        ))
    }
}

/// Totals of the operator's own timings, from its `/metrics`: where its time goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Passes of the route reconciler (snapshot, build and translate of every instance,
    /// statuses), and their total time.
    pub passes: f64,
    pass_seconds: f64,
    build_seconds: f64,
    translate_seconds: f64,
    /// Translations (only instances whose DAG changed translate).
    translations: f64,
    /// Root IngressRoutes built again by the DAG updates (`None`: a binary without the metric).
    roots_rebuilt: Option<f64>,
    status_writes: f64,
}

impl Timings {
    pub async fn of(op: &Operator) -> anyhow::Result<Timings> {
        // Under load (a settle of 10,000 routes on two cores) one scrape can take longer than
        // the client's 5 s: a few tries before the run is given up.
        let mut tries = 0;
        let text = loop {
            match op.metrics().await {
                Ok(text) => break text,
                Err(e) if tries < 4 => {
                    tries += 1;
                    eprintln!("bench: /metrics: {e}; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let sum = |name: &str| {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    let metric = series.split('{').next()?;
                    (metric == name).then(|| value.parse::<f64>().ok())?
                })
                .sum::<f64>()
        };
        let routes = |name: &str| metric_value(&text, name, &[("controller", "routes")]);
        Ok(Timings {
            passes: routes("sluice_reconcile_duration_seconds_count").unwrap_or_default(),
            pass_seconds: routes("sluice_reconcile_duration_seconds_sum").unwrap_or_default(),
            build_seconds: sum("sluice_dag_build_duration_seconds_sum"),
            translate_seconds: sum("sluice_translate_duration_seconds_sum"),
            translations: sum("sluice_translate_duration_seconds_count"),
            roots_rebuilt: text
                .contains("sluice_dag_roots_rebuilt_total")
                .then(|| sum("sluice_dag_roots_rebuilt_total")),
            status_writes: sum("sluice_status_writes_total"),
        })
    }

    pub fn since(self, before: Timings) -> Timings {
        Timings {
            passes: self.passes - before.passes,
            pass_seconds: self.pass_seconds - before.pass_seconds,
            build_seconds: self.build_seconds - before.build_seconds,
            translate_seconds: self.translate_seconds - before.translate_seconds,
            translations: self.translations - before.translations,
            roots_rebuilt: self
                .roots_rebuilt
                .map(|n| n - before.roots_rebuilt.unwrap_or_default()),
            status_writes: self.status_writes - before.status_writes,
        }
    }

    pub fn record(self, figures: &mut Figures, phase: &str, roots: usize) {
        let name = |what: &str| format!("run {phase}: operator {what}");
        figures.record(name("reconcile passes"), "", roots, self.passes);
        let seconds = [
            ("time in reconcile passes", self.pass_seconds),
            ("DAG build time", self.build_seconds),
            ("translate time", self.translate_seconds),
        ];
        for (what, s) in seconds {
            figures.record(name(what), "ms", roots, s * 1000.0);
        }
        figures.record(name("translations"), "", roots, self.translations);
        if let Some(n) = self.roots_rebuilt {
            figures.record(name("roots rebuilt"), "", roots, n);
        }
        figures.record(name("status writes"), "", roots, self.status_writes);
    }
}

/// The `p`th percentile (nearest rank) of `samples`.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&samples[..1], 99.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn cpu_of_this_process_and_its_threads_is_read() {
        let window = CpuWindow::process(std::process::id()).unwrap();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let (used, _) = window.end().unwrap();
        assert!(used > Duration::ZERO, "{used:?}");
        assert!(status_kib(std::process::id(), "VmRSS").unwrap() > 0);
        let named = std::thread::Builder::new()
            .name("bench-probe".into())
            .spawn(|| own_thread("bench-probe"))
            .unwrap()
            .join()
            .unwrap();
        assert!(named.is_some_and(|dir| dir.starts_with("/proc/self/task/")));
        assert_eq!(own_thread("no-such-thread"), None);
    }
}
