-- Second factors (TOTP and recovery codes), pending second-factor logins,
-- passphrase resets, and which second factor opened a session. Times are
-- Unix milliseconds.
CREATE TABLE totp_factors (
    user_id       TEXT COLLATE "C" PRIMARY KEY REFERENCES users(id),
    -- The shared secret, sealed by the caller (keyring's MFA key).
    sealed_secret BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    confirmed_at  BIGINT,
    -- The last accepted step (unix time / 30): a code is accepted once.
    last_step     BIGINT NOT NULL
);
CREATE TABLE recovery_codes (
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    code_hash  TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE mfa_challenges (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    failures   BIGINT NOT NULL,
    client     TEXT,
    user_agent TEXT
);
CREATE TABLE passphrase_resets (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX passphrase_resets_by_user ON passphrase_resets(user_id);
ALTER TABLE sessions ADD COLUMN second_factor TEXT;
