//! Members and invitations: the shared ledger model ("invite contributors
//! rather than sharing user accounts").
//!
//! Owners and admins manage them through their [`CompanyScope`]; the rules
//! (`wb_core::members`) run inside the store's transaction. Acceptance is
//! on [`Platform`]: the one who accepts holds a token, not yet a role.
//! Every change and every refusal is audited in the control trail with the
//! company's id.

use time::OffsetDateTime;
use wb_core::members::{check_invite, MemberChange};
use wb_core::{Action, Role};
use wb_crypto::{new_token, token_hash, Secret};
use wb_store::{Actor, AuditEvent, InvitationRecord, Joiner, MemberRecord, Outcome, StoreError};

use crate::access::CompanyScope;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::mail::{self, Message};
use crate::platform::{normalize_email, Platform, Session};
use crate::principal::Principal;

/// A new invitation: its token is shown to the inviter once and emailed.
#[derive(Debug)]
pub struct NewInvitation {
    pub record: InvitationRecord,
    pub token: Secret,
}

/// The one answer for a token that is unknown, used, revoked or expired.
pub fn invitation_invalid() -> ServiceError {
    ServiceError::new(
        ErrorKind::NotFound,
        "invitation-invalid",
        "Invitation not usable",
        "this invitation is unknown, already used, revoked or expired",
    )
}

/// Records a refused membership change in the control trail; answers the
/// error to return (or audit-unavailable when it cannot be recorded).
async fn record_refusal(
    platform: &Platform,
    actor: &Actor,
    company_id: &str,
    action: Action,
    target: Option<String>,
    error: ServiceError,
) -> ServiceError {
    {
        let event = AuditEvent {
            at: platform.now(),
            actor: actor.clone(),
            company_id: Some(company_id.to_string()),
            action,
            target,
            outcome: Outcome::Failure,
            detail: Some(error.detail.clone()),
        };
        if let Err(e) = platform.control.audit(&event).await {
            tracing::error!(error = %e, "cannot audit a refused membership change");
            return ServiceError::audit_unavailable();
        }
        error
    }
}

impl CompanyScope {
    /// Invites `email` to the company with `role`, and emails the link.
    pub async fn invite(
        &self,
        platform: &Platform,
        email: &str,
        role: Role,
    ) -> ServiceResult<NewInvitation> {
        platform
            .invite_to(self.company_id(), self.role(), self.actor(), email, role)
            .await
    }

    pub async fn invitations(&self, platform: &Platform) -> ServiceResult<Vec<InvitationRecord>> {
        Ok(platform
            .control
            .pending_invitations(self.company_id(), platform.now())
            .await?)
    }

    pub async fn revoke_invitation(&self, platform: &Platform, id: &str) -> ServiceResult<()> {
        let audit = AuditEvent {
            at: platform.now(),
            actor: self.actor().clone(),
            company_id: Some(self.company_id().to_string()),
            action: Action::InvitationRevoke,
            target: Some(format!("invitation:{}", bounded(id))),
            outcome: Outcome::Success,
            detail: None,
        };
        let revoked = platform
            .control
            .revoke_invitation(self.company_id(), id, platform.now(), &audit)
            .await?;
        if revoked {
            Ok(())
        } else {
            Err(ServiceError::not_found("pending invitation"))
        }
    }

    pub async fn members(&self, platform: &Platform) -> ServiceResult<Vec<MemberRecord>> {
        Ok(platform.control.members(self.company_id()).await?)
    }

    /// Gives a member another role (`Some`) or removes them (`None`
    /// answered). Their access changes on every node at once; removal and a
    /// lower role revoke the API keys they created for this company.
    pub async fn change_member(
        &self,
        platform: &Platform,
        user_id: &str,
        change: MemberChange,
    ) -> ServiceResult<Option<MemberRecord>> {
        let (action, detail) = match change {
            MemberChange::SetRole(role) => (Action::MemberRole, format!("role {role}")),
            MemberChange::Remove => (Action::MemberRemove, "removed".to_string()),
        };
        let target = Some(format!("user:{}", bounded(user_id)));
        let audit = AuditEvent {
            at: platform.now(),
            actor: self.actor().clone(),
            company_id: Some(self.company_id().to_string()),
            action,
            target: target.clone(),
            outcome: Outcome::Success,
            detail: Some(detail),
        };
        let changed = platform
            .control
            .change_member(
                self.company_id(),
                user_id,
                self.role(),
                change,
                platform.now(),
                &audit,
            )
            .await;
        match changed {
            Ok(member) => Ok(member),
            Err(StoreError::Members(rule)) => Err(record_refusal(
                platform,
                self.actor(),
                self.company_id(),
                action,
                target,
                rule.into(),
            )
            .await),
            Err(StoreError::NotFound(_)) => Err(ServiceError::not_found("member")),
            Err(e) => Err(e.into()),
        }
    }
}

