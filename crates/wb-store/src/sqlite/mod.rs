//! The embedded backend: one SQLCipher file per company, one for the control plane.

pub(crate) mod conn;
mod control;
mod control_alerts;
mod control_central;
mod control_export_schedules;
mod control_factors;
mod control_key_versions;
mod control_lifecycle;
mod control_members;
mod control_retention;
mod control_rows;
mod control_sealed;
mod control_staff;
mod tenant;
mod tenant_files;
pub(crate) mod tenant_writer;

pub use conn::{open_encrypted, OpenMode};
pub use control::SqliteControl;
pub use tenant::{SqliteTenant, SqliteTenants};
