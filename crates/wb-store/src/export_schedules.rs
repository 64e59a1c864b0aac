//! Export schedules: per company, where and how often the platform pushes an
//! encrypted customer export (SPEC §3.12, "pushed on a schedule to a bucket
//! the customer names"), and how the last push went.
//!
//! The store keeps the destination's credentials only as the caller sealed
//! them (under the company's DEK): it never sees them in clear. Changes are
//! audited in the control chain in the same transaction.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::AuditEvent;
use crate::StoreError;

/// A company's export schedule and the state of its pushes.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportSchedule {
    pub company_id: String,
    /// Changes with every replacement, so a push that started under an older
    /// version of the schedule does not overwrite the newer one's state.
    pub id: String,
    /// Where to push (`s3://…` or `file:///…`): never holds credentials.
    pub destination: String,
    /// The age X25519 recipient exports are encrypted to.
    pub recipient: String,
    pub every_hours: u32,
    /// The destination's credentials, sealed by the caller (opaque here).
    pub sealed_credentials: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    /// The actor who set it (`user:<id>`, `api_key:<id>`).
    pub created_by: String,
    /// When the next push is due (or the claimed attempt's deadline).
    pub next_push_at: OffsetDateTime,
    pub last_push_at: Option<OffsetDateTime>,
    /// `success` or `failure`.
    pub last_push_status: Option<String>,
    pub last_error: Option<String>,
    /// The object the last successful push wrote.
    pub last_object: Option<String>,
    /// Failed pushes in a row (0 after a success).
    pub failures: u32,
}

impl std::fmt::Debug for ExportSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportSchedule")
            .field("company_id", &self.company_id)
            .field("id", &self.id)
            .field("destination", &self.destination)
            .field("recipient", &self.recipient)
            .field("every_hours", &self.every_hours)
            .field(
                "sealed_credentials",
                &self.sealed_credentials.as_ref().map(|_| "***"),
            )
            .field("next_push_at", &self.next_push_at)
            .field("last_push_status", &self.last_push_status)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// The outcome of one push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    pub at: OffsetDateTime,
    pub ok: bool,
    /// Why it failed (no secrets: the caller cleans it).
    pub error: Option<String>,
    /// The object written, on success.
    pub object: Option<String>,
    pub next_push_at: OffsetDateTime,
    pub failures: u32,
}

#[async_trait]
pub trait ExportScheduleStore: Send + Sync {
    async fn export_schedule(&self, company_id: &str)
        -> Result<Option<ExportSchedule>, StoreError>;
    /// Creates or replaces the company's schedule (push state starts afresh),
    /// with `audit` in the same transaction.
    async fn put_export_schedule(
        &self,
        schedule: &ExportSchedule,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Deletes the company's schedule with `audit` in the same transaction;
    /// NotFound when it has none (nothing is audited then).
    async fn delete_export_schedule(
        &self,
        company_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
    /// Schedules of active companies due at `now`, the longest overdue first.
    async fn due_export_schedules(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<ExportSchedule>, StoreError>;
    /// Claims a due push: moves `next_push_at` of schedule `schedule_id` from
    /// `due` (as read) to `until`. True when this caller won the claim; false
    /// when the schedule changed, was deleted or someone else claimed it.
    async fn claim_export_push(
        &self,
        company_id: &str,
        schedule_id: &str,
        due: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Records a push attempt on schedule `schedule_id` and appends `audit`,
    /// in one transaction. The event is appended even when the schedule was
    /// replaced or deleted meanwhile (the push happened); returns whether the
    /// schedule's state was updated.
    async fn record_export_push(
        &self,
        company_id: &str,
        schedule_id: &str,
        result: &PushResult,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;
}
