//! Company key versions: rotating a company's key (a new version seals
//! everything new and the database is re-keyed to it), what still depends
//! on each older version, and destroying a version nothing kept needs.
//!
//! Order of a rotation, so a crash anywhere leaves every byte readable:
//! 1. the current version's wrapping is copied to the object store as a
//!    retired version (`keys/companies/{id}.v{n}.dek`: disaster recovery
//!    can still read what it sealed);
//! 2. the new version is recorded (control store, with the audit event);
//! 3. the object store's current wrapping (`keys/companies/{id}.dek`) is
//!    replaced (the configuration-backup job repairs it too);
//! 4. the database is re-keyed (opening a database still under an older
//!    version finishes this step: `Platform::open_tenant`);
//! 5. the export destination's sealed credentials are sealed again.

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use utoipa::ToSchema;
use wb_core::Action;
use wb_crypto::{sealed_key_version, DataKey, ENVELOPE_LEN};
use wb_store::{Actor, AuditEvent, CompanyStatus, Outcome};

use crate::dr::retired_dek_path;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;

/// The shortest time between two rotations of one company's key.
pub const MIN_ROTATION_INTERVAL: time::Duration = time::Duration::hours(1);
/// The most versions of one company's key held at once (current included).
pub const MAX_HELD_VERSIONS: usize = 24;
/// How long a retired version is kept at least, whatever the scan finds:
/// work that took the key before the rotation (a long upload, a snapshot,
/// a shipping round) may still be sealing with it.
pub const RETIRED_AT_LEAST: time::Duration = time::Duration::hours(24);

/// What a rotation did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotationReport {
    pub company_id: String,
    pub version: u32,
    pub previous_version: u32,
    pub rotated_at: String,
    /// How long writes to the company waited for its database's swap.
    pub database_write_pause_ms: f64,
    pub database_rekey_ms: f64,
    pub database_bytes: u64,
    /// Sealed export-destination credentials sealed again under the new version.
    pub credentials_resealed: bool,
}

