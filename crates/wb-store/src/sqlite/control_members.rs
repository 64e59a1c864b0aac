//! `MemberStore` for the SQLCipher control database: invitations, members
//! and the email outbox.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use time::OffsetDateTime;
use wb_core::members::{check_change, MemberChange};
use wb_core::Role;

use super::conn::{parse_ts, ts};
use super::control::SqliteControl;
use super::control_rows::{insert_user, parse_role, row_session, SESSION_COLUMNS};
use crate::members::*;
use crate::model::{AuditEvent, SessionRecord};
use crate::{from_unix_millis, unix_millis, StoreError};
use wb_core::security_policy::SecurityPolicy;

const INVITATION_COLUMNS: &str = "id, company_id, email, role, token_hash, invited_by, \
     created_at, expires_at, accepted_at, accepted_by, revoked_at";

type InvitationRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

fn invitation_row(r: &Row<'_>) -> rusqlite::Result<InvitationRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn to_invitation(row: InvitationRow) -> Result<InvitationRecord, StoreError> {
    let (
        id,
        company_id,
        email,
        role,
        token_hash,
        invited_by,
        created,
        expires,
        accepted,
        by,
        revoked,
    ) = row;
    let millis = |v: Option<i64>| v.map(from_unix_millis).transpose();
    Ok(InvitationRecord {
        id,
        company_id,
        email,
        role: parse_role(&role)?,
        token_hash,
        invited_by,
        created_at: from_unix_millis(created)?,
        expires_at: from_unix_millis(expires)?,
        accepted_at: millis(accepted)?,
        accepted_by: by,
        revoked_at: millis(revoked)?,
    })
}

fn member(
    conn: &Connection,
    company_id: &str,
    user_id: &str,
) -> Result<Option<MemberRecord>, StoreError> {
    conn.prepare_cached(
        "SELECT u.id, u.email, u.name, m.role, u.last_login_at FROM memberships m
         JOIN users u ON u.id = m.user_id WHERE m.company_id = ?1 AND m.user_id = ?2",
    )?
    .query_row([company_id, user_id], member_row)
    .optional()?
    .transpose()
}

fn member_row(r: &Row<'_>) -> rusqlite::Result<Result<MemberRecord, StoreError>> {
    let (user_id, email, name, role, last): (
        String,
        String,
        Option<String>,
        String,
        Option<String>,
    ) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(MemberRecord {
            user_id,
            email,
            name,
            role: parse_role(&role)?,
            last_login_at: last.as_deref().map(parse_ts).transpose()?,
        })
    })())
}

fn revoke_keys_of(
    tx: &Transaction<'_>,
    company_id: &str,
    user_id: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE api_keys SET revoked_at = ?1
         WHERE company_id = ?2 AND created_by = ?3 AND revoked_at IS NULL",
        params![ts(at), company_id, format!("user:{user_id}")],
    )?;
    Ok(())
}

/// Revokes a user's live sessions whose hash starts with `prefix`, but `keep`.
pub(super) fn revoke_of(
    tx: &Transaction<'_>,
    user_id: &str,
    prefix: &str,
    keep: Option<&str>,
    at: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    // The prefix is hex from the caller's own session list; anything else
    // matches nothing (and LIKE wildcards never reach the query).
    if !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Vec::new());
    }
    let hashes: Vec<String> = tx
        .prepare_cached(
            "SELECT token_hash FROM sessions
             WHERE user_id = ?1 AND revoked_at IS NULL AND substr(token_hash, 1, length(?2)) = ?2",
        )?
        .query_map(params![user_id, prefix], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut revoked = Vec::new();
    for hash in hashes {
        if Some(hash.as_str()) == keep {
            continue;
        }
        tx.execute(
            "UPDATE sessions SET revoked_at = ?1 WHERE token_hash = ?2",
            params![ts(at), hash],
        )?;
        revoked.push(hash);
    }
    Ok(revoked)
}

