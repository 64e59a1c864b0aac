//! The caller's own second factors (sessions only): status, authenticator
//! enrolment, confirmation and removal, recovery codes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::json::ApiJson;
use crate::auth::{AppState, Authenticated};
use crate::dto::*;
use crate::problem::{ApiError, ApiResult, Problem};

/// A passphrase and code as sent, bounded before anything is verified.
fn credentials(body: Reauthentication) -> ApiResult<(Secret, Option<Secret>)> {
    let passphrase = Secret::from(body.passphrase);
    if passphrase.expose().len() > MAX_PASSPHRASE_BYTES {
        return Err(ApiError::forbidden("the passphrase is wrong"));
    }
    let otp = body.otp.map(Secret::from);
    if otp.as_ref().is_some_and(|o| o.expose().len() > 64) {
        return Err(wb_app::mfa::mfa_invalid().into());
    }
    Ok((passphrase, otp))
}

fn otp_required(otp: Option<Secret>) -> ApiResult<Secret> {
    otp.ok_or_else(|| {
        ApiError::unprocessable(
            "otp-required",
            "send a current code of your authenticator (or an unused recovery code) as \"otp\"",
        )
    })
}

#[utoipa::path(get, path = "/api/v1/me/mfa", tag = "auth",
    responses((status = 200, body = MfaStatusView), (status = 401, body = Problem)))]
pub async fn status(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<MfaStatusView>> {
    let status = platform.mfa_status(&caller.principal).await?;
    Ok(Json(MfaStatusView {
        totp: status.totp.into(),
        totp_confirmed_at: status.totp_confirmed_at.map(rfc3339),
        recovery_codes_left: status.recovery_codes_left,
        passkeys: status.passkeys,
    }))
}

/// Starts enrolling an authenticator app (the passphrase again); the
/// secret is shown in this answer only.
#[utoipa::path(post, path = "/api/v1/me/mfa/totp", tag = "auth",
    request_body = Reauthentication,
    responses((status = 201, body = TotpEnrolmentView), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 429, body = Problem)))]
pub async fn begin_totp(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Reauthentication>,
) -> ApiResult<(StatusCode, Json<TotpEnrolmentView>)> {
    let (passphrase, _) = credentials(body)?;
    let enrolment = platform
        .begin_totp(&caller.principal, &passphrase, caller.actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrolmentView {
            secret: enrolment.secret.expose().to_string(),
            otpauth_uri: enrolment.otpauth_uri.expose().to_string(),
            qr_svg: enrolment.qr_svg,
        }),
    ))
}

/// Confirms the enrolment with a first code; answers the recovery codes,
/// shown once. Every later login asks for a second factor.
#[utoipa::path(post, path = "/api/v1/me/mfa/totp/confirm", tag = "auth",
    request_body = OtpRequest,
    responses((status = 200, body = RecoveryCodesView), (status = 401, body = Problem),
              (status = 409, body = Problem)))]
pub async fn confirm_totp(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<OtpRequest>,
) -> ApiResult<Json<RecoveryCodesView>> {
    let otp = Secret::from(body.otp);
    if otp.expose().len() > 64 {
        return Err(wb_app::mfa::mfa_invalid().into());
    }
    let codes = platform
        .confirm_totp(&caller.principal, &otp, caller.actor)
        .await?;
    Ok(Json(RecoveryCodesView {
        recovery_codes: codes.iter().map(|c| c.expose().to_string()).collect(),
    }))
}

/// Removes the authenticator and its recovery codes (passphrase and a
/// current code).
#[utoipa::path(post, path = "/api/v1/me/mfa/totp/remove", tag = "auth",
    request_body = Reauthentication,
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 429, body = Problem)))]
pub async fn remove_totp(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Reauthentication>,
) -> ApiResult<StatusCode> {
    let (passphrase, otp) = credentials(body)?;
    let otp = otp_required(otp)?;
    platform
        .remove_totp(&caller.principal, &passphrase, &otp, caller.actor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ten new recovery codes; the old ones stop working.
#[utoipa::path(post, path = "/api/v1/me/mfa/recovery-codes", tag = "auth",
    request_body = Reauthentication,
    responses((status = 200, body = RecoveryCodesView), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn renew_recovery_codes(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Reauthentication>,
) -> ApiResult<Json<RecoveryCodesView>> {
    let (passphrase, otp) = credentials(body)?;
    let otp = otp_required(otp)?;
    let codes = platform
        .renew_recovery_codes(&caller.principal, &passphrase, &otp, caller.actor)
        .await?;
    Ok(Json(RecoveryCodesView {
        recovery_codes: codes.iter().map(|c| c.expose().to_string()).collect(),
    }))
}
