//! A purge under the customer's retention rules (see `crate::purge`), in
//! the writer's transaction: entries before the horizon replaced by opening
//! entries, attachments and audit events removed, the journal restarted at
//! a signed anchor with the kept state re-stated after it.

use std::collections::BTreeSet;

use rusqlite::params;
use wb_core::{EntryDraft, PostingDraft};

use super::*;
use crate::journal;
use crate::purge::{self, Anchor, PurgeCounts, PurgePlan, PurgeReport};
use crate::sqlite::conn::{day, ts};
use crate::sqlite::tenant::load_entry;

/// The triggers that keep history immutable; a purge (and a replayed
/// anchor) lifts them inside its own transaction and puts them back.
const GUARDS: &[&str] = &[
    "entries_undeletable",
    "postings_undeletable",
    "files_undeletable",
    "journal_append_only_d",
    "audit_append_only_d",
];

impl WriterState {
    pub(super) fn purge(
        &mut self,
        plan: PurgePlan,
        ctx: &WriteContext,
    ) -> Result<PurgeReport, StoreError> {
        if self.journal.seq != plan.journal_head {
            return Err(StoreError::Conflict(format!(
                "the journal moved on to record {} after record {} was shipped; try again",
                self.journal.seq, plan.journal_head
            )));
        }
        let journal = (self.journal.seq, self.journal.hash.clone());
        let audit = (self.audit.seq, self.audit.hash.clone());
        let (next_entry_id, next_file_id) = (self.next_entry_id, self.next_file_id);
        self.conn.execute_batch("SAVEPOINT purge")?;
        let result = self.purge_inside(&plan, ctx);
        let keep = result.is_ok() && !plan.dry_run;
        if keep {
            self.conn.execute_batch("RELEASE purge")?;
            // The next ids follow the kept rows, as they do in a store
            // restored from the anchor and baseline (whose journal the
            // records after this one must continue): a purged entry or
            // attachment above every kept one leaves its id free.
            self.next_entry_id =
                self.conn
                    .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM entries", [], |r| {
                        r.get(0)
                    })?;
            self.next_file_id = tenant_files::next_id(&self.conn)?;
        } else {
            self.conn
                .execute_batch("ROLLBACK TO purge; RELEASE purge")?;
            self.journal = Head {
                seq: journal.0,
                hash: journal.1,
            };
            self.audit = Head {
                seq: audit.0,
                hash: audit.1,
            };
            self.next_entry_id = next_entry_id;
            self.next_file_id = next_file_id;
        }
        result
    }

    fn counts(&self) -> Result<PurgeCounts, StoreError> {
        let count = |table: &str| -> Result<u64, StoreError> {
            let n: i64 =
                self.conn
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(PurgeCounts {
            entries: count("entries")?,
            postings: count("postings")?,
            files: count("files")?,
            audit_events: count("audit_events")?,
            journal_records: count("change_journal")?,
        })
    }

    /// Drops the history guards, returning what re-creates them.
    pub(super) fn lift_guards(&self) -> Result<Vec<String>, StoreError> {
        let mut recreate = Vec::new();
        for name in GUARDS {
            let sql: Option<String> = self
                .conn
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(sql) = sql {
                self.conn.execute_batch(&format!("DROP TRIGGER {name}"))?;
                recreate.push(sql);
            }
        }
        Ok(recreate)
    }

    pub(super) fn restore_guards(&self, recreate: Vec<String>) -> Result<(), StoreError> {
        for sql in recreate {
            self.conn.execute_batch(&sql)?;
        }
        Ok(())
    }

    fn purge_inside(
        &mut self,
        plan: &PurgePlan,
        ctx: &WriteContext,
    ) -> Result<PurgeReport, StoreError> {
        let before = self.counts()?;
        let horizon = day(plan.horizon);
        // Entries before the horizon, a reversal pair only when both are.
        let purged: Vec<i64> = self
            .conn
            .prepare(
                "SELECT e.id FROM entries e WHERE e.date < ?1 AND NOT EXISTS (
                   SELECT 1 FROM entries o
                   WHERE (o.id = e.reverses OR o.id = e.reversed_by) AND o.date >= ?1)
                 ORDER BY e.id",
            )?
            .query_map([&horizon], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        self.conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS purge_entries (id INTEGER PRIMARY KEY);
             DELETE FROM temp.purge_entries;",
        )?;
        {
            let mut insert = self
                .conn
                .prepare_cached("INSERT INTO temp.purge_entries (id) VALUES (?1)")?;
            for id in &purged {
                insert.execute([id])?;
            }
        }
        let opening = self.opening_of_purged(plan.horizon)?;
        let files = self.files_to_purge(plan)?;
        if let Some((through, hash)) = &plan.audit_through {
            let stored: Option<String> = self
                .conn
                .query_row(
                    "SELECT hash FROM audit_events WHERE seq = ?1",
                    [through],
                    |r| r.get(0),
                )
                .optional()?;
            if stored.as_deref() != Some(hash.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "audit event {through} is not the one the purge's checkpoint vouches for"
                )));
            }
        }
        let audit_due: i64 = match &plan.audit_through {
            Some((through, _)) => self.conn.query_row(
                "SELECT COUNT(*) FROM audit_events WHERE seq <= ?1",
                [through],
                |r| r.get(0),
            )?,
            None => 0,
        };
        if purged.is_empty() && files.is_empty() && audit_due == 0 {
            // Nothing goes: the journal is not restarted, backups stay.
            return Ok(PurgeReport::nothing(
                plan.horizon,
                (self.journal.seq, self.journal.hash.clone()),
                before,
                plan.dry_run,
            ));
        }

        // Freed pages are overwritten, so what goes is not left readable
        // (with the company key) in the file's free pages.
        self.conn.execute_batch("PRAGMA secure_delete = ON")?;
        let guards = self.lift_guards()?;
        let postings = self.conn.execute(
            "DELETE FROM postings WHERE entry_id IN (SELECT id FROM temp.purge_entries)",
            [],
        )? as u64;
        {
            let mut delete = self
                .conn
                .prepare_cached("DELETE FROM files WHERE id = ?1")?;
            for file in &files {
                delete.execute([file.id])?;
            }
        }
        self.conn.execute(
            "DELETE FROM entries WHERE id IN (SELECT id FROM temp.purge_entries)",
            [],
        )?;
        self.forget_idempotency(&purged)?;
        // Day balances before the horizon: only kept reversal pairs remain there.
        self.conn
            .execute("DELETE FROM day_balances WHERE day < ?1", [&horizon])?;
        self.conn.execute(
            "INSERT INTO day_balances (account_id, currency, day, amount)
             SELECT account_id, currency, date, SUM(amount) FROM postings WHERE date < ?1
             GROUP BY account_id, currency, date",
            [&horizon],
        )?;
        let kept_addresses = self.addresses_still_used(&files)?;
        let opening = self.post_opening(plan.horizon, opening, ctx)?;
        let (audit_through, audit_events) = self.drop_audit(plan)?;
        let through = (self.journal.seq, self.journal.hash.clone());
        self.conn.execute("DELETE FROM change_journal", [])?;
        self.restore_guards(guards)?;
        self.conn.execute_batch("PRAGMA secure_delete = OFF")?;

        let anchor = Anchor::signed(
            &self.company_id,
            plan.horizon,
            (through.0, &through.1),
            (purged.len() as u64, files.len() as u64),
            &plan.signer,
        );
        let anchor_json = serde_json::to_string(&anchor)
            .map_err(|e| StoreError::Backend(format!("encoding a purge anchor: {e}")))?;
        self.journal_append(ctx, purge::PURGED, &anchor_json)?;
        let anchor_seq = self.journal.seq;
        self.restate_kept(ctx)?;
        let baseline_end = self.journal.seq;
        let mut report = PurgeReport {
            horizon: plan.horizon,
            entries: purged,
            postings,
            files,
            kept_addresses,
            opening,
            audit_through,
            audit_events,
            journal_through: through.0,
            journal_through_hash: through.1,
            anchor_seq,
            baseline_end,
            before,
            after: PurgeCounts::default(),
            dry_run: plan.dry_run,
        };
        report.after = self.counts()?;
        // The purge's own event, below.
        report.after.audit_events += u64::from(self.audit_enabled);
        self.audit_append(
            ctx,
            Action::DataPurge,
            Some(&format!("horizon:{}", plan.horizon)),
            Outcome::Success,
            Some(&purge::audit_detail(&report)),
        )?;
        Ok(report)
    }

    /// Per currency, the sum per account of what the purged entries posted.
    fn opening_of_purged(
        &self,
        horizon: time::Date,
    ) -> Result<Vec<wb_core::purge::OpeningEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.code, p.currency, p.amount FROM postings p
             JOIN accounts a ON a.id = p.account_id
             WHERE p.entry_id IN (SELECT id FROM temp.purge_entries)",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut postings = Vec::new();
        for row in rows {
            let (account, currency, amount) = row?;
            postings.push(wb_core::ledger::Posting {
                account,
                currency: Currency::parse(&currency)
                    .map_err(|_| StoreError::Corrupt("posting currency".into()))?,
                amount,
            });
        }
        let day_before = horizon.previous_day().unwrap_or(horizon);
        Ok(wb_core::purge::opening_entries(
            postings
                .iter()
                .map(|p| (day_before, std::slice::from_ref(p))),
            horizon,
        ))
    }

    /// Attachment records linked to a purged entry, and unlinked ones
    /// created before the plan's cut-off.
    fn files_to_purge(&self, plan: &PurgePlan) -> Result<Vec<FileRecord>, StoreError> {
        let purged_links: BTreeSet<i64> = self
            .conn
            .prepare("SELECT id FROM files WHERE entry_id IN (SELECT id FROM temp.purge_entries)")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = tenant_files::files(
                &self.conn,
                &FilePage {
                    after: Some(after),
                    limit: 1000,
                    entry_id: None,
                },
                1000,
            )?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for file in page {
                let old_and_loose = file.entry_id.is_none() && file.created_at < plan.files_before;
                if purged_links.contains(&file.id) || old_and_loose {
                    out.push(file);
                }
            }
        }
        Ok(out)
    }

    fn addresses_still_used(&self, removed: &[FileRecord]) -> Result<Vec<String>, StoreError> {
        let addresses: BTreeSet<&str> = removed.iter().map(|f| f.address.as_str()).collect();
        let mut kept = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM files WHERE address = ?1 LIMIT 1")?;
        for address in addresses {
            if stmt.exists([address])? {
                kept.push(address.to_string());
            }
        }
        Ok(kept)
    }

    /// Idempotency keys that answered with a purged entry would now answer
    /// with nothing: they go.
    fn forget_idempotency(&self, purged: &[i64]) -> Result<(), StoreError> {
        let purged: BTreeSet<&i64> = purged.iter().collect();
        let rows: Vec<(String, String)> = self
            .conn
            .prepare("SELECT key, entry_ids FROM idempotency")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut delete = self
            .conn
            .prepare_cached("DELETE FROM idempotency WHERE key = ?1")?;
        for (key, ids) in rows {
            let hit = ids
                .split(',')
                .filter_map(|s| s.parse::<i64>().ok())
                .any(|id| purged.contains(&id));
            if hit {
                delete.execute([key])?;
            }
        }
        Ok(())
    }

    fn post_opening(
        &mut self,
        horizon: time::Date,
        opening: Vec<wb_core::purge::OpeningEntry>,
        ctx: &WriteContext,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut balances = DayBalances::new();
        let mut out = Vec::new();
        for entry in opening {
            let draft = EntryDraft {
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
            };
            let accounts = &self.accounts;
            let balanced = draft
                .validate(|code: &str| {
                    accounts.get(code).map(|m| wb_core::ledger::AccountRules {
                        currency: m.currency,
                    })
                })
                .map_err(|e| StoreError::Conflict(format!("an opening entry: {e}")))?;
            let at = ts(ctx.at);
            out.push(self.insert_entry(
                balanced,
                None,
                (&ctx.actor.id, ctx.at),
                &at,
                &mut balances,
            )?);
        }
        self.flush_balances(balances)?;
        Ok(out)
    }

    fn drop_audit(&mut self, plan: &PurgePlan) -> Result<(i64, u64), StoreError> {
        let Some((through, hash)) = &plan.audit_through else {
            return Ok((0, 0));
        };
        let stored: Option<String> = self
            .conn
            .query_row(
                "SELECT hash FROM audit_events WHERE seq = ?1",
                [through],
                |r| r.get(0),
            )
            .optional()?;
        if stored.as_deref() != Some(hash.as_str()) {
            return Err(StoreError::Conflict(format!(
                "audit event {through} is not the one the purge's checkpoint vouches for"
            )));
        }
        let removed = self
            .conn
            .execute("DELETE FROM audit_events WHERE seq <= ?1", [through])?;
        Ok((*through, removed as u64))
    }

    /// Re-states every account, kept entry (opening entries last: they have
    /// the highest ids) and kept attachment record after the anchor.
    fn restate_kept(&mut self, ctx: &WriteContext) -> Result<(), StoreError> {
        let accounts: Vec<Account> = self
            .conn
            .prepare("SELECT id, code, name, type, parent, currency, created_at FROM accounts ORDER BY id")?
            .query_map([], row_to_account)?
            .collect::<Result<Result<Vec<_>, _>, _>>()??;
        for account in &accounts {
            let payload = journal::account_created(account, &ts(account.created_at));
            self.journal_append(ctx, purge::ACCOUNT_KEPT, &payload)?;
        }
        let mut after = 0;
        loop {
            let ids: Vec<i64> = self
                .conn
                .prepare_cached("SELECT id FROM entries WHERE id > ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![after, purge::ENTRIES_PER_RECORD as i64], |r| {
                    r.get(0)
                })?
                .collect::<Result<_, _>>()?;
            let Some(&last) = ids.last() else { break };
            after = last;
            let mut chunk = Vec::with_capacity(ids.len());
            for id in ids {
                let entry = load_entry(&self.conn, id)?.ok_or(StoreError::NotFound("entry"))?;
                let at = ts(entry.created_at);
                chunk.push((entry, at));
            }
            let payload = journal::entries_kept(&chunk)?;
            self.journal_append(ctx, purge::ENTRIES_KEPT, &payload)?;
        }
        let mut after = 0;
        loop {
            let page = tenant_files::files(
                &self.conn,
                &FilePage {
                    after: Some(after),
                    limit: 1000,
                    entry_id: None,
                },
                1000,
            )?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for file in page {
                let payload = journal::file_added(&file, &ts(file.created_at));
                self.journal_append(ctx, journal::FILE_ADDED, &payload)?;
            }
        }
        Ok(())
    }

    /// Replays a purge's anchor: the store is emptied and its journal
    /// continues from the record the anchor names; the baseline follows.
    pub(super) fn replay_anchor(
        &mut self,
        through_seq: i64,
        through_hash: &str,
    ) -> Result<(), StoreError> {
        let guards = self.lift_guards()?;
        self.conn.execute_batch(
            "DELETE FROM postings; DELETE FROM files; DELETE FROM entries;
             DELETE FROM day_balances; DELETE FROM idempotency; DELETE FROM accounts;
             DELETE FROM change_journal;",
        )?;
        self.restore_guards(guards)?;
        self.accounts.clear();
        self.next_entry_id = 1;
        self.next_file_id = 1;
        self.baseline = true;
        self.journal = Head {
            seq: through_seq,
            hash: through_hash.to_string(),
        };
        Ok(())
    }
}
