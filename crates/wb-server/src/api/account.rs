//! The caller's own account: sessions and passphrase (sessions only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::json::ApiJson;
use crate::auth::{AppState, Authenticated};
use crate::dto::*;
use crate::problem::{ApiError, ApiResult, Problem};

#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "auth",
    responses((status = 200, body = [SessionView]), (status = 401, body = Problem)))]
pub async fn sessions(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Vec<SessionView>>> {
    let sessions = platform.my_sessions(&caller.principal).await?;
    Ok(Json(sessions.iter().map(Into::into).collect()))
}

/// Ends every session of the account but this one.
#[utoipa::path(delete, path = "/api/v1/me/sessions", tag = "auth",
    responses((status = 200, body = SessionsEnded), (status = 401, body = Problem)))]
pub async fn end_others(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<SessionsEnded>> {
    let ended = platform
        .end_my_sessions(&caller.principal, None, caller.actor)
        .await?;
    Ok(Json(SessionsEnded {
        sessions_ended: ended,
    }))
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{session}", tag = "auth",
    params(("session" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn end_one(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    platform
        .end_my_sessions(&caller.principal, Some(&id), caller.actor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the passphrase; every other session of the account ends.
#[utoipa::path(post, path = "/api/v1/me/passphrase", tag = "auth",
    request_body = PassphraseChange,
    responses((status = 200, body = SessionsEnded), (status = 403, body = Problem),
              (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn change_passphrase(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<PassphraseChange>,
) -> ApiResult<Json<SessionsEnded>> {
    if body.current.len() > MAX_PASSPHRASE_BYTES || body.new.len() > MAX_PASSPHRASE_BYTES {
        return Err(ApiError::unprocessable(
            "weak-passphrase",
            format!("a passphrase is at most {MAX_PASSPHRASE_BYTES} bytes"),
        ));
    }
    let ended = platform
        .change_my_passphrase(
            &caller.principal,
            &Secret::from(body.current),
            &Secret::from(body.new),
            caller.actor,
        )
        .await?;
    Ok(Json(SessionsEnded {
        sessions_ended: ended,
    }))
}
