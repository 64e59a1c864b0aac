//! Scheduled backup verification: once shortly after start, then every
//! `ServerConfig::backup_verify_every`, one node (lease `backup-verify`)
//! restores every company from its shipped journal into a scratch store and
//! compares it with the source (`crate::backup_verify`). Each result is audited
//! as `backup.verify`; a company that fails raises a high-severity
//! `backup-verify-failed` alert (one active alert per company: repeats bump it).
//!
//! When the last round started (any node) is the control-store cursor
//! `backup-verify:last-run` (Unix seconds), so nodes that restart or run side
//! by side keep one schedule instead of each verifying on its own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_core::monitor::{AlertDraft, Severity};
use wb_core::Action;
use wb_store::{Actor, AuditEvent, Outcome};

use crate::backup_verify::{self, Verification};
use crate::platform::Platform;

pub const LEASE: &str = "backup-verify";
pub const RULE: &str = "backup-verify-failed";
/// The first round runs this long after the server starts.
pub const FIRST_AFTER: Duration = Duration::from_secs(60);
/// Default time between rounds.
pub const EVERY: Duration = Duration::from_secs(24 * 60 * 60);
const LAST_RUN: &str = "backup-verify:last-run";

fn actor() -> Actor {
    Actor::system("backup-verify")
}

/// One round: when this node holds the lease, verifies every company, audits
/// each result, and raises an alert for each failure. `None` when another node
/// holds the lease.
pub async fn verify_once(platform: &Platform) -> anyhow::Result<Option<Vec<Verification>>> {
    round(platform, &|| false).await
}

async fn round(
    platform: &Platform,
    stop: &(dyn Fn() -> bool + Sync),
) -> anyhow::Result<Option<Vec<Verification>>> {
    if !crate::runner::hold_lease(&*platform.control, &platform.node_id, LEASE).await {
        return Ok(None);
    }
    let started = platform.now();
    if let Err(e) = platform
        .control
        .set_cursor(LAST_RUN, started.unix_timestamp())
        .await
    {
        tracing::warn!(error = %e, "cannot record the start of a backup verification");
    }
    let results = match backup_verify::verify_until(platform, None, stop).await {
        Ok(results) => results,
        Err(e) => {
            let reason = format!("{e:#}").replace('\n', " ");
            raise(platform, None, &reason).await;
            audit_error(platform, &reason).await;
            return Err(e);
        }
    };
    backup_verify::audit(platform, &results, &actor()).await;
    for v in &results {
        if let Some(reason) = &v.failure {
            raise(platform, Some(&v.company_id), reason).await;
        }
    }
    let failed = results.iter().filter(|v| !v.verified()).count();
    tracing::info!(
        companies = results.len(),
        failed,
        "backup verification finished"
    );
    Ok(Some(results))
}

async fn raise(platform: &Platform, company: Option<&str>, reason: &str) {
    let now = platform.now();
    let draft = AlertDraft {
        rule: RULE,
        severity: Severity::High,
        dedupe_key: match company {
            Some(id) => format!("{RULE}:{id}"),
            None => RULE.to_string(),
        },
        title: match company {
            Some(id) => format!("Backup of company {id} does not verify"),
            None => "Backup verification could not run".to_string(),
        },
        detail: reason.to_string(),
        company_id: company.map(str::to_string),
        at: now,
    };
    if let Err(e) = platform.alerts.raise(&draft, now).await {
        tracing::error!(error = %e, "cannot raise the backup verification alert");
    }
}

async fn audit_error(platform: &Platform, reason: &str) {
    let event = AuditEvent {
        at: platform.now(),
        actor: actor(),
        company_id: None,
        action: Action::BackupVerify,
        target: None,
        outcome: Outcome::Failure,
        detail: Some(reason.to_string()),
    };
    if let Err(e) = platform.control.audit(&event).await {
        tracing::error!(error = %e, "could not audit a backup verification");
    }
}

/// How long until the next round is due (zero when due now).
async fn until_due(platform: &Platform, every: Duration) -> Duration {
    let last = match platform.control.cursor(LAST_RUN).await {
        Ok(last) if last > 0 => last,
        _ => return Duration::ZERO,
    };
    let elapsed = platform.now().unix_timestamp().saturating_sub(last);
    let elapsed = Duration::from_secs(u64::try_from(elapsed).unwrap_or(0));
    every.saturating_sub(elapsed)
}

/// Runs a round `first_after` the start, then every `every` (zero disables).
pub fn spawn(
    platform: Arc<Platform>,
    every: Duration,
    first_after: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if every.is_zero() || crate::runner::pause(&mut stop, first_after).await {
            return;
        }
        loop {
            let wait = until_due(&platform, every).await;
            if !wait.is_zero() {
                if crate::runner::pause(&mut stop, wait).await {
                    return;
                }
                continue;
            }
            let stopping = {
                let stop = stop.clone();
                move || *stop.borrow()
            };
            let this_round = round(&platform, &stopping);
            let outcome =
                crate::runner::unit(&platform, "backup-verify", "round", None, this_round)
                    .await
                    .unwrap_or_else(|panicked| Err(panicked.into()));
            match outcome {
                Ok(Some(_)) => {}
                // Another node verifies; look again when a round would be due.
                Ok(None) => {
                    if crate::runner::pause(&mut stop, every.min(Duration::from_secs(3600))).await {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "backup verification failed to run");
                    if crate::runner::pause(&mut stop, every.min(Duration::from_secs(3600))).await {
                        return;
                    }
                }
            }
        }
    })
}
