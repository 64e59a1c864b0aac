//! A purge under the customer's retention rules (see `crate::purge`) on
//! PostgreSQL. The SQLCipher writer's purge (`sqlite/tenant_writer/purge.rs`)
//! is the reference: the same report, the same journal records (anchor and
//! baseline, encoded by `crate::journal`) and the same audit event. The
//! writer carries it out alone, outside the batch planner, in a transaction
//! of its own that holds the company's `heads` row (so writers on every node
//! wait); a dry run computes everything in it and rolls it back.
//!
//! History is guarded by triggers that refuse to delete entries, postings,
//! attachment records, journal records and audit events (the tenant
//! baseline migration). A purge must delete from all of them, so inside its
//! transaction it disables exactly those triggers with `ALTER TABLE …
//! DISABLE TRIGGER`, deletes, and enables them again before it commits.
//! That is sound, and lifts the protection for nobody else:
//! - DDL is transactional in PostgreSQL: the disabled state is an
//!   uncommitted catalog change, invisible to every other session, and
//!   undone by the rollback of a failed or dry purge (or a lost connection).
//!   The triggers are enabled again (and checked to be) before the commit,
//!   so no committed state ever has them off.
//! - Enabling or disabling a trigger takes a SHARE ROW EXCLUSIVE lock on the
//!   table until the transaction ends: any other writer's INSERT, UPDATE or
//!   DELETE on it waits (as every company writer already waits on `heads`),
//!   so nothing else can write while they are off; readers (ACCESS SHARE)
//!   are not blocked, and see the purge all at once when it commits.
//! - Only the tables' owner may do it: the company's own role, which created
//!   them (its writer runs the migrations) and could drop the triggers
//!   anyway. The triggers guard against mistakes of the code, not against
//!   that role, so nothing is weakened; and a database whose tables another
//!   role owns refuses the purge (rolled back whole) instead of half-doing it.
//!
//! No migration is needed (a trigger reading a transaction-local setting
//! would be one, on both backends, and would let any session that can set
//! it delete history).

use std::collections::{BTreeSet, HashMap, HashSet};

use wb_core::ledger::AccountRules;
use wb_core::{EntryDraft, PostingDraft};

use super::plan::Planner;
use super::*;
use crate::journal;
use crate::purge::{self, Anchor, PurgeCounts, PurgePlan, PurgeReport};
use crate::sqlite::conn::{day, ts};

/// The triggers that keep history immutable, by table: a purge (and a
/// replayed anchor) disables them inside its own transaction and enables
/// them again before it commits.
const GUARDS: &[(&str, &str)] = &[
    ("postings", "postings_immutable"),
    ("entries", "entries_undeletable"),
    ("files", "files_immutable"),
    ("change_journal", "journal_append_only"),
    ("audit_events", "audit_append_only"),
];

/// Journal records written per statement while the baseline is re-stated.
const RECORDS_PER_WRITE: usize = 64;

fn guards(verb: &str) -> String {
    GUARDS
        .iter()
        .map(|(table, trigger)| format!("ALTER TABLE {table} {verb} TRIGGER {trigger};\n"))
        .collect()
}

/// Empties the ledger tables for a replayed purge anchor (in the batch's
/// transaction, like the purge itself: see the module documentation).
pub(super) fn wipe_sql() -> String {
    format!(
        "{}DELETE FROM postings; DELETE FROM files; DELETE FROM entries;
         DELETE FROM day_balances; DELETE FROM idempotency; DELETE FROM accounts;
         DELETE FROM change_journal;\n{}",
        guards("DISABLE"),
        guards("ENABLE")
    )
}

const COUNTS: &str = "SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM postings),
        (SELECT count(*) FROM files), (SELECT count(*) FROM audit_events),
        (SELECT count(*) FROM change_journal)";
/// Entries before the horizon, a reversal pair only when both are.
const PURGED_ENTRIES: &str = "SELECT e.id FROM entries e WHERE e.date < $1 AND NOT EXISTS (
         SELECT 1 FROM entries o
         WHERE (o.id = e.reverses OR o.id = e.reversed_by) AND o.date >= $1)
     ORDER BY e.id";
