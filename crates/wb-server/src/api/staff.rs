//! The staff realm's door: `POST /api/v1/staff/auth/login` (passphrase AND
//! a current authenticator code, always), logout, and who is signed in.
//! Staff authenticate with a bearer staff token (`wbt_…`) only: a customer's
//! token never works here and a staff token never works on a customer path.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wb_app::dto::rfc3339;
use wb_app::staff::StaffCaller;
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::json::ApiJson;
use crate::auth::{AppState, RequestMeta};
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffLoginRequest {
    pub email: String,
    pub passphrase: String,
    /// The current code of the authenticator enrolled at creation.
    pub otp: String,
}

impl std::fmt::Debug for StaffLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaffLoginRequest { .. }")
    }
}

/// No `Debug`: it carries the bearer token.
#[derive(Serialize, ToSchema)]
pub struct StaffLoginAnswer {
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffMe {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
}

/// A request by a signed-in staff member (bearer staff token).
#[derive(Debug, Clone)]
pub struct Staff(pub StaffCaller);

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("send a staff bearer token"))?
            .to_string();
        let caller = crate::auth::staff_session(parts, state, token).await?;
        Ok(Staff(caller))
    }
}

#[utoipa::path(post, path = "/api/v1/staff/auth/login", tag = "staff", request_body = StaffLoginRequest,
    responses((status = 200, body = StaffLoginAnswer), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(platform): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StaffLoginRequest>,
) -> ApiResult<Json<StaffLoginAnswer>> {
    if body.passphrase.len() > MAX_PASSPHRASE_BYTES || body.otp.len() > 64 || body.email.len() > 320
    {
        return Err(ApiError::unauthorized("email, passphrase or code is wrong"));
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let (token, expires_at) = platform
        .staff_login(
            &body.email,
            &Secret::from(body.passphrase),
            &Secret::from(body.otp),
            meta.anonymous_actor(),
            user_agent,
        )
        .await?;
    Ok(Json(StaffLoginAnswer {
        token: token.expose().to_string(),
        expires_at: rfc3339(expires_at),
    }))
}

#[utoipa::path(post, path = "/api/v1/staff/auth/logout", tag = "staff",
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn logout(
    State(platform): State<AppState>,
    Staff(caller): Staff,
) -> ApiResult<StatusCode> {
    platform.staff_logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/staff/me", tag = "staff",
    responses((status = 200, body = StaffMe), (status = 401, body = Problem)))]
