//! Constructors for running the storage stories against PostgreSQL: a fresh
//! database on the shared throwaway cluster of `wb-pgtest` per call, reached
//! over verified TLS as the (non-superuser) service role.
//!
//! Shared by the story modules of this test binary; each uses only some of these helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use wb_pgtest::PgCluster;
use wb_store::postgres::{ConnectionBudget, PgControl, PgEndpoint, PgPool};

/// Connections one test may hold on the cluster, across its pools.
const BUDGET: usize = 32;
/// Connections of one pool.
const POOL_MAX: usize = 8;

/// The shared cluster, started on first use (off the async threads: it runs
/// `initdb` and waits for the server).
pub async fn cluster() -> &'static PgCluster {
    tokio::task::spawn_blocking(PgCluster::shared)
        .await
        .expect("start the PostgreSQL test cluster")
}

/// A URL for a new empty database named after `prefix`.
pub async fn fresh_database_url(prefix: &str) -> String {
    let cluster = cluster().await;
    let prefix = prefix.to_string();
    tokio::task::spawn_blocking(move || cluster.fresh_database(&prefix))
        .await
        .expect("create a database")
}

/// The endpoint of a database URL of the test cluster, trusting its CA.
pub async fn endpoint(url: &str) -> PgEndpoint {
    PgEndpoint::parse(url, Some(cluster().await.ca_file())).expect("parse PostgreSQL URL")
}

/// A connection budget for one test (it starts a reaper on the current runtime).
pub fn budget() -> Arc<ConnectionBudget> {
    ConnectionBudget::new(BUDGET, Duration::from_secs(10))
}

/// A pool on the database at `url`.
pub async fn pool(url: &str, budget: Arc<ConnectionBudget>) -> PgPool {
    PgPool::new(endpoint(url).await, POOL_MAX, budget)
}

/// A control store on a new empty database.
pub async fn pg_control(prefix: &str) -> PgControl {
    let url = fresh_database_url(prefix).await;
    pg_control_at(&url, budget()).await
}

/// A control store on the database at `url` (call twice for two "nodes").
pub async fn pg_control_at(url: &str, budget: Arc<ConnectionBudget>) -> PgControl {
    PgControl::open(pool(url, budget).await)
        .await
        .expect("open the PostgreSQL control store")
}

/// The control plane and the company directory on PostgreSQL, as a server
/// runs them: companies placed on the test cluster, each in its own database
/// reached with its own role.
pub async fn pg_stores(
    prefix: &str,
) -> (
    Arc<wb_store::postgres::PgControl>,
    Arc<wb_store::postgres::PgTenants>,
) {
    let url = fresh_database_url(prefix).await;
    let budget = budget();
    let control = pg_control_at(&url, budget.clone()).await;
    let server = endpoint(&url).await.with_database("postgres");
    let tenants = wb_store::postgres::PgTenants::new(
        control.pool().clone(),
        vec![("main".to_string(), server)],
        budget,
        wb_store::postgres::PoolLimits::default(),
    )
    .await
    .expect("open the PostgreSQL company directory");
    (Arc::new(control), Arc::new(tenants))
}