const PURGED_SUMS: &str = "SELECT a.code, p.currency, SUM(p.amount)::text FROM postings p
     JOIN accounts a ON a.id = p.account_id
     WHERE p.entry_id = ANY($1) GROUP BY a.code, p.currency";
const GUARDS_ON: &str = "SELECT count(*) FROM unnest($1::text[], $2::text[]) AS g(tbl, name)
     JOIN pg_trigger t ON t.tgrelid = to_regclass(g.tbl) AND t.tgname = g.name
     WHERE t.tgenabled = 'O'";

impl Writer {
    /// Carries out a purge in a transaction of its own: the report, or the
    /// refusal (audited, as the planner audits refused commands).
    pub(super) async fn purge(
        &mut self,
        plan: PurgePlan,
        ctx: WriteContext,
    ) -> Result<Output, StoreError> {
        let mut conn = self.pool.get().await?;
        if let Err(e) = conn.batch_execute("BEGIN").await {
            conn.discard();
            return Err(e.into());
        }
        let (report, heads) = match self.purge_inside(&mut conn, &plan, &ctx).await {
            Ok(done) => done,
            Err(error) => {
                if conn.batch_execute("ROLLBACK").await.is_err() {
                    conn.discard();
                } else {
                    drop(conn);
                }
                return match error {
                    // Nothing was written: the company may be elsewhere now.
                    StoreError::Moved | StoreError::Connect(_) => Err(error),
                    error => self.refused(error, Action::DataPurge, ctx).await,
                };
            }
        };
        let end = if plan.dry_run { "ROLLBACK" } else { "COMMIT" };
        if let Err(e) = conn.batch_execute(end).await {
            conn.discard();
            self.seen_journal_seq = -1;
            return Err(StoreError::Backend(format!("commit failed: {e}")));
        }
        if !plan.dry_run {
            // Accounts are as they were; the heads are the purge's.
            self.seen_journal_seq = heads.journal_seq;
            self.baseline = false;
            self.published.set(heads.audit_seq, heads.journal_seq);
        }
        Ok(Output::Purged(Box::new(report)))
    }