#[async_trait]
impl MemberStore for SqliteControl {
    async fn create_invitation(
        &self,
        i: &InvitationRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let i = i.clone();
        self.write(Some(audit), move |tx| {
            tx.execute(
                &format!("INSERT INTO invitations ({INVITATION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, NULL)"),
                params![
                    i.id,
                    i.company_id,
                    i.email,
                    i.role.as_str(),
                    i.token_hash,
                    i.invited_by,
                    unix_millis(i.created_at),
                    unix_millis(i.expires_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn pending_invitations(
        &self,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<InvitationRecord>, StoreError> {
        let company_id = company_id.to_string();
        let now = unix_millis(now);
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {INVITATION_COLUMNS} FROM invitations
                     WHERE company_id = ?1 AND accepted_at IS NULL AND revoked_at IS NULL
                       AND expires_at > ?2
                     ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map(params![company_id, now], invitation_row)?;
                rows.map(|r| to_invitation(r?)).collect()
            })
            .await
    }

    async fn revoke_invitation(
        &self,
        company_id: &str,
        id: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let (company_id, id) = (company_id.to_string(), id.to_string());
        let at = unix_millis(at);
        // Nothing to revoke fails the transaction, so no event is recorded.
        let revoked = self
            .write(Some(audit), move |tx| {
                let changed = tx.execute(
                    "UPDATE invitations SET revoked_at = ?1
                     WHERE id = ?2 AND company_id = ?3 AND accepted_at IS NULL
                       AND revoked_at IS NULL AND expires_at > ?1",
                    params![at, id, company_id],
                )?;
                if changed == 1 {
                    Ok(())
                } else {
                    Err(StoreError::NotFound("invitation"))
                }
            })
            .await;
        match revoked {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn invitation_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        let token_hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = ?1"
                ))?
                .query_row([token_hash], invitation_row)
                .optional()?
                .map(to_invitation)
                .transpose()
            })
            .await
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        joiner: &Joiner,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Accepted, StoreError> {
        let (token_hash, joiner) = (token_hash.to_string(), joiner.clone());
        self.write(Some(audit), move |tx| {
            let invitation = tx
                .prepare_cached(&format!(
                    "SELECT {INVITATION_COLUMNS} FROM invitations
                     WHERE token_hash = ?1 AND accepted_at IS NULL AND revoked_at IS NULL
                       AND expires_at > ?2"
                ))?
                .query_row(params![token_hash, unix_millis(now)], invitation_row)
                .optional()?
                .map(to_invitation)
                .transpose()?
                .ok_or(StoreError::NotFound("invitation"))?;
            let user_id = match &joiner {
                Joiner::NewUser(user) => {
                    if !user.email.eq_ignore_ascii_case(&invitation.email) {
                        return Err(StoreError::Conflict(
                            "the account's email is not the invited one".into(),
                        ));
                    }
                    insert_user(tx, user)?;
                    user.id.clone()
                }
                Joiner::Existing { user_id } => {
                    let email: Option<String> = tx
                        .query_row("SELECT email FROM users WHERE id = ?1", [user_id], |r| {
                            r.get(0)
                        })
                        .optional()?;
                    if !email.is_some_and(|e| e.eq_ignore_ascii_case(&invitation.email)) {
                        return Err(StoreError::Conflict(
                            "the account's email is not the invited one".into(),
                        ));
                    }
                    user_id.clone()
                }
            };
            let inserted = tx.execute(
                "INSERT INTO memberships (company_id, user_id, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (company_id, user_id) DO NOTHING",
                params![invitation.company_id, user_id, invitation.role.as_str()],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(
                    "this account is already a member of the company".into(),
                ));
            }
            tx.execute(
                "UPDATE invitations SET accepted_at = ?1, accepted_by = ?2 WHERE id = ?3",
                params![unix_millis(now), user_id, invitation.id],
            )?;
            Ok(Accepted {
                company_id: invitation.company_id,
                user_id,
                role: invitation.role,
            })
        })
        .await
    }

    async fn members(&self, company_id: &str) -> Result<Vec<MemberRecord>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT u.id, u.email, u.name, m.role, u.last_login_at FROM memberships m
                     JOIN users u ON u.id = m.user_id WHERE m.company_id = ?1
                     ORDER BY u.email, u.id",
                )?;
                let rows = stmt.query_map([company_id], member_row)?;
                rows.map(|r| r?).collect()
            })
            .await
    }

    async fn change_member(
        &self,
        company_id: &str,
        user_id: &str,
        actor_role: Role,
        change: MemberChange,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Option<MemberRecord>, StoreError> {
        let (company_id, user_id) = (company_id.to_string(), user_id.to_string());
        self.write(Some(audit), move |tx| {
            let current =
                member(tx, &company_id, &user_id)?.ok_or(StoreError::NotFound("member"))?;
            let owners: i64 = tx.query_row(
                "SELECT count(*) FROM memberships WHERE company_id = ?1 AND role = 'owner'",
                [&company_id],
                |r| r.get(0),
            )?;
            check_change(
                actor_role,
                current.role,
                change,
                usize::try_from(owners).unwrap_or(0),
            )?;
            match change {
                MemberChange::SetRole(role) => {
                    tx.execute(
                        "UPDATE memberships SET role = ?1 WHERE company_id = ?2 AND user_id = ?3",
                        params![role.as_str(), company_id, user_id],
                    )?;
                    if wb_core::members::lowers(current.role, role) {
                        revoke_keys_of(tx, &company_id, &user_id, at)?;
                    }
                    Ok(Some(MemberRecord { role, ..current }))
                }
                MemberChange::Remove => {
                    tx.execute(
                        "DELETE FROM memberships WHERE company_id = ?1 AND user_id = ?2",
                        params![company_id, user_id],
                    )?;
                    revoke_keys_of(tx, &company_id, &user_id, at)?;
                    Ok(None)
                }
            }
        })
        .await
    }

    async fn access_facts(
        &self,
        user_id: Option<&str>,
        company_id: &str,
    ) -> Result<(Option<Role>, Option<SecurityPolicy>), StoreError> {
        let (user_id, company_id) = (user_id.map(str::to_string), company_id.to_string());
        self.readers
            .with(move |conn| {
                type Facts = (
                    Option<String>,
                    Option<i64>,
                    Option<i64>,
                    Option<i64>,
                    Option<String>,
                    Option<i64>,
                    Option<i64>,
                    Option<i64>,
                );
                let row: Option<Facts> = conn
                    .prepare_cached(
                        "SELECT (SELECT m.role FROM memberships m JOIN companies c ON c.id = m.company_id
                                 WHERE m.company_id = ?2 AND m.user_id = ?1 AND c.status = 'active'),
                                p.mfa_required, p.session_ttl_minutes, p.idle_timeout_minutes,
                                p.ip_allowlist, p.min_passphrase_strength, p.api_key_max_days,
                                p.key_max_age_days
                         FROM (SELECT 1) LEFT JOIN company_policies p ON p.company_id = ?2",
                    )?
                    .query_row(params![user_id, company_id], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    })
                    .optional()?;
                let Some((role, mfa, ttl, idle, list, strength, days, key_age)) = row else {
                    return Ok((None, None));
                };
                let role = role.as_deref().map(parse_role).transpose()?;
                let policy = match (mfa, list, strength) {
                    (Some(mfa), Some(list), Some(strength)) => {
                        Some(policy_from_row(mfa, ttl, idle, &list, strength, days, key_age)?)
                    }
                    _ => None,
                };
                Ok((role, policy))
            })
            .await
    }

    async fn company_policy(&self, company_id: &str) -> Result<Option<SecurityPolicy>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                type Row = (
                    i64,
                    Option<i64>,
                    Option<i64>,
                    String,
                    i64,
                    Option<i64>,
                    Option<i64>,
                );
                let row: Option<Row> = conn
                    .prepare_cached(
                        "SELECT mfa_required, session_ttl_minutes, idle_timeout_minutes,
                                ip_allowlist, min_passphrase_strength, api_key_max_days,
                                key_max_age_days
                         FROM company_policies WHERE company_id = ?1",
                    )?
                    .query_row([company_id], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    })
                    .optional()?;
                row.map(|(mfa, ttl, idle, list, strength, days, key_age)| {
                    policy_from_row(mfa, ttl, idle, &list, strength, days, key_age)
                })
                .transpose()
            })
            .await
    }

    async fn put_company_policy(
        &self,
        company_id: &str,
        policy: &SecurityPolicy,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (company_id, p) = (company_id.to_string(), policy.clone());
        let (at, by) = (unix_millis(audit.at), audit.actor.id.clone());
        self.write(Some(audit), move |tx| {
            tx.execute(
                "INSERT INTO company_policies (company_id, mfa_required, session_ttl_minutes,
                     idle_timeout_minutes, ip_allowlist, min_passphrase_strength,
                     api_key_max_days, updated_at, updated_by, key_max_age_days)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (company_id) DO UPDATE SET
                     mfa_required = excluded.mfa_required,
                     session_ttl_minutes = excluded.session_ttl_minutes,
                     idle_timeout_minutes = excluded.idle_timeout_minutes,
                     ip_allowlist = excluded.ip_allowlist,
                     min_passphrase_strength = excluded.min_passphrase_strength,
                     api_key_max_days = excluded.api_key_max_days,
                     key_max_age_days = excluded.key_max_age_days,
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                params![
                    company_id,
                    i64::from(p.mfa_required),
                    p.session_ttl_minutes,
                    p.idle_timeout_minutes,
                    allowlist_text(&p),
                    p.min_passphrase_strength,
                    p.api_key_max_days,
                    at,
                    by,
                    p.key_max_age_days
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn touch_session(&self, token_hash: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let token_hash = token_hash.to_string();
        self.write(None, move |tx| {
            tx.execute(
                "UPDATE sessions SET last_seen_at = ?1 WHERE token_hash = ?2",
                params![unix_millis(at), token_hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn session_last_seen(
        &self,
        token_hash: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let token_hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                let seen: Option<Option<i64>> = conn
                    .prepare_cached("SELECT last_seen_at FROM sessions WHERE token_hash = ?1")?
                    .query_row([token_hash], |r| r.get(0))
                    .optional()?;
                seen.flatten().map(from_unix_millis).transpose()
            })
            .await
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let user_id = user_id.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions
                     WHERE user_id = ?1 AND revoked_at IS NULL
                     ORDER BY created_at DESC, token_hash"
                ))?;
                let rows = stmt.query_map([user_id], row_session)?;
                let mut live = Vec::new();
                for row in rows {
                    let session = row??;
                    if session.expires_at > now {
                        live.push(session);
                    }
                }
                Ok(live)
            })
            .await
    }

    async fn revoke_sessions_of(
        &self,
        user_id: &str,
        prefix: &str,
        keep: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let (user_id, prefix) = (user_id.to_string(), prefix.to_string());
        let keep = keep.map(str::to_string);
        self.write(None, move |tx| {
            revoke_of(tx, &user_id, &prefix, keep.as_deref(), at)
        })
        .await
    }

    async fn change_passphrase(
        &self,
        user_id: &str,
        passphrase_hash: &str,
        keep: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let (user_id, hash) = (user_id.to_string(), passphrase_hash.to_string());
        let keep = keep.map(str::to_string);
        let at = audit.at;
        self.write(Some(audit), move |tx| {
            let changed = tx.execute(
                "UPDATE users SET passphrase_hash = ?1 WHERE id = ?2",
                params![hash, user_id],
            )?;
            if changed != 1 {
                return Err(StoreError::NotFound("user"));
            }
            revoke_of(tx, &user_id, "", keep.as_deref(), at)
        })
        .await
    }

    async fn enqueue_message(&self, m: &OutboxMessage) -> Result<(), StoreError> {
        let m = m.clone();
        self.write(None, move |tx| {
            tx.execute(
                "INSERT INTO outbox (id, recipient, sealed_message, created_at, attempts, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    m.id,
                    m.recipient,
                    m.sealed_message,
                    unix_millis(m.created_at),
                    m.attempts,
                    unix_millis(m.next_attempt_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn due_messages(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let now = unix_millis(now);
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, recipient, sealed_message, created_at, attempts, next_attempt_at
                     FROM outbox WHERE sent_at IS NULL AND given_up_at IS NULL
                       AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, id LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now, limit.clamp(1, 1000)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                })?;
                rows.map(|r| {
                    let (id, recipient, sealed_message, created, attempts, next) = r?;
                    Ok(OutboxMessage {
                        id,
                        recipient,
                        sealed_message,
                        created_at: from_unix_millis(created)?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        next_attempt_at: from_unix_millis(next)?,
                    })
                })
                .collect()
            })
            .await
    }

    async fn record_delivery(&self, id: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let (id, delivery) = (id.to_string(), delivery.clone());
        self.write(None, move |tx| {
            match delivery {
                Delivery::Sent { at } => tx.execute(
                    "UPDATE outbox SET sent_at = ?1, attempts = attempts + 1, last_error = NULL
                     WHERE id = ?2",
                    params![unix_millis(at), id],
                )?,
                Delivery::Retry { retry_at, error } => tx.execute(
                    "UPDATE outbox SET next_attempt_at = ?1, attempts = attempts + 1, last_error = ?2
                     WHERE id = ?3",
                    params![unix_millis(retry_at), error, id],
                )?,
                Delivery::GiveUp { at, error } => tx.execute(
                    "UPDATE outbox SET given_up_at = ?1, attempts = attempts + 1, last_error = ?2
                     WHERE id = ?3",
                    params![unix_millis(at), error, id],
                )?,
            };
            Ok(())
        })
        .await
    }
}
