//! Work-books HTTP server: axum over rustls, authentication, and the services
//! that orchestrate the domain (`wb-core`) and storage (`wb-store`).
//!
//! Architecture invariants:
//! - No global state: one `Platform` is passed explicitly (as `AppState`).
//! - Handlers never touch SQL; they call `Platform` and `TenantStore` methods.
//! - Every error leaves as an RFC 9457 problem document (`problem.rs`).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod api;
pub mod audit_verify;
pub mod auth;
pub mod auth_cache;
pub mod backup;
pub mod backup_verify;
pub mod body_rate;
pub mod clock;
pub mod config;
pub mod connections;
pub mod cpu_work;
pub mod data_lock;
pub mod dr;
pub mod drains;
pub mod dto;
pub mod egress;
pub mod export_push;
pub mod exports;
pub mod files;
pub mod jobs;
pub mod monitor_job;
pub mod objects;
pub mod platform;
pub mod problem;
pub mod request_id;
pub mod server;
pub mod storage;
pub mod tls;

pub use clock::{Clock, SystemClock};
pub use config::{ServerConfig, TlsMode};
pub use platform::Platform;
pub use server::{start, RunningServer};
pub use storage::{PostgresConfig, StorageConfig};
