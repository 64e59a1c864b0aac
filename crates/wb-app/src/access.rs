//! The one door to a company's data.
//!
//! Every company-scoped operation starts with [`Platform::admit`]: it decides
//! whether the caller may use the company for a permission (role, API-key
//! scope, a staff member's access grant, the company's address allowlist and
//! session rules; nowhere else) and records a refusal in the platform trail. An
//! [`Admission`] holds no data: the company's store is reached only through
//! the [`CompanyScope`] it turns into, either by recording a read in the
//! company's own trail ([`Admission::read`]) or for a change, which the store
//! records in the same transaction as the change itself, or for another
//! operation that records its own event ([`Admission::operate`]).
//!
//! A caller with no role in a company gets 404, never 403, so company ids
//! cannot be probed.

use std::sync::Arc;
use wb_core::Action;

use time::OffsetDateTime;
use wb_core::grants::GrantScope;
use wb_core::{Permission, Role};
use wb_store::{Actor, AuditEvent, Outcome, TenantStore, WriteContext};

use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::policy::AccessKind;
use crate::principal::Principal;
use wb_core::security_policy::{Refusal, SessionTimes};

/// Who is calling, and the actor to record in audit events.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub actor: Actor,
}

/// A caller admitted to one company for one permission. It gives no access
/// to the company's data until it is used for a recorded read or a change.
#[derive(Debug)]
pub struct Admission {
    caller: Caller,
    company_id: String,
    role: Role,
    permission: Permission,
    grant: Option<GrantUse>,
}

/// The access grant a staff member was admitted under.
#[derive(Debug, Clone)]
pub struct GrantUse {
    pub id: String,
    pub scope: GrantScope,
    pub reason: String,
}

impl GrantUse {
    /// What every event recorded under the grant says about it.
    fn detail(&self) -> String {
        format!(
            "under access grant {} ({}): {}",
            self.id, self.scope, self.reason
        )
    }
}

/// A caller inside one company: the only way to that company's store.
pub struct CompanyScope {
    store: Arc<dyn TenantStore>,
    caller: Caller,
    company_id: String,
    role: Role,
    grant: Option<GrantUse>,
}

impl std::fmt::Debug for CompanyScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyScope")
            .field("company_id", &self.company_id)
            .field("role", &self.role)
            .field("actor", &self.caller.actor.id)
            .finish()
    }
}

/// Permissions that only read: their use is recorded by `Admission::read`.
fn only_reads(permission: Permission) -> bool {
    matches!(
        permission,
        Permission::ReadBooks | Permission::ReadFiles | Permission::ReadAudit
    )
}

impl Platform {
    /// The door: may `caller` use `company_id` for `permission`?
    ///
    /// A caller with no role there gets 404 and the refusal is recorded in
    /// the platform trail (`access.company`); a role that does not allow the
    /// permission gets 403, recorded too (`access.permission`).
    pub async fn admit(
        &self,
        caller: Caller,
        company_id: &str,
        permission: Permission,
    ) -> ServiceResult<Admission> {
        // One read of the control store: the role (never cached, so a
        // removal holds on every node at once; an API key's role is fixed
        // and `authenticate` never caches keys, so a revoked key stops at
        // once too) and the company's policy.
        let (member_role, policy) = match &caller.principal {
            Principal::User { user_id, .. } => {
                self.control.access_facts(Some(user_id), company_id).await?
            }
            Principal::ApiKey { .. } => self.control.access_facts(None, company_id).await?,
            Principal::Staff {
                staff_id, roles, ..
            } => {
                let staff_id = staff_id.clone();
                // A grant is used only while its holder still has a role
                // that may ask for one (moved to sales: no longer).
                let may = wb_core::staff::opens(roles, wb_core::staff::StaffView::RequestGrants);
                return self
                    .admit_staff(caller, &staff_id, may, company_id, permission)
                    .await;
            }
        };
        let role = match &caller.principal {
            Principal::User { .. } => member_role,
            Principal::ApiKey {
                company_id: own,
                role,
                ..
            } if own == company_id && self.company_is_active(company_id).await? => Some(*role),
            Principal::ApiKey { .. } | Principal::Staff { .. } => None,
        };
        let Some(role) = role else {
            self.record_refusal(
                &caller.actor,
                company_id,
                Action::AccessCompany,
                "not a member of this company".into(),
            )
            .await?;
            return Err(ServiceError::not_found("company"));
        };
        if !role.allows(permission) {
            self.record_refusal(
                &caller.actor,
                company_id,
                Action::AccessPermission,
                format!("the {role} role does not allow {permission:?}"),
            )
            .await?;
            return Err(ServiceError::forbidden(format!(
                "the {role} role may not do this"
            )));
        }
        if let Some(policy) = policy {
            self.check_policy(&caller, company_id, &policy).await?;
        }
        Ok(Admission {
            caller,
            company_id: company_id.to_string(),
            role,
            permission,
            grant: None,
        })
    }

