//! `FactorStore` for the SQLCipher control database. Single use comes from
//! conditional updates inside the one writer's transactions.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;

use super::control::SqliteControl;
use super::control_members::revoke_of;
use crate::factors::*;
use crate::model::AuditEvent;
use crate::{from_unix_millis, unix_millis, StoreError};

const TOTP_COLUMNS: &str = "user_id, sealed_secret, created_at, confirmed_at, last_step";
const CHALLENGE_COLUMNS: &str =
    "token_hash, user_id, created_at, expires_at, failures, client, user_agent";
const RESET_COLUMNS: &str = "token_hash, user_id, created_at, expires_at, used_at";
const PASSKEY_COLUMNS: &str = "id, user_id, name, credential, created_at, last_used_at";

fn passkey_row(r: &Row<'_>) -> rusqlite::Result<Result<PasskeyRecord, StoreError>> {
    let (id, user_id, name, credential, created, used): (
        String,
        String,
        String,
        String,
        i64,
        Option<i64>,
    ) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    );
    Ok((|| {
        Ok(PasskeyRecord {
            id,
            user_id,
            name,
            credential,
            created_at: from_unix_millis(created)?,
            last_used_at: used.map(from_unix_millis).transpose()?,
        })
    })())
}

fn insert_passkey(tx: &rusqlite::Transaction<'_>, p: &PasskeyRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            p.id,
            p.user_id,
            p.name,
            p.credential,
            unix_millis(p.created_at),
            p.last_used_at.map(unix_millis)
        ],
    )?;
    Ok(())
}

fn totp_row(r: &Row<'_>) -> rusqlite::Result<Result<TotpRecord, StoreError>> {
    let (user_id, sealed_secret, created, confirmed, last_step): (
        String,
        Vec<u8>,
        i64,
        Option<i64>,
        i64,
    ) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(TotpRecord {
            user_id,
            sealed_secret,
            created_at: from_unix_millis(created)?,
            confirmed_at: confirmed.map(from_unix_millis).transpose()?,
            last_step,
        })
    })())
}

fn challenge_row(r: &Row<'_>) -> rusqlite::Result<Result<MfaChallenge, StoreError>> {
    let (token_hash, user_id, created, expires, failures, client, user_agent): (
        String,
        String,
        i64,
        i64,
        i64,
        Option<String>,
        Option<String>,
    ) = (
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    );
    Ok((|| {
        Ok(MfaChallenge {
            token_hash,
            user_id,
            created_at: from_unix_millis(created)?,
            expires_at: from_unix_millis(expires)?,
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            client,
            user_agent,
        })
    })())
}

