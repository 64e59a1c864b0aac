//! The control plane in its own SQLCipher database: companies (with wrapped
//! DEKs), users, memberships, sessions, API keys and the platform audit log.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use time::OffsetDateTime;
use wb_core::audit::{AuditFields, Checkpoint};
use wb_core::Role;
use wb_crypto::DataKey;

use super::conn::{open_encrypted, ts, OpenMode, ReaderPool};
use super::control_rows::*;
use crate::chain;
use crate::migrations::{self, Database};
use crate::model::*;
use crate::{ControlStore, StoreError};

pub struct SqliteControl {
    writer: Arc<Mutex<Connection>>,
    pub(super) readers: Arc<ReaderPool>,
}

impl std::fmt::Debug for SqliteControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteControl")
    }
}

impl SqliteControl {
    /// Opens (creating when absent) the control database at `path`.
    pub fn open(path: &Path, key: &DataKey) -> Result<SqliteControl, StoreError> {
        let mode = if path.exists() {
            OpenMode::Existing
        } else {
            OpenMode::Create
        };
        let mut conn = open_encrypted(path, key, mode)?;
        migrations::sqlite::migrate(&mut conn, Database::Control, migrations::SQLITE_CONTROL)?;
        Ok(SqliteControl {
            writer: Arc::new(Mutex::new(conn)),
            readers: Arc::new(ReaderPool::new(path.to_path_buf(), key.clone(), 8)),
        })
    }

    /// Runs `f` in one write transaction, appending `audit` to it when given.
    pub(super) async fn write<T, F>(
        &self,
        audit: Option<&AuditEvent>,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let writer = self.writer.clone();
        let audit = audit.cloned();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .map_err(|_| StoreError::Backend("control writer poisoned".into()))?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            if let Some(event) = &audit {
                append_audit(&tx, event)?;
            }
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("control task failed: {e}")))?
    }
}

pub(super) fn append_audit(tx: &Transaction<'_>, event: &AuditEvent) -> Result<(), StoreError> {
    let (prev_seq, prev_hash): (i64, String) = tx
        .query_row(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, chain::GENESIS.to_string()));
    let seq = prev_seq + 1;
    let a = &event.actor;
    let fields = AuditFields {
        at: ts(event.at),
        actor: a.id.clone(),
        auth: a.auth.clone(),
        client: a.client.clone().unwrap_or_default(),
        request_id: a.request_id.clone().unwrap_or_default(),
        company_id: event.company_id.clone().unwrap_or_default(),
        action: event.action.into(),
        target: event.target.clone().unwrap_or_default(),
        outcome: event.outcome.as_str().to_string(),
        detail: event.detail.clone().unwrap_or_default(),
    };
    let hash = fields.hash(&prev_hash, seq);
    tx.prepare_cached(
        "INSERT INTO audit_events (seq, at, actor, auth, client, request_id, company_id, action,
                                   target, outcome, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        seq,
        fields.at,
        a.id,
        a.auth,
        a.client,
        a.request_id,
        event.company_id,
        event.action.as_str(),
        event.target,
        fields.outcome,
        event.detail,
        prev_hash,
        hash
    ])?;
    Ok(())
}

const AUDIT_COLUMNS: &str =
    "seq, at, actor, auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash";

fn audit_row(r: &Row<'_>) -> rusqlite::Result<StoredAuditEvent> {
    Ok(StoredAuditEvent {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        auth: r.get(3)?,
        client: r.get(4)?,
        request_id: r.get(5)?,
        company_id: r.get(6)?,
        action: r.get(7)?,
        target: r.get(8)?,
        outcome: r.get(9)?,
        detail: r.get(10)?,
        prev_hash: r.get(11)?,
        hash: r.get(12)?,
    })
}

fn insert_api_key(tx: &Transaction<'_>, k: &ApiKeyRecord) -> Result<(), StoreError> {
    tx.execute(
        &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)"),
        params![
            k.id,
            k.company_id,
            k.name,
            k.role.as_str(),
            k.token_hash,
            k.created_by,
            ts(k.created_at),
            ts(k.expires_at)
        ],
    )?;
    Ok(())
}

