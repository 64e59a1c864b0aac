//! The single writer of one company database, with group commit.
//!
//! Requests queue on a channel; the writer takes whatever is waiting (up to
//! `MAX_BATCH_COMMANDS`), applies each in its own SAVEPOINT so one bad request
//! fails alone, and commits them all with one fsync. Every command writes its
//! change-journal record and audit record inside the same transaction.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;
use time::{Date, OffsetDateTime};
use tokio::sync::mpsc;
use wb_core::ledger::AccountRules;
use wb_core::{AccountType, BalancedEntry, Currency, EntryDraft, LedgerError, NewAccount};

use super::conn::{day, ts};
use super::tenant::{load_entry, row_to_account};
use super::tenant_files;
use crate::chain;
use crate::file_records;
use crate::model::*;
use crate::writer_jobs::{Command, Job, Output};
use crate::StoreError;
use std::sync::Arc;
use wb_core::audit::AuditFields;

pub(crate) const MAX_BATCH_COMMANDS: usize = 256;
/// The writer's page cache normally, and while a restore replays into it.
const NORMAL_CACHE: &str = "PRAGMA cache_size = -16384";
const BULK_CACHE: &str = "PRAGMA cache_size = -262144";
const QUEUE_DEPTH: usize = 4096;

#[derive(Clone, Copy)]
struct AccountMeta {
    id: i64,
    account_type: AccountType,
    currency: Option<Currency>,
}

struct Head {
    seq: i64,
    hash: String,
}

pub(crate) struct WriterState {
    conn: Connection,
    company_id: String,
    accounts: HashMap<String, AccountMeta>,
    journal: Head,
    audit: Head,
    next_entry_id: i64,
    next_file_id: i64,
    /// The last committed audit sequence, for the forwarder to poll cheaply.
    published: Arc<Published>,
    /// False only in benchmarks that measure the cost of auditing.
    audit_enabled: bool,
    /// True while the page cache is enlarged for a restore's replay.
    bulk_cache: bool,
}

pub(crate) fn spawn(
    conn: Connection,
    company_id: &str,
    published: Arc<Published>,
    audit_enabled: bool,
) -> Result<mpsc::Sender<Job>, StoreError> {
    let mut state = WriterState::load(conn, company_id, published)?;
    state.audit_enabled = audit_enabled;
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(run(rx, state));
    Ok(tx)
}

/// After this long without work, the writer releases its page and statement
/// caches, so a thousand idle companies do not hold a thousand warm caches.
pub(crate) const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

async fn next_job(rx: &mut mpsc::Receiver<Job>, state: &mut Option<WriterState>) -> Option<Job> {
    match tokio::time::timeout(IDLE_RELEASE, rx.recv()).await {
        Ok(job) => job,
        Err(_) => {
            if let Some(mut idle) = state.take() {
                *state = tokio::task::spawn_blocking(move || {
                    idle.release_memory();
                    idle
                })
                .await
                .ok();
            }
            rx.recv().await
        }
    }
}

async fn run(mut rx: mpsc::Receiver<Job>, state: WriterState) {
    let mut slot = Some(state);
    while let Some(first) = next_job(&mut rx, &mut slot).await {
        let Some(mut state) = slot.take() else {
            let _ = first.reply.send(Err(StoreError::WriterStopped));
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (replies, work): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| (j.reply, (j.command, j.ctx)))
            .unzip();
        let outcome = tokio::task::spawn_blocking(move || {
            let results = state.apply_batch(work);
            (state, results)
        })
        .await;
        match outcome {
            Ok((returned, results)) => {
                slot = Some(returned);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "company writer panicked; stopping it");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::WriterStopped));
                }
                return;
            }
        }
    }
}

fn head(conn: &Connection, table: &str) -> Result<Head, StoreError> {
    let sql = format!("SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1");
    Ok(conn
        .query_row(&sql, [], |r| {
            Ok(Head {
                seq: r.get(0)?,
                hash: r.get(1)?,
            })
        })
        .optional()?
        .unwrap_or(Head {
            seq: 0,
            hash: chain::GENESIS.to_string(),
        }))
}

