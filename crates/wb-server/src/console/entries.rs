//! Entries: the list (newest first, keyset pages, filters), the new-entry
//! form, an entry's page (postings, attachments, reversal) and uploads.

use std::collections::BTreeMap;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use wb_app::records::{AmountFilter, Entry, EntryPage, FilePage, Idempotency};
use wb_core::ledger::{AccountRules, LedgerError};
use wb_core::money::Currency;
use wb_core::{Action, EntryDraft, PostingDraft};

use super::fmt;
use super::form::Form;
use super::layout::{self, Nav};
use super::page::{field_error, see_other, Page, PageError, PageResult, View};
use super::reports::parse_day;
use crate::api::files::{store_upload, FileSettings, Upload};
use crate::auth::{AppState, ReadBooks, WriteBooks, WriteFiles};
use crate::problem::ApiError;

/// Entries per page of the list.
pub const PAGE_SIZE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    from: Option<String>,
    to: Option<String>,
    account: Option<String>,
    q: Option<String>,
    currency: Option<String>,
    min: Option<String>,
    max: Option<String>,
    before: Option<String>,
    posted: Option<String>,
}

fn nonblank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn bad_filter(detail: impl Into<String>) -> PageError {
    PageError::from_api(ApiError::unprocessable("invalid-filter", detail), None)
}

/// The store's query for the list's filters.
fn entry_page(q: &ListQuery) -> PageResult<EntryPage> {
    let day = |name: &str, v: &Option<String>| nonblank(v).map(|d| parse_day(name, d)).transpose();
    let amount = match (nonblank(&q.min), nonblank(&q.max)) {
        (None, None) => None,
        (min, max) => {
            let currency = Currency::parse(nonblank(&q.currency).unwrap_or(""))
                .map_err(|_| bad_filter("choose the currency the amounts are in"))?;
            let parse = |v: Option<&str>| {
                v.map(|t| currency.parse_amount(t).map(i64::abs))
                    .transpose()
                    .map_err(|e| bad_filter(format!("amount: {e}")))
            };
            Some(AmountFilter {
                currency,
                min: parse(min)?,
                max: parse(max)?,
            })
        }
    };
    let before = nonblank(&q.before)
        .map(|b| {
            b.parse::<i64>()
                .map_err(|_| bad_filter("before must be an entry number"))
        })
        .transpose()?;
    Ok(EntryPage {
        before,
        // One more than a page: whether there is an older page.
        limit: PAGE_SIZE + 1,
        from: day("from", &q.from)?,
        to: day("to", &q.to)?,
        newest_first: true,
        account: nonblank(&q.account).map(str::to_string),
        text: nonblank(&q.q).map(|t| t.chars().take(200).collect()),
        amount,
        ..EntryPage::default()
    })
}

/// An entry's size: what its debits add up to, per currency.
fn entry_total(entry: &Entry) -> BTreeMap<Currency, i128> {
    let mut total = BTreeMap::new();
    for p in &entry.postings {
        if p.amount > 0 {
            *total.entry(p.currency).or_insert(0i128) += i128::from(p.amount);
        }
    }
    total
}

fn postings_table(view: &View, entry: &Entry) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Account" } th.num scope="col" { "Debit" } th.num scope="col" { "Credit" } } }
            tbody {
                @for p in &entry.postings {
                    tr {
                        td { a href={ (view.href("/reports/register")) "?account=" (p.account) } { (p.account) } }
                        td.num { @if p.amount > 0 { (fmt::money(p.currency, i128::from(p.amount))) } }
                        td.num { @if p.amount < 0 { (fmt::money(p.currency, -i128::from(p.amount))) } }
                    }
                }
            }
        }
    }
}

