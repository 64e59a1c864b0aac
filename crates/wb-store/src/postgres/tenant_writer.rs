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

use time::{Date, OffsetDateTime};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use wb_core::audit::AuditFields;
use wb_core::ledger::AccountRules;
use wb_core::{AccountType, BalancedEntry, Currency, EntryDraft, LedgerError, NewAccount};

use super::pool::{PgConn, PgPool};
use super::tenant::{load_entries, row_to_account};
use super::{tenant_files, tenant_schema};
use crate::chain;
use crate::file_records;
use crate::model::*;
use crate::sqlite::conn::{day, ts};
use crate::sqlite::tenant_writer::{
    account_created, entries_target, to_json, EntriesPosted, EntryRecord, EntryReversed,
};
use crate::writer_jobs::{Command, Job, Output};
use crate::StoreError;

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
    fn merge(&mut self, other: Writes) -> Result<(), StoreError> {
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
    };
    {
        let mut conn = writer.pool.get().await?;
        tenant_schema::migrate(&conn).await?;
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
        let (replies, work): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| (j.reply, (j.command, j.ctx)))
            .unzip();
        let results = writer.apply_batch(work).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
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
        work: Vec<(Command, WriteContext)>,
    ) -> Vec<Result<Output, StoreError>> {
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
        };
        let mut writes = Writes::default();
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
        for (code, meta) in new_accounts {
            self.accounts.insert(code, meta);
        }
        self.seen_journal_seq = heads_after.journal_seq;
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
        }
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
                            ReplayedContent::Entries(entries) => Some(entries),
                            ReplayedContent::Account { .. } | ReplayedContent::File(_) => None,
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

/// Plans a batch in memory: pure, except for what was preloaded.
struct Planner<'a> {
    heads: Heads,
    accounts: &'a HashMap<String, AccountMeta>,
    new_accounts: HashMap<String, AccountMeta>,
    preloaded: &'a Preloaded,
    /// Entries posted by earlier commands of this batch.
    planned: HashMap<i64, Entry>,
    used_keys: HashSet<String>,
    reversed: HashSet<i64>,
    company_id: &'a str,
    audit_enabled: bool,
}

