-- The platform's staff (apart from customer users), their sessions, and
-- staff access grants (never deleted). Times are Unix milliseconds.
CREATE TABLE staff (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    passphrase_hash TEXT NOT NULL,
    -- Staff role names, comma-separated.
    roles           TEXT NOT NULL,
    -- The TOTP secret, sealed by the caller (staff enrol at creation).
    sealed_totp     BYTEA NOT NULL,
    totp_last_step  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT
);
CREATE TABLE staff_sessions (
    token_hash   TEXT PRIMARY KEY,
    staff_id     TEXT NOT NULL REFERENCES staff(id),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    client       TEXT,
    user_agent   TEXT
);
CREATE INDEX staff_sessions_by_staff ON staff_sessions(staff_id);
CREATE TABLE access_grants (
    id                     TEXT PRIMARY KEY,
    company_id             TEXT NOT NULL REFERENCES companies(id),
    requested_by           TEXT NOT NULL,
    reason                 TEXT NOT NULL,
    scope                  TEXT NOT NULL,
    duration_minutes       BIGINT NOT NULL,
    ticket                 TEXT,
    mandate_reference      TEXT,
    mandate_disclose_after BIGINT,
    requested_at           BIGINT NOT NULL,
    starts_at              BIGINT,
    company_by             TEXT,
    company_at             BIGINT,
    management_by          TEXT,
    management_at          BIGINT,
    -- 'denied' or 'revoked', by which side, who and when.
    ended_kind             TEXT,
    ended_side             TEXT,
    ended_by               TEXT,
    ended_at               BIGINT,
    version                BIGINT NOT NULL
);
CREATE INDEX access_grants_by_company ON access_grants(company_id, requested_at);
CREATE INDEX access_grants_by_requester ON access_grants(requested_by, company_id);
