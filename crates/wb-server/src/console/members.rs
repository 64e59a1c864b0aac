//! Members and invitations; API keys (a new secret is shown once).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use wb_app::records::{AuditEvent, Outcome};
use wb_core::members::MemberChange;
use wb_core::{Action, Role};

use super::fmt;
use super::form::Form;
use super::layout::{self, Nav};
use super::page::{see_other, Page, PageError, PageResult, View};
use crate::auth::{AppState, ManageApiKeys, ManageMembers};
use crate::problem::ApiError;

fn parse_role(text: Option<&str>) -> Result<Role, ApiError> {
    text.unwrap_or("")
        .parse()
        .map_err(|e: wb_core::roles::UnknownRole| {
            ApiError::unprocessable("invalid-role", e.to_string())
        })
}

fn role_select(id: &str, current: Option<Role>) -> Markup {
    html! {
        select id=(id) name="role" {
            @for role in Role::ALL {
                option value=(role.as_str()) selected[Some(role) == current] { (role.as_str()) }
            }
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct MembersQuery {
    done: Option<String>,
}

fn done_message(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "invited" => Some("Invitation sent."),
        "role" => Some("Role changed."),
        "removed" => Some("Member removed: their access ended at once."),
        "revoked" => Some("Invitation revoked."),
        "key-revoked" => Some("API key revoked."),
        _ => None,
    }
}

pub async fn page(
    State(platform): State<AppState>,
    page: Page<ManageMembers>,
    axum::extract::Query(q): axum::extract::Query<MembersQuery>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.read(&platform, Action::MembersList, None).await?;
    let members = scope.members(&platform).await?;
    scope
        .note(AuditEvent {
            at: platform.now(),
            actor: scope.actor().clone(),
            company_id: Some(scope.company_id().to_string()),
            action: Action::InvitationsList,
            target: None,
            outcome: Outcome::Success,
            detail: None,
        })
        .await;
    let invitations = scope.invitations(&platform).await?;
    Ok(view.render(
        "Members",
        Nav::Members,
        members_content(
            &view,
            &members,
            &invitations,
            done_message(q.done.as_deref()),
            None,
        ),
    ))
}

fn members_content(
    view: &View,
    members: &[wb_app::records::MemberRecord],
    invitations: &[wb_app::records::InvitationRecord],
    done: Option<&str>,
    invited: Option<(&str, &str)>,
) -> Markup {
    html! {
        @if let Some(done) = done { (layout::notice("success", done)) }
        @if let Some((email, token)) = invited {
            (layout::notice("success", &format!("Invitation emailed to {email}.")))
            p { "If the email does not arrive, send this link yourself (it works once):" }
            p.secret { "/accept-invitation#" (token) }
        }
        div.table-wrap {
            table.responsive #members {
                caption { "Members" }
                thead { tr { th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Last login" } th scope="col" { "Actions" } } }
                tbody {
                    @for m in members {
                        tr {
                            td data-label="Email" { (m.email) }
                            td data-label="Name" { (m.name.as_deref().unwrap_or("")) }
                            td data-label="Role" { (m.role.as_str()) }
                            td data-label="Last login" { (m.last_login_at.map(fmt::when).unwrap_or_default()) }
                            td data-label="Actions" {
                                form.inline method="post" action=(view.href(&format!("/members/{}/role", m.user_id))) {
                                    (view.csrf())
                                    label.visually-hidden for={ "role-" (m.user_id) } { "Role of " (m.email) }
                                    (role_select(&format!("role-{}", m.user_id), Some(m.role)))
                                    button.secondary type="submit" { "Change role" span.visually-hidden { " of " (m.email) } }
                                }
                                (view.post_button(&format!("/members/{}/remove", m.user_id), "danger", "Remove", &m.email))
                            }
                        }
                    }
                }
            }
        }
        h2 { "Invite someone" }
        form.inline method="post" action=(view.href("/members/invite")) {
            (view.csrf())
            div { label for="invite-email" { "Email" } input #invite-email type="email" name="email" required; }
            div { label for="invite-role" { "Role" } (role_select("invite-role", Some(Role::Accountant))) }
            div { button type="submit" { "Send invitation" } }
        }
        h2 { "Pending invitations" }
        @if invitations.is_empty() {
            p.muted { "None." }
        } @else {
            table.responsive #invitations {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Expires" } th scope="col" { "Actions" } } }
                tbody {
                    @for i in invitations {
                        tr {
                            td data-label="Email" { (i.email) }
                            td data-label="Role" { (i.role.as_str()) }
                            td data-label="Expires" { (fmt::when(i.expires_at)) }
                            td data-label="Actions" {
                                (view.post_button(&format!("/invitations/{}/revoke", i.id), "secondary", "Revoke", &format!("invitation of {}", i.email)))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn failed(view: &View, title: &str, nav: Nav, back: &str, error: ApiError) -> Response {
    let content = html! {
        (layout::notice("error", &error.detail))
        p { a href=(view.href(back)) { "Back" } }
    };
    let status = error.status;
    (status, view.render(title, nav, content)).into_response()
}

pub async fn invite(
    State(platform): State<AppState>,
    page: Page<ManageMembers>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    let outcome = match parse_role(form.get("role")) {
        Ok(role) => scope
            .invite(&platform, form.get("email").unwrap_or(""), role)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(created) => {
            // Shown once, like the API's answer: the inviter may pass it on
            // when email is slow.
            let content = html! {
                (layout::notice("success", &format!("Invitation emailed to {}.", created.record.email)))
                p { "If the email does not arrive, send this link yourself (it works once):" }
                p.secret data-invitation-link { (platform.mail_settings().public_url.trim_end_matches('/')) "/accept-invitation#" (created.token.expose()) }
                p { a href=(view.href("/members")) { "Back to members" } }
            };
            Ok(view.render("Invitation sent", Nav::Members, content))
        }
        Err(e) => Ok(failed(&view, "Members", Nav::Members, "/members", e)),
    }
}

pub async fn change_role(
    State(platform): State<AppState>,
    page: Page<ManageMembers>,
    Path((_, user)): Path<(String, String)>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    let role = parse_role(form.get("role")).map_err(PageError::from)?;
    match scope
        .change_member(&platform, &user, MemberChange::SetRole(role))
        .await
    {
        Ok(_) => Ok(see_other(&format!("{}?done=role", view.href("/members")))),
        Err(e) => Ok(failed(&view, "Members", Nav::Members, "/members", e.into())),
    }
}

pub async fn remove(
    State(platform): State<AppState>,
    page: Page<ManageMembers>,
    Path((_, user)): Path<(String, String)>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    match scope
        .change_member(&platform, &user, MemberChange::Remove)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "{}?done=removed",
            view.href("/members")
        ))),
        Err(e) => Ok(failed(&view, "Members", Nav::Members, "/members", e.into())),
    }
}

pub async fn revoke_invitation(
    State(platform): State<AppState>,
    page: Page<ManageMembers>,
    Path((_, invitation)): Path<(String, String)>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    match scope.revoke_invitation(&platform, &invitation).await {
        Ok(()) => Ok(see_other(&format!(
            "{}?done=revoked",
            view.href("/members")
        ))),
        Err(e) => Ok(failed(&view, "Members", Nav::Members, "/members", e.into())),
    }
}

fn keys_content(
    view: &View,
    keys: &[wb_app::records::ApiKeyRecord],
    now: time::OffsetDateTime,
    done: Option<&str>,
) -> Markup {
    html! {
        @if let Some(done) = done { (layout::notice("success", done)) }
        div.table-wrap {
            table.responsive #api-keys {
                caption { "API keys" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "State" } th scope="col" { "Actions" } } }
                tbody {
                    @for k in keys {
                        @let active = k.revoked_at.is_none() && k.expires_at > now;
                        tr {
                            td data-label="Name" { (k.name) }
                            td data-label="Role" { (k.role.as_str()) }
                            td data-label="Created" { (fmt::when(k.created_at)) }
                            td data-label="Expires" { (fmt::when(k.expires_at)) }
                            td data-label="State" { @if active { "active" } @else if k.revoked_at.is_some() { "revoked" } @else { "expired" } }
                            td data-label="Actions" {
                                @if active {
                                    form.inline method="post" action=(view.href(&format!("/api-keys/{}/rotate", k.id))) {
                                        (view.csrf())
                                        label for={ "overlap-" (k.id) } { "Old secret works for (hours)" }
                                        input id={ "overlap-" (k.id) } name="overlap_hours" type="number" min="0" max="24" value="0" size="3";
                                        button.secondary type="submit" { "Rotate" span.visually-hidden { " " (k.name) } }
                                    }
                                    (view.post_button(&format!("/api-keys/{}/revoke", k.id), "danger", "Revoke", &k.name))
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "New API key" }
        form.inline method="post" action=(view.href("/api-keys")) {
            (view.csrf())
            div { label for="key-name" { "Name" } input #key-name name="name" required maxlength="100"; }
            div { label for="key-role" { "Role" } (role_select("key-role", Some(Role::Viewer))) }
            div { label for="key-days" { "Expires in (days)" } input #key-days name="expires_in_days" type="number" min="1" max="3650" value="90"; }
            div { button type="submit" { "Create key" } }
        }
    }
}

pub async fn keys_page(
    State(platform): State<AppState>,
    page: Page<ManageApiKeys>,
    axum::extract::Query(q): axum::extract::Query<MembersQuery>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.read(&platform, Action::ApiKeysList, None).await?;
    let keys = scope.api_keys(&platform).await?;
    Ok(view.render(
        "API keys",
        Nav::ApiKeys,
        keys_content(
            &view,
            &keys,
            platform.now(),
            done_message(q.done.as_deref()),
        ),
    ))
}

fn secret_shown_once(view: &View, title: &str, name: &str, token: &str) -> Response {
    let content = html! {
        (layout::notice("warning", "Copy this secret now: it is shown only once and cannot be recovered."))
        p { "Key " strong { (name) } ":" }
        p.secret #new-secret { (token) }
        p { a href=(view.href("/api-keys")) { "Done" } }
    };
    view.render(title, Nav::ApiKeys, content)
}

pub async fn create_key(
    State(platform): State<AppState>,
    page: Page<ManageApiKeys>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    let days = match form.get("expires_in_days").map(str::parse::<i64>) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(_)) => {
            return Ok(failed(
                &view,
                "API keys",
                Nav::ApiKeys,
                "/api-keys",
                ApiError::unprocessable("invalid-expiry", "The expiry must be a number of days."),
            ))
        }
    };
    let outcome = match parse_role(form.get("role")) {
        Ok(role) => scope
            .create_api_key(&platform, form.get("name").unwrap_or(""), role, days)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(created) => Ok(secret_shown_once(
            &view,
            "API key created",
            &created.record.name,
            created.token.expose(),
        )),
        Err(e) => Ok(failed(&view, "API keys", Nav::ApiKeys, "/api-keys", e)),
    }
}

pub async fn rotate_key(
    State(platform): State<AppState>,
    page: Page<ManageApiKeys>,
    Path((_, key)): Path<(String, String)>,
    form: Form,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    let overlap = form
        .get("overlap_hours")
        .and_then(|h| h.parse::<i64>().ok())
        .unwrap_or(0);
    match scope.rotate_api_key(&platform, &key, overlap).await {
        Ok((created, _)) => Ok(secret_shown_once(
            &view,
            "API key rotated",
            &created.record.name,
            created.token.expose(),
        )),
        Err(e) => Ok(failed(
            &view,
            "API keys",
            Nav::ApiKeys,
            "/api-keys",
            e.into(),
        )),
    }
}

pub async fn revoke_key(
    State(platform): State<AppState>,
    page: Page<ManageApiKeys>,
    Path((_, key)): Path<(String, String)>,
) -> PageResult<Response> {
    let (admission, view) = page.into_parts();
    let scope = admission.operate(&platform).await?;
    match scope.revoke_api_key(&platform, &key).await {
        Ok(_) => Ok(see_other(&format!(
            "{}?done=key-revoked",
            view.href("/api-keys")
        ))),
        Err(e) => Ok(failed(
            &view,
            "API keys",
            Nav::ApiKeys,
            "/api-keys",
            e.into(),
        )),
    }
}
