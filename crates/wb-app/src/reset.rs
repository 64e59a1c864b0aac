//! Passphrase reset by email: a single-use token, valid for an hour, mailed
//! to the account's address; using it sets a new passphrase and ends every
//! session of the account. A second factor stays: the next login still
//! asks for it.
//!
//! Asking never tells whether an account exists: the same answer after the
//! same time (`RESET_ANSWER_FLOOR`) whatever the email, and requests are
//! counted per address and per email so the mailbox of a victim cannot be
//! flooded.

use std::time::Instant;

use time::Duration;
use wb_core::Action;
use wb_crypto::{new_token, token_hash, Secret};
use wb_store::{Actor, Attempt, AuditEvent, Outcome, PassphraseReset};

use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::mail::{self, Message};
use crate::platform::{normalize_email, Platform, MIN_PASSPHRASE_SCORE};

/// How long an emailed reset token works.
pub const RESET_TTL: Duration = Duration::hours(1);
/// Every request is answered no sooner than this, so the work done for a
/// real account (a token stored, a message queued) is not visible in the
/// timing of the answer.
pub const RESET_ANSWER_FLOOR: std::time::Duration = std::time::Duration::from_millis(250);
/// Reset requests per client address, and per email, per hour.
const RESETS_PER_ADDRESS: u32 = 10;
const RESETS_PER_EMAIL: u32 = 3;
const RESET_WINDOW: Duration = Duration::hours(1);

fn reset_invalid() -> ServiceError {
    ServiceError::new(
        ErrorKind::NotFound,
        "reset-invalid",
        "Reset link invalid",
        "this reset link is unknown, used or expired: ask for a new one",
    )
}

impl Platform {
    /// Asks for a reset of the account with `email`. Answers the same way
    /// for every well-formed email (and after `RESET_ANSWER_FLOOR`); only
    /// the request budgets (429) and a malformed email (422) differ.
    pub async fn request_passphrase_reset(&self, email: &str, actor: Actor) -> ServiceResult<()> {
        let started = Instant::now();
        let email = normalize_email(email)?;
        let result = self.reset_request(&email, &actor).await;
        if let Some(rest) = RESET_ANSWER_FLOOR.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        result
    }

    async fn reset_request(&self, email: &str, actor: &Actor) -> ServiceResult<()> {
        let now = self.now();
        let mut budgets = vec![(format!("reset:email:{email}"), RESETS_PER_EMAIL)];
        if let Some(client) = &actor.client {
            let client = crate::login::budget_address(client);
            budgets.push((format!("reset:client:{client}"), RESETS_PER_ADDRESS));
        }
        for (key, max) in budgets {
            if let Attempt::Refused { until } = self
                .control
                .reserve_attempt(std::slice::from_ref(&key), now, RESET_WINDOW, max)
                .await?
            {
                self.audit_reset(
                    actor,
                    format!("email:{email}"),
                    Outcome::Failure,
                    "throttled",
                )
                .await?;
                return Err(ServiceError::too_many(
                    "too many passphrase resets asked for; try again later",
                    u64::try_from((until - now).whole_seconds().max(1)).unwrap_or(1),
                ));
            }
        }
        let Some(user) = self.control.user_by_email(email).await? else {
            return self
                .audit_reset(
                    actor,
                    format!("email:{email}"),
                    Outcome::Failure,
                    "unknown email; nothing sent, answered like a known one",
                )
                .await;
        };
        let token = new_token("wbr");
        let reset = PassphraseReset {
            token_hash: token.hash,
            user_id: user.id.clone(),
            created_at: now,
            expires_at: now + RESET_TTL,
            used_at: None,
        };
        let audit = reset_event(
            actor,
            format!("user:{}", user.id),
            Outcome::Success,
            "reset link emailed",
            now,
        );
        self.control.create_passphrase_reset(&reset, &audit).await?;
        let base = self.mail_settings().public_url;
        let base = base.trim_end_matches('/');
        let message = Message {
            to: user.email.clone(),
            subject: "Reset your Work-books passphrase".into(),
            body: format!(
                "Someone (we hope you) asked to reset the passphrase of the Work-books account \
                 {email}.\n\nChoose a new passphrase here (the link works once, for one hour):\n\
                 {base}/reset-passphrase#{token}\n\nOr with the API: POST \
                 {base}/api/v1/auth/passphrase-reset/complete {{\"token\",\"passphrase\"}}\n\n\
                 Every session of the account ends when the passphrase is reset; a second \
                 factor, if you have one, stays. If you did not ask for this, ignore this \
                 message: nothing changes.\n",
                email = user.email,
                token = token.token.expose(),
            ),
        };
        if let Err(e) = mail::queue(self, &message).await {
            tracing::warn!(error = %e, "cannot queue a passphrase-reset message");
        }
        Ok(())
    }

