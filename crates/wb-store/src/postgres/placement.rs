//! Which PostgreSQL server holds each company's database (a table of the
//! control plane).

use std::collections::HashMap;

use time::OffsetDateTime;

use super::pool::PgPool;
use crate::migrations::{self, Database};
use crate::sqlite::conn::ts;
use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub company_id: String,
    /// The server's name in the configuration.
    pub server: String,
    pub database: String,
    pub role: String,
}

pub struct Placements {
    pool: PgPool,
}

impl Placements {
    pub(crate) async fn open(pool: PgPool) -> Result<Placements, StoreError> {
        {
            // `placements` is a table of the control database: the same
            // migrations (a no-op when `PgControl::open` ran them).
            let conn = pool.get().await?;
            migrations::postgres::migrate(&conn, Database::Control, migrations::POSTGRES_CONTROL)
                .await?;
        }
        Ok(Placements { pool })
    }

    pub async fn get(&self, company_id: &str) -> Result<Option<Placement>, StoreError> {
        const SQL: &str =
            "SELECT company_id, server, database, role FROM placements WHERE company_id = $1";
        let mut conn = self.pool.get().await?;
        let statement = conn.prepare_cached(SQL).await?;
        let row = conn.query_opt(&statement, &[&company_id]).await?;
        row.map(|r| {
            Ok(Placement {
                company_id: r.try_get(0)?,
                server: r.try_get(1)?,
                database: r.try_get(2)?,
                role: r.try_get(3)?,
            })
        })
        .transpose()
    }

    pub async fn all(&self) -> Result<Vec<Placement>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT company_id, server, database, role FROM placements ORDER BY company_id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Placement {
                    company_id: r.try_get(0)?,
                    server: r.try_get(1)?,
                    database: r.try_get(2)?,
                    role: r.try_get(3)?,
                })
            })
            .collect()
    }

    pub(crate) async fn insert(&self, placement: &Placement) -> Result<(), StoreError> {
        let conn = self.pool.get().await?;
        conn.execute(
            "INSERT INTO placements (company_id, server, database, role, placed_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &placement.company_id,
                &placement.server,
                &placement.database,
                &placement.role,
                &ts(OffsetDateTime::now_utc()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Points a company at another server (the last step of a move).
    pub(crate) async fn relocate(&self, placement: &Placement) -> Result<(), StoreError> {
        let conn = self.pool.get().await?;
        let changed = conn
            .execute(
                "UPDATE placements SET server = $2, database = $3, role = $4, moving = false,
                        placed_at = $5
                 WHERE company_id = $1",
                &[
                    &placement.company_id,
                    &placement.server,
                    &placement.database,
                    &placement.role,
                    &ts(OffsetDateTime::now_utc()),
                ],
            )
            .await?;
        if changed == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound("company placement"))
        }
    }

    pub(crate) async fn remove(&self, company_id: &str) -> Result<(), StoreError> {
        let conn = self.pool.get().await?;
        conn.execute(
            "DELETE FROM placements WHERE company_id = $1",
            &[&company_id],
        )
        .await?;
        Ok(())
    }

    /// Companies per server.
    pub async fn counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT server, count(*) FROM placements GROUP BY server",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