impl Planner<'_> {
    fn account(&self, code: &str) -> Option<&AccountMeta> {
        self.new_accounts
            .get(code)
            .or_else(|| self.accounts.get(code))
    }

    fn apply(
        &mut self,
        command: &Command,
        ctx: &WriteContext,
    ) -> Result<(Output, Writes), StoreError> {
        let mut w = Writes::default();
        let output = match command {
            Command::CreateAccount(new) => {
                Output::Account(self.create_account(new.clone(), ctx, &mut w)?)
            }
            Command::Post {
                drafts,
                idempotency,
            } => Output::Posted(self.post(drafts, idempotency.as_ref(), ctx, &mut w)?),
            Command::Reverse {
                entry_id,
                date,
                description,
            } => Output::Entry(self.reverse(*entry_id, *date, description.clone(), ctx, &mut w)?),
            Command::Replay(records) => Output::Replayed(self.replay(records, ctx, &mut w)?),
            Command::ImportAudit(events) => {
                Output::AuditImported(self.import_audit(events, &mut w)?)
            }
            Command::AddFile(file) => Output::File(self.add_file(file.clone(), ctx, &mut w)?),
            Command::Record(event) => {
                let recorded = WriteContext {
                    actor: event.actor.clone(),
                    at: event.at,
                };
                self.audit(
                    &mut w,
                    &recorded,
                    event.action,
                    event.target.as_deref(),
                    event.outcome,
                    event.detail.as_deref(),
                );
                Output::Recorded
            }
        };
        Ok((output, w))
    }

    fn add_file(
        &mut self,
        file: NewFile,
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<FileRecord, StoreError> {
        file_records::check(&file)?;
        if let Some(entry) = file.entry_id {
            if !self.preloaded.existing_entries.contains(&entry)
                && !self.planned.contains_key(&entry)
            {
                return Err(StoreError::NotFound("entry"));
            }
        }
        let record = file_records::record(self.heads.next_file_id, file, ctx);
        self.plan_file(record.clone(), w)?;
        let at = ts(ctx.at);
        self.journal(
            w,
            ctx,
            file_records::FILE_ADDED,
            file_records::payload(&record, &at),
        );
        let (target, detail) = file_records::audit_fields(&record);
        self.audit(
            w,
            ctx,
            Action::FileUpload,
            Some(&target),
            Outcome::Success,
            Some(&detail),
        );
        Ok(record)
    }

    /// Plans a file record, which must take the next file id.
    fn plan_file(&mut self, file: FileRecord, w: &mut Writes) -> Result<(), StoreError> {
        if file.id != self.heads.next_file_id {
            return Err(StoreError::Conflict(format!(
                "file {} would be stored as file {}: the journal skips or repeats files",
                file.id, self.heads.next_file_id
            )));
        }
        self.heads.next_file_id += 1;
        w.files.push(file);
        Ok(())
    }

    fn create_account(
        &mut self,
        new: NewAccount,
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<Account, StoreError> {
        let at = ts(ctx.at);
        let account = self.plan_account(new, ctx.at, w)?;
        self.journal(w, ctx, "account_created", account_created(&account, &at));
        self.audit(
            w,
            ctx,
            Action::AccountCreate,
            Some(&format!("account:{}", account.code)),
            Outcome::Success,
            None,
        );
        Ok(account)
    }

    fn plan_account(
        &mut self,
        new: NewAccount,
        created_at: OffsetDateTime,
        w: &mut Writes,
    ) -> Result<Account, StoreError> {
        if self.account(&new.code).is_some() {
            return Err(LedgerError::DuplicateAccountCode(new.code).into());
        }
        new.check_parent(
            new.parent
                .as_deref()
                .and_then(|p| self.account(p))
                .map(|m| m.account_type),
        )?;
        let account = Account {
            id: self.heads.next_account_id,
            code: new.code,
            name: new.name,
            account_type: new.account_type,
            parent: new.parent,
            currency: new.currency,
            created_at,
        };
        self.heads.next_account_id += 1;
        self.new_accounts.insert(
            account.code.clone(),
            AccountMeta {
                id: account.id,
                account_type: account.account_type,
                currency: account.currency,
            },
        );
        w.accounts.push(account.clone());
        Ok(account)
    }

    fn post(
        &mut self,
        drafts: &[EntryDraft],
        idempotency: Option<&Idempotency>,
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<Posted, StoreError> {
        if let Some(idem) = idempotency {
            if let Some((hash, ids)) = self.preloaded.idempotency.get(&idem.key) {
                if *hash != idem.request_hash {
                    return Err(StoreError::IdempotencyMismatch);
                }
                let mut entries = Vec::new();
                for id in ids.split(',').filter(|s| !s.is_empty()) {
                    let id: i64 = id
                        .parse()
                        .map_err(|_| StoreError::Corrupt("idempotency record".into()))?;
                    entries.push(
                        self.preloaded
                            .entries
                            .get(&id)
                            .cloned()
                            .ok_or(StoreError::NotFound("entry"))?,
                    );
                }
                return Ok(Posted {
                    entries,
                    replayed: true,
                });
            }
            if self.used_keys.contains(&idem.key) {
                // The same key twice in one batch: the earlier one wins; retries
                // of it are answered after this batch commits.
                return Err(StoreError::Conflict(
                    "a request with this Idempotency-Key is in progress; retry".into(),
                ));
            }
        }
        if drafts.is_empty() {
            return Err(StoreError::Conflict(
                "a batch holds at least one entry".into(),
            ));
        }
        let lookup = |code: &str| {
            self.account(code).map(|m| AccountRules {
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
        let mut entries = Vec::with_capacity(balanced.len());
        for entry in balanced {
            entries.push(self.entry(entry, None, (&ctx.actor.id, ctx.at), &at, w)?);
        }
        if let Some(idem) = idempotency {
            let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
            w.idempotency.push((
                idem.key.clone(),
                idem.request_hash.clone(),
                ids.join(","),
                at.clone(),
            ));
            self.used_keys.insert(idem.key.clone());
        }
        let payload = EntriesPosted {
            entries: entries.iter().map(|e| EntryRecord::new(e, &at)).collect(),
        };
        self.journal(w, ctx, "entries_posted", to_json(&payload)?);
        let target = entries_target(&entries);
        self.audit(
            w,
            ctx,
            Action::EntryPost,
            Some(&target),
            Outcome::Success,
            None,
        );
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
        w: &mut Writes,
    ) -> Result<Entry, StoreError> {
        let original = self
            .preloaded
            .entries
            .get(&entry_id)
            .or_else(|| self.planned.get(&entry_id))
            .ok_or(StoreError::NotFound("entry"))?;
        if original.reversed_by.is_some() || self.reversed.contains(&entry_id) {
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
        let stored = self.entry(reversal, Some(entry_id), (&ctx.actor.id, ctx.at), &at, w)?;
        w.reversed.push((entry_id, stored.id));
        self.reversed.insert(entry_id);
        let payload = EntryReversed {
            reverses: entry_id,
            entry: EntryRecord::new(&stored, &at),
        };
        self.journal(w, ctx, "entry_reversed", to_json(&payload)?);
        self.audit(
            w,
            ctx,
            Action::EntryReverse,
            Some(&format!("entry:{entry_id}")),
            Outcome::Success,
            Some(&format!("reversal entry:{}", stored.id)),
        );
        Ok(stored)
    }

    /// Plans journal records a restore replays: each record verbatim (it
    /// must continue this database's chain) with what it holds, under its
    /// recorded ids; one audit event for the lot.
    fn replay(
        &mut self,
        records: &[ReplayedRecord],
        ctx: &WriteContext,
        w: &mut Writes,
    ) -> Result<i64, StoreError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(StoreError::Conflict(
                "a replay holds at least one record".into(),
            ));
        };
        let target = format!("journal:{}-{}", first.seq, last.seq);
        // Entries of this command, by id, for reversals within it.
        let mut local: HashMap<i64, Entry> = HashMap::new();
        for record in records {
            match &record.content {
                ReplayedContent::Account {
                    id,
                    account,
                    created_at,
                } => {
                    let stored = self.plan_account(account.clone(), *created_at, w)?;
                    if stored.id != *id {
                        return Err(StoreError::Conflict(format!(
                            "account {} would be restored as account {}, not {id}",
                            stored.code, stored.id
                        )));
                    }
                }
                ReplayedContent::Entries(entries) => {
                    for r in entries {
                        let stored = self.restore_entry(r, &local, w)?;
                        local.insert(stored.id, stored);
                    }
                }
                ReplayedContent::File(file) => self.plan_file(file.clone(), w)?,
            }
            self.journal_verbatim(w, record)?;
        }
        self.audit(
            w,
            ctx,
            Action::JournalReplay,
            Some(&target),
            Outcome::Success,
            None,
        );
        Ok(self.heads.journal_seq)
    }

    fn restore_entry(
        &mut self,
        r: &RestoredEntry,
        local: &HashMap<i64, Entry>,
        w: &mut Writes,
    ) -> Result<Entry, StoreError> {
        if r.id != self.heads.next_entry_id {
            return Err(StoreError::Conflict(format!(
                "restored entry {} would be stored as entry {}: the journal skips or repeats entries",
                r.id, self.heads.next_entry_id
            )));
        }
        let balanced = r
            .draft
            .validate(|code: &str| {
                self.account(code).map(|m| AccountRules {
                    currency: m.currency,
                })
            })
            .map_err(|e| StoreError::Conflict(format!("restored entry {}: {e}", r.id)))?;
        if let Some(original) = r.reverses {
            let found = self
                .preloaded
                .entries
                .get(&original)
                .or_else(|| self.planned.get(&original))
                .or_else(|| local.get(&original))
                .ok_or(StoreError::NotFound("entry"))?;
            if found.reversed_by.is_some() || self.reversed.contains(&original) {
                return Err(LedgerError::AlreadyReversed(original.to_string()).into());
            }
            if found.reverses.is_some() {
                return Err(LedgerError::ReversalOfReversal(original.to_string()).into());
            }
        }
        let at = ts(r.created_at);
        let stored = self.entry(balanced, r.reverses, (&r.created_by, r.created_at), &at, w)?;
        if let Some(original) = r.reverses {
            w.reversed.push((original, stored.id));
            self.reversed.insert(original);
        }
        Ok(stored)
    }

    /// Plans audit events copied verbatim: each must continue this chain.
    fn import_audit(
        &mut self,
        events: &[StoredAuditEvent],
        w: &mut Writes,
    ) -> Result<i64, StoreError> {
        for event in events {
            if event.company_id.as_deref() != Some(self.company_id) {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} belongs to another company",
                    event.seq
                )));
            }
            if event.seq != self.heads.audit_seq + 1 || event.prev_hash != self.heads.audit_hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not follow event {}",
                    event.seq, self.heads.audit_seq
                )));
            }
            let fields = event.fields();
            if fields.hash(&self.heads.audit_hash, event.seq) != event.hash {
                return Err(StoreError::Conflict(format!(
                    "imported audit event {} does not carry the hash of its content and chain",
                    event.seq
                )));
            }
            self.heads.audit_seq = event.seq;
            self.heads.audit_hash = event.hash.clone();
            w.audit.push(AuditRow {
                seq: event.seq,
                fields,
                actor: Actor {
                    id: event.actor.clone(),
                    auth: event.auth.clone(),
                    client: event.client.clone(),
                    request_id: event.request_id.clone(),
                },
                target: event.target.clone(),
                detail: event.detail.clone(),
                prev_hash: event.prev_hash.clone(),
                hash: event.hash.clone(),
            });
        }
        Ok(self.heads.audit_seq)
    }

    /// Plans a record replayed from another journal, unchanged: it must be
    /// the next in this chain and carry the hash its content gives.
    fn journal_verbatim(&mut self, w: &mut Writes, r: &ReplayedRecord) -> Result<(), StoreError> {
        let seq = self.heads.journal_seq + 1;
        if r.seq != seq {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {} does not follow record {}",
                r.seq, self.heads.journal_seq
            )));
        }
        let hash = chain::link(&self.heads.journal_hash, seq, &[&r.at, &r.kind, &r.payload]);
        if hash != r.hash {
            return Err(StoreError::Conflict(format!(
                "replayed journal record {seq} does not carry the hash of its content and chain"
            )));
        }
        w.journal_seq.push(seq);
        w.journal_prev.push(std::mem::replace(
            &mut self.heads.journal_hash,
            hash.clone(),
        ));
        w.journal
            .push([r.at.clone(), r.kind.clone(), r.payload.clone(), hash]);
        self.heads.journal_seq = seq;
        Ok(())
    }

    fn entry(
        &mut self,
        entry: BalancedEntry,
        reverses: Option<i64>,
        author: (&str, OffsetDateTime),
        at: &str,
        w: &mut Writes,
    ) -> Result<Entry, StoreError> {
        let (created_by, created_at) = author;
        let id = self.heads.next_entry_id;
        let (date, description, reference, postings) = entry.into_parts();
        for (line, posting) in postings.iter().enumerate() {
            let meta =
                *self
                    .account(&posting.account)
                    .ok_or_else(|| LedgerError::UnknownAccount {
                        index: line,
                        code: posting.account.clone(),
                    })?;
            let sum = w
                .balances
                .entry((meta.id, posting.currency, date))
                .or_default();
            *sum = sum
                .checked_add(posting.amount)
                .ok_or(LedgerError::Overflow)?;
        }
        self.heads.next_entry_id += 1;
        let entry = Entry {
            id,
            date,
            description,
            reference,
            postings,
            reverses,
            reversed_by: None,
            created_at,
            created_by: created_by.to_string(),
        };
        w.entries.push(entry.clone());
        w.created_at.push(at.to_string());
        Ok(entry)
    }

    fn journal(&mut self, w: &mut Writes, ctx: &WriteContext, kind: &str, payload: String) {
        let seq = self.heads.journal_seq + 1;
        let at = ts(ctx.at);
        let hash = chain::link(&self.heads.journal_hash, seq, &[&at, kind, &payload]);
        w.journal_seq.push(seq);
        w.journal_prev.push(std::mem::replace(
            &mut self.heads.journal_hash,
            hash.clone(),
        ));
        w.journal.push([at, kind.to_string(), payload, hash]);
        self.heads.journal_seq = seq;
    }

    fn audit(
        &mut self,
        w: &mut Writes,
        ctx: &WriteContext,
        action: Action,
        target: Option<&str>,
        outcome: Outcome,
        detail: Option<&str>,
    ) {
        if !self.audit_enabled {
            return;
        }
        let seq = self.heads.audit_seq + 1;
        let actor = &ctx.actor;
        let fields = AuditFields {
            at: ts(ctx.at),
            actor: actor.id.clone(),
            auth: actor.auth.clone(),
            client: actor.client.clone().unwrap_or_default(),
            request_id: actor.request_id.clone().unwrap_or_default(),
            company_id: self.company_id.to_string(),
            action: action.into(),
            target: target.unwrap_or_default().to_string(),
            outcome: outcome.as_str().to_string(),
            detail: detail.unwrap_or_default().to_string(),
        };
        let hash = fields.hash(&self.heads.audit_hash, seq);
        let prev_hash = std::mem::replace(&mut self.heads.audit_hash, hash.clone());
        self.heads.audit_seq = seq;
        w.audit.push(AuditRow {
            seq,
            fields,
            actor: actor.clone(),
            target: target.map(str::to_string),
            detail: detail.map(str::to_string),
            prev_hash,
            hash,
        });
    }
}

