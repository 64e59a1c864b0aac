//! What a purge leaves to do outside the company database, done right after
//! it and again at every hourly round until nothing is left (so a crash or
//! an unavailable object store delays it, never loses it). The company's
//! journal says whether a purge happened (it starts at the anchor) and its
//! audit trail where the kept events start, so no marker can be lost:
//! - backups from before the anchor (`backup::purged`);
//! - shipped audit segments holding removed events, and their copies in
//!   the central audit collection;
//! - once per purge: attachment objects no kept record uses, and stored
//!   exports made before the purge (both from before the purge's commit
//!   time, so nothing uploaded or made since is touched).

use std::collections::BTreeSet;

use object_store::ObjectStoreExt;
use serde::Serialize;
use time::OffsetDateTime;
use wb_core::Action;
use wb_store::{Actor, AuditEvent, FilePage, Outcome};

use crate::backup::purged::{self, PurgedBackups};
use crate::platform::Platform;

/// What one round of upkeep removed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PurgeUpkeep {
    pub anchor_seq: i64,
    pub backups: PurgedBackups,
    pub audit_segments_deleted: usize,
    /// Copies of removed events in the central audit collection.
    pub central_events_deleted: u64,
    pub attachment_objects_deleted: usize,
    pub exports_deleted: Vec<String>,
}

impl PurgeUpkeep {
    fn removed_anything(&self) -> bool {
        !self.backups.snapshots_deleted.is_empty()
            || self.backups.segments_deleted > 0
            || self.audit_segments_deleted > 0
            || self.central_events_deleted > 0
            || self.attachment_objects_deleted > 0
            || !self.exports_deleted.is_empty()
    }
}

fn swept_cursor(company_id: &str) -> String {
    format!("purge-swept:company:{company_id}")
}

impl Platform {
    /// One round of a purge's upkeep for `company_id` (None: never purged).
    /// Records what it removed as `data.purge.backups`.
    pub async fn purge_upkeep(&self, company_id: &str) -> anyhow::Result<Option<PurgeUpkeep>> {
        let tenant = self
            .tenant(company_id)
            .await
            .map_err(|e| anyhow::anyhow!("opening company {company_id}: {e}"))?;
        let Some((anchor, purged_at)) = purged::anchor_of(&*tenant).await? else {
            return Ok(None);
        };
        let purged_at =
            OffsetDateTime::parse(&purged_at, &time::format_description::well_known::Rfc3339)?;
        let mut done = PurgeUpkeep {
            anchor_seq: anchor,
            backups: purged::delete_before(self, &tenant, anchor).await?,
            ..PurgeUpkeep::default()
        };
        if let Some(first) = tenant.audit_events(0, 1).await?.first() {
            if first.seq > 1 {
                done.audit_segments_deleted =
                    crate::backup::audit_trail::forget_through(self, company_id, first.seq - 1)
                        .await?;
                done.central_events_deleted = self
                    .control
                    .central_forget(&crate::forwarder::company_source(company_id), first.seq - 1)
                    .await?;
            }
        }
        if self.control.cursor(&swept_cursor(company_id)).await? < anchor {
            done.attachment_objects_deleted = self
                .sweep_attachments(company_id, &tenant, purged_at)
                .await?;
            done.exports_deleted =
                crate::exports::storage::delete_made_before(self, company_id, purged_at).await?;
            self.control
                .set_cursor(&swept_cursor(company_id), anchor)
                .await?;
        }
        if done.removed_anything() {
            self.control
                .audit(&AuditEvent {
                    at: self.now(),
                    actor: Actor::system("retention"),
                    company_id: Some(company_id.to_string()),
                    action: Action::DataPurgeBackups,
                    target: Some(format!("company:{company_id}")),
                    outcome: Outcome::Success,
                    detail: Some(format!(
                        "after the purge anchored at journal record {anchor}: snapshots {:?} and {} journal segments deleted (snapshot {} replaces them), {} audit segments, {} central audit copies, {} attachment objects, exports {:?}",
                        done.backups.snapshots_deleted,
                        done.backups.segments_deleted,
                        done.backups.snapshot_seq,
                        done.audit_segments_deleted,
                        done.central_events_deleted,
                        done.attachment_objects_deleted,
                        done.exports_deleted
                    )),
                })
                .await?;
        }
        Ok(Some(done))
    }

    /// Deletes attachment objects written before `before` that no attachment
    /// record of the company uses any more.
    async fn sweep_attachments(
        &self,
        company_id: &str,
        tenant: &std::sync::Arc<dyn wb_store::TenantStore>,
        before: OffsetDateTime,
    ) -> anyhow::Result<usize> {
        let listing = match self
            .objects
            .list_with_delimiter(Some(&crate::files::files_prefix(company_id)))
            .await
        {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let candidates: Vec<_> = listing
            .objects
            .into_iter()
            .filter(|meta| {
                let modified = OffsetDateTime::from_unix_timestamp(meta.last_modified.timestamp())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                modified < before
            })
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut used = BTreeSet::new();
        let mut after = None;
        loop {
            let page = tenant
                .files(FilePage {
                    after,
                    limit: 1000,
                    entry_id: None,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            used.extend(page.into_iter().map(|f| f.address));
        }
        let mut deleted = 0;
        for meta in candidates {
            let Some(address) = meta.location.filename() else {
                continue;
            };
            if used.contains(address) {
                continue;
            }
            match self.objects.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(deleted)
    }
}