impl WriterState {
    fn load(
        conn: Connection,
        company_id: &str,
        published: Arc<Published>,
    ) -> Result<WriterState, StoreError> {
        let (accounts, journal, audit, next_entry_id, next_file_id) =
            WriterState::load_from(&conn)?;
        published.set(audit.seq, journal.seq);
        Ok(WriterState {
            conn,
            company_id: company_id.to_string(),
            accounts,
            journal,
            audit,
            next_entry_id,
            next_file_id,
            published,
            audit_enabled: true,
            bulk_cache: false,
        })
    }

    fn release_memory(&mut self) {
        self.conn.flush_prepared_statement_cache();
        if std::mem::take(&mut self.bulk_cache) {
            if let Err(e) = self.conn.execute_batch(NORMAL_CACHE) {
                tracing::warn!(error = %e, "resetting a company's cache size failed");
            }
        }
        if let Err(e) = self.conn.execute_batch("PRAGMA shrink_memory") {
            tracing::warn!(error = %e, "releasing an idle company's cache failed");
        }
    }

    fn reload(&mut self) {
        match WriterState::load_from(&self.conn) {
            Ok((accounts, journal, audit, next, next_file)) => {
                self.accounts = accounts;
                self.journal = journal;
                self.audit = audit;
                self.next_entry_id = next;
                self.next_file_id = next_file;
            }
            Err(e) => tracing::error!(error = %e, "reloading writer state failed"),
        }
    }

