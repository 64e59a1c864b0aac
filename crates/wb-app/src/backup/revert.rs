//! In-place restore: brings a company's books back to an earlier journal
//! point with compensating entries (`wb_core::revert`), through the company's
//! ordinary writer, so its journal, audit trail and backups continue
//! unbroken and the revert can itself be undone. Accounts created after the
//! point stay (with zero balances); nothing is deleted.

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use wb_core::revert::{plan, LaterEntry, RevertAction};
use wb_core::Action;
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

/// The journal sequence a target names in the company's own journal. For a
/// time, the same rule as a restore: the longest prefix of records all
/// committed at or before it.
async fn resolve(store: &dyn TenantStore, target: RestoreTarget, head: i64) -> anyhow::Result<i64> {
    match target {
        RestoreTarget::Latest => Ok(head),
        RestoreTarget::Seq(n) if (0..=head).contains(&n) => Ok(n),
        RestoreTarget::Seq(n) => bail!("--to-seq {n} is outside the company's journal (0..{head})"),
        RestoreTarget::Time(t) => {
            let mut last = 0;
            while last < head {
                let page = store.journal(last, PAGE).await?;
                if page.is_empty() {
                    break;
                }
                for record in &page {
                    if record.seq > head || record.at > t {
                        return Ok(last);
                    }
                    last = record.seq;
                }
            }
            Ok(last)
        }
    }
}

/// Journal records read at a time.
const PAGE: u32 = 10_000;

/// After a purge the journal starts at its anchor, followed by the kept
/// state re-stated (all committed with the anchor): the last of those
/// records, before which nothing can be reverted to. None without a purge.
async fn purge_floor(store: &dyn TenantStore) -> anyhow::Result<Option<i64>> {
    let Some(anchor) = store.journal(0, 1).await?.into_iter().next() else {
        return Ok(None);
    };
    if anchor.kind != wb_store::purge::PURGED {
        return Ok(None);
    }
    let mut floor = anchor.seq;
    loop {
        let page = store.journal(floor, PAGE).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            return Ok(Some(floor));
        };
        for record in &page {
            let baseline = record.at == anchor.at
                && matches!(
                    record.kind.as_str(),
                    wb_store::purge::ACCOUNT_KEPT
                        | wb_store::purge::ENTRIES_KEPT
                        | wb_store::journal::FILE_ADDED
                );
            if !baseline {
                return Ok(Some(floor));
            }
            floor = record.seq;
        }
        if last == floor && page.len() < PAGE as usize {
            return Ok(Some(floor));
        }
    }
}

/// The first and last entry ids the records after `from` up to `head` posted.
async fn entries_between(
    store: &dyn TenantStore,
    from: i64,
    head: i64,
) -> anyhow::Result<Option<(i64, i64)>> {
    let mut range: Option<(i64, i64)> = None;
    let mut after = from;
    while after < head {
        let page = store.journal(after, PAGE).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        for record in page.iter().filter(|r| r.seq <= head) {
            let Some(ids) = wb_store::journal::entry_ids(&record.kind, &record.payload)
                .with_context(|| format!("journal record {} is malformed", record.seq))?
            else {
                continue;
            };
            for id in ids {
                range = Some(match range {
                    Some((first, last)) => (first.min(id), last.max(id)),
                    None => (id, id),
                });
            }
        }
        after = last;
    }
    Ok(range)
}

/// What the revert needs of an entry posted after the point.
struct LaterRow {
    id: i64,
    date: time::Date,
    reverses: Option<i64>,
    reversed_by: Option<i64>,
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
    platform.refuse_destroyed(company_id).await?;
    if platform.control.company(company_id).await?.is_none() {
        bail!("no company {company_id}");
    }
    let store = platform
        .tenant(company_id)
        .await
        .map_err(|e| anyhow!("opening company {company_id}: {e}"))?;
    let head = store.stats().await?.journal_seq;
    let to_seq = resolve(&*store, target, head).await?;
    if let Some(floor) = purge_floor(&*store).await? {
        if to_seq < floor {
            bail!(
                "the company's journal was restarted by a purge: the earliest point to revert to is record {floor} (the end of what the purge kept)"
            );
        }
    }
    // Only what was committed up to `head`: entries posted while the revert
    // runs are kept.
    let Some((first_after, last)) = entries_between(&*store, to_seq, head).await? else {
        return finish(platform, &*store, company_id, to_seq, head, 0, 0, actor).await;
    };
    let mut later = Vec::new();
    let mut after = first_after - 1;
    while after < last {
        let page = store
            .entries(EntryPage {
                after: Some(after),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let Some(page_last) = page.last().map(|e| e.id) else {
            break;
        };
        later.extend(page.into_iter().filter(|e| e.id <= last).map(|e| LaterRow {
            id: e.id,
            date: e.date,
            reverses: e.reverses,
            reversed_by: e.reversed_by,
        }));
        after = page_last;
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
    let (reversed, reinstated) = apply(
        platform, &*store, &later, &actions, to_seq, &actor, progress,
    )
    .await?;
    finish(
        platform, &*store, company_id, to_seq, head, reversed, reinstated, actor,
    )
    .await
}

/// Applies the plan; returns (reversed, reinstated). An entry someone else
/// reversed since the plan was made needs nothing more.
async fn apply(
    platform: &Platform,
    store: &dyn TenantStore,
    later: &[LaterRow],
    actions: &[RevertAction],
    to_seq: i64,
    actor: &Actor,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> anyhow::Result<(usize, usize)> {
    let (mut reversed, mut reinstated) = (0, 0);
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
                        .binary_search_by_key(&id, |e| e.id)
                        .map(|i| &later[i])
                        .map_err(|_| anyhow!("entry {id} vanished during the revert"))?;
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
        for (action, result) in chunk.iter().zip(store.apply_in_order(changes).await) {
            match (action, result) {
                (RevertAction::Reverse(_), Ok(_)) => reversed += 1,
                (RevertAction::Reinstate(_), Ok(_)) => reinstated += 1,
                (
                    RevertAction::Reverse(_),
                    Err(wb_store::StoreError::Ledger(wb_core::LedgerError::AlreadyReversed(_))),
                ) => {}
                (_, Err(e)) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "applying a compensating entry ({reversed} reversed and {reinstated} reinstated so far; running the same restore again completes it)"
                    )))
                }
            }
        }
        done += chunk.len() as u64;
        progress(done, total);
    }
    Ok((reversed, reinstated))
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
        action: Action::CompanyRestoreInPlace,
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
