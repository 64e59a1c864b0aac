//! Backup status and point-in-time restore from shipped change-journal segments
//! (see `jobs/shipper.rs` for the segment format).
//!
//! A restore creates a NEW company: its store is created but the company is
//! recorded in the control plane only after every record up to the target has
//! been decrypted, chain-verified and replayed; on any failure the store is
//! discarded, so no half-restored company remains.

use std::sync::Arc;

mod attachments;
pub mod audit_trail;
pub(crate) mod purge_anchor;
pub mod purged;
mod replay;
pub mod retention;
mod revert;
mod segments;
pub mod shipper;
pub mod snapshot;
pub mod snapshotter;

pub use retention::{prune, BackupPolicy, Pruned};
pub use revert::{revert_in_place, Reverted};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use wb_crypto::CompanyKeys;
use wb_store::{Actor, CompanyRecord, TenantStore};

use crate::backup::shipper::cursor_name;
use crate::platform::Platform;
pub use replay::Progress;

/// The snapshot a failed replay could not load, if that is why it failed.
pub fn broken_snapshot(error: &anyhow::Error) -> Option<i64> {
    error.downcast_ref::<BrokenSnapshot>().map(|b| b.seq)
}
use replay::Replayer;
pub use segments::segment_landings;
use segments::{read_segment, segments, verify};

/// One company's shipping position.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupStatus {
    pub company_id: String,
    pub name: String,
    /// The last change-journal sequence committed in the company's store.
    pub journal_seq: i64,
    /// The last sequence shipped to object storage.
    pub shipped_seq: i64,
    /// Records not yet shipped.
    pub lag_records: i64,
    /// Age of the oldest record not yet shipped (0 when caught up): how much
    /// time of changes would be lost if this node's disk were lost now.
    pub lag_seconds: f64,
    /// The last record covered by the company's newest snapshot (0: none yet).
    pub snapshot_seq: i64,
    /// When that snapshot was taken.
    pub snapshot_taken_at: Option<String>,
}

/// The shipping position of every company (opens each company's store).
pub async fn status(platform: &Platform) -> anyhow::Result<Vec<BackupStatus>> {
    let mut out = Vec::new();
    for company in platform.control.companies().await? {
        // A de-provisioned or destroyed company ships nothing more.
        if company.status != wb_store::CompanyStatus::Active {
            continue;
        }
        let tenant = platform
            .tenant(&company.id)
            .await
            .map_err(|e| anyhow!("opening company {}: {e}", company.id))?;
        let journal_seq = tenant.stats().await?.journal_seq;
        let shipped_seq = platform.control.cursor(&cursor_name(&company.id)).await?;
        let lag_seconds = match tenant.journal(shipped_seq, 1).await?.first() {
            Some(oldest) => {
                let age = (platform.now() - oldest.at).as_seconds_f64().max(0.0);
                (age * 1000.0).round() / 1000.0
            }
            None => 0.0,
        };
        let snapshot_seq = platform
            .control
            .cursor(&snapshot::seq_cursor(&company.id))
            .await?;
        let snapshot_taken_at = match snapshot_seq {
            0 => None,
            _ => {
                let unix = platform
                    .control
                    .cursor(&snapshot::time_cursor(&company.id))
                    .await?;
                OffsetDateTime::from_unix_timestamp(unix)
                    .ok()
                    .map(crate::dto::rfc3339)
            }
        };
        out.push(BackupStatus {
            snapshot_seq,
            snapshot_taken_at,
            company_id: company.id.clone(),
            name: company.name.clone(),
            journal_seq,
            shipped_seq,
            lag_records: (journal_seq - shipped_seq).max(0),
            lag_seconds,
        });
    }
    Ok(out)
}

pub use crate::restore_target::RestoreTarget;

