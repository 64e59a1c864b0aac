//! A company's end in the control store: its de-provisioning, the steps of
//! its destruction and the certificate. The rules (who may, when, in which
//! order) are `wb_core::lifecycle`'s and the callers'; this module
//! guarantees that each change commits with its audit event, that a company
//! is de-provisioned or brought back only from the state the caller expects
//! (two nodes at once: one wins, the other gets `Conflict`), and that the
//! lifecycle row outlives the company: it is the proof.

use async_trait::async_trait;
use time::OffsetDateTime;
use wb_core::lifecycle::StepRecord;

use crate::model::AuditEvent;
use crate::StoreError;

/// A de-provisioned (or destroyed) company's record.
#[derive(Clone, PartialEq, Eq)]
pub struct Deprovisioning {
    pub company_id: String,
    pub deprovisioned_at: OffsetDateTime,
    /// The actor id of the owner who asked (`user:<id>`).
    pub deprovisioned_by: String,
    pub destroy_after: OffsetDateTime,
    /// Named when the company is de-provisioned, so the owner's email can
    /// point at the certificate before it exists.
    pub certificate_id: String,
    /// SHA-256 (hex) of the token that fetches the certificate.
    pub certificate_token_hash: String,
    /// When the destruction claimed the company (no cancel from then on).
    pub destruction_started_at: Option<OffsetDateTime>,
    /// The destruction's steps done so far, in the order done.
    pub steps: Vec<StepRecord>,
    pub destroyed_at: Option<OffsetDateTime>,
    /// The signed certificate of destruction, once destroyed.
    pub certificate: Option<String>,
}

impl std::fmt::Debug for Deprovisioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deprovisioning")
            .field("company_id", &self.company_id)
            .field("deprovisioned_at", &self.deprovisioned_at)
            .field("destroy_after", &self.destroy_after)
            .field("certificate_id", &self.certificate_id)
            .field("steps", &self.steps.len())
            .field("destroyed_at", &self.destroyed_at)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Marks an active company de-provisioned, deletes its pending
    /// invitations and ends every access grant
    /// to it not yet ended (revoked by `deprovisioning.deprovisioned_by`),
    /// with `audit`, in one transaction. `Conflict` if the company is not
    /// active. Returns the ids of the grants it ended.
    async fn deprovision_company(
        &self,
        deprovisioning: &Deprovisioning,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError>;

    /// Records the de-provisioning of a company recorded de-provisioned
    /// already (disaster recovery: the company comes back closed, then gets
    /// its grace period back), with `audit`. `Conflict` unless the company
    /// is de-provisioned with no lifecycle row yet.
    async fn restore_deprovisioning(
        &self,
        deprovisioning: &Deprovisioning,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// Claims a de-provisioned company for its destruction (idempotent):
    /// from then on a cancel is refused, so a cancel can never race a step
    /// that is already deleting. `Conflict` if the company is not
    /// de-provisioned (a cancel won) or is destroyed.
    async fn begin_destruction(
        &self,
        company_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Makes a de-provisioned company active again and forgets its
    /// de-provisioning, with `audit`. `Conflict` if the company is not
    /// de-provisioned or its destruction has begun.
    async fn cancel_deprovisioning(
        &self,
        company_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    async fn deprovisioning(&self, company_id: &str) -> Result<Option<Deprovisioning>, StoreError>;

    async fn deprovisioning_by_certificate(
        &self,
        certificate_id: &str,
    ) -> Result<Option<Deprovisioning>, StoreError>;

    /// Companies whose destruction is due at `now` and not finished, the
    /// longest waiting first (at most `limit`).
    async fn due_destructions(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Deprovisioning>, StoreError>;

    /// Records one step of a destruction as done, with `audit`. A step
    /// already recorded is not recorded twice (a resumed destruction that
    /// repeats a step keeps the first record).
    async fn record_destruction_step(
        &self,
        company_id: &str,
        step: &StepRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The key step: the company's wrapped key is erased from the control
    /// store in the same transaction that records the step.
    async fn shred_company_key(
        &self,
        company_id: &str,
        step: &StepRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The end: the company is marked destroyed and its name erased, its memberships, API keys,
    /// invitations, policy and export schedule are deleted, and the
    /// certificate is kept with `audit` (whose detail carries it).
    async fn finish_destruction(
        &self,
        company_id: &str,
        destroyed_at: OffsetDateTime,
        certificate: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
}

/// The steps column (a JSON array).
pub(crate) fn parse_steps(text: &str) -> Result<Vec<StepRecord>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("bad destruction steps: {e}")))
}

/// `text`'s steps with `step` added, or None when it is there already.
pub(crate) fn with_step(text: &str, step: &StepRecord) -> Result<Option<String>, StoreError> {
    let mut steps = parse_steps(text)?;
    if steps.iter().any(|s| s.step == step.step) {
        return Ok(None);
    }
    steps.push(step.clone());
    serde_json::to_string(&steps)
        .map(Some)
        .map_err(|e| StoreError::Backend(e.to_string()))
}