fn filter_form(view: &View, q: &ListQuery) -> Markup {
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    html! {
        // With htmx, filtering and paging swap only the results (and keep
        // the address bar in step); without it, they are plain GETs.
        form.inline #search role="search" method="get" action=(view.href("/entries"))
            hx-get=(view.href("/entries")) hx-target="#entries-results" hx-select="#entries-results"
            hx-swap="outerHTML" hx-push-url="true" {
            div { label for="q" { "Text" } input #q type="search" name="q" value=(v(&q.q)) placeholder="description or reference"; }
            div { label for="account" { "Account code" } input #account name="account" value=(v(&q.account)) list="account-codes" size="10"; }
            div { label for="from" { "From" } input #from type="date" name="from" value=(v(&q.from)); }
            div { label for="to" { "To" } input #to type="date" name="to" value=(v(&q.to)); }
            div { label for="min" { "Amount from" } input #min name="min" inputmode="decimal" size="8" value=(v(&q.min)); }
            div { label for="max" { "Amount to" } input #max name="max" inputmode="decimal" size="8" value=(v(&q.max)); }
            div { label for="currency" { "Currency" } input #currency name="currency" size="4" maxlength="3" value=(v(&q.currency)); }
            div { button type="submit" { "Filter" } }
            div { a href=(view.href("/entries")) { "Clear" } }
        }
    }
}

/// The list's query string for another page, keeping the filters.
fn page_link(view: &View, q: &ListQuery, before: Option<i64>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("q", &q.q),
        ("account", &q.account),
        ("from", &q.from),
        ("to", &q.to),
        ("min", &q.min),
        ("max", &q.max),
        ("currency", &q.currency),
    ] {
        if let Some(v) = nonblank(value) {
            query.append_pair(name, v);
        }
    }
    if let Some(b) = before {
        query.append_pair("before", &b.to_string());
    }
    format!("{}?{}", view.href("/entries"), query.finish())
}

pub async fn list(
    State(platform): State<AppState>,
    page: Page<ReadBooks>,
    Query(q): Query<ListQuery>,
) -> PageResult<Response> {
    let query = entry_page(&q)?;
    let (admission, view) = page.into_parts();
    let books = admission.read(&platform, Action::EntriesList, None).await?;
    let mut entries = books.entries(query).await?;
    let more = entries.len() > PAGE_SIZE as usize;
    entries.truncate(PAGE_SIZE as usize);
    let older = more.then(|| entries.last().map(|e| e.id)).flatten();
    let accounts = books.accounts().await?;
    let content = html! {
        @if let Some(id) = nonblank(&q.posted).and_then(|p| p.parse::<i64>().ok()) {
            (layout::notice("success", &format!("Entry #{id} posted.")))
        }
        p { a.button href=(view.href("/entries/new")) { "New entry" } }
        (filter_form(&view, &q))
        datalist #account-codes {
            @for a in &accounts { option value=(a.code) { (a.name) } }
        }
        div #entries-results aria-live="polite" {
        @if entries.is_empty() {
            p { "No entries match." }
        } @else {
            div.table-wrap {
                table.responsive #entries {
                    caption.visually-hidden { "Entries, newest first" }
                    thead { tr {
                        th scope="col" { "Entry" } th scope="col" { "Date" } th scope="col" { "Description" }
                        th scope="col" { "Reference" } th.num scope="col" { "Amount" } th scope="col" { "Postings" }
                    } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td data-label="Entry" { a href=(view.href(&format!("/entries/{}", e.id))) { "#" (e.id) } }
                                td data-label="Date" { (e.date) }
                                td data-label="Description" {
                                    (e.description)
                                    @if e.reverses.is_some() { " " span.badge { "reversal" } }
                                    @if e.reversed_by.is_some() { " " span.badge { "reversed" } }
                                }
                                td data-label="Reference" { (e.reference.as_deref().unwrap_or("")) }
                                td.num data-label="Amount" { (fmt::amounts(&entry_total(e))) }
                                td data-label="Postings" {
                                    details.postings {
                                        summary { (e.postings.len()) " postings" span.visually-hidden { " of entry " (e.id) } }
                                        (postings_table(&view, e))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // Only the pager's links are boosted: an entry's link opens its page.
        nav.pager aria-label="Pages" hx-boost="true" hx-target="#entries-results"
            hx-select="#entries-results" hx-swap="outerHTML" {
            @if q.before.is_some() { a href=(page_link(&view, &q, None)) { "Newest" } }
            @if let Some(older) = older { a rel="next" href=(page_link(&view, &q, Some(older))) { "Older entries" } }
        }
        }
    };
    Ok(view.render("Entries", Nav::Entries, content))
}

/// The form's lines: (account, debit, credit, currency).
type Line = (String, String, String, String);

/// Errors of the new-entry form, by field (`date`, `description`,
/// `reference`, `lines`, `account-N`, `amount-N`).
type FieldErrors = BTreeMap<String, String>;

fn entry_form(
    view: &View,
    accounts: &[wb_app::records::Account],
    values: &Form,
    lines: &[Line],
    errors: &FieldErrors,
    idempotency_key: &str,
    today: &str,
) -> Markup {
    let v = |name: &str, default: &str| values.get(name).unwrap_or(default).to_string();
    let err = |name: &str| errors.get(name).map(String::as_str);
    let described = |name: &str| errors.contains_key(name).then(|| format!("{name}-error"));
    html! {
        @if !errors.is_empty() {
            (layout::notice("error", "The entry was not posted: see the marked fields."))
        }
        form.stack.entry-form method="post" action=(view.href("/entries")) data-entry-form {
            (view.csrf())
            input type="hidden" name="idempotency_key" value=(idempotency_key);
            div {
                label for="date" { "Date" }
                input #date type="date" name="date" required value=(v("date", today)) aria-describedby=[described("date")];
                (field_error("date", err("date")))
            }
            div {
                label for="description" { "Description" }
                input #description name="description" required maxlength="500" value=(v("description", "")) aria-describedby=[described("description")];
                (field_error("description", err("description")))
            }
            div {
                label for="reference" { "Reference (optional)" }
                input #reference name="reference" maxlength="100" value=(v("reference", "")) aria-describedby=[described("reference")];
                (field_error("reference", err("reference")))
            }
            datalist #account-codes {
                @for a in accounts { option value=(a.code) { (a.code) " " (a.name) } }
            }
            table.lines {
                caption { "Postings" }
                thead { tr { th scope="col" { "Account" } th.num scope="col" { "Debit" } th.num scope="col" { "Credit" } th scope="col" { "Currency" } } }
                tbody {
                    @for (i, (account, debit, credit, currency)) in lines.iter().enumerate() {
                        tr data-line {
                            td {
                                label.visually-hidden for={ "account-" (i) } data-for="account" { "Account, line " (i + 1) }
                                input id={ "account-" (i) } name="account" list="account-codes" value=(account) autocomplete="off"
                                    aria-describedby=[described(&format!("account-{i}"))];
                                (field_error(&format!("account-{i}"), err(&format!("account-{i}"))))
                            }
                            td.num {
                                label.visually-hidden for={ "debit-" (i) } data-for="debit" { "Debit, line " (i + 1) }
                                input id={ "debit-" (i) } name="debit" inputmode="decimal" value=(debit)
                                    aria-describedby=[described(&format!("amount-{i}"))];
                                (field_error(&format!("amount-{i}"), err(&format!("amount-{i}"))))
                            }
                            td.num {
                                label.visually-hidden for={ "credit-" (i) } data-for="credit" { "Credit, line " (i + 1) }
                                input id={ "credit-" (i) } name="credit" inputmode="decimal" value=(credit);
                            }
                            td {
                                label.visually-hidden for={ "currency-" (i) } data-for="currency" { "Currency, line " (i + 1) }
                                input id={ "currency-" (i) } name="currency" maxlength="3" size="4" value=(currency);
                            }
                        }
                    }
                }
            }
            p #balance-status aria-live="polite" {
                output data-balance { "" }
                (field_error("lines", err("lines")))
            }
            div.actions {
                button.secondary type="button" data-add-line hidden { "Add line" }
                " "
                button.secondary type="submit" name="more" value="1" formnovalidate { "More lines" }
                " "
                button type="submit" { "Post entry" }
            }
        }
    }
}

/// The currency new lines start with: the newest entry's, else EUR.
fn default_currency(recent: &[Entry]) -> String {
    recent
        .first()
        .and_then(|e| e.postings.first())
        .map(|p| p.currency.code().to_string())
        .unwrap_or_else(|| "EUR".into())
}

pub async fn new_form(
    State(platform): State<AppState>,
    page: Page<WriteBooks>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    // The form shows the chart (its autocomplete) and starts new lines in
    // the newest entry's currency: a recorded read.
    let books = admission
        .read(&platform, Action::AccountsList, Some("entry-form".into()))
        .await?;
    let accounts = books.accounts().await?;
    let recent = books
        .entries(EntryPage {
            limit: 1,
            newest_first: true,
            ..EntryPage::default()
        })
        .await?;
    let currency = default_currency(&recent);
    let lines: Vec<Line> = (0..4)
        .map(|_| {
            (
                String::new(),
                String::new(),
                String::new(),
                currency.clone(),
            )
        })
        .collect();
    let key = uuid::Uuid::new_v4().to_string();
    let today = platform.now().date().to_string();
    let content = entry_form(
        &view,
        &accounts,
        &Form::default(),
        &lines,
        &FieldErrors::new(),
        &key,
        &today,
    );
    Ok(view.render("New entry", Nav::NewEntry, content))
}

/// The form's lines, and the postings of the non-blank ones with the form
/// line each came from.
fn read_lines(form: &Form) -> (Vec<Line>, Vec<(usize, PostingDraft)>, FieldErrors) {
    let accounts = form.all("account");
    let debits = form.all("debit");
    let credits = form.all("credit");
    let currencies = form.all("currency");
    let n = accounts
        .len()
        .max(debits.len())
        .max(credits.len())
        .min(wb_core::ledger::MAX_POSTINGS + 8);
    let at = |v: &[&str], i: usize| v.get(i).copied().unwrap_or("").to_string();
    let mut lines = Vec::new();
    let mut postings = Vec::new();
    let mut errors = FieldErrors::new();
    for i in 0..n {
        let line: Line = (
            at(&accounts, i),
            at(&debits, i),
            at(&credits, i),
            at(&currencies, i).to_uppercase(),
        );
        let (account, debit, credit, currency) = &line;
        if !(account.is_empty() && debit.is_empty() && credit.is_empty()) {
            let amount = match (debit.is_empty(), credit.is_empty()) {
                // The column gives the side: a sign in it would contradict it.
                _ if debit.starts_with(['-', '+']) || credit.starts_with(['-', '+']) => {
                    errors.insert(
                        format!("amount-{i}"),
                        "Enter the amount without a sign: the column says debit or credit.".into(),
                    );
                    None
                }
                (false, true) => Some(debit.clone()),
                (true, false) => Some(format!("-{credit}")),
                (true, true) => {
                    errors.insert(format!("amount-{i}"), "Enter a debit or a credit.".into());
                    None
                }
                (false, false) => {
                    errors.insert(
                        format!("amount-{i}"),
                        "Enter a debit or a credit, not both.".into(),
                    );
                    None
                }
            };
            if let Some(amount) = amount {
                postings.push((
                    i,
                    PostingDraft {
                        account: account.clone(),
                        amount,
                        currency: currency.clone(),
                    },
                ));
            }
        }
        lines.push(line);
    }
    (lines, postings, errors)
}

/// Where a ledger rule's refusal is shown.
fn field_of(error: &LedgerError, line_of: &[usize]) -> String {
    let line = |index: &usize| line_of.get(*index).copied().unwrap_or(0);
    match error {
        LedgerError::DateOutOfRange(_) => "date".into(),
        LedgerError::InvalidDescription => "description".into(),
        LedgerError::InvalidReference => "reference".into(),
        LedgerError::UnknownAccount { index, .. }
        | LedgerError::CurrencyNotAllowed { index, .. } => {
            format!("account-{}", line(index))
        }
        LedgerError::Money { index, .. } | LedgerError::ZeroAmount { index } => {
            format!("amount-{}", line(index))
        }
        _ => "lines".into(),
    }
}

/// The ledger's message without the posting number (the field shows which line).
fn message_of(error: &LedgerError) -> String {
    let text = error.to_string();
    let message = match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("posting ") => rest,
        _ => text.as_str(),
    };
    let mut chars = message.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

pub async fn post(
    State(platform): State<AppState>,
    page: Page<WriteBooks>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let books = admission.operate(&platform).await?;
    let accounts = books.accounts().await?;
    let (mut lines, postings, mut errors) = read_lines(&form);
    let today = platform.now().date().to_string();
    let key = form
        .get("idempotency_key")
        .filter(|k| k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let rerender = |lines: &[Line], errors: &FieldErrors, status: StatusCode| {
        let content = entry_form(&view, &accounts, &form, lines, errors, &key, &today);
        (status, view.render("New entry", Nav::NewEntry, content)).into_response()
    };
    if form.checked("more") {
        let currency = lines
            .last()
            .map(|l| l.3.clone())
            .unwrap_or_else(|| "EUR".into());
        for _ in 0..4 {
            lines.push((
                String::new(),
                String::new(),
                String::new(),
                currency.clone(),
            ));
        }
        return Ok(rerender(&lines, &FieldErrors::new(), StatusCode::OK));
    }
    let date = match parse_day("date", form.get("date").unwrap_or("")) {
        Ok(d) => Some(d),
        Err(_) => {
            errors.insert("date".into(), "Enter a date as YYYY-MM-DD.".into());
            None
        }
    };
    let line_of: Vec<usize> = postings.iter().map(|(i, _)| *i).collect();
    let draft = date.map(|date| EntryDraft {
        date,
        description: form.get("description").unwrap_or("").to_string(),
        reference: form.get("reference").map(str::to_string),
        postings: postings.into_iter().map(|(_, p)| p).collect(),
    });
    let rules: BTreeMap<&str, AccountRules> = accounts
        .iter()
        .map(|a| {
            (
                a.code.as_str(),
                AccountRules {
                    currency: a.currency,
                },
            )
        })
        .collect();
    if let Some(draft) = &draft {
        if errors.is_empty() {
            if let Err(e) = draft.validate(|code| rules.get(code).copied()) {
                errors.insert(field_of(&e, &line_of), message_of(&e));
            }
        }
    }
    let Some(draft) = draft.filter(|_| errors.is_empty()) else {
        return Ok(rerender(&lines, &errors, StatusCode::UNPROCESSABLE_ENTITY));
    };
    // The same key for the same form: a second click replays the first
    // post; the same key with other content (a form brought back and
    // edited) is refused, never answered with the first entry.
    let idempotency = Idempotency {
        request_hash: wb_crypto::sha256_hex(entry_fingerprint(&draft).as_bytes()),
        key: format!("console:{key}"),
    };
    match books
        .post_entries(&platform, vec![draft], Some(idempotency))
        .await
    {
        Ok(posted) => {
            let id = posted.entries.first().map(|e| e.id).unwrap_or_default();
            Ok(see_other(&format!("{}?posted={id}", view.href("/entries"))))
        }
        Err(e) => {
            let e = ApiError::from(e);
            errors.insert("lines".into(), e.detail.clone());
            let status = if e.status.is_server_error() {
                e.status
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(rerender(&lines, &errors, status))
        }
    }
}

/// What makes two posts of the form the same post.
fn entry_fingerprint(draft: &EntryDraft) -> String {
    let mut text = format!(
        "console-entry\n{}\n{}\n{}\n",
        draft.date,
        draft.description,
        draft.reference.as_deref().unwrap_or("")
    );
    for p in &draft.postings {
        text.push_str(&format!("{}\t{}\t{}\n", p.account, p.amount, p.currency));
    }
    text
}

fn entry_id(text: &str) -> PageResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError::not_found("entry"))
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    reversed: Option<String>,
    uploaded: Option<String>,
}

pub async fn detail(
    State(platform): State<AppState>,
    page: Page<ReadBooks>,
    Path((_, entry)): Path<(String, String)>,
    Query(q): Query<DetailQuery>,
) -> PageResult<Response> {
    let id = entry_id(&entry)?;
    let (admission, view) = page.into_parts();
    let books = admission
        .read(&platform, Action::EntryRead, Some(format!("entry:{id}")))
        .await?;
    let entry = books
        .entry(id)
        .await?
        .ok_or_else(|| PageError::not_found("entry"))?;
    // Files are their own permission: a staff grant for the books alone
    // does not show them, not even their names.
    let can_read_files = books.allows(wb_core::Permission::ReadFiles);
    let files = if can_read_files {
        books
            .files(FilePage {
                after: None,
                limit: 100,
                entry_id: Some(id),
            })
            .await?
    } else {
        Vec::new()
    };
    let can_write = books.allows(wb_core::Permission::WriteBooks);
    let can_attach = books.allows(wb_core::Permission::WriteFiles);
    let content = html! {
        @if q.reversed.is_some() { (layout::notice("success", "The reversal was posted.")) }
        @if q.uploaded.is_some() { (layout::notice("success", "The file was attached.")) }
        dl.facts {
            dt { "Date" } dd { (entry.date) }
            dt { "Description" } dd { (entry.description) }
            @if let Some(r) = &entry.reference { dt { "Reference" } dd { (r) } }
            dt { "Posted" } dd { (fmt::when(entry.created_at)) " by " (entry.created_by) }
            @if let Some(original) = entry.reverses {
                dt { "Reverses" } dd { a href=(view.href(&format!("/entries/{original}"))) { "entry #" (original) } }
            }
            @if let Some(reversal) = entry.reversed_by {
                dt { "Reversed by" } dd { a href=(view.href(&format!("/entries/{reversal}"))) { "entry #" (reversal) } }
            }
        }
        h2 { "Postings" }
        (postings_table(&view, &entry))
        h2 { "Attachments" }
        @if !can_read_files {
            p.muted { "Your access does not include attachments." }
        } @else if files.is_empty() {
            p.muted { "No files attached." }
        } @else {
            ul {
                @for f in &files {
                    li { a href=(view.href(&format!("/files/{}", f.id))) download { (f.name) } " " span.muted { "(" (f.size) " bytes, " (f.content_type) ")" } }
                }
            }
        }
        @if can_attach {
            form.inline method="post" enctype="multipart/form-data"
                action={ (view.href(&format!("/entries/{id}/files"))) "?_csrf=" (view.chrome().csrf) } {
                div { label for="file" { "Attach a file" } input #file type="file" name="file" required; }
                div { button type="submit" { "Upload" } }
            }
        }
        @if can_write {
            @if entry.reversed_by.is_none() && entry.reverses.is_none() {
                h2 { "Reverse" }
                form.inline method="post" action=(view.href(&format!("/entries/{id}/reverse"))) {
                    (view.csrf())
                    div { label for="reverse-date" { "Reversal date" } input #reverse-date type="date" name="date" value=(platform.now().date()); }
                    div { button.secondary type="submit" { "Reverse this entry…" } }
                }
            }
        }
        p { a href=(view.href("/entries")) { "All entries" } }
    };
    Ok(view.render(&format!("Entry #{id}"), Nav::Entries, content))
}

/// Reversal asks once more before it posts: the first POST shows what will
/// happen, the second (with `confirm`) does it. No script needed.
pub async fn reverse(
    State(platform): State<AppState>,
    page: Page<WriteBooks>,
    Path((_, entry)): Path<(String, String)>,
    form: Form,
) -> PageResult<Response> {
    let id = entry_id(&entry)?;
    let date = match form.get("date") {
        Some(d) => parse_day("date", d)?,
        None => platform.now().date(),
    };
    let (admission, view) = page.into_parts();
    if !form.checked("confirm") {
        let content = html! {
            p { "Reversing posts a new entry dated " strong { (date) } " with every posting of entry #" (id) " turned around. The original entry stays, marked as reversed." }
            form.inline method="post" action=(view.href(&format!("/entries/{id}/reverse"))) {
                (view.csrf())
                input type="hidden" name="date" value=(date);
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" { "Yes, reverse entry #" (id) }
                " "
                a href=(view.href(&format!("/entries/{id}"))) { "Cancel" }
            }
        };
        return Ok(view.render("Reverse entry", Nav::Entries, content));
    }
    let books = admission.operate(&platform).await?;
    let reversal = books.reverse_entry(&platform, id, date, None).await?;
    Ok(see_other(&format!(
        "{}?reversed={}",
        view.href(&format!("/entries/{}", reversal.id)),
        id
    )))
}

/// An attachment from the entry page (multipart: the `file` field).
pub async fn upload(
    State(platform): State<AppState>,
    Extension(settings): Extension<FileSettings>,
    page: Page<WriteFiles>,
    Path((_, entry)): Path<(String, String)>,
    mut multipart: Multipart,
) -> PageResult<Response> {
    let id = entry_id(&entry)?;
    let (admission, view) = page.into_parts();
    let books = admission.operate(&platform).await?;
    let entry = id.to_string();
    let bad = |detail: &str| {
        PageError::from_api(
            ApiError::unprocessable("invalid-upload", detail.to_string()),
            None,
        )
    };
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|_| bad("the upload could not be read"))?
            .ok_or_else(|| bad("choose a file to attach"))?;
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("choose a file to attach"))?;
        let content_type = field.content_type().map(str::to_string);
        let upload = Upload {
            name,
            content_type: content_type.as_deref(),
            entry: Some(&entry),
            declared: None,
        };
        store_upload(&platform, &books, settings, upload, field).await?;
        return Ok(see_other(&format!(
            "{}?uploaded=1",
            view.href(&format!("/entries/{id}"))
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn debits_are_positive_credits_negative_and_blank_lines_drop_out() {
        let f = form(&[
            ("account", "1000"),
            ("debit", "10.00"),
            ("credit", ""),
            ("currency", "eur"),
            ("account", ""),
            ("debit", ""),
            ("credit", ""),
            ("currency", "EUR"),
            ("account", "4000"),
            ("debit", ""),
            ("credit", "10.00"),
            ("currency", "EUR"),
        ]);
        let (lines, postings, errors) = read_lines(&f);
        assert_eq!(lines.len(), 3, "every line comes back to the form");
        assert!(errors.is_empty());
        let got: Vec<(usize, &str, &str)> = postings
            .iter()
            .map(|(i, p)| (*i, p.amount.as_str(), p.currency.as_str()))
            .collect();
        assert_eq!(got, vec![(0, "10.00", "EUR"), (2, "-10.00", "EUR")]);
    }

    #[test]
    fn a_line_with_both_or_neither_amount_is_refused_at_its_field() {
        let f = form(&[
            ("account", "1000"),
            ("debit", "1"),
            ("credit", "1"),
            ("currency", "EUR"),
            ("account", "4000"),
            ("debit", ""),
            ("credit", ""),
            ("currency", "EUR"),
        ]);
        let (_, postings, errors) = read_lines(&f);
        assert!(postings.is_empty());
        assert!(errors["amount-0"].contains("not both"));
        assert!(errors["amount-1"].contains("debit or a credit"));
        let signed = form(&[
            ("account", "1000"),
            ("debit", ""),
            ("credit", "-2"),
            ("currency", "EUR"),
        ]);
        let (_, postings, errors) = read_lines(&signed);
        assert!(
            postings.is_empty(),
            "a signed credit is refused, never turned into a debit"
        );
        assert!(errors["amount-0"].contains("without a sign"));
    }

    #[test]
    fn ledger_refusals_land_on_the_form_line_they_concern() {
        // Postings 0 and 1 came from form lines 0 and 3 (1 and 2 were blank).
        let line_of = [0, 3];
        let unknown = LedgerError::UnknownAccount {
            index: 1,
            code: "9999".into(),
        };
        assert_eq!(field_of(&unknown, &line_of), "account-3");
        assert_eq!(message_of(&unknown), "Unknown account \"9999\"");
        assert_eq!(
            field_of(&LedgerError::ZeroAmount { index: 0 }, &line_of),
            "amount-0"
        );
        assert_eq!(
            field_of(&LedgerError::InvalidDescription, &line_of),
            "description"
        );
        assert_eq!(field_of(&LedgerError::TooFewPostings, &line_of), "lines");
        assert_eq!(
            message_of(&LedgerError::TooFewPostings),
            "An entry needs at least two postings"
        );
    }

    #[test]
    fn the_same_form_has_the_same_fingerprint_and_an_edited_one_another() {
        let draft = |amount: &str| EntryDraft {
            date: time::macros::date!(2026 - 12 - 03),
            description: "Rent".into(),
            reference: None,
            postings: vec![PostingDraft {
                account: "1000".into(),
                amount: amount.into(),
                currency: "EUR".into(),
            }],
        };
        assert_eq!(
            entry_fingerprint(&draft("5")),
            entry_fingerprint(&draft("5"))
        );
        assert_ne!(
            entry_fingerprint(&draft("5")),
            entry_fingerprint(&draft("50"))
        );
    }
}