const INSERT_ACCOUNTS: &str = "INSERT INTO accounts (id, code, name, type, parent, currency, created_at)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])";
const INSERT_ENTRIES: &str = "INSERT INTO entries (id, date, description, reference, reverses, created_at, created_by)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])";
const UPSERT_BALANCES: &str = "INSERT INTO day_balances (account_id, currency, day, amount)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])
     ON CONFLICT (account_id, currency, day) DO UPDATE SET amount = day_balances.amount + EXCLUDED.amount";
const MARK_REVERSED: &str = "UPDATE entries SET reversed_by = u.reversal
     FROM UNNEST($1::bigint[], $2::bigint[]) AS u(original, reversal) WHERE entries.id = u.original";
const INSERT_IDEMPOTENCY: &str =
    "INSERT INTO idempotency (key, request_hash, entry_ids, created_at)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])";
const INSERT_JOURNAL: &str = "INSERT INTO change_journal (seq, at, kind, payload, prev_hash, hash)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])";
const INSERT_AUDIT: &str = "INSERT INTO audit_events
       (seq, at, actor, auth, client, request_id, action, target, outcome, detail, prev_hash, hash)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                          $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])";
const UPDATE_HEADS: &str = "UPDATE heads SET journal_seq = $1, journal_hash = $2, audit_seq = $3,
       audit_hash = $4, next_entry_id = $5, next_account_id = $6 WHERE id = 1";

