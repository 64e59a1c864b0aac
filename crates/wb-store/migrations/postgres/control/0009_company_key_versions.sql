-- Company key versions. The current version's wrapping stays in
-- companies.wrapped_dek (so everything that reads it is unchanged);
-- companies.key_version names it. A rotation moves the current wrapping
-- here, retired, and keeps it while anything sealed under it is still
-- kept; then its wrapping is erased (destroyed_at) and the row stays as
-- the record. Times are Unix milliseconds.
ALTER TABLE companies ADD COLUMN key_version INTEGER NOT NULL DEFAULT 1;
-- When the current version was made; NULL: with the company.
ALTER TABLE companies ADD COLUMN key_created_at BIGINT;
CREATE TABLE IF NOT EXISTS company_key_versions (
    -- `<company id>/v<version>`: one id, for the master-key rotation's
    -- sealed-column walk.
    id           TEXT COLLATE "C" PRIMARY KEY,
    company_id   TEXT COLLATE "C" NOT NULL REFERENCES companies(id),
    version      INTEGER NOT NULL,
    -- Wrapped by the master key, the company id as context; empty once destroyed.
    wrapped_dek  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT NOT NULL,
    destroyed_at BIGINT,
    UNIQUE (company_id, version)
);
-- The company's longest key-version life before an alert (days; NULL:
-- the platform's default).
ALTER TABLE company_policies ADD COLUMN key_max_age_days BIGINT;
