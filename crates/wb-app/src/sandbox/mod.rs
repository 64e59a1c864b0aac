//! Production data restored on a local machine, on the five conditions:
//! a stated reason (a legitimate business need), management's approval
//! beforehand (a single-use token bound to company, reason, approver and
//! expiry), no outside access (the sandbox serves on loopback only), every
//! password changed (the copy has fresh users with random passphrases and
//! no sessions, keys, invitations, factors, grants or schedules), and the
//! copy destroyed when its time is up (files and its own master key). Every
//! step, refusals included, is in the production control audit chain.

pub mod approval;
pub mod local;

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use wb_core::staff::StaffRole;
use wb_core::{Action, Role};
use wb_crypto::{new_token, Secret};
use wb_store::{Actor, AuditEvent, CompanyStatus, FilePage, Outcome};

use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::restore_target::RestoreTarget;
use approval::Approval;
use local::{Destroyed, SandboxManifest};

/// Longest life of a sandbox, in hours (one week).
pub const MAX_TTL_HOURS: u32 = 168;
const MAX_REASON_CHARS: usize = 500;

/// `sandbox approve`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct Approved {
    pub token: String,
    pub expires_at: String,
}

/// `sandbox restore`'s answer; the owner's passphrase is shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxCreated {
    pub sandbox: String,
    pub company: String,
    pub expires_at: String,
    pub owner_email: String,
    pub owner_passphrase: String,
}

/// A sandbox the production audit chain knows as live.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveSandbox {
    pub sandbox: String,
    pub company: String,
    pub source_company: String,
    pub reason: String,
    pub approver: String,
    pub created_at: String,
    pub expires_at: String,
    /// True when past its expiry (it destroys itself when it next runs).
    pub expired: bool,
}

fn check_reason(reason: &str) -> ServiceResult<String> {
    let reason = reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(ServiceError::unprocessable(
            "invalid-reason",
            format!("the reason must be 1 to {MAX_REASON_CHARS} printable characters"),
        ));
    }
    Ok(reason.to_string())
}

fn event(platform: &Platform, actor: &Actor, action: Action, company: &str) -> AuditEvent {
    AuditEvent {
        at: platform.now(),
        actor: actor.clone(),
        company_id: Some(company.to_string()),
        action,
        target: Some(format!("company:{company}")),
        outcome: Outcome::Success,
        detail: None,
    }
}

/// The detail of a `sandbox.restore` event; `sandbox list` reads it back.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct RestoreRecord {
    sandbox: String,
    company: String,
    reason: String,
    approver: String,
    approval: String,
    expires_at: String,
    records: i64,
    attachments: usize,
    members: usize,
}

impl Platform {
    /// Management's approval: the staff member proves who they are on the
    /// host with passphrase and code (a staff login, audited as one), and
    /// must hold `management`. Returns the single-use token.
    #[allow(clippy::too_many_arguments)]
    pub async fn sandbox_approve(
        &self,
        company_id: &str,
        reason: &str,
        ttl_hours: u32,
        staff_email: &str,
        passphrase: &Secret,
        otp: &Secret,
    ) -> ServiceResult<Approved> {
        let host = crate::staff::host_actor();
        let checked = async {
            let reason = check_reason(reason)?;
            if !(1..=MAX_TTL_HOURS).contains(&ttl_hours) {
                return Err(ServiceError::unprocessable(
                    "invalid-ttl",
                    format!("--ttl-hours must be 1 to {MAX_TTL_HOURS}"),
                ));
            }
            self.refuse_destroyed(company_id).await?;
            let company = self
                .control
                .company(company_id)
                .await?
                .filter(|c| c.status == CompanyStatus::Active)
                .ok_or_else(|| ServiceError::not_found("company"))?;
            Ok((reason, company))
        }
        .await;
        let (reason, company) = match checked {
            Ok(ok) => ok,
            Err(refused) => {
                let mut audit = event(self, &host, Action::SandboxApprove, company_id);
                audit.outcome = Outcome::Failure;
                audit.detail = Some(format!("refused before any login: {refused}"));
                self.control.audit(&audit).await?;
                return Err(refused);
            }
        };
        let (token, _) = self
            .staff_login(
                staff_email,
                passphrase,
                otp,
                host.clone(),
                Some("workbooks sandbox approve"),
            )
            .await?;
        let staff = self.staff_authenticate(&token, host).await?;
        self.staff_logout(&staff).await?;
        let mut audit = event(self, &staff.actor, Action::SandboxApprove, &company.id);
        if !staff.roles.contains(&StaffRole::Management) {
            audit.outcome = Outcome::Failure;
            audit.detail = Some(format!(
                "refused: {} does not hold the management role; reason given: {reason}",
                staff.email
            ));
            self.control.audit(&audit).await?;
            return Err(ServiceError::forbidden(
                "only staff with the management role approve a sandbox restore",
            ));
        }
        let now = self.now();
        let expires = now + Duration::hours(i64::from(ttl_hours));
        let approval = Approval {
            company_id: company.id.clone(),
            reason_sha256: approval::reason_digest(&reason),
            approver: staff.email.clone(),
            approved_at: now.unix_timestamp(),
            expires_at: expires.unix_timestamp(),
            nonce: uuid::Uuid::now_v7().to_string(),
            node: self.node_id.clone(),
        };
        let token = approval::issue(self, &approval)
            .await
            .map_err(|e| ServiceError::unavailable(format!("{e:#}")))?;
        audit.detail = Some(format!(
            "approval {} by {} for {ttl_hours} h (until {}); reason: {reason}",
            approval.nonce,
            staff.email,
            crate::dto::rfc3339(approval.expires())
        ));
        self.control.audit(&audit).await?;
        Ok(Approved {
            token,
            expires_at: crate::dto::rfc3339(approval.expires()),
        })
    }

