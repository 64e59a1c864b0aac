//! Companies on PostgreSQL: each in its own database, reached with its own
//! role; reads on the company's bounded pool, writes through its writer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::Date;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use wb_core::reports::{Amounts, BalanceRow, RegisterPosting};
use wb_core::{AccountType, Currency, EntryDraft, NewAccount, Posting};
use wb_crypto::DataKey;

use super::connect::PgEndpoint;
use super::placement::{Placement, Placements};
use super::pool::{ConnectionBudget, PgConn, PgPool};
use super::provision;
use super::tenant_files;
use super::tenant_writer;
use crate::entry_list::{self, EntryQuery, Value as ListValue};
use crate::model::*;
use crate::sqlite::conn::{day, parse_day, parse_ts};
use crate::writer_jobs::{Command, Job, Output};
use crate::{StoreError, TenantStore};

mod directory;

pub use directory::PgTenants;

pub const MAX_PAGE: u32 = 1000;

fn key_digest(key: &DataKey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(provision::role_password(key).expose().as_bytes()).into()
}

/// Where a company's database is now, and the pool and writer that reach it.
struct Route {
    placement: Placement,
    pool: PgPool,
    writer: mpsc::Sender<Job>,
}

impl Route {
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

/// Errors after which the company may live elsewhere now: look again.
fn may_have_moved(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Moved | StoreError::Connect(_) | StoreError::Backend(_)
    )
}

/// A company's store. When its database moves to another server, the next
/// request that finds the old one gone follows the placement and retries
/// there; writes are retried only when nothing was written.
pub struct PgTenant {
    company_id: String,
    key: DataKey,
    key_digest: [u8; 32],
    locator: Arc<Locator>,
    route: Mutex<Arc<Route>>,
    published: Arc<Published>,
}

impl std::fmt::Debug for PgTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTenant({})", self.route().pool.endpoint().describe())
    }
}

/// Runs `$body` (an expression using `$route`) on the company's current route,
/// and once more on its new route when the database turned out to have moved.
macro_rules! rerouted {
    ($self:ident, $route:ident => $body:expr) => {{
        let $route = $self.route();
        let first: Result<_, StoreError> = $body;
        match first {
            Err(e) if may_have_moved(&e) => match $self.reroute(&$route).await? {
                Some($route) => $body,
                None => Err(e),
            },
            other => other,
        }
    }};
}

fn unexpected() -> StoreError {
    StoreError::Backend("writer answered with the wrong kind of result".into())
}

pub(crate) fn row_to_account(row: &Row) -> Result<Account, StoreError> {
    let kind: String = row.try_get(3)?;
    let currency: Option<String> = row.try_get(5)?;
    let created_at: String = row.try_get(6)?;
    Ok(Account {
        id: row.try_get(0)?,
        code: row.try_get(1)?,
        name: row.try_get(2)?,
        account_type: kind
            .parse::<AccountType>()
            .map_err(|_| StoreError::Corrupt("account type".into()))?,
        parent: row.try_get(4)?,
        currency: currency
            .map(|c| Currency::parse(&c))
            .transpose()
            .map_err(|_| StoreError::Corrupt("account currency".into()))?,
        created_at: parse_ts(&created_at)?,
    })
}

fn currency(text: &str) -> Result<Currency, StoreError> {
    Currency::parse(text).map_err(|_| StoreError::Corrupt("currency".into()))
}

const ENTRIES_BY_ID: &str =
    "SELECT id, date, description, reference, reverses, reversed_by, created_at, created_by
     FROM entries WHERE id = ANY($1) ORDER BY id";
const POSTINGS_OF: &str = "SELECT p.entry_id, a.code, p.currency, p.amount FROM postings p
     JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = ANY($1) ORDER BY p.entry_id, p.line";
async fn entries_from_rows(conn: &mut PgConn, rows: Vec<Row>) -> Result<Vec<Entry>, StoreError> {
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let date: String = row.try_get(1)?;
        let created_at: String = row.try_get(6)?;
        entries.push(Entry {
            id: row.try_get(0)?,
            date: parse_day(&date)?,
            description: row.try_get(2)?,
            reference: row.try_get(3)?,
            reverses: row.try_get(4)?,
            reversed_by: row.try_get(5)?,
            created_at: parse_ts(&created_at)?,
            created_by: row.try_get(7)?,
            postings: Vec::new(),
        });
    }
    if entries.is_empty() {
        return Ok(entries);
    }
    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    let statement = conn.prepare_cached(POSTINGS_OF).await?;
    let mut by_entry: HashMap<i64, Vec<Posting>> = HashMap::new();
    for row in conn.query(&statement, &[&ids]).await? {
        let code: String = row.try_get(2)?;
        by_entry.entry(row.try_get(0)?).or_default().push(Posting {
            account: row.try_get(1)?,
            currency: currency(&code)?,
            amount: row.try_get(3)?,
        });
    }
    for entry in &mut entries {
        entry.postings = by_entry.remove(&entry.id).unwrap_or_default();
    }
    Ok(entries)
}

