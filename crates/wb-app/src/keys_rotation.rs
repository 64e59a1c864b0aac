//! `workbooks keys rotate-master`: moves everything the master key protects
//! to a new master key, while servers run, resumably.
//!
//! What moves (see docs/keys.md):
//! - wrapped keys, re-wrapped (format v2 names the KEK, so a rerun skips what
//!   is done): each company's DEK in the control store and its copy in the
//!   object store, the platform backup key (`keys/platform.dek`), and this
//!   node's `control.key` and `node.key` (last, so a rerun with the old key
//!   still opens the deployment until the very end);
//! - what keys derived from the master key sealed, sealed again under the new
//!   key's derived keys: users' and staff TOTP secrets, queued email;
//! - node certificates made with the old key's certification key, re-issued.
//!
//! Then a configuration backup is written (it carries the re-sealed TOTP
//! secrets, so DR with the new key alone signs users in), the handover is
//! withdrawn and the rotation audited. Each step replaces a value only if it
//! is still the one read (a node may change it meanwhile): the sweep repeats
//! until a pass changes nothing.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use wb_core::Action;
use wb_crypto::MasterKey;
use wb_store::{Actor, AuditEvent, Outcome, SealedColumn};

use crate::keys_handover;
use crate::keys_status::{self, KeyStatus};
use crate::platform::Platform;

/// Passes over everything before giving up on a deployment that keeps
/// writing under the old key (a node that missed the handover).
const PASSES_MAX: usize = 3;

#[derive(Debug, Clone)]
pub struct RotationOptions {
    /// How long running nodes get to learn the new key before the sweep.
    pub grace: Duration,
    /// Stop (with an error) after this many changes: the test hook for an
    /// interrupted rotation (`WORKBOOKS_ROTATION_STOP_AFTER`).
    pub stop_after: Option<usize>,
}

impl Default for RotationOptions {
    fn default() -> RotationOptions {
        RotationOptions {
            grace: 2 * keys_handover::LOOK_EVERY,
            stop_after: None,
        }
    }
}

/// What a rotation did (ids and counts only).
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    /// The master keys rotated away from.
    pub from: Vec<String>,
    pub kek: String,
    /// Wrapped keys re-wrapped.
    pub rewrapped: usize,
    /// Sealed secrets (TOTP, queued email) sealed again.
    pub resealed: usize,
    /// Node certificates re-issued.
    pub recertified: usize,
    /// Where something opened under no key held (left as it was).
    pub unreadable: Vec<String>,
    pub status: KeyStatus,
}

/// Counts changes, and stops the run after `stop_after` of them.
struct Progress {
    changes: usize,
    stop_after: Option<usize>,
    report: RotationReport,
}

impl Progress {
    fn change(&mut self) -> anyhow::Result<()> {
        if self.stop_after.is_some_and(|n| self.changes >= n) {
            bail!(
                "rotation stopped after {} changes (WORKBOOKS_ROTATION_STOP_AFTER); run it again to finish",
                self.changes
            );
        }
        self.changes += 1;
        Ok(())
    }
}

/// Rotates to `next`, which the platform's keyring must already hold as its
/// current key (the key it replaces held too): see `workbooks keys`. A run
/// that fails is audited as a failure (best effort) and can be run again.
pub async fn rotate_master(
    platform: &Platform,
    next: MasterKey,
    actor: Actor,
    options: &RotationOptions,
) -> anyhow::Result<RotationReport> {
    let kek = next.id().to_string();
    let result = rotate(platform, next, actor.clone(), options).await;
    if let Err(error) = &result {
        let event = AuditEvent {
            at: platform.now(),
            actor,
            company_id: None,
            action: Action::KeysRotateMaster,
            target: Some(format!("kek:{kek}")),
            outcome: Outcome::Failure,
            detail: Some(format!("{error:#}")),
        };
        if let Err(e) = platform.control.audit(&event).await {
            tracing::error!(error = %e, "auditing an unfinished master-key rotation");
        }
    }
    result
}

async fn rotate(
    platform: &Platform,
    next: MasterKey,
    actor: Actor,
    options: &RotationOptions,
) -> anyhow::Result<RotationReport> {
    let keyring = platform.keyring();
    if keyring.current_kek() != next.id() {
        bail!("the keyring must hold the new master key as its current key");
    }
    let from: Vec<String> = keyring.held_keks()[1..]
        .iter()
        .map(ToString::to_string)
        .collect();
    if keys_handover::publish(platform, &next).await? && !options.grace.is_zero() {
        tokio::time::sleep(options.grace).await;
    }
    let mut progress = Progress {
        changes: 0,
        stop_after: options.stop_after,
        report: RotationReport {
            from,
            kek: next.id().to_string(),
            rewrapped: 0,
            resealed: 0,
            recertified: 0,
            unreadable: Vec::new(),
            status: KeyStatus::default(),
        },
    };
    for _ in 0..PASSES_MAX {
        let before = progress.changes;
        progress.report.unreadable.clear();
        sweep(platform, &mut progress).await?;
        if progress.changes == before {
            break;
        }
    }
    let status = keys_status::key_status(platform).await?;
    if status.need_other_kek > progress.report.unreadable.len() {
        bail!(
            "{} keys or secrets are still under another master key after {PASSES_MAX} passes (a node that missed the handover?); run the rotation again",
            status.need_other_kek
        );
    }
    // Never declared done with something left under another key: the
    // handover stays published, and a rerun picks up from here.
    if !progress.report.unreadable.is_empty() {
        bail!(
            "{} keys or secrets could not be opened ({}): the rotation is not complete; fix them and run it again",
            progress.report.unreadable.len(),
            progress.report.unreadable.join("; ")
        );
    }
    keys_handover::withdraw(platform).await?;
    let report = &mut progress.report;
    report.status = keys_status::key_status(platform).await?;
    platform
        .control
        .audit(&AuditEvent {
            at: platform.now(),
            actor,
            company_id: None,
            action: Action::KeysRotateMaster,
            target: Some(format!("kek:{}", report.kek)),
            outcome: if report.unreadable.is_empty() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            detail: Some(format!(
                "from {}: {} keys re-wrapped, {} secrets re-sealed, {} node certificates re-issued, {} unreadable",
                if report.from.is_empty() { "-".to_string() } else { report.from.join(",") },
                report.rewrapped,
                report.resealed,
                report.recertified,
                report.unreadable.len()
            )),
        })
        .await?;
    Ok(progress.report)
}