#[derive(Clone, Copy)]
enum Stage {
    Audit,
    Other,
}

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;
type Step<'a> = (&'static str, Vec<Param<'a>>, Stage);

fn boxed<'a, T: ToSql + Sync + Send + 'a>(value: T) -> Param<'a> {
    Box::new(value)
}

/// Prepares (once per connection) and sends the statements in order, then
/// reads their answers; the first failure names its stage.
async fn run_steps(conn: &mut PgConn, steps: Vec<Step<'_>>) -> Result<(), WriteFailure> {
    let mut statements = Vec::with_capacity(steps.len());
    for (sql, _, _) in &steps {
        statements.push(
            conn.prepare_cached(sql)
                .await
                .map_err(WriteFailure::Other)?,
        );
    }
    let client: &tokio_postgres::Client = conn;
    let pending = steps
        .iter()
        .zip(&statements)
        .map(|((_, params, stage), statement)| {
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            async move { (client.execute(statement, &refs).await, *stage) }
        });
    // join_all polls in order, so the requests go out in order.
    for (result, stage) in futures_util::future::join_all(pending).await {
        if let Err(e) = result {
            let error = StoreError::from(e);
            return Err(match stage {
                Stage::Audit => WriteFailure::Audit(error),
                Stage::Other => WriteFailure::Other(error),
            });
        }
    }
    Ok(())
}

