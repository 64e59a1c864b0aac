//! Sealed columns (`crate::sealed`) on SQLite: read them all, replace one
//! value only if it is still the one read.

use rusqlite::params;

use super::control::SqliteControl;
use crate::{SealedColumn, StoreError};

impl SqliteControl {
    pub(super) async fn sealed_values(
        &self,
        column: SealedColumn,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (table, id, sealed) = column.sql_names();
        // An erased value (a destroyed company's key) holds nothing to re-seal.
        let sql =
            format!("SELECT {id}, {sealed} FROM {table} WHERE length({sealed}) > 0 ORDER BY {id}");
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub(super) async fn reseal(
        &self,
        column: SealedColumn,
        row: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let (table, id, sealed) = column.sql_names();
        let sql = format!("UPDATE {table} SET {sealed} = ?3 WHERE {id} = ?1 AND {sealed} = ?2");
        let (row, old, new) = (row.to_string(), old.to_vec(), new.to_vec());
        self.write(None, move |tx| {
            Ok(tx.execute(&sql, params![row, old, new])? == 1)
        })
        .await
    }
}
