//! Reports: trial balance, balance sheet, income statement and account
//! register, each with its date pickers, amounts that open the postings
//! behind them, and a CSV download of the same figures.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use time::Date;
use wb_app::statements::{report_period, Register};
use wb_core::reports::{Amounts, ReportLine, Section};
use wb_core::Action;

use super::fmt;
use super::layout::Nav;
use super::page::{Page, PageError, PageResult, View};
use crate::auth::{AppState, ReadBooks};
use crate::problem::ApiError;

/// `YYYY-MM-DD`, as the API takes it.
pub fn parse_day(name: &str, text: &str) -> Result<Date, PageError> {
    crate::dto::parse_date(name, text).map_err(|e| PageError::from_api(ApiError::from(e), None))
}

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    as_of: Option<String>,
    from: Option<String>,
    to: Option<String>,
    account: Option<String>,
    format: Option<String>,
}

fn day(name: &str, value: &Option<String>) -> PageResult<Option<Date>> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| parse_day(name, v))
        .transpose()
}

fn day_or(name: &str, value: &Option<String>, default: Date) -> PageResult<Date> {
    Ok(day(name, value)?.unwrap_or(default))
}

fn period(platform: &AppState, q: &ReportQuery) -> PageResult<(Date, Date)> {
    Ok(report_period(
        platform.now().date(),
        day("from", &q.from)?,
        day("to", &q.to)?,
    )?)
}

fn wants_csv(q: &ReportQuery) -> bool {
    q.format.as_deref() == Some("csv")
}

