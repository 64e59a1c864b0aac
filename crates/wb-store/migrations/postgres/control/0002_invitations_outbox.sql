-- Invitations to a company (the shared ledger model) and the email outbox.
-- Times are Unix milliseconds: they are compared as numbers.
CREATE TABLE invitations (
    id          TEXT COLLATE "C" PRIMARY KEY,
    company_id  TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    email       TEXT COLLATE "C" NOT NULL,
    role        TEXT NOT NULL,
    -- SHA-256 of the token: the token itself is shown once and emailed.
    token_hash  TEXT NOT NULL UNIQUE,
    invited_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT,
    revoked_at  BIGINT
);
CREATE INDEX invitations_by_company ON invitations(company_id, created_at);

-- Messages waiting for delivery, and what became of them. The message
-- (subject and body, which may hold a single-use link) is sealed under a
-- key the master key derives; only the recipient is readable.
CREATE TABLE outbox (
    id              TEXT COLLATE "C" PRIMARY KEY,
    recipient       TEXT NOT NULL,
    sealed_message  BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sent_at         BIGINT,
    given_up_at     BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE sent_at IS NULL AND given_up_at IS NULL;
