//! Access grants in the staff console: a staff member asks for one
//! (`Platform::request_grant`) and follows their requests
//! (`my_grant_requests`); management decides on others' requests
//! (`management_inbox`, `management_decides`). The same services as
//! `/api/v1/staff/access-grants`, with the same refusals on record.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use wb_app::grants::{Decide, GrantAsk};
use wb_core::grants::{GrantScope, LegalMandate, MAX_DURATION_MINUTES};

use super::{StaffError, StaffNav, StaffPage, StaffResult};
use crate::api::grants::{listed, GrantView};
use crate::auth::AppState;
use crate::console::form::Form;
use crate::console::grant_list;
use crate::console::layout;
use crate::console::page::see_other;
use crate::problem::ApiError;

#[derive(Debug, Deserialize)]
pub struct MineQuery {
    company: Option<String>,
    done: Option<String>,
}

/// The request form, showing `values` (what was sent when it was refused).
fn request_form(page: &StaffPage, values: &Form) -> Markup {
    let value = |name: &str| values.get(name).unwrap_or("").to_string();
    let scope = value("scope");
    let duration = values.get("duration_minutes").unwrap_or("60").to_string();
    html! {
        form.stack method="post" action="/staff/grants" {
            (page.csrf_field())
            div {
                label for="company" { "Company id" }
                input #company name="company" required maxlength="64" value=(value("company"));
            }
            div {
                label for="reason" { "Reason" }
                textarea #reason name="reason" rows="3" required minlength="10" maxlength="2000" aria-describedby="reason-hint" { (value("reason")) }
                p.hint #reason-hint { "10 to 2,000 characters. The company sees it." }
            }
            div {
                label for="scope" { "Scope" }
                select #scope name="scope" {
                    @for s in GrantScope::ALL {
                        option value=(s.as_str()) selected[scope == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div {
                label for="duration_minutes" { "Duration (minutes)" }
                input #duration_minutes name="duration_minutes" inputmode="numeric" required value=(duration) aria-describedby="duration-hint";
                p.hint #duration-hint { "At most " (MAX_DURATION_MINUTES) " (72 hours)." }
            }
            div {
                label for="ticket" { "Ticket (optional)" }
                input #ticket name="ticket" maxlength="200" value=(value("ticket"));
            }
            div {
                label for="starts_at" { "Start no earlier than (optional, UTC)" }
                input #starts_at type="datetime-local" name="starts_at" value=(value("starts_at")) aria-describedby="start-hint";
                p.hint #start-hint { "Within 30 days. Empty: it opens once both sides approved." }
            }
            fieldset {
                legend { "Legal mandate (only when one compels the access)" }
                div.stack-field {
                    label for="mandate_reference" { "Mandate reference" }
                    input #mandate_reference name="mandate_reference" maxlength="200" value=(value("mandate_reference")) aria-describedby="mandate-hint";
                    p.hint #mandate-hint { "With a mandate, management alone approves, quoting this reference." }
                }
                div.stack-field {
                    label for="disclose_after" { "The company may be told after (optional, UTC)" }
                    input #disclose_after type="datetime-local" name="disclose_after" value=(value("disclose_after"));
                }
            }
            div { button type="submit" { "Ask for access" } }
        }
    }
}

fn done_notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("requested") => "Access requested. It opens once the company and management approve.",
        Some("approve") => "Grant approved.",
        Some("deny") => "Grant denied.",
        Some("revoke") => "Grant revoked.",
        _ => return html! {},
    };
    layout::notice("success", text)
}

async fn mine_content(
    platform: &AppState,
    page: &StaffPage,
    values: &Form,
) -> Result<Markup, StaffError> {
    let grants = platform.my_grant_requests(&page.staff).await?;
    let list = listed(platform, &grants).await?;
    Ok(html! {
        h2 { "Ask for access" }
        (request_form(page, values))
        h2 { "My requests" }
        (grant_list::grants(&list.grants, my_controls))
    })
}

fn my_controls(g: &GrantView) -> Markup {
    html! {
        @if g.state == "active" {
            p { a href={ "/staff/companies/" (g.company) "/entries" } { "Open the company's entries under this grant" } }
        }
    }
}

pub async fn mine(
    State(platform): State<AppState>,
    page: StaffPage,
    Query(q): Query<MineQuery>,
) -> StaffResult {
    let mut values = Vec::new();
    if let Some(c) = q.company.as_deref().filter(|c| c.len() <= 64) {
        values.push(("company".to_string(), c.to_string()));
    }
    let content = mine_content(&platform, &page, &Form::from_pairs(values)).await?;
    let content = html! { (done_notice(q.done.as_deref())) (content) };
    Ok(page.render("Access requests", StaffNav::Grants, content))
}

/// A `datetime-local` field's value (`YYYY-MM-DDTHH:MM`, seconds optional),
/// read as UTC.
fn utc_time(name: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text, minutes)
        .or_else(|_| PrimitiveDateTime::parse(text, seconds))
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| {
            ApiError::unprocessable(
                "invalid-grant",
                format!("{name} must be a date and time (YYYY-MM-DDTHH:MM, UTC)"),
            )
        })
}

