//! Applies change-journal records (from segments or a snapshot) to the store
//! being restored.
//!
//! Replaying one command per record would cost what writing them cost (one
//! savepoint, audit event and balance update each). Instead consecutive
//! records are gathered into `Change::Replay` groups of up to
//! `ENTRIES_PER_CHANGE` entries: the store writes each record verbatim into
//! its own journal (so the restored chain carries the source's hashes) with
//! what it holds under its recorded ids, sums balance movements over the
//! group, and audits the group once. While the store writes one batch of
//! groups, the next is decoded.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use wb_store::{
    Actor, Applied, Change, ReplayedContent, ReplayedRecord, TenantStore, WriteContext,
};

use crate::backup::shipper::SegmentRecord;

/// Entries in one replay change (one step of the restored store's writer).
const ENTRIES_PER_CHANGE: usize = 2_000;
/// Records in one replay change.
const RECORDS_PER_CHANGE: usize = 2_000;
/// Entries queued to the store in one `apply_in_order` call.
const ENTRIES_PER_APPLY: usize = 20_000;
/// Changes queued in one `apply_in_order` call.
const CHANGES_PER_APPLY: usize = 1_000;
/// Records queued in one `apply_in_order` call, whatever they hold.
const RECORDS_PER_APPLY: usize = 20_000;

type Queued = Vec<(Change, WriteContext, i64)>;

/// Feeds journal records to a store in order, in bulk.
/// Hears (records done, records expected) as a restore goes.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

pub(crate) struct Replayer {
    store: Arc<dyn TenantStore>,
    progress: Option<(Progress, u64)>,
    pushed: u64,
    group: Vec<ReplayedRecord>,
    group_entries: usize,
    queued: Queued,
    queued_entries: usize,
    queued_records: usize,
    in_flight: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Replayer {
    pub(crate) fn new(store: Arc<dyn TenantStore>, progress: Option<(Progress, u64)>) -> Replayer {
        Replayer {
            store,
            progress,
            pushed: 0,
            group: Vec::new(),
            group_entries: 0,
            queued: Vec::new(),
            queued_entries: 0,
            queued_records: 0,
            in_flight: None,
        }
    }

    /// Adds the next record (already checked against the chain).
    pub(crate) async fn push(&mut self, record: &SegmentRecord) -> anyhow::Result<()> {
        let content = wb_store::journal::replay_content(&record.kind, &record.payload, &record.at)?;
        if let ReplayedContent::Entries(entries) = &content {
            self.group_entries += entries.len();
        }
        self.group.push(ReplayedRecord {
            seq: record.seq,
            at: record.at.clone(),
            kind: record.kind.clone(),
            payload: record.payload.clone(),
            hash: record.hash.clone(),
            content,
        });
        self.pushed += 1;
        if let Some((progress, total)) = &self.progress {
            if self.pushed.is_multiple_of(5_000) {
                progress(self.pushed, (*total).max(self.pushed));
            }
        }
        if self.group_entries >= ENTRIES_PER_CHANGE || self.group.len() >= RECORDS_PER_CHANGE {
            self.close_group();
        }
        if self.queued.len() >= CHANGES_PER_APPLY
            || self.queued_entries >= ENTRIES_PER_APPLY
            || self.queued_records >= RECORDS_PER_APPLY
        {
            self.send().await?;
        }
        Ok(())
    }

    fn close_group(&mut self) {
        let Some(last) = self.group.last() else {
            return;
        };
        let last_seq = last.seq;
        let at = OffsetDateTime::parse(&last.at, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        self.queued_entries += self.group_entries;
        self.queued_records += self.group.len();
        self.group_entries = 0;
        let group = std::mem::take(&mut self.group);
        self.queued.push((
            Change::Replay(group),
            WriteContext {
                actor: Actor::system("restore"),
                at,
            },
            last_seq,
        ));
    }

    /// Waits for the group in flight, then hands the queued changes to the store.
    async fn send(&mut self) -> anyhow::Result<()> {
        self.wait().await?;
        let queued = std::mem::take(&mut self.queued);
        self.queued_entries = 0;
        self.queued_records = 0;
        if queued.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        self.in_flight = Some(tokio::spawn(apply(store, queued)));
        Ok(())
    }

    async fn wait(&mut self) -> anyhow::Result<()> {
        match self.in_flight.take() {
            Some(handle) => handle
                .await
                .map_err(|e| anyhow!("restore writer task failed: {e}"))?,
            None => Ok(()),
        }
    }

    /// Gives up: waits for the group the store is writing (so nothing writes
    /// to a store about to be discarded), ignoring its outcome.
    pub(crate) async fn abandon(mut self) {
        let _ = self.wait().await;
    }

    /// Applies everything still queued; the store then holds every record pushed.
    pub(crate) async fn finish(mut self) -> anyhow::Result<()> {
        self.close_group();
        self.send().await?;
        self.wait().await?;
        if let Some((progress, _)) = &self.progress {
            progress(self.pushed, self.pushed);
        }
        Ok(())
    }
}

async fn apply(store: Arc<dyn TenantStore>, queued: Queued) -> anyhow::Result<()> {
    let (expects, changes): (Vec<_>, Vec<_>) = queued
        .into_iter()
        .map(|(change, ctx, last_seq)| (last_seq, (change, ctx)))
        .unzip();
    let results = store.apply_in_order(changes).await;
    for (expected, result) in expects.into_iter().zip(results) {
        match result.with_context(|| format!("replaying the journal up to record {expected}"))? {
            Applied::Replayed { last_seq } if last_seq == expected => {}
            Applied::Replayed { last_seq } => bail!(
                "replaying the journal up to record {expected} left the restored journal at record {last_seq}"
            ),
            _ => bail!("the store answered a replay with the wrong kind of result"),
        }
    }
    Ok(())
}
