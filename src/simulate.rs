//! `vigil simulate`: labelled synthetic gateway traffic (wired to `vigil_ingest::simulate`).

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct SimulateArgs {}

pub fn simulate(_args: SimulateArgs) -> Result<()> {
    anyhow::bail!("simulate is being wired")
}
