//! The platform's staff: accounts made on the server host (never through
//! the API), mandatory TOTP from creation, their own login and short
//! sessions (8 hours at most, 30 minutes idle), every change audited in the
//! control trail. Staff are not customer users: a staff token is never a
//! customer's and a customer's token never reaches a staff path.

use time::{Duration, OffsetDateTime};
use wb_core::staff::StaffRole;
use wb_core::Action;
use wb_crypto::{new_token, token_hash, verify_passphrase, Secret, TotpSecret};
use wb_store::staff::{StaffRecord, StaffSession};
use wb_store::{Actor, Attempt, AuditEvent, Outcome, StoreError};

use crate::error::{ServiceError, ServiceResult};
use crate::platform::identity::{seconds_until, FAILED_LOGIN_WINDOW};
use crate::platform::{normalize_email, Platform, SessionOrigin, MIN_PASSPHRASE_SCORE};

pub use crate::staff_limits::{StaffLimits, STAFF_IDLE_MINUTES, STAFF_SESSION_HOURS};
const ISSUER: &str = "Work-books staff";
/// Wrong codes after a right passphrase, per staff member, in the
/// failed-login window, from any address.
pub const STAFF_CODE_FAILURES_MAX: u32 = 10;
/// Staff tokens start `wbt_`.
pub const STAFF_TOKEN_PREFIX: &str = "wbt";

/// A staff member just created (or given a new authenticator): the
/// `otpauth://` URI is shown once.
pub struct NewStaff {
    pub record: StaffRecord,
    pub totp_uri: Secret,
}

/// A staff member signed in. `Debug` leaves out the session's token hash
/// (the key its session is looked up by).
#[derive(Clone)]
pub struct StaffCaller {
    pub staff_id: String,
    pub email: String,
    pub roles: Vec<StaffRole>,
    pub token_hash: String,
    pub actor: Actor,
}

impl std::fmt::Debug for StaffCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffCaller")
            .field("staff_id", &self.staff_id)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Roles as stored, the unknown ones dropped (a newer build's).
pub fn roles_of(record: &StaffRecord) -> Vec<StaffRole> {
    record.roles.iter().filter_map(|r| r.parse().ok()).collect()
}

fn role_names(roles: &[StaffRole]) -> Vec<String> {
    let mut names: Vec<String> = roles.iter().map(|r| r.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// The staff actor id of a record.
pub use crate::principal::staff_actor_id;

/// The actor of staff work on the server host.
pub fn host_actor() -> Actor {
    Actor::system("cli")
}

fn control_event(
    actor: &Actor,
    action: Action,
    target: &str,
    outcome: Outcome,
    detail: String,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        at,
        actor: actor.clone(),
        company_id: None,
        action,
        target: Some(target.to_string()),
        outcome,
        detail: Some(detail),
    }
}

fn store_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound(_) => ServiceError::not_found("staff member"),
        StoreError::Conflict(_) => {
            ServiceError::conflict("staff-exists", "a staff member with this email exists")
        }
        other => other.into(),
    }
}

impl Platform {
    async fn staff_by_email_or_404(&self, email: &str) -> ServiceResult<StaffRecord> {
        let email = normalize_email(email)?;
        self.control
            .staff_by_email(&email)
            .await?
            .ok_or_else(|| ServiceError::not_found("staff member"))
    }

    /// Creates a staff member with these roles (at least one) and a new
    /// authenticator, whose URI is answered once.
    pub async fn create_staff(
        &self,
        email: &str,
        roles: &[StaffRole],
        passphrase: &Secret,
        actor: Actor,
    ) -> ServiceResult<NewStaff> {
        if roles.is_empty() {
            return Err(ServiceError::unprocessable(
                "invalid-staff-role",
                "give at least one role: support, sales, security, operations or management",
            ));
        }
        let email = normalize_email(email)?;
        let passphrase_hash = self
            .strong_passphrase_hash(&email, passphrase, &[], MIN_PASSPHRASE_SCORE)
            .await?;
        let id = uuid::Uuid::now_v7().to_string();
        let secret = TotpSecret::generate();
        let now = self.now();
        let record = StaffRecord {
            id: id.clone(),
            email: email.clone(),
            passphrase_hash,
            roles: role_names(roles),
            sealed_totp: self.seal_totp(&staff_actor_id(&id), &secret)?,
            totp_last_step: 0,
            created_at: now,
            disabled_at: None,
        };
        let audit = control_event(
            &actor,
            Action::StaffCreate,
            &staff_actor_id(&id),
            Outcome::Success,
            format!(
                "staff member {email} created with roles {}",
                record.roles.join(", ")
            ),
            now,
        );
        self.control
            .create_staff(&record, &audit)
            .await
            .map_err(store_error)?;
        let totp_uri = secret
            .uri(ISSUER, &email)
            .map_err(|_| ServiceError::internal())?;
        Ok(NewStaff { record, totp_uri })
    }

