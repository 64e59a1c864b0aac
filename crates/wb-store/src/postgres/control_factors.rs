//! `FactorStore` for the PostgreSQL control database: the same contract as
//! the SQLCipher backend. Single use comes from conditional single-row
//! updates, which PostgreSQL serializes across nodes.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::Row;

use super::control::{append_audit, begin, bytea, int8, text, PgControl};
use super::control_members::revoke_of;
use crate::factors::*;
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

const TOTP_COLUMNS: &str = "user_id, sealed_secret, created_at, confirmed_at, last_step";
const CHALLENGE_COLUMNS: &str =
    "token_hash, user_id, created_at, expires_at, failures, client, user_agent";
const RESET_COLUMNS: &str = "token_hash, user_id, created_at, expires_at, used_at";
const PASSKEY_COLUMNS: &str = "id, user_id, name, credential, created_at, last_used_at";

fn passkey_row(r: &Row) -> Result<PasskeyRecord, StoreError> {
    Ok(PasskeyRecord {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        credential: r.try_get(3)?,
        created_at: from_unix_millis(r.try_get(4)?)?,
        last_used_at: r
            .try_get::<_, Option<i64>>(5)?
            .map(from_unix_millis)
            .transpose()?,
    })
}

async fn insert_passkey(
    tx: &tokio_postgres::Transaction<'_>,
    p: &PasskeyRecord,
) -> Result<(), StoreError> {
    let (created, used) = (unix_millis(p.created_at), p.last_used_at.map(unix_millis));
    tx.execute_typed(
        &format!("INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            text(&p.id),
            text(&p.user_id),
            text(&p.name),
            text(&p.credential),
            int8(&created),
            int8(&used),
        ],
    )
    .await?;
    Ok(())
}

fn totp_row(r: &Row) -> Result<TotpRecord, StoreError> {
    Ok(TotpRecord {
        user_id: r.try_get(0)?,
        sealed_secret: r.try_get(1)?,
        created_at: from_unix_millis(r.try_get(2)?)?,
        confirmed_at: r
            .try_get::<_, Option<i64>>(3)?
            .map(from_unix_millis)
            .transpose()?,
        last_step: r.try_get(4)?,
    })
}

fn challenge_row(r: &Row) -> Result<MfaChallenge, StoreError> {
    Ok(MfaChallenge {
        token_hash: r.try_get(0)?,
        user_id: r.try_get(1)?,
        created_at: from_unix_millis(r.try_get(2)?)?,
        expires_at: from_unix_millis(r.try_get(3)?)?,
        failures: u32::try_from(r.try_get::<_, i64>(4)?).unwrap_or(u32::MAX),
        client: r.try_get(5)?,
        user_agent: r.try_get(6)?,
    })
}

fn reset_row(r: &Row) -> Result<PassphraseReset, StoreError> {
    Ok(PassphraseReset {
        token_hash: r.try_get(0)?,
        user_id: r.try_get(1)?,
        created_at: from_unix_millis(r.try_get(2)?)?,
        expires_at: from_unix_millis(r.try_get(3)?)?,
        used_at: r
            .try_get::<_, Option<i64>>(4)?
            .map(from_unix_millis)
            .transpose()?,
    })
}

