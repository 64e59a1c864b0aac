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

use super::conn::{open_encrypted, parse_ts, ts, OpenMode, ReaderPool};
use crate::chain;
use crate::model::*;
use crate::{ControlStore, StoreError};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS companies (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name            TEXT,
    passphrase_hash TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_login_at   TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS memberships (
    company_id TEXT NOT NULL REFERENCES companies(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL,
    PRIMARY KEY (company_id, user_id)
) STRICT;
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships(user_id);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS audit_events (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    auth       TEXT NOT NULL,
    client     TEXT,
    request_id TEXT,
    company_id TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    outcome    TEXT NOT NULL,
    detail     TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS audit_by_company ON audit_events(company_id, seq);
-- The central collection: copies of every source chain (this control plane's
-- and each company's), in arrival order; (source, source_seq) is unique so
-- forwarding can retry without duplicates. Sources are numbered to keep rows
-- and the unique index small (appends run at hundreds of thousands a second).
CREATE TABLE IF NOT EXISTS collected_sources (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
) STRICT;
CREATE TABLE IF NOT EXISTS collected_events (
    central_seq INTEGER PRIMARY KEY,
    source      INTEGER NOT NULL REFERENCES collected_sources(id),
    source_seq  INTEGER NOT NULL,
    node        TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    auth        TEXT NOT NULL,
    client      TEXT,
    request_id  TEXT,
    company_id  TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    -- SHA-256 values as 32 bytes (hex in the API): a sixth of each row.
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL,
    UNIQUE (source, source_seq)
) STRICT;
CREATE INDEX IF NOT EXISTS collected_by_company ON collected_events(company_id, central_seq);
CREATE TRIGGER IF NOT EXISTS collected_append_only BEFORE UPDATE ON collected_events
BEGIN SELECT RAISE(ABORT, 'the central audit collection is append-only'); END;
CREATE TRIGGER IF NOT EXISTS collected_undeletable BEFORE DELETE ON collected_events
BEGIN SELECT RAISE(ABORT, 'the central audit collection is append-only'); END;

CREATE TABLE IF NOT EXISTS audit_checkpoints (
    source    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL,
    at        TEXT NOT NULL,
    node      TEXT NOT NULL,
    prev      TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (source, seq)
) STRICT;

CREATE TRIGGER IF NOT EXISTS checkpoints_append_only BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_undeletable BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;

CREATE TABLE IF NOT EXISTS nodes (
    id          TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    -- The master key's certification of (id, public_key); added by
    -- `add_node_certificates` to databases made before it existed.
    certificate BLOB
) STRICT;

-- Failed logins per account and per client address, shared by every node.
CREATE TABLE IF NOT EXISTS login_failures (
    key   TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    -- Unix milliseconds: compared as numbers.
    since INTEGER NOT NULL
) STRICT;

-- Background jobs run on the one node holding their lease.
CREATE TABLE IF NOT EXISTS leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL -- Unix milliseconds
) STRICT;

-- Progress of forwarders, drains and monitors, so they resume where they stopped.
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
) STRICT;

CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

pub struct SqliteControl {
    writer: Arc<Mutex<Connection>>,
    pub(super) readers: Arc<ReaderPool>,
}

impl std::fmt::Debug for SqliteControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteControl")
    }
}

/// Adds `nodes.certificate` to a control database created before it existed
/// (SQLite has no `ADD COLUMN IF NOT EXISTS`).
fn add_node_certificates(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let present: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('nodes') WHERE name = 'certificate'",
        [],
        |r| r.get(0),
    )?;
    if !present {
        conn.execute_batch("ALTER TABLE nodes ADD COLUMN certificate BLOB")?;
    }
    Ok(())
}

