//! A signed-in person's own account: their sessions (list, end one, end all
//! others) and their passphrase. Only sessions act here, never API keys.

use time::OffsetDateTime;
use wb_core::Action;
use wb_crypto::{check_strength, hash_passphrase, PassphraseError, Secret};
use wb_store::{Actor, AuditEvent, Outcome, UserRecord};

use crate::error::{ServiceError, ServiceResult};
use crate::mail::{self, Message};
use crate::platform::Platform;
use crate::principal::Principal;

/// Hex characters of a session's token hash that name it in the API: 128
/// bits of a hash of a 256-bit secret, which reveal nothing of the token.
pub const SESSION_ID_LEN: usize = 32;

/// One of the caller's sessions, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_seen_at: Option<OffsetDateTime>,
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// The session making this request.
    pub current: bool,
}

/// The user and session of a person's request; API keys have neither.
pub(crate) fn session_of(principal: &Principal) -> ServiceResult<(&str, &str)> {
    match principal {
        Principal::User {
            user_id,
            token_hash,
            ..
        } => Ok((user_id, token_hash)),
        Principal::ApiKey { .. } => Err(ServiceError::forbidden(
            "API keys have no account, sessions or second factors: use a session",
        )),
        Principal::Staff { .. } => Err(ServiceError::forbidden(
            "staff sessions have no customer account",
        )),
    }
}

impl Platform {
    pub async fn my_sessions(&self, principal: &Principal) -> ServiceResult<Vec<SessionInfo>> {
        let (user_id, own) = session_of(principal)?;
        let sessions = self.control.sessions_of(user_id, self.now()).await?;
        Ok(sessions
            .into_iter()
            .map(|s| SessionInfo {
                id: s.token_hash[..SESSION_ID_LEN.min(s.token_hash.len())].to_string(),
                current: s.token_hash == own,
                created_at: s.created_at,
                expires_at: s.expires_at,
                last_seen_at: s.last_seen_at,
                client: s.client,
                user_agent: s.user_agent,
            })
            .collect())
    }

    /// Ends one of the caller's sessions (by its listed id), or with `None`
    /// every other one; answers how many ended.
    pub async fn end_my_sessions(
        &self,
        principal: &Principal,
        id: Option<&str>,
        actor: Actor,
    ) -> ServiceResult<usize> {
        let (user_id, own) = session_of(principal)?;
        let (prefix, keep) = match id {
            Some(id) if id.len() == SESSION_ID_LEN && id.chars().all(|c| c.is_ascii_hexdigit()) => {
                (id.to_ascii_lowercase(), None)
            }
            Some(_) => return Err(ServiceError::not_found("session")),
            None => (String::new(), Some(own)),
        };
        let ended = self
            .control
            .revoke_sessions_of(user_id, &prefix, keep, self.now())
            .await?;
        if id.is_some() && ended.is_empty() {
            return Err(ServiceError::not_found("session"));
        }
        self.forget_sessions(&ended);
        self.control
            .audit(&AuditEvent {
                at: self.now(),
                actor,
                company_id: None,
                action: Action::AuthSessionRevoke,
                target: Some(format!("user:{user_id}")),
                outcome: Outcome::Success,
                detail: Some(format!("{} session(s) ended", ended.len())),
            })
            .await?;
        Ok(ended.len())
    }

    /// Changes the caller's passphrase: the current one must be right
    /// (attempts are throttled like logins), the new one strong enough.
    /// Every other session of the account ends; this one goes on. The owner
    /// of the account is told by email.
    pub async fn change_my_passphrase(
        &self,
        principal: &Principal,
        current: &Secret,
        new: &Secret,
        actor: Actor,
    ) -> ServiceResult<usize> {
        let (user_id, own) = session_of(principal)?;
        let user = self
            .control
            .user(user_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        // The current passphrase, counted like a login (`reauthenticate`).
        self.reauthenticate(&user, current, None, Action::AuthPassphraseChange, &actor)
            .await?;
        let now = self.now();
        let new_hash = match self.hash_new_passphrase(&user, new).await? {
            Ok(hash) => hash,
            Err(refused) => {
                self.audit_passphrase_change(
                    &actor,
                    user_id,
                    Outcome::Failure,
                    "new passphrase too weak",
                )
                .await?;
                return Err(refused);
            }
        };
        let audit = account_event(
            &actor,
            user_id,
            Action::AuthPassphraseChange,
            Outcome::Success,
            "other sessions ended",
            now,
        );
        let ended = self
            .control
            .change_passphrase(user_id, &new_hash, Some(own), &audit)
            .await?;
        self.forget_sessions(&ended);
        let notice = Message {
            to: user.email.clone(),
            subject: "Your Work-books passphrase was changed".into(),
            body: format!(
                "The passphrase of your Work-books account {} was changed, and every other \
                 session of the account was ended.\n\nIf you did not do this, reset your \
                 passphrase at once and tell the owners of your companies.\n",
                user.email
            ),
        };
        if let Err(e) = mail::queue(self, &notice).await {
            tracing::warn!(error = %e, "cannot queue the passphrase-change notice");
        }
        Ok(ended.len())
    }

    /// A user's new passphrase checked (length, the breached list, the
    /// strictest strength of their companies, their own words) and hashed,
    /// on the bounded CPU pool; the inner error is the refusal to answer
    /// (422 weak-passphrase, naming the rule), for the caller to record.
    pub(crate) async fn hash_new_passphrase(
        &self,
        user: &UserRecord,
        new: &Secret,
    ) -> ServiceResult<Result<String, ServiceError>> {
        let local = user.email.split('@').next().unwrap_or("").to_string();
        let (email, new) = (user.email.clone(), new.clone());
        let min_score = self.required_strength(&user.id).await?;
        let hashed = self
            .cpu
            .run(move || {
                check_strength(&new, &[email.as_str(), local.as_str()], min_score)?;
                hash_passphrase(&new)
            })
            .await?;
        match hashed {
            Ok(hash) => Ok(Ok(hash)),
            Err(PassphraseError::Weak(reason)) => Ok(Err(ServiceError::unprocessable(
                "weak-passphrase",
                format!("passphrase is too weak: {reason}"),
            ))),
            Err(PassphraseError::Hash) => Err(ServiceError::internal()),
        }
    }

    async fn audit_passphrase_change(
        &self,
        actor: &Actor,
        user_id: &str,
        outcome: Outcome,
        detail: &str,
    ) -> ServiceResult<()> {
        self.audit_mfa(
            actor,
            user_id,
            Action::AuthPassphraseChange,
            outcome,
            detail,
        )
        .await
    }
}

/// An event about a person's own account (factors, passphrase) in the
/// control chain.
pub(crate) fn account_event(
    actor: &Actor,
    user_id: &str,
    action: Action,
    outcome: Outcome,
    detail: &str,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        at,
        actor: actor.clone(),
        company_id: None,
        action,
        target: Some(format!("user:{user_id}")),
        outcome,
        detail: Some(detail.into()),
    }
}
