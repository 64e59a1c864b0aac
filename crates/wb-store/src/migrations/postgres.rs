//! Applies migrations to a PostgreSQL database.

use tokio_postgres::Client;

use super::{latest, pending, Database, Migration};
use crate::StoreError;

/// Taken (per database) for the whole migration, so nodes opening the same
/// database at once migrate it once; DDL racing without it fails. The
/// control database's key predates migrations: a node of an older build
/// creating the control schema takes the same one.
const SCHEMA_LOCK: i64 = 7_263_001;

/// The version recorded in the database (0: none, a new database or a
/// control database made before migrations existed).
pub async fn version(client: &Client, db: Database) -> Result<i64, StoreError> {
    let table = match db {
        Database::Control => "schema_migrations",
        Database::Tenant => "meta",
    };
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    match db {
        Database::Control => Ok(client
            .query_one(
                "SELECT COALESCE(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .try_get(0)?),
        Database::Tenant => {
            let row = client
                .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
                .await?;
            let Some(row) = row else { return Ok(0) };
            let text: String = row.try_get(0)?;
            text.parse()
                .map_err(|_| StoreError::Corrupt(format!("schema version {text:?}")))
        }
    }
}

/// Brings the database up to the last migration of `list`.
pub async fn migrate(client: &Client, db: Database, list: &[Migration]) -> Result<i64, StoreError> {
    migrate_to(client, db, list, latest(list)).await
}

/// Applies the migrations of `list` after the database's version, up to
/// `target`, in one transaction under `SCHEMA_LOCK`; answers the version
/// reached. A no-op (two reads) when nothing is pending.
pub async fn migrate_to(
    client: &Client,
    db: Database,
    list: &[Migration],
    target: i64,
) -> Result<i64, StoreError> {
    let current = version(client, db).await?;
    if pending(db, list, current, target)?.is_empty() {
        return Ok(current);
    }
    client.batch_execute("BEGIN").await?;
    let migrated = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        if db == Database::Tenant {
            // Also the lock the company writers take first, as migrations of
            // builds before this list did: a writer or an older node's
            // migration waits, whichever build it runs.
            let heads: bool = client
                .query_one("SELECT to_regclass('heads') IS NOT NULL", &[])
                .await?
                .try_get(0)?;
            if heads {
                client
                    .execute("SELECT 1 FROM heads WHERE id = 1 FOR UPDATE", &[])
                    .await?;
            }
        }
        if db == Database::Control {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                         version    BIGINT PRIMARY KEY,
                         name       TEXT NOT NULL,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                     )",
                )
                .await?;
        }
        // Again under the lock: another node may have migrated meanwhile.
        let current = version(client, db).await?;
        let mut reached = current;
        for m in pending(db, list, current, target)? {
            client.batch_execute(m.sql).await?;
            record(client, db, &m).await?;
            reached = m.version;
        }
        client.batch_execute("COMMIT").await?;
        Ok::<_, StoreError>(reached)
    }
    .await;
    if migrated.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    migrated
}

async fn record(client: &Client, db: Database, m: &Migration) -> Result<(), StoreError> {
    match db {
        Database::Control => {
            client
                .execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    &[&m.version, &m.name],
                )
                .await?;
        }
        Database::Tenant => {
            client
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', $1)
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&m.version.to_string()],
                )
                .await?;
        }
    }
    Ok(())
}
