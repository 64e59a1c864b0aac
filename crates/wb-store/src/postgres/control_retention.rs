//! `RetentionRuleStore` for the PostgreSQL control database: the same
//! contract as the SQLCipher backend.

use async_trait::async_trait;
use tokio_postgres::types::Type;
use wb_core::data_retention::DataRetention;

use super::control::{append_audit, begin, int8, text, PgControl};
use crate::model::AuditEvent;
use crate::retention_rules::{years, RetentionRuleStore};
use crate::{unix_millis, StoreError};

#[async_trait]
impl RetentionRuleStore for PgControl {
    async fn company_retention(
        &self,
        company_id: &str,
    ) -> Result<Option<DataRetention>, StoreError> {
        let Some(r) = self
            .query_opt(
                "SELECT entries_years, attachments_years, audit_years, exports_days
                 FROM company_retention WHERE company_id = $1",
                &[text(&company_id)],
            )
            .await?
        else {
            return Ok(None);
        };
        let get = |i: usize, what: &str| -> Result<u32, StoreError> {
            years(i64::from(r.try_get::<_, i32>(i)?), what)
        };
        Ok(Some(DataRetention {
            entries_years: get(0, "entries_years")?,
            attachments_years: get(1, "attachments_years")?,
            audit_years: get(2, "audit_years")?,
            exports_days: get(3, "exports_days")?,
        }))
    }

    async fn put_company_retention(
        &self,
        company_id: &str,
        rules: &DataRetention,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let int = |v: u32| {
            i32::try_from(v).map_err(|_| StoreError::Conflict(format!("retention value {v}")))
        };
        let (e, a, au, x) = (
            int(rules.entries_years)?,
            int(rules.attachments_years)?,
            int(rules.audit_years)?,
            int(rules.exports_days)?,
        );
        let at = unix_millis(audit.at);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        tx.execute_typed(
            "INSERT INTO company_retention (company_id, entries_years, attachments_years,
                 audit_years, exports_days, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (company_id) DO UPDATE SET
                 entries_years = EXCLUDED.entries_years,
                 attachments_years = EXCLUDED.attachments_years,
                 audit_years = EXCLUDED.audit_years,
                 exports_days = EXCLUDED.exports_days,
                 updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
            &[
                text(&company_id),
                (&e, Type::INT4),
                (&a, Type::INT4),
                (&au, Type::INT4),
                (&x, Type::INT4),
                int8(&at),
                text(&audit.actor.id),
            ],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
