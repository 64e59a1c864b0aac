//! `LifecycleStore` for the PostgreSQL control database: the same contract
//! as the SQLCipher backend. Each change locks the company's row first, so
//! a de-provisioning, a cancel and a destruction step from different nodes
//! are serialized.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::{Row, Transaction};
use wb_core::lifecycle::StepRecord;

use super::control::{append_audit, begin, clamp_limit, int8, rows, text, PgControl};
use crate::lifecycle::*;
use crate::lifecycle::{parse_steps, with_step};
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

const COLUMNS: &str = "company_id, deprovisioned_at, deprovisioned_by, destroy_after, \
    certificate_id, certificate_token_hash, steps, destroyed_at, certificate, destruction_started_at";

fn lifecycle_row(r: &Row) -> Result<Deprovisioning, StoreError> {
    Ok(Deprovisioning {
        company_id: r.try_get(0)?,
        deprovisioned_at: from_unix_millis(r.try_get(1)?)?,
        deprovisioned_by: r.try_get(2)?,
        destroy_after: from_unix_millis(r.try_get(3)?)?,
        destruction_started_at: r
            .try_get::<_, Option<i64>>(9)?
            .map(from_unix_millis)
            .transpose()?,
        certificate_id: r.try_get(4)?,
        certificate_token_hash: r.try_get(5)?,
        steps: parse_steps(r.try_get(6)?)?,
        destroyed_at: r
            .try_get::<_, Option<i64>>(7)?
            .map(from_unix_millis)
            .transpose()?,
        certificate: r.try_get(8)?,
    })
}

/// The company's status, its row locked until the transaction ends.
async fn lock_status(tx: &Transaction<'_>, company_id: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .query_typed_opt(
            "SELECT status FROM companies WHERE id = $1 FOR UPDATE",
            &[text(&company_id)],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?)
}

async fn add_step(
    tx: &Transaction<'_>,
    company_id: &str,
    step: &StepRecord,
) -> Result<(), StoreError> {
    lock_status(tx, company_id).await?;
    let Some(row) = tx
        .query_typed_opt(
            "SELECT steps FROM company_lifecycle WHERE company_id = $1 AND destroyed_at IS NULL",
            &[text(&company_id)],
        )
        .await?
    else {
        return Err(StoreError::Conflict(
            "the company is not being destroyed".into(),
        ));
    };
    if let Some(steps) = with_step(row.try_get(0)?, step)? {
        tx.execute_typed(
            "UPDATE company_lifecycle SET steps = $1 WHERE company_id = $2",
            &[text(&steps), text(&company_id)],
        )
        .await?;
    }
    Ok(())
}

/// The lifecycle row of a company just de-provisioned (no steps yet).
async fn insert_lifecycle(tx: &Transaction<'_>, d: &Deprovisioning) -> Result<(), StoreError> {
    let (at, after) = (
        unix_millis(d.deprovisioned_at),
        unix_millis(d.destroy_after),
    );
    tx.execute_typed(
        &format!(
        "INSERT INTO company_lifecycle ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, '[]', NULL, NULL, NULL)"
        ),
        &[
        text(&d.company_id),
        int8(&at),
        text(&d.deprovisioned_by),
        int8(&after),
        text(&d.certificate_id),
        text(&d.certificate_token_hash),
        ],
    )
    .await?;
    Ok(())
}

impl PgControl {
    async fn lifecycle_where(
        &self,
        clause: &'static str,
        value: &str,
    ) -> Result<Option<Deprovisioning>, StoreError> {
        self.query_opt(
            &format!("SELECT {COLUMNS} FROM company_lifecycle WHERE {clause} = $1"),
            &[text(&value)],
        )
        .await?
        .as_ref()
        .map(lifecycle_row)
        .transpose()
    }
}

