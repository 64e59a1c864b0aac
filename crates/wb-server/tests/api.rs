//! End-to-end tests of the real HTTPS server: every request goes over TLS to a
//! server started on a free port with its own data directory.

#[path = "api/harness.rs"]
mod harness;

/// The storage these tests run against (`api_postgres.rs` runs them on PostgreSQL).
const BACKEND: harness::Backend = harness::Backend::Sqlite;

#[path = "api/audit.rs"]
mod audit;
#[path = "api/auth.rs"]
mod auth;
#[path = "api/books.rs"]
mod books;
#[path = "api/door.rs"]
mod door;
#[path = "api/files.rs"]
mod files;
#[path = "api/isolation.rs"]
mod isolation;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/prop.rs"]
mod prop;
#[path = "api/web.rs"]
mod web;
