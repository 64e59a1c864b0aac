//! `workbooks bench`: see BENCHMARKS.md.

use anyhow::Result;

use crate::cli::BenchArgs;

pub async fn run(_args: BenchArgs) -> Result<()> {
    anyhow::bail!("bench is not implemented yet")
}