pub async fn me(Staff(caller): Staff) -> Json<StaffMe> {
    Json(StaffMe {
        id: caller.staff_id,
        email: caller.email,
        roles: caller
            .roles
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct CompanySearch {
    /// Part of a company's name, or a member's email.
    pub q: Option<String>,
    /// From 0; 50 companies a page.
    pub page: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffCompanyView {
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffMemberView {
    pub name: Option<String>,
    pub email: String,
    pub role: String,
    pub last_login_at: Option<String>,
    pub mfa_enrolled: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffCompanyBasics {
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at: String,
    pub members: Vec<StaffMemberView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffCompanySummary {
    pub id: String,
    pub members: usize,
    pub accounts: i64,
    pub entries: i64,
    pub files: i64,
    pub storage_bytes: u64,
    pub last_activity: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffCompanyList {
    pub companies: Vec<StaffCompanyView>,
}

fn company_view(c: &wb_app::staff_views::CompanyListing) -> StaffCompanyView {
    StaffCompanyView {
        id: c.id.clone(),
        name: c.name.clone(),
        status: c.status.clone(),
        created_at: rfc3339(c.created_at),
    }
}

/// Support: companies by name or member email.
#[utoipa::path(get, path = "/api/v1/staff/companies", tag = "staff", params(CompanySearch),
    responses((status = 200, body = StaffCompanyList), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
pub async fn companies(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    super::json::ApiQuery(q): super::json::ApiQuery<CompanySearch>,
) -> ApiResult<Json<StaffCompanyList>> {
    let found = platform
        .staff_find_companies(&staff, q.q.as_deref(), q.page.unwrap_or(0).min(10_000))
        .await?;
    Ok(Json(StaffCompanyList {
        companies: found.iter().map(company_view).collect(),
    }))
}

/// Support: one company's account basics.
#[utoipa::path(get, path = "/api/v1/staff/companies/{company}", tag = "staff",
    params(("company" = String, Path)),
    responses((status = 200, body = StaffCompanyBasics), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn company(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    axum::extract::Path(company): axum::extract::Path<String>,
) -> ApiResult<Json<StaffCompanyBasics>> {
    let basics = platform.staff_company_basics(&staff, &company).await?;
    let c = company_view(&basics.company);
    Ok(Json(StaffCompanyBasics {
        id: c.id,
        name: c.name,
        status: c.status,
        created_at: c.created_at,
        members: basics
            .members
            .iter()
            .map(|m| StaffMemberView {
                name: m.name.clone(),
                email: m.email.clone(),
                role: m.role.clone(),
                last_login_at: m.last_login_at.map(rfc3339),
                mfa_enrolled: m.mfa_enrolled,
            })
            .collect(),
    }))
}

/// Sales: one company's summary counts.
#[utoipa::path(get, path = "/api/v1/staff/companies/{company}/summary", tag = "staff",
    params(("company" = String, Path)),
    responses((status = 200, body = StaffCompanySummary), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn summary(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    axum::extract::Path(company): axum::extract::Path<String>,
) -> ApiResult<Json<StaffCompanySummary>> {
    let s = platform.staff_company_summary(&staff, &company).await?;
    Ok(Json(StaffCompanySummary {
        id: s.id,
        members: s.members,
        accounts: s.accounts,
        entries: s.entries,
        files: s.files,
        storage_bytes: s.storage_bytes,
        last_activity: s.last_activity.map(rfc3339),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AlertFilter {
    /// `open`, `acknowledged` or `resolved` (default: all).
    pub state: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    /// Why (1 to 500 characters), kept with the alert and in the trail.
    pub reason: String,
}

/// Security, operations, management: the platform's alerts.
#[utoipa::path(get, path = "/api/v1/staff/alerts", tag = "staff", params(AlertFilter),
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
pub async fn alerts(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    super::json::ApiQuery(q): super::json::ApiQuery<AlertFilter>,
) -> ApiResult<Json<serde_json::Value>> {
    let state = q
        .state
        .as_deref()
        .map(|s| s.parse::<wb_core::monitor::AlertState>())
        .transpose()
        .map_err(|_| {
            ApiError::unprocessable(
                "invalid-query",
                "state must be open, acknowledged or resolved",
            )
        })?;
    let alerts = platform.staff_alerts(&staff, state).await?;
    Ok(Json(serde_json::json!({ "alerts": alerts })))
}

/// Acknowledge (`ack`) or resolve an alert.
#[utoipa::path(post, path = "/api/v1/staff/alerts/{alert}/{triage}", tag = "staff",
    params(("alert" = i64, Path), ("triage" = String, Path, description = "ack or resolve")),
    request_body = TriageBody,
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn triage(
    State(platform): State<AppState>,
    Staff(staff): Staff,
    axum::extract::Path((alert, triage)): axum::extract::Path<(String, String)>,
    ApiJson(body): ApiJson<TriageBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let id: i64 = alert.parse().map_err(|_| ApiError::not_found("alert"))?;
    let resolve = match triage.as_str() {
        "ack" => false,
        "resolve" => true,
        _ => return Err(ApiError::not_found("route")),
    };
    let view = platform
        .staff_triage(&staff, id, resolve, &body.reason)
        .await?;
    Ok(Json(
        serde_json::to_value(view).map_err(|_| ApiError::internal())?,
    ))
}