/// One pass over everything, in the order that keeps the old key able to
/// open the deployment until the end.
async fn sweep(platform: &Platform, progress: &mut Progress) -> anyhow::Result<()> {
    rewrap_company_keys(platform, progress).await?;
    rewrap_objects(platform, progress).await?;
    for column in [
        SealedColumn::UserTotp,
        SealedColumn::StaffTotp,
        SealedColumn::OutboxMessage,
    ] {
        reseal_column(platform, column, progress).await?;
    }
    recertify_nodes(platform, progress).await?;
    // The newest configuration backup carries TOTP secrets as sealed now.
    if progress.changes > 0 {
        crate::dr::backup_config_once(platform, &mut Default::default())
            .await
            .context("writing a configuration backup")?;
    }
    for found in keys_status::key_files(platform)? {
        let path = platform.data_dir().join(&found.place);
        if platform
            .keyring()
            .rewrap(found.kind(), &found.wrapped)?
            .is_some()
        {
            progress.change()?;
            keys_handover::rewrap_file(platform, &path, found.kind())?;
            progress.report.rewrapped += 1;
        }
    }
    Ok(())
}

async fn rewrap_company_keys(platform: &Platform, progress: &mut Progress) -> anyhow::Result<()> {
    let keyring = platform.keyring();
    for column in [SealedColumn::CompanyKey, SealedColumn::RetiredCompanyKey] {
        for (id, wrapped) in platform.control.sealed_values(column).await? {
            // A retired version is wrapped for its company (`<id>/v<n>`).
            let company = wb_store::key_versions::company_of_retired_key(&id);
            match keyring.rewrap(crate::keyring::Wrapped::Company(company), &wrapped) {
                Ok(None) => {}
                Ok(Some(rewrapped)) => {
                    progress.change()?;
                    // False: changed meanwhile; the next pass reads it again.
                    if platform
                        .control
                        .reseal(column, &id, &wrapped, &rewrapped)
                        .await?
                    {
                        progress.report.rewrapped += 1;
                    }
                }
                Err(e) => progress
                    .report
                    .unreadable
                    .push(format!("{}/{id}: {e}", column.sql_names_table())),
            }
        }
    }
    Ok(())
}

async fn rewrap_objects(platform: &Platform, progress: &mut Progress) -> anyhow::Result<()> {
    let mut found = keys_status::object_company_keys(platform).await?;
    found.extend(keys_status::platform_backup_key(platform).await?);
    for item in found {
        // A company whose destruction began keeps no key: its copy here is
        // left for the destruction to delete, never written back.
        if let Some(id) = &item.company {
            if keys_status::being_destroyed(platform, id).await? {
                continue;
            }
        }
        match platform.keyring().rewrap(item.kind(), &item.wrapped) {
            Ok(None) => {}
            Ok(Some(rewrapped)) => {
                progress.change()?;
                platform
                    .objects
                    .put(
                        &object_store::path::Path::from(item.place.as_str()),
                        PutPayload::from(rewrapped),
                    )
                    .await
                    .with_context(|| format!("storing {}", item.place))?;
                progress.report.rewrapped += 1;
            }
            Err(e) => progress
                .report
                .unreadable
                .push(format!("{}: {e}", item.place)),
        }
    }
    Ok(())
}

async fn reseal_column(
    platform: &Platform,
    column: SealedColumn,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    for (id, sealed) in platform.control.sealed_values(column).await? {
        let Some((derived, aad)) = keys_status::sealed_aad(column, &id) else {
            continue;
        };
        match platform.keyring().reseal(derived, &sealed, &aad) {
            Ok(None) => {}
            Ok(Some(resealed)) => {
                progress.change()?;
                if platform
                    .control
                    .reseal(column, &id, &sealed, &resealed)
                    .await?
                {
                    progress.report.resealed += 1;
                }
            }
            Err(_) => progress
                .report
                .unreadable
                .push(format!("{column:?} {id}: opens under no master key held")),
        }
    }
    Ok(())
}

/// Re-issues the certificate of every node certified under an older key
/// (the certifying key is derived from the master key); a node never
/// certified stays so.
async fn recertify_nodes(platform: &Platform, progress: &mut Progress) -> anyhow::Result<()> {
    let certifiers = platform.keyring().node_certifiers();
    let Some((current, older)) = certifiers.split_first() else {
        return Err(anyhow!("the keyring holds no key"));
    };
    for node in platform.control.node_keys().await? {
        let Some(certificate) = node.certificate.as_deref() else {
            continue;
        };
        if current.is_certified(&node.id, &node.public_key, certificate)
            || !older
                .iter()
                .any(|c| c.is_certified(&node.id, &node.public_key, certificate))
        {
            continue;
        }
        progress.change()?;
        let renewed = current.certify(&node.id, &node.public_key);
        platform
            .control
            .register_node(&node.id, &node.public_key, &renewed, platform.now())
            .await?;
        progress.report.recertified += 1;
    }
    Ok(())
}
