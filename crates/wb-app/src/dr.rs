//! Configuration backups and disaster recovery.
//!
//! Every minute, when it changed, the platform's configuration — companies
//! (without key material), users (with passphrase hashes), memberships and API
//! keys (hashes only), and how far each company's journal was shipped — is
//! sealed with the platform backup key and put at `config/{millis}-{digest}.v2.sealed`,
//! its object name (so its time) bound as associated data: an older backup's
//! bytes copied over the newest name fail authentication, and restore refuses
//! them rather than fall back. Backups of earlier versions
//! (`config/{millis}-{digest}.sealed`, constant associated data) still restore
//! while no newer-format backup exists; once one does, an old-format backup
//! named as newer is refused.
//! Each company's KEK-wrapped DEK is its own object, `keys/companies/{id}.dek`,
//! so deleting it makes that company's backups unreadable for good
//! (crypto-shredding), and the platform backup key is itself wrapped by the
//! KEK at `keys/platform.dek`.
//!
//! `restore` rebuilds a deployment from the object store and the master key
//! alone: the latest configuration, then every company under its own id from
//! its shipped journal.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wb_core::Action;
use wb_core::Role;
use wb_crypto::DataKey;
use wb_store::{
    Actor, ApiKeyRecord, AuditEvent, CompanyRecord, CompanyStatus, ExportSchedule, Membership,
    Outcome, UserRecord,
};

use crate::backup::shipper::cursor_name;
use crate::platform::Platform;

const FORMAT: u32 = 1;
pub(crate) const PLATFORM_KEY: &str = "keys/platform.dek";
const CONFIG_PREFIX: &str = "config";
const CONFIG_SUFFIX: &str = ".v2.sealed";
const LEGACY_CONFIG_SUFFIX: &str = ".sealed";
/// How often the job looks for changes.
pub const CONFIG_BACKUP_EVERY: Duration = Duration::from_secs(60);
pub const CONFIG_BACKUP_LEASE: &str = "config-backup";

pub(crate) fn dek_path(company_id: &str) -> ObjectPath {
    ObjectPath::from(format!("keys/companies/{company_id}.dek"))
}

/// Where a retired version of a company's key is kept, wrapped.
pub fn retired_dek_path(company_id: &str, version: u32) -> ObjectPath {
    ObjectPath::from(format!("keys/companies/{company_id}.v{version}.dek"))
}

/// Associated data of a configuration backup: its full object name, which
/// holds the time it was taken and its digest.
fn config_aad(path: &ObjectPath) -> Vec<u8> {
    crate::keyring::config_backup_aad(path.as_ref())
}

/// A configuration backup in the object store, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigObject {
    path: ObjectPath,
    digest: String,
    /// Written by a version that binds the name into the associated data.
    named: bool,
}

impl ConfigObject {
    fn parse(path: ObjectPath) -> Option<ConfigObject> {
        let name = path.filename()?;
        let (stem, named) = match name.strip_suffix(CONFIG_SUFFIX) {
            Some(stem) => (stem, true),
            None => (name.strip_suffix(LEGACY_CONFIG_SUFFIX)?, false),
        };
        let digest = stem.split_once('-')?.1.to_string();
        Some(ConfigObject {
            digest,
            named,
            path,
        })
    }

