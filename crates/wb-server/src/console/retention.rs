//! The company's data retention: its own rules (owners and admins, never
//! below the platform's statutory minimum) and, for the owner, the purge
//! those rules allow: preview exactly what would go (the API's dry run),
//! type the company's name, purge. The same services as
//! `GET|PUT /api/v1/companies/{c}/retention` and `POST …/purge`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use wb_app::purge::{PurgeRequest, PurgeView};
use wb_app::retention_rules::{RetentionRequest, RetentionView};
use wb_core::{Action, Permission};

use super::form::Form;
use super::layout::{self, Nav};
use super::page::{confirm_name_field, field_error, Page, PageResult, View};
use crate::auth::{AppState, ManageSecurity, PurgeData};
use crate::problem::ApiError;

const TITLE: &str = "Data retention";
const PURGE_TITLE: &str = "Purge";
/// Attachments listed one by one on a preview; the rest are counted.
const LISTED_ATTACHMENTS: usize = 200;
/// Ranges of removed entry ids shown; the rest are counted.
const LISTED_RANGES: usize = 100;

/// The rules' fields, as saved or (after a refusal) as sent.
fn fields_of(rules: &RetentionView) -> Form {
    let values = [
        rules.entries_years,
        rules.attachments_years,
        rules.audit_years,
        rules.exports_days,
    ];
    Form::from_pairs(
        FIELDS
            .iter()
            .zip(values)
            .map(|((name, _, _), v)| (name.to_string(), v.to_string()))
            .collect(),
    )
}

/// The rules' fields: name, label, unit.
const FIELDS: [(&str, &str, &str); 4] = [
    ("entries_years", "Keep entries", "years"),
    ("attachments_years", "Keep attachments", "years"),
    ("audit_years", "Keep the audit trail", "years"),
    ("exports_days", "Keep exports", "days"),
];

/// The field a refusal is about: the service's names the rule first, the
/// form's own the label.
fn field_in_error(detail: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(name, label, _)| detail.starts_with(name) || detail.starts_with(label))
        .map(|(name, _, _)| *name)
}

/// The rules form; `error` (a refusal's detail) is shown at its field too.
fn rules_form(view: &View, values: &Form, minimum: u32, error: Option<&str>) -> Markup {
    let value = |name: &str| values.get(name).unwrap_or("").to_string();
    let wrong = error.and_then(field_in_error);
    let field = |(name, label, unit): (&str, &str, &str), hint: &str| {
        let invalid = wrong == Some(name);
        let described = if invalid {
            format!("{name}-error {name}-hint")
        } else {
            format!("{name}-hint")
        };
        html! {
            div {
                label for=(name) { (label) " (" (unit) ")" }
                input id=(name) name=(name) inputmode="numeric" required value=(value(name)) aria-invalid=[invalid.then_some("true")] aria-describedby=(described);
                @if invalid { (field_error(name, error)) }
                p.hint id={ (name) "-hint" } { (hint) }
            }
        }
    };
    html! {
        form.stack method="post" action=(view.href("/retention")) {
            (view.csrf())
            (field(FIELDS[0], &format!("At least {minimum} (the statutory minimum). Counted from the end of the year.")))
            (field(FIELDS[1], "An attachment linked to an entry still kept stays with it."))
            (field(FIELDS[2], &format!("At least {minimum} (the statutory minimum).")))
            (field(FIELDS[3], "Exports older than this are deleted."))
            div { button type="submit" { "Save rules" } }
        }
    }
}

fn purge_section(view: &View, owner: bool) -> Markup {
    html! {
        h2 #purge { "Purge what the rules let go" }
        @if owner {
            p { "Entries dated before the rules' horizon are replaced by one opening-balance entry per currency, so every balance from the horizon on stays the same. Attachments and audit events past their rules go too, and so do the backups made before the purge." }
            p { "The preview changes nothing and lists exactly what would go." }
            form.inline method="post" action=(view.href("/purge/preview")) {
                (view.csrf())
                button.secondary type="submit" { "Preview the purge" }
            }
        } @else {
            p.hint { "The company's owner can purge what these rules let go." }
        }
    }
}

fn rules_page(
    view: &View,
    values: &Form,
    minimum: u32,
    owner: bool,
    error: Option<&str>,
) -> Markup {
    html! {
        p { "How long this company keeps its records. Nothing is deleted when the rules change: a purge, which only the owner can start, removes what they let go." }
        (rules_form(view, values, minimum, error))
        (purge_section(view, owner))
    }
}

