//! Connection pools bounded per database and in total.
//!
//! Every open connection, busy or idle, holds a permit of the process-wide
//! [`ConnectionBudget`]; each pool also caps its own connections. Idle
//! connections close after `idle_timeout`, and when the budget is spent a
//! request closes the longest-idle connection of another pool rather than
//! wait, so ten thousand companies never mean ten thousand connections.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Statement};

type Statements = std::collections::HashMap<&'static str, Statement>;

use super::connect::PgEndpoint;
use crate::StoreError;

const WAIT_FOR_PERMIT: Duration = Duration::from_secs(30);

/// The process-wide cap on open PostgreSQL connections.
pub struct ConnectionBudget {
    permits: Arc<Semaphore>,
    total: usize,
    idle_timeout: Duration,
    pools: Mutex<Vec<Weak<PoolInner>>>,
}

impl std::fmt::Debug for ConnectionBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionBudget({} of {})", self.open(), self.total)
    }
}

impl ConnectionBudget {
    /// Starts the reaper that closes idle connections; call inside a runtime.
    pub fn new(total: usize, idle_timeout: Duration) -> Arc<ConnectionBudget> {
        let budget = Arc::new(ConnectionBudget {
            permits: Arc::new(Semaphore::new(total.max(1))),
            total: total.max(1),
            idle_timeout,
            pools: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&budget);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(
                idle_timeout.clamp(Duration::from_millis(100), Duration::from_secs(1)),
            );
            loop {
                tick.tick().await;
                let Some(budget) = weak.upgrade() else { return };
                budget.close_idle();
            }
        });
        budget
    }

    /// Connections open now, across every pool.
    pub fn open(&self) -> usize {
        self.total - self.permits.available_permits()
    }

    pub fn total(&self) -> usize {
        self.total
    }

    fn live_pools(&self) -> Vec<Arc<PoolInner>> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.iter().filter_map(Weak::upgrade).collect()
    }

    fn close_idle(&self) {
        for pool in self.live_pools() {
            pool.close_idle_older_than(self.idle_timeout);
        }
    }

    /// Closes the connection that has been idle longest, anywhere. True when one was.
    fn evict_one(&self) -> bool {
        let oldest = self
            .live_pools()
            .into_iter()
            .filter_map(|p| p.oldest_idle().map(|since| (since, p)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, pool)) => pool.drop_oldest_idle(),
            None => false,
        }
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        let deadline = Instant::now() + WAIT_FOR_PERMIT;
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return Ok(permit);
            }
            if self.evict_one() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Backend(format!(
                    "all {} PostgreSQL connections are busy",
                    self.total
                )));
            }
            let wait = left.min(Duration::from_millis(50));
            if let Ok(Ok(permit)) =
                tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await
            {
                return Ok(permit);
            }
        }
    }
}

/// A connection outside any pool (provisioning, moves), counted in the budget
/// while it is open.
pub struct BudgetedClient {
    client: Client,
    _permit: OwnedSemaphorePermit,
}

impl Deref for BudgetedClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl ConnectionBudget {
    /// Opens one connection that counts against the budget until dropped.
    pub async fn connect(&self, endpoint: &PgEndpoint) -> Result<BudgetedClient, StoreError> {
        let permit = self.acquire().await?;
        Ok(BudgetedClient {
            client: endpoint.connect().await?,
            _permit: permit,
        })
    }
}

struct Idle {
    client: Client,
    statements: Statements,
    since: Instant,
    _budget: OwnedSemaphorePermit,
}

struct PoolInner {
    endpoint: PgEndpoint,
    idle: Mutex<Vec<Idle>>,
}

impl PoolInner {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close_idle_older_than(&self, age: Duration) {
        self.idle()
            .retain(|c| c.since.elapsed() < age && !c.client.is_closed());
    }

    fn oldest_idle(&self) -> Option<Instant> {
        self.idle().iter().map(|c| c.since).min()
    }

    fn drop_oldest_idle(&self) -> bool {
        let mut idle = self.idle();
        match idle
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.since)
            .map(|(i, _)| i)
        {
            Some(i) => {
                idle.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// Connections to one database as one role.
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<PoolInner>,
    local: Arc<Semaphore>,
    budget: Arc<ConnectionBudget>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgPool({})", self.inner.endpoint.describe())
    }
}

impl PgPool {
    pub fn new(endpoint: PgEndpoint, max: usize, budget: Arc<ConnectionBudget>) -> PgPool {
        let inner = Arc::new(PoolInner {
            endpoint,
            idle: Mutex::new(Vec::new()),
        });
        budget
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&inner));
        PgPool {
            inner,
            local: Arc::new(Semaphore::new(max.max(1))),
            budget,
        }
    }

    pub fn endpoint(&self) -> &PgEndpoint {
        &self.inner.endpoint
    }

    /// A connection, reused when one is idle; waits while this pool is at its cap.
    pub async fn get(&self) -> Result<PgConn, StoreError> {
        let local = tokio::time::timeout(WAIT_FOR_PERMIT, self.local.clone().acquire_owned())
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "no connection to {} came free in time",
                    self.inner.endpoint.describe()
                ))
            })?
            .map_err(|_| StoreError::Backend("connection pool closed".into()))?;
        loop {
            let reused = self.inner.idle().pop();
            match reused {
                Some(idle) if !idle.client.is_closed() => {
                    return Ok(PgConn {
                        client: Some(idle.client),
                        statements: idle.statements,
                        budget: Some(idle._budget),
                        pool: self.inner.clone(),
                        _local: local,
                    })
                }
                Some(_) => continue,
                None => break,
            }
        }
        let budget = self.budget.acquire().await?;
        let client = self.inner.endpoint.connect().await?;
        Ok(PgConn {
            client: Some(client),
            statements: Statements::new(),
            budget: Some(budget),
            pool: self.inner.clone(),
            _local: local,
        })
    }

    /// Connections of this pool open now (idle ones only; busy ones are out).
    pub fn idle_count(&self) -> usize {
        self.inner.idle().len()
    }

    /// Closes every idle connection now.
    pub fn close_idle(&self) {
        self.inner.idle().clear();
    }
}

/// A pooled connection; back to its pool when dropped.
pub struct PgConn {
    client: Option<Client>,
    /// Prepared once per connection, reused while the connection lives.
    statements: Statements,
    budget: Option<OwnedSemaphorePermit>,
    pool: Arc<PoolInner>,
    _local: OwnedSemaphorePermit,
}

impl PgConn {
    /// The statement for `sql`, prepared on this connection the first time.
    pub async fn prepare_cached(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Closes this connection instead of returning it (after a failed transaction).
    pub fn discard(mut self) {
        self.client = None;
    }
}

impl Deref for PgConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().unwrap_or_else(|| unreachable_client())
    }
}

impl DerefMut for PgConn {
    fn deref_mut(&mut self) -> &mut Client {
        match self.client.as_mut() {
            Some(c) => c,
            None => unreachable_client(),
        }
    }
}

#[allow(clippy::panic)]
fn unreachable_client() -> ! {
    panic!("a pooled connection is used after it was discarded")
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if let (Some(client), Some(budget)) = (self.client.take(), self.budget.take()) {
            if !client.is_closed() {
                self.pool.idle().push(Idle {
                    client,
                    statements: std::mem::take(&mut self.statements),
                    since: Instant::now(),
                    _budget: budget,
                });
            }
        }
    }
}
