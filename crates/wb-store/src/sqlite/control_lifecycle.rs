//! `LifecycleStore` for the SQLCipher control database.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use time::OffsetDateTime;
use wb_core::lifecycle::StepRecord;

use super::control::SqliteControl;
use crate::lifecycle::with_step;
use crate::lifecycle::*;
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

const COLUMNS: &str = "company_id, deprovisioned_at, deprovisioned_by, destroy_after, \
    certificate_id, certificate_token_hash, steps, destroyed_at, certificate, destruction_started_at";

type Parsed<T> = rusqlite::Result<Result<T, StoreError>>;

fn lifecycle_row(r: &Row<'_>) -> Parsed<Deprovisioning> {
    let company_id: String = r.get(0)?;
    let at: i64 = r.get(1)?;
    let by: String = r.get(2)?;
    let after: i64 = r.get(3)?;
    let certificate_id: String = r.get(4)?;
    let certificate_token_hash: String = r.get(5)?;
    let steps: String = r.get(6)?;
    let destroyed: Option<i64> = r.get(7)?;
    let certificate: Option<String> = r.get(8)?;
    let started: Option<i64> = r.get(9)?;
    Ok((|| {
        Ok(Deprovisioning {
            company_id,
            deprovisioned_at: from_unix_millis(at)?,
            deprovisioned_by: by,
            destroy_after: from_unix_millis(after)?,
            destruction_started_at: started.map(from_unix_millis).transpose()?,
            certificate_id,
            certificate_token_hash,
            steps: parse_steps(&steps)?,
            destroyed_at: destroyed.map(from_unix_millis).transpose()?,
            certificate,
        })
    })())
}

/// The lifecycle row of a company just de-provisioned (no steps yet).
fn insert_lifecycle(tx: &Transaction<'_>, d: &Deprovisioning) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO company_lifecycle ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, '[]', NULL, NULL, NULL)"
        ),
        params![
            d.company_id,
            unix_millis(d.deprovisioned_at),
            d.deprovisioned_by,
            unix_millis(d.destroy_after),
            d.certificate_id,
            d.certificate_token_hash
        ],
    )?;
    Ok(())
}

fn status(tx: &Transaction<'_>, company_id: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT status FROM companies WHERE id = ?1",
            [company_id],
            |r| r.get(0),
        )
        .optional()?)
}

fn add_step(tx: &Transaction<'_>, company_id: &str, step: &StepRecord) -> Result<(), StoreError> {
    let steps: Option<String> = tx
        .query_row(
            "SELECT steps FROM company_lifecycle WHERE company_id = ?1 AND destroyed_at IS NULL",
            [company_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(steps) = steps else {
        return Err(StoreError::Conflict(
            "the company is not being destroyed".into(),
        ));
    };
    if let Some(steps) = with_step(&steps, step)? {
        tx.execute(
            "UPDATE company_lifecycle SET steps = ?1 WHERE company_id = ?2",
            params![steps, company_id],
        )?;
    }
    Ok(())
}

impl SqliteControl {
    async fn lifecycle_where(
        &self,
        clause: &'static str,
        value: String,
    ) -> Result<Option<Deprovisioning>, StoreError> {
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM company_lifecycle WHERE {clause} = ?1"
                ))?
                .query_row([value], lifecycle_row)
                .optional()?
                .transpose()
            })
            .await
    }
}

