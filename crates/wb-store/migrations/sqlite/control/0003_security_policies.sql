-- Each company's security policy (absent: the platform defaults), and when
-- each session was last used (for the policies' idle timeout). Times are
-- Unix milliseconds.
CREATE TABLE company_policies (
    company_id              TEXT PRIMARY KEY REFERENCES companies(id),
    mfa_required            INTEGER NOT NULL,
    session_ttl_minutes     INTEGER,
    idle_timeout_minutes    INTEGER,
    -- CIDR blocks separated by spaces, as validated by wb_core::security_policy.
    ip_allowlist            TEXT NOT NULL,
    min_passphrase_strength INTEGER NOT NULL,
    api_key_max_days        INTEGER,
    updated_at              INTEGER NOT NULL,
    updated_by              TEXT NOT NULL
) STRICT;
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
