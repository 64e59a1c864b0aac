//! The writer of one company database on PostgreSQL, with group commit.
//!
//! Requests queue on a channel; the writer takes whatever is waiting, locks the
//! company's `heads` row (writers on other nodes wait there), plans every
//! command in memory (validation, ids, journal and audit records chained from
//! the heads), and writes the whole plan with a handful of multi-row
//! statements in one transaction. A command that fails validation fails alone
//! and is audited as a refusal in the same transaction. Should the database
//! refuse the plan (a balance overflowing, say), each command is retried alone,
//! so exactly the offending one fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use time::Date;
use tokio::sync::mpsc;
use wb_core::audit::AuditFields;
use wb_core::{AccountType, Currency, LedgerError};

use super::pool::{PgConn, PgPool};
use super::tenant::{load_entries, row_to_account};
use super::tenant_files;
use crate::migrations::{self, Database};
use crate::model::*;
use crate::writer_jobs::{Command, Job, Output};
use crate::StoreError;

mod plan;
mod purge;
mod write;

use plan::Planner;
use write::write;

const MAX_BATCH_COMMANDS: usize = 256;
const QUEUE_DEPTH: usize = 4096;

#[derive(Clone, Copy)]
struct AccountMeta {
    id: i64,
    account_type: AccountType,
    currency: Option<Currency>,
}

#[derive(Clone)]
struct Heads {
    journal_seq: i64,
    journal_hash: String,
    audit_seq: i64,
    audit_hash: String,
    next_entry_id: i64,
    next_account_id: i64,
    /// Not kept in `heads`: read from `files` when a batch records files.
    next_file_id: i64,
    /// Not kept in `heads` either: true while a restore replays a purge's
    /// baseline (`crate::purge::continues_baseline`), where kept attachment
    /// records may skip the ids of purged ones.
    baseline: bool,
}

/// Rows one command adds; merged into the batch only when the command succeeds.
#[derive(Default)]
struct Writes {
    accounts: Vec<Account>,
    entries: Vec<Entry>,
    created_at: Vec<String>,
    balances: BTreeMap<(i64, Currency, Date), i64>,
    reversed: Vec<(i64, i64)>,
    idempotency: Vec<(String, String, String, String)>,
    files: Vec<FileRecord>,
    journal: Vec<[String; 4]>,
    journal_seq: Vec<i64>,
    journal_prev: Vec<String>,
    audit: Vec<AuditRow>,
    /// A replayed purge anchor: the ledger tables are emptied before the
    /// rows above (which hold only what came after the anchor) are written.
    wipe: bool,
}

struct AuditRow {
    seq: i64,
    fields: AuditFields,
    actor: Actor,
    target: Option<String>,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

impl Writes {
    /// Forgets the ledger rows planned so far (audit rows stay): a replayed
    /// purge anchor empties the tables they were bound for.
    fn wipe_tables(&mut self) {
        let audit = std::mem::take(&mut self.audit);
        *self = Writes {
            audit,
            wipe: true,
            ..Writes::default()
        };
    }