#[derive(Debug, Clone)]
pub struct Restored {
    pub company: CompanyRecord,
    /// The last source journal sequence replayed (0 when none).
    pub last_seq: i64,
    /// Journal records replayed from segments (after the snapshot, if any).
    pub records: usize,
    /// The snapshot the restore started from, if any.
    pub snapshot: Option<i64>,
}

/// Restores a company from its shipped journal into a new company that has the
/// source's members. Nothing is left behind when this fails.
pub async fn restore(
    platform: &Platform,
    source_id: &str,
    target: RestoreTarget,
) -> anyhow::Result<Restored> {
    restore_with_progress(platform, source_id, target, None).await
}

/// `restore`, telling `progress` how far it got.
pub async fn restore_with_progress(
    platform: &Platform,
    source_id: &str,
    target: RestoreTarget,
    progress: Option<Progress>,
) -> anyhow::Result<Restored> {
    let staged = stage_restore(platform, source_id, target, "restored", progress).await?;
    if let Err(e) = attachments::copy(platform, source_id, &staged.company, &staged.store).await {
        let id = staged.company.id.clone();
        staged.discard(platform).await;
        attachments::discard(platform, &id).await;
        return Err(e);
    }
    // Read last, so a member removed while the books were replayed does not
    // join the copy; the copy keeps the source's security policy.
    let people = async {
        let members = platform.control.members_of(source_id).await?;
        let policy = platform.control.company_policy(source_id).await?;
        Ok::<_, wb_store::StoreError>((members, policy))
    };
    let (members, policy): (Vec<_>, _) = match people.await {
        Ok((members, policy)) => (
            members.into_iter().map(|m| (m.user_id, m.role)).collect(),
            policy,
        ),
        Err(e) => {
            let id = staged.company.id.clone();
            staged.discard(platform).await;
            attachments::discard(platform, &id).await;
            return Err(e.into());
        }
    };
    let StagedRestore {
        company,
        store,
        last_seq,
        records,
        snapshot,
    } = staged;
    drop(store);
    // The source may have been de-provisioned while its books were copied:
    // a copy of a company on its way out is not recorded (its destruction
    // would not know of it).
    let source_active = platform
        .control
        .company(source_id)
        .await
        .map(|c| c.is_some_and(|c| c.status == wb_store::CompanyStatus::Active));
    if !matches!(source_active, Ok(true)) {
        platform.tenants.discard(&company.id).await;
        attachments::discard(platform, &company.id).await;
        bail!("company {source_id} was de-provisioned while it was being restored: the copy was discarded");
    }
    let recorded = platform
        .record_staged_company(
            &company,
            policy.as_ref(),
            &members,
            Actor::system("restore"),
            format!("restored from company:{source_id} up to journal record {last_seq}"),
        )
        .await;
    if let Err(e) = recorded {
        attachments::discard(platform, &company.id).await;
        bail!("recording the restored company: {e}");
    }
    Ok(Restored {
        company,
        last_seq,
        records,
        snapshot,
    })
}

/// A company's shipped journal replayed into a staged store: the company is
/// not in the control plane. `restore` records it; backup verification
/// compares it with the source and discards it.
pub(crate) struct StagedRestore {
    pub(crate) company: CompanyRecord,
    pub(crate) store: Arc<dyn TenantStore>,
    /// The last source journal sequence replayed (0 when none).
    pub(crate) last_seq: i64,
    pub(crate) records: usize,
    pub(crate) snapshot: Option<i64>,
}

impl StagedRestore {
    /// Closes and deletes the staged store; nothing of it remains.
    pub(crate) async fn discard(self, platform: &Platform) {
        drop(self.store);
        platform.tenants.discard(&self.company.id).await;
    }
}

