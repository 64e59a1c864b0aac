//! `StaffStore` for the PostgreSQL control database: the same contract as
//! the SQLCipher backend. A grant changes only from the version read
//! (conditional single-row update), which PostgreSQL serializes across nodes.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::Row;
use wb_core::grants::Grant;

use super::control::{append_audit, begin, bytea, clamp_limit, int8, rows, text, PgControl, P};
use crate::model::AuditEvent;
use crate::staff::*;
use crate::{from_unix_millis, unix_millis, StoreError};

const STAFF_COLUMNS: &str =
    "id, email, passphrase_hash, roles, sealed_totp, totp_last_step, created_at, disabled_at";
const SESSION_COLUMNS: &str =
    "token_hash, staff_id, created_at, last_seen_at, expires_at, ended_at, client, user_agent";

fn staff_row(r: &Row) -> Result<StaffRecord, StoreError> {
    Ok(StaffRecord {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        passphrase_hash: r.try_get(2)?,
        roles: split_roles(r.try_get(3)?),
        sealed_totp: r.try_get(4)?,
        totp_last_step: r.try_get(5)?,
        created_at: from_unix_millis(r.try_get(6)?)?,
        disabled_at: r
            .try_get::<_, Option<i64>>(7)?
            .map(from_unix_millis)
            .transpose()?,
    })
}

fn session_row(r: &Row) -> Result<StaffSession, StoreError> {
    Ok(StaffSession {
        token_hash: r.try_get(0)?,
        staff_id: r.try_get(1)?,
        created_at: from_unix_millis(r.try_get(2)?)?,
        last_seen_at: from_unix_millis(r.try_get(3)?)?,
        expires_at: from_unix_millis(r.try_get(4)?)?,
        ended_at: r
            .try_get::<_, Option<i64>>(5)?
            .map(from_unix_millis)
            .transpose()?,
        client: r.try_get(6)?,
        user_agent: r.try_get(7)?,
    })
}

fn grant_row(r: &Row) -> Result<StoredGrant, StoreError> {
    GrantRow {
        id: r.try_get(0)?,
        company_id: r.try_get(1)?,
        requested_by: r.try_get(2)?,
        reason: r.try_get(3)?,
        scope: r.try_get(4)?,
        duration_minutes: r.try_get(5)?,
        ticket: r.try_get(6)?,
        mandate_reference: r.try_get(7)?,
        mandate_disclose_after: r.try_get(8)?,
        requested_at: r.try_get(9)?,
        starts_at: r.try_get(10)?,
        company_by: r.try_get(11)?,
        company_at: r.try_get(12)?,
        management_by: r.try_get(13)?,
        management_at: r.try_get(14)?,
        ended_kind: r.try_get(15)?,
        ended_side: r.try_get(16)?,
        ended_by: r.try_get(17)?,
        ended_at: r.try_get(18)?,
        version: r.try_get(19)?,
    }
    .into_stored()
}

/// Ends every open session of a staff member, returning their hashes.
async fn end_sessions(
    tx: &tokio_postgres::Transaction<'_>,
    staff_id: &str,
    at: i64,
) -> Result<Vec<String>, StoreError> {
    let ended = tx
        .query_typed(
            "UPDATE staff_sessions SET ended_at = $1 WHERE staff_id = $2 AND ended_at IS NULL
             RETURNING token_hash",
            &[int8(&at), text(&staff_id)],
        )
        .await?;
    ended
        .iter()
        .map(|r| Ok(r.try_get::<_, String>(0)?))
        .collect()
}

