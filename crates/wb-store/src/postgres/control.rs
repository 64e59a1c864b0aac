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

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{IsolationLevel, Row, Transaction};
use wb_core::audit::{AuditFields, Checkpoint};
use wb_core::Role;

use super::pool::{PgConn, PgPool};
use crate::chain;
use crate::model::*;
use crate::{ControlStore, StoreError};

/// Advisory lock keys (scoped to the database by PostgreSQL).
/// Shared with `placement.rs`: both create tables of the control database.
const SCHEMA_LOCK: i64 = 7_263_001;
const AUDIT_LOCK: i64 = 0x7762_5f63_746c_0002;
const CENTRAL_LOCK: i64 = 0x7762_5f63_746c_0003;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS companies (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    wrapped_dek BYTEA NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id              TEXT COLLATE "C" PRIMARY KEY,
    -- Unique ignoring ASCII case (lower() under "C" folds ASCII only, as NOCASE).
    email           TEXT COLLATE "C" NOT NULL,
    name            TEXT,
    passphrase_hash TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_login_at   TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_nocase ON users (lower(email));
CREATE TABLE IF NOT EXISTS memberships (
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL,
    PRIMARY KEY (company_id, user_id)
);
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships(user_id);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,
    company_id TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_by_company ON api_keys(company_id);
CREATE TABLE IF NOT EXISTS audit_events (
    seq        BIGINT PRIMARY KEY,
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
);
CREATE INDEX IF NOT EXISTS audit_by_company ON audit_events(company_id, seq);
-- The central collection: copies of every source chain, in arrival order;
-- (source, source_seq) is unique so forwarding can retry without duplicates.
CREATE TABLE IF NOT EXISTS collected_sources (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS collected_events (
    central_seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A collected_sources id. No REFERENCES: central_append takes the id from
    -- that table in the same transaction, and the per-row foreign-key check
    -- cost a quarter of the append rate.
    source      BIGINT NOT NULL,
    source_seq  BIGINT NOT NULL,
    node        TEXT NOT NULL,
    at          TEXT COLLATE "C" NOT NULL,
    actor       TEXT NOT NULL,
    auth        TEXT NOT NULL,
    client      TEXT,
    request_id  TEXT,
    company_id  TEXT,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    -- SHA-256 values as 32 bytes (hex in the API).
    prev_hash   BYTEA NOT NULL,
    hash        BYTEA NOT NULL,
    UNIQUE (source, source_seq)
);
CREATE INDEX IF NOT EXISTS collected_by_company ON collected_events(company_id, central_seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    -- Insertion order (SQLite's rowid).
    id        BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    source    TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL,
    at        TEXT NOT NULL,
    node      TEXT NOT NULL,
    prev      TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (source, seq)
);
CREATE INDEX IF NOT EXISTS checkpoints_by_source ON audit_checkpoints(source, id);
CREATE TABLE IF NOT EXISTS nodes (
    id         TEXT COLLATE "C" PRIMARY KEY,
    public_key TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- The master key's certification of (id, public_key).
ALTER TABLE nodes ADD COLUMN IF NOT EXISTS certificate BYTEA;
-- Failed logins per account and per client address, shared by every node.
CREATE TABLE IF NOT EXISTS login_failures (
    key   TEXT PRIMARY KEY,
    count BIGINT NOT NULL,
    since BIGINT NOT NULL -- Unix milliseconds
);
-- Background jobs run on the one node holding their lease.
CREATE TABLE IF NOT EXISTS leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL -- Unix milliseconds
);
-- Progress of forwarders, drains and monitors, so they resume where they stopped.
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
-- Which database server holds each company.
CREATE TABLE IF NOT EXISTS placements (
    company_id TEXT PRIMARY KEY,
    server     TEXT NOT NULL,
    database   TEXT NOT NULL,
    role       TEXT NOT NULL,
    moving     BOOLEAN NOT NULL DEFAULT false,
    placed_at  TEXT NOT NULL
);

CREATE OR REPLACE FUNCTION wb_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END
$fn$;
DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('audit_events', 'audit_append_only', 'the audit log is append-only'),
        ('collected_events', 'collected_append_only', 'the central audit collection is append-only'),
        ('audit_checkpoints', 'checkpoints_append_only', 'audit checkpoints are append-only')
    ) AS v(tbl, name, msg)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                       WHERE tgname = t.name AND tgrelid = t.tbl::regclass) THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
                            FOR EACH ROW EXECUTE FUNCTION wb_append_only(%L)',
                           t.name, t.tbl, t.msg);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                       WHERE tgname = t.name || '_truncate' AND tgrelid = t.tbl::regclass) THEN
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
                            FOR EACH STATEMENT EXECUTE FUNCTION wb_append_only(%L)',
                           t.name || '_truncate', t.tbl, t.msg);
        END IF;
    END LOOP;
