//! Rows of the identity tables (companies, users, memberships, API keys)
//! as the SQLCipher control plane writes and reads them.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use wb_core::Role;

use super::conn::{parse_ts, ts};
use crate::model::*;
use crate::StoreError;

pub(super) fn insert_company(tx: &Transaction<'_>, c: &CompanyRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO companies (id, name, status, wrapped_dek, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.id, c.name, c.status.as_str(), c.wrapped_dek, ts(c.created_at)],
    )?;
    Ok(())
}

pub(super) fn insert_user(tx: &Transaction<'_>, u: &UserRecord) -> Result<(), StoreError> {
    let exists: bool = tx
        .query_row("SELECT 1 FROM users WHERE email = ?1", [&u.email], |_| {
            Ok(true)
        })
        .optional()?
        .unwrap_or(false);
    if exists {
        return Err(StoreError::Conflict(
            "an account with this email already exists; log in instead".into(),
        ));
    }
    tx.execute(
        "INSERT INTO users (id, email, name, passphrase_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![u.id, u.email, u.name, u.passphrase_hash, ts(u.created_at)],
    )?;
    Ok(())
}

pub(super) fn row_company(
    r: &Row<'_>,
) -> rusqlite::Result<(String, String, String, Vec<u8>, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

pub(super) fn to_company(
    (id, name, status, wrapped_dek, created_at): (String, String, String, Vec<u8>, String),
) -> Result<CompanyRecord, StoreError> {
    Ok(CompanyRecord {
        id,
        name,
        status: CompanyStatus::parse(&status),
        wrapped_dek,
        created_at: parse_ts(&created_at)?,
    })
}

pub(super) fn row_user(r: &Row<'_>) -> rusqlite::Result<Result<UserRecord, StoreError>> {
    let created: String = r.get(4)?;
    let last: Option<String> = r.get(5)?;
    let (id, email, name, hash) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    Ok((|| {
        Ok(UserRecord {
            id,
            email,
            name,
            passphrase_hash: hash,
            created_at: parse_ts(&created)?,
            last_login_at: last.as_deref().map(parse_ts).transpose()?,
        })
    })())
}

/// Memberships selected by `sql` (company_id, user_id, role) with one key parameter.
pub(super) fn memberships(
    conn: &Connection,
    sql: &str,
    key: &str,
) -> Result<Vec<Membership>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([key], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    rows.map(|r| {
        let (company_id, user_id, role) = r?;
        Ok(Membership {
            company_id,
            user_id,
            role: parse_role(&role)?,
        })
    })
    .collect()
}

pub(super) fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("role {text:?}")))
}

pub(super) fn row_api_key(r: &Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
    let role: String = r.get(3)?;
    let created: String = r.get(6)?;
    let expires: String = r.get(7)?;
    let revoked: Option<String> = r.get(8)?;
    let (id, company_id, name, token_hash, created_by) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?, r.get(5)?);
    Ok((|| {
        Ok(ApiKeyRecord {
            id,
            company_id,
            name,
            role: parse_role(&role)?,
            token_hash,
            created_by,
            created_at: parse_ts(&created)?,
            expires_at: parse_ts(&expires)?,
            revoked_at: revoked.as_deref().map(parse_ts).transpose()?,
        })
    })())
}

pub(super) const API_KEY_COLUMNS: &str =
    "id, company_id, name, role, token_hash, created_by, created_at, expires_at, revoked_at";
pub(super) const USER_COLUMNS: &str = "id, email, name, passphrase_hash, created_at, last_login_at";

pub(super) const SESSION_COLUMNS: &str =
    "token_hash, user_id, created_at, expires_at, revoked_at, client, user_agent, last_seen_at, \
     second_factor";

pub(super) fn row_session(r: &Row<'_>) -> rusqlite::Result<Result<SessionRecord, StoreError>> {
    let (token_hash, user_id, created, expires): (String, String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let revoked: Option<String> = r.get(4)?;
    let (client, user_agent): (Option<String>, Option<String>) = (r.get(5)?, r.get(6)?);
    let seen: Option<i64> = r.get(7)?;
    let second_factor: Option<String> = r.get(8)?;
    Ok((|| {
        Ok(SessionRecord {
            token_hash,
            user_id,
            created_at: parse_ts(&created)?,
            expires_at: parse_ts(&expires)?,
            revoked_at: revoked.as_deref().map(parse_ts).transpose()?,
            client,
            user_agent,
            last_seen_at: seen.map(crate::from_unix_millis).transpose()?,
            second_factor,
        })
    })())
}