    /// The door for staff: staff hold no role in any company, so they are
    /// admitted only under one of their access grants that is active now
    /// and whose scope covers `permission`, and only from an address the
    /// company's allowlist accepts. The grants and the policy are read from
    /// the control store at most a second before (`staff_cache.rs`): a
    /// revocation holds at once on the node that made it and within a
    /// second on the others; the end of a grant holds exactly. Outside a grant the
    /// refusal is recorded as `staff.refused` (the monitor raises
    /// `staff-access-outside-grant`) and answered 403 `grant-required`.
    async fn admit_staff(
        &self,
        mut caller: Caller,
        staff_id: &str,
        may_use_grants: bool,
        company_id: &str,
        permission: Permission,
    ) -> ServiceResult<Admission> {
        let now = self.now();
        // Read on every request, never cached: a de-provisioned company is
        // closed to staff at once on every node, grant or not.
        let active = self.company_is_active(company_id).await?;
        let access = match self.staff_cache.access(staff_id, company_id, now) {
            Some(access) => access,
            None => {
                let grants = self
                    .control
                    .live_grants(&crate::staff::staff_actor_id(staff_id), company_id)
                    .await?
                    .into_iter()
                    .map(|stored| stored.grant)
                    .collect();
                let (_, policy) = self.control.access_facts(None, company_id).await?;
                let access = crate::staff_cache::StaffAccess { grants, policy };
                self.staff_cache
                    .remember_access(staff_id, company_id, access.clone(), now);
                access
            }
        };
        // What a grant allows is asked with this request's time: a grant
        // ends at its end exactly, cached or not.
        let grant = access
            .grants
            .into_iter()
            .filter(|_| may_use_grants && active)
            .filter(|grant| grant.allows(permission, now))
            .max_by_key(|grant| grant.closes_at());
        let Some(grant) = grant else {
            let event = AuditEvent {
                at: now,
                actor: caller.actor.clone(),
                company_id: Some(company_id.chars().take(64).collect()),
                action: Action::StaffRefused,
                target: Some(format!(
                    "company:{}",
                    company_id.chars().take(64).collect::<String>()
                )),
                outcome: Outcome::Failure,
                detail: Some(format!(
                    "no active access grant covers {permission:?} in this company"
                )),
            };
            if let Err(e) = self.control.audit(&event).await {
                tracing::error!(error = %e, "a refused staff request could not be recorded");
                return Err(ServiceError::audit_unavailable());
            }
            return Err(ServiceError::new(
                crate::error::ErrorKind::Forbidden,
                "grant-required",
                "Access grant required",
                "staff reach a company's content only under an active access grant, \
                 approved by the company and by management, whose scope covers this request",
            ));
        };
        // Every event recorded under the grant (the read, the change the
        // store records) names it.
        caller.actor.auth = crate::grant_actions::grant_auth(&grant.id);
        if let Some(policy) = &access.policy {
            self.check_policy(&caller, company_id, policy).await?;
        }
        Ok(Admission {
            caller,
            company_id: company_id.to_string(),
            // Never consulted for staff (`allows` asks the grant); the least
            // role, so a place that forgot to ask `allows` grants nothing.
            role: Role::Viewer,
            permission,
            grant: Some(GrantUse {
                id: grant.id,
                scope: grant.scope,
                reason: grant.reason,
            }),
        })
    }

