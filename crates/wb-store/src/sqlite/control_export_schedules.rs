//! `ExportScheduleStore` for the SQLCipher control database: one schedule per
//! company, its changes and pushes audited in the control chain.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;

use super::conn::{parse_ts, ts};
use super::control::{append_audit, SqliteControl};
use crate::export_schedules::{ExportSchedule, ExportScheduleStore, PushResult};
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

const COLUMNS: &str = "s.company_id, s.id, s.destination, s.recipient, s.every_hours, \
     s.sealed_credentials, s.created_at, s.created_by, s.next_push_at, s.last_push_at, \
     s.last_push_status, s.last_error, s.last_object, s.failures";

/// A row as read, before its timestamps are parsed.
struct ScheduleRow {
    company_id: String,
    id: String,
    destination: String,
    recipient: String,
    every_hours: i64,
    sealed_credentials: Option<Vec<u8>>,
    created_at: String,
    created_by: String,
    next_push_at: i64,
    last_push_at: Option<String>,
    last_push_status: Option<String>,
    last_error: Option<String>,
    last_object: Option<String>,
    failures: i64,
}

fn schedule_row(r: &Row<'_>) -> rusqlite::Result<ScheduleRow> {
    Ok(ScheduleRow {
        company_id: r.get(0)?,
        id: r.get(1)?,
        destination: r.get(2)?,
        recipient: r.get(3)?,
        every_hours: r.get(4)?,
        sealed_credentials: r.get(5)?,
        created_at: r.get(6)?,
        created_by: r.get(7)?,
        next_push_at: r.get(8)?,
        last_push_at: r.get(9)?,
        last_push_status: r.get(10)?,
        last_error: r.get(11)?,
        last_object: r.get(12)?,
        failures: r.get(13)?,
    })
}

impl ScheduleRow {
    fn into_schedule(self) -> Result<ExportSchedule, StoreError> {
        let count = |v: i64, what: &str| {
            u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("export schedule {what} {v}")))
        };
        Ok(ExportSchedule {
            every_hours: count(self.every_hours, "every_hours")?,
            failures: count(self.failures, "failures")?,
            company_id: self.company_id,
            id: self.id,
            destination: self.destination,
            recipient: self.recipient,
            sealed_credentials: self.sealed_credentials,
            created_at: parse_ts(&self.created_at)?,
            created_by: self.created_by,
            next_push_at: from_unix_millis(self.next_push_at)?,
            last_push_at: self.last_push_at.as_deref().map(parse_ts).transpose()?,
            last_push_status: self.last_push_status,
            last_error: self.last_error,
            last_object: self.last_object,
        })
    }
}

#[async_trait]
impl ExportScheduleStore for SqliteControl {
    async fn export_schedule(
        &self,
        company_id: &str,
    ) -> Result<Option<ExportSchedule>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM export_schedules s WHERE s.company_id = ?1"
                ))?
                .query_row([&company_id], schedule_row)
                .optional()?
                .map(ScheduleRow::into_schedule)
                .transpose()
            })
            .await
    }

    async fn put_export_schedule(
        &self,
        s: &ExportSchedule,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(Some(audit), move |tx| {
            tx.execute(
                "INSERT INTO export_schedules (company_id, id, destination, recipient, every_hours,
                     sealed_credentials, created_at, created_by, next_push_at, failures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)
                 ON CONFLICT (company_id) DO UPDATE SET
                     id = excluded.id, destination = excluded.destination,
                     recipient = excluded.recipient, every_hours = excluded.every_hours,
                     sealed_credentials = excluded.sealed_credentials,
                     created_at = excluded.created_at, created_by = excluded.created_by,
                     next_push_at = excluded.next_push_at, last_push_at = NULL,
                     last_push_status = NULL, last_error = NULL, last_object = NULL,
                     failures = 0",
                params![
                    s.company_id,
                    s.id,
                    s.destination,
                    s.recipient,
                    i64::from(s.every_hours),
                    s.sealed_credentials,
                    ts(s.created_at),
                    s.created_by,
                    unix_millis(s.next_push_at),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_export_schedule(
        &self,
        company_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let company_id = company_id.to_string();
        let audit = audit.clone();
        // The event is appended only when a schedule was deleted.
        self.write(None, move |tx| {
            let deleted = tx.execute(
                "DELETE FROM export_schedules WHERE company_id = ?1",
                [&company_id],
            )?;
            if deleted == 0 {
                return Err(StoreError::NotFound("export schedule"));
            }
            append_audit(tx, &audit)
        })
        .await
    }

    async fn due_export_schedules(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ExportSchedule>, StoreError> {
        let now = unix_millis(now);
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM export_schedules s
                     JOIN companies c ON c.id = s.company_id AND c.status = 'active'
                     WHERE s.next_push_at <= ?1
                     ORDER BY s.next_push_at, s.company_id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![now, limit.clamp(1, 10_000)], schedule_row)?;
                rows.map(|r| r?.into_schedule()).collect()
            })
            .await
    }

    async fn claim_export_push(
        &self,
        company_id: &str,
        schedule_id: &str,
        due: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (company_id, schedule_id) = (company_id.to_string(), schedule_id.to_string());
        let (due, until) = (unix_millis(due), unix_millis(until));
        self.write(None, move |tx| {
            let changed = tx.execute(
                "UPDATE export_schedules SET next_push_at = ?1
                 WHERE company_id = ?2 AND id = ?3 AND next_push_at = ?4",
                params![until, company_id, schedule_id, due],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn record_export_push(
        &self,
        company_id: &str,
        schedule_id: &str,
        result: &PushResult,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (company_id, schedule_id) = (company_id.to_string(), schedule_id.to_string());
        let r = result.clone();
        self.write(Some(audit), move |tx| {
            let status = if r.ok { "success" } else { "failure" };
            let changed = tx.execute(
                "UPDATE export_schedules SET last_push_at = ?1, last_push_status = ?2,
                     last_error = ?3, last_object = COALESCE(?4, last_object),
                     next_push_at = ?5, failures = ?6
                 WHERE company_id = ?7 AND id = ?8",
                params![
                    ts(r.at),
                    status,
                    r.error,
                    r.object,
                    unix_millis(r.next_push_at),
                    i64::from(r.failures),
                    company_id,
                    schedule_id
                ],
            )?;
            Ok(changed == 1)
        })
        .await
    }
}
