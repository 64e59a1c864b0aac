//! A company's SQLCipher database: reads on pooled connections, writes through
//! the company's group-commit writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};
use time::Date;
use tokio::sync::{mpsc, oneshot};
use wb_core::reports::{Amounts, BalanceRow, RegisterPosting};
use wb_core::{AccountType, Currency, EntryDraft, NewAccount, Posting};
use wb_crypto::DataKey;

use super::conn::{day, open_encrypted, parse_day, parse_ts, OpenMode, ReaderPool};
use super::tenant_files;
use super::tenant_writer;
use crate::entry_list::{self, EntryQuery, Value as ListValue};
use crate::migrations::{self, Database};
use crate::model::*;
use crate::writer_jobs::{Command, Job, Output};
use crate::{DestroyedDatabase, RekeyReport, StoreError, TenantDirectory, TenantStore};

const READERS_PER_COMPANY: usize = 4;
/// The files of a company database: its own, its WAL and SHM, and those of a
/// re-keyed copy an interrupted re-key left.
const DATABASE_FILES: [&str; 6] = ["", "-wal", "-shm", ".rekey", ".rekey-wal", ".rekey-shm"];
pub const MAX_PAGE: u32 = 1000;

pub struct SqliteTenant {
    company_id: String,
    published: Arc<Published>,
    path: PathBuf,
    /// Digest of the key the database is open with, so that an open store is
    /// handed out again only for the same key (changed by a re-key).
    key_digest: Mutex<[u8; 32]>,
    writer: mpsc::Sender<Job>,
    rekeys: mpsc::Sender<tenant_writer::rekey::RekeyJob>,
    readers: Arc<ReaderPool>,
}

impl std::fmt::Debug for SqliteTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTenant")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteTenant {
    fn digest(&self) -> [u8; 32] {
        self.key_digest.lock().map(|d| *d).unwrap_or([0; 32])
    }

    async fn send(&self, command: Command, ctx: WriteContext) -> Result<Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Job {
                command,
                ctx,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

fn unexpected() -> StoreError {
    StoreError::Backend("writer answered with the wrong kind of result".into())
}

pub(crate) fn row_to_account(row: &Row<'_>) -> rusqlite::Result<Result<Account, StoreError>> {
    let id: i64 = row.get(0)?;
    let code: String = row.get(1)?;
    let name: String = row.get(2)?;
    let kind: String = row.get(3)?;
    let parent: Option<String> = row.get(4)?;
    let currency: Option<String> = row.get(5)?;
    let created_at: String = row.get(6)?;
    Ok((|| {
        Ok(Account {
            id,
            code,
            name,
            account_type: kind
                .parse::<AccountType>()
                .map_err(|_| StoreError::Corrupt("account type".into()))?,
            parent,
            currency: currency
                .map(|c| Currency::parse(&c))
                .transpose()
                .map_err(|_| StoreError::Corrupt("account currency".into()))?,
            created_at: parse_ts(&created_at)?,
        })
    })())
}

fn postings_of(conn: &Connection, entry_id: i64) -> Result<Vec<Posting>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.code, p.currency, p.amount FROM postings p JOIN accounts a ON a.id = p.account_id
         WHERE p.entry_id = ?1 ORDER BY p.line",
    )?;
    let rows = stmt.query_map([entry_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut postings = Vec::new();
    for row in rows {
        let (account, currency, amount) = row?;
        postings.push(Posting {
            account,
            currency: Currency::parse(&currency)
                .map_err(|_| StoreError::Corrupt("posting currency".into()))?,
            amount,
        });
    }
    Ok(postings)
}

const ENTRY_COLUMNS: &str =
    "id, date, description, reference, reverses, reversed_by, created_at, created_by";

fn row_to_entry(conn: &Connection, row: &Row<'_>) -> Result<Entry, StoreError> {
    let id: i64 = row.get(0)?;
    let date: String = row.get(1)?;
    let created_at: String = row.get(6)?;
    Ok(Entry {
        id,
        date: parse_day(&date)?,
        description: row.get(2)?,
        reference: row.get(3)?,
        reverses: row.get(4)?,
        reversed_by: row.get(5)?,
        created_at: parse_ts(&created_at)?,
        created_by: row.get(7)?,
        postings: postings_of(conn, id)?,
    })
}

pub(crate) fn load_entry(conn: &Connection, id: i64) -> Result<Option<Entry>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(row_to_entry(conn, row)?)),
        None => Ok(None),
    }
}

