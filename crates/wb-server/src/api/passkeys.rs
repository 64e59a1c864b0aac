//! The caller's own passkeys (sessions only): register (two requests:
//! options for the browser, then its answer), list, remove.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::json::ApiJson;
use crate::auth::{AppState, Authenticated};
use crate::dto::*;
use crate::problem::{ApiError, ApiResult, Problem};

fn passphrase(text: String) -> ApiResult<Secret> {
    let passphrase = Secret::from(text);
    if passphrase.expose().len() > MAX_PASSPHRASE_BYTES {
        return Err(ApiError::forbidden("the passphrase is wrong"));
    }
    Ok(passphrase)
}

#[utoipa::path(get, path = "/api/v1/me/passkeys", tag = "auth",
    responses((status = 200, body = [PasskeyView]), (status = 401, body = Problem)))]
pub async fn list(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<Vec<PasskeyView>>> {
    let passkeys = platform.my_passkeys(&caller.principal).await?;
    Ok(Json(passkeys.iter().map(Into::into).collect()))
}

/// Starts registering a passkey (the passphrase again): hand `options` to
/// `navigator.credentials.create`, then send its answer to `.../finish`.
#[utoipa::path(post, path = "/api/v1/me/passkeys", tag = "auth",
    request_body = NewPasskeyRequest,
    responses((status = 200, body = PasskeyOfferView), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn begin(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<NewPasskeyRequest>,
) -> ApiResult<Json<PasskeyOfferView>> {
    let passphrase = passphrase(body.passphrase)?;
    let offer = platform
        .begin_passkey_registration(&caller.principal, &passphrase, &body.name, caller.actor)
        .await?;
    Ok(Json(PasskeyOfferView {
        ceremony: offer.ceremony.expose().to_string(),
        options: serde_json::to_value(&offer.options).map_err(|_| ApiError::internal())?,
    }))
}

#[utoipa::path(post, path = "/api/v1/me/passkeys/finish", tag = "auth",
    request_body = FinishPasskeyRequest,
    responses((status = 201, body = PasskeyView), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn finish(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<FinishPasskeyRequest>,
) -> ApiResult<(StatusCode, Json<PasskeyView>)> {
    let credential = serde_json::from_value(body.credential).map_err(|e| {
        ApiError::unprocessable(
            "invalid-passkey",
            format!("credential is not a WebAuthn registration answer: {e}"),
        )
    })?;
    let ceremony = Secret::from(body.ceremony);
    let passkey = platform
        .finish_passkey_registration(&caller.principal, &ceremony, &credential, caller.actor)
        .await?;
    Ok((StatusCode::CREATED, Json((&passkey).into())))
}

#[utoipa::path(post, path = "/api/v1/me/passkeys/{passkey}/remove", tag = "auth",
    params(("passkey" = String, Path)), request_body = PassphraseOnly,
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn remove(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PassphraseOnly>,
) -> ApiResult<StatusCode> {
    let passphrase = passphrase(body.passphrase)?;
    platform
        .remove_passkey(&caller.principal, &id, &passphrase, caller.actor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