async fn insert_codes(
    tx: &tokio_postgres::Transaction<'_>,
    user_id: &str,
    hashes: &[String],
    at: i64,
) -> Result<(), StoreError> {
    tx.execute_typed(
        "DELETE FROM recovery_codes WHERE user_id = $1",
        &[text(&user_id)],
    )
    .await?;
    for hash in hashes {
        tx.execute_typed(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
            &[text(&user_id), text(hash), int8(&at)],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl FactorStore for PgControl {
    async fn totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {TOTP_COLUMNS} FROM totp_factors WHERE user_id = $1"),
            &[text(&user_id)],
        )
        .await?
        .map(|r| totp_row(&r))
        .transpose()
    }

    async fn begin_totp(&self, r: &TotpRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let created = unix_millis(r.created_at);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // A confirmed factor is never replaced: the update's condition
        // fails and no row is written.
        let written = tx
            .execute_typed(
                "INSERT INTO totp_factors (user_id, sealed_secret, created_at, confirmed_at, last_step)
                 VALUES ($1, $2, $3, NULL, $4)
                 ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret,
                     created_at = excluded.created_at, last_step = excluded.last_step
                 WHERE totp_factors.confirmed_at IS NULL",
                &[
                    text(&r.user_id),
                    bytea(&r.sealed_secret),
                    int8(&created),
                    int8(&r.last_step),
                ],
            )
            .await?;
        if written != 1 {
            return Err(StoreError::Conflict(
                "a confirmed authenticator is already enrolled".into(),
            ));
        }
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        pending_since: OffsetDateTime,
        step: i64,
        recovery_hashes: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = unix_millis(audit.at);
        let since = unix_millis(pending_since);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let changed = tx
            .execute_typed(
                "UPDATE totp_factors SET confirmed_at = $1, last_step = $2
                 WHERE user_id = $3 AND confirmed_at IS NULL AND last_step < $2
                   AND created_at = $4",
                &[int8(&at), int8(&step), text(&user_id), int8(&since)],
            )
            .await?;
        if changed != 1 {
            return Err(StoreError::NotFound("pending authenticator"));
        }
        insert_codes(&tx, user_id, recovery_hashes, at).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let changed = self
            .exec_audited(
                "UPDATE totp_factors SET last_step = $1
                 WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1",
                &[int8(&step), text(&user_id)],
                None,
            )
            .await?;
        Ok(changed == 1)
    }

    async fn remove_totp(&self, user_id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let removed = tx
            .execute_typed(
                "DELETE FROM totp_factors WHERE user_id = $1",
                &[text(&user_id)],
            )
            .await?;
        if removed == 0 {
            return Err(StoreError::NotFound("authenticator"));
        }
        tx.execute_typed(
            "DELETE FROM recovery_codes WHERE user_id = $1",
            &[text(&user_id)],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let at = unix_millis(at);
        let changed = self
            .exec_audited(
                "UPDATE recovery_codes SET used_at = $1
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                &[int8(&at), text(&user_id), text(&code_hash)],
                None,
            )
            .await?;
        Ok(changed == 1)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        insert_codes(&tx, user_id, hashes, unix_millis(at)).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<u32, StoreError> {
        let rows = self
            .query(
                "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                &[text(&user_id)],
            )
            .await?;
        let n: i64 = match rows.first() {
            Some(r) => r.try_get(0)?,
            None => 0,
        };
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn create_mfa_challenge(&self, c: &MfaChallenge) -> Result<(), StoreError> {
        let (created, expires) = (unix_millis(c.created_at), unix_millis(c.expires_at));
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // Ended challenges go as new ones come (they are small and few).
        tx.execute_typed(
            "DELETE FROM mfa_challenges WHERE expires_at <= $1",
            &[int8(&created)],
        )
        .await?;
        tx.execute_typed(
            &format!(
                "INSERT INTO mfa_challenges ({CHALLENGE_COLUMNS})
                 VALUES ($1, $2, $3, $4, 0, $5, $6)"
            ),
            &[
                text(&c.token_hash),
                text(&c.user_id),
                int8(&created),
                int8(&expires),
                text(&c.client),
                text(&c.user_agent),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mfa_challenge(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
        max_failures: u32,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        let (now, max) = (unix_millis(now), i64::from(max_failures));
        self.query_opt(
            &format!(
                "SELECT {CHALLENGE_COLUMNS} FROM mfa_challenges
                 WHERE token_hash = $1 AND expires_at > $2 AND failures < $3"
            ),
            &[text(&token_hash), int8(&now), int8(&max)],
        )
        .await?
        .map(|r| challenge_row(&r))
        .transpose()
    }

    async fn fail_mfa_challenge(&self, token_hash: &str) -> Result<(), StoreError> {
        self.exec_audited(
            "UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = $1",
            &[text(&token_hash)],
            None,
        )
        .await?;
        Ok(())
    }

    async fn take_mfa_challenge(&self, token_hash: &str) -> Result<bool, StoreError> {
        let deleted = self
            .exec_audited(
                "DELETE FROM mfa_challenges WHERE token_hash = $1",
                &[text(&token_hash)],
                None,
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn create_passphrase_reset(
        &self,
        r: &PassphraseReset,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (created, expires) = (unix_millis(r.created_at), unix_millis(r.expires_at));
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        tx.execute_typed(
            "UPDATE passphrase_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
            &[int8(&created), text(&r.user_id)],
        )
        .await?;
        tx.execute_typed(
            &format!(
                "INSERT INTO passphrase_resets ({RESET_COLUMNS}) VALUES ($1, $2, $3, $4, NULL)"
            ),
            &[
                text(&r.token_hash),
                text(&r.user_id),
                int8(&created),
                int8(&expires),
            ],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn passphrase_reset(
        &self,
        token_hash: &str,
    ) -> Result<Option<PassphraseReset>, StoreError> {
        self.query_opt(
            &format!("SELECT {RESET_COLUMNS} FROM passphrase_resets WHERE token_hash = $1"),
            &[text(&token_hash)],
        )
        .await?
        .map(|r| reset_row(&r))
        .transpose()
    }

    async fn complete_passphrase_reset(
        &self,
        token_hash: &str,
        passphrase_hash: &str,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let at = unix_millis(audit.at);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let row = tx
            .query_typed_opt(
                "UPDATE passphrase_resets SET used_at = $1
                 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
                 RETURNING user_id",
                &[int8(&at), text(&token_hash)],
            )
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound("passphrase reset"));
        };
        let user_id: String = row.try_get(0)?;
        tx.execute_typed(
            "UPDATE users SET passphrase_hash = $1 WHERE id = $2",
            &[text(&passphrase_hash), text(&user_id)],
        )
        .await?;
        let revoked = revoke_of(&tx, &user_id, "", None, audit.at).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn set_session_factor(&self, token_hash: &str, factor: &str) -> Result<(), StoreError> {
        self.exec_audited(
            "UPDATE sessions SET second_factor = $1 WHERE token_hash = $2",
            &[text(&factor), text(&token_hash)],
            None,
        )
        .await?;
        Ok(())
    }

    async fn add_passkey(&self, p: &PasskeyRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        insert_passkey(&tx, p).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        self.query(
            &format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
            ),
            &[text(&user_id)],
        )
        .await?
        .iter()
        .map(passkey_row)
        .collect()
    }

    async fn touch_passkey(
        &self,
        user_id: &str,
        id: &str,
        credential: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = unix_millis(at);
        self.exec_audited(
            "UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE user_id = $3 AND id = $4",
            &[text(&credential), int8(&at), text(&user_id), text(&id)],
            None,
        )
        .await?;
        Ok(())
    }

    async fn remove_passkey(
        &self,
        user_id: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let removed = tx
            .execute_typed(
                "DELETE FROM passkeys WHERE user_id = $1 AND id = $2",
                &[text(&user_id), text(&id)],
            )
            .await?;
        if removed == 0 {
            return Err(StoreError::NotFound("passkey"));
        }
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_ceremony(&self, c: &Ceremony) -> Result<(), StoreError> {
        let expires = unix_millis(c.expires_at);
        self.exec_audited(
            "INSERT INTO webauthn_ceremonies (token_hash, user_id, kind, state, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                text(&c.token_hash),
                text(&c.user_id),
                text(&c.kind),
                text(&c.state),
                int8(&expires),
            ],
            None,
        )
        .await?;
        Ok(())
    }

    async fn take_ceremony(
        &self,
        token_hash: &str,
        kind: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Ceremony>, StoreError> {
        let now = unix_millis(now);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        tx.execute_typed(
            "DELETE FROM webauthn_ceremonies WHERE expires_at <= $1",
            &[int8(&now)],
        )
        .await?;
        let row = tx
            .query_typed_opt(
                "DELETE FROM webauthn_ceremonies WHERE token_hash = $1 AND kind = $2
                 RETURNING user_id, state, expires_at",
                &[text(&token_hash), text(&kind)],
            )
            .await?;
        tx.commit().await?;
        row.map(|r| {
            Ok(Ceremony {
                token_hash: token_hash.to_string(),
                user_id: r.try_get(0)?,
                kind: kind.to_string(),
                state: r.try_get(1)?,
                expires_at: from_unix_millis(r.try_get(2)?)?,
            })
        })
        .transpose()
    }

    async fn user_factors(&self, user_id: &str) -> Result<UserFactors, StoreError> {
        let totp = self
            .totp(user_id)
            .await?
            .filter(|t| t.confirmed_at.is_some());
        let passkeys = self.passkeys(user_id).await?;
        let recovery_codes = self
            .query(
                "SELECT code_hash, used_at FROM recovery_codes WHERE user_id = $1 ORDER BY code_hash",
                &[text(&user_id)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<_, String>(0)?,
                    r.try_get::<_, Option<i64>>(1)?
                        .map(from_unix_millis)
                        .transpose()?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(UserFactors {
            user_id: user_id.to_string(),
            totp,
            recovery_codes,
            passkeys,
        })
    }

    async fn restore_factors(&self, f: &UserFactors, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let created = f.totp.as_ref().map_or(0, |t| unix_millis(t.created_at));
        if let Some(t) = &f.totp {
            let confirmed = t.confirmed_at.map(unix_millis);
            tx.execute_typed(
                &format!("INSERT INTO totp_factors ({TOTP_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                &[
                    text(&f.user_id),
                    bytea(&t.sealed_secret),
                    int8(&created),
                    int8(&confirmed),
                    int8(&t.last_step),
                ],
            )
            .await?;
        }
        for (hash, used) in &f.recovery_codes {
            let used = used.map(unix_millis);
            tx.execute_typed(
                "INSERT INTO recovery_codes (user_id, code_hash, created_at, used_at)
                 VALUES ($1, $2, $3, $4)",
                &[text(&f.user_id), text(hash), int8(&created), int8(&used)],
            )
            .await?;
        }
        for p in &f.passkeys {
            insert_passkey(&tx, p).await?;
        }
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
