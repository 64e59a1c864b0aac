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
    /// the current one is still needed (ids and counts, never keys).
    Status(StatusArgs),
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
}

pub async fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::RotateMaster(args) => rotate_master(args).await,
        KeysCommand::Status(args) => status(args).await,
    }
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