impl PgControl {
    /// One statement that must change exactly one row, committed with
    /// `audit`; otherwise `missed`, and nothing (not even the audit) written.
    async fn exec_exactly_one(
        &self,
        sql: &str,
        params: &[P<'_>],
        audit: &AuditEvent,
        missed: StoreError,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        if tx.execute_typed(sql, params).await? != 1 {
            return Err(missed);
        }
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One statement that must change exactly one staff row, with `audit`,
    /// then ends the member's sessions in the same transaction.
    async fn change_staff(
        &self,
        sql: &str,
        params: &[P<'_>],
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        if tx.execute_typed(sql, params).await? != 1 {
            return Err(StoreError::NotFound("staff member"));
        }
        let ended = end_sessions(&tx, id, unix_millis(audit.at)).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn grants_where(
        &self,
        clause: &str,
        params: &[P<'_>],
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM access_grants {clause}
             ORDER BY requested_at DESC, id DESC LIMIT {}",
            clamp_limit(limit, 10_000)
        );
        rows(self.query(&sql, params).await?, grant_row)
    }
}

#[async_trait]
impl StaffStore for PgControl {
    async fn create_staff(&self, s: &StaffRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let (roles, created) = (s.roles.join(","), unix_millis(s.created_at));
        let disabled = s.disabled_at.map(unix_millis);
        self.exec_exactly_one(
            &format!(
                "INSERT INTO staff ({STAFF_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (email) DO NOTHING"
            ),
            &[
                text(&s.id),
                text(&s.email),
                text(&s.passphrase_hash),
                text(&roles),
                bytea(&s.sealed_totp),
                int8(&s.totp_last_step),
                int8(&created),
                int8(&disabled),
            ],
            audit,
            StoreError::Conflict("a staff member with this email exists".into()),
        )
        .await
    }

    async fn staff(&self, id: &str) -> Result<Option<StaffRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {STAFF_COLUMNS} FROM staff WHERE id = $1"),
            &[text(&id)],
        )
        .await?
        .as_ref()
        .map(staff_row)
        .transpose()
    }

    async fn staff_by_email(&self, email: &str) -> Result<Option<StaffRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {STAFF_COLUMNS} FROM staff WHERE email = $1"),
            &[text(&email)],
        )
        .await?
        .as_ref()
        .map(staff_row)
        .transpose()
    }

    async fn list_staff(&self) -> Result<Vec<StaffRecord>, StoreError> {
        rows(
            self.query(
                &format!("SELECT {STAFF_COLUMNS} FROM staff ORDER BY email"),
                &[],
            )
            .await?,
            staff_row,
        )
    }

    async fn set_staff_roles(
        &self,
        id: &str,
        roles: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let roles = roles.join(",");
        self.exec_exactly_one(
            "UPDATE staff SET roles = $1 WHERE id = $2",
            &[text(&roles), text(&id)],
            audit,
            StoreError::NotFound("staff member"),
        )
        .await
    }

    async fn disable_staff(&self, id: &str, audit: &AuditEvent) -> Result<Vec<String>, StoreError> {
        let at = unix_millis(audit.at);
        self.change_staff(
            "UPDATE staff SET disabled_at = COALESCE(disabled_at, $1) WHERE id = $2",
            &[int8(&at), text(&id)],
            id,
            audit,
        )
        .await
    }

    async fn reset_staff_totp(
        &self,
        id: &str,
        sealed_totp: &[u8],
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        self.change_staff(
            "UPDATE staff SET sealed_totp = $1, totp_last_step = 0 WHERE id = $2",
            &[bytea(&sealed_totp), text(&id)],
            id,
            audit,
        )
        .await
    }

    async fn use_staff_totp_step(&self, id: &str, step: i64) -> Result<bool, StoreError> {
        Ok(self
            .exec_audited(
                "UPDATE staff SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1",
                &[int8(&step), text(&id)],
                None,
            )
            .await?
            == 1)
    }

    async fn create_staff_session(
        &self,
        s: &StaffSession,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (created, seen, expires) = (
            unix_millis(s.created_at),
            unix_millis(s.last_seen_at),
            unix_millis(s.expires_at),
        );
        let ended = s.ended_at.map(unix_millis);
        self.exec_audited(
            &format!(
                "INSERT INTO staff_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                text(&s.token_hash),
                text(&s.staff_id),
                int8(&created),
                int8(&seen),
                int8(&expires),
                int8(&ended),
                text(&s.client),
                text(&s.user_agent),
            ],
            Some(audit),
        )
        .await?;
        Ok(())
    }

