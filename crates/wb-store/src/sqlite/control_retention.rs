//! `RetentionRuleStore` for the SQLCipher control database.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use wb_core::data_retention::DataRetention;

use super::control::SqliteControl;
use crate::model::AuditEvent;
use crate::retention_rules::{years, RetentionRuleStore};
use crate::{unix_millis, StoreError};

#[async_trait]
impl RetentionRuleStore for SqliteControl {
    async fn company_retention(
        &self,
        company_id: &str,
    ) -> Result<Option<DataRetention>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                let row: Option<(i64, i64, i64, i64)> = conn
                    .query_row(
                        "SELECT entries_years, attachments_years, audit_years, exports_days
                         FROM company_retention WHERE company_id = ?1",
                        [company_id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()?;
                row.map(|(e, a, au, x)| {
                    Ok(DataRetention {
                        entries_years: years(e, "entries_years")?,
                        attachments_years: years(a, "attachments_years")?,
                        audit_years: years(au, "audit_years")?,
                        exports_days: years(x, "exports_days")?,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn put_company_retention(
        &self,
        company_id: &str,
        rules: &DataRetention,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (company_id, r) = (company_id.to_string(), *rules);
        let (at, by) = (unix_millis(audit.at), audit.actor.id.clone());
        self.write(Some(audit), move |tx| {
            tx.execute(
                "INSERT INTO company_retention (company_id, entries_years, attachments_years,
                     audit_years, exports_days, updated_at, updated_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (company_id) DO UPDATE SET
                     entries_years = excluded.entries_years,
                     attachments_years = excluded.attachments_years,
                     audit_years = excluded.audit_years,
                     exports_days = excluded.exports_days,
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                params![
                    company_id,
                    r.entries_years,
                    r.attachments_years,
                    r.audit_years,
                    r.exports_days,
                    at,
                    by
                ],
            )?;
            Ok(())
        })
        .await
    }
}
