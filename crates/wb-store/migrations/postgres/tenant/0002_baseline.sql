-- Baseline of a company database: the schema the code ran at every open
-- before migrations existed. Those databases record `meta.schema_version`
-- 1 (ledger) or 2 (attachments), so the list continues that numbering and
-- starts here, at 2. Written idempotently (IF NOT EXISTS) because it also
-- brings a version-1 database up to 2; every later migration runs exactly
-- once and need not be.
-- The same tables and rules as the SQLCipher schema, plus `heads`, the one
-- row every writer locks first, so writers on several nodes take turns and
-- each continues the chains where the last one stopped.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS heads (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    journal_seq     BIGINT NOT NULL,
    journal_hash    TEXT NOT NULL,
    audit_seq       BIGINT NOT NULL,
    audit_hash      TEXT NOT NULL,
    next_entry_id   BIGINT NOT NULL,
    next_account_id BIGINT NOT NULL,
    -- Set when the company moved to another server: writers still holding
    -- this database stop here instead of writing where nobody reads.
    moved           BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS accounts (
    id         BIGINT PRIMARY KEY,
    code       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    type       TEXT NOT NULL,
    parent     TEXT,
    currency   TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS entries (
    id          BIGINT PRIMARY KEY,
    date        TEXT NOT NULL,
    description TEXT NOT NULL,
    reference   TEXT,
    reverses    BIGINT UNIQUE REFERENCES entries(id),
    reversed_by BIGINT,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_date ON entries(date, id);

CREATE TABLE IF NOT EXISTS postings (
    entry_id   BIGINT NOT NULL REFERENCES entries(id),
    line       INTEGER NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    currency   TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    date       TEXT NOT NULL,
    PRIMARY KEY (entry_id, line)
);
CREATE INDEX IF NOT EXISTS postings_by_account ON postings(account_id, date, entry_id);

CREATE TABLE IF NOT EXISTS day_balances (
    account_id BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    day        TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    PRIMARY KEY (account_id, currency, day)
);

CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    entry_ids    TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS change_journal (
    seq       BIGINT PRIMARY KEY,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    payload   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_events (
    seq        BIGINT PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    auth       TEXT NOT NULL,
    client     TEXT,
    request_id TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    outcome    TEXT NOT NULL,
    detail     TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

-- Attachments: metadata of encrypted, content-addressed objects in the
-- object store; immutable, like entries, and linked to one when given.
CREATE TABLE IF NOT EXISTS files (
    id           BIGINT PRIMARY KEY,
    address      TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL CHECK (size >= 0),
    entry_id     BIGINT REFERENCES entries(id),
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_entry ON files(entry_id, id) WHERE entry_id IS NOT NULL;

CREATE OR REPLACE FUNCTION workbooks_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;

CREATE OR REPLACE FUNCTION workbooks_entry_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.reversed_by IS NOT NULL
     OR NEW.id IS DISTINCT FROM OLD.id OR NEW.date IS DISTINCT FROM OLD.date
     OR NEW.description IS DISTINCT FROM OLD.description
     OR NEW.reference IS DISTINCT FROM OLD.reference
     OR NEW.reverses IS DISTINCT FROM OLD.reverses
     OR NEW.created_at IS DISTINCT FROM OLD.created_at
     OR NEW.created_by IS DISTINCT FROM OLD.created_by THEN
    RAISE EXCEPTION 'posted entries are immutable';
  END IF;
  RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS postings_immutable ON postings;
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings
  FOR EACH ROW EXECUTE FUNCTION workbooks_refuse('posted entries are immutable');
DROP TRIGGER IF EXISTS entries_undeletable ON entries;
CREATE TRIGGER entries_undeletable BEFORE DELETE ON entries
  FOR EACH ROW EXECUTE FUNCTION workbooks_refuse('posted entries are immutable');
DROP TRIGGER IF EXISTS entries_immutable ON entries;
CREATE TRIGGER entries_immutable BEFORE UPDATE ON entries
  FOR EACH ROW EXECUTE FUNCTION workbooks_entry_update();
DROP TRIGGER IF EXISTS files_immutable ON files;
CREATE TRIGGER files_immutable BEFORE UPDATE OR DELETE ON files
  FOR EACH ROW EXECUTE FUNCTION workbooks_refuse('files are immutable');
DROP TRIGGER IF EXISTS journal_append_only ON change_journal;
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON change_journal
  FOR EACH ROW EXECUTE FUNCTION workbooks_refuse('the change journal is append-only');
DROP TRIGGER IF EXISTS audit_append_only ON audit_events;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION workbooks_refuse('the audit log is append-only');
DROP TRIGGER IF EXISTS journal_no_truncate ON change_journal;
CREATE TRIGGER journal_no_truncate BEFORE TRUNCATE ON change_journal
  FOR EACH STATEMENT EXECUTE FUNCTION workbooks_refuse('the change journal is append-only');
DROP TRIGGER IF EXISTS audit_no_truncate ON audit_events;
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION workbooks_refuse('the audit log is append-only');
