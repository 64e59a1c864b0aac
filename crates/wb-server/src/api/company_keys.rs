//! A company's key versions over HTTP: its owner rotates the key to a new
//! version; owners and admins see every version and what still needs it.

use axum::extract::{Path, State};
use axum::Json;
use wb_app::company_keys::{CompanyKeyStatus, RotationReport};

use crate::auth::{AppState, Authenticated};
use crate::problem::{ApiResult, Problem};

#[utoipa::path(post, path = "/api/v1/companies/{company}/keys/rotate", tag = "companies",
    params(("company" = String, Path)),
    responses((status = 200, body = RotationReport), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn rotate(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(company): Path<String>,
) -> ApiResult<Json<RotationReport>> {
    Ok(Json(platform.rotate_key_as(caller, &company).await?))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/keys", tag = "companies",
    params(("company" = String, Path)),
    responses((status = 200, body = CompanyKeyStatus), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn status(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(company): Path<String>,
) -> ApiResult<Json<CompanyKeyStatus>> {
    Ok(Json(platform.key_status_as(caller, &company).await?))
}