impl SqliteControl {
    /// Opens (creating when absent) the control database at `path`.
    pub fn open(path: &Path, key: &DataKey) -> Result<SqliteControl, StoreError> {
        let mode = if path.exists() {
            OpenMode::Existing
        } else {
            OpenMode::Create
        };
        let conn = open_encrypted(path, key, mode)?;
        conn.execute_batch(SCHEMA)?;
        add_node_certificates(&conn)?;
        conn.execute_batch(super::control_alerts::ALERTS_SCHEMA)?;
        conn.execute_batch(super::control_export_schedules::EXPORT_SCHEDULES_SCHEMA)?;
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

/// Columns of a central event, read through `FROM collected_events c JOIN collected_sources s`.
const CENTRAL_COLUMNS: &str =
    "c.central_seq, s.name, c.node, c.source_seq, c.at, c.actor, c.auth, c.client, c.request_id, \
     c.company_id, c.action, c.target, c.outcome, c.detail, c.prev_hash, c.hash";
const CENTRAL_FROM: &str = "collected_events c JOIN collected_sources s ON s.id = c.source";

fn central_row(r: &Row<'_>) -> rusqlite::Result<CentralEvent> {
    Ok(CentralEvent {
        central_seq: r.get(0)?,
        source: r.get(1)?,
        node: r.get(2)?,
        event: StoredAuditEvent {
            seq: r.get(3)?,
            at: r.get(4)?,
            actor: r.get(5)?,
            auth: r.get(6)?,
            client: r.get(7)?,
            request_id: r.get(8)?,
            company_id: r.get(9)?,
            action: r.get(10)?,
            target: r.get(11)?,
            outcome: r.get(12)?,
            detail: r.get(13)?,
            prev_hash: hex::encode(r.get::<_, Vec<u8>>(14)?),
            hash: hex::encode(r.get::<_, Vec<u8>>(15)?),
        },
    })
}

fn hash_bytes(hex_text: &str) -> Result<[u8; 32], StoreError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut bytes).map_err(|_| {
        StoreError::Corrupt(format!("audit hash {hex_text:?} is not 64 hex characters"))
    })?;
    Ok(bytes)
}

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        source: r.get(0)?,
        seq: r.get(1)?,
        hash: r.get(2)?,
        at: r.get(3)?,
        node: r.get(4)?,
        prev: r.get(5)?,
        signature: r.get(6)?,
    })
}

fn insert_company(tx: &Transaction<'_>, c: &CompanyRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO companies (id, name, status, wrapped_dek, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![c.id, c.name, c.status.as_str(), c.wrapped_dek, ts(c.created_at)],
    )?;
    Ok(())
}

