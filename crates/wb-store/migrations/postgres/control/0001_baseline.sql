-- Baseline of the control database: the schema the code ran at every open
-- before migrations existed. Written idempotently (IF NOT EXISTS) because it
-- also adopts control databases created by that code, which record no
-- version; every later migration runs exactly once and need not be.
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

-- Alerts: at most one open or acknowledged alert per dedupe key (the partial unique index).
CREATE TABLE IF NOT EXISTS alerts (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule               TEXT NOT NULL,
    severity           TEXT NOT NULL,
    state              TEXT NOT NULL,
    dedupe_key         TEXT NOT NULL,
    title              TEXT NOT NULL,
    detail             TEXT NOT NULL,
    company_id         TEXT,
    count              BIGINT NOT NULL,
    first_seen         TEXT NOT NULL,
    last_seen          TEXT NOT NULL,
    raised_at          TEXT NOT NULL,
    acknowledged_by    TEXT,
    acknowledged_at    TEXT,
    acknowledge_reason TEXT,
    resolved_by        TEXT,
    resolved_at        TEXT,
    resolve_reason     TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_active_key ON alerts(dedupe_key) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts(state, id);

-- Scheduled customer exports, one per company.
CREATE TABLE IF NOT EXISTS export_schedules (
    company_id         TEXT COLLATE "C" PRIMARY KEY REFERENCES companies(id),
    id                 TEXT COLLATE "C" NOT NULL,
    destination        TEXT NOT NULL,
    recipient          TEXT NOT NULL,
    every_hours        BIGINT NOT NULL,
    -- Sealed under the company's DEK by the server; opaque here.
    sealed_credentials BYTEA,
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    next_push_at       BIGINT NOT NULL, -- Unix milliseconds: compared as numbers
    last_push_at       TEXT,
    last_push_status   TEXT,
    last_error         TEXT,
    last_object        TEXT,
    failures           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS export_schedules_due ON export_schedules(next_push_at);