impl Platform {
    /// Invites `email` to `company_id` with `role` on behalf of `actor`
    /// (whose role there is `inviter`), and emails the link. Through a
    /// [`CompanyScope`] for callers; directly for operators (`workbooks
    /// company invite`, as an owner would).
    pub async fn invite_to(
        &self,
        company_id: &str,
        inviter: Role,
        actor: &Actor,
        email: &str,
        role: Role,
    ) -> ServiceResult<NewInvitation> {
        let platform = self;
        let email = normalize_email(email)?;
        if let Err(rule) = check_invite(inviter, role) {
            let target = Some(format!("email:{email}"));
            return Err(record_refusal(
                platform,
                actor,
                company_id,
                Action::InvitationCreate,
                target,
                rule.into(),
            )
            .await);
        }
        let settings = platform.mail_settings();
        let now = platform.now();
        let token = new_token("wbi");
        let record = InvitationRecord {
            id: uuid::Uuid::now_v7().to_string(),
            company_id: company_id.to_string(),
            email: email.clone(),
            role,
            token_hash: token.hash,
            invited_by: actor.id.clone(),
            created_at: now,
            expires_at: now + settings.invitation_ttl,
            accepted_at: None,
            accepted_by: None,
            revoked_at: None,
        };
        let audit = AuditEvent {
            at: now,
            actor: actor.clone(),
            company_id: Some(company_id.to_string()),
            action: Action::InvitationCreate,
            target: Some(format!("invitation:{}", record.id)),
            outcome: Outcome::Success,
            detail: Some(format!("email {email}, role {role}")),
        };
        platform.control.create_invitation(&record, &audit).await?;
        let company = platform
            .control
            .company(company_id)
            .await?
            .map_or_else(|| "a company".to_string(), |c| c.name);
        let message = invitation_message(&settings.public_url, &company, &record, &token.token);
        // Queued in the control store: a mail server that is down delays
        // the message, never the request. If even queueing fails, the
        // invitation stands and its token is in this answer: the inviter
        // can pass it on (logged for the operator).
        if let Err(e) = mail::queue(platform, &message).await {
            tracing::error!(error = %e, invitation = %record.id, "cannot queue an invitation email");
        }
        Ok(NewInvitation {
            record,
            token: token.token,
        })
    }
}

/// What a person accepting an invitation sends.
#[derive(Debug, Default)]
pub struct Acceptance {
    /// Required when the invited email has no account yet.
    pub passphrase: Option<Secret>,
    pub name: Option<String>,
}

