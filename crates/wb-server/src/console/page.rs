//! What a console handler starts from: the signed-in viewer ([`Viewer`]) or
//! a company page admitted by the door ([`Page`]), and how a refusal or a
//! failed service call becomes a page ([`PageError`]).

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::guard::CsrfToken;
use super::layout::{self, Chrome, Nav};
use crate::access::{Admission, Caller};
use crate::auth::{AppState, Authenticated, Need};
use crate::platform::Principal;
use crate::problem::ApiError;

/// A failure shown as a page: 401 sends the browser to the login page,
/// anything else is a page with the service's explanation.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    /// Where to log in again and come back to (a 401 only).
    pub back_to: Option<String>,
}

impl PageError {
    pub fn from_api(error: ApiError, back_to: Option<String>) -> PageError {
        PageError {
            status: error.status,
            title: error.title.to_string(),
            detail: error.detail,
            back_to,
        }
    }

    pub fn not_found(what: &str) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            title: "Not found".into(),
            detail: format!("This {what} does not exist, or you have no access to it."),
            back_to: None,
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> PageError {
        PageError::from_api(error, None)
    }
}

impl From<wb_app::error::ServiceError> for PageError {
    fn from(error: wb_app::error::ServiceError) -> PageError {
        PageError::from_api(error.into(), None)
    }
}

impl From<wb_core::ledger::LedgerError> for PageError {
    fn from(error: wb_core::ledger::LedgerError) -> PageError {
        PageError::from_api(error.into(), None)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNAUTHORIZED {
            let next = self
                .back_to
                .filter(|p| safe_next(p))
                .map(|p| {
                    format!(
                        "/login?next={}",
                        url::form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()
                    )
                })
                .unwrap_or_else(|| "/login".into());
            return Redirect::to(&next).into_response();
        }
        let markup = layout::bare_page(&self.title, &self.detail);
        let mut response = (self.status, markup).into_response();
        response.headers_mut().remove(header::CONTENT_LENGTH);
        response
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

/// A path this site may send a browser back to after login: a local path,
/// never another origin (`//host`, `/\host`).
pub fn safe_next(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 512
        && path.bytes().all(|b| b.is_ascii_graphic())
}

fn here(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

fn csrf_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<CsrfToken>()
        .map(|t| t.0.clone())
        .unwrap_or_default()
}

/// The signed-in person looking at a page (sessions only: an API key has no
/// console).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub caller: Caller,
    pub chrome: Chrome,
}

impl Viewer {
    pub fn page(&self, title: &str, nav: Nav, content: Markup) -> Response {
        layout::page(&self.chrome, title, nav, content).into_response()
    }
}

async fn viewer(parts: &mut Parts, state: &AppState) -> PageResult<Viewer> {
    let back_to = (parts.method == axum::http::Method::GET).then(|| here(parts));
    let Authenticated(caller) = Authenticated::from_request_parts(parts, state)
        .await
        .map_err(|e| PageError::from_api(e, back_to.clone()))?;
    let Principal::User { user_id, .. } = &caller.principal else {
        return Err(PageError::from_api(
            ApiError::unauthorized("the console is used with a session"),
            back_to,
        ));
    };
    let (user, memberships) = state.user_with_companies(user_id).await?;
    let companies = memberships
        .into_iter()
        .map(|(m, c)| (c.id, c.name, m.role.as_str().to_string()))
        .collect();
    Ok(Viewer {
        caller,
        chrome: Chrome {
            email: Some(user.email),
            companies,
            current: None,
            csrf: csrf_of(parts),
        },
    })
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> PageResult<Viewer> {
        viewer(parts, state).await
    }
}

/// `Option<Viewer>`: None when nobody is signed in.
impl axum::extract::OptionalFromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> PageResult<Option<Viewer>> {
        if crate::auth::cookie(&parts.headers, crate::auth::SESSION_COOKIE).is_none() {
            return Ok(None);
        }
        match viewer(parts, state).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A company page: the viewer, admitted by the door (`Company<P>`) to the
/// `{company}` of the path for `P`'s permission. The page reaches the
/// company's data only through the admission, like an API handler.
#[derive(Debug)]
pub struct Page<P: Need> {
    pub admission: Admission,
    pub viewer: Viewer,
    need: std::marker::PhantomData<P>,
}

impl<P: Need> Page<P> {
    /// The door's admission (to turn into a recorded read or a change) and
    /// what the page needs to render.
    pub fn into_parts(self) -> (Admission, View) {
        let company = self.admission.company_id().to_string();
        (
            self.admission,
            View {
                viewer: self.viewer,
                company,
            },
        )
    }
}

/// A company page's rendering side: the viewer and the company.
#[derive(Debug, Clone)]
pub struct View {
    pub viewer: Viewer,
    pub company: String,
}

impl View {
    /// `/c/{company}{rest}`
    pub fn href(&self, rest: &str) -> String {
        format!("/c/{}{rest}", self.company)
    }

    pub fn chrome(&self) -> &Chrome {
        &self.viewer.chrome
    }

    /// The name of the company the page is about, as the header shows it.
    pub fn company_name(&self) -> &str {
        self.viewer
            .chrome
            .current
            .as_ref()
            .map_or("", |(_, name, _)| name.as_str())
    }

    pub fn csrf(&self) -> Markup {
        layout::csrf_field(&self.viewer.chrome)
    }

    pub fn render(&self, title: &str, nav: Nav, content: Markup) -> Response {
        self.viewer.page(title, nav, content)
    }

    /// A form of one button that POSTs to `/c/{company}{rest}` (remove,
    /// revoke); `what` completes the button's name for screen readers.
    pub fn post_button(&self, rest: &str, class: &str, label: &str, what: &str) -> Markup {
        html! {
            form.inline method="post" action=(self.href(rest)) {
                (self.csrf())
                button class=(class) type="submit" { (label) span.visually-hidden { " " (what) } }
            }
        }
    }
}

impl<P: Need> FromRequestParts<AppState> for Page<P> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> PageResult<Self> {
        let mut viewer = viewer(parts, state).await?;
        let back_to = (parts.method == axum::http::Method::GET).then(|| here(parts));
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| PageError::not_found("company"))?;
        let company = params
            .iter()
            .find(|(name, _)| *name == "company")
            .map(|(_, value)| value.to_string())
            .ok_or_else(|| PageError::not_found("company"))?;
        // The door, as for the API's `Company<P>`.
        let admission = state
            .admit(viewer.caller.clone(), &company, P::PERMISSION)
            .await
            .map_err(|e| PageError::from_api(e.into(), back_to))?;
        viewer.chrome.current = viewer
            .chrome
            .companies
            .iter()
            .find(|(id, _, _)| id == admission.company_id())
            .cloned();
        Ok(Page {
            admission,
            viewer,
            need: std::marker::PhantomData,
        })
    }
}

/// A "see other" to a page after a change (POST, redirect, GET).
pub fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// The field of a destructive form where the company's name is typed to
/// confirm (the service compares it); `error` shown beside it.
pub fn confirm_name_field(name: &str, error: Option<&str>) -> Markup {
    html! {
        div {
            label for="confirm-name" { "Type the company's name to confirm: " strong { (name) } }
            input #confirm-name name="confirm" required autocomplete="off" aria-describedby=[error.map(|_| "confirm-name-error")];
            (field_error("confirm-name", error))
        }
    }
}

/// A form's error, shown next to the field it concerns.
pub fn field_error(id: &str, message: Option<&str>) -> Markup {
    html! {
        @if let Some(message) = message {
            p.field-error id={ (id) "-error" } { (message) }
        }
    }
}
