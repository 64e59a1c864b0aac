//! Work-books HTTP server: axum over rustls, the adapter between HTTP and
//! the services of `wb-app`.
//!
//! Architecture invariants:
//! - No global state: one `Platform` is passed explicitly (as `AppState`).
//! - Handlers never touch SQL and never open a company's store: a company
//!   route takes an `auth::Company<…>` extractor (the door) and works
//!   through the `CompanyScope` it yields.
//! - Every error leaves as an RFC 9457 problem document (`problem.rs`).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod api;
pub mod auth;
pub mod body_rate;
pub mod client_addr;
pub mod config;
pub mod connections;
pub mod console;
pub mod cors;
pub mod expensive;
pub mod head_limit;
pub mod problem;
pub mod rate_limit;
pub mod request_id;
pub mod server;
pub mod tls;

// The services, under the paths this crate has always offered them at.
pub use wb_app::{
    access, audit_verify, auth_cache, backup, backup_verify, clock, company_keys, cpu_work,
    data_lock, destruction, dr, drains, dto, egress, error, export_create, export_push, exports,
    files, grant_notices, grants, jobs, keyring, keys_handover, keys_rotation, keys_status,
    lifecycle, login, mail, mailer, members, monitor_job, objects, platform, purge, restore_target,
    sandbox, security, staff, staff_views, storage,
};

pub use clock::{Clock, SystemClock};
pub use config::{ServerConfig, TlsMode};
pub use platform::Platform;
pub use server::{start, RunningServer};
pub use storage::{PostgresConfig, StorageConfig};