impl Platform {
    /// Uses an invitation: creates the account when the invited email has
    /// none (a passphrase is then required and strength-checked), or links
    /// the signed-in account whose email it is. A token alone never hands
    /// an existing account to anyone. Opens a session for the member.
    pub async fn accept_invitation(
        &self,
        token: &Secret,
        acceptance: Acceptance,
        signed_in: Option<&Principal>,
        actor: Actor,
    ) -> ServiceResult<Session> {
        let now = self.now();
        let hash = token_hash(token);
        let refuse = |detail: &'static str, company: Option<String>| {
            let actor = actor.clone();
            async move {
                let event = AuditEvent {
                    at: now,
                    actor,
                    company_id: company,
                    action: Action::InvitationAccept,
                    target: None,
                    outcome: Outcome::Failure,
                    detail: Some(detail.into()),
                };
                self.control.audit(&event).await
            }
        };
        let invitation = match self.control.invitation_by_token(&hash).await? {
            Some(i) if usable(&i, now) => i,
            _ => {
                refuse("no usable invitation for this token", None).await?;
                return Err(invitation_invalid());
            }
        };
        let company = Some(invitation.company_id.clone());
        let existing = self.control.user_by_email(&invitation.email).await?;
        let signed_in_as = match signed_in {
            Some(Principal::User { user_id, .. }) => Some(user_id.as_str()),
            // An API key is no person: it cannot accept for one.
            Some(Principal::ApiKey { .. } | Principal::Staff { .. }) => Some(""),
            None => None,
        };
        let joiner = match (&existing, signed_in_as) {
            (Some(user), Some(me)) if me == user.id => Joiner::Existing {
                user_id: user.id.clone(),
            },
            (Some(_), None) => {
                refuse("the invited account must be signed in to accept", company).await?;
                return Err(ServiceError::unauthorized(
                    "this invitation is for an existing account: sign in as that account, then accept",
                ));
            }
            (Some(_), Some(_)) => {
                refuse("signed in as another account than the invited one", company).await?;
                return Err(ServiceError::forbidden(
                    "this invitation is for another account: sign in as the invited one",
                ));
            }
            (None, Some(_)) => {
                refuse("signed in as another account than the invited one", company).await?;
                return Err(ServiceError::forbidden(
                    "this invitation is for another email address",
                ));
            }
            (None, None) => {
                let Some(passphrase) = &acceptance.passphrase else {
                    return Err(ServiceError::bad_request(
                        "passphrase-required",
                        "the invited email has no account yet: choose a passphrase",
                    ));
                };
                let name = acceptance.name.as_deref().map(clean_name).transpose()?;
                let min_score = self
                    .control
                    .company_policy(&invitation.company_id)
                    .await?
                    .unwrap_or_default()
                    .min_passphrase_strength;
                Joiner::NewUser(
                    self.new_user_scored(&invitation.email, passphrase, name, &[], min_score)
                        .await?,
                )
            }
        };
        let audit = AuditEvent {
            at: now,
            actor: Actor {
                id: match &joiner {
                    Joiner::NewUser(u) => format!("user:{}", u.id),
                    Joiner::Existing { user_id } => format!("user:{user_id}"),
                },
                ..actor.clone()
            },
            company_id: company.clone(),
            action: Action::InvitationAccept,
            target: Some(format!("invitation:{}", invitation.id)),
            outcome: Outcome::Success,
            detail: Some(format!("role {}", invitation.role)),
        };
        let accepted = match self
            .control
            .accept_invitation(&hash, &joiner, now, &audit)
            .await
        {
            Ok(accepted) => accepted,
            Err(StoreError::NotFound(_)) => {
                // Used or revoked since it was read (a concurrent acceptance).
                refuse("no usable invitation for this token", company).await?;
                return Err(invitation_invalid());
            }
            Err(StoreError::Conflict(detail)) => {
                return Err(ServiceError::conflict("invitation-conflict", detail))
            }
            Err(e) => return Err(e.into()),
        };
        let user = self
            .control
            .user(&accepted.user_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        self.open_session(user, crate::platform::SessionOrigin::of(&actor, None))
            .await
    }
}

fn usable(i: &InvitationRecord, now: OffsetDateTime) -> bool {
    i.accepted_at.is_none() && i.revoked_at.is_none() && i.expires_at > now
}

/// Ids a caller sends are bounded before they enter the trail.
fn bounded(id: &str) -> String {
    id.chars().take(64).collect()
}

fn clean_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::unprocessable(
            "invalid-name",
            "a name is 1 to 200 characters, without control characters",
        ));
    }
    Ok(name.to_string())
}

fn invitation_message(
    public_url: &str,
    company: &str,
    invitation: &InvitationRecord,
    token: &Secret,
) -> Message {
    let base = public_url.trim_end_matches('/');
    Message {
        to: invitation.email.clone(),
        subject: format!("You are invited to {company}'s books on Work-books"),
        body: format!(
            "You have been invited to keep the books of {company} on Work-books, as {role}.\n\
             \n\
             Accept the invitation here (the link works once, until {expires}):\n\
             {base}/accept-invitation#{token}\n\
             \n\
             Or with the API: POST {base}/api/v1/invitations/{token}/accept\n\
             \n\
             If you did not expect this, ignore this message: nothing happens \
             until the invitation is accepted.\n",
            role = invitation.role,
            expires = invitation
                .expires_at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .unwrap_or_default(),
            token = token.expose(),
        ),
    }
}
