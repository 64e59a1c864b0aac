//! `workbooks keys`: master-key rotation and the keys' status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use wb_server::keyring::Keyring;
use wb_server::keys_rotation::{self, RotationOptions};
use wb_server::{Platform, SystemClock};

use crate::cli::{Deployment, DeploymentArgs};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every key (and re-seal what keys derived from the master key
    /// sealed) under a new master key, while servers run. The current key
    /// comes from the usual provider; rerun after an interruption to finish.
    /// Afterwards only the new key opens the deployment and its backups.
    RotateMaster(RotateMasterArgs),
    /// Which master key wraps how many keys, and whether a key other than
    /// the current one is still needed (ids and counts, never keys); with
    /// --company, that company's key versions and what depends on each.
    Status(StatusArgs),
    /// A new key version for one company: everything new is sealed with it
    /// and the company database is re-keyed while it serves; older versions
    /// stay (wrapped) while anything kept was sealed with them.
    Rotate(RotateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// The company's id.
    #[arg(long)]
    pub company: String,
}

#[derive(Debug, Clone, Args)]
pub struct RotateMasterArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// The new master key: 64 hex characters, mode 600.
    #[arg(long)]
    pub new_key_file: PathBuf,
    /// How long running servers get to learn the new key (they look every
    /// 5 s) before keys move. 0 when no server runs.
    #[arg(long, default_value_t = 10)]
    pub grace_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    /// One company's key versions instead of the master key's status.
    #[arg(long)]
    pub company: Option<String>,
}

pub async fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::RotateMaster(args) => rotate_master(args).await,
        KeysCommand::Status(args) => status(args).await,
        KeysCommand::Rotate(args) => rotate(args).await,
    }
}

async fn rotate(args: RotateArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    // On the embedded store a running server holds the company database
    // open: the re-key swaps the file under it. Through the API
    // (`POST /api/v1/companies/{c}/keys/rotate`) the server does it live.
    let _lock = match d.storage {
        wb_server::StorageConfig::Embedded => Some(wb_server::data_lock::lock(&d.data).context(
            "keys rotate on the embedded store needs the server stopped \
             (a running server rotates through POST /api/v1/companies/{company}/keys/rotate)",
        )?),
        wb_server::StorageConfig::Postgres(_) => None,
    };
    let platform = crate::open_platform(&d).await?;
    let args_company = &args.company;
    let report = platform
        .rotate_company_key(&args.company, crate::alerts_cmd::operator())
        .await
        .map_err(|e: wb_server::error::ServiceError| {
            anyhow::anyhow!("company {}: {}", args_company, e.detail)
        })?;
    if d.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "company {}: key version {} -> {}; database re-keyed in {:.0} ms (writes paused {:.1} ms)",
            report.company_id,
            report.previous_version,
            report.version,
            report.database_rekey_ms,
            report.database_write_pause_ms
        );
    }
    Ok(())
}

async fn company_status(d: &Deployment, company: &str) -> Result<()> {
    let platform = crate::open_platform(d).await?;
    let args_company = company;
    let status = platform.company_key_status(company).await.map_err(
        |e: wb_server::error::ServiceError| {
            anyhow::anyhow!("company {}: {}", args_company, e.detail)
        },
    )?;
    if d.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!(
        "company {}: current key version {}",
        status.company_id, status.current_version
    );
    for v in &status.versions {
        println!(
            "  v{:<3} {:<9} made {} ({} days); {} objects ({} bytes){}{}",
            v.version,
            v.state,
            v.created_at,
            v.age_days,
            v.depends.objects,
            v.depends.bytes,
            if v.depends.export_credentials {
                "; export credentials"
            } else {
                ""
            },
            if v.database { "; the database" } else { "" }
        );
    }
    Ok(())
}

async fn rotate_master(args: RotateMasterArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    let next = wb_crypto::MasterKey::load(&args.new_key_file)
        .with_context(|| format!("--new-key-file {}", args.new_key_file.display()))?;
    // Both keys held, the new one current: a rerun after an interruption
    // opens what is already moved and what is not.
    let keyring = Keyring::new(crate::master_key(&d)?);
    keyring.learn(next.clone());
    let platform = open(&d, keyring).await?;
    let options = RotationOptions {
        grace: Duration::from_secs(args.grace_seconds),
        stop_after: std::env::var("WORKBOOKS_ROTATION_STOP_AFTER")
            .ok()
            .and_then(|n| n.parse().ok()),
    };
    let report =
        keys_rotation::rotate_master(&platform, next, crate::alerts_cmd::operator(), &options)
            .await?;
    if d.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "rotated to master key {}: {} keys re-wrapped, {} secrets re-sealed, {} node certificates re-issued; rotation {}",
            report.kek, report.rewrapped, report.resealed, report.recertified, report.status.rotation
        );
    }
    if !report.unreadable.is_empty() {
        anyhow::bail!(
            "{} items open under no key held and were left as they were: {}",
            report.unreadable.len(),
            report.unreadable.join("; ")
        );
    }
    Ok(())
}

async fn status(args: StatusArgs) -> Result<()> {
    let d = args.deployment.resolve()?;
    if let Some(company) = &args.company {
        return company_status(&d, company).await;
    }
    let platform = crate::open_platform(&d).await?;
    let status = wb_server::keys_status::key_status(&platform).await?;
    if d.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("master key {}: rotation {}", status.kek, status.rotation);
        println!(
            "deployment key (signs certificates of destruction): {}",
            status.deployment_key
        );
        for (kek, n) in &status.wrapped {
            println!("  {n:>6} keys wrapped by {kek}");
        }
        if status.need_other_kek > 0 {
            println!(
                "  {} keys or secrets still need another master key",
                status.need_other_kek
            );
        }
    }
    Ok(())
}

async fn open(d: &Deployment, keyring: Keyring) -> Result<Arc<Platform>> {
    let platform = Platform::open_with_keyring(
        &d.data,
        keyring,
        Arc::new(SystemClock),
        time::Duration::hours(12),
        &d.storage,
    )
    .await?;
    let objects = wb_server::objects::open(d.object_store.as_deref(), &d.data)?;
    Ok(Arc::new(platform.with_object_store(objects)))
}
