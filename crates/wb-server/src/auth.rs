//! Request authentication: bearer token or session cookie, CSRF for cookies.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, Method};
use wb_app::records::Actor;
use wb_core::Permission;
use wb_crypto::Secret;

use crate::access::Admission;
use crate::platform::Platform;
use crate::problem::ApiError;

/// `__Host-`: the browser keeps these only when set by this exact origin over
/// HTTPS with `Path=/` and no `Domain`, so no sibling subdomain can plant them.
pub const SESSION_COOKIE: &str = "__Host-wb_session";
pub const CSRF_COOKIE: &str = "__Host-wb_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub type AppState = Arc<Platform>;

pub use crate::access::Caller;

/// The authenticated caller of a request (bearer token, or session cookie
/// with the CSRF header).
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

/// The request's client address and id, for audit even before authentication.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub client: Option<String>,
    pub request_id: Option<String>,
}

impl RequestMeta {
    pub fn anonymous_actor(&self) -> Actor {
        Actor {
            id: "anonymous".into(),
            auth: "none".into(),
            client: self.client.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(request_meta(parts))
    }
}

fn request_meta(parts: &Parts) -> RequestMeta {
    RequestMeta {
        // As resolved by `crate::client_addr` (trusted proxies), else the
        // socket's peer.
        client: parts
            .extensions
            .get::<crate::client_addr::ClientAddr>()
            .map(|c| c.0.to_string())
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(addr)| addr.ip().to_string())
            }),
        // The id the server generated (`crate::request_id`), never a
        // client's header.
        request_id: parts
            .extensions
            .get::<crate::request_id::RequestIds>()
            .map(|ids| ids.server.clone()),
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let token = match bearer {
            Some(token) => token,
            None => {
                let token = cookie(&parts.headers, SESSION_COOKIE)
                    .ok_or_else(|| ApiError::unauthorized("send a bearer token or log in"))?
                    .to_string();
                // Cookies ride along on cross-site requests; a header cannot.
                let unsafe_method =
                    !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                // The console's guard checked the form's token and origin.
                let checked = parts
                    .extensions
                    .get::<crate::console::guard::CsrfChecked>()
                    .is_some();
                if unsafe_method && !checked {
                    let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                    let expected = cookie(&parts.headers, CSRF_COOKIE);
                    if sent.is_none() || sent != expected {
                        return Err(ApiError::forbidden(
                            "cookie-authenticated requests must echo the __Host-wb_csrf cookie in X-CSRF-Token",
                        ));
                    }
                }
                token
            }
        };
        if token.is_empty() || token.len() > 256 {
            return Err(ApiError::unauthorized(
                "the session or API key is invalid, expired or revoked",
            ));
        }
        let principal = state.authenticate(&Secret::new(token)).await?;
        if let Some(seen) = parts.extensions.get::<crate::rate_limit::AuthSeen>() {
            seen.mark();
        }
        if let Some(limiters) = parts
            .extensions
            .get::<std::sync::Arc<crate::rate_limit::Limiters>>()
        {
            limiters
                .check_principal(&principal.actor_id())
                .map_err(crate::rate_limit::refusal)?;
        }
        let meta = request_meta(parts);
        let actor = Actor {
            id: principal.actor_id(),
            auth: principal.auth_kind().into(),
            client: meta.client,
            request_id: meta.request_id,
        };
        Ok(Authenticated(Caller { principal, actor }))
    }
}

/// `Option<Authenticated>`: None when the request carries no credentials at
/// all; credentials that are there must be valid (and CSRF-checked).
impl axum::extract::OptionalFromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        let carries = parts.headers.contains_key(header::AUTHORIZATION)
            || cookie(&parts.headers, SESSION_COOKIE).is_some();
        if !carries {
            return Ok(None);
        }
        <Authenticated as FromRequestParts<AppState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// A staff bearer token (`wbt_…`), which only staff paths and company paths
/// accept; anywhere else it is no customer token and gets 401.
fn staff_bearer(parts: &Parts) -> Option<String> {
    let prefix = format!("{}_", wb_app::staff::STAFF_TOKEN_PREFIX);
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(&prefix) && t.len() <= 256)
        .map(str::to_string)
}

async fn staff_caller(parts: &Parts, state: &AppState, token: String) -> Result<Caller, ApiError> {
    Ok(staff_session(parts, state, token).await?.door_caller())
}

/// The staff member behind a staff token (a bearer token, or the staff
/// console's cookie), counted against their own request budget.
pub async fn staff_session(
    parts: &Parts,
    state: &AppState,
    token: String,
) -> Result<wb_app::staff::StaffCaller, ApiError> {
    let staff = state
        .staff_authenticate(&Secret::new(token), request_meta(parts).anonymous_actor())
        .await?;
    if let Some(seen) = parts.extensions.get::<crate::rate_limit::AuthSeen>() {
        seen.mark();
    }
    if let Some(limiters) = parts
        .extensions
        .get::<std::sync::Arc<crate::rate_limit::Limiters>>()
    {
        limiters
            .check_principal(&staff.actor.id)
            .map_err(crate::rate_limit::refusal)?;
    }
    Ok(staff)
}

/// What a company route needs: the permission its extractor asks the door for.
pub trait Need: Send + Sync + 'static {
    const PERMISSION: Permission;
}

macro_rules! needs {
    ($($name:ident),* $(,)?) => {$(
        #[doc = concat!("The `", stringify!($name), "` permission, for [`Company`].")]
        #[derive(Debug)]
        pub struct $name;
        impl Need for $name {
            const PERMISSION: Permission = Permission::$name;
        }
    )*};
}
needs!(
    ReadBooks,
    WriteBooks,
    ManageApiKeys,
    ManageMembers,
    ManageSecurity,
    ReadAudit,
    ExportData,
    RestoreCopy,
    ReadFiles,
    WriteFiles,
    PurgeData
);

/// A company route's caller, admitted by the door (`Platform::admit`) to the
/// `{company}` of the path for `P`'s permission. Handlers reach company data
/// only by turning this into a `CompanyScope` (a recorded read or a change).
#[derive(Debug)]
pub struct Company<P: Need> {
    pub admission: Admission,
    need: std::marker::PhantomData<P>,
}

impl<P: Need> Company<P> {
    pub fn into_admission(self) -> Admission {
        self.admission
    }
}

impl<P: Need> std::ops::Deref for Company<P> {
    type Target = Admission;
    fn deref(&self) -> &Admission {
        &self.admission
    }
}

impl<P: Need> FromRequestParts<AppState> for Company<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = match staff_bearer(parts) {
            // Staff reach company paths with their staff token; the door
            // admits them only under an active access grant.
            Some(token) => staff_caller(parts, state, token).await?,
            None => Authenticated::from_request_parts(parts, state).await?.0,
        };
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("company"))?;
        let company = params
            .iter()
            .find(|(name, _)| *name == "company")
            .map(|(_, value)| value.to_string())
            .ok_or_else(|| {
                tracing::error!(path = %parts.uri.path(), "a company extractor on a route without {{company}}");
                ApiError::internal()
            })?;
        let admission = state.admit(caller, &company, P::PERMISSION).await?;
        Ok(Company {
            admission,
            need: std::marker::PhantomData,
        })
    }
}
