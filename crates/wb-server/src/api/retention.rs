//! A company's own retention rules: read and changed by owners and admins,
//! never below the platform's statutory minimum.

use axum::extract::State;
use axum::Json;
use wb_app::retention_rules::{RetentionRequest, RetentionView};
use wb_core::Action;

use super::json::ApiJson;
use crate::auth::{AppState, Company, ManageSecurity};
use crate::problem::{ApiResult, Problem};

#[utoipa::path(get, path = "/api/v1/companies/{company}/retention", tag = "companies",
    params(("company" = String, Path)),
    responses((status = 200, body = RetentionView), (status = 404, body = Problem)))]
pub async fn get(
    State(platform): State<AppState>,
    door: Company<ManageSecurity>,
) -> ApiResult<Json<RetentionView>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::RetentionRead, None)
        .await?;
    Ok(Json(scope.retention(&platform).await?))
}

/// Fields left out keep their value. A rule below the statutory minimum is
/// refused (422 `below-statutory-minimum`, naming the rule) and changes nothing.
#[utoipa::path(put, path = "/api/v1/companies/{company}/retention", tag = "companies",
    params(("company" = String, Path)), request_body = RetentionRequest,
    responses((status = 200, body = RetentionView), (status = 422, body = Problem)))]
pub async fn put(
    State(platform): State<AppState>,
    door: Company<ManageSecurity>,
    ApiJson(body): ApiJson<RetentionRequest>,
) -> ApiResult<Json<RetentionView>> {
    let scope = door.into_admission().operate(&platform).await?;
    Ok(Json(scope.set_retention(&platform, body).await?))
}
