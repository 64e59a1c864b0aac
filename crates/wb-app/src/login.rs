//! Logging in: the passphrase (throttled, audited, the same timing for
//! unknown accounts), then a second factor when the account has one, in
//! the same request or answering a challenge.
//!
//! Failed logins are counted in the control store, so on every node:
//! five per account AND address in 15 minutes lock that pair out (an
//! attacker elsewhere cannot lock a victim out), more per address across
//! accounts are refused too, and every failure of an account slows its
//! next logins (`login_delay`), from any address, without locking it.

use time::OffsetDateTime;
use wb_core::Action;
use wb_crypto::{new_token, token_hash, verify_passphrase, Secret};
use wb_store::{Actor, Attempt, AuditEvent, MfaChallenge, Outcome, UserRecord};

use crate::error::{ServiceError, ServiceResult};
use crate::mfa::{mfa_invalid, MFA_CHALLENGE_FAILURES, MFA_CHALLENGE_TTL};
use crate::platform::identity::{seconds_until, FAILED_LOGINS_MAX, FAILED_LOGIN_WINDOW};
use crate::platform::normalize_email;
use crate::platform::{Platform, Session, SessionOrigin};

/// What a login answers: a session, or the second step it waits for.
pub enum LoginStep {
    Session(Session),
    SecondFactor(MfaPrompt),
}

/// The second step of a login: answer `challenge` with a second factor.
pub struct MfaPrompt {
    pub challenge: Secret,
    /// The factors the account can use (`totp`, `recovery_code`, `passkey`).
    pub methods: Vec<&'static str>,
    pub expires_at: OffsetDateTime,
    /// With passkeys: the options for `navigator.credentials.get`.
    pub passkey: Option<webauthn_rs::prelude::RequestChallengeResponse>,
}

/// What answers a login challenge.
pub enum SecondFactor {
    /// A current authenticator code or an unused recovery code.
    Code(Secret),
    /// A passkey's assertion for the challenge's passkey options.
    Passkey(Box<webauthn_rs::prelude::PublicKeyCredential>),
}

/// Failed logins from one address, across accounts, within the window
/// before that address is refused (credential stuffing).
pub const FAILED_LOGINS_PER_ADDRESS: u32 = 20;
/// Wrong second factors of one account, from anywhere, within the window.
pub const SECOND_FACTOR_FAILURES_MAX: u32 = 10;

/// An address as the stored budgets count it: IPv6 by its /64 (one
/// subscriber's block), so a block of addresses is one budget.
pub fn budget_address(client: &str) -> String {
    match client.parse::<std::net::IpAddr>() {
        Ok(address @ std::net::IpAddr::V6(_)) => {
            format!("{}/64", wb_core::security_policy::address_block(address))
        }
        _ => client.to_string(),
    }
}

/// The longest an account's failures slow a login.
pub const LOGIN_DELAY_MAX: std::time::Duration = std::time::Duration::from_secs(4);

/// How long a login waits when its account failed `failures` times within
/// the window (from any address): nothing for the first three, then 250 ms
/// doubling up to `LOGIN_DELAY_MAX`.
pub fn login_delay(failures: u32) -> std::time::Duration {
    if failures < 4 {
        return std::time::Duration::ZERO;
    }
    let doublings = (failures - 4).min(16);
    std::time::Duration::from_millis(250u64 << doublings).min(LOGIN_DELAY_MAX)
}

impl Platform {
    /// Verifies a passphrase and opens a session. Failures are throttled per
    /// account and per client address, and audited. The attempt is counted
    /// before the passphrase is verified and given back only when it was
    /// right, so parallel guesses cannot get past the limit.
    pub async fn login(
        &self,
        email: &str,
        passphrase: &Secret,
        actor: Actor,
    ) -> ServiceResult<Session> {
        self.login_from(email, passphrase, actor, None).await
    }

    /// [`Platform::login`], remembering the client's user agent with the
    /// session (for its owner's list of sessions). An account with a second
    /// factor cannot log in here: use [`Platform::login_step`].
    pub async fn login_from(
        &self,
        email: &str,
        passphrase: &Secret,
        actor: Actor,
        user_agent: Option<&str>,
    ) -> ServiceResult<Session> {
        match self
            .login_step(email, passphrase, None, actor, user_agent)
            .await?
        {
            LoginStep::Session(session) => Ok(session),
            LoginStep::SecondFactor(_) => Err(ServiceError::unauthorized(
                "this account has a second factor: log in with it",
            )),
        }
    }

