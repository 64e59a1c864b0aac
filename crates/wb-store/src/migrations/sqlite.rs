//! Applies migrations to a SQLCipher database.

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{latest, pending, Database, Migration};
use crate::StoreError;

/// The version recorded in the database (0: none, a new database or a
/// control database made before migrations existed).
pub fn version(conn: &Connection, db: Database) -> Result<i64, StoreError> {
    match db {
        Database::Control => Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?),
        Database::Tenant => {
            let has_meta: bool = conn.query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get(0),
            )?;
            if !has_meta {
                return Ok(0);
            }
            let text: Option<String> = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            text.map_or(Ok(0), |t| {
                t.parse()
                    .map_err(|_| StoreError::Corrupt(format!("schema version {t:?}")))
            })
        }
    }
}

/// Brings the database up to the last migration of `list`.
pub fn migrate(conn: &mut Connection, db: Database, list: &[Migration]) -> Result<i64, StoreError> {
    migrate_to(conn, db, list, latest(list))
}

/// Applies the migrations of `list` after the database's version, up to
/// `target`, in one transaction; answers the version reached. A no-op (one
/// read) when nothing is pending.
pub fn migrate_to(
    conn: &mut Connection,
    db: Database,
    list: &[Migration],
    target: i64,
) -> Result<i64, StoreError> {
    let current = version(conn, db)?;
    if pending(db, list, current, target)?.is_empty() {
        return Ok(current);
    }
    // IMMEDIATE: take the write lock before reading the version again, so
    // two processes opening the same file migrate it once.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = version(&tx, db)?;
    let mut reached = current;
    for m in pending(db, list, current, target)? {
        tx.execute_batch(m.sql)?;
        if db == Database::Control && m.version == 1 {
            add_node_certificates(&tx)?;
        }
        reached = m.version;
    }
    record(&tx, db, reached)?;
    tx.commit()?;
    Ok(reached)
}

fn record(tx: &Transaction<'_>, db: Database, version: i64) -> Result<(), StoreError> {
    match db {
        Database::Control => tx.pragma_update(None, "user_version", version)?,
        Database::Tenant => {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [version.to_string()],
            )?;
        }
    }
    Ok(())
}

/// Part of the control baseline: adds `nodes.certificate` to a control
/// database created before it existed (its `CREATE TABLE IF NOT EXISTS`
/// leaves such a table as it is, and SQLite has no ADD COLUMN IF NOT EXISTS).
fn add_node_certificates(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let (columns, present): (i64, bool) = tx.query_row(
        "SELECT count(*), coalesce(sum(name = 'certificate'), 0) > 0 FROM pragma_table_info('nodes')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if columns > 0 && !present {
        tx.execute_batch("ALTER TABLE nodes ADD COLUMN certificate BLOB")?;
    }
    Ok(())
}
