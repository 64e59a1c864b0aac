//! Staff sign-in (email, passphrase AND the authenticator's code, through
//! `Platform::staff_login`, the JSON staff login's service) and sign-out.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::{StaffPage, StaffResult, STAFF_COOKIE};
use crate::api::session::MAX_OTP_BYTES;
use crate::auth::{AppState, RequestMeta, CSRF_COOKIE};
use crate::console::form::Form;
use crate::console::guard::CsrfToken;
use crate::console::layout::{self, public_page};
use crate::console::page::see_other;

fn login_form(csrf: &str, email: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error { (layout::notice("error", error)) }
        p { "For Work-books staff. Customers sign in at " a href="/login" { "the customer console" } "." }
        form.stack method="post" action="/staff/login" {
            input type="hidden" name="_csrf" value=(csrf);
            div {
                label for="email" { "Staff email" }
                input #email type="email" name="email" autocomplete="username" required value=(email)
                    autofocus[email.is_empty()];
            }
            div {
                label for="passphrase" { "Passphrase" }
                input #passphrase type="password" name="passphrase" autocomplete="current-password" required
                    autofocus[!email.is_empty()];
            }
            div {
                label for="otp" { "Authentication code" }
                input #otp type="text" name="otp" inputmode="numeric" autocomplete="one-time-code" required
                    aria-describedby="otp-hint";
                p.hint #otp-hint { "The 6-digit code from the authenticator enrolled when your staff account was made." }
            }
            div { button type="submit" { "Sign in" } }
        }
    }
}

pub async fn page(Extension(csrf): Extension<CsrfToken>) -> Response {
    public_page("Staff sign-in", &csrf.0, login_form(&csrf.0, "", None)).into_response()
}

fn failed(csrf: &str, email: &str, status: StatusCode, detail: String) -> Response {
    let message = if status == StatusCode::TOO_MANY_REQUESTS {
        detail
    } else {
        "The email, passphrase or code is wrong.".to_string()
    };
    (
        status,
        public_page(
            "Staff sign-in",
            csrf,
            login_form(csrf, email, Some(&message)),
        ),
    )
        .into_response()
}

fn cookie(value: String) -> Option<HeaderValue> {
    HeaderValue::from_str(&value).ok()
}

pub async fn login(
    State(platform): State<AppState>,
    Extension(csrf): Extension<CsrfToken>,
    meta: RequestMeta,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let email = form
        .get("email")
        .unwrap_or("")
        .chars()
        .take(320)
        .collect::<String>();
    let passphrase = form.raw("passphrase").unwrap_or("");
    let otp = form.get("otp").unwrap_or("");
    if email.is_empty()
        || passphrase.is_empty()
        || passphrase.len() > MAX_PASSPHRASE_BYTES
        || otp.is_empty()
        || otp.len() > MAX_OTP_BYTES
    {
        return failed(&csrf.0, &email, StatusCode::UNAUTHORIZED, String::new());
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let signed_in = platform
        .staff_login(
            &email,
            &Secret::new(passphrase.to_string()),
            &Secret::new(otp.to_string()),
            meta.anonymous_actor(),
            user_agent,
        )
        .await;
    let (token, expires_at) = match signed_in {
        Ok(ok) => ok,
        Err(e) => {
            let e = crate::problem::ApiError::from(e);
            return failed(&csrf.0, &email, e.status, e.detail);
        }
    };
    let max_age = (expires_at - platform.now()).whole_seconds().max(0);
    let mut response = see_other("/staff");
    // A new CSRF token with the new session.
    let fresh_csrf = wb_crypto::new_token("csrf");
    for value in [
        cookie(format!(
            "{STAFF_COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict",
            token.expose()
        )),
        cookie(format!(
            "{CSRF_COOKIE}={}; Path=/; Secure; SameSite=Strict",
            fresh_csrf.token.expose()
        )),
    ]
    .into_iter()
    .flatten()
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn logout(State(platform): State<AppState>, page: StaffPage) -> StaffResult {
    platform.staff_logout(&page.staff).await?;
    let mut response = see_other("/staff/login");
    if let Some(value) = cookie(format!(
        "{STAFF_COOKIE}=; Path=/; Max-Age=0; Secure; SameSite=Strict"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
