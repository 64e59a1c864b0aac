//! `workbooks dr restore`: rebuild a deployment from its object store.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::cli::DeploymentArgs;
use crate::open_platform;

#[derive(Debug, Subcommand)]
pub enum DrCommand {
    /// On a fresh node (empty data directory or control database), restore the
    /// platform configuration and every company to its latest shipped point
    /// from the object store, with only the master key. Prints the point each
    /// company was restored to and how long the recovery took.
    Restore(DrRestoreArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DrRestoreArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// The object store holding the backups (file:///path or s3://bucket?...);
    /// it stays this deployment's object store afterwards.
    #[arg(long)]
    pub from: String,
}

pub async fn run(cmd: DrCommand) -> Result<()> {
    let DrCommand::Restore(mut args) = cmd;
    args.deployment.object_store = Some(args.from.clone());
    let d = args.deployment.resolve()?;
    let platform = open_platform(&d).await?;
    let report = wb_server::dr::restore(&platform).await?;
    let failed = report.companies.iter().filter(|c| !c.restored).count();
    if d.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.companies {
            if c.restored {
                println!(
                    "restored {}  {:>7} records, up to {} (journal record {}; RPO {} s before this recovery)  {}",
                    c.company_id,
                    c.records,
                    c.restored_to.as_deref().unwrap_or("the start (nothing was shipped)"),
                    c.last_seq,
                    c.age_seconds.map_or("-".to_string(), |s| s.to_string()),
                    c.name
                );
            } else {
                println!(
                    "NOT RESTORED {}  {}: {}",
                    c.company_id,
                    c.name,
                    c.error.as_deref().unwrap_or("unknown error")
                );
            }
        }
        println!(
            "recovered {} of {} companies and {} users from {} in {:.1} s (RTO of this run)",
            report.companies.len() - failed,
            report.companies.len(),
            report.users,
            report.configuration_from,
            report.seconds
        );
    }
    if failed > 0 {
        bail!("{failed} companies could not be restored");
    }
    Ok(())
}
