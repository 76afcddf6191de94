//! The scale benchmark (`make bench`; a tiny run in CI): a generated [`world`](crate::world)
//! of N roots, measured with the real `sluice` binary (`$SLUICE_BIN` to measure another build)
//! and a real Envoy, in three parts, and a fourth on request:
//!
//! - `render`: `sluice render -o json` of each world variant ([`files`]);
//! - `standalone`: `sluice standalone` on each world variant: start to traffic, memory, idle
//!   CPU, edit to traffic ([`files`]);
//! - `run`: `sluice run` against the in-memory API server with a real Envoy from the bootstrap
//!   it provisions: status settle, edit to traffic, EndpointSlice churn, memory ([`operator`]);
//! - `apiserver` (only when named): the in-memory API server alone, the writes of a status
//!   settle in process, timed by its thread's CPU ([`apiserver`]).
//!
//! Every figure is printed with the same run's figure for the first (smallest) size, the
//! baseline, and the ratio between them. Nothing is asserted about speed.

mod apiserver;
mod files;
pub mod measure;
mod operator;

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::backend::Backend;
use crate::sluice::sluice_binary;
use crate::tls::TestCa;
use crate::world::Layout;

/// A part of the benchmark (`SLUICE_BENCH_PARTS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Render,
    Standalone,
    Run,
    /// The in-memory API server alone: the writes of a status settle, in process.
    ApiServer,
}

/// How a world is written for `render` and `standalone` (`SLUICE_BENCH_WORLDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// EndpointSlices instead of Endpoints.
    pub slices: bool,
    pub layout: Layout,
}

impl Variant {
    /// Every variant, in the order they are measured.
    pub const ALL: [Variant; 4] = [
        Variant::new(false, Layout::FilePerObject),
        Variant::new(true, Layout::FilePerObject),
        Variant::new(false, Layout::OneFile),
        Variant::new(true, Layout::OneFile),
    ];

    pub const fn new(slices: bool, layout: Layout) -> Variant {
        Variant { slices, layout }
    }

    /// `endpoints-files`, `slices-onefile`, ...: the name `SLUICE_BENCH_WORLDS` uses.
    pub fn name(self) -> &'static str {
        match (self.slices, self.layout) {
            (false, Layout::FilePerObject) => "endpoints-files",
            (true, Layout::FilePerObject) => "slices-files",
            (false, Layout::OneFile) => "endpoints-onefile",
            (true, Layout::OneFile) => "slices-onefile",
        }
    }

    fn parse(name: &str) -> anyhow::Result<Variant> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == name)
            .with_context(|| {
                format!(
                    "SLUICE_BENCH_WORLDS: unknown world {name:?} (one of {})",
                    Variant::ALL.map(Variant::name).join(", ")
                )
            })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// World sizes; the first is the baseline.
    pub sizes: Vec<usize>,
    pub parts: Vec<Part>,
    /// The world variants of `render` and `standalone` (`run` uses EndpointSlices).
    pub variants: Vec<Variant>,
    /// Edits measured per size (standalone and run).
    pub edits: usize,
    /// How long idle CPU is measured.
    pub idle: Duration,
    /// How long EndpointSlice churn lasts (`run`), and its rate in updates per second.
    pub churn: Duration,
    pub churn_rate: u32,
    /// Longest wait for one edit, one update or the first load to reach Envoy.
    pub timeout: Duration,
    /// Extra arguments of `sluice run` (`SLUICE_BENCH_RUN_ARGS`, split on spaces).
    pub run_args: Vec<String>,
}

/// One figure at every size measured: `(roots, value)` in the order measured.
#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub unit: &'static str,
    pub values: Vec<(usize, f64)>,
}

/// Every figure of a run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub rows: Vec<Row>,
}

impl Figures {
    /// Records `figure` (in `unit`) at `roots`.
    pub fn record(&mut self, figure: impl Into<String>, unit: &'static str, roots: usize, v: f64) {
        let figure = figure.into();
        match self.rows.iter_mut().find(|r| r.figure == figure) {
            Some(row) => row.values.push((roots, v)),
            None => self.rows.push(Row {
                figure,
                unit,
                values: vec![(roots, v)],
            }),
        }
    }

    /// Records p50, p90 and p99 of `samples` in milliseconds, as `figure("p50")` and so on.
    pub fn record_latency(
        &mut self,
        figure: impl Fn(&str) -> String,
        roots: usize,
        samples: &[Duration],
    ) {
        for p in [50, 90, 99] {
            if let Some(d) = measure::percentile(samples, f64::from(p)) {
                self.record(figure(&format!("p{p}")), "ms", roots, measure::ms(d));
            }
        }
    }

    /// The value of `figure` at `roots`.
    pub fn get(&self, figure: &str, roots: usize) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.figure == figure)?
            .values
            .iter()
            .find(|(n, _)| *n == roots)
            .map(|(_, v)| *v)
    }

    /// The table: one line per figure and size, with the first size's value and the ratio.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<64} {:>6} {:>12} {:>12} {:>7}",
            "figure", "roots", "value", "baseline", "ratio"
        );
        for row in &self.rows {
            let Some(&(_, base)) = row.values.first() else {
                continue;
            };
            for &(roots, v) in &row.values {
                let ratio = if base > 0.0 {
                    format!("{:.2}", v / base)
                } else {
                    "-".to_owned()
                };
                let _ = writeln!(
                    out,
                    "{:<64} {roots:>6} {v:>8.1} {:<3} {base:>8.1} {:<3} {ratio:>7}",
                    row.figure, row.unit, row.unit
                );
            }
        }
        out
    }
}