/// Writes a planned batch with one statement per table, sent back to back:
/// tokio-postgres pipelines requests that are in flight together, so the
/// batch costs one round trip rather than one per table.
async fn write(conn: &mut PgConn, w: &Writes, heads: &Heads) -> Result<(), WriteFailure> {
    let mut steps: Vec<Step<'_>> = Vec::new();
    if !w.accounts.is_empty() {
        let a = &w.accounts;
        let ids: Vec<i64> = a.iter().map(|a| a.id).collect();
        let codes: Vec<&str> = a.iter().map(|a| a.code.as_str()).collect();
        let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
        let types: Vec<&str> = a.iter().map(|a| a.account_type.as_str()).collect();
        let parents: Vec<Option<&str>> = a.iter().map(|a| a.parent.as_deref()).collect();
        let currencies: Vec<Option<String>> = a
            .iter()
            .map(|a| a.currency.map(|c| c.code().to_string()))
            .collect();
        let created: Vec<String> = a.iter().map(|a| ts(a.created_at)).collect();
        steps.push((
            INSERT_ACCOUNTS,
            vec![
                boxed(ids),
                boxed(codes),
                boxed(names),
                boxed(types),
                boxed(parents),
                boxed(currencies),
                boxed(created),
            ],
            Stage::Other,
        ));
    }
    if !w.entries.is_empty() {
        let e = &w.entries;
        let ids: Vec<i64> = e.iter().map(|e| e.id).collect();
        let dates: Vec<String> = e.iter().map(|e| day(e.date)).collect();
        let descriptions: Vec<&str> = e.iter().map(|e| e.description.as_str()).collect();
        let references: Vec<Option<&str>> = e.iter().map(|e| e.reference.as_deref()).collect();
        let reverses: Vec<Option<i64>> = e.iter().map(|e| e.reverses).collect();
        let by: Vec<&str> = e.iter().map(|e| e.created_by.as_str()).collect();
        steps.push((
            INSERT_ENTRIES,
            vec![
                boxed(ids),
                boxed(dates),
                boxed(descriptions),
                boxed(references),
                boxed(reverses),
                boxed(&w.created_at),
                boxed(by),
            ],
            Stage::Other,
        ));
        let mut entry_ids = Vec::new();
        let mut lines = Vec::new();
        let mut account_ids = Vec::new();
        let mut currencies = Vec::new();
        let mut amounts = Vec::new();
        let mut posting_dates: Vec<String> = Vec::new();
        for entry in e.iter() {
            let date = day(entry.date);
            for (line, p) in entry.postings.iter().enumerate() {
                entry_ids.push(entry.id);
                lines.push(i32::try_from(line).unwrap_or(i32::MAX));
                account_ids.push(p.account.as_str());
                currencies.push(p.currency.code());
                amounts.push(p.amount);
                posting_dates.push(date.clone());
            }
        }
        // Account codes resolve to ids in SQL: accounts of this batch are
        // inserted above, and ids never change.
        const INSERT_POSTINGS_BY_CODE: &str =
            "INSERT INTO postings (entry_id, line, account_id, currency, amount, date)
             SELECT u.entry_id, u.line, a.id, u.currency, u.amount, u.date
             FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::text[])
                  AS u(entry_id, line, code, currency, amount, date)
             JOIN accounts a ON a.code = u.code";
        steps.push((
            INSERT_POSTINGS_BY_CODE,
            vec![
                boxed(entry_ids),
                boxed(lines),
                boxed(account_ids),
                boxed(currencies),
                boxed(amounts),
                boxed(posting_dates),
            ],
            Stage::Other,
        ));
    }
    let balances: Vec<_> = w.balances.iter().filter(|(_, a)| **a != 0).collect();
    if !balances.is_empty() {
        let accounts: Vec<i64> = balances.iter().map(|((a, _, _), _)| *a).collect();
        let currencies: Vec<&str> = balances.iter().map(|((_, c, _), _)| c.code()).collect();
        let days: Vec<String> = balances.iter().map(|((_, _, d), _)| day(*d)).collect();
        let amounts: Vec<i64> = balances.iter().map(|(_, a)| **a).collect();
        steps.push((
            UPSERT_BALANCES,
            vec![
                boxed(accounts),
                boxed(currencies),
                boxed(days),
                boxed(amounts),
            ],
            Stage::Other,
        ));
    }
    if !w.reversed.is_empty() {
        let originals: Vec<i64> = w.reversed.iter().map(|(o, _)| *o).collect();
        let reversals: Vec<i64> = w.reversed.iter().map(|(_, r)| *r).collect();
        steps.push((
            MARK_REVERSED,
            vec![boxed(originals), boxed(reversals)],
            Stage::Other,
        ));
    }
    if !w.idempotency.is_empty() {
        let i = &w.idempotency;
        let keys: Vec<&str> = i.iter().map(|r| r.0.as_str()).collect();
        let hashes: Vec<&str> = i.iter().map(|r| r.1.as_str()).collect();
        let ids: Vec<&str> = i.iter().map(|r| r.2.as_str()).collect();
        let at: Vec<&str> = i.iter().map(|r| r.3.as_str()).collect();
        steps.push((
            INSERT_IDEMPOTENCY,
            vec![boxed(keys), boxed(hashes), boxed(ids), boxed(at)],
            Stage::Other,
        ));
    }
    if !w.files.is_empty() {
        let f = &w.files;
        let ids: Vec<i64> = f.iter().map(|f| f.id).collect();
        let addresses: Vec<&str> = f.iter().map(|f| f.address.as_str()).collect();
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        let types: Vec<&str> = f.iter().map(|f| f.content_type.as_str()).collect();
        let sizes: Vec<i64> = f
            .iter()
            .map(|f| file_records::stored_size(f.size))
            .collect();
        let entries: Vec<Option<i64>> = f.iter().map(|f| f.entry_id).collect();
        let created: Vec<String> = f.iter().map(|f| ts(f.created_at)).collect();
        let by: Vec<&str> = f.iter().map(|f| f.created_by.as_str()).collect();
        steps.push((
            tenant_files::INSERT,
            vec![
                boxed(ids),
                boxed(addresses),
                boxed(names),
                boxed(types),
                boxed(sizes),
                boxed(entries),
                boxed(created),
                boxed(by),
            ],
            Stage::Other,
        ));
    }
    if !w.journal.is_empty() {
        let j = &w.journal;
        let at: Vec<&str> = j.iter().map(|r| r[0].as_str()).collect();
        let kinds: Vec<&str> = j.iter().map(|r| r[1].as_str()).collect();
        let payloads: Vec<&str> = j.iter().map(|r| r[2].as_str()).collect();
        let hashes: Vec<&str> = j.iter().map(|r| r[3].as_str()).collect();
        steps.push((
            INSERT_JOURNAL,
            vec![
                boxed(&w.journal_seq),
                boxed(at),
                boxed(kinds),
                boxed(payloads),
                boxed(&w.journal_prev),
                boxed(hashes),
            ],
            Stage::Other,
        ));
    }
    if !w.audit.is_empty() {
        let a = &w.audit;
        let seq: Vec<i64> = a.iter().map(|r| r.seq).collect();
        let at: Vec<&str> = a.iter().map(|r| r.fields.at.as_str()).collect();
        let actor: Vec<&str> = a.iter().map(|r| r.actor.id.as_str()).collect();
        let auth: Vec<&str> = a.iter().map(|r| r.actor.auth.as_str()).collect();
        let client: Vec<Option<&str>> = a.iter().map(|r| r.actor.client.as_deref()).collect();
        let request: Vec<Option<&str>> = a.iter().map(|r| r.actor.request_id.as_deref()).collect();
        let action: Vec<&str> = a.iter().map(|r| r.fields.action.as_str()).collect();
        let target: Vec<Option<&str>> = a.iter().map(|r| r.target.as_deref()).collect();
        let outcome: Vec<&str> = a.iter().map(|r| r.fields.outcome.as_str()).collect();
        let detail: Vec<Option<&str>> = a.iter().map(|r| r.detail.as_deref()).collect();
        let prev: Vec<&str> = a.iter().map(|r| r.prev_hash.as_str()).collect();
        let hash: Vec<&str> = a.iter().map(|r| r.hash.as_str()).collect();
        steps.push((
            INSERT_AUDIT,
            vec![
                boxed(seq),
                boxed(at),
                boxed(actor),
                boxed(auth),
                boxed(client),
                boxed(request),
                boxed(action),
                boxed(target),
                boxed(outcome),
                boxed(detail),
                boxed(prev),
                boxed(hash),
            ],
            Stage::Audit,
        ));
    }
    steps.push((
        UPDATE_HEADS,
        vec![
            boxed(heads.journal_seq),
            boxed(&heads.journal_hash),
            boxed(heads.audit_seq),
            boxed(&heads.audit_hash),
            boxed(heads.next_entry_id),
            boxed(heads.next_account_id),
        ],
        Stage::Other,
    ));
    run_steps(conn, steps).await
}
