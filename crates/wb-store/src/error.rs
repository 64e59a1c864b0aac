use wb_core::LedgerError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A membership change the rules refuse.
    #[error(transparent)]
    Members(#[from] wb_core::members::MemberRuleError),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("database key is wrong or the file is not a Work-books database")]
    WrongKey,
    #[error("stored data failed an integrity check: {0}")]
    Corrupt(String),
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("the company's writer has stopped")]
    WriterStopped,
    #[error("the audit trail cannot be written: {0}")]
    AuditUnavailable(String),
    /// The company's database moved to another server; open it again.
    #[error("the company's database has moved to another server; retry")]
    Moved,
    /// The database was migrated by a newer build; this one must not touch it.
    #[error(
        "the {database} database is at schema version {found}, newer than this build \
         knows ({supported}); run a newer build"
    )]
    SchemaTooNew {
        database: &'static str,
        found: i64,
        supported: i64,
    },
    /// A database server could not be reached or refused us; one line, no secrets.
    #[error("{0}")]
    Connect(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        // A STRICT integer column refuses the REAL that SQLite produces on
        // integer overflow: surface that as the ledger's overflow error.
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_DATATYPE {
                return StoreError::Ledger(LedgerError::Overflow);
            }
            if f.code == rusqlite::ErrorCode::NotADatabase {
                return StoreError::WrongKey;
            }
        }
        if let rusqlite::Error::SqliteFailure(_, Some(msg)) = &e {
            if msg.contains("integer overflow") {
                return StoreError::Ledger(LedgerError::Overflow);
            }
        }
        StoreError::Backend(e.to_string())
    }
}
