//! Company API keys: scoped to one company and a role, expiring, revocable.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wb_core::Action;
use wb_core::Role;

use super::json::ApiJson;
use crate::auth::{AppState, Company, ManageApiKeys};
use crate::dto::*;
use crate::platform::Principal;
use crate::problem::{ApiError, ApiResult, Problem};

#[utoipa::path(get, path = "/api/v1/companies/{company}/api-keys", tag = "api-keys",
    params(("company" = String, Path)),
    responses((status = 200, body = [ApiKeyView]), (status = 404, body = Problem)))]
pub async fn list(
    State(platform): State<AppState>,
    door: Company<ManageApiKeys>,
) -> ApiResult<Json<Vec<ApiKeyView>>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::ApiKeysList, None)
        .await?;
    Ok(Json(
        scope
            .api_keys(&platform)
            .await?
            .iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Only a user's session may create keys; an API key gets 403.
#[utoipa::path(post, path = "/api/v1/companies/{company}/api-keys", tag = "api-keys",
    params(("company" = String, Path)), request_body = NewApiKeyRequest,
    responses((status = 201, body = ApiKeyView), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(platform): State<AppState>,
    door: Company<ManageApiKeys>,
    ApiJson(body): ApiJson<NewApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<ApiKeyView>)> {
    let books = door.into_admission().operate(&platform).await?;
    if let Principal::ApiKey { .. } = &books.caller().principal {
        // A key minting keys could renew itself forever, and its children
        // would outlive its revocation: only people create keys.
        return Err(books.refuse_api_key_creation(&platform).await.into());
    }
    let role: Role = body
        .role
        .parse()
        .map_err(|e: wb_core::roles::UnknownRole| {
            ApiError::unprocessable("invalid-role", e.to_string())
        })?;
    let created = books
        .create_api_key(&platform, &body.name, role, body.expires_in_days)
        .await?;
    let mut view = ApiKeyView::from(&created.record);
    view.token = Some(created.token.expose().to_string());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(delete, path = "/api/v1/companies/{company}/api-keys/{key}", tag = "api-keys",
    params(("company" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = ApiKeyView), (status = 404, body = Problem)))]
pub async fn revoke(
    State(platform): State<AppState>,
    door: Company<ManageApiKeys>,
    Path((_, key)): Path<(String, String)>,
) -> ApiResult<Json<ApiKeyView>> {
    let scope = door.into_admission().operate(&platform).await?;
    let revoked = scope.revoke_api_key(&platform, &key).await?;
    Ok(Json((&revoked).into()))
}

/// A new secret for a key (same name, role and term); the old one works for
/// `overlap_hours` more (0 to 24). Only a user's session may rotate keys.
#[utoipa::path(post, path = "/api/v1/companies/{company}/api-keys/{key}/rotate", tag = "api-keys",
    params(("company" = String, Path), ("key" = String, Path)),
    request_body = RotateApiKeyRequest,
    responses((status = 201, body = RotatedApiKey), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn rotate(
    State(platform): State<AppState>,
    door: Company<ManageApiKeys>,
    Path((_, key)): Path<(String, String)>,
    ApiJson(body): ApiJson<RotateApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<RotatedApiKey>)> {
    let scope = door.into_admission().operate(&platform).await?;
    if let Principal::ApiKey { .. } = &scope.caller().principal {
        // A key rotating keys could renew itself forever.
        return Err(scope.refuse_api_key_creation(&platform).await.into());
    }
    let (created, previous) = scope
        .rotate_api_key(&platform, &key, body.overlap_hours.unwrap_or(0))
        .await?;
    let mut view = ApiKeyView::from(&created.record);
    view.token = Some(created.token.expose().to_string());
    Ok((
        StatusCode::CREATED,
        Json(RotatedApiKey {
            key: view,
            previous: (&previous).into(),
        }),
    ))
}
