//! Acting under an access grant from the staff console: the company's
//! entries, read THROUGH THE DOOR as the staff session's caller
//! (`Platform::admit` with `ReadBooks`, then a recorded read), exactly as a
//! staff bearer token on `GET /api/v1/companies/{c}/entries`. The door admits
//! the staff member only under an active grant whose scope covers reading
//! the books; the read is recorded in the company's trail under the grant.
//! Outside one, the door's 403 (`grant-required`, on record) is the page.

use axum::extract::{Path, State};
use maud::html;
use wb_app::records::EntryPage;
use wb_core::{Action, Permission};

use super::{StaffNav, StaffPage, StaffResult};
use crate::auth::AppState;
use crate::console::fmt;

/// The newest entries a staff page lists.
const ENTRIES_SHOWN: u32 = 100;

pub async fn entries(
    State(platform): State<AppState>,
    page: StaffPage,
    Path(company): Path<String>,
) -> StaffResult {
    let admission = platform
        .admit(page.staff.door_caller(), &company, Permission::ReadBooks)
        .await?;
    let grant = admission
        .grant()
        .map(|g| (g.id.clone(), g.scope.to_string()));
    let books = admission.read(&platform, Action::EntriesList, None).await?;
    let entries = books
        .entries(EntryPage {
            limit: ENTRIES_SHOWN,
            newest_first: true,
            ..EntryPage::default()
        })
        .await?;
    let content = html! {
        @if let Some((id, scope)) = &grant {
            p.notice.warning data-under-grant=(id) {
                "You are reading this company's books under access grant " (id) " (" (scope) "). "
                "This read is recorded in the company's audit trail, and the company sees it."
            }
        }
        @if entries.is_empty() {
            p { "No entries." }
        } @else {
            div.table-wrap {
                table #entries {
                    caption.visually-hidden { "Entries, newest first" }
                    thead { tr {
                        th scope="col" { "Entry" } th scope="col" { "Date" } th scope="col" { "Description" }
                        th scope="col" { "Reference" } th scope="col" { "Postings" }
                    } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td { "#" (e.id) }
                                td { (e.date) }
                                td { (e.description) }
                                td { (e.reference.as_deref().unwrap_or("")) }
                                td {
                                    @for (i, p) in e.postings.iter().enumerate() {
                                        @if i > 0 { br; }
                                        (p.account) " " (fmt::money(p.currency, i128::from(p.amount)))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page.render("Company entries", StaffNav::Companies, content))
}
