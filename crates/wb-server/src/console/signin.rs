//! Pages outside a session: log in (passphrase, then a code or a passkey),
//! sign up, passphrase reset, invitations; and the home page that sends a
//! signed-in person to their company.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use wb_app::login::{LoginStep, SecondFactor};
use wb_app::members::Acceptance;
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::form::Form;
use super::guard::CsrfToken;
use super::layout::{self, public_page};
use super::page::{safe_next, see_other, PageResult, Viewer};
use crate::api::session::{clear_session_cookies, session_cookies, MAX_OTP_BYTES};
use crate::auth::{AppState, RequestMeta};
use crate::platform::Session;
use crate::problem::ApiError;

#[derive(Debug, Deserialize)]
pub struct HomeQuery {
    company: Option<String>,
}

/// `/`: the company chosen in the switcher, the first company, or the login.
pub async fn home(viewer: Option<Viewer>, Query(q): Query<HomeQuery>) -> Response {
    let Some(viewer) = viewer else {
        return see_other("/login");
    };
    let chosen = q
        .company
        .as_deref()
        .and_then(|c| viewer.chrome.companies.iter().find(|(id, _, _)| id == c))
        .or_else(|| viewer.chrome.companies.first());
    match chosen {
        Some((id, _, _)) => see_other(&format!("/c/{id}")),
        None => see_other("/account"),
    }
}

fn csrf_input(token: &str) -> Markup {
    html! { input type="hidden" name="_csrf" value=(token); }
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_form(csrf: &str, next: Option<&str>, email: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { (layout::notice("error", error)) }
        form.stack method="post" action="/login" {
            (csrf_input(csrf))
            @if let Some(next) = next.filter(|n| safe_next(n)) {
                input type="hidden" name="next" value=(next);
            }
            div {
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="username" required value=(email)
                    autofocus[email.is_empty()];
            }
            div {
                label for="passphrase" { "Passphrase" }
                input #passphrase type="password" name="passphrase" autocomplete="current-password" required
                    autofocus[!email.is_empty()];
            }
            div { button type="submit" { "Log in" } }
        }
        p { a href="/reset-passphrase" { "Forgot your passphrase?" } }
        p { "New to Work-books? " a href="/signup" { "Create a company" } }
    }
}

pub async fn login_page(
    Extension(csrf): Extension<CsrfToken>,
    Query(q): Query<LoginQuery>,
) -> Response {
    public_page(
        "Log in",
        &csrf.0,
        login_form(&csrf.0, q.next.as_deref(), "", None),
    )
    .into_response()
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// After a login: the new session's cookies (a new session id and a new
/// CSRF token) and the page the person was going to.
fn signed_in(session: &Session, next: Option<&str>) -> Response {
    let mut headers = HeaderMap::new();
    session_cookies(session, &mut headers);
    let to = next.filter(|n| safe_next(n)).unwrap_or("/");
    let mut response = see_other(to);
    for value in headers.get_all(header::SET_COOKIE) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, value.clone());
    }
    response
}

fn second_factor_form(
    csrf: &str,
    challenge: &str,
    methods: &[&str],
    passkey: Option<String>,
    next: Option<&str>,
    error: Option<&str>,
) -> Markup {
    html! {
        @if let Some(error) = error { (layout::notice("error", error)) }
        p { "Your account is protected by a second factor." }
        form.stack method="post" action="/login/code" {
            (csrf_input(csrf))
            input type="hidden" name="challenge" value=(challenge);
            @if let Some(next) = next.filter(|n| safe_next(n)) {
                input type="hidden" name="next" value=(next);
            }
            @if methods.contains(&"totp") || methods.contains(&"recovery_code") {
                div {
                    label for="otp" { "Authentication code" }
                    input #otp type="text" name="otp" inputmode="numeric" autocomplete="one-time-code"
                        autofocus aria-describedby="otp-hint";
                    p.hint #otp-hint { "The 6-digit code from your authenticator app, or one of your recovery codes." }
                }
                div { button type="submit" { "Verify" } }
            }
            @if let Some(options) = passkey {
                input type="hidden" name="passkey" value="";
                div {
                    button.secondary type="button" data-passkey-options=(options) hidden { "Use a passkey" }
                    p.hint #passkey-status aria-live="polite" {}
                }
            }
        }
        p { a href="/login" { "Start again" } }
    }
}

