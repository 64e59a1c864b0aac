//! Staff access grants over HTTP: staff ask (`POST /api/v1/staff/access-grants`),
//! management decides (`/api/v1/staff/access-grants/{grant}/approve|deny|revoke`),
//! the company's owners and admins decide and see them
//! (`/api/v1/companies/{company}/access-grants[/{grant}/approve|deny|revoke]`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;
use wb_app::dto::rfc3339;
use wb_app::grants::{Decide, GrantAsk};
use wb_core::grants::{EndKind, Grant, GrantScope, LegalMandate};
use wb_core::Action;

use super::json::ApiJson;
use super::staff::Staff;
use crate::auth::{AppState, Company, ManageSecurity};
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequestBody {
    pub company: String,
    /// Why, in 10 to 2,000 characters.
    pub reason: String,
    /// `books:read`, `books:write`, `files` or `full`.
    pub scope: String,
    /// 1 to 4,320 (72 hours).
    pub duration_minutes: u32,
    pub ticket: Option<String>,
    pub legal_mandate: Option<LegalMandateBody>,
    /// RFC 3339; the grant opens no earlier (default: at the last approval).
    pub starts_at: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalMandateBody {
    pub reference: String,
    /// RFC 3339: the company may not be told before (absent: told at once).
    pub disclose_after: Option<String>,
}

/// A decision's body: a manager approving a legal mandate quotes its reference.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub mandate_reference: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    /// `company` or `management`.
    pub side: String,
    pub by: String,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndingView {
    /// `denied` or `revoked`.
    pub kind: String,
    pub side: String,
    pub by: String,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub company: String,
    /// `pending`, `active`, `denied`, `expired` or `revoked`, now.
    pub state: String,
    pub reason: String,
    pub scope: String,
    pub requested_by: String,
    pub requested_at: String,
    pub duration_minutes: i64,
    pub ticket: Option<String>,
    /// The mandate's reference (a grant under a legal mandate).
    pub legal_mandate: Option<String>,
    pub disclose_after: Option<String>,
    pub approvals: Vec<ApprovalView>,
    /// When it opens (once approved) or the start asked for.
    pub starts_at: Option<String>,
    /// When it closes by itself (once approved).
    pub ends_at: Option<String>,
    /// How it was ended early, if it was.
    pub ended: Option<EndingView>,
    /// What the staff member did under it, oldest first (in lists; from
    /// the central audit, so a few seconds behind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<GrantActionView>>,
}

/// One thing a staff member did under a grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantActionView {
    pub at: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
}

/// Lists grants with what was done under each.
pub(crate) async fn listed(platform: &AppState, grants: &[Grant]) -> ApiResult<GrantList> {
    let now = platform.now();
    let mut views = Vec::with_capacity(grants.len());
    for grant in grants {
        let actions = platform.grant_actions(grant).await?;
        let mut v = view(grant, now);
        v.actions = Some(
            actions
                .into_iter()
                .map(|a| GrantActionView {
                    at: a.at,
                    action: a.action,
                    target: a.target,
                    outcome: a.outcome,
                })
                .collect(),
        );
        views.push(v);
    }
    Ok(GrantList { grants: views })
}

pub fn view(grant: &Grant, now: OffsetDateTime) -> GrantView {
    let mut approvals = Vec::new();
    for (side, decision) in [
        ("company", &grant.company_approval),
        ("management", &grant.management_approval),
    ] {
        if let Some(d) = decision {
            approvals.push(ApprovalView {
                side: side.into(),
                by: d.by.clone(),
                at: rfc3339(d.at),
            });
        }
    }
    GrantView {
        id: grant.id.clone(),
        company: grant.company_id.clone(),
        state: grant.state(now).as_str().into(),
        reason: grant.reason.clone(),
        scope: grant.scope.as_str().into(),
        requested_by: grant.requested_by.clone(),
        requested_at: rfc3339(grant.requested_at),
        duration_minutes: grant.duration.whole_minutes(),
        ticket: grant.ticket.clone(),
        legal_mandate: grant.legal_mandate.as_ref().map(|m| m.reference.clone()),
        disclose_after: grant
            .legal_mandate
            .as_ref()
            .and_then(|m| m.disclose_after)
            .map(rfc3339),
        approvals,
        starts_at: grant.opens_at().or(grant.starts_at).map(rfc3339),
        ends_at: grant.closes_at().map(rfc3339),
        ended: grant.ending.as_ref().map(|e| EndingView {
            kind: match e.kind {
                EndKind::Denied => "denied",
                EndKind::Revoked => "revoked",
            }
            .into(),
            side: e.side.as_str().into(),
            by: e.decision.by.clone(),
            at: rfc3339(e.decision.at),
        }),
        actions: None,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantList {
    pub grants: Vec<GrantView>,
}

fn time_field(name: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        ApiError::unprocessable("invalid-grant", format!("{name} must be an RFC 3339 time"))
    })
}

