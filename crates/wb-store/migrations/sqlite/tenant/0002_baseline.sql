-- Baseline of a company database: the schema the code ran at every open
-- before migrations existed. Those databases record `meta.schema_version`
-- 1 (ledger) or 2 (attachments), so the list continues that numbering and
-- starts here, at 2. Written idempotently (IF NOT EXISTS) because it also
-- brings a version-1 database up to 2; every later migration runs exactly
-- once and need not be.
-- STRICT tables: an integer overflow in a balance update yields a REAL,
-- which a STRICT INTEGER column refuses.
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS accounts (
    id         INTEGER PRIMARY KEY,
    code       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    type       TEXT NOT NULL,
    parent     TEXT,
    currency   TEXT,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS entries (
    id          INTEGER PRIMARY KEY,
    date        TEXT NOT NULL,
    description TEXT NOT NULL,
    reference   TEXT,
    reverses    INTEGER UNIQUE REFERENCES entries(id),
    reversed_by INTEGER,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS entries_by_date ON entries(date, id);

CREATE TABLE IF NOT EXISTS postings (
    entry_id   INTEGER NOT NULL REFERENCES entries(id),
    line       INTEGER NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    currency   TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    date       TEXT NOT NULL,
    PRIMARY KEY (entry_id, line)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS postings_by_account ON postings(account_id, date, entry_id);

-- Signed sum of postings per account, currency and day: reports read these
-- instead of scanning postings.
CREATE TABLE IF NOT EXISTS day_balances (
    account_id INTEGER NOT NULL,
    currency   TEXT NOT NULL,
    day        TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    PRIMARY KEY (account_id, currency, day)
) STRICT, WITHOUT ROWID;

-- Version 1 had an index on day alone; no query used it and it cost a page per commit.
DROP INDEX IF EXISTS day_balances_by_day;

CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    entry_ids    TEXT NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS change_journal (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    payload   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS audit_events (
    seq        INTEGER PRIMARY KEY,
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
) STRICT;

-- Attachments: metadata of encrypted, content-addressed objects in the
-- object store; immutable, like entries, and linked to one when given.
CREATE TABLE IF NOT EXISTS files (
    id           INTEGER PRIMARY KEY,
    address      TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    entry_id     INTEGER REFERENCES entries(id),
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS files_by_entry ON files(entry_id, id) WHERE entry_id IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS files_immutable BEFORE UPDATE ON files
BEGIN SELECT RAISE(ABORT, 'files are immutable'); END;
CREATE TRIGGER IF NOT EXISTS files_undeletable BEFORE DELETE ON files
BEGIN SELECT RAISE(ABORT, 'files are immutable'); END;

-- Posted entries are immutable: only the link to a reversal may be set, once.
CREATE TRIGGER IF NOT EXISTS postings_immutable BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'posted entries are immutable'); END;
CREATE TRIGGER IF NOT EXISTS postings_undeletable BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'posted entries are immutable'); END;
CREATE TRIGGER IF NOT EXISTS entries_undeletable BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'posted entries are immutable'); END;
CREATE TRIGGER IF NOT EXISTS entries_immutable BEFORE UPDATE ON entries
WHEN OLD.reversed_by IS NOT NULL
  OR NEW.id IS NOT OLD.id OR NEW.date IS NOT OLD.date
  OR NEW.description IS NOT OLD.description OR NEW.reference IS NOT OLD.reference
  OR NEW.reverses IS NOT OLD.reverses OR NEW.created_at IS NOT OLD.created_at
  OR NEW.created_by IS NOT OLD.created_by
BEGIN SELECT RAISE(ABORT, 'posted entries are immutable'); END;
CREATE TRIGGER IF NOT EXISTS journal_append_only_u BEFORE UPDATE ON change_journal
BEGIN SELECT RAISE(ABORT, 'the change journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_u BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_append_only_d BEFORE DELETE ON change_journal
BEGIN SELECT RAISE(ABORT, 'the change journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_d BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