/// `GET /c/{company}/retention`.
pub async fn page(
    State(platform): State<AppState>,
    page: Page<ManageSecurity>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let owner = admission.allows(Permission::PurgeData);
    let scope = admission
        .read(&platform, Action::RetentionRead, None)
        .await?;
    let rules = scope.retention(&platform).await?;
    Ok(view.render(
        TITLE,
        Nav::Retention,
        rules_page(
            &view,
            &fields_of(&rules),
            rules.statutory_minimum_years,
            owner,
            None,
        ),
    ))
}

fn number(form: &Form, (name, label, _): (&str, &str, &str)) -> Result<Option<u32>, ApiError> {
    match form.get(name) {
        None => Ok(None),
        Some(v) => v.parse::<u32>().map(Some).map_err(|_| {
            ApiError::unprocessable(
                "invalid-retention",
                format!("{label} must be a whole number"),
            )
        }),
    }
}

fn change_of(form: &Form) -> Result<RetentionRequest, ApiError> {
    Ok(RetentionRequest {
        entries_years: number(form, FIELDS[0])?,
        attachments_years: number(form, FIELDS[1])?,
        audit_years: number(form, FIELDS[2])?,
        exports_days: number(form, FIELDS[3])?,
    })
}

/// `POST /c/{company}/retention`: saves the rules; a refusal names the rule
/// and keeps what was typed.
pub async fn save(
    State(platform): State<AppState>,
    page: Page<ManageSecurity>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let owner = admission.allows(Permission::PurgeData);
    let scope = admission.operate(&platform).await?;
    let outcome = match change_of(&form) {
        Ok(change) => scope
            .set_retention(&platform, change)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let minimum = platform.statutory_minimum().in_years();
    match outcome {
        Ok(rules) => {
            let content = html! {
                (layout::notice("success", "Retention rules saved."))
                (rules_page(&view, &fields_of(&rules), minimum, owner, None))
            };
            Ok(view.render(TITLE, Nav::Retention, content))
        }
        Err(e) => {
            let content = html! {
                (layout::notice("error", &e.detail))
                (rules_page(&view, &form, minimum, owner, Some(&e.detail)))
            };
            Ok((e.status, view.render(TITLE, Nav::Retention, content)).into_response())
        }
    }
}

/// The first `LISTED_RANGES` ranges of ids, and how many more there are.
fn ranges(ranges: &[[i64; 2]]) -> String {
    let more = ranges.len().saturating_sub(LISTED_RANGES);
    let listed = ranges
        .iter()
        .take(LISTED_RANGES)
        .map(|[a, b]| {
            if a == b {
                format!("#{a}")
            } else {
                format!("#{a}–#{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        format!("{listed} and {more} more ranges")
    } else {
        listed
    }
}

/// The day of an RFC 3339 time (the cut-offs are midnights, UTC).
fn day(at: &str) -> &str {
    at.get(..10).unwrap_or(at)
}

/// What a purge removed, or (a preview) would remove.
fn summary(view: &View, purge: &PurgeView) -> Markup {
    let rows = [
        ("Entries", purge.before.entries, purge.after.entries),
        ("Postings", purge.before.postings, purge.after.postings),
        (
            "Attachments",
            purge.before.attachments,
            purge.after.attachments,
        ),
        (
            "Audit events",
            purge.before.audit_events,
            purge.after.audit_events,
        ),
    ];
    let more = purge
        .attachments_removed
        .len()
        .saturating_sub(LISTED_ATTACHMENTS);
    html! {
        table.responsive #purge-counts {
            caption { "Records in the company database" }
            thead { tr { th scope="col" { "Kind" } th scope="col" { "Before" } th scope="col" { "After" } } }
            tbody {
                @for (kind, before, after) in rows {
                    tr { th scope="row" data-label="Kind" { (kind) } td data-label="Before" { (before) } td data-label="After" { (after) } }
                }
            }
        }
        h2 { "Entries" }
        @if purge.entries_removed == 0 {
            p #purge-entries { "No entry is dated before " (purge.horizon) "." }
        } @else {
            p #purge-entries { (purge.entries_removed) " entries dated before " strong { (purge.horizon) } " (" (ranges(&purge.entry_id_ranges)) ", " (purge.postings_removed) " postings)." }
            @if !purge.opening_entries.is_empty() {
                p { "In their place, one opening entry per currency on " (purge.horizon) ":" }
                @for opening in &purge.opening_entries {
                    table.responsive {
                        caption { "Opening entry " a href=(view.href(&format!("/entries/{}", opening.id))) { "#" (opening.id) } " (" (opening.currency) ")" }
                        thead { tr { th scope="col" { "Account" } th scope="col" { "Amount" } } }
                        tbody {
                            @for posting in &opening.postings {
                                tr { td data-label="Account" { (posting.account) } td.amount data-label="Amount" { (posting.amount) } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Attachments" }
        @if purge.attachments_removed.is_empty() {
            p #purge-attachments { "No attachment goes (older than " (day(&purge.attachments_before)) " and not linked to an entry kept)." }
        } @else {
            p #purge-attachments { (purge.attachments_removed.len()) " attachments: those of the removed entries, and those older than " (day(&purge.attachments_before)) " linked to no entry." }
            ul {
                @for file in purge.attachments_removed.iter().take(LISTED_ATTACHMENTS) {
                    li { (file.name) " (" (file.size) " bytes, " (day(&file.created_at)) @if let Some(entry) = file.entry_id { ", entry #" (entry) } ")" }
                }
                @if more > 0 { li { "and " (more) " more" } }
            }
        }
        h2 { "Audit trail" }
        @if purge.audit_events_removed == 0 {
            p #purge-audit { "No audit event goes (before " (day(&purge.audit_before)) ", up to a signed checkpoint)." }
        } @else {
            p #purge-audit { (purge.audit_events_removed) " audit events, through event #" (purge.audit_through_seq) " (the last signed checkpoint before " (day(&purge.audit_before)) ")." }
        }
        h2 { "Backups" }
        @if nothing_due(purge) {
            p #purge-backups { "Nothing goes from the backups." }
        } @else if purge.dry_run {
            p { (purge.backup_snapshots_before.len()) " snapshot(s) and the changes shipped before the purge are deleted once a snapshot after it is in backup storage. The journal keeps a signed anchor: purged through change #" (purge.journal_through_seq) "." }
        } @else {
            p #purge-backups { "Gone from the backups: " (purge.gone_from_backups) ". The journal keeps a signed anchor (change #" (purge.anchor_seq) "): purged through change #" (purge.journal_through_seq) ", hash " code { (purge.journal_through_hash) } "." }
        }
    }
}

/// Nothing is due: a purge would change nothing.
fn nothing_due(purge: &PurgeView) -> bool {
    purge.entries_removed == 0
        && purge.attachments_removed.is_empty()
        && purge.audit_events_removed == 0
}

fn preview_page(view: &View, purge: &PurgeView, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { (layout::notice("error", error)) }
        p { "What a purge under this company's rules removes today. " strong { "Nothing has changed yet." } }
        @if nothing_due(purge) {
            (layout::notice("success", "Nothing is due: the rules let nothing go yet."))
        }
        (summary(view, purge))
        @if !nothing_due(purge) {
            h2 { "Purge now" }
            p { "This cannot be undone: what is listed above is deleted from the database now (with the exports stored before the purge), and from the backups once a snapshot after the purge is stored. A restore to a moment before the purge will no longer be possible." }
            p.hint { "Beyond the platform's reach: exports already pushed to your own storage, copies your audit drains delivered, and anyone's downloads. Delete those yourself." }
            form.stack method="post" action=(view.href("/purge")) {
                (view.csrf())
                // The cut-offs previewed: a purge confirmed after a new
                // year began, or after the rules were shortened, reaches
                // no further than the preview did.
                @for (name, value) in previewed(purge) {
                    input type="hidden" name=(name) value=(value);
                }
                (confirm_name_field(view.company_name(), error))
                div { button.danger type="submit" { "Purge now" } }
            }
        }
        p { a href=(view.href("/retention")) { "Back to data retention" } }
    }
}

fn refused(view: &View, error: ApiError) -> Response {
    let content = html! {
        (layout::notice("error", &error.detail))
        p { a href=(view.href("/retention")) { "Back to data retention" } }
    };
    (
        error.status,
        view.render(PURGE_TITLE, Nav::Retention, content),
    )
        .into_response()
}

/// `POST /c/{company}/purge/preview`: the dry run (recorded as
/// `data.purge.preview`). A POST: it takes the company's writer for a
/// moment, which no prefetch should do.
pub async fn preview(
    State(platform): State<AppState>,
    page: Page<PurgeData>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    let request = PurgeRequest {
        dry_run: true,
        ..PurgeRequest::default()
    };
    match scope.purge(&platform, request).await {
        Ok(purge) => Ok(view.render(
            PURGE_TITLE,
            Nav::Retention,
            preview_page(&view, &purge, None),
        )),
        Err(e) => Ok(refused(&view, e.into())),
    }
}

/// The cut-offs a preview showed, as the purge form sends them back.
fn previewed(purge: &PurgeView) -> [(&'static str, String); 3] {
    [
        ("entries_before", purge.horizon.clone()),
        (
            "attachments_before",
            day(&purge.attachments_before).to_string(),
        ),
        ("audit_before", day(&purge.audit_before).to_string()),
    ]
}

/// The cut-offs the purge form sent back, or None when one is missing (a
/// form that did not come from a preview).
fn cut_offs_of(form: &Form) -> Option<[String; 3]> {
    Some([
        form.get("entries_before")?.to_string(),
        form.get("attachments_before")?.to_string(),
        form.get("audit_before")?.to_string(),
    ])
}

/// `POST /c/{company}/purge`: the purge, after the name is typed, reaching
/// no further than the preview it came from.
pub async fn purge(
    State(platform): State<AppState>,
    page: Page<PurgeData>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let Some([entries, attachments, audit]) = cut_offs_of(&form) else {
        return Ok(refused(
            &view,
            ApiError::unprocessable(
                "preview-first",
                "Preview the purge first: the purge removes what its preview showed, no more.",
            ),
        ));
    };
    let scope = admission.operate(&platform).await?;
    let request = |dry_run: bool| PurgeRequest {
        dry_run,
        entries_before: Some(entries.clone()),
        attachments_before: Some(attachments.clone()),
        audit_before: Some(audit.clone()),
        confirm: (!dry_run).then(|| form.get("confirm").unwrap_or("").to_string()),
    };
    match scope.purge(&platform, request(false)).await {
        Ok(purge) => {
            let content = html! {
                (layout::notice("success", if nothing_due(&purge) { "Nothing was due: nothing changed." } else { "The purge is done." }))
                (summary(&view, &purge))
                p { a href=(view.href("/retention")) { "Back to data retention" } }
            };
            Ok(view.render(PURGE_TITLE, Nav::Retention, content))
        }
        Err(e) if e.slug == "confirmation-mismatch" => {
            // Refused and on record; the same preview again, with the error.
            match scope.purge(&platform, request(true)).await {
                Ok(purge) => Ok((
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    view.render(
                        PURGE_TITLE,
                        Nav::Retention,
                        preview_page(
                            &view,
                            &purge,
                            Some("The name does not match; type it exactly as shown."),
                        ),
                    ),
                )
                    .into_response()),
                Err(e) => Ok(refused(&view, e.into())),
            }
        }
        Err(e) => Ok(refused(&view, e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_ids_read_as_ranges() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[[3, 3]]), "#3");
        assert_eq!(ranges(&[[1, 4], [7, 7], [9, 12]]), "#1–#4, #7, #9–#12");
        let many: Vec<[i64; 2]> = (0..250).map(|i| [i * 2, i * 2]).collect();
        let shown = ranges(&many);
        assert!(shown.ends_with("#198 and 150 more ranges"), "{shown}");
        assert_eq!(shown.matches('#').count(), LISTED_RANGES);
    }

    #[test]
    fn a_refusal_points_at_its_field() {
        assert_eq!(
            field_in_error("audit_years is 3, below the statutory minimum of 10 years"),
            Some("audit_years")
        );
        assert_eq!(
            field_in_error("Keep exports must be a whole number"),
            Some("exports_days")
        );
        assert_eq!(field_in_error("something else"), None);
    }

    #[test]
    fn cut_offs_read_as_days() {
        assert_eq!(day("2016-01-01T00:00:00Z"), "2016-01-01");
        assert_eq!(day("short"), "short");
        assert_eq!(
            day("2016-01-0é"),
            "2016-01-0é",
            "never split inside a character"
        );
    }

    #[test]
    fn the_rules_form_takes_whole_numbers_only() {
        let form = |v: &str| Form::from_pairs(vec![("entries_years".into(), v.into())]);
        assert_eq!(change_of(&form("12")).unwrap().entries_years, Some(12));
        for bad in ["-1", "ten", "1.5", "99999999999"] {
            let e = change_of(&form(bad)).unwrap_err();
            assert!(e.detail.contains("Keep entries"), "{bad}: {}", e.detail);
        }
        // A field left out keeps its value.
        let empty = change_of(&Form::from_pairs(vec![])).unwrap();
        assert_eq!(empty.entries_years, None);
        assert_eq!(empty.exports_days, None);
    }
}
