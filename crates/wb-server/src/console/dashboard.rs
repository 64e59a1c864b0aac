//! The company's dashboard: cash and bank balances, income against expenses
//! for the last twelve months, recent entries, how far the books are backed
//! up, and open alerts about the company.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use maud::html;
use wb_app::overview::cash_and_bank;
use wb_app::records::EntryPage;
use wb_core::money::Currency;
use wb_core::{Action, Permission};

use super::chart::{self, MonthBars};
use super::fmt;
use super::layout::Nav;
use super::page::{Page, PageResult};
use crate::auth::{AppState, ReadBooks};

pub async fn page(State(platform): State<AppState>, page: Page<ReadBooks>) -> PageResult<Response> {
    let today = platform.now().date();
    let (admission, page) = page.into_parts();
    let books = admission
        .read(&platform, Action::DashboardRead, None)
        .await?;
    let balances = books.trial_balance(today).await?;
    let cash = cash_and_bank(&balances);
    // The chart's bars, per currency, oldest month first.
    let months = books.months_results(today, 12).await?;
    let mut by_currency: BTreeMap<Currency, Vec<MonthBars>> = BTreeMap::new();
    for m in &months {
        for currency in m.income.keys().chain(m.expenses.keys()) {
            by_currency.entry(*currency).or_default();
        }
    }
    for (currency, bars) in &mut by_currency {
        *bars = months
            .iter()
            .map(|m| MonthBars {
                label: format!("{}-{:02}", m.month.year(), u8::from(m.month.month())),
                income: m.income.get(currency).copied().unwrap_or(0),
                expense: m.expenses.get(currency).copied().unwrap_or(0),
            })
            .collect();
    }
    let recent = books
        .entries(EntryPage {
            limit: 8,
            newest_first: true,
            ..EntryPage::default()
        })
        .await?;
    let backup = books.backup_position(&platform).await?;
    // Alerts are made from the audit trail: shown to those who may read it.
    let alerts = if books.allows(Permission::ReadAudit) {
        Some(books.open_alerts(&platform).await?)
    } else {
        None
    };
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
            @if let Some(alerts) = &alerts {
                section.card aria-labelledby="alerts-title" {
                    h2 #alerts-title { "Alerts" }
                    @if alerts.is_empty() {
                        p { "No open alerts." }
                    } @else {
                        ul {
                            @for a in alerts {
                                li { span class={ "badge " (a.severity) } { (a.severity) } " " (a.title) " " span.muted { "(" (a.state) ", " (fmt::when(a.last_seen)) ")" } }
                            }
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