#[async_trait]
impl LifecycleStore for SqliteControl {
    async fn deprovision_company(
        &self,
        d: &Deprovisioning,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let d = d.clone();
        self.write(Some(audit), move |tx| {
            if status(tx, &d.company_id)?.as_deref() != Some("active") {
                return Err(StoreError::Conflict("the company is not active".into()));
            }
            tx.execute(
                "UPDATE companies SET status = 'deprovisioned' WHERE id = ?1",
                [&d.company_id],
            )?;
            insert_lifecycle(tx, &d)?;
            // A pending invitation could make someone an owner who cancels.
            tx.execute(
                "DELETE FROM invitations WHERE company_id = ?1",
                [&d.company_id],
            )?;
            let ended: Vec<String> = tx
                .prepare_cached(
                    "SELECT id FROM access_grants WHERE company_id = ?1 AND ended_kind IS NULL ORDER BY id",
                )?
                .query_map([&d.company_id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            tx.execute(
                "UPDATE access_grants SET ended_kind = 'revoked', ended_side = 'company',
                        ended_by = ?1, ended_at = ?2, version = version + 1
                 WHERE company_id = ?3 AND ended_kind IS NULL",
                params![
                    d.deprovisioned_by,
                    unix_millis(d.deprovisioned_at),
                    d.company_id
                ],
            )?;
            Ok(ended)
        })
        .await
    }

    async fn restore_deprovisioning(
        &self,
        d: &Deprovisioning,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let d = d.clone();
        self.write(Some(audit), move |tx| {
            let taken: Option<String> = tx
                .query_row(
                    "SELECT company_id FROM company_lifecycle WHERE company_id = ?1",
                    [&d.company_id],
                    |r| r.get(0),
                )
                .optional()?;
            if status(tx, &d.company_id)?.as_deref() != Some("deprovisioned") || taken.is_some() {
                return Err(StoreError::Conflict(
                    "the company is not de-provisioned, or its de-provisioning is recorded".into(),
                ));
            }
            insert_lifecycle(tx, &d)?;
            Ok(())
        })
        .await
    }

    async fn cancel_deprovisioning(
        &self,
        company_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let company_id = company_id.to_string();
        self.write(Some(audit), move |tx| {
            let started: Option<Option<i64>> = tx
                .query_row(
                    "SELECT l.destruction_started_at FROM company_lifecycle l JOIN companies c ON c.id = l.company_id
                     WHERE l.company_id = ?1 AND c.status = 'deprovisioned' AND l.destroyed_at IS NULL",
                    [&company_id],
                    |r| r.get(0),
                )
                .optional()?;
            match started {
                Some(None) => {}
                Some(_) => {
                    return Err(StoreError::Conflict(
                        "the company's destruction has begun".into(),
                    ))
                }
                None => {
                    return Err(StoreError::Conflict(
                        "the company is not de-provisioned".into(),
                    ))
                }
            }
            tx.execute(
                "DELETE FROM company_lifecycle WHERE company_id = ?1",
                [&company_id],
            )?;
            tx.execute(
                "UPDATE companies SET status = 'active' WHERE id = ?1",
                [&company_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn begin_destruction(
        &self,
        company_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let company_id = company_id.to_string();
        self.write(None, move |tx| {
            if status(tx, &company_id)?.as_deref() != Some("deprovisioned") {
                return Err(StoreError::Conflict(
                    "the company is not de-provisioned".into(),
                ));
            }
            let changed = tx.execute(
                "UPDATE company_lifecycle
                 SET destruction_started_at = COALESCE(destruction_started_at, ?1)
                 WHERE company_id = ?2 AND destroyed_at IS NULL",
                params![unix_millis(at), company_id],
            )?;
            if changed != 1 {
                return Err(StoreError::Conflict(
                    "the company is not de-provisioned".into(),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn deprovisioning(&self, company_id: &str) -> Result<Option<Deprovisioning>, StoreError> {
        self.lifecycle_where("company_id", company_id.to_string())
            .await
    }

    async fn deprovisioning_by_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<Option<Deprovisioning>, StoreError> {
        self.lifecycle_where("certificate_id", certificate_id.to_string())
            .await
    }

    async fn due_destructions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Deprovisioning>, StoreError> {
        let now = unix_millis(now);
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM company_lifecycle
                     WHERE destroyed_at IS NULL AND destroy_after <= ?1
                     ORDER BY destroy_after, company_id LIMIT ?2"
                ))?
                .query_map(params![now, limit], lifecycle_row)?
                .map(|r| r?)
                .collect()
            })
            .await
    }

    async fn record_destruction_step(
        &self,
        company_id: &str,
        step: &StepRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (company_id, step) = (company_id.to_string(), step.clone());
        self.write(Some(audit), move |tx| add_step(tx, &company_id, &step))
            .await
    }

    async fn shred_company_key(
        &self,
        company_id: &str,
        step: &StepRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (company_id, step) = (company_id.to_string(), step.clone());
        let at = unix_millis(audit.at);
        self.write(Some(audit), move |tx| {
            add_step(tx, &company_id, &step)?;
            // The old bytes may stay in a free page until it is reused;
            // every page is encrypted with the control key, and what they
            // hold was wrapped by the master key besides.
            tx.execute(
                "UPDATE companies SET wrapped_dek = X'' WHERE id = ?1",
                [&company_id],
            )?;
            tx.execute(
                "UPDATE company_key_versions SET wrapped_dek = X'',
                        destroyed_at = COALESCE(destroyed_at, ?2)
                 WHERE company_id = ?1",
                params![company_id, at],
            )?;
            Ok(())
        })
        .await
    }

    async fn finish_destruction(
        &self,
        company_id: &str,
        destroyed_at: OffsetDateTime,
        certificate: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (company_id, certificate) = (company_id.to_string(), certificate.to_string());
        self.write(Some(audit), move |tx| {
            let changed = tx.execute(
                "UPDATE company_lifecycle SET destroyed_at = ?1, certificate = ?2
                 WHERE company_id = ?3 AND destroyed_at IS NULL",
                params![unix_millis(destroyed_at), certificate, company_id],
            )?;
            if changed != 1 {
                return Err(StoreError::Conflict(
                    "the company is not being destroyed".into(),
                ));
            }
            tx.execute(
                "UPDATE companies SET status = 'destroyed', wrapped_dek = X'', name = '' WHERE id = ?1",
                [&company_id],
            )?;
            for table in [
                "memberships",
                "api_keys",
                "invitations",
                "company_policies",
                "export_schedules",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE company_id = ?1"),
                    [&company_id],
                )?;
            }
            tx.execute(
                "DELETE FROM cursors WHERE name LIKE '%:' || ?1",
                [&company_id],
            )?;
            Ok(())
        })
        .await
    }
}
