//! Destroying a de-provisioned company once its grace period is over (or at
//! once, by the operator's `workbooks company destroy --confirm`): the
//! steps of `wb_core::lifecycle::DestructionStep` in their order, each
//! recorded in the control store with what it removed before the next
//! begins, so a destruction stopped midway (a crash, a failing object
//! store) resumes where it stopped, on any node. The key goes last but one;
//! the signed certificate closes it.
//!
//! A background job (one node at a time, by lease) destroys what is due;
//! one company failing is recorded, alerts, and the others go on.

pub mod certificate;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_core::lifecycle::{DestructionStep, LifecycleError, StepRecord};
use wb_core::Action;
use wb_store::{Actor, AuditEvent, Deprovisioning, Outcome, StoreError};

use crate::dto::rfc3339;
use crate::error::{ServiceError, ServiceResult};
use crate::lifecycle::{lifecycle_error, stage_of};
use crate::mail;
use crate::mailer::Message;
use crate::platform::Platform;
use certificate::{CertificateBody, FORMAT};

/// How often the job looks for destructions that are due.
pub const DESTRUCTION_EVERY: Duration = Duration::from_secs(60);
const LEASE: &str = "destruction";
const JOB: &str = "destruction";
/// The most companies destroyed in one round.
const PER_ROUND: u32 = 20;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DestructionRound {
    pub destroyed: usize,
    pub failed: usize,
}

impl Platform {
    /// Destroys every company whose grace period is over.
    pub async fn destroy_due_companies(&self) -> ServiceResult<DestructionRound> {
        let mut round = DestructionRound::default();
        let due = self.control.due_destructions(self.now(), PER_ROUND).await?;
        for record in due {
            let id = record.company_id.clone();
            let unit = crate::runner::unit(self, JOB, &id, Some(&id), async {
                self.destroy_company(&id, false, Actor::system("destruction"))
                    .await
            })
            .await;
            match unit {
                Ok(Ok(_)) => round.destroyed += 1,
                Ok(Err(e)) => {
                    tracing::error!(company = %id, error = %e, "a company's destruction failed; it resumes next round");
                    self.alert_destruction_failed(&id, &e.to_string()).await;
                    round.failed += 1;
                }
                Err(_) => round.failed += 1,
            }
        }
        Ok(round)
    }

