//! Work-books services: everything the platform does, apart from how it is
//! asked. The HTTP API (`wb-server`) and the CLI (`workbooks`) are adapters
//! over these modules; nothing here knows HTTP (no axum, hyper or tower).
//!
//! Invariants:
//! - One door: a company's store is reached only through
//!   `access::CompanyScope`, which `Platform::admit` hands out after checking
//!   the caller and recording the refusal or the read.
//! - One keyring: only `keyring.rs` wraps or unwraps a key with the master
//!   key or names an encryption context.
//! - No global state: one `Platform` is passed explicitly.
//! - Errors are `error::ServiceError`, with a kind the adapters translate.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access;
pub mod account;
pub mod audit_verify;
pub mod auth_cache;
pub mod backup;
pub mod backup_verify;
pub mod books;
pub mod clock;
pub mod company;
pub mod company_keys;
pub mod cpu_work;
pub mod data_lock;
pub mod destruction;
pub mod dr;
mod dr_grants;
pub mod drains;
pub mod dto;
pub mod egress;
pub mod error;
pub mod export_create;
pub mod export_push;
pub mod export_slots;
pub mod exports;
pub mod files;
pub mod forwarder;
pub mod grant_actions;
pub mod grant_notices;
pub mod grants;
pub mod jobs;
pub mod keyring;
pub mod keys_handover;
pub mod keys_rotation;
pub mod keys_status;
#[cfg(test)]
mod layering;
pub mod lifecycle;
pub mod login;
pub mod mail;
pub mod mailer;
pub mod members;
pub mod mfa;
pub mod monitor_job;
pub mod objects;
pub mod overview;
pub mod passkeys;
pub mod platform;
pub mod policy;
pub mod principal;
pub mod purge;
pub mod purge_upkeep;
pub mod records;
pub mod reset;
pub mod restore_copy;
pub mod restore_jobs;
pub mod restore_target;
pub mod retention_rules;
pub mod runner;
pub mod sandbox;
pub mod security;
pub mod staff;
pub mod staff_cache;
pub mod staff_console;
pub mod staff_limits;
pub mod staff_ops;
pub mod staff_views;
pub mod statements;
pub mod storage;

pub use clock::{Clock, SystemClock};
pub use error::{ErrorKind, ServiceError, ServiceResult};
pub use platform::Platform;
pub use storage::{PostgresConfig, StorageConfig};

/// Installs ring as rustls's process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