    async fn purge_inside(
        &mut self,
        conn: &mut PgConn,
        plan: &PurgePlan,
        ctx: &WriteContext,
    ) -> Result<(PurgeReport, Heads), StoreError> {
        let mut heads = read_heads(conn, true).await?;
        if heads.journal_seq != self.seen_journal_seq {
            self.reload_accounts(conn).await?;
            self.seen_journal_seq = heads.journal_seq;
        }
        if heads.journal_seq != plan.journal_head {
            return Err(StoreError::Conflict(format!(
                "the journal moved on to record {} after record {} was shipped; try again",
                heads.journal_seq, plan.journal_head
            )));
        }
        heads.baseline = false;
        let before = counts(conn).await?;
        let horizon = day(plan.horizon);
        let purged: Vec<i64> = conn
            .query(PURGED_ENTRIES, &[&horizon])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let opening = opening_of_purged(conn, &purged, plan.horizon).await?;
        let files: Vec<FileRecord> = tenant_files::purge_candidates(conn, &purged)
            .await?
            .into_iter()
            .filter(|f| f.entry_id.is_some() || f.created_at < plan.files_before)
            .collect();
        let audit_through = audit_checkpoint(conn, plan).await?;
        let audit_due: i64 = match audit_through {
            Some(through) => conn
                .query_one(
                    "SELECT COUNT(*) FROM audit_events WHERE seq <= $1",
                    &[&through],
                )
                .await?
                .try_get(0)?,
            None => 0,
        };
        if purged.is_empty() && files.is_empty() && audit_due == 0 {
            // Nothing goes: the journal is not restarted, backups stay.
            let journal = (heads.journal_seq, heads.journal_hash.clone());
            let report = PurgeReport::nothing(plan.horizon, journal, before, plan.dry_run);
            return Ok((report, heads));
        }

        conn.batch_execute(&guards("DISABLE")).await?;
        let postings = conn
            .execute("DELETE FROM postings WHERE entry_id = ANY($1)", &[&purged])
            .await?;
        let file_ids: Vec<i64> = files.iter().map(|f| f.id).collect();
        conn.execute("DELETE FROM files WHERE id = ANY($1)", &[&file_ids])
            .await?;
        conn.execute("DELETE FROM entries WHERE id = ANY($1)", &[&purged])
            .await?;
        // Idempotency keys that answered with a purged entry would now
        // answer with nothing: they go.
        let purged_text: Vec<String> = purged.iter().map(i64::to_string).collect();
        conn.execute(
            "DELETE FROM idempotency WHERE string_to_array(entry_ids, ',') && $1::text[]",
            &[&purged_text],
        )
        .await?;
        // Day balances before the horizon: only kept reversal pairs remain there.
        conn.execute("DELETE FROM day_balances WHERE day < $1", &[&horizon])
            .await?;
        conn.execute(
            "INSERT INTO day_balances (account_id, currency, day, amount)
             SELECT account_id, currency, date, SUM(amount) FROM postings WHERE date < $1
             GROUP BY account_id, currency, date",
            &[&horizon],
        )
        .await?;
        let kept_addresses = addresses_still_used(conn, &files).await?;
        let audit_events = match audit_through {
            Some(through) => {
                conn.execute("DELETE FROM audit_events WHERE seq <= $1", &[&through])
                    .await?
            }
            None => 0,
        };
        let through = (heads.journal_seq, heads.journal_hash.clone());
        conn.execute("DELETE FROM change_journal", &[]).await?;
        conn.batch_execute(&guards("ENABLE")).await?;
        guards_back(conn).await?;

        let preloaded = Preloaded::default();
        let mut planner = Planner {
            heads,
            accounts: &self.accounts,
            new_accounts: HashMap::new(),
            preloaded: &preloaded,
            planned: HashMap::new(),
            used_keys: HashSet::new(),
            reversed: HashSet::new(),
            company_id: &self.company_id,
            audit_enabled: self.audit_enabled,
            wiped: false,
        };
        let mut w = Writes::default();
        let at = ts(ctx.at);
        let mut opening_entries = Vec::with_capacity(opening.len());
        for entry in opening {
            let balanced = opening_draft(plan.horizon, &entry)
                .validate(|code: &str| {
                    self.accounts.get(code).map(|m| AccountRules {
                        currency: m.currency,
                    })
                })
                .map_err(|e| StoreError::Conflict(format!("an opening entry: {e}")))?;
            opening_entries.push(planner.entry(
                balanced,
                None,
                (&ctx.actor.id, ctx.at),
                &at,
                &mut w,
            )?);
        }
        flush(conn, &mut w, &planner.heads).await?;

        let anchor = Anchor::signed(
            &self.company_id,
            plan.horizon,
            (through.0, &through.1),
            (purged.len() as u64, files.len() as u64),
            &plan.signer,
        );
        let anchor_json = serde_json::to_string(&anchor)
            .map_err(|e| StoreError::Backend(format!("encoding a purge anchor: {e}")))?;
        planner.journal(&mut w, ctx, purge::PURGED, anchor_json);
        let anchor_seq = planner.heads.journal_seq;
        restate_kept(conn, &mut planner, &mut w, ctx).await?;
        let baseline_end = planner.heads.journal_seq;
        // The next entry follows the kept ones, as in a store restored from
        // the anchor and baseline (the records after them must continue
        // it): a purged entry above every kept one leaves its id free.
        planner.heads.next_entry_id = conn
            .query_one("SELECT COALESCE(MAX(id), 0) + 1 FROM entries", &[])
            .await?
            .try_get(0)?;
        flush(conn, &mut w, &planner.heads).await?;

        let mut report = PurgeReport {
            horizon: plan.horizon,
            entries: purged,
            postings,
            files,
            kept_addresses,
            opening: opening_entries,
            audit_through: audit_through.unwrap_or(0),
            audit_events,
            journal_through: through.0,
            journal_through_hash: through.1,
            anchor_seq,
            baseline_end,
            before,
            after: PurgeCounts::default(),
            dry_run: plan.dry_run,
        };
        report.after = counts(conn).await?;
        // The purge's own event, below.
        report.after.audit_events += u64::from(self.audit_enabled);
        planner.audit(
            &mut w,
            ctx,
            Action::DataPurge,
            Some(&format!("horizon:{}", plan.horizon)),
            Outcome::Success,
            Some(&purge::audit_detail(&report)),
        );
        write(conn, &w, &planner.heads)
            .await
            .map_err(WriteFailure::into_error)?;
        Ok((report, planner.heads))
    }
}

