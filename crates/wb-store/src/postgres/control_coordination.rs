//! What nodes sharing the PostgreSQL control database coordinate through:
//! job cursors, login and signup attempt counts, and job leases.
//! `ControlStore` forwards here from `control.rs`.

use std::collections::HashMap;

use time::OffsetDateTime;
use tokio_postgres::types::Type;

use super::control::*;
use crate::model::*;
use crate::StoreError;

impl PgControl {
    pub(super) async fn cursor(&self, name: &str) -> Result<i64, StoreError> {
        match self
            .query_opt("SELECT seq FROM cursors WHERE name = $1", &[text(&name)])
            .await?
        {
            Some(r) => Ok(r.try_get(0)?),
            None => Ok(0),
        }
    }

    pub(super) async fn set_cursor(&self, name: &str, seq: i64) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute_typed(
                "INSERT INTO cursors (name, seq) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq",
                &[text(&name), int8(&seq)],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn reserve_attempts(
        &self,
        budgets: &[(String, u32)],
        at: OffsetDateTime,
        window: time::Duration,
    ) -> Result<Attempt, StoreError> {
        let now = crate::unix_millis(at);
        let window_start = crate::unix_millis(at - window);
        let window_ms = i64::try_from(window.whole_milliseconds()).unwrap_or(i64::MAX);
        // In one order, so two attempts sharing keys cannot deadlock.
        let keys = crate::attempt_keys(budgets);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        let mut counted = Vec::with_capacity(keys.len());
        let mut refused_until: Option<i64> = None;
        for (key, max) in &keys {
            // The upsert locks the key's row until the transaction ends, so a
            // concurrent attempt on the same key waits, then counts after us.
            let row = tx
                .query_typed_one(
                    "INSERT INTO login_failures (key, count, since) VALUES ($1, 1, $2)
                     ON CONFLICT (key) DO UPDATE SET
                       count = CASE WHEN login_failures.since <= $3 THEN 1
                                    ELSE login_failures.count + 1 END,
                       since = CASE WHEN login_failures.since <= $3 THEN EXCLUDED.since
                                    ELSE login_failures.since END
                     RETURNING count, since",
                    &[text(key), int8(&now), int8(&window_start)],
                )
                .await?;
            let (count, since): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if count > i64::from(*max) {
                refused_until = refused_until.max(Some(since.saturating_add(window_ms)));
            } else {
                counted.push((key.clone(), crate::from_unix_millis(since)?));
            }
        }
        if let Some(until) = refused_until {
            // Nothing is counted when any key refuses.
            tx.rollback().await?;
            return Ok(Attempt::Refused {
                until: crate::from_unix_millis(until)?,
            });
        }
        tx.commit().await?;
        Ok(Attempt::Counted(counted))
    }

    pub(super) async fn release_attempt(
        &self,
        counted: &[(String, OffsetDateTime)],
    ) -> Result<(), StoreError> {
        let mut counted: Vec<(&String, i64)> = counted
            .iter()
            .map(|(key, since)| (key, crate::unix_millis(*since)))
            .collect();
        counted.sort();
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        for (key, since) in counted {
            tx.execute_typed(
                "UPDATE login_failures SET count = count - 1
                 WHERE key = $1 AND since = $2 AND count > 0",
                &[text(key), int8(&since)],
            )
            .await?;
            tx.execute_typed(
                "DELETE FROM login_failures WHERE key = $1 AND count <= 0",
                &[text(key)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn login_failures(
        &self,
        keys: &[String],
    ) -> Result<Vec<(u32, OffsetDateTime)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .query(
                "SELECT key, count, since FROM login_failures WHERE key = ANY($1)",
                &[(&keys, Type::TEXT_ARRAY)],
            )
            .await?;
        let mut by_key: HashMap<String, (i64, i64)> = HashMap::with_capacity(found.len());
        for r in &found {
            by_key.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
        // In the order asked, as the SQLite backend answers.
        keys.iter()
            .filter_map(|k| by_key.get(k))
            .map(|&(count, since)| {
                Ok((
                    u32::try_from(count).unwrap_or(u32::MAX),
                    crate::from_unix_millis(since)?,
                ))
            })
            .collect()
    }

    pub(super) async fn try_lease(
        &self,
        name: &str,
        node: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let (now, until) = (crate::unix_millis(now), crate::unix_millis(until));
        let changed = self
            .conn()
            .await?
            .execute_typed(
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
                 WHERE leases.holder = EXCLUDED.holder OR leases.until <= $4",
                &[text(&name), text(&node), int8(&until), int8(&now)],
            )
            .await?;
        Ok(changed == 1)
    }
}
