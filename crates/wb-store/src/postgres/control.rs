//! The control plane in a PostgreSQL database: companies (with wrapped DEKs),
//! users, memberships, sessions, API keys, the platform audit log and the
//! central audit collection. The same contract as `sqlite::SqliteControl`,
//! but several nodes may use one database at once:
//!
//! - every append to the control audit chain takes `AUDIT_LOCK` (an
//!   advisory transaction lock) before reading the chain head, so the chain
//!   stays one gap-free line and commits in sequence order;
//! - appends to the central collection take `CENTRAL_LOCK`, so
//!   `central_seq` is assigned in commit order (drains and monitors page by it
//!   and must never find a smaller number committed after a larger one);
//! - transactions run at READ COMMITTED, so a statement issued after a lock
//!   sees everything committed before the lock was granted.
//!
//! Text that is compared or sorted is stored `COLLATE "C"` (bytewise, as
//! SQLite's BINARY); e-mail addresses are unique ignoring ASCII case, as
//! SQLite's NOCASE.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{IsolationLevel, Row, Transaction};
use wb_core::audit::{AuditFields, Checkpoint};
use wb_core::Role;

use super::control_rows::*;
use super::pool::{PgConn, PgPool};
use crate::chain;
use crate::migrations::{self, Database};
use crate::model::*;
use crate::{ControlStore, StoreError};

/// Advisory lock keys (scoped to the database by PostgreSQL); the schema's
/// is `migrations::postgres::SCHEMA_LOCK`.
pub(super) const AUDIT_LOCK: i64 = 0x7762_5f63_746c_0002;
pub(super) const CENTRAL_LOCK: i64 = 0x7762_5f63_746c_0003;

/// A parameter with its PostgreSQL type (statements are sent typed: one round trip each).
pub(super) type P<'a> = (&'a (dyn ToSql + Sync), Type);

pub(super) fn text(v: &(dyn ToSql + Sync)) -> P<'_> {
    (v, Type::TEXT)
}

pub(super) fn int8(v: &(dyn ToSql + Sync)) -> P<'_> {
    (v, Type::INT8)
}

pub(super) fn bytea(v: &(dyn ToSql + Sync)) -> P<'_> {
    (v, Type::BYTEA)
}

/// Timestamps as text, exactly as the SQLite backend stores (and hashes) them.
pub(crate) fn ts(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn parse_ts(text: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp {text:?}")))
}

pub(super) fn clamp_limit(limit: u32, max: u32) -> i64 {
    i64::from(limit.clamp(1, max))
}

pub struct PgControl {
    pub(super) pool: PgPool,
    /// Central source ids by name (sources are never removed).
    pub(super) sources: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for PgControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgControl({:?})", self.pool)
    }
}

