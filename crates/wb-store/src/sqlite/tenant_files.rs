//! Reading a company's attachment records (SQLCipher).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::conn::{parse_ts, ts};
use crate::file_records::{size_of, stored_size};
use crate::model::{FilePage, FileRecord};
use crate::StoreError;

const COLUMNS: &str = "id, address, name, content_type, size, entry_id, created_at, created_by";

fn row_to_file(row: &Row<'_>) -> Result<FileRecord, StoreError> {
    let created_at: String = row.get(6)?;
    Ok(FileRecord {
        id: row.get(0)?,
        address: row.get(1)?,
        name: row.get(2)?,
        content_type: row.get(3)?,
        size: size_of(row.get(4)?)?,
        entry_id: row.get(5)?,
        created_at: parse_ts(&created_at)?,
        created_by: row.get(7)?,
    })
}

pub(crate) fn file(conn: &Connection, id: i64) -> Result<Option<FileRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(row_to_file(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn files(
    conn: &Connection,
    page: &FilePage,
    max_page: u32,
) -> Result<Vec<FileRecord>, StoreError> {
    let limit = page.limit.clamp(1, max_page);
    let after = page.after.unwrap_or(0);
    let mut stmt = match page.entry_id {
        Some(_) => conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM files WHERE entry_id = ?3 AND id > ?1 ORDER BY id LIMIT ?2"
        ))?,
        None => conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM files WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?,
    };
    let mut rows = match page.entry_id {
        Some(entry) => stmt.query(params![after, limit, entry])?,
        None => stmt.query(params![after, limit])?,
    };
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(row_to_file(row)?);
    }
    Ok(out)
}

/// The id the next file gets.
pub(crate) fn next_id(conn: &Connection) -> Result<i64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM files", [], |r| {
            r.get(0)
        })?,
    )
}

pub(crate) fn entry_exists(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM entries WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Inserts a file record under its id (the writer chose or the journal gave it).
pub(crate) fn insert(conn: &Connection, file: &FileRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO files (id, address, name, content_type, size, entry_id, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        file.id,
        file.address,
        file.name,
        file.content_type,
        stored_size(file.size),
        file.entry_id,
        ts(file.created_at),
        file.created_by
    ])?;
    Ok(())
}
