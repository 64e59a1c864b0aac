//! Request authentication: bearer token or session cookie, CSRF for cookies.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use wb_crypto::Secret;
use wb_store::Actor;

use crate::platform::{Platform, Principal};
use crate::problem::ApiError;

pub const SESSION_COOKIE: &str = "wb_session";
pub const CSRF_COOKIE: &str = "wb_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub type AppState = Arc<Platform>;

/// Who is calling, and the actor to record in audit events.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub actor: Actor,
}

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
        client: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string()),
        // The id the server generated (`crate::request_id`), never a
        // client's header.
        request_id: parts
            .extensions
            .get::<crate::request_id::RequestIds>()
            .map(|ids| ids.server.clone()),
    }
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Caller {
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
                let token = cookie(parts, SESSION_COOKIE)
                    .ok_or_else(|| ApiError::unauthorized("send a bearer token or log in"))?
                    .to_string();
                // Cookies ride along on cross-site requests; a header cannot.
                let unsafe_method =
                    !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
                if unsafe_method {
                    let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                    let expected = cookie(parts, CSRF_COOKIE);
                    if sent.is_none() || sent != expected {
                        return Err(ApiError::forbidden(
                            "cookie-authenticated requests must echo the wb_csrf cookie in X-CSRF-Token",
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
        let meta = request_meta(parts);
        let actor = Actor {
            id: principal.actor_id(),
            auth: principal.auth_kind().into(),
            client: meta.client,
            request_id: meta.request_id,
        };
        Ok(Caller { principal, actor })
    }
}
