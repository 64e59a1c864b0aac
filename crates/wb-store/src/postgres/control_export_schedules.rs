//! `ExportScheduleStore` for the PostgreSQL control database. The same
//! contract as the SQLCipher backend; a claim is one conditional UPDATE, so
//! nodes racing for the same due push find exactly one winner.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::control::{append_audit, begin, int8, parse_ts, text, ts, PgControl};
use crate::export_schedules::{ExportSchedule, ExportScheduleStore, PushResult};
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

const COLUMNS: &str = "s.company_id, s.id, s.destination, s.recipient, s.every_hours, \
     s.sealed_credentials, s.created_at, s.created_by, s.next_push_at, s.last_push_at, \
     s.last_push_status, s.last_error, s.last_object, s.failures";

fn schedule_row(r: &Row) -> Result<ExportSchedule, StoreError> {
    let count = |i: usize, what: &str| -> Result<u32, StoreError> {
        let v: i64 = r.try_get(i)?;
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("export schedule {what} {v}")))
    };
    let created_at: &str = r.try_get(6)?;
    let last_push_at: Option<&str> = r.try_get(9)?;
    Ok(ExportSchedule {
        company_id: r.try_get(0)?,
        id: r.try_get(1)?,
        destination: r.try_get(2)?,
        recipient: r.try_get(3)?,
        every_hours: count(4, "every_hours")?,
        sealed_credentials: r.try_get(5)?,
        created_at: parse_ts(created_at)?,
        created_by: r.try_get(7)?,
        next_push_at: from_unix_millis(r.try_get(8)?)?,
        last_push_at: last_push_at.map(parse_ts).transpose()?,
        last_push_status: r.try_get(10)?,
        last_error: r.try_get(11)?,
        last_object: r.try_get(12)?,
        failures: count(13, "failures")?,
    })
}

#[async_trait]
impl ExportScheduleStore for PgControl {
    async fn export_schedule(
        &self,
        company_id: &str,
    ) -> Result<Option<ExportSchedule>, StoreError> {
        self.conn()
            .await?
            .query_typed_opt(
                &format!("SELECT {COLUMNS} FROM export_schedules s WHERE s.company_id = $1"),
                &[text(&company_id)],
            )
            .await?
            .as_ref()
            .map(schedule_row)
            .transpose()
    }

    async fn put_export_schedule(
        &self,
        s: &ExportSchedule,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let every = i64::from(s.every_hours);
        let (created_at, next) = (ts(s.created_at), unix_millis(s.next_push_at));
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        tx.execute_typed(
            "INSERT INTO export_schedules (company_id, id, destination, recipient, every_hours,
                 sealed_credentials, created_at, created_by, next_push_at, failures)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)
             ON CONFLICT (company_id) DO UPDATE SET
                 id = EXCLUDED.id, destination = EXCLUDED.destination,
                 recipient = EXCLUDED.recipient, every_hours = EXCLUDED.every_hours,
                 sealed_credentials = EXCLUDED.sealed_credentials,
                 created_at = EXCLUDED.created_at, created_by = EXCLUDED.created_by,
                 next_push_at = EXCLUDED.next_push_at, last_push_at = NULL,
                 last_push_status = NULL, last_error = NULL, last_object = NULL,
                 failures = 0",
            &[
                text(&s.company_id),
                text(&s.id),
                text(&s.destination),
                text(&s.recipient),
                int8(&every),
                (&s.sealed_credentials, Type::BYTEA),
                text(&created_at),
                text(&s.created_by),
                int8(&next),
            ],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_export_schedule(
        &self,
        company_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let deleted = tx
            .execute_typed(
                "DELETE FROM export_schedules WHERE company_id = $1",
                &[text(&company_id)],
            )
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound("export schedule"));
        }
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn due_export_schedules(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ExportSchedule>, StoreError> {
        let (now, limit) = (unix_millis(now), i64::from(limit.clamp(1, 10_000)));
        let found = self
            .conn()
            .await?
            .query_typed(
                &format!(
                    "SELECT {COLUMNS} FROM export_schedules s
                     JOIN companies c ON c.id = s.company_id AND c.status = 'active'
                     WHERE s.next_push_at <= $1
                     ORDER BY s.next_push_at, s.company_id LIMIT $2"
                ),
                &[int8(&now), int8(&limit)],
            )
            .await?;
        found.iter().map(schedule_row).collect()
    }

    async fn claim_export_push(
        &self,
        company_id: &str,
        schedule_id: &str,
        due: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (due, until) = (unix_millis(due), unix_millis(until));
        let changed = self
            .conn()
            .await?
            .execute_typed(
                "UPDATE export_schedules SET next_push_at = $1
                 WHERE company_id = $2 AND id = $3 AND next_push_at = $4",
                &[
                    int8(&until),
                    text(&company_id),
                    text(&schedule_id),
                    int8(&due),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn record_export_push(
        &self,
        company_id: &str,
        schedule_id: &str,
        r: &PushResult,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let status = if r.ok { "success" } else { "failure" };
        let (at, next, failures) = (ts(r.at), unix_millis(r.next_push_at), i64::from(r.failures));
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let changed = tx
            .execute_typed(
                "UPDATE export_schedules SET last_push_at = $1, last_push_status = $2,
                     last_error = $3, last_object = COALESCE($4, last_object),
                     next_push_at = $5, failures = $6
                 WHERE company_id = $7 AND id = $8",
                &[
                    text(&at),
                    text(&status),
                    text(&r.error),
                    text(&r.object),
                    int8(&next),
                    int8(&failures),
                    text(&company_id),
                    text(&schedule_id),
                ],
            )
            .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(changed == 1)
    }
}