fn login_failed(csrf: &str, next: Option<&str>, email: &str, error: ApiError) -> Response {
    let status = error.status;
    let message = if status == StatusCode::TOO_MANY_REQUESTS {
        error.detail
    } else {
        "The email or passphrase is wrong.".to_string()
    };
    let page = public_page(
        "Log in",
        csrf,
        login_form(csrf, next, email, Some(&message)),
    );
    (status, page).into_response()
}

pub async fn login(
    State(platform): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    meta: RequestMeta,
    headers: HeaderMap,
    form: Form,
) -> PageResult {
    let email = form.get("email").unwrap_or("").to_string();
    let next = form.get("next").map(str::to_string);
    let passphrase = Secret::new(form.raw("passphrase").unwrap_or("").to_string());
    if email.is_empty()
        || passphrase.expose().is_empty()
        || passphrase.expose().len() > MAX_PASSPHRASE_BYTES
    {
        return Ok(login_failed(
            &csrf.0,
            next.as_deref(),
            &email,
            ApiError::unauthorized("wrong"),
        ));
    }
    let step = platform
        .login_step(
            &email,
            &passphrase,
            None,
            meta.anonymous_actor(),
            user_agent(&headers),
        )
        .await;
    match step {
        Ok(LoginStep::Session(session)) => Ok(signed_in(&session, next.as_deref())),
        Ok(LoginStep::SecondFactor(prompt)) => {
            let passkey = prompt
                .passkey
                .as_ref()
                .and_then(|o| serde_json::to_string(o).ok());
            let content = second_factor_form(
                &csrf.0,
                prompt.challenge.expose(),
                &prompt.methods,
                passkey,
                next.as_deref(),
                None,
            );
            Ok(public_page("Second factor", &csrf.0, content).into_response())
        }
        Err(e) => Ok(login_failed(&csrf.0, next.as_deref(), &email, e.into())),
    }
}

pub async fn second_factor(
    State(platform): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    meta: RequestMeta,
    headers: HeaderMap,
    form: Form,
) -> PageResult {
    let next = form.get("next").map(str::to_string);
    let challenge = form.get("challenge").unwrap_or("").to_string();
    let factor = match (form.get("otp"), form.get("passkey")) {
        (Some(otp), _) if otp.len() <= MAX_OTP_BYTES => {
            Some(SecondFactor::Code(Secret::new(otp.to_string())))
        }
        (None, Some(assertion)) => serde_json::from_str(assertion)
            .ok()
            .map(|a| SecondFactor::Passkey(Box::new(a))),
        _ => None,
    };
    let outcome = match factor {
        Some(factor) if !challenge.is_empty() && challenge.len() <= 128 => platform
            .login_second_factor(
                &Secret::new(challenge.clone()),
                &factor,
                meta.anonymous_actor(),
                user_agent(&headers),
            )
            .await
            .map_err(ApiError::from),
        _ => Err(ApiError::unauthorized("no code")),
    };
    match outcome {
        Ok(session) => Ok(signed_in(&session, next.as_deref())),
        Err(e) => {
            // The challenge survives a few wrong codes; when it is used up,
            // the person starts again with the passphrase.
            let message = if e.status == StatusCode::TOO_MANY_REQUESTS {
                e.detail
            } else {
                "That code was not accepted. Try the current code from your app, or a recovery code."
                    .to_string()
            };
            let content = second_factor_form(
                &csrf.0,
                &challenge,
                &["totp", "recovery_code"],
                None,
                next.as_deref(),
                Some(&message),
            );
            Ok((e.status, public_page("Second factor", &csrf.0, content)).into_response())
        }
    }
}

pub async fn logout(State(platform): State<AppState>, viewer: Viewer) -> PageResult {
    platform
        .logout(&viewer.caller.principal, viewer.caller.actor.clone())
        .await?;
    let mut response = see_other("/login");
    clear_session_cookies(response.headers_mut());
    Ok(response)
}

