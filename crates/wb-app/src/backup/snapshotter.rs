//! Snapshots and retention. Every minute, for each company whose lease this
//! node holds (`snapshot:{id}`): a snapshot when the company shipped
//! `snapshot_records` records since its last one, or changed and its last one
//! is `snapshot_every` old. Every hour, the retention policy prunes each
//! company's snapshots and segments. A failure is logged and retried next
//! round; it never stops the job. Each company is a unit of work
//! (`crate::runner::unit`): a panic is caught, logged and alerted, and the others go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backup::shipper::cursor_name;
use crate::backup::{prune, snapshot, BackupPolicy};
use crate::platform::Platform;

pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// Job names for logs and the `job-panicked` alert.
const JOB: &str = "snapshot";
const PRUNE_JOB: &str = "retention";
/// Company key upkeep after each company's pruning (`Platform::key_upkeep`).
const KEYS_JOB: &str = "key-upkeep";
/// Stored exports past a company's `exports_days` (`Platform::expire_exports`).
const EXPORTS_JOB: &str = "export-expiry";
/// Deleting the backups made before a purge.
const PURGE_JOB: &str = "purge-backups";
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

fn lease(company_id: &str) -> String {
    format!("snapshot:{company_id}")
}

/// True when the company is due a snapshot under `policy`.
pub async fn due(
    platform: &Platform,
    company_id: &str,
    policy: &BackupPolicy,
) -> anyhow::Result<bool> {
    let control = &platform.control;
    let shipped = control.cursor(&cursor_name(company_id)).await?;
    let last = control.cursor(&snapshot::seq_cursor(company_id)).await?;
    if shipped <= last {
        return Ok(false);
    }
    if shipped - last >= policy.snapshot_records {
        return Ok(true);
    }
    let last_at = control.cursor(&snapshot::time_cursor(company_id)).await?;
    let age = platform.now().unix_timestamp() - last_at;
    Ok(age >= i64::try_from(policy.snapshot_every.as_secs()).unwrap_or(i64::MAX))
}

/// Runs `work` while renewing the company's snapshot lease every third of its
/// lifetime, so another node does not take over a long snapshot or prune.
async fn with_lease_renewed<T>(
    platform: &Platform,
    company_id: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    let name = lease(company_id);
    let renew = async {
        loop {
            tokio::time::sleep(crate::runner::LEASE_TTL / 3).await;
            crate::runner::hold_lease(&*platform.control, &platform.node_id, &name).await;
        }
    };
    tokio::select! {
        out = work => out,
        never = renew => never,
    }
}

/// One round of snapshots over every company this node may take; returns how
/// many were taken.
pub async fn snapshot_round(platform: &Platform, policy: &BackupPolicy) -> anyhow::Result<usize> {
    let mut taken = 0;
    for company in platform.control.companies().await? {
        // A de-provisioned company gets no new snapshot.
        if company.status != wb_store::CompanyStatus::Active {
            continue;
        }
        if !crate::runner::hold_lease(&*platform.control, &platform.node_id, &lease(&company.id))
            .await
        {
            continue;
        }
        let work = async {
            match due(platform, &company.id, policy).await {
                Ok(true) => {
                    with_lease_renewed(platform, &company.id, snapshot::take(platform, &company.id))
                        .await
                        .map(Some)
                        .map_err(|e| format!("{e:#}"))
                }
                Ok(false) => Ok(None),
                Err(e) => {
                    tracing::warn!(company = %company.id, error = %e, "cannot tell whether a snapshot is due");
                    Ok(None)
                }
            }
        };
        let outcome = crate::runner::unit(platform, JOB, &company.id, Some(&company.id), work)
            .await
            .unwrap_or_else(|panicked| Err(panicked.to_string()));
        match outcome {
            Ok(Some(Some(m))) => {
                taken += 1;
                tracing::info!(company = %company.id, seq = m.seq, parts = m.parts.len(), bytes = m.bytes, "snapshot taken");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(company = %company.id, error = %e, "snapshot failed")
            }
        }
    }
    Ok(taken)
}

async fn prune_round(platform: &Platform, policy: &BackupPolicy) -> anyhow::Result<()> {
    for company in platform.control.companies().await? {
        // A de-provisioned company gets no new snapshot.
        if company.status != wb_store::CompanyStatus::Active {
            continue;
        }
        if !crate::runner::hold_lease(&*platform.control, &platform.node_id, &lease(&company.id))
            .await
        {
            continue;
        }
        let work = with_lease_renewed(
            platform,
            &company.id,
            prune(platform, &company.id, policy.retention),
        );
        match crate::runner::unit(platform, PRUNE_JOB, &company.id, Some(&company.id), work).await {
            Ok(Ok(p)) if !p.snapshots_deleted.is_empty() || p.segments_deleted > 0 => {
                tracing::info!(company = %company.id, snapshots = p.snapshots_deleted.len(), segments = p.segments_deleted, "retention pruned backups");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(company = %company.id, error = %format!("{e:#}"), "retention failed")
            }
            Err(_) => {}
        }
        // What a purge removed goes from the backups too (again, if a job
        // running during the purge uploaded something late).
        let purged = platform.purge_upkeep(&company.id);
        match crate::runner::unit(platform, PURGE_JOB, &company.id, Some(&company.id), purged).await
        {
            Ok(Ok(Some(done))) if done.backups.segments_deleted > 0 => {
                tracing::info!(company = %company.id, snapshots = done.backups.snapshots_deleted.len(), segments = done.backups.segments_deleted, "backups from before a purge deleted");
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::warn!(company = %company.id, error = %format!("{e:#}"), "deleting what a purge removed from the backups failed; retried next round")
            }
        }
        // With its backups pruned, key versions nothing needs any more go,
        // and a key past its policy's age raises an alert.
        let upkeep = platform.key_upkeep(&company.id);
        match crate::runner::unit(platform, KEYS_JOB, &company.id, Some(&company.id), upkeep).await
        {
            Ok(Ok(destroyed)) if !destroyed.is_empty() => {
                tracing::info!(company = %company.id, versions = ?destroyed, "retired key versions destroyed");
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::warn!(company = %company.id, error = %e, "key upkeep failed")
            }
        }
        // Stored exports past the company's own rules go.
        let expiry = platform.expire_exports(&company.id);
        match crate::runner::unit(
            platform,
            EXPORTS_JOB,
            &company.id,
            Some(&company.id),
            expiry,
        )
        .await
        {
            Ok(Ok(gone)) if !gone.is_empty() => {
                tracing::info!(company = %company.id, exports = gone.len(), "expired exports deleted");
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                tracing::warn!(company = %company.id, error = %e, "export expiry failed")
            }
        }
    }
    Ok(())
}

pub fn spawn(
    platform: Arc<Platform>,
    policy: BackupPolicy,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_prune: Option<Instant> = None;
        loop {
            if crate::runner::pause(&mut stop, CHECK_EVERY).await {
                return;
            }
            let round = snapshot_round(&platform, &policy);
            if let Ok(Err(e)) = crate::runner::unit(&platform, JOB, "round", None, round).await {
                tracing::warn!(error = %e, "snapshot round failed");
            }
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                let round = prune_round(&platform, &policy);
                if let Ok(Err(e)) =
                    crate::runner::unit(&platform, PRUNE_JOB, "round", None, round).await
                {
                    tracing::warn!(error = %e, "retention round failed");
                }
            }
        }
    })
}
