//! The central audit collection (copies of every source chain), signed
//! checkpoints and node keys of the PostgreSQL control plane: appends to the
//! collection take `CENTRAL_LOCK`, so `central_seq` is assigned in commit
//! order. `ControlStore` forwards here from `control.rs`.

use std::collections::HashSet;

use time::OffsetDateTime;
use tokio_postgres::types::Type;
use tokio_postgres::Row;
use wb_core::audit::Checkpoint;

use super::control::*;
use crate::model::*;
use crate::StoreError;

/// Columns of a central event, read through `FROM collected_events c JOIN collected_sources s`.
const CENTRAL_COLUMNS: &str =
    "c.central_seq, s.name, c.node, c.source_seq, c.at, c.actor, c.auth, c.client, c.request_id, \
     c.company_id, c.action, c.target, c.outcome, c.detail, c.prev_hash, c.hash";
const CENTRAL_FROM: &str = "collected_events c JOIN collected_sources s ON s.id = c.source";

fn central_row(r: &Row) -> Result<CentralEvent, StoreError> {
    Ok(CentralEvent {
        central_seq: r.try_get(0)?,
        source: r.try_get(1)?,
        node: r.try_get(2)?,
        event: StoredAuditEvent {
            seq: r.try_get(3)?,
            at: r.try_get(4)?,
            actor: r.try_get(5)?,
            auth: r.try_get(6)?,
            client: r.try_get(7)?,
            request_id: r.try_get(8)?,
            company_id: r.try_get(9)?,
            action: r.try_get(10)?,
            target: r.try_get(11)?,
            outcome: r.try_get(12)?,
            detail: r.try_get(13)?,
            prev_hash: hex::encode(r.try_get::<_, &[u8]>(14)?),
            hash: hex::encode(r.try_get::<_, &[u8]>(15)?),
        },
    })
}

fn hash_bytes(hex_text: &str) -> Result<[u8; 32], StoreError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut bytes).map_err(|_| {
        StoreError::Corrupt(format!("audit hash {hex_text:?} is not 64 hex characters"))
    })?;
    Ok(bytes)
}

const CHECKPOINT_COLUMNS: &str = "source, seq, hash, at, node, prev, signature";

fn checkpoint_row(r: &Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        source: r.try_get(0)?,
        seq: r.try_get(1)?,
        hash: r.try_get(2)?,
        at: r.try_get(3)?,
        node: r.try_get(4)?,
        prev: r.try_get(5)?,
        signature: r.try_get(6)?,
    })
}

