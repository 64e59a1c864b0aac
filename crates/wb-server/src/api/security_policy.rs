//! A company's security policy: read and changed by owners and admins,
//! applied by the door to every request.

use axum::extract::State;
use axum::Json;
use wb_core::Action;

use super::json::ApiJson;
use crate::auth::{AppState, Company, ManageSecurity};
use crate::dto::*;
use crate::problem::{ApiResult, Problem};

#[utoipa::path(get, path = "/api/v1/companies/{company}/security-policy", tag = "security",
    params(("company" = String, Path)),
    responses((status = 200, body = SecurityPolicyView), (status = 404, body = Problem)))]
pub async fn get(
    State(platform): State<AppState>,
    door: Company<ManageSecurity>,
) -> ApiResult<Json<SecurityPolicyView>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::SecurityPolicyRead, None)
        .await?;
    Ok(Json((&scope.security_policy(&platform).await?).into()))
}

/// Fields left out keep their value. An allowlist that excludes the
/// caller's own address is refused (409 lockout) unless `confirm_lockout`.
#[utoipa::path(put, path = "/api/v1/companies/{company}/security-policy", tag = "security",
    params(("company" = String, Path)), request_body = SecurityPolicyRequest,
    responses((status = 200, body = SecurityPolicyView), (status = 409, body = Problem),
              (status = 422, body = Problem)))]
pub async fn put(
    State(platform): State<AppState>,
    door: Company<ManageSecurity>,
    ApiJson(body): ApiJson<SecurityPolicyRequest>,
) -> ApiResult<Json<SecurityPolicyView>> {
    let scope = door.into_admission().operate(&platform).await?;
    let policy = scope.set_security_policy(&platform, body.into()).await?;
    Ok(Json((&policy).into()))
}