    /// The company's security policy, applied to this request: the client's
    /// address against the allowlist (API keys too), a session's age and
    /// idleness against the company's limits. Read uncached, so a change
    /// holds on every node at once. Refusals are recorded.
    async fn check_policy(
        &self,
        caller: &Caller,
        company_id: &str,
        policy: &wb_core::security_policy::SecurityPolicy,
    ) -> ServiceResult<()> {
        let client = caller
            .actor
            .client
            .as_deref()
            .and_then(|c| c.parse::<std::net::IpAddr>().ok());
        let session = match &caller.principal {
            Principal::User {
                token_hash,
                started,
                second_factor,
                ..
            } => {
                let last_seen = if policy.idle_timeout_minutes.is_some() {
                    self.control.session_last_seen(token_hash).await?
                } else {
                    None
                };
                Some(SessionTimes {
                    started: *started,
                    last_seen: last_seen.unwrap_or(*started),
                    second_factor: *second_factor,
                })
            }
            // Staff sessions have their own, shorter limits and always a
            // second factor (`Platform::staff_authenticate`).
            Principal::ApiKey { .. } | Principal::Staff { .. } => None,
        };
        let (action, detail, error) = match policy.refuse(client, session, self.now()) {
            None => return Ok(()),
            Some(Refusal::Address) => (
                Action::AccessAddress,
                format!(
                    "address {} is not on the company's allowlist",
                    caller.actor.client.as_deref().unwrap_or("unknown")
                ),
                ServiceError::new(
                    crate::error::ErrorKind::Forbidden,
                    "ip-not-allowed",
                    "Address not allowed",
                    "this company accepts requests only from the addresses on its allowlist",
                ),
            ),
            Some(Refusal::SessionTooOld) => (
                Action::AccessSession,
                "session older than the company allows".to_string(),
                ServiceError::new(
                    crate::error::ErrorKind::Unauthorized,
                    "session-expired",
                    "Session expired",
                    "this company's policy ends sessions this old: sign in again",
                ),
            ),
            Some(Refusal::SecondFactor) => (
                Action::AccessSession,
                "session opened without a second factor; the company requires one".to_string(),
                ServiceError::new(
                    crate::error::ErrorKind::Forbidden,
                    "mfa-required",
                    "Second factor required",
                    "this company requires a second factor: enrol one at \
                     /api/v1/me/mfa/totp (or a passkey), then sign in with it",
                ),
            ),
            Some(Refusal::SessionIdle) => (
                Action::AccessSession,
                "session idle longer than the company allows".to_string(),
                ServiceError::new(
                    crate::error::ErrorKind::Unauthorized,
                    "session-expired",
                    "Session expired",
                    "this company's policy ends sessions idle this long: sign in again",
                ),
            ),
        };
        self.record_refusal(&caller.actor, company_id, action, detail)
            .await?;
        Err(error)
    }

    /// The data key of the company a caller was admitted to (attachments
    /// are sealed with it as they stream).
    pub async fn scope_key(&self, scope: &CompanyScope) -> ServiceResult<wb_crypto::CompanyKeys> {
        self.company_key(scope.company_id()).await
    }

