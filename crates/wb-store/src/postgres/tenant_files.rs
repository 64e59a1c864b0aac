//! Reading and writing a company's attachment records (PostgreSQL).

use tokio_postgres::Row;

use super::pool::PgConn;
use crate::file_records::size_of;
use crate::model::{FilePage, FileRecord};
use crate::sqlite::conn::parse_ts;
use crate::StoreError;

const BY_ID: &str = "SELECT id, address, name, content_type, size, entry_id, created_at, created_by
     FROM files WHERE id = $1";
const PAGE: &str = "SELECT id, address, name, content_type, size, entry_id, created_at, created_by
     FROM files WHERE id > $1 ORDER BY id LIMIT $2";
const PAGE_OF_ENTRY: &str =
    "SELECT id, address, name, content_type, size, entry_id, created_at, created_by
     FROM files WHERE entry_id = $3 AND id > $1 ORDER BY id LIMIT $2";
/// Inserts planned file records (the writer's batch), after their entries.
pub(crate) const INSERT: &str =
    "INSERT INTO files (id, address, name, content_type, size, entry_id, created_at, created_by)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                          $6::bigint[], $7::text[], $8::text[])";
/// A purge's candidates: records linked to one of the entries it removes,
/// and every unlinked record (whose age the purge compares as a time).
const PURGE_CANDIDATES: &str =
    "SELECT id, address, name, content_type, size, entry_id, created_at, created_by
     FROM files WHERE entry_id = ANY($1) OR entry_id IS NULL ORDER BY id";
pub(crate) const NEXT_ID: &str = "SELECT COALESCE(MAX(id), 0) + 1 FROM files";
pub(crate) const EXISTING_ENTRIES: &str = "SELECT id FROM entries WHERE id = ANY($1)";

fn row_to_file(row: &Row) -> Result<FileRecord, StoreError> {
    let created_at: String = row.try_get(6)?;
    Ok(FileRecord {
        id: row.try_get(0)?,
        address: row.try_get(1)?,
        name: row.try_get(2)?,
        content_type: row.try_get(3)?,
        size: size_of(row.try_get(4)?)?,
        entry_id: row.try_get(5)?,
        created_at: parse_ts(&created_at)?,
        created_by: row.try_get(7)?,
    })
}

pub(crate) async fn file(conn: &mut PgConn, id: i64) -> Result<Option<FileRecord>, StoreError> {
    let statement = conn.prepare_cached(BY_ID).await?;
    conn.query_opt(&statement, &[&id])
        .await?
        .as_ref()
        .map(row_to_file)
        .transpose()
}

pub(crate) async fn files(
    conn: &mut PgConn,
    page: &FilePage,
    max_page: u32,
) -> Result<Vec<FileRecord>, StoreError> {
    let limit = i64::from(page.limit.clamp(1, max_page));
    let after = page.after.unwrap_or(0);
    let rows = match page.entry_id {
        Some(entry) => {
            let statement = conn.prepare_cached(PAGE_OF_ENTRY).await?;
            conn.query(&statement, &[&after, &limit, &entry]).await?
        }
        None => {
            let statement = conn.prepare_cached(PAGE).await?;
            conn.query(&statement, &[&after, &limit]).await?
        }
    };
    rows.iter().map(row_to_file).collect()
}

/// The records linked to one of `entries`, and every unlinked record, by id.
pub(crate) async fn purge_candidates(
    conn: &mut PgConn,
    entries: &[i64],
) -> Result<Vec<FileRecord>, StoreError> {
    let statement = conn.prepare_cached(PURGE_CANDIDATES).await?;
    conn.query(&statement, &[&entries])
        .await?
        .iter()
        .map(row_to_file)
        .collect()
}