    pub async fn list_staff(&self) -> ServiceResult<Vec<StaffRecord>> {
        Ok(self.control.list_staff().await?)
    }

    /// Gives (`grant`) or takes away a role; a staff member keeps at least one.
    pub async fn change_staff_role(
        &self,
        email: &str,
        role: StaffRole,
        grant: bool,
        actor: Actor,
    ) -> ServiceResult<StaffRecord> {
        let staff = self.staff_by_email_or_404(email).await?;
        let mut roles = roles_of(&staff);
        if grant {
            roles.push(role);
        } else {
            roles.retain(|r| *r != role);
            if roles.is_empty() {
                return Err(ServiceError::conflict(
                    "last-staff-role",
                    "a staff member keeps at least one role: disable the account instead",
                ));
            }
        }
        let names = role_names(&roles);
        let audit = control_event(
            &actor,
            Action::StaffRoles,
            &staff_actor_id(&staff.id),
            Outcome::Success,
            format!(
                "{} role {role}: roles now {}",
                if grant { "granted" } else { "revoked" },
                names.join(", ")
            ),
            self.now(),
        );
        self.control
            .set_staff_roles(&staff.id, &names, &audit)
            .await
            .map_err(store_error)?;
        self.staff_cache.forget_sessions();
        Ok(StaffRecord {
            roles: names,
            ..staff
        })
    }

    /// Disables a staff member: their sessions end at once.
    pub async fn disable_staff(&self, email: &str, actor: Actor) -> ServiceResult<()> {
        let staff = self.staff_by_email_or_404(email).await?;
        let audit = control_event(
            &actor,
            Action::StaffDisable,
            &staff_actor_id(&staff.id),
            Outcome::Success,
            format!("staff member {} disabled", staff.email),
            self.now(),
        );
        self.control
            .disable_staff(&staff.id, &audit)
            .await
            .map_err(store_error)?;
        self.staff_cache.forget_sessions();
        Ok(())
    }

    /// A new authenticator for a staff member (the old one lost): their
    /// sessions end; the new URI is answered once.
    pub async fn reset_staff_mfa(&self, email: &str, actor: Actor) -> ServiceResult<Secret> {
        let staff = self.staff_by_email_or_404(email).await?;
        let secret = TotpSecret::generate();
        let sealed = self.seal_totp(&staff_actor_id(&staff.id), &secret)?;
        let audit = control_event(
            &actor,
            Action::StaffResetMfa,
            &staff_actor_id(&staff.id),
            Outcome::Success,
            format!("staff member {}: new authenticator", staff.email),
            self.now(),
        );
        self.control
            .reset_staff_totp(&staff.id, &sealed, &audit)
            .await
            .map_err(store_error)?;
        self.staff_cache.forget_sessions();
        secret
            .uri(ISSUER, &staff.email)
            .map_err(|_| ServiceError::internal())
    }