fn key_digest(key: &DataKey) -> [u8; 32] {
    Sha256::digest(key.sqlcipher_pragma_value().as_bytes()).into()
}

/// A sum of i64 amounts can pass i64 (SQLite's SUM then fails): sum the high
/// and low 32 bits separately, `SUM(x >> 32), SUM(x & 0xFFFFFFFF)`, and join the
/// halves in i128.
const SPLIT_SUM: &str = "SUM(b.amount >> 32), SUM(b.amount & 4294967295)";

fn join_halves(high: i64, low: i64) -> i128 {
    (i128::from(high) << 32) + i128::from(low)
}

fn balance_rows(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<BalanceRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            join_halves(r.get(2)?, r.get(3)?),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (code, currency, amount) = row?;
        out.push(BalanceRow {
            code,
            currency: Currency::parse(&currency)
                .map_err(|_| StoreError::Corrupt("balance currency".into()))?,
            amount,
        });
    }
    Ok(out)
}

fn audit_row(row: &Row<'_>, company_id: &str) -> Result<StoredAuditEvent, StoreError> {
    Ok(StoredAuditEvent {
        seq: row.get(0)?,
        at: row.get(1)?,
        actor: row.get(2)?,
        auth: row.get(3)?,
        client: row.get(4)?,
        request_id: row.get(5)?,
        company_id: Some(company_id.to_string()),
        action: row.get(6)?,
        target: row.get(7)?,
        outcome: row.get(8)?,
        detail: row.get(9)?,
        prev_hash: row.get(10)?,
        hash: row.get(11)?,
    })
}

#[async_trait]
impl TenantStore for SqliteTenant {
    async fn create_account(
        &self,
        account: NewAccount,
        ctx: WriteContext,
    ) -> Result<Account, StoreError> {
        match self.send(Command::CreateAccount(account), ctx).await? {
            Output::Account(a) => Ok(a),
            _ => Err(unexpected()),
        }
    }