/// One CSV cell: quoted, and never read as a formula by a spreadsheet.
pub fn csv_cell(text: &str) -> String {
    let guarded = match text.chars().next() {
        Some('=' | '+' | '@' | '\t' | '\r') => format!("'{text}"),
        Some('-') if text.parse::<f64>().is_err() => format!("'{text}"),
        _ => text.to_string(),
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// A CSV row of fixed names (a header).
fn names(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn csv_response(file: &str, rows: Vec<Vec<String>>) -> Response {
    let mut body = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        body.push_str(&cells.join(","));
        body.push_str("\r\n");
    }
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    // The file name holds what the caller typed (an account code): quoted
    // as an attachment's name is.
    if let Ok(v) = HeaderValue::from_str(&crate::api::files::content_disposition(file)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

fn csv_lines(rows: &mut Vec<Vec<String>>, section: &str, lines: &[ReportLine]) {
    for line in lines {
        for (currency, amount) in &line.balances {
            rows.push(vec![
                section.to_string(),
                line.account.code.clone(),
                line.account.name.clone(),
                currency.code().to_string(),
                currency.format(*amount),
            ]);
        }
    }
}

/// An amount cell that opens the register behind it.
fn drill(view: &View, code: &str, from: Option<Date>, to: Date, amounts: &Amounts) -> Markup {
    let mut href = format!(
        "{}?account={}&to={to}",
        view.href("/reports/register"),
        url::form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>()
    );
    if let Some(from) = from {
        href.push_str(&format!("&from={from}"));
    }
    html! { a href=(href) { (fmt::amounts(amounts)) span.visually-hidden { " — postings of " (code) } } }
}

fn tabs(view: &View) -> Markup {
    html! {
        nav aria-label="Reports" {
            ul.inline-list {
                li { a href=(view.href("/reports/trial-balance")) { "Trial balance" } }
                li { a href=(view.href("/reports/balance-sheet")) { "Balance sheet" } }
                li { a href=(view.href("/reports/income-statement")) { "Income statement" } }
                li { a href=(view.href("/reports/register")) { "Account register" } }
            }
        }
    }
}

pub async fn index(page: Page<ReadBooks>) -> PageResult<Response> {
    let (_, view) = page.into_parts();
    let content = html! {
        (tabs(&view))
        p { "Every amount in a report opens the postings behind it; every report downloads as CSV." }
    };
    Ok(view.render("Reports", Nav::Reports, content))
}

fn as_of_form(view: &View, path: &str, as_of: Date) -> Markup {
    html! {
        form.inline method="get" action=(view.href(path)) {
            div { label for="as_of" { "As of" } input #as_of type="date" name="as_of" value=(as_of); }
            div { button.secondary type="submit" { "Show" } }
            div { a href={ (view.href(path)) "?as_of=" (as_of) "&format=csv" } download { "Download CSV" } }
        }
    }
}

fn period_form(view: &View, path: &str, from: Date, to: Date, account: Option<&str>) -> Markup {
    html! {
        form.inline method="get" action=(view.href(path)) {
            @if let Some(account) = account {
                div { label for="account" { "Account code" } input #account name="account" value=(account) required; }
            }
            div { label for="from" { "From" } input #from type="date" name="from" value=(from); }
            div { label for="to" { "To" } input #to type="date" name="to" value=(to); }
            div { button.secondary type="submit" { "Show" } }
            @let account_part = account.map(|a| format!("&account={}", url::form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>())).unwrap_or_default();
            div { a href={ (view.href(path)) "?from=" (from) "&to=" (to) (account_part) "&format=csv" } download { "Download CSV" } }
        }
    }
}

pub async fn trial_balance(
    State(platform): State<AppState>,
    page: Page<ReadBooks>,
    Query(q): Query<ReportQuery>,
) -> PageResult<Response> {
    let as_of = day_or("as_of", &q.as_of, platform.now().date())?;
    let (admission, view) = page.into_parts();
    let books = admission
        .read(
            &platform,
            Action::ReportTrialBalance,
            Some(format!("as_of:{as_of}")),
        )
        .await?;
    let report = books.trial_balance(as_of).await?;
    if wants_csv(&q) {
        let mut rows = vec![names(&["section", "code", "name", "currency", "balance"])];
        csv_lines(&mut rows, "trial balance", &report.lines);
        return Ok(csv_response(&format!("trial-balance-{as_of}.csv"), rows));
    }
    let content = html! {
        (tabs(&view))
        (as_of_form(&view, "/reports/trial-balance", as_of))
        div.table-wrap {
            table #trial-balance {
                caption { "Trial balance as of " (as_of) " (debit positive)" }
                thead { tr { th scope="col" { "Account" } th scope="col" { "Type" } th.num scope="col" { "Balance" } } }
                tbody {
                    @for line in &report.lines {
                        tr {
                            th scope="row" { (line.account.code) " " (line.account.name) }
                            td { (line.account.account_type.as_str()) }
                            td.num { (drill(&view, &line.account.code, None, as_of, &line.balances)) }
                        }
                    }
                }
                tfoot { tr { td colspan="2" { "Total (zero in every currency when the books balance)" } td.num { (fmt::amounts(&report.totals)) } } }
            }
        }
    };
    Ok(view.render("Trial balance", Nav::Reports, content))
}

fn section_table(
    view: &View,
    id: &str,
    title: &str,
    section: &Section,
    from: Option<Date>,
    to: Date,
) -> Markup {
    html! {
        table id=(id) {
            caption { (title) }
            thead { tr { th scope="col" { "Account" } th.num scope="col" { "Amount" } } }
            tbody {
                @for line in &section.lines {
                    tr {
                        th scope="row" { (line.account.code) " " (line.account.name) }
                        td.num { (drill(view, &line.account.code, from, to, &line.balances)) }
                    }
                }
            }
            tfoot { tr { td { "Total " (title.to_lowercase()) } td.num { (fmt::amounts(&section.totals)) } } }
        }
    }
}

pub async fn balance_sheet(
    State(platform): State<AppState>,
    page: Page<ReadBooks>,
    Query(q): Query<ReportQuery>,
) -> PageResult<Response> {
    let as_of = day_or("as_of", &q.as_of, platform.now().date())?;
    let (admission, view) = page.into_parts();
    let books = admission
        .read(
            &platform,
            Action::ReportBalanceSheet,
            Some(format!("as_of:{as_of}")),
        )
        .await?;
    let report = books.balance_sheet(as_of).await?;
    if wants_csv(&q) {
        let mut rows = vec![names(&["section", "code", "name", "currency", "amount"])];
        csv_lines(&mut rows, "assets", &report.assets.lines);
        csv_lines(&mut rows, "liabilities", &report.liabilities.lines);
        csv_lines(&mut rows, "equity", &report.equity.lines);
        for (currency, amount) in &report.current_earnings {
            rows.push(vec![
                "equity".into(),
                String::new(),
                "current earnings".into(),
                currency.code().into(),
                currency.format(*amount),
            ]);
        }
        return Ok(csv_response(&format!("balance-sheet-{as_of}.csv"), rows));
    }
    let content = html! {
        (tabs(&view))
        (as_of_form(&view, "/reports/balance-sheet", as_of))
        @if !report.balanced { (super::layout::notice("error", "Assets do not equal liabilities plus equity.")) }
        div.table-wrap {
            (section_table(&view, "assets", "Assets", &report.assets, None, as_of))
            (section_table(&view, "liabilities", "Liabilities", &report.liabilities, None, as_of))
            (section_table(&view, "equity", "Equity", &report.equity, None, as_of))
        }
        p { "Current earnings (income less expenses to date): " (fmt::amounts(&report.current_earnings)) }
        p { strong { "Liabilities and equity: " (fmt::amounts(&report.liabilities_and_equity)) } }
    };
    Ok(view.render("Balance sheet", Nav::Reports, content))
}

pub async fn income_statement(
    State(platform): State<AppState>,
    page: Page<ReadBooks>,
    Query(q): Query<ReportQuery>,
) -> PageResult<Response> {
    let (from, to) = period(&platform, &q)?;
    let (admission, view) = page.into_parts();
    let books = admission
        .read(
            &platform,
            Action::ReportIncomeStatement,
            Some(format!("period:{from}..{to}")),
        )
        .await?;
    let report = books.income_statement(from, to).await?;
    if wants_csv(&q) {
        let mut rows = vec![names(&["section", "code", "name", "currency", "amount"])];
        csv_lines(&mut rows, "income", &report.income.lines);
        csv_lines(&mut rows, "expenses", &report.expenses.lines);
        for (currency, amount) in &report.net_income {
            rows.push(vec![
                "net income".into(),
                String::new(),
                String::new(),
                currency.code().into(),
                currency.format(*amount),
            ]);
        }
        return Ok(csv_response(
            &format!("income-statement-{from}-{to}.csv"),
            rows,
        ));
    }
    let content = html! {
        (tabs(&view))
        (period_form(&view, "/reports/income-statement", from, to, None))
        div.table-wrap {
            (section_table(&view, "income", "Income", &report.income, Some(from), to))
            (section_table(&view, "expenses", "Expenses", &report.expenses, Some(from), to))
        }
        p { strong { "Net income: " (fmt::amounts(&report.net_income)) } }
    };
    Ok(view.render("Income statement", Nav::Reports, content))
}

/// Postings shown on one register page (the CSV has them all, up to the API's cap).
const REGISTER_LIMIT: u32 = 1000;
const REGISTER_CSV_LIMIT: u32 = 100_000;

pub async fn register(
    State(platform): State<AppState>,
    page: Page<ReadBooks>,
    Query(q): Query<ReportQuery>,
) -> PageResult<Response> {
    let to = day_or("to", &q.to, platform.now().date())?;
    let from = day_or("from", &q.from, wb_core::ledger::date_range().0)?;
    let account = q
        .account
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.chars().take(32).collect::<String>());
    let (admission, view) = page.into_parts();
    let Some(account) = account else {
        let content = html! {
            (tabs(&view))
            (period_form(&view, "/reports/register", from, to, Some("")))
            p { "Choose an account to see its postings." }
        };
        return Ok(view.render("Account register", Nav::Reports, content));
    };
    let books = admission
        .read(
            &platform,
            Action::AccountRegister,
            Some(format!("account:{account}")),
        )
        .await?;
    let limit = if wants_csv(&q) {
        REGISTER_CSV_LIMIT
    } else {
        REGISTER_LIMIT
    };
    // One more than shown: whether the list was cut.
    let Register {
        opening,
        mut lines,
        closing,
    } = books.register_report(&account, from, to, limit + 1).await?;
    let cut = lines.len() > limit as usize;
    lines.truncate(limit as usize);
    let mut shown = opening.clone();
    for line in &lines {
        shown.insert(line.posting.currency, line.balance);
    }
    if wants_csv(&q) {
        let mut rows = vec![names(&[
            "date",
            "entry",
            "description",
            "currency",
            "amount",
            "balance",
        ])];
        for l in &lines {
            rows.push(vec![
                l.posting.date.to_string(),
                l.posting.entry_id.clone(),
                l.posting.description.clone(),
                l.posting.currency.code().into(),
                l.posting.currency.format(i128::from(l.posting.amount)),
                l.posting.currency.format(l.balance),
            ]);
        }
        return Ok(csv_response(
            &format!("register-{account}-{from}-{to}.csv"),
            rows,
        ));
    }
    let content = html! {
        (tabs(&view))
        (period_form(&view, "/reports/register", from, to, Some(&account)))
        p { "Opening balance: " (fmt::amounts(&opening)) }
        div.table-wrap {
            table.responsive #register {
                caption { "Postings to " (account) ", " (from) " to " (to) }
                thead { tr { th scope="col" { "Date" } th scope="col" { "Entry" } th scope="col" { "Description" } th.num scope="col" { "Amount" } th.num scope="col" { "Balance" } } }
                tbody {
                    @for l in &lines {
                        tr {
                            td data-label="Date" { (l.posting.date) }
                            td data-label="Entry" { a href=(view.href(&format!("/entries/{}", l.posting.entry_id))) { "#" (l.posting.entry_id) } }
                            td data-label="Description" { (l.posting.description) }
                            td.num data-label="Amount" { (fmt::money(l.posting.currency, i128::from(l.posting.amount))) }
                            td.num data-label="Balance" { (fmt::money(l.posting.currency, l.balance)) }
                        }
                    }
                }
            }
        }
        @if cut {
            p { "Balance after the last posting shown: " (fmt::amounts(&shown)) }
        } @else {
            p { "Closing balance: " (fmt::amounts(&closing)) }
        }
        @if cut {
            p.hint { "The first " (REGISTER_LIMIT) " postings are shown; narrow the period or download the CSV for all of them." }
        }
    };
    Ok(view.render("Account register", Nav::Reports, content))
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_never_become_formulas() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_cell("-12.50"), "\"-12.50\"");
        assert_eq!(csv_cell("-cmd"), "\"'-cmd\"");
        assert_eq!(csv_cell("Rent"), "\"Rent\"");
    }
}
