//! Services: the orchestration between HTTP (or CLI), the domain and the stores.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use time::{Duration, OffsetDateTime};
use wb_core::Action;
use wb_core::{Permission, Role};
use wb_crypto::{
    check_strength, hash_passphrase, new_token, token_hash, verify_passphrase, DataKey, MasterKey,
    NodeKey, PassphraseError, Secret,
};
use wb_store::sqlite::{SqliteControl, SqliteTenants};
use wb_store::{
    Actor, ApiKeyRecord, Attempt, AuditEvent, CompanyRecord, CompanyStatus, ControlStore,
    Membership, Outcome, SessionRecord, TenantDirectory, TenantStore, UserRecord,
};

use crate::auth_cache::AuthCache;
use crate::clock::Clock;
use crate::config::{AccessKind, AuditFailurePolicy};
use crate::cpu_work::CpuWork;
use crate::problem::{ApiError, ApiResult};
use crate::storage::{StorageConfig, Stores};

pub const MIN_PASSPHRASE_SCORE: u8 = 3;
/// Failed logins counted per account and per client address in a window;
/// attempts being judged count too, so parallel guesses cannot overtake it.
pub const FAILED_LOGINS_MAX: u32 = 5;
const FAILED_LOGIN_WINDOW: Duration = Duration::minutes(15);
/// Signups per client address are counted over this window
/// (`ServerConfig::signups_per_address_per_hour`).
const SIGNUP_WINDOW: Duration = Duration::hours(1);
/// How long a signup takes after hashing, until real ones have been timed.
const SIGNUP_TAIL_DEFAULT: std::time::Duration = std::time::Duration::from_millis(40);
/// Real signups whose timing a signup with a taken email imitates.
const SIGNUP_TAILS_KEPT: usize = 32;
const API_KEY_DEFAULT_DAYS: i64 = 90;
const API_KEY_MAX_DAYS: i64 = 365;
const CONTROL_KEY_CONTEXT: &str = "workbooks:control-plane";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        user_id: String,
        token_hash: String,
    },
    ApiKey {
        key_id: String,
        company_id: String,
        role: Role,
    },
}

impl Principal {
    pub fn actor_id(&self) -> String {
        match self {
            Principal::User { user_id, .. } => format!("user:{user_id}"),
            Principal::ApiKey { key_id, .. } => format!("api_key:{key_id}"),
        }
    }
    pub fn auth_kind(&self) -> &'static str {
        match self {
            Principal::User { .. } => "session",
            Principal::ApiKey { .. } => "api_key",
        }
    }
}

pub struct NewApiKey {
    pub record: ApiKeyRecord,
    pub token: Secret,
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

pub struct Platform {
    pub control: Arc<dyn ControlStore>,
    /// Monitoring alerts (the same control database).
    pub alerts: Arc<dyn wb_store::AlertStore>,
    pub tenants: Arc<dyn TenantDirectory>,
    /// The PostgreSQL company directory (placements, moves), when that is the backend.
    pub postgres: Option<Arc<wb_store::postgres::PgTenants>>,
    master: MasterKey,
    pub clock: Arc<dyn Clock>,
    pub session_ttl: Duration,
    auth_cache: AuthCache,
    /// This node's identity and checkpoint-signing key.
    pub node_id: String,
    pub node_key: NodeKey,
    /// Where change-journal segments are shipped (`<data>/objects` by default;
    /// `with_object_store` replaces it).
    pub objects: Arc<dyn object_store::ObjectStore>,
    /// Shipping lag and counters (`GET /metrics`, the backup-lag alert).
    pub shipping: Arc<crate::jobs::shipper::ShippingStats>,
    audit_refuse_all: std::sync::atomic::AtomicBool,
    /// What customers may name as export-push destinations (`ServerConfig`).
    export_destinations: std::sync::RwLock<crate::export_push::DestinationPolicy>,
    /// How many exports this node builds at once (`ServerConfig::exports`).
    pub export_slots: Arc<crate::exports::ExportSlots>,
    /// Verified against when an email is unknown, so timing does not reveal accounts.
    dummy_hash: String,
    /// Where passphrase hashing, verification and strength checks run.
    pub cpu: CpuWork,
    /// Signups allowed per client address per hour (`ServerConfig`).
    signup_limit: AtomicU32,
    /// How long recent real signups took after hashing, for the decoy answer.
    signup_tails: Mutex<VecDeque<std::time::Duration>>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Platform")
    }
}