/// Writes what `w` holds (and the heads), then starts it afresh.
async fn flush(conn: &mut PgConn, w: &mut Writes, heads: &Heads) -> Result<(), StoreError> {
    write(conn, w, heads)
        .await
        .map_err(WriteFailure::into_error)?;
    *w = Writes::default();
    Ok(())
}

async fn counts(conn: &mut PgConn) -> Result<PurgeCounts, StoreError> {
    let row = conn.query_one(COUNTS, &[]).await?;
    let count = |i: usize| -> Result<u64, StoreError> {
        Ok(u64::try_from(row.try_get::<_, i64>(i)?).unwrap_or(0))
    };
    Ok(PurgeCounts {
        entries: count(0)?,
        postings: count(1)?,
        files: count(2)?,
        audit_events: count(3)?,
        journal_records: count(4)?,
    })
}

/// Per currency, the sum per account of what the purged entries posted.
async fn opening_of_purged(
    conn: &mut PgConn,
    purged: &[i64],
    horizon: time::Date,
) -> Result<Vec<wb_core::purge::OpeningEntry>, StoreError> {
    let mut postings = Vec::new();
    for row in conn.query(PURGED_SUMS, &[&purged]).await? {
        let account: String = row.try_get(0)?;
        let code: String = row.try_get(1)?;
        let sum: String = row.try_get(2)?;
        let currency =
            Currency::parse(&code).map_err(|_| StoreError::Corrupt("posting currency".into()))?;
        let mut left: i128 = sum
            .parse()
            .map_err(|_| StoreError::Corrupt("posting sum".into()))?;
        // Summed here rather than row by row; a sum beyond one posting's
        // range goes in parts, which `opening_entries` adds up again.
        while left != 0 {
            let part = i64::try_from(left).unwrap_or(if left > 0 { i64::MAX } else { i64::MIN });
            postings.push(wb_core::ledger::Posting {
                account: account.clone(),
                currency,
                amount: part,
            });
            left -= i128::from(part);
        }
    }
    let day_before = horizon.previous_day().unwrap_or(horizon);
    Ok(wb_core::purge::opening_entries(
        postings
            .iter()
            .map(|p| (day_before, std::slice::from_ref(p))),
        horizon,
    ))
}

fn opening_draft(horizon: time::Date, entry: &wb_core::purge::OpeningEntry) -> EntryDraft {
    EntryDraft {
        date: horizon,
        description: format!(
            "Opening balance at {horizon}: entries before it purged under the retention rules"
        ),
        reference: Some(format!("purge:{horizon}")),
        postings: entry
            .postings
            .iter()
            .map(|(account, amount)| PostingDraft {
                account: account.clone(),
                amount: entry.currency.format(*amount),
                currency: entry.currency.code().to_string(),
            })
            .collect(),
    }
}

/// The audit event the plan's checkpoint vouches for, checked: its sequence.
async fn audit_checkpoint(conn: &mut PgConn, plan: &PurgePlan) -> Result<Option<i64>, StoreError> {
    let Some((through, hash)) = &plan.audit_through else {
        return Ok(None);
    };
    let stored: Option<String> = conn
        .query_opt("SELECT hash FROM audit_events WHERE seq = $1", &[through])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    if stored.as_deref() != Some(hash.as_str()) {
        return Err(StoreError::Conflict(format!(
            "audit event {through} is not the one the purge's checkpoint vouches for"
        )));
    }
    Ok(Some(*through))
}

