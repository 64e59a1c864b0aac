//! `KeyVersionStore` for the SQLCipher control database.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction};
use time::OffsetDateTime;

use super::conn::parse_ts;
use super::control::SqliteControl;
use crate::key_versions::*;
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

fn version(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("bad key version {v}")))
}

/// (status, key_version) of a company.
fn current(tx: &Transaction<'_>, company_id: &str) -> Result<Option<(String, u32)>, StoreError> {
    tx.query_row(
        "SELECT status, key_version FROM companies WHERE id = ?1",
        [company_id],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )
    .optional()?
    .map(|(s, v)| Ok((s, version(v)?)))
    .transpose()
}

fn insert_retired(
    tx: &Transaction<'_>,
    company_id: &str,
    key: &RetiredKey,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO company_key_versions
             (id, company_id, version, wrapped_dek, created_at, retired_at, destroyed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO NOTHING",
        params![
            retired_key_id(company_id, key.version),
            company_id,
            i64::from(key.version),
            key.wrapped_dek,
            unix_millis(key.created_at),
            unix_millis(key.retired_at),
            key.destroyed_at.map(unix_millis),
        ],
    )?;
    Ok(())
}

#[async_trait]
impl KeyVersionStore for SqliteControl {
    async fn rotate_company_key(
        &self,
        company_id: &str,
        expected_current: u32,
        wrapped: &[u8],
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<u32, StoreError> {
        let (company_id, wrapped) = (company_id.to_string(), wrapped.to_vec());
        self.write(Some(audit), move |tx| {
            match current(tx, &company_id)? {
                None => return Err(StoreError::NotFound("company")),
                Some((status, _)) if status != "active" => {
                    return Err(StoreError::Conflict("the company is not active".into()))
                }
                Some((_, v)) if v != expected_current => {
                    return Err(StoreError::Conflict(format!(
                        "the company's key is at version {v} already"
                    )))
                }
                Some(_) => {}
            }
            let (old, made, created): (Vec<u8>, Option<i64>, String) = tx.query_row(
                "SELECT wrapped_dek, key_created_at, created_at FROM companies WHERE id = ?1",
                [&company_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let made = match made {
                Some(ms) => from_unix_millis(ms)?,
                None => parse_ts(&created)?,
            };
            insert_retired(
                tx,
                &company_id,
                &RetiredKey {
                    version: expected_current,
                    created_at: made,
                    retired_at: at,
                    destroyed_at: None,
                    wrapped_dek: old,
                },
            )?;
            let next = expected_current + 1;
            tx.execute(
                "UPDATE companies SET wrapped_dek = ?1, key_version = ?2, key_created_at = ?3
                 WHERE id = ?4",
                params![wrapped, i64::from(next), unix_millis(at), company_id],
            )?;
            Ok(next)
        })
        .await
    }

    async fn company_key_versions(
        &self,
        company_id: &str,
    ) -> Result<Option<CompanyKeyVersions>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                let Some((v, wrapped, made, created)) = conn
                    .query_row(
                        "SELECT key_version, wrapped_dek, key_created_at, created_at
                         FROM companies WHERE id = ?1",
                        [&company_id],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, Vec<u8>>(1)?,
                                r.get::<_, Option<i64>>(2)?,
                                r.get::<_, String>(3)?,
                            ))
                        },
                    )
                    .optional()?
                else {
                    return Ok(None);
                };
                let mut stmt = conn.prepare(
                    "SELECT version, created_at, retired_at, destroyed_at, wrapped_dek
                     FROM company_key_versions WHERE company_id = ?1 ORDER BY version DESC",
                )?;
                let rows = stmt.query_map([&company_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                    ))
                })?;
                let mut retired = Vec::new();
                for row in rows {
                    let (version_n, created_at, retired_at, destroyed_at, wrapped_dek) = row?;
                    retired.push(RetiredKey {
                        version: version(version_n)?,
                        created_at: from_unix_millis(created_at)?,
                        retired_at: from_unix_millis(retired_at)?,
                        destroyed_at: destroyed_at.map(from_unix_millis).transpose()?,
                        wrapped_dek,
                    });
                }
                Ok(Some(CompanyKeyVersions {
                    current_version: version(v)?,
                    current_created_at: match made {
                        Some(ms) => from_unix_millis(ms)?,
                        None => parse_ts(&created)?,
                    },
                    current_wrapped: wrapped,
                    retired,
                }))
            })
            .await
    }

    async fn destroy_key_version(
        &self,
        company_id: &str,
        version_n: u32,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let company_id = company_id.to_string();
        let at = unix_millis(at);
        // The audit event is written only when something was destroyed: the
        // closure decides, so the write goes without the generic audit.
        let audit = audit.clone();
        self.write(None, move |tx| {
            let destroyed: Option<Option<i64>> = tx
                .query_row(
                    "SELECT destroyed_at FROM company_key_versions WHERE id = ?1",
                    [retired_key_id(&company_id, version_n)],
                    |r| r.get(0),
                )
                .optional()?;
            match destroyed {
                None => Err(StoreError::Conflict(format!(
                    "version {version_n} is not a retired version of the company's key"
                ))),
                Some(Some(_)) => Ok(()),
                Some(None) => {
                    // The old bytes may stay in a free page until it is
                    // reused; every page is encrypted with the control key,
                    // and they were wrapped by the master key besides.
                    tx.execute(
                        "UPDATE company_key_versions SET wrapped_dek = X'', destroyed_at = ?1
                         WHERE id = ?2",
                        params![at, retired_key_id(&company_id, version_n)],
                    )?;
                    super::control::append_audit(tx, &audit)
                }
            }
        })
        .await
    }

    async fn restore_key_versions(
        &self,
        company_id: &str,
        current_version: u32,
        current_created_at: OffsetDateTime,
        retired: &[RetiredKey],
    ) -> Result<(), StoreError> {
        let (company_id, retired) = (company_id.to_string(), retired.to_vec());
        self.write(None, move |tx| {
            let changed = tx.execute(
                "UPDATE companies SET key_version = ?1, key_created_at = ?2 WHERE id = ?3",
                params![
                    i64::from(current_version),
                    unix_millis(current_created_at),
                    company_id
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound("company"));
            }
            for key in &retired {
                insert_retired(tx, &company_id, key)?;
            }
            Ok(())
        })
        .await
    }

    async fn rotated_key_versions(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT id, key_version FROM companies
                     WHERE key_version > 1 AND status = 'active' ORDER BY id",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, v) = row?;
                    out.push((id, version(v)?));
                }
                Ok(out)
            })
            .await
    }

    async fn companies_with_retired_keys(&self) -> Result<Vec<String>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT DISTINCT company_id FROM company_key_versions
                     WHERE destroyed_at IS NULL ORDER BY company_id",
                )?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await
    }
}
