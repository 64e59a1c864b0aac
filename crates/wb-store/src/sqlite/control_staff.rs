//! `StaffStore` for the SQLCipher control database.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use time::OffsetDateTime;
use wb_core::grants::Grant;

use super::control::SqliteControl;
use crate::model::AuditEvent;
use crate::staff::*;
use crate::{from_unix_millis, unix_millis, StoreError};

const STAFF_COLUMNS: &str =
    "id, email, passphrase_hash, roles, sealed_totp, totp_last_step, created_at, disabled_at";
const SESSION_COLUMNS: &str =
    "token_hash, staff_id, created_at, last_seen_at, expires_at, ended_at, client, user_agent";

type Parsed<T> = rusqlite::Result<Result<T, StoreError>>;

fn staff_row(r: &Row<'_>) -> Parsed<StaffRecord> {
    let id: String = r.get(0)?;
    let email: String = r.get(1)?;
    let passphrase_hash: String = r.get(2)?;
    let roles: String = r.get(3)?;
    let sealed_totp: Vec<u8> = r.get(4)?;
    let step: i64 = r.get(5)?;
    let created: i64 = r.get(6)?;
    let disabled: Option<i64> = r.get(7)?;
    Ok((|| {
        Ok(StaffRecord {
            id,
            email,
            passphrase_hash,
            roles: split_roles(&roles),
            sealed_totp,
            totp_last_step: step,
            created_at: from_unix_millis(created)?,
            disabled_at: disabled.map(from_unix_millis).transpose()?,
        })
    })())
}

fn session_row(r: &Row<'_>) -> Parsed<StaffSession> {
    let token_hash: String = r.get(0)?;
    let staff_id: String = r.get(1)?;
    let created: i64 = r.get(2)?;
    let seen: i64 = r.get(3)?;
    let expires: i64 = r.get(4)?;
    let ended: Option<i64> = r.get(5)?;
    let client: Option<String> = r.get(6)?;
    let user_agent: Option<String> = r.get(7)?;
    Ok((|| {
        Ok(StaffSession {
            token_hash,
            staff_id,
            created_at: from_unix_millis(created)?,
            last_seen_at: from_unix_millis(seen)?,
            expires_at: from_unix_millis(expires)?,
            ended_at: ended.map(from_unix_millis).transpose()?,
            client,
            user_agent,
        })
    })())
}

fn grant_row(r: &Row<'_>) -> Parsed<StoredGrant> {
    let row = GrantRow {
        id: r.get(0)?,
        company_id: r.get(1)?,
        requested_by: r.get(2)?,
        reason: r.get(3)?,
        scope: r.get(4)?,
        duration_minutes: r.get(5)?,
        ticket: r.get(6)?,
        mandate_reference: r.get(7)?,
        mandate_disclose_after: r.get(8)?,
        requested_at: r.get(9)?,
        starts_at: r.get(10)?,
        company_by: r.get(11)?,
        company_at: r.get(12)?,
        management_by: r.get(13)?,
        management_at: r.get(14)?,
        ended_kind: r.get(15)?,
        ended_side: r.get(16)?,
        ended_by: r.get(17)?,
        ended_at: r.get(18)?,
        version: r.get(19)?,
    };
    Ok(row.into_stored())
}

