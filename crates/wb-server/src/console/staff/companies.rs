//! Support's company search and company basics, sales' summary counts, and
//! the staff console's home: the views of `wb-app/src/staff_views.rs`, as
//! `GET /api/v1/staff/companies[/{c}[/summary]]` answer them (each read on
//! record as `staff.view`, a role that may not refused as `staff.refused`).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use wb_core::staff::StaffView;

use super::{StaffNav, StaffPage, StaffResult};
use crate::auth::AppState;
use crate::console::fmt;
use crate::console::page::see_other;

pub async fn home(page: StaffPage) -> Response {
    let content = html! {
        p { "Signed in as " (page.staff.email) ". What you may see depends on your roles; everything you look at is recorded." }
        ul {
            @if page.opens(StaffView::CompanyBasics) {
                li { a href="/staff/companies" { "Find a company" } " by name or member email." }
            }
            @if page.opens(StaffView::RequestGrants) {
                li { a href="/staff/grants" { "Ask for access" } " to a company's content, and see your requests." }
            }
            @if page.opens(StaffView::ApproveGrants) {
                li { a href="/staff/approvals" { "Approve or deny" } " other staff members' access requests." }
            }
            @if page.opens(StaffView::Alerts) {
                li { a href="/staff/alerts" { "Triage alerts" } "." }
            }
        }
        @if page.opens(StaffView::CompanySummary) {
            h2 { "Company summary" }
            form.inline method="get" action="/staff/summary" {
                div { label for="summary-company" { "Company id" } input #summary-company name="company" required maxlength="64"; }
                div { button type="submit" { "Show summary" } }
            }
        }
    };
    page.render("Staff console", StaffNav::Home, content)
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    /// From 0 (text, so a hand-edited address is a page, not a bare 400).
    page: Option<String>,
}

pub async fn search(
    State(platform): State<AppState>,
    page: StaffPage,
    Query(q): Query<SearchQuery>,
) -> StaffResult {
    let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let number = q
        .page
        .as_deref()
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0)
        .min(10_000);
    let found = platform
        .staff_find_companies(&page.staff, text, number)
        .await?;
    let more = found.len() >= wb_app::staff_views::COMPANIES_PER_PAGE;
    let content = html! {
        form.inline role="search" method="get" action="/staff/companies" {
            div {
                label for="q" { "Company name or member email" }
                input #q type="search" name="q" maxlength="200" value=(text.unwrap_or(""));
            }
            div { button type="submit" { "Search" } }
        }
        @if found.is_empty() {
            p { "No company matches." }
        } @else {
            div.table-wrap {
                table #companies {
                    caption.visually-hidden { "Companies found" }
                    thead { tr { th scope="col" { "Company" } th scope="col" { "Status" } th scope="col" { "Created" } } }
                    tbody {
                        @for c in &found {
                            tr {
                                td { a href={ "/staff/companies/" (c.id) } { (c.name) } }
                                td { (c.status) }
                                td { (fmt::when(c.created_at)) }
                            }
                        }
                    }
                }
            }
            @if more {
                nav.pager aria-label="Pages" {
                    a href={ "/staff/companies?q=" (url::form_urlencoded::byte_serialize(text.unwrap_or("").as_bytes()).collect::<String>()) "&page=" (number + 1) } { "Next page" }
                }
            }
        }
    };
    Ok(page.render("Companies", StaffNav::Companies, content))
}

pub async fn detail(
    State(platform): State<AppState>,
    page: StaffPage,
    Path(company): Path<String>,
) -> StaffResult {
    let basics = platform.staff_company_basics(&page.staff, &company).await?;
    let c = &basics.company;
    let content = html! {
        dl.facts {
            dt { "Id" } dd data-company-id { (c.id) }
            dt { "Status" } dd { (c.status) }
            dt { "Created" } dd { (fmt::when(c.created_at)) }
        }
        h2 { "Members" }
        div.table-wrap {
            table {
                caption.visually-hidden { "Members of " (c.name) }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" }
                    th scope="col" { "Last login" } th scope="col" { "Second factor" }
                } }
                tbody {
                    @for m in &basics.members {
                        tr {
                            td { (m.name.as_deref().unwrap_or("")) }
                            td { (m.email) }
                            td { (m.role) }
                            td { (m.last_login_at.map(fmt::when).unwrap_or_else(|| "never".into())) }
                            td { @if m.mfa_enrolled { "yes" } @else { "no" } }
                        }
                    }
                }
            }
        }
        @if page.opens(StaffView::RequestGrants) {
            p {
                a.button href={ "/staff/grants?company=" (c.id) } { "Ask for access to this company's content" }
                " "
                a href={ "/staff/companies/" (c.id) "/entries" } { "Open its entries (under an active grant)" }
            }
        }
    };
    Ok(page.render(&c.name, StaffNav::Companies, content))
}

pub async fn summary(
    State(platform): State<AppState>,
    page: StaffPage,
    Path(company): Path<String>,
) -> StaffResult {
    let s = platform
        .staff_company_summary(&page.staff, &company)
        .await?;
    let content = html! {
        dl.facts {
            dt { "Company" } dd { (s.id) }
            dt { "Members" } dd { (s.members) }
            dt { "Accounts" } dd { (s.accounts) }
            dt { "Entries" } dd { (s.entries) }
            dt { "Files" } dd { (s.files) }
            dt { "Storage" } dd { (fmt::grouped(&s.storage_bytes.to_string())) " bytes" }
            dt { "Last activity" } dd { (s.last_activity.map(fmt::when).unwrap_or_else(|| "none".into())) }
        }
    };
    Ok(page.render("Company summary", StaffNav::Home, content))
}

#[derive(Debug, Deserialize)]
pub struct SummaryLookup {
    company: Option<String>,
}

/// The home page's summary form: to the company's summary.
pub async fn summary_lookup(_page: StaffPage, Query(q): Query<SummaryLookup>) -> Response {
    let company = q.company.unwrap_or_default();
    let company = company.trim();
    if company.is_empty()
        || company.len() > 64
        || !company
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return see_other("/staff");
    }
    see_other(&format!("/staff/companies/{company}/summary"))
}
