//! Point-in-time restore into a new company, for the owner: choose the
//! point (on the backups page), read what will happen and type the company's
//! name to confirm, then follow the restore until the new company opens.
//! The same service as `POST /api/v1/companies/{c}/restores`.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use wb_app::backup::RestoreTarget;
use wb_app::restore_copy::{describe, RestoreCopyRequest};
use wb_app::restore_jobs::{is_restore_id, RestoreJob, RestoreState};
use wb_core::Action;

use super::fmt;
use super::form::Form;
use super::layout::{self, Nav};
use super::page::{confirm_name_field, see_other, Page, PageError, PageResult, View};
use crate::auth::{AppState, RestoreCopy};
use crate::problem::ApiError;

/// The backups page's restore section (owners only).
pub fn section(view: &View, jobs: &[RestoreJob], now: OffsetDateTime) -> Markup {
    let default_at = now
        .format(format_description!("[year]-[month]-[day]T[hour]:[minute]"))
        .unwrap_or_default();
    html! {
        h2 #restore { "Restore to a point in time" }
        p { "Bring the books back as they were at a moment you choose, into a " strong { "new company" } " with the same members. This company is not changed." }
        form.stack method="get" action=(view.href("/restore")) {
            fieldset {
                legend { "Restore to" }
                div.choice {
                    input #restore-latest type="radio" name="point" value="latest" checked;
                    label for="restore-latest" { "The latest backed-up change" }
                }
                div.choice {
                    input #restore-time type="radio" name="point" value="time";
                    label for="restore-time" { "A moment (UTC):" }
                }
                div {
                    label for="restore-at" { "Date and time (UTC)" }
                    input #restore-at type="datetime-local" name="at" step="1" value=(default_at);
                }
            }
            div { button.secondary type="submit" { "Continue" } }
        }
        @if !jobs.is_empty() {
            table.responsive #restores {
                thead { tr { th scope="col" { "Asked" } th scope="col" { "To" } th scope="col" { "State" } th scope="col" { "New company" } } }
                tbody {
                    @for job in jobs {
                        tr {
                            td data-label="Asked" { a href=(view.href(&format!("/restores/{}", job.id))) { (fmt::when(job.started_at)) } }
                            td data-label="To" { (describe(job.target)) }
                            td data-label="State" { (job.state.name()) }
                            td data-label="New company" {
                                @if let RestoreState::Done { company_id, company_name, .. } = &job.state {
                                    a href={ "/c/" (company_id) } { (company_name) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct PointQuery {
    point: Option<String>,
    at: Option<String>,
}

/// The point from the form: `latest`, or a UTC date and time.
pub fn parse_point(point: Option<&str>, at: Option<&str>) -> Result<RestoreTarget, String> {
    match point {
        Some("latest") => Ok(RestoreTarget::Latest),
        Some("time") => {
            let at = at.unwrap_or("").trim();
            let with_seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            let without = format_description!("[year]-[month]-[day]T[hour]:[minute]");
            PrimitiveDateTime::parse(at, with_seconds)
                .or_else(|_| PrimitiveDateTime::parse(at, without))
                .map(|t| RestoreTarget::Time(t.assume_utc()))
                .map_err(|_| "Give the date and time as YYYY-MM-DD HH:MM (UTC).".to_string())
        }
        Some(_) | None => Err("Choose the latest change or a moment.".to_string()),
    }
}

fn point_fields(target: RestoreTarget) -> Markup {
    match target {
        RestoreTarget::Time(t) => html! {
            input type="hidden" name="point" value="time";
            input type="hidden" name="at" value=(t.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]")).unwrap_or_default());
        },
        _ => html! { input type="hidden" name="point" value="latest"; },
    }
}

fn confirm_page(view: &View, target: RestoreTarget, error: Option<&str>) -> Markup {
    let name = view.company_name();
    html! {
        @if let Some(error) = error { (layout::notice("error", error)) }
        p { "You are about to restore " strong { (name) } " as it was at " strong { (describe(target)) } "." }
        ul {
            li { "A " strong { "new company" } " is created, named after this one with the time of the restore, holding the books, attachments and accounts as they were at that point." }
            li { "Everyone who is a member of this company now becomes a member of the new one, with the same role." }
            li { "This company is " strong { "not changed" } ": nothing is deleted or reversed." }
            li { "It runs in the background and can take a few minutes for a large company; the request and its outcome are in the audit trail." }
        }
        form.stack method="post" action=(view.href("/restores")) {
            (view.csrf())
            (point_fields(target))
            (confirm_name_field(name, error))
            div { button.danger type="submit" { "Restore into a new company" } }
        }
        p { a href={ (view.href("/backups")) "#restore" } { "Cancel" } }
    }
}

fn back_to_backups(view: &View, error: ApiError) -> Response {
    let content = html! {
        (layout::notice("error", &error.detail))
        p { a href={ (view.href("/backups")) "#restore" } { "Back to backups" } }
    };
    (
        error.status,
        view.render("Restore to a point in time", Nav::Backups, content),
    )
        .into_response()
}

/// `GET /c/{company}/restore?point=…&at=…`: what will happen, and the
/// confirmation.
pub async fn confirm(page: Page<RestoreCopy>, Query(q): Query<PointQuery>) -> PageResult<Response> {
    let (_admission, view) = page.into_parts();
    let target = match parse_point(q.point.as_deref(), q.at.as_deref()) {
        Ok(target) => target,
        Err(e) => {
            return Ok(back_to_backups(
                &view,
                ApiError::unprocessable("invalid-restore-point", e),
            ))
        }
    };
    Ok(view.render(
        "Restore to a point in time",
        Nav::Backups,
        confirm_page(&view, target, None),
    ))
}

/// `POST /c/{company}/restores`: starts the restore and shows its progress.
pub async fn start(
    State(platform): State<AppState>,
    page: Page<RestoreCopy>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let target = match parse_point(form.get("point"), form.get("at")) {
        Ok(target) => target,
        Err(e) => {
            return Ok(back_to_backups(
                &view,
                ApiError::unprocessable("invalid-restore-point", e),
            ))
        }
    };
    let scope = admission.operate(&platform).await?;
    let request = RestoreCopyRequest {
        target,
        confirm: form.get("confirm").unwrap_or("").to_string(),
    };
    match scope.start_restore_copy(&platform, request).await {
        Ok(job) => Ok(see_other(&view.href(&format!("/restores/{}", job.id)))),
        Err(e) if e.slug == "confirmation-mismatch" => {
            let content = confirm_page(
                &view,
                target,
                Some("The name does not match; type it exactly as shown."),
            );
            Ok((
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                view.render("Restore to a point in time", Nav::Backups, content),
            )
                .into_response())
        }
        Err(e) if e.slug == "restore-in-progress" => {
            // A second click, or another tab: show the restore that runs.
            match scope
                .restore_jobs(&platform)
                .into_iter()
                .find(|job| job.state.name() == "running")
            {
                Some(job) => Ok(see_other(&view.href(&format!("/restores/{}", job.id)))),
                None => Ok(back_to_backups(&view, e.into())),
            }
        }
        Err(e) => Ok(back_to_backups(&view, e.into())),
    }
}

fn status(view: &View, job: &RestoreJob) -> Markup {
    let url = view.href(&format!("/restores/{}", job.id));
    html! {
        div #restore-status aria-live="polite" {
            @match &job.state {
                RestoreState::Running { done, total } => {
                    // htmx asks once more in 3 s, and the answer (while still
                    // running) asks again: an error answer ends the asking.
                    // Without script, the link.
                    div hx-get=(url) hx-trigger="load delay:3s" hx-select="#restore-status" hx-target="#restore-status" hx-swap="outerHTML" {
                        p { "Restoring… " @if *total > 0 { (done) " of " (total) " changes replayed." } }
                        @if *total > 0 { progress max=(total) value=(done) { (done) " of " (total) } }
                        p { a href=(url) { "Refresh" } }
                    }
                }
                RestoreState::Done { company_id, company_name, last_seq } => {
                    (layout::notice("success", "The restore is done."))
                    p { "The new company " a #restored-company href={ "/c/" (company_id) } { (company_name) } " holds the books up to change #" (last_seq) "." }
                }
                RestoreState::Failed { reason } => {
                    (layout::notice("error", &format!("The restore failed: {reason}.")))
                    p { "Nothing was created. " a href={ (view.href("/backups")) "#restore" } { "Try again" } }
                }
            }
        }
    }
}

/// `GET /c/{company}/restores/{restore}`: one restore's progress (a recorded
/// read, `restores.list`).
pub async fn show(
    State(platform): State<AppState>,
    page: Page<RestoreCopy>,
    Path((_, id)): Path<(String, String)>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    if !is_restore_id(&id) {
        return Err(PageError::not_found("restore"));
    }
    let scope = admission
        .read(
            &platform,
            Action::RestoresList,
            Some(format!("restore:{id}")),
        )
        .await?;
    let job = scope.restore_job(&platform, &id)?;
    let content = html! {
        p { "Restore of this company to " strong { (describe(job.target)) } ", asked " (fmt::when(job.started_at)) "." }
        (status(&view, &job))
        p { a href={ (view.href("/backups")) "#restore" } { "Back to backups" } }
    };
    Ok(view.render("Restore to a point in time", Nav::Backups, content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_form_names_the_latest_change_or_a_utc_moment() {
        assert_eq!(
            parse_point(Some("latest"), Some("garbage")),
            Ok(RestoreTarget::Latest)
        );
        assert!(parse_point(None, None).is_err(), "the choice is required");
        assert_eq!(
            parse_point(Some("time"), Some("2026-11-30T17:05")),
            Ok(RestoreTarget::Time(datetime!(2026-11-30 17:05 UTC)))
        );
        assert_eq!(
            parse_point(Some("time"), Some("2026-11-30T17:05:09")),
            Ok(RestoreTarget::Time(datetime!(2026-11-30 17:05:09 UTC)))
        );
        for bad in [
            "",
            "2026-11-30",
            "2026-13-01T00:00",
            "17:05",
            "2026-11-30T17:05Z",
        ] {
            assert!(parse_point(Some("time"), Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_point(Some("yesterday"), None).is_err());
    }
}
