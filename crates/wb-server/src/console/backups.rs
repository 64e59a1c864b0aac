//! Backups and exports: how far the company's changes are backed up, its
//! exports (create one encrypted to an age recipient or a passphrase,
//! download), and the export schedule that pushes one to the customer's own
//! storage.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use wb_app::export_create::ExportKeyRequest;
use wb_app::export_push::schedule::NewSchedule;
use wb_app::export_push::Credentials;
use wb_app::records::{AuditEvent, Outcome};
use wb_core::{Action, Permission};
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::fmt;
use super::form::Form;
use super::layout::{self, Nav};
use super::page::{see_other, Page, PageResult, View};
use crate::auth::{AppState, ExportData};
use crate::problem::ApiError;

#[derive(Debug, serde::Deserialize)]
pub struct BackupsQuery {
    done: Option<String>,
}

fn export_forms(view: &View) -> Markup {
    html! {
        h2 { "New export" }
        p { "A full copy of the books, attachments and audit trail, encrypted so that only you can open it (with the " a href="https://age-encryption.org" { "age" } " tool)." }
        form.stack method="post" action=(view.href("/exports")) {
            (view.csrf())
            div {
                label for="recipient" { "Encrypt to an age recipient" }
                input #recipient name="recipient" placeholder="age1…" autocomplete="off" aria-describedby="recipient-hint";
                p.hint #recipient-hint { "Or leave it empty and choose a passphrase below." }
            }
            div {
                label for="export-passphrase" { "…or to a passphrase" }
                input #export-passphrase type="password" name="passphrase" autocomplete="new-password";
            }
            div { button type="submit" { "Create export" } }
        }
    }
}