    async fn staff_session(&self, token_hash: &str) -> Result<Option<StaffSession>, StoreError> {
        self.query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM staff_sessions WHERE token_hash = $1"),
            &[text(&token_hash)],
        )
        .await?
        .as_ref()
        .map(session_row)
        .transpose()
    }

    async fn touch_staff_session(
        &self,
        token_hash: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = unix_millis(at);
        self.exec_audited(
            "UPDATE staff_sessions SET last_seen_at = GREATEST(last_seen_at, $1) WHERE token_hash = $2",
            &[int8(&at), text(&token_hash)],
            None,
        )
        .await?;
        Ok(())
    }

    async fn end_staff_session(
        &self,
        token_hash: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = unix_millis(audit.at);
        self.exec_exactly_one(
            "UPDATE staff_sessions SET ended_at = $1 WHERE token_hash = $2 AND ended_at IS NULL",
            &[int8(&at), text(&token_hash)],
            audit,
            StoreError::NotFound("staff session"),
        )
        .await
    }

    async fn create_grant(&self, grant: &Grant, audit: &AuditEvent) -> Result<(), StoreError> {
        let r = GrantRow::of(grant, 1);
        self.exec_audited(
            &format!(
                "INSERT INTO access_grants ({GRANT_COLUMNS}) VALUES
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
            ),
            &[
                text(&r.id),
                text(&r.company_id),
                text(&r.requested_by),
                text(&r.reason),
                text(&r.scope),
                int8(&r.duration_minutes),
                text(&r.ticket),
                text(&r.mandate_reference),
                int8(&r.mandate_disclose_after),
                int8(&r.requested_at),
                int8(&r.starts_at),
                text(&r.company_by),
                int8(&r.company_at),
                text(&r.management_by),
                int8(&r.management_at),
                text(&r.ended_kind),
                text(&r.ended_side),
                text(&r.ended_by),
                int8(&r.ended_at),
                int8(&r.version),
            ],
            Some(audit),
        )
        .await?;
        Ok(())
    }

    async fn grant(&self, id: &str) -> Result<Option<StoredGrant>, StoreError> {
        Ok(self
            .grants_where("WHERE id = $1", &[text(&id)], 1)
            .await?
            .pop())
    }

    async fn update_grant(
        &self,
        grant: &Grant,
        version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let r = GrantRow::of(grant, version + 1);
        // Only the decisions change; the request itself is fixed.
        self.exec_exactly_one(
            "UPDATE access_grants SET company_by = $1, company_at = $2, management_by = $3,
                 management_at = $4, ended_kind = $5, ended_side = $6, ended_by = $7,
                 ended_at = $8, version = $9
             WHERE id = $10 AND version = $11",
            &[
                text(&r.company_by),
                int8(&r.company_at),
                text(&r.management_by),
                int8(&r.management_at),
                text(&r.ended_kind),
                text(&r.ended_side),
                text(&r.ended_by),
                int8(&r.ended_at),
                int8(&r.version),
                text(&r.id),
                int8(&version),
            ],
            audit,
            StoreError::Conflict("the grant changed meanwhile; read it again".into()),
        )
        .await
    }

    async fn company_grants(
        &self,
        company_id: &str,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_where("WHERE company_id = $1", &[text(&company_id)], limit)
            .await
    }

    async fn grants(
        &self,
        requested_by: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        match requested_by {
            Some(by) => {
                self.grants_where("WHERE requested_by = $1", &[text(&by)], limit)
                    .await
            }
            None => self.grants_where("", &[], limit).await,
        }
    }

    async fn grants_to_tell(&self, limit: u32) -> Result<Vec<StoredGrant>, StoreError> {
        let mut grants = self
            .grants_where(
                "WHERE NOT EXISTS (SELECT 1 FROM grant_notices n WHERE n.grant_id = access_grants.id
                                   AND n.told NOT IN ('pending', 'active'))",
                &[],
                limit,
            )
            .await?;
        grants.reverse();
        Ok(grants)
    }

    async fn mark_grant_told(&self, grant_id: &str, state: &str) -> Result<bool, StoreError> {
        Ok(self
            .exec_audited(
                "INSERT INTO grant_notices (grant_id, told) VALUES ($1, $2)
                 ON CONFLICT (grant_id) DO UPDATE SET told = EXCLUDED.told
                 WHERE grant_notices.told <> EXCLUDED.told",
                &[text(&grant_id), text(&state)],
                None,
            )
            .await?
            == 1)
    }

    async fn reset_grant_told(&self, grant_id: &str, told: Option<&str>) -> Result<(), StoreError> {
        match told {
            Some(told) => {
                self.exec_audited(
                    "INSERT INTO grant_notices (grant_id, told) VALUES ($1, $2)
                     ON CONFLICT (grant_id) DO UPDATE SET told = EXCLUDED.told",
                    &[text(&grant_id), text(&told)],
                    None,
                )
                .await?
            }
            None => {
                self.exec_audited(
                    "DELETE FROM grant_notices WHERE grant_id = $1",
                    &[text(&grant_id)],
                    None,
                )
                .await?
            }
        };
        Ok(())
    }

    async fn grant_told(&self, grant_id: &str) -> Result<Option<String>, StoreError> {
        match self
            .query(
                "SELECT told FROM grant_notices WHERE grant_id = $1",
                &[text(&grant_id)],
            )
            .await?
            .first()
        {
            Some(row) => Ok(Some(row.try_get(0)?)),
            None => Ok(None),
        }
    }

    async fn live_grants(
        &self,
        requested_by: &str,
        company_id: &str,
    ) -> Result<Vec<StoredGrant>, StoreError> {
        self.grants_where(
            "WHERE requested_by = $1 AND company_id = $2 AND ended_kind IS NULL",
            &[text(&requested_by), text(&company_id)],
            100,
        )
        .await
    }
}