#[async_trait]
impl ControlStore for SqliteControl {
    async fn signup(
        &self,
        company: &CompanyRecord,
        owner: &UserRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let (company, owner) = (company.clone(), owner.clone());
        self.write(Some(audit), move |tx| {
            insert_company(tx, &company)?;
            insert_user(tx, &owner)?;
            tx.execute(
                "INSERT INTO memberships (company_id, user_id, role) VALUES (?1, ?2, 'owner')",
                params![company.id, owner.id],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_company(
        &self,
        company: &CompanyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let company = company.clone();
        self.write(Some(audit), move |tx| insert_company(tx, &company))
            .await
    }

    async fn company(&self, id: &str) -> Result<Option<CompanyRecord>, StoreError> {
        let id = id.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(
                    "SELECT id, name, status, wrapped_dek, created_at FROM companies WHERE id = ?1",
                )?
                .query_row([id], row_company)
                .optional()?
                .map(to_company)
                .transpose()
            })
            .await
    }

    async fn companies(&self) -> Result<Vec<CompanyRecord>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, name, status, wrapped_dek, created_at FROM companies ORDER BY created_at, id",
                )?;
                let rows = stmt.query_map([], row_company)?;
                rows.map(|r| to_company(r?)).collect()
            })
            .await
    }

    async fn create_user(&self, user: &UserRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let user = user.clone();
        self.write(Some(audit), move |tx| insert_user(tx, &user))
            .await
    }

    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let id = id.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
                    .query_row([id], row_user)
                    .optional()?
                    .transpose()
            })
            .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))?;
                let rows = stmt.query_map([], row_user)?;
                rows.map(|r| r?).collect()
            })
            .await
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let email = email.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE email = ?1"
                ))?
                .query_row([email], row_user)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn record_login(&self, user_id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        self.write(None, move |tx| {
            tx.execute(
                "UPDATE users SET last_login_at = ?1 WHERE id = ?2",
                params![ts(at), user_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_member(&self, m: &Membership, audit: &AuditEvent) -> Result<(), StoreError> {
        let m = m.clone();
        self.write(Some(audit), move |tx| {
            tx.execute(
                "INSERT INTO memberships (company_id, user_id, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (company_id, user_id) DO UPDATE SET role = excluded.role",
                params![m.company_id, m.user_id, m.role.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    async fn role(&self, user_id: &str, company_id: &str) -> Result<Option<Role>, StoreError> {
        let (user_id, company_id) = (user_id.to_string(), company_id.to_string());
        self.readers
            .with(move |conn| {
                let role: Option<String> = conn
                    .prepare_cached(
                        "SELECT m.role FROM memberships m JOIN companies c ON c.id = m.company_id
                         WHERE m.user_id = ?1 AND m.company_id = ?2 AND c.status = 'active'",
                    )?
                    .query_row([user_id, company_id], |r| r.get(0))
                    .optional()?;
                role.as_deref().map(parse_role).transpose()
            })
            .await
    }

    async fn memberships_of(&self, user_id: &str) -> Result<Vec<Membership>, StoreError> {
        let user_id = user_id.to_string();
        self.readers
            .with(move |conn| {
                memberships(
                    conn,
                    "SELECT company_id, user_id, role FROM memberships WHERE user_id = ?1 ORDER BY company_id",
                    &user_id,
                )
            })
            .await
    }

    async fn members_of(&self, company_id: &str) -> Result<Vec<Membership>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                memberships(
                    conn,
                    "SELECT company_id, user_id, role FROM memberships WHERE company_id = ?1 ORDER BY user_id",
                    &company_id,
                )
            })
            .await
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let s = s.clone();
        self.write(None, move |tx| {
            tx.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, client, user_agent,
                                       second_factor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.token_hash,
                    s.user_id,
                    ts(s.created_at),
                    ts(s.expires_at),
                    s.client,
                    s.user_agent,
                    s.second_factor
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let token_hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1"
                ))?
                .query_row([token_hash], row_session)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn revoke_session(&self, token_hash: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let token_hash = token_hash.to_string();
        self.write(None, move |tx| {
            tx.execute(
                "UPDATE sessions SET revoked_at = ?1 WHERE token_hash = ?2 AND revoked_at IS NULL",
                params![ts(at), token_hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_api_key(&self, k: &ApiKeyRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let k = k.clone();
        self.write(Some(audit), move |tx| {
            insert_api_key(tx, &k)?;
            Ok(())
        })
        .await
    }

    async fn rotate_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        new: &ApiKeyRecord,
        old_until: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, StoreError> {
        let (company_id, key_id, k) = (company_id.to_string(), key_id.to_string(), new.clone());
        let at = audit.at;
        self.write(Some(audit), move |tx| {
            let select =
                format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1 AND company_id = ?2");
            let old = tx
                .prepare_cached(&select)?
                .query_row([&key_id, &company_id], row_api_key)
                .optional()?
                .transpose()?
                .filter(|old| old.revoked_at.is_none() && old.expires_at > at)
                .ok_or(StoreError::NotFound("API key"))?;
            let until = old_until.min(old.expires_at);
            let revoked = (until <= at).then(|| ts(at));
            tx.execute(
                "UPDATE api_keys SET expires_at = ?1, revoked_at = ?2 WHERE id = ?3",
                params![ts(until), revoked, key_id],
            )?;
            insert_api_key(tx, &k)?;
            tx.prepare_cached(&select)?
                .query_row([&key_id, &company_id], row_api_key)?
        })
        .await
    }

    async fn api_key(&self, token_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let token_hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE token_hash = ?1"
                ))?
                .query_row([token_hash], row_api_key)
                .optional()?
                .transpose()
            })
            .await
    }

    async fn api_keys(&self, company_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE company_id = ?1 ORDER BY created_at, id"
                ))?;
                let rows = stmt.query_map([company_id], row_api_key)?;
                rows.map(|r| r?).collect()
            })
            .await
    }

    async fn revoke_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, StoreError> {
        let (company_id, key_id) = (company_id.to_string(), key_id.to_string());
        let at = ts(audit.at);
        self.write(Some(audit), move |tx| {
            tx.execute(
                "UPDATE api_keys SET revoked_at = ?1 WHERE id = ?2 AND company_id = ?3 AND revoked_at IS NULL",
                params![at, key_id, company_id],
            )?;
            tx.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1 AND company_id = ?2"
            ))?
            .query_row([key_id, company_id], row_api_key)
            .optional()?
            .transpose()?
            .ok_or(StoreError::NotFound("API key"))
        })
        .await
    }

    async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.write(Some(event), |_| Ok(())).await
    }

    async fn audit_events(
        &self,
        company_id: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let company_id = company_id.map(str::to_string);
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events
                     WHERE seq > ?1 AND (?2 IS NULL OR company_id = ?2) ORDER BY seq LIMIT ?3"
                ))?;
                let rows = stmt.query_map(
                    params![after_seq, company_id, limit.clamp(1, 100_000)],
                    audit_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn central_append(
        &self,
        source: &str,
        node: &str,
        events: Vec<StoredAuditEvent>,
    ) -> Result<usize, StoreError> {
        SqliteControl::central_append(self, source, node, events).await
    }

    async fn central_head(&self, source: &str) -> Result<i64, StoreError> {
        SqliteControl::central_head(self, source).await
    }

    async fn central_events(&self, query: AuditQuery) -> Result<Vec<CentralEvent>, StoreError> {
        SqliteControl::central_events(self, query).await
    }

    async fn central_events_by_auth(
        &self,
        company_id: &str,
        auth: &str,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        SqliteControl::central_events_by_auth(self, company_id, auth, limit).await
    }

    async fn central_sources(&self) -> Result<Vec<String>, StoreError> {
        SqliteControl::central_sources(self).await
    }

    async fn central_source_events(
        &self,
        source: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        SqliteControl::central_source_events(self, source, after_seq, limit).await
    }

    async fn central_forget(&self, source: &str, through_seq: i64) -> Result<u64, StoreError> {
        let source = source.to_string();
        self.write(None, move |tx| {
            let guard: Option<String> = tx
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'collected_undeletable'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute_batch("DROP TRIGGER IF EXISTS collected_undeletable")?;
            let removed = tx.execute(
                "DELETE FROM collected_events WHERE source = (SELECT id FROM collected_sources WHERE name = ?1)
                 AND source_seq <= ?2",
                params![source, through_seq],
            )?;
            if let Some(sql) = guard {
                tx.execute_batch(&sql)?;
            }
            Ok(removed as u64)
        })
        .await
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        SqliteControl::append_checkpoint(self, checkpoint).await
    }

    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StoreError> {
        SqliteControl::checkpoints(self, source).await
    }

    async fn last_checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StoreError> {
        SqliteControl::last_checkpoint(self, source).await
    }

    async fn register_node(
        &self,
        id: &str,
        public_key_hex: &str,
        certificate: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        SqliteControl::register_node(self, id, public_key_hex, certificate, at).await
    }

    async fn node_keys(&self) -> Result<Vec<RegisteredNode>, StoreError> {
        SqliteControl::node_keys(self).await
    }

    async fn sealed_values(
        &self,
        column: crate::SealedColumn,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        SqliteControl::sealed_values(self, column).await
    }

    async fn reseal(
        &self,
        column: crate::SealedColumn,
        id: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        SqliteControl::reseal(self, column, id, old, new).await
    }

    async fn cursor(&self, name: &str) -> Result<i64, StoreError> {
        let name = name.to_string();
        self.readers
            .with(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT seq FROM cursors WHERE name = ?1")?
                    .query_row([name], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0))
            })
            .await
    }

    async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(None, move |tx| {
            tx.execute(
                "INSERT INTO cursors (name, seq) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                params![name, seq],
            )?;
            Ok(())
        })
        .await
    }

    async fn reserve_attempts(
        &self,
        budgets: &[(String, u32)],
        at: OffsetDateTime,
        window: time::Duration,
    ) -> Result<Attempt, StoreError> {
        let keys = crate::attempt_keys(budgets);
        let now = crate::unix_millis(at);
        let window_start = crate::unix_millis(at - window);
        let window_ms = i64::try_from(window.whole_milliseconds()).unwrap_or(i64::MAX);
        // One IMMEDIATE transaction: the database's write lock is held from
        // the first read, so no other attempt reads a count between ours
        // and our increment.
        self.write(None, move |tx| {
            let mut current = tx.prepare_cached(
                "SELECT count, since FROM login_failures WHERE key = ?1 AND since > ?2",
            )?;
            let mut counted = Vec::with_capacity(keys.len());
            let mut refused_until: Option<i64> = None;
            for (key, max) in &keys {
                let row: Option<(i64, i64)> = current
                    .query_row(params![key, window_start], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match row {
                    Some((count, since)) if count >= i64::from(*max) => {
                        refused_until = refused_until.max(Some(since.saturating_add(window_ms)));
                    }
                    Some((_, since)) => counted.push((key.clone(), since)),
                    None => counted.push((key.clone(), now)),
                }
            }
            if let Some(until) = refused_until {
                return Ok(Attempt::Refused {
                    until: crate::from_unix_millis(until)?,
                });
            }
            let mut upsert = tx.prepare_cached(
                "INSERT INTO login_failures (key, count, since) VALUES (?1, 1, ?2)
                 ON CONFLICT (key) DO UPDATE SET
                   count = CASE WHEN since <= ?3 THEN 1 ELSE count + 1 END,
                   since = CASE WHEN since <= ?3 THEN excluded.since ELSE since END",
            )?;
            for (key, _) in &counted {
                upsert.execute(params![key, now, window_start])?;
            }
            counted
                .into_iter()
                .map(|(key, since)| Ok((key, crate::from_unix_millis(since)?)))
                .collect::<Result<_, StoreError>>()
                .map(Attempt::Counted)
        })
        .await
    }

    async fn release_attempt(
        &self,
        counted: &[(String, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        let counted: Vec<(String, i64)> = counted
            .iter()
            .map(|(key, since)| (key.clone(), crate::unix_millis(*since)))
            .collect();
        self.write(None, move |tx| {
            let mut release = tx.prepare_cached(
                "UPDATE login_failures SET count = count - 1
                 WHERE key = ?1 AND since = ?2 AND count > 0",
            )?;
            let mut forget =
                tx.prepare_cached("DELETE FROM login_failures WHERE key = ?1 AND count <= 0")?;
            for (key, since) in &counted {
                release.execute(params![key, since])?;
                forget.execute(params![key])?;
            }
            Ok(())
        })
        .await
    }

    async fn login_failures(
        &self,
        keys: &[String],
    ) -> Result<Vec<(u32, OffsetDateTime)>, StoreError> {
        let keys = keys.to_vec();
        self.readers
            .with(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT count, since FROM login_failures WHERE key = ?1")?;
                let mut found = Vec::new();
                for key in &keys {
                    let row: Option<(i64, i64)> = stmt
                        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    if let Some((count, since)) = row {
                        found.push((
                            u32::try_from(count).unwrap_or(u32::MAX),
                            crate::from_unix_millis(since)?,
                        ));
                    }
                }
                Ok(found)
            })
            .await
    }

    async fn try_lease(
        &self,
        name: &str,
        node: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (name, node, now, until) = (
            name.to_string(),
            node.to_string(),
            crate::unix_millis(now),
            crate::unix_millis(until),
        );
        self.write(None, move |tx| {
            let changed = tx.execute(
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.holder = excluded.holder OR leases.until <= ?4",
                params![name, node, until, now],
            )?;
            Ok(changed == 1)
        })
        .await
    }
}
