//! In-place restore: brings a company's books back to an earlier journal
//! point with compensating entries (`wb_core::revert`), through the company's
//! ordinary writer, so its journal, audit trail and backups continue
//! unbroken and the revert can itself be undone. Accounts created after the
//! point stay (with zero balances); nothing is deleted.

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use time::OffsetDateTime;
use wb_core::revert::{plan, LaterEntry, RevertAction};
use wb_core::{EntryDraft, PostingDraft};
use wb_store::{Actor, AuditEvent, Change, EntryPage, Outcome, TenantStore, WriteContext};

use super::RestoreTarget;
use crate::platform::Platform;

/// Changes queued to the writer at once.
const BATCH: usize = 500;

#[derive(Debug, Clone, Serialize)]
pub struct Reverted {
    pub company_id: String,
    /// The journal point the books were brought back to.
    pub to_seq: i64,
    /// The journal head before the revert.
    pub from_seq: i64,
    pub reversed: usize,
    pub reinstated: usize,
    /// Journal head after the revert.
    pub last_seq: i64,
}

/// The journal sequence a target names in the company's own journal.
async fn resolve(store: &dyn TenantStore, target: RestoreTarget, head: i64) -> anyhow::Result<i64> {
    match target {
        RestoreTarget::Latest => Ok(head),
        RestoreTarget::Seq(n) if (0..=head).contains(&n) => Ok(n),
        RestoreTarget::Seq(n) => bail!("--to-seq {n} is outside the company's journal (0..{head})"),
        RestoreTarget::Time(t) => {
            // Commit times grow with the sequence: the last record at or before t.
            let (mut lo, mut hi) = (0, head);
            while lo < hi {
                let mid = lo + (hi - lo + 1) / 2;
                let at = record_time(store, mid).await?;
                if at <= t {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            Ok(lo)
        }
    }
}

async fn record_time(store: &dyn TenantStore, seq: i64) -> anyhow::Result<OffsetDateTime> {
    store
        .journal(seq - 1, 1)
        .await?
        .into_iter()
        .next()
        .map(|r| r.at)
        .ok_or_else(|| anyhow!("the company's journal has no record {seq}"))
}

/// The first entry id posted after record `seq`, if any.
async fn first_entry_after(store: &dyn TenantStore, seq: i64) -> anyhow::Result<Option<i64>> {
    let mut after = seq;
    loop {
        let page = store.journal(after, 1000).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            return Ok(None);
        };
        for record in &page {
            let payload: serde_json::Value = match record.kind.as_str() {
                "entries_posted" | "entries_restored" | "entry_reversed" => {
                    serde_json::from_str(&record.payload)
                        .with_context(|| format!("journal record {} is malformed", record.seq))?
                }
                _ => continue,
            };
            let first = payload["entries"][0]["id"]
                .as_i64()
                .or_else(|| payload["entry"]["id"].as_i64());
            if first.is_some() {
                return Ok(first);
            }
        }
        after = last;
    }
}

/// Reverts company `company_id` in place to `target`; `progress` hears
/// (done, total) actions.
pub async fn revert_in_place(
    platform: &Platform,
    company_id: &str,
    target: RestoreTarget,
    actor: Actor,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<Reverted> {
    if platform.control.company(company_id).await?.is_none() {
        bail!("no company {company_id}");
    }
    let store = platform
        .tenant(company_id)
        .await
        .map_err(|e| anyhow!("opening company {company_id}: {e}"))?;
    let head = store.stats().await?.journal_seq;
    let to_seq = resolve(&*store, target, head).await?;
    let mut later = Vec::new();
    if let Some(first_after) = first_entry_after(&*store, to_seq).await? {
        let mut after = first_after - 1;
        loop {
            let page = store
                .entries(EntryPage {
                    after: Some(after),
                    limit: 1000,
                    from: None,
                    to: None,
                })
                .await?;
            let Some(last) = page.last().map(|e| e.id) else {
                break;
            };
            later.extend(page);
            after = last;
        }
        let links: Vec<LaterEntry> = later
            .iter()
            .map(|e| LaterEntry {
                id: e.id,
                reverses: e.reverses,
                reversed_by: e.reversed_by,
            })
            .collect();
        let actions = plan(first_after, &links);
        apply(
            platform, &*store, &later, &actions, to_seq, &actor, progress,
        )
        .await?;
        let reversed = actions
            .iter()
            .filter(|a| matches!(a, RevertAction::Reverse(_)))
            .count();
        return finish(
            platform,
            &*store,
            company_id,
            to_seq,
            head,
            reversed,
            actions.len() - reversed,
            actor,
        )
        .await;
    }
    finish(platform, &*store, company_id, to_seq, head, 0, 0, actor).await
}

async fn apply(
    platform: &Platform,
    store: &dyn TenantStore,
    later: &[wb_store::Entry],
    actions: &[RevertAction],
    to_seq: i64,
    actor: &Actor,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<()> {
    let total = actions.len() as u64;
    let mut done = 0u64;
    progress(0, total);
    for chunk in actions.chunks(BATCH) {
        let mut changes = Vec::with_capacity(chunk.len());
        for action in chunk {
            let ctx = WriteContext {
                actor: actor.clone(),
                at: platform.now(),
            };
            let change = match *action {
                RevertAction::Reverse(id) => {
                    let entry = later
                        .iter()
                        .find(|e| e.id == id)
                        .ok_or_else(|| anyhow!("entry {id} vanished during the revert"))?;
                    Change::Reverse {
                        entry_id: id,
                        date: entry.date,
                        description: Some(format!(
                            "Reversal of entry {id}: company restored in place to journal record {to_seq}"
                        )),
                    }
                }
                RevertAction::Reinstate(id) => {
                    let original = store
                        .entry(id)
                        .await?
                        .ok_or_else(|| anyhow!("entry {id} is missing"))?;
                    Change::Post(vec![EntryDraft {
                        date: original.date,
                        description: format!(
                            "{} (entry {id} reinstated: company restored in place to journal record {to_seq})",
                            original.description
                        )
                        .chars()
                        .take(500)
                        .collect(),
                        reference: original.reference.clone(),
                        postings: original
                            .postings
                            .iter()
                            .map(|p| PostingDraft {
                                account: p.account.clone(),
                                amount: p.currency.format(i128::from(p.amount)),
                                currency: p.currency.code().to_string(),
                            })
                            .collect(),
                    }])
                }
            };
            changes.push((change, ctx));
        }
        for result in store.apply_in_order(changes).await {
            result.context("applying a compensating entry")?;
        }
        done += chunk.len() as u64;
        progress(done, total);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    platform: &Platform,
    store: &dyn TenantStore,
    company_id: &str,
    to_seq: i64,
    from_seq: i64,
    reversed: usize,
    reinstated: usize,
    actor: Actor,
) -> anyhow::Result<Reverted> {
    let last_seq = store.stats().await?.journal_seq;
    let event = AuditEvent {
        at: platform.now(),
        actor,
        company_id: Some(company_id.to_string()),
        action: "company.restore.in_place".into(),
        target: Some(format!("company:{company_id}")),
        outcome: Outcome::Success,
        detail: Some(format!(
            "books brought back to journal record {to_seq} (head was {from_seq}): {reversed} entries reversed, {reinstated} reinstated"
        )),
    };
    platform.control.audit(&event).await?;
    Ok(Reverted {
        company_id: company_id.to_string(),
        to_seq,
        from_seq,
        reversed,
        reinstated,
        last_seq,
    })
}
