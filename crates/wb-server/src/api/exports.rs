//! Customer exports: a full, encrypted copy of a company (books, attachments,
//! audit trail, change journal) that the customer can download and read offline with the
//! age identity or passphrase it chose (`crate::exports` has the format).
//!
//! Owners and admins only (`Permission::ExportData`). Every creation and
//! download is audited in the company's chain as `export.create` /
//! `export.download` (the monitor's mass-export rule counts `export.*`), and
//! an export is never created or served when that event cannot be written.
//! A passphrase is used to encrypt and dropped: it is not stored, logged or
//! echoed, and the platform cannot decrypt an export.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wb_app::export_create::ExportKeyRequest;
use wb_core::Action;
use wb_crypto::Secret;

use super::json::ApiJson;
use crate::auth::{AppState, Company, ExportData};
use crate::exports::{Counts, ExportRecord};
use crate::problem::{ApiError, ApiResult, Problem};

/// Exactly one of `recipient` and `passphrase`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExportRequest {
    /// An age X25519 recipient (`age1…`, from `age-keygen`); the customer keeps the identity.
    pub recipient: Option<String>,
    /// A passphrase (at least 12 characters, strong); never stored or echoed.
    pub passphrase: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportView {
    pub id: String,
    /// `ready`: exports are built before the creating request returns.
    pub status: String,
    pub created_at: String,
    pub created_by: String,
    /// Size of the encrypted file.
    pub size_bytes: u64,
    /// Hex SHA-256 of the encrypted file.
    pub sha256: String,
    /// `age-x25519` or `age-scrypt` (passphrase).
    pub encryption: String,
    /// The age recipient it is encrypted to (absent for a passphrase).
    pub recipient: Option<String>,
    /// The books are as of this change-journal record.
    pub journal_seq: i64,
    pub audit_seq: i64,
    pub counts: Counts,
    /// Where to download the encrypted file.
    pub download: String,
}

impl From<ExportRecord> for ExportView {
    fn from(r: ExportRecord) -> Self {
        let download = format!(
            "/api/v1/companies/{}/exports/{}/download",
            r.company_id, r.id
        );
        ExportView {
            id: r.id,
            status: r.status,
            created_at: r.created_at,
            created_by: r.created_by,
            size_bytes: r.size_bytes,
            sha256: r.sha256,
            encryption: r.encryption,
            recipient: r.recipient,
            journal_seq: r.journal_seq,
            audit_seq: r.audit_seq,
            counts: r.counts,
            download,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportList {
    /// Newest first.
    pub exports: Vec<ExportView>,
}

fn key_request(body: NewExportRequest) -> ApiResult<ExportKeyRequest> {
    match (body.recipient, body.passphrase) {
        (Some(recipient), None) => Ok(ExportKeyRequest::Recipient(recipient)),
        (None, Some(passphrase)) => Ok(ExportKeyRequest::Passphrase(Secret::from(passphrase))),
        _ => Err(ApiError::unprocessable(
            "invalid-export-key",
            "give exactly one of recipient (an age X25519 recipient, age1…) and passphrase",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/exports", tag = "exports",
    params(("company" = String, Path)), request_body = NewExportRequest,
    responses((status = 201, body = ExportView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 429, description = "The company's exports fill its slots; see Retry-After", body = Problem),
        (status = 503, description = "This server's export slots are full; see Retry-After", body = Problem)))]
pub async fn create(
    State(platform): State<AppState>,
    door: Company<ExportData>,
    ApiJson(body): ApiJson<NewExportRequest>,
) -> ApiResult<(StatusCode, Json<ExportView>)> {
    let request = key_request(body)?;
    let books = door.into_admission().operate(&platform).await?;
    let record = books.create_export(&platform, request).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/exports", tag = "exports",
    params(("company" = String, Path)),
    responses((status = 200, body = ExportList), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list(
    State(platform): State<AppState>,
    door: Company<ExportData>,
) -> ApiResult<Json<ExportList>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::ExportsList, None)
        .await?;
    let records = scope.exports(&platform).await?;
    Ok(Json(ExportList {
        exports: records.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/exports/{export}", tag = "exports",
    params(("company" = String, Path), ("export" = String, Path)),
    responses((status = 200, body = ExportView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(platform): State<AppState>,
    door: Company<ExportData>,
    Path((_, export)): Path<(String, String)>,
) -> ApiResult<Json<ExportView>> {
    let scope = door
        .into_admission()
        .read(
            &platform,
            Action::ExportsGet,
            Some(format!(
                "export:{}",
                export.chars().take(64).collect::<String>()
            )),
        )
        .await?;
    let record = scope
        .export(&platform, &export)
        .await?
        .ok_or_else(|| ApiError::not_found("export"))?;
    Ok(Json(record.into()))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/exports/{export}/download", tag = "exports",
    params(("company" = String, Path), ("export" = String, Path)),
    responses((status = 200, description = "The encrypted export (an age file)", content_type = "application/octet-stream"),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn download(
    State(platform): State<AppState>,
    door: Company<ExportData>,
    Path((_, export)): Path<(String, String)>,
) -> ApiResult<Response> {
    let books = door.into_admission().operate(&platform).await?;
    let (record, found) = books.download_export(&platform, &export).await?;
    let disposition = format!(
        "attachment; filename=\"workbooks-export-{}-{}.age\"",
        record.company_id, record.id
    );
    // Streamed from the object store: never read whole into memory.
    let size = found.meta.size;
    let mut response = axum::body::Body::from_stream(found.into_stream()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