/// Replays `source_id`'s shipped journal up to `target` into a new staged
/// company named after the source (`"{name} ({label} {time})"`). On failure
/// the staged store is discarded.
pub(crate) async fn stage_restore(
    platform: &Platform,
    source_id: &str,
    target: RestoreTarget,
    label: &str,
    progress: Option<Progress>,
) -> anyhow::Result<StagedRestore> {
    platform.refuse_destroyed(source_id).await?;
    let source = platform
        .control
        .company(source_id)
        .await?
        .ok_or_else(|| anyhow!("no company {source_id}"))?;
    let key = platform
        .company_key(source_id)
        .await
        .map_err(|e| anyhow!("the key of company {source_id}: {e}"))?;
    // The shipper's cursor says how far the object store must reach: a missing
    // last segment is a gap too.
    let shipped = platform.control.cursor(&cursor_name(source_id)).await?;
    if let RestoreTarget::Seq(n) = target {
        if n < 0 {
            bail!("--to-seq must be at least 0");
        }
    }

    let now = platform.now();
    let stamp = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default();
    let suffix = format!(" ({label} {stamp})");
    let base: String = source
        .name
        .chars()
        .take(200 - suffix.chars().count())
        .collect();
    let mut skip = Vec::new();
    let mut first_broken: Option<String> = None;
    loop {
        let (company, store) = platform
            .stage_company(&format!("{base}{suffix}"))
            .await
            .map_err(|e| anyhow!("creating the restored company: {e}"))?;
        let rebuilt = rebuild(
            platform,
            &key,
            source_id,
            target,
            shipped,
            &store,
            progress.clone(),
            &skip,
        )
        .await;
        match rebuilt {
            Ok(rebuilt) => {
                return Ok(StagedRestore {
                    company,
                    store,
                    last_seq: rebuilt.last_seq,
                    records: rebuilt.records,
                    snapshot: rebuilt.snapshot,
                })
            }
            Err(e) => {
                drop(store);
                platform.tenants.discard(&company.id).await;
                match e.downcast_ref::<BrokenSnapshot>() {
                    Some(broken) if skip.len() < SNAPSHOT_FALLBACKS => {
                        tracing::warn!(company = source_id, error = %broken, "restoring without a broken snapshot");
                        skip.push(broken.seq);
                        first_broken.get_or_insert_with(|| broken.to_string());
                    }
                    _ => {
                        return Err(match first_broken {
                            Some(broken) => e.context(format!("{broken}; without it")),
                            None => e,
                        })
                    }
                }
            }
        }
    }
}

/// A snapshot that could not be loaded: the restore starts again without it.
#[derive(Debug)]
pub(crate) struct BrokenSnapshot {
    pub(crate) seq: i64,
    reason: String,
}

impl std::fmt::Display for BrokenSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshot {} cannot be loaded: {}", self.seq, self.reason)
    }
}

impl std::error::Error for BrokenSnapshot {}

/// At most this many broken snapshots are stepped over before a restore gives up.
const SNAPSHOT_FALLBACKS: usize = 3;

/// What rebuilding a company from its backup reached.
struct Rebuilt {
    last_seq: i64,
    /// Segment records replayed after the snapshot.
    records: usize,
    last_at: Option<OffsetDateTime>,
    /// The snapshot loaded first, if any.
    snapshot: Option<i64>,
}

/// The newest snapshot a restore to `target` can start from.
async fn base_snapshot(
    platform: &Platform,
    key: &CompanyKeys,
    source_id: &str,
    snapshots: &[i64],
    target: RestoreTarget,
) -> anyhow::Result<Option<snapshot::Manifest>> {
    for &seq in snapshots.iter().rev() {
        if let RestoreTarget::Seq(n) = target {
            if seq > n {
                continue;
            }
        }
        let manifest = match snapshot::read_manifest(platform, key, source_id, seq).await {
            Ok(manifest) => manifest,
            Err(e) => {
                // An older snapshot (or the segments) may still reach the target.
                tracing::warn!(company = source_id, snapshot = seq, error = %format!("{e:#}"), "skipping an unreadable snapshot");
                continue;
            }
        };
        if let RestoreTarget::Time(t) = target {
            if manifest.at()? > t {
                continue;
            }
        }
        return Ok(Some(manifest));
    }
    Ok(None)
}