/// Runs every part at every size and prints the table after each size and at the end. A part
/// that fails is reported and the others still run; the run then fails, naming every failure.
pub async fn run(config: &Config) -> anyhow::Result<Figures> {
    let backend = Backend::start("bench").await?;
    let ca = TestCa::new("bench CA")?;
    let binary = sluice_binary()?;
    println!("sluice: {}", binary.display());
    let mut figures = Figures::default();
    let mut failures = Vec::new();
    let mut failed = |what: String, result: anyhow::Result<()>| {
        if let Err(e) = result {
            eprintln!("FAILED: {what}: {e:#}");
            failures.push(format!("{what}: {e:#}"));
        }
    };
    for &roots in &config.sizes {
        for variant in &config.variants {
            let name = variant.name();
            if config.parts.contains(&Part::Render) {
                let result = files::render(roots, *variant, backend.port(), &ca, &mut figures);
                failed(format!("render, {roots} roots, {name}"), result);
            }
            if config.parts.contains(&Part::Standalone) {
                let result =
                    files::standalone(config, roots, *variant, backend.port(), &ca, &mut figures)
                        .await;
                failed(format!("standalone, {roots} roots, {name}"), result);
            }
        }
        if config.parts.contains(&Part::ApiServer) {
            let result = apiserver::run(roots, backend.port(), &ca, &mut figures).await;
            failed(format!("apiserver, {roots} roots"), result);
        }
        if config.parts.contains(&Part::Run) {
            let result = operator::run(config, roots, &backend, &ca, &mut figures).await;
            failed(format!("sluice run, {roots} roots"), result);
        }
        eprintln!("--- after {roots} roots ---\n{}", figures.table());
    }
    println!("{}", figures.table());
    if !failures.is_empty() {
        bail!(
            "{} part(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(figures)
}

/// The configuration from the environment:
/// - `SLUICE_BENCH_SIZES`: comma-separated root counts, default `10,1000,10000`;
/// - `SLUICE_BENCH_PARTS`: any of `render,standalone,run` (default all) and `apiserver` (the
///   in-memory API server alone, not in the default);
/// - `SLUICE_BENCH_WORLDS`: the variants of render and standalone, any of `endpoints-files`,
///   `slices-files`, `endpoints-onefile`, `slices-onefile` (default all);
/// - `SLUICE_BENCH_EDITS` (20), `SLUICE_BENCH_IDLE_SECS` (10), `SLUICE_BENCH_CHURN_SECS` (60),
///   `SLUICE_BENCH_CHURN_RATE` (100 updates per second);
/// - `SLUICE_BENCH_RUN_ARGS`: extra arguments of `sluice run`, separated by spaces (e.g.
///   `--status-writes-in-flight 32`).
pub fn config_from_env() -> anyhow::Result<Config> {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let list = |name: &str, default: &str| -> Vec<String> {
        var(name, default)
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let sizes = list("SLUICE_BENCH_SIZES", "10,1000,10000")
        .iter()
        .map(|s| s.parse::<usize>().context("SLUICE_BENCH_SIZES"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("SLUICE_BENCH_SIZES: sizes must be positive");
    }
    let parts = list("SLUICE_BENCH_PARTS", "render,standalone,run")
        .iter()
        .map(|p| match p.as_str() {
            "render" => Ok(Part::Render),
            "standalone" => Ok(Part::Standalone),
            "run" => Ok(Part::Run),
            "apiserver" => Ok(Part::ApiServer),
            other => bail!(
                "SLUICE_BENCH_PARTS: unknown part {other:?} (render, standalone, run, apiserver)"
            ),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let all = Variant::ALL.map(Variant::name).join(",");
    let variants = list("SLUICE_BENCH_WORLDS", &all)
        .iter()
        .map(|v| Variant::parse(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let number = |name: &str, default: &str| -> anyhow::Result<u64> {
        var(name, default).parse().context(name.to_owned())
    };
    let churn_rate = number("SLUICE_BENCH_CHURN_RATE", "100")?;
    if churn_rate == 0 {
        bail!("SLUICE_BENCH_CHURN_RATE must be positive");
    }
    Ok(Config {
        sizes,
        parts,
        variants,
        edits: usize::try_from(number("SLUICE_BENCH_EDITS", "20")?)?,
        idle: Duration::from_secs(number("SLUICE_BENCH_IDLE_SECS", "10")?),
        churn: Duration::from_secs(number("SLUICE_BENCH_CHURN_SECS", "60")?),
        churn_rate: u32::try_from(churn_rate)?,
        timeout: Duration::from_secs(300),
        run_args: var("SLUICE_BENCH_RUN_ARGS", "")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_table_divides_by_the_first_size() {
        let mut f = Figures::default();
        f.record("x", "ms", 10, 2.0);
        f.record("x", "ms", 1000, 5.0);
        f.record("y", "MiB", 1000, 0.0);
        let table = f.table();
        assert!(table.contains("    2.50"), "{table}");
        assert_eq!(f.get("x", 1000), Some(5.0));
        assert_eq!(f.get("y", 10), None);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with('y') && l.ends_with('-')),
            "{table}"
        );
    }

    #[test]
    fn variants_round_trip_their_names() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.name()).unwrap(), v);
        }
        assert!(Variant::parse("files").is_err());
    }
}