    /// A staff login: passphrase AND a current code, always. Throttled like
    /// customer logins (its own budget keys) and audited either way.
    pub async fn staff_login(
        &self,
        email: &str,
        passphrase: &Secret,
        otp: &Secret,
        actor: Actor,
        user_agent: Option<&str>,
    ) -> ServiceResult<(Secret, OffsetDateTime)> {
        let email = email.trim().to_lowercase();
        let counted = self.reserve_login_in("staff-", &email, &actor).await?;
        let now = self.now();
        // The typed email goes into the trail only when it is an address
        // (a passphrase pasted into the email field must not).
        let named = normalize_email(&email)
            .map(|e| format!("staff-email:{e}"))
            .unwrap_or_else(|_| "staff-email:(not an address)".into());
        let failed = |detail: &str| {
            control_event(
                &actor,
                Action::StaffLogin,
                &named,
                Outcome::Failure,
                detail.to_string(),
                now,
            )
        };
        let judged = async {
            let staff = self.control.staff_by_email(&email).await?;
            let hash = staff
                .as_ref()
                .map_or(self.dummy_hash(), |s| s.passphrase_hash.clone());
            let pass = passphrase.clone();
            let verified = self
                .cpu
                .run(move || verify_passphrase(&hash, &pass))
                .await?;
            Ok::<_, ServiceError>(staff.filter(|s| verified && s.disabled_at.is_none()))
        }
        .await;
        let staff = match judged {
            Ok(Some(staff)) => staff,
            Ok(None) => {
                self.control
                    .audit(&failed("wrong email or passphrase, or a disabled account"))
                    .await?;
                return Err(ServiceError::unauthorized(
                    "email, passphrase or code is wrong",
                ));
            }
            Err(e) => {
                self.release_attempt(&counted).await;
                return Err(e);
            }
        };
        // The passphrase was right: wrong codes are counted per staff member
        // from any address, so a leaked passphrase cannot be paired with
        // codes guessed from many places.
        let code_budget = [(format!("staff-mfa:{}", staff.id), STAFF_CODE_FAILURES_MAX)];
        let code_counted = match self
            .control
            .reserve_attempts(&code_budget, now, FAILED_LOGIN_WINDOW)
            .await?
        {
            Attempt::Counted(counted) => counted,
            Attempt::Refused { until } => {
                self.control
                    .audit(&failed("right passphrase; too many wrong codes, throttled"))
                    .await?;
                return Err(ServiceError::too_many(
                    "too many wrong codes; try again later",
                    seconds_until(now, until),
                ));
            }
        };
        let code_ok = match self.open_totp_of(&staff_actor_id(&staff.id), &staff.sealed_totp) {
            Ok(secret) => {
                let now_secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
                match secret.verify(otp.expose(), now_secs) {
                    Some(step) => {
                        let step = i64::try_from(step).unwrap_or(i64::MAX);
                        self.control.use_staff_totp_step(&staff.id, step).await?
                    }
                    None => false,
                }
            }
            Err(e) => {
                // Kept counted, and on record.
                self.control
                    .audit(&failed(
                        "right passphrase; the authenticator secret could not be opened",
                    ))
                    .await?;
                return Err(e);
            }
        };
        if !code_ok {
            // Said apart in the trail: a right passphrase with a wrong code
            // may mean someone else knows the passphrase.
            let mut event = failed("right passphrase, wrong or reused code");
            event.target = Some(staff_actor_id(&staff.id));
            self.control.audit(&event).await?;
            return Err(ServiceError::unauthorized(
                "email, passphrase or code is wrong",
            ));
        }
        self.release_attempt(&code_counted).await;
        self.release_attempt(&counted).await;
        // Its own prefix: never taken for a customer's session or key.
        let token = new_token(STAFF_TOKEN_PREFIX);
        let origin = SessionOrigin::of(&actor, user_agent);
        let expires_at = now + Duration::hours(self.staff_limits().session_hours);
        let session = StaffSession {
            token_hash: token.hash.clone(),
            staff_id: staff.id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at,
            ended_at: None,
            client: origin.client,
            user_agent: origin.user_agent,
        };
        let audit = control_event(
            &Actor {
                id: staff_actor_id(&staff.id),
                ..actor
            },
            Action::StaffLogin,
            &staff_actor_id(&staff.id),
            Outcome::Success,
            "staff login with passphrase and code".into(),
            now,
        );
        self.control.create_staff_session(&session, &audit).await?;
        Ok((token.token, expires_at))
    }

    /// The staff member behind a staff token: 401 when the session is
    /// unknown, ended, past its 8 hours or 30 idle minutes, or the account
    /// is disabled.
    pub async fn staff_authenticate(
        &self,
        token: &Secret,
        mut actor: Actor,
    ) -> ServiceResult<StaffCaller> {
        let refused = || ServiceError::unauthorized("the staff session is not valid; log in again");
        let hash = token_hash(token);
        let now = self.now();
        if let Some(holder) = self.staff_cache.holder(&hash, now) {
            actor.id = staff_actor_id(&holder.staff_id);
            actor.auth = "staff_session".into();
            return Ok(StaffCaller {
                staff_id: holder.staff_id,
                email: holder.email,
                roles: holder.roles,
                token_hash: hash,
                actor,
            });
        }
        let session = self
            .control
            .staff_session(&hash)
            .await?
            .ok_or_else(refused)?;
        if session.ended_at.is_some()
            || now >= session.expires_at
            || now >= session.last_seen_at + Duration::minutes(self.staff_limits().idle_minutes)
        {
            return Err(refused());
        }
        let staff = self
            .control
            .staff(&session.staff_id)
            .await?
            .filter(|s| s.disabled_at.is_none())
            .ok_or_else(refused)?;
        let mut last_seen = session.last_seen_at;
        if now - session.last_seen_at >= Duration::minutes(1) {
            self.control.touch_staff_session(&hash, now).await?;
            last_seen = now;
        }
        self.staff_cache.remember_holder(
            &hash,
            crate::staff_cache::StaffHolder {
                staff_id: staff.id.clone(),
                email: staff.email.clone(),
                roles: roles_of(&staff),
            },
            now,
            session
                .expires_at
                .min(last_seen + Duration::minutes(self.staff_limits().idle_minutes)),
        );
        actor.id = staff_actor_id(&staff.id);
        actor.auth = "staff_session".into();
        Ok(StaffCaller {
            staff_id: staff.id.clone(),
            email: staff.email.clone(),
            roles: roles_of(&staff),
            token_hash: hash,
            actor,
        })
    }

    pub async fn staff_logout(&self, caller: &StaffCaller) -> ServiceResult<()> {
        let audit = control_event(
            &caller.actor,
            Action::StaffLogout,
            &staff_actor_id(&caller.staff_id),
            Outcome::Success,
            "staff session ended by its holder".into(),
            self.now(),
        );
        let ended = self
            .control
            .end_staff_session(&caller.token_hash, &audit)
            .await;
        self.staff_cache.forget_sessions();
        match ended {
            Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