/// Entries (with postings) by id, in id order; missing ids are skipped.
pub(crate) async fn load_entries(conn: &mut PgConn, ids: &[i64]) -> Result<Vec<Entry>, StoreError> {
    let statement = conn.prepare_cached(ENTRIES_BY_ID).await?;
    let rows = conn.query(&statement, &[&ids]).await?;
    entries_from_rows(conn, rows).await
}

fn amount_of(text: &str) -> Result<i128, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt("balance amount".into()))
}

fn balance_rows(rows: Vec<Row>) -> Result<Vec<BalanceRow>, StoreError> {
    rows.iter()
        .map(|r| {
            let code: String = r.try_get(1)?;
            let amount: String = r.try_get(2)?;
            Ok(BalanceRow {
                code: r.try_get(0)?,
                currency: currency(&code)?,
                amount: amount_of(&amount)?,
            })
        })
        .collect()
}

impl PgTenant {
    fn route(&self) -> Arc<Route> {
        self.route.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new route when the placement no longer names the database `seen` used.
    async fn reroute(&self, seen: &Route) -> Result<Option<Arc<Route>>, StoreError> {
        let placement = self
            .locator
            .placements
            .get(&self.company_id)
            .await?
            .ok_or(StoreError::NotFound("company database"))?;
        if placement == seen.placement {
            return Ok(None);
        }
        let current = self.route();
        if current.placement == placement {
            return Ok(Some(current));
        }
        let route = self
            .locator
            .route(placement, &self.key, self.published.clone())
            .await?;
        *self.route.lock().unwrap_or_else(|e| e.into_inner()) = route.clone();
        Ok(Some(route))
    }

    async fn send(&self, command: Command, ctx: WriteContext) -> Result<Output, StoreError> {
        let route = self.route();
        let work = (command, ctx);
        let retry = (work.0.clone(), work.1.clone());
        match route.send(work.0, work.1).await {
            // Refused before anything was written: safe to send again.
            Err(e @ (StoreError::Moved | StoreError::Connect(_))) => {
                match self.reroute(&route).await? {
                    Some(route) => route.send(retry.0, retry.1).await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// The company's current pool (tests look at how many connections it keeps).
    pub fn pool(&self) -> PgPool {
        self.route().pool.clone()
    }
}

#[async_trait]
impl TenantStore for PgTenant {
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
        let command = Command::Post {
            drafts,
            idempotency,
        };
        match self.send(command, ctx).await? {
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
        let route = self.route();
        crate::writer_jobs::apply_in_order(&route.writer, changes).await
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
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            tenant_files::files(&mut conn, &page, MAX_PAGE).await
        }
        .await)
    }

    async fn file(&self, id: i64) -> Result<Option<FileRecord>, StoreError> {
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            tenant_files::file(&mut conn, id).await
        }
        .await)
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        const SQL: &str =
            "SELECT id, code, name, type, parent, currency, created_at FROM accounts ORDER BY code";
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let statement = conn.prepare_cached(SQL).await?;
            conn.query(&statement, &[])
                .await?
                .iter()
                .map(row_to_account)
                .collect()
        }
        .await)
    }

    async fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            Ok(load_entries(&mut conn, &[id]).await?.pop())
        }
        .await)
    }

    async fn entries(&self, page: EntryPage) -> Result<Vec<Entry>, StoreError> {
        const ACCOUNT: &str = "SELECT id FROM accounts WHERE code = $1";
        let Some(query) = EntryQuery::new(&page, MAX_PAGE) else {
            return Ok(Vec::new());
        };
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let account_id = match &query.account {
                Some(code) => {
                    let statement = conn.prepare_cached(ACCOUNT).await?;
                    match conn.query_opt(&statement, &[code]).await? {
                        Some(row) => Some(row.try_get::<_, i64>(0)?),
                        None => return Ok(Vec::new()),
                    }
                }
                None => None,
            };
            let values: Vec<Box<dyn ToSql + Sync + Send>> = query
                .values(account_id)
                .into_iter()
                .map(|v| -> Box<dyn ToSql + Sync + Send> {
                    match v {
                        ListValue::Int(i) => Box::new(i),
                        ListValue::Text(t) => Box::new(t),
                    }
                })
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> = values
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let sql = entry_list::postgres_statement(query.shape);
            let rows = if query.shape.plan_each_call() {
                conn.query(sql, &params).await?
            } else {
                let statement = conn.prepare_cached(sql).await?;
                conn.query(&statement, &params).await?
            };
            entries_from_rows(&mut conn, rows).await
        }
        .await)
    }

    async fn balances_as_of(&self, as_of: Date) -> Result<Vec<BalanceRow>, StoreError> {
        const SQL: &str = "SELECT a.code, b.currency, SUM(b.amount)::text FROM day_balances b
             JOIN accounts a ON a.id = b.account_id
             WHERE b.day <= $1 GROUP BY a.code, b.currency";
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let statement = conn.prepare_cached(SQL).await?;
            balance_rows(conn.query(&statement, &[&day(as_of)]).await?)
        }
        .await)
    }

    async fn movements(&self, from: Date, to: Date) -> Result<Vec<BalanceRow>, StoreError> {
        const SQL: &str = "SELECT a.code, b.currency, SUM(b.amount)::text FROM day_balances b
             JOIN accounts a ON a.id = b.account_id
             WHERE b.day >= $1 AND b.day <= $2 GROUP BY a.code, b.currency";
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let statement = conn.prepare_cached(SQL).await?;
            balance_rows(conn.query(&statement, &[&day(from), &day(to)]).await?)
        }
        .await)
    }

    async fn register(
        &self,
        account_code: &str,
        from: Date,
        to: Date,
        limit: u32,
    ) -> Result<(Amounts, Vec<RegisterPosting>), StoreError> {
        const ACCOUNT: &str = "SELECT id FROM accounts WHERE code = $1";
        const OPENING: &str = "SELECT currency, SUM(amount)::text FROM day_balances
             WHERE account_id = $1 AND day < $2 GROUP BY currency";
        const POSTINGS: &str = "SELECT p.date, p.entry_id, e.description, p.currency, p.amount
             FROM postings p JOIN entries e ON e.id = p.entry_id
             WHERE p.account_id = $1 AND p.date >= $2 AND p.date <= $3
             ORDER BY p.date, p.entry_id, p.line LIMIT $4";
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let statement = conn.prepare_cached(ACCOUNT).await?;
            let account_id: i64 = conn
                .query_opt(&statement, &[&account_code])
                .await?
                .ok_or(StoreError::NotFound("account"))?
                .try_get(0)?;
            let mut opening = Amounts::new();
            let statement = conn.prepare_cached(OPENING).await?;
            for row in conn.query(&statement, &[&account_id, &day(from)]).await? {
                let code: String = row.try_get(0)?;
                let amount: String = row.try_get(1)?;
                opening.insert(currency(&code)?, amount_of(&amount)?);
            }
            let statement = conn.prepare_cached(POSTINGS).await?;
            let limit = i64::from(limit.clamp(1, 100 * MAX_PAGE));
            let rows = conn
                .query(&statement, &[&account_id, &day(from), &day(to), &limit])
                .await?;
            let mut postings = Vec::with_capacity(rows.len());
            for row in rows {
                let date: String = row.try_get(0)?;
                let entry_id: i64 = row.try_get(1)?;
                let code: String = row.try_get(3)?;
                postings.push(RegisterPosting {
                    date: parse_day(&date)?,
                    entry_id: entry_id.to_string(),
                    description: row.try_get(2)?,
                    currency: currency(&code)?,
                    amount: row.try_get(4)?,
                });
            }
            Ok((opening, postings))
        }
        .await)
    }

    async fn journal(&self, after_seq: i64, limit: u32) -> Result<Vec<JournalRecord>, StoreError> {
        const SQL: &str = "SELECT seq, at, kind, payload, prev_hash, hash FROM change_journal
             WHERE seq > $1 ORDER BY seq LIMIT $2";
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let statement = conn.prepare_cached(SQL).await?;
            let limit = i64::from(limit.clamp(1, 100 * MAX_PAGE));
            let rows = conn.query(&statement, &[&after_seq, &limit]).await?;
            rows.iter()
                .map(|r| {
                    let at: String = r.try_get(1)?;
                    Ok(JournalRecord {
                        seq: r.try_get(0)?,
                        at: parse_ts(&at)?,
                        kind: r.try_get(2)?,
                        payload: r.try_get(3)?,
                        prev_hash: r.try_get(4)?,
                        hash: r.try_get(5)?,
                    })
                })
                .collect()
        }
        .await)
    }

    async fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredAuditEvent>, StoreError> {
        const SQL: &str =
            "SELECT seq, at, actor, auth, client, request_id, action, target, outcome, detail,
                    prev_hash, hash
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2";
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let statement = conn.prepare_cached(SQL).await?;
            let limit = i64::from(limit.clamp(1, MAX_PAGE));
            let rows = conn.query(&statement, &[&after_seq, &limit]).await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredAuditEvent {
                        seq: r.try_get(0)?,
                        at: r.try_get(1)?,
                        actor: r.try_get(2)?,
                        auth: r.try_get(3)?,
                        client: r.try_get(4)?,
                        request_id: r.try_get(5)?,
                        company_id: Some(self.company_id.clone()),
                        action: r.try_get(6)?,
                        target: r.try_get(7)?,
                        outcome: r.try_get(8)?,
                        detail: r.try_get(9)?,
                        prev_hash: r.try_get(10)?,
                        hash: r.try_get(11)?,
                    })
                })
                .collect()
        }
        .await)
    }

    async fn stats(&self) -> Result<TenantStats, StoreError> {
        const SQL: &str = "SELECT (SELECT count(*) FROM accounts), (SELECT COALESCE(MAX(id), 0) FROM entries),
                    (SELECT journal_seq FROM heads WHERE id = 1), pg_database_size(current_database()),
                    (SELECT count(*) FROM files), (SELECT COALESCE(SUM(size), 0)::int8 FROM files)";
        rerouted!(self, route => async {
            let mut conn = route.pool.get().await?;
            let statement = conn.prepare_cached(SQL).await?;
            let row = conn.query_one(&statement, &[]).await?;
            let size: i64 = row.try_get(3)?;
            Ok(TenantStats {
                accounts: row.try_get(0)?,
                entries: row.try_get(1)?,
                journal_seq: row.try_get(2)?,
                storage_bytes: u64::try_from(size).unwrap_or(0),
                files: row.try_get(4)?,
                file_bytes: row.try_get(5)?,
            })
        }
        .await)
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
}

