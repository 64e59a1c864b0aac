//! A company's purge under its own retention rules: owners only. A dry run
//! lists exactly what would go; the purge itself removes it from the
//! database and, once a snapshot after it is shipped, from the backups.

use axum::extract::State;
use axum::Json;
use wb_app::purge::{PurgeRequest, PurgeView};

use super::json::ApiJson;
use crate::auth::{AppState, Company, PurgeData};
use crate::problem::{ApiResult, Problem};

/// `{"dry_run": true}` changes nothing. A horizon later than the rules allow
/// (`entries_before`) is refused naming the rule (422
/// `below-statutory-minimum` or `beyond-retention-rule`).
#[utoipa::path(post, path = "/api/v1/companies/{company}/purge", tag = "companies",
    params(("company" = String, Path)), request_body = PurgeRequest,
    responses((status = 200, body = PurgeView), (status = 403, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn purge(
    State(platform): State<AppState>,
    door: Company<PurgeData>,
    ApiJson(body): ApiJson<PurgeRequest>,
) -> ApiResult<Json<PurgeView>> {
    let scope = door.into_admission().operate(&platform).await?;
    Ok(Json(scope.purge(&platform, body).await?))
}
