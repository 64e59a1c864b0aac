-- A company's own retention rules (wb_core::data_retention); no row: the
-- defaults. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS company_retention (
    company_id        TEXT COLLATE "C" PRIMARY KEY REFERENCES companies(id),
    entries_years     INTEGER NOT NULL,
    attachments_years INTEGER NOT NULL,
    audit_years       INTEGER NOT NULL,
    exports_days      INTEGER NOT NULL,
    updated_at        BIGINT NOT NULL,
    updated_by        TEXT NOT NULL
);
