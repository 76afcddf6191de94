//! Subcommands. `main.rs` only parses and calls [`run`].

use clap::{Parser, Subcommand};

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
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crds => {
            print!("{}", crate::api::crds_yaml()?);
            Ok(())
        }
    }
}