    /// A login: the passphrase, then a second factor when the account has
    /// one, either in the same request (`otp`) or in a second one that
    /// answers the challenge returned here ([`Platform::login_second_factor`]).
    ///
    /// Failures are throttled per account and per client address, and
    /// audited. The attempt is counted before the passphrase is verified
    /// and given back only when it was right (and the second factor, when
    /// one was given), so parallel guesses cannot get past the limit.
    pub async fn login_step(
        &self,
        email: &str,
        passphrase: &Secret,
        otp: Option<&Secret>,
        actor: Actor,
        user_agent: Option<&str>,
    ) -> ServiceResult<LoginStep> {
        let email = email.trim().to_lowercase();
        let counted = self.reserve_login(&email, &actor).await?;
        let judged = async {
            let user = self.control.user_by_email(&email).await?;
            let hash = user
                .as_ref()
                .map_or(self.dummy_hash(), |u| u.passphrase_hash.clone());
            let pass = passphrase.clone();
            let verified = self
                .cpu
                .run(move || verify_passphrase(&hash, &pass))
                .await?;
            Ok::<_, ServiceError>((user, verified))
        }
        .await;
        let user = match judged {
            Ok((Some(user), true)) => user,
            Ok((user, _)) => {
                // The counted attempt stays: it is this failure.
                let detail = if user.is_some() {
                    "wrong passphrase"
                } else {
                    "unknown email"
                };
                self.audit_failed_login(&email, user.as_ref(), actor, detail)
                    .await?;
                return Err(ServiceError::unauthorized("email or passphrase is wrong"));
            }
            Err(e) => {
                // Never judged (busy, storage error): not a failure.
                self.release_attempt(&counted).await;
                return Err(e);
            }
        };
        let methods = match self.second_factors_of(&user.id).await {
            Ok(methods) => methods,
            Err(e) => {
                self.release_attempt(&counted).await;
                return Err(e);
            }
        };
        if methods.is_empty() {
            self.release_attempt(&counted).await;
            return Ok(LoginStep::Session(
                self.finish_login(user, actor, user_agent, None).await?,
            ));
        }
        let Some(otp) = otp else {
            // The passphrase was right: not a failure. The second step is
            // counted on its own.
            self.release_attempt(&counted).await;
            let now = self.now();
            let challenge = new_token("wbc");
            let origin = SessionOrigin::of(&actor, user_agent);
            let expires_at = now + MFA_CHALLENGE_TTL;
            self.control
                .create_mfa_challenge(&MfaChallenge {
                    token_hash: challenge.hash.clone(),
                    user_id: user.id.clone(),
                    created_at: now,
                    expires_at,
                    failures: 0,
                    client: origin.client,
                    user_agent: origin.user_agent,
                })
                .await?;
            // Passkeys that cannot be offered (the server's public address
            // is no host name any more) must not lock anyone out: the code
            // still works.
            let passkey = match self
                .passkey_login_options(&user.id, &challenge.hash, expires_at)
                .await
            {
                Ok(options) => options,
                Err(e) if e.slug == "passkeys-unavailable" => None,
                Err(e) => return Err(e),
            };
            return Ok(LoginStep::SecondFactor(MfaPrompt {
                challenge: challenge.token,
                methods,
                expires_at,
                passkey,
            }));
        };
        let second = match self.reserve_second_factor(&user, &actor).await {
            Ok(second) => second,
            Err(e) => {
                self.release_attempt(&counted).await;
                return Err(e);
            }
        };
        match self.prove_second_factor(&user.id, otp).await {
            Ok(Some(factor)) => {
                self.release_attempt(&counted).await;
                self.release_attempt(&second).await;
                Ok(LoginStep::Session(
                    self.finish_login(user, actor, user_agent, Some(factor))
                        .await?,
                ))
            }
            Ok(None) => {
                self.audit_failed_login(&email, Some(&user), actor, "wrong second factor")
                    .await?;
                Err(mfa_invalid())
            }
            Err(e) => {
                self.release_attempt(&counted).await;
                self.release_attempt(&second).await;
                Err(e)
            }
        }
    }

