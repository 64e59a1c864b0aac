//! Identity: users, signup, login and sessions, API keys, and who a token is.

use super::*;
use wb_core::Action;

pub const MIN_PASSPHRASE_SCORE: u8 = 3;
/// Failed logins counted per account and per client address in a window;
/// attempts being judged count too, so parallel guesses cannot overtake it.
pub const FAILED_LOGINS_MAX: u32 = 5;
/// How often a session's last use is written (idle timeouts are this precise).
const LAST_SEEN_EVERY: Duration = Duration::minutes(1);
pub(crate) const FAILED_LOGIN_WINDOW: Duration = Duration::minutes(15);
/// Signups per client address are counted over this window
/// (`ServerConfig::signups_per_address_per_hour`).
const SIGNUP_WINDOW: Duration = Duration::hours(1);
/// How long a signup takes after hashing, until real ones have been timed.
const SIGNUP_TAIL_DEFAULT: std::time::Duration = std::time::Duration::from_millis(40);
/// Real signups whose timing a signup with a taken email imitates.
pub(super) const SIGNUP_TAILS_KEPT: usize = 32;
const API_KEY_DEFAULT_DAYS: i64 = 90;
const API_KEY_MAX_DAYS: i64 = 365;
/// The longest a rotated key's old secret keeps working.
pub const API_KEY_MAX_OVERLAP_HOURS: i64 = 24;

pub struct NewApiKey {
    pub record: ApiKeyRecord,
    pub token: Secret,
}

/// Where a session is opened from.
#[derive(Debug, Clone, Default)]
pub struct SessionOrigin {
    pub client: Option<String>,
    pub user_agent: Option<String>,
    /// The second factor the login was verified with, if any.
    pub second_factor: Option<&'static str>,
}

impl SessionOrigin {
    /// The actor's address and a user agent, bounded and printable.
    pub fn of(actor: &Actor, user_agent: Option<&str>) -> SessionOrigin {
        SessionOrigin {
            client: actor.client.clone(),
            user_agent: user_agent
                .map(|ua| {
                    ua.chars()
                        .filter(|c| !c.is_control())
                        .take(200)
                        .collect::<String>()
                })
                .filter(|ua| !ua.is_empty()),
            second_factor: None,
        }
    }
}

pub struct Session {
    pub token: Secret,
    pub expires_at: OffsetDateTime,
    pub user: UserRecord,
}

/// The outcome of `Platform::signup_request`.
pub enum Signup {
    /// A new company and its owner, with the owner's session.
    Created {
        company: CompanyRecord,
        session: Session,
    },
    /// The email already has an account: nothing was created, the refusal is
    /// in the platform trail. `company` and `session` are a decoy shaped
    /// like a new signup's (fresh ids, a token that was never stored), so the
    /// public API's answer does not tell who has an account.
    EmailTaken {
        company: CompanyRecord,
        session: Session,
    },
}

impl Signup {
    /// What the public API answers: the same shape either way.
    pub fn into_answer(self) -> (CompanyRecord, Session) {
        match self {
            Signup::Created { company, session } | Signup::EmailTaken { company, session } => {
                (company, session)
            }
        }
    }
}

impl Platform {
    /// A new user record: the passphrase checked for strength and hashed,
    /// off the async runtime and bounded (`CpuWork`).
    pub(crate) async fn new_user(
        &self,
        email: &str,
        passphrase: &Secret,
        name: Option<String>,
        related: &[&str],
    ) -> ServiceResult<UserRecord> {
        self.new_user_scored(email, passphrase, name, related, MIN_PASSPHRASE_SCORE)
            .await
    }

