//! `workbooks backup status` (shipping position of every company) and
//! `workbooks restore` (point-in-time restore of a company into a new company).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wb_server::backup::{self, RestoreTarget};

use crate::cli::DeploymentArgs;
use crate::open_platform;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Per company: journal head, shipped position and lag (records and
    /// seconds: the age of the oldest change not yet shipped).
    Status {
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Take a snapshot of each company (or one) now, whatever the schedule.
    Snapshot {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: Option<String>,
    },
    /// Apply the retention policy now: delete the snapshots and segments no
    /// longer needed (pitr-days, snapshot-retention-days in the config file).
    Prune {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[arg(long)]
        company: Option<String>,
    },
    /// Restore each company (or one) from its shipped journal into a scratch
    /// store and compare its books with the source's at that point; exit 0
    /// only when every company verifies.
    Verify {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// Verify only this company.
        #[arg(long)]
        company: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["latest", "to_seq", "to"])))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// The company to restore (it is left untouched; a new company is created).
    #[arg(long)]
    pub company: String,
    /// Everything shipped.
    #[arg(long)]
    pub latest: bool,
    /// Up to and including this change-journal sequence number.
    #[arg(long)]
    pub to_seq: Option<i64>,
    /// Every change committed at or before this RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
}

pub async fn run(cmd: BackupCommand) -> Result<()> {
    match cmd {
        BackupCommand::Status { deployment } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let rows = backup::status(&platform).await?;
            if d.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<36}  {:>12}  {:>12}  {:>8}  {:>9}  {:>12}  name",
                    "company", "journal", "shipped", "lag", "lag s", "snapshot"
                );
                for r in rows {
                    println!(
                        "{:<36}  {:>12}  {:>12}  {:>8}  {:>9.3}  {:>12}  {}",
                        r.company_id,
                        r.journal_seq,
                        r.shipped_seq,
                        r.lag_records,
                        r.lag_seconds,
                        r.snapshot_seq,
                        r.name
                    );
                }
            }
            Ok(())
        }
        BackupCommand::Snapshot {
            deployment,
            company,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let mut out = Vec::new();
            for id in company_ids(&platform, company).await? {
                let started = std::time::Instant::now();
                let taken = backup::snapshot::take(&platform, &id)
                    .await
                    .with_context(|| format!("snapshot of company {id}"))?;
                let seconds = started.elapsed().as_secs_f64();
                if !d.json {
                    match &taken {
                        Some(m) => println!(
                            "company {id}: snapshot up to record {} ({} parts, {} bytes) in {seconds:.1} s",
                            m.seq,
                            m.parts.len(),
                            m.bytes
                        ),
                        None => println!("company {id}: nothing new since its last snapshot"),
                    }
                }
                out.push(serde_json::json!({
                    "company_id": id,
                    "seq": taken.as_ref().map(|m| m.seq),
                    "parts": taken.as_ref().map(|m| m.parts.len()),
                    "bytes": taken.as_ref().map(|m| m.bytes),
                    "seconds": seconds,
                }));
            }
            if d.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(())
        }
        BackupCommand::Prune {
            deployment,
            company,
        } => {
            let d = deployment.resolve()?;
            let platform = open_platform(&d).await?;
            let mut out = Vec::new();
            for id in company_ids(&platform, company).await? {
                let pruned = backup::prune(&platform, &id, d.backup.retention)
                    .await
                    .with_context(|| format!("pruning company {id}"))?;
                if !d.json {
                    println!(
                        "company {id}: deleted {} snapshots and {} segments; kept {} and {}",
                        pruned.snapshots_deleted.len(),
                        pruned.segments_deleted,
                        pruned.snapshots_kept,
                        pruned.segments_kept
                    );
                }
                out.push(pruned);
            }
            if d.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(())
        }
        BackupCommand::Verify {
            deployment,
            company,
        } => crate::backup_verify_cmd::verify(deployment, company).await,
    }
}

/// The named company (which must exist) or every company.
async fn company_ids(
    platform: &wb_server::Platform,
    company: Option<String>,
) -> Result<Vec<String>> {
    match company {
        Some(id) => {
            if platform.control.company(&id).await?.is_none() {
                bail!("no company {id}");
            }
            Ok(vec![id])
        }
        None => Ok(platform
            .control
            .companies()
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect()),
    }
}

pub async fn restore(args: RestoreArgs) -> Result<()> {
    let target = match (args.latest, args.to_seq, &args.to) {
        (true, None, None) => RestoreTarget::Latest,
        (false, Some(n), None) => RestoreTarget::Seq(n),
        (false, None, Some(t)) => RestoreTarget::Time(
            OffsetDateTime::parse(t, &Rfc3339)
                .with_context(|| format!("--to {t:?} is not an RFC 3339 time"))?,
        ),
        _ => bail!("give exactly one of --latest, --to-seq N, --to TIME"),
    };
    let d = args.deployment.resolve()?;
    let platform = open_platform(&d).await?;
    let restored = backup::restore(&platform, &args.company, target).await?;
    if d.json {
        println!(
            "{}",
            serde_json::json!({
                "id": restored.company.id,
                "name": restored.company.name,
                "source": args.company,
                "last_seq": restored.last_seq,
                "records": restored.records,
            })
        );
    } else {
        println!(
            "restored company {} up to journal record {} ({} records) into {} ({})",
            args.company,
            restored.last_seq,
            restored.records,
            restored.company.id,
            restored.company.name
        );
    }
    Ok(())
}
