//! The services' error: what went wrong, in terms a caller can act on, with
//! a stable slug per kind of problem. It knows nothing of HTTP; the web
//! adapter maps each [`ErrorKind`] to a status and an RFC 9457 document.
//! Internal details go to the log, never into the error.

use wb_core::{LedgerError, MoneyError};
use wb_store::StoreError;

/// What kind of failure this is, for the adapter to translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed.
    BadRequest,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials, not allowed.
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The client was too slow to send its request.
    Timeout,
    /// The request conflicts with the current state.
    Conflict,
    /// The body is larger than allowed.
    TooLarge,
    UnsupportedMediaType,
    /// Well-formed but invalid.
    Unprocessable,
    /// Rate limited; `retry_after_secs` says when to come back.
    TooManyRequests,
    Internal,
    /// Temporarily unable; possibly with `retry_after_secs`.
    Unavailable,
}

#[derive(Debug)]
pub struct ServiceError {
    pub kind: ErrorKind,
    /// Stable identifier of the kind of problem (`unbalanced-entry`).
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub retry_after_secs: Option<u64>,
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn new(
        kind: ErrorKind,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> ServiceError {
        ServiceError {
            kind,
            slug,
            title,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }
    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::BadRequest, slug, "Bad request", detail)
    }
    pub fn unprocessable(slug: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::new(
            ErrorKind::Unprocessable,
            slug,
            "Unprocessable request",
            detail,
        )
    }
    pub fn unauthorized(detail: impl Into<String>) -> ServiceError {
        ServiceError::new(
            ErrorKind::Unauthorized,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Forbidden, "forbidden", "Forbidden", detail)
    }
    pub fn not_found(what: &str) -> ServiceError {
        ServiceError::new(
            ErrorKind::NotFound,
            "not-found",
            "Not found",
            format!("{what} not found"),
        )
    }
    pub fn conflict(slug: &'static str, detail: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Conflict, slug, "Conflict", detail)
    }
    pub fn too_many(detail: impl Into<String>, retry_after_secs: u64) -> ServiceError {
        ServiceError::new(
            ErrorKind::TooManyRequests,
            "too-many-requests",
            "Too many requests",
            detail,
        )
        .retry_after(retry_after_secs)
    }
    pub fn internal() -> ServiceError {
        ServiceError::new(
            ErrorKind::Internal,
            "internal",
            "Internal error",
            "the server could not complete the request; it has been logged",
        )
    }
    pub fn audit_unavailable() -> ServiceError {
        ServiceError::new(
            ErrorKind::Unavailable,
            "audit-unavailable",
            "Audit trail unavailable",
            "the audit trail cannot be written, so this request is refused",
        )
    }
    pub fn unavailable(detail: impl Into<String>) -> ServiceError {
        ServiceError::new(
            ErrorKind::Unavailable,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }
    pub fn retry_after(mut self, secs: u64) -> ServiceError {
        self.retry_after_secs = Some(secs);
        self
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

impl From<LedgerError> for ServiceError {
    fn from(e: LedgerError) -> ServiceError {
        let slug = ledger_slug(&e);
        match e {
            LedgerError::DuplicateAccountCode(_)
            | LedgerError::AlreadyReversed(_)
            | LedgerError::ReversalOfReversal(_) => ServiceError::conflict(slug, e.to_string()),
            _ => ServiceError::unprocessable(slug, e.to_string()),
        }
    }
}

impl From<wb_core::members::MemberRuleError> for ServiceError {
    fn from(e: wb_core::members::MemberRuleError) -> ServiceError {
        use wb_core::members::MemberRuleError::*;
        match e {
            LastOwner => ServiceError::conflict("last-owner", e.to_string()),
            OwnerOnly | NotAManager(_) => ServiceError::forbidden(e.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        match e {
            StoreError::NotFound(what) => ServiceError::not_found(what),
            StoreError::Ledger(l) => l.into(),
            StoreError::Members(rule) => rule.into(),
            StoreError::Conflict(detail) => ServiceError::unprocessable("invalid-batch", detail),
            StoreError::IdempotencyMismatch => {
                ServiceError::unprocessable("idempotency-key-reused", e.to_string())
            }
            StoreError::WriterStopped => {
                ServiceError::unavailable("the company's books are temporarily unavailable")
            }
            // Nothing was written; the retry reaches the company's new server.
            StoreError::Moved => ServiceError::unavailable(
                "the company's books moved to another database server; retry",
            )
            .retry_after(1),
            StoreError::AuditUnavailable(detail) => {
                tracing::error!(%detail, "audit trail unavailable; refusing");
                ServiceError::audit_unavailable()
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ServiceError::internal()
            }
        }
    }
}

impl From<anyhow::Error> for ServiceError {
    fn from(e: anyhow::Error) -> ServiceError {
        tracing::error!(error = %e, "internal error");
        ServiceError::internal()
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ServiceError {}
