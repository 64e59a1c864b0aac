//! Services: the orchestration between HTTP (or CLI), the domain and the stores.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use wb_core::Action;

use anyhow::Context;
use time::{Duration, OffsetDateTime};
use wb_core::Role;
use wb_crypto::{
    check_strength, hash_passphrase, new_token, token_hash, CompanyKeys, DataKey, MasterKey,
    NodeKey, PassphraseError, Secret,
};
use wb_store::sqlite::{SqliteControl, SqliteTenants};
use wb_store::{
    Actor, ApiKeyRecord, Attempt, AuditEvent, CompanyRecord, CompanyStatus, ControlStore,
    Membership, Outcome, SessionRecord, TenantDirectory, TenantStore, UserRecord,
};

use crate::auth_cache::AuthCache;
use crate::clock::Clock;
use crate::cpu_work::CpuWork;
use crate::error::{ServiceError, ServiceResult};
use crate::keyring::Keyring;
use crate::policy::{AccessKind, AuditFailurePolicy};
use crate::storage::{StorageConfig, Stores};

pub(crate) mod identity;
mod tenancy;

pub mod shipping;

pub use crate::principal::Principal;
pub use identity::{
    normalize_email, NewApiKey, Session, SessionOrigin, Signup, FAILED_LOGINS_MAX,
    MIN_PASSPHRASE_SCORE,
};

pub struct Platform {
    pub control: Arc<dyn ControlStore>,
    /// Monitoring alerts (the same control database).
    pub alerts: Arc<dyn wb_store::AlertStore>,
    pub tenants: Arc<dyn TenantDirectory>,
    /// The PostgreSQL company directory (placements, moves), when that is the backend.
    pub postgres: Option<Arc<wb_store::postgres::PgTenants>>,
    keyring: Keyring,
    pub clock: Arc<dyn Clock>,
    pub session_ttl: Duration,
    auth_cache: AuthCache,
    /// Staff sessions and grants, for at most a second (`staff_cache.rs`).
    pub(crate) staff_cache: crate::staff_cache::StaffCache,
    staff_limits: std::sync::RwLock<crate::staff_limits::StaffLimits>,
    /// How long a de-provisioned company waits before its destruction.
    pub(crate) grace: std::sync::RwLock<wb_core::lifecycle::GracePeriod>,
    /// This node's identity and checkpoint-signing key.
    pub node_id: String,
    data_dir: std::path::PathBuf,
    pub node_key: NodeKey,
    /// Where change-journal segments are shipped (`<data>/objects` by default;
    /// `with_object_store` replaces it).
    pub objects: Arc<dyn object_store::ObjectStore>,
    /// Shipping lag and counters (`GET /metrics`, the backup-lag alert).
    pub shipping: Arc<shipping::ShippingStats>,
    audit_refuse_all: std::sync::atomic::AtomicBool,
    /// What customers may name as export-push destinations (`ServerConfig`).
    export_destinations: std::sync::RwLock<crate::policy::DestinationPolicy>,
    /// How many exports this node builds at once (`ServerConfig::exports`).
    pub export_slots: Arc<crate::export_slots::ExportSlots>,
    /// The restores customers asked for on this node.
    pub restores: crate::restore_jobs::RestoreJobs,
    /// Verified against when an email is unknown, so timing does not reveal accounts.
    dummy_hash: String,
    /// Where passphrase hashing, verification and strength checks run.
    pub cpu: CpuWork,
    /// Signups allowed per client address per hour (`ServerConfig`).
    signup_limit: AtomicU32,
    /// How long recent real signups took after hashing, for the decoy answer.
    signup_tails: Mutex<VecDeque<std::time::Duration>>,
    /// Where email goes and what links in it point at (`ServerConfig`).
    mail: std::sync::RwLock<MailSettings>,
    /// The key version each company store this node opened is keyed with
    /// (`company_keys::refresh_rotated_keys` reopens those another node
    /// rotated).
    pub(crate) open_key_versions: Mutex<std::collections::HashMap<String, u32>>,
    /// The least time entries and the audit trail are kept (`ServerConfig`).
    pub(crate) statutory_minimum: std::sync::RwLock<wb_core::data_retention::StatutoryMinimum>,
}

/// Email delivery settings of this node.
#[derive(Clone)]
pub struct MailSettings {
    /// None: messages stay queued until a node with a sender delivers them.
    pub sender: Option<Arc<dyn crate::mailer::MailSender>>,
    /// The console's address, the base of links in messages.
    pub public_url: String,
    /// How long an invitation stays usable.
    pub invitation_ttl: Duration,
}

impl Default for MailSettings {
    fn default() -> MailSettings {
        MailSettings {
            sender: None,
            public_url: "https://127.0.0.1:8443".into(),
            invitation_ttl: Duration::days(7),
        }
    }
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
fn control_key(data_dir: &Path, keyring: &Keyring) -> anyhow::Result<DataKey> {
    let path = data_dir.join("control.key");
    if path.exists() {
        let wrapped =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        return keyring.control_key(&wrapped).map_err(|e| {
            anyhow::anyhow!("the master key does not open this data directory (wrong key?): {e}")
        });
    }
    let key = DataKey::generate();
    let wrapped = keyring.wrap_control_key(&key)?;
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
        Platform::embedded(data_dir, Keyring::new(master), clock, session_ttl)
    }

