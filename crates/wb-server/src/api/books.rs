//! Company, accounts, entries and reversals.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use wb_app::records::{AmountFilter, EntryPage, Idempotency};
use wb_core::Action;
use wb_core::{Currency, EntryDraft, NewAccount, PostingDraft};

use super::json::{body_rejection, parse, ApiJson, ApiQuery};
use crate::auth::{AppState, Company, ReadBooks, WriteBooks};
use crate::dto::*;
use crate::problem::{ApiError, ApiResult, Problem};

pub const MAX_BATCH_ENTRIES: usize = 10_000;
const IDEMPOTENCY_KEY_MAX: usize = 200;

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
    door: Company<ReadBooks>,
) -> ApiResult<Json<CompanyView>> {
    let books = door
        .into_admission()
        .read(&platform, Action::CompanyRead, None)
        .await?;
    let record = books.company(&platform).await?;
    Ok(Json(CompanyView {
        id: record.id,
        name: record.name,
        status: record.status.as_str().into(),
        created_at: rfc3339(record.created_at),
        // Staff hold no role: they see the scope of their grant.
        role: match books.grant() {
            Some(grant) => format!("staff:{}", grant.scope),
            None => books.role().as_str().into(),
        },
    }))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/accounts", tag = "books",
    params(("company" = String, Path)),
    responses((status = 200, body = [AccountView]), (status = 404, body = Problem)))]
pub async fn list_accounts(
    State(platform): State<AppState>,
    door: Company<ReadBooks>,
) -> ApiResult<Json<Vec<AccountView>>> {
    let books = door
        .into_admission()
        .read(&platform, Action::AccountsList, None)
        .await?;
    Ok(Json(
        books.accounts().await?.iter().map(Into::into).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/accounts", tag = "books",
    params(("company" = String, Path)), request_body = NewAccountRequest,
    responses((status = 201, body = AccountView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_account(
    State(platform): State<AppState>,
    door: Company<WriteBooks>,
    ApiJson(body): ApiJson<NewAccountRequest>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    let books = door.into_admission().operate(&platform).await?;
    let account = NewAccount::validate(
        &body.code,
        &body.name,
        &body.account_type,
        body.parent.as_deref(),
        body.currency.as_deref(),
    )?;
    let created = books.create_account(&platform, account).await?;
    Ok((StatusCode::CREATED, Json((&created).into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EntryQuery {
    /// Return entries with ids greater than this (paging cursor of `order=asc`).
    pub after: Option<String>,
    /// Return entries with ids smaller than this (paging cursor of `order=desc`).
    pub before: Option<String>,
    /// 1 to 1000; default 100.
    pub limit: Option<u32>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// `asc` (default): oldest first; `desc`: newest first.
    pub order: Option<String>,
    /// Only entries with a posting to the account with this code.
    pub account: Option<String>,
    /// Only entries whose description or reference contains this text
    /// (ASCII letters in either case; `%` and `_` are plain characters).
    pub q: Option<String>,
    /// Only entries with a posting in this currency (ISO 4217), of an
    /// absolute amount within `min_amount` and `max_amount` when given.
    pub currency: Option<String>,
    /// A decimal string such as "100.00"; needs `currency`.
    pub min_amount: Option<String>,
    /// A decimal string such as "250.00"; needs `currency`.
    pub max_amount: Option<String>,
}

fn entry_cursor(name: &'static str, value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::unprocessable("invalid-cursor", format!("{name} must be an entry id"))
            })
        })
        .transpose()
}

fn amount_filter(q: &EntryQuery) -> ApiResult<Option<AmountFilter>> {
    let Some(code) = q.currency.as_deref() else {
        if q.min_amount.is_some() || q.max_amount.is_some() {
            return Err(ApiError::unprocessable(
                "invalid-amount-filter",
                "min_amount and max_amount need a currency",
            ));
        }
        return Ok(None);
    };
    let invalid =
        |e: wb_core::MoneyError| ApiError::unprocessable("invalid-amount-filter", e.to_string());
    let currency = Currency::parse(code).map_err(invalid)?;
    let amount = |text: Option<&str>| {
        text.map(|t| currency.parse_amount(t).map_err(invalid))
            .transpose()
    };
    Ok(Some(AmountFilter {
        currency,
        min: amount(q.min_amount.as_deref())?,
        max: amount(q.max_amount.as_deref())?,
    }))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/entries", tag = "books",
    params(("company" = String, Path), EntryQuery),
    responses((status = 200, body = EntryList), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn list_entries(
    State(platform): State<AppState>,
    door: Company<ReadBooks>,
    ApiQuery(q): ApiQuery<EntryQuery>,
) -> ApiResult<Json<EntryList>> {
    let books = door
        .into_admission()
        .read(&platform, Action::EntriesList, None)
        .await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let newest_first = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid-order",
                "order must be asc or desc",
            ))
        }
    };
    let page = EntryPage {
        after: entry_cursor("after", q.after.as_deref())?,
        before: entry_cursor("before", q.before.as_deref())?,
        limit,
        from: q
            .from
            .as_deref()
            .map(|d| parse_date("from", d))
            .transpose()?,
        to: q.to.as_deref().map(|d| parse_date("to", d)).transpose()?,
        newest_first,
        account: q.account.clone(),
        text: q.q.clone().filter(|t| !t.is_empty()),
        amount: amount_filter(&q)?,
    };
    let entries = books.entries(page).await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    let (next_after, next_before) = if newest_first {
        (None, next)
    } else {
        (next, None)
    };
    Ok(Json(EntryList {
        entries: entries.iter().map(Into::into).collect(),
        next_after,
        next_before,
    }))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/entries", tag = "books",
    params(("company" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key return the first result")),
    request_body = NewEntryRequest,
    responses((status = 201, body = EntryView), (status = 422, body = Problem)))]
pub async fn post_entry(
    State(platform): State<AppState>,
    door: Company<WriteBooks>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(body_rejection)?;
    let books = door.into_admission().operate(&platform).await?;
    let request: NewEntryRequest = parse(&headers, &body)?;
    let idempotency = idempotency(&headers, &[b"entry\n".as_slice(), &body].concat())?;
    let draft = entry_draft(request)?;
    let posted = books
        .post_entries(&platform, vec![draft], idempotency)
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
    door: Company<WriteBooks>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(body_rejection)?;
    let books = door.into_admission().operate(&platform).await?;
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
    let posted = books.post_entries(&platform, drafts, idempotency).await?;
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
    door: Company<ReadBooks>,
    Path((_, entry)): Path<(String, String)>,
) -> ApiResult<Json<EntryView>> {
    let books = door
        .into_admission()
        .read(
            &platform,
            Action::EntryRead,
            Some(format!(
                "entry:{}",
                entry.chars().take(32).collect::<String>()
            )),
        )
        .await?;
    let entry = books
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
    door: Company<WriteBooks>,
    Path((_, entry)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<EntryView>)> {
    let body = body.map_err(body_rejection)?;
    let books = door.into_admission().operate(&platform).await?;
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
        .reverse_entry(&platform, id, date, request.description)
        .await?;
    Ok((StatusCode::CREATED, Json((&reversal).into())))
}
