//! Point-in-time restores of a company into a new company, asked for by its
//! owner (`Permission::RestoreCopy`, a session only): the request answers at
//! once with a running job, polled until it is `done` (with the new
//! company) or `failed`. The company itself is never changed. The request
//! and its outcome are in the company's trail (`company.restore`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use utoipa::ToSchema;
use wb_app::backup::RestoreTarget;
use wb_app::dto::rfc3339;
use wb_app::restore_copy::RestoreCopyRequest;
use wb_app::restore_jobs::{is_restore_id, RestoreJob, RestoreState};
use wb_core::Action;

use super::json::ApiJson;
use crate::auth::{AppState, Company, RestoreCopy};
use crate::problem::{ApiError, ApiResult, Problem};

/// Exactly one of `to` and `latest: true`; `confirm` is the company's name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRestoreRequest {
    /// Restore every change committed at or before this RFC 3339 time.
    pub to: Option<String>,
    /// Restore everything backed up so far.
    #[serde(default)]
    pub latest: bool,
    /// The company's name, exactly: the owner's confirmation.
    pub confirm: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RestoredCompanyView {
    pub id: String,
    pub name: String,
    /// The last journal record of the source the new company holds.
    pub last_seq: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreView {
    pub id: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The company restored from.
    pub source: String,
    /// The point: an RFC 3339 time, or `latest`.
    pub to: String,
    pub requested_by: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// Journal records replayed so far, and of how many (while running).
    pub progress: Option<[u64; 2]>,
    /// The new company (when done).
    pub company: Option<RestoredCompanyView>,
    /// Why it failed (when failed).
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreList {
    /// This server's restores of the company, newest first (the audit
    /// trail keeps every one).
    pub restores: Vec<RestoreView>,
}

impl From<RestoreJob> for RestoreView {
    fn from(job: RestoreJob) -> RestoreView {
        let (progress, company, error) = match job.state.clone() {
            RestoreState::Running { done, total } => (Some([done, total]), None, None),
            RestoreState::Done {
                company_id,
                company_name,
                last_seq,
            } => (
                None,
                Some(RestoredCompanyView {
                    id: company_id,
                    name: company_name,
                    last_seq,
                }),
                None,
            ),
            RestoreState::Failed { reason } => (None, None, Some(reason)),
        };
        RestoreView {
            id: job.id,
            state: job.state.name().to_string(),
            source: job.source,
            to: match job.target {
                RestoreTarget::Time(t) => rfc3339(t),
                RestoreTarget::Seq(n) => format!("seq:{n}"),
                RestoreTarget::Latest => "latest".into(),
            },
            requested_by: job.requested_by,
            started_at: rfc3339(job.started_at),
            ended_at: job.ended_at.map(rfc3339),
            progress,
            company,
            error,
        }
    }
}

/// The point an owner asked for.
pub fn restore_target(to: Option<&str>, latest: bool) -> Result<RestoreTarget, ApiError> {
    match (to, latest) {
        (Some(t), false) => OffsetDateTime::parse(t, &Rfc3339)
            .map(RestoreTarget::Time)
            .map_err(|_| {
                ApiError::unprocessable(
                    "invalid-restore-point",
                    "to must be an RFC 3339 time, e.g. 2026-11-30T17:00:00Z",
                )
            }),
        (None, true) => Ok(RestoreTarget::Latest),
        _ => Err(ApiError::unprocessable(
            "invalid-restore-point",
            "give exactly one of to (an RFC 3339 time) and latest: true",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/restores", tag = "backups",
    params(("company" = String, Path)), request_body = NewRestoreRequest,
    responses((status = 202, body = RestoreView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "A restore of this company is running", body = Problem),
        (status = 422, body = Problem),
        (status = 503, description = "This server's restore slots are full; see Retry-After", body = Problem)))]
pub async fn create(
    State(platform): State<AppState>,
    door: Company<RestoreCopy>,
    ApiJson(body): ApiJson<NewRestoreRequest>,
) -> ApiResult<(StatusCode, Json<RestoreView>)> {
    let target = restore_target(body.to.as_deref(), body.latest)?;
    let scope = door.into_admission().operate(&platform).await?;
    let job = scope
        .start_restore_copy(
            &platform,
            RestoreCopyRequest {
                target,
                confirm: body.confirm,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(job.into())))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/restores", tag = "backups",
    params(("company" = String, Path)),
    responses((status = 200, body = RestoreList), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(platform): State<AppState>,
    door: Company<RestoreCopy>,
) -> ApiResult<Json<RestoreList>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::RestoresList, None)
        .await?;
    let jobs = scope.restore_jobs(&platform);
    Ok(Json(RestoreList {
        restores: jobs.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/restores/{restore}", tag = "backups",
    params(("company" = String, Path), ("restore" = String, Path)),
    responses((status = 200, body = RestoreView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(platform): State<AppState>,
    door: Company<RestoreCopy>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<RestoreView>> {
    if !is_restore_id(&id) {
        return Err(ApiError::not_found("restore"));
    }
    let scope = door
        .into_admission()
        .read(
            &platform,
            Action::RestoresList,
            Some(format!("restore:{id}")),
        )
        .await?;
    Ok(Json(scope.restore_job(&platform, &id)?.into()))
}
