//! A company's export schedule: `GET|PUT|DELETE …/export-schedule`.
//!
//! Owners and admins only (`Permission::ExportData`, as for exports). The
//! bucket's secret is accepted, sealed and never returned: responses show
//! `"secret_access_key": "***"`. A passphrase is refused: the platform would
//! have to store it to encrypt later exports, and could then open them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wb_core::Action;

use wb_app::records::ExportSchedule;
use wb_crypto::Secret;

use super::json::ApiJson;
use crate::auth::{AppState, Company, ExportData};
use crate::dto::rfc3339;
use crate::export_push::schedule::NewSchedule;
use crate::export_push::Credentials;
use crate::problem::{ApiError, ApiResult, Problem};

/// The schedule to set (replaces any).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// `s3://BUCKET[/PREFIX]?endpoint=https://…&region=…` (or `file:///DIR`
    /// when the operator allows it). No credentials in the URL.
    pub destination: String,
    /// The bucket's access key id. May be left out, with the secret, to keep
    /// the stored key of an unchanged destination.
    pub access_key_id: Option<String>,
    /// The bucket's secret access key: sealed, never returned.
    pub secret_access_key: Option<String>,
    /// The age X25519 recipient (`age1…`) every pushed export is encrypted to.
    pub recipient: Option<String>,
    /// Hours between pushes, 1 to 720.
    pub every_hours: u32,
    /// Refused: a schedule cannot hold a passphrase.
    #[schema(value_type = Option<String>)]
    pub passphrase: Option<IgnoredAny>,
}

/// A schedule as shown: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    pub destination: String,
    pub recipient: String,
    pub every_hours: u32,
    /// The stored access key id (s3 destinations).
    pub access_key_id: Option<String>,
    /// `***` when a secret is stored; never the secret itself.
    pub secret_access_key: Option<String>,
    pub created_at: String,
    pub created_by: String,
    /// When the next push is due (RFC 3339).
    pub next_push_at: String,
    pub last_push_at: Option<String>,
    /// `success` or `failure`.
    pub last_push_status: Option<String>,
    pub last_error: Option<String>,
    /// The export the last successful push wrote.
    pub last_object: Option<String>,
    /// Failed pushes in a row.
    pub consecutive_failures: u32,
}

fn view(s: ExportSchedule, access_key_id: Option<String>) -> ScheduleView {
    ScheduleView {
        secret_access_key: s.sealed_credentials.as_ref().map(|_| "***".to_string()),
        access_key_id,
        destination: s.destination,
        recipient: s.recipient,
        every_hours: s.every_hours,
        created_at: rfc3339(s.created_at),
        created_by: s.created_by,
        next_push_at: rfc3339(s.next_push_at),
        last_push_at: s.last_push_at.map(rfc3339),
        last_push_status: s.last_push_status,
        last_error: s.last_error,
        last_object: s.last_object,
        consecutive_failures: s.failures,
    }
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/export-schedule", tag = "exports",
    params(("company" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(platform): State<AppState>,
    door: Company<ExportData>,
) -> ApiResult<Json<ScheduleView>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::ExportScheduleRead, None)
        .await?;
    let (s, key_id) = scope
        .export_schedule(&platform)
        .await?
        .ok_or_else(|| ApiError::not_found("export schedule"))?;
    Ok(Json(view(s, key_id)))
}

#[utoipa::path(put, path = "/api/v1/companies/{company}/export-schedule", tag = "exports",
    params(("company" = String, Path)), request_body = ScheduleRequest,
    responses((status = 200, body = ScheduleView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub async fn put(
    State(platform): State<AppState>,
    door: Company<ExportData>,
    ApiJson(body): ApiJson<ScheduleRequest>,
) -> ApiResult<Json<ScheduleView>> {
    let scope = door.into_admission().operate(&platform).await?;
    if body.passphrase.is_some() {
        return Err(ApiError::unprocessable(
            "passphrase-not-allowed",
            "a schedule cannot use a passphrase (the platform would have to store it); \
             give an age recipient (age1…) and keep its identity yourself",
        ));
    }
    let recipient = body.recipient.ok_or_else(|| {
        ApiError::unprocessable(
            "invalid-recipient",
            "recipient is required: an age X25519 recipient (age1…)",
        )
    })?;
    let credentials = match (body.access_key_id, body.secret_access_key) {
        (None, None) => None,
        (Some(id), Some(secret)) => Some(Credentials {
            access_key_id: Secret::from(id),
            secret_access_key: Secret::from(secret),
        }),
        _ => {
            return Err(ApiError::unprocessable(
                "missing-credentials",
                "give both access_key_id and secret_access_key, or neither",
            ))
        }
    };
    let new = NewSchedule {
        destination: body.destination,
        credentials,
        recipient,
        every_hours: body.every_hours,
    };
    scope.set_export_schedule(&platform, new).await?;
    // As stored (and as GET shows it).
    let (saved, key_id) = scope
        .export_schedule(&platform)
        .await?
        .ok_or_else(|| ApiError::not_found("export schedule"))?;
    Ok(Json(view(saved, key_id)))
}

#[utoipa::path(delete, path = "/api/v1/companies/{company}/export-schedule", tag = "exports",
    params(("company" = String, Path)),
    responses((status = 204, description = "Deleted: no more pushes"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    State(platform): State<AppState>,
    door: Company<ExportData>,
) -> ApiResult<StatusCode> {
    let scope = door.into_admission().operate(&platform).await?;
    scope.delete_export_schedule(&platform).await?;
    Ok(StatusCode::NO_CONTENT)
}
