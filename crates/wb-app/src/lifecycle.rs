//! A company's owner ends it: de-provisioning (access blocked at once for
//! every member, API key and staff grant, on every node), a cancel within
//! the grace period, and the certificate of destruction fetched afterwards
//! with the token emailed at de-provisioning. The destruction itself is
//! `destruction/`.

use time::OffsetDateTime;
use wb_core::lifecycle::{GracePeriod, LifecycleError, Stage};
use wb_core::{Action, Permission, Role};
use wb_crypto::{new_token, token_hash, Secret};
use wb_store::{Actor, AuditEvent, CompanyStatus, Deprovisioning, Outcome, StoreError};

use crate::access::Caller;
use crate::dto::rfc3339;
use crate::error::{ErrorKind, ServiceError, ServiceResult};
use crate::mail;
use crate::mailer::Message;
use crate::platform::Platform;
use crate::principal::Principal;

/// What the certificate token looks like (`wbc_…`).
const CERTIFICATE_TOKEN_PREFIX: &str = "wbc";

/// A company de-provisioned: what the owner is answered.
#[derive(Debug, Clone)]
pub struct DeprovisionAnswer {
    pub destroy_after: OffsetDateTime,
    pub certificate_id: String,
    /// The staff access grants it ended.
    pub grants_ended: usize,
}

/// Where a company is in its life, as the store has it.
pub(crate) fn stage_of(status: CompanyStatus, record: Option<&Deprovisioning>) -> Stage {
    match (status, record) {
        (CompanyStatus::Active, _) => Stage::Active,
        (CompanyStatus::Destroyed, _) => Stage::Destroyed,
        (CompanyStatus::Deprovisioned, Some(d)) if d.destroyed_at.is_some() => Stage::Destroyed,
        (CompanyStatus::Deprovisioned, Some(d)) => Stage::Deprovisioned {
            destroy_after: d.destroy_after,
        },
        // De-provisioned before lifecycles were recorded: due at once.
        (CompanyStatus::Deprovisioned, None) => Stage::Deprovisioned {
            destroy_after: OffsetDateTime::UNIX_EPOCH,
        },
    }
}

pub(crate) fn lifecycle_error(e: LifecycleError) -> ServiceError {
    let slug = match e {
        LifecycleError::GraceOutOfRange(_) => "invalid-grace-period",
        LifecycleError::NotActive => "company-not-active",
        LifecycleError::NotDeprovisioned => "company-not-deprovisioned",
        LifecycleError::GraceOver(_) => "grace-period-over",
        LifecycleError::StillInGrace(_) => "grace-period-running",
    };
    ServiceError::conflict(slug, e.to_string())
}

fn user_id(principal: &Principal) -> ServiceResult<&str> {
    match principal {
        Principal::User { user_id, .. } => Ok(user_id),
        _ => Err(ServiceError::forbidden(
            "only the company's owner, signed in, may do this (not an API key or staff)",
        )),
    }
}

impl Platform {
    pub fn set_grace_period(&self, grace: GracePeriod) {
        if let Ok(mut g) = self.grace.write() {
            *g = grace;
        }
    }

    pub fn grace_period(&self) -> GracePeriod {
        self.grace.read().map(|g| *g).unwrap_or_default()
    }

    /// The owner ends the company: re-authenticated with the passphrase
    /// (and a current code when the account has an authenticator), access
    /// ends at once for everyone, and the data is destroyed after the grace
    /// period. The owner is emailed a token that fetches the certificate.
    pub async fn deprovision(
        &self,
        caller: Caller,
        company_id: &str,
        passphrase: &Secret,
        code: Option<&Secret>,
    ) -> ServiceResult<DeprovisionAnswer> {
        let user_id = user_id(&caller.principal)?.to_string();
        let actor = caller.actor.clone();
        // The door: an owner of an active company, from an allowed address.
        let admission = self
            .admit(caller.clone(), company_id, Permission::Deprovision)
            .await?;
        debug_assert_eq!(admission.role(), Role::Owner);
        let user = self
            .control
            .user(&user_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))?;
        let factors = self.second_factors_of(&user_id).await?;
        let proved_at_login = matches!(
            caller.principal,
            Principal::User {
                second_factor: true,
                ..
            }
        );
        let has_totp = factors.contains(&crate::mfa::FACTOR_TOTP);
        if code.is_none() && (has_totp || (!factors.is_empty() && !proved_at_login)) {
            return Err(ServiceError::new(
                ErrorKind::Forbidden,
                "mfa-required",
                "Second factor required",
                "this account has a second factor: send a current code as \"otp\" to de-provision",
            ));
        }
        self.reauthenticate(&user, passphrase, code, Action::CompanyDeprovision, &actor)
            .await?;

