//! The company's audit trail: filters, the chain's signed checkpoints (and
//! a verification on request), and access by staff marked out.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use wb_app::records::AuditQuery;
use wb_core::Action;

use super::layout::{self, Nav};
use super::page::{Page, PageError, PageResult};
use super::reports::parse_day;
use crate::auth::{AppState, ReadAudit};
use crate::problem::ApiError;

const PAGE_SIZE: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct AuditFilters {
    action: Option<String>,
    actor: Option<String>,
    outcome: Option<String>,
    since: Option<String>,
    after: Option<String>,
}

fn nonblank(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(100).collect())
}

pub async fn page(
    State(platform): State<AppState>,
    page: Page<ReadAudit>,
    Query(q): Query<AuditFilters>,
) -> PageResult<Response> {
    let outcome = nonblank(&q.outcome);
    if outcome
        .as_deref()
        .is_some_and(|o| !matches!(o, "success" | "failure"))
    {
        return Err(PageError::from_api(
            ApiError::unprocessable("invalid-query", "The outcome is success or failure."),
            None,
        ));
    }
    let since = nonblank(&q.since)
        .map(|d| parse_day("since", &d).map(|d| format!("{d}T00:00:00Z")))
        .transpose()?;
    let after = nonblank(&q.after)
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let (admission, view) = page.into_parts();
    let scope = admission.read(&platform, Action::AuditList, None).await?;
    // One more than a page: whether there is a next page.
    let mut events = scope
        .audit_events(
            &platform,
            AuditQuery {
                after,
                limit: PAGE_SIZE + 1,
                company_id: None,
                action: nonblank(&q.action),
                outcome,
                actor: nonblank(&q.actor),
                since,
                member_sign_ins: true,
            },
        )
        .await?;
    let status = scope.audit_chain_status(&platform).await?;
    let more = events.len() > PAGE_SIZE as usize;
    events.truncate(PAGE_SIZE as usize);
    let next = more.then(|| events.last().map(|e| e.central_seq)).flatten();
    let next_href = next.map(|next| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("action", &q.action),
            ("actor", &q.actor),
            ("outcome", &q.outcome),
            ("since", &q.since),
        ] {
            if let Some(v) = nonblank(value) {
                query.append_pair(name, &v);
            }
        }
        query.append_pair("after", &next.to_string());
        format!("{}?{}", view.href("/audit"), query.finish())
    });
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    let content = html! {
        section aria-labelledby="chain-title" {
            h2 #chain-title { "Chain" }
            @match &status.last_checkpoint {
                Some((seq, at)) => p { "The newest signed checkpoint vouches for every event up to #" (seq) " (" (at) ")." },
                None => p { "No signed checkpoint yet (one is written within seconds of activity)." },
            }
            (view.post_button("/audit/verify", "secondary", "Verify the chain now", ""))
        }
        h2 { "Events" }
        form.inline method="get" action=(view.href("/audit")) {
            div { label for="action" { "Action" } input #action name="action" value=(v(&q.action)) placeholder="e.g. entry.post" list="audit-actions"; }
            datalist #audit-actions { @for a in Action::ALL { option value=(a.as_str()) {} } }
            div { label for="actor" { "Actor" } input #actor name="actor" value=(v(&q.actor)) placeholder="user:…"; }
            div {
                label for="outcome" { "Outcome" }
                select #outcome name="outcome" {
                    option value="" { "any" }
                    option value="success" selected[q.outcome.as_deref() == Some("success")] { "success" }
                    option value="failure" selected[q.outcome.as_deref() == Some("failure")] { "failure" }
                }
            }
            div { label for="since" { "Since" } input #since type="date" name="since" value=(v(&q.since)); }
            div { button type="submit" { "Filter" } }
        }
        @if events.is_empty() {
            p { "No events match." }
        } @else {
            div.table-wrap {
                table.responsive #audit-events {
                    caption.visually-hidden { "Audit events" }
                    thead { tr {
                        th scope="col" { "Time" } th scope="col" { "Actor" } th scope="col" { "Action" }
                        th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "Client" }
                    } }
                    tbody {
                        @for c in &events {
                            @let e = &c.event;
                            @let staff = e.actor.starts_with("staff:");
                            tr class=[staff.then_some("staff-access")] {
                                td data-label="Time" { (e.at) }
                                td data-label="Actor" {
                                    (e.actor)
                                    @if staff { " " strong.badge { "staff access" } }
                                }
                                td data-label="Action" { (e.action) }
                                td data-label="Target" { (e.target.as_deref().unwrap_or("")) }
                                td data-label="Outcome" { span class={ "badge " (e.outcome) } { (e.outcome) } }
                                td data-label="Client" { (e.client.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(href) = &next_href {
                p { a rel="next" href=(href) { "More events" } }
            }
        }
    };
    Ok(view.render("Audit trail", Nav::Audit, content))
}

/// Verifies the company's whole chain against its signed checkpoints. A
/// POST (it reads the whole chain): a link cannot make a browser start it,
/// and it goes through the per-caller cap on costly reads.
pub async fn verify(
    State(platform): State<AppState>,
    page: Page<ReadAudit>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission
        .read(&platform, Action::AuditList, Some("verify".into()))
        .await?;
    let report = scope.verify_audit_chain(&platform).await?;
    let content = html! {
        @match &report.problem {
            None => (layout::notice("success", &format!("Verified now: {} events, chain intact up to #{}.", report.events, report.last_seq))),
            Some(problem) => (layout::notice("error", &format!("Verification failed: {problem}"))),
        }
        p { a href=(view.href("/audit")) { "Back to the audit trail" } }
    };
    Ok(view.render("Audit chain verification", Nav::Audit, content))
}