    async fn post_entries(
        &self,
        drafts: Vec<EntryDraft>,
        idempotency: Option<Idempotency>,
        ctx: WriteContext,
    ) -> Result<Posted, StoreError> {
        match self
            .send(
                Command::Post {
                    drafts,
                    idempotency,
                },
                ctx,
            )
            .await?
        {
            Output::Posted(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    async fn reverse_entry(
        &self,
        entry_id: i64,
        date: Date,
        description: Option<String>,
        ctx: WriteContext,
    ) -> Result<Entry, StoreError> {
        let command = Command::Reverse {
            entry_id,
            date,
            description,
        };
        match self.send(command, ctx).await? {
            Output::Entry(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    async fn apply_in_order(
        &self,
        changes: Vec<(Change, WriteContext)>,
    ) -> Vec<Result<Applied, StoreError>> {
        crate::writer_jobs::apply_in_order(&self.writer, changes).await
    }

    async fn add_file(&self, file: NewFile, ctx: WriteContext) -> Result<FileRecord, StoreError> {
        match self.send(Command::AddFile(file), ctx).await? {
            Output::File(f) => Ok(f),
            _ => Err(unexpected()),
        }
    }

    async fn purge(
        &self,
        plan: crate::purge::PurgePlan,
        ctx: WriteContext,
    ) -> Result<crate::purge::PurgeReport, StoreError> {
        match self.send(Command::Purge(plan), ctx).await? {
            Output::Purged(report) => Ok(*report),
            _ => Err(unexpected()),
        }
    }

    async fn files(&self, page: FilePage) -> Result<Vec<FileRecord>, StoreError> {
        self.readers
            .with(move |conn| tenant_files::files(conn, &page, MAX_PAGE))
            .await
    }

    async fn file(&self, id: i64) -> Result<Option<FileRecord>, StoreError> {
        self.readers
            .with(move |conn| tenant_files::file(conn, id))
            .await
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, code, name, type, parent, currency, created_at FROM accounts ORDER BY code",
                )?;
                let rows = stmt.query_map([], row_to_account)?;
                rows.map(|r| r?).collect()
            })
            .await
    }

    async fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        self.readers.with(move |conn| load_entry(conn, id)).await
    }

    async fn entries(&self, page: EntryPage) -> Result<Vec<Entry>, StoreError> {
        let Some(query) = EntryQuery::new(&page, MAX_PAGE) else {
            return Ok(Vec::new());
        };
        self.readers
            .with(move |conn| {
                let account_id = match &query.account {
                    Some(code) => match conn
                        .prepare_cached("SELECT id FROM accounts WHERE code = ?1")?
                        .query_row([code], |r| r.get::<_, i64>(0))
                        .optional()?
                    {
                        Some(id) => Some(id),
                        None => return Ok(Vec::new()),
                    },
                    None => None,
                };
                let values = query.values(account_id).into_iter().map(|v| match v {
                    ListValue::Int(i) => rusqlite::types::Value::Integer(i),
                    ListValue::Text(t) => rusqlite::types::Value::Text(t),
                });
                let mut stmt = conn.prepare_cached(entry_list::sqlite_statement(query.shape))?;
                let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(row_to_entry(conn, row)?);
                }
                Ok(out)
            })
            .await
    }

    async fn balances_as_of(&self, as_of: Date) -> Result<Vec<BalanceRow>, StoreError> {
        self.readers
            .with(move |conn| {
                balance_rows(
                    conn,
                    &format!(
                        "SELECT a.code, b.currency, {SPLIT_SUM} FROM day_balances b
                         JOIN accounts a ON a.id = b.account_id
                         WHERE b.day <= ?1 GROUP BY b.account_id, b.currency"
                    ),
                    &[&day(as_of)],
                )
            })
            .await
    }

    async fn movements(&self, from: Date, to: Date) -> Result<Vec<BalanceRow>, StoreError> {
        self.readers
            .with(move |conn| {
                balance_rows(
                    conn,
                    &format!(
                        "SELECT a.code, b.currency, {SPLIT_SUM} FROM day_balances b
                         JOIN accounts a ON a.id = b.account_id
                         WHERE b.day >= ?1 AND b.day <= ?2 GROUP BY b.account_id, b.currency"
                    ),
                    &[&day(from), &day(to)],
                )
            })
            .await
    }

    async fn register(
        &self,
        account_code: &str,
        from: Date,
        to: Date,
        limit: u32,
    ) -> Result<(Amounts, Vec<RegisterPosting>), StoreError> {
        let code = account_code.to_string();
        self.readers
            .with(move |conn| {
                let account_id: i64 = conn
                    .prepare_cached("SELECT id FROM accounts WHERE code = ?1")?
                    .query_row([&code], |r| r.get(0))
                    .optional()?
                    .ok_or(StoreError::NotFound("account"))?;
                let mut opening = Amounts::new();
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT b.currency, {SPLIT_SUM} FROM day_balances b
                     WHERE b.account_id = ?1 AND b.day < ?2 GROUP BY b.currency"
                ))?;
                let rows = stmt.query_map(params![account_id, day(from)], |r| {
                    Ok((r.get::<_, String>(0)?, join_halves(r.get(1)?, r.get(2)?)))
                })?;
                for row in rows {
                    let (currency, amount) = row?;
                    let currency = Currency::parse(&currency)
                        .map_err(|_| StoreError::Corrupt("currency".into()))?;
                    opening.insert(currency, amount);
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT p.date, p.entry_id, e.description, p.currency, p.amount
                     FROM postings p JOIN entries e ON e.id = p.entry_id
                     WHERE p.account_id = ?1 AND p.date >= ?2 AND p.date <= ?3
                     ORDER BY p.date, p.entry_id, p.line LIMIT ?4",
                )?;
                let limit = limit.clamp(1, 100 * MAX_PAGE);
                let rows = stmt.query_map(params![account_id, day(from), day(to), limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?;
                let mut postings = Vec::new();
                for row in rows {
                    let (date, entry_id, description, currency, amount) = row?;
                    postings.push(RegisterPosting {
                        date: parse_day(&date)?,
                        entry_id: entry_id.to_string(),
                        description,
                        currency: Currency::parse(&currency)
                            .map_err(|_| StoreError::Corrupt("currency".into()))?,
                        amount,
                    });
                }
                Ok((opening, postings))
            })
            .await
    }

    async fn journal(&self, after_seq: i64, limit: u32) -> Result<Vec<JournalRecord>, StoreError> {
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, at, kind, payload, prev_hash, hash FROM change_journal
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let mut rows = stmt.query(params![after_seq, limit.clamp(1, 100 * MAX_PAGE)])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let at: String = r.get(1)?;
                    out.push(JournalRecord {
                        seq: r.get(0)?,
                        at: parse_ts(&at)?,
                        kind: r.get(2)?,
                        payload: r.get(3)?,
                        prev_hash: r.get(4)?,
                        hash: r.get(5)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        let company_id = self.company_id.clone();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, at, actor, auth, client, request_id, action, target, outcome, detail,
                            prev_hash, hash
                     FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let mut rows = stmt.query(params![after_seq, limit.clamp(1, MAX_PAGE)])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(audit_row(r, &company_id)?);
                }
                Ok(out)
            })
            .await
    }

    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        let ctx = WriteContext {
            actor: event.actor.clone(),
            at: event.at,
        };
        match self.send(Command::Record(event), ctx).await? {
            Output::Recorded => Ok(()),
            _ => Err(unexpected()),
        }
    }

    fn audit_head(&self) -> i64 {
        self.published.audit_seq.load(Ordering::Acquire)
    }

    fn journal_head(&self) -> i64 {
        self.published.journal_seq.load(Ordering::Acquire)
    }

    fn company_id(&self) -> &str {
        &self.company_id
    }

    async fn stats(&self) -> Result<TenantStats, StoreError> {
        let path = self.path.clone();
        self.readers
            .with(move |conn| {
                let accounts: i64 =
                    conn.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))?;
                let entries: i64 =
                    conn.query_row("SELECT COALESCE(MAX(id), 0) FROM entries", [], |r| r.get(0))?;
                let journal_seq: i64 = conn.query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM change_journal",
                    [],
                    |r| r.get(0),
                )?;
                let (files, file_bytes): (i64, i64) = conn.query_row(
                    "SELECT count(*), COALESCE(SUM(size), 0) FROM files",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                let storage_bytes = size(path.clone()) + size(path.with_extension("db-wal"));
                Ok(TenantStats {
                    accounts,
                    entries,
                    journal_seq,
                    storage_bytes,
                    files,
                    file_bytes,
                })
            })
            .await
    }
}