/// What still depends on one version.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, ToSchema)]
pub struct VersionUse {
    /// Objects in the object store sealed under it (journal segments,
    /// snapshots, audit segments, attachments).
    pub objects: u64,
    pub bytes: u64,
    /// Objects by kind (`journal`, `snapshots`, `audit`, `files`).
    pub by_kind: BTreeMap<String, u64>,
    /// The export destination's sealed credentials.
    pub export_credentials: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyVersionStatus {
    pub version: u32,
    /// `current`, `retired` or `destroyed`.
    pub state: &'static str,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroyed_at: Option<String>,
    /// Age in days (of the current version: since it was made).
    pub age_days: i64,
    pub depends: VersionUse,
    /// The company database is keyed with it.
    pub database: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompanyKeyStatus {
    pub company_id: String,
    pub current_version: u32,
    pub versions: Vec<KeyVersionStatus>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The object-store prefixes of what a company's key seals, by kind.
fn sealed_prefixes(company_id: &str) -> [(&'static str, ObjectPath); 4] {
    [
        (
            "journal",
            crate::backup::shipper::journal_prefix(company_id),
        ),
        (
            "snapshots",
            crate::backup::snapshot::snapshots_prefix(company_id),
        ),
        ("audit", crate::backup::audit_trail::prefix(company_id)),
        ("files", crate::files::files_prefix(company_id)),
    ]
}

impl Platform {
    /// An owner's rotation of their company's key, through the door.
    pub async fn rotate_key_as(
        &self,
        caller: crate::access::Caller,
        company_id: &str,
    ) -> ServiceResult<RotationReport> {
        let admission = self
            .admit(caller.clone(), company_id, wb_core::Permission::RotateKey)
            .await?;
        drop(admission);
        self.rotate_company_key(company_id, caller.actor).await
    }

    /// A company's key versions for its owners and admins, through the door.
    pub async fn key_status_as(
        &self,
        caller: crate::access::Caller,
        company_id: &str,
    ) -> ServiceResult<CompanyKeyStatus> {
        let admission = self
            .admit(caller, company_id, wb_core::Permission::ManageSecurity)
            .await?;
        // The read is on record before the answer.
        admission
            .read(self, Action::CompanyKeyStatusRead, None)
            .await?;
        self.company_key_status(company_id).await
    }

    /// A new version of a company's key (see the module's order of steps).
    pub async fn rotate_company_key(
        &self,
        company_id: &str,
        actor: Actor,
    ) -> ServiceResult<RotationReport> {
        let company = self
            .control
            .company(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))?;
        if company.status != CompanyStatus::Active {
            return Err(ServiceError::conflict(
                "company-not-active",
                "only an active company's key is rotated (a de-provisioned company's keys wait for its destruction)",
            ));
        }
        let versions = self
            .control
            .company_key_versions(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let before = self.company_key(company_id).await?;
        if before.current_version() != versions.current_version {
            return Err(ServiceError::conflict(
                "key-rotation-running",
                "the company's key changed meanwhile: try again",
            ));
        }
        let previous = versions.current_version;
        // Each rotation copies the whole database and keeps another version:
        // one an hour at most, and not past MAX_HELD_VERSIONS held.
        let now = self.now();
        if previous > 1 && now - versions.current_created_at < MIN_ROTATION_INTERVAL {
            return Err(ServiceError::conflict(
                "key-rotated-recently",
                format!(
                    "the company's key was rotated less than {} minutes ago: rotate again later",
                    MIN_ROTATION_INTERVAL.whole_minutes()
                ),
            ));
        }
        let held = versions
            .retired
            .iter()
            .filter(|r| r.destroyed_at.is_none())
            .count();
        if held + 1 >= MAX_HELD_VERSIONS {
            return Err(ServiceError::conflict(
                "too-many-key-versions",
                format!(
                    "the company holds {} key versions, the most allowed: older ones go once nothing kept needs them",
                    held + 1
                ),
            ));
        }
        // 1. The version about to retire stays readable for recovery.
        self.objects
            .put(
                &retired_dek_path(company_id, previous),
                PutPayload::from(versions.current_wrapped.clone()),
            )
            .await
            .map_err(|e| anyhow::anyhow!("storing the retiring key version: {e}"))?;
        // 2. The new version.
        let next_key = DataKey::generate();
        let wrapped = self
            .keyring()
            .wrap_company_key(company_id, &next_key)
            .map_err(anyhow::Error::from)?;
        let at = self.now();
        let event = AuditEvent {
            at,
            actor: actor.clone(),
            company_id: Some(company_id.to_string()),
            action: Action::CompanyKeyRotate,
            target: Some(format!("company:{company_id}")),
            outcome: Outcome::Success,
            detail: Some(format!(
                "key version {previous} -> {}; version {previous} kept for what it sealed",
                previous + 1
            )),
        };
        let version = match self
            .control
            .rotate_company_key(company_id, previous, &wrapped, at, &event)
            .await
        {
            Ok(v) => v,
            Err(wb_store::StoreError::Conflict(why)) => {
                return Err(ServiceError::conflict("key-rotation-conflict", why))
            }
            Err(e) => return Err(e.into()),
        };
        // 3. The object store's current wrapping, also under its version's
        // name (so a recovery tells which version it is).
        for path in [
            retired_dek_path(company_id, version),
            crate::dr::dek_path(company_id),
        ] {
            self.objects
                .put(&path, PutPayload::from(wrapped.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("storing the new key version: {e}"))?;
        }
        // 4. The database.
        let rekey = self
            .tenants
            .rekey(company_id, before.current(), &next_key)
            .await?;
        self.note_open_key_version(company_id, version);
        // 5. Credentials sealed under the old version.
        let after = self.company_key(company_id).await?;
        let credentials_resealed = self
            .reseal_export_credentials(company_id, &after, actor)
            .await?;
        tracing::info!(company = %company_id, version, write_pause_ms = rekey.write_pause.as_secs_f64() * 1000.0, "company key rotated");
        Ok(RotationReport {
            company_id: company_id.to_string(),
            version,
            previous_version: previous,
            rotated_at: rfc3339(at),
            database_write_pause_ms: rekey.write_pause.as_secs_f64() * 1000.0,
            database_rekey_ms: rekey.took.as_secs_f64() * 1000.0,
            database_bytes: rekey.bytes,
            credentials_resealed,
        })
    }

    async fn reseal_export_credentials(
        &self,
        company_id: &str,
        keys: &wb_crypto::CompanyKeys,
        actor: Actor,
    ) -> ServiceResult<bool> {
        let Some(mut schedule) = self.control.export_schedule(company_id).await? else {
            return Ok(false);
        };
        let Some(sealed) = schedule.sealed_credentials.clone() else {
            return Ok(false);
        };
        if sealed_key_version(&sealed) == keys.current_version() {
            return Ok(false);
        }
        let credentials =
            crate::export_push::Credentials::open(&sealed, keys, company_id, &schedule.destination)
                .map_err(|e| {
                    anyhow::anyhow!("opening the export destination's credentials: {e}")
                })?;
        schedule.sealed_credentials = Some(
            credentials
                .seal(keys, company_id, &schedule.destination)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let event = AuditEvent {
            at: self.now(),
            actor,
            company_id: Some(company_id.to_string()),
            action: Action::ExportScheduleSet,
            target: Some(format!("company:{company_id}")),
            outcome: Outcome::Success,
            detail: Some(format!(
                "credentials sealed again under key version {}",
                keys.current_version()
            )),
        };
        self.control.put_export_schedule(&schedule, &event).await?;
        Ok(true)
    }

    /// What each key version of a company still seals, counted from the
    /// first bytes of every object under the company's prefixes.
    pub async fn key_version_uses(
        &self,
        company_id: &str,
    ) -> ServiceResult<BTreeMap<u32, VersionUse>> {
        let mut uses: BTreeMap<u32, VersionUse> = BTreeMap::new();
        let known: Vec<u32> = match self.control.company_key_versions(company_id).await? {
            Some(v) => std::iter::once(v.current_version)
                .chain(v.retired.iter().map(|r| r.version))
                .collect(),
            None => vec![1],
        };
        for (kind, prefix) in sealed_prefixes(company_id) {
            let listed: Vec<_> = self
                .objects
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| anyhow::anyhow!("listing {prefix}: {e}"))?;
            for meta in listed {
                let version = if meta.size < ENVELOPE_LEN as u64 {
                    1
                } else {
                    match self
                        .objects
                        .get_range(&meta.location, 0..ENVELOPE_LEN as u64)
                        .await
                    {
                        // A header naming a version the company never had is
                        // a version-1 object whose nonce looks like a header.
                        Ok(head) => Some(sealed_key_version(&head))
                            .filter(|v| known.contains(v))
                            .unwrap_or(1),
                        // Deleted meanwhile (retention): it needs nothing.
                        Err(object_store::Error::NotFound { .. }) => continue,
                        Err(e) => {
                            return Err(anyhow::anyhow!("reading {}: {e}", meta.location).into())
                        }
                    }
                };
                let entry = uses.entry(version).or_default();
                entry.objects += 1;
                entry.bytes += meta.size;
                *entry.by_kind.entry(kind.to_string()).or_default() += 1;
            }
        }
        if let Some(sealed) = self
            .control
            .export_schedule(company_id)
            .await?
            .and_then(|s| s.sealed_credentials)
        {
            uses.entry(sealed_key_version(&sealed))
                .or_default()
                .export_credentials = true;
        }
        Ok(uses)
    }

    /// Every version of a company's key and what depends on each.
    pub async fn company_key_status(&self, company_id: &str) -> ServiceResult<CompanyKeyStatus> {
        let versions = self
            .control
            .company_key_versions(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let mut uses = self.key_version_uses(company_id).await?;
        let now = self.now();
        let mut out = vec![KeyVersionStatus {
            version: versions.current_version,
            state: "current",
            created_at: rfc3339(versions.current_created_at),
            retired_at: None,
            destroyed_at: None,
            age_days: (now - versions.current_created_at).whole_days(),
            depends: uses.remove(&versions.current_version).unwrap_or_default(),
            database: true,
        }];
        for retired in &versions.retired {
            out.push(KeyVersionStatus {
                version: retired.version,
                state: if retired.destroyed_at.is_some() {
                    "destroyed"
                } else {
                    "retired"
                },
                created_at: rfc3339(retired.created_at),
                retired_at: Some(rfc3339(retired.retired_at)),
                destroyed_at: retired.destroyed_at.map(rfc3339),
                age_days: (now - retired.created_at).whole_days(),
                depends: uses.remove(&retired.version).unwrap_or_default(),
                database: false,
            });
        }
        Ok(CompanyKeyStatus {
            company_id: company_id.to_string(),
            current_version: versions.current_version,
            versions: out,
        })
    }

    /// Destroys each retired version of a company's key that nothing kept
    /// needs any more (its backups rolled over, its attachments gone), once
    /// the database is under the current version. Returns the versions
    /// destroyed.
    pub async fn retire_company_keys(&self, company_id: &str) -> ServiceResult<Vec<u32>> {
        let Some(versions) = self.control.company_key_versions(company_id).await? else {
            return Ok(Vec::new());
        };
        let waiting: Vec<u32> = versions
            .retired
            .iter()
            .filter(|r| r.destroyed_at.is_none())
            .map(|r| r.version)
            .collect();
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        // The database must open with the current version first (a
        // rotation stopped before its re-key is finished here).
        if self
            .control
            .company(company_id)
            .await?
            .is_some_and(|c| c.status == CompanyStatus::Active)
        {
            let keys = self.company_key(company_id).await?;
            self.open_tenant(company_id, &keys).await?;
        } else {
            // A company on its way out keeps its keys for its destruction.
            return Ok(Vec::new());
        }
        let uses = self.key_version_uses(company_id).await?;
        let now = self.now();
        let mut destroyed = Vec::new();
        for version in waiting {
            let retired_long_enough = versions
                .retired
                .iter()
                .any(|r| r.version == version && now - r.retired_at >= RETIRED_AT_LEAST);
            if uses.contains_key(&version) || !retired_long_enough {
                continue;
            }
            let event = AuditEvent {
                at: self.now(),
                actor: Actor::system("key-retirement"),
                company_id: Some(company_id.to_string()),
                action: Action::CompanyKeyVersionDestroy,
                target: Some(format!("company:{company_id}")),
                outcome: Outcome::Success,
                detail: Some(format!(
                    "key version {version} destroyed: no backup, snapshot, audit segment, attachment or credential sealed under it is kept"
                )),
            };
            match self
                .objects
                .delete(&retired_dek_path(company_id, version))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(anyhow::anyhow!("deleting key version {version}: {e}").into()),
            }
            self.control
                .destroy_key_version(company_id, version, event.at, &event)
                .await?;
            destroyed.push(version);
        }
        Ok(destroyed)
    }
}

/// How often a node looks for companies another node rotated.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Platform {
    /// Forgets this node's open store of each company whose key another
    /// node rotated (PostgreSQL: its pool would connect with the old role
    /// password); the next request opens it with the current version.
    /// Returns the companies forgotten.
    pub async fn refresh_rotated_keys(&self) -> ServiceResult<Vec<String>> {
        let Some(postgres) = &self.postgres else {
            return Ok(Vec::new());
        };
        let current = self.control.rotated_key_versions().await?;
        let mut stale = Vec::new();
        if let Ok(mut open) = self.open_key_versions.lock() {
            for (company, version) in current {
                // Open here with another version, or open with none noted
                // (created on this node before the rotation).
                let reopen = match open.get(&company) {
                    Some(v) => *v != version,
                    None => self.tenants.get_open(&company).is_some(),
                };
                if reopen {
                    open.remove(&company);
                    stale.push(company);
                }
            }
        }
        for company in &stale {
            postgres.forget(company);
            tracing::info!(company = %company, "company key rotated on another node: its store is opened again");
        }
        Ok(stale)
    }
}

/// Runs `refresh_rotated_keys` every `every` until stopped (every node, no lease).
pub fn spawn_refresh(
    platform: std::sync::Arc<Platform>,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if crate::runner::pause(&mut stop, every).await {
                return;
            }
            let round = platform.refresh_rotated_keys();
            if let Ok(Err(e)) =
                crate::runner::unit(&platform, "key-refresh", "round", None, round).await
            {
                tracing::warn!(error = %e, "looking for rotated company keys failed");
            }
        }
    })
}

/// The alert rule raised for a company whose current key version is older
/// than its policy allows.
pub const KEY_AGE_RULE: &str = "company-key-age";

/// Whether a key version made at `made` is past `max_days` at `now`.
pub fn key_too_old(made: OffsetDateTime, max_days: u32, now: OffsetDateTime) -> bool {
    now - made > time::Duration::days(i64::from(max_days))
}

impl Platform {
    /// A company's key upkeep, run by the backup-retention job after its
    /// backups are pruned: retired versions nothing needs are destroyed,
    /// and a current version older than the company's policy allows raises
    /// an alert (once; it stays open until a rotation).
    pub async fn key_upkeep(&self, company_id: &str) -> ServiceResult<Vec<u32>> {
        // Credentials a rotation did not reach (it stopped before its last
        // step) are sealed under the current version first.
        if self
            .control
            .company(company_id)
            .await?
            .is_some_and(|c| c.status == CompanyStatus::Active)
        {
            let keys = self.company_key(company_id).await?;
            self.reseal_export_credentials(company_id, &keys, Actor::system("key-upkeep"))
                .await?;
        }
        let destroyed = self.retire_company_keys(company_id).await?;
        let Some(versions) = self.control.company_key_versions(company_id).await? else {
            return Ok(destroyed);
        };
        let max_days = self
            .control
            .company_policy(company_id)
            .await?
            .and_then(|p| p.key_max_age_days)
            .unwrap_or(wb_core::security_policy::DEFAULT_KEY_MAX_AGE_DAYS);
        let now = self.now();
        if key_too_old(versions.current_created_at, max_days, now) {
            let draft = wb_core::monitor::AlertDraft {
                rule: KEY_AGE_RULE,
                severity: wb_core::monitor::Severity::Medium,
                // One alert per version: a rotation ends the reason for it.
                dedupe_key: format!(
                    "{KEY_AGE_RULE}:company:{company_id}:v{}",
                    versions.current_version
                ),
                title: format!("Company {company_id}'s key is due for rotation"),
                detail: format!(
                    "key version {} was made {} days ago; the company's policy allows {max_days} days \
                     (rotate with POST /api/v1/companies/{company_id}/keys/rotate or workbooks keys rotate --company {company_id})",
                    versions.current_version,
                    (now - versions.current_created_at).whole_days()
                ),
                company_id: Some(company_id.to_string()),
                at: now,
            };
            match self.alerts.raise(&draft, now).await {
                Ok(raised) if raised.new => {
                    tracing::warn!(alert = raised.alert.id, company = %company_id, rule = KEY_AGE_RULE, "alert raised")
                }
                Ok(_) => {}
                Err(e) => return Err(anyhow::anyhow!("raising the key-age alert: {e}").into()),
            }
        }
        Ok(destroyed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_key_is_too_old_only_past_its_maximum() {
        let made = datetime!(2026-01-01 00:00 UTC);
        assert!(!key_too_old(made, 365, made + time::Duration::days(365)));
        assert!(key_too_old(
            made,
            365,
            made + time::Duration::days(365) + time::Duration::seconds(1)
        ));
        assert!(!key_too_old(made, 30, made));
    }
}
