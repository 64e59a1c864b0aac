//! The directory of company databases on PostgreSQL: creates (provisions)
//! and opens company stores, following each company's placement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wb_crypto::DataKey;

use super::{key_digest, Locator, PgTenant, PoolLimits};
use crate::chain;
use crate::migrations::{self, Database};
use crate::model::*;
use crate::postgres::connect::PgEndpoint;
use crate::postgres::placement::{Placement, Placements};
use crate::postgres::pool::{ConnectionBudget, PgPool};
use crate::postgres::provision;
use crate::{DestroyedDatabase, RekeyReport, StoreError, TenantDirectory, TenantStore};

/// Company databases on one or more PostgreSQL servers.
pub struct PgTenants {
    locator: Arc<Locator>,
    open: Mutex<HashMap<String, Arc<PgTenant>>>,
}

impl std::fmt::Debug for PgTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTenants")
            .field("servers", &self.locator.servers)
            .finish()
    }
}

impl PgTenants {
    /// `control` is the control database (which holds placements); `servers`
    /// name the PostgreSQL servers companies may be placed on.
    pub async fn new(
        control: PgPool,
        servers: Vec<(String, PgEndpoint)>,
        budget: Arc<ConnectionBudget>,
        limits: PoolLimits,
    ) -> Result<PgTenants, StoreError> {
        if servers.is_empty() {
            return Err(StoreError::Connect(
                "no PostgreSQL server is configured for company databases".into(),
            ));
        }
        let placements = Placements::open(control).await?;
        Ok(PgTenants {
            locator: Arc::new(Locator {
                placements,
                servers,
                budget,
                limits,
                audit: true,
            }),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Company stores whose writers record no audit events: only for measuring
    /// what auditing costs (`workbooks bench`).
    #[doc(hidden)]
    pub fn without_audit_for_benchmarks(mut self) -> PgTenants {
        if let Some(locator) = Arc::get_mut(&mut self.locator) {
            locator.audit = false;
        }
        self
    }

    pub fn placements(&self) -> &Placements {
        &self.locator.placements
    }

    pub fn budget(&self) -> &Arc<ConnectionBudget> {
        &self.locator.budget
    }

    fn server(&self, name: &str) -> Result<&PgEndpoint, StoreError> {
        self.locator.server(name)
    }

    pub fn server_names(&self) -> Vec<String> {
        self.locator
            .servers
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The endpoint of a company's database, as its own role.
    pub fn company_endpoint(
        &self,
        placement: &Placement,
        key: &DataKey,
    ) -> Result<PgEndpoint, StoreError> {
        self.locator.company_endpoint(placement, key)
    }

    /// Creates the database and role of a company on `server`, with its schema.
    pub async fn provision(
        &self,
        company_id: &str,
        server: &str,
        key: &DataKey,
    ) -> Result<Placement, StoreError> {
        let name = provision::object_name(company_id)?;
        let admin = self.server(server)?.with_database("postgres");
        provision::create_company_database(self.budget(), &admin, &name, key).await?;
        let placement = Placement {
            company_id: company_id.to_string(),
            server: server.to_string(),
            database: name.clone(),
            role: name.clone(),
        };
        let endpoint = self.company_endpoint(&placement, key)?;
        let created = async {
            let client = self.budget().connect(&endpoint).await?;
            migrations::postgres::migrate(&client, Database::Tenant, migrations::POSTGRES_TENANT)
                .await?;
            client
                .execute(
                    "INSERT INTO heads (id, journal_seq, journal_hash, audit_seq, audit_hash,
                                        next_entry_id, next_account_id)
                     VALUES (1, 0, $1, 0, $1, 1, 1) ON CONFLICT (id) DO NOTHING",
                    &[&chain::GENESIS],
                )
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = created {
            let _ = provision::drop_company_database(self.budget(), &admin, &name).await;
            return Err(e);
        }
        Ok(placement)
    }

    /// Drops a company's database and role on a server (after a move, or a failed creation).
    /// Drops a company's database and role; answers the database's size.
    pub async fn drop_database(&self, placement: &Placement) -> Result<u64, StoreError> {
        let admin = self.server(&placement.server)?.with_database("postgres");
        provision::drop_company_database(self.budget(), &admin, &placement.database).await
    }

    /// Forgets an open store, so the next open follows the current placement.
    pub fn forget(&self, company_id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(company_id);
        }
    }

    async fn start(
        &self,
        placement: &Placement,
        key: &DataKey,
    ) -> Result<Arc<dyn TenantStore>, StoreError> {
        let published = Arc::new(Published::default());
        let route = self
            .locator
            .route(placement.clone(), key, published.clone())
            .await?;
        let tenant = Arc::new(PgTenant {
            company_id: placement.company_id.clone(),
            key: key.clone(),
            key_digest: key_digest(key),
            locator: self.locator.clone(),
            route: Mutex::new(route),
            published,
        });
        let mut open = self
            .open
            .lock()
            .map_err(|_| StoreError::Backend("tenant registry poisoned".into()))?;
        // Two requests may race to open the same company: keep the first.
        let kept = open
            .entry(placement.company_id.clone())
            .or_insert(tenant)
            .clone();
        Ok(kept)
    }

    /// The least-loaded configured server (fewest companies placed).
    async fn least_loaded(&self) -> Result<String, StoreError> {
        let counts = self.placements().counts().await?;
        self.locator
            .servers
            .iter()
            .map(|(name, _)| (counts.get(name).copied().unwrap_or(0), name))
            .min()
            .map(|(_, name)| name.clone())
            .ok_or_else(|| StoreError::Connect("no PostgreSQL server configured".into()))
    }
}

#[async_trait]
impl TenantDirectory for PgTenants {
    async fn create(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Arc<dyn TenantStore>, StoreError> {
        if self.placements().get(company_id).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "company {company_id} already has a database"
            )));
        }
        let server = self.least_loaded().await?;
        let placement = self.provision(company_id, &server, key).await?;
        if let Err(e) = self.placements().insert(&placement).await {
            let _ = self.drop_database(&placement).await;
            return Err(e);
        }
        self.start(&placement, key).await
    }