/// Limits of the PostgreSQL backend's connections.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Connections one company may hold at once (its writer and readers).
    pub per_company: usize,
}

impl Default for PoolLimits {
    fn default() -> PoolLimits {
        PoolLimits { per_company: 4 }
    }
}

/// What company stores share to find (and reach) their databases.
pub(crate) struct Locator {
    placements: Placements,
    /// Each server by name, as the service role (which may create databases and roles).
    servers: Vec<(String, PgEndpoint)>,
    budget: Arc<ConnectionBudget>,
    limits: PoolLimits,
    audit: bool,
}

impl Locator {
    fn server(&self, name: &str) -> Result<&PgEndpoint, StoreError> {
        self.servers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
            .ok_or_else(|| {
                StoreError::Connect(format!(
                    "company database is on PostgreSQL server {name:?}, which is not configured"
                ))
            })
    }

    fn company_endpoint(
        &self,
        placement: &Placement,
        key: &DataKey,
    ) -> Result<PgEndpoint, StoreError> {
        Ok(self
            .server(&placement.server)?
            .with_database(&placement.database)
            .with_credentials(&placement.role, &provision::role_password(key)))
    }

    /// A pool and a writer for the company's database where `placement` says it is.
    async fn route(
        &self,
        placement: Placement,
        key: &DataKey,
        published: Arc<Published>,
    ) -> Result<Arc<Route>, StoreError> {
        let endpoint = self.company_endpoint(&placement, key)?;
        let pool = PgPool::new(endpoint, self.limits.per_company, self.budget.clone());
        let writer =
            tenant_writer::spawn(pool.clone(), &placement.company_id, published, self.audit)
                .await
                .map_err(|e| match e {
                    StoreError::Connect(message)
                        if message.contains("password authentication failed") =>
                    {
                        StoreError::WrongKey
                    }
                    other => other,
                })?;
        Ok(Arc::new(Route {
            placement,
            pool,
            writer,
        }))
    }
}