    fn merge(&mut self, other: Writes) -> Result<(), StoreError> {
        if other.wipe {
            self.wipe_tables();
        }
        self.accounts.extend(other.accounts);
        self.entries.extend(other.entries);
        self.created_at.extend(other.created_at);
        for (key, amount) in other.balances {
            let sum = self.balances.entry(key).or_default();
            *sum = sum.checked_add(amount).ok_or(LedgerError::Overflow)?;
        }
        self.reversed.extend(other.reversed);
        self.idempotency.extend(other.idempotency);
        self.files.extend(other.files);
        self.journal.extend(other.journal);
        self.journal_seq.extend(other.journal_seq);
        self.journal_prev.extend(other.journal_prev);
        self.audit.extend(other.audit);
        Ok(())
    }
}

/// What the batch's planning needs from the database, read once.
#[derive(Default)]
struct Preloaded {
    idempotency: HashMap<String, (String, String)>,
    entries: HashMap<i64, Entry>,
    /// Which of the entries files of this batch link to exist.
    existing_entries: HashSet<i64>,
}

pub(crate) struct Writer {
    pool: PgPool,
    company_id: String,
    accounts: HashMap<String, AccountMeta>,
    /// The journal head this writer last committed or saw; another value in
    /// `heads` means another node wrote, and cached accounts are reloaded.
    seen_journal_seq: i64,
    published: Arc<Published>,
    audit_enabled: bool,
    /// `Heads::baseline` as the last committed batch left it.
    baseline: bool,
}

pub(crate) async fn spawn(
    pool: PgPool,
    company_id: &str,
    published: Arc<Published>,
    audit_enabled: bool,
) -> Result<mpsc::Sender<Job>, StoreError> {
    let mut writer = Writer {
        pool,
        company_id: company_id.to_string(),
        accounts: HashMap::new(),
        seen_journal_seq: -1,
        published,
        audit_enabled,
        baseline: false,
    };
    {
        let mut conn = writer.pool.get().await?;
        migrations::postgres::migrate(&conn, Database::Tenant, migrations::POSTGRES_TENANT).await?;
        let heads = read_heads(&mut conn, false).await?;
        writer.reload_accounts(&mut conn).await?;
        writer.seen_journal_seq = heads.journal_seq;
        writer.published.set(heads.audit_seq, heads.journal_seq);
    }
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    tokio::spawn(run(rx, writer));
    Ok(tx)
}

async fn run(mut rx: mpsc::Receiver<Job>, mut writer: Writer) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Requests sharing an Idempotency-Key go in separate groups, in
        // arrival order: the first posts, the others find its record once
        // that group has committed and answer with it (as a retry would).
        while !jobs.is_empty() {
            let (group, later) = next_group(jobs);
            jobs = later;
            let (replies, work): (Vec<_>, Vec<_>) = group
                .into_iter()
                .map(|j| (j.reply, (j.command, j.ctx)))
                .unzip();
            let results = writer.apply_batch(work).await;
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
    }
}

/// Whether a command must be written alone: a purge (carried out outside
/// the planner) and a replay holding a purge's anchor (which empties the
/// tables under whatever the batch planned before it).
fn runs_alone(command: &Command) -> bool {
    match command {
        Command::Purge(_) => true,
        Command::Replay(records) => records
            .iter()
            .any(|r| matches!(r.content, ReplayedContent::Purged { .. })),
        _ => false,
    }
}

/// The next group to commit, and the jobs after it, in arrival order: a job
/// that runs alone is a group of its own (jobs after it wait for it, so
/// changes queued in order are applied in order).
fn next_group(mut jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    match jobs.iter().position(|j| runs_alone(&j.command)) {
        Some(0) => {
            let later = jobs.split_off(1);
            (jobs, later)
        }
        Some(at) => {
            let tail = jobs.split_off(at);
            let (group, mut later) = split_repeated_keys(jobs);
            later.extend(tail);
            (group, later)
        }
        None => split_repeated_keys(jobs),
    }
}

/// The jobs that can share one group commit, and those (later posts under an
/// Idempotency-Key already in the group) that must wait for the next.
fn split_repeated_keys(jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
    let mut keys = HashSet::new();
    let (mut group, mut later) = (Vec::new(), Vec::new());
    for job in jobs {
        let repeated = match &job.command {
            Command::Post {
                idempotency: Some(idem),
                ..
            } => !keys.insert(idem.key.clone()),
            _ => false,
        };
        if repeated {
            later.push(job);
        } else {
            group.push(job);
        }
    }
    (group, later)
}

const HEADS_SQL: &str = "SELECT journal_seq, journal_hash, audit_seq, audit_hash, next_entry_id, next_account_id, moved FROM heads WHERE id = 1";
const HEADS_LOCK_SQL: &str = "SELECT journal_seq, journal_hash, audit_seq, audit_hash, next_entry_id, next_account_id, moved FROM heads WHERE id = 1 FOR UPDATE";

