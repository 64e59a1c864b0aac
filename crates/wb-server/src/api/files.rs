//! Attachments: `GET|POST /companies/{c}/files`, `GET /companies/{c}/files/{file}`.
//!
//! An upload is the raw request body (its `Content-Type` is the file's media
//! type), named by `?name=` and optionally linked to an entry by `?entry=`;
//! it is streamed into the object store (`crate::files`) and then recorded
//! (`file.upload`). Reading needs the permission reading entries needs,
//! uploading the one posting entries needs. Lists are audited as
//! `files.list`, downloads as `file.download`, before they are answered.

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wb_app::records::{AuditEvent, FilePage, FileRecord, NewFile, Outcome};
use wb_core::attachments::{normalize_content_type, validate_file_name};
use wb_core::Action;

use super::json::ApiQuery;
use crate::access::CompanyScope;
use crate::auth::{AppState, Company, ReadFiles, WriteFiles};
use crate::dto::rfc3339;
use crate::files::{self, DownloadError, UploadError, UploadLimits};
use crate::problem::{ApiError, ApiResult, Problem};

/// What the files routes are configured with (set by the router).
#[derive(Debug, Clone, Copy)]
pub struct FileSettings {
    pub limits: UploadLimits,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name: 1 to 255 characters, no control characters, `/` or `\`.
    pub name: Option<String>,
    /// An entry of this company to link the file to.
    pub entry: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    /// Return files with ids greater than this (paging cursor).
    pub after: Option<String>,
    /// 1 to 1000; default 100.
    pub limit: Option<u32>,
    /// Only the files linked to this entry.
    pub entry: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    pub id: String,
    pub name: String,
    pub content_type: String,
    /// Bytes of the file.
    pub size: u64,
    /// The entry it is linked to.
    pub entry: Option<String>,
    /// Content address (keyed by the company's key): equal files share it.
    pub address: String,
    pub created_at: String,
    pub created_by: String,
}

impl From<&FileRecord> for FileView {
    fn from(f: &FileRecord) -> Self {
        FileView {
            id: f.id.to_string(),
            name: f.name.clone(),
            content_type: f.content_type.clone(),
            size: f.size,
            entry: f.entry_id.map(|e| e.to_string()),
            address: f.address.clone(),
            created_at: rfc3339(f.created_at),
            created_by: f.created_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    pub files: Vec<FileView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file-too-large",
        "File too large",
        format!("a file may hold at most {limit} bytes"),
    )
}

fn file_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("file"))
}

fn unknown_entry(text: &str) -> ApiError {
    ApiError::unprocessable(
        "unknown-entry",
        format!(
            "entry {:?} does not exist in this company",
            text.chars().take(32).collect::<String>()
        ),
    )
}

/// The entry a file is to be linked to: it must exist (entries are never deleted).
async fn linked_entry(books: &CompanyScope, entry: Option<&str>) -> ApiResult<Option<i64>> {
    let Some(text) = entry else {
        return Ok(None);
    };
    let id = text
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| unknown_entry(text))?;
    match books.entry(id).await? {
        Some(_) => Ok(Some(id)),
        None => Err(unknown_entry(text)),
    }
}

/// `attachment` with the name quoted safely: an ASCII fallback and the exact
/// name in RFC 8187 encoding.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Records a refused upload in the company's chain (best effort: the
/// refusal is answered either way).
async fn audit_refusal(books: &CompanyScope, platform: &AppState, detail: &str) {
    let event = AuditEvent {
        at: platform.now(),
        actor: books.actor().clone(),
        company_id: Some(books.company_id().to_string()),
        action: Action::FileUpload,
        target: None,
        outcome: Outcome::Failure,
        detail: Some(detail.to_string()),
    };
    books.note(event).await;
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/files", tag = "files",
    params(("company" = String, Path), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The file's bytes, streamed; the request's Content-Type is stored as the file's media type"),
    responses((status = 201, body = FileView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn upload(
    State(platform): State<AppState>,
    Extension(settings): Extension<FileSettings>,
    door: Company<WriteFiles>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let books = door.into_admission().operate(&platform).await?;
    let company = books.company_id().to_string();
    let name = query.name.unwrap_or_default();
    let content_type = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::unprocessable("invalid-content-type", "Content-Type is not ASCII")
        })?),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let upload = Upload {
        name,
        content_type,
        entry: query.entry.as_deref(),
        declared,
    };
    let record = store_upload(&platform, &books, settings, upload, body.into_data_stream()).await?;
    let location = format!("/api/v1/companies/{company}/files/{}", record.id);
    let mut response = (StatusCode::CREATED, Json(FileView::from(&record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// What an upload names before its bytes arrive.
pub struct Upload<'a> {
    pub name: String,
    pub content_type: Option<&'a str>,
    /// The entry of this company to link it to, as the caller named it.
    pub entry: Option<&'a str>,
    /// The length the client declared, if any (refused early when too large).
    pub declared: Option<u64>,
}

/// Streams an upload into the object store and records it (the API's raw
/// body and the console's multipart field both end here); refusals are
/// audited.
pub async fn store_upload<S, E>(
    platform: &AppState,
    books: &CompanyScope,
    settings: FileSettings,
    upload: Upload<'_>,
    stream: S,
) -> ApiResult<FileRecord>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    let company = books.company_id().to_string();
    validate_file_name(&upload.name)
        .map_err(|e| ApiError::unprocessable("invalid-file-name", e.to_string()))?;
    let content_type = normalize_content_type(upload.content_type)
        .map_err(|e| ApiError::unprocessable("invalid-content-type", e.to_string()))?;
    let entry_id = linked_entry(books, upload.entry).await?;
    let limit = settings.limits.max_bytes;
    if upload.declared.is_some_and(|length| length > limit) {
        audit_refusal(books, platform, "larger than the file size limit").await;
        return Err(too_large(limit));
    }
    let key = platform.scope_key(books).await?;
    let stored = files::upload(&*platform.objects, &key, &company, stream, settings.limits).await;
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            let error = match &e {
                UploadError::TooLarge(limit) => too_large(*limit),
                UploadError::Idle(_) => ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request-timeout",
                    "Request timeout",
                    e.to_string(),
                ),
                UploadError::Body(_) => ApiError::bad_request("malformed-body", e.to_string()),
                UploadError::Store(_) | UploadError::Crypto(_) => {
                    tracing::error!(error = %e, company = %company, "storing an attachment failed");
                    ApiError::unavailable("the file could not be stored; try again later")
                }
            };
            audit_refusal(books, platform, &error.detail).await;
            return Err(error);
        }
    };
    let file = NewFile {
        address: stored.address,
        name: upload.name,
        content_type,
        size: stored.size,
        entry_id,
    };
    // The object stays when this fails: another file may share it.
    Ok(books.add_file(platform, file).await?)
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/files", tag = "files",
    params(("company" = String, Path), FileQuery),
    responses((status = 200, body = FileList), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn list(
    State(platform): State<AppState>,
    door: Company<ReadFiles>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<Json<FileList>> {
    let books = door
        .into_admission()
        .read(&platform, Action::FilesList, None)
        .await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after =
        match q.after.as_deref() {
            Some(a) => Some(a.parse::<i64>().map_err(|_| {
                ApiError::unprocessable("invalid-cursor", "after must be a file id")
            })?),
            None => None,
        };
    let entry_id =
        match q.entry.as_deref() {
            Some(e) => Some(e.parse::<i64>().map_err(|_| {
                ApiError::unprocessable("invalid-entry", "entry must be an entry id")
            })?),
            None => None,
        };
    let files = books
        .files(FilePage {
            after,
            limit,
            entry_id,
        })
        .await?;
    let next_after = (files.len() == limit as usize)
        .then(|| files.last().map(|f| f.id.to_string()))
        .flatten();
    Ok(Json(FileList {
        files: files.iter().map(Into::into).collect(),
        next_after,
    }))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/files/{file}", tag = "files",
    params(("company" = String, Path), ("file" = String, Path)),
    responses((status = 200, description = "The file's bytes, with its media type, length and name (Content-Disposition: attachment)",
            content_type = "application/octet-stream"),
        (status = 404, body = Problem), (status = 500, body = Problem)))]
pub async fn download(
    State(platform): State<AppState>,
    door: Company<ReadFiles>,
    Path((_, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let books = door
        .into_admission()
        .read(
            &platform,
            Action::FileDownload,
            Some(format!(
                "file:{}",
                file.chars().take(32).collect::<String>()
            )),
        )
        .await?;
    let record = books
        .file(file_id(&file)?)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    let company = books.company_id().to_string();
    let key = platform.scope_key(&books).await?;
    let unreadable = |e: DownloadError| {
        tracing::error!(error = %e, company = %company, "an attachment cannot be read");
        match e {
            DownloadError::Store { .. } => {
                ApiError::unavailable("the file cannot be read right now; try again later")
            }
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "file-unreadable",
                "File unreadable",
                "the file's stored content is missing or failed its integrity check; this has been logged",
            ),
        }
    };
    let plain = files::download(platform.objects.clone(), &key, &company, &record)
        .await
        .map_err(unreadable)?;
    let company_id = company.clone();
    // An error ends the body unfinished: the client sees a broken transfer,
    // never a complete file with unauthenticated bytes.
    let plain = plain.inspect(move |piece| {
        if let Err(e) = piece {
            tracing::error!(error = %e, company = %company_id, "an attachment failed mid-download");
        }
    });
    let mut response = Body::from_stream(plain).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(served_type(&record.content_type))
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    // Even opened in a tab, an attachment runs nothing and loads nothing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(record.size));
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&record.name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The media type an attachment is served with: what it was uploaded as,
/// except types a browser would run as script or render as a document of
/// this origin (a customer's upload must never become a same-origin script
/// the console's `script-src 'self'` would accept), which are served as
/// bytes.
pub fn served_type(stored: &str) -> &str {
    let essence = stored
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let active = essence.contains("javascript")
        || essence.contains("ecmascript")
        || essence.contains("html")
        || essence.contains("xml")
        || essence == "application/wasm"
        || essence == "text/css";
    if active {
        "application/octet-stream"
    } else {
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::{content_disposition, served_type};

    #[test]
    fn uploads_are_never_served_as_something_a_browser_runs() {
        for active in [
            "text/javascript",
            "application/javascript; charset=utf-8",
            "TEXT/HTML",
            "image/svg+xml",
            "application/xhtml+xml",
            "application/wasm",
            "text/css",
            "module/ecmascript",
        ] {
            assert_eq!(served_type(active), "application/octet-stream", "{active}");
        }
        for passive in [
            "application/pdf",
            "image/png",
            "text/plain; charset=utf-8",
            "text/csv",
        ] {
            assert_eq!(served_type(passive), passive);
        }
    }

    #[test]
    fn names_are_quoted_safely() {
        assert_eq!(
            content_disposition("receipt.pdf"),
            "attachment; filename=\"receipt.pdf\"; filename*=UTF-8''receipt.pdf"
        );
        assert_eq!(
            content_disposition("Rechnung \"März\".pdf"),
            "attachment; filename=\"Rechnung _M_rz_.pdf\"; filename*=UTF-8''Rechnung%20%22M%C3%A4rz%22.pdf"
        );
        assert_eq!(
            content_disposition("a;b,c\\d"),
            "attachment; filename=\"a;b,c_d\"; filename*=UTF-8''a%3Bb%2Cc%5Cd"
        );
    }
}
