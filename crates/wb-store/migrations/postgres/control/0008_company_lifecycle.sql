-- A company's end: its de-provisioning (access blocked at once), the grace
-- period, each step of its destruction, and the signed certificate that
-- closes it. Kept after the company is destroyed: the row is the proof.
-- Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS company_lifecycle (
    company_id             TEXT PRIMARY KEY REFERENCES companies(id),
    deprovisioned_at       BIGINT NOT NULL,
    deprovisioned_by       TEXT NOT NULL,
    destroy_after          BIGINT NOT NULL,
    certificate_id         TEXT NOT NULL UNIQUE,
    -- SHA-256 of the token emailed to the owner to fetch the certificate.
    certificate_token_hash TEXT NOT NULL,
    -- Set by the first destruction step's claim: a cancel is refused from then on.
    destruction_started_at BIGINT,
    -- The steps done so far, a JSON array in the order they were done.
    steps                  TEXT NOT NULL DEFAULT '[]',
    destroyed_at           BIGINT,
    -- The signed certificate of destruction (JSON).
    certificate            TEXT
);
CREATE INDEX IF NOT EXISTS company_lifecycle_due ON company_lifecycle(destroy_after) WHERE destroyed_at IS NULL;
