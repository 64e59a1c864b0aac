//! The production backend: the control plane in its own PostgreSQL database,
//! and each company in a database of its own, reached with that company's own
//! role over verified TLS.

mod company_move;
mod connect;
mod control;
mod control_alerts;
mod control_central;
mod control_coordination;
mod control_export_schedules;
mod control_factors;
mod control_key_versions;
mod control_lifecycle;
mod control_members;
mod control_retention;
mod control_rows;
mod control_sealed;
mod control_staff;
mod placement;
mod pool;
mod provision;
mod tenant;
mod tenant_files;
mod tenant_writer;

pub use company_move::MoveReport;
pub use connect::PgEndpoint;
pub use control::PgControl;
pub use placement::{Placement, Placements};
pub use pool::{ConnectionBudget, PgConn, PgPool};
pub use tenant::{PgTenant, PgTenants, PoolLimits};

use crate::StoreError;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        use tokio_postgres::error::SqlState;
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE {
                return StoreError::Ledger(wb_core::LedgerError::Overflow);
            }
            if *code == SqlState::UNIQUE_VIOLATION {
                return StoreError::Conflict(db.message().to_string());
            }
            // The database went away under this connection (a company move
            // drops its old database with FORCE): look again and retry.
            if [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::INVALID_CATALOG_NAME,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
            {
                return StoreError::Connect(db.message().to_string());
            }
            return StoreError::Backend(db.message().to_string());
        }
        if e.is_closed() {
            return StoreError::Connect(e.to_string());
        }
        StoreError::Backend(e.to_string())
    }
}