END
$do$;
"#;

/// A parameter with its PostgreSQL type (statements are sent typed: one round trip each).
pub(super) type P<'a> = (&'a (dyn ToSql + Sync), Type);

pub(super) fn text(v: &(dyn ToSql + Sync)) -> P<'_> {
    (v, Type::TEXT)
}

pub(super) fn int8(v: &(dyn ToSql + Sync)) -> P<'_> {
    (v, Type::INT8)
}

fn bytea(v: &(dyn ToSql + Sync)) -> P<'_> {
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

fn clamp_limit(limit: u32, max: u32) -> i64 {
    i64::from(limit.clamp(1, max))
}

pub struct PgControl {
    pool: PgPool,
    /// Central source ids by name (sources are never removed).
    sources: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for PgControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgControl({:?})", self.pool)
    }
}

impl PgControl {
    /// Connects, creates or migrates the schema (idempotent, and safe when
    /// several nodes start at once) and returns the store.
    pub async fn open(pool: PgPool) -> Result<PgControl, StoreError> {
        {
            let mut conn = pool.get().await?;
            let tx = begin(&mut conn).await?;
            tx.execute_typed("SELECT pg_advisory_xact_lock($1)", &[int8(&SCHEMA_LOCK)])
                .await?;
            tx.batch_execute(SCHEMA).await?;
            tx.batch_execute(super::control_alerts::ALERTS_SCHEMA)
                .await?;
            tx.batch_execute(super::control_export_schedules::EXPORT_SCHEDULES_SCHEMA)
                .await?;
            tx.commit().await?;
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

    fn cached_source(&self, name: &str) -> Option<i64> {
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

const AUDIT_COLUMNS: &str =
    "seq, at, actor, auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash";

fn audit_row(r: &Row) -> Result<StoredAuditEvent, StoreError> {
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

/// Columns of a central event, read through `FROM collected_events c JOIN collected_sources s`.
const CENTRAL_COLUMNS: &str =
    "c.central_seq, s.name, c.node, c.source_seq, c.at, c.actor, c.auth, c.client, c.request_id, \
     c.company_id, c.action, c.target, c.outcome, c.detail, c.prev_hash, c.hash";
const CENTRAL_FROM: &str = "collected_events c JOIN collected_sources s ON s.id = c.source";

fn central_row(r: &Row) -> Result<CentralEvent, StoreError> {
    Ok(CentralEvent {
        central_seq: r.try_get(0)?,
        source: r.try_get(1)?,
        node: r.try_get(2)?,
        event: StoredAuditEvent {
            seq: r.try_get(3)?,
            at: r.try_get(4)?,
            actor: r.try_get(5)?,
            auth: r.try_get(6)?,
            client: r.try_get(7)?,
            request_id: r.try_get(8)?,
            company_id: r.try_get(9)?,
            action: r.try_get(10)?,
            target: r.try_get(11)?,
            outcome: r.try_get(12)?,
            detail: r.try_get(13)?,
            prev_hash: hex::encode(r.try_get::<_, &[u8]>(14)?),
            hash: hex::encode(r.try_get::<_, &[u8]>(15)?),
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

const CHECKPOINT_COLUMNS: &str = "source, seq, hash, at, node, prev, signature";

fn checkpoint_row(r: &Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        source: r.try_get(0)?,
        seq: r.try_get(1)?,
        hash: r.try_get(2)?,
        at: r.try_get(3)?,
        node: r.try_get(4)?,
        prev: r.try_get(5)?,
        signature: r.try_get(6)?,
    })
}

async fn insert_company(tx: &Transaction<'_>, c: &CompanyRecord) -> Result<(), StoreError> {
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

const EMAIL_TAKEN: &str = "an account with this email already exists; log in instead";

async fn insert_user(tx: &Transaction<'_>, u: &UserRecord) -> Result<(), StoreError> {
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

const COMPANY_COLUMNS: &str = "id, name, status, wrapped_dek, created_at";

fn company_row(r: &Row) -> Result<CompanyRecord, StoreError> {
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

const USER_COLUMNS: &str = "id, email, name, passphrase_hash, created_at, last_login_at";

fn user_row(r: &Row) -> Result<UserRecord, StoreError> {
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

fn parse_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("role {text:?}")))
}

fn membership_row(r: &Row) -> Result<Membership, StoreError> {
    let role: &str = r.try_get(2)?;
    Ok(Membership {
        company_id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        role: parse_role(role)?,
    })
}

const API_KEY_COLUMNS: &str =
    "id, company_id, name, role, token_hash, created_by, created_at, expires_at, revoked_at";

fn api_key_row(r: &Row) -> Result<ApiKeyRecord, StoreError> {
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

fn rows<T>(rows: Vec<Row>, f: fn(&Row) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

impl PgControl {
    /// Runs one statement in its own transaction, with `audit` appended when given.
    async fn exec_audited(
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

    async fn query(&self, sql: &str, params: &[P<'_>]) -> Result<Vec<Row>, StoreError> {
        Ok(self.conn().await?.query_typed(sql, params).await?)
    }

    async fn query_opt(&self, sql: &str, params: &[P<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.conn().await?.query_typed_opt(sql, params).await?)
    }
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
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
                &[
                    text(&s.token_hash),
                    text(&s.user_id),
                    text(&created),
                    text(&expires),
                ],
            )
            .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = self
            .query_opt(
                "SELECT token_hash, user_id, created_at, expires_at, revoked_at
                 FROM sessions WHERE token_hash = $1",
                &[text(&token_hash)],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let revoked: Option<&str> = r.try_get(4)?;
        Ok(Some(SessionRecord {
            token_hash: r.try_get(0)?,
            user_id: r.try_get(1)?,
            created_at: parse_ts(r.try_get(2)?)?,
            expires_at: parse_ts(r.try_get(3)?)?,
            revoked_at: revoked.map(parse_ts).transpose()?,
        }))
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
        let (role, created, expires) = (k.role.as_str(), ts(k.created_at), ts(k.expires_at));
        self.exec_audited(
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
            Some(audit),
        )
        .await?;
        Ok(())
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
        // Validate every hash first: a bad one refuses the whole batch. A
        // sequence repeated within the batch keeps its first event (as
        // INSERT OR IGNORE does).
        let mut seen = HashSet::with_capacity(events.len());
        let mut batch: Vec<(&StoredAuditEvent, [u8; 32], [u8; 32])> =
            Vec::with_capacity(events.len());
        for e in &events {
            let (prev, hash) = (hash_bytes(&e.prev_hash)?, hash_bytes(&e.hash)?);
            if seen.insert(e.seq) {
                batch.push((e, prev, hash));
            }
        }

        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // One appender at a time (on any node), so central_seq order is commit
        // order and no retry can race another into the same rows.
        tx.execute_typed("SELECT pg_advisory_xact_lock($1)", &[int8(&CENTRAL_LOCK)])
            .await?;
        let (source_id, new_source) = match self.cached_source(source) {
            Some(id) => (id, false),
            None => {
                tx.execute_typed(
                    "INSERT INTO collected_sources (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[text(&source)],
                )
                .await?;
                let id: i64 = tx
                    .query_typed_one(
                        "SELECT id FROM collected_sources WHERE name = $1",
                        &[text(&source)],
                    )
                    .await?
                    .try_get(0)?;
                (id, true)
            }
        };
        // Leave out what the collection already has, so retries consume no
        // central_seq numbers. Forwarders send runs of consecutive sequences:
        // one index range scan finds them; a sparse batch probes each.
        if !batch.is_empty() {
            let seqs: Vec<i64> = batch.iter().map(|(e, _, _)| e.seq).collect();
            let (low, high) = seqs
                .iter()
                .fold((i64::MAX, i64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
            let span = u64::try_from(high.saturating_sub(low)).unwrap_or(u64::MAX);
            let existing = if span < 4 * seqs.len() as u64 {
                tx.query_typed(
                    "SELECT source_seq FROM collected_events
                     WHERE source = $1 AND source_seq BETWEEN $2 AND $3",
                    &[int8(&source_id), int8(&low), int8(&high)],
                )
                .await?
            } else {
                tx.query_typed(
                    "SELECT source_seq FROM collected_events
                     WHERE source = $1 AND source_seq = ANY($2)",
                    &[int8(&source_id), (&seqs, Type::INT8_ARRAY)],
                )
                .await?
            };
            if !existing.is_empty() {
                let existing = existing
                    .iter()
                    .map(|r| r.try_get::<_, i64>(0))
                    .collect::<Result<HashSet<i64>, _>>()?;
                batch.retain(|(e, _, _)| !existing.contains(&e.seq));
            }
        }
        let inserted = if batch.is_empty() {
            0
        } else {
            // Columns as arrays, for one INSERT ... SELECT FROM UNNEST.
            let seqs: Vec<i64> = batch.iter().map(|(e, _, _)| e.seq).collect();
            let text_column = |f: fn(&StoredAuditEvent) -> &str| -> Vec<&str> {
                batch.iter().map(|(e, _, _)| f(e)).collect()
            };
            let optional_column = |f: fn(&StoredAuditEvent) -> Option<&str>| -> Vec<Option<&str>> {
                batch.iter().map(|(e, _, _)| f(e)).collect()
            };
            let at = text_column(|e| &e.at);
            let actor = text_column(|e| &e.actor);
            let auth = text_column(|e| &e.auth);
            let action = text_column(|e| &e.action);
            let outcome = text_column(|e| &e.outcome);
            let client = optional_column(|e| e.client.as_deref());
            let request = optional_column(|e| e.request_id.as_deref());
            let company = optional_column(|e| e.company_id.as_deref());
            let target = optional_column(|e| e.target.as_deref());
            let detail = optional_column(|e| e.detail.as_deref());
            let prev: Vec<&[u8]> = batch.iter().map(|(_, p, _)| p.as_slice()).collect();
            let hash: Vec<&[u8]> = batch.iter().map(|(_, _, h)| h.as_slice()).collect();
            let (text_array, bytea_array) = (Type::TEXT_ARRAY, Type::BYTEA_ARRAY);
            tx.execute_typed(
                "INSERT INTO collected_events (source, node, source_seq, at, actor, auth, client,
                     request_id, company_id, action, target, outcome, detail, prev_hash, hash)
                 SELECT $1, $2, e.seq, e.at, e.actor, e.auth, e.client, e.request_id,
                        e.company_id, e.action, e.target, e.outcome, e.detail, e.prev_hash, e.hash
                 FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                             $13::text[], $14::bytea[], $15::bytea[])
                      WITH ORDINALITY AS e(seq, at, actor, auth, client, request_id, company_id,
                                           action, target, outcome, detail, prev_hash, hash, ord)
                 ORDER BY e.ord
                 ON CONFLICT (source, source_seq) DO NOTHING",
                &[
                    int8(&source_id),
                    text(&node),
                    (&seqs, Type::INT8_ARRAY),
                    (&at, text_array.clone()),
                    (&actor, text_array.clone()),
                    (&auth, text_array.clone()),
                    (&client, text_array.clone()),
                    (&request, text_array.clone()),
                    (&company, text_array.clone()),
                    (&action, text_array.clone()),
                    (&target, text_array.clone()),
                    (&outcome, text_array.clone()),
                    (&detail, text_array),
                    (&prev, bytea_array.clone()),
                    (&hash, bytea_array),
                ],
            )
            .await?
        };
        tx.commit().await?;
        if new_source {
            self.sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(source.to_string(), source_id);
        }
        Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
    }

    async fn central_head(&self, source: &str) -> Result<i64, StoreError> {
        let row = self
            .query_opt(
                "SELECT COALESCE(MAX(source_seq), 0) FROM collected_events
                 WHERE source = (SELECT id FROM collected_sources WHERE name = $1)",
                &[text(&source)],
            )
            .await?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Ok(0),
        }
    }

    async fn central_events(&self, query: AuditQuery) -> Result<Vec<CentralEvent>, StoreError> {
        let limit = clamp_limit(query.limit, 100_000);
        // SQLite's LIKE ignores ASCII case and has no escape character: ILIKE
        // under "C" with ESCAPE '' behaves the same.
        let found = self
            .query(
                &format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE c.central_seq > $1 AND ($2::text IS NULL OR c.company_id = $2)
                       AND ($3::text IS NULL OR c.action = $3
                            OR c.action COLLATE \"C\" ILIKE ('%.' || $3) ESCAPE '')
                       AND ($4::text IS NULL OR c.outcome = $4)
                       AND ($5::text IS NULL OR c.actor = $5)
                       AND ($6::text IS NULL OR c.at >= $6)
                     ORDER BY c.central_seq LIMIT $7"
                ),
                &[
                    int8(&query.after),
                    text(&query.company_id),
                    text(&query.action),
                    text(&query.outcome),
                    text(&query.actor),
                    text(&query.since),
                    int8(&limit),
                ],
            )
            .await?;
        rows(found, central_row)
    }

    async fn central_sources(&self) -> Result<Vec<String>, StoreError> {
        let found = self
            .query("SELECT name FROM collected_sources ORDER BY name", &[])
            .await?;
        found
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect::<Result<_, StoreError>>()
    }

    async fn central_source_events(
        &self,
        source: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        let limit = clamp_limit(limit, 100_000);
        let found = self
            .query(
                &format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE s.name = $1 AND c.source_seq > $2 ORDER BY c.source_seq LIMIT $3"
                ),
                &[text(&source), int8(&after_seq), int8(&limit)],
            )
            .await?;
        rows(found, central_row)
    }

    async fn append_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute_typed(
                "INSERT INTO audit_checkpoints (source, seq, hash, at, node, prev, signature)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    text(&cp.source),
                    int8(&cp.seq),
                    text(&cp.hash),
                    text(&cp.at),
                    text(&cp.node),
                    text(&cp.prev),
                    bytea(&cp.signature),
                ],
            )
            .await?;
        Ok(())
    }

    async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let found = self
            .query(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints
                     WHERE source = $1 ORDER BY id"
                ),
                &[text(&source)],
            )
            .await?;
        rows(found, checkpoint_row)
    }

    async fn last_checkpoint(&self, source: &str) -> Result<Option<Checkpoint>, StoreError> {
        self.query_opt(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints
                 WHERE source = $1 ORDER BY id DESC LIMIT 1"
            ),
            &[text(&source)],
        )
        .await?
        .as_ref()
        .map(checkpoint_row)
        .transpose()
    }

    async fn register_node(
        &self,
        id: &str,
        public_key_hex: &str,
        certificate: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = ts(at);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        tx.execute_typed(
            "INSERT INTO nodes (id, public_key, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
            &[text(&id), text(&public_key_hex), text(&at)],
        )
        .await?;
        let certified = tx
            .execute_typed(
                "UPDATE nodes SET certificate = $3 WHERE id = $1 AND public_key = $2",
                &[text(&id), text(&public_key_hex), bytea(&certificate)],
            )
            .await?;
        if certified != 1 {
            return Err(StoreError::Conflict(format!(
                "node {id} is registered with another key"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn node_keys(&self) -> Result<Vec<RegisteredNode>, StoreError> {
        let found = self
            .query(
                "SELECT id, public_key, certificate FROM nodes ORDER BY id",
                &[],
            )
            .await?;
        found
            .iter()
            .map(|r| {
                Ok(RegisteredNode {
                    id: r.try_get(0)?,
                    public_key: r.try_get(1)?,
                    certificate: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn cursor(&self, name: &str) -> Result<i64, StoreError> {
        match self
            .query_opt("SELECT seq FROM cursors WHERE name = $1", &[text(&name)])
            .await?
        {
            Some(r) => Ok(r.try_get(0)?),
            None => Ok(0),
        }
    }

    async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute_typed(
                "INSERT INTO cursors (name, seq) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq",
                &[text(&name), int8(&seq)],
            )
            .await?;
        Ok(())
    }

    async fn reserve_attempt(
        &self,
        keys: &[String],
        at: OffsetDateTime,
        window: time::Duration,
        max: u32,
    ) -> Result<Attempt, StoreError> {
        let now = crate::unix_millis(at);
        let window_start = crate::unix_millis(at - window);
        let window_ms = i64::try_from(window.whole_milliseconds()).unwrap_or(i64::MAX);
        // In one order, so two attempts sharing keys cannot deadlock.
        let keys = crate::attempt_keys(keys);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let mut counted = Vec::with_capacity(keys.len());
        let mut refused_until: Option<i64> = None;
        for key in &keys {
            // The upsert locks the key's row until the transaction ends, so a
            // concurrent attempt on the same key waits, then counts after us.
            let row = tx
                .query_typed_one(
                    "INSERT INTO login_failures (key, count, since) VALUES ($1, 1, $2)
                     ON CONFLICT (key) DO UPDATE SET
                       count = CASE WHEN login_failures.since <= $3 THEN 1
                                    ELSE login_failures.count + 1 END,
                       since = CASE WHEN login_failures.since <= $3 THEN EXCLUDED.since
                                    ELSE login_failures.since END
                     RETURNING count, since",
                    &[text(key), int8(&now), int8(&window_start)],
                )
                .await?;
            let (count, since): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if count > i64::from(max) {
                refused_until = refused_until.max(Some(since.saturating_add(window_ms)));
            } else {
                counted.push((key.clone(), crate::from_unix_millis(since)?));
            }
        }
        if let Some(until) = refused_until {
            // Nothing is counted when any key refuses.
            tx.rollback().await?;
            return Ok(Attempt::Refused {
                until: crate::from_unix_millis(until)?,
            });
        }
        tx.commit().await?;
        Ok(Attempt::Counted(counted))
    }

    async fn release_attempt(
        &self,
        counted: &[(String, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        let mut counted: Vec<(&String, i64)> = counted
            .iter()
            .map(|(key, since)| (key, crate::unix_millis(*since)))
            .collect();
        counted.sort();
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        for (key, since) in counted {
            tx.execute_typed(
                "UPDATE login_failures SET count = count - 1
                 WHERE key = $1 AND since = $2 AND count > 0",
                &[text(key), int8(&since)],
            )
            .await?;
            tx.execute_typed(
                "DELETE FROM login_failures WHERE key = $1 AND count <= 0",
                &[text(key)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn login_failures(
        &self,
        keys: &[String],
    ) -> Result<Vec<(u32, OffsetDateTime)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .query(
                "SELECT key, count, since FROM login_failures WHERE key = ANY($1)",
                &[(&keys, Type::TEXT_ARRAY)],
            )
            .await?;
        let mut by_key: HashMap<String, (i64, i64)> = HashMap::with_capacity(found.len());
        for r in &found {
            by_key.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
        // In the order asked, as the SQLite backend answers.
        keys.iter()
            .filter_map(|k| by_key.get(k))
            .map(|&(count, since)| {
                Ok((
                    u32::try_from(count).unwrap_or(u32::MAX),
                    crate::from_unix_millis(since)?,
                ))
            })
            .collect()
    }

    async fn try_lease(
        &self,
        name: &str,
        node: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (now, until) = (crate::unix_millis(now), crate::unix_millis(until));
        let changed = self
            .conn()
            .await?
            .execute_typed(
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
                 WHERE leases.holder = EXCLUDED.holder OR leases.until <= $4",
                &[text(&name), text(&node), int8(&until), int8(&now)],
            )
            .await?;
        Ok(changed == 1)
    }
}
