//! Alert triage in the staff console (security, operations, management):
//! the platform's alerts by state, each acknowledged or resolved with a
//! reason, through `staff_alerts` and `staff_triage` (the JSON staff API's
//! services; the alert store records every attempt).

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use serde::Deserialize;
use wb_app::monitor_job::AlertView;
use wb_core::monitor::AlertState;

use super::{StaffError, StaffNav, StaffPage, StaffResult};
use crate::auth::AppState;
use crate::console::form::Form;
use crate::console::grant_list::at;
use crate::console::layout;
use crate::console::page::see_other;
use crate::problem::ApiError;

#[derive(Debug, Deserialize)]
pub struct AlertQuery {
    state: Option<String>,
    done: Option<String>,
}

const STATES: [AlertState; 3] = [
    AlertState::Open,
    AlertState::Acknowledged,
    AlertState::Resolved,
];

fn triage_form(page: &StaffPage, a: &AlertView) -> Markup {
    let id = format!("reason-{}", a.id);
    html! {
        @if a.state != "resolved" {
            form.inline method="post" action={ "/staff/alerts/" (a.id) } {
                (page.csrf_field())
                div {
                    label for=(id) { "Reason" span.visually-hidden { " for alert " (a.id) } }
                    input id=(id) name="reason" required maxlength="500";
                }
                @if a.state == "open" {
                    div { button.secondary type="submit" name="triage" value="ack" { "Acknowledge" span.visually-hidden { " alert " (a.id) } } }
                }
                div { button type="submit" name="triage" value="resolve" { "Resolve" span.visually-hidden { " alert " (a.id) } } }
            }
        }
    }
}

pub async fn list(
    State(platform): State<AppState>,
    page: StaffPage,
    Query(q): Query<AlertQuery>,
) -> StaffResult {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<AlertState>().map_err(|_| {
            StaffError::from(ApiError::unprocessable(
                "invalid-query",
                "state must be open, acknowledged or resolved",
            ))
        })?),
    };
    let alerts = platform.staff_alerts(&page.staff, state).await?;
    let done = match q.done.as_deref() {
        Some("ack") => Some("Alert acknowledged."),
        Some("resolve") => Some("Alert resolved."),
        _ => None,
    };
    let content = html! {
        @if let Some(done) = done { (layout::notice("success", done)) }
        form.inline method="get" action="/staff/alerts" {
            div {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" selected[state.is_none()] { "all" }
                    @for s in STATES {
                        option value=(s.as_str()) selected[state == Some(s)] { (s.as_str()) }
                    }
                }
            }
            div { button type="submit" { "Show" } }
        }
        @if alerts.is_empty() {
            p { "No alerts." }
        }
        @for a in &alerts {
            section.card data-alert=(a.id) aria-labelledby={ "alert-" (a.id) } {
                h2 id={ "alert-" (a.id) } { (a.title) " " span class={ "badge " (a.state) } { (a.state) } }
                dl.facts {
                    dt { "Severity" } dd { (a.severity) }
                    dt { "Rule" } dd { (a.rule) }
                    dt { "Detail" } dd { (a.detail) }
                    @if let Some(c) = &a.company_id { dt { "Company" } dd { (c) } }
                    dt { "Seen" } dd { (a.count) " times, " (at(&a.first_seen)) " to " (at(&a.last_seen)) }
                    @if let Some(t) = &a.acknowledged { dt { "Acknowledged" } dd { (t.by) " at " (at(&t.at)) ": " (t.reason) } }
                    @if let Some(t) = &a.resolved { dt { "Resolved" } dd { (t.by) " at " (at(&t.at)) ": " (t.reason) } }
                }
                (triage_form(&page, a))
            }
        }
    };
    Ok(page.render("Alerts", StaffNav::Alerts, content))
}

/// `POST /staff/alerts/{alert}` with `triage` = `ack` or `resolve` and a reason.
pub async fn triage(
    State(platform): State<AppState>,
    page: StaffPage,
    Path(alert): Path<String>,
    form: Form,
) -> StaffResult {
    let id: i64 = alert
        .parse()
        .map_err(|_| StaffError::from(crate::console::page::PageError::not_found("alert")))?;
    let (resolve, done) = match form.get("triage") {
        Some("ack") => (false, "ack"),
        Some("resolve") => (true, "resolve"),
        _ => {
            return Err(
                ApiError::unprocessable("invalid-triage", "choose Acknowledge or Resolve").into(),
            )
        }
    };
    platform
        .staff_triage(&page.staff, id, resolve, form.get("reason").unwrap_or(""))
        .await?;
    Ok(see_other(&format!("/staff/alerts?done={done}")))
}
