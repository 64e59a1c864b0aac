//! RFC 9457 problem documents. Every error the API returns goes through here,
//! with a stable `type` per kind of problem. Internal details go to the log,
//! never to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use wb_core::{LedgerError, MoneyError};
use wb_store::StoreError;

pub const TYPE_PREFIX: &str = "urn:workbooks:problem:";

#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g. `urn:workbooks:problem:unbalanced-entry`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            slug,
            title,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }
    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, slug, "Bad request", detail)
    }
    pub fn unprocessable(slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            slug,
            "Unprocessable request",
            detail,
        )
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("{what} not found"),
        )
    }
    pub fn conflict(slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, slug, "Conflict", detail)
    }
    pub fn too_many(detail: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too many requests",
            detail,
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the request; it has been logged",
        )
    }
    pub fn audit_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit-unavailable",
            "Audit trail unavailable",
            "the audit trail cannot be written, so this request is refused",
        )
    }
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    pub fn body(&self) -> Problem {
        Problem {
            type_: format!("{TYPE_PREFIX}{}", self.slug),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

fn ledger_slug(e: &LedgerError) -> &'static str {
    use LedgerError::*;
    match e {
        InvalidAccountCode(_) => "invalid-account-code",
        InvalidAccountName => "invalid-account-name",
        UnknownAccountType(_) => "unknown-account-type",
        DuplicateAccountCode(_) => "duplicate-account-code",
        UnknownParent(_) | ParentTypeMismatch { .. } => "invalid-parent-account",
        TooFewPostings | TooManyPostings => "invalid-postings",
        UnknownAccount { .. } => "unknown-account",
        Money { source, .. } => match source {
            MoneyError::UnknownCurrency(_) => "unknown-currency",
            MoneyError::Malformed(_) => "invalid-amount",
            MoneyError::TooManyDecimals { .. } => "too-many-decimals",
            MoneyError::Overflow(_) => "amount-overflow",
        },
        ZeroAmount { .. } => "invalid-amount",
        CurrencyNotAllowed { .. } => "currency-not-allowed",
        Unbalanced { .. } => "unbalanced-entry",
        DateOutOfRange(_) => "date-out-of-range",
        InvalidDescription | InvalidReference => "invalid-entry-text",
        AlreadyReversed(_) | ReversalOfReversal(_) => "already-reversed",
        Overflow => "amount-overflow",
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        let slug = ledger_slug(&e);
        match e {
            LedgerError::DuplicateAccountCode(_)
            | LedgerError::AlreadyReversed(_)
            | LedgerError::ReversalOfReversal(_) => ApiError::conflict(slug, e.to_string()),
            _ => ApiError::unprocessable(slug, e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Ledger(l) => l.into(),
            StoreError::Conflict(detail) => ApiError::unprocessable("invalid-batch", detail),
            StoreError::IdempotencyMismatch => {
                ApiError::unprocessable("idempotency-key-reused", e.to_string())
            }
            StoreError::WriterStopped => {
                ApiError::unavailable("the company's books are temporarily unavailable")
            }
            StoreError::Moved => {
                // Nothing was written; the retry reaches the company's new server.
                let mut e = ApiError::unavailable(
                    "the company's books moved to another database server; retry",
                );
                e.retry_after_secs = Some(1);
                e
            }
            StoreError::AuditUnavailable(detail) => {
                tracing::error!(%detail, "audit trail unavailable; refusing");
                ApiError::audit_unavailable()
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::internal()
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::internal()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ApiError {}