    fn embedded(
        data_dir: &Path,
        keyring: Keyring,
        clock: Arc<dyn Clock>,
        session_ttl: Duration,
    ) -> anyhow::Result<Platform> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let key = control_key(data_dir, &keyring)?;
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
        Platform::assemble(data_dir, keyring, clock, session_ttl, stores)
    }

    /// Opens the deployment with the storage the configuration names.
    pub async fn open(
        data_dir: &Path,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        session_ttl: Duration,
        storage: &StorageConfig,
    ) -> anyhow::Result<Platform> {
        Platform::open_with_keyring(data_dir, Keyring::new(master), clock, session_ttl, storage)
            .await
    }

    /// Opens the deployment holding every key of `keyring` (a master-key
    /// rotation opens it with the old key and the new one).
    pub async fn open_with_keyring(
        data_dir: &Path,
        keyring: Keyring,
        clock: Arc<dyn Clock>,
        session_ttl: Duration,
        storage: &StorageConfig,
    ) -> anyhow::Result<Platform> {
        match storage {
            StorageConfig::Embedded => Platform::embedded(data_dir, keyring, clock, session_ttl),
            StorageConfig::Postgres(config) => {
                std::fs::create_dir_all(data_dir)
                    .with_context(|| format!("creating data directory {}", data_dir.display()))?;
                let stores = crate::storage::open_postgres(config).await?;
                Platform::assemble(data_dir, keyring, clock, session_ttl, stores)
            }
        }
    }

    fn assemble(
        data_dir: &Path,
        keyring: Keyring,
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
            staff_cache: Default::default(),
            staff_limits: Default::default(),
            grace: Default::default(),
            node_id: node_id(data_dir)?,
            data_dir: data_dir.to_path_buf(),
            node_key: keyring.node_key(&data_dir.join("node.key"))?,
            audit_refuse_all: std::sync::atomic::AtomicBool::new(false),
            export_destinations: Default::default(),
            export_slots: Arc::new(crate::export_slots::ExportSlots::new(Default::default())),
            restores: Default::default(),
            keyring,
            dummy_hash,
            cpu: CpuWork::per_core(),
            signup_limit: AtomicU32::new(crate::policy::DEFAULT_SIGNUPS_PER_ADDRESS_PER_HOUR),
            signup_tails: Mutex::new(VecDeque::with_capacity(identity::SIGNUP_TAILS_KEPT)),
            mail: Default::default(),
            open_key_versions: Default::default(),
            statutory_minimum: Default::default(),
        })
    }

    /// Ships change journals to `store` instead of `<data>/objects`
    /// (see `crate::objects::open`).
    pub fn with_object_store(mut self, store: Arc<dyn object_store::ObjectStore>) -> Platform {
        self.objects = store;
        self
    }

    /// The deployment's staff session and grant limits (checked by the caller).
    pub fn set_staff_limits(&self, limits: crate::staff_limits::StaffLimits) {
        if let Ok(mut l) = self.staff_limits.write() {
            *l = limits;
        }
    }

    pub fn staff_limits(&self) -> crate::staff_limits::StaffLimits {
        self.staff_limits.read().map(|l| *l).unwrap_or_default()
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

    pub fn mail_settings(&self) -> MailSettings {
        self.mail.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_mail_settings(&self, settings: MailSettings) {
        *self.mail.write().unwrap_or_else(|e| e.into_inner()) = settings;
    }

    pub fn mail_sender(&self) -> Option<Arc<dyn crate::mailer::MailSender>> {
        self.mail_settings().sender
    }

    /// What customers may name as export-push destinations.
    pub fn export_destination_policy(&self) -> crate::policy::DestinationPolicy {
        self.export_destinations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_export_destination_policy(&self, policy: crate::policy::DestinationPolicy) {
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
    ) -> ServiceResult<()> {
        let Err(error) = store.record(event.clone()).await else {
            return Ok(());
        };
        self.raise_audit_alarm(store.company_id(), event.action, &error)
            .await;
        if self.audit_policy().allows_unaudited(kind) {
            Ok(())
        } else {
            Err(ServiceError::audit_unavailable())
        }
    }

    /// Maps a store result, raising the alarm when a write was refused because
    /// its audit record could not be written.
    pub async fn checked<T>(
        &self,
        company_id: &str,
        action: Action,
        result: Result<T, wb_store::StoreError>,
    ) -> ServiceResult<T> {
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
    pub async fn register_node(&self) -> ServiceResult<()> {
        let public_key = self.node_key.public_key_hex();
        let certificate = self.node_certifier().certify(&self.node_id, &public_key);
        Ok(self
            .control
            .register_node(&self.node_id, &public_key, &certificate, self.now())
            .await?)
    }

    /// The deployment's node-certification key (derived from the master key).
    pub(crate) fn node_certifier(&self) -> wb_crypto::NodeCertifier {
        self.keyring.node_certifier()
    }

    /// Where this node keeps its files (`node.key`, `control.key`, …).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Every company on record (for jobs that visit them all).
    pub async fn company_ids(&self) -> ServiceResult<Vec<String>> {
        Ok(self
            .control
            .companies()
            .await?
            .into_iter()
            .filter(|c| c.status == CompanyStatus::Active)
            .map(|c| c.id)
            .collect())
    }

    /// Whether the control database answers (readiness).
    pub async fn ready(&self) -> ServiceResult<()> {
        self.control.company("readiness-probe").await?;
        Ok(())
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}