    /// Destroys a de-provisioned company: due after its grace period, or at
    /// once with `override_grace` (the operator). Resumes a destruction that
    /// stopped midway; answers the certificate of one already finished.
    pub async fn destroy_company(
        &self,
        company_id: &str,
        override_grace: bool,
        actor: Actor,
    ) -> ServiceResult<String> {
        let company = self
            .control
            .company(company_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("company"))?;
        let record = self.control.deprovisioning(company_id).await?;
        if let Some(certificate) = record.as_ref().and_then(|r| r.certificate.clone()) {
            return Ok(certificate);
        }
        let now = self.now();
        stage_of(company.status, record.as_ref())
            .destroy(now, override_grace)
            .map_err(lifecycle_error)?;
        let Some(mut record) = record else {
            return Err(lifecycle_error(LifecycleError::NotDeprovisioned));
        };
        // Claimed first: from now on a cancel is refused, so it can never
        // bring back a company whose files a step is deleting.
        match self.control.begin_destruction(company_id, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(lifecycle_error(LifecycleError::NotDeprovisioned))
            }
            Err(e) => return Err(e.into()),
        }
        let asker_email = self.asker_email(&record).await;
        while let Some(step) =
            DestructionStep::next(&record.steps.iter().map(|s| s.step).collect::<Vec<_>>())
        {
            let removed = steps::take(self, company_id, step).await?;
            let done = StepRecord {
                step,
                items: removed.items,
                bytes: removed.bytes,
                finished_at: rfc3339(self.now()),
                names: removed.names,
            };
            let audit = AuditEvent {
                at: self.now(),
                actor: actor.clone(),
                company_id: Some(company_id.to_string()),
                action: Action::CompanyDestroyStep,
                target: Some(format!("company:{company_id}")),
                outcome: Outcome::Success,
                detail: Some(format!(
                    "{}: {} removed, {} bytes",
                    step.as_str(),
                    done.items,
                    done.bytes
                )),
            };
            if step == DestructionStep::Keys {
                self.control
                    .shred_company_key(company_id, &done, &audit)
                    .await?;
            } else {
                self.control
                    .record_destruction_step(company_id, &done, &audit)
                    .await?;
            }
            record.steps.push(done);
        }
        // A job that held the company's store from before the first step
        // may have put something under its prefix since: swept once more
        // (sealed with a key that no longer exists, but not left behind).
        steps::sweep(self, company_id).await?;
        let certificate = self.certify(&company.name, &record, override_grace)?;
        let audit = AuditEvent {
            at: self.now(),
            actor,
            company_id: Some(company_id.to_string()),
            action: Action::CompanyDestroyed,
            target: Some(format!("certificate:{}", record.certificate_id)),
            outcome: Outcome::Success,
            detail: Some(certificate.clone()),
        };
        match self
            .control
            .finish_destruction(company_id, self.now(), &certificate, &audit)
            .await
        {
            Ok(()) => {}
            // Another node finished first: its certificate is the one.
            Err(StoreError::Conflict(_)) => {
                return self
                    .control
                    .deprovisioning(company_id)
                    .await?
                    .and_then(|r| r.certificate)
                    .ok_or_else(ServiceError::internal);
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(to) = asker_email {
            let message = Message {
                to,
                subject: "Your company was destroyed in Work-books".into(),
                body: format!(
                    "Every copy of the company's data and of its key was destroyed. The signed certificate of destruction {} can be fetched with the token you were sent at de-provisioning.\n",
                    record.certificate_id
                ),
            };
            if let Err(e) = mail::queue(self, &message).await {
                tracing::warn!(error = %e, "cannot queue a destruction notice");
            }
        }
        Ok(certificate)
    }

    fn certify(
        &self,
        name: &str,
        record: &Deprovisioning,
        override_grace: bool,
    ) -> ServiceResult<String> {
        let body = CertificateBody {
            format: FORMAT.into(),
            id: record.certificate_id.clone(),
            company_id: record.company_id.clone(),
            company_name_sha256: wb_crypto::sha256_hex(name.as_bytes()),
            deprovisioned_at: rfc3339(record.deprovisioned_at),
            deprovisioned_by: record.deprovisioned_by.clone(),
            destroy_after: rfc3339(record.destroy_after),
            destroyed_at: rfc3339(self.now()),
            grace_overridden: override_grace && self.now() < record.destroy_after,
            node_id: self.node_id.clone(),
            steps: record.steps.clone(),
            total_items: record.steps.iter().map(|s| s.items).sum(),
            total_bytes: record.steps.iter().map(|s| s.bytes).sum(),
        };
        let certifier = self.node_certifier();
        let node_certificate = certifier.certify(&self.node_id, &self.node_key.public_key_hex());
        let signed = certificate::sign(
            body,
            &self.node_key,
            &node_certificate,
            certifier.public_key_hex(),
        )
        .map_err(|e| anyhow::anyhow!("signing the certificate: {e}"))?;
        Ok(serde_json::to_string_pretty(&signed).map_err(anyhow::Error::from)?)
    }

    async fn asker_email(&self, record: &Deprovisioning) -> Option<String> {
        let user_id = record.deprovisioned_by.strip_prefix("user:")?;
        self.control
            .user(user_id)
            .await
            .ok()
            .flatten()
            .map(|u| u.email)
    }

    async fn alert_destruction_failed(&self, company_id: &str, error: &str) {
        let now = self.now();
        let draft = wb_core::monitor::AlertDraft {
            rule: DESTRUCTION_FAILED_RULE,
            severity: wb_core::monitor::Severity::High,
            dedupe_key: format!("{DESTRUCTION_FAILED_RULE}:{company_id}"),
            title: "A company's destruction stopped midway".into(),
            detail: format!(
                "the destruction of company {company_id} failed ({error}); it resumes on the next round from the step that failed"
            ),
            company_id: Some(company_id.to_string()),
            at: now,
        };
        if let Err(e) = self.alerts.raise(&draft, now).await {
            tracing::error!(error = %e, "cannot raise the destruction-failed alert");
        }
    }
}

/// The alert raised when a destruction fails (it resumes next round).
pub const DESTRUCTION_FAILED_RULE: &str = "destruction-failed";

/// Destroys what is due every `every`, on the node holding the lease.
pub fn spawn(
    platform: Arc<Platform>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if crate::runner::hold_lease(&*platform.control, &platform.node_id, LEASE).await {
                let round = platform.destroy_due_companies();
                match crate::runner::unit(&platform, JOB, "round", None, round).await {
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "destruction round failed; retrying"),
                }
            }
            if crate::runner::pause(&mut stop, every).await {
                return;
            }
        }
    })
}
