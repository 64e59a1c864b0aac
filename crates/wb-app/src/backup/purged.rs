//! Backups made before a purge: they hold what the customer asked to go.
//! The company's journal says whether a purge happened (it starts at the
//! purge's anchor), so this needs no marker of its own and survives a crash
//! at any point: right after the purge and at every hourly round, once a
//! snapshot at or after the anchor is in the object store, every snapshot
//! and journal segment from before the anchor is deleted (again, if a job
//! that was running during the purge uploaded one late).

use std::sync::Arc;

use anyhow::{bail, Context};
use object_store::ObjectStoreExt;
use serde::Serialize;
use utoipa::ToSchema;
use wb_store::TenantStore;

use super::segments::segments;
use super::snapshot;
use crate::platform::Platform;

/// What went from the backups after a purge.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq, Eq)]
pub struct PurgedBackups {
    /// The snapshot taken after the purge that replaces them.
    pub snapshot_seq: i64,
    pub snapshots_deleted: Vec<i64>,
    pub segments_deleted: usize,
}

/// Ships the company's journal up to its head now, returning the shipped
/// sequence; an error when another node holds the shipping and has not
/// reached the head yet.
pub async fn ship_now(platform: &Platform, tenant: &Arc<dyn TenantStore>) -> anyhow::Result<i64> {
    super::shipper::ship_one(platform, tenant).await?;
    let shipped = platform
        .control
        .cursor(&super::shipper::cursor_name(tenant.company_id()))
        .await?;
    let head = tenant.stats().await?.journal_seq;
    if shipped < head {
        bail!(
            "company {}'s journal is shipped to record {shipped}, not yet to {head}",
            tenant.company_id()
        );
    }
    Ok(shipped)
}

/// The anchor the company's journal starts at, if a purge restarted it.
pub(crate) async fn anchor_of(tenant: &dyn TenantStore) -> anyhow::Result<Option<(i64, String)>> {
    Ok(tenant
        .journal(0, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.kind == wb_store::purge::PURGED)
        .map(|r| (r.seq, crate::dto::rfc3339(r.at))))
}

/// Deletes the backups from before the purge anchored at `anchor`, after
/// making sure a readable snapshot at or after it is in the object store.
pub(crate) async fn delete_before(
    platform: &Platform,
    tenant: &Arc<dyn TenantStore>,
    anchor: i64,
) -> anyhow::Result<PurgedBackups> {
    let company_id = tenant.company_id().to_string();
    let mut snapshots = snapshot::list(platform, &company_id).await?;
    let old: Vec<i64> = snapshots.iter().copied().filter(|s| *s < anchor).collect();
    let stale_segments: Vec<_> = segments(platform, &company_id)
        .await?
        .into_iter()
        .filter(|s| s.first < anchor)
        .collect();
    let covering = snapshots.iter().rev().find(|s| **s >= anchor).copied();
    if old.is_empty() && stale_segments.is_empty() && covering.is_some() {
        return Ok(PurgedBackups {
            snapshot_seq: covering.unwrap_or_default(),
            ..PurgedBackups::default()
        });
    }
    let covering = match covering {
        Some(seq) => seq,
        None => {
            ship_now(platform, tenant).await?;
            let taken = snapshot::take(platform, &company_id)
                .await?
                .context("no snapshot after the purge could be taken")?;
            if taken.seq < anchor {
                bail!(
                    "the snapshot taken ends at record {}, before the purge's anchor {anchor}",
                    taken.seq
                );
            }
            snapshots.push(taken.seq);
            taken.seq
        }
    };
    // It must be there and open before anything it replaces goes.
    let key = platform
        .company_key(&company_id)
        .await
        .map_err(|e| anyhow::anyhow!("the key of company {company_id}: {e}"))?;
    snapshot::read_manifest(platform, &key, &company_id, covering)
        .await
        .with_context(|| format!("snapshot {covering} after the purge is unreadable"))?;
    for seq in &old {
        snapshot::delete(platform, &company_id, *seq).await?;
    }
    for segment in &stale_segments {
        platform
            .objects
            .delete(&segment.path)
            .await
            .with_context(|| format!("deleting {}", segment.path))?;
    }
    Ok(PurgedBackups {
        snapshot_seq: covering,
        snapshots_deleted: old,
        segments_deleted: stale_segments.len(),
    })
}