    /// The second step of a login: the challenge from the first and a
    /// second factor. A wrong factor counts as a failed login of the
    /// account and the address, and uses up the challenge after
    /// `MFA_CHALLENGE_FAILURES`; an unknown, expired or used-up challenge
    /// is one answer (401 mfa-challenge-invalid).
    pub async fn login_second_factor(
        &self,
        challenge: &Secret,
        factor: &SecondFactor,
        actor: Actor,
        user_agent: Option<&str>,
    ) -> ServiceResult<Session> {
        let invalid = || {
            ServiceError::new(
                crate::error::ErrorKind::Unauthorized,
                "mfa-challenge-invalid",
                "Login challenge invalid",
                "the login challenge is unknown, expired or used up: log in again",
            )
        };
        let hash = token_hash(challenge);
        let found = self
            .control
            .mfa_challenge(&hash, self.now(), MFA_CHALLENGE_FAILURES)
            .await?;
        let user = match found {
            Some(found) => self.control.user(&found.user_id).await?,
            None => None,
        };
        let Some(user) = user else {
            self.audit_failed_login(
                "",
                None,
                actor,
                "unknown, expired or used-up login challenge",
            )
            .await?;
            return Err(invalid());
        };
        let counted = self.reserve_login(&user.email, &actor).await?;
        let second = match self.reserve_second_factor(&user, &actor).await {
            Ok(second) => second,
            Err(e) => {
                self.release_attempt(&counted).await;
                return Err(e);
            }
        };
        let proved = match factor {
            SecondFactor::Code(code) => self.prove_second_factor(&user.id, code).await,
            SecondFactor::Passkey(assertion) => {
                self.prove_passkey(&user.id, &hash, assertion).await
            }
        };
        match proved {
            Ok(Some(factor)) => {
                self.release_attempt(&second).await;
                if !self.control.take_mfa_challenge(&hash).await? {
                    self.release_attempt(&counted).await;
                    let email = user.email.clone();
                    self.audit_failed_login(
                        &email,
                        Some(&user),
                        actor,
                        "login challenge taken by another request",
                    )
                    .await?;
                    return Err(invalid());
                }
                self.release_attempt(&counted).await;
                self.finish_login(user, actor, user_agent, Some(factor))
                    .await
            }
            Ok(None) => {
                self.control.fail_mfa_challenge(&hash).await?;
                let email = user.email.clone();
                self.audit_failed_login(&email, Some(&user), actor, "wrong second factor")
                    .await?;
                Err(mfa_invalid())
            }
            Err(e) => {
                self.release_attempt(&counted).await;
                self.release_attempt(&second).await;
                Err(e)
            }
        }
    }

    /// Counts a second factor tried for `user` against the account's own
    /// budget (from any address): wrong codes are cheap to send once the
    /// passphrase is known, so they are capped per account, not only per
    /// address. 429 beyond it.
    async fn reserve_second_factor(
        &self,
        user: &UserRecord,
        actor: &Actor,
    ) -> ServiceResult<Vec<(String, OffsetDateTime)>> {
        let now = self.now();
        let keys = [format!("mfa:{}", user.email)];
        match self
            .control
            .reserve_attempt(&keys, now, FAILED_LOGIN_WINDOW, SECOND_FACTOR_FAILURES_MAX)
            .await?
        {
            Attempt::Counted(counted) => Ok(counted),
            Attempt::Refused { until } => {
                let email = user.email.clone();
                self.audit_failed_login(
                    &email,
                    Some(user),
                    actor.clone(),
                    "throttled: too many wrong second factors for the account",
                )
                .await?;
                Err(ServiceError::too_many(
                    "too many wrong second factors; try again later",
                    seconds_until(now, until),
                ))
            }
        }
    }

    /// Counts a login attempt against the account's and the address's
    /// budgets (429, audited, beyond them).
    pub(crate) async fn reserve_login(
        &self,
        email: &str,
        actor: &Actor,
    ) -> ServiceResult<Vec<(String, OffsetDateTime)>> {
        self.reserve_login_in("", email, actor).await
    }