fn reset_row(r: &Row<'_>) -> rusqlite::Result<Result<PassphraseReset, StoreError>> {
    let (token_hash, user_id, created, expires, used): (String, String, i64, i64, Option<i64>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    Ok((|| {
        Ok(PassphraseReset {
            token_hash,
            user_id,
            created_at: from_unix_millis(created)?,
            expires_at: from_unix_millis(expires)?,
            used_at: used.map(from_unix_millis).transpose()?,
        })
    })())
}

fn insert_codes(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    hashes: &[String],
    at: i64,
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    for hash in hashes {
        tx.execute(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES (?1, ?2, ?3)",
            params![user_id, hash, at],
        )?;
    }
    Ok(())
}

#[async_trait]
impl FactorStore for SqliteControl {
    async fn totp(&self, user_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        let user_id = user_id.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {TOTP_COLUMNS} FROM totp_factors WHERE user_id = ?1"
                ))?
                .query_row([user_id], totp_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn begin_totp(&self, record: &TotpRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let r = record.clone();
        self.write(Some(audit), move |tx| {
            let confirmed: Option<Option<i64>> = tx
                .query_row(
                    "SELECT confirmed_at FROM totp_factors WHERE user_id = ?1",
                    [&r.user_id],
                    |row| row.get(0),
                )
                .optional()?;
            if matches!(confirmed, Some(Some(_))) {
                return Err(StoreError::Conflict(
                    "a confirmed authenticator is already enrolled".into(),
                ));
            }
            tx.execute(
                "INSERT INTO totp_factors (user_id, sealed_secret, created_at, confirmed_at, last_step)
                 VALUES (?1, ?2, ?3, NULL, ?4)
                 ON CONFLICT (user_id) DO UPDATE SET sealed_secret = excluded.sealed_secret,
                     created_at = excluded.created_at, last_step = excluded.last_step",
                params![
                    r.user_id,
                    r.sealed_secret,
                    unix_millis(r.created_at),
                    r.last_step
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        pending_since: OffsetDateTime,
        step: i64,
        recovery_hashes: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (user_id, hashes) = (user_id.to_string(), recovery_hashes.to_vec());
        let at = unix_millis(audit.at);
        let since = unix_millis(pending_since);
        self.write(Some(audit), move |tx| {
            let changed = tx.execute(
                "UPDATE totp_factors SET confirmed_at = ?1, last_step = ?2
                 WHERE user_id = ?3 AND confirmed_at IS NULL AND last_step < ?2 AND created_at = ?4",
                params![at, step, user_id, since],
            )?;
            if changed != 1 {
                return Err(StoreError::NotFound("pending authenticator"));
            }
            insert_codes(tx, &user_id, &hashes, at)
        })
        .await
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let user_id = user_id.to_string();
        self.write(None, move |tx| {
            Ok(tx.execute(
                "UPDATE totp_factors SET last_step = ?1
                 WHERE user_id = ?2 AND confirmed_at IS NOT NULL AND last_step < ?1",
                params![step, user_id],
            )? == 1)
        })
        .await
    }

    async fn remove_totp(&self, user_id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        self.write(Some(audit), move |tx| {
            let removed = tx.execute("DELETE FROM totp_factors WHERE user_id = ?1", [&user_id])?;
            if removed == 0 {
                return Err(StoreError::NotFound("authenticator"));
            }
            tx.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [&user_id])?;
            Ok(())
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hash: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (user_id, code_hash) = (user_id.to_string(), code_hash.to_string());
        self.write(None, move |tx| {
            Ok(tx.execute(
                "UPDATE recovery_codes SET used_at = ?1
                 WHERE user_id = ?2 AND code_hash = ?3 AND used_at IS NULL",
                params![unix_millis(at), user_id, code_hash],
            )? == 1)
        })
        .await
    }

    async fn replace_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[String],
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (user_id, hashes) = (user_id.to_string(), hashes.to_vec());
        self.write(Some(audit), move |tx| {
            insert_codes(tx, &user_id, &hashes, unix_millis(at))
        })
        .await
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<u32, StoreError> {
        let user_id = user_id.to_string();
        self.readers
            .with(move |conn| {
                let n: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
                    )?
                    .query_row([user_id], |r| r.get(0))?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            })
            .await
    }

    async fn create_mfa_challenge(&self, c: &MfaChallenge) -> Result<(), StoreError> {
        let c = c.clone();
        self.write(None, move |tx| {
            // Ended challenges go as new ones come (they are small and few).
            tx.execute(
                "DELETE FROM mfa_challenges WHERE expires_at <= ?1",
                [unix_millis(c.created_at)],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO mfa_challenges ({CHALLENGE_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)"
                ),
                params![
                    c.token_hash,
                    c.user_id,
                    unix_millis(c.created_at),
                    unix_millis(c.expires_at),
                    c.client,
                    c.user_agent
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn mfa_challenge(
        &self,
        token_hash: &str,
        now: OffsetDateTime,
        max_failures: u32,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        let token_hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {CHALLENGE_COLUMNS} FROM mfa_challenges
                     WHERE token_hash = ?1 AND expires_at > ?2 AND failures < ?3"
                ))?
                .query_row(
                    params![token_hash, unix_millis(now), i64::from(max_failures)],
                    challenge_row,
                )
                .optional()?
                .transpose()
            })
            .await
    }

    async fn fail_mfa_challenge(&self, token_hash: &str) -> Result<(), StoreError> {
        let token_hash = token_hash.to_string();
        self.write(None, move |tx| {
            tx.execute(
                "UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = ?1",
                [token_hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_mfa_challenge(&self, token_hash: &str) -> Result<bool, StoreError> {
        let token_hash = token_hash.to_string();
        self.write(None, move |tx| {
            Ok(tx.execute(
                "DELETE FROM mfa_challenges WHERE token_hash = ?1",
                [token_hash],
            )? == 1)
        })
        .await
    }

    async fn create_passphrase_reset(
        &self,
        reset: &PassphraseReset,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let r = reset.clone();
        self.write(Some(audit), move |tx| {
            let at = unix_millis(r.created_at);
            tx.execute(
                "UPDATE passphrase_resets SET used_at = ?1 WHERE user_id = ?2 AND used_at IS NULL",
                params![at, r.user_id],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO passphrase_resets ({RESET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, NULL)"
                ),
                params![r.token_hash, r.user_id, at, unix_millis(r.expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn passphrase_reset(
        &self,
        token_hash: &str,
    ) -> Result<Option<PassphraseReset>, StoreError> {
        let token_hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {RESET_COLUMNS} FROM passphrase_resets WHERE token_hash = ?1"
                ))?
                .query_row([token_hash], reset_row)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn complete_passphrase_reset(
        &self,
        token_hash: &str,
        passphrase_hash: &str,
        audit: &AuditEvent,
    ) -> Result<Vec<String>, StoreError> {
        let (token_hash, hash) = (token_hash.to_string(), passphrase_hash.to_string());
        let at = audit.at;
        self.write(Some(audit), move |tx| {
            let user_id: Option<String> = tx
                .query_row(
                    "UPDATE passphrase_resets SET used_at = ?1
                     WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1
                     RETURNING user_id",
                    params![unix_millis(at), token_hash],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(user_id) = user_id else {
                return Err(StoreError::NotFound("passphrase reset"));
            };
            tx.execute(
                "UPDATE users SET passphrase_hash = ?1 WHERE id = ?2",
                params![hash, user_id],
            )?;
            revoke_of(tx, &user_id, "", None, at)
        })
        .await
    }

    async fn set_session_factor(&self, token_hash: &str, factor: &str) -> Result<(), StoreError> {
        let (token_hash, factor) = (token_hash.to_string(), factor.to_string());
        self.write(None, move |tx| {
            tx.execute(
                "UPDATE sessions SET second_factor = ?1 WHERE token_hash = ?2",
                params![factor, token_hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_passkey(&self, p: &PasskeyRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let p = p.clone();
        self.write(Some(audit), move |tx| insert_passkey(tx, &p))
            .await
    }

    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, StoreError> {
        let user_id = user_id.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = ?1 ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map([user_id], passkey_row)?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row??);
                }
                Ok(out)
            })
            .await
    }

    async fn touch_passkey(
        &self,
        user_id: &str,
        id: &str,
        credential: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (user_id, id, credential) =
            (user_id.to_string(), id.to_string(), credential.to_string());
        self.write(None, move |tx| {
            tx.execute(
                "UPDATE passkeys SET credential = ?1, last_used_at = ?2 WHERE user_id = ?3 AND id = ?4",
                params![credential, unix_millis(at), user_id, id],
            )?;
            Ok(())
        })
        .await
    }

    async fn remove_passkey(
        &self,
        user_id: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (user_id, id) = (user_id.to_string(), id.to_string());
        self.write(Some(audit), move |tx| {
            let removed = tx.execute(
                "DELETE FROM passkeys WHERE user_id = ?1 AND id = ?2",
                params![user_id, id],
            )?;
            if removed == 0 {
                return Err(StoreError::NotFound("passkey"));
            }
            Ok(())
        })
        .await
    }

    async fn put_ceremony(&self, c: &Ceremony) -> Result<(), StoreError> {
        let c = c.clone();
        self.write(None, move |tx| {
            tx.execute(
                "INSERT INTO webauthn_ceremonies (token_hash, user_id, kind, state, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    c.token_hash,
                    c.user_id,
                    c.kind,
                    c.state,
                    unix_millis(c.expires_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_ceremony(
        &self,
        token_hash: &str,
        kind: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Ceremony>, StoreError> {
        let (token_hash, kind) = (token_hash.to_string(), kind.to_string());
        self.write(None, move |tx| {
            // Ended ones go as they are looked for.
            tx.execute(
                "DELETE FROM webauthn_ceremonies WHERE expires_at <= ?1",
                [unix_millis(now)],
            )?;
            let found: Option<(Option<String>, String, i64)> = tx
                .query_row(
                    "DELETE FROM webauthn_ceremonies WHERE token_hash = ?1 AND kind = ?2
                     RETURNING user_id, state, expires_at",
                    params![token_hash, kind],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            found
                .map(|(user_id, state, expires)| {
                    Ok(Ceremony {
                        token_hash: token_hash.clone(),
                        user_id,
                        kind: kind.clone(),
                        state,
                        expires_at: from_unix_millis(expires)?,
                    })
                })
                .transpose()
        })
        .await
    }

    async fn user_factors(&self, user_id: &str) -> Result<UserFactors, StoreError> {
        let totp = self
            .totp(user_id)
            .await?
            .filter(|t| t.confirmed_at.is_some());
        let passkeys = self.passkeys(user_id).await?;
        let id = user_id.to_string();
        let recovery_codes = self
            .readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT code_hash, used_at FROM recovery_codes WHERE user_id = ?1 ORDER BY code_hash",
                )?;
                let rows = stmt.query_map([id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (hash, used) = row?;
                    out.push((hash, used.map(from_unix_millis).transpose()?));
                }
                Ok(out)
            })
            .await?;
        Ok(UserFactors {
            user_id: user_id.to_string(),
            totp,
            recovery_codes,
            passkeys,
        })
    }

    async fn restore_factors(&self, f: &UserFactors, audit: &AuditEvent) -> Result<(), StoreError> {
        let f = f.clone();
        self.write(Some(audit), move |tx| {
            if let Some(t) = &f.totp {
                tx.execute(
                    &format!(
                        "INSERT INTO totp_factors ({TOTP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                    ),
                    params![
                        f.user_id,
                        t.sealed_secret,
                        unix_millis(t.created_at),
                        t.confirmed_at.map(unix_millis),
                        t.last_step
                    ],
                )?;
            }
            for (hash, used) in &f.recovery_codes {
                tx.execute(
                    "INSERT INTO recovery_codes (user_id, code_hash, created_at, used_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        f.user_id,
                        hash,
                        f.totp.as_ref().map_or(0, |t| unix_millis(t.created_at)),
                        used.map(unix_millis)
                    ],
                )?;
            }
            for p in &f.passkeys {
                insert_passkey(tx, p)?;
            }
            Ok(())
        })
        .await
    }
}