/// Company databases under one directory, `<dir>/<company id>.db`.
pub struct SqliteTenants {
    dir: PathBuf,
    open: Mutex<HashMap<String, Arc<SqliteTenant>>>,
    audit: bool,
}

impl SqliteTenants {
    pub fn new(dir: PathBuf) -> Result<SqliteTenants, StoreError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        Ok(SqliteTenants {
            dir,
            open: Mutex::new(HashMap::new()),
            audit: true,
        })
    }

    /// Company stores whose writers record no audit events: only for measuring
    /// what auditing costs (`workbooks bench`). No configuration reaches this.
    #[doc(hidden)]
    pub fn without_audit_for_benchmarks(dir: PathBuf) -> Result<SqliteTenants, StoreError> {
        let mut tenants = SqliteTenants::new(dir)?;
        tenants.audit = false;
        Ok(tenants)
    }

    pub fn path_of(&self, company_id: &str) -> Result<PathBuf, StoreError> {
        // Ids are generated UUIDs; anything else must not become a path.
        if company_id.is_empty()
            || company_id.len() > 64
            || !company_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StoreError::NotFound("company"));
        }
        Ok(self.dir.join(format!("{company_id}.db")))
    }

    async fn start(
        &self,
        company_id: &str,
        key: &DataKey,
        mode: OpenMode,
    ) -> Result<Arc<dyn TenantStore>, StoreError> {
        let already_open = self
            .open
            .lock()
            .ok()
            .and_then(|open| open.get(company_id).cloned());
        if let Some(open) = already_open {
            if mode == OpenMode::Existing {
                if open.digest() != key_digest(key) {
                    return Err(StoreError::WrongKey);
                }
                return Ok(open);
            }
        }
        let path = self.path_of(company_id)?;
        let key_for_open = key.clone();
        let path_for_open = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = open_encrypted(&path_for_open, &key_for_open, mode)?;
            migrations::sqlite::migrate(&mut conn, Database::Tenant, migrations::SQLITE_TENANT)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("open task failed: {e}")))??;
        let published = Arc::new(Published::default());
        let (writer, rekeys) = tenant_writer::spawn(
            conn,
            company_id,
            path.clone(),
            published.clone(),
            self.audit,
        )?;
        let tenant = Arc::new(SqliteTenant {
            company_id: company_id.to_string(),
            published,
            readers: Arc::new(ReaderPool::new(
                path.clone(),
                key.clone(),
                READERS_PER_COMPANY,
            )),
            key_digest: Mutex::new(key_digest(key)),
            path,
            writer,
            rekeys,
        });
        let mut open = self
            .open
            .lock()
            .map_err(|_| StoreError::Backend("tenant registry poisoned".into()))?;
        // Two requests may race to open the same company: keep the first.
        let kept = open.entry(company_id.to_string()).or_insert(tenant).clone();
        Ok(kept)
    }
}

