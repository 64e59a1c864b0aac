//! The staff console at `/staff`: Work-books' own staff sign in here with
//! passphrase AND authenticator code into a session of their own, kept in
//! the `__Host-wb_staff` cookie (never the customer console's
//! `__Host-wb_session`: a customer cookie opens no staff page and a staff
//! cookie opens no customer page). Every page is rendered from the same
//! wb-app services as the JSON staff API, whose refusals (on record) it
//! shows; the console's guard (CSP, CSRF, no-store) covers it like the rest.

mod act;
mod alerts;
mod companies;
mod grants;
mod signin;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use wb_app::staff::StaffCaller;
use wb_core::staff::{opens, StaffView};

use super::guard::{CsrfChecked, CsrfToken};
use super::layout::{self, head};
use super::page::PageError;
use crate::auth::{cookie, AppState};

/// The staff session's cookie (`__Host-`: this origin only, `Path=/`).
pub const STAFF_COOKIE: &str = "__Host-wb_staff";

/// The staff console's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/staff", get(companies::home))
        .route("/staff/login", get(signin::page).post(signin::login))
        .route("/staff/logout", post(signin::logout))
        .route("/staff/companies", get(companies::search))
        .route("/staff/companies/{company}", get(companies::detail))
        .route(
            "/staff/companies/{company}/summary",
            get(companies::summary),
        )
        .route("/staff/summary", get(companies::summary_lookup))
        .route("/staff/companies/{company}/entries", get(act::entries))
        .route("/staff/grants", get(grants::mine).post(grants::request))
        .route("/staff/approvals", get(grants::inbox))
        .route("/staff/grants/{grant}/{decision}", post(grants::decide))
        .route("/staff/alerts", get(alerts::list))
        .route("/staff/alerts/{alert}", post(alerts::triage))
}

/// A failure on a staff page: a session that ended goes to the staff
/// sign-in, anything else is the service's explanation with a way back to
/// the staff console (never to the customer console's sign-in).
#[derive(Debug)]
pub struct StaffError(PageError);

pub type StaffResult = Result<Response, StaffError>;

impl From<PageError> for StaffError {
    fn from(e: PageError) -> StaffError {
        StaffError(e)
    }
}

impl From<crate::problem::ApiError> for StaffError {
    fn from(e: crate::problem::ApiError) -> StaffError {
        StaffError(e.into())
    }
}

impl From<wb_app::error::ServiceError> for StaffError {
    fn from(e: wb_app::error::ServiceError) -> StaffError {
        StaffError(e.into())
    }
}

impl IntoResponse for StaffError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status == StatusCode::UNAUTHORIZED {
            return to_login();
        }
        let page =
            layout::bare_page_back(&e.title, &e.detail, "/staff", "Back to the staff console");
        (e.status, page).into_response()
    }
}

/// A signed-in staff member looking at a staff page.
#[derive(Debug, Clone)]
pub struct StaffPage {
    pub staff: StaffCaller,
    pub csrf: String,
}

/// Not signed in (or the session ended): to the staff sign-in.
fn to_login() -> Response {
    Redirect::to("/staff/login").into_response()
}

impl FromRequestParts<AppState> for StaffPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, STAFF_COOKIE)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .map(str::to_string)
        else {
            return Err(to_login());
        };
        // The guard checked every unsafe request's CSRF token and origin; a
        // request it did not mark is no console form.
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if unsafe_method && parts.extensions.get::<CsrfChecked>().is_none() {
            return Err(StatusCode::FORBIDDEN.into_response());
        }
        let staff = match crate::auth::staff_session(parts, state, token).await {
            Ok(staff) => staff,
            Err(e) if e.status == StatusCode::UNAUTHORIZED => return Err(to_login()),
            Err(e) => return Err(StaffError::from(e).into_response()),
        };
        let csrf = parts
            .extensions
            .get::<CsrfToken>()
            .map(|t| t.0.clone())
            .unwrap_or_default();
        Ok(StaffPage { staff, csrf })
    }
}

/// Which staff page is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffNav {
    Home,
    Companies,
    Grants,
    Approvals,
    Alerts,
}

/// The staff pages, each with the view a role must open to see its link
/// (the service refuses the page anyway, on record).
const STAFF_NAV: [(StaffNav, &str, &str, Option<StaffView>); 5] = [
    (StaffNav::Home, "/staff", "Home", None),
    (
        StaffNav::Companies,
        "/staff/companies",
        "Companies",
        Some(StaffView::CompanyBasics),
    ),
    (
        StaffNav::Grants,
        "/staff/grants",
        "Access requests",
        Some(StaffView::RequestGrants),
    ),
    (
        StaffNav::Approvals,
        "/staff/approvals",
        "Approvals",
        Some(StaffView::ApproveGrants),
    ),
    (
        StaffNav::Alerts,
        "/staff/alerts",
        "Alerts",
        Some(StaffView::Alerts),
    ),
];

impl StaffPage {
    /// A hidden field with the form's CSRF token.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="_csrf" value=(self.csrf); }
    }

    pub fn opens(&self, view: StaffView) -> bool {
        opens(&self.staff.roles, view)
    }

    /// A page of the staff console.
    pub fn render(&self, title: &str, nav: StaffNav, content: Markup) -> Response {
        let roles: Vec<&str> = self.staff.roles.iter().map(|r| r.as_str()).collect();
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(&format!("{title} · Staff"), &self.csrf))
                body.staff {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/staff" { "Work-books staff" }
                        nav.account aria-label="Your staff account" {
                            span data-staff-email { (self.staff.email) }
                            span.muted { "(" (roles.join(", ")) ")" }
                            form method="post" action="/staff/logout" {
                                (self.csrf_field())
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                    nav.staff-nav aria-label="Staff" {
                        ul {
                            @for (item, href, label, _) in STAFF_NAV.iter().filter(|n| n.3.is_none_or(|v| self.opens(v))) {
                                li { a href=(href) aria-current=[(*item == nav).then_some("page")] { (label) } }
                            }
                        }
                    }
                    main #main tabindex="-1" {
                        h1 { (title) }
                        (content)
                    }
                }
            }
        }
        .into_response()
    }

    /// A page with a form's error above the form, answered with `status`.
    pub fn render_error(
        &self,
        status: StatusCode,
        message: &str,
        title: &str,
        nav: StaffNav,
        content: Markup,
    ) -> Response {
        let content = html! { (layout::notice("error", message)) (content) };
        (status, self.render(title, nav, content)).into_response()
    }

    /// A form of one button that POSTs to `action`.
    pub fn post_button(&self, action: &str, class: &str, label: &str, what: &str) -> Markup {
        html! {
            form.inline method="post" action=(action) {
                (self.csrf_field())
                button class=(class) type="submit" { (label) span.visually-hidden { " " (what) } }
            }
        }
    }
}
