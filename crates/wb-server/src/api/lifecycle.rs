//! A company's end over HTTP: its owner de-provisions it (re-authenticated)
//! or cancels that within the grace period; whoever holds the token emailed
//! at de-provisioning fetches the signed certificate of destruction.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wb_app::dto::rfc3339;
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::json::ApiJson;
use crate::auth::{AppState, Authenticated, RequestMeta};
use crate::problem::{ApiError, ApiResult, Problem};

/// The owner's passphrase again (and a current code when the account has
/// an authenticator).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprovisionRequest {
    /// Optional in the schema so a caller who may not de-provision is
    /// refused by the door before the body is judged.
    pub passphrase: Option<String>,
    pub otp: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeprovisionView {
    /// `deprovisioned`.
    pub state: String,
    /// When the destruction is due (RFC 3339) unless cancelled before.
    pub destroy_after: String,
    /// The certificate of destruction's id, once it exists.
    pub certificate_id: String,
    /// Staff access grants ended by the de-provisioning.
    pub grants_ended: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyStateView {
    /// `active`.
    pub state: String,
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/deprovision", tag = "companies",
    params(("company" = String, Path)), request_body = DeprovisionRequest,
    responses((status = 202, body = DeprovisionView), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn deprovision(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(company): Path<String>,
    ApiJson(body): ApiJson<DeprovisionRequest>,
) -> ApiResult<(StatusCode, Json<DeprovisionView>)> {
    // The door first: another company's caller learns nothing from the body.
    let admission = platform
        .admit(caller.clone(), &company, wb_core::Permission::Deprovision)
        .await?;
    drop(admission);
    let passphrase = body.passphrase.map(Secret::from).ok_or_else(|| {
        ApiError::unprocessable(
            "passphrase-required",
            "send your passphrase as \"passphrase\" to de-provision the company",
        )
    })?;
    if passphrase.expose().len() > MAX_PASSPHRASE_BYTES {
        return Err(ApiError::forbidden("the passphrase is wrong"));
    }
    let otp = body.otp.map(Secret::from);
    if otp.as_ref().is_some_and(|o| o.expose().len() > 64) {
        return Err(wb_app::mfa::mfa_invalid().into());
    }
    let done = platform
        .deprovision(caller, &company, &passphrase, otp.as_ref())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeprovisionView {
            state: "deprovisioned".into(),
            destroy_after: rfc3339(done.destroy_after),
            certificate_id: done.certificate_id,
            grants_ended: done.grants_ended,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/deprovision/cancel", tag = "companies",
    params(("company" = String, Path)),
    responses((status = 200, body = CompanyStateView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(company): Path<String>,
) -> ApiResult<Json<CompanyStateView>> {
    platform.cancel_deprovisioning(caller, &company).await?;
    Ok(Json(CompanyStateView {
        state: "active".into(),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct CertificateQuery {
    /// The token emailed at de-provisioning (or the `X-Certificate-Token`
    /// header, which stays out of access logs).
    pub token: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/destruction-certificates/{certificate}", tag = "companies",
    params(("certificate" = String, Path), CertificateQuery),
    responses((status = 200, description = "the signed certificate of destruction (JSON)"),
        (status = 404, body = Problem), (status = 409, body = Problem)),
    security(()))]
pub async fn certificate(
    State(platform): State<AppState>,
    meta: RequestMeta,
    Path(id): Path<String>,
    Query(query): Query<CertificateQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let token = headers
        .get("x-certificate-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(query.token)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(|| ApiError::not_found("destruction certificate"))?;
    let text = platform
        .destruction_certificate(&id, &Secret::from(token), &meta.anonymous_actor())
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response())
}
