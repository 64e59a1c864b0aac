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
use wb_app::records::{AuditEvent, Outcome};
use wb_core::Action;
use wb_crypto::Secret;

use super::json::ApiJson;
use crate::access::CompanyScope;
use crate::auth::{AppState, Company, ExportData};
use crate::exports::{self, Counts, ExportKey, ExportRecord, KeyError};
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

fn export_key(body: NewExportRequest, company_name: &str) -> ApiResult<ExportKey> {
    match (body.recipient, body.passphrase) {
        (Some(recipient), None) => ExportKey::recipient(&recipient)
            .map_err(|e| ApiError::unprocessable("invalid-recipient", e.to_string())),
        (None, Some(passphrase)) => {
            let passphrase = Secret::from(passphrase);
            let mut related: Vec<&str> = company_name.split_whitespace().collect();
            related.push(company_name);
            ExportKey::passphrase(passphrase, &related).map_err(|e| match e {
                KeyError::WeakPassphrase(_) => {
                    ApiError::unprocessable("weak-passphrase", e.to_string())
                }
                KeyError::BadRecipient(_) => {
                    ApiError::unprocessable("invalid-recipient", e.to_string())
                }
            })
        }
        _ => Err(ApiError::unprocessable(
            "invalid-export-key",
            "give exactly one of recipient (an age X25519 recipient, age1…) and passphrase",
        )),
    }
}

/// Seconds a client is asked to wait before trying again when no export
/// slot is free (a passphrase export takes a few seconds).
pub const BUSY_RETRY_AFTER_SECS: u64 = 10;

/// 429 when the company's own exports fill its slots, 503 when the node's
/// are full; both with `Retry-After`.
fn export_busy(busy: exports::Busy) -> ApiError {
    let (status, slug, title) = match busy {
        exports::Busy::Company(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            "export-in-progress",
            "Too many requests",
        ),
        exports::Busy::Node(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "exports-busy",
            "Service unavailable",
        ),
    };
    let mut error = ApiError::new(status, slug, title, busy.to_string());
    error.retry_after_secs = Some(BUSY_RETRY_AFTER_SECS);
    error
}

/// Appends an event to the company's chain; refuses the request when it cannot.
async fn audit(books: &CompanyScope, platform: &AppState, event: AuditEvent) -> ApiResult<()> {
    Ok(books.record(platform, event).await?)
}

fn event(
    books: &CompanyScope,
    platform: &AppState,
    action: Action,
    export_id: &str,
    outcome: Outcome,
    detail: Option<String>,
) -> AuditEvent {
    AuditEvent {
        at: platform.now(),
        actor: books.actor().clone(),
        company_id: Some(books.company_id().to_string()),
        action,
        target: Some(format!("export:{export_id}")),
        outcome,
        detail,
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
    let books = door.into_admission().operate(&platform).await?;
    let company = books.company_id().to_string();
    let name = books.company(&platform).await?.name;
    // Held until the export is stored: bounds the memory and CPU exports take.
    let _slot = platform
        .export_slots
        .try_acquire(&company)
        .map_err(export_busy)?;
    // zxcvbn on a passphrase of up to 1 KiB: off the runtime, bounded.
    let key = platform.cpu.run(move || export_key(body, &name)).await??;
    let detail = match key.public_recipient() {
        Some(r) => format!("encrypted to age recipient {r}"),
        None => "encrypted to a passphrase".to_string(),
    };
    let prepared = books.prepare_export(&platform, key).await?;
    let id = prepared.id.clone();
    audit(
        &books,
        &platform,
        event(
            &books,
            &platform,
            Action::ExportCreate,
            &id,
            Outcome::Success,
            Some(detail),
        ),
    )
    .await?;
    match exports::save(&platform, prepared).await {
        Ok(record) => Ok((StatusCode::CREATED, Json(record.into()))),
        Err(e) => {
            tracing::error!(error = %e, company = %company, export = %id, "storing an export failed");
            let failed = event(
                &books,
                &platform,
                Action::ExportCreate,
                &id,
                Outcome::Failure,
                Some("the export could not be stored".into()),
            );
            books.note(failed).await;
            Err(ApiError::unavailable(
                "the export could not be stored; try again later",
            ))
        }
    }
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
    let (record, found) = books
        .export_download(&platform, &export)
        .await?
        .ok_or_else(|| ApiError::not_found("export"))?;
    audit(
        &books,
        &platform,
        event(
            &books,
            &platform,
            Action::ExportDownload,
            &record.id,
            Outcome::Success,
            None,
        ),
    )
    .await?;
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
