-- Invitations to a company (the shared ledger model) and the email outbox.
-- Times are Unix milliseconds: they are compared as numbers.
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies(id),
    email       TEXT NOT NULL COLLATE NOCASE,
    role        TEXT NOT NULL,
    -- SHA-256 of the token: the token itself is shown once and emailed.
    token_hash  TEXT NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    accepted_at INTEGER,
    accepted_by TEXT,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX invitations_by_company ON invitations(company_id, created_at);

-- Messages waiting for delivery, and what became of them. The message
-- (subject and body, which may hold a single-use link) is sealed under a
-- key the master key derives; only the recipient is readable.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    recipient       TEXT NOT NULL,
    sealed_message  BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER,
    given_up_at     INTEGER,
    last_error      TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE sent_at IS NULL AND given_up_at IS NULL;
