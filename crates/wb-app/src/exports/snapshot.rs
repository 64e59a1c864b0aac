//! Reading one consistent snapshot of a company.

use wb_store::{EntryPage, FilePage, TenantStore};

use super::{
    CompanyInfo, ExportAccount, ExportAuditEvent, ExportEntry, ExportFile, Snapshot, PAGE,
    SNAPSHOT_ATTEMPTS,
};
use crate::backup::shipper::SegmentRecord;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the company changed during each of {SNAPSHOT_ATTEMPTS} attempts to read it; try again"
    )]
    Busy,
    #[error(transparent)]
    Store(#[from] wb_store::StoreError),
}

/// Reads everything of one company: the books and the attachment records as
/// of one journal position, the journal up to it, and the audit trail as it
/// stands (attachments' contents are read when the archive is written).
pub async fn snapshot(
    store: &dyn TenantStore,
    company: CompanyInfo,
) -> Result<Snapshot, SnapshotError> {
    for _ in 0..SNAPSHOT_ATTEMPTS {
        let before = store.stats().await?.journal_seq;
        let accounts: Vec<ExportAccount> = store.accounts().await?.iter().map(Into::into).collect();
        let mut entries = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .entries(EntryPage {
                    after,
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            entries.extend(page.iter().map(ExportEntry::from));
        }
        let mut files = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .files(FilePage {
                    after,
                    limit: PAGE,
                    entry_id: None,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            files.extend(page.iter().map(ExportFile::from));
        }
        if store.stats().await?.journal_seq != before {
            continue;
        }
        let mut journal = Vec::new();
        let mut seq = 0;
        'journal: while seq < before {
            let page = store.journal(seq, PAGE * 10).await?;
            if page.is_empty() {
                break;
            }
            for record in &page {
                if record.seq > before {
                    break 'journal;
                }
                journal.push(SegmentRecord::from(record));
                seq = record.seq;
            }
        }
        let mut audit = Vec::new();
        let mut seq = 0;
        loop {
            let page = store.audit_events(seq, PAGE).await?;
            let Some(last) = page.last() else { break };
            seq = last.seq;
            audit.extend(page.iter().map(ExportAuditEvent::from));
        }
        return Ok(Snapshot {
            company,
            journal_seq: before,
            accounts,
            entries,
            audit,
            journal,
            files,
        });
    }
    Err(SnapshotError::Busy)
}
