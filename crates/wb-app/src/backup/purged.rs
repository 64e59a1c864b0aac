//! Backups made before a purge: they hold what the customer asked to go, so
//! once a snapshot taken after the purge is in the object store, every
//! snapshot and journal segment from before its anchor is deleted. The
//! purge leaves its anchor's sequence in a control cursor; this finishes the
//! job right after the purge, or at the next pruning round if the object
//! store was unavailable then.

use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStoreExt;
use serde::Serialize;
use utoipa::ToSchema;
use wb_core::Action;
use wb_store::{Actor, AuditEvent, Outcome, TenantStore};

use super::segments::segments;
use super::snapshot;
use crate::platform::Platform;

/// The control cursor holding the anchor of a purge whose backups are not
/// yet deleted (0: none pending).
pub fn pending_cursor(company_id: &str) -> String {
    format!("purge-backups:company:{company_id}")
}

/// What went from the backups after a purge.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct PurgedBackups {
    /// The snapshot taken after the purge that replaces them.
    pub snapshot_seq: i64,
    pub snapshots_deleted: Vec<i64>,
    pub segments_deleted: usize,
}

/// Ships the company's journal up to its head now (records after the shipped
/// cursor), returning the shipped sequence.
pub async fn ship_now(platform: &Platform, tenant: &Arc<dyn TenantStore>) -> anyhow::Result<i64> {
    super::shipper::ship_one(platform, tenant).await?;
    Ok(platform
        .control
        .cursor(&super::shipper::cursor_name(tenant.company_id()))
        .await?)
}

/// Finishes a pending purge's backups: ships the journal, takes a snapshot
/// if none covers the anchor yet, then deletes everything before the anchor.
/// None when no purge is pending.
pub async fn finish(
    platform: &Platform,
    company_id: &str,
) -> anyhow::Result<Option<PurgedBackups>> {
    let anchor = platform.control.cursor(&pending_cursor(company_id)).await?;
    if anchor <= 0 {
        return Ok(None);
    }
    let tenant = platform
        .tenant(company_id)
        .await
        .map_err(|e| anyhow::anyhow!("opening company {company_id}: {e}"))?;
    ship_now(platform, &tenant).await?;
    let mut snapshots = snapshot::list(platform, company_id).await?;
    let covering = match snapshots.iter().rev().find(|s| **s >= anchor) {
        Some(seq) => *seq,
        None => {
            let taken = snapshot::take(platform, company_id)
                .await?
                .context("no snapshot after the purge could be taken")?;
            snapshots.push(taken.seq);
            taken.seq
        }
    };
    let mut deleted = Vec::new();
    for seq in snapshots.into_iter().filter(|s| *s < anchor) {
        snapshot::delete(platform, company_id, seq).await?;
        deleted.push(seq);
    }
    let mut segments_deleted = 0;
    for segment in segments(platform, company_id).await? {
        if segment.first < anchor {
            platform
                .objects
                .delete(&segment.path)
                .await
                .with_context(|| format!("deleting {}", segment.path))?;
            segments_deleted += 1;
        }
    }
    platform
        .control
        .set_cursor(&pending_cursor(company_id), 0)
        .await?;
    let done = PurgedBackups {
        snapshot_seq: covering,
        snapshots_deleted: deleted,
        segments_deleted,
    };
    platform
        .control
        .audit(&AuditEvent {
            at: platform.now(),
            actor: Actor::system("retention"),
            company_id: Some(company_id.to_string()),
            action: Action::DataPurgeBackups,
            target: Some(format!("company:{company_id}")),
            outcome: Outcome::Success,
            detail: Some(format!(
                "backups before the purge anchored at journal record {anchor} deleted: snapshots {:?}, {} journal segments; snapshot {covering} replaces them",
                done.snapshots_deleted, done.segments_deleted
            )),
        })
        .await?;
    Ok(Some(done))
}
