//! Second factors of a person's own account: an authenticator app (TOTP:
//! enrol, confirm with a first code, remove), recovery codes, and proving a
//! second factor at login.
//!
//! Starting an enrolment, removing the authenticator and replacing the
//! recovery codes each ask for the passphrase again (a stolen session alone
//! cannot take over or weaken an account); removal and replacement also ask
//! for a current code. Wrong passphrases and codes count against the same
//! failed-login budget as logins. TOTP secrets are sealed under the
//! keyring's MFA key, bound to the user's id, and are shown only once, when
//! enrolment starts.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use time::{Duration, OffsetDateTime};
use wb_core::Action;
use wb_crypto::{new_recovery_codes, recovery_code_hash, verify_passphrase, Secret, TotpSecret};
use wb_store::{Actor, Attempt, Outcome, TotpRecord, UserRecord};

use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::keyring::totp_secret_aad;
use crate::mail::{self, Message};
use crate::platform::identity::{FAILED_LOGINS_MAX, FAILED_LOGIN_WINDOW};
use crate::platform::Platform;
use crate::principal::Principal;

/// How long the second step of a login may wait for its factor.
pub const MFA_CHALLENGE_TTL: Duration = Duration::minutes(5);
/// Wrong factors a login challenge takes before it is used up.
pub const MFA_CHALLENGE_FAILURES: u32 = 5;
/// The issuer shown in authenticator apps.
const ISSUER: &str = "Work-books";

/// What starting an enrolment shows, once.
pub struct TotpEnrolment {
    /// The secret in base32, to type in by hand.
    pub secret: Secret,
    pub otpauth_uri: Secret,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(***)")
    }
}

/// Where a person's second factors stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaStatus {
    /// "none", "pending" (enrolment started, not confirmed) or "enabled".
    pub totp: &'static str,
    pub totp_confirmed_at: Option<OffsetDateTime>,
    pub recovery_codes_left: u32,
    pub passkeys: usize,
}

/// A second factor a login was proved with (stored with the session).
pub const FACTOR_TOTP: &str = "totp";
pub const FACTOR_RECOVERY_CODE: &str = "recovery_code";
pub const FACTOR_PASSKEY: &str = "passkey";

use crate::account::{account_event, session_of as user_of};

pub fn mfa_invalid() -> ServiceError {
    ServiceError::new(
        ErrorKind::Unauthorized,
        "mfa-invalid",
        "Second factor invalid",
        "the code is wrong, expired or already used",
    )
}

fn unix_seconds(at: OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp()).unwrap_or(0)
}