/// Ends every open session of a staff member at `at`, returning their hashes.
fn end_sessions(tx: &Transaction<'_>, staff_id: &str, at: i64) -> Result<Vec<String>, StoreError> {
    let hashes: Vec<String> = tx
        .prepare_cached(
            "SELECT token_hash FROM staff_sessions WHERE staff_id = ?1 AND ended_at IS NULL",
        )?
        .query_map([staff_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    tx.execute(
        "UPDATE staff_sessions SET ended_at = ?1 WHERE staff_id = ?2 AND ended_at IS NULL",
        params![at, staff_id],
    )?;
    Ok(hashes)
}

impl SqliteControl {
    async fn staff_where(
        &self,
        clause: &'static str,
        value: String,
    ) -> Result<Option<StaffRecord>, StoreError> {
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {STAFF_COLUMNS} FROM staff WHERE {clause} = ?1"
                ))?
                .query_row([value], staff_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn grants_where(
        &self,
        clause: &'static str,
        values: Vec<String>,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.readers
            .with(move |conn| {
                let sql = format!(
                    "SELECT {GRANT_COLUMNS} FROM access_grants {clause} ORDER BY requested_at DESC, id DESC LIMIT {}",
                    limit.clamp(1, 10_000)
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(values), grant_row)?;
                rows.map(|r| r?).collect()
            })
            .await
    }
}

fn grant_params(row: &GrantRow) -> [&dyn rusqlite::ToSql; 20] {
    [
        &row.id,
        &row.company_id,
        &row.requested_by,
        &row.reason,
        &row.scope,
        &row.duration_minutes,
        &row.ticket,
        &row.mandate_reference,
        &row.mandate_disclose_after,
        &row.requested_at,
        &row.starts_at,
        &row.company_by,
        &row.company_at,
        &row.management_by,
        &row.management_at,
        &row.ended_kind,
        &row.ended_side,
        &row.ended_by,
        &row.ended_at,
        &row.version,
    ]
}

#[async_trait]
impl StaffStore for SqliteControl {
    async fn create_staff(
        &self,
        staff: &StaffRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let s = staff.clone();
        self.write(Some(audit), move |tx| {
            let taken: Option<String> = tx
                .query_row("SELECT id FROM staff WHERE email = ?1", [&s.email], |r| {
                    r.get(0)
                })
                .optional()?;
            if taken.is_some() {
                return Err(StoreError::Conflict(
                    "a staff member with this email exists".into(),
                ));
            }
            tx.execute(
                &format!(
                    "INSERT INTO staff ({STAFF_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    s.id,
                    s.email,
                    s.passphrase_hash,
                    s.roles.join(","),
                    s.sealed_totp,
                    s.totp_last_step,
                    unix_millis(s.created_at),
                    s.disabled_at.map(unix_millis)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn staff(&self, id: &str) -> Result<Option<StaffRecord>, StoreError> {
        self.staff_where("id", id.to_string()).await
    }

    async fn staff_by_email(&self, email: &str) -> Result<Option<StaffRecord>, StoreError> {
        self.staff_where("email", email.to_string()).await
    }

    async fn list_staff(&self) -> Result<Vec<StaffRecord>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!("SELECT {STAFF_COLUMNS} FROM staff ORDER BY email"))?;
                let rows = stmt.query_map([], staff_row)?;
                rows.map(|r| r?).collect()
            })
            .await
    }

    async fn set_staff_roles(
        &self,
        id: &str,
        roles: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (id, roles) = (id.to_string(), roles.join(","));
        self.write(Some(audit), move |tx| {
            if tx.execute(
                "UPDATE staff SET roles = ?1 WHERE id = ?2",
                params![roles, id],
            )? != 1
            {
                return Err(StoreError::NotFound("staff member"));
            }
            Ok(())
        })
        .await
    }

    async fn disable_staff(&self, id: &str, audit: &AuditEvent) -> Result<Vec<String>, StoreError> {
        let id = id.to_string();
        let at = unix_millis(audit.at);
        self.write(Some(audit), move |tx| {
            let changed = tx.execute(
                "UPDATE staff SET disabled_at = COALESCE(disabled_at, ?1) WHERE id = ?2",
                params![at, id],
            )?;
            if changed != 1 {
                return Err(StoreError::NotFound("staff member"));
            }
            end_sessions(tx, &id, at)
        })
        .await
    }

    async fn reset_staff_totp(
        &self,
        id: &str,
        sealed_totp: &[u8],
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let (id, sealed) = (id.to_string(), sealed_totp.to_vec());
        let at = unix_millis(audit.at);
        self.write(Some(audit), move |tx| {
            let changed = tx.execute(
                "UPDATE staff SET sealed_totp = ?1, totp_last_step = 0 WHERE id = ?2",
                params![sealed, id],
            )?;
            if changed != 1 {
                return Err(StoreError::NotFound("staff member"));
            }
            end_sessions(tx, &id, at)
        })
        .await
    }

    async fn use_staff_totp_step(&self, id: &str, step: i64) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(None, move |tx| {
            Ok(tx.execute(
                "UPDATE staff SET totp_last_step = ?1 WHERE id = ?2 AND totp_last_step < ?1",
                params![step, id],
            )? == 1)
        })
        .await
    }

    async fn create_staff_session(
        &self,
        s: &StaffSession,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(Some(audit), move |tx| {
            tx.execute(
                &format!("INSERT INTO staff_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    s.token_hash,
                    s.staff_id,
                    unix_millis(s.created_at),
                    unix_millis(s.last_seen_at),
                    unix_millis(s.expires_at),
                    s.ended_at.map(unix_millis),
                    s.client,
                    s.user_agent
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn staff_session(&self, token_hash: &str) -> Result<Option<StaffSession>, StoreError> {
        let hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM staff_sessions WHERE token_hash = ?1"
                ))?
                .query_row([hash], session_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn touch_staff_session(
        &self,
        token_hash: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let hash = token_hash.to_string();
        self.write(None, move |tx| {
            tx.execute(
                "UPDATE staff_sessions SET last_seen_at = MAX(last_seen_at, ?1) WHERE token_hash = ?2",
                params![unix_millis(at), hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn end_staff_session(
        &self,
        token_hash: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let hash = token_hash.to_string();
        let at = unix_millis(audit.at);
        self.write(Some(audit), move |tx| {
            let changed = tx.execute(
                "UPDATE staff_sessions SET ended_at = ?1 WHERE token_hash = ?2 AND ended_at IS NULL",
                params![at, hash],
            )?;
            if changed != 1 {
                return Err(StoreError::NotFound("staff session"));
            }
            Ok(())
        })
        .await
    }

    async fn create_grant(&self, grant: &Grant, audit: &AuditEvent) -> Result<(), StoreError> {
        let row = GrantRow::of(grant, 1);
        self.write(Some(audit), move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO access_grants ({GRANT_COLUMNS}) VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
                ),
                &grant_params(&row)[..],
            )?;
            Ok(())
        })
        .await
    }

    async fn grant(&self, id: &str) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self
            .grants_where("WHERE id = ?1", vec![id.to_string()], 1)
            .await?
            .pop())
    }

    async fn update_grant(
        &self,
        grant: &Grant,
        version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let row = GrantRow::of(grant, version + 1);
        self.write(Some(audit), move |tx| {
            // Only the decisions change; the request itself is fixed.
            let changed = tx.execute(
                "UPDATE access_grants SET company_by = ?1, company_at = ?2, management_by = ?3,
                     management_at = ?4, ended_kind = ?5, ended_side = ?6, ended_by = ?7,
                     ended_at = ?8, version = ?9
                 WHERE id = ?10 AND version = ?11",
                params![
                    row.company_by,
                    row.company_at,
                    row.management_by,
                    row.management_at,
                    row.ended_kind,
                    row.ended_side,
                    row.ended_by,
                    row.ended_at,
                    row.version,
                    row.id,
                    version
                ],
            )?;
            if changed != 1 {
                return Err(StoreError::Conflict(
                    "the grant changed meanwhile; read it again".into(),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn company_grants(
        &self,
        company_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_where("WHERE company_id = ?1", vec![company_id.to_string()], limit)
            .await
    }

    async fn grants(
        &self,
        requested_by: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        match requested_by {
            Some(by) => {
                self.grants_where("WHERE requested_by = ?1", vec![by.to_string()], limit)
                    .await
            }
            None => self.grants_where("", Vec::new(), limit).await,
        }
    }

    async fn grants_to_tell(&self, limit: u32) -> Result<Vec<StoredGrant>, StoreError> {
        let mut grants = self
            .grants_where(
                "WHERE NOT EXISTS (SELECT 1 FROM grant_notices n WHERE n.grant_id = access_grants.id
                                   AND n.told NOT IN ('pending', 'active'))",
                Vec::new(),
                limit,
            )
            .await?;
        grants.reverse();
        Ok(grants)
    }

    async fn mark_grant_told(&self, grant_id: &str, state: &str) -> Result<bool, StoreError> {
        let (id, state) = (grant_id.to_string(), state.to_string());
        self.write(None, move |tx| {
            Ok(tx.execute(
                "INSERT INTO grant_notices (grant_id, told) VALUES (?1, ?2)
                 ON CONFLICT (grant_id) DO UPDATE SET told = excluded.told
                 WHERE grant_notices.told <> excluded.told",
                params![id, state],
            )? == 1)
        })
        .await
    }

    async fn reset_grant_told(&self, grant_id: &str, told: Option<&str>) -> Result<(), StoreError> {
        let (id, told) = (grant_id.to_string(), told.map(str::to_string));
        self.write(None, move |tx| {
            match told {
                Some(told) => tx.execute(
                    "INSERT INTO grant_notices (grant_id, told) VALUES (?1, ?2)
                     ON CONFLICT (grant_id) DO UPDATE SET told = excluded.told",
                    params![id, told],
                )?,
                None => tx.execute("DELETE FROM grant_notices WHERE grant_id = ?1", params![id])?,
            };
            Ok(())
        })
        .await
    }

    async fn grant_told(&self, grant_id: &str) -> Result<Option<String>, StoreError> {
        let id = grant_id.to_string();
        self.readers
            .with(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT told FROM grant_notices WHERE grant_id = ?1",
                        params![id],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await
    }

    async fn live_grants(
        &self,
        requested_by: &str,
        company_id: &str,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_where(
            "WHERE requested_by = ?1 AND company_id = ?2 AND ended_kind IS NULL",
            vec![requested_by.to_string(), company_id.to_string()],
            100,
        )
        .await
    }
}