fn schedule_forms(view: &View, schedule: Option<&wb_app::records::ExportSchedule>) -> Markup {
    html! {
        h2 { "Export schedule" }
        @match schedule {
            Some(s) => {
                p { "Every " (s.every_hours) " hours to " code { (s.destination) } ", encrypted to " code { (s.recipient) } "." }
                p.hint {
                    "Next push: " (fmt::when(s.next_push_at)) "."
                    @if let Some(at) = s.last_push_at { " Last push: " (fmt::when(at)) " (" (s.last_push_status.as_deref().unwrap_or("?")) ")." }
                    @if let Some(e) = &s.last_error { " Last error: " (e) }
                }
                (view.post_button("/export-schedule/delete", "danger", "Stop the schedule", ""))
            }
            None => p { "No schedule: exports are made only when you ask." },
        }
        form.stack method="post" action=(view.href("/export-schedule")) {
            (view.csrf())
            div { label for="destination" { "Destination" } input #destination name="destination" required placeholder="s3://bucket/prefix or file:///path" value=(schedule.map(|s| s.destination.clone()).unwrap_or_default()); }
            div { label for="schedule-recipient" { "Age recipient" } input #schedule-recipient name="recipient" required placeholder="age1…" value=(schedule.map(|s| s.recipient.clone()).unwrap_or_default()); }
            div { label for="every_hours" { "Every (hours)" } input #every_hours name="every_hours" type="number" min="1" max="720" value=(schedule.map(|s| s.every_hours).unwrap_or(24)); }
            div { label for="access_key_id" { "Access key id (S3; empty: keep the stored one)" } input #access_key_id name="access_key_id" autocomplete="off"; }
            div { label for="secret_access_key" { "Secret access key" } input #secret_access_key type="password" name="secret_access_key" autocomplete="off"; }
            div { button.secondary type="submit" { "Save schedule" } }
        }
    }
}

pub async fn page(
    State(platform): State<AppState>,
    page: Page<ExportData>,
    axum::extract::Query(q): axum::extract::Query<BackupsQuery>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let owner = admission.allows(Permission::RestoreCopy);
    let scope = admission.read(&platform, Action::ExportsList, None).await?;
    let exports = scope
        .exports(&platform)
        .await
        .map_err(wb_app::ServiceError::from)?;
    scope
        .note(AuditEvent {
            at: platform.now(),
            actor: scope.actor().clone(),
            company_id: Some(scope.company_id().to_string()),
            action: Action::ExportScheduleRead,
            target: None,
            outcome: Outcome::Success,
            detail: None,
        })
        .await;
    let schedule = scope.export_schedule(&platform).await?.map(|(s, _)| s);
    let backup = scope.backup_position(&platform).await?;
    let done = match q.done.as_deref() {
        Some("schedule") => Some("Export schedule saved."),
        Some("unscheduled") => Some("Export schedule stopped."),
        _ => None,
    };
    let content = html! {
        @if let Some(done) = done { (layout::notice("success", done)) }
        h2 { "Continuous backup" }
        @if backup.unshipped() == 0 {
            p { "Every change (up to #" (backup.journal_seq) ") is in backup storage." }
        } @else {
            p { (backup.unshipped()) " recent change(s) are on their way to backup storage (#" (backup.shipped_seq) " of #" (backup.journal_seq) " stored)." }
        }
        @if let Some(at) = backup.snapshot_taken_at { p.hint { "Newest snapshot: " (fmt::when(at)) "." } }
        @if owner {
            (super::restore::section(&view, &scope.restore_jobs(&platform), platform.now()))
        } @else {
            p.hint { "The company's owner can restore it to a point in time, into a new company." }
        }
        h2 { "Exports" }
        @if exports.is_empty() {
            p.muted { "No exports yet." }
        } @else {
            table.responsive #exports {
                thead { tr { th scope="col" { "Created" } th scope="col" { "Encryption" } th.num scope="col" { "Size" } th scope="col" { "SHA-256" } th scope="col" { "Download" } } }
                tbody {
                    @for e in &exports {
                        tr {
                            td data-label="Created" { (e.created_at) }
                            td data-label="Encryption" { (e.encryption) @if let Some(r) = &e.recipient { br; code { (r) } } }
                            td.num data-label="Size" { (e.size_bytes) " bytes" }
                            td data-label="SHA-256" { code { (e.sha256.get(..16).unwrap_or(&e.sha256)) "…" } }
                            td data-label="Download" { a href=(view.href(&format!("/exports/{}/download", e.id))) download { "Download" span.visually-hidden { " export of " (e.created_at) } } }
                        }
                    }
                }
            }
        }
        (export_forms(&view))
        (schedule_forms(&view, schedule.as_ref()))
    };
    Ok(view.render("Backups and exports", Nav::Backups, content))
}

fn failed(view: &View, error: ApiError) -> Response {
    let content = html! {
        (layout::notice("error", &error.detail))
        p { a href=(view.href("/backups")) { "Back to backups and exports" } }
    };
    (
        error.status,
        view.render("Backups and exports", Nav::Backups, content),
    )
        .into_response()
}

pub async fn create_export(
    State(platform): State<AppState>,
    page: Page<ExportData>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let request = match (form.get("recipient"), form.raw("passphrase")) {
        (Some(r), None) => ExportKeyRequest::Recipient(r.to_string()),
        (None, Some(p)) if p.len() <= MAX_PASSPHRASE_BYTES => {
            ExportKeyRequest::Passphrase(Secret::new(p.to_string()))
        }
        _ => {
            return Ok(failed(
                &view,
                ApiError::unprocessable(
                    "invalid-export-key",
                    "Give either an age recipient or a passphrase (not both).",
                ),
            ))
        }
    };
    let scope = admission.operate(&platform).await?;
    match scope.create_export(&platform, request).await {
        Ok(record) => {
            let content = html! {
                (layout::notice("success", "The export is ready."))
                p { a.button href=(view.href(&format!("/exports/{}/download", record.id))) download { "Download the export" } }
                p.hint { "SHA-256 " code { (record.sha256) } }
                p { a href=(view.href("/backups")) { "Back to backups and exports" } }
            };
            Ok(view.render("Export ready", Nav::Backups, content))
        }
        Err(e) => Ok(failed(&view, e.into())),
    }
}

pub async fn set_schedule(
    State(platform): State<AppState>,
    page: Page<ExportData>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let credentials = match (form.get("access_key_id"), form.get("secret_access_key")) {
        (None, None) => None,
        (Some(id), Some(secret)) => Some(Credentials {
            access_key_id: Secret::new(id.to_string()),
            secret_access_key: Secret::new(secret.to_string()),
        }),
        _ => {
            return Ok(failed(
                &view,
                ApiError::unprocessable(
                    "missing-credentials",
                    "Give both the access key id and the secret, or neither.",
                ),
            ))
        }
    };
    let Some(every_hours) = form.get("every_hours").and_then(|h| h.parse::<u32>().ok()) else {
        return Ok(failed(
            &view,
            ApiError::unprocessable("invalid-schedule", "Every (hours) must be a whole number."),
        ));
    };
    let new = NewSchedule {
        destination: form.get("destination").unwrap_or("").to_string(),
        credentials,
        recipient: form.get("recipient").unwrap_or("").to_string(),
        every_hours,
    };
    let scope = admission.operate(&platform).await?;
    match scope.set_export_schedule(&platform, new).await {
        Ok(_) => Ok(see_other(&format!(
            "{}?done=schedule",
            view.href("/backups")
        ))),
        Err(e) => Ok(failed(&view, e.into())),
    }
}

pub async fn delete_schedule(
    State(platform): State<AppState>,
    page: Page<ExportData>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    match scope.delete_export_schedule(&platform).await {
        Ok(()) => Ok(see_other(&format!(
            "{}?done=unscheduled",
            view.href("/backups")
        ))),
        Err(e) => Ok(failed(&view, e.into())),
    }
}