    #[allow(clippy::type_complexity)]
    fn load_from(
        conn: &Connection,
    ) -> Result<(HashMap<String, AccountMeta>, Head, Head, i64, i64), StoreError> {
        let mut accounts = HashMap::new();
        let mut stmt = conn
            .prepare("SELECT id, code, name, type, parent, currency, created_at FROM accounts")?;
        for row in stmt.query_map([], row_to_account)? {
            let a = row??;
            accounts.insert(
                a.code.clone(),
                AccountMeta {
                    id: a.id,
                    account_type: a.account_type,
                    currency: a.currency,
                },
            );
        }
        let next: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM entries", [], |r| {
                r.get(0)
            })?;
        Ok((
            accounts,
            head(conn, "change_journal")?,
            head(conn, "audit_events")?,
            next,
            tenant_files::next_id(conn)?,
        ))
    }

    pub(crate) fn apply_batch(
        &mut self,
        work: Vec<(Command, WriteContext)>,
    ) -> Vec<Result<Output, StoreError>> {
        if work
            .iter()
            .all(|(c, _)| matches!(c, Command::Replay(_) | Command::ImportAudit(_)))
        {
            return self.apply_replay(work);
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let message = e.to_string();
            return work
                .iter()
                .map(|_| Err(StoreError::Backend(message.clone())))
                .collect();
        }
        let mut results = Vec::with_capacity(work.len());
        for (command, ctx) in work {
            let action = command.action();
            let journal = (self.journal.seq, self.journal.hash.clone());
            let audit = (self.audit.seq, self.audit.hash.clone());
            let next_entry_id = self.next_entry_id;
            let next_file_id = self.next_file_id;
            let result = self
                .conn
                .execute_batch("SAVEPOINT command")
                .map_err(StoreError::from)
                .and_then(|_| self.apply(command, &ctx));
            match result {
                Ok(output) => {
                    let released = self.conn.execute_batch("RELEASE command");
                    results.push(released.map(|_| output).map_err(StoreError::from));
                }
                Err(error) => {
                    let _ = self
                        .conn
                        .execute_batch("ROLLBACK TO command; RELEASE command");
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
                    // The refusal is audited too, outside the rolled-back savepoint.
                    let detail = error.to_string();
                    if let Err(e) =
                        self.audit_append(&ctx, action, None, Outcome::Failure, Some(&detail))
                    {
                        tracing::error!(error = %e, "could not audit a refused command");
                    }
                    results.push(Err(error));
                }
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.reload();
            let message = format!("commit failed: {e}");
            return results
                .into_iter()
                .map(|_| Err(StoreError::Backend(message.clone())))
                .collect();
        }
        self.published.set(self.audit.seq, self.journal.seq);
        results
    }

    /// A restore's replay: all or nothing (the restore is discarded on any
    /// failure), so no savepoint per command, whose statement journal would
    /// copy every page a group touches; and a large page cache while it runs
    /// (given back when the writer goes idle).
    fn apply_replay(
        &mut self,
        work: Vec<(Command, WriteContext)>,
    ) -> Vec<Result<Output, StoreError>> {
        let count = work.len();
        let fail = |message: String| {
            (0..count)
                .map(|_| Err(StoreError::Backend(message.clone())))
                .collect()
        };
        if !self.bulk_cache {
            if let Err(e) = self.conn.execute_batch(BULK_CACHE) {
                return fail(e.to_string());
            }
            self.bulk_cache = true;
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            return fail(e.to_string());
        }
        let mut results = Vec::with_capacity(count);
        for (command, ctx) in work {
            match self.apply(command, &ctx) {
                Ok(output) => results.push(output),
                Err(error) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.reload();
                    let message = error.to_string();
                    let mut out: Vec<Result<Output, StoreError>> = (0..count)
                        .map(|_| Err(StoreError::Backend(message.clone())))
                        .collect();
                    out[results.len()] = Err(error);
                    return out;
                }
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.reload();
            return fail(format!("commit failed: {e}"));
        }
        self.published.set(self.audit.seq, self.journal.seq);
        results.into_iter().map(Ok).collect()
    }

    fn apply(&mut self, command: Command, ctx: &WriteContext) -> Result<Output, StoreError> {
        match command {
            Command::CreateAccount(new) => self.create_account(new, ctx).map(Output::Account),
            Command::Post {
                drafts,
                idempotency,
            } => self.post(drafts, idempotency, ctx).map(Output::Posted),
            Command::Reverse {
                entry_id,
                date,
                description,
            } => self
                .reverse(entry_id, date, description, ctx)
                .map(Output::Entry),
            Command::Replay(records) => self.replay(records, ctx).map(Output::Replayed),
            Command::ImportAudit(events) => self.import_audit(events).map(Output::AuditImported),
            Command::AddFile(file) => self.add_file(file, ctx).map(Output::File),
            Command::Record(event) => {
                let recorded = WriteContext {
                    actor: event.actor.clone(),
                    at: event.at,
                };
                self.audit_append(
                    &recorded,
                    event.action,
                    event.target.as_deref(),
                    event.outcome,
                    event.detail.as_deref(),
                )?;
                Ok(Output::Recorded)
            }
        }
    }

    fn create_account(
        &mut self,
        new: NewAccount,
        ctx: &WriteContext,
    ) -> Result<Account, StoreError> {
        let at = ts(ctx.at);
        let account = self.insert_account(new, ctx.at, &at)?;
        self.journal_append(ctx, "account_created", &account_created(&account, &at))?;
        self.audit_append(
            ctx,
            Action::AccountCreate,
            Some(&format!("account:{}", account.code)),
            Outcome::Success,
            None,
        )?;
        Ok(account)
    }

    fn add_file(&mut self, file: NewFile, ctx: &WriteContext) -> Result<FileRecord, StoreError> {
        file_records::check(&file)?;
        if let Some(entry) = file.entry_id {
            if !tenant_files::entry_exists(&self.conn, entry)? {
                return Err(StoreError::NotFound("entry"));
            }
        }
        let record = file_records::record(self.next_file_id, file, ctx);
        self.insert_file(&record)?;
        let at = ts(ctx.at);
        self.journal_append(
            ctx,
            file_records::FILE_ADDED,
            &file_records::payload(&record, &at),
        )?;
        let (target, detail) = file_records::audit_fields(&record);
        self.audit_append(
            ctx,
            Action::FileUpload,
            Some(&target),
            Outcome::Success,
            Some(&detail),
        )?;
        Ok(record)
    }

    /// Inserts a file record, which must take the next file id.
    fn insert_file(&mut self, file: &FileRecord) -> Result<(), StoreError> {
        if file.id != self.next_file_id {
            return Err(StoreError::Conflict(format!(
                "file {} would be stored as file {}: the journal skips or repeats files",
                file.id, self.next_file_id
            )));
        }
        tenant_files::insert(&self.conn, file)?;
        self.next_file_id += 1;
        Ok(())
    }

    fn insert_account(
        &mut self,
        new: NewAccount,
        created_at: OffsetDateTime,
        at: &str,
    ) -> Result<Account, StoreError> {
        if self.accounts.contains_key(&new.code) {
            return Err(LedgerError::DuplicateAccountCode(new.code).into());
        }
        new.check_parent(
            new.parent
                .as_deref()
                .and_then(|p| self.accounts.get(p))
                .map(|m| m.account_type),
        )?;
        self.conn
            .prepare_cached(
                "INSERT INTO accounts (code, name, type, parent, currency, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                new.code,
                new.name,
                new.account_type.as_str(),
                new.parent,
                new.currency.map(|c| c.code().to_string()),
                at
            ])?;
        let account = Account {
            id: self.conn.last_insert_rowid(),
            code: new.code,
            name: new.name,
            account_type: new.account_type,
            parent: new.parent,
            currency: new.currency,
            created_at,
        };
        self.accounts.insert(
            account.code.clone(),
            AccountMeta {
                id: account.id,
                account_type: account.account_type,
                currency: account.currency,
            },
        );
        Ok(account)
    }

    fn post(
        &mut self,
        drafts: Vec<EntryDraft>,
        idempotency: Option<Idempotency>,
        ctx: &WriteContext,
    ) -> Result<Posted, StoreError> {
        if let Some(idem) = &idempotency {
            let found: Option<(String, String)> = self
                .conn
                .prepare_cached("SELECT request_hash, entry_ids FROM idempotency WHERE key = ?1")?
                .query_row([&idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((hash, ids)) = found {
                if hash != idem.request_hash {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let mut entries = Vec::new();
                for id in ids.split(',').filter(|s| !s.is_empty()) {
                    let id: i64 = id
                        .parse()
                        .map_err(|_| StoreError::Corrupt("idempotency record".into()))?;
                    entries.push(load_entry(&self.conn, id)?.ok_or(StoreError::NotFound("entry"))?);
                }
                return Ok(Posted {
                    entries,
                    replayed: true,
                });
            }
        }
        if drafts.is_empty() {
            return Err(StoreError::Conflict(
                "a batch holds at least one entry".into(),
            ));
        }
        let accounts = &self.accounts;
        let lookup = |code: &str| {
            accounts.get(code).map(|m| AccountRules {
                currency: m.currency,
            })
        };
        let balanced = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.validate(lookup).map_err(|e| {
                    if drafts.len() > 1 {
                        StoreError::Conflict(format!("entry {i}: {e}"))
                    } else {
                        StoreError::Ledger(e)
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let at = ts(ctx.at);
        let mut balances = DayBalances::new();
        let mut entries = Vec::with_capacity(balanced.len());
        for entry in balanced {
            entries.push(self.insert_entry(
                entry,
                None,
                (&ctx.actor.id, ctx.at),
                &at,
                &mut balances,
            )?);
        }
        self.flush_balances(balances)?;
        if let Some(idem) = &idempotency {
            let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency (key, request_hash, entry_ids, created_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![idem.key, idem.request_hash, ids.join(","), at])?;
        }
        let payload = EntriesPosted {
            entries: entries.iter().map(|e| EntryRecord::new(e, &at)).collect(),
        };
        self.journal_append(ctx, "entries_posted", &to_json(&payload)?)?;
        let target = entries_target(&entries);
        self.audit_append(
            ctx,
            Action::EntryPost,
            Some(&target),
            Outcome::Success,
            None,
        )?;
        Ok(Posted {
            entries,
            replayed: false,
        })
    }

    fn reverse(
        &mut self,
        entry_id: i64,
        date: Date,
        description: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Entry, StoreError> {
        let original = load_entry(&self.conn, entry_id)?.ok_or(StoreError::NotFound("entry"))?;
        if original.reversed_by.is_some() {
            return Err(LedgerError::AlreadyReversed(entry_id.to_string()).into());
        }
        if original.reverses.is_some() {
            return Err(LedgerError::ReversalOfReversal(entry_id.to_string()).into());
        }
        let balanced = BalancedEntry::from_stored(
            original.date,
            original.description.clone(),
            original.reference.clone(),
            original.postings.clone(),
        )?;
        let reversal = balanced.reversal(date, description.as_deref())?;
        let at = ts(ctx.at);
        let mut balances = DayBalances::new();
        let stored = self.insert_entry(
            reversal,
            Some(entry_id),
            (&ctx.actor.id, ctx.at),
            &at,
            &mut balances,
        )?;
        self.flush_balances(balances)?;
        self.conn
            .prepare_cached("UPDATE entries SET reversed_by = ?1 WHERE id = ?2")?
            .execute(params![stored.id, entry_id])?;
        let payload = EntryReversed {
            reverses: entry_id,
            entry: EntryRecord::new(&stored, &at),
        };
        self.journal_append(ctx, "entry_reversed", &to_json(&payload)?)?;
        self.audit_append(
            ctx,
            Action::EntryReverse,
            Some(&format!("entry:{entry_id}")),
            Outcome::Success,
            Some(&format!("reversal entry:{}", stored.id)),
        )?;
        Ok(stored)
    }

    /// Writes journal records a restore replays: each record verbatim (it
    /// must continue this store's chain) with what it holds, under its
    /// recorded ids; one audit event for the lot.
    fn replay(
        &mut self,
        records: Vec<ReplayedRecord>,
        ctx: &WriteContext,
    ) -> Result<i64, StoreError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(StoreError::Conflict(
                "a replay holds at least one record".into(),
            ));
        };
        let target = format!("journal:{}-{}", first.seq, last.seq);
        let mut balances = DayBalances::new();
        for record in records {
            match record.content {
                ReplayedContent::Account {
                    id,
                    account,
                    created_at,
                } => {
                    let code = account.code.clone();
                    let stored = self.insert_account(account, created_at, &ts(created_at))?;
                    if stored.id != id {
                        return Err(StoreError::Conflict(format!(
                            "account {code} would be restored as account {}, not {id}",
                            stored.id
                        )));
                    }
                }
                ReplayedContent::Entries(entries) => {
                    for entry in entries {
                        self.restore_entry(entry, &mut balances)?;
                    }
                }
                ReplayedContent::File(file) => self.insert_file(&file)?,
            }
            self.journal_verbatim(
                record.seq,
                &record.at,
                &record.kind,
                &record.payload,
                &record.hash,
            )?;
        }
        self.flush_balances(balances)?;
        self.audit_append(
            ctx,
            Action::JournalReplay,
            Some(&target),
            Outcome::Success,
            None,
        )?;
        Ok(self.journal.seq)
    }

    fn restore_entry(
        &mut self,
        r: RestoredEntry,
        balances: &mut DayBalances,
    ) -> Result<(), StoreError> {
        if r.id != self.next_entry_id {
            return Err(StoreError::Conflict(format!(
                "restored entry {} would be stored as entry {}: the journal skips or repeats entries",
                r.id, self.next_entry_id
            )));
        }
        let accounts = &self.accounts;
        let balanced = r
            .draft
            .validate(|code: &str| {
                accounts.get(code).map(|m| AccountRules {
                    currency: m.currency,
                })
            })
            .map_err(|e| StoreError::Conflict(format!("restored entry {}: {e}", r.id)))?;
        if let Some(original) = r.reverses {
            let found: Option<(Option<i64>, Option<i64>)> = self
                .conn
                .prepare_cached("SELECT reverses, reversed_by FROM entries WHERE id = ?1")?
                .query_row([original], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match found {
                None => return Err(StoreError::NotFound("entry")),
                Some((_, Some(_))) => {
                    return Err(LedgerError::AlreadyReversed(original.to_string()).into())
                }
                Some((Some(_), None)) => {
                    return Err(LedgerError::ReversalOfReversal(original.to_string()).into())
                }
                Some((None, None)) => {}
            }
        }
        let at = ts(r.created_at);
        let stored = self.insert_entry(
            balanced,
            r.reverses,
            (&r.created_by, r.created_at),
            &at,
            balances,
        )?;
        if let Some(original) = r.reverses {
            self.conn
                .prepare_cached("UPDATE entries SET reversed_by = ?1 WHERE id = ?2")?
                .execute(params![stored.id, original])?;
        }
        Ok(())
    }

    /// Inserts the entry and its postings; balance movements accumulate in
    /// `balances` and are written once per command by `flush_balances`.
    fn insert_entry(
        &mut self,
        entry: BalancedEntry,
        reverses: Option<i64>,
        author: (&str, OffsetDateTime),
        at: &str,
        balances: &mut DayBalances,
    ) -> Result<Entry, StoreError> {
        let (created_by, created_at) = author;
        let id = self.next_entry_id;
        let (date, description, reference, postings) = entry.into_parts();
        let day_text = day(date);
        self.conn
            .prepare_cached(
                "INSERT INTO entries (id, date, description, reference, reverses, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![id, day_text, description, reference, reverses, at, created_by])?;
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO postings (entry_id, line, account_id, currency, amount, date)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (line, posting) in postings.iter().enumerate() {
            let meta =
                self.accounts
                    .get(&posting.account)
                    .ok_or_else(|| LedgerError::UnknownAccount {
                        index: line,
                        code: posting.account.clone(),
                    })?;
            insert.execute(params![
                id,
                line as i64,
                meta.id,
                posting.currency.code(),
                posting.amount,
                day_text
            ])?;
            let sum = balances
                .entry((meta.id, posting.currency, date))
                .or_default();
            *sum = sum
                .checked_add(posting.amount)
                .ok_or(LedgerError::Overflow)?;
        }
        self.next_entry_id += 1;
        Ok(Entry {
            id,
            date,
            description,
            reference,
            postings,
            reverses,
            reversed_by: None,
            created_at,
            created_by: created_by.to_string(),
        })
    }

    fn flush_balances(&mut self, balances: DayBalances) -> Result<(), StoreError> {
        let mut upsert = self.conn.prepare_cached(
            "INSERT INTO day_balances (account_id, currency, day, amount) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (account_id, currency, day) DO UPDATE SET amount = amount + excluded.amount",
        )?;
        for ((account_id, currency, date), amount) in balances {
            if amount != 0 {
                upsert.execute(params![account_id, currency.code(), day(date), amount])?;
            }
        }
        Ok(())
    }

    fn journal_append(
        &mut self,
        ctx: &WriteContext,
        kind: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        let seq = self.journal.seq + 1;
        let at = ts(ctx.at);
        let hash = chain::link(&self.journal.hash, seq, &[&at, kind, payload]);
        self.conn
            .prepare_cached(
                "INSERT INTO change_journal (seq, at, kind, payload, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![seq, at, kind, payload, self.journal.hash, hash])?;
        self.journal = Head { seq, hash };
        Ok(())
    }

    /// Copies audit events verbatim: each must continue this store's chain.
    fn import_audit(&mut self, events: Vec<StoredAuditEvent>) -> Result<i64, StoreError> {
        for event in events {
            if event.company_id.as_deref() != Some(self.company_id.as_str()) {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} belongs to another company",
                    event.seq
                )));
            }
            if event.seq != self.audit.seq + 1 || event.prev_hash != self.audit.hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not follow event {}",
                    event.seq, self.audit.seq
                )));
            }
            if event.fields().hash(&self.audit.hash, event.seq) != event.hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not carry the hash of its content and chain",
                    event.seq
                )));
            }
            self.conn
                .prepare_cached(
                    "INSERT INTO audit_events
                       (seq, at, actor, auth, client, request_id, action, target, outcome, detail, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    event.seq,
                    event.at,
                    event.actor,
                    event.auth,
                    event.client,
                    event.request_id,
                    event.action,
                    event.target,
                    event.outcome,
                    event.detail,
                    event.prev_hash,
                    event.hash
                ])?;
            self.audit = Head {
                seq: event.seq,
                hash: event.hash,
            };
        }
        Ok(self.audit.seq)
    }

    /// Appends a record replayed from another journal, unchanged: it must be
    /// the next in this chain and carry the hash its content gives.
    fn journal_verbatim(
        &mut self,
        seq: i64,
        at: &str,
        kind: &str,
        payload: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        if seq != self.journal.seq + 1 {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {seq} does not follow record {}",
                self.journal.seq
            )));
        }
        if chain::link(&self.journal.hash, seq, &[at, kind, payload]) != hash {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {seq} does not carry the hash of its content and chain"
            )));
        }
        self.conn
            .prepare_cached(
                "INSERT INTO change_journal (seq, at, kind, payload, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![seq, at, kind, payload, self.journal.hash, hash])?;
        self.journal = Head {
            seq,
            hash: hash.to_string(),
        };
        Ok(())
    }

    fn audit_append(
        &mut self,
        ctx: &WriteContext,
        action: Action,
        target: Option<&str>,
        outcome: Outcome,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        if !self.audit_enabled {
            return Ok(());
        }
        let seq = self.audit.seq + 1;
        let actor = &ctx.actor;
        let fields = AuditFields {
            at: ts(ctx.at),
            actor: actor.id.clone(),
            auth: actor.auth.clone(),
            client: actor.client.clone().unwrap_or_default(),
            request_id: actor.request_id.clone().unwrap_or_default(),
            company_id: self.company_id.clone(),
            action: action.into(),
            target: target.unwrap_or_default().to_string(),
            outcome: outcome.as_str().to_string(),
            detail: detail.unwrap_or_default().to_string(),
        };
        let hash = fields.hash(&self.audit.hash, seq);
        let unavailable = |e: rusqlite::Error| StoreError::AuditUnavailable(e.to_string());
        self.conn
            .prepare_cached(
                "INSERT INTO audit_events
                   (seq, at, actor, auth, client, request_id, action, target, outcome, detail, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(unavailable)?
            .execute(params![
                seq,
                fields.at,
                actor.id,
                actor.auth,
                actor.client,
                actor.request_id,
                action.as_str(),
                target,
                fields.outcome,
                detail,
                self.audit.hash,
                hash
            ])
            .map_err(unavailable)?;
        self.audit = Head { seq, hash };
        Ok(())
    }
}

/// The change-journal payload of a new account (the same on every backend).
pub(crate) fn account_created(account: &Account, at: &str) -> String {
    json!({
        "id": account.id, "code": account.code, "name": account.name,
        "type": account.account_type.as_str(), "parent": account.parent,
        "currency": account.currency.map(|c| c.code().to_string()), "created_at": at,
    })
    .to_string()
}

/// The audit target of a group of entries: `entry:7` or `entries:7-12`.
pub(crate) fn entries_target(entries: &[Entry]) -> String {
    match (entries.first(), entries.last()) {
        (Some(f), Some(l)) if f.id == l.id => format!("entry:{}", f.id),
        (Some(f), Some(l)) => format!("entries:{}-{}", f.id, l.id),
        _ => "entries:none".into(),
    }
}

/// Balance movements of one command, per account, currency and day.
type DayBalances = BTreeMap<(i64, Currency, Date), i64>;

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("encoding a journal record: {e}")))
}

