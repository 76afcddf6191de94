//! `make bench`: the scale benchmark (see `sluice_e2e::bench`), sizes from the environment.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = sluice_e2e::bench::config_from_env()?;
    sluice_e2e::bench::run(&config).await?;
    Ok(())
}
