//! The central audit collection (copies of every source chain), signed
//! checkpoints and node keys of the SQLCipher control plane.
//! `ControlStore` forwards here from `control.rs`.

use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;
use wb_core::audit::Checkpoint;

use super::conn::ts;
use super::control::SqliteControl;
use crate::model::*;
use crate::StoreError;

/// Columns of a central event, read through `FROM collected_events c JOIN collected_sources s`.
const CENTRAL_COLUMNS: &str =
    "c.central_seq, s.name, c.node, c.source_seq, c.at, c.actor, c.auth, c.client, c.request_id, \
     c.company_id, c.action, c.target, c.outcome, c.detail, c.prev_hash, c.hash";
const CENTRAL_FROM: &str = "collected_events c JOIN collected_sources s ON s.id = c.source";

fn central_row(r: &Row<'_>) -> rusqlite::Result<CentralEvent> {
    Ok(CentralEvent {
        central_seq: r.get(0)?,
        source: r.get(1)?,
        node: r.get(2)?,
        event: StoredAuditEvent {
            seq: r.get(3)?,
            at: r.get(4)?,
            actor: r.get(5)?,
            auth: r.get(6)?,
            client: r.get(7)?,
            request_id: r.get(8)?,
            company_id: r.get(9)?,
            action: r.get(10)?,
            target: r.get(11)?,
            outcome: r.get(12)?,
            detail: r.get(13)?,
            prev_hash: hex::encode(r.get::<_, Vec<u8>>(14)?),
            hash: hex::encode(r.get::<_, Vec<u8>>(15)?),
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

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        source: r.get(0)?,
        seq: r.get(1)?,
        hash: r.get(2)?,
        at: r.get(3)?,
        node: r.get(4)?,
        prev: r.get(5)?,
        signature: r.get(6)?,
    })
}

impl SqliteControl {
    pub(super) async fn central_append(
        &self,
        source: &str,
        node: &str,
        events: Vec<StoredAuditEvent>,
    ) -> Result<usize, StoreError> {
        let (source, node) = (source.to_string(), node.to_string());
        self.write(None, move |tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO collected_sources (name) VALUES (?1)")?
                .execute([&source])?;
            let source_id: i64 = tx
                .prepare_cached("SELECT id FROM collected_sources WHERE name = ?1")?
                .query_row([&source], |r| r.get(0))?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO collected_events (central_seq, source, node, source_seq, at, actor,
                    auth, client, request_id, company_id, action, target, outcome, detail, prev_hash, hash)
                 VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let mut inserted = 0;
            for e in &events {
                let prev = hash_bytes(&e.prev_hash)?;
                let hash = hash_bytes(&e.hash)?;
                inserted += insert.execute(params![
                    source_id, node, e.seq, e.at, e.actor, e.auth, e.client, e.request_id,
                    e.company_id, e.action, e.target, e.outcome, e.detail, prev, hash
                ])?;
            }
            Ok(inserted)
        })
        .await
    }

    pub(super) async fn central_head(&self, source: &str) -> Result<i64, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT COALESCE(MAX(source_seq), 0) FROM collected_events
                         WHERE source = (SELECT id FROM collected_sources WHERE name = ?1)",
                    )?
                    .query_row([source], |r| r.get(0))?)
            })
            .await
    }

    pub(super) async fn central_events_by_auth(
        &self,
        company_id: &str,
        auth: &str,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        let (company_id, auth) = (company_id.to_string(), auth.to_string());
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE c.company_id = ?1 AND c.auth = ?2
                     ORDER BY c.central_seq LIMIT ?3"
                ))?;
                let rows = stmt.query_map(
                    params![company_id, auth, limit.clamp(1, 100_000)],
                    central_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub(super) async fn central_events(
        &self,
        query: AuditQuery,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE c.central_seq > ?1
                       AND (?2 IS NULL OR c.company_id = ?2
                            OR (?8 AND c.company_id IS NULL
                                AND c.action IN ('auth.login', 'auth.logout', 'auth.passphrase_change',
                                                 'auth.passphrase_reset', 'auth.mfa_enrol', 'auth.mfa_remove',
                                                 'auth.recovery_codes')
                                AND (c.actor IN (SELECT 'user:' || m.user_id FROM memberships m
                                                 WHERE m.company_id = ?2)
                                     OR c.target IN (SELECT 'user:' || m.user_id FROM memberships m
                                                     WHERE m.company_id = ?2))))
                       AND (?3 IS NULL OR c.action = ?3 OR c.action LIKE '%.' || ?3)
                       AND (?4 IS NULL OR c.outcome = ?4)
                       AND (?5 IS NULL OR c.actor = ?5) AND (?6 IS NULL OR c.at >= ?6)
                     ORDER BY c.central_seq LIMIT ?7"
                ))?;
                let rows = stmt.query_map(
                    params![
                        query.after,
                        query.company_id,
                        query.action,
                        query.outcome,
                        query.actor,
                        query.since,
                        query.limit.clamp(1, 100_000),
                        query.member_sign_ins
                    ],
                    central_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub(super) async fn central_sources(&self) -> Result<Vec<String>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT name FROM collected_sources ORDER BY name")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub(super) async fn central_source_events(
        &self,
        source: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<CentralEvent>, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {CENTRAL_COLUMNS} FROM {CENTRAL_FROM}
                     WHERE s.name = ?1 AND c.source_seq > ?2 ORDER BY c.source_seq LIMIT ?3"
                ))?;
                let rows = stmt.query_map(
                    params![source, after_seq, limit.clamp(1, 100_000)],
                    central_row,
                )?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub(super) async fn append_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        let cp = checkpoint.clone();
        self.write(None, move |tx| {
            tx.execute(
                "INSERT INTO audit_checkpoints (source, seq, hash, at, node, prev, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    cp.source,
                    cp.seq,
                    cp.hash,
                    cp.at,
                    cp.node,
                    cp.prev,
                    cp.signature
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub(super) async fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT source, seq, hash, at, node, prev, signature FROM audit_checkpoints
                     WHERE source = ?1 ORDER BY rowid",
                )?;
                let rows = stmt.query_map([source], checkpoint_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    pub(super) async fn last_checkpoint(
        &self,
        source: &str,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let source = source.to_string();
        self.readers
            .with(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT source, seq, hash, at, node, prev, signature FROM audit_checkpoints
                         WHERE source = ?1 ORDER BY rowid DESC LIMIT 1",
                    )?
                    .query_row([source], checkpoint_row)
                    .optional()?)
            })
            .await
    }

    pub(super) async fn register_node(
        &self,
        id: &str,
        public_key_hex: &str,
        certificate: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (id, key, certificate) = (
            id.to_string(),
            public_key_hex.to_string(),
            certificate.to_vec(),
        );
        self.write(None, move |tx| {
            let existing: Option<String> = tx
                .query_row("SELECT public_key FROM nodes WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()?;
            match existing {
                Some(k) if k == key => {
                    tx.execute(
                        "UPDATE nodes SET certificate = ?2 WHERE id = ?1",
                        params![id, certificate],
                    )?;
                    Ok(())
                }
                Some(_) => Err(StoreError::Conflict(format!(
                    "node {id} is registered with another key"
                ))),
                None => {
                    tx.execute(
                        "INSERT INTO nodes (id, public_key, created_at, certificate)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![id, key, ts(at), certificate],
                    )?;
                    Ok(())
                }
            }
        })
        .await
    }

    pub(super) async fn node_keys(&self) -> Result<Vec<RegisteredNode>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT id, public_key, certificate FROM nodes ORDER BY id")?;
                let rows = stmt.query_map([], |r| {
                    Ok(RegisteredNode {
                        id: r.get(0)?,
                        public_key: r.get(1)?,
                        certificate: r.get(2)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
}