    fn aad(&self) -> Vec<u8> {
        if self.named {
            config_aad(&self.path)
        } else {
            crate::keyring::LEGACY_CONFIG_BACKUP_AAD.to_vec()
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

fn parse_time(text: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).with_context(|| format!("bad time {text:?}"))
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CompanyConfig {
    id: String,
    name: String,
    status: String,
    created_at: String,
    /// How far its journal was shipped when this snapshot was taken.
    shipped_seq: i64,
    /// Its de-provisioning, when it was de-provisioned (absent in snapshots
    /// written before lifecycles were recorded). A destroyed company is
    /// kept as this alone: no name, members, keys or policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifecycle: Option<LifecycleConfig>,
    /// Its current key version (1 in snapshots written before keys had
    /// versions); each version's wrapping is apart, at
    /// `keys/companies/{id}.dek` (current) and `{id}.v{n}.dek` (retired).
    #[serde(default = "first_key_version")]
    key_version: u32,
    /// The retired versions not destroyed, and when each was made and retired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired_keys: Vec<RetiredKeyConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_created_at: Option<String>,
    /// Its own retention rules, when it set any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retention: Option<wb_core::data_retention::DataRetention>,
}

fn first_key_version() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct RetiredKeyConfig {
    version: u32,
    created_at: String,
    retired_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LifecycleConfig {
    deprovisioned_at: String,
    #[serde(default)]
    deprovisioned_by: String,
    destroy_after: String,
    certificate_id: String,
    #[serde(default)]
    certificate_token_hash: String,
    destroyed_at: Option<String>,
}

impl LifecycleConfig {
    fn of(d: &wb_store::Deprovisioning) -> LifecycleConfig {
        LifecycleConfig {
            deprovisioned_at: rfc3339(d.deprovisioned_at),
            deprovisioned_by: d.deprovisioned_by.clone(),
            destroy_after: rfc3339(d.destroy_after),
            certificate_id: d.certificate_id.clone(),
            certificate_token_hash: d.certificate_token_hash.clone(),
            destroyed_at: d.destroyed_at.map(rfc3339),
        }
    }

    /// The de-provisioning to record again for a company restored within
    /// its grace period (so it is still destroyed when that ends).
    fn restore(&self, company_id: &str) -> anyhow::Result<wb_store::Deprovisioning> {
        Ok(wb_store::Deprovisioning {
            company_id: company_id.to_string(),
            deprovisioned_at: parse_time(&self.deprovisioned_at)?,
            deprovisioned_by: self.deprovisioned_by.clone(),
            destroy_after: parse_time(&self.destroy_after)?,
            certificate_id: self.certificate_id.clone(),
            certificate_token_hash: self.certificate_token_hash.clone(),
            destruction_started_at: None,
            steps: Vec::new(),
            destroyed_at: None,
            certificate: None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct UserConfig {
    id: String,
    email: String,
    name: Option<String>,
    passphrase_hash: String,
    created_at: String,
    /// Absent in snapshots written before second factors existed, and for
    /// users without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    factors: Option<FactorsConfig>,
}

/// A user's second factors: the TOTP secret still sealed (under a key the
/// master key derives, bound to the user's id), recovery codes as hashes,
/// passkeys' public credentials.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FactorsConfig {
    totp: Option<TotpConfig>,
    recovery_codes: Vec<(String, Option<String>)>,
    passkeys: Vec<PasskeyConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct TotpConfig {
    sealed_secret: String,
    created_at: String,
    confirmed_at: String,
    last_step: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PasskeyConfig {
    id: String,
    name: String,
    credential: String,
    created_at: String,
    last_used_at: Option<String>,
}

impl FactorsConfig {
    fn of(f: wb_store::UserFactors) -> Option<FactorsConfig> {
        if f.totp.is_none() && f.passkeys.is_empty() {
            return None;
        }
        Some(FactorsConfig {
            totp: f.totp.and_then(|t| {
                Some(TotpConfig {
                    sealed_secret: hex::encode(&t.sealed_secret),
                    created_at: rfc3339(t.created_at),
                    confirmed_at: rfc3339(t.confirmed_at?),
                    last_step: t.last_step,
                })
            }),
            recovery_codes: f
                .recovery_codes
                .into_iter()
                .map(|(hash, used)| (hash, used.map(rfc3339)))
                .collect(),
            passkeys: f
                .passkeys
                .into_iter()
                .map(|p| PasskeyConfig {
                    id: p.id,
                    name: p.name,
                    credential: p.credential,
                    created_at: rfc3339(p.created_at),
                    last_used_at: p.last_used_at.map(rfc3339),
                })
                .collect(),
        })
    }

    fn restore(&self, user_id: &str) -> anyhow::Result<wb_store::UserFactors> {
        Ok(wb_store::UserFactors {
            user_id: user_id.to_string(),
            totp: self
                .totp
                .as_ref()
                .map(|t| -> anyhow::Result<_> {
                    Ok(wb_store::TotpRecord {
                        user_id: user_id.to_string(),
                        sealed_secret: hex::decode(&t.sealed_secret)?,
                        created_at: parse_time(&t.created_at)?,
                        confirmed_at: Some(parse_time(&t.confirmed_at)?),
                        last_step: t.last_step,
                    })
                })
                .transpose()?,
            recovery_codes: self
                .recovery_codes
                .iter()
                .map(|(hash, used)| -> anyhow::Result<_> {
                    Ok((hash.clone(), used.as_deref().map(parse_time).transpose()?))
                })
                .collect::<anyhow::Result<_>>()?,
            passkeys: self
                .passkeys
                .iter()
                .map(|p| -> anyhow::Result<_> {
                    Ok(wb_store::PasskeyRecord {
                        id: p.id.clone(),
                        user_id: user_id.to_string(),
                        name: p.name.clone(),
                        credential: p.credential.clone(),
                        created_at: parse_time(&p.created_at)?,
                        last_used_at: p.last_used_at.as_deref().map(parse_time).transpose()?,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct MemberConfig {
    company_id: String,
    user_id: String,
    role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ApiKeyConfig {
    id: String,
    company_id: String,
    name: String,
    role: String,
    token_hash: String,
    created_by: String,
    created_at: String,
    expires_at: String,
    revoked_at: Option<String>,
}

/// A company's export schedule; its bucket credentials stay sealed under the
/// company's key (hex), as the control store holds them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ScheduleConfig {
    company_id: String,
    id: String,
    destination: String,
    recipient: String,
    every_hours: u32,
    sealed_credentials: Option<String>,
    created_by: String,
    created_at: String,
}

/// A company's security policy, as backed up (absent: the defaults).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PolicyConfig {
    company_id: String,
    mfa_required: bool,
    session_ttl_minutes: Option<u32>,
    idle_timeout_minutes: Option<u32>,
    ip_allowlist: Vec<String>,
    min_passphrase_strength: u8,
    api_key_max_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_max_age_days: Option<u32>,
}

/// The platform's configuration, as backed up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ConfigSnapshot {
    format: u32,
    companies: Vec<CompanyConfig>,
    users: Vec<UserConfig>,
    members: Vec<MemberConfig>,
    api_keys: Vec<ApiKeyConfig>,
    /// Absent in snapshots written before schedules existed.
    #[serde(default)]
    export_schedules: Vec<ScheduleConfig>,
    /// Absent in snapshots written before company policies existed.
    #[serde(default)]
    security_policies: Vec<PolicyConfig>,
    /// Staff access grants with their history (absent in snapshots written
    /// before grants were backed up).
    #[serde(default)]
    access_grants: Vec<crate::dr_grants::GrantConfig>,
}

impl CompanyConfig {
    /// What a backup keeps of a destroyed company: its id and when it went.
    fn tombstone(c: &CompanyRecord, lifecycle: Option<&wb_store::Deprovisioning>) -> CompanyConfig {
        CompanyConfig {
            id: c.id.clone(),
            name: String::new(),
            status: CompanyStatus::Destroyed.as_str().to_string(),
            created_at: rfc3339(c.created_at),
            shipped_seq: 0,
            lifecycle: lifecycle.map(LifecycleConfig::of),
            key_version: 1,
            retired_keys: Vec::new(),
            key_created_at: None,
            retention: None,
        }
    }
}

impl ConfigSnapshot {
    /// Whether anything of `company_id` but a tombstone is in this backup.
    fn holds(&self, company_id: &str) -> bool {
        self.companies
            .iter()
            .any(|c| c.id == company_id && (!c.name.is_empty() || c.status != "destroyed"))
            || self.members.iter().any(|m| m.company_id == company_id)
            || self.api_keys.iter().any(|k| k.company_id == company_id)
            || self
                .export_schedules
                .iter()
                .any(|e| e.company_id == company_id)
            || self
                .security_policies
                .iter()
                .any(|p| p.company_id == company_id)
            || self
                .access_grants
                .iter()
                .any(|g| g.company_id == company_id)
    }

    /// Removes everything of `company_id`, leaving a tombstone that says
    /// when it was de-provisioned and which certificate tells the rest.
    fn forget(&mut self, company_id: &str, lifecycle: Option<&LifecycleConfig>) {
        for c in self.companies.iter_mut().filter(|c| c.id == company_id) {
            c.name.clear();
            c.status = CompanyStatus::Destroyed.as_str().to_string();
            c.shipped_seq = 0;
            c.lifecycle = lifecycle.cloned();
        }
        self.members.retain(|m| m.company_id != company_id);
        self.api_keys.retain(|k| k.company_id != company_id);
        self.export_schedules.retain(|e| e.company_id != company_id);
        self.security_policies
            .retain(|p| p.company_id != company_id);
        self.access_grants.retain(|g| g.company_id != company_id);
    }

    async fn take(platform: &Platform) -> anyhow::Result<ConfigSnapshot> {
        let control = &platform.control;
        let mut companies = Vec::new();
        let mut members = Vec::new();
        let mut api_keys = Vec::new();
        let mut export_schedules = Vec::new();
        let mut security_policies = Vec::new();
        let mut access_grants = Vec::new();
        for c in control.companies().await? {
            let lifecycle = control.deprovisioning(&c.id).await?;
            // A company whose destruction has begun is kept as a tombstone:
            // a backup taken now must not bring back what was destroyed.
            if c.status == CompanyStatus::Destroyed
                || lifecycle
                    .as_ref()
                    .is_some_and(|d| d.destruction_started_at.is_some() || !d.steps.is_empty())
            {
                companies.push(CompanyConfig::tombstone(&c, lifecycle.as_ref()));
                continue;
            }
            // Every grant, newest first (the store answers at most 10,000
            // a company; grants are never deleted).
            for g in control.company_grants(&c.id, 10_000).await? {
                access_grants.push(crate::dr_grants::GrantConfig::of(&g.grant));
            }
            if let Some(p) = control.company_policy(&c.id).await? {
                security_policies.push(PolicyConfig {
                    company_id: c.id.clone(),
                    mfa_required: p.mfa_required,
                    session_ttl_minutes: p.session_ttl_minutes,
                    idle_timeout_minutes: p.idle_timeout_minutes,
                    ip_allowlist: p.ip_allowlist.iter().map(ToString::to_string).collect(),
                    min_passphrase_strength: p.min_passphrase_strength,
                    api_key_max_days: p.api_key_max_days,
                    key_max_age_days: p.key_max_age_days,
                });
            }
            if let Some(e) = control.export_schedule(&c.id).await? {
                export_schedules.push(ScheduleConfig {
                    company_id: e.company_id,
                    id: e.id,
                    destination: e.destination,
                    recipient: e.recipient,
                    every_hours: e.every_hours,
                    sealed_credentials: e.sealed_credentials.map(hex::encode),
                    created_by: e.created_by,
                    created_at: rfc3339(e.created_at),
                });
            }
            let keys = control.company_key_versions(&c.id).await?;
            companies.push(CompanyConfig {
                id: c.id.clone(),
                name: c.name.clone(),
                status: c.status.as_str().to_string(),
                created_at: rfc3339(c.created_at),
                shipped_seq: control.cursor(&cursor_name(&c.id)).await?,
                lifecycle: lifecycle.as_ref().map(LifecycleConfig::of),
                key_version: keys.as_ref().map_or(1, |k| k.current_version),
                retired_keys: keys
                    .as_ref()
                    .map(|k| {
                        k.retired
                            .iter()
                            .filter(|r| r.destroyed_at.is_none())
                            .map(|r| RetiredKeyConfig {
                                version: r.version,
                                created_at: rfc3339(r.created_at),
                                retired_at: rfc3339(r.retired_at),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                key_created_at: keys.as_ref().map(|k| rfc3339(k.current_created_at)),
                retention: control.company_retention(&c.id).await?,
            });
            for m in control.members_of(&c.id).await? {
                members.push(MemberConfig {
                    company_id: m.company_id,
                    user_id: m.user_id,
                    role: m.role.as_str().to_string(),
                });
            }
            for k in control.api_keys(&c.id).await? {
                api_keys.push(ApiKeyConfig {
                    id: k.id,
                    company_id: k.company_id,
                    name: k.name,
                    role: k.role.as_str().to_string(),
                    token_hash: k.token_hash,
                    created_by: k.created_by,
                    created_at: rfc3339(k.created_at),
                    expires_at: rfc3339(k.expires_at),
                    revoked_at: k.revoked_at.map(rfc3339),
                });
            }
        }
        let mut users = Vec::new();
        for u in control.users().await? {
            let factors = FactorsConfig::of(control.user_factors(&u.id).await?);
            users.push(UserConfig {
                id: u.id,
                email: u.email,
                name: u.name,
                passphrase_hash: u.passphrase_hash,
                created_at: rfc3339(u.created_at),
                factors,
            });
        }
        Ok(ConfigSnapshot {
            format: FORMAT,
            companies,
            users,
            members,
            api_keys,
            export_schedules,
            security_policies,
            access_grants,
        })
    }

    fn digest(&self) -> anyhow::Result<String> {
        let bytes = serde_json::to_vec(self)?;
        Ok(wb_crypto::sha256_hex(&bytes)[..16].to_string())
    }
}

/// The platform backup key: created (and stored wrapped by the KEK) on first use.
async fn platform_key(platform: &Platform, create: bool) -> anyhow::Result<DataKey> {
    let path = ObjectPath::from(PLATFORM_KEY);
    match platform.objects.get(&path).await {
        Ok(found) => {
            let wrapped = found.bytes().await?;
            platform
                .keyring()
                .platform_backup_key(&wrapped)
                .map_err(|e| match e {
                    wb_crypto::CryptoError::UnknownKek { .. } => anyhow!(
                        "the master key does not open this object store's backups: {e} (was the master key rotated?)"
                    ),
                    _ => anyhow!("the master key does not open this object store's backups (wrong key?)"),
                })
        }
        Err(object_store::Error::NotFound { .. }) if create => {
            let key = DataKey::generate();
            let wrapped = platform.keyring().wrap_platform_backup_key(&key)?;
            platform
                .objects
                .put(&path, PutPayload::from(wrapped))
                .await
                .context("storing the platform backup key")?;
            Ok(key)
        }
        Err(object_store::Error::NotFound { .. }) => {
            bail!("the object store holds no Work-books configuration backup (no {PLATFORM_KEY})")
        }
        Err(e) => Err(anyhow!("reading {PLATFORM_KEY}: {e}")),
    }
}

/// State of the configuration backup job between rounds.
#[derive(Default)]
pub struct ConfigBackupState {
    last_digest: Option<String>,
    dek_objects: BTreeSet<String>,
}

/// One round: stores each company's wrapped DEK that is not stored yet, and a
/// configuration snapshot when it differs from the last one. Returns whether a
/// snapshot was written.
pub async fn backup_config_once(
    platform: &Platform,
    state: &mut ConfigBackupState,
) -> anyhow::Result<bool> {
    let key = platform_key(platform, true).await?;
    for company in platform.control.companies().await? {
        if company.status == CompanyStatus::Destroyed {
            continue;
        }
        // One read gives the version and its wrapping together (a rotation
        // between two reads must not pair one version's number with
        // another's wrapping).
        let Some(keys) = platform.control.company_key_versions(&company.id).await? else {
            continue;
        };
        if keys.current_wrapped.is_empty() {
            continue;
        }
        let stored = format!(
            "{}#{}#{}",
            company.id,
            keys.current_version,
            wb_crypto::sha256_hex(&keys.current_wrapped)
        );
        if state.dek_objects.contains(&stored) {
            continue;
        }
        // A de-provisioned company's key is backed up through its grace
        // period (a recovery must be able to bring it back), never once its
        // destruction has begun: a key a destruction erased is not put back.
        if company.status == CompanyStatus::Deprovisioned
            && platform
                .control
                .deprovisioning(&company.id)
                .await?
                .is_none_or(|d| d.destruction_started_at.is_some())
        {
            continue;
        }
        // The current wrapping, and (from version 2) the same under its
        // version's name, so a recovery knows which version it is without
        // the configuration backup; written when missing or different (a
        // rotation that stopped between its steps is repaired here).
        let mut places = vec![dek_path(&company.id)];
        if keys.current_version > 1 {
            places.push(retired_dek_path(&company.id, keys.current_version));
        }
        for path in places {
            let stored_now = match platform.objects.get(&path).await {
                Ok(found) => Some(found.bytes().await?),
                Err(_) => None,
            };
            if stored_now.as_deref() != Some(keys.current_wrapped.as_slice()) {
                platform
                    .objects
                    .put(&path, PutPayload::from(keys.current_wrapped.clone()))
                    .await
                    .with_context(|| {
                        format!("storing the wrapped key of company {}", company.id)
                    })?;
            }
        }
        state.dek_objects.insert(stored);
    }
    let snapshot = ConfigSnapshot::take(platform).await?;
    let digest = snapshot.digest()?;
    if state.last_digest.is_none() {
        // An old-format newest backup is written again in the new format, so
        // old-format ones can no longer pass as the newest.
        state.last_digest = config_objects(platform)
            .await?
            .pop()
            .filter(|o| o.named)
            .map(|o| o.digest);
    }
    if state.last_digest.as_deref() == Some(digest.as_str()) {
        return Ok(false);
    }
    let millis = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let path = ObjectPath::from(format!(
        "{CONFIG_PREFIX}/{millis:020}-{digest}{CONFIG_SUFFIX}"
    ));
    let sealed = key
        .seal(&serde_json::to_vec(&snapshot)?, &config_aad(&path))
        .map_err(|e| anyhow!("sealing the configuration backup: {e}"))?;
    platform
        .objects
        .put(&path, PutPayload::from(sealed))
        .await
        .context("storing the configuration backup")?;
    state.last_digest = Some(digest);
    // A destruction that began while this snapshot was taken may have
    // cleaned the backups before this one landed: clean it too.
    for c in snapshot
        .companies
        .iter()
        .filter(|c| c.status != "destroyed")
    {
        let begun = platform
            .control
            .deprovisioning(&c.id)
            .await?
            .is_some_and(|d| d.destruction_started_at.is_some());
        if begun {
            scrub_company(platform, &c.id).await?;
            state.last_digest = None;
        }
    }
    Ok(true)
}

/// Removes a company being destroyed from every configuration backup: each
/// backup that holds more of it than a tombstone is sealed again without
/// it (same time, new digest) and the old object deleted. Passes again
/// until one finds nothing, in case the backup job wrote one meanwhile.
/// Returns how many backups were rewritten and their bytes.
pub async fn scrub_company(platform: &Platform, company_id: &str) -> anyhow::Result<(u64, u64)> {
    let (mut rewritten, mut bytes) = (0u64, 0u64);
    let lifecycle = platform
        .control
        .deprovisioning(company_id)
        .await?
        .as_ref()
        .map(LifecycleConfig::of);
    for _pass in 0..5 {
        let objects = config_objects(platform).await?;
        if objects.is_empty() {
            break;
        }
        let key = platform_key(platform, false).await?;
        let mut this_pass = 0;
        for object in objects {
            let sealed = match platform.objects.get(&object.path).await {
                Ok(found) => found.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => bail!("reading {}: {e}", object.path),
            };
            let plain = key.open(&sealed, &object.aad()).map_err(|_| {
                anyhow!(
                    "configuration backup {} does not open: it cannot be cleaned of the company",
                    object.path
                )
            })?;
            let mut snapshot: ConfigSnapshot =
                serde_json::from_slice(&plain).context("reading a configuration backup")?;
            if !snapshot.holds(company_id) {
                continue;
            }
            snapshot.forget(company_id, lifecycle.as_ref());
            let stem = object
                .path
                .filename()
                .and_then(|n| n.split_once('-'))
                .map(|(millis, _)| millis.to_string())
                .ok_or_else(|| anyhow!("unexpected backup name {}", object.path))?;
            let path = ObjectPath::from(format!(
                "{CONFIG_PREFIX}/{stem}-{}{CONFIG_SUFFIX}",
                snapshot.digest()?
            ));
            let resealed = key
                .seal(&serde_json::to_vec(&snapshot)?, &config_aad(&path))
                .map_err(|e| anyhow!("sealing the configuration backup: {e}"))?;
            platform
                .objects
                .put(&path, PutPayload::from(resealed))
                .await
                .with_context(|| format!("storing {path}"))?;
            if path != object.path {
                match platform.objects.delete(&object.path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => bail!("deleting {}: {e}", object.path),
                }
            }
            this_pass += 1;
            rewritten += 1;
            bytes += sealed.len() as u64;
        }
        if this_pass == 0 {
            break;
        }
    }
    Ok((rewritten, bytes))
}

/// Deletes the object store's copy of a company's wrapped key; returns its
/// size (0 when it was gone already).
pub async fn delete_company_key(platform: &Platform, company_id: &str) -> anyhow::Result<u64> {
    let mut bytes = 0;
    // Retired versions first (`{id}.v{n}.dek`), then the current one.
    let listed = platform
        .objects
        .list_with_delimiter(Some(&ObjectPath::from("keys/companies")))
        .await
        .with_context(|| "listing wrapped company keys")?;
    let prefix = format!("{company_id}.v");
    for meta in listed.objects {
        if meta
            .location
            .filename()
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".dek"))
        {
            match platform.objects.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => bytes += meta.size,
                Err(e) => bail!("deleting {}: {e}", meta.location),
            }
        }
    }
    Ok(bytes + delete_current_key(platform, company_id).await?)
}

async fn delete_current_key(platform: &Platform, company_id: &str) -> anyhow::Result<u64> {
    let path = dek_path(company_id);
    let size = match platform.objects.head(&path).await {
        Ok(meta) => meta.size,
        Err(object_store::Error::NotFound { .. }) => return Ok(0),
        Err(e) => bail!("reading {path}: {e}"),
    };
    match platform.objects.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(size),
        Err(e) => bail!("deleting {path}: {e}"),
    }
}

/// Every version of a company's key kept in the object store
/// (`keys/companies/{id}.v{n}.dek`), oldest first.
async fn object_key_versions(
    platform: &Platform,
    company_id: &str,
) -> anyhow::Result<Vec<(u32, Vec<u8>)>> {
    let listed = platform
        .objects
        .list_with_delimiter(Some(&ObjectPath::from("keys/companies")))
        .await
        .context("listing wrapped company keys")?;
    let prefix = format!("{company_id}.v");
    let mut found = Vec::new();
    for meta in listed.objects {
        let Some(version) = meta
            .location
            .filename()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".dek"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        match platform.objects.get(&meta.location).await {
            Ok(got) => found.push((version, got.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(anyhow!("reading {}: {e}", meta.location)),
        }
    }
    found.sort_by_key(|(v, _)| *v);
    Ok(found)
}

/// Every configuration backup, oldest first (names start with the time).
async fn config_objects(platform: &Platform) -> anyhow::Result<Vec<ConfigObject>> {
    let listing = platform
        .objects
        .list_with_delimiter(Some(&ObjectPath::from(CONFIG_PREFIX)))
        .await
        .context("listing configuration backups")?;
    let mut objects: Vec<ConfigObject> = listing
        .objects
        .into_iter()
        .filter_map(|m| ConfigObject::parse(m.location))
        .collect();
    objects.sort_by(|a, b| a.path.as_ref().cmp(b.path.as_ref()));
    Ok(objects)
}

/// The newest configuration backup, authenticated under its own name. Never
/// an older one instead: a newest backup that fails is refused, not skipped.
async fn latest_config(
    platform: &Platform,
    key: &DataKey,
) -> anyhow::Result<(ObjectPath, ConfigSnapshot)> {
    let objects = config_objects(platform).await?;
    let newest = objects
        .last()
        .ok_or_else(|| anyhow!("the object store holds no configuration backup"))?;
    let path = &newest.path;
    if !newest.named {
        if let Some(named) = objects.iter().rev().find(|o| o.named) {
            bail!(
                "configuration backup {path} is in the old format but newer than {}, a new-format one: refusing it (an older backup copied over?)",
                named.path
            );
        }
    }
    let sealed = platform.objects.get(path).await?.bytes().await?;
    let plain = key.open(&sealed, &newest.aad()).map_err(|_| {
        anyhow!(
            "configuration backup {path} fails authentication (tampered with, an older backup copied over it, or not this platform's): refusing to restore an older configuration in its place"
        )
    })?;
    let snapshot = serde_json::from_slice(&plain).context("reading the configuration backup")?;
    Ok((path.clone(), snapshot))
}

/// Runs `backup_config_once` every `every` on the node holding the lease.
pub fn spawn(
    platform: std::sync::Arc<Platform>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = ConfigBackupState::default();
        loop {
            if crate::runner::hold_lease(&*platform.control, &platform.node_id, CONFIG_BACKUP_LEASE)
                .await
            {
                let round = backup_config_once(&platform, &mut state);
                match crate::runner::unit(&platform, "config-backup", "round", None, round).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "configuration backup failed; will retry")
                    }
                    Err(_) => state = ConfigBackupState::default(),
                }
            }
            if crate::runner::pause(&mut stop, every).await {
                return;
            }
        }
    })
}

/// What disaster recovery did for one company.
#[derive(Debug, Clone, Serialize)]
pub struct CompanyRecovery {
    pub company_id: String,
    pub name: String,
    pub restored: bool,
    pub records: usize,
    pub last_seq: i64,
    /// Commit time of the last record recovered: anything committed after it was lost.
    pub restored_to: Option<String>,
    /// Seconds between `restored_to` and the end of the recovery.
    pub age_seconds: Option<i64>,
    pub error: Option<String>,
    /// Restored, but not whole: e.g. its audit trail only up to a damaged segment.
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrReport {
    pub configuration_from: String,
    pub users: usize,
    pub companies: Vec<CompanyRecovery>,
    /// How long the whole recovery took (the RTO of this run).
    pub seconds: f64,
}

/// Rebuilds the platform from its object store: an empty control plane is
/// required. Companies whose wrapped key is gone (crypto-shredded) or whose
/// journal fails verification are reported, not restored; the others are.
pub async fn restore(platform: &Platform) -> anyhow::Result<DrReport> {
    let started = Instant::now();
    if !platform.control.companies().await?.is_empty()
        || !platform.control.users().await?.is_empty()
    {
        bail!("disaster recovery restores into an empty deployment; this one already has companies or users");
    }
    let key = platform_key(platform, false).await?;
    let (path, snapshot) = latest_config(platform, &key).await?;
    if snapshot.format != FORMAT {
        bail!(
            "configuration backup format {} is not supported by this build",
            snapshot.format
        );
    }
    let now = platform.now();
    let audit = |action: Action, company: Option<&str>, detail: String| AuditEvent {
        at: now,
        actor: Actor::system("dr"),
        company_id: company.map(str::to_string),
        action,
        target: company.map(|c| format!("company:{c}")),
        outcome: Outcome::Success,
        detail: Some(detail),
    };
    for u in &snapshot.users {
        let user = UserRecord {
            id: u.id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            passphrase_hash: u.passphrase_hash.clone(),
            created_at: parse_time(&u.created_at)?,
            last_login_at: None,
        };
        platform
            .control
            .create_user(
                &user,
                &audit(Action::DrRestoreUser, None, format!("user:{}", u.id)),
            )
            .await?;
        if let Some(factors) = &u.factors {
            platform
                .control
                .restore_factors(
                    &factors.restore(&u.id)?,
                    &audit(
                        Action::DrRestoreSecondFactors,
                        None,
                        format!("user:{}", u.id),
                    ),
                )
                .await?;
        }
    }
    let mut members: BTreeMap<&str, Vec<&MemberConfig>> = BTreeMap::new();
    for m in &snapshot.members {
        members.entry(m.company_id.as_str()).or_default().push(m);
    }
    let mut companies = Vec::new();
    for c in &snapshot.companies {
        let outcome = restore_company(platform, c).await;
        let mut recovery = CompanyRecovery {
            company_id: c.id.clone(),
            name: c.name.clone(),
            restored: false,
            records: 0,
            last_seq: 0,
            restored_to: None,
            age_seconds: None,
            error: None,
            warning: None,
        };
        match outcome {
            Ok((replayed, warning)) => {
                recovery.warning = warning;
                recovery.restored = true;
                recovery.records = replayed.records;
                recovery.last_seq = replayed.last_seq;
                recovery.restored_to = replayed.last_at.map(rfc3339);
                recovery.age_seconds = replayed
                    .last_at
                    .map(|t| (platform.now() - t).whole_seconds());
                for m in members.get(c.id.as_str()).into_iter().flatten() {
                    let membership = Membership {
                        company_id: m.company_id.clone(),
                        user_id: m.user_id.clone(),
                        role: Role::from_str(&m.role)?,
                    };
                    platform
                        .control
                        .add_member(
                            &membership,
                            &audit(
                                Action::DrRestoreMember,
                                Some(&c.id),
                                format!("user:{}", m.user_id),
                            ),
                        )
                        .await?;
                }
                for e in snapshot
                    .export_schedules
                    .iter()
                    .filter(|e| e.company_id == c.id)
                {
                    let schedule = ExportSchedule {
                        company_id: e.company_id.clone(),
                        id: e.id.clone(),
                        destination: e.destination.clone(),
                        recipient: e.recipient.clone(),
                        every_hours: e.every_hours,
                        sealed_credentials: e
                            .sealed_credentials
                            .as_deref()
                            .map(hex::decode)
                            .transpose()?,
                        created_at: parse_time(&e.created_at)?,
                        created_by: e.created_by.clone(),
                        next_push_at: platform.now(),
                        last_push_at: None,
                        last_push_status: None,
                        last_error: None,
                        last_object: None,
                        failures: 0,
                    };
                    platform
                        .control
                        .put_export_schedule(
                            &schedule,
                            &audit(
                                Action::DrRestoreExportSchedule,
                                Some(&c.id),
                                e.destination.clone(),
                            ),
                        )
                        .await?;
                }
                for p in snapshot
                    .security_policies
                    .iter()
                    .filter(|p| p.company_id == c.id)
                {
                    let policy = wb_core::security_policy::SecurityPolicy {
                        mfa_required: p.mfa_required,
                        session_ttl_minutes: p.session_ttl_minutes,
                        idle_timeout_minutes: p.idle_timeout_minutes,
                        ip_allowlist: p
                            .ip_allowlist
                            .iter()
                            .map(|b| wb_core::security_policy::parse_block(b))
                            .collect::<Result<_, _>>()?,
                        min_passphrase_strength: p.min_passphrase_strength,
                        api_key_max_days: p.api_key_max_days,
                        key_max_age_days: p.key_max_age_days,
                    };
                    policy.validate()?;
                    platform
                        .control
                        .put_company_policy(
                            &c.id,
                            &policy,
                            &audit(
                                Action::DrRestoreSecurityPolicy,
                                Some(&c.id),
                                wb_core::security_policy::describe(&policy),
                            ),
                        )
                        .await?;
                }
                // Oldest first, as they were asked for.
                for g in snapshot
                    .access_grants
                    .iter()
                    .rev()
                    .filter(|g| g.company_id == c.id)
                {
                    let mut grant = g.grant()?;
                    let now = platform.now();
                    // A grant still open or waiting may have been revoked
                    // after the backup was taken: it comes back revoked
                    // (its staff member asks again), never open.
                    if matches!(
                        grant.state(now),
                        wb_core::grants::GrantState::Pending | wb_core::grants::GrantState::Active
                    ) {
                        grant.ending = Some(wb_core::grants::Ending {
                            kind: wb_core::grants::EndKind::Revoked,
                            side: wb_core::grants::Side::Management,
                            decision: wb_core::grants::Decision {
                                by: "system:disaster-recovery".into(),
                                at: now,
                            },
                        });
                    }
                    platform
                        .control
                        .create_grant(
                            &grant,
                            &audit(
                                Action::DrRestoreGrant,
                                Some(&c.id),
                                format!("grant:{}", grant.id),
                            ),
                        )
                        .await?;
                    // The company was told of what it may know before the
                    // loss; a mandate's grant still hidden is told by the
                    // notice job once it may be.
                    if grant.disclosed_to_company(now) {
                        platform
                            .control
                            .mark_grant_told(&grant.id, grant.state(now).as_str())
                            .await?;
                    }
                }
                for k in snapshot.api_keys.iter().filter(|k| k.company_id == c.id) {
                    let record = ApiKeyRecord {
                        id: k.id.clone(),
                        company_id: k.company_id.clone(),
                        name: k.name.clone(),
                        role: Role::from_str(&k.role)?,
                        token_hash: k.token_hash.clone(),
                        created_by: k.created_by.clone(),
                        created_at: parse_time(&k.created_at)?,
                        expires_at: parse_time(&k.expires_at)?,
                        revoked_at: k.revoked_at.as_deref().map(parse_time).transpose()?,
                    };
                    platform
                        .control
                        .create_api_key(
                            &record,
                            &audit(
                                Action::DrRestoreApiKey,
                                Some(&c.id),
                                format!("api_key:{}", k.id),
                            ),
                        )
                        .await?;
                }
            }
            Err(e) => recovery.error = Some(format!("{e:#}")),
        }
        companies.push(recovery);
    }
    platform
        .control
        .audit(&audit(
            Action::DrRestore,
            None,
            format!(
                "from {path}: {} of {} companies, {} users",
                companies.iter().filter(|c| c.restored).count(),
                companies.len(),
                snapshot.users.len()
            ),
        ))
        .await?;
    Ok(DrReport {
        configuration_from: path.to_string(),
        users: snapshot.users.len(),
        companies,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One company under its own id: its wrapped key from the object store, its
/// store created and the shipped journal replayed, then recorded.
async fn restore_company(
    platform: &Platform,
    c: &CompanyConfig,
) -> anyhow::Result<(crate::backup::Replayed, Option<String>)> {
    if c.status == CompanyStatus::Destroyed.as_str() {
        let (when, certificate) = match &c.lifecycle {
            Some(l) => (
                match &l.destroyed_at {
                    Some(at) => format!("at {at}"),
                    None => format!("after {}", l.destroy_after),
                },
                format!(" (certificate of destruction {})", l.certificate_id),
            ),
            None => ("before this backup".to_string(), String::new()),
        };
        // A destruction the lost control store never finished may have left
        // objects behind: finished here, so nothing of it outlives the
        // recovery either.
        let (left, _) = crate::objects::delete_under(
            &*platform.objects,
            &ObjectPath::from(format!("companies/{}", c.id)),
        )
        .await?;
        let key = delete_company_key(platform, &c.id).await?;
        let swept = if left > 0 || key > 0 {
            format!(
                "; {} objects it left behind removed",
                left + u64::from(key > 0)
            )
        } else {
            String::new()
        };
        bail!("it was destroyed {when}{certificate}: nothing of it remains to restore{swept}");
    }
    let wrapped = match platform.objects.get(&dek_path(&c.id)).await {
        Ok(found) => found.bytes().await?.to_vec(),
        Err(object_store::Error::NotFound { .. }) => {
            bail!("its key is not in the object store (destroyed): its backups cannot be read")
        }
        Err(e) => return Err(anyhow!("reading its wrapped key: {e}")),
    };
    let current = platform
        .keyring()
        .company_key(&c.id, &wrapped)
        .map_err(|e| anyhow!("its wrapped key does not open with this master key: {e}"))?;
    // Every version in the object store (`{id}.v{n}.dek`); the current one
    // is the version whose copy equals `{id}.dek` (a rotation after this
    // configuration backup is recognised so), else the backup's number.
    let mut opened = Vec::new();
    for (version, stored_wrapped) in object_key_versions(platform, &c.id).await? {
        match platform.keyring().company_key(&c.id, &stored_wrapped) {
            Ok(key) => opened.push((version, stored_wrapped, key)),
            Err(e) => {
                tracing::warn!(company = %c.id, version, error = %e, "a key version does not open with this master key: what it sealed cannot be read");
            }
        }
    }
    let current_version = opened
        .iter()
        .find(|(_, _, key)| key.fingerprint() == current.fingerprint())
        .map(|(v, _, _)| *v)
        .unwrap_or(c.key_version);
    let mut retired = Vec::new();
    let mut older = Vec::new();
    for (version, retired_wrapped, key) in
        opened.into_iter().filter(|(v, _, _)| *v < current_version)
    {
        older.push((version, key));
        let times = c.retired_keys.iter().find(|r| r.version == version);
        let created_at = match times {
            Some(r) => parse_time(&r.created_at)?,
            None => parse_time(&c.created_at)?,
        };
        let retired_at = match times {
            Some(r) => parse_time(&r.retired_at)?,
            None => platform.now(),
        };
        retired.push(wb_store::RetiredKey {
            version,
            created_at,
            retired_at,
            destroyed_at: None,
            wrapped_dek: retired_wrapped,
        });
    }
    let key = wb_crypto::CompanyKeys::new(current_version, current, older);
    // A snapshot that fails to load is stepped over: the company is rebuilt
    // again from an older one (or the segments alone).
    let mut skip = Vec::new();
    let (store, imported_audit, replayed) = loop {
        let store = platform
            .tenants
            .create(&c.id, key.current())
            .await
            .map_err(|e| anyhow!("creating its database: {e}"))?;
        let outcome = async {
            let audit = crate::backup::audit_trail::import(platform, &key, &c.id, &store).await?;
            if let Some(problem) = &audit.problem {
                tracing::warn!(company = %c.id, restored_to = audit.last_seq, problem = %problem, "the company's audit trail is restored only in part");
            }
            let replayed =
                crate::backup::replay_shipped(platform, &key, &c.id, c.shipped_seq, &store, &skip)
                    .await?;
            anyhow::Ok((audit, replayed))
        }
        .await;
        match outcome {
            Ok((audit, replayed)) => break (store, audit, replayed),
            Err(e) => {
                drop(store);
                platform.tenants.discard(&c.id).await;
                match crate::backup::broken_snapshot(&e) {
                    Some(seq) if skip.len() < 3 => {
                        tracing::warn!(company = %c.id, snapshot = seq, error = %format!("{e:#}"), "recovering without a broken snapshot");
                        skip.push(seq);
                    }
                    _ => return Err(e),
                }
            }
        }
    };
    drop(store);
    // A company de-provisioned when backed up comes back closed, and then
    // gets its grace period back: if that second write fails it stays
    // closed (no grace period, nothing to cancel), never open.
    let deprovisioned = c.status == CompanyStatus::Deprovisioned.as_str();
    let record = CompanyRecord {
        id: c.id.clone(),
        name: c.name.clone(),
        status: if deprovisioned {
            CompanyStatus::Deprovisioned
        } else {
            CompanyStatus::Active
        },
        wrapped_dek: wrapped,
        created_at: parse_time(&c.created_at)?,
    };
    let event = AuditEvent {
        at: platform.now(),
        actor: Actor::system("dr"),
        company_id: Some(c.id.clone()),
        action: Action::CompanyRestore,
        target: Some(format!("company:{}", c.id)),
        outcome: Outcome::Success,
        detail: Some(format!(
            "disaster recovery up to journal record {}",
            replayed.last_seq
        )),
    };
    if let Err(e) = platform.control.create_company(&record, &event).await {
        platform.tenants.discard(&c.id).await;
        return Err(anyhow!("recording it: {e}"));
    }
    let key_created_at = match &c.key_created_at {
        // Rotated after this backup: its age is not known, counted from now.
        _ if current_version != c.key_version => platform.now(),
        Some(at) => parse_time(at)?,
        None => record.created_at,
    };
    platform
        .control
        .restore_key_versions(&c.id, current_version, key_created_at, &retired)
        .await
        .map_err(|e| anyhow!("recording its key versions: {e}"))?;
    // Rules a backup holds are checked as a change would be: out of range
    // (an `exports_days` of 0 would expire every export) they are left out
    // and the company keeps the defaults.
    let retention = c.retention.filter(|rules| {
        let minimum = wb_core::data_retention::StatutoryMinimum::years(1).unwrap_or_default();
        let valid = rules.validate(minimum).is_ok();
        if !valid {
            tracing::warn!(company = %c.id, "the backed-up retention rules are out of range: the defaults apply");
        }
        valid
    });
    if let Some(rules) = &retention {
        let restored = AuditEvent {
            action: Action::RetentionSet,
            detail: Some("restored by disaster recovery".into()),
            ..event.clone()
        };
        platform
            .control
            .put_company_retention(&c.id, rules, &restored)
            .await
            .map_err(|e| anyhow!("recording its retention rules: {e}"))?;
    }
    if let Some(lifecycle) = c.lifecycle.as_ref().filter(|_| deprovisioned) {
        let event = AuditEvent {
            action: Action::CompanyDeprovision,
            detail: Some("de-provisioned when backed up: its grace period goes on".into()),
            ..event.clone()
        };
        platform
            .control
            .restore_deprovisioning(&lifecycle.restore(&c.id)?, &event)
            .await
            .map_err(|e| anyhow!("recording its de-provisioning (it stays closed): {e}"))?;
    }
    // Shipping continues after what is already in the object store.
    platform
        .control
        .set_cursor(&cursor_name(&c.id), replayed.last_seq)
        .await?;
    platform
        .control
        .set_cursor(
            &crate::backup::audit_trail::cursor_name(&c.id),
            imported_audit.last_seq,
        )
        .await?;
    let warning = imported_audit.problem.map(|problem| {
        format!(
            "its audit trail is restored up to event {} only: {problem}",
            imported_audit.last_seq
        )
    });
    Ok((replayed, warning))
}