fn signup_form(csrf: &str, company: &str, email: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { (layout::notice("error", error)) }
        form.stack method="post" action="/signup" {
            (csrf_input(csrf))
            div {
                label for="company_name" { "Company name" }
                input #company_name type="text" name="company_name" required maxlength="200" value=(company) autocomplete="organization";
            }
            div {
                label for="email" { "Email" }
                input #email type="email" name="email" required value=(email) autocomplete="username";
            }
            div {
                label for="passphrase" { "Passphrase" }
                input #passphrase type="password" name="passphrase" required autocomplete="new-password" aria-describedby="passphrase-hint";
                p.hint #passphrase-hint { "Several unrelated words are easiest to remember. Common or breached passwords are refused." }
            }
            div { button type="submit" { "Create company" } }
        }
        p { "Already have an account? " a href="/login" { "Log in" } }
    }
}

pub async fn signup_page(Extension(csrf): Extension<CsrfToken>) -> Response {
    public_page(
        "Create a company",
        &csrf.0,
        signup_form(&csrf.0, "", "", None),
    )
    .into_response()
}

pub async fn signup(
    State(platform): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    meta: RequestMeta,
    form: Form,
) -> PageResult {
    let company = form.get("company_name").unwrap_or("").to_string();
    let email = form.get("email").unwrap_or("").to_string();
    let passphrase = Secret::new(form.raw("passphrase").unwrap_or("").to_string());
    let refused = |e: ApiError| {
        let page = public_page(
            "Create a company",
            &csrf.0,
            signup_form(&csrf.0, &company, &email, Some(&e.detail)),
        );
        (e.status, page).into_response()
    };
    if passphrase.expose().len() > MAX_PASSPHRASE_BYTES {
        return Ok(refused(ApiError::unprocessable(
            "weak-passphrase",
            format!("A passphrase is at most {MAX_PASSPHRASE_BYTES} bytes."),
        )));
    }
    match platform
        .signup_request(&company, &email, &passphrase, meta.anonymous_actor())
        .await
    {
        Ok(signup) => {
            let (company, session) = signup.into_answer();
            Ok(signed_in(&session, Some(&format!("/c/{}", company.id))))
        }
        Err(e) => Ok(refused(e.into())),
    }
}

fn reset_forms(csrf: &str, message: Option<(&str, &str)>) -> Markup {
    html! {
        @if let Some((kind, text)) = message { (layout::notice(kind, text)) }
        h2 { "Send me a reset link" }
        form.stack method="post" action="/reset-passphrase" {
            (csrf_input(csrf))
            div {
                label for="reset-email" { "Email" }
                input #reset-email type="email" name="email" required autocomplete="username";
            }
            div { button type="submit" { "Send reset link" } }
        }
        h2 { "Set a new passphrase" }
        form.stack method="post" action="/reset-passphrase/complete" {
            (csrf_input(csrf))
            div {
                label for="reset-token" { "Reset code" }
                input #reset-token type="text" name="token" required data-from-hash autocomplete="off" aria-describedby="reset-token-hint";
                p.hint #reset-token-hint { "Filled in when you open the emailed link; otherwise paste the part of the link after #." }
            }
            div {
                label for="new-passphrase" { "New passphrase" }
                input #new-passphrase type="password" name="passphrase" required autocomplete="new-password";
            }
            div { button type="submit" { "Set passphrase" } }
        }
    }
}

pub async fn reset_page(Extension(csrf): Extension<CsrfToken>) -> Response {
    public_page("Reset your passphrase", &csrf.0, reset_forms(&csrf.0, None)).into_response()
}

pub async fn request_reset(
    State(platform): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    meta: RequestMeta,
    form: Form,
) -> PageResult {
    let email = form.get("email").unwrap_or("");
    let outcome = platform
        .request_passphrase_reset(email, meta.anonymous_actor())
        .await;
    let (status, message) = match outcome {
        Ok(()) => (
            StatusCode::OK,
            (
                "success",
                "If an account has this email address, a reset link was sent to it.".to_string(),
            ),
        ),
        Err(e) => {
            let e = ApiError::from(e);
            (e.status, ("error", e.detail))
        }
    };
    let page = public_page(
        "Reset your passphrase",
        &csrf.0,
        reset_forms(&csrf.0, Some((message.0, &message.1))),
    );
    Ok((status, page).into_response())
}

