//! Applies the retention policy (`wb_core::retention`) to a company's objects.

use std::time::Duration;

use anyhow::{anyhow, Context};
use object_store::ObjectStoreExt;
use serde::Serialize;
use wb_core::retention::{plan, RetentionPolicy, SegmentRange, SnapshotPoint};

use super::segments::segments;
use super::snapshot;
use crate::platform::Platform;

/// When snapshots are taken and how long backups are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPolicy {
    /// A company gets a snapshot this long after its last one, once it changed.
    pub snapshot_every: Duration,
    /// ...or as soon as this many records were shipped since its last one.
    pub snapshot_records: i64,
    pub retention: RetentionPolicy,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            snapshot_every: Duration::from_secs(24 * 60 * 60),
            snapshot_records: 100_000,
            retention: RetentionPolicy::default(),
        }
    }
}

/// What one company's pruning deleted.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Pruned {
    pub company_id: String,
    pub snapshots_deleted: Vec<i64>,
    pub segments_deleted: usize,
    pub snapshots_kept: usize,
    pub segments_kept: usize,
}

/// Deletes the company's snapshots and segments the policy no longer needs.
/// Snapshots go before the segments they made redundant are considered, and
/// a segment goes only when a kept snapshot covers it.
pub async fn prune(
    platform: &Platform,
    company_id: &str,
    policy: RetentionPolicy,
) -> anyhow::Result<Pruned> {
    let key = platform
        .company_key(company_id)
        .await
        .map_err(|e| anyhow!("the key of company {company_id}: {e}"))?;
    let mut points = Vec::new();
    let mut unreadable = 0;
    for seq in snapshot::list(platform, company_id).await? {
        // An unreadable snapshot is neither trusted as a base nor deleted.
        match snapshot::read_manifest(platform, &key, company_id, seq)
            .await
            .and_then(|m| m.at())
        {
            Ok(at) => points.push(SnapshotPoint { seq, at }),
            Err(e) => {
                unreadable += 1;
                tracing::warn!(company = company_id, snapshot = seq, error = %format!("{e:#}"), "retention skips an unreadable snapshot");
            }
        }
    }
    let segments = segments(platform, company_id).await?;
    let ranges: Vec<SegmentRange> = segments
        .iter()
        .map(|s| SegmentRange {
            first: s.first,
            last: s.last,
        })
        .collect();
    let decision = plan(policy, platform.now(), &points, &ranges);
    for seq in &decision.snapshots {
        snapshot::delete(platform, company_id, *seq).await?;
    }
    let doomed: std::collections::HashSet<SegmentRange> =
        decision.segments.iter().copied().collect();
    for segment in &segments {
        let range = SegmentRange {
            first: segment.first,
            last: segment.last,
        };
        if doomed.contains(&range) {
            platform
                .objects
                .delete(&segment.path)
                .await
                .with_context(|| format!("deleting {}", segment.path))?;
        }
    }
    Ok(Pruned {
        company_id: company_id.to_string(),
        snapshots_kept: points.len() - decision.snapshots.len() + unreadable,
        segments_kept: segments.len() - decision.segments.len(),
        snapshots_deleted: decision.snapshots,
        segments_deleted: decision.segments.len(),
    })
}