/// The enrolment URI as an SVG QR code.
fn qr_svg(uri: &str) -> ServiceResult<String> {
    let code = QrCode::with_error_correction_level(uri.as_bytes(), EcLevel::M)
        .map_err(|_| ServiceError::internal())?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

impl Platform {
    /// Seals a TOTP secret to its holder (`subject`: a user id, or
    /// `staff:ID`), so a sealed secret cannot be moved to someone else.
    pub(crate) fn seal_totp(&self, subject: &str, secret: &TotpSecret) -> ServiceResult<Vec<u8>> {
        self.keyring()
            .mfa_key()
            .seal(secret.expose_bytes(), &totp_secret_aad(subject))
            .map_err(|_| ServiceError::internal())
    }

    pub(crate) fn open_totp_of(&self, subject: &str, sealed: &[u8]) -> ServiceResult<TotpSecret> {
        let bytes = crate::keyring::open_with_any(
            &self.keyring().mfa_keys(),
            sealed,
            &totp_secret_aad(subject),
        )
        .ok_or_else(ServiceError::internal)?;
        TotpSecret::from_bytes(&bytes).map_err(|_| ServiceError::internal())
    }

    fn open_totp(&self, record: &TotpRecord) -> ServiceResult<TotpSecret> {
        self.open_totp_of(&record.user_id, &record.sealed_secret)
    }

    /// The second-factor methods a login of this user must use; empty when
    /// the user has none.
    pub(crate) async fn second_factors_of(
        &self,
        user_id: &str,
    ) -> ServiceResult<Vec<&'static str>> {
        let confirmed = self
            .control
            .totp(user_id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
        let mut methods = if confirmed {
            vec![FACTOR_TOTP, FACTOR_RECOVERY_CODE]
        } else {
            Vec::new()
        };
        if !self.control.passkeys(user_id).await?.is_empty() {
            methods.push(FACTOR_PASSKEY);
        }
        Ok(methods)
    }

    /// Checks `code` as a current TOTP code (each step accepted once) or an
    /// unused recovery code (then used up). None: wrong.
    pub(crate) async fn prove_second_factor(
        &self,
        user_id: &str,
        code: &Secret,
    ) -> ServiceResult<Option<&'static str>> {
        let Some(record) = self.control.totp(user_id).await? else {
            return Ok(None);
        };
        if record.confirmed_at.is_none() {
            return Ok(None);
        }
        let secret = self.open_totp(&record)?;
        if let Some(step) = secret.verify(code.expose(), unix_seconds(self.now())) {
            let step = i64::try_from(step).unwrap_or(i64::MAX);
            let fresh = self.control.use_totp_step(user_id, step).await?;
            return Ok(fresh.then_some(FACTOR_TOTP));
        }
        if let Some(hash) = recovery_code_hash(code.expose()) {
            if self
                .control
                .use_recovery_code(user_id, &hash, self.now())
                .await?
            {
                return Ok(Some(FACTOR_RECOVERY_CODE));
            }
        }
        Ok(None)
    }

    /// Counts a wrong passphrase or code of a signed-in user against the
    /// account's re-authentication budget (429, audited as `action`,
    /// beyond it); the caller gives the attempt back when it was right.
    async fn reserve_reauth(
        &self,
        user: &UserRecord,
        action: Action,
        actor: &Actor,
    ) -> ServiceResult<Vec<(String, OffsetDateTime)>> {
        let now = self.now();
        let keys = [format!("reauth:{}", user.email)];
        match self
            .control
            .reserve_attempt(&keys, now, FAILED_LOGIN_WINDOW, FAILED_LOGINS_MAX)
            .await?
        {
            Attempt::Counted(counted) => Ok(counted),
            Attempt::Refused { until } => {
                self.audit_mfa(actor, &user.id, action, Outcome::Failure, "throttled")
                    .await?;
                Err(ServiceError::too_many(
                    "too many wrong passphrases or codes; try again later",
                    u64::try_from((until - now).whole_seconds().max(1)).unwrap_or(1),
                ))
            }
        }
    }

    /// Checks the passphrase of a signed-in user (re-authentication), and
    /// `code` when given, against the failed-login budget of the account.
    pub(crate) async fn reauthenticate(
        &self,
        user: &UserRecord,
        passphrase: &Secret,
        code: Option<&Secret>,
        action: Action,
        actor: &Actor,
    ) -> ServiceResult<Option<&'static str>> {
        let counted = self.reserve_reauth(user, action, actor).await?;
        let (hash, pass) = (user.passphrase_hash.clone(), passphrase.clone());
        let right = self
            .cpu
            .run(move || verify_passphrase(&hash, &pass))
            .await?;
        if !right {
            self.audit_mfa(
                actor,
                &user.id,
                action,
                Outcome::Failure,
                "wrong passphrase",
            )
            .await?;
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "wrong-passphrase",
                "Wrong passphrase",
                "the passphrase is wrong",
            ));
        }
        let factor = match code {
            None => None,
            Some(code) => match self.prove_second_factor(&user.id, code).await? {
                Some(factor) => Some(factor),
                None => {
                    self.audit_mfa(actor, &user.id, action, Outcome::Failure, "wrong code")
                        .await?;
                    return Err(mfa_invalid());
                }
            },
        };
        self.release_attempt(&counted).await;
        Ok(factor)
    }

    /// Adding or removing a second factor of an account that has one needs
    /// a session that proved one (at login or by confirming an enrolment):
    /// a passphrase and a stolen passphrase-only session must not do it.
    pub(crate) async fn require_verified_session(
        &self,
        principal: &Principal,
        user_id: &str,
    ) -> ServiceResult<()> {
        let verified = matches!(
            principal,
            Principal::User {
                second_factor: true,
                ..
            }
        );
        if !verified && !self.second_factors_of(user_id).await?.is_empty() {
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "mfa-required",
                "Second factor required",
                "this account has a second factor: sign in with it to change its second factors",
            ));
        }
        Ok(())
    }

    pub(crate) async fn signed_in_user(&self, principal: &Principal) -> ServiceResult<UserRecord> {
        let (user_id, _) = user_of(principal)?;
        self.control
            .user(user_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))
    }

    /// Starts (or restarts) enrolling an authenticator app: a new secret,
    /// shown once. A confirmed authenticator must be removed first (409).
    pub async fn begin_totp(
        &self,
        principal: &Principal,
        passphrase: &Secret,
        actor: Actor,
    ) -> ServiceResult<TotpEnrolment> {
        let user = self.signed_in_user(principal).await?;
        self.require_verified_session(principal, &user.id).await?;
        self.reauthenticate(&user, passphrase, None, Action::AuthMfaEnrol, &actor)
            .await?;
        let secret = TotpSecret::generate();
        let record = TotpRecord {
            user_id: user.id.clone(),
            sealed_secret: self.seal_totp(&user.id, &secret)?,
            created_at: self.now(),
            confirmed_at: None,
            last_step: 0,
        };
        let audit = account_event(
            &actor,
            &user.id,
            Action::AuthMfaEnrol,
            Outcome::Success,
            "authenticator enrolment started",
            self.now(),
        );
        self.control
            .begin_totp(&record, &audit)
            .await
            .map_err(|e| match e {
                wb_store::StoreError::Conflict(_) => ServiceError::conflict(
                    "mfa-already-enrolled",
                    "an authenticator is already enrolled; remove it first to enrol another",
                ),
                other => other.into(),
            })?;
        let uri = secret
            .uri(ISSUER, &user.email)
            .map_err(|_| ServiceError::internal())?;
        Ok(TotpEnrolment {
            secret: secret.base32(),
            qr_svg: qr_svg(uri.expose())?,
            otpauth_uri: uri,
        })
    }

    /// Confirms enrolment with a first code: from now on every login asks
    /// for a second factor. Answers ten recovery codes, shown once. The
    /// session making the request counts as verified with the factor.
    pub async fn confirm_totp(
        &self,
        principal: &Principal,
        code: &Secret,
        actor: Actor,
    ) -> ServiceResult<Vec<Secret>> {
        let user = self.signed_in_user(principal).await?;
        let (_, token_hash) = user_of(principal)?;
        let record = self
            .control
            .totp(&user.id)
            .await?
            .filter(|r| r.confirmed_at.is_none())
            .ok_or_else(|| {
                ServiceError::conflict(
                    "mfa-not-pending",
                    "no authenticator enrolment is waiting for a code; start one first",
                )
            })?;
        // Wrong confirmation codes count like wrong passphrases.
        let counted = self
            .reserve_reauth(&user, Action::AuthMfaEnrol, &actor)
            .await?;
        let secret = self.open_totp(&record)?;
        let Some(step) = secret.verify(code.expose(), unix_seconds(self.now())) else {
            self.audit_mfa(
                &actor,
                &user.id,
                Action::AuthMfaEnrol,
                Outcome::Failure,
                "wrong confirmation code",
            )
            .await?;
            return Err(mfa_invalid());
        };
        self.release_attempt(&counted).await;
        let codes = new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .filter_map(|c| recovery_code_hash(c.expose()))
            .collect();
        let audit = account_event(
            &actor,
            &user.id,
            Action::AuthMfaEnrol,
            Outcome::Success,
            "authenticator confirmed; 10 recovery codes issued",
            self.now(),
        );
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.control
            .confirm_totp(&user.id, record.created_at, step, &hashes, &audit)
            .await
            .map_err(|e| match e {
                wb_store::StoreError::NotFound(_) => mfa_invalid(),
                other => other.into(),
            })?;
        self.control
            .set_session_factor(token_hash, FACTOR_TOTP)
            .await?;
        self.forget_sessions(&[token_hash.to_string()]);
        self.notify(
            &user,
            "A second factor was added to your Work-books account",
            "An authenticator app was enrolled as a second factor of your Work-books account",
        )
        .await;
        Ok(codes)
    }

    /// Removes the authenticator and every recovery code; asks for the
    /// passphrase and a current code (or an unused recovery code).
    pub async fn remove_totp(
        &self,
        principal: &Principal,
        passphrase: &Secret,
        code: &Secret,
        actor: Actor,
    ) -> ServiceResult<()> {
        let user = self.signed_in_user(principal).await?;
        self.reauthenticate(&user, passphrase, Some(code), Action::AuthMfaRemove, &actor)
            .await?;
        let audit = account_event(
            &actor,
            &user.id,
            Action::AuthMfaRemove,
            Outcome::Success,
            "authenticator and recovery codes removed",
            self.now(),
        );
        self.control.remove_totp(&user.id, &audit).await?;
        self.notify(
            &user,
            "A second factor was removed from your Work-books account",
            "The authenticator app of your Work-books account was removed, with its recovery codes",
        )
        .await;
        Ok(())
    }

    /// Replaces the recovery codes with ten new ones (shown once).
    pub async fn renew_recovery_codes(
        &self,
        principal: &Principal,
        passphrase: &Secret,
        code: &Secret,
        actor: Actor,
    ) -> ServiceResult<Vec<Secret>> {
        let user = self.signed_in_user(principal).await?;
        self.reauthenticate(
            &user,
            passphrase,
            Some(code),
            Action::AuthRecoveryCodes,
            &actor,
        )
        .await?;
        if self.second_factors_of(&user.id).await?.is_empty() {
            return Err(ServiceError::conflict(
                "mfa-not-enrolled",
                "recovery codes belong to an authenticator: enrol one first",
            ));
        }
        let codes = new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .filter_map(|c| recovery_code_hash(c.expose()))
            .collect();
        let audit = account_event(
            &actor,
            &user.id,
            Action::AuthRecoveryCodes,
            Outcome::Success,
            "10 new recovery codes; the old ones no longer work",
            self.now(),
        );
        self.control
            .replace_recovery_codes(&user.id, &hashes, self.now(), &audit)
            .await?;
        Ok(codes)
    }

    /// The operator's way back in for someone who lost their authenticator
    /// and their recovery codes (`workbooks user reset-mfa`): removes the
    /// factor, ends every session, audits the reason and tells the user.
    pub async fn operator_reset_mfa(
        &self,
        email: &str,
        reason: &str,
        actor: Actor,
    ) -> ServiceResult<UserRecord> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control)
        {
            return Err(ServiceError::unprocessable(
                "invalid-reason",
                "give a reason of 1 to 500 printable characters",
            ));
        }
        let email = crate::platform::normalize_email(email)?;
        let user = self
            .control
            .user_by_email(&email)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        let audit = account_event(
            &actor,
            &user.id,
            Action::AuthMfaRemove,
            Outcome::Success,
            &format!("reset by an operator: {reason}"),
            self.now(),
        );
        self.control
            .remove_totp(&user.id, &audit)
            .await
            .map_err(|e| match e {
                wb_store::StoreError::NotFound(_) => ServiceError::conflict(
                    "mfa-not-enrolled",
                    "this user has no second factor to reset",
                ),
                other => other.into(),
            })?;
        let ended = self
            .control
            .revoke_sessions_of(&user.id, "", None, self.now())
            .await?;
        self.forget_sessions(&ended);
        self.notify(
            &user,
            "The second factor of your Work-books account was reset",
            "An operator removed the second factor of your Work-books account and ended its sessions",
        )
        .await;
        Ok(user)
    }

    pub async fn mfa_status(&self, principal: &Principal) -> ServiceResult<MfaStatus> {
        let (user_id, _) = user_of(principal)?;
        let totp = self.control.totp(user_id).await?;
        Ok(MfaStatus {
            totp: match &totp {
                None => "none",
                Some(t) if t.confirmed_at.is_none() => "pending",
                Some(_) => "enabled",
            },
            totp_confirmed_at: totp.and_then(|t| t.confirmed_at),
            recovery_codes_left: self.control.recovery_codes_left(user_id).await?,
            passkeys: self.control.passkeys(user_id).await?.len(),
        })
    }

    pub(crate) async fn audit_mfa(
        &self,
        actor: &Actor,
        user_id: &str,
        action: Action,
        outcome: Outcome,
        detail: &str,
    ) -> ServiceResult<()> {
        let event = account_event(actor, user_id, action, outcome, detail, self.now());
        Ok(self.control.audit(&event).await?)
    }

    /// A security notice to the account's owner (queued; never fails the
    /// request).
    pub(crate) async fn notify(&self, user: &UserRecord, subject: &str, what: &str) {
        let notice = Message {
            to: user.email.clone(),
            subject: subject.into(),
            body: format!(
                "{what} ({}).\n\nIf you did not do this, reset your passphrase at once and \
                 tell the owners of your companies.\n",
                user.email
            ),
        };
        if let Err(e) = mail::queue(self, &notice).await {
            tracing::warn!(error = %e, "cannot queue a security notice");
        }
    }
}
