//! A company's own retention rules in the control store. Which rules are
//! allowed is `wb_core::data_retention`'s and the caller's decision; this
//! module keeps them, each change with its audit event.

use async_trait::async_trait;
use wb_core::data_retention::DataRetention;

use crate::model::AuditEvent;
use crate::StoreError;

#[async_trait]
pub trait RetentionRuleStore: Send + Sync {
    /// The company's rules; None when it never set any (the defaults apply).
    async fn company_retention(
        &self,
        company_id: &str,
    ) -> Result<Option<DataRetention>, StoreError>;

    /// Sets the company's rules, with `audit`, in one transaction.
    async fn put_company_retention(
        &self,
        company_id: &str,
        rules: &DataRetention,
        audit: &AuditEvent,
    ) -> Result<(), StoreError>;
}

pub(crate) fn years(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("retention {what} {v}")))
}
