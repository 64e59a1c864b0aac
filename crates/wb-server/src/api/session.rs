//! Signup, login, logout and the caller's own view.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::json::ApiJson;
use crate::auth::{AppState, Authenticated, RequestMeta, CSRF_COOKIE, SESSION_COOKIE};
use crate::dto::*;
use crate::platform::{Principal, Session};
use crate::problem::{ApiError, ApiResult, Problem};
use wb_app::login::{LoginStep, SecondFactor};

pub(crate) fn session_cookies(session: &Session, headers: &mut HeaderMap) {
    let max_age = (session.expires_at - time::OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0);
    let csrf = wb_crypto::new_token("csrf");
    let cookies = [
        format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict",
            session.token.expose()
        ),
        format!(
            "{CSRF_COOKIE}={}; Path=/; Max-Age={max_age}; Secure; SameSite=Strict",
            csrf.token.expose()
        ),
    ];
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// Tells the browser to forget the session and CSRF cookies (logout).
pub(crate) fn clear_session_cookies(headers: &mut HeaderMap) {
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{name}=; Path=/; Max-Age=0; Secure; SameSite=Strict"
        )) {
            headers.append(header::SET_COOKIE, v);
        }
    }
}

/// The largest signup or login body: room for the longest passphrase, the
/// longest email and company name even when every character is sent as a
/// JSON `\uXXXX` escape (six bytes per byte of UTF-8, at worst).
pub const AUTH_BODY_LIMIT_BYTES: usize = 16 * 1024;
const _: () = assert!(AUTH_BODY_LIMIT_BYTES >= 6 * (MAX_PASSPHRASE_BYTES + 254 + 4 * 200) + 512);

/// An email that already has an account is answered like a new signup (201,
/// the same shape, after as long) with ids and a token that work nowhere,
/// so signup does not tell who has an account; the refusal is audited.
#[utoipa::path(post, path = "/api/v1/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = SignupResponse), (status = 422, body = Problem),
        (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn signup(
    State(platform): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<SignupRequest>,
) -> ApiResult<Response> {
    let passphrase = Secret::from(body.passphrase);
    let (company, session) = platform
        .signup_request(
            &body.company_name,
            &body.email,
            &passphrase,
            meta.anonymous_actor(),
        )
        .await?
        .into_answer();
    let mut headers = HeaderMap::new();
    session_cookies(&session, &mut headers);
    let response = SignupResponse {
        company: CompanyRef {
            id: company.id,
            name: company.name,
        },
        user: UserRef {
            id: session.user.id.clone(),
            email: session.user.email.clone(),
        },
        token: session.token.expose().to_string(),
        expires_at: rfc3339(session.expires_at),
    };
    Ok((StatusCode::CREATED, headers, Json(response)).into_response())
}

/// The longest second factor accepted (a recovery code typed with spaces).
pub const MAX_OTP_BYTES: usize = 64;

/// `{"email","passphrase","otp"?}` logs in; when the account has a second
/// factor and no `otp` came, the answer is `{"mfa_required": true,
/// "methods", "challenge", "expires_at"}` without a session, and
/// `{"challenge","otp"}` completes the login.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginAnswer), (status = 401, body = Problem), (status = 429, body = Problem),
        (status = 503, body = Problem)))]