    /// Restores `company_id` into a new sandbox at `dir` under `token`.
    /// Any refusal or failure is recorded and leaves no sandbox behind.
    pub async fn sandbox_restore(
        &self,
        company_id: &str,
        reason: &str,
        token: &str,
        dir: &Path,
        target: RestoreTarget,
    ) -> anyhow::Result<SandboxCreated> {
        let actor = crate::staff::host_actor();
        let refuse = |why: String| {
            let mut audit = event(self, &actor, Action::SandboxRestore, company_id);
            audit.outcome = Outcome::Failure;
            audit.detail = Some(format!("refused: {why}"));
            audit
        };
        if let Err(e) = local::create_dir(dir) {
            self.control.audit(&refuse(format!("{e:#}"))).await?;
            return Err(e);
        }
        let checked = async {
            let reason = check_reason(reason).map_err(|e| e.to_string())?;
            let approval = approval::read(self, token).await?;
            if approval.company_id != company_id {
                return Err("the approval is for another company".to_string());
            }
            if approval.reason_sha256 != approval::reason_digest(&reason) {
                return Err("the reason differs from the one management approved".to_string());
            }
            approval::take(self, &approval).await?;
            Ok((reason, approval))
        }
        .await;
        let (reason, approval) = match checked {
            Ok(ok) => ok,
            Err(why) => {
                let _ = std::fs::remove_dir(dir);
                self.control.audit(&refuse(why.clone())).await?;
                bail!("sandbox restore refused: {why}");
            }
        };
        let filled = self
            .fill_sandbox(company_id, &reason, &approval, dir, target)
            .await;
        let recorded = match &filled {
            Ok((_, record)) => {
                let mut audit = event(self, &actor, Action::SandboxRestore, company_id);
                audit.detail = Some(serde_json::to_string(record)?);
                self.control
                    .audit(&audit)
                    .await
                    .map_err(anyhow::Error::from)
            }
            Err(e) => Err(anyhow!("{e:#}")),
        };
        match (filled, recorded) {
            (Ok((created, _)), Ok(())) => Ok(created),
            (Err(e), _) | (_, Err(e)) => {
                // Not finished, or not on record: nothing of it may remain.
                let cleanup = match local::discard(dir) {
                    Ok(()) => "the partial sandbox deleted".to_string(),
                    Err(gone) => format!("deleting the partial sandbox failed too: {gone:#}"),
                };
                let mut audit = refuse(String::new());
                audit.detail = Some(format!("failed ({cleanup}): {e:#}"));
                self.control.audit(&audit).await?;
                Err(e)
            }
        }
    }

