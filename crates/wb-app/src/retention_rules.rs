//! A company's own retention rules: read and changed by its owners and
//! admins through the door, never below the platform's statutory minimum.
//! Every change, refusals included, is on record with the rules before and
//! after. (What the rules make go is the purge's business.)

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wb_core::data_retention::{DataRetention, StatutoryMinimum};
use wb_core::Action;
use wb_store::{AuditEvent, Outcome};

use crate::access::CompanyScope;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;

/// The rules as the API shows them.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct RetentionView {
    pub entries_years: u32,
    pub attachments_years: u32,
    pub audit_years: u32,
    pub exports_days: u32,
    /// The platform's minimum for entries and the audit trail, in years.
    pub statutory_minimum_years: u32,
}

/// A change: fields left out keep their value.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequest {
    pub entries_years: Option<u32>,
    pub attachments_years: Option<u32>,
    pub audit_years: Option<u32>,
    pub exports_days: Option<u32>,
}

fn describe(r: &DataRetention) -> String {
    format!(
        "entries {} y, attachments {} y, audit {} y, exports {} d",
        r.entries_years, r.attachments_years, r.audit_years, r.exports_days
    )
}

impl Platform {
    pub fn set_statutory_minimum(&self, minimum: StatutoryMinimum) {
        if let Ok(mut m) = self.statutory_minimum.write() {
            *m = minimum;
        }
    }

    pub fn statutory_minimum(&self) -> StatutoryMinimum {
        self.statutory_minimum
            .read()
            .map(|m| *m)
            .unwrap_or_default()
    }

    /// A company's rules in force (the defaults when it set none), never
    /// below today's statutory minimum: rules set before the operator raised
    /// it are read as the minimum, and a change to another field still passes.
    pub async fn company_retention(&self, company_id: &str) -> ServiceResult<DataRetention> {
        Ok(self
            .control
            .company_retention(company_id)
            .await?
            .unwrap_or_default()
            .at_least(self.statutory_minimum()))
    }

    /// Deletes the company's stored exports older than its rules keep them,
    /// recording how many went (`export.expire`). Returns the ids deleted.
    pub async fn expire_exports(&self, company_id: &str) -> ServiceResult<Vec<String>> {
        let rules = self.company_retention(company_id).await?;
        let gone = crate::exports::storage::expire(self, company_id, &rules, self.now()).await?;
        if !gone.is_empty() {
            self.control
                .audit(&AuditEvent {
                    at: self.now(),
                    actor: wb_store::Actor::system("retention"),
                    company_id: Some(company_id.to_string()),
                    action: Action::ExportExpire,
                    target: Some(format!("company:{company_id}")),
                    outcome: Outcome::Success,
                    detail: Some(format!(
                        "{} exports older than {} days deleted: {}",
                        gone.len(),
                        rules.exports_days,
                        gone.join(", ")
                    )),
                })
                .await?;
        }
        Ok(gone)
    }

    pub(crate) fn retention_view(&self, rules: &DataRetention) -> RetentionView {
        RetentionView {
            entries_years: rules.entries_years,
            attachments_years: rules.attachments_years,
            audit_years: rules.audit_years,
            exports_days: rules.exports_days,
            statutory_minimum_years: self.statutory_minimum().in_years(),
        }
    }
}

impl CompanyScope {
    pub async fn retention(&self, platform: &Platform) -> ServiceResult<RetentionView> {
        let rules = platform.company_retention(self.company_id()).await?;
        Ok(platform.retention_view(&rules))
    }

    /// Applies `change`; a refusal names the rule and is recorded with the
    /// rules as they stay.
    pub async fn set_retention(
        &self,
        platform: &Platform,
        change: RetentionRequest,
    ) -> ServiceResult<RetentionView> {
        let before = platform.company_retention(self.company_id()).await?;
        let after = DataRetention {
            entries_years: change.entries_years.unwrap_or(before.entries_years),
            attachments_years: change.attachments_years.unwrap_or(before.attachments_years),
            audit_years: change.audit_years.unwrap_or(before.audit_years),
            exports_days: change.exports_days.unwrap_or(before.exports_days),
        };
        let event = |outcome, detail: String| AuditEvent {
            at: platform.now(),
            actor: self.actor().clone(),
            company_id: Some(self.company_id().to_string()),
            action: Action::RetentionSet,
            target: None,
            outcome,
            detail: Some(detail),
        };
        if let Err(refused) = after.validate(platform.statutory_minimum()) {
            let slug = match refused {
                wb_core::data_retention::RetentionError::BelowStatutoryMinimum { .. } => {
                    "below-statutory-minimum"
                }
                _ => "invalid-retention",
            };
            self.record(
                platform,
                event(
                    Outcome::Failure,
                    format!(
                        "refused by rule {}: {refused}; kept: {}",
                        refused.rule(),
                        describe(&before)
                    ),
                ),
            )
            .await?;
            return Err(ServiceError::unprocessable(slug, refused.to_string()));
        }
        let audit = event(
            Outcome::Success,
            format!("before: {}; after: {}", describe(&before), describe(&after)),
        );
        platform
            .control
            .put_company_retention(self.company_id(), &after, &audit)
            .await?;
        Ok(platform.retention_view(&after))
    }
}