#[async_trait]
impl LifecycleStore for PgControl {
    async fn deprovision_company(
        &self,
        d: &Deprovisioning,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        if lock_status(&tx, &d.company_id).await?.as_deref() != Some("active") {
            return Err(StoreError::Conflict("the company is not active".into()));
        }
        tx.execute_typed(
            "UPDATE companies SET status = 'deprovisioned' WHERE id = $1",
            &[text(&d.company_id)],
        )
        .await?;
        insert_lifecycle(&tx, d).await?;
        // A pending invitation could make someone an owner who cancels.
        tx.execute_typed(
            "DELETE FROM invitations WHERE company_id = $1",
            &[text(&d.company_id)],
        )
        .await?;
        let ended = tx
            .query_typed(
                "UPDATE access_grants SET ended_kind = 'revoked', ended_side = 'company',
                        ended_by = $1, ended_at = $2, version = version + 1
                 WHERE company_id = $3 AND ended_kind IS NULL RETURNING id",
                &[
                    text(&d.deprovisioned_by),
                    int8(&unix_millis(d.deprovisioned_at)),
                    text(&d.company_id),
                ],
            )
            .await?;
        let mut ended: Vec<String> = ended
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        ended.sort();
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn restore_deprovisioning(
        &self,
        d: &Deprovisioning,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let status = lock_status(&tx, &d.company_id).await?;
        let taken = tx
            .query_typed_opt(
                "SELECT company_id FROM company_lifecycle WHERE company_id = $1",
                &[text(&d.company_id)],
            )
            .await?;
        if status.as_deref() != Some("deprovisioned") || taken.is_some() {
            return Err(StoreError::Conflict(
                "the company is not de-provisioned, or its de-provisioning is recorded".into(),
            ));
        }
        insert_lifecycle(&tx, d).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cancel_deprovisioning(
        &self,
        company_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let status = lock_status(&tx, company_id).await?;
        let started = tx
            .query_typed_opt(
                "SELECT destruction_started_at FROM company_lifecycle
                 WHERE company_id = $1 AND destroyed_at IS NULL",
                &[text(&company_id)],
            )
            .await?;
        match (status.as_deref(), started) {
            (Some("deprovisioned"), Some(row)) if row.try_get::<_, Option<i64>>(0)?.is_none() => {}
            (Some("deprovisioned"), Some(_)) => {
                return Err(StoreError::Conflict(
                    "the company's destruction has begun".into(),
                ))
            }
            _ => {
                return Err(StoreError::Conflict(
                    "the company is not de-provisioned".into(),
                ))
            }
        }
        tx.execute_typed(
            "DELETE FROM company_lifecycle WHERE company_id = $1",
            &[text(&company_id)],
        )
        .await?;
        tx.execute_typed(
            "UPDATE companies SET status = 'active' WHERE id = $1",
            &[text(&company_id)],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn begin_destruction(
        &self,
        company_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        if lock_status(&tx, company_id).await?.as_deref() != Some("deprovisioned") {
            return Err(StoreError::Conflict(
                "the company is not de-provisioned".into(),
            ));
        }
        let at = unix_millis(at);
        let changed = tx
            .execute_typed(
                "UPDATE company_lifecycle
                 SET destruction_started_at = COALESCE(destruction_started_at, $1)
                 WHERE company_id = $2 AND destroyed_at IS NULL",
                &[int8(&at), text(&company_id)],
            )
            .await?;
        if changed != 1 {
            return Err(StoreError::Conflict(
                "the company is not de-provisioned".into(),
            ));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn deprovisioning(&self, company_id: &str) -> Result<Option<Deprovisioning>, StoreError> {
        self.lifecycle_where("company_id", company_id).await
    }

    async fn deprovisioning_by_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<Option<Deprovisioning>, StoreError> {
        self.lifecycle_where("certificate_id", certificate_id).await
    }

    async fn due_destructions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Deprovisioning>, StoreError> {
        let (now, limit) = (unix_millis(now), clamp_limit(limit, 1000));
        rows(
            self.query(
                &format!(
                    "SELECT {COLUMNS} FROM company_lifecycle
                     WHERE destroyed_at IS NULL AND destroy_after <= $1
                     ORDER BY destroy_after, company_id LIMIT $2"
                ),
                &[int8(&now), int8(&limit)],
            )
            .await?,
            lifecycle_row,
        )
    }

    async fn record_destruction_step(
        &self,
        company_id: &str,
        step: &StepRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        add_step(&tx, company_id, step).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn shred_company_key(
        &self,
        company_id: &str,
        step: &StepRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        add_step(&tx, company_id, step).await?;
        // The old row version stays in the table's file until VACUUM
        // reclaims it; the destruction job vacuums the table afterwards.
        tx.execute_typed(
            "UPDATE companies SET wrapped_dek = ''::bytea WHERE id = $1",
            &[text(&company_id)],
        )
        .await?;
        tx.execute_typed(
            "UPDATE company_key_versions SET wrapped_dek = ''::bytea,
                    destroyed_at = COALESCE(destroyed_at, $2)
             WHERE company_id = $1",
            &[text(&company_id), int8(&unix_millis(audit.at))],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_destruction(
        &self,
        company_id: &str,
        destroyed_at: OffsetDateTime,
        certificate: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        lock_status(&tx, company_id).await?;
        let at = unix_millis(destroyed_at);
        let changed = tx
            .execute_typed(
                "UPDATE company_lifecycle SET destroyed_at = $1, certificate = $2
                 WHERE company_id = $3 AND destroyed_at IS NULL",
                &[int8(&at), text(&certificate), text(&company_id)],
            )
            .await?;
        if changed != 1 {
            return Err(StoreError::Conflict(
                "the company is not being destroyed".into(),
            ));
        }
        tx.execute_typed(
            "UPDATE companies SET status = 'destroyed', wrapped_dek = ''::bytea, name = '' WHERE id = $1",
            &[text(&company_id)],
        )
        .await?;
        for table in [
            "memberships",
            "api_keys",
            "invitations",
            "company_policies",
            "export_schedules",
        ] {
            tx.execute_typed(
                &format!("DELETE FROM {table} WHERE company_id = $1"),
                &[text(&company_id)],
            )
            .await?;
        }
        tx.execute_typed(
            "DELETE FROM cursors WHERE name LIKE '%:' || $1",
            &[text(&company_id)],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