pub async fn complete_reset(
    State(platform): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    meta: RequestMeta,
    form: Form,
) -> PageResult {
    let token = Secret::new(form.get("token").unwrap_or("").to_string());
    let passphrase = Secret::new(form.raw("passphrase").unwrap_or("").to_string());
    let outcome = if passphrase.expose().len() > MAX_PASSPHRASE_BYTES || token.expose().len() > 128
    {
        Err(ApiError::unprocessable(
            "weak-passphrase",
            "That passphrase or code is too long.",
        ))
    } else {
        platform
            .complete_passphrase_reset(&token, &passphrase, meta.anonymous_actor())
            .await
            .map_err(ApiError::from)
    };
    match outcome {
        Ok(_) => {
            let content = html! {
                (layout::notice("success", "Your passphrase was changed and every session of your account was ended."))
                p { a.button href="/login" { "Log in" } }
            };
            Ok(public_page("Passphrase changed", &csrf.0, content).into_response())
        }
        Err(e) => {
            let page = public_page(
                "Reset your passphrase",
                &csrf.0,
                reset_forms(&csrf.0, Some(("error", &e.detail))),
            );
            Ok((e.status, page).into_response())
        }
    }
}

fn invitation_form(csrf: &str, signed_in_as: Option<&str>, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { (layout::notice("error", error)) }
        @if let Some(email) = signed_in_as {
            p { "You are logged in as " strong { (email) } ". Accepting adds the company to this account." }
        } @else {
            p { "If you already have an account, " a href="/login?next=/accept-invitation" { "log in" } " first, then open the link again. Otherwise choose a passphrase for your new account." }
        }
        form.stack method="post" action="/accept-invitation" {
            (csrf_input(csrf))
            div {
                label for="invitation-token" { "Invitation code" }
                input #invitation-token type="text" name="token" required data-from-hash autocomplete="off" aria-describedby="invitation-token-hint";
                p.hint #invitation-token-hint { "Filled in when you open the emailed link; otherwise paste the part of the link after #." }
            }
            @if signed_in_as.is_none() {
                div {
                    label for="invitee-name" { "Your name" }
                    input #invitee-name type="text" name="name" maxlength="200" autocomplete="name";
                }
                div {
                    label for="invitee-passphrase" { "Passphrase" }
                    input #invitee-passphrase type="password" name="passphrase" autocomplete="new-password";
                }
            }
            div { button type="submit" { "Accept invitation" } }
        }
    }
}

pub async fn invitation_page(
    Extension(csrf): Extension<CsrfToken>,
    viewer: Option<Viewer>,
) -> Response {
    let email = viewer.as_ref().and_then(|v| v.chrome.email.clone());
    public_page(
        "Accept an invitation",
        &csrf.0,
        invitation_form(&csrf.0, email.as_deref(), None),
    )
    .into_response()
}

pub async fn accept_invitation(
    State(platform): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    meta: RequestMeta,
    viewer: Option<Viewer>,
    form: Form,
) -> PageResult {
    let token = form.get("token").unwrap_or("").to_string();
    let passphrase = form.raw("passphrase").map(|p| Secret::new(p.to_string()));
    let email = viewer.as_ref().and_then(|v| v.chrome.email.clone());
    let outcome = if token.len() > 128
        || passphrase
            .as_ref()
            .is_some_and(|p| p.expose().len() > MAX_PASSPHRASE_BYTES)
    {
        Err(crate::members::invitation_invalid().into())
    } else {
        let (principal, actor) = match &viewer {
            Some(v) => (Some(&v.caller.principal), v.caller.actor.clone()),
            None => (None, meta.anonymous_actor()),
        };
        platform
            .accept_invitation(
                &Secret::new(token),
                Acceptance {
                    passphrase,
                    name: form.get("name").map(str::to_string),
                },
                principal,
                actor,
            )
            .await
            .map_err(ApiError::from)
    };
    match outcome {
        Ok(session) => Ok(signed_in(&session, Some("/"))),
        Err(e) => {
            let page = public_page(
                "Accept an invitation",
                &csrf.0,
                invitation_form(&csrf.0, email.as_deref(), Some(&e.detail)),
            );
            Ok((e.status, page).into_response())
        }
    }
}

pub async fn help(Extension(csrf): Extension<CsrfToken>, viewer: Option<Viewer>) -> Response {
    let content = html! {
        h2 { "Keyboard shortcuts" }
        (layout::shortcut_list())
        p { "Shortcuts work anywhere outside a text field. Every page also works without them, and without JavaScript." }
    };
    match viewer {
        Some(v) => v.page("Help", layout::Nav::None, content),
        None => public_page("Help", &csrf.0, content).into_response(),
    }
}
