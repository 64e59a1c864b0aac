//! Choosing and opening the storage backend: embedded SQLCipher files, or
//! PostgreSQL (a control database plus one database per company, placed on
//! one or more servers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use wb_store::postgres::{ConnectionBudget, PgControl, PgEndpoint, PgPool, PgTenants, PoolLimits};
use wb_store::{AlertStore, ControlStore, TenantDirectory};

/// Where the platform keeps its data.
#[derive(Debug, Clone, Default)]
pub enum StorageConfig {
    /// SQLCipher files under the data directory.
    #[default]
    Embedded,
    Postgres(PostgresConfig),
}

#[derive(Clone)]
pub struct PostgresConfig {
    /// The control database, `postgres://user:password@host:port/database`;
    /// the role must be able to create databases and roles (not a superuser).
    pub control_url: String,
    /// The CA that signed the servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// Servers for company databases by name; empty means the control
    /// database's server, named "main".
    pub servers: Vec<(String, String)>,
    /// Connections this node may open, across every database.
    pub max_connections: usize,
    /// Connections one company may hold at once.
    pub connections_per_company: usize,
    /// Idle connections close after this long.
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs carry passwords: show only which servers are named.
        f.debug_struct("PostgresConfig")
            .field("ca_file", &self.ca_file)
            .field(
                "servers",
                &self.servers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl PostgresConfig {
    pub fn new(control_url: String, ca_file: Option<PathBuf>) -> PostgresConfig {
        PostgresConfig {
            control_url,
            ca_file,
            servers: Vec::new(),
            max_connections: 64,
            connections_per_company: 4,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

pub(crate) struct Stores {
    pub control: Arc<dyn ControlStore>,
    pub alerts: Arc<dyn AlertStore>,
    pub tenants: Arc<dyn TenantDirectory>,
    pub postgres: Option<Arc<PgTenants>>,
}

/// Connects to the control database (checking TLS, the CA and the
/// credentials now, so a bad configuration fails at start) and to every
/// company server.
pub(crate) async fn open_postgres(config: &PostgresConfig) -> anyhow::Result<Stores> {
    let ca = config.ca_file.as_deref();
    let control_endpoint = PgEndpoint::parse(&config.control_url, ca)?;
    let budget = ConnectionBudget::new(config.max_connections, config.idle_timeout);
    let control_pool = PgPool::new(control_endpoint.clone(), 8, budget.clone());
    let control = PgControl::open(control_pool.clone())
        .await
        .context("opening the PostgreSQL control database")?;
    let mut servers = Vec::new();
    if config.servers.is_empty() {
        servers.push((
            "main".to_string(),
            control_endpoint.with_database("postgres"),
        ));
    }
    for (name, url) in &config.servers {
        let endpoint =
            PgEndpoint::parse(url, ca).with_context(|| format!("PostgreSQL server {name:?}"))?;
        // Fail at start, not at the first company creation.
        endpoint
            .with_database("postgres")
            .connect()
            .await
            .with_context(|| format!("PostgreSQL server {name:?}"))?;
        servers.push((name.clone(), endpoint.with_database("postgres")));
    }
    let limits = PoolLimits {
        per_company: config.connections_per_company,
    };
    let tenants = Arc::new(PgTenants::new(control_pool, servers, budget, limits).await?);
    let control = Arc::new(control);
    Ok(Stores {
        control: control.clone(),
        alerts: control,
        tenants: tenants.clone(),
        postgres: Some(tenants),
    })
}
