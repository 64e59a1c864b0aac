-- Second factors (TOTP, recovery codes, passkeys), pending second-factor logins
-- and WebAuthn ceremonies,
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
CREATE TABLE passkeys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users(id),
    name         TEXT NOT NULL,
    -- The WebAuthn credential (public key, id, counter) as JSON.
    credential   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_by_user ON passkeys(user_id);
-- A WebAuthn registration or authentication waiting for the authenticator's
-- answer: its state (with the challenge), taken once.
CREATE TABLE webauthn_ceremonies (
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" REFERENCES users(id),
    kind       TEXT NOT NULL,
    state      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
ALTER TABLE sessions ADD COLUMN second_factor TEXT;
