//! Company, accounts, entries and reversals.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use wb_core::Action;
use wb_core::{EntryDraft, NewAccount, Permission, PostingDraft, Role};
use wb_store::{AuditEvent, EntryPage, Idempotency, Outcome, TenantStore, WriteContext};

use super::json::{body_rejection, parse, ApiJson, ApiQuery};
use crate::auth::{AppState, Caller};
use crate::config::AccessKind;
use crate::dto::*;
use crate::problem::{ApiError, ApiResult, Problem};

pub const MAX_BATCH_ENTRIES: usize = 10_000;
const IDEMPOTENCY_KEY_MAX: usize = 200;

/// A caller admitted to one company's books with a given permission.
pub struct Books {
    pub store: Arc<dyn TenantStore>,
    pub role: Role,
    pub caller: Caller,
    pub company_id: String,
}

impl Books {
    pub async fn open(
        platform: &AppState,
        caller: Caller,
        company_id: &str,
        permission: Permission,
    ) -> ApiResult<Books> {
        let role = platform
            .authorize(&caller.principal, company_id, permission, &caller.actor)
            .await?;
        let store = platform.tenant(company_id).await?;
        Ok(Books {
            store,
            role,
            caller,
            company_id: company_id.to_string(),
        })
    }

    /// Records a read of this company's content before it is answered.
    pub async fn audit_read(
        &self,
        platform: &AppState,
        action: Action,
        target: Option<String>,
    ) -> ApiResult<()> {
        let event = AuditEvent {
            at: platform.now(),
            actor: self.caller.actor.clone(),
            company_id: Some(self.company_id.clone()),
            action,
            target,
            outcome: Outcome::Success,
            detail: None,
        };
        platform
            .audit_access(&*self.store, event, AccessKind::CustomerRead)
            .await
    }

    pub fn write_context(&self, platform: &AppState) -> WriteContext {
        WriteContext {
            actor: self.caller.actor.clone(),
            at: platform.now(),
        }
    }
}

pub fn entry_draft(body: NewEntryRequest) -> ApiResult<EntryDraft> {
    Ok(EntryDraft {
        date: parse_date("date", &body.date)?,
        description: body.description,
        reference: body.reference,
        postings: body
            .postings
            .into_iter()
            .map(|p| PostingDraft {
                account: p.account,
                amount: p.amount,
                currency: p.currency,
            })
            .collect(),
    })
}

fn idempotency(headers: &HeaderMap, fingerprint: &[u8]) -> ApiResult<Option<Idempotency>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= IDEMPOTENCY_KEY_MAX
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid-idempotency-key",
                "Idempotency-Key must be 1 to 200 printable ASCII characters",
            )
        })?;
    Ok(Some(Idempotency {
        key: key.to_string(),
        request_hash: wb_crypto::sha256_hex(fingerprint),
    }))
}

fn entry_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found("entry"))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}", tag = "books",
    params(("company" = String, Path)),
    responses((status = 200, body = CompanyView), (status = 404, body = Problem)))]
pub async fn company(
    State(platform): State<AppState>,
    caller: Caller,
    Path(company): Path<String>,
) -> ApiResult<Json<CompanyView>> {
    let books = Books::open(&platform, caller, &company, Permission::ReadBooks).await?;
    books
        .audit_read(&platform, Action::CompanyRead, None)
        .await?;
    let record = platform
        .control
        .company(&company)
        .await?
        .ok_or_else(|| ApiError::not_found("company"))?;
    Ok(Json(CompanyView {
        id: record.id,
        name: record.name,
        status: record.status.as_str().into(),
        created_at: rfc3339(record.created_at),
        role: books.role.as_str().into(),
    }))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/accounts", tag = "books",
    params(("company" = String, Path)),
    responses((status = 200, body = [AccountView]), (status = 404, body = Problem)))]