fn ask(body: GrantRequestBody) -> Result<GrantAsk, ApiError> {
    let scope: GrantScope = body
        .scope
        .parse()
        .map_err(|e: wb_core::grants::UnknownScope| {
            ApiError::unprocessable("invalid-grant", e.to_string())
        })?;
    let legal_mandate = match body.legal_mandate {
        Some(m) => Some(LegalMandate {
            reference: m.reference,
            disclose_after: m
                .disclose_after
                .as_deref()
                .map(|t| time_field("disclose_after", t))
                .transpose()?,
        }),
        None => None,
    };
    Ok(GrantAsk {
        company_id: body.company,
        reason: body.reason,
        scope,
        duration_minutes: body.duration_minutes,
        ticket: body.ticket,
        legal_mandate,
        starts_at: body
            .starts_at
            .as_deref()
            .map(|t| time_field("starts_at", t))
            .transpose()?,
    })
}

fn decide(action: &str, body: Option<DecisionBody>) -> Result<Decide, ApiError> {
    let body = body.unwrap_or_default();
    match action {
        "approve" => Ok(Decide::Approve {
            mandate_reference: body.mandate_reference,
        }),
        "deny" if body.mandate_reference.is_none() => Ok(Decide::Deny),
        "revoke" if body.mandate_reference.is_none() => Ok(Decide::Revoke),
        "deny" | "revoke" => Err(ApiError::unprocessable(
            "invalid-grant",
            "mandate_reference goes with an approval only",
        )),
        _ => Err(ApiError::not_found("route")),
    }
}

#[utoipa::path(post, path = "/api/v1/staff/access-grants", tag = "staff", request_body = GrantRequestBody,
    responses((status = 201, body = GrantView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn request(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    ApiJson(body): ApiJson<GrantRequestBody>,
) -> ApiResult<(StatusCode, Json<GrantView>)> {
    let grant = platform.request_grant(&staff, ask(body)?).await?;
    Ok((StatusCode::CREATED, Json(view(&grant, platform.now()))))
}

#[utoipa::path(get, path = "/api/v1/staff/access-grants", tag = "staff",
    responses((status = 200, body = GrantList), (status = 401, body = Problem)))]
pub async fn staff_list(
    State(platform): State<AppState>,
    Staff(staff): Staff,
) -> ApiResult<Json<GrantList>> {
    let grants = platform.staff_grants(&staff).await?;
    Ok(Json(listed(&platform, &grants).await?))
}

#[utoipa::path(post, path = "/api/v1/staff/access-grants/{grant}/{decision}", tag = "staff",
    params(("grant" = String, Path), ("decision" = String, Path, description = "approve, deny or revoke")),
    request_body = DecisionBody,
    responses((status = 200, body = GrantView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn management_decision(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    Path((grant, decision)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<GrantView>> {
    // The body is optional: `{}` or nothing, or a mandate's reference.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice::<DecisionBody>(&body).map_err(|e| {
            ApiError::unprocessable("invalid-json", format!("the body is not a decision: {e}"))
        })?)
    };
    let decide = decide(&decision, body)?;
    let grant = platform.management_decides(&staff, &grant, decide).await?;
    Ok(Json(view(&grant, platform.now())))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/access-grants", tag = "staff",
    params(("company" = String, Path)),
    responses((status = 200, body = GrantList), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn company_list(
    State(platform): State<AppState>,
    door: Company<ManageSecurity>,
) -> ApiResult<Json<GrantList>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::GrantsList, None)
        .await?;
    let grants = scope.access_grants(&platform).await?;
    Ok(Json(listed(&platform, &grants).await?))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/access-grants/{grant}/{decision}", tag = "staff",
    params(("company" = String, Path), ("grant" = String, Path), ("decision" = String, Path, description = "approve, deny or revoke")),
    responses((status = 200, body = GrantView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn company_decision(
    State(platform): State<AppState>,
    door: Company<ManageSecurity>,
    Path((_, grant, decision)): Path<(String, String, String)>,
) -> ApiResult<Json<GrantView>> {
    let decide = decide(&decision, None)?;
    let scope = door.into_admission().operate(&platform).await?;
    let grant = scope.decide_grant(&platform, &grant, decide).await?;
    Ok(Json(view(&grant, platform.now())))
}