    /// The door's one opening into a company that is not active: one of
    /// its owners, signed in, from an address its allowlist accepts, to
    /// cancel its de-provisioning. Anyone else gets 404 (recorded), as at
    /// the main door.
    pub async fn admit_deprovisioned_owner(
        &self,
        caller: &Caller,
        company_id: &str,
    ) -> ServiceResult<wb_store::CompanyRecord> {
        let owner = match &caller.principal {
            Principal::User { user_id, .. } => self
                .control
                .members_of(company_id)
                .await?
                .iter()
                .any(|m| &m.user_id == user_id && m.role == Role::Owner),
            Principal::ApiKey { .. } | Principal::Staff { .. } => false,
        };
        let company = self
            .control
            .company(company_id)
            .await?
            .filter(|c| owner && c.status == wb_store::CompanyStatus::Deprovisioned);
        let Some(company) = company else {
            self.record_refusal(
                &caller.actor,
                company_id,
                Action::AccessCompany,
                "not an owner of this de-provisioned company".into(),
            )
            .await?;
            return Err(ServiceError::not_found("company"));
        };
        if let (_, Some(policy)) = self.control.access_facts(None, company_id).await? {
            self.check_policy(caller, company_id, &policy).await?;
        }
        Ok(company)
    }

    /// The operator's one way into a de-provisioned company: on the host,
    /// during its grace period and before its destruction begins, to export
    /// it for the owner who de-provisioned it (`workbooks company export`).
    /// The scope's caller is that owner, the actor on record the operator;
    /// the export is recorded in the company's trail like any other.
    pub async fn admit_operator_export(
        &self,
        company_id: &str,
        operator: Actor,
    ) -> ServiceResult<CompanyScope> {
        let company = self
            .control
            .company(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let record = self.control.deprovisioning(company_id).await?;
        let now = self.now();
        let owner =
            match (company.status, record) {
                (wb_store::CompanyStatus::Deprovisioned, Some(r))
                    if r.destruction_started_at.is_none() && now < r.destroy_after =>
                {
                    r.deprovisioned_by
                        .strip_prefix("user:")
                        .map(str::to_string)
                        .ok_or_else(|| ServiceError::not_found("owner"))?
                }
                (wb_store::CompanyStatus::Active, _) => return Err(ServiceError::conflict(
                    "company-active",
                    "the company is active: its owner exports it through the API or the console",
                )),
                _ => return Err(ServiceError::conflict(
                    "grace-period-over",
                    "the company is no longer in its grace period: nothing of it can be exported",
                )),
            };
        let store = match self.tenants.get_open(company_id) {
            Some(store) => store,
            None => {
                let keys = self.company_key(company_id).await?;
                self.open_tenant(company_id, &keys).await?
            }
        };
        Ok(CompanyScope {
            store,
            caller: Caller {
                principal: Principal::User {
                    user_id: owner,
                    token_hash: String::new(),
                    started: now,
                    second_factor: true,
                },
                actor: operator,
            },
            company_id: company_id.to_string(),
            role: Role::Owner,
            grant: None,
        })
    }

    /// Whether the company exists and is active (not de-provisioned or
    /// destroyed). Members learn it in the same read as their role; API
    /// keys and staff ask here, uncached.
    async fn company_is_active(&self, company_id: &str) -> ServiceResult<bool> {
        Ok(self
            .control
            .company(company_id)
            .await?
            .is_some_and(|c| c.status == wb_store::CompanyStatus::Active))
    }

    async fn record_refusal(
        &self,
        actor: &Actor,
        company_id: &str,
        action: Action,
        detail: String,
    ) -> ServiceResult<()> {
        let event = AuditEvent {
            at: self.now(),
            actor: actor.clone(),
            // A probing caller chooses this id: bounded before it is stored.
            company_id: Some(company_id.chars().take(64).collect()),
            action,
            target: None,
            outcome: Outcome::Failure,
            detail: Some(detail),
        };
        Ok(self.control.audit(&event).await?)
    }
}

/// What a member's role, or a staff member's grant, allows.
fn standing_allows(role: Role, grant: Option<&GrantUse>, permission: Permission) -> bool {
    match grant {
        Some(grant) => grant.scope.covers(permission),
        None => role.allows(permission),
    }
}

impl Admission {
    /// The member's role (for staff, who hold none, the least role: ask
    /// [`Admission::allows`] what the caller may do).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the caller may also do `permission` here.
    pub fn allows(&self, permission: Permission) -> bool {
        standing_allows(self.role, self.grant.as_ref(), permission)
    }