/// Change-journal payloads: everything needed to replay the change.
#[derive(serde::Serialize)]
pub(crate) struct EntriesPosted<'a> {
    pub(crate) entries: Vec<EntryRecord<'a>>,
}

#[derive(serde::Serialize)]
pub(crate) struct EntryReversed<'a> {
    pub(crate) reverses: i64,
    pub(crate) entry: EntryRecord<'a>,
}

#[derive(serde::Serialize)]
pub(crate) struct EntryRecord<'a> {
    id: i64,
    date: String,
    description: &'a str,
    reference: Option<&'a str>,
    reverses: Option<i64>,
    created_at: &'a str,
    created_by: &'a str,
    postings: Vec<PostingRecord<'a>>,
}

#[derive(serde::Serialize)]
pub(crate) struct PostingRecord<'a> {
    account: &'a str,
    amount: String,
    currency: &'a str,
}

impl<'a> EntryRecord<'a> {
    pub(crate) fn new(entry: &'a Entry, created_at: &'a str) -> EntryRecord<'a> {
        EntryRecord {
            id: entry.id,
            date: day(entry.date),
            description: &entry.description,
            reference: entry.reference.as_deref(),
            reverses: entry.reverses,
            created_at,
            created_by: &entry.created_by,
            postings: entry
                .postings
                .iter()
                .map(|p| PostingRecord {
                    account: &p.account,
                    amount: p.currency.format(i128::from(p.amount)),
                    currency: p.currency.code(),
                })
                .collect(),
        }
    }
}
