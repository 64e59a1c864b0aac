//! Sealed columns (`crate::sealed`) on PostgreSQL: read them all, replace one
//! value only if it is still the one read.

use super::control::{bytea, text, PgControl};
use crate::{SealedColumn, StoreError};

impl PgControl {
    pub(super) async fn sealed_values(
        &self,
        column: SealedColumn,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (table, id, sealed) = column.sql_names();
        let found = self
            .query(
                &format!(
                    "SELECT {id}, {sealed} FROM {table} WHERE length({sealed}) > 0 ORDER BY {id}"
                ),
                &[],
            )
            .await?;
        found
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    pub(super) async fn reseal(
        &self,
        column: SealedColumn,
        row: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let (table, id, sealed) = column.sql_names();
        let changed = self
            .conn()
            .await?
            .execute_typed(
                &format!("UPDATE {table} SET {sealed} = $3 WHERE {id} = $1 AND {sealed} = $2"),
                &[text(&row), bytea(&old), bytea(&new)],
            )
            .await?;
        Ok(changed == 1)
    }
}