    async fn fill_sandbox(
        &self,
        company_id: &str,
        reason: &str,
        approval: &Approval,
        dir: &Path,
        target: RestoreTarget,
    ) -> anyhow::Result<(SandboxCreated, RestoreRecord)> {
        let source = self
            .control
            .company(company_id)
            .await?
            .ok_or_else(|| anyhow!("no company {company_id}"))?;
        let sandbox = local::open(dir, self.clock.clone()).await?;
        let (company, store) = sandbox
            .stage_company(&source.name)
            .await
            .map_err(|e| anyhow!("creating the sandbox company: {e}"))?;
        let records = crate::backup::replay_into(self, company_id, target, &store).await?;
        let source_key = self
            .company_key(company_id)
            .await
            .map_err(|e| anyhow!("the key of company {company_id}: {e}"))?;
        let sandbox_key = wb_crypto::CompanyKeys::single(
            sandbox
                .keyring()
                .company_key(&company.id, &company.wrapped_dek)
                .map_err(|e| anyhow!("the sandbox company's key: {e}"))?,
        );
        let mut attachments = 0;
        let mut after = None;
        loop {
            let page = store
                .files(FilePage {
                    after,
                    limit: 500,
                    entry_id: None,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for file in &page {
                crate::files::reseal_between(
                    (self.objects.clone(), sandbox.objects.clone()),
                    (&source_key, company_id),
                    (&sandbox_key, &company.id),
                    file,
                )
                .await
                .with_context(|| format!("copying attachment {}", file.id))?;
                attachments += 1;
            }
        }
        // Fresh users: the same people and roles, random passphrases, and
        // nothing else of theirs (no sessions, keys, factors or invitations).
        let mut members = Vec::new();
        for m in self.control.members_of(company_id).await? {
            if let Some(user) = self.control.user(&m.user_id).await? {
                members.push((user, m.role));
            }
        }
        members.sort_by(|a, b| (a.1, &a.0.email).cmp(&(b.1, &b.0.email)));
        let actor = Actor::system("sandbox");
        let mut sandbox_members = Vec::new();
        let mut owner: Option<(String, Secret)> = None;
        for (user, role) in &members {
            let passphrase = new_token("sandbox").token;
            let created = sandbox
                .create_user(&user.email, &passphrase, user.name.clone(), actor.clone())
                .await
                .map_err(|e| anyhow!("creating {} in the sandbox: {e}", user.email))?;
            if owner.is_none() && *role == Role::Owner {
                owner = Some((user.email.clone(), passphrase));
            }
            sandbox_members.push((created.id, *role));
        }
        let (owner_email, owner_passphrase) =
            owner.ok_or_else(|| anyhow!("company {company_id} has no owner to sign in with"))?;
        sandbox
            .record_staged_company(
                &company,
                None,
                &sandbox_members,
                actor,
                format!("sandbox of production company {company_id}: {reason}"),
            )
            .await
            .map_err(|e| anyhow!("recording the sandbox company: {e}"))?;
        let manifest = SandboxManifest {
            format: 1,
            company: company.id.clone(),
            source_company: company_id.to_string(),
            reason: reason.to_string(),
            approver: approval.approver.clone(),
            approval: approval.nonce.clone(),
            created_at: crate::dto::rfc3339(self.now()),
            expires_at: crate::dto::rfc3339(approval.expires()),
            production_data: self.data_dir().display().to_string(),
        };
        sandbox
            .control
            .set_cursor(local::EXPIRY_CURSOR, approval.expires_at)
            .await?;
        local::write_manifest(dir, &manifest)?;
        drop(store);
        drop(sandbox);
        let sandbox_path = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string();
        Ok((
            SandboxCreated {
                sandbox: sandbox_path.clone(),
                company: company.id.clone(),
                expires_at: manifest.expires_at.clone(),
                owner_email,
                owner_passphrase: owner_passphrase.expose().to_string(),
            },
            RestoreRecord {
                sandbox: sandbox_path,
                company: company.id,
                reason: reason.to_string(),
                approver: approval.approver.clone(),
                approval: approval.nonce.clone(),
                expires_at: manifest.expires_at,
                records,
                attachments,
                members: members.len(),
            },
        ))
    }

    /// Records a sandbox's destruction in the production chain (the detail
    /// names its approval, which `live_sandboxes` matches on).
    pub async fn record_sandbox_destroyed(&self, destroyed: &Destroyed) -> ServiceResult<()> {
        let company = destroyed
            .manifest
            .as_ref()
            .map_or("unknown", |m| m.source_company.as_str());
        let mut audit = event(
            self,
            &Actor::system("sandbox"),
            Action::SandboxDestroy,
            company,
        );
        audit.detail = Some(
            serde_json::to_string(&DestroyRecord {
                sandbox: destroyed.sandbox.clone(),
                approval: destroyed
                    .manifest
                    .as_ref()
                    .map(|m| m.approval.clone())
                    .unwrap_or_default(),
                cause: destroyed.cause.clone(),
                destroyed_at: destroyed.destroyed_at.clone(),
                files: destroyed.files,
                bytes: destroyed.bytes,
            })
            .map_err(|_| ServiceError::internal())?,
        );
        self.control.audit(&audit).await?;
        Ok(())
    }

    /// The sandboxes the production chain records as restored and not yet
    /// destroyed. On the way, a sandbox past its expiry that this host can
    /// reach is destroyed, and a destruction record left beside a sandbox
    /// that destroyed itself is carried in (only when its directory is gone
    /// and the record names the same approval).
    pub async fn live_sandboxes(&self) -> ServiceResult<Vec<LiveSandbox>> {
        let mut live: Vec<(String, LiveSandbox)> = Vec::new();
        let mut after = 0;
        loop {
            let page = self.control.audit_events(None, after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in page {
                if e.outcome != Outcome::Success.as_str() {
                    continue;
                }
                let company = e
                    .target
                    .as_deref()
                    .and_then(|t| t.strip_prefix("company:"))
                    .unwrap_or_default()
                    .to_string();
                let detail = e.detail.as_deref().unwrap_or_default();
                if e.action == Action::SandboxRestore.as_str() {
                    let Ok(record) = serde_json::from_str::<RestoreRecord>(detail) else {
                        continue;
                    };
                    live.push((
                        record.approval,
                        LiveSandbox {
                            sandbox: record.sandbox,
                            company: record.company,
                            source_company: company,
                            reason: record.reason,
                            approver: record.approver,
                            created_at: e.at.clone(),
                            expires_at: record.expires_at,
                            expired: false,
                        },
                    ));
                } else if e.action == Action::SandboxDestroy.as_str() {
                    if let Ok(gone) = serde_json::from_str::<DestroyRecord>(detail) {
                        live.retain(|(approval, _)| *approval != gone.approval);
                    }
                }
            }
        }
        let now = self.now();
        let mut still = Vec::new();
        for (approval, mut sandbox) in live {
            let dir = Path::new(&sandbox.sandbox);
            let same = |manifest: Option<&SandboxManifest>| {
                manifest.is_some_and(|m| m.approval == approval)
            };
            let record = local::destruction_record_path(dir);
            if !dir.exists() {
                if let Ok(text) = std::fs::read_to_string(&record) {
                    if let Ok(mut destroyed) = serde_json::from_str::<Destroyed>(&text) {
                        if same(destroyed.manifest.as_ref()) {
                            destroyed.sandbox.clone_from(&sandbox.sandbox);
                            self.record_sandbox_destroyed(&destroyed).await?;
                            let _ = std::fs::remove_file(&record);
                            continue;
                        }
                    }
                }
            }
            sandbox.expired = OffsetDateTime::parse(
                &sandbox.expires_at,
                &time::format_description::well_known::Rfc3339,
            )
            .is_ok_and(|end| now >= end);
            if sandbox.expired && same(local::read_manifest(dir).ok().as_ref()) {
                if let Ok(destroyed) = local::destroy(dir, "expired", now) {
                    self.record_sandbox_destroyed(&destroyed).await?;
                    continue;
                }
            }
            still.push(sandbox);
        }
        Ok(still)
    }
}

/// The detail of a `sandbox.destroy` event.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct DestroyRecord {
    sandbox: String,
    approval: String,
    cause: String,
    destroyed_at: String,
    files: u64,
    bytes: u64,
}

/// Destroys the sandbox at `dir` and reports it to `production` when given,
/// else leaves the record beside it for `sandbox list`/`report` to carry in.
pub async fn destroy_and_report(
    dir: &Path,
    cause: &str,
    now: OffsetDateTime,
    production: Option<&Arc<Platform>>,
) -> anyhow::Result<Destroyed> {
    let destroyed = local::destroy(dir, cause, now)?;
    let recorded = match production {
        Some(platform) => platform.record_sandbox_destroyed(&destroyed).await.map_err(|e| {
            tracing::warn!(error = %e, "recording a sandbox's destruction failed; left beside it");
        }),
        None => Err(()),
    };
    if recorded.is_err() {
        local::write_destruction_record(&destroyed)?;
    }
    Ok(destroyed)
}