    /// A new user whose passphrase must reach `min_score` (a company's
    /// policy may ask more than the platform's minimum).
    pub(crate) async fn new_user_scored(
        &self,
        email: &str,
        passphrase: &Secret,
        name: Option<String>,
        related: &[&str],
        min_score: u8,
    ) -> ServiceResult<UserRecord> {
        let email = normalize_email(email)?;
        let passphrase_hash = self
            .strong_passphrase_hash(&email, passphrase, related, min_score)
            .await?;
        Ok(UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            name,
            passphrase_hash,
            created_at: self.now(),
            last_login_at: None,
        })
    }

    /// Checks a new passphrase's strength (at least `min_score`, never below
    /// the platform's minimum; the email and `related` words count against
    /// it) and hashes it, off the async runtime.
    pub(crate) async fn strong_passphrase_hash(
        &self,
        email: &str,
        passphrase: &Secret,
        related: &[&str],
        min_score: u8,
    ) -> ServiceResult<String> {
        let min_score = min_score.max(MIN_PASSPHRASE_SCORE);
        let local = email.split('@').next().unwrap_or("");
        let mut words: Vec<String> = vec![email.to_string(), local.to_string()];
        words.extend(related.iter().map(|w| w.to_string()));
        let passphrase = passphrase.clone();
        let hashed = self
            .cpu
            .run(move || {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                check_strength(&passphrase, &words, min_score)?;
                hash_passphrase(&passphrase)
            })
            .await?;
        hashed.map_err(|e| match e {
            PassphraseError::Weak(reason) => ServiceError::unprocessable(
                "weak-passphrase",
                format!("passphrase is too weak: {reason}"),
            ),
            PassphraseError::Hash => ServiceError::internal(),
        })
    }

    /// Creates a company and its owner, then opens a session for the owner.
    /// An email that already has an account is refused with `email-taken`
    /// (for operators and tools; the public API uses `signup_request`).
    pub async fn signup(
        &self,
        company_name: &str,
        email: &str,
        passphrase: &Secret,
        actor: Actor,
    ) -> ServiceResult<(CompanyRecord, Session)> {
        match self
            .signup_request(company_name, email, passphrase, actor)
            .await?
        {
            Signup::Created { company, session } => Ok((company, session)),
            Signup::EmailTaken { .. } => Err(ServiceError::conflict(
                "email-taken",
                "an account with this email already exists; log in and create the company from there",
            )),
        }
    }

    /// A signup as the public API takes it: counted against the client
    /// address's budget (429 beyond it), the passphrase checked and hashed
    /// on the bounded CPU pool, and an email that already has an account
    /// answered with a decoy after as long as a real signup takes
    /// (`Signup::EmailTaken`), so neither the answer nor its timing tells
    /// who has an account.
    pub async fn signup_request(
        &self,
        company_name: &str,
        email: &str,
        passphrase: &Secret,
        actor: Actor,
    ) -> ServiceResult<Signup> {
        let (company, key) = self.new_company(company_name)?;
        let email = normalize_email(email)?;
        let budget = self.reserve_signup(&actor).await?;
        let name_words: Vec<&str> = company.name.split_whitespace().collect();
        let user = match self.new_user(&email, passphrase, None, &name_words).await {
            Ok(user) => user,
            Err(e) => {
                // Refused before anything was created: not counted.
                self.release_attempt(&budget).await;
                return Err(e);
            }
        };
        // From here on, both outcomes take as long as a real signup.
        let started = std::time::Instant::now();
        if self.control.user_by_email(&user.email).await?.is_some() {
            return self.signup_email_taken(company, user, actor, started).await;
        }
        // The company database exists before the control plane points at it; if
        // recording the company fails, the unreferenced file is removed.
        self.tenants.create(&company.id, &key).await?;
        let audit = AuditEvent {
            at: self.now(),
            actor: Actor {
                id: format!("user:{}", user.id),
                ..actor.clone()
            },
            company_id: Some(company.id.clone()),
            action: Action::CompanySignup,
            target: Some(format!("company:{}", company.id)),
            outcome: Outcome::Success,
            detail: None,
        };
        if let Err(e) = self.control.signup(&company, &user, &audit).await {
            self.tenants.discard(&company.id).await;
            return match e {
                // Taken by a signup that raced this one.
                wb_store::StoreError::Conflict(_) => {
                    self.signup_email_taken(company, user, actor, started).await
                }
                other => Err(other.into()),
            };
        }
        let session = self
            .open_session(user, SessionOrigin::of(&actor, None))
            .await?;
        self.note_signup_tail(started.elapsed());
        Ok(Signup::Created { company, session })
    }

    /// Counts a signup against the client address's hourly budget; 429 (and
    /// an audited refusal) beyond it. Without an address, nothing to count.
    async fn reserve_signup(&self, actor: &Actor) -> ServiceResult<Vec<(String, OffsetDateTime)>> {
        let Some(client) = &actor.client else {
            return Ok(Vec::new());
        };
        let now = self.now();
        let max = self.signup_limit.load(Ordering::Relaxed);
        let keys = [format!("signup:client:{client}")];
        match self
            .control
            .reserve_attempt(&keys, now, SIGNUP_WINDOW, max)
            .await?
        {
            Attempt::Counted(counted) => Ok(counted),
            Attempt::Refused { until } => {
                self.control
                    .audit(&AuditEvent {
                        at: now,
                        actor: actor.clone(),
                        company_id: None,
                        action: Action::CompanySignup,
                        target: None,
                        outcome: Outcome::Failure,
                        detail: Some(format!(
                            "refused: more than {max} signups from this address within an hour"
                        )),
                    })
                    .await?;
                Err(ServiceError::too_many(
                    "too many signups from this address; try again later",
                    seconds_until(now, until),
                ))
            }
        }
    }

    /// The answer to a signup whose email already has an account: the refusal
    /// audited, nothing created, and a decoy returned once as much time has
    /// passed as a real signup takes.
    async fn signup_email_taken(
        &self,
        company: CompanyRecord,
        user: UserRecord,
        actor: Actor,
        started: std::time::Instant,
    ) -> ServiceResult<Signup> {
        let now = self.now();
        self.control
            .audit(&AuditEvent {
                at: now,
                actor,
                company_id: None,
                action: Action::CompanySignup,
                target: Some(format!("email:{}", user.email)),
                outcome: Outcome::Failure,
                detail: Some(
                    "the email already has an account; nothing created, answered like a new signup"
                        .into(),
                ),
            })
            .await?;
        let session = Session {
            token: new_token("wbs").token,
            expires_at: now + self.session_ttl,
            user: UserRecord {
                passphrase_hash: String::new(),
                ..user
            },
        };
        let tail = self.signup_tail();
        if let Some(rest) = tail.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        Ok(Signup::EmailTaken { company, session })
    }

    fn note_signup_tail(&self, took: std::time::Duration) {
        let mut tails = self.signup_tails.lock().unwrap_or_else(|e| e.into_inner());
        if tails.len() == SIGNUP_TAILS_KEPT {
            tails.pop_front();
        }
        tails.push_back(took);
    }

    /// One of the recent real signups' durations after hashing, at random,
    /// so decoys are timed as real signups are distributed.
    fn signup_tail(&self) -> std::time::Duration {
        use rand::seq::SliceRandom;
        let tails = self.signup_tails.lock().unwrap_or_else(|e| e.into_inner());
        let (front, back) = tails.as_slices();
        let all: Vec<std::time::Duration> = front.iter().chain(back).copied().collect();
        all.choose(&mut rand::thread_rng())
            .copied()
            .unwrap_or(SIGNUP_TAIL_DEFAULT)
    }

    /// Gives back attempts counted by `reserve_attempt` (best effort: when it
    /// fails, they stay counted until their window ends).
    pub(crate) async fn release_attempt(&self, counted: &[(String, OffsetDateTime)]) {
        if counted.is_empty() {
            return;
        }
        if let Err(error) = self.control.release_attempt(counted).await {
            tracing::warn!(%error, "could not release a counted attempt");
        }
    }

    pub async fn create_user(
        &self,
        email: &str,
        passphrase: &Secret,
        name: Option<String>,
        actor: Actor,
    ) -> ServiceResult<UserRecord> {
        let user = self.new_user(email, passphrase, name, &[]).await?;
        let audit = AuditEvent {
            at: self.now(),
            actor,
            company_id: None,
            action: Action::UserCreate,
            target: Some(format!("user:{}", user.id)),
            outcome: Outcome::Success,
            detail: None,
        };
        self.control
            .create_user(&user, &audit)
            .await
            .map_err(|e| match e {
                wb_store::StoreError::Conflict(d) => ServiceError::conflict("email-taken", d),
                other => other.into(),
            })?;
        Ok(user)
    }

    pub async fn add_member(
        &self,
        company_id: &str,
        user_id: &str,
        role: Role,
        actor: Actor,
    ) -> ServiceResult<()> {
        let audit = AuditEvent {
            at: self.now(),
            actor,
            company_id: Some(company_id.to_string()),
            action: Action::MemberAdd,
            target: Some(format!("user:{user_id}")),
            outcome: Outcome::Success,
            detail: Some(format!("role {role}")),
        };
        let membership = Membership {
            company_id: company_id.to_string(),
            user_id: user_id.to_string(),
            role,
        };
        self.control.add_member(&membership, &audit).await?;
        Ok(())
    }

    /// Verified against when an email is unknown, so timing does not
    /// reveal accounts.
    pub(crate) fn dummy_hash(&self) -> String {
        self.dummy_hash.clone()
    }

    pub(crate) async fn open_session(
        &self,
        user: UserRecord,
        origin: SessionOrigin,
    ) -> ServiceResult<Session> {
        let now = self.now();
        let token = new_token("wbs");
        let expires_at = now + self.session_ttl;
        self.control
            .create_session(&SessionRecord {
                token_hash: token.hash,
                user_id: user.id.clone(),
                created_at: now,
                expires_at,
                revoked_at: None,
                client: origin.client,
                user_agent: origin.user_agent,
                last_seen_at: None,
                second_factor: origin.second_factor.map(str::to_string),
            })
            .await?;
        Ok(Session {
            token: token.token,
            expires_at,
            user,
        })
    }

    /// Drops ended sessions from this node's cache at once (other nodes
    /// within the cache's 2 s).
    pub(crate) fn forget_sessions(&self, token_hashes: &[String]) {
        for hash in token_hashes {
            self.auth_cache.forget_token(hash);
        }
    }

    pub async fn logout(&self, principal: &Principal, actor: Actor) -> ServiceResult<()> {
        if let Principal::User { token_hash, .. } = principal {
            self.control.revoke_session(token_hash, self.now()).await?;
            self.auth_cache.forget_token(token_hash);
            self.control
                .audit(&AuditEvent {
                    at: self.now(),
                    actor,
                    company_id: None,
                    action: Action::AuthLogout,
                    target: None,
                    outcome: Outcome::Success,
                    detail: None,
                })
                .await?;
        }
        Ok(())
    }

    /// Resolves a bearer token (session or API key) to a principal.
    pub async fn authenticate(&self, token: &Secret) -> ServiceResult<Principal> {
        let invalid =
            || ServiceError::unauthorized("the session or API key is invalid, expired or revoked");
        let hash = token_hash(token);
        let now = self.now();
        if let Some(principal) = self.auth_cache.principal(&hash, now) {
            return Ok(principal);
        }
        let (principal, expires_at) = if token.expose().starts_with("wbk_") {
            let key = self.control.api_key(&hash).await?.ok_or_else(invalid)?;
            if key.revoked_at.is_some() || key.expires_at <= now {
                return Err(invalid());
            }
            let principal = Principal::ApiKey {
                key_id: key.id,
                company_id: key.company_id,
                role: key.role,
            };
            (principal, key.expires_at)
        } else {
            let session = self.control.session(&hash).await?.ok_or_else(invalid)?;
            if session.revoked_at.is_some() || session.expires_at <= now {
                return Err(invalid());
            }
            let principal = Principal::User {
                user_id: session.user_id,
                token_hash: hash.clone(),
                started: session.created_at,
                second_factor: session.second_factor.is_some(),
            };
            // Last use, for idle timeouts and the owner's session list:
            // written at most once a minute per session, not per request.
            let stale = session
                .last_seen_at
                .is_none_or(|seen| now - seen >= LAST_SEEN_EVERY);
            if stale {
                if let Err(e) = self.control.touch_session(&hash, now).await {
                    tracing::warn!(error = %e, "cannot record a session's use");
                }
            }
            (principal, session.expires_at)
        };
        // Sessions are cached briefly; API keys are looked up every time
        // (see `role_in`).
        if matches!(principal, Principal::User { .. }) {
            self.auth_cache
                .remember_principal(&hash, &principal, now, expires_at);
        }
        Ok(principal)
    }

    /// Operator path (and the door's `CompanyScope::create_api_key`).
    pub async fn create_api_key(
        &self,
        company_id: &str,
        granter: Role,
        name: &str,
        role: Role,
        expires_in_days: Option<i64>,
        actor: Actor,
    ) -> ServiceResult<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ServiceError::unprocessable(
                "invalid-api-key",
                "name must be 1 to 100 printable characters",
            ));
        }
        if !granter.may_grant(role) || role == Role::Owner {
            return Err(ServiceError::forbidden(format!(
                "a {granter} may not create a key with the {role} role"
            )));
        }
        // The company's policy may shorten the platform's limit.
        let max_days = i64::from(
            self.control
                .company_policy(company_id)
                .await?
                .unwrap_or_default()
                .api_key_days_allowed(API_KEY_MAX_DAYS as u32),
        );
        let days = expires_in_days.unwrap_or(API_KEY_DEFAULT_DAYS.min(max_days));
        if !(1..=max_days).contains(&days) {
            return Err(ServiceError::unprocessable(
                "invalid-api-key",
                format!("expires_in_days must be between 1 and {max_days}"),
            ));
        }
        let now = self.now();
        let token = new_token("wbk");
        let record = ApiKeyRecord {
            id: uuid::Uuid::now_v7().to_string(),
            company_id: company_id.to_string(),
            name: name.to_string(),
            role,
            token_hash: token.hash,
            created_by: actor.id.clone(),
            created_at: now,
            expires_at: now + Duration::days(days),
            revoked_at: None,
        };
        let audit = AuditEvent {
            at: now,
            actor,
            company_id: Some(company_id.to_string()),
            action: Action::ApiKeyCreate,
            target: Some(format!("api_key:{}", record.id)),
            outcome: Outcome::Success,
            detail: Some(format!("role {role}, expires in {days} days")),
        };
        self.control.create_api_key(&record, &audit).await?;
        Ok(NewApiKey {
            record,
            token: token.token,
        })
    }

    /// Replaces a key by a new secret with the same name, role and term
    /// (within the company's current limit); the old secret keeps working
    /// for `overlap_hours` (0 to 24; 0 revokes it at once), so the systems
    /// using it can be switched over without an outage.
    pub(crate) async fn rotate_api_key(
        &self,
        company_id: &str,
        granter: Role,
        key_id: &str,
        overlap_hours: i64,
        actor: Actor,
    ) -> ServiceResult<(NewApiKey, ApiKeyRecord)> {
        if !(0..=API_KEY_MAX_OVERLAP_HOURS).contains(&overlap_hours) {
            return Err(ServiceError::unprocessable(
                "invalid-api-key",
                format!("overlap_hours must be between 0 and {API_KEY_MAX_OVERLAP_HOURS}"),
            ));
        }
        let now = self.now();
        let old = self
            .control
            .api_keys(company_id)
            .await?
            .into_iter()
            .find(|k| k.id == key_id && k.revoked_at.is_none() && k.expires_at > now)
            .ok_or_else(|| ServiceError::not_found("API key"))?;
        if !granter.may_grant(old.role) {
            return Err(ServiceError::forbidden(format!(
                "a {granter} may not rotate a key with the {} role",
                old.role
            )));
        }
        let max_days = i64::from(
            self.control
                .company_policy(company_id)
                .await?
                .unwrap_or_default()
                .api_key_days_allowed(API_KEY_MAX_DAYS as u32),
        );
        let term_days = ((old.expires_at - old.created_at).whole_hours() + 23) / 24;
        let days = term_days.clamp(1, max_days);
        let token = new_token("wbk");
        let record = ApiKeyRecord {
            id: uuid::Uuid::now_v7().to_string(),
            company_id: company_id.to_string(),
            name: old.name.clone(),
            role: old.role,
            token_hash: token.hash,
            created_by: actor.id.clone(),
            created_at: now,
            expires_at: now + Duration::days(days),
            revoked_at: None,
        };
        let old_until = now + Duration::hours(overlap_hours);
        let audit = AuditEvent {
            at: now,
            actor,
            company_id: Some(company_id.to_string()),
            action: Action::ApiKeyRotate,
            target: Some(format!("api_key:{}", old.id)),
            outcome: Outcome::Success,
            detail: Some(format!(
                "replaced by api_key:{} (expires in {days} days); the old key works {}",
                record.id,
                if overlap_hours == 0 {
                    "no more".to_string()
                } else {
                    format!("for {overlap_hours} more hour(s)")
                }
            )),
        };
        let previous = self
            .control
            .rotate_api_key(company_id, key_id, &record, old_until, &audit)
            .await
            .map_err(|e| match e {
                wb_store::StoreError::NotFound(_) => ServiceError::not_found("API key"),
                other => other.into(),
            })?;
        self.auth_cache.forget_api_key(key_id);
        Ok((
            NewApiKey {
                record,
                token: token.token,
            },
            previous,
        ))
    }

    /// The answer to an API key asking for a new key (403), audited.
    pub(crate) async fn refuse_api_key_creation(
        &self,
        company_id: &str,
        actor: Actor,
    ) -> ServiceError {
        let audit = AuditEvent {
            at: self.now(),
            actor,
            company_id: Some(company_id.to_string()),
            action: Action::ApiKeyCreate,
            target: None,
            outcome: Outcome::Failure,
            detail: Some("refused: API keys may not create API keys".into()),
        };
        if let Err(e) = self.control.audit(&audit).await {
            return e.into();
        }
        ServiceError::forbidden("API keys may not create API keys; use a session")
    }

    pub(crate) async fn revoke_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        actor: Actor,
    ) -> ServiceResult<ApiKeyRecord> {
        let audit = AuditEvent {
            at: self.now(),
            actor,
            company_id: Some(company_id.to_string()),
            action: Action::ApiKeyRevoke,
            target: Some(format!("api_key:{key_id}")),
            outcome: Outcome::Success,
            detail: None,
        };
        let revoked = self
            .control
            .revoke_api_key(company_id, key_id, &audit)
            .await?;
        self.auth_cache.forget_api_key(key_id);
        Ok(revoked)
    }
}

/// Whole seconds from `now` until `until`, at least one (for Retry-After).
pub(crate) fn seconds_until(now: OffsetDateTime, until: OffsetDateTime) -> u64 {
    u64::try_from((until - now).whole_seconds())
        .unwrap_or(0)
        .max(1)
}

pub fn normalize_email(email: &str) -> ServiceResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
               && !domain.starts_with('.') && !domain.ends_with('.'));
    if valid {
        Ok(email)
    } else {
        Err(ServiceError::unprocessable(
            "invalid-email",
            "email address is not valid",
        ))
    }
}

impl Platform {
    /// A user and the companies they belong to, with their role in each.
    pub async fn user_with_companies(
        &self,
        user_id: &str,
    ) -> ServiceResult<(UserRecord, Vec<(Membership, CompanyRecord)>)> {
        let user = self
            .control
            .user(user_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        let mut companies = Vec::new();
        for m in self.control.memberships_of(user_id).await? {
            if let Some(c) = self.control.company(&m.company_id).await? {
                companies.push((m, c));
            }
        }
        Ok((user, companies))
    }
}
