-- Baseline of the control database: the schema the code ran at every open
-- before migrations existed. Written idempotently (IF NOT EXISTS) because it
-- also adopts control databases created by that code, which record no
-- version; every later migration runs exactly once and need not be.
-- On SQLite, a database made before `nodes.certificate` existed also gets
-- that column (`migrations::sqlite`: SQLite has no ADD COLUMN IF NOT EXISTS).
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

-- Alerts: at most one open or acknowledged alert per dedupe key (the partial unique index).
CREATE TABLE IF NOT EXISTS alerts (
    id                 INTEGER PRIMARY KEY,
    rule               TEXT NOT NULL,
    severity           TEXT NOT NULL,
    state              TEXT NOT NULL,
    dedupe_key         TEXT NOT NULL,
    title              TEXT NOT NULL,
    detail             TEXT NOT NULL,
    company_id         TEXT,
    count              INTEGER NOT NULL,
    first_seen         TEXT NOT NULL,
    last_seen          TEXT NOT NULL,
    raised_at          TEXT NOT NULL,
    acknowledged_by    TEXT,
    acknowledged_at    TEXT,
    acknowledge_reason TEXT,
    resolved_by        TEXT,
    resolved_at        TEXT,
    resolve_reason     TEXT
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS alerts_active_key ON alerts(dedupe_key) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts(state, id);

-- Scheduled customer exports, one per company.
CREATE TABLE IF NOT EXISTS export_schedules (
    company_id         TEXT PRIMARY KEY REFERENCES companies(id),
    id                 TEXT NOT NULL,
    destination        TEXT NOT NULL,
    recipient          TEXT NOT NULL,
    every_hours        INTEGER NOT NULL,
    -- Sealed under the company's DEK by the server; opaque here.
    sealed_credentials BLOB,
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    next_push_at       INTEGER NOT NULL, -- Unix milliseconds: compared as numbers
    last_push_at       TEXT,
    last_push_status   TEXT,
    last_error         TEXT,
    last_object        TEXT,
    failures           INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS export_schedules_due ON export_schedules(next_push_at);
