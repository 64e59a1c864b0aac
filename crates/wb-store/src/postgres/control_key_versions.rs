//! `KeyVersionStore` for the PostgreSQL control database: the same contract
//! as the SQLCipher backend. A rotation locks the company's row first, so
//! two nodes rotating at once are serialized and the second is refused.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::{Row, Transaction};

use super::control::{append_audit, begin, bytea, int8, parse_ts, text, PgControl};
use crate::key_versions::*;
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

fn version(v: i32) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("bad key version {v}")))
}

fn int4(v: &(dyn tokio_postgres::types::ToSql + Sync)) -> super::control::P<'_> {
    (v, tokio_postgres::types::Type::INT4)
}

fn made_at(made: Option<i64>, created: &str) -> Result<OffsetDateTime, StoreError> {
    match made {
        Some(ms) => from_unix_millis(ms),
        None => parse_ts(created),
    }
}

fn retired_row(r: &Row) -> Result<RetiredKey, StoreError> {
    Ok(RetiredKey {
        version: version(r.try_get(0)?)?,
        created_at: from_unix_millis(r.try_get(1)?)?,
        retired_at: from_unix_millis(r.try_get(2)?)?,
        destroyed_at: r
            .try_get::<_, Option<i64>>(3)?
            .map(from_unix_millis)
            .transpose()?,
        wrapped_dek: r.try_get(4)?,
    })
}

async fn insert_retired(
    tx: &Transaction<'_>,
    company_id: &str,
    key: &RetiredKey,
) -> Result<(), StoreError> {
    let version_n = i32::try_from(key.version)
        .map_err(|_| StoreError::Conflict(format!("bad key version {}", key.version)))?;
    tx.execute_typed(
        "INSERT INTO company_key_versions
             (id, company_id, version, wrapped_dek, created_at, retired_at, destroyed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO NOTHING",
        &[
            text(&retired_key_id(company_id, key.version)),
            text(&company_id),
            int4(&version_n),
            bytea(&key.wrapped_dek),
            int8(&unix_millis(key.created_at)),
            int8(&unix_millis(key.retired_at)),
            int8(&key.destroyed_at.map(unix_millis)),
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl KeyVersionStore for PgControl {
    async fn rotate_company_key(
        &self,
        company_id: &str,
        expected_current: u32,
        wrapped: &[u8],
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<u32, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let Some(row) = tx
            .query_typed_opt(
                "SELECT status, key_version, wrapped_dek, key_created_at, created_at
                 FROM companies WHERE id = $1 FOR UPDATE",
                &[text(&company_id)],
            )
            .await?
        else {
            return Err(StoreError::NotFound("company"));
        };
        let status: String = row.try_get(0)?;
        let current = version(row.try_get(1)?)?;
        if status != "active" {
            return Err(StoreError::Conflict("the company is not active".into()));
        }
        if current != expected_current {
            return Err(StoreError::Conflict(format!(
                "the company's key is at version {current} already"
            )));
        }
        let created: String = row.try_get(4)?;
        insert_retired(
            &tx,
            company_id,
            &RetiredKey {
                version: current,
                created_at: made_at(row.try_get(3)?, &created)?,
                retired_at: at,
                destroyed_at: None,
                wrapped_dek: row.try_get(2)?,
            },
        )
        .await?;
        let next = current + 1;
        let next_n = i32::try_from(next)
            .map_err(|_| StoreError::Conflict("the key has too many versions".into()))?;
        tx.execute_typed(
            "UPDATE companies SET wrapped_dek = $1, key_version = $2, key_created_at = $3
             WHERE id = $4",
            &[
                bytea(&wrapped),
                int4(&next_n),
                int8(&unix_millis(at)),
                text(&company_id),
            ],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn company_key_versions(
        &self,
        company_id: &str,
    ) -> Result<Option<CompanyKeyVersions>, StoreError> {
        let Some(row) = self
            .query_opt(
                "SELECT key_version, wrapped_dek, key_created_at, created_at
                 FROM companies WHERE id = $1",
                &[text(&company_id)],
            )
            .await?
        else {
            return Ok(None);
        };
        let retired = self
            .query(
                "SELECT version, created_at, retired_at, destroyed_at, wrapped_dek
                 FROM company_key_versions WHERE company_id = $1 ORDER BY version DESC",
                &[text(&company_id)],
            )
            .await?
            .iter()
            .map(retired_row)
            .collect::<Result<Vec<_>, _>>()?;
        let created: String = row.try_get(3)?;
        Ok(Some(CompanyKeyVersions {
            current_version: version(row.try_get(0)?)?,
            current_created_at: made_at(row.try_get(2)?, &created)?,
            current_wrapped: row.try_get(1)?,
            retired,
        }))
    }

    async fn destroy_key_version(
        &self,
        company_id: &str,
        version_n: u32,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let id = retired_key_id(company_id, version_n);
        let Some(row) = tx
            .query_typed_opt(
                "SELECT destroyed_at FROM company_key_versions WHERE id = $1 FOR UPDATE",
                &[text(&id)],
            )
            .await?
        else {
            return Err(StoreError::Conflict(format!(
                "version {version_n} is not a retired version of the company's key"
            )));
        };
        if row.try_get::<_, Option<i64>>(0)?.is_some() {
            return Ok(());
        }
        tx.execute_typed(
            "UPDATE company_key_versions SET wrapped_dek = ''::bytea, destroyed_at = $1
             WHERE id = $2",
            &[int8(&unix_millis(at)), text(&id)],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn restore_key_versions(
        &self,
        company_id: &str,
        current_version: u32,
        current_created_at: OffsetDateTime,
        retired: &[RetiredKey],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let current_n = i32::try_from(current_version)
            .map_err(|_| StoreError::Conflict("bad key version".into()))?;
        let changed = tx
            .execute_typed(
                "UPDATE companies SET key_version = $1, key_created_at = $2 WHERE id = $3",
                &[
                    int4(&current_n),
                    int8(&unix_millis(current_created_at)),
                    text(&company_id),
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound("company"));
        }
        for key in retired {
            insert_retired(&tx, company_id, key).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn rotated_key_versions(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.query(
            "SELECT id, key_version FROM companies
             WHERE key_version > 1 AND status = 'active' ORDER BY id",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, version(r.try_get(1)?)?)))
        .collect()
    }

    async fn companies_with_retired_keys(&self) -> Result<Vec<String>, StoreError> {
        self.query(
            "SELECT DISTINCT company_id FROM company_key_versions
             WHERE destroyed_at IS NULL ORDER BY company_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }
}