impl PgControl {
    pub(super) async fn central_append(
        &self,
        source: &str,
        node: &str,
        events: Vec<StoredAuditEvent>,
    ) -> Result<usize, StoreError> {
        // Validate every hash first: a bad one refuses the whole batch. A
        // sequence repeated within the batch keeps its first event (as
        // INSERT OR IGNORE does).
        let mut seen = HashSet::with_capacity(events.len());
        let mut batch: Vec<(&StoredAuditEvent, [u8; 32], [u8; 32])> =
            Vec::with_capacity(events.len());
        for e in &events {
            let (prev, hash) = (hash_bytes(&e.prev_hash)?, hash_bytes(&e.hash)?);
            if seen.insert(e.seq) {
                batch.push((e, prev, hash));
            }
        }

        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        // One appender at a time (on any node), so central_seq order is commit
        // order and no retry can race another into the same rows.
        tx.execute_typed("SELECT pg_advisory_xact_lock($1)", &[int8(&CENTRAL_LOCK)])
            .await?;
        let (source_id, new_source) = match self.cached_source(source) {
            Some(id) => (id, false),
            None => {
                tx.execute_typed(
                    "INSERT INTO collected_sources (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[text(&source)],
                )
                .await?;
                let id: i64 = tx
                    .query_typed_one(
                        "SELECT id FROM collected_sources WHERE name = $1",
                        &[text(&source)],
                    )
                    .await?
                    .try_get(0)?;
                (id, true)
            }
        };
        // Leave out what the collection already has, so retries consume no
        // central_seq numbers. Forwarders send runs of consecutive sequences:
        // one index range scan finds them; a sparse batch probes each.
        if !batch.is_empty() {
            let seqs: Vec<i64> = batch.iter().map(|(e, _, _)| e.seq).collect();
            let (low, high) = seqs
                .iter()
                .fold((i64::MAX, i64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
            let span = u64::try_from(high.saturating_sub(low)).unwrap_or(u64::MAX);
            let existing = if span < 4 * seqs.len() as u64 {
                tx.query_typed(
                    "SELECT source_seq FROM collected_events
                     WHERE source = $1 AND source_seq BETWEEN $2 AND $3",
                    &[int8(&source_id), int8(&low), int8(&high)],
                )
                .await?
            } else {
                tx.query_typed(
                    "SELECT source_seq FROM collected_events
                     WHERE source = $1 AND source_seq = ANY($2)",
                    &[int8(&source_id), (&seqs, Type::INT8_ARRAY)],
                )
                .await?
            };
            if !existing.is_empty() {
                let existing = existing
                    .iter()
                    .map(|r| r.try_get::<_, i64>(0))
                    .collect::<Result<HashSet<i64>, _>>()?;
                batch.retain(|(e, _, _)| !existing.contains(&e.seq));
            }
        }
        let inserted = if batch.is_empty() {
            0
        } else {
            // Columns as arrays, for one INSERT ... SELECT FROM UNNEST.
            let seqs: Vec<i64> = batch.iter().map(|(e, _, _)| e.seq).collect();
            let text_column = |f: fn(&StoredAuditEvent) -> &str| -> Vec<&str> {
                batch.iter().map(|(e, _, _)| f(e)).collect()
            };
            let optional_column = |f: fn(&StoredAuditEvent) -> Option<&str>| -> Vec<Option<&str>> {
                batch.iter().map(|(e, _, _)| f(e)).collect()
            };
            let at = text_column(|e| &e.at);
            let actor = text_column(|e| &e.actor);
            let auth = text_column(|e| &e.auth);
            let action = text_column(|e| &e.action);
            let outcome = text_column(|e| &e.outcome);
            let client = optional_column(|e| e.client.as_deref());
            let request = optional_column(|e| e.request_id.as_deref());
            let company = optional_column(|e| e.company_id.as_deref());
            let target = optional_column(|e| e.target.as_deref());
            let detail = optional_column(|e| e.detail.as_deref());
            let prev: Vec<&[u8]> = batch.iter().map(|(_, p, _)| p.as_slice()).collect();
            let hash: Vec<&[u8]> = batch.iter().map(|(_, _, h)| h.as_slice()).collect();
            let (text_array, bytea_array) = (Type::TEXT_ARRAY, Type::BYTEA_ARRAY);
            tx.execute_typed(
                "INSERT INTO collected_events (source, node, source_seq, at, actor, auth, client,
                     request_id, company_id, action, target, outcome, detail, prev_hash, hash)
                 SELECT $1, $2, e.seq, e.at, e.actor, e.auth, e.client, e.request_id,
                        e.company_id, e.action, e.target, e.outcome, e.detail, e.prev_hash, e.hash
                 FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                             $13::text[], $14::bytea[], $15::bytea[])
                      WITH ORDINALITY AS e(seq, at, actor, auth, client, request_id, company_id,
                                           action, target, outcome, detail, prev_hash, hash, ord)
                 ORDER BY e.ord
                 ON CONFLICT (source, source_seq) DO NOTHING",
                &[
                    int8(&source_id),
                    text(&node),
                    (&seqs, Type::INT8_ARRAY),
                    (&at, text_array.clone()),
                    (&actor, text_array.clone()),
                    (&auth, text_array.clone()),
                    (&client, text_array.clone()),
                    (&request, text_array.clone()),
                    (&company, text_array.clone()),
                    (&action, text_array.clone()),
                    (&target, text_array.clone()),
                    (&outcome, text_array.clone()),
                    (&detail, text_array),
                    (&prev, bytea_array.clone()),
                    (&hash, bytea_array),
                ],
            )
            .await?
        };
        tx.commit().await?;
        if new_source {
            self.sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(source.to_string(), source_id);
        }
        Ok(usize::try_from(inserted).unwrap_or(usize::MAX))
    }

