//! Rows of the identity tables (companies, users, memberships, API keys)
//! as the PostgreSQL control plane writes and reads them.

use tokio_postgres::{Row, Transaction};
use wb_core::Role;

use super::control::*;
use crate::model::*;
use crate::StoreError;

pub(super) async fn insert_company(
    tx: &Transaction<'_>,
    c: &CompanyRecord,
) -> Result<(), StoreError> {
    let created = ts(c.created_at);
    let status = c.status.as_str();
    tx.execute_typed(
        "INSERT INTO companies (id, name, status, wrapped_dek, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            text(&c.id),
            text(&c.name),
            text(&status),
            bytea(&c.wrapped_dek),
            text(&created),
        ],
    )
    .await?;
    Ok(())
}

pub(super) const EMAIL_TAKEN: &str = "an account with this email already exists; log in instead";

pub(super) async fn insert_user(tx: &Transaction<'_>, u: &UserRecord) -> Result<(), StoreError> {
    let exists = tx
        .query_typed_opt(
            "SELECT 1 FROM users WHERE lower(email) = lower($1 COLLATE \"C\")",
            &[text(&u.email)],
        )
        .await?
        .is_some();
    if exists {
        return Err(StoreError::Conflict(EMAIL_TAKEN.into()));
    }
    let created = ts(u.created_at);
    tx.execute_typed(
        "INSERT INTO users (id, email, name, passphrase_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[
            text(&u.id),
            text(&u.email),
            text(&u.name),
            text(&u.passphrase_hash),
            text(&created),
        ],
    )
    .await
    .map_err(|e| match StoreError::from(e) {
        // Another node inserted the same address since the check above.
        StoreError::Conflict(m) if m.contains("users_email_nocase") => {
            StoreError::Conflict(EMAIL_TAKEN.into())
        }
        other => other,
    })?;
    Ok(())
}

pub(super) const COMPANY_COLUMNS: &str = "id, name, status, wrapped_dek, created_at";

pub(super) fn company_row(r: &Row) -> Result<CompanyRecord, StoreError> {
    let status: &str = r.try_get(2)?;
    let created: &str = r.try_get(4)?;
    Ok(CompanyRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        status: CompanyStatus::parse(status),
        wrapped_dek: r.try_get(3)?,
        created_at: parse_ts(created)?,
    })
}

pub(super) const USER_COLUMNS: &str = "id, email, name, passphrase_hash, created_at, last_login_at";

pub(super) fn user_row(r: &Row) -> Result<UserRecord, StoreError> {
    let created: &str = r.try_get(4)?;
    let last: Option<&str> = r.try_get(5)?;
    Ok(UserRecord {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        name: r.try_get(2)?,
        passphrase_hash: r.try_get(3)?,
        created_at: parse_ts(created)?,
        last_login_at: last.map(parse_ts).transpose()?,
    })
}

pub(super) fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("role {text:?}")))
}

pub(super) fn membership_row(r: &Row) -> Result<Membership, StoreError> {
    let role: &str = r.try_get(2)?;
    Ok(Membership {
        company_id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        role: parse_role(role)?,
    })
}

pub(super) const API_KEY_COLUMNS: &str =
    "id, company_id, name, role, token_hash, created_by, created_at, expires_at, revoked_at";

pub(super) fn api_key_row(r: &Row) -> Result<ApiKeyRecord, StoreError> {
    let role: &str = r.try_get(3)?;
    let created: &str = r.try_get(6)?;
    let expires: &str = r.try_get(7)?;
    let revoked: Option<&str> = r.try_get(8)?;
    Ok(ApiKeyRecord {
        id: r.try_get(0)?,
        company_id: r.try_get(1)?,
        name: r.try_get(2)?,
        role: parse_role(role)?,
        token_hash: r.try_get(4)?,
        created_by: r.try_get(5)?,
        created_at: parse_ts(created)?,
        expires_at: parse_ts(expires)?,
        revoked_at: revoked.map(parse_ts).transpose()?,
    })
}

pub(super) const SESSION_COLUMNS: &str =
    "token_hash, user_id, created_at, expires_at, revoked_at, client, user_agent, last_seen_at, \
     second_factor";

pub(super) fn session_row(r: &Row) -> Result<SessionRecord, StoreError> {
    let revoked: Option<&str> = r.try_get(4)?;
    let seen: Option<i64> = r.try_get(7)?;
    Ok(SessionRecord {
        token_hash: r.try_get(0)?,
        user_id: r.try_get(1)?,
        created_at: parse_ts(r.try_get(2)?)?,
        expires_at: parse_ts(r.try_get(3)?)?,
        revoked_at: revoked.map(parse_ts).transpose()?,
        client: r.try_get(5)?,
        user_agent: r.try_get(6)?,
        last_seen_at: seen.map(crate::from_unix_millis).transpose()?,
        second_factor: r.try_get(8)?,
    })
}
