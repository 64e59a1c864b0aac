//! The single writer of one company database, with group commit.
//!
//! Requests queue on a channel; the writer takes whatever is waiting (up to
//! `MAX_BATCH_COMMANDS`), applies each in its own SAVEPOINT so one bad request
//! fails alone, and commits them all with one fsync. Every command writes its
//! change-journal record and audit record inside the same transaction.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};
use time::{Date, OffsetDateTime};
use tokio::sync::mpsc;
use wb_core::{AccountType, BalancedEntry, Currency, LedgerError};

use super::conn::{day, ts};
use super::tenant::row_to_account;
use super::tenant_files;
use crate::chain;
use crate::model::*;
use crate::writer_jobs::{Command, Job, Output};
use crate::StoreError;
use std::sync::Arc;
use wb_core::audit::AuditFields;

mod commands;
mod purge;
pub(crate) mod rekey;
mod replay;

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
    /// True while a restore replays a purge's baseline (from its anchor up
    /// to the first record of another kind): kept attachment records may
    /// skip the ids of purged ones, as `entries_kept` records may.
    baseline: bool,
    /// The last committed audit sequence, for the forwarder to poll cheaply.
    published: Arc<Published>,
    /// False only in benchmarks that measure the cost of auditing.
    audit_enabled: bool,
    /// True while the page cache is enlarged for a restore's replay.
    bulk_cache: bool,
    /// A re-key could not reopen the database: the writer stops, and the
    /// store is opened afresh on its next use.
    broken: bool,
}

pub(crate) fn spawn(
    conn: Connection,
    company_id: &str,
    path: std::path::PathBuf,
    published: Arc<Published>,
    audit_enabled: bool,
) -> Result<(mpsc::Sender<Job>, mpsc::Sender<rekey::RekeyJob>), StoreError> {
    let mut state = WriterState::load(conn, company_id, published)?;
    state.audit_enabled = audit_enabled;
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    // One re-key at a time; a second waits for the first.
    let (rekey_tx, rekey_rx) = mpsc::channel(1);
    tokio::spawn(run(rx, rekey_rx, path, state));
    Ok((tx, rekey_tx))
}

/// After this long without work, the writer releases its page and statement
/// caches, so a thousand idle companies do not hold a thousand warm caches.
pub(crate) const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

enum Next {
    Job(Box<Job>),
    Rekey(rekey::RekeyJob),
}

async fn receive(
    rx: &mut mpsc::Receiver<Job>,
    rekeys: &mut mpsc::Receiver<rekey::RekeyJob>,
) -> Option<Next> {
    tokio::select! {
        biased;
        Some(job) = rekeys.recv() => Some(Next::Rekey(job)),
        job = rx.recv() => job.map(|j| Next::Job(Box::new(j))),
    }
}

async fn next_job(
    rx: &mut mpsc::Receiver<Job>,
    rekeys: &mut mpsc::Receiver<rekey::RekeyJob>,
    state: &mut Option<WriterState>,
) -> Option<Next> {
    match tokio::time::timeout(IDLE_RELEASE, receive(rx, rekeys)).await {
        Ok(next) => next,
        Err(_) => {
            if let Some(mut idle) = state.take() {
                *state = tokio::task::spawn_blocking(move || {
                    idle.release_memory();
                    idle
                })
                .await
                .ok();
            }
            receive(rx, rekeys).await
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    mut rekeys: mpsc::Receiver<rekey::RekeyJob>,
    path: std::path::PathBuf,
    state: WriterState,
) {
    let mut slot = Some(state);
    while let Some(next) = next_job(&mut rx, &mut rekeys, &mut slot).await {
        let first = match next {
            Next::Job(job) => *job,
            Next::Rekey(job) => {
                let Some(mut state) = slot.take() else {
                    let _ = job.reply.send(Err(StoreError::WriterStopped));
                    return;
                };
                let path = path.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    let result = state.rekey(&path, &job, &mut rx);
                    (state, rx, job, result)
                })
                .await;
                match outcome {
                    Ok((returned, back, job, result)) => {
                        let broken = returned.broken;
                        slot = Some(returned);
                        rx = back;
                        let _ = job.reply.send(result);
                        if broken {
                            tracing::error!("a company database could not be reopened after its re-key; stopping its writer");
                            return;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "company writer panicked while re-keying; stopping it");
                        return;
                    }
                }
            }
        };
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
            baseline: false,
            published,
            audit_enabled: true,
            bulk_cache: false,
            broken: false,
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
            let baseline = self.baseline;
            // A replay may have cached accounts (or, past a purge's anchor,
            // dropped them) that the rollback below takes back.
            let caches_accounts = matches!(command, Command::Replay(_) | Command::CreateAccount(_));
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
                    if caches_accounts {
                        self.reload();
                    }
                    self.baseline = baseline;
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
        let baseline = self.baseline;
        let mut results = Vec::with_capacity(count);
        for (command, ctx) in work {
            match self.apply(command, &ctx) {
                Ok(output) => results.push(output),
                Err(error) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.reload();
                    self.baseline = baseline;
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
            self.baseline = baseline;
            return fail(format!("commit failed: {e}"));
        }
        self.published.set(self.audit.seq, self.journal.seq);
        results.into_iter().map(Ok).collect()
    }

    fn apply(&mut self, command: Command, ctx: &WriteContext) -> Result<Output, StoreError> {
        if !matches!(
            command,
            Command::Replay(_) | Command::ImportAudit(_) | Command::Record(_)
        ) {
            // A change of the books ends any replayed baseline.
            self.baseline = false;
        }
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
            Command::Purge(plan) => self
                .purge(plan, ctx)
                .map(|report| Output::Purged(Box::new(report))),
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