fn insert_user(tx: &Transaction<'_>, u: &UserRecord) -> Result<(), StoreError> {
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

fn row_company(r: &Row<'_>) -> rusqlite::Result<(String, String, String, Vec<u8>, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_company(
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

fn row_user(r: &Row<'_>) -> rusqlite::Result<Result<UserRecord, StoreError>> {
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
fn memberships(conn: &Connection, sql: &str, key: &str) -> Result<Vec<Membership>, StoreError> {
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

fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("role {text:?}")))
}

fn row_api_key(r: &Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
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

const API_KEY_COLUMNS: &str =
    "id, company_id, name, role, token_hash, created_by, created_at, expires_at, revoked_at";
const USER_COLUMNS: &str = "id, email, name, passphrase_hash, created_at, last_login_at";

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
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![s.token_hash, s.user_id, ts(s.created_at), ts(s.expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let token_hash = token_hash.to_string();
        self.readers
            .with(move |conn| {
                let row: Option<(String, String, String, String, Option<String>)> = conn
                    .prepare_cached(
                        "SELECT token_hash, user_id, created_at, expires_at, revoked_at
                         FROM sessions WHERE token_hash = ?1",
                    )?
                    .query_row([token_hash], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()?;
                row.map(|(token_hash, user_id, created, expires, revoked)| {
                    Ok(SessionRecord {
                        token_hash,
                        user_id,
                        created_at: parse_ts(&created)?,
                        expires_at: parse_ts(&expires)?,
                        revoked_at: revoked.as_deref().map(parse_ts).transpose()?,
                    })
                })
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
        let (source, node) = (source.to_string(), node.to_string());
        self.write(None, move |tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO collected_sources (name) VALUES (?1)")?
                .execute([&source])?;
            let source_id: i64 = tx
                .prepare_cached("SELECT id FROM collected_sources WHERE name = ?1")?
                .query_row([&source], |r| r.get(0))?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO collected_events (central_seq, source, node, source_seq, at, actor,
                    auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash)
                 VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let mut inserted = 0;
            for e in &events {
                let prev = hash_bytes(&e.prev_hash)?;
                let hash = hash_bytes(&e.hash)?;
                inserted += insert.execute(params![
                    source_id, node, e.seq, e.at, e.actor, e.auth, e.client, e.request_id,
                    e.company_id, e.action, e.target, e.outcome, e.detail, prev, hash
                ])?;
            }
            Ok(inserted)
        })
        .await
    }

    async fn central_head(&self, source: &str) -> Result<i64, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT COALESCE(MAX(source_seq), 0) FROM collected_events
                         WHERE source = (SELECT id FROM collected_sources WHERE name = ?1)",
                    )?
                    .query_row([source], |r| r.get(0))?)
            })
            .await
    }

    async fn central_events(&self, query: AuditQuery) -> Result<Vec<CentralEvent>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE c.central_seq > ?1 AND (?2 IS NULL OR c.company_id = ?2)
                       AND (?3 IS NULL OR c.action = ?3 OR c.action LIKE '%.' || ?3)
                       AND (?4 IS NULL OR c.outcome = ?4)
                       AND (?5 IS NULL OR c.actor = ?5) AND (?6 IS NULL OR c.at >= ?6)
                     ORDER BY c.central_seq LIMIT ?7"
                ))?;
                let rows = stmt.query_map(
                    params![
                        query.after,
                        query.company_id,
                        query.action,
                        query.outcome,
                        query.actor,
                        query.since,
                        query.limit.clamp(1, 100_000)
                    ],
                    central_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn central_sources(&self) -> Result<Vec<String>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT name FROM collected_sources ORDER BY name")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn central_source_events(
        &self,
        source: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE s.name = ?1 AND c.source_seq > ?2 ORDER BY c.source_seq LIMIT ?3"
                ))?;
                let rows = stmt.query_map(
                    params![source, after_seq, limit.clamp(1, 100_000)],
                    central_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let cp = checkpoint.clone();
        self.write(None, move |tx| {
            tx.execute(
                "INSERT INTO audit_checkpoints (source, seq, hash, at, node, prev, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    cp.source,
                    cp.seq,
                    cp.hash,
                    cp.at,
                    cp.node,
                    cp.prev,
                    cp.signature
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT source, seq, hash, at, node, prev, signature FROM audit_checkpoints
                     WHERE source = ?1 ORDER BY rowid",
                )?;
                let rows = stmt.query_map([source], checkpoint_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn last_checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT source, seq, hash, at, node, prev, signature FROM audit_checkpoints
                         WHERE source = ?1 ORDER BY rowid DESC LIMIT 1",
                    )?
                    .query_row([source], checkpoint_row)
                    .optional()?)
            })
            .await
    }

    async fn register_node(
        &self,
        id: &str,
        public_key_hex: &str,
        certificate: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (id, key, certificate) = (
            id.to_string(),
            public_key_hex.to_string(),
            certificate.to_vec(),
        );
        self.write(None, move |tx| {
            let existing: Option<String> = tx
                .query_row("SELECT public_key FROM nodes WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()?;
            match existing {
                Some(k) if k == key => {
                    tx.execute(
                        "UPDATE nodes SET certificate = ?2 WHERE id = ?1",
                        params![id, certificate],
                    )?;
                    Ok(())
                }
                Some(_) => Err(StoreError::Conflict(format!(
                    "node {id} is registered with another key"
                ))),
                None => {
                    tx.execute(
                        "INSERT INTO nodes (id, public_key, created_at, certificate)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![id, key, ts(at), certificate],
                    )?;
                    Ok(())
                }
            }
        })
        .await
    }

    async fn node_keys(&self) -> Result<Vec<RegisteredNode>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT id, public_key, certificate FROM nodes ORDER BY id")?;
                let rows = stmt.query_map([], |r| {
                    Ok(RegisteredNode {
                        id: r.get(0)?,
                        public_key: r.get(1)?,
                        certificate: r.get(2)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
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

    async fn reserve_attempt(
        &self,
        keys: &[String],
        at: OffsetDateTime,
        window: time::Duration,
        max: u32,
    ) -> Result<Attempt, StoreError> {
        let keys = crate::attempt_keys(keys);
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
            for key in &keys {
                let row: Option<(i64, i64)> = current
                    .query_row(params![key, window_start], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                match row {
                    Some((count, since)) if count >= i64::from(max) => {
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
