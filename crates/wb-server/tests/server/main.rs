//! The wb-server integration tests, one test binary. Every test binary links
//! the whole dependency graph again and instantiates its generic code again,
//! so the story files are modules here rather than binaries of their own.
//! Stories that run on both backends are included twice, once per backend
//! module, each module naming its backend in a constant the stories read
//! through `super::` (`#[path]` on the wrapper module names the directory
//! its files are in). The tests that need the process to themselves (a
//! counting global allocator, process-wide environment) are in `tests/alone`.
//!
//! All modules share one process: one PostgreSQL test cluster
//! (`wb_pgtest::PgCluster::shared`), one tracing subscriber (installed by the
//! export-push stories, `support::push_log`) and one rustls crypto provider.

// Each backend module includes the same story files on purpose.
#![allow(clippy::duplicate_mod)]

mod support {
    pub mod moto;
    pub mod platforms;
    pub mod push_log;
    pub mod smtp;
}

/// The end-to-end tests of the real HTTPS server on the embedded SQLCipher
/// store: every request goes over TLS to a server started on a free port with
/// its own data directory.
mod api {
    /// The storage these tests run against (`api_postgres` runs them on PostgreSQL).
    const BACKEND: harness::Backend = harness::Backend::Sqlite;

    mod harness;

    mod abuse;
    mod account;
    mod audit;
    mod auth;
    mod books;
    mod company_keys;
    mod console_retention;
    mod console_staff;
    mod deprovision;
    mod door;
    mod export_push;
    mod exports;
    mod files;
    mod grant_notices;
    mod grant_use;
    mod grants;
    mod isolation;
    mod key_rotation;
    mod limits;
    mod mail;
    mod members;
    mod mfa;
    mod passkeys;
    mod prop;
    mod purge;
    mod reset;
    mod restores;
    mod retention;
    mod sandbox;
    mod security_policy;
    mod staff;
    mod staff_ops;
    mod web;
}

/// The end-to-end API tests of `api`, run against the PostgreSQL backend: each
/// server has its own control database on the throwaway test cluster, and each
/// company its own database and role there.
#[path = "api"]
mod api_postgres {
    /// The storage these tests run against.
    const BACKEND: harness::Backend = harness::Backend::Postgres;

    mod harness;

    mod abuse;
    mod account;
    mod audit;
    mod auth;
    mod books;
    mod company_keys;
    mod console_retention;
    mod console_staff;
    mod deprovision;
    mod door;
    mod export_push;
    mod exports;
    mod files;
    mod grant_notices;
    mod grant_use;
    mod grants;
    mod isolation;
    mod key_rotation;
    mod members;
    mod mfa;
    mod nodes;
    mod passkeys;
    mod placement;
    mod prop;
    mod purge;
    mod reset;
    mod restores;
    mod retention;
    mod sandbox;
    mod security_policy;
    mod staff;
    mod staff_ops;
    mod web;
}

/// Change-journal shipping and point-in-time restore on SQLCipher.
#[path = "."]
mod backup {
    /// The backend these stories run on (`backup_postgres` runs them on PostgreSQL).
    const POSTGRES: bool = false;

    #[path = "backup.rs"]
    mod stories;
}

/// The change-journal shipping and restore stories of `backup`, on PostgreSQL.
#[path = "."]
mod backup_postgres {
    /// The backend these stories run on.
    const POSTGRES: bool = true;

    #[path = "backup.rs"]
    mod stories;
}

/// The monitor job end to end on SQLCipher.
#[path = "."]
mod monitor {
    /// The backend these stories run on (`monitor_postgres` runs them on PostgreSQL).
    const POSTGRES: bool = false;

    #[path = "monitor.rs"]
    mod stories;
}

/// The monitor stories of `monitor`, on PostgreSQL.
#[path = "."]
mod monitor_postgres {
    /// The backend these stories run on.
    const POSTGRES: bool = true;

    #[path = "monitor.rs"]
    mod stories;
}

mod backup_property;
mod backup_verify;
mod dr;
mod drains;
mod postgres;