#[async_trait]
impl TenantDirectory for SqliteTenants {
    async fn create(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Arc<dyn TenantStore>, StoreError> {
        self.start(company_id, key, OpenMode::Create).await
    }

    async fn open(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Arc<dyn TenantStore>, StoreError> {
        self.start(company_id, key, OpenMode::Existing).await
    }

    fn get_open(&self, company_id: &str) -> Option<Arc<dyn TenantStore>> {
        let open = self.open.lock().ok()?;
        open.get(company_id)
            .map(|t| t.clone() as Arc<dyn TenantStore>)
    }

    fn open_count(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    fn open_tenants(&self) -> Vec<Arc<dyn TenantStore>> {
        self.open
            .lock()
            .map(|o| {
                o.values()
                    .map(|t| t.clone() as Arc<dyn TenantStore>)
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn discard(&self, company_id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(company_id);
        }
        if let Ok(path) = self.path_of(company_id) {
            for suffix in DATABASE_FILES {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }

    async fn rekey(
        &self,
        company_id: &str,
        from: &DataKey,
        to: &DataKey,
    ) -> Result<RekeyReport, StoreError> {
        let tenant = match self.start(company_id, from, OpenMode::Existing).await {
            Ok(_) => self
                .open
                .lock()
                .ok()
                .and_then(|o| o.get(company_id).cloned()),
            // Under the new key already (a rotation resumed after its re-key).
            Err(StoreError::WrongKey) => {
                self.start(company_id, to, OpenMode::Existing).await?;
                return Ok(RekeyReport {
                    already: true,
                    bytes: 0,
                    steps: 0,
                    write_pause: std::time::Duration::ZERO,
                    took: std::time::Duration::ZERO,
                });
            }
            Err(e) => return Err(e),
        }
        .ok_or(StoreError::NotFound("company database"))?;
        let (reply, answer) = oneshot::channel();
        tenant
            .rekeys
            .send(tenant_writer::rekey::RekeyJob {
                key: to.clone(),
                readers: tenant.readers.clone(),
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        let report = match answer.await.map_err(|_| StoreError::WriterStopped) {
            Ok(Ok(report)) => report,
            Ok(Err(e)) | Err(e) => {
                // A writer that stopped is dropped, so the next use opens the
                // database afresh (under whichever key it has).
                // (A writer that could not reopen its database stops right
                // after answering.)
                let stopped = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    tenant.writer.closed(),
                )
                .await
                .is_ok();
                if stopped {
                    if let Ok(mut open) = self.open.lock() {
                        open.remove(company_id);
                    }
                }
                return Err(e);
            }
        };
        if let Ok(mut digest) = tenant.key_digest.lock() {
            *digest = key_digest(to);
        }
        Ok(report)
    }

    async fn destroy(&self, company_id: &str) -> Result<DestroyedDatabase, StoreError> {
        let path = self.path_of(company_id)?;
        if let Ok(mut open) = self.open.lock() {
            open.remove(company_id);
        }
        let mut gone = DestroyedDatabase {
            items: 0,
            names: Vec::new(),
            bytes: 0,
        };
        for suffix in DATABASE_FILES {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let file = PathBuf::from(file);
            let size = match std::fs::metadata(&file) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Backend(format!("{}: {e}", file.display()))),
            };
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::Backend(format!("{}: {e}", file.display()))),
            }
            gone.bytes += size;
            gone.items += 1;
            if let Some(name) = file.file_name() {
                gone.names.push(name.to_string_lossy().into_owned());
            }
        }
        // The directory entry's removal reaches the disk before the step is
        // recorded as done.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(gone)
    }
}