    async fn open(
        &self,
        company_id: &str,
        key: &DataKey,
    ) -> Result<Arc<dyn TenantStore>, StoreError> {
        let already = self
            .open
            .lock()
            .ok()
            .and_then(|o| o.get(company_id).cloned());
        if let Some(open) = already {
            if open.key_digest != key_digest(key) {
                return Err(StoreError::WrongKey);
            }
            return Ok(open);
        }
        let placement = self
            .placements()
            .get(company_id)
            .await?
            .ok_or(StoreError::NotFound("company database"))?;
        self.start(&placement, key).await
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
        self.forget(company_id);
        if let Ok(Some(placement)) = self.placements().get(company_id).await {
            if let Err(e) = self.drop_database(&placement).await {
                tracing::warn!(company = company_id, error = %e, "dropping a discarded company database failed");
            }
            let _ = self.placements().remove(company_id).await;
        }
    }

    async fn rekey(
        &self,
        company_id: &str,
        _from: &DataKey,
        to: &DataKey,
    ) -> Result<RekeyReport, StoreError> {
        let started = std::time::Instant::now();
        let placement = self
            .placements()
            .get(company_id)
            .await?
            .ok_or(StoreError::NotFound("company database"))?;
        // The role and database names are derived, never taken from input.
        let role = provision::object_name(company_id)?;
        let admin = self.server(&placement.server)?.with_database("postgres");
        provision::set_role_password(self.budget(), &admin, &role, to).await?;
        // The open store's pool would connect with the old password: the
        // next open starts one with the new key. Writes never wait: the
        // sessions open already stay valid.
        self.forget(company_id);
        self.start(&placement, to).await?;
        Ok(RekeyReport {
            already: false,
            bytes: 0,
            steps: 1,
            write_pause: std::time::Duration::ZERO,
            took: started.elapsed(),
        })
    }

    async fn destroy(&self, company_id: &str) -> Result<DestroyedDatabase, StoreError> {
        self.forget(company_id);
        let Some(placement) = self.placements().get(company_id).await? else {
            return Ok(DestroyedDatabase {
                items: 0,
                names: Vec::new(),
                bytes: 0,
            });
        };
        let bytes = self.drop_database(&placement).await?;
        self.placements().remove(company_id).await?;
        let admin = self.server(&placement.server)?.with_database("postgres");
        let wal = if provision::push_out_of_wal(self.budget(), &admin).await? {
            "its rows pushed out of the server's WAL (switched and checkpointed)"
        } else {
            "the server's WAL not checkpointed (no pg_checkpoint): removed at its next checkpoints"
        };
        Ok(DestroyedDatabase {
            items: 2,
            names: vec![
                format!("database {}", placement.database),
                format!("role {}", placement.role),
                wal.to_string(),
            ],
            bytes,
        })
    }
}
