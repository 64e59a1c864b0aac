//! Opening SQLCipher connections, time and date columns, a small reader pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use wb_crypto::DataKey;
use wb_crypto::Secret;

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Create,
    Existing,
}

/// Process-wide SQLite settings, applied once before the first connection.
///
/// With one connection per open company, SQLite's per-connection defaults
/// dominate memory: a 120 KiB lookaside arena and a 20-page bulk page-cache
/// allocation (about 180 KiB per connection in `workbooks bench`). Pages are
/// instead allocated as used, and lookaside is cut to 64 slots of 512 bytes.
fn configure_sqlite_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use rusqlite::ffi;
        // SAFETY: sqlite3_config is called before any connection is opened
        // (this runs first in open_encrypted), with the argument types these
        // options document: (void*, int, int) and (int, int).
        unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                0 as std::ffi::c_int,
                0 as std::ffi::c_int,
            );
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_LOOKASIDE,
                512 as std::ffi::c_int,
                64 as std::ffi::c_int,
            );
        }
    });
}

/// Opens an SQLCipher database keyed with a raw 256-bit key (no PBKDF2 per open),
/// in WAL mode with `synchronous=FULL`: a commit is durable when it returns.
pub fn open_encrypted(
    path: &Path,
    key: &DataKey,
    mode: OpenMode,
) -> Result<Connection, StoreError> {
    configure_sqlite_once();
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    match mode {
        OpenMode::Create => {
            if path.exists() {
                return Err(StoreError::Conflict(format!(
                    "database {} already exists",
                    path.display()
                )));
            }
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        OpenMode::Existing => {
            if !path.exists() {
                return Err(StoreError::NotFound("database file"));
            }
        }
    }
    let conn = Connection::open_with_flags(path, flags)?;
    let statement = Secret::new(format!(
        "PRAGMA key = \"{}\";",
        &*key.sqlcipher_pragma_value()
    ));
    // The error text of a failed PRAGMA could quote the statement: replace it.
    conn.execute_batch(statement.expose())
        .map_err(|_| StoreError::Backend("setting the database key failed".into()))?;
    drop(statement);
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .map_err(|e| match StoreError::from(e) {
            StoreError::WrongKey => StoreError::WrongKey,
            other => other,
        })?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 10000;
         PRAGMA cache_size = -16384;
         PRAGMA temp_store = MEMORY;",
    )?;
    Ok(conn)
}

pub(crate) fn ts(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn parse_ts(text: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| StoreError::Corrupt(format!("bad timestamp {text:?}")))
}

pub(crate) fn day(date: Date) -> String {
    date.to_string()
}

pub(crate) fn parse_day(text: &str) -> Result<Date, StoreError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).map_err(|_| StoreError::Corrupt(format!("bad date {text:?}")))
}

/// Read connections for one database, at most `max_open` at once: callers past
/// that wait for one instead of opening more. WAL readers never wait for the writer.
pub(crate) struct ReaderPool {
    path: PathBuf,
    /// Changes only while every permit is held (`ReaderPool::rekey`).
    key: Mutex<DataKey>,
    idle: Mutex<Vec<Connection>>,
    /// A read holds its permit on the blocking thread until its connection
    /// is back in `idle` (so `close_all` waits for reads whose callers went
    /// away too).
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    max_open: u32,
}

impl ReaderPool {
    pub(crate) fn new(path: PathBuf, key: DataKey, max_open: usize) -> ReaderPool {
        ReaderPool {
            path,
            key: Mutex::new(key),
            idle: Mutex::new(Vec::new()),
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(max_open)),
            max_open: u32::try_from(max_open).unwrap_or(u32::MAX),
        }
    }

    /// Waits for the reads under way, closes every connection and holds all
    /// permits until the returned guard drops: the database file can then
    /// be replaced. Called on a blocking thread of the runtime.
    pub(crate) fn close_all(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        let permits = tokio::runtime::Handle::current()
            .block_on(self.permits.acquire_many(self.max_open))
            .map_err(|_| StoreError::Backend("reader pool closed".into()))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        Ok(permits)
    }

    /// The key new connections open with.
    pub(crate) fn current_key(&self) -> Result<DataKey, StoreError> {
        Ok(self
            .key
            .lock()
            .map_err(|_| StoreError::Backend("reader pool poisoned".into()))?
            .clone())
    }

    /// Opens new connections with `key` from now on (with every permit held).
    pub(crate) fn set_key(&self, _closed: &tokio::sync::SemaphorePermit<'_>, key: DataKey) {
        if let Ok(mut held) = self.key.lock() {
            *held = key;
        }
    }

    /// Runs `f` on a pooled connection on the blocking thread pool.
    pub(crate) async fn with<T, F>(self: &std::sync::Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("reader pool closed".into()))?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(conn)) => conn,
                _ => {
                    let key = pool
                        .key
                        .lock()
                        .map_err(|_| StoreError::Backend("reader pool poisoned".into()))?
                        .clone();
                    let conn = open_encrypted(&pool.path, &key, OpenMode::Existing)?;
                    conn.execute_batch("PRAGMA cache_size = -4096; PRAGMA query_only = ON;")?;
                    conn
                }
            };
            let result = f(&conn);
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }
}
