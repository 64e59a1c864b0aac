//! A company's own audit trail ("access transparency"): every event about the
//! company, from its own chain and from the platform's, as collected centrally.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wb_core::Action;

use wb_app::records::{AuditQuery, CentralEvent};

use super::json::ApiQuery;
use crate::auth::{AppState, Company, ReadAudit};
use crate::dto::parse_date;
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Events after this position (paging cursor from `next_after`).
    pub after: Option<i64>,
    /// 1 to 1000; default 100.
    pub limit: Option<u32>,
    /// Exact action (`auth.login`) or its last part (`login`).
    pub action: Option<String>,
    /// success or failure
    pub outcome: Option<String>,
    /// YYYY-MM-DD: events on or after this day.
    pub since: Option<String>,
}

/// The filters every audit search shares: `outcome` is success or failure,
/// `since` a day (answered as the RFC 3339 start of that day).
pub(crate) fn checked_filters(
    outcome: Option<&str>,
    since: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if outcome.is_some_and(|o| !matches!(o, "success" | "failure")) {
        return Err(ApiError::unprocessable(
            "invalid-query",
            "outcome must be success or failure",
        ));
    }
    Ok(since
        .map(|d| parse_date("since", d).map(|d| format!("{d}T00:00:00Z")))
        .transpose()?)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Position in the collection (use as `after`).
    pub position: i64,
    /// The chain the event belongs to: `company:<id>` or `control`.
    pub source: String,
    /// Sequence number within that chain.
    pub seq: i64,
    pub at: String,
    pub node: String,
    pub actor: String,
    pub auth: String,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub hash: String,
}

impl From<CentralEvent> for AuditEventView {
    fn from(c: CentralEvent) -> Self {
        let e = c.event;
        AuditEventView {
            position: c.central_seq,
            source: c.source,
            seq: e.seq,
            at: e.at,
            node: c.node,
            actor: e.actor,
            auth: e.auth,
            client: e.client,
            request_id: e.request_id,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
            hash: e.hash,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventView>,
    pub next_after: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/audit", tag = "audit",
    params(("company" = String, Path), AuditParams),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(platform): State<AppState>,
    door: Company<ReadAudit>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let since = checked_filters(q.outcome.as_deref(), q.since.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let scope = door
        .into_admission()
        .read(&platform, Action::AuditList, None)
        .await?;
    let events = scope
        .audit_events(
            &platform,
            AuditQuery {
                after: q.after.unwrap_or(0).max(0),
                limit,
                company_id: Some(scope.company_id().to_string()),
                action: q.action,
                outcome: q.outcome,
                actor: None,
                since,
                member_sign_ins: true,
            },
        )
        .await?;
    let next_after = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.central_seq))
        .flatten();
    Ok(Json(AuditPage {
        events: events.into_iter().map(Into::into).collect(),
        next_after,
    }))
}