async fn read_heads(conn: &mut PgConn, lock: bool) -> Result<Heads, StoreError> {
    let statement = conn
        .prepare_cached(if lock { HEADS_LOCK_SQL } else { HEADS_SQL })
        .await?;
    let row = conn
        .query_opt(&statement, &[])
        .await?
        .ok_or_else(|| StoreError::Corrupt("the company database has no heads row".into()))?;
    if row.try_get::<_, bool>(6)? {
        return Err(StoreError::Moved);
    }
    Ok(Heads {
        journal_seq: row.try_get(0)?,
        journal_hash: row.try_get(1)?,
        audit_seq: row.try_get(2)?,
        audit_hash: row.try_get(3)?,
        next_entry_id: row.try_get(4)?,
        next_account_id: row.try_get(5)?,
        next_file_id: 0,
        baseline: false,
    })
}

/// Which statement of a plan failed: a failed audit insert means the trail is unavailable.
enum WriteFailure {
    Audit(StoreError),
    Other(StoreError),
}

impl WriteFailure {
    fn into_error(self) -> StoreError {
        match self {
            WriteFailure::Audit(e) => StoreError::AuditUnavailable(e.to_string()),
            WriteFailure::Other(e) => e,
        }
    }
}

impl Writer {
    async fn reload_accounts(&mut self, conn: &mut PgConn) -> Result<(), StoreError> {
        const SQL: &str = "SELECT id, code, name, type, parent, currency, created_at FROM accounts";
        let statement = conn.prepare_cached(SQL).await?;
        let mut accounts = HashMap::new();
        for row in conn.query(&statement, &[]).await? {
            let a = row_to_account(&row)?;
            accounts.insert(
                a.code.clone(),
                AccountMeta {
                    id: a.id,
                    account_type: a.account_type,
                    currency: a.currency,
                },
            );
        }
        self.accounts = accounts;
        Ok(())
    }

    async fn apply_batch(
        &mut self,
        mut work: Vec<(Command, WriteContext)>,
    ) -> Vec<Result<Output, StoreError>> {
        if let [(Command::Purge(_), _)] = work.as_slice() {
            if let Some((Command::Purge(plan), ctx)) = work.pop() {
                return vec![self.purge(plan, ctx).await];
            }
        }
        let count = work.len();
        match self.try_batch(work).await {
            Ok(results) => results,
            Err((error, Some(work))) if count > 1 => {
                // The database refused the plan as a whole: one command at a time.
                tracing::debug!(error = %error, "group write refused; retrying one by one");
                let mut results = Vec::with_capacity(work.len());
                for one in work {
                    results.push(self.apply_one(one).await);
                }
                results
            }
            Err((error, Some(mut work))) => match work.pop() {
                Some((command, ctx)) => vec![self.refused(error, command.action(), ctx).await],
                None => Vec::new(),
            },
            Err((error, None)) => {
                let message = error.to_string();
                (0..count)
                    .map(|_| {
                        Err(match &error {
                            StoreError::AuditUnavailable(_) => {
                                StoreError::AuditUnavailable(message.clone())
                            }
                            StoreError::Ledger(LedgerError::Overflow) => {
                                StoreError::Ledger(LedgerError::Overflow)
                            }
                            StoreError::Moved => StoreError::Moved,
                            // Nothing was written: the caller may look for
                            // the company elsewhere and send it again.
                            StoreError::Connect(_) => StoreError::Connect(message.clone()),
                            _ => StoreError::Backend(message.clone()),
                        })
                    })
                    .collect()
            }
        }
    }