/// Content addresses of removed records still used by a kept one.
async fn addresses_still_used(
    conn: &mut PgConn,
    removed: &[FileRecord],
) -> Result<Vec<String>, StoreError> {
    let addresses: BTreeSet<&str> = removed.iter().map(|f| f.address.as_str()).collect();
    let wanted: Vec<&str> = addresses.iter().copied().collect();
    let used: HashSet<String> = conn
        .query(
            "SELECT DISTINCT address FROM files WHERE address = ANY($1)",
            &[&wanted],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    Ok(addresses
        .into_iter()
        .filter(|a| used.contains(*a))
        .map(str::to_string)
        .collect())
}

/// Every guard is back on (enabled, as the migrations made it).
async fn guards_back(conn: &mut PgConn) -> Result<(), StoreError> {
    let tables: Vec<&str> = GUARDS.iter().map(|(t, _)| *t).collect();
    let names: Vec<&str> = GUARDS.iter().map(|(_, g)| *g).collect();
    let on: i64 = conn
        .query_one(GUARDS_ON, &[&tables, &names])
        .await?
        .try_get(0)?;
    if usize::try_from(on).ok() != Some(GUARDS.len()) {
        return Err(StoreError::Backend(
            "the history guards are not all enabled again; the purge is rolled back".into(),
        ));
    }
    Ok(())
}

/// Re-states every account, kept entry (opening entries last: they have the
/// highest ids) and kept attachment record after the anchor.
async fn restate_kept(
    conn: &mut PgConn,
    planner: &mut Planner<'_>,
    w: &mut Writes,
    ctx: &WriteContext,
) -> Result<(), StoreError> {
    const ACCOUNTS: &str =
        "SELECT id, code, name, type, parent, currency, created_at FROM accounts ORDER BY id";
    const ENTRY_IDS: &str = "SELECT id FROM entries WHERE id > $1 ORDER BY id LIMIT $2";
    let accounts: Vec<Account> = conn
        .query(ACCOUNTS, &[])
        .await?
        .iter()
        .map(row_to_account)
        .collect::<Result<_, _>>()?;
    for account in &accounts {
        let payload = journal::account_created(account, &ts(account.created_at));
        planner.journal(w, ctx, purge::ACCOUNT_KEPT, payload);
        if w.journal.len() >= RECORDS_PER_WRITE {
            flush(conn, w, &planner.heads).await?;
        }
    }
    let limit = purge::ENTRIES_PER_RECORD as i64;
    let mut after = 0i64;
    loop {
        let ids: Vec<i64> = conn
            .query(ENTRY_IDS, &[&after, &limit])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let Some(&last) = ids.last() else { break };
        after = last;
        let entries = load_entries(conn, &ids).await?;
        if entries.len() != ids.len() {
            return Err(StoreError::NotFound("entry"));
        }
        let chunk: Vec<(Entry, String)> = entries
            .into_iter()
            .map(|e| {
                let at = ts(e.created_at);
                (e, at)
            })
            .collect();
        planner.journal(w, ctx, purge::ENTRIES_KEPT, journal::entries_kept(&chunk)?);
        if w.journal.len() >= RECORDS_PER_WRITE {
            flush(conn, w, &planner.heads).await?;
        }
    }
    let mut after = 0i64;
    loop {
        let page = tenant_files::files(
            conn,
            &FilePage {
                after: Some(after),
                limit: 1000,
                entry_id: None,
            },
            1000,
        )
        .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for file in page {
            let payload = journal::file_added(&file, &ts(file.created_at));
            planner.journal(w, ctx, journal::FILE_ADDED, payload);
        }
        if w.journal.len() >= RECORDS_PER_WRITE {
            flush(conn, w, &planner.heads).await?;
        }
    }
    Ok(())
}