pub async fn login(
    State(platform): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let otp = body.otp.map(Secret::from);
    if otp
        .as_ref()
        .is_some_and(|o| o.expose().len() > MAX_OTP_BYTES)
    {
        return Err(wb_app::mfa::mfa_invalid().into());
    }
    let session = match (body.challenge, body.email, body.passphrase) {
        (Some(challenge), None, None) => {
            let factor = match (otp, body.passkey) {
                (Some(otp), None) => SecondFactor::Code(otp),
                (None, Some(assertion)) => SecondFactor::Passkey(Box::new(
                    serde_json::from_value(assertion).map_err(|e| {
                        ApiError::unprocessable(
                            "invalid-login",
                            format!("passkey is not a WebAuthn assertion: {e}"),
                        )
                    })?,
                )),
                _ => {
                    return Err(ApiError::unprocessable(
                        "invalid-login",
                        "a login challenge is answered with \"otp\" or \"passkey\"",
                    ))
                }
            };
            let challenge = Secret::from(challenge);
            platform
                .login_second_factor(&challenge, &factor, meta.anonymous_actor(), user_agent)
                .await?
        }
        (None, Some(email), Some(passphrase)) if body.passkey.is_none() => {
            let passphrase = Secret::from(passphrase);
            // No account has a longer one (signup refuses it): nothing to verify.
            if passphrase.expose().len() > MAX_PASSPHRASE_BYTES {
                return Err(ApiError::unauthorized("email or passphrase is wrong"));
            }
            let step = platform
                .login_step(
                    &email,
                    &passphrase,
                    otp.as_ref(),
                    meta.anonymous_actor(),
                    user_agent,
                )
                .await?;
            match step {
                LoginStep::Session(session) => session,
                LoginStep::SecondFactor(prompt) => {
                    let answer = LoginAnswer::SecondFactor(MfaRequired {
                        mfa_required: true,
                        methods: prompt.methods.iter().map(|m| m.to_string()).collect(),
                        challenge: prompt.challenge.expose().to_string(),
                        expires_at: rfc3339(prompt.expires_at),
                        passkey: prompt
                            .passkey
                            .as_ref()
                            .and_then(|o| serde_json::to_value(o).ok()),
                    });
                    return Ok((StatusCode::OK, Json(answer)).into_response());
                }
            }
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid-login",
                "send {\"email\",\"passphrase\",\"otp\"?} or {\"challenge\",\"otp\"}",
            ))
        }
    };
    let mut headers = HeaderMap::new();
    session_cookies(&session, &mut headers);
    let response = LoginAnswer::Session(LoginResponse {
        token: session.token.expose().to_string(),
        expires_at: rfc3339(session.expires_at),
    });
    Ok((StatusCode::OK, headers, Json(response)).into_response())
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn logout(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Response> {
    platform.logout(&caller.principal, caller.actor).await?;
    let mut headers = HeaderMap::new();
    clear_session_cookies(&mut headers);
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, body = Problem)))]
pub async fn me(
    State(platform): State<AppState>,
    Authenticated(caller): Authenticated,
) -> ApiResult<Json<MeResponse>> {
    let Principal::User { user_id, .. } = &caller.principal else {
        return Err(ApiError::forbidden("API keys have no user; use a session"));
    };
    let (user, memberships) = platform.user_with_companies(user_id).await?;
    let companies = memberships
        .into_iter()
        .map(|(m, c)| MembershipView {
            company: CompanyRef {
                id: c.id,
                name: c.name,
            },
            role: m.role.as_str().into(),
        })
        .collect();
    Ok(Json(MeResponse {
        user: UserRef {
            id: user.id,
            email: user.email,
        },
        companies,
    }))
}

/// Asks for a passphrase reset: a single-use link, valid for an hour, is
/// emailed when an account has this address. The answer is the same, after
/// the same time, either way.
#[utoipa::path(post, path = "/api/v1/auth/passphrase-reset", tag = "auth",
    request_body = ResetRequest,
    responses((status = 202, body = ResetRequested), (status = 422, body = Problem),
              (status = 429, body = Problem)))]
pub async fn request_reset(
    State(platform): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<ResetRequest>,
) -> ApiResult<(StatusCode, Json<ResetRequested>)> {
    platform
        .request_passphrase_reset(&body.email, meta.anonymous_actor())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ResetRequested {
            status: "if an account has this email address, a reset link was sent to it".into(),
        }),
    ))
}

/// Sets a new passphrase with the emailed token; every session of the
/// account ends (a second factor stays).
#[utoipa::path(post, path = "/api/v1/auth/passphrase-reset/complete", tag = "auth",
    request_body = ResetCompletion,
    responses((status = 200, body = SessionsEnded), (status = 404, body = Problem),
              (status = 422, body = Problem)))]
pub async fn complete_reset(
    State(platform): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<ResetCompletion>,
) -> ApiResult<Json<SessionsEnded>> {
    let passphrase = Secret::from(body.passphrase);
    let token = Secret::from(body.token);
    if passphrase.expose().len() > MAX_PASSPHRASE_BYTES {
        return Err(ApiError::unprocessable(
            "weak-passphrase",
            format!("a passphrase is at most {MAX_PASSPHRASE_BYTES} bytes"),
        ));
    }
    let ended = platform
        .complete_passphrase_reset(&token, &passphrase, meta.anonymous_actor())
        .await?;
    Ok(Json(SessionsEnded {
        sessions_ended: ended,
    }))
}
