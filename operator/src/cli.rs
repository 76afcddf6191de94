//! Subcommands. `main.rs` only parses and calls [`run`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Per-team Envoy ingress for Contour's IngressRoute API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CRD YAML (IngressRoute, TLSCertificateDelegation, Gateway).
    Crds,
    /// Load a directory of manifests once and print, per Gateway, the status of every
    /// IngressRoute and the xDS resources it would serve.
    Render(RenderArgs),
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Directory of manifests (`.yaml`, `.yml`, `.json`, read recursively), or one file.
    #[arg(long, value_name = "DIR")]
    pub manifests: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
    /// Also print each instance's DAG (the input of the xDS translation).
    #[arg(long)]
    pub dag: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Json,
    Yaml,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crds => {
            print!("{}", crate::api::crds_yaml()?);
            Ok(())
        }
        Command::Render(args) => render(&args),
    }
}

/// Prints the report for everything that loaded, even when some documents did not; fails
/// afterwards if any did not.
fn render(args: &RenderArgs) -> anyhow::Result<()> {
    let loaded = crate::source::load_dir(&args.manifests)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    for error in &loaded.errors {
        eprintln!("error: {error}");
    }
    let options = crate::render::RenderOptions {
        include_dag: args.dag,
    };
    let report = crate::render::render_report(&loaded.snapshot, options);
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Yaml => print!("{}", serde_norway::to_string(&report)?),
    }
    match loaded.errors.len() {
        0 => Ok(()),
        1 => anyhow::bail!("1 load error; the output covers what loaded"),
        n => anyhow::bail!("{n} load errors; the output covers what loaded"),
    }
}
