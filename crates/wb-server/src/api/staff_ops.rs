//! What security and operations staff read to run the platform:
//! `GET /api/v1/staff/system`, `GET /api/v1/staff/backups` and
//! `GET /api/v1/staff/audit` (the central audit, details that may carry
//! customer content withheld). The rules are `wb_app::staff_ops`.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wb_app::records::AuditQuery;
use wb_app::staff_ops::StaffAuditEvent;
use wb_core::Action;

use super::json::ApiQuery;
use super::staff::Staff;
use crate::auth::AppState;
use crate::problem::{ApiError, ApiResult, Problem};

/// The longest actor or company id a filter accepts.
const MAX_FILTER_CHARS: usize = 128;

#[utoipa::path(get, path = "/api/v1/staff/system", tag = "staff",
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn system(
    State(platform): State<AppState>,
    Staff(staff): Staff,
) -> ApiResult<Json<serde_json::Value>> {
    let s = platform.staff_system_status(&staff).await?;
    Ok(Json(serde_json::json!({
        "node": s.node,
        "version": s.version,
        "nodes": s.nodes,
        "companies": s.companies,
        "open_alerts": s.open_alerts,
        "acknowledged_alerts": s.acknowledged_alerts,
    })))
}

#[utoipa::path(get, path = "/api/v1/staff/backups", tag = "staff",
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn backups(
    State(platform): State<AppState>,
    Staff(staff): Staff,
) -> ApiResult<Json<serde_json::Value>> {
    let companies: Vec<serde_json::Value> = platform
        .staff_backup_status(&staff)
        .await?
        .into_iter()
        .map(|b| {
            serde_json::json!({
                "company": b.company_id,
                "name": b.name,
                "journal_seq": b.journal_seq,
                "shipped_seq": b.shipped_seq,
                "lag_records": b.lag_records,
                "lag_seconds": b.lag_seconds,
                "snapshot_seq": b.snapshot_seq,
                "snapshot_taken_at": b.snapshot_taken_at,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "companies": companies })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CentralAuditParams {
    /// Events after this position (paging cursor from `next_after`).
    pub after: Option<i64>,
    /// 1 to 1000; default 100.
    pub limit: Option<u32>,
    /// One company's events.
    pub company: Option<String>,
    /// One actor's events (`user:…`, `staff:…`, `anonymous`).
    pub actor: Option<String>,
    /// Exact action name (`auth.login`).
    pub action: Option<String>,
    /// success or failure
    pub outcome: Option<String>,
    /// YYYY-MM-DD: events on or after this day.
    pub since: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffAuditEventView {
    pub position: i64,
    pub source: String,
    pub seq: i64,
    pub at: String,
    pub node: String,
    pub actor: String,
    pub auth: String,
    pub client: Option<String>,
    pub company: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    /// Absent when withheld: see `detail_withheld`.
    pub detail: Option<String>,
    /// The event has a detail that may carry customer content.
    pub detail_withheld: bool,
    pub hash: String,
}

impl From<StaffAuditEvent> for StaffAuditEventView {
    fn from(e: StaffAuditEvent) -> Self {
        StaffAuditEventView {
            position: e.position,
            source: e.source,
            seq: e.seq,
            at: e.at,
            node: e.node,
            actor: e.actor,
            auth: e.auth,
            client: e.client,
            company: e.company_id,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
            detail_withheld: e.detail_withheld,
            hash: e.hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffAuditPage {
    pub events: Vec<StaffAuditEventView>,
    pub next_after: Option<i64>,
}

/// A filter's text: printable, bounded.
fn filter(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v)
            if v.is_empty()
                || v.chars().count() > MAX_FILTER_CHARS
                || v.chars().any(char::is_control) =>
        {
            Err(ApiError::unprocessable(
                "invalid-query",
                format!("{name} must be 1 to {MAX_FILTER_CHARS} printable characters"),
            ))
        }
        other => Ok(other),
    }
}

/// Security, operations, management: the central audit trail.
#[utoipa::path(get, path = "/api/v1/staff/audit", tag = "staff", params(CentralAuditParams),
    responses((status = 200, body = StaffAuditPage), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
pub async fn audit(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    ApiQuery(q): ApiQuery<CentralAuditParams>,
) -> ApiResult<Json<StaffAuditPage>> {
    if let Some(action) = q.action.as_deref() {
        if Action::parse(action).is_none() {
            return Err(ApiError::unprocessable(
                "invalid-query",
                "action must be an audit action's full name (auth.login)",
            ));
        }
    }
    let since = super::audit::checked_filters(q.outcome.as_deref(), q.since.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events = platform
        .staff_central_audit(
            &staff,
            AuditQuery {
                after: q.after.unwrap_or(0).max(0),
                limit,
                company_id: filter("company", q.company)?,
                action: q.action,
                outcome: q.outcome,
                actor: filter("actor", q.actor)?,
                since,
                member_sign_ins: false,
            },
        )
        .await?;
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.position))
        .flatten();
    Ok(Json(StaffAuditPage {
        events: events.into_iter().map(Into::into).collect(),
        next_after,
    }))
}
