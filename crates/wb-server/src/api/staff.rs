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
        let meta = RequestMeta::from_request_parts(parts, state).await?;
        let caller = state
            .staff_authenticate(&Secret::new(token), meta.anonymous_actor())
            .await?;
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