pub async fn list_accounts(
    State(platform): State<AppState>,
    caller: Caller,
    Path(company): Path<String>,
) -> ApiResult<Json<Vec<AccountView>>> {
    let books = Books::open(&platform, caller, &company, Permission::ReadBooks).await?;
    books
        .audit_read(&platform, Action::AccountsList, None)
        .await?;
    Ok(Json(
        books
            .store
            .accounts()
            .await?
            .iter()
            .map(Into::into)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/accounts", tag = "books",
    params(("company" = String, Path)), request_body = NewAccountRequest,
    responses((status = 201, body = AccountView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_account(
    State(platform): State<AppState>,
    caller: Caller,
    Path(company): Path<String>,
    ApiJson(body): ApiJson<NewAccountRequest>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    let books = Books::open(&platform, caller, &company, Permission::WriteBooks).await?;
    let account = NewAccount::validate(
        &body.code,
        &body.name,
        &body.account_type,
        body.parent.as_deref(),
        body.currency.as_deref(),
    )?;
    let created = books
        .store
        .create_account(account, books.write_context(&platform))
        .await;
    let created = platform
        .checked(&company, Action::AccountCreate, created)
        .await?;
    Ok((StatusCode::CREATED, Json((&created).into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntryQuery {
    /// Return entries with ids greater than this (paging cursor).
    pub after: Option<String>,
    /// 1 to 1000; default 100.
    pub limit: Option<u32>,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/entries", tag = "books",
    params(("company" = String, Path), EntryQuery),
    responses((status = 200, body = EntryList), (status = 404, body = Problem)))]
pub async fn list_entries(
    State(platform): State<AppState>,
    caller: Caller,
    Path(company): Path<String>,
    ApiQuery(q): ApiQuery<EntryQuery>,
) -> ApiResult<Json<EntryList>> {
    let books = Books::open(&platform, caller, &company, Permission::ReadBooks).await?;
    books
        .audit_read(&platform, Action::EntriesList, None)
        .await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after =
        match q.after.as_deref() {
            Some(a) => Some(a.parse::<i64>().map_err(|_| {
                ApiError::unprocessable("invalid-cursor", "after must be an entry id")
            })?),
            None => None,
        };
    let page = EntryPage {
        after,
        limit,
        from: q
            .from
            .as_deref()
            .map(|d| parse_date("from", d))
            .transpose()?,
        to: q.to.as_deref().map(|d| parse_date("to", d)).transpose()?,
    };
    let entries = books.store.entries(page).await?;
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(EntryList {
        entries: entries.iter().map(Into::into).collect(),
        next_after,
    }))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/entries", tag = "books",
    params(("company" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key return the first result")),
    request_body = NewEntryRequest,
    responses((status = 201, body = EntryView), (status = 422, body = Problem)))]
pub async fn post_entry(
    State(platform): State<AppState>,
    caller: Caller,
    Path(company): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(body_rejection)?;
    let books = Books::open(&platform, caller, &company, Permission::WriteBooks).await?;
    let request: NewEntryRequest = parse(&headers, &body)?;
    let idempotency = idempotency(&headers, &[b"entry\n".as_slice(), &body].concat())?;
    let draft = entry_draft(request)?;
    let posted = books
        .store
        .post_entries(vec![draft], idempotency, books.write_context(&platform))
        .await;
    let posted = platform
        .checked(&company, Action::EntryPost, posted)
        .await?;
    let entry = posted.entries.first().ok_or_else(ApiError::internal)?;
    let mut response = (StatusCode::CREATED, Json(EntryView::from(entry))).into_response();
    if posted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/entries/batch", tag = "books",
    params(("company" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    request_body = BatchRequest,
    responses((status = 201, body = BatchResponse), (status = 422, body = Problem)))]
pub async fn post_batch(
    State(platform): State<AppState>,
    caller: Caller,
    Path(company): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(body_rejection)?;
    let books = Books::open(&platform, caller, &company, Permission::WriteBooks).await?;
    let request: BatchRequest = parse(&headers, &body)?;
    if request.entries.is_empty() || request.entries.len() > MAX_BATCH_ENTRIES {
        return Err(ApiError::unprocessable(
            "invalid-batch",
            format!("a batch holds 1 to {MAX_BATCH_ENTRIES} entries"),
        ));
    }
    let idempotency = idempotency(&headers, &[b"batch\n".as_slice(), &body].concat())?;
    let drafts = request
        .entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            entry_draft(e).map_err(|mut err| {
                err.detail = format!("entry {i}: {}", err.detail);
                err
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let posted = books
        .store
        .post_entries(drafts, idempotency, books.write_context(&platform))
        .await;
    let posted = platform
        .checked(&company, Action::EntryPost, posted)
        .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(BatchResponse {
            entries: posted.entries.iter().map(Into::into).collect(),
        }),
    )
        .into_response();
    if posted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/entries/{entry}", tag = "books",
    params(("company" = String, Path), ("entry" = String, Path)),
    responses((status = 200, body = EntryView), (status = 404, body = Problem)))]
pub async fn get_entry(
    State(platform): State<AppState>,
    caller: Caller,
    Path((company, entry)): Path<(String, String)>,
) -> ApiResult<Json<EntryView>> {
    let books = Books::open(&platform, caller, &company, Permission::ReadBooks).await?;
    books
        .audit_read(
            &platform,
            Action::EntryRead,
            Some(format!(
                "entry:{}",
                entry.chars().take(32).collect::<String>()
            )),
        )
        .await?;
    let entry = books
        .store
        .entry(entry_id(&entry)?)
        .await?
        .ok_or_else(|| ApiError::not_found("entry"))?;
    Ok(Json((&entry).into()))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/entries/{entry}/reverse", tag = "books",
    params(("company" = String, Path), ("entry" = String, Path)), request_body = ReverseRequest,
    responses((status = 201, body = EntryView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reverse_entry(
    State(platform): State<AppState>,
    caller: Caller,
    Path((company, entry)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<EntryView>)> {
    let body = body.map_err(body_rejection)?;
    let books = Books::open(&platform, caller, &company, Permission::WriteBooks).await?;
    let request: ReverseRequest = if body.is_empty() {
        ReverseRequest::default()
    } else {
        parse(&headers, &body)?
    };
    let id = entry_id(&entry)?;
    let date = match request.date.as_deref() {
        Some(d) => parse_date("date", d)?,
        None => platform.now().date(),
    };
    let reversal = books
        .store
        .reverse_entry(
            id,
            date,
            request.description,
            books.write_context(&platform),
        )
        .await;
    let reversal = platform
        .checked(&company, Action::EntryReverse, reversal)
        .await?;
    Ok((StatusCode::CREATED, Json((&reversal).into())))
}