    /// Sets a new passphrase with an emailed reset token: single use, one
    /// hour; every session of the account ends. An unknown, used or expired
    /// token is one answer (404 reset-invalid).
    pub async fn complete_passphrase_reset(
        &self,
        token: &Secret,
        passphrase: &Secret,
        actor: Actor,
    ) -> ServiceResult<usize> {
        let hash = token_hash(token);
        let now = self.now();
        let found = self
            .control
            .passphrase_reset(&hash)
            .await?
            .filter(|r| r.used_at.is_none() && r.expires_at > now);
        let Some(found) = found else {
            self.audit_reset(
                &actor,
                "passphrase_reset".into(),
                Outcome::Failure,
                "unknown, used or expired reset token",
            )
            .await?;
            return Err(reset_invalid());
        };
        let user = self
            .control
            .user(&found.user_id)
            .await?
            .ok_or_else(reset_invalid)?;
        let new_hash = match self.hash_new_passphrase(&user, passphrase).await? {
            Ok(hash) => hash,
            Err(refused) => {
                self.audit_reset(
                    &actor,
                    format!("user:{}", user.id),
                    Outcome::Failure,
                    "new passphrase too weak",
                )
                .await?;
                return Err(refused);
            }
        };
        let audit = reset_event(
            &actor,
            format!("user:{}", user.id),
            Outcome::Success,
            "passphrase reset with an emailed token; every session ended",
            self.now(),
        );
        let ended = self
            .control
            .complete_passphrase_reset(&hash, &new_hash, &audit)
            .await
            .map_err(|e| match e {
                wb_store::StoreError::NotFound(_) => reset_invalid(),
                other => other.into(),
            })?;
        self.forget_sessions(&ended);
        let notice = Message {
            to: user.email.clone(),
            subject: "Your Work-books passphrase was reset".into(),
            body: format!(
                "The passphrase of your Work-books account {} was reset with a link sent to \
                 this address, and every session of the account was ended.\n\nIf you did not \
                 do this, tell the owners of your companies at once.\n",
                user.email
            ),
        };
        if let Err(e) = mail::queue(self, &notice).await {
            tracing::warn!(error = %e, "cannot queue the passphrase-reset notice");
        }
        Ok(ended.len())
    }

    /// The strength a user's new passphrase must reach: the platform's
    /// minimum, or more where a company they belong to asks more.
    pub(crate) async fn required_strength(&self, user_id: &str) -> ServiceResult<u8> {
        let mut min = MIN_PASSPHRASE_SCORE;
        for membership in self.control.memberships_of(user_id).await? {
            if let Some(policy) = self.control.company_policy(&membership.company_id).await? {
                min = min.max(policy.min_passphrase_strength);
            }
        }
        Ok(min)
    }

    async fn audit_reset(
        &self,
        actor: &Actor,
        target: String,
        outcome: Outcome,
        detail: &str,
    ) -> ServiceResult<()> {
        let event = reset_event(actor, target, outcome, detail, self.now());
        Ok(self.control.audit(&event).await?)
    }
}

fn reset_event(
    actor: &Actor,
    target: String,
    outcome: Outcome,
    detail: &str,
    at: time::OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        at,
        actor: actor.clone(),
        company_id: None,
        action: Action::AuthPassphraseReset,
        target: Some(target),
        outcome,
        detail: Some(detail.into()),
    }
}
