//! `MemberStore` for the PostgreSQL control database: the same contract as
//! the SQLCipher backend. Membership changes lock the company's row first,
//! so concurrent changes on several nodes see each other's owner count.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::{Row, Transaction};
use wb_core::members::{check_change, MemberChange};
use wb_core::Role;

use super::control::{append_audit, begin, bytea, int8, parse_ts, text, ts, PgControl};
use super::control_rows::{insert_user, parse_role, session_row, SESSION_COLUMNS};
use crate::members::*;
use crate::model::{AuditEvent, SessionRecord};
use crate::{from_unix_millis, unix_millis, StoreError};
use wb_core::security_policy::SecurityPolicy;

const INVITATION_COLUMNS: &str = "id, company_id, email, role, token_hash, invited_by, \
     created_at, expires_at, accepted_at, accepted_by, revoked_at";

const MEMBER_COLUMNS: &str = "u.id, u.email, u.name, m.role, u.last_login_at";

fn invitation_row(r: &Row) -> Result<InvitationRecord, StoreError> {
    let millis = |i: usize| -> Result<Option<OffsetDateTime>, StoreError> {
        r.try_get::<_, Option<i64>>(i)?
            .map(from_unix_millis)
            .transpose()
    };
    Ok(InvitationRecord {
        id: r.try_get(0)?,
        company_id: r.try_get(1)?,
        email: r.try_get(2)?,
        role: parse_role(r.try_get(3)?)?,
        token_hash: r.try_get(4)?,
        invited_by: r.try_get(5)?,
        created_at: from_unix_millis(r.try_get(6)?)?,
        expires_at: from_unix_millis(r.try_get(7)?)?,
        accepted_at: millis(8)?,
        accepted_by: r.try_get(9)?,
        revoked_at: millis(10)?,
    })
}

fn member_row(r: &Row) -> Result<MemberRecord, StoreError> {
    let last: Option<&str> = r.try_get(4)?;
    Ok(MemberRecord {
        user_id: r.try_get(0)?,
        email: r.try_get(1)?,
        name: r.try_get(2)?,
        role: parse_role(r.try_get(3)?)?,
        last_login_at: last.map(parse_ts).transpose()?,
    })
}

async fn revoke_keys_of(
    tx: &Transaction<'_>,
    company_id: &str,
    user_id: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let (at, creator) = (ts(at), format!("user:{user_id}"));
    tx.execute_typed(
        "UPDATE api_keys SET revoked_at = $1
         WHERE company_id = $2 AND created_by = $3 AND revoked_at IS NULL",
        &[text(&at), text(&company_id), text(&creator)],
    )
    .await?;
    Ok(())
}

async fn same_email(tx: &Transaction<'_>, user_id: &str, email: &str) -> Result<bool, StoreError> {
    let row = tx
        .query_typed_opt("SELECT email FROM users WHERE id = $1", &[text(&user_id)])
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<_, &str>(0)?.eq_ignore_ascii_case(email),
        None => false,
    })
}

/// Revokes a user's live sessions whose hash starts with `prefix`, but `keep`.
pub(super) async fn revoke_of(
    tx: &Transaction<'_>,
    user_id: &str,
    prefix: &str,
    keep: Option<&str>,
    at: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    // The prefix is hex from the caller's own session list; anything else
    // matches nothing.
    if !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(Vec::new());
    }
    let keep = keep.unwrap_or("");
    let at = ts(at);
    let rows = tx
        .query_typed(
            "UPDATE sessions SET revoked_at = $1
             WHERE user_id = $2 AND revoked_at IS NULL AND left(token_hash, length($3)) = $3
               AND token_hash <> $4
             RETURNING token_hash",
            &[text(&at), text(&user_id), text(&prefix), text(&keep)],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<_, String>(0)?))
        .collect()
}

#[async_trait]
impl MemberStore for PgControl {
    async fn create_invitation(
        &self,
        i: &InvitationRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let role = i.role.as_str();
        let (created, expires) = (unix_millis(i.created_at), unix_millis(i.expires_at));
        self.exec_audited(
            &format!(
                "INSERT INTO invitations ({INVITATION_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL)"
            ),
            &[
                text(&i.id),
                text(&i.company_id),
                text(&i.email),
                text(&role),
                text(&i.token_hash),
                text(&i.invited_by),
                int8(&created),
                int8(&expires),
            ],
            Some(audit),
        )
        .await?;
        Ok(())
    }