    /// The access grant of a staff caller.
    pub fn grant(&self) -> Option<&GrantUse> {
        self.grant.as_ref()
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn company_id(&self) -> &str {
        &self.company_id
    }

    /// Records a read of the company's content in its own trail before any
    /// of it is answered; when the trail cannot take the event, the audit
    /// failure policy decides (`Platform::audit_access`).
    pub async fn read(
        self,
        platform: &Platform,
        action: Action,
        target: Option<String>,
    ) -> ServiceResult<CompanyScope> {
        let scope = self.open(platform).await?;
        let event = AuditEvent {
            at: platform.now(),
            actor: scope.caller.actor.clone(),
            company_id: Some(scope.company_id.clone()),
            action,
            target,
            outcome: Outcome::Success,
            detail: scope.grant.as_ref().map(GrantUse::detail),
        };
        // A staff read that cannot be recorded does not happen.
        let kind = match scope.grant {
            Some(_) => AccessKind::Staff,
            None => AccessKind::CustomerRead,
        };
        platform.audit_access(&*scope.store, event, kind).await?;
        Ok(scope)
    }

    /// Opens the company for an operation that records its own event in the
    /// company's trail and fails when it cannot: a change (the store records
    /// it, or its refusal, in the same transaction), an export made or
    /// downloaded. So nothing is recorded here; a read-only permission cannot
    /// be used this way. Under a staff grant, the grant's use is recorded
    /// first (`access_grant.use`, with the grant, its reason and the
    /// permission), and nothing happens when it cannot be.
    pub async fn operate(self, platform: &Platform) -> ServiceResult<CompanyScope> {
        if only_reads(self.permission) {
            tracing::error!(
                permission = ?self.permission,
                "a read-only admission was used for an operation; refused"
            );
            return Err(ServiceError::internal());
        }
        let permission = self.permission;
        let scope = self.open(platform).await?;
        if let Some(grant) = &scope.grant {
            let event = AuditEvent {
                at: platform.now(),
                actor: scope.caller.actor.clone(),
                company_id: Some(scope.company_id.clone()),
                action: Action::GrantUse,
                target: Some(format!("grant:{}", grant.id)),
                outcome: Outcome::Success,
                detail: Some(format!("{permission:?} {}", grant.detail())),
            };
            platform
                .audit_access(&*scope.store, event, AccessKind::Staff)
                .await?;
        }
        Ok(scope)
    }

    async fn open(self, platform: &Platform) -> ServiceResult<CompanyScope> {
        let store = platform.tenant(&self.company_id).await?;
        Ok(CompanyScope {
            store,
            caller: self.caller,
            company_id: self.company_id,
            role: self.role,
            grant: self.grant,
        })
    }
}

impl CompanyScope {
    /// The company's store: only services in this crate reach it.
    pub(crate) fn store(&self) -> &dyn TenantStore {
        &*self.store
    }

    /// The member's role (the least role for staff: ask `allows`).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the caller may also do `permission` here.
    pub fn allows(&self, permission: Permission) -> bool {
        standing_allows(self.role, self.grant.as_ref(), permission)
    }

    /// The access grant of a staff caller.
    pub fn grant(&self) -> Option<&GrantUse> {
        self.grant.as_ref()
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn actor(&self) -> &Actor {
        &self.caller.actor
    }

    pub fn company_id(&self) -> &str {
        &self.company_id
    }

    pub fn write_context(&self, at: OffsetDateTime) -> WriteContext {
        WriteContext {
            actor: self.caller.actor.clone(),
            at,
        }
    }

    /// Records an event about this company in its own trail (a refused or
    /// failed operation, an export made), raising the alarm when the trail
    /// is unavailable.
    pub async fn record(&self, platform: &Platform, event: AuditEvent) -> ServiceResult<()> {
        let action = event.action;
        platform
            .checked(&self.company_id, action, self.store.record(event).await)
            .await
    }
}
