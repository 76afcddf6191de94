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
    /// Print an Envoy bootstrap (JSON) pointing at Sluice's xDS server.
    Bootstrap(BootstrapArgs),
    /// Load a directory of manifests once and print, per Gateway, the status of every
    /// IngressRoute and the xDS resources it would serve.
    Render(RenderArgs),
}

#[derive(clap::Args, Debug)]
pub struct BootstrapArgs {
    /// The Gateway instance, as NAMESPACE/NAME (becomes the Envoy node cluster).
    #[arg(long)]
    pub gateway: String,
    /// Address of Sluice's xDS server, HOST:PORT.
    #[arg(long)]
    pub xds_address: String,
    /// xDS flavour.
    #[arg(long, value_enum, default_value_t = crate::provision::bootstrap::AdsFlavour::Delta)]
    pub ads: crate::provision::bootstrap::AdsFlavour,
    /// Envoy admin port (bound to 127.0.0.1 only).
    #[arg(long, default_value_t = crate::provision::bootstrap::DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,
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
        Command::Bootstrap(args) => {
            print!("{}", bootstrap(&args)?);
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

fn bootstrap(args: &BootstrapArgs) -> anyhow::Result<String> {
    use crate::provision::bootstrap::{BootstrapOptions, build_bootstrap};
    use anyhow::Context;
    let (ns, name) = args
        .gateway
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
        .with_context(|| format!("--gateway {:?}: expected NAMESPACE/NAME", args.gateway))?;
    let (host, port) = args
        .xds_address
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().ok()?,
            ))
        })
        .filter(|(h, _)| !h.is_empty())
        .with_context(|| format!("--xds-address {:?}: expected HOST:PORT", args.xds_address))?;
    let mut opts = BootstrapOptions::new(crate::snapshot::ObjKey::new(ns, name), host, port);
    opts.ads = args.ads;
    opts.admin_port = args.admin_port;
    Ok(serde_json::to_string_pretty(&build_bootstrap(&opts))? + "\n")
}
