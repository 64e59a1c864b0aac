//! My account: sessions, passphrase, authenticator app and recovery codes.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::fmt;
use super::form::Form;
use super::layout::{self, csrf_field, Nav};
use super::page::{see_other, PageResult, Viewer};
use crate::auth::AppState;
use crate::problem::ApiError;

#[derive(Debug, serde::Deserialize)]
pub struct MeQuery {
    done: Option<String>,
}

/// `data:` URL of an SVG (the CSP allows `data:` images, not inline SVG
/// from elsewhere).
fn svg_data_url(svg: &str) -> String {
    let mut out = String::from("data:image/svg+xml,");
    for b in svg.bytes() {
        if b.is_ascii_alphanumeric() || b" -_.~:/=,".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn content(
    platform: &AppState,
    viewer: &Viewer,
    notice: Option<(&str, &str)>,
) -> PageResult<Markup> {
    let principal = &viewer.caller.principal;
    let sessions = platform.my_sessions(principal).await?;
    let mfa = platform.mfa_status(principal).await?;
    let passkeys = platform.my_passkeys(principal).await?;
    let chrome = &viewer.chrome;
    Ok(html! {
        @if let Some((kind, text)) = notice { (layout::notice(kind, text)) }
        p { "Signed in as " strong { (chrome.email.as_deref().unwrap_or("")) } "." }
        @if !chrome.companies.is_empty() {
            h2 { "Companies" }
            ul { @for (id, name, role) in &chrome.companies { li { a href={ "/c/" (id) } { (name) } " (" (role) ")" } } }
        }
        h2 { "Second factor" }
        @if mfa.totp == "enabled" {
            p { "Authenticator app: " strong { "on" } @if let Some(at) = mfa.totp_confirmed_at { " since " (fmt::when(at)) } ". Recovery codes left: " (mfa.recovery_codes_left) "." }
        } @else {
            p { "Authenticator app: " strong { "off" } ". Turn it on to protect your account with a code from your phone." }
            form.stack method="post" action="/account/totp" {
                (csrf_field(chrome))
                div {
                    label for="totp-passphrase" { "Your passphrase" }
                    input #totp-passphrase type="password" name="passphrase" required autocomplete="current-password";
                }
                div { button type="submit" { "Set up authenticator app" } }
            }
        }
        h2 { "Passkeys" }
        @if passkeys.is_empty() {
            p { "No passkey yet. A passkey (your phone, a security key or this computer) can replace the code at login." }
        } @else {
            table.responsive #passkeys {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Added" } th scope="col" { "Last used" } th scope="col" { "Remove" } } }
                tbody {
                    @for k in &passkeys {
                        tr {
                            td data-label="Name" { (k.name) }
                            td data-label="Added" { (fmt::when(k.created_at)) }
                            td data-label="Last used" { (k.last_used_at.map(fmt::when).unwrap_or_else(|| "never".into())) }
                            td data-label="Remove" {
                                form.inline method="post" action={ "/account/passkeys/" (k.id) "/remove" } {
                                    (csrf_field(chrome))
                                    label.visually-hidden for={ "rm-" (k.id) } { "Your passphrase, to remove " (k.name) }
                                    input id={ "rm-" (k.id) } type="password" name="passphrase" required autocomplete="current-password" placeholder="Passphrase";
                                    button.secondary type="submit" { "Remove" span.visually-hidden { " " (k.name) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        form.stack method="post" action="/account/passkeys" {
            (csrf_field(chrome))
            div {
                label for="passkey-name" { "Name of the new passkey" }
                input #passkey-name name="name" required maxlength="60" placeholder="e.g. Work laptop";
            }
            div {
                label for="passkey-passphrase" { "Confirm with your passphrase" }
                input #passkey-passphrase type="password" name="passphrase" required autocomplete="current-password";
            }
            div { button type="submit" { "Add a passkey" } }
        }
        h2 { "Sessions" }
        table.responsive #sessions {
            thead { tr { th scope="col" { "Started" } th scope="col" { "Last seen" } th scope="col" { "Client" } th scope="col" { "Browser" } th scope="col" { "End" } } }
            tbody {
                @for s in &sessions {
                    tr {
                        td data-label="Started" { (fmt::when(s.created_at)) @if s.current { " " strong.badge { "this session" } } }
                        td data-label="Last seen" { (s.last_seen_at.map(fmt::when).unwrap_or_default()) }
                        td data-label="Client" { (s.client.as_deref().unwrap_or("")) }
                        td data-label="Browser" { (s.user_agent.as_deref().map(|u| u.chars().take(80).collect::<String>()).unwrap_or_default()) }
                        td data-label="End" {
                            @if !s.current {
                                form method="post" action={ "/account/sessions/" (s.id) "/end" } {
                                    (csrf_field(chrome))
                                    button.secondary type="submit" { "End" span.visually-hidden { " the session started " (fmt::when(s.created_at)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        form method="post" action="/account/sessions/end-others" {
            (csrf_field(chrome))
            button.secondary type="submit" { "End every other session" }
        }
        h2 { "Change passphrase" }
        form.stack method="post" action="/account/passphrase" {
            (csrf_field(chrome))
            div { label for="current" { "Current passphrase" } input #current type="password" name="current" required autocomplete="current-password"; }
            div { label for="new" { "New passphrase" } input #new type="password" name="new" required autocomplete="new-password"; }
            div { button type="submit" { "Change passphrase" } }
        }
    })
}

pub async fn page(
    State(platform): State<AppState>,
    viewer: Viewer,
    axum::extract::Query(q): axum::extract::Query<MeQuery>,
) -> PageResult<Response> {
    let notice = match q.done.as_deref() {
        Some("passphrase") => Some((
            "success",
            "Passphrase changed; your other sessions were ended.",
        )),
        Some("sessions") => Some(("success", "Every other session was ended.")),
        Some("session") => Some(("success", "The session was ended.")),
        Some("passkey") => Some((
            "success",
            "The passkey was added; your next login can use it.",
        )),
        Some("passkey-removed") => Some(("success", "The passkey was removed.")),
        _ => None,
    };
    let content = content(&platform, &viewer, notice).await?;
    Ok(viewer.page("My account", Nav::None, content))
}

async fn refused(platform: &AppState, viewer: &Viewer, e: ApiError) -> PageResult<Response> {
    let status = e.status;
    let content = content(platform, viewer, Some(("error", &e.detail))).await?;
    Ok((status, viewer.page("My account", Nav::None, content)).into_response())
}

pub async fn change_passphrase(
    State(platform): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> PageResult<Response> {
    let current = Secret::new(form.raw("current").unwrap_or("").to_string());
    let new = Secret::new(form.raw("new").unwrap_or("").to_string());
    if current.expose().len() > MAX_PASSPHRASE_BYTES || new.expose().len() > MAX_PASSPHRASE_BYTES {
        return refused(
            &platform,
            &viewer,
            ApiError::unprocessable(
                "weak-passphrase",
                format!("A passphrase is at most {MAX_PASSPHRASE_BYTES} bytes."),
            ),
        )
        .await;
    }
    match platform
        .change_my_passphrase(
            &viewer.caller.principal,
            &current,
            &new,
            viewer.caller.actor.clone(),
        )
        .await
    {
        Ok(_) => Ok(see_other("/account?done=passphrase")),
        Err(e) => refused(&platform, &viewer, e.into()).await,
    }
}

pub async fn end_session(
    State(platform): State<AppState>,
    viewer: Viewer,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> PageResult<Response> {
    platform
        .end_my_sessions(
            &viewer.caller.principal,
            Some(&id),
            viewer.caller.actor.clone(),
        )
        .await?;
    Ok(see_other("/account?done=session"))
}

pub async fn end_other_sessions(
    State(platform): State<AppState>,
    viewer: Viewer,
) -> PageResult<Response> {
    platform
        .end_my_sessions(&viewer.caller.principal, None, viewer.caller.actor.clone())
        .await?;
    Ok(see_other("/account?done=sessions"))
}

pub async fn begin_totp(
    State(platform): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> PageResult<Response> {
    let passphrase = Secret::new(form.raw("passphrase").unwrap_or("").to_string());
    if passphrase.expose().len() > MAX_PASSPHRASE_BYTES {
        return refused(
            &platform,
            &viewer,
            ApiError::unauthorized("The passphrase is wrong."),
        )
        .await;
    }
    let enrolment = match platform
        .begin_totp(
            &viewer.caller.principal,
            &passphrase,
            viewer.caller.actor.clone(),
        )
        .await
    {
        Ok(e) => e,
        Err(e) => return refused(&platform, &viewer, e.into()).await,
    };
    let chrome = &viewer.chrome;
    let content = html! {
        ol {
            li { "Scan this code with your authenticator app:" br;
                img.qr src=(svg_data_url(&enrolment.qr_svg)) alt="QR code of your authenticator secret (the same secret is written below)" width="220" height="220";
            }
            li { "Or type this secret into the app: " span.secret #totp-secret { (enrolment.secret.expose()) } }
            li { "Enter the 6-digit code the app shows:" }
        }
        form.stack method="post" action="/account/totp/confirm" {
            (csrf_field(chrome))
            div {
                label for="confirm-otp" { "Code from the app" }
                input #confirm-otp name="otp" inputmode="numeric" autocomplete="one-time-code" required;
            }
            div { button type="submit" { "Turn on" } }
        }
    };
    Ok(viewer.page("Set up authenticator app", Nav::None, content))
}

pub async fn confirm_totp(
    State(platform): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> PageResult<Response> {
    let code = Secret::new(
        form.get("otp")
            .unwrap_or("")
            .chars()
            .take(64)
            .collect::<String>(),
    );
    match platform
        .confirm_totp(&viewer.caller.principal, &code, viewer.caller.actor.clone())
        .await
    {
        Ok(codes) => {
            let content = html! {
                (layout::notice("success", "The authenticator app is on. Your next login asks for its code."))
                (layout::notice("warning", "Save these recovery codes somewhere safe: each works once if you lose your phone, and they are shown only now."))
                ul.secret #recovery-codes { @for c in &codes { li { (c.expose()) } } }
                p { a.button href="/account" { "Done" } }
            };
            Ok(viewer.page("Recovery codes", Nav::None, content))
        }
        Err(e) => {
            let e = ApiError::from(e);
            let content = html! {
                (layout::notice("error", &e.detail))
                p { a href="/account" { "Start again" } }
            };
            Ok((
                e.status,
                viewer.page("Set up authenticator app", Nav::None, content),
            )
                .into_response())
        }
    }
}

fn bounded_passphrase(form: &Form) -> Option<Secret> {
    let passphrase = Secret::new(form.raw("passphrase").unwrap_or("").to_string());
    (passphrase.expose().len() <= MAX_PASSPHRASE_BYTES).then_some(passphrase)
}

/// First step of adding a passkey: the passphrase again, then a page whose
/// script hands the options to the browser's authenticator.
pub async fn begin_passkey(
    State(platform): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> PageResult<Response> {
    let Some(passphrase) = bounded_passphrase(&form) else {
        return refused(
            &platform,
            &viewer,
            ApiError::forbidden("The passphrase is wrong."),
        )
        .await;
    };
    let name = form.get("name").unwrap_or("").to_string();
    let offer = match platform
        .begin_passkey_registration(
            &viewer.caller.principal,
            &passphrase,
            &name,
            viewer.caller.actor.clone(),
        )
        .await
    {
        Ok(offer) => offer,
        Err(e) => return refused(&platform, &viewer, e.into()).await,
    };
    let options = serde_json::to_string(&offer.options).map_err(|_| ApiError::internal())?;
    let chrome = &viewer.chrome;
    let content = html! {
        p { "Press the button, then touch your security key or confirm on this device or your phone." }
        form.stack #passkey-create method="post" action="/account/passkeys/finish" {
            (csrf_field(chrome))
            input type="hidden" name="ceremony" value=(offer.ceremony.expose());
            input type="hidden" name="credential" value="";
            div {
                button type="button" data-passkey-create=(options) hidden { "Create the passkey" }
                noscript { p { "Adding a passkey needs JavaScript: the browser's authenticator is reached only from a script." } }
                p.hint #passkey-status aria-live="polite" {}
            }
        }
        p { a href="/account" { "Cancel" } }
    };
    Ok(viewer.page("Add a passkey", Nav::None, content))
}

/// Second step: the browser's answer, checked and stored.
pub async fn finish_passkey(
    State(platform): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> PageResult<Response> {
    let ceremony = Secret::new(form.raw("ceremony").unwrap_or("").to_string());
    let credential =
        match serde_json::from_str(form.raw("credential").unwrap_or("")) {
            Ok(c) => c,
            Err(_) => return refused(
                &platform,
                &viewer,
                ApiError::unprocessable(
                    "invalid-passkey",
                    "The browser's answer is not a passkey registration; add the passkey again.",
                ),
            )
            .await,
        };
    match platform
        .finish_passkey_registration(
            &viewer.caller.principal,
            &ceremony,
            &credential,
            viewer.caller.actor.clone(),
        )
        .await
    {
        Ok(_) => Ok(see_other("/account?done=passkey")),
        Err(e) => refused(&platform, &viewer, e.into()).await,
    }
}

pub async fn remove_passkey(
    State(platform): State<AppState>,
    viewer: Viewer,
    axum::extract::Path(id): axum::extract::Path<String>,
    form: Form,
) -> PageResult<Response> {
    let Some(passphrase) = bounded_passphrase(&form) else {
        return refused(
            &platform,
            &viewer,
            ApiError::forbidden("The passphrase is wrong."),
        )
        .await;
    };
    match platform
        .remove_passkey(
            &viewer.caller.principal,
            &id,
            &passphrase,
            viewer.caller.actor.clone(),
        )
        .await
    {
        Ok(()) => Ok(see_other("/account?done=passkey-removed")),
        Err(e) => refused(&platform, &viewer, e.into()).await,
    }
}
