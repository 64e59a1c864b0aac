-- Each company's security policy (absent: the platform defaults), and when
-- each session was last used (for the policies' idle timeout). Times are
-- Unix milliseconds.
CREATE TABLE company_policies (
    company_id              TEXT COLLATE "C" PRIMARY KEY REFERENCES companies(id),
    mfa_required            BIGINT NOT NULL,
    session_ttl_minutes     BIGINT,
    idle_timeout_minutes    BIGINT,
    -- CIDR blocks separated by spaces, as validated by wb_core::security_policy.
    ip_allowlist            TEXT NOT NULL,
    min_passphrase_strength BIGINT NOT NULL,
    api_key_max_days        BIGINT,
    updated_at              BIGINT NOT NULL,
    updated_by              TEXT NOT NULL
);
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT;