impl PgControl {
    /// Connects, brings the schema to the current version (safe when
    /// several nodes start at once) and returns the store.
    pub async fn open(pool: PgPool) -> Result<PgControl, StoreError> {
        {
            let conn = pool.get().await?;
            migrations::postgres::migrate(&conn, Database::Control, migrations::POSTGRES_CONTROL)
                .await?;
            // Company roles must not even connect here. Only the database's
            // owner may revoke; a database set up by someone else keeps its ACL.
            let revoke = "DO $$ BEGIN
                IF (SELECT datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                    FROM pg_database WHERE datname = current_database()) THEN
                  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
                END IF; END $$";
            if let Err(e) = conn.batch_execute(revoke).await {
                tracing::warn!(error = %e, "could not revoke PUBLIC access to the control database");
            }
        }
        Ok(PgControl {
            pool,
            sources: Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) async fn conn(&self) -> Result<PgConn, StoreError> {
        self.pool.get().await
    }

    pub(super) fn cached_source(&self, name: &str) -> Option<i64> {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }
}

/// A READ COMMITTED transaction: each statement sees what committed before it
/// started, which the advisory locks rely on.
pub(super) async fn begin(conn: &mut PgConn) -> Result<Transaction<'_>, StoreError> {
    Ok(conn
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?)
}

/// Appends `event` to the control chain inside `tx`, serialised with every
/// other appender (on any node) until `tx` ends.
pub(super) async fn append_audit(
    tx: &Transaction<'_>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    lock_audit(tx).await?;
    let head = tx
        .query_typed_opt(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?;
    let (prev_seq, prev_hash): (i64, String) = match head {
        Some(row) => (row.try_get(0)?, row.try_get(1)?),
        None => (0, chain::GENESIS.to_string()),
    };
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
    tx.execute_typed(
        "INSERT INTO audit_events (seq, at, actor, auth, client, request_id, company_id, action,
                                   target, outcome, detail, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            int8(&seq),
            text(&fields.at),
            text(&a.id),
            text(&a.auth),
            text(&a.client),
            text(&a.request_id),
            text(&event.company_id),
            text(&fields.action),
            text(&event.target),
            text(&fields.outcome),
            text(&event.detail),
            text(&prev_hash),
            text(&hash),
        ],
    )
    .await?;
    Ok(())
}

/// Takes the control chain's lock until the transaction ends (re-entrant).
pub(super) async fn lock_audit(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_typed("SELECT pg_advisory_xact_lock($1)", &[int8(&AUDIT_LOCK)])
        .await?;
    Ok(())
}

pub(super) const AUDIT_COLUMNS: &str =
    "seq, at, actor, auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash";

pub(super) fn audit_row(r: &Row) -> Result<StoredAuditEvent, StoreError> {
    Ok(StoredAuditEvent {
        seq: r.try_get(0)?,
        at: r.try_get(1)?,
        actor: r.try_get(2)?,
        auth: r.try_get(3)?,
        client: r.try_get(4)?,
        request_id: r.try_get(5)?,
        company_id: r.try_get(6)?,
        action: r.try_get(7)?,
        target: r.try_get(8)?,
        outcome: r.try_get(9)?,
        detail: r.try_get(10)?,
        prev_hash: r.try_get(11)?,
        hash: r.try_get(12)?,
    })
}

pub(super) fn rows<T>(
    rows: Vec<Row>,
    f: fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

impl PgControl {
    /// Runs one statement in its own transaction, with `audit` appended when given.
    pub(super) async fn exec_audited(
        &self,
        sql: &str,
        params: &[P<'_>],
        audit: Option<&AuditEvent>,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let changed = tx.execute_typed(sql, params).await?;
        if let Some(event) = audit {
            append_audit(&tx, event).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    pub(super) async fn query(&self, sql: &str, params: &[P<'_>]) -> Result<Vec<Row>, StoreError> {
        Ok(self.conn().await?.query_typed(sql, params).await?)
    }

    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: &[P<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.conn().await?.query_typed_opt(sql, params).await?)
    }
}

async fn insert_api_key(tx: &Transaction<'_>, k: &ApiKeyRecord) -> Result<(), StoreError> {
    let (role, created, expires) = (k.role.as_str(), ts(k.created_at), ts(k.expires_at));
    tx.execute_typed(
        &format!(
            "INSERT INTO api_keys ({API_KEY_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
        ),
        &[
            text(&k.id),
            text(&k.company_id),
            text(&k.name),
            text(&role),
            text(&k.token_hash),
            text(&k.created_by),
            text(&created),
            text(&expires),
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl ControlStore for PgControl {
    async fn signup(
        &self,
        company: &CompanyRecord,
        owner: &UserRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        insert_company(&tx, company).await?;
        insert_user(&tx, owner).await?;
        tx.execute_typed(
            "INSERT INTO memberships (company_id, user_id, role) VALUES ($1, $2, 'owner')",
            &[text(&company.id), text(&owner.id)],
        )
        .await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_company(
        &self,
        company: &CompanyRecord,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        insert_company(&tx, company).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn company(&self, id: &str) -> Result<Option<CompanyRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE id = $1"),
            &[text(&id)],
        )
        .await?
        .as_ref()
        .map(company_row)
        .transpose()
    }

    async fn companies(&self) -> Result<Vec<CompanyRecord>, StoreError> {
        let found = self
            .query(
                &format!("SELECT {COMPANY_COLUMNS} FROM companies ORDER BY created_at, id"),
                &[],
            )
            .await?;
        rows(found, company_row)
    }

    async fn create_user(&self, user: &UserRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        insert_user(&tx, user).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
            &[text(&id)],
        )
        .await?
        .as_ref()
        .map(user_row)
        .transpose()
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.query(
            &format!("SELECT {USER_COLUMNS} FROM users ORDER BY id COLLATE \"C\""),
            &[],
        )
        .await?
        .iter()
        .map(user_row)
        .collect()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.query_opt(
            &format!(
                "SELECT {USER_COLUMNS} FROM users WHERE lower(email) = lower($1 COLLATE \"C\")"
            ),
            &[text(&email)],
        )
        .await?
        .as_ref()
        .map(user_row)
        .transpose()
    }

    async fn record_login(&self, user_id: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let at = ts(at);
        self.conn()
            .await?
            .execute_typed(
                "UPDATE users SET last_login_at = $1 WHERE id = $2",
                &[text(&at), text(&user_id)],
            )
            .await?;
        Ok(())
    }

    async fn add_member(&self, m: &Membership, audit: &AuditEvent) -> Result<(), StoreError> {
        let role = m.role.as_str();
        self.exec_audited(
            "INSERT INTO memberships (company_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (company_id, user_id) DO UPDATE SET role = EXCLUDED.role",
            &[text(&m.company_id), text(&m.user_id), text(&role)],
            Some(audit),
        )
        .await?;
        Ok(())
    }

    async fn role(&self, user_id: &str, company_id: &str) -> Result<Option<Role>, StoreError> {
        let row = self
            .query_opt(
                "SELECT m.role FROM memberships m JOIN companies c ON c.id = m.company_id
                 WHERE m.user_id = $1 AND m.company_id = $2 AND c.status = 'active'",
                &[text(&user_id), text(&company_id)],
            )
            .await?;
        match row {
            Some(r) => Ok(Some(parse_role(r.try_get(0)?)?)),
            None => Ok(None),
        }
    }

    async fn memberships_of(&self, user_id: &str) -> Result<Vec<Membership>, StoreError> {
        let found = self
            .query(
                "SELECT company_id, user_id, role FROM memberships WHERE user_id = $1
                 ORDER BY company_id",
                &[text(&user_id)],
            )
            .await?;
        rows(found, membership_row)
    }

    async fn members_of(&self, company_id: &str) -> Result<Vec<Membership>, StoreError> {
        let found = self
            .query(
                "SELECT company_id, user_id, role FROM memberships WHERE company_id = $1
                 ORDER BY user_id",
                &[text(&company_id)],
            )
            .await?;
        rows(found, membership_row)
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let (created, expires) = (ts(s.created_at), ts(s.expires_at));
        self.conn()
            .await?
            .execute_typed(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, client, user_agent,
                                       second_factor)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    text(&s.token_hash),
                    text(&s.user_id),
                    text(&created),
                    text(&expires),
                    text(&s.client),
                    text(&s.user_agent),
                    text(&s.second_factor),
                ],
            )
            .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1"),
            &[text(&token_hash)],
        )
        .await?
        .as_ref()
        .map(session_row)
        .transpose()
    }

    async fn revoke_session(&self, token_hash: &str, at: OffsetDateTime) -> Result<(), StoreError> {
        let at = ts(at);
        self.conn()
            .await?
            .execute_typed(
                "UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
                &[text(&at), text(&token_hash)],
            )
            .await?;
        Ok(())
    }

    async fn create_api_key(&self, k: &ApiKeyRecord, audit: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        insert_api_key(&tx, k).await?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        k: &ApiKeyRecord,
        old_until: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, StoreError> {
        let select =
            format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1 AND company_id = $2");
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // Locked, so two rotations of one key cannot both succeed.
        let old = tx
            .query_typed_opt(
                &format!("{select} FOR UPDATE"),
                &[text(&key_id), text(&company_id)],
            )
            .await?
            .as_ref()
            .map(api_key_row)
            .transpose()?
            .filter(|old| old.revoked_at.is_none() && old.expires_at > audit.at)
            .ok_or(StoreError::NotFound("API key"))?;
        let until = old_until.min(old.expires_at);
        let revoked = (until <= audit.at).then(|| ts(audit.at));
        let until = ts(until);
        tx.execute_typed(
            "UPDATE api_keys SET expires_at = $1, revoked_at = $2 WHERE id = $3",
            &[text(&until), text(&revoked), text(&key_id)],
        )
        .await?;
        insert_api_key(&tx, k).await?;
        let now = tx
            .query_typed_opt(&select, &[text(&key_id), text(&company_id)])
            .await?
            .as_ref()
            .map(api_key_row)
            .transpose()?
            .ok_or(StoreError::NotFound("API key"))?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(now)
    }

    async fn api_key(&self, token_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.query_opt(
            &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE token_hash = $1"),
            &[text(&token_hash)],
        )
        .await?
        .as_ref()
        .map(api_key_row)
        .transpose()
    }

    async fn api_keys(&self, company_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let found = self
            .query(
                &format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE company_id = $1
                     ORDER BY created_at, id"
                ),
                &[text(&company_id)],
            )
            .await?;
        rows(found, api_key_row)
    }

    async fn revoke_api_key(
        &self,
        company_id: &str,
        key_id: &str,
        audit: &AuditEvent,
    ) -> Result<ApiKeyRecord, StoreError> {
        let at = ts(audit.at);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        tx.execute_typed(
            "UPDATE api_keys SET revoked_at = $1
             WHERE id = $2 AND company_id = $3 AND revoked_at IS NULL",
            &[text(&at), text(&key_id), text(&company_id)],
        )
        .await?;
        let key = tx
            .query_typed_opt(
                &format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1 AND company_id = $2"
                ),
                &[text(&key_id), text(&company_id)],
            )
            .await?
            .as_ref()
            .map(api_key_row)
            .transpose()?
            .ok_or(StoreError::NotFound("API key"))?;
        append_audit(&tx, audit).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        append_audit(&tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_events(
        &self,
        company_id: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let limit = clamp_limit(limit, 100_000);
        let found = self
            .query(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_events
                     WHERE seq > $1 AND ($2::text IS NULL OR company_id = $2)
                     ORDER BY seq LIMIT $3"
                ),
                &[int8(&after_seq), text(&company_id), int8(&limit)],
            )
            .await?;
        rows(found, audit_row)
    }

    async fn central_append(
        &self,
        source: &str,
        node: &str,
        events: Vec<StoredAuditEvent>,
    ) -> Result<usize, StoreError> {
        PgControl::central_append(self, source, node, events).await
    }

    async fn central_head(&self, source: &str) -> Result<i64, StoreError> {
        PgControl::central_head(self, source).await
    }

    async fn central_events(&self, query: AuditQuery) -> Result<Vec<CentralEvent>, StoreError> {
        PgControl::central_events(self, query).await
    }

    async fn central_events_by_auth(
        &self,
        company_id: &str,
        auth: &str,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        PgControl::central_events_by_auth(self, company_id, auth, limit).await
    }

    async fn central_sources(&self) -> Result<Vec<String>, StoreError> {
        PgControl::central_sources(self).await
    }

    async fn central_source_events(
        &self,
        source: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        PgControl::central_source_events(self, source, after_seq, limit).await
    }

    async fn central_forget(&self, source: &str, through_seq: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // Lifted inside this transaction only (DDL is transactional, and
        // the table stays locked until it ends); checked back on.
        tx.batch_execute("ALTER TABLE collected_events DISABLE TRIGGER collected_append_only")
            .await?;
        let removed = tx
            .execute(
                "DELETE FROM collected_events
                 WHERE source = (SELECT id FROM collected_sources WHERE name = $1)
                   AND source_seq <= $2",
                &[&source, &through_seq],
            )
            .await?;
        tx.batch_execute("ALTER TABLE collected_events ENABLE TRIGGER collected_append_only")
            .await?;
        let enabled: bool = tx
            .query_one(
                "SELECT tgenabled <> 'D' FROM pg_trigger
                 WHERE tgname = 'collected_append_only' AND tgrelid = 'collected_events'::regclass",
                &[],
            )
            .await?
            .try_get(0)?;
        if !enabled {
            return Err(StoreError::Backend(
                "the central collection's guard did not come back on".into(),
            ));
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn append_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        PgControl::append_checkpoint(self, cp).await
    }

    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StoreError> {
        PgControl::checkpoints(self, source).await
    }

    async fn last_checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StoreError> {
        PgControl::last_checkpoint(self, source).await
    }

    async fn register_node(
        &self,
        id: &str,
        public_key_hex: &str,
        certificate: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        PgControl::register_node(self, id, public_key_hex, certificate, at).await
    }

    async fn node_keys(&self) -> Result<Vec<RegisteredNode>, StoreError> {
        PgControl::node_keys(self).await
    }

    async fn sealed_values(
        &self,
        column: crate::SealedColumn,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        PgControl::sealed_values(self, column).await
    }

    async fn reseal(
        &self,
        column: crate::SealedColumn,
        id: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        PgControl::reseal(self, column, id, old, new).await
    }

    async fn cursor(&self, name: &str) -> Result<i64, StoreError> {
        PgControl::cursor(self, name).await
    }

    async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        PgControl::set_cursor(self, name, seq).await
    }

    async fn reserve_attempts(
        &self,
        budgets: &[(String, u32)],
        at: OffsetDateTime,
        window: time::Duration,
    ) -> Result<Attempt, StoreError> {
        PgControl::reserve_attempts(self, budgets, at, window).await
    }

    async fn release_attempt(
        &self,
        counted: &[(String, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        PgControl::release_attempt(self, counted).await
    }

    async fn login_failures(
        &self,
        keys: &[String],
    ) -> Result<Vec<(u32, OffsetDateTime)>, StoreError> {
        PgControl::login_failures(self, keys).await
    }

    async fn try_lease(
        &self,
        name: &str,
        node: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        PgControl::try_lease(self, name, node, now, until).await
    }
}
