//! The company's access-transparency page: every staff access grant the
//! company may see (what `GET /api/v1/companies/{c}/access-grants` answers,
//! from the same services, through the same door: `ManageSecurity`), with
//! what staff did under each, and the owner's or admin's approve, deny and
//! revoke buttons (`decide_grant`, as the API's decisions).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use wb_app::grants::Decide;
use wb_core::Action;

use super::grant_list;
use super::layout::{self, Nav};
use super::page::{see_other, Page, PageError, PageResult, View};
use crate::api::grants::{listed, GrantView};
use crate::auth::{AppState, ManageSecurity};

#[derive(Debug, Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn controls(view: &View, g: &GrantView) -> Markup {
    let open = g.state == "pending" || g.state == "active";
    // A legal mandate is decided by management alone.
    if !open || g.legal_mandate.is_some() {
        return html! {};
    }
    let company_approved = g.approvals.iter().any(|a| a.side == "company");
    // Approved by both sides: it has its window (and may wait for its start).
    let approved = g.ends_at.is_some();
    let what = format!("grant {}", g.id);
    html! {
        div.actions {
            @if !approved && !company_approved {
                (view.post_button(&format!("/access/{}/approve", g.id), "", "Approve", &what))
            }
            @if !approved {
                (view.post_button(&format!("/access/{}/deny", g.id), "danger", "Deny", &what))
            } @else {
                (view.post_button(&format!("/access/{}/revoke", g.id), "danger", "Revoke", &what))
            }
        }
    }
}

fn done_notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("approve") => "Grant approved.",
        Some("deny") => "Grant denied.",
        Some("revoke") => "Grant revoked.",
        _ => return html! {},
    };
    layout::notice("success", text)
}

pub async fn page(
    State(platform): State<AppState>,
    page: Page<ManageSecurity>,
    Query(q): Query<Done>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.read(&platform, Action::GrantsList, None).await?;
    let grants = scope.access_grants(&platform).await?;
    let list = listed(&platform, &grants).await?;
    let content = html! {
        (done_notice(q.done.as_deref()))
        p {
            "Work-books staff reach your books only under a grant that you (an owner or admin) "
            "and Work-books management both approved, for its reason, scope and time. "
            "Everything done under a grant is listed with it (a few seconds behind)."
        }
        (grant_list::grants(&list.grants, |g| controls(&view, g)))
    };
    Ok(view.render("Staff access", Nav::Access, content))
}

/// `POST /c/{company}/access/{grant}/approve|deny|revoke`.
pub async fn decide(
    State(platform): State<AppState>,
    page: Page<ManageSecurity>,
    Path((_, grant, decision)): Path<(String, String, String)>,
) -> PageResult<Response> {
    let decide = match decision.as_str() {
        "approve" => Decide::Approve {
            mandate_reference: None,
        },
        "deny" => Decide::Deny,
        "revoke" => Decide::Revoke,
        _ => return Err(PageError::not_found("page")),
    };
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    scope.decide_grant(&platform, &grant, decide).await?;
    Ok(see_other(&format!(
        "{}?done={decision}",
        view.href("/access")
    )))
}