/// Replays `source_id`'s shipped journal up to `target` into `store`, which
/// may belong to another deployment (a sandbox). Returns the last record.
pub(crate) async fn replay_into(
    platform: &Platform,
    source_id: &str,
    target: RestoreTarget,
    store: &Arc<dyn TenantStore>,
) -> anyhow::Result<i64> {
    platform.refuse_destroyed(source_id).await?;
    let key = platform
        .company_key(source_id)
        .await
        .map_err(|e| anyhow!("the key of company {source_id}: {e}"))?;
    let shipped = platform.control.cursor(&cursor_name(source_id)).await?;
    let rebuilt = rebuild(platform, &key, source_id, target, shipped, store, None, &[]).await?;
    Ok(rebuilt.last_seq)
}

/// Loads the newest usable snapshot, then replays the shipped segments after
/// it up to `target`, checking authentication, order and the hash chain.
#[allow(clippy::too_many_arguments)]
async fn rebuild(
    platform: &Platform,
    key: &CompanyKeys,
    source_id: &str,
    target: RestoreTarget,
    shipped: i64,
    store: &Arc<dyn TenantStore>,
    progress: Option<Progress>,
    skip: &[i64],
) -> anyhow::Result<Rebuilt> {
    let snapshots: Vec<i64> = snapshot::list(platform, source_id)
        .await?
        .into_iter()
        .filter(|seq| !skip.contains(seq))
        .collect();
    let oldest_snapshot = snapshots.first().copied();
    let base = base_snapshot(platform, key, source_id, &snapshots, target).await?;
    let segments = segments(platform, source_id).await?;
    let expected_records = match target {
        RestoreTarget::Seq(n) => n,
        _ => shipped,
    };
    let mut replayer = Replayer::new(
        store.clone(),
        progress.map(|p| (p, u64::try_from(expected_records).unwrap_or(0))),
    );
    let mut expected = 1;
    let mut prev_hash = wb_core::audit::GENESIS.to_string();
    let mut last_at = None;
    if let Some(base) = &base {
        if let Err(e) = snapshot::load(platform, key, base, &mut replayer).await {
            replayer.abandon().await;
            return Err(anyhow::Error::new(BrokenSnapshot {
                seq: base.seq,
                reason: format!("{e:#}"),
            }));
        }
        expected = base.seq + 1;
        prev_hash = base.hash.clone();
        last_at = Some(base.at()?);
    }
    let mut records = 0;
    // The purge anchor the shipped journal starts at, when no snapshot is used.
    let mut started_at_anchor: Option<i64> = None;
    // True once the target was reached (rather than the segments running out).
    let mut stopped = false;
    let reached = |seq: i64, at: OffsetDateTime| match target {
        RestoreTarget::Latest => false,
        RestoreTarget::Seq(n) => seq > n,
        RestoreTarget::Time(t) => at > t,
    };
    let replayed = async {
        'segments: for segment in &segments {
            if let RestoreTarget::Seq(n) = target {
                if expected > n {
                    stopped = true;
                    break;
                }
            }
            if segment.last < expected {
                continue; // covered by a snapshot or a longer segment (re-shipped after a crash)
            }
            if segment.first > expected && base.is_none() && expected == 1 {
                // After a purge the shipped journal may start at its anchor.
                if let Some(first) = read_segment(platform, key, source_id, segment)
                    .await?
                    .into_iter()
                    .next()
                    .filter(|r| r.seq == segment.first && r.kind == wb_store::purge::PURGED)
                {
                    purge_anchor::vouched(platform, source_id, &first).await?;
                    expected = first.seq;
                    prev_hash.clone_from(&first.prev_hash);
                    started_at_anchor = Some(first.seq);
                }
            }
            if segment.first > expected {
                if let Some(base) = &base {
                    bail!(
                        "records {expected}..{} of company {source_id} are not in the object store: \
                         that point lies outside the retention window, or a segment is missing; \
                         the nearest earlier restorable point is snapshot {} at {}",
                        segment.first - 1,
                        base.seq,
                        base.at
                    );
                }
                if let Some(oldest) = oldest_snapshot {
                    bail!(
                        "records {expected}..{} of company {source_id} are not in the object store: \
                         that point lies outside the retention window, or a segment is missing; \
                         the oldest kept snapshot is {oldest}",
                        segment.first - 1
                    );
                }
                bail!(
                    "journal segment missing: records {expected}..{} of company {source_id} are not in the object store",
                    segment.first - 1
                );
            }
            for record in read_segment(platform, key, source_id, segment).await? {
                if record.seq < expected {
                    continue;
                }
                let at = OffsetDateTime::parse(&record.at, &Rfc3339).with_context(|| {
                    format!("journal record {}: bad time {:?}", record.seq, record.at)
                })?;
                if reached(record.seq, at) {
                    if started_at_anchor == Some(record.seq) {
                        bail!(
                            "that point is before company {source_id}'s purge (journal record {}): \
                             the backups from before it were deleted",
                            record.seq
                        );
                    }
                    stopped = true;
                    break 'segments;
                }
                verify(&record, expected, &prev_hash)?;
                prev_hash = record.hash.clone();
                expected += 1;
                records += 1;
                last_at = Some(at);
                replayer
                    .push(&record)
                    .await
                    .with_context(|| format!("replaying journal record {}", record.seq))?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = replayed {
        replayer.abandon().await;
        return Err(e);
    }
    replayer.finish().await?;
    attachments::check(platform, source_id, store).await?;
    let last = expected - 1;
    if let RestoreTarget::Seq(n) = target {
        stopped |= last >= n;
    }
    if !stopped && last < shipped {
        if let (None, Some(oldest)) = (&base, oldest_snapshot) {
            bail!(
                "records {}..{shipped} of company {source_id} are not in the object store: \
                 that point lies outside the retention window, or a segment is missing; \
                 the oldest kept snapshot is {oldest}",
                last + 1
            );
        }
        bail!(
            "journal segment missing: records {}..{shipped} of company {source_id} were shipped but are not in the object store",
            last + 1
        );
    }
    if let RestoreTarget::Seq(n) = target {
        if last < n {
            bail!("company {source_id}'s journal is shipped only up to record {last}, not {n}");
        }
    }
    Ok(Rebuilt {
        last_seq: last,
        records,
        last_at,
        snapshot: base.map(|b| b.seq),
    })
}

/// What replaying a company's shipped journal reached.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub last_seq: i64,
    pub records: usize,
    /// Commit time of the last record replayed (None when nothing was shipped).
    pub last_at: Option<OffsetDateTime>,
    /// The snapshot the replay started from, if any.
    pub snapshot: Option<i64>,
}

/// Replays every shipped record of `company_id` into `store` (new and empty),
/// checking authentication, order and the hash chain; `shipped` is how far the
/// object store must reach at least; snapshots in `skip` are not used. A
/// snapshot that fails to load comes back as a `broken_snapshot` error: the
/// caller discards the store and tries again without it. Disaster recovery restores each company
/// under its own id with this.
pub async fn replay_shipped(
    platform: &Platform,
    key: &CompanyKeys,
    company_id: &str,
    shipped: i64,
    store: &Arc<dyn TenantStore>,
    skip: &[i64],
) -> anyhow::Result<Replayed> {
    let rebuilt = rebuild(
        platform,
        key,
        company_id,
        RestoreTarget::Latest,
        shipped,
        store,
        None,
        skip,
    )
    .await?;
    Ok(Replayed {
        last_seq: rebuilt.last_seq,
        records: rebuilt.records,
        last_at: rebuilt.last_at,
        snapshot: rebuilt.snapshot,
    })
}
