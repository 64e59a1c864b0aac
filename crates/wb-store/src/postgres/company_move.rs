//! Moving a company's database to another PostgreSQL server.
//!
//! A consistent dump under a short write pause: the mover locks the company's
//! `heads` row (every writer, on every node, waits there), copies each table
//! from that snapshot into a new database on the target server with COPY,
//! checks that the copy's chain heads and row counts equal the source's, points
//! the placement at the target, and marks the source `moved` before releasing
//! the lock. Writers that were waiting then see `moved` and answer
//! "retry"; their retry opens the company where it now lives. Nothing
//! acknowledged is left behind: every acknowledged write committed before the
//! lock was taken, and so is in the copy.

use std::time::{Duration, Instant};

use futures_util::{pin_mut, SinkExt, TryStreamExt};
use wb_crypto::DataKey;

use super::placement::Placement;
use super::tenant::PgTenants;
use crate::StoreError;

/// Tables of a company database, in an order that satisfies foreign keys.
const TABLES: &[&str] = &[
    "meta",
    "heads",
    "accounts",
    "entries",
    "postings",
    "files",
    "day_balances",
    "idempotency",
    "change_journal",
    "audit_events",
];

/// What a move did.
#[derive(Debug, Clone)]
pub struct MoveReport {
    pub company_id: String,
    pub from: String,
    pub to: String,
    /// Rows copied, all tables.
    pub rows: u64,
    pub journal_seq: i64,
    /// How long writers waited.
    pub write_pause: Duration,
}

impl PgTenants {
    /// Moves a company to `to` (a configured server name).
    pub async fn move_company(
        &self,
        company_id: &str,
        to: &str,
        key: &DataKey,
    ) -> Result<MoveReport, StoreError> {
        let source = self
            .placements()
            .get(company_id)
            .await?
            .ok_or(StoreError::NotFound("company database"))?;
        if source.server == to {
            return Err(StoreError::Conflict(format!(
                "company {company_id} is already on server {to}"
            )));
        }
        if !self.server_names().iter().any(|n| n == to) {
            return Err(StoreError::NotFound("database server"));
        }
        let target = self.provision(company_id, to, key).await?;
        match self.copy_and_switch(&source, &target, key).await {
            Ok(report) => {
                self.forget(company_id);
                if let Err(e) = self.drop_database(&source).await {
                    tracing::warn!(company = company_id, error = %e,
                        "the company moved, but its old database could not be dropped");
                }
                Ok(report)
            }
            Err(e) => {
                let _ = self.drop_database(&target).await;
                Err(e)
            }
        }
    }

    async fn copy_and_switch(
        &self,
        source: &Placement,
        target: &Placement,
        key: &DataKey,
    ) -> Result<MoveReport, StoreError> {
        let from = self
            .budget()
            .connect(&self.company_endpoint(source, key)?)
            .await?;
        let into = self
            .budget()
            .connect(&self.company_endpoint(target, key)?)
            .await?;
        // A source written only by an older build lacks newer tables: bring
        // it up to the schema the target was created with.
        crate::migrations::postgres::migrate(
            &from,
            crate::migrations::Database::Tenant,
            crate::migrations::POSTGRES_TENANT,
        )
        .await?;
        // The table lock comes before the snapshot (LOCK is not a query), so
        // the snapshot includes every writer that committed before it and no
        // writer can commit after it: they wait on `heads` until the switch.
        from.batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK TABLE heads IN EXCLUSIVE MODE",
        )
        .await?;
        let paused = Instant::now();
        let heads = from
            .query_one(
                "SELECT journal_seq, journal_hash, audit_seq, audit_hash, moved FROM heads
                 WHERE id = 1",
                &[],
            )
            .await?;
        if heads.try_get::<_, bool>(4)? {
            return Err(StoreError::Conflict(
                "the company's database has already moved".into(),
            ));
        }
        let journal_seq: i64 = heads.try_get(0)?;
        into.batch_execute("BEGIN; DELETE FROM heads; DELETE FROM meta")
            .await?;
        let mut rows = 0u64;
        for table in TABLES {
            let out = from
                .copy_out(&format!("COPY {table} TO STDOUT (FORMAT binary)"))
                .await?;
            let sink = into
                .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN (FORMAT binary)"))
                .await?;
            pin_mut!(out);
            pin_mut!(sink);
            while let Some(chunk) = out.try_next().await? {
                sink.send(chunk).await?;
            }
            let copied = sink.as_mut().finish().await?;
            let counted: i64 = from
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .try_get(0)?;
            if u64::try_from(counted).ok() != Some(copied) {
                return Err(StoreError::Corrupt(format!(
                    "moving {table}: copied {copied} rows of {counted}"
                )));
            }
            rows += copied;
        }
        let copied_heads = into
            .query_one(
                "SELECT journal_seq, journal_hash, audit_seq, audit_hash FROM heads WHERE id = 1",
                &[],
            )
            .await?;
        for i in 0..4 {
            let same = if i % 2 == 0 {
                heads.try_get::<_, i64>(i)? == copied_heads.try_get::<_, i64>(i)?
            } else {
                heads.try_get::<_, String>(i)? == copied_heads.try_get::<_, String>(i)?
            };
            if !same {
                return Err(StoreError::Corrupt(
                    "the copied chain heads differ from the source".into(),
                ));
            }
        }
        into.batch_execute("COMMIT").await?;
        self.placements().relocate(target).await?;
        let marked = async {
            from.batch_execute("UPDATE heads SET moved = true WHERE id = 1; COMMIT")
                .await
        }
        .await;
        if let Err(e) = marked {
            // The source stays authoritative: point the placement back.
            if let Err(back) = self.placements().relocate(source).await {
                tracing::error!(company = %source.company_id, error = %back,
                    "a failed move could not restore the placement");
            }
            return Err(e.into());
        }
        Ok(MoveReport {
            company_id: source.company_id.clone(),
            from: source.server.clone(),
            to: target.server.clone(),
            rows,
            journal_seq,
            write_pause: paused.elapsed(),
        })
    }
}