/// A stable id for this node, `<data>/node.id`, created on first use.
fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node.id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// The control plane's own DEK, wrapped by the master key in `<data>/control.key`.
fn control_key(data_dir: &Path, master: &MasterKey) -> anyhow::Result<DataKey> {
    let path = data_dir.join("control.key");
    if path.exists() {
        let wrapped =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        return master
            .unwrap_key(&wrapped, CONTROL_KEY_CONTEXT)
            .context("the master key does not open this data directory (wrong key?)");
    }
    let key = DataKey::generate();
    let wrapped = master.wrap(&key, CONTROL_KEY_CONTEXT)?;
    wb_crypto::write_private_file(&path, &wrapped)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

impl Platform {
    /// Opens (creating when new) the embedded deployment in `data_dir`.
    pub fn open_embedded(
        data_dir: &Path,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        session_ttl: Duration,
    ) -> anyhow::Result<Platform> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let key = control_key(data_dir, &master)?;
        let control = Arc::new(
            SqliteControl::open(&data_dir.join("control.db"), &key)
                .context("opening the control database")?,
        );
        let tenants = SqliteTenants::new(data_dir.join("companies"))?;
        let stores = Stores {
            control: control.clone(),
            alerts: control,
            tenants: Arc::new(tenants),
            postgres: None,
        };
        Platform::assemble(data_dir, master, clock, session_ttl, stores)
    }

    /// Opens the deployment with the storage the configuration names.
    pub async fn open(
        data_dir: &Path,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        session_ttl: Duration,
        storage: &StorageConfig,
    ) -> anyhow::Result<Platform> {
        match storage {
            StorageConfig::Embedded => {
                Platform::open_embedded(data_dir, master, clock, session_ttl)
            }
            StorageConfig::Postgres(config) => {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("creating data directory {}", data_dir.display()))?;
                let stores = crate::storage::open_postgres(config).await?;
                Platform::assemble(data_dir, master, clock, session_ttl, stores)
            }
        }
    }

    fn assemble(
        data_dir: &Path,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        session_ttl: Duration,
        stores: Stores,
    ) -> anyhow::Result<Platform> {
        let dummy_hash = hash_passphrase(&Secret::new("dummy passphrase for timing".into()))?;
        let objects_dir = data_dir.join("objects");
        std::fs::create_dir_all(&objects_dir)
            .with_context(|| format!("creating {}", objects_dir.display()))?;
        let objects = object_store::local::LocalFileSystem::new_with_prefix(&objects_dir)
            .with_context(|| format!("opening object store {}", objects_dir.display()))?;
        Ok(Platform {
            objects: Arc::new(objects),
            shipping: Arc::default(),
            control: stores.control,
            alerts: stores.alerts,
            tenants: stores.tenants,
            postgres: stores.postgres,
            clock,
            session_ttl,
            auth_cache: AuthCache::default(),
            node_id: node_id(data_dir)?,
            node_key: NodeKey::load_or_create(&data_dir.join("node.key"), &master)?,
            audit_refuse_all: std::sync::atomic::AtomicBool::new(false),
            export_destinations: Default::default(),
            export_slots: Arc::new(crate::exports::ExportSlots::new(Default::default())),
            master,
            dummy_hash,
            cpu: CpuWork::per_core(),
            signup_limit: AtomicU32::new(crate::config::DEFAULT_SIGNUPS_PER_ADDRESS_PER_HOUR),
            signup_tails: Mutex::new(VecDeque::with_capacity(SIGNUP_TAILS_KEPT)),
        })
    }

    /// Ships change journals to `store` instead of `<data>/objects`
    /// (see `crate::objects::open`).
    pub fn with_object_store(mut self, store: Arc<dyn object_store::ObjectStore>) -> Platform {
        self.objects = store;
        self
    }

    /// Signups allowed per client address per hour.
    pub fn set_signup_limit(&self, per_address_per_hour: u32) {
        self.signup_limit
            .store(per_address_per_hour, Ordering::Relaxed);
    }

    pub fn audit_policy(&self) -> AuditFailurePolicy {
        if self
            .audit_refuse_all
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            AuditFailurePolicy::RefuseAll
        } else {
            AuditFailurePolicy::RefuseWrites
        }
    }

    pub fn set_audit_policy(&self, policy: AuditFailurePolicy) {
        self.audit_refuse_all.store(
            policy == AuditFailurePolicy::RefuseAll,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// What customers may name as export-push destinations.
    pub fn export_destination_policy(&self) -> crate::export_push::DestinationPolicy {
        self.export_destinations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_export_destination_policy(&self, policy: crate::export_push::DestinationPolicy) {
        *self
            .export_destinations
            .write()
            .unwrap_or_else(|e| e.into_inner()) = policy;
    }

    /// Records access to company content; when the audit trail cannot take the
    /// event, the policy decides whether the access goes ahead (and says so loudly).
    pub async fn audit_access(
        &self,
        store: &dyn TenantStore,
        event: AuditEvent,
        kind: AccessKind,
    ) -> ApiResult<()> {
        let Err(error) = store.record(event.clone()).await else {
            return Ok(());
        };
        self.raise_audit_alarm(store.company_id(), event.action, &error)
            .await;
        if self.audit_policy().allows_unaudited(kind) {
            Ok(())
        } else {
            Err(ApiError::audit_unavailable())
        }
    }

    /// Maps a store result, raising the alarm when a write was refused because
    /// its audit record could not be written.
    pub async fn checked<T>(
        &self,
        company_id: &str,
        action: Action,
        result: Result<T, wb_store::StoreError>,
    ) -> ApiResult<T> {
        if let Err(error @ wb_store::StoreError::AuditUnavailable(_)) = &result {
            self.raise_audit_alarm(company_id, action, error).await;
        }
        Ok(result?)
    }

    /// Best effort: the platform trail carries the alarm (the monitor alerts on it).
    async fn raise_audit_alarm(
        &self,
        company_id: &str,
        action: Action,
        error: &wb_store::StoreError,
    ) {
        tracing::error!(%error, company = company_id, action = action.as_str(), "audit trail unavailable");
        let alarm = AuditEvent {
            at: self.now(),
            actor: Actor::system("audit"),
            company_id: Some(company_id.to_string()),
            action: Action::AuditUnavailable,
            target: Some(action.to_string()),
            outcome: Outcome::Failure,
            detail: Some(error.to_string()),
        };
        if let Err(e) = self.control.audit(&alarm).await {
            tracing::error!(error = %e, "the platform audit trail is unavailable too");
        }
    }

    /// Records this node's public key, certified with the master key, so its
    /// checkpoints can be verified. A node certifies only its own key (whose
    /// seed it unwrapped with the master key), never another row; a node
    /// registered by an earlier version gets its certificate here.
    pub async fn register_node(&self) -> ApiResult<()> {
        let public_key = self.node_key.public_key_hex();
        let certificate = self.node_certifier().certify(&self.node_id, &public_key);
        Ok(self
            .control
            .register_node(&self.node_id, &public_key, &certificate, self.now())
            .await?)
    }

    /// The deployment's node-certification key (derived from the master key).
    pub(crate) fn node_certifier(&self) -> wb_crypto::NodeCertifier {
        wb_crypto::NodeCertifier::new(&self.master)
    }

    /// Every company on record (for jobs that visit them all).
    pub async fn company_ids(&self) -> ApiResult<Vec<String>> {
        Ok(self
            .control
            .companies()
            .await?
            .into_iter()
            .filter(|c| c.status == CompanyStatus::Active)
            .map(|c| c.id)
            .collect())
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The open store of a company (opening it with its unwrapped DEK when needed).
    pub async fn tenant(&self, company_id: &str) -> ApiResult<Arc<dyn TenantStore>> {
        if let Some(open) = self.tenants.get_open(company_id) {
            return Ok(open);
        }
        let company = self
            .control
            .company(company_id)
            .await?
            .filter(|c| c.status == CompanyStatus::Active)
            .ok_or_else(|| ApiError::not_found("company"))?;
        let key = self
            .master
            .unwrap_key(&company.wrapped_dek, &company.id)
            .map_err(|e| anyhow::anyhow!("unwrapping the key of company {}: {e}", company.id))?;
        Ok(self.tenants.open(&company.id, &key).await?)
    }

    /// A company's data key (DEK), unwrapped with the master key.
    /// The KEK, for wrapping and unwrapping backup keys (never leaves this crate).
    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    pub(crate) async fn company_key(&self, company_id: &str) -> ApiResult<DataKey> {
        let company = self
            .control
            .company(company_id)
            .await?
            .ok_or_else(|| ApiError::not_found("company"))?;
        Ok(self
            .master
            .unwrap_key(&company.wrapped_dek, &company.id)
            .map_err(|e| anyhow::anyhow!("unwrapping the key of company {}: {e}", company.id))?)
    }

    /// Creates a company's store without recording the company in the control
    /// plane; `record_staged_company` records it, `tenants.discard` drops it.
    /// Used by restore so a failed replay leaves no company behind.
    pub async fn stage_company(
        &self,
        name: &str,
    ) -> ApiResult<(CompanyRecord, Arc<dyn TenantStore>)> {
        let (company, key) = self.new_company(name)?;
        let store = self.tenants.create(&company.id, &key).await?;
        Ok((company, store))
    }

    /// Records a staged company and gives it these members.
    pub async fn record_staged_company(
        &self,
        company: &CompanyRecord,
        members: &[(String, Role)],
        actor: Actor,
        detail: String,
    ) -> ApiResult<()> {
        let audit = AuditEvent {
            at: self.now(),
            actor: actor.clone(),
            company_id: Some(company.id.clone()),
            action: Action::CompanyRestore,
            target: Some(format!("company:{}", company.id)),
            outcome: Outcome::Success,
            detail: Some(detail),
        };
        if let Err(e) = self.control.create_company(company, &audit).await {
            self.tenants.discard(&company.id).await;
            return Err(e.into());
        }
        for (user, role) in members {
            self.add_member(&company.id, user, *role, actor.clone())
                .await?;
        }
        Ok(())
    }

    fn new_company(&self, name: &str) -> ApiResult<(CompanyRecord, DataKey)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::unprocessable(
                "invalid-company-name",
                "company name must be 1 to 200 printable characters",
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let key = DataKey::generate();
        let wrapped_dek = self.master.wrap(&key, &id).map_err(anyhow::Error::from)?;
        Ok((
            CompanyRecord {
                id,
                name: name.to_string(),
                status: CompanyStatus::Active,
                wrapped_dek,
                created_at: self.now(),
            },
            key,
        ))
    }

    /// A new user record: the passphrase checked for strength and hashed,
    /// off the async runtime and bounded (`CpuWork`).
    async fn new_user(
        &self,
        email: &str,
        passphrase: &Secret,
        name: Option<String>,
        related: &[&str],
    ) -> ApiResult<UserRecord> {
        let email = normalize_email(email)?;
        let local = email.split('@').next().unwrap_or("");
        let mut words: Vec<String> = vec![email.clone(), local.to_string()];
        words.extend(related.iter().map(|w| w.to_string()));
        let passphrase = passphrase.clone();
        let hashed = self
            .cpu
            .run(move || {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                check_strength(&passphrase, &words, MIN_PASSPHRASE_SCORE)?;
                hash_passphrase(&passphrase)
            })
            .await?;
        let passphrase_hash = hashed.map_err(|e| match e {
            PassphraseError::Weak(reason) => ApiError::unprocessable(
                "weak-passphrase",
                format!("passphrase is too weak: {reason}"),
            ),
            PassphraseError::Hash => ApiError::internal(),
        })?;
        Ok(UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
            email,
            name,
            passphrase_hash,
            created_at: self.now(),
            last_login_at: None,
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
    ) -> ApiResult<(CompanyRecord, Session)> {
        match self
            .signup_request(company_name, email, passphrase, actor)
            .await?
        {
            Signup::Created { company, session } => Ok((company, session)),
            Signup::EmailTaken { .. } => Err(ApiError::conflict(
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
    ) -> ApiResult<Signup> {
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
        let session = self.open_session(user).await?;
        self.note_signup_tail(started.elapsed());
        Ok(Signup::Created { company, session })
    }

    /// Counts a signup against the client address's hourly budget; 429 (and
    /// an audited refusal) beyond it. Without an address, nothing to count.
    async fn reserve_signup(&self, actor: &Actor) -> ApiResult<Vec<(String, OffsetDateTime)>> {
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
                Err(ApiError::too_many(
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
    ) -> ApiResult<Signup> {
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
    async fn release_attempt(&self, counted: &[(String, OffsetDateTime)]) {
        if counted.is_empty() {
            return;
        }
        if let Err(error) = self.control.release_attempt(counted).await {
            tracing::warn!(%error, "could not release a counted attempt");
        }
    }

    /// Operator path (CLI): a company, optionally with an existing user as owner.
    pub async fn create_company(
        &self,
        name: &str,
        owner_email: Option<&str>,
    ) -> ApiResult<CompanyRecord> {
        let (company, key) = self.new_company(name)?;
        let owner = match owner_email {
            Some(email) => Some(
                self.control
                    .user_by_email(&normalize_email(email)?)
                    .await?
                    .ok_or_else(|| ApiError::not_found("user"))?,
            ),
            None => None,
        };
        self.tenants.create(&company.id, &key).await?;
        let audit = AuditEvent {
            at: self.now(),
            actor: Actor::system("cli"),
            company_id: Some(company.id.clone()),
            action: Action::CompanyCreate,
            target: Some(format!("company:{}", company.id)),
            outcome: Outcome::Success,
            detail: None,
        };
        if let Err(e) = self.control.create_company(&company, &audit).await {
            self.tenants.discard(&company.id).await;
            return Err(e.into());
        }
        if let Some(owner) = owner {
            self.add_member(&company.id, &owner.id, Role::Owner, Actor::system("cli"))
                .await?;
        }
        Ok(company)
    }

    /// Moves a company's database to another PostgreSQL server (writers pause
    /// while it is copied), audited in the platform trail.
    pub async fn move_company(
        &self,
        company_id: &str,
        to_server: &str,
        actor: Actor,
    ) -> ApiResult<wb_store::postgres::MoveReport> {
        let Some(postgres) = &self.postgres else {
            return Err(ApiError::unprocessable(
                "not-supported",
                "moving companies between database servers needs the PostgreSQL backend",
            ));
        };
        self.control
            .company(company_id)
            .await?
            .ok_or_else(|| ApiError::not_found("company"))?;
        let key = self.company_key(company_id).await?;
        let moved = postgres.move_company(company_id, to_server, &key).await;
        let (outcome, detail) = match &moved {
            Ok(r) => (
                Outcome::Success,
                format!(
                    "{} -> {}: {} rows, journal at {}, writes paused {} ms",
                    r.from,
                    r.to,
                    r.rows,
                    r.journal_seq,
                    r.write_pause.as_millis()
                ),
            ),
            Err(e) => (Outcome::Failure, format!("to {to_server}: {e}")),
        };
        self.control
            .audit(&AuditEvent {
                at: self.now(),
                actor,
                company_id: Some(company_id.to_string()),
                action: Action::CompanyMove,
                target: Some(format!("company:{company_id}")),
                outcome,
                detail: Some(detail),
            })
            .await?;
        Ok(moved?)
    }

    pub async fn create_user(
        &self,
        email: &str,
        passphrase: &Secret,
        name: Option<String>,
        actor: Actor,
    ) -> ApiResult<UserRecord> {
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
                wb_store::StoreError::Conflict(d) => ApiError::conflict("email-taken", d),
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
    ) -> ApiResult<()> {
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
        self.auth_cache.forget_role(user_id, company_id);
        Ok(())
    }

    async fn open_session(&self, user: UserRecord) -> ApiResult<Session> {
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
            })
            .await?;
        Ok(Session {
            token: token.token,
            expires_at,
            user,
        })
    }

    /// Verifies a passphrase and opens a session. Failures are throttled per
    /// account and per client address, and audited. The attempt is counted
    /// before the passphrase is verified and given back only when it was
    /// right, so parallel guesses cannot get past the limit.
    pub async fn login(
        &self,
        email: &str,
        passphrase: &Secret,
        actor: Actor,
    ) -> ApiResult<Session> {
        let email = email.trim().to_lowercase();
        let mut keys = vec![format!("email:{email}")];
        if let Some(client) = &actor.client {
            keys.push(format!("client:{client}"));
        }
        let now = self.now();
        let counted = match self
            .control
            .reserve_attempt(&keys, now, FAILED_LOGIN_WINDOW, FAILED_LOGINS_MAX)
            .await?
        {
            Attempt::Counted(counted) => counted,
            Attempt::Refused { until } => {
                self.audit_failed_login(&email, None, actor, "throttled: too many failed logins")
                    .await?;
                return Err(ApiError::too_many(
                    "too many failed logins; try again later",
                    seconds_until(now, until),
                ));
            }
        };
        let judged = async {
            let user = self.control.user_by_email(&email).await?;
            let hash = user
                .as_ref()
                .map_or(self.dummy_hash.clone(), |u| u.passphrase_hash.clone());
            let pass = passphrase.clone();
            let verified = self
                .cpu
                .run(move || verify_passphrase(&hash, &pass))
                .await?;
            Ok::<_, ApiError>((user, verified))
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
                return Err(ApiError::unauthorized("email or passphrase is wrong"));
            }
            Err(e) => {
                // Never judged (busy, storage error): not a failure.
                self.release_attempt(&counted).await;
                return Err(e);
            }
        };
        self.release_attempt(&counted).await;
        let now = self.now();
        self.control.record_login(&user.id, now).await?;
        let session = self.open_session(user).await?;
        self.control
            .audit(&AuditEvent {
                at: now,
                actor: Actor {
                    id: format!("user:{}", session.user.id),
                    auth: "passphrase".into(),
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

    async fn audit_failed_login(
        &self,
        email: &str,
        user: Option<&UserRecord>,
        actor: Actor,
        detail: &str,
    ) -> ApiResult<()> {
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

    pub async fn logout(&self, principal: &Principal, actor: Actor) -> ApiResult<()> {
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
    pub async fn authenticate(&self, token: &Secret) -> ApiResult<Principal> {
        let invalid =
            || ApiError::unauthorized("the session or API key is invalid, expired or revoked");
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
            };
            (principal, session.expires_at)
        };
        self.auth_cache
            .remember_principal(&hash, &principal, now, expires_at);
        Ok(principal)
    }

    /// The caller's role in a company, or 404 (never 403) when the caller has
    /// no business there, so company ids cannot be probed.
    pub async fn authorize(
        &self,
        principal: &Principal,
        company_id: &str,
        permission: Permission,
        actor: &Actor,
    ) -> ApiResult<Role> {
        let role = match principal {
            Principal::User { user_id, .. } => {
                let now = self.now();
                match self.auth_cache.role(user_id, company_id, now) {
                    Some(role) => role,
                    None => {
                        let role = self.control.role(user_id, company_id).await?;
                        self.auth_cache
                            .remember_role(user_id, company_id, role, now);
                        role
                    }
                }
            }
            Principal::ApiKey {
                company_id: own,
                role,
                ..
            } => (own == company_id).then_some(*role),
        };
        let Some(role) = role else {
            self.control
                .audit(&AuditEvent {
                    at: self.now(),
                    actor: actor.clone(),
                    company_id: Some(company_id.chars().take(64).collect()),
                    action: Action::AccessCompany,
                    target: None,
                    outcome: Outcome::Failure,
                    detail: Some("not a member of this company".into()),
                })
                .await?;
            return Err(ApiError::not_found("company"));
        };
        if !role.allows(permission) {
            return Err(ApiError::forbidden(format!(
                "the {role} role may not do this"
            )));
        }
        Ok(role)
    }

    pub async fn create_api_key(
        &self,
        company_id: &str,
        granter: Role,
        name: &str,
        role: Role,
        expires_in_days: Option<i64>,
        actor: Actor,
    ) -> ApiResult<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ApiError::unprocessable(
                "invalid-api-key",
                "name must be 1 to 100 printable characters",
            ));
        }
        if !granter.may_grant(role) || role == Role::Owner {
            return Err(ApiError::forbidden(format!(
                "a {granter} may not create a key with the {role} role"
            )));
        }
        let days = expires_in_days.unwrap_or(API_KEY_DEFAULT_DAYS);
        if !(1..=API_KEY_MAX_DAYS).contains(&days) {
            return Err(ApiError::unprocessable(
                "invalid-api-key",
                format!("expires_in_days must be between 1 and {API_KEY_MAX_DAYS}"),
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

    /// The answer to an API key asking for a new key (403), audited.
    pub async fn refuse_api_key_creation(&self, company_id: &str, actor: Actor) -> ApiError {
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
        ApiError::forbidden("API keys may not create API keys; use a session")
    }

    pub async fn revoke_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        actor: Actor,
    ) -> ApiResult<ApiKeyRecord> {
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
fn seconds_until(now: OffsetDateTime, until: OffsetDateTime) -> u64 {
    u64::try_from((until - now).whole_seconds())
        .unwrap_or(0)
        .max(1)
}

pub fn normalize_email(email: &str) -> ApiResult<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
               && !domain.starts_with('.') && !domain.ends_with('.'));
    if valid {
        Ok(email)
    } else {
        Err(ApiError::unprocessable(
            "invalid-email",
            "email address is not valid",
        ))
    }
}
