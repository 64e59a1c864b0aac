//! Members and invitations (the shared ledger model). Owners and admins
//! manage them; acceptance is open to whoever holds an invitation token.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use wb_core::members::MemberChange;
use wb_core::{Action, Role};
use wb_crypto::{Secret, MAX_PASSPHRASE_BYTES};

use super::json::ApiJson;
use super::session::session_cookies;
use crate::auth::{AppState, Authenticated, Company, ManageMembers, RequestMeta};
use crate::dto::*;
use crate::members::Acceptance;
use crate::problem::{ApiError, ApiResult, Problem};

fn parse_role(text: &str) -> Result<Role, ApiError> {
    text.parse().map_err(|e: wb_core::roles::UnknownRole| {
        ApiError::unprocessable("invalid-role", e.to_string())
    })
}

#[utoipa::path(post, path = "/api/v1/companies/{company}/invitations", tag = "members",
    params(("company" = String, Path)), request_body = NewInvitationRequest,
    responses((status = 201, body = InvitationCreated), (status = 403, body = Problem),
              (status = 422, body = Problem)))]
pub async fn invite(
    State(platform): State<AppState>,
    door: Company<ManageMembers>,
    ApiJson(body): ApiJson<NewInvitationRequest>,
) -> ApiResult<(StatusCode, Json<InvitationCreated>)> {
    let scope = door.into_admission().operate(&platform).await?;
    let role = parse_role(&body.role)?;
    let created = scope.invite(&platform, &body.email, role).await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated {
            id: created.record.id.clone(),
            token: created.token.expose().to_string(),
            expires_at: rfc3339(created.record.expires_at),
            email: created.record.email.clone(),
            role: created.record.role.as_str().into(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/invitations", tag = "members",
    params(("company" = String, Path)),
    responses((status = 200, body = [InvitationView]), (status = 404, body = Problem)))]
pub async fn list_invitations(
    State(platform): State<AppState>,
    door: Company<ManageMembers>,
) -> ApiResult<Json<Vec<InvitationView>>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::InvitationsList, None)
        .await?;
    let pending = scope.invitations(&platform).await?;
    Ok(Json(pending.iter().map(Into::into).collect()))
}

#[utoipa::path(delete, path = "/api/v1/companies/{company}/invitations/{invitation}", tag = "members",
    params(("company" = String, Path), ("invitation" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn revoke_invitation(
    State(platform): State<AppState>,
    door: Company<ManageMembers>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let scope = door.into_admission().operate(&platform).await?;
    scope.revoke_invitation(&platform, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/companies/{company}/members", tag = "members",
    params(("company" = String, Path)),
    responses((status = 200, body = [MemberView]), (status = 404, body = Problem)))]
pub async fn list_members(
    State(platform): State<AppState>,
    door: Company<ManageMembers>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let scope = door
        .into_admission()
        .read(&platform, Action::MembersList, None)
        .await?;
    let members = scope.members(&platform).await?;
    Ok(Json(members.iter().map(Into::into).collect()))
}

#[utoipa::path(patch, path = "/api/v1/companies/{company}/members/{user}", tag = "members",
    params(("company" = String, Path), ("user" = String, Path)), request_body = MemberPatch,
    responses((status = 200, body = MemberView), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn change_member(
    State(platform): State<AppState>,
    door: Company<ManageMembers>,
    Path((_, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<MemberPatch>,
) -> ApiResult<Json<MemberView>> {
    let scope = door.into_admission().operate(&platform).await?;
    let role = parse_role(&body.role)?;
    let member = scope
        .change_member(&platform, &user, MemberChange::SetRole(role))
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(Json((&member).into()))
}

#[utoipa::path(delete, path = "/api/v1/companies/{company}/members/{user}", tag = "members",
    params(("company" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn remove_member(
    State(platform): State<AppState>,
    door: Company<ManageMembers>,
    Path((_, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let scope = door.into_admission().operate(&platform).await?;
    scope
        .change_member(&platform, &user, MemberChange::Remove)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts an invitation: a new account (passphrase required) or the
/// signed-in account whose email was invited.
#[utoipa::path(post, path = "/api/v1/invitations/{token}/accept", tag = "members",
    params(("token" = String, Path)), request_body = AcceptInvitationRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn accept(
    State(platform): State<AppState>,
    meta: RequestMeta,
    signed_in: Option<Authenticated>,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<AcceptInvitationRequest>,
) -> ApiResult<Response> {
    // Tokens are 48 characters; anything far longer is no token of ours.
    if token.len() > 128 {
        return Err(crate::members::invitation_invalid().into());
    }
    if body
        .passphrase
        .as_ref()
        .is_some_and(|p| p.len() > MAX_PASSPHRASE_BYTES)
    {
        return Err(ApiError::unprocessable(
            "weak-passphrase",
            format!("a passphrase is at most {MAX_PASSPHRASE_BYTES} bytes"),
        ));
    }
    let (principal, actor) = match &signed_in {
        Some(Authenticated(caller)) => (Some(&caller.principal), caller.actor.clone()),
        None => (None, meta.anonymous_actor()),
    };
    let acceptance = Acceptance {
        passphrase: body.passphrase.map(Secret::from),
        name: body.name,
    };
    let session = platform
        .accept_invitation(&Secret::new(token), acceptance, principal, actor)
        .await?;
    let mut headers = HeaderMap::new();
    session_cookies(&session, &mut headers);
    let response = LoginResponse {
        token: session.token.expose().to_string(),
        expires_at: rfc3339(session.expires_at),
    };
    Ok((StatusCode::OK, headers, Json(response)).into_response())
}