    async fn pending_invitations(
        &self,
        company_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<InvitationRecord>, StoreError> {
        let now = unix_millis(now);
        self.query(
            &format!(
                "SELECT {INVITATION_COLUMNS} FROM invitations
                 WHERE company_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL
                   AND expires_at > $2
                 ORDER BY created_at, id"
            ),
            &[text(&company_id), int8(&now)],
        )
        .await?
        .iter()
        .map(invitation_row)
        .collect()
    }

    async fn revoke_invitation(
        &self,
        company_id: &str,
        id: &str,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let at = unix_millis(at);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let changed = tx
            .execute_typed(
                "UPDATE invitations SET revoked_at = $1
                 WHERE id = $2 AND company_id = $3 AND accepted_at IS NULL
                   AND revoked_at IS NULL AND expires_at > $1",
                &[int8(&at), text(&id), text(&company_id)],
            )
            .await?;
        if changed != 1 {
            // Nothing revoked, nothing recorded.
            return Ok(false);
        }
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn invitation_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1"),
            &[text(&token_hash)],
        )
        .await?
        .as_ref()
        .map(invitation_row)
        .transpose()
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        joiner: &Joiner,
        now: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<Accepted, StoreError> {
        let now = unix_millis(now);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // FOR UPDATE: a concurrent acceptance waits, then finds it used.
        let invitation = tx
            .query_typed_opt(
                &format!(
                    "SELECT {INVITATION_COLUMNS} FROM invitations
                     WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL
                       AND expires_at > $2
                     FOR UPDATE"
                ),
                &[text(&token_hash), int8(&now)],
            )
            .await?
            .as_ref()
            .map(invitation_row)
            .transpose()?
            .ok_or(StoreError::NotFound("invitation"))?;
        let not_invited =
            || StoreError::Conflict("the account's email is not the invited one".into());
        let user_id = match joiner {
            Joiner::NewUser(user) => {
                if !user.email.eq_ignore_ascii_case(&invitation.email) {
                    return Err(not_invited());
                }
                insert_user(&tx, user).await?;
                user.id.clone()
            }
            Joiner::Existing { user_id } => {
                if !same_email(&tx, user_id, &invitation.email).await? {
                    return Err(not_invited());
                }
                user_id.clone()
            }
        };
        let role = invitation.role.as_str();
        let inserted = tx
            .execute_typed(
                "INSERT INTO memberships (company_id, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (company_id, user_id) DO NOTHING",
                &[text(&invitation.company_id), text(&user_id), text(&role)],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(
                "this account is already a member of the company".into(),
            ));
        }
        tx.execute_typed(
            "UPDATE invitations SET accepted_at = $1, accepted_by = $2 WHERE id = $3",
            &[int8(&now), text(&user_id), text(&invitation.id)],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(Accepted {
            company_id: invitation.company_id,
            user_id,
            role: invitation.role,
        })
    }

    async fn members(&self, company_id: &str) -> Result<Vec<MemberRecord>, StoreError> {
        self.query(
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.company_id = $1 ORDER BY u.email COLLATE \"C\", u.id COLLATE \"C\""
            ),
            &[text(&company_id)],
        )
        .await?
        .iter()
        .map(member_row)
        .collect()
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
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // One membership change per company at a time, on every node.
        tx.execute_typed(
            "SELECT 1 FROM companies WHERE id = $1 FOR UPDATE",
            &[text(&company_id)],
        )
        .await?;
        let current = tx
            .query_typed_opt(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
                     WHERE m.company_id = $1 AND m.user_id = $2"
                ),
                &[text(&company_id), text(&user_id)],
            )
            .await?
            .as_ref()
            .map(member_row)
            .transpose()?
            .ok_or(StoreError::NotFound("member"))?;
        let owners: i64 = tx
            .query_typed_one(
                "SELECT count(*) FROM memberships WHERE company_id = $1 AND role = 'owner'",
                &[text(&company_id)],
            )
            .await?
            .try_get(0)?;
        check_change(
            actor_role,
            current.role,
            change,
            usize::try_from(owners).unwrap_or(0),
        )?;
        let answer = match change {
            MemberChange::SetRole(role) => {
                let name = role.as_str();
                tx.execute_typed(
                    "UPDATE memberships SET role = $1 WHERE company_id = $2 AND user_id = $3",
                    &[text(&name), text(&company_id), text(&user_id)],
                )
                .await?;
                if wb_core::members::lowers(current.role, role) {
                    revoke_keys_of(&tx, company_id, user_id, at).await?;
                }
                Some(MemberRecord { role, ..current })
            }
            MemberChange::Remove => {
                tx.execute_typed(
                    "DELETE FROM memberships WHERE company_id = $1 AND user_id = $2",
                    &[text(&company_id), text(&user_id)],
                )
                .await?;
                revoke_keys_of(&tx, company_id, user_id, at).await?;
                None
            }
        };
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(answer)
    }

    async fn access_facts(
        &self,
        user_id: Option<&str>,
        company_id: &str,
    ) -> Result<(Option<Role>, Option<SecurityPolicy>), StoreError> {
        let row = self
            .query_opt(
                "SELECT (SELECT m.role FROM memberships m JOIN companies c ON c.id = m.company_id
                         WHERE m.company_id = $2 AND m.user_id = $1 AND c.status = 'active'),
                        p.mfa_required, p.session_ttl_minutes, p.idle_timeout_minutes,
                        p.ip_allowlist, p.min_passphrase_strength, p.api_key_max_days,
                        p.key_max_age_days
                 FROM (SELECT 1) AS one LEFT JOIN company_policies p ON p.company_id = $2",
                &[text(&user_id), text(&company_id)],
            )
            .await?;
        let Some(r) = row else {
            return Ok((None, None));
        };
        let role = r
            .try_get::<_, Option<&str>>(0)?
            .map(parse_role)
            .transpose()?;
        let policy = match (
            r.try_get::<_, Option<i64>>(1)?,
            r.try_get::<_, Option<&str>>(4)?,
            r.try_get::<_, Option<i64>>(5)?,
        ) {
            (Some(mfa), Some(list), Some(strength)) => Some(policy_from_row(
                mfa,
                r.try_get(2)?,
                r.try_get(3)?,
                list,
                strength,
                r.try_get(6)?,
                r.try_get(7)?,
            )?),
            _ => None,
        };
        Ok((role, policy))
    }

    async fn company_policy(&self, company_id: &str) -> Result<Option<SecurityPolicy>, StoreError> {
        let row = self
            .query_opt(
                "SELECT mfa_required, session_ttl_minutes, idle_timeout_minutes,
                        ip_allowlist, min_passphrase_strength, api_key_max_days,
                        key_max_age_days
                 FROM company_policies WHERE company_id = $1",
                &[text(&company_id)],
            )
            .await?;
        row.map(|r| {
            policy_from_row(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
            )
        })
        .transpose()
    }

    async fn put_company_policy(
        &self,
        company_id: &str,
        p: &SecurityPolicy,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mfa = i64::from(p.mfa_required);
        let ttl = p.session_ttl_minutes.map(i64::from);
        let idle = p.idle_timeout_minutes.map(i64::from);
        let list = allowlist_text(p);
        let strength = i64::from(p.min_passphrase_strength);
        let days = p.api_key_max_days.map(i64::from);
        let key_age = p.key_max_age_days.map(i64::from);
        let at = unix_millis(audit.at);
        self.exec_audited(
            "INSERT INTO company_policies (company_id, mfa_required, session_ttl_minutes,
                 idle_timeout_minutes, ip_allowlist, min_passphrase_strength,
                 api_key_max_days, updated_at, updated_by, key_max_age_days)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (company_id) DO UPDATE SET
                 mfa_required = EXCLUDED.mfa_required,
                 session_ttl_minutes = EXCLUDED.session_ttl_minutes,
                 idle_timeout_minutes = EXCLUDED.idle_timeout_minutes,
                 ip_allowlist = EXCLUDED.ip_allowlist,
                 min_passphrase_strength = EXCLUDED.min_passphrase_strength,
                 api_key_max_days = EXCLUDED.api_key_max_days,
                 key_max_age_days = EXCLUDED.key_max_age_days,
                 updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
            &[
                text(&company_id),
                int8(&mfa),
                int8(&ttl),
                int8(&idle),
                text(&list),
                int8(&strength),
                int8(&days),
                int8(&at),
                text(&audit.actor.id),
                int8(&key_age),
            ],
            Some(audit),
        )
        .await?;
        Ok(())
    }

    async fn touch_session(&self, token_hash: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let at = unix_millis(at);
        self.exec_audited(
            "UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2",
            &[int8(&at), text(&token_hash)],
            None,
        )
        .await?;
        Ok(())
    }

    async fn session_last_seen(
        &self,
        token_hash: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let row = self
            .query_opt(
                "SELECT last_seen_at FROM sessions WHERE token_hash = $1",
                &[text(&token_hash)],
            )
            .await?;
        match row {
            Some(r) => r
                .try_get::<_, Option<i64>>(0)?
                .map(from_unix_millis)
                .transpose(),
            None => Ok(None),
        }
    }

    async fn sessions_of(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions
                     WHERE user_id = $1 AND revoked_at IS NULL
                     ORDER BY created_at DESC, token_hash"
                ),
                &[text(&user_id)],
            )
            .await?;
        let mut live = Vec::new();
        for row in &rows {
            let session = session_row(row)?;
            if session.expires_at > now {
                live.push(session);
            }
        }
        Ok(live)
    }

    async fn revoke_sessions_of(
        &self,
        user_id: &str,
        prefix: &str,
        keep: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let revoked = revoke_of(&tx, user_id, prefix, keep, at).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn change_passphrase(
        &self,
        user_id: &str,
        passphrase_hash: &str,
        keep: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let changed = tx
            .execute_typed(
                "UPDATE users SET passphrase_hash = $1 WHERE id = $2",
                &[text(&passphrase_hash), text(&user_id)],
            )
            .await?;
        if changed != 1 {
            return Err(StoreError::NotFound("user"));
        }
        let revoked = revoke_of(&tx, user_id, "", keep, audit.at).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn enqueue_message(&self, m: &OutboxMessage) -> Result<(), StoreError> {
        let (created, next) = (unix_millis(m.created_at), unix_millis(m.next_attempt_at));
        let attempts = i64::from(m.attempts);
        self.exec_audited(
            "INSERT INTO outbox (id, recipient, sealed_message, created_at, attempts, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                text(&m.id),
                text(&m.recipient),
                bytea(&m.sealed_message),
                int8(&created),
                int8(&attempts),
                int8(&next),
            ],
            None,
        )
        .await?;
        Ok(())
    }

    async fn due_messages(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let (now, limit) = (unix_millis(now), i64::from(limit.clamp(1, 1000)));
        self.query(
            "SELECT id, recipient, sealed_message, created_at, attempts::bigint, next_attempt_at
             FROM outbox WHERE sent_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= $1
             ORDER BY next_attempt_at, id LIMIT $2",
            &[int8(&now), int8(&limit)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(OutboxMessage {
                id: r.try_get(0)?,
                recipient: r.try_get(1)?,
                sealed_message: r.try_get(2)?,
                created_at: from_unix_millis(r.try_get(3)?)?,
                attempts: u32::try_from(r.try_get::<_, i64>(4)?).unwrap_or(u32::MAX),
                next_attempt_at: from_unix_millis(r.try_get(5)?)?,
            })
        })
        .collect()
    }

    async fn record_delivery(&self, id: &str, delivery: &Delivery) -> Result<(), StoreError> {
        let (sql, at, error) = match delivery {
            Delivery::Sent { at } => (
                "UPDATE outbox SET sent_at = $1, attempts = attempts + 1, last_error = $2 WHERE id = $3",
                *at,
                None,
            ),
            Delivery::Retry { retry_at, error } => (
                "UPDATE outbox SET next_attempt_at = $1, attempts = attempts + 1, last_error = $2 WHERE id = $3",
                *retry_at,
                Some(error.clone()),
            ),
            Delivery::GiveUp { at, error } => (
                "UPDATE outbox SET given_up_at = $1, attempts = attempts + 1, last_error = $2 WHERE id = $3",
                *at,
                Some(error.clone()),
            ),
        };
        let at = unix_millis(at);
        self.exec_audited(sql, &[int8(&at), text(&error), text(&id)], None)
            .await?;
        Ok(())
    }
}
