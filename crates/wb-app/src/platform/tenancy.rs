//! Tenancy: opening, creating, staging and moving company stores.

use super::*;
use wb_core::Action;

impl Platform {
    /// The open store of a company (opening it with its unwrapped DEK when needed).
    pub async fn tenant(&self, company_id: &str) -> ServiceResult<Arc<dyn TenantStore>> {
        if let Some(open) = self.tenants.get_open(company_id) {
            return Ok(open);
        }
        let company = self
            .control
            .company(company_id)
            .await?
            .filter(|c| c.status == CompanyStatus::Active)
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let keys = self.company_key(&company.id).await?;
        self.open_tenant(&company.id, &keys).await
    }

    /// Opens a company's store with its current key; a database still
    /// under an older version (a rotation stopped before its re-key) is
    /// opened with that one and re-keyed to the current version first.
    pub(crate) async fn open_tenant(
        &self,
        company_id: &str,
        keys: &CompanyKeys,
    ) -> ServiceResult<Arc<dyn TenantStore>> {
        match self.tenants.open(company_id, keys.current()).await {
            Err(wb_store::StoreError::WrongKey) => {}
            other => {
                let store = other?;
                self.note_open_key_version(company_id, keys.current_version());
                return Ok(store);
            }
        }
        for version in keys.versions().into_iter().skip(1) {
            let Some(older) = keys.version(version) else {
                continue;
            };
            if self.tenants.open(company_id, older).await.is_ok() {
                tracing::warn!(company = %company_id, version, "the company database is under an older key version: re-keying it to the current one");
                self.tenants
                    .rekey(company_id, older, keys.current())
                    .await?;
                let store = self.tenants.open(company_id, keys.current()).await?;
                self.note_open_key_version(company_id, keys.current_version());
                return Ok(store);
            }
        }
        Err(wb_store::StoreError::WrongKey.into())
    }

    pub(crate) fn note_open_key_version(&self, company_id: &str, version: u32) {
        if let Ok(mut open) = self.open_key_versions.lock() {
            open.insert(company_id.to_string(), version);
        }
    }

    /// Wraps and unwraps keys with the master key (never leaves this crate).
    pub(crate) fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// A company's data keys (DEK versions), unwrapped with the master key:
    /// the current one and every older one not destroyed.
    pub(crate) async fn company_key(&self, company_id: &str) -> ServiceResult<CompanyKeys> {
        let versions = self
            .control
            .company_key_versions(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let unwrap = |wrapped: &[u8], version: u32| {
            self.keyring.company_key(company_id, wrapped).map_err(|e| {
                anyhow::anyhow!(
                    "unwrapping version {version} of the key of company {company_id}: {e}"
                )
            })
        };
        let current = unwrap(&versions.current_wrapped, versions.current_version)?;
        let mut older = Vec::new();
        for retired in versions
            .retired
            .iter()
            .filter(|r| r.destroyed_at.is_none() && !r.wrapped_dek.is_empty())
        {
            // One unreadable old version must not close the company: what
            // it sealed stays unreadable (and is reported), the rest works.
            match unwrap(&retired.wrapped_dek, retired.version) {
                Ok(key) => older.push((retired.version, key)),
                Err(e) => {
                    tracing::error!(company = %company_id, version = retired.version, error = %e, "a retired key version cannot be unwrapped")
                }
            }
        }
        Ok(CompanyKeys::new(versions.current_version, current, older))
    }

    /// Creates a company's store without recording the company in the control
    /// plane; `record_staged_company` records it, `tenants.discard` drops it.
    /// Used by restore so a failed replay leaves no company behind.
    pub async fn stage_company(
        &self,
        name: &str,
    ) -> ServiceResult<(CompanyRecord, Arc<dyn TenantStore>)> {
        let (company, key) = self.new_company(name)?;
        let store = self.tenants.create(&company.id, &key).await?;
        Ok((company, store))
    }

    /// Records a staged company, gives it `policy` (before anyone can reach
    /// it) and these members (owners first).
    pub async fn record_staged_company(
        &self,
        company: &CompanyRecord,
        policy: Option<&wb_core::security_policy::SecurityPolicy>,
        members: &[(String, Role)],
        actor: Actor,
        detail: String,
    ) -> ServiceResult<()> {
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
        if let Some(policy) = policy {
            let event = AuditEvent {
                action: Action::SecurityPolicySet,
                detail: Some("copied from the restored company".into()),
                ..audit.clone()
            };
            self.control
                .put_company_policy(&company.id, policy, &event)
                .await?;
        }
        let mut members = members.to_vec();
        members.sort_by_key(|(_, role)| *role);
        for (user, role) in &members {
            self.add_member(&company.id, user, *role, actor.clone())
                .await?;
        }
        Ok(())
    }

    pub(super) fn new_company(&self, name: &str) -> ServiceResult<(CompanyRecord, DataKey)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(ServiceError::unprocessable(
                "invalid-company-name",
                "company name must be 1 to 200 printable characters",
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let key = DataKey::generate();
        let wrapped_dek = self
            .keyring
            .wrap_company_key(&id, &key)
            .map_err(anyhow::Error::from)?;
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

    /// Operator path (CLI): a company, optionally with an existing user as owner.
    pub async fn create_company(
        &self,
        name: &str,
        owner_email: Option<&str>,
    ) -> ServiceResult<CompanyRecord> {
        let (company, key) = self.new_company(name)?;
        let owner = match owner_email {
            Some(email) => Some(
                self.control
                    .user_by_email(&normalize_email(email)?)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("user"))?,
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
    ) -> ServiceResult<wb_store::postgres::MoveReport> {
        let Some(postgres) = &self.postgres else {
            return Err(ServiceError::unprocessable(
                "not-supported",
                "moving companies between database servers needs the PostgreSQL backend",
            ));
        };
        self.control
            .company(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let key = self.company_key(company_id).await?;
        let moved = postgres
            .move_company(company_id, to_server, key.current())
            .await;
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
}