    pub(super) async fn central_head(&self, source: &str) -> Result<i64, StoreError> {
        let row = self
            .query_opt(
                "SELECT COALESCE(MAX(source_seq), 0) FROM collected_events
                 WHERE source = (SELECT id FROM collected_sources WHERE name = $1)",
                &[text(&source)],
            )
            .await?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Ok(0),
        }
    }

    pub(super) async fn central_events_by_auth(
        &self,
        company_id: &str,
        auth: &str,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        let limit = clamp_limit(limit, 100_000);
        let found = self
            .query(
                &format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE c.company_id = $1 AND c.auth = $2
                     ORDER BY c.central_seq LIMIT $3"
                ),
                &[text(&company_id), text(&auth), int8(&limit)],
            )
            .await?;
        rows(found, central_row)
    }

    pub(super) async fn central_events(
        &self,
        query: AuditQuery,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        let limit = clamp_limit(query.limit, 100_000);
        // SQLite's LIKE ignores ASCII case and has no escape character: ILIKE
        // under "C" with ESCAPE '' behaves the same.
        let found = self
            .query(
                &format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE c.central_seq > $1
                       AND ($2::text IS NULL OR c.company_id = $2
                            OR ($8::bool AND c.company_id IS NULL
                                AND c.action IN ('auth.login', 'auth.logout', 'auth.passphrase_change',
                                                 'auth.passphrase_reset', 'auth.mfa_enrol', 'auth.mfa_remove',
                                                 'auth.recovery_codes')
                                AND (c.actor IN (SELECT 'user:' || m.user_id FROM memberships m
                                                 WHERE m.company_id = $2)
                                     OR c.target IN (SELECT 'user:' || m.user_id FROM memberships m
                                                     WHERE m.company_id = $2))))
                       AND ($3::text IS NULL OR c.action = $3
                            OR c.action COLLATE \"C\" ILIKE ('%.' || $3) ESCAPE '')
                       AND ($4::text IS NULL OR c.outcome = $4)
                       AND ($5::text IS NULL OR c.actor = $5)
                       AND ($6::text IS NULL OR c.at >= $6)
                     ORDER BY c.central_seq LIMIT $7"
                ),
                &[
                    int8(&query.after),
                    text(&query.company_id),
                    text(&query.action),
                    text(&query.outcome),
                    text(&query.actor),
                    text(&query.since),
                    int8(&limit),
                    (&query.member_sign_ins, tokio_postgres::types::Type::BOOL),
                ],
            )
            .await?;
        rows(found, central_row)
    }

    pub(super) async fn central_sources(&self) -> Result<Vec<String>, StoreError> {
        let found = self
            .query("SELECT name FROM collected_sources ORDER BY name", &[])
            .await?;
        found
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect::<Result<_, StoreError>>()
    }

    pub(super) async fn central_source_events(
        &self,
        source: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        let limit = clamp_limit(limit, 100_000);
        let found = self
            .query(
                &format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE s.name = $1 AND c.source_seq > $2 ORDER BY c.source_seq LIMIT $3"
                ),
                &[text(&source), int8(&after_seq), int8(&limit)],
            )
            .await?;
        rows(found, central_row)
    }

    pub(super) async fn append_checkpoint(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        self.conn()
            .await?
            .execute_typed(
                "INSERT INTO audit_checkpoints (source, seq, hash, at, node, prev, signature)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    text(&cp.source),
                    int8(&cp.seq),
                    text(&cp.hash),
                    text(&cp.at),
                    text(&cp.node),
                    text(&cp.prev),
                    bytea(&cp.signature),
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let found = self
            .query(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints
                     WHERE source = $1 ORDER BY id"
                ),
                &[text(&source)],
            )
            .await?;
        rows(found, checkpoint_row)
    }

    pub(super) async fn last_checkpoint(
        &self,
        source: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.query_opt(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints
                 WHERE source = $1 ORDER BY id DESC LIMIT 1"
            ),
            &[text(&source)],
        )
        .await?
        .as_ref()
        .map(checkpoint_row)
        .transpose()
    }

    pub(super) async fn register_node(
        &self,
        id: &str,
        public_key_hex: &str,
        certificate: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let at = ts(at);
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        tx.execute_typed(
            "INSERT INTO nodes (id, public_key, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
            &[text(&id), text(&public_key_hex), text(&at)],
        )
        .await?;
        let certified = tx
            .execute_typed(
                "UPDATE nodes SET certificate = $3 WHERE id = $1 AND public_key = $2",
                &[text(&id), text(&public_key_hex), bytea(&certificate)],
            )
            .await?;
        if certified != 1 {
            return Err(StoreError::Conflict(format!(
                "node {id} is registered with another key"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn node_keys(&self) -> Result<Vec<RegisteredNode>, StoreError> {
        let found = self
            .query(
                "SELECT id, public_key, certificate FROM nodes ORDER BY id",
                &[],
            )
            .await?;
        found
            .iter()
            .map(|r| {
                Ok(RegisteredNode {
                    id: r.try_get(0)?,
                    public_key: r.try_get(1)?,
                    certificate: r.try_get(2)?,
                })
            })
            .collect()
    }
}
