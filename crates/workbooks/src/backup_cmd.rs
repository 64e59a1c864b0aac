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
    /// The company to restore (left untouched unless --in-place: a new
    /// company is created).
    #[arg(long)]
    pub company: String,
    /// Bring the company itself back to that point, with compensating entries
    /// (posted entries are never deleted; the revert is audited and can be
    /// undone). Asks for confirmation unless --yes.
    #[arg(long)]
    pub in_place: bool,
    /// Confirm an in-place restore without asking.
    #[arg(long, requires = "in_place")]
    pub yes: bool,
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

fn progress_bar(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

fn progress_of(bar: &indicatif::ProgressBar) -> backup::Progress {
    let bar = bar.clone();
    std::sync::Arc::new(move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
}

/// Asks the operator to type the company id; refuses without a terminal.
fn confirm_in_place(company: &str, name: &str) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!("an in-place restore needs confirmation: run it at a terminal, or pass --yes");
    }
    eprintln!(
        "This brings company {company} ({name}) back to the chosen point by reversing every later entry (and reinstating entries reversed since)."
    );
    eprint!("Type the company id to confirm: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != company {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
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
    if args.in_place {
        let company = platform
            .control
            .company(&args.company)
            .await?
            .with_context(|| format!("no company {}", args.company))?;
        // On the embedded store the company's books are files the server's
        // writer owns: revert only while no server runs on them.
        let _lock = match d.storage {
            wb_server::StorageConfig::Embedded => {
                Some(wb_server::data_lock::lock(&d.data).context(
                    "an in-place restore on the embedded store needs the server stopped",
                )?)
            }
            wb_server::StorageConfig::Postgres(_) => None,
        };
        if !args.yes {
            confirm_in_place(&company.id, &company.name)?;
        }
        let bar = progress_bar("reverting");
        let reporter = progress_of(&bar);
        let reverted = backup::revert_in_place(
            &platform,
            &args.company,
            target,
            wb_store::Actor::system("cli"),
            &move |done, total| reporter(done, total),
        )
        .await?;
        bar.finish_and_clear();
        if d.json {
            println!(
                "{}",
                serde_json::to_string(&serde_json::json!({
                    "id": reverted.company_id,
                    "in_place": true,
                    "to_seq": reverted.to_seq,
                    "from_seq": reverted.from_seq,
                    "reversed": reverted.reversed,
                    "reinstated": reverted.reinstated,
                    "last_seq": reverted.last_seq,
                }))?
            );
        } else {
            println!(
                "company {} restored in place to journal record {} (head was {}): {} entries reversed, {} reinstated; nothing deleted",
                reverted.company_id,
                reverted.to_seq,
                reverted.from_seq,
                reverted.reversed,
                reverted.reinstated
            );
        }
        return Ok(());
    }
    let bar = progress_bar("restoring");
    let restored =
        backup::restore_with_progress(&platform, &args.company, target, Some(progress_of(&bar)))
            .await?;
    bar.finish_and_clear();
    if d.json {
        println!(
            "{}",
            serde_json::json!({
                "id": restored.company.id,
                "name": restored.company.name,
                "source": args.company,
                "last_seq": restored.last_seq,
                "records": restored.records,
                "snapshot": restored.snapshot,
            })
        );
    } else {
        let from = match restored.snapshot {
            Some(seq) => format!("snapshot {seq} + {} records", restored.records),
            None => format!("{} records", restored.records),
        };
        println!(
            "restored company {} up to journal record {} ({from}) into {} ({})",
            args.company, restored.last_seq, restored.company.id, restored.company.name
        );
    }
    Ok(())
}