    async fn apply_one(&mut self, one: (Command, WriteContext)) -> Result<Output, StoreError> {
        match self.try_batch(vec![one]).await {
            Ok(mut results) => results.pop().unwrap_or(Err(StoreError::WriterStopped)),
            Err((error, Some(mut work))) => match work.pop() {
                Some((command, ctx)) => self.refused(error, command.action(), ctx).await,
                None => Err(error),
            },
            Err((error, None)) => Err(error),
        }
    }

    /// A command the database refused (a balance overflowing, say) is audited
    /// as a refusal, as validation failures are, in its own transaction.
    async fn refused(
        &mut self,
        error: StoreError,
        action: Action,
        ctx: WriteContext,
    ) -> Result<Output, StoreError> {
        if !matches!(error, StoreError::AuditUnavailable(_)) {
            let event = AuditEvent {
                at: ctx.at,
                actor: ctx.actor.clone(),
                company_id: Some(self.company_id.clone()),
                action,
                target: None,
                outcome: Outcome::Failure,
                detail: Some(error.to_string()),
            };
            if let Err((e, _)) = self.try_batch(vec![(Command::Record(event), ctx)]).await {
                tracing::error!(error = %e, "could not audit a refused command");
            }
        }
        Err(error)
    }

    /// Plans and writes one batch. When the database refuses the writes, the
    /// work comes back so it can be retried command by command.
    #[allow(clippy::type_complexity)]
    async fn try_batch(
        &mut self,
        work: Vec<(Command, WriteContext)>,
    ) -> Result<Vec<Result<Output, StoreError>>, (StoreError, Option<Vec<(Command, WriteContext)>>)>
    {
        let mut conn = self.pool.get().await.map_err(|e| (e, None))?;
        if let Err(e) = conn.batch_execute("BEGIN").await {
            conn.discard();
            return Err((e.into(), None));
        }
        let prepared = self.prepare(&mut conn, &work).await;
        let (heads, preloaded) = match prepared {
            Ok(p) => p,
            Err(e) => {
                conn.discard();
                return Err((e, None));
            }
        };
        let mut plan = Planner {
            heads: heads.clone(),
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
        let mut writes = Writes::default();
        let mut stale_accounts = false;
        let mut results = Vec::with_capacity(work.len());
        for (command, ctx) in &work {
            let action = command.action();
            let before = plan.heads.clone();
            let outcome = plan.apply(command, ctx).and_then(|(output, w)| {
                let posted: Vec<Entry> = w.entries.clone();
                writes.merge(w)?;
                // Later commands of this batch see these entries (to reverse them).
                plan.planned.extend(posted.into_iter().map(|e| (e.id, e)));
                Ok(output)
            });
            match outcome {
                Ok(output) => results.push(Ok(output)),
                Err(error) => {
                    plan.heads = before;
                    stale_accounts |= matches!(command, Command::Replay(_));
                    let detail = error.to_string();
                    let mut refusal = Writes::default();
                    plan.audit(
                        &mut refusal,
                        ctx,
                        action,
                        None,
                        Outcome::Failure,
                        Some(&detail),
                    );
                    let _ = writes.merge(refusal);
                    results.push(Err(error));
                }
            }
        }
        let new_accounts = plan.new_accounts;
        let heads_after = plan.heads;
        match write(&mut conn, &writes, &heads_after).await {
            Ok(()) => {}
            Err(failure) => {
                let _ = conn.batch_execute("ROLLBACK").await;
                let error = failure.into_error();
                return Err((error, Some(work)));
            }
        }
        if let Err(e) = conn.batch_execute("COMMIT").await {
            conn.discard();
            return Err((StoreError::Backend(format!("commit failed: {e}")), None));
        }
        if writes.wipe {
            self.accounts.clear();
        }
        for (code, meta) in new_accounts {
            self.accounts.insert(code, meta);
        }
        self.baseline = heads_after.baseline;
        // A refused replay may have planned accounts (kept in `new_accounts`)
        // that were never written, or emptied them at a replayed anchor: the
        // next batch reads them back.
        self.seen_journal_seq = if stale_accounts {
            -1
        } else {
            heads_after.journal_seq
        };
        self.published
            .set(heads_after.audit_seq, heads_after.journal_seq);
        Ok(results)
    }

    /// Locks the heads and reads what planning needs.
    async fn prepare(
        &mut self,
        conn: &mut PgConn,
        work: &[(Command, WriteContext)],
    ) -> Result<(Heads, Preloaded), StoreError> {
        let mut heads = read_heads(conn, true).await?;
        if heads.journal_seq != self.seen_journal_seq {
            self.reload_accounts(conn).await?;
            self.seen_journal_seq = heads.journal_seq;
            // Written elsewhere (or refused here) since: no baseline goes on.
            self.baseline = false;
        }
        heads.baseline = self.baseline;
        let mut preloaded = Preloaded::default();
        let keys: Vec<String> = work
            .iter()
            .filter_map(|(c, _)| match c {
                Command::Post {
                    idempotency: Some(i),
                    ..
                } => Some(i.key.clone()),
                _ => None,
            })
            .collect();
        let mut entry_ids: Vec<i64> = work
            .iter()
            .filter_map(|(c, _)| match c {
                Command::Reverse { entry_id, .. } => Some(vec![*entry_id]),
                Command::Replay(records) => Some(
                    records
                        .iter()
                        .filter_map(|r| match &r.content {
                            ReplayedContent::Entries(entries)
                            | ReplayedContent::KeptEntries(entries) => Some(entries),
                            ReplayedContent::Account { .. }
                            | ReplayedContent::File(_)
                            | ReplayedContent::Purged { .. } => None,
                        })
                        .flatten()
                        .filter_map(|e| e.reverses)
                        .collect(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        if !keys.is_empty() {
            const SQL: &str =
                "SELECT key, request_hash, entry_ids FROM idempotency WHERE key = ANY($1)";
            let statement = conn.prepare_cached(SQL).await?;
            for row in conn.query(&statement, &[&keys]).await? {
                let key: String = row.try_get(0)?;
                let ids: String = row.try_get(2)?;
                for id in ids.split(',').filter(|s| !s.is_empty()) {
                    entry_ids.push(
                        id.parse()
                            .map_err(|_| StoreError::Corrupt("idempotency record".into()))?,
                    );
                }
                preloaded.idempotency.insert(key, (row.try_get(1)?, ids));
            }
        }
        if !entry_ids.is_empty() {
            for entry in load_entries(conn, &entry_ids).await? {
                preloaded.entries.insert(entry.id, entry);
            }
        }
        self.prepare_files(conn, work, &mut heads, &mut preloaded)
            .await?;
        Ok((heads, preloaded))
    }

    /// The next file id and which linked entries exist, when the batch records files.
    async fn prepare_files(
        &mut self,
        conn: &mut PgConn,
        work: &[(Command, WriteContext)],
        heads: &mut Heads,
        preloaded: &mut Preloaded,
    ) -> Result<(), StoreError> {
        let records_files = work.iter().any(|(c, _)| match c {
            Command::AddFile(_) => true,
            Command::Replay(records) => records
                .iter()
                .any(|r| matches!(r.content, ReplayedContent::File(_))),
            _ => false,
        });
        if !records_files {
            return Ok(());
        }
        let statement = conn.prepare_cached(tenant_files::NEXT_ID).await?;
        heads.next_file_id = conn.query_one(&statement, &[]).await?.try_get(0)?;
        let linked: Vec<i64> = work
            .iter()
            .filter_map(|(c, _)| match c {
                Command::AddFile(file) => file.entry_id,
                _ => None,
            })
            .collect();
        if !linked.is_empty() {
            let statement = conn.prepare_cached(tenant_files::EXISTING_ENTRIES).await?;
            for row in conn.query(&statement, &[&linked]).await? {
                preloaded.existing_entries.insert(row.try_get(0)?);
            }
        }
        Ok(())
    }
}