fn ask_of(form: &Form) -> Result<GrantAsk, ApiError> {
    let invalid = |detail: &str| ApiError::unprocessable("invalid-grant", detail.to_string());
    let company = form
        .get("company")
        .filter(|c| c.len() <= 64)
        .ok_or_else(|| invalid("name the company by its id"))?;
    let scope: GrantScope = form
        .get("scope")
        .unwrap_or("")
        .parse()
        .map_err(|e: wb_core::grants::UnknownScope| invalid(&e.to_string()))?;
    let duration_minutes = form
        .get("duration_minutes")
        .and_then(|d| d.parse::<u32>().ok())
        .ok_or_else(|| invalid("the duration is a whole number of minutes"))?;
    let disclose_after = form
        .get("disclose_after")
        .map(|t| utc_time("the disclosure time", t))
        .transpose()?;
    let legal_mandate = match (form.get("mandate_reference"), disclose_after) {
        (Some(reference), disclose_after) => Some(LegalMandate {
            reference: reference.to_string(),
            disclose_after,
        }),
        (None, None) => None,
        (None, Some(_)) => {
            return Err(invalid(
                "a disclosure time goes with a legal mandate's reference",
            ))
        }
    };
    Ok(GrantAsk {
        company_id: company.to_string(),
        reason: form.get("reason").unwrap_or("").to_string(),
        scope,
        duration_minutes,
        ticket: form.get("ticket").map(str::to_string),
        legal_mandate,
        starts_at: form
            .get("starts_at")
            .map(|t| utc_time("the start", t))
            .transpose()?,
    })
}

/// `POST /staff/grants`: ask for access.
pub async fn request(State(platform): State<AppState>, page: StaffPage, form: Form) -> StaffResult {
    let outcome = match ask_of(&form) {
        Ok(ask) => platform
            .request_grant(&page.staff, ask)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(_) => Ok(see_other("/staff/grants?done=requested")),
        // A role that may not ask: the refusal page (on record).
        Err(e) if e.status == StatusCode::FORBIDDEN => Err(e.into()),
        Err(e) => {
            let content = mine_content(&platform, &page, &form).await?;
            Ok(page.render_error(
                e.status,
                &e.detail,
                "Access requests",
                StaffNav::Grants,
                content,
            ))
        }
    }
}

fn inbox_controls(page: &StaffPage, g: &GrantView) -> Markup {
    if g.state != "pending" && g.state != "active" {
        return html! {};
    }
    let management_approved = g.approvals.iter().any(|a| a.side == "management");
    // Approved by both sides (or under a mandate): it has its window.
    let approved = g.ends_at.is_some();
    let what = format!("grant {}", g.id);
    let action = |decision: &str| format!("/staff/grants/{}/{decision}", g.id);
    html! {
        div.actions {
            @if !approved && !management_approved {
                @if g.legal_mandate.is_some() {
                    form.inline method="post" action=(action("approve")) {
                        (page.csrf_field())
                        div {
                            label for={ "mandate-" (g.id) } { "Mandate reference" }
                            input id={ "mandate-" (g.id) } name="mandate_reference" required maxlength="200";
                        }
                        div { button type="submit" { "Approve" span.visually-hidden { " " (what) } } }
                    }
                } @else {
                    (page.post_button(&action("approve"), "", "Approve", &what))
                }
            }
            @if !approved {
                (page.post_button(&action("deny"), "danger", "Deny", &what))
            } @else {
                (page.post_button(&action("revoke"), "danger", "Revoke", &what))
            }
        }
    }
}

/// Management's inbox: others' pending and active grants.
pub async fn inbox(
    State(platform): State<AppState>,
    page: StaffPage,
    Query(q): Query<MineQuery>,
) -> StaffResult {
    let grants = platform.management_inbox(&page.staff).await?;
    let list = listed(&platform, &grants).await?;
    let content = html! {
        (done_notice(q.done.as_deref()))
        p { "Other staff members' requests waiting for a decision, and grants still open (which you may revoke)." }
        (grant_list::grants(&list.grants, |g| inbox_controls(&page, g)))
    };
    Ok(page.render("Approvals", StaffNav::Approvals, content))
}

/// `POST /staff/grants/{grant}/approve|deny|revoke` (management).
pub async fn decide(
    State(platform): State<AppState>,
    page: StaffPage,
    Path((grant, decision)): Path<(String, String)>,
    form: Form,
) -> StaffResult {
    let decide = match decision.as_str() {
        "approve" => Decide::Approve {
            mandate_reference: form.get("mandate_reference").map(str::to_string),
        },
        "deny" => Decide::Deny,
        "revoke" => Decide::Revoke,
        _ => return Err(crate::console::page::PageError::not_found("page").into()),
    };
    platform
        .management_decides(&page.staff, &grant, decide)
        .await?;
    Ok(see_other(&format!("/staff/approvals?done={decision}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_local_fields_are_read_as_utc() {
        let at = utc_time("the start", "2026-12-24T09:30").unwrap();
        assert_eq!(at.offset(), time::UtcOffset::UTC);
        assert_eq!((at.hour(), at.minute(), at.second()), (9, 30, 0));
        assert_eq!(
            utc_time("the start", "2026-12-24T09:30:15")
                .unwrap()
                .second(),
            15
        );
        for bad in [
            "",
            "tomorrow",
            "2026-12-24",
            "2026-12-24T25:00",
            "2026-12-24T09:30Z",
        ] {
            let e = utc_time("the start", bad).unwrap_err();
            assert_eq!(
                e.status,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}"
            );
        }
    }
}
