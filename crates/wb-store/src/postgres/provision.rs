//! Creating and dropping a company's database and role.
//!
//! The service role (LOGIN CREATEDB CREATEROLE, never a superuser) creates a
//! role per company whose password is derived from the company's DEK (so it is
//! stored nowhere, only recomputed from the KEK-wrapped DEK), a database owned
//! by that role, and revokes CONNECT from PUBLIC: only the company's role can
//! open the company's database. The password reaches PostgreSQL as a SCRAM
//! verifier computed here, so it never appears in a statement or a server log.

use wb_crypto::{DataKey, Secret};

use super::connect::PgEndpoint;
use super::pool::ConnectionBudget;
use crate::StoreError;

/// Names in PostgreSQL for one company: its role and its database share one.
pub(crate) fn object_name(company_id: &str) -> Result<String, StoreError> {
    if company_id.is_empty()
        || company_id.len() > 50
        || !company_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(StoreError::NotFound("company"));
    }
    Ok(format!(
        "wb_{}",
        company_id.to_ascii_lowercase().replace('-', "_")
    ))
}

pub(crate) fn role_password(key: &DataKey) -> Secret {
    key.derived_password("postgres company role")
}

/// Creates the role and the database. Leaves nothing behind on failure.
pub(crate) async fn create_company_database(
    budget: &ConnectionBudget,
    admin: &PgEndpoint,
    name: &str,
    key: &DataKey,
) -> Result<(), StoreError> {
    let client = budget.connect(admin).await?;
    let verifier =
        postgres_protocol::password::scram_sha_256(role_password(key).expose().as_bytes());
    let steps = [
        format!("CREATE ROLE {name} LOGIN PASSWORD '{verifier}'"),
        // PostgreSQL 15: only a member of a role may make it a database owner.
        format!("GRANT {name} TO CURRENT_USER"),
        format!("CREATE DATABASE {name} OWNER {name}"),
        format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"),
        format!("REVOKE {name} FROM CURRENT_USER"),
    ];
    for step in &steps {
        if let Err(e) = client.batch_execute(step).await {
            drop(client);
            let _ = drop_company_database(budget, admin, name).await;
            return Err(StoreError::Backend(format!(
                "creating the company database: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            )));
        }
    }
    Ok(())
}

/// Gives a company's role the password derived from `key` (a re-key).
/// Sessions open already stay open; new ones need the new password.
pub(crate) async fn set_role_password(
    budget: &ConnectionBudget,
    admin: &PgEndpoint,
    role: &str,
    key: &DataKey,
) -> Result<(), StoreError> {
    let client = budget.connect(admin).await?;
    let verifier =
        postgres_protocol::password::scram_sha_256(role_password(key).expose().as_bytes());
    client
        .batch_execute(&format!("ALTER ROLE {role} PASSWORD '{verifier}'"))
        .await
        .map_err(|e| {
            StoreError::Backend(format!(
                "changing the company role's password: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            ))
        })
}

/// Drops the database and role when they exist (a failed creation, a move's source).
pub(crate) async fn drop_company_database(
    budget: &ConnectionBudget,
    admin: &PgEndpoint,
    name: &str,
) -> Result<u64, StoreError> {
    let client = budget.connect(admin).await?;
    let role_exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await?
        .is_some();
    if role_exists {
        client
            .batch_execute(&format!("GRANT {name} TO CURRENT_USER"))
            .await?;
    }
    // Measured as a member of the owning role (it needs CONNECT).
    let size: i64 = client
        .query_opt(
            "SELECT pg_database_size(datname) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    if role_exists {
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
            .await?;
    }
    Ok(u64::try_from(size).unwrap_or(0))
}

/// After a company's database is dropped its rows may still sit in the
/// server's write-ahead log: switches to a new WAL segment and checkpoints,
/// so the segments that held them are no longer needed and are removed
/// (unlinked with `wal_recycle = off`; WAL archives are the operator's).
/// Answers false when the service role may not (it needs `pg_checkpoint`
/// and EXECUTE on `pg_switch_wal`): PostgreSQL then removes them at its own
/// next checkpoints.
pub(crate) async fn push_out_of_wal(
    budget: &ConnectionBudget,
    admin: &PgEndpoint,
) -> Result<bool, StoreError> {
    let client = budget.connect(admin).await?;
    for sql in ["SELECT pg_switch_wal()", "CHECKPOINT"] {
        if let Err(e) = client.batch_execute(sql).await {
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                return Ok(false);
            }
            return Err(e.into());
        }
    }
    Ok(true)
}
