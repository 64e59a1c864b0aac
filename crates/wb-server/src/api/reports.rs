//! Reports: trial balance, balance sheet, income statement, account register.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use time::Date;
use utoipa::IntoParams;
use wb_app::statements::{report_period, Register};
use wb_core::Action;

use super::json::ApiQuery;
use crate::auth::{AppState, Company, ReadBooks};
use crate::dto::*;
use crate::problem::{ApiError, ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AsOf {
    /// YYYY-MM-DD; default today. Includes every entry dated on or before it.
    pub as_of: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// YYYY-MM-DD; default the first of January of `to`'s year.
    pub from: Option<String>,
    /// YYYY-MM-DD; default today.
    pub to: Option<String>,
    /// Register only: at most this many postings (default 1000, at most 100000).
    pub limit: Option<u32>,
}

fn as_of(platform: &AppState, q: &AsOf) -> ApiResult<Date> {
    match q.as_of.as_deref() {
        Some(d) => Ok(parse_date("as_of", d)?),
        None => Ok(platform.now().date()),
    }
}

fn period(platform: &AppState, q: &Period) -> ApiResult<(Date, Date)> {
    let day = |name: &str, v: Option<&str>| v.map(|d| parse_date(name, d)).transpose();
    Ok(report_period(
        platform.now().date(),
        day("from", q.from.as_deref())?,
        day("to", q.to.as_deref())?,
    )?)
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/reports/trial-balance", tag = "reports",
    params(("company" = String, Path), AsOf),
    responses((status = 200, body = TrialBalanceView), (status = 404, body = Problem)))]
pub async fn trial_balance(
    State(platform): State<AppState>,
    door: Company<ReadBooks>,
    ApiQuery(q): ApiQuery<AsOf>,
) -> ApiResult<Json<TrialBalanceView>> {
    let date = as_of(&platform, &q)?;
    let books = door
        .into_admission()
        .read(
            &platform,
            Action::ReportTrialBalance,
            Some(format!("as_of:{date}")),
        )
        .await?;
    Ok(Json((&books.trial_balance(date).await?).into()))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/reports/balance-sheet", tag = "reports",
    params(("company" = String, Path), AsOf),
    responses((status = 200, body = BalanceSheetView), (status = 404, body = Problem)))]
pub async fn balance_sheet(
    State(platform): State<AppState>,
    door: Company<ReadBooks>,
    ApiQuery(q): ApiQuery<AsOf>,
) -> ApiResult<Json<BalanceSheetView>> {
    let date = as_of(&platform, &q)?;
    let books = door
        .into_admission()
        .read(
            &platform,
            Action::ReportBalanceSheet,
            Some(format!("as_of:{date}")),
        )
        .await?;
    Ok(Json((&books.balance_sheet(date).await?).into()))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/reports/income-statement", tag = "reports",
    params(("company" = String, Path), Period),
    responses((status = 200, body = IncomeStatementView), (status = 404, body = Problem)))]
pub async fn income_statement(
    State(platform): State<AppState>,
    door: Company<ReadBooks>,
    ApiQuery(q): ApiQuery<Period>,
) -> ApiResult<Json<IncomeStatementView>> {
    let (from, to) = period(&platform, &q)?;
    let books = door
        .into_admission()
        .read(
            &platform,
            Action::ReportIncomeStatement,
            Some(format!("period:{from}..{to}")),
        )
        .await?;
    Ok(Json((&books.income_statement(from, to).await?).into()))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/accounts/{account}/register", tag = "reports",
    params(("company" = String, Path), ("account" = String, Path, description = "account code"), Period),
    responses((status = 200, body = RegisterView), (status = 404, body = Problem)))]
pub async fn register(
    State(platform): State<AppState>,
    door: Company<ReadBooks>,
    Path((_, account)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<Period>,
) -> ApiResult<Json<RegisterView>> {
    let to = match q.to.as_deref() {
        Some(d) => parse_date("to", d)?,
        None => platform.now().date(),
    };
    let from = match q.from.as_deref() {
        Some(d) => parse_date("from", d)?,
        None => wb_core::ledger::date_range().0,
    };
    if from > to {
        return Err(ApiError::unprocessable(
            "invalid-period",
            "from must not be after to",
        ));
    }
    let books = door
        .into_admission()
        .read(
            &platform,
            Action::AccountRegister,
            Some(format!("account:{account}")),
        )
        .await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let Register {
        opening,
        lines,
        closing,
    } = books.register_report(&account, from, to, limit).await?;
    Ok(Json(RegisterView {
        account,
        from: from.to_string(),
        to: to.to_string(),
        opening: amounts(&opening),
        postings: lines
            .iter()
            .map(|l| RegisterLineView {
                date: l.posting.date.to_string(),
                entry_id: l.posting.entry_id.clone(),
                description: l.posting.description.clone(),
                amount: l.posting.currency.format(i128::from(l.posting.amount)),
                currency: l.posting.currency.code().into(),
                balance: l.posting.currency.format(l.balance),
            })
            .collect(),
        closing: amounts(&closing),
    }))
}