    /// `reserve_login` with the budget keys of a realm (`""` for customers,
    /// `"staff-"` for staff): no email typed into one realm's login spends
    /// another's budget.
    pub(crate) async fn reserve_login_in(
        &self,
        realm: &str,
        email: &str,
        actor: &Actor,
    ) -> ServiceResult<Vec<(String, OffsetDateTime)>> {
        let client = actor
            .client
            .as_deref()
            .map_or("-".to_string(), budget_address);
        let client = client.as_str();
        let account = format!("{realm}account:{email}");
        // Earlier failures of the account, from anywhere, slow this attempt.
        let failures = self
            .control
            .login_failures(std::slice::from_ref(&account))
            .await?
            .first()
            .filter(|(_, since)| *since + FAILED_LOGIN_WINDOW > self.now())
            .map_or(0, |(n, _)| *n);
        let delay = login_delay(failures);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let budgets = [
            (format!("{realm}login:{email}|{client}"), FAILED_LOGINS_MAX),
            (format!("client:{client}"), FAILED_LOGINS_PER_ADDRESS),
            // Counted for the delay only: an account is never locked by
            // failures from addresses that are not its owner's.
            (account, u32::MAX),
        ];
        let now = self.now();
        match self
            .control
            .reserve_attempts(&budgets, now, FAILED_LOGIN_WINDOW)
            .await?
        {
            Attempt::Counted(counted) => Ok(counted),
            Attempt::Refused { until } => {
                self.audit_failed_login(
                    email,
                    None,
                    actor.clone(),
                    "throttled: too many failed logins",
                )
                .await?;
                Err(ServiceError::too_many(
                    "too many failed logins; try again later",
                    seconds_until(now, until),
                ))
            }
        }
    }

    /// A verified login: recorded, a session opened, audited.
    async fn finish_login(
        &self,
        user: UserRecord,
        actor: Actor,
        user_agent: Option<&str>,
        second_factor: Option<&'static str>,
    ) -> ServiceResult<Session> {
        let now = self.now();
        self.control.record_login(&user.id, now).await?;
        let origin = SessionOrigin {
            second_factor,
            ..SessionOrigin::of(&actor, user_agent)
        };
        let session = self.open_session(user, origin).await?;
        self.control
            .audit(&AuditEvent {
                at: now,
                actor: Actor {
                    id: format!("user:{}", session.user.id),
                    auth: match second_factor {
                        None => "passphrase".into(),
                        Some(factor) => format!("passphrase+{factor}"),
                    },
                    ..actor
                },
                company_id: None,
                action: Action::AuthLogin,
                target: None,
                outcome: Outcome::Success,
                detail: None,
            })
            .await?;
        Ok(session)
    }

    pub(crate) async fn audit_failed_login(
        &self,
        email: &str,
        user: Option<&UserRecord>,
        actor: Actor,
        detail: &str,
    ) -> ServiceResult<()> {
        let event = AuditEvent {
            at: self.now(),
            actor: Actor {
                id: user.map_or("anonymous".into(), |u| format!("user:{}", u.id)),
                auth: "passphrase".into(),
                ..actor
            },
            company_id: None,
            action: Action::AuthLogin,
            // Only a well-formed address is kept: anything else typed
            // here (a pasted passphrase) must not enter the trail.
            target: Some(match normalize_email(email) {
                Ok(address) => format!("email:{address}"),
                Err(_) => "email:(not an email address)".to_string(),
            }),
            outcome: Outcome::Failure,
            detail: Some(detail.into()),
        };
        Ok(self.control.audit(&event).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipv6_addresses_share_a_budget_per_64() {
        assert_eq!(budget_address("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(budget_address("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64");
        assert_eq!(budget_address("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn the_delay_grows_from_the_fourth_failure_and_is_capped() {
        let ms = |n| login_delay(n).as_millis();
        assert_eq!([ms(0), ms(3), ms(4), ms(5), ms(6)], [0, 0, 250, 500, 1000]);
        assert_eq!(ms(7), 2000);
        assert_eq!(ms(8), 4000);
        assert_eq!(ms(1000), 4000);
    }

    proptest! {
        #[test]
        fn the_delay_never_shrinks_with_more_failures(n in 0u32..10_000) {
            prop_assert!(login_delay(n) <= login_delay(n + 1));
            prop_assert!(login_delay(n) <= LOGIN_DELAY_MAX);
        }
    }
}
