//! The company's dashboard: cash and bank balances, income against expenses
//! for the last twelve months, recent entries, how far the books are backed
//! up, and open alerts about the company.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use maud::html;
use time::{Date, Month};
use wb_app::records::EntryPage;
use wb_core::ledger::AccountType;
use wb_core::money::Currency;
use wb_core::{reports, Action};

use super::chart::{self, MonthBars};
use super::fmt;
use super::layout::Nav;
use super::page::{Page, PageResult};
use crate::auth::{AppState, ReadBooks};

/// Cash and bank accounts: assets named so; a chart without any shows all
/// its asset accounts.
fn is_cash_or_bank(name: &str) -> bool {
    let name = name.to_lowercase();
    ["cash", "bank", "checking", "savings", "petty"]
        .iter()
        .any(|w| name.contains(w))
}

/// The first day of the month `back` months before `today`'s.
pub fn month_start(today: Date, back: u32) -> Date {
    let index = today.year() * 12 + i32::from(u8::from(today.month())) - 1 - back as i32;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let month = Month::try_from(month0 as u8 + 1).unwrap_or(Month::January);
    Date::from_calendar_date(year, month, 1).unwrap_or(today)
}

/// The last day of `start`'s month.
pub fn month_end(start: Date) -> Date {
    let index = start.year() * 12 + i32::from(u8::from(start.month()));
    let next = Month::try_from(index.rem_euclid(12) as u8 + 1)
        .ok()
        .and_then(|m| Date::from_calendar_date(index.div_euclid(12), m, 1).ok());
    next.and_then(|d| d.previous_day()).unwrap_or(start)
}

pub async fn page(State(platform): State<AppState>, page: Page<ReadBooks>) -> PageResult<Response> {
    let today = platform.now().date();
    let (admission, page) = page.into_parts();
    let books = admission
        .read(&platform, Action::DashboardRead, None)
        .await?;
    let accounts = books.account_infos().await?;
    let balances = reports::trial_balance(today, &accounts, &books.balances_as_of(today).await?);
    let cash: Vec<_> = {
        let assets: Vec<_> = balances
            .lines
            .iter()
            .filter(|l| l.account.account_type == AccountType::Asset)
            .collect();
        let named: Vec<_> = assets
            .iter()
            .filter(|l| is_cash_or_bank(&l.account.name))
            .cloned()
            .collect();
        if named.is_empty() {
            assets
        } else {
            named
        }
    };
    // Income and expenses per month and currency, oldest month first.
    let mut by_currency: BTreeMap<Currency, Vec<MonthBars>> = BTreeMap::new();
    let mut months = Vec::new();
    for back in (0..12).rev() {
        let from = month_start(today, back);
        let to = month_end(from);
        let rows = books.movements(from, to).await?;
        let statement = reports::income_statement(from, to, &accounts, &rows);
        months.push((from, statement));
    }
    let currencies: Vec<Currency> = {
        let mut set = std::collections::BTreeSet::new();
        for (_, s) in &months {
            set.extend(s.income.totals.keys().copied());
            set.extend(s.expenses.totals.keys().copied());
        }
        set.into_iter().collect()
    };
    for currency in currencies {
        let bars = months
            .iter()
            .map(|(from, s)| MonthBars {
                label: format!("{}-{:02}", from.year(), u8::from(from.month())),
                income: s.income.totals.get(&currency).copied().unwrap_or(0),
                expense: s.expenses.totals.get(&currency).copied().unwrap_or(0),
            })
            .collect();
        by_currency.insert(currency, bars);
    }
    let recent = books
        .entries(EntryPage {
            limit: 8,
            newest_first: true,
            ..EntryPage::default()
        })
        .await?;
    let backup = books.backup_position(&platform).await?;
    let alerts = books.open_alerts(&platform).await?;
    let base = page.href("");
    let content = html! {
        div.cards {
            section.card aria-labelledby="cash-title" {
                h2 #cash-title { "Cash and bank" }
                @if cash.is_empty() {
                    p.muted { "No balances yet. " a href={ (base) "/entries/new" } { "Post an entry" } }
                } @else {
                    table {
                        caption.visually-hidden { "Balances as of " (today) }
                        tbody {
                            @for line in &cash {
                                tr {
                                    th scope="row" { a href={ (base) "/reports/register?account=" (line.account.code) } { (line.account.code) " " (line.account.name) } }
                                    td.num { (fmt::amounts(&line.balances)) }
                                }
                            }
                        }
                    }
                }
                p.hint { "As of " (today) }
            }
            section.card aria-labelledby="backup-title" {
                h2 #backup-title { "Backup" }
                @if backup.journal_seq == 0 {
                    p { "Nothing to back up yet." }
                } @else if backup.unshipped() == 0 {
                    p.balanced { "Every change is backed up." }
                } @else {
                    p { (backup.unshipped()) " recent change(s) are on their way to backup storage." }
                }
                p.hint { "Last change backed up: #" (backup.shipped_seq) " of " (backup.journal_seq) "." }
                @if let Some(at) = backup.snapshot_taken_at {
                    p.hint { "Newest snapshot: " (fmt::when(at)) }
                }
            }
            section.card aria-labelledby="alerts-title" {
                h2 #alerts-title { "Alerts" }
                @if alerts.is_empty() {
                    p { "No open alerts." }
                } @else {
                    ul {
                        @for a in &alerts {
                            li { span class={ "badge " (a.severity) } { (a.severity) } " " (a.title) " " span.muted { "(" (a.state) ", " (fmt::when(a.last_seen)) ")" } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="months-title" {
            h2 #months-title { "Income and expenses, last 12 months" }
            @if by_currency.is_empty() {
                p.muted { "No income or expenses in the last twelve months." }
            }
            @for (i, (currency, bars)) in by_currency.iter().enumerate() {
                (chart::income_expense(&format!("chart-{i}"), *currency, bars))
            }
        }
        section aria-labelledby="recent-title" {
            h2 #recent-title { "Recent entries" }
            @if recent.is_empty() {
                p.muted { "No entries yet." }
            } @else {
                table.responsive {
                    thead { tr { th scope="col" { "Date" } th scope="col" { "Description" } th scope="col" { "Entry" } } }
                    tbody {
                        @for e in &recent {
                            tr {
                                td data-label="Date" { (e.date) }
                                td data-label="Description" { (e.description) }
                                td data-label="Entry" { a href={ (base) "/entries/" (e.id) } { "#" (e.id) } }
                            }
                        }
                    }
                }
                p { a href={ (base) "/entries" } { "All entries" } }
            }
        }
    };
    Ok(page.render("Dashboard", Nav::Dashboard, content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn months_step_back_one_at_a_time(year in 1990i32..2100, month in 1u8..=12, day in 1u8..=28, back in 0u32..400) {
            let today = Date::from_calendar_date(year, Month::try_from(month).unwrap(), day).unwrap();
            let start = month_start(today, back);
            prop_assert_eq!(start.day(), 1);
            let months_apart = (today.year() - start.year()) * 12 + i32::from(u8::from(today.month())) - i32::from(u8::from(start.month()));
            prop_assert_eq!(months_apart, back as i32);
            let end = month_end(start);
            prop_assert_eq!(end.month(), start.month());
            prop_assert!(end.next_day().unwrap().day() == 1);
        }
    }
}
