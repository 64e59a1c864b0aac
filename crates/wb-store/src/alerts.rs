//! Monitoring alerts: what the rules of `wb_core::monitor` found, and their
//! triage (open → acknowledged → resolved), each step audited in the same
//! transaction as the change.

use async_trait::async_trait;
use time::OffsetDateTime;
use wb_core::monitor::{AlertDraft, AlertState, Severity};

use crate::model::Actor;
use crate::StoreError;

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: i64,
    /// The rule's stable slug (`wb_core::monitor::rule`).
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    /// Repeats of the same finding (same key) while the alert is open or
    /// acknowledged bump `count` and `last_seen` instead of raising another.
    pub dedupe_key: String,
    pub title: String,
    /// The latest occurrence's detail.
    pub detail: String,
    pub company_id: Option<String>,
    pub count: i64,
    /// Time of the event that first raised it.
    pub first_seen: OffsetDateTime,
    /// Time of the latest event that raised it again.
    pub last_seen: OffsetDateTime,
    /// When the monitor raised it.
    pub raised_at: OffsetDateTime,
    pub acknowledged: Option<Triage>,
    pub resolved: Option<Triage>,
}

/// Who moved an alert on, when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triage {
    pub by: String,
    pub at: OffsetDateTime,
    pub reason: String,
}

/// The result of raising a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub alert: Alert,
    /// False when an active alert with the same key absorbed the draft.
    pub new: bool,
}

#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Raises an alert, or bumps the open/acknowledged alert with the same
    /// dedupe key. A new alert is audited ("alert.raise") in the same transaction.
    async fn raise(&self, draft: &AlertDraft, at: OffsetDateTime) -> Result<Raised, StoreError>;
    /// Newest first; all states when `state` is None.
    async fn list(&self, state: Option<AlertState>, limit: u32) -> Result<Vec<Alert>, StoreError>;
    /// One company's open and acknowledged alerts, newest first.
    async fn active_for_company(
        &self,
        company_id: &str,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError>;
    async fn get(&self, id: i64) -> Result<Option<Alert>, StoreError>;
    /// Open → acknowledged. NotFound for an unknown id, Conflict for a
    /// transition the life cycle forbids; attempts are audited either way.
    async fn acknowledge(
        &self,
        id: i64,
        by: &Actor,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Alert, StoreError>;
    /// Open or acknowledged → resolved; as `acknowledge` otherwise.
    async fn resolve(
        &self,
        id: i64,
        by: &Actor,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Alert, StoreError>;
    /// User ids that are an owner or admin of an active company (the
    /// monitor's new-network rule watches them).
    async fn admin_user_ids(&self) -> Result<Vec<String>, StoreError>;
}