        let now = self.now();
        let destroy_after = self.grace_period().destroy_after(now);
        let token = new_token(CERTIFICATE_TOKEN_PREFIX);
        let record = Deprovisioning {
            company_id: company_id.to_string(),
            deprovisioned_at: now,
            deprovisioned_by: actor.id.clone(),
            destroy_after,
            certificate_id: uuid::Uuid::now_v7().to_string(),
            certificate_token_hash: token.hash.clone(),
            destruction_started_at: None,
            steps: Vec::new(),
            destroyed_at: None,
            certificate: None,
        };
        let audit = AuditEvent {
            at: now,
            actor: actor.clone(),
            company_id: Some(company_id.to_string()),
            action: Action::CompanyDeprovision,
            target: Some(format!("company:{company_id}")),
            outcome: Outcome::Success,
            detail: Some(format!(
                "access blocked; destroyed after {} unless cancelled; certificate {}",
                rfc3339(destroy_after),
                record.certificate_id
            )),
        };
        let owners = self.owner_emails(company_id).await?;
        let ended = match self.control.deprovision_company(&record, &audit).await {
            Ok(ended) => ended,
            Err(StoreError::Conflict(_)) => {
                return Err(lifecycle_error(LifecycleError::NotActive));
            }
            Err(e) => return Err(e.into()),
        };
        // Staff sessions remember grants for a second; the door reads the
        // company's status on every request, so nothing waits for that.
        self.staff_cache.forget_access();
        let name = self
            .control
            .company(company_id)
            .await?
            .map(|c| c.name)
            .unwrap_or_default();
        self.tell_deprovisioned(&user.email, &owners, &name, &record, &token.token)
            .await;
        Ok(DeprovisionAnswer {
            destroy_after,
            certificate_id: record.certificate_id,
            grants_ended: ended.len(),
        })
    }

    /// The owner brings a de-provisioned company back within its grace
    /// period. The company is closed to the door, so this is its own
    /// narrow check: a user who is an owner of this de-provisioned company.
    pub async fn cancel_deprovisioning(
        &self,
        caller: Caller,
        company_id: &str,
    ) -> ServiceResult<()> {
        let company = self.admit_deprovisioned_owner(&caller, company_id).await?;
        let record = self.control.deprovisioning(company_id).await?;
        let now = self.now();
        if let Err(e) = stage_of(company.status, record.as_ref()).cancel(now) {
            self.record_lifecycle_refusal(&caller.actor, company_id, &e.to_string())
                .await?;
            return Err(lifecycle_error(e));
        }
        let audit = AuditEvent {
            at: now,
            actor: caller.actor.clone(),
            company_id: Some(company_id.to_string()),
            action: Action::CompanyDeprovisionCancel,
            target: Some(format!("company:{company_id}")),
            outcome: Outcome::Success,
            detail: Some(
                "de-provisioning cancelled within the grace period; access restored".into(),
            ),
        };
        match self.control.cancel_deprovisioning(company_id, &audit).await {
            Ok(()) => {}
            Err(StoreError::Conflict(detail)) => {
                return Err(ServiceError::conflict("company-not-deprovisioned", detail))
            }
            Err(e) => return Err(e.into()),
        }
        for to in self.owner_emails(company_id).await? {
            let message = Message {
                to,
                subject: format!("{} is active again in Work-books", company.name),
                body: format!(
                    "The de-provisioning of {} was cancelled by one of its owners. Its members and API keys work again; staff access grants ended by the de-provisioning stay ended.\n",
                    company.name
                ),
            };
            if let Err(e) = mail::queue(self, &message).await {
                tracing::warn!(error = %e, "cannot queue a cancel notice");
            }
        }
        Ok(())
    }

    /// The signed certificate of destruction, for whoever holds the token
    /// emailed at de-provisioning (the company and its members are gone by
    /// then). A wrong token is answered like an unknown certificate.
    pub async fn destruction_certificate(
        &self,
        certificate_id: &str,
        token: &Secret,
        actor: &Actor,
    ) -> ServiceResult<String> {
        let found = if certificate_id.len() <= 64 {
            self.control
                .deprovisioning_by_certificate(certificate_id)
                .await?
        } else {
            None
        };
        let right = found.as_ref().is_some_and(|d| {
            wb_crypto::constant_time_eq(
                d.certificate_token_hash.as_bytes(),
                token_hash(token).as_bytes(),
            )
        });
        let company_id = found.as_ref().map(|d| d.company_id.clone());
        let event = |outcome, detail: &str| AuditEvent {
            at: self.now(),
            actor: actor.clone(),
            company_id: company_id.clone(),
            action: Action::DestructionCertificateRead,
            target: Some(format!(
                "certificate:{}",
                certificate_id.chars().take(64).collect::<String>()
            )),
            outcome,
            detail: Some(detail.to_string()),
        };
        let Some(record) = found.filter(|_| right) else {
            self.control
                .audit(&event(
                    Outcome::Failure,
                    "unknown certificate or wrong token",
                ))
                .await?;
            return Err(ServiceError::not_found("destruction certificate"));
        };
        let Some(certificate) = record.certificate else {
            return Err(ServiceError::conflict(
                "not-destroyed-yet",
                format!(
                    "the company is not destroyed yet: its destruction is due after {}",
                    rfc3339(record.destroy_after)
                ),
            ));
        };
        self.control
            .audit(&event(Outcome::Success, "certificate fetched"))
            .await?;
        Ok(certificate)
    }

    /// Refuses, in one line, to restore, revert or verify the backups of a
    /// company that was destroyed (or whose destruction has begun): there is
    /// nothing left to read, and saying when is more use than "key not found".
    pub async fn refuse_destroyed(&self, company_id: &str) -> anyhow::Result<()> {
        let Some(company) = self.control.company(company_id).await? else {
            return Ok(());
        };
        let record = self.control.deprovisioning(company_id).await?;
        let certificate = record
            .as_ref()
            .map(|r| format!(" (certificate of destruction {})", r.certificate_id))
            .unwrap_or_default();
        match (company.status, record.as_ref()) {
            (CompanyStatus::Destroyed, r) => anyhow::bail!(
                "company {company_id} was destroyed at {}{certificate}: its data and every copy of its key are gone",
                r.and_then(|r| r.destroyed_at)
                    .map_or_else(|| "an unrecorded time".into(), rfc3339)
            ),
            (_, Some(r)) if r.destruction_started_at.is_some() || !r.steps.is_empty() => anyhow::bail!(
                "company {company_id} is being destroyed (its grace period ended {}){certificate}: nothing of it can be restored",
                rfc3339(r.destroy_after)
            ),
            _ => Ok(()),
        }
    }

    async fn record_lifecycle_refusal(
        &self,
        actor: &Actor,
        company_id: &str,
        why: &str,
    ) -> ServiceResult<()> {
        let event = AuditEvent {
            at: self.now(),
            actor: actor.clone(),
            company_id: Some(company_id.chars().take(64).collect()),
            action: Action::CompanyDeprovisionCancel,
            target: Some(format!(
                "company:{}",
                company_id.chars().take(64).collect::<String>()
            )),
            outcome: Outcome::Failure,
            detail: Some(why.to_string()),
        };
        self.control.audit(&event).await?;
        Ok(())
    }

    async fn owner_emails(&self, company_id: &str) -> ServiceResult<Vec<String>> {
        Ok(self
            .control
            .members(company_id)
            .await?
            .into_iter()
            .filter(|m| m.role == Role::Owner)
            .map(|m| m.email)
            .collect())
    }

    /// The owner who asked gets the certificate's token; every owner is told.
    async fn tell_deprovisioned(
        &self,
        asker: &str,
        owners: &[String],
        name: &str,
        record: &Deprovisioning,
        token: &Secret,
    ) {
        let base = self.mail_settings().public_url;
        let when = rfc3339(record.destroy_after);
        let common = format!(
            "{name} was de-provisioned in Work-books: nobody can reach its books any more (members, API keys and staff alike).\n\n\
             Its data, its backups and every copy of its key will be destroyed after {when}. Until then an owner can cancel this \
             (POST /api/v1/companies/{id}/deprovision/cancel).\n",
            id = record.company_id
        );
        for to in owners {
            let body = if to.eq_ignore_ascii_case(asker) {
                format!(
                    "{common}\nOnce it is destroyed, a signed certificate of destruction is kept for you. Fetch it with this token \
                     (keep it; it is not shown again):\n\n  {token}\n\n\
                     curl -H 'X-Certificate-Token: {token}' {base}/api/v1/destruction-certificates/{cert} > certificate.json\n\n\
                     It will be signed by this deployment, whose key is:\n\n  {deployment}\n\n\
                     Check it offline with: workbooks certificate verify certificate.json --deployment-key {deployment}\n",
                    cert = record.certificate_id,
                    token = token.expose(),
                    deployment = self.node_certifier().public_key_hex(),
                )
            } else {
                common.clone()
            };
            let message = Message {
                to: to.clone(),
                subject: format!("{name} was de-provisioned in Work-books"),
                body,
            };
            if let Err(e) = mail::queue(self, &message).await {
                tracing::warn!(error = %e, "cannot queue a de-provisioning notice");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn stages_follow_the_store() {
        let at = datetime!(2026-01-01 00:00 UTC);
        let record = Deprovisioning {
            company_id: "c".into(),
            deprovisioned_at: at,
            deprovisioned_by: "user:u".into(),
            destroy_after: at + time::Duration::days(30),
            certificate_id: "x".into(),
            certificate_token_hash: "h".into(),
            destruction_started_at: None,
            steps: vec![],
            destroyed_at: None,
            certificate: None,
        };
        assert_eq!(stage_of(CompanyStatus::Active, None), Stage::Active);
        assert_eq!(
            stage_of(CompanyStatus::Deprovisioned, Some(&record)),
            Stage::Deprovisioned {
                destroy_after: record.destroy_after
            }
        );
        let done = Deprovisioning {
            destroyed_at: Some(at),
            ..record
        };
        assert_eq!(
            stage_of(CompanyStatus::Deprovisioned, Some(&done)),
            Stage::Destroyed
        );
        assert_eq!(stage_of(CompanyStatus::Destroyed, None), Stage::Destroyed);
    }
}
